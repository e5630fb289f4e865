/* The one hash table of the library: intrusive, chained, with a
 * power-of-two number of buckets that doubles as it fills.  Not installed.
 *
 * An entry embeds a cn__hnode and is found again with container_of.  The
 * caller computes each key's hash (with the keyed SipHash of siphash.h
 * wherever a peer can choose the key, so that crafted keys cannot pile
 * into one bucket) and says what equal means.  Nothing here allocates an
 * entry or frees one: the table only links them.  Not thread-safe: each
 * table belongs to one owner (a process, the dist loop) or one lock.
 *
 * Lookups are O(1) on average at a load of at most one entry per bucket;
 * a failed growth (no memory) leaves the table as it was, only fuller.
 */
#ifndef CN_UTIL_HTAB_H
#define CN_UTIL_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cn__hnode {
  struct cn__hnode *next; /* the next entry in the same bucket */
  uint64_t hash;          /* the key's hash, kept for growing */
} cn__hnode;

typedef struct cn__htab {
  cn__hnode **b; /* cap buckets, or NULL while the table is empty */
  size_t cap;    /* a power of two, or 0 */
  size_t n;      /* entries */
} cn__htab;

/* True when node holds key. */
typedef bool (*cn__hmatch_fn)(const cn__hnode *node, const void *key);

#define CN__HTAB_INIT                                                          \
  { NULL, 0, 0 }

#define cn__container_of(ptr, type, member)                                    \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Links node in under hash.  Grows the table first when it is full.
 * Returns 0, or CN_ENOMEM when the table has no buckets yet and none can
 * be allocated (then node is not linked). */
int cn__htab_add(cn__htab *t, cn__hnode *node, uint64_t hash);

/* The link that points at the entry holding key (so that the caller may
 * unlink it with cn__htab_unlink), or NULL when there is none. */
cn__hnode **cn__htab_find(const cn__htab *t, uint64_t hash, cn__hmatch_fn match,
                          const void *key);

/* Unlinks the entry *link points at (from cn__htab_find) and returns it. */
cn__hnode *cn__htab_unlink(cn__htab *t, cn__hnode **link);

/* Finds and unlinks the entry holding key: the entry, or NULL. */
cn__hnode *cn__htab_take(cn__htab *t, uint64_t hash, cn__hmatch_fn match,
                         const void *key);

/* Forgets every entry (without touching them: the owner frees them by
 * its own means) and frees the buckets. */
void cn__htab_clear(cn__htab *t);

/* Empties the table, then calls fn on each entry it held (in no
 * particular order; fn may free the entry, and may add to the table,
 * which starts empty), and frees the buckets. */
void cn__htab_drain(cn__htab *t, void (*fn)(cn__hnode *node, void *arg),
                    void *arg);

#endif /* CN_UTIL_HTAB_H */
