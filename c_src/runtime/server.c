/* gen_server: dispatch, calls and replies, start and stop. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static cn_term msg_term(const cn__msg *m) {
  cn_term t = {m->data, m->len};
  return t;
}

/* The message the callback running on this thread handles, for the crash
 * report of a server that dies of it (cn__crash_report). */
static _Thread_local cn_term last_msg;

cn_term cn__last_msg(void) { return last_msg; }

/* ---- Froms ------------------------------------------------------------ */

cn_from *cn__from_new(cn_runtime *rt) {
  cn_from *f = cn__rec_alloc(CN__REC_FROM);
  if (!f)
    return NULL;
  memset(f, 0, sizeof(*f));
  f->rt = rt;
  return f;
}

void cn_from_free(cn_from *from) {
  if (!from)
    return;
  free(from->route);
  cn__rec_free(CN__REC_FROM, from);
}

cn_pid cn_from_pid(const cn_from *from) { return from->pid; }

/* Sends reply to from's caller.  own, when not NULL, is the buffer reply
 * lies in, whose memory a large reply takes over (see cn__msg_from_buf)
 * instead of a copy. */
static int send_reply_own(cn_from *from, cn_term reply, cn_buf *own,
                          int flags) {
  cn__msg *m;
  if (from->flags & CN__FROM_REMOTE) {
    const cn__dist_ops *ops = from->rt->dist_ops;
    /* No distribution any more: the caller's node is gone for us, and
     * its caller has had its noconnection. */
    return ops ? ops->reply(from->rt, from, reply, own) : 0;
  }
  m = own ? cn__msg_from_buf(CN__M_REPLY, own)
          : cn__msg_new(CN__M_REPLY, reply.ptr, reply.len);
  if (!m)
    return CN_ENOMEM;
  m->ref = from->ref;
  m->from = from->server;
  m->flags = (uint8_t)flags;
  cn__deliver(from->rt, from->pid, m);
  return 0;
}

static int send_reply(cn_from *from, cn_term reply, int flags) {
  return send_reply_own(from, reply, NULL, flags);
}

/* Fails a call with err (CN_ETOOBIG, CN_EFULL) instead of answering it.
 * A local caller gets the status itself.  A BEAM caller's gen_server:call
 * waits for a reply or for the DOWN of the monitor it holds on the server
 * (the alias in its tag is that monitor's ref): the DOWN, with the
 * refusal's reason, makes it exit at once.  The server `self` stays as it
 * was.  A remote caller that holds no monitor can only time out. */
void cn__fail_call(cn_proc *self, cn_from *from, int err, int flags) {
  cn_runtime *rt = from->rt;
  if (!(from->flags & CN__FROM_REMOTE)) {
    cn__msg *m = cn__msg_new(CN__M_REPLY, NULL, 0);
    if (m) {
      m->ref = from->ref;
      m->from = from->server;
      m->flags = (uint8_t)(flags | CN__F_ERRNO);
      m->aux = (uint32_t)-err;
      cn__deliver(rt, from->pid, m);
    }
    return;
  }
  {
    cn__mon *mo = NULL;
    char store[64];
    cn_buf b;
    if (self && (from->flags & CN__FROM_ALIAS))
      mo = self->ext ? cn__take_mon(&self->ext->mon_on_me, &from->ref) : NULL;
    if (!mo) {
      cn__log(rt,
              "a call from %s over a limit (%s) could not be failed at "
              "once: its caller holds no monitor",
              cn_node_name(from->pid.node), cn_strerror(err));
      return;
    }
    cn_buf_init_with(&b, store, sizeof(store));
    if (cn__refusal_reason(rt, err, &b) == 0) {
      cn__msg *down =
          cn__down_new(self->pid, &mo->ref, mo->name, cn_buf_term(&b),
                       mo->name ? CN__F_BYNAME : 0);
      if (down)
        cn__deliver(rt, mo->pid, down);
    }
    cn_buf_free(&b);
    cn__mon_free(mo);
  }
}

int cn_reply(cn_from *from, cn_term reply) {
  int rc;
  if (!from)
    return CN_EINVAL;
  if ((rc = cn__check_term(from->rt, reply)) != 0 ||
      (rc = send_reply(from, reply, 0)) != 0)
    return rc; /* from is still the caller's */
  cn_from_free(from);
  return 0;
}

int cn_replyf(cn_from *from, const char *fmt, ...) {
  char store[256];
  cn_buf b;
  va_list ap;
  int rc;
  cn_buf_init_with(&b, store, sizeof(store));
  va_start(ap, fmt);
  rc = cn_vbuild(&b, fmt, ap);
  va_end(ap);
  if (rc == 0)
    rc = cn_reply(from, cn_buf_term(&b));
  cn_buf_free(&b);
  return rc;
}

/* ---- Inside a process ------------------------------------------------- */

cn_pid cn_proc_pid(const cn_proc *self) { return self->pid; }
cn_runtime *cn_proc_runtime(const cn_proc *self) { return self->rt; }
void *cn_proc_state(const cn_proc *self) { return self->state_ptr; }

void cn_set_timeout(cn_proc *self, cn_ms ms) { self->timeout_ms = cn__ms(ms); }

int cn_continue(cn_proc *self, const char *fmt, ...) {
  char store[256];
  cn__msg *m;
  cn_buf b;
  va_list ap;
  int rc;
  if (!self->ops || !self->ops->handle_continue)
    return CN_ENOTSUP;
  cn_buf_init_with(&b, store, sizeof(store));
  va_start(ap, fmt);
  rc = cn_vbuild(&b, fmt, ap);
  va_end(ap);
  if (rc == 0 && !(m = cn__msg_new(CN__S_CONTINUE, b.data, b.len)))
    rc = CN_ENOMEM;
  cn_buf_free(&b);
  if (rc != 0)
    return rc;
  if (!cn__ext(self)) {
    cn__msg_free(m);
    return CN_ENOMEM;
  }
  cn__msg_free(self->ext->cont); /* a second call replaces the first */
  self->ext->cont = m;
  return 0;
}

int cn_set_reason(cn_proc *self, const char *fmt, ...) {
  va_list ap;
  int rc;
  if (!cn__ext(self))
    return CN_ENOMEM;
  cn_buf_reset(&self->ext->reason);
  va_start(ap, fmt);
  rc = cn_vbuild(&self->ext->reason, fmt, ap);
  va_end(ap);
  return rc;
}

int cn_set_reason_term(cn_proc *self, cn_term reason) {
  int rc = cn__check_term(self->rt, reason);
  if (rc)
    return rc;
  if (!cn__ext(self))
    return CN_ENOMEM;
  cn_buf_reset(&self->ext->reason);
  return cn_put_term(&self->ext->reason, reason);
}

/* The continue a callback asked for and that is not yet queued, or
 * NULL. */
static cn__msg *pending_cont(const cn_proc *p) {
  return p->ext ? p->ext->cont : NULL;
}

/* ---- Callback plumbing ------------------------------------------------ */

