/* worker_pool: CPU-bound work spread over every core.
 *
 * W workers (W = online cores, one scheduler thread each) count the primes
 * below LIMIT, split into CHUNKS ranges.  A dispatcher process hands the
 * ranges out with cn_call_async, which does not block its scheduler: each
 * worker gets one range, and every reply brings that worker the next one.
 * When all are answered, the dispatcher sends {done, Counts} to main(), a
 * plain thread waiting in cn_receive on its own pid.
 *
 * The same job runs on 1 worker and on W, ROUNDS times each.  The program
 * prints the best time of each and the speed-up, and fails if any run
 * counts differently from the first, range by range, or misses the known
 * total.  It never fails on a low speed-up: machines are noisy.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sysconf */
#endif

#include <cnode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LIMIT 3000000    /* count the primes below this */
#define PRIMES 216816    /* how many there are: pi(3,000,000) */
#define CHUNKS 64        /* ranges the job is split into */
#define ROUNDS 3         /* runs on 1 worker, and as many on W */
#define TIMEOUT_MS 60000 /* for one range, and for a whole run */

/* ---- Workers ---------------------------------------------------------- */

static int is_prime(uint32_t n) {
  if (n < 4)
    return n >= 2;
  if (n % 2 == 0)
    return 0;
  for (uint32_t d = 3; d <= n / d; d += 2)
    if (n % d == 0)
      return 0;
  return 1;
}

/* {count_primes, Lo, Hi} -> {ok, how many primes are in [Lo, Hi)}.  The
 * loop runs inside the callback: it keeps this scheduler busy, and the
 * other workers run on the other schedulers meanwhile. */
static int worker_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                       cn_buf *reply) {
  uint64_t lo, hi, n = 0;

  if (cn_match(req, "{count_primes, ~u, ~u}", &lo, &hi) != 0 || hi > LIMIT)
    return cn_build(reply, "{error, badarg}") == 0 ? CN_REPLY : CN_STOP;
  for (uint64_t i = lo; i < hi; i++)
    n += is_prime((uint32_t)i);
  return cn_build(reply, "{ok, ~u}", n) == 0 ? CN_REPLY : CN_STOP;
}

/* No init: the start argument (NULL) is the state. */
static const cn_server_ops worker_ops = {.name = "worker",
                                         .handle_call = worker_call};

/* ---- The dispatcher --------------------------------------------------- */

/* The dispatcher's state.  main() allocates it and hands it over through
 * cn_start; from then on only the dispatcher touches it, until main frees
 * it after cn_runtime_free. */
typedef struct pool {
  cn_pid *workers;         /* all W workers */
  unsigned *current;       /* the range each worker is counting */
  unsigned nworkers;       /* W */
  cn_pid client;           /* who asked for the run under way */
  unsigned next;           /* the next range to hand out */
  unsigned answered;       /* ranges counted so far */
  int failed;              /* the run was given up: ignore late replies */
  uint64_t counts[CHUNKS]; /* primes in each range */
} pool;

/* Tells the client that the run failed with err. */
static void fail(cn_proc *self, pool *p, int err) {
  cn_buf msg = CN_BUF_INIT;

  p->failed = 1;
  if (cn_build(&msg, "{error, ~i}", (int64_t)err) == 0)
    cn_send(cn_proc_runtime(self), cn_to_pid(p->client), cn_buf_term(&msg));
  cn_buf_free(&msg);
}

/* Sends the client {done, [Count1, ..., CountN]}, built with the low-level
 * encoders: a tuple of arity 2, then its elements. */
static void done(cn_proc *self, pool *p) {
  cn_buf msg = CN_BUF_INIT;

  cn_put_tuple(&msg, 2);
  cn_put_atom(&msg, "done");
  cn_put_list(&msg, CHUNKS);
  for (unsigned i = 0; i < CHUNKS; i++)
    cn_put_uint(&msg, p->counts[i]);
  cn_put_nil(&msg);
  if (msg.err == 0) /* the first error of the sequence sticks */
    cn_send(cn_proc_runtime(self), cn_to_pid(p->client), cn_buf_term(&msg));
  else
    fail(self, p, msg.err);
  cn_buf_free(&msg);
}

