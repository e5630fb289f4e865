/* Not ei: ei has no views across encodings (atom code points, bignums). */
/* Small shared pieces of the term layer: atom names, UTF-8, and views of
 * numbers, identifiers and funs in any of their encodings.
 */
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

/* Decodes the UTF-8 character at s[*i] and advances *i past it; -1 for
 * what erts rejects: a stray or C0/C1 lead byte, a truncated character,
 * overlong forms, surrogates and code points above U+10FFFF. */
static inline long utf8_next(const unsigned char *s, size_t n, size_t *i) {
  unsigned c = s[(*i)++];
  size_t len = c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
  uint32_t cp = c & (0x7Fu >> len);

  if (c < 0x80)
    return c;
  if (len == 0 || n - *i < len - 1)
    return -1;
  while (--len > 0) {
    unsigned cc = s[(*i)++];
    if ((cc & 0xC0) != 0x80)
      return -1;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((c >= 0xE0 && cp < 0x800) || (c >= 0xF0 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return -1;
  return cp;
}

long cn__utf8_count(const unsigned char *s, size_t n) {
  size_t i = 0;
  long count = 0;

  if (cn__ascii_only(s, n))
    return (long)n;
  for (; i < n; count++)
    if (utf8_next(s, n, &i) < 0)
      return -1;
  return count;
}

uint32_t cn__atom_next(const cn__atom *a, size_t *i) {
  if (a->latin1)
    return a->s[(*i)++];
  return (uint32_t)utf8_next(a->s, a->n, i);
}

/* A Latin-1 name against a UTF-8 one: both as UTF-8, whose byte order is
 * code point order. */
static int mixed_cmp(const cn__atom *a, const cn__atom *b) {
  char ta[2 * 255], tb[2 * 255];
  cn__atom x = {.latin1 = 0}, y = {.latin1 = 0};
  x.s = (const unsigned char *)cn__atom_text(a, ta, &x.n);
  y.s = (const unsigned char *)cn__atom_text(b, tb, &y.n);
  return cn__atom_cmp(&x, &y);
}

int cn__atom_cmp(const cn__atom *a, const cn__atom *b) {
  size_t m = a->n < b->n ? a->n : b->n;
  int r;

  if (a->latin1 != b->latin1 &&
      !(a->latin1 ? cn__ascii_only(a->s, a->n) : cn__ascii_only(b->s, b->n)))
    return mixed_cmp(a, b); /* ASCII reads the same in both */
  if (m != 0 && (r = memcmp(a->s, b->s, m)) != 0)
    return r;
  return a->n < b->n ? -1 : a->n > b->n;
}

bool cn__atom_eq(const cn__atom *a, const char *s, size_t n) {
  cn__atom b;
  if (!a->latin1 || cn__ascii_only(a->s, a->n))
    return a->n == n && memcmp(a->s, s, n) == 0;
  b.s = (const unsigned char *)s;
  b.n = n;
  b.latin1 = 0;
  return cn__atom_cmp(a, &b) == 0;
}

const char *cn__latin1_text(const cn__atom *a, char *tmp, size_t *n) {
  size_t i;
  if (cn__ascii_only(a->s, a->n)) {
    *n = a->n;
    return (const char *)a->s;
  }
  for (i = *n = 0; i < a->n && i < 255; i++)
    *n += cn__utf8_put(a->s[i], tmp + *n);
  return tmp;
}

size_t cn__utf8_put(uint32_t c, char *out) {
  size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4, k;
  if (n == 1) {
    out[0] = (char)c;
    return 1;
  }
  for (k = n; --k > 0; c >>= 6)
    out[k] = (char)(0x80 | (c & 0x3F));
  out[0] = (char)(((0xFF00u >> n) & 0xFF) | c);
  return n;
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
  size_t n, w;

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
    v->mag = v->buf;
    for (n = 0; m != 0; m >>= 8)
      v->buf[n++] = (unsigned char)m;
    v->n = n;
    return p + 5;
  }
  /* A bignum: Arity (1 or 4 bytes), Sign, then the digits, which foreign
   * encoders may pad with high zero bytes. */
  w = tag == ETF_SMALL_BIG ? 1 : 4;
  n = w == 1 ? (unsigned char)p[1] : cn__get32(p + 1);
  v->mag = (const unsigned char *)p + 2 + w;
  for (v->n = n; v->n > 0 && v->mag[v->n - 1] == 0;)
    v->n--;
  v->neg = v->n != 0 && p[1 + w] != 0;
  return p + 2 + w + n;
}

#define X(c, k, h, l, t, m)                                                    \
  { .cls = CLS_##c, .kind = SH_##k, .hdr = h, .lenw = l, .tail = t, .mul = m }
const cn__shape cn__shapes[256] = {
    /* tag = X(class, kind, hdr, lenw, tail, mul) */
    [ETF_SMALL_INTEGER] = X(NUMBER, BYTES, 2, 0, 0, 0),
    [ETF_INTEGER] = X(NUMBER, BYTES, 5, 0, 0, 0),
    [ETF_SMALL_BIG] = X(NUMBER, BYTES, 3, 1, 0, 1),
    [ETF_LARGE_BIG] = X(NUMBER, BYTES, 6, 4, 0, 1),
    [ETF_FLOAT] = X(NUMBER, BYTES, 1 + ETF_FLOAT_TEXT, 0, 0, 0),
    [ETF_NEW_FLOAT] = X(NUMBER, BYTES, 9, 0, 0, 0),
    [ETF_ATOM] = X(ATOM, BYTES, 3, 2, 0, 1),
    [ETF_ATOM_UTF8] = X(ATOM, BYTES, 3, 2, 0, 1),
    [ETF_SMALL_ATOM] = X(ATOM, BYTES, 2, 1, 0, 1),
    [ETF_SMALL_ATOM_UTF8] = X(ATOM, BYTES, 2, 1, 0, 1),
    [ETF_REFERENCE] = X(REF, IDENT, 1, 0, 5, 0),
    [ETF_NEW_REFERENCE] = X(REF, IDENT, 3, 2, 1, 4),
    [ETF_NEWER_REFERENCE] = X(REF, IDENT, 3, 2, 4, 4),
    [ETF_NEW_FUN] = X(FUN, BYTES, 1, 4, 0, 1), /* Size: all after the tag */
    [ETF_EXPORT] = X(FUN, SEQ, 1, 0, 3, 0),
    [ETF_PORT] = X(PORT, IDENT, 1, 0, 5, 0),
    [ETF_NEW_PORT] = X(PORT, IDENT, 1, 0, 8, 0),
    [ETF_V4_PORT] = X(PORT, IDENT, 1, 0, 12, 0),
    [ETF_PID] = X(PID, IDENT, 1, 0, 9, 0),
    [ETF_NEW_PID] = X(PID, IDENT, 1, 0, 12, 0),
    [ETF_SMALL_TUPLE] = X(TUPLE, SEQ, 2, 1, 0, 1),
    [ETF_LARGE_TUPLE] = X(TUPLE, SEQ, 5, 4, 0, 1),
    [ETF_MAP] = X(MAP, SEQ, 5, 4, 0, 2),
    [ETF_NIL] = X(NIL, BYTES, 1, 0, 0, 0),
    [ETF_STRING] = X(LIST, BYTES, 3, 2, 0, 1),
    [ETF_LIST] = X(LIST, SEQ, 5, 4, 1, 1), /* the elements, then the tail */
    [ETF_BINARY] = X(BITS, BYTES, 5, 4, 0, 1),
    [ETF_BIT_BINARY] = X(BITS, BYTES, 6, 4, 0, 1),
};
#undef X
