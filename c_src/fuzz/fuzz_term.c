/* fuzz_term: the term layer against hostile bytes.
 *
 * The input is one to three terms in the external format, each with or
 * without its version byte 131 (a seed is term_to_binary(A), or
 * term_to_binary(A) followed by term_to_binary(B), and so on).  Every term the
 * bounded validator accepts then goes through everything the library
 * does with a term from the wire: printing, comparing, hashing, iterating,
 * matching and reading.  Nothing may crash, leak or read out of bounds,
 * and these invariants must hold:
 *
 *  - validation: stricter limits never accept more, and a term accepted
 *    with a size limit of exactly its length is refused one byte less;
 *  - reading: each cn_get_* succeeds exactly for its type, agrees with the
 *    others, and leaves its outputs alone when it fails;
 *  - iterating: the count is what cn_iter_next hands out, and tuple and
 *    map elements tile the term's bytes exactly;
 *  - re-encoding: the term rebuilt from what the readers return (with
 *    cn_put_*, in canonical encodings, lists split into cons cells and map
 *    pairs reversed) validates, is equal, compares 0, hashes and prints
 *    the same, and orders the same against the second term;
 *  - comparing: compare(a, a) is 0, compare is antisymmetric and
 *    transitive, equal is compare == 0, and equal terms hash equally;
 *  - printing: the text is valid UTF-8, NUL-terminated, independent of
 *    the storage it is printed into, and never written past that storage;
 *    pids, ports and references name their node whole;
 *    where it is in cn_build's syntax it builds back an equal term, and
 *    matches the term as a pattern;
 *  - matching: each hole agrees with the matching reader.
 */
#include <math.h>

#include "fuzz/fuzz.h"

/* Map pairs compared pairwise for repeated keys, at most. */
#define DUP_SCAN_MAX 64
/* Deeper than any validated term (the default limit is 1024). */
#define REBUILD_MAX_DEPTH 4096

/* What a walk over a term found out, for the checks that depend on it. */
typedef struct walk {
  int maybe_dups; /* some map may hold a key twice (its order matters) */
  int has_ident;  /* holds a pid, port or reference: their node names print
                     as they are, so the text may hold any character */
  int has_map;    /* holds a map: map patterns match any superset */
} walk;

static int sign(int x) { return (x > 0) - (x < 0); }

static int is_container(cn_term_type ty) {
  return ty == CN_T_TUPLE || ty == CN_T_LIST || ty == CN_T_NIL ||
         ty == CN_T_MAP;
}

/* A term whose bytes validate, exactly and alone. */
static void check_valid(cn_term t) {
  size_t off = 0;
  FZ_CHECK(t.len > 0);
  FZ_OK(cn_term_validate(t.ptr, t.len, &off, NULL));
  FZ_CHECK(off == t.len);
}

/* Every reader on t: each succeeds exactly for its type, they agree with
 * each other, and a failure leaves the outputs untouched. */
