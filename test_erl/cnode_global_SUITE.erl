%% cnode_global_SUITE: the node as a visible member of a cluster that runs
%% global and pg.
%%
%% Three BEAM nodes (peers started with OTP's peer module, controlled over
%% their standard I/O, so that the test node itself never joins the
%% cluster) and the node started with --published.  Each peer connects
%% only to the C node: global's exchange through it must make the peers
%% connect to each other (the full mesh), and global:sync() must return on
%% every one.  Then global names and pg groups (the default scope and a
%% named one) are checked from every side, while a peer and the C node are
%% stopped and started again.  A second case starts the C node last.
%%
%% The C side is driven through the node's cnode_cluster server (see
%% cnode/cluster.c): it spawns member processes, registers them with
%% global, joins them to pg groups and reports what C sees.
-module(cnode_global_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_testcase/2, end_per_testcase/2]).
-export([c_node_first/1, c_node_last/1, name_conflicts/1]).

%% Run on the peers.
-export([holder/0]).

-define(WAIT, 15000).

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [c_node_first, c_node_last, name_conflicts].

init_per_testcase(_TC, Config) ->
    Config.

end_per_testcase(_TC, _Config) ->
    [catch peer:stop(P) || {peer, P} <- get()],
    [catch cn_node:kill(CN) || {cnode, CN} <- get()],
    ok.

%% ---- Helpers ----------------------------------------------------------------

start_c(Name, Cookie) ->
    CN = cn_node:start(#{name => Name, cookie => atom_to_list(Cookie),
                         args => ["--published"], owner => self()}),
    put({cnode, Name}, CN),
    CN.

%% A peer that can load this suite, with pg's default scope, under the
%% given cookie.  Returns {Peer, Node}.
start_peer(Name, Cookie) ->
    Dir = filename:dirname(code:which(?MODULE)),
    {ok, Peer, Node} =
        peer:start(#{name => Name, connection => standard_io,
                     args => ["-pa", Dir, "-setcookie", atom_to_list(Cookie),
                              "-kernel", "start_pg", "true"]}),
    put({peer, Node}, Peer),
    {Peer, Node}.

stop_peer(Node) ->
    ok = peer:stop(get({peer, Node})),
    erase({peer, Node}).

pc(Node, M, F, A) ->
    peer:call(get({peer, Node}), M, F, A, ?WAIT).

%% A process on a peer that lives until told, to register and to join.
holder() ->
    receive stop -> ok end.

spawn_holder(Node) ->
    pc(Node, erlang, spawn, [?MODULE, holder, []]).

%% A request to the C node's cnode_cluster server, made from a peer.
cc(Via, C, Req) ->
    pc(Via, gen_server, call, [{cnode_cluster, C}, Req, ?WAIT]).

sync(Nodes) ->
    [?assertEqual(ok, pc(N, global, sync, [])) || N <- Nodes],
    ok.

%% Every node of All sees every other one of All (and C).
assert_mesh(Peers, C) ->
    All = [C | Peers],
    [ok = cn_node:wait_until(
            fun() ->
                    Seen = pc(N, erlang, nodes, []),
                    lists:all(fun(O) -> lists:member(O, Seen) end, All -- [N])
            end, ?WAIT) || N <- Peers],
    ok.

wait_where(Nodes, Name, Pid) ->
    [ok = cn_node:wait_until(
            fun() -> pc(N, global, whereis_name, [Name]) =:= Pid end, ?WAIT)
     || N <- Nodes],
    ok.

wait_c_where(Via, C, Name, Pid) ->
    ok = cn_node:wait_until(
           fun() -> cc(Via, C, {global_whereis, Name}) =:= Pid end, ?WAIT).

sorted_members(Node, Scope, Group) ->
    lists:sort(pc(Node, pg, get_members, [Scope, Group])).

wait_members(Nodes, Scope, Group, Pids) ->
    Want = lists:sort(Pids),
    [ok = cn_node:wait_until(
            fun() -> sorted_members(N, Scope, Group) =:= Want end, ?WAIT)
     || N <- Nodes],
    ok.

wait_c_members(Via, C, Scope, Group, Pids) ->
    Want = lists:sort(Pids),
    ok = cn_node:wait_until(
           fun() -> lists:sort(cc(Via, C, {pg_members, Scope, Group})) =:= Want
           end, ?WAIT).

%% A C member process: registered as Name with global, in group `room` of
%% the default scope and of the scope `chat`.
c_member(Via, C, Name) ->
    {ok, M} = cc(Via, C, spawn_member),
    ?assertEqual(yes, cc(Via, C, {global_register, Name, M})),
    ok = cc(Via, C, {pg_join, pg, room, M}),
    ok = cc(Via, C, {pg_join, chat, room, M}),
    M.

