%% cnode_hostile_SUITE: a hostile peer.
%%
%% Raw gen_tcp sockets to the node's distribution port send what no honest
%% node would: half handshakes, garbage, an oversized handshake message, a
%% wrong digest, and, after a valid handshake done by hand (cn_raw_dist),
%% truncated and deeply nested terms, unknown control messages and control
%% messages of the wrong arity.  Each time only that one connection closes:
%% the test node's own distribution connection and a second raw
%% connection, both up the whole time, keep getting answers, and the test
%% node never sees the node go down.  A well-framed message with a
%% malformed payload is dropped and its connection stays up; so is a
%% message over --max-message, however large its frame, and a call in it
%% fails at once through the caller's monitor.
%%
%% The suite's node runs with small limits (--handshake-ms 1000,
%% --max-handshakes 16, --max-message 4 MiB) so that each one can be hit
%% exactly and quickly; the ticktime and slow-reader cases start nodes of
%% their own with --ticktime 2 and 3.
-module(cnode_hostile_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).

-export([raw_handshake_and_calls/1, half_handshakes_time_out/1,
         garbage_bytes/1, oversized_handshake_message/1,
         bad_handshake_messages/1, wrong_cookie_digest/1,
         oversized_frame_skipped/1, truncated_control_term/1,
         deep_control_term/1, unknown_control_op/1,
         wrong_control_arity/1, not_a_pass_through_frame/1,
         trailing_bytes_after_control/1, malformed_payload_dropped/1,
         deep_payload_dropped/1, over_depth_message_dropped/1,
         ticks_keep_connection/1, many_idle_connections/1,
         message_size_limit/1, oversized_call_fails_at_once/1,
         slow_reader_dropped/1, ticktime/1]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [raw_handshake_and_calls, half_handshakes_time_out, garbage_bytes,
     oversized_handshake_message, bad_handshake_messages,
     wrong_cookie_digest, oversized_frame_skipped, truncated_control_term,
     deep_control_term, unknown_control_op, wrong_control_arity,
     not_a_pass_through_frame, trailing_bytes_after_control,
     malformed_payload_dropped, deep_payload_dropped,
     over_depth_message_dropped, ticks_keep_connection,
     many_idle_connections, message_size_limit, oversized_call_fails_at_once,
     slow_reader_dropped, ticktime].

-define(HANDSHAKE_MS, 1000).
-define(MAX_HANDSHAKES, 16).
-define(MAX_MESSAGE, (4 bsl 20)).
%% A frame may hold --max-message plus 64 KiB for its control message.
-define(FRAME_LIMIT, (?MAX_MESSAGE + (64 bsl 10))).

init_per_suite(Config) ->
    CN = cn_node:start(#{args => ["--handshake-ms", integer_to_list(?HANDSHAKE_MS),
                                  "--max-handshakes", integer_to_list(?MAX_HANDSHAKES),
                                  "--max-message", integer_to_list(?MAX_MESSAGE)]}),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

%% Every case: the test node's connection is up and watched, and a second
%% raw connection (the "good" fake node) answers.
init_per_testcase(_TC, Config) ->
    N = ?config(node, Config),
    Echo = gen_server:call({echo, N}, pid, 5000),
    true = erlang:monitor_node(N, true),
    {Good, GoodPid} = good_connection(Config),
    [{echo_pid, Echo}, {good, Good}, {good_pid, GoodPid} | Config].

end_per_testcase(_TC, Config) ->
    N = ?config(node, Config),
    Result = check_others_alive(Config),
    erlang:monitor_node(N, false),
    gen_tcp:close(?config(good, Config)),
    Result.

%% ---- helpers ---------------------------------------------------------------

host() ->
    [_, H] = string:split(atom_to_list(node()), "@"),
    H.

fake_name(Prefix) ->
    list_to_atom(Prefix ++ cn_node:uniq() ++ "@" ++ host()).

port(Config) ->
    cn_node:port(?config(cn, Config)).

cookie(Config) ->
    cn_node:cookie(?config(cn, Config)).