__attribute__((noinline)) static void check_readers(cn_term t) {
  cn_term_type ty = cn_term_typeof(t);
  int64_t i = 0x5a5a5a5a;
  uint64_t u = 0xa5a5a5a5;
  double d = 7.25;
  const char *p = (const char *)&d;
  size_t n = 12345;
  char name[1024];
  int ri, ru, rc;
  cn_iter it;

  FZ_CHECK(ty != CN_T_INVALID);
  ri = cn_get_int64(t, &i);
  ru = cn_get_uint64(t, &u);
  FZ_CHECK(ri == 0 || ri == CN_ENOMATCH);
  FZ_CHECK(ru == 0 || ru == CN_ENOMATCH);
  if (ri != 0)
    FZ_CHECK(i == 0x5a5a5a5a);
  if (ru != 0)
    FZ_CHECK(u == 0xa5a5a5a5);
  if (ri == 0 || ru == 0)
    FZ_CHECK(ty == CN_T_INTEGER);
  if (ri == 0 && i >= 0)
    FZ_CHECK(ru == 0 && u == (uint64_t)i);
  if (ru == 0 && u <= (uint64_t)INT64_MAX)
    FZ_CHECK(ri == 0 && (uint64_t)i == u);

  rc = cn_get_double(t, &d);
  FZ_CHECK(rc == 0 ? ty == CN_T_FLOAT && isfinite(d)
                   : rc == CN_ENOMATCH && ty != CN_T_FLOAT && d == 7.25);

  /* An atom with a NUL in its name is CN_ENOTSUP for cn_get_atom (no C
   * string), and reads back whole through cn_get_atom_n. */
  rc = cn_get_atom(t, name, sizeof name);
  FZ_CHECK(rc == 0 || rc == CN_ENOTSUP ? ty == CN_T_ATOM
                                       : rc == CN_ENOMATCH && ty != CN_T_ATOM);
  if (rc == 0 || rc == CN_ENOTSUP) {
    char name2[1024];
    size_t len, len2;
    FZ_OK(fz_atom_name(t, name, &len));
    FZ_CHECK(fz_utf8_ok((const unsigned char *)name, len));
    FZ_CHECK((rc == CN_ENOTSUP) == (memchr(name, 0, len) != NULL));
    FZ_OK(cn_get_atom_n(t, name2, sizeof name2, &len2));
    FZ_CHECK(len2 == len && memcmp(name, name2, len) == 0);
    if (strlen(name) == len)
      FZ_CHECK(cn_is_atom(t, name));
    FZ_CHECK(cn_get_atom(t, NULL, 0) == (rc == 0 ? CN_ENOSPC : CN_ENOTSUP));
  } else {
    FZ_CHECK(!cn_is_atom(t, "ok"));
  }

  rc = cn_get_binary(t, &p, &n);
  if (rc == 0) {
    FZ_CHECK(ty == CN_T_BINARY);
    FZ_CHECK(p >= t.ptr && p + n == t.ptr + t.len);
  } else {
    FZ_CHECK(rc == CN_ENOMATCH && ty != CN_T_BINARY);
    FZ_CHECK(p == (const char *)&d && n == 12345);
  }

  /* Pids and references intern their node; see fz_node_ok. */
  if (ty != CN_T_PID || fz_node_ok(t)) {
    cn_pid pid, before;
    memset(&pid, 0x77, sizeof pid);
    before = pid;
    rc = cn_get_pid(t, &pid);
    FZ_CHECK(rc == 0 ? ty == CN_T_PID : rc == CN_ENOMATCH && ty != CN_T_PID);
    if (rc != 0)
      FZ_CHECK(memcmp(&pid, &before, sizeof pid) == 0);
    else
      FZ_CHECK(cn_node_name(pid.node) != NULL && cn_pid_equal(&pid, &pid));
  }
  if (ty != CN_T_REF || fz_node_ok(t)) {
    cn_ref ref, before;
    memset(&ref, 0x77, sizeof ref);
    before = ref;
    rc = cn_get_ref(t, &ref);
    FZ_CHECK(rc == 0 ? ty == CN_T_REF : rc == CN_ENOMATCH && ty != CN_T_REF);
    if (rc != 0) {
      FZ_CHECK(memcmp(&ref, &before, sizeof ref) == 0);
    } else {
      FZ_CHECK(ref.len >= 1 && ref.len <= CN_REF_MAX_WORDS);
      FZ_CHECK(cn_node_name(ref.node) != NULL && cn_ref_equal(&ref, &ref));
    }
  }

  rc = cn_iter_init(&it, t, NULL);
  FZ_CHECK(rc == 0 ? is_container(ty) : rc == CN_ENOMATCH && !is_container(ty));

  /* A pid, port or reference prints its node's name whole (but for
   * nonode@nohost, which prints as 0). */
  if (ty == CN_T_PID || ty == CN_T_PORT || ty == CN_T_REF) {
    cn_buf text = CN_BUF_INIT;
    cn_term atom;
    size_t len;
    FZ_OK(fz_node_atom(t, &atom));
    FZ_OK(fz_atom_name(atom, name, &len));
    FZ_OK(cn_term_print(t, &text));
    if (!(len == 13 && memcmp(name, "nonode@nohost", 13) == 0))
      FZ_CHECK(memmem(text.data, text.len, name, len) != NULL);
    cn_buf_free(&text);
  }
}

/* Does the map whose key/value views are kv[0 .. 2 * pairs) repeat a key?
 * Returns 1 when it does or when it is too big to tell cheaply. */
