/* cnode: the distribution layer.  The runtime as an Erlang node.
 *
 * cn_dist_start() makes a named runtime (cn_runtime_options.node_name) a
 * node of an Erlang cluster: it registers with epmd (starting
 * `epmd -daemon` when none runs), listens for distribution connections,
 * and connects to other nodes on the first send to them.  From then on,
 * remote pids and {Name, Node} destinations work with the same calls as
 * local ones: cn_send, cn_cast, cn_call, cn_call_async, cn_link,
 * cn_monitor, cn_exit.  BEAM processes call the runtime's servers with
 * plain gen_server:call/GenServer.call and get OTP's semantics: replies to
 * alias tags, noproc at once for a missing name, the server's exit reason
 * when it dies mid-call, DOWN and EXIT signals both ways, noconnection
 * when a node goes down.
 *
 * The node speaks the distribution protocol itself (handshake version 6,
 * the OTP 23+ handshake) on libuv; all its I/O runs on one scheduler
 * thread of the runtime and never blocks.  Every frame that comes in is
 * checked by the bounded term validator before anything decodes it.  A
 * frame that breaks framing or its control message closes that one
 * connection; a well-framed message with a malformed payload is dropped,
 * counted (cn_dist_stats) and logged, and the connection stays up.
 *
 * Limits.  One setting, max_message, bounds every message both ways:
 * whatever a server accepts, it can send back.  A message over it is
 * refused alone, counted and logged, and the connection stays up; a call
 * in it fails at once (a BEAM caller's gen_server:call exits with
 * {message_too_large, MaxMessage}), and an exit signal or DOWN in it
 * still fires, with that reason.  Large messages travel in fragments
 * (DFLAG_FRAGMENTS) both ways, interleaved with small ones.
 *
 * Back-pressure.  A connection whose output passes busy_limit suspends
 * the processes that send to it (after their callback) and blocks plain
 * threads in their sends, until it drains, as OTP's dist_buf_busy_limit
 * does; cn_send_opts with CN_SEND_NOSUSPEND gets CN_EBUSY instead.  A
 * peer is dropped only when it reads or says nothing for the tick time.
 */
#ifndef CNODE_DIST_H
#define CNODE_DIST_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CN_DIST_DEFAULT_TICKTIME 60       /* seconds, as net_ticktime */
#define CN_DIST_DEFAULT_HANDSHAKE_MS 7000 /* as net_setuptime */
#define CN_DIST_DEFAULT_MAX_HANDSHAKES 64 /* pending, accepted ones */
#define CN_DIST_DEFAULT_BUSY_LIMIT ((size_t)1 << 20) /* as OTP's 1024 KB */
#define CN_DIST_DEFAULT_EPMD_PORT 4369
#define CN_DIST_DEFAULT_COALESCE_MAX_US 400 /* the longest hold, us */

/* TLS distribution, as OTP's inet_tls_dist (erl -proto_dist inet_tls).
 * TLS runs over the TCP connection first; the distribution handshake and
 * every frame then travel inside it, with 4-byte length prefixes from the
 * first handshake message on (inet_tls_dist's {packet, 4}).  epmd
 * registration is the same as for plain TCP.  Once a node has TLS, every
 * connection is TLS both ways: a plain TCP peer fails its handshake (and
 * only its own connection goes).
 *
 * The options are those of the ssl_dist_optfile, one set for the server
 * side (connections the node accepts) and one for the client side
 * (connections it dials), with OTP's defaults. */
typedef enum cn_tls_verify {
  CN_TLS_VERIFY_NONE = 0, /* verify_none: OTP 25's default */
  CN_TLS_VERIFY_PEER = 1  /* verify_peer: the peer's chain must lead to
                           * a CA of cacertfile; a client also checks
                           * that the server's certificate names the
                           * host part of the node name it dials */
} cn_tls_verify;

#define CN_TLS_V1_2 1u /* versions: 'tlsv1.2' */
#define CN_TLS_V1_3 2u /* versions: 'tlsv1.3' */

