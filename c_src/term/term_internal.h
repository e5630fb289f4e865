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

/* Byte size of the atom at p. */
static inline size_t cn__atom_size(const char *p) {
  unsigned char tag = (unsigned char)p[0];
  if (tag == ETF_SMALL_ATOM_UTF8 || tag == ETF_SMALL_ATOM)
    return 2 + (unsigned char)p[1];
  return 3 + (size_t)cn__get16(p + 1);
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

/* Bytes of the atom's name in UTF-8. */
size_t cn__atom_utf8_len(const cn__atom *a);

/* Writes the UTF-8 name to out (cn__atom_utf8_len bytes, no NUL). */
void cn__atom_utf8(const cn__atom *a, char *out);

/* Writes the code point c (at most U+10FFFF) to out as UTF-8; returns the
 * byte count, 1 to 4. */
size_t cn__utf8_put(uint32_t c, char *out);

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

void cn__ident_view(const char *p, cn__ident *d);

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

/* The class (CLS_*) of each tag; 0 for bytes that are not tags. */
extern const unsigned char cn__class_tab[256];

/* The class (CLS_*) of the term at p. */
static inline int cn__class(const char *p) {
  unsigned char tag = (unsigned char)p[0];
  if (tag == ETF_STRING && p[1] == 0 && p[2] == 0)
    return CLS_NIL; /* "" is [] */
  return cn__class_tab[tag];
}

/* Sorts the n pairs of the map whose first key is at p into keys[] and
 * vals[] (arrays of n pointers), in Erlang's key order, and returns the
 * first byte after the map. */
const char *cn__map_sorted(const char *p, uint64_t n, const char **keys,
                           const char **vals, int level);

/* One map pair. */
typedef struct cn__kv {
  const char *k, *v;
} cn__kv;

/* cn__map_sorted into one array that it allocates (*out, 2 * n pairs, the
 * second half scratch; the caller frees it).  Returns the first byte after
 * the map, or NULL (and no array) when memory runs out. */
const char *cn__map_pairs(const char *p, uint64_t n, cn__kv **out, int level);

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

#define cn__stack_init(s, arr)                                                 \
  cn__stack_init_((s), (arr), sizeof(arr) / sizeof((arr)[0]), sizeof((arr)[0]))

static inline void cn__stack_init_(cn__stack *s, void *inl, size_t cap,
                                   size_t size) {
  s->base = s->inl = (char *)inl;
  s->n = 0;
  s->cap = cap;
  s->size = size;
}

/* Slow path of cn__stack_push: moves the frames to a heap array twice as
 * big.  Returns the new top frame, or NULL (the stack as it was) when
 * memory runs out. */
void *cn__stack_grow(cn__stack *s);

/* Returns a new top frame (uninitialised), or NULL when memory runs out. */
static inline void *cn__stack_push(cn__stack *s) {
  if (s->n < s->cap)
    return s->base + s->size * s->n++;
  return cn__stack_grow(s);
}

/* The top frame, or NULL when the stack is empty. */
static inline void *cn__stack_top(const cn__stack *s) {
  return s->n != 0 ? s->base + s->size * (s->n - 1) : NULL;
}

/* cn__stack_push and cn__stack_top for frames of a known type, which spare
 * the hot paths a multiplication; the stack must not be empty for TOP. */
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

/* The list cursor, for every reader of lists in this layer (match.c may
 * adopt it too).  The cursor does not own the stream position: the caller
 * passes it as *pp, because only the caller knows when it has walked past
 * an element (an element may be a whole subtree).  The cursor steps from a
 * segment into its tail when the tail continues the list (a LIST_EXT or a
 * non-empty STRING_EXT), hands out STRING_EXT bytes as cn__small_ints terms
 * and the implicit tail of a STRING_EXT as cn__nil.  So a handed-out term x
 * lies in the stream exactly when x == *pp; the caller then moves *pp past
 * it, while a string byte has been consumed already. */
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

/* Returns 1 with *x the next element, or 0 with *x the list's tail (never
 * a list itself; [] may come as NIL_EXT, "" or cn__nil). */
static inline int cn__list_next(cn__list *l, const char **pp, const char **x) {
  for (;;) {
    const char *p = *pp;
    if (l->left > 0) {
      l->left--;
      if (l->str) {
        *x = cn__small_ints[(unsigned char)*p];
        *pp = p + 1;
      } else {
        *x = p;
      }
      return 1;
    }
    if (l->str) {
      *x = cn__nil;
      return 0;
    }
    if ((unsigned char)p[0] != ETF_LIST &&
        ((unsigned char)p[0] != ETF_STRING || cn__get16(p + 1) == 0)) {
      *x = p;
      return 0;
    }
    cn__list_enter(l, pp);
  }
}

/* Elements of the trusted list at p, across all its segments. */
uint64_t cn__list_count(const char *p);

/* Kinds of open containers, for the walks' frames: tuples and a fun's
 * free variables, lists, maps. */
enum { CN__F_SEQ, CN__F_LIST, CN__F_MAP };

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
int cn__enc_uint(cn_buf *b, uint64_t v);
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

/* Node table lookups used by the readers: interns a node atom. */
/* The node index of an atom's name: interned (add), or only looked up
 * (CN_ENOENT when no one interned it before). */
int cn__intern_atom(const cn__atom *a, uint32_t *idx, bool add);

/* The two halves of cn_get_pid / cn_get_ref (any encoding), so that the
 * matcher can intern early (the step that can fail: CN_ELIMIT or
 * CN_ENOMEM) and fill outputs late.  cn__ident_node checks that p is of
 * the given type (CN_T_PID or CN_T_REF) and finds its node: interned when
 * add, else CN_ENOENT for a name no one interned, CN_EINVAL for a name
 * with a NUL. */
int cn__ident_node(const char *p, cn_term_type type, uint32_t *node, bool add);

/* As cn_get_pid / cn_get_ref, but a node name that no one interned before
 * is not interned: CN_ENOENT instead.  For reading what a peer sends
 * without letting it fill the process-wide node table. */
int cn__get_pid_known(cn_term t, cn_pid *p);
int cn__get_ref_known(cn_term t, cn_ref *r);
void cn__pid_fill(const char *p, uint32_t node, cn_pid *out);
void cn__ref_fill(const char *p, uint32_t node, cn_ref *out);

#endif /* CN_TERM_INTERNAL_H */
