/* By hand: ei has no pattern matcher; values are read with read.c's ei calls.
 *
 * cn_match destructures a term with a pattern in cn_build's syntax (read
 * by the lexer in fmt.c).  The pattern and the term are walked together
 * in one pass, with an explicit stack of open containers.  Values for the
 * output holes are collected on the side and written only once the whole
 * pattern has matched, so a failed match leaves the caller's variables
 * alone.
 *
 * Map patterns look their keys up in the term's map (any order), as
 * Erlang's map patterns do; a key is a literal, or ~A.  A list pattern's
 * tail after '|' is matched against the rest of the list; see cn_match in
 * term.h for the one case that cannot be viewed in place.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

#define MAX_NEST 64

enum { M_SEQ, M_LIST, M_TAIL, M_MAP_K, M_MAP_V };

typedef struct mframe {
  const char *pos;  /* M_SEQ, M_LIST: the next element; M_MAP_V: value */
  const char *term; /* M_MAP_*: the map term; M_TAIL: the tail */
  const char *end;  /* M_TAIL: the first byte after the tail */
  const char *lim;  /* the container's end when known, else NULL */
  cn__list l;       /* M_LIST: the cursor; M_SEQ: l.left, elements left */
  unsigned char kind;
  unsigned char tail_virt; /* M_TAIL: the implicit nil of a string */
} mframe;

/* An output waiting for the whole match to succeed: its value is read
 * while matching, where reading can fail (interning a pid's node can),
 * and written only in commit().  An atom's name is copied then. */
typedef struct pending {
  char kind;     /* the hole's letter */
  void *o1, *o2; /* where the values go */
  union {
    int64_t i;
    uint64_t u;
    double f;
    cn_pid pid;
    cn_ref ref;
    cn_term t; /* ~t; ~b: the bytes; ~a: the atom, and len the size */
  } v;
} pending;

/* Where the pattern's tokens come from: the text, lexed as they are
 * needed, or a compiled program (fcache.c). */
typedef struct msrc {
  const char *f;     /* the text's next byte, when op is NULL */
  const cn__tok *op; /* the program's next token */
} msrc;

static inline void next_term(msrc *s, cn__tok *t, char *tmp, size_t cap) {
  if (s->op != NULL)
    *t = *s->op++;
  else
    s->f = cn__fmt_term(s->f, t, tmp, cap);
}

static inline int next_punct(msrc *s) {
  return s->op != NULL ? (s->op++)->c : cn__fmt_punct(&s->f);
}

/* Looks a key up in the map term m and returns its value, or NULL.  The
 * key is the atom named name[0 .. len) when key is NULL, else *key. */
static const char *map_find(const char *m, const char *name, size_t len,
                            const cn_term *key) {
  uint32_t n = cn__get32(m + 1), i;
  const char *p = m + 5;

  for (i = 0; i < n; i++) {
    const char *v = cn__skip_fast(p);
    if (key == NULL) {
      if (cn__is_atom_tag((unsigned char)p[0])) {
        cn__atom a;
        cn__atom_view(p, &a);
        if (cn__atom_eq(&a, name, len))
          return v;
      }
    } else {
      cn_term k;
      k.ptr = p;
      k.len = (size_t)(v - p);
      if (cn_term_equal(k, *key))
        return v;
    }
    p = cn__skip_fast(v);
  }
  return NULL;
}

/* Matches the number literal t against the subject x: small integers
 * (the common literal) by value, the rest by building and comparing. */
static int match_number(const cn__tok *t, const char *x) {
  cn_term have = {x, 1}; /* the readers only need the tag to be there */
  char tmp[256];
  cn_buf kb;
  int64_t v;
  int rc;

  if (t->kind == CN_TK_INT && t->n - (*t->s == '-') <= 18) /* fits */
    return cn_get_int64(have, &v) == 0 && v == strtoll(t->s, NULL, 10)
               ? 0
               : CN_ENOMATCH;
  cn_buf_init_with(&kb, tmp, sizeof tmp);
  if ((rc = cn__fmt_number(&kb, t)) == 0) {
    have.len = (size_t)(cn__skip_fast(x) - x);
    rc = cn_term_equal(cn_buf_term(&kb), have) ? 0 : CN_ENOMATCH;
  }
  cn_buf_free(&kb);
  return rc;
}

