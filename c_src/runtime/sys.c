/* sys: OTP's system messages, for every server and supervisor.
 *
 * sys.erl talks to a process with gen:call(Name, system, Req): the caller
 * monitors the process and sends {system, {Pid, Tag}, Req}; the process
 * answers {Tag, Reply} (to the alias in Tag when there is one) from
 * sys:handle_system_msg/6.  This file is that function for C servers,
 * clause by clause (sys.erl's do_cmd/6 and debug_cmd/2, gen_server.erl's
 * format_status/2 and system_* callbacks), with these differences, each
 * because C is not Erlang:
 *
 *   - get_state renders the state with the server's format_state callback
 *     (cn_server_ops), or gives {cnode_state, Module} without one.
 *   - {replace_state, Fun}: a fun cannot run here, so the answer is at
 *     once {error, {not_supported, replace_state}}, which makes
 *     sys:replace_state raise.  The same for {debug, {install, _}}.
 *   - {debug, {log_to_file, File}} answers {error, open_file}: a peer does
 *     not get to make the node open files.  trace and log are accepted
 *     (ok) and shown in get_status's debug list, but no events are kept or
 *     printed: {log, get} gives {ok, []}.
 *   - statistics counts messages in and replies out; there are no
 *     reductions (0).
 *
 * Suspended, a server takes only system messages, as sys:suspend_loop/6
 * does.  Everything else that would reach a callback waits, in order, in
 * a held queue, and is put back at the head of the process's queue on
 * resume.  Signals that end the process still end it (the held calls are
 * then answered as a dead process's); a supervisor's stop resumes it
 * first, since it needs its messages to shut its children down.
 */
#include "internal.h"
#include "term/term_internal.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct cn__sys {
  int suspended;
  cn__msg *held_head, *held_tail; /* held while suspended, oldest first */
  int trace;                      /* {trace, true} */
  int64_t log;                    /* {log, true | {true, N}}: N, or 0 */
  int stats;                      /* {statistics, true} */
  time_t stats_start;
  uint64_t in, out; /* messages handled and replies sent */
} cn__sys;

/* p's sys state, or NULL before the first system message. */
static cn__sys *sys_of(const cn_proc *p) { return p->ext ? p->ext->sys : NULL; }

static cn__sys *get_sys(cn_proc *p) {
  cn__pext *x = cn__ext(p);
  if (x && !x->sys)
    x->sys = calloc(1, sizeof(*x->sys));
  return x ? x->sys : NULL;
}

bool cn__sys_suspended(const cn_proc *p) {
  cn__sys *s = sys_of(p);
  return s && s->suspended;
}

void cn__sys_count_in(cn_proc *p) {
  cn__sys *s = sys_of(p);
  if (s && s->stats)
    s->in++;
}

void cn__sys_count_out(cn_proc *p) {
  cn__sys *s = sys_of(p);
  if (s && s->stats)
    s->out++;
}

/* Puts the held messages back at the head of p's queue. */
static void requeue(cn_proc *p) {
  cn__sys *s = sys_of(p);
  s->suspended = 0;
  if (!s->held_head)
    return;
  s->held_tail->next = p->q_head;
  p->q_head = s->held_head;
  if (!p->q_tail)
    p->q_tail = s->held_tail;
  s->held_head = s->held_tail = NULL;
}

void cn__sys_exit(cn_proc *p) {
  requeue(p);
  free(p->ext->sys);
  p->ext->sys = NULL;
}

/* ---- Labels and short terms ------------------------------------------- */

void cn__term_short(cn_term t, char *out, size_t cap) {
  cn_buf b = CN_BUF_INIT;
  size_t n;
  if (cap == 0)
    return;
  if (cn_term_print(t, &b) != 0) {
    snprintf(out, cap, "(unprintable)");
    cn_buf_free(&b);
    return;
  }
  n = b.len < cap - 1 ? b.len : cap - 1;
  memcpy(out, b.data, n);
  out[n] = '\0';
  if (b.len > n && cap > 4)
    memcpy(out + cap - 4, "...", 4);
  cn_buf_free(&b);
}