static void hand_out(cn_proc *self, pool *p, unsigned w);

/* A worker answered: record its count, then give it the next range.  Runs
 * in the dispatcher, with its state, once per cn_call_async. */
static void on_reply(cn_proc *self, void *state, int status, cn_term reply,
                     void *arg) {
  pool *p = state;
  unsigned w = (unsigned)(uintptr_t)arg;
  uint64_t n;

  if (p->failed)
    return;
  if (status == 0 && cn_match(reply, "{ok, ~u}", &n) != 0)
    status = CN_ENOMATCH;
  if (status != 0) {
    fail(self, p, status);
    return;
  }
  p->counts[p->current[w]] = n;
  if (++p->answered == CHUNKS)
    done(self, p);
  else
    hand_out(self, p, w);
}

/* Gives worker w the next range, if any is left. */
static void hand_out(cn_proc *self, pool *p, unsigned w) {
  uint64_t size = (LIMIT + CHUNKS - 1) / CHUNKS, lo, hi;
  cn_buf req = CN_BUF_INIT;
  int err;

  if (p->next == CHUNKS)
    return;
  p->current[w] = p->next++;
  lo = p->current[w] * size;
  hi = lo + size < LIMIT ? lo + size : LIMIT;
  err = cn_build(&req, "{count_primes, ~u, ~u}", lo, hi);
  if (err == 0) /* returns at once; on_reply runs when the answer comes */
    err = cn_call_async(self, cn_to_pid(p->workers[w]), cn_buf_term(&req),
                        TIMEOUT_MS, on_reply, (void *)(uintptr_t)w);
  if (err != 0)
    fail(self, p, err);
  cn_buf_free(&req);
}

/* {run, Client, N}: count all the ranges on workers 1..N. */
static int dispatcher_cast(cn_proc *self, void *state, cn_term msg) {
  pool *p = state;
  uint64_t n;

  if (cn_match(msg, "{run, ~p, ~u}", &p->client, &n) != 0 || n == 0 ||
      n > p->nworkers)
    return CN_NOREPLY; /* not a request we know: ignore it */
  p->next = p->answered = 0;
  p->failed = 0;
  for (unsigned w = 0; w < n && !p->failed; w++)
    hand_out(self, p, w);
  return CN_NOREPLY;
}

static const cn_server_ops dispatcher_ops = {.name = "dispatcher",
                                             .handle_cast = dispatcher_cast};

/* ---- main(): a plain thread ------------------------------------------- */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Asks the dispatcher for one run on nworkers workers and waits for the
 * counts.  Returns 0 with counts[] and *secs set, or an error. */
static int run(cn_runtime *rt, cn_pid dispatcher, unsigned nworkers,
               uint64_t counts[CHUNKS], double *secs) {
  cn_buf req = CN_BUF_INIT, msg = CN_BUF_INIT;
  cn_term list, e;
  cn_iter it;
  size_t n = 0;
  cn_pid me;
  int64_t code;
  double t0 = now();
  int err;

  err = cn_self(rt, &me); /* this thread's own pid, for the answer */
  if (err == 0)
    err = cn_build(&req, "{run, ~p, ~u}", &me, (uint64_t)nworkers);
  if (err == 0)
    err = cn_cast(rt, cn_to_pid(dispatcher), cn_buf_term(&req));
  if (err == 0)
    err = cn_receive(rt, TIMEOUT_MS, &msg);
  *secs = now() - t0;
  if (err == 0 && cn_match(cn_buf_term(&msg), "{error, ~i}", &code) == 0)
    err = (int)code; /* a call to a worker failed */
  else if (err == 0 && cn_match(cn_buf_term(&msg), "{done, ~t}", &list) != 0)
    err = CN_ENOMATCH;
  if (err == 0 && (cn_iter_init(&it, list, &n) != 0 || n != CHUNKS))
    err = CN_ENOMATCH; /* not a list of CHUNKS counts */
  for (size_t i = 0; err == 0 && cn_iter_next(&it, &e); i++)
    err = cn_get_uint64(e, &counts[i]);
  cn_buf_free(&req);
  cn_buf_free(&msg);
  return err;
}

