%% cn_soak: the soak test (make soak; a 30-second run in make test).
%%
%% Starts the real node program (cn_node, unique name and cookie) and runs
%% SOAK_CALLERS (default 1000) BEAM processes against its kv and echo for
%% SOAK_SECONDS (default 600), each as fast as it gets answers, then checks
%% that nothing was lost and prints the figures.  Run by mk/soak.mk as
%%
%%   erl -noshell -pa EBIN -eval 'cn_soak:main()'
%%
%% with CN_BUILD set; the exit status is 0 when every check passed, and
%% "1 0" or "0 1" is appended to $CN_TEST_SUMMARY when that is set.
%%
%% What each caller does, one operation at a time, chosen at random:
%%   40%  echo call {echo, {Id, Seq, Bin}}: the reply must be =:= the term;
%%   20%  kv call {put, {Id, Slot}, {Seq, Bin}}, then {get, {Id, Slot}}: the
%%        reply must be {ok, {Seq, Bin}} (a value over 64 KiB is deleted
%%        again with a third call, so that the store stays small);
%%   20%  kv cast {put, {Id, cast}, {Seq, Bin}}: at the end a call reads the
%%        key back and must find the last cast's value, which (casts from
%%        one process arrive in order) verifies every kv cast;
%%   20%  echo cast {send, self(), {soak_ack, Seq, Bin}}: echo sends the
%%        term back, and every one must come back, =:=, before the end.
%% Each call has a 60 s timeout; a call that exits or answers wrongly is
%% lost.  At the end each caller deletes its keys, and kv must be empty.
%% kv and echo must still be the processes they were at the start (no
%% crash, no restart), and the node must stop cleanly on SIGTERM (exit
%% status 0).
%%
%% Sizes.  Bin is a slice of one random 1 MiB + 64 KiB binary (slicing
%% costs nothing on the BEAM side; on the wire each is a full copy).  One
%% call in 100 carries 64 KiB to 1 MiB; every other operation carries 1 to
%% 8 KiB (91%) or 8 to 64 KiB (9%).  Only calls carry the large ones, and
%% at most SOAK_MAX_BIG (16) of them are in flight at once (an atomics
%% counter; a caller that finds none free sends a smaller one instead).  So the bytes in flight stay under
%% 1,000 x 64 KiB + 16 x 1 MiB, about 80 MiB, a few copies of that on each
%% side, instead of the 1 GB that 1,000 callers x 1 MiB would need; the
%% run prints the node's peak RSS and the BEAM's peak memory to show it.
%%
%% Latency is each call's round trip (gen_server:call, microseconds) in a
%% shared log-linear histogram (64 buckets per power of two, so a
%% percentile is within 1.6%; the figure printed is the bucket's upper
%% bound).  Output: "soak: ..." lines (key=value), per-caller lines in
%% $CN_BUILD/soak/callers.txt (printed too when SOAK_VERBOSE=1).
-module(cn_soak).

-export([main/0]).

-define(CALL_TIMEOUT, 60000).
-define(SUB, 64).                 % histogram buckets per power of two
-define(BUCKETS, (?SUB * 40)).    % up to 2^39 us
-define(BLOB, ((1 bsl 20) + (64 bsl 10))).
-define(BIG_MIN, (64 bsl 10)).
-define(BIG_MAX, (1 bsl 20)).

main() ->
    Status = try run() of
                 ok -> 0;
                 {failed, Why} ->
                     io:format("soak: FAILED ~p~n", [Why]),
                     1
             catch
                 C:R:St ->
                     io:format("soak: FAILED crash ~p:~p~n~p~n", [C, R, St]),
                     2
             end,
    case os:getenv("CN_TEST_SUMMARY") of
        F when F =:= false; F =:= "" -> ok;
        F -> ok = file:write_file(F, case Status of
                                         0 -> "1 0\n";
                                         _ -> "0 1\n"
                                     end, [append])
    end,
    erlang:halt(Status).

