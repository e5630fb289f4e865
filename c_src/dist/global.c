/* global: the node's global_name_server and its locker, speaking OTP 25's
 * global protocol (kernel's global.erl, protocol version 8) with the
 * global_name_servers of the other visible nodes.
 *
 * The shape follows global.erl, function by function, so that the two
 * can be read side by side:
 *   - the server (a process registered as global_name_server) keeps the
 *     known nodes, the names and the locks, answers the other nodes'
 *     set_lock, del_lock, register and unregister calls, and runs the
 *     connect protocol on every nodeup: init_connect, the lockers taking
 *     the lock {global, [LockerA, LockerB]} in both partitions, exchange
 *     of names, resolved, then new_nodes to the rest of the partition and
 *     in_sync to the nodes newly met, which connect to each other;
 *   - the locker (the_locker in global.erl) is a plain thread with its
 *     own pid, because its protocol is a sequence of blocking multi_calls
 *     and selective receives, which read the same in C as in Erlang;
 *   - the resolver runs inline in the server (exchange_names is local).
 * The tables the locker reads (can_set_lock) are guarded by g->mu, which
 * the server holds while it handles a message.
 *
 * Name conflicts: see exchange_names (the default method is run here for
 * our own processes; others would need an rpc).  Global groups (global_group)
 * are not supported: this node is in no group, as a node without the
 * global_groups parameter. */
#include "cnode/cluster.h"
#include "dist_internal.h"
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GVSN 8        /* global.erl's ?vsn */
#define POP_VSN 7     /* ?pop_vsn: lost_connection */
#define VERIFY_VSN 8  /* ?verify_connect_vsn */
#define CALL_MS 15000 /* a multi_call's wait for one node */
#define GNS "global_name_server"

typedef struct gnode {
  uint32_t node;
  bool known;
  int64_t vsn; /* in Known: Node => Vsn */
  bool pending;
  int64_t pvsn; /* {pending, Node} => Vsn */
  bool removing;
  bool has_my, has_his, resolver, has_pre, has_vsn;
  int64_t my_tag, his_tag, res_tag; /* sync_tag_my, sync_tag_his */
  int wait_lock;                    /* 0, WL_LOCK_IS_SET or WL_EXCHANGE */
  cn_buf wl_names;                  /* WL_EXCHANGE: his NameList */
  int save_ops;                     /* 0, SO_OPS or SO_RESOLVED */
  cn_buf so_ops, so_known, so_ext, so_res;
  int64_t pre_vsn, pre_tag; /* pre_connect */
  cn_buf pre_msg;
  int64_t prot_vsn;
  cn_buf lock_id;
  bool synced;
} gnode;

enum { WL_LOCK_IS_SET = 1, WL_EXCHANGE };
enum { SO_OPS = 1, SO_RESOLVED };

typedef struct gname {
  cn_buf name, method;
  cn_pid pid;
  cn_ref mref;
  bool ext;
  uint32_t regnode;
} gname;

typedef struct gholder {
  cn_pid pid;
  cn_ref mref;
} gholder;

typedef struct glock {
  cn_buf rid, req;
  gholder *h;
  size_t n;
} glock;

typedef struct glost {
  uint32_t a, b;
  cn_buf xcre;
  int64_t opid;
} glost;

typedef struct cn__global {
  cn__dist *d;
  cn_runtime *rt;
  uint32_t self; /* our node */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  cn_pid gns, locker;
  bool locker_ready;
  pthread_t thread;
  bool thread_started;
  _Atomic int stop;
  gnode **nodes;
  size_t n_nodes;
  gname *names;
  size_t n_names;
  glock *locks;
  size_t n_locks;
  glost *lost;
  size_t n_lost;
  bool global_lock_down;
  int64_t next_tag;
  int64_t xcre;
} cn__global;

static cn__global *global_of(cn_runtime *rt) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  return d ? d->global : NULL;
}

static const char *nn(uint32_t node) { return cn_node_name(node); }

static int get_node(cn_term t, uint32_t *idx) {
  char name[CN_MAX_NODE_NAME + 1];
  if (cn_get_atom(t, name, sizeof(name)) != 0 || !strchr(name, '@'))
    return CN_EINVAL;
  return cn_node_intern(name, strlen(name), idx);
}