/* Matches one hole against the subject x: takes its arguments, reads the
 * subject, and queues the outputs in o. */
static int match_hole(char h, va_list *ap, const char *x, cn__stack *o,
                      const char **end) {
  pending *q;
  char tmp[2 * 255];
  const char *name;
  cn_term t = {x, 1}; /* the readers only need the tag to be there */
  cn__atom a;
  size_t n;
  int rc = 0;

  if (h == 'A') { /* an input: no output to queue */
    if ((name = va_arg(*ap, const char *)) == NULL)
      return CN_EINVAL;
    return cn_is_atom(t, name) ? 0 : CN_ENOMATCH;
  }
  /* A failed match drops the queue, so the slot need not be given back. */
  if ((q = CN__STACK_PUSH(o, pending)) == NULL)
    return CN_ENOMEM;
  q->kind = h;
  q->o2 = NULL;
  switch (h) {
  case 'a':
    q->o1 = va_arg(*ap, char *);
    q->v.t = (cn_term){x, va_arg(*ap, size_t)};
    if (!cn__is_atom_tag((unsigned char)x[0]))
      return CN_ENOMATCH;
    cn__atom_view(x, &a);
    if (cn__atom_has_nul(&a))
      return CN_ENOTSUP; /* as cn_get_atom: not a C string */
    cn__atom_text(&a, tmp, &n);
    rc = q->o1 == NULL || n >= q->v.t.len ? CN_ENOSPC : 0;
    break;
  case 'i':
    q->o1 = va_arg(*ap, int64_t *);
    rc = cn_get_int64(t, &q->v.i) != 0 ? CN_ENOMATCH : 0;
    break;
  case 'u':
    q->o1 = va_arg(*ap, uint64_t *);
    rc = cn_get_uint64(t, &q->v.u) != 0 ? CN_ENOMATCH : 0;
    break;
  case 'f':
    q->o1 = va_arg(*ap, double *);
    rc = cn_get_double(t, &q->v.f) != 0 ? CN_ENOMATCH : 0;
    break;
  case 'b':
    q->o1 = va_arg(*ap, const char **);
    q->o2 = va_arg(*ap, size_t *);
    rc = cn_get_binary(t, &q->v.t.ptr, &q->v.t.len) != 0 ? CN_ENOMATCH : 0;
    break;
  case 'p':
    q->o1 = va_arg(*ap, cn_pid *);
    rc = cn_get_pid(t, &q->v.pid);
    break;
  case 'r':
    q->o1 = va_arg(*ap, cn_ref *);
    rc = cn_get_ref(t, &q->v.ref);
    break;
  case 't':
    q->o1 = va_arg(*ap, cn_term *);
    if (*end == NULL)
      *end = cn__skip_fast(x);
    q->v.t = (cn_term){x, (size_t)(*end - x)};
    break;
  default:
    return CN_EBADFMT;
  }
  return rc;
}

static void commit(cn__stack *o) {
  size_t i;
  for (i = 0; i < o->n; i++) {
    pending *q = (pending *)(void *)o->base + i;
    if (q->kind == 'i' || q->kind == 'u' || q->kind == 'f') {
      if (q->o1 != NULL) /* all three are 8 bytes */
        memcpy(q->o1, &q->v, 8);
      continue;
    }
    if (q->kind == 'a')
      cn_get_atom_n((cn_term){q->v.t.ptr, 1}, q->o1, q->v.t.len, NULL);
    else if (q->kind == 'b' && q->o2 != NULL)
      *(size_t *)q->o2 = q->v.t.len;
    if (q->o1 == NULL || q->kind == 'a')
      continue;
    if (q->kind == 't')
      *(cn_term *)q->o1 = q->v.t;
    else if (q->kind == 'b')
      *(const char **)q->o1 = q->v.t.ptr;
    else if (q->kind == 'p')
      *(cn_pid *)q->o1 = q->v.pid;
    else if (q->kind == 'r')
      *(cn_ref *)q->o1 = q->v.ref;
    else
      memcpy(q->o1, &q->v, 8); /* ~i, ~u, ~f: all three are 8 bytes */
  }
}

