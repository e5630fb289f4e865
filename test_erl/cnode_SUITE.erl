%% cnode_SUITE: the node's servers as a BEAM caller meets them.
%%
%% One node program is started for the whole suite; the test node calls its
%% kv and echo servers with plain gen_server calls, casts and messages, and
%% checks every answer, exit reason, DOWN and EXIT against what an Erlang
%% gen_server under an OTP supervisor would give.  Tests that stop echo wait
%% for the supervisor to restart it before they return.
-module(cnode_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0,
         init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).

-export([kv_put_get_delete/1, kv_keys_compare_exactly/1,
         kv_float_zero_key/1, kv_keys/1, kv_incr/1, kv_incr_limits/1,
         kv_incr_bignum/1, kv_unknown_call/1, kv_cast/1, kv_cast_stream/1, kv_info/1,
         echo_terms/1, echo_pid/1, echo_unknown_call/1, echo_badarg/1,
         echo_cast_and_info_ignored/1, echo_sleep_deferred/1,
         echo_sleep_parallel/1, echo_many_callers/1,
         alias_reply_goes_to_alias/1, plain_ref_tag_goes_to_pid/1,
         alias_extra_tag/1, late_reply_dropped/1,
         late_reply_to_inactive_alias/1, reply_to_dead_caller/1,
         send_request_collection/1,
         noproc_name/1, noproc_dead_pid/1, monitor_noproc_name/1,
         monitor_noproc_pid/1, send_to_missing_name/1,
         call_exit_reason/1, call_exit_complex_reason/1,
         call_exit_normal/1, waiting_caller_gets_exit_reason/1,
         killed_mid_call/1, monitor_down_name/1, monitor_down_pid/1,
         demonitor_no_down/1, two_monitors/1,
         link_exit_trapped/1, link_erlang_exit_kills_echo/1,
         link_erlang_normal_exit_ignored/1, unlink_no_exit/1,
         link_dead_pid_noproc/1, exit_kill/1, exit_normal_ignored/1,
         exit_reason/1,
         c_call_name/1, c_call_pid/1, c_call_wire_shape/1,
         c_call_timeout/1, c_call_noproc/1, c_call_exit_reason/1,
         c_call_server_killed/1, c_call_noconnection/1,
         c_call_local_servers/1, c_cast/1, c_send/1,
         ping/1, hidden_node/1, epmd_registration/1, which_children/1,
         count_children/1, which_children_after_restart/1,
         fixed_port/1, published_node/1, name_taken/1, bad_command_line/1,
         clean_stop/1]).

suite() ->
    [{timetrap, {seconds, 30}}].

all() ->
    [{group, kv}, {group, echo}, {group, alias}, {group, noproc},
     {group, exits}, {group, links}, {group, c_to_erlang}, {group, node}].

groups() ->
    [{kv, [], [kv_put_get_delete, kv_keys_compare_exactly, kv_float_zero_key,
               kv_keys, kv_incr, kv_incr_limits, kv_incr_bignum,
               kv_unknown_call, kv_cast, kv_cast_stream, kv_info]},
     {echo, [], [echo_terms, echo_pid, echo_unknown_call, echo_badarg,
                 echo_cast_and_info_ignored, echo_sleep_deferred,
                 echo_sleep_parallel, echo_many_callers]},
     {alias, [], [alias_reply_goes_to_alias, plain_ref_tag_goes_to_pid,
                  alias_extra_tag, late_reply_dropped,
                  late_reply_to_inactive_alias, reply_to_dead_caller,
                  send_request_collection]},
     {noproc, [], [noproc_name, noproc_dead_pid, monitor_noproc_name,
                   monitor_noproc_pid, send_to_missing_name]},
     {exits, [], [call_exit_reason, call_exit_complex_reason,
                  call_exit_normal, waiting_caller_gets_exit_reason,
                  killed_mid_call, monitor_down_name, monitor_down_pid,
                  demonitor_no_down, two_monitors]},
     {links, [], [link_exit_trapped, link_erlang_exit_kills_echo,
                  link_erlang_normal_exit_ignored, unlink_no_exit,
                  link_dead_pid_noproc, exit_kill, exit_normal_ignored,
                  exit_reason]},
     {c_to_erlang, [], [c_call_name, c_call_pid, c_call_wire_shape,
                        c_call_timeout, c_call_noproc, c_call_exit_reason,
                        c_call_server_killed, c_call_noconnection,
                        c_call_local_servers, c_cast, c_send]},
     {node, [], [ping, hidden_node, epmd_registration, which_children,
                 count_children, which_children_after_restart,
                 fixed_port, published_node, name_taken, bad_command_line,
                 clean_stop]}].

init_per_suite(Config) ->
    CN = cn_node:start(),
    ct:log("node ~p, port ~p, os pid ~s, log ~s",
           [cn_node:node_name(CN), cn_node:port(CN), cn_node:os_pid(CN),
            cn_node:log_file(CN)]),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

init_per_testcase(_TC, Config) ->
    %% Every case starts with a live echo and an empty mailbox.
    _ = cn_node:wait_restarted(?config(node, Config), undefined),
    [] = cn_node:flush(),
    Config.

end_per_testcase(_TC, _Config) ->
    ok.

%% ---- helpers ---------------------------------------------------------------

cnode(Config) -> ?config(node, Config).

kv(Config, Req) -> gen_server:call({kv, cnode(Config)}, Req, 5000).

echo(Config, Req) -> gen_server:call({echo, cnode(Config)}, Req, 5000).

key() -> {key, erlang:unique_integer([positive])}.

%% A list of terms in an order that tells 1 from 1.0 (lists:sort does not),
%% for comparing lists as multisets.
canon(L) ->
    lists:sort([{T, term_to_binary(T, [deterministic])} || T <- L]).

%% Waits for a DOWN of Ref and returns its reason.
down(Ref) ->
    down(Ref, 5000).

down(Ref, Ms) ->
    receive {'DOWN', Ref, process, _, Reason} -> Reason
    after Ms -> ct:fail({no_down, Ref})
    end.

