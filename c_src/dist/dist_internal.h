/* The distribution layer's internals.  Not installed.
 *
 * Threads.  Everything here lives on one scheduler's libuv loop (scheduler
 * 0, "the dist loop"): the listener, the epmd registration, every
 * connection, and the node table with its link and monitor records.  Only
 * that thread touches them.  Frames read there are delivered to processes
 * that then run on the same scheduler (placement follows the sender, see
 * runtime/internal.h), so a call from a BEAM node to an idle server costs
 * no thread hop at all.
 *
 * Other threads hand outgoing messages to the dist loop through an MPSC
 * stack (one CAS per message) and an async wake-up, which coalesces.  The
 * dist loop itself encodes straight into the connection's output buffer,
 * after draining the stack so that one sender's messages keep their
 * order.
 *
 * Writes.  Each connection has one writer (the dist loop) and one output
 * buffer.  Frames are appended as they are produced and written once per
 * loop turn, from a prepare handle: one uv_write per connection per turn,
 * however many frames it holds.  Trying the writev at once
 * (uv_try_write, with uv_write only for what the socket does not take)
 * saves libuv's epoll_ctl and the extra epoll_wait(0) turn of a completed
 * uv_write, 0.4-1.3 syscalls a call at 16 callers, but was measured worse
 * and left out: in two interleaved A/B runs (December 2026, 16 callers)
 * context switches per call went from 0.31-0.34 to 0.61-0.80, the
 * client's CPU per call up 5-20% and calls per second down 1-13%.  That
 * extra turn lets more requests arrive before the loop sleeps.
 *
 * Sleeping.  The dist loop does not spin before it sleeps in epoll_wait:
 * a measured choice.  Only a syscall can tell that a socket has bytes, and
 * one costs about 1.1 us on this VM (getppid or epoll_wait(0) in a loop),
 * against about 12 us for a sleep and a wake-up (perf, 16 callers:
 * epoll_wait with its task switch is 38% of the node's samples).
 * Spinning with epoll_wait(0) for a while after each busy turn, 16
 * callers (December 2026; per call: server CPU, context switches,
 * syscalls): no spin 11.0 us, 0.52, 1.5; 20 us 12-15 us, 0.33-0.43,
 * 3.0-4.3; 60 us 12.7 us, 0.22, 4.8; calls per second the same within the
 * noise.  The switches it saves cost more in polls than they did in
 * wake-ups.  What does pay is the opposite: after a turn that answered
 * several callers, or that read a stream of casts, holding still for a
 * moment without polling, so that the next wake-up finds many frames
 * (coalesce.h, in on_flush).
 *
 * Large messages.  A message whose payload is over CN__FRAG_SIZE, to a
 * peer that takes fragments, does not go into the output buffer: it waits
 * in its sender's stream (cn__ostream), and each write takes one fragment
 * from every stream in turn, after whatever small frames are ready, so a
 * 300 MB reply never holds up the small calls behind it.  A stream is
 * one sender's to one receiver: a sender with something in it has its
 * later messages to that receiver queued behind it there too, so that
 * they keep their order, while its messages to others go on (Erlang
 * orders signals per pair of processes).  The payload of a large
 * message is not copied: its frame ends with the message's own bytes,
 * written from there (cn__conn_attach, writev).
 *
 * Back-pressure.  A connection whose output (buffer, write in flight and
 * streams) passes busy_limit is busy, as OTP's dist_buf_busy_limit: a
 * process that sends to it is suspended after its callback (parked here,
 * see cn__dist_ops.park), and a plain thread waits in its send, until the
 * output drains below the limit or the connection goes.  A peer is
 * dropped only when it reads nothing (no write completes) or says nothing
 * for the tick time.
 *
 * Records.  As in erts' dist entries, each remote node keeps the links and
 * monitors that cross its connection.  When the connection goes, they fire
 * with noconnection: links as exit signals, our monitors as DOWN, and
 * theirs are dropped from our processes.
 */
#ifndef CN_DIST_INTERNAL_H
#define CN_DIST_INTERNAL_H

#include "coalesce.h"
#include "proto.h"
#include "runtime/internal.h"
#include "tls.h"

typedef struct cn__dist cn__dist;
typedef struct cn__conn cn__conn;
typedef struct cn__dnode cn__dnode;

