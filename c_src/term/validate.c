/* Why not ei: ei_decode_* and ei_skip_term trust their input (no buffer
 * length, recursion per level); this is the bounded validator that runs
 * before any of them.
 *
 * The validator: the gate every byte from outside passes before any other
 * code of the term layer (or ei) reads it.
 *
 * It walks the term once, with an explicit stack of open containers
 * (cn__stack), so a hostile term cannot overflow the C stack however deep
 * it nests.  The layout comes from cn__head, which cn__skip shares, and
 * every length or count is checked against the bytes that remain before it
 * is used: each element takes at least one byte, so a list that claims
 * 2^32 elements in a short buffer fails at once, and the walk costs time
 * linear in the bytes it reads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

typedef struct vframe {
  uint64_t left;       /* elements of this container still to come */
  const char *fun_end; /* for a fun: where its free variables must end */
  int list;            /* a list: its tail follows the elements */
} vframe;

/* Bytes [p, p + k) must lie inside the term's allowance.  Past the size
 * limit but inside the buffer is CN_ETOOBIG; past the buffer, the term is
 * truncated or lies about a length: CN_EBADTERM. */
static inline int need(const char *p, const char *lim, const char *end,
                       uint64_t k) {
  if ((uint64_t)(lim - p) >= k)
    return 0;
  return (uint64_t)(end - p) >= k ? CN_ETOOBIG : CN_EBADTERM;
}

/* Latin-1 names hold at most 255 bytes; UTF-8 names must be valid UTF-8
 * of at most 255 characters, as erts demands. */
static int atom_ok(const char *p) {
  cn__atom a;
  long chars;

  cn__atom_view(p, &a);
  if (a.latin1)
    return a.n > 255 ? CN_EBADTERM : 0;
  chars = a.n > 4 * 255 ? -1 : cn__utf8_count(a.s, a.n);
  return chars < 0 || chars > 255 ? CN_EBADTERM : 0;
}

/* What the bytes of a term whose head lies in the buffer must hold beyond
 * their layout. */
static int content_ok(const char *p) {
  unsigned char tag = (unsigned char)p[0];
  size_t words;
  double d;

  switch (tag) {
  case ETF_FLOAT:
    return cn__parse_float_text(p + 1, &d) != 0 ? CN_EBADTERM : 0;
  case ETF_NEW_FLOAT:
    cn__float_value(p, &d);
    return isfinite(d) ? 0 : CN_EBADTERM; /* the BEAM has no inf or NaN */
  case ETF_ATOM:
  case ETF_SMALL_ATOM:
  case ETF_ATOM_UTF8:
  case ETF_SMALL_ATOM_UTF8:
    return atom_ok(p);
  case ETF_PID:
  case ETF_NEW_PID:
  case ETF_PORT:
  case ETF_NEW_PORT:
  case ETF_V4_PORT:
  case ETF_REFERENCE:
    return atom_ok(p + 1);
  case ETF_NEW_REFERENCE:
  case ETF_NEWER_REFERENCE:
    words = cn__get16(p + 1);
    if (words == 0 || words > CN_REF_MAX_WORDS)
      return CN_EBADTERM;
    return atom_ok(p + 3);
  case ETF_LIST:
    /* erts never emits an empty LIST_EXT, and rejecting it keeps every
     * LIST_EXT a non-empty list for the readers. */
    return cn__get32(p + 1) == 0 ? CN_EBADTERM : 0;
  case ETF_BIT_BINARY: {
    /* erts: 1..8 bits in the last byte, and 0 only when empty. */
    unsigned bits = (unsigned char)p[5];
    return (bits == 0) != (cn__get32(p + 1) == 0) || bits > 8 ? CN_EBADTERM : 0;
  }
  default:
    return 0;
  }
}

/* The fields of a fun or an export, one letter each: 'a' an atom, 'i' a
 * SMALL_INTEGER_EXT or INTEGER_EXT, 's' a SMALL_INTEGER_EXT, 'p' a pid.
 * Each is validated and *pp moves past it. */
static int fields(const char **pp, const char *lim, const char *end,
                  const char *kinds) {
  const char *p = *pp;
  uint64_t k, kids;
  int rc, ok;

  for (; *kinds != '\0'; kinds++) {
    unsigned char tag;
    if ((rc = need(p, lim, end, 1)) != 0)
      return rc;
    tag = (unsigned char)p[0];
    ok = *kinds == 'a'   ? cn__is_atom_tag(tag)
         : *kinds == 'p' ? tag == ETF_PID || tag == ETF_NEW_PID
                         : tag == ETF_SMALL_INTEGER ||
                               (*kinds == 'i' && tag == ETF_INTEGER);
    if (!ok || (k = cn__head(p, (uint64_t)(end - p), &kids)) == 0)
      return CN_EBADTERM;
    if ((rc = need(p, lim, end, k)) != 0 || (rc = content_ok(p)) != 0)
      return rc;
    p += k;
  }
  *pp = p;
  return 0;
}

/* NEW_FUN_EXT up to its free variables.  Size bounds every field, so the
 * fields are checked against the fun's own end.  On success *pp is at the
 * first free variable and *numfree holds their count. */
