/* Not ei: ei has no views across encodings (atom code points, bignums). */
/* Small shared pieces of the term layer: atom names, UTF-8, and views of
 * numbers, identifiers and funs in any of their encodings.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

#define S(v)                                                                   \
  { (char)ETF_SMALL_INTEGER, (char)(v) }
#define S4(v) S(v), S((v) + 1), S((v) + 2), S((v) + 3)
#define S16(v) S4(v), S4((v) + 4), S4((v) + 8), S4((v) + 12)
#define S64(v) S16(v), S16((v) + 16), S16((v) + 32), S16((v) + 48)
const char cn__small_ints[256][2] = {S64(0), S64(64), S64(128), S64(192)};
#undef S64
#undef S16
#undef S4
#undef S

const char cn__nil[1] = {(char)ETF_NIL};

long cn__utf8_count(const unsigned char *s, size_t n) {
  size_t i = 0;
  long count = 0;
  unsigned any = 0;

  /* Most names are ASCII; one pass of ORs tells, without branches. */
  for (i = 0; i < n; i++)
    any |= s[i];
  if (any < 0x80)
    return (long)n;

  i = 0;
  while (i < n) {
    unsigned c = s[i];
    uint32_t cp;
    size_t k, len;

    if (c < 0x80) {
      i++;
      count++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return -1; /* continuation byte, C0/C1 overlong lead, or > F4 */
    }
    if (n - i < len)
      return -1;
    for (k = 1; k < len; k++) {
      unsigned cc = s[i + k];
      if ((cc & 0xC0) != 0x80)
        return -1;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return -1;
    i += len;
    count++;
  }
  return count;
}

uint32_t cn__atom_next(const cn__atom *a, size_t *i) {
  const unsigned char *s = a->s;
  uint32_t c = s[(*i)++];
  if (a->latin1 || c < 0x80)
    return c;
  if (c < 0xE0) {
    c = ((c & 0x1F) << 6) | (s[*i] & 0x3F);
    *i += 1;
  } else if (c < 0xF0) {
    c = ((c & 0x0F) << 12) | ((uint32_t)(s[*i] & 0x3F) << 6) |
        (s[*i + 1] & 0x3F);
    *i += 2;
  } else {
    c = ((c & 0x07) << 18) | ((uint32_t)(s[*i] & 0x3F) << 12) |
        ((uint32_t)(s[*i + 1] & 0x3F) << 6) | (s[*i + 2] & 0x3F);
    *i += 3;
  }
  return c;
}

/* True when a Latin-1 name is plain ASCII, so its bytes are also UTF-8. */
static int ascii_only(const unsigned char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] & 0x80)
      return 0;
  return 1;
}

int cn__atom_cmp(const cn__atom *a, const cn__atom *b) {
  size_t i = 0, j = 0;

  if (a->latin1 == b->latin1 ||
      (a->latin1 ? ascii_only(a->s, a->n) : ascii_only(b->s, b->n))) {
    size_t m = a->n < b->n ? a->n : b->n;
    int r = m ? memcmp(a->s, b->s, m) : 0;
    if (r != 0)
      return r;
    return a->n < b->n ? -1 : a->n > b->n;
  }
  while (i < a->n && j < b->n) {
    uint32_t x = cn__atom_next(a, &i), y = cn__atom_next(b, &j);
    if (x != y)
      return x < y ? -1 : 1;
  }
  if (i < a->n)
    return 1;
  return j < b->n ? -1 : 0;
}

bool cn__atom_eq(const cn__atom *a, const char *s, size_t n) {
  cn__atom b;
  if (!a->latin1 || ascii_only(a->s, a->n))
    return a->n == n && memcmp(a->s, s, n) == 0;
  b.s = (const unsigned char *)s;
  b.n = n;
  b.latin1 = 0;
  return cn__atom_cmp(a, &b) == 0;
}

size_t cn__atom_utf8_len(const cn__atom *a) {
  size_t i, n = a->n;
  if (!a->latin1)
    return n;
  for (i = 0; i < a->n; i++)
    n += a->s[i] >> 7; /* bytes >= 128 take two UTF-8 bytes */
  return n;
}

void cn__atom_utf8(const cn__atom *a, char *out) {
  size_t i;
  if (!a->latin1) {
    if (a->n)
      memcpy(out, a->s, a->n);
    return;
  }
  for (i = 0; i < a->n; i++)
    out += cn__utf8_put(a->s[i], out);
}

