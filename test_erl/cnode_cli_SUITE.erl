%% cnode_cli_SUITE: the node program's command line, as a user or a port
%% owner meets it: --version, the node-name rules, the flags that conflict,
%% the cookie from a file, from CNODE_COOKIE and from --cookie, epmd left
%% alone (--start-epmd false), and --stdin-eof.  Every refusal is checked
%% for its exit status (2: a bad command line; 1: a startup failure), its
%% one-line message on stderr and its empty stdout.
-module(cnode_cli_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([version/1, help_lists_flags/1, bad_names/1, good_names/1,
         conflicting_flags/1, bad_values/1,
         cookie_file/1, cookie_file_refused/1, cookie_env/1,
         cookie_env_bad/1, cookie_env_loses_to_flag/1, cookie_flag_warns/1,
         start_epmd_false/1, stdin_eof_stops/1, stdin_eof_port_close/1,
         stdin_eof_sigterm/1, no_stdin_eof_keeps_running/1]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [version, help_lists_flags, bad_names, good_names, conflicting_flags,
     bad_values, cookie_file, cookie_file_refused, cookie_env,
     cookie_env_bad, cookie_env_loses_to_flag, cookie_flag_warns,
     start_epmd_false, stdin_eof_stops, stdin_eof_port_close,
     stdin_eof_sigterm, no_stdin_eof_keeps_running].

init_per_suite(Config) ->
    ok = cn_node:ensure_dist(),
    Config.

end_per_suite(_Config) ->
    ok.

%% ---- helpers ---------------------------------------------------------------

%% Runs the node program with Args and the environment changes Env (as
%% open_port takes them; CNODE_COOKIE is unset unless Env sets it) until it
%% exits, at most Ms.  Returns {Status, Stdout, Stderr}, binaries.
run(Args) ->
    run(Args, [], 10000).

run(Args, Env, Ms) ->
    Err = new_log(),
    %% open_port takes an empty value as "unset": the shell sets that one.
    Script = case lists:member({"CNODE_COOKIE", ""}, Env) of
                 true -> "CNODE_COOKIE= exec \"$0\" \"$@\" 2>\"$CN_ERR\" </dev/null";
                 false -> "exec \"$0\" \"$@\" 2>\"$CN_ERR\" </dev/null"
             end,
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", Script, cn_node:exe() | Args]},
                      {env, [{"CN_ERR", Err}, {"CNODE_COOKIE", false}
                             | Env -- [{"CNODE_COOKIE", ""}]]},
                      binary, exit_status, use_stdio]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    {Status, Out} = collect(Port, OsPid, <<>>, Ms),
    {ok, ErrText} = file:read_file(Err),
    ct:log("cnode ~p~n-> ~p~nstdout: ~s~nstderr: ~s",
           [Args, Status, Out, ErrText]),
    {Status, Out, ErrText}.

collect(Port, OsPid, Acc, Ms) ->
    receive
        {Port, {data, D}} -> collect(Port, OsPid, <<Acc/binary, D/binary>>, Ms);
        {Port, {exit_status, S}} -> {S, Acc}
    after Ms ->
            _ = os:cmd("kill -KILL " ++ integer_to_list(OsPid)),
            ct:fail({no_exit, Ms, Acc})
    end.

%% A file for the node's stderr, where test-erl-asan looks for sanitizer
%% reports ($CN_BUILD/test-erl/nodes/*.log).
new_log() ->
    Dir = filename:join([filename:dirname(cn_node:exe()), "test-erl", "nodes"]),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    filename:join(Dir, "cli" ++ cn_node:uniq() ++ ".log").

priv_tmp() ->
    Dir = filename:join([filename:dirname(cn_node:exe()), "test-erl", "cli"]),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

%% A refusal: status Status, nothing on stdout, and Want on stderr.  A bad
%% command line (2) is told in one line that starts with "cnode: "; a
%% startup failure (1) goes through the log, with a timestamp first.
refused(Status, Want, Args) ->
    refused(Status, Want, Args, []).

refused(Status, Want, Args, Env) ->
    {S, Out, Err} = run(Args, Env, 10000),
    ?assertEqual({Status, <<>>}, {S, Out}, {Args, Err}),
    case Status of
        2 -> ?assertMatch(<<"cnode: ", _/binary>>, Err, Args);
        1 -> ok
    end,
    ?assertNotEqual(nomatch, binary:match(Err, list_to_binary(Want)),
                    {Args, Want, Err}).

host() ->
    [_, H] = string:split(atom_to_list(node()), "@"),
    H.

name() ->
    "cli" ++ cn_node:uniq().

%% A cookie file holding Cookie, with mode Mode.
cookie_file(Cookie, Mode) ->
    F = filename:join(priv_tmp(), "cookie-" ++ cn_node:uniq()),
    ok = file:write_file(F, Cookie ++ "\n"),
    ok = file:change_mode(F, Mode),
    F.

%% Starts the node program under a port with Args and Env, waits for its
%% ready line and returns {Port, OsPid, Node}.
start_port(Args, Env) ->
    Err = new_log(),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>\"$CN_ERR\"",
                              cn_node:exe() | Args]},
                      {env, [{"CN_ERR", Err}, {"CNODE_COOKIE", false} | Env]},
                      {line, 1024}, binary, exit_status, use_stdio]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    receive
        {Port, {data, {eol, <<"cnode: ready as ", Rest/binary>>}}} ->
            [N | _] = binary:split(Rest, <<" ">>),
            {Port, OsPid, binary_to_atom(N), Err};
        {Port, {exit_status, S}} ->
            {ok, E} = file:read_file(Err),
            ct:fail({exited, S, E})
    after 20000 ->
            ct:fail(not_ready)
    end.

os_alive(OsPid) ->
    filelib:is_dir("/proc/" ++ integer_to_list(OsPid)).

%% Pings Node with Cookie and returns pong or pang; the cookie set for Node
%% is put back afterwards.
ping_with(Node, Cookie) ->
    true = erlang:set_cookie(Node, list_to_atom(Cookie)),
    R = net_adm:ping(Node),
    erlang:disconnect_node(Node),
    R.

stop_port(Port, OsPid) ->
    _ = os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
    receive {Port, {exit_status, S}} -> S
    after 10000 -> ct:fail(no_exit_after_sigterm)
    end.

%% ---- cases -----------------------------------------------------------------

%% --version prints "cnode MAJOR.MINOR.PATCH", the version in the headers,
%% and exits 0 without starting anything.
version(_Config) ->
    {0, Out, <<>>} = run(["--version"]),
    {ok, H} = file:read_file(filename:join([os:getenv("CN_ROOT", "."), "c_src",
                                            "include", "cnode", "common.h"])),
    V = [begin
             {match, [N]} = re:run(H, "#define CN_VERSION_" ++ Part ++ " ([0-9]+)",
                                   [{capture, all_but_first, binary}]),
             N
         end || Part <- ["MAJOR", "MINOR", "PATCH"]],
    Want = iolist_to_binary(["cnode ", lists:join(".", V), "\n"]),
    ?assertEqual(Want, Out).

help_lists_flags(_Config) ->
    {0, Out, <<>>} = run(["--help"]),
    [?assertNotEqual(nomatch, binary:match(Out, F), F)
     || F <- [<<"--cookie-file">>, <<"--start-epmd">>, <<"--epmd-port">>,
              <<"--stdin-eof">>, <<"--version">>, <<"CNODE_COOKIE">>]].

%% Names erl would refuse (and a second @, which erl takes into the host):
%% status 2, and the message says which rule the name breaks.
bad_names(_Config) ->
    [refused(2, Want, Args) || {Args, Want} <-
        [{["--sname", "a b"], "only letters, digits, _ and -"},
         {["--sname", ""], "the node name is empty"},
         {["--name", ""], "the node name is empty"},
         {["--sname", "a@b@c"], "one @ at most"},
         {["--name", "a@b.c@d"], "one @ at most"},
         {["--sname", "@host"], "nothing before the @"},
         {["--sname", "a.b"], "only letters, digits, _ and -"},
         {["--sname", "caf\x{e9}"], "only letters, digits, _ and -"},
         {["--sname", "a@h.example"], "no dots"},
         {["--sname", "a@ho st"], "printable ASCII without spaces"},
         {["--name", "a@h x.y"], "printable ASCII without spaces"},
         {["--sname", lists:duplicate(300, $a)], "longer than"}]],
    ok.

%% Names erl takes, checked with --no-dist (no epmd, no cookie): the ready
%% line shows the name made.
good_names(_Config) ->
    H = host(),
    [begin
         {Port, OsPid, Node, _} = start_port(Args ++ ["--no-dist"], []),
         ?assertEqual(list_to_atom(Want), Node),
         0 = stop_port(Port, OsPid)
     end || {Args, Want} <- [{["--sname", "a_b-C9"], "a_b-C9@" ++ H},
                             {["--sname", "x@"], "x@" ++ H},
                             {["--sname", "y@" ++ H], "y@" ++ H},
                             {["--name", "z@h.example"], "z@h.example"}]],
    ok.

conflicting_flags(_Config) ->
    [refused(2, Want, Args) || {Args, Want} <-
        [{["--sname", "a", "--name", "b@h.x"], "--sname or --name, not both"},
         {["--hidden", "--published"], "--hidden or --published, not both"},
         {["--cookie", "c", "--cookie-file", "/nonexistent"],
          "--cookie or --cookie-file, not both"},
         {["--no-dist", "--port", "4000"], "--port is for distribution"},
         {["--no-dist", "--cookie", "c"], "--cookie is for distribution"},
         {["--no-dist", "--cookie-file", "/x"], "--cookie-file is for distribution"},
         {["--no-dist", "--published"], "--published is for distribution"},
         {["--no-dist", "--hidden"], "--hidden is for distribution"},
         {["--no-dist", "--listen", "127.0.0.1"], "--listen is for distribution"},
         {["--no-dist", "--ticktime", "5"], "--ticktime is for distribution"},
         {["--no-dist", "--start-epmd", "false"], "--start-epmd is for distribution"},
         {["--no-dist", "--epmd-port", "4369"], "--epmd-port is for distribution"},
         {["--no-dist", "--coalesce-max-us", "100"],
          "--coalesce-max-us is for distribution"}]],
    ok.

bad_values(_Config) ->
    [refused(2, Want, Args) || {Args, Want} <-
        [{["--start-epmd", "maybe"], "--start-epmd wants true or false"},
         {["--epmd-port", "0"], "--epmd-port wants 1..65535"},
         {["--epmd-port", "70000"], "--epmd-port wants 1..65535"},
         {["--cookie-file", ""], "--cookie-file wants a path"},
         {["--cookie-file"], "--cookie-file needs an argument"},
         {["--cookie", ""], "--cookie wants 1 to 255 bytes"},
         {["--sname", "a", "extra"], "unexpected argument 'extra'"},
         {["--stdin-eof=yes"], "--stdin-eof"},
         {["--coalesce-max-us", "-1"], "--coalesce-max-us wants 0..100000"},
         {["--coalesce-max-us", "100001"], "--coalesce-max-us wants 0..100000"}]],
    ok.

%% --cookie-file PATH: the node uses the cookie in it; a caller with
%% another cookie gets pang.
cookie_file(_Config) ->
    Cookie = "cf" ++ cn_node:uniq(),
    F = cookie_file(Cookie, 8#400),
    {Port, OsPid, Node, _} = start_port(["--sname", name(), "--cookie-file", F], []),
    pang = ping_with(Node, "wrong"),
    pong = ping_with(Node, Cookie),
    0 = stop_port(Port, OsPid).

%% A cookie file erl would refuse, or none: status 1 (the command line was
%% fine), with the library's reason.
cookie_file_refused(_Config) ->
    Open = cookie_file("open", 8#644),
    Empty = cookie_file("", 8#400),
    Missing = filename:join(priv_tmp(), "no-such-cookie"),
    [refused(1, Want, ["--sname", name(), "--cookie-file", F])
     || {F, Want} <- [{Open, "accessible by owner only"},
                      {Empty, "holds no cookie"},
                      {Missing, "no cookie file"},
                      {priv_tmp(), "not a regular file"}]],
    ok.

%% CNODE_COOKIE: the node uses it, and it is gone from the node's
%% environment (/proc/PID/environ) once read.
cookie_env(_Config) ->
    Cookie = "ce" ++ cn_node:uniq(),
    {Port, OsPid, Node, _} = start_port(["--sname", name()],
                                        [{"CNODE_COOKIE", Cookie}]),
    {ok, Environ} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/environ"),
    ?assertEqual(nomatch, binary:match(Environ, list_to_binary(Cookie))),
    pong = ping_with(Node, Cookie),
    0 = stop_port(Port, OsPid).

cookie_env_bad(_Config) ->
    refused(2, "$CNODE_COOKIE wants 1 to 255 bytes", ["--sname", name()],
            [{"CNODE_COOKIE", ""}]),
    refused(2, "$CNODE_COOKIE wants 1 to 255 bytes", ["--sname", name()],
            [{"CNODE_COOKIE", lists:duplicate(256, $k)}]).

%% A flag wins over the environment, which is still cleared.
cookie_env_loses_to_flag(_Config) ->
    Cookie = "cfl" ++ cn_node:uniq(),
    F = cookie_file(Cookie, 8#400),
    {Port, OsPid, Node, _} = start_port(["--sname", name(), "--cookie-file", F],
                                        [{"CNODE_COOKIE", "envcookie"}]),
    {ok, Environ} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/environ"),
    ?assertEqual(nomatch, binary:match(Environ, <<"envcookie">>)),
    pang = ping_with(Node, "envcookie"),
    pong = ping_with(Node, Cookie),
    0 = stop_port(Port, OsPid).

%% --cookie still works, logs a warning, and is blanked in the command line
%% that ps shows.
cookie_flag_warns(_Config) ->
    Cookie = "cw" ++ cn_node:uniq(),
    {Port, OsPid, Node, Err} = start_port(["--sname", name(), "--cookie", Cookie], []),
    pong = ping_with(Node, Cookie),
    {ok, Cmdline} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/cmdline"),
    ?assertEqual(nomatch, binary:match(Cmdline, list_to_binary(Cookie))),
    0 = stop_port(Port, OsPid),
    {ok, Log} = file:read_file(Err),
    ?assertNotEqual(nomatch, binary:match(Log, <<"warning cnode: the cookie given with --cookie is visible">>)).

%% --start-epmd false with no epmd at --epmd-port: status 1 and nothing
%% listens there afterwards (no epmd was started).
start_epmd_false(_Config) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Free} = inet:port(L),
    ok = gen_tcp:close(L),
    refused(1, "epmd could not be reached",
            ["--sname", name(), "--cookie-file", cookie_file("x", 8#400),
             "--start-epmd", "false", "--epmd-port", integer_to_list(Free)]),
    {error, econnrefused} = gen_tcp:connect({127, 0, 0, 1}, Free, [], 2000).

%% --stdin-eof: the end of stdin stops the node cleanly (status 0).
stdin_eof_stops(_Config) ->
    F = cookie_file("x", 8#400),
    Cmd = "sleep 1 | \"" ++ cn_node:exe() ++ "\" --sname " ++ name() ++
        " --cookie-file " ++ F ++ " --stdin-eof 2>>" ++ new_log() ++ "; echo status=$?",
    T0 = erlang:monotonic_time(),
    Out = os:cmd(Cmd),
    ct:log("~s", [Out]),
    {match, _} = re:run(Out, "^cnode: ready as \\S+ on port [0-9]+\nstatus=0\n$"),
    ?assert(cn_node:elapsed_ms(T0) < 8000).

%% As an Erlang port: closing the port (what happens when its owner dies)
%% makes the node exit.
stdin_eof_port_close(_Config) ->
    {Port, OsPid, Node, Err} =
        start_port(["--sname", name(), "--cookie-file", cookie_file("x", 8#400),
                    "--stdin-eof"], []),
    pong = ping_with(Node, "x"),
    true = port_close(Port),
    ok = cn_node:wait_until(fun() -> not os_alive(OsPid) end, 5000),
    {ok, Log} = file:read_file(Err),
    ?assertNotEqual(nomatch, binary:match(Log, <<"stdin reached its end">>)),
    ?assertNotEqual(nomatch, binary:match(Log, <<"info cnode: stopped">>)),
    ?assertEqual(nomatch, binary:match(Log, <<"SIGTERM: stopping">>)).

%% With --stdin-eof, SIGTERM still stops the node with status 0, and so
%% does the end of stdin that follows it (the port closing after the
%% signal): the watcher's late signal must not kill the program.
stdin_eof_sigterm(_Config) ->
    F = cookie_file("x", 8#400),
    Cmd = "(sleep 2; echo) | \"" ++ cn_node:exe() ++ "\" --sname " ++ name() ++
        " --cookie-file " ++ F ++ " --stdin-eof 2>>" ++ new_log() ++
        " & P=$!; sleep 1; kill -TERM $P; wait $P; echo status=$?",
    Out = os:cmd(Cmd),
    ct:log("~s", [Out]),
    {match, _} = re:run(Out, "status=0\n$"),
    {Port, OsPid, _, _} =
        start_port(["--sname", name(), "--cookie-file", F, "--stdin-eof"], []),
    0 = stop_port(Port, OsPid).

%% Without the flag, the end of stdin changes nothing.
no_stdin_eof_keeps_running(_Config) ->
    F = cookie_file("y", 8#400),
    Log = new_log(),
    Cmd = "\"" ++ cn_node:exe() ++ "\" --sname " ++ name() ++ " --cookie-file " ++ F ++
        " </dev/null 2>>" ++ Log ++ " & P=$!; sleep 1.5; kill -0 $P && echo alive; "
        "kill -TERM $P; wait $P; echo status=$?",
    Out = os:cmd(Cmd),
    ct:log("~s", [Out]),
    {match, _} = re:run(Out, "alive\nstatus=0\n$"),
    %% An operator's signal is logged as such.
    {ok, Text} = file:read_file(Log),
    {match, _} = re:run(Text, "Z info cnode: SIGTERM: stopping\n", [multiline]).
