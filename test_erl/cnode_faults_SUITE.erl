%% cnode_faults_SUITE: the node and its peers under hard faults, measured.
%%
%% - kill -9 of the node while 1,000 BEAM calls are in flight: every caller
%%   exits with gen_server:call's nodedown reason within a second;
%% - SIGSTOP of a BEAM peer: the node drops it after its ticktime (between
%%   0.75 and 1.25 times it), read off the node's own call to the peer,
%%   which ends with noconnection at the moment the node drops the
%%   connection, and confirmed by the node's log line;
%% - the node restarted 100 times under one name while a BEAM process
%%   keeps calling it: each incarnation registers with epmd and serves.
%%
%% The C side of the same story (a BEAM peer killed under 1,000 calls from
%% C) is c_src/tests/test-faults.c.  Each case starts nodes of its own,
%% with unique names, and kills only the OS pids it started.  The figures
%% go to the case's log and to the console as "faults: ..." lines.
-module(cnode_faults_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([node_killed_under_1000_calls/1, stopped_peer_dropped/1,
         restart_100_times/1]).

%% Run on the peer.
-export([start_sink/1, sink_count/1]).

-define(CALLERS, 1000).
-define(TICKTIME, 4).
-define(RESTARTS, 100).

suite() ->
    [{timetrap, {seconds, 240}}].

all() ->
    [node_killed_under_1000_calls, stopped_peer_dropped, restart_100_times].

init_per_suite(Config) ->
    ok = cn_node:ensure_dist(),
    Config.

end_per_suite(_Config) ->
    ok.

%% ---- helpers ---------------------------------------------------------------

host() ->
    [_, H] = string:split(atom_to_list(node()), "@"),
    H.

%% Sends a signal to one OS pid (a string); returns kill's output, "" when
%% it worked.
os_kill(Sig, OsPid) ->
    os:cmd("kill -" ++ Sig ++ " " ++ OsPid).

ms_since(T0, T1) ->
    erlang:convert_time_unit(T1 - T0, native, microsecond) / 1000.

%% One line of figures, in the case's log and on the console (rebar3 ct
%% shows nothing else of a passing case).
figure(Fmt, Args) ->
    ct:log(Fmt, Args),
    io:format(user, "~n" ++ Fmt ++ "~n", Args).

percentile(Sorted, P) ->
    N = length(Sorted),
    lists:nth(max(1, min(N, round(P * N))), Sorted).

%% ---- a: kill -9 of the node under 1,000 in-flight calls ---------------------

