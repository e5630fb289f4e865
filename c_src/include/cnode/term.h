/* cnode: the term layer.
 *
 * Messages are Erlang terms in the external term format (ETF): the same
 * bytes a BEAM node puts on the wire.  A cn_term is a read-only view of one
 * encoded term, without the leading version byte (131).  Terms that come
 * from outside pass cn_term_validate() first; every other function in this
 * header trusts that its cn_term arguments were validated (or built by
 * cn_build / cn_put_*), and never reads outside [ptr, ptr + len).
 *
 * Building:  cn_build(&buf, "{ok, ~i}", (int64_t)42) appends one term.
 * Matching:  cn_match(t, "{put, ~t, ~t}", &k, &v) destructures one term.
 *
 * Every function here is thread-safe in the usual sense: it may be called
 * from any thread, as long as no two threads use the same cn_buf at once.
 */
#ifndef CNODE_TERM_H
#define CNODE_TERM_H

#include <stdarg.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A view of one encoded term (no version byte).  It does not own memory. */
typedef struct cn_term {
  const char *ptr; /* first byte: the term's tag */
  size_t len;      /* exactly the term's encoded length */
} cn_term;

/* A growable byte buffer that holds encoded terms.  Initialise with
 * cn_buf_init() or CN_BUF_INIT; release with cn_buf_free().  A buffer built
 * over caller storage (cn_buf_init_with) switches to the heap when it
 * outgrows that storage, and never frees the caller's storage. */
typedef struct cn_buf {
  char *data;  /* the bytes; NULL while empty and unallocated */
  size_t len;  /* bytes in use */
  size_t cap;  /* bytes available at data */
  int on_heap; /* non-zero when data was malloc'ed by the buffer */
  int err;     /* first error from a builder call, sticky until reset */
} cn_buf;

#define CN_BUF_INIT                                                            \
  { NULL, 0, 0, 0, 0 }

/* Pids, references and ports carry their node as an index into a
 * process-wide table of interned node names (see cn_node_intern).  Index 0
 * is always "nonode@nohost". */
typedef struct cn_pid {
  uint32_t node;     /* interned node name */
  uint32_t id;       /* process number */
  uint32_t serial;   /* serial, bumped when a number is reused */
  uint32_t creation; /* node incarnation */
} cn_pid;

#define CN_REF_MAX_WORDS 5

typedef struct cn_ref {
  uint32_t node;                /* interned node name */
  uint32_t creation;            /* node incarnation */
  uint32_t len;                 /* words used in n[], 1..5 */
  uint32_t n[CN_REF_MAX_WORDS]; /* the reference's id words */
} cn_ref;

typedef struct cn_port {
  uint32_t node;     /* interned node name */
  uint32_t creation; /* node incarnation */
  uint64_t id;       /* port number */
} cn_port;

/* The type of a term, as Erlang sees it (encodings are folded together:
 * ATOM_EXT and SMALL_ATOM_UTF8_EXT are both CN_T_ATOM, STRING_EXT is a
 * CN_T_LIST, and so on). */
typedef enum cn_term_type {
  CN_T_INVALID = 0,
  CN_T_INTEGER, /* any integer, including bignums */
  CN_T_FLOAT,
  CN_T_ATOM,
  CN_T_REF,
  CN_T_FUN,
  CN_T_PORT,
  CN_T_PID,
  CN_T_TUPLE,
  CN_T_MAP,
  CN_T_NIL,      /* [] */
  CN_T_LIST,     /* a non-empty list, proper or improper */
  CN_T_BINARY,   /* a whole number of bytes */
  CN_T_BITSTRING /* a bitstring whose length is not a multiple of 8 */
} cn_term_type;

/* ---- Limits and validation -------------------------------------------- */

/* Limits applied by the validator.  Zero in a field means "the default". */
typedef struct cn_term_limits {
  size_t max_depth; /* nesting of tuples, lists (heads), maps, funs */
  size_t max_size;  /* bytes in one term */
} cn_term_limits;

#define CN_TERM_DEFAULT_MAX_DEPTH 1024
#define CN_TERM_DEFAULT_MAX_SIZE ((size_t)1 << 30) /* 1 GiB */