static int map_may_repeat(const cn_term *kv, size_t pairs) {
  size_t i, j;
  if (pairs > DUP_SCAN_MAX)
    return 1;
  for (i = 0; i < pairs; i++)
    for (j = i + 1; j < pairs; j++)
      if (cn_term_equal(kv[2 * i], kv[2 * j])) {
        /* Equal keys compare 0 and hash alike, whichever is asked. */
        FZ_CHECK(cn_term_compare(kv[2 * i], kv[2 * j]) == 0);
        FZ_CHECK(cn_term_hash(kv[2 * i]) == cn_term_hash(kv[2 * j]));
        return 1;
      }
  return 0;
}

/* Appends the atom t to b from its name.  Kept out of rebuild() so that
 * the name's buffer is not on the stack once per level of a deep term. */
__attribute__((noinline)) static void rebuild_atom(cn_buf *b, cn_term t) {
  char name[1024];
  size_t n;
  FZ_OK(fz_atom_name(t, name, &n));
  FZ_OK(cn_put_atom_len(b, name, n));
}

/* Appends t to b again, from what the readers return: canonical encodings
 * (cn_put_*), one LIST_EXT per list.  With split set, lists become chains
 * of one-element cons cells and the pairs of maps without repeated keys
 * go in reverse order: other encodings of the same value.  Pids and
 * references of other nodes than fz_node_ok's, ports, funs, bitstrings
 * and integers over 64 bits are copied as they are.  w collects what
 * was seen.  Recursion is bounded by the validator's depth limit. */