good_connection(Config) ->
    Name = fake_name("good"),
    {ok, S, Info} = cn_raw_dist:handshake(port(Config), Name, cookie(Config)),
    ?assertEqual(?config(node, Config), maps:get(name, Info)),
    Pid = cn_raw_dist:fake_pid(Name, 1),
    {ok, hello} = cn_raw_dist:gen_call(S, Pid, echo, {echo, hello}),
    {S, Pid}.

%% A fresh connection through a full handshake: {Socket, OurPid}.
raw(Config) ->
    Name = fake_name("raw"),
    {ok, S, _} = cn_raw_dist:handshake(port(Config), Name, cookie(Config)),
    {S, cn_raw_dist:fake_pid(Name, 7)}.

%% The test node and the good raw connection still get answers, and the
%% test node never saw the node go down.
check_others_alive(Config) ->
    N = ?config(node, Config),
    X = {alive, erlang:unique_integer()},
    X = gen_server:call({echo, N}, {echo, X}, 5000),
    error = gen_server:call({kv, N}, {get, {no, key, X}}, 5000),
    {ok, X} = cn_raw_dist:gen_call(?config(good, Config),
                                   ?config(good_pid, Config), echo, {echo, X}),
    {ok, error} = cn_raw_dist:gen_call(?config(good, Config),
                                       ?config(good_pid, Config), kv,
                                       {get, {no, key, X}}),
    Echo = ?config(echo_pid, Config),
    Echo = gen_server:call({echo, N}, pid, 5000),
    receive {nodedown, N} -> {fail, {test_node_saw_nodedown, N}}
    after 0 -> ok
    end.

%% Sends Bytes on a fresh raw connection (after a full handshake) and
%% checks that the node closes it within Ms.
closes_after(Config, Bytes, Ms) ->
    {S, _} = raw(Config),
    ok = cn_raw_dist:send_raw(S, Bytes),
    closed(S, Ms).

closed(S, Ms) ->
    T0 = erlang:monotonic_time(),
    Closed = cn_raw_dist:closed_within(S, Ms),
    ct:log("closed ~p after ~p ms", [Closed, cn_node:elapsed_ms(T0)]),
    gen_tcp:close(S),
    ?assert(Closed).

%% ---- the cases -------------------------------------------------------------

%% The hand-made handshake and frames work, for calls, casts and sends.
raw_handshake_and_calls(Config) ->
    {S, Pid} = raw(Config),
    K = {raw, erlang:unique_integer()},
    {ok, ok} = cn_raw_dist:gen_call(S, Pid, kv, {put, K, 1}),
    {ok, {ok, 1}} = cn_raw_dist:gen_call(S, Pid, kv, {get, K}),
    ok = cn_raw_dist:send_frame(S, {6, Pid, '', kv}, {'$gen_cast', {delete, K}}),
    {ok, error} = cn_raw_dist:gen_call(S, Pid, kv, {get, K}),
    ok = cn_raw_dist:send_frame(S, {6, Pid, '', echo},
                                {'$gen_cast', {send, Pid, to_raw}}),
    {ok, Pid, to_raw} = cn_raw_dist:recv_msg(S, 5000),
    %% A SEND to echo's pid.
    Echo = ?config(echo_pid, Config),
    Tag = make_ref(),
    ok = cn_raw_dist:send_frame(S, {2, '', Echo},
                                {'$gen_call', {Pid, Tag}, {echo, by_pid}}),
    {ok, Pid, {Tag, by_pid}} = cn_raw_dist:recv_msg(S, 5000),
    %% An alias tag from a peer that did not offer ALIAS: the reply goes to
    %% the pid in From (a SEND), tag unchanged.
    Alias = make_ref(),
    ok = cn_raw_dist:send_frame(S, {6, Pid, '', echo},
                                {'$gen_call', {Pid, [alias | Alias]},
                                 {echo, to_pid}}),
    {ok, Pid, {[alias | Alias], to_pid}} = cn_raw_dist:recv_msg(S, 5000),
    gen_tcp:close(S).

