%% remote_bench: the remote figures of `make bench` (bench/run.sh runs it).
%%
%% This node (an `erl -sname` node, the BEAM doing the calling) is the
%% client.  It starts two servers with the same `echo` contract,
%% gen_server:call({echo, Node}, {echo, X}) -> X, casts ignored:
%%
%%   cnode  the node program (BENCH_CNODE, build/release/cnode), its
%%          built-in echo server (cnode/echo.c);
%%   beam   a BEAM peer node (peer:start, -hidden, as the node program is
%%          hidden) running the gen_server echo below, registered as echo.
%%
%% and measures each figure against both, BENCH_ROUNDS rounds, in turn
%% (cnode first in odd rounds, the peer in even ones), then prints the
%% medians and their ratio in the format of bench/run.sh:
%%
%%   <figure>: cnode=<x> beam=<y> ratio=<r>
%%
%% r > 1 means cnode is better (cnode/beam for rates, beam/cnode for times
%% and costs).  Every other line starts with '#'.  See bench/README.md for
%% each figure.  Halts with status 1 if any run failed (its figure shows
%% FAIL).
%%
%% Environment: BENCH_CNODE, BENCH_CNODE_ARGS (more flags for it, split
%% on spaces), BENCH_CCLIENT (build/release/bench/
%% bench_cclient), BENCH_TMP (a scratch directory for logs), BENCH_ROUNDS
%% (5), BENCH_FIGURES (runs to do; default all), BENCH_PLACEMENT (free:
%% nothing pinned; pinned: the servers on CPU 1, this node being started
%% on CPU 0 by run.sh, so that its children, the C client and the fan-in
%% nodes, run there too), BENCH_SCALE (multiplies every N; 0.1 for a smoke
%% run), BENCH_HOL_MB (100), BENCH_FANIN_NODES (30), BENCH_VERBOSE.
-module(remote_bench).
-behaviour(gen_server).