%% 1,000 processes each call echo with {sleep, 60000}: echo holds every call
%% (a timer and a deferred reply), so all 1,000 are really in flight.  Once
%% each caller is waiting in gen's receive and echo has answered a call sent
%% after all of them (so it has taken every sleep), the node's OS process is
%% sent SIGKILL.  gen_server:call must exit, for every caller, with
%% {{nodedown, N}, {gen_server, call, [{echo, N}, Req, Timeout]}} (gen turns
%% the monitor's noconnection into nodedown), within 1 s of the kill.
node_killed_under_1000_calls(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    pong = net_adm:ping(N),
    Self = self(),
    Req = {sleep, 60000},
    Tmo = 120000,
    Callers = [spawn(fun() ->
                             R = try gen_server:call({echo, N}, Req, Tmo) of
                                     V -> {returned, V}
                                 catch
                                     exit:Reason -> {exit, Reason}
                                 end,
                             Self ! {done, self(), erlang:monotonic_time(), R}
                     end) || _ <- lists:seq(1, ?CALLERS)],
    ok = cn_node:wait_until(
           fun() -> lists:all(fun in_gen_call/1, Callers) end, 30000),
    %% Every sleep went out on the one connection before this call did, so
    %% echo, which serves its mailbox in order, holds all of them now.
    synced = gen_server:call({echo, N}, {echo, synced}, 30000),
    T0 = erlang:monotonic_time(),
    "" = os_kill("KILL", cn_node:os_pid(CN)),
    Expected = {exit, {{nodedown, N}, {gen_server, call, [{echo, N}, Req, Tmo]}}},
    Results = [receive
                   {done, P, T, R} -> {ms_since(T0, T), R}
               after 10000 ->
                       ct:fail({caller_still_waiting, P})
               end || P <- Callers],
    {ok, _} = cn_node:wait_exit(CN, 5000),
    Wrong = [R || {_, R} <- Results, R =/= Expected],
    Times = lists:sort([Ms || {Ms, _} <- Results]),
    Max = lists:last(Times),
    figure("faults: node_kill callers=~p exited_nodedown=~p "
           "exit_after_kill_ms p50=~.1f p99=~.1f max=~.1f",
           [?CALLERS, length(Results) - length(Wrong),
            percentile(Times, 0.5), percentile(Times, 0.99), Max]),
    ?assertEqual([], lists:sublist(Wrong, 5)),
    ?assertEqual(?CALLERS, length(Results)),
    ?assert(Max =< 1000.0),
    ?assertEqual(pang, net_adm:ping(N)).

in_gen_call(Pid) ->
    case erlang:process_info(Pid, [current_function, status]) of
        [{current_function, {gen, do_call, 4}}, {status, waiting}] -> true;
        _ -> false
    end.

%% ---- b: SIGSTOP of a BEAM peer ------------------------------------------------

%% The node runs with --ticktime 4.  A peer node (driven over stdio, so that
%% the test node never has a connection to it of its own) connects to the
%% node and registers a sink that holds every call it gets.  The node's echo
%% is asked to call that sink with a 60 s timeout: the call is pending in
%% the node, and it ends with {error, noconnection} at the moment the node
%% drops the peer; that reply is the measurement.  The peer then makes one
%% last call to the node (the last thing the node reads from it), and 250 ms
%% later it gets SIGSTOP.  The peer runs with net_ticktime 600, so it sends
%% no tick of its own in the window.  The node checks its connections every
%% ticktime/4 and drops one it has read nothing from for more than
%% ticktime, so it should drop the peer between T - 0.25 s and
%% 1.25 T - 0.25 s after the stop: the test asserts 0.75 T .. 1.25 T.  The
%% node's stderr (cn_node's log file) must also say why: net_tick_timeout.
%% Then SIGCONT, and SIGKILL for the peer.
%%
%% The test node's own connection to the node would be dropped the same way
%% (it ticks every 15 s), so a keeper process calls echo every 250 ms
%% meanwhile.
stopped_peer_dropped(_Config) ->
    CN = cn_node:start(#{owner => self(),
                         args => ["--ticktime", integer_to_list(?TICKTIME)]}),
    N = cn_node:node_name(CN),
    Keeper = spawn_link(fun() -> keeper(N) end),
    Dir = filename:dirname(code:which(?MODULE)),
    {ok, P, PN} = peer:start(#{name => "stop" ++ cn_node:uniq(),
                               connection => standard_io,
                               args => ["-pa", Dir,
                                        "-kernel", "net_ticktime", "600"]}),
    PeerOsPid = peer:call(P, os, getpid, []),
    guard_os_pid(PeerOsPid),
    true = peer:call(P, erlang, set_cookie, [N, cn_node:cookie(CN)]),
    true = peer:call(P, net_kernel, connect_node, [N]),
    Sink = list_to_atom("cn_sink_" ++ cn_node:uniq()),
    ok = peer:call(P, ?MODULE, start_sink, [Sink]),
    Self = self(),
    {Pending, PRef} =
        spawn_monitor(
          fun() ->
                  R = (catch gen_server:call({echo, N},
                                             {call, {Sink, PN}, hold, 60000},
                                             70000)),
                  Self ! {pending_done, erlang:monotonic_time(), R}
          end),
    ok = cn_node:wait_until(
           fun() -> peer:call(P, ?MODULE, sink_count, [Sink]) =:= 1 end,
           10000),
    last = peer:call(P, gen_server, call, [{echo, N}, {echo, last}]),
    TLast = erlang:monotonic_time(),
    timer:sleep(250),
    TStop = erlang:monotonic_time(),
    "" = os_kill("STOP", PeerOsPid),
    {TDrop, Reply} =
        receive {pending_done, T, R} -> {T, R}
        after (?TICKTIME * 3000) -> ct:fail(peer_not_dropped)
        end,
    ?assertEqual({error, noconnection}, Reply),
    Ms = ms_since(TStop, TDrop),
    figure("faults: sigstop ticktime_s=~p dropped_after_stop_ms=~.1f "
           "ratio=~.3f dropped_after_last_read_ms=~.1f",
           [?TICKTIME, Ms, Ms / (?TICKTIME * 1000), ms_since(TLast, TDrop)]),
    ?assert(Ms >= 0.75 * ?TICKTIME * 1000),
    ?assert(Ms =< 1.25 * ?TICKTIME * 1000),
    Line = "connection to " ++ atom_to_list(PN) ++ " closed: net_tick_timeout",
    ok = cn_node:wait_until(
           fun() ->
                   {ok, Log} = file:read_file(cn_node:log_file(CN)),
                   string:find(Log, Line) =/= nomatch
           end, 5000),
    receive {'DOWN', PRef, process, Pending, normal} -> ok
    after 5000 -> ct:fail(pending_still_alive)
    end,
    %% The node serves on, and the test node was never dropped.
    fine = gen_server:call({echo, N}, {echo, fine}, 5000),
    "" = os_kill("CONT", PeerOsPid),
    "" = os_kill("KILL", PeerOsPid),
    catch peer:stop(P),
    unlink(Keeper),
    exit(Keeper, kill),
    {ok, 0} = cn_node:stop(CN).

%% Calls echo every 250 ms, so that the test node's connection to a node
%% with a short ticktime never goes idle.
keeper(N) ->
    alive = gen_server:call({echo, N}, {echo, alive}, 5000),
    timer:sleep(250),
    keeper(N).