%% Connections that stop mid-handshake are closed when the handshake time
%% (--handshake-ms 1000) runs out, not before, while the node keeps
%% serving.
half_handshakes_time_out(Config) ->
    N = ?config(node, Config),
    Port = port(Config),
    T0 = erlang:monotonic_time(),
    {ok, Silent} = cn_raw_dist:connect(Port),
    {ok, NameOnly} = cn_raw_dist:connect(Port),
    ok = cn_raw_dist:send_name(NameOnly, fake_name("half"), 1),
    {ok, <<$s, "ok">>} = cn_raw_dist:recv_hs(NameOnly, 5000),
    {ok, <<$N, _/binary>>} = cn_raw_dist:recv_hs(NameOnly, 5000),
    {ok, Partial} = cn_raw_dist:connect(Port),
    ok = cn_raw_dist:send_raw(Partial, <<0, 30, $N, 0, 0>>),
    Socks = [Silent, NameOnly, Partial],
    %% The node serves meanwhile.
    [I = gen_server:call({echo, N}, {echo, I}, 1000) || I <- lists:seq(1, 10)],
    timer:sleep(max(0, ?HANDSHAKE_MS div 2 - cn_node:elapsed_ms(T0))),
    [false = cn_raw_dist:closed_within(S, 0) || S <- Socks],
    [closed(S, max(0, 3 * ?HANDSHAKE_MS - cn_node:elapsed_ms(T0))) || S <- Socks],
    ct:log("all closed after ~p ms", [cn_node:elapsed_ms(T0)]).

%% Each item: the bytes, and how soon the node must close: at once (2 s)
%% when they are a whole handshake message it must refuse, or when the
%% handshake time runs out when they announce more bytes than they bring.
garbage_bytes(Config) ->
    Port = port(Config),
    Later = 3 * ?HANDSHAKE_MS,
    Garbage = [{<<0, 200, (crypto:strong_rand_bytes(200))/binary>>, 2000},
               {<<0, 200, $N, (crypto:strong_rand_bytes(199))/binary>>, 2000},
               {crypto:strong_rand_bytes(1000), Later},
               {<<"GET / HTTP/1.1\r\nHost: x\r\n\r\n">>, Later},
               {<<0, 3, "xyz">>, 2000},
               {<<0, 5, $n, 0, 5, 0, 0>>, 2000},   % the old 'n' send_name
               {<<0, 1, $N>>, 2000}],
    Socks = [begin
                 {ok, S} = cn_raw_dist:connect(Port),
                 ok = cn_raw_dist:send_raw(S, G),
                 {S, Ms}
             end || {G, Ms} <- Garbage],
    T0 = erlang:monotonic_time(),
    [closed(S, max(0, Ms - cn_node:elapsed_ms(T0))) || {S, Ms} <- Socks],
    ok.

%% A handshake message of the greatest 2-byte length: a send_name with a
%% 65k name.
oversized_handshake_message(Config) ->
    {ok, S} = cn_raw_dist:connect(port(Config)),
    Name = binary:copy(<<"a">>, 65535 - 15),
    Msg = <<$N, (cn_raw_dist:flags()):64, 1:32, (byte_size(Name)):16,
            Name/binary>>,
    65535 = byte_size(Msg),
    _ = cn_raw_dist:send_raw(S, <<65535:16, Msg/binary>>),
    closed(S, 3000),
    %% The same length, announced and never sent in full.
    {ok, S2} = cn_raw_dist:connect(port(Config)),
    ok = cn_raw_dist:send_raw(S2, <<65535:16, $N, 0:64>>),
    closed(S2, 3 * ?HANDSHAKE_MS).

