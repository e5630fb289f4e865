/* cnode: the echo server (module cnode_echo, registered as echo).
 *
 * A server for testing callers, and the node, from outside: it echoes,
 * sleeps without blocking, stops on request, and makes calls and casts on
 * a caller's behalf, so that a BEAM test can drive every path of the
 * runtime through one registered name.
 *
 * Calls:
 *   {echo, T}                  -> T, byte for byte as it arrived
 *   pid                        -> the server's pid
 *   {sleep, Ms}                -> ok, after Ms milliseconds (0..2^32-1);
 *                                 other calls are served meanwhile
 *   {stop, Reason}             -> no reply: the server exits with Reason,
 *                                 which the caller sees as the call's exit
 *   {call, Dest, Req, Timeout} -> {ok, Reply}
 *                               | {error, timeout | noproc | noconnection
 *                                         | calling_self | ExitReason}
 *                                 where Dest is a pid, a registered name
 *                                 (an atom) or {Name, Node}, and Timeout
 *                                 is 0..2^31-1 ms or infinity
 *   {cast, Dest, Msg}          -> ok, once Msg is cast to Dest
 *   {blob, N}                  -> a binary of N zero bytes (0..2^32-1):
 *                                 a reply over max_message fails the
 *                                 call with {message_too_large, Max},
 *                                 and echo carries on
 *   {hold, Ms}                 -> ok, after Ms (0..60000) milliseconds
 *                                 stuck in the handler, serving nothing
 *                                 meanwhile (its mailbox fills)
 *   {mailbox, Dest}            -> {ok, {Queued, Dropped, RefusedCalls}}
 *                               | {error, noproc}: a local process's
 *                                 mailbox (see max_mailbox)
 *   anything else              -> {error, unknown_call}
 * Casts: {stop, Reason} stops the server; {send, Dest, Msg} sends Msg to
 * Dest; {hold, Ms} holds as above; other casts are ignored, and so are
 * infos.
 *
 * A request with a known tag but the wrong shape, such as {sleep, -1},
 * {sleep, foo}, {echo} or {call, "x", req, 100}, answers {error, badarg}
 * instead of crashing the server: echo exists to be poked at, and a typo
 * in a test should show up as a reply, not as a restart.  A reply to
 * {call, ...} that cannot be wrapped in {ok, Reply} within the runtime's
 * term limits (a reply already at the depth limit) answers
 * {error, too_deep} or {error, too_big}.
 *
 * sys:get_state({echo, Node}) shows #{pending => N, next_id => Id}: how
 * many callers wait for a deferred reply (sleeps and calls), and the
 * number the next sleep gets.
 *
 * Sleeps and calls reply later: handle_call keeps the caller's cn_from in
 * a pending record and returns CN_NOREPLY.  A sleep's timer message names
 * its record by a number, never by address, since any process may send
 * this server a message that looks like a timer's.
 */
#include "servers.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAKE_TAG "$cnode_echo_wake" /* {WAKE_TAG, Id}: a sleep is over */
/* Room for an atom's UTF-8 name: up to 255 characters of up to 4 bytes,
 * and a NUL. */
#define ATOM_MAX 1024

typedef enum pending_kind { SLEEP, CALL } pending_kind;

/* A caller waiting for a deferred reply. */
typedef struct pending {
  struct pending *prev, *next; /* the server's list of pending callers */
  pending_kind kind;           /* what the caller waits for */
  uint64_t id;                 /* SLEEP: the number in the timer message */
  cn_ref tref;                 /* SLEEP: the timer, to cancel on exit */
  cn_from *from;               /* the caller; answered or freed once */
} pending;

typedef struct echo {
  cn_runtime *rt;   /* for the timers to cancel when the server exits */
  pending *head;    /* callers awaiting a reply, newest first */
  uint64_t next_id; /* the next sleep's number */
} echo;

/* ---- Pending callers -------------------------------------------------- */

