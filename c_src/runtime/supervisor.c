/* Supervisors: OTP 25's supervisor.erl as a cn_server.
 *
 * The state, the checks, the replies and the error terms follow
 * supervisor.erl clause by clause; the comments name the Erlang function
 * each piece mirrors.  Two things differ, both because a callback must
 * never block:
 *
 * Shutting children down is a state machine (a "job").  OTP's shutdown/1
 * monitors a child, sends exit(Child, shutdown) and waits in a receive for
 * the DOWN, with an `after` that kills.  Here the job monitors the child,
 * sends the signal, arms a timer that sends {'$cn_supervisor_kill', Ref}
 * to ourselves, and returns to the scheduler.  The DOWN (or the child's
 * EXIT, whichever comes first; the other is then dropped by unlink or
 * demonitor-with-flush, as unlink_flush/2 does) moves the job on to the
 * next child, in reverse start order.  While a job runs, every message
 * that is not for the job (calls, casts, other EXITs, the parent's exit)
 * is postponed and replayed, in order, when the job ends: from the
 * outside the supervisor is exactly as sequential as OTP's.
 *
 * The parent.  The supervisor sets CN__PF_OWN_EXIT, so an exit signal from
 * its parent, cn_stop and runtime shutdown all arrive as {'EXIT', Parent,
 * Reason} messages.  The supervisor then shuts its children down (a job)
 * and stops with Reason, as gen_server's terminate/2 would.
 *
 * Starting children runs inline: cn_start_link runs the child's init on
 * this thread and links it to us.  When init cannot start a child, the
 * children already started must be shut down before start returns, but
 * init cannot wait either.  It hands them to a "reaper", a small process
 * that runs the same job (sending the exits as if from the dead supervisor,
 * which is the children's parent), and cn_supervisor_start waits for the
 * reaper when it was called from a plain thread, where waiting is allowed.
 *
 * Logging.  Through the log hook, one line per event, where
 * supervisor.erl writes its reports: a child restarted (info: which child,
 * its old pid, the reason it exited) and a supervisor giving up (error:
 * "reached max restart intensity", then it shuts down).  The crash of the
 * child itself is its own crash report (sys.c).
 */
#include "internal.h"
#include "util/log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S_ONE_FOR_ONE, S_ONE_FOR_ALL, S_REST_FOR_ONE, S_SIMPLE };
enum { R_PERMANENT, R_TRANSIENT, R_TEMPORARY };
enum { T_WORKER, T_SUPERVISOR };
enum { AS_NEVER, AS_ANY, AS_ALL };
enum { P_UNDEF, P_RUNNING, P_RESTARTING };

#define SHUT_BRUTAL (-1)   /* brutal_kill */
#define SHUT_INFINITY (-2) /* infinity */

static const char *const strategy_names[] = {
    "one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"};
static const char *const restart_names[] = {"permanent", "transient",
                                            "temporary"};
static const char *const type_names[] = {"worker", "supervisor"};
static const char *const auto_names[] = {"never", "any_significant",
                                         "all_significant"};

/* The message our shutdown timers send, with the job's unique ref. */
#define KILL_TAG "'$cn_supervisor_kill'"

/* ---- Modules ---------------------------------------------------------- */

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80)
      n++;
  return n;
}

int cn_module_register(cn_runtime *rt, const char *module,
                       cn_child_start_fn start, void *arg) {
  cn__module *m;

  if (!rt || !module || !*module || !start)
    return CN_EINVAL;
  /* It must fit in an atom: 255 characters. */
  if (strlen(module) > 1020 || utf8_chars(module) > 255)
    return CN_EINVAL;
  pthread_mutex_lock(&rt->modules_mu);
  for (m = rt->modules; m; m = m->next) {
    if (strcmp(m->name, module) == 0) {
      pthread_mutex_unlock(&rt->modules_mu);
      return CN_EEXIST;
    }
  }
  m = malloc(sizeof(*m));
  if (!m || !(m->name = strdup(module))) {
    pthread_mutex_unlock(&rt->modules_mu);
    free(m);
    return CN_ENOMEM;
  }
  m->start = start;
  m->arg = arg;
  m->next = rt->modules;
  rt->modules = m;
  pthread_mutex_unlock(&rt->modules_mu);
  return 0;
}

/* The start function of every module registered by its callbacks. */
static int server_start(cn_runtime *rt, cn_term args, void *arg, cn_pid *pid,
                        cn_buf *reason) {
  const cn_server_ops *ops = arg;
  char name[1024];
  cn_start_options opts = {NULL, reason};
  cn_term init_arg;
  int err;

  if (cn_term_typeof(args) == CN_T_NIL) {
    err = cn_start_link(rt, ops, NULL, &opts, pid);
  } else if (cn_match(args, "[~t]", &init_arg) == 0) {
    err = cn_start_link(rt, ops, &init_arg, &opts, pid);
  } else if (cn_match(args, "[{local, ~a}, ~t]", name, sizeof(name),
                      &init_arg) == 0) {
    opts.name = name;
    err = cn_start_link(rt, ops, &init_arg, &opts, pid);
  } else {
    cn_buf_reset(reason);
    cn_build(reason, "{badarg, ~t}", args);
    return CN_EINVAL;
  }
  if (err == CN_EEXIST) { /* *pid is the name's holder */
    cn_buf_reset(reason);
    cn_build(reason, "{already_started, ~p}", pid);
  }
  return err;
}

int cn_server_register(cn_runtime *rt, const cn_server_ops *ops) {
  if (!rt || !ops || !ops->name)
    return CN_EINVAL;
  return cn_module_register(rt, ops->name, server_start, (void *)ops);
}

int cn_server_upgrade(cn_runtime *rt, const cn_server_ops *ops) {
  cn__module *m;
  int rc = CN_ENOENT;

  if (!rt || !ops || !ops->name)
    return CN_EINVAL;
  pthread_mutex_lock(&rt->modules_mu);
  for (m = rt->modules; m; m = m->next) {
    if (strcmp(m->name, ops->name) == 0) {
      rc = m->start == server_start ? 0 : CN_EINVAL;
      if (rc == 0)
        m->arg = (void *)ops;
      break;
    }
  }
  pthread_mutex_unlock(&rt->modules_mu);
  return rc;
}

const cn_server_ops *cn__server_module_ops(cn_runtime *rt, const char *name) {
  const cn_server_ops *ops = NULL;
  cn__module *m;

  pthread_mutex_lock(&rt->modules_mu);
  for (m = rt->modules; m; m = m->next) {
    if (strcmp(m->name, name) == 0) {
      if (m->start == server_start)
        ops = m->arg;
      break;
    }
  }
  pthread_mutex_unlock(&rt->modules_mu);
  return ops;
}

static bool module_find(cn_runtime *rt, const char *name,
                        cn_child_start_fn *start, void **arg) {
  cn__module *m;
  bool found = false;
  pthread_mutex_lock(&rt->modules_mu);
  for (m = rt->modules; m; m = m->next) {
    if (strcmp(m->name, name) == 0) {
      *start = m->start;
      *arg = m->arg;
      found = true;
      break;
    }
  }
  pthread_mutex_unlock(&rt->modules_mu);
  return found;
}

/* ---- A map from pids to pointers (open addressing) -------------------- */

typedef struct pslot {
  cn_pid key;
  void *val; /* NULL: the slot is empty */
} pslot;

typedef struct pidmap {
  pslot *v;
  size_t cap, n; /* cap is 0 or a power of two */
} pidmap;

static size_t pid_hash(cn_pid p) {
  uint64_t h = ((uint64_t)p.serial << 32) ^ p.id ^ ((uint64_t)p.node << 47) ^
               ((uint64_t)p.creation << 21);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return (size_t)h;
}

static void *pm_get(const pidmap *m, cn_pid k) {
  size_t i, mask = m->cap - 1;
  if (!m->cap)
    return NULL;
  for (i = pid_hash(k) & mask; m->v[i].val; i = (i + 1) & mask)
    if (cn_pid_equal(&m->v[i].key, &k))
      return m->v[i].val;
  return NULL;
}

static int pm_grow(pidmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 16, i, j;
  pslot *v = calloc(cap, sizeof(*v));
  if (!v)
    return CN_ENOMEM;
  for (i = 0; i < m->cap; i++) {
    if (!m->v[i].val)
      continue;
    for (j = pid_hash(m->v[i].key) & (cap - 1); v[j].val;
         j = (j + 1) & (cap - 1))
      ;
    v[j] = m->v[i];
  }
  free(m->v);
  m->v = v;
  m->cap = cap;
  return 0;
}

/* Inserts or replaces.  Returns 0 or CN_ENOMEM (the map is unchanged). */
static int pm_put(pidmap *m, cn_pid k, void *val) {
  size_t i, mask;
  if ((m->n + 1) * 2 > m->cap && pm_grow(m) != 0 && m->n + 1 >= m->cap)
    return CN_ENOMEM;
  mask = m->cap - 1;
  for (i = pid_hash(k) & mask; m->v[i].val; i = (i + 1) & mask) {
    if (cn_pid_equal(&m->v[i].key, &k)) {
      m->v[i].val = val;
      return 0;
    }
  }
  m->v[i].key = k;
  m->v[i].val = val;
  m->n++;
  return 0;
}

