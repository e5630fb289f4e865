/* The term codec against ei as an independent oracle (issue 8).
 *
 * What cn_build and cn_put_* encode must decode through ei_decode_* (or
 * ei_skip_term / ei_s_print_term) to the value that went in, using up
 * exactly the bytes we wrote; and what ei encodes must read back through
 * cn_get_*.  Both directions cover every boundary of the integer
 * encodings (including the 28-to-31-bit range, where ei's own encoder
 * picks a different form than term_to_binary), bignums, -0.0, atoms in
 * UTF-8 and with a NUL byte, long charlists, pids, refs and nested
 * containers.
 *
 * ei's decoders trust their input, so every buffer they see here is one
 * that cn_term_validate accepted first, as in the library.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ei.h>
#include <math.h>

#include "helpers.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Asserts that the bytes of t are one term by our validator and by ei. */
static void valid_both(cn_term t) {
  size_t off = 0;
  int i = 0;
  assert_int_equal(cn_term_validate(t.ptr, t.len, &off, NULL), 0);
  assert_int_equal(off, t.len);
  assert_int_equal(ei_skip_term(t.ptr, &i), 0);
  assert_int_equal((size_t)i, t.len);
}

/* A view of bytes ei wrote, after our validator has accepted them. */
static cn_term from_ei(const char *buf, int len) {
  cn_term t = {buf, (size_t)len};
  size_t off = 0;
  assert_int_equal(cn_term_validate(buf, (size_t)len, &off, NULL), 0);
  assert_int_equal(off, (size_t)len);
  return t;
}

static const int64_t ints[] = {0,
                               1,
                               255,
                               256,
                               -1,
                               -256,
                               (1 << 27) - 1,
                               1 << 27,
                               -(1 << 27),
                               -(1 << 27) - 1,
                               INT32_MAX,
                               (int64_t)INT32_MAX + 1,
                               INT32_MIN,
                               (int64_t)INT32_MIN - 1,
                               (int64_t)1 << 40,
                               -((int64_t)1 << 40),
                               INT64_MAX,
                               INT64_MIN + 1,
                               INT64_MIN};

static void test_ints(void **state) {
  cn_buf b = CN_BUF_INIT;
  size_t k;
  (void)state;

  for (k = 0; k < COUNT(ints); k++) {
    int64_t v = ints[k], back;
    long long got;
    int i = 0, pass;
    for (pass = 0; pass < 2; pass++) {
      cn_term t;
      cn_buf_reset(&b);
      if (pass == 0)
        assert_int_equal(cn_put_int(&b, v), 0);
      else
        assert_int_equal(cn_build(&b, "~i", v), 0);
      t = cn_buf_term(&b);
      valid_both(t);
      i = 0;
      assert_int_equal(ei_decode_longlong(t.ptr, &i, &got), 0);
      assert_true(got == v);
      assert_int_equal((size_t)i, t.len);
      /* term_to_binary's forms: ei would write SMALL_BIG from 2^27 on. */
      if (v >= 0 && v <= 255)
        assert_int_equal((unsigned char)t.ptr[0], 97);
      else if (v >= INT32_MIN && v <= INT32_MAX)
        assert_int_equal((unsigned char)t.ptr[0], 98);
      else
        assert_int_equal((unsigned char)t.ptr[0], 110);
      assert_int_equal(cn_get_int64(t, &back), 0);
      assert_true(back == v);
    }
  }
  cn_buf_free(&b);
}

