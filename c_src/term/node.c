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

/* The names this thread found last, in a few slots: every pid and
 * reference read from the wire interns its node's name, and a connection's
 * frames name the same one or two nodes over and over (a call from a BEAM
 * client: seven times).  A hit costs a compare instead of a keyed hash
 * and a bucket walk (those were 5% of the node's CPU per call at 16
 * callers).  Entries never change or go once published, so an index
 * stays good for its name. */
#define RECENT 8
static _Thread_local uint32_t recent[RECENT];

/* cn_node_intern when add, else cn_node_find. */
static int lookup(const char *name, size_t len, uint32_t *idx, bool add) {
  node_entry **chunk, *e;
  uint32_t h, i, n, *slot;
  int rc = 0;

  if (name == NULL || idx == NULL || len == 0 || len > CN_MAX_NODE_NAME)
    return CN_EINVAL;
  /* Node names on one host share their ends: key on the length, the
   * first byte and the middle one. */
  slot =
      &recent[(len + (unsigned char)name[0] + (unsigned char)name[len >> 1]) %
              RECENT];
  if ((i = *slot) != 0 && (e = entry_at(i))->len == len &&
      memcmp(e->name, name, len) == 0) {
    *idx = i;
    return 0;
  }
  if (len == sizeof nonode_name - 1 && memcmp(name, nonode_name, len) == 0) {
    *idx = 0;
    return 0;
  }
  h = cn__node_hash(name, len);
  if ((i = find(name, len, h)) != 0) {
    *slot = i;
    *idx = i;
    return 0;
  }
  if (!add)
    return CN_ENOENT;

  pthread_mutex_lock(&lock);
  if ((i = find(name, len, h)) != 0) /* another writer was first */
    goto done;
  n = atomic_load_explicit(&count, memory_order_relaxed);
  if (n >= CN_MAX_NODES) {
    rc = CN_ELIMIT;
    goto done;
  }
  if ((chunk = atomic_load_explicit(&chunks[n >> CHUNK_BITS],
                                    memory_order_relaxed)) == NULL &&
      (chunk = calloc(CHUNK_SIZE, sizeof *chunk)) != NULL)
    atomic_store_explicit(&chunks[n >> CHUNK_BITS], chunk,
                          memory_order_release);
  if (chunk == NULL || (e = malloc(sizeof *e + len + 1)) == NULL) {
    rc = CN_ENOMEM;
    goto done;
  }
  memcpy(e->name, name, len);
  e->name[len] = '\0';
  e->len = len;
  e->hash = h;
  atomic_init(&e->next, atomic_load_explicit(&buckets[h % NBUCKETS],
                                             memory_order_relaxed));
  chunk[n & (CHUNK_SIZE - 1)] = e;
  atomic_store_explicit(&count, n + 1, memory_order_release);
  atomic_store_explicit(&buckets[h % NBUCKETS], n, memory_order_release);
  i = n;
done:
  pthread_mutex_unlock(&lock);
  if (rc == 0)
    *idx = *slot = i;
  return rc;
}

int cn_node_intern(const char *name, size_t len, uint32_t *idx) {
  return lookup(name, len, idx, true);
}

int cn_node_find(const char *name, size_t len, uint32_t *idx) {
  return lookup(name, len, idx, false);
}

const char *cn_node_name(uint32_t idx) {
  if (idx == 0)
    return nonode_name;
  /* count never passes CN_MAX_NODES, but a compiler that inlines this
   * into a caller with a constant idx cannot know it, and warns that
   * chunks[] is indexed past its end: gcc did so for test-term's
   * cn_node_name(CN_MAX_NODES) when every program was optimised whole at
   * link time.  The first test keeps such a build warning-free. */
  if (idx >= CN_MAX_NODES ||
      idx >= atomic_load_explicit(&count, memory_order_acquire))
    return NULL;
  return entry_at(idx)->name;
}

int cn__intern_atom(const cn__atom *a, uint32_t *idx, bool add) {
  char tmp[2 * 255];
  size_t n;
  const char *s = cn__atom_text(a, tmp, &n);
  return lookup(s, n, idx, add);
}

bool cn_pid_equal(const cn_pid *a, const cn_pid *b) {
  return a->node == b->node && a->id == b->id && a->serial == b->serial &&
         a->creation == b->creation;
}

bool cn_ref_equal(const cn_ref *a, const cn_ref *b) {
  uint32_t i;

  if (a->node != b->node || a->creation != b->creation)
    return false;
  /* As in erts, a missing high word equals a zero word: [1,2] =:= [1,2,0].
   * Lengths beyond CN_REF_MAX_WORDS are clamped rather than trusted. */
  for (i = 0; i < CN_REF_MAX_WORDS; i++)
    if ((i < a->len ? a->n[i] : 0) != (i < b->len ? b->n[i] : 0))
      return false;
  return true;
}
