/* Large blocks, kept for reuse.
 *
 * A large message passes through a few buffers of its own size: the
 * reassembly of its fragments, the message a process gets, the reply
 * that handler builds, the reply message.  Freed, such a buffer goes back
 * to the kernel (malloc serves it with mmap, or trims it off its heap),
 * and the next message of that size faults every page in again: on a
 * virtual machine a page fault costs microseconds, and a 1 MiB echo spent
 * most of its time there.  So freed blocks of at least CN__BLOCK_MIN
 * bytes are kept here, a few and up to a total, for the next large
 * message; what waits unused for BLOCK_IDLE_MS goes back (cn__blocks_trim,
 * which the dist loop calls on its ticker).
 *
 * A block too large to keep (a 100 MB message) is new each time: its
 * pages are faulted in by one madvise(MADV_POPULATE_WRITE) instead of
 * one fault each as they are first written (about four times faster
 * here for 100 MB); kernels without it fault them in as usual.
 *
 * Every block is plain malloc'ed memory, so free() on one is always
 * right: the cache only saves work.  Thread-safe: one mutex, taken only
 * for large blocks. */
#include "internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BLOCK_SLOTS 8
#define BLOCK_KEEP ((size_t)64 << 20) /* most bytes kept in all */
#define BLOCK_IDLE_MS 10000
/* A new block this large has its pages faulted in at once. */
#define POPULATE_MIN ((size_t)1 << 20)

typedef struct block {
  char *p;
  size_t cap;
  uint64_t freed_ms; /* when it came back */
  uint64_t seq;      /* the order it came back in */
} block;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static block slots[BLOCK_SLOTS];
static size_t nslots, kept;
static uint64_t seq;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Faults in the whole pages of [p, p + n) at once (best effort). */
static void populate(char *p, size_t n) {
#ifdef MADV_POPULATE_WRITE
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t a, b;
  if (page <= 0)
    page = 4096;
  a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
  b = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
  if (b > a)
    (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)n;
#endif
}

void *cn__block_alloc(size_t n, size_t *cap) {
  size_t i, best = BLOCK_SLOTS;
  char *p;
  if (n >= CN__BLOCK_MIN) {
    pthread_mutex_lock(&mu);
    /* The smallest kept block that holds n, and is not wasted on it (at
     * most twice n). */
    for (i = 0; i < nslots; i++)
      if (slots[i].cap >= n && slots[i].cap / 2 <= n &&
          (best == BLOCK_SLOTS || slots[i].cap < slots[best].cap))
        best = i;
    if (best != BLOCK_SLOTS) {
      p = slots[best].p;
      *cap = slots[best].cap;
      kept -= *cap;
      slots[best] = slots[--nslots];
      pthread_mutex_unlock(&mu);
      return p;
    }
    pthread_mutex_unlock(&mu);
  }
  if ((p = malloc(n ? n : 1)) != NULL) {
    *cap = n;
    if (n >= POPULATE_MIN)
      populate(p, n);
  }
  return p;
}

void cn__block_free(void *p, size_t cap) {
  char *evict[BLOCK_SLOTS];
  size_t i, nev = 0;
  if (!p)
    return;
  if (cap >= CN__BLOCK_MIN && cap <= BLOCK_KEEP / 2) {
    pthread_mutex_lock(&mu);
    /* The latest block is the likeliest to fit the next message: the
     * longest kept ones make room for it. */
    while (nslots == BLOCK_SLOTS || kept + cap > BLOCK_KEEP) {
      size_t old = 0;
      for (i = 1; i < nslots; i++)
        if (slots[i].seq < slots[old].seq)
          old = i;
      evict[nev++] = slots[old].p;
      kept -= slots[old].cap;
      slots[old] = slots[--nslots];
    }
    slots[nslots].p = p;
    slots[nslots].cap = cap;
    slots[nslots].freed_ms = now_ms();
    slots[nslots].seq = ++seq;
    nslots++;
    kept += cap;
    p = NULL;
    pthread_mutex_unlock(&mu);
  }
  free(p);
  for (i = 0; i < nev; i++)
    free(evict[i]);
}

void cn__blocks_trim(bool all) {
  uint64_t now = now_ms();
  size_t i = 0;
  pthread_mutex_lock(&mu);
  while (i < nslots) {
    if (all || now - slots[i].freed_ms >= BLOCK_IDLE_MS) {
      free(slots[i].p);
      kept -= slots[i].cap;
      slots[i] = slots[--nslots];
    } else {
      i++;
    }
  }
  pthread_mutex_unlock(&mu);
}
