/* Schedulers: one thread and one libuv loop each, a run queue, wake-ups
 * and work stealing.  See internal.h for the design. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Messages a process handles per turn before it yields its scheduler. */
#define CN__BUDGET 64
/* Processes a scheduler runs per loop iteration before polling I/O. */
#define CN__BATCH 256

static _Thread_local cn__sched *tls_sched;
static _Thread_local cn_proc *tls_current;

cn_proc *cn__current(void) { return tls_current; }

cn_proc *cn__set_current(cn_proc *p) {
  cn_proc *old = tls_current;
  tls_current = p;
  return old;
}

cn__sched *cn__current_sched(void) { return tls_sched; }

/* ---- Record caches ---------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* A kept record is poisoned but for its link, so that a use after free
 * still fails under ASan. */
#define REC_POISON(r, n)                                                       \
  ASAN_POISON_MEMORY_REGION((char *)(r) + sizeof(void *), (n) - sizeof(void *))
#define REC_UNPOISON(r, n) ASAN_UNPOISON_MEMORY_REGION(r, n)
#else
#define REC_POISON(r, n) ((void)(r), (void)(n))
#define REC_UNPOISON(r, n) ((void)(r), (void)(n))
#endif

static const size_t rec_size[CN__NREC] = {
    [CN__REC_MSG] = sizeof(cn__msg) + CN__MSG_POOL_INLINE,
    [CN__REC_FROM] = sizeof(cn_from),
    [CN__REC_PENDING] = sizeof(cn__pending),
    [CN__REC_MON] = sizeof(cn__mon),
    [CN__REC_DIST] = CN__REC_DIST_SIZE,
};

/* A thread that is no scheduler keeps its records here; the key's
 * destructor frees them when the thread exits (plain_keyed says the key
 * has this thread's value). */
static _Thread_local cn__rec_cache tls_plain_recs[CN__NREC];
static _Thread_local bool plain_keyed;
static pthread_key_t plain_key;
static pthread_once_t plain_once = PTHREAD_ONCE_INIT;
static bool plain_key_ok;

static void recs_list_free(cn__rec_cache *c, size_t size) {
  void *r;
  while ((r = c->head) != NULL) {
    REC_UNPOISON(r, size);
    c->head = *(void **)r;
    free(r);
  }
  c->n = 0;
}

/* Records freed by a later destructor set the key again, and so come
 * back here in the next round. */
static void plain_recs_dtor(void *arg) {
  cn__rec_cache *recs = arg;
  plain_keyed = false;
  for (int k = 0; k < CN__NREC; k++)
    recs_list_free(&recs[k], rec_size[k]);
}

static void plain_key_make(void) {
  plain_key_ok = pthread_key_create(&plain_key, plain_recs_dtor) == 0;
}

/* When libcnode is unloaded, its destructor must not be left to run at
 * a later thread's exit (what threads keep then stays allocated). */
__attribute__((destructor)) static void plain_key_delete(void) {
  if (plain_key_ok)
    pthread_key_delete(plain_key);
  plain_key_ok = false;
}

/* This thread's list of kind, or NULL when it may keep none. */
static cn__rec_cache *plain_cache(cn__rec_kind kind) {
  if (!plain_keyed) {
    pthread_once(&plain_once, plain_key_make);
    if (!plain_key_ok || pthread_setspecific(plain_key, tls_plain_recs) != 0)
      return NULL;
    plain_keyed = true;
  }
  return &tls_plain_recs[kind];
}

void *cn__rec_alloc(cn__rec_kind kind) {
  cn__sched *s = tls_sched;
  cn__rec_cache *c = s ? &s->recs[kind] : &tls_plain_recs[kind];
  void *r;
  if ((r = c->head) != NULL) {
    REC_UNPOISON(r, rec_size[kind]);
    c->head = *(void **)r;
    c->n--;
    return r;
  }
  return malloc(rec_size[kind]);
}

