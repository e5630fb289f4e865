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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term_internal.h"

typedef struct out {
  cn_buf *b;
  int err;
} out;

static void put(out *o, const char *s, size_t n) {
  char *d;
  if (o->err != 0 || n == 0)
    return;
  if ((d = cn__room(o->b, n)) == NULL) {
    o->err = CN_ENOMEM;
    return;
  }
  memcpy(d, s, n);
  o->b->len += n;
}

static void putch(out *o, char c) { put(o, &c, 1); }

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

/* Appends printf-style text of at most 63 bytes. */
static void putf(out *o, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  put(o, tmp, (size_t)n);
}

/* ---- Numbers ------------------------------------------------------------ */

/* Divides the magnitude by 10^9 repeatedly, in a copy (a byte at a time:
 * the quotient of rem * 256 + byte fits a byte), and writes the digits
 * from the end of the same array: at most 2.41 n + 1 of them, and a sign,
 * so they stay clear of the n bytes being divided. */
static void put_int(out *o, const char *p) {
  unsigned char small[64], *m = small;
  char *d, *end;
  uint64_t x;
  size_t n, i, size;
  cn__int v;

  cn__int_view(p, &v);
  n = v.n;
  size = 4 * n + 2;
  if (size > sizeof small && (m = malloc(size)) == NULL) {
    o->err = CN_ENOMEM;
    return;
  }
  memcpy(m, v.mag, n);
  d = end = (char *)m + size;
  do {
    int k;
    for (x = 0, i = n; i-- > 0; x %= 1000000000u) {
      x = (x << 8) | m[i];
      m[i] = (unsigned char)(x / 1000000000u);
    }
    while (n > 0 && m[n - 1] == 0)
      n--;
    for (k = 0; k < 9 && (n > 0 || x != 0 || d == end); k++, x /= 10)
      *--d = (char)('0' + x % 10);
  } while (n > 0);
  if (v.neg)
    *--d = '-';
  put(o, d, (size_t)(end - d));
  if (m != small)
    free(m);
}

/* The shortest digits that read back as d (> 0), as D * 10^e with no
 * trailing zeros in D: what Ryu computes for erts' float_to_list(F,
 * [short]).  Correctly rounded %.*e gives the closest candidate of each
 * length; next to a power of two the rounding interval is lopsided, so
 * the neighbours of that candidate get a chance too. */
static void shortest(double d, uint64_t *Dout, int *eout) {
  uint64_t mant, D = 0;
  int prec, e = 0, k;

  memcpy(&mant, &d, sizeof mant);
  mant &= ((uint64_t)1 << 52) - 1; /* 0: d is a power of two */
  for (prec = 1; prec <= 17; prec++) {
    char tmp[64];
    const char *s;

    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
    for (D = 0, s = tmp; *s != 'e'; s++) /* any locale's decimal point */
      if (*s >= '0' && *s <= '9')
        D = D * 10 + (uint64_t)(*s - '0');
    e = atoi(s + 1) - (prec - 1);
    for (k = 0; k < (mant == 0 && prec < 17 ? 3 : 1); k++) {
      uint64_t c = k == 0 ? D : k == 1 ? D + 1 : D - 1;
      /* Whether c * 10^e reads back as d; the text has no decimal point,
       * so the C locale cannot interfere. */
      snprintf(tmp, sizeof tmp, "%llue%d", (unsigned long long)c, e);
      if ((k < 2 || D > 1) && strtod(tmp, NULL) == d) {
        D = c;
        goto found;
      }
    }
  }
found: /* 17 digits always read back */
  for (; D % 10 == 0; D /= 10)
    e++;
  *Dout = D;
  *eout = e;
}

/* Formats as erts' float_to_list(F, [short]) (io_lib's ~w): fixed or
 * scientific notation, whichever erts' modified Ryu picks. */
static void put_float(out *o, double d) {
  const char *sign = signbit(d) ? "-" : "";
  char digits[24];
  uint64_t D;
  int e, olen, sci, whole;

  if (d == 0) {
    putf(o, "%s0.0", sign);
    return;
  }
  shortest(fabs(d), &D, &e);
  olen = snprintf(digits, sizeof digits, "%llu", (unsigned long long)D);
  sci = e + olen - 1;
  whole = olen + e; /* digits before the point */
  if (e < (olen == 1 ? -4 : -(olen + 2)) ||
      e > (olen > 1 && sci < 10 ? 1 : 2) || (D >= (1ull << 53) && e == 0) ||
      (D > (1ull << 52) / 5 && e == 1) || (D > (1ull << 51) / 25 && e == 2))
    putf(o, "%s%c.%se%d", sign, digits[0], olen > 1 ? digits + 1 : "0", sci);
  else if (e >= 0) /* at most 2 zeros, as e <= 2 here */
    putf(o, "%s%s%.*s.0", sign, digits, e, "00");
  else if (whole > 0)
    putf(o, "%s%.*s.%s", sign, whole, digits, digits + whole);
  else /* at most 3 zeros after the point, as e >= -4 - olen here */
    putf(o, "%s0.%.*s%s", sign, -whole, "000", digits);
}

