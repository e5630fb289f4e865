#!/usr/bin/env escript
%% Regenerates the seed corpora in c_src/fuzz/corpus/ from a real OTP node
%% (`make fuzz-seeds`; run it from the top of the tree).  The seeds are
%% checked in, so neither `make fuzz` nor CI runs this; it is here so that
%% the seeds can be told apart from made-up bytes, and made again.
%%
%% What it does:
%%  - fuzz_term: term_to_binary/1,2 of varied terms on this node, alone
%%    and in pairs, plus the older encodings a BEAM still accepts (and may
%%    meet from older or foreign nodes), which term_to_binary no longer
%%    writes;
%%  - fuzz_epmd: the answers of the real epmd to a fake node's
%%    registration (twice: accepted, then refused) and to port lookups;
%%  - fuzz_handshake: a real node (started with `peer`, as
%%    real@127.0.0.1, cookie `cookie`) dials fake nodes played here over
%%    raw sockets, and a fake node dials it; what the real node sends is
%%    a seed.  The fake nodes use the challenge and cookie the fuzz
%%    target uses, so the digests in the seeds are valid for it;
%%  - fuzz_control: the frames the real node sends the fake nodes while
%%    it sends, calls, links, monitors, exits and traces, with our flags
%%    (CN__DFLAGS_OURS) and with OTP 25's mandatory flags only.
%%
%% Every file is written whole; the pids, references and creations in it
%% differ from one run to the next.
-mode(compile).

