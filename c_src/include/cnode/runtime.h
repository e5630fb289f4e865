/* cnode: the runtime.  Erlang's process model for C.
 *
 * A runtime owns N scheduler threads, each running a libuv loop.
 * Processes have real Erlang pids, a mailbox, links, monitors and an
 * optional registered name.  Every process is a gen_server: a table of
 * callbacks (cn_server_ops) and a state pointer.
 *
 * The caller: one rule.  A function's first argument says who it acts
 * for.
 *   - cn_proc *self: the function exists only inside self's own
 *     callbacks, where the runtime hands self in (cn_call_async,
 *     cn_set_timeout, cn_set_reason, cn_trap_exit, cn_proc_*).
 *   - cn_runtime *rt: the function works from anywhere, thread-safely,
 *     and where it acts for "the caller" (cn_self, cn_link, cn_monitor,
 *     cn_exit, the sender of cn_send, the linked parent of cn_start_link)
 *     that is the process running the current callback, or else the
 *     calling thread's own pid, which the runtime mints the first time
 *     the thread needs one.  A thread traps exits: exit signals reach its
 *     mailbox as {'EXIT', Pid, Reason} messages, read with cn_receive.
 *     The blocking calls (cn_call, cn_stop, cn_receive, ...) are for
 *     plain threads and give CN_EDEADLK inside a callback.
 *   - cn_from *from: the answer to one call (cn_reply).
 *
 * Time.  Every timeout and delay is a cn_ms: milliseconds, or CN_INFINITY.
 *
 * Memory.  Pids are the handles to processes: a pid never dangles, and a
 * message to a dead pid is dropped, as in Erlang.  The runtime owns process
 * memory.  Terms passed in are checked by the bounded validator
 * (cn_term_validate, with the runtime's limits) and copied before the call
 * returns: a malformed term gives CN_EBADTERM (or CN_ETOODEEP, CN_ETOOBIG)
 * and reaches no process.  Terms handed to callbacks are valid until the
 * callback returns.
 */
#ifndef CNODE_RUNTIME_H
#define CNODE_RUNTIME_H

#include "common.h"
#include "term.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cn_runtime cn_runtime; /* opaque */
typedef struct cn_proc cn_proc;       /* opaque; see the header comment */
typedef struct cn_from cn_from;       /* opaque; a caller awaiting a reply */

/* Every time in the API, a timeout or a delay: milliseconds, or
 * CN_INFINITY where a wait may be endless.  Waits longer than 2^31-1 ms
 * (24.8 days) wait that long. */
typedef int64_t cn_ms;
#define CN_INFINITY ((cn_ms)-1) /* a timeout that never expires */

/* ---- The runtime ------------------------------------------------------ */

typedef struct cn_runtime_options {
  unsigned schedulers;   /* scheduler threads; 0 = one per online core */
  const char *node_name; /* NULL = "nonode@nohost" (C-only mode) */
  uint32_t creation;     /* the node's incarnation (0: a random one);
                          * ignored for nonode */
  size_t max_processes;  /* 0 = CN_DEFAULT_MAX_PROCESSES */
  /* Messages, casts and calls a process may have queued and not yet
   * handled; 0 = unlimited, as in Erlang.  Past it, a call fails at once
   * for its caller (CN_EFULL in C; a BEAM caller's gen_server:call exits
   * with {mailbox_full, Max}), and a send or cast is dropped and counted
   * (cn_proc_info).  Replies to the process's own calls and signals
   * (exits, links, monitors, DOWNs) are never refused. */
  size_t max_mailbox;
  /* Terms that enter from outside are checked against these.  max_size
   * is also the largest message the runtime carries, its max_message
   * (0 = CN_DEFAULT_MAX_MESSAGE); cn_dist_start may lower it. */
  cn_term_limits limits;
} cn_runtime_options;

#define CN_DEFAULT_MAX_PROCESSES ((size_t)1 << 21)
#define CN_DEFAULT_MAX_MESSAGE CN_TERM_DEFAULT_MAX_SIZE /* 1 GiB */

/* Creates a runtime and starts its scheduler threads.  opts may be NULL
 * for the defaults.  On success *out owns the runtime; release it with
 * cn_runtime_free().  Returns 0, CN_EINVAL (bad options, such as a node
 * name without '@'), CN_ENOMEM or CN_ESYSTEM (a thread or loop could not be
 * created). */
