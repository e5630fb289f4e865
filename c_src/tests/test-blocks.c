/* Tests for the large blocks kept for reuse (runtime/blocks.c) and the
 * messages that take a buffer over instead of copying it (proc.c):
 * what large messages pass through without page faults and copies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/internal.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

/* Below CN__BLOCK_MIN a block is plain malloc'ed memory of that size. */
static void test_small_blocks(void **st) {
  size_t cap = 0;
  char *p = cn__block_alloc(1000, &cap);
  (void)st;
  assert_non_null(p);
  assert_int_equal(cap, 1000);
  memset(p, 1, cap);
  cn__block_free(p, cap);
  cn__block_free(NULL, 0); /* nothing to do */
}

/* A freed large block comes back for the next request it fits, and is
 * written through (its pages are the caller's). */
static void test_reuse(void **st) {
  size_t cap = 0, cap2 = 0;
  char *p, *q;
  (void)st;
  cn__blocks_trim(true);
  p = cn__block_alloc(MIB, &cap);
  assert_non_null(p);
  assert_true(cap >= MIB);
  memset(p, 7, MIB);
  cn__block_free(p, cap);
  q = cn__block_alloc(MIB - 100, &cap2);
  assert_ptr_equal(q, p);
  assert_int_equal(cap2, cap);
  memset(q, 8, MIB - 100);
  cn__block_free(q, cap2);
  cn__blocks_trim(true);
}

/* A kept block is not spent on a request of less than half its size,
 * nor on one larger than it. */
static void test_no_waste(void **st) {
  size_t cap = 0, c1 = 0, c2 = 0;
  char *p, *a, *b;
  (void)st;
  cn__blocks_trim(true);
  p = cn__block_alloc(4 * MIB, &cap);
  assert_non_null(p);
  cn__block_free(p, cap);
  a = cn__block_alloc(1 * MIB, &c1); /* under half: a new block */
  assert_non_null(a);
  assert_ptr_not_equal(a, p);
  assert_int_equal(c1, MIB);
  b = cn__block_alloc(5 * MIB, &c2); /* larger: a new block */
  assert_non_null(b);
  assert_ptr_not_equal(b, p);
  cn__block_free(a, c1);
  cn__block_free(b, c2);
  cn__blocks_trim(true);
}

/* At most 8 blocks are kept: freeing a ninth lets the longest kept one
 * go, and the next eight requests get the eight freed last. */
static void test_eviction(void **st) {
  char *p[9], *q[8];
  size_t cap[9], c[8], i, j;
  (void)st;
  cn__blocks_trim(true);
  for (i = 0; i < 9; i++) {
    p[i] = cn__block_alloc(200 * KIB, &cap[i]);
    assert_non_null(p[i]);
  }
  for (i = 0; i < 9; i++)
    cn__block_free(p[i], cap[i]);
  for (i = 0; i < 8; i++) {
    int seen = 0;
    q[i] = cn__block_alloc(200 * KIB, &c[i]);
    for (j = 1; j < 9; j++)
      if (q[i] == p[j]) {
        seen = 1;
        p[j] = NULL; /* each comes back once */
      }
    assert_true(seen);
  }
  for (i = 0; i < 8; i++)
    cn__block_free(q[i], c[i]);
  cn__blocks_trim(true);
}

/* A message takes a heap buffer of CN__ADOPT_MIN bytes or more over: the
 * same bytes, no copy; a smaller one is copied and the buffer stays its
 * owner's. */
static void test_msg_from_buf(void **st) {
  cn_buf b = CN_BUF_INIT;
  cn__msg *m;
  char *data;
  (void)st;
  assert_int_equal(cn_buf_reserve(&b, 2 * CN__BLOCK_MIN), 0);
  memset(b.data, 5, CN__BLOCK_MIN + 10);
  b.len = CN__BLOCK_MIN + 10;
  data = b.data;
  m = cn__msg_from_buf(CN__M_REPLY, &b);
  assert_non_null(m);
  assert_ptr_equal(m->data, data);
  assert_int_equal(m->len, CN__BLOCK_MIN + 10);
  assert_null(b.data);
  assert_int_equal(b.len, CN__BLOCK_MIN + 10); /* as it was */
  assert_int_equal(b.on_heap, 0);
  cn__msg_free(m);
  cn_buf_free(&b);

  /* From CN__ADOPT_MIN up, on the heap: taken over too; below, copied. */
  assert_int_equal(cn_buf_reserve(&b, CN__ADOPT_MIN), 0);
  memset(b.data, 6, CN__ADOPT_MIN);
  b.len = CN__ADOPT_MIN;
  data = b.data;
  m = cn__msg_from_buf(CN__M_REPLY, &b);
  assert_non_null(m);
  assert_ptr_equal(m->data, data);
  assert_null(b.data);
  cn__msg_free(m);
  cn_buf_free(&b);
  assert_int_equal(cn_buf_reserve(&b, CN__ADOPT_MIN), 0);
  memset(b.data, 6, CN__ADOPT_MIN - 1);
  b.len = CN__ADOPT_MIN - 1;
  data = b.data;
  m = cn__msg_from_buf(CN__M_REPLY, &b);
  assert_non_null(m);
  assert_ptr_not_equal(m->data, data);
  assert_ptr_equal(b.data, data);
  assert_memory_equal(m->data, data, CN__ADOPT_MIN - 1);
  cn__msg_free(m);
  cn_buf_free(&b);

  assert_int_equal(cn_buf_append(&b, "\x61\x05", 2), 0);
  m = cn__msg_from_buf(CN__M_REPLY, &b);
  assert_non_null(m);
  assert_ptr_not_equal(m->data, b.data);
  assert_int_equal(m->len, 2);
  assert_memory_equal(m->data, "\x61\x05", 2);
  assert_non_null(b.data);
  cn__msg_free(m);
  cn_buf_free(&b);

  /* A large message gets its data in a block of its own. */
  m = cn__msg_new(CN__M_MSG, NULL, 3 * CN__BLOCK_MIN);
  assert_non_null(m);
  assert_non_null(m->block);
  assert_ptr_equal(m->data, m->block);
  memset(m->data, 1, m->len);
  cn__msg_free(m);
  cn__blocks_trim(true);
}

