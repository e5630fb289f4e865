/* Low-level encoders.  ei_encode_* writes the bytes, straight into room
 * reserved at the end of the buffer (ei's index starts at 0 there, so a
 * term is limited to INT_MAX bytes).  The result is the encoding
 * term_to_binary/2 picks on OTP 25 with {minor_version, 2}, the one the
 * distribution uses: the smallest integer form, NEW_FLOAT_EXT,
 * SMALL_ATOM_UTF8_EXT, and NEW_PID_EXT / NEWER_REFERENCE_EXT.  The one
 * place ei picks differently (integers of 28 to 31 bits) is written by
 * hand; see cn__enc_int.
 *
 * None of these needs ei_init(): it only sets up ei's connection and name
 * resolution state, which the codec functions never touch.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include <ei.h>

#include "term_internal.h"

/* Accounts for what an ei_encode_* call wrote (*idx bytes) at the end of
 * b; ei reports a refused argument with a negative result.  idx is a
 * pointer so that it is read after the call, which is an argument. */
static inline int wrote(cn_buf *b, int rc, const int *idx) {
  if (rc < 0)
    return CN_EINVAL;
  b->len += (size_t)*idx;
  return 0;
}

int cn__enc_atom(cn_buf *b, const char *s, size_t n) {
  long chars;
  size_t k;
  char *d;
  int i = 0;

  if (n > 4 * 255 || (n != 0 && s == NULL))
    return CN_EINVAL;
  /* A short ASCII name, which nearly every atom is, is written inline: the
   * call into ei, with its own UTF-8 pass, made 'ok' 35% slower. */
  if (n <= 255) {
    if ((d = cn__room(b, n + 2)) == NULL)
      return CN_ENOMEM;
    for (k = 0; k < n && (signed char)s[k] >= 0; k++)
      d[2 + k] = s[k];
    if (k == n) {
      d[0] = (char)ETF_SMALL_ATOM_UTF8;
      d[1] = (char)n;
      b->len += n + 2;
      return 0;
    }
  }
  /* ei's own UTF-8 check lets overlong forms and surrogates through. */
  chars = cn__utf8_count((const unsigned char *)s, n);
  if (chars < 0 || chars > 255)
    return CN_EINVAL;
  if ((d = cn__room(b, n + 3)) == NULL)
    return CN_ENOMEM;
  return wrote(b,
               ei_encode_atom_len_as(d, &i, n != 0 ? s : "", (int)n,
                                     ERLANG_UTF8, ERLANG_UTF8),
               &i);
}

/* SMALL_BIG_EXT for a magnitude of more than 31 bits.  ei_encode_ulonglong
 * writes it unsigned; the sign byte is set after, because
 * ei_encode_longlong negates its argument, which overflows for INT64_MIN. */
static int enc_big64(cn_buf *b, int neg, uint64_t mag) {
  char *d = cn__room(b, 11);
  int i = 0;
  if (d == NULL)
    return CN_ENOMEM;
  ei_encode_ulonglong(d, &i, mag);
  d[2] = (char)(neg != 0);
  return wrote(b, 0, &i);
}

