%% cn_erl_server: an ordinary gen_server on the test node, for the node's
%% echo server to call, cast and send to (the C-calls-Erlang direction).
%%
%% Calls: {sleep, Ms} replies ok after Ms (blocking); noreply never
%% replies; {stop, Reason} stops with Reason without replying; anything
%% else X is answered {got, X}.  Casts and plain messages are forwarded to
%% the process that started the server, as {cast, Msg} and {info, Msg}.
-module(cn_erl_server).
-behaviour(gen_server).

-export([start/1, start/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% Starts a server registered as Name (unlinked, so that its exit reasons
%% do not reach the test case process).
start(Name) ->
    gen_server:start({local, Name}, ?MODULE, self(), []).

%% Starts an unregistered one.
start() ->
    gen_server:start(?MODULE, self(), []).

init(Owner) ->
    {ok, Owner}.

handle_call({sleep, Ms}, _From, Owner) ->
    timer:sleep(Ms),
    {reply, ok, Owner};
handle_call(noreply, _From, Owner) ->
    {noreply, Owner};
handle_call({stop, Reason}, _From, Owner) ->
    {stop, Reason, Owner};
handle_call(Req, _From, Owner) ->
    {reply, {got, Req}, Owner}.

handle_cast(Msg, Owner) ->
    Owner ! {cast, Msg},
    {noreply, Owner}.

handle_info(Msg, Owner) ->
    Owner ! {info, Msg},
    {noreply, Owner}.