bad_handshake_messages(Config) ->
    Port = port(Config),
    Flags = cn_raw_dist:flags(),
    Name = atom_to_binary(fake_name("bad"), utf8),
    NL = byte_size(Name),
    Bad = [%% An empty message.
           <<0, 0>>,
           %% The name's length runs past the message.
           hs(<<$N, Flags:64, 1:32, (NL + 10):16, Name/binary>>),
           %% A name without '@'.
           hs(<<$N, Flags:64, 1:32, 5:16, "nohst">>),
           %% No mandatory flags.
           hs(<<$N, 0:64, 1:32, NL:16, Name/binary>>),
           %% A challenge reply before anything else.
           hs(<<$r, 1:32, 0:128>>)],
    [begin
         {ok, S} = cn_raw_dist:connect(Port),
         ok = cn_raw_dist:send_raw(S, B),
         closed(S, 3000)
     end || B <- Bad],
    ok.

hs(Bin) ->
    <<(byte_size(Bin)):16, Bin/binary>>.

%% A wrong digest: no challenge ack, the connection closes.
wrong_cookie_digest(Config) ->
    {error, {ack, Why}} =
        cn_raw_dist:handshake(port(Config), fake_name("wrong"),
                              'not_the_cookie'),
    ct:log("wrong cookie: ~p", [Why]),
    {error, {ack, _}} =
        cn_raw_dist:handshake(port(Config), fake_name("wrong"),
                              cookie(Config), #{digest => <<0:128>>}).

%% A frame over the frame limit is dropped as its bytes come, and the
%% connection goes on: the next frame is served.  One that claims 4 GiB
%% keeps its connection busy swallowing, without harm to anyone else.
%% One that says it is a fragment closes its connection.
oversized_frame_skipped(Config) ->
    {S, Pid} = raw(Config),
    Junk = crypto:strong_rand_bytes(?FRAME_LIMIT - 2),
    ok = cn_raw_dist:send_raw(S, <<(?FRAME_LIMIT + 1):32, $p, 131, Junk/binary,
                                   7>>),
    {ok, after_junk} = cn_raw_dist:gen_call(S, Pid, echo, {echo, after_junk}),
    {S2, _} = raw(Config),
    ok = cn_raw_dist:send_raw(S2, <<16#ffffffff:32, $p, 131, 104, 1>>),
    false = cn_raw_dist:closed_within(S2, 1000),
    gen_tcp:close(S2),
    %% A fragment is small by nature: a fragment header (first or later)
    %% on a frame this big closes its connection at once, and the others
    %% are served.
    closes_after(Config, <<(?FRAME_LIMIT + 1):32, 131, 69, 1:64>>, 3000),
    closes_after(Config, <<(?FRAME_LIMIT + 1):32, 131, 70, 1:64>>, 3000),
    {ok, still} = cn_raw_dist:gen_call(S, Pid, echo, {echo, still}),
    gen_tcp:close(S).

truncated_control_term(Config) ->
    {_, Pid} = raw(Config),
    Ctl = term_to_binary({6, Pid, '', echo}),
    Cut = binary:part(Ctl, 0, byte_size(Ctl) - 3),
    closes_after(Config, frame(<<$p, Cut/binary>>), 3000),
    %% A binary that claims more bytes than the frame holds.
    closes_after(Config, frame(<<$p, 131, 109, 1000000:32, "abc">>), 3000),
    %% Nothing after 'p'.
    closes_after(Config, frame(<<$p>>), 3000),
    %% An empty frame content is a tick; one byte that is not 'p' is not.
    closes_after(Config, frame(<<0>>), 3000).

frame(Content) ->
    <<(byte_size(Content)):32, Content/binary>>.

%% REG_SEND whose (unused) second element is a list nested 600 000 deep,
%% and a control message that is a tuple nested 10^6 deep.
deep_control_term(Config) ->
    {_, Pid} = raw(Config),
    PidExt = strip(term_to_binary(Pid)),
    %% 600 000 levels: 3.6 MB, under --max-frame (4 MiB), so that it is the
    %% depth that closes the connection and not the size.
    Deep = cn_raw_dist:deep_list(600000),
    Ctl = <<131, 104, 4, 97, 6, PidExt/binary, Deep/binary,
            (strip(term_to_binary(echo)))/binary>>,
    Msg = term_to_binary({'$gen_call', {Pid, make_ref()}, {echo, deep}}),
    closes_after(Config, frame(<<$p, Ctl/binary, Msg/binary>>), 5000),
    %% A tuple nested 10^6 deep as the whole control message.
    Tuples = <<131, (binary:copy(<<104, 1>>, 1000000))/binary, 106>>,
    closes_after(Config, frame(<<$p, Tuples/binary>>), 5000).

strip(<<131, Rest/binary>>) -> Rest.

unknown_control_op(Config) ->
    {_, Pid} = raw(Config),
    Echo = ?config(echo_pid, Config),
    [closes_after(Config, cn_raw_dist:frame(Ctl), 3000)
     || Ctl <- [{99, Pid, Echo}, {0}, {-1, Pid}, {foo, Pid, Echo},
                {1 bsl 70, Pid}, not_a_tuple, [6, Pid, '', echo], {},
                %% SPAWN_REQUEST without its argument list (the payload).
                {29, make_ref(), Pid, Pid, {erlang, node, 0}, []},
                %% SPAWN_REPLY: the node never asks for a spawn.
                {31, make_ref(), Pid, 0, Pid},
                %% The obsolete UNLINK.
                {4, Pid, Echo}]],
    ok.

wrong_control_arity(Config) ->
    {_, Pid} = raw(Config),
    Echo = ?config(echo_pid, Config),
    Msg = {'$gen_call', {Pid, make_ref()}, {echo, x}},
    [closes_after(Config, cn_raw_dist:frame(Ctl, Msg), 3000)
     || Ctl <- [{6, Pid, ''}, {6, Pid, '', echo, extra}, {2, ''},
                {2, '', Echo, extra}]],
    [closes_after(Config, cn_raw_dist:frame(Ctl), 3000)
     || Ctl <- [{1, Pid}, {1, Pid, Echo, x}, {19, Pid, Echo},
                {3, Pid, Echo}, {8, Pid, Echo, x, y}]],
    %% The right arity with the wrong types.
    [closes_after(Config, cn_raw_dist:frame(Ctl, Msg), 3000)
     || Ctl <- [{6, Pid, '', "echo"}, {6, not_a_pid, '', echo},
                {2, '', not_a_pid}]],
    ok.

%% A frame that starts with the atom cache header (131 68) rather than the
%% pass-through 'p': the node offered no atom cache.
not_a_pass_through_frame(Config) ->
    {_, Pid} = raw(Config),
    Ctl = term_to_binary({6, Pid, '', echo}),
    closes_after(Config, frame(<<131, 68, 0, Ctl/binary>>), 3000),
    closes_after(Config, frame(Ctl), 3000).

trailing_bytes_after_control(Config) ->
    {_, Pid} = raw(Config),
    Echo = ?config(echo_pid, Config),
    %% LINK has no payload: what follows is garbage.
    Link = term_to_binary({1, Pid, Echo}),
    closes_after(Config, frame(<<$p, Link/binary, 1, 2, 3>>), 3000).
%% (A payload followed by junk is a malformed payload: see
%% malformed_payload_dropped.)

%% A well-framed REG_SEND to echo with a malformed payload: dropped, and the
%% same connection goes on.  Each payload on a connection of its own, so
%% that a failure names every payload that closed its connection.
malformed_payload_dropped(Config) ->
    Good = term_to_binary({'$gen_call', {self(), make_ref()}, {echo, x}}),
    Bad = [{cut_tuple, <<131, 104, 5, 97, 1>>},
           {unknown_tag, <<131, 255, 1, 2>>},
           {lying_binary, <<131, 109, 255, 255, 255, 255, "abc">>},
           {no_version_byte, <<104, 1, 97, 1>>},
           {cut_call, binary:part(Good, 0, byte_size(Good) - 1)},
           {bad_atom_utf8, <<131, 119, 2, 255, 254>>},
           {empty_payload, <<131>>},
           {junk_after_payload, <<Good/binary, 0>>}],
    Results = [{What, payload_survives(Config, B)} || {What, B} <- Bad],
    ct:log("~p", [Results]),
    [] = [R || {_, Result} = R <- Results, Result =/= ok].

payload_survives(Config, Payload) ->
    {S, Pid} = raw(Config),
    Ctl = term_to_binary({6, Pid, '', echo}),
    ok = cn_raw_dist:send_raw(S, frame(<<$p, Ctl/binary, Payload/binary>>)),
    R = case cn_raw_dist:gen_call(S, Pid, echo, {echo, after_bad}) of
            {ok, after_bad} -> ok;
            Other -> Other
        end,
    gen_tcp:close(S),
    R.

%% Well-framed REG_SENDs to echo whose payloads nest far past the node's
%% depth limit: dropped, and the same connection goes on.
deep_payload_dropped(Config) ->
    {S, Pid} = raw(Config),
    Ctl = term_to_binary({6, Pid, '', echo}),
    Deep = <<131, (cn_raw_dist:deep_list(600000))/binary>>,
    ok = cn_raw_dist:send_raw(S, frame(<<$p, Ctl/binary, Deep/binary>>)),
    %% A tuple nested 10^6 deep.
    Tuples = <<131, (binary:copy(<<104, 1>>, 1000000))/binary, 106>>,
    ok = cn_raw_dist:send_raw(S, frame(<<$p, Ctl/binary, Tuples/binary>>)),
    %% The same depth inside a call: no answer, and the connection lives.
    Tag = make_ref(),
    Call = <<131, 104, 3, (strip(term_to_binary('$gen_call')))/binary,
             (strip(term_to_binary({Pid, Tag})))/binary,
             104, 2, (strip(term_to_binary(echo)))/binary,
             (cn_raw_dist:deep_list(600000))/binary>>,
    ok = cn_raw_dist:send_raw(S, frame(<<$p, Ctl/binary, Call/binary>>)),
    case cn_raw_dist:gen_call(S, Pid, echo, {echo, after_deep}) of
        {ok, after_deep} -> ok;
        Other -> ct:fail({unexpected, short(Other)})
    end,
    gen_tcp:close(S).

%% A term printed at most a few levels deep, for failures.
short(T) ->
    lists:flatten(io_lib:format("~P", [T, 12])).

%% Through the test node's own connection: a message nested deeper than the
%% node's limit (1024) is dropped, so the call times out; the connection
%% and echo stay.
over_depth_message_dropped(Config) ->
    N = ?config(node, Config),
    Deep = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 5000)),
    case catch gen_server:call({echo, N}, {echo, Deep}, 1000) of
        {'EXIT', {timeout, _}} -> ok;
        Other -> ct:fail({not_dropped, short(Other)})
    end,
    case cn_node:flush(200) of
        [] -> ok;
        Msgs -> ct:fail({stray_messages, short(Msgs)})
    end.