-export([main/0]).
-export([start_echo/0, fanin_warm/1, fanin_run/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(CALL_TIMEOUT, 60000).
-define(WARMUP, 200).

%% ---- The BEAM peer's echo ---------------------------------------------

init([]) -> {ok, nostate}.

handle_call({echo, X}, _From, S) -> {reply, X, S}.

handle_cast(_Msg, S) -> {noreply, S}.

handle_info(_Msg, S) -> {noreply, S}.

%% Run on the peer by erpc: echo must outlive erpc's process.
start_echo() ->
    {ok, _} = gen_server:start({local, echo}, ?MODULE, [], []),
    ok.

%% ---- Runs and the figures they give -----------------------------------

%% {Run, [{Figure, Kind, Decimals, Unit}]}: one run of a side measures every
%% figure of its list at once.  Kind: higher (ratio cnode/beam) or lower
%% (beam/cnode).
runs() ->
    [{call_seq,
      [{call_seq, higher, 0, "calls/s, 1 caller, {echo, I}"},
       {server_cpu_per_call_1, lower, 1,
        "us of server CPU (utime+stime) per call, 1 caller"}]},
     {call_16,
      [{call_16, higher, 0, "calls/s, 16 callers"},
       {server_cpu_per_call_16, lower, 1,
        "us of server CPU per call, 16 callers"},
       {client_cpu_per_call_16, lower, 1,
        "us of the client BEAM's CPU per call, 16 callers"},
       {ctx_switches_per_call_16, lower, 3,
        "server context switches (all threads) per call, 16 callers"}]},
     {call_64,
      [{call_64, higher, 0, "calls/s, 64 callers"},
       {server_cpu_per_call_64, lower, 1,
        "us of server CPU per call, 64 callers"}]},
     {call_64k_payload,
      [{call_64k_payload, higher, 0,
        "calls/s, 1 caller, echo of a 64 KiB binary"}]},
     {call_1m_payload,
      [{call_1m_payload, higher, 1,
        "calls/s, 1 caller, echo of a 1 MiB binary"}]},
     {cast,
      [{cast, higher, 0, "casts/s, 100k casts then one call"}]},
     {syscalls_per_call_16,
      [{syscalls_per_call_16, lower, 2,
        "server syscalls (all threads) per call, 16 callers"}]},
     {hol_p99,
      [{hol_p99, lower, 0,
        "us, p99 of small calls while another process echoes "
        "big binaries on the same connection"}]},
     {c_client_call,
      [{c_client_call, higher, 0,
        "calls/s to a BEAM echo, 16 C threads via libcnode "
        "vs 16 BEAM processes"}]},
     {fanin_30,
      [{fanin_30, higher, 0,
        "calls/s, hidden BEAM client nodes x 8 callers each"}]}].

main() ->
    Status = try run_all() of
                 S -> S
             catch C:R:St ->
                     io:format("# remote_bench failed: ~p:~p~n#   ~p~n",
                               [C, R, St]),
                     1
             end,
    cleanup(),
    halt(Status).

run_all() ->
    Placement = env("BENCH_PLACEMENT", "free"),
    Rounds = list_to_integer(env("BENCH_ROUNDS", "5")),
    All = [R || {R, _} <- runs()],
    Want = case os:getenv("BENCH_FIGURES") of
               false -> All;
               F -> [list_to_atom(W) || W <- string:lexemes(F, " ")]
           end,
    Todo = [R || R <- runs(), lists:member(element(1, R), Want)],
    Suffix = case Placement of "free" -> ""; P -> "@" ++ P end,
    put(placement, Placement),
    CN = start_cnode(),
    BN = start_beam_peer(),
    io:format("# remote (~s): client ~s (OTP ~s); cnode ~s (os pid ~s); "
              "beam peer ~s (os pid ~s)~n",
              [Placement, node(), erlang:system_info(otp_release),
               maps:get(node, CN), maps:get(os_pid, CN),
               maps:get(node, BN), maps:get(os_pid, BN)]),
    Sides = [{cnode, CN}, {beam, BN}],
    Results = [run_figure(Run, Sides, Rounds, Suffix) || Run <- Todo],
    case lists:all(fun(ok) -> true; (_) -> false end, Results) of
        true -> 0;
        false -> 1
    end.

%% Runs one run Rounds times for each side, interleaved, and prints its
%% figures.  Returns ok or failed.
run_figure({Run, Figs}, Sides, Rounds, Suffix) ->
    Rs = [[{Side, measure(Run, Side, T, Sides)}
           || {Side, T} <- round_order(I, Sides)]
          || I <- lists:seq(1, Rounds)],
    Failed = lists:member(failed, [V || Round <- Rs, {_, V} <- Round]),
    lists:foreach(fun({Fig, Kind, Fmt, Unit}) ->
                          print_figure(Fig, Kind, Fmt, Unit, Rs, Suffix)
                  end, Figs),
    case Failed of true -> failed; false -> ok end.

%% The side that goes first in round I: cnode in odd rounds, the BEAM
%% peer in even ones, so that neither always runs right after the other
%% on the client's connections and schedulers.
round_order(I, Sides) when I rem 2 =:= 1 -> Sides;
round_order(_, Sides) -> lists:reverse(Sides).

print_figure(Fig, Kind, Fmt, Unit, Rs, Suffix) ->
    Vals = fun(Side) ->
                   [maps:get(Fig, M, failed) || Round <- Rs,
                                                {S, M0} <- Round, S =:= Side,
                                                M <- [as_map(M0)]]
           end,
    CV = Vals(cnode),
    BV = Vals(beam),
    Show = fun(Vs) -> string:join([fmt(Fmt, V) || V <- Vs], " ") end,
    %% Each round measures one side right after the other, so a round's
    %% own ratio does not see the VM's speed drift between rounds; shown
    %% beside the headline ratio (of the two medians) for that reason.
    Paired = [ratio(Kind, C, B) || {C, B} <- lists:zip(CV, BV)],
    PairedM = case lists:all(fun is_float/1, Paired) of
                  true -> median(Paired);
                  false -> failed
              end,
    io:format("# ~s~s: ~s; median of ~b round(s) (cnode: ~s | beam: ~s); "
              "rounds' ratios ~s, median ~s~n",
              [Fig, Suffix, Unit, length(Rs), Show(CV), Show(BV),
               string:join([show_ratio(R) || R <- Paired], " "),
               show_ratio(PairedM)]),
    CM = median(CV),
    BM = median(BV),
    io:format("~s~s: cnode=~s beam=~s ratio=~s~n",
              [Fig, Suffix, fmt(Fmt, CM), fmt(Fmt, BM),
               show_ratio(ratio(Kind, CM, BM))]).

%% r > 1 when cnode is better: cnode/beam for rates, beam/cnode for costs.
ratio(_, failed, _) -> failed;
ratio(_, _, failed) -> failed;
ratio(Kind, C, B) ->
    {Num, Den} = case Kind of
                     higher -> {C, B};
                     lower -> {B, C}
                 end,
    if Den == 0 -> inf;
       true -> Num / Den
    end.

show_ratio(inf) -> "inf";
show_ratio(R) -> fmt(2, R).

as_map(M) when is_map(M) -> M;
as_map(failed) -> #{}.

fmt(_, failed) -> "FAIL";
fmt(Decimals, V) -> float_to_list(float(V), [{decimals, Decimals}]).

median(Vs) ->
    case lists:member(failed, Vs) orelse Vs =:= [] of
        true -> failed;
        false ->
            S = lists:sort(Vs),
            N = length(S),
            case N rem 2 of
                1 -> lists:nth((N + 1) div 2, S);
                0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2
            end
    end.

%% One run of one side: a map of its figures, or failed (with '#' lines
%% saying why).
measure(Run, Side, Target, Sides) ->
    try
        M = run(Run, Side, Target, Sides),
        verbose("~s ~s: ~p", [Run, Side, M]),
        M
    catch C:R:St ->
            io:format("# ~s: ~s run failed: ~p:~p~n#   ~p~n",
                      [Run, Side, C, R, St]),
            failed
    end.

%% ---- The runs ----------------------------------------------------------

run(call_seq, _, T, _) ->
    M = calls(T, 1, n(10000), small),
    #{call_seq => maps:get(rate, M),
      server_cpu_per_call_1 => maps:get(server_us, M)};
run(call_16, _, T, _) ->
    M = calls(T, 16, n(60000), small),
    #{call_16 => maps:get(rate, M),
      server_cpu_per_call_16 => maps:get(server_us, M),
      client_cpu_per_call_16 => maps:get(client_us, M),
      ctx_switches_per_call_16 => maps:get(ctx, M)};