/* SMALL_INTEGER_EXT and INTEGER_EXT are written by hand: ei's INTEGER_EXT
 * stops at 28 bits (its ERL_MAX), so it writes 2^27 .. 2^31 - 1 as
 * SMALL_BIG_EXT, where term_to_binary writes INTEGER_EXT.  Small integers
 * are also the commonest term in a message, and inline they cost no call. */
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
  return enc_big64(b, v < 0, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

int cn__enc_mag64(cn_buf *b, int neg, uint64_t m) {
  /* INTEGER_EXT holds up to 2^31 - 1, and 2^31 when negative. */
  if (m <= (uint64_t)INT32_MAX + (neg != 0))
    return cn__enc_int(b, neg ? -(int64_t)m : (int64_t)m);
  return enc_big64(b, neg, m);
}

int cn__enc_big(cn_buf *b, int neg, const unsigned short *digits, size_t n) {
  erlang_big big;
  uint64_t m = 0;
  size_t k;
  char *d;
  int i = 0;

  /* With no high zero bytes, a magnitude of up to 8 bytes fits in 64 bits
   * and has a smaller encoding than a bignum's. */
  while (n > 0 && ((digits[(n - 1) / 2] >> (8 * ((n - 1) % 2))) & 0xFF) == 0)
    n--;
  if (n <= 8) {
    for (k = n; k-- > 0;)
      m = (m << 8) | ((digits[k / 2] >> (8 * (k % 2))) & 0xFF);
    return cn__enc_mag64(b, neg, m);
  }
  if (n > INT_MAX - 6)
    return CN_EINVAL;
  if ((d = cn__room(b, n + 6)) == NULL)
    return CN_ENOMEM;
  big.arity = (unsigned int)n;
  big.is_neg = neg != 0;
  big.digits = (void *)digits;
  return wrote(b, ei_encode_big(d, &i, &big), &i);
}

int cn__enc_double(cn_buf *b, double v) {
  char *d;
  int i = 0;
  if (!isfinite(v))
    return CN_EINVAL; /* a BEAM would reject the message */
  if ((d = cn__room(b, 9)) == NULL)
    return CN_ENOMEM;
  return wrote(b, ei_encode_double(d, &i, v), &i);
}

int cn__enc_binary(cn_buf *b, const void *p, size_t n) {
  char *d;
  int i = 0;
  if (n > INT_MAX - 5 || (n != 0 && p == NULL))
    return CN_EINVAL;
  if ((d = cn__room(b, n + 5)) == NULL)
    return CN_ENOMEM;
  return wrote(b, ei_encode_binary(d, &i, n != 0 ? p : "", (long)n), &i);
}

/* ei, like erts, falls back to LIST_EXT past STRING_EXT's 16-bit length. */
int cn__enc_charlist(cn_buf *b, const char *s, size_t n) {
  size_t max = n <= 0xFFFF ? n + 3 : 2 * n + 6;
  char *d;
  int i = 0;

  if ((n != 0 && s == NULL) || n > (INT_MAX - 6) / 2)
    return CN_EINVAL;
  if ((d = cn__room(b, max)) == NULL)
    return CN_ENOMEM;
  return wrote(b, ei_encode_string_len(d, &i, s, (int)n), &i);
}

/* Pids and references are written here around the node's atom, which
 * goes through ei_encode_atom_len_as straight from the node table.
 * ei_encode_pid / _ref take the name inside a 1 KiB erlang_pid, and
 * copying it there, for ei to measure and check it again, made encoding a
 * pid half as fast again (14 -> 27 ns); every $gen_call carries one. */
static int enc_ident(cn_buf *b, char tag, uint32_t node, uint32_t len,
                     const uint32_t *w, size_t nw) {
  const char *name = cn_node_name(node);
  size_t start = b->len, k;
  char *d;
  int rc;

  if (name == NULL)
    return CN_EINVAL;
  if ((d = cn__room(b, 3)) == NULL)
    return CN_ENOMEM;
  d[0] = tag;
  cn__put16(d + 1, len); /* NEWER_REFERENCE_EXT's word count */
  b->len += tag == (char)ETF_NEW_PID ? 1 : 3;
  if ((rc = cn__enc_atom(b, name, strlen(name))) == 0 &&
      (d = cn__room(b, 4 * nw)) == NULL)
    rc = CN_ENOMEM;
  if (rc != 0) {
    b->len = start;
    return rc;
  }
  for (k = 0; k < nw; k++)
    cn__put32(d + 4 * k, w[k]);
  b->len += 4 * nw;
  return 0;
}

int cn__enc_pid(cn_buf *b, const cn_pid *p) {
  if (p == NULL)
    return CN_EINVAL;
  return enc_ident(b, (char)ETF_NEW_PID, p->node, 0,
                   (const uint32_t[]){p->id, p->serial, p->creation}, 3);
}

int cn__enc_ref(cn_buf *b, const cn_ref *r) {
  uint32_t w[1 + CN_REF_MAX_WORDS];
  if (r == NULL || r->len == 0 || r->len > CN_REF_MAX_WORDS)
    return CN_EINVAL;
  w[0] = r->creation;
  memcpy(w + 1, r->n, r->len * sizeof w[0]);
  return enc_ident(b, (char)ETF_NEWER_REFERENCE, r->node, r->len, w,
                   1 + r->len);
}

/* Records the first error in the buffer's sticky field. */
static int sticky(cn_buf *b, int rc) {
  if (rc != 0 && b->err == 0)
    b->err = rc;
  return rc;
}

/* Writes a container header with ei (5 bytes at most). */
static int header(cn_buf *b, int (*enc)(char *, int *, int), uint32_t n) {
  char *d = cn__room(b, 5);
  int i = 0;
  if (d == NULL)
    return sticky(b, CN_ENOMEM);
  if (n > INT_MAX)
    return sticky(b, CN_EINVAL);
  return sticky(b, wrote(b, enc(d, &i, (int)n), &i));
}

int cn_put_atom(cn_buf *b, const char *utf8) {
  return sticky(b,
                utf8 == NULL ? CN_EINVAL : cn__enc_atom(b, utf8, strlen(utf8)));
}

int cn_put_atom_len(cn_buf *b, const char *utf8, size_t len) {
  return sticky(b, cn__enc_atom(b, utf8, len));
}

int cn_put_int(cn_buf *b, int64_t v) { return sticky(b, cn__enc_int(b, v)); }

int cn_put_uint(cn_buf *b, uint64_t v) {
  return sticky(b, cn__enc_mag64(b, 0, v));
}

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
  return header(b, ei_encode_tuple_header, arity);
}

int cn_put_list(cn_buf *b, uint32_t n) {
  if (n == 0)
    return 0; /* the tail alone is the term (ei would write a nil) */
  return header(b, ei_encode_list_header, n);
}

int cn_put_nil(cn_buf *b) { return header(b, ei_encode_list_header, 0); }

int cn_put_map(cn_buf *b, uint32_t pairs) {
  return header(b, ei_encode_map_header, pairs);
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