/* Removes k, shifting later entries of its run back (no tombstones). */
static void pm_del(pidmap *m, cn_pid k) {
  size_t i, j, h, mask = m->cap - 1;
  if (!m->cap)
    return;
  for (i = pid_hash(k) & mask;; i = (i + 1) & mask) {
    if (!m->v[i].val)
      return;
    if (cn_pid_equal(&m->v[i].key, &k))
      break;
  }
  m->v[i].val = NULL;
  m->n--;
  for (j = (i + 1) & mask; m->v[j].val; j = (j + 1) & mask) {
    h = pid_hash(m->v[j].key) & mask;
    /* Move j into the hole unless its home lies cyclically in (i, j]. */
    if (i < j ? (h <= i || h > j) : (h <= i && h > j)) {
      m->v[i] = m->v[j];
      m->v[j].val = NULL;
      i = j;
    }
  }
}

static void pm_free(pidmap *m) {
  free(m->v);
  memset(m, 0, sizeof(*m));
}

/* ---- Children --------------------------------------------------------- */

/* A checked child spec (check_childspec/2): views into the spec term. */
typedef struct spec {
  cn_term id, mfa, mod, modules; /* modules is empty: default [M] */
  int restart, type, significant;
  int64_t shutdown;
} cspec;

/* A child of a static supervisor, or the template of a simple one
 * (#child{}). */
typedef struct child {
  cn_buf terms; /* id, mfa and modules, back to back */
  cn_term id, mfa, modules;
  int restart;      /* R_* */
  int type;         /* T_* */
  int significant;  /* 0 or 1 */
  int64_t shutdown; /* milliseconds, SHUT_BRUTAL or SHUT_INFINITY */
  int pst;          /* P_*: undefined, a pid, or {restarting, _} */
  cn_pid pid;       /* P_RUNNING: the child */
} child;

/* A child of a simple_one_for_one supervisor (the dynamics map). */
typedef struct dyn {
  struct dyn *prev, *next;
  cn_pid pid;     /* the child; while restarting, the one that died */
  int restarting; /* the key is {restarting, pid} */
  size_t args_len;
  char *args; /* start args, A ++ ExtraArgs; NULL if temporary */
} dyn;

/* One child a job shuts down. */
typedef struct titem {
  cn_pid pid;
  cn_ref mref; /* our monitor, while waiting */
  int64_t shutdown;
  int st; /* I_* */
} titem;

enum { I_PENDING, I_WAITING, I_DONE };
enum { J_NONE, J_TERMINATE, J_RESTART, J_STOP, J_REAP };

typedef struct job {
  int kind;      /* J_*; what to do when every item is done */
  titem *items;  /* in the order to terminate them */
  size_t n, cur; /* cur: the one being waited for (sequential) */
  pidmap imap;   /* pid -> item */
  int parallel;  /* all at once (simple_one_for_one's stop) */
  int started;
  size_t waiting;    /* parallel: items still waited for */
  cn_ref tkey, tref; /* the kill timer: its message's ref, the timer */
  int timer_on;
  cn_from *from;     /* J_TERMINATE: the terminate_child caller */
  child *child;      /* J_TERMINATE: the static child */
  dyn *dyn;          /* J_TERMINATE: the dynamic child */
  size_t start_from; /* J_RESTART: restart kids[start_from..] */
} job;

/* A message postponed while a job runs. */
enum { Q_CALL, Q_CAST, Q_INFO };

typedef struct pmsg {
  struct pmsg *next;
  int kind;      /* Q_* */
  cn_from *from; /* Q_CALL */
  size_t len;
  char data[];
} pmsg;

typedef struct sup {
  cn_runtime *rt;
  cn_pid me;
  int strategy, auto_shutdown;
  int64_t intensity, period;
  child **kids; /* in start order; kids[0] is simple's template */
  size_t nkids, capkids;
  dyn *dhead, *dtail; /* simple_one_for_one children, oldest first */
  size_t ndyn, ndyn_restarting;
  pidmap map;        /* running pid -> child (or dyn) */
  int64_t *restarts; /* restart times (s), oldest first */
  size_t nrest, caprest;
  job job;
  int busy;            /* a job runs */
  pmsg *qhead, *qtail; /* postponed messages */
  int stopped;         /* done: stop with reason */
  cn_buf reason;
  int forge; /* a reaper: exits come from forge_from */
  cn_pid forge_from;
} sup;

static cn_term view(const cn_buf *b) { return cn_buf_term(b); }

/* A term from a cn_build format, into b (reset first). */
static cn_term mk(cn_buf *b, const char *fmt, ...) {
  va_list ap;
  cn_buf_reset(b);
  va_start(ap, fmt);
  cn_vbuild(b, fmt, ap);
  va_end(ap);
  return view(b);
}

static void child_free(child *c) {
  if (c) {
    cn_buf_free(&c->terms);
    free(c);
  }
}

/* Makes a child from a checked spec.  With strip, the start args are
 * replaced by undefined, as save_child/2 does for temporary children. */
static child *child_new(const cspec *sp, bool strip) {
  child *c = calloc(1, sizeof(*c));
  cn_term m, f;
  size_t o1, o2;
  if (!c)
    return NULL;
  cn_buf_init(&c->terms);
  cn_put_term(&c->terms, sp->id);
  o1 = c->terms.len;
  if (strip && cn_match(sp->mfa, "{~t, ~t, _}", &m, &f) == 0) {
    cn_put_tuple(&c->terms, 3);
    cn_put_term(&c->terms, m);
    cn_put_term(&c->terms, f);
    cn_put_atom(&c->terms, "undefined");
  } else {
    cn_put_term(&c->terms, sp->mfa);
  }
  o2 = c->terms.len;
  if (sp->modules.len) {
    cn_put_term(&c->terms, sp->modules);
  } else {
    cn_put_list(&c->terms, 1);
    cn_put_term(&c->terms, sp->mod);
    cn_put_nil(&c->terms);
  }
  if (c->terms.err) {
    child_free(c);
    return NULL;
  }
  c->id.ptr = c->terms.data;
  c->id.len = o1;
  c->mfa.ptr = c->terms.data + o1;
  c->mfa.len = o2 - o1;
  c->modules.ptr = c->terms.data + o2;
  c->modules.len = c->terms.len - o2;
  c->restart = sp->restart;
  c->type = sp->type;
  c->significant = sp->significant;
  c->shutdown = sp->shutdown;
  c->pst = P_UNDEF;
  return c;
}

/* Sets a static child's pid state, keeping the pid map in step. */
static void kid_set(sup *s, child *c, int pst, const cn_pid *pid) {
  if (c->pst == P_RUNNING)
    pm_del(&s->map, c->pid);
  c->pst = pst;
  if (pst == P_RUNNING) {
    c->pid = *pid;
    pm_put(&s->map, c->pid, c);
  }
}

static size_t kid_index(const sup *s, const child *c) {
  size_t i;
  for (i = 0; i < s->nkids; i++)
    if (s->kids[i] == c)
      return i;
  return s->nkids;
}

static int kid_append(sup *s, child *c) {
  if (s->nkids == s->capkids) {
    size_t cap = s->capkids ? s->capkids * 2 : 8;
    child **v = realloc(s->kids, cap * sizeof(*v));
    if (!v)
      return CN_ENOMEM;
    s->kids = v;
    s->capkids = cap;
  }
  s->kids[s->nkids++] = c;
  return 0;
}

static void kid_remove_at(sup *s, size_t i) {
  child *c = s->kids[i];
  kid_set(s, c, P_UNDEF, NULL);
  memmove(&s->kids[i], &s->kids[i + 1],
          (s->nkids - i - 1) * sizeof(s->kids[0]));
  s->nkids--;
  child_free(c);
}

/* del_child/2: a temporary child goes, any other one keeps its spec. */
static void del_kid(sup *s, child *c) {
  if (c->restart == R_TEMPORARY)
    kid_remove_at(s, kid_index(s, c));
  else
    kid_set(s, c, P_UNDEF, NULL);
}

static child *find_kid(const sup *s, cn_term id) {
  size_t i;
  for (i = 0; i < s->nkids; i++)
    if (cn_term_equal(s->kids[i]->id, id))
      return s->kids[i];
  return NULL;
}

static cn_term dyn_args(const dyn *d) {
  cn_term t = {d->args, d->args_len};
  static const char nil[1] = {106}; /* NIL_EXT */
  if (!d->args) {
    t.ptr = nil;
    t.len = 1;
  }
  return t;
}

/* dyn_store/3.  Returns the new entry, or NULL when out of memory. */
static dyn *dyn_store(sup *s, cn_pid pid, const cn_term *args) {
  dyn *d = calloc(1, sizeof(*d));
  if (!d)
    return NULL;
  if (args) {
    d->args = malloc(args->len);
    if (!d->args) {
      free(d);
      return NULL;
    }
    memcpy(d->args, args->ptr, args->len);
    d->args_len = args->len;
  }
  if (pm_put(&s->map, pid, d) != 0) {
    free(d->args);
    free(d);
    return NULL;
  }
  d->pid = pid;
  d->prev = s->dtail;
  if (s->dtail)
    s->dtail->next = d;
  else
    s->dhead = d;
  s->dtail = d;
  s->ndyn++;
  return d;
}

