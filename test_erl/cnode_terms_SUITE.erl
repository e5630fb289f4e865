%% cnode_terms_SUITE: terms of every kind through the node and back.
%%
%% echo must return every term unchanged (=:=), and kv must store any term
%% as a key or a value.  The random terms are seeded: the seed is printed,
%% and CN_SEED=<seed> replays a run.  A term that does not come back is
%% saved (term_to_binary) in the case's private directory.
-module(cnode_terms_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([special_terms/1, random_terms/1, random_terms_batched/1,
         random_kv_keys/1, deep_but_legal/1, long_and_wide/1]).

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [special_terms, random_terms, random_terms_batched, random_kv_keys,
     deep_but_legal, long_and_wide].

init_per_suite(Config) ->
    CN = cn_node:start(),
    N = cn_node:node_name(CN),
    Seed = case os:getenv("CN_SEED") of
               false -> erlang:phash2({erlang:system_time(), self()});
               S -> list_to_integer(S)
           end,
    ct:pal("random terms: seed ~p (replay with CN_SEED=~p)", [Seed, Seed]),
    [{cn, CN}, {node, N}, {seed, Seed} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

%% ---- helpers ---------------------------------------------------------------

echo(Config, T) ->
    gen_server:call({echo, ?config(node, Config)}, {echo, T}, 30000).

%% Echoes T and fails, saving T, when it does not come back unchanged.
check_echo(Config, What, T) ->
    case catch echo(Config, T) of
        Back when Back =:= T ->
            ok;
        Other ->
            fail(Config, What, T, Other)
    end.

fail(Config, What, T, Other) ->
    File = filename:join(?config(priv_dir, Config),
                         lists:flatten(io_lib:format("failed_~p.bin", [What]))),
    ok = file:write_file(File, term_to_binary({T, Other})),
    ct:fail({not_unchanged, What, {seed, ?config(seed, Config)},
             {sent, short(T)}, {got, short(Other)}, {saved_in, File}}).

short(T) ->
    lists:flatten(io_lib:format("~P", [T, 15])).

seed(Config, Salt) ->
    _ = rand:seed(exsss, {?config(seed, Config), Salt, 1}),
    ok.

%% ---- term pools ------------------------------------------------------------

%% Atoms of every shape, including the longest an atom can be (255
%% characters, 1020 bytes of UTF-8).
atoms() ->
    [a, '', true, false, undefined, nil, 'hello world', 'ünïcødé', '日本語',
     'Ωμέγα', '😀', 'a@b', '$gen_call',
     list_to_atom(lists:duplicate(255, $z)),
     list_to_atom(lists:duplicate(255, 16#1F600)),
     list_to_atom(lists:duplicate(255, 16#E9))].

%% A pid, port or reference of a node that is not connected, made from its
%% external format (V4 port ids, 5-word references, big creations).
other_node() -> 'other_node@somewhere'.

atom_ext(A) ->
    B = atom_to_binary(A, utf8),
    <<119, (byte_size(B)), B/binary>>.

fake_pid(Node, Id, Serial, Creation) ->
    binary_to_term(<<131, 88, (atom_ext(Node))/binary, Id:32, Serial:32,
                     Creation:32>>).

fake_port(Node, Id, Creation) ->
    binary_to_term(<<131, 120, (atom_ext(Node))/binary, Id:64, Creation:32>>).

fake_ref(Node, Creation, Words) ->
    binary_to_term(<<131, 90, (length(Words)):16, (atom_ext(Node))/binary,
                     Creation:32, << <<W:32>> || W <- Words >>/binary>>).

identifiers(Config) ->
    N = ?config(node, Config),
    Echo = gen_server:call({echo, N}, pid),
    Dead = spawn(fun() -> ok end),
    [self(), Dead, Echo, make_ref(), erlang:alias(), hd(erlang:ports()),
     erlang:monitor(process, {echo, N}),
     fake_pid(other_node(), 1, 0, 1),
     fake_pid(other_node(), 16#ffffffff, 16#ffffffff, 16#ffffffff),
     fake_pid(N, 77777, 3, 12345),
     fake_port(other_node(), 16#123456789abcdef, 4),
     fake_port(other_node(), 1, 16#ffffffff),
     fake_ref(other_node(), 3, [1, 2, 3]),
     fake_ref(other_node(), 16#ffffffff, [16#3ffff, 16#ffffffff, 7, 8, 9]),
     fake_ref(N, 99, [5, 6, 7])].

funs() ->
    X = {captured, [1, 2, 3]},
    Y = 42,
    [fun() -> X end,
     fun(A) -> A + Y end,
     fun(A, B) -> {A, B, X, Y} end,
     fun ?MODULE:all/0,
     fun lists:map/2,
     fun erlang:node/0,
     erlang:make_fun('ünïcødé', '日本', 3),
     erlang:make_fun(no_such_module, f, 255)].

special_terms(Config) ->
    Ints = [0, 1, -1, 255, 256, -256, (1 bsl 27) - 1, -(1 bsl 27),
            (1 bsl 31) - 1, -(1 bsl 31), 1 bsl 31, (1 bsl 63) - 1,
            -(1 bsl 63), 1 bsl 63, (1 bsl 64) - 1, 1 bsl 64, -(1 bsl 64),
            1 bsl 1000, -(1 bsl 1000), (1 bsl 8000) - 1],
    Floats = [0.0, -0.0, 1.0, -1.5, 5.0e-324, 2.2250738585072014e-308,
              1.7976931348623157e308, -1.7976931348623157e308, 3.141592653589793],
    Bins = [<<>>, <<0>>, <<"日本語"/utf8>>, <<1:1>>, <<255, 7:3>>,
            binary:part(<<"0123456789">>, 3, 4),
            binary:copy(<<1, 2, 3>>, 30000),
            <<(binary:copy(<<"x">>, 100))/binary, 5:5>>],
    Lists = [[], [[]], "string", [1 | 2], [a, b | c], [[] | []], [{} | <<>>],
             lists:seq(1, 300), [16#10FFFF, 0, 16#D7FF], "ünï"],
    Tuples = [{}, {{}}, {a}, list_to_tuple(lists:seq(1, 300)),
              {1, {2, {3, {4, {5}}}}}],
    Maps = [#{}, #{a => 1}, #{#{} => #{}}, #{[] => [], {} => {}, <<>> => <<>>},
            #{1 => int, 1.0 => float},
            maps:from_list([{I, I} || I <- lists:seq(1, 32)]),
            maps:from_list([{I, I} || I <- lists:seq(1, 33)]),
            maps:from_list([{{k, I}, <<I:16>>} || I <- lists:seq(1, 5000)]),
            #{self() => pid, make_ref() => ref, fun erlang:node/0 => 'fun'}],
    All = Ints ++ Floats ++ Bins ++ Lists ++ Tuples ++ Maps ++ atoms()
        ++ identifiers(Config) ++ funs(),
    [check_echo(Config, {special, I}, T)
     || {I, T} <- lists:zip(lists:seq(1, length(All)), All)],
    %% All of them at once.
    check_echo(Config, special_all, {All, list_to_tuple(All)}).

%% ---- random terms ----------------------------------------------------------

random_terms(Config) ->
    seed(Config, 1),
    Pool = pool(Config),
    [check_echo(Config, {random, I}, gen(Pool, 0))
     || I <- lists:seq(1, 300)],
    ok.

%% Fifty random terms per call, a few times.
random_terms_batched(Config) ->
    seed(Config, 2),
    Pool = pool(Config),
    [check_echo(Config, {batch, I}, [gen(Pool, 1) || _ <- lists:seq(1, 50)])
     || I <- lists:seq(1, 5)],
    ok.

%% Random terms as kv keys and values: each key finds its own value, and
%% keys lists exactly what was put.
random_kv_keys(Config) ->
    seed(Config, 3),
    N = ?config(node, Config),
    Pool = pool(Config),
    [ok = gen_server:call({kv, N}, {delete, K}) || K <- gen_server:call({kv, N}, keys)],
    Pairs0 = [{gen(Pool, 2), gen(Pool, 2)} || _ <- lists:seq(1, 100)],
    %% Random keys may repeat: the last value wins, as in a map.
    Map = maps:from_list(Pairs0),
    [ok = gen_server:call({kv, N}, {put, K, V}) || {K, V} <- Pairs0],
    [case gen_server:call({kv, N}, {get, K}, 10000) of
         {ok, Got} when Got =:= V -> ok;
         Other -> fail(Config, {kv_get, K}, V, Other)
     end || {K, V} <- maps:to_list(Map)],
    Keys = gen_server:call({kv, N}, keys, 10000),
    case same_keys(Keys, maps:keys(Map)) of
        true -> ok;
        false -> fail(Config, kv_keys, maps:keys(Map), Keys)
    end,
    [ok = gen_server:call({kv, N}, {delete, K}) || K <- maps:keys(Map)],
    [] = gen_server:call({kv, N}, keys).

%% The same keys, compared by =:= as kv and Erlang's maps compare them.
%% Not by their encodings: before OTP 27, 0.0 =:= -0.0, and which of the
%% two a map keeps when both are put differs (OTP 25 keeps the first in a
%% small map, the last in a large one).
same_keys(A, B) ->
    In = fun(K, L) -> lists:any(fun(J) -> J =:= K end, L) end,
    length(A) =:= length(B) andalso lists:all(fun(K) -> In(K, B) end, A)
        andalso lists:all(fun(K) -> In(K, A) end, B).

pool(Config) ->
    #{atoms => list_to_tuple(atoms() ++ [random_atom() || _ <- lists:seq(1, 40)]),
      ids => list_to_tuple(identifiers(Config)),
      funs => list_to_tuple(funs())}.

pick(Tuple) ->
    element(rand:uniform(tuple_size(Tuple)), Tuple).

-define(MAX_DEPTH, 6).

gen(Pool, Depth) when Depth >= ?MAX_DEPTH ->
    leaf(Pool);
gen(Pool, Depth) ->
    D = Depth + 1,
    case rand:uniform(12) of
        R when R =< 4 -> leaf(Pool);
        5 -> list_to_tuple([gen(Pool, D) || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        6 -> [gen(Pool, D) || _ <- lists:seq(1, rand:uniform(6) - 1)];
        7 -> improper(Pool, D);
        8 -> small_map(Pool, D);
        9 -> case rand:uniform(4) of
                 1 -> large_map(Pool, D);
                 _ -> small_map(Pool, D)
             end;
        10 -> closure(gen(Pool, D), gen(Pool, D));
        11 -> {gen(Pool, D), gen(Pool, D)};
        12 -> [gen(Pool, D) | gen(Pool, D)]
    end.

improper(Pool, D) ->
    Tail = case leaf(Pool) of
               L when is_list(L) -> tail;
               T -> T
           end,
    lists:foldl(fun(_, Acc) -> [gen(Pool, D) | Acc] end, Tail,
                lists:seq(1, rand:uniform(4))).

small_map(Pool, D) ->
    maps:from_list([{gen(Pool, D), gen(Pool, D)}
                    || _ <- lists:seq(1, rand:uniform(8) - 1)]).

%% More than 32 keys: a hash map on the BEAM.
large_map(Pool, D) ->
    maps:from_list([{leaf(Pool), gen(Pool, max(D, ?MAX_DEPTH - 1))}
                    || _ <- lists:seq(1, 33 + rand:uniform(200))]).

closure(A, B) ->
    case rand:uniform(3) of
        1 -> fun() -> A end;
        2 -> fun(X) -> {X, A, B} end;
        3 -> fun(X, Y) -> [X, Y, A | B] end
    end.

leaf(Pool) ->
    case rand:uniform(16) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31);
        3 -> bignum();
        4 -> float();
        5 -> float();
        6 -> pick(maps:get(atoms, Pool));
        7 -> pick(maps:get(atoms, Pool));
        8 -> crypto:strong_rand_bytes(rand:uniform(64) - 1);
        9 -> bits();
        10 -> unicode_string();
        11 -> pick(maps:get(ids, Pool));
        12 -> pick(maps:get(funs, Pool));
        13 -> make_ref();
        14 -> [];
        15 -> pick({{}, #{}, <<>>, "", [[]]});
        16 -> case rand:uniform(20) of
                  1 -> crypto:strong_rand_bytes(70000);
                  _ -> sub_binary()
              end
    end.

bignum() ->
    Bits = 60 + rand:uniform(2000),
    <<X:Bits>> = <<(crypto:strong_rand_bytes((Bits + 7) div 8)):Bits/bitstring>>,
    case rand:uniform(2) of
        1 -> X;
        2 -> -X
    end.

float() ->
    case rand:uniform(10) of
        1 -> pick({0.0, -0.0, 5.0e-324, 1.7976931348623157e308, 1.0e-300});
        _ -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300)
    end.

bits() ->
    Bin = crypto:strong_rand_bytes(rand:uniform(20) - 1),
    K = rand:uniform(7),
    <<Bin/binary, (rand:uniform(1 bsl K) - 1):K>>.

sub_binary() ->
    B = crypto:strong_rand_bytes(100),
    Off = rand:uniform(50),
    binary:part(B, Off, rand:uniform(50)).

unicode_string() ->
    [unicode_char() || _ <- lists:seq(1, rand:uniform(20) - 1)].

unicode_char() ->
    case rand:uniform(5) of
        1 -> $a + rand:uniform(26) - 1;
        2 -> 16#C0 + rand:uniform(16#17F - 16#C0);
        3 -> 16#391 + rand:uniform(40);
        4 -> 16#4E00 + rand:uniform(16#9FFF - 16#4E00);
        5 -> 16#1F600 + rand:uniform(80)
    end.

random_atom() ->
    list_to_atom([unicode_char() || _ <- lists:seq(1, rand:uniform(30))]).

%% ---- sizes -------------------------------------------------------------

%% Nesting well inside the node's limit (1024) comes back whole.
deep_but_legal(Config) ->
    Lists = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 500)),
    Tuples = lists:foldl(fun(I, Acc) -> {I, Acc} end, end_, lists:seq(1, 500)),
    Maps = lists:foldl(fun(I, Acc) -> #{I => Acc} end, #{}, lists:seq(1, 500)),
    Mixed = lists:foldl(fun(I, Acc) ->
                                case I rem 3 of
                                    0 -> [Acc | I];
                                    1 -> {Acc};
                                    2 -> #{k => Acc}
                                end
                        end, x, lists:seq(1, 500)),
    check_echo(Config, deep_lists, Lists),
    check_echo(Config, deep_tuples, Tuples),
    check_echo(Config, deep_maps, Maps),
    check_echo(Config, deep_mixed, Mixed).

%% Long lists are not deep; wide maps and tuples.
long_and_wide(Config) ->
    check_echo(Config, long_list, lists:seq(1, 200000)),
    check_echo(Config, long_improper, lists:seq(1, 100000) ++ tail),
    check_echo(Config, long_string, lists:duplicate(100000, 16#1F600)),
    check_echo(Config, wide_tuple, list_to_tuple(lists:seq(1, 100000))),
    check_echo(Config, wide_map,
               maps:from_list([{I, [I]} || I <- lists:seq(1, 50000)])),
    check_echo(Config, many_binaries,
               [<<I:32>> || I <- lists:seq(1, 50000)]).
