/* pg: process groups in scopes, speaking OTP 25's pg.erl protocol with
 * the scope processes of the same name on the visible nodes.
 *
 * A scope is a process registered under the scope's name.  On start and
 * on every nodeup it sends {discover, self()} to {Scope, Node}; a peer
 * answers with a cast {sync, Peer, [{Group, Pids}]} of its local members
 * and discovers us back.  Joins and leaves go to every known peer as
 * {join, Peer, Group, PidOrPids} and {leave, Peer, PidOrPids, Groups}.
 * Each side monitors the other's scope process: its members go with it
 * (and with its node).  Local members are monitored too: one that dies
 * leaves all its groups.
 *
 * Joins and leaves are done by the scope process, as in pg.erl, so that
 * a join's broadcast and the syncs the scope sends never cross: from a
 * plain thread cn_pg_join is a call (done when it returns, as pg:join),
 * from a callback a message.  The membership table is guarded by one
 * mutex, so that cn_pg_get_members and cn_pg_which_groups read it from
 * any thread, as pg's ETS table is read. */
#include "cnode/cluster.h"
#include "dist_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct pgm {
  cn_buf group;
  cn_pid pid;
  cn_pid owner; /* the peer scope that told us; ours for local members */
  bool local;
} pgm;

typedef struct pgmon {
  cn_pid pid;
  cn_ref mref;
} pgmon;

typedef struct pgscope {
  struct pgscope *next;
  struct cn__pgs *pgs;
  char name[CN_MAX_NODE_NAME + 1];
  cn_pid pid;
  pgm *m;
  size_t n, cap;
  pgmon *peers; /* known peer scopes, monitored */
  size_t npeers;
  pgmon *lmon; /* local members, monitored (scope process only) */
  size_t nlmon;
} pgscope;

typedef struct cn__pgs {
  cn_runtime *rt;
  pthread_mutex_t mu;
  pgscope *scopes;
} cn__pgs;

static cn__pgs *pgs_of(cn_runtime *rt, bool create) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  cn__pgs *p;
  if (!d)
    return NULL;
  pthread_mutex_lock(&d->mu);
  if (!(p = d->pgs) && create && (p = calloc(1, sizeof(*p)))) {
    p->rt = rt;
    pthread_mutex_init(&p->mu, NULL);
    d->pgs = p;
  }
  pthread_mutex_unlock(&d->mu);
  return p;
}

