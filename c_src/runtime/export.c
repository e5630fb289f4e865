/* The export table (cn_export, cn_apply) and the worker threads that run
 * exports for the distribution layer's spawned processes and rex.
 *
 * The table is small and read once per call: a list under a mutex.  An
 * export runs on a thread of its own because it may block (cn_call and
 * cn_receive are for plain threads): a detached thread per call, counted,
 * at most CN__MAX_WORKERS at once, which the runtime waits for when it
 * shuts down. */
#include "internal.h"
#include "term/term_internal.h"

#include <stdlib.h>
#include <string.h>

#define CN__MAX_WORKERS 1024u

typedef struct cn__export {
  struct cn__export *next;
  char *mod, *fun;
  unsigned arity;
  cn_export_fn fn;
  void *arg;
} cn__export;

static bool atom_name_ok(const char *s) {
  size_t n;
  if (!s)
    return false;
  n = strlen(s);
  return n > 0 && n <= 255;
}

static cn__export *find_locked(cn_runtime *rt, const char *mod, size_t mlen,
                               const char *fun, size_t flen, unsigned arity) {
  cn__export *e;
  for (e = rt->exports; e; e = e->next) {
    if (e->arity == arity && strlen(e->mod) == mlen && strlen(e->fun) == flen &&
        memcmp(e->mod, mod, mlen) == 0 && memcmp(e->fun, fun, flen) == 0)
      return e;
  }
  return NULL;
}

int cn_export(cn_runtime *rt, const char *mod, const char *fun, unsigned arity,
              cn_export_fn fn, void *arg) {
  cn__export *e;
  if (!rt || !fn || !atom_name_ok(mod) || !atom_name_ok(fun) || arity > 255)
    return CN_EINVAL;
  if (!(e = calloc(1, sizeof(*e))))
    return CN_ENOMEM;
  if (!(e->mod = strdup(mod)) || !(e->fun = strdup(fun))) {
    free(e->mod);
    free(e);
    return CN_ENOMEM;
  }
  e->arity = arity;
  e->fn = fn;
  e->arg = arg;
  pthread_mutex_lock(&rt->exports_mu);
  if (find_locked(rt, mod, strlen(mod), fun, strlen(fun), arity)) {
    pthread_mutex_unlock(&rt->exports_mu);
    free(e->mod);
    free(e->fun);
    free(e);
    return CN_EEXIST;
  }
  e->next = rt->exports;
  rt->exports = e;
  pthread_mutex_unlock(&rt->exports_mu);
  return 0;
}

bool cn_is_exported(cn_runtime *rt, const char *mod, const char *fun,
                    unsigned arity) {
  bool found;
  if (!rt || !mod || !fun)
    return false;
  pthread_mutex_lock(&rt->exports_mu);
  found = find_locked(rt, mod, strlen(mod), fun, strlen(fun), arity) != NULL;
  pthread_mutex_unlock(&rt->exports_mu);
  return found;
}

bool cn__module_exported(cn_runtime *rt, const char *mod) {
  cn__export *e;
  bool found = false;
  pthread_mutex_lock(&rt->exports_mu);
  for (e = rt->exports; e && !found; e = e->next)
    found = strcmp(e->mod, mod) == 0;
  pthread_mutex_unlock(&rt->exports_mu);
  return found;
}

void cn__exports_free(cn_runtime *rt) {
  cn__export *e;
  while ((e = rt->exports)) {
    rt->exports = e->next;
    free(e->mod);
    free(e->fun);
    free(e);
  }
}

/* The length of a proper list, or -1. */
static long list_len(cn_term l) {
  cn_iter it;
  size_t n = 0;
  cn_term e;
  long k = 0;
  if (cn_term_typeof(l) == CN_T_NIL)
    return 0;
  if (cn_term_typeof(l) != CN_T_LIST || cn_iter_init(&it, l, &n) != 0)
    return -1;
  while (cn_iter_next(&it, &e))
    k++;
  if (it.tail.len && cn_term_typeof(it.tail) != CN_T_NIL)
    return -1;
  return k;
}

