%% cn_node: starts and stops the real node program ($CN_BUILD/cnode) for
%% the Common Test suites, and the small helpers they share.
%%
%% Each node gets a unique name and a unique cookie.  The program runs under
%% a holder process of its own (so it outlives the init_per_suite process
%% that asked for it), with its stdout on a port and its stderr appended to
%% a log file ($CN_BUILD/test-erl/nodes/NAME.log).  start/0,1 returns when
%% the node has printed its one "ready as" line.  stop/1 sends SIGTERM to
%% the node's own OS pid, and only to it, and waits for its exit status;
%% kill/1 sends SIGKILL.
-module(cn_node).

-export([ensure_dist/0, uniq/0, exe/0,
         start/0, start/1, stop/1, kill/1, wait_exit/2, stdout/1,
         node_name/1, cookie/1, port/1, os_pid/1, log_file/1,
         call/3, call/4, echo_pid/1, wait_restarted/2, wait_restarted/3,
         flush/0, flush/1, elapsed_ms/1, wait_until/2]).

-define(READY_TIMEOUT, 20000).
-define(STOP_TIMEOUT, 10000).

%% ---- The test node's own distribution ------------------------------------

%% Makes the node running the tests a distributed node (short names) with a
%% unique name, starting epmd first.  Does nothing when it already is one.
ensure_dist() ->
    case node() of
        'nonode@nohost' ->
            _ = os:cmd("epmd -daemon"),
            Name = list_to_atom("ct" ++ uniq()),
            case net_kernel:start([Name, shortnames]) of
                {ok, _} -> ok;
                {error, Reason} -> error({net_kernel_start, Reason})
            end;
        _ ->
            ok
    end.

%% A string unique among every test run on this machine: a counter of this
%% VM followed by its OS pid.
uniq() ->
    integer_to_list(erlang:unique_integer([positive])) ++ "_" ++ os:getpid().

%% The node program under test.
exe() ->
    Build = case os:getenv("CN_BUILD") of
                false ->
                    case os:getenv("CN_ROOT") of
                        false -> error("neither CN_BUILD nor CN_ROOT is set");
                        Root -> filename:join([Root, "build", "release"])
                    end;
                B ->
                    B
            end,
    filename:join(Build, "cnode").

%% ---- Starting and stopping the node ---------------------------------------

