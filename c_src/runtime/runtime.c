/* The runtime: creation, shutdown, and the terms the runtime builds. */
#include "internal.h"
#include "term/term_internal.h" /* cn__term_flat */
#include "util/log.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cn__sched_start(cn_runtime *rt);
void cn__sched_stop(cn_runtime *rt);
void cn__thread_dtor(void *arg);

/* ---- Atoms the runtime uses ------------------------------------------- */

/* SMALL_ATOM_UTF8_EXT encodings, built once. */
static const char *const known_atoms[] = {
    "normal",  "kill", "killed",    "noproc", "noconnection", "shutdown",
    "timeout", "ok",   "undefined", "error",  "bad_reply",
};
#define NKNOWN (sizeof(known_atoms) / sizeof(known_atoms[0]))
static char atom_bytes[NKNOWN][2 + 16];
static size_t atom_len[NKNOWN];
static pthread_once_t atoms_once = PTHREAD_ONCE_INIT;

static void atoms_init(void) {
  size_t i;
  for (i = 0; i < NKNOWN; i++) {
    cn_buf b;
    cn_buf_init_with(&b, atom_bytes[i], sizeof(atom_bytes[i]));
    cn_build(&b, "~a", known_atoms[i]); /* fits: the names are short */
    atom_len[i] = b.len;
  }
}

cn_term cn__atom_term(const char *name) {
  cn_term t = {NULL, 0};
  size_t i;
  pthread_once(&atoms_once, atoms_init);
  for (i = 0; i < NKNOWN; i++) {
    if (strcmp(known_atoms[i], name) == 0) {
      t.ptr = atom_bytes[i];
      t.len = atom_len[i];
      return t;
    }
  }
  return t; /* an internal error: callers use only the names above */
}

int cn__build_exit_msg(cn_buf *b, cn_pid from, cn_term reason) {
  return cn_build(b, "{'EXIT', ~p, ~t}", &from, reason);
}

int cn__build_down_msg(cn_buf *b, const cn_ref *ref, const cn__msg *m,
                       cn_runtime *rt) {
  cn_term reason = {m->data, m->len};
  if ((m->flags & CN__F_BYNAME) && m->name)
    return cn_build(b, "{'DOWN', ~r, process, {~a, ~a}, ~t}", ref, m->name,
                    cn_node_name(m->from.node), reason);
  return cn_build(b, "{'DOWN', ~r, process, ~p, ~t}", ref, &m->from, reason);
}

cn_term_limits cn__limits(cn_runtime *rt) {
  cn_term_limits lim = rt->limits;
  lim.max_size = atomic_load_explicit(&rt->max_message, memory_order_relaxed);
  return lim;
}

int cn__check_term(cn_runtime *rt, cn_term t) {
  cn_term_limits lim;
  size_t off = 0;
  int rc;
  if (!t.ptr || t.len == 0)
    return CN_EBADTERM;
  /* A flat term ({get, 1}) is never deeper than the limit allows, and
   * only its size is left to check. */
  if (cn__term_flat(t.ptr, t.ptr + t.len) == t.ptr + t.len &&
      t.len <= cn_max_message(rt))
    return 0;
  lim = cn__limits(rt);
  if ((rc = cn_term_validate(t.ptr, t.len, &off, &lim)) != 0)
    return rc;
  return off == t.len ? 0 : CN_EBADTERM;
}

int cn__refusal_reason(cn_runtime *rt, int err, cn_buf *b) {
  if (err == CN_EFULL)
    return cn_build(b, "{mailbox_full, ~u}", (uint64_t)rt->max_mailbox);
  return cn_build(b, "{message_too_large, ~u}", (uint64_t)cn_max_message(rt));
}

#define LOG_BURST 20

/* The rate limit and the line, for cn__log and cn__log_at. */
static void vlog_at(cn_runtime *rt, cn_log_level level, const char *fmt,
                    va_list ap) {
  uint64_t now = uv_hrtime() / 1000000000ULL;
  unsigned suppressed = 0;
  /* Dropped levels do not count against the rate limit. */
  if (!cn__log_enabled(level))
    return;
  pthread_mutex_lock(&rt->log_mu);
  if (now != rt->log_window) {
    suppressed = rt->log_suppressed;
    rt->log_window = now;
    rt->log_n = rt->log_suppressed = 0;
  }
  if (++rt->log_n > LOG_BURST) {
    rt->log_suppressed++;
    pthread_mutex_unlock(&rt->log_mu);
    return;
  }
  pthread_mutex_unlock(&rt->log_mu);
  if (suppressed)
    cn__logf(rt, CN_LOG_WARNING, "cnode", "%u log lines suppressed",
             suppressed);
  cn__logv(rt, level, "cnode", fmt, ap);
}

