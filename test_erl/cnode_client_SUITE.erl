%% cnode_client_SUITE: `cnode call`, `cnode cast` and `cnode ping`, the client
%% for shell scripts, against a real C node and against this BEAM node.
%%
%% Each case runs the program as a shell would (its output and exit status
%% through a port), with the cookie in $CNODE_COOKIE, and checks what it
%% printed and its exit status: 0 with an answer, and a distinct status for
%% each failure (2 bad term, 3 timeout, 4 noproc, 5 nodedown, 6 cookie
%% refused, 7 the server exited, 8 refused as too large).
-module(cnode_client_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).
-export([call_and_cast_c_node/1, call_beam_server/1, ping/1,
         exit_statuses/1, refused_cookie/1, too_large/1]).

%% Run in the CT node as the BEAM server the client calls.
-export([beam_server/0]).

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [call_and_cast_c_node, call_beam_server, ping, exit_statuses,
     refused_cookie, too_large].

init_per_suite(Config) ->
    ok = cn_node:ensure_dist(),
    Config.

end_per_suite(_Config) ->
    ok.

%% Runs `cnode Args...` with CNODE_COOKIE=Cookie; returns {Status, Output}
%% (stdout and stderr together).
cli(Cookie, Args) ->
    Port = open_port({spawn_executable, cn_node:exe()},
                     [{args, Args}, exit_status, stderr_to_stdout, binary,
                      {env, [{"CNODE_COOKIE", atom_to_list(Cookie)}]}]),
    collect(Port, <<>>).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, St}} -> {St, binary_to_list(Acc)}
    after 30000 -> ct:fail({cli_hangs, Acc})
    end.

node_arg(CN) -> atom_to_list(cn_node:node_name(CN)).

call_and_cast_c_node(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    C = cn_node:cookie(CN),
    N = node_arg(CN),
    {0, "ok\n"} = cli(C, ["call", "--node", N, "kv",
                          "{put, <<\"a\">>, [1, 2, {x, 1.5}, \"str\"]}"]),
    {0, "{ok,[1,2,{x,1.5},[115,116,114]]}\n"} =
        cli(C, ["call", "--node", N, "kv", "{get, <<\"a\">>}."]),
    %% The reply is what the BEAM gets.
    {ok, [1, 2, {x, 1.5}, "str"]} =
        gen_server:call({kv, cn_node:node_name(CN)}, {get, <<"a">>}),
    %% A cast is delivered before the client exits.
    {0, ""} = cli(C, ["cast", "--node", N, "kv", "{put, b, 16#ff}"]),
    {ok, 255} = gen_server:call({kv, cn_node:node_name(CN)}, {get, b}),
    {ok, 0} = cn_node:stop(CN).

beam_server() ->
    Parent = self(),
    Pid = spawn(fun() ->
                        register(cli_beam_srv, self()),
                        Parent ! registered,
                        beam_loop()
                end),
    receive registered -> Pid end.

beam_loop() ->
    receive
        {'$gen_call', From, {echo, X}} ->
            gen_server:reply(From, {beam, node(), X}),
            beam_loop();
        {'$gen_cast', {store, X}} ->
            put(stored, X),
            beam_loop();
        {'$gen_call', From, stored} ->
            gen_server:reply(From, get(stored)),
            beam_loop();
        stop ->
            ok
    end.

call_beam_server(_Config) ->
    Srv = beam_server(),
    C = erlang:get_cookie(),
    N = atom_to_list(node()),
    %% As io:format("~w") prints it.
    Expect = lists:flatten(io_lib:format("~w~n", [{beam, node(), #{k => <<"v">>}}])),
    {0, Out} = cli(C, ["call", "--node", N, "cli_beam_srv",
                       "{echo, #{k => <<\"v\">>}}"]),
    ?assertEqual(Expect, Out),
    {0, ""} = cli(C, ["cast", "--node", N, "cli_beam_srv", "{store, 42}"]),
    {0, "42\n"} = cli(C, ["call", "--node", N, "cli_beam_srv", "stored"]),
    Srv ! stop.

ping(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    {0, "pong\n"} = cli(cn_node:cookie(CN), ["ping", "--node", node_arg(CN)]),
    {0, "pong\n"} = cli(erlang:get_cookie(), ["ping", "--node", atom_to_list(node())]),
    {5, "pang\n" ++ Why} =
        cli(erlang:get_cookie(), ["ping", "--node", "nonesuch" ++ cn_node:uniq()]),
    ?assertNotEqual(nomatch, string:find(Why, "nodedown")),
    {ok, 0} = cn_node:stop(CN).

exit_statuses(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    C = cn_node:cookie(CN),
    N = node_arg(CN),
    {2, Bad} = cli(C, ["call", "--node", N, "kv", "{get, a"]),
    ?assertNotEqual(nomatch, string:find(Bad, "expected } at byte 7")),
    {2, _} = cli(C, ["call", "--node", N, "kv"]),
    {2, _} = cli(C, ["call", "--node", N, "--timeout", "x", "kv", "a"]),
    {3, T} = cli(C, ["call", "--node", N, "--timeout", "200", "echo", "{sleep, 3000}"]),
    ?assertNotEqual(nomatch, string:find(T, "timeout")),
    {4, P} = cli(C, ["call", "--node", N, "nope", "x"]),
    ?assertNotEqual(nomatch, string:find(P, "noproc")),
    {5, _} = cli(C, ["call", "--node", "gone" ++ cn_node:uniq(), "kv", "x"]),
    {7, E} = cli(C, ["call", "--node", N, "echo", "{stop, {oops, 1}}"]),
    ?assertNotEqual(nomatch, string:find(E, "echo exited: {oops,1}")),
    %% The node serves on.
    {0, "pong\n"} = cli(C, ["ping", "--node", N]),
    {ok, 0} = cn_node:stop(CN).

refused_cookie(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = node_arg(CN),
    {6, Out} = cli(list_to_atom("wrong" ++ cn_node:uniq()), ["call", "--node", N, "kv", "keys"]),
    ?assertNotEqual(nomatch, string:find(Out, "refused our cookie")),
    {6, "pang\n" ++ _} = cli(wrongagain, ["ping", "--node", N]),
    {ok, 0} = cn_node:stop(CN).

too_large(_Config) ->
    CN = cn_node:start(#{owner => self(), args => ["--max-message", "64K"]}),
    {8, Out} = cli(cn_node:cookie(CN), ["call", "--node", node_arg(CN), "echo",
                                        "{blob, 100000}"]),
    ?assertNotEqual(nomatch, string:find(Out, "refused the call")),
    {ok, 0} = cn_node:stop(CN).