typedef struct cn_dist_tls_side {
  const char *certfile;      /* PEM: our certificate, then its chain; may
                              * hold the key too.  Without one on the
                              * server side no peer can connect (a
                              * client, as cnode call, needs none) */
  const char *keyfile;       /* PEM private key; NULL: read from certfile */
  const char *password;      /* the key's password, or NULL */
  const char *cacertfile;    /* PEM: the CAs that may sign the peer's
                              * certificate (needed for verify_peer) */
  cn_tls_verify verify;      /* default CN_TLS_VERIFY_NONE, as OTP 25 */
  bool fail_if_no_peer_cert; /* server, with verify_peer: refuse a
                              * client without a certificate (false:
                              * accept it, as OTP) */
  unsigned depth;            /* the longest chain below the peer's
                              * certificate; 0: 10 (OTP's default) */
  unsigned versions;         /* CN_TLS_V1_2 | CN_TLS_V1_3; 0: TLS 1.2
                              * only, inet_tls_dist's default */
} cn_dist_tls_side;

typedef struct cn_dist_tls {
  cn_dist_tls_side server; /* {server, [...]} */
  cn_dist_tls_side client; /* {client, [...]} */
} cn_dist_tls;

/* Reads an ssl_dist_optfile's text (one Erlang term, as OTP's
 * ssl_dist_sup:consult/1 reads it: [{server, Opts}, {client, Opts}])
 * into *tls, which it zeroes first.  Options: certfile, keyfile,
 * password, cacertfile, verify, fail_if_no_peer_cert (server), depth,
 * versions; secure_renegotiate, reuse_sessions and hibernate_after are
 * accepted and have no effect here.  The strings are copied into store,
 * which must outlive *tls (free it with cn_buf_free).  Returns 0;
 * CN_EINVAL with why (cap bytes, NUL-terminated) saying what is wrong: a
 * malformed file, or an option the node does not have; CN_ENOMEM.
 * Thread-safe. */
CN_EXTERN int cn_dist_tls_parse(const char *text, size_t len, cn_dist_tls *tls,
                                cn_buf *store, char *why, size_t cap);

/* Sets one option as erl's -ssl_dist_opt does: key is server_OPT or
 * client_OPT (server_certfile, client_verify, ...), value its text
 * ("verify_peer", "true", a path).  value is kept, not copied.  Returns 0
 * or CN_EINVAL (an unknown key or a bad value). */
CN_EXTERN int cn_dist_tls_set(cn_dist_tls *tls, const char *key,
                              const char *value);

typedef struct cn_dist_options {
  /* The cookie, required.  At most 255 bytes. */
  const char *cookie;
  /* The address to listen on.  NULL: the first address the node's host
   * name resolves to when that is a loopback address, else 127.0.0.1
   * (never every interface unless told). */
  const char *listen_addr;
  uint16_t listen_port;    /* 0: any free port */
  bool published;          /* false (default): a hidden node */
  unsigned ticktime_s;     /* 0: CN_DIST_DEFAULT_TICKTIME */
  unsigned handshake_ms;   /* 0: CN_DIST_DEFAULT_HANDSHAKE_MS */
  unsigned max_handshakes; /* 0: CN_DIST_DEFAULT_MAX_HANDSHAKES */
  /* The largest message, both ways, in bytes of the encoded term a
   * process sends or gets (the message; a call's request; a cast; a
   * reply).  0: the runtime's (CN_DEFAULT_MAX_MESSAGE, 1 GiB, unless its
   * options lowered it); a smaller value lowers the runtime's too.  On
   * the wire a call's envelope may add up to 4 KiB, and a frame holds up
   * to max_message plus 64 KiB with its control message. */
  size_t max_message;
  size_t busy_limit;     /* output bytes that make a connection busy;
                          * 0: CN_DIST_DEFAULT_BUSY_LIMIT */
  size_t max_reassembly; /* bytes of fragmented messages being
                          * reassembled per connection; 0: twice
                          * max_message plus 64 KiB */
  uint16_t epmd_port;    /* 0: $ERL_EPMD_PORT, else 4369 */
  bool no_epmd_daemon;   /* true: never start `epmd -daemon` */
  /* NULL: plain TCP (inet_tcp_dist).  Else TLS on every connection
   * (inet_tls_dist); read when cn_dist_start runs (certificates and keys
   * are loaded then), not kept. */
  const cn_dist_tls *tls;
  /* Coalescing: after a turn that handled frames, the dist loop may hold
   * still this long at most (microseconds), so that requests arriving
   * meanwhile are read and answered together; how long, up to this, it
   * finds by measuring (README, "Coalescing").  While the traffic it
   * reads is one-way (casts, sends), it holds between reads, for the
   * longest of its holds that this allows.
   * 0: CN_DIST_DEFAULT_COALESCE_MAX_US; negative: never hold. */
  int coalesce_max_us;
} cn_dist_options;