/* Matches a pattern term that opens no container (tk, read from the
 * pattern) against the subject x, and sets *end when it learns where x
 * ends. */
static int match_scalar(const cn__tok *tk, va_list *ap, const char *x,
                        const char **end, cn__stack *o) {
  unsigned char tag = (unsigned char)x[0];
  int cls = cn__class(x);
  cn__atom a;
  cn_term t = {x, 1};
  const char *p;
  size_t n, k;

  switch (tk->kind) {
  case CN_TK_ATOM:
    if (tag == ETF_SMALL_ATOM_UTF8 || tag == ETF_SMALL_ATOM) {
      /* A bare name is ASCII, which reads the same in Latin-1. */
      if ((unsigned char)x[1] != tk->n)
        return CN_ENOMATCH;
      for (k = 0; k < tk->n; k++) /* names are short: no memcmp call */
        if (x[2 + k] != tk->s[k])
          return CN_ENOMATCH;
      *end = x + 2 + tk->n;
      return 0;
    }
    /* fall through */
  case CN_TK_QATOM:
    if (!cn__is_atom_tag(tag))
      return CN_ENOMATCH;
    *end = cn__atom_view(x, &a);
    return cn__atom_eq(&a, tk->s, tk->n) ? 0 : CN_ENOMATCH;
  case CN_TK_STRING:
    if (cn_get_binary(t, &p, &n) != 0 || n != tk->n ||
        (n != 0 && memcmp(p, tk->s, n) != 0))
      return CN_ENOMATCH;
    return 0;
  case CN_TK_WILD:
    return 0;
  case CN_TK_HOLE:
    return match_hole(tk->c, ap, x, o, end);
  case CN_TK_EMPTY: /* {} matches the empty tuple, [] nil, #{} any map */
    if (tk->c == '{')
      return cls == CLS_TUPLE && cn__tuple_arity(x) == 0 ? 0 : CN_ENOMATCH;
    return cls == (tk->c == '[' ? CLS_NIL : CLS_MAP) ? 0 : CN_ENOMATCH;
  case CN_TK_INT:
  case CN_TK_FLOAT:
    return match_number(tk, x);
  default:
    return CN_EBADFMT;
  }
}

/* Picks the subject of the next pattern term: the next element of the
 * innermost open container fr, or the whole term t.  Where its end is
 * known for free (the whole term, the last element of a tuple whose end
 * is known) it goes to *end, so that ~t at the end of a message costs no
 * walk over its bytes.  *virt is set when the subject is not in the
 * term's bytes (a string element). */
static int subject(mframe *fr, cn_term t, const char **x, const char **end,
                   int *virt) {
  *end = NULL;
  *virt = 0;
  if (fr == NULL) {
    *x = t.ptr;
    *end = t.ptr + t.len;
  } else if (fr->kind == M_SEQ) {
    if (fr->l.left == 0)
      return CN_ENOMATCH; /* the tuple is shorter than the pattern */
    if (--fr->l.left == 0)
      *end = fr->lim;
    *x = fr->pos;
  } else if (fr->kind == M_LIST) {
    if (!cn__list_next(&fr->l, &fr->pos, x))
      return CN_ENOMATCH;
    *virt = fr->l.str;
  } else if (fr->kind == M_TAIL) {
    *x = fr->term;
    *virt = fr->tail_virt;
    if (!*virt)
      *end = fr->lim;
  } else { /* M_MAP_V: set when the key was found */
    *x = fr->pos;
  }
  return 0;
}

