/* term_insn: instruction counts of the term layer's hot calls, for
 * changes that must not make them slower.  Not part of `make bench`
 * (run.sh runs only bench_cnode); run it under callgrind:
 *
 *   make -j2 all && sh bench/term_insn.sh build/release
 *
 * Each op_* function runs one kind of call over a fixed set of terms
 * (small and large integers, bignums, both float encodings, atoms in all
 * four encodings, binaries, pids and references old and new, strings,
 * nested tuples, lists and maps), ROUNDS times; callgrind counts the
 * instructions inside each.  Instruction counts, unlike times, do not
 * depend on the machine's load.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode.h"

#define ROUNDS 200
#define MAXT 64

static cn_term terms[MAXT], copies[MAXT];
static size_t nterms;
static cn_pid pid;
static cn_ref ref;
static volatile uint64_t sink;

static void die(const char *what) {
  fprintf(stderr, "term_insn: %s\n", what);
  exit(1);
}

/* Keeps a term and a copy of it at another address. */
static void keep(const char *p, size_t n) {
  char *a = malloc(n), *b = malloc(n);
  if (a == NULL || b == NULL || nterms == MAXT)
    die("setup");
  memcpy(a, p, n);
  memcpy(b, p, n);
  terms[nterms] = (cn_term){a, n};
  copies[nterms++] = (cn_term){b, n};
}

static void add(const char *fmt, ...) {
  cn_buf b;
  va_list ap;
  cn_buf_init(&b);
  va_start(ap, fmt);
  if (cn_vbuild(&b, fmt, ap) != 0)
    die(fmt);
  va_end(ap);
  keep(b.data, b.len);
  cn_buf_free(&b);
}

static void setup(void) {
  static const char old_float[] = "c3.14000000000000012434e+00\0\0\0\0\0";
  static const char latin1_atom[] = "d\0\5hello";
  static const char small_latin1[] = "s\4caf\xe9";
  static const char utf8_atom[] = "v\0\6caf\xc3\xa9s";
  static const char old_pid[] = "gs\6a@host\0\0\0\7\0\0\0\0\1";
  static const char old_ref[] = "r\0\3s\6a@host\1\0\0\0\1\0\0\0\2\0\0\0\3";
  static const char list_ext[] = "l\0\0\0\3a\1a\2a\3j"; /* [1,2,3] */
  static const char big_zero[] = "n\2\1\0\0";           /* -0, padded */
  uint32_t node;

  if (cn_node_intern("a@host", 6, &node) != 0)
    die("intern");
  pid = (cn_pid){node, 42, 1, 3};
  ref = (cn_ref){node, 3, 3, {1, 2, 3}};
  add("42");
  add("-100000");
  add("1099511627776");
  add("1267650600228229401496703205376");
  add("-1267650600228229401496703205376");
  add("3.14");
  keep(old_float, 32);
  add("ok");
  keep(latin1_atom, 8);
  keep(small_latin1, 6);
  keep(utf8_atom, 9);
  add("\"hello world, a binary of some length\"");
  add("~p", &pid);
  add("~r", &ref);
  keep(old_pid, sizeof old_pid - 1);
  keep(old_ref, sizeof old_ref - 1);
  add("[1, 2, 3]");
  keep(list_ext, sizeof list_ext - 1);
  keep(big_zero, sizeof big_zero - 1);
  add("~c", "a charlist");
  add("[a, b, c | d]");
  add("{'$gen_call', {~p, [alias | ~r]}, {put, key, \"value\"}}", &pid, &ref);
  add("#{a => 1, b => \"x\", c => {1, 2}, 1.5 => [x, y]}");
  add("#{k1 => 1, k2 => 2, k3 => 3, k4 => 4, k5 => 5, k6 => 6, k7 => 7, "
      "k8 => 8, k9 => 9, k10 => 10, k11 => 11, k12 => 12, k13 => 13, "
      "k14 => 14, k15 => 15, k16 => 16, k17 => 17, k18 => 18}");
  add("{ok, [{a, 1}, {b, 2.5}, {c, \"str\"}, {d, [1, 2, 3]}], #{}, {}, []}");
  add("[[[[[[[[[[[[nested]]]]]]]]]]]]");
  add("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, "
      "19, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310]");
}

__attribute__((noinline)) static void op_validate(void) {
  size_t i, off;
  for (i = 0; i < nterms; i++) {
    off = 0;
    if (cn_term_validate(terms[i].ptr, terms[i].len, &off, NULL) != 0)
      die("validate");
  }
}

__attribute__((noinline)) static void op_equal(void) {
  size_t i;
  for (i = 0; i < nterms; i++)
    sink += cn_term_equal(terms[i], copies[i]);
  /* Other encodings of one value: no memcmp shortcut. */
  sink += cn_term_equal(terms[16], terms[17]); /* string, list */
  sink += cn_term_equal(terms[7], terms[8]);   /* atom encodings */
  sink += cn_term_equal(terms[12], terms[14]); /* pid encodings */
}

__attribute__((noinline)) static void op_compare(void) {
  size_t i, j;
  for (i = 0; i < nterms; i++)
    for (j = 0; j < nterms; j++)
      sink += (uint64_t)cn_term_compare(terms[i], copies[j]);
}