void cn__log(cn_runtime *rt, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog_at(rt, CN_LOG_WARNING, fmt, ap);
  va_end(ap);
}

void cn__log_at(cn_runtime *rt, cn_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog_at(rt, level, fmt, ap);
  va_end(ap);
}

size_t cn_max_message(cn_runtime *rt) {
  return atomic_load_explicit(&rt->max_message, memory_order_relaxed);
}

int cn_process_info(cn_runtime *rt, cn_pid pid, cn_proc_info *info) {
  cn_proc *p;
  if (!rt || !info)
    return CN_EINVAL;
  if (!(p = cn__lookup(rt, pid)))
    return CN_ENOPROC;
  info->message_queue_len = atomic_load(&p->mbox_len);
  info->dropped = atomic_load(&p->mbox_dropped);
  info->refused_calls = atomic_load(&p->mbox_refused);
  cn__proc_unref(p);
  return 0;
}

int cn_runtime_get_stats(cn_runtime *rt, cn_runtime_stats *st) {
  if (!rt || !st)
    return CN_EINVAL;
  st->mailbox_dropped = atomic_load(&rt->st_mbox_dropped);
  st->mailbox_refused = atomic_load(&rt->st_mbox_refused);
  st->replies_too_large = atomic_load(&rt->st_too_large);
  return 0;
}

/* ---- Create ----------------------------------------------------------- */

uint32_t cn_runtime_node(const cn_runtime *rt) { return rt->node; }
uint32_t cn_runtime_creation(const cn_runtime *rt) { return rt->creation; }

int cn_runtime_new(const cn_runtime_options *opts, cn_runtime **out) {
  cn_runtime_options defaults;
  cn_runtime *rt;
  size_t nchunks;
  int rc;

  if (!out)
    return CN_EINVAL;
  if (!opts) {
    memset(&defaults, 0, sizeof(defaults));
    opts = &defaults;
  }
  rt = calloc(1, sizeof(*rt));
  if (!rt)
    return CN_ENOMEM;
  if (opts->node_name) {
    const char *at = strchr(opts->node_name, '@');
    size_t n = strlen(opts->node_name);
    if (!at || at == opts->node_name || !at[1] || n > CN_MAX_NODE_NAME) {
      free(rt);
      return CN_EINVAL;
    }
    if ((rc = cn_node_intern(opts->node_name, n, &rt->node)) != 0) {
      free(rt);
      return rc;
    }
    rt->creation = opts->creation;
    /* No creation given: pick one at random, so that pids of an earlier
     * run of the same node never name this run's processes (the BEAM
     * gets its creation from epmd for the same reason). */
    while (rt->creation == 0) {
      uint32_t r = 0;
      if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)uv_hrtime() ^ (uint32_t)(uv_hrtime() >> 32);
      rt->creation = r;
    }
  }
  rt->nsched = opts->schedulers ? opts->schedulers
                                : (unsigned)uv_available_parallelism();
  if (rt->nsched == 0)
    rt->nsched = 1;
  if (rt->nsched > 1024)
    rt->nsched = 1024;
  rt->max_procs =
      opts->max_processes ? opts->max_processes : CN_DEFAULT_MAX_PROCESSES;
  if (rt->max_procs > ((size_t)1 << 27))
    rt->max_procs = (size_t)1 << 27;
  rt->limits = opts->limits;
  atomic_init(&rt->max_message, opts->limits.max_size ? opts->limits.max_size
                                                      : CN_DEFAULT_MAX_MESSAGE);
  rt->max_mailbox = opts->max_mailbox;
  nchunks = (rt->max_procs + CN__CHUNK - 1) / CN__CHUNK;
  rt->chunks = calloc(nchunks, sizeof(*rt->chunks));
  rt->serials = calloc(rt->max_procs, sizeof(*rt->serials));
  rt->free_slots = malloc(rt->max_procs * sizeof(*rt->free_slots));
  if (!rt->chunks || !rt->serials || !rt->free_slots) {
    free(rt->chunks);
    free(rt->serials);
    free(rt->free_slots);
    free(rt);
    return CN_ENOMEM;
  }
  atomic_init(&rt->ref_counter, 1);
  pthread_mutex_init(&rt->table_mu, NULL);
  pthread_mutex_init(&rt->exit_mu, NULL);
  uv_cond_init(&rt->exit_cv); /* monotonic, for cn__cond_wait */
  pthread_rwlock_init(&rt->names_mu, NULL);
  pthread_mutex_init(&rt->modules_mu, NULL);
  pthread_mutex_init(&rt->exports_mu, NULL);
  uv_cond_init(&rt->workers_cv); /* monotonic, for cn__cond_wait */
  pthread_mutex_init(&rt->log_mu, NULL);
  if (pthread_key_create(&rt->thread_key, cn__thread_dtor) != 0) {
    cn_runtime_free(rt);
    return CN_ESYSTEM;
  }
  rt->key_ok = 1;
  if ((rc = cn__sched_start(rt)) != 0) {
    atomic_store(&rt->stopped, 1);
    cn_runtime_free(rt);
    return rc;
  }
  *out = rt;
  return 0;
}

