/* Timers: each scheduler keeps a binary heap of deadlines and an index by
 * id, both under its timer_mu, and one uv_timer armed for the earliest.
 * Any thread may start or cancel a timer: it takes the owner's lock.  Only
 * the owner's loop thread touches the uv_timer; other threads set
 * timer_dirty and wake it.  A timer reference names its owner scheduler in
 * its first word, so a cancel goes straight to the right heap. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct cn__timer {
  cn__hnode node;          /* in the scheduler's index, by id */
  struct cn__timer *hnext; /* the list of timers due, on expiry */
  uint64_t id;
  uint64_t deadline; /* uv_hrtime() nanoseconds */
  size_t heap_idx;
  int kind; /* 0: send data to pid/name; else a signal kind */
  uint32_t aux;
  cn_ref ref; /* for signal kinds that carry a ref */
  cn_pid pid;
  char *name; /* a destination by name, resolved on expiry */
  size_t len;
  char data[];
} cn__timer;

/* A timer reference is an ordinary reference from the runtime's counter
 * (so it is unique among all refs), with the owner scheduler's index and a
 * marker bit in the high bits of its third word, which cn__make_ref never
 * sets (it uses 14 bits there). */
#define TREF_MARK 0x80000000u
#define TREF_OWNER_SHIFT 14
#define TREF_OWNER_MASK 0x3ffu

/* ---- Heap ------------------------------------------------------------- */

static void heap_set(cn__heap *h, size_t i, cn__timer *t) {
  h->v[i] = t;
  t->heap_idx = i;
}

static void sift_up(cn__heap *h, size_t i) {
  cn__timer *t = h->v[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h->v[parent]->deadline <= t->deadline)
      break;
    heap_set(h, i, h->v[parent]);
    i = parent;
  }
  heap_set(h, i, t);
}

static void sift_down(cn__heap *h, size_t i) {
  cn__timer *t = h->v[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    uint64_t best = t->deadline;
    if (l < h->n && h->v[l]->deadline < best)
      m = l, best = h->v[l]->deadline;
    if (r < h->n && h->v[r]->deadline < best)
      m = r;
    if (m == i)
      break;
    heap_set(h, i, h->v[m]);
    i = m;
  }
  heap_set(h, i, t);
}

static int heap_push(cn__heap *h, cn__timer *t) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    cn__timer **v = realloc(h->v, cap * sizeof(*v));
    if (!v)
      return CN_ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  heap_set(h, h->n++, t);
  sift_up(h, h->n - 1);
  return 0;
}

static void heap_remove(cn__heap *h, cn__timer *t) {
  size_t i = t->heap_idx;
  cn__timer *last = h->v[--h->n];
  if (i == h->n)
    return;
  heap_set(h, i, last);
  if (i > 0 && h->v[(i - 1) / 2]->deadline > last->deadline)
    sift_up(h, i);
  else
    sift_down(h, i);
}

/* ---- Index ------------------------------------------------------------ */

/* Ids come from the runtime's counter, never from outside: a plain mix
 * spreads them. */
static uint64_t id_hash(uint64_t id) { return id * 0x9E3779B97F4A7C15ULL; }

static bool timer_is(const cn__hnode *n, const void *id) {
  return cn__container_of(n, cn__timer, node)->id == *(const uint64_t *)id;
}

static int index_add(cn__sched *s, cn__timer *t) {
  return cn__htab_add(&s->tindex, &t->node, id_hash(t->id));
}

static cn__timer *index_take(cn__sched *s, uint64_t id) {
  cn__hnode *n = cn__htab_take(&s->tindex, id_hash(id), timer_is, &id);
  return n ? cn__container_of(n, cn__timer, node) : NULL;
}

/* ---- Start and cancel ------------------------------------------------- */

static void timer_free(cn__timer *t) {
  free(t->name);
  free(t);
}

