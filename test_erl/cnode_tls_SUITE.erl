%% cnode_tls_SUITE: TLS distribution (-proto_dist inet_tls) against real
%% erl nodes.
%%
%% The suite makes a CA, a certificate for the nodes, and a rogue CA with a
%% certificate of its own, with the openssl command in its priv dir.  The C
%% node runs with --proto-dist inet_tls and an ssl_dist_optfile that
%% verifies peers both ways (verify_peer, fail_if_no_peer_cert).  The BEAM
%% nodes are peers started with -proto_dist inet_tls -ssl_dist_optfile and
%% driven over their standard_io (the node running the tests speaks plain
%% TCP and never connects to them).
%%
%% Covered: BEAM calls the C node's kv and echo; the C node dials a BEAM
%% node (echo's {call, ...}); an untrusted client certificate is refused,
%% and so is an untrusted server certificate when the C node dials; a plain
%% TCP node cannot connect, and the C node cannot connect to one; an 8 MiB
%% message both ways (fragments inside TLS); TLS 1.3 when both sides allow
%% it.  After every case the C node still serves the trusted peer.
-module(cnode_tls_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         end_per_testcase/2]).

-export([beam_calls_c/1, c_calls_beam/1, untrusted_client_refused/1,
         untrusted_server_refused/1, plain_tcp_refused/1,
         large_message/1, tls13/1, cli_over_tls/1]).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [beam_calls_c, c_calls_beam, untrusted_client_refused,
     untrusted_server_refused, plain_tcp_refused, large_message, tls13,
     cli_over_tls].

init_per_suite(Config) ->
    Dir = ?config(priv_dir, Config),
    ok = make_certs(Dir),
    Good = optfile(Dir, "good.conf", "node", "ca", []),
    %% The rogue node trusts our CA (it would accept the C node), but its
    %% own certificate comes from a CA the C node does not know.
    Rogue = optfile(Dir, "rogue.conf", "rogue", "ca", []),
    CN = cn_node:start(#{args => ["--proto-dist", "inet_tls",
                                  "--ssl-dist-optfile", Good,
                                  "--handshake-ms", "3000"]}),
    Cookie = cn_node:cookie(CN),
    {Trusted, _} = start_peer("tls", ["-proto_dist", "inet_tls",
                                      "-ssl_dist_optfile", Good], Cookie),
    [{cn, CN}, {node, cn_node:node_name(CN)}, {good, Good}, {rogue, Rogue},
     {trusted, Trusted}, {dir, Dir} | Config].

end_per_suite(Config) ->
    catch peer:stop(?config(trusted, Config)),
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

end_per_testcase(_TC, Config) ->
    [catch peer:stop(P) || P <- get_peers()],
    erase(peers),
    %% Whatever the case did, the C node still serves over TLS.
    N = ?config(node, Config),
    fine = pcall(?config(trusted, Config), {echo, N}, {echo, fine}),
    ok.

%% ---- Cases -----------------------------------------------------------------

%% A TLS BEAM node calls the C node's servers; the C node logs the TLS
%% version and cipher it negotiated.
beam_calls_c(Config) ->
    N = ?config(node, Config),
    P = ?config(trusted, Config),
    ok = pcall(P, {kv, N}, {put, tls_key, <<"over tls">>}),
    {ok, <<"over tls">>} = pcall(P, {kv, N}, {get, tls_key}),
    {a, [1, 2], <<"x">>} = pcall(P, {echo, N}, {echo, {a, [1, 2], <<"x">>}}),
    true = lists:member(N, peer:call(P, erlang, nodes, [connected])),
    Log = log(Config),
    {match, _} = re:run(Log, "TLS up from a peer: TLSv1\\.2 \\S+, peer "
                        "certificate CN=node"),
    ct:log("negotiated: ~s", [hd(re:split(
                                   element(2, re:run(Log, "TLS up from.*",
                                                     [{capture, first,
                                                       binary}])),
                                   "\n"))]),
    ok.

%% The C node dials a BEAM node over TLS (echo's {call, ...} to a node it
%% is not connected to) and calls a gen_server there.
c_calls_beam(Config) ->
    N = ?config(node, Config),
    {B, BN} = start_peer("tlsb", ["-proto_dist", "inet_tls",
                                  "-ssl_dist_optfile", ?config(good, Config)],
                         cn_node:cookie(?config(cn, Config))),
    false = lists:member(N, peer:call(B, erlang, nodes, [connected])),
    Cwd = peer:call(B, file, get_cwd, []),
    {ok, Cwd} = pcall(?config(trusted, Config), {echo, N},
                      {call, {file_server_2, BN}, {get_cwd}, 10000}),
    true = lists:member(N, peer:call(B, erlang, nodes, [connected])),
    {match, _} = re:run(log(Config), "TLS up to " ++ atom_to_list(BN)),
    ok.