void cn__proc_label(cn_proc *p, char *out, size_t cap) {
  char store[64];
  cn_buf b;
  const char *name;
  pthread_rwlock_rdlock(&p->rt->names_mu);
  name = p->reg_name;
  if (name)
    snprintf(out, cap, "%s", name);
  pthread_rwlock_unlock(&p->rt->names_mu);
  if (name)
    return;
  cn_buf_init_with(&b, store, sizeof(store));
  if (cn_put_pid(&b, &p->pid) == 0)
    cn__term_short(cn_buf_term(&b), out, cap);
  else
    snprintf(out, cap, "?");
  cn_buf_free(&b);
}

static const char *module_of(const cn_proc *p) {
  return p->ops && p->ops->name ? p->ops->name : "cnode_server";
}

static bool is_normal_exit(cn_term r) {
  return cn_is_atom(r, "normal") || cn_is_atom(r, "shutdown") ||
         cn_match(r, "{shutdown, _}") == 0;
}

#define SHORT 320 /* bytes of a term in a log line */

void cn__crash_report(cn_proc *p, cn_term reason) {
  char who[300], why[SHORT], last[SHORT];
  cn_term lm;
  if (is_normal_exit(reason) || !cn__log_enabled(CN_LOG_ERROR))
    return;
  lm = cn__last_msg();
  cn__proc_label(p, who, sizeof(who));
  cn__term_short(reason, why, sizeof(why));
  if (lm.len)
    cn__term_short(lm, last, sizeof(last));
  else
    snprintf(last, sizeof(last), "none");
  cn__log_at(p->rt, CN_LOG_ERROR,
             "crash report: server %s (%s) terminating: reason %s; last "
             "message in %s",
             who, module_of(p), why, last);
}

/* ---- Replies ---------------------------------------------------------- */

bool cn__tag_alias(cn_term tag, cn_ref *alias) {
  cn_iter it;
  cn_term e;
  int depth;
  for (depth = 0; depth < 2; depth++) {
    if (cn_term_typeof(tag) != CN_T_LIST || cn_iter_init(&it, tag, NULL) ||
        !cn_iter_next(&it, &e))
      return false;
    if (cn_is_atom(e, "alias")) {
      if (cn_iter_next(&it, &e))
        return false; /* [alias, X | _]: not an alias tag */
      return cn__get_ref_known(it.tail, alias) == 0;
    }
    tag = e; /* [[alias|Ref]|_] */
  }
  return false;
}

/* gen:reply({To, Tag}, Reply): {Tag, Reply} to To, or to the alias in
 * Tag, so that a reply after the caller gave up is dropped. */
static void sys_reply(cn_proc *p, cn_pid to, cn_term tag, cn_term reply) {
  cn_runtime *rt = p->rt;
  char store[256];
  cn_buf b;
  cn__msg *m;
  cn_ref alias;
  bool has_alias = to.node != rt->node && cn__tag_alias(tag, &alias);

  cn_buf_init_with(&b, store, sizeof(store));
  cn_build(&b, "{~t, ~t}", tag, reply);
  if (b.err || cn__check_term(rt, cn_buf_term(&b)) != 0) {
    /* Too large to carry (a huge state): the caller gets an error term
     * rather than a timeout. */
    char rs[64];
    cn_buf r;
    cn_buf_init_with(&r, rs, sizeof(rs));
    cn__refusal_reason(rt, CN_ETOOBIG, &r);
    cn_buf_reset(&b);
    cn_build(&b, "{~t, {error, ~t}}", tag, cn_buf_term(&r));
    cn_buf_free(&r);
  }
  m = cn__msg_new(has_alias ? CN__M_REPLY : CN__M_MSG, b.data, b.len);
  cn_buf_free(&b);
  if (!m)
    return;
  m->from = p->pid;
  if (has_alias) {
    m->flags = CN__F_ALIAS;
    m->ref = alias;
  }
  if (to.node == rt->node)
    cn__deliver(rt, to, m);
  else
    cn__deliver_remote(rt, to, m);
}

/* ---- The state -------------------------------------------------------- */

/* The state as a term, into b: format_state's, or {cnode_state, Module}.
 * Returns 0, or the callback's failure (then b holds the error term
 * sys:get_state raises: {callback_failed, {Module, format_state}, Rc}). */
