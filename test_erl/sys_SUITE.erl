%% sys_SUITE: OTP's sys module against the node's C servers.
%%
%% One node program is started for the whole suite.  Every case drives kv,
%% echo or cnode_sup with OTP's own sys, gen_server and proc_lib functions,
%% exactly as an Erlang or Elixir user would, and checks the answers against
%% what an Erlang gen_server gives: get_state, get_status, suspend and
%% resume (a call waits and is then served), change_code (only while
%% suspended), replace_state (raises at once), the debug requests, and
%% stopping through sys:terminate (gen_server:stop, proc_lib:stop).  Cases
%% that stop a server wait for cnode_sup to restart it before they return.
-module(sys_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).

-export([get_state_kv/1, get_state_echo/1, get_status_kv/1,
         suspend_call_waits/1, suspend_keeps_order/1,
         change_code_only_suspended/1, replace_state_raises/1,
         statistics/1, debug_requests/1, unknown_system_msg/1,
         gen_server_stop_name/1, gen_server_stop_pid/1,
         proc_lib_stop_reason/1, sup_get_state/1, sup_get_status/1,
         sup_suspend/1]).

suite() ->
    [{timetrap, {seconds, 30}}].

all() ->
    [get_state_kv, get_state_echo, get_status_kv, suspend_call_waits,
     suspend_keeps_order, change_code_only_suspended, replace_state_raises,
     statistics, debug_requests, unknown_system_msg, gen_server_stop_name,
     gen_server_stop_pid, proc_lib_stop_reason, sup_get_state,
     sup_get_status, sup_suspend].

init_per_suite(Config) ->
    CN = cn_node:start(),
    ct:log("node ~p, log ~s", [cn_node:node_name(CN), cn_node:log_file(CN)]),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

init_per_testcase(_TC, Config) ->
    N = ?config(node, Config),
    _ = cn_node:wait_restarted(N, undefined),
    wait_kv(N),
    [] = cn_node:flush(),
    Config.

end_per_testcase(_TC, Config) ->
    %% Never leave a server suspended for the next case.
    N = ?config(node, Config),
    [catch sys:resume({S, N}, 1000) || S <- [kv, echo, cnode_sup]],
    ok.

%% ---- helpers ---------------------------------------------------------------

kv(N) -> {kv, N}.

%% Waits until kv answers (after a restart).
wait_kv(N) ->
    cn_node:wait_until(fun() ->
                               is_list(catch gen_server:call(kv(N), keys, 1000))
                       end, 5000).

%% Runs F in a new process; its result comes back as {Ref, Result}.
async(F) ->
    Self = self(),
    Ref = make_ref(),
    spawn(fun() -> Self ! {Ref, catch F()} end),
    Ref.

await(Ref, Ms) ->
    receive {Ref, R} -> {ok, R} after Ms -> timeout end.

down(MRef) ->
    receive {'DOWN', MRef, process, _, Reason} -> Reason
    after 5000 -> error(no_down)
    end.

%% ---- cases -----------------------------------------------------------------

%% kv's state is a map of its keys to their values.
get_state_kv(Config) ->
    N = ?config(node, Config),
    ok = gen_server:call(kv(N), {put, sys_a, 1}),
    ok = gen_server:call(kv(N), {put, <<"sys_b">>, {x, [1.5]}}),
    St = sys:get_state(kv(N)),
    ?assert(is_map(St)),
    ?assertEqual(1, maps:get(sys_a, St)),
    ?assertEqual({x, [1.5]}, maps:get(<<"sys_b">>, St)),
    ok = gen_server:call(kv(N), {delete, sys_a}),
    ?assertNot(maps:is_key(sys_a, sys:get_state(kv(N)))),
    ok = gen_server:call(kv(N), {delete, <<"sys_b">>}).