size_t cn__utf8_put(uint32_t c, char *out) {
  if (c < 0x80) {
    out[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    out[0] = (char)(0xC0 | c >> 6);
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    out[0] = (char)(0xE0 | c >> 12);
    out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | c >> 18);
  out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
  out[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

void cn__ident_view(const char *p, cn__ident *d) {
  unsigned char tag = (unsigned char)p[0];
  const char *q;

  d->id = 0;
  d->serial = 0;
  d->len = 0;
  d->words = NULL;
  switch (tag) {
  case ETF_PID:
  case ETF_NEW_PID:
    q = cn__atom_view(p + 1, &d->node);
    d->id = cn__get32(q);
    d->serial = cn__get32(q + 4);
    d->creation = tag == ETF_PID ? (unsigned char)q[8] : cn__get32(q + 8);
    break;
  case ETF_PORT:
    q = cn__atom_view(p + 1, &d->node);
    d->id = cn__get32(q);
    d->creation = (unsigned char)q[4];
    break;
  case ETF_NEW_PORT:
    q = cn__atom_view(p + 1, &d->node);
    d->id = cn__get32(q);
    d->creation = cn__get32(q + 4);
    break;
  case ETF_V4_PORT:
    q = cn__atom_view(p + 1, &d->node);
    d->id = cn__get64(q);
    d->creation = cn__get32(q + 8);
    break;
  case ETF_REFERENCE:
    q = cn__atom_view(p + 1, &d->node);
    d->len = 1;
    d->words = q;
    d->creation = (unsigned char)q[4];
    break;
  case ETF_NEW_REFERENCE:
    d->len = cn__get16(p + 1);
    q = cn__atom_view(p + 3, &d->node);
    d->creation = (unsigned char)q[0];
    d->words = q + 1;
    break;
  default: /* ETF_NEWER_REFERENCE */
    d->len = cn__get16(p + 1);
    q = cn__atom_view(p + 3, &d->node);
    d->creation = cn__get32(q);
    d->words = q + 4;
    break;
  }
}

void cn__fun_view(const char *p, cn__fun *f) {
  const char *q;

  f->export = (unsigned char)p[0] == ETF_EXPORT;
  if (f->export) {
    q = cn__atom_view(p + 1, &f->module);
    q = cn__atom_view(q, &f->name);
    f->arity = (unsigned char)q[1];
    f->index = f->old_uniq = f->numfree = 0;
    f->free = q + 2;
    return;
  }
  f->index = cn__get32(p + 1 + 21);
  f->numfree = cn__get32(p + 1 + 25);
  q = cn__atom_view(p + 1 + 29, &f->module);
  q += (unsigned char)q[0] == ETF_SMALL_INTEGER ? 2 : 5; /* OldIndex */
  f->old_uniq = (unsigned char)q[0] == ETF_SMALL_INTEGER ? (unsigned char)q[1]
                                                         : cn__get32(q + 1);
  q += (unsigned char)q[0] == ETF_SMALL_INTEGER ? 2 : 5;
  f->free = cn__skip_fast(q); /* past the creator pid */
  f->name = f->module;
  f->arity = 0;
}

int cn__float_value(const char *p, double *out) {
  if ((unsigned char)p[0] == ETF_NEW_FLOAT) {
    uint64_t bits = cn__get64(p + 1);
    double d;
    memcpy(&d, &bits, sizeof d);
    *out = d;
    return 0;
  }
  return cn__parse_float_text(p + 1, out);
}

const char *cn__int_view(const char *p, cn__int *v) {
  unsigned char tag = (unsigned char)p[0];
  uint32_t m;
  size_t n;

  v->neg = 0;
  if (tag == ETF_SMALL_INTEGER) {
    v->buf[0] = (unsigned char)p[1];
    v->mag = v->buf;
    v->n = v->buf[0] != 0;
    return p + 2;
  }
  if (tag == ETF_INTEGER) {
    int32_t s = (int32_t)cn__get32(p + 1);
    m = s < 0 ? (uint32_t)0 - (uint32_t)s : (uint32_t)s;
    v->neg = s < 0;
    v->buf[0] = (unsigned char)m;
    v->buf[1] = (unsigned char)(m >> 8);
    v->buf[2] = (unsigned char)(m >> 16);
    v->buf[3] = (unsigned char)(m >> 24);
    v->mag = v->buf;
    n = 4;
    while (n > 0 && v->buf[n - 1] == 0)
      n--;
    v->n = n;
    return p + 5;
  }
  if (tag == ETF_SMALL_BIG) {
    n = (unsigned char)p[1];
    v->neg = p[2] != 0;
    v->mag = (const unsigned char *)p + 3;
    p += 3 + n;
  } else {
    n = cn__get32(p + 1);
    v->neg = p[5] != 0;
    v->mag = (const unsigned char *)p + 6;
    p += 6 + n;
  }
  /* Bignums from foreign encoders may carry high zero bytes. */
  while (n > 0 && v->mag[n - 1] == 0)
    n--;
  v->n = n;
  if (n == 0)
    v->neg = 0;
  return p;
}

const unsigned char cn__class_tab[256] = {
    [ETF_SMALL_INTEGER] = CLS_NUMBER,
    [ETF_INTEGER] = CLS_NUMBER,
    [ETF_SMALL_BIG] = CLS_NUMBER,
    [ETF_LARGE_BIG] = CLS_NUMBER,
    [ETF_FLOAT] = CLS_NUMBER,
    [ETF_NEW_FLOAT] = CLS_NUMBER,
    [ETF_ATOM] = CLS_ATOM,
    [ETF_ATOM_UTF8] = CLS_ATOM,
    [ETF_SMALL_ATOM] = CLS_ATOM,
    [ETF_SMALL_ATOM_UTF8] = CLS_ATOM,
    [ETF_REFERENCE] = CLS_REF,
    [ETF_NEW_REFERENCE] = CLS_REF,
    [ETF_NEWER_REFERENCE] = CLS_REF,
    [ETF_NEW_FUN] = CLS_FUN,
    [ETF_EXPORT] = CLS_FUN,
    [ETF_PORT] = CLS_PORT,
    [ETF_NEW_PORT] = CLS_PORT,
    [ETF_V4_PORT] = CLS_PORT,
    [ETF_PID] = CLS_PID,
    [ETF_NEW_PID] = CLS_PID,
    [ETF_SMALL_TUPLE] = CLS_TUPLE,
    [ETF_LARGE_TUPLE] = CLS_TUPLE,
    [ETF_MAP] = CLS_MAP,
    [ETF_NIL] = CLS_NIL,
    [ETF_STRING] = CLS_LIST,
    [ETF_LIST] = CLS_LIST,
    [ETF_BINARY] = CLS_BITS,
    [ETF_BIT_BINARY] = CLS_BITS,
};
