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
#define INLINE_OUTS 16

enum { M_SEQ, M_LIST, M_TAIL, M_MAP_K, M_MAP_V };

typedef struct mframe {
  const char *pos;  /* M_SEQ, M_LIST: the next element; M_MAP_V: value */
  const char *term; /* M_MAP_*: the map term; M_TAIL: the tail */
  const char *end;  /* M_TAIL: the first byte after the tail */
  const char *lim;  /* the container's end when known, else NULL */
  uint32_t left;    /* M_SEQ: elements left; M_LIST: left in the segment */
  unsigned char kind;
  unsigned char str;       /* M_LIST: the segment is a STRING_EXT */
  unsigned char tail_virt; /* M_TAIL: the implicit nil of a string */
} mframe;

/* An output waiting for the whole match to succeed.  Small on purpose:
 * atoms, binaries, pids and references are read from the term at commit
 * time. */
typedef struct pending {
  char kind;     /* the hole's letter */
  void *o1, *o2; /* where the values go */
  const char *x; /* the subject term */
  union {
    int64_t i;
    uint64_t u;
    double f;
    size_t len;    /* ~t: the term's length; ~a: the buffer's size */
    uint32_t node; /* ~p, ~r: the interned node */
  } v;
} pending;

typedef struct outs {
  pending *p;
  size_t n, cap;
  pending inl[INLINE_OUTS];
} outs;

/* The next free slot of o, which becomes an output when o->n counts it;
 * NULL when memory runs out. */
static pending *slot(outs *o) {
  if (o->n == o->cap) {
    size_t cap = o->cap * 2;
    pending *p = o->p == o->inl ? malloc(cap * sizeof *p)
                                : realloc(o->p, cap * sizeof *p);
    if (p == NULL)
      return NULL;
    if (o->p == o->inl)
      memcpy(p, o->inl, sizeof o->inl);
    o->p = p;
    o->cap = cap;
  }
  return &o->p[o->n];
}

/* Normalises a list cursor: steps into a tail that continues the list.
 * Returns 1 when an element is next. */
