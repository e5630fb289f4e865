/* Erlang term text to a term: ei has no parser of Erlang syntax (ei_format
 * takes a C format with holes, and no binaries, maps or bignums).
 *
 * A recursive descent over the text, one token at a time, appending to the
 * buffer as it goes.  Containers are written with a header whose count is
 * patched once the closing bracket is seen (tuples of more than 255
 * elements move up to LARGE_TUPLE_EXT, and maps are sorted, as cn_build's
 * are).  Scalars go through the cn_put_* encoders, integers through the
 * one cn_build's format lexer uses (cn__fmt_int), which reads 16#ff and
 * 1_000 too.  Nesting is capped, so hostile text cannot exhaust the C
 * stack.
 */
#include "fmt.h"

#include <errno.h>
#include <stdlib.h>

#define MAX_DEPTH 512

typedef struct parser {
  const char *s, *p, *end;
  cn_buf *b;
  const char *what; /* the first error */
  int rc;
} parser;

static int fail(parser *ps, const char *what) {
  if (ps->rc == 0) {
    ps->rc = CN_EBADFMT;
    ps->what = what;
  }
  return ps->rc;
}

static int oom(parser *ps) {
  if (ps->rc == 0) {
    ps->rc = CN_ENOMEM;
    ps->what = "out of memory";
  }
  return ps->rc;
}

static int put_rc(parser *ps, int rc) {
  if (rc == CN_ENOMEM)
    return oom(ps);
  return rc ? fail(ps, "value out of range") : 0;
}

/* Skips white space and % comments. */
static void skip_ws(parser *ps) {
  while (ps->p < ps->end) {
    char c = *ps->p;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
        c == '\v') {
      ps->p++;
    } else if (c == '%') {
      while (ps->p < ps->end && *ps->p != '\n')
        ps->p++;
    } else {
      break;
    }
  }
}

