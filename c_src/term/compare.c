/* Term order, exact equality and hashing.
 *
 * A term's encoding is its pre-order walk, so two terms compare by walking
 * both byte streams in lockstep, with an explicit stack of open containers
 * (never the C stack: terms nest as deep as the validator allows).  The
 * stream positions are two pointers that only move forward, except inside
 * maps, whose pairs are visited in key order.
 *
 * Encodings do not matter: an atom may come in four forms, a list may be a
 * STRING_EXT or be split over several LIST_EXT headers ([1|[2]]), an
 * integer may be a non-canonical bignum.  Lists are read through a cursor
 * that steps from one segment into the next.
 *
 * Map keys are sorted with this same comparison, which is the one place
 * where it calls itself; see KEY_NESTING_CAP.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"
#include "util/siphash.h"

/* Map keys nested deeper than this inside other map keys are ordered by
 * their bytes instead (deterministic, but encoding-dependent).  Each level
 * costs one C stack frame of compare(); erts itself would have refused
 * such a term long before, and the validator's default depth does too. */
#define KEY_NESTING_CAP 64

#define INLINE_FRAMES 8

/* ---- Scalars ------------------------------------------------------------ */

static int sgn(const cn__int *v) { return v->n == 0 ? 0 : v->neg ? -1 : 1; }

static int mag_cmp(const cn__int *x, const cn__int *y) {
  size_t i;
  if (x->n != y->n)
    return x->n < y->n ? -1 : 1;
  for (i = x->n; i-- > 0;)
    if (x->mag[i] != y->mag[i])
      return x->mag[i] < y->mag[i] ? -1 : 1;
  return 0;
}

static int int_cmp(const cn__int *x, const cn__int *y) {
  int sx = sgn(x), sy = sgn(y), m;
  if (sx != sy)
    return sx < sy ? -1 : 1;
  m = mag_cmp(x, y);
  return sx < 0 ? -m : m;
}

/* Compares |x| with ad, a positive finite double, exactly. */
static int mag_cmp_double(const cn__int *x, double ad) {
  int e;
  double f = frexp(ad, &e);
  uint64_t m = (uint64_t)ldexp(f, 53); /* ad == m * 2^(e - 53) */
  int ex = e - 53;

  if (ex < 0) {
    int sh = -ex;
    uint64_t q = sh >= 64 ? 0 : m >> sh;
    int frac = sh >= 64 ? m != 0 : (m & (((uint64_t)1 << sh) - 1)) != 0;
    uint64_t xv = 0;
    size_t i;
    if (x->n > 8)
      return 1;
    for (i = x->n; i-- > 0;)
      xv = (xv << 8) | x->mag[i];
    if (xv != q)
      return xv < q ? -1 : 1;
    return frac ? -1 : 0;
  } else {
    /* ad is the integer m << ex: compare bit lengths, then bytes. */
    unsigned char d[8 + 128 + 8];
    size_t xbits, dbits, i, nd;
    unsigned top;
    uint64_t v;

    if (x->n == 0)
      return -1;
    top = x->mag[x->n - 1];
    xbits = (x->n - 1) * 8;
    while (top) {
      xbits++;
      top >>= 1;
    }
    dbits = 53 + (size_t)ex;
    if (xbits != dbits)
      return xbits < dbits ? -1 : 1;
    memset(d, 0, sizeof d);
    v = m << (ex % 8); /* at most 60 bits */
    for (i = 0; i < 8; i++)
      d[(size_t)ex / 8 + i] = (unsigned char)(v >> (8 * i));
    nd = (dbits + 7) / 8; /* == x->n */
    for (i = nd; i-- > 0;)
      if (x->mag[i] != d[i])
        return x->mag[i] < d[i] ? -1 : 1;
    return 0;
  }
}

/* Sign of x - d, exactly; 0 when the values are equal. */
static int int_double_cmp(const cn__int *x, double d) {
  int sx = sgn(x), sd = d < 0 ? -1 : d > 0 ? 1 : 0, m;
  if (sx != sd)
    return sx < sd ? -1 : 1;
  if (sx == 0)
    return 0;
  m = mag_cmp_double(x, fabs(d));
  return sx < 0 ? -m : m;
}