/* Processes waiting to be parked (cn__dist.parkq): the one MPSC queue,
 * of processes linked through park_next. */
CN__MPSC_DEFINE(cn__procq, cn_proc, park_next)

/* ---- Link and monitor records ----------------------------------------- */

enum { REC_LINK = 1, REC_OMON, REC_TMON };

typedef struct cn__rec {
  cn__hnode node; /* in its node's mons or links */
  uint8_t kind;   /* REC_* */
  cn_ref ref;     /* monitors: the monitor ref (and alias) */
  cn_pid local;   /* our process */
  cn_pid remote;  /* theirs; for our by-name monitors, the
                   * node only */
  char *name;     /* our by-name monitors (REC_OMON): the name
                   * monitored there */
  uint8_t byname; /* their monitors (REC_TMON): by a name of ours */
} cn__rec;

typedef cn__htab cn__rtab; /* of cn__rec */

/* ---- Nodes and connections -------------------------------------------- */

typedef struct cn__waiter {
  struct cn__waiter *next;
  int done, rc;
} cn__waiter;

struct cn__dnode {
  uint32_t node;              /* interned name */
  cn__conn *conn;             /* the connection, once up */
  cn__conn *pending;          /* our own attempt, while it runs */
  cn__msg *wq_head, *wq_tail; /* waiting for the connection */
  cn__rtab mons;              /* REC_OMON and REC_TMON, by ref */
  cn__rtab links;             /* REC_LINK, by (local, remote) */
  cn__waiter *waiters;        /* cn_dist_connect callers */
  cn_proc *parked;            /* suspended senders (park_next), while the
                               * connection is busy */
  uint64_t wq_deadline;       /* after a nok: when the queue gives up */
  uint64_t unlink_id;
};

enum {
  C_RESOLVE = 1, /* looking up the host (initiator) */
  C_EPMD,        /* asking the peer's epmd for the port (initiator) */
  C_CONNECT,     /* TCP connect (initiator) */
  C_HANDSHAKE,
  C_UP,
  C_CLOSING
};

/* A message waiting in its sender's stream: one or more whole frames
 * (4-byte length first) as encoded, sent one frame or fragment at a
 * time. */
typedef struct cn__oentry {
  struct cn__oentry *next;
  cn_buf buf;
  cn__msg *tail_msg; /* a large payload, not copied into buf: the last
                      * frame goes on with its tail_len bytes at tail */
  const char *tail;
  size_t tail_len;
  size_t pos;    /* the next frame's offset in buf (and tail after it) */
  size_t sent;   /* of that frame's body, bytes sent in fragments */
  uint64_t seq;  /* its fragment sequence, once started */
  uint64_t left; /* fragments of it still to send */
} cn__oentry;

/* One sender's queued messages to one receiver, in order (Erlang orders
 * signals per pair of processes only, so a large message to one process
 * does not hold up its sender's messages to others). */
typedef struct cn__ostream {
  struct cn__ostream *next; /* the connection's streams, in turn order */
  cn_pid sender;
  cn_pid to; /* the receiver (for a send by name, the pid given) */
  cn__oentry *head, *tail;
} cn__ostream;

