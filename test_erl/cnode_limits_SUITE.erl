%% cnode_limits_SUITE: nothing lost, nothing hangs.
%%
%% Large messages travel both ways in fragments (a 70 MB kv value, a
%% 300 MB echo), and small calls on the same connection are not held up
%% behind them.  At each limit only the one request that passed it fails,
%% at once, with a reason the caller can read, and nothing else changes:
%%   --max-message   a call over it exits with {message_too_large, Max};
%%                   a reply over it the same, and the server lives on;
%%                   an exit signal over it still fires, with that reason;
%%   --max-mailbox   a call to a full mailbox exits with
%%                   {mailbox_full, Max}; casts over it are dropped and
%%                   counted.
%% The test node's connection never goes down meanwhile, and the servers
%% keep their state.
-module(cnode_limits_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).

-export([kv_70mb_roundtrip/1, echo_300mb_roundtrip/1,
         small_calls_not_held_up/1, same_server_not_held_up/1,
         big_then_small_keep_order/1, call_over_limit_fails_at_once/1,
         reply_over_limit_keeps_server/1, limit_is_exact/1,
         exit_reason_over_limit_still_fires/1,
         mailbox_full_call_fails_at_once/1]).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [kv_70mb_roundtrip, echo_300mb_roundtrip, small_calls_not_held_up,
     same_server_not_held_up, big_then_small_keep_order,
     call_over_limit_fails_at_once, reply_over_limit_keeps_server,
     limit_is_exact, exit_reason_over_limit_still_fires,
     mailbox_full_call_fails_at_once].

-define(MB, 1000000).
-define(MIB, 1048576).

init_per_suite(Config) ->
    ok = cn_node:ensure_dist(),
    Config.

end_per_suite(_Config) ->
    ok.

