/* The process-wide table of node names.
 *
 * Pids, references and ports name their node by a small index into this
 * table, so that comparing two pids never compares strings.  Every pid
 * decoded from the wire interns its node, so lookups sit on the hot path:
 * they take no lock.  The table is append-only, which is what makes that
 * easy:
 *
 *  - names live in fixed chunks; a chunk pointer, once published, never
 *    changes, and the count of names is published with release order
 *    after the name is in place;
 *  - a hash index of buckets chains names through their `next` field;
 *    a writer links a new name in front of its bucket with a release
 *    store, so a reader that sees the link also sees the name.  Peers
 *    make us intern any node name they like, just by sending a pid that
 *    carries it, so the index hashes with the keyed SipHash: without the
 *    process's key nobody can pick names that share a bucket.
 *
 * Writers (new names only) serialise on a mutex.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"
#include "util/siphash.h"

#define CHUNK_BITS 8
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define NCHUNKS (CN_MAX_NODES / CHUNK_SIZE)
#define NBUCKETS 4096 /* chains stay short for any realistic cluster */

typedef struct node_entry {
  _Atomic uint32_t next; /* next index in the bucket's chain; 0 ends it */
  uint32_t hash;         /* hash of the name */
  size_t len;            /* bytes in name */
  char name[];           /* NUL-terminated */
} node_entry;

/* Index 0, "nonode@nohost", is there from the start without allocation:
 * it is what an unconnected C program's pids carry.  It has no entry and
 * never sits in a chain; the functions below answer for it directly. */
static const char nonode_name[] = "nonode@nohost";

static node_entry *chunk0[CHUNK_SIZE];
static node_entry **_Atomic chunks[NCHUNKS] = {chunk0};
static _Atomic uint32_t count = 1;
static _Atomic uint32_t buckets[NBUCKETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

uint32_t cn__node_hash(const char *name, size_t len) {
  return (uint32_t)cn__siphash(cn__hash_key(), name, len);
}

static node_entry *entry_at(uint32_t idx) {
  node_entry **chunk =
      atomic_load_explicit(&chunks[idx >> CHUNK_BITS], memory_order_acquire);
  return chunk[idx & (CHUNK_SIZE - 1)];
}

static int is_nonode(const char *name, size_t len) {
  return len == sizeof nonode_name - 1 && memcmp(name, nonode_name, len) == 0;
}

/* Looks the name up without locking; 0 means "not found" (index 0 never
 * sits in a chain). */
static uint32_t find(const char *name, size_t len, uint32_t h) {
  uint32_t idx =
      atomic_load_explicit(&buckets[h % NBUCKETS], memory_order_acquire);
  while (idx != 0) {
    node_entry *e = entry_at(idx);
    if (e->hash == h && e->len == len && memcmp(e->name, name, len) == 0)
      return idx;
    idx = atomic_load_explicit(&e->next, memory_order_acquire);
  }
  return 0;
}

int cn_node_intern(const char *name, size_t len, uint32_t *idx) {
  uint32_t h, i, n;
  node_entry *e;
  int rc = 0;

  if (name == NULL || idx == NULL || len == 0 || len > CN_MAX_NODE_NAME)
    return CN_EINVAL;
  if (is_nonode(name, len)) {
    *idx = 0;
    return 0;
  }
  h = cn__node_hash(name, len);
  if ((i = find(name, len, h)) != 0) {
    *idx = i;
    return 0;
  }

  pthread_mutex_lock(&lock);
  if ((i = find(name, len, h)) != 0) /* another writer was first */
    goto done;
  n = atomic_load_explicit(&count, memory_order_relaxed);
  if (n >= CN_MAX_NODES) {
    rc = CN_ELIMIT;
    goto done;
  }
  if (atomic_load_explicit(&chunks[n >> CHUNK_BITS], memory_order_relaxed) ==
      NULL) {
    node_entry **chunk = calloc(CHUNK_SIZE, sizeof *chunk);
    if (chunk == NULL) {
      rc = CN_ENOMEM;
      goto done;
    }
    atomic_store_explicit(&chunks[n >> CHUNK_BITS], chunk,
                          memory_order_release);
  }
  e = malloc(sizeof *e + len + 1);
  if (e == NULL) {
    rc = CN_ENOMEM;
    goto done;
  }
  memcpy(e->name, name, len);
  e->name[len] = '\0';
  e->len = len;
  e->hash = h;
  atomic_init(&e->next, atomic_load_explicit(&buckets[h % NBUCKETS],
                                             memory_order_relaxed));
  atomic_load_explicit(&chunks[n >> CHUNK_BITS],
                       memory_order_relaxed)[n & (CHUNK_SIZE - 1)] = e;
  atomic_store_explicit(&count, n + 1, memory_order_release);
  atomic_store_explicit(&buckets[h % NBUCKETS], n, memory_order_release);
  i = n;
done:
  pthread_mutex_unlock(&lock);
  if (rc == 0)
    *idx = i;
  return rc;
}

int cn_node_find(const char *name, size_t len, uint32_t *idx) {
  uint32_t i;
  if (name == NULL || idx == NULL || len == 0 || len > CN_MAX_NODE_NAME)
    return CN_EINVAL;
  if (is_nonode(name, len)) {
    *idx = 0;
    return 0;
  }
  if ((i = find(name, len, cn__node_hash(name, len))) == 0)
    return CN_ENOENT;
  *idx = i;
  return 0;
}

const char *cn_node_name(uint32_t idx) {
  if (idx == 0)
    return nonode_name;
  if (idx >= atomic_load_explicit(&count, memory_order_acquire))
    return NULL;
  return entry_at(idx)->name;
}

int cn__intern_atom(const cn__atom *a, uint32_t *idx, bool add) {
  char tmp[2 * 255];
  size_t n;

  if (!a->latin1)
    return add ? cn_node_intern((const char *)a->s, a->n, idx)
               : cn_node_find((const char *)a->s, a->n, idx);
  n = cn__atom_utf8_len(a);
  if (n > sizeof tmp)
    return CN_EINVAL;
  cn__atom_utf8(a, tmp);
  return add ? cn_node_intern(tmp, n, idx) : cn_node_find(tmp, n, idx);
}

bool cn_pid_equal(const cn_pid *a, const cn_pid *b) {
  return a->node == b->node && a->id == b->id && a->serial == b->serial &&
         a->creation == b->creation;
}

bool cn_ref_equal(const cn_ref *a, const cn_ref *b) {
  uint32_t i, n;

  if (a->node != b->node || a->creation != b->creation)
    return false;
  /* As in erts, a missing high word equals a zero word: [1,2] =:= [1,2,0].
   * Lengths beyond CN_REF_MAX_WORDS are clamped rather than trusted. */
  n = a->len > b->len ? a->len : b->len;
  if (n > CN_REF_MAX_WORDS)
    n = CN_REF_MAX_WORDS;
  for (i = 0; i < n; i++) {
    uint32_t x = i < a->len ? a->n[i] : 0;
    uint32_t y = i < b->len ? b->n[i] : 0;
    if (x != y)
      return false;
  }
  return true;
}
