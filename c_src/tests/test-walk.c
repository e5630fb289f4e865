/* Tests for the term layer's one walk (c_src/term/walk.c): the stack that
 * spills from the C stack to the heap, the list cursor over STRING_EXT and
 * LIST_EXT segments, and validate, compare, hash, print and the iterator
 * on the corners they share: string tails ([1|"ab"]), improper tails, the
 * empty STRING_EXT, and terms nested 100000 deep.
 *
 * Terms are written byte by byte here, since cn_build never emits most of
 * these encodings.
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
#include "term/term_internal.h"

#define DEEP 100000

/* A term under construction: bytes appended one encoding at a time. */
typedef struct etf {
  char *p;
  size_t n, cap;
} etf;

static void put(etf *e, const void *s, size_t n) {
  if (e->n + n > e->cap) {
    e->cap = (e->n + n) * 2;
    e->p = realloc(e->p, e->cap);
    assert_non_null(e->p);
  }
  memcpy(e->p + e->n, s, n);
  e->n += n;
}

static void byte(etf *e, unsigned c) {
  char b = (char)c;
  put(e, &b, 1);
}

static void u16(etf *e, unsigned v) {
  byte(e, v >> 8);
  byte(e, v & 0xFF);
}

static void u32(etf *e, uint32_t v) {
  u16(e, v >> 16);
  u16(e, v & 0xFFFF);
}

static void small(etf *e, unsigned v) {
  byte(e, ETF_SMALL_INTEGER);
  byte(e, v);
}

static void list(etf *e, uint32_t n) {
  byte(e, ETF_LIST);
  u32(e, n);
}

static void str(etf *e, const char *s) {
  byte(e, ETF_STRING);
  u16(e, (unsigned)strlen(s));
  put(e, s, strlen(s));
}

static void atom(etf *e, const char *s) {
  byte(e, ETF_SMALL_ATOM_UTF8);
  byte(e, (unsigned)strlen(s));
  put(e, s, strlen(s));
}

static cn_term term(const etf *e) {
  cn_term t;
  size_t off = 0;
  cn_term_limits lim = {10 * DEEP, 0};
  assert_int_equal(cn_term_validate(e->p, e->n, &off, &lim), 0);
  assert_int_equal(off, e->n);
  t.ptr = e->p;
  t.len = e->n;
  return t;
}

/* The elements of a list, across all its segments, as cn_iter_init counts
 * them. */
static size_t elements(cn_term t) {
  cn_iter it;
  size_t n = 0;
  assert_int_equal(cn_iter_init(&it, t, &n), 0);
  return n;
}

/* Checks that t prints as want. */
static void prints(cn_term t, const char *want) {
  cn_buf b;
  cn_buf_init(&b);
  assert_int_equal(cn_term_print(t, &b), 0);
  assert_string_equal(b.data, want);
  cn_buf_free(&b);
}

/* Checks that a and b are one value: equal, same hash, same text. */
static void same(cn_term a, cn_term b, const char *text) {
  assert_int_equal(cn_term_compare(a, b), 0);
  assert_int_equal(cn_term_compare(b, a), 0);
  assert_true(cn_term_equal(a, b));
  assert_true(cn_term_hash(a) == cn_term_hash(b));
  prints(a, text);
  prints(b, text);
}

static void test_stack_spills(void **state) {
  uint64_t inl[4], *f;
  cn__stack s;
  size_t i;

  (void)state;
  cn__stack_init(&s, inl);
  for (i = 0; i < DEEP; i++) {
    assert_non_null(f = CN__STACK_PUSH(&s, uint64_t));
    *f = i;
  }
  assert_true((void *)s.base != (void *)inl);
  for (i = DEEP; i-- > 0;) {
    f = CN__STACK_TOP(&s, uint64_t);
    assert_int_equal(*f, i);
    s.n--;
  }
  assert_int_equal(s.n, 0);
  cn__stack_free(&s);
}