/* Opens a container pattern (c is '{', '[' or '#') on the subject x. */
static int open_frame(mframe *st, int *sp, char c, const char *x,
                      const char *end) {
  int cls = cn__class(x);
  mframe *fr;

  if (*sp == MAX_NEST)
    return CN_EBADFMT;
  fr = &st[*sp];
  if (c == '{') {
    if (cls != CLS_TUPLE)
      return CN_ENOMATCH;
    fr->kind = M_SEQ;
    fr->l.left = cn__tuple_arity(x);
    fr->pos = x + ((unsigned char)x[0] == ETF_SMALL_TUPLE ? 2 : 5);
  } else if (c == '[') {
    if (cls != CLS_LIST)
      return CN_ENOMATCH;
    fr->kind = M_LIST;
    fr->pos = x;
    cn__list_enter(&fr->l, &fr->pos);
  } else {
    if (cls != CLS_MAP)
      return CN_ENOMATCH;
    fr->kind = M_MAP_K;
    fr->term = x;
  }
  fr->end = NULL;
  fr->lim = end;
  (*sp)++;
  return 0;
}

/* Reads the key pattern at src for the map frame fr, looks it up, and
 * makes its value the next subject. */
static int map_key(mframe *fr, msrc *src, va_list *ap) {
  const char *f = src->f, *v, *name;
  char tmp[256];
  cn__tok tk;
  cn_buf kb;
  int rc;

  next_term(src, &tk, tmp, sizeof tmp);
  if (tk.kind == CN_TK_ATOM || tk.kind == CN_TK_QATOM) {
    v = map_find(fr->term, tk.s, tk.n, NULL);
  } else if (tk.kind == CN_TK_HOLE && tk.c == 'A') {
    if ((name = va_arg(*ap, const char *)) == NULL)
      return CN_EINVAL;
    v = map_find(fr->term, name, strlen(name), NULL);
  } else {
    /* Any other key is built, then compared with the map's keys (a
     * program has no such key: see cn__match_compile). */
    cn_buf_init_with(&kb, tmp, sizeof tmp);
    if ((rc = cn__build_one(&kb, &f, ap, 1)) == 0) {
      cn_term key = cn_buf_term(&kb);
      v = map_find(fr->term, NULL, 0, &key);
    }
    cn_buf_free(&kb);
    if (rc != 0)
      return rc;
    src->f = f;
  }
  if (next_punct(src) != '=')
    return CN_EBADFMT;
  if (v == NULL)
    return CN_ENOMATCH;
  fr->kind = M_MAP_V;
  fr->pos = v;
  return 0;
}

/* After [P1, .., Pn | with elements left in the list: the rest is part of
 * this list's encoding, not a term of its own, so only _ can match it. */
static int match_rest(mframe *fr, msrc *src, const char **end) {
  uint64_t n = 0; /* elements passed, not needed */
  cn__tok tk;
  next_term(src, &tk, NULL, 0);
  if (tk.kind == CN_TK_WILD) {
    if (next_punct(src) != ']')
      return CN_EBADFMT;
    *end = cn__list_end(&fr->l, fr->pos, &n);
    return 0;
  }
  if ((tk.kind == CN_TK_HOLE && tk.c == 't') ||
      (tk.kind == CN_TK_OPEN && tk.c == '['))
    return CN_ENOTSUP;
  return CN_ENOMATCH;
}

/* The subject x (which ends at end, when known) has matched: steps past
 * it, and reads the punctuation after it, closing the containers it
 * completes, until the next subject is due (or *sp is 0). */
