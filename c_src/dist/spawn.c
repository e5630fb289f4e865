/* Remote spawns: SPAWN_REQUEST answered as erts answers it.
 *
 * On the wire (OTP 23+, DFLAG_SPAWN):
 *   SPAWN_REQUEST {29, ReqId, From, GroupLeader, {M, F, Arity}, OptList}
 *                 then the argument list as the payload;
 *   SPAWN_REPLY   {31, ReqId, From, Flags, Result}: Result is the new pid
 *                 (Flags: 1 the link was set up, 2 the monitor) or an
 *                 error atom (badopt, system_limit).
 * The requester's monitor (option monitor) uses ReqId as its reference:
 * the new process's exit reason comes back as that monitor's DOWN.
 *
 * What runs.  erpc:call(N, M, F, A) spawns erpc:execute_call(Ref, M, F,
 * A), whose exit reason carries the result: {Ref, return, V},
 * {Ref, throw, T}, {Ref, exit, E} or {Ref, error, R, Stack} (erpc.erl).
 * erpc:cast spawns erpc:execute_cast(M, F, A).  Any other M:F/A is
 * applied itself, as a BEAM process would run it: it ends normal, or
 * with {{nocatch, T}, Stack}, E or {R, Stack}.  Each looks its function
 * up in the export table (runtime/export.c): a missing one is undef, as
 * on a BEAM node without it.  A fun (Node.spawn(node, fun), which OTP 25
 * sends as erlang:apply(Fun, [])) is a fun of a module a C node cannot
 * have: the process exits with {undef, [{Fun, [], []}]}, as a BEAM node
 * without that module does.
 *
 * The process the requester sees is a server of ours that holds the
 * monitor and the link; the function runs on a worker thread (it may
 * block) and hands its outcome back with a message; the process then
 * exits with the reason above, by an exit signal to itself so that, as
 * on the BEAM, no gen_server crash report is logged for it.  Like the
 * BEAM we log "Error in process" for a plain spawn that failed. */
#include "dist_internal.h"
#include "term/term_internal.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

enum { J_PLAIN = 0, J_CALL, J_CAST };

#define DONE_ATOM "$cnode_export_done"
#define SEND_ATOM "$cnode_export_send"

/* A message the export asked its process to send (cn__spawn_send). */
typedef struct spawn_out {
  struct spawn_out *next;
  cn_buf to;  /* a pid or a registered name */
  cn_buf msg; /* the message */
} spawn_out;

typedef struct spawn_job {
  cn__work work; /* first: the worker's view */
  _Atomic int refs;
  _Atomic int finished;
  int mode; /* J_* */
  cn_pid proc;
  char mod[256], fun[256];
  int badargs;  /* execute_call/cast's M, F or A were not atoms and a list */
  cn_buf ref;   /* J_CALL: erpc's Ref */
  cn_buf args;  /* the argument list */
  cn_buf out;   /* the value or reason */
  cn_buf stack; /* for error and undef */
  int rc;       /* cn__apply's */
  unsigned arity;
  _Atomic int got_message;     /* the process received something of
                                * someone's (cn__spawn_got_message) */
  pthread_mutex_t out_mu;      /* guards outq */
  spawn_out *outq, **out_tail; /* for the process to send, in order */
} spawn_job;

static void atom_to(cn_runtime *rt, cn_pid pid, const char *name, int exit);

static void out_free(spawn_out *o) {
  cn_buf_free(&o->to);
  cn_buf_free(&o->msg);
  free(o);
}

static void job_unref(spawn_job *j) {
  spawn_out *o;
  if (atomic_fetch_sub(&j->refs, 1) != 1)
    return;
  while ((o = j->outq)) {
    j->outq = o->next;
    out_free(o);
  }
  pthread_mutex_destroy(&j->out_mu);
  cn_buf_free(&j->ref);
  cn_buf_free(&j->args);
  cn_buf_free(&j->out);
  cn_buf_free(&j->stack);
  free(j);
}