static void test_uints(void **state) {
  static const uint64_t u[] = {0,
                               255,
                               (uint64_t)INT32_MAX,
                               (uint64_t)INT32_MAX + 1,
                               UINT32_MAX,
                               (uint64_t)INT64_MAX,
                               (uint64_t)INT64_MAX + 1,
                               UINT64_MAX - 1,
                               UINT64_MAX};
  cn_buf b = CN_BUF_INIT;
  size_t k;
  (void)state;

  for (k = 0; k < COUNT(u); k++) {
    unsigned long long got;
    uint64_t back;
    cn_term t;
    int i = 0;
    cn_buf_reset(&b);
    assert_int_equal(cn_put_uint(&b, u[k]), 0);
    t = cn_buf_term(&b);
    valid_both(t);
    assert_int_equal(ei_decode_ulonglong(t.ptr, &i, &got), 0);
    assert_true(got == u[k]);
    assert_int_equal(cn_get_uint64(t, &back), 0);
    assert_true(back == u[k]);
  }
  /* And what ei encodes reads back, small integers and bignums alike. */
  for (k = 0; k < COUNT(ints); k++) {
    char buf[16];
    int64_t back;
    int n = 0;
    assert_int_equal(
        ei_encode_longlong(buf, &n,
                           ints[k] == INT64_MIN ? INT64_MIN + 1 : ints[k]),
        0);
    assert_int_equal(cn_get_int64(from_ei(buf, n), &back), 0);
    assert_true(back == (ints[k] == INT64_MIN ? INT64_MIN + 1 : ints[k]));
  }
  cn_buf_free(&b);
}

/* Decodes the bignum t with ei and compares it with sign and little-endian
 * magnitude bytes. */
static void big_is(cn_term t, int neg, const unsigned char *le, size_t n) {
  unsigned short digits[64] = {0};
  erlang_big big = {(unsigned)n, 0, digits}; /* ei wants the size known */
  size_t k;
  int i = 0;

  valid_both(t);
  assert_int_equal(ei_decode_big(t.ptr, &i, &big), 0);
  assert_int_equal(big.is_neg, neg);
  for (k = 0; k < n; k++)
    assert_int_equal((digits[k / 2] >> (8 * (k % 2))) & 0xFF, le[k]);
}

static void test_bignums(void **state) {
  static const unsigned char e30[] = {
      0x00, 0x00, 0x00, 0x40, 0xea, 0xed, 0x74,
      0x46, 0xd0, 0x9c, 0x2c, 0x9f, 0x0c};                        /* 10^30 */
  static const unsigned char p64[] = {0, 0, 0, 0, 0, 0, 0, 0, 1}; /* 2^64 */
  static const unsigned char m63[] = {1, 0, 0, 0, 0, 0, 0, 0x80};
  cn_buf b = CN_BUF_INIT;
  unsigned long long u;
  long long v;
  int i = 0;
  (void)state;

  big_is(T(&b, "1000000000000000000000000000000"), 0, e30, sizeof e30);
  big_is(T(&b, "-1000000000000000000000000000000"), 1, e30, sizeof e30);
  big_is(T(&b, "18446744073709551616"), 0, p64, sizeof p64);
  /* -(2^63 + 1) does not fit an int64_t: a SMALL_BIG of 8 bytes. */
  big_is(T(&b, "-9223372036854775809"), 1, m63, sizeof m63);
  /* 20 digits that fit 64 bits come out in the 64-bit form. */
  T(&b, "18446744073709551615");
  assert_int_equal(ei_decode_ulonglong(b.data, &i, &u), 0);
  assert_true(u == UINT64_MAX);
  i = 0;
  T(&b, "-00000000000000000009223372036854775808");
  assert_int_equal(ei_decode_longlong(b.data, &i, &v), 0);
  assert_true(v == INT64_MIN);
  /* A bignum -0, which erts reads as 0 and ei_decode_ulonglong refuses. */
  {
    static const char negzero[] = {110, 2, 1, 0, 0};
    uint64_t z = 1;
    int64_t zi = 1;
    i = 0;
    assert_int_equal(ei_decode_ulonglong(negzero, &i, &u), -1);
    assert_int_equal(cn_get_uint64(from_ei(negzero, sizeof negzero), &z), 0);
    assert_int_equal(cn_get_int64(from_ei(negzero, sizeof negzero), &zi), 0);
    assert_true(z == 0 && zi == 0);
  }
  /* A LARGE_BIG: 300 bytes of 0xFF is 2^2400 - 1. */
  {
    char digits[800];
    unsigned short d[150];
    erlang_big big = {300, 0, d};
    char buf[310];
    int n = 0, k;
    cn_term t;
    for (k = 0; k < 150; k++)
      d[k] = 0xFFFF;
    assert_int_equal(ei_encode_big(buf, &n, &big), 0);
    t = from_ei(buf, n);
    cn_buf_reset(&b);
    assert_int_equal(cn_term_print(t, &b), 0); /* our own decimal text */
    assert_true(b.len < sizeof digits);
    memcpy(digits, b.data, b.len);
    digits[b.len] = '\0';
    cn_buf_reset(&b);
    assert_int_equal(cn_build(&b, digits), 0);
    assert_int_equal(b.len, (size_t)n);
    assert_memory_equal(b.data, buf, (size_t)n);
  }
  cn_buf_free(&b);
}