%% A node of the test case's own, with extra command-line arguments; fun
%% gets its name.  The test node's connection to it must not go down.
with_node(Args, Fun) ->
    CN = cn_node:start(#{owner => self(), args => Args}),
    N = cn_node:node_name(CN),
    try
        pong = net_adm:ping(N),
        true = erlang:monitor_node(N, true),
        Fun(N),
        receive {nodedown, N} -> ct:fail({nodedown, N})
        after 0 -> ok
        end
    after
        {ok, 0} = cn_node:stop(CN)
    end.

%% The exit reason of a call that fails, without its {gen_server, call,
%% Args} part (which holds the whole request).
call_exit(Dest, Req, Timeout) ->
    try gen_server:call(Dest, Req, Timeout) of
        Reply -> {reply, size_of(Reply)}
    catch
        exit:{Reason, {gen_server, call, _}} -> {exit, Reason}
    end.

size_of(B) when is_binary(B) -> {binary, byte_size(B)};
size_of(T) -> T.

%% ---- large messages --------------------------------------------------------

%% A 70 MB value goes into kv and comes back whole, and kv keeps its other
%% keys throughout.
kv_70mb_roundtrip(_Config) ->
    with_node([], fun(N) ->
        ok = gen_server:call({kv, N}, {put, small, 1}),
        Big = crypto:strong_rand_bytes(70 * ?MB),
        ok = gen_server:call({kv, N}, {put, big, Big}, 60000),
        {ok, Back} = gen_server:call({kv, N}, {get, big}, 60000),
        ?assert(Back =:= Big),
        {ok, 1} = gen_server:call({kv, N}, {get, small})
    end).

%% 300 MB to echo and back.
echo_300mb_roundtrip(_Config) ->
    with_node([], fun(N) ->
        Big = binary:copy(crypto:strong_rand_bytes(?MB), 300),
        T0 = erlang:monotonic_time(),
        Back = gen_server:call({echo, N}, {echo, Big}, 120000),
        ct:log("300 MB echo in ~p ms", [cn_node:elapsed_ms(T0)]),
        ?assert(Back =:= Big)
    end).

%% While a 300 MB echo goes out and comes back, small calls to kv from
%% another process on the same node, over the same connection, keep being
%% answered: they do not wait behind it.
small_calls_not_held_up(_Config) ->
    with_node([], fun(N) ->
        Self = self(),
        Big = binary:copy(<<7>>, 300 * ?MB),
        spawn_link(fun() ->
                           Back = gen_server:call({echo, N}, {echo, Big}, 120000),
                           Self ! {big_done, byte_size(Back)}
                   end),
        Small = fun Loop(I, Lat) ->
                        receive
                            {big_done, Size} -> {I, Size, Lat}
                        after 0 ->
                                T0 = erlang:monotonic_time(),
                                ok = gen_server:call({kv, N}, {put, I, I}, 60000),
                                Loop(I + 1, [cn_node:elapsed_ms(T0) | Lat])
                        end
                end,
        {Calls, Size, Lat} = Small(0, []),
        Sorted = lists:sort(Lat),
        ct:log("~p small calls during the 300 MB echo; median ~p ms, max ~p ms",
               [Calls, lists:nth(max(1, length(Sorted) div 2), Sorted),
                lists:last([0 | Sorted])]),
        300 * ?MB = Size,
        ?assert(Calls >= 20)
    end).

%% While echo's 300 MB reply to one caller goes out, echo itself goes on
%% answering small calls from another: its small replies do not queue
%% behind the large one (Erlang orders messages per pair of processes
%% only), and echo is not suspended until the large reply is out.  The
%% small calls begin once the large request has been taken (the first
%% small call is answered after it, by the same server).
same_server_not_held_up(_Config) ->
    with_node([], fun(N) ->
        Self = self(),
        spawn_link(fun() ->
                           Self ! big_sent,
                           Back = gen_server:call({echo, N}, {blob, 300 * ?MB},
                                                  120000),
                           Self ! {big_done, byte_size(Back)}
                   end),
        receive big_sent -> ok end,
        timer:sleep(50),
        Small = fun Loop(I, Lat) ->
                        receive
                            {big_done, Size} -> {I, Size, Lat}
                        after 0 ->
                                T0 = erlang:monotonic_time(),
                                I = gen_server:call({echo, N}, {echo, I}, 60000),
                                Loop(I + 1, [cn_node:elapsed_ms(T0) | Lat])
                        end
                end,
        {Calls, Size, Lat} = Small(0, []),
        Sorted = lists:sort(Lat),
        ct:log("~p small calls to echo during its 300 MB reply; median ~p ms, "
               "max ~p ms", [Calls, lists:nth(max(1, length(Sorted) div 2),
                                              Sorted),
                              lists:last([0 | Sorted])]),
        300 * ?MB = Size,
        ?assert(Calls >= 10)
    end).

%% One sender's messages to one receiver keep their order when a large
%% one comes first: echo, told to send this process a 20 MB binary and
%% then small messages (casts {send, Dest, Msg}, served in order), is
%% seen to deliver them in that order.
big_then_small_keep_order(_Config) ->
    with_node([], fun(N) ->
        Big = binary:copy(<<3>>, 20 * ?MB),
        Me = self(),
        gen_server:cast({echo, N}, {send, Me, {big, Big}}),
        [gen_server:cast({echo, N}, {send, Me, {small, I}})
         || I <- lists:seq(1, 50)],
        %% Each message as it comes, whatever it is: the big one first,
        %% then the small ones in sequence.
        First = receive M0 -> M0 after 60000 -> ct:fail(no_message) end,
        ?assertMatch({big, _}, First),
        {big, B} = First,
        ?assert(B =:= Big),
        [receive M -> ?assertEqual({small, I}, M)
         after 60000 -> ct:fail({no_small_message, I})
         end || I <- lists:seq(1, 50)],
        receive Other -> ct:fail({unexpected, Other}) after 100 -> ok end
    end).

%% ---- --max-message ---------------------------------------------------------

%% A 140 MB call to a node whose limit is 100 MiB fails at once (with an
%% infinite timeout it could only hang otherwise), with the documented
%% reason; kv keeps its keys, and a call in flight on the same connection
%% gets its reply.
call_over_limit_fails_at_once(_Config) ->
    with_node(["--max-message", "100M"], fun(N) ->
        ok = gen_server:call({kv, N}, {put, kept, yes}),
        Self = self(),
        spawn_link(fun() ->
                           Self ! {slept, gen_server:call({echo, N}, {sleep, 2000})}
                   end),
        timer:sleep(100),
        Big = binary:copy(<<1>>, 140 * ?MB),
        {exit, {message_too_large, 104857600}} =
            call_exit({kv, N}, {put, big, Big}, infinity),
        {exit, {message_too_large, 104857600}} =
            call_exit({echo, N}, {echo, Big}, infinity),
        receive {slept, ok} -> ok after 10000 -> ct:fail(sleep_lost) end,
        {ok, yes} = gen_server:call({kv, N}, {get, kept}),
        error = gen_server:call({kv, N}, {get, big})
    end).

%% A reply over the limit: the caller's call fails at once, and echo goes
%% on, the same process, serving.
reply_over_limit_keeps_server(_Config) ->
    with_node(["--max-message", "10M"], fun(N) ->
        Echo = gen_server:call({echo, N}, pid),
        {exit, {message_too_large, 10485760}} =
            call_exit({echo, N}, {blob, 20 * ?MB}, infinity),
        Blob = gen_server:call({echo, N}, {blob, ?MB}),
        ?MB = byte_size(Blob),
        Echo = gen_server:call({echo, N}, pid)
    end).

%% A message term of exactly --max-message bytes is carried, both ways;
%% one byte more is not.
limit_is_exact(_Config) ->
    with_node(["--max-message", "1M"], fun(N) ->
        %% {echo, Bin} on the wire: 2 (tuple) + 6 (echo, a small UTF-8
        %% atom) + 5 (binary header) + Bin.
        AtLimit = binary:copy(<<3>>, ?MIB - 13),
        ?MIB = byte_size(term_to_binary({echo, AtLimit}, [{minor_version, 2}])) - 1,
        Back = gen_server:call({echo, N}, {echo, AtLimit}),
        ?assert(Back =:= AtLimit),
        Over = <<AtLimit/binary, 3>>,
        {exit, {message_too_large, ?MIB}} =
            call_exit({echo, N}, {echo, Over}, infinity),
        %% Replies: a binary of N bytes is N + 5 bytes of term.
        {reply, {binary, Max}} = call_exit({echo, N}, {blob, ?MIB - 5}, 5000),
        ?MIB = Max + 5,
        {exit, {message_too_large, ?MIB}} =
            call_exit({echo, N}, {blob, ?MIB - 4}, infinity)
    end).

%% An exit signal whose reason is over the limit is not lost: it fires,
%% with {message_too_large, Max} as its reason.
exit_reason_over_limit_still_fires(_Config) ->
    with_node(["--max-message", "1M"], fun(N) ->
        Echo = gen_server:call({echo, N}, pid),
        Ref = erlang:monitor(process, Echo),
        exit(Echo, {because, binary:copy(<<0>>, 2 * ?MIB)}),
        receive
            {'DOWN', Ref, process, Echo, Reason} ->
                {message_too_large, ?MIB} = Reason
        after 10000 ->
                ct:fail(no_down)
        end,
        %% cnode_sup starts a new echo.
        cn_node:wait_until(fun() ->
                                   catch gen_server:call({echo, N}, pid, 1000) =/= Echo
                           end, 10000)
    end).

%% ---- --max-mailbox ---------------------------------------------------------

%% echo stuck in a handler for 2 s with 4 messages waiting: a call fails at
%% once with {mailbox_full, 4}, casts are dropped and counted, and once
%% echo is back it has handled exactly what it took.
mailbox_full_call_fails_at_once(_Config) ->
    with_node(["--max-mailbox", "4"], fun(N) ->
        gen_server:cast({echo, N}, {hold, 2000}),
        timer:sleep(300),
        [gen_server:cast({echo, N}, {send, self(), {took, I}}) || I <- lists:seq(1, 6)],
        {exit, {mailbox_full, 4}} = call_exit({echo, N}, {echo, x}, infinity),
        Took = [receive {took, I} -> I after 10000 -> missing end
                || I <- lists:seq(1, 4)],
        [1, 2, 3, 4] = Took,
        receive {took, Extra} -> ct:fail({dropped_cast_ran, Extra})
        after 500 -> ok
        end,
        {ok, {0, Dropped, Refused}} = gen_server:call({echo, N}, {mailbox, echo}),
        ct:log("dropped ~p, refused ~p", [Dropped, Refused]),
        2 = Dropped,
        1 = Refused,
        x = gen_server:call({echo, N}, {echo, x})
    end).