static int after(mframe *st, int *sp, msrc *src, va_list *ap, const char *x,
                 const char *end, int virt) {
  while (*sp > 0) {
    mframe *fr = &st[*sp - 1];
    int c, rc;

    if (fr->kind == M_SEQ || (fr->kind == M_LIST && !virt))
      fr->pos = end != NULL ? end : cn__skip_fast(x);
    else if (fr->kind == M_TAIL)
      fr->end = virt ? NULL : end != NULL ? end : cn__skip_fast(x);
    virt = 0;
    end = NULL;
    x = NULL;
    c = next_punct(src);
    if (fr->kind == M_MAP_V && c == ',') {
      fr->kind = M_MAP_K;
      return map_key(fr, src, ap);
    } else if (fr->kind == M_MAP_V && c == '}') {
      x = fr->term;
    } else if (c == ',' && (fr->kind == M_SEQ || fr->kind == M_LIST)) {
      return 0;
    } else if (c == '}' && fr->kind == M_SEQ) {
      if (fr->l.left != 0)
        return CN_ENOMATCH;
      end = fr->pos;
    } else if (c == ']' && fr->kind == M_LIST) {
      /* The list must end here, with a nil tail. */
      if (cn__list_more(&fr->l, &fr->pos) ||
          (!fr->l.str && cn__class(fr->pos) != CLS_NIL))
        return CN_ENOMATCH;
      end = fr->l.str ? fr->pos : cn__skip_fast(fr->pos);
    } else if (c == '|' && fr->kind == M_LIST) {
      if (cn__list_more(&fr->l, &fr->pos)) {
        if ((rc = match_rest(fr, src, &end)) != 0)
          return rc;
      } else {
        fr->kind = M_TAIL;
        fr->tail_virt = fr->l.str;
        fr->term = fr->l.str ? cn__nil : fr->pos;
        return 0;
      }
    } else if (c == ']' && fr->kind == M_TAIL) {
      end = fr->tail_virt ? fr->pos : fr->end;
    } else {
      return CN_EBADFMT;
    }
    (*sp)--;
  }
  return 0;
}

static int match(cn_term t, msrc *src, va_list *ap, cn__stack *o) {
  mframe st[MAX_NEST];
  int sp = 0, rc, virt;
  char tmp[4 * 255]; /* an escaped literal */
  const char *x, *end;
  cn__tok tk;

  do {
    if ((rc = subject(sp > 0 ? &st[sp - 1] : NULL, t, &x, &end, &virt)) != 0)
      return rc;
    next_term(src, &tk, tmp, sizeof tmp);
    if (tk.kind == CN_TK_OPEN) {
      if ((rc = open_frame(st, &sp, tk.c, x, end)) == 0 && tk.c == '#')
        rc = map_key(&st[sp - 1], src, ap);
      continue;
    }
    if ((rc = match_scalar(&tk, ap, x, &end, o)) == 0)
      rc = after(st, &sp, src, ap, x, end, virt);
  } while (rc == 0 && sp > 0);
  if (rc == 0 && src->op == NULL && *cn__fmt_ws(src->f) != '\0')
    rc = CN_EBADFMT;
  return rc;
}

/* ---- Compiled patterns ---------------------------------------------------
 *
 * A program is the pattern's tokens, with the punctuation between them as
 * CN_TK_PUNCT tokens, lexed where and as the matcher above lexes them
 * (the same buffer sizes), so that the matcher reads the same tokens from
 * either source.  Only well-formed patterns are compiled, and not those
 * with a map key that is built (neither an atom nor ~A).
 */

/* Compiles the key and => of a map pattern. */
static int compile_key(cn__pgen *g, const char **fp) {
  char tmp[256]; /* as map_key */
  cn__tok tk;

  tk.n = 0;
  *fp = cn__fmt_term(*fp, &tk, tmp, sizeof tmp);
  if (tk.kind != CN_TK_ATOM && tk.kind != CN_TK_QATOM &&
      (tk.kind != CN_TK_HOLE || tk.c != 'A'))
    return -1;
  if (cn__pgen_op(g, tk.kind, tk.c, tk.s, tk.n) == NULL ||
      cn__fmt_punct(fp) != '=')
    return -1;
  return cn__pgen_op(g, CN_TK_PUNCT, '=', NULL, 0) != NULL ? 0 : -1;
}