/* A callback is about to handle a message: the idle timeout is over. */
static void begin_cb(cn_proc *p) {
  if (p->flags & CN__PF_TMO_ARMED) {
    cn__timer_cancel(p->rt, &p->ext->timeout_tref, NULL);
    p->flags &= ~CN__PF_TMO_ARMED;
  }
  p->timeout_gen++;
  p->timeout_ms = CN_INFINITY;
  if (p->ext)
    cn_buf_reset(&p->ext->reason);
}

static void arm_timeout(cn_proc *p) {
  static const cn_term no_data = {NULL, 0};
  if (p->timeout_ms < 0 || !cn__ext(p))
    return;
  if (cn__timer_start(p->rt, (uint64_t)p->timeout_ms, p->pid, NULL,
                      CN__S_TIMEOUT, p->timeout_gen, NULL, no_data,
                      &p->ext->timeout_tref) == 0)
    p->flags |= CN__PF_TMO_ARMED;
}

static cn_term stop_reason(cn_proc *p) {
  if (!p->ext || p->ext->reason.len == 0 || p->ext->reason.err)
    return cn__atom_term("normal");
  return cn_buf_term(&p->ext->reason);
}

static void bad_return(cn_proc *p, int rc) {
  char store[64];
  cn_buf b;
  cn_buf_init_with(&b, store, sizeof(store));
  cn_build(&b, "{bad_return_value, ~i}", (int64_t)rc);
  cn__proc_exit(p, cn_buf_term(&b), true);
  cn_buf_free(&b);
}

/* Finishes a non-call callback. */
/* Queues the continue a callback asked for at the head of p's private
 * queue, so that it is the next thing p handles (its runner, or whoever
 * releases p, sees the queue). */
static void queue_continue(cn_proc *p) {
  cn__msg *m = p->ext->cont;
  p->ext->cont = NULL;
  m->next = p->q_head;
  p->q_head = m;
  if (!p->q_tail)
    p->q_tail = m;
}

static void end_cb(cn_proc *p, int rc) {
  if (rc != CN_NOREPLY && pending_cont(p)) {
    cn__msg_free(p->ext->cont); /* a stop drops the continue */
    p->ext->cont = NULL;
  }
  switch (rc) {
  case CN_NOREPLY:
    if (pending_cont(p))
      queue_continue(p);
    else
      arm_timeout(p);
    break;
  case CN_STOP:
    cn__proc_exit(p, stop_reason(p), true);
    break;
  default:
    bad_return(p, rc);
    break;
  }
}

static void invoke_info(cn_proc *p, cn_term msg) {
  int rc = CN_NOREPLY;
  begin_cb(p);
  if (p->ops->handle_info)
    rc = p->ops->handle_info(p, p->state_ptr, msg);
  end_cb(p, rc);
}

/* ---- Calls (server side) ---------------------------------------------- */

/* The buffer a reply by message is built in: over store, or, when this
 * server's last such reply was large, in a kept block of that size (see
 * blocks.c), so that a server answering large replies does not grow a
 * fresh buffer page by page each time. */
static void reply_buf_init(cn_proc *p, cn_buf *b, char *store, size_t n) {
  size_t cap;
  char *blk;
  cn_buf_init_with(b, store, n);
  if (p->reply_hint >= CN__BLOCK_MIN &&
      (blk = cn__block_alloc(p->reply_hint, &cap)) != NULL) {
    b->data = blk;
    b->cap = cap;
    b->on_heap = 1;
  }
}

/* Releases a buffer of reply_buf_init, keeping its block when large. */
static void reply_buf_done(cn_proc *p, cn_buf *b) {
  p->reply_hint =
      b->len >= CN__BLOCK_MIN && b->len <= UINT32_MAX ? (uint32_t)b->len : 0;
  if (b->on_heap)
    cn__block_free(b->data, b->cap);
  b->data = NULL;
  b->on_heap = 0;
  b->len = b->cap = 0;
}

/* Handles a call.  direct is the caller's buffer on the inline path (the
 * reply is left there and 1 returned), or NULL to reply by message.  A
 * call that monitors the server (callmon) gets its monitor installed only
 * when the handler does not answer at once: a server that replies in the
 * handler cannot die in between, so the monitor would be set and cleared
 * unseen. */
static int handle_call(cn_proc *p, cn_from *from, cn_term req, bool callmon,
                       cn_buf *direct) {
  char store[256];
  cn_buf local;
  cn_buf *rb = direct;
  cn_pid caller = from->pid;
  cn_ref tag = from->ref;
  int rc, replied = 0;

  if (!rb) {
    reply_buf_init(p, &local, store, sizeof(store));
    rb = &local;
  }
  begin_cb(p);
  if (!p->ops->handle_call) {
    if (cn__ext(p)) {
      cn_buf_free(&p->ext->reason);
      cn_build(&p->ext->reason, "{bad_call, ~t}", req);
    }
    rc = CN_STOP;
  } else {
    rc = p->ops->handle_call(p, p->state_ptr, req, from, rb);
  }
  if (rc == CN_REPLY || rc == CN_STOP_REPLY) {
    int bad = rb->err ? rb->err : cn__check_term(p->rt, cn_buf_term(rb));
    if (bad == CN_ETOOBIG || bad == CN_ENOMEM) {
      /* A reply over max_message (or too big to build at all): the
       * handler did its work and the server keeps its state; only this
       * caller is told, at once, that its answer cannot be carried. */
      atomic_fetch_add_explicit(&p->rt->st_too_large, 1, memory_order_relaxed);
      cn__log(p->rt,
              "%s: a reply of %zu bytes is over max_message (%zu); "
              "the caller gets an error instead",
              p->ops->name ? p->ops->name : "cnode_server", rb->len,
              cn_max_message(p->rt));
      from->server = p->pid;
      if (!direct)
        cn__fail_call(p, from, CN_ETOOBIG, callmon ? CN__F_DEMONDONE : 0);
      cn_from_free(from);
      if (!direct)
        reply_buf_done(p, rb);
      else
        cn_buf_reset(rb);
      end_cb(p, rc == CN_REPLY ? CN_NOREPLY : CN_STOP);
      return direct ? CN_ETOOBIG : 0;
    }
    if (bad != 0) {
      /* The handler built no valid reply: the server fails, as a crash
       * would, and its caller learns why through its monitor. */
      cn_from_free(from);
      if (!direct)
        reply_buf_done(p, rb);
      else
        cn_buf_reset(rb);
      if (callmon && cn__ext(p))
        cn__add_mon(&p->ext->mon_on_me, &tag, caller, NULL);
      cn__proc_exit(p, cn__atom_term("bad_reply"), true);
      return 0;
    }
    if (p->ext)
      cn__sys_count_out(p);
    if (direct) {
      replied = 1;
    } else {
      from->server = p->pid;
      send_reply_own(from, cn_buf_term(rb), rb, callmon ? CN__F_DEMONDONE : 0);
    }
    cn_from_free(from);
    end_cb(p, rc == CN_REPLY ? CN_NOREPLY : CN_STOP);
  } else {
    /* No reply now: from belongs to the handler (CN_NOREPLY) or is
     * dropped (anything else); either way the caller must learn if we
     * die. */
    if (rc != CN_NOREPLY)
      cn_from_free(from);
    if (callmon && cn__ext(p))
      cn__add_mon(&p->ext->mon_on_me, &tag, caller, NULL);
    end_cb(p, rc);
  }
  if (!direct)
    reply_buf_done(p, rb);
  return replied;
}

