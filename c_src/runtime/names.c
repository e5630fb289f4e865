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
  struct cn__name *next;
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

static cn__name **find(cn_runtime *rt, const char *name) {
  cn__name **np;
  if (!rt->names_cap)
    return NULL;
  np = &rt->names[cn__name_hash(name) & (rt->names_cap - 1)];
  for (; *np; np = &(*np)->next)
    if (strcmp((*np)->name, name) == 0)
      return np;
  return NULL;
}

static int grow(cn_runtime *rt) {
  size_t cap = rt->names_cap ? rt->names_cap * 2 : 64, i;
  cn__name **v = calloc(cap, sizeof(*v));
  if (!v)
    return CN_ENOMEM;
  for (i = 0; i < rt->names_cap; i++) {
    cn__name *e = rt->names[i];
    while (e) {
      cn__name *next = e->next;
      size_t b = cn__name_hash(e->name) & (cap - 1);
      e->next = v[b];
      v[b] = e;
      e = next;
    }
  }
  free(rt->names);
  rt->names = v;
  rt->names_cap = cap;
  return 0;
}

/* Inserts under the write lock.  p must be alive and nameless. */
static int insert(cn_runtime *rt, const char *name, cn_proc *p,
                  cn_pid *holder) {
  cn__name **np = find(rt, name), *e;
  size_t len = strlen(name);
  if (np) {
    if (holder)
      *holder = (*np)->pid;
    return CN_EEXIST;
  }
  if (p->reg_name)
    return CN_EEXIST;
  if (rt->names_n + 1 > rt->names_cap * 3 / 4 && grow(rt) != 0)
    return CN_ENOMEM;
  e = malloc(sizeof(*e) + len + 1);
  if (!e)
    return CN_ENOMEM;
  memcpy(e->name, name, len + 1);
  e->pid = p->pid;
  e->proc = p;
  np = &rt->names[cn__name_hash(name) & (rt->names_cap - 1)];
  e->next = *np;
  *np = e;
  rt->names_n++;
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

static void unlink_entry(cn_runtime *rt, cn__name **np) {
  cn__name *e = *np;
  *np = e->next;
  e->proc->reg_name = NULL;
  rt->names_n--;
  free(e);
}

int cn_unregister(cn_runtime *rt, const char *name) {
  cn__name **np;
  int rc = CN_ENOENT;
  if (!rt || !name)
    return CN_EINVAL;
  pthread_rwlock_wrlock(&rt->names_mu);
  if ((np = find(rt, name))) {
    unlink_entry(rt, np);
    rc = 0;
  }
  pthread_rwlock_unlock(&rt->names_mu);
  return rc;
}

int cn__name_lookup(cn_runtime *rt, const char *name, cn_pid *pid) {
  cn__name **np;
  int rc = CN_ENOENT;
  pthread_rwlock_rdlock(&rt->names_mu);
  if ((np = find(rt, name))) {
    *pid = (*np)->pid;
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
  cn__name **np;
  pthread_rwlock_wrlock(&rt->names_mu);
  if (p->reg_name && (np = find(rt, p->reg_name)))
    unlink_entry(rt, np);
  pthread_rwlock_unlock(&rt->names_mu);
}

void cn__names_free(cn_runtime *rt) {
  size_t i;
  for (i = 0; i < rt->names_cap; i++) {
    cn__name *e = rt->names[i];
    while (e) {
      cn__name *next = e->next;
      free(e);
      e = next;
    }
  }
  free(rt->names);
  rt->names = NULL;
  rt->names_cap = rt->names_n = 0;
}