run(call_64, _, T, _) ->
    M = calls(T, 64, n(60000), small),
    #{call_64 => maps:get(rate, M),
      server_cpu_per_call_64 => maps:get(server_us, M)};
run(call_64k_payload, _, T, _) ->
    M = calls(T, 1, n(2000), binary:copy(<<7>>, 65536)),
    #{call_64k_payload => maps:get(rate, M)};
run(call_1m_payload, _, T, _) ->
    M = calls(T, 1, n(100), binary:copy(<<7>>, 1048576)),
    #{call_1m_payload => maps:get(rate, M)};
run(cast, _, T, _) ->
    #{cast => casts(T, 100000)};
run(syscalls_per_call_16, _, T, _) ->
    #{syscalls_per_call_16 => syscalls(T, 16, n(60000))};
run(hol_p99, _, T, _) ->
    #{hol_p99 => hol(T, round(3000 * scale()))};
run(c_client_call, cnode, _, Sides) ->
    %% Our node as the client: C threads calling the BEAM peer's echo.
    {beam, B} = lists:keyfind(beam, 1, Sides),
    #{c_client_call => c_client(B, 16, n(40000))};
run(c_client_call, beam, T, _) ->
    %% This BEAM node as the client, the same calls to the same echo.
    #{c_client_call => maps:get(rate, calls(T, 16, n(40000), small))};
run(fanin_30, _, T, _) ->
    #{fanin_30 => fanin(T, 8, n(250))}.

n(N) -> max(1, round(N * scale())).

scale() -> list_to_float(float_env("BENCH_SCALE", "1.0")).

float_env(Name, Default) ->
    V = env(Name, Default),
    case string:find(V, ".") of
        nomatch -> V ++ ".0";
        _ -> V
    end.

%% ---- Calls -------------------------------------------------------------