/* Calls run inline on this thread, now: a handler's own calls then go
 * through the mailbox, so that inline runs never nest. */
static _Thread_local int inline_depth;

int cn__server_call_inline(cn_proc *p, cn_from *from, cn_term req,
                           cn_buf *reply) {
  cn_term prev = last_msg;
  int rc;
  last_msg = req;
  if (p->ext)
    cn__sys_count_in(p);
  inline_depth++;
  rc = handle_call(p, from, req, true, reply);
  inline_depth--;
  last_msg = prev;
  return rc;
}

/* After a call ran inline in p (held with SCHED and the caller's
 * reference): hands p back, as cn__run_proc does after a message.  Returns
 * true when p went idle and the caller's reference is its own again;
 * otherwise the reference went to the run queue or the distribution
 * layer, or was dropped with p dead. */
static bool inline_done(cn_proc *p) {
  cn_runtime *rt = p->rt;
  if (p->flags & CN__PF_DEAD) {
    cn__proc_unref(p);
    return false;
  }
  if (p->park_node) {
    /* The handler sent to a busy connection: suspended, as after any
     * message (see cn__run_proc). */
    uint32_t node = p->park_node - 1;
    p->park_node = 0;
    if (rt->dist_ops && rt->dist_ops->park(rt, p, node))
      return false;
  }
  if (p->q_head) {
    cn__schedule(p); /* a continue waits: the server's runner runs it */
    return false;
  }
  return !cn__release(p);
}

/* ---- Calls (client side) ---------------------------------------------- */

/* resolve() found a destination on another node: *pid is a remote pid,
 * or, for {Name, Node}, a pid with only the node set (see TONAME). */
#define REMOTE 1

static int resolve(cn_runtime *rt, cn_dest to, cn_pid *pid) {
  switch (to.kind) {
  case CN_DEST_PID:
    *pid = to.pid;
    return to.pid.node == rt->node ? 0 : REMOTE;
  case CN_DEST_NAME:
    if (!to.name)
      return CN_EINVAL;
    return cn__name_lookup(rt, to.name, pid) == 0 ? 0 : CN_ENOPROC;
  case CN_DEST_REMOTE:
    if (!to.name || !to.node)
      return CN_EINVAL;
    if (strcmp(to.node, cn_node_name(rt->node)) == 0)
      return cn__name_lookup(rt, to.name, pid) == 0 ? 0 : CN_ENOPROC;
    memset(pid, 0, sizeof(*pid));
    if (cn_node_intern(to.node, strlen(to.node), &pid->node) != 0)
      return CN_EINVAL;
    return REMOTE;
  }
  return CN_EINVAL;
}

/* Only local servers can be stopped or upgraded from here. */
static int resolve_local(cn_runtime *rt, cn_dest to, cn_pid *pid) {
  int rc = resolve(rt, to, pid);
  return rc == REMOTE ? CN_ENOTSUP : rc;
}

/* Sends m to a destination resolve() found remote.  Takes m. */
static int deliver_remote(cn_runtime *rt, cn_dest to, cn_pid pid, cn__msg *m) {
  if (to.kind == CN_DEST_REMOTE) {
    m->flags |= CN__F_TONAME;
    if (!(m->name = strdup(to.name))) {
      cn__msg_free(m);
      return CN_ENOMEM;
    }
  }
  return cn__deliver_remote(rt, pid, m);
}

/* A request that monitors its target, as gen_server:call does: a call,
 * stop or code change from caller, tagged ref. */
static cn__msg *request_new(cn_runtime *rt, int kind, cn_term body,
                            cn_pid caller, const cn_ref *ref, cn_pid server) {
  cn__msg *m = cn__msg_new(kind, body.ptr, body.len);
  if (!m)
    return NULL;
  if (!(m->cfrom = cn__from_new(rt))) {
    cn__msg_free(m);
    return NULL;
  }
  m->flags = CN__F_CALLMON;
  m->cfrom->pid = caller;
  m->cfrom->ref = *ref;
  m->cfrom->server = server;
  return m;
}

static cn__pending *take_pending(cn_proc *p, const cn_ref *ref) {
  cn__pending **pp;
  if (!p->ext)
    return NULL;
  for (pp = &p->ext->calls; *pp; pp = &(*pp)->next) {
    if (cn_ref_equal(&(*pp)->ref, ref)) {
      cn__pending *c = *pp;
      *pp = c->next;
      return c;
    }
  }
  return NULL;
}

static void send_demonitor(cn_runtime *rt, cn_pid from, cn_pid to,
                           const cn_ref *ref) {
  cn__msg *m = cn__msg_new(CN__S_DEMONITOR, NULL, 0);
  if (m) {
    m->from = from;
    m->ref = *ref;
    cn__deliver(rt, to, m);
  }
}

static void finish_pending(cn_proc *p, cn__pending *c, int status,
                           cn_term reply) {
  begin_cb(p);
  c->cb(p, p->state_ptr, status, reply, c->arg);
  cn__rec_free(CN__REC_PENDING, c);
  if (!(p->flags & CN__PF_DEAD))
    end_cb(p, CN_NOREPLY);
}

/* The call timer.  A process's calls with a timeout share one timer,
 * armed for the earliest deadline among them, instead of a timer each
 * started and cancelled per call.  A call that ends leaves it armed.
 * When it fires (S_CALL_TMO), the calls due by the deadline it was armed
 * for time out, and it is armed again for the earliest of the rest: for
 * calls that all take the same timeout, about one timer per timeout
 * period.  A call thus times out when a timer at its deadline has fired,
 * and a reply that reaches the process before that S_CALL_TMO still
 * wins, as with a timer of its own. */

/* Arms the call timer for deadline, unless it is armed for that or
 * earlier.  Returns 0 or CN_ENOMEM. */
static int arm_call_timer(cn_proc *p, uint64_t deadline) {
  static const cn_term no_data = {NULL, 0};
  cn__pext *x = p->ext;
  cn_ref tref;
  if (x->call_tmo_at && x->call_tmo_at <= deadline)
    return 0;
  if (cn__timer_start_at(p->rt, deadline, p->pid, NULL, CN__S_CALL_TMO,
                         x->call_tmo_gen + 1, NULL, no_data, &tref) != 0)
    return CN_ENOMEM;
  /* A later one is cancelled; if it has fired already, its S_CALL_TMO
   * carries the old generation and is ignored. */
  if (x->call_tmo_at)
    cn__timer_cancel(p->rt, &x->call_tref, NULL);
  x->call_tmo_gen++;
  x->call_tmo_at = deadline;
  x->call_tref = tref;
  return 0;
}

/* {Tag, Integer}: the reason cn__refusal_reason builds. */
static bool is_refusal(cn_term reason, const char *tag) {
  uint64_t n;
  return cn_match(reason, "{~A, ~u}", tag, &n) == 0;
}