/* {M, F, Args, []} (or {Fun, Args, []} when fun is set) as the head of a
 * stack, then, when apply2 is set, erlang:apply/2's frame. */
static void undef_stack(cn_buf *stack, const char *mod, const char *fun,
                        cn_term funterm, cn_term args, bool apply2) {
  if (!stack)
    return;
  cn_buf_reset(stack);
  cn_put_list(stack, apply2 ? 2 : 1);
  if (funterm.len)
    cn_build(stack, "{~t, ~t, []}", funterm, args);
  else
    cn_build(stack, "{~a, ~a, ~t, []}", mod, fun, args);
  if (apply2)
    cn_build(stack, "{erlang, apply, 2, []}");
  cn_put_nil(stack);
}

/* erlang:apply/2,3 are the runtime's own: apply(M, F, Args) applies
 * M:F/length(Args); apply(Fun, Args) with an
 * external fun (fun M:F/A) applies that export; a fun of a module, which
 * no C node has, is undef as on a BEAM node that lacks the module:
 * error:undef with [{Fun, Args, []}, {erlang, apply, 2, []}]. */
static int apply_builtin(cn_runtime *rt, const char *fun, cn_term args,
                         cn_buf *out, cn_buf *stack, bool *handled);

int cn__apply(cn_runtime *rt, const char *mod, const char *fun, cn_term args,
              cn_buf *out, cn_buf *stack) {
  cn__export *e;
  cn_export_fn fn;
  void *arg;
  long n = list_len(args);
  bool handled = false;
  int rc;

  if (n < 0)
    return CN_EBADTERM;
  if (strcmp(mod, "erlang") == 0 && strcmp(fun, "apply") == 0) {
    rc = apply_builtin(rt, fun, args, out, stack, &handled);
    if (handled)
      return rc;
  }
  pthread_mutex_lock(&rt->exports_mu);
  e = find_locked(rt, mod, strlen(mod), fun, strlen(fun), (unsigned)n);
  fn = e ? e->fn : NULL;
  arg = e ? e->arg : NULL;
  pthread_mutex_unlock(&rt->exports_mu);
  cn_buf_reset(out);
  if (!fn) {
    cn_term none = {NULL, 0};
    undef_stack(stack, mod, fun, none, args, false);
    return CN_ENOENT;
  }
  rc = fn(rt, args, out, arg);
  if (rc < CN_RETURN || rc > CN_ERROR || out->err || out->len == 0 ||
      cn__check_term(rt, cn_buf_term(out)) != 0) {
    /* As gen_server's bad_return_value: the caller learns the function
     * is at fault. */
    int bad = rc;
    cn_buf_reset(out);
    if (bad >= CN_RETURN && bad <= CN_ERROR)
      cn_build(out, "bad_return");
    else
      cn_build(out, "{bad_return_value, ~i}", (int64_t)bad);
    rc = CN_ERROR;
  }
  if (rc == CN_ERROR && stack) {
    cn_buf_reset(stack);
    cn_build(stack, "[{~a, ~a, ~u, []}]", mod, fun, (uint64_t)n);
  }
  return rc;
}

