/* Tests for cn_term_parse: Erlang term text to a term.
 *
 * The golden bytes were captured from erl on OTP 25 (erl_scan:string,
 * erl_parse:parse_term, then term_to_binary(T, [{minor_version, 2}])), so
 * the tests run without erl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#define B(...) ((const unsigned char[]){__VA_ARGS__})

/* The whole buffer is one term the validator accepts. */
static void assert_valid(const cn_buf *b) {
  size_t off = 0;
  assert_int_equal(cn_term_validate(b->data, b->len, &off, NULL), 0);
  assert_int_equal(off, b->len);
}

static const struct golden {
  const char *text;
  size_t len;
  const unsigned char *bytes;
} goldens[] = {
    {"{get, <<\"a\">>}", 13,
     B(104, 2, 119, 3, 103, 101, 116, 109, 0, 0, 0, 1, 97)},
    {"\"hello\"", 8, B(107, 0, 5, 104, 101, 108, 108, 111)},
    {"[1,2|3]", 11, B(108, 0, 0, 0, 2, 97, 1, 97, 2, 97, 3)},
    {"16#ff", 2, B(97, 255)},
    {"-16#FF", 5, B(98, 255, 255, 255, 1)},
    {"$a", 2, B(97, 97)},
    {"1_000_000", 5, B(98, 0, 15, 66, 64)},
    {"123456789012345678901234567890", 16,
     B(110, 13, 0, 210, 10, 63, 78, 238, 224, 115, 195, 246, 15, 233, 142, 1)},
    {"-18446744073709551615", 11,
     B(110, 8, 1, 255, 255, 255, 255, 255, 255, 255, 255)},
    {"-9223372036854775809", 11, B(110, 8, 1, 1, 0, 0, 0, 0, 0, 0, 128)},
    {"2.5e-3", 9, B(70, 63, 100, 122, 225, 71, 174, 20, 123)},
    {"'Quoted atom'", 13,
     B(119, 11, 81, 117, 111, 116, 101, 100, 32, 97, 116, 111, 109)},
    {"'a\\nb'", 5, B(119, 3, 97, 10, 98)},
    {"<<1,2,3>>", 8, B(109, 0, 0, 0, 3, 1, 2, 3)},
    {"<<\"\xc3\xa9\"/utf8>>", 7, B(109, 0, 0, 0, 2, 195, 169)},
    {"<<\"\xc3\xa9\">>", 6, B(109, 0, 0, 0, 1, 233)},
    {"\"\xe2\x82\xac\"", 11, B(108, 0, 0, 0, 1, 98, 0, 0, 32, 172, 106)},
    {"#{b => 1, a => 2, a => 3}", 15,
     B(116, 0, 0, 0, 2, 119, 1, 97, 97, 3, 119, 1, 98, 97, 1)},
    {"{}", 2, B(104, 0)},
    {"[]", 1, B(106)},
    {"\"\"", 1, B(106)},
    {"<<>>", 5, B(109, 0, 0, 0, 0)},
    {"h\xc3\xa9llo", 8, B(119, 6, 104, 195, 169, 108, 108, 111)},
    {"[a|b]", 11, B(108, 0, 0, 0, 1, 119, 1, 97, 119, 1, 98)},
    {"#{}", 5, B(116, 0, 0, 0, 0)},
    {"{a, [], {}}", 8, B(104, 3, 119, 1, 97, 106, 104, 0)},
    {"2#1010", 2, B(97, 10)},
    {"36#zz", 5, B(98, 0, 0, 5, 15)},
    {"$\\n", 2, B(97, 10)},
    {"-$a", 5, B(98, 255, 255, 255, 159)},
    {"'\\x{20AC}'", 5, B(119, 3, 226, 130, 172)},
    {"<<\"a\", 0, \"b\">>", 8, B(109, 0, 0, 0, 3, 97, 0, 98)},
};