/* The status of a call that ended with m, a REPLY or DOWN. */
static int end_status(const cn__msg *m) {
  cn_term reason = {m->data, m->len};
  if (m->flags & CN__F_ERRNO)
    return -(int)m->aux;
  if (m->kind == CN__M_REPLY)
    return 0;
  if ((m->flags & CN__F_NOPROC) || cn_is_atom(reason, "noproc"))
    return CN_ENOPROC;
  /* A server on another cnode node refused the call (cn__fail_call). */
  if (is_refusal(reason, "mailbox_full"))
    return CN_EFULL;
  if (is_refusal(reason, "message_too_large"))
    return CN_ETOOBIG;
  if (cn_is_atom(reason, "noconnection"))
    return CN_ENOCONN;
  return CN_EEXIT;
}

/* A DOWN that answers a call at once with status err, never inside the
 * call that made it. */
static cn__msg *status_down(int err, cn_pid server, const cn_ref *ref) {
  cn__msg *down = cn__msg_new(CN__S_DOWN, NULL, 0);
  if (down) {
    down->ref = *ref;
    down->from = server;
    down->flags = CN__F_ERRNO;
    down->aux = (uint32_t)-err;
  }
  return down;
}

void cn__drop_pending(cn_proc *p) {
  cn__pext *x = p->ext;
  cn__pending *c;
  if (!x)
    return;
  if (x->call_tmo_at) {
    cn__timer_cancel(p->rt, &x->call_tref, NULL);
    x->call_tmo_at = 0;
  }
  while ((c = x->calls)) {
    x->calls = c->next;
    cn__rec_free(CN__REC_PENDING, c);
  }
}

/* True when p, just taken idle with SCHED, may run a call inline: sys
 * has not suspended it, and nothing waits in its mailbox (a message the
 * caller sent it before the call may still be there, while its last
 * runner hands it back: it must come first). */
static bool inline_ok(cn_proc *p) {
  return !p->q_head && !atomic_load(&p->inbox) && !cn__sys_suspended(p);
}

/* Runs call c of self with req in its local server, here and now, when
 * the server is idle (as cn_call does for a plain thread) and this
 * scheduler has nothing else waiting (so that other processes keep their
 * turn).  The reply comes by message as from the mailbox, and the
 * callback runs later.  Returns false when the call must go through the
 * mailbox instead. */
static bool call_inline(cn_proc *self, const cn__pending *c, cn_term req) {
  cn_runtime *rt = self->rt;
  cn_proc *p, *prev;
  cn_from *from;
  uint32_t st = 0;

  if (inline_depth || !cn__sched_quiet(rt) || !(p = cn__lookup(rt, c->server)))
    return false;
  if (p->thread ||
      !atomic_compare_exchange_strong(&p->state, &st, CN__P_SCHED)) {
    cn__proc_unref(p);
    return false;
  }
  /* Held, with our reference as the SCHED holder's. */
  if (!inline_ok(p) || !(from = cn__from_new(rt))) {
    if (!cn__release(p))
      cn__proc_unref(p);
    return false;
  }
  from->pid = self->pid;
  from->ref = c->ref;
  from->server = c->server;
  prev = cn__set_current(p);
  cn__server_call_inline(p, from, req, NULL);
  cn__set_current(prev);
  if (inline_done(p))
    cn__proc_unref(p);
  return true;
}

int cn_call_async(cn_proc *self, cn_dest to, cn_term req, cn_ms timeout,
                  cn_reply_cb cb, void *arg) {
  int timeout_ms = cn__ms(timeout);
  cn_runtime *rt = self->rt;
  cn__pending *c;
  cn__msg *m = NULL;
  cn_pid pid = {0, 0, 0, 0};
  bool remote;
  int rc;

  if (!cb)
    return CN_EINVAL;
  if ((rc = cn__check_term(rt, req)) != 0)
    return rc;
  rc = resolve(rt, to, &pid);
  if (rc == CN_EINVAL)
    return rc;
  if (rc == 0 && cn_pid_equal(&pid, &self->pid))
    return CN_EDEADLK;
  remote = rc == REMOTE;
  if (remote)
    rc = 0;
  if (!cn__ext(self) || !(c = cn__rec_alloc(CN__REC_PENDING)))
    return CN_ENOMEM;
  memset(c, 0, sizeof(*c));
  cn__make_ref(rt, &c->ref);
  if (timeout_ms >= 0) {
    c->deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000ULL;
    if (arm_call_timer(self, c->deadline) != 0) {
      cn__rec_free(CN__REC_PENDING, c);
      return CN_ENOMEM;
    }
  }
  c->server = pid;
  c->cb = cb;
  c->arg = arg;
  if (rc == 0 && !remote && call_inline(self, c, req)) {
    c->next = self->ext->calls;
    self->ext->calls = c;
    return 0;
  }
  if (rc == 0 &&
      !(m = request_new(rt, CN__M_CALL, req, self->pid, &c->ref, pid))) {
    cn__rec_free(CN__REC_PENDING, c);
    return CN_ENOMEM; /* the call timer may fire for nothing: harmless */
  }
  c->next = self->ext->calls;
  self->ext->calls = c;
  if (m)
    rc = remote ? deliver_remote(rt, to, pid, m) : cn__deliver(rt, pid, m);
  if (rc != 0) {
    /* No such process (or node), or a full mailbox: answer later, as a
     * DOWN would, so that the callback never runs inside this call. */
    cn__msg *down = status_down(rc, pid, &c->ref);
    if (down)
      cn__deliver_to(self, down);
  }
  return 0;
}

/* ---- Exit signals ----------------------------------------------------- */

static void exit_signal(cn_proc *p, cn__msg *m) {
  cn_term reason = msg_term(m);
  bool linked = (m->flags & CN__F_LINKED) != 0;
  bool from_self = cn_pid_equal(&m->from, &p->pid);

  if (linked && !cn__remove_link(p, m->from))
    return; /* unlinked since: the signal is stale */
  if (!linked && cn_is_atom(reason, "kill")) {
    cn__proc_exit(p, cn__atom_term("killed"), false);
    return;
  }
  if (p->flags & CN__PF_TRAP) {
    if (!from_self && cn_pid_equal(&m->from, &p->parent) &&
        !(p->flags & CN__PF_OWN_EXIT)) {
      /* gen_server: an exit from the parent terminates the server. */
      cn__proc_exit(p, reason, true);
      return;
    }
    {
      char store[256];
      cn_buf b;
      cn_buf_init_with(&b, store, sizeof(store));
      if (cn__build_exit_msg(&b, m->from, reason) == 0)
        invoke_info(p, cn_buf_term(&b));
      cn_buf_free(&b);
    }
    return;
  }
  if (cn_is_atom(reason, "normal")) {
    if (!linked && from_self)
      cn__proc_exit(p, reason, false);
    return;
  }
  cn__proc_exit(p, reason, false);
}

/* ---- Dispatch --------------------------------------------------------- */