static int list_more(mframe *fr) {
  for (;;) {
    unsigned char tag;
    if (fr->left > 0)
      return 1;
    if (fr->str)
      return 0;
    tag = (unsigned char)fr->pos[0];
    if (tag == ETF_LIST) {
      fr->left = cn__get32(fr->pos + 1);
      fr->pos += 5;
    } else if (tag == ETF_STRING && cn__get16(fr->pos + 1) != 0) {
      fr->left = cn__get16(fr->pos + 1);
      fr->str = 1;
      fr->pos += 3;
    } else {
      return 0;
    }
  }
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

/* The first byte after the rest of a list whose cursor is in fr. */
static const char *list_rest_end(mframe *fr) {
  for (;;) {
    if (fr->str) {
      fr->pos += fr->left;
      fr->left = 0;
      return fr->pos;
    }
    while (fr->left > 0) {
      fr->pos = cn__skip_fast(fr->pos);
      fr->left--;
    }
    if (!list_more(fr))
      return cn__skip_fast(fr->pos);
  }
}

/* Matches the number literal t against the subject x: small integers
 * (the common literal) by value, the rest by building and comparing. */
static int match_number(const cn__tok *t, const char *x) {
  char tmp[256];
  cn_buf kb;
  cn_term have;
  int64_t v, want;
  int rc;

  have.ptr = x;
  have.len = 1; /* the readers only need the tag to be there */
  if (cn__fmt_small_int(t, &want) == 0)
    return cn_get_int64(have, &v) == 0 && v == want ? 0 : CN_ENOMATCH;
  cn_buf_init_with(&kb, tmp, sizeof tmp);
  if ((rc = cn__fmt_number(&kb, t)) == 0) {
    have.len = (size_t)(cn__skip_fast(x) - x);
    rc = cn_term_equal(cn_buf_term(&kb), have) ? 0 : CN_ENOMATCH;
  }
  cn_buf_free(&kb);
  return rc;
}

/* Checks that the subject of q fits its hole (write == 0), or, once the
 * whole pattern has matched, writes the value to q's outputs (write ==
 * 1).  Returns 0, CN_ENOMATCH, or an error. */
static inline int take(pending *q, int write) {
  cn_term t = {q->x, 1}; /* the readers only need the tag to be there */
  const char *p;
  cn__atom a;
  size_t n;
  union {
    int64_t i;
    uint64_t u;
    double f;
  } v;

  switch (q->kind) {
  case 'a':
    if (write)
      return cn_get_atom_n(t, q->o1, q->v.len, NULL); /* no NUL: see below */
    if (!cn__is_atom_tag((unsigned char)q->x[0]))
      return CN_ENOMATCH;
    cn__atom_view(q->x, &a);
    if (cn__atom_has_nul(&a))
      return CN_ENOTSUP; /* as cn_get_atom: not a C string */
    return q->o1 == NULL || cn__atom_utf8_len(&a) >= q->v.len ? CN_ENOSPC : 0;
  case 'i':
  case 'u':
  case 'f':
    if ((q->kind == 'i'   ? cn_get_int64(t, &v.i)
         : q->kind == 'u' ? cn_get_uint64(t, &v.u)
                          : cn_get_double(t, &v.f)) != 0)
      return CN_ENOMATCH;
    if (write && q->o1 != NULL)
      memcpy(q->o1, &v, 8); /* all three are 8 bytes */
    return 0;
  case 'b':
    if (cn_get_binary(t, &p, &n) != 0)
      return CN_ENOMATCH;
    if (write && q->o1 != NULL)
      *(const char **)q->o1 = p;
    if (write && q->o2 != NULL)
      *(size_t *)q->o2 = n;
    return 0;
  case 'p':
  case 'r':
    /* Interning can fail, so it happens while matching. */
    if (!write)
      return cn__ident_node(q->x, q->kind == 'p' ? CN_T_PID : CN_T_REF,
                            &q->v.node, true);
    if (q->o1 != NULL && q->kind == 'p')
      cn__pid_fill(q->x, q->v.node, q->o1);
    else if (q->o1 != NULL)
      cn__ref_fill(q->x, q->v.node, q->o1);
    return 0;
  default: /* 't' is done by the callers */
    return 0;
  }
}

/* Matches one hole against the subject x: takes its arguments, checks the
 * subject, and queues the outputs in o. */
static int match_hole(char h, va_list *ap, const char *x, outs *o,
                      const char **end) {
  pending *q = slot(o);
  const char *name;
  cn_term t = {x, 1};
  int rc;

  if (q == NULL)
    return CN_ENOMEM;
  q->kind = h;
  q->x = x;
  q->o2 = NULL;
  switch (h) {
  case 'A':
    if ((name = va_arg(*ap, const char *)) == NULL)
      return CN_EINVAL;
    return cn_is_atom(t, name) ? 0 : CN_ENOMATCH;
  case 'a':
    q->o1 = va_arg(*ap, char *);
    q->v.len = va_arg(*ap, size_t);
    break;
  case 'i':
    q->o1 = va_arg(*ap, int64_t *);
    break;
  case 'u':
    q->o1 = va_arg(*ap, uint64_t *);
    break;
  case 'f':
    q->o1 = va_arg(*ap, double *);
    break;
  case 'b':
    q->o1 = va_arg(*ap, const char **);
    q->o2 = va_arg(*ap, size_t *);
    break;
  case 'p':
    q->o1 = va_arg(*ap, cn_pid *);
    break;
  case 'r':
    q->o1 = va_arg(*ap, cn_ref *);
    break;
  case 't':
    q->o1 = va_arg(*ap, cn_term *);
    if (*end == NULL)
      *end = cn__skip_fast(x);
    q->v.len = (size_t)(*end - x);
    o->n++; /* any term fits: no need to take() */
    return 0;
  default:
    return CN_EBADFMT;
  }
  if ((rc = take(q, 0)) != 0)
    return rc;
  o->n++;
  return 0;
}

static void commit(outs *o) {
  size_t i;
  for (i = 0; i < o->n; i++) {
    pending *q = &o->p[i];
    if (q->kind != 't')
      take(q, 1);
    else if (q->o1 != NULL) /* the commonest hole, inline */
      *(cn_term *)q->o1 = (cn_term){q->x, q->v.len};
  }
}

/* Matches a pattern term that opens no container (tk, read from the
 * pattern) against the subject x, and sets *end when it learns where x
 * ends. */
static int match_scalar(const cn__tok *tk, va_list *ap, const char *x,
                        const char **end, outs *o) {
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
      return cls == CLS_TUPLE &&
                     (tag == ETF_SMALL_TUPLE ? x[1] == 0
                                             : cn__get32(x + 1) == 0)
                 ? 0
                 : CN_ENOMATCH;
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
    if (fr->left == 0)
      return CN_ENOMATCH; /* the tuple is shorter than the pattern */
    if (--fr->left == 0)
      *end = fr->lim;
    *x = fr->pos;
  } else if (fr->kind == M_LIST) {
    if (!list_more(fr))
      return CN_ENOMATCH;
    fr->left--;
    *virt = fr->str;
    *x = fr->str ? cn__small_ints[(unsigned char)*fr->pos++] : fr->pos;
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
    if ((unsigned char)x[0] == ETF_SMALL_TUPLE) {
      fr->left = (unsigned char)x[1];
      fr->pos = x + 2;
    } else {
      fr->left = cn__get32(x + 1);
      fr->pos = x + 5;
    }
  } else if (c == '[') {
    if (cls != CLS_LIST)
      return CN_ENOMATCH;
    fr->kind = M_LIST;
    fr->left = 0;
    fr->str = 0;
    fr->pos = x;
    list_more(fr);
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

/* Reads the key pattern at *fp for the map frame fr, looks it up, and
 * makes its value the next subject. */
static int map_key(mframe *fr, const char **fp, va_list *ap) {
  const char *f = *fp, *v, *name;
  char tmp[256];
  cn__tok tk;
  cn_buf kb;
  int rc;

  *fp = cn__fmt_term(f, &tk, tmp, sizeof tmp);
  if (tk.kind == CN_TK_ATOM || tk.kind == CN_TK_QATOM) {
    v = map_find(fr->term, tk.s, tk.n, NULL);
  } else if (tk.kind == CN_TK_HOLE && tk.c == 'A') {
    if ((name = va_arg(*ap, const char *)) == NULL)
      return CN_EINVAL;
    v = map_find(fr->term, name, strlen(name), NULL);
  } else {
    /* Any other key is built, then compared with the map's keys. */
    cn_buf_init_with(&kb, tmp, sizeof tmp);
    if ((rc = cn__build_one(&kb, &f, ap, 1)) == 0) {
      cn_term key = cn_buf_term(&kb);
      v = map_find(fr->term, NULL, 0, &key);
    }
    cn_buf_free(&kb);
    if (rc != 0)
      return rc;
    *fp = f;
  }
  if (cn__fmt_punct(fp) != '=')
    return CN_EBADFMT;
  if (v == NULL)
    return CN_ENOMATCH;
  fr->kind = M_MAP_V;
  fr->pos = v;
  return 0;
}

/* After [P1, .., Pn | with elements left in the list: the rest is part of
 * this list's encoding, not a term of its own, so only _ can match it. */
static int match_rest(mframe *fr, const char **fp, const char **end) {
  cn__tok tk;
  *fp = cn__fmt_term(*fp, &tk, NULL, 0);
  if (tk.kind == CN_TK_WILD) {
    if (cn__fmt_punct(fp) != ']')
      return CN_EBADFMT;
    *end = list_rest_end(fr);
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
static int after(mframe *st, int *sp, const char **fp, va_list *ap,
                 const char *x, const char *end, int virt) {
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
    c = cn__fmt_punct(fp);
    if (fr->kind == M_MAP_V && c == ',') {
      fr->kind = M_MAP_K;
      return map_key(fr, fp, ap);
    } else if (fr->kind == M_MAP_V && c == '}') {
      x = fr->term;
    } else if (c == ',' && (fr->kind == M_SEQ || fr->kind == M_LIST)) {
      return 0;
    } else if (c == '}' && fr->kind == M_SEQ) {
      if (fr->left != 0)
        return CN_ENOMATCH;
      end = fr->pos;
    } else if (c == ']' && fr->kind == M_LIST) {
      /* The list must end here, with a nil tail. */
      if (list_more(fr) || (!fr->str && cn__class(fr->pos) != CLS_NIL))
        return CN_ENOMATCH;
      end = fr->str ? fr->pos : cn__skip_fast(fr->pos);
    } else if (c == '|' && fr->kind == M_LIST) {
      if (list_more(fr)) {
        if ((rc = match_rest(fr, fp, &end)) != 0)
          return rc;
      } else {
        fr->kind = M_TAIL;
        fr->tail_virt = fr->str;
        fr->term = fr->str ? cn__nil : fr->pos;
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

static int match(cn_term t, const char *f, va_list *ap, outs *o) {
  mframe st[MAX_NEST];
  int sp = 0, rc, virt;
  char tmp[4 * 255]; /* an escaped literal */
  const char *x, *end;
  cn__tok tk;

  do {
    if ((rc = subject(sp > 0 ? &st[sp - 1] : NULL, t, &x, &end, &virt)) != 0)
      return rc;
    f = cn__fmt_term(f, &tk, tmp, sizeof tmp);
    if (tk.kind == CN_TK_OPEN) {
      if ((rc = open_frame(st, &sp, tk.c, x, end)) == 0 && tk.c == '#')
        rc = map_key(&st[sp - 1], &f, ap);
      continue;
    }
    if ((rc = match_scalar(&tk, ap, x, &end, o)) == 0)
      rc = after(st, &sp, &f, ap, x, end, virt);
  } while (rc == 0 && sp > 0);
  if (rc == 0 && *cn__fmt_ws(f) != '\0')
    rc = CN_EBADFMT;
  return rc;
}

int cn_vmatch(cn_term t, const char *pattern, va_list ap) {
  outs o;
  va_list cp;
  int rc;

  if (pattern == NULL || t.len == 0 || t.ptr == NULL)
    return pattern == NULL ? CN_EINVAL : CN_ENOMATCH;
  o.p = o.inl;
  o.n = 0;
  o.cap = INLINE_OUTS;
  va_copy(cp, ap);
  rc = match(t, pattern, &cp, &o);
  va_end(cp);
  if (rc == 0)
    commit(&o);
  if (o.p != o.inl)
    free(o.p);
  return rc;
}

int cn_match(cn_term t, const char *pattern, ...) {
  va_list ap;
  int rc;
  va_start(ap, pattern);
  rc = cn_vmatch(t, pattern, ap);
  va_end(ap);
  return rc;
}