CN_EXTERN int cn_runtime_new(const cn_runtime_options *opts, cn_runtime **out);

/* Stops every process and then the schedulers.  Processes get an exit
 * signal `shutdown` (so trapping servers and supervisors run terminate);
 * those still alive after timeout are killed.  Blocks until the
 * scheduler threads have exited.  Must not be called from a scheduler
 * thread (CN_EDEADLK).  Safe to call more than once. */
CN_EXTERN int cn_runtime_shutdown(cn_runtime *rt, cn_ms timeout);

/* Shuts the runtime down (if it still runs, with a 5 s timeout) and frees
 * it.  Not thread-safe: no other thread may use rt during or after it. */
CN_EXTERN void cn_runtime_free(cn_runtime *rt);

/* The runtime's node name as an interned index (0 for nonode@nohost) and
 * its creation. */
CN_EXTERN uint32_t cn_runtime_node(const cn_runtime *rt);
CN_EXTERN uint32_t cn_runtime_creation(const cn_runtime *rt);

/* The number of live processes (threads' own pids not included). */
CN_EXTERN size_t cn_process_count(cn_runtime *rt);

/* True if pid names a live process of this runtime. */
CN_EXTERN bool cn_is_alive(cn_runtime *rt, cn_pid pid);

/* The largest message the runtime carries, in bytes of its encoded term
 * (its max_message: see cn_runtime_options.limits).  Every term handed to
 * the runtime, sent, received from another node or built as a reply, is
 * held to it.  Thread-safe. */
CN_EXTERN size_t cn_max_message(cn_runtime *rt);

/* What erlang:process_info/2 tells of a process's mailbox. */
typedef struct cn_proc_info {
  size_t message_queue_len; /* messages, casts and calls not yet handled */
  uint64_t dropped;         /* sends and casts refused at max_mailbox */
  uint64_t refused_calls;   /* calls refused at max_mailbox */
} cn_proc_info;

/* Fills *info for a live local process.  Returns 0, CN_ENOPROC or
 * CN_EINVAL.  A plain thread's own pid has no counted mailbox (zeros).
 * Thread-safe. */
CN_EXTERN int cn_process_info(cn_runtime *rt, cn_pid pid, cn_proc_info *info);

/* Counters over the whole runtime, since it started. */
typedef struct cn_runtime_stats {
  uint64_t mailbox_dropped;   /* sends and casts refused at max_mailbox */
  uint64_t mailbox_refused;   /* calls refused at max_mailbox */
  uint64_t replies_too_large; /* replies over max_message, answered with
                               * an error instead */
} cn_runtime_stats;

/* Copies the counters.  Returns 0 or CN_EINVAL.  Thread-safe. */
CN_EXTERN int cn_runtime_get_stats(cn_runtime *rt, cn_runtime_stats *stats);

/* ---- Destinations ----------------------------------------------------- */

typedef enum cn_dest_kind {
  CN_DEST_PID = 1, /* a pid, local or remote */
  CN_DEST_NAME,    /* a locally registered name */
  CN_DEST_REMOTE   /* {Name, Node} */
} cn_dest_kind;

typedef struct cn_dest {
  cn_dest_kind kind;
  cn_pid pid;       /* CN_DEST_PID */
  const char *name; /* CN_DEST_NAME, CN_DEST_REMOTE */
  const char *node; /* CN_DEST_REMOTE */
} cn_dest;

static inline cn_dest cn_to_pid(cn_pid pid) {
  cn_dest d = {CN_DEST_PID, pid, NULL, NULL};
  return d;
}
static inline cn_dest cn_to_name(const char *name) {
  cn_dest d = {CN_DEST_NAME, {0, 0, 0, 0}, name, NULL};
  return d;
}
static inline cn_dest cn_to_remote(const char *name, const char *node) {
  cn_dest d = {CN_DEST_REMOTE, {0, 0, 0, 0}, name, node};
  return d;
}

/* ---- Servers ---------------------------------------------------------- */