/* dyn_erase/2. */
static void dyn_erase(sup *s, dyn *d) {
  pm_del(&s->map, d->pid);
  if (d->prev)
    d->prev->next = d->next;
  else
    s->dhead = d->next;
  if (d->next)
    d->next->prev = d->prev;
  else
    s->dtail = d->prev;
  s->ndyn--;
  if (d->restarting)
    s->ndyn_restarting--;
  free(d->args);
  free(d);
}

/* ---- Checking specs (check_flags/1, check_childspec/2) ---------------- */

static bool map_get(cn_term m, const char *key, cn_term *v) {
  cn_iter it;
  cn_term k, val;
  if (cn_term_typeof(m) != CN_T_MAP || cn_iter_init(&it, m, NULL) != 0)
    return false;
  while (cn_iter_next(&it, &k) && cn_iter_next(&it, &val)) {
    if (cn_is_atom(k, key)) {
      *v = val;
      return true;
    }
  }
  return false;
}

/* The index of the atom t in names[0..n), or -1. */
static int atom_index(cn_term t, const char *const *names, int n) {
  int i;
  for (i = 0; i < n; i++)
    if (cn_is_atom(t, names[i]))
      return i;
  return -1;
}

/* An integer term as int64; bignums saturate.  False if not an integer. */
static bool get_int(cn_term t, int64_t *v) {
  static const char zero[2] = {97, 0}; /* SMALL_INTEGER_EXT 0 */
  cn_term z = {zero, 2};
  if (cn_term_typeof(t) != CN_T_INTEGER)
    return false;
  if (cn_get_int64(t, v) != 0)
    *v = cn_term_compare(t, z) > 0 ? INT64_MAX : INT64_MIN;
  return true;
}

static bool is_proper_list(cn_term t) {
  cn_iter it;
  cn_term e;
  cn_term_type ty = cn_term_typeof(t);
  if (ty == CN_T_NIL)
    return true;
  if (ty != CN_T_LIST || cn_iter_init(&it, t, NULL) != 0)
    return false;
  while (cn_iter_next(&it, &e))
    ;
  return cn_term_typeof(it.tail) == CN_T_NIL;
}

/* The error path of the checks: err gets the error term; returns -1. */
static int fail(cn_buf *err, const char *fmt, ...) {
  va_list ap;
  cn_buf_reset(err);
  va_start(ap, fmt);
  cn_vbuild(err, fmt, ap);
  va_end(ap);
  return -1;
}

/* check_flags/1.  Returns 0, or -1 with the thrown term in err. */
static int check_flags(cn_term f, sup *s, cn_buf *err) {
  cn_term st, in, pe, as;
  bool have_st, have_in, have_pe, have_as;
  int64_t v;
  int k;

  if (cn_term_typeof(f) == CN_T_MAP) {
    have_st = map_get(f, "strategy", &st);
    have_in = map_get(f, "intensity", &in);
    have_pe = map_get(f, "period", &pe);
    have_as = map_get(f, "auto_shutdown", &as);
  } else if (cn_match(f, "{~t, ~t, ~t}", &st, &in, &pe) == 0) {
    have_st = have_in = have_pe = true;
    have_as = false;
  } else {
    return fail(err, "{invalid_type, ~t}", f);
  }
  s->strategy = S_ONE_FOR_ONE;
  s->intensity = 1;
  s->period = 5;
  s->auto_shutdown = AS_NEVER;
  if (have_st) {
    if ((k = atom_index(st, strategy_names, 4)) < 0)
      return fail(err, "{invalid_strategy, ~t}", st);
    s->strategy = k;
  }
  if (have_in) {
    if (!get_int(in, &v) || v < 0)
      return fail(err, "{invalid_intensity, ~t}", in);
    s->intensity = v;
  }
  if (have_pe) {
    if (!get_int(pe, &v) || v <= 0)
      return fail(err, "{invalid_period, ~t}", pe);
    s->period = v;
  }
  if (have_as) {
    if ((k = atom_index(as, auto_names, 3)) < 0)
      return fail(err, "{invalid_auto_shutdown, ~t}", as);
    s->auto_shutdown = k;
  }
  return 0;
}

/* check_childspec/2 and do_check_childspec/2.  Returns 0 with *o viewing
 * into cs, or -1 with the error term in err. */
static int check_childspec(cn_term cs, int auto_shutdown, cspec *o,
                           cn_buf *err) {
  cn_term id, start, restart, shutdown, type, mods, sig, m, f, a, e;
  bool has_restart, has_type, has_shutdown, has_mods, has_sig;
  int64_t v;
  cn_iter it;

  memset(o, 0, sizeof(*o));
  if (cn_term_typeof(cs) == CN_T_MAP) {
    has_restart = map_get(cs, "restart", &restart);
    has_type = map_get(cs, "type", &type);
    if (!map_get(cs, "id", &id))
      return fail(err, "missing_id");
    if (!map_get(cs, "start", &start))
      return fail(err, "missing_start");
    has_sig = map_get(cs, "significant", &sig);
    has_shutdown = map_get(cs, "shutdown", &shutdown);
    has_mods = map_get(cs, "modules", &mods);
  } else if (cn_match(cs, "{~t, ~t, ~t, ~t, ~t, ~t}", &id, &start, &restart,
                      &shutdown, &type, &mods) == 0) {
    has_restart = has_type = has_shutdown = has_mods = true;
    has_sig = false;
  } else {
    return fail(err, "{invalid_child_spec, ~t}", cs);
  }
  o->id = id;
  /* validFunc/1 */
  if (cn_match(start, "{~t, ~t, ~t}", &m, &f, &a) != 0 ||
      cn_term_typeof(m) != CN_T_ATOM || cn_term_typeof(f) != CN_T_ATOM ||
      (cn_term_typeof(a) != CN_T_LIST && cn_term_typeof(a) != CN_T_NIL))
    return fail(err, "{invalid_mfa, ~t}", start);
  o->mfa = start;
  o->mod = m;
  /* validRestartType/1 */
  o->restart = R_PERMANENT;
  if (has_restart && (o->restart = atom_index(restart, restart_names, 3)) < 0)
    return fail(err, "{invalid_restart_type, ~t}", restart);
  /* validSignificant/3 */
  if (has_sig) {
    if (cn_is_atom(sig, "true")) {
      if (auto_shutdown == AS_NEVER)
        return fail(err, "{bad_combination, [{auto_shutdown, never}, "
                         "{significant, true}]}");
      if (o->restart == R_PERMANENT)
        return fail(err, "{bad_combination, [{restart, permanent}, "
                         "{significant, true}]}");
      o->significant = 1;
    } else if (!cn_is_atom(sig, "false")) {
      return fail(err, "{invalid_significant, ~t}", sig);
    }
  }
  /* validChildType/1 */
  o->type = T_WORKER;
  if (has_type && (o->type = atom_index(type, type_names, 2)) < 0)
    return fail(err, "{invalid_child_type, ~t}", type);
  /* validShutdown/1, after the default by type */
  if (!has_shutdown) {
    o->shutdown = o->type == T_WORKER ? 5000 : SHUT_INFINITY;
  } else if (get_int(shutdown, &v)) {
    if (v < 0)
      return fail(err, "{invalid_shutdown, ~t}", shutdown);
    o->shutdown = v;
  } else if (cn_is_atom(shutdown, "infinity")) {
    o->shutdown = SHUT_INFINITY;
  } else if (cn_is_atom(shutdown, "brutal_kill")) {
    o->shutdown = SHUT_BRUTAL;
  } else {
    return fail(err, "{invalid_shutdown, ~t}", shutdown);
  }
  /* validMods/1 */
  if (has_mods) {
    if (!cn_is_atom(mods, "dynamic")) {
      if (!is_proper_list(mods))
        return fail(err, "{invalid_modules, ~t}", mods);
      cn_iter_init(&it, mods, NULL);
      while (cn_iter_next(&it, &e))
        if (cn_term_typeof(e) != CN_T_ATOM)
          return fail(err, "{invalid_module, ~t}", e);
    }
    o->modules = mods;
  }
  return 0;
}

/* ---- Terms for replies ------------------------------------------------ */

static void put_shutdown(cn_buf *b, int64_t sh) {
  if (sh == SHUT_BRUTAL)
    cn_put_atom(b, "brutal_kill");
  else if (sh == SHUT_INFINITY)
    cn_put_atom(b, "infinity");
  else
    cn_put_int(b, sh);
}

/* child_to_spec/1, wrapped in {ok, _}. */
static void put_childspec(cn_buf *b, const child *c) {
  cn_put_tuple(b, 2);
  cn_put_atom(b, "ok");
  cn_put_map(b, 7);
  cn_put_atom(b, "id");
  cn_put_term(b, c->id);
  cn_put_atom(b, "start");
  cn_put_term(b, c->mfa);
  cn_put_atom(b, "restart");
  cn_put_atom(b, restart_names[c->restart]);
  cn_put_atom(b, "significant");
  cn_put_atom(b, c->significant ? "true" : "false");
  cn_put_atom(b, "shutdown");
  put_shutdown(b, c->shutdown);
  cn_put_atom(b, "type");
  cn_put_atom(b, type_names[c->type]);
  cn_put_atom(b, "modules");
  cn_put_term(b, c->modules);
}

