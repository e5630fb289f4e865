/* cn_build: terms from Erlang-like format strings.
 *
 * One pass over the format writes the encoding straight into the buffer.
 * A container's header goes out with a placeholder count, patched when
 * the container closes; the few containers whose best encoding is only
 * known at the end are rewritten then, in place:
 *  - a tuple of more than 255 elements moves 3 bytes up (LARGE_TUPLE_EXT);
 *  - a proper list of small integers 0..255 becomes a STRING_EXT, and
 *    [a, b | [c]] becomes one list, as term_to_binary would write them;
 *  - map pairs are sorted by key, and a repeated key keeps its last value
 *    (as the Erlang expression #{a => 1, a => 2} does).
 * Nothing is allocated unless the buffer must grow, or a map with more
 * than a few pairs needs sorting.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

/* Formats nest containers at most this deep. */
#define MAX_NEST 64

enum { B_TUPLE, B_LIST, B_TAIL, B_MAP_K, B_MAP_V };

typedef struct bframe {
  size_t hdr;     /* offset of the container's tag */
  size_t tail;    /* B_TAIL: offset of the tail term */
  uint32_t count; /* elements, or pairs of a map */
  int kind;
} bframe;

static inline const char *ws(const char *f) {
  while (*f == ' ' || *f == '\t' || *f == '\n' || *f == '\r')
    f++;
  return f;
}

static inline int is_lower(char c) { return c >= 'a' && c <= 'z'; }

