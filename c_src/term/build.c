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

/* ---- Compiled formats --------------------------------------------------
 *
 * A program writes what the interpreter above writes, in the same order,
 * with the literals encoded once: a run of them (tuple headers, atoms,
 * numbers, "text", {} [] #{}) is one BO_LIT, and "{get, ~i}" is two ops.
 * Lists and maps keep their frames, as their encodings depend on the
 * holes' values.  Tuples of more than 255 elements are not compiled.
 */

enum {
  BO_END,
  BO_LIT,        /* s[0 .. n) */
  BO_HOLE,       /* c is the letter */
  BO_LIST,       /* opens a list */
  BO_MAP,        /* opens a map */
  BO_TAIL,       /* the tail of the innermost list is next */
  BO_CLOSE_LIST, /* n is the count */
  BO_CLOSE_TAIL, /* n is the count */
  BO_CLOSE_MAP   /* n is the count of pairs */
};

/* The literal bytes the compiler put in the pool from start on become
 * part of the last op when it is a BO_LIT that ends there, else an op. */
static void compile_lit(cn__pgen *g, size_t start) {
  size_t n = g->pool.len - start;
  cn__tok *t = g->nops > 0 ? &g->ops[g->nops - 1] : NULL;

  if (t != NULL && t->kind == BO_LIT && g->off[g->nops - 1] + t->n == start)
    t->n += n;
  else if (n > 0 && cn__pgen_op(g, BO_LIT, 0, NULL, n) != NULL)
    g->off[g->nops - 1] = start;
}

/* Compiles one term's token t; returns 0, 1 when a container opened, or
 * -1 when the format is not compiled. */
static int compile_term(cn__pgen *g, const cn__tok *t, bframe *st, int *sp) {
  cn_buf *b = &g->pool;
  size_t start = b->len;
  char *d;

  switch (t->kind) {
  case CN_TK_ATOM:
    if (t->n > 255 || (d = cn__room(b, t->n + 2)) == NULL)
      return -1;
    d[0] = (char)ETF_SMALL_ATOM_UTF8; /* as the interpreter writes it */
    d[1] = (char)t->n;
    memcpy(d + 2, t->s, t->n);
    b->len += t->n + 2;
    break;
  case CN_TK_QATOM:
    if (cn__enc_atom(b, t->s, t->n) != 0)
      return -1;
    break;
  case CN_TK_HOLE:
    if (strchr("ascufbiprtT", t->c) == NULL)
      return -1;
    return cn__pgen_op(g, BO_HOLE, t->c, NULL, 0) != NULL ? 0 : -1;
  case CN_TK_OPEN:
    if (*sp == MAX_NEST)
      return -1;
    st[*sp].count = 0;
    st[*sp].hdr = b->len;
    st[*sp].kind = t->c == '{' ? B_TUPLE : t->c == '[' ? B_LIST : B_MAP_K;
    (*sp)++;
    if (t->c != '{')
      return cn__pgen_op(g, t->c == '[' ? BO_LIST : BO_MAP, 0, NULL, 0) != NULL
                 ? 1
                 : -1;
    if (cn_put_tuple(b, 0) != 0) /* the arity is patched at '}' */
      return -1;
    compile_lit(g, start);
    return 1;
  case CN_TK_EMPTY:
    if ((t->c == '{'   ? cn_put_tuple(b, 0)
         : t->c == '[' ? cn_put_nil(b)
                       : cn_put_map(b, 0)) != 0)
      return -1;
    break;
  case CN_TK_INT:
  case CN_TK_FLOAT:
    if (cn__fmt_number(b, t) != 0)
      return -1;
    break;
  case CN_TK_STRING:
    if (cn__enc_binary(b, t->s, t->n) != 0)
      return -1;
    break;
  default:
    return -1;
  }
  compile_lit(g, start);
  return 0;
}

