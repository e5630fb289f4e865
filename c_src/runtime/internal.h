/* libcnode runtime internals.  Not installed.
 *
 * The concurrency design, in one place:
 *
 * Mailboxes.  A process's inbox is a lock-free LIFO stack of messages
 * (one CAS per push).  Only the process's runner takes from it, all at
 * once (xchg), reversing the batch into a private FIFO.  Pushes by one
 * sender keep their order, so mailboxes are FIFO per sender.  On exit the
 * inbox is swapped for MBOX_CLOSED; a push that meets it fails, so the
 * sender learns at once that the target is dead (noproc without a round
 * trip).
 *
 * Running.  The SCHED bit of a process's state says that some thread is
 * responsible for draining its inbox: the process is in a run queue, is
 * running on a scheduler, or is borrowed by a plain thread for an inline
 * call.  A sender that pushes and then wins the CAS 0 -> SCHED enqueues the
 * process.  A runner that finds the inbox empty clears SCHED, then looks
 * again and re-takes the bit if a message slipped in.  Exactly one thread
 * runs a process at a time, and that thread owns all its private fields.
 *
 * Placement.  A process made runnable by a process running on scheduler S
 * goes on S's run queue, so a caller and its server end up sharing a
 * scheduler (no cross-core wake-ups, which cost tens of microseconds on a busy
 * machine).  Into an empty queue it goes as the scheduler's rq_next, which
 * its own thread alone touches (no lock): a caller and its server pass the
 * scheduler back and forth that way.  Plain threads
 * inject into the process's last scheduler.  A scheduler with surplus work
 * wakes a sleeping one, which steals half of its queue (rq_next, at most
 * one process and only while the queue is otherwise empty, is not
 * stolen).
 *
 * Lifetime.  Process structs are type-stable: they are recycled through a
 * free list, never returned to malloc while the runtime lives.  A lookup
 * takes a reference with increment-if-not-zero and then checks the pid, so
 * a lookup that races with exit and reuse sees a mismatch, never freed
 * memory.  What few processes use (links, monitors, async calls, sys)
 * lives in a side struct allocated on first use, so that an idle server
 * is small.
 *
 * Records.  Messages, froms and pending calls are recycled through
 * per-scheduler caches, without locks (cn__rec_alloc).  A process's async
 * calls share one timer (see server.c), not one timer per call.
 */
#ifndef CN_RUNTIME_INTERNAL_H
#define CN_RUNTIME_INTERNAL_H

#include <cnode.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "util/htab.h"    /* the one hash table */
#include "util/mpsc.h"    /* the one MPSC queue */
#include "util/siphash.h" /* keyed hashes for tables that peers fill */

#define CN__CACHELINE 64

/* ---- Messages and signals --------------------------------------------- */

typedef enum cn__kind {
  CN__M_MSG = 1,     /* a plain message: data is the term */
  CN__M_CALL,        /* '$gen_call': cfrom + data (request) */
  CN__M_CAST,        /* '$gen_cast': data */
  CN__M_REPLY,       /* a reply to this process's call ref: data */
  CN__S_EXIT,        /* exit signal from `from`, reason in data */
  CN__S_LINK,        /* link request from `from` */
  CN__S_UNLINK,      /* unlink request from `from` */
  CN__S_MONITOR,     /* `from` monitors this process with ref */
  CN__S_DEMONITOR,   /* `from` drops monitor ref */
  CN__S_DOWN,        /* a monitor held by this process fired */
  CN__S_TIMEOUT,     /* the gen_server idle timeout, generation in aux */
  CN__S_CALL_TMO,    /* the call timer expired, generation in aux */
  CN__S_STOP,        /* cn_stop: exit with reason after terminate */
  CN__S_CODE_CHANGE, /* cn_code_change: data is {OldVsn, Extra}, cfrom */
  CN__S_SHUTDOWN,    /* runtime shutdown: exit as if from the parent */
  CN__S_CONTINUE,    /* handle_continue is due, with the term in data
                      * (at the head of the private queue) */
  CN__S_INFO         /* cn__process_links: answer cfrom with what only
                      * the process may read (its links, monitors) */
} cn__kind;

/* Message flags. */
#define CN__F_LINKED 0x1  /* S_EXIT: the signal comes from a link */
#define CN__F_CALLMON 0x2 /* M_CALL: the call monitors the server */
#define CN__F_DEMONDONE                                                        \
  0x4                     /* M_REPLY: the server already dropped the           \
                           * call monitor; no DEMONITOR is needed */
#define CN__F_BYNAME 0x8  /* S_MONITOR/S_DOWN: monitored by name */
#define CN__F_NOPROC 0x10 /* S_DOWN: the target never existed */
#define CN__F_TONAME                                                           \
  0x20 /* to a remote registered name: {name, node                             \
        * of `to`} (distribution) */
#define CN__F_ALIAS                                                            \
  0x40 /* M_REPLY to a remote caller: data is                                  \
        * {Tag, Reply}, ref the caller's alias */
#define CN__F_ERRNO                                                            \
  0x80 /* M_REPLY / S_DOWN answering a local call:                             \
        * the call failed with status -aux (a CN_E*                            \
        * code), such as CN_EFULL */

