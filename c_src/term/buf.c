/* cn_buf: the growable byte buffer every encoder appends to.
 *
 * Capacity doubles on growth, so a sequence of appends costs amortised
 * O(1) per byte.  A buffer may start over caller storage (a stack array,
 * typically) and moves to the heap only when it outgrows it; that keeps
 * the common small message free of malloc.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

/* The first heap allocation is at least this big: most terms are small,
 * and growing 8 -> 16 -> 32 would cost several reallocs for nothing. */
#define MIN_HEAP_CAP 64

void cn_buf_init(cn_buf *b) { cn_buf_init_with(b, NULL, 0); }

void cn_buf_init_with(cn_buf *b, void *storage, size_t cap) {
  b->data = storage;
  b->len = 0;
  b->cap = storage != NULL ? cap : 0;
  b->on_heap = 0;
  b->err = 0;
}

void cn_buf_free(cn_buf *b) {
  if (b->on_heap) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  /* Caller storage is kept: the buffer stays usable over it. */
  b->on_heap = 0;
  b->len = 0;
  b->err = 0;
}

void cn_buf_reset(cn_buf *b) {
  b->len = 0;
  b->err = 0;
}

int cn__buf_grow(cn_buf *b, size_t n) {
  size_t need, cap;
  char *p;

  /* No object may exceed PTRDIFF_MAX; asking for more is a certain
   * failure, so it does not reach malloc. */
  if (n > (size_t)PTRDIFF_MAX - b->len)
    goto nomem;
  need = b->len + n;
  if (need <= b->cap)
    return 0;
  cap = b->cap < MIN_HEAP_CAP ? MIN_HEAP_CAP : b->cap;
  while (cap < need)
    cap = cap > (size_t)PTRDIFF_MAX / 2 ? need : 2 * cap;
  if ((p = realloc(b->on_heap ? b->data : NULL, cap)) == NULL)
    goto nomem;
  if (!b->on_heap && b->len != 0)
    memcpy(p, b->data, b->len);
  b->data = p;
  b->cap = cap;
  b->on_heap = 1;
  return 0;

nomem:
  if (b->err == 0)
    b->err = CN_ENOMEM;
  return CN_ENOMEM;
}

int cn_buf_reserve(cn_buf *b, size_t n) {
  if (b->cap - b->len >= n)
    return 0;
  return cn__buf_grow(b, n);
}

int cn_buf_append(cn_buf *b, const void *p, size_t n) {
  char *dst;
  if (n == 0) /* nothing to add: not an error, even with no storage yet */
    return 0;
  if ((dst = cn__room(b, n)) == NULL)
    return CN_ENOMEM;
  memcpy(dst, p, n);
  b->len += n;
  return 0;
}
