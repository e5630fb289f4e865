/* The built-in exports: what operators' tools call on a node (rpc,
 * erpc, erl_call), answered from the runtime's and the distribution
 * layer's own state.  Each is an ordinary export (runtime/export.c),
 * registered when distribution starts, and runs on a worker thread.
 *
 * Values that the BEAM has and a C node does not (reductions, atoms,
 * code, ETS) are reported as 0, never invented; process_info reports
 * what the runtime knows of a process: its name, its mailbox, its status
 * and its module (current_function is {Module, loop, 0}, Module being the
 * server's cn_server_ops.name, as sys reports it), and, asked of the
 * process itself in its own turn (cn__process_links), its links and
 * monitors.  See the README, "rpc, erpc and erl_call". */
#include "dist_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIST_SCHED 0

static int badarg(cn_buf *out) {
  cn_buf_reset(out);
  cn_put_atom(out, "badarg");
  return CN_ERROR;
}

static int ret_atom(cn_buf *out, const char *a) {
  cn_put_atom(out, a);
  return CN_RETURN;
}

/* ---- Nodes ------------------------------------------------------------ */

enum { N_VISIBLE = 1, N_HIDDEN = 2 };

typedef struct nodes_req {
  cn__dist *d;
  int which; /* N_* bits */
  cn_buf *out;
} nodes_req;

/* On the dist loop: the connected nodes of the kinds asked for, as list
 * cells (the caller ends the list).  A connection is visible when both
 * sides are published, as in erts. */
static void nodes_on_loop(void *arg) {
  nodes_req *r = arg;
  cn__dist *d = r->d;
  size_t i;
  for (i = 0; i < d->nodes_cap; i++) {
    cn__dnode *dn = d->nodes[i];
    int kind;
    if (!dn || !dn->conn || dn->conn->state != C_UP)
      continue;
    kind = (d->flags & CN__DFLAG_PUBLISHED) &&
                   (dn->conn->peer_flags & CN__DFLAG_PUBLISHED)
               ? N_VISIBLE
               : N_HIDDEN;
    if (r->which & kind) {
      cn_put_list(r->out, 1);
      cn_put_atom(r->out, cn_node_name(dn->node));
    }
  }
}

static void put_nodes(cn__dist *d, int which, bool self, cn_buf *out) {
  nodes_req r = {d, which, out};
  if (self) {
    cn_put_list(out, 1);
    cn_put_atom(out, d->name);
  }
  cn__sched_run(d->rt, DIST_SCHED, nodes_on_loop, &r);
  cn_put_nil(out);
}

static int bi_node(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn__dist *d = arg;
  (void)rt;
  (void)args;
  return ret_atom(out, d->name);
}

static int bi_nodes0(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)rt;
  (void)args;
  put_nodes(arg, N_VISIBLE, false, out);
  return CN_RETURN;
}

static int nodes_bit(cn_term a, int *which, bool *self) {
  if (cn_is_atom(a, "visible"))
    *which |= N_VISIBLE;
  else if (cn_is_atom(a, "hidden"))
    *which |= N_HIDDEN;
  else if (cn_is_atom(a, "connected"))
    *which |= N_VISIBLE | N_HIDDEN;
  else if (cn_is_atom(a, "this"))
    *self = true;
  else if (cn_is_atom(a, "known")) {
    *which |= N_VISIBLE | N_HIDDEN;
    *self = true;
  } else
    return -1;
  return 0;
}

static int bi_nodes1(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_term a, e;
  cn_iter it;
  int which = 0;
  bool self = false;
  (void)rt;
  if (cn_match(args, "[~t]", &a) != 0)
    return badarg(out);
  if (cn_term_typeof(a) == CN_T_ATOM) {
    if (nodes_bit(a, &which, &self) != 0)
      return badarg(out);
  } else if (cn_term_typeof(a) == CN_T_LIST &&
             cn_iter_init(&it, a, NULL) == 0) {
    while (cn_iter_next(&it, &e))
      if (nodes_bit(e, &which, &self) != 0)
        return badarg(out);
  } else if (cn_term_typeof(a) != CN_T_NIL) {
    return badarg(out);
  }
  put_nodes(arg, which, self, out);
  return CN_RETURN;
}

/* ---- Names and processes --------------------------------------------- */

static int bi_registered(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)args;
  (void)arg;
  cn__names_list(rt, out);
  return CN_RETURN;
}