static pgscope *scope_find(cn__pgs *p, const char *name) {
  pgscope *s;
  for (s = p ? p->scopes : NULL; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

/* ---- Members ---------------------------------------------------------- */

static int add_member(pgscope *s, cn_term group, cn_pid pid, cn_pid owner,
                      bool local) {
  pgm *e;
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    pgm *nv = realloc(s->m, cap * sizeof(*nv));
    if (!nv)
      return CN_ENOMEM;
    s->m = nv;
    s->cap = cap;
  }
  e = &s->m[s->n];
  cn_buf_init(&e->group);
  if (cn_put_term(&e->group, group) != 0) {
    cn_buf_free(&e->group);
    return CN_ENOMEM;
  }
  e->pid = pid;
  e->owner = owner;
  e->local = local;
  s->n++;
  return 0;
}

static void drop_member(pgscope *s, size_t i) {
  cn_buf_free(&s->m[i].group);
  memmove(&s->m[i], &s->m[i + 1], (s->n - i - 1) * sizeof(pgm));
  s->n--;
}

/* Removes one membership of pid in group owned by owner.  True if one
 * was there. */
static bool remove_one(pgscope *s, cn_term group, cn_pid pid, cn_pid owner) {
  size_t i;
  for (i = 0; i < s->n; i++) {
    if (cn_pid_equal(&s->m[i].pid, &pid) &&
        cn_pid_equal(&s->m[i].owner, &owner) &&
        cn_term_equal(cn_buf_term(&s->m[i].group), group)) {
      drop_member(s, i);
      return true;
    }
  }
  return false;
}

/* True if pid is in group (locally). */
static bool is_local_member(pgscope *s, cn_term group, cn_pid pid) {
  size_t i;
  for (i = 0; i < s->n; i++)
    if (s->m[i].local && cn_pid_equal(&s->m[i].pid, &pid) &&
        cn_term_equal(cn_buf_term(&s->m[i].group), group))
      return true;
  return false;
}

static void remove_owner(pgscope *s, cn_pid owner) {
  size_t i = 0;
  while (i < s->n) {
    if (!s->m[i].local && cn_pid_equal(&s->m[i].owner, &owner))
      drop_member(s, i);
    else
      i++;
  }
}

static bool has_local(pgscope *s, cn_pid pid) {
  size_t i;
  for (i = 0; i < s->n; i++)
    if (s->m[i].local && cn_pid_equal(&s->m[i].pid, &pid))
      return true;
  return false;
}

/* Adds each pid of a pid or a list of pids. */
static void add_pids(pgscope *s, cn_term group, cn_term pids, cn_pid owner) {
  cn_iter it;
  cn_term e;
  cn_pid pid;
  if (cn_get_pid(pids, &pid) == 0) {
    add_member(s, group, pid, owner, false);
    return;
  }
  if (cn_iter_init(&it, pids, NULL) != 0)
    return;
  while (cn_iter_next(&it, &e))
    if (cn_get_pid(e, &pid) == 0)
      add_member(s, group, pid, owner, false);
}

static pgmon *peer_find(pgscope *s, cn_pid pid) {
  size_t i;
  for (i = 0; i < s->npeers; i++)
    if (cn_pid_equal(&s->peers[i].pid, &pid))
      return &s->peers[i];
  return NULL;
}

static pgmon *peer_add(pgscope *s, cn_pid pid) {
  pgmon *nv = realloc(s->peers, (s->npeers + 1) * sizeof(*nv));
  if (!nv)
    return NULL;
  s->peers = nv;
  nv = &s->peers[s->npeers];
  nv->pid = pid;
  if (cn_monitor(s->pgs->rt, cn_to_pid(pid), &nv->mref) != 0)
    return NULL;
  s->npeers++;
  return nv;
}

static void broadcast(pgscope *s, cn_buf *msg) {
  size_t i;
  for (i = 0; i < s->npeers; i++)
    cn_send(s->pgs->rt, cn_to_pid(s->peers[i].pid), cn_buf_term(msg));
}

/* all_local_pids/1: [{Group, [Pid]}] */
static int all_local(pgscope *s, cn_buf *b) {
  size_t i, j, k, ng = 0;
  size_t *firsts = s->n ? malloc(s->n * sizeof(size_t)) : NULL;
  if (s->n && !firsts)
    return CN_ENOMEM;
  for (i = 0; i < s->n; i++) {
    if (!s->m[i].local)
      continue;
    for (j = 0; j < ng; j++)
      if (cn_term_equal(cn_buf_term(&s->m[firsts[j]].group),
                        cn_buf_term(&s->m[i].group)))
        break;
    if (j == ng)
      firsts[ng++] = i;
  }
  cn_put_list(b, (uint32_t)ng);
  for (j = 0; j < ng; j++) {
    cn_term g = cn_buf_term(&s->m[firsts[j]].group);
    size_t cnt = 0;
    for (k = 0; k < s->n; k++)
      cnt += s->m[k].local && cn_term_equal(cn_buf_term(&s->m[k].group), g);
    cn_put_tuple(b, 2);
    cn_put_term(b, g);
    cn_put_list(b, (uint32_t)cnt);
    for (k = 0; k < s->n; k++)
      if (s->m[k].local && cn_term_equal(cn_buf_term(&s->m[k].group), g))
        cn_put_pid(b, &s->m[k].pid);
    cn_put_nil(b);
  }
  cn_put_nil(b);
  free(firsts);
  return b->err;
}

/* join in the scope process: the table, the broadcast and the monitor,
 * in one step, so that no sync goes between them (as pg.erl, where the
 * scope process does all three). */
static int do_join(pgscope *s, cn_term group, cn_pid pid) {
  cn_buf b = CN_BUF_INIT;
  bool first = !has_local(s, pid);
  int rc;
  if ((rc = add_member(s, group, pid, s->pid, true)) != 0)
    return rc;
  cn_put_tuple(&b, 4);
  cn_put_atom(&b, "join");
  cn_put_pid(&b, &s->pid);
  cn_put_term(&b, group);
  cn_put_pid(&b, &pid);
  if (!b.err)
    broadcast(s, &b);
  cn_buf_free(&b);
  if (first) {
    pgmon *nv = realloc(s->lmon, (s->nlmon + 1) * sizeof(*nv));
    if (nv) {
      s->lmon = nv;
      nv[s->nlmon].pid = pid;
      if (cn_monitor(s->pgs->rt, cn_to_pid(pid), &nv[s->nlmon].mref) == 0)
        s->nlmon++;
    }
  }
  return 0;
}

static int do_leave(pgscope *s, cn_term group, cn_pid pid) {
  cn_buf b = CN_BUF_INIT;
  size_t i;
  if (!remove_one(s, group, pid, s->pid))
    return CN_ENOENT;
  cn_put_tuple(&b, 4);
  cn_put_atom(&b, "leave");
  cn_put_pid(&b, &s->pid);
  cn_put_pid(&b, &pid);
  cn_put_list(&b, 1);
  cn_put_term(&b, group);
  cn_put_nil(&b);
  if (!b.err)
    broadcast(s, &b);
  cn_buf_free(&b);
  if (!has_local(s, pid))
    for (i = 0; i < s->nlmon; i++)
      if (cn_pid_equal(&s->lmon[i].pid, &pid)) {
        cn_demonitor(s->pgs->rt, &s->lmon[i].mref, true);
        s->lmon[i] = s->lmon[--s->nlmon];
        break;
      }
  return 0;
}

/* Calls from cn_pg_join and cn_pg_leave on plain threads. */
static int scope_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                      cn_buf *reply) {
  pgscope *s = state;
  cn_term group;
  cn_pid pid;
  int rc = CN_EINVAL;
  (void)self;
  (void)from;
  pthread_mutex_lock(&s->pgs->mu);
  if (cn_match(req, "{'$cn_pg_join', ~t, ~p}", &group, &pid) == 0)
    rc = do_join(s, group, pid);
  else if (cn_match(req, "{'$cn_pg_leave', ~t, ~p}", &group, &pid) == 0)
    rc = do_leave(s, group, pid);
  pthread_mutex_unlock(&s->pgs->mu);
  return cn_put_int(reply, rc) == 0 ? CN_REPLY : CN_STOP;
}

