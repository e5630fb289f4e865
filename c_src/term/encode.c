/* Low-level encoders.  Each picks the encoding term_to_binary/2 picks on
 * OTP 25 with {minor_version, 2} (the encoding the distribution uses):
 * the smallest integer form, NEW_FLOAT_EXT, SMALL_ATOM_UTF8_EXT, and
 * NEW_PID_EXT / NEWER_REFERENCE_EXT for identifiers.
 */
#include <math.h>
#include <string.h>

#include "term_internal.h"

int cn__enc_atom(cn_buf *b, const char *s, size_t n) {
  long chars;
  char *d;

  if (n > 4 * 255 || (n != 0 && s == NULL))
    return CN_EINVAL;
  chars = cn__utf8_count((const unsigned char *)s, n);
  if (chars < 0 || chars > 255)
    return CN_EINVAL;
  if ((d = cn__room(b, n + 3)) == NULL)
    return CN_ENOMEM;
  if (n <= 255) {
    d[0] = (char)ETF_SMALL_ATOM_UTF8;
    d[1] = (char)n;
    d += 2;
    b->len += 2 + n;
  } else {
    d[0] = (char)ETF_ATOM_UTF8;
    cn__put16(d + 1, (uint32_t)n);
    d += 3;
    b->len += 3 + n;
  }
  if (n != 0)
    memcpy(d, s, n);
  return 0;
}

/* SMALL_BIG_EXT for a magnitude that needs more than 31 bits. */
static int enc_big64(cn_buf *b, int neg, uint64_t mag) {
  char *d = cn__room(b, 11);
  size_t n = 0;
  if (d == NULL)
    return CN_ENOMEM;
  d[0] = (char)ETF_SMALL_BIG;
  d[2] = (char)neg;
  while (mag != 0) {
    d[3 + n++] = (char)(mag & 0xFF);
    mag >>= 8;
  }
  d[1] = (char)n;
  b->len += 3 + n;
  return 0;
}

int cn__enc_int(cn_buf *b, int64_t v) {
  char *d;
  if (v >= 0 && v <= 255) {
    if ((d = cn__room(b, 2)) == NULL)
      return CN_ENOMEM;
    d[0] = (char)ETF_SMALL_INTEGER;
    d[1] = (char)v;
    b->len += 2;
    return 0;
  }
  if (v >= INT32_MIN && v <= INT32_MAX) {
    if ((d = cn__room(b, 5)) == NULL)
      return CN_ENOMEM;
    d[0] = (char)ETF_INTEGER;
    cn__put32(d + 1, (uint32_t)v);
    b->len += 5;
    return 0;
  }
  if (v < 0)
    return enc_big64(b, 1, (uint64_t)0 - (uint64_t)v);
  return enc_big64(b, 0, (uint64_t)v);
}

int cn__enc_uint(cn_buf *b, uint64_t v) {
  if (v <= INT32_MAX)
    return cn__enc_int(b, (int64_t)v);
  return enc_big64(b, 0, v);
}

int cn__enc_bigmag(cn_buf *b, int neg, const unsigned char *be, size_t n) {
  size_t i;
  char *d;

  while (n > 0 && be[0] == 0) {
    be++;
    n--;
  }
  if (n <= 8) {
    uint64_t m = 0;
    for (i = 0; i < n; i++)
      m = (m << 8) | be[i];
    if (!neg)
      return cn__enc_uint(b, m);
    if (m <= (uint64_t)1 << 31)
      return cn__enc_int(b, -(int64_t)m);
    return enc_big64(b, 1, m);
  }
  if (n > UINT32_MAX)
    return CN_EINVAL;
  if ((d = cn__room(b, n + 6)) == NULL)
    return CN_ENOMEM;
  if (n <= 255) {
    d[0] = (char)ETF_SMALL_BIG;
    d[1] = (char)n;
    d[2] = (char)(neg != 0);
    d += 3;
    b->len += 3 + n;
  } else {
    d[0] = (char)ETF_LARGE_BIG;
    cn__put32(d + 1, (uint32_t)n);
    d[5] = (char)(neg != 0);
    d += 6;
    b->len += 6 + n;
  }
  for (i = 0; i < n; i++)
    d[i] = (char)be[n - 1 - i];
  return 0;
}