/* What callbacks return.  Any other value makes the process exit with
 * reason {bad_return_value, Value}, as OTP's gen_server does.  0 is none
 * of them on purpose: a callback that ends with `return cn_build(...)` or
 * `return 0` by mistake fails loudly instead of leaving its caller to time
 * out. */
enum cn_callback_result {
  CN_NOREPLY = 1,    /* carry on (handle_call: reply later, cn_reply) */
  CN_REPLY = 2,      /* handle_call: send the term in *reply */
  CN_STOP = 3,       /* exit with the reason set by cn_set_reason
                      * (normal when none was set) */
  CN_STOP_REPLY = 4, /* handle_call: reply, then stop */
  CN_IGNORE = 5      /* init only: start returns CN_EIGNORE */
};

/* A server's callbacks.  Every server (and every supervisor) also answers
 * OTP's system messages, {system, From, Req} as sys.erl sends them:
 * get_state (through format_state), get_status, suspend and resume,
 * change_code (through code_change, while suspended), terminate and the
 * debug requests; see the README, "sys and OTP's tools". */
typedef struct cn_server_ops {
  /* The module name reported to supervisors and sys (an atom), or NULL
   * for "cnode_server". */
  const char *name;

  /* Runs in the new process before cn_start returns, on the caller's
   * thread.  Sets *state and returns CN_NOREPLY, CN_STOP or CN_IGNORE.
   * Optional: NULL keeps the start argument as the state. */
  int (*init)(cn_proc *self, void *arg, void **state);

  /* A call.  Return CN_REPLY with the reply built into *reply (an empty
   * buffer on entry), or CN_NOREPLY to answer later with cn_reply(from),
   * in which case this callback owns from.  With CN_REPLY, CN_STOP and
   * CN_STOP_REPLY the runtime keeps from.  A reply that is not one
   * well-formed term makes the server exit with reason bad_reply.  A
   * reply over max_message does not: the caller's call fails at once
   * (CN_ETOOBIG in C; a BEAM caller exits with
   * {message_too_large, MaxMessage}), and the server carries on.  Optional:
   * when NULL, a call makes the server exit with {bad_call, Req}. */
  int (*handle_call)(cn_proc *self, void *state, cn_term req, cn_from *from,
                     cn_buf *reply);

  /* A cast ('$gen_cast').  Returns CN_NOREPLY or CN_STOP. Optional. */
  int (*handle_cast)(cn_proc *self, void *state, cn_term msg);

  /* Any other message: plain sends, {'EXIT', Pid, Reason} when trapping
   * exits, {'DOWN', Ref, process, Pid, Reason}, timer messages, and the
   * atom timeout after cn_set_timeout.  Returns CN_NOREPLY or CN_STOP.
   * Optional. */
  int (*handle_info)(cn_proc *self, void *state, cn_term msg);

  /* A continuation (OTP's handle_continue): runs when a callback (init
   * included) called cn_continue and returned without stopping, before
   * the process takes any other message, with the term given there.
   * Returns CN_NOREPLY or CN_STOP, and may continue again.  Optional;
   * without it cn_continue fails. */
  int (*handle_continue)(cn_proc *self, void *state, cn_term cont);

  /* Runs when the process stops through a callback's CN_STOP, through
   * cn_stop, or through an exit signal while it traps exits (the
   * gen_server rule: a process that does not trap exits dies at once,
   * without terminate).  For cleanup with effects (flush, notify); free
   * memory in free_state, which runs on every exit.  Optional. */
  void (*terminate)(cn_proc *self, void *state, cn_term reason);

  /* An upgrade (cn_code_change).  Replaces *state and returns CN_NOREPLY,
   * or returns CN_STOP to refuse (the old state stays).  Optional. */
  int (*code_change)(cn_proc *self, void **state, cn_term old_vsn,
                     cn_term extra);

  /* Frees the state once the process is gone, on every exit path (after
   * terminate when that runs, and also when an exit signal kills the
   * process).  Not called when init fails.  Optional. */
  void (*free_state)(void *state);

  /* The state as a term, for sys:get_state and sys:get_status (and
   * :sys.get_state/1 in iex).  Appends one term to out (an empty buffer
   * on entry) and returns 0, or returns a CN_E* code: then get_state
   * raises {callback_failed, {Module, format_state}, Code} in its caller
   * and get_status shows that term as the state.  Runs in the process,
   * with its state, and must not change it.  Optional: without it the
   * state shows as {cnode_state, Module}, Module being name above.
   * Added last, so initialisers written before it keep working. */
  int (*format_state)(cn_proc *self, void *state, cn_buf *out);
} cn_server_ops;