static void glog(cn__global *g, cn_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void glog(cn__global *g, cn_log_level lvl, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  cn__logf(g->rt, lvl, "cnode global", "%s", line);
}

/* ---- Node state ------------------------------------------------------- */

static gnode *gn_find(cn__global *g, uint32_t node) {
  size_t i;
  for (i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->node == node)
      return g->nodes[i];
  return NULL;
}

static gnode *gn_get(cn__global *g, uint32_t node) {
  gnode *n = gn_find(g, node), **nv;
  if (n)
    return n;
  if (!(nv = realloc(g->nodes, (g->n_nodes + 1) * sizeof(*nv))))
    return NULL;
  g->nodes = nv;
  if (!(n = calloc(1, sizeof(*n))))
    return NULL;
  n->node = node;
  g->nodes[g->n_nodes++] = n;
  return n;
}

/* reset_node_state/1 */
static void reset_node_state(gnode *n) {
  n->wait_lock = 0;
  cn_buf_free(&n->wl_names);
  n->save_ops = 0;
  cn_buf_free(&n->so_ops);
  cn_buf_free(&n->so_known);
  cn_buf_free(&n->so_ext);
  cn_buf_free(&n->so_res);
  n->has_pre = false;
  cn_buf_free(&n->pre_msg);
  n->has_vsn = false;
  n->has_my = n->has_his = false;
  cn_buf_free(&n->lock_id);
}

static int64_t node_vsn(cn__global *g, uint32_t node) {
  gnode *n = gn_find(g, node);
  if (node == g->self)
    return GVSN;
  if (n && n->known)
    return n->vsn;
  if (n && n->pending)
    return n->pvsn;
  return 0;
}

/* A tag as global.erl keeps it: an integer, or undefined. */
static int put_tag(cn_buf *b, bool has, int64_t tag) {
  return has ? cn_put_int(b, tag) : cn_put_atom(b, "undefined");
}

static bool tag_is(cn_term t, bool has, int64_t tag) {
  int64_t v;
  return has && cn_get_int64(t, &v) == 0 && v == tag;
}

static bool node_is_up(cn__global *g, uint32_t node) {
  const char *names[256];
  size_t i, n = cn_dist_nodes_of(g->rt, CN_NODES_ALL, names, 256);
  for (i = 0; i < n && i < 256; i++)
    if (strcmp(names[i], nn(node)) == 0)
      return true;
  return false;
}

static int gns_cast(cn__global *g, uint32_t node, cn_buf *msg) {
  return cn_cast(g->rt, cn_to_remote(GNS, nn(node)), cn_buf_term(msg));
}

/* gns_volatile_send/2: never brings a connection up. */
static void volatile_send(cn__global *g, uint32_t node, cn_buf *msg) {
  if (node_is_up(g, node))
    cn_send(g->rt, cn_to_remote(GNS, nn(node)), cn_buf_term(msg));
}

/* mk_known_list/2 (version 7 and later): [{Node, Vsn}]. */
static int known_list(cn__global *g, cn_buf *b) {
  size_t i, n = 0;
  for (i = 0; i < g->n_nodes; i++)
    n += g->nodes[i]->known;
  cn_put_list(b, (uint32_t)n);
  for (i = 0; i < g->n_nodes; i++) {
    if (!g->nodes[i]->known)
      continue;
    cn_put_tuple(b, 2);
    cn_put_atom(b, nn(g->nodes[i]->node));
    cn_put_int(b, g->nodes[i]->vsn);
  }
  cn_put_nil(b);
  return b->err;
}

/* ---- Names and locks -------------------------------------------------- */

static gname *name_find(cn__global *g, cn_term name) {
  size_t i;
  for (i = 0; i < g->n_names; i++)
    if (cn_term_equal(cn_buf_term(&g->names[i].name), name))
      return &g->names[i];
  return NULL;
}

static void name_drop(cn__global *g, gname *e) {
  cn_buf_free(&e->name);
  cn_buf_free(&e->method);
  *e = g->names[--g->n_names];
}

/* delete_global_name2/2 */
static void delete_global_name(cn__global *g, cn_term name) {
  gname *e = name_find(g, name);
  if (!e)
    return;
  cn_demonitor(g->rt, &e->mref, true);
  name_drop(g, e);
}

static glock *lock_find(cn__global *g, cn_term rid) {
  size_t i;
  for (i = 0; i < g->n_locks; i++)
    if (cn_term_equal(cn_buf_term(&g->locks[i].rid), rid))
      return &g->locks[i];
  return NULL;
}

static void lock_drop(cn__global *g, glock *l) {
  cn_buf_free(&l->rid);
  cn_buf_free(&l->req);
  free(l->h);
  *l = g->locks[--g->n_locks];
}

/* can_set_lock/1: 1 (free, or held with the same requester id), 0. */
static int can_set_lock(cn__global *g, cn_term rid, cn_term req) {
  glock *l = lock_find(g, rid);
  return !l || cn_term_equal(cn_buf_term(&l->req), req);
}

static bool global_lock_set(cn__global *g) {
  size_t i;
  for (i = 0; i < g->n_locks; i++)
    if (cn_is_atom(cn_buf_term(&g->locks[i].rid), "global"))
      return true;
  return false;
}

/* handle_set_lock/3 */
static bool handle_set_lock(cn__global *g, cn_term rid, cn_term req,
                            cn_pid pid) {
  glock *l = lock_find(g, rid);
  gholder *nh;
  size_t i;
  if (l && !cn_term_equal(cn_buf_term(&l->req), req))
    return false;
  if (!l) {
    glock *nv = realloc(g->locks, (g->n_locks + 1) * sizeof(*nv));
    if (!nv)
      return false;
    g->locks = nv;
    l = &g->locks[g->n_locks];
    memset(l, 0, sizeof(*l));
    cn_put_term(&l->rid, rid);
    cn_put_term(&l->req, req);
    if (l->rid.err || l->req.err) {
      cn_buf_free(&l->rid);
      cn_buf_free(&l->req);
      return false;
    }
    g->n_locks++;
  }
  for (i = 0; i < l->n; i++)
    if (cn_pid_equal(&l->h[i].pid, &pid))
      return true;
  if (!(nh = realloc(l->h, (l->n + 1) * sizeof(*nh))))
    return false;
  l->h = nh;
  l->h[l->n].pid = pid;
  if (cn_monitor(g->rt, cn_to_pid(pid), &l->h[l->n].mref) != 0)
    memset(&l->h[l->n].mref, 0, sizeof(cn_ref));
  l->n++;
  return true;
}

/* remove_lock/6: holder i of l goes. */
static void remove_holder(cn__global *g, glock *l, size_t i, bool down) {
  if (!down)
    cn_demonitor(g->rt, &l->h[i].mref, true);
  l->h[i] = l->h[--l->n];
  if (l->n == 0) {
    if (cn_is_atom(cn_buf_term(&l->rid), "global"))
      g->global_lock_down = down;
    lock_drop(g, l);
  }
}

/* handle_del_lock/3 */
static void handle_del_lock(cn__global *g, cn_term rid, cn_term req,
                            cn_pid pid) {
  glock *l = lock_find(g, rid);
  size_t i;
  if (!l || !cn_term_equal(cn_buf_term(&l->req), req))
    return;
  for (i = 0; i < l->n; i++) {
    if (cn_pid_equal(&l->h[i].pid, &pid)) {
      remove_holder(g, l, i, false);
      return;
    }
  }
}

/* The 'DOWN' of a monitor: delete_lock/2 and del_name/2. */
static void handle_down(cn__global *g, const cn_ref *ref) {
  size_t i, j;
  for (i = 0; i < g->n_locks; i++) {
    glock *l = &g->locks[i];
    for (j = 0; j < l->n; j++) {
      if (cn_ref_equal(&l->h[j].mref, ref)) {
        remove_holder(g, l, j, true);
        i = (size_t)-1; /* the table may have moved: rescan */
        break;
      }
    }
  }
  for (i = 0; i < g->n_names; i++) {
    if (cn_ref_equal(&g->names[i].mref, ref)) {
      name_drop(g, &g->names[i]);
      return;
    }
  }
}

/* Who asked for an insert: a registering process or a node's new_nodes,
 * for lock_still_set/3. */
typedef struct from_t {
  bool is_pid;
  cn_pid pid;
  cn_term extra; /* ExtraInfo of new_nodes */
} from_t;

static bool lock_still_set(cn__global *g, const from_t *f) {
  size_t i;
  for (i = 0; i < g->n_locks; i++) {
    glock *l = &g->locks[i];
    if (!cn_is_atom(cn_buf_term(&l->rid), "global"))
      continue;
    if (f->is_pid) {
      size_t j;
      for (j = 0; j < l->n; j++)
        if (cn_pid_equal(&l->h[j].pid, &f->pid))
          return true;
      return false;
    } else {
      cn_iter it;
      cn_term e, id;
      if (f->extra.len && cn_iter_init(&it, f->extra, NULL) == 0)
        while (cn_iter_next(&it, &e))
          if (cn_match(e, "{lock, {global, ~t}}", &id) == 0)
            return cn_term_equal(id, cn_buf_term(&l->req));
      return false;
    }
  }
  return !g->global_lock_down;
}

/* ins_name/6 and ins_name_ext/7 */
static void ins_name(cn__global *g, cn_term name, cn_pid pid, cn_term method,
                     bool ext, uint32_t regnode, const from_t *f) {
  gname *e = name_find(g, name), *nv;
  if (e) {
    cn_demonitor(g->rt, &e->mref, true);
    name_drop(g, e);
  }
  if (!(nv = realloc(g->names, (g->n_names + 1) * sizeof(*nv))))
    return;
  g->names = nv;
  e = &g->names[g->n_names];
  memset(e, 0, sizeof(*e));
  cn_put_term(&e->name, name);
  cn_put_term(&e->method, method);
  if (e->name.err || e->method.err) {
    cn_buf_free(&e->name);
    cn_buf_free(&e->method);
    return;
  }
  e->pid = pid;
  e->ext = ext;
  e->regnode = regnode;
  if (cn_monitor(g->rt, cn_to_pid(pid), &e->mref) != 0)
    memset(&e->mref, 0, sizeof(cn_ref));
  g->n_names++;
  if (!lock_still_set(g, f))
    delete_global_name(g, name);
}

/* get_names/0: [{Name, Pid, Method}] */
static int names_list(cn__global *g, cn_buf *b) {
  size_t i;
  cn_put_list(b, (uint32_t)g->n_names);
  for (i = 0; i < g->n_names; i++) {
    cn_put_tuple(b, 3);
    cn_put_term(b, cn_buf_term(&g->names[i].name));
    cn_put_pid(b, &g->names[i].pid);
    cn_put_term(b, cn_buf_term(&g->names[i].method));
  }
  cn_put_nil(b);
  return b->err;
}

/* get_names_ext/0: [{Name, Pid, RegNode}] */
static int names_ext_list(cn__global *g, cn_buf *b) {
  size_t i, n = 0;
  for (i = 0; i < g->n_names; i++)
    n += g->names[i].ext;
  cn_put_list(b, (uint32_t)n);
  for (i = 0; i < g->n_names; i++) {
    if (!g->names[i].ext)
      continue;
    cn_put_tuple(b, 3);
    cn_put_term(b, cn_buf_term(&g->names[i].name));
    cn_put_pid(b, &g->names[i].pid);
    cn_put_atom(b, nn(g->names[i].regnode));
  }
  cn_put_nil(b);
  return b->err;
}

/* do_ops/5 over the elements of one or two lists of ops. */
static void do_ops(cn__global *g, cn_term ops, cn_term ops2, cn_term ext,
                   const from_t *f) {
  cn_term lists[2] = {ops, ops2}, e, name, method, pidt, x;
  int k;
  for (k = 0; k < 2; k++) {
    cn_iter it;
    if (!lists[k].len || cn_iter_init(&it, lists[k], NULL) != 0)
      continue;
    while (cn_iter_next(&it, &e)) {
      cn_pid pid;
      if (cn_match(e, "{insert, {~t, ~t, ~t}}", &name, &pidt, &method) == 0 &&
          cn_get_pid(pidt, &pid) == 0) {
        cn_iter xi;
        uint32_t regnode = 0;
        bool isext = false;
        if (ext.len && cn_iter_init(&xi, ext, NULL) == 0) {
          while (cn_iter_next(&xi, &x)) {
            cn_term xn, xp, xr;
            if (cn_match(x, "{~t, ~t, ~t}", &xn, &xp, &xr) == 0 &&
                cn_term_equal(xn, name) && cn_term_equal(xp, pidt) &&
                get_node(xr, &regnode) == 0) {
              isext = true;
              break;
            }
          }
        }
        ins_name(g, name, pid, method, isext, regnode, f);
      } else if (cn_match(e, "{delete, ~t}", &name) == 0) {
        delete_global_name(g, name);
      }
    }
  }
}

/* ---- The connect protocol --------------------------------------------- */

static void to_locker(cn__global *g, cn_buf *msg) {
  cn_send(g->rt, cn_to_pid(g->locker), cn_buf_term(msg));
}

/* send_cancel_connect_message/2 */
static void send_cancel_connect_message(cn__global *g, uint32_t node, bool has,
                                        int64_t his_tag) {
  cn_buf b = CN_BUF_INIT;
  cn_put_tuple(&b, 3);
  cn_put_atom(&b, "cancel_connect");
  cn_put_atom(&b, nn(g->self));
  put_tag(&b, has, his_tag);
  if (!b.err)
    volatile_send(g, node, &b);
  cn_buf_free(&b);
}

/* cancel_locker/4: fun is the term the locker runs on the cancel (no_fun
 * or {send, Nodes, Msg}). */
static void cancel_locker_fun(cn__global *g, gnode *n, bool has, int64_t tag,
                              cn_term fun) {
  cn_buf b = CN_BUF_INIT;
  cn_put_tuple(&b, 4);
  cn_put_atom(&b, "cancel");
  cn_put_atom(&b, nn(n->node));
  put_tag(&b, has, tag);
  if (fun.len)
    cn_put_term(&b, fun);
  else
    cn_put_atom(&b, "no_fun");
  if (!b.err)
    to_locker(g, &b);
  cn_buf_free(&b);
  /* send_cancel_connect/3 */
  if (n->pending && n->pvsn >= VERIFY_VSN && has && n->has_my &&
      n->my_tag == tag)
    send_cancel_connect_message(g, n->node, n->has_his, n->his_tag);
  if (n->resolver && has && n->res_tag == tag)
    n->resolver = false;
}

static void cancel_locker(cn__global *g, gnode *n, bool has, int64_t tag) {
  cn_term none = {NULL, 0};
  cancel_locker_fun(g, n, has, tag, none);
}

static void handle_init_connect(cn__global *g, int64_t vsn, uint32_t node,
                                cn_term initmsg, int64_t his_tag,
                                int64_t his_vsn);

static void resend_pre_connect(cn__global *g, gnode *n) {
  if (n->has_pre) {
    cn_buf msg = n->pre_msg;
    int64_t v = n->pre_vsn, t = n->pre_tag;
    n->has_pre = false;
    cn_buf_init(&n->pre_msg);
    handle_init_connect(g, v, n->node, cn_buf_term(&msg), t, v);
    cn_buf_free(&msg);
  }
}

/* handle_nodeup/2 */
static void handle_nodeup(cn__global *g, uint32_t node) {
  gnode *n = gn_get(g, node);
  cn_buf b = CN_BUF_INIT;
  if (!n || n->known || n->resolver)
    return;
  n->my_tag = ++g->next_tag;
  n->has_my = true;
  n->resolver = true;
  n->res_tag = n->my_tag;
  if (cn_build(&b,
               "{init_connect, {~i, ~i}, ~a, {locker, no_longer_a_pid, "
               "#{}, ~p}}",
               (int64_t)GVSN, n->my_tag, nn(g->self), &g->locker) == 0)
    gns_cast(g, node, &b);
  cn_buf_free(&b);
  /* global.erl casts the saved init_connect to itself before this
   * init_connect goes; it is handled after the resolver is set. */
  resend_pre_connect(g, n);
}

static void inform_connection_loss(cn__global *g, uint32_t node);

/* handle_nodedown/3 */
enum { ND_DISCONNECTED, ND_REMOVE, ND_IGNORE };
static void handle_nodedown(cn__global *g, uint32_t node, int what) {
  gnode *n = gn_get(g, node);
  cn_buf b = CN_BUF_INIT;
  if (!n)
    return;
  cancel_locker(g, n, n->has_my, n->my_tag);
  if (cn_build(&b, "{remove_from_known, ~a}", nn(node)) == 0)
    to_locker(g, &b);
  cn_buf_free(&b);
  reset_node_state(n);
  if (what == ND_REMOVE)
    n->removing = true;
  else if (what == ND_IGNORE)
    n->removing = false;
  else if (n->removing)
    n->removing = false;
  else
    inform_connection_loss(g, node);
  n->pending = false;
  n->known = false;
  n->synced = false;
  n->resolver = false;
}

/* restart_connect/3 */
static void restart_connect(cn__global *g, gnode *n, bool has, int64_t tag) {
  cancel_locker(g, n, has, tag);
  reset_node_state(n);
  n->pending = false;
  if (has)
    handle_nodeup(g, n->node);
}

/* init_connect/6 */
static void handle_init_connect(cn__global *g, int64_t vsn, uint32_t node,
                                cn_term initmsg, int64_t his_tag,
                                int64_t his_vsn) {
  gnode *n = gn_get(g, node);
  cn_term his_locker;
  cn_pid lpid;
  cn_buf b = CN_BUF_INIT;
  if (!n)
    return;
  if (n->pending) {
    if (his_vsn < VERIFY_VSN) {
      cn_dist_disconnect(g->rt, nn(node));
      return;
    }
    send_cancel_connect_message(g, node, true, his_tag);
    restart_connect(g, n, n->has_my, n->my_tag);
  }
  n->has_vsn = true;
  n->prot_vsn = vsn;
  n->has_his = true;
  n->his_tag = his_tag;
  if (n->resolver) {
    if (cn_match(initmsg, "{locker, _, _, ~t}", &his_locker) != 0 ||
        cn_get_pid(his_locker, &lpid) != 0)
      return;
    cn_put_tuple(&b, 5);
    cn_put_atom(&b, "his_the_locker");
    cn_put_pid(&b, &lpid);
    cn_build(&b, "{~i, []}", vsn);
    cn_put_int(&b, his_tag);
    cn_put_int(&b, n->my_tag);
    if (!b.err)
      to_locker(g, &b);
    cn_buf_reset(&b);
    if (his_vsn >= VERIFY_VSN && cn_build(&b, "{init_connect_ack, ~a, ~i, ~i}",
                                          nn(g->self), his_tag, n->my_tag) == 0)
      volatile_send(g, node, &b);
    n->pending = true;
    n->pvsn = his_vsn;
  } else {
    cn_buf_free(&n->pre_msg);
    if (cn_put_term(&n->pre_msg, initmsg) == 0) {
      n->has_pre = true;
      n->pre_vsn = vsn;
      n->pre_tag = his_tag;
    }
  }
  cn_buf_free(&b);
}

static void resolved(cn__global *g, gnode *n, cn_term his_resolved,
                     cn_term his_known, cn_term names_ext);

/* fun global:random_exit_name/3, the default resolve method. */
static int put_random_exit_fun(cn_buf *b) {
  char tag = 113; /* EXPORT_EXT */
  cn_buf_append(b, &tag, 1);
  cn_put_atom(b, "global");
  cn_put_atom(b, "random_exit_name");
  return cn_put_int(b, 3);
}

static void put_insert(cn_buf *o, cn_term name, cn_term pid, cn_term method) {
  cn_put_tuple(o, 2);
  cn_put_atom(o, "insert");
  cn_put_tuple(o, 3);
  cn_put_term(o, name);
  cn_put_term(o, pid);
  cn_put_term(o, method);
}

/* exchange_names/4: his names against ours.  Ops are applied here;
 * Resolved goes to him.  A conflict is resolved on the smaller node, by
 * the method of the name it holds, run on that name's node: here when
 * that is our own process registered with global:random_exit_name/3 (the
 * default), which keeps the pid of the smaller node and kills the other.
 * Another method, or a name held for a process of a third node, would
 * need an rpc there; then his name is inserted, as global does when that
 * rpc fails. */
static void exchange_names(cn__global *g, uint32_t node, cn_term list,
                           cn_buf *ops, cn_buf *res) {
  cn_iter it;
  cn_term e, name, pidt, method;
  cn_buf o = CN_BUF_INIT, r = CN_BUF_INIT, rx = CN_BUF_INIT, kill = CN_BUF_INIT;
  size_t nops = 0, nres = 0;
  put_random_exit_fun(&rx);
  cn_put_atom(&kill, "kill");
  if (cn_iter_init(&it, list, NULL) == 0) {
    while (cn_iter_next(&it, &e)) {
      gname *mine;
      cn_pid pid;
      if (cn_match(e, "{~t, ~t, ~t}", &name, &pidt, &method) != 0 ||
          cn_get_pid(pidt, &pid) != 0)
        continue;
      mine = name_find(g, name);
      if (mine && cn_pid_equal(&mine->pid, &pid))
        continue;
      if (mine && strcmp(nn(g->self), nn(node)) >= 0)
        continue; /* the other node resolves the conflict */
      if (mine && mine->pid.node == g->self && !rx.err &&
          cn_term_equal(cn_buf_term(&mine->method), cn_buf_term(&rx))) {
        /* random_exit_name(Name, Pid, Pid2) */
        bool his_min = strcmp(nn(pid.node), nn(mine->pid.node)) < 0;
        cn_pid max = his_min ? mine->pid : pid;
        char txt[200];
        cn__term_short(name, txt, sizeof(txt));
        glog(g, CN_LOG_INFO, "global: Name conflict terminating {%s, %s}", txt,
             his_min ? "ours" : "theirs");
        cn_exit(g->rt, max, cn_buf_term(&kill));
        if (his_min) {
          put_insert(&o, name, pidt, method);
          nops++;
        } else {
          cn_buf mp = CN_BUF_INIT;
          cn_put_pid(&mp, &mine->pid);
          put_insert(&r, name, cn_buf_term(&mp), cn_buf_term(&mine->method));
          cn_buf_free(&mp);
          nres++;
        }
        continue;
      }
      if (mine)
        glog(g, CN_LOG_INFO,
             "name conflict with %s: its registration wins here", nn(node));
      /* A new name, or a conflict we cannot resolve: insert his. */
      put_insert(&o, name, pidt, method);
      nops++;
    }
  }
  cn_put_list(ops, (uint32_t)nops);
  cn_buf_append(ops, o.data, o.len);
  cn_put_nil(ops);
  cn_put_list(res, (uint32_t)nres);
  cn_buf_append(res, r.data, r.len);
  cn_put_nil(res);
  cn_buf_free(&o);
  cn_buf_free(&r);
  cn_buf_free(&rx);
  cn_buf_free(&kill);
}

/* exchange/3, with the resolver's work and exchange_ops inline. */
static void exchange(cn__global *g, gnode *n, cn_term list) {
  cn_buf ops = CN_BUF_INIT, res = CN_BUF_INIT, b = CN_BUF_INIT;
  if (n->wait_lock != WL_LOCK_IS_SET) {
    n->wait_lock = WL_EXCHANGE;
    cn_buf_free(&n->wl_names);
    cn_put_term(&n->wl_names, list);
    return;
  }
  n->wait_lock = 0;
  exchange_names(g, n->node, list, &ops, &res);
  /* handle_cast({exchange_ops, ...}) */
  cn_put_tuple(&b, 7);
  cn_put_atom(&b, "resolved");
  cn_put_atom(&b, nn(g->self));
  cn_put_term(&b, cn_buf_term(&res));
  known_list(g, &b);
  cn_put_atom(&b, "unused");
  names_ext_list(g, &b);
  put_tag(&b, n->has_his, n->his_tag);
  if (!b.err)
    gns_cast(g, n->node, &b);
  if (n->save_ops == SO_RESOLVED) {
    cn_buf known = n->so_known, ext = n->so_ext, hres = n->so_res;
    cn_buf_init(&n->so_known);
    cn_buf_init(&n->so_ext);
    cn_buf_init(&n->so_res);
    cn_buf_free(&n->so_ops);
    n->so_ops = ops;
    cn_buf_init(&ops);
    n->save_ops = SO_OPS;
    resolved(g, n, cn_buf_term(&hres), cn_buf_term(&known), cn_buf_term(&ext));
    cn_buf_free(&known);
    cn_buf_free(&ext);
    cn_buf_free(&hres);
  } else {
    cn_buf_free(&n->so_ops);
    n->so_ops = ops;
    cn_buf_init(&ops);
    n->save_ops = SO_OPS;
  }
  cn_buf_free(&ops);
  cn_buf_free(&res);
  cn_buf_free(&b);
}

/* Appends the nodes of a known list ([Node] or [{Node, Vsn}]) to out, as
 * {Node, Vsn} (make_node_vsn_list/2) or plain names. */
static size_t known_nodes(cn_term list, uint32_t *out, int64_t *vsn,
                          size_t cap) {
  cn_iter it;
  cn_term e, nt;
  size_t n = 0;
  int64_t v;
  if (cn_iter_init(&it, list, NULL) != 0)
    return 0;
  while (cn_iter_next(&it, &e) && n < cap) {
    v = -1;
    if (cn_match(e, "{~t, ~i}", &nt, &v) != 0)
      nt = e;
    if (get_node(nt, &out[n]) == 0)
      vsn[n++] = v;
  }
  return n;
}

/* sync_others/1: meet each node (the cast connects), and tell it we are
 * in sync. */
static void sync_others(cn__global *g, const uint32_t *nodes, size_t n) {
  size_t i;
  cn_buf b = CN_BUF_INIT;
  if (cn_build(&b, "{in_sync, ~a, true}", nn(g->self)) != 0)
    return;
  for (i = 0; i < n; i++)
    if (nodes[i] != g->self)
      gns_cast(g, nodes[i], &b);
  cn_buf_free(&b);
}

/* add_to_known/2: returns the nodes added, in added[]. */
static size_t add_to_known(cn__global *g, const uint32_t *nodes,
                           const int64_t *vsn, size_t n, uint32_t *added) {
  size_t i, k = 0;
  for (i = 0; i < n; i++) {
    gnode *x;
    if (nodes[i] == g->self || !(x = gn_get(g, nodes[i])))
      continue;
    if (!x->known) {
      x->known = true;
      x->vsn = vsn[i] < 0 ? 0 : vsn[i];
      added[k++] = nodes[i];
    } else if (x->vsn < 0 && vsn[i] >= 0) {
      x->vsn = vsn[i];
    }
  }
  return k;
}

static void locker_add_known(cn__global *g, const uint32_t *added, size_t k) {
  cn_buf b = CN_BUF_INIT;
  size_t i;
  cn_put_tuple(&b, 2);
  cn_put_atom(&b, "add_to_known");
  cn_put_list(&b, (uint32_t)k);
  for (i = 0; i < k; i++)
    cn_put_atom(&b, nn(added[i]));
  cn_put_nil(&b);
  if (!b.err)
    to_locker(g, &b);
  cn_buf_free(&b);
}

#define MAXN 1024

/* resolved/5 */
static void resolved(cn__global *g, gnode *n, cn_term his_resolved,
                     cn_term his_known, cn_term names_ext) {
  /* Scratch on the heap: resolved is rare, and two runtimes in one
   * process must not share it. */
  struct {
    uint32_t hk[MAXN], nodes[MAXN], added[MAXN];
    int64_t hv[MAXN], nv[MAXN];
  } *sc = malloc(sizeof(*sc));
  uint32_t *hk, *nodes, *added;
  int64_t *hv, *nv;
  cn_buf ops = n->so_ops, extra = CN_BUF_INIT, msg = CN_BUF_INIT,
         fun = CN_BUF_INIT, allops = CN_BUF_INIT;
  size_t nh, i, nn_ = 0, k, cnt = 0;
  from_t f;
  cn_iter it;
  cn_term e;

  if (!sc)
    return; /* the session is cancelled by the next nodedown or retry */
  hk = sc->hk;
  nodes = sc->nodes;
  added = sc->added;
  hv = sc->hv;
  nv = sc->nv;
  cn_buf_init(&n->so_ops);
  n->save_ops = 0;
  /* Ops = erase({save_ops, Node}) ++ HisResolved */
  {
    cn_term parts[2] = {cn_buf_term(&ops), his_resolved};
    int p;
    cn_buf el = CN_BUF_INIT;
    for (p = 0; p < 2; p++)
      if (parts[p].len && cn_iter_init(&it, parts[p], NULL) == 0)
        while (cn_iter_next(&it, &e)) {
          cn_put_term(&el, e);
          cnt++;
        }
    cn_put_list(&allops, (uint32_t)cnt);
    cn_buf_append(&allops, el.data, el.len);
    cn_put_nil(&allops);
    cn_buf_free(&el);
  }
  nh = known_nodes(his_known, hk, hv, MAXN);
  /* NewNodes = make_node_vsn_list([Node | HisKnown]) */
  nodes[nn_] = n->node;
  nv[nn_++] = node_vsn(g, n->node);
  for (i = 0; i < nh && nn_ < MAXN; i++) {
    nodes[nn_] = hk[i];
    nv[nn_++] = hv[i] <= 0 ? node_vsn(g, hk[i]) : hv[i];
  }
  sync_others(g, hk, nh);
  cn_put_list(&extra, 2);
  cn_build(&extra, "{vsn, ~i}", n->has_vsn ? n->prot_vsn : (int64_t)0);
  cn_put_tuple(&extra, 2);
  cn_put_atom(&extra, "lock");
  if (n->lock_id.len)
    cn_put_term(&extra, cn_buf_term(&n->lock_id));
  else
    cn_put_atom(&extra, "undefined");
  cn_put_nil(&extra);
  f.is_pid = false;
  f.extra = cn_buf_term(&extra);
  do_ops(g, cn_buf_term(&allops), (cn_term){NULL, 0}, names_ext, &f);
  n->synced = true;
  for (i = 0; i < nh; i++) {
    gnode *c = gn_find(g, hk[i]);
    if (!c || c == n)
      continue;
    /* cancel_resolved_locker/3 */
    c->pending = false;
    cancel_locker(g, c, c->has_my, c->my_tag);
    reset_node_state(c);
  }
  /* NewNodesMsg, sent by the locker to the nodes known now, before it
   * lets the lock go. */
  cn_put_tuple(&msg, 6);
  cn_put_atom(&msg, "new_nodes");
  cn_put_atom(&msg, nn(g->self));
  cn_put_term(&msg, cn_buf_term(&allops));
  cn_put_term(&msg, names_ext);
  cn_put_list(&msg, (uint32_t)nn_);
  for (i = 0; i < nn_; i++) {
    cn_put_tuple(&msg, 2);
    cn_put_atom(&msg, nn(nodes[i]));
    cn_put_int(&msg, nv[i]);
  }
  cn_put_nil(&msg);
  cn_put_term(&msg, cn_buf_term(&extra));
  k = 0;
  for (i = 0; i < g->n_nodes; i++)
    k += g->nodes[i]->known;
  cn_put_tuple(&fun, 3);
  cn_put_atom(&fun, "send");
  cn_put_list(&fun, (uint32_t)k);
  for (i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->known)
      cn_put_atom(&fun, nn(g->nodes[i]->node));
  cn_put_nil(&fun);
  cn_put_term(&fun, cn_buf_term(&msg));
  n->pending = false;
  if (!fun.err)
    cancel_locker_fun(g, n, n->has_my, n->my_tag, cn_buf_term(&fun));
  reset_node_state(n);
  k = add_to_known(g, nodes, nv, nn_, added);
  locker_add_known(g, added, k);
  cn_buf_free(&ops);
  cn_buf_free(&allops);
  cn_buf_free(&extra);
  cn_buf_free(&msg);
  cn_buf_free(&fun);
  free(sc);
}

/* new_nodes/6 */
static void new_nodes(cn__global *g, uint32_t conn, cn_term ops,
                      cn_term names_ext, cn_term nodes_t, cn_term extra) {
  struct {
    uint32_t nodes[MAXN], added[MAXN];
    int64_t vs[MAXN];
  } *sc = malloc(sizeof(*sc));
  size_t n, k;
  from_t f;
  (void)conn;
  if (!sc)
    return;
  n = known_nodes(nodes_t, sc->nodes, sc->vs, MAXN);
  k = add_to_known(g, sc->nodes, sc->vs, n, sc->added);
  sync_others(g, sc->added, k);
  f.is_pid = false;
  f.extra = extra;
  do_ops(g, ops, (cn_term){NULL, 0}, names_ext, &f);
  locker_add_known(g, sc->added, k);
  free(sc);
}

/* ---- Prevent overlapping partitions ----------------------------------- */

static void multicast(cn__global *g, cn_buf *msg, uint32_t ignore) {
  size_t i;
  for (i = 0; i < g->n_nodes; i++) {
    gnode *n = g->nodes[i];
    if (n->node == ignore)
      continue;
    if ((n->known && n->vsn >= POP_VSN) || (n->pending && n->pvsn >= POP_VSN))
      volatile_send(g, n->node, msg);
  }
}

/* inform_connection_loss/2 */
static void inform_connection_loss(cn__global *g, uint32_t node) {
  cn_buf b = CN_BUF_INIT;
  if (cn_build(&b, "{lost_connection, ~a, ~i, ~i, ~a}", nn(g->self), g->xcre,
               ++g->next_tag, nn(node)) == 0)
    multicast(g, &b, node);
  cn_buf_free(&b);
}

static bool potentially_known(cn__global *g, uint32_t node) {
  gnode *n = gn_find(g, node);
  return n && (n->known || n->pending);
}

static void lost_connection(cn__global *g, cn_term msg, uint32_t a,
                            cn_term xcre, int64_t opid, uint32_t b) {
  glost *l = NULL;
  size_t i;
  uint32_t rm;
  cn_buf out = CN_BUF_INIT;
  for (i = 0; i < g->n_lost; i++)
    if (g->lost[i].a == a && g->lost[i].b == b)
      l = &g->lost[i];
  if (l && cn_term_equal(cn_buf_term(&l->xcre), xcre) && opid <= l->opid)
    return; /* seen already */
  if (cn_put_term(&out, msg) == 0)
    multicast(g, &out, a);
  cn_buf_free(&out);
  if (!l) {
    glost *nv = realloc(g->lost, (g->n_lost + 1) * sizeof(*nv));
    if (!nv)
      return;
    g->lost = nv;
    l = &g->lost[g->n_lost++];
    memset(l, 0, sizeof(*l));
    l->a = a;
    l->b = b;
  }
  cn_buf_reset(&l->xcre);
  cn_put_term(&l->xcre, xcre);
  l->opid = opid;
  rm = g->self == b ? a : b;
  if (!potentially_known(g, rm))
    return;
  if (node_vsn(g, rm) < POP_VSN) {
    cn_dist_disconnect(g->rt, nn(rm));
  } else if (cn_build(&out, "{remove_connection, ~a}", nn(g->self)) == 0) {
    volatile_send(g, rm, &out);
  }
  cn_buf_free(&out);
  glog(g, CN_LOG_WARNING,
       "'global' at node %s requested disconnect from node %s in order to "
       "prevent overlapping partitions",
       nn(g->self), nn(rm));
  handle_nodedown(g, rm, ND_REMOVE);
}

/* ---- The server ------------------------------------------------------- */

static int gns_init(cn_proc *self, void *arg, void **state) {
  cn__global *g = arg;
  bool old;
  cn_trap_exit(self, true, &old);
  g->gns = cn_proc_pid(self);
  cn_dist_monitor_nodes(g->rt, g->gns, true, 0);
  *state = g;
  return CN_NOREPLY;
}

static int gns_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  cn__global *g = state;
  cn_term name, pidt, method, rid, lreq, regnode;
  cn_pid pid, fpid = cn_from_pid(from);
  uint32_t rn;
  int rc = CN_REPLY;
  (void)self;
  pthread_mutex_lock(&g->mu);
  if (cn_match(req, "{set_lock, {~t, ~t}}", &rid, &lreq) == 0) {
    cn_put_atom(reply, handle_set_lock(g, rid, lreq, fpid) ? "true" : "false");
  } else if (cn_match(req, "{del_lock, {~t, ~t}}", &rid, &lreq) == 0) {
    handle_del_lock(g, rid, lreq, fpid);
    cn_put_atom(reply, "true");
  } else if (cn_match(req, "{register, ~t, ~t, ~t}", &name, &pidt, &method) ==
                 0 &&
             cn_get_pid(pidt, &pid) == 0) {
    from_t f = {true, fpid, {NULL, 0}};
    ins_name(g, name, pid, method, false, 0, &f);
    cn_put_atom(reply, "yes");
  } else if (cn_match(req, "{register_ext, ~t, ~t, ~t, ~t}", &name, &pidt,
                      &method, &regnode) == 0 &&
             cn_get_pid(pidt, &pid) == 0 && get_node(regnode, &rn) == 0) {
    from_t f = {true, fpid, {NULL, 0}};
    ins_name(g, name, pid, method, true, rn, &f);
    cn_put_atom(reply, "yes");
  } else if (cn_match(req, "{unregister, ~t}", &name) == 0) {
    delete_global_name(g, name);
    cn_put_atom(reply, "ok");
  } else if (cn_is_atom(req, "get_known")) {
    known_list(g, reply);
  } else if (cn_is_atom(req, "get_synced")) {
    size_t i, k = 0;
    for (i = 0; i < g->n_nodes; i++)
      k += g->nodes[i]->synced;
    cn_put_list(reply, (uint32_t)k);
    for (i = 0; i < g->n_nodes; i++)
      if (g->nodes[i]->synced)
        cn_put_atom(reply, nn(g->nodes[i]->node));
    cn_put_nil(reply);
  } else if (cn_is_atom(req, "get_protocol_version")) {
    cn_put_int(reply, GVSN);
  } else if (cn_is_atom(req, "get_names_ext")) {
    names_ext_list(g, reply);
  } else {
    char txt[200];
    cn__term_short(req, txt, sizeof(txt));
    glog(g, CN_LOG_WARNING,
         "The global_name_server received an unexpected message: "
         "handle_call(%s)",
         txt);
    /* global.erl does not answer either. */
    cn_from_free(from);
    rc = CN_NOREPLY;
  }
  pthread_mutex_unlock(&g->mu);
  if (rc == CN_REPLY && reply->err)
    return CN_STOP;
  return rc;
}

