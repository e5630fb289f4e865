/* Registered names: a hash table from name to pid under a rwlock.
 *
 * Peers name the processes they send to, and the names a node registers
 * may come from them too (a server started per client, say), so the table
 * hashes with the keyed SipHash: nobody without the process's key can
 * pick names that share a bucket. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct cn__name {
  cn__hnode node; /* in rt->names */
  cn_pid pid;
  cn_proc *proc; /* for dropping the name at exit (not a reference) */
  char name[];
} cn__name;

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
  cn__hnode *n = cn__htab_take(&rt->names, cn__name_hash(name), name_is, name);
  cn__name *e;
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
  cn__name *e;
  int rc = CN_ENOENT;
  pthread_rwlock_rdlock(&rt->names_mu);
  if ((e = find(rt, name))) {
    *pid = e->pid;
    rc = 0;
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