static void test_goldens(void **state) {
  size_t i;
  for (i = 0; i < sizeof goldens / sizeof *goldens; i++) {
    const struct golden *g = &goldens[i];
    cn_buf b = CN_BUF_INIT;
    cn_parse_error err = {0, NULL};
    int rc = cn_term_parse(&b, g->text, strlen(g->text), &err);
    if (rc != 0)
      fail_msg("%s: %s at %zu", g->text, err.what, err.offset);
    if (b.len != g->len || memcmp(b.data, g->bytes, g->len) != 0)
      fail_msg("%s: not the bytes erl gives", g->text);
    assert_valid(&b);
    cn_buf_free(&b);
  }
}

/* Text that means the same term as a cn_build format. */
static void test_same_as_build(void **state) {
  static const char *const pairs[][2] = {
      {"ok.", "ok"},
      {"  {ok , 42 } % a comment\n", "{ok, 42}"},
      {"[{k, \"v\"}, #{1 => 2.0}]", "[{k, [118]}, #{1 => 2.0}]"},
      {"-0.0", "-0.0"},
      {"1.0e10", "1.0e10"},
  };
  size_t i;
  for (i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    cn_buf a = CN_BUF_INIT, b = CN_BUF_INIT;
    assert_int_equal(cn_term_parse(&a, pairs[i][0], strlen(pairs[i][0]), NULL),
                     0);
    assert_true(cn_term_equal(cn_buf_term(&a), T(&b, pairs[i][1])));
    cn_buf_free(&a);
    cn_buf_free(&b);
  }
}

static void test_errors(void **state) {
  static const struct {
    const char *text;
    size_t offset;
    const char *what;
  } bad[] = {
      {"", 0, "expected a term"},
      {"{a, b", 5, "expected }"},
      {"[1 2]", 3, "expected ]"},
      {"#{a => }", 7, "expected a term"},
      {"#{a, b}", 3, "expected =>"},
      {"'unterminated", 13, "unterminated quoted text"},
      {"<<256>>", 5, "byte over 255 in a binary"},
      {"<<\"\xe2\x82\xac\">>", 2,
       "character over 255 in a binary without /utf8"},
      {"37#1", 2, "bad base"},
      {"2#102", 4, "text after the term"},
      {"1.0e999", 7, "float out of range"},
      {"ok ok", 3, "text after the term"},
      {"{ok}.x", 5, "text after the term"},
      {"Var", 0, "expected a term"},
      {"<0.1.2>", 0, "expected a term"},
      {"'don''t'", 5, "text after the term"},
      {"\"\xff\"", 1, "text is not UTF-8"},
      {"1__0", 4, "bad number"},
  };
  size_t i;
  for (i = 0; i < sizeof bad / sizeof *bad; i++) {
    cn_buf b = CN_BUF_INIT;
    cn_parse_error err = {0, NULL};
    assert_int_equal(cn_build(&b, "kept"), 0);
    if (cn_term_parse(&b, bad[i].text, strlen(bad[i].text), &err) != CN_EBADFMT)
      fail_msg("'%s' was accepted", bad[i].text);
    if (err.offset != bad[i].offset || strcmp(err.what, bad[i].what) != 0)
      fail_msg("'%s': %s at %zu, not %s at %zu", bad[i].text, err.what,
               err.offset, bad[i].what, bad[i].offset);
    /* The buffer is as it was. */
    assert_true(cn_is_atom(cn_buf_term(&b), "kept"));
    cn_buf_free(&b);
  }
}