typedef struct cn_start_options {
  const char *name; /* register under this name, or NULL */
  cn_buf *reason;   /* receives the exit reason when init stops, or NULL */
} cn_start_options;

/* Starts a server (gen_server:start).  Runs ops->init on the calling
 * thread, inside the new process, and returns once init has returned:
 * 0 with *pid set; CN_EEXIST when opts->name is taken (*pid is the holder,
 * as in {already_started, Pid}); CN_EIGNORE; CN_EEXIT when init stopped
 * (its reason goes to opts->reason); CN_ELIMIT at max_processes; CN_ENOMEM.
 * The new process is not linked to anyone: its crash never touches the
 * caller.  ops must outlive the process. */
CN_EXTERN int cn_start(cn_runtime *rt, const cn_server_ops *ops, void *arg,
                       const cn_start_options *opts, cn_pid *pid);

/* gen_server:start_link: as cn_start, and the new process is linked to the
 * caller (a process, or the calling thread) before init runs.  If init
 * stops, the link delivers nothing: start returns the reason instead. */
CN_EXTERN int cn_start_link(cn_runtime *rt, const cn_server_ops *ops, void *arg,
                            const cn_start_options *opts, cn_pid *pid);

/* gen_server:stop: asks the server to exit with reason (NULL: normal),
 * runs its terminate, and waits up to timeout for it to die.  Returns
 * 0, CN_ENOPROC, CN_ETIMEDOUT (the server is then killed), or CN_EDEADLK
 * when called from inside a callback.  Not for use from a callback; send an
 * exit signal there instead. */
CN_EXTERN int cn_stop(cn_runtime *rt, cn_dest server, const cn_term *reason,
                      cn_ms timeout);

/* ---- Messages, calls and replies --------------------------------------
 * Each thread-safe.  Terms are copied before these return. */

/* Sends msg (Dest ! Msg).  Returns 0 whether or not a pid is alive,
 * CN_ENOPROC for an unregistered local name (Erlang raises badarg),
 * CN_EFULL when a local destination's mailbox is full (max_mailbox: the
 * message is dropped and counted), CN_ETOOBIG (over max_message) or
 * CN_ENOMEM. */
CN_EXTERN int cn_send(cn_runtime *rt, cn_dest to, cn_term msg);

/* cn_send with options, as erlang:send/3.  CN_SEND_NOSUSPEND: when the
 * destination is on another node whose connection is busy (its output
 * queue is over the busy limit, see cn_dist_options.busy_limit), nothing
 * is sent and CN_EBUSY is returned, instead of the sender being
 * suspended (a process: after its callback; a plain thread: in the call)
 * until the queue drains. */
#define CN_SEND_NOSUSPEND 0x1u
CN_EXTERN int cn_send_opts(cn_runtime *rt, cn_dest to, cn_term msg,
                           unsigned flags);

/* Casts ({'$gen_cast', Msg}).  Returns 0 whether or not the destination
 * exists, as GenServer.cast does.  Errors: a malformed msg, and CN_EFULL
 * when a local destination's mailbox is full (the cast is dropped and
 * counted). */
CN_EXTERN int cn_cast(cn_runtime *rt, cn_dest to, cn_term msg);

/* A blocking call from a plain thread (gen_server:call).  On success
 * returns 0 with the reply in *reply (replacing its contents).  Errors:
 * CN_ENOPROC (no such process or name), CN_ETIMEDOUT, CN_EEXIT (the server
 * exited during the call; its reason is in *reply), CN_ENOCONN, CN_EFULL
 * (the server's mailbox is full: max_mailbox), CN_ETOOBIG (the request,
 * or the reply the server built, is over max_message; the server lives on
 * with its state), and CN_EDEADLK when called from inside a callback (use
 * cn_call_async) or when a server calls itself.  CN_EFULL and CN_ETOOBIG
 * come at once, also from a server on another cnode node.  A reply that arrives
 * after a timeout is dropped.  An idle local server runs the call on the
 * calling thread. */
