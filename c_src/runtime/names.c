/* Registered names: a hash table from name to pid under a rwlock, and
 * each thread's last name found (name_hit, below).
 *
 * Peers name the processes they send to, and the names a node registers
 * may come from them too (a server started per client, say), so the table
 * hashes with the keyed SipHash: nobody without the process's key can
 * pick names that share a bucket. */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct cn__name {
  cn__hnode node; /* in rt->names */
  cn_pid pid;
  cn_proc *proc; /* for dropping the name at exit (not a reference) */
  char name[];
} cn__name;

/* Each thread's last lookup that found a name.  A call by name from a
 * peer looks the name up twice (its monitor and its request), and a
 * lookup costs a SipHash and two atomic writes to the lock, on a line
 * that every scheduler shares: about 340 instructions, against about 20
 * for a hit here.  Every change to any runtime's names, and the end of
 * a runtime, bumps names_gen first, under the names' write lock, which
 * makes every thread's entry stale at once: a hit is the answer the
 * table gave at a generation no change has followed yet, and a thread
 * that has learned of a change (by any message or lock since) sees the
 * bumped generation. */
#define NAME_HIT_MAX 32 /* bytes of a name kept, with its NUL */

typedef struct name_hit {
  const cn_runtime *rt; /* NULL: empty */
  uint64_t gen;
  cn_pid pid;
  char name[NAME_HIT_MAX];
} name_hit;

static _Atomic uint64_t names_gen = 1;
static _Thread_local name_hit last_hit;

/* Before any change to rt->names, under its write lock. */
static void names_changed(void) {
  atomic_fetch_add_explicit(&names_gen, 1, memory_order_acq_rel);
}

uint64_t cn__name_hash(const char *name) {
  return cn__siphash(cn__hash_key(), name, strlen(name));
}

static int valid_name(const char *name) {
  size_t n;
  if (!name)
    return 0;
  n = strlen(name);
  /* An atom holds at most 255 characters; "undefined" means no name. */
  return n > 0 && n <= 255 * 4 && strcmp(name, "undefined") != 0;
}

static bool name_is(const cn__hnode *n, const void *name) {
  return strcmp(cn__container_of(n, cn__name, node)->name, name) == 0;
}

static cn__name *find(cn_runtime *rt, const char *name) {
  cn__hnode **lp =
      cn__htab_find(&rt->names, cn__name_hash(name), name_is, name);
  return lp ? cn__container_of(*lp, cn__name, node) : NULL;
}

/* Inserts under the write lock.  p must be alive and nameless. */
static int insert(cn_runtime *rt, const char *name, cn_proc *p,
                  cn_pid *holder) {
  cn__name *e = find(rt, name);
  size_t len = strlen(name);
  if (e) {
    if (holder)
      *holder = e->pid;
    return CN_EEXIST;
  }
  if (p->reg_name)
    return CN_EEXIST;
  if (!(e = malloc(sizeof(*e) + len + 1)))
    return CN_ENOMEM;
  names_changed();
  memcpy(e->name, name, len + 1);
  e->pid = p->pid;
  e->proc = p;
  if (cn__htab_add(&rt->names, &e->node, cn__name_hash(name)) != 0) {
    free(e);
    return CN_ENOMEM;
  }
  p->reg_name = e->name;
  return 0;
}

int cn__name_register_locked(cn_runtime *rt, const char *name, cn_proc *p,
                             cn_pid *holder) {
  int rc;
  if (!valid_name(name))
    return CN_EINVAL;
  pthread_rwlock_wrlock(&rt->names_mu);
  rc = insert(rt, name, p, holder);
  pthread_rwlock_unlock(&rt->names_mu);
  return rc;
}

int cn_register(cn_runtime *rt, const char *name, cn_pid pid) {
  cn_proc *p;
  int rc;
  if (!rt || !valid_name(name))
    return CN_EINVAL;
  if (!(p = cn__lookup(rt, pid)))
    return CN_ENOPROC;
  pthread_rwlock_wrlock(&rt->names_mu);
  /* Checked under the lock: exit sets EXITING before it drops its name
   * under the same lock, so a name never outlives its process. */
  if (atomic_load(&p->state) & CN__P_EXITING)
    rc = CN_ENOPROC;
  else
    rc = insert(rt, name, p, NULL);
  pthread_rwlock_unlock(&rt->names_mu);
  cn__proc_unref(p);
  return rc;
}

