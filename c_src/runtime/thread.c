/* Plain threads: each thread that calls, receives or links gets its own
 * pid, a mailbox, and a condition variable to block on.  The thread is the
 * owner of that process struct, and processes its signals itself whenever
 * it waits. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every live thread context, of every runtime, under one lock.  A
 * thread's key destructor may run while its runtime is being freed
 * (cn_runtime_free cannot wait for threads that are already exiting), so
 * the destructor must not touch a context cn__threads_free has released:
 * it looks for its own pointer in this list, and releases the context
 * only if it is still here and still its own (the owner check guards
 * against the address having been reused by another thread's context).
 * Both release under the lock, so the runtime is never freed under a
 * release in progress. */
static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static cn__thread *all_threads;

static void thread_release(cn__thread *t) {
  cn_proc *p = t->proc;
  if (t->server)
    cn__proc_unref(t->server);
  t->server = NULL;
  cn__proc_exit(p, cn__atom_term("normal"), false);
  /* The thread's own reference.  The context goes with the process's
   * last reference (cn__thread_free): a sender that pushed a message just
   * before the exit may still be about to wake it. */
  cn__proc_unref(p);
}

void cn__thread_free(cn__thread *t) {
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  free(t);
}

/* pthread key destructor: the thread is exiting (or an export's worker
 * is done). */
void cn__thread_dtor(void *arg);
void cn__thread_dtor(void *arg) {
  cn__thread **pp;
  pthread_mutex_lock(&all_mu);
  for (pp = &all_threads; *pp; pp = &(*pp)->next_all) {
    if (*pp == arg && pthread_equal((*pp)->owner, pthread_self())) {
      cn__thread *t = *pp;
      *pp = t->next_all;
      thread_release(t);
      break;
    }
  }
  pthread_mutex_unlock(&all_mu);
}

cn__thread *cn__thread_ctx(cn_runtime *rt, int *err) {
  cn__thread *t = pthread_getspecific(rt->thread_key);
  int rc;
  *err = 0;
  if (t)
    return t;
  if (atomic_load(&rt->stopped)) {
    *err = CN_ESHUTDOWN;
    return NULL;
  }
  t = calloc(1, sizeof(*t));
  if (!t) {
    *err = CN_ENOMEM;
    return NULL;
  }
  pthread_mutex_init(&t->mu, NULL);
  {
    /* Deadlines are on the monotonic clock, immune to clock changes. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  rc = cn__proc_alloc(rt, NULL, CN__PF_THREAD | CN__PF_TRAP, t, NULL, &t->proc);
  if (rc) {
    free(t);
    *err = rc;
    return NULL;
  }
  t->rt = rt;
  t->owner = pthread_self();
  pthread_mutex_lock(&all_mu);
  t->next_all = all_threads;
  all_threads = t;
  pthread_mutex_unlock(&all_mu);
  pthread_setspecific(rt->thread_key, t);
  return t;
}

cn_proc *cn__thread_take_server(cn__thread *t, cn_pid pid) {
  cn_proc *p = t->server;
  if (!p)
    return NULL;
  t->server = NULL;
  /* Exit sets EXITING before it leaves the table: a server a lookup
   * would no longer find is never handed out here. */
  if (!cn_pid_equal(&p->pid, &pid) ||
      (atomic_load(&p->state) & CN__P_EXITING)) {
    cn__proc_unref(p);
    return NULL;
  }
  return p;
}

void cn__thread_keep_server(cn__thread *t, cn_proc *p) {
  if (t->server)
    cn__proc_unref(t->server);
  t->server = p;
}

void cn__threads_free(cn_runtime *rt) {
  cn__thread **pp = &all_threads, *t;
  pthread_mutex_lock(&all_mu);
  while ((t = *pp)) {
    if (t->rt == rt) {
      *pp = t->next_all;
      thread_release(t);
    } else {
      pp = &t->next_all;
    }
  }
  pthread_mutex_unlock(&all_mu);
}

void cn__thread_wake(cn__thread *t) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&t->waiting)) {
    pthread_mutex_lock(&t->mu);
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
  }
}

/* Appends m to the thread's received-message queue (for cn_receive). */
static void keep(cn_proc *p, cn__msg *m) {
  m->next = NULL;
  if (p->q_tail)
    p->q_tail->next = m;
  else
    p->q_head = m;
  p->q_tail = m;
}

static void keep_term(cn_proc *p, const cn_buf *b) {
  cn__msg *m;
  if (b->err)
    return;
  m = cn__msg_new(CN__M_MSG, b->data, b->len);
  if (m)
    keep(p, m);
}