ticks_keep_connection(Config) ->
    {S, Pid} = raw(Config),
    [begin ok = cn_raw_dist:send_raw(S, <<0:32>>), timer:sleep(50) end
     || _ <- lists:seq(1, 10)],
    {ok, ticked} = cn_raw_dist:gen_call(S, Pid, echo, {echo, ticked}),
    gen_tcp:close(S).

%% More idle connections than the pending-handshake limit (16): those over
%% the limit are closed at once, the node keeps serving, every one of them
%% is closed when its handshake time runs out, and then handshakes succeed
%% again.
many_idle_connections(Config) ->
    N = ?config(node, Config),
    Count = 3 * ?MAX_HANDSHAKES,
    T0 = erlang:monotonic_time(),
    Socks = [S || _ <- lists:seq(1, Count),
                  {ok, S} <- [cn_raw_dist:connect(port(Config))]],
    Count = length(Socks),
    still = gen_server:call({echo, N}, {echo, still}, 2000),
    timer:sleep(200),
    AtOnce = length([S || S <- Socks, cn_raw_dist:closed_within(S, 0)]),
    ct:log("~p of ~p closed at once", [AtOnce, Count]),
    ?assert(AtOnce >= Count - ?MAX_HANDSHAKES),
    [closed(S, max(0, 3 * ?HANDSHAKE_MS - cn_node:elapsed_ms(T0))) || S <- Socks],
    {S2, Pid} = raw(Config),
    {ok, again} = cn_raw_dist:gen_call(S2, Pid, echo, {echo, again}),
    gen_tcp:close(S2).