-define(COOKIE, "cookie").
-define(OUR_CHALLENGE, 16#12345678).   % OUR_CHALLENGE in fuzz_handshake.c
-define(CREATION, 16#11223344).

%% Flags (kernel dist.hrl), as in c_src/dist/proto.h.
-define(MANDATORY_25, (16#4 bor 16#10 bor 16#100 bor 16#10000 bor 16#80
                       bor 16#40000 bor 16#800 bor 16#20000 bor 16#200
                       bor 16#400 bor 16#1000000)).
-define(OURS, (?MANDATORY_25 bor 16#8 bor 16#20 bor 16#4000 bor 16#1000
               bor 16#400000 bor 16#2000000 bor 16#100000 bor (1 bsl 34)
               bor (1 bsl 35) bor 16#80000 bor (1 bsl 32))).
-define(OLD, (?MANDATORY_25 bor 16#8 bor 16#20)).

main(_) ->
    Dir = "c_src/fuzz/corpus",
    [ok = filelib:ensure_path(filename:join(Dir, T))
     || T <- ["fuzz_term", "fuzz_epmd", "fuzz_handshake", "fuzz_control"]],
    put(dir, Dir),
    terms(),
    os:cmd("epmd -daemon"),
    {ok, Peer, Real} = peer:start(#{name => real, host => "127.0.0.1",
                                    longnames => true,
                                    connection => standard_io,
                                    args => ["-setcookie", ?COOKIE]}),
    'real@127.0.0.1' = Real,
    try
        epmd_seeds(),
        dial_us(Peer, 'fake@127.0.0.1', ?OURS, "ok", "ours"),
        dial_us(Peer, 'fake2@127.0.0.1', ?OLD, "alive", "old"),
        we_dial(Peer),
        prefix_seeds()
    after
        peer:stop(Peer)
    end,
    io:format("seeds written under ~s~n", [Dir]).

write(Target, Name, Bytes) ->
    File = filename:join([get(dir), Target, Name]),
    ok = file:write_file(File, Bytes).

%% ---- fuzz_term --------------------------------------------------------

terms() ->
    Ref = make_ref(),
    Big = 1 bsl 200,
    Terms =
        [{"small_int", 42}, {"int", -100000}, {"big", Big}, {"neg_big", -Big},
         {"int64", 1 bsl 63}, {"float", 3.14159}, {"neg_zero", -0.0},
         {"float_big", 1.0e300}, {"atom", hello},
         {"atom_quoted", 'Hello World'},
         {"atom_utf8", 'ünïcødé_ατομ'}, {"atom_empty", ''}, {"nil", []},
         {"string", "hello"}, {"list", [1, two, "three", 4.0]},
         {"improper", [a, b | c]}, {"tuple", {ok, 1, [2], {3}}},
         {"tuple_empty", {}}, {"large_tuple", list_to_tuple(lists:seq(1, 300))},
         {"map", #{a => 1, "b" => [2], {c} => #{}}},
         {"map_large", maps:from_list([{I, I * I} || I <- lists:seq(1, 40)])},
         {"map_num_keys", #{1 => int, 1.0 => float, 2 => b, 1.5 => a}},
         {"binary", <<"binary data">>}, {"bits", <<5:3>>},
         {"bits_long", <<1, 2, 3, 1:1>>}, {"pid", self()}, {"ref", Ref},
         {"port", hd(erlang:ports())}, {"fun_local", fun(X) -> {X, Ref} end},
         {"fun_export", fun lists:map/2},
         {"gen_call", {'$gen_call', {self(), [alias | Ref]}, {put, k, v}}},
         {"exit", {'EXIT', self(), {badarg, [{m, f, 1, [{line, 3}]}]}}},
         {"deep", lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 40))},
         {"nested", {[#{k => {[<<1>>, 2.5 | x]}}]}},
         {"map_key_nest", lists:foldl(fun(_, A) -> #{A => 1} end, #{},
                                      lists:seq(1, 70))},
         {"unicode", {'€uro', <<"ü"/utf8>>, "ü€", '𝄞'}}]
        ++ [{"float_" ++ N, F}
            || {N, F} <- [{"min", 5.0e-324}, {"max", 1.7976931348623157e308},
                          {"tenth", 0.1}, {"e23", 1.0e23},
                          {"norm_min", 2.2250738585072014e-308},
                          {"e15", 1.0e15}, {"e16", 1.0e16},
                          {"two53", 9007199254740992.0}]],
    [write("fuzz_term", N, term_to_binary(T)) || {N, T} <- Terms],
    [write("fuzz_term", N ++ ".v0", term_to_binary(T, [{minor_version, 0}]))
     || {N, T} <- Terms, is_float(T)],
    %% Pairs, for comparing one term with another.
    Pairs = [{"pair_int_float", 1, 1.0}, {"pair_zeros", 0.0, -0.0},
             {"pair_lists", [1, 2, 3], "abc"}, {"pair_maps", #{a => 1},
                                                 #{a => 1, b => 2}},
             {"pair_atoms", abc, abd}, {"pair_big", Big, Big + 1},
             {"pair_types", {a}, [a]},
             %% Integers and floats of the same size: compared exactly.
             {"pair_int_float_60", 1 bsl 60, float(1 bsl 60)},
             {"pair_int_float_100", (1 bsl 100) + 1, float(1 bsl 100)},
             {"pair_int_float_neg", -(1 bsl 70), -float(1 bsl 70)},
             {"pair_int_float_53", (1 bsl 53) + 1, float(1 bsl 53)},
             {"pair_maps_num_keys", #{1 => a, 2.0 => b}, #{1.0 => a, 2 => b}}],
    [write("fuzz_term", N, [term_to_binary(A), term_to_binary(B)])
     || {N, A, B} <- Pairs],
    %% Older encodings (erl_ext_dist), each checked here to decode.
    Old =
        [{"old_atom_ext", <<131, 100, 0, 3, "abc">>},
         {"old_small_atom_ext", <<131, 115, 3, "ab", 233>>},
         {"old_pid_ext", <<131, 103, 100, 0, 13, "nonode@nohost",
                           0, 0, 0, 42, 0, 0, 0, 0, 0>>},
         {"old_new_reference_ext", <<131, 114, 0, 3, 100, 0, 13,
                                     "nonode@nohost", 0, 1:32, 2:32, 3:32>>},
         {"old_reference_ext", <<131, 101, 100, 0, 13, "nonode@nohost",
                                 7:32, 0>>},
         {"old_port_ext", <<131, 102, 100, 0, 13, "nonode@nohost", 5:32, 0>>},
         {"old_new_port_ext", <<131, 89, 100, 0, 13, "nonode@nohost",
                                5:32, 1:32>>},
         {"old_list_of_bytes", <<131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 106>>},
         {"old_cons_chain", <<131, 108, 1:32, 97, 1, 108, 1:32, 97, 2, 106>>},
         {"old_noncanonical_big", <<131, 110, 4, 0, 1, 0, 0, 0>>},
         {"old_bit_binary_whole", <<131, 77, 2:32, 8, 1, 2>>},
         {"pid_other_node", <<131, 88, 119, 3, "a@b", 1:32, 2:32, 3:32>>},
         {"ref_other_node", <<131, 90, 0, 2, 119, 3, "a@h", 9:32, 1:32, 2:32>>},
         %% A Latin-1 atom and a UTF-8 one, compared by code point.
         {"pair_latin1_utf8", <<131, 100, 0, 2, "a", 233,
                                131, 118, 0, 4, "a", 226, 130, 172>>},
         %% A node name longer in UTF-8 than any printer buffer.
         {"pid_long_node", <<131, 88, 118, 513:16,
                             (binary:copy(<<"€"/utf8>>, 171))/binary,
                             1:32, 2:32, 3:32>>}],
    [begin
         _ = binary_to_term(Bin, [used]),
         write("fuzz_term", N, Bin)
     end || {N, Bin} <- Old],
    ok.

%% ---- fuzz_epmd --------------------------------------------------------

%% A fuzz_epmd seed: the knob byte, then what epmd said.
epmd_seed(Name, Knob, Bytes) ->
    write("fuzz_epmd", Name, [Knob, Bytes]).

epmd_seeds() ->
    {ok, L} = gen_tcp:listen(0, [binary]),
    {ok, Port} = inet:port(L),
    {ok, E1} = epmd_register(<<"seedfake">>, Port),
    epmd_seed("alive2_x_resp", 0, E1),
    %% The same name again, while the first registration lives: refused.
    {ok, E2} = epmd_register(<<"seedfake">>, Port),
    epmd_seed("alive2_x_resp_taken", 1, E2),
    epmd_seed("port2_resp", 0, epmd_ask(<<"real">>)),
    epmd_seed("port2_resp_unknown", 1, epmd_ask(<<"no_such_node">>)),
    %% A name and a port for the encoders (the decoders see garbage).
    epmd_seed("encoder_name", 0, <<"cnode">>),
    gen_tcp:close(L).

%% ALIVE2_REQ, as erl_epmd sends it; returns what epmd answered (the
%% socket is left open: closing it would end the registration).
epmd_register(Name, Port) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, 4369,
                              [binary, {active, false}]),
    Body = <<120, Port:16, 72, 0, 6:16, 6:16, (byte_size(Name)):16,
             Name/binary, 0:16>>,
    ok = gen_tcp:send(S, <<(byte_size(Body)):16, Body/binary>>),
    {ok, Answer} = gen_tcp:recv(S, 0, 5000),
    {ok, Answer}.

%% PORT_PLEASE2_REQ; returns every byte of the answer (epmd then closes).
epmd_ask(Name) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, 4369,
                              [binary, {active, false}]),
    ok = gen_tcp:send(S, <<(1 + byte_size(Name)):16, 122, Name/binary>>),
    recv_all(S, <<>>).

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, B} -> recv_all(S, <<Acc/binary, B/binary>>);
        {error, closed} -> Acc
    end.

%% ---- fuzz_handshake and fuzz_control ----------------------------------

%% A fuzz_handshake seed: the header (side, arbitration answer, prefix,
%% split seed; see fuzz_handshake.c), then the peer's bytes.
hs_seed(Name, Initiator, Answer, Bytes) ->
    H0 = Initiator bor (Answer bsl 1),
    write("fuzz_handshake", Name, [<<H0, 0, 0, 0, 7>>, Bytes]).

digest(Challenge) ->
    erlang:md5([?COOKIE | integer_to_list(Challenge)]).

hs_msg(Bin) -> <<(byte_size(Bin)):16, Bin/binary>>.

recv_hs(S) ->
    {ok, <<Len:16>>} = gen_tcp:recv(S, 2, 5000),
    {ok, Msg} = gen_tcp:recv(S, Len, 5000),
    Msg.

%% The real node dials the fake node Name, which we play as the accepting
%% side with Flags; Status is what we answer its send_name with ("ok" or
%% "alive").  Every byte the real node sends in the handshake is a
%% fuzz_handshake seed, and every frame it sends afterwards a fuzz_control
%% seed.
dial_us(Peer, Name, Flags, Status, Tag) ->
    [Alive, _] = string:split(atom_to_list(Name), "@"),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {packet, raw}]),
    {ok, Port} = inet:port(L),
    {ok, <<118, 0, _:32>>} = epmd_register(list_to_binary(Alive), Port),
    Self = self(),
    spawn(fun() ->
                  Self ! {connected,
                          peer:call(Peer, net_kernel, connect_node, [Name],
                                    10000)}
          end),
    {ok, S} = gen_tcp:accept(L, 10000),
    SendName = recv_hs(S),
    <<$N, _:64, _:32, _/binary>> = SendName,
    ok = gen_tcp:send(S, hs_msg(<<$s, (list_to_binary(Status))/binary>>)),
    StatusReply = case Status of
                      "alive" -> [hs_msg(recv_hs(S))];
                      _ -> []
                  end,
    NameBin = atom_to_binary(Name, utf8),
    ok = gen_tcp:send(S, hs_msg(<<$N, Flags:64, ?OUR_CHALLENGE:32,
                                  ?CREATION:32, (byte_size(NameBin)):16,
                                  NameBin/binary>>)),
    Reply = recv_hs(S),
    <<$r, PeerChallenge:32, Digest:16/binary>> = Reply,
    Digest = digest(?OUR_CHALLENGE),
    ok = gen_tcp:send(S, hs_msg(<<$a, (digest(PeerChallenge))/binary>>)),
    receive {connected, true} -> ok after 10000 -> error(no_connection) end,
    Answer = case Status of "alive" -> 4; _ -> 0 end,
    hs_seed("acceptor_" ++ Tag, 0, Answer,
            [hs_msg(SendName), StatusReply, hs_msg(Reply)]),
    control_seeds(Peer, S, Name, Tag),
    gen_tcp:close(S),
    gen_tcp:close(L).

%% A pid or reference of the fake node Name, of our creation.
fake_pid(Name, Id) ->
    N = atom_to_binary(Name, utf8),
    binary_to_term(<<131, 88, 119, (byte_size(N)), N/binary, Id:32, 0:32,
                     ?CREATION:32>>).

fake_ref(Name) ->
    N = atom_to_binary(Name, utf8),
    binary_to_term(<<131, 90, 3:16, 119, (byte_size(N)), N/binary,
                     ?CREATION:32, 1:32, 2:32, 3:32>>).

%% Evaluates Text (Erlang expressions) on the real node, with Bindings.
ev(Peer, Text, Bindings) ->
    {ok, Toks, _} = erl_scan:string(Text),
    {ok, Exprs} = erl_parse:parse_exprs(Toks),
    %% erl_eval's bindings are an orddict.
    catch peer:call(Peer, erl_eval, exprs, [Exprs, lists:sort(Bindings)],
                    10000).

%% Sends frames to the real node from the fake node.
send_frame(S, Ctl) ->
    C = <<$p, (term_to_binary(Ctl))/binary>>,
    ok = gen_tcp:send(S, <<(byte_size(C)):32, C/binary>>).

%% Every frame that arrives within Ms, ticks left out.
frames(S, Ms) ->
    case gen_tcp:recv(S, 4, Ms) of
        {ok, <<0:32>>} -> frames(S, Ms);
        {ok, <<Len:32>>} ->
            {ok, F} = gen_tcp:recv(S, Len, 5000),
            [F | frames(S, Ms)];
        {error, timeout} -> []
    end.

control_seeds(Peer, S, Name, Tag) ->
    P = fake_pid(Name, 100),
    B = [{'P', P}, {'N', Name}, {'A', fake_ref(Name)}],
    Ops =
        [{"reg_send", "{kv, N} ! {put, key, #{v => [1.5, <<\"x\">>]}}."},
         {"gen_call_name", "catch gen_server:call({kv, N}, get, 200)."},
         {"gen_call_pid", "catch gen_server:call(P, {get, 1}, 200)."},
         {"send", "P ! {hello, self(), make_ref()}."},
         {"alias_send", "A ! {reply, 42}."},
         {"link_unlink", "link(P), unlink(P)."},
         {"monitor_demonitor", "R = monitor(process, P), demonitor(R)."},
         {"exit2", "exit(P, {shutdown, because})."},
         {"exit_linked", "spawn(fun() -> link(P), exit(crashed) end), "
                         "timer:sleep(100)."},
         {"trace_reg_send", "seq_trace:set_token(label, 17), "
                            "{kv, N} ! traced, seq_trace:set_token([])."},
         {"trace_send", "seq_trace:set_token(label, 17), P ! traced, "
                        "seq_trace:set_token([])."},
         {"trace_exit2", "seq_trace:set_token(label, 17), exit(P, traced), "
                         "seq_trace:set_token([])."},
         {"trace_alias", "seq_trace:set_token(label, 17), A ! traced, "
                         "seq_trace:set_token([])."},
         %% SPAWN_REQUEST, to the fake node that offers DFLAG_SPAWN.
         {"spawn_request", "catch erpc:call(N, erlang, node, [], 200), "
                           "catch spawn_link(N, m, f, [1]), ok."}],
    [begin
         {value, _, _} = ev(Peer, Text, B),
         control_seed(Tag ++ "_" ++ Op, frames(S, 300))
     end || {Op, Text} <- Ops],
    %% Frames the real node sends in answer to ours: a monitor of one of
    %% its processes, a link to another, both of which then die, and the
    %% new unlink protocol's acknowledgement.
    {value, Victim, _} = ev(Peer, "spawn(fun() -> receive _ -> "
                                  "exit({bye, self()}) end end).", []),
    {value, Linked, _} = ev(Peer, "spawn(fun() -> receive _ -> "
                                  "exit(normal) end end).", []),
    {value, Other, _} = ev(Peer, "spawn(fun() -> timer:sleep(infinity) "
                                 "end).", []),
    send_frame(S, {19, P, Victim, make_ref()}),
    send_frame(S, {1, P, Linked}),
    send_frame(S, {1, P, Other}),
    send_frame(S, {35, 7, P, Other}),
    timer:sleep(200),
    _ = ev(Peer, "V ! go, L ! go.", [{'V', Victim}, {'L', Linked}]),
    control_seed(Tag ++ "_answers", frames(S, 300)),
    ok.

control_seed(Name, Frames) ->
    Numbered = lists:zip(lists:seq(1, length(Frames)), Frames),
    [write("fuzz_control", Name ++ "_" ++ integer_to_list(I), F)
     || {I, F} <- Numbered].

%% Headers alone: the target's own valid transcript (1 to 3 messages, as
%% either side, with arbitration ok or alive) and nothing after it.
prefix_seeds() ->
    [write("fuzz_handshake",
           lists:flatten(io_lib:format("prefix~b_~s_~b", [P, Side, A])),
           <<(I bor (A bsl 1) bor (P bsl 4)), 0, 0, 0, P>>)
     || P <- [1, 2, 3], {I, Side} <- [{0, "acceptor"}, {1, "initiator"}],
        A <- [0, 4]],
    ok.

%% A fake node dials the real node: the real node's status, challenge and
%% ack are fuzz_handshake seeds for the dialling side.  Then the same name
%% dials again while that connection lives, and the real node says alive.
we_dial(Peer) ->
    {ok, Port} = real_port(),
    S1 = dial(Port, 'fake3@127.0.0.1', "initiator"),
    S2 = dial(Port, 'fake3@127.0.0.1', "initiator_alive"),
    gen_tcp:close(S2),
    gen_tcp:close(S1),
    _ = Peer,
    ok.

real_port() ->
    case epmd_ask(<<"real">>) of
        <<119, 0, Port:16, _/binary>> -> {ok, Port}
    end.

dial(Port, Name, SeedName) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port,
                              [binary, {active, false}, {packet, raw}]),
    NameBin = atom_to_binary(Name, utf8),
    ok = gen_tcp:send(S, hs_msg(<<$N, ?OURS:64, ?CREATION:32,
                                  (byte_size(NameBin)):16,
                                  NameBin/binary>>)),
    Status = recv_hs(S),
    Answer = case Status of
                 <<$s, "alive">> ->
                     ok = gen_tcp:send(S, hs_msg(<<$s, "true">>)),
                     4;
                 <<$s, "ok", _/binary>> ->
                     0
             end,
    Challenge = recv_hs(S),
    <<$N, _:64, PeerChallenge:32, _/binary>> = Challenge,
    ok = gen_tcp:send(S, hs_msg(<<$r, ?OUR_CHALLENGE:32,
                                  (digest(PeerChallenge))/binary>>)),
    Ack = recv_hs(S),
    <<$a, Digest:16/binary>> = Ack,
    Digest = digest(?OUR_CHALLENGE),
    hs_seed(SeedName, 1, Answer,
            [hs_msg(Status), hs_msg(Challenge), hs_msg(Ack)]),
    S.