/* The kinds a mailbox counts, and max_mailbox refuses. */
#define CN__COUNTED(kind)                                                      \
  ((kind) == CN__M_MSG || (kind) == CN__M_CAST || (kind) == CN__M_CALL)

typedef struct cn__msg {
  struct cn__msg *next;
  uint8_t kind;     /* cn__kind */
  uint8_t flags;    /* CN__F_* */
  uint8_t pooled;   /* a record of CN__REC_MSG's size (see cn__rec_alloc) */
  uint32_t aux;     /* kind-specific (timeout generation) */
  cn_pid from;      /* the sender, for signals */
  cn_ref ref;       /* monitor ref or call tag */
  cn_from *cfrom;   /* M_CALL / S_CODE_CHANGE: the caller */
  const char *name; /* by name (S_MONITOR, S_DOWN, CN__F_TONAME): a
                     * malloc'ed copy, freed with the message */
  cn_pid to;        /* remote messages: the destination (distribution) */
  size_t len;       /* bytes in data */
  char *data;       /* the term, when there is one: at inline, or in
                     * block */
  char *block;      /* a large message's own buffer (cn__block_alloc),
                     * or NULL */
  union {
    size_t block_cap;  /* with block: its capacity */
    uint64_t ref_hash; /* S_MONITOR, S_DEMONITOR: cn__ref_hash(&ref) when
                        * the sender had it, else 0 */
  };
  char inline_[]; /* a small message's term */
} cn__msg;

/* A term of this many bytes and up that lies in a buffer about to be
 * freed (a handler's reply, a reassembled frame) moves into its message
 * with the buffer instead of being copied, whether the buffer is a kept
 * block or plain malloc'ed memory: a 64 KiB echo then copies nothing
 * more on the way in or out (the two copies were 8% of the node's CPU
 * for one). */
#define CN__ADOPT_MIN ((size_t)16 << 10)

/* Terms of up to this many bytes lie in a message record of one size,
 * which the schedulers keep for reuse (CN__REC_MSG). */
#define CN__MSG_POOL_INLINE 64

/* A message of kind with a copy of len bytes of data (or room for them,
 * when data is NULL).  A large one (CN__BLOCK_MIN and up) gets its data
 * in a block of its own.  Returns NULL when out of memory. */
cn__msg *cn__msg_new(int kind, const char *data, size_t len);
/* A message of kind whose len bytes of term at data lie in block (of
 * capacity cap, from cn__block_alloc), which the message takes over: no
 * copy.  Returns NULL when out of memory, and block is still the
 * caller's then. */
cn__msg *cn__msg_adopt(int kind, char *block, size_t cap, const char *data,
                       size_t len);
/* A message of kind holding the term in b: it takes b's heap memory over
 * from CN__ADOPT_MIN bytes up (leaving b->data NULL and b->len as it
 * was), else copies it.  Returns NULL when out of memory (b unchanged). */
cn__msg *cn__msg_from_buf(int kind, cn_buf *b);
void cn__msg_free(cn__msg *m);

/* ---- Large blocks (blocks.c) ------------------------------------------ */

/* Blocks from this size up are kept for reuse when freed. */
#define CN__BLOCK_MIN ((size_t)128 << 10)
/* At least n bytes, malloc'ed; *cap is what the block holds.  A block of
 * CN__BLOCK_MIN or more may come from those kept.  Thread-safe. */
void *cn__block_alloc(size_t n, size_t *cap);
/* Gives back a block of capacity cap (from cn__block_alloc or malloc):
 * kept for reuse when large and there is room, else freed.
 * Thread-safe; p may be NULL. */
void cn__block_free(void *p, size_t cap);
/* Frees the kept blocks unused for a while (or all of them). */
void cn__blocks_trim(bool all);

/* The inbox of an exited process: pushes that meet it fail. */
#define CN__MBOX_CLOSED ((cn__msg *)(uintptr_t)1)

/* Mailboxes and the dist layer's queue of outgoing messages: the one MPSC
 * queue (util/mpsc.h), of messages linked through next. */
CN__MPSC_DEFINE(cn__msgq, cn__msg, next)

/* ---- Calls ------------------------------------------------------------ */

/* A caller awaiting a reply.  Local callers have a ref tag.  A remote
 * caller (CN__FROM_REMOTE) has a route: what the distribution layer needs
 * to answer it (the tag of its gen_server:call), opaque to the runtime and
 * answered through cn__dist_ops.reply. */
struct cn_from {
  cn_runtime *rt;
  cn_pid pid;     /* who gets the reply */
  cn_ref ref;     /* the call tag (local), or the alias (CN__FROM_ALIAS) */
  cn_pid server;  /* the server's pid, to drop the call monitor */
  uint32_t flags; /* CN__FROM_* */
  void *route;    /* CN__FROM_REMOTE: the dist layer's, malloc'ed; freed with
                   * the from */
};

#define CN__FROM_MON 0x1    /* the server holds a monitor for this call */
#define CN__FROM_REMOTE 0x2 /* a caller on another node: route is set */
#define CN__FROM_ALIAS 0x4  /* the caller's tag carries an alias, in ref */

cn_from *cn__from_new(cn_runtime *rt);