CN_EXTERN int cn_call(cn_runtime *rt, cn_dest to, cn_term req, cn_ms timeout,
                      cn_buf *reply);

/* cn_send, cn_cast and cn_call with the term built from a cn_build
 * format and its arguments (see term.h), on a buffer of their own:
 *   cn_callf(rt, cn_to_name("kv"), 5000, &reply, "{put, ~a, ~i}", "x", n);
 * Errors as the plain calls, and CN_EBADFMT for a bad format (then
 * nothing is sent). */
CN_EXTERN int cn_sendf(cn_runtime *rt, cn_dest to, const char *fmt, ...);
CN_EXTERN int cn_castf(cn_runtime *rt, cn_dest to, const char *fmt, ...);
CN_EXTERN int cn_callf(cn_runtime *rt, cn_dest to, cn_ms timeout, cn_buf *reply,
                       const char *fmt, ...);

/* Receives a reply for an asynchronous call.  status is 0 with the reply,
 * or CN_ETIMEDOUT, CN_ENOPROC, CN_ENOCONN, CN_EFULL, CN_ETOOBIG (reply is
 * empty; see cn_call), or CN_EEXIT with the server's exit reason in
 * reply.  Runs in the calling process,
 * with its state. */
typedef void (*cn_reply_cb)(cn_proc *self, void *state, int status,
                            cn_term reply, void *arg);

/* A call from inside a callback that does not block the scheduler.  The
 * callback runs exactly once, later, in self's context, unless self exits
 * first.  Returns 0, or an error (then cb never runs).  An idle local
 * server, when no other process waits for this scheduler, runs the call
 * at once, inside this function, as cn_call's does; its reply still comes
 * later, through the callback. */
CN_EXTERN int cn_call_async(cn_proc *self, cn_dest to, cn_term req,
                            cn_ms timeout, cn_reply_cb cb, void *arg);

/* Answers a call taken with CN_NOREPLY.  Thread-safe.  Returns 0 and
 * consumes from (do not use it again), or fails with CN_EBADTERM,
 * CN_ETOOBIG (over max_message) or CN_ENOMEM and leaves from as it was,
 * to be answered (with something smaller) or freed. */
CN_EXTERN int cn_reply(cn_from *from, cn_term reply);

/* The same, with the reply built from a cn_build format (CN_EBADFMT
 * also leaves from as it was). */
CN_EXTERN int cn_replyf(cn_from *from, const char *fmt, ...);

/* Drops a from without replying.  The caller will time out. */
CN_EXTERN void cn_from_free(cn_from *from);

/* The calling pid of a from. */
CN_EXTERN cn_pid cn_from_pid(const cn_from *from);

/* Receives the next message sent to the calling thread's own pid (see
 * cn_self), waiting up to timeout.  Returns 0 with the message in *msg,
 * CN_ETIMEDOUT, or CN_EDEADLK inside a callback. */
CN_EXTERN int cn_receive(cn_runtime *rt, cn_ms timeout, cn_buf *msg);

/* ---- Inside a process ------------------------------------------------- */

/* The process's pid. */
CN_EXTERN cn_pid cn_proc_pid(const cn_proc *self);

/* The runtime the process runs in. */
CN_EXTERN cn_runtime *cn_proc_runtime(const cn_proc *self);

/* The process's state pointer (as set by init). */
CN_EXTERN void *cn_proc_state(const cn_proc *self);

/* Sets the idle timeout for the wait that follows the current callback:
 * if no message arrives within ms, handle_info receives the atom timeout.
 * Every callback starts with no timeout, as in gen_server. */
CN_EXTERN void cn_set_timeout(cn_proc *self, cn_ms ms);

/* {continue, Cont} for the current callback: once it returns without
 * stopping (from init, after the reply of a handle_call), the server's
 * handle_continue runs with the term of fmt before anything else the
 * process would take from its mailbox.  A second call replaces the
 * first.  Returns 0, CN_ENOTSUP (the server has no handle_continue),
 * CN_EBADFMT or CN_ENOMEM. */
CN_EXTERN int cn_continue(cn_proc *self, const char *fmt, ...);