static int gns_cast_cb(cn_proc *self, void *state, cn_term msg) {
  cn__global *g = state;
  cn_term vsn, initmsg, t1, t2, t3, t4, t5;
  uint32_t node;
  int64_t v, tag;
  gnode *n;
  (void)self;
  pthread_mutex_lock(&g->mu);
  if (cn_match(msg, "{init_connect, ~t, ~t, ~t}", &vsn, &t1, &initmsg) == 0 &&
      get_node(t1, &node) == 0) {
    cn_iter it;
    cn_term hv, ht;
    size_t cnt;
    /* {HisVsn, HisTag}, or a longer tuple from a newer version */
    if (cn_term_typeof(vsn) == CN_T_TUPLE &&
        cn_iter_init(&it, vsn, &cnt) == 0 && cnt >= 2 &&
        cn_iter_next(&it, &hv) && cn_iter_next(&it, &ht) &&
        cn_get_int64(hv, &v) == 0 && cn_get_int64(ht, &tag) == 0)
      handle_init_connect(g, v > GVSN || cnt > 2 ? GVSN : v, node, initmsg, tag,
                          v);
  } else if (cn_match(msg, "{lock_is_set, ~t, ~t, ~t}", &t1, &t2, &t3) == 0 &&
             get_node(t1, &node) == 0 && (n = gn_get(g, node))) {
    if (tag_is(t2, n->has_my, n->my_tag)) {
      cn_buf b = CN_BUF_INIT;
      cn_put_tuple(&b, 5);
      cn_put_atom(&b, "exchange");
      cn_put_atom(&b, nn(g->self));
      names_list(g, &b);
      cn_put_nil(&b);
      put_tag(&b, n->has_his, n->his_tag);
      if (!b.err)
        gns_cast(g, node, &b);
      cn_buf_free(&b);
      cn_buf_free(&n->lock_id);
      cn_put_term(&n->lock_id, t3);
      if (n->wait_lock == WL_EXCHANGE) {
        cn_buf names = n->wl_names;
        cn_buf_init(&n->wl_names);
        n->wait_lock = WL_LOCK_IS_SET;
        exchange(g, n, cn_buf_term(&names));
        cn_buf_free(&names);
      } else {
        n->wait_lock = WL_LOCK_IS_SET;
      }
    } else if (cn_get_int64(t2, &tag) == 0) {
      cancel_locker(g, n, true, tag);
    }
  } else if (cn_match(msg, "{exchange, ~t, ~t, _, ~t}", &t1, &t2, &t3) == 0 &&
             get_node(t1, &node) == 0 && (n = gn_get(g, node))) {
    if (tag_is(t3, n->has_my, n->my_tag))
      exchange(g, n, t2);
    else if (cn_get_int64(t3, &tag) == 0)
      cancel_locker(g, n, true, tag);
  } else if (cn_match(msg, "{resolved, ~t, ~t, ~t, _, ~t, ~t}", &t1, &t2, &t3,
                      &t4, &t5) == 0 &&
             get_node(t1, &node) == 0 && (n = gn_get(g, node))) {
    if (!tag_is(t5, n->has_my, n->my_tag)) {
      if (cn_get_int64(t5, &tag) == 0)
        cancel_locker(g, n, true, tag);
    } else if (n->save_ops == SO_OPS) {
      resolved(g, n, t2, t3, t4);
    } else {
      n->save_ops = SO_RESOLVED;
      cn_buf_free(&n->so_known);
      cn_buf_free(&n->so_ext);
      cn_buf_free(&n->so_res);
      cn_put_term(&n->so_known, t3);
      cn_put_term(&n->so_ext, t4);
      cn_put_term(&n->so_res, t2);
    }
  } else if (cn_match(msg, "{new_nodes, ~t, ~t, ~t, ~t, ~t}", &t1, &t2, &t3,
                      &t4, &t5) == 0 &&
             get_node(t1, &node) == 0) {
    new_nodes(g, node, t2, t3, t4, t5);
  } else if (cn_match(msg, "{in_sync, ~t, _}", &t1) == 0 &&
             get_node(t1, &node) == 0 && (n = gn_get(g, node))) {
    n->synced = true;
    n->pending = false;
    cancel_locker(g, n, n->has_my, n->my_tag);
    reset_node_state(n);
  } else if (cn_match(msg, "{lock_set, ~t, _, _, ~t}", &t1, &t2) == 0) {
    cn_pid p;
    if (cn_get_pid(t1, &p) == 0 && (n = gn_find(g, p.node)) &&
        tag_is(t2, n->has_my, n->my_tag)) {
      cn_buf b = CN_BUF_INIT;
      if (cn_put_term(&b, msg) == 0)
        to_locker(g, &b);
      cn_buf_free(&b);
    }
  } else if (cn_match(msg, "{lock_set, _, _, _}") == 0) {
    cn_buf b = CN_BUF_INIT;
    if (cn_put_term(&b, msg) == 0)
      to_locker(g, &b);
    cn_buf_free(&b);
  } else if (cn_match(msg, "{async_del_name, _, _}") == 0 ||
             cn_match(msg, "{async_del_lock, _, _}") == 0) {
    /* R13B and earlier; the DOWN does it. */
  } else {
    char txt[200];
    cn__term_short(msg, txt, sizeof(txt));
    glog(g, CN_LOG_WARNING,
         "The global_name_server received an unexpected message: "
         "handle_cast(%s)",
         txt);
  }
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  return CN_NOREPLY;
}