static void on_down(cn_proc *p, cn__msg *m) {
  cn__pending *c = take_pending(p, &m->ref);
  cn__mon *mo;
  if (c) {
    int st = end_status(m);
    cn_term empty = {NULL, 0};
    finish_pending(p, c, st, st == CN_EEXIT ? msg_term(m) : empty);
    return;
  }
  mo = p->ext ? cn__take_mon(&p->ext->mon_mine, &m->ref) : NULL;
  if (mo) {
    char store[256];
    cn_buf b;
    cn_buf_init_with(&b, store, sizeof(store));
    if (cn__build_down_msg(&b, &m->ref, m, p->rt) == 0)
      invoke_info(p, cn_buf_term(&b));
    cn_buf_free(&b);
    cn__mon_free(mo);
  }
  /* Otherwise demonitored since: drop. */
}

static void on_reply(cn_proc *p, cn__msg *m) {
  cn__pending *c = take_pending(p, &m->ref);
  int st = end_status(m);
  if (!c)
    return; /* late: the call timed out */
  if (!(m->flags & CN__F_DEMONDONE))
    send_demonitor(p->rt, p->pid, c->server, &c->ref);
  finish_pending(p, c, st, msg_term(m));
}

/* Ends the calls in list (taken from p's) with status, in order, as
 * long as p lives; frees what is left when it dies. */
static void fail_calls(cn_proc *p, cn__pending *list, int status) {
  cn_term empty = {NULL, 0};
  cn__pending *c;
  while ((c = list)) {
    list = c->next;
    if (p->flags & CN__PF_DEAD) {
      cn__rec_free(CN__REC_PENDING, c);
      continue;
    }
    send_demonitor(p->rt, p->pid, c->server, &c->ref);
    finish_pending(p, c, status, empty);
  }
}

/* The call timer fired: the calls due by the deadline it was armed for
 * time out, earliest first (those their callbacks make wait for the next
 * timer), and it is armed for the rest. */
static void on_call_timeout(cn_proc *p, cn__msg *m) {
  cn__pext *x = p->ext;
  uint64_t due = x ? x->call_tmo_at : 0, next = 0;
  cn__pending **pp, **ip, *c, *expired = NULL;

  if (!due || m->aux != x->call_tmo_gen)
    return; /* a timer replaced by an earlier one */
  x->call_tmo_at = 0;
  for (pp = &x->calls; (c = *pp);) {
    if (!c->deadline || c->deadline > due) {
      if (c->deadline && (!next || c->deadline < next))
        next = c->deadline;
      pp = &c->next;
      continue;
    }
    *pp = c->next;
    for (ip = &expired; *ip && (*ip)->deadline <= c->deadline;)
      ip = &(*ip)->next;
    c->next = *ip;
    *ip = c;
  }
  if (next && arm_call_timer(p, next) != 0) {
    /* Without a timer the rest could wait for ever: they fail now. */
    cn__pending *rest = NULL, **rp = &rest;
    for (pp = &x->calls; (c = *pp);) {
      if (!c->deadline) {
        pp = &c->next;
        continue;
      }
      *pp = c->next;
      c->next = NULL;
      *rp = c;
      rp = &c->next;
    }
    fail_calls(p, expired, CN_ETIMEDOUT);
    fail_calls(p, rest, CN_ENOMEM);
    return;
  }
  fail_calls(p, expired, CN_ETIMEDOUT);
}

int cn__server_code_change(cn_proc *p, const cn_term *module, cn_term vsn,
                           cn_term extra, cn_buf *why) {
  const cn_server_ops *ops = p->ops, *next = NULL;
  void *st = p->state_ptr;
  int rc = CN_NOREPLY;

  /* sys:change_code names the module: when it is this server's and a new
   * version of it is registered (cn_server_upgrade), the new version's
   * code_change converts the state and its callbacks take over. */
  if (module && ops->name && cn_is_atom(*module, ops->name) &&
      (next = cn__server_module_ops(p->rt, ops->name)) == ops)
    next = NULL;
  if (p->ext)
    cn_buf_reset(&p->ext->reason);
  if ((next ? next : ops)->code_change)
    rc = (next ? next : ops)->code_change(p, &st, vsn, extra);
  if (rc == CN_NOREPLY) {
    p->state_ptr = st;
    if (next)
      p->ops = next;
    return 0;
  }
  /* The old state is kept.  The reason is the one the callback set, or
   * else the value it returned. */
  cn_buf_reset(why);
  if (p->ext && p->ext->reason.len && !p->ext->reason.err)
    cn_put_term(why, cn_buf_term(&p->ext->reason));
  else
    cn_put_int(why, rc);
  if (p->ext)
    cn_buf_reset(&p->ext->reason);
  return -1;
}

static void on_code_change(cn_proc *p, cn__msg *m) {
  char store[64], wstore[64];
  cn_term vsn, extra;
  cn_from *from = m->cfrom;
  cn_buf b, why;

  m->cfrom = NULL;
  if (cn_match(msg_term(m), "{~t, ~t}", &vsn, &extra) != 0) {
    cn_replyf(from, "{error, badarg}");
    return;
  }
  cn_buf_init_with(&why, wstore, sizeof(wstore));
  if (cn__server_code_change(p, NULL, vsn, extra, &why) == 0) {
    /* sys:change_code answers ok; the old state is kept on failure. */
    send_reply(from, cn__atom_term("ok"), CN__F_DEMONDONE);
  } else {
    cn_buf_init_with(&b, store, sizeof(store));
    cn_build(&b, "{error, ~t}", cn_buf_term(&why));
    send_reply(from, cn_buf_term(&b), CN__F_DEMONDONE);
    cn_buf_free(&b);
  }
  cn_from_free(from);
  cn_buf_free(&why);
}

/* cn_stop's request, and sys:terminate's: terminate, then exit with
 * reason.  A process that takes its parent's exit as a message (a
 * supervisor) gets {'EXIT', Parent, Reason} and stops in its own time. */
void cn__server_stop(cn_proc *p, cn_term reason) {
  if (p->flags & CN__PF_OWN_EXIT) {
    char store[256];
    cn_buf b;
    cn_buf_init_with(&b, store, sizeof(store));
    if (cn__build_exit_msg(&b, p->parent, reason) == 0)
      invoke_info(p, cn_buf_term(&b));
    cn_buf_free(&b);
  } else {
    cn__proc_exit(p, reason, true);
  }
}

static void dispatch(cn_proc *p, cn__msg *m);

/* cn__process_links's request: answered here, before sys, so that a
 * suspended process answers too, as the BEAM's process_info does. */