static void rebuild(cn_buf *b, cn_term t, int split, walk *w, int depth) {
  cn_term_type ty = cn_term_typeof(t);
  size_t n, k;
  cn_iter it;
  cn_term e;
  int64_t i;
  uint64_t u;
  double d;
  const char *p;

  FZ_CHECK(depth < REBUILD_MAX_DEPTH);
  /* The readers are checked once, in the first of the two passes. */
  if (!split) {
    check_valid(t);
    check_readers(t);
  }
  switch (ty) {
  case CN_T_INTEGER:
    if (cn_get_int64(t, &i) == 0)
      FZ_OK(cn_put_int(b, i));
    else if (cn_get_uint64(t, &u) == 0)
      FZ_OK(cn_put_uint(b, u));
    else
      FZ_OK(cn_put_term(b, t));
    break;
  case CN_T_FLOAT:
    FZ_OK(cn_get_double(t, &d));
    FZ_OK(cn_put_double(b, d));
    break;
  case CN_T_ATOM:
    rebuild_atom(b, t);
    break;
  case CN_T_BINARY:
    FZ_OK(cn_get_binary(t, &p, &n));
    FZ_OK(cn_put_binary(b, p, n));
    break;
  case CN_T_PID:
  case CN_T_REF:
    w->has_ident = 1;
    if (!fz_node_ok(t)) {
      FZ_OK(cn_put_term(b, t));
    } else if (ty == CN_T_PID) {
      cn_pid pid;
      FZ_OK(cn_get_pid(t, &pid));
      FZ_OK(cn_put_pid(b, &pid));
    } else {
      cn_ref ref;
      FZ_OK(cn_get_ref(t, &ref));
      FZ_OK(cn_put_ref(b, &ref));
    }
    break;
  case CN_T_PORT:
    w->has_ident = 1;
    FZ_OK(cn_put_term(b, t));
    break;
  case CN_T_FUN:
  case CN_T_BITSTRING:
    FZ_OK(cn_put_term(b, t));
    break;
  case CN_T_NIL:
    FZ_OK(cn_iter_init(&it, t, &n));
    FZ_CHECK(n == 0 && !cn_iter_next(&it, &e));
    FZ_OK(cn_put_nil(b));
    break;
  case CN_T_TUPLE: {
    const char *at;
    FZ_OK(cn_iter_init(&it, t, &n));
    FZ_CHECK(n <= UINT32_MAX);
    FZ_OK(cn_put_tuple(b, (uint32_t)n));
    /* The elements tile the tuple's bytes after its header. */
    at = t.ptr + ((unsigned char)t.ptr[0] == 104 ? 2 : 5);
    for (k = 0; cn_iter_next(&it, &e); k++) {
      FZ_CHECK(e.ptr == at);
      at += e.len;
      rebuild(b, e, split, w, depth + 1);
    }
    FZ_CHECK(k == n && at == t.ptr + t.len);
    FZ_CHECK(!cn_iter_next(&it, &e));
    break;
  }
  case CN_T_MAP: {
    cn_term *kv;
    const char *at = t.ptr + 5;
    size_t pairs;
    int reverse;
    w->has_map = 1;
    FZ_OK(cn_iter_init(&it, t, &n));
    FZ_CHECK(n % 2 == 0 && n / 2 <= UINT32_MAX);
    pairs = n / 2;
    kv = malloc((n ? n : 1) * sizeof *kv);
    FZ_CHECK(kv != NULL);
    for (k = 0; cn_iter_next(&it, &e); k++) {
      FZ_CHECK(k < n && e.ptr == at);
      at += e.len;
      kv[k] = e;
    }
    FZ_CHECK(k == n && at == t.ptr + t.len);
    /* Reordering pairs keeps the value only when no key repeats. */
    reverse = !map_may_repeat(kv, pairs);
    if (!reverse)
      w->maybe_dups = 1;
    reverse = reverse && split;
    FZ_OK(cn_put_map(b, (uint32_t)pairs));
    for (k = 0; k < pairs; k++) {
      size_t j = reverse ? pairs - 1 - k : k;
      rebuild(b, kv[2 * j], split, w, depth + 1);
      rebuild(b, kv[2 * j + 1], split, w, depth + 1);
    }
    free(kv);
    break;
  }
  case CN_T_LIST: {
    size_t count;
    FZ_OK(cn_iter_init(&it, t, &count));
    FZ_CHECK(count > 0 && count <= UINT32_MAX);
    if (!split)
      FZ_OK(cn_put_list(b, (uint32_t)count));
    for (k = 0; cn_iter_next(&it, &e); k++) {
      if (split)
        FZ_OK(cn_put_list(b, 1));
      rebuild(b, e, split, w, depth + 1);
    }
    FZ_CHECK(k == count && !cn_iter_next(&it, &e));
    /* The tail of an improper list sits at the list's own depth. */
    FZ_CHECK(it.tail.len > 0 && cn_term_typeof(it.tail) != CN_T_LIST);
    if (cn_term_typeof(it.tail) == CN_T_NIL)
      FZ_OK(cn_put_nil(b));
    else
      rebuild(b, it.tail, split, w, depth + 1);
    break;
  }
  default:
    FZ_CHECK(!"a validated term of no known type");
  }
}

/* Prints t into a buffer over a heap block of cap bytes (exactly that
 * size, so AddressSanitizer catches a write past it) that already holds a
 * prefix, and checks that the text after the prefix is want. */
static void print_into(cn_term t, size_t cap, const cn_buf *want) {
  static const char prefix[] = "log: ";
  size_t plen = sizeof prefix - 1;
  char *storage = malloc(cap ? cap : 1);
  cn_buf b;

  FZ_CHECK(storage != NULL);
  cn_buf_init_with(&b, storage, cap);
  FZ_OK(cn_buf_append(&b, prefix, plen));
  FZ_OK(cn_term_print(t, &b));
  FZ_CHECK(b.len == plen + want->len);
  FZ_CHECK(memcmp(b.data, prefix, plen) == 0);
  FZ_CHECK(memcmp(b.data + plen, want->data, want->len) == 0);
  FZ_CHECK(b.data[b.len] == '\0');
  /* Text and NUL fitted: the buffer must not have left the storage. */
  if (plen + want->len + 1 <= cap)
    FZ_CHECK(b.data == storage && !b.on_heap);
  cn_buf_free(&b);
  free(storage);
}

/* Prints t and checks the text; returns it in text (the caller frees).
 * With storage >= 0, also prints t into caller storage: once into
 * exactly enough for the text and its NUL, and once into the amount
 * storage picks (none, one byte, half, or one byte short of the NUL),
 * each time after a prefix; the text must be the same every time. */