%% Stops echo through a cast with Reason and waits for the restart; returns
%% the new pid.
stop_echo(Config, Reason) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    gen_server:cast({echo, N}, {stop, Reason}),
    Reason = down(Ref),
    cn_node:wait_restarted(N, Old).

%% A pid of echo that has died (echo has been restarted since).
dead_echo_pid(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    _ = stop_echo(Config, make_dead),
    Old.

%% Runs Fun in a new process and returns a function that waits for its
%% result ({ok, Value} or {exit, Reason}).
async(Fun) ->
    Parent = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  R = try {ok, Fun()} catch exit:Reason -> {exit, Reason} end,
                  Parent ! {Ref, R}
          end),
    fun() ->
            receive {Ref, R} -> R
            after 20000 -> ct:fail(async_timeout)
            end
    end.

%% Sends a raw '$gen_call' to echo with From = {self(), Tag}.
raw_call(Config, Tag, Req) ->
    {echo, cnode(Config)} ! {'$gen_call', {self(), Tag}, Req},
    ok.

%% A process that creates an alias, hands it over and reports the first
%% message it receives within Ms (or nothing).
alias_owner(Ms) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        A = erlang:alias(),
                        Parent ! {alias, self(), A},
                        receive M -> Parent ! {alias_got, self(), M}
                        after Ms -> Parent ! {alias_nothing, self()}
                        end
                end),
    receive {alias, Pid, A} -> {Pid, A} end.

%% ---- kv ----------------------------------------------------------------------

kv_put_get_delete(Config) ->
    K = key(),
    error = kv(Config, {get, K}),
    ok = kv(Config, {put, K, v1}),
    {ok, v1} = kv(Config, {get, K}),
    V2 = #{value => [2, <<"two">>, {2.0}]},
    ok = kv(Config, {put, K, V2}),
    {ok, V2Back} = kv(Config, {get, K}),
    ?assert(V2Back =:= V2),
    ok = kv(Config, {delete, K}),
    error = kv(Config, {get, K}),
    %% Deleting a missing key is fine too.
    ok = kv(Config, {delete, K}),
    error = kv(Config, {get, K}).

