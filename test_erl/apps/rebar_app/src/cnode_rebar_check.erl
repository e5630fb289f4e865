%% cnode_rebar_check: cnode as a rebar3 dependency, under a supervisor of
%% this application.  main/0 starts distribution with a unique short
%% name, starts the supervisor with cnode:child_spec/1 as its child (with
%% a cookie of its own, which this VM then uses for that node), calls
%% kv on the node, kills the C process with kill -9, checks that the
%% supervisor restarted it and that calls work again, then stops the
%% supervisor and checks that the C process is gone.  It prints one line
%% per step and halts with status 0 when every step passed.  (rebar3 ct
%% compiles this file too, as it compiles everything under test_erl/.)
-module(cnode_rebar_check).
-behaviour(supervisor).

-export([main/0, init/1]).

main() ->
    try
        check(),
        io:format("cnode_rebar_check: passed~n"),
        erlang:halt(0)
    catch
        C:R:St ->
            io:format("cnode_rebar_check: FAILED: ~p:~p~n~p~n", [C, R, St]),
            erlang:halt(1)
    end.

init(Name) ->
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10},
          [cnode:child_spec([{sname, Name}, {log_level, warning},
                             {cookie, "ck" ++ Name}])]}}.

check() ->
    Uniq = os:getpid(),
    _ = os:cmd("epmd -daemon"),
    {ok, _} = net_kernel:start([list_to_atom("rebarchk" ++ Uniq), shortnames]),
    {ok, _} = application:ensure_all_started(cnode_rebar_check),
    {ok, Sup} = supervisor:start_link(?MODULE, "rebarcn" ++ Uniq),
    unlink(Sup),
    Child = child(Sup),
    Node = cnode:node_name(Child),
    step("started ~p", [Node]),
    ok = gen_server:call({kv, Node}, {put, k, 1}),
    {ok, 1} = gen_server:call({kv, Node}, {get, k}),
    step("kv put and get", []),
    OsPid = cnode:os_pid(Child),
    _ = os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    Child2 = wait_restart(Sup, Child, 20000),
    Node = cnode:node_name(Child2),
    false = alive(OsPid),
    OsPid2 = cnode:os_pid(Child2),
    step("kill -9 of ~p: restarted as ~p", [OsPid, OsPid2]),
    error = gen_server:call({kv, Node}, {get, k}),
    ok = gen_server:call({kv, Node}, {put, k, 2}),
    {ok, 2} = gen_server:call({kv, Node}, {get, k}),
    step("kv after the restart", []),
    Ref = erlang:monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok after 15000 -> error(sup_stuck) end,
    false = alive(OsPid2),
    step("supervisor stopped, node ~p gone", [OsPid2]).

step(Fmt, Args) ->
    io:format("cnode_rebar_check: ok: " ++ Fmt ++ "~n", Args).

child(Sup) ->
    [{cnode, Pid, worker, [cnode]}] = supervisor:which_children(Sup),
    Pid.

wait_restart(Sup, Old, Ms) when Ms > 0 ->
    case catch child(Sup) of
        Pid when is_pid(Pid), Pid =/= Old -> Pid;
        _ -> timer:sleep(50), wait_restart(Sup, Old, Ms - 50)
    end;
wait_restart(_Sup, Old, _Ms) ->
    error({not_restarted, Old}).

alive(OsPid) ->
    filelib:is_dir("/proc/" ++ integer_to_list(OsPid)).
