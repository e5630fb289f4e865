%% cnode_cluster_SUITE: the node in a cluster under load and failure.
%%
%% Many concurrent callers, a 16 MiB binary, several BEAM nodes at once
%% (peers started with OTP's peer module), reconnecting after
%% erlang:disconnect_node, a wrong cookie, the node's OS process killed
%% under its callers, a peer going down under a call the node makes, and a
%% SIGTERM while calls are in flight.
-module(cnode_cluster_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).

-export([concurrent_callers/1, concurrent_kv/1, cast_ordering/1,
         many_monitors/1, many_links/1, big_binary/1,
         several_beam_nodes/1, c_calls_peers/1, reconnect/1,
         disconnect_fires_monitors_and_links/1, wrong_cookie/1,
         node_killed/1, c_call_peer_goes_down/1, sigterm_under_load/1,
         restart_intensity/1]).

%% Run on a peer node.
-export([peer_work/3, catch_call/2]).

suite() ->
    [{timetrap, {seconds, 90}}].

all() ->
    [concurrent_callers, concurrent_kv, cast_ordering, many_monitors,
     many_links, big_binary, several_beam_nodes,
     c_calls_peers, reconnect, disconnect_fires_monitors_and_links,
     wrong_cookie, node_killed, c_call_peer_goes_down, sigterm_under_load,
     restart_intensity].

init_per_suite(Config) ->
    CN = cn_node:start(),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

init_per_testcase(_TC, Config) ->
    _ = cn_node:wait_restarted(?config(node, Config), undefined),
    Config.

end_per_testcase(_TC, Config) ->
    [catch peer:stop(P) || P <- get_peers()],
    %% Whatever the case did, the suite's node still serves.
    N = ?config(node, Config),
    fine = gen_server:call({echo, N}, {echo, fine}, 5000),
    ok.

%% ---- helpers ---------------------------------------------------------------

%% Starts a peer node that can load this suite's modules; remembered for
%% end_per_testcase.
start_peer() ->
    Dir = filename:dirname(code:which(?MODULE)),
    Name = "peer" ++ cn_node:uniq(),
    {ok, Peer, Node} = peer:start(#{name => Name, args => ["-pa", Dir]}),
    put(peers, [Peer | get_peers()]),
    {Peer, Node}.

get_peers() ->
    case get(peers) of
        undefined -> [];
        Ps -> Ps
    end.

%% Runs Fun in a new process; returns a function that waits for its
%% result: {ok, Value} or {exit, Reason}.
async(Fun) ->
    Parent = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  R = try {ok, Fun()} catch exit:Reason -> {exit, Reason} end,
                  Parent ! {Ref, R}
          end),
    fun() ->
            receive {Ref, R} -> R
            after 60000 -> ct:fail(async_timeout)
            end
    end.

%% ---- the cases -------------------------------------------------------------

%% 50 callers, each making many calls with payloads of its own: every reply
%% is the caller's own, none lost, none mixed up.
concurrent_callers(Config) ->
    N = ?config(node, Config),
    Callers = 50,
    Calls = 200,
    T0 = erlang:monotonic_time(),
    Waits = [async(fun() -> caller(N, I, Calls) end)
             || I <- lists:seq(1, Callers)],
    Results = [W() || W <- Waits],
    ct:log("~p x ~p calls in ~p ms",
           [Callers, Calls, cn_node:elapsed_ms(T0)]),
    [{ok, Calls} = R || R <- Results],
    ok.

caller(N, I, Calls) ->
    lists:foldl(
      fun(J, Acc) ->
              Payload = {I, J, self(), make_ref(), lists:seq(1, J rem 17),
                         <<I:32, J:32>>},
              case gen_server:call({echo, N}, {echo, Payload}, 10000) of
                  Payload -> Acc + 1;
                  Other -> exit({mixed_reply, I, J, Payload, Other})
              end
      end, 0, lists:seq(1, Calls)).

%% The same through kv: each caller increments and reads a key of its own,
%% with casts in between.
concurrent_kv(Config) ->
    N = ?config(node, Config),
    U = erlang:unique_integer([positive]),
    Waits = [async(fun() -> kv_worker(N, {U, I}, 100) end)
             || I <- lists:seq(1, 50)],
    [{ok, 100} = W() || W <- Waits],
    [begin
         {ok, 100} = gen_server:call({kv, N}, {get, {U, I}}),
         ok = gen_server:call({kv, N}, {delete, {U, I}}),
         ok = gen_server:call({kv, N}, {delete, {U, I, cast}})
     end || I <- lists:seq(1, 50)],
    ok.

kv_worker(N, K, Times) ->
    lists:foreach(
      fun(J) ->
              {ok, J} = gen_server:call({kv, N}, {incr, K, 1}),
              ok = gen_server:cast({kv, N}, {put, erlang:append_element(K, cast), J}),
              {ok, J} = gen_server:call({kv, N}, {get, erlang:append_element(K, cast)})
      end, lists:seq(1, Times)),
    {ok, Times} = gen_server:call({kv, N}, {get, K}),
    Times.

%% Casts and calls from one process arrive in the order they were sent,
%% even 20000 of them back to back.
cast_ordering(Config) ->
    N = ?config(node, Config),
    K = {ordering, erlang:unique_integer()},
    [ok = gen_server:cast({kv, N}, {put, K, I}) || I <- lists:seq(1, 20000)],
    {ok, 20000} = gen_server:call({kv, N}, {get, K}, 30000),
    %% Plain sends to echo interleaved with casts of {send, ...}: all come
    %% back in order.
    [ok = gen_server:cast({echo, N}, {send, self(), {seq, I}})
     || I <- lists:seq(1, 5000)],
    [receive {seq, I} -> ok after 10000 -> ct:fail({missing, I}) end
     || I <- lists:seq(1, 5000)],
    ok = gen_server:call({kv, N}, {delete, K}).

%% Thousands of monitors on echo, half of them taken back: exactly the
%% others fire, each once, with the reason.
many_monitors(Config) ->
    N = ?config(node, Config),
    Echo = gen_server:call({echo, N}, pid),
    ByName = [erlang:monitor(process, {echo, N}) || _ <- lists:seq(1, 3000)],
    ByPid = [erlang:monitor(process, Echo) || _ <- lists:seq(1, 3000)],
    {Keep, Drop} = lists:split(3000, lists:append(lists:zipwith(fun(A, B) -> [A, B] end,
                                                                ByName, ByPid))),
    [true = erlang:demonitor(R) || R <- Drop],
    ok = gen_server:cast({echo, N}, {stop, many_monitors}),
    Got = [receive {'DOWN', R, process, _, Reason} -> Reason
           after 10000 -> ct:fail({no_down, R})
           end || R <- Keep],
    [many_monitors] = lists:usort(Got),
    [] = cn_node:flush(300),
    _ = cn_node:wait_restarted(N, Echo).

%% Hundreds of processes linked to echo: all get its EXIT; the ones that
%% unlinked do not.
many_links(Config) ->
    N = ?config(node, Config),
    Echo = gen_server:call({echo, N}, pid),
    Self = self(),
    Linker = fun(Unlink) ->
                     spawn(fun() ->
                                   process_flag(trap_exit, true),
                                   true = link(Echo),
                                   Unlink andalso unlink(Echo),
                                   Self ! {linked, self()},
                                   receive
                                       {'EXIT', Echo, R} -> Self ! {exit, self(), R}
                                   after 5000 -> Self ! {no_exit, self()}
                                   end
                           end)
             end,
    Linked = [Linker(false) || _ <- lists:seq(1, 300)],
    Unlinked = [Linker(true) || _ <- lists:seq(1, 50)],
    [receive {linked, P} -> ok end || P <- Linked ++ Unlinked],
    ok = gen_server:cast({echo, N}, {stop, many_links}),
    [receive {exit, P, many_links} -> ok after 10000 -> ct:fail({no_exit, P}) end
     || P <- Linked],
    [receive {no_exit, P} -> ok after 10000 -> ct:fail({exit_after_unlink, P}) end
     || P <- Unlinked],
    _ = cn_node:wait_restarted(N, Echo).

big_binary(Config) ->
    N = ?config(node, Config),
    Bin = crypto:strong_rand_bytes(16 bsl 20),
    T0 = erlang:monotonic_time(),
    Back = gen_server:call({echo, N}, {echo, Bin}, 30000),
    ct:log("16 MiB echo in ~p ms", [cn_node:elapsed_ms(T0)]),
    ?assert(Back =:= Bin),
    %% Inside a term, and through kv.
    Term = {big, [Bin, 1], #{b => Bin}},
    ?assert(gen_server:call({echo, N}, {echo, Term}, 30000) =:= Term),
    K = {big, erlang:unique_integer()},
    ok = gen_server:call({kv, N}, {put, K, Bin}, 30000),
    {ok, Got} = gen_server:call({kv, N}, {get, K}, 30000),
    ?assert(Got =:= Bin),
    ok = gen_server:call({kv, N}, {delete, K}),
    small = gen_server:call({echo, N}, {echo, small}).

catch_call(Dest, Req) ->
    catch gen_server:call(Dest, Req, 5000).

%% Run on a peer: ping, calls of its own, in parallel processes.
peer_work(N, Id, Calls) ->
    pong = net_adm:ping(N),
    Self = self(),
    Pids = [spawn_link(fun() ->
                               [begin
                                    P = {node(), Id, W, J},
                                    P = gen_server:call({echo, N}, {echo, P}),
                                    ok = gen_server:call({kv, N}, {put, P, J}),
                                    {ok, J} = gen_server:call({kv, N}, {get, P}),
                                    ok = gen_server:call({kv, N}, {delete, P})
                                end || J <- lists:seq(1, Calls)],
                               Self ! {done, self()}
                       end) || W <- lists:seq(1, 5)],
    [receive {done, P} -> ok end || P <- Pids],
    EchoPid = gen_server:call({echo, N}, pid),
    {ok, EchoPid}.

several_beam_nodes(Config) ->
    N = ?config(node, Config),
    Cookie = cn_node:cookie(?config(cn, Config)),
    Peers = [start_peer() || _ <- lists:seq(1, 3)],
    [true = erpc:call(PN, erlang, set_cookie, [N, Cookie]) || {_, PN} <- Peers],
    Waits = [async(fun() -> erpc:call(PN, ?MODULE, peer_work, [N, I, 50], 60000) end)
             || {{_, PN}, I} <- lists:zip(Peers, lists:seq(1, 3))],
    %% The test node calls too, meanwhile.
    [I = gen_server:call({echo, N}, {echo, I}) || I <- lists:seq(1, 100)],
    EchoPid = gen_server:call({echo, N}, pid),
    [{ok, {ok, EchoPid}} = W() || W <- Waits],
    ok.

%% echo calls servers on several peers: the node connects to each on its
%% first send.
c_calls_peers(Config) ->
    N = ?config(node, Config),
    Cookie = cn_node:cookie(?config(cn, Config)),
    Peers = [start_peer() || _ <- lists:seq(1, 2)],
    [begin
         true = erpc:call(PN, erlang, set_cookie, [N, Cookie]),
         Srv = spawn(PN, fun() -> peer_server() end),
         true = erpc:call(PN, erlang, register, [cn_peer_srv, Srv]),
         {ok, {PN, hello}} =
             gen_server:call({echo, N}, {call, {cn_peer_srv, PN}, hello, 5000}),
         {ok, {PN, by_pid}} =
             gen_server:call({echo, N}, {call, Srv, by_pid, 5000}),
         {error, noproc} =
             gen_server:call({echo, N}, {call, {no_such, PN}, x, 5000})
     end || {_, PN} <- Peers],
    ok.

%% A minimal server on a peer: answers {node(), Req}; never answers sink.
peer_server() ->
    receive
        {'$gen_call', _From, sink} ->
            peer_server();
        {'$gen_call', From, Req} ->
            gen_server:reply(From, {node(), Req}),
            peer_server()
    end.

reconnect(Config) ->
    N = ?config(node, Config),
    [begin
         {I, before} = gen_server:call({echo, N}, {echo, {I, before}}),
         true = erlang:disconnect_node(N),
         ?assertNot(lists:member(N, nodes(connected))),
         {I, again} = gen_server:call({echo, N}, {echo, {I, again}}),
         K = {reconnect, I},
         ok = gen_server:call({kv, N}, {put, K, I}),
         {ok, I} = gen_server:call({kv, N}, {get, K}),
         ok = gen_server:call({kv, N}, {delete, K})
     end || I <- lists:seq(1, 5)],
    %% The node's own calls and sends to us after a reconnect.
    {ok, Srv} = cn_erl_server:start(),
    true = erlang:disconnect_node(N),
    {ok, {got, x}} = gen_server:call({echo, N}, {call, Srv, x, 5000}),
    true = erlang:disconnect_node(N),
    ok = gen_server:cast({echo, N}, {send, self(), after_reconnect}),
    receive after_reconnect -> ok
    after 5000 -> ct:fail(no_message)
    end,
    gen_server:stop(Srv).

%% Dropping the connection fires monitors and links across it with
%% noconnection, on both sides: the node's own call to us fails too.
disconnect_fires_monitors_and_links(Config) ->
    N = ?config(node, Config),
    process_flag(trap_exit, true),
    Echo = gen_server:call({echo, N}, pid),
    R1 = erlang:monitor(process, {echo, N}),
    R2 = erlang:monitor(process, Echo),
    true = link(Echo),
    %% A call the node makes to us, pending.
    Name = list_to_atom("cn_sink_" ++ cn_node:uniq()),
    true = register(Name, self()),
    Pending = async(fun() ->
                            gen_server:call({echo, N},
                                            {call, {Name, node()}, x, 10000},
                                            15000)
                    end),
    receive {'$gen_call', _, x} -> ok after 5000 -> ct:fail(no_call) end,
    T0 = erlang:monotonic_time(),
    true = erlang:disconnect_node(N),
    receive {'DOWN', R1, process, {echo, N}, noconnection} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    receive {'DOWN', R2, process, Echo, noconnection} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    receive {'EXIT', Echo, noconnection} -> ok
    after 5000 -> ct:fail({no_exit, cn_node:flush()})
    end,
    %% The caller's own connection went down too: the pending call ends
    %% with nodedown on our side.
    {exit, {{nodedown, N}, _}} = Pending(),
    ct:log("all fired within ~p ms", [cn_node:elapsed_ms(T0)]),
    unregister(Name),
    %% On the node's side the link fired too: echo (not trapping exits)
    %% died with noconnection and was restarted.
    _ = cn_node:wait_restarted(N, Echo).

wrong_cookie(Config) ->
    N = ?config(node, Config),
    #{handshakes_failed := F0, connections := C0} = cnode:dist_stats(N),
    {_, P} = start_peer(),
    true = erpc:call(P, erlang, set_cookie, [N, 'not_the_cookie']),
    pang = erpc:call(P, net_adm, ping, [N]),
    {'EXIT', {{nodedown, N}, {gen_server, call, _}}} =
        erpc:call(P, ?MODULE, catch_call, [{echo, N}, pid]),
    %% Meanwhile the test node is served.
    here = gen_server:call({echo, N}, {echo, here}),
    false = lists:member(N, erpc:call(P, erlang, nodes, [connected])),
    %% The same peer with the right cookie then gets in.
    true = erpc:call(P, erlang, set_cookie,
                     [N, cn_node:cookie(?config(cn, Config))]),
    pong = erpc:call(P, net_adm, ping, [N]),
    right = erpc:call(P, gen_server, call, [{echo, N}, {echo, right}]),
    %% The node counted the refused handshakes and the one that got in.
    #{handshakes_failed := F1, connections := C1} = cnode:dist_stats(N),
    ?assert(F1 > F0),
    ?assertEqual(C0 + 1, C1).

%% The node's OS process dies under its callers: monitors, links and the
%% pending call all see noconnection / nodedown, and the node is gone from
%% epmd.
node_killed(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    process_flag(trap_exit, true),
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    Echo = gen_server:call({echo, N}, pid),
    R1 = erlang:monitor(process, {echo, N}),
    R2 = erlang:monitor(process, Echo),
    R3 = erlang:monitor(process, {kv, N}),
    true = link(Echo),
    Pending = async(fun() -> gen_server:call({echo, N}, {sleep, 20000}, 30000) end),
    timer:sleep(100),
    {ok, Status} = cn_node:kill(CN),
    ct:log("killed: exit status ~p", [Status]),
    receive {'DOWN', R1, process, {echo, N}, noconnection} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    receive {'DOWN', R2, process, Echo, noconnection} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    receive {'DOWN', R3, process, {kv, N}, noconnection} -> ok
    after 5000 -> ct:fail({no_down, cn_node:flush()})
    end,
    receive {'EXIT', Echo, noconnection} -> ok
    after 5000 -> ct:fail({no_exit, cn_node:flush()})
    end,
    receive {nodedown, N, _} -> ok
    after 5000 -> ct:fail({no_nodedown, cn_node:flush()})
    end,
    {exit, {{nodedown, N}, {gen_server, call, _}}} = Pending(),
    ok = net_kernel:monitor_nodes(false, [{node_type, all}]),
    pang = net_adm:ping(N),
    [Alive, _] = string:split(atom_to_list(N), "@"),
    noport = erl_epmd:port_please(Alive, {127, 0, 0, 1}).

%% echo waits on a call to a server on a peer; the peer goes down: the call
%% ends with noconnection, well before its timeout.
c_call_peer_goes_down(Config) ->
    N = ?config(node, Config),
    Cookie = cn_node:cookie(?config(cn, Config)),
    {P, PN} = start_peer(),
    true = erpc:call(PN, erlang, set_cookie, [N, Cookie]),
    Srv = spawn(PN, fun() -> peer_server() end),
    true = erpc:call(PN, erlang, register, [cn_peer_srv, Srv]),
    {ok, {PN, up}} = gen_server:call({echo, N}, {call, Srv, up, 5000}),
    Wait = async(fun() ->
                         gen_server:call({echo, N},
                                         {call, {cn_peer_srv, PN}, sink, 20000},
                                         30000)
                 end),
    timer:sleep(300),
    T0 = erlang:monotonic_time(),
    ok = peer:stop(P),
    put(peers, get_peers() -- [P]),
    {ok, {error, noconnection}} = Wait(),
    Ms = cn_node:elapsed_ms(T0),
    ct:log("noconnection ~p ms after the peer stopped", [Ms]),
    ?assert(Ms < 10000),
    %% And a call to the node that is gone now.
    {error, noconnection} =
        gen_server:call({echo, N}, {call, {cn_peer_srv, PN}, x, 3000}, 10000).

%% SIGTERM while callers are busy: the node exits 0 and every caller is
%% released.
sigterm_under_load(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    Sleepers = [async(fun() -> gen_server:call({echo, N}, {sleep, 30000}, 40000) end)
                || _ <- lists:seq(1, 5)],
    Busy = [async(fun() -> busy_loop(N, 0) end) || _ <- lists:seq(1, 5)],
    timer:sleep(300),
    T0 = erlang:monotonic_time(),
    {ok, 0} = cn_node:stop(CN),
    ct:log("stopped in ~p ms", [cn_node:elapsed_ms(T0)]),
    [begin
         {exit, {Reason, {gen_server, call, _}}} = W(),
         ct:log("sleeper: ~p", [Reason])
     end || W <- Sleepers],
    [begin
         {exit, {Reason, Count}} = W(),
         ct:log("busy caller: ~p after ~p calls", [Reason, Count])
     end || W <- Busy],
    ?assert(cn_node:elapsed_ms(T0) < 15000).

busy_loop(N, Count) ->
    case catch gen_server:call({kv, N}, {incr, busy, 1}, 5000) of
        {ok, _} -> busy_loop(N, Count + 1);
        {'EXIT', {Reason, _}} -> exit({Reason, Count})
    end.

%% cnode_sup allows 100 restarts in a second: 60 restarts in a row leave it
%% standing; a burst of stops takes it past the limit, and it shuts down as
%% an OTP supervisor does (reason shutdown).  The node program, its top
%% supervisor gone, then exits with status 1.
restart_intensity(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    Sup = erlang:monitor(process, {cnode_sup, N}),
    T0 = erlang:monotonic_time(),
    lists:foldl(fun(_, Old) ->
                        exit(Old, kill),
                        cn_node:wait_restarted(N, Old)
                end, gen_server:call({echo, N}, pid), lists:seq(1, 60)),
    ct:log("60 restarts in ~p ms", [cn_node:elapsed_ms(T0)]),
    [{specs, 2}, {active, 2}, {supervisors, 0}, {workers, 2}] =
        supervisor:count_children({cnode_sup, N}),
    [] = cn_node:flush(),
    T1 = erlang:monotonic_time(),
    stop_burst(N, Sup, T1),
    receive {'DOWN', Sup, process, {cnode_sup, N}, Reason} -> shutdown = Reason
    after 10000 -> ct:fail(supervisor_still_up)
    end,
    ct:log("supervisor down ~p ms into the burst", [cn_node:elapsed_ms(T1)]),
    {ok, 1} = cn_node:wait_exit(CN, 5000).

%% Casts {stop, burst} to echo in small batches, a millisecond apart,
%% until the supervisor goes down (or 10 s pass).  Casts that arrive while
%% echo restarts are dropped, and all the casts the node reads in one go
%% go to the same echo, which dies of the first: a batch crashes echo
%% about once, however large.  Under a loaded sanitized build, batches of
%% 1000 sent back to back crashed it only about 10 times a second, short
%% of the 100 the supervisor allows.
stop_burst(N, Sup, T0) ->
    receive
        {'DOWN', Sup, _, _, _} = Down -> self() ! Down
    after 1 ->
            case cn_node:elapsed_ms(T0) > 10000 of
                true -> ok;
                false ->
                    [gen_server:cast({echo, N}, {stop, burst})
                     || _ <- lists:seq(1, 20)],
                    stop_burst(N, Sup, T0)
            end
    end.