%% A call whose request is exactly --max-message bytes (its term, without
%% a version byte) is served; one byte more is refused alone, and the same
%% connection goes on.  This peer holds no monitor, so nothing tells it.
message_size_limit(Config) ->
    {S, Pid} = raw(Config),
    {Bin, AtLimit} = sized_call(Pid, make_ref(), ?MAX_MESSAGE),
    ok = cn_raw_dist:send_raw(S, AtLimit),
    {ok, Pid, {_, Back}} = cn_raw_dist:recv_msg(S, 10000),
    ?assert(Back =:= Bin),
    {_, Over} = sized_call(Pid, make_ref(), ?MAX_MESSAGE + 1),
    ok = cn_raw_dist:send_raw(S, Over),
    {error, timeout} = cn_raw_dist:recv_frame(S, 500),
    {ok, still} = cn_raw_dist:gen_call(S, Pid, echo, {echo, still}),
    gen_tcp:close(S).

%% A REG_SEND frame of a '$gen_call' to echo whose request, {echo, Bin},
%% is Size bytes of term: {Bin, Frame}.
sized_call(Pid, Tag, Size) ->
    Ctl = term_to_binary({6, Pid, '', echo}),
    Base = byte_size(term_to_binary({echo, <<>>})) - 1,
    Bin = binary:copy(<<7>>, Size - Base),
    Size = byte_size(term_to_binary({echo, Bin})) - 1,
    M = term_to_binary({'$gen_call', {Pid, Tag}, {echo, Bin}}),
    Content = <<$p, Ctl/binary, M/binary>>,
    {Bin, <<(byte_size(Content)):32, Content/binary>>}.