/* A program that is one tuple of scalars: { x (, x)* }. */
static int is_flat(const cn__prog *p) {
  size_t i;
  if (p->nops < 3 || p->nops % 2 == 0 || p->ops[0].kind != CN_TK_OPEN)
    return 0;
  for (i = 1; i < p->nops; i += 2)
    if (p->ops[i].kind == CN_TK_OPEN || p->ops[i].kind == CN_TK_PUNCT ||
        p->ops[i + 1].kind != CN_TK_PUNCT ||
        p->ops[i + 1].c != (i + 2 == p->nops ? '}' : ','))
      return 0;
  return 1;
}

cn__prog *cn__match_compile(const char *fmt) {
  char st[MAX_NEST], tmp[4 * 255]; /* open containers: { [ | # */
  const char *f = fmt;
  int sp = 0, rc = 0, c, tuples = 1;
  cn__prog *p;
  cn__pgen g;
  cn__tok tk;

  cn__pgen_init(&g, fmt);
  do {
    tk.n = 0; /* holes and brackets leave it unset */
    f = cn__fmt_term(f, &tk, tmp, sizeof tmp);
    if (tk.kind == CN_TK_BAD || !cn__pgen_op(&g, tk.kind, tk.c, tk.s, tk.n)) {
      rc = -1;
    } else if (tk.kind == CN_TK_OPEN) {
      tuples &= tk.c == '{';
      if (sp == MAX_NEST)
        rc = -1;
      else if ((st[sp++] = tk.c) == '#')
        rc = compile_key(&g, &f);
      continue;
    }
    /* The punctuation after a term, as after() reads it. */
    while (rc == 0 && sp > 0) {
      char k = st[sp - 1];
      c = cn__fmt_punct(&f);
      if (cn__pgen_op(&g, CN_TK_PUNCT, (char)c, NULL, 0) == NULL)
        rc = -1;
      else if (c == ',' && k == '#')
        rc = compile_key(&g, &f);
      else if (c == '|' && k == '[')
        st[sp - 1] = '|';
      else if (c == ',' && k != '|')
        ;
      else if ((c == '}' && (k == '{' || k == '#')) ||
               (c == ']' && (k == '[' || k == '|')))
        sp--;
      else
        rc = -1;
      if (rc != 0 || (c != '}' && c != ']'))
        break;
    }
  } while (rc == 0 && sp > 0);
  p = cn__pgen_done(&g, rc == 0 && *cn__fmt_ws(f) == '\0');
  if (p != NULL)
    p->tuples = tuples && is_flat(p) ? 2 : tuples;
  return p;
}

/* A scalar element x of a tuple, against op: the commonest inline (an
 * atom that matches, and ~i on a small integer); match_scalar does the
 * rest, and says why not. */
static inline int match_elem(const cn__tok *op, va_list *ap, const char *x,
                             const char **end, cn__stack *o) {
  unsigned char tag = (unsigned char)x[0];
  pending *q;
  size_t k = 0;
  if (op->kind == CN_TK_ATOM && tag == ETF_SMALL_ATOM_UTF8 &&
      (unsigned char)x[1] == op->n) {
    while (k < op->n && x[2 + k] == op->s[k])
      k++;
  }
  if (k != 0 && k == op->n) {
    *end = x + 2 + k;
    return 0;
  }
  if (op->kind == CN_TK_HOLE && op->c == 'i' &&
      (tag == ETF_SMALL_INTEGER || tag == ETF_INTEGER) &&
      (q = CN__STACK_PUSH(o, pending)) != NULL) {
    q->kind = 'i'; /* as match_hole queues it */
    q->o1 = va_arg(*ap, int64_t *);
    q->o2 = NULL;
    q->v.i = tag == ETF_SMALL_INTEGER ? (unsigned char)x[1]
                                      : (int32_t)cn__get32(x + 1);
    *end = x + (tag == ETF_SMALL_INTEGER ? 2 : 5);
    return 0;
  }
  return match_scalar(op, ap, x, end, o);
}

/* match_tuples() for a flat pattern, one tuple of scalars ({ok, ~i}):
 * the same steps, with no stack of open tuples. */
