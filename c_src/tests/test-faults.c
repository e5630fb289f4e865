/* Fault tests from C: a real erl node killed with SIGKILL under 1,000
 * calls, links and monitors from this C node.
 *
 * The test starts `erl` itself (posix_spawnp; unique -sname, its own
 * -setcookie, -noinput) with a registered process cnfault that acts as a
 * gen_server which never answers `hold`: it keeps the caller's From.  It
 * also answers `count` (how many calls it holds) and {spawn, N} (N idle
 * processes, for links and monitors).  From C, ten server processes make
 * 100 cn_call_async calls each to cnfault, so 1,000 calls are in flight;
 * the main thread links to 100 remote pids and monitors 100 more and the
 * name; each caller process traps exits, links to 10 remote pids and
 * monitors 10 more.  Then erl gets SIGKILL, and the test checks that every
 * call completed with CN_ENOCONN, that every monitor fired with
 * {'DOWN', Ref, process, Object, noconnection} and every link with
 * {'EXIT', Pid, noconnection}, and that the distribution layer holds
 * nothing for the dead node: cn_dist_get_stats gives 0 nodes up, links,
 * monitors and queued messages.
 *
 * The erl node halts on its own when this process is gone (it polls
 * /proc/PPID) or after 10 minutes, so a crashed test leaves nothing
 * behind.  Without erl on PATH the test is skipped, with the reason
 * printed; anywhere else (CI) it runs. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <cnode.h>
#include <uv.h>
#include "helpers.h"

extern char **environ;

#define CALLERS 10        /* C processes making calls */
#define CALLS_EACH 100    /* in-flight calls per C process */
#define MAIN_LINKS 100    /* remote pids the main thread links to */
#define MAIN_MONITORS 100 /* remote pids the main thread monitors */
#define PROC_LINKS 10     /* per caller process */
#define PROC_MONITORS 10  /* per caller process */
#define CALLS (CALLERS * CALLS_EACH)
#define REMOTE_PIDS                                                            \
  (MAIN_LINKS + MAIN_MONITORS + CALLERS * (PROC_LINKS + PROC_MONITORS))

static void short_host(char *out, size_t cap) {
  char *dot;
  gethostname(out, cap);
  out[cap - 1] = 0;
  if ((dot = strchr(out, '.')))
    *dot = 0;
}

/* True when an executable erl is on PATH. */
static bool erl_on_path(void) {
  const char *path = getenv("PATH");
  char dir[4096];
  const char *p, *colon;
  size_t n;

  for (p = path; p && *p; p = colon ? colon + 1 : NULL) {
    colon = strchr(p, ':');
    n = colon ? (size_t)(colon - p) : strlen(p);
    if (n == 0 || n + sizeof("/erl") > sizeof(dir))
      continue;
    memcpy(dir, p, n);
    strcpy(dir + n, "/erl");
    if (access(dir, X_OK) == 0)
      return true;
  }
  return false;
}

/* ---- The erl node ------------------------------------------------------ */

/* What the erl node runs.  %d is this process's pid: a watchdog halts the
 * node once /proc/PID is gone.  cnfault holds `hold` calls (keeps From and
 * never answers), answers `count` and {spawn, N}. */
static const char erl_eval[] =
    "Parent = \"/proc/%d\","
    "spawn(fun() -> (fun W() -> timer:sleep(200),"
    "  case file:read_file_info(Parent) of {ok, _} -> W();"
    "  _ -> erlang:halt(3) end end)() end),"
    "spawn(fun() -> timer:sleep(600000), erlang:halt(4) end),"
    "register(cnfault, spawn(fun() -> (fun L(Held, Kids) ->"
    "  receive"
    "    {'$gen_call', From, hold} -> L([From | Held], Kids);"
    "    {'$gen_call', From, count} ->"
    "      gen_server:reply(From, length(Held)), L(Held, Kids);"
    "    {'$gen_call', From, {spawn, N}} ->"
    "      Ps = [spawn(fun() -> receive never -> ok end end)"
    "            || _ <- lists:seq(1, N)],"
    "      gen_server:reply(From, Ps), L(Held, Ps ++ Kids);"
    "    _ -> L(Held, Kids)"
    "  end end)([], []) end)).";

static pid_t erl_pid = -1;

static pid_t start_erl(const char *sname, const char *cookie) {
  char eval[sizeof(erl_eval) + 32];
  char *argv[] = {"erl",        "-sname",       (char *)sname,
                  "-setcookie", (char *)cookie, "-noinput",
                  "-eval",      eval,           NULL};
  pid_t pid;
  int rc;

  snprintf(eval, sizeof(eval), erl_eval, (int)getpid());
  rc = posix_spawnp(&pid, "erl", NULL, NULL, argv, environ);
  if (rc != 0)
    fail_msg("posix_spawnp erl: %s", strerror(rc));
  return pid;
}

