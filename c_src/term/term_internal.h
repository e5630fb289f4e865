/* Not ei: ei's API is per call and trusting; these are the shared views. */
/* Private helpers shared by the files of the term layer.
 *
 * Everything here works on encoded terms (ETF without the version byte).
 * Functions that take a bare `const char *p` trust that p starts a term the
 * validator accepted (or that cn_build / cn_put_* produced), so they do no
 * bounds checks of their own.
 */
#ifndef CN_TERM_INTERNAL_H
#define CN_TERM_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include <cnode/term.h>

/* External term format tags (erl_ext_dist). */
enum {
  ETF_VERSION = 131,
  ETF_NEW_FLOAT = 70,
  ETF_BIT_BINARY = 77,
  ETF_COMPRESSED = 80,
  ETF_ATOM_CACHE_REF = 82,
  ETF_NEW_PID = 88,
  ETF_NEW_PORT = 89,
  ETF_NEWER_REFERENCE = 90,
  ETF_SMALL_INTEGER = 97,
  ETF_INTEGER = 98,
  ETF_FLOAT = 99,
  ETF_ATOM = 100,
  ETF_REFERENCE = 101,
  ETF_PORT = 102,
  ETF_PID = 103,
  ETF_SMALL_TUPLE = 104,
  ETF_LARGE_TUPLE = 105,
  ETF_NIL = 106,
  ETF_STRING = 107,
  ETF_LIST = 108,
  ETF_BINARY = 109,
  ETF_SMALL_BIG = 110,
  ETF_LARGE_BIG = 111,
  ETF_NEW_FUN = 112,
  ETF_EXPORT = 113,
  ETF_NEW_REFERENCE = 114,
  ETF_SMALL_ATOM = 115,
  ETF_MAP = 116,
  ETF_ATOM_UTF8 = 118,
  ETF_SMALL_ATOM_UTF8 = 119,
  ETF_V4_PORT = 120
};

/* Byte size of a FLOAT_EXT payload ("%.20e" text, NUL padded). */
#define ETF_FLOAT_TEXT 31

/* Erlang's term order, one class per type.  A non-empty list sits after
 * nil, and binaries and bitstrings share one class. */
enum {
  CLS_NUMBER = 1,
  CLS_ATOM,
  CLS_REF,
  CLS_FUN,
  CLS_PORT,
  CLS_PID,
  CLS_TUPLE,
  CLS_MAP,
  CLS_NIL,
  CLS_LIST,
  CLS_BITS
};

static inline uint16_t cn__get16(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint16_t)((u[0] << 8) | u[1]);
}

static inline uint32_t cn__get32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
         ((uint32_t)u[2] << 8) | (uint32_t)u[3];
}

static inline uint64_t cn__get64(const char *p) {
  return ((uint64_t)cn__get32(p) << 32) | cn__get32(p + 4);
}

static inline void cn__put16(char *p, uint32_t v) {
  p[0] = (char)(v >> 8);
  p[1] = (char)v;
}

static inline void cn__put32(char *p, uint32_t v) {
  p[0] = (char)(v >> 24);
  p[1] = (char)(v >> 16);
  p[2] = (char)(v >> 8);
  p[3] = (char)v;
}

static inline int cn__is_atom_tag(unsigned char tag) {
  return tag == ETF_SMALL_ATOM_UTF8 || tag == ETF_ATOM_UTF8 ||
         tag == ETF_ATOM || tag == ETF_SMALL_ATOM;
}

/* A view of an atom's name in whatever encoding the term used. */
typedef struct cn__atom {
  const unsigned char *s; /* the name's bytes */
  size_t n;               /* byte count */
  int latin1;             /* 1: one byte per character (ATOM_EXT etc.) */
} cn__atom;

/* Views the atom at p (any of the four atom tags) and returns the first
 * byte after it. */
static inline const char *cn__atom_view(const char *p, cn__atom *a) {
  unsigned char tag = (unsigned char)p[0];
  size_t n, hdr;
  if (tag == ETF_SMALL_ATOM_UTF8 || tag == ETF_SMALL_ATOM) {
    n = (unsigned char)p[1];
    hdr = 2;
  } else {
    n = cn__get16(p + 1);
    hdr = 3;
  }
  a->s = (const unsigned char *)p + hdr;
  a->n = n;
  a->latin1 = tag == ETF_ATOM || tag == ETF_SMALL_ATOM;
  return p + hdr + n;
}