static int gns_info(cn_proc *self, void *state, cn_term msg) {
  cn__global *g = state;
  cn_term t1, t2, t3, t4;
  cn_ref ref;
  uint32_t node, nb;
  int64_t v;
  gnode *n;
  (void)self;
  pthread_mutex_lock(&g->mu);
  if (cn_match(msg, "{'DOWN', ~r, process, _, _}", &ref) == 0) {
    handle_down(g, &ref);
  } else if (cn_match(msg, "{nodeup, ~t}", &t1) == 0 &&
             get_node(t1, &node) == 0) {
    handle_nodeup(g, node);
  } else if (cn_match(msg, "{nodedown, ~t}", &t1) == 0 &&
             get_node(t1, &node) == 0) {
    handle_nodedown(g, node, ND_DISCONNECTED);
  } else if (cn_match(msg, "{extra_nodedown, ~t}", &t1) == 0 &&
             get_node(t1, &node) == 0) {
    handle_nodedown(g, node, ND_DISCONNECTED);
  } else if (cn_match(msg, "{lost_connection, ~t, ~t, ~i, ~t}", &t1, &t2, &v,
                      &t3) == 0 &&
             get_node(t1, &node) == 0 && get_node(t3, &nb) == 0) {
    lost_connection(g, msg, node, t2, v, nb);
  } else if (cn_match(msg, "{remove_connection, ~t}", &t1) == 0 &&
             get_node(t1, &node) == 0) {
    if (potentially_known(g, node)) {
      cn_dist_disconnect(g->rt, nn(node));
      handle_nodedown(g, node, ND_REMOVE);
      glog(g, CN_LOG_WARNING,
           "'global' at node %s disconnected node %s in order to prevent "
           "overlapping partitions",
           nn(g->self), nn(node));
    }
  } else if (cn_match(msg, "{cancel_connect, ~t, ~t}", &t1, &t2) == 0 &&
             get_node(t1, &node) == 0 && (n = gn_find(g, node))) {
    if (tag_is(t2, n->has_my, n->my_tag)) {
      int64_t tag = n->my_tag;
      cancel_locker(g, n, true, tag);
      reset_node_state(n);
      n->pending = false;
      restart_connect(g, n, true, tag);
    }
  } else if (cn_match(msg, "{init_connect_ack, ~t, ~t, ~t}", &t1, &t2, &t4) ==
                 0 &&
             get_node(t1, &node) == 0 && (n = gn_get(g, node))) {
    if (!(tag_is(t2, n->has_my, n->my_tag) &&
          tag_is(t4, n->has_his, n->his_tag))) {
      int64_t his = 0;
      bool has = cn_get_int64(t4, &his) == 0;
      send_cancel_connect_message(g, node, has, his);
      restart_connect(g, n, n->has_my, n->my_tag);
    }
  } else if (cn_match(msg, "{'EXIT', _, _}") == 0) {
    /* A linked process of another time; nothing to do. */
  } else {
    char txt[200];
    cn__term_short(msg, txt, sizeof(txt));
    glog(g, CN_LOG_WARNING,
         "The global_name_server received an unexpected message: "
         "handle_info(%s)",
         txt);
  }
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  return CN_NOREPLY;
}