void cn__rec_free(cn__rec_kind kind, void *r) {
  cn__sched *s = tls_sched;
  cn__rec_cache *c;
  if (!r)
    return;
  if (s)
    c = s->recs[kind].n < CN__REC_KEEP ? &s->recs[kind] : NULL;
  else if (tls_plain_recs[kind].n < CN__REC_KEEP_PLAIN)
    c = plain_cache(kind);
  else
    c = NULL;
  if (!c) {
    free(r);
    return;
  }
  *(void **)r = c->head;
  REC_POISON(r, rec_size[kind]);
  c->head = r;
  c->n++;
}

/* Frees what s keeps (after its thread has exited). */
static void recs_free(cn__sched *s) {
  for (int k = 0; k < CN__NREC; k++)
    recs_list_free(&s->recs[k], rec_size[k]);
}

/* ---- Reference numbers ------------------------------------------------ */

/* Numbers a scheduler takes from the runtime's counter at once. */
#define REF_BLOCK 256
/* Numbers a plain thread takes at once (see cn__thread). */
#define REF_BLOCK_PLAIN 64

uint64_t cn__thread_ref_number(cn_runtime *rt, cn__thread *t) {
  if (t->ref_next == t->ref_end) {
    t->ref_next = atomic_fetch_add_explicit(&rt->ref_counter, REF_BLOCK_PLAIN,
                                            memory_order_relaxed);
    t->ref_end = t->ref_next + REF_BLOCK_PLAIN;
  }
  return t->ref_next++;
}

uint64_t cn__ref_number(cn_runtime *rt) {
  cn__sched *s = tls_sched;
  cn__thread *t;
  if (s && s->rt == rt) {
    if (s->ref_next == s->ref_end) {
      s->ref_next = atomic_fetch_add_explicit(&rt->ref_counter, REF_BLOCK,
                                              memory_order_relaxed);
      s->ref_end = s->ref_next + REF_BLOCK;
    }
    return s->ref_next++;
  }
  if (rt->key_ok && (t = pthread_getspecific(rt->thread_key)) != NULL)
    return cn__thread_ref_number(rt, t);
  return atomic_fetch_add_explicit(&rt->ref_counter, 1, memory_order_relaxed);
}

/* ---- Run queues ------------------------------------------------------- */

static void rq_push(cn__sched *s, cn_proc *p) {
  pthread_mutex_lock(&s->rq_mu);
  p->rq_next = NULL;
  if (s->rq_tail)
    s->rq_tail->rq_next = p;
  else
    s->rq_head = p;
  s->rq_tail = p;
  atomic_fetch_add(&s->rq_len, 1);
  pthread_mutex_unlock(&s->rq_mu);
}

static cn_proc *rq_pop(cn__sched *s) {
  cn_proc *p;
  if (atomic_load_explicit(&s->rq_len, memory_order_relaxed) == 0)
    return NULL;
  pthread_mutex_lock(&s->rq_mu);
  p = s->rq_head;
  if (p) {
    s->rq_head = p->rq_next;
    if (!s->rq_head)
      s->rq_tail = NULL;
    atomic_fetch_sub(&s->rq_len, 1);
  }
  pthread_mutex_unlock(&s->rq_mu);
  return p;
}

/* Moves half of victim's queue (from the front) to s.  Returns the count. */
static size_t steal(cn__sched *s, cn__sched *victim) {
  cn_proc *first, *last, *p;
  size_t n, take, i;

  /* A queued process waits behind whatever the victim is running, so even
   * one is worth taking; half (rounded up) leaves the victim its share. */
  n = atomic_load_explicit(&victim->rq_len, memory_order_relaxed);
  if (n == 0)
    return 0;
  pthread_mutex_lock(&victim->rq_mu);
  n = atomic_load(&victim->rq_len);
  take = (n + 1) / 2;
  if (take == 0) {
    pthread_mutex_unlock(&victim->rq_mu);
    return 0;
  }
  first = victim->rq_head;
  last = first;
  for (i = 1; i < take; i++)
    last = last->rq_next;
  victim->rq_head = last->rq_next;
  if (!victim->rq_head)
    victim->rq_tail = NULL;
  last->rq_next = NULL;
  atomic_fetch_sub(&victim->rq_len, take);
  pthread_mutex_unlock(&victim->rq_mu);

  /* The chain is ours alone until it is linked into s's queue. */
  for (p = first; p; p = p->rq_next)
    atomic_store_explicit(&p->home, s->idx, memory_order_relaxed);
  pthread_mutex_lock(&s->rq_mu);
  if (s->rq_tail)
    s->rq_tail->rq_next = first;
  else
    s->rq_head = first;
  s->rq_tail = last;
  atomic_fetch_add(&s->rq_len, take);
  pthread_mutex_unlock(&s->rq_mu);
  return take;
}