%% Callers processes make N calls in all, {echo, I} (Payload small) or
%% {echo, Payload}, each checking its reply.  Returns rate (calls/s) and
%% the server's and this node's CPU per call (us) and the server's context
%% switches per call over the calls.  With several callers, they first
%% make half as many calls again, together, unmeasured, and then the
%% measured ones start together: the figure is the steady state, not the
%% ramp (for both servers; the node's coalescing, README "Coalescing",
%% takes a few hundred ms to settle).
calls(T = #{node := Node}, Callers, N, Payload) ->
    Dest = {echo, Node},
    warm(Dest, Payload),
    Per = max(1, N div Callers),
    Warm = case Callers of 1 -> 0; _ -> Per div 2 end,
    Total = Per * Callers,
    Self = self(),
    Pids = [spawn_link(fun() ->
                               receive go -> ok end,
                               call_loop(Dest, Warm, Payload),
                               Self ! {warm, self()},
                               receive go -> ok end,
                               call_loop(Dest, Per, Payload),
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, Callers)],
    [P ! go || P <- Pids],
    [receive {warm, P} -> ok after 600000 -> error(callers_timeout) end
     || P <- Pids],
    S0 = server_usage(T),
    C0 = cpu_ticks(os:getpid()),
    T0 = erlang:monotonic_time(),
    [P ! go || P <- Pids],
    [receive {done, P} -> ok after 600000 -> error(callers_timeout) end
     || P <- Pids],
    T1 = erlang:monotonic_time(),
    C1 = cpu_ticks(os:getpid()),
    S1 = server_usage(T),
    Secs = secs(T1 - T0),
    {SCpu0, SCtx0} = S0,
    {SCpu1, SCtx1} = S1,
    #{rate => Total / Secs,
      made => Total + Warm * Callers, % with the unmeasured ones
      server_us => ticks_us(SCpu1 - SCpu0) / Total,
      client_us => ticks_us(C1 - C0) / Total,
      ctx => (SCtx1 - SCtx0) / Total}.

warm(Dest, Payload) ->
    call_loop(Dest, case Payload of small -> ?WARMUP; _ -> 3 end, Payload).

call_loop(_, 0, _) -> ok;
call_loop(Dest, I, small) ->
    I = gen_server:call(Dest, {echo, I}, ?CALL_TIMEOUT),
    call_loop(Dest, I - 1, small);
call_loop(Dest, I, Bin) ->
    Bin = gen_server:call(Dest, {echo, Bin}, ?CALL_TIMEOUT),
    call_loop(Dest, I - 1, Bin).

secs(Native) -> erlang:convert_time_unit(Native, native, microsecond) / 1.0e6.