/* True when the atom's name holds a NUL byte, and so is no C string.
 * Eight bytes at a time (w - 0x01.. & ~w sets the high bit of a zero
 * byte), then byte by byte: names are short, and a memchr call cost
 * more. */
static inline bool cn__atom_has_nul(const cn__atom *a) {
  const uint64_t ones = 0x0101010101010101u;
  size_t k = 0;
  uint64_t w;
  for (; k + 8 <= a->n; k += 8) {
    memcpy(&w, a->s + k, 8);
    if (((w - ones) & ~w & (ones << 7)) != 0)
      return true;
  }
  for (; k < a->n; k++)
    if (a->s[k] == 0)
      return true;
  return false;
}

/* Atom comparison by code point (UTF-8 byte order equals code point
 * order, so two UTF-8 names compare with memcmp). */
int cn__atom_cmp(const cn__atom *a, const cn__atom *b);

/* The code point at byte *i of the atom's name; *i advances past it.  The
 * name was validated, so UTF-8 decoding needs no checks. */
uint32_t cn__atom_next(const cn__atom *a, size_t *i);

/* True when the atom's name is the UTF-8 string s[0 .. n). */
bool cn__atom_eq(const cn__atom *a, const char *s, size_t n);

/* Writes the code point c (at most U+10FFFF) to out as UTF-8; returns the
 * byte count, 1 to 4. */
size_t cn__utf8_put(uint32_t c, char *out);

/* The atom's name in UTF-8, *n bytes, no NUL: its own bytes, or a Latin-1
 * name converted into tmp, which holds 2 * 255 bytes (a validated Latin-1
 * name has at most 255). */
const char *cn__latin1_text(const cn__atom *a, char *tmp, size_t *n);
static inline const char *cn__atom_text(const cn__atom *a, char *tmp,
                                        size_t *n) {
  if (a->latin1)
    return cn__latin1_text(a, tmp, n);
  *n = a->n;
  return (const char *)a->s;
}

/* io_lib's rule for the characters of a bare atom: Latin-1 letters,
 * digits, _ and @, the first (first != 0) a lower-case letter. */
