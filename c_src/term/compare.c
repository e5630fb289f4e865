/* Not ei: ei has no term order, no =:= across encodings, no value hash. */
/* Term order, exact equality and hashing.
 *
 * Two terms compare by walking both in lockstep, with the shared stack and
 * list cursor (never the C stack: terms nest as deep as the validator
 * allows); hashing walks one term the same way.  Encodings do not
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

/* Compares |x| with ad, a positive finite double, exactly: with ad's
 * integer part as a magnitude (every step below is exact in doubles), then
 * with its fraction. */
static int mag_cmp_double(const cn__int *x, double ad) {
  unsigned char m[128]; /* DBL_MAX < 256^128 */
  double ip = floor(ad), q;
  cn__int y = {.mag = m};
  int r;

  for (; ip != 0; ip = q) {
    q = floor(ip / 256);
    m[y.n++] = (unsigned char)(ip - q * 256);
  }
  r = mag_cmp(x, &y);
  return r != 0 ? r : ad != floor(ad) ? -1 : 0;
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

static double float_of(const char *p) {
  double d = 0;
  cn__float_value(p, &d);
  return d;
}

/* Numbers: by value; an integer and a float of equal value order the
 * integer first (the exact order, which =:= agrees with).  In map key
 * order (keys), erts puts every integer before every float. */
static int num_cmp(const char *a, const char *b, int keys) {
  int fa = cn__is_float(a), fb = cn__is_float(b), r;
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

static uint32_t ref_word(const cn__ident *d, uint32_t i) {
  return i < d->len ? cn__get32(d->words + 4 * (size_t)i) : 0;
}

static int node_cmp(const cn__ident *a, const cn__ident *b) {
  int r = cn__atom_cmp(&a->node, &b->node);
  return r != 0 ? r : u64_cmp(a->creation, b->creation);
}

/* erts: pids order by serial and number first, then by node; ports and
 * references by node first.  References of different lengths compare as
 * if the shorter had zero high words. */
static int ident_cmp(int cls, const char *a, const char *b) {
  cn__ident x, y;
  uint32_t i;
  int r;

  cn__ident_view(a, &x);
  cn__ident_view(b, &y);
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

/* Compares two funs up to their free variables, which the walk compares.
 * Local funs order before exports (erts, OTP 25). */
static int fun_cmp(const char *a, const char *b) {
  cn__fun x, y;
  int r;

  cn__fun_view(a, &x);
  cn__fun_view(b, &y);
  if (x.export != y.export)
    return x.export ? 1 : -1;
  if ((r = cn__atom_cmp(&x.module, &y.module)) != 0)
    return r;
  if (x.export) {
    r = cn__atom_cmp(&x.name, &y.name);
    return r != 0 ? r : u64_cmp(x.arity, y.arity);
  }
  if ((r = u64_cmp(x.index, y.index)) != 0 ||
      (r = u64_cmp(x.old_uniq, y.old_uniq)) != 0)
    return r;
  return u64_cmp(x.numfree, y.numfree);
}

static int bits_cmp(const char *a, const char *b) {
  size_t na, nb, ta, tb, m, full;
  unsigned la, lb, rem;
  const unsigned char *x = cn__bits_view(a, &na, &la);
  const unsigned char *y = cn__bits_view(b, &nb, &lb);
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

const char *cn__map_pairs(const char *p, uint64_t n, cn__kv *inl, size_t cap,
                          cn__kv **out, int level) {
  cn__kv *v = inl;
  uint64_t i;
  if (2 * n > cap && (n > SIZE_MAX / (2 * sizeof *v) ||
                      (v = malloc((size_t)n * 2 * sizeof *v)) == NULL))
    return NULL;
  for (i = 0; i < n; i++) {
    v[i].k = p;
    v[i].v = p = cn__skip_fast(p);
    p = cn__skip_fast(p);
  }
  sort_pairs(v, v + n, (size_t)n, level + 1); /* v[n .. 2n) is merge space */
  *out = v;
  return p;
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

/* An open container of both terms, which have had one shape so far. */
typedef struct cframe {
  uint64_t left;           /* tuple: elements left; map: items left */
  uint64_t n;              /* MAP: pairs */
  cn__list a, b;           /* LIST: both cursors */
  cn__kv *ma, *mb;         /* MAP: the pairs in key order */
  const char *enda, *endb; /* MAP: the first byte after each map */
  int kind;                /* CLS_TUPLE (or a fun), CLS_MAP, CLS_LIST */
  int keys;                /* items compare in map key order */
} cframe;

static void cpop(cn__stack *s) {
  cframe *f = CN__STACK_TOP(s, cframe);
  if (f->kind == CLS_MAP) {
    free(f->ma);
    free(f->mb);
  }
  s->n--;
}

/* The two terms are walked in one loop: one frame serves both sides,
 * which halves the work per element on this hot path. */
int cn__compare(const char *a, const char *b, int level, int keys) {
  cframe inl[8], *f;
  cn__stack s;
  int km = keys;               /* the pair being compared is in map key order */
  const char *pa = a, *pb = b; /* stream positions */
  const char *xa = a, *xb = b; /* the pair being compared */
  int r;

  cn__stack_init(&s, inl);
  for (;;) {
    int kind = -1;
    uint64_t n = 0;

    if ((r = head_cmp(xa, xb, km)) != 0)
      goto out;
    /* Equal so far: step into containers, over anything else. */
    switch (cn__class(xa)) {
    case CLS_TUPLE:
      n = cn__tuple_arity(xa);
      pa = xa + ((unsigned char)xa[0] == ETF_SMALL_TUPLE ? 2 : 5);
      pb = xb + ((unsigned char)xb[0] == ETF_SMALL_TUPLE ? 2 : 5);
      kind = CLS_TUPLE;
      break;
    case CLS_FUN:
      if ((unsigned char)xa[0] == ETF_NEW_FUN) {
        cn__fun fa, fb;
        cn__fun_view(xa, &fa);
        cn__fun_view(xb, &fb);
        n = fa.numfree;
        pa = fa.free;
        pb = fb.free;
        kind = CLS_TUPLE;
      }
      break;
    case CLS_MAP:
      n = cn__get32(xa + 1);
      kind = CLS_MAP;
      break;
    case CLS_LIST:
      n = 1;
      kind = CLS_LIST;
      break;
    default:
      break;
    }
    if (n == 0) {
      /* A string byte or the nil of a string lies outside the stream. */
      if (xa == pa)
        pa = cn__skip_fast(xa);
      if (xb == pb)
        pb = cn__skip_fast(xb);
    } else {
      if ((f = CN__STACK_PUSH(&s, cframe)) == NULL)
        goto oom;
      f->kind = kind;
      f->keys = km;
      f->left = n;
      f->ma = f->mb = NULL;
      if (kind == CLS_LIST) {
        pa = xa;
        pb = xb;
        cn__list_enter(&f->a, &pa);
        cn__list_enter(&f->b, &pb);
      } else if (kind == CLS_MAP) {
        f->n = n;
        f->left = 2 * n;
        f->enda = cn__map_pairs(xa + 5, n, NULL, 0, &f->ma, level);
        f->endb = cn__map_pairs(xb + 5, n, NULL, 0, &f->mb, level);
        if (f->enda == NULL || f->endb == NULL)
          goto oom;
      }
    }

    /* Find the next pair to compare. */
    for (;;) {
      if (s.n == 0)
        goto out;
      f = CN__STACK_TOP(&s, cframe);
      km = f->keys;
      if (f->kind != CLS_LIST && f->left == 0) {
        if (f->kind == CLS_MAP) {
          pa = f->enda;
          pb = f->endb;
        }
        cpop(&s);
        continue;
      }
      if (f->kind == CLS_TUPLE) {
        f->left--;
        xa = pa;
        xb = pb;
        break;
      }
      if (f->kind == CLS_MAP) {
        /* All keys first, then the values in key order (erts). */
        uint64_t i = 2 * f->n - f->left--;
        if (i < f->n) {
          xa = f->ma[i].k;
          xb = f->mb[i].k;
          km = 1; /* keys compare in map key order */
        } else {
          xa = f->ma[i - f->n].v;
          xb = f->mb[i - f->n].v;
        }
        pa = xa;
        pb = xb;
        break;
      } else {
        int ea = cn__list_next(&f->a, &pa, &xa);
        int eb = cn__list_next(&f->b, &pb, &xb);
        if (ea && eb)
          break;
        if (ea != eb) {
          /* One list ended: its tail (never a list) meets an element. */
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
  /* Out of memory leaves no good answer; the bytes of the pair being
   * entered at least give a stable one. */
  r = bytes_cmp(xa, xb);
out:
  while (s.n > 0)
    cpop(&s);
  cn__stack_free(&s);
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
  const char *s = cn__atom_text(a, tmp, &n);
  hbytes(h, (const unsigned char *)s, n);
}

static void hscalar(cn__sip *h, int cls, const char *p) {
  switch (cls) {
  case CLS_NUMBER:
    if (cn__is_float(p)) {
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
    cn__ident d;
    uint32_t i, n;
    cn__ident_view(p, &d);
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
    const unsigned char *s = cn__bits_view(p, &n, &last);
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
  int kind;      /* CLS_TUPLE (or a fun), CLS_MAP, CLS_LIST */
  uint64_t left; /* tuple: elements; map: items (keys, values) */
  uint64_t n;    /* MAP: pairs */
  cn__sip saved; /* MAP: the hash state before the map */
  uint64_t acc;  /* MAP: sum of the pair hashes */
  cn__list l;    /* LIST */
} hframe;

static uint64_t term_hash(cn_term t, const cn__sipkey *key) {
  hframe inl[8], *f;
  cn__stack s;
  const char *p = t.ptr, *x = t.ptr;
  cn__sip h;

  if (t.len == 0)
    return 0;
  cn__sip_init(&h, key);
  cn__stack_init(&s, inl);
  for (;;) {
    int cls = cn__class(x), kind = -1;
    uint64_t cnt = 0;

    switch (cls) {
    case CLS_FUN: {
      cn__fun fv;
      cn__fun_view(x, &fv);
      cn__sip_word(&h, fv.export ? H_EXPORT : H_FUN);
      hatom(&h, &fv.module);
      if (fv.export) {
        hatom(&h, &fv.name);
        cn__sip_word(&h, fv.arity);
      } else {
        cn__sip_word(&h, fv.index);
        cn__sip_word(&h, fv.old_uniq);
        cn__sip_word(&h, fv.numfree);
        if ((cnt = fv.numfree) != 0) {
          kind = CLS_TUPLE;
          p = fv.free;
        }
      }
      break;
    }
    case CLS_TUPLE:
      cnt = cn__tuple_arity(x);
      cn__sip_word(&h, H_TUPLE);
      cn__sip_word(&h, cnt);
      if (cnt != 0) {
        kind = CLS_TUPLE;
        p = x + ((unsigned char)x[0] == ETF_SMALL_TUPLE ? 2 : 5);
      }
      break;
    case CLS_MAP:
      cnt = cn__get32(x + 1);
      if (cnt == 0) {
        cn__sip_word(&h, H_MAP);
        cn__sip_word(&h, 0);
      } else {
        kind = CLS_MAP;
        p = x + 5;
      }
      break;
    case CLS_LIST:
      cn__sip_word(&h, H_LIST);
      kind = CLS_LIST;
      p = x;
      break;
    default:
      hscalar(&h, cls, x);
      break;
    }

    if (kind < 0) {
      /* Nothing inside to visit: step over it, unless it is a string byte
       * or the nil of a string, which lie outside the stream. */
      if (x == p)
        p = cn__skip_fast(x);
    } else {
      /* Without memory, hash what was seen so far: still the same for the
       * same bytes, which is the best left to do. */
      if ((f = CN__STACK_PUSH(&s, hframe)) == NULL)
        goto done;
      f->kind = kind;
      f->left = kind == CLS_MAP ? 2 * cnt : cnt;
      f->n = cnt;
      if (kind == CLS_MAP) {
        f->saved = h;
        f->acc = 0;
      }
      if (kind == CLS_LIST)
        cn__list_enter(&f->l, &p);
    }

    /* Next item. */
    for (;;) {
      if (s.n == 0)
        goto done;
      f = CN__STACK_TOP(&s, hframe);
      if (f->kind == CLS_TUPLE) {
        if (f->left == 0) {
          s.n--;
          continue;
        }
        f->left--;
        x = p;
        break;
      }
      if (f->kind == CLS_MAP) {
        /* Pairs are hashed apart and summed, so order does not matter. */
        if (f->left != 2 * f->n && f->left % 2 == 0)
          f->acc += cn__sip_final(&h);
        if (f->left == 0) {
          h = f->saved;
          cn__sip_word(&h, H_MAP);
          cn__sip_word(&h, f->n);
          cn__sip_word(&h, f->acc);
          s.n--;
          continue;
        }
        if (f->left % 2 == 0)
          cn__sip_init(&h, key);
        f->left--;
        x = p;
        break;
      }
      if (cn__list_next(&f->l, &p, &x))
        break;
      cn__sip_word(&h, H_TAIL);
      s.n--; /* the tail is the next item */
      break;
    }
  }
done:
  cn__stack_free(&s);
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