static pending *pending_add(echo *s, pending_kind kind, cn_from *from) {
  pending *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  p->kind = kind;
  p->from = from;
  p->next = s->head;
  if (s->head)
    s->head->prev = p;
  s->head = p;
  return p;
}

/* Unlinks p and frees it; its from must have been answered or handed back
 * to the runtime already. */
static void pending_remove(echo *s, pending *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    s->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  free(p);
}

/* The atom a call reports for a runtime error.  The first four are what
 * gen_server:call exits with in the same situations. */
static const char *error_atom(int err) {
  switch (err) {
  case CN_ETIMEDOUT:
    return "timeout";
  case CN_ENOPROC:
    return "noproc";
  case CN_ENOCONN:
    return "noconnection";
  case CN_EDEADLK:
    return "calling_self";
  case CN_ETOODEEP:
    return "too_deep";
  case CN_ETOOBIG:
    return "too_big";
  case CN_ENOMEM:
    return "enomem";
  case CN_ELIMIT:
    return "system_limit";
  case CN_ENOTSUP:
    return "notsup";
  case CN_ESHUTDOWN:
    return "shutdown";
  default:
    return "badarg";
  }
}

/* Answers from with answer.  An answer the runtime refuses (one over its
 * term limits) becomes {error, Why}; if even that cannot be sent (out of
 * memory), from is dropped and its caller times out. */
static void answer(cn_from *from, cn_term ans) {
  int err = cn_reply(from, ans);
  if (err != 0 && cn_replyf(from, "{error, ~a}", error_atom(err)) != 0)
    cn_from_free(from);
}

/* ---- Arguments -------------------------------------------------------- */

/* A destination: a pid, a registered name, or {Name, Node}.  The names
 * are copied into name and node, which the returned cn_dest points at.
 * Returns false for anything else. */
static bool parse_dest(cn_term t, cn_dest *d, char *name, char *node) {
  cn_pid pid;

  if (cn_get_pid(t, &pid) == 0) {
    *d = cn_to_pid(pid);
    return true;
  }
  if (cn_get_atom(t, name, ATOM_MAX) == 0) {
    *d = cn_to_name(name);
    return true;
  }
  if (cn_match(t, "{~a, ~a}", name, (size_t)ATOM_MAX, node,
               (size_t)CN_MAX_NODE_NAME + 1) == 0) {
    *d = cn_to_remote(name, node);
    return true;
  }
  return false;
}

/* A call timeout: infinity, or 0..INT_MAX milliseconds. */
static bool parse_timeout(cn_term t, int *ms) {
  int64_t v;
  if (cn_is_atom(t, "infinity")) {
    *ms = CN_INFINITY;
    return true;
  }
  if (cn_get_int64(t, &v) != 0 || v < 0 || v > INT_MAX)
    return false;
  *ms = (int)v;
  return true;
}

/* True when req is a tuple tagged with one of the requests above, so that
 * a malformed one answers badarg rather than unknown_call. */
static bool known_tag(cn_term req) {
  static const char *const tags[] = {"echo", "pid",  "sleep", "stop",   "call",
                                     "cast", "blob", "hold",  "mailbox"};
  cn_iter it;
  cn_term tag;
  size_t i;

  if (cn_term_typeof(req) != CN_T_TUPLE || cn_iter_init(&it, req, NULL) != 0 ||
      !cn_iter_next(&it, &tag))
    return false;
  for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
    if (cn_is_atom(tag, tags[i]))
      return true;
  }
  return false;
}

/* ---- Requests --------------------------------------------------------- */

#define HOLD_MAX_MS 60000

/* {hold, Ms}: the handler is stuck for Ms, as a server busy in C code
 * would be.  Returns false for a bad Ms. */
static bool hold(cn_term ms_term) {
  uint64_t ms;
  if (cn_get_uint64(ms_term, &ms) != 0 || ms > HOLD_MAX_MS)
    return false;
  {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
      ; /* interrupted: sleep what is left */
  }
  return true;
}