static inline int cn__atom_char(uint32_t c, int first) {
  int lower = (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
  if (first)
    return lower;
  return lower || (c >= 'A' && c <= 'Z') ||
         (c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= '0' && c <= '9') ||
         c == '_' || c == '@';
}

/* True when the bytes are plain ASCII (a Latin-1 name that is also
 * UTF-8).  Most names are: one pass of ORs tells, without branches. */
static inline int cn__ascii_only(const unsigned char *s, size_t n) {
  unsigned any = 0;
  while (n-- > 0)
    any |= s[n];
  return any < 0x80;
}

/* The same, eight bytes at a time, for names that are often longer (a
 * node's, in a pid, is about twenty bytes); for {get, 1}'s, the loop's
 * extra test costs more than it saves. */
static inline int cn__ascii_only_long(const unsigned char *s, size_t n) {
  uint64_t any = 0, w;
  for (; n >= 8; n -= 8, s += 8) {
    memcpy(&w, s, 8);
    any |= w;
  }
  while (n-- > 0)
    any |= s[n];
  return (any & 0x8080808080808080ull) == 0;
}

/* The commonest messages, such as {get, 1} and {ok, 1}, and the control
 * messages of distribution, such as {19, Pid, echo, Ref}, checked without
 * cn_term_validate's walk: a small integer, an ASCII atom, [], a pid or a
 * reference whose node is an ASCII SMALL_ATOM_UTF8 (as erts sends them),
 * or a tuple of them at p.  Returns where the term ends, or NULL when it is not
 * such a term inside lim; cn_term_validate then decides (it accepts every
 * term this accepts). */
const char *cn__term_flat(const char *p, const char *lim);

/* Counts the characters of a UTF-8 string, or returns -1 when it is not
 * valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF
 * are rejected, as erts does). */
long cn__utf8_count(const unsigned char *s, size_t n);

/* Returns the first byte after the trusted term at p.  Iterative. */
const char *cn__skip(const char *p);

/* cn__skip with the common scalars inline. */
static inline const char *cn__skip_fast(const char *p) {
  switch ((unsigned char)p[0]) {
  case ETF_SMALL_INTEGER:
    return p + 2;
  case ETF_INTEGER:
    return p + 5;
  case ETF_NEW_FLOAT:
    return p + 9;
  case ETF_NIL:
    return p + 1;
  case ETF_SMALL_ATOM_UTF8:
    return p + 2 + (unsigned char)p[1];
  case ETF_BINARY:
    return p + 5 + (size_t)cn__get32(p + 1);
  default:
    return cn__skip(p);
  }
}

/* A pid, port or reference in any encoding, its node not interned. */
typedef struct cn__ident {
  cn__atom node;
  uint32_t creation;
  uint64_t id;       /* pid number, port number */
  uint32_t serial;   /* pid serial */
  uint32_t len;      /* reference words */
  const char *words; /* reference words, big-endian, lowest first */
} cn__ident;

/* A fun: a NEW_FUN_EXT (local) or an EXPORT_EXT. */
typedef struct cn__fun {
  int export;        /* 1: EXPORT_EXT, module:name/arity */
  cn__atom module;   /* the module */
  cn__atom name;     /* export: the function */
  uint32_t arity;    /* export: the arity */
  uint32_t index;    /* local: Index */
  uint32_t old_uniq; /* local: OldUniq */
  uint32_t numfree;  /* local: free variables */
  const char *free;  /* local: the first free variable */
} cn__fun;

void cn__fun_view(const char *p, cn__fun *f);

/* A binary or bitstring: returns its bytes; *n is their count and *last
 * the bits used in the last one. */
static inline const unsigned char *cn__bits_view(const char *p, size_t *n,
                                                 unsigned *last) {
  *n = cn__get32(p + 1);
  *last = (unsigned char)p[0] == ETF_BINARY ? 8 : (unsigned char)p[5];
  return (const unsigned char *)p + ((unsigned char)p[0] == ETF_BINARY ? 5 : 6);
}

/* True when the term at p is a float: NEW_FLOAT_EXT or FLOAT_EXT. */
static inline int cn__is_float(const char *p) {
  return (unsigned char)p[0] == ETF_NEW_FLOAT ||
         (unsigned char)p[0] == ETF_FLOAT;
}

/* Parses the 31 bytes of a FLOAT_EXT.  Returns 0 or -1. */
int cn__parse_float_text(const char *p, double *out);

/* Reads a float term (NEW_FLOAT_EXT or FLOAT_EXT).  Returns 0, or -1 when
 * a FLOAT_EXT's text is not a finite number. */
int cn__float_value(const char *p, double *out);

/* strtod of the n bytes at s, which must all belong to the number, read
 * with '.' as the decimal point whatever the C locale's (a program may
 * have changed it).  Returns 0, or -1 when the text is not one number (or
 * is longer than 511 bytes).  errno is strtod's.  This and
 * cn__parse_float_text live in fmt.c, out of the float readers' file:
 * inlined, they cost cn__float_value's fast path a stack frame. */
int cn__strtod(const char *s, size_t n, double *out);

/* An integer of any encoding as sign and little-endian magnitude with no
 * high zero bytes (n == 0 is zero). */
typedef struct cn__int {
  const unsigned char *mag; /* little-endian magnitude */
  size_t n;                 /* bytes in mag; 0 for zero */
  int neg;                  /* 1 when negative (never for zero) */
  unsigned char buf[8];     /* storage for small encodings */
} cn__int;

/* Fills *v from the integer term at p and returns the first byte after
 * it.  v->mag may point into v->buf, so do not copy *v. */
const char *cn__int_view(const char *p, cn__int *v);

/* Erlang term order of the trusted terms a and b, exact variant.  level
 * counts how deep map keys are being sorted (0 at the top).  With keys
 * set, the order is erts' map key order, in which every integer sorts
 * before every float, at any depth: #{2 => b, 1.5 => a}. */
int cn__compare(const char *a, const char *b, int level, int keys);

/* The arity of the tuple at p (SMALL_TUPLE_EXT or LARGE_TUPLE_EXT). */
static inline uint64_t cn__tuple_arity(const char *p) {
  return (unsigned char)p[0] == ETF_SMALL_TUPLE ? (unsigned char)p[1]
                                                : cn__get32(p + 1);
}

/* How the term of each tag is laid out, for cn__skip, cn__class and the
 * validator's rarer tags.  A count of `lenw` bytes (0, 1, 2 or 4) sits at
 * offset 1, and `tail + mul * count` says what follows the `hdr` bytes: for
 * SH_BYTES, that many bytes; for SH_IDENT, the node's atom and then that many
 * bytes (reference words); for SH_SEQ, that many terms (a list's tail, an
 * export's three).  SH_NONE (all zero) marks bytes that are not tags.
 * (The validator keeps its own cases for the commonest tags: driven by
 * this table alone it ran 10% more instructions.) */
enum { SH_NONE, SH_BYTES, SH_IDENT, SH_SEQ };

typedef struct cn__shape {
  unsigned char cls;  /* CLS_* */
  unsigned char kind; /* SH_* */
  unsigned char hdr, lenw, tail, mul;
  unsigned char pad[2]; /* 8 bytes: cn__class is then one scaled load */
} cn__shape;

extern const cn__shape cn__shapes[256];

/* The count of the term at p, whose shape is s. */
static inline uint64_t cn__shape_count(const char *p, const cn__shape *s) {
  switch (s->lenw) {
  case 0:
    return 0;
  case 1:
    return (unsigned char)p[1];
  case 2:
    return cn__get16(p + 1);
  default:
    return cn__get32(p + 1);
  }
}

/* Views the pid, port or reference at p. */
static inline void cn__ident_view(const char *p, cn__ident *d) {
  unsigned char tag = (unsigned char)p[0];
  const char *q = cn__atom_view(p + cn__shapes[tag].hdr, &d->node);

  d->id = 0;
  d->serial = 0;
  d->len = 0;
  d->words = q;
  switch (tag) {
  case ETF_PID:
  case ETF_NEW_PID:
    d->id = cn__get32(q);
    d->serial = cn__get32(q + 4);
    d->creation = tag == ETF_PID ? (unsigned char)q[8] : cn__get32(q + 8);
    break;
  case ETF_PORT:
  case ETF_NEW_PORT:
    d->id = cn__get32(q);
    d->creation = tag == ETF_PORT ? (unsigned char)q[4] : cn__get32(q + 4);
    break;
  case ETF_V4_PORT:
    d->id = cn__get64(q);
    d->creation = cn__get32(q + 8);
    break;
  case ETF_REFERENCE:
    d->len = 1;
    d->creation = (unsigned char)q[4];
    break;
  default: /* NEW_REFERENCE_EXT (8-bit creation), NEWER_REFERENCE_EXT */
    d->len = cn__get16(p + 1);
    d->creation = tag == ETF_NEW_REFERENCE ? (unsigned char)q[0] : cn__get32(q);
    d->words = q + (tag == ETF_NEW_REFERENCE ? 1 : 4);
    break;
  }
}

/* The class (CLS_*) of the term at p. */
static inline int cn__class(const char *p) {
  unsigned char tag = (unsigned char)p[0];
  if (tag == ETF_STRING && p[1] == 0 && p[2] == 0)
    return CLS_NIL; /* "" is [] */
  return cn__shapes[tag].cls;
}

/* One map pair. */
typedef struct cn__kv {
  const char *k, *v;
} cn__kv;

/* Sorts the n pairs of the map whose first key is at p in Erlang's key
 * order (level: as for cn__compare) into *out: inl when it holds 2 * n
 * pairs, else an array that it allocates (the caller frees it when it is
 * not inl).  The second n pairs are scratch.  Returns the first byte
 * after the map, or NULL (and no array) when memory runs out. */
const char *cn__map_pairs(const char *p, uint64_t n, cn__kv *inl, size_t cap,
                          cn__kv **out, int level);

/* Each of these is a SMALL_INTEGER_EXT term for one byte value, so that a
 * STRING_EXT element can be handed out as a term of its own. */
extern const char cn__small_ints[256][2];

/* A NIL_EXT term, for the implicit tail of a STRING_EXT. */
extern const char cn__nil[1];

/* ---- Walking terms (walk.c) ---------------------------------------------
 *
 * Terms nest as deep as the validator allows, so nothing in this layer
 * walks them on the C stack.  Two pieces serve every walk (validate,
 * compare, hash, print, cn_iter; cn__skip needs only a counter):
 *  - cn__stack, a stack of fixed-size frames that starts in an array the
 *    caller owns (on the C stack) and spills to the heap;
 *  - cn__list, the one list cursor: a list may be a STRING_EXT, a LIST_EXT,
 *    or several of them chained through their tails ([1|"ab"]).
 * Each walk keeps its own frame type: one generic walk was tried, and the
 * two walks of compare and the events of hash cost 13-45% more time.
 */

/* Frames of `size` bytes at base: the caller's array inl, or the heap. */
typedef struct cn__stack {
  char *base;  /* the frames */
  char *inl;   /* the caller's array, used until it is full */
  size_t n;    /* frames in use */
  size_t cap;  /* frames that fit at base */
  size_t size; /* bytes per frame */
} cn__stack;

/* Starts the stack s, empty, in the caller's array arr. */
#define cn__stack_init(s, arr)                                                 \
  (*(s) = (cn__stack){.base = (char *)(arr),                                   \
                      .inl = (char *)(arr),                                    \
                      .n = 0,                                                  \
                      .cap = sizeof(arr) / sizeof((arr)[0]),                   \
                      .size = sizeof((arr)[0])})

/* Slow path of CN__STACK_PUSH: moves the frames to a heap array twice as
 * big.  Returns the new top frame, or NULL (the stack as it was) when
 * memory runs out. */
void *cn__stack_grow(cn__stack *s);

/* A new top frame (uninitialised) of the stack's frame type, or NULL when
 * memory runs out; and the top frame, of a stack that is not empty.  Typed,
 * so that the hot paths do no multiplication. */
#define CN__STACK_PUSH(s, type)                                                \
  ((s)->n < (s)->cap ? (type *)(void *)(s)->base + (s)->n++                    \
                     : (type *)cn__stack_grow(s))
#define CN__STACK_TOP(s, type) ((type *)(void *)(s)->base + ((s)->n - 1))

/* Frees the heap array, if any.  The stack must be initialised again
 * before it is used again. */
static inline void cn__stack_free(cn__stack *s) {
  if (s->base != s->inl)
    free(s->base);
}

/* The list cursor, for every reader of lists in this layer.  The cursor does
 * not own the stream position: the caller passes it as *pp, because only the
 * caller knows when it has walked past an element (an element may be a whole
 * subtree).  The cursor steps from a segment into its tail when the tail
 * continues the list (a LIST_EXT or a non-empty STRING_EXT), hands out
 * STRING_EXT bytes as cn__small_ints terms and the implicit tail of a
 * STRING_EXT as cn__nil.  So a handed-out term x lies in the stream exactly
 * when x == *pp; the caller then moves *pp past it, while a string byte has
 * been consumed already. */
typedef struct cn__list {
  uint64_t left; /* elements left in the current segment */
  int str;       /* the current segment is STRING_EXT bytes */
} cn__list;

/* Enters the list at *pp (LIST_EXT or STRING_EXT, even an empty one, which
 * yields only its tail, cn__nil); *pp moves to the first element. */
static inline void cn__list_enter(cn__list *l, const char **pp) {
  const char *p = *pp;
  l->str = (unsigned char)p[0] == ETF_STRING;
  l->left = l->str ? cn__get16(p + 1) : cn__get32(p + 1);
  *pp = p + (l->str ? 3 : 5);
}

/* Steps into the tail at *pp when it continues the list; returns 1 when
 * an element is next, 0 at the list's tail. */
static inline int cn__list_more(cn__list *l, const char **pp) {
  for (;;) {
    const char *p = *pp;
    if (l->left > 0)
      return 1;
    if (l->str ||
        ((unsigned char)p[0] != ETF_LIST &&
         ((unsigned char)p[0] != ETF_STRING || cn__get16(p + 1) == 0)))
      return 0;
    cn__list_enter(l, pp);
  }
}

/* Returns 1 with *x the next element, or 0 with *x the list's tail (never
 * a list itself; [] may come as NIL_EXT, "" or cn__nil). */
static inline int cn__list_next(cn__list *l, const char **pp, const char **x) {
  if (!cn__list_more(l, pp)) {
    *x = l->str ? cn__nil : *pp;
    return 0;
  }
  l->left--;
  *x = l->str ? cn__small_ints[(unsigned char)*(*pp)++] : *pp;
  return 1;
}

/* Walks the rest of the list from the cursor l at p, adds the elements it
 * passes to *count, and returns the first byte after the list's tail. */
const char *cn__list_end(cn__list *l, const char *p, uint64_t *count);

/* Grows b so that it can hold n more bytes.  Slow path of cn__room. */
int cn__buf_grow(cn_buf *b, size_t n);

/* Returns a pointer to n writable bytes at the end of b (len is not
 * advanced), or NULL when memory runs out (b->err is then set). */
static inline char *cn__room(cn_buf *b, size_t n) {
  if (b->cap - b->len < n && cn__buf_grow(b, n) != 0)
    return NULL;
  return b->data + b->len;
}

/* Encoders shared by build.c and encode.c.  They do not touch b->err;
 * callers do.  Return 0, CN_ENOMEM or CN_EINVAL. */
int cn__enc_atom(cn_buf *b, const char *s, size_t n);
int cn__enc_int(cn_buf *b, int64_t v);
int cn__enc_double(cn_buf *b, double v);
int cn__enc_binary(cn_buf *b, const void *p, size_t n);
int cn__enc_charlist(cn_buf *b, const char *s, size_t n);
int cn__enc_pid(cn_buf *b, const cn_pid *p);
int cn__enc_ref(cn_buf *b, const cn_ref *r);
/* Encodes the integer with sign neg and magnitude m. */
int cn__enc_mag64(cn_buf *b, int neg, uint64_t m);
/* Encodes the integer with sign neg and the magnitude of n bytes held, as
 * ei's erlang_big holds it, in 16-bit digits, least significant first. */
int cn__enc_big(cn_buf *b, int neg, const unsigned short *digits, size_t n);

/* Sets the count of the SMALL_TUPLE_EXT at b->data + hdr, whose n
 * elements end b, moving them 3 bytes up for a LARGE_TUPLE_EXT when n is
 * over 255.  Returns 0 or CN_ENOMEM.  In build.c. */
int cn__tuple_finish(cn_buf *b, size_t hdr, uint32_t n);

/* Puts the n pairs after the map header at b->data + hdr (through the
 * end of b) in key order, keeping the last value of a repeated key (as
 * #{a => 1, a => 2} is #{a => 2}), and sets the header's count.  Returns
 * 0, or CN_ENOMEM with the pairs as they were.  In build.c. */
int cn__map_finish(cn_buf *b, size_t hdr, size_t n);

/* Builds one term from the format at *fmt, consuming arguments from *ap
 * and advancing *fmt past it.  In key mode (used by the matcher for map
 * keys) the hole ~A stands for an atom and output holes are errors. */
int cn__build_one(cn_buf *b, const char **fmt, va_list *ap, int key_mode);

/* The hash that places a node name in the node table: SipHash under the
 * process's key (cn__hash_key), cut to 32 bits.  Not static only so that
 * the tests can check that crafted names spread. */
uint32_t cn__node_hash(const char *name, size_t len);

/* The node index of an atom's name: interned (add), or only looked up
 * (CN_ENOENT when no one interned it before). */
int cn__intern_atom(const cn__atom *a, uint32_t *idx, bool add);

/* As cn_get_pid / cn_get_ref, but a node name that no one interned before
 * is not interned: CN_ENOENT instead.  For reading what a peer sends
 * without letting it fill the process-wide node table. */
int cn__get_pid_known(cn_term t, cn_pid *p);
int cn__get_ref_known(cn_term t, cn_ref *r);

#endif /* CN_TERM_INTERNAL_H */