static void print_checked(cn_term t, const walk *w, cn_buf *text, int storage) {
  size_t n;

  cn_buf_init(text);
  FZ_OK(cn_term_print(t, text));
  FZ_CHECK(text->len > 0 && text->data[text->len] == '\0');
  FZ_CHECK(fz_utf8_ok((const unsigned char *)text->data, text->len));
  if (!w->has_ident)
    FZ_CHECK(strlen(text->data) == text->len);
  if (storage < 0)
    return;
  n = 5 + text->len; /* the prefix print_into writes, and the text */
  print_into(t, n + 1, text);
  switch (storage % 4) {
  case 0:
    print_into(t, 0, text);
    break;
  case 1:
    print_into(t, 1, text);
    break;
  case 2:
    print_into(t, n / 2, text);
    break;
  default:
    print_into(t, n, text);
    break;
  }
}

/* True when the text holds an octal escape such as '\000' (what the
 * printer writes for control characters in atoms).  Erlang reads up to
 * three octal digits there; cn_build's syntax has only \0, one NUL, so
 * '\000' builds NUL, '0', '0': such text does not build back. */
static int has_octal_escape(const cn_buf *text) {
  size_t i;
  for (i = 0; i + 1 < text->len; i++) {
    if (text->data[i] != '\\')
      continue;
    if (text->data[i + 1] >= '0' && text->data[i + 1] <= '7')
      return 1;
    i++; /* the escaped character */
  }
  return 0;
}

/* Builds the printed text back into a term, where it is in cn_build's
 * syntax (binaries, pids, funs, bare atoms beyond ASCII and some escapes
 * are not).  Returns 1 when it built. */
static int check_build_back(cn_term t, const walk *w, const cn_buf *text) {
  cn_buf b = CN_BUF_INIT, text2;
  int rc;

  /* A '~' would be a hole that reads arguments; none are passed. */
  if (memchr(text->data, '~', text->len) != NULL || has_octal_escape(text))
    return 0;
  rc = cn_build(&b, text->data);
  FZ_CHECK(rc == 0 || rc == CN_EBADFMT);
  if (rc == 0) {
    cn_term r = cn_buf_term(&b);
    walk w2 = {0, 0, 0};
    check_valid(r);
    /* A map literal keeps the last value of a repeated key. */
    if (!w->maybe_dups) {
      FZ_CHECK(cn_term_equal(t, r) && cn_term_compare(t, r) == 0);
      FZ_CHECK(cn_term_hash(t) == cn_term_hash(r));
      print_checked(r, &w2, &text2, -1);
      FZ_CHECK(text2.len == text->len &&
               memcmp(text2.data, text->data, text2.len) == 0);
      cn_buf_free(&text2);
    }
  } else {
    FZ_CHECK(b.len == 0);
  }
  cn_buf_free(&b);
  return rc == 0;
}

/* Matches t against the pattern pat (a printed term), where it parses. */
static int match_text(cn_term t, const cn_buf *pat) {
  if (memchr(pat->data, '~', pat->len) != NULL || has_octal_escape(pat))
    return CN_EBADFMT;
  return cn_match(t, pat->data);
}

