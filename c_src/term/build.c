/* By hand: ei has no format builder with maps, refs, bignums or terms.
 *
 * cn_build writes terms from Erlang-like format strings (read by the
 * lexer in fmt.c) in one pass, straight into the buffer; the scalars go
 * through the ei encoders of encode.c.  A container's header goes out
 * with a placeholder count, patched when the container closes; the few
 * containers whose best encoding is only known at the end are rewritten
 * then, in place:
 *  - a tuple of more than 255 elements moves 3 bytes up (LARGE_TUPLE_EXT);
 *  - a proper list of small integers 0..255 becomes a STRING_EXT, and
 *    [a, b | [c]] becomes one list, as term_to_binary would write them;
 *  - map pairs are sorted by key, and a repeated key keeps its last value
 *    (as the Erlang expression #{a => 1, a => 2} does).
 * Nothing is allocated unless the buffer must grow, or a map's pairs are
 * out of order.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

/* Formats nest containers at most this deep. */
#define MAX_NEST 64

enum { B_TUPLE, B_LIST, B_TAIL, B_MAP_K, B_MAP_V };

typedef struct bframe {
  size_t hdr;     /* offset of the container's tag */
  size_t tail;    /* B_TAIL: offset of the tail term */
  uint32_t count; /* elements, or pairs of a map */
  int kind;
} bframe;

/* ---- Closing containers -------------------------------------------------- */

int cn__tuple_finish(cn_buf *b, size_t hdr, uint32_t n) {
  char *d;
  if (n <= 255) {
    b->data[hdr + 1] = (char)n;
    return 0;
  }
  if (cn__room(b, 3) == NULL)
    return CN_ENOMEM;
  d = b->data + hdr;
  memmove(d + 5, d + 2, b->len - hdr - 2);
  d[0] = (char)ETF_LARGE_TUPLE;
  cn__put32(d + 1, n);
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
    char *d;
    if (cn__room(b, m) == NULL)
      return CN_ENOMEM;
    d = b->data + t;
    memmove(d + m + 1, d + 3, m); /* to the end, so that they spread forward */
    for (i = 0; i < m; i++) {
      d[2 * i] = (char)ETF_SMALL_INTEGER;
      d[2 * i + 1] = d[m + 1 + i];
    }
    d[2 * m] = (char)ETF_NIL;
    b->len = t + 2 * m + 1;
    count += m;
  }
  if (count > UINT32_MAX)
    return CN_EINVAL;
  finish_list(b, fr->hdr, (uint32_t)count);
  return 0;
}

/* Map pairs go in key order, as term_to_binary writes maps of up to 32
 * pairs (larger ones it writes in hash order, which is not reproducible
 * here; key order is valid for any size).  The sort is compare.c's. */
int cn__map_finish(cn_buf *b, size_t hdr, size_t n) {
  size_t body = hdr + 5, out = body, i, j, size;
  const char *p = b->data + body, *prev = NULL;
  cn__kv inl_kv[32], *kv = NULL;
  char inl_copy[512], *copy;
  uint32_t kept = 0;
  int rc = CN_ENOMEM;

  cn__put32(b->data + hdr + 1, (uint32_t)n);
  /* Most maps are written in key order: check before copying anything. */
  for (i = 0; i < n; i++, prev = p, p = cn__skip(cn__skip(p)))
    if (prev != NULL && cn__compare(prev, p, 0, 1) >= 0)
      break;
  if (i == n)
    return 0;
  size = b->len - body;
  if ((copy = size <= sizeof inl_copy ? inl_copy : malloc(size)) == NULL)
    return CN_ENOMEM;
  memcpy(copy, b->data + body, size);
  if (cn__map_pairs(copy, n, inl_kv, 32, &kv, 0) == NULL)
    goto done;
  for (i = 0; i < n; i = j) {
    size_t last = i, len;
    /* Pairs with equal keys sort by value; the one written last, which
     * wins, sits highest in the copy. */
    for (j = i + 1; j < n && cn__compare(kv[i].k, kv[j].k, 0, 1) == 0; j++)
      if (kv[j].k > kv[last].k)
        last = j;
    len = (size_t)(cn__skip(kv[last].v) - kv[last].k);
    memcpy(b->data + out, kv[last].k, len);
    out += len;
    kept++;
  }
  b->len = out;
  cn__put32(b->data + hdr + 1, kept);
  rc = 0;
done:
  if (kv != inl_kv)
    free(kv);
  if (copy != inl_copy)
    free(copy);
  return rc;
}

/* ---- The parser ---------------------------------------------------------- */

static int put_term(cn_buf *b, const cn_term *t) {
  if (t == NULL || t->len == 0 || t->ptr == NULL)
    return CN_EINVAL;
  return cn_buf_append(b, t->ptr, t->len);
}