/* The #child{} record, as handle_start_child/2 puts it in its errors. */
static void put_child_record(cn_buf *b, const child *c) {
  cn_put_tuple(b, 9);
  cn_put_atom(b, "child");
  cn_put_atom(b, "undefined");
  cn_put_term(b, c->id);
  cn_put_term(b, c->mfa);
  cn_put_atom(b, restart_names[c->restart]);
  cn_put_atom(b, c->significant ? "true" : "false");
  put_shutdown(b, c->shutdown);
  cn_put_atom(b, type_names[c->type]);
  cn_put_term(b, c->modules);
}

static void put_pid_state(cn_buf *b, int pst, const cn_pid *pid) {
  if (pst == P_RUNNING)
    cn_put_pid(b, pid);
  else
    cn_put_atom(b, pst == P_RESTARTING ? "restarting" : "undefined");
}

/* ---- Starting a child (do_start_child_i/3) ---------------------------- */

enum { ST_OK, ST_IGNORE, ST_ERROR };

/* Starts a child by its MFA with args.  Returns ST_OK with *pid, ST_IGNORE,
 * or ST_ERROR with the reason in err (what {error, Reason} carries). */
static int start_mfa(sup *s, cn_term mfa, cn_term args, cn_pid *pid,
                     cn_buf *err) {
  char name[1024];
  cn_child_start_fn fn;
  void *arg;
  cn_term m, f;
  int rc;

  cn_buf_reset(err);
  if (cn_match(mfa, "{~t, ~t, _}", &m, &f) != 0 ||
      cn_get_atom(m, name, sizeof(name)) != 0 ||
      !module_find(s->rt, name, &fn, &arg)) {
    /* apply/3 of a module that does not exist. */
    mk(err, "{'EXIT', {undef, [{~t, ~t, ~t, []}]}}", m, f, args);
    return ST_ERROR;
  }
  rc = fn(s->rt, args, arg, pid, err);
  if (rc == 0)
    return ST_OK;
  if (rc == CN_EIGNORE)
    return ST_IGNORE;
  if (err->len == 0 || err->err) {
    /* No reason given: the error's name, as an atom (enomem). */
    char lower[32];
    const char *n = cn_err_name(rc);
    size_t i;
    if (strncmp(n, "CN_", 3) == 0)
      n += 3;
    for (i = 0; n[i] && i < sizeof(lower) - 1; i++)
      lower[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] + 32 : n[i]);
    lower[i] = 0;
    cn_buf_reset(err);
    cn_put_atom(err, lower);
  }
  return ST_ERROR;
}

static cn_term mfa_args(cn_term mfa) {
  cn_term a = {NULL, 0};
  cn_match(mfa, "{_, _, ~t}", &a);
  return a;
}

/* ---- Jobs: shutting children down without blocking -------------------- */

static void job_init(sup *s, int kind, size_t cap) {
  memset(&s->job, 0, sizeof(s->job));
  s->job.kind = kind;
  if (cap)
    s->job.items = calloc(cap, sizeof(titem));
}

static void job_add(sup *s, cn_pid pid, int64_t shutdown) {
  titem *it;
  if (!s->job.items)
    return; /* out of memory: nobody is waited for */
  it = &s->job.items[s->job.n++];
  it->pid = pid;
  it->shutdown = shutdown;
  it->st = I_PENDING;
}

/* Sends an exit signal: from us, or for a reaper from the supervisor that
 * died (the children's parent, so gen_server children obey it). */
static void send_exit(sup *s, cn_pid pid, const char *why) {
  cn_term r = cn__atom_term(why);
  if (s->forge && strcmp(why, "kill") != 0) {
    cn__msg *m = cn__msg_new(CN__S_EXIT, r.ptr, r.len);
    if (m) {
      m->from = s->forge_from;
      cn__deliver(s->rt, pid, m);
    }
    return;
  }
  cn_exit(s->rt, pid, r);
}

static void disarm(sup *s) {
  if (s->job.timer_on) {
    cn_cancel_timer(s->rt, &s->job.tref, NULL);
    s->job.timer_on = 0;
  }
}

/* Arms the kill timer for ms; kills at once if no timer can be had. */
static void arm(sup *s, int64_t ms) {
  job *j = &s->job;
  char store[96];
  cn_buf b;
  int rc;
  if (ms < 0)
    return; /* brutal_kill (already killed) or infinity */
  cn_buf_init_with(&b, store, sizeof(store));
  cn__make_ref(s->rt, &j->tkey);
  cn_build(&b, "{" KILL_TAG ", ~r}", &j->tkey);
  rc = cn_send_after(s->rt, ms > UINT_MAX ? UINT_MAX : (unsigned)ms,
                     cn_to_pid(s->me), view(&b), &j->tref);
  cn_buf_free(&b);
  if (rc == 0) {
    j->timer_on = 1;
    return;
  }
  if (j->parallel) {
    size_t i;
    for (i = 0; i < j->n; i++)
      if (j->items[i].st == I_WAITING)
        cn_exit(s->rt, j->items[i].pid, cn__atom_term("kill"));
  } else {
    cn_exit(s->rt, j->items[j->cur].pid, cn__atom_term("kill"));
  }
}

/* Monitors the child and signals it.  False if it cannot be waited for. */
static bool item_start(sup *s, titem *it) {
  if (cn_monitor(s->rt, cn_to_pid(it->pid), &it->mref) != 0) {
    it->st = I_DONE;
    return false;
  }
  send_exit(s, it->pid, it->shutdown == SHUT_BRUTAL ? "kill" : "shutdown");
  it->st = I_WAITING;
  return true;
}

static void job_finish(sup *s);

/* Moves the job on: starts the next child, or finishes. */
static void job_step(sup *s) {
  job *j = &s->job;
  if (j->parallel) {
    if (!j->started) {
      size_t i;
      int64_t ms = SHUT_INFINITY;
      j->started = 1;
      for (i = 0; i < j->n; i++) {
        if (j->items[i].st == I_PENDING && item_start(s, &j->items[i])) {
          j->waiting++;
          ms = j->items[i].shutdown;
        }
      }
      if (j->waiting)
        arm(s, ms);
    }
    if (j->waiting == 0)
      job_finish(s);
    return;
  }
  while (j->cur < j->n) {
    titem *it = &j->items[j->cur];
    if (it->st == I_WAITING)
      return;
    if (it->st == I_PENDING && item_start(s, it)) {
      arm(s, it->shutdown);
      return;
    }
    j->cur++;
  }
  job_finish(s);
}

static void job_begin(sup *s) {
  job *j = &s->job;
  size_t i;
  s->busy = 1;
  for (i = 0; i < j->n; i++)
    pm_put(&j->imap, j->items[i].pid, &j->items[i]);
  job_step(s);
}

static void item_done(sup *s, titem *it) {
  job *j = &s->job;
  it->st = I_DONE;
  if (!j->parallel || --j->waiting == 0)
    disarm(s);
}

/* Offers a message to the running job.  True if it was the job's (or a
 * stale kill timer's); the job may have finished. */
static bool job_event(sup *s, cn_term msg) {
  job *j = &s->job;
  titem *it;
  cn_ref r;
  cn_pid pid;

  if (cn_match(msg, "{'DOWN', ~r, process, ~p, _}", &r, &pid) == 0) {
    it = pm_get(&j->imap, pid);
    if (!it || it->st != I_WAITING || !cn_ref_equal(&it->mref, &r))
      return false;
    /* unlink_flush/2: an EXIT still on its way is dropped. */
    cn_unlink(s->rt, pid);
    item_done(s, it);
    job_step(s);
    return true;
  }
  if (cn_match(msg, "{'EXIT', ~p, _}", &pid) == 0) {
    it = pm_get(&j->imap, pid);
    if (!it || it->st == I_DONE)
      return false;
    if (it->st == I_WAITING) {
      cn_demonitor(s->rt, &it->mref, true);
      item_done(s, it);
      job_step(s);
    } else {
      it->st = I_DONE; /* died before its turn */
    }
    return true;
  }
  if (cn_match(msg, "{" KILL_TAG ", ~r}", &r) == 0) {
    if (j->timer_on && cn_ref_equal(&r, &j->tkey)) {
      size_t i;
      j->timer_on = 0;
      for (i = 0; i < j->n; i++) {
        if (j->items[i].st == I_WAITING && (j->parallel || i == j->cur))
          cn_exit(s->rt, j->items[i].pid, cn__atom_term("kill"));
      }
    }
    return true;
  }
  return false;
}

/* ---- Restarts --------------------------------------------------------- */

static void begin_stop(sup *s, cn_term reason);

static void begin_shutdown(sup *s) { begin_stop(s, cn__atom_term("shutdown")); }

/* add_restart/1.  False when the intensity is exceeded. */
static bool add_restart(sup *s) {
  int64_t now = (int64_t)(uv_hrtime() / 1000000000ULL);
  size_t i = 0;
  while (i < s->nrest && s->restarts[i] < now - s->period)
    i++;
  if (i) {
    memmove(s->restarts, s->restarts + i, (s->nrest - i) * sizeof(int64_t));
    s->nrest -= i;
  }
  if (s->nrest == s->caprest) {
    size_t cap = s->caprest ? s->caprest * 2 : 4;
    int64_t *v = realloc(s->restarts, cap * sizeof(*v));
    if (!v)
      return (int64_t)s->nrest + 1 <= s->intensity; /* not recorded */
    s->restarts = v;
    s->caprest = cap;
  }
  s->restarts[s->nrest++] = now;
  return (int64_t)s->nrest <= s->intensity;
}

