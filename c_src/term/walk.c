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

  while (todo != 0) {
    unsigned char tag = (unsigned char)*p;
    todo--;
    switch (tag) {
    case ETF_SMALL_INTEGER:
      p += 2;
      break;
    case ETF_INTEGER:
      p += 5;
      break;
    case ETF_FLOAT:
      p += 1 + ETF_FLOAT_TEXT;
      break;
    case ETF_NEW_FLOAT:
      p += 9;
      break;
    case ETF_ATOM:
    case ETF_ATOM_UTF8:
    case ETF_SMALL_ATOM:
    case ETF_SMALL_ATOM_UTF8:
      p += cn__atom_size(p);
      break;
    case ETF_PID:
      p += 1;
      p += cn__atom_size(p) + 9;
      break;
    case ETF_NEW_PID:
      p += 1;
      p += cn__atom_size(p) + 12;
      break;
    case ETF_PORT:
      p += 1;
      p += cn__atom_size(p) + 5;
      break;
    case ETF_NEW_PORT:
      p += 1;
      p += cn__atom_size(p) + 8;
      break;
    case ETF_V4_PORT:
      p += 1;
      p += cn__atom_size(p) + 12;
      break;
    case ETF_REFERENCE:
      p += 1;
      p += cn__atom_size(p) + 5;
      break;
    case ETF_NEW_REFERENCE: {
      size_t words = cn__get16(p + 1);
      p += 3;
      p += cn__atom_size(p) + 1 + 4 * words;
      break;
    }
    case ETF_NEWER_REFERENCE: {
      size_t words = cn__get16(p + 1);
      p += 3;
      p += cn__atom_size(p) + 4 + 4 * words;
      break;
    }
    case ETF_SMALL_TUPLE:
      todo += (unsigned char)p[1];
      p += 2;
      break;
    case ETF_LARGE_TUPLE:
      todo += cn__get32(p + 1);
      p += 5;
      break;
    case ETF_MAP:
      todo += 2 * (uint64_t)cn__get32(p + 1);
      p += 5;
      break;
    case ETF_NIL:
      p += 1;
      break;
    case ETF_STRING:
      p += 3 + (size_t)cn__get16(p + 1);
      break;
    case ETF_LIST:
      todo += (uint64_t)cn__get32(p + 1) + 1; /* elements and tail */
      p += 5;
      break;
    case ETF_BINARY:
      p += 5 + (size_t)cn__get32(p + 1);
      break;
    case ETF_BIT_BINARY:
      p += 6 + (size_t)cn__get32(p + 1);
      break;
    case ETF_SMALL_BIG:
      p += 3 + (size_t)(unsigned char)p[1];
      break;
    case ETF_LARGE_BIG:
      p += 6 + (size_t)cn__get32(p + 1);
      break;
    case ETF_NEW_FUN:
      /* Size counts itself and everything after it, free vars too. */
      p += 1 + (size_t)cn__get32(p + 1);
      break;
    case ETF_EXPORT:
      todo += 3;
      p += 1;
      break;
    default:
      /* Unreachable for validated terms; stop rather than loop. */
      return p + 1;
    }
  }
  return p;
}

/* ---- The stack ---------------------------------------------------------- */

void *cn__stack_grow(cn__stack *s) {
  size_t cap = s->cap * 2;
  char *f;

  if (cap > SIZE_MAX / s->size)
    return NULL;
  if (s->base == s->inl) {
    f = malloc(cap * s->size);
    if (f != NULL)
      memcpy(f, s->inl, s->n * s->size);
  } else {
    f = realloc(s->base, cap * s->size);
  }
  if (f == NULL)
    return NULL;
  s->base = f;
  s->cap = cap;
  return s->base + s->size * s->n++;
}

/* ---- Lists -------------------------------------------------------------- */

uint64_t cn__list_count(const char *p) {
  cn__list l;
  uint64_t total = 0;
  const char *x;

  cn__list_enter(&l, &p);
  for (;;) {
    /* Step over what is left of the segment, then into the next one. */
    total += l.left;
    if (l.str)
      p += l.left;
    else
      for (; l.left > 0; l.left--)
        p = cn__skip_fast(p);
    l.left = 0;
    if (!cn__list_next(&l, &p, &x))
      return total;
    total++; /* the next segment's first element */
    p = l.str ? p : cn__skip_fast(x);
  }
}