static void test_doubles(void **state) {
  static const double d[] = {0.0,     -0.0,   1.5,      -2.25,    1e300,
                             -1e-300, 5e-324, 1.7e308,  0.1,      3.0e-3,
                             1e22,    -1e22,  2.5e-310, 123456.75};
  cn_buf b = CN_BUF_INIT;
  size_t k;
  (void)state;

  for (k = 0; k < COUNT(d); k++) {
    double got, back;
    char buf[16];
    cn_term t;
    int i = 0, n = 0;
    cn_buf_reset(&b);
    assert_int_equal(cn_put_double(&b, d[k]), 0);
    assert_int_equal(cn_build(&b, "~f", d[k]), 0);
    assert_int_equal(b.len, 18);
    assert_memory_equal(b.data, b.data + 9, 9);
    t.ptr = b.data;
    t.len = 9;
    valid_both(t);
    assert_int_equal(ei_decode_double(t.ptr, &i, &got), 0);
    assert_memory_equal(&got, &d[k], sizeof got); /* -0.0 keeps its sign */
    assert_int_equal(ei_encode_double(buf, &n, d[k]), 0);
    assert_int_equal(n, 9);
    assert_memory_equal(buf, t.ptr, 9);
    assert_int_equal(cn_get_double(from_ei(buf, n), &back), 0);
    assert_memory_equal(&back, &d[k], sizeof back);
  }
  /* Literals in a format. */
  {
    static const char *lit[] = {"1.5", "-0.0", "2.0e-3", "1.0E+10",
                                "0.30000000000000004"};
    static const double want[] = {1.5, -0.0, 2.0e-3, 1.0e10,
                                  0.30000000000000004};
    for (k = 0; k < COUNT(lit); k++) {
      double got;
      int i = 0;
      T(&b, lit[k]);
      assert_int_equal(ei_decode_double(b.data, &i, &got), 0);
      assert_memory_equal(&got, &want[k], sizeof got);
    }
  }
  cn_buf_free(&b);
}

