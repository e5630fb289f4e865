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
 * monitors.  See the README, "rpc, erpc and erl_call".
 *
 * observer_backend's exports (sys_info/0, etop_collect/1, procs_info/1,
 * fetch_stats/2, vsn/0) are what observer and etop call on the node they
 * watch, and proc_lib:translate_initial_call/1, sys:get_status/1,2 and
 * module_info/1 what observer's window of one process reads; they read
 * the same figures as the erlang:* ones above, so the two agree.  See the
 * README, "observer and etop". */
#include "dist_internal.h"

#include <ctype.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
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

/* As erts: true while the process (or a thread's pid) lives and is not
 * exiting; badarg for anything but a pid of this node. */
static int bi_is_alive(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_pid pid;
  cn_proc *p;
  bool alive;
  (void)arg;
  if (cn_match(args, "[~p]", &pid) != 0 || pid.node != cn_runtime_node(rt))
    return badarg(out);
  if (!(p = cn__lookup(rt, pid)))
    return ret_atom(out, "false");
  alive = !(atomic_load(&p->state) & CN__P_EXITING);
  cn__proc_unref(p);
  return ret_atom(out, alive ? "true" : "false");
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

/* The process_info items of the BEAM's heap, garbage collector, code and
 * tracing, which a C process has none of: empty or 0 (observer's process
 * window asks them all at once). */
static bool other_item(cn_term item, cn_buf *out) {
  static const struct {
    const char *item, *value;
  } none[] = {
      {"binary", "[]"},
      {"catchlevel", "0"},
      {"error_handler", "undefined"},
      {"garbage_collection", "[]"},
      {"heap_size", "0"},
      {"stack_size", "0"},
      {"total_heap_size", "0"},
      {"last_calls", "false"},
      {"sequential_trace_token", "[]"},
      {"suspending", "[]"},
      {"trace", "0"},
  };
  size_t i;
  for (i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
    if (cn_is_atom(item, none[i].item)) {
      cn_put_tuple(out, 2);
      cn_put_atom(out, none[i].item);
      cn_build(out, none[i].value);
      return true;
    }
  }
  return false;
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
  } else if (cn_is_atom(item, "current_stacktrace")) {
    cn_build(out, "{current_stacktrace, [{~a, loop, 0, []}]}", module_of(p));
  } else if (cn_is_atom(item, "messages")) {
    /* The queue is the process's own to read (message_queue_len
     * counts it); its contents are not shown. */
    cn_build(out, "{messages, []}");
  } else if (cn_is_atom(item, "group_leader")) {
    /* A C process has no I/O server: its own pid, as init's. */
    cn_build(out, "{group_leader, ~p}", &p->pid);
  } else if (cn_is_atom(item, "priority")) {
    cn_build(out, "{priority, normal}"); /* one priority for all */
  } else if (!other_item(item, out)) {
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

/* Processes waiting to run: the schedulers' run queues, as
 * statistics(run_queue) sums the BEAM's. */
static uint64_t run_queue(cn_runtime *rt) {
  uint64_t n = 0;
  unsigned i;
  for (i = 0; i < rt->nsched; i++)
    n += atomic_load_explicit(&rt->sched[i].rq_len, memory_order_relaxed);
  return n;
}

/* What system_architecture names: machine-os(-gnu), as the target triplet
 * Debian's erts reports ("x86_64-pc-linux-gnu" there). */
static void architecture(char *buf, size_t cap) {
  struct utsname u;
  size_t i;
  if (uname(&u) != 0) {
    snprintf(buf, cap, "unknown");
    return;
  }
  for (i = 0; u.sysname[i]; i++)
    u.sysname[i] = (char)tolower((unsigned char)u.sysname[i]);
#ifdef __GLIBC__
  snprintf(buf, cap, "%s-%s-gnu", u.machine, u.sysname);
#else
  snprintf(buf, cap, "%s-%s", u.machine, u.sysname);
#endif
}

/* One erlang:system_info/1 item into out: 0, or -1 for an item a C node
 * does not have (badarg).  observer_backend:sys_info/0 reads the same
 * items through here, so the two never disagree. */
static int sysinfo_put(cn__dist *d, cn_term keyt, cn_buf *out) {
  cn_runtime *rt = d->rt;
  char key[64], text[256];
  long ncpu;
  if (cn_match(keyt, "{wordsize, internal}") == 0 ||
      cn_match(keyt, "{wordsize, external}") == 0) {
    cn_put_uint(out, sizeof(void *));
    return 0;
  }
  if (cn_get_atom(keyt, key, sizeof(key)) < 0)
    return -1;
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
  } else if (strcmp(key, "system_architecture") == 0) {
    architecture(text, sizeof(text));
    cn_put_charlist(out, text, strlen(text));
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
    if ((ncpu = sysconf(_SC_NPROCESSORS_ONLN)) > 0)
      cn_put_int(out, ncpu);
    else
      cn_put_atom(out, "unknown");
  } else if (strcmp(key, "wordsize") == 0) {
    cn_put_uint(out, sizeof(void *));
  } else if (strcmp(key, "port_count") == 0 ||
             strcmp(key, "thread_pool_size") == 0 ||
             strcmp(key, "dirty_cpu_schedulers") == 0 ||
             strcmp(key, "dirty_io_schedulers") == 0) {
    cn_put_uint(out, 0);
  } else if (strcmp(key, "kernel_poll") == 0 ||
             strcmp(key, "smp_support") == 0 || strcmp(key, "threads") == 0) {
    cn_put_atom(out, "true"); /* libuv's epoll, and threaded schedulers */
  } else if (strcmp(key, "multi_scheduling") == 0) {
    cn_put_atom(out, rt->nsched > 1 ? "enabled" : "disabled");
  } else if (strcmp(key, "dist_buf_busy_limit") == 0) {
    cn_put_uint(out, d->opt.busy_limit);
  } else {
    return -1;
  }
  return 0;
}

static int bi_sysinfo(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_term key;
  (void)rt;
  if (cn_match(args, "[~t]", &key) != 0 || sysinfo_put(arg, key, out) != 0)
    return badarg(out);
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

/* erlang:memory/0's figures: the resident size, and the processes'
 * share, the process structs (what a process costs at rest). */
static void memory_of(cn_runtime *rt, uint64_t *total, uint64_t *procs) {
  *total = rss_bytes();
  *procs = (uint64_t)cn_process_count(rt) * sizeof(cn_proc);
  if (*procs > *total)
    *total = *procs;
}

/* erlang:memory/0's pairs as list cells (the caller ends the list). */
static void put_memory_cells(cn_runtime *rt, cn_buf *out) {
  static const char *zero[] = {"atom", "atom_used", "binary", "code", "ets"};
  uint64_t total, procs;
  size_t i;
  memory_of(rt, &total, &procs);
  cn_put_list(out, 4 + sizeof(zero) / sizeof(zero[0]));
  cn_build(out, "{total, ~u}", total);
  cn_build(out, "{processes, ~u}", procs);
  cn_build(out, "{processes_used, ~u}", procs);
  cn_build(out, "{system, ~u}", total - procs);
  for (i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
    cn_build(out, "{~a, 0}", zero[i]);
}

static int bi_memory(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)args;
  (void)arg;
  put_memory_cells(rt, out);
  cn_put_nil(out);
  return CN_RETURN;
}

static uint64_t ns_of(clockid_t clk) {
  struct timespec ts;
  if (clock_gettime(clk, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t ms_of(clockid_t clk) { return ns_of(clk) / 1000000; }

/* statistics(scheduler_wall_time): [{Id, Active, Total}] for each
 * scheduler, in nanoseconds since distribution started: Active is the
 * scheduler thread's CPU time, Total the time gone by.  The BEAM counts
 * only while the flag is on; these always count, so the flag is not
 * needed (and etop's and observer's ratios of differences come out the
 * same). */
static void put_sched_wall_time(cn__dist *d, cn_buf *out) {
  cn_runtime *rt = d->rt;
  uint64_t total = ns_of(CLOCK_MONOTONIC) - d->bi_start_ms * 1000000u;
  unsigned i;
  for (i = 0; i < rt->nsched; i++) {
    clockid_t clk;
    uint64_t active = 0;
    if (pthread_getcpuclockid(rt->sched[i].thread, &clk) == 0)
      active = ns_of(clk);
    if (active > total)
      active = total; /* the thread ran before distribution started */
    cn_put_list(out, 1);
    cn_build(out, "{~u, ~u, ~u}", (uint64_t)i + 1, active, total);
  }
  cn_put_nil(out);
}

/* statistics(io): the distribution's bytes in and out. */
static void io_bytes(cn__dist *d, uint64_t *in, uint64_t *out) {
  cn_dist_stats st;
  memset(&st, 0, sizeof(st));
  cn_dist_get_stats(d->rt, &st);
  *in = st.bytes_in;
  *out = st.bytes_out;
}

static int bi_stats(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn__dist *d = arg;
  uint64_t now, last;
  unsigned i;
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
    cn_put_uint(out, run_queue(rt));
  } else if (cn_match(args, "[run_queue_lengths]") == 0) {
    for (i = 0; i < rt->nsched; i++) {
      cn_put_list(out, 1);
      cn_put_uint(out, atomic_load(&rt->sched[i].rq_len));
    }
    cn_put_nil(out);
  } else if (cn_match(args, "[scheduler_wall_time]") == 0 ||
             cn_match(args, "[scheduler_wall_time_all]") == 0) {
    put_sched_wall_time(d, out);
  } else if (cn_match(args, "[io]") == 0) {
    uint64_t in, outb;
    io_bytes(d, &in, &outb);
    cn_build(out, "{{input, ~u}, {output, ~u}}", in, outb);
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

/* ---- observer_backend (observer, etop) ------------------------------ */

/* What observer and etop call on the node they watch (runtime_tools'
 * observer_backend.erl, OTP 25), answered in the shapes they match:
 * sys_info/0 for observer's System tab, etop_collect/1 for etop,
 * procs_info/1 for observer's Processes tab and fetch_stats/2 for its
 * Load Charts (spawned on the node with spawn_link; the collector is
 * messaged by the spawned process, cn__spawn_send), and vsn/0, which
 * etop checks first. */

/* observer_backend:vsn/0: etop wants {ok, Vsn}.  Vsn is the version of
 * cnode, the backend that answers. */
static int ob_vsn(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)rt;
  (void)args;
  (void)arg;
  cn_build(out, "{ok, ~c}", cn_version_string());
  return CN_RETURN;
}

/* sys_info's alloc_info, in erlang:system_info({allocator_sizes, _})'s
 * shape (OTP 23+), for observer's Memory Allocators tab: the C heap as
 * one allocator, malloc, its multiblock carriers malloc's arenas and its
 * singleblock carriers malloc's mmapped chunks (glibc's mallinfo2: bytes
 * in use as blocks, bytes held as carriers; the maxima are the current
 * figures, as none are tracked).  Where mallinfo2 says nothing (another
 * libc, or a sanitizer's allocator) the resident size stands for both:
 * observer divides blocks by carriers, so carriers are never 0. */
static void put_alloc_info(cn_buf *out) {
  uint64_t mb = 0, mc = 0, sb = 0;
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  mb = mi.uordblks;
  mc = mi.arena;
  sb = mi.hblkhd;
#endif
  if (mc + sb == 0)
    mb = mc = rss_bytes();
  if (mc + sb == 0)
    mc = 1; /* nothing known: no division by 0 */
  cn_build(out,
           "[{malloc, [{instance, 0, ["
           "{mbcs, [{blocks, [{malloc, [{size, ~u, ~u, ~u}]}]}, "
           "{carriers_size, ~u, ~u, ~u}]}, "
           "{sbcs, [{blocks, [{malloc, [{size, ~u, ~u, ~u}]}]}, "
           "{carriers_size, ~u, ~u, ~u}]}]}]}]",
           mb, mb, mb, mc, mc, mc, sb, sb, sb, sb, sb, sb);
}

/* observer_backend:sys_info/0: observer_backend's list, key by key and in
 * its order, each value what erlang:system_info/1, statistics/1 and
 * memory/0 answer here.  Keys for what a C node has none of (atom_count,
 * atom_limit, port_limit, ets_count, ets_limit) are left out, which
 * observer shows as "Not available"; alloc_info is the C heap's
 * (put_alloc_info). */
static int ob_sys_info(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  static const struct {
    const char *key, *item; /* sys_info's key; system_info's item */
  } items[] = {
      {"logical_processors", "logical_processors"},
      {"logical_processors_online", "logical_processors_online"},
      {"logical_processors_available", "logical_processors_available"},
      {"schedulers", "schedulers"},
      {"schedulers_online", "schedulers_online"},
      /* multi_scheduling is never blocked: all of them. */
      {"schedulers_available", "schedulers_online"},
      {"otp_release", "otp_release"},
      {"version", "version"},
      {"system_architecture", "system_architecture"},
      {"kernel_poll", "kernel_poll"},
      {"smp_support", "smp_support"},
      {"threads", "threads"},
      {"thread_pool_size", "thread_pool_size"},
      {"wordsize_internal", "{wordsize, internal}"},
      {"wordsize_external", "{wordsize, external}"},
      {"process_count", "process_count"},
      {"process_limit", "process_limit"},
      {"port_count", "port_count"},
      {"dist_buf_busy_limit", "dist_buf_busy_limit"},
  };
  cn__dist *d = arg;
  uint64_t in, outb;
  size_t i;
  (void)args;
  io_bytes(d, &in, &outb);
  cn_put_list(out, 5);
  cn_build(out, "{uptime, ~u}", ms_of(CLOCK_MONOTONIC) - d->bi_start_ms);
  cn_build(out, "{run_queue, ~u}", run_queue(rt));
  cn_build(out, "{io_input, ~u}", in);
  cn_build(out, "{io_output, ~u}", outb);
  cn_put_tuple(out, 2);
  cn_put_atom(out, "alloc_info");
  put_alloc_info(out);
  for (i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
    char store[64];
    cn_buf item;
    cn_buf_init_with(&item, store, sizeof(store));
    cn_build(&item, items[i].item);
    cn_put_list(out, 1);
    cn_put_tuple(out, 2);
    cn_put_atom(out, items[i].key);
    if (item.err || sysinfo_put(d, cn_buf_term(&item), out) != 0)
      cn_put_atom(out, "undefined"); /* not reached: all are known */
    cn_buf_free(&item);
  }
  put_memory_cells(rt, out);
  cn_put_nil(out);
  return CN_RETURN;
}

/* self() of the code observer_backend runs: the spawned process (what
 * etop and observer match their answers against), else, called by rex
 * or cn_apply, the calling thread's own pid. */
static int self_of(cn_runtime *rt, cn_pid *pid) {
  if (cn__spawn_self(pid) == 0)
    return 0;
  return cn_self(rt, pid);
}

/* The collector argument: a pid, or a registered name (as `Collector !
 * Msg`).  Returns 0 with *to, or -1. */
static int collector_of(cn_term args, cn_term *to) {
  if (cn_match(args, "[~t]", to) != 0)
    return -1;
  return cn_term_typeof(*to) == CN_T_PID || cn_term_typeof(*to) == CN_T_ATOM
             ? 0
             : -1;
}

typedef struct pid_vec {
  cn_pid *v;
  size_t n, cap;
  int oom;
} pid_vec;

static void pid_push(cn_proc *p, void *arg) {
  pid_vec *pv = arg;
  if (pv->n == pv->cap) {
    size_t cap = pv->cap ? pv->cap * 2 : 256;
    cn_pid *v = realloc(pv->v, cap * sizeof(*v));
    if (!v) {
      pv->oom = 1;
      return;
    }
    pv->v = v;
    pv->cap = cap;
  }
  pv->v[pv->n++] = p->pid;
}

/* Every process, as processes/0 lists them.  Returns 0 or CN_ENOMEM. */
static int all_pids(cn_runtime *rt, pid_vec *pv) {
  memset(pv, 0, sizeof(*pv));
  cn__each_proc(rt, pid_push, pv);
  if (pv->oom) {
    free(pv->v);
    return CN_ENOMEM;
  }
  return 0;
}

/* One #etop_proc_info{pid, mem, reds, name, runtime, cf, mq} as
 * observer_backend:etop_collect/2 makes it, from what process_info/2
 * answers here: name is the registered name, else the initial call
 * {Module, init, 1}; cf is {Module, loop, 0}; reds and runtime are 0 (a
 * C node counts no reductions).  Returns 0, or 1 when the process is
 * gone (then out is as it was). */
static int put_proc_info(cn_runtime *rt, cn_pid pid, cn_buf *out) {
  char name[256];
  const char *mod;
  cn_proc *p;
  if (!(p = cn__lookup(rt, pid)))
    return 1;
  if (p->thread || (atomic_load(&p->state) & CN__P_EXITING)) {
    cn__proc_unref(p);
    return 1;
  }
  mod = module_of(p);
  cn_put_list(out, 1);
  cn_put_tuple(out, 8);
  cn_put_atom(out, "etop_proc_info");
  cn_put_pid(out, &pid);
  cn_put_uint(out, sizeof(cn_proc)); /* as process_info(P, memory) */
  cn_put_uint(out, 0);
  if (cn__proc_name(rt, pid, name, sizeof(name)) == 0)
    cn_put_atom(out, name);
  else
    cn_build(out, "{~a, init, 1}", mod);
  cn_put_uint(out, 0);
  cn_build(out, "{~a, loop, 0}", mod);
  cn_put_uint(out, atomic_load(&p->mbox_len));
  cn__proc_unref(p);
  return 0;
}

/* The #etop_proc_info{} of pids [from, to) but self, as list cells into
 * out (the caller ends the list).  Returns how many were put. */
static size_t put_procs(cn_runtime *rt, const pid_vec *pv, size_t from,
                        size_t to, const cn_pid *self, cn_buf *out) {
  size_t i, n = 0;
  for (i = from; i < to; i++)
    if (!cn_pid_equal(&pv->v[i], self) && put_proc_info(rt, pv->v[i], out) == 0)
      n++;
  return n;
}

/* A failed send to the collector: the process exits with the reason, so
 * that the collector (linked) learns of it at once. */
static int send_failed(int rc, cn_buf *out) {
  cn_buf_reset(out);
  cn_build(out, "{~a, collector}", cn_err_name(rc));
  return CN_EXIT;
}

/* observer_backend:etop_collect(Collector): sends Collector
 * {self(), #etop_info{}} (now, n_procs, runtime: scheduler wall time,
 * run_queue, memi, procinfo) and returns ok. */
static int ob_etop_collect(cn_runtime *rt, cn_term args, cn_buf *out,
                           void *arg) {
  cn__dist *d = arg;
  cn_term to;
  cn_pid self;
  pid_vec pv;
  cn_buf procs, swt, memi, msg;
  struct timespec now;
  uint64_t total, used;
  size_t n;
  int rc;
  if (collector_of(args, &to) != 0)
    return badarg(out);
  if ((rc = self_of(rt, &self)) != 0 || (rc = all_pids(rt, &pv)) != 0)
    return send_failed(rc, out);
  cn_buf_init(&procs);
  cn_buf_init(&swt);
  cn_buf_init(&memi);
  cn_buf_init(&msg);
  n = put_procs(rt, &pv, 0, pv.n, &self, &procs);
  cn_put_nil(&procs);
  free(pv.v);
  put_sched_wall_time(d, &swt);
  /* etop_memi/0: c:memory/1 of each. */
  memory_of(rt, &total, &used);
  cn_build(&memi,
           "[{total, ~u}, {processes, ~u}, {ets, 0}, {atom, 0}, {code, 0}, "
           "{binary, 0}]",
           total, used);
  clock_gettime(CLOCK_REALTIME, &now);
  cn_build(&msg,
           "{~p, {etop_info, {~u, ~u, ~u}, ~u, undefined, ~t, ~u, [], ~t, "
           "~t}}",
           &self, (uint64_t)now.tv_sec / 1000000,
           (uint64_t)now.tv_sec % 1000000, (uint64_t)now.tv_nsec / 1000,
           (uint64_t)n, cn_buf_term(&swt), run_queue(rt), cn_buf_term(&memi),
           cn_buf_term(&procs));
  rc = msg.err ? msg.err : cn__spawn_send(rt, to, cn_buf_term(&msg));
  cn_buf_free(&procs);
  cn_buf_free(&swt);
  cn_buf_free(&memi);
  cn_buf_free(&msg);
  if (rc != 0)
    return send_failed(rc, out);
  return ret_atom(out, "ok");
}

#define PROCS_CHUNK 10000 /* observer_backend:procs_info/1's */

/* observer_backend:procs_info(Collector): sends Collector
 * {procs_info, self(), [#etop_proc_info{}]} for each 10000 processes,
 * the last (maybe empty) one for the rest, as observer_backend does, and
 * returns that last message.  Observer's table holder takes the spawned
 * process's normal exit, after the messages, as "complete". */
static int ob_procs_info(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_term to;
  cn_pid self;
  pid_vec pv;
  size_t from = 0, end;
  int rc;
  (void)arg;
  if (collector_of(args, &to) != 0)
    return badarg(out);
  if ((rc = self_of(rt, &self)) != 0 || (rc = all_pids(rt, &pv)) != 0)
    return send_failed(rc, out);
  for (;;) {
    bool last = pv.n - from < PROCS_CHUNK;
    end = last ? pv.n : from + PROCS_CHUNK;
    cn_buf_reset(out);
    cn_put_tuple(out, 3);
    cn_put_atom(out, "procs_info");
    cn_put_pid(out, &self);
    put_procs(rt, &pv, from, end, &self, out);
    cn_put_nil(out);
    if ((rc = out->err ? out->err : cn__spawn_send(rt, to, cn_buf_term(out))) !=
        0)
      break;
    if (last)
      break;
    from = end;
  }
  free(pv.v);
  if (rc != 0)
    return send_failed(rc, out);
  return CN_RETURN;
}

/* observer_backend:fetch_stats(Parent, Time), observer's Load Charts:
 * every Time ms sends Parent {stats, 1, SchedulerWallTime, {{input, I},
 * {output, O}}, Memory}, until the spawned process receives a message
 * (observer sends `exit`), dies (its link to observer), or the runtime
 * stops.  Returns ok. */
static int ob_fetch_stats(cn_runtime *rt, cn_term args, cn_buf *out,
                          void *arg) {
  cn__dist *d = arg;
  cn_term parent;
  cn_pid self;
  int64_t ms;
  int rc;
  if (cn_match(args, "[~t, ~i]", &parent, &ms) != 0 ||
      cn_term_typeof(parent) != CN_T_PID || ms < 0)
    return badarg(out);
  if ((rc = self_of(rt, &self)) != 0)
    return send_failed(rc, out);
  for (;;) {
    uint64_t until = ms_of(CLOCK_MONOTONIC) + (uint64_t)ms, now, in, outb;
    /* Waits in short steps, so that the end is noticed soon. */
    while (!cn__spawn_got_message() && cn_is_alive(rt, self) &&
           !atomic_load(&rt->shutting_down) &&
           (now = ms_of(CLOCK_MONOTONIC)) < until) {
      struct timespec ts = {0, (long)(until - now < 20 ? until - now : 20) *
                                   1000000L};
      nanosleep(&ts, NULL);
    }
    if (cn__spawn_got_message() || !cn_is_alive(rt, self) ||
        atomic_load(&rt->shutting_down))
      break;
    io_bytes(d, &in, &outb);
    cn_buf_reset(out);
    cn_put_tuple(out, 5);
    cn_put_atom(out, "stats");
    cn_put_uint(out, 1);
    put_sched_wall_time(d, out);
    cn_build(out, "{{input, ~u}, {output, ~u}}", in, outb);
    put_memory_cells(rt, out);
    cn_put_nil(out);
    rc = out->err ? out->err : cn__spawn_send(rt, parent, cn_buf_term(out));
    if (rc != 0)
      return send_failed(rc, out);
  }
  cn_buf_reset(out);
  return ret_atom(out, "ok");
}

/* erlang:function_exported/3, as observer asks it before it picks
 * procs_info/1 over the older etop_collect/1. */
static int bi_fexported(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  char mod[256], fun[256];
  uint64_t arity;
  (void)arg;
  if (cn_match(args, "[~a, ~a, ~u]", mod, sizeof(mod), fun, sizeof(fun),
               &arity) != 0 ||
      arity > 255)
    return badarg(out);
  return ret_atom(out, cn_is_exported(rt, mod, fun, (unsigned)arity) ? "true"
                                                                     : "false");
}

/* code:ensure_loaded/1: a module is loaded when it exports something
 * here ({module, M}); any other is {error, nofile}, as for a module
 * the BEAM cannot find. */
static int bi_ensure_loaded(cn_runtime *rt, cn_term args, cn_buf *out,
                            void *arg) {
  char mod[256];
  (void)arg;
  if (cn_match(args, "[~a]", mod, sizeof(mod)) != 0)
    return badarg(out);
  if (cn__module_exported(rt, mod))
    cn_build(out, "{module, ~a}", mod);
  else
    cn_build(out, "{error, nofile}");
  return CN_RETURN;
}

/* ---- A process's window in observer -------------------------------- */

/* Module:module_info/1 for a server module, which observer's process
 * window reads before sys:get_status: attributes say what the process
 * speaks, gen_server's protocol (sys:get_status reports it so too).
 * Exported for a module by proc_lib:translate_initial_call/1 below, the
 * first time observer asks of one of its processes. */
static int bi_module_info(cn_runtime *rt, cn_term args, cn_buf *out,
                          void *arg) {
  (void)rt;
  (void)arg;
  if (cn_match(args, "[attributes]") != 0)
    return badarg(out);
  cn_build(out, "[{behaviour, [gen_server]}]");
  return CN_RETURN;
}

/* proc_lib:translate_initial_call/1: {Module, init, 1} for a live process
 * here (its initial_call), {proc_lib, init_p, 5} for any other pid, as
 * proc_lib answers for a process it cannot read. */
static int bi_translate_ic(cn_runtime *rt, cn_term args, cn_buf *out,
                           void *arg) {
  const char *mod;
  cn_term t;
  cn_proc *p;
  int rc;
  if (cn_match(args, "[~t]", &t) != 0 || cn_term_typeof(t) != CN_T_PID)
    return badarg(out);
  if (info_proc(rt, t, &p) != 0) {
    cn_build(out, "{proc_lib, init_p, 5}");
    return CN_RETURN;
  }
  mod = module_of(p);
  rc = cn_export(rt, mod, "module_info", 1, bi_module_info, arg);
  if (rc != 0 && rc != CN_EEXIST)
    cn_build(out, "{proc_lib, init_p, 5}"); /* no module_info to read */
  else
    cn_build(out, "{~a, init, 1}", mod);
  cn__proc_unref(p);
  return CN_RETURN;
}

/* sys:get_status/1,2 of a local process, as sys does it: monitor, send
 * {system, {Self, Ref}, get_status}, wait for {Ref, Status} (the
 * runtime's sys answers in gen_server's shape); a dead process or the
 * timeout exits {Reason, {sys, get_status, Args}}, as gen:call does. */
static int bi_get_status(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  char name[256];
  cn_term t, tmo, tag, reply, why;
  cn_ms ms = 5000;
  int64_t v;
  cn_pid me, pid;
  cn_ref mref, r;
  cn_dest to;
  cn_buf msg;
  uint64_t deadline;
  int rc;
  (void)arg;
  if (cn_match(args, "[~t]", &t) != 0) {
    if (cn_match(args, "[~t, ~t]", &t, &tmo) != 0)
      return badarg(out);
    if (cn_is_atom(tmo, "infinity"))
      ms = CN_INFINITY;
    else if (cn_get_int64(tmo, &v) == 0 && v >= 0)
      ms = v;
    else
      return badarg(out);
  }
  if (cn_term_typeof(t) == CN_T_PID && cn_get_pid(t, &pid) == 0)
    to = cn_to_pid(pid);
  else if (cn_term_typeof(t) == CN_T_ATOM &&
           cn_get_atom(t, name, sizeof(name)) >= 0)
    to = cn_to_name(name);
  else
    return badarg(out);
  if ((rc = cn_self(rt, &me)) != 0 || (rc = cn_monitor(rt, to, &mref)) != 0) {
    cn_build(out, "{~a, {sys, get_status, ~t}}", cn_err_name(rc), args);
    return CN_EXIT;
  }
  cn_buf_init(&msg);
  cn_build(&msg, "{system, {~p, ~r}, get_status}", &me, &mref);
  cn_send(rt, to, cn_buf_term(&msg)); /* a dead one: the monitor says */
  deadline = ms == CN_INFINITY ? 0 : ms_of(CLOCK_MONOTONIC) + (uint64_t)ms;
  for (;;) {
    uint64_t now = ms_of(CLOCK_MONOTONIC);
    cn_ms left = ms == CN_INFINITY ? CN_INFINITY
                 : deadline > now  ? (cn_ms)(deadline - now)
                                   : 0;
    cn_buf_reset(&msg);
    if (cn_receive(rt, left, &msg) != 0) {
      cn_demonitor(rt, &mref, true);
      cn_build(out, "{timeout, {sys, get_status, ~t}}", args);
      rc = CN_EXIT;
      break;
    }
    if (cn_match(cn_buf_term(&msg), "{~t, ~t}", &tag, &reply) == 0 &&
        cn_get_ref(tag, &r) == 0 && cn_ref_equal(&r, &mref)) {
      cn_demonitor(rt, &mref, true);
      cn_put_term(out, reply);
      rc = CN_RETURN;
      break;
    }
    if (cn_match(cn_buf_term(&msg), "{'DOWN', ~r, process, ~t, ~t}", &r, &t,
                 &why) == 0 &&
        cn_ref_equal(&r, &mref)) {
      cn_build(out, "{~t, {sys, get_status, ~t}}", why, args);
      rc = CN_EXIT;
      break;
    }
    /* Anything else on this worker's own pid is not ours: dropped. */
  }
  cn_buf_free(&msg);
  return rc;
}

/* ---- observer's other tabs --------------------------------------------- */

/* A C node has no ports, sockets or ETS tables: observer's Ports, Sockets
 * and Table Viewer tabs get empty lists (observer_backend:get_port_list/0,
 * get_socket_list/0, socket_info/0, get_table_list/2). */
static int ob_none(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)rt;
  (void)args;
  (void)arg;
  cn_put_nil(out);
  return CN_RETURN;
}

/* appmon_info, what observer's Applications tab talks to: a registered
 * server that answers the casts {Client, app_ctrl, Node, true, Opts} with
 * {delivery, Self, app_ctrl, Node, Apps} and {Client, app, App, true,
 * Opts} with {delivery, Self, app, App, Tree}.  A C node runs no OTP
 * applications: Apps is [] and a tree is empty. */
static int am_cast(cn_proc *self, void *state, cn_term msg) {
  cn_runtime *rt = cn_proc_runtime(self);
  cn_pid me = cn_proc_pid(self), client;
  cn_term what, on, opts;
  char store[256];
  cn_buf b;
  (void)state;
  cn_buf_init_with(&b, store, sizeof(store));
  if (cn_match(msg, "{~p, app_ctrl, ~t, ~t, ~t}", &client, &what, &on, &opts) ==
          0 &&
      cn_is_atom(on, "true"))
    cn_build(&b, "{delivery, ~p, app_ctrl, ~t, []}", &me, what);
  else if (cn_match(msg, "{~p, app, ~t, ~t, ~t}", &client, &what, &on, &opts) ==
               0 &&
           cn_is_atom(on, "true"))
    cn_build(&b, "{delivery, ~p, app, ~t, {[], [], [], []}}", &me, what);
  if (b.len && !b.err)
    cn_send(rt, cn_to_pid(client), cn_buf_term(&b));
  cn_buf_free(&b);
  return CN_NOREPLY;
}

static const cn_server_ops appmon_ops = {
    .name = "appmon_info",
    .handle_cast = am_cast,
};

/* appmon_info:start_link2(Starter, Client, Opts), which
 * appmon_info:start_link/3 calls by rpc: {ok, Pid} of the one appmon_info
 * (started the first time, registered), as runtime_tools' does. */
static int am_start(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_start_options o = {.name = "appmon_info"};
  cn_pid pid;
  int rc;
  (void)args;
  (void)arg;
  rc = cn_start(rt, &appmon_ops, NULL, &o, &pid);
  if (rc != 0 && rc != CN_EEXIST) {
    cn_build(out, "{error, ~a}", cn_err_name(rc));
    return CN_RETURN;
  }
  cn_build(out, "{ok, ~p}", &pid);
  return CN_RETURN;
}

/* cnode:dist_stats(): cn_dist_get_stats as a map, for an operator on a BEAM
 * node (erpc:call(N, cnode, dist_stats, [])), with the struct's field
 * names as keys. */
static int bi_dist_stats(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  static const char fmt[] =
      "#{connections => ~u, handshakes_failed => ~u, frames_in => ~u, "
      "frames_out => ~u, bytes_in => ~u, bytes_out => ~u, dropped => ~u, "
      "bad_frames => ~u, too_large => ~u, fragments_in => ~u, "
      "fragments_out => ~u, busy => ~u, nodes_up => ~u, links => ~u, "
      "monitors => ~u, queued => ~u}";
  cn_dist_stats st;
  int rc;
  (void)arg;
  (void)args;
  if (cn_dist_get_stats(rt, &st) != 0)
    memset(&st, 0, sizeof(st));
  rc = cn_build(out, fmt, st.connections, st.handshakes_failed, st.frames_in,
                st.frames_out, st.bytes_in, st.bytes_out, st.dropped,
                st.bad_frames, st.too_large, st.fragments_in, st.fragments_out,
                st.busy, st.nodes_up, st.links, st.monitors, st.queued);
  return rc == 0 ? CN_RETURN : CN_ERROR;
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
    {"erlang", "is_process_alive", 1, bi_is_alive},
    {"erlang", "process_info", 1, bi_pinfo1},
    {"erlang", "process_info", 2, bi_pinfo2},
    {"erlang", "system_info", 1, bi_sysinfo},
    {"erlang", "memory", 0, bi_memory},
    {"erlang", "statistics", 1, bi_stats},
    {"gen_server", "call", 2, bi_call},
    {"gen_server", "call", 3, bi_call},
    {"gen_server", "cast", 2, bi_cast},
    {"erlang", "function_exported", 3, bi_fexported},
    {"code", "ensure_loaded", 1, bi_ensure_loaded},
    {"observer_backend", "vsn", 0, ob_vsn},
    {"observer_backend", "sys_info", 0, ob_sys_info},
    {"observer_backend", "etop_collect", 1, ob_etop_collect},
    {"observer_backend", "procs_info", 1, ob_procs_info},
    {"observer_backend", "fetch_stats", 2, ob_fetch_stats},
    {"observer_backend", "get_port_list", 0, ob_none},
    {"observer_backend", "get_socket_list", 0, ob_none},
    {"observer_backend", "socket_info", 0, ob_none},
    {"observer_backend", "get_table_list", 2, ob_none},
    {"appmon_info", "start_link2", 3, am_start},
    {"proc_lib", "translate_initial_call", 1, bi_translate_ic},
    {"sys", "get_status", 1, bi_get_status},
    {"sys", "get_status", 2, bi_get_status},
    {"cnode", "dist_stats", 0, bi_dist_stats},
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