/* The job this worker thread runs the export of (cn__spawn_self,
 * cn__spawn_got_message); the worker's reference keeps it. */
static _Thread_local spawn_job *cur_job;

int cn__spawn_self(cn_pid *pid) {
  if (!cur_job)
    return CN_ENOENT;
  *pid = cur_job->proc;
  return 0;
}

bool cn__spawn_got_message(void) {
  return cur_job && atomic_load(&cur_job->got_message);
}

int cn__spawn_send(cn_runtime *rt, cn_term to, cn_term msg) {
  spawn_job *j = cur_job;
  spawn_out *o;
  char name[256];
  cn_pid pid;
  int rc;
  if (!j) {
    if (cn_term_typeof(to) == CN_T_PID && cn_get_pid(to, &pid) == 0)
      return cn_send(rt, cn_to_pid(pid), msg);
    if (cn_term_typeof(to) == CN_T_ATOM &&
        cn_get_atom(to, name, sizeof(name)) >= 0)
      return cn_send(rt, cn_to_name(name), msg);
    return CN_EINVAL;
  }
  if ((rc = cn__check_term(rt, msg)) != 0)
    return rc;
  if (!(o = calloc(1, sizeof(*o))))
    return CN_ENOMEM;
  cn_buf_init(&o->to);
  cn_buf_init(&o->msg);
  cn_put_term(&o->to, to);
  cn_put_term(&o->msg, msg);
  if (o->to.err || o->msg.err) {
    out_free(o);
    return CN_ENOMEM;
  }
  pthread_mutex_lock(&j->out_mu);
  *j->out_tail = o;
  j->out_tail = &o->next;
  pthread_mutex_unlock(&j->out_mu);
  /* Before DONE_ATOM, from this same thread: the process sends this
   * before it exits. */
  atom_to(rt, j->proc, SEND_ATOM, 0);
  return 0;
}

/* In the process's turn: sends what its export queued, in order. */
static void send_queued(cn_runtime *rt, spawn_job *j) {
  spawn_out *o;
  char name[256];
  cn_pid pid;
  pthread_mutex_lock(&j->out_mu);
  o = j->outq;
  j->outq = NULL;
  j->out_tail = &j->outq;
  pthread_mutex_unlock(&j->out_mu);
  while (o) {
    spawn_out *next = o->next;
    cn_term to = cn_buf_term(&o->to);
    if (cn_term_typeof(to) == CN_T_PID && cn_get_pid(to, &pid) == 0)
      cn_send(rt, cn_to_pid(pid), cn_buf_term(&o->msg));
    else if (cn_get_atom(to, name, sizeof(name)) >= 0)
      cn_send(rt, cn_to_name(name), cn_buf_term(&o->msg));
    out_free(o);
    o = next;
  }
}

static void work_main(cn__work *w) {
  spawn_job *j = (spawn_job *)w;
  cn_runtime *rt = w->rt;
  if (j->badargs) {
    j->rc = CN_EBADTERM;
  } else {
    cur_job = j;
    j->rc = cn__apply(rt, j->mod, j->fun, cn_buf_term(&j->args), &j->out,
                      &j->stack);
    cur_job = NULL;
  }
  atomic_store(&j->finished, 1);
  atom_to(rt, j->proc, DONE_ATOM, 0);
  job_unref(j);
}

/* Delivers the atom name to pid, as a message (exit: 0) or an exit
 * signal from pid itself (exit: 1). */
static void atom_to(cn_runtime *rt, cn_pid pid, const char *name, int exit) {
  char store[64];
  cn_buf b;
  cn__msg *m;
  cn_buf_init_with(&b, store, sizeof(store));
  if (cn_put_atom(&b, name) == 0 &&
      (m = cn__msg_new(exit ? CN__S_EXIT : CN__M_MSG, b.data, b.len))) {
    m->from = pid;
    cn__deliver(rt, pid, m); /* dropped if the process is gone */
  }
  cn_buf_free(&b);
}