static void test_atoms(void **state) {
  static const char *names[] = {"ok",     "",          "héllo",
                                "日本語", "$gen_call", "a b'c"};
  char big[4 * 255 + 1], buf[MAXATOMLEN_UTF8], got[4 * 255 + 1];
  cn_buf b = CN_BUF_INIT;
  erlang_char_encoding was;
  size_t k, len = 0;
  int i, n;
  (void)state;

  for (k = 0; k < COUNT(names); k++) {
    cn_term t;
    cn_buf_reset(&b);
    assert_int_equal(cn_put_atom(&b, names[k]), 0);
    t = cn_buf_term(&b);
    valid_both(t);
    i = 0;
    assert_int_equal(
        ei_decode_atom_as(t.ptr, &i, buf, sizeof buf, ERLANG_UTF8, &was, NULL),
        0);
    assert_string_equal(buf, names[k]);
    assert_int_equal((unsigned char)t.ptr[0], 119); /* SMALL_ATOM_UTF8 */
    assert_int_equal(cn_get_atom(t, got, sizeof got), 0);
    assert_string_equal(got, names[k]);
  }
  /* 255 two-byte characters: 510 bytes, so ATOM_UTF8_EXT. */
  for (k = 0; k < 255; k++)
    memcpy(big + 2 * k, "ä", 2);
  cn_buf_reset(&b);
  assert_int_equal(cn_put_atom_len(&b, big, 510), 0);
  valid_both(cn_buf_term(&b));
  assert_int_equal((unsigned char)b.data[0], 118);
  i = 0;
  assert_int_equal(
      ei_decode_atom_as(b.data, &i, buf, sizeof buf, ERLANG_UTF8, NULL, NULL),
      0);
  assert_memory_equal(buf, big, 510);
  assert_int_equal(cn_get_atom_n(cn_buf_term(&b), got, sizeof got, &len), 0);
  assert_int_equal(len, 510);
  assert_memory_equal(got, big, 510);
  assert_int_equal(cn_get_atom_n(cn_buf_term(&b), got, 510, &len), CN_ENOSPC);

  /* A NUL byte: a valid atom, but no C string. */
  cn_buf_reset(&b);
  assert_int_equal(cn_put_atom_len(&b, "a\0b", 3), 0);
  valid_both(cn_buf_term(&b));
  i = 0;
  assert_int_equal(
      ei_decode_atom_as(b.data, &i, buf, sizeof buf, ERLANG_UTF8, NULL, NULL),
      0);
  assert_memory_equal(buf, "a\0b", 4);
  memset(got, 'x', sizeof got);
  assert_int_equal(cn_get_atom_n(cn_buf_term(&b), got, sizeof got, &len), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(got, "a\0b", 4);
  assert_int_equal(cn_get_atom(cn_buf_term(&b), got, sizeof got), CN_ENOTSUP);
  {
    char m[8];
    assert_int_equal(cn_match(cn_buf_term(&b), "~a", m, sizeof m), CN_ENOTSUP);
  }

  /* A Latin-1 atom that ei writes (ATOM_EXT source) reads back in UTF-8. */
  {
    char lat[] = {'c', (char)0xE9, '\0'};
    n = 0;
    assert_int_equal(
        ei_encode_atom_len_as(buf, &n, lat, 2, ERLANG_LATIN1, ERLANG_UTF8), 0);
    assert_int_equal(cn_get_atom_n(from_ei(buf, n), got, sizeof got, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "c\xC3\xA9", 4);
  }
  cn_buf_free(&b);
}

static void test_binaries_and_charlists(void **state) {
  static const size_t sizes[] = {0, 1, 3, 255, 65535, 65536, 70000};
  char *data = malloc(70001), *out = malloc(70001);
  cn_buf b = CN_BUF_INIT;
  size_t k, j;
  (void)state;

  assert_non_null(data);
  assert_non_null(out);
  for (j = 0; j < 70000; j++)
    data[j] = (char)(1 + (j * 7) % 200); /* no NUL: ~c takes a C string */
  data[70000] = '\0';
  for (k = 0; k < COUNT(sizes); k++) {
    size_t n = sizes[k];
    const char *p;
    long got;
    size_t len = 0;
    cn_term t;
    int i = 0;

    cn_buf_reset(&b);
    assert_int_equal(cn_put_binary(&b, data, n), 0);
    t = cn_buf_term(&b);
    valid_both(t);
    assert_int_equal(ei_decode_binary(t.ptr, &i, out, &got), 0);
    assert_int_equal((size_t)got, n);
    assert_memory_equal(out, data, n);
    assert_int_equal(cn_get_binary(t, &p, &len), 0);
    assert_int_equal(len, n);

    /* Charlists: STRING_EXT up to 65535, then a LIST_EXT of integers. */
    cn_buf_reset(&b);
    assert_int_equal(cn_put_charlist(&b, data, n), 0);
    t = cn_buf_term(&b);
    valid_both(t);
    i = 0;
    assert_int_equal(ei_decode_string(t.ptr, &i, out), 0);
    assert_int_equal((size_t)i, t.len);
    assert_memory_equal(out, data, n);
    assert_int_equal(out[n], '\0');
    assert_int_equal((unsigned char)t.ptr[0], n == 0       ? 106
                                              : n <= 65535 ? 107
                                                           : 108);
  }
  /* ~c and ~s in a format agree. */
  data[300] = '\0';
  cn_buf_reset(&b);
  assert_int_equal(cn_build(&b, "{~c, ~s}", data, data), 0);
  {
    int i = 0, arity;
    long got;
    assert_int_equal(ei_decode_tuple_header(b.data, &i, &arity), 0);
    assert_int_equal(arity, 2);
    assert_int_equal(ei_decode_string(b.data, &i, out), 0);
    assert_string_equal(out, data);
    assert_int_equal(ei_decode_binary(b.data, &i, out, &got), 0);
    assert_int_equal(got, 300);
    assert_memory_equal(out, data, 300);
    assert_int_equal((size_t)i, b.len);
  }
  free(data);
  free(out);
  cn_buf_free(&b);
}

static void test_pids_refs(void **state) {
  cn_buf b = CN_BUF_INIT;
  cn_pid p, p2;
  cn_ref r, r2;
  erlang_pid ep;
  erlang_ref er;
  char buf[64];
  uint32_t node;
  int i = 0, n = 0;
  (void)state;

  assert_int_equal(cn_node_intern("eitest@höst", strlen("eitest@höst"), &node),
                   0);
  p.node = node;
  p.id = 0x12345;
  p.serial = 7;
  p.creation = 0xDEADBEEF;
  assert_int_equal(cn_put_pid(&b, &p), 0);
  valid_both(cn_buf_term(&b));
  assert_int_equal((unsigned char)b.data[0], 88); /* NEW_PID_EXT */
  assert_int_equal(ei_decode_pid(b.data, &i, &ep), 0);
  assert_string_equal(ep.node, "eitest@höst");
  assert_int_equal(ep.num, p.id);
  assert_int_equal(ep.serial, p.serial);
  assert_int_equal(ep.creation, p.creation);
  assert_int_equal(ei_encode_pid(buf, &n, &ep), 0);
  assert_int_equal((size_t)n, b.len);
  assert_memory_equal(buf, b.data, b.len);
  assert_int_equal(cn_get_pid(from_ei(buf, n), &p2), 0);
  assert_true(cn_pid_equal(&p, &p2));

  memset(&r, 0, sizeof r);
  r.node = node;
  r.len = 3;
  r.creation = 42;
  r.n[0] = 1;
  r.n[1] = 0xFFFFFFFF;
  r.n[2] = 3;
  cn_buf_reset(&b);
  assert_int_equal(cn_build(&b, "{~r, ~p}", &r, &p), 0);
  valid_both(cn_buf_term(&b));
  i = 2; /* past the tuple header */
  assert_int_equal(ei_decode_ref(b.data, &i, &er), 0);
  assert_int_equal((unsigned char)b.data[2], 90); /* NEWER_REFERENCE_EXT */
  assert_string_equal(er.node, "eitest@höst");
  assert_int_equal(er.len, 3);
  assert_int_equal(er.creation, 42);
  assert_int_equal(er.n[1], 0xFFFFFFFF);
  n = 0;
  assert_int_equal(ei_encode_ref(buf, &n, &er), 0);
  assert_int_equal(cn_get_ref(from_ei(buf, n), &r2), 0);
  assert_true(cn_ref_equal(&r, &r2));

  /* ei keeps 2 bits of an old PID_EXT's creation byte; we keep all 8, so
   * that the pid re-encodes as it came (erts would refuse it). */
  {
    static const char old_pid[] = {103, 119, 3, 'a', '@', 'b', 0, 0,
                                   0,   5,   0, 0,   0,   6,   7};
    erlang_pid e;
    int k = 0;
    assert_int_equal(cn_get_pid(from_ei(old_pid, sizeof old_pid), &p2), 0);
    assert_int_equal(p2.id, 5);
    assert_int_equal(p2.serial, 6);
    assert_int_equal(p2.creation, 7);
    assert_int_equal(ei_decode_pid(old_pid, &k, &e), 0);
    assert_int_equal(e.creation, 3);
  }
  /* A node name with a NUL byte would be cut short by ei's C strings. */
  {
    static const char bad[] = {88, 119, 5, 'a', '@', 'b', 0, 'c', 0, 0,
                               0,  1,   0, 0,   0,   0,   0, 0,   0, 1};
    assert_int_equal(cn_get_pid(from_ei(bad, sizeof bad), &p2), CN_EINVAL);
  }
  cn_buf_free(&b);
}

static void test_nested(void **state) {
  static const struct {
    const char *fmt;
    const char *printed; /* by ei_s_print_term */
  } cases[] = {
      {"{ok, 42}", "{ok, 42}"},
      {"[1, 2, 3]", "\"\\x1\\x2\\x3\""}, /* a STRING_EXT */
      {"{a, [x, {y, -1}], [], {}}", "{a, [x, {y, -1}], [], {}}"},
      {"[a, b | c]", "[a, b | c]"},
      {"#{b => 2, a => 1}", "#{a => 1, b => 2}"},
      {"#{a => 1, a => 2}", "#{a => 2}"},
      {"{'$gen_call', {x, [alias | y]}, #{k => [1.5]}}",
       "{'$gen_call', {x, [alias | y]}, #{k => [1.500000]}}"},
      /* Enough pairs out of order for the merge sort, a repeated key
       * (the last value wins), and integer keys before float keys. */
      {"#{j => 10, i => 9, h => 8, g => 7, f => 6, e => 5, d => 4, c => 3,"
       " b => 2, a => 1, a => 0, 1.0 => y, 2 => x, {} => []}",
       "#{2 => x, 1.000000 => y, a => 0, b => 2, c => 3, d => 4, e => 5, "
       "f => 6, g => 7, h => 8, i => 9, j => 10, {} => []}"},
  };
  cn_buf b = CN_BUF_INIT;
  size_t k;
  (void)state;

  for (k = 0; k < COUNT(cases); k++) {
    char *s = NULL;
    int i = 0;
    cn_term t = T(&b, cases[k].fmt);
    valid_both(t);
    assert_true(ei_s_print_term(&s, t.ptr, &i) >= 0);
    assert_int_equal((size_t)i, t.len);
    assert_string_equal(s, cases[k].printed);
    free(s);
  }
  /* Headers that cn_put_* writes are ei's. */
  {
    char buf[32];
    int n = 0;
    cn_buf_reset(&b);
    assert_int_equal(cn_put_tuple(&b, 2), 0);
    assert_int_equal(cn_put_list(&b, 1), 0);
    assert_int_equal(cn_put_map(&b, 0), 0);
    assert_int_equal(cn_put_nil(&b), 0);
    assert_int_equal(cn_put_tuple(&b, 300), 0);
    ei_encode_tuple_header(buf, &n, 2);
    ei_encode_list_header(buf, &n, 1);
    ei_encode_map_header(buf, &n, 0);
    ei_encode_empty_list(buf, &n);
    ei_encode_tuple_header(buf, &n, 300);
    assert_int_equal((size_t)n, b.len);
    assert_memory_equal(buf, b.data, b.len);
  }
  cn_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ints),
      cmocka_unit_test(test_uints),
      cmocka_unit_test(test_bignums),
      cmocka_unit_test(test_doubles),
      cmocka_unit_test(test_atoms),
      cmocka_unit_test(test_binaries_and_charlists),
      cmocka_unit_test(test_pids_refs),
      cmocka_unit_test(test_nested),
  };
  return run_group("ei", tests, NULL, NULL);
}