casts(#{node := Node}, N) ->
    Dest = {echo, Node},
    warm(Dest, small),
    T0 = erlang:monotonic_time(),
    cast_loop(Dest, N),
    done = gen_server:call(Dest, {echo, done}, 600000),
    T1 = erlang:monotonic_time(),
    N / secs(T1 - T0).

cast_loop(_, 0) -> ok;
cast_loop(Dest, I) ->
    gen_server:cast(Dest, {echo, I}),
    cast_loop(Dest, I - 1).

%% ---- Server and client costs from /proc --------------------------------

%% {utime+stime in ticks, voluntary+nonvoluntary context switches summed
%% over the threads} of the server's OS process.
server_usage(#{os_pid := Pid}) ->
    {cpu_ticks(Pid), ctx_switches(Pid)}.

cpu_ticks(Pid) ->
    {ok, B} = file:read_file("/proc/" ++ Pid ++ "/stat"),
    %% The fields after the command name, which is in parentheses and may
    %% hold spaces: the 12th and 13th are utime and stime.
    [_, Rest] = string:split(B, ")", trailing),
    F = string:lexemes(Rest, " "),
    binary_to_integer(lists:nth(12, F)) + binary_to_integer(lists:nth(13, F)).

ticks_us(Ticks) -> Ticks * 1.0e6 / clk_tck().

clk_tck() ->
    case get(clk_tck) of
        undefined ->
            V = list_to_integer(string:trim(os:cmd("getconf CLK_TCK"))),
            put(clk_tck, V),
            V;
        V -> V
    end.

ctx_switches(Pid) ->
    Dir = "/proc/" ++ Pid ++ "/task",
    {ok, Tids} = file:list_dir(Dir),
    lists:sum([task_ctx(filename:join([Dir, Tid, "status"])) || Tid <- Tids]).

task_ctx(File) ->
    case file:read_file(File) of
        {ok, B} ->
            lists:sum([binary_to_integer(string:trim(V))
                       || L <- string:split(B, "\n", all),
                          [K, V] <- [string:split(L, ":")],
                          K =:= <<"voluntary_ctxt_switches">> orelse
                              K =:= <<"nonvoluntary_ctxt_switches">>]);
        {error, _} ->
            0 % the thread exited meanwhile
    end.

%% ---- Syscalls: perf stat, else strace, on the server over the calls ----

%% The server's syscalls per call over Callers callers making N calls.
%% perf stat counts the raw_syscalls:sys_enter tracepoint in the kernel,
%% which barely slows the server; without perf (or where the tracepoint is
%% not allowed) strace -c -f counts them, slowing the server several times
%% over, which batches more calls per read and so lowers the count.  The
%% first run says which one was used.
syscalls(T = #{os_pid := Pid, node := Node}, Callers, N) ->
    warm({echo, Node}, small),
    Out = filename:join(tmp(), "syscalls." ++ Pid),
    _ = file:delete(Out),
    {Tool, Exe, Args} =
        case syscall_tool() of
            perf ->
                {perf, os:find_executable("perf"),
                 ["stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
                  "-o", Out, "-p", Pid]};
            strace ->
                {strace, os:find_executable("strace"),
                 ["-c", "-f", "-q", "-o", Out, "-p", Pid]}
        end,
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, stderr_to_stdout, binary]),
    {os_pid, SPid} = erlang:port_info(Port, os_pid),
    timer:sleep(1000), % attaching to every thread
    #{made := Made} = calls(T, Callers, N, small),
    Calls = Made + ?WARMUP,
    _ = os:cmd("kill -INT " ++ integer_to_list(SPid)),
    receive {Port, {exit_status, _}} -> ok
    after 30000 -> error({Tool, did_not_exit})
    end,
    flush_port(Port),
    {ok, Txt} = file:read_file(Out),
    syscall_count(Tool, Txt) / Calls.

%% perf -x,: "COUNT,,raw_syscalls:sys_enter,...".  strace -c: the last
%% line, "100.00 SECS USECS CALLS [ERRORS] total".
syscall_count(perf, Txt) ->
    case [C || L <- string:split(Txt, "\n", all),
               [C, _, <<"raw_syscalls:sys_enter">> | _]
                   <- [string:split(L, ",", all)]] of
        [C] -> binary_to_integer(C);
        _ -> error({perf_output, Txt})
    end;
syscall_count(strace, Txt) ->
    case [L || L <- string:split(Txt, "\n", all),
               lists:last([<<>> | string:lexemes(L, " ")]) =:= <<"total">>] of
        [Line] -> binary_to_integer(lists:nth(4, string:lexemes(Line, " ")));
        _ -> error({strace_output, Txt})
    end.

%% perf when it can count the tracepoint of a running command here, else
%% strace; decided once, and said in a '#' line.
syscall_tool() ->
    case get(syscall_tool) of
        undefined ->
            Perf = os:find_executable("perf"),
            Tool = case Perf =/= false andalso
                       os:cmd("perf stat -x, -e raw_syscalls:sys_enter true "
                              "2>&1") of
                       false -> strace;
                       R ->
                           case re:run(R, "^[0-9]+,,raw_syscalls:sys_enter",
                                       [multiline]) of
                               {match, _} -> perf;
                               nomatch -> strace
                           end
                   end,
            Tool =:= strace andalso os:find_executable("strace") =:= false
                andalso error(neither_perf_nor_strace),
            io:format("# syscalls_per_call_16 counted with ~s~n",
                      [case Tool of
                           perf -> "perf stat -e raw_syscalls:sys_enter -p";
                           strace -> "strace -c -f -p (no usable perf)"
                       end]),
            put(syscall_tool, Tool),
            Tool;
        Tool -> Tool
    end.

flush_port(Port) ->
    receive {Port, _} -> flush_port(Port) after 0 -> ok end.

%% ---- Head-of-line blocking ---------------------------------------------

%% One process echoes a BENCH_HOL_MB MB binary over and over while this
%% one makes small calls for Ms; returns the p99 latency of those in us.
hol(#{node := Node}, Ms) ->
    Dest = {echo, Node},
    warm(Dest, small),
    Big = binary:copy(<<1>>, list_to_integer(env("BENCH_HOL_MB", "100"))
                      * 1000000),
    Self = self(),
    Streamer = spawn_link(fun() -> stream(Dest, Big, Self, 0) end),
    timer:sleep(100), % the first big message is on its way
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    Lat = lat_loop(Dest, Deadline, []),
    Streamer ! stop,
    Big2 = receive {streamed, Streamer, K} -> K
           after 600000 -> error(streamer_timeout)
           end,
    S = lists:sort(Lat),
    L = length(S),
    P99 = lists:nth(max(1, min(L, round(L * 0.99))), S),
    verbose("hol ~s: ~b small calls, median ~b us, p99 ~b us, max ~b us; "
            "~b big echoes done",
            [Node, L, lists:nth(max(1, L div 2), S), P99, lists:last(S),
             Big2]),
    P99.

stream(Dest, Big, Parent, K) ->
    receive stop -> Parent ! {streamed, self(), K}
    after 0 ->
            Big = gen_server:call(Dest, {echo, Big}, 600000),
            stream(Dest, Big, Parent, K + 1)
    end.

lat_loop(Dest, Deadline, Acc) ->
    T0 = erlang:monotonic_time(microsecond),
    case T0 >= Deadline * 1000 of
        true -> Acc;
        false ->
            ok = gen_server:call(Dest, {echo, ok}, ?CALL_TIMEOUT),
            T1 = erlang:monotonic_time(microsecond),
            lat_loop(Dest, Deadline, [T1 - T0 | Acc])
    end.

%% ---- The C client ------------------------------------------------------

c_client(#{node := Peer}, Threads, N) ->
    Exe = env("BENCH_CCLIENT", "build/release/bench/bench_cclient"),
    Name = uniq("rbc"),
    Log = filename:join(tmp(), Name ++ ".log"),
    %% Its stderr (the runtime's log lines) goes to a file, so that its
    %% stdout is the one number.
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>>\"$RB_LOG\"",
                              Exe, Name, atom_to_list(Peer),
                              integer_to_list(Threads),
                              integer_to_list(max(1, N div Threads))]},
                      {env, [{"RB_LOG", Log},
                             {"BENCH_COOKIE",
                              atom_to_list(erlang:get_cookie())}]},
                      exit_status, binary]),
    Out = collect(Port, <<>>),
    case Out of
        {0, B} -> binary_to_integer(string:trim(B));
        {Rc, B} -> error({bench_cclient, Rc, B, file:read_file(Log)})
    end.

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, Rc}} -> {Rc, Acc}
    after 600000 -> error(bench_cclient_timeout)
    end.