%% Keys are any terms and compare as =:=: 1 and 1.0, "a" and <<"a">>, {a}
%% and [a] are distinct keys; equal maps built in different orders are one.
kv_keys_compare_exactly(Config) ->
    U = erlang:unique_integer([positive]),
    Pairs = [{{U, 1}, int}, {{U, 1.0}, float}, {{U, "a"}, string},
             {{U, <<"a">>}, binary}, {{U, {a}}, tuple}, {{U, [a]}, list},
             {{U, 'a'}, atom}, {{U, 1 bsl 70}, bignum},
             {{U, -(1 bsl 70)}, negative_bignum}, {{U, <<1:3>>}, bits},
             {{U, #{a => 1, b => 2}}, small_map},
             {{U, self()}, pid_key}],
    [ok = kv(Config, {put, K, V}) || {K, V} <- Pairs],
    [{K, {ok, V}} = {K, kv(Config, {get, K})} || {K, V} <- Pairs],
    %% The same map, built another way.
    {ok, small_map} = kv(Config, {get, {U, maps:from_list([{b, 2}, {a, 1}])}}),
    %% A large (hashed) map key, built in two orders.
    Big1 = maps:from_list([{I, I * I} || I <- lists:seq(1, 100)]),
    Big2 = maps:from_list([{I, I * I} || I <- lists:seq(100, 1, -1)]),
    ok = kv(Config, {put, {U, Big1}, big_map}),
    {ok, big_map} = kv(Config, {get, {U, Big2}}),
    error = kv(Config, {get, {U, Big2#{101 => 0}}}),
    error = kv(Config, {get, {U, 2}}),
    [ok = kv(Config, {delete, K}) || {K, _} <- Pairs],
    ok = kv(Config, {delete, {U, Big1}}).

%% On OTP 25, 0.0 =:= -0.0, so they are one key.
kv_float_zero_key(Config) ->
    U = erlang:unique_integer([positive]),
    ?assert(0.0 =:= -0.0),
    ok = kv(Config, {put, {U, 0.0}, zero}),
    {ok, zero} = kv(Config, {get, {U, -0.0}}),
    ok = kv(Config, {delete, {U, -0.0}}),
    error = kv(Config, {get, {U, 0.0}}).

kv_keys(Config) ->
    [ok = kv(Config, {delete, K}) || K <- kv(Config, keys)],
    [] = kv(Config, keys),
    Keys = [a, <<"b">>, "c", 1, 1.0, {tuple, key}, [list, key],
            #{map => key}, 1 bsl 80, self()],
    [ok = kv(Config, {put, K, x}) || K <- Keys],
    %% Putting an existing key again does not duplicate it.
    ok = kv(Config, {put, a, y}),
    Got = kv(Config, keys),
    ?assertEqual(canon(Keys), canon(Got)),
    ok = kv(Config, {delete, 1}),
    ?assertEqual(canon(Keys -- [1]), canon(kv(Config, keys))),
    [ok = kv(Config, {delete, K}) || K <- Keys],
    [] = kv(Config, keys).

kv_incr(Config) ->
    K = key(),
    {ok, 5} = kv(Config, {incr, K, 5}),
    {ok, 5} = kv(Config, {get, K}),
    {ok, 12} = kv(Config, {incr, K, 7}),
    {ok, -3} = kv(Config, {incr, K, -15}),
    {ok, -3} = kv(Config, {incr, K, 0}),
    {ok, -3} = kv(Config, {get, K}),
    %% A non-integer N.
    {error, badarg} = kv(Config, {incr, K, 1.0}),
    {error, badarg} = kv(Config, {incr, K, one}),
    {error, badarg} = kv(Config, {incr, K, "1"}),
    {ok, -3} = kv(Config, {get, K}),
    %% A non-integer value.
    [begin
         ok = kv(Config, {put, K, V}),
         {error, not_integer} = kv(Config, {incr, K, 1}),
         {ok, V} = kv(Config, {get, K})
     end || V <- [1.0, <<"1">>, "1", one, {1}, [1]]],
    ok = kv(Config, {delete, K}).

kv_incr_limits(Config) ->
    Max = (1 bsl 63) - 1,
    Min = -(1 bsl 63),
    K = key(),
    ok = kv(Config, {put, K, Max - 1}),
    {ok, Max} = kv(Config, {incr, K, 1}),
    {error, overflow} = kv(Config, {incr, K, 1}),
    {ok, Max} = kv(Config, {get, K}),
    {error, overflow} = kv(Config, {incr, K, Max}),
    {ok, Max} = kv(Config, {get, K}),
    {ok, -1} = kv(Config, {incr, K, Min}),
    ok = kv(Config, {put, K, Min + 1}),
    {ok, Min} = kv(Config, {incr, K, -1}),
    {error, overflow} = kv(Config, {incr, K, -1}),
    {ok, Min} = kv(Config, {get, K}),
    {ok, -1} = kv(Config, {incr, K, Max}),
    %% A missing key counts as 0 and stays missing when the result
    %% overflows.
    K2 = key(),
    {ok, Max} = kv(Config, {incr, K2, Max}),
    K3 = key(),
    {ok, Min} = kv(Config, {incr, K3, Min}),
    K4 = key(),
    {error, overflow} = kv(Config, {incr, K4, Max + 1}),
    error = kv(Config, {get, K4}),
    [ok = kv(Config, {delete, X}) || X <- [K, K2, K3]].

%% N and the value are integers of any size; only the result must fit in
%% 64 bits.
kv_incr_bignum(Config) ->
    K = key(),
    Big = 1 bsl 64,
    ok = kv(Config, {put, K, Big}),
    {error, overflow} = kv(Config, {incr, K, 1}),
    {ok, Big} = kv(Config, {get, K}),
    {ok, 5} = kv(Config, {incr, K, 5 - Big}),
    {ok, 5} = kv(Config, {get, K}),
    {error, overflow} = kv(Config, {incr, K, 1 bsl 100}),
    {ok, 5} = kv(Config, {get, K}),
    ok = kv(Config, {delete, K}).

kv_unknown_call(Config) ->
    [{Req, {error, unknown_call}} = {Req, kv(Config, Req)}
     || Req <- [foo, "keys", 42, {get}, {put, a}, {delete}, {incr, a},
                {get, a, b}, {keys}, {}, #{get => a}, <<"get">>]],
    ok.

kv_cast(Config) ->
    N = cnode(Config),
    K = key(),
    ok = gen_server:cast({kv, N}, {put, K, cast_value}),
    {ok, cast_value} = kv(Config, {get, K}),
    ok = gen_server:cast({kv, N}, {delete, K}),
    error = kv(Config, {get, K}),
    %% Other casts are ignored: even incr, which is a call.
    [ok = gen_server:cast({kv, N}, C)
     || C <- [{incr, K, 1}, {get, K}, keys, foo, {put, K}, {}]],
    error = kv(Config, {get, K}).

%% Streams of casts, where the node holds still between reads (one-way
%% coalescing): 4 processes cast 25000 puts each, every one of them lands,
%% in each sender's order, and a call right after is answered at once.
kv_cast_stream(Config) ->
    N = cnode(Config),
    Ks = [key() || _ <- lists:seq(1, 4)],
    Self = self(),
    Ps = [spawn_link(fun() ->
                             [gen_server:cast({kv, N}, {put, {K, I rem 100}, I})
                              || I <- lists:seq(1, 25000)],
                             gen_server:cast({kv, N}, {put, K, done}),
                             Self ! {sent, self()}
                     end) || K <- Ks],
    [receive {sent, P} -> ok after 60000 -> ct:fail(sender_stuck) end
     || P <- Ps],
    {T, Done} = timer:tc(fun() -> [kv(Config, {get, K}) || K <- Ks] end),
    [{ok, done}] = lists:usort(Done),
    %% The last put of each key wins: for {K, J}, the last I with
    %% I rem 100 =:= J.
    [{K, J, {ok, V}} = {K, J, kv(Config, {get, {K, J}})}
     || K <- Ks, J <- [0, 1, 50, 99], V <- [25000 - (100 - J) rem 100]],
    ct:pal("4 x 25000 casts; the calls after them: ~p us", [T]),
    true = T < 1000000,
    [ok = kv(Config, {delete, {K, J}}) || K <- Ks, J <- lists:seq(0, 99)],
    [ok = kv(Config, {delete, K}) || K <- Ks].

%% Plain messages are ignored (handle_info), even ones shaped like requests.
kv_info(Config) ->
    N = cnode(Config),
    K = key(),
    [{kv, N} ! M || M <- [hello, {put, K, v}, {'$gen_cast', {put, K}},
                          {'$gen_cast'}, <<1, 2, 3>>, [1 | 2],
                          {'$gen_cast', {put, K, v}, extra}]],
    error = kv(Config, {get, K}),
    ok = kv(Config, {put, K, v}),
    {ok, v} = kv(Config, {get, K}),
    ok = kv(Config, {delete, K}).

%% ---- echo ------------------------------------------------------------------

echo_terms(Config) ->
    Terms = [a, 1, -1, 1.5, -0.0, 1 bsl 200, -(1 bsl 200), <<>>, <<"bin">>,
             <<1:1>>, [], [1, 2 | 3], "string", {}, {a, {b, {c}}}, #{},
             #{k => [v]}, self(), make_ref(), fun erlang:node/0,
             'ünïcødé', '日本語', <<"日本語"/utf8>>,
             maps:from_list([{I, <<I>>} || I <- lists:seq(1, 64)])],
    [?assert(T =:= echo(Config, {echo, T})) || T <- Terms],
    ok.

echo_pid(Config) ->
    N = cnode(Config),
    P = echo(Config, pid),
    ?assert(is_pid(P)),
    ?assertEqual(N, erlang:node(P)),
    P = echo(Config, pid),
    %% The pid can be called directly.
    hi = gen_server:call(P, {echo, hi}, 5000).

echo_unknown_call(Config) ->
    [{error, unknown_call} = echo(Config, Req)
     || Req <- [foo, 42, "echo", {unknown, 1}, {}, <<"pid">>, #{}]],
    ok.

echo_badarg(Config) ->
    [{Req, {error, badarg}} = {Req, echo(Config, Req)}
     || Req <- [{sleep, foo}, {sleep, 1.5}, {sleep, <<"10">>},
                {call, 42, x, 100}, {call, {a, b, c}, x, 100},
                {call, {name, 42}, x, 100}, {call, self(), x, foo},
                {cast, 42, x}, {cast, "name", x}, {cast, {a, b, c}, x}]],
    %% Still the same server.
    P = echo(Config, pid),
    P = echo(Config, pid).

echo_cast_and_info_ignored(Config) ->
    N = cnode(Config),
    P = echo(Config, pid),
    [ok = gen_server:cast({echo, N}, C)
     || C <- [foo, {echo, x}, pid, {unknown, 1}, {stop}, {send, x}]],
    [{echo, N} ! M || M <- [hello, {stop, info_is_not_a_cast},
                            {'$gen_cast', {stop}}, {send, self(), x}]],
    P = echo(Config, pid),
    [] = cn_node:flush(200).

%% A sleeping call does not hold up the node, nor echo itself.
echo_sleep_deferred(Config) ->
    T0 = erlang:monotonic_time(),
    Wait = async(fun() -> echo(Config, {sleep, 1000}) end),
    timer:sleep(50),
    T1 = erlang:monotonic_time(),
    quick = echo(Config, {echo, quick}),
    error = kv(Config, {get, key()}),
    ?assert(cn_node:elapsed_ms(T1) < 500),
    {ok, ok} = Wait(),
    Ms = cn_node:elapsed_ms(T0),
    ct:log("sleep 1000 took ~p ms", [Ms]),
    ?assert(Ms >= 990),
    ?assert(Ms < 3000).

echo_sleep_parallel(Config) ->
    T0 = erlang:monotonic_time(),
    Waits = [async(fun() -> echo(Config, {sleep, 500}) end)
             || _ <- lists:seq(1, 20)],
    [{ok, ok} = W() || W <- Waits],
    Ms = cn_node:elapsed_ms(T0),
    ct:log("20 parallel sleeps of 500 ms took ~p ms", [Ms]),
    ?assert(Ms < 2500).

%% 32 callers keep calls in flight for a few seconds: enough load for the
%% node's coalescing (README "Coalescing") to hold between turns.  Every
%% caller gets its own answer to every call, and no call waits anywhere
%% near a second (a hold is at most 400 us; a lost wake-up would show).
echo_many_callers(Config) ->
    Node = cnode(Config),
    Waits = [async(fun() -> many_calls(Node, C, 1500, 0) end)
             || C <- lists:seq(1, 32)],
    Worst = lists:max([begin {ok, W} = Wait(), W end || Wait <- Waits]),
    ct:log("32 x 1500 calls; slowest call ~p ms", [Worst]),
    ?assert(Worst < 1000).

many_calls(_, _, 0, Worst) -> Worst;
many_calls(Node, C, I, Worst) ->
    Self = self(),
    T0 = erlang:monotonic_time(),
    {C, I, Self} = gen_server:call({echo, Node}, {echo, {C, I, Self}}, 5000),
    many_calls(Node, C, I - 1, max(Worst, cn_node:elapsed_ms(T0))).

%% ---- alias replies ---------------------------------------------------------

%% A call tagged [alias|A] is answered to the alias A, not to the pid in
%% From: here the alias belongs to another process than From.
alias_reply_goes_to_alias(Config) ->
    {Owner, A} = alias_owner(3000),
    Tag = [alias | A],
    raw_call(Config, Tag, {echo, via_alias}),
    receive {alias_got, Owner, M} -> {Tag, via_alias} = M
    after 5000 -> ct:fail(no_reply_at_alias)
    end,
    [] = cn_node:flush(100).

%% A plain reference tag is answered to the pid.
plain_ref_tag_goes_to_pid(Config) ->
    Ref = make_ref(),
    raw_call(Config, Ref, {echo, plain}),
    receive {Ref, plain} -> ok
    after 5000 -> ct:fail(no_reply)
    end,
    %% A deferred reply, too.
    Ref2 = make_ref(),
    raw_call(Config, Ref2, {sleep, 50}),
    receive {Ref2, ok} -> ok
    after 5000 -> ct:fail(no_deferred_reply)
    end.

%% [[alias|A]|Extra] (gen_server:send_request with a request id
%% collection, reply tags of OTP 25+) is answered to A, tag unchanged.
alias_extra_tag(Config) ->
    {Owner, A} = alias_owner(3000),
    Tag = [[alias | A] | {extra, 1}],
    raw_call(Config, Tag, {echo, extra}),
    receive {alias_got, Owner, M} -> {Tag, extra} = M
    after 5000 -> ct:fail(no_reply_at_alias)
    end,
    {Owner2, A2} = alias_owner(3000),
    Tag2 = [[alias | A2] | extra],
    raw_call(Config, Tag2, {sleep, 20}),
    receive {alias_got, Owner2, M2} -> {Tag2, ok} = M2
    after 5000 -> ct:fail(no_deferred_reply_at_alias)
    end,
    [] = cn_node:flush(100).

%% gen_server:call times out; the reply that comes later never reaches the
%% caller's mailbox.
late_reply_dropped(Config) ->
    N = cnode(Config),
    {'EXIT', {timeout, {gen_server, call, [{echo, N}, {sleep, 300}, 100]}}} =
        (catch gen_server:call({echo, N}, {sleep, 300}, 100)),
    timer:sleep(500),
    [] = cn_node:flush(),
    still = echo(Config, {echo, still}).

%% The reply to a deactivated alias is dropped although From's pid lives:
%% the node answers through the alias, not the pid.
late_reply_to_inactive_alias(Config) ->
    A = erlang:alias([explicit_unalias]),
    raw_call(Config, [alias | A], {sleep, 200}),
    true = erlang:unalias(A),
    [] = cn_node:flush(600),
    B = erlang:alias([explicit_unalias]),
    raw_call(Config, [alias | B], {echo, active}),
    receive {[alias | B], active} -> ok
    after 5000 -> ct:fail(no_reply)
    end,
    erlang:unalias(B).

%% A caller that died before the reply: the reply goes nowhere, echo lives.
reply_to_dead_caller(Config) ->
    N = cnode(Config),
    P = echo(Config, pid),
    Caller = spawn(fun() -> gen_server:call({echo, N}, {sleep, 100}) end),
    timer:sleep(20),
    exit(Caller, kill),
    Dead = spawn(fun() -> ok end),
    timer:sleep(20),
    {echo, N} ! {'$gen_call', {Dead, make_ref()}, {echo, to_the_dead}},
    timer:sleep(200),
    P = echo(Config, pid).

%% gen_server:send_request with a request id collection (OTP 25), to both
%% servers at once, answered out of order.
send_request_collection(Config) ->
    N = cnode(Config),
    K = key(),
    ok = kv(Config, {put, K, 1}),
    C0 = gen_server:reqids_new(),
    C1 = gen_server:send_request({echo, N}, {sleep, 200}, slow, C0),
    C2 = gen_server:send_request({echo, N}, {echo, fast}, fast, C1),
    C3 = gen_server:send_request({kv, N}, {get, K}, kv, C2),
    C4 = gen_server:send_request({no_such_server, N}, x, missing, C3),
    {R1, L1, C5} = gen_server:receive_response(C4, 5000, true),
    {R2, L2, C6} = gen_server:receive_response(C5, 5000, true),
    {R3, L3, C7} = gen_server:receive_response(C6, 5000, true),
    {R4, L4, C8} = gen_server:receive_response(C7, 5000, true),
    no_request = gen_server:receive_response(C8, 5000, true),
    Got = lists:sort([{L1, R1}, {L2, R2}, {L3, R3}, {L4, R4}]),
    [{fast, {reply, fast}}, {kv, {reply, {ok, 1}}},
     {missing, {error, {noproc, _}}}, {slow, {reply, ok}}] = Got,
    %% slow came last.
    slow = L4,
    ok = kv(Config, {delete, K}).

%% ---- noproc ----------------------------------------------------------------

noproc_name(Config) ->
    N = cnode(Config),
    _ = echo(Config, pid),           % the connection is up
    [begin
         T0 = erlang:monotonic_time(),
         {'EXIT', {noproc, {gen_server, call, [{Name, N}, x, 5000]}}} =
             (catch gen_server:call({Name, N}, x, 5000)),
         Ms = cn_node:elapsed_ms(T0),
         ct:log("noproc for ~p in ~p ms", [Name, Ms]),
         ?assert(Ms < 100)
     end || Name <- [no_such_server, cnode_kv, 'ünïcødé_name', net_kernel_x]],
    ok.

noproc_dead_pid(Config) ->
    Old = dead_echo_pid(Config),
    T0 = erlang:monotonic_time(),
    {'EXIT', {noproc, {gen_server, call, [Old, pid, 5000]}}} =
        (catch gen_server:call(Old, pid, 5000)),
    Ms = cn_node:elapsed_ms(T0),
    ct:log("noproc for a dead pid in ~p ms", [Ms]),
    ?assert(Ms < 100).

monitor_noproc_name(Config) ->
    N = cnode(Config),
    _ = echo(Config, pid),
    T0 = erlang:monotonic_time(),
    Ref = erlang:monitor(process, {no_such_server, N}),
    receive
        {'DOWN', Ref, process, {no_such_server, N}, noproc} -> ok
    after 1000 -> ct:fail({no_down, cn_node:flush()})
    end,
    ?assert(cn_node:elapsed_ms(T0) < 100).

monitor_noproc_pid(Config) ->
    Old = dead_echo_pid(Config),
    T0 = erlang:monotonic_time(),
    Ref = erlang:monitor(process, Old),
    receive
        {'DOWN', Ref, process, Old, noproc} -> ok
    after 1000 -> ct:fail({no_down, cn_node:flush()})
    end,
    ?assert(cn_node:elapsed_ms(T0) < 100).

%% Sends and casts to a missing name or a dead pid are dropped silently.
send_to_missing_name(Config) ->
    N = cnode(Config),
    Old = dead_echo_pid(Config),
    {no_such_server, N} ! hello,
    Old ! hello,
    ok = gen_server:cast({no_such_server, N}, hello),
    ok = gen_server:cast(Old, hello),
    same = echo(Config, {echo, same}),
    [] = cn_node:flush(100).

%% ---- exit reasons and monitors ---------------------------------------------

call_exit_reason(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    {'EXIT', {my_reason, {gen_server, call, [{echo, N}, {stop, my_reason}]}}} =
        (catch gen_server:call({echo, N}, {stop, my_reason})),
    New = cn_node:wait_restarted(N, Old),
    ?assert(New =/= Old),
    back = echo(Config, {echo, back}).

call_exit_complex_reason(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Reason = {shutdown, {a, [1, 2 | 3], <<"b">>, #{k => 1.5}, self()}},
    {'EXIT', {Got, {gen_server, call, [{echo, N}, {stop, Reason}, 5000]}}} =
        (catch gen_server:call({echo, N}, {stop, Reason}, 5000)),
    ?assert(Got =:= Reason),
    _ = cn_node:wait_restarted(N, Old).

%% Even normal reaches the caller, and the (permanent) child is restarted.
call_exit_normal(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    {'EXIT', {normal, {gen_server, call, [{echo, N}, {stop, normal}]}}} =
        (catch gen_server:call({echo, N}, {stop, normal})),
    _ = cn_node:wait_restarted(N, Old).

%% A caller waiting on a deferred reply gets the reason of the server's
%% death at once.
waiting_caller_gets_exit_reason(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Wait = async(fun() -> gen_server:call({echo, N}, {sleep, 10000}, 15000) end),
    timer:sleep(100),
    T0 = erlang:monotonic_time(),
    ok = gen_server:cast({echo, N}, {stop, stopped_during_call}),
    {exit, {stopped_during_call,
            {gen_server, call, [{echo, N}, {sleep, 10000}, 15000]}}} = Wait(),
    ?assert(cn_node:elapsed_ms(T0) < 1000),
    _ = cn_node:wait_restarted(N, Old).

killed_mid_call(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Wait = async(fun() -> gen_server:call(Old, {sleep, 10000}, 15000) end),
    timer:sleep(100),
    true = exit(Old, kill),
    {exit, {killed, {gen_server, call, [Old, {sleep, 10000}, 15000]}}} = Wait(),
    _ = cn_node:wait_restarted(N, Old).

monitor_down_name(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, {echo, N}),
    ok = gen_server:cast({echo, N}, {stop, {down, 1}}),
    receive
        {'DOWN', Ref, process, {echo, N}, {down, 1}} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    _ = cn_node:wait_restarted(N, Old).

monitor_down_pid(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    {'EXIT', {{down, 2}, _}} = (catch echo(Config, {stop, {down, 2}})),
    receive
        {'DOWN', Ref, process, Old, {down, 2}} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    _ = cn_node:wait_restarted(N, Old).

demonitor_no_down(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref1 = erlang:monitor(process, Old),
    Ref2 = erlang:monitor(process, {echo, N}),
    true = erlang:demonitor(Ref1),
    true = erlang:demonitor(Ref2),
    Ref3 = erlang:monitor(process, Old),
    ok = gen_server:cast({echo, N}, {stop, after_demonitor}),
    after_demonitor = down(Ref3),
    [] = cn_node:flush(200),
    _ = cn_node:wait_restarted(N, Old).

two_monitors(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref1 = erlang:monitor(process, Old),
    Ref2 = erlang:monitor(process, Old),
    Ref3 = erlang:monitor(process, {echo, N}),
    ok = gen_server:cast({echo, N}, {stop, twice}),
    twice = down(Ref1),
    twice = down(Ref2),
    twice = down(Ref3),
    _ = cn_node:wait_restarted(N, Old).

%% ---- links and exit signals ------------------------------------------------

link_exit_trapped(Config) ->
    N = cnode(Config),
    process_flag(trap_exit, true),
    Old = cn_node:echo_pid(N),
    true = link(Old),
    ok = gen_server:cast({echo, N}, {stop, linked_reason}),
    receive
        {'EXIT', Old, linked_reason} -> ok
    after 5000 -> ct:fail({no_exit, cn_node:flush()})
    end,
    _ = cn_node:wait_restarted(N, Old).

%% An Erlang process linked to echo dies: echo (not trapping exits) dies
%% with the same reason.
link_erlang_exit_kills_echo(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    _ = spawn(fun() -> true = link(Old), exit(boom_from_erlang) end),
    boom_from_erlang = down(Ref),
    _ = cn_node:wait_restarted(N, Old).

link_erlang_normal_exit_ignored(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    {_, PRef} = spawn_monitor(fun() -> true = link(Old), exit(normal) end),
    normal = down(PRef),
    [] = cn_node:flush(300),
    Old = cn_node:echo_pid(N),
    true = erlang:demonitor(Ref, [flush]).

unlink_no_exit(Config) ->
    N = cnode(Config),
    process_flag(trap_exit, true),
    Old = cn_node:echo_pid(N),
    true = link(Old),
    true = unlink(Old),
    Ref = erlang:monitor(process, Old),
    ok = gen_server:cast({echo, N}, {stop, after_unlink}),
    after_unlink = down(Ref),
    [] = cn_node:flush(300),
    %% The echo restarted since: link, and an unlink right before the exit.
    New = cn_node:wait_restarted(N, Old),
    true = link(New),
    Ref2 = erlang:monitor(process, New),
    true = unlink(New),
    ok = gen_server:cast({echo, N}, {stop, right_after_unlink}),
    right_after_unlink = down(Ref2),
    [] = cn_node:flush(300),
    _ = cn_node:wait_restarted(N, New).

link_dead_pid_noproc(Config) ->
    process_flag(trap_exit, true),
    Old = dead_echo_pid(Config),
    true = link(Old),
    receive
        {'EXIT', Old, noproc} -> ok
    after 5000 -> ct:fail({no_exit, cn_node:flush()})
    end.

exit_kill(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    true = exit(Old, kill),
    killed = down(Ref),
    New = cn_node:wait_restarted(N, Old),
    ?assert(New =/= Old).

exit_normal_ignored(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    true = exit(Old, normal),
    [] = cn_node:flush(300),
    Old = cn_node:echo_pid(N),
    true = erlang:demonitor(Ref, [flush]).

exit_reason(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    Ref = erlang:monitor(process, Old),
    Reason = {exit_signal, [1, 2.5, <<"r">>]},
    true = exit(Old, Reason),
    Reason = down(Ref),
    _ = cn_node:wait_restarted(N, Old).

%% ---- C calling Erlang --------------------------------------------------------

srv_name() ->
    list_to_atom("cn_srv_" ++ integer_to_list(erlang:unique_integer([positive]))).

c_call_name(Config) ->
    Name = srv_name(),
    {ok, Pid} = cn_erl_server:start(Name),
    {ok, {got, {hello, 1}}} =
        echo(Config, {call, {Name, node()}, {hello, 1}, 2000}),
    Big = lists:seq(1, 1000),
    {ok, {got, Big}} = echo(Config, {call, {Name, node()}, Big, 2000}),
    gen_server:stop(Pid).

c_call_pid(Config) ->
    {ok, Pid} = cn_erl_server:start(),
    {ok, {got, by_pid}} = echo(Config, {call, Pid, by_pid, 2000}),
    %% A deferred reply from the Erlang side.
    {ok, ok} = echo(Config, {call, Pid, {sleep, 200}, 2000}),
    gen_server:stop(Pid).

%% What the C server puts on the wire: a '$gen_call' from a pid of the node,
%% tagged with an alias ([alias|Ref]), monitoring the server meanwhile.
c_call_wire_shape(Config) ->
    N = cnode(Config),
    Name = srv_name(),
    true = register(Name, self()),
    Wait = async(fun() -> echo(Config, {call, {Name, node()}, shape, 5000}) end),
    receive
        {'$gen_call', {From, Tag} = FromTag, shape} ->
            ct:log("From ~p, tag ~p", [From, Tag]),
            ?assertEqual(N, erlang:node(From)),
            ?assertMatch([alias | R] when is_reference(R), Tag),
            {monitored_by, By} = process_info(self(), monitored_by),
            ct:log("monitored by ~p", [By]),
            ?assert(lists:member(From, By)),
            gen_server:reply(FromTag, {shape, ok})
    after 5000 -> ct:fail({no_call, cn_node:flush()})
    end,
    {ok, {ok, {shape, ok}}} = Wait(),
    %% The monitor is gone once the call is done.
    ok = cn_node:wait_until(
           fun() ->
                   {monitored_by, By2} = process_info(self(), monitored_by),
                   not lists:any(fun(P) -> erlang:node(P) =:= N end, By2)
           end, 2000),
    unregister(Name).

%% The call times out on the C side; the late reply is dropped there and
%% echo goes on serving.
c_call_timeout(Config) ->
    N = cnode(Config),
    P = echo(Config, pid),
    {ok, Srv} = cn_erl_server:start(),
    T0 = erlang:monotonic_time(),
    {error, timeout} = echo(Config, {call, Srv, noreply, 200}),
    Ms = cn_node:elapsed_ms(T0),
    ct:log("timeout of 200 ms after ~p ms", [Ms]),
    ?assert(Ms >= 190),
    ?assert(Ms < 1500),
    %% Answer late, by hand.
    Name = srv_name(),
    true = register(Name, self()),
    Wait = async(fun() -> echo(Config, {call, {Name, node()}, late, 200}) end),
    FromTag = receive {'$gen_call', FT, late} -> FT
              after 5000 -> ct:fail(no_call)
              end,
    {ok, {error, timeout}} = Wait(),
    gen_server:reply(FromTag, too_late),
    timer:sleep(100),
    P = echo(Config, pid),
    {ok, {got, after_late}} = echo(Config, {call, Srv, after_late, 2000}),
    unregister(Name),
    gen_server:stop(Srv),
    _ = N.

c_call_noproc(Config) ->
    T0 = erlang:monotonic_time(),
    {error, noproc} = echo(Config, {call, {no_such_server, node()}, x, 5000}),
    ?assert(cn_node:elapsed_ms(T0) < 1000),
    Dead = spawn(fun() -> ok end),
    timer:sleep(20),
    T1 = erlang:monotonic_time(),
    {error, noproc} = echo(Config, {call, Dead, x, 5000}),
    ?assert(cn_node:elapsed_ms(T1) < 1000).

c_call_exit_reason(Config) ->
    {ok, Srv} = cn_erl_server:start(),
    Reason = {custom, [reason, 1]},
    {error, Reason} = echo(Config, {call, Srv, {stop, Reason}, 5000}),
    {ok, Srv2} = cn_erl_server:start(),
    {error, normal} = echo(Config, {call, Srv2, {stop, normal}, 5000}).

c_call_server_killed(Config) ->
    Name = srv_name(),
    Victim = spawn(fun() -> receive never -> ok end end),
    true = register(Name, Victim),
    Wait = async(fun() -> echo(Config, {call, {Name, node()}, x, 10000}) end),
    timer:sleep(200),
    T0 = erlang:monotonic_time(),
    true = exit(Victim, kill),
    {ok, {error, killed}} = Wait(),
    ?assert(cn_node:elapsed_ms(T0) < 2000).

c_call_noconnection(Config) ->
    Nowhere = list_to_atom("nobody_" ++ cn_node:uniq() ++ "@" ++ host()),
    T0 = erlang:monotonic_time(),
    {error, noconnection} = echo(Config, {call, {x, Nowhere}, x, 3000}),
    ct:log("noconnection after ~p ms", [cn_node:elapsed_ms(T0)]),
    same = echo(Config, {echo, same}).

%% The same call from echo to servers on its own node, by {Name, Node} and
%% by pid; calling itself fails as gen_server:call does (calling_self).
c_call_local_servers(Config) ->
    N = cnode(Config),
    K = key(),
    {ok, ok} = echo(Config, {call, {kv, N}, {put, K, local}, 2000}),
    {ok, {ok, local}} = echo(Config, {call, {kv, N}, {get, K}, 2000}),
    [_, {kv, KvPid, _, _}] = supervisor:which_children({cnode_sup, N}),
    {ok, ok} = echo(Config, {call, KvPid, {delete, K}, 2000}),
    {ok, error} = echo(Config, {call, {kv, N}, {get, K}, 2000}),
    {error, noproc} = echo(Config, {call, {no_such_server, N}, x, 2000}),
    {ok, [{specs, 2} | _]} =
        echo(Config, {call, {cnode_sup, N}, count_children, 2000}),
    {error, calling_self} = echo(Config, {call, {echo, N}, {echo, x}, 2000}),
    {error, calling_self} = echo(Config, {call, echo(Config, pid), pid, 2000}).

c_cast(Config) ->
    Name = srv_name(),
    true = register(Name, self()),
    ok = echo(Config, {cast, {Name, node()}, hello_by_name}),
    receive {'$gen_cast', hello_by_name} -> ok
    after 5000 -> ct:fail({no_cast, cn_node:flush()})
    end,
    ok = echo(Config, {cast, self(), {hello, by_pid}}),
    receive {'$gen_cast', {hello, by_pid}} -> ok
    after 5000 -> ct:fail({no_cast, cn_node:flush()})
    end,
    {ok, Srv} = cn_erl_server:start(),
    ok = echo(Config, {cast, Srv, to_a_server}),
    receive {cast, to_a_server} -> ok
    after 5000 -> ct:fail({no_cast, cn_node:flush()})
    end,
    %% A cast to nowhere is still ok.
    ok = echo(Config, {cast, {no_such_server, node()}, lost}),
    unregister(Name),
    gen_server:stop(Srv).

c_send(Config) ->
    N = cnode(Config),
    Msg = {sent, [1, 2.0, <<"three">>], #{four => 4}, self()},
    ok = gen_server:cast({echo, N}, {send, self(), Msg}),
    receive Got -> ?assert(Got =:= Msg)
    after 5000 -> ct:fail(no_message)
    end,
    Name = srv_name(),
    true = register(Name, self()),
    ok = gen_server:cast({echo, N}, {send, {Name, node()}, by_name}),
    receive by_name -> ok
    after 5000 -> ct:fail({no_message, cn_node:flush()})
    end,
    unregister(Name).

%% ---- the node ----------------------------------------------------------------

host() ->
    [_, H] = string:split(atom_to_list(node()), "@"),
    H.

ping(Config) ->
    N = cnode(Config),
    pong = net_adm:ping(N),
    true = erlang:disconnect_node(N),
    pong = net_adm:ping(N),
    pang = net_adm:ping(list_to_atom("nobody_" ++ cn_node:uniq() ++ "@" ++ host())).

hidden_node(Config) ->
    N = cnode(Config),
    _ = echo(Config, pid),
    ?assertNot(lists:member(N, nodes())),
    ?assert(lists:member(N, nodes(hidden))),
    ?assert(lists:member(N, nodes(connected))).

epmd_registration(Config) ->
    CN = ?config(cn, Config),
    [Alive, Host] = string:split(atom_to_list(cnode(Config)), "@"),
    ?assertEqual(host(), Host),
    Port = cn_node:port(CN),
    {port, Port, 6} = erl_epmd:port_please(Alive, {127, 0, 0, 1}),
    {ok, Names} = net_adm:names(),
    ?assert(lists:member({Alive, Port}, Names)).

which_children(Config) ->
    N = cnode(Config),
    Children = supervisor:which_children({cnode_sup, N}),
    ct:log("~p", [Children]),
    %% Latest started first, as OTP's supervisor lists them.
    [{echo, EchoPid, worker, [cnode_echo]}, {kv, KvPid, worker, [cnode_kv]}] =
        Children,
    EchoPid = echo(Config, pid),
    ?assertEqual(N, erlang:node(KvPid)),
    %% The pid in which_children is the registered kv.
    K = key(),
    ok = gen_server:call(KvPid, {put, K, by_pid}),
    {ok, by_pid} = kv(Config, {get, K}),
    ok = kv(Config, {delete, K}).

count_children(Config) ->
    N = cnode(Config),
    [{specs, 2}, {active, 2}, {supervisors, 0}, {workers, 2}] =
        supervisor:count_children({cnode_sup, N}).

which_children_after_restart(Config) ->
    N = cnode(Config),
    Old = cn_node:echo_pid(N),
    {echo, Old, worker, [cnode_echo]} =
        lists:keyfind(echo, 1, supervisor:which_children({cnode_sup, N})),
    New = stop_echo(Config, restart_me),
    {echo, New, worker, [cnode_echo]} =
        lists:keyfind(echo, 1, supervisor:which_children({cnode_sup, N})),
    [{specs, 2}, {active, 2}, {supervisors, 0}, {workers, 2}] =
        supervisor:count_children({cnode_sup, N}).

%% --port N: the node listens there and tells epmd so.
fixed_port(_Config) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Free} = inet:port(L),
    ok = gen_tcp:close(L),
    CN = cn_node:start(#{owner => self(), args => ["--port", integer_to_list(Free)]}),
    Free = cn_node:port(CN),
    N = cn_node:node_name(CN),
    [Alive, _] = string:split(atom_to_list(N), "@"),
    {port, Free, 6} = erl_epmd:port_please(Alive, {127, 0, 0, 1}),
    at_port = gen_server:call({echo, N}, {echo, at_port}),
    {ok, 0} = cn_node:stop(CN).

%% --published: a visible node, in nodes() rather than nodes(hidden).
published_node(_Config) ->
    CN = cn_node:start(#{owner => self(), args => ["--published"]}),
    N = cn_node:node_name(CN),
    visible = gen_server:call({echo, N}, {echo, visible}),
    ?assert(lists:member(N, nodes())),
    ?assertNot(lists:member(N, nodes(hidden))),
    pong = net_adm:ping(N),
    {ok, 0} = cn_node:stop(CN),
    ok = cn_node:wait_until(fun() -> not lists:member(N, nodes()) end, 5000).

%% A name epmd already has: the second node exits with status 1 and never
%% says it is ready; the first one keeps serving.
name_taken(Config) ->
    [Alive, _] = string:split(atom_to_list(cnode(Config)), "@"),
    {'EXIT', {{cnode_start_failed, {exited_before_ready, 1, stdout, []}, _}, _}} =
        (catch cn_node:start(#{owner => self(), name => Alive})),
    same = echo(Config, {echo, same}).

bad_command_line(_Config) ->
    [{'EXIT', {{cnode_start_failed, {exited_before_ready, 2, stdout, []}, _}, _}} =
         (catch cn_node:start(#{owner => self(), args => Args}))
     || Args <- [["--no-such-option"], ["--port", "not_a_number"],
                 ["--port", "70000"], ["--sname"]]],
    ok.

%% A node of its own: one line on stdout, SIGTERM stops it with status 0,
%% it leaves epmd, and its callers see it go down.
clean_stop(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    [Alive, _] = string:split(atom_to_list(N), "@"),
    pong = net_adm:ping(N),
    Ref = erlang:monitor(process, {echo, N}),
    [Ready] = cn_node:stdout(CN),
    ct:log("ready line: ~s", [Ready]),
    {match, _} = re:run(Ready, "^cnode: ready as \\S+ on port [0-9]+$"),
    {ok, 0} = cn_node:stop(CN),
    receive {'DOWN', Ref, process, {echo, N}, noconnection} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    [Ready] = cn_node:stdout(CN),
    noport = erl_epmd:port_please(Alive, {127, 0, 0, 1}),
    pang = net_adm:ping(N).