/* try_again_restart/1: retry later, through our own mailbox. */
static void try_again(sup *s, cn_term id) {
  char store[128];
  cn_buf b;
  cn_buf_init_with(&b, store, sizeof(store));
  if (cn_build(&b, "{try_again_restart, ~t}", id) == 0)
    cn_cast(s->rt, cn_to_pid(s->me), view(&b));
  cn_buf_free(&b);
}

/* The second half of restart_multiple_children/3: start_children/2. */
static void restart_rest(sup *s, size_t from) {
  cn_buf err = CN_BUF_INIT;
  size_t i = from;
  cn_pid pid;

  while (i < s->nkids) {
    child *k = s->kids[i];
    int r = start_mfa(s, k->mfa, mfa_args(k->mfa), &pid, &err);
    if (r == ST_OK) {
      kid_set(s, k, P_RUNNING, &pid);
      i++;
    } else if (r == ST_IGNORE && k->restart == R_TEMPORARY) {
      kid_remove_at(s, i);
    } else if (r == ST_IGNORE) {
      kid_set(s, k, P_UNDEF, NULL);
      i++;
    } else {
      kid_set(s, k, P_RESTARTING, NULL);
      try_again(s, k->id);
      break;
    }
  }
  cn_buf_free(&err);
}

/* restart/3 for one_for_all and rest_for_one: terminate the others (a
 * job), then start them again in order (restart_rest). */
static void begin_restart_multi(sup *s, child *c) {
  size_t idx = kid_index(s, c), i;
  size_t from = s->strategy == S_ONE_FOR_ALL ? 0 : idx;

  kid_set(s, c, P_UNDEF, NULL);
  job_init(s, J_RESTART, s->nkids - from);
  for (i = s->nkids; i-- > from;) {
    child *k = s->kids[i];
    if (k->pst == P_RUNNING)
      job_add(s, k->pid, k->shutdown);
    /* terminate_children/2: temporary children are not restarted. */
    if (k->restart == R_TEMPORARY)
      kid_remove_at(s, i);
    else
      kid_set(s, k, P_UNDEF, NULL);
  }
  s->job.start_from = from;
  job_begin(s);
}

/* The supervisor's label (its name, or its pid) for a log line: the
 * process running this callback is the supervisor. */
static void sup_label(char *out, size_t cap) {
  cn_proc *me = cn__current();
  if (me)
    cn__proc_label(me, out, cap);
  else
    snprintf(out, cap, "?");
}

/* The reports supervisor.erl logs around restart/2: a child restarted
 * (info), or, when the restart goes over the intensity, the supervisor
 * giving up (error).  why is the child's exit reason (empty for a
 * try_again restart). */
static void log_restart(sup *s, bool giving_up, cn_term id, const cn_pid *old,
                        cn_term why) {
  char me[300], cid[160], cpid[64], reason[320];
  cn_log_level level = giving_up ? CN_LOG_ERROR : CN_LOG_INFO;
  char store[64];
  cn_buf b;
  if (!cn__log_enabled(level))
    return;
  sup_label(me, sizeof(me));
  cn__term_short(id, cid, sizeof(cid));
  cn_buf_init_with(&b, store, sizeof(store));
  if (cn_put_pid(&b, old) == 0)
    cn__term_short(cn_buf_term(&b), cpid, sizeof(cpid));
  else
    snprintf(cpid, sizeof(cpid), "?");
  cn_buf_free(&b);
  if (why.len)
    cn__term_short(why, reason, sizeof(reason));
  else
    snprintf(reason, sizeof(reason), "none (its last restart failed)");
  if (!giving_up && !why.len)
    cn__log_at(s->rt, level,
               "supervisor %s: restarting child %s again: its last restart "
               "failed",
               me, cid);
  else if (giving_up)
    cn__log_at(s->rt, level,
               "supervisor %s: reached max restart intensity (more than %lld "
               "restarts in %lld s): child %s (%s) exited with reason %s; "
               "shutting down",
               me, (long long)s->intensity, (long long)s->period, cid, cpid,
               reason);
  else
    cn__log_at(s->rt, level,
               "supervisor %s: restarting child %s (%s), which exited with "
               "reason %s",
               me, cid, cpid, reason);
}

/* restart/2 for a static child. */
static void restart_kid(sup *s, child *c, cn_term why) {
  cn_buf err = CN_BUF_INIT;
  cn_pid pid;
  int r;

  if (!add_restart(s)) {
    /* reached_max_restart_intensity */
    log_restart(s, true, c->id, &c->pid, why);
    del_kid(s, c);
    begin_shutdown(s);
    return;
  }
  log_restart(s, false, c->id, &c->pid, why);
  if (s->strategy != S_ONE_FOR_ONE) {
    begin_restart_multi(s, c);
    return;
  }
  r = start_mfa(s, c->mfa, mfa_args(c->mfa), &pid, &err);
  if (r == ST_OK) {
    kid_set(s, c, P_RUNNING, &pid);
  } else if (r == ST_IGNORE) {
    kid_set(s, c, P_UNDEF, NULL);
  } else {
    kid_set(s, c, P_RESTARTING, NULL);
    try_again(s, c->id);
  }
  cn_buf_free(&err);
}

/* restart/2 for a simple_one_for_one child. */
static void restart_dyn(sup *s, dyn *d, cn_term why) {
  child *t = s->kids[0];
  cn_buf err = CN_BUF_INIT;
  cn_term undef = cn__atom_term("undefined");
  cn_pid pid;
  int r;

  if (!add_restart(s)) {
    log_restart(s, true, undef, &d->pid, why);
    dyn_erase(s, d);
    begin_shutdown(s);
    return;
  }
  log_restart(s, false, undef, &d->pid, why);
  if (d->restarting) {
    d->restarting = 0;
    s->ndyn_restarting--;
  }
  pm_del(&s->map, d->pid);
  r = start_mfa(s, t->mfa, dyn_args(d), &pid, &err);
  if (r == ST_OK && pm_put(&s->map, pid, d) == 0) {
    d->pid = pid;
  } else if (r == ST_OK || r == ST_IGNORE) {
    /* On ignore OTP stores the atom undefined as a pid key; we drop the
     * entry instead.  (ST_OK here: out of memory, cannot supervise.) */
    if (r == ST_OK)
      cn_exit(s->rt, pid, cn__atom_term("kill"));
    dyn_erase(s, d);
  } else {
    char store[64];
    cn_buf b;
    d->restarting = 1;
    s->ndyn_restarting++;
    pm_put(&s->map, d->pid, d);
    cn_buf_init_with(&b, store, sizeof(store));
    if (cn_build(&b, "{restarting, ~p}", &d->pid) == 0)
      try_again(s, view(&b));
    cn_buf_free(&b);
  }
  cn_buf_free(&err);
}

static bool is_shutdown_reason(cn_term r) {
  return cn_is_atom(r, "normal") || cn_is_atom(r, "shutdown") ||
         cn_match(r, "{shutdown, _}") == 0;
}

/* do_auto_shutdown/2, after a child was deleted: true to shut down. */
static bool auto_shutdown(sup *s, int significant) {
  size_t i;
  if (s->auto_shutdown == AS_NEVER || !significant)
    return false;
  if (s->auto_shutdown == AS_ANY)
    return true;
  if (s->strategy == S_SIMPLE)
    return s->ndyn == 0;
  for (i = 0; i < s->nkids; i++)
    if (s->kids[i]->pst != P_UNDEF && s->kids[i]->significant)
      return false;
  return true;
}

/* restart_child/3 and do_restart/3: a child exited. */
static void child_exited(sup *s, cn_pid pid, cn_term reason) {
  int restart, significant;

  if (s->strategy == S_SIMPLE) {
    dyn *d = pm_get(&s->map, pid);
    if (!d || d->restarting)
      return;
    restart = s->kids[0]->restart;
    significant = s->kids[0]->significant;
    if (restart == R_PERMANENT ||
        (restart == R_TRANSIENT && !is_shutdown_reason(reason))) {
      restart_dyn(s, d, reason);
      return;
    }
    dyn_erase(s, d);
  } else {
    child *c = pm_get(&s->map, pid);
    if (!c)
      return;
    restart = c->restart;
    significant = c->significant;
    if (restart == R_PERMANENT ||
        (restart == R_TRANSIENT && !is_shutdown_reason(reason))) {
      restart_kid(s, c, reason);
      return;
    }
    del_kid(s, c);
  }
  if (auto_shutdown(s, significant))
    begin_shutdown(s);
}

/* handle_cast({try_again_restart, Id}). */
static void on_try_again(sup *s, cn_term id) {
  cn_term empty = {NULL, 0};
  if (s->strategy == S_SIMPLE) {
    cn_pid pid;
    dyn *d;
    if (cn_match(id, "{restarting, ~p}", &pid) == 0 &&
        (d = pm_get(&s->map, pid)) != NULL && d->restarting)
      restart_dyn(s, d, empty);
  } else {
    child *c = find_kid(s, id);
    if (c && c->pst == P_RESTARTING)
      restart_kid(s, c, empty);
  }
}

/* terminate/2: shut every child down (terminate_children/2, or for
 * simple_one_for_one terminate_dynamic_children/1, all at once), then
 * stop with reason. */