/* An asynchronous call a process is waiting on. */
typedef struct cn__pending {
  struct cn__pending *next;
  cn_ref ref;    /* tag and monitor ref */
  cn_pid server; /* whom to demonitor */
  cn_reply_cb cb;
  void *arg;
  uint64_t deadline; /* uv_hrtime() when it times out, or 0: never (the
                      * process's call timer, see server.c) */
} cn__pending;

/* ---- Links and monitors (owned by the process) ------------------------ */

#define CN__LINK_INDEX_AT 8 /* links before a process indexes them */

/* A link, in its process's list of links, newest first (at exit the
 * signals go out in that order, children before the parent that started
 * them, as they always have), and, once a process has more than a few,
 * in its table of links by the other pid, so that adding, finding and
 * removing one stays O(1): a large supervisor is not quadratic. */
typedef struct cn__link {
  cn__hnode node;
  struct cn__link *prev, *next; /* the process's list, newest first */
  cn_pid pid;
} cn__link;

#define CN__MON_INDEX_AT 8 /* monitors in a set before it indexes them */

/* A monitor, in one of its process's two sets (those others hold on it,
 * those it holds), newest first, and, once the set has more than a few,
 * in the set's table by reference: a server that many callers monitor
 * at once (each gen_server:call does, until its reply) takes and drops
 * each monitor in O(1), not in a walk of the others. */
typedef struct cn__mon {
  cn__hnode node;
  struct cn__mon *prev, *next;
  cn_ref ref;
  cn_pid pid;       /* the other side: watcher (on me) or target (mine) */
  const char *name; /* monitored by name: the name, owned */
} cn__mon;

typedef struct cn__monset {
  cn__mon *list;   /* newest first */
  cn__htab *index; /* the same by reference, past CN__MON_INDEX_AT */
} cn__monset;

/* ---- Processes -------------------------------------------------------- */

#define CN__P_SCHED 0x1u   /* someone is responsible for running it */
#define CN__P_EXITING 0x2u /* exit has begun; inbox closed */

#define CN__PF_TRAP 0x1u   /* trap_exit */
#define CN__PF_THREAD 0x2u /* a plain thread's own pid, not scheduled */
#define CN__PF_INIT 0x4u   /* init is running (start not yet returned) */
#define CN__PF_DEAD 0x8u   /* exit finished */
#define CN__PF_OWN_EXIT                                                        \
  0x10u                        /* parent exits and stop requests arrive as     \
                                * {'EXIT', Parent, Reason} (supervisors) */
#define CN__PF_TMO_ARMED 0x20u /* the idle timeout is armed */

/* What few processes use, kept apart so that an idle server stays small:
 * allocated by the process's owner on first use (cn__ext), freed with the
 * process struct's last reference. */
typedef struct cn__pext {
  cn__link *link_list;   /* cn__link, newest first */
  cn__htab *link_index;  /* the same by pid, past CN__LINK_INDEX_AT */
  cn__monset mon_on_me;  /* monitors others hold on me */
  cn__monset mon_mine;   /* monitors I hold */
  cn__pending *calls;    /* my async calls in flight */
  uint64_t call_tmo_at;  /* deadline the call timer is armed for, or 0 */
  uint32_t call_tmo_gen; /* the armed call timer's S_CALL_TMO aux */
  cn_ref call_tref;      /* the armed call timer */
  cn_ref timeout_tref;   /* the idle timeout, while CN__PF_TMO_ARMED */
  cn_buf reason;         /* set by cn_set_reason */
  struct cn__msg *cont;  /* an S_CONTINUE set by cn_continue, not yet
                          * queued */
  struct cn__sys *sys;   /* sys's state (sys.c): NULL until the first
                          * system message */
} cn__pext;

struct cn_proc {
  /* Shared, atomic. */
  _Atomic uint32_t state;        /* CN__P_* */
  _Atomic uint32_t refs;         /* 0 = free */
  _Atomic(cn__msg *) inbox;      /* LIFO of pushed messages */
  _Atomic uint32_t mbox_len;     /* CN__COUNTED messages pushed and not
                                  * yet handled */
  uint32_t park_node;            /* 1 + the node whose connection was
                                  * busy when the current callback sent
                                  * to it: suspend after the callback */
  _Atomic uint64_t mbox_dropped; /* sends and casts refused */
  _Atomic uint64_t mbox_refused; /* calls refused */

  /* Fixed while the process lives, but for ops, which sys:change_code
   * may switch to a new version of the module (in the process's own
   * turn); atomic so that cn_server_users may read it from elsewhere. */
  cn_pid pid;
  cn_runtime *rt;
  const cn_server_ops *_Atomic ops;
  struct cn_proc *rq_next; /* run queue link (queue lock) */
  _Atomic unsigned home;   /* scheduler it last ran on */

  /* Owned by whoever holds SCHED. */
  uint32_t flags;           /* CN__PF_* */
  cn__msg *q_head, *q_tail; /* private FIFO */
  void *state_ptr;
  cn_pid parent;             /* start_link parent, or self */
  const char *reg_name;      /* registered name (registry lock) */
  int timeout_ms;            /* set by the current callback */
  uint32_t timeout_gen;      /* bumped by every message */
  uint32_t reply_hint;       /* bytes of its last reply by message, when
                              * large: the next one starts in a block that
                              * size */
  cn__pext *ext;             /* the rest, or NULL until first needed */
  struct cn_proc *park_next; /* while parked by the dist layer */
  struct cn_proc *next_free; /* free list link */
  struct cn__thread *thread; /* CN__PF_THREAD: the waiter */
};

