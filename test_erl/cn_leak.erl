%% cn_leak: the leak checks (make leakcheck; a shorter run in make test).
%%
%% Two checks against the real node program, each on a node of its own
%% (cn_node: unique name and cookie), driven from this BEAM node:
%%
%% rss       LEAK_RSS_CYCLES (default 3000) cycles of: connect
%%           (net_kernel:connect_node), monitors on kv (by name) and echo
%%           (by pid) left active, echo {echo, T} with a 1 KiB binary in T,
%%           kv put, get and delete, echo pid, a {sleep, 1} call, then
%%           erlang:disconnect_node.  The node's VmRSS (/proc/PID/status) is
%%           read after every cycle; from the end of the warm-up
%%           (LEAK_WARMUP, default 300 cycles) to the end it must grow by
%%           less than LEAK_MAX_GROWTH_KIB (default 64).
%% valgrind  The node program runs under valgrind --leak-check=full;
%%           LEAK_VALGRIND_CYCLES (default 300) of the same cycles; then
%%           SIGTERM (the node must exit 0) and valgrind's summary must say
%%           0 bytes definitely lost and 0 bytes indirectly lost.
%%
%% LEAK_CHECKS picks the checks (default "rss,valgrind").  Run by
%% mk/leak.mk as
%%
%%   erl -noshell -pa EBIN -eval 'cn_leak:main()'
%%
%% with CN_BUILD set.  Prints "leak: ..." lines (key=value), appends
%% "PASSED FAILED" to $CN_TEST_SUMMARY when that is set, and exits 0 when
%% every check passed.  valgrind's log is kept in $CN_BUILD/leak/.
-module(cn_leak).

-export([main/0]).

-define(CALL_TIMEOUT, 30000).

main() ->
    Checks = string:lexemes(env("LEAK_CHECKS", "rss,valgrind"), ","),
    Results = [{C, run_check(C)} || C <- Checks],
    Passed = length([ok || {_, ok} <- Results]),
    Failed = length(Results) - Passed,
    case os:getenv("CN_TEST_SUMMARY") of
        F when F =:= false; F =:= "" -> ok;
        F -> ok = file:write_file(F, io_lib:format("~p ~p~n", [Passed, Failed]),
                                  [append])
    end,
    io:format("leak: ~p passed, ~p failed~n", [Passed, Failed]),
    erlang:halt(case Failed of 0 -> 0; _ -> 1 end).