static void begin_stop(sup *s, cn_term reason) {
  size_t i;
  cn_buf_reset(&s->reason);
  if (cn_put_term(&s->reason, reason) != 0) {
    cn_buf_reset(&s->reason);
    cn_put_atom(&s->reason, "shutdown");
  }
  if (s->strategy == S_SIMPLE) {
    dyn *d;
    job_init(s, J_STOP, s->ndyn);
    s->job.parallel = 1;
    for (d = s->dhead; d; d = d->next)
      if (!d->restarting)
        job_add(s, d->pid, s->kids[0]->shutdown);
  } else {
    job_init(s, J_STOP, s->nkids);
    for (i = s->nkids; i-- > 0;)
      if (s->kids[i]->pst == P_RUNNING)
        job_add(s, s->kids[i]->pid, s->kids[i]->shutdown);
  }
  job_begin(s);
}

static void job_finish(sup *s) {
  job j = s->job;
  disarm(s);
  memset(&s->job, 0, sizeof(s->job));
  s->busy = 0;
  free(j.items);
  pm_free(&j.imap);
  switch (j.kind) {
  case J_TERMINATE:
    if (j.dyn)
      dyn_erase(s, j.dyn);
    else if (j.child)
      del_kid(s, j.child);
    if (j.from)
      cn_replyf(j.from, "ok");
    break;
  case J_RESTART:
    restart_rest(s, j.start_from);
    break;
  case J_STOP:
  case J_REAP:
    s->stopped = 1;
    break;
  default:
    break;
  }
}

/* ---- Calls (handle_call/3) -------------------------------------------- */

enum { R_REPLY, R_TAKEN, R_CRASH };

static int which_children(sup *s, cn_buf *b) {
  size_t i;
  if (s->strategy == S_SIMPLE) {
    child *t = s->kids[0];
    dyn *d;
    if (s->ndyn)
      cn_put_list(b, (uint32_t)s->ndyn);
    for (d = s->dhead; d; d = d->next) {
      cn_put_tuple(b, 4);
      cn_put_atom(b, "undefined");
      put_pid_state(b, d->restarting ? P_RESTARTING : P_RUNNING, &d->pid);
      cn_put_atom(b, type_names[t->type]);
      cn_put_term(b, t->modules);
    }
    return cn_put_nil(b);
  }
  /* Newest first: OTP keeps its ids in termination order. */
  if (s->nkids)
    cn_put_list(b, (uint32_t)s->nkids);
  for (i = s->nkids; i-- > 0;) {
    child *c = s->kids[i];
    cn_put_tuple(b, 4);
    cn_put_term(b, c->id);
    put_pid_state(b, c->pst, &c->pid);
    cn_put_atom(b, type_names[c->type]);
    cn_put_term(b, c->modules);
  }
  return cn_put_nil(b);
}

static int count_children(sup *s, cn_buf *b) {
  int64_t specs = 0, active = 0, sups = 0, workers = 0;
  size_t i;
  if (s->strategy == S_SIMPLE) {
    int64_t sz = (int64_t)s->ndyn;
    bool is_sup = s->kids[0]->type == T_SUPERVISOR;
    return cn_build(b,
                    "[{specs, 1}, {active, ~i}, {supervisors, ~i}, "
                    "{workers, ~i}]",
                    sz - (int64_t)s->ndyn_restarting, is_sup ? sz : 0,
                    is_sup ? 0 : sz);
  }
  for (i = 0; i < s->nkids; i++) {
    child *c = s->kids[i];
    specs++;
    if (c->pst == P_RUNNING && cn_is_alive(s->rt, c->pid))
      active++;
    if (c->type == T_SUPERVISOR)
      sups++;
    else
      workers++;
  }
  return cn_build(b,
                  "[{specs, ~i}, {active, ~i}, {supervisors, ~i}, "
                  "{workers, ~i}]",
                  specs, active, sups, workers);
}

/* Appends the proper list extra to the list a, into out (A ++ EArgs). */
static int concat_args(cn_term a, cn_term extra, cn_buf *out) {
  cn_iter it;
  cn_term e;
  size_t na = 0, ne = 0;
  if (!is_proper_list(a) || !is_proper_list(extra))
    return CN_EINVAL;
  cn_iter_init(&it, a, &na);
  cn_iter_init(&it, extra, &ne);
  if (na + ne == 0)
    return cn_put_nil(out);
  cn_put_list(out, (uint32_t)(na + ne));
  cn_iter_init(&it, a, NULL);
  while (cn_iter_next(&it, &e))
    cn_put_term(out, e);
  cn_iter_init(&it, extra, NULL);
  while (cn_iter_next(&it, &e))
    cn_put_term(out, e);
  cn_put_nil(out);
  return out->err;
}

/* {start_child, EArgs} for simple_one_for_one. */
static int call_start_dyn(sup *s, cn_term extra, cn_buf *reply) {
  child *t = s->kids[0];
  cn_buf args = CN_BUF_INIT, err = CN_BUF_INIT;
  cn_pid pid;
  int r;

  if (concat_args(mfa_args(t->mfa), extra, &args) != 0) {
    cn_buf_free(&args);
    cn_build(reply, "{error, {'EXIT', {badarg, []}}}");
    return R_REPLY;
  }
  r = start_mfa(s, t->mfa, view(&args), &pid, &err);
  if (r == ST_OK) {
    cn_term a = view(&args);
    if (!dyn_store(s, pid, t->restart == R_TEMPORARY ? NULL : &a))
      cn_exit(s->rt, pid, cn__atom_term("kill")); /* cannot supervise it */
    cn_build(reply, "{ok, ~p}", &pid);
  } else if (r == ST_IGNORE) {
    cn_build(reply, "{ok, undefined}");
  } else {
    cn_build(reply, "{error, ~t}", view(&err));
  }
  cn_buf_free(&args);
  cn_buf_free(&err);
  return R_REPLY;
}

/* {start_child, ChildSpec}: handle_start_child/2. */
static int call_start_child(sup *s, cn_term cs, cn_buf *reply) {
  cn_buf err = CN_BUF_INIT;
  child *c, *nc;
  cn_pid pid;
  cspec sp;
  int r;

  if (check_childspec(cs, s->auto_shutdown, &sp, &err) != 0) {
    cn_build(reply, "{error, ~t}", view(&err));
    cn_buf_free(&err);
    return R_REPLY;
  }
  if ((c = find_kid(s, sp.id)) != NULL) {
    if (c->pst == P_RUNNING)
      cn_build(reply, "{error, {already_started, ~p}}", &c->pid);
    else
      cn_build(reply, "{error, already_present}");
    return R_REPLY;
  }
  if (!(nc = child_new(&sp, false))) {
    cn_build(reply, "{error, enomem}");
    return R_REPLY;
  }
  r = start_mfa(s, nc->mfa, mfa_args(nc->mfa), &pid, &err);
  if (r == ST_ERROR) {
    cn_put_tuple(reply, 2);
    cn_put_atom(reply, "error");
    cn_put_tuple(reply, 2);
    cn_put_term(reply, view(&err));
    put_child_record(reply, nc);
    child_free(nc);
  } else if (r == ST_IGNORE && nc->restart == R_TEMPORARY) {
    cn_build(reply, "{ok, undefined}");
    child_free(nc);
  } else {
    if (nc->restart == R_TEMPORARY) {
      child *st = child_new(&sp, true);
      if (st) {
        child_free(nc);
        nc = st;
      }
    }
    if (kid_append(s, nc) != 0) {
      child_free(nc);
      if (r == ST_OK)
        cn_exit(s->rt, pid, cn__atom_term("kill"));
      cn_build(reply, "{error, enomem}");
    } else if (r == ST_OK) {
      kid_set(s, nc, P_RUNNING, &pid);
      cn_build(reply, "{ok, ~p}", &pid);
    } else {
      cn_build(reply, "{ok, undefined}");
    }
  }
  cn_buf_free(&err);
  return R_REPLY;
}

/* find_child/2 for simple_one_for_one, by pid: the template when the pid
 * is one of ours, or is dead; NULL for a live stranger.  *d gets the entry
 * when there is one. */
static child *find_dyn_by_pid(sup *s, cn_pid pid, dyn **d) {
  *d = pm_get(&s->map, pid);
  if (*d || !cn_is_alive(s->rt, pid))
    return s->kids[0];
  return NULL;
}

static int call_terminate_child(sup *s, cn_term id, cn_from *from,
                                cn_buf *reply) {
  child *c;
  dyn *d = NULL;
  cn_pid pid;

  if (s->strategy == S_SIMPLE) {
    if (cn_get_pid(id, &pid) != 0) {
      cn_build(reply, "{error, simple_one_for_one}");
      return R_REPLY;
    }
    if (!find_dyn_by_pid(s, pid, &d)) {
      cn_build(reply, "{error, not_found}");
      return R_REPLY;
    }
    if (d && !d->restarting) {
      job_init(s, J_TERMINATE, 1);
      job_add(s, d->pid, s->kids[0]->shutdown);
      s->job.dyn = d;
      s->job.from = from;
      job_begin(s);
      return R_TAKEN;
    }
    if (d)
      dyn_erase(s, d);
    cn_build(reply, "ok");
    return R_REPLY;
  }
  if (!(c = find_kid(s, id))) {
    cn_build(reply, "{error, not_found}");
    return R_REPLY;
  }
  if (c->pst == P_RUNNING) {
    job_init(s, J_TERMINATE, 1);
    job_add(s, c->pid, c->shutdown);
    s->job.child = c;
    s->job.from = from;
    job_begin(s);
    return R_TAKEN;
  }
  del_kid(s, c);
  cn_build(reply, "ok");
  return R_REPLY;
}