static int match_flat(cn_term t, const cn__tok *op, va_list *ap, cn__stack *o) {
  const char *x = t.ptr, *lim = t.ptr + t.len, *end;
  uint32_t left;
  int rc;

  if (cn__class(x) != CLS_TUPLE)
    return CN_ENOMATCH;
  left = cn__tuple_arity(x);
  x += (unsigned char)x[0] == ETF_SMALL_TUPLE ? 2 : 5;
  for (op++;; op += 2) {
    if (left == 0)
      return CN_ENOMATCH; /* the tuple is shorter than the pattern */
    end = --left == 0 ? lim : NULL;
    if ((rc = match_elem(op, ap, x, &end, o)) != 0)
      return rc;
    if (op[1].c == '}')
      return left != 0 ? CN_ENOMATCH : 0;
    x = end != NULL ? end : cn__skip_fast(x);
  }
}

/* match() for a program whose only containers are tuples: the same steps
 * (subject, open_frame, match_scalar, after), with what they need to know
 * for tuples alone. */
static int match_tuples(cn_term t, const cn__tok *op, va_list *ap,
                        cn__stack *o) {
  struct {
    const char *pos; /* the next element */
    const char *lim; /* the tuple's end when known, else NULL */
    uint32_t left;   /* elements left */
  } st[MAX_NEST];
  int sp = -1, rc;
  const char *x = t.ptr, *end = t.ptr + t.len;

  for (;;) {
    if (op->kind == CN_TK_OPEN) {
      if (cn__class(x) != CLS_TUPLE)
        return CN_ENOMATCH;
      sp++;
      st[sp].left = cn__tuple_arity(x);
      st[sp].pos = x + ((unsigned char)x[0] == ETF_SMALL_TUPLE ? 2 : 5);
      st[sp].lim = end;
    } else {
      if ((rc = match_elem(op, ap, x, &end, o)) != 0)
        return rc;
      for (; sp >= 0; sp--) {
        st[sp].pos = end != NULL ? end : cn__skip_fast(x);
        if ((++op)->c == ',')
          break;
        if (st[sp].left != 0) /* '}' */
          return CN_ENOMATCH;
        end = st[sp].pos;
      }
      if (sp < 0)
        return 0;
    }
    op++;
    if (st[sp].left == 0)
      return CN_ENOMATCH; /* the tuple is shorter than the pattern */
    end = --st[sp].left == 0 ? st[sp].lim : NULL;
    x = st[sp].pos;
  }
}

/* cn_vmatch with the arguments at *ap.  cn_match passes its own va_list
 * here, not a va_copy of it: reading a va_list whole just after va_start
 * wrote it field by field stalls the store forwarding, which cost 3% of
 * a local call. */
static int vmatch(cn_term t, const char *pattern, va_list *ap) {
  const cn__prog *p;
  pending inl[16];
  msrc src;
  cn__stack o;
  int rc;

  if (pattern == NULL || t.len == 0 || t.ptr == NULL)
    return pattern == NULL ? CN_EINVAL : CN_ENOMATCH;
  cn__stack_init(&o, inl);
  src.f = pattern;
  src.op = (p = cn__fcache_get(CN__FC_MATCH, pattern)) ? p->ops : NULL;
  if (p != NULL && p->tuples == 2)
    rc = match_flat(t, p->ops, ap, &o);
  else if (p != NULL && p->tuples)
    rc = match_tuples(t, p->ops, ap, &o);
  else
    rc = match(t, &src, ap, &o);
  if (rc == 0)
    commit(&o);
  cn__stack_free(&o);
  return rc;
}

int cn_vmatch(cn_term t, const char *pattern, va_list ap) {
  va_list cp;
  int rc;
  va_copy(cp, ap);
  rc = vmatch(t, pattern, &cp);
  va_end(cp);
  return rc;
}

int cn_match(cn_term t, const char *pattern, ...) {
  va_list ap;
  int rc;
  va_start(ap, pattern);
  rc = vmatch(t, pattern, &ap);
  va_end(ap);
  return rc;
}