/* Sets the exit reason used when the callback returns CN_STOP or
 * CN_STOP_REPLY, from a cn_build format.  Returns 0, CN_EBADFMT or
 * CN_ENOMEM. */
CN_EXTERN int cn_set_reason(cn_proc *self, const char *fmt, ...);

/* The same with an existing term. */
CN_EXTERN int cn_set_reason_term(cn_proc *self, cn_term reason);

/* ---- Signals: links, monitors, exits ---------------------------------- */

/* The caller's pid: the current process inside a callback, otherwise the
 * calling thread's own pid.  Returns 0 or CN_ENOMEM/CN_ELIMIT. */
CN_EXTERN int cn_self(cn_runtime *rt, cn_pid *pid);

/* process_flag(trap_exit, On) for self, from inside its callbacks (a
 * plain thread always traps exits).  Sets *old (if not NULL) to the flag
 * as it was.  Returns 0, or CN_EINVAL for a NULL self. */
CN_EXTERN int cn_trap_exit(cn_proc *self, bool on, bool *old);

/* link/1 for the caller.  Linking to a dead or missing pid delivers an
 * exit signal noproc to the caller. */
CN_EXTERN int cn_link(cn_runtime *rt, cn_pid pid);

/* unlink/1 for the caller.  Idempotent. */
CN_EXTERN int cn_unlink(cn_runtime *rt, cn_pid pid);

/* erlang:monitor(process, Target) for the caller.  Sets *mref.  When the
 * target dies (or does not exist), the caller gets
 * {'DOWN', Ref, process, Object, Reason}, where Object is the pid, or
 * {Name, Node} when monitored by name. */
CN_EXTERN int cn_monitor(cn_runtime *rt, cn_dest target, cn_ref *mref);

/* demonitor/2.  With flush, a DOWN already in the mailbox is removed.
 * Returns 0, or CN_ENOENT when mref is not an active monitor. */
CN_EXTERN int cn_demonitor(cn_runtime *rt, const cn_ref *mref, bool flush);

/* exit/2: sends an exit signal with reason from the caller to pid.
 * kill cannot be trapped and becomes killed; normal is ignored by a
 * process that does not trap exits (unless it is the caller itself). */
CN_EXTERN int cn_exit(cn_runtime *rt, cn_pid pid, cn_term reason);

/* ---- Names ------------------------------------------------------------ */

/* register/2.  Returns 0, CN_EEXIST (the name is taken or the process
 * already has a name), CN_ENOPROC (pid is not alive), or CN_EINVAL (the
 * name is empty, too long for an atom, or "undefined"). */
CN_EXTERN int cn_register(cn_runtime *rt, const char *name, cn_pid pid);

/* unregister/1.  Returns 0 or CN_ENOENT. */
CN_EXTERN int cn_unregister(cn_runtime *rt, const char *name);

/* whereis/1.  Returns 0 with *pid set, or CN_ENOENT. */
CN_EXTERN int cn_whereis(cn_runtime *rt, const char *name, cn_pid *pid);

/* ---- Timers ----------------------------------------------------------- */

/* erlang:send_after/3: sends msg to `to` after ms milliseconds.  A name is
 * resolved when the timer fires.  *tref identifies the timer.  Returns 0,
 * CN_EINVAL or CN_ENOMEM. */
CN_EXTERN int cn_send_after(cn_runtime *rt, cn_ms ms, cn_dest to, cn_term msg,
                            cn_ref *tref);

/* erlang:cancel_timer/1.  Returns 0 and the milliseconds that were left
 * (in *left, if not NULL) when the timer was still pending, or
 * CN_ENOENT when it had fired or was cancelled already. */
CN_EXTERN int cn_cancel_timer(cn_runtime *rt, const cn_ref *tref, cn_ms *left);

/* ---- Upgrades --------------------------------------------------------- */

/* Runs the server's code_change callback in its own context (as sys does
 * through a suspended process) and waits for it.  Returns 0, CN_ENOPROC,
 * CN_ETIMEDOUT, CN_EEXIT (code_change failed; the server keeps its old
 * state), or CN_EDEADLK from inside a callback. */
CN_EXTERN int cn_code_change(cn_runtime *rt, cn_dest server, cn_term old_vsn,
                             cn_term extra, cn_ms timeout);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_RUNTIME_H */