%% A peer's member: registered as Name, in `room` of both scopes.
beam_member(Node, Name) ->
    P = spawn_holder(Node),
    ?assertEqual(yes, pc(Node, global, register_name, [Name, P])),
    ok = pc(Node, pg, join, [pg, room, P]),
    ok = pc(Node, pg, join, [chat, room, P]),
    P.

start_chat(Node) ->
    {ok, _} = pc(Node, pg, start, [chat]),
    ok.

%% Sends Msg to every member of room on Node's view, as Phoenix.PubSub's
%% PG2 adapter does, and checks that the C member M got it.
broadcast_reaches(Node, M, Msg) ->
    Members = pc(Node, pg, get_members, [pg, room]),
    [pc(Node, erlang, send, [P, Msg]) || P <- Members],
    ok = cn_node:wait_until(
           fun() -> lists:member(Msg, received(Node, M)) end, ?WAIT).

%% What a C member got, asked from a peer (the test node never connects
%% to the cluster).
received(Via, M) ->
    pc(Via, gen_server, call, [M, received, 5000]).

%% ---- Cases ------------------------------------------------------------------

%% The C node first; the peers connect to it only.
c_node_first(_Config) ->
    Cookie = list_to_atom("gc" ++ cn_node:uniq()),
    U = cn_node:uniq(),
    C = cn_node:node_name(start_c("gc" ++ U, Cookie)),
    Peers = [N || {_, N} <- [start_peer(P ++ U, Cookie)
                             || P <- ["ga", "gb", "gd"]]],
    [A, B, D] = Peers,
    [pong = pc(N, net_adm, ping, [C]) || N <- Peers],
    ok = cc(A, C, {pg_start_scope, chat}),
    [start_chat(N) || N <- Peers],
    sync(Peers),
    ?assertEqual(ok, cc(A, C, global_sync)),
    %% The full mesh, through the C node.
    assert_mesh(Peers, C),

    %% Names both ways.
    PA = beam_member(A, name_a),
    wait_c_where(B, C, name_a, PA),
    M1 = c_member(A, C, c_one),
    wait_where(Peers, c_one, M1),
    pc(D, global, send, [c_one, hello_global]),
    ok = cn_node:wait_until(
           fun() -> lists:member(hello_global, received(D, M1)) end, ?WAIT),
    %% A taken name is refused.
    {ok, M2} = cc(B, C, spawn_member),
    ?assertEqual(no, cc(B, C, {global_register, name_a, M2})),

    %% pg both ways, both scopes.
    PB = beam_member(B, name_b),
    wait_members(Peers, pg, room, [PA, PB, M1]),
    wait_members(Peers, chat, room, [PA, PB, M1]),
    wait_c_members(D, C, pg, room, [PA, PB, M1]),
    wait_c_members(D, C, chat, room, [PA, PB, M1]),
    ?assertEqual([M1], cc(D, C, {pg_local_members, pg, room})),
    ?assert(lists:member(room, cc(D, C, {pg_which_groups, pg}))),
    broadcast_reaches(D, M1, {pubsub, 1}),

    %% A C member that dies leaves global and pg.
    ok = pc(A, gen_server, call, [M1, stop, 5000]),
    wait_where(Peers, c_one, undefined),
    wait_members(Peers, pg, room, [PA, PB]),
    wait_c_where(A, C, c_one, undefined),
    M3 = c_member(A, C, c_two),
    wait_where(Peers, c_two, M3),
    wait_members(Peers, pg, room, [PA, PB, M3]),

    %% B goes: its names and members vanish everywhere, C included.
    stop_peer(B),
    wait_where([A, D], name_b, undefined),
    wait_c_where(A, C, name_b, undefined),
    wait_members([A, D], pg, room, [PA, M3]),
    wait_c_members(A, C, pg, room, [PA, M3]),
    %% ... and comes back under a new name: it sees everything again.
    {_, B2} = start_peer("gb2" ++ U, Cookie),
    start_chat(B2),
    pong = pc(B2, net_adm, ping, [C]),
    sync([B2]),
    assert_mesh([A, B2, D], C),
    wait_where([B2], c_two, M3),
    wait_members([B2], pg, room, [PA, M3]),
    wait_members([B2], chat, room, [PA, M3]),

    %% The C node goes: its names and members vanish, the rest stays a
    %% mesh.
    CN = get({cnode, "gc" ++ U}),
    {ok, _} = cn_node:kill(CN),
    wait_where([A, B2, D], c_two, undefined),
    wait_members([A, B2, D], pg, room, [PA]),
    wait_members([A, B2, D], chat, room, [PA]),
    ?assertEqual(PA, pc(B2, global, whereis_name, [name_a])),
    ok = cn_node:wait_until(
           fun() -> lists:sort(pc(A, erlang, nodes, [])) =:= lists:sort([B2, D])
           end, ?WAIT),
    %% ... and comes back: it learns the names and groups, and its own
    %% are seen again.
    C = cn_node:node_name(start_c("gc" ++ U, Cookie)),
    pong = pc(D, net_adm, ping, [C]),
    sync([A, B2, D]),
    assert_mesh([A, B2, D], C),
    wait_c_where(A, C, name_a, PA),
    ok = cc(A, C, {pg_start_scope, chat}),
    M4 = c_member(A, C, c_three),
    wait_where([A, B2, D], c_three, M4),
    wait_members([A, B2, D], pg, room, [PA, M4]),
    wait_members([A, B2, D], chat, room, [PA, M4]),
    wait_c_members(B2, C, pg, room, [PA, M4]),
    broadcast_reaches(B2, M4, {pubsub, 2}),
    %% A clean stop (SIGTERM) takes the names and members away too, and
    %% the node exits 0 (its global threads end in time).
    {ok, 0} = cn_node:stop(get({cnode, "gc" ++ U})),
    wait_where([A, B2, D], c_three, undefined),
    wait_members([A, B2, D], pg, room, [PA]),
    ok.