struct cn__conn {
  uv_tcp_t tcp;
  cn__dist *d;
  cn__dnode *dn; /* known from the start when we dial; after
                  * the peer's name when we accept */
  int state;     /* C_* */
  int initiator;
  cn__hs hs;
  cn_buf in; /* bytes read, not yet consumed */
  size_t in_off;
  cn_buf out;            /* frames produced this turn */
  cn_buf wbuf;           /* frames being written */
  struct cn__wseg *segs; /* what the next write takes from the streams
                          * without a copy (see start_write) */
  size_t nsegs, segs_cap;
  size_t seg_bytes;     /* their bytes */
  size_t wbytes;        /* bytes of the write in flight */
  cn__oentry *retire;   /* sent entries, freed once no write uses them */
  cn__oentry *retire_w; /* those the write in flight may still use */
  int writing;
  uv_write_t wreq;
  uv_connect_t creq;
  uv_getaddrinfo_t gai;
  uv_timer_t timer;        /* handshake deadline, then ticks */
  uint64_t last_read;      /* loop time (ms) of the last bytes read */
  int wrote;               /* something was written since the last tick */
  uint64_t last_write;     /* loop time (ms) of the last write */
  unsigned ticks_answered; /* in this tick period (see answer_tick) */
  uint64_t peer_flags;
  int dirty; /* on the dist's dirty list */
  struct cn__conn *next_dirty;
  struct cn__conn *next;   /* every connection of the dist */
  int tcp_open, etcp_open; /* tcp / etcp were initialised */
  int resolving;           /* gai is in flight */
  int hs_rc;               /* why the connection failed (CN_E*) */
  int close_after_write;   /* a refusal: close once out is written */
  const char *close_why;
  int handles; /* open handles and requests in flight; the
                * connection is freed when none is left */
  /* Dialling: the peer's epmd, then the peer. */
  struct sockaddr_storage addr; /* the peer's address */
  uint16_t port;                /* the peer's port (from epmd) */
  uv_tcp_t etcp;                /* to the peer's epmd */
  uv_connect_t ecreq;
  uv_write_t ewreq;
  char ereq_buf[CN_MAX_NODE_NAME + 8];
  char ebuf[64];
  cn_buf epmd; /* epmd's answer so far */
  /* Large messages in (see frag.c), and frames over the frame limit. */
  cn__frags frags;
  cn_buf fdone, fhead; /* a reassembled or refused message */
  cn_buf *adopt;       /* while a frame in this buffer is routed: a
                        * message may take the buffer over (route.c) */
  uint64_t skip;       /* bytes of an oversized frame left to drop */
  size_t skip_total;   /* its length */
  size_t skip_need;    /* of its head, bytes to keep */
  int skip_told;       /* its head went to cn__route_refused */
  cn_buf skip_head;
  /* Large messages out, and back-pressure. */
  cn__ostream *streams;
  size_t oq_bytes;      /* bytes waiting in streams */
  uint64_t next_seq;    /* fragment sequence ids */
  int busy;             /* output over busy_limit */
  uint64_t write_start; /* loop time the write in flight began */
  cn__tls *tls;         /* TLS distribution: the TLS state (tls.h) */
};

struct cn__dist {
  cn_runtime *rt;
  uv_loop_t *loop;
  char name[CN_MAX_NODE_NAME + 1]; /* our node name */
  char cookie[256];
  uint64_t flags; /* what we offer */
  uint32_t creation;
  cn_dist_options opt;      /* with defaults filled in */
  cn__tls_ctx *tls;         /* TLS distribution, else NULL */
  cn_term_limits lim;       /* for payloads: depth from the runtime,
                             * size max_message */
  size_t frame_limit;       /* max_message + CN__CTL_ROOM */
  _Atomic uint8_t *busy;    /* by node index (CN_MAX_NODES): its
                             * connection is busy; read by senders */
  _Atomic(cn_proc *) parkq; /* MPSC: processes to park */

  uv_tcp_t listener;
  uint16_t port;
  int epmd_fd;        /* the registration connection (epmd
                       * forgets us when it closes) */
  uv_async_t wake;    /* other threads queued messages */
  uv_prepare_t flush; /* writes, once per loop turn */
  uv_timer_t ticker;  /* ticks and silence checks */

  _Atomic(cn__msg *) inq; /* MPSC from other threads */
  _Atomic int stopping;
  int handles;         /* open dist handles, for stop */
  int stopped;         /* every handle closed */
  int stop_began;      /* stop_on_loop ran: connections flush and
                        * close */
  int handles_closing; /* the last one went: the dist's own handles
                        * close */

  cn__dnode **nodes; /* by interned node index */
  size_t nodes_cap;
  cn__conn *conns;          /* every connection */
  cn__conn *dirty;          /* connections with output this turn */
  unsigned turn_frames;     /* signals read since the last flush (a
                             * fragmented message counts once) */
  cn__coalesce co;          /* the hold after a busy turn */
  unsigned pending_accepts; /* accepted, handshake not done */
  cn_pid net_kernel;        /* the built-in net_kernel process */
  uint64_t bi_start_ms;     /* builtins.c: statistics(wall_clock) */
  _Atomic uint64_t bi_last_cpu, bi_last_wall; /* ... "since last call" */
  uint64_t log_window; /* cn__dist_log's rate limit (dist loop) */
  unsigned log_n, log_suppressed;

