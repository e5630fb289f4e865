/* Why not ei: ei_skip_term recurses once per level of nesting, and ei has
 * no cursor over a list split across its tails; this is the iterative walk
 * that compare, hash, print and the readers share.
 *
 * The stack, the list cursor and the walk are declared, and described, in
 * term_internal.h.
 */
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

/* ---- The layout of a term ---------------------------------------------- */

/* Bytes of the atom at p, or 0 when p holds no atom (see cn__head). */
static inline uint64_t atom_head(const char *p, uint64_t avail) {
  switch (avail != 0 ? (unsigned char)p[0] : 0) {
  case ETF_SMALL_ATOM:
  case ETF_SMALL_ATOM_UTF8:
    return avail < 2 ? 2 : 2 + (uint64_t)(unsigned char)p[1];
  case ETF_ATOM:
  case ETF_ATOM_UTF8:
    return avail < 3 ? 3 : 3 + (uint64_t)cn__get16(p + 1);
  default:
    return avail != 0 ? 0 : 1;
  }
}

/* An identifier: tag bytes, the node atom, then fixed bytes. */
static inline uint64_t ident_head(const char *p, uint64_t avail, uint64_t pre,
                                  uint64_t post) {
  uint64_t a = atom_head(p + pre, avail - pre);
  return a != 0 ? pre + a + post : 0;
}

/* Reads only the bytes [p, p + avail); see term_internal.h. */
static inline uint64_t head(const char *p, uint64_t avail, uint64_t *kids) {
  uint64_t n;

  *kids = 0;
  switch ((unsigned char)p[0]) {
  case ETF_SMALL_INTEGER:
    return 2;
  case ETF_INTEGER:
    return 5;
  case ETF_FLOAT:
    return 1 + ETF_FLOAT_TEXT;
  case ETF_NEW_FLOAT:
    return 9;
  case ETF_NIL:
    return 1;
  case ETF_ATOM:
  case ETF_ATOM_UTF8:
  case ETF_SMALL_ATOM:
  case ETF_SMALL_ATOM_UTF8:
    return atom_head(p, avail);
  case ETF_PID:
    return ident_head(p, avail, 1, 9);
  case ETF_NEW_PID:
  case ETF_V4_PORT:
    return ident_head(p, avail, 1, 12);
  case ETF_PORT:
  case ETF_REFERENCE:
    return ident_head(p, avail, 1, 5);
  case ETF_NEW_PORT:
    return ident_head(p, avail, 1, 8);
  case ETF_NEW_REFERENCE:
  case ETF_NEWER_REFERENCE:
    if (avail < 3)
      return 3;
    n = 4 * (uint64_t)cn__get16(p + 1);
    n += (unsigned char)p[0] == ETF_NEW_REFERENCE ? 1 : 4;
    return ident_head(p, avail, 3, n);
  case ETF_SMALL_TUPLE:
    if (avail < 2)
      return 2;
    *kids = (unsigned char)p[1];
    return 2;
  case ETF_STRING:
    return avail < 3 ? 3 : 3 + (uint64_t)cn__get16(p + 1);
  case ETF_SMALL_BIG:
    return avail < 2 ? 2 : 3 + (uint64_t)(unsigned char)p[1];
  case ETF_EXPORT:
    *kids = 3;
    return 1;
  default:
    break;
  }
  /* The rest have a 32-bit count at p + 1. */
  if (avail < 5)
    return 5;
  n = cn__get32(p + 1);
  switch ((unsigned char)p[0]) {
  case ETF_LARGE_TUPLE:
    *kids = n;
    return 5;
  case ETF_MAP:
    *kids = 2 * n;
    return 5;
  case ETF_LIST:
    *kids = n + 1; /* the elements and the tail */
    return 5;
  case ETF_BINARY:
    return 5 + n;
  case ETF_BIT_BINARY:
  case ETF_LARGE_BIG:
    return 6 + n;
  case ETF_NEW_FUN:
    return 1 + n; /* the size counts itself and the free variables */
  default:
    return 0;
  }
}

uint64_t cn__head(const char *p, uint64_t avail, uint64_t *kids) {
  return head(p, avail, kids);
}

/* One counter of terms still to skip replaces a stack: a container only
 * adds its element count. */
const char *cn__skip(const char *p) {
  uint64_t todo = 1, kids, n;

  while (todo != 0) {
    n = head(p, UINT64_MAX, &kids);
    if (n == 0)
      return p + 1; /* unreachable for validated terms; stop, not loop */
    p += n;
    todo += kids - 1;
  }
  return p;
}

/* ---- The stack ---------------------------------------------------------- */

void cn__stack_init_(cn__stack *s, void *inl, size_t cap, size_t size) {
  s->base = s->inl = inl;
  s->n = 0;
  s->cap = cap;
  s->size = size;
}

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

void cn__stack_free(cn__stack *s) {
  if (s->base != s->inl)
    free(s->base);
  s->base = s->inl;
  s->n = 0;
}

/* ---- Lists -------------------------------------------------------------- */