%% A BEAM node whose certificate comes from an unknown CA cannot connect;
%% the C node logs why, and serves the others on.
untrusted_client_refused(Config) ->
    N = ?config(node, Config),
    {R, _} = start_peer("rogue", ["-proto_dist", "inet_tls",
                                  "-ssl_dist_optfile", ?config(rogue, Config)],
                        cn_node:cookie(?config(cn, Config))),
    false = peer:call(R, net_kernel, connect_node, [N], 15000),
    {'EXIT', {{nodedown, N}, _}} =
        peer:call(R, erlang, apply,
                  [fun() -> catch gen_server:call({echo, N}, {echo, x}) end,
                   []]),
    ok = wait_log(Config, "certificate refused: unable to get local "
                  "issuer certificate"),
    ok.

%% The C node dials a BEAM node whose certificate comes from an unknown
%% CA: it refuses it, and the call fails with noconnection.
untrusted_server_refused(Config) ->
    N = ?config(node, Config),
    {_R, RN} = start_peer("rogues", ["-proto_dist", "inet_tls",
                                     "-ssl_dist_optfile",
                                     ?config(rogue, Config)],
                          cn_node:cookie(?config(cn, Config))),
    {error, noconnection} =
        pcall(?config(trusted, Config), {echo, N},
              {call, {file_server_2, RN}, {get_cwd}, 10000}),
    ok = wait_log(Config, "connection to " ++ atom_to_list(RN) ++
                      " closed: TLS handshake: certificate refused"),
    ok.

%% A plain TCP node cannot connect to the TLS node, nor the TLS node to
%% it; both fail within the handshake time.
plain_tcp_refused(Config) ->
    N = ?config(node, Config),
    {P, PN} = start_peer("plain", [], cn_node:cookie(?config(cn, Config))),
    T0 = erlang:monotonic_time(millisecond),
    false = peer:call(P, net_kernel, connect_node, [N], 15000),
    ok = wait_log(Config, "handshake with a peer failed: TLS handshake"),
    {error, noconnection} =
        pcall(?config(trusted, Config), {echo, N},
              {call, {file_server_2, PN}, {get_cwd}, 10000}),
    ?assert(cn_node:elapsed_ms(T0) < 12000),
    false = lists:member(N, peer:call(P, erlang, nodes, [connected])),
    ok.

%% 8 MiB each way: the BEAM's fragments inside TLS records, and ours.
large_message(Config) ->
    N = ?config(node, Config),
    P = ?config(trusted, Config),
    %% Made on the peer: the peer's standard_io is slow for megabytes.
    true = peer:call(P, erlang, apply,
                     [fun() ->
                              Big = crypto:strong_rand_bytes(8 bsl 20),
                              B = gen_server:call({echo, N}, {echo, Big},
                                                  20000),
                              B =:= Big
                      end, []], 30000),
    Size = 6 bsl 20,
    Size = peer:call(P, erlang, apply,
                     [fun() ->
                              byte_size(gen_server:call({echo, N},
                                                        {blob, Size}, 20000))
                      end, []], 30000),
    ok.

%% With versions [tlsv1.2, tlsv1.3] on the C node and tlsv1.3 only on the
%% BEAM node, both ways use TLS 1.3.
tls13(Config) ->
    Dir = ?config(dir, Config),
    V = "{versions, ['tlsv1.2', 'tlsv1.3']}",
    Both = optfile(Dir, "both.conf", "node", "ca", [V]),
    Only13 = optfile(Dir, "only13.conf", "node", "ca",
                     ["{versions, ['tlsv1.3']}"]),
    CN = cn_node:start(#{args => ["--proto-dist", "inet_tls",
                                  "--ssl-dist-optfile", Both],
                         owner => self()}),
    try
        N = cn_node:node_name(CN),
        Cookie = cn_node:cookie(CN),
        {P, _} = start_peer("tls13", ["-proto_dist", "inet_tls",
                                      "-ssl_dist_optfile", Only13], Cookie),
        {_, QN} = start_peer("tls13q", ["-proto_dist", "inet_tls",
                                        "-ssl_dist_optfile", Only13], Cookie),
        hi = pcall(P, {echo, N}, {echo, hi}),
        Cwd = peer:call(P, file, get_cwd, []),
        {ok, Cwd} = pcall(P, {echo, N},
                          {call, {file_server_2, QN}, {get_cwd}, 10000}),
        {ok, Log} = file:read_file(cn_node:log_file(CN)),
        {match, _} = re:run(Log, "TLS up from a peer: TLSv1\\.3"),
        {match, _} = re:run(Log, "TLS up to " ++ atom_to_list(QN) ++
                                ": TLSv1\\.3"),
        ok
    after
        cn_node:stop(CN)
    end.