%% What gen_server:call does: monitor the server, then call with the
%% monitor's ref as the alias in the tag.  A request over --max-message
%% fails at once: the monitor's DOWN comes back with the reason
%% {message_too_large, Max}, for a frame the node still reads (just over
%% the limit) and for one it drops unread (over the frame limit) alike.
%% The connection goes on.
oversized_call_fails_at_once(Config) ->
    {S, Pid} = raw(Config),
    [begin
         Ref = make_ref(),
         ok = cn_raw_dist:send_frame(S, {19, Pid, echo, Ref}),
         {_, Frame} = sized_call(Pid, [alias | Ref], Size),
         T0 = erlang:monotonic_time(),
         ok = cn_raw_dist:send_raw(S, Frame),
         {ok, Down, none} = cn_raw_dist:recv_frame(S, 5000),
         ct:log("~p bytes: ~p after ~p ms", [Size, Down, cn_node:elapsed_ms(T0)]),
         {21, echo, Pid, Ref, {message_too_large, ?MAX_MESSAGE}} = Down
     end || Size <- [?MAX_MESSAGE + 1, ?FRAME_LIMIT + 100]],
    {ok, still} = cn_raw_dist:gen_call(S, Pid, echo, {echo, still}),
    gen_tcp:close(S).

%% A peer that sends calls and ticks but never reads: the node does not
%% drop it for the output it cannot take (its senders are suspended
%% instead, see test-dist.c for that), while kv serves the test node as
%% before.  Once no write has completed for the tick time (3 s here), the
%% node drops the peer, and echo, which answered it, answers again.
slow_reader_dropped(_Config) ->
    Tick = 3000,
    CN = cn_node:start(#{owner => self(),
                         args => ["--ticktime", integer_to_list(Tick div 1000),
                                  "--busy-limit", "64K"]}),
    try
        N = cn_node:node_name(CN),
        Name = fake_name("slow"),
        {ok, S, _} = cn_raw_dist:handshake(cn_node:port(CN), Name,
                                           cn_node:cookie(CN),
                                           #{socket_opts => [{recbuf, 4096},
                                                             {sndbuf, 4096}]}),
        Pid = cn_raw_dist:fake_pid(Name, 3),
        Big = binary:copy(<<1>>, 256 bsl 10),
        Calls = << <<(element(2, sized(Pid, Big)))/binary>> || _ <- lists:seq(1, 64) >>,
        ok = cn_raw_dist:send_raw(S, Calls),
        T0 = erlang:monotonic_time(),
        error = gen_server:call({kv, N}, {get, nothing}, 2000),
        Closed = tick_until_closed(S, 3 * Tick),
        Ms = cn_node:elapsed_ms(T0),
        ct:log("dropped ~p after ~p ms", [Closed, Ms]),
        ?assert(Closed),
        ?assert(Ms >= Tick - 500),
        again = gen_server:call({echo, N}, {echo, again}, 5000)
    after
        cn_node:stop(CN)
    end.