/* The thread's share of cn__handle_msg (after link and monitor signals):
 * exit signals and messages are kept for cn_receive, and the answer to the
 * current call is parked in t->result. */
void cn__thread_handle(cn_proc *p, cn__msg *m) {
  cn__thread *t = p->thread;
  cn_term body = {m->data, m->len};
  char store[256];
  cn_buf b;

  cn_buf_init_with(&b, store, sizeof(store));
  switch (m->kind) {
  case CN__S_EXIT:
    /* Threads trap exits: every exit signal becomes a message. */
    if ((m->flags & CN__F_LINKED) && !cn__remove_link(p, m->from))
      break;
    if (cn__build_exit_msg(&b, m->from, body) == 0)
      keep_term(p, &b);
    break;
  case CN__M_REPLY:
  case CN__S_DOWN:
    if (t->in_call && !t->result && cn_ref_equal(&m->ref, &t->call_ref)) {
      t->result = m;
      cn_buf_free(&b);
      return; /* kept */
    }
    if (m->kind == CN__S_DOWN) {
      cn__mon *mo = p->ext ? cn__take_mon(&p->ext->mon_mine, &m->ref) : NULL;
      if (mo) {
        if (cn__build_down_msg(&b, &m->ref, m, p->rt) == 0)
          keep_term(p, &b);
        cn__mon_free(mo);
      }
    }
    break; /* a late reply or stale DOWN: dropped */
  case CN__M_MSG:
    keep(p, m);
    cn_buf_free(&b);
    return;
  case CN__M_CAST:
    if (cn_build(&b, "{'$gen_cast', ~t}", body) == 0)
      keep_term(p, &b);
    break;
  case CN__M_CALL:
    if (m->cfrom && cn_build(&b, "{'$gen_call', {~p, ~r}, ~t}", &m->cfrom->pid,
                             &m->cfrom->ref, body) == 0)
      keep_term(p, &b);
    break;
  default:
    break;
  }
  cn_buf_free(&b);
  cn__msg_free(m);
}

/* Processes everything in the thread's inbox. */
static void drain(cn__thread *t) {
  cn__msg *tail, *m = cn__inbox_take(t->proc, NULL, &tail), *next;
  for (; m; m = next) {
    next = m->next;
    cn__handle_msg(t->proc, m);
  }
}

static void deadline_after(struct timespec *ts, int ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Blocks until done(t) or the deadline.  Returns 0 or CN_ETIMEDOUT. */
static int wait_until(cn__thread *t, int timeout_ms,
                      bool (*done)(cn__thread *)) {
  struct timespec dl;
  int timed_out = 0;
  if (timeout_ms >= 0)
    deadline_after(&dl, timeout_ms);
  for (;;) {
    drain(t);
    if (done(t))
      return 0;
    if (timed_out)
      return CN_ETIMEDOUT;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&t->proc->inbox) == NULL) {
      int rc = timeout_ms >= 0 ? pthread_cond_timedwait(&t->cv, &t->mu, &dl)
                               : pthread_cond_wait(&t->cv, &t->mu);
      if (rc == ETIMEDOUT)
        timed_out = 1;
    }
    atomic_store(&t->waiting, 0);
    pthread_mutex_unlock(&t->mu);
  }
}

static bool has_result(cn__thread *t) { return t->result != NULL; }
static bool has_message(cn__thread *t) { return t->proc->q_head != NULL; }

int cn__thread_wait_ref(cn__thread *t, const cn_ref *ref, int timeout_ms,
                        cn__msg **out);
int cn__thread_wait_ref(cn__thread *t, const cn_ref *ref, int timeout_ms,
                        cn__msg **out) {
  int rc;
  t->call_ref = *ref;
  t->in_call = 1;
  t->result = NULL;
  rc = wait_until(t, timeout_ms, has_result);
  t->in_call = 0;
  *out = t->result;
  t->result = NULL;
  return *out ? 0 : rc;
}

int cn_receive(cn_runtime *rt, cn_ms timeout, cn_buf *msg) {
  int timeout_ms = cn__ms(timeout);
  cn__thread *t;
  cn__msg *m;
  int rc;
  if (!rt || !msg)
    return CN_EINVAL;
  if (cn__current())
    return CN_EDEADLK;
  if (!(t = cn__thread_ctx(rt, &rc)))
    return rc;
  if ((rc = wait_until(t, timeout_ms, has_message)) != 0)
    return rc;
  m = t->proc->q_head;
  t->proc->q_head = m->next;
  if (!t->proc->q_head)
    t->proc->q_tail = NULL;
  cn_buf_reset(msg);
  rc = cn_buf_append(msg, m->data, m->len);
  cn__msg_free(m);
  return rc;
}
