/* The one hash table of the library: see htab.h. */
#include "util/htab.h"

#include <stdlib.h>

#include <cnode/common.h>

#define MIN_BUCKETS 8

/* Doubles the buckets (from none: MIN_BUCKETS).  Returns 0 or CN_ENOMEM,
 * with the table as it was. */
static int grow(cn__htab *t) {
  size_t cap = t->cap ? t->cap * 2 : MIN_BUCKETS, i;
  cn__hnode **b;
  if (cap < t->cap || !(b = calloc(cap, sizeof(*b))))
    return CN_ENOMEM;
  for (i = 0; i < t->cap; i++) {
    cn__hnode *e = t->b[i], *next;
    for (; e; e = next) {
      next = e->next;
      e->next = b[e->hash & (cap - 1)];
      b[e->hash & (cap - 1)] = e;
    }
  }
  free(t->b);
  t->b = b;
  t->cap = cap;
  return 0;
}

int cn__htab_add(cn__htab *t, cn__hnode *node, uint64_t hash) {
  cn__hnode **slot;
  /* A failed growth of a table that has buckets only makes it fuller. */
  if (t->n >= t->cap && grow(t) != 0 && t->cap == 0)
    return CN_ENOMEM;
  node->hash = hash;
  slot = &t->b[hash & (t->cap - 1)];
  node->next = *slot;
  *slot = node;
  t->n++;
  return 0;
}

cn__hnode **cn__htab_find(const cn__htab *t, uint64_t hash, cn__hmatch_fn match,
                          const void *key) {
  cn__hnode **lp;
  if (t->cap == 0)
    return NULL;
  for (lp = &t->b[hash & (t->cap - 1)]; *lp; lp = &(*lp)->next)
    if ((*lp)->hash == hash && match(*lp, key))
      return lp;
  return NULL;
}

cn__hnode *cn__htab_unlink(cn__htab *t, cn__hnode **link) {
  cn__hnode *e = *link;
  *link = e->next;
  e->next = NULL;
  t->n--;
  return e;
}

cn__hnode *cn__htab_take(cn__htab *t, uint64_t hash, cn__hmatch_fn match,
                         const void *key) {
  cn__hnode **lp = cn__htab_find(t, hash, match, key);
  return lp ? cn__htab_unlink(t, lp) : NULL;
}

void cn__htab_clear(cn__htab *t) {
  free(t->b);
  t->b = NULL;
  t->cap = t->n = 0;
}

void cn__htab_drain(cn__htab *t, void (*fn)(cn__hnode *node, void *arg),
                    void *arg) {
  cn__htab old = *t;
  size_t i;
  t->b = NULL;
  t->cap = t->n = 0;
  for (i = 0; i < old.cap; i++) {
    cn__hnode *e = old.b[i], *next;
    for (; e; e = next) {
      next = e->next;
      e->next = NULL;
      fn(e, arg);
    }
  }
  free(old.b);
}