%% echo's state counts its pending callers.
get_state_echo(Config) ->
    N = ?config(node, Config),
    ?assertMatch(#{pending := 0, next_id := I} when is_integer(I),
                 sys:get_state({echo, N})),
    Ref = async(fun() -> gen_server:call({echo, N}, {sleep, 500}) end),
    ok = cn_node:wait_until(
           fun() -> maps:get(pending, sys:get_state({echo, N})) =:= 1 end,
           2000),
    {ok, ok} = await(Ref, 5000),
    ?assertMatch(#{pending := 0}, sys:get_state({echo, N})).

%% sys:get_status in the shape a gen_server gives.
get_status_kv(Config) ->
    N = ?config(node, Config),
    ok = gen_server:call(kv(N), {put, sys_s, 7}),
    {status, Pid, {module, gen_server}, [PDict, running, Parent, Debug, Misc]} =
        sys:get_status(kv(N)),
    ?assertEqual(N, node(Pid)),
    ?assertEqual({cnode_kv, init, 1}, proplists:get_value('$initial_call', PDict)),
    ?assertEqual([Parent], proplists:get_value('$ancestors', PDict)),
    ?assertEqual(N, node(Parent)),
    ?assertEqual([], Debug),
    ?assertEqual("Status for generic server kv",
                 proplists:get_value(header, Misc)),
    Data = lists:append([D || {data, D} <- Misc]),
    ?assertEqual(running, proplists:get_value("Status", Data)),
    ?assertEqual(Parent, proplists:get_value("Parent", Data)),
    ?assertEqual(7, maps:get(sys_s, proplists:get_value("State", Data))),
    ok = gen_server:call(kv(N), {delete, sys_s}).

%% While suspended a call waits; after resume it is served.
suspend_call_waits(Config) ->
    N = ?config(node, Config),
    ok = gen_server:call(kv(N), {put, sys_w, 1}),
    ok = sys:suspend(kv(N)),
    {status, _, _, [_, suspended | _]} = sys:get_status(kv(N)),
    Ref = async(fun() -> gen_server:call(kv(N), {get, sys_w}, 10000) end),
    ?assertEqual(timeout, await(Ref, 500)),
    %% sys still answers while suspended.
    ?assertMatch(#{sys_w := 1}, sys:get_state(kv(N))),
    ok = sys:resume(kv(N)),
    ?assertEqual({ok, {ok, 1}}, await(Ref, 5000)),
    {status, _, _, [_, running | _]} = sys:get_status(kv(N)),
    ok = gen_server:call(kv(N), {delete, sys_w}).

%% Casts and calls that arrive while suspended run after resume, in order,
%% none dropped.
suspend_keeps_order(Config) ->
    N = ?config(node, Config),
    ok = sys:suspend(kv(N)),
    [gen_server:cast(kv(N), {put, sys_o, I}) || I <- lists:seq(1, 50)],
    Ref = async(fun() -> gen_server:call(kv(N), {get, sys_o}, 10000) end),
    timer:sleep(200),
    ?assertEqual(timeout, await(Ref, 0)),
    ?assertNot(maps:is_key(sys_o, sys:get_state(kv(N)))),
    ok = sys:resume(kv(N)),
    ?assertEqual({ok, {ok, 50}}, await(Ref, 5000)),
    ok = gen_server:call(kv(N), {delete, sys_o}).

%% change_code works only while suspended, as in OTP; the state is kept.
change_code_only_suspended(Config) ->
    N = ?config(node, Config),
    ok = gen_server:call(kv(N), {put, sys_c, 3}),
    ?assertEqual({error, {unknown_system_msg, {change_code, cnode_kv, "1", x}}},
                 sys:change_code(kv(N), cnode_kv, "1", x)),
    ok = sys:suspend(kv(N)),
    ?assertEqual(ok, sys:change_code(kv(N), cnode_kv, "1", x)),
    ok = sys:resume(kv(N)),
    ?assertEqual({ok, 3}, gen_server:call(kv(N), {get, sys_c})),
    ok = gen_server:call(kv(N), {delete, sys_c}).

%% A fun cannot run in C: replace_state raises at once, nothing changes.
replace_state_raises(Config) ->
    N = ?config(node, Config),
    ok = gen_server:call(kv(N), {put, sys_r, 1}),
    T0 = erlang:monotonic_time(),
    ?assertError({not_supported, replace_state},
                 sys:replace_state(kv(N), fun(S) -> S end)),
    ?assert(cn_node:elapsed_ms(T0) < 2000),
    ?assertEqual({ok, 1}, gen_server:call(kv(N), {get, sys_r})),
    ok = gen_server:call(kv(N), {delete, sys_r}).

statistics(Config) ->
    N = ?config(node, Config),
    ?assertEqual({ok, no_statistics}, sys:statistics(kv(N), get)),
    ok = sys:statistics(kv(N), true),
    [{ok, _} = gen_server:call(kv(N), {incr, sys_st, 1}) || _ <- [1, 2, 3]],
    {ok, Stats} = sys:statistics(kv(N), get),
    ?assertEqual(3, proplists:get_value(messages_in, Stats)),
    ?assertEqual(3, proplists:get_value(messages_out, Stats)),
    ?assertMatch({{_, _, _}, {_, _, _}}, proplists:get_value(start_time, Stats)),
    ?assertMatch({{_, _, _}, {_, _, _}},
                 proplists:get_value(current_time, Stats)),
    {status, _, _, [_, _, _, Debug, _]} = sys:get_status(kv(N)),
    ?assertMatch([{statistics, _}], Debug),
    ok = sys:statistics(kv(N), false),
    ?assertEqual({ok, no_statistics}, sys:statistics(kv(N), get)),
    ok = gen_server:call(kv(N), {delete, sys_st}).

%% The debug requests answer as OTP's do, or say clearly what is missing.
debug_requests(Config) ->
    N = ?config(node, Config),
    ?assertEqual(ok, sys:trace(kv(N), true)),
    ?assertEqual(ok, sys:log(kv(N), true)),
    ?assertEqual({ok, []}, sys:log(kv(N), get)),
    ?assertEqual(ok, sys:log(kv(N), print)),
    {status, _, _, [_, _, _, Debug, _]} = sys:get_status(kv(N)),
    ?assertEqual(true, proplists:get_value(trace, Debug)),
    ?assertMatch({10, []}, proplists:get_value(log, Debug)),
    ?assertEqual({error, open_file},
                 sys:log_to_file(kv(N), "/tmp/cnode_sys_suite_log")),
    ?assertEqual(ok, sys:log_to_file(kv(N), false)),
    ?assertEqual({error, {not_supported, install}},
                 sys:install(kv(N), {fun(S, _, _) -> S end, x})),
    ?assertEqual(ok, sys:no_debug(kv(N))),
    {status, _, _, [_, _, _, [], _]} = sys:get_status(kv(N)).

unknown_system_msg(Config) ->
    N = ?config(node, Config),
    ?assertEqual({ok, {error, {unknown_system_msg, bogus}}},
                 gen:call(kv(N), system, bogus)),
    ?assertEqual({ok, unknown_debug}, gen:call(kv(N), system, {debug, bogus})).

%% gen_server:stop by name returns ok; a monitor sees normal; the
%% supervisor restarts kv.
gen_server_stop_name(Config) ->
    N = ?config(node, Config),
    {status, Old, _, _} = sys:get_status(kv(N)),
    MRef = erlang:monitor(process, Old),
    ?assertEqual(ok, gen_server:stop(kv(N))),
    ?assertEqual(normal, down(MRef)),
    wait_kv(N),
    {status, New, _, _} = sys:get_status(kv(N)),
    ?assertNotEqual(Old, New),
    ?assertEqual(#{}, sys:get_state(kv(N))).

%% The same by pid, with GenServer.stop's shape (gen:stop/1).
gen_server_stop_pid(Config) ->
    N = ?config(node, Config),
    Pid = cn_node:echo_pid(N),
    MRef = erlang:monitor(process, Pid),
    ?assertEqual(ok, gen_server:stop(Pid, normal, 5000)),
    ?assertEqual(normal, down(MRef)),
    ?assertNotEqual(Pid, cn_node:wait_restarted(N, Pid)).

%% proc_lib:stop with a reason of its own: the monitor sees that reason.
proc_lib_stop_reason(Config) ->
    N = ?config(node, Config),
    Pid = cn_node:echo_pid(N),
    MRef = erlang:monitor(process, Pid),
    ?assertEqual(ok, proc_lib:stop({echo, N}, {custom, [reason]}, 5000)),
    ?assertEqual({custom, [reason]}, down(MRef)),
    _ = cn_node:wait_restarted(N, Pid).

%% cnode_sup answers as a supervisor: its flags and children.
sup_get_state(Config) ->
    N = ?config(node, Config),
    St = sys:get_state({cnode_sup, N}),
    ?assertMatch(#{strategy := one_for_one, intensity := 100, period := 1},
                 St),
    Children = maps:get(children, St),
    ?assertEqual(lists:sort([kv, echo]),
                 lists:sort([Id || {Id, _, worker, _} <- Children])),
    ?assertEqual(lists:sort(supervisor:which_children({cnode_sup, N})),
                 lists:sort(Children)).

sup_get_status(Config) ->
    N = ?config(node, Config),
    {status, Pid, {module, gen_server}, [PDict, running, _, [], Misc]} =
        sys:get_status({cnode_sup, N}),
    ?assertEqual(N, node(Pid)),
    ?assertEqual({supervisor, init, 1},
                 proplists:get_value('$initial_call', PDict)),
    ?assertEqual("Status for generic server cnode_sup",
                 proplists:get_value(header, Misc)).

%% A suspended supervisor holds its calls until resumed.
sup_suspend(Config) ->
    N = ?config(node, Config),
    ok = sys:suspend({cnode_sup, N}),
    Ref = async(fun() -> supervisor:count_children({cnode_sup, N}) end),
    ?assertEqual(timeout, await(Ref, 300)),
    ok = sys:resume({cnode_sup, N}),
    {ok, Counts} = await(Ref, 5000),
    ?assertEqual(2, proplists:get_value(workers, Counts)).