/* Checks that buf[*off .. len) starts with one well-formed term (no version
 * byte) within the limits (NULL: defaults).  Accepts every term a BEAM 25+
 * node can send: all atom, integer, float, pid, port, reference, fun,
 * export, tuple, list, string, binary, bitstring and map encodings.  The
 * check is iterative and never reads outside buf[0 .. len); its time is
 * linear in the bytes it reads, since every count is checked against the
 * bytes left (each element takes at least one).
 *
 * Rejected as erts rejects them: UTF-8 atoms that are not valid UTF-8 or
 * hold more than 255 characters, Latin-1 atoms over 255 bytes, infinite or
 * NaN floats, BIT_BINARY_EXT with bits outside 1..8 (0 only when empty),
 * references of 0 or more than 5 words, a NEW_FUN_EXT whose Size does not
 * match its contents.  Also rejected: ATOM_CACHE_REF (it needs the
 * distribution header), FUN_EXT (gone since OTP 23), and a LIST_EXT of
 * zero elements (erts never writes one).  Repeated map keys are not
 * looked for (erts never sends them).  Depth counts tuple elements,
 * list elements, map keys and values and fun free variables; a list's tail
 * sits at the list's own depth, so long lists are not deep.
 *
 * Returns 0 and advances *off past the term, or CN_EBADTERM (malformed or
 * truncated), CN_ETOODEEP, CN_ETOOBIG (the term is there but over
 * max_size), CN_ENOMEM (no memory for the stack of a deeply nested term)
 * or CN_EINVAL (off is NULL), leaving *off unchanged.  Thread-safe. */
CN_EXTERN int cn_term_validate(const char *buf, size_t len, size_t *off,
                               const cn_term_limits *lim);

/* Validates a whole external-format buffer: the version byte 131 followed
 * by exactly one term and nothing else (trailing bytes are CN_EBADTERM).
 * On success *out views the term inside buf (no copy).  Compressed terms
 * give CN_ENOTSUP.  Thread-safe. */
CN_EXTERN int cn_term_from_etf(const char *buf, size_t len,
                               const cn_term_limits *lim, cn_term *out);

/* ---- Buffers ---------------------------------------------------------- */

/* Initialises an empty buffer.  Allocates nothing. */
CN_EXTERN void cn_buf_init(cn_buf *b);

/* Initialises a buffer over caller storage of cap bytes, used until the
 * buffer needs more.  Building into a stack buffer this way allocates
 * nothing for small terms. */
CN_EXTERN void cn_buf_init_with(cn_buf *b, void *storage, size_t cap);

/* Frees heap memory held by the buffer and leaves it empty and reusable
 * (over its caller storage again, if it had some and never left it). */
CN_EXTERN void cn_buf_free(cn_buf *b);

/* Empties the buffer and clears its sticky error, keeping its memory. */
CN_EXTERN void cn_buf_reset(cn_buf *b);

/* Makes room for n more bytes; capacity grows by doubling.  Returns 0 or
 * CN_ENOMEM (the buffer is unchanged and its sticky error is set). */
CN_EXTERN int cn_buf_reserve(cn_buf *b, size_t n);

/* Appends raw bytes.  Returns 0 or CN_ENOMEM. */
CN_EXTERN int cn_buf_append(cn_buf *b, const void *p, size_t n);

/* Views the bytes of a buffer that holds exactly one term. */
static inline cn_term cn_buf_term(const cn_buf *b) {
  cn_term t;
  t.ptr = b->data;
  t.len = b->len;
  return t;
}

/* ---- Building --------------------------------------------------------- */