/* Every hole against t, each checked against its reader. */
static void check_match(cn_term t, const walk *w, const cn_buf *text,
                        int text_builds) {
  cn_term_type ty = cn_term_typeof(t);
  cn_term x = {NULL, 0}, y = {NULL, 0}, e;
  int64_t i, i2;
  uint64_t u, u2;
  double d, d2;
  const char *p, *p2;
  size_t n, n2, count = 0;
  char a[256], a2[256];
  cn_iter it;
  int rc;

  FZ_OK(cn_match(t, "~t", &x));
  FZ_CHECK(x.ptr == t.ptr && x.len == t.len);
  FZ_OK(cn_match(t, "_"));

  rc = cn_match(t, "~i", &i);
  FZ_CHECK(rc == (cn_get_int64(t, &i2) == 0 ? 0 : CN_ENOMATCH));
  if (rc == 0)
    FZ_CHECK(i == i2);
  rc = cn_match(t, "~u", &u);
  FZ_CHECK(rc == (cn_get_uint64(t, &u2) == 0 ? 0 : CN_ENOMATCH));
  if (rc == 0)
    FZ_CHECK(u == u2);
  rc = cn_match(t, "~f", &d);
  FZ_CHECK(rc == (cn_get_double(t, &d2) == 0 ? 0 : CN_ENOMATCH));
  if (rc == 0)
    FZ_CHECK(memcmp(&d, &d2, sizeof d) == 0);
  rc = cn_match(t, "~b", &p, &n);
  FZ_CHECK(rc == (cn_get_binary(t, &p2, &n2) == 0 ? 0 : CN_ENOMATCH));
  if (rc == 0)
    FZ_CHECK(p == p2 && n == n2);
  rc = cn_match(t, "~a", a, sizeof a);
  FZ_CHECK(rc == cn_get_atom(t, a2, sizeof a2));
  if (rc == 0) {
    FZ_CHECK(strcmp(a, a2) == 0);
    /* A name cut short by a NUL names another atom. */
    if (cn_is_atom(t, a))
      FZ_OK(cn_match(t, "~A", a));
    else
      FZ_CHECK(cn_match(t, "~A", a) == CN_ENOMATCH);
  }
  if ((ty != CN_T_PID && ty != CN_T_REF) || fz_node_ok(t)) {
    cn_pid pid, pid2;
    cn_ref ref, ref2;
    rc = cn_match(t, "~p", &pid);
    FZ_CHECK(rc == cn_get_pid(t, &pid2));
    if (rc == 0)
      FZ_CHECK(cn_pid_equal(&pid, &pid2));
    rc = cn_match(t, "~r", &ref);
    FZ_CHECK(rc == cn_get_ref(t, &ref2));
    if (rc == 0)
      FZ_CHECK(cn_ref_equal(&ref, &ref2));
  }

  if (cn_iter_init(&it, t, &count) != 0)
    count = 0;
  FZ_CHECK(cn_match(t, "{}") ==
           (ty == CN_T_TUPLE && count == 0 ? 0 : CN_ENOMATCH));
  FZ_CHECK(cn_match(t, "[]") == (ty == CN_T_NIL ? 0 : CN_ENOMATCH));
  FZ_CHECK(cn_match(t, "#{}") == (ty == CN_T_MAP ? 0 : CN_ENOMATCH));
  FZ_CHECK(cn_match(t, "[_ | _]") == (ty == CN_T_LIST ? 0 : CN_ENOMATCH));

  rc = cn_match(t, "{~t, ~t}", &x, &y);
  FZ_CHECK(rc == (ty == CN_T_TUPLE && count == 2 ? 0 : CN_ENOMATCH));
  if (rc == 0) {
    FZ_CHECK(cn_iter_next(&it, &e) && e.ptr == x.ptr && e.len == x.len);
    FZ_CHECK(cn_iter_next(&it, &e) && e.ptr == y.ptr && e.len == y.len);
  }
  rc = cn_match(t, "{ok, _}");
  FZ_CHECK(rc == 0 || rc == CN_ENOMATCH);
  if (rc == 0)
    FZ_CHECK(ty == CN_T_TUPLE && count == 2);

  /* [H | T]: H is the first element; T, when it has a view, makes the
   * same list again with H in front. */
  rc = cn_match(t, "[~t | ~t]", &x, &y);
  if (ty != CN_T_LIST) {
    FZ_CHECK(rc == CN_ENOMATCH);
  } else {
    FZ_CHECK(rc == 0 || rc == CN_ENOTSUP);
    if (rc == 0) {
      cn_buf c = CN_BUF_INIT;
      check_valid(x);
      check_valid(y);
      FZ_OK(cn_iter_init(&it, t, NULL));
      FZ_CHECK(cn_iter_next(&it, &e) && cn_term_equal(e, x));
      FZ_OK(cn_build(&c, "[~t | ~t]", x, y));
      FZ_CHECK(cn_term_equal(cn_buf_term(&c), t));
      FZ_CHECK(cn_term_hash(cn_buf_term(&c)) == cn_term_hash(t));
      cn_buf_free(&c);
    }
  }
  rc = cn_match(t, "[_, _ | _]");
  FZ_CHECK(rc == (ty == CN_T_LIST && count >= 2 ? 0 : CN_ENOMATCH));

  /* A map pattern with the map's first key finds that key. */
  if (ty == CN_T_MAP && count > 0) {
    cn_term k;
    FZ_OK(cn_iter_init(&it, t, NULL));
    FZ_CHECK(cn_iter_next(&it, &k) && cn_iter_next(&it, &e));
    if (cn_get_atom(k, a, sizeof a) == 0 && cn_is_atom(k, a)) {
      rc = cn_match(t, "#{~A => ~t}", a, &x);
      FZ_CHECK(rc == 0);
      if (!w->maybe_dups)
        FZ_CHECK(cn_term_equal(x, e));
    }
  }

  /* The printed text, where it is in the syntax (it builds), matches as a
   * pattern.  Where it is not, the matcher may stop at the first
   * mismatch before it sees the part it cannot parse. */
  rc = match_text(t, text);
  if (text_builds && !w->maybe_dups)
    FZ_CHECK(rc == 0);
  else
    FZ_CHECK(rc == 0 || rc == CN_EBADFMT || rc == CN_ENOMATCH ||
             rc == CN_ENOTSUP);
}