static void start_runner(cn__sched *s);

/* Wakes one sleeping scheduler other than s, so that it steals. */
static void wake_helper(cn__sched *s) {
  cn_runtime *rt = s->rt;
  unsigned i;
  for (i = 1; i < rt->nsched; i++) {
    cn__sched *o = &rt->sched[(s->idx + i) % rt->nsched];
    if (atomic_load(&o->sleeping)) {
      atomic_store(&o->sleeping, 0);
      uv_async_send(&o->wake);
      return;
    }
  }
}

void cn__schedule(cn_proc *p) {
  cn__sched *cur = tls_sched;
  cn_runtime *rt = p->rt;
  cn__sched *s;

  if (cur && cur->rt == rt) {
    /* Made runnable here: run it here (see Placement in internal.h).
     * Into an empty queue it goes as rq_next, with no lock: a caller and
     * its server hand the scheduler back and forth that way. */
    atomic_store_explicit(&p->home, cur->idx, memory_order_relaxed);
    if (!cur->rq_next &&
        atomic_load_explicit(&cur->rq_len, memory_order_relaxed) == 0) {
      p->rq_next = NULL;
      cur->rq_next = p;
    } else {
      rq_push(cur, p);
    }
    start_runner(cur);
    return;
  }
  s = &rt->sched[atomic_load_explicit(&p->home, memory_order_relaxed) %
                 rt->nsched];
  rq_push(s, p);
  /* Pairs with the store to sleeping in on_prepare: either we see it set
   * and wake s, or s sees our push when it re-checks its queue. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&s->sleeping))
    uv_async_send(&s->wake);
}

bool cn__sched_quiet(cn_runtime *rt) {
  cn__sched *s = tls_sched;
  return s && s->rt == rt && !s->rq_next &&
         atomic_load_explicit(&s->rq_len, memory_order_relaxed) == 0;
}

bool cn__release(cn_proc *p) {
  /* A push that lost the race for SCHED before we cleared it is visible
   * now; take the bit back and requeue.  The clear and the look are both
   * seq_cst, which pairs with the sender's fence between its push and its
   * look at state (cn__deliver_to) without a fence of our own: either
   * the sender sees SCHED clear, or we see its push. */
  atomic_fetch_and_explicit(&p->state, ~CN__P_SCHED, memory_order_seq_cst);
  if (atomic_load_explicit(&p->inbox, memory_order_seq_cst) != NULL) {
    uint32_t st = atomic_load(&p->state);
    while (!(st & (CN__P_SCHED | CN__P_EXITING))) {
      if (atomic_compare_exchange_weak(&p->state, &st, st | CN__P_SCHED)) {
        cn__schedule(p);
        return true;
      }
    }
  }
  return false;
}

/* Runs one process: up to budget messages.  Called with SCHED held; hands
 * SCHED back (or requeues) before returning. */
