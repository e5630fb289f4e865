/* Not ei: ei_decode_* trusts its input; this bounded validator runs first. */
/* The validator: the gate every byte from outside passes before any other
 * code of the term layer (or ei) reads it.
 *
 * It walks the term once, with an explicit stack of open containers (the
 * shared cn__stack), so a hostile term cannot overflow the C stack however
 * deep it nests.  Every
 * length or count is checked against the bytes that remain before it is
 * used: each element takes at least one byte, so a list that claims 2^32
 * elements in a short buffer fails at once, and the walk costs time linear
 * in the bytes it reads.
 */
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

static inline int push(cn__stack *s, size_t max, uint64_t left, int list,
                       const char *fun_end) {
  vframe *f;

  if (s->n >= max)
    return CN_ETOODEEP;
  if ((f = CN__STACK_PUSH(s, vframe)) == NULL)
    return CN_ENOMEM;
  f->left = left;
  f->list = list;
  f->fun_end = fun_end;
  return 0;
}

/* Validates the atom at *pp and advances *pp past it.  Latin-1 names hold
 * at most 255 bytes; UTF-8 names must be valid UTF-8 of at most 255
 * characters, as erts demands. */
static int atom(const char **pp, const char *lim, const char *end) {
  const char *p = *pp;
  unsigned char tag;
  size_t n, hdr;
  int rc;

  if ((rc = need(p, lim, end, 2)) != 0)
    return rc;
  tag = (unsigned char)p[0];
  switch (tag) {
  case ETF_SMALL_ATOM:
  case ETF_SMALL_ATOM_UTF8:
    n = (unsigned char)p[1];
    hdr = 2;
    break;
  case ETF_ATOM:
  case ETF_ATOM_UTF8:
    if ((rc = need(p, lim, end, 3)) != 0)
      return rc;
    n = cn__get16(p + 1);
    hdr = 3;
    break;
  default:
    return CN_EBADTERM;
  }
  if ((rc = need(p, lim, end, hdr + n)) != 0)
    return rc;
  if (tag == ETF_ATOM || tag == ETF_SMALL_ATOM) {
    if (n > 255)
      return CN_EBADTERM;
  } else {
    long chars;
    if (n > 4 * 255)
      return CN_EBADTERM;
    chars = cn__ascii_only_long((const unsigned char *)p + hdr, n)
                ? (long)n /* most names: no call */
                : cn__utf8_count((const unsigned char *)p + hdr, n);
    if (chars < 0 || chars > 255)
      return CN_EBADTERM;
  }
  *pp = p + hdr + n;
  return 0;
}

static int validate(const char *start, const char *lim, const char *end,
                    size_t max_depth, const char **out);

/* NEW_FUN_EXT up to its free variables.  Size bounds every field, so the
 * fields are checked against the fun's own end.  On success *pp is at the
 * first free variable and *numfree holds their count. */
static int fun_header(const char **pp, const char *lim, const char *end,
                      const char **fun_end, uint64_t *numfree) {
  const char *p = *pp, *fend;
  uint32_t size;
  int rc, k;

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
  /* Module, OldIndex, OldUniq and Pid: terms of their own, of set types. */
  for (k = 0; k < 4; k++) {
    unsigned char tag = p < fend ? (unsigned char)p[0] : 0;
    if (k == 0   ? !cn__is_atom_tag(tag)
        : k == 3 ? tag != ETF_PID && tag != ETF_NEW_PID
                 : tag != ETF_SMALL_INTEGER && tag != ETF_INTEGER)
      return CN_EBADTERM;
    if ((rc = validate(p, fend, fend, 1, &p)) != 0)
      return rc;
  }
  if (*numfree > (uint64_t)(fend - p))
    return CN_EBADTERM;
  *pp = p;
  *fun_end = fend;
  return 0;
}

