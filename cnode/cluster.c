/* cnode: the cluster server (module cnode_cluster, registered as
 * cnode_cluster), started on a node with distribution.
 *
 * It puts global and pg (cnode/cluster.h) within reach of a BEAM shell
 * or test, without rpc: C processes to register and join, and the C
 * view of global's names and pg's groups.
 *
 * Calls:
 *   spawn_member                  -> {ok, Pid}: a new member process,
 *                                    which keeps every message it gets
 *   {global_register, Name, Pid}  -> yes | no  (cn_global_register)
 *   {global_unregister, Name}     -> ok
 *   {global_whereis, Name}        -> Pid | undefined (cn_global_whereis)
 *   global_names                  -> [Name]
 *   global_sync                   -> ok | {error, timeout}
 *   {pg_start_scope, Scope}       -> ok | {error, Code}
 *   {pg_join, Scope, Group, Pid}  -> ok | {error, Code}
 *   {pg_leave, Scope, Group, Pid} -> ok | not_joined
 *   {pg_members, Scope, Group}    -> [Pid]
 *   {pg_local_members, Scope, Group} -> [Pid]
 *   {pg_which_groups, Scope}      -> [Group]
 *   anything else                 -> {error, unknown_call}
 * Member processes answer gen_server:call(Pid, received) with the
 * messages they got, oldest first, and stop (then exit normal).
 *
 * The calls that block (global registration takes global's lock on every
 * node; starting a scope) run on a thread of their own, which answers
 * with cn_reply: the server goes on serving meanwhile.
 */
#include "servers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Members ---------------------------------------------------------- */

typedef struct member {
  cn_buf got; /* the messages, each one term, back to back */
  size_t n;
} member;

static int member_init(cn_proc *self, void *arg, void **state) {
  member *m = calloc(1, sizeof(*m));
  (void)self;
  (void)arg;
  if (!m)
    return CN_STOP;
  *state = m;
  return CN_NOREPLY;
}

static int member_info(cn_proc *self, void *state, cn_term msg) {
  member *m = state;
  (void)self;
  if (cn_put_term(&m->got, msg) == 0)
    m->n++;
  return CN_NOREPLY;
}

static int received_list(const member *m, cn_buf *reply) {
  cn_put_list(reply, (uint32_t)m->n);
  cn_buf_append(reply, m->got.data, m->got.len);
  cn_put_nil(reply);
  return reply->err;
}

static int member_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                       cn_buf *reply) {
  (void)self;
  (void)from;
  if (cn_is_atom(req, "stop"))
    return cn_put_atom(reply, "ok") == 0 ? CN_STOP_REPLY : CN_STOP;
  if (cn_is_atom(req, "received"))
    return received_list(state, reply) == 0 ? CN_REPLY : CN_STOP;
  return cn_build(reply, "{error, unknown_call}") == 0 ? CN_REPLY : CN_STOP;
}

static void member_free(void *state) {
  member *m = state;
  cn_buf_free(&m->got);
  free(m);
}

static const cn_server_ops member_ops = {
    .name = "cnode_cluster_member",
    .init = member_init,
    .handle_call = member_call,
    .handle_info = member_info,
    .free_state = member_free,
};

/* ---- Blocking requests on a thread ------------------------------------ */

typedef struct cluster {
  cn_runtime *rt;
  atomic_int threads; /* in flight; terminate waits for them */
} cluster;

typedef struct job {
  cluster *cl;
  cn_from *from;
  cn_buf req;
} job;

static void *job_run(void *arg) {
  job *j = arg;
  cn_runtime *rt = j->cl->rt;
  cn_term req = cn_buf_term(&j->req);
  char name[256];
  cn_pid pid;
  int rc;
  if (cn_match(req, "{global_register, ~a, ~p}", name, sizeof(name), &pid) ==
      0) {
    rc = cn_global_register(rt, name, pid);
    cn_replyf(j->from, rc == 0 ? "yes" : "no");
  } else if (cn_match(req, "{global_unregister, ~a}", name, sizeof(name)) ==
             0) {
    cn_global_unregister(rt, name);
    cn_replyf(j->from, "ok");
  } else if (cn_is_atom(req, "global_sync")) {
    rc = cn_global_sync(rt, 10000);
    cn_replyf(j->from, rc == 0 ? "ok" : "{error, timeout}");
  } else if (cn_match(req, "{pg_start_scope, ~a}", name, sizeof(name)) == 0) {
    rc = cn_pg_start_scope(rt, name);
    if (rc == 0)
      cn_replyf(j->from, "ok");
    else
      cn_replyf(j->from, "{error, ~a}", cn_err_name(rc));
  } else {
    cn_replyf(j->from, "{error, unknown_call}");
  }
  cn_buf_free(&j->req);
  atomic_fetch_sub(&j->cl->threads, 1);
  free(j);
  return NULL;
}