/* p's cn__pext, allocated on first use; NULL when out of memory.  Only
 * p's owner calls it. */
cn__pext *cn__ext(cn_proc *p);

/* A plain thread's own pid and wait state. */
typedef struct cn__thread {
  cn_proc *proc;
  cn_runtime *rt;
  pthread_t owner;             /* the thread it belongs to */
  struct cn__thread *next_all; /* every live context, of every runtime */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  _Atomic int waiting;
  cn_ref call_ref; /* the call this thread is blocked in */
  int in_call;
  struct cn__msg *result;     /* its reply or DOWN, once it arrives */
  uint64_t ref_next, ref_end; /* reference numbers taken (see sched.c) */
  cn_proc *server;            /* the server last called, referenced */
} cn__thread;

/* ---- Record caches ---------------------------------------------------- */

/* The records every call and message allocates: a scheduler keeps freed
 * ones of each kind in a list of its own (no lock: only its thread
 * touches it), and hands them out again.  Any other thread keeps a few in
 * a thread-local list of its own (CN__REC_KEEP_PLAIN of each kind, freed
 * when the thread exits), so that a plain thread's calls do not go to
 * malloc each time; what no list takes goes back to malloc. */
typedef enum cn__rec_kind {
  CN__REC_MSG,     /* cn__msg with CN__MSG_POOL_INLINE bytes inline */
  CN__REC_FROM,    /* cn_from */
  CN__REC_PENDING, /* cn__pending */
  CN__REC_MON,     /* cn__mon: a remote caller's monitor, each call */
  CN__REC_DIST,    /* a connection's link or monitor record (the dist
                    * layer's, of at most CN__REC_DIST_SIZE bytes) */
  CN__NREC
} cn__rec_kind;

#define CN__REC_DIST_SIZE 112

/* Records of a kind a scheduler keeps at most; the rest are freed. */
#define CN__REC_KEEP 512
/* Records of a kind any other thread keeps at most. */
#define CN__REC_KEEP_PLAIN 16

typedef struct cn__rec_cache {
  void *head; /* records linked through their first word */
  unsigned n;
} cn__rec_cache;

/* A record of kind (uninitialised), or NULL when out of memory. */
void *cn__rec_alloc(cn__rec_kind kind);
/* Gives back r (from cn__rec_alloc of the same kind; may be NULL). */
void cn__rec_free(cn__rec_kind kind, void *r);

/* ---- Schedulers ------------------------------------------------------- */

typedef struct cn__heap {
  struct cn__timer **v;
  size_t n, cap;
} cn__heap;

typedef struct cn__sched {
  cn_runtime *rt;
  unsigned idx;
  uv_loop_t loop;
  uv_async_t wake;      /* cross-thread wake-up */
  uv_idle_t runner;     /* active while the run queue has work */
  uv_prepare_t prepare; /* before blocking: steal, or mark sleeping */
  uv_check_t check;     /* after polling: clear sleeping */
  uv_timer_t timer;     /* the earliest timer of this scheduler */
  uv_thread_t thread;
  int running_flag; /* runner handle active (loop thread only) */

  /* The process this scheduler's own thread made runnable while its queue
   * was empty: it runs next, with no lock (loop thread only).  The queue
   * is then, in order, this one and rq's. */
  cn_proc *rq_next;
  cn__rec_cache recs[CN__NREC]; /* loop thread only */
  uint64_t ref_next, ref_end;   /* reference numbers taken (loop thread) */

  pthread_mutex_t rq_mu;
  cn_proc *rq_head, *rq_tail;
  _Atomic size_t rq_len;
  _Atomic int sleeping;
  _Atomic int stopping;
  struct cn__task *tasks; /* cn__sched_run requests (rq_mu) */

  /* Timers: heap and index, shared under timer_mu. */
  pthread_mutex_t timer_mu;
  cn__heap heap;
  cn__htab tindex;   /* the same timers, by id */
  uint64_t armed_at; /* deadline the uv timer is armed for, or 0 */
  _Atomic int timer_dirty;
} __attribute__((aligned(CN__CACHELINE))) cn__sched;

/* ---- The runtime ------------------------------------------------------ */

#define CN__CHUNK_BITS 12
#define CN__CHUNK (1u << CN__CHUNK_BITS)

struct cn_runtime {
  unsigned nsched;
  cn__sched *sched;
  uint32_t node; /* interned node name */
  uint32_t creation;
  cn_term_limits limits;      /* max_size unused: see max_message */
  _Atomic size_t max_message; /* bytes; cn_dist_start may lower it */
  size_t max_mailbox;         /* 0: unlimited */
  _Atomic uint64_t st_mbox_dropped, st_mbox_refused, st_too_large;
  pthread_mutex_t log_mu; /* cn__log's rate limit */
  uint64_t log_window;
  unsigned log_n, log_suppressed;
  _Atomic int shutting_down;
  _Atomic int stopped;

