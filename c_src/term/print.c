/* Not ei: ei_print_term does not print ~w as erts does (floats, quoting). */
/* cn_term_print: a term in Erlang syntax, as io:format("~w") writes it on
 * OTP 25, so that a log line reads the same on either side.
 *
 * Where ~w depends on the node it runs on, the output is made
 * deterministic instead:
 *  - pids, ports and references of "nonode@nohost" print as the local
 *    ones of an unconnected node do: <0.Id.Serial>, #Port<0.Id>,
 *    #Ref<0.W2.W1.W0>; others put the node name in place of the 0 and
 *    carry a # prefix: #Pid<a@host.Id.Serial>, #Port<a@host.Id>,
 *    #Ref<a@host.W2.W1.W0>;
 *  - map pairs print in key order (erts prints maps over 32 pairs in
 *    its internal hash order);
 *  - characters beyond Latin-1 in atoms print as UTF-8, as ~tw would.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

typedef struct out {
  cn_buf *b;
  int err;
} out;

static void put(out *o, const char *s, size_t n) {
  if (o->err == 0 && n != 0)
    o->err = cn_buf_append(o->b, s, n);
}

static void putch(out *o, char c) {
  char *d;
  if (o->err != 0)
    return;
  if ((d = cn__room(o->b, 1)) == NULL) {
    o->err = CN_ENOMEM;
    return;
  }
  *d = c;
  o->b->len++;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

static void put_u64(out *o, uint64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
  put(o, tmp, (size_t)n);
}

/* ---- Numbers ------------------------------------------------------------ */

