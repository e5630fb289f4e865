/* cn_match: destructuring a term with a pattern in cn_build's syntax.
 *
 * The pattern and the term are walked together in one pass, with an
 * explicit stack of open containers.  Values for the output holes are
 * collected on the side and written only once the whole pattern has
 * matched, so a failed match leaves the caller's variables alone.
 *
 * Map patterns look their keys up in the term's map (any order), as
 * Erlang's map patterns do; a key is a literal, or ~A.  A list pattern's
 * tail after '|' is matched against the rest of the list; see cn_match in
 * term.h for the one case that cannot be viewed in place.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

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
 * pids and references are filled in from the term at commit time. */
typedef struct pending {
  char kind;     /* the hole's letter */
  void *o1, *o2; /* where the values go */
  const char *x; /* the subject term */
  union {
    int64_t i;
    uint64_t u;
    double f;
    size_t len;    /* ~t: the term's length */
    uint32_t node; /* ~p, ~r: the interned node */
  } v;
} pending;

typedef struct outs {
  pending *p;
  size_t n, cap;
  pending inl[INLINE_OUTS];
} outs;

static inline const char *ws(const char *f) {
  while (*f == ' ' || *f == '\t' || *f == '\n' || *f == '\r')
    f++;
  return f;
}

static inline int is_name(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '@';
}

static pending *grow_outs(outs *o) {
  size_t cap = o->cap * 2;
  pending *p =
      o->p == o->inl ? malloc(cap * sizeof *p) : realloc(o->p, cap * sizeof *p);
  if (p == NULL)
    return NULL;
  if (o->p == o->inl)
    memcpy(p, o->inl, sizeof o->inl);
  o->p = p;
  o->cap = cap;
  return &o->p[o->n++];
}

static inline pending *add_out(outs *o) {
  if (o->n < o->cap)
    return &o->p[o->n++];
  return grow_outs(o);
}

/* True when the quoted atom that starts at s (after its quote) ends
 * before any backslash: its text is then the pattern's bytes. */