static int apply_builtin(cn_runtime *rt, const char *fun, cn_term args,
                         cn_buf *out, cn_buf *stack, bool *handled) {
  cn_term f, a, m, none = {NULL, 0};
  char m2[256], f2[256];
  (void)fun;
  if (cn_match(args, "[~t, ~t, ~t]", &m, &f, &a) == 0 &&
      cn_get_atom(m, m2, sizeof(m2)) >= 0 &&
      cn_get_atom(f, f2, sizeof(f2)) >= 0 && list_len(a) >= 0) {
    /* apply(M, F, Args): M:F(Args...). */
    *handled = true;
    return cn__apply(rt, m2, f2, a, out, stack);
  }
  if (cn_match(args, "[~t, ~t]", &f, &a) != 0 || cn_term_typeof(f) != CN_T_FUN)
    return 0; /* not a fun: the table's (undef) */
  *handled = true;
  if ((unsigned char)f.ptr[0] == ETF_EXPORT) {
    /* EXPORT_EXT: Module, Function, Arity. */
    cn_term_limits lim = {4, 1024};
    size_t off = 1, s1, s2;
    cn_term mt, ft;
    s1 = off;
    if (cn_term_validate(f.ptr, f.len, &off, &lim) != 0)
      return CN_EBADTERM;
    mt.ptr = f.ptr + s1;
    mt.len = off - s1;
    s2 = off;
    if (cn_term_validate(f.ptr, f.len, &off, &lim) != 0)
      return CN_EBADTERM;
    ft.ptr = f.ptr + s2;
    ft.len = off - s2;
    if (cn_get_atom(mt, m2, sizeof(m2)) >= 0 &&
        cn_get_atom(ft, f2, sizeof(f2)) >= 0 && list_len(a) >= 0)
      return cn__apply(rt, m2, f2, a, out, stack);
  }
  cn_buf_reset(out);
  (void)none;
  undef_stack(stack, NULL, NULL, f, a, true);
  return CN_ENOENT;
}

int cn_apply(cn_runtime *rt, const char *mod, const char *fun, cn_term args,
             cn_buf *out) {
  int rc;
  if (!rt || !mod || !fun || !out)
    return CN_EINVAL;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  if ((rc = cn__check_term(rt, args)) != 0)
    return rc;
  rc = cn__apply(rt, mod, fun, args, out, NULL);
  if (rc == CN_ENOENT)
    cn_buf_reset(out);
  return rc;
}

/* ---- Worker threads --------------------------------------------------- */

void cn__thread_dtor(void *arg);

static void *worker_main(void *arg) {
  cn__work *w = arg;
  cn_runtime *rt = w->rt;
  cn__thread *t;
  w->fn(w); /* may free w */
  /* The thread's pid, if it made one, goes now (the key's destructor
   * would run only after we are uncounted, too late for shutdown). */
  if ((t = pthread_getspecific(rt->thread_key)) != NULL) {
    pthread_setspecific(rt->thread_key, NULL);
    cn__thread_dtor(t);
  }
  pthread_mutex_lock(&rt->exports_mu);
  if (--rt->workers == 0)
    pthread_cond_broadcast(&rt->workers_cv);
  pthread_mutex_unlock(&rt->exports_mu);
  return NULL;
}

int cn__work_start(cn_runtime *rt, cn__work *w) {
  pthread_attr_t at;
  pthread_t th;
  int rc;
  w->rt = rt;
  pthread_mutex_lock(&rt->exports_mu);
  if (atomic_load(&rt->shutting_down) || rt->workers >= CN__MAX_WORKERS) {
    pthread_mutex_unlock(&rt->exports_mu);
    return CN_ELIMIT;
  }
  rt->workers++;
  pthread_mutex_unlock(&rt->exports_mu);
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  rc = pthread_create(&th, &at, worker_main, w);
  pthread_attr_destroy(&at);
  if (rc != 0) {
    pthread_mutex_lock(&rt->exports_mu);
    if (--rt->workers == 0)
      pthread_cond_broadcast(&rt->workers_cv);
    pthread_mutex_unlock(&rt->exports_mu);
    return CN_ELIMIT;
  }
  return 0;
}

bool cn__work_wait(cn_runtime *rt, int timeout_ms) {
  uint64_t deadline =
      timeout_ms < 0 ? 0 : uv_hrtime() + (uint64_t)timeout_ms * 1000000ULL + 1;
  bool none;
  pthread_mutex_lock(&rt->exports_mu);
  while (rt->workers > 0 &&
         cn__cond_wait(&rt->workers_cv, &rt->exports_mu, deadline))
    ;
  none = rt->workers == 0;
  pthread_mutex_unlock(&rt->exports_mu);
  return none;
}