int cn__timer_start(cn_runtime *rt, uint64_t ms, cn_pid pid, cn_dest *dest,
                    int kind, uint32_t aux, const cn_ref *ref, cn_term msg,
                    cn_ref *tref) {
  if (ms > UINT64_MAX / 2000000)
    ms = UINT64_MAX / 2000000;
  return cn__timer_start_at(rt, uv_hrtime() + ms * 1000000ULL, pid, dest, kind,
                            aux, ref, msg, tref);
}

int cn__timer_start_at(cn_runtime *rt, uint64_t deadline, cn_pid pid,
                       cn_dest *dest, int kind, uint32_t aux, const cn_ref *ref,
                       cn_term msg, cn_ref *tref) {
  cn__sched *cur = cn__current_sched(), *s;
  cn__timer *t;
  uint64_t id;
  bool first;

  s = (cur && cur->rt == rt)
          ? cur
          : &rt->sched[atomic_fetch_add(&rt->rr, 1) % rt->nsched];
  t = malloc(sizeof(*t) + msg.len);
  if (!t)
    return CN_ENOMEM;
  memset(t, 0, sizeof(*t));
  t->kind = kind;
  t->aux = aux;
  if (ref)
    t->ref = *ref;
  t->pid = pid;
  t->len = msg.len;
  if (msg.len)
    memcpy(t->data, msg.ptr, msg.len);
  if (dest && dest->kind == CN_DEST_NAME && !(t->name = strdup(dest->name))) {
    free(t);
    return CN_ENOMEM;
  }
  t->deadline = deadline;

  id = cn__ref_number(rt);
  pthread_mutex_lock(&s->timer_mu);
  t->id = id;
  if (index_add(s, t) != 0) {
    pthread_mutex_unlock(&s->timer_mu);
    timer_free(t);
    return CN_ENOMEM;
  }
  if (heap_push(&s->heap, t) != 0) {
    index_take(s, id);
    pthread_mutex_unlock(&s->timer_mu);
    timer_free(t);
    return CN_ENOMEM;
  }
  first = s->heap.v[0] == t && (s->armed_at == 0 || t->deadline < s->armed_at);
  pthread_mutex_unlock(&s->timer_mu);

  if (tref) {
    tref->node = rt->node;
    tref->creation = rt->creation;
    tref->len = 3;
    tref->n[0] = (uint32_t)(id & 0x3ffff);
    tref->n[1] = (uint32_t)(id >> 18);
    tref->n[2] = (uint32_t)(id >> 50) | TREF_MARK |
                 ((s->idx & TREF_OWNER_MASK) << TREF_OWNER_SHIFT);
    tref->n[3] = tref->n[4] = 0;
  }
  if (first) {
    if (cur == s) {
      cn__timers_rearm(s);
    } else {
      atomic_store(&s->timer_dirty, 1);
      uv_async_send(&s->wake);
    }
  }
  return 0;
}

int cn__timer_cancel(cn_runtime *rt, const cn_ref *tref, long *left_ms) {
  cn__sched *s;
  cn__timer *t;
  uint64_t id, now;
  unsigned idx;

  if (!tref || tref->node != rt->node || tref->creation != rt->creation ||
      tref->len != 3 || !(tref->n[2] & TREF_MARK))
    return CN_ENOENT;
  idx = (tref->n[2] >> TREF_OWNER_SHIFT) & TREF_OWNER_MASK;
  if (idx >= rt->nsched)
    return CN_ENOENT;
  s = &rt->sched[idx];
  id = (uint64_t)(tref->n[0] & 0x3ffff) | ((uint64_t)tref->n[1] << 18) |
       ((uint64_t)(tref->n[2] & 0x3fffu) << 50);
  pthread_mutex_lock(&s->timer_mu);
  t = index_take(s, id);
  if (t)
    heap_remove(&s->heap, t);
  pthread_mutex_unlock(&s->timer_mu);
  if (!t)
    return CN_ENOENT;
  /* The uv timer may now fire early for nothing; it then re-arms. */
  if (left_ms) {
    now = uv_hrtime();
    *left_ms =
        t->deadline > now ? (long)((t->deadline - now + 999999) / 1000000) : 0;
  }
  timer_free(t);
  return 0;
}