static int put_state(cn_proc *p, cn_buf *b) {
  const cn_server_ops *ops = p->ops;
  cn_buf st = CN_BUF_INIT;
  int rc;
  if (!ops->format_state)
    return cn_build(b, "{cnode_state, ~a}", module_of(p));
  rc = ops->format_state(p, p->state_ptr, &st);
  if (rc == 0 && (st.err || cn__check_term(p->rt, cn_buf_term(&st)) != 0))
    rc = st.err ? st.err : CN_EBADTERM;
  if (rc == 0)
    cn_put_term(b, cn_buf_term(&st));
  else
    cn_build(b, "{callback_failed, {~a, format_state}, ~i}", module_of(p),
             (int64_t)rc);
  cn_buf_free(&st);
  return rc ? rc : b->err;
}

static void put_localtime(cn_buf *b, time_t t) {
  struct tm tm;
  localtime_r(&t, &tm);
  cn_build(b, "{{~i, ~i, ~i}, {~i, ~i, ~i}}", (int64_t)tm.tm_year + 1900,
           (int64_t)tm.tm_mon + 1, (int64_t)tm.tm_mday, (int64_t)tm.tm_hour,
           (int64_t)tm.tm_min, (int64_t)tm.tm_sec);
}

/* sys:get_stat/1's list. */
static void put_stats(cn_proc *p, cn_buf *b) {
  cn__sys *s = sys_of(p);
  cn_put_list(b, 5);
  cn_put_tuple(b, 2);
  cn_put_atom(b, "start_time");
  put_localtime(b, s->stats_start);
  cn_put_tuple(b, 2);
  cn_put_atom(b, "current_time");
  put_localtime(b, time(NULL));
  cn_build(b, "{reductions, 0}");
  cn_build(b, "{messages_in, ~u}", s->in);
  cn_build(b, "{messages_out, ~u}", s->out);
  cn_put_nil(b);
}

/* The Debug list get_status shows (sys's dbg_opts, as far as kept). */
static void put_debug(cn_proc *p, cn_buf *b) {
  cn__sys *s = sys_of(p);
  uint32_t n = s ? (s->trace != 0) + (s->log != 0) + (s->stats != 0) : 0;
  if (n)
    cn_put_list(b, n);
  if (n && s->trace)
    cn_build(b, "{trace, true}");
  if (n && s->log)
    cn_build(b, "{log, {~i, []}}", s->log);
  if (n && s->stats) {
    cn_put_tuple(b, 2);
    cn_put_atom(b, "statistics");
    cn_put_tuple(b, 4);
    put_localtime(b, s->stats_start);
    cn_build(b, "{reductions, 0}");
    cn_put_uint(b, s->in);
    cn_put_uint(b, s->out);
  }
  cn_put_nil(b);
}

/* sys:get_status/1 of a gen_server: {status, Pid, {module, gen_server},
 * [PDict, SysState, Parent, Debug, Misc]}, Misc as gen_server's
 * format_status/2 makes it.  The process dictionary carries
 * '$initial_call' => {Module, init, 1} (as proc_lib's does), which is
 * where the server's own module shows. */
static void put_status(cn_proc *p, cn_buf *b) {
  const char *sysstate = cn__sys_suspended(p) ? "suspended" : "running";
  bool orphan = cn_pid_equal(&p->parent, &p->pid);
  char label[300], header[400];
  cn_buf st = CN_BUF_INIT;

  put_state(p, &st);
  cn__proc_label(p, label, sizeof(label));
  snprintf(header, sizeof(header), "Status for generic server %s", label);
  cn_put_tuple(b, 4);
  cn_put_atom(b, "status");
  cn_put_pid(b, &p->pid);
  cn_build(b, "{module, gen_server}");
  cn_put_list(b, 5);
  /* PDict */
  if (orphan)
    cn_build(b, "[{'$initial_call', {~a, init, 1}}]", module_of(p));
  else
    cn_build(b, "[{'$initial_call', {~a, init, 1}}, {'$ancestors', [~p]}]",
             module_of(p), &p->parent);
  cn_put_atom(b, sysstate);
  cn_put_pid(b, &p->parent);
  put_debug(p, b);
  /* Misc: gen_server:format_status/2 */
  cn_put_list(b, 3);
  cn_put_tuple(b, 2);
  cn_put_atom(b, "header");
  cn_put_charlist(b, header, strlen(header));
  cn_build(b, "{data, [{~c, ~a}, {~c, ~p}, {~c, []}]}", "Status", sysstate,
           "Parent", &p->parent, "Logged events");
  cn_build(b, "{data, [{~c, ~t}]}", "State", cn_buf_term(&st));
  cn_put_nil(b);
  cn_put_nil(b);
  cn_buf_free(&st);
}

