%% cnode_observer_SUITE: observer and etop pointed at the C node.
%%
%% observer's System tab reads rpc:call(Node, observer_backend, sys_info,
%% []); its Processes tab spawns observer_backend:procs_info(Collector) on
%% the node and gathers {procs_info, Pid, [#etop_proc_info{}]} until the
%% spawned process exits normal; etop spawns
%% observer_backend:etop_collect(Collector) and waits for
%% {Pid, #etop_info{}}.  These cases make the same calls with OTP's own
%% clients (etop itself, with its text output captured; etop's loadinfo
%% and meminfo on what the node sent) and the records from OTP's headers,
%% and check the values against what the node answers to erlang:processes/0,
%% registered/0, process_info/2 and system_info/1.  observer_gui runs
%% observer itself on a virtual display (Xvfb, on a peer node started with
%% DISPLAY): it picks the C node, clicks through every tab and opens a
%% process's window, and nothing may be logged on the way.
-module(cnode_observer_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("observer/include/etop.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([sys_info/1, sys_info_moves/1, etop_collect/1, procs_info/1,
         observer_node_checks/1, etop_text/1, fetch_stats/1,
         process_window/1, observer_gui/1, procs_info_chunks/1]).

-export([log/2, observer_gui/2]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [sys_info, sys_info_moves, etop_collect, procs_info,
     observer_node_checks, etop_text, fetch_stats, process_window,
     observer_gui, procs_info_chunks].

init_per_suite(Config) ->
    CN = cn_node:start(),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

%% ---- Helpers ----------------------------------------------------------------

%% The keys observer's System tab shows (observer_sys_wx:info_fields/0)
%% that a C node has.
-define(SYS_KEYS,
        [otp_release, version, system_architecture, wordsize_external,
         wordsize_internal, smp_support, threads, thread_pool_size,
         logical_processors, logical_processors_online,
         logical_processors_available, schedulers, schedulers_online,
         schedulers_available, total, processes, atom, binary, code, ets,
         uptime, run_queue, io_input, io_output, process_count,
         process_limit, port_count, dist_buf_busy_limit]).

%% The node's registered processes: [{Name, Pid}].
registered(N) ->
    [{Name, rpc:call(N, erlang, whereis, [Name])}
     || Name <- rpc:call(N, erlang, registered, [])].

%% Runs F with echo suspended (sys) and K plain messages queued in its
%% mailbox, which process_info and observer_backend must both count.
with_queued_echo(N, K, F) ->
    ok = sys:suspend({echo, N}),
    try
        [{echo, N} ! {observer_suite, I} || I <- lists:seq(1, K)],
        Echo = rpc:call(N, erlang, whereis, [echo]),
        ok = cn_node:wait_until(
               fun() ->
                       {message_queue_len, K} =:=
                           rpc:call(N, erlang, process_info,
                                    [Echo, message_queue_len])
               end, 5000),
        F(Echo)
    after
        ok = sys:resume({echo, N})
    end.

%% Checks one #etop_proc_info{} of the node against process_info/2.
check_proc(N, #etop_proc_info{pid = P, mem = Mem, reds = Reds, name = Name,
                              runtime = RT, cf = Cf, mq = Mq}) ->
    ?assertEqual(N, node(P)),
    [{registered_name, Reg}, {current_function, PCf}, {initial_call, Init},
     {memory, PMem}] =
        rpc:call(N, erlang, process_info,
                 [P, [registered_name, current_function, initial_call,
                      memory]]),
    case Reg of
        [] -> ?assertEqual(Init, Name);
        _ -> ?assertEqual(Reg, Name)
    end,
    ?assertEqual(PCf, Cf),
    ?assertEqual(PMem, Mem),
    ?assert(Mem > 0),
    ?assertEqual(0, Reds),
    ?assertEqual(0, RT),
    ?assert(is_integer(Mq) andalso Mq >= 0).

%% The collector's messages until the backend exits, in arrival order.
collect_procs_info(B) ->
    receive
        {procs_info, B, Procs} -> [{procs, Procs} | collect_procs_info(B)];
        {'EXIT', B, Reason} -> [{exit, Reason}]
    after 10000 ->
            [timeout]
    end.

%% A minimal I/O server: keeps what is written, answers as a terminal
%% without geometry (what etop's text output asks).
io_capture(Acc) ->
    receive
        {io_request, From, ReplyAs, Req} ->
            {Reply, Acc1} = io_req(Req, Acc),
            From ! {io_reply, ReplyAs, Reply},
            io_capture(Acc1);
        {get, From} ->
            From ! {captured, self(), lists:flatten(lists:reverse(Acc))},
            io_capture(Acc);
        stop ->
            ok
    end.

io_req({put_chars, _Enc, Chars}, Acc) ->
    {ok, [unicode:characters_to_list(Chars) | Acc]};
io_req({put_chars, _Enc, M, F, A}, Acc) ->
    {ok, [unicode:characters_to_list(apply(M, F, A)) | Acc]};
io_req(getopts, Acc) ->
    {[{encoding, unicode}], Acc};
io_req({requests, Reqs}, Acc) ->
    lists:foldl(fun(R, {_, A}) -> io_req(R, A) end, {ok, Acc}, Reqs);
io_req(_, Acc) ->
    {{error, enotsup}, Acc}.

%% True when a row of etop's table for echo shows Mq (a whole word) and
%% echo's current function.
echo_row_shows(Text, Mq) ->
    Rows = [string:lexemes(L, " ") || L <- string:split(Text, "\n", all)],
    lists:any(fun(Ws) ->
                      lists:member("echo", Ws) andalso lists:member(Mq, Ws)
                          andalso lists:member("cnode_echo:loop/0", Ws)
              end, Rows).

captured(Io) ->
    Io ! {get, self()},
    receive {captured, Io, Text} -> Text after 5000 -> error(io_capture) end.

%% ---- Cases ----------------------------------------------------------------

sys_info(Config) ->
    N = ?config(node, Config),
    Info = rpc:call(N, observer_backend, sys_info, []),
    ?assert(is_list(Info)),
    [?assert(lists:keymember(K, 1, Info), K) || K <- ?SYS_KEYS],
    V = fun(K) -> proplists:get_value(K, Info) end,
    Procs = rpc:call(N, erlang, processes, []),
    %% Both calls run in a process of their own on the node (erpc's), so
    %% the counts agree.
    ?assertEqual(length(Procs), V(process_count)),
    ?assert(V(process_limit) > V(process_count)),
    ?assertEqual(rpc:call(N, erlang, system_info, [otp_release]),
                 V(otp_release)),
    ?assertEqual(rpc:call(N, erlang, system_info, [version]), V(version)),
    ?assertEqual(rpc:call(N, erlang, system_info, [system_architecture]),
                 V(system_architecture)),
    %% Same machine: the CPUs the BEAM sees.
    ?assertEqual(erlang:system_info(logical_processors),
                 V(logical_processors)),
    ?assertEqual(erlang:system_info(logical_processors_online),
                 V(logical_processors_online)),
    Scheds = rpc:call(N, erlang, system_info, [schedulers]),
    ?assert(Scheds >= 1),
    ?assertEqual(Scheds, V(schedulers)),
    ?assertEqual(Scheds, V(schedulers_online)),
    ?assertEqual(Scheds, V(schedulers_available)),
    ?assertEqual(erlang:system_info({wordsize, external}),
                 V(wordsize_external)),
    ?assertEqual(V(wordsize_external), V(wordsize_internal)),
    ?assertEqual(true, V(smp_support)),
    ?assertEqual(true, V(threads)),
    ?assert(is_integer(V(dist_buf_busy_limit)) andalso
            V(dist_buf_busy_limit) > 0),
    ?assertEqual(0, V(port_count)),
    %% alloc_info: allocator_sizes' shape, as observer's Memory
    %% Allocators tab sums it (blocks and carriers per kind of carrier),
    %% with carriers to divide by.
    [{malloc, [{instance, 0, Kinds}]}] = V(alloc_info),
    Sizes = [{B, C} || {_Kind, [{blocks, [{malloc, [{size, B, _, _}]}]},
                                {carriers_size, C, _, _}]} <- Kinds],
    ?assertEqual(length(Kinds), length(Sizes)),
    {Blocks, Carriers} = lists:foldl(fun({B, C}, {BA, CA}) ->
                                             {BA + B, CA + C}
                                     end, {0, 0}, Sizes),
    ?assert(Carriers > 0),
    ?assert(Blocks =< Carriers),
    %% Memory: the keys erlang:memory/0 gives, with its values' shape.
    Mem = rpc:call(N, erlang, memory, []),
    [?assert(lists:keymember(K, 1, Info), K) || {K, _} <- Mem],
    ?assert(V(total) > 0),
    ?assert(V(total) >= V(processes)),
    ?assert(V(processes) > 0),
    ?assert(is_integer(V(run_queue)) andalso V(run_queue) >= 0),
    ?assert(V(io_input) > 0),
    ?assert(V(io_output) > 0),
    %% What a C node has none of is absent (observer: "Not available"),
    %% never a made-up count or a zero limit it would divide by.
    [?assertNot(lists:keymember(K, 1, Info), K)
     || K <- [atom_count, atom_limit, ets_count, ets_limit, port_limit]].

sys_info_moves(Config) ->
    N = ?config(node, Config),
    I1 = rpc:call(N, observer_backend, sys_info, []),
    timer:sleep(300),
    %% Traffic in between: the io counters move.
    [N = rpc:call(N, erlang, node, []) || _ <- lists:seq(1, 10)],
    I2 = rpc:call(N, observer_backend, sys_info, []),
    V = fun(I, K) -> proplists:get_value(K, I) end,
    ?assert(V(I2, uptime) - V(I1, uptime) >= 300),
    ?assert(V(I2, uptime) - V(I1, uptime) < 30000),
    %% uptime is statistics(wall_clock)'s.
    {Wall, _} = rpc:call(N, erlang, statistics, [wall_clock]),
    ?assert(Wall >= V(I2, uptime)),
    ?assert(V(I2, io_input) > V(I1, io_input)),
    ?assert(V(I2, io_output) > V(I1, io_output)).

etop_collect(Config) ->
    N = ?config(node, Config),
    Regs = registered(N),
    [?assert(lists:keymember(Name, 1, Regs), Name)
     || Name <- [kv, echo, cnode_sup]],
    process_flag(trap_exit, true),
    with_queued_echo(
      N, 5,
      fun(Echo) ->
              %% As etop:update/1 does.
              Pid = spawn_link(N, observer_backend, etop_collect, [self()]),
              Info = receive {Pid, I = #etop_info{}} -> I
                     after 10000 -> error(no_etop_info)
                     end,
              receive {'EXIT', Pid, normal} -> ok
              after 10000 -> error(no_exit)
              end,
              #etop_info{n_procs = NProcs, procinfo = PI, runtime = RT,
                         run_queue = RQ, memi = Memi, now = Now} = Info,
              ?assertEqual(length(PI), NProcs),
              %% The collecting process leaves itself out, as the BEAM's.
              ?assertNot(lists:keymember(Pid, #etop_proc_info.pid, PI)),
              %% Every registered process is there under its name.
              [?assertMatch(#etop_proc_info{name = Name},
                            lists:keyfind(P, #etop_proc_info.pid, PI))
               || {Name, P} <- Regs],
              ByName = fun(Name) ->
                               lists:keyfind(Name, #etop_proc_info.name, PI)
                       end,
              ?assertMatch(#etop_proc_info{cf = {cnode_kv, loop, 0}},
                           ByName(kv)),
              ?assertMatch(#etop_proc_info{cf = {cnode_echo, loop, 0},
                                           mq = 5, pid = Echo},
                           ByName(echo)),
              ?assertMatch(#etop_proc_info{cf = {supervisor, loop, 0}},
                           ByName(cnode_sup)),
              [check_proc(N, P) || P <- PI],
              %% Scheduler wall time: one entry per scheduler.
              Scheds = rpc:call(N, erlang, system_info, [schedulers]),
              ?assertEqual(Scheds, length(RT)),
              [?assert(A >= 0 andalso A =< T) || {_, A, T} <- RT],
              ?assertEqual(lists:seq(1, Scheds), [Id || {Id, _, _} <- RT]),
              ?assert(is_integer(RQ) andalso RQ >= 0),
              %% A real timestamp.
              ?assert(abs(timer:now_diff(os:timestamp(), Now)) < 60000000),
              %% etop's own reading of it.
              {Cpu, NProcs, RQ, _Clock} = etop:loadinfo(Info, #etop_info{}),
              ?assert(Cpu >= 0 andalso Cpu =< 100),
              [Tot, Prc] = etop:meminfo(Memi, [total, processes]),
              ?assert(Tot >= Prc andalso Prc > 0)
      end).

procs_info(Config) ->
    N = ?config(node, Config),
    process_flag(trap_exit, true),
    with_queued_echo(
      N, 3,
      fun(Echo) ->
              %% As observer_pro_wx's table holder does: the chunks, then
              %% the normal exit that marks the update complete.
              B = spawn_link(N, observer_backend, procs_info, [self()]),
              Msgs = collect_procs_info(B),
              ?assertMatch([_ | _], Msgs),
              ?assertEqual({exit, normal}, lists:last(Msgs)),
              Chunks = [P || {procs, P} <- lists:droplast(Msgs)],
              ?assertEqual(length(Msgs) - 1, length(Chunks)),
              PI = lists:append(Chunks),
              ?assertNot(lists:keymember(B, #etop_proc_info.pid, PI)),
              [?assertMatch(#etop_proc_info{name = Name},
                            lists:keyfind(P, #etop_proc_info.pid, PI))
               || {Name, P} <- registered(N)],
              ?assertMatch(#etop_proc_info{pid = Echo, mq = 3,
                                           cf = {cnode_echo, loop, 0}},
                           lists:keyfind(echo, #etop_proc_info.name, PI)),
              [check_proc(N, P) || P <- PI],
              %% All the node's processes but the backend itself (and the
              %% erpc process of the rpc that lists them).
              All = rpc:call(N, erlang, processes, []),
              ?assertEqual(length(All) - 1, length(PI))
      end),
    %% Called through rpc it returns its last message, as the BEAM's.
    {procs_info, _, L} = rpc:call(N, observer_backend, procs_info, [self()]),
    receive {procs_info, _, L} -> ok after 5000 -> error(no_message) end.

observer_node_checks(Config) ->
    N = ?config(node, Config),
    %% What observer asks before it picks procs_info/1 for a node, and
    %% what etop checks before it starts.
    ?assertEqual({module, observer_backend},
                 rpc:call(N, code, ensure_loaded, [observer_backend])),
    ?assertEqual({error, nofile},
                 rpc:call(N, code, ensure_loaded, [no_such_module])),
    ?assertEqual(true, rpc:call(N, erlang, function_exported,
                                [observer_backend, procs_info, 1])),
    ?assertEqual(false, rpc:call(N, erlang, function_exported,
                                 [observer_backend, procs_info, 2])),
    ?assertEqual(true, rpc:call(N, erlang, function_exported,
                                [erlang, node, 0])),
    {ok, Vsn} = rpc:call(N, observer_backend, vsn, []),
    ?assertEqual(rpc:call(N, erlang, system_info, [version]), Vsn),
    %% statistics/1 items etop and observer's load charts read.
    RT = rpc:call(N, erlang, statistics, [scheduler_wall_time]),
    ?assertEqual(rpc:call(N, erlang, system_info, [schedulers]), length(RT)),
    RQ = rpc:call(N, erlang, statistics, [run_queue_lengths]),
    ?assertEqual(length(RT), length(RQ)),
    ?assertEqual(lists:sum(RQ) >= 0, true),
    %% The other tabs: no ports, sockets or tables; appmon_info (the
    %% Applications tab) lists no applications.
    [] = rpc:call(N, observer_backend, get_port_list, []),
    [] = rpc:call(N, observer_backend, get_socket_list, []),
    [] = rpc:call(N, observer_backend, get_table_list,
                  [ets, [{sys_hidden, true}, {unread_hidden, true}]]),
    {ok, Am} = appmon_info:start_link(N, self(), []),
    ?assertEqual(N, node(Am)),
    ?assertEqual({ok, Am}, appmon_info:start_link(N, self(), [])),
    ?assertEqual(Am, rpc:call(N, erlang, whereis, [appmon_info])),
    appmon_info:app_ctrl(Am, N, true, []),
    receive {delivery, Am, app_ctrl, N, Apps} -> ?assertEqual([], Apps)
    after 5000 -> error(no_app_ctrl)
    end,
    appmon_info:app(Am, kernel, true, []),
    receive {delivery, Am, app, kernel, Tree} ->
            ?assertEqual({[], [], [], []}, Tree)
    after 5000 -> error(no_app)
    end.

etop_text(Config) ->
    N = ?config(node, Config),
    Io = spawn_link(fun() -> io_capture([]) end),
    Self = self(),
    %% etop itself, with its text output, in a process of its own whose
    %% group leader keeps what it prints.
    Etop = spawn_link(
             fun() ->
                     group_leader(Io, self()),
                     R = etop:start([{node, N}, {output, text},
                                     {interval, 1}, {lines, 30},
                                     {tracing, off}, {sort, msg_q}]),
                     Self ! {etop_done, self(), R}
             end),
    Text = with_queued_echo(
             N, 7,
             fun(_Echo) ->
                     %% A refresh after the messages were queued.
                     ok = cn_node:wait_until(
                            fun() -> echo_row_shows(captured(Io), "7") end,
                            10000),
                     captured(Io)
             end),
    etop:stop(),
    receive {etop_done, Etop, ok} -> ok after 10000 -> error(etop_stuck) end,
    Io ! stop,
    ct:log("~ts", [Text]),
    %% etop's header names the node it watches.
    ?assertNotEqual(nomatch, string:find(Text, atom_to_list(N))),
    Lines = string:split(Text, "\n", all),
    Row = fun(Name) ->
                  [L || L <- Lines,
                        lists:member(atom_to_list(Name),
                                     string:lexemes(L, " "))]
          end,
    [?assertMatch([_ | _], Row(Name), Name) || Name <- [kv, echo, cnode_sup]],
    %% echo's row: its 7 queued messages and its current function.
    ?assert(echo_row_shows(Text, "7")),
    [KvRow | _] = Row(kv),
    ?assertNotEqual(nomatch, string:find(KvRow, "cnode_kv:loop/0")).

fetch_stats(Config) ->
    N = ?config(node, Config),
    process_flag(trap_exit, true),
    %% As observer_perf_wx's restart_fetcher/2 does.
    Pid = spawn_link(N, observer_backend, fetch_stats, [self(), 100]),
    T0 = erlang:monotonic_time(millisecond),
    Stats = [receive {stats, 1, _, _, _} = S -> S
             after 5000 -> error(no_stats)
             end || _ <- lists:seq(1, 4)],
    Took = erlang:monotonic_time(millisecond) - T0,
    ?assert(Took >= 300),
    Scheds = rpc:call(N, erlang, system_info, [schedulers]),
    MemKeys = [total, processes, atom, binary, code, ets],
    [begin
         ?assertEqual(Scheds, length(RT)),
         ?assertMatch({{input, I}, {output, O}}
                        when is_integer(I) andalso is_integer(O), IO),
         [?assert(lists:keymember(K, 1, Mem), K) || K <- MemKeys]
     end || {stats, 1, RT, IO, Mem} <- Stats],
    %% What observer's run queue chart computes from two samples
    %% (observer_perf_wx:calc_delta/2): a utilisation per scheduler.
    [{stats, 1, RT1, _, _}, {stats, 1, RT2, _, _} | _] = Stats,
    Util = lists:zipwith(fun({Id, A1, T1}, {Id, A2, T2}) ->
                                 ?assert(T2 > T1),
                                 ?assert(A2 >= A1),
                                 100 * (A2 - A1) div (T2 - T1)
                         end, lists:sort(RT1), lists:sort(RT2)),
    [?assert(U >= 0 andalso U =< 100) || U <- Util],
    %% observer stops it with a message; it then ends normally.
    ?assertEqual(0, rpc:call(N, erlang, system_info, [dirty_cpu_schedulers])),
    Pid ! exit,
    receive {'EXIT', Pid, normal} -> ok after 5000 -> error(no_exit) end,
    flush_stats(),
    timer:sleep(300),
    receive {stats, 1, _, _, _} = Late -> error({stats_after_exit, Late})
    after 0 -> ok
    end,
    %% A fetcher whose observer goes away ends with it: its link.
    Self = self(),
    Holder = spawn(fun() ->
                           P = spawn_link(N, observer_backend, fetch_stats,
                                          [self(), 50]),
                           Self ! {fetcher, P},
                           receive {stats, 1, _, _, _} -> ok end,
                           exit(observer_closed)
                   end),
    P2 = receive {fetcher, P} -> P after 5000 -> error(no_fetcher) end,
    MRef = erlang:monitor(process, P2),
    receive
        {'DOWN', MRef, process, P2, observer_closed} -> ok
    after 5000 -> error({fetcher_alive, Holder})
    end.

flush_stats() ->
    receive {stats, 1, _, _, _} -> flush_stats() after 0 -> ok end.

%% observer_procinfo's item_list/0 (OTP 25), what a process's window asks
%% in one process_info/2 call.
-define(PROCINFO_ITEMS,
        [binary, catchlevel, current_function, error_handler,
         garbage_collection, group_leader, heap_size, initial_call,
         last_calls, links, memory, message_queue_len, monitored_by,
         monitors, priority, reductions, registered_name,
         sequential_trace_token, stack_size, status, suspending,
         total_heap_size, trace, trap_exit]).

process_window(Config) ->
    N = ?config(node, Config),
    Kv = rpc:call(N, erlang, whereis, [kv]),
    %% The calls observer_procinfo makes for a process's window, in its
    %% order: the title, the Process Information page, Messages,
    %% Dictionary, Stack Trace, State.
    ?assertEqual({registered_name, kv},
                 rpc:call(N, erlang, process_info, [Kv, registered_name])),
    ?assertEqual(8, rpc:call(N, erlang, system_info, [wordsize])),
    Info = rpc:call(N, erlang, process_info, [Kv, ?PROCINFO_ITEMS]),
    ?assertEqual(?PROCINFO_ITEMS, [K || {K, _} <- Info]),
    V = fun(K) -> proplists:get_value(K, Info) end,
    ?assertEqual(kv, V(registered_name)),
    ?assertEqual({cnode_kv, loop, 0}, V(current_function)),
    ?assertEqual({cnode_kv, init, 1}, V(initial_call)),
    ?assert(is_pid(V(group_leader)) andalso node(V(group_leader)) =:= N),
    ?assertEqual(normal, V(priority)),
    %% kv's supervisor link, as links reads it.
    Sup = rpc:call(N, erlang, whereis, [cnode_sup]),
    ?assert(lists:member(Sup, V(links))),
    ?assert(is_list(V(monitors))),
    %% What the window computes from them (observer_procinfo).
    _ = [Id || {_Type, Id} <- V(monitors)],
    ?assertEqual(undefined, proplists:get_value(min_heap_size,
                                                V(garbage_collection))),
    {messages, Ms} = rpc:call(N, erlang, process_info, [Kv, messages]),
    ?assert(is_list(Ms)),
    {dictionary, D} = rpc:call(N, erlang, process_info, [Kv, dictionary]),
    ?assert(is_list(D)),
    {current_stacktrace, [{cnode_kv, loop, 0, _}]} =
        rpc:call(N, erlang, process_info, [Kv, current_stacktrace]),
    %% The State page: observer_procinfo:fetch_state_info/1's steps.
    {cnode_kv, init, 1} = M3 =
        rpc:call(N, proc_lib, translate_initial_call, [Kv]),
    Attrs = rpc:call(N, element(1, M3), module_info, [attributes]),
    ?assertEqual({behaviour, [gen_server]},
                 lists:keyfind(behaviour, 1, Attrs)),
    Status = rpc:call(N, sys, get_status, [Kv, 200]),
    ?assertMatch({status, Kv, {module, _},
                  [_PDict, running, Sup, _Dbg,
                   [_Header, {data, _First}, {data, _Second} | _]]},
                 Status),
    %% The same status the BEAM's own sys:get_status reads from here.
    ?assertEqual(sys:get_status(Kv), Status),
    ?assertEqual(Status, rpc:call(N, sys, get_status, [kv])),
    %% A process that is gone: as proc_lib and gen:call answer.
    Gone = spawn(N, cnode_echo, echo, [x]),
    ok = cn_node:wait_until(
           fun() ->
                   undefined =:= rpc:call(N, erlang, process_info,
                                          [Gone, status])
           end, 5000),
    ?assertEqual({proc_lib, init_p, 5},
                 rpc:call(N, proc_lib, translate_initial_call, [Gone])),
    ?assertEqual({badrpc, {'EXIT', {noproc, {sys, get_status, [Gone, 200]}}}},
                 rpc:call(N, sys, get_status, [Gone, 200])).

%% ---- observer itself --------------------------------------------------------

%% A logger handler that hands warnings and errors (crash reports of
%% observer's processes, try_rpc's badrpc reports) to the test.
log(#{level := L, msg := M}, #{config := Pid})
  when L =:= warning; L =:= error; L =:= critical; L =:= alert;
       L =:= emergency ->
    Pid ! {logged, L, M},
    ok;
log(_, _) ->
    ok.

%% Xvfb on a display of its own: {Port, Display}.
start_xvfb() ->
    Exe = case os:find_executable("Xvfb") of
              false -> error({missing, "Xvfb (Debian package xvfb)"});
              E -> E
          end,
    Port = open_port({spawn_executable, Exe},
                     [{args, ["-displayfd", "1", "-screen", "0",
                              "1280x1024x24", "-nolisten", "tcp"]},
                      {line, 64}, exit_status, stderr_to_stdout]),
    {Port, wait_display(Port)}.

wait_display(Port) ->
    receive
        {Port, {data, {eol, Line}}} ->
            case string:to_integer(Line) of
                {D, ""} -> ":" ++ integer_to_list(D);
                _ -> wait_display(Port)
            end;
        {Port, {exit_status, S}} ->
            error({xvfb_exited, S})
    after 20000 ->
            error(xvfb_no_display)
    end.

stop_xvfb(Port) ->
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    os:cmd("kill " ++ integer_to_list(OsPid)),
    receive {Port, {exit_status, _}} -> ok after 5000 -> ok end.

%% observer's wx_object state (OTP 25: sys:get_state gives [Parent,
%% State, Mod, Timeout]).
wx_state(Pid) ->
    [_, State | _] = sys:get_state(Pid),
    State.

%% What the active node of observer is.
active_node(Obs) ->
    wx_object:call(Obs, get_active_node).

%% observer runs on a peer node of its own, started with DISPLAY in its
%% environment (wx reads the C environment, which os:putenv/2 does not
%% change), and drives the C node from there.
observer_gui(Config) ->
    N = ?config(node, Config),
    CN = ?config(cn, Config),
    {Xvfb, Display} = start_xvfb(),
    try
        {ok, Peer, PeerNode} =
            peer:start(#{name => "obsgui" ++ cn_node:uniq(),
                         env => [{"DISPLAY", Display}],
                         args => ["-pa", filename:dirname(code:which(?MODULE)),
                                  "-pa", filename:dirname(code:which(cn_node))]}),
        try
            true = erpc:call(PeerNode, erlang, set_cookie,
                             [N, cn_node:cookie(CN)]),
            {ok, Rows} = erpc:call(PeerNode, ?MODULE, observer_gui,
                                   [N, self()], 120000),
            ct:log("observer's Processes tab (name, current function): "
                   "~p", [Rows])
        after
            peer:stop(Peer)
        end
    after
        stop_xvfb(Xvfb)
    end.

%% On the peer: observer pointed at N, as a user clicks through it.
observer_gui(N, _Tester) ->
    ok = logger:add_handler(cnode_observer_log, ?MODULE,
                            #{config => self(), level => warning}),
    pong = net_adm:ping(N),
    ok = observer:start(),
    Obs = whereis(observer),
    %% Its Nodes menu: pick the C node as a user does (a menu event).
    ok = cn_node:wait_until(
           fun() ->
                   lists:any(fun(L) -> is_list(L) andalso lists:member(N, L)
                             end, tuple_to_list(wx_state(Obs)))
           end, 10000),
    [Nodes | _] = [L || L <- tuple_to_list(wx_state(Obs)), is_list(L),
                        lists:member(N, L), lists:all(fun is_atom/1, L)],
    Idx = length(lists:takewhile(fun(X) -> X =/= N end, Nodes)) + 1,
    Obs ! {wx, 1000 + Idx, undefined, [],
           {wxCommand, command_menu_selected, [], 0, 0}},
    ok = cn_node:wait_until(fun() -> active_node(Obs) =:= N end, 10000),
    %% Each tab, as clicked: System, Load Charts, Memory Allocators,
    %% Applications, Processes, Ports, Sockets, Table Viewer, Trace
    %% Overview, then System again.  A failed rpc would send observer
    %% back to the local node and log; a crash would end it.
    [begin
         Obs ! {wx, 3, undefined, [],
                {wxBookCtrl, command_notebook_page_changed, Page, 0}},
         timer:sleep(2000),
         ?assertEqual(N, active_node(Obs), {page, Page})
     end || Page <- [0, 1, 2, 3, 4, 5, 6, 7, 8, 4]],
    %% The Processes tab's rows: the C processes, by name, with their
    %% current functions (read as its grid reads them).
    [{pro_panel, {wx_ref, _, _, Pro}, _}] =
        [T || L <- tuple_to_list(wx_state(Obs)), is_list(L), T <- L,
              is_tuple(T), tuple_size(T) =:= 3, element(1, T) =:= pro_panel],
    PState = wx_state(Pro),
    Holder = element(tuple_size(PState), PState),
    Cell = fun(Row, Col) ->
                   Holder ! {get_row, self(), Row, Col},
                   receive {Holder, D} -> D after 5000 -> error(no_row) end
           end,
    NProcs = length(rpc:call(N, erlang, processes, [])),
    Rows = [{Cell(R, 1), Cell(R, 5)} || R <- lists:seq(0, NProcs + 2)],
    [?assert(lists:member(Row, Rows), Row)
     || Row <- [{"kv", "cnode_kv:loop/0"}, {"echo", "cnode_echo:loop/0"},
                {"cnode_sup", "supervisor:loop/0"}]],
    %% A process's window, as a double-click opens it.
    Kv = rpc:call(N, erlang, whereis, [kv]),
    Pro ! {procinfo_open, Kv},
    timer:sleep(3000),
    ?assertEqual(N, active_node(Obs)),
    [Win] = [W || L <- tuple_to_list(wx_state(Pro)), is_list(L), {P, W} <- L,
                  P =:= Kv],
    {wx_ref, _, wxFrame, WinPid} = Win,
    ?assert(is_process_alive(WinPid)),
    %% Nothing went wrong on the way.
    Logged = flush_logged(),
    ?assertEqual([], Logged),
    ok = observer:stop(),
    {ok, Rows}.

flush_logged() ->
    receive {logged, L, M} -> [{L, M} | flush_logged()] after 0 -> [] end.

%% Over 10,000 processes: procs_info/1 sends a chunk per 10,000 and one
%% for the rest, as observer_backend does, on a node of this case's own.
procs_info_chunks(_Config) ->
    %% 10,050 starts and their shutdown take a while under a sanitizer.
    ct:timetrap({minutes, 10}),
    CN = cn_node:start(#{owner => self(), stop_timeout => 300000}),
    N = cn_node:node_name(CN),
    Sup = {cnode_sup, N},
    K = 10050,
    [{ok, _} = supervisor:start_child(
                 Sup, #{id => {observer_suite, I},
                        start => {cnode_echo, start_link, [[]]}})
     || I <- lists:seq(1, K)],
    Children = [P || {{observer_suite, _}, P, worker, _}
                         <- supervisor:which_children(Sup)],
    ?assertEqual(K, length(Children)),
    process_flag(trap_exit, true),
    B = spawn_link(N, observer_backend, procs_info, [self()]),
    Msgs = collect_procs_info(B),
    ?assertEqual({exit, normal}, lists:last(Msgs)),
    Chunks = [P || {procs, P} <- lists:droplast(Msgs)],
    %% All but the backend: the node's own, kv, echo and the children.
    Total = lists:sum([length(C) || C <- Chunks]),
    ct:log("chunks ~p total ~p", [[length(C) || C <- Chunks], Total]),
    ?assert(Total >= K + 2),
    ?assertEqual(Total div 10000 + 1, length(Chunks)),
    [First | _] = Chunks,
    %% The first chunk is 10,000 pids, less the backend if among them.
    ?assert(length(First) =:= 10000 orelse length(First) =:= 9999),
    Pids = [P || C <- Chunks, #etop_proc_info{pid = P} <- C],
    ?assertEqual(Total, length(lists:usort(Pids))),
    ?assertEqual([], Children -- Pids),
    ?assertNot(lists:member(B, Pids)),
    %% etop's single message carries them all.
    E = spawn_link(N, observer_backend, etop_collect, [self()]),
    #etop_info{n_procs = NP, procinfo = PI} =
        receive {E, I = #etop_info{}} -> I after 20000 -> error(no_info) end,
    ?assertEqual(length(PI), NP),
    ?assertEqual([], Children -- [P || #etop_proc_info{pid = P} <- PI]),
    {ok, 0} = cn_node:stop(CN).