static const cn_server_ops gns_ops = {
    .name = "global",
    .init = gns_init,
    .handle_call = gns_call,
    .handle_cast = gns_cast_cb,
    .handle_info = gns_info,
};

/* ---- Calls the locker and the registrar make -------------------------- */

/* gen_server:call to a node's global_name_server: 1 true, 0 false, -1 no
 * answer (a bad node, ignored as multi_call's BadNodes are). */
static int gns_call_bool(cn__global *g, uint32_t node, const char *what,
                         cn_term id) {
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  int r = -1;
  cn_dest to = node == g->self ? cn_to_name(GNS) : cn_to_remote(GNS, nn(node));
  cn_put_tuple(&req, 2);
  cn_put_atom(&req, what);
  cn_put_term(&req, id);
  if (!req.err && cn_call(g->rt, to, cn_buf_term(&req), CALL_MS, &reply) == 0)
    r = cn_is_atom(cn_buf_term(&reply), "true") ? 1 : 0;
  cn_buf_free(&req);
  cn_buf_free(&reply);
  return r;
}

static bool local_can_set(cn__global *g, cn_term id) {
  cn_term rid, req;
  bool ok = true;
  if (cn_match(id, "{~t, ~t}", &rid, &req) != 0)
    return false;
  pthread_mutex_lock(&g->mu);
  ok = can_set_lock(g, rid, req);
  pthread_mutex_unlock(&g->mu);
  return ok;
}