/* Kills erl (if this test started one that still runs) and reaps it. */
static void stop_erl(void) {
  if (erl_pid > 0) {
    kill(erl_pid, SIGKILL);
    waitpid(erl_pid, NULL, 0);
    erl_pid = -1;
  }
}

/* ---- The caller processes --------------------------------------------- */

static atomic_int calls_enoconn; /* calls that ended with CN_ENOCONN */
static atomic_int calls_other;   /* calls that ended any other way */
static atomic_int proc_downs;    /* DOWN noconnection in caller processes */
static atomic_int proc_exits;    /* EXIT noconnection in caller processes */
static atomic_int proc_other;    /* any other info in caller processes */

static void on_reply(cn_proc *self, void *state, int status, cn_term reply,
                     void *arg) {
  (void)self;
  (void)state;
  (void)reply;
  (void)arg;
  if (status == CN_ENOCONN)
    atomic_fetch_add(&calls_enoconn, 1);
  else
    atomic_fetch_add(&calls_other, 1);
}

/* Calls: {go, N, Node}: N async calls of hold to {cnfault, Node}, then ok;
 * {watch, Links, Monitors}: traps exits, links to each pid of Links and
 * monitors each of Monitors, then ok. */
static int caller_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                       cn_buf *reply) {
  char node[256];
  cn_runtime *rt = cn_proc_runtime(self);
  cn_buf q = CN_BUF_INIT;
  cn_term links, mons, e;
  cn_iter it;
  int64_t n, i;
  cn_pid pid;
  cn_ref ref;
  int err = 0;
  (void)state;
  (void)from;

  if (cn_match(req, "{go, ~i, ~a}", &n, node, sizeof(node)) == 0) {
    cn_build(&q, "hold");
    for (i = 0; i < n && err == 0; i++)
      err = cn_call_async(self, cn_to_remote("cnfault", node), cn_buf_term(&q),
                          600000, on_reply, NULL);
    cn_buf_free(&q);
    cn_build(reply, err == 0 ? "ok" : "{error, ~a}", cn_err_name(err));
    return CN_REPLY;
  }
  if (cn_match(req, "{watch, ~t, ~t}", &links, &mons) == 0) {
    cn_trap_exit(self, true, NULL);
    if (cn_iter_init(&it, links, NULL) == 0)
      while (err == 0 && cn_iter_next(&it, &e))
        if ((err = cn_get_pid(e, &pid)) == 0)
          err = cn_link(rt, pid);
    if (err == 0 && cn_iter_init(&it, mons, NULL) == 0)
      while (err == 0 && cn_iter_next(&it, &e))
        if ((err = cn_get_pid(e, &pid)) == 0)
          err = cn_monitor(rt, cn_to_pid(pid), &ref);
    cn_build(reply, err == 0 ? "ok" : "{error, ~a}", cn_err_name(err));
    return CN_REPLY;
  }
  cn_build(reply, "{error, unknown_call}");
  return CN_REPLY;
}

static int caller_info(cn_proc *self, void *state, cn_term msg) {
  (void)self;
  (void)state;
  if (cn_match(msg, "{'DOWN', _, process, _, noconnection}") == 0)
    atomic_fetch_add(&proc_downs, 1);
  else if (cn_match(msg, "{'EXIT', _, noconnection}") == 0)
    atomic_fetch_add(&proc_exits, 1);
  else
    atomic_fetch_add(&proc_other, 1);
  return CN_NOREPLY;
}

static const cn_server_ops caller_ops = {.name = "fault_caller",
                                         .handle_call = caller_call,
                                         .handle_info = caller_info};

/* ---- Helpers ---------------------------------------------------------- */

static bool pid_in(const cn_pid *p, const cn_pid *set, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (cn_pid_equal(p, &set[i]))
      return true;
  return false;
}

static int ref_index(const cn_ref *r, const cn_ref *set, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (cn_ref_equal(r, &set[i]))
      return (int)i;
  return -1;
}

/* Appends a list of pids[from, from + n) to b. */
static void put_pids(cn_buf *b, const cn_pid *pids, size_t n) {
  size_t i;
  cn_put_list(b, (uint32_t)n);
  for (i = 0; i < n; i++)
    cn_put_pid(b, &pids[i]);
  cn_put_nil(b);
}

/* ---- The test --------------------------------------------------------- */