void cn__run_proc(cn_proc *p, int budget) {
  cn_proc *prev = cn__set_current(p);
  int i;

  for (i = 0; i < budget; i++) {
    cn__msg *m;
    if (!p->q_head)
      cn__inbox_to_queue(p, NULL);
    if (!(m = p->q_head))
      break;
    p->q_head = m->next;
    if (!p->q_head)
      p->q_tail = NULL;
    cn__handle_msg(p, m);
    if (p->flags & CN__PF_DEAD)
      break;
    if (p->park_node) {
      /* It sent to a busy connection: suspended until that drains, as
       * the BEAM suspends a sender (the dist layer holds SCHED and our
       * reference meanwhile, and schedules it again). */
      uint32_t node = p->park_node - 1;
      p->park_node = 0;
      if (p->rt->dist_ops && p->rt->dist_ops->park(p->rt, p, node)) {
        cn__set_current(prev);
        return;
      }
    }
  }
  cn__set_current(prev);
  if (p->flags & CN__PF_DEAD) {
    cn__proc_unref(p); /* the run queue's reference */
    return;
  }
  if (p->q_head) {
    /* Out of budget with work left: back of the queue, keeping SCHED. */
    cn__schedule(p);
    return;
  }
  if (!cn__release(p))
    cn__proc_unref(p);
}

static void on_runner(uv_idle_t *h) {
  cn__sched *s = h->data;
  int n;
  for (n = 0; n < CN__BATCH; n++) {
    cn_proc *p = s->rq_next;
    if (p)
      s->rq_next = NULL;
    else if (!(p = rq_pop(s)))
      break;
    /* Work waits behind the process we are about to run: let a sleeping
     * scheduler steal it.  A caller and its server (ping-pong) never
     * trigger this, since each finds the queue empty behind the other. */
    if (s->rt->nsched > 1 &&
        atomic_load_explicit(&s->rq_len, memory_order_relaxed) > 0)
      wake_helper(s);
    /* The queue's reference is handed to run_proc, which drops it. */
    cn__run_proc(p, CN__BUDGET);
  }
  if (!s->rq_next &&
      atomic_load_explicit(&s->rq_len, memory_order_relaxed) == 0) {
    uv_idle_stop(&s->runner);
    s->running_flag = 0;
  }
}

static void start_runner(cn__sched *s) {
  if (!s->running_flag) {
    s->running_flag = 1;
    uv_idle_start(&s->runner, on_runner);
  }
}

static void close_all(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* cn__sched_run: tasks are rare (setup and teardown), so one lock and
 * condition serve every runtime. */
static pthread_mutex_t task_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t task_cv = PTHREAD_COND_INITIALIZER;

static void run_tasks(cn__sched *s) {
  cn__task *t, *next, *rev = NULL;
  pthread_mutex_lock(&s->rq_mu);
  t = s->tasks;
  s->tasks = NULL;
  pthread_mutex_unlock(&s->rq_mu);
  for (; t; t = next) { /* oldest first */
    next = t->next;
    t->next = rev;
    rev = t;
  }
  for (t = rev; t; t = next) {
    next = t->next;
    t->fn(t->arg);
    pthread_mutex_lock(&task_mu);
    t->done = 1;
    pthread_cond_broadcast(&task_cv);
    pthread_mutex_unlock(&task_mu);
  }
}

void cn__sched_run(cn_runtime *rt, unsigned idx, void (*fn)(void *),
                   void *arg) {
  cn__sched *s = &rt->sched[idx % rt->nsched];
  cn__task t = {NULL, fn, arg, 0};
  if (tls_sched == s) {
    fn(arg);
    return;
  }
  pthread_mutex_lock(&s->rq_mu);
  t.next = s->tasks;
  s->tasks = &t;
  pthread_mutex_unlock(&s->rq_mu);
  uv_async_send(&s->wake);
  pthread_mutex_lock(&task_mu);
  while (!t.done)
    pthread_cond_wait(&task_cv, &task_mu);
  pthread_mutex_unlock(&task_mu);
}

uv_loop_t *cn__sched_loop(cn_runtime *rt, unsigned idx) {
  return &rt->sched[idx % rt->nsched].loop;
}

static void on_wake(uv_async_t *h) {
  cn__sched *s = h->data;
  run_tasks(s);
  if (atomic_load(&s->stopping)) {
    uv_walk(&s->loop, close_all, NULL);
    return;
  }
  if (atomic_exchange(&s->timer_dirty, 0))
    cn__timers_rearm(s);
  if (atomic_load(&s->rq_len) > 0) {
    start_runner(s);
    return;
  }
  /* Woken to help: steal from the busiest peer. */
  for (unsigned i = 1; i < s->rt->nsched; i++) {
    if (steal(s, &s->rt->sched[(s->idx + i) % s->rt->nsched])) {
      start_runner(s);
      return;
    }
  }
}

static void on_prepare(uv_prepare_t *h) {
  cn__sched *s = h->data;
  if (s->running_flag)
    return;
  /* About to block.  Try to steal first. */
  for (unsigned i = 1; i < s->rt->nsched; i++) {
    if (steal(s, &s->rt->sched[(s->idx + i) % s->rt->nsched])) {
      start_runner(s);
      return;
    }
  }
  atomic_store(&s->sleeping, 1);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&s->rq_len) > 0) {
    atomic_store(&s->sleeping, 0);
    start_runner(s);
  }
}

