/* bench_cclient: the C client of the remote figure c_client_call.
 *
 *   bench_cclient SNAME PEER_NODE THREADS CALLS_PER_THREAD
 *
 * Starts a runtime named SNAME (as erl -sname) with distribution, then
 * THREADS plain threads each make CALLS_PER_THREAD blocking cn_call()s of
 * {echo, I} to {echo, PEER_NODE}, a BEAM node, and check that each reply
 * is I.  Prints the calls per second over all threads on standard output
 * (one number, nothing else); diagnostics go to standard error.  Any
 * error or wrong reply exits 1 without a number.
 *
 * The cookie comes from $BENCH_COOKIE, else from ~/.erlang.cookie as erl
 * finds it (cn_cookie_load).  bench/remote_bench.erl runs it, and runs the
 * same calls from a BEAM client node for the other side of the figure.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode.h"

#define CALL_TIMEOUT_MS 10000
#define WARMUP_CALLS 200
#define MAX_THREADS 1024

typedef struct worker {
  pthread_t tid;
  cn_runtime *rt;
  const char *peer;
  long calls;
  int err; /* 0, or the first error (CN_EINVAL: a wrong reply) */
} worker;

static pthread_barrier_t start_line;

static void die(const char *fmt, ...) {
  va_list ap;
  fputs("bench_cclient: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void check(int err, const char *what) {
  if (err != 0)
    die("%s: %s (%s)", what, cn_err_name(err), cn_strerror(err));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n echo calls of {echo, I}; returns 0 or the first error. */
static int calls(worker *w, long n) {
  cn_dest to = cn_to_remote("echo", w->peer);
  cn_buf reply;
  int64_t got;
  long i;
  int err = 0;

  cn_buf_init(&reply);
  for (i = 0; i < n && err == 0; i++) {
    err =
        cn_callf(w->rt, to, CALL_TIMEOUT_MS, &reply, "{echo, ~i}", (int64_t)i);
    if (err == 0 && (cn_get_int64(cn_buf_term(&reply), &got) != 0 || got != i))
      err = CN_EINVAL;
  }
  cn_buf_free(&reply);
  return err;
}

static void *work(void *arg) {
  worker *w = arg;
  /* As remote_bench's callers: half as many calls again, unmeasured, so
   * that the figure is the steady state. */
  w->err = calls(w, w->calls / 2 > WARMUP_CALLS ? w->calls / 2 : WARMUP_CALLS);
  pthread_barrier_wait(&start_line);
  if (w->err == 0)
    w->err = calls(w, w->calls);
  pthread_barrier_wait(&start_line);
  return NULL;
}

int main(int argc, char **argv) {
  char name[CN_MAX_NODE_NAME + 1];
  cn_runtime_options ro = {0};
  cn_dist_options dopts = {0};
  cn_cookie cookie;
  cn_runtime *rt;
  worker *ws;
  long threads, per;
  double t0, t1;
  int i;

  if (argc != 5)
    die("usage: bench_cclient SNAME PEER_NODE THREADS CALLS_PER_THREAD");
  threads = strtol(argv[3], NULL, 10);
  per = strtol(argv[4], NULL, 10);
  if (threads < 1 || threads > MAX_THREADS || per < 1)
    die("bad THREADS or CALLS_PER_THREAD");
  check(cn_node_shortname(argv[1], name, sizeof(name)), "node name");
  if (getenv("BENCH_COOKIE")) {
    dopts.cookie = getenv("BENCH_COOKIE");
  } else {
    if (cn_cookie_load(&cookie) != 0)
      die("cookie: %s", cookie.error);
    dopts.cookie = cookie.value;
  }
  ro.node_name = name;
  check(cn_runtime_new(&ro, &rt), "cn_runtime_new");
  check(cn_dist_start(rt, &dopts), "cn_dist_start");
  check(cn_dist_connect(rt, argv[2], 10000), "cn_dist_connect");

  ws = calloc((size_t)threads, sizeof(*ws));
  if (!ws)
    die("out of memory");
  if (pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1) != 0)
    die("pthread_barrier_init failed");
  for (i = 0; i < threads; i++) {
    ws[i].rt = rt;
    ws[i].peer = argv[2];
    ws[i].calls = per;
    if (pthread_create(&ws[i].tid, NULL, work, &ws[i]) != 0)
      die("pthread_create failed");
  }
  pthread_barrier_wait(&start_line); /* all warmed up */
  t0 = now_s();
  pthread_barrier_wait(&start_line); /* all done */
  t1 = now_s();
  for (i = 0; i < threads; i++) {
    pthread_join(ws[i].tid, NULL);
    check(ws[i].err, "cn_call {echo, I}");
  }
  printf("%.0f\n", (double)(threads * per) / (t1 - t0));
  fflush(stdout);
  free(ws);
  pthread_barrier_destroy(&start_line);
  cn_runtime_shutdown(rt, 5000);
  cn_runtime_free(rt);
  return 0;
}