/* ---- Shutdown --------------------------------------------------------- */

/* Calls fn on every live scheduled process, holding a reference. */
static void each_proc(cn_runtime *rt, void (*fn)(cn_runtime *, cn_proc *)) {
  size_t slot, n;
  pthread_mutex_lock(&rt->table_mu);
  n = rt->next_slot;
  pthread_mutex_unlock(&rt->table_mu);
  for (slot = 0; slot < n; slot++) {
    _Atomic(cn_proc *) *chunk =
        atomic_load(&rt->chunks[slot >> CN__CHUNK_BITS]);
    cn_proc *p;
    uint32_t r;
    if (!chunk || !(p = atomic_load(&chunk[slot & (CN__CHUNK - 1)])))
      continue;
    r = atomic_load(&p->refs);
    do {
      if (r == 0)
        goto next;
    } while (!atomic_compare_exchange_weak(&p->refs, &r, r + 1));
    if (p->pid.id == slot && !p->thread &&
        !(atomic_load(&p->state) & CN__P_EXITING))
      fn(rt, p);
    cn__proc_unref(p);
  next:;
  }
}

void cn__each_proc(cn_runtime *rt, void (*fn)(cn_proc *p, void *arg),
                   void *arg) {
  size_t slot, n;
  pthread_mutex_lock(&rt->table_mu);
  n = rt->next_slot;
  pthread_mutex_unlock(&rt->table_mu);
  for (slot = 0; slot < n; slot++) {
    _Atomic(cn_proc *) *chunk =
        atomic_load(&rt->chunks[slot >> CN__CHUNK_BITS]);
    cn_proc *p;
    uint32_t r;
    if (!chunk || !(p = atomic_load(&chunk[slot & (CN__CHUNK - 1)])))
      continue;
    r = atomic_load(&p->refs);
    do {
      if (r == 0)
        goto next;
    } while (!atomic_compare_exchange_weak(&p->refs, &r, r + 1));
    if (p->pid.id == slot && !p->thread &&
        !(atomic_load(&p->state) & CN__P_EXITING))
      fn(p, arg);
    cn__proc_unref(p);
  next:;
  }
}

static void send_shutdown(cn_runtime *rt, cn_proc *p) {
  cn_proc *parent;
  cn__msg *m;
  /* Only roots: a process with a live parent process is shut down by it,
   * in its order (supervisors stop children in reverse start order). */
  if (!cn_pid_equal(&p->parent, &p->pid) &&
      (parent = cn__lookup(rt, p->parent)) != NULL) {
    bool thread = parent->thread != NULL;
    cn__proc_unref(parent);
    if (!thread)
      return;
  }
  if ((m = cn__msg_new(CN__S_SHUTDOWN, NULL, 0)) != NULL) {
    m->from = p->pid;
    cn__deliver_to(p, m);
  }
}