/* ---- The scope process ------------------------------------------------ */

static int scope_init(cn_proc *self, void *arg, void **state) {
  pgscope *s = arg;
  const char *names[1024];
  size_t i, n;
  cn_buf b = CN_BUF_INIT;
  s->pid = cn_proc_pid(self);
  cn_dist_monitor_nodes(s->pgs->rt, s->pid, true, 0);
  n = cn_dist_nodes_of(s->pgs->rt, 0, names, 1024);
  if (cn_build(&b, "{discover, ~p}", &s->pid) == 0)
    for (i = 0; i < n && i < 1024; i++)
      cn_send(s->pgs->rt, cn_to_remote(s->name, names[i]), cn_buf_term(&b));
  cn_buf_free(&b);
  *state = s;
  return CN_NOREPLY;
}

static int scope_cast(cn_proc *self, void *state, cn_term msg) {
  pgscope *s = state;
  cn_term peer, groups, e, g, pids;
  cn_pid ppid;
  cn_iter it;
  (void)self;
  if (cn_match(msg, "{sync, ~t, ~t}", &peer, &groups) != 0 ||
      cn_get_pid(peer, &ppid) != 0)
    return CN_NOREPLY;
  pthread_mutex_lock(&s->pgs->mu);
  if (peer_find(s, ppid) || peer_add(s, ppid)) {
    remove_owner(s, ppid);
    if (cn_iter_init(&it, groups, NULL) == 0)
      while (cn_iter_next(&it, &e))
        if (cn_match(e, "{~t, ~t}", &g, &pids) == 0)
          add_pids(s, g, pids, ppid);
  }
  pthread_mutex_unlock(&s->pgs->mu);
  return CN_NOREPLY;
}