static int validate(const char *start, const char *lim, const char *end,
                    size_t max_depth, const char **out) {
  vframe inl[32];
  cn__stack s;
  const char *p = start;
  int rc = 0;

  cn__stack_init(&s, inl);

  for (;;) {
    const cn__shape *sh;
    unsigned char tag;
    uint64_t n;
    double d;

    /* A term starts at p. */
    if ((rc = need(p, lim, end, 1)) != 0)
      goto out;
    tag = (unsigned char)p[0];
    sh = &cn__shapes[tag];
    switch (tag) {
    case ETF_SMALL_INTEGER:
      if ((rc = need(p, lim, end, 2)) != 0)
        goto out;
      p += 2;
      break;
    case ETF_NIL:
      p++;
      break;
    case ETF_INTEGER:
    case ETF_NEW_FLOAT:
    case ETF_FLOAT:
      if ((rc = need(p, lim, end, sh->hdr)) != 0)
        goto out;
      /* The BEAM has no inf or NaN (an exponent of all ones), and a
       * FLOAT_EXT's text must read as a number. */
      if (tag == ETF_NEW_FLOAT ? (cn__get16(p + 1) & 0x7FF0) == 0x7FF0
          : tag == ETF_FLOAT   ? cn__parse_float_text(p + 1, &d) != 0
                               : 0)
        goto bad;
      p += sh->hdr;
      break;
    case ETF_BINARY:
      if ((rc = need(p, lim, end, 5)) != 0 ||
          (rc = need(p, lim, end, 5 + (uint64_t)cn__get32(p + 1))) != 0)
        goto out;
      p += 5 + (size_t)cn__get32(p + 1);
      break;
    case ETF_ATOM:
    case ETF_SMALL_ATOM:
    case ETF_ATOM_UTF8:
    case ETF_SMALL_ATOM_UTF8:
      if ((rc = atom(&p, lim, end)) != 0)
        goto out;
      break;
    case ETF_SMALL_TUPLE:
      if ((rc = need(p, lim, end, 2)) != 0)
        goto out;
      n = (unsigned char)p[1];
      p += 2;
      if (n != 0) {
        if ((rc = need(p, lim, end, n)) != 0 ||
            (rc = push(&s, max_depth, n, 0, NULL)))
          goto out;
        continue;
      }
      break;
    case ETF_LARGE_TUPLE:
    case ETF_MAP:
      if ((rc = need(p, lim, end, 5)) != 0)
        goto out;
      n = cn__get32(p + 1);
      if (tag == ETF_MAP)
        n *= 2;
      p += 5;
      if (n != 0) {
        if ((rc = need(p, lim, end, n)) != 0 ||
            (rc = push(&s, max_depth, n, 0, NULL)))
          goto out;
        continue;
      }
      break;
    case ETF_LIST:
      if ((rc = need(p, lim, end, 5)) != 0)
        goto out;
      n = cn__get32(p + 1);
      /* erts never emits an empty LIST_EXT, and rejecting it keeps every
       * LIST_EXT a non-empty list for the readers. */
      if (n == 0)
        goto bad;
      p += 5;
      if ((rc = need(p, lim, end, n + 1)) != 0 ||
          (rc = push(&s, max_depth, n, 1, NULL)))
        goto out;
      continue;
    case ETF_NEW_FUN: {
      const char *fend;
      if ((rc = fun_header(&p, lim, end, &fend, &n)) != 0)
        goto out;
      if (n != 0) {
        if ((rc = push(&s, max_depth, n, 0, fend)) != 0)
          goto out;
        continue;
      }
      if (p != fend)
        goto bad;
      break;
    }
    case ETF_EXPORT:
      p++;
      if ((rc = atom(&p, lim, end)) != 0 || (rc = atom(&p, lim, end)) != 0 ||
          (rc = need(p, lim, end, 2)) != 0)
        goto out;
      if ((unsigned char)p[0] != ETF_SMALL_INTEGER)
        goto bad;
      p += 2;
      break;
    default:
      /* The rest: hdr bytes holding a count, a node's atom for a pid, port
       * or reference, then tail + mul * count bytes.  ATOM_CACHE_REF only
       * means something after a distribution header, COMPRESSED only at
       * the top (cn_term_from_etf), FUN_EXT is gone since OTP 23; they and
       * anything else that is not a tag have no shape. */
      if (sh->kind == SH_NONE)
        goto bad;
      if ((rc = need(p, lim, end, sh->hdr)) != 0)
        goto out;
      n = cn__shape_count(p, sh);
      /* A reference has 1..5 words; erts: a bitstring has 1..8 bits in
       * its last byte, and 0 only when empty. */
      if (sh->kind == SH_IDENT
              ? sh->lenw != 0 && (n == 0 || n > CN_REF_MAX_WORDS)
              : tag == ETF_BIT_BINARY &&
                    ((p[5] == 0) != (n == 0) || (unsigned char)p[5] > 8))
        goto bad;
      n = sh->tail + sh->mul * n;
      p += sh->hdr;
      if ((sh->kind == SH_IDENT && (rc = atom(&p, lim, end)) != 0) ||
          (rc = need(p, lim, end, n)) != 0)
        goto out;
      p += n;
    }

    /* A term is complete: close every container it completes. */
    for (;;) {
      vframe *f;
      if (s.n == 0)
        goto out;
      f = CN__STACK_TOP(&s, vframe);
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

/* A pid or reference at p in the form erts sends it (its node a
 * SMALL_ATOM_UTF8 of ASCII, which is valid; a reference of 1 to 5
 * words): its length, or 0 when it is another form or runs past lim. */
static size_t flat_ident(const char *p, const char *lim) {
  size_t hdr = 1, tail = 12, k;
  if ((unsigned char)p[0] == ETF_NEWER_REFERENCE) {
    size_t w;
    if (lim - p < 3)
      return 0;
    w = cn__get16(p + 1);
    if (w == 0 || w > CN_REF_MAX_WORDS)
      return 0;
    hdr = 3;
    tail = 4 + 4 * w;
  }
  if (lim - p < (ptrdiff_t)hdr + 2 ||
      (unsigned char)p[hdr] != ETF_SMALL_ATOM_UTF8)
    return 0;
  k = hdr + 2 + (unsigned char)p[hdr + 1];
  if ((size_t)(lim - p) < k ||
      !cn__ascii_only_long((const unsigned char *)p + hdr + 2, k - hdr - 2))
    return 0;
  return k + tail;
}

static const char *flat_idents(const char *p, const char *lim);

/* The flat check (term_internal.h), of pids and references too when
 * idents.  Without, it meets one by a tail call to the check with, from
 * the start: {get, 1} is then checked by a leaf, which saves and restores
 * no registers (with the call inline, it took 16 instructions more under
 * callgrind). */
static inline __attribute__((always_inline)) const char *
flat(const char *p, const char *lim, bool idents) {
  const char *start = p;
  size_t n = 1, k;

  if (lim - p >= 2 && (unsigned char)p[0] == ETF_SMALL_TUPLE) {
    n = (unsigned char)p[1]; /* a depth of 1: any max_depth allows it */
    p += 2;
  }
  for (; n > 0; n--, p += k) {
    if (p == lim)
      return NULL;
    switch ((unsigned char)p[0]) {
    case ETF_SMALL_INTEGER:
      k = 2;
      break;
    case ETF_INTEGER:
      k = 5;
      break;
    case ETF_NIL:
      k = 1;
      break;
    case ETF_SMALL_ATOM_UTF8: /* under 256 ASCII characters: valid */
      if (lim - p < 2)
        return NULL;
      k = 2 + (unsigned char)p[1];
      if ((size_t)(lim - p) >= k &&
          !cn__ascii_only((const unsigned char *)p + 2, k - 2))
        return NULL;
      break;
    default: /* a pid or reference here, not a case of the switch, which
              * would then span more tags and cost more */
      if ((unsigned char)p[0] != ETF_NEW_PID &&
          (unsigned char)p[0] != ETF_NEWER_REFERENCE)
        return NULL;
      if (!idents)
        return flat_idents(start, lim);
      if ((k = flat_ident(p, lim)) == 0)
        return NULL;
    }
    if ((size_t)(lim - p) < k)
      return NULL;
  }
  return p;
}

static __attribute__((noinline)) const char *flat_idents(const char *p,
                                                         const char *lim) {
  return flat(p, lim, true);
}

/* The commonest messages (term_internal.h). */
const char *cn__term_flat(const char *p, const char *lim) {
  return flat(p, lim, false);
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
  if (lim != NULL && lim->max_depth != 0)
    max_depth = lim->max_depth;
  if (lim != NULL && lim->max_size != 0)
    max_size = lim->max_size;
  start = buf + *off;
  end = buf + len;
  stop = (size_t)(end - start) > max_size ? start + max_size : end;
  if ((after = cn__term_flat(start, stop)) != NULL) {
    *off = (size_t)(after - buf);
    return 0;
  }
  if ((rc = validate(start, stop, end, max_depth, &after)) == 0)
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
  if ((rc = cn_term_validate(buf, len, &off, lim)) != 0)
    return rc;
  if (off != len)
    return CN_EBADTERM; /* bytes after the term */
  out->ptr = buf + 1;
  out->len = len - 1;
  return 0;
}