uint64_t cn__list_count(const char *p) {
  cn__list l;
  uint64_t total = 0;
  const char *x;

  cn__list_enter(&l, &p);
  for (;;) {
    /* A string segment's bytes are its elements: count them at once. */
    if (l.str) {
      total += l.left;
      p += l.left;
      l.left = 0;
    }
    if (!cn__list_next(&l, &p, &x))
      return total;
    total++;
    p = cn__skip_fast(x);
  }
}

/* ---- The walk ----------------------------------------------------------- */

void cn__walk_init(cn__walk *w, const char *t, int mode, int level, int key) {
  cn__frame *f;

  cn__stack_init(&w->s, w->inl);
  w->p = t;
  w->x = NULL;
  w->mode = mode;
  w->level = level;
  w->key = key;
  w->kind = CN__F_SEQ;
  w->err = 0;
  /* The root is the one element of a frame at the bottom. */
  f = cn__stack_push(&w->s);
  memset(f, 0, sizeof *f);
  f->kind = CN__F_SEQ;
  f->n = 1;
  f->key = (unsigned char)key;
}

/* Where a NEW_FUN_EXT's free variables start: after the module, OldIndex,
 * OldUniq and the creator pid. */
static const char *fun_free(const char *p) {
  const char *q = p + 1 + 29;
  q += cn__atom_size(q);
  q += (unsigned char)q[0] == ETF_SMALL_INTEGER ? 2 : 5;
  q += (unsigned char)q[0] == ETF_SMALL_INTEGER ? 2 : 5;
  return cn__skip_fast(q);
}

/* Steps into the container c, or over any other term.  Returns 0, or -1
 * when memory ran out. */
static int enter(cn__walk *w, const char *c) {
  cn__frame *f;
  uint64_t n = 0;
  const char *p = c;
  int kind = CN__F_SEQ;

  switch ((unsigned char)c[0]) {
  case ETF_SMALL_TUPLE:
    n = (unsigned char)c[1];
    p = c + 2;
    break;
  case ETF_LARGE_TUPLE:
    n = cn__get32(c + 1);
    p = c + 5;
    break;
  case ETF_MAP:
    n = 2 * (uint64_t)cn__get32(c + 1);
    p = c + 5;
    kind = CN__F_MAP;
    break;
  case ETF_STRING:
    n = cn__get16(c + 1);
    kind = CN__F_LIST;
    break;
  case ETF_LIST:
    n = 1;
    kind = CN__F_LIST;
    break;
  case ETF_NEW_FUN:
    if (w->mode & CN__WALK_FUNS) {
      n = cn__get32(c + 1 + 25);
      p = n != 0 ? fun_free(c) : p;
    }
    break;
  default:
    break;
  }
  if (n == 0) {
    /* A string byte or the nil of a string lies outside the stream. */
    if (c == w->p)
      w->p = cn__skip_fast(c);
    return 0;
  }
  if ((f = cn__stack_push(&w->s)) == NULL)
    return -1;
  f->n = n;
  f->i = 0;
  f->kv = NULL;
  f->kind = (unsigned char)kind;
  f->key = (unsigned char)w->key;
  f->tail = 0;
  w->p = p;
  if (kind == CN__F_LIST) {
    cn__list_enter(&f->l, &w->p);
  } else if (kind == CN__F_MAP &&
             (w->mode & (CN__WALK_SORTED | CN__WALK_KEYS_FIRST))) {
    f->end = cn__map_pairs(p, n / 2, &f->kv, w->level);
    if (f->end == NULL) {
      w->s.n--;
      return -1;
    }
  }
  return 0;
}

int cn__walk_next(cn__walk *w, const char **x) {
  cn__frame *f;
  uint64_t i, half;

  if (w->x != NULL && enter(w, w->x) != 0) {
    w->err = CN_ENOMEM;
    return CN__W_DONE;
  }
  w->x = NULL;
  if ((f = cn__walk_top(w)) == NULL)
    return CN__W_DONE;
  w->key = f->key;
  if (f->kind == CN__F_LIST) {
    if (!f->tail) {
      int more = cn__list_next(&f->l, &w->p, x);
      f->i += (uint64_t)more;
      f->tail = (unsigned char)!more;
      w->x = *x;
      return more ? CN__W_TERM : CN__W_TAIL;
    }
  } else if (f->i < f->n) {
    i = f->i++;
    half = f->n / 2;
    if (f->kv == NULL)
      *x = w->p;
    else if (w->mode & CN__WALK_KEYS_FIRST)
      *x = i < half ? f->kv[i].k : f->kv[i - half].v;
    else
      *x = i % 2 == 0 ? f->kv[i / 2].k : f->kv[i / 2].v;
    if (f->kind == CN__F_MAP) {
      w->key |= (w->mode & CN__WALK_KEYS_FIRST) ? i < half : i % 2 == 0;
      w->p = *x; /* in key order the stream jumps about */
    }
    w->x = *x;
    return CN__W_TERM;
  }
  /* The container is done. */
  if (f->kv != NULL) {
    w->p = f->end;
    free(f->kv);
  }
  w->kind = f->kind;
  w->s.n--;
  return w->s.n != 0 ? CN__W_END : CN__W_DONE;
}

void cn__walk_free(cn__walk *w) {
  cn__frame *f;
  while ((f = cn__walk_top(w)) != NULL) {
    free(f->kv);
    w->s.n--;
  }
  cn__stack_free(&w->s);
}