static void del_lock(cn__global *g, cn_term id, const uint32_t *nodes,
                     size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    gns_call_bool(g, nodes[i], "del_lock", id);
}

/* set_lock_on_nodes/2 (set_lock/3 with no retries) */
static bool set_lock(cn__global *g, cn_term id, const uint32_t *nodes,
                     size_t n) {
  uint32_t yes[MAXN];
  size_t i, ny = 0, replies = 0;
  bool ok = true;
  if (n == 0)
    return true;
  if (n > 1) {
    for (i = 0; i < n; i++)
      if (nodes[i] == g->self && !local_can_set(g, id))
        return false;
  }
  for (i = 0; i < n; i++) {
    int r = gns_call_bool(g, nodes[i], "set_lock", id);
    if (r >= 0)
      replies++;
    if (r == 1 && ny < MAXN)
      yes[ny++] = nodes[i];
    else if (r == 0)
      ok = false;
  }
  if (!ok && replies > 1)
    del_lock(g, id, yes, ny);
  return ok;
}

static uint32_t the_boss(const uint32_t *nodes, size_t n) {
  uint32_t b = nodes[0];
  size_t i;
  for (i = 1; i < n; i++)
    if (strcmp(nn(nodes[i]), nn(b)) > 0)
      b = nodes[i];
  return b;
}

/* delete_global_lock/2: the boss last. */
static void delete_global_lock(cn__global *g, cn_term id, const uint32_t *nodes,
                               size_t n) {
  uint32_t rest[MAXN], boss;
  size_t i, k = 0;
  if (n == 0)
    return;
  boss = the_boss(nodes, n);
  for (i = 0; i < n; i++)
    if (nodes[i] != boss && k < MAXN)
      rest[k++] = nodes[i];
  del_lock(g, id, rest, k);
  del_lock(g, id, &boss, 1);
}

static size_t minus(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                    uint32_t *out) {
  size_t i, j, k = 0;
  for (i = 0; i < na; i++) {
    for (j = 0; j < nb; j++)
      if (a[i] == b[j])
        break;
    if (j == nb)
      out[k++] = a[i];
  }
  return k;
}

static size_t known_now(cn__global *g, uint32_t *out, size_t cap) {
  size_t i, k = 0;
  pthread_mutex_lock(&g->mu);
  for (i = 0; i < g->n_nodes && k < cap; i++)
    if (g->nodes[i]->known)
      out[k++] = g->nodes[i]->node;
  pthread_mutex_unlock(&g->mu);
  return k;
}

static void random_sleep(unsigned times) {
  unsigned tmax = times > 5 ? 8000 : ((1u << times) * 1000) / 8;
  usleep(1000u * (1 + (unsigned)rand() % tmax));
}

/* ---- The locker ------------------------------------------------------- */

typedef struct him {
  uint32_t node;
  cn_pid locker;
  int64_t vsn, my_tag, his_tag;
} him;

typedef struct locker {
  cn__global *g;
  cn_pid self;
  him hims[MAXN];
  size_t nh;
  uint32_t known[MAXN];
  size_t nk;
  bool just_synced;
  cn_buf *saved; /* messages received and not yet taken, in order */
  size_t nsaved;
} locker;

enum { RX_OK = 0, RX_TIMEOUT = 1, RX_STOP = 2 };

/* Receives the next message: a saved one first.  timeout_ms < 0 waits
 * for ever (in slices, to see the stop flag). */
static int rx(locker *lk, long timeout_ms, cn_buf *out) {
  uint64_t start = uv_hrtime() / 1000000;
  if (lk->nsaved) {
    *out = lk->saved[0];
    memmove(lk->saved, lk->saved + 1, --lk->nsaved * sizeof(cn_buf));
    return RX_OK;
  }
  for (;;) {
    long left = 100;
    int rc;
    if (atomic_load(&lk->g->stop))
      return RX_STOP;
    if (timeout_ms >= 0) {
      long gone = (long)(uv_hrtime() / 1000000 - start);
      if (gone >= timeout_ms && timeout_ms > 0)
        return RX_TIMEOUT;
      left = timeout_ms - gone < 100 ? timeout_ms - gone : 100;
      if (left < 0)
        left = 0;
    }
    cn_buf_init(out);
    rc = cn_receive(lk->g->rt, left, out);
    if (rc == 0)
      return RX_OK;
    cn_buf_free(out);
    if (rc != CN_ETIMEDOUT)
      return RX_STOP;
    if (timeout_ms == 0)
      return RX_TIMEOUT;
  }
}

static void save(locker *lk, cn_buf *m) {
  cn_buf *nv = realloc(lk->saved, (lk->nsaved + 1) * sizeof(*nv));
  if (!nv) {
    cn_buf_free(m);
    return;
  }
  lk->saved = nv;
  lk->saved[lk->nsaved++] = *m;
}

/* A selective receive: the first message for which pred is true, the
 * others kept in order.  Scans the saved ones first. */
typedef bool (*rx_pred)(locker *lk, cn_term m, void *arg);

static int rx_match(locker *lk, rx_pred pred, void *arg, long timeout_ms,
                    cn_buf *out) {
  size_t i;
  for (i = 0; i < lk->nsaved; i++) {
    if (pred(lk, cn_buf_term(&lk->saved[i]), arg)) {
      *out = lk->saved[i];
      memmove(lk->saved + i, lk->saved + i + 1,
              (lk->nsaved - i - 1) * sizeof(cn_buf));
      lk->nsaved--;
      return RX_OK;
    }
  }
  for (;;) {
    size_t keep = lk->nsaved;
    cn_buf m;
    int rc;
    lk->nsaved = 0; /* rx() must not hand back a saved one */
    rc = rx(lk, timeout_ms, &m);
    lk->nsaved = keep;
    if (rc != RX_OK)
      return rc;
    if (pred(lk, cn_buf_term(&m), arg)) {
      *out = m;
      return RX_OK;
    }
    save(lk, &m);
  }
}

static void update_known(locker *lk, cn_term m) {
  cn_term l;
  uint32_t node;
  if (cn_match(m, "{add_to_known, ~t}", &l) == 0) {
    cn_iter it;
    cn_term e;
    if (cn_iter_init(&it, l, NULL) == 0)
      while (cn_iter_next(&it, &e))
        if (get_node(e, &node) == 0 && lk->nk < MAXN)
          lk->known[lk->nk++] = node;
  } else if (cn_match(m, "{remove_from_known, ~t}", &l) == 0 &&
             get_node(l, &node) == 0) {
    size_t i;
    for (i = 0; i < lk->nk; i++)
      if (lk->known[i] == node) {
        lk->known[i] = lk->known[--lk->nk];
        break;
      }
  }
}

static bool is_known_upd(locker *lk, cn_term m, void *arg) {
  (void)lk;
  (void)arg;
  return cn_match(m, "{add_to_known, _}") == 0 ||
         cn_match(m, "{remove_from_known, _}") == 0;
}

/* update_locker_known/1: takes the pending updates now. */
static void drain_known(locker *lk) {
  cn_buf m;
  while (rx_match(lk, is_known_upd, NULL, 0, &m) == RX_OK) {
    update_known(lk, cn_buf_term(&m));
    cn_buf_free(&m);
  }
}

/* locker_lock_id/2: {global, lists:sort([self(), Pid])} */
static int lock_id(locker *lk, cn_pid his, cn_buf *out) {
  cn_buf a = CN_BUF_INIT, b = CN_BUF_INIT;
  int rc;
  cn_put_pid(&a, &lk->self);
  cn_put_pid(&b, &his);
  if (cn_term_compare(cn_buf_term(&a), cn_buf_term(&b)) <= 0)
    rc = cn_build(out, "{global, [~p, ~p]}", &lk->self, &his);
  else
    rc = cn_build(out, "{global, [~p, ~p]}", &his, &lk->self);
  cn_buf_free(&a);
  cn_buf_free(&b);
  return rc;
}

/* lock_nodes_safely/3 */
static bool lock_nodes_safely(locker *lk, cn_term id, const uint32_t *extra,
                              size_t nextra) {
  cn__global *g = lk->g;
  uint32_t all[MAXN + 1], first, second[MAXN + 2], rest[MAXN];
  size_t i, n2, nr;
  for (i = 0; i < lk->nk; i++)
    all[i] = lk->known[i];
  all[lk->nk] = g->self;
  first = the_boss(all, lk->nk + 1);
  if (!(first == g->self || local_can_set(g, id)))
    return false;
  if (!set_lock(g, id, &first, 1))
    return false;
  drain_known(lk);
  second[0] = g->self;
  for (i = 0; i < nextra; i++)
    second[1 + i] = extra[i];
  n2 = minus(second, 1 + nextra, &first, 1, second);
  if (!set_lock(g, id, second, n2)) {
    del_lock(g, id, &first, 1);
    return false;
  }
  nr = minus(lk->known, lk->nk, &first, 1, rest);
  if (!set_lock(g, id, rest, nr)) {
    del_lock(g, id, &first, 1);
    del_lock(g, id, second, n2);
    return false;
  }
  return true;
}

