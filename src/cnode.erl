%% cnode: the node program as a child of your supervisor.
%%
%% cnode:start_link(Opts) starts the node program (priv/cnode) as a port,
%% with --stdin-eof, and returns {ok, Pid} once the node has printed its
%% ready line (and, when this VM is distributed, answered a ping).  The
%% two sides are linked both ways:
%%   - the C process dies (a crash, kill -9, its supervisor giving up):
%%     the port reports its exit status and Pid exits with
%%     {cnode_exit, Status}, so your supervisor restarts it;
%%   - Pid dies or is stopped: the port closes, the node reads the end of
%%     its stdin and stops cleanly; terminate/2 waits (up to the child
%%     spec's shutdown) for it to be gone, so that a restart can take the
%%     same node name in epmd.
%%
%% Options (a proplist, an Elixir keyword list or a map):
%%   sname | name   the node name, string or atom, as the program's
%%                  --sname and --name (default: "cnode", a long name
%%                  when this VM runs with long names, else a short one)
%%   cookie         atom or string (or a fun returning one); default
%%                  erlang:get_cookie() when this VM is distributed, else
%%                  the node's own default (~/.erlang.cookie).  Passed in
%%                  the environment (CNODE_COOKIE), never on a command
%%                  line; this VM uses it for that node (set_cookie/2)
%%   log_level      error | warning | info | debug: what the node logs
%%   log_file       a file the node's log (its stderr) is appended to;
%%                  default: this VM's stderr
%%   extra_args     more command-line flags, a list of strings
%%                  (["--max-message", "10M", "--published"])
%%   config         a --config file (string): its node settings and the
%%                  modules it names (the options given here win)
%%   modules        server modules to load and start (--load), a list of
%%                  paths to shared objects (cnode/module.h)
%%   exe            the node program to run (default: $CNODE_EXE when
%%                  set, else priv/cnode of the application cnode)
%%   start_timeout  milliseconds to wait for the ready line (20000)
%%   id             the child id in child_spec/1 (default cnode)
%%
%% node_name(Pid) is the node to call: gen_server:call({kv, Node}, Req).
%% dist_stats(Pid | Node) reads the node's distribution counters.
-module(cnode).
-behaviour(gen_server).

-export([start_link/1, child_spec/1, node_name/1, os_pid/1, stop/1,
         exe/1, dist_stats/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-define(START_TIMEOUT, 20000).
-define(SHUTDOWN, 10000).
-define(EPMD_WAIT, 5000).

%% ---- API ---------------------------------------------------------------

%% Starts the node and links it to the caller; see the top of this file.
%% Returns {ok, Pid} once the node serves, or {error, Reason}:
%% {no_node_program, Tried}, {exited_before_ready, Status, Stdout},
%% {not_ready, Ms}, {no_pong, Node}, {bad_option, Opt}.
-spec start_link(list() | map()) -> {ok, pid()} | {error, term()}.
start_link(Opts) ->
    gen_server:start_link(?MODULE, to_map(Opts), []).

%% A child spec for supervisor:start_link/2 and Elixir's {:cnode, opts}.
-spec child_spec(list() | map()) -> supervisor:child_spec().
child_spec(Opts) ->
    M = to_map(Opts),
    %% The start arguments show in the supervisor's reports: the cookie
    %% goes in them inside a fun, which prints as #Fun<...>.
    Hidden = case maps:find(cookie, M) of
                 {ok, C} when not is_function(C) ->
                     M#{cookie := fun() -> C end};
                 _ -> M
             end,
    #{id => maps:get(id, M, cnode),
      start => {?MODULE, start_link, [Hidden]},
      restart => permanent,
      shutdown => ?SHUTDOWN,
      type => worker,
      modules => [?MODULE]}.

%% The node's name, as an atom: the node to call.
-spec node_name(pid()) -> node().
node_name(Pid) ->
    gen_server:call(Pid, node_name).

%% The OS pid of the node program.
-spec os_pid(pid()) -> non_neg_integer().
os_pid(Pid) ->
    gen_server:call(Pid, os_pid).

%% The node's distribution counters since it started (frames, bytes,
%% fragments, dropped and refused messages, failed handshakes, times a
%% connection became busy) and what it holds now (nodes_up, links,
%% monitors, queued), as a map: the C API's cn_dist_stats, read by
%% erpc:call(Node, cnode, dist_stats, []).  Takes the pid start_link
%% returned or the node's name; works for any cnode node.
-spec dist_stats(pid() | node()) -> #{atom() => non_neg_integer()}.
dist_stats(Pid) when is_pid(Pid) ->
    dist_stats(node_name(Pid));
dist_stats(Node) when is_atom(Node) ->
    erpc:call(Node, cnode, dist_stats, [], 5000).

%% Stops the node cleanly (and Pid with it).
-spec stop(pid()) -> ok.
stop(Pid) ->
    gen_server:stop(Pid, normal, ?SHUTDOWN + 5000).

%% The node program start_link would run with Opts: {ok, Path} or
%% {error, {no_node_program, Tried}}.  An exe option that names no file is
%% an error, not a reason to look elsewhere.
-spec exe(list() | map()) -> {ok, file:filename()} | {error, term()}.
exe(Opts) ->
    M = to_map(Opts),
    Tried = case maps:find(exe, M) of
                {ok, E} -> [str(E)];
                error -> [P || P <- [os:getenv("CNODE_EXE"), priv_exe()],
                               P =/= false]
            end,
    case [P || P <- Tried, filelib:is_regular(P)] of
        [P | _] -> {ok, P};
        [] -> {error, {no_node_program, Tried}}
    end.

%% ---- gen_server --------------------------------------------------------

init(Opts) ->
    process_flag(trap_exit, true),
    try args(Opts) of
        {Exe, Args, Env, {Kind, Name}} ->
            ok = wait_name_free(Kind, Name),
            Port = open(Exe, Args, Env, maps:get(log_file, Opts, false)),
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            Timeout = maps:get(start_timeout, Opts, ?START_TIMEOUT),
            %% The state keeps no cookie: it would show in crash reports.
            wait_ready(#{port => Port, os_pid => OsPid},
                       maps:get(cookie, Opts, {default}), Timeout, [])
    catch
        throw:Reason -> {stop, Reason}
    end.

handle_call(node_name, _From, S = #{node := Node}) ->
    {reply, Node, S};
handle_call(os_pid, _From, S = #{os_pid := OsPid}) ->
    {reply, OsPid, S};
handle_call(_Req, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({Port, {exit_status, Status}}, S = #{port := Port}) ->
    {stop, {cnode_exit, Status}, S#{port := closed}};
handle_info({Port, {data, _}}, S = #{port := Port}) ->
    %% Nothing but the ready line is printed on stdout.
    {noreply, S};
handle_info({'EXIT', Port, Reason}, S = #{port := Port}) ->
    {stop, {cnode_port_exit, Reason}, S#{port := closed}};
handle_info(_Msg, S) ->
    {noreply, S}.

%% Closing the port closes the node's stdin: it stops cleanly
%% (--stdin-eof).  Wait for it to be gone, so that whoever starts the next
%% node of that name finds the name free in epmd; SIGKILL when it lingers.
terminate(_Reason, #{port := closed}) ->
    ok;
terminate(_Reason, #{port := Port, os_pid := OsPid}) ->
    catch port_close(Port),
    case wait_gone(OsPid, ?SHUTDOWN - 1000) of
        ok -> ok;
        timeout -> _ = os:cmd("kill -KILL " ++ integer_to_list(OsPid)), ok
    end.

%% ---- internals ---------------------------------------------------------

to_map(M) when is_map(M) -> M;
to_map(L) when is_list(L) -> maps:from_list(proplists:unfold(L)).

str(F) when is_function(F, 0) -> str(F());
str(A) when is_atom(A) -> atom_to_list(A);
str(B) when is_binary(B) -> binary_to_list(B);
str(L) when is_list(L) -> L;
str(Other) -> throw({bad_option, Other}).

priv_exe() ->
    case code:priv_dir(cnode) of
        {error, _} -> false;
        Dir -> filename:join(Dir, "cnode")
    end.

%% {Exe, Args, Env, {sname | name, Name}} for the options, or throws.
args(Opts) ->
    Exe = case exe(Opts) of
              {ok, P} -> P;
              {error, E} -> throw(E)
          end,
    {Kind, Name} =
        case {maps:find(sname, Opts), maps:find(name, Opts)} of
            {{ok, _}, {ok, _}} -> throw({bad_option, {sname_and_name}});
            {{ok, N}, error} -> {sname, str(N)};
            {error, {ok, N}} -> {name, str(N)};
            {error, error} ->
                %% A node this VM can reach: a long name for a VM of long
                %% names.
                case is_alive() andalso net_kernel:longnames() of
                    true -> {name, "cnode"};
                    false -> {sname, "cnode"}
                end
        end,
    LogLevel = case maps:find(log_level, Opts) of
                   {ok, L} -> ["--log-level", str(L)];
                   error -> []
               end,
    Extra = [str(A) || A <- maps:get(extra_args, Opts, [])],
    Config = case maps:find(config, Opts) of
                 {ok, F} -> ["--config", str(F)];
                 error -> []
             end,
    Load = lists:append([["--load", str(P)] || P <- maps:get(modules, Opts, [])]),
    Cookie = case maps:find(cookie, Opts) of
                 {ok, C} -> str(C);
                 error ->
                     case erlang:get_cookie() of
                         nocookie -> false;
                         C -> atom_to_list(C)
                     end
             end,
    Args = Config ++ ["--" ++ atom_to_list(Kind), Name, "--stdin-eof"]
        ++ LogLevel ++ Load ++ Extra,
    {Exe, Args, [{"CNODE_COOKIE", Cookie}], {Kind, Name}}.

%% The port.  With a log file, /bin/sh appends stderr to it and execs the
%% program, so that the port's OS pid is still the node's own.
open(Exe, Args, Env, false) ->
    open_port({spawn_executable, Exe},
              [{args, Args}, {env, Env}, {line, 4096}, binary, exit_status,
               use_stdio]);
open(Exe, Args, Env, LogFile) ->
    open_port({spawn_executable, "/bin/sh"},
              [{args, ["-c", "exec \"$0\" \"$@\" 2>>\"$CNODE_LOG_FILE\"",
                       Exe | Args]},
               {env, [{"CNODE_LOG_FILE", str(LogFile)} | Env]},
               {line, 4096}, binary, exit_status, use_stdio]).

%% A node of this name that has just died (kill -9) may still be in epmd
%% for a moment; starting now would find the name taken.  Wait for it to
%% go, a few seconds at most (a live node of that name then makes the
%% start fail as it would have anyway).
wait_name_free(_Kind, Name) ->
    %% Without a host, the node registers with the epmd of this machine.
    {Alive, Host} = case string:split(Name, "@") of
                        [A, H] when H =/= "" -> {A, H};
                        [A | _] -> {A, "localhost"}
                    end,
    Deadline = erlang:monotonic_time(millisecond) + ?EPMD_WAIT,
    wait_name_free(Alive, Host, Deadline).

wait_name_free(Alive, Host, Deadline) ->
    case catch erl_epmd:port_please(Alive, Host, 1000) of
        {port, _, _} ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> ok;
                false -> timer:sleep(50), wait_name_free(Alive, Host, Deadline)
            end;
        _ ->
            ok
    end.

wait_ready(S = #{port := Port}, Cookie, Timeout, Lines) ->
    receive
        {Port, {data, {eol, <<"cnode: ready as ", Rest/binary>>}}} ->
            [N | _] = binary:split(Rest, <<" ">>),
            Node = binary_to_atom(N, utf8),
            ready(S#{node => Node}, Cookie);
        {Port, {data, {eol, Line}}} ->
            wait_ready(S, Cookie, Timeout, [Line | Lines]);
        {Port, {data, {noeol, Part}}} ->
            wait_ready(S, Cookie, Timeout, [Part | Lines]);
        {Port, {exit_status, Status}} ->
            {stop, {exited_before_ready, Status, lists:reverse(Lines)}}
    after Timeout ->
            terminate(not_ready, S),
            {stop, {not_ready, Timeout}}
    end.

%% When this VM is distributed, the node must answer a ping (with the
%% cookie it was given) before start_link returns.
ready(S = #{node := Node}, Cookie) ->
    case is_alive() of
        false ->
            {ok, S};
        true ->
            case Cookie of
                {default} -> ok;
                C -> erlang:set_cookie(Node, list_to_atom(str(C)))
            end,
            case net_adm:ping(Node) of
                pong ->
                    {ok, S};
                pang ->
                    terminate(no_pong, S),
                    {stop, {no_pong, Node}}
            end
    end.

wait_gone(OsPid, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    wait_gone_loop(OsPid, Deadline).

wait_gone_loop(OsPid, Deadline) ->
    case filelib:is_dir("/proc/" ++ integer_to_list(OsPid)) of
        false -> ok;
        true ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> timeout;
                false -> timer:sleep(20), wait_gone_loop(OsPid, Deadline)
            end
    end.