/* Drops a name (under the write lock). */
static bool drop(cn_runtime *rt, const char *name) {
  cn__hnode *n;
  cn__name *e;
  names_changed();
  n = cn__htab_take(&rt->names, cn__name_hash(name), name_is, name);
  if (!n)
    return false;
  e = cn__container_of(n, cn__name, node);
  e->proc->reg_name = NULL;
  free(e);
  return true;
}

int cn_unregister(cn_runtime *rt, const char *name) {
  int rc;
  if (!rt || !name)
    return CN_EINVAL;
  pthread_rwlock_wrlock(&rt->names_mu);
  rc = drop(rt, name) ? 0 : CN_ENOENT;
  pthread_rwlock_unlock(&rt->names_mu);
  return rc;
}

int cn__name_lookup(cn_runtime *rt, const char *name, cn_pid *pid) {
  name_hit *h = &last_hit;
  uint64_t gen = atomic_load_explicit(&names_gen, memory_order_acquire);
  cn__name *e;
  size_t len;
  int rc = CN_ENOENT;

  if (h->rt == rt && h->gen == gen && strcmp(h->name, name) == 0) {
    *pid = h->pid;
    return 0;
  }
  pthread_rwlock_rdlock(&rt->names_mu);
  if ((e = find(rt, name))) {
    *pid = e->pid;
    rc = 0;
    if ((len = strlen(name)) < NAME_HIT_MAX) {
      /* Stable under the read lock: writers bump it under the write
       * lock. */
      h->gen = atomic_load_explicit(&names_gen, memory_order_relaxed);
      h->rt = rt;
      h->pid = e->pid;
      memcpy(h->name, name, len + 1);
    }
  }
  pthread_rwlock_unlock(&rt->names_mu);
  return rc;
}

int cn_whereis(cn_runtime *rt, const char *name, cn_pid *pid) {
  if (!rt || !name || !pid)
    return CN_EINVAL;
  return cn__name_lookup(rt, name, pid);
}

void cn__name_drop_proc(cn_runtime *rt, cn_proc *p) {
  pthread_rwlock_wrlock(&rt->names_mu);
  if (p->reg_name)
    drop(rt, p->reg_name);
  pthread_rwlock_unlock(&rt->names_mu);
}

static void free_name(cn__hnode *n, void *arg) {
  (void)arg;
  free(cn__container_of(n, cn__name, node));
}

void cn__names_free(cn_runtime *rt) {
  /* A runtime made later at the same address must not meet this one's
   * entries. */
  names_changed();
  cn__htab_drain(&rt->names, free_name, NULL);
}

int cn__names_list(cn_runtime *rt, cn_buf *out) {
  size_t i;
  cn__hnode *n;
  pthread_rwlock_rdlock(&rt->names_mu);
  for (i = 0; i < rt->names.cap; i++) {
    for (n = rt->names.b[i]; n; n = n->next) {
      cn_put_list(out, 1);
      cn_put_atom(out, cn__container_of(n, cn__name, node)->name);
    }
  }
  pthread_rwlock_unlock(&rt->names_mu);
  cn_put_nil(out);
  return out->err;
}

int cn__proc_name(cn_runtime *rt, cn_pid pid, char *out, size_t cap) {
  cn_proc *p = cn__lookup(rt, pid);
  int rc = CN_ENOENT;
  if (!p)
    return CN_ENOPROC;
  pthread_rwlock_rdlock(&rt->names_mu);
  if (p->reg_name && cap > strlen(p->reg_name)) {
    snprintf(out, cap, "%s", p->reg_name);
    rc = 0;
  }
  pthread_rwlock_unlock(&rt->names_mu);
  cn__proc_unref(p);
  return rc;
}