static void test_peer_killed_under_calls(void **st) {
  char host[64], cname[128], ename[64], enode[160], cookie[64];
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  static cn_pid remote[REMOTE_PIDS];
  static cn_ref mrefs[MAIN_MONITORS + 1];
  static bool down_seen[MAIN_MONITORS + 1];
  cn_pid callers[CALLERS];
  cn_runtime_options o;
  cn_dist_options d;
  cn_dist_stats s;
  cn_runtime *rt = NULL;
  uint64_t t0, deadline;
  size_t n = 0, i;
  int64_t held = 0;
  int err, downs = 0, exits = 0, stray = 0;
  cn_iter it;
  cn_term e;
  (void)st;

  if (!erl_on_path()) {
    print_message("test-faults: skipped: erl is not on PATH\n");
    skip();
  }
  short_host(host, sizeof(host));
  snprintf(ename, sizeof(ename), "cnfault_erl_%d", (int)getpid());
  snprintf(enode, sizeof(enode), "%s@%s", ename, host);
  snprintf(cname, sizeof(cname), "cnfault_c_%d@%s", (int)getpid(), host);
  snprintf(cookie, sizeof(cookie), "faults%d_%llu", (int)getpid(),
           (unsigned long long)uv_hrtime());
  erl_pid = start_erl(ename, cookie);

  memset(&o, 0, sizeof(o));
  o.schedulers = 2;
  o.node_name = cname;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  memset(&d, 0, sizeof(d));
  d.cookie = cookie;
  d.handshake_ms = (unsigned)tmo(5000);
  assert_int_equal(cn_dist_start(rt, &d), 0);

  /* Wait until erl is up and cnfault answers. */
  t0 = uv_hrtime();
  deadline = t0 + (uint64_t)tmo(60000) * 1000000ULL;
  while ((err = cn_call(rt, cn_to_remote("cnfault", enode), T(&q, "count"),
                        1000, &r)) != 0) {
    assert_true(uv_hrtime() < deadline);
    assert_int_equal(waitpid(erl_pid, NULL, WNOHANG), 0); /* erl runs */
    uv_sleep(100);
  }
  print_message("test-faults: erl answered after %.0f ms\n", ms_since(t0));

  /* Remote pids to link to and monitor. */
  assert_int_equal(cn_call(rt, cn_to_remote("cnfault", enode),
                           T(&q, "{spawn, ~i}", (int64_t)REMOTE_PIDS),
                           tmo(10000), &r),
                   0);
  assert_int_equal(cn_iter_init(&it, cn_buf_term(&r), NULL), 0);
  while (cn_iter_next(&it, &e)) {
    assert_true(n < REMOTE_PIDS);
    assert_int_equal(cn_get_pid(e, &remote[n++]), 0);
  }
  assert_int_equal(n, REMOTE_PIDS);

  /* The main thread (a thread traps exits): links, monitors by pid, and
   * one monitor by name. */
  for (i = 0; i < MAIN_LINKS; i++)
    assert_int_equal(cn_link(rt, remote[i]), 0);
  for (i = 0; i < MAIN_MONITORS; i++)
    assert_int_equal(
        cn_monitor(rt, cn_to_pid(remote[MAIN_LINKS + i]), &mrefs[i]), 0);
  assert_int_equal(
      cn_monitor(rt, cn_to_remote("cnfault", enode), &mrefs[MAIN_MONITORS]), 0);

  /* The caller processes: links and monitors of their own, then the
   * calls. */
  for (i = 0; i < CALLERS; i++) {
    const cn_pid *mine =
        remote + MAIN_LINKS + MAIN_MONITORS + i * (PROC_LINKS + PROC_MONITORS);
    assert_int_equal(cn_start(rt, &caller_ops, NULL, NULL, &callers[i]), 0);
    cn_buf_reset(&q);
    cn_put_tuple(&q, 3);
    cn_put_atom(&q, "watch");
    put_pids(&q, mine, PROC_LINKS);
    put_pids(&q, mine + PROC_LINKS, PROC_MONITORS);
    assert_int_equal(q.err, 0);
    assert_int_equal(
        cn_call(rt, cn_to_pid(callers[i]), cn_buf_term(&q), tmo(10000), &r), 0);
    assert_int_equal(cn_match(cn_buf_term(&r), "ok"), 0);
  }
  for (i = 0; i < CALLERS; i++) {
    assert_int_equal(cn_call(rt, cn_to_pid(callers[i]),
                             T(&q, "{go, ~i, ~a}", (int64_t)CALLS_EACH, enode),
                             tmo(10000), &r),
                     0);
    assert_int_equal(cn_match(cn_buf_term(&r), "ok"), 0);
  }

  /* Every call is in flight: cnfault holds all 1,000. */
  deadline = uv_hrtime() + (uint64_t)tmo(30000) * 1000000ULL;
  for (;;) {
    assert_int_equal(cn_call(rt, cn_to_remote("cnfault", enode), T(&q, "count"),
                             tmo(10000), &r),
                     0);
    assert_int_equal(cn_get_int64(cn_buf_term(&r), &held), 0);
    if (held == CALLS || uv_hrtime() > deadline)
      break;
    uv_sleep(10);
  }
  assert_int_equal(held, CALLS);
  assert_int_equal(atomic_load(&calls_enoconn) + atomic_load(&calls_other), 0);
  assert_int_equal(cn_dist_get_stats(rt, &s), 0);
  print_message("test-faults: before the kill: nodes_up=%llu links=%llu "
                "monitors=%llu queued=%llu\n",
                (unsigned long long)s.nodes_up, (unsigned long long)s.links,
                (unsigned long long)s.monitors, (unsigned long long)s.queued);
  assert_int_equal(s.nodes_up, 1);
  assert_int_equal(s.links, MAIN_LINKS + CALLERS * PROC_LINKS);
  assert_true(s.monitors >=
              CALLS + MAIN_MONITORS + 1 + CALLERS * PROC_MONITORS);

  /* SIGKILL. */
  t0 = uv_hrtime();
  assert_int_equal(kill(erl_pid, SIGKILL), 0);
  assert_int_equal(waitpid(erl_pid, NULL, 0), erl_pid);
  erl_pid = -1;

  /* The main thread's links and monitors. */
  while (downs + exits < MAIN_LINKS + MAIN_MONITORS + 1) {
    cn_pid pid;
    cn_ref ref;
    cn_term obj;
    int k;
    assert_int_equal(cn_receive(rt, tmo(10000), &r), 0);
    if (cn_match(cn_buf_term(&r), "{'DOWN', ~r, process, ~t, noconnection}",
                 &ref, &obj) == 0 &&
        (k = ref_index(&ref, mrefs, MAIN_MONITORS + 1)) >= 0 && !down_seen[k]) {
      down_seen[k] = true;
      downs++;
    } else if (cn_match(cn_buf_term(&r), "{'EXIT', ~p, noconnection}", &pid) ==
                   0 &&
               pid_in(&pid, remote, MAIN_LINKS)) {
      exits++;
    } else {
      stray++;
    }
    assert_int_equal(stray, 0);
  }
  /* The calls and the caller processes' links and monitors. */
  deadline = uv_hrtime() + (uint64_t)tmo(10000) * 1000000ULL;
  while ((atomic_load(&calls_enoconn) + atomic_load(&calls_other) < CALLS ||
          atomic_load(&proc_downs) < CALLERS * PROC_MONITORS ||
          atomic_load(&proc_exits) < CALLERS * PROC_LINKS) &&
         uv_hrtime() < deadline)
    uv_sleep(1);
  print_message("test-faults: after SIGKILL of erl, in %.1f ms: %d of %d "
                "calls CN_ENOCONN; DOWN noconnection %d of %d; EXIT "
                "noconnection %d of %d\n",
                ms_since(t0), atomic_load(&calls_enoconn), CALLS,
                downs + atomic_load(&proc_downs),
                MAIN_MONITORS + 1 + CALLERS * PROC_MONITORS,
                exits + atomic_load(&proc_exits),
                MAIN_LINKS + CALLERS * PROC_LINKS);
  assert_int_equal(atomic_load(&calls_enoconn), CALLS);
  assert_int_equal(atomic_load(&calls_other), 0);
  assert_int_equal(downs, MAIN_MONITORS + 1);
  assert_int_equal(exits, MAIN_LINKS);
  assert_int_equal(atomic_load(&proc_downs), CALLERS * PROC_MONITORS);
  assert_int_equal(atomic_load(&proc_exits), CALLERS * PROC_LINKS);
  assert_int_equal(atomic_load(&proc_other), 0);
  assert_int_equal(cn_receive(rt, 0, &r), CN_ETIMEDOUT);

  /* Nothing is left for the dead node. */
  assert_int_equal(cn_dist_get_stats(rt, &s), 0);
  print_message("test-faults: after: nodes_up=%llu links=%llu monitors=%llu "
                "queued=%llu\n",
                (unsigned long long)s.nodes_up, (unsigned long long)s.links,
                (unsigned long long)s.monitors, (unsigned long long)s.queued);
  assert_int_equal(s.nodes_up, 0);
  assert_int_equal(s.links, 0);
  assert_int_equal(s.monitors, 0);
  assert_int_equal(s.queued, 0);
  for (i = 0; i < CALLERS; i++)
    assert_true(cn_is_alive(rt, callers[i]));

  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(rt);
}

static int teardown(void **st) {
  (void)st;
  stop_erl();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_peer_killed_under_calls, teardown),
  };
  return run_group("faults", tests, NULL, NULL);
}
