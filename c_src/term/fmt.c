/* By hand: ei_x_format has no maps, refs, bignums, or holes for terms.
 *
 * One lexer for cn_build and cn_match, which read the same syntax: bare and
 * quoted atoms, numbers, "text", holes (~a ~i ...), _ and the brackets of
 * tuples, lists and maps.  This file turns the text at a position into one
 * token, and encodes the number literals; the callers keep their own grammar.
 */
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Unescapes the quoted literal that starts after its opening quote q.
 * Escapes: \\ \' \" \n \r \t \e \0.  Returns the position after the
 * closing quote, or NULL when the literal does not end (or does not fit
 * in tmp); t->s and t->n describe the text, a view of the format when it
 * has no escape. */
static const char *quoted(const char *f, char q, cn__tok *t, char *tmp,
                          size_t cap) {
  static const char from[] = "\\'\"nrte0", to[] = "\\'\"\n\r\t\033";
  const char *s = f;
  size_t k = 0;

  while (*s != q && *s != '\\' && *s != '\0')
    s++;
  if (*s == q) {
    t->s = f;
    t->n = (size_t)(s - f);
    return s + 1;
  }
  for (s = f; *s != q; s++) {
    char c = *s;
    if (c == '\0' || k == cap)
      return NULL;
    if (c == '\\') {
      const char *e = *++s != '\0' ? strchr(from, *s) : NULL;
      if (e == NULL)
        return NULL;
      c = to[e - from]; /* the NUL that ends to[] stands for \0 */
    }
    tmp[k++] = c;
  }
  t->s = tmp;
  t->n = k;
  return s + 1;
}

/* The end of the number at f: [-]digits[.digits[(e|E)[+|-]digits]]. */
static const char *number_end(const char *f, int *is_float) {
  const char *s = f + (*f == '-');
  *is_float = 0;
  if (!is_digit(*s))
    return NULL;
  while (is_digit(*s))
    s++;
  if (*s == '.' && is_digit(s[1])) {
    *is_float = 1;
    for (s++; is_digit(*s); s++)
      ;
    if (*s == 'e' || *s == 'E') {
      const char *e = s + 1 + (s[1] == '+' || s[1] == '-');
      if (!is_digit(*e))
        return NULL;
      while (is_digit(*e))
        e++;
      s = e;
    }
  }
  return s;
}

const char *cn__fmt_literal(const char *f, cn__tok *t, char *tmp, size_t cap) {
  const char *s;
  char c = *f;
  if (c == '-' || is_digit(c)) {
    int is_float;
    if ((s = number_end(f, &is_float)) == NULL)
      return f;
    t->kind = is_float ? CN_TK_FLOAT : CN_TK_INT;
    t->n = (size_t)(s - f);
    return s;
  }
  if (c == '\'' || c == '"') {
    if ((s = quoted(f + 1, c, t, tmp, cap)) == NULL)
      return f;
    t->kind = c == '"' ? CN_TK_STRING : CN_TK_QATOM;
    return s;
  }
  return f;
}

int cn__fmt_int(cn_buf *b, int neg, unsigned base, const char *s,
                const char *end) {
  /* A digit of base 36 holds under 6 bits. */
  size_t nd = (size_t)(end - s), cap = nd * 6 / 16 + 2, i, n = 0;
  unsigned short small[16] = {0}, *dig;
  uint64_t v = 0;
  int rc;

  if (base == 10 && nd <= 19) {
    for (; s < end; s++)
      if (*s != '_')
        v = v * 10 + (uint64_t)(*s - '0');
    return cn__enc_mag64(b, neg, v);
  }
  /* Schoolbook conversion to ei's base-65536 digits, least significant
   * first, taking as many digits at a time as fit in 32 bits;
   * cn__enc_big then picks the smallest encoding. */
  dig = cap <= 16 ? small : calloc(cap, sizeof *dig);
  if (dig == NULL)
    return CN_ENOMEM;
  while (s < end) {
    unsigned long mul = 1, carry = 0;
    for (; s < end && mul < (1ul << 26); s++)
      if (*s != '_') {
        carry = carry * base + (unsigned long)cn__fmt_digit(*s);
        mul *= base;
      }
    for (i = 0; i < n; i++) {
      unsigned long x = dig[i] * mul + carry;
      dig[i] = (unsigned short)x;
      carry = x >> 16;
    }
    for (; carry != 0; carry >>= 16)
      dig[n++] = (unsigned short)carry;
  }
  rc = cn__enc_big(b, neg, dig, 2 * n);
  if (dig != small)
    free(dig);
  return rc;
}

int cn__strtod(const char *s, size_t n, double *out) {
  const char *dp = localeconv()->decimal_point;
  char text[512], *end, *dot;

  if (n == 0 || n >= sizeof text)
    return -1;
  memcpy(text, s, n);
  text[n] = '\0';
  if (dp != NULL && dp[0] != '.' && dp[0] != '\0' && dp[1] == '\0' &&
      (dot = strchr(text, '.')) != NULL)
    *dot = dp[0]; /* a number has one point */
  *out = strtod(text, &end);
  return end == text + n ? 0 : -1;
}

int cn__parse_float_text(const char *p, double *out) {
  double d;
  /* The text is NUL padded. */
  if (cn__strtod(p, strnlen(p, ETF_FLOAT_TEXT), &d) != 0 || !isfinite(d))
    return -1;
  *out = d;
  return 0;
}

int cn__fmt_number(cn_buf *b, const cn__tok *t) {
  double v;
  int rc;
  if (t->kind == CN_TK_INT)
    return cn__fmt_int(b, *t->s == '-', 10, t->s + (*t->s == '-'), t->s + t->n);
  if (cn__strtod(t->s, t->n, &v) != 0)
    return CN_EBADFMT;
  rc = cn__enc_double(b, v);
  return rc == CN_EINVAL ? CN_EBADFMT : rc; /* out of range, as 1.0e999 */
}