/* Appends one term described by fmt, in Erlang syntax with holes:
 *
 *   literals  atoms (ok, 'Quoted atom'), integers of any size (-12),
 *             floats (1.5, 2.0e-3), "text" (a binary, as in Elixir), [],
 *             {..}, [..|..], #{k => v}.  Quoted text takes the escapes
 *             \\ \' \" \n \r \t \e \0.
 *   ~a  const char *      an atom (UTF-8)
 *   ~i  int64_t           an integer (pass an int64_t: (int64_t)42, since
 *                         a plain int is not promoted to 64 bits)
 *   ~u  uint64_t          an integer
 *   ~f  double            a float
 *   ~s  const char *      a binary holding the C string (an Elixir string)
 *   ~b  const void *, size_t   a binary
 *   ~c  const char *      a charlist (an Erlang string), one element per
 *                         byte (the bytes are not decoded as UTF-8)
 *   ~p  const cn_pid *    a pid
 *   ~r  const cn_ref *    a reference
 *   ~t  cn_term           an existing term, copied in as it is
 *   ~T  const cn_term *   the same, through a pointer
 *
 * The encoding is the one term_to_binary(T, [{minor_version, 2}]) gives on
 * OTP 25 (what the distribution sends): the smallest integer form,
 * NEW_FLOAT_EXT, SMALL_ATOM_UTF8_EXT, STRING_EXT for a proper list of
 * integers 0..255, one list for [a | [b]], map pairs in key order (erts
 * uses a hash order above 32 pairs; any order is valid), the last value
 * for a repeated map key.  Formats nest at most 64 containers deep.
 * Allocates nothing unless the buffer must grow (or a map's pairs are
 * out of key order and need sorting).
 *
 * Returns 0, CN_EBADFMT (the format is malformed, or a literal is not a
 * valid term, such as 1.0e999), CN_EINVAL (an argument is: a non-finite
 * double, an atom that is not UTF-8 or longer than 255 characters, a NULL
 * string, an empty ~t, a pid or reference of an unknown node index or of
 * 0 or over 5 words, a binary or charlist whose term would pass 2 GiB, the
 * limit of ei's int offsets) or CN_ENOMEM.  On error the buffer's bytes are
 * left as they were before the call, and its sticky error is set. */
CN_EXTERN int cn_build(cn_buf *b, const char *fmt, ...);
CN_EXTERN int cn_vbuild(cn_buf *b, const char *fmt, va_list ap);

/* Low-level encoders.  Each appends one item; containers take their arity
 * first and then their elements (a list of n elements is followed by n
 * elements and then its tail, normally cn_put_nil; cn_put_list(b, 0)
 * appends nothing, so the tail alone is the term).  They write the
 * encodings cn_build writes, except that cn_put_list always writes
 * LIST_EXT, and map pairs stay in the order given.  Each returns 0,
 * CN_ENOMEM, or CN_EINVAL for an argument cn_build would refuse (see
 * there), and sets the buffer's sticky error, so a sequence of calls can
 * be checked once at the end through b->err. */
CN_EXTERN int cn_put_atom(cn_buf *b, const char *utf8);
CN_EXTERN int cn_put_atom_len(cn_buf *b, const char *utf8, size_t len);
CN_EXTERN int cn_put_int(cn_buf *b, int64_t v);
CN_EXTERN int cn_put_uint(cn_buf *b, uint64_t v);
CN_EXTERN int cn_put_double(cn_buf *b, double v);
CN_EXTERN int cn_put_binary(cn_buf *b, const void *p, size_t n);
CN_EXTERN int cn_put_charlist(cn_buf *b, const char *s, size_t n);
CN_EXTERN int cn_put_tuple(cn_buf *b, uint32_t arity);
CN_EXTERN int cn_put_list(cn_buf *b, uint32_t n);
CN_EXTERN int cn_put_nil(cn_buf *b);
CN_EXTERN int cn_put_map(cn_buf *b, uint32_t pairs);
CN_EXTERN int cn_put_pid(cn_buf *b, const cn_pid *p);
CN_EXTERN int cn_put_ref(cn_buf *b, const cn_ref *r);
CN_EXTERN int cn_put_term(cn_buf *b, cn_term t);

/* ---- Matching and reading --------------------------------------------- */

