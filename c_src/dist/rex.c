/* The registered rex server: kernel's rpc server, for the callers that
 * still talk to it rather than spawn (erpc):
 *   - ei_rpc and erl_call send {Pid, {call, M, F, A, GroupLeader}} and
 *     wait for {rex, Result} (rpc.erl's "special for hidden C nodes");
 *   - rpc's gen_server fallback calls {call, M, F, A, GroupLeader} (and
 *     block_call) and casts {cast, M, F, A, GroupLeader};
 *   - a BEAM node's rpc asks {Pid, features_request} on nodeup and is
 *     answered {features_reply, Node, [erpc]}.
 * Results are rpc.erl's execute_call/3's: the value; a throw's term;
 * {badrpc, {'EXIT', Reason}} for an exit; {badrpc, {'EXIT', {Reason,
 * Stack}}} for an error, undef included.  Each call runs on a worker
 * thread, as rpc spawns one process per call, so a slow export never
 * holds up rex.  The group leader is ignored: a C node has no I/O
 * server to send output to. */
#include "dist_internal.h"

#include <stdlib.h>
#include <string.h>

enum { R_CLASSIC = 1, R_GEN, R_CAST };

typedef struct rex_job {
  cn__work work; /* first: the worker's view */
  int kind;      /* R_* */
  cn_pid to;     /* R_CLASSIC: who gets {rex, Result} */
  cn_from *from; /* R_GEN: the gen_server caller */
  char mod[256], fun[256];
  int badargs;
  cn_buf args, out, stack, res;
} rex_job;

static void job_free(rex_job *j) {
  if (j->from)
    cn_from_free(j->from);
  cn_buf_free(&j->args);
  cn_buf_free(&j->out);
  cn_buf_free(&j->stack);
  cn_buf_free(&j->res);
  free(j);
}

/* rpc:execute_call/3's result for cn__apply's outcome, into r. */
static void rpc_result(int rc, cn_term out, cn_term stack, cn_buf *r) {
  switch (rc) {
  case CN_RETURN:
  case CN_THROW:
    cn_put_term(r, out);
    break;
  case CN_EXIT:
    cn_build(r, "{badrpc, {'EXIT', ~t}}", out);
    break;
  case CN_ERROR:
    cn_build(r, "{badrpc, {'EXIT', {~t, ~t}}}", out, stack);
    break;
  case CN_ENOENT:
    cn_build(r, "{badrpc, {'EXIT', {undef, ~t}}}", stack);
    break;
  case CN_EBADTERM:
    cn_build(r, "{badrpc, {'EXIT', {badarg, [{erlang, apply, 3, []}]}}}");
    break;
  default:
    cn_build(r, "{badrpc, {'EXIT', system_limit}}");
    break;
  }
}

static void rex_work(cn__work *w) {
  rex_job *j = (rex_job *)w;
  cn_runtime *rt = w->rt;
  int rc = j->badargs ? CN_EBADTERM
                      : cn__apply(rt, j->mod, j->fun, cn_buf_term(&j->args),
                                  &j->out, &j->stack);
  if (j->kind != R_CAST) {
    rpc_result(rc, cn_buf_term(&j->out), cn_buf_term(&j->stack), &j->res);
    if (j->res.err) {
      cn_buf_reset(&j->res);
      cn_build(&j->res, "{badrpc, {'EXIT', system_limit}}");
    }
    if (j->kind == R_CLASSIC) {
      if (cn_sendf(rt, cn_to_pid(j->to), "{rex, ~t}", cn_buf_term(&j->res)))
        cn_sendf(rt, cn_to_pid(j->to),
                 "{rex, {badrpc, {'EXIT', {message_too_large, ~u}}}}",
                 (uint64_t)cn_max_message(rt));
    } else if (cn_reply(j->from, cn_buf_term(&j->res)) == 0) {
      j->from = NULL; /* consumed */
    } else {
      /* Over max_message: the caller learns why, at once. */
      if (cn_replyf(j->from, "{badrpc, {'EXIT', {message_too_large, ~u}}}",
                    (uint64_t)cn_max_message(rt)) == 0)
        j->from = NULL;
    }
  }
  job_free(j);
}

