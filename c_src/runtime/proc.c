/* Processes: the table, mailboxes, delivery, links, monitors and exit. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Messages --------------------------------------------------------- */

cn__msg *cn__msg_new(int kind, const char *data, size_t len) {
  cn__msg *m;
  char *block = NULL;
  size_t cap = 0;
  if (len >= CN__BLOCK_MIN) {
    if (!(block = cn__block_alloc(len, &cap)))
      return NULL;
    if (!(m = cn__msg_adopt(kind, block, cap, block, len))) {
      cn__block_free(block, cap);
      return NULL;
    }
  } else {
    bool pooled = len <= CN__MSG_POOL_INLINE;
    if (!(m = pooled ? cn__rec_alloc(CN__REC_MSG) : malloc(sizeof(*m) + len)))
      return NULL;
    memset(m, 0, sizeof(*m));
    m->kind = (uint8_t)kind;
    m->pooled = pooled;
    m->len = len;
    m->data = m->inline_;
  }
  if (len && data) /* no data: the caller fills it in */
    memcpy(m->data, data, len);
  return m;
}

cn__msg *cn__msg_adopt(int kind, char *block, size_t cap, const char *data,
                       size_t len) {
  cn__msg *m = cn__rec_alloc(CN__REC_MSG);
  if (!m)
    return NULL;
  memset(m, 0, sizeof(*m));
  m->kind = (uint8_t)kind;
  m->pooled = 1;
  m->len = len;
  m->data = (char *)data;
  m->block = block;
  m->block_cap = cap;
  return m;
}

cn__msg *cn__msg_from_buf(int kind, cn_buf *b) {
  cn__msg *m;
  if (!b->on_heap || b->len < CN__ADOPT_MIN)
    return cn__msg_new(kind, b->data, b->len);
  if (!(m = cn__msg_adopt(kind, b->data, b->cap, b->data, b->len)))
    return NULL;
  b->data = NULL;
  b->cap = 0;
  b->on_heap = 0;
  return m;
}

void cn__msg_free(cn__msg *m) {
  if (!m)
    return;
  if (m->cfrom)
    cn_from_free(m->cfrom);
  free((void *)m->name);
  cn__block_free(m->block, m->block_cap);
  if (m->pooled)
    cn__rec_free(CN__REC_MSG, m);
  else
    free(m);
}

/* ---- The process table ------------------------------------------------ */

bool cn__is_local(cn_runtime *rt, cn_pid pid) {
  return pid.node == rt->node && pid.creation == rt->creation;
}

int cn__proc_alloc(cn_runtime *rt, const cn_server_ops *ops, uint32_t flags,
                   cn__thread *thread, const cn_pid *parent, cn_proc **out) {
  _Atomic(cn_proc *) *chunk;
  cn_proc *p;
  uint32_t slot;

  if (atomic_load(&rt->shutting_down))
    return CN_ESHUTDOWN;
  pthread_mutex_lock(&rt->table_mu);
  if (rt->nfree_slots > 0) {
    slot = rt->free_slots[--rt->nfree_slots];
  } else if (rt->next_slot < rt->max_procs) {
    slot = (uint32_t)rt->next_slot++;
  } else {
    pthread_mutex_unlock(&rt->table_mu);
    return CN_ELIMIT;
  }
  chunk = atomic_load(&rt->chunks[slot >> CN__CHUNK_BITS]);
  if (!chunk) {
    chunk = calloc(CN__CHUNK, sizeof(*chunk));
    if (!chunk) {
      rt->free_slots[rt->nfree_slots++] = slot;
      pthread_mutex_unlock(&rt->table_mu);
      return CN_ENOMEM;
    }
    atomic_store(&rt->chunks[slot >> CN__CHUNK_BITS], chunk);
  }
  p = rt->free_procs;
  if (p)
    rt->free_procs = p->next_free;
  rt->serials[slot]++;
  if (rt->serials[slot] == 0)
    rt->serials[slot] = 1;
  pthread_mutex_unlock(&rt->table_mu);

  if (!p) {
    p = malloc(sizeof(*p));
    if (!p) {
      pthread_mutex_lock(&rt->table_mu);
      rt->free_slots[rt->nfree_slots++] = slot;
      pthread_mutex_unlock(&rt->table_mu);
      return CN_ENOMEM;
    }
    atomic_init(&p->refs, 0);
  }
  /* Every field is written before refs becomes non-zero (release): a
   * racing lookup that wins increment-if-not-zero sees them. */
  atomic_store_explicit(&p->state, CN__P_SCHED, memory_order_relaxed);
  atomic_store_explicit(&p->inbox, NULL, memory_order_relaxed);
  atomic_store_explicit(&p->mbox_len, 0, memory_order_relaxed);
  atomic_store_explicit(&p->mbox_dropped, 0, memory_order_relaxed);
  atomic_store_explicit(&p->mbox_refused, 0, memory_order_relaxed);
  p->pid.node = rt->node;
  p->pid.id = slot;
  p->pid.serial = rt->serials[slot];
  p->pid.creation = rt->creation;
  p->rt = rt;
  p->ops = ops;
  p->rq_next = NULL;
  atomic_store_explicit(&p->home, atomic_fetch_add(&rt->rr, 1) % rt->nsched,
                        memory_order_relaxed);
  p->flags = flags;
  p->q_head = p->q_tail = NULL;
  p->state_ptr = NULL;
  p->parent = parent ? *parent : p->pid;
  p->reg_name = NULL;
  p->timeout_ms = CN_INFINITY;
  p->timeout_gen = 0;
  p->reply_hint = 0;
  p->ext = NULL;
  p->park_node = 0;
  p->park_next = NULL;
  p->next_free = NULL;
  p->thread = thread;
  /* One reference for the table, one for the SCHED holder (the caller). */
  atomic_store_explicit(&p->refs, 2, memory_order_release);
  atomic_store_explicit(&chunk[slot & (CN__CHUNK - 1)], p,
                        memory_order_release);
  if (flags & CN__PF_THREAD)
    atomic_fetch_add(&rt->nthreads, 1);
  else
    atomic_fetch_add(&rt->nprocs, 1);
  *out = p;
  return 0;
}