/* {blob, N}: N zero bytes, built in place. */
static void blob(cn_term n_term, cn_buf *reply) {
  uint64_t n;
  if (cn_get_uint64(n_term, &n) != 0 || n > UINT32_MAX ||
      cn_buf_reserve(reply, 5 + (size_t)n) != 0) {
    cn_build(reply, n > UINT32_MAX ? "{error, badarg}" : "{error, enomem}");
    return;
  }
  reply->data[0] = 109; /* BINARY_EXT */
  reply->data[1] = (char)(n >> 24);
  reply->data[2] = (char)(n >> 16);
  reply->data[3] = (char)(n >> 8);
  reply->data[4] = (char)n;
  memset(reply->data + 5, 0, (size_t)n);
  reply->len = 5 + (size_t)n;
}

/* {mailbox, Dest}: what cn_process_info says of a local process. */
static void mailbox(cn_runtime *rt, cn_term dest_term, cn_buf *reply) {
  char name[ATOM_MAX];
  cn_proc_info pi;
  cn_pid pid;
  if (cn_get_pid(dest_term, &pid) != 0 &&
      (cn_get_atom(dest_term, name, sizeof(name)) != 0 ||
       cn_whereis(rt, name, &pid) != 0)) {
    cn_build(reply, "{error, noproc}");
    return;
  }
  if (cn_process_info(rt, pid, &pi) != 0) {
    cn_build(reply, "{error, noproc}");
    return;
  }
  cn_build(reply, "{ok, {~u, ~u, ~u}}", (uint64_t)pi.message_queue_len,
           pi.dropped, pi.refused_calls);
}

/* {sleep, Ms}: a timer to self, and the reply when it fires. */
static int do_sleep(cn_proc *self, echo *s, cn_term ms_term, cn_from *from,
                    cn_buf *reply) {
  char store[64];
  cn_buf msg;
  uint64_t ms;
  pending *p;
  int err;

  /* erlang:send_after stops at 2^32-1 ms; cn_send_after takes an
   * unsigned. */
  if (cn_get_uint64(ms_term, &ms) != 0 || ms > UINT32_MAX || ms > UINT_MAX) {
    cn_build(reply, "{error, badarg}");
    return CN_REPLY;
  }
  if (!(p = pending_add(s, SLEEP, from))) {
    cn_build(reply, "{error, enomem}");
    return CN_REPLY;
  }
  p->id = s->next_id++;
  cn_buf_init_with(&msg, store, sizeof(store));
  err = cn_build(&msg, "{'" WAKE_TAG "', ~u}", p->id);
  if (err == 0)
    err = cn_send_after(s->rt, (unsigned)ms, cn_to_pid(cn_proc_pid(self)),
                        cn_buf_term(&msg), &p->tref);
  cn_buf_free(&msg);
  if (err != 0) {
    /* Returning CN_REPLY hands from back to the runtime. */
    pending_remove(s, p);
    cn_build(reply, "{error, ~a}", error_atom(err));
    return CN_REPLY;
  }
  return CN_NOREPLY;
}

/* A sleep is over: answer its caller.  A message naming no sleep (a stray
 * one, or a forgery) is ignored. */
static void wake(echo *s, uint64_t id) {
  pending *p;
  for (p = s->head; p; p = p->next) {
    if (p->kind == SLEEP && p->id == id) {
      if (cn_replyf(p->from, "ok") != 0)
        cn_from_free(p->from); /* out of memory: the caller times out */
      pending_remove(s, p);
      return;
    }
  }
}

/* The reply to a {call, ...}, in this server's context. */
static void call_done(cn_proc *self, void *state, int status, cn_term reply,
                      void *arg) {
  echo *s = state;
  pending *p = arg;
  char store[256];
  cn_buf ans;
  int err;

  cn_buf_init_with(&ans, store, sizeof(store));
  if (status == 0)
    err = cn_build(&ans, "{ok, ~t}", reply);
  else if (status == CN_EEXIT)
    err = cn_build(&ans, "{error, ~t}", reply);
  else
    err = cn_build(&ans, "{error, ~a}", error_atom(status));
  if (err == 0)
    answer(p->from, cn_buf_term(&ans));
  else if (cn_replyf(p->from, "{error, enomem}") != 0)
    cn_from_free(p->from);
  cn_buf_free(&ans);
  pending_remove(s, p);
}

