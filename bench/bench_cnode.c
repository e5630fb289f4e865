/* bench_cnode: the cnode side of `make bench`.
 *
 *   bench_cnode FIGURE N
 *
 * Runs one figure and prints one number on standard output (see
 * bench/README.md for the figures and their units).  Diagnostics go to
 * standard error as lines starting with '#'.  Every reply is checked: a
 * wrong or missing reply, or any error from the runtime, exits with status
 * 1 instead of printing a number, so a broken runtime cannot report a fast
 * one.  bench/beam_bench.erl runs the same figures on the BEAM.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnode.h"

#define CALL_TIMEOUT_MS 5000
#define WAIT_TIMEOUT_MS 120000
#define WARMUP_CALLS 1000

/* ---- Helpers ---------------------------------------------------------- */

static void die(const char *fmt, ...) {
  va_list ap;
  fputs("bench_cnode: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

/* Exits unless err is 0; what says which call failed. */
static void check(int err, const char *what) {
  if (err != 0)
    die("%s: %s (%s)", what, cn_err_name(err), cn_strerror(err));
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Resident set size of this process in bytes, from /proc/self/statm. */
static size_t rss_bytes(void) {
  unsigned long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    die("cannot open /proc/self/statm");
  if (fscanf(f, "%lu %lu", &size, &resident) != 2)
    die("cannot parse /proc/self/statm");
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Peak resident set size (VmHWM) of this process in KiB. */
static unsigned long vm_hwm_kib(void) {
  char line[256];
  unsigned long kib = 0;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    die("cannot open /proc/self/status");
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmHWM: %lu kB", &kib) == 1)
      break;
  fclose(f);
  if (kib == 0)
    die("no VmHWM in /proc/self/status");
  return kib;
}

static cn_runtime *runtime_new(void) {
  cn_runtime *rt = NULL;
  check(cn_runtime_new(NULL, &rt), "cn_runtime_new");
  return rt;
}

static void runtime_done(cn_runtime *rt) {
  check(cn_runtime_shutdown(rt, 60000), "cn_runtime_shutdown");
  cn_runtime_free(rt);
}

/* ---- The benchmarked server -------------------------------------------
 *
 * The C twin of beam_bench's gen_server: {get, N} is answered {ok, N}.
 * Anything else stops it with reason bad_request, which fails the figure.
 */

static int srv_handle_call(cn_proc *self, void *state, cn_term req,
                           cn_from *from, cn_buf *reply) {
  int64_t n;
  if (cn_match(req, "{get, ~i}", &n) != 0) {
    cn_set_reason(self, "bad_request");
    return CN_STOP;
  }
  if (cn_build(reply, "{ok, ~i}", n) != 0) {
    cn_set_reason(self, "build_failed");
    return CN_STOP;
  }
  return CN_REPLY;
}

static const cn_server_ops srv_ops = {
    .name = "bench_srv",
    .handle_call = srv_handle_call,
};

/* Calls server with {get, i} from this (plain) thread and checks the
 * reply is {ok, i}. */
static void call_get(cn_runtime *rt, cn_dest server, int64_t i, cn_buf *req,
                     cn_buf *reply) {
  int64_t got = -1;
  cn_buf_reset(req);
  check(cn_build(req, "{get, ~i}", i), "cn_build request");
  check(cn_call(rt, server, cn_buf_term(req), CALL_TIMEOUT_MS, reply),
        "cn_call");
  if (cn_match(cn_buf_term(reply), "{ok, ~i}", &got) != 0 || got != i)
    die("cn_call: wrong reply to {get, %" PRId64 "}", i);
}

/* ---- local_call: ns per cn_call from the main thread ------------------ */

static double fig_local_call(long n) {
  cn_runtime *rt = runtime_new();
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  cn_pid pid;
  cn_dest server;
  uint64_t t0, t1;

  check(cn_start(rt, &srv_ops, NULL, NULL, &pid), "cn_start");
  server = cn_to_pid(pid);
  for (int64_t i = 1; i <= WARMUP_CALLS; i++)
    call_get(rt, server, i, &req, &reply);

  t0 = now_ns();
  for (int64_t i = 1; i <= n; i++)
    call_get(rt, server, i, &req, &reply);
  t1 = now_ns();

  check(cn_stop(rt, server, NULL, 5000), "cn_stop");
  cn_buf_free(&req);
  cn_buf_free(&reply);
  runtime_done(rt);
  return (double)(t1 - t0) / (double)n;
}

/* ---- process_call: ns per cn_call_async between two processes ---------
 *
 * A client server gets {go, Main, N} by cast.  It calls the target with
 * {get, 1}; each reply callback checks {ok, I} and makes the next call,
 * and after the Nth reply the client sends {done, N} to the main thread
 * (or {error, Code, I} on any failure).
 */

typedef struct client {
  cn_pid target; /* the server called */
  cn_pid main;   /* where {done, N} goes */
  int64_t i;     /* the call in flight, 1..n */
  int64_t n;     /* calls in this run */
  cn_buf req;    /* scratch for requests */
} client;

static void client_next(cn_proc *self, client *c);

static void client_fail(cn_proc *self, client *c, int code) {
  cn_buf msg = CN_BUF_INIT;
  if (cn_build(&msg, "{error, ~i, ~i}", (int64_t)code, c->i) == 0)
    cn_send(cn_proc_runtime(self), cn_to_pid(c->main), cn_buf_term(&msg));
  cn_buf_free(&msg);
}

static void client_on_reply(cn_proc *self, void *state, int status,
                            cn_term reply, void *arg) {
  client *c = state;
  int64_t got = -1;

  if (status != 0) {
    client_fail(self, c, status);
    return;
  }
  if (cn_match(reply, "{ok, ~i}", &got) != 0 || got != c->i) {
    client_fail(self, c, CN_ENOMATCH);
    return;
  }
  if (c->i == c->n) {
    cn_buf msg = CN_BUF_INIT;
    int err = cn_build(&msg, "{done, ~i}", c->n);
    if (err == 0)
      err =
          cn_send(cn_proc_runtime(self), cn_to_pid(c->main), cn_buf_term(&msg));
    cn_buf_free(&msg);
    if (err != 0)
      client_fail(self, c, err);
    return;
  }
  c->i++;
  client_next(self, c);
}

static void client_next(cn_proc *self, client *c) {
  int err;
  cn_buf_reset(&c->req);
  err = cn_build(&c->req, "{get, ~i}", c->i);
  if (err == 0)
    err = cn_call_async(self, cn_to_pid(c->target), cn_buf_term(&c->req),
                        CALL_TIMEOUT_MS, client_on_reply, NULL);
  if (err != 0)
    client_fail(self, c, err);
}

static int client_handle_cast(cn_proc *self, void *state, cn_term msg) {
  client *c = state;
  if (cn_match(msg, "{go, ~p, ~i}", &c->main, &c->n) != 0 || c->n < 1)
    return CN_NOREPLY; /* main times out and reports the failure */
  c->i = 1;
  client_next(self, c);
  return CN_NOREPLY;
}

static const cn_server_ops client_ops = {
    .name = "bench_client",
    .handle_cast = client_handle_cast,
};

/* Runs n calls through the client and waits for {done, n}. */
static void client_run(cn_runtime *rt, cn_pid cpid, cn_pid self, int64_t n,
                       cn_buf *scratch) {
  int64_t got = -1, code = 0, at = 0;

  cn_buf_reset(scratch);
  check(cn_build(scratch, "{go, ~p, ~i}", &self, n), "cn_build go");
  check(cn_cast(rt, cn_to_pid(cpid), cn_buf_term(scratch)), "cn_cast");
  check(cn_receive(rt, WAIT_TIMEOUT_MS, scratch), "cn_receive");
  if (cn_match(cn_buf_term(scratch), "{error, ~i, ~i}", &code, &at) == 0)
    die("process_call: call %" PRId64 " failed: %s", at,
        cn_err_name((int)code));
  if (cn_match(cn_buf_term(scratch), "{done, ~i}", &got) != 0 || got != n)
    die("process_call: unexpected message instead of {done, N}");
}

static double fig_process_call(long n) {
  cn_runtime *rt = runtime_new();
  cn_buf scratch = CN_BUF_INIT;
  client c;
  cn_pid target, cpid, self;
  uint64_t t0, t1;

  memset(&c, 0, sizeof c);
  cn_buf_init(&c.req);
  check(cn_self(rt, &self), "cn_self");
  check(cn_start(rt, &srv_ops, NULL, NULL, &target), "cn_start target");
  c.target = target;
  check(cn_start(rt, &client_ops, &c, NULL, &cpid), "cn_start client");

  client_run(rt, cpid, self, WARMUP_CALLS, &scratch);
  t0 = now_ns();
  client_run(rt, cpid, self, n, &scratch);
  t1 = now_ns();

  check(cn_stop(rt, cn_to_pid(cpid), NULL, 5000), "cn_stop client");
  check(cn_stop(rt, cn_to_pid(target), NULL, 5000), "cn_stop target");
  cn_buf_free(&c.req);
  cn_buf_free(&scratch);
  runtime_done(rt);
  return (double)(t1 - t0) / (double)n;
}

/* ---- idle_memory: RSS growth per idle server, in bytes ---------------- */

static double fig_idle_memory(long n) {
  cn_runtime *rt = runtime_new();
  cn_pid *pids;
  size_t rss0, rss1;

  rss0 = rss_bytes();
  /* Like the Erlang side's list of pids, the array is part of the cost. */
  pids = malloc((size_t)n * sizeof *pids);
  if (pids == NULL)
    die("out of memory");
  for (long i = 0; i < n; i++)
    check(cn_start(rt, &srv_ops, NULL, NULL, &pids[i]), "cn_start");
  if (cn_process_count(rt) != (size_t)n)
    die("idle_memory: %zu processes alive, expected %ld", cn_process_count(rt),
        n);
  rss1 = rss_bytes();

  for (long i = 0; i < n; i++)
    check(cn_stop(rt, cn_to_pid(pids[i]), NULL, 5000), "cn_stop");
  if (cn_process_count(rt) != 0)
    die("idle_memory: %zu processes left after stopping all",
        cn_process_count(rt));
  free(pids);
  runtime_done(rt);
  return rss1 > rss0 ? (double)(rss1 - rss0) / (double)n : 0.0;
}

/* ---- spawn: cn_start + cn_stop pairs per second ----------------------- */

static double fig_spawn(long n) {
  cn_runtime *rt = runtime_new();
  cn_pid pid;
  uint64_t t0, t1;

  t0 = now_ns();
  for (long i = 0; i < n; i++) {
    check(cn_start(rt, &srv_ops, NULL, NULL, &pid), "cn_start");
    check(cn_stop(rt, cn_to_pid(pid), NULL, 5000), "cn_stop");
  }
  t1 = now_ns();
  if (cn_process_count(rt) != 0)
    die("spawn: %zu processes left", cn_process_count(rt));
  runtime_done(rt);
  return (double)n * 1e9 / (double)(t1 - t0);
}

/* ---- million: peak RSS in MiB with n idle servers, all stopped -------- */

static double fig_million(long n) {
  cn_runtime *rt = runtime_new();
  cn_pid *pids;
  uint64_t t0, t1, t2;
  size_t left;
  unsigned long hwm;

  pids = malloc((size_t)n * sizeof *pids);
  if (pids == NULL)
    die("out of memory");
  t0 = now_ns();
  for (long i = 0; i < n; i++)
    check(cn_start(rt, &srv_ops, NULL, NULL, &pids[i]), "cn_start");
  t1 = now_ns();
  if (cn_process_count(rt) != (size_t)n)
    die("million: %zu processes alive, expected %ld", cn_process_count(rt), n);
  for (long i = 0; i < n; i += n / 16 + 1)
    if (!cn_is_alive(rt, pids[i]))
      die("million: server %ld is not alive", i);

  /* Every server gets the exit signal shutdown, as the Erlang side sends
   * with exit(P, shutdown). */
  check(cn_runtime_shutdown(rt, 60000), "cn_runtime_shutdown");
  t2 = now_ns();
  left = cn_process_count(rt);
  if (left != 0)
    die("million: %zu processes left after shutdown", left);
  hwm = vm_hwm_kib();
  fprintf(stderr, "# million: started %ld in %.2f s, shut down in %.2f s\n", n,
          (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9);
  cn_runtime_free(rt);
  free(pids);
  return (double)hwm / 1024.0;
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    double (*run)(long n);
    const char *fmt;
  } figs[] = {
      {"local_call", fig_local_call, "%.1f\n"},
      {"process_call", fig_process_call, "%.1f\n"},
      {"idle_memory", fig_idle_memory, "%.0f\n"},
      {"spawn", fig_spawn, "%.0f\n"},
      {"million", fig_million, "%.1f\n"},
  };
  long n;
  char *end;

  if (argc != 3) {
    fprintf(stderr, "usage: %s FIGURE N\n", argv[0]);
    return 2;
  }
  n = strtol(argv[2], &end, 10);
  if (*end != '\0' || n < 1) {
    fprintf(stderr, "bench_cnode: N must be a positive integer\n");
    return 2;
  }
  for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
    if (strcmp(argv[1], figs[i].name) == 0) {
      double v = figs[i].run(n);
      printf(figs[i].fmt, v);
      return 0;
    }
  }
  fprintf(stderr, "bench_cnode: unknown figure %s\n", argv[1]);
  return 2;
}
