%% cnode_app_SUITE: the OTP application cnode (src/cnode.erl) from the
%% test VM: start_link/1 and its options, the links both ways (the C
%% process killed; the Erlang process killed or stopped), the cookie kept
%% off command lines and out of the child spec, and the errors start_link
%% returns.  The node program is $CN_BUILD/cnode (the exe option), so that
%% test-erl-asan runs these against the sanitized node; its log goes to
%% $CN_BUILD/test-erl/nodes/ (log_file).  make otpapp-test checks the
%% application as a dependency of mix and rebar3 projects.
-module(cnode_app_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

%% The supervisor of under_supervisor/1.
-export([init/1]).

-export([start_call_stop/1, default_exe_in_priv/1, c_process_killed/1,
         owner_killed/1, cookie_option/1, cookie_not_in_child_spec/1,
         extra_args/1, modules_and_config/1, under_supervisor/1,
         start_errors/1]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [start_call_stop, default_exe_in_priv, c_process_killed, owner_killed,
     cookie_option, cookie_not_in_child_spec, extra_args, modules_and_config,
     under_supervisor, start_errors].

init_per_suite(Config) ->
    ok = cn_node:ensure_dist(),
    Config.

end_per_suite(_Config) ->
    ok.

%% ---- helpers ---------------------------------------------------------------

name() ->
    "app" ++ cn_node:uniq().

log() ->
    Dir = filename:join([filename:dirname(cn_node:exe()), "test-erl", "nodes"]),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    filename:join(Dir, name() ++ ".log").

opts(More) ->
    [{sname, name()}, {exe, cn_node:exe()}, {log_file, log()} | More].

alive(OsPid) ->
    filelib:is_dir("/proc/" ++ integer_to_list(OsPid)).

start(More) ->
    {ok, Pid} = cnode:start_link(opts(More)),
    unlink(Pid),
    Pid.

stop_and_check(Pid) ->
    OsPid = cnode:os_pid(Pid),
    ok = cnode:stop(Pid),
    %% stop/1 returns once the node is gone.
    ?assertNot(alive(OsPid)).

init({sup, Spec}) ->
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, [Spec]}}.

%% ---- cases -----------------------------------------------------------------

%% start_link returns once the node serves; node_name is the node to call;
%% dist_stats reads its counters; stop/1 stops it cleanly.
start_call_stop(_Config) ->
    Pid = start([{log_level, warning}]),
    N = cnode:node_name(Pid),
    ?assert(is_atom(N)),
    ok = gen_server:call({kv, N}, {put, a, 1}),
    {ok, 1} = gen_server:call({kv, N}, {get, a}),
    pong = net_adm:ping(N),
    %% Its counters, by the pid: our connection and the two calls.
    #{connections := 1, nodes_up := 1, frames_in := In, frames_out := Out} =
        cnode:dist_stats(Pid),
    ?assert(In >= 6 andalso Out >= 2),
    stop_and_check(Pid),
    pang = net_adm:ping(N).