static int bi_whereis(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  char name[1024];
  cn_pid pid;
  (void)arg;
  if (cn_match(args, "[~a]", name, sizeof(name)) != 0)
    return badarg(out);
  if (cn_whereis(rt, name, &pid) != 0)
    return ret_atom(out, "undefined");
  cn_put_pid(out, &pid);
  return CN_RETURN;
}

static void put_pid_cell(cn_proc *p, void *arg) {
  cn_buf *out = arg;
  cn_put_list(out, 1);
  cn_put_pid(out, &p->pid);
}

static int bi_processes(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)args;
  (void)arg;
  cn__each_proc(rt, put_pid_cell, out);
  cn_put_nil(out);
  return CN_RETURN;
}

static const char *module_of(cn_proc *p) {
  const cn_server_ops *ops = atomic_load(&p->ops);
  return ops && ops->name ? ops->name : "cnode_server";
}

/* The items only the process may read, asked of it once per request
 * (cn__process_links): {Links, Monitors, MonitoredBy, TrapExit}. */
typedef struct own_info {
  int asked, rc;
  cn_buf b;
  cn_term e[4];
} own_info;

static int own_item(cn_runtime *rt, cn_proc *p, own_info *oi, int i,
                    const char *key, cn_buf *out) {
  if (!oi->asked) {
    oi->asked = 1;
    oi->rc = cn__process_links(rt, p->pid, 5000, &oi->b);
    if (oi->rc == 0 &&
        cn_match(cn_buf_term(&oi->b), "{~t, ~t, ~t, ~t}", &oi->e[0], &oi->e[1],
                 &oi->e[2], &oi->e[3]) != 0)
      oi->rc = CN_EBADTERM;
  }
  if (oi->rc != 0)
    return oi->rc == CN_ENOPROC ? 1 : -2;
  cn_build(out, "{~a, ~t}", key, oi->e[i]);
  return 0;
}

/* One process_info item for p into out.  Returns 0; -1 for an item we do
 * not know (badarg, as erlang:process_info/2); 1 when the process died
 * meanwhile (undefined); -2 when it did not answer. */
static int info_item(cn_runtime *rt, cn_proc *p, own_info *oi, cn_term item,
                     cn_buf *out) {
  char name[1024];
  cn_proc_info pi;
  if (cn_is_atom(item, "links"))
    return own_item(rt, p, oi, 0, "links", out);
  if (cn_is_atom(item, "monitors"))
    return own_item(rt, p, oi, 1, "monitors", out);
  if (cn_is_atom(item, "monitored_by"))
    return own_item(rt, p, oi, 2, "monitored_by", out);
  if (cn_is_atom(item, "trap_exit"))
    return own_item(rt, p, oi, 3, "trap_exit", out);
  if (cn_is_atom(item, "registered_name")) {
    if (cn__proc_name(rt, p->pid, name, sizeof(name)) == 0)
      cn_build(out, "{registered_name, ~a}", name);
    else
      cn_put_nil(out); /* as the BEAM answers for a nameless process */
  } else if (cn_is_atom(item, "message_queue_len")) {
    memset(&pi, 0, sizeof(pi));
    cn_process_info(rt, p->pid, &pi);
    cn_build(out, "{message_queue_len, ~u}", (uint64_t)pi.message_queue_len);
  } else if (cn_is_atom(item, "memory")) {
    /* The process struct and its queued messages' bytes are not
     * tracked apart; the struct is what a process costs at rest. */
    cn_build(out, "{memory, ~u}", (uint64_t)sizeof(cn_proc));
  } else if (cn_is_atom(item, "status")) {
    cn_build(out, "{status, ~a}",
             (atomic_load(&p->state) & CN__P_SCHED) ? "runnable" : "waiting");
  } else if (cn_is_atom(item, "current_function")) {
    cn_build(out, "{current_function, {~a, loop, 0}}", module_of(p));
  } else if (cn_is_atom(item, "initial_call")) {
    cn_build(out, "{initial_call, {~a, init, 1}}", module_of(p));
  } else if (cn_is_atom(item, "dictionary")) {
    cn_build(out, "{dictionary, []}");
  } else if (cn_is_atom(item, "reductions")) {
    cn_build(out, "{reductions, 0}");
  } else {
    return -1;
  }
  return 0;
}

/* The process of a pid argument: 0 with *p held, 1 for a dead local pid
 * (undefined), -1 for badarg (not a pid, or another node's). */