static void on_check(uv_check_t *h) {
  cn__sched *s = h->data;
  atomic_store(&s->sleeping, 0);
}

static void sched_main(void *arg) {
  cn__sched *s = arg;
  tls_sched = s;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  tls_sched = NULL;
}

static int sched_init(cn_runtime *rt, cn__sched *s, unsigned idx) {
  memset(s, 0, sizeof(*s));
  s->rt = rt;
  s->idx = idx;
  if (uv_loop_init(&s->loop))
    return CN_ESYSTEM;
  pthread_mutex_init(&s->rq_mu, NULL);
  pthread_mutex_init(&s->timer_mu, NULL);
  uv_async_init(&s->loop, &s->wake, on_wake);
  uv_idle_init(&s->loop, &s->runner);
  uv_prepare_init(&s->loop, &s->prepare);
  uv_check_init(&s->loop, &s->check);
  s->wake.data = s->runner.data = s->prepare.data = s->check.data = s;
  uv_prepare_start(&s->prepare, on_prepare);
  uv_check_start(&s->check, on_check);
  /* The prepare and check handles must not keep the loop alive on their
   * own; the async handle does until stop. */
  uv_unref((uv_handle_t *)&s->prepare);
  uv_unref((uv_handle_t *)&s->check);
  cn__timers_init(s);
  return 0;
}

static void sched_destroy(cn__sched *s) {
  cn__timers_free(s);
  recs_free(s);
  uv_loop_close(&s->loop);
  pthread_mutex_destroy(&s->rq_mu);
  pthread_mutex_destroy(&s->timer_mu);
}

int cn__sched_start(cn_runtime *rt);
void cn__sched_stop(cn_runtime *rt);

int cn__sched_start(cn_runtime *rt) {
  unsigned i;
  rt->sched = aligned_alloc(CN__CACHELINE, sizeof(cn__sched) * rt->nsched);
  if (!rt->sched)
    return CN_ENOMEM;
  for (i = 0; i < rt->nsched; i++) {
    if (sched_init(rt, &rt->sched[i], i)) {
      while (i-- > 0)
        sched_destroy(&rt->sched[i]);
      free(rt->sched);
      rt->sched = NULL;
      return CN_ESYSTEM;
    }
  }
  for (i = 0; i < rt->nsched; i++) {
    if (uv_thread_create(&rt->sched[i].thread, sched_main, &rt->sched[i])) {
      rt->nsched = i; /* stop only those that run */
      cn__sched_stop(rt);
      return CN_ESYSTEM;
    }
  }
  return 0;
}

void cn__sched_stop(cn_runtime *rt) {
  unsigned i;
  if (!rt->sched)
    return;
  for (i = 0; i < rt->nsched; i++) {
    atomic_store(&rt->sched[i].stopping, 1);
    uv_async_send(&rt->sched[i].wake);
  }
  for (i = 0; i < rt->nsched; i++)
    uv_thread_join(&rt->sched[i].thread);
  for (i = 0; i < rt->nsched; i++) {
    /* Run the close callbacks, then release the loop. */
    uv_run(&rt->sched[i].loop, UV_RUN_DEFAULT);
    sched_destroy(&rt->sched[i]);
  }
  free(rt->sched);
  rt->sched = NULL;
}