%% ---- Fan-in ------------------------------------------------------------

%% BENCH_FANIN_NODES hidden client nodes (started once, for both sides),
%% Callers callers each, Per calls each.  Returns the total calls/s.
fanin(#{node := Node}, Callers, Per) ->
    Peers = fanin_nodes(),
    _ = erpc:multicall(Peers, ?MODULE, fanin_warm, [Node], 120000),
    T0 = erlang:monotonic_time(),
    Rs = erpc:multicall(Peers, ?MODULE, fanin_run, [Node, Callers, Per],
                        600000),
    T1 = erlang:monotonic_time(),
    [ok = R || {ok, R} <- Rs],
    length(Rs) =:= length([ok || {ok, ok} <- Rs]) orelse
        error({fanin_failed, Rs}),
    length(Peers) * Callers * Per / secs(T1 - T0).

fanin_warm(Node) ->
    call_loop({echo, Node}, 20, small).

fanin_run(Node, Callers, Per) ->
    Self = self(),
    Pids = [spawn_link(fun() ->
                               call_loop({echo, Node}, Per, small),
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, Callers)],
    [receive {done, P} -> ok end || P <- Pids],
    ok.

fanin_nodes() ->
    case get(fanin_nodes) of
        undefined ->
            K = list_to_integer(env("BENCH_FANIN_NODES", "30")),
            Me = self(),
            Starters =
                [spawn_link(fun() ->
                                    Me ! {fanin_started, self(),
                                          start_peer(uniq("rbf"),
                                                     ["+S", "1", "+SDio", "1",
                                                      "+A", "1"],
                                                     false)}
                            end) || _ <- lists:seq(1, K)],
            Started = [receive {fanin_started, S, R} -> R
                       after 180000 -> error(fanin_start_timeout)
                       end || S <- Starters],
            put(fanin_nodes, [N || {_, N} <- Started]),
            put(peers, [P || {P, _} <- Started] ++ peers()),
            [N || {_, N} <- Started];
        Ns -> Ns
    end.

%% ---- Starting and stopping the servers ---------------------------------

%% The node program, on CPU 1 when pinned, its stderr in BENCH_TMP.
start_cnode() ->
    Exe = env("BENCH_CNODE", "build/release/cnode"),
    Name = uniq("rbcn"),
    Log = filename:join(tmp(), Name ++ ".log"),
    Cmd = pin() ++ [Exe, "--sname", Name, "--stdin-eof"] ++
          string:lexemes(env("BENCH_CNODE_ARGS", ""), " "),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>>\"$RB_LOG\"" | Cmd]},
                      {env, [{"RB_LOG", Log},
                             {"CNODE_COOKIE",
                              atom_to_list(erlang:get_cookie())}]},
                      {line, 4096}, binary, exit_status, use_stdio]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    put(cnode_port, {Port, OsPid}),
    receive
        {Port, {data, {eol, Line}}} ->
            case re:run(Line, "ready as (\\S+) on port",
                        [{capture, all_but_first, list}]) of
                {match, [Node]} ->
                    #{node => list_to_atom(Node),
                      os_pid => integer_to_list(OsPid)};
                nomatch ->
                    error({cnode_not_ready, Line})
            end;
        {Port, {exit_status, S}} ->
            error({cnode_exited, S, file:read_file(Log)})
    after 30000 ->
            error(cnode_not_ready)
    end.