static inline int is_name(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '@';
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* ---- Literals ------------------------------------------------------------ */

/* Decodes a quoted literal (atom or string) that starts after its opening
 * quote q.  Escapes: \\ \' \" \n \r \t \e \0.  Returns the position after
 * the closing quote, or NULL when the literal does not end; *out and *n
 * describe the text (a view of the format when there is no escape). */
static const char *quoted(const char *f, char q, char *tmp, size_t cap,
                          const char **out, size_t *n) {
  const char *s = f;
  size_t k = 0;

  while (*s != q && *s != '\\' && *s != '\0')
    s++;
  if (*s == q) {
    *out = f;
    *n = (size_t)(s - f);
    return s + 1;
  }
  for (s = f; *s != q; s++) {
    char c = *s;
    if (c == '\0')
      return NULL;
    if (c == '\\') {
      switch (*++s) {
      case '\\':
        c = '\\';
        break;
      case '\'':
        c = '\'';
        break;
      case '"':
        c = '"';
        break;
      case 'n':
        c = '\n';
        break;
      case 'r':
        c = '\r';
        break;
      case 't':
        c = '\t';
        break;
      case 'e':
        c = 27;
        break;
      case '0':
        c = '\0';
        break;
      default:
        return NULL;
      }
    }
    if (k == cap)
      return NULL;
    tmp[k++] = c;
  }
  *out = tmp;
  *n = k;
  return s + 1;
}

/* Text of the number at f: [-]digits[.digits[(e|E)[+|-]digits]]. */
static const char *number_end(const char *f, int *is_float) {
  const char *s = f;
  *is_float = 0;
  if (*s == '-')
    s++;
  if (!is_digit(*s))
    return NULL;
  while (is_digit(*s))
    s++;
  if (*s == '.' && is_digit(s[1])) {
    *is_float = 1;
    s++;
    while (is_digit(*s))
      s++;
    if (*s == 'e' || *s == 'E') {
      const char *e = s + 1;
      if (*e == '+' || *e == '-')
        e++;
      if (!is_digit(*e))
        return NULL;
      while (is_digit(*e))
        e++;
      s = e;
    }
  }
  return s;
}

/* Parses a float literal without the C locale's decimal point: the digits
 * are rewritten as an integer mantissa and a decimal exponent. */
static int parse_float(const char *f, const char *end, double *out) {
  char tmp[512];
  size_t k = 0;
  long exp10 = 0, frac = 0;
  const char *s = f;
  int seen_dot = 0;

  if (*s == '-')
    tmp[k++] = *s++;
  for (; s < end && *s != 'e' && *s != 'E'; s++) {
    if (*s == '.') {
      seen_dot = 1;
      continue;
    }
    if (k + 32 >= sizeof tmp)
      return CN_EBADFMT;
    tmp[k++] = *s;
    frac += seen_dot;
  }
  if (s < end)
    exp10 = strtol(s + 1, NULL, 10);
  if (exp10 > 100000 || exp10 < -100000)
    return CN_EBADFMT;
  k += (size_t)snprintf(tmp + k, sizeof tmp - k, "e%ld", exp10 - frac);
  tmp[k] = '\0';
  *out = strtod(tmp, NULL);
  return 0;
}

/* Encodes an integer literal of any size. */
static int enc_int_literal(cn_buf *b, const char *f, const char *end) {
  int neg = *f == '-';
  const char *s = f + neg;
  size_t nd = (size_t)(end - s), i, n = 0;
  unsigned short small[16], *dig;
  uint64_t v = 0;
  int rc;

  if (nd <= 19) {
    for (; s < end; s++)
      v = v * 10 + (uint64_t)(*s - '0');
    return cn__enc_mag64(b, neg, v);
  }
  /* A bignum: schoolbook decimal to ei's base-65536 digits, least
   * significant first (about 0.21 digits per decimal digit). */
  dig = nd / 4 + 2 <= 16 ? small : malloc((nd / 4 + 2) * sizeof *dig);
  if (dig == NULL)
    return CN_ENOMEM;
  for (; s < end; s++) {
    unsigned long carry = (unsigned long)(*s - '0');
    for (i = 0; i < n; i++) {
      unsigned long x = dig[i] * 10ul + carry;
      dig[i] = (unsigned short)x;
      carry = x >> 16;
    }
    if (carry != 0)
      dig[n++] = (unsigned short)carry;
  }
  rc = cn__enc_big(b, neg, dig, 2 * n);
  if (dig != small)
    free(dig);
  return rc;
}

/* ---- Closing containers -------------------------------------------------- */

static int close_tuple(cn_buf *b, bframe *fr) {
  char *d;
  if (fr->count <= 255) {
    b->data[fr->hdr + 1] = (char)fr->count;
    return 0;
  }
  if (cn__room(b, 3) == NULL)
    return CN_ENOMEM;
  d = b->data + fr->hdr;
  memmove(d + 5, d + 2, b->len - fr->hdr - 2);
  d[0] = (char)ETF_LARGE_TUPLE;
  cn__put32(d + 1, fr->count);
  b->len += 3;
  return 0;
}

/* Finishes a LIST_EXT at hdr with count elements and its tail already
 * written: a proper list of small integers becomes a STRING_EXT. */
static void finish_list(cn_buf *b, size_t hdr, uint32_t count) {
  char *d = b->data + hdr;
  size_t i, p = 5;

  cn__put32(d + 1, count);
  if (count > 0xFFFF)
    return;
  for (i = 0; i < count; i++, p += 2)
    if ((unsigned char)d[p] != ETF_SMALL_INTEGER)
      return;
  if ((unsigned char)d[p] != ETF_NIL || hdr + p + 1 != b->len)
    return;
  d[0] = (char)ETF_STRING;
  cn__put16(d + 1, count);
  for (i = 0; i < count; i++)
    d[3 + i] = d[5 + 2 * i + 1];
  b->len = hdr + 3 + count;
}

static int close_list(cn_buf *b, bframe *fr) {
  char *d = cn__room(b, 1);
  if (d == NULL)
    return CN_ENOMEM;
  *d = (char)ETF_NIL;
  b->len++;
  finish_list(b, fr->hdr, fr->count);
  return 0;
}

/* Closes [.. | Tail]: a tail that is itself a list joins this one. */
static int close_tail(cn_buf *b, bframe *fr) {
  size_t t = fr->tail;
  unsigned char tag = (unsigned char)b->data[t];
  uint64_t count = fr->count;

  if (tag == ETF_NIL ||
      (tag == ETF_STRING && cn__get16(b->data + t + 1) == 0)) {
    b->len = t;
    b->data[b->len++] = (char)ETF_NIL;
  } else if (tag == ETF_LIST) {
    count += cn__get32(b->data + t + 1);
    memmove(b->data + t, b->data + t + 5, b->len - t - 5);
    b->len -= 5;
  } else if (tag == ETF_STRING) {
    size_t m = cn__get16(b->data + t + 1), i;
    char small[256], *s;
    if (cn__room(b, m) == NULL)
      return CN_ENOMEM;
    s = m <= sizeof small ? small : malloc(m);
    if (s == NULL)
      return CN_ENOMEM;
    memcpy(s, b->data + t + 3, m);
    for (i = 0; i < m; i++) {
      b->data[t + 2 * i] = (char)ETF_SMALL_INTEGER;
      b->data[t + 2 * i + 1] = s[i];
    }
    b->data[t + 2 * m] = (char)ETF_NIL;
    b->len = t + 2 * m + 1;
    count += m;
    if (s != small)
      free(s);
  }
  if (count > UINT32_MAX)
    return CN_EINVAL;
  finish_list(b, fr->hdr, (uint32_t)count);
  return 0;
}

typedef struct pair {
  size_t k, v, end; /* offsets of key, value, and the byte after */
  int drop;         /* a later pair has the same key */
} pair;

static int pair_cmp(const cn_buf *b, const pair *x, const pair *y) {
  return cn__compare(b->data + x->k, b->data + y->k, 0, 1);
}

/* Stable merge sort of pairs by key. */
static void sort_pairs(const cn_buf *b, pair *v, pair *tmp, size_t n) {
  size_t i, j, k, mid;
  if (n <= 8) {
    for (i = 1; i < n; i++) {
      pair x = v[i];
      for (j = i; j > 0 && pair_cmp(b, &v[j - 1], &x) > 0; j--)
        v[j] = v[j - 1];
      v[j] = x;
    }
    return;
  }
  mid = n / 2;
  sort_pairs(b, v, tmp, mid);
  sort_pairs(b, v + mid, tmp, n - mid);
  memcpy(tmp, v, mid * sizeof *v);
  i = 0;
  j = mid;
  k = 0;
  while (i < mid && j < n) {
    if (pair_cmp(b, &v[j], &tmp[i]) < 0)
      v[k++] = v[j++];
    else
      v[k++] = tmp[i++];
  }
  while (i < mid)
    v[k++] = tmp[i++];
}

/* Puts map pairs in key order, as term_to_binary writes maps of up to 32
 * pairs (larger ones it writes in hash order, which is not reproducible
 * here; key order is valid for any size). */
static int close_map(cn_buf *b, bframe *fr) {
  pair inl[16], *v = inl;
  size_t n = fr->count, i, out, body = fr->hdr + 5, size;
  const char *p = b->data + body;
  uint32_t kept = 0;
  char *copy;
  int sorted = 1;

  cn__put32(b->data + fr->hdr + 1, (uint32_t)n);
  if (n < 2)
    return 0;
  if (n > sizeof inl / (2 * sizeof *inl)) {
    v = malloc(2 * n * sizeof *v);
    if (v == NULL)
      return CN_ENOMEM;
  }
  for (i = 0; i < n; i++) {
    v[i].k = (size_t)(p - b->data);
    p = cn__skip(p);
    v[i].v = (size_t)(p - b->data);
    p = cn__skip(p);
    v[i].end = (size_t)(p - b->data);
    v[i].drop = 0;
    if (i > 0 && sorted && pair_cmp(b, &v[i - 1], &v[i]) >= 0)
      sorted = 0;
  }
  if (sorted)
    goto done;
  sort_pairs(b, v, v + n, n);
  for (i = 0; i + 1 < n; i++)
    v[i].drop = pair_cmp(b, &v[i], &v[i + 1]) == 0;
  size = b->len - body;
  copy = malloc(size);
  if (copy == NULL) {
    if (v != inl)
      free(v);
    return CN_ENOMEM;
  }
  memcpy(copy, b->data + body, size);
  out = body;
  for (i = 0; i < n; i++) {
    size_t len = v[i].end - v[i].k;
    if (v[i].drop)
      continue;
    memcpy(b->data + out, copy + (v[i].k - body), len);
    out += len;
    kept++;
  }
  free(copy);
  b->len = out;
  cn__put32(b->data + fr->hdr + 1, kept);
done:
  if (v != inl)
    free(v);
  return 0;
}

/* ---- The parser ---------------------------------------------------------- */

static int hole(cn_buf *b, char h, va_list *ap, int key_mode) {
  if (key_mode) {
    const char *s;
    if (h != 'A')
      return CN_EBADFMT;
    s = va_arg(*ap, const char *);
    if (s == NULL)
      return CN_EINVAL;
    return cn__enc_atom(b, s, strlen(s));
  }
  switch (h) {
  case 'a': {
    const char *s = va_arg(*ap, const char *);
    if (s == NULL)
      return CN_EINVAL;
    return cn__enc_atom(b, s, strlen(s));
  }
  case 'i':
    return cn__enc_int(b, va_arg(*ap, int64_t));
  case 'u':
    return cn__enc_uint(b, va_arg(*ap, uint64_t));
  case 'f':
    return cn__enc_double(b, va_arg(*ap, double));
  case 's': {
    const char *s = va_arg(*ap, const char *);
    if (s == NULL)
      return CN_EINVAL;
    return cn__enc_binary(b, s, strlen(s));
  }
  case 'b': {
    const void *p = va_arg(*ap, const void *);
    size_t n = va_arg(*ap, size_t);
    return cn__enc_binary(b, p, n);
  }
  case 'c': {
    const char *s = va_arg(*ap, const char *);
    if (s == NULL)
      return CN_EINVAL;
    return cn__enc_charlist(b, s, strlen(s));
  }
  case 'p':
    return cn__enc_pid(b, va_arg(*ap, const cn_pid *));
  case 'r':
    return cn__enc_ref(b, va_arg(*ap, const cn_ref *));
  case 't': {
    cn_term t = va_arg(*ap, cn_term);
    if (t.len == 0 || t.ptr == NULL)
      return CN_EINVAL;
    return cn_buf_append(b, t.ptr, t.len);
  }
  case 'T': {
    const cn_term *t = va_arg(*ap, const cn_term *);
    if (t == NULL || t->len == 0 || t->ptr == NULL)
      return CN_EINVAL;
    return cn_buf_append(b, t->ptr, t->len);
  }
  default:
    return CN_EBADFMT;
  }
}

int cn__build_one(cn_buf *b, const char **fmtp, va_list *ap, int key_mode) {
  bframe st[MAX_NEST];
  int sp = 0, rc = 0;
  const char *f = *fmtp;
  char *d;

  for (;;) {
    char c;

    /* A term starts here. */
    f = ws(f);
    c = *f;
    if (is_lower(c)) {
      /* A bare atom: ASCII only, so no UTF-8 check is needed. */
      const char *s = f;
      size_t n;
      while (is_name(*f))
        f++;
      n = (size_t)(f - s);
      if (n > 255)
        goto badfmt;
      if ((d = cn__room(b, n + 2)) == NULL)
        goto nomem;
      d[0] = (char)ETF_SMALL_ATOM_UTF8;
      d[1] = (char)n;
      memcpy(d + 2, s, n);
      b->len += n + 2;
    } else if (c == '~') {
      if (f[1] == '\0')
        goto badfmt;
      if ((rc = hole(b, f[1], ap, key_mode)) != 0)
        goto fail;
      f += 2;
    } else if (c == '{' || c == '[' || (c == '#' && f[1] == '{')) {
      int kind = c == '{' ? B_TUPLE : c == '[' ? B_LIST : B_MAP_K;
      char close = c == '[' ? ']' : '}';
      f = ws(f + (c == '#' ? 2 : 1));
      if (*f == close) {
        /* Empty: {} [] #{} */
        f++;
        if ((d = cn__room(b, 5)) == NULL)
          goto nomem;
        if (kind == B_TUPLE) {
          d[0] = (char)ETF_SMALL_TUPLE;
          d[1] = 0;
          b->len += 2;
        } else if (kind == B_LIST) {
          d[0] = (char)ETF_NIL;
          b->len += 1;
        } else {
          d[0] = (char)ETF_MAP;
          cn__put32(d + 1, 0);
          b->len += 5;
        }
      } else {
        if (sp == MAX_NEST)
          goto badfmt;
        if ((d = cn__room(b, 5)) == NULL)
          goto nomem;
        st[sp].hdr = b->len;
        st[sp].count = 0;
        st[sp].kind = kind;
        sp++;
        if (kind == B_TUPLE) {
          d[0] = (char)ETF_SMALL_TUPLE;
          b->len += 2;
        } else {
          d[0] = (char)(kind == B_LIST ? ETF_LIST : ETF_MAP);
          b->len += 5;
        }
        continue;
      }
    } else if (c == '-' || is_digit(c)) {
      int is_float;
      const char *end = number_end(f, &is_float);
      if (end == NULL)
        goto badfmt;
      if (is_float) {
        double v;
        if ((rc = parse_float(f, end, &v)) != 0)
          goto fail;
        rc = cn__enc_double(b, v);
        if (rc == CN_EINVAL)
          rc = CN_EBADFMT; /* a literal out of range, such as 1.0e999 */
      } else {
        rc = enc_int_literal(b, f, end);
      }
      if (rc != 0)
        goto fail;
      f = end;
    } else if (c == '\'' || c == '"') {
      char tmp[4 * 255];
      const char *s;
      size_t n;
      /* Literals longer than tmp only fit when free of escapes; long
       * data belongs in ~s or ~b anyway. */
      f = quoted(f + 1, c, tmp, sizeof tmp, &s, &n);
      if (f == NULL)
        goto badfmt;
      rc = c == '"' ? cn__enc_binary(b, s, n) : cn__enc_atom(b, s, n);
      if (rc == CN_EINVAL)
        rc = CN_EBADFMT; /* an atom literal that is not a valid atom */
      if (rc != 0)
        goto fail;
    } else {
      goto badfmt;
    }

    /* A term is complete: punctuation decides what comes next. */
    for (;;) {
      bframe *fr;
      if (sp == 0) {
        *fmtp = f;
        return 0;
      }
      fr = &st[sp - 1];
      f = ws(f);
      c = *f++;
      if (fr->kind == B_MAP_K) {
        if (c != '=' || *f != '>')
          goto badfmt;
        f++;
        fr->kind = B_MAP_V;
        break;
      }
      if (fr->kind == B_TAIL) {
        if (c != ']')
          goto badfmt;
        if ((rc = close_tail(b, fr)) != 0)
          goto fail;
        sp--;
        continue;
      }
      if (fr->count == UINT32_MAX)
        goto badfmt;
      fr->count++;
      if (c == ',') {
        if (fr->kind == B_MAP_V)
          fr->kind = B_MAP_K;
        break;
      }
      if (fr->kind == B_LIST && c == '|') {
        fr->kind = B_TAIL;
        fr->tail = b->len;
        break;
      }
      if (fr->kind == B_TUPLE && c == '}')
        rc = close_tuple(b, fr);
      else if (fr->kind == B_LIST && c == ']')
        rc = close_list(b, fr);
      else if (fr->kind == B_MAP_V && c == '}')
        rc = close_map(b, fr);
      else
        goto badfmt;
      if (rc != 0)
        goto fail;
      sp--;
    }
  }

badfmt:
  rc = CN_EBADFMT;
  goto fail;
nomem:
  rc = CN_ENOMEM;
fail:
  return rc;
}

int cn_vbuild(cn_buf *b, const char *fmt, va_list ap) {
  size_t start;
  va_list cp;
  int rc;

  if (b == NULL || fmt == NULL)
    return CN_EINVAL;
  start = b->len;
  va_copy(cp, ap);
  rc = cn__build_one(b, &fmt, &cp, 0);
  va_end(cp);
  if (rc == 0 && *ws(fmt) != '\0')
    rc = CN_EBADFMT; /* one term per call */
  if (rc != 0) {
    b->len = start;
    if (b->err == 0)
      b->err = rc;
  }
  return rc;
}

int cn_build(cn_buf *b, const char *fmt, ...) {
  va_list ap;
  int rc;
  va_start(ap, fmt);
  rc = cn_vbuild(b, fmt, ap);
  va_end(ap);
  return rc;
}
