/* The shared test helpers (helpers.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cnode.h>
#include <uv.h>

#include "helpers.h"

int tmo(int ms) {
  const char *m = getenv("CN_TEST_TIMEOUT_MULT");
  double k = m ? atof(m) : 1;
  return (int)(ms * (k >= 1 ? k : 1));
}

cn_term T(cn_buf *b, const char *fmt, ...) {
  va_list ap;
  cn_buf_reset(b);
  va_start(ap, fmt);
  assert_int_equal(cn_vbuild(b, fmt, ap), 0);
  va_end(ap);
  return cn_buf_term(b);
}

cn_runtime *rt_new(unsigned nsched) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  memset(&o, 0, sizeof(o));
  o.schedulers = nsched;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  return rt;
}

void node_name(char *out, size_t cap, const char *tag) {
  static int seq;
  char host[256];
  char *dot;
  gethostname(host, sizeof(host));
  host[sizeof(host) - 1] = 0;
  if ((dot = strchr(host, '.')))
    *dot = 0;
  snprintf(out, cap, "cntest_%s_%d_%d@%.64s", tag, (int)getpid(), ++seq, host);
}

double ms_since(uint64_t t0) { return (double)(uv_hrtime() - t0) / 1e6; }

/* xorshift64*: enough to shuffle a few hundred tests reproducibly. */
static uint64_t next_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

int cn_test_run_group(const char *name, const struct CMUnitTest *tests,
                      size_t n, CMFixtureFunction setup,
                      CMFixtureFunction teardown) {
  const char *order = getenv("CN_TEST_ORDER");
  const char *only = getenv("CN_TEST_ONLY");
  struct CMUnitTest *t = malloc(n * sizeof(*t));
  size_t i;
  int rc;
  if (!t)
    return 1;
  memcpy(t, tests, n * sizeof(*t));
  if (order && strcmp(order, "reverse") == 0) {
    for (i = 0; i < n / 2; i++) {
      struct CMUnitTest x = t[i];
      t[i] = t[n - 1 - i];
      t[n - 1 - i] = x;
    }
  } else if (order && strcmp(order, "shuffle") == 0) {
    const char *s = getenv("CN_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
    uint64_t st = seed ? seed : 1;
    printf("[ ORDER    ] %s shuffled, CN_TEST_SEED=%llu\n", name,
           (unsigned long long)seed);
    for (i = n; i > 1; i--) {
      size_t j = (size_t)(next_rand(&st) % i);
      struct CMUnitTest x = t[i - 1];
      t[i - 1] = t[j];
      t[j] = x;
    }
  } else if (order && strcmp(order, "given") != 0) {
    fprintf(stderr, "CN_TEST_ORDER=%s: want given, reverse or shuffle\n",
            order);
    free(t);
    return 1;
  }
  if (only)
    cmocka_set_test_filter(only);
  rc = _cmocka_run_group_tests(name, t, n, setup, teardown);
  free(t);
  return rc;
}