static int is_float_tag(const char *p) {
  unsigned char t = (unsigned char)p[0];
  return t == ETF_NEW_FLOAT || t == ETF_FLOAT;
}

static double float_of(const char *p) {
  double d = 0;
  cn__float_value(p, &d);
  return d;
}

/* Numbers: by value; an integer and a float of equal value order the
 * integer first (the exact order, which =:= agrees with).  In map key
 * order (keys), erts puts every integer before every float. */
static int num_cmp(const char *a, const char *b, int keys) {
  int fa = is_float_tag(a), fb = is_float_tag(b), r;
  cn__int x, y;

  if (keys && fa != fb)
    return fa ? 1 : -1;
  if (fa && fb) {
    double da = float_of(a), db = float_of(b);
    return da < db ? -1 : da > db; /* 0.0 and -0.0 are equal in OTP 25 */
  }
  if (!fa && !fb) {
    cn__int_view(a, &x);
    cn__int_view(b, &y);
    return int_cmp(&x, &y);
  }
  if (fb) {
    cn__int_view(a, &x);
    r = int_double_cmp(&x, float_of(b));
    return r != 0 ? r : -1;
  }
  cn__int_view(b, &y);
  r = -int_double_cmp(&y, float_of(a));
  return r != 0 ? r : 1;
}

static int atom_term_cmp(const char *a, const char *b) {
  cn__atom x, y;
  cn__atom_view(a, &x);
  cn__atom_view(b, &y);
  return cn__atom_cmp(&x, &y);
}

static int u64_cmp(uint64_t a, uint64_t b) { return a < b ? -1 : a > b; }

/* Pids, ports and references, decoded without interning their node. */
typedef struct ident {
  cn__atom node;
  uint32_t creation;
  uint64_t id;       /* pid number, port number */
  uint32_t serial;   /* pid serial */
  uint32_t len;      /* reference words */
  const char *words; /* reference words, big-endian, lowest first */
} ident;