/* What cn_term_print writes reads back as the same term. */
static void test_print_round_trip(void **state) {
  static const char *const fmts[] = {
      "{ok, 42}",
      "[1, 2, 3 | tail]",
      "#{\"bin\" => [], 'Quoted \\' atom' => {1.5, -7}}",
      "[0, 255, 256, 18446744073709551616, -18446744073709551617]",
      "{[104, 105], \"\", 'a\\nb', '\\e'}",
      "{1.0e-300, 0.1, -0.0, 123456789.0}",
      "[[[[[[]]]]]]",
  };
  size_t i;
  for (i = 0; i < sizeof fmts / sizeof *fmts; i++) {
    cn_buf a = CN_BUF_INIT, text = CN_BUF_INIT, back = CN_BUF_INIT;
    cn_parse_error err = {0, NULL};
    cn_term t = T(&a, fmts[i]);
    assert_int_equal(cn_term_print(t, &text), 0);
    if (cn_term_parse(&back, text.data, text.len, &err) != 0)
      fail_msg("%s printed as %s: %s at %zu", fmts[i], text.data, err.what,
               err.offset);
    if (!cn_term_equal(t, cn_buf_term(&back)))
      fail_msg("%s printed as %s reads back as another term", fmts[i],
               text.data);
    cn_buf_free(&a);
    cn_buf_free(&text);
    cn_buf_free(&back);
  }
}

static void nested(cn_buf *text, size_t depth) {
  size_t i;
  text->len = 0;
  for (i = 0; i < depth; i++)
    cn_buf_append(text, "[", 1);
  for (i = 0; i < depth; i++)
    cn_buf_append(text, "]", 1);
}

static void test_depth(void **state) {
  cn_buf text = CN_BUF_INIT, b = CN_BUF_INIT;
  cn_parse_error err;

  nested(&text, 512); /* the outer 512 lists hold a [] */
  assert_int_equal(cn_term_parse(&b, text.data, text.len, NULL), 0);
  nested(&text, 514);
  b.len = 0;
  assert_int_equal(cn_term_parse(&b, text.data, text.len, &err), CN_EBADFMT);
  assert_string_equal(err.what, "nested too deep");
  assert_int_equal(b.len, 0);
  /* Far deeper than the stack could take by recursion. */
  nested(&text, 1000000);
  assert_int_equal(cn_term_parse(&b, text.data, text.len, &err), CN_EBADFMT);
  assert_string_equal(err.what, "nested too deep");
  cn_buf_free(&text);
  cn_buf_free(&b);
}

static void test_large(void **state) {
  cn_buf text = CN_BUF_INIT, b = CN_BUF_INIT;
  cn_iter it;
  size_t i, n = 0;
  char num[32];

  /* A tuple of 1000 elements is LARGE_TUPLE_EXT; a 300-digit integer. */
  cn_buf_append(&text, "{", 1);
  for (i = 0; i < 1000; i++) {
    int k = snprintf(num, sizeof num, "%s%zu", i ? "," : "", i);
    cn_buf_append(&text, num, (size_t)k);
  }
  cn_buf_append(&text, "}", 1);
  assert_int_equal(cn_term_parse(&b, text.data, text.len, NULL), 0);
  assert_int_equal(cn_iter_init(&it, cn_buf_term(&b), &n), 0);
  assert_int_equal(n, 1000);
  assert_int_equal((unsigned char)b.data[0], 105);
  text.len = 0;
  b.len = 0;
  for (i = 0; i < 300; i++)
    cn_buf_append(&text, "9", 1);
  assert_int_equal(cn_term_parse(&b, text.data, text.len, NULL), 0);
  assert_int_equal(cn_term_typeof(cn_buf_term(&b)), CN_T_INTEGER);
  assert_valid(&b);
  /* Found by fuzz_parse: base 32 has 5 bits a digit, more than the 4 the
   * digit buffer was once sized for. */
  b.len = 0;
  assert_int_equal(
      cn_term_parse(&b, "32#vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv", 48,
                    NULL),
      0);
  assert_valid(&b);
  text.len = 0;
  assert_int_equal(cn_term_print(cn_buf_term(&b), &text), 0);
  assert_string_equal(text.data, "5391989333430127958933403017403926134727428"
                                 "8845081144962207220498431"); /* 32^45 - 1 */
  cn_buf_free(&text);
  cn_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_goldens), cmocka_unit_test(test_same_as_build),
      cmocka_unit_test(test_errors),  cmocka_unit_test(test_print_round_trip),
      cmocka_unit_test(test_depth),   cmocka_unit_test(test_large),
  };
  return run_group("parse", tests, NULL, NULL);
}