/* Compares a and b every way there is; r is a rebuilt copy of a. */
static void check_order(cn_term a, cn_term b, cn_term r) {
  cn_term empty = {NULL, 0};
  int ab = cn_term_compare(a, b), ba = cn_term_compare(b, a);
  bool eq = cn_term_equal(a, b);

  FZ_CHECK(sign(ab) == -sign(ba));
  FZ_CHECK(eq == (ab == 0));
  FZ_CHECK(eq == cn_term_equal(b, a));
  if (eq)
    FZ_CHECK(cn_term_hash(a) == cn_term_hash(b));
  FZ_CHECK(sign(cn_term_compare(r, b)) == sign(ab));
  FZ_CHECK(cn_term_compare(empty, a) < 0 && cn_term_compare(a, empty) > 0);
}

/* Everything on one accepted term a; b is the other term of the input
 * (or a itself), btext its text when it is another term (else NULL), and
 * storage picks what print_checked prints into. */
static void exercise(cn_term a, cn_term b, const cn_buf *btext, int storage) {
  cn_buf r1 = CN_BUF_INIT, r2 = CN_BUF_INIT, text, t1, t2;
  walk w = {0, 0, 0}, w2 = {0, 0, 0};
  uint64_t h = cn_term_hash(a);

  FZ_CHECK(cn_term_equal(a, a) && cn_term_compare(a, a) == 0);
  FZ_CHECK(cn_term_hash(a) == h);

  rebuild(&r1, a, 0, &w, 0);
  rebuild(&r2, a, 1, &w2, 0);
  FZ_CHECK(r1.err == 0 && r2.err == 0);
  check_valid(cn_buf_term(&r1));
  check_valid(cn_buf_term(&r2));
  FZ_CHECK(cn_term_equal(a, cn_buf_term(&r1)));
  FZ_CHECK(cn_term_equal(cn_buf_term(&r1), a));
  FZ_CHECK(cn_term_equal(a, cn_buf_term(&r2)));
  FZ_CHECK(cn_term_compare(a, cn_buf_term(&r1)) == 0);
  FZ_CHECK(cn_term_compare(cn_buf_term(&r2), a) == 0);
  FZ_CHECK(cn_term_hash(cn_buf_term(&r1)) == h);
  FZ_CHECK(cn_term_hash(cn_buf_term(&r2)) == h);

  print_checked(a, &w, &text, storage);
  print_checked(cn_buf_term(&r1), &w, &t1, -1);
  print_checked(cn_buf_term(&r2), &w, &t2, -1);
  FZ_CHECK(t1.len == text.len && memcmp(t1.data, text.data, t1.len) == 0);
  FZ_CHECK(t2.len == text.len && memcmp(t2.data, text.data, t2.len) == 0);

  check_order(a, b, cn_buf_term(&r1));
  check_order(a, b, cn_buf_term(&r2));
  check_match(a, &w, &text, check_build_back(a, &w, &text));

  /* The other term's text as a pattern: a literal without maps matches
   * exactly the terms equal to it. */
  if (btext != NULL && memchr(btext->data, '~', btext->len) == NULL &&
      !has_octal_escape(btext)) {
    int rc = cn_match(a, btext->data);
    FZ_CHECK(rc == 0 || rc == CN_ENOMATCH || rc == CN_EBADFMT ||
             rc == CN_ENOTSUP);
    if (rc == 0 && !w.has_map)
      FZ_CHECK(cn_term_equal(a, b));
  }

  cn_buf_free(&text);
  cn_buf_free(&t1);
  cn_buf_free(&t2);
  cn_buf_free(&r1);
  cn_buf_free(&r2);
}

