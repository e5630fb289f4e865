/* Why not ei: ei has no term order, no =:= across encodings and no hash
 * of a term's value; this is term order, exact equality and hashing.
 *
 * Two terms compare by walking both in lockstep (cn__walk, never the C
 * stack: terms nest as deep as the validator allows).  Encodings do not
 * matter: an atom may come in four forms, a list may be a STRING_EXT or be
 * split over several LIST_EXT headers ([1|[2]]), an integer may be a
 * non-canonical bignum, map pairs come in any order.
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

/* A NEW_FUN_EXT's identity (cn__walk finds its free variables). */
typedef struct funv {
  cn__atom module;
  uint32_t index;
  uint32_t old_uniq;
  uint32_t numfree;
} funv;

static void fun_view(const char *p, funv *f) {
  const char *q;
  f->index = cn__get32(p + 1 + 21);
  f->numfree = cn__get32(p + 1 + 25);
  q = cn__atom_view(p + 1 + 29, &f->module);
  q += (unsigned char)q[0] == ETF_SMALL_INTEGER ? 2 : 5; /* OldIndex */
  f->old_uniq = (unsigned char)q[0] == ETF_SMALL_INTEGER ? (unsigned char)q[1]
                                                         : cn__get32(q + 1);
}

/* Compares two funs up to their free variables, which the walk compares.
 * Local funs order before exports (erts, OTP 25). */
static int fun_cmp(const char *a, const char *b) {
  int ea = (unsigned char)a[0] == ETF_EXPORT;
  int eb = (unsigned char)b[0] == ETF_EXPORT;
  int r;

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
        (r = u64_cmp(x.old_uniq, y.old_uniq)) != 0)
      return r;
    return u64_cmp(x.numfree, y.numfree);
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

/* ---- Map key order ---------------------------------------------------- */

static int bytes_cmp(const char *a, const char *b) {
  const char *ea = cn__skip_fast(a), *eb = cn__skip_fast(b);
  size_t la = (size_t)(ea - a), lb = (size_t)(eb - b);
  int r = memcmp(a, b, la < lb ? la : lb);
  return r != 0 ? r : u64_cmp(la, lb);
}

/* Pairs order by key; a key that repeats (erts never sends one, but the
 * validator does not look) orders by value, so that the order of the
 * pairs in the encoding never shows. */
static int pair_cmp(const cn__kv *x, const cn__kv *y, int level) {
  int r;
  if (level > KEY_NESTING_CAP) {
    /* Too deep to recurse again: fall back to a plain byte order. */
    r = bytes_cmp(x->k, y->k);
    return r != 0 ? r : bytes_cmp(x->v, y->v);
  }
  r = cn__compare(x->k, y->k, level, 1);
  return r != 0 ? r : cn__compare(x->v, y->v, level, 0);
}