%% The peers form their cluster first; the C node joins last, through one
%% of them, and the others meet it through global.
c_node_last(_Config) ->
    Cookie = list_to_atom("gl" ++ cn_node:uniq()),
    U = cn_node:uniq(),
    Peers = [N || {_, N} <- [start_peer(P ++ U, Cookie)
                             || P <- ["la", "lb", "ld"]]],
    [A, B, D] = Peers,
    pong = pc(A, net_adm, ping, [B]),
    pong = pc(A, net_adm, ping, [D]),
    sync(Peers),
    [start_chat(N) || N <- Peers],
    PA = beam_member(A, name_la),
    C = cn_node:node_name(start_c("lc" ++ U, Cookie)),
    pong = pc(D, net_adm, ping, [C]),
    ok = cc(D, C, {pg_start_scope, chat}),
    sync(Peers),
    ?assertEqual(ok, cc(D, C, global_sync)),
    assert_mesh(Peers, C),
    wait_c_where(B, C, name_la, PA),
    wait_c_members(B, C, pg, room, [PA]),
    M = c_member(B, C, c_last),
    wait_where(Peers, c_last, M),
    wait_members(Peers, pg, room, [PA, M]),
    broadcast_reaches(A, M, {pubsub, last}),
    {ok, 0} = cn_node:stop(get({cnode, "lc" ++ U})),
    wait_where(Peers, c_last, undefined),
    ok.

%% The same names registered apart, then the partitions meet: the smaller
%% node of each pair resolves with random_exit_name, which keeps the pid
%% of the smaller node and kills the other.  Peer A (name "a...") is
%% smaller than the C node ("m..."), which is smaller than peer Z
%% ("z..."): global on A resolves clash_a (and kills the C member over
%% the connection), the C node resolves clash_z (and kills Z's process).
name_conflicts(_Config) ->
    Cookie = list_to_atom("nc" ++ cn_node:uniq()),
    U = cn_node:uniq(),
    C = cn_node:node_name(start_c("m" ++ U, Cookie)),
    {_, A} = start_peer("a" ++ U, Cookie),
    {_, Z} = start_peer("z" ++ U, Cookie),
    %% A connects first, only to register the C members through it.
    pong = pc(A, net_adm, ping, [C]),
    {ok, M1} = cc(A, C, spawn_member),
    {ok, M2} = cc(A, C, spawn_member),
    ?assertEqual(yes, cc(A, C, {global_register, clash_z, M2})),
    true = pc(A, erlang, disconnect_node, [C]),
    ok = cn_node:wait_until(
           fun() -> not lists:member(C, pc(A, erlang, nodes, [])) end, ?WAIT),
    PA = spawn_holder(A),
    PZ = spawn_holder(Z),
    ?assertEqual(yes, pc(A, global, register_name, [clash_a, PA])),
    ?assertEqual(yes, pc(Z, global, register_name, [clash_z, PZ])),
    %% clash_a on the C node, registered while A is away.
    pong = pc(Z, net_adm, ping, [C]),
    sync([Z]),
    ?assertEqual(yes, cc(Z, C, {global_register, clash_a, M1})),
    %% Z met C already: clash_z was resolved then (C is smaller).
    wait_where([Z], clash_z, M2),
    ?assertEqual(false, pc(Z, erlang, is_process_alive, [PZ])),
    %% A comes back: A is smaller, and keeps clash_a.
    pong = pc(A, net_adm, ping, [C]),
    sync([A, Z]),
    wait_where([A, Z], clash_a, PA),
    wait_c_where(Z, C, clash_a, PA),
    ?assertEqual({error, noproc},
                 catch_exit(fun() -> received(Z, M1) end)),
    wait_where([A, Z], clash_z, M2),
    wait_c_where(A, C, clash_z, M2),
    ok.

catch_exit(F) ->
    try F() of
        R -> R
    catch
        exit:{noproc, _} -> {error, noproc};
        error:{exception, {noproc, _}, _} -> {error, noproc};
        C:E -> {C, E}
    end.