int cn__enc_double(cn_buf *b, double v) {
  uint64_t bits;
  char *d;
  if (!isfinite(v))
    return CN_EINVAL; /* a BEAM would reject the message */
  if ((d = cn__room(b, 9)) == NULL)
    return CN_ENOMEM;
  memcpy(&bits, &v, sizeof bits);
  d[0] = (char)ETF_NEW_FLOAT;
  cn__put32(d + 1, (uint32_t)(bits >> 32));
  cn__put32(d + 5, (uint32_t)bits);
  b->len += 9;
  return 0;
}

int cn__enc_binary(cn_buf *b, const void *p, size_t n) {
  char *d;
  if (n > UINT32_MAX || (n != 0 && p == NULL))
    return CN_EINVAL;
  if ((d = cn__room(b, n + 5)) == NULL)
    return CN_ENOMEM;
  d[0] = (char)ETF_BINARY;
  cn__put32(d + 1, (uint32_t)n);
  if (n != 0)
    memcpy(d + 5, p, n);
  b->len += 5 + n;
  return 0;
}

int cn__enc_charlist(cn_buf *b, const char *s, size_t n) {
  size_t i;
  char *d;

  if (n != 0 && s == NULL)
    return CN_EINVAL;
  if (n == 0) {
    if ((d = cn__room(b, 1)) == NULL)
      return CN_ENOMEM;
    d[0] = (char)ETF_NIL;
    b->len++;
    return 0;
  }
  if (n <= 0xFFFF) {
    if ((d = cn__room(b, n + 3)) == NULL)
      return CN_ENOMEM;
    d[0] = (char)ETF_STRING;
    cn__put16(d + 1, (uint32_t)n);
    memcpy(d + 3, s, n);
    b->len += 3 + n;
    return 0;
  }
  /* STRING_EXT's length has 16 bits; erts falls back to LIST_EXT. */
  if (n > UINT32_MAX || n > (SIZE_MAX - 6) / 2)
    return CN_EINVAL;
  if ((d = cn__room(b, 2 * n + 6)) == NULL)
    return CN_ENOMEM;
  d[0] = (char)ETF_LIST;
  cn__put32(d + 1, (uint32_t)n);
  d += 5;
  for (i = 0; i < n; i++) {
    *d++ = (char)ETF_SMALL_INTEGER;
    *d++ = s[i];
  }
  *d = (char)ETF_NIL;
  b->len += 2 * n + 6;
  return 0;
}

/* The node's name as an atom, the way erts would write it. */
static int enc_node(cn_buf *b, uint32_t node) {
  const char *name = cn_node_name(node);
  if (name == NULL)
    return CN_EINVAL;
  return cn__enc_atom(b, name, strlen(name));
}

int cn__enc_pid(cn_buf *b, const cn_pid *p) {
  size_t start = b->len;
  char *d;
  int rc;

  if (p == NULL)
    return CN_EINVAL;
  if ((d = cn__room(b, 1)) == NULL)
    return CN_ENOMEM;
  d[0] = (char)ETF_NEW_PID;
  b->len++;
  if ((rc = enc_node(b, p->node)) != 0)
    goto fail;
  if ((d = cn__room(b, 12)) == NULL) {
    rc = CN_ENOMEM;
    goto fail;
  }
  cn__put32(d, p->id);
  cn__put32(d + 4, p->serial);
  cn__put32(d + 8, p->creation);
  b->len += 12;
  return 0;
fail:
  b->len = start;
  return rc;
}