cn__pext *cn__ext(cn_proc *p) {
  if (!p->ext && (p->ext = calloc(1, sizeof(*p->ext))) != NULL)
    cn_buf_init(&p->ext->reason);
  return p->ext;
}

cn_proc *cn__lookup(cn_runtime *rt, cn_pid pid) {
  _Atomic(cn_proc *) *chunk;
  cn_proc *p;
  uint32_t r;

  if (!cn__is_local(rt, pid) || pid.id >= rt->max_procs)
    return NULL;
  chunk = atomic_load_explicit(&rt->chunks[pid.id >> CN__CHUNK_BITS],
                               memory_order_acquire);
  if (!chunk)
    return NULL;
  p = atomic_load_explicit(&chunk[pid.id & (CN__CHUNK - 1)],
                           memory_order_acquire);
  if (!p)
    return NULL;
  r = atomic_load_explicit(&p->refs, memory_order_relaxed);
  do {
    if (r == 0)
      return NULL;
  } while (!atomic_compare_exchange_weak_explicit(
      &p->refs, &r, r + 1, memory_order_acquire, memory_order_relaxed));
  if (p->pid.id != pid.id || p->pid.serial != pid.serial) {
    cn__proc_unref(p);
    return NULL;
  }
  return p;
}

static void free_queue(cn__msg *m) {
  while (m) {
    cn__msg *next = m->next;
    cn__msg_free(m);
    m = next;
  }
}

static void mon_drop_all(cn__monset *s);

void cn__proc_unref(cn_proc *p) {
  cn_runtime *rt = p->rt;
  cn__msg *in;
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
    return;
  in = atomic_exchange(&p->inbox, NULL);
  if (in != CN__MBOX_CLOSED)
    free_queue(in);
  free_queue(p->q_head);
  p->q_head = p->q_tail = NULL;
  if (p->ext) {
    mon_drop_all(&p->ext->mon_on_me);
    mon_drop_all(&p->ext->mon_mine);
    cn_buf_free(&p->ext->reason);
    cn__msg_free(p->ext->cont);
    free(p->ext);
    p->ext = NULL;
  }
  if (p->thread) {
    cn__thread_free(p->thread);
    p->thread = NULL;
  }
  pthread_mutex_lock(&rt->table_mu);
  p->next_free = rt->free_procs;
  rt->free_procs = p;
  pthread_mutex_unlock(&rt->table_mu);
}

/* ---- Inboxes ---------------------------------------------------------- */

cn__msg *cn__inbox_take(cn_proc *p, cn__msg *with, cn__msg **tail) {
  return cn__msgq_take(&p->inbox, with, CN__MBOX_CLOSED, tail);
}

void cn__inbox_to_queue(cn_proc *p, cn__msg *with) {
  cn__msg *tail, *head;
  /* An empty inbox needs no exchange: a push that comes after this look
   * is seen by the next one, or by cn__release. */
  if (!with && !atomic_load_explicit(&p->inbox, memory_order_relaxed))
    return;
  head = cn__inbox_take(p, with, &tail);
  if (!head)
    return;
  if (p->q_tail)
    p->q_tail->next = head;
  else
    p->q_head = head;
  p->q_tail = tail;
}

/* ---- Delivery --------------------------------------------------------- */