start() ->
    start(#{}).

%% Options: name (the short name, default "cn" ++ uniq()), cookie (default
%% random), args (more command-line arguments), log_dir, owner (a pid: when
%% it dies, the node is killed if it still runs; test cases that start a
%% node of their own pass self(), so that a failing or timed-out case
%% leaves nothing behind), wrapper (a command and its arguments that run
%% the node program, such as ["valgrind", "--leak-check=full"]; it must
%% exec the program in its own process, so that os_pid stays the node's),
%% ready_timeout and stop_timeout (milliseconds, for slow wrappers).
%% Returns a map: node, cookie (atom), port, os_pid, holder, log.
start(Opts) ->
    ok = ensure_dist(),
    Name = maps:get(name, Opts, "cn" ++ uniq()),
    Cookie = maps:get(cookie, Opts, random_cookie()),
    %% The cookie goes through CNODE_COOKIE, which the node reads and then
    %% removes from its environment: never on a command line (ps).
    Args = ["--sname", Name] ++ maps:get(args, Opts, []),
    LogDir = maps:get(log_dir, Opts, default_log_dir()),
    Log = filename:join(LogDir, Name ++ ".log"),
    ok = filelib:ensure_dir(Log),
    Exe = exe(),
    case filelib:is_regular(Exe) of
        true -> ok;
        false -> error({no_node_program, Exe})
    end,
    Parent = self(),
    Owner = maps:get(owner, Opts, none),
    Cmd = maps:get(wrapper, Opts, []) ++ [Exe | Args],
    ReadyTimeout = maps:get(ready_timeout, Opts, ?READY_TIMEOUT),
    StopTimeout = maps:get(stop_timeout, Opts, ?STOP_TIMEOUT),
    Holder = spawn(fun() ->
                           holder_init(Parent, Cmd, Cookie, Log, Owner,
                                       StopTimeout)
                   end),
    MRef = erlang:monitor(process, Holder),
    receive
        {Holder, ready, Node, Port, OsPid} ->
            erlang:demonitor(MRef, [flush]),
            true = erlang:set_cookie(Node, list_to_atom(Cookie)),
            #{node => Node, cookie => list_to_atom(Cookie), port => Port,
              os_pid => OsPid, holder => Holder, log => Log, name => Name,
              stop_timeout => StopTimeout};
        {Holder, failed, Why} ->
            erlang:demonitor(MRef, [flush]),
            error({cnode_start_failed, Why, {log, Log, read_log(Log)}});
        {'DOWN', MRef, process, Holder, Reason} ->
            error({cnode_holder_died, Reason, {log, Log, read_log(Log)}})
    after ReadyTimeout ->
            erlang:demonitor(MRef, [flush]),
            _ = kill(#{holder => Holder}),
            error({cnode_not_ready, ReadyTimeout,
                   {log, Log, read_log(Log)}})
    end.

%% Sends SIGTERM to the node and waits for it to exit.  Returns {ok,
%% Status}: the node stopped cleanly when Status is 0.
stop(CN = #{holder := Holder}) ->
    holder_req(Holder, {signal, "TERM"}, stop_timeout(CN) + 2000).

%% Sends SIGKILL to the node and waits for it to exit.
kill(CN = #{holder := Holder}) ->
    holder_req(Holder, {signal, "KILL"}, stop_timeout(CN) + 2000).

stop_timeout(CN) ->
    maps:get(stop_timeout, CN, ?STOP_TIMEOUT).

%% Waits up to Ms for the node to exit on its own: {ok, Status} or timeout.
wait_exit(#{holder := Holder}, Ms) ->
    holder_req(Holder, {wait_exit, Ms}, Ms + 2000).

%% Every line the node printed on stdout so far.
stdout(#{holder := Holder}) ->
    holder_req(Holder, stdout, 5000).

node_name(#{node := N}) -> N.
cookie(#{cookie := C}) -> C.
port(#{port := P}) -> P.
os_pid(#{os_pid := P}) -> P.
log_file(#{log := L}) -> L.

default_log_dir() ->
    filename:join([filename:dirname(exe()), "test-erl", "nodes"]).

random_cookie() ->
    "ck" ++ string:lowercase(binary_to_list(
                               binary:encode_hex(crypto:strong_rand_bytes(12)))).

read_log(Log) ->
    case file:read_file(Log) of
        {ok, B} when byte_size(B) > 4000 ->
            binary:part(B, byte_size(B) - 4000, 4000);
        {ok, B} -> B;
        Error -> Error
    end.

holder_req(Holder, Req, Timeout) ->
    MRef = erlang:monitor(process, Holder),
    Holder ! {req, self(), MRef, Req},
    receive
        {MRef, Reply} ->
            erlang:demonitor(MRef, [flush]),
            Reply;
        {'DOWN', MRef, process, Holder, Reason} ->
            {error, {holder_down, Reason}}
    after Timeout ->
            erlang:demonitor(MRef, [flush]),
            {error, timeout}
    end.

%% ---- The holder ------------------------------------------------------------

%% The node program runs under /bin/sh only long enough for the shell to
%% redirect stderr to the log and exec it, so the port's OS pid is the
%% node's own pid.
holder_init(Parent, [Exe | Args], Cookie, Log, Owner, StopTimeout) ->
    OwnerRef = case Owner of
                   none -> none;
                   _ -> erlang:monitor(process, Owner)
               end,
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>>\"$CN_NODE_LOG\"",
                              Exe | Args]},
                      {env, [{"CN_NODE_LOG", Log}, {"CNODE_COOKIE", Cookie}]},
                      {line, 4096}, binary, exit_status, use_stdio]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    S = #{port => Port, os_pid => OsPid, lines => [], partial => <<>>,
          exited => false, waiters => [], log => Log, owner => OwnerRef,
          stop_timeout => StopTimeout},
    holder_wait_ready(Parent, S).

holder_wait_ready(Parent, S = #{port := Port}) ->
    receive
        {Port, {data, {eol, Line}}} ->
            S1 = add_line(Line, S),
            case ready_line(Line) of
                {ok, Node, PortNo} ->
                    Parent ! {self(), ready, Node, PortNo,
                              integer_to_list(maps:get(os_pid, S))},
                    holder_loop(S1);
                nomatch ->
                    holder_wait_ready(Parent, S1)
            end;
        {Port, {data, {noeol, Part}}} ->
            holder_wait_ready(Parent, add_partial(Part, S));
        {Port, {exit_status, Status}} ->
            Parent ! {self(), failed, {exited_before_ready, Status,
                                       stdout, lists:reverse(maps:get(lines, S))}},
            holder_loop(S#{exited := {ok, Status}});
        {req, From, Ref, Req} ->
            holder_loop(handle_req(From, Ref, Req, S))
    end.

holder_loop(S = #{port := Port}) ->
    receive
        {Port, {data, {eol, Line}}} ->
            holder_loop(add_line(Line, S));
        {Port, {data, {noeol, Part}}} ->
            holder_loop(add_partial(Part, S));
        {Port, {exit_status, Status}} ->
            [W ! {Ref, {ok, Status}} || {W, Ref} <- maps:get(waiters, S)],
            holder_loop(S#{exited := {ok, Status}, waiters := []});
        {req, From, Ref, Req} ->
            holder_loop(handle_req(From, Ref, Req, S));
        {'DOWN', OwnerRef, process, _, _} when OwnerRef =:= map_get(owner, S) ->
            %% The test case that owns the node is gone: so is the node.
            case maps:get(exited, S) of
                false -> kill_os_pid("KILL", S);
                _ -> ok
            end,
            holder_loop(S);
        {wait_timeout, From, Ref, Kind} ->
            case lists:member({From, Ref}, maps:get(waiters, S)) of
                true when Kind =:= signal ->
                    %% The node ignored SIGTERM: do not leave it behind.
                    kill_os_pid("KILL", S),
                    From ! {Ref, {error, no_exit_after_signal}},
                    holder_loop(S#{waiters := maps:get(waiters, S) -- [{From, Ref}]});
                true ->
                    From ! {Ref, {error, timeout}},
                    holder_loop(S#{waiters := maps:get(waiters, S) -- [{From, Ref}]});
                false ->
                    holder_loop(S)
            end
    end.

kill_os_pid(Sig, #{os_pid := OsPid}) ->
    _ = os:cmd("kill -" ++ Sig ++ " " ++ integer_to_list(OsPid)),
    ok.

handle_req(From, Ref, stdout, S) ->
    From ! {Ref, lists:reverse(maps:get(lines, S))},
    S;
handle_req(From, Ref, _Req, S = #{exited := {ok, Status}}) ->
    From ! {Ref, {ok, Status}},
    S;
handle_req(From, Ref, {signal, Sig}, S) ->
    kill_os_pid(Sig, S),
    erlang:send_after(maps:get(stop_timeout, S), self(),
                      {wait_timeout, From, Ref, signal}),
    S#{waiters := [{From, Ref} | maps:get(waiters, S)]};
handle_req(From, Ref, {wait_exit, Ms}, S) ->
    erlang:send_after(Ms, self(), {wait_timeout, From, Ref, wait}),
    S#{waiters := [{From, Ref} | maps:get(waiters, S)]}.

add_line(Line, S = #{partial := Part, lines := Lines}) ->
    S#{partial := <<>>, lines := [<<Part/binary, Line/binary>> | Lines]}.

add_partial(P, S = #{partial := Part}) ->
    S#{partial := <<Part/binary, P/binary>>}.

ready_line(Line) ->
    case re:run(Line, "ready as (\\S+) on port ([0-9]+)",
                [{capture, all_but_first, list}]) of
        {match, [Node, Port]} ->
            {ok, list_to_atom(Node), list_to_integer(Port)};
        nomatch ->
            nomatch
    end.

%% ---- Helpers for the suites -------------------------------------------------

%% gen_server:call to the registered Name on Node.
call(Node, Name, Req) ->
    gen_server:call({Name, Node}, Req).

call(Node, Name, Req, Timeout) ->
    gen_server:call({Name, Node}, Req, Timeout).

%% The pid of echo on Node.
echo_pid(Node) ->
    gen_server:call({echo, Node}, pid, 5000).

%% Waits until the supervisor has restarted echo on Node: echo answers
%% `pid` with a pid other than Old.  Returns the new pid.
wait_restarted(Node, Old) ->
    wait_restarted(Node, Old, 5000).

wait_restarted(Node, Old, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    wait_restarted_loop(Node, Old, Deadline).

wait_restarted_loop(Node, Old, Deadline) ->
    R = (catch gen_server:call({echo, Node}, pid, 1000)),
    case R of
        P when is_pid(P), P =/= Old ->
            P;
        _ ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({echo_not_restarted, Old, R});
                false -> timer:sleep(10), wait_restarted_loop(Node, Old, Deadline)
            end
    end.

%% The messages in the mailbox, now or within Ms.
flush() ->
    flush(0).

flush(Ms) ->
    receive M -> [M | flush(0)]
    after Ms -> []
    end.

%% Milliseconds since T0 (erlang:monotonic_time/0 units).
elapsed_ms(T0) ->
    erlang:convert_time_unit(erlang:monotonic_time() - T0, native, millisecond).

%% Polls Fun every 10 ms until it returns true, for at most Ms.
wait_until(Fun, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    wait_until_loop(Fun, Deadline).

wait_until_loop(Fun, Deadline) ->
    case Fun() of
        true -> ok;
        _ ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error(wait_until_timeout);
                false -> timer:sleep(10), wait_until_loop(Fun, Deadline)
            end
    end.