static uint64_t sum(const uint64_t counts[CHUNKS]) {
  uint64_t total = 0;
  for (unsigned i = 0; i < CHUNKS; i++)
    total += counts[i];
  return total;
}

int main(void) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  cn_runtime_options opts = {.schedulers = cores > 0 ? (unsigned)cores : 1};
  unsigned nw = opts.schedulers; /* W: one worker per scheduler */
  uint64_t first[CHUNKS], counts[CHUNKS];
  double best[2] = {1e9, 1e9}; /* the fastest run on 1 and on W workers */
  cn_runtime *rt = NULL;
  cn_pid dispatcher;
  pool *p = calloc(1, sizeof *p);
  int err = 0, wrong = 0;

  if (p == NULL || (p->workers = calloc(nw, sizeof(cn_pid))) == NULL ||
      (p->current = calloc(nw, sizeof(unsigned))) == NULL)
    err = CN_ENOMEM;
  if (err == 0 && (err = cn_runtime_new(&opts, &rt)) != 0)
    rt = NULL;
  for (unsigned w = 0; err == 0 && w < nw; w++)
    err = cn_start(rt, &worker_ops, NULL, NULL, &p->workers[w]);
  if (err == 0) { /* p is the dispatcher's until cn_runtime_free */
    p->nworkers = nw;
    err = cn_start(rt, &dispatcher_ops, p, NULL, &dispatcher);
  }
  printf("worker_pool: %u cores; counting the primes below %d in %d "
         "ranges, best of %d\n",
         nw, LIMIT, CHUNKS, ROUNDS);

  /* 1 worker, W workers, 1, W ...: taking turns spreads whatever else the
   * machine is doing over both, and the fastest run of each is the one
   * least disturbed by it.  Every run must count what the first did. */
  for (unsigned r = 0; err == 0 && !wrong && r < 2 * ROUNDS; r++) {
    unsigned on = r % 2 == 0 ? 1 : nw;
    double secs;

    if ((err = run(rt, dispatcher, on, counts, &secs)) != 0)
      break;
    if (r == 0)
      memcpy(first, counts, sizeof counts);
    wrong = memcmp(first, counts, sizeof counts) != 0 || sum(counts) != PRIMES;
    if (secs < best[r % 2])
      best[r % 2] = secs;
  }
  if (rt != NULL)
    cn_runtime_free(rt); /* stops the workers and the dispatcher */
  if (p != NULL) {
    free(p->workers);
    free(p->current);
    free(p);
  }

  if (err != 0) {
    fprintf(stderr, "worker_pool: FAILED: %s: %s\n", cn_err_name(err),
            cn_strerror(err));
    return 1;
  }
  if (wrong) {
    fprintf(stderr,
            "worker_pool: FAILED: counted %llu primes (first run: "
            "%llu), want %d, the same in every run, range by range\n",
            (unsigned long long)sum(counts), (unsigned long long)sum(first),
            PRIMES);
    return 1;
  }
  printf("worker_pool: 1 worker:  %d primes in %.3f s\n", PRIMES, best[0]);
  printf("worker_pool: %u workers: %d primes in %.3f s\n", nw, PRIMES, best[1]);
  printf("worker_pool: speed-up %.2fx on %u workers (ideal %u.00x)\n",
         best[0] / best[1], nw, nw);
  printf("worker_pool: ok\n");
  return 0;
}