/* {call, Dest, Req, Timeout}: an asynchronous call, answered in
 * call_done, so that the scheduler thread never blocks on it. */
static int do_call(cn_proc *self, echo *s, cn_term dest_term, cn_term req,
                   cn_term tmo_term, cn_from *from, cn_buf *reply) {
  char name[ATOM_MAX], node[CN_MAX_NODE_NAME + 1];
  cn_dest dest;
  pending *p;
  int ms, err;

  if (!parse_dest(dest_term, &dest, name, node) ||
      !parse_timeout(tmo_term, &ms)) {
    cn_build(reply, "{error, badarg}");
    return CN_REPLY;
  }
  if (!(p = pending_add(s, CALL, from))) {
    cn_build(reply, "{error, enomem}");
    return CN_REPLY;
  }
  err = cn_call_async(self, dest, req, ms, call_done, p);
  if (err != 0) {
    /* call_done will not run; from goes back to the runtime. */
    pending_remove(s, p);
    cn_build(reply, "{error, ~a}", error_atom(err));
    return CN_REPLY;
  }
  return CN_NOREPLY;
}

/* ---- Callbacks -------------------------------------------------------- */

static int echo_init(cn_proc *self, void *arg, void **state) {
  echo *s = calloc(1, sizeof(*s));
  if (!s)
    return CN_STOP;
  s->rt = cn_proc_runtime(self);
  *state = s;
  return CN_NOREPLY;
}

static int echo_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                     cn_buf *reply) {
  echo *s = state;
  char name[ATOM_MAX], node[CN_MAX_NODE_NAME + 1];
  cn_term a, b, c;
  cn_dest dest;
  cn_pid me;
  int err;

  if (cn_match(req, "{echo, ~t}", &a) == 0) {
    cn_put_term(reply, a);
  } else if (cn_is_atom(req, "pid")) {
    me = cn_proc_pid(self);
    cn_build(reply, "~p", &me);
  } else if (cn_match(req, "{sleep, ~t}", &a) == 0) {
    return do_sleep(self, s, a, from, reply);
  } else if (cn_match(req, "{stop, ~t}", &a) == 0) {
    /* No reply: the caller's monitor reports the exit reason, as it does
     * for a gen_server that stops while a call is in flight. */
    cn_set_reason_term(self, a);
    return CN_STOP;
  } else if (cn_match(req, "{call, ~t, ~t, ~t}", &a, &b, &c) == 0) {
    return do_call(self, s, a, b, c, from, reply);
  } else if (cn_match(req, "{cast, ~t, ~t}", &a, &b) == 0) {
    if (!parse_dest(a, &dest, name, node))
      cn_build(reply, "{error, badarg}");
    else if ((err = cn_cast(s->rt, dest, b)) != 0)
      cn_build(reply, "{error, ~a}", error_atom(err));
    else
      cn_build(reply, "ok");
  } else if (cn_match(req, "{blob, ~t}", &a) == 0) {
    blob(a, reply);
  } else if (cn_match(req, "{hold, ~t}", &a) == 0) {
    cn_build(reply, hold(a) ? "ok" : "{error, badarg}");
  } else if (cn_match(req, "{mailbox, ~t}", &a) == 0) {
    mailbox(s->rt, a, reply);
  } else if (known_tag(req)) {
    cn_build(reply, "{error, badarg}");
  } else {
    cn_build(reply, "{error, unknown_call}");
  }
  return CN_REPLY;
}