%% Makes sure that OsPid (a peer of this case) is resumed and killed when
%% the calling test process exits, however it exits.
guard_os_pid(OsPid) ->
    Case = self(),
    spawn(fun() ->
                  Ref = erlang:monitor(process, Case),
                  receive
                      {'DOWN', Ref, process, Case, _} ->
                          _ = os_kill("CONT", OsPid),
                          _ = os_kill("KILL", OsPid)
                  end
          end),
    ok.

%% A registered process that takes calls and never answers them; sink_count
%% tells how many it holds.
start_sink(Name) ->
    Pid = spawn(fun() -> sink([]) end),
    true = register(Name, Pid),
    ok.

sink(Held) ->
    receive
        {count, From, Ref} ->
            From ! {Ref, length(Held)},
            sink(Held);
        {'$gen_call', From, _Req} ->
            sink([From | Held]);
        _ ->
            sink(Held)
    end.

sink_count(Name) ->
    Ref = make_ref(),
    Name ! {count, self(), Ref},
    receive {Ref, N} -> N after 5000 -> timeout end.

%% ---- c: 100 restarts under one name -----------------------------------------

%% One name and cookie for the whole case, unique to this run.  A caller
%% process loops on kv's {get, incarnation} (2 s timeout, 10 ms pause after
%% a failure) for the whole case.  Each time round, the node is started;
%% epmd must give the port the node printed (erl_epmd:port_please and
%% net_adm:names); the test stores the restart's number under incarnation
%% and waits for the caller to read it back; then the node is stopped,
%% by SIGTERM (exit status 0) on odd rounds and by SIGKILL on even ones, and
%% the test waits until epmd no longer has the name before the next start.
restart_100_times(_Config) ->
    Name = "cnr" ++ cn_node:uniq(),
    Cookie = "ck" ++ cn_node:uniq(),
    N = list_to_atom(Name ++ "@" ++ host()),
    true = erlang:set_cookie(N, list_to_atom(Cookie)),
    Self = self(),
    Caller = spawn_link(fun() -> restart_caller(N, Self, 0, 0, 0) end),
    T0 = erlang:monotonic_time(),
    Rounds = [restart_round(I, Name, Cookie, N) || I <- lists:seq(1, ?RESTARTS)],
    TotalMs = ms_since(T0, erlang:monotonic_time()),
    Caller ! {stop, self()},
    {Ok, Failed} = receive {caller_done, O, F} -> {O, F}
                   after 10000 -> ct:fail(caller_hung)
                   end,
    Serve = lists:sort([S || {S, _} <- Rounds]),
    Stop = lists:sort([S || {_, S} <- Rounds]),
    figure("faults: restarts=~p served=~p caller_calls_ok=~p caller_calls_failed=~p "
           "total_s=~.1f start_to_served_ms p50=~.1f max=~.1f "
           "stop_to_unregistered_ms p50=~.1f max=~.1f",
           [?RESTARTS, length(Rounds), Ok, Failed, TotalMs / 1000,
            percentile(Serve, 0.5), lists:last(Serve),
            percentile(Stop, 0.5), lists:last(Stop)]),
    ?assertEqual(?RESTARTS, length(Rounds)),
    ?assert(Ok >= ?RESTARTS).

%% One round: returns {ms from start to the caller served, ms from the stop
%% signal to epmd forgetting the name}.
restart_round(I, Name, Cookie, N) ->
    T0 = erlang:monotonic_time(),
    CN = cn_node:start(#{name => Name, cookie => Cookie, owner => self()}),
    N = cn_node:node_name(CN),
    Port = cn_node:port(CN),
    {port, Port, _} = erl_epmd:port_please(Name, {127, 0, 0, 1}),
    {ok, Names} = net_adm:names(),
    ?assertEqual({Name, Port}, lists:keyfind(Name, 1, Names)),
    ok = gen_server:call({kv, N}, {put, incarnation, I}, 5000),
    receive {served, I} -> ok
    after 10000 -> ct:fail({incarnation_not_served, I})
    end,
    Served = ms_since(T0, erlang:monotonic_time()),
    T1 = erlang:monotonic_time(),
    case I rem 2 of
        1 -> {ok, 0} = cn_node:stop(CN);
        0 -> {ok, _} = cn_node:kill(CN)
    end,
    ok = cn_node:wait_until(
           fun() -> erl_epmd:port_please(Name, {127, 0, 0, 1}) =:= noport end,
           5000),
    {Served, ms_since(T1, erlang:monotonic_time())}.

restart_caller(N, Parent, Last, Ok, Failed) ->
    receive
        {stop, Parent} -> Parent ! {caller_done, Ok, Failed}
    after 0 ->
            case catch gen_server:call({kv, N}, {get, incarnation}, 2000) of
                {ok, I} when I =/= Last ->
                    Parent ! {served, I},
                    restart_caller(N, Parent, I, Ok + 1, Failed);
                {ok, _} ->
                    restart_caller(N, Parent, Last, Ok + 1, Failed);
                error ->
                    %% A new incarnation, before the test stored its number.
                    restart_caller(N, Parent, Last, Ok + 1, Failed);
                _ ->
                    timer:sleep(10),
                    restart_caller(N, Parent, Last, Ok, Failed + 1)
            end
    end.