/* ---- Record caches (sched.c) ------------------------------------------ */

typedef struct rec_step {
  cn__rec_kind kind;
  void *in;  /* freed here first, when set */
  void *out; /* then one allocated here, when want_out */
  int want_out;
  unsigned n; /* what the scheduler keeps of kind afterwards */
} rec_step;

static void rec_step_run(void *arg) {
  rec_step *s = arg;
  cn__sched *sched = cn__current_sched();
  if (s->in)
    cn__rec_free(s->kind, s->in);
  if (s->want_out)
    s->out = cn__rec_alloc(s->kind);
  s->n = sched ? sched->recs[s->kind].n : 0;
}

/* Frees in (may be NULL) and then, with want_out, allocates one record of
 * kind on scheduler idx; returns how many it keeps then. */
static unsigned on_sched(cn_runtime *rt, unsigned idx, cn__rec_kind kind,
                         void *in, int want_out, void **out) {
  rec_step s = {kind, in, NULL, want_out, 0};
  cn__sched_run(rt, idx, rec_step_run, &s);
  if (out)
    *out = s.out;
  return s.n;
}

static void many_free(void *arg) {
  void **v = arg;
  for (int i = 0; i < CN__REC_KEEP + 8; i++)
    cn__rec_free(CN__REC_PENDING, v[i]);
}

/* A scheduler hands a record it was given back out, whichever thread
 * allocated it; keeps at most CN__REC_KEEP of a kind; and a plain thread
 * goes to malloc both ways.  The runtime frees what is kept (the leak
 * checker sees the rest). */
static void test_record_caches(void **st) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  void *a, *b, *v[CN__REC_KEEP + 8];
  unsigned n0;
  (void)st;
  memset(&o, 0, sizeof(o));
  o.schedulers = 2;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);

  /* Freed and allocated on one scheduler: the same record. */
  n0 = on_sched(rt, 0, CN__REC_MSG, NULL, 1, &a);
  assert_non_null(a);
  assert_int_equal(on_sched(rt, 0, CN__REC_MSG, a, 0, NULL), n0 + 1);
  assert_int_equal(on_sched(rt, 0, CN__REC_MSG, NULL, 1, &b), n0);
  assert_ptr_equal(b, a);

  /* Allocated on scheduler 0, freed on 1: 1 hands it out next. */
  n0 = on_sched(rt, 1, CN__REC_MSG, b, 0, NULL);
  assert_int_equal(on_sched(rt, 1, CN__REC_MSG, NULL, 1, &a), n0 - 1);
  assert_ptr_equal(a, b);
  cn__rec_free(CN__REC_MSG, a); /* a plain thread: to free() */

  /* Allocated on a plain thread (malloc), freed on a scheduler: kept. */
  a = cn__rec_alloc(CN__REC_FROM);
  assert_non_null(a);
  memset(a, 0, sizeof(cn_from));
  n0 = on_sched(rt, 1, CN__REC_FROM, a, 0, NULL);
  assert_int_equal(on_sched(rt, 1, CN__REC_FROM, NULL, 1, &b), n0 - 1);
  assert_ptr_equal(b, a);
  /* And back to a plain thread: free() takes it. */
  cn__rec_free(CN__REC_FROM, b);

  /* At most CN__REC_KEEP kept. */
  for (int i = 0; i < CN__REC_KEEP + 8; i++)
    assert_non_null(v[i] = cn__rec_alloc(CN__REC_PENDING));
  cn__sched_run(rt, 0, many_free, v);
  assert_int_equal(on_sched(rt, 0, CN__REC_PENDING, NULL, 0, NULL),
                   CN__REC_KEEP);

  /* Small messages come in records of one size; larger ones do not. */
  {
    cn__msg *m = cn__msg_new(CN__M_MSG, "\x61\x01", 2);
    assert_non_null(m);
    assert_true(m->pooled);
    cn__msg_free(m);
    m = cn__msg_new(CN__M_MSG, NULL, CN__MSG_POOL_INLINE + 1);
    assert_non_null(m);
    assert_false(m->pooled);
    cn__msg_free(m);
  }
  assert_int_equal(cn_runtime_shutdown(rt, 5000), 0);
  cn_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_blocks), cmocka_unit_test(test_reuse),
      cmocka_unit_test(test_no_waste),     cmocka_unit_test(test_eviction),
      cmocka_unit_test(test_msg_from_buf), cmocka_unit_test(test_record_caches),
  };
  return cmocka_run_group_tests_name("blocks", tests, NULL, NULL);
}