/* Compiles the punctuation after a term, as punct() reads it. */
static int compile_punct(cn__pgen *g, bframe *st, int *sp, const char **fp) {
  while (*sp > 0) {
    bframe *fr = &st[*sp - 1];
    int c = cn__fmt_punct(fp), op;

    if (fr->kind == B_MAP_K) {
      fr->kind = B_MAP_V;
      return c == '=' ? 0 : -1;
    }
    if (fr->kind == B_TAIL) {
      if (c != ']')
        return -1;
      op = BO_CLOSE_TAIL;
    } else {
      fr->count++;
      if (c == ',') {
        if (fr->kind == B_MAP_V)
          fr->kind = B_MAP_K;
        return 0;
      }
      if (fr->kind == B_LIST && c == '|') {
        fr->kind = B_TAIL;
        return cn__pgen_op(g, BO_TAIL, 0, NULL, 0) != NULL ? 0 : -1;
      }
      if (fr->kind == B_TUPLE && c == '}') {
        if (fr->count > 255)
          return -1;
        g->pool.data[fr->hdr + 1] = (char)fr->count;
        op = BO_END;
      } else if (fr->kind == B_LIST && c == ']') {
        op = BO_CLOSE_LIST;
      } else if (fr->kind == B_MAP_V && c == '}') {
        op = BO_CLOSE_MAP;
      } else {
        return -1;
      }
    }
    if (op != BO_END && cn__pgen_op(g, op, 0, NULL, fr->count) == NULL)
      return -1;
    (*sp)--;
  }
  return 0;
}

cn__prog *cn__build_compile(const char *fmt) {
  bframe st[MAX_NEST];
  const char *f = fmt;
  char tmp[4 * 255]; /* as cn__build_one */
  int sp = 0, rc;
  cn__pgen g;
  cn__tok t;

  cn__pgen_init(&g, fmt);
  do {
    f = cn__fmt_term(f, &t, tmp, sizeof tmp);
    if ((rc = compile_term(&g, &t, st, &sp)) == 0)
      rc = compile_punct(&g, st, &sp, &f);
  } while (rc >= 0 && sp > 0);
  rc = rc >= 0 && *cn__fmt_ws(f) == '\0' &&
       cn__pgen_op(&g, BO_END, 0, NULL, 0) != NULL;
  return cn__pgen_done(&g, rc);
}

/* Runs the program at op. */
static int run(cn_buf *b, const cn__tok *op, va_list *ap) {
  bframe st[MAX_NEST];
  int sp = 0, rc = 0;
  char *d;

  for (;; op++) {
    switch (op->kind) {
    case BO_END:
      return 0;
    case BO_LIT:
      if ((d = cn__room(b, op->n)) == NULL)
        return CN_ENOMEM;
      memcpy(d, op->s, op->n);
      b->len += op->n;
      continue;
    case BO_HOLE: /* ~i, the commonest, without hole()'s checks */
      rc = op->c == 'i' ? cn__enc_int(b, va_arg(*ap, int64_t))
                        : hole(b, op->c, ap, 0);
      break;
    case BO_LIST:
    case BO_MAP:
      if ((d = cn__room(b, 5)) == NULL)
        return CN_ENOMEM;
      st[sp++].hdr = b->len;
      d[0] = (char)(op->kind == BO_LIST ? ETF_LIST : ETF_MAP);
      b->len += 5;
      continue;
    case BO_TAIL:
      st[sp - 1].tail = b->len;
      continue;
    case BO_CLOSE_LIST:
    case BO_CLOSE_TAIL:
      st[--sp].count = (uint32_t)op->n;
      rc = op->kind == BO_CLOSE_LIST ? close_list(b, &st[sp])
                                     : close_tail(b, &st[sp]);
      break;
    case BO_CLOSE_MAP:
      rc = cn__map_finish(b, st[--sp].hdr, op->n);
      break;
    }
    if (rc != 0)
      return rc;
  }
}

/* cn_vbuild with the arguments at *ap; cn_build passes its own va_list
 * (see vmatch in match.c). */
static int vbuild(cn_buf *b, const char *fmt, va_list *ap) {
  const cn__prog *p;
  size_t start;
  int rc;

  if (b == NULL || fmt == NULL)
    return CN_EINVAL;
  start = b->len;
  if ((p = cn__fcache_get(CN__FC_BUILD, fmt)) != NULL) {
    rc = run(b, p->ops, ap);
  } else {
    rc = cn__build_one(b, &fmt, ap, 0);
    if (rc == 0 && *cn__fmt_ws(fmt) != '\0')
      rc = CN_EBADFMT; /* one term per call */
  }
  if (rc != 0) {
    b->len = start;
    if (b->err == 0)
      b->err = rc;
  }
  return rc;
}

int cn_vbuild(cn_buf *b, const char *fmt, va_list ap) {
  va_list cp;
  int rc;
  va_copy(cp, ap);
  rc = vbuild(b, fmt, &cp);
  va_end(cp);
  return rc;
}

int cn_build(cn_buf *b, const char *fmt, ...) {
  va_list ap;
  int rc;
  va_start(ap, fmt);
  rc = vbuild(b, fmt, &ap);
  va_end(ap);
  return rc;
}