/* Validates the term at *off with default limits and with tight ones, and
 * checks that the two agree.  Returns the default result. */
static int validate_both(const char *buf, size_t len, size_t *off) {
  static const cn_term_limits tight = {8, 64};
  size_t o1 = *off, o2 = *off;
  int rc = cn_term_validate(buf, len, &o1, NULL);
  int rc2 = cn_term_validate(buf, len, &o2, &tight);

  FZ_CHECK(rc == 0 || rc == CN_EBADTERM || rc == CN_ETOODEEP ||
           rc == CN_ETOOBIG);
  if (rc2 == 0)
    FZ_CHECK(rc == 0 && o1 == o2);
  if (rc == 0 && rc2 != 0)
    FZ_CHECK(rc2 == CN_ETOODEEP || rc2 == CN_ETOOBIG);
  if (rc != 0)
    FZ_CHECK(o1 == *off);
  if (rc == 0) {
    /* A size limit of exactly the term's length accepts it; one less
     * refuses it as too big, since its bytes are all there. */
    size_t tlen = o1 - *off, o3 = *off;
    cn_term_limits exact = {0, tlen};
    FZ_OK(cn_term_validate(buf, len, &o3, &exact));
    FZ_CHECK(o3 == o1);
    if (tlen > 1) {
      exact.max_size = tlen - 1;
      o3 = *off;
      FZ_CHECK(cn_term_validate(buf, len, &o3, &exact) == CN_ETOOBIG);
    }
    *off = o1;
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  size_t off = 0, start_a, start_b, start_c;
  cn_term a, b, whole;
  int rc;

  /* The whole input as one external-format term. */
  rc = cn_term_from_etf(buf, size, NULL, &whole);
  FZ_CHECK(rc == 0 || rc == CN_EBADTERM || rc == CN_ENOTSUP ||
           rc == CN_ETOODEEP || rc == CN_ETOOBIG);
  if (rc == 0)
    FZ_CHECK(whole.ptr == buf + 1 && whole.len == size - 1);

  if (size == 0)
    return 0;
  if (data[0] == 131)
    off = 1;
  start_a = off;
  if (off >= size || validate_both(buf, size, &off) != 0)
    return 0;
  a.ptr = buf + start_a;
  a.len = off - start_a;

  b = a;
  if (off < size && data[off] == 131)
    off++;
  start_b = off;
  if (off < size && validate_both(buf, size, &off) == 0) {
    b.ptr = buf + start_b;
    b.len = off - start_b;
  }

  /* A third term, when there is one, for the transitivity of the order:
   * the comparisons must fit one total order. */
  if (off < size && data[off] == 131)
    off++;
  start_c = off;
  if (b.ptr != a.ptr && off < size && validate_both(buf, size, &off) == 0) {
    cn_term c = {buf + start_c, off - start_c};
    int ab = sign(cn_term_compare(a, b)), bc = sign(cn_term_compare(b, c));
    int ac = sign(cn_term_compare(a, c));
    FZ_CHECK(sign(cn_term_compare(c, a)) == -ac);
    if (ab == bc)
      FZ_CHECK(ac == ab);
    if (ab == 0)
      FZ_CHECK(ac == bc);
    if (bc == 0)
      FZ_CHECK(ac == ab);
    if (ac == 0)
      FZ_CHECK(cn_term_hash(a) == cn_term_hash(c));
  }

  if (b.ptr == a.ptr) {
    exercise(a, a, NULL, data[size - 1]);
  } else {
    cn_buf btext = CN_BUF_INIT;
    FZ_OK(cn_term_print(b, &btext));
    exercise(a, b, &btext, data[size - 1]);
    exercise(b, a, NULL, data[size - 1] + 1);
    cn_buf_free(&btext);
  }
  return 0;
}