  pthread_mutex_t mu; /* guards up_nodes, for cn_dist_nodes, and
                       * waiters' done flags */
  pthread_cond_t cv;  /* also signalled when a busy connection
                       * drains or goes (threads wait in sends) */
  uint32_t *up_nodes; /* node indexes, CN__UP_VISIBLE or'ed in for a
                       * visible connection */
  size_t n_up, up_cap;
  /* Node monitors (cluster.c), guarded by mu. */
  struct cn__nodemon *nodemons;
  size_t n_nodemons, nodemons_cap;
  struct cn__global *global; /* global.c, when published */
  struct cn__pgs *pgs;       /* pg.c: the scopes started */

  _Atomic uint64_t st_connections, st_hs_failed, st_frames_in, st_frames_out,
      st_bytes_in, st_bytes_out, st_dropped, st_bad_frames, st_too_large,
      st_fragments_in, st_fragments_out, st_busy;
};

/* node.c */
cn__dist *cn__dist_of(cn_runtime *rt);
cn__dnode *cn__dnode_get(cn__dist *d, uint32_t node, int create);
/* Logs one event at level for the domain "cnode dist", through the log
 * hook (cnode/log.h).  At most 20 a second (the rest are counted and
 * reported).  Dist loop only. */
void cn__dist_log(cn__dist *d, cn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cn__dist_node_up(cn__dist *d, cn__dnode *dn, cn__conn *c);
void cn__dist_node_down(cn__dist *d, cn__dnode *dn, cn__conn *c, int rc);
void cn__dist_connect_node(cn__dist *d, cn__dnode *dn);
void cn__dist_expire(cn__dist *d);
/* A connection was unlinked: once stopping and none is left, the dist's
 * own handles close. */
void cn__dist_conn_gone(cn__dist *d);
/* Fails every message waiting for dn's connection (see cn__route_fail)
 * and wakes cn_dist_connect callers with rc. */
void cn__dist_fail_queue(cn__dist *d, cn__dnode *dn, int rc);

/* Room for a control term beside a message of max_message bytes, in a
 * frame or a reassembled sequence. */
#define CN__CTL_ROOM ((size_t)64 << 10)
/* Room for the envelope of a call, cast or reply around a term of
 * max_message bytes. */
#define CN__ENVELOPE ((size_t)4 << 10)

/* node.c: back-pressure.  Called by conn.c when c's busy state changes;
 * a connection that goes releases its node's parked senders too. */
void cn__dist_set_busy(cn__dist *d, cn__dnode *dn, int busy);
/* Tells senders (dist_deliver) whether dn's connection has large
 * messages going out, behind which their own may queue. */
void cn__dist_set_streaming(cn__dist *d, cn__dnode *dn, bool on);
/* Schedules again the senders parked on dn that may go on: its
 * connection is not busy (or gone) and has nothing of theirs queued. */
void cn__dist_unpark(cn__dist *d, cn__dnode *dn);

/* conn.c */
int cn__conn_listen(cn__dist *d, const char *addr, uint16_t port);
void cn__conn_dial(cn__dist *d, cn__dnode *dn);
void cn__conn_close(cn__conn *c, const char *why);
/* Closes c once what it has to send is out, or after a deadline
 * (stopping the node). */
void cn__conn_shutdown(cn__conn *c);
void cn__conn_mark_dirty(cn__conn *c);
void cn__conn_flush_all(cn__dist *d);
void cn__conn_tick_all(cn__dist *d);
/* Queues a message's frames: into c's output buffer, or, when it is large
 * or its sender already has messages to `to` waiting in a stream, into
 * that stream.  Returns the buffer to encode into; cn__conn_queued must
 * follow. */
cn_buf *cn__conn_target(cn__conn *c, cn_pid sender, cn_pid to, size_t payload);
void cn__conn_queued(cn__conn *c, cn_buf *b);
/* Lets the frame just encoded into b, a stream's buffer, end with the
 * len bytes at tail, in m, instead of a copy of them: m then belongs to
 * the stream, and is freed once written.  Returns false (nothing done)
 * when b is the output buffer. */
bool cn__conn_attach(cn__conn *c, cn_buf *b, cn__msg *m, const char *tail,
                     size_t len);
/* How many messages of sender wait in c's streams. */
size_t cn__conn_streamed(cn__conn *c, cn_pid sender);

/* route.c */
void cn__route_out(cn__dist *d, cn_pid to, cn__msg *m);
void cn__route_fail(cn__dist *d, cn__msg *m);
/* cn__dist_ops.reply: answers a remote caller with {Tag, Reply}. */
int cn__route_reply(cn_runtime *rt, const cn_from *from, cn_term reply,
                    cn_buf *own);
int cn__route_in(cn__dist *d, cn__conn *c, const char *frame, size_t len);
/* A message refused for its size (total bytes, 0 when unknown), of which
 * only head (a frame cut short) was kept: counts and logs it, and fails
 * the call it carries at once, when it is one.  An exit signal or DOWN
 * whose reason was refused still fires, with {message_too_large, Max}. */
void cn__route_refused(cn__dist *d, cn__conn *c, const char *head, size_t len,
                       size_t total);
void cn__route_node_down(cn__dist *d, cn__dnode *dn);
void cn__rtab_free(cn__rtab *t);

/* route.c, for spawn.c.  Sets up, on the dist loop, what a remote
 * spawn_request asked for: the requester `remote` monitors our new
 * process `local` with mref (when not NULL) and links to it (when link).
 * Returns 0 or CN_ENOMEM (nothing was set up). */
int cn__route_watch(cn__dist *d, cn__dnode *dn, cn_pid local, cn_pid remote,
                    const cn_ref *mref, bool link);
/* Queues SPAWN_REPLY {31, ReqId, To, Flags, Result} on c: Result is *pid,
 * or, when pid is NULL, the atom error (badopt, system_limit...). */
void cn__route_spawn_reply(cn__dist *d, cn__conn *c, const cn_ref *req,
                           cn_pid to, int flags, const cn_pid *pid,
                           const char *error);

/* spawn.c: answers SPAWN_REQUEST {29, ReqId, From, GroupLeader, {M, F,
 * A}, Opts} with args (the payload), as erts does (see spawn.c). */
void cn__spawn_request(cn__dist *d, cn__conn *c, cn_pid from, const cn_ref *req,
                       cn_term mfa, cn_term opts, cn_term args);
/* The spawned process whose export the calling worker thread is running
 * (what self() is to that code on a BEAM node), into *pid: 0, or
 * CN_ENOENT on any other thread.  observer_backend's collectors put it
 * in their messages, as erlang:self() there. */
int cn__spawn_self(cn_pid *pid);
/* True once that spawned process has received a message (one it does
 * not otherwise read), as `receive _ -> ok` in its code would end; false
 * on any other thread.  For observer_backend:fetch_stats/2. */
bool cn__spawn_got_message(void);
/* Sends msg to `to` (a pid or a registered name) as that spawned process:
 * queued, and sent by the process in its own turn, so that it reaches a
 * peer before the process's exit signal, as a BEAM process's own send
 * does (sends of different senders may overtake each other there: a
 * large message goes in fragments).  On any other thread, cn_send.
 * Returns 0 or an error as cn_send's (CN_ETOOBIG over max_message,
 * CN_ENOMEM); later failures are dropped, as a send's are. */
int cn__spawn_send(cn_runtime *rt, cn_term to, cn_term msg);

/* net_kernel.c */
int cn__net_kernel_start(cn__dist *d);

/* cluster.c: node monitoring (net_kernel:monitor_nodes).  A connection
 * is visible when both ends are published, as OTP's nodes(visible). */
#define CN__UP_VISIBLE 0x80000000u
typedef struct cn__nodemon {
  cn_pid pid;
  unsigned flags; /* CN_NODES_ALL: hidden nodes too */
} cn__nodemon;
/* Sends {nodeup, Node} or {nodedown, Node} to every monitor of the
 * node's kind.  Dist loop, after up_nodes is updated. */
void cn__dist_notify_node(cn__dist *d, uint32_t node, bool up, bool visible);
void cn__nodemons_free(cn__dist *d);

/* global.c and pg.c: started with a published node, stopped before the
 * connections close (their threads make calls), freed with the dist. */
int cn__global_start(cn__dist *d);
void cn__global_stop(cn__dist *d);
void cn__global_free(cn__dist *d);
void cn__pg_free(cn__dist *d);

/* rex.c: the registered rex server (kernel's rpc server, for ei_rpc,
 * erl_call and rpc's gen_server fallback). */
int cn__rex_start(cn__dist *d);

/* builtins.c: the built-in exports (erlang:node/0 ...). */
int cn__builtins_export(cn__dist *d);

#endif /* CN_DIST_INTERNAL_H */