static void put_number(out *o, const char *p) {
  double d = 0;
  if (cn__is_float(p)) {
    cn__float_value(p, &d);
    put_float(o, d);
  } else {
    put_int(o, p);
  }
}

/* ---- Atoms -------------------------------------------------------------- */

static const char *const reserved[] = {
    "after",  "and",     "andalso", "band", "begin", "bnot", "bor",
    "bsl",    "bsr",     "bxor",    "case", "catch", "cond", "div",
    "end",    "fun",     "if",      "let",  "not",   "of",   "or",
    "orelse", "receive", "rem",     "try",  "when",  "xor"};

/* io_lib:write_atom/1: quoted unless it reads as a bare atom. */
static void put_atom(out *o, const cn__atom *a) {
  char tmp[2 * 255];
  size_t n, i = 0, k;
  const char *name = cn__atom_text(a, tmp, &n);
  int quote = n == 0;

  for (k = 0; i < a->n && !quote; k++)
    quote = !cn__atom_char(cn__atom_next(a, &i), k == 0);
  for (k = 0; k < sizeof reserved / sizeof *reserved && !quote; k++)
    quote = strlen(reserved[k]) == n && memcmp(reserved[k], name, n) == 0;
  if (!quote) {
    put(o, name, n);
    return;
  }
  putch(o, '\'');
  for (i = 0; i < a->n;) {
    /* The escapes io_lib writes; other controls in octal. */
    static const char from[] = "'\\\n\r\t\v\b\f\033\177", to[] = "'\\nrtvbfed";
    uint32_t c = cn__atom_next(a, &i);
    const char *hit;
    char esc[4] = {'\\'};
    if (c >= ' ' && c <= '~' && c != '\'' && c != '\\') {
      putch(o, (char)c);
    } else if (c != 0 && c < 0x80 && (hit = memchr(from, (int)c, 10)) != NULL) {
      esc[1] = to[hit - from];
      put(o, esc, 2);
    } else if (c >= 0xA0) {
      put(o, esc, cn__utf8_put(c, esc));
    } else {
      esc[1] = (char)('0' + (c >> 6));
      esc[2] = (char)('0' + ((c >> 3) & 7));
      esc[3] = (char)('0' + (c & 7));
      put(o, esc, 4);
    }
  }
  putch(o, '\'');
}

/* ---- Identifiers, funs, bits --------------------------------------------- */

/* The node "nonode@nohost" prints as 0, and such a pid has no #Pid. */
static void put_ident(out *o, const char *p) {
  char tmp[2 * 255];
  const char *node;
  size_t n;
  cn__ident d;
  uint32_t i;
  int local, cls = cn__class(p);

  cn__ident_view(p, &d);
  node = cn__atom_text(&d.node, tmp, &n);
  local = n == 13 && memcmp(node, "nonode@nohost", 13) == 0;
  puts_(o, cls == CLS_PID    ? (local ? "<" : "#Pid<")
           : cls == CLS_PORT ? "#Port<"
                             : "#Ref<");
  put(o, local ? "0" : node, local ? 1 : n);
  for (i = d.len; i-- > 0;) /* a reference's words, highest first */
    putf(o, ".%u", (unsigned)cn__get32(d.words + 4 * (size_t)i));
  if (cls == CLS_PID)
    putf(o, ".%llu.%u>", (unsigned long long)d.id, (unsigned)d.serial);
  else if (cls == CLS_PORT)
    putf(o, ".%llu>", (unsigned long long)d.id);
  else
    putch(o, '>');
}

static void put_fun(out *o, const char *p) {
  cn__fun f;

  cn__fun_view(p, &f);
  puts_(o, f.export ? "fun " : "#Fun<");
  put_atom(o, &f.module);
  if (f.export) {
    putch(o, ':');
    put_atom(o, &f.name);
    putf(o, "/%u", (unsigned)f.arity);
  } else { /* OldUniq is an INTEGER_EXT, which is signed */
    putf(o, ".%u.%d>", (unsigned)f.index, (int)(int32_t)f.old_uniq);
  }
}