sized(Pid, Big) ->
    Ctl = term_to_binary({6, Pid, '', echo}),
    Msg = term_to_binary({'$gen_call', {Pid, make_ref()}, {echo, Big}}),
    Content = <<$p, Ctl/binary, Msg/binary>>,
    {Big, <<(byte_size(Content)):32, Content/binary>>}.

%% Sends a tick every 500 ms, reading nothing, until the node closes the
%% connection (true) or Ms pass (false).
tick_until_closed(S, Ms) when Ms =< 0 ->
    _ = S,
    false;
tick_until_closed(S, Ms) ->
    case gen_tcp:send(S, <<0:32>>) of
        {error, _} ->
            true;
        ok ->
            receive after 500 -> ok end,
            case erlang:port_info(S) of
                undefined -> true;
                _ -> tick_until_closed(S, Ms - 500)
            end
    end.

%% A node of its own with --ticktime 2: it ticks every half second on an
%% idle connection, keeps a peer that ticks, and drops one that is silent
%% for 2 s.
ticktime(_Config) ->
    CN = cn_node:start(#{owner => self(), args => ["--ticktime", "2"]}),
    try
        Port = cn_node:port(CN),
        Cookie = cn_node:cookie(CN),
        {ok, Silent, _} = cn_raw_dist:handshake(Port, fake_name("silent"), Cookie),
        TickerName = fake_name("ticker"),
        {ok, Ticker, _} = cn_raw_dist:handshake(Port, TickerName, Cookie),
        T0 = erlang:monotonic_time(),
        %% The ticker: a tick out every 400 ms; count the node's.  The
        %% silent one is still there after a second, and gone after the
        %% ticktime (checked 4 times per ticktime).
        Ticks1 = tick_for(Ticker, 1200, 0),
        false = cn_raw_dist:closed_within(Silent, 0),
        Ticks2 = tick_for(Ticker, 2000, 0),
        ct:log("~p ticks from the node in 3.2 s", [Ticks1 + Ticks2]),
        ?assert(Ticks1 + Ticks2 >= 3),
        closed(Silent, max(0, 4000 - cn_node:elapsed_ms(T0))),
        Pid = cn_raw_dist:fake_pid(TickerName, 1),
        {ok, kept} = cn_raw_dist:gen_call(Ticker, Pid, echo, {echo, kept}),
        gen_tcp:close(Ticker)
    after
        {ok, 0} = cn_node:stop(CN)
    end.

%% Sends a tick every 400 ms for Ms and counts the ticks the node sends.
tick_for(S, Ms, Count) when Ms =< 0 ->
    _ = S,
    Count;
tick_for(S, Ms, Count) ->
    ok = cn_raw_dist:send_raw(S, <<0:32>>),
    N = count_ticks(S, 400, 0),
    tick_for(S, Ms - 400, Count + N).

count_ticks(S, Ms, N) ->
    T0 = erlang:monotonic_time(),
    case gen_tcp:recv(S, 4, Ms) of
        {ok, <<0:32>>} -> count_ticks(S, max(0, Ms - cn_node:elapsed_ms(T0)), N + 1);
        {error, timeout} -> N
    end.