static void sort_pairs(cn__kv *v, cn__kv *tmp, size_t n, int level) {
  size_t i, j, k, mid;

  if (n <= 8) {
    for (i = 1; i < n; i++) {
      cn__kv x = v[i];
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

const char *cn__map_pairs(const char *p, uint64_t n, cn__kv **out, int level) {
  cn__kv *v;
  uint64_t i;

  if (n > SIZE_MAX / (2 * sizeof *v))
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
  cn__kv *v;
  uint64_t i;
  const char *end = cn__map_pairs(p, n, &v, level);
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

/* Compares two terms as far as their headers go: scalars wholly,
 * containers by size; the walk then compares what is inside. */
static int head_cmp(const char *a, const char *b, int keys) {
  int ca = cn__class(a), cb = cn__class(b);

  if (ca != cb)
    return ca < cb ? -1 : 1;
  switch (ca) {
  case CLS_NUMBER:
    return num_cmp(a, b, keys);
  case CLS_ATOM:
    return atom_term_cmp(a, b);
  case CLS_REF:
  case CLS_PORT:
  case CLS_PID:
    return ident_cmp(ca, a, b);
  case CLS_BITS:
    return bits_cmp(a, b);
  case CLS_FUN:
    return fun_cmp(a, b);
  case CLS_TUPLE:
    return u64_cmp(cn__tuple_arity(a), cn__tuple_arity(b));
  case CLS_MAP:
    return u64_cmp(cn__get32(a + 1), cn__get32(b + 1));
  default:
    return 0; /* nil; lists, whose elements the walk compares */
  }
}

int cn__compare(const char *a, const char *b, int level, int keys) {
  /* All keys of a map first, then the values in key order (erts). */
  const int mode = CN__WALK_FUNS | CN__WALK_KEYS_FIRST;
  cn__walk wa, wb;
  const char *xa = a, *xb = b;
  int r = 0;

  cn__walk_init(&wa, a, mode, level, keys);
  cn__walk_init(&wb, b, mode, level, keys);
  for (;;) {
    int ea = cn__walk_next(&wa, &xa), eb = cn__walk_next(&wb, &xb);
    if (wa.err != 0 || wb.err != 0) {
      /* Out of memory leaves no good answer; the bytes of the pair being
       * entered at least give a stable one. */
      r = bytes_cmp(xa, xb);
      break;
    }
    if (ea != eb) {
      /* One list ended: its tail (never a list) meets an element. */
      if (ea == CN__W_TAIL)
        r = cn__class(xa) < CLS_LIST ? -1 : 1;
      else
        r = cn__class(xb) < CLS_LIST ? 1 : -1;
      break;
    }
    if (ea == CN__W_DONE)
      break;
    if (ea != CN__W_END && (r = head_cmp(xa, xb, wa.key)) != 0)
      break;
  }
  cn__walk_free(&wa);
  cn__walk_free(&wb);
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

/* A map being hashed: the hash state before it, and the sum so far. */
typedef struct hmap {
  cn__sip saved;
  uint64_t acc;
  uint64_t n; /* pairs */
} hmap;

static uint64_t term_hash(cn_term t, const cn__sipkey *key) {
  cn__walk w;
  cn__stack maps;
  hmap inl[4], *m;
  const char *x;
  cn__sip h;
  int ev;

  if (t.len == 0)
    return 0;
  cn__sip_init(&h, key);
  cn__walk_init(&w, t.ptr, CN__WALK_FUNS, 0, 0);
  cn__stack_init(&maps, inl);
  /* Without memory the walk stops, and what was seen so far is hashed:
   * still the same for the same bytes, the best left to do. */
  while ((ev = cn__walk_next(&w, &x)) != CN__W_DONE) {
    cn__frame *f = cn__walk_top(&w);
    int cls;
    if (ev == CN__W_END) {
      if (w.kind == CN__F_MAP) {
        m = cn__stack_top(&maps);
        m->acc += cn__sip_final(&h);
        h = m->saved;
        cn__sip_word(&h, H_MAP);
        cn__sip_word(&h, m->n);
        cn__sip_word(&h, m->acc);
        maps.n--;
      }
      continue;
    }
    if (ev == CN__W_TAIL) {
      cn__sip_word(&h, H_TAIL);
    } else if (f->kind == CN__F_MAP && f->i % 2 == 1) {
      /* A key: pairs are hashed apart and summed, so order does not
       * matter. */
      m = cn__stack_top(&maps);
      if (f->i > 1)
        m->acc += cn__sip_final(&h);
      cn__sip_init(&h, key);
    }
    switch (cls = cn__class(x)) {
    case CLS_FUN:
      if ((unsigned char)x[0] == ETF_EXPORT) {
        cn__atom mod, fn;
        const char *q = cn__atom_view(x + 1, &mod);
        q = cn__atom_view(q, &fn);
        cn__sip_word(&h, H_EXPORT);
        hatom(&h, &mod);
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
      }
      break;
    case CLS_TUPLE:
      cn__sip_word(&h, H_TUPLE);
      cn__sip_word(&h, cn__tuple_arity(x));
      break;
    case CLS_MAP:
      if (cn__get32(x + 1) == 0) {
        cn__sip_word(&h, H_MAP);
        cn__sip_word(&h, 0);
      } else if ((m = cn__stack_push(&maps)) != NULL) {
        m->saved = h;
        m->acc = 0;
        m->n = cn__get32(x + 1);
      } else {
        goto done;
      }
      break;
    case CLS_LIST:
      cn__sip_word(&h, H_LIST);
      break;
    default:
      hscalar(&h, cls, x);
      break;
    }
  }
done:
  cn__walk_free(&w);
  cn__stack_free(&maps);
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