%% `cnode call` and `cnode ping` reach the TLS node with --proto-dist
%% inet_tls and the same optfile (its client side); without TLS, or with
%% the rogue certificate, they fail with nodedown (status 5).
cli_over_tls(Config) ->
    N = atom_to_list(?config(node, Config)),
    C = cn_node:cookie(?config(cn, Config)),
    Tls = ["--proto-dist", "inet_tls", "--ssl-dist-optfile"],
    {0, "ok\n"} = cli(C, ["call" | Tls] ++ [?config(good, Config), "--node", N,
                                            "kv", "{put, cli_tls, 7}"]),
    {0, "{ok,7}\n"} = cli(C, ["call" | Tls] ++ [?config(good, Config),
                                                "--node", N, "kv",
                                                "{get, cli_tls}"]),
    {0, _} = cli(C, ["ping" | Tls] ++ [?config(good, Config), "--node", N]),
    {5, _} = cli(C, ["call", "--timeout", "3000", "--node", N, "kv",
                     "{get, cli_tls}"]),
    {5, _} = cli(C, ["call" | Tls] ++ [?config(rogue, Config), "--timeout",
                                       "3000", "--node", N, "kv",
                                       "{get, cli_tls}"]),
    {2, Usage} = cli(C, ["call", "--ssl-dist-optfile", ?config(good, Config),
                         "--node", N, "kv", "x"]),
    {match, _} = re:run(Usage, "give --proto-dist inet_tls too"),
    ok.

%% ---- Helpers ---------------------------------------------------------------

%% The node program as a client, its cookie in $CNODE_COOKIE.
cli(Cookie, Args) ->
    Port = open_port({spawn_executable, cn_node:exe()},
                     [{args, Args}, exit_status, stderr_to_stdout, binary,
                      {env, [{"CNODE_COOKIE", atom_to_list(Cookie)}]}]),
    cli_collect(Port, <<>>).

cli_collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> cli_collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, St}} -> {St, binary_to_list(Acc)}
    after 30000 -> ct:fail({cli_hangs, Acc})
    end.

%% gen_server:call run on peer P.
pcall(P, Dest, Req) ->
    peer:call(P, gen_server, call, [Dest, Req, 10000], 15000).

%% A peer driven over its standard_io, so that this node needs no TLS.
start_peer(Prefix, Args, Cookie) ->
    Name = Prefix ++ cn_node:uniq(),
    Pa = filename:dirname(code:which(?MODULE)),
    {ok, P, Node} = peer:start(#{name => Name, connection => standard_io,
                                 args => ["-pa", Pa | Args]}),
    true = peer:call(P, erlang, set_cookie, [Cookie]),
    put(peers, [P | get_peers()]),
    {P, Node}.

get_peers() ->
    case get(peers) of
        undefined -> [];
        Ps -> Ps
    end.

log(Config) ->
    {ok, Log} = file:read_file(cn_node:log_file(?config(cn, Config))),
    Log.

wait_log(Config, Text) ->
    cn_node:wait_until(fun() -> binary:match(log(Config),
                                             list_to_binary(Text)) =/= nomatch
                       end, 10000).

%% The CA, the nodes' certificate (for localhost, this host and 127.0.0.1),
%% and a rogue CA with a certificate of its own.
make_certs(Dir) ->
    {ok, Host} = inet:gethostname(),
    Ext = filename:join(Dir, "san.ext"),
    ok = file:write_file(Ext, ["subjectAltName=DNS:localhost,DNS:", Host,
                               ",IP:127.0.0.1\n"]),
    lists:foreach(fun(C) -> ok = openssl(Dir, C) end,
                  [ca_cmd("ca", "test CA"), ca_cmd("rogueca", "rogue CA")] ++
                      cert_cmds("node", "ca") ++ cert_cmds("rogue", "rogueca")).

ca_cmd(Name, CN) ->
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout " ++ Name ++
        ".key -out " ++ Name ++ ".pem -days 2 -subj '/CN=" ++ CN ++ "'".

cert_cmds(Name, CA) ->
    ["openssl req -newkey rsa:2048 -nodes -keyout " ++ Name ++ ".key -out " ++
         Name ++ ".csr -subj '/CN=" ++ Name ++ "'",
     "openssl x509 -req -in " ++ Name ++ ".csr -CA " ++ CA ++ ".pem -CAkey " ++
         CA ++ ".key -CAcreateserial -out " ++ Name ++ ".pem -days 2 "
         "-extfile san.ext"].

openssl(Dir, Cmd) ->
    Out = os:cmd("cd '" ++ Dir ++ "' && " ++ Cmd ++ " 2>&1; echo \"rc=$?\""),
    case string:find(Out, "rc=0") of
        nomatch -> {error, {Cmd, Out}};
        _ -> ok
    end.

%% An ssl_dist_optfile: Cert's certificate and key, CA's certificate,
%% verify_peer both ways; Extra option texts go into both sides (else
%% secure_renegotiate, which the C node accepts and ignores).
optfile(Dir, File, Cert, CA, Extra) ->
    P = fun(F) -> "\"" ++ filename:join(Dir, F) ++ "\"" end,
    Common = ["{certfile, ", P(Cert ++ ".pem"), "}, {keyfile, ",
              P(Cert ++ ".key"), "}, {cacertfile, ", P(CA ++ ".pem"),
              "}, {verify, verify_peer}"] ++
        %% OTP's ssl refuses secure_renegotiate with TLS 1.3 only.
        [", {secure_renegotiate, true}" || Extra =:= []] ++
        [[", ", E] || E <- Extra],
    Text = ["[{server, [", Common, ", {fail_if_no_peer_cert, true}]},\n",
            " {client, [", Common, "]}].\n"],
    Path = filename:join(Dir, File),
    ok = file:write_file(Path, Text),
    Path.
