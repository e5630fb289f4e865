/* What every cmocka test program here shares: timeouts that scale under
 * sanitizers, terms from a format, unique node names, and a main() that
 * can run the tests in any order.
 *
 * Include after <cmocka.h>. */
#ifndef CN_TEST_HELPERS_H
#define CN_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include <cnode.h>

/* ms scaled by CN_TEST_TIMEOUT_MULT (sanitizer runs set it to 3; it may be
 * fractional, and is never taken below 1). */
int tmo(int ms);

/* b reset and then built from fmt (cn_build); the test fails on an error.
 * The term lives in b until the next reset. */
cn_term T(cn_buf *b, const char *fmt, ...);

/* A runtime with nsched scheduler threads and default options. */
cn_runtime *rt_new(unsigned nsched);

/* A node name unique to this run on this host, so that runs never clash in
 * epmd: cntest_<tag>_<pid>_<n>@<short host>. */
void node_name(char *out, size_t cap, const char *tag);

/* Milliseconds since t0, a uv_hrtime() reading. */
double ms_since(uint64_t t0);

/* Runs the group in the order CN_TEST_ORDER names: "given" (the default),
 * "reverse", or "shuffle" (seeded by CN_TEST_SEED, else the time; the seed
 * is printed so that a failing order can be replayed).  CN_TEST_ONLY runs
 * only the tests whose names match that glob.  No test here may depend on
 * another having run: `make test` runs every group reversed as well. */
int cn_test_run_group(const char *name, const struct CMUnitTest *tests,
                      size_t n, CMFixtureFunction setup,
                      CMFixtureFunction teardown);

#define run_group(name, tests, setup, teardown)                                \
  cn_test_run_group(name, tests, sizeof(tests) / sizeof((tests)[0]), setup,    \
                    teardown)

#endif