static int info_proc(cn_runtime *rt, cn_term t, cn_proc **p) {
  cn_pid pid;
  if (cn_term_typeof(t) != CN_T_PID || cn_get_pid(t, &pid) != 0 ||
      pid.node != cn_runtime_node(rt))
    return -1;
  if (!(*p = cn__lookup(rt, pid)))
    return 1;
  if ((*p)->thread || (atomic_load(&(*p)->state) & CN__P_EXITING)) {
    cn__proc_unref(*p);
    return 1;
  }
  return 0;
}

static int info_result(int rc, cn_buf *out);

static int bi_pinfo1(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  static const char *items[] = {
      "registered_name", "current_function",  "initial_call",
      "status",          "message_queue_len", "links",
      "dictionary",      "trap_exit",         "reductions",
      "monitors",        "monitored_by"};
  own_info oi;
  cn_term t;
  cn_proc *p;
  size_t i;
  int rc;
  (void)arg;
  if (cn_match(args, "[~t]", &t) != 0 || (rc = info_proc(rt, t, &p)) < 0)
    return badarg(out);
  if (rc > 0)
    return ret_atom(out, "undefined");
  memset(&oi, 0, sizeof(oi));
  cn_buf_init(&oi.b);
  for (i = 0; rc == 0 && i < sizeof(items) / sizeof(items[0]); i++) {
    char store[64], s2[512];
    cn_buf item, one;
    cn_buf_init_with(&item, store, sizeof(store));
    cn_buf_init_with(&one, s2, sizeof(s2));
    cn_put_atom(&item, items[i]);
    rc = info_item(rt, p, &oi, cn_buf_term(&item), &one);
    if (rc == 0 && cn_term_typeof(cn_buf_term(&one)) != CN_T_NIL) {
      cn_put_list(out, 1);
      cn_put_term(out, cn_buf_term(&one));
    }
    cn_buf_free(&item);
    cn_buf_free(&one);
  }
  cn_put_nil(out);
  cn__proc_unref(p);
  cn_buf_free(&oi.b);
  return info_result(rc, out);
}

/* process_info's answer once the items are in out: rc from info_item. */
static int info_result(int rc, cn_buf *out) {
  if (rc == 0)
    return CN_RETURN;
  if (rc == 1) {
    cn_buf_reset(out);
    return ret_atom(out, "undefined");
  }
  if (rc == -1)
    return badarg(out);
  cn_buf_reset(out);
  cn_put_atom(out, "timeout"); /* the process did not answer in 5 s */
  return CN_EXIT;
}

static int bi_pinfo2(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_term t, what, e;
  own_info oi;
  cn_iter it;
  cn_proc *p;
  int rc;
  (void)arg;
  if (cn_match(args, "[~t, ~t]", &t, &what) != 0 ||
      (rc = info_proc(rt, t, &p)) < 0)
    return badarg(out);
  if (rc > 0)
    return ret_atom(out, "undefined");
  memset(&oi, 0, sizeof(oi));
  cn_buf_init(&oi.b);
  rc = 0;
  if (cn_term_typeof(what) == CN_T_ATOM) {
    rc = info_item(rt, p, &oi, what, out);
  } else if (cn_term_typeof(what) == CN_T_NIL) {
    cn_put_nil(out);
  } else if (cn_term_typeof(what) == CN_T_LIST &&
             cn_iter_init(&it, what, NULL) == 0) {
    while (rc == 0 && cn_iter_next(&it, &e)) {
      cn_buf one;
      char s2[512];
      cn_buf_init_with(&one, s2, sizeof(s2));
      if ((rc = info_item(rt, p, &oi, e, &one)) == 0) {
        cn_put_list(out, 1);
        /* A list of items answers {registered_name, []} for none. */
        if (cn_term_typeof(cn_buf_term(&one)) == CN_T_NIL)
          cn_build(out, "{registered_name, []}");
        else
          cn_put_term(out, cn_buf_term(&one));
      }
      cn_buf_free(&one);
    }
    cn_put_nil(out);
  } else {
    rc = -1;
  }
  cn__proc_unref(p);
  cn_buf_free(&oi.b);
  return info_result(rc, out);
}

/* ---- The system ------------------------------------------------------- */