env(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> V
    end.

env_int(Name, Default) ->
    list_to_integer(env(Name, integer_to_list(Default))).

run_check(Check) ->
    try check(Check) of
        ok ->
            io:format("leak: ~s PASSED~n", [Check]),
            ok;
        {failed, Why} ->
            io:format("leak: ~s FAILED ~p~n", [Check, Why]),
            failed
    catch
        C:R:St ->
            io:format("leak: ~s FAILED crash ~p:~p~n~p~n", [Check, C, R, St]),
            failed
    end.

%% ---- rss -----------------------------------------------------------------------

check("rss") ->
    Cycles = env_int("LEAK_RSS_CYCLES", 3000),
    Warmup = env_int("LEAK_WARMUP", 300),
    MaxGrowth = env_int("LEAK_MAX_GROWTH_KIB", 64),
    true = Warmup < Cycles,
    CN = cn_node:start(#{owner => self()}),
    try
        N = cn_node:node_name(CN),
        OsPid = cn_node:os_pid(CN),
        Start = rss_kib(OsPid),
        T0 = erlang:monotonic_time(millisecond),
        Series = [begin
                      ok = cycle(N, I),
                      {I, rss_kib(OsPid)}
                  end || I <- lists:seq(1, Cycles)],
        Secs = (erlang:monotonic_time(millisecond) - T0) / 1000,
        {_, AtWarmup} = lists:keyfind(Warmup, 1, Series),
        {_, Final} = lists:last(Series),
        After = [R || {I, R} <- Series, I >= Warmup],
        Growth = Final - AtWarmup,
        Every = max(1, Cycles div 10),
        Sampled = [R || {I, R} <- Series, I rem Every =:= 0],
        io:format("leak: rss cycles=~p seconds=~.1f cycles_per_s=~.1f "
                  "warmup=~p rss_kib_start=~p rss_kib_at_warmup=~p "
                  "rss_kib_final=~p growth_kib=~p max_growth_kib=~p~n",
                  [Cycles, Secs, Cycles / Secs, Warmup, Start, AtWarmup,
                   Final, Growth, MaxGrowth]),
        io:format("leak: rss after_warmup min_kib=~p max_kib=~p "
                  "every_~p_cycles_kib=~w~n",
                  [lists:min(After), lists:max(After), Every, Sampled]),
        Stop = cn_node:stop(CN),
        if
            Growth >= MaxGrowth -> {failed, {rss_growth_kib, Growth}};
            Stop =/= {ok, 0} -> {failed, {node_stop, Stop}};
            true -> ok
        end
    after
        _ = cn_node:kill(CN)
    end;

%% ---- valgrind ------------------------------------------------------------------

check("valgrind") ->
    Cycles = env_int("LEAK_VALGRIND_CYCLES", 300),
    Dir = filename:join(filename:dirname(cn_node:exe()), "leak"),
    Name = "cnleak" ++ cn_node:uniq(),
    VgLog = filename:join(Dir, "valgrind-" ++ Name ++ ".log"),
    ok = filelib:ensure_dir(VgLog),
    Wrapper = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--num-callers=40", "--log-file=" ++ VgLog],
    CN = cn_node:start(#{owner => self(), name => Name, wrapper => Wrapper,
                         ready_timeout => 180000, stop_timeout => 180000}),
    try
        N = cn_node:node_name(CN),
        T0 = erlang:monotonic_time(millisecond),
        [ok = cycle(N, I) || I <- lists:seq(1, Cycles)],
        Secs = (erlang:monotonic_time(millisecond) - T0) / 1000,
        Stop = cn_node:stop(CN),
        {ok, Log} = file:read_file(VgLog),
        Def = lost_bytes(Log, "definitely lost"),
        Ind = lost_bytes(Log, "indirectly lost"),
        Pos = lost_bytes(Log, "possibly lost"),
        Reach = lost_bytes(Log, "still reachable"),
        Errors = error_count(Log),
        io:format("leak: valgrind cycles=~p seconds=~.1f definitely_lost_bytes=~p "
                  "indirectly_lost_bytes=~p possibly_lost_bytes=~p "
                  "still_reachable_bytes=~p error_summary=~p node_stop=~w~n",
                  [Cycles, Secs, Def, Ind, Pos, Reach, Errors, Stop]),
        io:format("leak: valgrind log ~s~n", [VgLog]),
        if
            Def =/= 0; Ind =/= 0 ->
                io:format("~s~n", [Log]),
                {failed, {lost, Def, Ind}};
            Stop =/= {ok, 0} -> {failed, {node_stop, Stop}};
            true -> ok
        end
    after
        _ = cn_node:kill(CN)
    end.

%% "==PID==    definitely lost: 1,234 bytes in 5 blocks" -> 1234.  Without
%% the line (valgrind prints "All heap blocks were freed -- no leaks are
%% possible" instead of a leak summary), 0.  Without either, unknown.
lost_bytes(Log, What) ->
    case re:run(Log, What ++ ": ([0-9,]+) bytes", [{capture, all_but_first, list}]) of
        {match, [B]} -> number(B);
        nomatch ->
            case binary:match(Log, <<"All heap blocks were freed">>) of
                nomatch -> unknown;
                _ -> 0
            end
    end.

error_count(Log) ->
    case re:run(Log, "ERROR SUMMARY: ([0-9,]+) errors", [{capture, all_but_first, list}]) of
        {match, [E]} -> number(E);
        nomatch -> unknown
    end.

%% "1,234" -> 1234.
number(S) ->
    list_to_integer([C || C <- S, C =/= $,]).

%% ---- one cycle -----------------------------------------------------------------

%% Connect, a few calls to kv and echo (with two monitors left active),
%% disconnect.  The calls come back right or the cycle crashes the check.
cycle(N, I) ->
    true = net_kernel:connect_node(N),
    _ = erlang:monitor(process, {kv, N}),
    Echo = gen_server:call({echo, N}, pid, ?CALL_TIMEOUT),
    _ = erlang:monitor(process, Echo),
    T = {cycle, I, self(), make_ref(), binary:copy(<<I:64>>, 128)},
    T = gen_server:call({echo, N}, {echo, T}, ?CALL_TIMEOUT),
    K = {leak, I rem 7},
    ok = gen_server:call({kv, N}, {put, K, T}, ?CALL_TIMEOUT),
    {ok, T} = gen_server:call({kv, N}, {get, K}, ?CALL_TIMEOUT),
    ok = gen_server:call({kv, N}, {delete, K}, ?CALL_TIMEOUT),
    ok = gen_server:call({echo, N}, {sleep, 1}, ?CALL_TIMEOUT),
    true = erlang:disconnect_node(N),
    %% The monitors fire with noconnection; take them out of the mailbox.
    flush_downs(2).

flush_downs(0) -> ok;
flush_downs(K) ->
    receive {'DOWN', _, process, _, noconnection} -> flush_downs(K - 1)
    after ?CALL_TIMEOUT -> error(no_down)
    end.

rss_kib(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ OsPid ++ "/status"),
    {match, [K]} = re:run(B, "VmRSS:\\s+([0-9]+) kB", [{capture, all_but_first, list}]),
    list_to_integer(K).