static void put_bits(out *o, const char *p) {
  size_t n, i;
  unsigned last;
  const unsigned char *s = cn__bits_view(p, &n, &last);

  puts_(o, "<<");
  for (i = 0; i < n; i++) {
    if (i == n - 1 && last != 8)
      putf(o, "%s%u:%u", i != 0 ? "," : "", s[i] >> (8 - last), last);
    else
      putf(o, "%s%u", i != 0 ? "," : "", s[i]);
  }
  puts_(o, ">>");
}

static void put_atom_at(out *o, const char *p) {
  cn__atom a;
  cn__atom_view(p, &a);
  put_atom(o, &a);
}

static void put_nil(out *o, const char *p) {
  (void)p;
  puts_(o, "[]");
}

/* The writers of terms with nothing inside, by class (CLS_*). */
static void (*const put_scalar[CLS_BITS + 1])(out *, const char *) = {
    [CLS_NUMBER] = put_number, [CLS_ATOM] = put_atom_at, [CLS_REF] = put_ident,
    [CLS_FUN] = put_fun,       [CLS_PORT] = put_ident,   [CLS_PID] = put_ident,
    [CLS_NIL] = put_nil,       [CLS_BITS] = put_bits};
/* ---- The walk ------------------------------------------------------------ */

typedef struct pframe {
  int kind;        /* CLS_TUPLE, CLS_MAP, CLS_LIST; CLS_NIL: a list's tail */
  uint64_t i, n;   /* tuples, maps: items printed, and all (keys, values) */
  cn__list l;      /* lists */
  cn__kv *kv;      /* maps: the pairs in key order */
  const char *end; /* maps: first byte after the map */
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

    if (cls == CLS_TUPLE || cls == CLS_MAP || cls == CLS_LIST) {
      if ((f = CN__STACK_PUSH(&s, pframe)) == NULL) {
        o.err = CN_ENOMEM;
        goto done;
      }
      f->kind = cls;
      f->i = 0;
      f->kv = NULL;
      puts_(&o, cls == CLS_TUPLE ? "{" : cls == CLS_MAP ? "#{" : "[");
      if (cls == CLS_TUPLE) {
        f->n = cn__tuple_arity(x);
        p = x + ((unsigned char)x[0] == ETF_SMALL_TUPLE ? 2 : 5);
      } else if (cls == CLS_MAP) {
        f->n = 2 * (uint64_t)cn__get32(x + 1);
        f->end = f->n == 0 ? x + 5 /* no pairs to sort */
                           : cn__map_pairs(x + 5, f->n / 2, NULL, 0, &f->kv, 0);
        if (f->end == NULL)
          o.err = CN_ENOMEM;
      } else {
        p = x;
        cn__list_enter(&f->l, &p);
      }
    } else {
      put_scalar[cls](&o, x);
      /* A string byte or the nil of a string lies outside the stream. */
      if (x == p)
        p = cn__skip_fast(x);
    }
    if (o.err != 0)
      goto done;

    /* Next item, with the punctuation before it; or close containers. */
    for (;; s.n--) {
      if (s.n == 0)
        goto done;
      f = CN__STACK_TOP(&s, pframe);
      if (f->kind == CLS_LIST) {
        if (cn__list_next(&f->l, &p, &x)) {
          if (f->i++ != 0)
            putch(&o, ',');
          break;
        }
        if (cn__class(x) != CLS_NIL) {
          putch(&o, '|');
          f->kind = CLS_NIL; /* print the tail, then close */
          break;
        }
        if (x == p)
          p = cn__skip_fast(x);
      } else if (f->kind != CLS_NIL && f->i < f->n) {
        if (f->i != 0)
          puts_(&o, f->kind == CLS_MAP && f->i % 2 == 1 ? " => " : ",");
        if (f->kind == CLS_MAP) /* keys and values in key order */
          p = f->i % 2 == 0 ? f->kv[f->i / 2].k : f->kv[f->i / 2].v;
        f->i++;
        x = p;
        break;
      } else if (f->kind == CLS_MAP) {
        p = f->end;
        free(f->kv);
      }
      putch(&o, f->kind == CLS_TUPLE || f->kind == CLS_MAP ? '}' : ']');
    }
  }

done:
  for (; s.n > 0; s.n--)
    free(CN__STACK_TOP(&s, pframe)->kv);
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
