%% cnode_rpc_SUITE: rpc, erpc, remote spawns and erl_call into the C node.
%%
%% The node answers SPAWN_REQUEST (DFLAG_SPAWN) and runs C functions
%% exported with cn_export; its rex answers ei_rpc and erl_call.  Where
%% the BEAM defines the answer (undef, a fun of a module the node lacks),
%% the same request goes to a plain BEAM peer too and the two answers are
%% compared as terms, byte for byte.
-module(cnode_rpc_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([erpc_call/1, erpc_classes/1, undef_like_beam/1, rpc_call/1,
         casts/1, send_request_and_multicall/1, remote_spawn/1,
         exports_block_concurrently/1, builtins/1, gen_server_via_rpc/1,
         rex_classic/1, erl_call/1, init_stop/1, too_large_result/1,
         dist_stats/1, call_monitors/1]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [erpc_call, erpc_classes, undef_like_beam, rpc_call, casts,
     send_request_and_multicall, remote_spawn, exports_block_concurrently,
     builtins, dist_stats, call_monitors, gen_server_via_rpc, rex_classic,
     erl_call, init_stop, too_large_result].

init_per_suite(Config) ->
    CN = cn_node:start(),
    %% A plain BEAM node, without this suite's code: the reference.
    {ok, Peer, PeerNode} =
        peer:start(#{name => "rpcref" ++ cn_node:uniq()}),
    [{cn, CN}, {node, cn_node:node_name(CN)}, {peer, Peer},
     {peer_node, PeerNode} | Config].

end_per_suite(Config) ->
    catch peer:stop(?config(peer, Config)),
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

%% {Class, Reason} of what F raises, or {ok, Value}.
outcome(F) ->
    try {ok, F()} catch C:R -> {C, R} end.

%% ---- Cases ----------------------------------------------------------------

erpc_call(Config) ->
    N = ?config(node, Config),
    ?assertEqual(N, erpc:call(N, erlang, node, [])),
    T = {<<"bin">>, [1, 2.5, "str"], #{k => self()}, make_ref(), -(1 bsl 70)},
    ?assertEqual(T, erpc:call(N, cnode_echo, echo, [T])),
    %% fun erlang:node/0 is an export fun: the node applies it.
    ?assertEqual(N, erpc:call(N, fun erlang:node/0)),
    ?assertEqual(x, erpc:call(N, erlang, apply, [cnode_echo, echo, [x]])),
    %% A timeout that is not met: erpc's own error.
    ?assertEqual({error, {erpc, timeout}},
                 outcome(fun() ->
                                 erpc:call(N, cnode_echo, sleep, [1000], 100)
                         end)).

erpc_classes(Config) ->
    N = ?config(node, Config),
    ?assertEqual({throw, oops},
                 outcome(fun() -> erpc:call(N, cnode_echo, raise,
                                            [throw, oops]) end)),
    ?assertEqual({exit, {exception, oops}},
                 outcome(fun() -> erpc:call(N, cnode_echo, raise,
                                            [exit, oops]) end)),
    ?assertEqual({error, {exception, oops, [{cnode_echo, raise, 2, []}]}},
                 outcome(fun() -> erpc:call(N, cnode_echo, raise,
                                            [error, oops]) end)),
    %% The exported function itself says badarg for a bad argument.
    ?assertEqual({error, {exception, badarg, [{cnode_echo, raise, 2, []}]}},
                 outcome(fun() -> erpc:call(N, cnode_echo, raise,
                                            [nonsense, oops]) end)).

undef_like_beam(Config) ->
    N = ?config(node, Config),
    P = ?config(peer_node, Config),
    Same = fun(F) ->
                   Ours = F(N),
                   Beam = F(P),
                   ?assertEqual(term_to_binary(Beam), term_to_binary(Ours)),
                   Ours
           end,
    {error, {exception, undef, [{nomod, nofun, [1, 2], []}]}} =
        Same(fun(Node) -> outcome(fun() -> erpc:call(Node, nomod, nofun,
                                                     [1, 2]) end) end),
    %% A module both have, a function neither has.
    {error, {exception, undef, [{erlang, nofun, [x], []}]}} =
        Same(fun(Node) -> outcome(fun() -> erpc:call(Node, erlang, nofun,
                                                     [x]) end) end),
    {badrpc, {'EXIT', {undef, [{nomod, nofun, [1, 2], []}]}}} =
        Same(fun(Node) -> rpc:call(Node, nomod, nofun, [1, 2]) end),
    %% A fun of this suite's module, which neither node has loaded.
    Fun = fun() -> ok end,
    {error, {exception, undef, [{Fun, [], []}, {erlang, apply, 2, []}]}} =
        Same(fun(Node) -> outcome(fun() -> erpc:call(Node, Fun) end) end),
    ok.

rpc_call(Config) ->
    N = ?config(node, Config),
    ?assertEqual(N, rpc:call(N, erlang, node, [])),
    ?assertEqual(oops, rpc:call(N, cnode_echo, raise, [throw, oops])),
    ?assertEqual({badrpc, {'EXIT', oops}},
                 rpc:call(N, cnode_echo, raise, [exit, oops])),
    ?assertEqual({badrpc, {'EXIT', {oops, [{cnode_echo, raise, 2, []}]}}},
                 rpc:call(N, cnode_echo, raise, [error, oops])),
    ?assertEqual({badrpc, timeout},
                 rpc:call(N, cnode_echo, sleep, [1000], 100)).

casts(Config) ->
    N = ?config(node, Config),
    ok = erpc:cast(N, gen_server, call, [kv, {put, erpc_cast_key, 1}]),
    true = rpc:cast(N, gen_server, call, [kv, {put, rpc_cast_key, 2}]),
    ok = cn_node:wait_until(
           fun() ->
                   {ok, 1} =:= cn_node:call(N, kv, {get, erpc_cast_key}) andalso
                       {ok, 2} =:= cn_node:call(N, kv, {get, rpc_cast_key})
           end, 5000),
    %% A cast of an undefined function goes nowhere, and the node lives.
    ok = erpc:cast(N, nomod, nofun, []),
    ?assertEqual(N, erpc:call(N, erlang, node, [])).

send_request_and_multicall(Config) ->
    N = ?config(node, Config),
    P = ?config(peer_node, Config),
    R1 = erpc:send_request(N, cnode_echo, echo, [one]),
    R2 = erpc:send_request(N, erlang, node, []),
    ?assertEqual(N, erpc:receive_response(R2, 5000)),
    ?assertEqual(one, erpc:receive_response(R1, 5000)),
    ?assertEqual([{ok, N}, {ok, P}, {ok, node()}],
                 erpc:multicall([N, P, node()], erlang, node, [], 5000)),
    ?assertEqual({[N, P], []}, rpc:multicall([N, P], erlang, node, [])),
    ?assertMatch([{error, {exception, undef, _}}, {error, {exception, undef, _}}],
                 erpc:multicall([N, P], nomod, nofun, [])).

remote_spawn(Config) ->
    N = ?config(node, Config),
    P = ?config(peer_node, Config),
    Down = fun(Pid, Ref) ->
                   receive {'DOWN', Ref, process, Pid, R} -> R
                   after 5000 -> error(no_down)
                   end
           end,
    SpawnFun = fun(Node, F) ->
                       {Pid, Ref} = spawn_monitor(Node, F),
                       ?assertEqual(Node, node(Pid)),
                       Down(Pid, Ref)
               end,
    %% A fun: a remote pid, which exits at once with undef, as on a BEAM
    %% node without the fun's module.
    Fun = fun() -> ok end,
    {undef, [{Fun, [], []}]} = Ours = SpawnFun(N, Fun),
    ?assertEqual(term_to_binary(SpawnFun(P, Fun)), term_to_binary(Ours)),
    %% Node.spawn in Elixir is spawn/2.
    Pid0 = spawn(N, Fun),
    ?assertEqual(N, node(Pid0)),
    %% An MFA that is not exported.
    SpawnMFA = fun(Node, M, F, A) ->
                       {Pid, Ref} = spawn_monitor(Node, M, F, A),
                       Down(Pid, Ref)
               end,
    {undef, [{nomod, nofun, [1], []}]} = Undef = SpawnMFA(N, nomod, nofun, [1]),
    ?assertEqual(Undef, SpawnMFA(P, nomod, nofun, [1])),
    %% An exported one: normal, or the BEAM's reasons for a plain process.
    normal = SpawnMFA(N, cnode_echo, echo, [x]),
    {{nocatch, t}, [{cnode_echo, raise, 2, []}]} =
        SpawnMFA(N, cnode_echo, raise, [throw, t]),
    e = SpawnMFA(N, cnode_echo, raise, [exit, e]),
    {r, [{cnode_echo, raise, 2, []}]} =
        SpawnMFA(N, cnode_echo, raise, [error, r]),
    %% A link: the exit signal arrives.
    process_flag(trap_exit, true),
    LPid = spawn_link(N, nomod, nofun, []),
    receive {'EXIT', LPid, {undef, [{nomod, nofun, [], []}]}} -> ok
    after 5000 -> error(no_exit)
    end,
    process_flag(trap_exit, false),
    %% Spawn options that tune a BEAM process are taken and ignored.
    {OPid, ORef} = spawn_opt(N, cnode_echo, echo, [x],
                             [monitor, {priority, high}]),
    normal = Down(OPid, ORef),
    %% The node logged the BEAM's report for the failed spawns.
    Log = ?config(cn, Config),
    {ok, Text} = file:read_file(maps:get(log, Log)),
    ?assertNotEqual(nomatch,
                    binary:match(Text, <<"Error in process">>)).

exports_block_concurrently(Config) ->
    N = ?config(node, Config),
    T0 = erlang:monotonic_time(),
    Reqs = [erpc:send_request(N, cnode_echo, sleep, [300])
            || _ <- lists:seq(1, 20)],
    [ok = erpc:receive_response(R, 5000) || R <- Reqs],
    %% Twenty 300 ms sleeps, each on a thread of its own: about 300 ms,
    %% not six seconds.
    Ms = cn_node:elapsed_ms(T0),
    ct:pal("20 concurrent 300 ms exports took ~b ms", [Ms]),
    ?assert(Ms < 3000).

builtins(Config) ->
    N = ?config(node, Config),
    Call = fun(M, F, A) -> erpc:call(N, M, F, A) end,
    %% The test node's connection to a hidden node is hidden.
    ?assertEqual([], Call(erlang, nodes, [])),
    ?assert(lists:member(node(), Call(erlang, nodes, [hidden]))),
    ?assertEqual([N], Call(erlang, nodes, [this])),
    ?assertEqual({exception, badarg}, catch_erpc(N, erlang, nodes, [bogus])),
    Names = Call(erlang, registered, []),
    [?assert(lists:member(Name, Names))
     || Name <- [kv, echo, rex, net_kernel, cnode_sup]],
    Kv = Call(erlang, whereis, [kv]),
    ?assert(is_pid(Kv) andalso node(Kv) =:= N),
    ?assertEqual(undefined, Call(erlang, whereis, [no_such_name])),
    Pids = Call(erlang, processes, []),
    ?assert(lists:member(Kv, Pids)),
    %% is_process_alive/1: as erts, badarg for a pid of another node.
    ?assert(Call(erlang, is_process_alive, [Kv])),
    ?assertEqual({exception, badarg},
                 catch_erpc(N, erlang, is_process_alive, [self()])),
    ?assertEqual({exception, badarg},
                 catch_erpc(N, erlang, is_process_alive, [kv])),
    Echo = Call(erlang, whereis, [echo]),
    EchoMon = erlang:monitor(process, Echo),
    gen_server:cast({echo, N}, {stop, normal}),
    receive {'DOWN', EchoMon, process, Echo, normal} -> ok
    after 5000 -> ct:fail(echo_did_not_stop)
    end,
    ?assertNot(Call(erlang, is_process_alive, [Echo])),
    _ = cn_node:wait_restarted(N, Echo),
    ?assertEqual([{registered_name, kv}, {message_queue_len, 0}],
                 Call(erlang, process_info,
                      [Kv, [registered_name, message_queue_len]])),
    {current_function, {cnode_kv, _, _}} =
        Call(erlang, process_info, [Kv, current_function]),
    {status, St} = Call(erlang, process_info, [Kv, status]),
    ?assert(lists:member(St, [waiting, runnable, running])),
    %% Links and monitors, which the process itself reports.
    Sup = Call(erlang, whereis, [cnode_sup]),
    {links, Links} = Call(erlang, process_info, [Kv, links]),
    ?assert(lists:member(Sup, Links)),
    {links, SupLinks} = Call(erlang, process_info, [Sup, links]),
    ?assert(lists:member(Kv, SupLinks)),
    {trap_exit, true} = Call(erlang, process_info, [Sup, trap_exit]),
    Mon = erlang:monitor(process, Kv),
    {monitored_by, By} = Call(erlang, process_info, [Kv, monitored_by]),
    ?assert(lists:member(self(), By)),
    erlang:demonitor(Mon),
    {monitors, []} = Call(erlang, process_info, [Kv, monitors]),
    %% A process sys has suspended still answers, as on the BEAM.
    ok = sys:suspend({kv, N}),
    {links, Links} = Call(erlang, process_info, [Kv, links]),
    ok = sys:resume({kv, N}),
    Info = Call(erlang, process_info, [Kv]),
    ?assertEqual({registered_name, kv}, lists:keyfind(registered_name, 1, Info)),
    ?assertEqual({links, Links}, lists:keyfind(links, 1, Info)),
    ?assertEqual({exception, badarg},
                 catch_erpc(N, erlang, process_info, [self()])),
    "25" = Call(erlang, system_info, [otp_release]),
    "cnode " ++ _ = Call(erlang, system_info, [system_version]),
    ?assert(Call(erlang, system_info, [process_count]) >= length(Pids) - 1),
    8 = Call(erlang, system_info, [wordsize]),
    ?assert(Call(erlang, system_info, [schedulers]) >= 1),
    Mem = Call(erlang, memory, []),
    ?assert(proplists:get_value(total, Mem) > 0),
    {Wall, _} = Call(erlang, statistics, [wall_clock]),
    ?assert(Wall > 0),
    {_, _} = Call(erlang, statistics, [runtime]),
    {0, 0} = Call(erlang, statistics, [reductions]).

%% cnode:dist_stats/0 on the node: cn_dist_get_stats as a map, counting
%% what this test sends and receives.
dist_stats(Config) ->
    N = ?config(node, Config),
    Keys = [connections, handshakes_failed, frames_in, frames_out, bytes_in,
            bytes_out, dropped, bad_frames, too_large, fragments_in,
            fragments_out, busy, nodes_up, links, monitors, queued],
    S0 = erpc:call(N, cnode, dist_stats, []),
    ?assertEqual(lists:sort(Keys), lists:sort(maps:keys(S0))),
    [?assert(is_integer(V) andalso V >= 0) || V <- maps:values(S0)],
    ?assert(maps:get(nodes_up, S0) >= 1),
    ?assert(maps:get(connections, S0) >= 1),
    %% 100 calls by name: each is at least a monitor, the request and the
    %% demonitor in, and the reply out.
    [X = gen_server:call({echo, N}, {echo, X}) || X <- lists:seq(1, 100)],
    Mon = erlang:monitor(process, {kv, N}),
    S1 = cnode:dist_stats(N), % the application's wrapper, the same map
    Delta = fun(K) -> maps:get(K, S1) - maps:get(K, S0) end,
    ?assert(Delta(frames_in) >= 300),
    ?assert(Delta(frames_out) >= 100),
    ?assert(Delta(bytes_in) > 100 * 10),
    ?assert(Delta(bytes_out) > 100 * 10),
    ?assertEqual(0, Delta(dropped)),
    ?assertEqual(0, Delta(bad_frames)),
    %% The gauge holds our monitor, and lets it go with the demonitor (which
    %% reaches the node before the next request on this connection).
    true = erlang:demonitor(Mon),
    S2 = erpc:call(N, cnode, dist_stats, []),
    ?assertEqual(maps:get(monitors, S1) - 1, maps:get(monitors, S2)),
    ?assertEqual({exception, undef},
                 catch_erpc(N, cnode, dist_stats, [extra])).

%% Many callers at once: each call's monitor and demonitor reach echo in
%% its own table by reference (past 8 at once, with the hash its
%% connection's table took), and every one is gone when the calls are.
call_monitors(Config) ->
    N = ?config(node, Config),
    Echo = erpc:call(N, erlang, whereis, [echo]),
    M0 = maps:get(monitors, erpc:call(N, cnode, dist_stats, [])),
    Self = self(),
    Pids = [spawn_link(fun() ->
                               [X = gen_server:call({echo, N}, {echo, X})
                                || X <- lists:seq(1, 200)],
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, 32)],
    [receive {done, P} -> ok after 30000 -> ct:fail(callers_timeout) end
     || P <- Pids],
    ?assertEqual({monitored_by, []},
                 erpc:call(N, erlang, process_info, [Echo, monitored_by])),
    ?assertEqual(M0, maps:get(monitors, erpc:call(N, cnode, dist_stats, []))).

catch_erpc(N, M, F, A) ->
    try erpc:call(N, M, F, A) of
        V -> {value, V}
    catch error:{exception, R, _} -> {exception, R}
    end.

gen_server_via_rpc(Config) ->
    N = ?config(node, Config),
    ok = rpc:call(N, gen_server, call, [kv, {put, via_rpc, 42}]),
    {ok, 42} = rpc:call(N, gen_server, call, [kv, {get, via_rpc}]),
    {ok, 42} = erpc:call(N, gen_server, call, [{kv, N}, {get, via_rpc}, 1000]),
    ok = rpc:call(N, gen_server, cast, [echo, anything]),
    ?assertEqual({badrpc, {'EXIT', {noproc, {gen_server, call,
                                             [nokv, {get, x}]}}}},
                 rpc:call(N, gen_server, call, [nokv, {get, x}])),
    %% The same on a BEAM node.
    P = ?config(peer_node, Config),
    ?assertMatch({badrpc, {'EXIT', {noproc, {gen_server, call,
                                             [nokv, {get, x}]}}}},
                 rpc:call(P, gen_server, call, [nokv, {get, x}])).

rex_classic(Config) ->
    N = ?config(node, Config),
    %% What ei_rpc sends.
    {rex, N} ! {self(), {call, erlang, node, [], user}},
    receive {rex, R1} -> ?assertEqual(N, R1)
    after 5000 -> error(no_rex_reply)
    end,
    {rex, N} ! {self(), {call, nomod, nofun, [a], user}},
    receive {rex, R2} ->
            ?assertEqual({badrpc, {'EXIT', {undef, [{nomod, nofun, [a], []}]}}},
                         R2)
    after 5000 -> error(no_rex_reply)
    end,
    %% rpc's gen_server protocol.
    ?assertEqual(N, gen_server:call({rex, N}, {call, erlang, node, [], user})),
    gen_server:cast({rex, N}, {cast, gen_server, call,
                               [kv, {put, rex_cast, 3}], user}),
    ok = cn_node:wait_until(
           fun() -> {ok, 3} =:= cn_node:call(N, kv, {get, rex_cast}) end,
           5000),
    %% What a BEAM node's rpc asks on nodeup.
    {rex, N} ! {self(), features_request},
    receive {features_reply, N, [erpc]} -> ok
    after 5000 -> error(no_features_reply)
    end.

erl_call(Config) ->
    CN = ?config(cn, Config),
    N = ?config(node, Config),
    Exe = filename:join([code:lib_dir(erl_interface), "bin", "erl_call"]),
    [Name, _] = string:split(atom_to_list(N), "@"),
    Cookie = atom_to_list(maps:get(cookie, CN)),
    Run = fun(Apply) ->
                  Port = open_port({spawn_executable, Exe},
                                   [{args, ["-sname", Name, "-c", Cookie,
                                            "-a", Apply]},
                                    exit_status, stderr_to_stdout, binary]),
                  collect(Port, <<>>)
          end,
    ?assertEqual({0, atom_to_binary(N)}, Run("erlang node []")),
    {0, <<"ok">>} = Run("gen_server call [kv, {put, a, 1}]"),
    {0, <<"{ok, 1}">>} = Run("gen_server call [kv, {get, a}]"),
    {0, <<"oops">>} = Run("cnode_echo raise [throw, oops]"),
    {0, <<"{badrpc, {'EXIT', {undef, [{nomod, nofun, [1], []}]}}}">>} =
        Run("nomod nofun [1]"),
    {0, <<"\"25\"">>} = Run("erlang system_info [otp_release]").

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, string:trim(Acc)}
    after 10000 ->
            catch port_close(Port),
            {timeout, Acc}
    end.

init_stop(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    ?assertEqual(ok, rpc:call(N, init, stop, [])),
    ?assertEqual({ok, 0}, cn_node:wait_exit(CN, 5000)),
    {ok, Text} = file:read_file(maps:get(log, CN)),
    ?assertNotEqual(nomatch, binary:match(Text, <<"init:stop() called">>)),
    ?assertNotEqual(nomatch, binary:match(Text, <<"stopped">>)),
    %% It stops through a SIGTERM of its own, which it does not report as
    %% an operator's signal.
    ?assertEqual(nomatch, binary:match(Text, <<"SIGTERM: stopping">>)).

%% A result over max_message cannot travel as the exit reason it would be:
%% the process still ends, with {message_too_large, Max}, at once.
too_large_result(_Config) ->
    CN = cn_node:start(#{owner => self(), args => ["--max-message", "4096"]}),
    N = cn_node:node_name(CN),
    V = binary:copy(<<"x">>, 4080),
    ?assertEqual({exit, {signal, {message_too_large, 4096}}},
                 outcome(fun() -> erpc:call(N, cnode_echo, echo, [V], 5000)
                         end)),
    ?assertEqual({badrpc, {'EXIT', {message_too_large, 4096}}},
                 rpc:call(N, cnode_echo, echo, [V], 5000)),
    %% To rex, the request itself is over the limit: refused at once.
    ?assertMatch({exit, {{message_too_large, 4096}, _}},
                 outcome(fun() ->
                                 gen_server:call({rex, N},
                                                 {call, cnode_echo, echo, [V],
                                                  user}, 5000)
                         end)),
    ?assertEqual(N, erpc:call(N, erlang, node, [])),
    {ok, 0} = cn_node:stop(CN).