static int hole(cn_buf *b, char h, va_list *ap, int key_mode) {
  const char *s;
  cn_term t;

  if (key_mode != (h == 'A'))
    return CN_EBADFMT; /* in key mode only ~A, and ~A only there */
  switch (h) {
  case 'A':
  case 'a':
  case 's':
  case 'c':
    if ((s = va_arg(*ap, const char *)) == NULL)
      return CN_EINVAL;
    if (h == 's')
      return cn__enc_binary(b, s, strlen(s));
    if (h == 'c')
      return cn__enc_charlist(b, s, strlen(s));
    return cn__enc_atom(b, s, strlen(s));
  case 'i':
    return cn__enc_int(b, va_arg(*ap, int64_t));
  case 'u':
    return cn__enc_mag64(b, 0, va_arg(*ap, uint64_t));
  case 'f':
    return cn__enc_double(b, va_arg(*ap, double));
  case 'b': {
    const void *p = va_arg(*ap, const void *);
    return cn__enc_binary(b, p, va_arg(*ap, size_t));
  }
  case 'p':
    return cn__enc_pid(b, va_arg(*ap, const cn_pid *));
  case 'r':
    return cn__enc_ref(b, va_arg(*ap, const cn_ref *));
  case 't':
    t = va_arg(*ap, cn_term);
    return put_term(b, &t);
  case 'T':
    return put_term(b, va_arg(*ap, const cn_term *));
  default:
    return CN_EBADFMT;
  }
}

/* Opens a container (c is '{', '[' or '#') with a placeholder header. */
static int open(cn_buf *b, bframe *st, int *sp, char c) {
  bframe *fr = &st[*sp];
  char *d;

  if (*sp == MAX_NEST)
    return CN_EBADFMT;
  if ((d = cn__room(b, 5)) == NULL)
    return CN_ENOMEM;
  fr->hdr = b->len;
  fr->count = 0;
  fr->kind = c == '{' ? B_TUPLE : c == '[' ? B_LIST : B_MAP_K;
  d[0] = (char)(c == '{' ? ETF_SMALL_TUPLE : c == '[' ? ETF_LIST : ETF_MAP);
  b->len += c == '{' ? 2 : 5;
  (*sp)++;
  return 0;
}

/* After a term: reads the punctuation that follows, closing the containers
 * it ends, until the next term is due or the outermost term is complete
 * (*sp is then 0).  Returns 0 or an error. */
static int punct(cn_buf *b, bframe *st, int *sp, const char **fp) {
  while (*sp > 0) {
    bframe *fr = &st[*sp - 1];
    int c = cn__fmt_punct(fp), rc;

    if (fr->kind == B_MAP_K) {
      if (c != '=')
        return CN_EBADFMT;
      fr->kind = B_MAP_V;
      return 0;
    }
    if (fr->kind == B_TAIL) {
      if (c != ']')
        return CN_EBADFMT;
      rc = close_tail(b, fr);
    } else {
      if (fr->count == UINT32_MAX)
        return CN_EBADFMT;
      fr->count++;
      if (c == ',') {
        if (fr->kind == B_MAP_V)
          fr->kind = B_MAP_K;
        return 0;
      }
      if (fr->kind == B_LIST && c == '|') {
        fr->kind = B_TAIL;
        fr->tail = b->len;
        return 0;
      }
      if (fr->kind == B_TUPLE && c == '}')
        rc = cn__tuple_finish(b, fr->hdr, fr->count);
      else if (fr->kind == B_LIST && c == ']')
        rc = close_list(b, fr);
      else if (fr->kind == B_MAP_V && c == '}')
        rc = cn__map_finish(b, fr->hdr, fr->count);
      else
        return CN_EBADFMT;
    }
    if (rc != 0)
      return rc;
    (*sp)--;
  }
  return 0;
}

int cn__build_one(cn_buf *b, const char **fmtp, va_list *ap, int key_mode) {
  bframe st[MAX_NEST];
  const char *f = *fmtp;
  char tmp[4 * 255]; /* an escaped literal; long data belongs in ~s, ~b */
  int sp = 0, rc;
  cn__tok t;
  char *d;

  do {
    f = cn__fmt_term(f, &t, tmp, sizeof tmp);
    switch (t.kind) {
    case CN_TK_ATOM: /* ASCII by the lexer's rules: no check, no call */
      if (t.n <= 255 && (d = cn__room(b, t.n + 2)) != NULL) {
        d[0] = (char)ETF_SMALL_ATOM_UTF8;
        d[1] = (char)t.n;
        memcpy(d + 2, t.s, t.n);
        b->len += t.n + 2;
        rc = 0;
        break;
      }
      /* Too long, or out of memory: cn__enc_atom tells which. */
      /* fall through */
    case CN_TK_QATOM:
      rc = cn__enc_atom(b, t.s, t.n);
      if (rc == CN_EINVAL)
        rc = CN_EBADFMT; /* a literal that is not a valid atom */
      break;
    case CN_TK_HOLE:
      rc = hole(b, t.c, ap, key_mode);
      break;
    case CN_TK_OPEN:
      if ((rc = open(b, st, &sp, t.c)) == 0)
        continue; /* the first element is next */
      break;
    case CN_TK_EMPTY:
      rc = t.c == '{'   ? cn_put_tuple(b, 0)
           : t.c == '[' ? cn_put_nil(b)
                        : cn_put_map(b, 0);
      break;
    case CN_TK_INT:
    case CN_TK_FLOAT:
      rc = cn__fmt_number(b, &t);
      break;
    case CN_TK_STRING:
      rc = cn__enc_binary(b, t.s, t.n);
      break;
    default:
      rc = CN_EBADFMT;
    }
    if (rc == 0)
      rc = punct(b, st, &sp, &f);
  } while (rc == 0 && sp > 0);
  if (rc == 0)
    *fmtp = f;
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
  if (rc == 0 && *cn__fmt_ws(fmt) != '\0')
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
