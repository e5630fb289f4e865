/* Why not ei: ei_print_term does not write what ~w writes (floats, atom
 * quoting, strings, bitstrings, maps, pids); this prints as erts does.
 *
 * cn_term_print: a term in Erlang syntax, as io:format("~w") writes it on
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
  const unsigned char *s = a->s;
  while (i < a->n && n < 255) {
    uint32_t c = s[i++];
    if (!a->latin1 && c >= 0x80) {
      int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
      c &= extra == 3 ? 0x07 : extra == 2 ? 0x0F : 0x1F;
      while (extra-- > 0 && i < a->n)
        c = (c << 6) | (s[i++] & 0x3F);
    }
    cp[n++] = c;
  }
  return n;
}

static int name_char(uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7) ||
         (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ||
         (c >= '0' && c <= '9') || c == '_' || c == '@';
}

static void put_cp(out *o, uint32_t c) {
  char u[4];
  if (c < 0x80) {
    putch(o, (char)c);
  } else if (c < 0x800) {
    u[0] = (char)(0xC0 | (c >> 6));
    u[1] = (char)(0x80 | (c & 0x3F));
    put(o, u, 2);
  } else if (c < 0x10000) {
    u[0] = (char)(0xE0 | (c >> 12));
    u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    u[2] = (char)(0x80 | (c & 0x3F));
    put(o, u, 3);
  } else {
    u[0] = (char)(0xF0 | (c >> 18));
    u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    u[3] = (char)(0x80 | (c & 0x3F));
    put(o, u, 4);
  }
}

/* io_lib:write_atom/1: quoted unless it reads as a bare atom. */
static void put_atom(out *o, const cn__atom *a) {
  uint32_t cp[255]; /* atoms hold at most 255 characters */
  size_t n = atom_cps(a, cp), i;
  int quote = 0;

  if (n == 0 || !((cp[0] >= 'a' && cp[0] <= 'z') ||
                  (cp[0] >= 0xDF && cp[0] <= 0xFF && cp[0] != 0xF7)))
    quote = 1;
  for (i = 1; i < n && !quote; i++)
    if (!name_char(cp[i]))
      quote = 1;
  if (!quote) {
    for (i = 0; i < sizeof reserved / sizeof *reserved; i++)
      if (cn__atom_eq(a, reserved[i], strlen(reserved[i]))) {
        quote = 1;
        break;
      }
  }
  if (!quote) {
    for (i = 0; i < n; i++)
      put_cp(o, cp[i]);
    return;
  }
  putch(o, '\'');
  for (i = 0; i < n; i++) {
    uint32_t c = cp[i];
    char esc[5];
    switch (c) {
    case '\'':
      puts_(o, "\\'");
      break;
    case '\\':
      puts_(o, "\\\\");
      break;
    case '\n':
      puts_(o, "\\n");
      break;
    case '\r':
      puts_(o, "\\r");
      break;
    case '\t':
      puts_(o, "\\t");
      break;
    case '\v':
      puts_(o, "\\v");
      break;
    case '\b':
      puts_(o, "\\b");
      break;
    case '\f':
      puts_(o, "\\f");
      break;
    case 27:
      puts_(o, "\\e");
      break;
    case 127:
      puts_(o, "\\d");
      break;
    default:
      if ((c >= ' ' && c <= '~') || c >= 0xA0) {
        put_cp(o, c);
      } else {
        esc[0] = '\\';
        esc[1] = (char)('0' + (c >> 6));
        esc[2] = (char)('0' + ((c >> 3) & 7));
        esc[3] = (char)('0' + (c & 7));
        put(o, esc, 4);
      }
      break;
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
static int put_node(out *o, const cn__atom *node) {
  size_t n = cn__atom_utf8_len(node);
  /* Up to 255 characters of up to 4 bytes in UTF-8 (a Latin-1 name takes
   * at most 2 per character). */
  char tmp[4 * 255];
  if (cn__atom_eq(node, "nonode@nohost", 13)) {
    putch(o, '0');
    return 1;
  }
  if (n > sizeof tmp)
    n = 0; /* not a validated atom */
  else
    cn__atom_utf8(node, tmp);
  put(o, tmp, n);
  return 0;
}

static void put_ident(out *o, const char *p) {
  unsigned char tag = (unsigned char)p[0];
  cn__atom node;
  const char *q;

  if (tag == ETF_PID || tag == ETF_NEW_PID) {
    q = cn__atom_view(p + 1, &node);
    if (!cn__atom_eq(&node, "nonode@nohost", 13))
      puts_(o, "#Pid");
    putch(o, '<');
    put_node(o, &node);
    putch(o, '.');
    put_u64(o, cn__get32(q));
    putch(o, '.');
    put_u64(o, cn__get32(q + 4));
    putch(o, '>');
  } else if (tag == ETF_PORT || tag == ETF_NEW_PORT || tag == ETF_V4_PORT) {
    q = cn__atom_view(p + 1, &node);
    puts_(o, "#Port<");
    put_node(o, &node);
    putch(o, '.');
    put_u64(o, tag == ETF_V4_PORT ? cn__get64(q) : cn__get32(q));
    putch(o, '>');
  } else {
    uint32_t len, i;
    const char *words;
    if (tag == ETF_REFERENCE) {
      len = 1;
      words = cn__atom_view(p + 1, &node);
    } else {
      len = cn__get16(p + 1);
      words = cn__atom_view(p + 3, &node);
      words += tag == ETF_NEW_REFERENCE ? 1 : 4;
    }
    puts_(o, "#Ref<");
    put_node(o, &node);
    for (i = len; i-- > 0;) {
      putch(o, '.');
      put_u64(o, cn__get32(words + 4 * (size_t)i));
    }
    putch(o, '>');
  }
}

static void put_fun(out *o, const char *p) {
  if ((unsigned char)p[0] == ETF_EXPORT) {
    const char *q = p + 1;
    puts_(o, "fun ");
    put_atom_at(o, q);
    q += cn__atom_size(q);
    putch(o, ':');
    put_atom_at(o, q);
    q += cn__atom_size(q);
    putch(o, '/');
    put_u64(o, (unsigned char)q[1]);
  } else {
    const char *q = p + 1 + 29;
    uint32_t index = cn__get32(p + 1 + 21);
    int64_t uniq;
    puts_(o, "#Fun<");
    put_atom_at(o, q);
    q += cn__atom_size(q);
    q += (unsigned char)q[0] == ETF_SMALL_INTEGER ? 2 : 5; /* OldIndex */
    uniq = (unsigned char)q[0] == ETF_SMALL_INTEGER
               ? (unsigned char)q[1]
               : (int64_t)(int32_t)cn__get32(q + 1);
    putch(o, '.');
    put_u64(o, index);
    putch(o, '.');
    if (uniq < 0) {
      putch(o, '-');
      put_u64(o, (uint64_t)(-uniq));
    } else {
      put_u64(o, (uint64_t)uniq);
    }
    putch(o, '>');
  }
}

static void put_bits(out *o, const char *p) {
  size_t n = cn__get32(p + 1), i;
  unsigned last = 8;
  const unsigned char *s = (const unsigned char *)p + 5;

  if ((unsigned char)p[0] == ETF_BIT_BINARY) {
    last = (unsigned char)p[5];
    s++;
  }
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
    put_ident(o, p);
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

int cn_term_print(cn_term t, cn_buf *b) {
  cn__walk w;
  const char *x;
  size_t start;
  int ev;
  out o;

  if (b == NULL)
    return CN_EINVAL;
  o.b = b;
  o.err = 0;
  start = b->len;
  cn__walk_init(&w, t.ptr, CN__WALK_SORTED, 0, 0);
  while (t.len != 0 && o.err == 0 &&
         (ev = cn__walk_next(&w, &x)) != CN__W_DONE) {
    cn__frame *f = cn__walk_top(&w);
    if (ev == CN__W_END) {
      putch(&o, w.kind == CN__F_LIST ? ']' : '}');
      continue;
    }
    if (ev == CN__W_TAIL) {
      if (cn__class(x) == CLS_NIL)
        continue; /* a proper list */
      putch(&o, '|');
    } else if (f->i > 1) {
      puts_(&o, f->kind == CN__F_MAP && f->i % 2 == 0 ? " => " : ",");
    }
    switch (cn__class(x)) {
    case CLS_TUPLE:
      puts_(&o, cn__tuple_arity(x) == 0 ? "{}" : "{");
      break;
    case CLS_MAP:
      puts_(&o, cn__get32(x + 1) == 0 ? "#{}" : "#{");
      break;
    case CLS_LIST:
      putch(&o, '[');
      break;
    default:
      put_scalar(&o, cn__class(x), x);
      break;
    }
  }
  if (o.err == 0)
    o.err = w.err;
  cn__walk_free(&w);
  if (o.err == 0 && cn__room(b, 1) == NULL)
    o.err = CN_ENOMEM;
  if (o.err != 0) {
    b->len = start;
    return o.err;
  }
  b->data[b->len] = '\0';
  return 0;
}
