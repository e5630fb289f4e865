%% cnode_otp28_SUITE: what an OTP 28 peer sends and expects.
%%
%% OTP 28 cannot run here (only OTP 25 does), so a fake node made by hand
%% (cn_raw_dist) plays one: it offers DFLAG_ALTACT_SIG and sends
%% ALTACT_SIG_SEND (control message 37) in each of the forms OTP 28's
%% dist.c builds (erts_dsig_send_msg, erts_dsig_send_exit2): messages to a
%% pid, to a registered name and with a priority flag or a trace token,
%% exit signals to a pid and to a name, and the malformed ones
%% erts_net_message() refuses.  The node answers calls made that way,
%% and sends its replies to alias tags as ALTACT_SIG_SEND to a peer that
%% offers the flag (ALIAS_SEND is deprecated in OTP 28 and removed in
%% OTP 30), as ALIAS_SEND to one that does not.  A real OTP 25 node, on
%% the same node at the same time, is unaffected.
-module(cnode_otp28_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).
-export([flags_offered/1, reply_as_altact/1, reply_as_alias_send/1,
         message_forms/1, exit_to_pid/1, exit_to_name/1, exit_to_alias/1,
         malformed_closes/1]).

-define(DFLAG_ALIAS, (16#08 bsl 32)).
-define(DFLAG_ALTACT_SIG, (16#20 bsl 32)).
-define(DFLAG_V4_NC, (16#04 bsl 32)).
-define(DFLAG_UNLINK_ID, 16#2000000).
-define(DFLAG_MANDATORY_25_DIGEST, 16#4000000).
-define(ALTACT, 37).
-define(PRIO, 1).
-define(TOKEN, 2).
-define(ALIAS, 4).
-define(NAME, 8).
-define(EXIT, 16).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [flags_offered, reply_as_altact, reply_as_alias_send, message_forms,
     exit_to_pid, exit_to_name, exit_to_alias, malformed_closes].

init_per_suite(Config) ->
    CN = cn_node:start(#{}),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

%% ---- helpers ---------------------------------------------------------------

host() ->
    [_, H] = string:split(atom_to_list(node()), "@"),
    H.

%% A fake OTP 28 node connected to the node: {Socket, OurPid, NodeFlags}.
otp28(Config) ->
    otp28(Config, cn_raw_dist:flags() bor ?DFLAG_ALIAS bor ?DFLAG_ALTACT_SIG).

otp28(Config, Flags) ->
    Name = list_to_atom("otp28_" ++ cn_node:uniq() ++ "@" ++ host()),
    {ok, S, Info} = cn_raw_dist:handshake(cn_node:port(?config(cn, Config)),
                                          Name, cn_node:cookie(?config(cn, Config)),
                                          #{flags => Flags}),
    {S, cn_raw_dist:fake_pid(Name, 3), maps:get(flags, Info)}.

%% A '$gen_call' with an alias tag, as OTP 24+ gen:call sends it; the
%% alias is a reference of the fake node.
call_msg(From, Req) ->
    Alias = cn_raw_dist:fake_ref(node(From), erlang:unique_integer([positive])),
    {Alias, {'$gen_call', {From, [alias | Alias]}, Req}}.

%% The next frame that is not a tick.
next(S) ->
    {ok, Ctl, Msg} = cn_raw_dist:recv_frame(S, 5000),
    {Ctl, Msg}.

%% Sends a call in an ALTACT_SIG_SEND with Flags to To and returns the
%% reply's control message and message.
altact_call(S, From, Flags, To, Extra, Req) ->
    {Alias, Msg} = call_msg(From, Req),
    Ctl = list_to_tuple([?ALTACT, Flags, From, To | Extra]),
    ok = cn_raw_dist:send_frame(S, Ctl, Msg),
    {RCtl, Reply} = next(S),
    ?assertMatch({[alias | Alias], _}, Reply),
    {RCtl, element(2, Reply)}.

echo_pid(Config) ->
    gen_server:call({echo, ?config(node, Config)}, pid, 5000).

%% Monitors Target (a pid of the node) from the fake node, with Ref.
raw_monitor(S, From, Target) ->
    Ref = make_ref(),
    ok = cn_raw_dist:send_frame(S, {19, From, Target, Ref}),
    Ref.

%% Skips frames until F(Ctl, Msg) returns {true, Value}: Value.
wait_frame(S, F) ->
    {Ctl, Msg} = next(S),
    case F(Ctl, Msg) of
        {true, V} -> V;
        false -> wait_frame(S, F)
    end.

%% Waits for the DOWN of the monitor Ref: its reason.
down(S, Ref) ->
    case next(S) of
        {{21, _, _, Ref, Reason}, none} -> Reason;
        {{28, _, _, Ref}, Reason} -> Reason;
        {Other, _} -> ct:fail({expected_down, Ref, Other})
    end.

%% The node's echo is back under cnode_sup (after a kill in a test).
echo_back(Config, Old) ->
    N = ?config(node, Config),
    wait_until(fun() ->
                       case catch gen_server:call({echo, N}, pid, 1000) of
                           P when is_pid(P), P =/= Old -> true;
                           _ -> false
                       end
               end, 50).

wait_until(F, 0) -> ?assert(F());
wait_until(F, N) ->
    case F() of
        true -> ok;
        false -> timer:sleep(100), wait_until(F, N - 1)
    end.

%% ---- cases -----------------------------------------------------------------

%% The node offers what OTP 26-28 require of every peer, and ALTACT_SIG.
flags_offered(Config) ->
    {S, _, Flags} = otp28(Config),
    [?assertEqual(F, Flags band F) ||
        F <- [?DFLAG_V4_NC, ?DFLAG_UNLINK_ID, ?DFLAG_ALIAS, ?DFLAG_ALTACT_SIG,
              ?DFLAG_MANDATORY_25_DIGEST]],
    gen_tcp:close(S).

%% A call by name in REG_SEND: the reply comes as {37, ALIAS, Server, Alias}.
reply_as_altact(Config) ->
    {S, From, _} = otp28(Config),
    {Alias, Msg} = call_msg(From, {echo, hi}),
    ok = cn_raw_dist:send_frame(S, {6, From, '', echo}, Msg),
    {Ctl, Reply} = next(S),
    ?assertMatch({?ALTACT, ?ALIAS, _, Alias}, Ctl),
    ?assertEqual(echo_pid(Config), element(3, Ctl)),
    ?assertEqual({[alias | Alias], hi}, Reply),
    gen_tcp:close(S).

%% A peer without ALTACT_SIG (OTP 25-27) gets ALIAS_SEND.
reply_as_alias_send(Config) ->
    {S, From, _} = otp28(Config, cn_raw_dist:flags() bor ?DFLAG_ALIAS),
    {Alias, Msg} = call_msg(From, {echo, hi}),
    ok = cn_raw_dist:send_frame(S, {6, From, '', echo}, Msg),
    {Ctl, Reply} = next(S),
    ?assertMatch({33, _, Alias}, Ctl),
    ?assertEqual({[alias | Alias], hi}, Reply),
    gen_tcp:close(S).

%% Every message form of ALTACT_SIG_SEND reaches its process.
message_forms(Config) ->
    {S, From, _} = otp28(Config),
    Echo = echo_pid(Config),
    Token = {0, label, 1, From, 2},
    Forms = [{?NAME, echo, []},
             {?NAME bor ?PRIO, echo, []},
             {?NAME bor ?TOKEN, echo, [Token]},
             {0, Echo, []},
             {?PRIO, Echo, []},
             {?TOKEN bor ?PRIO, Echo, [Token]},
             %% Room to grow: more elements, and flags above the low byte
             %% (here a bignum), are ignored.
             {?NAME, echo, [Token, extra]},
             {(1 bsl 100) bor ?NAME, echo, []},
             {256, Echo, []}],
    [begin
         X = {form, F},
         {Ctl, Reply} = altact_call(S, From, F, To, Extra, {echo, X}),
         ?assertMatch({?ALTACT, ?ALIAS, Echo, _}, Ctl),
         ?assertEqual(X, Reply)
     end || {F, To, Extra} <- Forms],
    %% A message to a name nobody has is dropped, as erts drops it, and
    %% the connection stays up.
    {_, M} = call_msg(From, {echo, lost}),
    ok = cn_raw_dist:send_frame(S, {?ALTACT, ?NAME, From, no_such_name}, M),
    {_, ok} = altact_call(S, From, ?NAME, echo, [], {echo, ok}),
    gen_tcp:close(S).

%% An exit signal to a pid, {37, EXIT, From, Pid} with the reason as the
%% payload, kills it as exit/2 does; with PRIO too.
exit_to_pid(Config) ->
    [begin
         {S, From, _} = otp28(Config),
         Echo = echo_pid(Config),
         Ref = raw_monitor(S, From, Echo),
         ok = cn_raw_dist:send_frame(S, {?ALTACT, Flags, From, Echo},
                                     {shutdown, altact}),
         ?assertEqual({shutdown, altact}, down(S, Ref)),
         echo_back(Config, Echo),
         gen_tcp:close(S)
     end || Flags <- [?EXIT, ?EXIT bor ?PRIO]].

%% ... and to a registered name, {37, EXIT bor NAME, From, Name}; to a
%% name nobody has it is dropped.
exit_to_name(Config) ->
    {S, From, _} = otp28(Config),
    ok = cn_raw_dist:send_frame(S, {?ALTACT, ?EXIT bor ?NAME, From, nobody},
                                kill),
    Echo = echo_pid(Config),
    Ref = raw_monitor(S, From, Echo),
    ok = cn_raw_dist:send_frame(S, {?ALTACT, ?EXIT bor ?NAME, From, echo},
                                kill),
    ?assertEqual(killed, down(S, Ref)),
    echo_back(Config, Echo),
    gen_tcp:close(S).

%% ... and to an alias of the node's, {37, EXIT bor ALIAS, From, Alias}:
%% echo calls the fake node ({call, Dest, Req, Timeout}), which answers
%% with an exit signal to the alias of that call; echo dies of it.
exit_to_alias(Config) ->
    {S, From, _} = otp28(Config),
    Echo = echo_pid(Config),
    Ref = raw_monitor(S, From, Echo),
    {_, Msg} = call_msg(From, {call, From, ping, 5000}),
    ok = cn_raw_dist:send_frame(S, {6, From, '', echo}, Msg),
    Alias = wait_frame(S, fun(_, {'$gen_call', {P, [alias | A]}, ping})
                                when P =:= Echo -> {true, A};
                             (_, _) -> false
                          end),
    ?assertEqual(node(Echo), node(Alias)),
    ok = cn_raw_dist:send_frame(S, {?ALTACT, ?EXIT bor ?ALIAS, From, Alias},
                                kill),
    ?assertEqual(killed, wait_frame(S, fun({21, _, _, R, Why}, none)
                                             when R =:= Ref -> {true, Why};
                                          (_, _) -> false
                                       end)),
    echo_back(Config, Echo),
    gen_tcp:close(S).

%% What erts_net_message() refuses closes that connection (erts kills
%% the connection on an invalid control message), and only it: a real
%% OTP 25 node keeps calling.
malformed_closes(Config) ->
    N = ?config(node, Config),
    Bad = fun(From) ->
                  [{?ALTACT, ?ALIAS bor ?NAME, From, echo},
                   {?ALTACT, ?ALIAS, From, echo},
                   {?ALTACT, ?NAME, From, self()},
                   {?ALTACT, 0, From, echo},
                   {?ALTACT, -1, From, echo},
                   {?ALTACT, 1.5, From, echo},
                   {?ALTACT, ?TOKEN, From, echo_pid(Config)},
                   {?ALTACT, 0, From},
                   {?ALTACT, 0, echo, echo}]
          end,
    [begin
         {S, From, _} = otp28(Config),
         ok = cn_raw_dist:send_frame(S, Ctl(From), hello),
         ?assert(cn_raw_dist:closed_within(S, 5000)),
         hi = gen_server:call({echo, N}, {echo, hi}, 5000)
     end || Ctl <- [fun(F) -> lists:nth(I, Bad(F)) end
                    || I <- lists:seq(1, length(Bad(x)))]].
