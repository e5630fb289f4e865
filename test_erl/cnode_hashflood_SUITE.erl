%% cnode_hashflood_SUITE: hash flooding against the kv server (issue 7).
%%
%% Until issue 7, kv's table hashed keys with an unkeyed function that
%% anyone could read in the source, and every step of it can be run
%% backwards, so a peer could build any number of distinct binaries with
%% one hash and put them all in one chain.  The attacker's model below is
%% a copy of that old function (checked against a value the old library
%% returned); the crafted keys are checked to collide under it, then put
%% into kv, read back and deleted, as many random keys are.  The keyed
%% hash is what keeps these calls from turning quadratic; the suite checks
%% only that every call completes with the right answer, never how fast.
-module(cnode_hashflood_SUITE).

-include_lib("common_test/include/ct.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([crafted_keys/1, random_keys/1]).

-define(N, 20000).
-define(M64, 16#FFFFFFFFFFFFFFFF).
-define(SEED, 16#243F6A8885A308D3).
-define(MUL, 16#9E3779B97F4A7C15).
-define(H_BITS, 14).
-define(TARGET, 16#C0111DE5C0111DE5).

suite() ->
    [{timetrap, {seconds, 300}}].

all() ->
    [crafted_keys, random_keys].

init_per_suite(Config) ->
    CN = cn_node:start(),
    [{cn, CN}, {node, cn_node:node_name(CN)} | Config].

end_per_suite(Config) ->
    {ok, 0} = cn_node:stop(?config(cn, Config)),
    ok.

%% ---- The attacker's model of the old cn_term_hash ---------------------------

hmix(H, V) ->
    X = ((H bxor V) * ?MUL) band ?M64,
    X bxor (X bsr 29).

fmix(H0) ->
    H1 = H0 bxor (H0 bsr 33),
    H2 = (H1 * 16#FF51AFD7ED558CCD) band ?M64,
    H3 = H2 bxor (H2 bsr 33),
    H4 = (H3 * 16#C4CEB9FE1A85EC53) band ?M64,
    H4 bxor (H4 bsr 33).

%% Bytes as the old hash took them: the length, then little-endian words,
%% the last one padded with zeros.
hbytes(H, Bin) ->
    words(hmix(H, byte_size(Bin)), Bin).

words(H, <<W:64/little, Rest/binary>>) -> words(hmix(H, W), Rest);
words(H, <<>>) -> H;
words(H, Tail) ->
    Bits = bit_size(Tail),
    <<W:Bits/little>> = Tail,
    hmix(H, W).

%% The old cn_term_hash of a binary of at least one byte.
old_hash(Bin) ->
    N = byte_size(Bin) - 1,
    <<Body:N/binary, Last>> = Bin,
    H = hbytes(hmix(hmix(?SEED, ?H_BITS), 8), Body),
    fmix(hmix(H, Last)).

%% The inverse of an odd number modulo 2^64 (Newton's iteration).
inverse(A) ->
    lists:foldl(fun(_, X) -> (X * (2 - A * X)) band ?M64 end, A,
                lists:seq(1, 5)).

%% Undoes one hmix(X, 0) step.
unmix(Z) ->
    Y = Z bxor (Z bsr 29) bxor (Z bsr 58),
    (Y * inverse(?MUL)) band ?M64.

%% A 17-byte binary whose old hash is fmix(Target): bytes 0..7 hold I,
%% bytes 8..15 are solved for by running the last two steps backwards.
collider(I, Target) ->
    H = hmix(hmix(hmix(hmix(?SEED, ?H_BITS), 8), 16), I),
    W1 = unmix(unmix(Target) bxor $!) bxor H,
    <<I:64/little, W1:64/little, $!>>.

%% ---- Cases ------------------------------------------------------------------

crafted_keys(Config) ->
    %% The model is the old code: the old library hashed this binary so.
    16#CD8240C787362775 = old_hash(<<"0123456789abcdef!">>),
    Keys = [collider(I, ?TARGET) || I <- lists:seq(1, ?N)],
    ?N = length(lists:usort(Keys)),
    [_] = lists:usort([old_hash(K) || K <- Keys]),
    fill_and_check(Config, Keys).

random_keys(Config) ->
    Keys = [<<I:32, (crypto:strong_rand_bytes(12))/binary>>
            || I <- lists:seq(1, ?N)],
    fill_and_check(Config, Keys).

%% Puts every key (its value is its position), reads every one back, checks
%% the keys reply, then deletes them all and checks they are gone.
fill_and_check(Config, Keys) ->
    Node = ?config(node, Config),
    KV = fun(Req) -> gen_server:call({kv, Node}, Req, 30000) end,
    Indexed = lists:zip(lists:seq(1, length(Keys)), Keys),
    [ok = KV({put, K, I}) || {I, K} <- Indexed],
    [{ok, I} = KV({get, K}) || {I, K} <- Indexed],
    Stored = KV(keys),
    true = lists:sort(Keys) =:= lists:sort(Stored),
    [ok = KV({delete, K}) || K <- Keys],
    [error = KV({get, K}) || K <- Keys],
    [] = KV(keys),
    ok.