/* Starts distribution for rt, which must have been created with a
 * node_name.  Registers the node with epmd (the registration lives as long
 * as distribution does), listens, and starts the built-in net_kernel
 * process, which answers {is_auth, Node} so that net_adm:ping and
 * Node.ping/1 give pong.  Blocks until the node is registered.
 * Returns 0; CN_EINVAL (no node name, no cookie, bad options); CN_EEXIST
 * (already started, or epmd has the name taken); CN_ENOCONN (epmd could
 * not be reached or started); CN_ESYSTEM (listen failed); CN_ENOMEM.
 * Distribution stops in cn_runtime_shutdown, before the processes do.
 * Thread-safe; not from inside a callback (CN_EDEADLK). */
CN_EXTERN int cn_dist_start(cn_runtime *rt, const cn_dist_options *opts);

/* The TCP port the node listens on, or 0 when distribution is off. */
CN_EXTERN uint16_t cn_dist_port(cn_runtime *rt);

/* net_kernel:connect_node/1: connects to node (name@host) unless already
 * connected, waiting up to timeout.  Returns 0, CN_ENOCONN (epmd does
 * not know the node, or the connection or handshake failed), CN_EAUTH
 * (the node refused our cookie: it closed the connection on our
 * challenge_reply, as a BEAM node does), CN_ETIMEDOUT,
 * CN_EINVAL, CN_ENOTSUP (distribution is not started), or CN_EDEADLK from
 * inside a callback.  Sends do not need it: they connect on demand. */
CN_EXTERN int cn_dist_connect(cn_runtime *rt, const char *node, cn_ms timeout);

/* erlang:disconnect_node/1.  Links and monitors across the connection fire
 * with noconnection.  Returns 0 or CN_ENOENT (not connected).
 * Thread-safe. */
CN_EXTERN int cn_dist_disconnect(cn_runtime *rt, const char *node);

/* nodes(connected): fills names (static storage, valid as long as the
 * process) with up to cap connected node names and returns how many
 * nodes are connected (which may exceed cap).  Thread-safe. */
CN_EXTERN size_t cn_dist_nodes(cn_runtime *rt, const char **names, size_t cap);

/* Counters since cn_dist_start. */
typedef struct cn_dist_stats {
  uint64_t connections;       /* connections that completed a handshake */
  uint64_t handshakes_failed; /* bad cookie, timeout, malformed, refused */
  uint64_t frames_in, frames_out;
  uint64_t bytes_in, bytes_out;
  uint64_t dropped;    /* well-framed messages dropped (bad or
                        * oversized payload, dead target name) */
  uint64_t bad_frames; /* frames that closed their connection */
  uint64_t too_large;  /* messages refused over max_message (or
                        * the reassembly budget) */
  uint64_t fragments_in, fragments_out;
  uint64_t busy; /* times a connection became busy */
  /* Gauges: what the node holds now. */
  uint64_t nodes_up; /* connected nodes */
  uint64_t links;    /* links that cross a connection */
  uint64_t monitors; /* monitors that cross a connection, ours
                      * and theirs */
  uint64_t queued;   /* messages waiting for a connection */
} cn_dist_stats;

/* Copies the counters and reads the gauges (on the dist loop, so that they
 * agree with each other).  Returns 0, or CN_ENOTSUP when distribution was
 * never started.  Thread-safe.  Inside a callback the gauges are read only
 * when it runs on the dist loop's own scheduler; elsewhere they read 0
 * (waiting for another scheduler from one could deadlock). */
CN_EXTERN int cn_dist_get_stats(cn_runtime *rt, cn_dist_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_DIST_H */
