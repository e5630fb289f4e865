%% cnode_ticks_SUITE: the node answers ticks.
%%
%% Issue 3 asks the node to "answer ticks, send our own when idle".  It
%% sends its own (at least every net_ticktime/4) and answers the peer's,
%% as erl_interface nodes do (the BEAM itself does not), so a BEAM peer
%% whose net_ticktime is shorter than the node's 60 s keeps its connection
%% while idle.
-module(cnode_ticks_SUITE).

-include_lib("common_test/include/ct.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).
-export([ticks_answered_on_raw_connection/1, idle_with_short_ticktime/1]).
-export([idle_check/2]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [ticks_answered_on_raw_connection, idle_with_short_ticktime].

init_per_suite(Config) ->
    CN = cn_node:start(),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

host() ->
    [_, H] = string:split(atom_to_list(node()), "@"),
    H.

%% A tick (an empty frame) sent on a hand-made connection gets a tick back
%% within a second.
ticks_answered_on_raw_connection(Config) ->
    CN = ?config(cn, Config),
    Name = list_to_atom("tick" ++ cn_node:uniq() ++ "@" ++ host()),
    {ok, S, _} = cn_raw_dist:handshake(cn_node:port(CN), Name,
                                       cn_node:cookie(CN)),
    Got = [begin
               ok = gen_tcp:send(S, <<0:32>>),
               gen_tcp:recv(S, 4, 1000)
           end || _ <- lists:seq(1, 3)],
    gen_tcp:close(S),
    [{ok, <<0:32>>}, {ok, <<0:32>>}, {ok, <<0:32>>}] = Got.

%% Run on the peer: connects to N, stays idle for Ms, and tells whether the
%% connection stayed up meanwhile.
idle_check(N, Ms) ->
    pong = net_adm:ping(N),
    true = erlang:monitor_node(N, true),
    Result = receive {nodedown, N} -> {down, N}
             after Ms -> still_up
             end,
    {Result, gen_server:call({echo, N}, {echo, after_idle})}.

%% A peer with net_ticktime 4 drops a connection it has heard nothing on
%% for 4 s; with its ticks answered, an idle connection stays up.  The peer
%% is driven over stdio, not distribution, since it would drop its
%% connection to the test node (ticktime 60) too.
idle_with_short_ticktime(Config) ->
    N = ?config(node, Config),
    Dir = filename:dirname(code:which(?MODULE)),
    Helpers = filename:dirname(code:which(cn_node)),
    {ok, P, _} = peer:start(#{name => "tick" ++ cn_node:uniq(),
                              connection => standard_io,
                              args => ["-pa", Dir, "-pa", Helpers,
                                       "-kernel", "net_ticktime", "4"]}),
    try
        4 = peer:call(P, net_kernel, get_net_ticktime, []),
        true = peer:call(P, erlang, set_cookie,
                         [N, cn_node:cookie(?config(cn, Config))]),
        {still_up, after_idle} =
            peer:call(P, ?MODULE, idle_check, [N, 9000], 20000)
    after
        catch peer:stop(P)
    end.