static void send_lock_set(locker *lk, bool ok, cn_pid his, int64_t his_tag) {
  cn_buf b = CN_BUF_INIT;
  size_t i;
  cn_put_tuple(&b, 5);
  cn_put_atom(&b, "lock_set");
  cn_put_pid(&b, &lk->self);
  cn_put_atom(&b, ok ? "true" : "false");
  cn_put_list(&b, (uint32_t)lk->nk);
  for (i = 0; i < lk->nk; i++)
    cn_put_atom(&b, nn(lk->known[i]));
  cn_put_nil(&b);
  cn_put_int(&b, his_tag);
  if (!b.err)
    gns_cast(lk->g, his.node, &b);
  cn_buf_free(&b);
}

static void call_fun(locker *lk, cn_term fun) {
  cn_term nodes, msg, e;
  cn_iter it;
  uint32_t node;
  cn_buf b = CN_BUF_INIT;
  if (cn_match(fun, "{send, ~t, ~t}", &nodes, &msg) != 0 ||
      cn_put_term(&b, msg) != 0 || cn_iter_init(&it, nodes, NULL) != 0) {
    cn_buf_free(&b);
    return;
  }
  while (cn_iter_next(&it, &e))
    if (get_node(e, &node) == 0)
      gns_cast(lk->g, node, &b);
  cn_buf_free(&b);
}

typedef struct cancel_arg {
  uint32_t node;
  int64_t tag;
} cancel_arg;

static bool is_cancel(locker *lk, cn_term m, void *arg) {
  cancel_arg *c = arg;
  cn_term nt, tt;
  uint32_t node;
  (void)lk;
  return cn_match(m, "{cancel, ~t, ~t, _}", &nt, &tt) == 0 &&
         get_node(nt, &node) == 0 && node == c->node &&
         tag_is(tt, true, c->tag);
}

/* wait_cancel_lock/6 */
static void wait_cancel_lock(locker *lk, uint32_t node, cn_term id, int64_t tag,
                             const uint32_t *known, size_t nk) {
  cancel_arg c = {node, tag};
  cn_buf m;
  cn_term fun;
  if (rx_match(lk, is_cancel, &c, -1, &m) != RX_OK)
    return;
  if (cn_match(cn_buf_term(&m), "{cancel, _, _, ~t}", &fun) == 0)
    call_fun(lk, fun);
  delete_global_lock(lk->g, id, known, nk);
  cn_buf_free(&m);
}

static void remove_him(locker *lk, uint32_t node, int64_t tag) {
  size_t i;
  for (i = 0; i < lk->nh; i++)
    if (lk->hims[i].node == node && lk->hims[i].my_tag == tag) {
      lk->hims[i] = lk->hims[--lk->nh];
      return;
    }
}

static him *find_him(locker *lk, uint32_t node) {
  size_t i;
  for (i = 0; i < lk->nh; i++)
    if (lk->hims[i].node == node)
      return &lk->hims[i];
  return NULL;
}

static void cast_lock_is_set(locker *lk, uint32_t node, int64_t tag,
                             cn_term id) {
  cn_buf b = CN_BUF_INIT;
  if (cn_build(&b, "{lock_is_set, ~a, ~i, ~t}", nn(node), tag, id) == 0)
    cn_cast(lk->g->rt, cn_to_name(GNS), cn_buf_term(&b));
  cn_buf_free(&b);
}

/* the_locker_message({lock_set, Pid, true, HisKnown, MyTag}, S): the
 * other locker has locked its partition; lock ours. */
static void passive_lock(locker *lk, cn_pid pid, int64_t tag) {
  him *h = find_him(lk, pid.node), copy;
  cn_buf id = CN_BUF_INIT;
  uint32_t known2[MAXN + 1];
  bool ok;
  size_t i;
  if (!h) {
    send_lock_set(lk, false, pid, 0);
    return;
  }
  if (h->my_tag != tag)
    return;
  copy = *h;
  if (lock_id(lk, pid, &id) != 0)
    return;
  ok = lock_nodes_safely(lk, cn_buf_term(&id), NULL, 0);
  send_lock_set(lk, ok, pid, copy.his_tag);
  if (ok) {
    known2[0] = lk->g->self;
    for (i = 0; i < lk->nk; i++)
      known2[1 + i] = lk->known[i];
    cast_lock_is_set(lk, copy.node, tag, cn_buf_term(&id));
    wait_cancel_lock(lk, copy.node, cn_buf_term(&id), tag, known2, lk->nk + 1);
    lk->just_synced = true;
    remove_him(lk, copy.node, tag);
  } else {
    lk->just_synced = false;
  }
  cn_buf_free(&id);
}

typedef struct lis_arg {
  uint32_t node;
  int64_t tag;
} lis_arg;

static bool is_lock_set_or_cancel(locker *lk, cn_term m, void *arg) {
  lis_arg *a = arg;
  cn_term pt, nt, tt;
  cn_pid p;
  uint32_t node;
  (void)lk;
  if ((cn_match(m, "{lock_set, ~t, _, _, _}", &pt) == 0 ||
       cn_match(m, "{lock_set, ~t, _, _}", &pt) == 0) &&
      cn_get_pid(pt, &p) == 0 && p.node == a->node)
    return true;
  return cn_match(m, "{cancel, ~t, ~t, _}", &nt, &tt) == 0 &&
         get_node(nt, &node) == 0 && node == a->node &&
         tag_is(tt, true, a->tag);
}

/* lock_is_set/5: we locked both partitions' sides; wait for his answer. */
static void lock_is_set_wait(locker *lk, him h, cn_term id,
                             const uint32_t *known1, size_t nk1) {
  lis_arg a = {h.node, h.my_tag};
  for (;;) {
    cn_buf m;
    cn_term mt, fun, tt;
    if (rx_match(lk, is_lock_set_or_cancel, &a, -1, &m) != RX_OK)
      return;
    mt = cn_buf_term(&m);
    if (cn_match(mt, "{cancel, _, _, ~t}", &fun) == 0) {
      call_fun(lk, fun);
      delete_global_lock(lk->g, id, known1, nk1);
      remove_him(lk, h.node, h.my_tag);
      cn_buf_free(&m);
      return;
    }
    if (cn_match(mt, "{lock_set, _, true, _, ~t}", &tt) == 0 ||
        cn_match(mt, "{lock_set, _, true, _}") == 0) {
      if (cn_match(mt, "{lock_set, _, true, _}") != 0 &&
          !tag_is(tt, true, h.my_tag)) {
        cn_buf_free(&m);
        continue; /* an old session's */
      }
      cast_lock_is_set(lk, h.node, h.my_tag, id);
      wait_cancel_lock(lk, h.node, id, h.my_tag, known1, nk1);
      lk->just_synced = true;
      remove_him(lk, h.node, h.my_tag);
      cn_buf_free(&m);
      return;
    }
    if (cn_match(mt, "{lock_set, _, false, _, ~t}", &tt) == 0 &&
        !tag_is(tt, true, h.my_tag)) {
      cn_buf_free(&m);
      continue;
    }
    /* false for this session: give up, another round will come. */
    delete_global_lock(lk->g, id, known1, nk1);
    cn_buf_free(&m);
    return;
  }
}

/* select_node/1 */
static void select_node(locker *lk) {
  him others[MAXN], h;
  size_t i, j, n = 0;
  uint32_t known1[MAXN + 2];
  cn_buf id = CN_BUF_INIT;
  for (i = 0; i < lk->nh; i++) {
    for (j = 0; j < lk->nk; j++)
      if (lk->known[j] == lk->hims[i].node)
        break;
    if (j == lk->nk)
      others[n++] = lk->hims[i];
  }
  if (n == 0)
    return;
  h = others[(size_t)rand() % n];
  if (lock_id(lk, h.locker, &id) != 0)
    return;
  if (lock_nodes_safely(lk, cn_buf_term(&id), &h.node, 1)) {
    known1[0] = lk->g->self;
    known1[1] = h.node;
    for (i = 0; i < lk->nk; i++)
      known1[2 + i] = lk->known[i];
    send_lock_set(lk, true, h.locker, h.his_tag);
    lock_is_set_wait(lk, h, cn_buf_term(&id), known1, lk->nk + 2);
  }
  cn_buf_free(&id);
}

static void locker_message(locker *lk, cn_term m) {
  cn_term pt, vt, tt, mt, nt;
  cn_pid p;
  int64_t v, histag, mytag;
  uint32_t node;
  if (cn_match(m, "{his_the_locker, ~t, {~i, _}, ~i, ~i}", &pt, &v, &histag,
               &mytag) == 0 &&
      cn_get_pid(pt, &p) == 0) {
    if (lk->nh < MAXN) {
      him *h = &lk->hims[lk->nh++];
      h->node = p.node;
      h->locker = p;
      h->vsn = v;
      h->my_tag = mytag;
      h->his_tag = histag;
    }
  } else if (cn_match(m, "{cancel, ~t, ~t, no_fun}", &nt, &tt) == 0 &&
             get_node(nt, &node) == 0) {
    if (cn_get_int64(tt, &v) == 0)
      remove_him(lk, node, v);
  } else if (cn_match(m, "{lock_set, ~t, true, _, ~t}", &pt, &mt) == 0 &&
             cn_get_pid(pt, &p) == 0 && cn_get_int64(mt, &mytag) == 0) {
    passive_lock(lk, p, mytag);
  } else if (cn_match(m, "{lock_set, ~t, true, _}", &pt) == 0 &&
             cn_get_pid(pt, &p) == 0) {
    him *h = find_him(lk, p.node);
    if (h)
      passive_lock(lk, p, h->my_tag);
    else
      send_lock_set(lk, false, p, 0);
  } else if (cn_match(m, "{add_to_known, _}") == 0 ||
             cn_match(m, "{remove_from_known, _}") == 0) {
    update_known(lk, m);
  }
  (void)vt;
}