static void on_info(cn_proc *p, cn__msg *m) {
  cn_from *from = m->cfrom;
  cn__pext *x = p->ext;
  cn__link *l;
  cn__mon *mo;
  cn_buf b;

  m->cfrom = NULL;
  if (!from)
    return;
  cn_buf_init(&b);
  cn_put_tuple(&b, 4);
  for (l = x ? x->link_list : NULL; l; l = l->next) {
    cn_put_list(&b, 1);
    cn_put_pid(&b, &l->pid);
  }
  cn_put_nil(&b);
  for (mo = x ? x->mon_mine.list : NULL; mo; mo = mo->next) {
    cn_put_list(&b, 1);
    if (mo->name)
      cn_build(&b, "{process, {~a, ~a}}", mo->name, cn_node_name(mo->pid.node));
    else
      cn_build(&b, "{process, ~p}", &mo->pid);
  }
  cn_put_nil(&b);
  for (mo = x ? x->mon_on_me.list : NULL; mo; mo = mo->next) {
    cn_put_list(&b, 1);
    cn_put_pid(&b, &mo->pid);
  }
  cn_put_nil(&b);
  cn_put_atom(&b, (p->flags & CN__PF_TRAP) ? "true" : "false");
  if (b.err)
    cn_replyf(from, "{error, enomem}");
  else
    send_reply(from, cn_buf_term(&b), CN__F_DEMONDONE);
  cn_from_free(from);
  cn_buf_free(&b);
}

void cn__handle_msg(cn_proc *p, cn__msg *m) {
  if (!p->thread && CN__COUNTED(m->kind))
    atomic_fetch_sub_explicit(&p->mbox_len, 1, memory_order_relaxed);
  if (cn__link_signal(p, m)) {
    cn__msg_free(m);
    return;
  }
  if (m->kind == CN__S_INFO) {
    if (!p->thread)
      on_info(p, m);
    cn__msg_free(m);
    return;
  }
  if (p->thread) {
    cn__thread_handle(p, m);
    return;
  }
  {
    cn_term prev = last_msg;
    int what;
    last_msg = CN__COUNTED(m->kind) ? msg_term(m) : (cn_term){NULL, 0};
    what = cn__sys_filter(p, m);
    if (what == CN__SYS_PASS)
      dispatch(p, m);
    last_msg = prev;
    if (what != CN__SYS_KEPT)
      cn__msg_free(m);
  }
}

static void dispatch(cn_proc *p, cn__msg *m) {
  switch (m->kind) {
  case CN__S_EXIT:
    exit_signal(p, m);
    break;
  case CN__S_DOWN:
    on_down(p, m);
    break;
  case CN__M_REPLY:
    on_reply(p, m);
    break;
  case CN__S_CALL_TMO:
    on_call_timeout(p, m);
    break;
  case CN__S_TIMEOUT:
    if ((p->flags & CN__PF_TMO_ARMED) && m->aux == p->timeout_gen) {
      p->flags &= ~CN__PF_TMO_ARMED;
      invoke_info(p, cn__atom_term("timeout"));
    }
    break;
  case CN__M_MSG:
    invoke_info(p, msg_term(m));
    break;
  case CN__M_CALL: {
    cn_from *from = m->cfrom;
    m->cfrom = NULL;
    handle_call(p, from, msg_term(m), (m->flags & CN__F_CALLMON) != 0, NULL);
    break;
  }
  case CN__M_CAST: {
    int rc = CN_NOREPLY;
    begin_cb(p);
    if (p->ops->handle_cast)
      rc = p->ops->handle_cast(p, p->state_ptr, msg_term(m));
    end_cb(p, rc);
    break;
  }
  case CN__S_STOP:
    if (m->cfrom) {
      if (cn__ext(p))
        cn__add_mon(&p->ext->mon_on_me, &m->cfrom->ref, m->cfrom->pid, NULL);
      cn_from_free(m->cfrom);
      m->cfrom = NULL;
    }
    cn__server_stop(p, msg_term(m));
    break;
  case CN__S_SHUTDOWN:
    if (p->flags & CN__PF_OWN_EXIT) {
      char store[64];
      cn_buf b;
      cn_buf_init_with(&b, store, sizeof(store));
      if (cn__build_exit_msg(&b, p->parent, cn__atom_term("shutdown")) == 0)
        invoke_info(p, cn_buf_term(&b));
      cn_buf_free(&b);
    } else {
      cn__proc_exit(p, cn__atom_term("shutdown"),
                    (p->flags & CN__PF_TRAP) != 0);
    }
    break;
  case CN__S_CODE_CHANGE:
    on_code_change(p, m);
    break;
  case CN__S_CONTINUE: {
    int rc;
    begin_cb(p);
    rc = p->ops->handle_continue(p, p->state_ptr, msg_term(m));
    end_cb(p, rc);
    break;
  }
  default:
    break;
  }
}

/* ---- Start ------------------------------------------------------------ */

int cn__caller_proc_for(cn_runtime *rt, cn_proc **out);

static int start(cn_runtime *rt, const cn_server_ops *ops, void *arg,
                 const cn_start_options *opts, cn_pid *pid, bool link) {
  cn_proc *p, *me = NULL, *prev;
  const char *name = opts ? opts->name : NULL;
  void *state = arg;
  int rc;

  if (!rt || !ops)
    return CN_EINVAL;
  if (link && (rc = cn__caller_proc_for(rt, &me)) != 0)
    return rc;
  if ((rc = cn__proc_alloc(rt, ops, CN__PF_INIT, NULL, me ? &me->pid : NULL,
                           &p)) != 0)
    return rc;
  if (name) {
    cn_pid holder;
    rc = cn__name_register_locked(rt, name, p, &holder);
    if (rc != 0) {
      if (rc == CN_EEXIST && pid)
        *pid = holder;
      cn__proc_exit(p, cn__atom_term("normal"), false);
      cn__proc_unref(p);
      return rc;
    }
  }
  if (me) {
    /* Both sides are owned here: the new process by us, the caller by
     * being the caller.  No signals needed. */
    if (cn__add_link(p, me->pid) || cn__add_link(me, p->pid)) {
      cn__remove_link(me, p->pid);
      cn__proc_exit(p, cn__atom_term("normal"), false);
      cn__proc_unref(p);
      return CN_ENOMEM;
    }
  }
  prev = cn__set_current(p);
  rc = ops->init ? ops->init(p, arg, &state) : CN_NOREPLY;
  cn__set_current(prev);

  if (rc == CN_NOREPLY && !(p->flags & CN__PF_DEAD)) {
    p->state_ptr = state;
    p->flags &= ~CN__PF_INIT;
    if (pid)
      *pid = p->pid;
    if (pending_cont(p)) {
      /* init's continue runs in the new process, first thing, after
       * start has returned (our reference goes to the run queue). */
      queue_continue(p);
      cn__schedule(p);
      return 0;
    }
    arm_timeout(p);
    if (!cn__release(p))
      cn__proc_unref(p);
    return 0;
  }
  /* init failed: the caller hears it through the return value, not
   * through the link. */
  if (me)
    cn__remove_link(me, p->pid);
  if (!(p->flags & CN__PF_DEAD)) {
    cn__remove_link(p, me ? me->pid : p->pid);
    if (rc == CN_STOP) {
      if (opts && opts->reason) {
        cn_buf_reset(opts->reason);
        cn_put_term(opts->reason, stop_reason(p));
      }
      cn__proc_exit(p, stop_reason(p), false);
    } else if (rc == CN_IGNORE) {
      cn__proc_exit(p, cn__atom_term("normal"), false);
    } else {
      char store[64];
      cn_buf b;
      cn_buf_init_with(&b, store, sizeof(store));
      cn_build(&b, "{bad_return_value, ~i}", (int64_t)rc);
      if (opts && opts->reason) {
        cn_buf_reset(opts->reason);
        cn_put_term(opts->reason, cn_buf_term(&b));
      }
      cn__proc_exit(p, cn_buf_term(&b), false);
      cn_buf_free(&b);
    }
  }
  cn__proc_unref(p);
  return rc == CN_IGNORE ? CN_EIGNORE : CN_EEXIT;
}