start_beam_peer() ->
    {_, Node} = start_peer(uniq("rbpeer"), [], pin() =/= []),
    ok = erpc:call(Node, ?MODULE, start_echo, []),
    OsPid = erpc:call(Node, os, getpid, []),
    #{node => Node, os_pid => OsPid}.

%% A hidden peer node that has this module's directory in its path; on
%% CPU 1 when Pin.
start_peer(Name, Args, Pin) ->
    Dir = filename:dirname(code:which(?MODULE)),
    Opts0 = #{name => list_to_atom(Name),
              args => ["-hidden", "-pa", Dir | Args],
              wait_boot => 120000},
    Opts = case Pin of
               true ->
                   Opts0#{exec => {os:find_executable("taskset"),
                                   ["-c", "1", os:find_executable("erl")]}};
               false -> Opts0
           end,
    {ok, P, Node} = peer:start(Opts),
    put(peers, [P | peers()]),
    {P, Node}.

peers() ->
    case get(peers) of undefined -> []; L -> L end.

pin() ->
    case get(placement) of
        "pinned" -> [os:find_executable("taskset"), "-c", "1"];
        _ -> []
    end.

cleanup() ->
    [catch peer:stop(P) || P <- lists:usort(peers())],
    case get(cnode_port) of
        {Port, OsPid} ->
            _ = os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
            receive {Port, {exit_status, _}} -> ok after 10000 ->
                    os:cmd("kill -KILL " ++ integer_to_list(OsPid))
            end;
        undefined -> ok
    end,
    ok.

%% ---- Helpers -----------------------------------------------------------

env(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> V
    end.

tmp() -> env("BENCH_TMP", "/tmp").

uniq(Prefix) ->
    Prefix ++ integer_to_list(erlang:unique_integer([positive])) ++ "_" ++
        os:getpid().

verbose(Fmt, Args) ->
    case env("BENCH_VERBOSE", "0") of
        "1" -> io:format("# " ++ Fmt ++ "~n", Args);
        _ -> ok
    end.