static void ident_view(const char *p, ident *d) {
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

static uint32_t ref_word(const ident *d, uint32_t i) {
  return i < d->len ? cn__get32(d->words + 4 * (size_t)i) : 0;
}

static int node_cmp(const ident *a, const ident *b) {
  int r = cn__atom_cmp(&a->node, &b->node);
  return r != 0 ? r : u64_cmp(a->creation, b->creation);
}

/* erts: pids order by serial and number first, then by node; ports and
 * references by node first.  References of different lengths compare as
 * if the shorter had zero high words. */
static int ident_cmp(int cls, const char *a, const char *b) {
  ident x, y;
  uint32_t i;
  int r;

  ident_view(a, &x);
  ident_view(b, &y);
  if (cls == CLS_PID) {
    if ((r = u64_cmp(x.serial, y.serial)) != 0 ||
        (r = u64_cmp(x.id, y.id)) != 0)
      return r;
    return node_cmp(&x, &y);
  }
  if ((r = node_cmp(&x, &y)) != 0)
    return r;
  if (cls == CLS_PORT)
    return u64_cmp(x.id, y.id);
  for (i = x.len > y.len ? x.len : y.len; i-- > 0;)
    if ((r = u64_cmp(ref_word(&x, i), ref_word(&y, i))) != 0)
      return r;
  return 0;
}

/* A NEW_FUN_EXT's identity, and where its free variables start. */
typedef struct funv {
  cn__atom module;
  uint32_t index;
  uint32_t old_uniq;
  uint32_t numfree;
  const char *free; /* first free variable */
} funv;

static uint32_t small_int_value(const char *p, const char **next) {
  if ((unsigned char)p[0] == ETF_SMALL_INTEGER) {
    *next = p + 2;
    return (unsigned char)p[1];
  }
  *next = p + 5;
  return cn__get32(p + 1);
}

static void fun_view(const char *p, funv *f) {
  const char *q;
  f->index = cn__get32(p + 1 + 21);
  f->numfree = cn__get32(p + 1 + 25);
  q = cn__atom_view(p + 1 + 29, &f->module);
  small_int_value(q, &q); /* OldIndex */
  f->old_uniq = small_int_value(q, &q);
  f->free = cn__skip_fast(q); /* past the creator pid */
}

/* Compares two funs up to their free variables.  Local funs order before
 * exports (erts, OTP 25).  Returns the order, and for two local funs with
 * equal headers *nfree and the free-variable positions. */
static int fun_cmp(const char *a, const char *b, uint32_t *nfree,
                   const char **fa, const char **fb) {
  int ea = (unsigned char)a[0] == ETF_EXPORT;
  int eb = (unsigned char)b[0] == ETF_EXPORT;
  int r;

  *nfree = 0;
  if (ea != eb)
    return ea ? 1 : -1;
  if (ea) {
    cn__atom m1, f1, m2, f2;
    const char *q1 = cn__atom_view(a + 1, &m1);
    const char *q2 = cn__atom_view(b + 1, &m2);
    q1 = cn__atom_view(q1, &f1);
    q2 = cn__atom_view(q2, &f2);
    if ((r = cn__atom_cmp(&m1, &m2)) != 0 || (r = cn__atom_cmp(&f1, &f2)))
      return r;
    return u64_cmp((unsigned char)q1[1], (unsigned char)q2[1]);
  } else {
    funv x, y;
    fun_view(a, &x);
    fun_view(b, &y);
    if ((r = cn__atom_cmp(&x.module, &y.module)) != 0 ||
        (r = u64_cmp(x.index, y.index)) != 0 ||
        (r = u64_cmp(x.old_uniq, y.old_uniq)) != 0 ||
        (r = u64_cmp(x.numfree, y.numfree)) != 0)
      return r;
    *nfree = x.numfree;
    *fa = x.free;
    *fb = y.free;
    return 0;
  }
}

/* A binary or bitstring: bytes and the bits used in the last byte. */
static const unsigned char *bits_view(const char *p, size_t *n,
                                      unsigned *last) {
  *n = cn__get32(p + 1);
  if ((unsigned char)p[0] == ETF_BINARY) {
    *last = 8;
    return (const unsigned char *)p + 5;
  }
  *last = (unsigned char)p[5];
  return (const unsigned char *)p + 6;
}

static int bits_cmp(const char *a, const char *b) {
  size_t na, nb, ta, tb, m, full;
  unsigned la, lb, rem;
  const unsigned char *x = bits_view(a, &na, &la);
  const unsigned char *y = bits_view(b, &nb, &lb);
  int r;

  ta = na ? (na - 1) * 8 + la : 0;
  tb = nb ? (nb - 1) * 8 + lb : 0;
  m = ta < tb ? ta : tb;
  full = m / 8;
  if (full != 0 && (r = memcmp(x, y, full)) != 0)
    return r;
  rem = (unsigned)(m % 8);
  if (rem != 0) {
    unsigned mask = (0xFFu << (8 - rem)) & 0xFF;
    unsigned cx = x[full] & mask, cy = y[full] & mask;
    if (cx != cy)
      return cx < cy ? -1 : 1;
  }
  return u64_cmp(ta, tb);
}

/* ---- Lists ------------------------------------------------------------- */

/* One side's position in a list, across segments: the elements of a
 * LIST_EXT, whose tail may be another LIST_EXT or a STRING_EXT, or the
 * bytes of a STRING_EXT (whose tail is an implicit nil). */
typedef struct lside {
  uint64_t left; /* elements left in this segment */
  int str;       /* this segment is STRING_EXT bytes */
} lside;

/* Enters the list term at *pp (LIST_EXT or non-empty STRING_EXT). */
static void list_enter(lside *s, const char **pp) {
  const char *p = *pp;
  if ((unsigned char)p[0] == ETF_STRING) {
    s->left = cn__get16(p + 1);
    s->str = 1;
    *pp = p + 3;
  } else {
    s->left = cn__get32(p + 1);
    s->str = 0;
    *pp = p + 5;
  }
}

/* Steps to the next element.  Returns 1 with *x the element, or 0 with *x
 * the tail.  *virt is 1 when *x is not at *pp in the stream (a STRING_EXT
 * byte, which has already been consumed, or the implicit nil). */
static int list_next(lside *s, const char **pp, const char **x, int *virt) {
  for (;;) {
    if (s->left > 0) {
      s->left--;
      if (s->str) {
        *x = cn__small_ints[(unsigned char)**pp];
        *virt = 1;
        (*pp)++;
      } else {
        *x = *pp;
        *virt = 0;
      }
      return 1;
    }
    if (s->str) {
      *x = cn__nil;
      *virt = 1;
      return 0;
    }
    if ((unsigned char)(*pp)[0] == ETF_LIST ||
        ((unsigned char)(*pp)[0] == ETF_STRING && cn__get16(*pp + 1) != 0)) {
      list_enter(s, pp);
      continue;
    }
    *x = *pp;
    *virt = 0;
    return 0;
  }
}

/* ---- Map key order ---------------------------------------------------- */

typedef struct kv {
  const char *k, *v;
} kv;

static int bytes_cmp(const char *a, const char *b) {
  const char *ea = cn__skip_fast(a), *eb = cn__skip_fast(b);
  size_t la = (size_t)(ea - a), lb = (size_t)(eb - b);
  int r = memcmp(a, b, la < lb ? la : lb);
  return r != 0 ? r : u64_cmp(la, lb);
}

/* Pairs order by key; a key that repeats (erts never sends one, but the
 * validator does not look) orders by value, so that the order of the
 * pairs in the encoding never shows. */
static int pair_cmp(const kv *x, const kv *y, int level) {
  int r;
  if (level > KEY_NESTING_CAP) {
    /* Too deep to recurse again: fall back to a plain byte order. */
    r = bytes_cmp(x->k, y->k);
    return r != 0 ? r : bytes_cmp(x->v, y->v);
  }
  r = cn__compare(x->k, y->k, level, 1);
  return r != 0 ? r : cn__compare(x->v, y->v, level, 0);
}

static void sort_pairs(kv *v, kv *tmp, size_t n, int level) {
  size_t i, j, k, mid;

  if (n <= 8) {
    for (i = 1; i < n; i++) {
      kv x = v[i];
      for (j = i; j > 0 && pair_cmp(&v[j - 1], &x, level) > 0; j--)
        v[j] = v[j - 1];
      v[j] = x;
    }
    return;
  }
  mid = n / 2;
  sort_pairs(v, tmp, mid, level);
  sort_pairs(v + mid, tmp, n - mid, level);
  if (pair_cmp(&v[mid - 1], &v[mid], level) <= 0)
    return; /* already in order, as term_to_binary writes small maps */
  memcpy(tmp, v, mid * sizeof *v);
  i = 0;
  j = mid;
  k = 0;
  while (i < mid && j < n) {
    if (pair_cmp(&v[j], &tmp[i], level) < 0)
      v[k++] = v[j++];
    else
      v[k++] = tmp[i++];
  }
  while (i < mid)
    v[k++] = tmp[i++];
}

/* Collects and sorts the pairs of a map whose first key is at p.  Returns
 * the first byte after the map, or NULL when memory runs out. */
static const char *map_pairs(const char *p, uint64_t n, kv **out, int level) {
  kv *v;
  uint64_t i;

  if (n > SIZE_MAX / (2 * sizeof(kv)))
    return NULL;
  v = malloc((size_t)n * 2 * sizeof *v); /* pairs, then merge space */
  if (v == NULL)
    return NULL;
  for (i = 0; i < n; i++) {
    v[i].k = p;
    v[i].v = p = cn__skip_fast(p);
    p = cn__skip_fast(p);
  }
  sort_pairs(v, v + n, (size_t)n, level + 1);
  *out = v;
  return p;
}

const char *cn__map_sorted(const char *p, uint64_t n, const char **keys,
                           const char **vals, int level) {
  kv *v;
  uint64_t i;
  const char *end = map_pairs(p, n, &v, level);
  if (end == NULL) {
    /* Out of memory: hand the pairs out in encoded order. */
    for (i = 0; i < n; i++) {
      keys[i] = p;
      vals[i] = p = cn__skip_fast(p);
      p = cn__skip_fast(p);
    }
    return p;
  }
  for (i = 0; i < n; i++) {
    keys[i] = v[i].k;
    vals[i] = v[i].v;
  }
  free(v);
  return end;
}

/* ---- The comparison walk ------------------------------------------------ */

enum { F_SEQ, F_LIST, F_MAP };

typedef struct cframe {
  int kind;
  int keys;                /* items compare in map key order */
  uint64_t left;           /* F_SEQ: elements left; F_MAP: items left */
  uint64_t n;              /* F_MAP: pairs */
  lside a, b;              /* F_LIST: both cursors */
  kv *ma, *mb;             /* F_MAP: sorted pairs */
  const char *enda, *endb; /* F_MAP: first byte after each map */
} cframe;

typedef struct cstack {
  cframe *f;
  size_t n, cap;
  cframe inl[INLINE_FRAMES];
} cstack;

static cframe *cpush(cstack *s, int kind, int keys) {
  cframe *f;
  if (s->n == s->cap) {
    size_t cap = s->cap * 2;
    if (s->f == s->inl) {
      f = malloc(cap * sizeof *f);
      if (f != NULL)
        memcpy(f, s->inl, sizeof s->inl);
    } else {
      f = realloc(s->f, cap * sizeof *f);
    }
    if (f == NULL)
      return NULL;
    s->f = f;
    s->cap = cap;
  }
  f = &s->f[s->n++];
  f->kind = kind;
  f->keys = keys;
  f->ma = f->mb = NULL;
  return f;
}

static void cpop(cstack *s) {
  cframe *f = &s->f[--s->n];
  if (f->kind == F_MAP) {
    free(f->ma);
    free(f->mb);
  }
}

/* Out of memory in the middle of a walk leaves no good answer; the bytes
 * from the current positions at least give a stable one. */
#define oom_order bytes_cmp

int cn__compare(const char *a, const char *b, int level, int keys) {
  cstack s;
  cframe *f;
  int km = keys;               /* the pair being compared is in map key order */
  const char *pa = a, *pb = b; /* stream positions */
  const char *xa = a, *xb = b; /* the pair being compared */
  int va = 0, vb = 0;          /* xa / xb are not at pa / pb */
  int r = 0;

  s.f = s.inl;
  s.n = 0;
  s.cap = INLINE_FRAMES;

  for (;;) {
    int ca = cn__class(xa), cb = cn__class(xb);
    int scalar = 1;

    if (ca != cb) {
      r = ca < cb ? -1 : 1;
      goto out;
    }
    switch (ca) {
    case CLS_NUMBER:
      r = num_cmp(xa, xb, km);
      break;
    case CLS_ATOM:
      r = atom_term_cmp(xa, xb);
      break;
    case CLS_REF:
    case CLS_PORT:
    case CLS_PID:
      r = ident_cmp(ca, xa, xb);
      break;
    case CLS_NIL:
      r = 0;
      break;
    case CLS_BITS:
      r = bits_cmp(xa, xb);
      break;
    case CLS_FUN: {
      uint32_t nfree;
      const char *fa = NULL, *fb = NULL;
      r = fun_cmp(xa, xb, &nfree, &fa, &fb);
      if (r == 0 && nfree != 0) {
        if ((f = cpush(&s, F_SEQ, km)) == NULL)
          goto oom;
        f->left = nfree;
        pa = fa;
        pb = fb;
        scalar = 0;
      }
      break;
    }
    case CLS_TUPLE: {
      int sa = (unsigned char)xa[0] == ETF_SMALL_TUPLE;
      int sb = (unsigned char)xb[0] == ETF_SMALL_TUPLE;
      uint64_t na = sa ? (unsigned char)xa[1] : cn__get32(xa + 1);
      uint64_t nb = sb ? (unsigned char)xb[1] : cn__get32(xb + 1);
      r = u64_cmp(na, nb);
      if (r == 0 && na != 0) {
        if ((f = cpush(&s, F_SEQ, km)) == NULL)
          goto oom;
        f->left = na;
        pa = xa + (sa ? 2 : 5);
        pb = xb + (sb ? 2 : 5);
        scalar = 0;
      }
      break;
    }
    case CLS_MAP: {
      uint64_t na = cn__get32(xa + 1), nb = cn__get32(xb + 1);
      r = u64_cmp(na, nb);
      if (r == 0 && na != 0) {
        if ((f = cpush(&s, F_MAP, km)) == NULL)
          goto oom;
        f->n = na;
        f->left = 2 * na;
        f->enda = map_pairs(xa + 5, na, &f->ma, level);
        f->endb = map_pairs(xb + 5, nb, &f->mb, level);
        if (f->enda == NULL || f->endb == NULL) {
          r = oom_order(xa, xb);
          goto out;
        }
        scalar = 0;
      }
      break;
    }
    case CLS_LIST:
      if ((f = cpush(&s, F_LIST, km)) == NULL)
        goto oom;
      pa = xa;
      pb = xb;
      list_enter(&f->a, &pa);
      list_enter(&f->b, &pb);
      scalar = 0;
      break;
    default:
      r = 0; /* not a term: only for unvalidated input */
      break;
    }
    if (r != 0)
      goto out;
    if (scalar) {
      if (!va)
        pa = cn__skip_fast(xa);
      if (!vb)
        pb = cn__skip_fast(xb);
    }

    /* Find the next pair to compare. */
    for (;;) {
      if (s.n == 0)
        goto out;
      f = &s.f[s.n - 1];
      if (f->kind == F_SEQ) {
        if (f->left == 0) {
          cpop(&s);
          continue;
        }
        f->left--;
        xa = pa;
        xb = pb;
        va = vb = 0;
        km = f->keys;
        break;
      }
      if (f->kind == F_MAP) {
        uint64_t i;
        if (f->left == 0) {
          pa = f->enda;
          pb = f->endb;
          cpop(&s);
          continue;
        }
        /* All keys first, then the values in key order (erts). */
        i = 2 * f->n - f->left--;
        if (i < f->n) {
          xa = f->ma[i].k;
          xb = f->mb[i].k;
          km = 1; /* keys compare in map key order */
        } else {
          xa = f->ma[i - f->n].v;
          xb = f->mb[i - f->n].v;
          km = f->keys;
        }
        pa = xa;
        pb = xb;
        va = vb = 0;
        break;
      } else {
        int ea = list_next(&f->a, &pa, &xa, &va);
        int eb = list_next(&f->b, &pb, &xb, &vb);
        km = f->keys;
        if (ea && eb)
          break;
        if (ea != eb) {
          /* One list ended: its tail (not a list) meets a list. */
          if (!ea)
            r = cn__class(xa) < CLS_LIST ? -1 : 1;
          else
            r = cn__class(xb) < CLS_LIST ? 1 : -1;
          goto out;
        }
        cpop(&s); /* both ended: compare the tails */
        break;
      }
    }
  }

oom:
  r = oom_order(xa, xb);
out:
  while (s.n > 0)
    cpop(&s);
  if (s.f != s.inl)
    free(s.f);
  return r;
}

int cn_term_compare(cn_term a, cn_term b) {
  if (a.len == 0 || b.len == 0)
    return a.len != 0 ? 1 : b.len != 0 ? -1 : 0;
  return cn__compare(a.ptr, b.ptr, 0, 0);
}

bool cn_term_equal(cn_term a, cn_term b) {
  if (a.len == 0 || b.len == 0)
    return a.len == b.len;
  /* One encoding of one value is by far the common case. */
  if (a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0)
    return true;
  return cn__compare(a.ptr, b.ptr, 0, 0) == 0;
}

/* ---- Hashing ------------------------------------------------------------ */

/* A term's canonical content is hashed, never its encoding.  The walk
 * below turns the term into a stream of 64-bit words, the same for every
 * encoding of one value: a marker for each item's type, then its content
 * (an atom's text, an integer's sign and magnitude, a tuple's arity...).
 * The stream feeds SipHash-2-4 under a key, so that a peer who does not
 * know the key cannot choose terms that collide.  Byte strings go in as
 * their length, then their bytes eight at a time, little-endian, the last
 * word padded with zeros; so the stream, and a hash under a given key, do
 * not depend on the machine's byte order.
 *
 * The pairs of a map are each hashed apart, under the same key, and their
 * hashes summed, so that the order of the pairs does not matter.  Each
 * pair's hash is as unpredictable as a whole term's, and so is their sum. */
enum {
  H_INT = 1,
  H_FLOAT,
  H_ATOM,
  H_REF,
  H_FUN,
  H_EXPORT,
  H_PORT,
  H_PID,
  H_TUPLE,
  H_MAP,
  H_NIL,
  H_LIST,
  H_TAIL,
  H_BITS
};

static void hbytes(cn__sip *h, const unsigned char *s, size_t n) {
  uint64_t w = 0;
  cn__sip_word(h, n);
  for (; n >= 8; s += 8, n -= 8)
    cn__sip_word(h, cn__le64(s));
  if (n != 0) {
    while (n-- > 0)
      w = w << 8 | s[n];
    cn__sip_word(h, w);
  }
}

static void hatom(cn__sip *h, const cn__atom *a) {
  char tmp[2 * 255];
  size_t n;
  if (!a->latin1 || a->n > 255) {
    hbytes(h, a->s, a->n);
    return;
  }
  n = cn__atom_utf8_len(a);
  cn__atom_utf8(a, tmp);
  hbytes(h, (const unsigned char *)tmp, n);
}

static void hscalar(cn__sip *h, int cls, const char *p) {
  switch (cls) {
  case CLS_NUMBER:
    if (is_float_tag(p)) {
      double d = float_of(p);
      uint64_t bits;
      if (d == 0)
        d = 0; /* -0.0 =:= 0.0 in OTP 25 */
      memcpy(&bits, &d, sizeof bits);
      cn__sip_word(h, H_FLOAT);
      cn__sip_word(h, bits);
    } else {
      cn__int v;
      cn__int_view(p, &v);
      cn__sip_word(h, H_INT);
      cn__sip_word(h, (uint64_t)v.neg);
      hbytes(h, v.mag, v.n);
    }
    break;
  case CLS_ATOM: {
    cn__atom a;
    cn__atom_view(p, &a);
    cn__sip_word(h, H_ATOM);
    hatom(h, &a);
    break;
  }
  case CLS_REF:
  case CLS_PORT:
  case CLS_PID: {
    ident d;
    uint32_t i, n;
    ident_view(p, &d);
    cn__sip_word(h, cls == CLS_REF ? H_REF : cls == CLS_PORT ? H_PORT : H_PID);
    hatom(h, &d.node);
    cn__sip_word(h, d.creation);
    cn__sip_word(h, d.id);
    cn__sip_word(h, d.serial);
    n = d.len;
    while (n > 0 && ref_word(&d, n - 1) == 0)
      n--; /* [1,2] =:= [1,2,0] */
    for (i = 0; i < n; i++)
      cn__sip_word(h, ref_word(&d, i));
    break;
  }
  case CLS_NIL:
    cn__sip_word(h, H_NIL);
    break;
  case CLS_BITS: {
    size_t n;
    unsigned last;
    const unsigned char *s = bits_view(p, &n, &last);
    cn__sip_word(h, H_BITS);
    if (n == 0) {
      cn__sip_word(h, 0); /* <<>>, in either encoding */
      break;
    }
    cn__sip_word(h, last);
    hbytes(h, s, n - 1);
    cn__sip_word(h, s[n - 1] & ((0xFFu << (8 - last)) & 0xFF));
    break;
  }
  default:
    break;
  }
}

typedef struct hframe {
  int kind;
  uint64_t left; /* F_SEQ: elements; F_MAP: items (keys and values) */
  uint64_t n;    /* F_MAP: pairs */
  cn__sip saved; /* F_MAP: the hash state before the map */
  uint64_t acc;  /* F_MAP: sum of the pair hashes */
  lside l;       /* F_LIST */
} hframe;

static uint64_t term_hash(cn_term t, const cn__sipkey *key) {
  hframe inl[INLINE_FRAMES], *fs = inl, *f;
  size_t n = 0, cap = INLINE_FRAMES;
  const char *p = t.ptr, *x = t.ptr;
  cn__sip h;
  int virt = 0;

  if (t.len == 0)
    return 0;
  cn__sip_init(&h, key);
  for (;;) {
    int cls = cn__class(x);
    int kind = -1;
    uint64_t cnt = 0;

    switch (cls) {
    case CLS_FUN:
      if ((unsigned char)x[0] == ETF_EXPORT) {
        cn__atom m, fn;
        const char *q = cn__atom_view(x + 1, &m);
        q = cn__atom_view(q, &fn);
        cn__sip_word(&h, H_EXPORT);
        hatom(&h, &m);
        hatom(&h, &fn);
        cn__sip_word(&h, (unsigned char)q[1]);
      } else {
        funv fv;
        fun_view(x, &fv);
        cn__sip_word(&h, H_FUN);
        hatom(&h, &fv.module);
        cn__sip_word(&h, fv.index);
        cn__sip_word(&h, fv.old_uniq);
        cn__sip_word(&h, fv.numfree);
        if (fv.numfree != 0) {
          kind = F_SEQ;
          cnt = fv.numfree;
          p = fv.free;
        }
      }
      break;
    case CLS_TUPLE: {
      int small = (unsigned char)x[0] == ETF_SMALL_TUPLE;
      cnt = small ? (unsigned char)x[1] : cn__get32(x + 1);
      cn__sip_word(&h, H_TUPLE);
      cn__sip_word(&h, cnt);
      if (cnt != 0) {
        kind = F_SEQ;
        p = x + (small ? 2 : 5);
      }
      break;
    }
    case CLS_MAP:
      cnt = cn__get32(x + 1);
      if (cnt == 0) {
        cn__sip_word(&h, H_MAP);
        cn__sip_word(&h, 0);
      } else {
        kind = F_MAP;
        p = x + 5;
      }
      break;
    case CLS_LIST:
      cn__sip_word(&h, H_LIST);
      kind = F_LIST;
      p = x;
      break;
    default:
      hscalar(&h, cls, x);
      break;
    }

    /* An item with nothing inside to visit: step over it. */
    if (kind < 0 && !virt)
      p = cn__skip_fast(x);
    if (kind >= 0) {
      if (n == cap) {
        hframe *nf = fs == inl ? malloc(2 * cap * sizeof *nf)
                               : realloc(fs, 2 * cap * sizeof *nf);
        if (nf == NULL) {
          /* Without memory, hash what was seen so far: still the same
           * for the same bytes, which is the best left to do. */
          goto done;
        }
        if (fs == inl)
          memcpy(nf, inl, sizeof inl);
        fs = nf;
        cap *= 2;
      }
      f = &fs[n++];
      f->kind = kind;
      f->left = kind == F_MAP ? 2 * cnt : cnt;
      f->n = cnt;
      if (kind == F_MAP) {
        f->saved = h;
        f->acc = 0;
      }
      if (kind == F_LIST)
        list_enter(&f->l, &p);
    }

    /* Next item. */
    for (;;) {
      if (n == 0)
        goto done;
      f = &fs[n - 1];
      if (f->kind == F_SEQ) {
        if (f->left == 0) {
          n--;
          continue;
        }
        f->left--;
        x = p;
        virt = 0;
        break;
      }
      if (f->kind == F_MAP) {
        /* Pairs are hashed apart and summed, so order does not matter. */
        if (f->left != 2 * f->n && f->left % 2 == 0)
          f->acc += cn__sip_final(&h);
        if (f->left == 0) {
          h = f->saved;
          cn__sip_word(&h, H_MAP);
          cn__sip_word(&h, f->n);
          cn__sip_word(&h, f->acc);
          n--;
          continue;
        }
        if (f->left % 2 == 0)
          cn__sip_init(&h, key);
        f->left--;
        x = p;
        virt = 0;
        break;
      }
      if (list_next(&f->l, &p, &x, &virt))
        break;
      cn__sip_word(&h, H_TAIL);
      n--; /* the tail is the next item */
      break;
    }
  }
done:
  if (fs != inl)
    free(fs);
  return cn__sip_final(&h);
}

uint64_t cn_term_hash(cn_term t) { return term_hash(t, cn__hash_key()); }

uint64_t cn_term_hash_keyed(cn_term t, const uint8_t key[16]) {
  cn__sipkey k;
  if (key == NULL)
    return cn_term_hash(t);
  k = cn__sipkey_of(key);
  return term_hash(t, &k);
}
