/* Not ei: ei_skip_term recurses per level; ei has no cursor over lists. */
/* The iterative pieces that validate, compare, hash, print and the readers
 * share: a stack that spills to the heap, the list cursor, cn__skip.  The
 * stack and the list cursor are declared, and described, in
 * term_internal.h.
 */
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

/* One counter of terms still to skip replaces a stack: a container only
 * adds its element count. */
const char *cn__skip(const char *p) {
  uint64_t todo = 1; /* terms still to skip */

  while (todo-- != 0) {
    const cn__shape *s = &cn__shapes[(unsigned char)*p];
    uint64_t n = s->tail + s->mul * cn__shape_count(p, s);
    p += s->hdr;
    if (s->kind == SH_BYTES)
      p += n;
    else if (s->kind == SH_IDENT) /* the node's atom, then n bytes */
      p += cn__shapes[(unsigned char)*p].hdr +
           cn__shape_count(p, &cn__shapes[(unsigned char)*p]) + n;
    else if (s->kind == SH_SEQ)
      todo += n;
    else
      return p + 1; /* unreachable for validated terms; stop, not loop */
  }
  return p;
}

/* ---- The stack ---------------------------------------------------------- */

void *cn__stack_grow(cn__stack *s) {
  size_t cap = s->cap * 2;
  char *f;

  if (cap > SIZE_MAX / s->size ||
      (f = realloc(s->base == s->inl ? NULL : s->base, cap * s->size)) == NULL)
    return NULL;
  if (s->base == s->inl)
    memcpy(f, s->inl, s->n * s->size);
  s->base = f;
  s->cap = cap;
  return s->base + s->size * s->n++;
}

/* ---- Lists -------------------------------------------------------------- */

const char *cn__list_end(cn__list *l, const char *p, uint64_t *count) {
  while (cn__list_more(l, &p)) {
    /* Step over what is left of the segment. */
    *count += l->left;
    if (l->str)
      p += l->left;
    else
      for (; l->left > 0; l->left--)
        p = cn__skip_fast(p);
    l->left = 0;
  }
  return l->str ? p : cn__skip_fast(p);
}