%% Without exe (and $CNODE_EXE), the program is priv/cnode of the
%% application; an exe that is not there is an error, not a fallback.
default_exe_in_priv(_Config) ->
    false = os:getenv("CNODE_EXE"),
    {ok, Exe} = cnode:exe([]),
    ?assertEqual(filename:join(code:priv_dir(cnode), "cnode"), Exe),
    ?assert(filelib:is_regular(Exe)),
    {error, {no_node_program, ["/nonexistent/cnode"]}} =
        cnode:exe(#{exe => "/nonexistent/cnode"}),
    ok.

%% kill -9 of the C process: the Erlang process exits with
%% {cnode_exit, 137}.
c_process_killed(_Config) ->
    process_flag(trap_exit, true),
    {ok, Pid} = cnode:start_link(opts([])),
    OsPid = cnode:os_pid(Pid),
    _ = os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    receive {'EXIT', Pid, R} -> ?assertEqual({cnode_exit, 128 + 9}, R)
    after 5000 -> ct:fail(no_exit)
    end,
    process_flag(trap_exit, false).

%% The Erlang process killed (no terminate): the port closes, and the node
%% stops on the end of its stdin.
owner_killed(_Config) ->
    Log = log(),
    Pid = start([{log_file, Log}]),
    OsPid = cnode:os_pid(Pid),
    exit(Pid, kill),
    ok = cn_node:wait_until(fun() -> not alive(OsPid) end, 5000),
    {ok, Text} = file:read_file(Log),
    ?assertNotEqual(nomatch, binary:match(Text, <<"stdin reached its end">>)).

%% A cookie of its own: passed in the environment (wiped there by the
%% node), never on the command line, and set for that node in this VM.
cookie_option(_Config) ->
    Cookie = "appck" ++ cn_node:uniq(),
    Pid = start([{cookie, Cookie}]),
    N = cnode:node_name(Pid),
    ?assertEqual(list_to_atom(Cookie), erlang:get_cookie(N)),
    OsPid = integer_to_list(cnode:os_pid(Pid)),
    {ok, Cmdline} = file:read_file("/proc/" ++ OsPid ++ "/cmdline"),
    {ok, Environ} = file:read_file("/proc/" ++ OsPid ++ "/environ"),
    ?assertEqual(nomatch, binary:match(Cmdline, list_to_binary(Cookie))),
    ?assertEqual(nomatch, binary:match(Environ, list_to_binary(Cookie))),
    ?assertNotEqual(nomatch, binary:match(Cmdline, <<"--stdin-eof">>)),
    ok = gen_server:call({kv, N}, {put, a, 1}),
    stop_and_check(Pid).

%% The child spec's start arguments, which supervisor reports print, hold
%% the cookie only inside a fun.
cookie_not_in_child_spec(_Config) ->
    Spec = cnode:child_spec([{sname, "x"}, {cookie, "topsecret"}, {id, my_id}]),
    #{id := my_id, start := {cnode, start_link, [Args]}, restart := permanent} = Spec,
    Printed = lists:flatten(io_lib:format("~p", [Spec])),
    ?assertEqual(nomatch, string:find(Printed, "topsecret")),
    #{cookie := F} = Args,
    "topsecret" = F(),
    #{id := cnode} = cnode:child_spec(#{sname => "y"}).

%% extra_args reach the node program: --published makes it visible.
extra_args(_Config) ->
    Pid = start([{extra_args, ["--published", "--max-mailbox", "100"]}]),
    N = cnode:node_name(Pid),
    ?assert(lists:member(N, nodes())),
    stop_and_check(Pid).

%% modules loads server modules (--load); config names a --config file,
%% whose modules start too.
modules_and_config(Config) ->
    Build = filename:dirname(cn_node:exe()),
    So = filename:join([Build, "examples", "modules", "counter.so"]),
    File = filename:join(?config(priv_dir, Config), "app.config"),
    ok = file:write_file(File, io_lib:format(
        "[{modules, [{~p, [{name, tally}, {args, 7}]}]}].~n", [So])),
    Pid = start([{modules, [So]}, {config, File}]),
    N = cnode:node_name(Pid),
    {ok, 1} = gen_server:call({counter, N}, {add, 1}),
    {ok, 8} = gen_server:call({tally, N}, {add, 1}),
    stop_and_check(Pid).

%% Under a supervisor: kill -9 of the C process, and the supervisor starts
%% a new node of the same name that answers.
under_supervisor(_Config) ->
    {ok, Sup} = supervisor:start_link(?MODULE, {sup, cnode:child_spec(opts([]))}),
    unlink(Sup),
    [{cnode, Pid, worker, [cnode]}] = supervisor:which_children(Sup),
    N = cnode:node_name(Pid),
    ok = gen_server:call({kv, N}, {put, a, 1}),
    OsPid = cnode:os_pid(Pid),
    _ = os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    ok = cn_node:wait_until(
           fun() ->
                   case catch supervisor:which_children(Sup) of
                       [{cnode, P, _, _}] when is_pid(P), P =/= Pid -> true;
                       _ -> false
                   end
           end, 15000),
    [{cnode, Pid2, worker, [cnode]}] = supervisor:which_children(Sup),
    N = cnode:node_name(Pid2),
    error = gen_server:call({kv, N}, {get, a}),
    OsPid2 = cnode:os_pid(Pid2),
    Ref = erlang:monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok after 15000 -> ct:fail(sup_stuck) end,
    ?assertNot(alive(OsPid2)).

%% What start_link returns when it cannot start the node.
start_errors(_Config) ->
    process_flag(trap_exit, true),
    {no_node_program, _} =
        start_error([{sname, name()}, {exe, "/nonexistent/cnode"}]),
    {bad_option, _} = start_error(opts([{name, "a@b.c"}])),
    {exited_before_ready, 2, []} =
        start_error([{sname, "bad name"}, {exe, cn_node:exe()}, {log_file, log()}]),
    {exited_before_ready, 2, []} =
        start_error(opts([{extra_args, ["--no-such-flag"]}])),
    process_flag(trap_exit, false).

%% start_link's error, once the process that failed has exited with it
%% (its exit signal comes after start_link returns).
start_error(Opts) ->
    {error, R} = cnode:start_link(Opts),
    receive {'EXIT', _, R} -> R
    after 5000 -> ct:fail({no_exit, R})
    end.