/* ---- Expiry (the owner's loop thread) --------------------------------- */

static void fire(cn_runtime *rt, cn__timer *t) {
  cn__msg *m;
  cn_pid pid = t->pid;
  if (t->kind == 0) {
    if (t->name && cn__name_lookup(rt, t->name, &pid) != 0)
      return; /* the name is gone: dropped, as erlang:send_after does */
    m = cn__msg_new(CN__M_MSG, t->data, t->len);
  } else {
    m = cn__msg_new(t->kind, NULL, 0);
    if (m) {
      m->aux = t->aux;
      m->ref = t->ref;
    }
  }
  if (m)
    cn__deliver(rt, pid, m);
}

static void on_timer(uv_timer_t *h) {
  cn__sched *s = h->data;
  cn__timer *due = NULL, *t;
  uint64_t now = uv_hrtime();

  pthread_mutex_lock(&s->timer_mu);
  s->armed_at = 0;
  while (s->heap.n > 0 && s->heap.v[0]->deadline <= now + CN__TIMER_SLACK) {
    t = s->heap.v[0];
    heap_remove(&s->heap, t);
    index_take(s, t->id);
    t->hnext = due;
    due = t;
  }
  pthread_mutex_unlock(&s->timer_mu);
  /* Fire in deadline order: the list was built in reverse. */
  {
    cn__timer *rev = NULL;
    while (due) {
      cn__timer *next = due->hnext;
      due->hnext = rev;
      rev = due;
      due = next;
    }
    due = rev;
  }
  while (due) {
    t = due;
    due = t->hnext;
    fire(s->rt, t);
    timer_free(t);
  }
  cn__timers_rearm(s);
}

void cn__timers_rearm(cn__sched *s) {
  uint64_t deadline = 0, now, ms;
  pthread_mutex_lock(&s->timer_mu);
  if (s->heap.n > 0)
    deadline = s->heap.v[0]->deadline;
  s->armed_at = deadline;
  pthread_mutex_unlock(&s->timer_mu);
  if (!deadline) {
    uv_timer_stop(&s->timer);
    return;
  }
  now = uv_hrtime();
  ms = deadline > now ? (deadline - now + 999999) / 1000000 : 0;
  uv_update_time(&s->loop);
  uv_timer_start(&s->timer, on_timer, ms, 0);
}

void cn__timers_init(cn__sched *s) {
  uv_timer_init(&s->loop, &s->timer);
  s->timer.data = s;
  uv_unref((uv_handle_t *)&s->timer);
}

void cn__timers_free(cn__sched *s) {
  size_t i;
  for (i = 0; i < s->heap.n; i++)
    timer_free(s->heap.v[i]);
  free(s->heap.v);
  cn__htab_clear(&s->tindex); /* its timers were the heap's, freed above */
  memset(&s->heap, 0, sizeof(s->heap));
}

/* ---- Public ----------------------------------------------------------- */

int cn_send_after(cn_runtime *rt, cn_ms ms, cn_dest to, cn_term msg,
                  cn_ref *tref) {
  cn_pid pid = {0, 0, 0, 0};
  int rc;
  if (!rt || ms < 0)
    return CN_EINVAL;
  if ((rc = cn__check_term(rt, msg)) != 0)
    return rc;
  if (to.kind == CN_DEST_PID) {
    pid = to.pid;
    if (!cn__is_local(rt, pid))
      return CN_ENOCONN;
  } else if (to.kind != CN_DEST_NAME || !to.name) {
    return CN_EINVAL;
  }
  return cn__timer_start(rt, (uint64_t)ms, pid, &to, 0, 0, NULL, msg, tref);
}

int cn_cancel_timer(cn_runtime *rt, const cn_ref *tref, cn_ms *left) {
  long left_ms = 0;
  int rc;
  if (!rt || !tref)
    return CN_EINVAL;
  rc = cn__timer_cancel(rt, tref, left ? &left_ms : NULL);
  if (rc == 0 && left)
    *left = left_ms;
  return rc;
}