static void *locker_main(void *arg) {
  cn__global *g = arg;
  locker *lk = calloc(1, sizeof(*lk));
  pthread_mutex_lock(&g->mu);
  if (lk) {
    lk->g = g;
    if (cn_self(g->rt, &lk->self) == 0)
      g->locker = lk->self;
  }
  g->locker_ready = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  if (!lk || !lk->self.id)
    return NULL;
  srand((unsigned)uv_hrtime());
  while (!atomic_load(&g->stop)) {
    cn_buf m;
    long tmo;
    int rc = rx(lk, 0, &m);
    if (rc == RX_OK) {
      locker_message(lk, cn_buf_term(&m));
      cn_buf_free(&m);
      continue;
    }
    if (rc == RX_STOP)
      break;
    if (lk->nh == 0)
      tmo = -1;
    else if (lk->just_synced)
      tmo = 0;
    else if (lk->nk == 0)
      tmo = 200;
    else
      tmo = 1000 + 100 * (long)lk->nk < 3000 ? 1000 + 100 * (long)lk->nk : 3000;
    lk->just_synced = false;
    rc = tmo == 0 ? RX_TIMEOUT : rx(lk, tmo, &m);
    if (rc == RX_OK) {
      locker_message(lk, cn_buf_term(&m));
      cn_buf_free(&m);
    } else if (rc == RX_TIMEOUT) {
      bool set;
      pthread_mutex_lock(&g->mu);
      set = global_lock_set(g);
      pthread_mutex_unlock(&g->mu);
      if (!set)
        select_node(lk);
    } else {
      break;
    }
  }
  while (lk->nsaved)
    cn_buf_free(&lk->saved[--lk->nsaved]);
  free(lk->saved);
  free(lk);
  return NULL;
}

/* ---- Start and stop --------------------------------------------------- */

int cn__global_start(cn__dist *d) {
  cn__global *g = calloc(1, sizeof(*g));
  cn_start_options o = {GNS, NULL};
  cn_pid pid;
  int rc;
  if (!g)
    return CN_ENOMEM;
  g->d = d;
  g->rt = d->rt;
  g->self = d->rt->node;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->xcre = (int64_t)((uv_hrtime() & 0x7fffffffULL) << 32) + d->creation;
  g->next_tag = (int64_t)(uv_hrtime() % 1000000);
  if (pthread_create(&g->thread, NULL, locker_main, g) != 0) {
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    return CN_ESYSTEM;
  }
  g->thread_started = true;
  pthread_mutex_lock(&g->mu);
  while (!g->locker_ready)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
  d->global = g;
  if ((rc = cn_start(d->rt, &gns_ops, g, &o, &pid)) != 0) {
    cn__global_stop(d);
    return rc;
  }
  return 0;
}

void cn__global_stop(cn__dist *d) {
  cn__global *g = d->global;
  if (!g || !g->thread_started)
    return;
  atomic_store(&g->stop, 1);
  pthread_join(g->thread, NULL);
  g->thread_started = false;
}

void cn__global_free(cn__dist *d) {
  cn__global *g = d->global;
  size_t i;
  if (!g)
    return;
  cn__global_stop(d);
  for (i = 0; i < g->n_nodes; i++) {
    reset_node_state(g->nodes[i]);
    free(g->nodes[i]);
  }
  free(g->nodes);
  while (g->n_names)
    name_drop(g, &g->names[0]);
  free(g->names);
  while (g->n_locks)
    lock_drop(g, &g->locks[0]);
  free(g->locks);
  for (i = 0; i < g->n_lost; i++)
    cn_buf_free(&g->lost[i].xcre);
  free(g->lost);
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g);
  d->global = NULL;
}

/* ---- The public calls ------------------------------------------------- */

int cn_global_whereis_term(cn_runtime *rt, cn_term name, cn_pid *pid) {
  cn__global *g = global_of(rt);
  gname *e;
  int rc = CN_ENOENT;
  if (!g)
    return CN_ENOTSUP;
  if (!pid || !name.len)
    return CN_EINVAL;
  pthread_mutex_lock(&g->mu);
  if ((e = name_find(g, name)) &&
      (e->pid.node != g->self || cn_is_alive(rt, e->pid))) {
    *pid = e->pid;
    rc = 0;
  }
  pthread_mutex_unlock(&g->mu);
  return rc;
}

int cn_global_whereis(cn_runtime *rt, const char *name, cn_pid *pid) {
  cn_buf b = CN_BUF_INIT;
  int rc;
  if (!name)
    return CN_EINVAL;
  if ((rc = cn_put_atom(&b, name)) == 0)
    rc = cn_global_whereis_term(rt, cn_buf_term(&b), pid);
  cn_buf_free(&b);
  return rc;
}

int cn_global_registered_names(cn_runtime *rt, cn_buf *out) {
  cn__global *g = global_of(rt);
  size_t i;
  if (!g)
    return CN_ENOTSUP;
  if (!out)
    return CN_EINVAL;
  pthread_mutex_lock(&g->mu);
  cn_put_list(out, (uint32_t)g->n_names);
  for (i = 0; i < g->n_names; i++)
    cn_put_term(out, cn_buf_term(&g->names[i].name));
  cn_put_nil(out);
  pthread_mutex_unlock(&g->mu);
  return out->err;
}

/* trans_all_known/1 around one multi_call of req to every node. */
static int trans_all_known(cn__global *g, cn_term name, cn_term req,
                           bool is_register, cn_pid pid) {
  uint32_t known[MAXN], nodes[MAXN + 1], now[MAXN], extra[MAXN], boss;
  size_t nk, n, i, k;
  unsigned times = 0;
  cn_buf id = CN_BUF_INIT, reply = CN_BUF_INIT;
  cn_pid self;
  int rc = 0;
  if ((rc = cn_self(g->rt, &self)) != 0 ||
      (rc = cn_build(&id, "{global, ~p}", &self)) != 0)
    return rc;
  for (;;) {
    nk = known_now(g, known, MAXN);
    nodes[0] = g->self;
    for (i = 0; i < nk; i++)
      nodes[1 + i] = known[i];
    n = nk + 1;
    boss = the_boss(nodes, n);
    if (set_lock(g, cn_buf_term(&id), &boss, 1)) {
      if (set_lock(g, cn_buf_term(&id), nodes, n)) {
        k = known_now(g, now, MAXN);
        if (minus(now, k, known, nk, extra) == 0)
          break;
      }
      del_lock(g, cn_buf_term(&id), &boss, 1);
    }
    if (atomic_load(&g->stop)) {
      cn_buf_free(&id);
      return CN_ESHUTDOWN;
    }
    random_sleep(times++);
  }
  if (is_register) {
    cn_pid cur;
    bool dup = false;
    pthread_mutex_lock(&g->mu);
    for (i = 0; i < g->n_names; i++)
      if (cn_pid_equal(&g->names[i].pid, &pid))
        dup = true; /* check_dupname/2 */
    pthread_mutex_unlock(&g->mu);
    if (dup || cn_global_whereis_term(g->rt, name, &cur) == 0)
      rc = CN_EEXIST;
  }
  if (rc == 0) {
    for (i = 0; i < n; i++) {
      cn_dest to = nodes[i] == g->self ? cn_to_name(GNS)
                                       : cn_to_remote(GNS, nn(nodes[i]));
      cn_buf_reset(&reply);
      cn_call(g->rt, to, req, CALL_MS, &reply);
    }
  }
  delete_global_lock(g, cn_buf_term(&id), nodes, n);
  cn_buf_free(&id);
  cn_buf_free(&reply);
  return rc;
}

int cn_global_register(cn_runtime *rt, const char *name, cn_pid pid) {
  cn__global *g = global_of(rt);
  cn_buf nb = CN_BUF_INIT, req = CN_BUF_INIT;
  int rc;
  if (!g)
    return CN_ENOTSUP;
  if (!name)
    return CN_EINVAL;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  cn_put_atom(&nb, name);
  /* {register, Name, Pid, fun global:random_exit_name/3} */
  cn_put_tuple(&req, 4);
  cn_put_atom(&req, "register");
  cn_put_atom(&req, name);
  cn_put_pid(&req, &pid);
  put_random_exit_fun(&req);
  if ((rc = nb.err ? nb.err : req.err) == 0)
    rc = trans_all_known(g, cn_buf_term(&nb), cn_buf_term(&req), true, pid);
  cn_buf_free(&nb);
  cn_buf_free(&req);
  return rc;
}

int cn_global_unregister(cn_runtime *rt, const char *name) {
  cn__global *g = global_of(rt);
  cn_buf nb = CN_BUF_INIT, req = CN_BUF_INIT;
  cn_pid cur, none = {0, 0, 0, 0};
  int rc;
  if (!g)
    return CN_ENOTSUP;
  if (!name)
    return CN_EINVAL;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  cn_put_atom(&nb, name);
  if ((rc = nb.err) == 0 &&
      cn_global_whereis_term(rt, cn_buf_term(&nb), &cur) == 0 &&
      (rc = cn_build(&req, "{unregister, ~a}", name)) == 0)
    rc = trans_all_known(g, cn_buf_term(&nb), cn_buf_term(&req), false, none);
  cn_buf_free(&nb);
  cn_buf_free(&req);
  return rc;
}

int cn_global_sync(cn_runtime *rt, cn_ms timeout) {
  cn__global *g = global_of(rt);
  uint64_t deadline = uv_hrtime() / 1000000 +
                      (timeout < 0 ? (uint64_t)1 << 40 : (uint64_t)timeout);
  if (!g)
    return CN_ENOTSUP;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  for (;;) {
    const char *names[MAXN];
    size_t i, n = cn_dist_nodes_of(rt, 0, names, MAXN);
    bool all = true;
    pthread_mutex_lock(&g->mu);
    for (i = 0; i < n && i < MAXN && all; i++) {
      uint32_t idx;
      gnode *x;
      if (cn_node_find(names[i], strlen(names[i]), &idx) != 0 ||
          !(x = gn_find(g, idx)) || !(x->synced || x->known))
        all = false;
    }
    pthread_mutex_unlock(&g->mu);
    if (all)
      return 0;
    if (uv_hrtime() / 1000000 >= deadline)
      return CN_ETIMEDOUT;
    usleep(20000);
  }
}