/* Counts m into p's mailbox, or refuses it there at max_mailbox. */
static int count_in(cn_proc *p, const cn__msg *m) {
  cn_runtime *rt = p->rt;
  uint32_t n;
  if (p->thread || !CN__COUNTED(m->kind))
    return 0;
  n = atomic_fetch_add_explicit(&p->mbox_len, 1, memory_order_relaxed);
  if (rt->max_mailbox == 0 || n < rt->max_mailbox)
    return 0;
  atomic_fetch_sub_explicit(&p->mbox_len, 1, memory_order_relaxed);
  if (m->kind == CN__M_CALL) {
    atomic_fetch_add_explicit(&p->mbox_refused, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->st_mbox_refused, 1, memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(&p->mbox_dropped, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->st_mbox_dropped, 1, memory_order_relaxed);
  }
  return CN_EFULL;
}

/* cn__deliver_to, for a caller whose reference to p this takes: it
 * becomes the run queue's when p has to be scheduled (one reference
 * count fewer each way), and is dropped otherwise. */
static int deliver_give(cn_proc *p, cn__msg *m, bool give) {
  uint32_t st;
  int rc = 0;

  if (count_in(p, m) != 0) {
    cn__msg_free(m);
    rc = CN_EFULL;
    goto out;
  }
  if (cn__msgq_push(&p->inbox, m, CN__MBOX_CLOSED) == CN__MBOX_CLOSED) {
    if (!p->thread && CN__COUNTED(m->kind))
      atomic_fetch_sub_explicit(&p->mbox_len, 1, memory_order_relaxed);
    cn__msg_free(m);
    rc = CN_ENOPROC;
    goto out;
  }

  if (p->thread) {
    cn__thread_wake(p->thread);
    goto out;
  }
  /* See "Running" in internal.h. */
  atomic_thread_fence(memory_order_seq_cst);
  st = atomic_load_explicit(&p->state, memory_order_relaxed);
  while (!(st & (CN__P_SCHED | CN__P_EXITING))) {
    if (atomic_compare_exchange_weak(&p->state, &st, st | CN__P_SCHED)) {
      if (!give)
        atomic_fetch_add(&p->refs, 1); /* for the run queue */
      cn__schedule(p);
      return 0;
    }
  }
out:
  if (give)
    cn__proc_unref(p);
  return rc;
}

int cn__deliver_to(cn_proc *p, cn__msg *m) { return deliver_give(p, m, false); }

int cn__deliver_remote(cn_runtime *rt, cn_pid to, cn__msg *m) {
  void *dist = atomic_load_explicit(&rt->dist, memory_order_acquire);
  if (!dist) {
    cn__msg_free(m);
    return CN_ENOCONN;
  }
  return rt->dist_ops->deliver(rt, to, m);
}

int cn__deliver(cn_runtime *rt, cn_pid pid, cn__msg *m) {
  cn_proc *p;
  if (pid.node != rt->node)
    return cn__deliver_remote(rt, pid, m);
  p = cn__lookup(rt, pid);
  if (!p) {
    cn__msg_free(m);
    return CN_ENOPROC;
  }
  return deliver_give(p, m, true);
}

static cn__msg *exit_signal_new(cn_pid from, cn_term reason, int flags) {
  cn__msg *m = cn__msg_new(CN__S_EXIT, reason.ptr, reason.len);
  if (m) {
    m->from = from;
    m->flags = (uint8_t)flags;
  }
  return m;
}

cn__msg *cn__down_new(cn_pid from, const cn_ref *ref, const char *name,
                      cn_term reason, int flags) {
  cn__msg *m = cn__msg_new(CN__S_DOWN, reason.ptr, reason.len);
  if (!m)
    return NULL;
  m->from = from;
  m->ref = *ref;
  m->flags = (uint8_t)flags;
  if (name && !(m->name = strdup(name))) {
    cn__msg_free(m);
    return NULL;
  }
  return m;
}

int cn__signal(cn_runtime *rt, cn_pid to, cn__msg *m) {
  int kind = m->kind, flags = m->flags;
  cn_pid from = m->from;
  cn_ref ref = m->ref;
  char keep[255 * 4 + 1], *name = NULL; /* an atom's text, at most */
  int rc;

  /* The name, for a DOWN in the target's stead: on the stack (this runs
   * for every call by name from a peer), on the heap if it is longer. */
  if ((kind == CN__S_MONITOR) && m->name) {
    size_t n = strlen(m->name);
    name = n < sizeof keep ? memcpy(keep, m->name, n + 1) : strdup(m->name);
  }
  rc = cn__deliver(rt, to, m);
  if (rc == CN_ENOPROC || rc == CN_ENOCONN) {
    /* The target is gone, or its node cannot be reached: answer for it,
     * as erts does. */
    cn_term why = cn__atom_term(rc == CN_ENOPROC ? "noproc" : "noconnection");
    int nf = rc == CN_ENOPROC ? CN__F_NOPROC : 0;
    cn__msg *ans = NULL;
    if (kind == CN__S_LINK)
      ans = exit_signal_new(to, why, CN__F_LINKED);
    else if (kind == CN__S_MONITOR)
      ans = cn__down_new(to, &ref, name, why, (flags & CN__F_BYNAME) | nf);
    if (ans)
      cn__deliver(rt, from, ans);
  }
  if (name != keep)
    free(name);
  return rc;
}

/* ---- Links and monitors ----------------------------------------------- */

/* Links are keyed by the other pid, hashed with the keyed SipHash (peers
 * choose the pids that link to us). */
static uint64_t pid_hash(const cn_pid *pid) {
  return cn__siphash(cn__hash_key(), pid, sizeof(*pid));
}

static bool link_is(const cn__hnode *n, const void *pid) {
  return cn_pid_equal(&cn__container_of(n, cn__link, node)->pid, pid);
}

/* The link to pid, or NULL: a walk of the list while it is short, the
 * table once there is one. */
static cn__link *find_link(cn_proc *p, cn_pid pid) {
  cn__pext *x = p->ext;
  cn__link *l;
  if (!x)
    return NULL;
  if (x->link_index) {
    cn__hnode **lp =
        cn__htab_find(x->link_index, pid_hash(&pid), link_is, &pid);
    return lp ? cn__container_of(*lp, cn__link, node) : NULL;
  }
  for (l = x->link_list; l; l = l->next)
    if (cn_pid_equal(&l->pid, &pid))
      return l;
  return NULL;
}

/* Builds the table once the list passes CN__LINK_INDEX_AT.  Without
 * memory the list alone serves, only slower. */
static void index_links(cn__pext *x) {
  size_t n = 0;
  cn__link *l;
  for (l = x->link_list; l && n <= CN__LINK_INDEX_AT; l = l->next)
    n++;
  if (n <= CN__LINK_INDEX_AT || !(x->link_index = calloc(1, sizeof(cn__htab))))
    return;
  for (l = x->link_list; l; l = l->next) {
    if (cn__htab_add(x->link_index, &l->node, pid_hash(&l->pid)) != 0) {
      cn__htab_clear(x->link_index);
      free(x->link_index);
      x->link_index = NULL;
      return;
    }
  }
}

int cn__add_link(cn_proc *p, cn_pid pid) {
  cn__pext *x;
  cn__link *l;
  if (find_link(p, pid))
    return 0;
  if (!(x = cn__ext(p)) || !(l = malloc(sizeof(*l))))
    return CN_ENOMEM;
  l->pid = pid;
  if (x->link_index &&
      cn__htab_add(x->link_index, &l->node, pid_hash(&pid)) != 0) {
    free(l);
    return CN_ENOMEM;
  }
  l->prev = NULL;
  l->next = x->link_list;
  if (l->next)
    l->next->prev = l;
  x->link_list = l;
  if (!x->link_index)
    index_links(x);
  return 0;
}

bool cn__remove_link(cn_proc *p, cn_pid pid) {
  cn__link *l = find_link(p, pid);
  cn__pext *x = p->ext;
  if (!l)
    return false;
  if (x->link_index)
    cn__htab_take(x->link_index, pid_hash(&pid), link_is, &pid);
  if (l->prev)
    l->prev->next = l->next;
  else
    x->link_list = l->next;
  if (l->next)
    l->next->prev = l->prev;
  free(l);
  return true;
}

uint64_t cn__ref_hash(const cn_ref *r) {
  uint32_t w[CN_REF_MAX_WORDS], i;
  cn__sip s;
  for (i = 0; i < CN_REF_MAX_WORDS; i++)
    w[i] = i < r->len ? r->n[i] : 0;
  cn__sip_init(&s, cn__hash_key());
  cn__sip_word(&s, (uint64_t)r->node | (uint64_t)r->creation << 32);
  cn__sip_word(&s, (uint64_t)w[0] | (uint64_t)w[1] << 32);
  cn__sip_word(&s, (uint64_t)w[2] | (uint64_t)w[3] << 32);
  cn__sip_word(&s, w[4]);
  return cn__sip_final(&s);
}

static bool mon_is(const cn__hnode *n, const void *ref) {
  return cn_ref_equal(&cn__container_of(n, cn__mon, node)->ref, ref);
}

/* The node itself, not one with the same reference: a peer may set two
 * monitors with one reference. */
static bool node_is(const cn__hnode *n, const void *node) { return n == node; }

static void mon_unindex(cn__monset *s) {
  if (s->index) {
    cn__htab_clear(s->index);
    free(s->index);
    s->index = NULL;
  }
}

/* A monitor's hash: known (a signal from the distribution carries the
 * one its own table took; a monitor keeps the one it had), else 0 and
 * computed now. */
static uint64_t mon_hash(uint64_t known, const cn_ref *ref) {
  return known ? known : cn__ref_hash(ref);
}

/* Builds the table once the list passes CN__MON_INDEX_AT.  Without
 * memory the list alone serves, only slower. */
static void mon_index(cn__monset *s) {
  size_t n = 0;
  cn__mon *mo;
  for (mo = s->list; mo && n <= CN__MON_INDEX_AT; mo = mo->next)
    n++;
  if (n <= CN__MON_INDEX_AT || !(s->index = calloc(1, sizeof(cn__htab))))
    return;
  for (mo = s->list; mo; mo = mo->next)
    if (cn__htab_add(s->index, &mo->node, mon_hash(mo->node.hash, &mo->ref)) !=
        0) {
      mon_unindex(s);
      return;
    }
}

/* cn__add_mon with a name it owns from now on, even on failure, and the
 * reference's hash when known (else 0). */
static int add_mon_owning(cn__monset *s, const cn_ref *ref, uint64_t hash,
                          cn_pid pid, const char *name) {
  cn__mon *mo = cn__rec_alloc(CN__REC_MON);
  if (!mo) {
    free((void *)name);
    return CN_ENOMEM;
  }
  mo->ref = *ref;
  mo->pid = pid;
  mo->name = name;
  mo->node.hash = hash;
  if (s->index && cn__htab_add(s->index, &mo->node, mon_hash(hash, ref)) != 0) {
    cn__mon_free(mo);
    return CN_ENOMEM;
  }
  mo->prev = NULL;
  mo->next = s->list;
  if (mo->next)
    mo->next->prev = mo;
  s->list = mo;
  if (!s->index)
    mon_index(s);
  return 0;
}

int cn__add_mon(cn__monset *s, const cn_ref *ref, cn_pid pid,
                const char *name) {
  char *copy = NULL;
  if (name && !(copy = strdup(name)))
    return CN_ENOMEM;
  return add_mon_owning(s, ref, 0, pid, copy);
}

static void mon_unlink(cn__monset *s, cn__mon *mo) {
  if (mo->prev)
    mo->prev->next = mo->next;
  else
    s->list = mo->next;
  if (mo->next)
    mo->next->prev = mo->prev;
  if (!s->list)
    mon_unindex(s); /* a busy server's set empties between bursts */
}

cn__mon *cn__take_mon(cn__monset *s, const cn_ref *ref) {
  return cn__take_mon_hashed(s, ref, 0);
}

cn__mon *cn__take_mon_hashed(cn__monset *s, const cn_ref *ref, uint64_t hash) {
  cn__mon *mo;
  if (s->index) {
    cn__hnode *n = cn__htab_take(s->index, mon_hash(hash, ref), mon_is, ref);
    if (!n)
      return NULL;
    mo = cn__container_of(n, cn__mon, node);
  } else {
    for (mo = s->list; mo && !cn_ref_equal(&mo->ref, ref); mo = mo->next)
      ;
    if (!mo)
      return NULL;
  }
  mon_unlink(s, mo);
  return mo;
}

cn__mon *cn__pop_mon(cn__monset *s) {
  cn__mon *mo = s->list;
  if (!mo)
    return NULL;
  if (s->index)
    cn__htab_take(s->index, mo->node.hash, node_is, &mo->node);
  mon_unlink(s, mo);
  return mo;
}

/* Frees what is left in s (a process freed without exiting through
 * cn__proc_exit). */
static void mon_drop_all(cn__monset *s) {
  cn__mon *mo;
  mon_unindex(s);
  while ((mo = cn__pop_mon(s)))
    cn__mon_free(mo);
}

/* Applies a link or monitor signal to p, the same for processes and
 * threads (a monitor takes m's name).  Returns false for any other
 * kind. */
bool cn__link_signal(cn_proc *p, cn__msg *m) {
  switch (m->kind) {
  case CN__S_LINK:
    cn__add_link(p, m->from);
    return true;
  case CN__S_UNLINK:
    cn__remove_link(p, m->from);
    return true;
  case CN__S_MONITOR:
    /* The monitor takes the message's copy of the name. */
    if (cn__ext(p)) {
      add_mon_owning(&p->ext->mon_on_me, &m->ref, m->ref_hash, m->from,
                     m->name);
      m->name = NULL;
    }
    return true;
  case CN__S_DEMONITOR:
    if (p->ext)
      cn__mon_free(
          cn__take_mon_hashed(&p->ext->mon_on_me, &m->ref, m->ref_hash));
    return true;
  default:
    return false;
  }
}

void cn__mon_free(cn__mon *mo) {
  if (mo) {
    free((void *)mo->name);
    cn__rec_free(CN__REC_MON, mo);
  }
}

/* ---- Exit ------------------------------------------------------------- */

static void answer_dead(cn_proc *p, cn__msg *m, cn_term reason) {
  cn_runtime *rt = p->rt;
  cn__msg *ans = NULL;

  switch (m->kind) {
  case CN__S_LINK:
    /* It arrived before we died: the link existed, so the linker gets our
     * real reason. */
    ans = exit_signal_new(p->pid, reason, CN__F_LINKED);
    if (ans)
      cn__deliver(rt, m->from, ans);
    break;
  case CN__S_MONITOR:
    ans =
        cn__down_new(p->pid, &m->ref, m->name, reason, m->flags & CN__F_BYNAME);
    if (ans)
      cn__deliver(rt, m->from, ans);
    break;
  case CN__M_CALL:
  case CN__S_CODE_CHANGE:
  case CN__S_INFO:
  case CN__S_STOP:
    /* A call that monitors us: the monitor was set when the call arrived,
     * so the caller learns our reason. */
    if (m->cfrom && (m->flags & CN__F_CALLMON)) {
      ans = cn__down_new(p->pid, &m->cfrom->ref, NULL, reason, 0);
      if (ans)
        cn__deliver(rt, m->cfrom->pid, ans);
    }
    break;
  default:
    break;
  }
}

void cn__proc_exit(cn_proc *p, cn_term reason_in, bool run_terminate) {
  cn_runtime *rt = p->rt;
  cn__pext *x;
  cn__msg *m;
  cn__link *l;
  cn__mon *mo;
  cn_buf rb = CN_BUF_INIT;
  cn_term reason;
  _Atomic(cn_proc *) *chunk;

  /* The reason may live in a message or in p->reason; keep a copy. */
  if (cn_buf_append(&rb, reason_in.ptr, reason_in.len) != 0) {
    cn_buf_reset(&rb);
    cn_put_atom(&rb, "killed");
  }
  reason = cn_buf_term(&rb);

  if (run_terminate && p->ops && p->ops->terminate &&
      !(p->flags & CN__PF_THREAD))
    p->ops->terminate(p, p->state_ptr, reason);
  /* gen_server's crash report: a server that stops with an abnormal
   * reason through its own callbacks or a stop request.  A process killed
   * by a signal it does not trap dies without one, as on the BEAM. */
  if (run_terminate && !(p->flags & (CN__PF_THREAD | CN__PF_INIT)))
    cn__crash_report(p, reason);

  if (p->ops && p->ops->free_state && !(p->flags & CN__PF_INIT))
    p->ops->free_state(p->state_ptr);
  p->state_ptr = NULL;

  atomic_fetch_or(&p->state, CN__P_EXITING);
  cn__inbox_to_queue(p, CN__MBOX_CLOSED);
  if (p->ext && p->ext->sys)
    cn__sys_exit(p); /* held messages first: they came before the queue */

  cn__name_drop_proc(rt, p);
  /* Leave the table before anyone hears of the exit, so that whoever
   * gets our DOWN or EXIT sees us dead.  The slot may be reused at once:
   * lookups check the serial. */
  chunk = atomic_load(&rt->chunks[p->pid.id >> CN__CHUNK_BITS]);
  atomic_store(&chunk[p->pid.id & (CN__CHUNK - 1)], NULL);
  pthread_mutex_lock(&rt->table_mu);
  rt->free_slots[rt->nfree_slots++] = p->pid.id;
  pthread_mutex_unlock(&rt->table_mu);
  if (p->thread)
    atomic_fetch_sub(&rt->nthreads, 1);
  else
    atomic_fetch_sub(&rt->nprocs, 1);

  if (p->flags & CN__PF_TMO_ARMED) {
    cn__timer_cancel(rt, &p->ext->timeout_tref, NULL);
    p->flags &= ~CN__PF_TMO_ARMED;
  }
  cn__drop_pending(p);

  x = p->ext;
  if (x && x->link_index) {
    cn__htab_clear(x->link_index);
    free(x->link_index);
    x->link_index = NULL;
  }
  while (x && (l = x->link_list)) {
    cn__msg *sig = exit_signal_new(p->pid, reason, CN__F_LINKED);
    x->link_list = l->next;
    if (sig)
      cn__deliver(rt, l->pid, sig);
    free(l);
  }
  while (x && (mo = cn__pop_mon(&x->mon_on_me))) {
    cn__msg *down = cn__down_new(p->pid, &mo->ref, mo->name, reason,
                                 mo->name ? CN__F_BYNAME : 0);
    if (down)
      cn__deliver(rt, mo->pid, down);
    cn__mon_free(mo);
  }
  while (x && (mo = cn__pop_mon(&x->mon_mine))) {
    cn__msg *dm = cn__msg_new(CN__S_DEMONITOR, NULL, 0);
    if (dm) {
      dm->from = p->pid;
      dm->ref = mo->ref;
      cn__deliver(rt, mo->pid, dm);
    }
    cn__mon_free(mo);
  }
  while ((m = p->q_head)) {
    p->q_head = m->next;
    answer_dead(p, m, reason);
    cn__msg_free(m);
  }
  p->q_tail = NULL;
  cn_buf_free(&rb);

  p->flags |= CN__PF_DEAD;
  if (atomic_load_explicit(&rt->shutting_down, memory_order_relaxed)) {
    pthread_mutex_lock(&rt->exit_mu);
    pthread_cond_broadcast(&rt->exit_cv);
    pthread_mutex_unlock(&rt->exit_mu);
  }
  cn__proc_unref(p); /* the table's reference */
}

/* ---- Pids and refs ---------------------------------------------------- */

void cn__make_ref(cn_runtime *rt, cn_ref *r) {
  cn__ref_of(rt, cn__ref_number(rt), r);
}

void cn__ref_of(cn_runtime *rt, uint64_t n, cn_ref *r) {
  r->node = rt->node;
  r->creation = rt->creation;
  r->len = 3;
  r->n[0] = (uint32_t)(n & 0x3ffff); /* 18 bits, as erts' first word */
  r->n[1] = (uint32_t)(n >> 18);
  r->n[2] = (uint32_t)(n >> 50);
  r->n[3] = r->n[4] = 0;
}

cn_pid cn__caller_pid(cn_runtime *rt, int *err) {
  cn_proc *cur = cn__current();
  cn__thread *t;
  cn_pid none = {0, 0, 0, 0};
  *err = 0;
  if (cur && cur->rt == rt)
    return cur->pid;
  t = cn__thread_ctx(rt, err);
  return t ? t->proc->pid : none;
}

/* ---- Public: signals -------------------------------------------------- */

size_t cn_process_count(cn_runtime *rt) { return atomic_load(&rt->nprocs); }

size_t cn_server_users(cn_runtime *rt, const cn_server_ops *ops) {
  size_t slot, end, n = 0;

  if (!rt || !ops)
    return 0;
  pthread_mutex_lock(&rt->table_mu);
  end = rt->next_slot;
  pthread_mutex_unlock(&rt->table_mu);
  for (slot = 0; slot < end; slot++) {
    _Atomic(cn_proc *) *chunk = atomic_load_explicit(
        &rt->chunks[slot >> CN__CHUNK_BITS], memory_order_acquire);
    cn_proc *p;
    uint32_t r;
    if (!chunk)
      continue;
    p = atomic_load_explicit(&chunk[slot & (CN__CHUNK - 1)],
                             memory_order_acquire);
    if (!p)
      continue;
    /* A reference, as cn__lookup takes one, keeps p from being reused
     * while its ops are read. */
    r = atomic_load_explicit(&p->refs, memory_order_relaxed);
    do {
      if (r == 0)
        break;
    } while (!atomic_compare_exchange_weak_explicit(
        &p->refs, &r, r + 1, memory_order_acquire, memory_order_relaxed));
    if (r == 0)
      continue;
    if (!p->thread && !(atomic_load(&p->state) & CN__P_EXITING) &&
        atomic_load(&p->ops) == ops)
      n++;
    cn__proc_unref(p);
  }
  return n;
}

bool cn_is_alive(cn_runtime *rt, cn_pid pid) {
  cn_proc *p = cn__lookup(rt, pid);
  bool alive;
  if (!p)
    return false;
  alive = !(atomic_load(&p->state) & CN__P_EXITING) && !p->thread;
  cn__proc_unref(p);
  return alive;
}

int cn_self(cn_runtime *rt, cn_pid *pid) {
  int err;
  cn_pid me = cn__caller_pid(rt, &err);
  if (err)
    return err;
  *pid = me;
  return 0;
}

int cn_trap_exit(cn_proc *self, bool on, bool *old) {
  if (!self || self->thread)
    return CN_EINVAL;
  if (old)
    *old = (self->flags & CN__PF_TRAP) != 0;
  if (on)
    self->flags |= CN__PF_TRAP;
  else
    self->flags &= ~CN__PF_TRAP;
  return 0;
}

/* The caller's process struct: the running process, or the calling
 * thread's.  Only its owner may touch its private fields, and the caller
 * is that owner. */
static cn_proc *caller_proc(cn_runtime *rt, int *err) {
  cn_proc *cur = cn__current();
  cn__thread *t;
  if (cur && cur->rt == rt) {
    *err = 0;
    return cur;
  }
  t = cn__thread_ctx(rt, err);
  return t ? t->proc : NULL;
}

int cn__caller_proc_for(cn_runtime *rt, cn_proc **out) {
  int err;
  *out = caller_proc(rt, &err);
  return *out ? 0 : err;
}

int cn_link(cn_runtime *rt, cn_pid pid) {
  int err;
  cn_proc *me = caller_proc(rt, &err);
  cn__msg *m;
  if (!me)
    return err;
  if (cn_pid_equal(&pid, &me->pid) || find_link(me, pid))
    return 0;
  /* A remote link that cannot be made comes back as an exit signal
   * noconnection, as in Erlang. */
  if ((err = cn__add_link(me, pid)))
    return err;
  m = cn__msg_new(CN__S_LINK, NULL, 0);
  if (!m) {
    cn__remove_link(me, pid);
    return CN_ENOMEM;
  }
  m->from = me->pid;
  cn__signal(rt, pid, m);
  return 0;
}

int cn_unlink(cn_runtime *rt, cn_pid pid) {
  int err;
  cn_proc *me = caller_proc(rt, &err);
  cn__msg *m;
  if (!me)
    return err;
  if (!cn__remove_link(me, pid))
    return 0;
  m = cn__msg_new(CN__S_UNLINK, NULL, 0);
  if (!m)
    return CN_ENOMEM;
  m->from = me->pid;
  cn__deliver(rt, pid, m);
  return 0;
}

int cn_monitor(cn_runtime *rt, cn_dest target, cn_ref *mref) {
  int err;
  cn_proc *me = caller_proc(rt, &err);
  cn_pid pid;
  const char *name = NULL;
  cn__msg *m;

  if (!me)
    return err;
  if (target.kind == CN_DEST_PID) {
    pid = target.pid;
  } else if (target.kind == CN_DEST_NAME ||
             (target.kind == CN_DEST_REMOTE && target.node &&
              strcmp(target.node, cn_node_name(rt->node)) == 0)) {
    if (!target.name)
      return CN_EINVAL;
    name = target.name;
    if (cn__name_lookup(rt, name, &pid) != 0) {
      /* No such name: DOWN noproc at once. */
      cn_pid none = {rt->node, 0, 0, rt->creation};
      cn__make_ref(rt, mref);
      m = cn__down_new(none, mref, name, cn__atom_term("noproc"),
                       CN__F_BYNAME | CN__F_NOPROC);
      if (!m)
        return CN_ENOMEM;
      if (!cn__ext(me)) {
        cn__msg_free(m);
        return CN_ENOMEM;
      }
      if ((err = cn__add_mon(&me->ext->mon_mine, mref, none, name))) {
        cn__msg_free(m);
        return err;
      }
      cn__deliver_to(me, m);
      return 0;
    }
  } else if (target.kind == CN_DEST_REMOTE) {
    /* {Name, Node} elsewhere: the pid stands for the node (id 0) and the
     * distribution layer monitors the name there. */
    if (!target.name || !target.node)
      return CN_EINVAL;
    memset(&pid, 0, sizeof(pid));
    if ((err = cn_node_intern(target.node, strlen(target.node), &pid.node)))
      return err;
    name = target.name;
  } else {
    return CN_EINVAL;
  }
  if (!cn__ext(me))
    return CN_ENOMEM;
  cn__make_ref(rt, mref);
  if ((err = cn__add_mon(&me->ext->mon_mine, mref, pid, name)))
    return err;
  m = cn__msg_new(CN__S_MONITOR, NULL, 0);
  if (!m || (name && !(m->name = strdup(name)))) {
    cn__msg_free(m);
    cn__mon_free(cn__take_mon(&me->ext->mon_mine, mref));
    return CN_ENOMEM;
  }
  m->from = me->pid;
  m->ref = *mref;
  if (name)
    m->flags |= CN__F_BYNAME;
  cn__signal(rt, pid, m);
  return 0;
}

/* Removes queued DOWN messages for ref from p's private queue and inbox.
 * Only p's owner calls this. */
static void flush_down(cn_proc *p, const cn_ref *ref) {
  cn__msg **mp;
  cn__inbox_to_queue(p, NULL);
  for (mp = &p->q_head; *mp;) {
    cn__msg *m = *mp;
    if (m->kind == CN__S_DOWN && cn_ref_equal(&m->ref, ref)) {
      *mp = m->next;
      cn__msg_free(m);
    } else {
      mp = &m->next;
    }
  }
  p->q_tail = NULL;
  for (cn__msg *m = p->q_head; m; m = m->next)
    p->q_tail = m;
}

int cn_demonitor(cn_runtime *rt, const cn_ref *mref, bool flush) {
  int err;
  cn_proc *me = caller_proc(rt, &err);
  cn__mon *mo;
  cn__msg *m;
  if (!me)
    return err;
  mo = me->ext ? cn__take_mon(&me->ext->mon_mine, mref) : NULL;
  if (flush)
    flush_down(me, mref);
  if (!mo)
    return CN_ENOENT;
  m = cn__msg_new(CN__S_DEMONITOR, NULL, 0);
  if (m) {
    m->from = me->pid;
    m->ref = *mref;
    cn__deliver(rt, mo->pid, m);
  }
  cn__mon_free(mo);
  return 0;
}

int cn_exit(cn_runtime *rt, cn_pid pid, cn_term reason) {
  int err;
  cn_pid me = cn__caller_pid(rt, &err);
  cn__msg *m;
  if (err)
    return err;
  if ((err = cn__check_term(rt, reason)) != 0)
    return err;
  m = exit_signal_new(me, reason, 0);
  if (!m)
    return CN_ENOMEM;
  cn__deliver(rt, pid, m);
  return 0;
}