static void local_down(pgscope *s, cn_pid pid) {
  cn_buf groups = CN_BUF_INIT, b = CN_BUF_INIT;
  size_t i = 0, n = 0;
  while (i < s->n) {
    if (s->m[i].local && cn_pid_equal(&s->m[i].pid, &pid)) {
      cn_put_term(&groups, cn_buf_term(&s->m[i].group));
      n++;
      drop_member(s, i);
    } else {
      i++;
    }
  }
  if (n) {
    cn_put_tuple(&b, 4);
    cn_put_atom(&b, "leave");
    cn_put_pid(&b, &s->pid);
    cn_put_pid(&b, &pid);
    cn_put_list(&b, (uint32_t)n);
    cn_buf_append(&b, groups.data, groups.len);
    cn_put_nil(&b);
    if (!b.err && !groups.err)
      broadcast(s, &b);
  }
  cn_buf_free(&groups);
  cn_buf_free(&b);
}

static int scope_info(cn_proc *self, void *state, cn_term msg) {
  pgscope *s = state;
  cn_runtime *rt = s->pgs->rt;
  cn_term t1, t2, t3;
  cn_pid pid;
  cn_ref ref;
  char node[CN_MAX_NODE_NAME + 1];
  cn_buf b = CN_BUF_INIT;
  size_t i;
  (void)self;
  pthread_mutex_lock(&s->pgs->mu);
  if (cn_match(msg, "{discover, ~p}", &pid) == 0) {
    cn_put_tuple(&b, 3);
    cn_put_atom(&b, "sync");
    cn_put_pid(&b, &s->pid);
    all_local(s, &b);
    if (!b.err)
      cn_cast(rt, cn_to_pid(pid), cn_buf_term(&b));
    if (!peer_find(s, pid) && peer_add(s, pid)) {
      cn_buf_reset(&b);
      if (cn_build(&b, "{discover, ~p}", &s->pid) == 0)
        cn_send(rt, cn_to_pid(pid), cn_buf_term(&b));
    }
  } else if (cn_match(msg, "{join, ~p, ~t, ~t}", &pid, &t1, &t2) == 0) {
    if (peer_find(s, pid))
      add_pids(s, t1, t2, pid);
  } else if (cn_match(msg, "{leave, ~p, ~t, ~t}", &pid, &t1, &t2) == 0) {
    if (peer_find(s, pid)) {
      cn_iter gi, pi;
      cn_term grp, p;
      cn_pid m;
      if (cn_iter_init(&gi, t2, NULL) == 0)
        while (cn_iter_next(&gi, &grp)) {
          if (cn_get_pid(t1, &m) == 0)
            remove_one(s, grp, m, pid);
          else if (cn_iter_init(&pi, t1, NULL) == 0)
            while (cn_iter_next(&pi, &p))
              if (cn_get_pid(p, &m) == 0)
                remove_one(s, grp, m, pid);
        }
    }
  } else if (cn_match(msg, "{'DOWN', ~r, process, ~p, _}", &ref, &pid) == 0) {
    if (pid.node == cn_runtime_node(rt)) {
      for (i = 0; i < s->nlmon; i++)
        if (cn_ref_equal(&s->lmon[i].mref, &ref)) {
          s->lmon[i] = s->lmon[--s->nlmon];
          local_down(s, pid);
          break;
        }
    } else {
      for (i = 0; i < s->npeers; i++)
        if (cn_ref_equal(&s->peers[i].mref, &ref)) {
          s->peers[i] = s->peers[--s->npeers];
          remove_owner(s, pid);
          break;
        }
    }
  } else if (cn_match(msg, "{nodeup, ~a}", node, sizeof(node)) == 0) {
    if (cn_build(&b, "{discover, ~p}", &s->pid) == 0)
      cn_send(rt, cn_to_remote(s->name, node), cn_buf_term(&b));
  } else if (cn_match(msg, "{'$cn_pg_join', ~t, ~p}", &t1, &pid) == 0 &&
             pid.node == cn_runtime_node(rt)) {
    do_join(s, t1, pid);
  } else if (cn_match(msg, "{'$cn_pg_leave', ~t, ~p}", &t1, &pid) == 0 &&
             pid.node == cn_runtime_node(rt)) {
    do_leave(s, t1, pid);
  }
  (void)t3;
  pthread_mutex_unlock(&s->pgs->mu);
  cn_buf_free(&b);
  return CN_NOREPLY;
}

