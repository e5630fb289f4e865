%% beam_bench: the BEAM side of `make bench`.
%%
%% Each figure runs the Erlang code that bench/bench_cnode.c measures for
%% cnode, and prints one number on standard output (nothing else):
%%
%%   local_call    ns per gen_server:call from a plain process
%%   process_call  ns per gen_server:call made by a gen_server's loop
%%   idle_memory   bytes of erlang:memory(total) growth per idle gen_server
%%   spawn         gen_server:start + gen_server:stop pairs per second
%%   million       peak RSS (VmHWM of this beam process) in MiB while
%%                 1,000,000 idle gen_servers live; then all are stopped
%%
%% Run as: erl -noshell -pa DIR -eval 'beam_bench:run(local_call, 200000)'
%% (run/2 halts the VM itself, with status 1 on any failure).
-module(beam_bench).
-behaviour(gen_server).

-export([run/2, main/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% ---- The benchmarked server ------------------------------------------
%%
%% The same trivial server as the C side: {get, N} is answered {ok, N}.
%% As a client (process_call), it runs a call loop when told {go, ...}.

init(Arg) -> {ok, Arg}.

handle_call({get, N}, _From, S) -> {reply, {ok, N}, S}.

handle_cast({go, Target, N, ReplyTo}, S) ->
    call_loop(Target, 1, N),
    ReplyTo ! {done, N},
    {noreply, S}.

handle_info(_Msg, S) -> {noreply, S}.

call_loop(_Target, I, N) when I > N -> ok;
call_loop(Target, I, N) ->
    {ok, I} = gen_server:call(Target, {get, I}, 5000),
    call_loop(Target, I + 1, N).

%% ---- Entry points ----------------------------------------------------

%% For `erl -run beam_bench main Figure N`.
main([Figure, N]) -> run(list_to_atom(Figure), list_to_integer(N)).

run(Figure, N) ->
    try figure(Figure, N) of
        V when is_integer(V) ->
            io:format("~b~n", [V]), halt(0);
        V when is_float(V) ->
            io:format("~.3f~n", [V]), halt(0)
    catch
        C:R:St ->
            io:format(standard_error, "beam_bench ~p failed: ~p:~p~n~p~n",
                      [Figure, C, R, St]),
            halt(1)
    end.

%% ---- Figures ---------------------------------------------------------

figure(local_call, N) ->
    {ok, S} = gen_server:start(?MODULE, state, []),
    call_loop(S, 1, 1000),                     % warm up
    T0 = erlang:monotonic_time(nanosecond),
    call_loop(S, 1, N),
    T1 = erlang:monotonic_time(nanosecond),
    ok = gen_server:stop(S),
    (T1 - T0) div N;

figure(process_call, N) ->
    {ok, S} = gen_server:start(?MODULE, state, []),
    {ok, C} = gen_server:start(?MODULE, state, []),
    gen_server:cast(C, {go, S, 1000, self()}), % warm up
    receive {done, 1000} -> ok after 60000 -> error(timeout) end,
    T0 = erlang:monotonic_time(nanosecond),
    gen_server:cast(C, {go, S, N, self()}),
    receive {done, N} -> ok after 60000 -> error(timeout) end,
    T1 = erlang:monotonic_time(nanosecond),
    ok = gen_server:stop(C),
    ok = gen_server:stop(S),
    (T1 - T0) div N;

figure(idle_memory, N) ->
    garbage_collect(),
    M0 = erlang:memory(total),
    Pids = start_n(N),
    garbage_collect(),
    M1 = erlang:memory(total),
    stop_all(Pids),
    (M1 - M0) div N;

figure(spawn, N) ->
    T0 = erlang:monotonic_time(nanosecond),
    spawn_loop(N),
    T1 = erlang:monotonic_time(nanosecond),
    N * 1000000000 div max(1, T1 - T0);

figure(million, N) ->
    Base = erlang:system_info(process_count),
    Pids = start_n(N),
    Base = erlang:system_info(process_count) - N,
    stop_all(Pids),
    Base = erlang:system_info(process_count),
    vm_hwm_kib() / 1024.

spawn_loop(0) -> ok;
spawn_loop(I) ->
    {ok, P} = gen_server:start(?MODULE, state, []),
    ok = gen_server:stop(P),
    spawn_loop(I - 1).

start_n(N) -> start_n(N, []).
start_n(0, Acc) -> Acc;
start_n(I, Acc) ->
    {ok, P} = gen_server:start(?MODULE, state, []),
    start_n(I - 1, [P | Acc]).

%% Stops every server with the exit signal `shutdown` (what a supervisor,
%% or cn_runtime_shutdown on the C side, sends) and waits until all are
%% gone.  Polling the process count costs less than a million monitors.
stop_all(Pids) ->
    Base = erlang:system_info(process_count) - length(Pids),
    [exit(P, shutdown) || P <- Pids],
    wait_count(Base, 60000).

wait_count(Base, Left) when Left > 0 ->
    case erlang:system_info(process_count) of
        Base -> ok;
        _ -> timer:sleep(5), wait_count(Base, Left - 5)
    end.

%% Peak resident set size of this OS process, from /proc.
vm_hwm_kib() ->
    {ok, Bin} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(Bin, <<"\n">>, [global]),
                   binary:match(L, <<"VmHWM:">>) =/= nomatch],
    [_, Kib | _] = binary:split(Line, [<<" ">>, <<"\t">>],
                                [global, trim_all]),
    binary_to_integer(Kib).