int cn__enc_ref(cn_buf *b, const cn_ref *r) {
  size_t start = b->len;
  uint32_t i;
  char *d;
  int rc;

  if (r == NULL || r->len == 0 || r->len > CN_REF_MAX_WORDS)
    return CN_EINVAL;
  if ((d = cn__room(b, 3)) == NULL)
    return CN_ENOMEM;
  d[0] = (char)ETF_NEWER_REFERENCE;
  cn__put16(d + 1, r->len);
  b->len += 3;
  if ((rc = enc_node(b, r->node)) != 0)
    goto fail;
  if ((d = cn__room(b, 4 + 4 * (size_t)r->len)) == NULL) {
    rc = CN_ENOMEM;
    goto fail;
  }
  cn__put32(d, r->creation);
  for (i = 0; i < r->len; i++)
    cn__put32(d + 4 + 4 * i, r->n[i]);
  b->len += 4 + 4 * (size_t)r->len;
  return 0;
fail:
  b->len = start;
  return rc;
}

/* Records the first error in the buffer's sticky field. */
static int sticky(cn_buf *b, int rc) {
  if (rc != 0 && b->err == 0)
    b->err = rc;
  return rc;
}

int cn_put_atom(cn_buf *b, const char *utf8) {
  if (utf8 == NULL)
    return sticky(b, CN_EINVAL);
  return sticky(b, cn__enc_atom(b, utf8, strlen(utf8)));
}

int cn_put_atom_len(cn_buf *b, const char *utf8, size_t len) {
  return sticky(b, cn__enc_atom(b, utf8, len));
}

int cn_put_int(cn_buf *b, int64_t v) { return sticky(b, cn__enc_int(b, v)); }

int cn_put_uint(cn_buf *b, uint64_t v) { return sticky(b, cn__enc_uint(b, v)); }

int cn_put_double(cn_buf *b, double v) {
  return sticky(b, cn__enc_double(b, v));
}

int cn_put_binary(cn_buf *b, const void *p, size_t n) {
  return sticky(b, cn__enc_binary(b, p, n));
}

int cn_put_charlist(cn_buf *b, const char *s, size_t n) {
  return sticky(b, cn__enc_charlist(b, s, n));
}

int cn_put_tuple(cn_buf *b, uint32_t arity) {
  char *d = cn__room(b, 5);
  if (d == NULL)
    return sticky(b, CN_ENOMEM);
  if (arity <= 255) {
    d[0] = (char)ETF_SMALL_TUPLE;
    d[1] = (char)arity;
    b->len += 2;
  } else {
    d[0] = (char)ETF_LARGE_TUPLE;
    cn__put32(d + 1, arity);
    b->len += 5;
  }
  return 0;
}

int cn_put_list(cn_buf *b, uint32_t n) {
  char *d;
  if (n == 0)
    return 0; /* the tail alone is the term */
  if ((d = cn__room(b, 5)) == NULL)
    return sticky(b, CN_ENOMEM);
  d[0] = (char)ETF_LIST;
  cn__put32(d + 1, n);
  b->len += 5;
  return 0;
}

int cn_put_nil(cn_buf *b) {
  char *d = cn__room(b, 1);
  if (d == NULL)
    return sticky(b, CN_ENOMEM);
  d[0] = (char)ETF_NIL;
  b->len++;
  return 0;
}

int cn_put_map(cn_buf *b, uint32_t pairs) {
  char *d = cn__room(b, 5);
  if (d == NULL)
    return sticky(b, CN_ENOMEM);
  d[0] = (char)ETF_MAP;
  cn__put32(d + 1, pairs);
  b->len += 5;
  return 0;
}

int cn_put_pid(cn_buf *b, const cn_pid *p) {
  return sticky(b, cn__enc_pid(b, p));
}

int cn_put_ref(cn_buf *b, const cn_ref *r) {
  return sticky(b, cn__enc_ref(b, r));
}

int cn_put_term(cn_buf *b, cn_term t) {
  if (t.len != 0 && t.ptr == NULL)
    return sticky(b, CN_EINVAL);
  return sticky(b, cn_buf_append(b, t.ptr, t.len));
}