/* [1|"ab"]: one LIST_EXT element, then a STRING_EXT tail. */
static void test_string_tail(void **state) {
  etf a = {0}, b = {0};
  const char *p, *x;
  cn__list l;
  cn_iter it;
  cn_term t, e;
  size_t count;

  (void)state;
  list(&a, 1);
  small(&a, 1);
  str(&a, "ab");
  byte(&b, ETF_STRING);
  u16(&b, 3);
  put(&b, "\001ab", 3);

  p = a.p;
  cn__list_enter(&l, &p);
  assert_int_equal(cn__list_next(&l, &p, &x), 1);
  assert_ptr_equal(x, p); /* in the stream */
  p = cn__skip_fast(x);
  assert_int_equal(cn__list_next(&l, &p, &x), 1);
  assert_ptr_equal(x, cn__small_ints['a']);
  assert_int_equal(cn__list_next(&l, &p, &x), 1);
  assert_ptr_equal(x, cn__small_ints['b']);
  assert_int_equal(cn__list_next(&l, &p, &x), 0);
  assert_ptr_equal(x, cn__nil);
  assert_ptr_equal(p, a.p + a.n);
  assert_int_equal(elements(term(&a)), 3);
  assert_ptr_equal(cn__skip(a.p), a.p + a.n);

  t = term(&a);
  same(t, term(&b), "[1,97,98]");
  /* A prefix sorts first: its implicit nil meets the longer list's 98. */
  b.p[2] = 2; /* "\001a" */
  b.n--;
  assert_true(cn_term_compare(term(&b), t) < 0);
  assert_true(cn_term_compare(t, term(&b)) > 0);
  assert_false(cn_term_equal(t, term(&b)));
  prints(term(&b), "[1,97]");
  assert_int_equal(cn_iter_init(&it, t, &count), 0);
  assert_int_equal(count, 3);
  assert_true(cn_iter_next(&it, &e));
  assert_int_equal(e.len, 2);
  assert_true(cn_iter_next(&it, &e));
  assert_ptr_equal(e.ptr, cn__small_ints['a']);
  assert_true(cn_iter_next(&it, &e));
  assert_false(cn_iter_next(&it, &e));
  assert_int_equal(cn_term_typeof(it.tail), CN_T_NIL);
  free(a.p);
  free(b.p);
}

/* [1,2|foo] as one segment and as [1|[2|foo]], and against [1,2]. */
static void test_improper_tails(void **state) {
  etf a = {0}, b = {0}, c = {0};
  cn_iter it;
  cn_term e;
  size_t count;

  (void)state;
  list(&a, 2);
  small(&a, 1);
  small(&a, 2);
  atom(&a, "foo");
  list(&b, 1);
  small(&b, 1);
  list(&b, 1);
  small(&b, 2);
  atom(&b, "foo");
  str(&c, "\001\002");
  same(term(&a), term(&b), "[1,2|foo]");
  /* The tails decide: an atom sorts before nil, so [1,2|foo] < [1,2]. */
  assert_true(cn_term_compare(term(&c), term(&a)) > 0);
  assert_true(cn_term_compare(term(&a), term(&c)) < 0);
  assert_true(cn_term_hash(term(&a)) != cn_term_hash(term(&c)));

  assert_int_equal(cn_iter_init(&it, term(&b), &count), 0);
  assert_int_equal(count, 2);
  assert_true(cn_iter_next(&it, &e));
  assert_true(cn_iter_next(&it, &e));
  assert_false(cn_iter_next(&it, &e));
  assert_true(cn_is_atom(it.tail, "foo"));
  free(a.p);
  free(b.p);
  free(c.p);
}

/* "" is [], alone and as a tail; a list longer than the other compares
 * by the tail of the shorter. */
