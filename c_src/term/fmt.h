/* The format lexer shared by cn_build and cn_match (fmt.c).  The common
 * tokens are read inline: a call per token made matching a $gen_call
 * half as fast again as the hand-inlined lexers this replaced.
 */
#ifndef CN_TERM_FMT_H
#define CN_TERM_FMT_H

#include "term_internal.h"

/* The lexer is inlined even where the compiler would rather call it. */
#if defined(__GNUC__)
#define CN__FMT_INLINE static inline __attribute__((always_inline))
#else
#define CN__FMT_INLINE static inline
#endif

enum {
  CN_TK_BAD,    /* not a term */
  CN_TK_ATOM,   /* a bare atom; s[0 .. n) is its name */
  CN_TK_WILD,   /* _ */
  CN_TK_HOLE,   /* ~c; c is the letter */
  CN_TK_OPEN,   /* a container opens; c is '{', '[' or '#' (for #{) */
  CN_TK_EMPTY,  /* {} [] or #{}; c as for CN_TK_OPEN */
  CN_TK_INT,    /* an integer literal; s[0 .. n) is its text */
  CN_TK_FLOAT,  /* a float literal; s[0 .. n) is its text */
  CN_TK_QATOM,  /* a quoted atom; s[0 .. n) is its unescaped name */
  CN_TK_STRING, /* "text"; s[0 .. n) is the unescaped text */
  CN_TK_PUNCT   /* compiled patterns only: c is what cn__fmt_punct read */
};

typedef struct cn__tok {
  int kind;      /* CN_TK_* */
  char c;        /* see CN_TK_HOLE, CN_TK_OPEN */
  const char *s; /* the token's text (for CN_TK_BAD: where it failed) */
  size_t n;      /* bytes at s */
} cn__tok;

static inline const char *cn__fmt_ws(const char *f) {
  while (*f == ' ' || *f == '\t' || *f == '\n' || *f == '\r')
    f++;
  return f;
}

static inline int cn__fmt_is_name(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '@';
}

/* Reads a number or quoted literal at f (after white space); see
 * cn__fmt_term. */
const char *cn__fmt_literal(const char *f, cn__tok *t, char *tmp, size_t cap);

/* Reads the term that starts at f (after white space) into *t and returns
 * the position after it; after CN_TK_OPEN that is the first element.  A
 * quoted literal with escapes is unescaped into tmp (cap bytes); one that
 * does not fit is CN_TK_BAD. */
CN__FMT_INLINE const char *cn__fmt_term(const char *f, cn__tok *t, char *tmp,
                                        size_t cap) {
  const char *s;
  char c;

  f = cn__fmt_ws(f);
  c = *f;
  t->s = f;
  t->kind = CN_TK_BAD;
  if (c >= 'a' && c <= 'z') {
    for (s = f; cn__fmt_is_name(*s); s++)
      ;
    t->kind = CN_TK_ATOM;
    t->n = (size_t)(s - f);
    return s;
  }
  if (c == '~' && f[1] != '\0') {
    t->kind = CN_TK_HOLE;
    t->c = f[1];
    return f + 2;
  }
  if (c == '_' && !cn__fmt_is_name(f[1])) {
    t->kind = CN_TK_WILD;
    return f + 1;
  }
  if (c == '{' || c == '[' || (c == '#' && f[1] == '{')) {
    t->c = c;
    t->kind = CN_TK_OPEN;
    s = cn__fmt_ws(f + (c == '#' ? 2 : 1));
    if (*s != (c == '[' ? ']' : '}'))
      return s;
    t->kind = CN_TK_EMPTY; /* {} [] #{} */
    return s + 1;
  }
  return cn__fmt_literal(f, t, tmp, cap);
}

/* Reads the punctuation after a term at *fp (after white space): returns
 * ',', '}', ']', '|' or '=' (for =>) and advances *fp past it; 0 at the
 * end of the format; -1 for anything else. */
CN__FMT_INLINE int cn__fmt_punct(const char **fp) {
  const char *f = cn__fmt_ws(*fp);
  char c = *f;
  if (c == '\0')
    return 0;
  if (c == '=' && *++f != '>')
    return -1;
  *fp = f + 1;
  return c == ',' || c == '}' || c == ']' || c == '|' || c == '=' ? c : -1;
}

/* The value of a digit in bases up to 36, or 99 for other characters. */
static inline int cn__fmt_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 10;
  return c >= 'A' && c <= 'Z' ? c - 'A' + 10 : 99;
}

/* Encodes the integer whose digits in base 2..36 are s[0 .. end), where
 * single _ between digits are skipped (as OTP 23+ reads 1_000), with the
 * sign neg.  Returns 0, CN_EINVAL (too large for ei) or CN_ENOMEM. */
int cn__fmt_int(cn_buf *b, int neg, unsigned base, const char *s,
                const char *end);

/* Encodes a CN_TK_INT or CN_TK_FLOAT.  Returns 0, CN_EBADFMT (a float out
 * of range, such as 1.0e999) or CN_ENOMEM. */