/* Destructures t against pattern, which uses the syntax of cn_build with
 * these holes (each takes a pointer that receives the value; ~A takes the
 * name to compare with):
 *
 *   _   matches anything
 *   ~a  char *buf, size_t cap   the atom's UTF-8 name, NUL-terminated
 *   ~A  const char *name        matches only that atom (no output)
 *   ~i  int64_t *               an integer that fits in 64 bits
 *   ~u  uint64_t *              a non-negative integer that fits
 *   ~f  double *                a float
 *   ~b  const char **, size_t * a binary, viewed in place
 *   ~p  cn_pid *                a pid
 *   ~r  cn_ref *                a reference
 *   ~t  cn_term *               any term, viewed in place
 *
 * Literals match terms that are exactly equal (=:=), whatever their
 * encoding.  A map pattern matches a map that has at least the pattern's
 * keys; a key is a literal or ~A.  #{} matches any map, {} only the empty
 * tuple.  Outputs are written only when the whole pattern matches, and
 * views (~b, ~t) point into t.
 *
 * In [P1, .., Pn | Q], Q matches the rest of the list after n elements.
 * When that rest is a term of its own in t's encoding (as in
 * [alias | Ref], or [a, b | T] against a list of exactly two elements and
 * a tail T) any pattern can match it; when it is the middle of a longer
 * LIST_EXT or STRING_EXT it has no view, and then Q may only be _ (a ~t
 * or list pattern there gives CN_ENOTSUP).
 *
 * Returns 0 on a match, CN_ENOMATCH, CN_ENOSPC (an atom did not fit its
 * buffer), CN_EBADFMT for a malformed pattern (patterns nest at most 64
 * deep; a malformed part after a mismatch may go unnoticed), CN_ENOTSUP
 * (see above, or ~a met a name with a NUL byte), CN_EINVAL (a NULL ~A name), or
 * an error of cn_get_pid for ~p and ~r.  Matching "{put, ~t, ~t}" takes tens of
 * nanoseconds and allocates nothing. */
CN_EXTERN int cn_match(cn_term t, const char *pattern, ...);
CN_EXTERN int cn_vmatch(cn_term t, const char *pattern, va_list ap);

/* Returns the term's type, or CN_T_INVALID for an empty view. */
CN_EXTERN cn_term_type cn_term_typeof(cn_term t);

/* Readers.  Each returns 0, or CN_ENOMATCH when t is not of that type (or
 * does not fit), and then leaves its outputs unchanged.  Integers may come
 * in any encoding, bignums included; cn_get_double reads NEW_FLOAT_EXT
 * and FLOAT_EXT. */
CN_EXTERN int cn_get_int64(cn_term t, int64_t *v);
CN_EXTERN int cn_get_uint64(cn_term t, uint64_t *v);
CN_EXTERN int cn_get_double(cn_term t, double *v);
/* Copies the atom's UTF-8 name, NUL-terminated.  CN_ENOSPC if it does not
 * fit in cap bytes, CN_ENOTSUP if the name holds a NUL byte ('a\0b' is a
 * valid atom, but not a C string: read it with cn_get_atom_n). */
CN_EXTERN int cn_get_atom(cn_term t, char *buf, size_t cap);
/* As cn_get_atom, for any atom: copies the UTF-8 name and a NUL after it
 * to buf, and sets *len (when len is not NULL) to the name's length in
 * bytes, without that NUL, so that a name with a NUL byte in it reads back
 * whole.  Returns 0, CN_ENOMATCH (not an atom) or CN_ENOSPC (the name and
 * its NUL do not fit in cap bytes).  Thread-safe. */
CN_EXTERN int cn_get_atom_n(cn_term t, char *buf, size_t cap, size_t *len);
/* Views a binary's bytes in place (a BIT_BINARY_EXT of whole bytes too;
 * a bitstring is CN_ENOMATCH). */
CN_EXTERN int cn_get_binary(cn_term t, const char **p, size_t *n);
/* Pids and references intern their node's name (cn_node_intern), so
 * besides CN_ENOMATCH they can fail with CN_ELIMIT (the node table is
 * full), CN_ENOMEM, or CN_EINVAL (a node name over CN_MAX_NODE_NAME, or
 * with a NUL byte in it). */
CN_EXTERN int cn_get_pid(cn_term t, cn_pid *p);
CN_EXTERN int cn_get_ref(cn_term t, cn_ref *r);

/* True when t is the atom whose UTF-8 name is name (in any of the four
 * atom encodings). */
CN_EXTERN bool cn_is_atom(cn_term t, const char *name);