static int quoted_plain(const char *s) {
  while (*s != '\'' && *s != '\\' && *s != '\0')
    s++;
  return *s == '\'';
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

/* Integer subject as int64, or -1 when it is not one that fits. */
static int int_value(const char *x, int64_t *v) {
  cn_term t;
  unsigned char tag = (unsigned char)x[0];
  if (tag == ETF_SMALL_INTEGER) {
    *v = (unsigned char)x[1];
    return 0;
  }
  if (tag == ETF_INTEGER) {
    *v = (int32_t)cn__get32(x + 1);
    return 0;
  }
  t.ptr = x;
  t.len = 1; /* the readers only need the tag to be there */
  return cn_get_int64(t, v) == 0 ? 0 : -1;
}

/* Matches the literal at *fp (a number, string, quoted atom or complex
 * literal) by building it and comparing; advances *fp. */
static int match_built(const char **fp, va_list *ap, const char *x, int *rc) {
  char tmp[256];
  cn_buf kb;
  cn_term want, have;

  cn_buf_init_with(&kb, tmp, sizeof tmp);
  *rc = cn__build_one(&kb, fp, ap, 1);
  if (*rc != 0) {
    cn_buf_free(&kb);
    return 0;
  }
  want = cn_buf_term(&kb);
  have.ptr = x;
  have.len = (size_t)(cn__skip_fast(x) - x);
  *rc = cn_term_equal(want, have) ? 0 : CN_ENOMATCH;
  cn_buf_free(&kb);
  return *rc == 0;
}

/* Matches one hole against the subject x.  Returns 0, CN_ENOMATCH, or an
 * error; outputs are queued in o. */
static int match_hole(char h, va_list *ap, const char *x, outs *o,
                      const char **end) {
  unsigned char tag = (unsigned char)x[0];
  pending *q;
  cn_term t;
  int rc;

  t.ptr = x;
  t.len = 1;
  switch (h) {
  case 'A': {
    const char *name = va_arg(*ap, const char *);
    cn__atom a;
    if (name == NULL)
      return CN_EINVAL;
    if (!cn__is_atom_tag(tag))
      return CN_ENOMATCH;
    cn__atom_view(x, &a);
    return cn__atom_eq(&a, name, strlen(name)) ? 0 : CN_ENOMATCH;
  }
  case 'a': {
    char *buf = va_arg(*ap, char *);
    size_t cap = va_arg(*ap, size_t);
    cn__atom a;
    if (!cn__is_atom_tag(tag))
      return CN_ENOMATCH;
    cn__atom_view(x, &a);
    if (buf == NULL || cn__atom_utf8_len(&a) >= cap)
      return CN_ENOSPC;
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    q->o1 = buf;
    break;
  }
  case 'i': {
    int64_t *out = va_arg(*ap, int64_t *);
    int64_t v;
    if (int_value(x, &v) != 0)
      return CN_ENOMATCH;
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    q->o1 = out;
    q->v.i = v;
    break;
  }
  case 'u': {
    uint64_t *out = va_arg(*ap, uint64_t *);
    uint64_t v;
    t.len = 1;
    if (cn_get_uint64(t, &v) != 0)
      return CN_ENOMATCH;
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    q->o1 = out;
    q->v.u = v;
    break;
  }
  case 'f': {
    double *out = va_arg(*ap, double *);
    double v;
    if (cn_get_double(t, &v) != 0)
      return CN_ENOMATCH;
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    q->o1 = out;
    q->v.f = v;
    break;
  }
  case 'b': {
    const char **pp = va_arg(*ap, const char **);
    size_t *np = va_arg(*ap, size_t *);
    t.len = 6;
    if (cn_term_typeof(t) != CN_T_BINARY)
      return CN_ENOMATCH;
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    q->o1 = (void *)pp;
    q->o2 = np;
    break;
  }
  case 'p':
  case 'r': {
    void *out = va_arg(*ap, void *);
    uint32_t node;
    if ((rc = cn__ident_node(x, h == 'p' ? CN_T_PID : CN_T_REF, &node, true)) !=
        0)
      return rc;
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    q->o1 = out;
    q->v.node = node;
    break;
  }
  case 't': {
    cn_term *out = va_arg(*ap, cn_term *);
    if ((q = add_out(o)) == NULL)
      return CN_ENOMEM;
    if (*end == NULL)
      *end = cn__skip_fast(x);
    q->o1 = out;
    q->v.len = (size_t)(*end - x);
    break;
  }
  default:
    return CN_EBADFMT;
  }
  q->kind = h;
  q->x = x;
  return 0;
}

static void commit(const outs *o) {
  size_t i;
  for (i = 0; i < o->n; i++) {
    const pending *q = &o->p[i];
    switch (q->kind) {
    case 'a': {
      cn_term t;
      t.ptr = q->x;
      t.len = 1;
      cn_get_atom(t, q->o1, (size_t)-1); /* size checked while matching */
      break;
    }
    case 'i':
      if (q->o1 != NULL)
        *(int64_t *)q->o1 = q->v.i;
      break;
    case 'u':
      if (q->o1 != NULL)
        *(uint64_t *)q->o1 = q->v.u;
      break;
    case 'f':
      if (q->o1 != NULL)
        *(double *)q->o1 = q->v.f;
      break;
    case 'b':
      if (q->o1 != NULL) {
        unsigned char tag = (unsigned char)q->x[0];
        *(const char **)q->o1 = q->x + (tag == ETF_BINARY ? 5 : 6);
      }
      if (q->o2 != NULL)
        *(size_t *)q->o2 = cn__get32(q->x + 1);
      break;
    case 'p':
      if (q->o1 != NULL)
        cn__pid_fill(q->x, q->v.node, q->o1);
      break;
    case 'r':
      if (q->o1 != NULL)
        cn__ref_fill(q->x, q->v.node, q->o1);
      break;
    case 't':
      if (q->o1 != NULL) {
        ((cn_term *)q->o1)->ptr = q->x;
        ((cn_term *)q->o1)->len = q->v.len;
      }
      break;
    default:
      break;
    }
  }
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

static int match(cn_term t, const char *f, va_list *ap, outs *o) {
  mframe st[MAX_NEST];
  int sp = 0, rc = 0;

  for (;;) {
    const char *x;          /* the subject of the next pattern term */
    const char *end = NULL; /* where the subject ends, when known */
    int virt = 0; /* x is not in the term's bytes (a string element) */
    mframe *fr = sp > 0 ? &st[sp - 1] : NULL;
    char c;

    /* Pick the subject.  Where its end is known for free (the whole term,
     * the last element of a tuple whose end is known) it is kept, so that
     * ~t at the end of a message costs no walk over its bytes. */
    if (fr == NULL) {
      x = t.ptr;
      end = t.ptr + t.len;
    } else if (fr->kind == M_SEQ) {
      if (fr->left == 0)
        return CN_ENOMATCH; /* the tuple is shorter than the pattern */
      if (--fr->left == 0)
        end = fr->lim;
      x = fr->pos;
    } else if (fr->kind == M_LIST) {
      if (!list_more(fr))
        return CN_ENOMATCH;
      fr->left--;
      if (fr->str) {
        x = cn__small_ints[(unsigned char)*fr->pos++];
        virt = 1;
      } else {
        x = fr->pos;
      }
    } else if (fr->kind == M_TAIL) {
      x = fr->term;
      virt = fr->tail_virt;
      if (!virt)
        end = fr->lim;
    } else { /* M_MAP_V: set when the key was found */
      x = fr->pos;
    }

    f = ws(f);
    c = *f;
    if (c >= 'a' && c <= 'z') {
      const char *s = f;
      unsigned char tag = (unsigned char)x[0];
      size_t n;
      while (is_name(*f))
        f++;
      n = (size_t)(f - s);
      if (tag == ETF_SMALL_ATOM_UTF8 || tag == ETF_SMALL_ATOM) {
        /* A bare name is ASCII, which reads the same in Latin-1. */
        size_t k;
        if ((unsigned char)x[1] != n)
          return CN_ENOMATCH;
        for (k = 0; k < n; k++) /* names are short: no memcmp call */
          if (x[2 + k] != s[k])
            return CN_ENOMATCH;
        end = x + 2 + n;
      } else if (tag == ETF_ATOM_UTF8 || tag == ETF_ATOM) {
        cn__atom a;
        end = cn__atom_view(x, &a);
        if (!cn__atom_eq(&a, s, n))
          return CN_ENOMATCH;
      } else {
        return CN_ENOMATCH;
      }
    } else if (c == '_' && !is_name(f[1])) {
      f++;
    } else if (c == '~') {
      if ((rc = match_hole(f[1], ap, x, o, &end)) != 0)
        return rc;
      f += 2;
    } else if (c == '{' || c == '[' || (c == '#' && f[1] == '{')) {
      int cls = cn__class(x);
      const char *g = ws(f + (c == '#' ? 2 : 1));
      char close = c == '[' ? ']' : '}';
      if (*g == close) {
        /* {} matches the empty tuple, [] nil, #{} any map. */
        f = g + 1;
        if (c == '{' &&
            !(cls == CLS_TUPLE &&
              ((unsigned char)x[0] == ETF_SMALL_TUPLE ? x[1] == 0
                                                      : cn__get32(x + 1) == 0)))
          return CN_ENOMATCH;
        if (c == '[' && cls != CLS_NIL)
          return CN_ENOMATCH;
        if (c == '#' && cls != CLS_MAP)
          return CN_ENOMATCH;
      } else {
        if (sp == MAX_NEST)
          return CN_EBADFMT;
        fr = &st[sp];
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
        sp++;
        f = g;
        if (c == '#')
          goto map_key;
        continue;
      }
    } else if (c == '\'' && quoted_plain(f + 1)) {
      /* A quoted atom without escapes, such as '$gen_call'. */
      const char *s = f + 1, *q = strchr(s, '\'');
      cn__atom a;
      if (!cn__is_atom_tag((unsigned char)x[0]))
        return CN_ENOMATCH;
      end = cn__atom_view(x, &a);
      if (!cn__atom_eq(&a, s, (size_t)(q - s)))
        return CN_ENOMATCH;
      f = q + 1;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == '\'' || c == '"') {
      /* Small integers are the common literal; the rest is built. */
      const char *s = f;
      int64_t v = 0, want;
      int neg = *s == '-', digits = 0;
      for (s += neg; *s >= '0' && *s <= '9' && digits < 18; s++, digits++)
        v = v * 10 + (*s - '0');
      if (digits > 0 && digits < 18 && *s != '.' && !(*s >= '0' && *s <= '9')) {
        want = neg ? -v : v;
        if (int_value(x, &v) != 0 || v != want)
          return CN_ENOMATCH;
        f = s;
      } else if (!match_built(&f, ap, x, &rc)) {
        return rc;
      }
    } else {
      return CN_EBADFMT;
    }

    /* The subject is matched: close the containers it completes. */
    for (;;) {
      if (sp == 0) {
        f = ws(f);
        return *f == '\0' ? 0 : CN_EBADFMT;
      }
      fr = &st[sp - 1];
      /* Advance past the subject just matched. */
      if (fr->kind == M_SEQ || (fr->kind == M_LIST && !virt)) {
        fr->pos = end != NULL ? end : cn__skip_fast(x);
      } else if (fr->kind == M_TAIL) {
        fr->end = virt ? NULL : end != NULL ? end : cn__skip_fast(x);
      }
      virt = 0;
      end = NULL;

      f = ws(f);
      c = *f++;
      if (fr->kind == M_MAP_V) {
        if (c == ',') {
          fr->kind = M_MAP_K;
          goto map_key;
        }
        if (c != '}')
          return CN_EBADFMT;
        x = fr->term;
        sp--;
        continue;
      }
      if (c == ',' && (fr->kind == M_SEQ || fr->kind == M_LIST))
        break;
      if (c == '}' && fr->kind == M_SEQ) {
        if (fr->left != 0)
          return CN_ENOMATCH;
        end = fr->pos;
        x = NULL;
        sp--;
        continue;
      }
      if (c == ']' && fr->kind == M_LIST) {
        /* The list must end here, with a nil tail. */
        if (list_more(fr))
          return CN_ENOMATCH;
        if (fr->str) {
          end = fr->pos;
        } else {
          if (cn__class(fr->pos) != CLS_NIL)
            return CN_ENOMATCH;
          end = cn__skip_fast(fr->pos);
        }
        x = NULL;
        sp--;
        continue;
      }
      if (c == '|' && fr->kind == M_LIST) {
        if (list_more(fr)) {
          /* The rest is part of this list's encoding, not a term of its
           * own: only _ can match it. */
          f = ws(f);
          if (*f == '_' && !is_name(f[1])) {
            f = ws(f + 1);
            if (*f++ != ']')
              return CN_EBADFMT;
            end = list_rest_end(fr);
            x = NULL;
            sp--;
            continue;
          }
          if (*f == '~' && f[1] == 't')
            return CN_ENOTSUP;
          if (*f == '[' && *ws(f + 1) != ']')
            return CN_ENOTSUP;
          return CN_ENOMATCH;
        }
        fr->kind = M_TAIL;
        if (fr->str) {
          fr->term = cn__nil;
          fr->tail_virt = 1;
        } else {
          fr->term = fr->pos;
          fr->tail_virt = 0;
        }
        break;
      }
      if (c == ']' && fr->kind == M_TAIL) {
        end = fr->tail_virt ? fr->pos : fr->end;
        x = NULL;
        sp--;
        continue;
      }
      return CN_EBADFMT;
    }
    continue;

  map_key:
    /* fr is an M_MAP_K frame; f is at a key pattern. */
    fr = &st[sp - 1];
    {
      const char *v;
      f = ws(f);
      if (*f >= 'a' && *f <= 'z') {
        const char *s = f;
        while (is_name(*f))
          f++;
        v = map_find(fr->term, s, (size_t)(f - s), NULL);
      } else if (*f == '~' && f[1] == 'A') {
        const char *name = va_arg(*ap, const char *);
        if (name == NULL)
          return CN_EINVAL;
        f += 2;
        v = map_find(fr->term, name, strlen(name), NULL);
      } else {
        char tmp[256];
        cn_buf kb;
        cn_term key;
        cn_buf_init_with(&kb, tmp, sizeof tmp);
        rc = cn__build_one(&kb, &f, ap, 1);
        if (rc != 0) {
          cn_buf_free(&kb);
          return rc;
        }
        key = cn_buf_term(&kb);
        v = map_find(fr->term, NULL, 0, &key);
        cn_buf_free(&kb);
      }
      f = ws(f);
      if (f[0] != '=' || f[1] != '>')
        return CN_EBADFMT;
      f += 2;
      if (v == NULL)
        return CN_ENOMATCH;
      fr->kind = M_MAP_V;
      fr->pos = v;
    }
  }
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