static int fun_header(const char **pp, const char *lim, const char *end,
                      const char **fun_end, uint64_t *numfree) {
  const char *p = *pp, *fend;
  uint32_t size;
  int rc;

  if ((rc = need(p, lim, end, 5)) != 0)
    return rc;
  size = cn__get32(p + 1);
  /* Size, arity, uniq, index, numfree: 29 bytes before the module. */
  if (size < 29)
    return CN_EBADTERM;
  if ((rc = need(p, lim, end, 1 + (uint64_t)size)) != 0)
    return rc;
  fend = p + 1 + size;
  *numfree = cn__get32(p + 1 + 25);
  p += 1 + 29;
  /* Module, OldIndex, OldUniq, the creator pid. */
  if ((rc = fields(&p, fend, fend, "aiip")) != 0)
    return rc;
  if (*numfree > (uint64_t)(fend - p))
    return CN_EBADTERM;
  *pp = p;
  *fun_end = fend;
  return 0;
}

static int validate(const char *start, const char *lim, const char *end,
                    size_t max_depth, const char **out) {
  vframe inl[32], *f;
  cn__stack s;
  const char *p = start;
  int rc = 0;

  cn__stack_init(&s, inl);
  for (;;) {
    const char *fend = NULL;
    uint64_t k, kids;
    int list;

    /* A term starts at p. */
    if ((rc = need(p, lim, end, 1)) != 0)
      goto out;
    list = (unsigned char)p[0] == ETF_LIST;
    switch ((unsigned char)p[0]) {
    case ETF_EXPORT:
      /* Module, function, arity. */
      p++;
      if ((rc = fields(&p, lim, end, "aas")) != 0)
        goto out;
      kids = 0;
      break;
    case ETF_NEW_FUN:
      if ((rc = fun_header(&p, lim, end, &fend, &kids)) != 0)
        goto out;
      if (kids == 0 && p != fend)
        goto bad;
      break;
    default:
      /* ATOM_CACHE_REF only means something after a distribution header,
       * COMPRESSED only at the top (cn_term_from_etf), FUN_EXT is gone
       * since OTP 23; cn__head knows none of them. */
      k = cn__head(p, (uint64_t)(end - p), &kids);
      if (k == 0)
        goto bad;
      if ((rc = need(p, lim, end, k)) != 0 || (rc = content_ok(p)) != 0)
        goto out;
      p += k;
      break;
    }
    if (kids != 0) {
      if ((rc = need(p, lim, end, kids)) != 0)
        goto out;
      if (s.n >= max_depth) {
        rc = CN_ETOODEEP;
        goto out;
      }
      if ((f = cn__stack_push(&s)) == NULL) {
        rc = CN_ENOMEM;
        goto out;
      }
      f->left = kids - (uint64_t)list; /* the tail comes after */
      f->list = list;
      f->fun_end = fend;
      continue;
    }

    /* A term is complete: close every container it completes. */
    for (;;) {
      if ((f = cn__stack_top(&s)) == NULL)
        goto out;
      if (--f->left != 0)
        break;
      s.n--;
      if (f->list)
        break; /* the tail comes next, at the list's own depth */
      if (f->fun_end != NULL && p != f->fun_end)
        goto bad;
    }
  }

bad:
  rc = CN_EBADTERM;
out:
  cn__stack_free(&s);
  if (rc == 0)
    *out = p;
  return rc;
}

int cn_term_validate(const char *buf, size_t len, size_t *off,
                     const cn_term_limits *lim) {
  size_t max_depth = CN_TERM_DEFAULT_MAX_DEPTH;
  size_t max_size = CN_TERM_DEFAULT_MAX_SIZE;
  const char *start, *end, *stop, *after;
  int rc;

  if (off == NULL || (buf == NULL && len != 0))
    return CN_EINVAL;
  if (*off >= len)
    return CN_EBADTERM;
  if (lim != NULL) {
    if (lim->max_depth != 0)
      max_depth = lim->max_depth;
    if (lim->max_size != 0)
      max_size = lim->max_size;
  }
  start = buf + *off;
  end = buf + len;
  stop = (size_t)(end - start) > max_size ? start + max_size : end;
  rc = validate(start, stop, end, max_depth, &after);
  if (rc == 0)
    *off = (size_t)(after - buf);
  return rc;
}

int cn_term_from_etf(const char *buf, size_t len, const cn_term_limits *lim,
                     cn_term *out) {
  size_t off = 1;
  int rc;

  if (out == NULL || (buf == NULL && len != 0))
    return CN_EINVAL;
  if (len < 2 || (unsigned char)buf[0] != ETF_VERSION)
    return CN_EBADTERM;
  if ((unsigned char)buf[1] == ETF_COMPRESSED)
    return CN_ENOTSUP;
  rc = cn_term_validate(buf, len, &off, lim);
  if (rc != 0)
    return rc;
  if (off != len)
    return CN_EBADTERM; /* bytes after the term */
  out->ptr = buf + 1;
  out->len = len - 1;
  return 0;
}