static int call_restart_child(sup *s, cn_term id, cn_buf *reply) {
  cn_buf err = CN_BUF_INIT;
  child *c;
  cn_pid pid;
  int r;

  if (s->strategy == S_SIMPLE)
    return cn_build(reply, "{error, simple_one_for_one}"), R_REPLY;
  if (!(c = find_kid(s, id)))
    return cn_build(reply, "{error, not_found}"), R_REPLY;
  if (c->pst == P_RESTARTING)
    return cn_build(reply, "{error, restarting}"), R_REPLY;
  if (c->pst == P_RUNNING)
    return cn_build(reply, "{error, running}"), R_REPLY;
  r = start_mfa(s, c->mfa, mfa_args(c->mfa), &pid, &err);
  if (r == ST_OK) {
    kid_set(s, c, P_RUNNING, &pid);
    cn_build(reply, "{ok, ~p}", &pid);
  } else if (r == ST_IGNORE) {
    cn_build(reply, "{ok, undefined}");
  } else {
    cn_build(reply, "{error, ~t}", view(&err));
  }
  cn_buf_free(&err);
  return R_REPLY;
}

static int call_delete_child(sup *s, cn_term id, cn_buf *reply) {
  child *c;
  if (s->strategy == S_SIMPLE)
    return cn_build(reply, "{error, simple_one_for_one}"), R_REPLY;
  if (!(c = find_kid(s, id)))
    return cn_build(reply, "{error, not_found}"), R_REPLY;
  if (c->pst == P_RESTARTING)
    return cn_build(reply, "{error, restarting}"), R_REPLY;
  if (c->pst == P_RUNNING)
    return cn_build(reply, "{error, running}"), R_REPLY;
  kid_remove_at(s, kid_index(s, c));
  cn_build(reply, "ok");
  return R_REPLY;
}

static int call_get_childspec(sup *s, cn_term id, cn_buf *reply) {
  child *c = NULL;
  cn_pid pid;
  dyn *d;
  if (s->strategy == S_SIMPLE && cn_get_pid(id, &pid) == 0)
    c = find_dyn_by_pid(s, pid, &d);
  else
    c = find_kid(s, id);
  if (!c)
    return cn_build(reply, "{error, not_found}"), R_REPLY;
  put_childspec(reply, c);
  return R_REPLY;
}

/* handle_call/3.  R_REPLY: the reply is in reply.  R_TAKEN: a job keeps
 * from.  R_CRASH: no clause matched (OTP crashes with function_clause);
 * the stop has begun and from is still the caller's. */
static int do_call(sup *s, cn_term req, cn_from *from, cn_buf *reply) {
  cn_term x;
  if (cn_is_atom(req, "which_children"))
    return which_children(s, reply), R_REPLY;
  if (cn_is_atom(req, "count_children"))
    return count_children(s, reply), R_REPLY;
  if (cn_match(req, "{start_child, ~t}", &x) == 0)
    return s->strategy == S_SIMPLE ? call_start_dyn(s, x, reply)
                                   : call_start_child(s, x, reply);
  if (cn_match(req, "{terminate_child, ~t}", &x) == 0)
    return call_terminate_child(s, x, from, reply);
  if (cn_match(req, "{restart_child, ~t}", &x) == 0)
    return call_restart_child(s, x, reply);
  if (cn_match(req, "{delete_child, ~t}", &x) == 0)
    return call_delete_child(s, x, reply);
  if (cn_match(req, "{get_childspec, ~t}", &x) == 0)
    return call_get_childspec(s, x, reply);
  {
    cn_buf b = CN_BUF_INIT;
    begin_stop(s, mk(&b,
                     "{function_clause, [{supervisor, handle_call, "
                     "[~t, '_', '_'], []}]}",
                     req));
    cn_buf_free(&b);
  }
  return R_CRASH;
}

/* ---- Messages (handle_cast/2, handle_info/2) -------------------------- */

static void do_cast(sup *s, cn_term msg) {
  cn_term id;
  if (cn_match(msg, "{try_again_restart, ~t}", &id) == 0) {
    on_try_again(s, id);
  } else {
    cn_buf b = CN_BUF_INIT;
    begin_stop(s, mk(&b,
                     "{function_clause, [{supervisor, handle_cast, "
                     "[~t, '_'], []}]}",
                     msg));
    cn_buf_free(&b);
  }
}

static void do_info(sup *s, cn_pid parent, cn_term msg) {
  cn_pid pid;
  cn_term reason;
  if (cn_match(msg, "{'EXIT', ~p, ~t}", &pid, &reason) == 0) {
    /* gen_server: the parent's exit (or, with no parent, a stop request
     * or the runtime's shutdown) terminates the supervisor. */
    if (cn_pid_equal(&pid, &parent))
      begin_stop(s, reason);
    else
      child_exited(s, pid, reason);
  }
  /* Anything else: "Supervisor received unexpected message", ignored. */
}

static void postpone(sup *s, int kind, cn_term t, cn_from *from) {
  pmsg *m = malloc(sizeof(*m) + t.len);
  if (!m) {
    if (from)
      cn_from_free(from); /* the caller learns through its monitor */
    return;
  }
  m->next = NULL;
  m->kind = kind;
  m->from = from;
  m->len = t.len;
  memcpy(m->data, t.ptr, t.len);
  if (s->qtail)
    s->qtail->next = m;
  else
    s->qhead = m;
  s->qtail = m;
}

/* Replays postponed messages until a job starts or the queue is empty. */
static void drive(sup *s, cn_pid parent) {
  pmsg *m;
  while (!s->busy && !s->stopped && (m = s->qhead) != NULL) {
    cn_term t = {m->data, m->len};
    s->qhead = m->next;
    if (!s->qhead)
      s->qtail = NULL;
    if (m->kind == Q_CALL) {
      char store[256];
      cn_buf b;
      int r;
      cn_buf_init_with(&b, store, sizeof(store));
      r = do_call(s, t, m->from, &b);
      if (r == R_REPLY && !b.err)
        cn_reply(m->from, view(&b));
      else if (r != R_TAKEN)
        cn_from_free(m->from);
      cn_buf_free(&b);
    } else if (m->kind == Q_CAST) {
      do_cast(s, t);
    } else {
      do_info(s, parent, t);
    }
    free(m);
  }
}

/* ---- The server ------------------------------------------------------- */

static void sup_free(sup *s) {
  pmsg *m;
  size_t i;
  if (!s)
    return;
  disarm(s);
  if (s->job.from)
    cn_from_free(s->job.from);
  free(s->job.items);
  pm_free(&s->job.imap);
  while ((m = s->qhead)) {
    s->qhead = m->next;
    if (m->from)
      cn_from_free(m->from); /* callers hold monitors: they see us exit */
    free(m);
  }
  for (i = 0; i < s->nkids; i++)
    child_free(s->kids[i]);
  free(s->kids);
  while (s->dhead) {
    dyn *d = s->dhead;
    s->dhead = d->next;
    free(d->args);
    free(d);
  }
  pm_free(&s->map);
  free(s->restarts);
  cn_buf_free(&s->reason);
  free(s);
}

/* What cn_supervisor_start hands to init. */
typedef struct start_arg {
  cn_term spec;
  int invalid;    /* init stopped because the spec is invalid */
  int has_reaper; /* init failed and a reaper shuts its children down */
  cn_pid reaper;
} start_arg;

static int reaper_start(sup *s, titem *items, size_t n, cn_pid *pid);

/* Shuts down the children init started, when a later one failed to
 * start: through a reaper, or if none can be had, by signals alone. */
static void init_cleanup(sup *s, start_arg *a) {
  titem *items = calloc(s->nkids ? s->nkids : 1, sizeof(titem));
  size_t n = 0, i;
  for (i = s->nkids; i-- > 0;) {
    child *c = s->kids[i];
    if (c->pst != P_RUNNING)
      continue;
    /* The exits come from the reaper's job, in order; not from a link
     * when we die. */
    cn_unlink(s->rt, c->pid);
    if (items) {
      items[n].pid = c->pid;
      items[n].shutdown = c->shutdown;
      n++;
    } else {
      send_exit(s, c->pid, c->shutdown == SHUT_BRUTAL ? "kill" : "shutdown");
    }
  }
  if (n == 0)
    free(items);
  else if (reaper_start(s, items, n, &a->reaper) == 0)
    a->has_reaper = 1;
}