/* The first element of a list, as a one-element list (a plain spawn of
 * erlang:apply/2 shows no frame for apply itself). */
static void first_frame_only(cn_buf *stack) {
  cn_iter it;
  cn_term e;
  char store[256];
  cn_buf b;
  if (cn_iter_init(&it, cn_buf_term(stack), NULL) != 0 ||
      !cn_iter_next(&it, &e))
    return;
  cn_buf_init_with(&b, store, sizeof(store));
  cn_put_list(&b, 1);
  cn_put_term(&b, e);
  cn_put_nil(&b);
  if (!b.err) {
    cn_buf_reset(stack);
    cn_buf_append(stack, b.data, b.len);
  }
  cn_buf_free(&b);
}

/* The exit reason for the job's outcome, into r.  Returns true when it
 * is an error worth the BEAM's "Error in process" report. */
static bool exit_reason(spawn_job *j, cn_buf *r) {
  cn_term out = cn_buf_term(&j->out), st = cn_buf_term(&j->stack);
  cn_term ref = cn_buf_term(&j->ref);
  int rc = j->rc;

  if (rc == CN_EBADTERM) {
    /* apply(M, F, A) with A not a list, or M, F not atoms. */
    cn_buf_reset(&j->out);
    cn_build(&j->out, "badarg");
    cn_buf_reset(&j->stack);
    cn_build(&j->stack, "[{erlang, apply, 3, []}]");
    out = cn_buf_term(&j->out);
    st = cn_buf_term(&j->stack);
    rc = CN_ERROR;
  } else if (rc == CN_ENOENT) {
    cn_buf_reset(&j->out);
    cn_build(&j->out, "undef");
    out = cn_buf_term(&j->out);
    if (j->mode == J_PLAIN && strcmp(j->mod, "erlang") == 0 &&
        strcmp(j->fun, "apply") == 0) {
      first_frame_only(&j->stack);
      st = cn_buf_term(&j->stack);
    }
    rc = CN_ERROR;
  } else if (rc < CN_RETURN || rc > CN_ERROR) {
    cn_buf_reset(&j->out);
    cn_build(&j->out, "system_limit");
    out = cn_buf_term(&j->out);
    rc = CN_EXIT;
  }
  switch (j->mode) {
  case J_CALL:
    switch (rc) {
    case CN_RETURN:
      cn_build(r, "{~t, return, ~t}", ref, out);
      break;
    case CN_THROW:
      cn_build(r, "{~t, throw, ~t}", ref, out);
      break;
    case CN_EXIT:
      cn_build(r, "{~t, exit, ~t}", ref, out);
      break;
    default:
      cn_build(r, "{~t, error, ~t, ~t}", ref, out, st);
      break;
    }
    return false;
  case J_CAST:
    switch (rc) {
    case CN_RETURN:
      cn_build(r, "normal");
      return false;
    case CN_THROW:
      cn_build(r, "{{nocatch, ~t}, [{erpc, execute_cast, 3, []}]}", out);
      return true;
    case CN_EXIT:
      cn_put_term(r, out);
      return false;
    default:
      cn_build(r, "{{exception, {~t, ~t}}, [{erpc, execute_cast, 3, []}]}", out,
               st);
      return true;
    }
  default:
    switch (rc) {
    case CN_RETURN:
      cn_build(r, "normal");
      return false;
    case CN_THROW:
      cn_build(r, "{{nocatch, ~t}, [{~a, ~a, ~u, []}]}", out, j->mod, j->fun,
               (uint64_t)j->arity);
      return true;
    case CN_EXIT:
      cn_put_term(r, out);
      return false;
    default:
      cn_build(r, "{~t, ~t}", out, st);
      return true;
    }
  }
}

