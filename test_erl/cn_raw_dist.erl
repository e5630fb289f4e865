%% cn_raw_dist: the distribution protocol by hand, over a plain gen_tcp
%% socket, for the hostile-peer suite.  It plays a (fake) Erlang node that
%% connects to the node under test: the version 6 handshake (send_name 'N',
%% status, challenge, challenge reply with the MD5 digest, challenge ack, as
%% in kernel's dist_util.erl), then frames (4-byte length, 'p', control
%% term, payload term).  Everything can also be sent raw, byte by byte, to
%% break the protocol on purpose.
-module(cn_raw_dist).

-export([connect/1, connect/2, handshake/3, handshake/4,
         send_name/3, recv_hs/2, digest/2,
         send_raw/2, send_frame/2, send_frame/3, frame/1, frame/2,
         fake_pid/2, fake_ref/2, recv_frame/2, recv_msg/2, gen_call/4,
         closed_within/2, deep_list/1, flags/0]).

%% Capability flags (kernel dist.hrl).
-define(DFLAG_EXTENDED_REFERENCES, 16#4).
-define(DFLAG_DIST_MONITOR, 16#8).
-define(DFLAG_FUN_TAGS, 16#10).
-define(DFLAG_DIST_MONITOR_NAME, 16#20).
-define(DFLAG_NEW_FUN_TAGS, 16#80).
-define(DFLAG_EXTENDED_PIDS_PORTS, 16#100).
-define(DFLAG_EXPORT_PTR_TAG, 16#200).
-define(DFLAG_BIT_BINARIES, 16#400).
-define(DFLAG_NEW_FLOATS, 16#800).
-define(DFLAG_UTF8_ATOMS, 16#10000).
-define(DFLAG_MAP_TAG, 16#20000).
-define(DFLAG_BIG_CREATION, 16#40000).
-define(DFLAG_HANDSHAKE_23, 16#1000000).
-define(DFLAG_UNLINK_ID, 16#2000000).
-define(DFLAG_V4_NC, (1 bsl 34)).

%% What the fake node offers: OTP 25's mandatory set and monitors; no
%% ALIAS and no SEND_SENDER, so replies come back as plain SEND.
flags() ->
    ?DFLAG_EXTENDED_REFERENCES bor ?DFLAG_FUN_TAGS bor ?DFLAG_NEW_FUN_TAGS
        bor ?DFLAG_EXTENDED_PIDS_PORTS bor ?DFLAG_EXPORT_PTR_TAG
        bor ?DFLAG_BIT_BINARIES bor ?DFLAG_NEW_FLOATS bor ?DFLAG_UTF8_ATOMS
        bor ?DFLAG_MAP_TAG bor ?DFLAG_BIG_CREATION bor ?DFLAG_HANDSHAKE_23
        bor ?DFLAG_DIST_MONITOR bor ?DFLAG_DIST_MONITOR_NAME
        bor ?DFLAG_UNLINK_ID bor ?DFLAG_V4_NC.

%% A TCP connection to the node's distribution port on loopback, nothing
%% sent yet.
connect(Port) ->
    connect(Port, []).

connect(Port, Opts) ->
    gen_tcp:connect({127, 0, 0, 1}, Port,
                    [binary, {active, false}, {packet, raw}, {nodelay, true}
                     | Opts], 5000).

%% The whole handshake as the connecting side, as the fake node Name
%% (an atom, name@host) with Cookie (an atom); Opts may set the flags it
%% offers (flags), its creation, a wrong digest, socket options.  Returns
%% {ok, Socket, Info} (Info: the node's name, flags and creation) or
%% {error, Why}.
handshake(Port, Name, Cookie) ->
    handshake(Port, Name, Cookie, #{}).

handshake(Port, Name, Cookie, Opts) ->
    {ok, S} = connect(Port, maps:get(socket_opts, Opts, [])),
    Creation = maps:get(creation, Opts, rand:uniform(16#7fffffff)),
    ok = send_name(S, Name, Creation, maps:get(flags, Opts, flags())),
    case recv_hs(S, 5000) of
        {ok, <<$s, "ok">>} ->
            challenge(S, Cookie, Opts);
        {ok, <<$s, Status/binary>>} ->
            gen_tcp:close(S),
            {error, {status, Status}};
        Other ->
            gen_tcp:close(S),
            {error, {status, Other}}
    end.

challenge(S, Cookie, Opts) ->
    case recv_hs(S, 5000) of
        {ok, <<$N, PeerFlags:64, Challenge:32, PeerCreation:32, NLen:16,
               PeerName:NLen/binary>>} ->
            Mine = rand:uniform(16#ffffffff),
            Digest = maps:get(digest, Opts, digest(Challenge, Cookie)),
            ok = send_raw(S, hs_msg(<<$r, Mine:32, Digest/binary>>)),
            case recv_hs(S, 5000) of
                {ok, <<$a, Ack:16/binary>>} ->
                    case digest(Mine, Cookie) of
                        Ack ->
                            {ok, S, #{name => binary_to_atom(PeerName, utf8),
                                      flags => PeerFlags,
                                      creation => PeerCreation}};
                        _ ->
                            gen_tcp:close(S),
                            {error, bad_ack_digest}
                    end;
                Other ->
                    gen_tcp:close(S),
                    {error, {ack, Other}}
            end;
        Other ->
            gen_tcp:close(S),
            {error, {challenge, Other}}
    end.

%% send_name, version 6 ('N').
send_name(S, Name, Creation) ->
    send_name(S, Name, Creation, flags()).

send_name(S, Name, Creation, Flags) ->
    NameBin = atom_to_binary(Name, utf8),
    send_raw(S, hs_msg(<<$N, Flags:64, Creation:32,
                         (byte_size(NameBin)):16, NameBin/binary>>)).

hs_msg(Bin) ->
    <<(byte_size(Bin)):16, Bin/binary>>.

%% Reads one handshake message (2-byte length prefix).
recv_hs(S, Timeout) ->
    case gen_tcp:recv(S, 2, Timeout) of
        {ok, <<Len:16>>} ->
            case gen_tcp:recv(S, Len, Timeout) of
                {ok, Msg} -> {ok, Msg};
                Error -> Error
            end;
        Error ->
            Error
    end.

%% dist_util:gen_digest/2.
digest(Challenge, Cookie) ->
    erlang:md5([atom_to_list(Cookie) | integer_to_list(Challenge)]).

send_raw(S, Bytes) ->
    gen_tcp:send(S, Bytes).

%% A frame: 'p', the control term and (when there is one) the payload.
frame(Ctl) ->
    frame_bytes(<<$p, (term_to_binary(Ctl))/binary>>).

frame(Ctl, Msg) ->
    frame_bytes(<<$p, (term_to_binary(Ctl))/binary,
                  (term_to_binary(Msg))/binary>>).

frame_bytes(Content) ->
    <<(byte_size(Content)):32, Content/binary>>.

send_frame(S, Ctl) ->
    send_raw(S, frame(Ctl)).

send_frame(S, Ctl, Msg) ->
    send_raw(S, frame(Ctl, Msg)).

%% A pid of the fake node Name (an atom), made from its external format.
fake_pid(Name, Id) ->
    NameBin = atom_to_binary(Name, utf8),
    binary_to_term(<<131, 88, 119, (byte_size(NameBin)), NameBin/binary,
                     Id:32, 0:32, 1:32>>).

%% A reference of the fake node Name, made from its external format
%% (NEWER_REFERENCE_EXT, three words, the first N), as the aliases a real
%% node of that name would make.
fake_ref(Name, N) ->
    NameBin = atom_to_binary(Name, utf8),
    binary_to_term(<<131, 90, 3:16, 119, (byte_size(NameBin)), NameBin/binary,
                     1:32, N:32, 0:32, 0:32>>).

%% Reads the next frame that is not a tick: {ok, Ctl, Msg | none}.
recv_frame(S, Timeout) ->
    case gen_tcp:recv(S, 4, Timeout) of
        {ok, <<0:32>>} ->
            recv_frame(S, Timeout);
        {ok, <<Len:32>>} ->
            case gen_tcp:recv(S, Len, Timeout) of
                {ok, <<$p, Rest/binary>>} ->
                    {Ctl, Used} = binary_to_term(Rest, [used]),
                    Msg = case byte_size(Rest) - Used of
                              0 -> none;
                              _ -> binary_to_term(binary:part(Rest, Used,
                                                              byte_size(Rest) - Used))
                          end,
                    {ok, Ctl, Msg};
                {ok, Other} ->
                    {error, {not_pass_through, Other}};
                Error ->
                    Error
            end;
        Error ->
            Error
    end.

%% Waits for a message sent to a pid of ours (SEND or SEND_SENDER, with or
%% without a trace token) and returns {ok, To, Msg}.
recv_msg(S, Timeout) ->
    case recv_frame(S, Timeout) of
        {ok, Ctl, Msg} when element(1, Ctl) =:= 2; element(1, Ctl) =:= 12 ->
            {ok, element(3, Ctl), Msg};
        {ok, Ctl, Msg} when element(1, Ctl) =:= 22; element(1, Ctl) =:= 23 ->
            {ok, element(3, Ctl), Msg};
        {ok, Ctl, Msg} ->
            {error, {unexpected, Ctl, Msg}};
        Error ->
            Error
    end.

%% A gen_server call over the raw connection: REG_SEND of a '$gen_call'
%% from our pid From to the registered Name; returns the reply.
gen_call(S, From, Name, Req) ->
    Tag = make_ref(),
    ok = send_frame(S, {6, From, '', Name}, {'$gen_call', {From, Tag}, Req}),
    case recv_msg(S, 5000) of
        {ok, From, {Tag, Reply}} -> {ok, Reply};
        Other -> {error, Other}
    end.

%% true when the peer closes the socket within Ms (whatever it sends
%% before), false otherwise.
closed_within(S, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    closed_loop(S, Deadline).

closed_loop(S, Deadline) ->
    %% Polls at least once, so that a socket already closed is seen even
    %% when no time is left.
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case gen_tcp:recv(S, 0, Left) of
        {ok, _} -> closed_loop(S, Deadline);
        {error, timeout} -> false;
        {error, _} -> true
    end.

%% The external format (without the version byte) of a list nested N deep:
%% [[[...[]...]]].
deep_list(N) ->
    Open = binary:copy(<<108, 1:32>>, N),
    Close = binary:copy(<<106>>, N),
    <<Open/binary, 106, Close/binary>>.