/* ---- Requests --------------------------------------------------------- */

/* sys:debug_cmd/2. */
static void debug_cmd(cn_proc *p, cn_term what, cn_buf *r) {
  cn__sys *s = sys_of(p);
  int64_t n;
  if (cn_match(what, "{trace, true}") == 0) {
    s->trace = 1;
  } else if (cn_match(what, "{trace, false}") == 0) {
    s->trace = 0;
  } else if (cn_match(what, "{log, true}") == 0) {
    s->log = 10;
  } else if (cn_match(what, "{log, {true, ~i}}", &n) == 0 && n >= 1) {
    s->log = n;
  } else if (cn_match(what, "{log, false}") == 0) {
    s->log = 0;
  } else if (cn_match(what, "{log, print}") == 0) {
    /* Nothing kept, nothing to print. */
  } else if (cn_match(what, "{log, get}") == 0) {
    cn_build(r, "{ok, []}");
    return;
  } else if (cn_match(what, "{log_to_file, false}") == 0) {
    /* No file is ever open. */
  } else if (cn_match(what, "{log_to_file, _}") == 0) {
    cn_build(r, "{error, open_file}");
    return;
  } else if (cn_match(what, "{statistics, true}") == 0) {
    if (!s->stats) {
      s->stats = 1;
      s->stats_start = time(NULL);
      s->in = s->out = 0;
    }
  } else if (cn_match(what, "{statistics, false}") == 0) {
    s->stats = 0;
  } else if (cn_match(what, "{statistics, get}") == 0) {
    if (!s->stats) {
      cn_build(r, "{ok, no_statistics}");
      return;
    }
    cn_put_tuple(r, 2);
    cn_put_atom(r, "ok");
    put_stats(p, r);
    return;
  } else if (cn_is_atom(what, "no_debug")) {
    s->trace = s->stats = 0;
    s->log = 0;
  } else if (cn_match(what, "{install, _}") == 0) {
    /* A debug fun cannot run in C. */
    cn_build(r, "{error, {not_supported, install}}");
    return;
  } else if (cn_match(what, "{remove, _}") == 0) {
    /* Nothing was installed. */
  } else {
    cn_put_atom(r, "unknown_debug");
    return;
  }
  cn_put_atom(r, "ok");
}

/* sys:handle_system_msg/6 and do_cmd/6: answers req from caller, tag. */
static void handle_system(cn_proc *p, cn_pid caller, cn_term tag, cn_term req) {
  cn__sys *s = get_sys(p);
  char store[512];
  cn_buf r;
  cn_term a, b, c;

  cn_buf_init_with(&r, store, sizeof(store));
  if (!s) {
    cn_build(&r, "{error, enomem}");
  } else if (cn_is_atom(req, "suspend")) {
    s->suspended = 1;
    cn_put_atom(&r, "ok");
  } else if (cn_is_atom(req, "resume")) {
    requeue(p);
    cn_put_atom(&r, "ok");
  } else if (cn_is_atom(req, "get_state")) {
    cn_buf st = CN_BUF_INIT;
    if (put_state(p, &st) != 0)
      cn_build(&r, "{error, ~t}", cn_buf_term(&st));
    else
      cn_put_term(&r, cn_buf_term(&st));
    cn_buf_free(&st);
  } else if (cn_is_atom(req, "get_status")) {
    put_status(p, &r);
  } else if (cn_match(req, "{replace_state, _}") == 0) {
    /* A fun cannot run in C: sys:replace_state raises at once. */
    cn_build(&r, "{error, {not_supported, replace_state}}");
  } else if (cn_match(req, "{debug, ~t}", &a) == 0) {
    debug_cmd(p, a, &r);
  } else if (cn_match(req, "{terminate, ~t}", &a) == 0) {
    /* Reply ok, then terminate with the reason: the caller's monitor
     * (proc_lib:stop's) sees it. */
    sys_reply(p, caller, tag, cn__atom_term("ok"));
    cn_buf_free(&r);
    if (p->flags & CN__PF_OWN_EXIT)
      requeue(p); /* it needs its messages to stop its children */
    cn__server_stop(p, a);
    return;
  } else if (s->suspended &&
             cn_match(req, "{change_code, ~t, ~t, ~t}", &a, &b, &c) == 0) {
    cn_buf why = CN_BUF_INIT;
    if (cn__server_code_change(p, &a, b, c, &why) == 0)
      cn_put_atom(&r, "ok");
    else
      cn_build(&r, "{error, ~t}", cn_buf_term(&why));
    cn_buf_free(&why);
  } else {
    /* change_code while running lands here too, as in do_cmd/6. */
    cn_build(&r, "{error, {unknown_system_msg, ~t}}", req);
  }
  if (r.err) {
    cn_buf_reset(&r);
    cn_build(&r, "{error, enomem}");
  }
  sys_reply(p, caller, tag, cn_buf_term(&r));
  cn_buf_free(&r);
}