static int sp_info(cn_proc *self, void *state, cn_term msg) {
  spawn_job *j = state;
  cn_runtime *rt = cn_proc_runtime(self);
  char store[256];
  cn_buf r;
  bool report;
  if (cn_is_atom(msg, SEND_ATOM)) {
    send_queued(rt, j); /* also when someone else sent the atom: the
                         * queue is the job's own */
    return CN_NOREPLY;
  }
  if (!cn_is_atom(msg, DONE_ATOM) || !atomic_load(&j->finished)) {
    /* Stray messages are dropped, as erpc's process never receives;
     * code that waits for one (observer_backend:fetch_stats/2) learns
     * that one came. */
    atomic_store(&j->got_message, 1);
    return CN_NOREPLY;
  }
  cn_buf_init_with(&r, store, sizeof(store));
  report = exit_reason(j, &r);
  if (r.err) {
    cn_buf_reset(&r);
    cn_build(&r, "system_limit");
  }
  if (report && cn__log_enabled(CN_LOG_ERROR)) {
    char who[64], why[320];
    cn_pid me = cn_proc_pid(self);
    char store2[64];
    cn_buf pb;
    cn_buf_init_with(&pb, store2, sizeof(store2));
    cn_build(&pb, "~p", &me);
    cn__term_short(cn_buf_term(&pb), who, sizeof(who));
    cn__term_short(cn_buf_term(&r), why, sizeof(why));
    cn__log_at(rt, CN_LOG_ERROR,
               "Error in process %s on node %s with exit value: %s", who,
               cn_node_name(cn_runtime_node(rt)), why);
    cn_buf_free(&pb);
  }
  if (cn_is_atom(cn_buf_term(&r), "normal")) {
    cn_buf_free(&r);
    return CN_STOP;
  }
  /* An exit signal to ourselves: the reason goes to the monitor and the
   * link as it is, and no crash report is logged (see above). */
  if (cn_exit(rt, cn_proc_pid(self), cn_buf_term(&r)) != 0) {
    /* A reason over max_message: the process must still end, with a
     * reason that fits. */
    cn_buf_reset(&r);
    cn_build(&r, "{message_too_large, ~u}", (uint64_t)cn_max_message(rt));
    cn_exit(rt, cn_proc_pid(self), cn_buf_term(&r));
  }
  cn_buf_free(&r);
  return CN_NOREPLY;
}

static void sp_free(void *state) { job_unref(state); }

static const cn_server_ops spawn_ops = {
    .name = "erpc",
    .handle_info = sp_info,
    .free_state = sp_free,
};

/* Reads the options erts accepts from a remote spawn_request: link,
 * monitor and {monitor, MonitorOpts} are ours to honour; the rest
 * (priority, heap sizes, message_queue_data...) tune a BEAM process and
 * have no meaning here, so they are taken and ignored, as long as they
 * are {Name, Value} pairs.  Returns false for a malformed list
 * (badopt). */
static bool read_opts(cn_term opts, bool *link, bool *monitor) {
  cn_iter it;
  cn_term e, k, v;
  *link = *monitor = false;
  if (cn_term_typeof(opts) == CN_T_NIL)
    return true;
  if (cn_iter_init(&it, opts, NULL) != 0)
    return false;
  while (cn_iter_next(&it, &e)) {
    if (cn_is_atom(e, "link"))
      *link = true;
    else if (cn_is_atom(e, "monitor"))
      *monitor = true;
    else if (cn_match(e, "{~t, ~t}", &k, &v) == 0 &&
             cn_term_typeof(k) == CN_T_ATOM) {
      if (cn_is_atom(k, "monitor"))
        *monitor = true;
    } else {
      return false;
    }
  }
  return !it.tail.len || cn_term_typeof(it.tail) == CN_T_NIL;
}

/* erpc:execute_call(Ref, M, F, A) and execute_cast(M, F, A): the job's
 * real target.  Returns false when the argument list has another shape
 * (then the MFA is applied as it is, and is undef). */