env_int(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> list_to_integer(V)
    end.

run() ->
    Seconds = env_int("SOAK_SECONDS", 600),
    NCallers = env_int("SOAK_CALLERS", 1000),
    MaxBig = env_int("SOAK_MAX_BIG", 16),
    Verbose = os:getenv("SOAK_VERBOSE") =:= "1",
    CN = cn_node:start(#{owner => self()}),
    try
        soak(CN, Seconds, NCallers, MaxBig, Verbose)
    after
        %% Whatever happened, the node does not outlive the run.
        _ = cn_node:kill(CN)
    end.

soak(CN, Seconds, NCallers, MaxBig, Verbose) ->
    N = cn_node:node_name(CN),
    io:format("soak: node=~s os_pid=~s callers=~p seconds=~p max_big=~p~n",
              [N, cn_node:os_pid(CN), NCallers, Seconds, MaxBig]),
    Echo0 = gen_server:call({echo, N}, pid),
    Kv0 = rpc_whereis(N, kv),
    [] = gen_server:call({kv, N}, keys),
    Blob = crypto:strong_rand_bytes(?BLOB),
    Ctx = #{node => N, blob => Blob,
            hist => counters:new(?BUCKETS, [write_concurrency]),
            big => atomics:new(1, []), max_big => MaxBig,
            done => counters:new(1, [write_concurrency])},
    T0 = erlang:monotonic_time(millisecond),
    Deadline = T0 + Seconds * 1000,
    Sampler = spawn_link(fun() -> sampler(CN, Ctx, T0, Seconds, #{}) end),
    Callers = [spawn_monitor(fun() -> exit({result, caller(Id, Ctx, Deadline)}) end)
               || Id <- lists:seq(1, NCallers)],
    Results = [receive
                   {'DOWN', Ref, process, Pid, {result, R}} -> R;
                   {'DOWN', Ref, process, Pid, Other} -> #{crash => Other}
               after (Seconds + 300) * 1000 ->
                       exit(Pid, kill),
                       #{crash => hung}
               end || {Pid, Ref} <- Callers],
    Elapsed = (erlang:monotonic_time(millisecond) - T0) / 1000,
    Sampler ! {stop, self()},
    Mem = receive {sampled, M} -> M after 5000 -> #{} end,
    Keys = gen_server:call({kv, N}, keys, 30000),
    Echo1 = gen_server:call({echo, N}, pid),
    Kv1 = rpc_whereis(N, kv),
    Stop = cn_node:stop(CN),
    report(Results, Ctx, Elapsed, Mem, Verbose),
    Checks = [{callers_crashed, [R || R = #{crash := _} <- Results]},
              {lost_calls, lists:sum([maps:get(sent, R) - maps:get(received, R)
                                      || R = #{sent := _} <- Results])},
              {unverified_casts,
               lists:sum([maps:get(casts_sent, R) - maps:get(casts_verified, R)
                          || R = #{casts_sent := _} <- Results])},
              {keys_left, length(Keys)},
              {echo_restarted, Echo0 =/= Echo1},
              {kv_restarted, Kv0 =/= Kv1},
              {node_stop, Stop}],
    case [C || C = {K, V} <- Checks, not ok_check(K, V)] of
        [] ->
            io:format("soak: PASSED~n"),
            ok;
        Bad ->
            {failed, Bad}
    end.

ok_check(callers_crashed, L) -> L =:= [];
ok_check(node_stop, S) -> S =:= {ok, 0};
ok_check(K, V) when K =:= echo_restarted; K =:= kv_restarted -> V =:= false;
ok_check(_, V) -> V =:= 0.

%% kv's pid, through cnode_sup (kv has no `pid` call).
rpc_whereis(N, Name) ->
    Children = supervisor:which_children({cnode_sup, N}),
    {Name, Pid, _, _} = lists:keyfind(Name, 1, Children),
    Pid.

%% ---- A caller -----------------------------------------------------------------

-record(c, {id, ctx, node, seq = 0, sent = 0, received = 0, wrong = 0,
            kv_casts = 0, last_cast = none, acks_expected = 0, acks = 0,
            bad_acks = 0, errors = [], max_us = 0, big = 0, big_busy = 0}).

caller(Id, Ctx = #{node := N}, Deadline) ->
    rand:seed(exsss, {Id, erlang:unique_integer(), erlang:system_time()}),
    S = loop(#c{id = Id, ctx = Ctx, node = N}, Deadline),
    finish(S).

loop(S, Deadline) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true -> S;
        false -> loop(op(drain_acks(S#c{seq = S#c.seq + 1})), Deadline)
    end.

op(S) ->
    case rand:uniform(100) of
        R when R =< 40 -> echo_call(S);
        R when R =< 60 -> kv_put_get(S);
        R when R =< 80 -> kv_cast(S);
        _ -> echo_cast(S)
    end.

echo_call(S = #c{id = Id, seq = Seq}) ->
    with_payload(S, true, fun(Bin) ->
                                  T = {Id, Seq, Bin},
                                  call(S, echo, {echo, T}, T)
                          end).

kv_put_get(S = #c{id = Id, seq = Seq}) ->
    with_payload(S, true,
                 fun(Bin) ->
                         Key = {Id, Seq rem 4},
                         V = {Seq, Bin},
                         S1 = call(S, kv, {put, Key, V}, ok),
                         S2 = call(S1, kv, {get, Key}, {ok, V}),
                         case byte_size(Bin) > ?BIG_MIN of
                             true -> call(S2, kv, {delete, Key}, ok);
                             false -> S2
                         end
                 end).

kv_cast(S = #c{id = Id, seq = Seq, node = N}) ->
    Bin = payload(S),
    V = {Seq, Bin},
    ok = gen_server:cast({kv, N}, {put, {Id, cast}, V}),
    S#c{kv_casts = S#c.kv_casts + 1, last_cast = V}.

echo_cast(S = #c{seq = Seq, node = N}) ->
    Bin = payload(S),
    ok = gen_server:cast({echo, N}, {send, self(), {soak_ack, Seq, Bin}}),
    put({ack, Seq}, Bin),
    S#c{acks_expected = S#c.acks_expected + 1}.

drain_acks(S) ->
    receive
        {soak_ack, Seq, Bin} -> drain_acks(ack(S, Seq, Bin))
    after 0 -> S
    end.

ack(S, Seq, Bin) ->
    case erase({ack, Seq}) of
        Bin -> S#c{acks = S#c.acks + 1};
        _ -> S#c{bad_acks = S#c.bad_acks + 1,
                 errors = err(S, {bad_ack, Seq})}
    end.

%% One call, timed; the reply must be =:= Expect.
call(S = #c{node = N, ctx = #{hist := H}}, Server, Req, Expect) ->
    T0 = erlang:monotonic_time(),
    R = try gen_server:call({Server, N}, Req, ?CALL_TIMEOUT) of
            Reply -> {reply, Reply}
        catch
            exit:Reason -> {exit, Reason}
        end,
    Us = erlang:convert_time_unit(erlang:monotonic_time() - T0, native,
                                  microsecond),
    S1 = S#c{sent = S#c.sent + 1},
    case R of
        {reply, Expect} ->
            counters:add(H, bucket(Us) + 1, 1),
            S1#c{received = S1#c.received + 1, max_us = max(Us, S#c.max_us)};
        {reply, _Other} ->
            S1#c{wrong = S1#c.wrong + 1,
                 errors = err(S, {wrong_reply, Server, element(1, Req)})};
        {exit, Why} ->
            S1#c{errors = err(S, {exit, Server, element(1, Req),
                                  short_reason(Why)})}
    end.

short_reason({Reason, {gen_server, call, _}}) -> Reason;
short_reason(R) -> R.

err(#c{errors = E}, What) when length(E) < 5 -> [What | E];
err(#c{errors = E}, _) -> E.

%% Runs Fun with a payload; a large one (for calls, when one of the large
%% slots is free) is given back when Fun returns.
with_payload(S = #c{ctx = #{big := Big, max_big := MaxBig}}, true, Fun) ->
    case rand:uniform(100) of
        1 ->
            case atomics:add_get(Big, 1, 1) =< MaxBig of
                true ->
                    S1 = try Fun(slice(S, ?BIG_MIN + 1, ?BIG_MAX))
                         after atomics:sub(Big, 1, 1)
                         end,
                    S1#c{big = S1#c.big + 1};
                false ->
                    atomics:sub(Big, 1, 1),
                    S1 = Fun(payload(S)),
                    S1#c{big_busy = S1#c.big_busy + 1}
            end;
        _ ->
            Fun(payload(S))
    end.

%% A payload of at most 64 KiB: 1-8 KiB (91%) or 8-64 KiB (9%).
payload(S) ->
    case rand:uniform(100) =< 91 of
        true -> slice(S, 1024, 8192);
        false -> slice(S, 8193, ?BIG_MIN)
    end.

slice(#c{ctx = #{blob := Blob}}, Min, Max) ->
    Size = Min + rand:uniform(Max - Min + 1) - 1,
    binary:part(Blob, rand:uniform(?BLOB - Size + 1) - 1, Size).

%% The end: read back the last kv cast, wait for every echo ack, delete
%% the caller's keys.
finish(S0 = #c{id = Id, last_cast = Last}) ->
    S1 = case Last of
             none -> S0;
             _ -> call(S0, kv, {get, {Id, cast}}, {ok, Last})
         end,
    CastOk = S1#c.received - S0#c.received =:= 1 orelse Last =:= none,
    S2 = wait_acks(S1, erlang:monotonic_time(millisecond) + ?CALL_TIMEOUT),
    S3 = lists:foldl(fun(Key, Acc) -> call(Acc, kv, {delete, Key}, ok) end,
                     S2, [{Id, cast} | [{Id, I} || I <- lists:seq(0, 3)]]),
    #{id => Id, sent => S3#c.sent, received => S3#c.received,
      wrong => S3#c.wrong,
      casts_sent => S3#c.kv_casts + S3#c.acks_expected,
      casts_verified => case CastOk of
                            true -> S3#c.kv_casts;
                            false -> 0
                        end + S3#c.acks,
      kv_casts => S3#c.kv_casts, echo_casts => S3#c.acks_expected,
      acks => S3#c.acks, max_us => S3#c.max_us, big => S3#c.big,
      big_busy => S3#c.big_busy,
      errors => lists:reverse(S3#c.errors)}.

wait_acks(S = #c{acks = A, bad_acks = B, acks_expected = E}, _) when A + B >= E ->
    S;
wait_acks(S, Until) ->
    Left = max(0, Until - erlang:monotonic_time(millisecond)),
    receive
        {soak_ack, Seq, Bin} -> wait_acks(ack(S, Seq, Bin), Until)
    after Left ->
            S#c{errors = err(S, {acks_missing, S#c.acks_expected - S#c.acks})}
    end.

%% ---- Latency histogram -----------------------------------------------------------

%% Bucket of a value in microseconds: exact below ?SUB, then ?SUB buckets
%% per power of two.
bucket(V) when V < ?SUB -> V;
bucket(V) ->
    Shift = msb(V, 0) - 6,
    min(?BUCKETS - 1, (Shift + 1) * ?SUB + (V bsr Shift) - ?SUB).

msb(1, E) -> E;
msb(V, E) -> msb(V bsr 1, E + 1).

%% The largest value that falls in bucket I.
bucket_max(I) when I < ?SUB -> I;
bucket_max(I) ->
    Shift = I div ?SUB - 1,
    M = I rem ?SUB + ?SUB,
    ((M + 1) bsl Shift) - 1.

percentiles(H, Ps) ->
    Counts = [counters:get(H, I + 1) || I <- lists:seq(0, ?BUCKETS - 1)],
    Total = lists:sum(Counts),
    [{P, pct(Counts, 0, 0, P * Total)} || P <- Ps].

pct([], I, _, _) -> bucket_max(I - 1);
pct([C | Rest], I, Acc, Want) ->
    case Acc + C >= Want andalso C > 0 of
        true -> bucket_max(I);
        false -> pct(Rest, I + 1, Acc + C, Want)
    end.

%% ---- Memory, progress -------------------------------------------------------------

%% Every second: the node's VmRSS and the BEAM's memory; the peaks go back
%% when asked.  A progress line every tenth of the run (at least 10 s).
sampler(CN, Ctx = #{hist := H}, T0, Seconds, M0) ->
    Rss = rss_kib(cn_node:os_pid(CN)),
    Beam = erlang:memory(total) div 1024,
    M = M0#{rss_max => max(Rss, maps:get(rss_max, M0, 0)),
            beam_max => max(Beam, maps:get(beam_max, M0, 0))},
    Now = erlang:monotonic_time(millisecond),
    Every = max(10, Seconds div 10) * 1000,
    Next = maps:get(next, M0, T0 + Every),
    M1 = case Now >= Next of
             true ->
                 Calls = lists:sum([counters:get(H, I) || I <- lists:seq(1, ?BUCKETS)]),
                 io:format("soak: progress t=~ps calls_ok=~p node_rss_kib=~p "
                           "beam_kib=~p~n", [(Now - T0) div 1000, Calls, Rss, Beam]),
                 M#{next => Next + Every};
             false ->
                 M#{next => Next}
         end,
    receive
        {stop, From} -> From ! {sampled, M1}
    after 1000 ->
            sampler(CN, Ctx, T0, Seconds, M1)
    end.

min_of([]) -> 0;
min_of(L) -> lists:min(L).

rss_kib(OsPid) ->
    case file:read_file("/proc/" ++ OsPid ++ "/status") of
        {ok, B} ->
            case re:run(B, "VmRSS:\\s+([0-9]+) kB", [{capture, all_but_first, list}]) of
                {match, [K]} -> list_to_integer(K);
                nomatch -> 0
            end;
        _ -> 0
    end.

%% ---- Report --------------------------------------------------------------------

report(Results, #{hist := H}, Elapsed, Mem, Verbose) ->
    Ok = [R || R = #{sent := _} <- Results],
    Sum = fun(K) -> lists:sum([maps:get(K, R) || R <- Ok]) end,
    Sent = Sum(sent),
    Received = Sum(received),
    [{_, P50}, {_, P99}, {_, P999}] = percentiles(H, [0.5, 0.99, 0.999]),
    MaxUs = lists:max([0 | [maps:get(max_us, R) || R <- Ok]]),
    io:format("soak: callers=~p seconds=~.1f calls_sent=~p calls_received=~p "
              "lost=~p wrong=~p~n",
              [length(Results), Elapsed, Sent, Received, Sent - Received,
               Sum(wrong)]),
    io:format("soak: casts_sent=~p casts_verified=~p kv_casts=~p echo_casts=~p "
              "echo_casts_returned=~p~n",
              [Sum(casts_sent), Sum(casts_verified), Sum(kv_casts),
               Sum(echo_casts), Sum(acks)]),
    io:format("soak: latency_us p50=~p p99=~p p99.9=~p max=~p~n",
              [P50, P99, P999, MaxUs]),
    io:format("soak: calls_per_s=~.1f ops_per_s=~.1f~n",
              [Received / Elapsed, (Received + Sum(casts_verified)) / Elapsed]),
    io:format("soak: memory node_rss_peak_kib=~p beam_peak_kib=~p~n",
              [maps:get(rss_max, Mem, 0), maps:get(beam_max, Mem, 0)]),
    io:format("soak: sizes large_calls=~p (64 KiB to 1 MiB) "
              "large_slots_busy=~p (sent smaller instead)~n",
              [Sum(big), Sum(big_busy)]),
    Per = fun(K) -> [maps:get(K, R) || R <- Ok] end,
    Lost = [maps:get(sent, R) - maps:get(received, R) || R <- Ok],
    io:format("soak: per_caller calls_sent min=~p max=~p calls_received min=~p "
              "max=~p lost max=~p callers_with_loss=~p crashed=~p~n",
              [min_of(Per(sent)), lists:max([0 | Per(sent)]),
               min_of(Per(received)), lists:max([0 | Per(received)]),
               lists:max([0 | Lost]), length([L || L <- Lost, L > 0]),
               length(Results) - length(Ok)]),
    Lines = [io_lib:format("soak: caller=~p calls_sent=~p calls_received=~p "
                           "casts_sent=~p casts_verified=~p errors=~p~n",
                           [maps:get(id, R), maps:get(sent, R),
                            maps:get(received, R), maps:get(casts_sent, R),
                            maps:get(casts_verified, R), maps:get(errors, R)])
             || R <- Ok],
    File = filename:join([filename:dirname(cn_node:exe()), "soak", "callers.txt"]),
    ok = filelib:ensure_dir(File),
    ok = file:write_file(File, Lines),
    io:format("soak: per-caller lines in ~s~n", [File]),
    Verbose andalso io:put_chars(Lines),
    [io:format("soak: caller crashed: ~p~n", [C]) || #{crash := C} <- Results],
    [io:format("soak: caller ~p errors: ~p~n", [maps:get(id, R), maps:get(errors, R)])
     || R <- Ok, maps:get(errors, R) =/= []],
    ok.
