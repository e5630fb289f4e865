/* Helpers shared by the libFuzzer targets in this folder (each target is
 * one .c file; see mk/fuzz.mk).  Header-only, so that every target stays
 * a single translation unit next to the library it links.
 *
 * A failed invariant aborts: libFuzzer treats the abort as a crash, saves
 * the input that caused it and stops, which is exactly what a broken
 * invariant deserves.  Library code itself never aborts, however bad its input;
 * only these harnesses do.
 */
#ifndef CN_FUZZ_H
#define CN_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cnode/term.h>

/* The entry point libFuzzer calls once per input.  Declared here because
 * the build uses -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks an invariant; on failure prints where and why, then aborts. */
#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* Aborts when a library call that cannot fail on valid arguments (such as
 * appending to a buffer while memory lasts) fails anyway. */
#define FZ_OK(expr) FZ_CHECK((expr) == 0)

/* A small deterministic generator (xorshift64), seeded from the input, so
 * that every choice a target makes is a function of the input alone. */
static inline uint32_t fz_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (uint32_t)(*s >> 32);
}

/* Copies n bytes into a heap block of exactly that size, so that
 * AddressSanitizer sees any read past the end as an overflow.  (libFuzzer
 * already hands its input over this way; slices of it need a copy.)
 * Returns NULL only for n == 0; aborts when memory runs out. */
static inline char *fz_exact(const void *p, size_t n) {
  char *c;
  if (n == 0)
    return NULL;
  c = malloc(n);
  FZ_CHECK(c != NULL);
  memcpy(c, p, n);
  return c;
}

/* True when s[0 .. n) is valid UTF-8 (no overlong forms, surrogates or
 * code points above U+10FFFF).  Written independently of the library's
 * own check, so that the two can be compared. */
static inline int fz_utf8_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], len, k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF)
      len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      len = 4, cp = c & 0x07;
    else
      return 0;
    if (n - i < len)
      return 0;
    for (k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += len;
  }
  return 1;
}

/* The UTF-8 name of an atom term and its length (names may hold U+0000,
 * so strlen cannot tell), by cn_get_atom_n, whose CN_ENOSPC boundary is
 * checked on the way.  Returns 0, or CN_ENOMATCH when t is not an atom.
 * buf must hold 1024 bytes (an atom has at most 255 characters of at most
 * 4 bytes). */
static inline int fz_atom_name(cn_term t, char buf[1024], size_t *len) {
  int rc = cn_get_atom_n(t, buf, 1024, len);
  if (rc != 0)
    return rc;
  FZ_CHECK(*len < 1024 && buf[*len] == '\0');
  FZ_CHECK(cn_get_atom_n(t, buf, *len, NULL) == CN_ENOSPC);
  FZ_OK(cn_get_atom_n(t, buf, *len + 1, NULL));
  return 0;
}

/* The node atom inside a pid, port or reference term (validated), as a
 * term of its own.  Returns 0, or CN_ENOMATCH for other terms. */
static inline int fz_node_atom(cn_term t, cn_term *atom) {
  size_t skip, off;
  if (t.len < 2)
    return CN_ENOMATCH;
  switch ((unsigned char)t.ptr[0]) {
  case 88:  /* NEW_PID_EXT */
  case 89:  /* NEW_PORT_EXT */
  case 101: /* REFERENCE_EXT */
  case 102: /* PORT_EXT */
  case 103: /* PID_EXT */
  case 120: /* V4_PORT_EXT */
    skip = 1;
    break;
  case 90:  /* NEWER_REFERENCE_EXT */
  case 114: /* NEW_REFERENCE_EXT */
    skip = 3;
    break;
  default:
    return CN_ENOMATCH;
  }
  off = skip;
  FZ_OK(cn_term_validate(t.ptr, t.len, &off, NULL));
  atom->ptr = t.ptr + skip;
  atom->len = off - skip;
  return 0;
}

/* Decoding a pid or reference interns its node's name in a process-wide,
 * append-only table of at most CN_MAX_NODES names.  Fed millions of
 * random names, that table would fill up, and from then on the same input
 * would give CN_ELIMIT instead of a pid: results would depend on the
 * inputs run before.  So the targets decode (and intern) only pids and
 * references of a small, fixed set of node names, and treat the others
 * as opaque.  The set is every name of at most 4 characters from "abh@",
 * which lets the fuzzer vary names, plus the names the seed corpora use:
 * at most 345 names in all, whatever the inputs. */
static inline int fz_node_ok(cn_term t) {
  static const char *const known[] = {"nonode@nohost", "real@127.0.0.1",
                                      "fake@127.0.0.1", "cnode@127.0.0.1",
                                      "fake2@127.0.0.1"};
  char name[1024];
  cn_term atom;
  size_t n, i;

  if (fz_node_atom(t, &atom) != 0 || fz_atom_name(atom, name, &n) != 0)
    return 0;
  for (i = 0; i < sizeof known / sizeof *known; i++)
    if (n == strlen(known[i]) && memcmp(name, known[i], n) == 0)
      return 1;
  if (n == 0 || n > 4)
    return 0;
  for (i = 0; i < n; i++)
    if (strchr("abh@", name[i]) == NULL || name[i] == '\0')
      return 0;
  return 1;
}

#endif /* CN_FUZZ_H */