static int bi_sysinfo(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  char key[64], text[256];
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  (void)arg;
  if (cn_match(args, "[~a]", key, sizeof(key)) != 0)
    return badarg(out);
  if (strcmp(key, "otp_release") == 0) {
    /* The release whose distribution protocol the node speaks. */
    cn_put_charlist(out, "25", 2);
  } else if (strcmp(key, "system_version") == 0) {
    snprintf(text, sizeof(text), "cnode %s [C node] [schedulers:%u]\n",
             cn_version_string(), rt->nsched);
    cn_put_charlist(out, text, strlen(text));
  } else if (strcmp(key, "version") == 0) {
    cn_put_charlist(out, cn_version_string(), strlen(cn_version_string()));
  } else if (strcmp(key, "machine") == 0) {
    cn_put_charlist(out, "cnode", 5);
  } else if (strcmp(key, "process_count") == 0) {
    cn_put_uint(out, cn_process_count(rt));
  } else if (strcmp(key, "process_limit") == 0) {
    cn_put_uint(out, rt->max_procs);
  } else if (strcmp(key, "schedulers") == 0 ||
             strcmp(key, "schedulers_online") == 0) {
    cn_put_uint(out, rt->nsched);
  } else if (strcmp(key, "logical_processors") == 0 ||
             strcmp(key, "logical_processors_online") == 0 ||
             strcmp(key, "logical_processors_available") == 0) {
    if (ncpu > 0)
      cn_put_int(out, ncpu);
    else
      cn_put_atom(out, "unknown");
  } else if (strcmp(key, "wordsize") == 0) {
    cn_put_uint(out, sizeof(void *));
  } else if (strcmp(key, "port_count") == 0 ||
             strcmp(key, "thread_pool_size") == 0) {
    cn_put_uint(out, 0);
  } else {
    return badarg(out);
  }
  return CN_RETURN;
}