/* init/1: init_state/4, then init_children/2 or init_dynamic/2. */
static int sup_init(cn_proc *self, void *arg, void **state) {
  start_arg *a = arg;
  cn_buf err = CN_BUF_INIT;
  cn_term flags, list, e;
  size_t i;
  sup *s;

  if (cn_is_atom(a->spec, "ignore"))
    return CN_IGNORE;
  cn_trap_exit(self, true, NULL);
  self->flags |= CN__PF_OWN_EXIT;
  if (!(s = calloc(1, sizeof(*s)))) {
    cn_set_reason(self, "enomem");
    return CN_STOP;
  }
  s->rt = cn_proc_runtime(self);
  s->me = cn_proc_pid(self);
  cn_buf_init(&s->reason);

  if (cn_match(a->spec, "{~t, ~t}", &flags, &list) != 0) {
    a->invalid = 1;
    cn_set_reason(self, "{bad_return, {supervisor, init, ~t}}", a->spec);
    goto out;
  }
  if (check_flags(flags, s, &err) != 0) {
    a->invalid = 1;
    cn_set_reason(self, "{supervisor_data, ~t}", view(&err));
    goto out;
  }
  if (!is_proper_list(list) ||
      (s->strategy == S_SIMPLE && cn_match(list, "[_]") != 0)) {
    a->invalid = 1;
    cn_set_reason(self, "{bad_start_spec, ~t}", list);
    goto out;
  }
  /* check_startspec/2: every spec, then duplicates. */
  {
    cn_iter it;
    cn_iter_init(&it, list, NULL);
    while (cn_iter_next(&it, &e)) {
      cspec sp;
      child *c;
      if (check_childspec(e, s->auto_shutdown, &sp, &err) != 0) {
        a->invalid = 1;
        cn_set_reason(self, "{start_spec, ~t}", view(&err));
        goto out;
      }
      if (find_kid(s, sp.id)) {
        a->invalid = 1;
        cn_set_reason(self, "{start_spec, {duplicate_child_name, ~t}}", sp.id);
        goto out;
      }
      if (!(c = child_new(&sp, false)) || kid_append(s, c) != 0) {
        child_free(c);
        cn_set_reason(self, "enomem");
        goto out;
      }
    }
  }
  if (s->strategy == S_SIMPLE) {
    cn_buf_free(&err);
    *state = s;
    return CN_NOREPLY;
  }
  /* start_children/2 */
  for (i = 0; i < s->nkids;) {
    child *c = s->kids[i];
    cn_pid pid;
    int r = start_mfa(s, c->mfa, mfa_args(c->mfa), &pid, &err);
    if (r == ST_OK) {
      kid_set(s, c, P_RUNNING, &pid);
      i++;
    } else if (r == ST_IGNORE && c->restart == R_TEMPORARY) {
      kid_remove_at(s, i);
    } else if (r == ST_IGNORE) {
      i++;
    } else {
      cn_set_reason(self, "{shutdown, {failed_to_start_child, ~t, ~t}}", c->id,
                    view(&err));
      init_cleanup(s, a);
      goto out;
    }
  }
  cn_buf_free(&err);
  *state = s;
  return CN_NOREPLY;

out:
  cn_buf_free(&err);
  sup_free(s);
  return CN_STOP;
}

/* After every callback: replay what was postponed, and stop when done. */
static int finish(cn_proc *self, sup *s) {
  drive(s, self->parent);
  if (s->stopped) {
    cn_set_reason_term(self, view(&s->reason));
    return CN_STOP;
  }
  return CN_NOREPLY;
}

static int sup_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  sup *s = state;
  int r;

  if (s->stopped) {
    cn_set_reason_term(self, view(&s->reason));
    return CN_STOP;
  }
  if (s->busy) {
    postpone(s, Q_CALL, req, from);
    return CN_NOREPLY;
  }
  r = do_call(s, req, from, reply);
  if (r == R_CRASH && !s->stopped) {
    /* The caller's monitor tells it our reason once the children are
     * down. */
    cn_from_free(from);
    r = R_TAKEN;
  }
  if (finish(self, s) == CN_STOP) {
    if (r == R_REPLY)
      return CN_STOP_REPLY;
    if (r == R_CRASH)
      return CN_STOP;
    /* from was handed on, so CN_STOP (which frees it) cannot be used:
     * stop on the next message instead. */
    cn_send(s->rt, cn_to_pid(s->me), cn__atom_term("ok"));
    return CN_NOREPLY;
  }
  return r == R_REPLY ? CN_REPLY : CN_NOREPLY;
}

static int sup_cast(cn_proc *self, void *state, cn_term msg) {
  sup *s = state;
  if (s->busy && !s->stopped)
    postpone(s, Q_CAST, msg, NULL);
  else if (!s->stopped)
    do_cast(s, msg);
  return finish(self, s);
}

static int sup_info(cn_proc *self, void *state, cn_term msg) {
  sup *s = state;
  if (s->stopped)
    return finish(self, s);
  if (s->busy) {
    if (!job_event(s, msg))
      postpone(s, Q_INFO, msg, NULL);
  } else if (cn_match(msg, "{" KILL_TAG ", _}") != 0) {
    do_info(s, self->parent, msg);
  }
  return finish(self, s);
}

/* Runs on every exit, killed or not. */
static void sup_free_state(void *state) { sup_free(state); }

/* The state sys:get_state shows: a map of the flags and the children as
 * which_children lists them, where OTP shows its #state{} record. */
static int sup_format_state(cn_proc *self, void *state, cn_buf *out) {
  sup *s = state;
  (void)self;
  cn_put_map(out, 5);
  cn_put_atom(out, "strategy");
  cn_put_atom(out, strategy_names[s->strategy]);
  cn_put_atom(out, "intensity");
  cn_put_int(out, s->intensity);
  cn_put_atom(out, "period");
  cn_put_int(out, s->period);
  cn_put_atom(out, "auto_shutdown");
  cn_put_atom(out, auto_names[s->auto_shutdown]);
  cn_put_atom(out, "children");
  which_children(s, out);
  return out->err;
}

static const cn_server_ops sup_ops = {
    .name = "supervisor",
    .init = sup_init,
    .handle_call = sup_call,
    .handle_cast = sup_cast,
    .handle_info = sup_info,
    .free_state = sup_free_state,
    .format_state = sup_format_state,
};

/* ---- The reaper ------------------------------------------------------- */

typedef struct reap_arg {
  cn_pid from; /* the supervisor that failed to start */
  titem *items;
  size_t n;
} reap_arg;

static int reaper_init(cn_proc *self, void *arg, void **state) {
  reap_arg *a = arg;
  sup *s = calloc(1, sizeof(*s));
  if (!s)
    return CN_STOP;
  cn_trap_exit(self, true, NULL);
  s->rt = cn_proc_runtime(self);
  s->me = cn_proc_pid(self);
  s->forge = 1;
  s->forge_from = a->from;
  s->strategy = S_ONE_FOR_ONE;
  cn_buf_init(&s->reason);
  cn_put_atom(&s->reason, "normal");
  memset(&s->job, 0, sizeof(s->job));
  s->job.kind = J_REAP;
  s->job.items = a->items;
  s->job.n = a->n;
  a->items = NULL;
  job_begin(s);
  if (s->stopped) {
    sup_free(s);
    return CN_IGNORE;
  }
  *state = s;
  return CN_NOREPLY;
}

static int reaper_info(cn_proc *self, void *state, cn_term msg) {
  sup *s = state;
  job_event(s, msg);
  if (s->stopped)
    return CN_STOP; /* normal */
  return CN_NOREPLY;
}

static const cn_server_ops reaper_ops = {
    .name = "supervisor",
    .init = reaper_init,
    .handle_info = reaper_info,
    .free_state = sup_free_state,
};

/* Starts a reaper for items (which it takes, whatever happens).  Returns
 * 0 with *pid, or an error when it finished or could not start. */
static int reaper_start(sup *s, titem *items, size_t n, cn_pid *pid) {
  reap_arg a;
  int rc;
  a.from = s->me;
  a.items = items;
  a.n = n;
  rc = cn_start(s->rt, &reaper_ops, &a, NULL, pid);
  if (a.items) {
    /* It never took them: signal them ourselves (we are still their
     * parent), without waiting. */
    size_t i;
    for (i = 0; i < n; i++)
      send_exit(s, items[i].pid,
                items[i].shutdown == SHUT_BRUTAL ? "kill" : "shutdown");
    free(items);
    if (rc == 0)
      rc = CN_EINVAL;
  }
  return rc;
}

/* ---- Public ----------------------------------------------------------- */

static int sup_start(cn_runtime *rt, cn_term spec, const cn_start_options *opts,
                     cn_pid *pid, bool link) {
  start_arg a;
  bool plain = cn__current() == NULL && cn__current_sched() == NULL;
  int rc;

  if (!rt || !spec.ptr || !spec.len)
    return CN_EINVAL;
  memset(&a, 0, sizeof(a));
  a.spec = spec;
  rc = link ? cn_start_link(rt, &sup_ops, &a, opts, pid)
            : cn_start(rt, &sup_ops, &a, opts, pid);
  if (rc == CN_EEXIT && a.invalid)
    rc = CN_EINVAL;
  if (a.has_reaper && plain) {
    /* OTP returns once the children it started are gone; only a plain
     * thread may wait for that. */
    while (cn_is_alive(rt, a.reaper))
      uv_sleep(1);
  }
  return rc;
}

int cn_supervisor_start(cn_runtime *rt, cn_term spec,
                        const cn_start_options *opts, cn_pid *pid) {
  return sup_start(rt, spec, opts, pid, false);
}

int cn_supervisor_start_link(cn_runtime *rt, cn_term spec,
                             const cn_start_options *opts, cn_pid *pid) {
  return sup_start(rt, spec, opts, pid, true);
}
