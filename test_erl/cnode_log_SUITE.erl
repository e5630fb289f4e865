%% cnode_log_SUITE: what the node program logs about its peers, read off
%% its stderr log as an operator reads it.
%%
%% - a peer connecting gets one info line, "connection to PEER up
%%   (incoming, visible)", and leaving another, "connection to PEER closed:
%%   REASON";
%% - a peer with the wrong cookie gets "handshake with PEER failed: wrong
%%   digest ... (cookie)", and neither cookie appears anywhere in the log;
%% - every line starts with a UTC timestamp and a level.
%%
%% Each case starts a node of its own with a unique name and stops it by
%% its own OS pid (cn_node).
-module(cnode_log_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).
-export([peer_up_and_down/1, wrong_cookie_refused/1]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [peer_up_and_down, wrong_cookie_refused].

init_per_suite(Config) ->
    ok = cn_node:ensure_dist(),
    Config.

end_per_suite(_Config) ->
    ok.

log_text(CN) ->
    {ok, Log} = file:read_file(cn_node:log_file(CN)),
    binary_to_list(Log).

await_line(CN, Line) ->
    case cn_node:wait_until(fun() -> string:find(log_text(CN), Line) =/= nomatch end,
                            10000) of
        ok -> ok;
        _ -> ct:fail({no_log_line, Line, log_text(CN)})
    end.

%% Every line: 2026-12-01T06:30:00.123Z LEVEL DOMAIN: TEXT
assert_line_format(Text) ->
    Re = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
         "(error|warning|info|debug) cnode( dist)?: ",
    Lines = string:lexemes(Text, "\n"),
    ?assert(length(Lines) >= 1),
    [?assertMatch({match, _}, re:run(L, Re), L) || L <- Lines],
    ok.

peer_up_and_down(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    Me = atom_to_list(node()),
    pong = net_adm:ping(N),
    ok = await_line(CN, "info cnode dist: connection to " ++ Me ++
                            " up (incoming, visible)"),
    true = erlang:disconnect_node(N),
    ok = await_line(CN, "info cnode dist: connection to " ++ Me ++ " closed: "),
    %% One up line for one connection.
    Ups = re:run(log_text(CN), "connection to " ++ Me ++ " up", [global]),
    ?assertMatch({match, [_]}, Ups),
    {ok, 0} = cn_node:stop(CN),
    assert_line_format(log_text(CN)).

wrong_cookie_refused(_Config) ->
    CN = cn_node:start(#{owner => self()}),
    N = cn_node:node_name(CN),
    Right = atom_to_list(cn_node:cookie(CN)),
    Wrong = "wrongcookie" ++ cn_node:uniq(),
    {ok, P, PN} = peer:start(#{name => "badck" ++ cn_node:uniq(),
                               connection => standard_io,
                               args => ["-setcookie", Wrong]}),
    try
        pang = peer:call(P, net_adm, ping, [N])
    after
        peer:stop(P)
    end,
    ok = await_line(CN, "warning cnode dist: handshake with " ++
                            atom_to_list(PN) ++ " failed: wrong digest"),
    Text = log_text(CN),
    ?assertEqual(nomatch, string:find(Text, Right)),
    ?assertEqual(nomatch, string:find(Text, Wrong)),
    %% The node serves on.
    pong = net_adm:ping(N),
    {ok, 0} = cn_node:stop(CN),
    assert_line_format(log_text(CN)).