static void scope_free(void *state) {
  pgscope *s = state;
  cn__pgs *p = s->pgs;
  pgscope **pp;
  pthread_mutex_lock(&p->mu);
  for (pp = &p->scopes; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  pthread_mutex_unlock(&p->mu);
  while (s->n)
    drop_member(s, s->n - 1);
  free(s->m);
  free(s->peers);
  free(s->lmon);
  free(s);
}

static const cn_server_ops scope_ops = {
    .name = "pg",
    .init = scope_init,
    .handle_call = scope_call,
    .handle_cast = scope_cast,
    .handle_info = scope_info,
    .free_state = scope_free,
};

void cn__pg_free(cn__dist *d) {
  cn__pgs *p = d->pgs;
  pgscope *s;
  if (!p)
    return;
  /* Scopes whose process never ran free_state (a runtime killed before
   * they exited) are freed here. */
  while ((s = p->scopes)) {
    p->scopes = s->next;
    while (s->n)
      drop_member(s, s->n - 1);
    free(s->m);
    free(s->peers);
    free(s->lmon);
    free(s);
  }
  pthread_mutex_destroy(&p->mu);
  free(p);
  d->pgs = NULL;
}

/* ---- The public calls ------------------------------------------------- */

int cn_pg_start_scope(cn_runtime *rt, const char *scope) {
  cn__pgs *p;
  pgscope *s;
  cn_start_options o = {scope, NULL};
  cn_pid pid;
  int rc;
  if (!rt || !scope || !*scope || strlen(scope) > CN_MAX_NODE_NAME)
    return CN_EINVAL;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  if (!(p = pgs_of(rt, true)))
    return cn__dist_of(rt) ? CN_ENOMEM : CN_ENOTSUP;
  if (!(s = calloc(1, sizeof(*s))))
    return CN_ENOMEM;
  s->pgs = p;
  strcpy(s->name, scope);
  pthread_mutex_lock(&p->mu);
  if (scope_find(p, scope)) {
    pthread_mutex_unlock(&p->mu);
    free(s);
    return CN_EEXIST;
  }
  s->next = p->scopes;
  p->scopes = s;
  pthread_mutex_unlock(&p->mu);
  if ((rc = cn_start(rt, &scope_ops, s, &o, &pid)) != 0) {
    pgscope **pp;
    pthread_mutex_lock(&p->mu);
    for (pp = &p->scopes; *pp; pp = &(*pp)->next)
      if (*pp == s) {
        *pp = s->next;
        break;
      }
    pthread_mutex_unlock(&p->mu);
    free(s);
  }
  return rc;
}

/* Hands a join or leave to the scope process: a call from a plain thread
 * (so that it is done when this returns, as pg:join), a message from a
 * callback (which must not block; done once the scope takes it). */
static int to_scope(cn_runtime *rt, const char *scope, const char *what,
                    cn_term group, cn_pid pid) {
  cn__pgs *p = pgs_of(rt, false);
  pgscope *s;
  cn_pid spid = {0, 0, 0, 0};
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  size_t off = 0;
  int64_t v;
  int rc;
  if (!rt || !scope || !group.len || pid.node != cn_runtime_node(rt) ||
      cn_term_validate(group.ptr, group.len, &off, NULL) != 0 ||
      off != group.len)
    return CN_EINVAL;
  if (!p)
    return CN_ENOENT;
  pthread_mutex_lock(&p->mu);
  if ((s = scope_find(p, scope)))
    spid = s->pid;
  /* A leave of what was never joined says so at once, from anywhere. */
  if (s && strcmp(what, "$cn_pg_leave") == 0 && !is_local_member(s, group, pid))
    s = NULL;
  pthread_mutex_unlock(&p->mu);
  if (!s || !spid.id)
    return CN_ENOENT;
  if ((rc = cn_build(&req, "{~a, ~t, ~p}", what, group, &pid)) != 0)
    return rc;
  if (cn__current()) {
    rc = cn_send(rt, cn_to_pid(spid), cn_buf_term(&req));
  } else if ((rc = cn_call(rt, cn_to_pid(spid), cn_buf_term(&req), CN_INFINITY,
                           &reply)) == 0) {
    rc = cn_get_int64(cn_buf_term(&reply), &v) == 0 ? (int)v : CN_EPROTO;
  }
  cn_buf_free(&req);
  cn_buf_free(&reply);
  return rc;
}

int cn_pg_join(cn_runtime *rt, const char *scope, cn_term group, cn_pid pid) {
  return to_scope(rt, scope, "$cn_pg_join", group, pid);
}

int cn_pg_leave(cn_runtime *rt, const char *scope, cn_term group, cn_pid pid) {
  return to_scope(rt, scope, "$cn_pg_leave", group, pid);
}

size_t cn_pg_get_members(cn_runtime *rt, const char *scope, cn_term group,
                         bool local_only, cn_pid *pids, size_t cap) {
  cn__pgs *p = pgs_of(rt, false);
  pgscope *s;
  size_t i, n = 0;
  if (!p || !scope || !group.len)
    return 0;
  pthread_mutex_lock(&p->mu);
  if ((s = scope_find(p, scope))) {
    for (i = 0; i < s->n; i++) {
      if ((local_only && !s->m[i].local) ||
          !cn_term_equal(cn_buf_term(&s->m[i].group), group))
        continue;
      if (n < cap && pids)
        pids[n] = s->m[i].pid;
      n++;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return n;
}

int cn_pg_which_groups(cn_runtime *rt, const char *scope, cn_buf *out) {
  cn__pgs *p = pgs_of(rt, false);
  pgscope *s;
  size_t i, j, ng = 0, *firsts;
  int rc = 0;
  if (!scope || !out)
    return CN_EINVAL;
  if (!p)
    return CN_ENOENT;
  pthread_mutex_lock(&p->mu);
  if (!(s = scope_find(p, scope))) {
    pthread_mutex_unlock(&p->mu);
    return CN_ENOENT;
  }
  firsts = s->n ? malloc(s->n * sizeof(size_t)) : NULL;
  if (s->n && !firsts) {
    pthread_mutex_unlock(&p->mu);
    return CN_ENOMEM;
  }
  for (i = 0; i < s->n; i++) {
    for (j = 0; j < ng; j++)
      if (cn_term_equal(cn_buf_term(&s->m[firsts[j]].group),
                        cn_buf_term(&s->m[i].group)))
        break;
    if (j == ng)
      firsts[ng++] = i;
  }
  cn_put_list(out, (uint32_t)ng);
  for (j = 0; j < ng; j++)
    cn_put_term(out, cn_buf_term(&s->m[firsts[j]].group));
  cn_put_nil(out);
  rc = out->err;
  pthread_mutex_unlock(&p->mu);
  free(firsts);
  return rc;
}