/* Iterates the elements of a tuple, the elements of a list (then the tail
 * of an improper list is not visited; see tail), or the keys and values of
 * a map (key, value, key, value ...), in encoded order.  A list is read
 * across all its segments: [1 | [2]] gives 1 and 2, and the bytes of a
 * STRING_EXT come as SMALL_INTEGER_EXT terms.  Element views stay valid as
 * long as t's bytes do.  Typical use:
 *
 *   cn_iter it; cn_term e;
 *   if (cn_iter_init(&it, t) == 0)
 *     while (cn_iter_next(&it, &e)) ...
 */
typedef struct cn_iter {
  const char *pos; /* next element */
  const char *end; /* end of the viewed term's bytes */
  size_t left;     /* elements left in the current segment */
  int string;      /* 1: in a STRING_EXT (each byte is a small int);
                      2: in a LIST_EXT; 0: a tuple or map, or done */
  cn_term tail;    /* for lists: the tail once the elements are done */
  char scratch[2]; /* reserved */
} cn_iter;

/* Returns 0 and starts iterating, or CN_ENOMATCH if t is not a tuple, list,
 * nil or map.  *count (if not NULL) gets the number of elements that
 * cn_iter_next will return (for a list split over several segments this
 * walks them: pass NULL when the count is not needed). */
CN_EXTERN int cn_iter_init(cn_iter *it, cn_term t, size_t *count);
CN_EXTERN bool cn_iter_next(cn_iter *it, cn_term *elem);

/* ---- Comparing -------------------------------------------------------- */

/* Exact equality (=:=).  Two encodings of the same value compare equal:
 * ATOM_UTF8_EXT and SMALL_ATOM_UTF8_EXT (and Latin-1 atoms), STRING_EXT and
 * a LIST_EXT of small integers (or a list split over its tails),
 * INTEGER_EXT and SMALL_BIG_EXT (non-canonical bignums too), FLOAT_EXT
 * and NEW_FLOAT_EXT, PID_EXT and NEW_PID_EXT, every reference and port
 * encoding, a BIT_BINARY_EXT of whole bytes and a BINARY_EXT, maps whose
 * pairs arrive in different orders, and so on.  1 and 1.0 differ; 0.0 and
 * -0.0 are equal, as on OTP 25.  References of different lengths are
 * equal when the longer one's extra words are zero (erts).  Local funs
 * compare by module, index, old uniq and free variables (not by creator).
 * Iterative; allocates only for maps and deep terms.  Thread-safe. */
CN_EXTERN bool cn_term_equal(cn_term a, cn_term b);

/* Erlang's standard term order (number < atom < reference < fun < port <
 * pid < tuple < map < nil < list < bitstring), with the exact variant:
 * an integer and a float of equal value order the integer first, so the
 * result is 0 exactly when cn_term_equal holds.  Within a type it follows
 * erts: integers and floats by exact value, atoms by their text, pids by
 * serial, number, then node, ports and references by node first, tuples
 * by size then elements, maps by size, then keys in map key order (where
 * every integer sorts before every float, as in erts), then values, funs
 * before exports.  Map keys nested inside map keys more than
 * 64 deep are ordered by bytes instead (beyond the default depth limit of
 * validated terms this is the only bound on the C stack).  Returns a
 * negative, zero or positive number; an empty view orders first. */
CN_EXTERN int cn_term_compare(cn_term a, cn_term b);

/* A 64-bit hash consistent with cn_term_equal: equal terms hash equally
 * whatever their encoding (and whatever the order of map pairs).  It is
 * SipHash-2-4 of the term's canonical content under a random 128-bit key
 * that the process draws once, on first use, from OpenSSL's RAND_bytes;
 * so a peer that does not know the key cannot choose keys that collide,
 * and a hash table indexed by it stays fast under hostile input.  The
 * values differ from one run (one process) to the next: never store them
 * or send them to another node; use cn_term_hash_keyed for that.  An
 * empty view hashes to 0.  Iterative; allocates only for deep terms.
 * Thread-safe. */
CN_EXTERN uint64_t cn_term_hash(cn_term t);