static bool erpc_target(spawn_job *j, const char *fun, cn_term args) {
  cn_term ref, m, f, a;
  if (strcmp(fun, "execute_call") == 0 &&
      cn_match(args, "[~t, ~t, ~t, ~t]", &ref, &m, &f, &a) == 0) {
    j->mode = J_CALL;
    cn_put_term(&j->ref, ref);
  } else if (strcmp(fun, "execute_cast") == 0 &&
             cn_match(args, "[~t, ~t, ~t]", &m, &f, &a) == 0) {
    j->mode = J_CAST;
  } else {
    return false;
  }
  if (cn_get_atom(m, j->mod, sizeof(j->mod)) < 0 ||
      cn_get_atom(f, j->fun, sizeof(j->fun)) < 0 ||
      (cn_term_typeof(a) != CN_T_LIST && cn_term_typeof(a) != CN_T_NIL))
    j->badargs = 1;
  cn_put_term(&j->args, a);
  return true;
}

void cn__spawn_request(cn__dist *d, cn__conn *c, cn_pid from, const cn_ref *req,
                       cn_term mfa, cn_term opts, cn_term args) {
  cn_runtime *rt = d->rt;
  char mod[256], fun[256];
  cn_term mt, ft, at;
  bool link, monitor;
  spawn_job *j;
  cn_pid pid;
  int rc, flags = 0;

  if (cn_match(mfa, "{~t, ~t, ~t}", &mt, &ft, &at) != 0 ||
      cn_get_atom(mt, mod, sizeof(mod)) < 0 ||
      cn_get_atom(ft, fun, sizeof(fun)) < 0 ||
      !read_opts(opts, &link, &monitor)) {
    cn__route_spawn_reply(d, c, req, from, 0, NULL, "badopt");
    return;
  }
  if (!(j = calloc(1, sizeof(*j)))) {
    cn__route_spawn_reply(d, c, req, from, 0, NULL, "system_limit");
    return;
  }
  atomic_init(&j->refs, 1);
  pthread_mutex_init(&j->out_mu, NULL);
  j->out_tail = &j->outq;
  cn_buf_init(&j->ref);
  cn_buf_init(&j->args);
  cn_buf_init(&j->out);
  cn_buf_init(&j->stack);
  j->work.fn = work_main;
  if (!(strcmp(mod, "erpc") == 0 && erpc_target(j, fun, args))) {
    j->mode = J_PLAIN;
    snprintf(j->mod, sizeof(j->mod), "%s", mod);
    snprintf(j->fun, sizeof(j->fun), "%s", fun);
    cn_put_term(&j->args, args);
    {
      int64_t n = 0;
      cn_get_int64(at, &n);
      j->arity = (unsigned)n;
    }
  }
  if (j->args.err || j->ref.err) {
    job_unref(j);
    cn__route_spawn_reply(d, c, req, from, 0, NULL, "system_limit");
    return;
  }
  /* The process holds one reference (its state, freed by free_state). */
  if ((rc = cn_start(rt, &spawn_ops, j, NULL, &pid)) != 0) {
    job_unref(j);
    cn__route_spawn_reply(d, c, req, from, 0, NULL, "system_limit");
    return;
  }
  j->proc = pid;
  /* The monitor and the link reach the process before anything it could
   * exit of: the worker starts only below. */
  if (cn__route_watch(d, c->dn, pid, from, monitor ? req : NULL, link) == 0)
    flags = (link ? 1 : 0) | (monitor ? 2 : 0);
  cn__route_spawn_reply(d, c, req, from, flags, &pid, NULL);
  atomic_fetch_add(&j->refs, 1); /* the worker's */
  if (cn__work_start(rt, &j->work) != 0) {
    job_unref(j);
    atom_to(rt, pid, "system_limit", 1);
  }
}