  /* Process table: chunks of CN__CHUNK slots, allocated on demand. */
  size_t max_procs;
  _Atomic(cn_proc *) *_Atomic *chunks;
  uint32_t *serials; /* per slot, under table_mu */
  pthread_mutex_t table_mu;
  uint32_t *free_slots; /* stack of free slot numbers */
  size_t nfree_slots;
  size_t next_slot;        /* slots never used start here */
  cn_proc *free_procs;     /* recycled process structs */
  _Atomic size_t nprocs;   /* live processes (not threads) */
  _Atomic size_t nthreads; /* live thread pids */
  pthread_mutex_t exit_mu; /* signalled when a process exits */
  pthread_cond_t exit_cv;

  _Atomic uint64_t ref_counter;
  _Atomic unsigned rr; /* round-robin placement */

  /* Registered names. */
  pthread_rwlock_t names_mu;
  cn__htab names; /* cn__name, by name */

  /* Modules for supervisors (cn_module_register). */
  pthread_mutex_t modules_mu;
  struct cn__module *modules;

  pthread_key_t thread_key; /* the calling thread's cn__thread */
  int key_ok;               /* thread_key was created */

  /* Exported functions and the threads that run them (export.c). */
  pthread_mutex_t exports_mu;
  pthread_cond_t workers_cv; /* signalled when the last worker ends */
  struct cn__export *exports;
  unsigned workers; /* worker threads running (exports_mu) */

  /* Distribution, once cn_dist_start has run (see the dist hooks). */
  _Atomic(void *) dist;
  const struct cn__dist_ops *dist_ops;
};

/* What the runtime asks of the distribution layer.  The runtime knows
 * nothing else about it: layers depend downwards (README, Layout). */
typedef struct cn__dist_ops {
  /* Takes m in every case (sends or frees it).  to is a pid of another
   * node, or, with CN__F_TONAME, stands for {m->name, node of to}.
   * Failures that need an answer (a link, a monitor, a call) are answered
   * later with an exit signal or DOWN noconnection, never inside this
   * call.  Returns 0 or CN_ENOCONN.  Thread-safe. */
  int (*deliver)(cn_runtime *rt, cn_pid to, cn__msg *m);
  /* Closes every connection and unregisters; at the start of
   * cn_runtime_shutdown, on a plain thread. */
  void (*stop)(cn_runtime *rt);
  /* Frees what stop left, after the schedulers have exited. */
  void (*free)(cn_runtime *rt);
  /* Back-pressure (OTP's dist_buf_busy_limit).  A process that sent to a
   * node whose connection is busy is suspended after its callback: park
   * takes p, with SCHED and the run queue's reference, and schedules it
   * again once the connection is no longer busy (or is gone).  Returns
   * false when it did not take p (then the caller carries on). */
  bool (*park)(cn_runtime *rt, cn_proc *p, uint32_t node);
  /* True while node's connection is busy (cn_send_opts with
   * CN_SEND_NOSUSPEND). */
  bool (*busy)(cn_runtime *rt, uint32_t node);
  /* Answers a remote caller (from->route) with reply, a term the runtime
   * has checked.  from stays the caller's.  own, when not NULL, is the
   * buffer reply lies in: a large one's heap memory may be taken over
   * (own->data is NULL then, and own->len unchanged) instead of copied.
   * Returns 0 or CN_ENOMEM. */
  int (*reply)(cn_runtime *rt, const cn_from *from, cn_term reply, cn_buf *own);
} cn__dist_ops;

typedef struct cn__module {
  struct cn__module *next;
  char *name;
  cn_child_start_fn start;
  void *arg;
} cn__module;

/* The version of the server module `name` (registered by its callbacks,
 * cn_server_register) that starts use now, or NULL when name is no such
 * module. */
const cn_server_ops *cn__server_module_ops(cn_runtime *rt, const char *name);

/* ---- Internal API ----------------------------------------------------- */

/* Waits on cv (initialised with uv_cond_init, so on the monotonic clock;
 * mu held) until it is signalled or the uv_hrtime() deadline (0: none)
 * passes.  Returns false once the deadline has passed.  Callers loop on
 * their own condition: wake-ups may be spurious. */
static inline bool cn__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
                                 uint64_t deadline) {
  uint64_t now;
  if (!deadline) {
    uv_cond_wait(cv, mu);
    return true;
  }
  now = uv_hrtime();
  if (now >= deadline)
    return false;
  uv_cond_timedwait(cv, mu, deadline - now);
  return true;
}

/* A cn_ms as the int milliseconds the internals wait with: -1 for
 * CN_INFINITY (any negative), at most INT_MAX. */