/* The same hash as cn_term_hash, under the 16 bytes at key instead of the
 * process's key (NULL means the process's key).  With a fixed key the
 * value depends only on the term, not on its encoding, the run or the
 * machine's byte order: under the key 00 01 02 .. 0f, the atom ok hashes
 * to 0xb75bf1dd5e022f38 (the tests pin this and a few more).  Use it for
 * hashes that must agree between runs or nodes, and keep the key secret
 * where peers choose the terms.  Thread-safe. */
CN_EXTERN uint64_t cn_term_hash_keyed(cn_term t, const uint8_t key[16]);

/* Appends t in Erlang syntax (as io:format("~w") would print it on OTP 25)
 * to out, followed by a NUL that is not counted in out->len: binaries as
 * <<1,2>>, charlists as [97,98], floats in the shortest form that reads
 * back ("1.0e10", "0.1").  Where ~w depends on the node it runs on, the
 * text is deterministic instead: pids, ports and references of
 * nonode@nohost print as <0.Id.Serial>, #Port<0.Id>, #Ref<0.W2.W1.W0>,
 * those of other nodes as #Pid<node@host.Id.Serial>, #Port<node@host.Id>,
 * #Ref<node@host.W2.W1.W0>; map pairs print in key order; atoms print
 * their characters as UTF-8 (as ~tw does).  Returns 0 or CN_ENOMEM (then
 * out->len is as it was). */
CN_EXTERN int cn_term_print(cn_term t, cn_buf *out);

/* Where cn_term_parse stopped, and why. */
typedef struct cn_parse_error {
  size_t offset;    /* byte offset in the text */
  const char *what; /* static text, such as "expected }" */
} cn_parse_error;

/* Appends the term written in Erlang syntax in text[0 .. len) to b: what
 * erl_parse:parse_term/1 reads, as a user types it at a shell prompt.
 * Atoms (ok, 'Quoted', with Erlang's escapes), integers of any size
 * (-12, 16#ff, 1_000, $a), floats (1.5, 2.0e-3), "strings" (charlists,
 * as in Erlang), <<"bytes">>, <<"text"/utf8>>, <<1,2,3>>, {tuples},
 * [lists | Tail], #{maps => too} (in key order, the last value for a
 * repeated key), % comments, and an optional full stop at the end.
 * Pids, ports, references and funs have no text form to read.  Text is
 * UTF-8.  Nesting is capped at 512 levels.  Every byte is checked: the
 * text may come from anyone.  Returns 0, CN_EBADFMT (with *err, when not
 * NULL, saying where and why) or CN_ENOMEM; on error b is as it was. */
CN_EXTERN int cn_term_parse(cn_buf *b, const char *text, size_t len,
                            cn_parse_error *err);

/* ---- Nodes, pids, references ------------------------------------------ */

#define CN_MAX_NODE_NAME 255

/* Interns a node name (bytes, compared exactly) and returns its index in
 * *idx.  The table is process-wide, append-only and thread-safe; names
 * are never removed.  Looking up a name already there takes no lock.
 * Returns 0, CN_EINVAL (empty or longer than CN_MAX_NODE_NAME), CN_ENOMEM,
 * or CN_ELIMIT when the table is full (CN_MAX_NODES names). */
#define CN_MAX_NODES 65536
CN_EXTERN int cn_node_intern(const char *name, size_t len, uint32_t *idx);

/* The index of a node name already interned, without interning it: 0 with
 * *idx set, CN_ENOENT when no one interned it, or CN_EINVAL.  For names
 * that come from outside before they are trusted.  Thread-safe. */
CN_EXTERN int cn_node_find(const char *name, size_t len, uint32_t *idx);

/* Returns the interned name at idx (NUL-terminated, valid for the life of
 * the process), or NULL for an index never handed out.  Thread-safe. */
CN_EXTERN const char *cn_node_name(uint32_t idx);

/* Equality of pids and references (all fields; as with =:=, a reference
 * equals one that adds zero high words).  Thread-safe. */
CN_EXTERN bool cn_pid_equal(const cn_pid *a, const cn_pid *b);
CN_EXTERN bool cn_ref_equal(const cn_ref *a, const cn_ref *b);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_TERM_H */