int cn__fmt_number(cn_buf *b, const cn__tok *t);

/* ---- Compiled formats (fcache.c) ----------------------------------------
 *
 * cn_build and cn_match compile a format into a program of ops, once per
 * thread, and run the program on later calls with the same format.  Only
 * well-formed formats are compiled: a program never fails where the text
 * would not, and in the same order; the rest are interpreted each time.
 */

#define CN__PROG_MAX_TEXT 255 /* longer formats are interpreted */
#define CN__PROG_MAX_OPS 260  /* more than a format of that length has */

enum { CN__FC_BUILD, CN__FC_MATCH };

/* A compiled format: ops (build.c has its own op set, in cn__tok's
 * fields; match.c's ops are the format's tokens), then the format's text
 * and the literals the ops point into. */
typedef struct cn__prog {
  char *text;    /* the format, to tell a reused address */
  size_t nops;   /* 0: not compiled (interpret the text) */
  int tuples;    /* match: the only containers are tuples (2: one tuple of
                  * scalars) */
  cn__tok ops[]; /* nops of them */
} cn__prog;

/* A thread's cache (fcache.c): 4-way set associative, SETS x WAYS
 * entries, least recently used out. */
#define CN__FC_SETS 16
#define CN__FC_WAYS 4

typedef struct cn__fslot {
  const char *key; /* the format's address */
  int which;       /* CN__FC_BUILD or CN__FC_MATCH */
  int fixed;       /* key's text cannot change: no compare */
  cn__prog *prog;  /* owned; NULL when the slot is empty */
} cn__fslot;

typedef struct cn__fcache {
  cn__fslot set[CN__FC_SETS][CN__FC_WAYS]; /* way 0: most recently used */
  int off; /* cn__fcache_enable(0): every lookup misses */
} cn__fcache;

extern _Thread_local cn__fcache *cn__fcache_tls; /* NULL until first use */

/* The set where fmt's entry would be. */
static inline cn__fslot *cn__fcache_set(cn__fcache *c, int which,
                                        const char *fmt) {
  uintptr_t h = (uintptr_t)fmt;
  h ^= h >> 4 ^ h >> 9; /* literals sit a few bytes apart */
  return c->set[(h ^ (uintptr_t)which) % CN__FC_SETS];
}

/* The lookup past way 0: the other ways, or a compile (and the thread's
 * first lookup, which makes its cache). */
const cn__prog *cn__fcache_lookup(cn__fcache *c, int which, const char *fmt);

/* The program for the format fmt (build or match), from the calling
 * thread's cache, compiled on a miss; NULL when fmt is interpreted (not
 * compilable, too long, out of memory, or the cache is off).  The common
 * case, way 0 of its set holding fmt, is inline. */
static inline const cn__prog *cn__fcache_get(int which, const char *fmt) {
  cn__fcache *c = cn__fcache_tls;
  if (c != NULL) {
    const cn__fslot *s = cn__fcache_set(c, which, fmt);
    if (s->key == fmt && s->which == which &&
        (s->fixed || strcmp(s->prog->text, fmt) == 0))
      return s->prog->nops != 0 ? s->prog : NULL;
  }
  return cn__fcache_lookup(c, which, fmt);
}

/* 1 when the n bytes at p lie in read-only memory that stays mapped for
 * the whole run (the program's and libcnode's own read-only segments), so
 * that a format there can be kept without comparing its text again. */
int cn__fcache_fixed(const char *p, size_t n);

/* Turns the calling thread's cache off (0) or on (1), for tests that
 * compare the interpreter with the programs. */
void cn__fcache_enable(int on);

/* The compilers: a program (nops 0 when fmt is not compilable), or NULL
 * when memory runs out.  fmt is at most CN__PROG_MAX_TEXT bytes. */
cn__prog *cn__build_compile(const char *fmt);
cn__prog *cn__match_compile(const char *fmt);

/* A program being written. */
typedef struct cn__pgen {
  const char *fmt;
  size_t len; /* of fmt */
  cn__tok ops[CN__PROG_MAX_OPS];
  size_t off[CN__PROG_MAX_OPS]; /* ops[i].s, as an offset into pool */
  size_t nops;
  cn_buf pool; /* the text with its NUL, then the literals */
  char inl[512];
  int bad;  /* out of memory */
  int full; /* too many ops: not compiled */
} cn__pgen;

/* Starts the program for fmt, empty. */
void cn__pgen_init(cn__pgen *g, const char *fmt);

/* Adds an op; s is in the format, or (unescaped text) is copied.  NULL
 * when the program is full. */
cn__tok *cn__pgen_op(cn__pgen *g, int kind, char c, const char *s, size_t n);

/* The program (compiled when ok), or NULL when memory ran out. */
cn__prog *cn__pgen_done(cn__pgen *g, int ok);

#endif /* CN_TERM_FMT_H */