static void test_empty_string(void **state) {
  etf a = {0}, b = {0}, c = {0}, d = {0}, x = {0};
  cn_iter it;
  cn_term e;
  size_t count;

  (void)state;
  str(&a, "");
  byte(&b, ETF_NIL);
  same(term(&a), term(&b), "[]");
  assert_int_equal(cn_iter_init(&it, term(&a), &count), 0);
  assert_int_equal(count, 0);
  assert_false(cn_iter_next(&it, &e));
  assert_int_equal(cn_term_typeof(it.tail), CN_T_NIL);

  list(&c, 1); /* [1|""] */
  small(&c, 1);
  str(&c, "");
  str(&d, "\001");
  same(term(&c), term(&d), "[1]");
  assert_int_equal(elements(term(&c)), 1);

  list(&x, 1); /* [1|{}], whose tail is a tuple */
  small(&x, 1);
  byte(&x, ETF_SMALL_TUPLE);
  byte(&x, 0);
  prints(term(&x), "[1|{}]");
  assert_true(cn_term_compare(term(&d), term(&x)) > 0); /* {} < [] */
  free(a.p);
  free(b.p);
  free(c.p);
  free(d.p);
  free(x.p);
}

/* Writes a chain `depth` deep of: 't' {X}, 'l' [X], 'm' #{a => X}, 's'
 * [1|X] (the tails of one list), around the bottom: 0 for NIL_EXT, else
 * the STRING_EXT bottom. */
static void deep(etf *e, int kind, size_t depth, const char *bottom) {
  size_t i;
  for (i = 0; i < depth; i++) {
    switch (kind) {
    case 't':
      byte(e, ETF_SMALL_TUPLE);
      byte(e, 1);
      break;
    case 'l':
      list(e, 1);
      break;
    case 'm':
      byte(e, ETF_MAP);
      u32(e, 1);
      atom(e, "a");
      break;
    default:
      list(e, 1);
      small(e, 1);
      break;
    }
  }
  if (bottom == NULL)
    byte(e, ETF_NIL);
  else
    str(e, bottom);
  for (i = 0; kind == 'l' && i < depth; i++)
    byte(e, ETF_NIL);
}

/* What deep(kind, depth, "") prints as. */
static char *deep_text(int kind, size_t depth) {
  const char *open = kind == 'm'   ? "#{a => "
                     : kind == 't' ? "{"
                     : kind == 'l' ? "["
                                   : NULL;
  etf e = {0};
  size_t i;

  for (i = 0; open == NULL && i < depth; i++) /* [1,1,...,1] */
    put(&e, i == 0 ? "[1" : ",1", 2);
  for (i = 0; open != NULL && i < depth; i++)
    put(&e, open, strlen(open));
  if (open != NULL)
    put(&e, "[]", 2);
  for (i = 0; i < (open == NULL ? 1 : depth); i++)
    put(&e, kind == 'l' || open == NULL ? "]" : "}", 1);
  byte(&e, 0);
  return e.p;
}

/* Each walk on terms nested 100000 deep (10000 for maps, which allocate
 * per level): the stack spills to the heap, and nothing recurses. */
static void test_deep(void **state) {
  static const char kinds[] = "tlms";
  const char *k;

  (void)state;
  for (k = kinds; *k != '\0'; k++) {
    etf a = {0}, b = {0}, c = {0};
    size_t off = 0, depth = *k == 'm' ? DEEP / 10 : DEEP;
    char *text = deep_text(*k, depth);
    cn_term ta, tb, tc;

    deep(&a, *k, depth, "");
    deep(&b, *k, depth, NULL);
    deep(&c, *k, depth, "x");
    ta = term(&a);
    tb = term(&b);
    tc = term(&c);
    /* Tails do not nest: the default depth limit takes the list. */
    assert_int_equal(cn_term_validate(a.p, a.n, &off, NULL),
                     *k == 's' ? 0 : CN_ETOODEEP);
    assert_ptr_equal(cn__skip(a.p), a.p + a.n);
    same(ta, tb, text);
    assert_true(cn_term_compare(ta, tc) < 0); /* [] < "x" */
    assert_true(cn_term_compare(tc, tb) > 0);
    assert_false(cn_term_equal(tc, ta));
    assert_true(cn_term_hash(ta) != cn_term_hash(tc));
    free(text);
    free(a.p);
    free(b.p);
    free(c.p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stack_spills),
      cmocka_unit_test(test_string_tail),
      cmocka_unit_test(test_improper_tails),
      cmocka_unit_test(test_empty_string),
      cmocka_unit_test(test_deep),
  };
  return run_group("walk", tests, NULL, NULL);
}