/* Starts a job for M, F, A (terms from the request).  Takes from (R_GEN)
 * in every case. */
static void start_job(cn_proc *self, int kind, cn_pid to, cn_from *from,
                      cn_term m, cn_term f, cn_term a) {
  cn_runtime *rt = cn_proc_runtime(self);
  rex_job *j = calloc(1, sizeof(*j));
  if (!j) {
    if (from)
      cn_from_free(from);
    return;
  }
  j->work.fn = rex_work;
  j->kind = kind;
  j->to = to;
  j->from = from;
  cn_buf_init(&j->args);
  cn_buf_init(&j->out);
  cn_buf_init(&j->stack);
  cn_buf_init(&j->res);
  if (cn_get_atom(m, j->mod, sizeof(j->mod)) < 0 ||
      cn_get_atom(f, j->fun, sizeof(j->fun)) < 0 ||
      (cn_term_typeof(a) != CN_T_LIST && cn_term_typeof(a) != CN_T_NIL))
    j->badargs = 1;
  cn_put_term(&j->args, a);
  if (cn__work_start(rt, &j->work) != 0) {
    /* rpc's answer when it cannot spawn. */
    if (kind == R_CLASSIC)
      cn_sendf(rt, cn_to_pid(to), "{rex, {badrpc, {'EXIT', system_limit}}}");
    else if (kind == R_GEN && cn_replyf(from, "{badrpc, {'EXIT', "
                                              "system_limit}}") == 0)
      j->from = NULL;
    job_free(j);
  }
}

static int rex_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  cn_term m, f, a;
  cn_pid none = {0, 0, 0, 0};
  (void)state;
  if (cn_match(req, "{call, ~t, ~t, ~t, _}", &m, &f, &a) == 0 ||
      cn_match(req, "{block_call, ~t, ~t, ~t, _}", &m, &f, &a) == 0) {
    start_job(self, R_GEN, none, from, m, f, a);
    return CN_NOREPLY;
  }
  /* rpc.erl ignores other calls (the caller times out); we answer, so
   * that a mistake shows at once. */
  return cn_build(reply, "{error, unknown_call}") == 0 ? CN_REPLY : CN_STOP;
}

static int rex_cast(cn_proc *self, void *state, cn_term msg) {
  cn_term m, f, a;
  cn_pid none = {0, 0, 0, 0};
  (void)state;
  if (cn_match(msg, "{cast, ~t, ~t, ~t, _}", &m, &f, &a) == 0)
    start_job(self, R_CAST, none, NULL, m, f, a);
  return CN_NOREPLY;
}

static int rex_info(cn_proc *self, void *state, cn_term msg) {
  cn_runtime *rt = cn_proc_runtime(self);
  cn_term m, f, a;
  cn_pid pid;
  (void)state;
  if (cn_match(msg, "{~p, {call, ~t, ~t, ~t, _}}", &pid, &m, &f, &a) == 0)
    start_job(self, R_CLASSIC, pid, NULL, m, f, a);
  else if (cn_match(msg, "{~p, features_request}", &pid) == 0)
    cn_sendf(rt, cn_to_pid(pid), "{features_reply, ~a, [erpc]}",
             cn_node_name(cn_runtime_node(rt)));
  return CN_NOREPLY; /* anything else is ignored, as rpc.erl does */
}

static const cn_server_ops rex_ops = {
    .name = "rpc",
    .handle_call = rex_call,
    .handle_cast = rex_cast,
    .handle_info = rex_info,
};

int cn__rex_start(cn__dist *d) {
  cn_start_options o = {"rex", NULL};
  cn_pid pid;
  return cn_start(d->rt, &rex_ops, NULL, &o, &pid);
}
