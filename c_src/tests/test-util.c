/* Tests for the library's own small containers (c_src/util/): the one
 * hash table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/htab.h"
#include "helpers.h"

typedef struct item {
  cn__hnode node;
  uint64_t key;
  int live;
} item;

static bool item_is(const cn__hnode *n, const void *key) {
  return cn__container_of(n, item, node)->key == *(const uint64_t *)key;
}

/* A poor hash on purpose: many keys share a bucket, so chains are
 * exercised too. */
static uint64_t weak_hash(uint64_t k) { return k % 97; }

static int drained;
static void count_and_clear(cn__hnode *n, void *arg) {
  item *it = cn__container_of(n, item, node);
  (void)arg;
  it->live = 0;
  drained++;
}

/* Against a model (each item knows whether it is in the table): random
 * adds, finds and takes, through several growths. */
static void test_htab_model(void **st) {
  enum { N = 5000 };
  static item items[N];
  cn__htab t = CN__HTAB_INIT;
  uint64_t seed = 88172645463325252ULL;
  size_t live = 0, i;
  (void)st;
  for (i = 0; i < N; i++)
    items[i].key = i * 7919;
  for (i = 0; i < 200000; i++) {
    size_t k;
    item *it;
    cn__hnode **lp;
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    k = (size_t)(seed % N);
    it = &items[k];
    lp = cn__htab_find(&t, weak_hash(it->key), item_is, &it->key);
    assert_true((lp != NULL) == (it->live != 0));
    if (lp)
      assert_ptr_equal(*lp, &it->node);
    if ((seed >> 40) % 2 == 0 && !it->live) {
      assert_int_equal(cn__htab_add(&t, &it->node, weak_hash(it->key)), 0);
      it->live = 1;
      live++;
    } else if (it->live) {
      assert_ptr_equal(cn__htab_take(&t, weak_hash(it->key), item_is, &it->key),
                       &it->node);
      it->live = 0;
      live--;
    }
    assert_int_equal(t.n, live);
    assert_true(t.n <= t.cap || t.cap == 0);
  }
  /* Drained, each live item is seen exactly once, and nothing is left. */
  drained = 0;
  cn__htab_drain(&t, count_and_clear, NULL);
  assert_int_equal(drained, (int)live);
  for (i = 0; i < N; i++)
    assert_int_equal(items[i].live, 0);
  assert_int_equal(t.n, 0);
  assert_null(t.b);
  {
    uint64_t k = 1;
    assert_null(cn__htab_find(&t, 1, item_is, &k));
    assert_null(cn__htab_take(&t, 1, item_is, &k));
  }
  cn__htab_clear(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_htab_model),
  };
  return run_group("util", tests, NULL, NULL);
}