int cn_start(cn_runtime *rt, const cn_server_ops *ops, void *arg,
             const cn_start_options *opts, cn_pid *pid) {
  return start(rt, ops, arg, opts, pid, false);
}

int cn_start_link(cn_runtime *rt, const cn_server_ops *ops, void *arg,
                  const cn_start_options *opts, cn_pid *pid) {
  return start(rt, ops, arg, opts, pid, true);
}

/* ---- Blocking calls from plain threads -------------------------------- */

/* Waits for the answer to a call or stop made with ref, and turns it into
 * a status.  On a timeout the caller drops its monitor, so a late reply
 * or DOWN finds nothing and is dropped. */
static int await(cn_runtime *rt, cn__thread *t, cn_pid server,
                 const cn_ref *ref, int timeout_ms, cn_buf *reply) {
  cn__msg *m = NULL;
  int rc = cn__thread_wait_ref(t, ref, timeout_ms, &m);
  if (rc == CN_ETIMEDOUT) {
    send_demonitor(rt, t->proc->pid, server, ref);
    return rc;
  }
  if (m->kind == CN__M_REPLY && !(m->flags & CN__F_DEMONDONE))
    send_demonitor(rt, t->proc->pid, server, ref);
  rc = end_status(m);
  if (reply) {
    cn_buf_reset(reply);
    if (rc == 0 || rc == CN_EEXIT)
      cn_buf_append(reply, m->data, m->len);
  }
  cn__msg_free(m);
  return rc;
}

int cn_call(cn_runtime *rt, cn_dest to, cn_term req, cn_ms timeout,
            cn_buf *reply) {
  int timeout_ms = cn__ms(timeout);
  cn__thread *t;
  cn_proc *p;
  cn_pid pid;
  cn_ref ref;
  cn__msg *m;
  int rc, where;

  if (!rt || !reply)
    return CN_EINVAL;
  if (cn__current())
    return CN_EDEADLK;
  if ((rc = cn__check_term(rt, req)) != 0)
    return rc;
  if ((where = resolve(rt, to, &pid)) < 0)
    return where;
  if (!(t = cn__thread_ctx(rt, &rc)))
    return rc;
  if (where == REMOTE) {
    /* The distribution layer monitors the server for the call and sends
     * it with our ref as the alias. */
    cn__ref_of(rt, cn__thread_ref_number(rt, t), &ref);
    if (!(m = request_new(rt, CN__M_CALL, req, t->proc->pid, &ref, pid)))
      return CN_ENOMEM;
    if ((rc = deliver_remote(rt, to, pid, m)) != 0)
      return rc;
    return await(rt, t, pid, &ref, timeout_ms, reply);
  }
  if (cn_pid_equal(&pid, &t->proc->pid))
    return CN_EDEADLK;
  if (!(p = cn__thread_take_server(t, pid)) && !(p = cn__lookup(rt, pid)))
    return CN_ENOPROC;
  cn__ref_of(rt, cn__thread_ref_number(rt, t), &ref);

  {
    uint32_t st = 0;
    bool held = !p->thread &&
                atomic_compare_exchange_strong(&p->state, &st, CN__P_SCHED);
    if (held && !inline_ok(p)) {
      /* Suspended by sys, or messages wait: the call goes behind them. */
      if (!cn__release(p))
        cn__proc_unref(p);
      p = NULL;
    } else if (held) {
      /* The server is idle: run the call here (see cn_call's doc).  Our
       * lookup reference is the SCHED holder's. */
      cn_from *from = cn__from_new(rt);
      char store[256];
      cn_buf copy;
      int replied = 0;
      cn_buf_init_with(&copy, store, sizeof(store));
      /* The handler writes the reply into *reply; if the request lives in
       * the same buffer, it must be read from a copy. */
      if (reply->data && req.ptr >= reply->data &&
          req.ptr < reply->data + reply->cap) {
        if (cn_buf_append(&copy, req.ptr, req.len) != 0) {
          cn_from_free(from);
          from = NULL;
        }
        req = cn_buf_term(&copy);
      }
      if (from) {
        cn_proc *prev = cn__set_current(p);
        from->pid = t->proc->pid;
        from->ref = ref;
        from->server = pid;
        cn_buf_reset(reply);
        replied = cn__server_call_inline(p, from, req, reply);
        cn__set_current(prev);
      }
      if (inline_done(p))
        cn__thread_keep_server(t, p);
      cn_buf_free(&copy);
      if (!from)
        return CN_ENOMEM;
      if (replied < 0)
        return replied; /* answered with an error, such as CN_ETOOBIG */
      if (replied)
        return 0;
      return await(rt, t, pid, &ref, timeout_ms, reply);
    }
  }
  if (!(m = request_new(rt, CN__M_CALL, req, t->proc->pid, &ref, pid))) {
    if (p)
      cn__proc_unref(p);
    return CN_ENOMEM;
  }
  if (p) {
    rc = cn__deliver_to(p, m);
    cn__proc_unref(p);
  } else {
    rc = cn__deliver(rt, pid, m);
  }
  if (rc)
    return rc;
  return await(rt, t, pid, &ref, timeout_ms, reply);
}

int cn_stop(cn_runtime *rt, cn_dest server, const cn_term *reason,
            cn_ms timeout) {
  int timeout_ms = cn__ms(timeout);
  cn_term why = reason ? *reason : cn__atom_term("normal");
  cn__thread *t;
  cn_proc *p;
  cn_pid pid;
  cn_ref ref;
  cn__msg *m;
  int rc;

  if (!rt)
    return CN_EINVAL;
  if (cn__current())
    return CN_EDEADLK;
  if ((rc = cn__check_term(rt, why)) != 0 ||
      (rc = resolve_local(rt, server, &pid)) != 0)
    return rc;
  if (!(p = cn__lookup(rt, pid)) || p->thread) {
    if (p)
      cn__proc_unref(p);
    return CN_ENOPROC;
  }
  {
    uint32_t st = 0;
    if (atomic_compare_exchange_strong(&p->state, &st, CN__P_SCHED)) {
      if (!(p->flags & CN__PF_OWN_EXIT)) {
        cn_proc *prev = cn__set_current(p);
        cn__proc_exit(p, why, true);
        cn__set_current(prev);
        cn__proc_unref(p);
        return 0;
      }
      if (!cn__release(p))
        cn__proc_unref(p);
      p = cn__lookup(rt, pid);
      if (!p)
        return 0;
    }
  }
  if (!(t = cn__thread_ctx(rt, &rc))) {
    cn__proc_unref(p);
    return rc;
  }
  cn__make_ref(rt, &ref);
  if (!(m = request_new(rt, CN__S_STOP, why, t->proc->pid, &ref, pid))) {
    cn__proc_unref(p);
    return CN_ENOMEM;
  }
  rc = cn__deliver_to(p, m);
  cn__proc_unref(p);
  if (rc)
    return rc;
  rc = cn__thread_wait_ref(t, &ref, timeout_ms, &m);
  if (rc == CN_ETIMEDOUT) {
    /* kill cannot be trapped: the DOWN we still monitor for will come,
     * and the server is gone when we return. */
    cn_exit(rt, pid, cn__atom_term("kill"));
    cn__thread_wait_ref(t, &ref, CN_INFINITY, &m);
  }
  cn__msg_free(m);
  return rc;
}