static void put_int(out *o, const char *p) {
  cn__int v;
  uint32_t *limbs;
  char *digits;
  size_t nl, i, nd = 0;

  cn__int_view(p, &v);
  if (v.neg)
    putch(o, '-');
  if (v.n <= 8) {
    uint64_t m = 0;
    for (i = v.n; i-- > 0;)
      m = (m << 8) | v.mag[i];
    put_u64(o, m);
    return;
  }
  /* A bignum: divide by 10^9 repeatedly over 32-bit limbs. */
  nl = (v.n + 3) / 4;
  limbs = calloc(nl, sizeof *limbs);
  digits = malloc(nl * 10 + 1);
  if (limbs == NULL || digits == NULL) {
    free(limbs);
    free(digits);
    o->err = CN_ENOMEM;
    return;
  }
  for (i = 0; i < v.n; i++)
    limbs[i / 4] |= (uint32_t)v.mag[i] << (8 * (i % 4));
  while (nl > 0) {
    uint64_t rem = 0;
    int k;
    for (i = nl; i-- > 0;) {
      uint64_t cur = (rem << 32) | limbs[i];
      limbs[i] = (uint32_t)(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    while (nl > 0 && limbs[nl - 1] == 0)
      nl--;
    for (k = 0; k < 9 && (nl > 0 || rem != 0); k++) {
      digits[nd++] = (char)('0' + rem % 10);
      rem /= 10;
    }
  }
  for (i = 0; i < nd / 2; i++) {
    char t = digits[i];
    digits[i] = digits[nd - 1 - i];
    digits[nd - 1 - i] = t;
  }
  put(o, digits, nd);
  free(limbs);
  free(digits);
}

/* True when mantissa digits D (as an integer) times 10^e reads back as d.
 * The text has no decimal point, so the C locale cannot interfere. */
static int round_trips(uint64_t D, int e, double d) {
  char tmp[48];
  snprintf(tmp, sizeof tmp, "%llue%d", (unsigned long long)D, e);
  return strtod(tmp, NULL) == d;
}

/* The shortest digits that read back as d (> 0), as D * 10^e with no
 * trailing zeros in D: what Ryu computes for erts' float_to_list(F,
 * [short]).  Correctly rounded %.*e gives the closest candidate of each
 * length; next to a power of two the rounding interval is lopsided, so
 * the neighbours of that candidate get a chance too. */
static void shortest(double d, uint64_t *Dout, int *eout) {
  int prec, mexp;
  uint64_t mant;

  frexp(d, &mexp);
  memcpy(&mant, &d, sizeof mant);
  mant &= ((uint64_t)1 << 52) - 1;
  for (prec = 1; prec <= 17; prec++) {
    char tmp[64];
    const char *s;
    uint64_t D = 0;
    int e10, digits = 0, e;

    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
    for (s = tmp; *s != 'e' && *s != '\0'; s++)
      if (*s >= '0' && *s <= '9') {
        D = D * 10 + (uint64_t)(*s - '0');
        digits++;
      }
    e10 = *s == 'e' ? atoi(s + 1) : 0;
    e = e10 - (digits - 1);
    if (round_trips(D, e, d))
      goto found;
    if (mant == 0 && prec < 17) {
      if (round_trips(D + 1, e, d)) {
        D++;
        goto found;
      }
      if (D > 1 && round_trips(D - 1, e, d)) {
        D--;
        goto found;
      }
    }
    continue;
  found:
    while (D != 0 && D % 10 == 0) {
      D /= 10;
      e++;
    }
    *Dout = D;
    *eout = e;
    return;
  }
  *Dout = 0; /* unreachable: 17 digits always read back */
  *eout = 0;
}

/* Formats as erts' float_to_list(F, [short]) (io_lib's ~w): fixed or
 * scientific notation, whichever erts' modified Ryu picks. */
static void put_float(out *o, double d) {
  char digits[24], tmp[64];
  uint64_t D;
  int e, olen, sci, lower, upper, n = 0, i;

  if (signbit(d))
    tmp[n++] = '-';
  if (d == 0) {
    memcpy(tmp + n, "0.0", 3);
    put(o, tmp, (size_t)n + 3);
    return;
  }
  shortest(fabs(d), &D, &e);
  olen = snprintf(digits, sizeof digits, "%llu", (unsigned long long)D);
  sci = e + olen - 1;
  if (olen == 1) {
    lower = -4;
    upper = 2;
  } else if (sci >= 10) {
    lower = -(olen + 2);
    upper = 2;
  } else {
    lower = -(olen + 2);
    upper = 1;
  }
  if (e >= lower && e <= upper &&
      !((D >= (1ull << 53) && e == 0) || (D > (1ull << 52) / 5 && e == 1) ||
        (D > (1ull << 51) / 25 && e == 2))) {
    int whole = olen + e;
    if (e >= 0) {
      memcpy(tmp + n, digits, (size_t)olen);
      n += olen;
      for (i = 0; i < e; i++)
        tmp[n++] = '0';
      tmp[n++] = '.';
      tmp[n++] = '0';
    } else if (whole > 0) {
      memcpy(tmp + n, digits, (size_t)whole);
      n += whole;
      tmp[n++] = '.';
      memcpy(tmp + n, digits + whole, (size_t)(olen - whole));
      n += olen - whole;
    } else {
      tmp[n++] = '0';
      tmp[n++] = '.';
      for (i = 0; i < -whole; i++)
        tmp[n++] = '0';
      memcpy(tmp + n, digits, (size_t)olen);
      n += olen;
    }
  } else {
    tmp[n++] = digits[0];
    tmp[n++] = '.';
    if (olen > 1) {
      memcpy(tmp + n, digits + 1, (size_t)olen - 1);
      n += olen - 1;
    } else {
      tmp[n++] = '0';
    }
    n += snprintf(tmp + n, sizeof tmp - (size_t)n, "e%d", sci);
  }
  put(o, tmp, (size_t)n);
}

/* ---- Atoms -------------------------------------------------------------- */

static const char *const reserved[] = {
    "after",  "and",     "andalso", "band", "begin", "bnot", "bor",
    "bsl",    "bsr",     "bxor",    "case", "catch", "cond", "div",
    "end",    "fun",     "if",      "let",  "not",   "of",   "or",
    "orelse", "receive", "rem",     "try",  "when",  "xor"};

/* Decodes the atom into code points; returns the count. */
static size_t atom_cps(const cn__atom *a, uint32_t *cp) {
  size_t i = 0, n = 0;
  while (i < a->n && n < 255)
    cp[n++] = cn__atom_next(a, &i);
  return n;
}

/* Writes the atom's name in UTF-8, unquoted. */
static void put_name(out *o, const cn__atom *a) {
  char tmp[2 * 255]; /* a Latin-1 character takes at most 2 bytes */
  if (!a->latin1) {
    put(o, (const char *)a->s, a->n);
  } else if (a->n <= 255) { /* as the validator allows */
    cn__atom_utf8(a, tmp);
    put(o, tmp, cn__atom_utf8_len(a));
  }
}

/* io_lib:write_atom/1: quoted unless it reads as a bare atom. */
static void put_atom(out *o, const cn__atom *a) {
  uint32_t cp[255]; /* atoms hold at most 255 characters */
  size_t n = atom_cps(a, cp), i;
  int quote = 0;

  for (i = 0; i < n && !quote; i++)
    quote = !cn__atom_char(cp[i], i == 0);
  quote |= n == 0;
  if (!quote) {
    for (i = 0; i < sizeof reserved / sizeof *reserved; i++)
      if (cn__atom_eq(a, reserved[i], strlen(reserved[i]))) {
        quote = 1;
        break;
      }
  }
  if (!quote) {
    put_name(o, a);
    return;
  }
  putch(o, '\'');
  for (i = 0; i < n; i++) {
    /* The escapes io_lib writes; other controls in octal. */
    static const char from[] = "'\\\n\r\t\v\b\f\033\177", to[] = "'\\nrtvbfed";
    const char *hit;
    char esc[4] = {'\\'};
    if (cp[i] >= ' ' && cp[i] <= '~' && cp[i] != '\'' && cp[i] != '\\') {
      putch(o, (char)cp[i]);
    } else if (cp[i] != 0 && cp[i] < 0x80 &&
               (hit = memchr(from, (int)cp[i], 10)) != NULL) {
      esc[1] = to[hit - from];
      put(o, esc, 2);
    } else if (cp[i] >= 0xA0) {
      put(o, esc, cn__utf8_put(cp[i], esc));
    } else {
      esc[1] = (char)('0' + (cp[i] >> 6));
      esc[2] = (char)('0' + ((cp[i] >> 3) & 7));
      esc[3] = (char)('0' + (cp[i] & 7));
      put(o, esc, 4);
    }
  }
  putch(o, '\'');
}

static void put_atom_at(out *o, const char *p) {
  cn__atom a;
  cn__atom_view(p, &a);
  put_atom(o, &a);
}

/* ---- Identifiers, funs, bits --------------------------------------------- */

/* The node part of a pid, port or reference: 0 for "nonode@nohost". */
static void put_node(out *o, const cn__atom *node) {
  if (cn__atom_eq(node, "nonode@nohost", 13))
    putch(o, '0');
  else
    put_name(o, node);
}

static void put_ident(out *o, int cls, const char *p) {
  cn__ident d;
  uint32_t i;

  cn__ident_view(p, &d);
  if (cls == CLS_PID)
    puts_(o, cn__atom_eq(&d.node, "nonode@nohost", 13) ? "<" : "#Pid<");
  else
    puts_(o, cls == CLS_PORT ? "#Port<" : "#Ref<");
  put_node(o, &d.node);
  for (i = d.len; i-- > 0;) { /* a reference's words, highest first */
    putch(o, '.');
    put_u64(o, cn__get32(d.words + 4 * (size_t)i));
  }
  if (cls != CLS_REF) {
    putch(o, '.');
    put_u64(o, d.id);
  }
  if (cls == CLS_PID) {
    putch(o, '.');
    put_u64(o, d.serial);
  }
  putch(o, '>');
}

static void put_fun(out *o, const char *p) {
  cn__fun f;
  int32_t uniq;

  cn__fun_view(p, &f);
  if (f.export) {
    puts_(o, "fun ");
    put_atom(o, &f.module);
    putch(o, ':');
    put_atom(o, &f.name);
    putch(o, '/');
    put_u64(o, f.arity);
    return;
  }
  puts_(o, "#Fun<");
  put_atom(o, &f.module);
  putch(o, '.');
  put_u64(o, f.index);
  putch(o, '.');
  uniq = (int32_t)f.old_uniq; /* an INTEGER_EXT is signed */
  if (uniq < 0)
    putch(o, '-');
  put_u64(o, uniq < 0 ? (uint64_t) - (int64_t)uniq : (uint64_t)uniq);
  putch(o, '>');
}

static void put_bits(out *o, const char *p) {
  size_t n, i;
  unsigned last;
  const unsigned char *s = cn__bits_view(p, &n, &last);

  puts_(o, "<<");
  for (i = 0; i < n; i++) {
    if (i != 0)
      putch(o, ',');
    if (i == n - 1 && last != 8) {
      put_u64(o, s[i] >> (8 - last));
      putch(o, ':');
      put_u64(o, last);
    } else {
      put_u64(o, s[i]);
    }
  }
  puts_(o, ">>");
}

static void put_scalar(out *o, int cls, const char *p) {
  double d;
  switch (cls) {
  case CLS_NUMBER:
    if ((unsigned char)p[0] == ETF_NEW_FLOAT ||
        (unsigned char)p[0] == ETF_FLOAT) {
      d = 0;
      cn__float_value(p, &d);
      put_float(o, d);
    } else {
      put_int(o, p);
    }
    break;
  case CLS_ATOM:
    put_atom_at(o, p);
    break;
  case CLS_REF:
  case CLS_PORT:
  case CLS_PID:
    put_ident(o, cls, p);
    break;
  case CLS_FUN:
    put_fun(o, p);
    break;
  case CLS_NIL:
    puts_(o, "[]");
    break;
  case CLS_BITS:
    put_bits(o, p);
    break;
  default:
    break;
  }
}

/* ---- The walk ------------------------------------------------------------ */

enum { P_TUPLE, P_LIST, P_TAIL, P_MAP };

typedef struct pframe {
  int kind;
  int first;       /* no element printed yet */
  uint64_t left;   /* P_TUPLE: elements; P_MAP: items */
  uint64_t n;      /* P_MAP: pairs */
  cn__list l;      /* P_LIST */
  cn__kv *kv;      /* P_MAP: the pairs in key order */
  const char *end; /* P_MAP: first byte after the map */
} pframe;

int cn_term_print(cn_term t, cn_buf *b) {
  pframe inl[8], *f;
  cn__stack s;
  const char *p = t.ptr, *x = t.ptr;
  size_t start;
  out o;

  if (b == NULL)
    return CN_EINVAL;
  o.b = b;
  o.err = 0;
  start = b->len;
  cn__stack_init(&s, inl);
  if (t.len == 0)
    goto done;

  for (;;) {
    int cls = cn__class(x);
    int kind = -1;

    switch (cls) {
    case CLS_TUPLE:
      puts_(&o, cn__tuple_arity(x) == 0 ? "{}" : "{");
      kind = cn__tuple_arity(x) == 0 ? -1 : P_TUPLE;
      p = x + ((unsigned char)x[0] == ETF_SMALL_TUPLE ? 2 : 5);
      break;
    case CLS_MAP:
      puts_(&o, cn__get32(x + 1) == 0 ? "#{}" : "#{");
      kind = cn__get32(x + 1) == 0 ? -1 : P_MAP;
      p = x + 5;
      break;
    case CLS_LIST:
      putch(&o, '[');
      kind = P_LIST;
      break;
    default:
      put_scalar(&o, cls, x);
      /* A string byte or the nil of a string lies outside the stream. */
      if (x == p)
        p = cn__skip_fast(x);
      break;
    }
    if (o.err != 0)
      goto done;

    if (kind >= 0) {
      if ((f = CN__STACK_PUSH(&s, pframe)) == NULL) {
        o.err = CN_ENOMEM;
        goto done;
      }
      f->kind = kind;
      f->first = 1;
      f->kv = NULL;
      if (kind == P_TUPLE) {
        f->left = cn__tuple_arity(x);
      } else if (kind == P_MAP) {
        f->n = cn__get32(x + 1);
        f->left = 2 * f->n;
        f->end = cn__map_pairs(x + 5, f->n, &f->kv, 0);
        if (f->end == NULL) {
          o.err = CN_ENOMEM;
          goto done;
        }
      } else {
        p = x;
        cn__list_enter(&f->l, &p);
      }
    }

    /* Next item, with the punctuation before it. */
    for (;;) {
      if (s.n == 0)
        goto done;
      f = CN__STACK_TOP(&s, pframe);
      if (f->kind == P_TUPLE) {
        if (f->left == 0) {
          putch(&o, '}');
          s.n--;
          continue;
        }
        if (!f->first)
          putch(&o, ',');
        f->first = 0;
        f->left--;
        x = p;
        break;
      }
      if (f->kind == P_MAP) {
        uint64_t i = 2 * f->n - f->left;
        if (f->left == 0) {
          putch(&o, '}');
          p = f->end;
          free(f->kv);
          s.n--;
          continue;
        }
        if (i % 2 == 1)
          puts_(&o, " => ");
        else if (i != 0)
          putch(&o, ',');
        f->left--;
        x = p = i % 2 == 0 ? f->kv[i / 2].k : f->kv[i / 2].v;
        break;
      }
      if (f->kind == P_TAIL) {
        putch(&o, ']');
        s.n--;
        continue;
      }
      if (cn__list_next(&f->l, &p, &x)) {
        if (!f->first)
          putch(&o, ',');
        f->first = 0;
        break;
      }
      if (cn__class(x) == CLS_NIL) {
        putch(&o, ']');
        if (x == p)
          p = cn__skip_fast(x);
        s.n--;
        continue;
      }
      putch(&o, '|');
      f->kind = P_TAIL; /* print the tail, then close */
      break;
    }
  }

done:
  while (s.n > 0) {
    f = CN__STACK_TOP(&s, pframe);
    if (f->kind == P_MAP)
      free(f->kv);
    s.n--;
  }
  cn__stack_free(&s);
  if (o.err == 0 && cn__room(b, 1) == NULL)
    o.err = CN_ENOMEM;
  if (o.err != 0) {
    b->len = start;
    return o.err;
  }
  b->data[b->len] = '\0';
  return 0;
}