static int echo_cast(cn_proc *self, void *state, cn_term msg) {
  echo *s = state;
  char name[ATOM_MAX], node[CN_MAX_NODE_NAME + 1];
  cn_term a, b;
  cn_dest dest;

  if (cn_match(msg, "{stop, ~t}", &a) == 0) {
    cn_set_reason_term(self, a);
    return CN_STOP;
  }
  if (cn_match(msg, "{hold, ~t}", &a) == 0) {
    hold(a);
    return CN_NOREPLY;
  }
  if (cn_match(msg, "{send, ~t, ~t}", &a, &b) == 0 &&
      parse_dest(a, &dest, name, node))
    cn_send(s->rt, dest, b); /* a cast has no one to report errors to */
  return CN_NOREPLY;
}

static int echo_info(cn_proc *self, void *state, cn_term msg) {
  uint64_t id;
  if (cn_match(msg, "{'" WAKE_TAG "', ~u}", &id) == 0)
    wake(state, id);
  return CN_NOREPLY;
}

/* Runs on every exit.  Callers still waiting learn of the exit through
 * their monitors; their froms are only released here.  Pending timers are
 * cancelled, so that a long sleep does not outlive the server. */
static void echo_free(void *state) {
  echo *s = state;
  pending *p;

  while ((p = s->head)) {
    if (p->kind == SLEEP)
      cn_cancel_timer(s->rt, &p->tref, NULL);
    cn_from_free(p->from);
    pending_remove(s, p);
  }
  free(s);
}

/* format_state: see the header. */
static int echo_format_state(cn_proc *self, void *state, cn_buf *out) {
  echo *s = state;
  uint64_t n = 0;
  pending *p;
  (void)self;
  for (p = s->head; p; p = p->next)
    n++;
  return cn_build(out, "#{pending => ~u, next_id => ~u}", n, s->next_id);
}

const cn_server_ops echo_server_ops = {
    .name = "cnode_echo",
    .init = echo_init,
    .handle_call = echo_call,
    .handle_cast = echo_cast,
    .handle_info = echo_info,
    .free_state = echo_free,
    .format_state = echo_format_state,
};

/* ---- Exports (rpc, erpc, erl_call) ------------------------------------
 * cnode_echo:echo/1     -> its argument
 * cnode_echo:raise/2    (Class, Reason): ends in Class (throw, exit or
 *                       error) with Reason, for testing how callers see
 *                       OTP's classes from C
 * cnode_echo:sleep/1    (Ms, 0..60000) -> ok after Ms: an export may
 *                       block (it runs on a thread of its own) */

static int ex_echo(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_term t;
  (void)rt;
  (void)arg;
  if (cn_match(args, "[~t]", &t) != 0) {
    cn_build(out, "badarg");
    return CN_ERROR;
  }
  cn_put_term(out, t);
  return CN_RETURN;
}

static int ex_raise(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_term cls, why;
  (void)rt;
  (void)arg;
  if (cn_match(args, "[~t, ~t]", &cls, &why) == 0) {
    cn_put_term(out, why);
    if (cn_is_atom(cls, "throw"))
      return CN_THROW;
    if (cn_is_atom(cls, "exit"))
      return CN_EXIT;
    if (cn_is_atom(cls, "error"))
      return CN_ERROR;
    cn_buf_reset(out);
  }
  cn_build(out, "badarg");
  return CN_ERROR;
}

static int ex_sleep(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  int64_t ms;
  struct timespec ts;
  (void)rt;
  (void)arg;
  if (cn_match(args, "[~i]", &ms) != 0 || ms < 0 || ms > 60000) {
    cn_build(out, "badarg");
    return CN_ERROR;
  }
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
  cn_build(out, "ok");
  return CN_RETURN;
}

int echo_export(cn_runtime *rt) {
  int rc;
  if ((rc = cn_export(rt, "cnode_echo", "echo", 1, ex_echo, NULL)) != 0 ||
      (rc = cn_export(rt, "cnode_echo", "raise", 2, ex_raise, NULL)) != 0 ||
      (rc = cn_export(rt, "cnode_echo", "sleep", 1, ex_sleep, NULL)) != 0)
    return rc;
  return 0;
}