int cn_code_change(cn_runtime *rt, cn_dest server, cn_term old_vsn,
                   cn_term extra, cn_ms timeout) {
  int timeout_ms = cn__ms(timeout);
  char store[256];
  cn_buf b, reply = CN_BUF_INIT;
  cn__thread *t;
  cn_pid pid;
  cn_ref ref;
  cn__msg *m;
  int rc;

  if (!rt)
    return CN_EINVAL;
  if (cn__current())
    return CN_EDEADLK;
  if ((rc = cn__check_term(rt, old_vsn)) != 0 ||
      (rc = cn__check_term(rt, extra)) != 0 ||
      (rc = resolve_local(rt, server, &pid)) != 0)
    return rc;
  if (!(t = cn__thread_ctx(rt, &rc)))
    return rc;
  cn_buf_init_with(&b, store, sizeof(store));
  if ((rc = cn_build(&b, "{~t, ~t}", old_vsn, extra)) != 0) {
    cn_buf_free(&b);
    return rc;
  }
  cn__make_ref(rt, &ref);
  m = request_new(rt, CN__S_CODE_CHANGE, cn_buf_term(&b), t->proc->pid, &ref,
                  pid);
  cn_buf_free(&b);
  if (!m)
    return CN_ENOMEM;
  if ((rc = cn__deliver(rt, pid, m)) != 0)
    return rc;
  rc = await(rt, t, pid, &ref, timeout_ms, &reply);
  if (rc == 0 && !cn_is_atom(cn_buf_term(&reply), "ok"))
    rc = CN_EEXIT;
  cn_buf_free(&reply);
  return rc;
}

int cn__process_links(cn_runtime *rt, cn_pid pid, cn_ms timeout, cn_buf *out) {
  cn__thread *t;
  cn_ref ref;
  cn__msg *m;
  int rc;
  if (cn__current())
    return CN_EDEADLK;
  if (!(t = cn__thread_ctx(rt, &rc)))
    return rc;
  cn__make_ref(rt, &ref);
  if (!(m = request_new(rt, CN__S_INFO, (cn_term){NULL, 0}, t->proc->pid, &ref,
                        pid)))
    return CN_ENOMEM;
  if ((rc = cn__deliver(rt, pid, m)) != 0)
    return rc;
  rc = await(rt, t, pid, &ref, cn__ms(timeout), out);
  return rc == CN_EEXIT ? CN_ENOPROC : rc;
}

/* ---- Sends and casts -------------------------------------------------- */

static int send_kind(cn_runtime *rt, cn_dest to, cn_term msg, int kind,
                     bool quiet, unsigned flags) {
  cn__msg *m;
  cn_pid pid;
  int rc;

  if (!rt)
    return CN_EINVAL;
  if ((rc = cn__check_term(rt, msg)) != 0)
    return rc;
  if ((rc = resolve(rt, to, &pid)) < 0) {
    /* A cast never fails for a missing destination (GenServer.cast);
     * a send to an unregistered name is Erlang's badarg. */
    if (quiet && (rc == CN_ENOPROC || rc == CN_ENOCONN))
      return 0;
    return rc;
  }
  if (rc == REMOTE && (flags & CN_SEND_NOSUSPEND) && rt->dist_ops &&
      atomic_load(&rt->dist) && rt->dist_ops->busy(rt, pid.node))
    return CN_EBUSY;
  if (!(m = cn__msg_new(kind, msg.ptr, msg.len)))
    return CN_ENOMEM;
  if (cn__current())
    m->from = cn__current()->pid;
  /* A dead pid drops the message, as in Erlang, and so does a node that
   * cannot be reached.  A full mailbox drops it too, but the sender is
   * told. */
  if (rc == REMOTE)
    deliver_remote(rt, to, pid, m);
  else if (cn__deliver(rt, pid, m) == CN_EFULL)
    return CN_EFULL;
  return 0;
}

int cn_send(cn_runtime *rt, cn_dest to, cn_term msg) {
  return send_kind(rt, to, msg, CN__M_MSG, false, 0);
}

int cn_send_opts(cn_runtime *rt, cn_dest to, cn_term msg, unsigned flags) {
  return send_kind(rt, to, msg, CN__M_MSG, false, flags);
}

int cn_cast(cn_runtime *rt, cn_dest to, cn_term msg) {
  return send_kind(rt, to, msg, CN__M_CAST, true, 0);
}

/* ---- With a format ---------------------------------------------------- */

/* Builds the term of fmt into b (over store) for one of the calls below.
 * Returns 0 or the builder's error, with b freed. */
static int vbuild_in(cn_buf *b, char *store, size_t cap, const char *fmt,
                     va_list ap) {
  int rc;
  cn_buf_init_with(b, store, cap);
  if ((rc = cn_vbuild(b, fmt, ap)) != 0)
    cn_buf_free(b);
  return rc;
}

int cn_sendf(cn_runtime *rt, cn_dest to, const char *fmt, ...) {
  char store[256];
  cn_buf b;
  va_list ap;
  int rc;
  va_start(ap, fmt);
  rc = vbuild_in(&b, store, sizeof(store), fmt, ap);
  va_end(ap);
  if (rc == 0) {
    rc = cn_send(rt, to, cn_buf_term(&b));
    cn_buf_free(&b);
  }
  return rc;
}

int cn_castf(cn_runtime *rt, cn_dest to, const char *fmt, ...) {
  char store[256];
  cn_buf b;
  va_list ap;
  int rc;
  va_start(ap, fmt);
  rc = vbuild_in(&b, store, sizeof(store), fmt, ap);
  va_end(ap);
  if (rc == 0) {
    rc = cn_cast(rt, to, cn_buf_term(&b));
    cn_buf_free(&b);
  }
  return rc;
}

int cn_callf(cn_runtime *rt, cn_dest to, cn_ms timeout, cn_buf *reply,
             const char *fmt, ...) {
  char store[256];
  cn_buf b;
  va_list ap;
  int rc;
  va_start(ap, fmt);
  rc = vbuild_in(&b, store, sizeof(store), fmt, ap);
  va_end(ap);
  if (rc == 0) {
    rc = cn_call(rt, to, cn_buf_term(&b), timeout, reply);
    cn_buf_free(&b);
  }
  return rc;
}