/* Resident bytes, from /proc/self/statm (0 when unreadable). */
static uint64_t rss_bytes(void) {
  unsigned long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  if (fscanf(f, "%lu %lu", &size, &res) != 2)
    res = 0;
  fclose(f);
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int bi_memory(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  uint64_t total = rss_bytes();
  uint64_t procs = (uint64_t)cn_process_count(rt) * sizeof(cn_proc);
  (void)args;
  (void)arg;
  if (procs > total)
    total = procs;
  cn_build(out,
           "[{total, ~u}, {processes, ~u}, {processes_used, ~u}, "
           "{system, ~u}, {atom, 0}, {atom_used, 0}, {binary, 0}, "
           "{code, 0}, {ets, 0}]",
           total, procs, procs, total - procs);
  return CN_RETURN;
}

static uint64_t ms_of(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int bi_stats(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn__dist *d = arg;
  cn_dist_stats st;
  uint64_t now, last;
  (void)rt;
  if (cn_match(args, "[runtime]") == 0) {
    now = ms_of(CLOCK_PROCESS_CPUTIME_ID);
    last = atomic_exchange(&d->bi_last_cpu, now);
    cn_build(out, "{~u, ~u}", now, now - (last ? last : 0));
  } else if (cn_match(args, "[wall_clock]") == 0) {
    now = ms_of(CLOCK_MONOTONIC) - d->bi_start_ms;
    last = atomic_exchange(&d->bi_last_wall, now);
    cn_build(out, "{~u, ~u}", now, now - last);
  } else if (cn_match(args, "[reductions]") == 0 ||
             cn_match(args, "[exact_reductions]") == 0 ||
             cn_match(args, "[context_switches]") == 0) {
    cn_build(out, "{0, 0}"); /* a C node counts none */
  } else if (cn_match(args, "[garbage_collection]") == 0) {
    cn_build(out, "{0, 0, 0}");
  } else if (cn_match(args, "[run_queue]") == 0 ||
             cn_match(args, "[total_run_queue_lengths]") == 0) {
    cn_put_uint(out, 0);
  } else if (cn_match(args, "[io]") == 0) {
    memset(&st, 0, sizeof(st));
    cn_dist_get_stats(d->rt, &st);
    cn_build(out, "{{input, ~u}, {output, ~u}}", st.bytes_in, st.bytes_out);
  } else {
    return badarg(out);
  }
  return CN_RETURN;
}

/* ---- gen_server ------------------------------------------------------- */

/* The destination of gen_server:call/cast: a local name, a pid, or
 * {Name, Node}.  Returns false for anything else. */
static bool dest_of(cn_runtime *rt, cn_term t, char *name, size_t ncap,
                    char *node, size_t nodecap, cn_dest *dest) {
  cn_pid pid;
  if (cn_term_typeof(t) == CN_T_ATOM) {
    if (cn_get_atom(t, name, ncap) < 0)
      return false;
    *dest = cn_to_name(name);
    return true;
  }
  if (cn_term_typeof(t) == CN_T_PID && cn_get_pid(t, &pid) == 0) {
    *dest = cn_to_pid(pid);
    return true;
  }
  if (cn_match(t, "{~a, ~a}", name, ncap, node, nodecap) == 0) {
    if (strcmp(node, cn_node_name(cn_runtime_node(rt))) == 0)
      *dest = cn_to_name(name);
    else
      *dest = cn_to_remote(name, node);
    return true;
  }
  return false;
}

static int bi_call(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  char name[1024], node[CN_MAX_NODE_NAME + 1];
  cn_term d, req, tmo;
  cn_ms ms = 5000;
  int64_t v;
  cn_dest dest;
  int rc;
  (void)arg;
  if (cn_match(args, "[~t, ~t]", &d, &req) != 0) {
    if (cn_match(args, "[~t, ~t, ~t]", &d, &req, &tmo) != 0)
      return badarg(out);
    if (cn_is_atom(tmo, "infinity"))
      ms = CN_INFINITY;
    else if (cn_get_int64(tmo, &v) == 0 && v >= 0)
      ms = v;
    else
      return badarg(out);
  }
  if (!dest_of(rt, d, name, sizeof(name), node, sizeof(node), &dest))
    return badarg(out);
  rc = cn_call(rt, dest, req, ms, out);
  if (rc == 0)
    return CN_RETURN;
  /* As gen_server:call exits: {Reason, {gen_server, call, Args}}. */
  if (rc == CN_EEXIT) {
    char store[256];
    cn_buf why;
    cn_buf_init_with(&why, store, sizeof(store));
    cn_put_term(&why, cn_buf_term(out));
    cn_buf_reset(out);
    cn_build(out, "{~t, {gen_server, call, ~t}}", cn_buf_term(&why), args);
    cn_buf_free(&why);
    return CN_EXIT;
  }
  cn_buf_reset(out);
  switch (rc) {
  case CN_ENOPROC:
    cn_build(out, "{noproc, {gen_server, call, ~t}}", args);
    break;
  case CN_ETIMEDOUT:
    cn_build(out, "{timeout, {gen_server, call, ~t}}", args);
    break;
  case CN_ENOCONN:
    cn_build(out, "{{nodedown, ~a}, {gen_server, call, ~t}}", node, args);
    break;
  default:
    cn_build(out, "{~a, {gen_server, call, ~t}}", cn_err_name(rc), args);
    break;
  }
  return CN_EXIT;
}

static int bi_cast(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  char name[1024], node[CN_MAX_NODE_NAME + 1];
  cn_term d, req;
  cn_dest dest;
  (void)arg;
  if (cn_match(args, "[~t, ~t]", &d, &req) != 0 ||
      !dest_of(rt, d, name, sizeof(name), node, sizeof(node), &dest))
    return badarg(out);
  cn_cast(rt, dest, req); /* gen_server:cast is ok whatever happens */
  return ret_atom(out, "ok");
}

/* ---- The table -------------------------------------------------------- */

static const struct {
  const char *mod, *fun;
  unsigned arity;
  cn_export_fn fn;
} builtins[] = {
    {"erlang", "node", 0, bi_node},
    {"erlang", "nodes", 0, bi_nodes0},
    {"erlang", "nodes", 1, bi_nodes1},
    {"erlang", "registered", 0, bi_registered},
    {"erlang", "whereis", 1, bi_whereis},
    {"erlang", "processes", 0, bi_processes},
    {"erlang", "process_info", 1, bi_pinfo1},
    {"erlang", "process_info", 2, bi_pinfo2},
    {"erlang", "system_info", 1, bi_sysinfo},
    {"erlang", "memory", 0, bi_memory},
    {"erlang", "statistics", 1, bi_stats},
    {"gen_server", "call", 2, bi_call},
    {"gen_server", "call", 3, bi_call},
    {"gen_server", "cast", 2, bi_cast},
};

int cn__builtins_export(cn__dist *d) {
  size_t i;
  int rc;
  d->bi_start_ms = ms_of(CLOCK_MONOTONIC);
  for (i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
    rc = cn_export(d->rt, builtins[i].mod, builtins[i].fun, builtins[i].arity,
                   builtins[i].fn, d);
    /* A program may have exported its own first: it wins. */
    if (rc != 0 && rc != CN_EEXIST)
      return rc;
  }
  return 0;
}