static void send_kill(cn_runtime *rt, cn_proc *p) {
  cn_term kill = cn__atom_term("kill");
  cn__msg *m = cn__msg_new(CN__S_EXIT, kill.ptr, kill.len);
  if (m) {
    m->from = p->pid;
    cn__deliver_to(p, m);
  }
}

/* Waits until no process is left or timeout_ms passes.  True if none. */
static bool wait_empty(cn_runtime *rt, int timeout_ms) {
  uint64_t deadline =
      timeout_ms < 0 ? 0 : uv_hrtime() + (uint64_t)timeout_ms * 1000000ULL + 1;
  pthread_mutex_lock(&rt->exit_mu);
  while (atomic_load(&rt->nprocs) > 0 &&
         cn__cond_wait(&rt->exit_cv, &rt->exit_mu, deadline))
    ;
  pthread_mutex_unlock(&rt->exit_mu);
  return atomic_load(&rt->nprocs) == 0;
}

int cn_runtime_shutdown(cn_runtime *rt, cn_ms timeout) {
  int timeout_ms = cn__ms(timeout);
  if (!rt)
    return CN_EINVAL;
  if (cn__current_sched() || cn__current())
    return CN_EDEADLK;
  if (atomic_exchange(&rt->shutting_down, 1)) {
    /* Someone else is shutting down, or it is done: wait for it. */
    while (!atomic_load(&rt->stopped))
      uv_sleep(1);
    return 0;
  }
  /* Distribution first: remote peers see the node go (noconnection),
   * and no process's exit races with a connection closing. */
  if (atomic_load(&rt->dist))
    rt->dist_ops->stop(rt);
  each_proc(rt, send_shutdown);
  if (!wait_empty(rt, timeout_ms)) {
    each_proc(rt, send_kill);
    wait_empty(rt, 5000);
  }
  /* Exports still running on their threads: a blocked one learns of the
   * shutdown from its calls (CN_ESHUTDOWN, noproc). */
  if (!cn__work_wait(rt, 5000))
    cn__log(rt, "exported functions still running at shutdown");
  cn__sched_stop(rt);
  atomic_store(&rt->stopped, 1);
  return 0;
}

static void free_procs_in_table(cn_runtime *rt) {
  size_t i, nchunks = (rt->max_procs + CN__CHUNK - 1) / CN__CHUNK;
  cn_proc *p;
  for (i = 0; i < nchunks; i++) {
    /* A process still in the table ignored kill (stuck in C code) and is
     * left alone on purpose: its thread may still touch it. */
    free((void *)atomic_load(&rt->chunks[i]));
  }
  while ((p = rt->free_procs)) {
    rt->free_procs = p->next_free;
    free(p);
  }
}

void cn_runtime_free(cn_runtime *rt) {
  cn__module *mod;
  if (!rt)
    return;
  if (!atomic_load(&rt->stopped))
    cn_runtime_shutdown(rt, 5000);
  if (!cn__work_wait(rt, 0))
    return; /* an export stuck in C code still uses rt: leave it be */
  if (rt->key_ok) {
    cn__threads_free(rt);
    pthread_setspecific(rt->thread_key, NULL);
    pthread_key_delete(rt->thread_key);
  }
  if (atomic_load(&rt->dist))
    rt->dist_ops->free(rt);
  free_procs_in_table(rt);
  cn__names_free(rt);
  cn__exports_free(rt);
  while ((mod = rt->modules)) {
    rt->modules = mod->next;
    free(mod->name);
    free(mod);
  }
  /* The kept blocks are process-wide; with this runtime's messages gone,
   * they go too (another runtime keeps what it frees from now on). */
  cn__blocks_trim(true);
  pthread_mutex_destroy(&rt->table_mu);
  pthread_mutex_destroy(&rt->exit_mu);
  pthread_cond_destroy(&rt->exit_cv);
  pthread_rwlock_destroy(&rt->names_mu);
  pthread_mutex_destroy(&rt->modules_mu);
  pthread_mutex_destroy(&rt->exports_mu);
  pthread_cond_destroy(&rt->workers_cv);
  pthread_mutex_destroy(&rt->log_mu);
  free(rt->chunks);
  free(rt->serials);
  free(rt->free_slots);
  free(rt);
}