/* {system, {Pid, Tag}, Req}, with a cheap look at the first bytes before
 * the match: every plain message passes through here. */
static bool is_system(const cn__msg *m, cn_pid *caller, cn_term *tag,
                      cn_term *req) {
  cn_term t = {m->data, m->len};
  if (m->len < 12 || (unsigned char)m->data[0] != 104 ||
      (unsigned char)m->data[1] != 3)
    return false;
  return cn_match(t, "{system, {~p, ~t}, ~t}", caller, tag, req) == 0;
}

/* Would p hold m while suspended?  What a callback would see waits;
 * what ends the process does not. */
static bool holds(const cn_proc *p, const cn__msg *m) {
  switch (m->kind) {
  case CN__M_MSG:
  case CN__M_CALL:
  case CN__M_CAST:
  case CN__M_REPLY:
  case CN__S_DOWN:
  case CN__S_CALL_TMO:
  case CN__S_TIMEOUT:
  case CN__S_CONTINUE:
    return true;
  case CN__S_EXIT: {
    cn_term reason = {m->data, m->len};
    bool from_parent =
        cn_pid_equal(&m->from, &p->parent) && !cn_pid_equal(&m->from, &p->pid);
    /* Trapped, it would be an {'EXIT', Pid, Reason} message; the
     * parent's exit and an untrappable kill end the process now. */
    return (p->flags & CN__PF_TRAP) && !from_parent &&
           !(!(m->flags & CN__F_LINKED) && cn_is_atom(reason, "kill"));
  }
  default:
    return false;
  }
}

/* A stop a process that takes its parent's exit as a message (a
 * supervisor) must get to run. */
static bool ends_own_exit(const cn_proc *p, const cn__msg *m) {
  if (!(p->flags & CN__PF_OWN_EXIT))
    return false;
  return m->kind == CN__S_STOP || m->kind == CN__S_SHUTDOWN ||
         (m->kind == CN__S_EXIT && cn_pid_equal(&m->from, &p->parent));
}

int cn__sys_filter(cn_proc *p, cn__msg *m) {
  cn__sys *s = sys_of(p);
  cn_pid caller;
  cn_term tag, req;

  if (m->kind == CN__M_MSG && is_system(m, &caller, &tag, &req)) {
    handle_system(p, caller, tag, req);
    return CN__SYS_DONE;
  }
  if (!s)
    return CN__SYS_PASS;
  if (s->suspended) {
    if (holds(p, m)) {
      /* Still waiting: counted in the mailbox again. */
      if (CN__COUNTED(m->kind))
        atomic_fetch_add_explicit(&p->mbox_len, 1, memory_order_relaxed);
      m->next = NULL;
      if (s->held_tail)
        s->held_tail->next = m;
      else
        s->held_head = m;
      s->held_tail = m;
      return CN__SYS_KEPT;
    }
    if (ends_own_exit(p, m))
      requeue(p);
  }
  if (s->stats && CN__COUNTED(m->kind))
    s->in++;
  return CN__SYS_PASS;
}