__attribute__((noinline)) static void op_hash(void) {
  size_t i;
  for (i = 0; i < nterms; i++)
    sink += cn_term_hash(terms[i]);
}

__attribute__((noinline)) static void op_print(void) {
  char storage[1024];
  cn_buf b;
  size_t i;
  cn_buf_init_with(&b, storage, sizeof storage);
  for (i = 0; i < nterms; i++) {
    cn_buf_reset(&b);
    if (cn_term_print(terms[i], &b) != 0)
      die("print");
  }
  cn_buf_free(&b);
}

__attribute__((noinline)) static void op_build(void) {
  char storage[1024];
  cn_buf b;
  cn_buf_init_with(&b, storage, sizeof storage);
  cn_build(&b, "{'$gen_call', {~p, [alias | ~r]}, {put, ~a, ~s}}", &pid, &ref,
           "key", "value");
  cn_buf_reset(&b);
  cn_build(&b, "{ok, ~i}", (int64_t)12345);
  cn_buf_reset(&b);
  cn_build(&b, "{get, ~i}", (int64_t)7);
  cn_buf_reset(&b);
  cn_build(&b, "#{b => ~i, a => ~f, c => [1, 2, 3]}", (int64_t)-5, 2.5);
  cn_buf_reset(&b);
  cn_build(&b, "[~t, 'quoted atom', \"bin\", 1267650600228229401496703205376]",
           terms[21]);
  sink += b.len;
  cn_buf_free(&b);
}

__attribute__((noinline)) static int op_match(void) {
  int rc = 0;
  cn_pid p;
  cn_term t, tag;
  char a[32];
  const char *bin;
  size_t n;
  int64_t i;

  rc |= cn_match(terms[21], "{'$gen_call', {~p, ~t}, {put, ~a, ~b}}", &p, &tag,
                 a, sizeof a, &bin, &n);
  rc |= cn_match(terms[21], "{'$gen_call', {_, [alias | ~t]}, _}", &t);
  rc |= cn_match(terms[0], "~i", &i);
  rc |= cn_match(terms[22], "#{a => ~i, c => {1, ~t}}", &i, &t);
  rc |= cn_match(terms[16], "[1, ~i | _]", &i);
  rc |= cn_match(terms[24], "{ok, [~t | _], #{}, {}, []}", &t);
  rc |= cn_match(terms[3], "1267650600228229401496703205376");
  return rc;
}

/* The term layer's share of one local_call (bench_cnode): the request
 * and the reply are each built, validated and matched. */
__attribute__((noinline)) static int op_call(void) {
  char storage[64];
  cn_buf b;
  size_t off = 0;
  int64_t i = 0;
  int rc = 0;

  cn_buf_init_with(&b, storage, sizeof storage);
  rc |= cn_build(&b, "{get, ~i}", (int64_t)300);
  rc |= cn_term_validate(b.data, b.len, &off, NULL);
  rc |= cn_match(cn_buf_term(&b), "{get, ~i}", &i);
  cn_buf_reset(&b);
  off = 0;
  rc |= cn_build(&b, "{ok, ~i}", i);
  rc |= cn_term_validate(b.data, b.len, &off, NULL);
  rc |= cn_match(cn_buf_term(&b), "{ok, ~i}", &i);
  cn_buf_free(&b);
  return rc;
}

__attribute__((noinline)) static int op_get(void) {
  int rc = 0;
  int64_t i;
  uint64_t u;
  double d;
  char a[64];
  const char *bin;
  size_t n, k;
  cn_pid p;
  cn_ref r;
  static const char *const names[] = {"ok", "hello", "caf\xc3\xa9",
                                      "caf\xc3\xa9s"};

  for (k = 0; k < 3; k++) {
    rc |= cn_get_int64(terms[k], &i);
    rc |= k != 1 ? cn_get_uint64(terms[k], &u) : 0; /* 1 is negative */
  }
  rc |= cn_get_double(terms[5], &d);
  rc |= cn_get_double(terms[6], &d);
  for (k = 7; k <= 10; k++) {
    rc |= cn_get_atom(terms[k], a, sizeof a);
    rc |= cn_get_atom_n(terms[k], a, sizeof a, &n);
    rc |= !cn_is_atom(terms[k], names[k - 7]);
  }
  rc |= cn_get_binary(terms[11], &bin, &n);
  rc |= cn_get_pid(terms[12], &p);
  rc |= cn_get_ref(terms[13], &r);
  rc |= cn_get_pid(terms[14], &p);
  rc |= cn_get_ref(terms[15], &r);
  return rc;
}

int main(void) {
  int k;
  setup();
  for (k = 0; k < ROUNDS; k++) {
    op_validate();
    op_equal();
    op_compare();
    op_hash();
    op_print();
    op_build();
    if (op_match() != 0 || op_get() != 0 || op_call() != 0)
      die("a match or a read failed");
  }
  printf("%zu terms, %d rounds, sink %llu\n", nterms, ROUNDS,
         (unsigned long long)(sink & 1));
  return 0;
}