static int peek(parser *ps) {
  skip_ws(ps);
  return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

static int expect(parser *ps, char c, const char *what) {
  if (peek(ps) != (unsigned char)c)
    return fail(ps, what);
  ps->p++;
  return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Digits with single underscores between them, as OTP 23+ reads 1_000. */
static int digits_ok(const char *d, const char *e) {
  const char *u;
  if (e == d || d[0] == '_' || e[-1] == '_')
    return 0;
  for (u = d; u + 1 < e; u++)
    if (u[0] == '_' && u[1] == '_')
      return 0;
  return 1;
}

/* ---- Characters ---------------------------------------------------------- */

/* Reads one UTF-8 character at ps->p into *cp: its length comes from the
 * lead byte, cn__utf8_count checks it, and the atom reader decodes it. */
static int utf8_char(parser *ps, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)ps->p;
  size_t i = 0, n = u[0] < 0x80 ? 1 : u[0] < 0xE0 ? 2 : u[0] < 0xF0 ? 3 : 4;
  cn__atom a = {u, n, 0};

  if (n > 1 && (n > (size_t)(ps->end - ps->p) || cn__utf8_count(u, n) != 1))
    return fail(ps, "text is not UTF-8");
  *cp = n == 1 ? u[0] : cn__atom_next(&a, &i); /* ASCII without calls */
  ps->p += n;
  return 0;
}

/* Reads one character of a quoted atom, string or $ literal, with
 * Erlang's escapes (\n \t \r \e \s \d \b \f \v \0-7.. \xHH \x{H..} \^c). */
static int quoted_char(parser *ps, uint32_t *cp) {
  static const char esc_from[] = "ntrsdbfve", esc_to[] = "\n\t\r \177\b\f\v\33";
  const char *hit;
  uint32_t v = 0;
  int n;

  if (ps->p >= ps->end)
    return fail(ps, "unterminated quoted text");
  if (*ps->p != '\\')
    return utf8_char(ps, cp);
  if (++ps->p >= ps->end)
    return fail(ps, "unterminated escape");
  if ((hit = strchr(esc_from, *ps->p)) != NULL && *ps->p != '\0') {
    ps->p++;
    *cp = (unsigned char)esc_to[hit - esc_from];
    return 0;
  }
  if (*ps->p >= '0' && *ps->p <= '7') {
    for (n = 0; n < 3 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7'; n++)
      v = v * 8 + (uint32_t)(*ps->p++ - '0');
    *cp = v;
    return 0;
  }
  if (*ps->p == 'x') {
    int braces = ++ps->p < ps->end && *ps->p == '{';
    ps->p += braces;
    for (n = 0; ps->p < ps->end && cn__fmt_digit(*ps->p) < 16 && n < 8; n++)
      v = v * 16 + (uint32_t)cn__fmt_digit(*ps->p++);
    if (n == 0 || (!braces && n > 2) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
      return fail(ps, "bad \\x escape");
    if (braces && (ps->p >= ps->end || *ps->p++ != '}'))
      return fail(ps, "bad \\x{...} escape");
    *cp = v;
    return 0;
  }
  if (*ps->p == '^') {
    if (++ps->p >= ps->end)
      return fail(ps, "unterminated escape");
    *cp = (uint32_t)(*ps->p++ & 0x1F);
    return 0;
  }
  return utf8_char(ps, cp); /* \\ \' \" and any other: itself */
}

/* Reads quoted text up to the closing quote q into v, as uint32_t code
 * points (v->len / 4 of them). */
static int quoted(parser *ps, char q, cn_buf *v) {
  uint32_t c;
  char *d;
  ps->p++; /* the opening quote */
  while (ps->p < ps->end && *ps->p != q) {
    if (quoted_char(ps, &c) != 0)
      return ps->rc;
    if ((d = cn__room(v, sizeof c)) == NULL) /* inline, unlike an append */
      return oom(ps);
    memcpy(d, &c, sizeof c);
    v->len += sizeof c;
  }
  if (ps->p >= ps->end)
    return fail(ps, "unterminated quoted text");
  ps->p++;
  return 0;
}

/* ---- Scalars ------------------------------------------------------------- */

static int atom_of(parser *ps, const uint32_t *cp, size_t n) {
  char name[255 * 4];
  size_t len = 0, i;
  if (n > 255)
    return fail(ps, "atom longer than 255 characters");
  for (i = 0; i < n; i++)
    len += cn__utf8_put(cp[i], name + len);
  return put_rc(ps, cn_put_atom_len(ps->b, name, len));
}

static int bare_atom(parser *ps) {
  uint32_t cp[256], c;
  size_t n = 0;
  for (;;) {
    const char *at = ps->p;
    if (ps->p >= ps->end || utf8_char(ps, &c) != 0 ||
        !cn__atom_char(c, n == 0)) {
      ps->p = at;
      ps->rc = 0; /* a character that ends the atom is not an error here */
      ps->what = NULL;
      break;
    }
    if (n == 256)
      return fail(ps, "atom longer than 255 characters");
    cp[n++] = c;
  }
  if (n == 0)
    return fail(ps, "expected a term");
  return atom_of(ps, cp, n);
}

/* A list of code points: STRING_EXT when all fit in a byte, else a list
 * of integers. */
static int charlist(parser *ps, uint32_t *cp, size_t n) {
  char *bytes = (char *)cp; /* narrowed in place: byte i is in cp[0 .. i] */
  size_t i;
  int wide = 0;
  for (i = 0; i < n; i++)
    wide |= cp[i] > 255;
  if (!wide) {
    for (i = 0; i < n; i++)
      bytes[i] = (char)cp[i];
    return put_rc(ps, cn_put_charlist(ps->b, n != 0 ? bytes : "", n));
  }
  if (cn_put_list(ps->b, (uint32_t)n) != 0)
    return oom(ps);
  for (i = 0; i < n; i++)
    if (cn_put_int(ps->b, cp[i]) != 0)
      return oom(ps);
  return put_rc(ps, cn_put_nil(ps->b));
}

/* An integer of any size in base 2..36. */
static int integer(parser *ps, int neg, unsigned base, const char *d,
                   const char *e) {
  int rc = cn__fmt_int(ps->b, neg, base, d, e);
  return rc == CN_EINVAL ? fail(ps, "integer too large") : put_rc(ps, rc);
}

/* A number: 12, -3, 16#ff, 1_000, 1.5, 2.0e-3, $a.  Also the sign of an
 * integer or float. */
static int number(parser *ps) {
  const char *start = ps->p, *d;
  unsigned base = 10;
  int neg = 0;

  if (*ps->p == '-' || *ps->p == '+')
    neg = *ps->p++ == '-';
  if (ps->p < ps->end && *ps->p == '$') {
    uint32_t c;
    ps->p++;
    if (ps->p >= ps->end || quoted_char(ps, &c) != 0)
      return fail(ps, "bad character literal");
    return put_rc(ps, cn_put_int(ps->b, neg ? -(int64_t)c : (int64_t)c));
  }
  d = ps->p;
  while (ps->p < ps->end && (is_digit(*ps->p) || *ps->p == '_'))
    ps->p++;
  if (!digits_ok(d, ps->p))
    return fail(ps, "bad number");
  if (ps->p < ps->end && *ps->p == '#') {
    char *e;
    long b = strtol(d, &e, 10);
    if (e != ps->p || b < 2 || b > 36)
      return fail(ps, "bad base");
    base = (unsigned)b;
    d = ++ps->p;
    while (ps->p < ps->end &&
           (cn__fmt_digit(*ps->p) < (int)base || *ps->p == '_'))
      ps->p++;
    if (!digits_ok(d, ps->p))
      return fail(ps, "bad digits for the base");
    return integer(ps, neg, base, d, ps->p);
  }
  if (ps->p + 1 < ps->end && *ps->p == '.' && is_digit(ps->p[1])) {
    double v;
    size_t n;
    ps->p++;
    while (ps->p < ps->end && is_digit(*ps->p))
      ps->p++;
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
      const char *x = ++ps->p;
      if (ps->p < ps->end && (*ps->p == '-' || *ps->p == '+'))
        ps->p++;
      x = ps->p;
      while (ps->p < ps->end && is_digit(*ps->p))
        ps->p++;
      if (ps->p == x)
        return fail(ps, "bad float exponent");
    }
    n = (size_t)(ps->p - start);
    if (n >= 128 || memchr(start, '_', n) != NULL)
      return fail(ps, "bad float");
    errno = 0;
    if (cn__strtod(start, n, &v) != 0 || errno == ERANGE)
      return fail(ps, "float out of range");
    return put_rc(ps, cn_put_double(ps->b, v));
  }
  return integer(ps, neg, 10, d, ps->p);
}

/* ---- Containers ---------------------------------------------------------- */

static int term(parser *ps, int depth);

/* Reserves a header of n bytes (a tag and a count to patch) and returns
 * its offset. */
static int header(parser *ps, unsigned char tag, size_t n, size_t *at) {
  char *t = cn__room(ps->b, n);
  if (t == NULL)
    return oom(ps);
  t[0] = (char)tag;
  *at = ps->b->len;
  ps->b->len += n;
  return 0;
}

/* Elements up to the closing bracket, separated by commas; returns the
 * count in *n.  For lists, stops at | too. */
static int elements(parser *ps, int depth, char close, uint32_t *n) {
  *n = 0;
  if (peek(ps) == (unsigned char)close)
    return 0;
  for (;;) {
    if (*n == UINT32_MAX)
      return fail(ps, "too many elements");
    if (term(ps, depth + 1) != 0)
      return ps->rc;
    ++*n;
    if (peek(ps) != ',')
      return 0;
    ps->p++;
  }
}

static int tuple(parser *ps, int depth) {
  size_t at;
  uint32_t n;
  ps->p++;
  if (header(ps, ETF_SMALL_TUPLE, 2, &at) != 0 ||
      elements(ps, depth, '}', &n) != 0 || expect(ps, '}', "expected }"))
    return ps->rc;
  return cn__tuple_finish(ps->b, at, n) != 0 ? oom(ps) : 0;
}

static int list(parser *ps, int depth) {
  size_t at;
  uint32_t n;
  ps->p++;
  if (header(ps, ETF_LIST, 5, &at) != 0 || elements(ps, depth, ']', &n) != 0)
    return ps->rc;
  if (n > 0 && peek(ps) == '|') {
    ps->p++;
    if (term(ps, depth + 1) != 0)
      return ps->rc;
  } else if (cn_put_nil(ps->b) != 0) {
    return oom(ps);
  }
  if (expect(ps, ']', "expected ]") != 0)
    return ps->rc;
  if (n == 0) { /* [] : only the nil written after the header */
    memmove(ps->b->data + at, ps->b->data + at + 5, 1);
    ps->b->len -= 5;
  } else {
    cn__put32(ps->b->data + at + 1, n);
  }
  return 0;
}

static int map(parser *ps, int depth) {
  size_t at;
  uint32_t n = 0;
  ps->p += 2; /* #{ */
  if (header(ps, ETF_MAP, 5, &at) != 0)
    return ps->rc;
  if (peek(ps) != '}') {
    for (;;) {
      if (term(ps, depth + 1) != 0)
        return ps->rc;
      skip_ws(ps);
      if (ps->end - ps->p < 2 || ps->p[0] != '=' || ps->p[1] != '>')
        return fail(ps, "expected =>");
      ps->p += 2;
      if (term(ps, depth + 1) != 0)
        return ps->rc;
      if (++n == UINT32_MAX)
        return fail(ps, "too many pairs");
      if (peek(ps) != ',')
        break;
      ps->p++;
    }
  }
  if (expect(ps, '}', "expected }") != 0)
    return ps->rc;
  return cn__map_finish(ps->b, at, n) != 0 ? oom(ps) : 0;
}

/* <<>>, <<"text">>, <<"text"/utf8>>, <<1,2,3>>, and mixes of them. */
static int binary(parser *ps) {
  cn_buf bytes = CN_BUF_INIT;
  ps->p += 2;
  if (peek(ps) != '>') {
    for (;;) {
      int c = peek(ps);
      if (c == '"') {
        const char *str = ps->p;
        cn_buf v = CN_BUF_INIT;
        const uint32_t *cp = NULL;
        size_t i;
        int utf8;
        if (quoted(ps, '"', &v) == 0) {
          skip_ws(ps);
          utf8 = ps->end - ps->p >= 5 && memcmp(ps->p, "/utf8", 5) == 0;
          ps->p += utf8 ? 5 : 0;
          cp = (const uint32_t *)(void *)v.data;
        }
        for (i = 0; cp != NULL && i < v.len / 4 && ps->rc == 0; i++) {
          char u[4] = {(char)cp[i]};
          if (!utf8 && cp[i] > 255) {
            ps->p = str;
            fail(ps, "character over 255 in a binary without /utf8");
          } else if (cn_buf_append(&bytes, u,
                                   utf8 ? cn__utf8_put(cp[i], u) : 1) != 0) {
            oom(ps);
          }
        }
        cn_buf_free(&v);
        if (ps->rc != 0)
          goto out;
      } else if (is_digit(c)) {
        const char *d = ps->p;
        unsigned v = 0;
        while (ps->p < ps->end && is_digit(*ps->p) && v < 256)
          v = v * 10 + (unsigned)(*ps->p++ - '0');
        if (v > 255 || ps->p - d > 3) {
          fail(ps, "byte over 255 in a binary");
          goto out;
        }
        {
          char byte = (char)v;
          if (cn_buf_append(&bytes, &byte, 1) != 0) {
            oom(ps);
            goto out;
          }
        }
      } else {
        fail(ps, "expected a byte or a string in <<...>>");
        goto out;
      }
      if (peek(ps) != ',')
        break;
      ps->p++;
    }
  }
  skip_ws(ps);
  if (ps->end - ps->p < 2 || ps->p[0] != '>' || ps->p[1] != '>') {
    fail(ps, "expected >>");
    goto out;
  }
  ps->p += 2;
  put_rc(ps, cn_put_binary(ps->b, bytes.data, bytes.len));
out:
  cn_buf_free(&bytes);
  return ps->rc;
}

static int term(parser *ps, int depth) {
  int c = peek(ps);
  if (depth > MAX_DEPTH)
    return fail(ps, "nested too deep");
  if (c < 0)
    return fail(ps, "expected a term");
  if (c == '{')
    return tuple(ps, depth);
  if (c == '[')
    return list(ps, depth);
  if (c == '#' && ps->p + 1 < ps->end && ps->p[1] == '{')
    return map(ps, depth);
  if (c == '<' && ps->p + 1 < ps->end && ps->p[1] == '<')
    return binary(ps);
  if (c == '\'' || c == '"') {
    cn_buf v = CN_BUF_INIT; /* the code points */
    if (quoted(ps, (char)c, &v) == 0 && c == '\'')
      atom_of(ps, (const uint32_t *)(void *)v.data, v.len / 4);
    else if (ps->rc == 0)
      charlist(ps, (uint32_t *)(void *)v.data, v.len / 4);
    cn_buf_free(&v);
    return ps->rc;
  }
  if ((c >= 'a' && c <= 'z') || c >= 0x80)
    return bare_atom(ps);
  if (is_digit(c) || c == '$' || c == '-' || c == '+')
    return number(ps);
  return fail(ps, "expected a term");
}

int cn_term_parse(cn_buf *b, const char *text, size_t len,
                  cn_parse_error *err) {
  parser ps = {text, text, text + len, b, NULL, 0};
  size_t start = b->len;

  if (term(&ps, 0) == 0) {
    /* One term, then at most a full stop, as erl_parse:parse_term wants. */
    if (peek(&ps) == '.')
      ps.p++;
    if (peek(&ps) >= 0)
      fail(&ps, "text after the term");
  }
  if (ps.rc != 0) {
    b->len = start;
    if (err != NULL) {
      err->offset = (size_t)(ps.p - text);
      err->what = ps.what;
    }
  }
  return ps.rc;
}