static inline int cn__ms(cn_ms ms) {
  return ms < 0 ? -1 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* The process running on this thread, or NULL. */
cn_proc *cn__current(void);
cn_proc *cn__set_current(cn_proc *p);
/* The scheduler this thread runs, or NULL on a plain thread. */
cn__sched *cn__current_sched(void);

/* Process table. */
int cn__proc_alloc(cn_runtime *rt, const cn_server_ops *ops, uint32_t flags,
                   cn__thread *thread, const cn_pid *parent, cn_proc **out);
/* The caller's own process: the running one, or the calling thread's. */
int cn__caller_proc_for(cn_runtime *rt, cn_proc **out);
cn_proc *cn__lookup(cn_runtime *rt, cn_pid pid); /* +1 ref, or NULL */
void cn__proc_unref(cn_proc *p);
bool cn__is_local(cn_runtime *rt, cn_pid pid);

/* Delivery.  Pushes m to pid's inbox and schedules it.  Returns 0, or
 * CN_ENOPROC (m is freed) when the process does not exist or has exited,
 * or CN_EFULL (m is freed, and counted) when m is a counted kind and the
 * mailbox holds max_mailbox of them. */
int cn__deliver(cn_runtime *rt, cn_pid pid, cn__msg *m);
int cn__deliver_to(cn_proc *p, cn__msg *m); /* same, to a held proc */
/* The same for a destination on another node (see cn__dist_ops.deliver):
 * CN_ENOCONN, with m freed, when distribution is not running. */
int cn__deliver_remote(cn_runtime *rt, cn_pid to, cn__msg *m);
/* Delivers a signal that needs an answer when the target is dead:
 * LINK -> exit noproc to sender, MONITOR -> DOWN noproc to sender. */
int cn__signal(cn_runtime *rt, cn_pid to, cn__msg *m);

/* Runs fn(arg) on scheduler idx's loop thread and waits until it has
 * returned (directly, when called on that thread).  For setting up and
 * tearing down handles that live on a scheduler's loop. */
typedef struct cn__task {
  struct cn__task *next;
  void (*fn)(void *arg);
  void *arg;
  int done;
} cn__task;
void cn__sched_run(cn_runtime *rt, unsigned idx, void (*fn)(void *), void *arg);
uv_loop_t *cn__sched_loop(cn_runtime *rt, unsigned idx);

/* Scheduling. */
void cn__schedule(cn_proc *p); /* p has SCHED set by the caller */
/* True on a scheduler thread of rt with no other process waiting to run
 * (the one running aside). */
bool cn__sched_quiet(cn_runtime *rt);
/* Drops SCHED after running.  If a message slipped in, p is requeued with
 * the caller's reference and true is returned; otherwise the caller still
 * holds its reference. */
bool cn__release(cn_proc *p);
void cn__run_proc(cn_proc *p, int budget);

/* Inbox.  Only p's owner calls these.  cn__inbox_take swaps the inbox for
 * `with` (NULL, or CN__MBOX_CLOSED to close it) and returns what was
 * there oldest first, with the newest in *tail.  cn__inbox_to_queue
 * appends that to p's private queue. */
cn__msg *cn__inbox_take(cn_proc *p, cn__msg *with, cn__msg **tail);
void cn__inbox_to_queue(cn_proc *p, cn__msg *with);

/* A DOWN signal from `from` for monitor ref (by name when name is set),
 * or NULL without memory. */
cn__msg *cn__down_new(cn_pid from, const cn_ref *ref, const char *name,
                      cn_term reason, int flags);

/* Links and monitors, owned by the process. */
int cn__add_link(cn_proc *p, cn_pid pid);
bool cn__remove_link(cn_proc *p, cn_pid pid);
/* The keyed hash of a reference, for tables of monitors (peers choose
 * the references of the monitors they set on us).  It reads what
 * cn_ref_equal compares: a word past len counts as zero. */
uint64_t cn__ref_hash(const cn_ref *r);

/* Adds a monitor by ref on (or of) pid to s, with a copy of name when
 * it is by name.  0 or CN_ENOMEM. */
int cn__add_mon(cn__monset *s, const cn_ref *ref, cn_pid pid, const char *name);
/* Unlinks and returns the monitor with ref, or NULL. */
cn__mon *cn__take_mon(cn__monset *s, const cn_ref *ref);
/* The same, with cn__ref_hash(ref) already known (0: not known). */
cn__mon *cn__take_mon_hashed(cn__monset *s, const cn_ref *ref, uint64_t hash);
/* Unlinks and returns the newest monitor, or NULL when s is empty. */
cn__mon *cn__pop_mon(cn__monset *s);
void cn__mon_free(cn__mon *mo);
bool cn__link_signal(cn_proc *p, cn__msg *m);

/* Processes. */
void cn__proc_exit(cn_proc *p, cn_term reason, bool run_terminate);
void cn__thread_handle(cn_proc *p, cn__msg *m);
void cn__handle_msg(cn_proc *p, cn__msg *m);
int cn__server_call_inline(cn_proc *p, cn_from *from, cn_term req,
                           cn_buf *reply);
void cn__drop_pending(cn_proc *p);

/* Fails a call instead of answering it (see server.c); self is the server
 * (NULL outside it).  flags go on a local caller's answer. */
void cn__fail_call(cn_proc *self, cn_from *from, int err, int flags);

/* Logs one event at warning level for the domain "cnode", through the log
 * hook (cnode/log.h; by default a line on stderr).  At most 20 events a
 * second over the runtime (the rest are counted and reported), so that a
 * flood of bad input cannot fill a disk through it.  Thread-safe. */
void cn__log(cn_runtime *rt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* cn__log at another level (CN_LOG_ERROR, CN_LOG_INFO, ...), under the
 * same rate limit. */
void cn__log_at(cn_runtime *rt, cn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Exports (export.c) ---------------------------------------------- */

/* apply(mod, fun, args) as cn_apply, on the calling thread, with no
 * check of the caller or of args (the caller checked it).  Returns the
 * cn_export_result; CN_ENOENT for undef; CN_EBADTERM when args is not a
 * proper list.  When stack is not NULL it receives, for CN_ERROR, the
 * stack trace [{Mod, Fun, Arity, []}], and for undef the BEAM's:
 * [{Mod, Fun, Args, []}], or for a fun, which no C node can run,
 * [{Fun, Args, []}, {erlang, apply, 2, []}]. */
int cn__apply(cn_runtime *rt, const char *mod, const char *fun, cn_term args,
              cn_buf *out, cn_buf *stack);

/* Work for a worker thread: fn(w) runs on a new detached thread, which
 * may block; fn owns w (it may free it).  The runtime waits for running
 * workers when it shuts down (cn__work_wait). */
typedef struct cn__work {
  cn_runtime *rt;
  void (*fn)(struct cn__work *w);
} cn__work;

/* Starts w on a thread of its own.  Returns 0, or CN_ELIMIT (at the
 * limit of running workers, shutting down, or no thread could be made);
 * then fn never runs. */
int cn__work_start(cn_runtime *rt, cn__work *w);
/* Waits up to timeout_ms (-1: for ever) for every worker to end.  True
 * when none is left. */
bool cn__work_wait(cn_runtime *rt, int timeout_ms);
void cn__exports_free(cn_runtime *rt);
/* True when some function of mod is exported: what code:ensure_loaded/1
 * calls loaded, for the built-in exports.  Thread-safe. */
bool cn__module_exported(cn_runtime *rt, const char *mod);

/* For the built-in exports (erlang:registered/0, processes/0,
 * process_info/2).  cn__names_list appends the list of registered names
 * (atoms) to out and returns out->err.  cn__proc_name copies pid's
 * registered name into out: 0, CN_ENOENT (none, or over cap), or
 * CN_ENOPROC.  cn__each_proc calls fn on every live process (not the
 * threads' own pids), holding a reference; fn must not block.  All
 * thread-safe. */
int cn__names_list(cn_runtime *rt, cn_buf *out);
int cn__proc_name(cn_runtime *rt, cn_pid pid, char *out, size_t cap);
void cn__each_proc(cn_runtime *rt, void (*fn)(cn_proc *p, void *arg),
                   void *arg);
/* What only the process itself may read, asked of it as a signal that it
 * answers in its own turn (even while sys has it suspended), as
 * erlang:process_info/2 does: into out, {Links, Monitors, MonitoredBy,
 * TrapExit}, Links and MonitoredBy lists of pids, Monitors a list of
 * {process, Pid} or {process, {Name, Node}}.  From a plain thread only.
 * Returns 0, CN_ENOPROC, CN_ETIMEDOUT, CN_EDEADLK (inside a callback) or
 * CN_ENOMEM. */
int cn__process_links(cn_runtime *rt, cn_pid pid, cn_ms timeout, cn_buf *out);

/* ---- sys (sys.c) ------------------------------------------------------ */

/* What cn__sys_filter did with a message. */
#define CN__SYS_PASS 0 /* not for sys: dispatch it as usual */
#define CN__SYS_DONE 1 /* a system message, answered: free it */
#define CN__SYS_KEPT 2 /* held while suspended: sys owns it now */

/* Called by cn__handle_msg for every message of a server, before
 * dispatch: answers {system, From, Req} (sys.erl's requests), and while
 * the server is suspended holds back everything but system messages and
 * the signals that end it, to replay them in order on resume. */
int cn__sys_filter(cn_proc *p, cn__msg *m);
/* True while sys has p suspended (p's owner only). */
bool cn__sys_suspended(const cn_proc *p);
/* At exit: puts the held messages back at the head of p's queue (to be
 * answered as a dead process's) and frees p's sys state. */
void cn__sys_exit(cn_proc *p);
/* A call ran inline (not through the mailbox), and a call handler sent
 * a reply: counted for sys:statistics. */
void cn__sys_count_in(cn_proc *p);
void cn__sys_count_out(cn_proc *p);
/* p's registered name, or else its pid as ~w prints it, into out. */
void cn__proc_label(cn_proc *p, char *out, size_t cap);
/* Logs the crash report of p exiting with reason (not normal, shutdown
 * or {shutdown, _}) after its own callback or a stop ran terminate. */
void cn__crash_report(cn_proc *p, cn_term reason);
/* Prints t as ~w would, cut to at most cap-1 bytes ("..." at the end when
 * cut), into out. */
void cn__term_short(cn_term t, char *out, size_t cap);

/* The alias a gen:call tag carries, [alias | Ref] or [[alias | Ref] | _]
 * (OTP 24+), into *alias; false for a plain reference tag.  The
 * reference's node is looked up, never interned (CN_ENOENT reads as no
 * alias), so a peer's tags cannot fill the node table.  For sys's replies
 * and the distribution layer's calls alike. */
bool cn__tag_alias(cn_term tag, cn_ref *alias);

/* server.c, for sys: stop as cn_stop asks (terminate, then exit with
 * reason; a supervisor gets it as its parent's exit), and run the
 * code_change callback (0: the new state is in place; otherwise the old
 * state stays and *why holds {error, Reason}'s Reason).  module (NULL:
 * none) is sys:change_code's Module: when it is the server's own and a
 * newer version of it is registered, that version converts the state and
 * becomes the server's code. */
void cn__server_stop(cn_proc *p, cn_term reason);
int cn__server_code_change(cn_proc *p, const cn_term *module, cn_term vsn,
                           cn_term extra, cn_buf *why);
/* The message a process's callback is handling on this thread, or an
 * empty term (for crash reports). */
cn_term cn__last_msg(void);

/* Checks a term that a caller hands the runtime: one whole, well-formed
 * term within rt's limits (max_message).  Returns 0, CN_EBADTERM,
 * CN_ETOODEEP or CN_ETOOBIG.  Nothing from outside reaches a process
 * unchecked. */
int cn__check_term(cn_runtime *rt, cn_term t);
/* rt's limits as the validator takes them, max_message included. */
cn_term_limits cn__limits(cn_runtime *rt);
/* The reason a BEAM caller's gen_server:call exits with when its call is
 * refused with err (CN_ETOOBIG: {message_too_large, MaxMessage};
 * CN_EFULL: {mailbox_full, MaxMailbox}), built into b. */
int cn__refusal_reason(cn_runtime *rt, int err, cn_buf *b);

/* Waits on a plain thread for the REPLY or DOWN tagged ref. */
int cn__thread_wait_ref(cn__thread *t, const cn_ref *ref, int timeout_ms,
                        cn__msg **out);

/* Pids and refs.  cn__ref_number is a number no other call returns,
 * from rt's counter (a scheduler, and a plain thread with a cn__thread in
 * rt, takes them a block at a time); cn__thread_ref_number is the same
 * for a plain thread whose context the caller already holds (no lookup).
 * cn__ref_of makes rt's reference numbered n; cn__make_ref makes a new
 * one. */
uint64_t cn__ref_number(cn_runtime *rt);
uint64_t cn__thread_ref_number(cn_runtime *rt, cn__thread *t);
void cn__ref_of(cn_runtime *rt, uint64_t n, cn_ref *r);
void cn__make_ref(cn_runtime *rt, cn_ref *r);
cn_pid cn__caller_pid(cn_runtime *rt, int *err);

/* Threads. */
cn__thread *cn__thread_ctx(cn_runtime *rt, int *err);
/* A plain thread keeps a reference to the server it called last, so
 * that calling it again takes no lookup (and no reference count round
 * trip).  take_server hands that reference over when the server is pid
 * and has not begun to exit (else NULL: look it up); keep_server takes
 * a reference to p back, after the call. */
cn_proc *cn__thread_take_server(cn__thread *t, cn_pid pid);
void cn__thread_keep_server(cn__thread *t, cn_proc *p);
void cn__thread_wake(cn__thread *t);
/* Frees a thread's context: from the last cn__proc_unref of its process,
 * so that a sender still holding the process may wake it after the
 * thread has gone. */
void cn__thread_free(cn__thread *t);
void cn__threads_free(cn_runtime *rt);

/* Names. */
/* The hash that places name in the names table: SipHash under the
 * process's key (cn__hash_key).  Not static only so that the tests can
 * check that crafted names spread. */
uint64_t cn__name_hash(const char *name);
int cn__name_lookup(cn_runtime *rt, const char *name, cn_pid *pid);
/* Registers p (owned by the caller, not yet visible) under name.  On
 * CN_EEXIST *holder is the current holder. */
int cn__name_register_locked(cn_runtime *rt, const char *name, cn_proc *p,
                             cn_pid *holder);
void cn__name_drop_proc(cn_runtime *rt, cn_proc *p);
void cn__names_free(cn_runtime *rt);

/* Timers.  A timer fires with the others due within CN__TIMER_SLACK
 * nanoseconds (one wake-up for deadlines that close). */
#define CN__TIMER_SLACK 500000u
int cn__timer_start(cn_runtime *rt, uint64_t ms, cn_pid pid, cn_dest *dest,
                    int kind, uint32_t aux, const cn_ref *ref, cn_term msg,
                    cn_ref *tref);
/* The same at a uv_hrtime() deadline. */
int cn__timer_start_at(cn_runtime *rt, uint64_t deadline, cn_pid pid,
                       cn_dest *dest, int kind, uint32_t aux, const cn_ref *ref,
                       cn_term msg, cn_ref *tref);
int cn__timer_cancel(cn_runtime *rt, const cn_ref *tref, long *left_ms);
void cn__timers_init(cn__sched *s);
void cn__timers_run(cn__sched *s);
void cn__timers_rearm(cn__sched *s);
void cn__timers_free(cn__sched *s);

/* Terms the runtime builds. */
int cn__build_exit_msg(cn_buf *b, cn_pid from, cn_term reason);
int cn__build_down_msg(cn_buf *b, const cn_ref *ref, const cn__msg *m,
                       cn_runtime *rt);

/* The atoms the runtime uses as reasons, as ready terms. */
cn_term cn__atom_term(const char *name); /* static storage for known ones */

#endif /* CN_RUNTIME_INTERNAL_H */