static int start_job(cluster *cl, cn_term req, cn_from *from) {
  job *j = calloc(1, sizeof(*j));
  pthread_t th;
  if (!j || cn_put_term(&j->req, req) != 0) {
    if (j)
      cn_buf_free(&j->req);
    free(j);
    return CN_ENOMEM;
  }
  j->cl = cl;
  j->from = from;
  atomic_fetch_add(&cl->threads, 1);
  if (pthread_create(&th, NULL, job_run, j) != 0) {
    atomic_fetch_sub(&cl->threads, 1);
    cn_buf_free(&j->req);
    free(j);
    return CN_ESYSTEM;
  }
  pthread_detach(th);
  return 0;
}

/* ---- The server ------------------------------------------------------- */

static int cluster_init(cn_proc *self, void *arg, void **state) {
  cluster *cl = calloc(1, sizeof(*cl));
  (void)arg;
  if (!cl)
    return CN_STOP;
  cl->rt = cn_proc_runtime(self);
  cn_trap_exit(self, true, NULL);
  *state = cl;
  return CN_NOREPLY;
}

static int pids_reply(cn_buf *reply, const cn_pid *pids, size_t n) {
  size_t i;
  cn_put_list(reply, (uint32_t)n);
  for (i = 0; i < n; i++)
    cn_put_pid(reply, &pids[i]);
  cn_put_nil(reply);
  return reply->err;
}

#define MAX_MEMBERS 4096

static int cluster_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                        cn_buf *reply) {
  cluster *cl = state;
  cn_runtime *rt = cl->rt;
  char scope[256];
  cn_term group;
  cn_pid pid;
  int rc;
  (void)self;
  if (cn_is_atom(req, "spawn_member")) {
    rc = cn_start(rt, &member_ops, NULL, NULL, &pid);
    rc = rc == 0 ? cn_build(reply, "{ok, ~p}", &pid)
                 : cn_build(reply, "{error, ~a}", cn_err_name(rc));
  } else if (cn_match(req, "{global_register, _, _}") == 0 ||
             cn_match(req, "{global_unregister, _}") == 0 ||
             cn_is_atom(req, "global_sync") ||
             cn_match(req, "{pg_start_scope, _}") == 0) {
    if ((rc = start_job(cl, req, from)) == 0)
      return CN_NOREPLY;
    rc = cn_build(reply, "{error, ~a}", cn_err_name(rc));
  } else if (cn_match(req, "{global_whereis, ~t}", &group) == 0) {
    rc = cn_global_whereis_term(rt, group, &pid) == 0
             ? cn_put_pid(reply, &pid)
             : cn_put_atom(reply, "undefined");
  } else if (cn_is_atom(req, "global_names")) {
    rc = cn_global_registered_names(rt, reply);
    if (rc != 0)
      rc = cn_put_nil(reply);
  } else if (cn_match(req, "{pg_join, ~a, ~t, ~p}", scope, sizeof(scope),
                      &group, &pid) == 0) {
    rc = cn_pg_join(rt, scope, group, pid);
    rc = rc == 0 ? cn_put_atom(reply, "ok")
                 : cn_build(reply, "{error, ~a}", cn_err_name(rc));
  } else if (cn_match(req, "{pg_leave, ~a, ~t, ~p}", scope, sizeof(scope),
                      &group, &pid) == 0) {
    rc = cn_put_atom(
        reply, cn_pg_leave(rt, scope, group, pid) == 0 ? "ok" : "not_joined");
  } else if (cn_match(req, "{pg_members, ~a, ~t}", scope, sizeof(scope),
                      &group) == 0 ||
             cn_match(req, "{pg_local_members, ~a, ~t}", scope, sizeof(scope),
                      &group) == 0) {
    cn_pid *pids = malloc(MAX_MEMBERS * sizeof(*pids));
    bool local = cn_match(req, "{pg_local_members, _, _}") == 0;
    size_t n =
        pids ? cn_pg_get_members(rt, scope, group, local, pids, MAX_MEMBERS)
             : 0;
    rc = pids_reply(reply, pids, n < MAX_MEMBERS ? n : MAX_MEMBERS);
    free(pids);
  } else if (cn_match(req, "{pg_which_groups, ~a}", scope, sizeof(scope)) ==
             0) {
    if (cn_pg_which_groups(rt, scope, reply) != 0)
      rc = cn_put_nil(reply);
    else
      rc = 0;
  } else {
    rc = cn_build(reply, "{error, unknown_call}");
  }
  return rc == 0 ? CN_REPLY : CN_STOP;
}

static void cluster_terminate(cn_proc *self, void *state, cn_term reason) {
  cluster *cl = state;
  int i;
  (void)self;
  (void)reason;
  /* Its threads answer callers through it: wait for them, a while. */
  for (i = 0; i < 2000 && atomic_load(&cl->threads); i++)
    usleep(10000);
}

static void cluster_free(void *state) {
  cluster *cl = state;
  /* A thread still running keeps cl: leak it rather than free it under
   * the thread (only after terminate gave up on it). */
  if (atomic_load(&cl->threads) == 0)
    free(cl);
}

const cn_server_ops cluster_server_ops = {
    .name = "cnode_cluster",
    .init = cluster_init,
    .handle_call = cluster_call,
    .terminate = cluster_terminate,
    .free_state = cluster_free,
};
