/* Supervisor tests: specs and their errors, every strategy and restart
 * type, intensity, shutdown order and timeouts, every call with its exact
 * reply, simple_one_for_one, nested supervisors, and runtime shutdown with
 * a tree running. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cnode.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>
#include "helpers.h"

/* ---- What the children did ---------------------------------------------
 * Each worker that runs terminate appends "name/reason," here. */
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static char rec[4096];

static void record(const char *name, cn_term reason) {
  cn_buf b = CN_BUF_INIT;
  cn_term_print(reason, &b);
  pthread_mutex_lock(&rec_mu);
  snprintf(rec + strlen(rec), sizeof(rec) - strlen(rec), "%s/%s,", name,
           b.data ? b.data : "?");
  pthread_mutex_unlock(&rec_mu);
  cn_buf_free(&b);
}

static void rec_reset(void) {
  pthread_mutex_lock(&rec_mu);
  rec[0] = 0;
  pthread_mutex_unlock(&rec_mu);
}

static void rec_expect(const char *want) {
  char got[sizeof(rec)];
  pthread_mutex_lock(&rec_mu);
  memcpy(got, rec, sizeof(rec));
  pthread_mutex_unlock(&rec_mu);
  assert_string_equal(got, want);
}

/* ---- The worker module -------------------------------------------------
 * Args: [Mode] or [Mode, Name | Extra].  Mode:
 *   normal    does not trap exits (dies on the supervisor's shutdown)
 *   trap      traps exits, so terminate runs and is recorded
 *   stubborn  not a child in gen_server's sense (cn_start + cn_link), so
 *             the supervisor's exit is just a message it ignores
 *   ignore    init returns ignore
 *   fail      the start function fails with reason oops
 *   flaky     fails (1 ms each) while g_flaky > 0, then as trap
 * Name (an atom other than undefined) registers the worker.
 * Calls: ping -> pong; args -> its start args.  Cast: {crash, Reason}. */
static atomic_int g_flaky;

typedef struct worker {
  char name[64];
  cn_buf args;
} worker;

typedef struct wstart {
  const char *name;
  int trap;
  cn_term args;
} wstart;

static int w_init(cn_proc *self, void *arg, void **state) {
  const wstart *a = arg;
  worker *w = calloc(1, sizeof(*w));
  snprintf(w->name, sizeof(w->name), "%s", a->name ? a->name : "?");
  cn_buf_init(&w->args);
  cn_put_term(&w->args, a->args);
  if (a->trap)
    cn_trap_exit(self, true, NULL);
  *state = w;
  return CN_NOREPLY;
}

static int w_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                  cn_buf *reply) {
  worker *w = state;
  if (cn_is_atom(req, "args"))
    return cn_put_term(reply, cn_buf_term(&w->args)), CN_REPLY;
  return cn_build(reply, "pong"), CN_REPLY;
}

static int w_cast(cn_proc *self, void *state, cn_term msg) {
  cn_term r;
  if (cn_match(msg, "{crash, ~t}", &r) == 0) {
    cn_set_reason_term(self, r);
    return CN_STOP;
  }
  return CN_NOREPLY;
}

static void w_terminate(cn_proc *self, void *state, cn_term reason) {
  worker *w = state;
  record(w->name, reason);
}

static void w_free(void *state) {
  worker *w = state;
  cn_buf_free(&w->args);
  free(w);
}

static const cn_server_ops worker_ops = {
    .name = "worker",
    .init = w_init,
    .handle_call = w_call,
    .handle_cast = w_cast,
    .terminate = w_terminate,
    .free_state = w_free,
};

static int worker_start(cn_runtime *rt, cn_term args, void *arg, cn_pid *pid,
                        cn_buf *reason) {
  char mode[32] = "", name[64] = "";
  cn_start_options o = {NULL, reason};
  wstart ws;
  cn_iter it;
  cn_term e;
  int rc, i = 0;

  if (cn_iter_init(&it, args, NULL) == 0) {
    while (cn_iter_next(&it, &e)) {
      if (i == 0)
        cn_get_atom(e, mode, sizeof(mode));
      else if (i == 1 && cn_get_atom(e, name, sizeof(name)) == 0 &&
               strcmp(name, "undefined") != 0)
        o.name = name;
      i++;
    }
  }
  if (strcmp(mode, "ignore") == 0)
    return CN_EIGNORE;
  if (strcmp(mode, "fail") == 0)
    return cn_build(reason, "oops"), CN_EEXIT;
  if (strcmp(mode, "flaky") == 0 && atomic_load(&g_flaky) > 0) {
    atomic_fetch_sub(&g_flaky, 1);
    uv_sleep(1);
    return cn_build(reason, "flaky"), CN_EEXIT;
  }
  ws.name = o.name;
  ws.trap = strcmp(mode, "normal") != 0;
  ws.args = args;
  if (strcmp(mode, "stubborn") == 0) {
    rc = cn_start(rt, &worker_ops, &ws, &o, pid);
    if (rc == 0)
      cn_link(rt, *pid);
  } else {
    rc = cn_start_link(rt, &worker_ops, &ws, &o, pid);
  }
  if (rc == CN_EEXIST)
    cn_build(reason, "{already_started, ~p}", pid);
  return rc;
}

/* The sup module: args [Spec] or [Spec, Name] start a nested supervisor. */
static int sup_start(cn_runtime *rt, cn_term args, void *arg, cn_pid *pid,
                     cn_buf *reason) {
  char name[64];
  cn_start_options o = {NULL, reason};
  cn_term spec, n;
  if (cn_match(args, "[~t, ~t]", &spec, &n) == 0 &&
      cn_get_atom(n, name, sizeof(name)) == 0)
    o.name = name;
  else if (cn_match(args, "[~t]", &spec) != 0)
    return cn_build(reason, "badarg"), CN_EINVAL;
  return cn_supervisor_start_link(rt, spec, &o, pid);
}

/* ---- Helpers ---------------------------------------------------------- */

static cn_runtime *sup_rt(void) {
  cn_runtime *rt = rt_new(2);
  assert_int_equal(cn_module_register(rt, "worker", worker_start, NULL), 0);
  assert_int_equal(cn_module_register(rt, "sup", sup_start, NULL), 0);
  atomic_store(&g_flaky, 0);
  rec_reset();
  return rt;
}

static cn_term vT(cn_buf *b, const char *fmt, va_list ap) {
  cn_buf_reset(b);
  if (cn_vbuild(b, fmt, ap) != 0)
    fail_msg("bad format: %s", fmt);
  return cn_buf_term(b);
}

static bool same(cn_term got, cn_term want) { return cn_term_equal(got, want); }

static void expect_eq(cn_term got, cn_term want) {
  if (!same(got, want)) {
    cn_buf g = CN_BUF_INIT, w = CN_BUF_INIT;
    cn_term_print(got, &g);
    cn_term_print(want, &w);
    fail_msg("got %s\n  expected %s", g.data, w.data);
  }
}

/* Calls server with req (a format and its arguments) and checks the
 * reply against want (a format with ~p holes for the pids that follow). */
static void call_expect(cn_runtime *rt, cn_pid server, const char *req,
                        const char *want, ...) {
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  va_list ap;
  assert_int_equal(cn_build(&rq, req), 0);
  assert_int_equal(
      cn_call(rt, cn_to_pid(server), cn_buf_term(&rq), tmo(5000), &rep), 0);
  va_start(ap, want);
  expect_eq(cn_buf_term(&rep), vT(&ex, want, ap));
  va_end(ap);
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
}

/* Calls with the term req and returns the reply in rep. */
static void call_term(cn_runtime *rt, cn_pid server, cn_term req, cn_buf *rep) {
  assert_int_equal(cn_call(rt, cn_to_pid(server), req, tmo(5000), rep), 0);
}

/* Repeats a call until the reply is want, for up to 2 s (scaled). */
static void call_until(cn_runtime *rt, cn_pid server, const char *req,
                       const char *want, ...) {
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  va_list ap;
  int i;
  va_start(ap, want);
  vT(&ex, want, ap);
  va_end(ap);
  T(&rq, req);
  for (i = 0; i < tmo(2000); i++) {
    call_term(rt, server, cn_buf_term(&rq), &rep);
    if (same(cn_buf_term(&rep), cn_buf_term(&ex)))
      break;
    uv_sleep(1);
  }
  expect_eq(cn_buf_term(&rep), cn_buf_term(&ex));
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
}

static cn_pid whereis(cn_runtime *rt, const char *name) {
  cn_pid p = {0};
  assert_int_equal(cn_whereis(rt, name, &p), 0);
  return p;
}

/* Waits until name is registered to a pid other than old. */
static cn_pid whereis_new(cn_runtime *rt, const char *name, cn_pid old) {
  cn_pid p = old;
  int i;
  for (i = 0; i < tmo(2000); i++) {
    if (cn_whereis(rt, name, &p) == 0 && !cn_pid_equal(&p, &old))
      return p;
    uv_sleep(1);
  }
  fail_msg("%s was not restarted", name);
  return p;
}

static void wait_unregistered(cn_runtime *rt, const char *name) {
  cn_pid p;
  int i;
  for (i = 0; i < tmo(2000) && cn_whereis(rt, name, &p) == 0; i++)
    uv_sleep(1);
  assert_int_equal(cn_whereis(rt, name, &p), CN_ENOENT);
}

/* Processes leave the count a moment after their DOWN is sent. */
static void wait_count(cn_runtime *rt, size_t n) {
  int i;
  for (i = 0; i < tmo(2000) && cn_process_count(rt) != n; i++)
    uv_sleep(1);
  assert_int_equal(cn_process_count(rt), n);
}

/* Checks that each string was recorded, in this order (not necessarily
 * next to each other). */
static void rec_order(const char *first, ...) {
  const char *s = first, *at = rec, *hit;
  va_list ap;
  va_start(ap, first);
  pthread_mutex_lock(&rec_mu);
  for (; s; s = va_arg(ap, const char *)) {
    hit = strstr(at, s);
    if (!hit) {
      pthread_mutex_unlock(&rec_mu);
      fail_msg("%s not after the others in %s", s, rec);
    }
    at = hit + strlen(s);
  }
  pthread_mutex_unlock(&rec_mu);
  va_end(ap);
}

static cn_pid start_sup(cn_runtime *rt, const char *spec) {
  cn_buf b = CN_BUF_INIT, why = CN_BUF_INIT;
  cn_start_options o = {NULL, &why};
  cn_pid pid;
  int rc;
  rc = cn_supervisor_start(rt, T(&b, spec), &o, &pid);
  if (rc != 0) {
    cn_buf txt = CN_BUF_INIT;
    cn_term_print(cn_buf_term(&why), &txt);
    fail_msg("start: %s %s", cn_err_name(rc), txt.data ? txt.data : "");
  }
  cn_buf_free(&b);
  cn_buf_free(&why);
  return pid;
}

/* {restart_child, Id} for a child registered under its id: checks the
 * reply {ok, Pid} against the name, and returns Pid. */
static cn_pid restart_child(cn_runtime *rt, cn_pid sup, const char *id) {
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_pid pid;
  call_term(rt, sup, T(&rq, "{restart_child, ~a}", id), &rep);
  pid = whereis(rt, id);
  expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &pid));
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  return pid;
}

static void cast(cn_runtime *rt, cn_pid to, const char *fmt) {
  cn_buf b = CN_BUF_INIT;
  assert_int_equal(cn_cast(rt, cn_to_pid(to), T(&b, fmt)), 0);
  cn_buf_free(&b);
}

static void kill_pid(cn_runtime *rt, cn_pid p) {
  cn_buf b = CN_BUF_INIT;
  assert_int_equal(cn_exit(rt, p, T(&b, "kill")), 0);
  cn_buf_free(&b);
}

/* Waits on this thread for {'DOWN', Ref, process, _, Reason}, skipping
 * other messages, and checks Reason against want. */
static void expect_down(cn_runtime *rt, const cn_ref *ref, const char *want) {
  cn_buf m = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_ref r;
  cn_term reason;
  for (;;) {
    assert_int_equal(cn_receive(rt, tmo(5000), &m), 0);
    if (cn_match(cn_buf_term(&m), "{'DOWN', ~r, process, _, ~t}", &r,
                 &reason) == 0 &&
        cn_ref_equal(&r, ref))
      break;
  }
  expect_eq(reason, T(&ex, want));
  cn_buf_free(&m);
  cn_buf_free(&ex);
}

#define FLAGS(s, i) "#{strategy => " s ", intensity => " i ", period => 5}"
#define CH(id) "#{id => " id ", start => {worker, start_link, [trap, " id "]}}"
#define CHM(id, mode, more)                                                    \
  "#{id => " id ", start => {worker, start_link, [" mode ", " id "]}" more "}"

/* ---- Modules and specs ------------------------------------------------ */

static void test_module_register(void **st) {
  cn_runtime *rt = sup_rt();
  char big[300];
  assert_int_equal(cn_module_register(rt, "worker", worker_start, NULL),
                   CN_EEXIST);
  assert_int_equal(cn_module_register(rt, "", worker_start, NULL), CN_EINVAL);
  assert_int_equal(cn_module_register(rt, NULL, worker_start, NULL), CN_EINVAL);
  assert_int_equal(cn_module_register(rt, "x", NULL, NULL), CN_EINVAL);
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  assert_int_equal(cn_module_register(rt, big, worker_start, NULL), CN_EINVAL);
  assert_int_equal(cn_module_register(rt, "other", worker_start, NULL), 0);
  cn_runtime_free(rt);
}

/* A server registered by its callbacks alone: no start function, and the
 * start MFA's Args take gen_server:start_link's shapes. */
static int reg_init(cn_proc *self, void *arg, void **state) {
  cn_buf *b = calloc(1, sizeof(*b));
  (void)self;
  cn_buf_init(b);
  if (arg)
    cn_put_term(b, *(const cn_term *)arg); /* a copy: arg lives in init */
  else
    cn_build(b, "none");
  *state = b;
  return CN_NOREPLY;
}

static int reg_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  (void)self;
  (void)req;
  (void)from;
  return cn_put_term(reply, cn_buf_term(state)) == 0 ? CN_REPLY : CN_STOP;
}

static void reg_free(void *state) {
  cn_buf_free(state);
  free(state);
}

static const cn_server_ops reg_ops = {.name = "reg_srv",
                                      .init = reg_init,
                                      .handle_call = reg_call,
                                      .free_state = reg_free};

static void test_server_register(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_pid sup, named;
  (void)st;
  assert_int_equal(cn_server_register(rt, &reg_ops), 0);
  assert_int_equal(cn_server_register(rt, &reg_ops), CN_EEXIST);
  assert_int_equal(cn_server_register(rt, NULL), CN_EINVAL);
  sup = start_sup(rt, "{#{strategy => one_for_one},"
                      " [#{id => a, start => {reg_srv, start_link, []}},"
                      "  #{id => b, start => {reg_srv, start_link, [hello]}},"
                      "  #{id => c, start => {reg_srv, start_link,"
                      "                       [{local, named_c}, {x, 1}]}}]}");
  assert_int_equal(cn_whereis(rt, "named_c", &named), 0);
  assert_int_equal(cn_call(rt, cn_to_pid(named), T(&q, "arg"), tmo(2000), &r),
                   0);
  expect_eq(cn_buf_term(&r), T(&ex, "{x, 1}"));
  /* A taken name is already_started, with its holder, as OTP says it. */
  assert_int_equal(
      cn_call(rt, cn_to_pid(sup),
              T(&q, "{start_child, #{id => d, start => {reg_srv, start_link,"
                    " [{local, named_c}, y]}}}"),
              tmo(2000), &r),
      0);
  /* (start_child wraps a start error with the child, as OTP does.) */
  {
    cn_pid holder;
    assert_int_equal(cn_match(cn_buf_term(&r),
                              "{error, {{already_started, ~p}, _}}", &holder),
                     0);
    assert_true(cn_pid_equal(&holder, &named));
  }
  /* Args of another shape. */
  assert_int_equal(cn_call(rt, cn_to_pid(sup),
                           T(&q, "{start_child, #{id => e, start => {reg_srv,"
                                 " start_link, [a, b, c]}}}"),
                           tmo(2000), &r),
                   0);
  {
    cn_term why;
    assert_int_equal(cn_match(cn_buf_term(&r), "{error, {~t, _}}", &why), 0);
    expect_eq(why, T(&ex, "{badarg, [a, b, c]}"));
  }
  /* The other two got their Args. */
  {
    cn_buf kids = CN_BUF_INIT;
    cn_iter it;
    cn_term child, id, pid_t;
    int seen = 0;
    assert_int_equal(
        cn_call(rt, cn_to_pid(sup), T(&q, "which_children"), tmo(2000), &kids),
        0);
    assert_int_equal(cn_iter_init(&it, cn_buf_term(&kids), NULL), 0);
    while (cn_iter_next(&it, &child)) {
      cn_pid pid;
      assert_int_equal(
          cn_match(child, "{~t, ~t, worker, [reg_srv]}", &id, &pid_t), 0);
      assert_int_equal(cn_get_pid(pid_t, &pid), 0);
      assert_int_equal(cn_call(rt, cn_to_pid(pid), T(&q, "arg"), tmo(2000), &r),
                       0);
      if (cn_is_atom(id, "a")) {
        expect_eq(cn_buf_term(&r), T(&ex, "none"));
        seen++;
      } else if (cn_is_atom(id, "b")) {
        expect_eq(cn_buf_term(&r), T(&ex, "hello"));
        seen++;
      }
    }
    assert_int_equal(seen, 2);
    cn_buf_free(&kids);
  }
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

static void bad_spec(cn_runtime *rt, const char *spec, const char *reason) {
  cn_buf b = CN_BUF_INIT, why = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_start_options o = {NULL, &why};
  cn_pid pid;
  assert_int_equal(cn_supervisor_start(rt, T(&b, spec), &o, &pid), CN_EINVAL);
  expect_eq(cn_buf_term(&why), T(&ex, reason));
  cn_buf_free(&b);
  cn_buf_free(&why);
  cn_buf_free(&ex);
}

static void test_bad_specs(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf b = CN_BUF_INIT;
  cn_pid pid;

  bad_spec(rt, "foo", "{bad_return, {supervisor, init, foo}}");
  bad_spec(rt, "{foo, []}", "{supervisor_data, {invalid_type, foo}}");
  bad_spec(rt, "{#{strategy => x}, []}",
           "{supervisor_data, {invalid_strategy, x}}");
  bad_spec(rt, "{{one_for_one, -1, 5}, []}",
           "{supervisor_data, {invalid_intensity, -1}}");
  bad_spec(rt, "{{one_for_one, 1, 0}, []}",
           "{supervisor_data, {invalid_period, 0}}");
  bad_spec(rt, "{#{auto_shutdown => maybe}, []}",
           "{supervisor_data, {invalid_auto_shutdown, maybe}}");
  bad_spec(rt, "{#{}, [#{start => {worker, start_link, []}}]}",
           "{start_spec, missing_id}");
  bad_spec(rt, "{#{}, [#{id => a}]}", "{start_spec, missing_start}");
  bad_spec(rt, "{#{}, [#{id => a, start => {worker, 1, []}}]}",
           "{start_spec, {invalid_mfa, {worker, 1, []}}}");
  bad_spec(rt, "{#{}, [#{id => a, start => {w, f, []}, restart => x}]}",
           "{start_spec, {invalid_restart_type, x}}");
  bad_spec(rt, "{#{}, [#{id => a, start => {w, f, []}, type => x}]}",
           "{start_spec, {invalid_child_type, x}}");
  bad_spec(rt, "{#{}, [#{id => a, start => {w, f, []}, shutdown => -1}]}",
           "{start_spec, {invalid_shutdown, -1}}");
  bad_spec(rt, "{#{}, [#{id => a, start => {w, f, []}, modules => x}]}",
           "{start_spec, {invalid_modules, x}}");
  bad_spec(rt, "{#{}, [#{id => a, start => {w, f, []}, modules => [1]}]}",
           "{start_spec, {invalid_module, 1}}");
  bad_spec(rt, "{#{}, [#{id => a, start => {w, f, []}, significant => 1}]}",
           "{start_spec, {invalid_significant, 1}}");
  bad_spec(rt,
           "{#{}, [#{id => a, start => {w, f, []}, restart => transient,"
           " significant => true}]}",
           "{start_spec, {bad_combination, [{auto_shutdown, never}, "
           "{significant, true}]}}");
  bad_spec(rt,
           "{#{auto_shutdown => any_significant}, [#{id => a, start => "
           "{w, f, []}, significant => true}]}",
           "{start_spec, {bad_combination, [{restart, permanent}, "
           "{significant, true}]}}");
  bad_spec(rt, "{#{}, [foo]}", "{start_spec, {invalid_child_spec, foo}}");
  bad_spec(rt, "{#{}, [{a, {w, f, []}, permanent, 5000, worker}]}",
           "{start_spec, {invalid_child_spec, "
           "{a, {w, f, []}, permanent, 5000, worker}}}");
  bad_spec(rt, "{#{}, [" CH("a") ", " CH("a") "]}",
           "{start_spec, {duplicate_child_name, a}}");
  bad_spec(rt,
           "{#{strategy => simple_one_for_one}, [" CH("a") ", " CH("b") "]}",
           "{bad_start_spec, [" CH("a") ", " CH("b") "]}");
  bad_spec(rt, "{#{strategy => simple_one_for_one}, []}",
           "{bad_start_spec, []}");
  bad_spec(rt, "{#{}, x}", "{bad_start_spec, x}");
  /* Nothing was left running. */
  wait_count(rt, 0);
  /* ignore, as init/1 may return. */
  assert_int_equal(cn_supervisor_start(rt, T(&b, "ignore"), NULL, &pid),
                   CN_EIGNORE);
  /* The tuple forms, and an empty supervisor. */
  pid = start_sup(rt, "{{one_for_all, 0, 1}, [{a, {worker, start_link, "
                      "[trap, a]}, transient, brutal_kill, worker, dynamic}]}");
  call_expect(rt, pid, "{get_childspec, a}",
              "{ok, #{id => a, start => {worker, start_link, [trap, a]}, "
              "restart => transient, significant => false, "
              "shutdown => brutal_kill, type => worker, modules => dynamic}}");
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(5000)), 0);
  pid = start_sup(rt, "{#{}, []}");
  call_expect(rt, pid, "which_children", "[]");
  call_expect(rt, pid, "count_children",
              "[{specs, 0}, {active, 0}, {supervisors, 0}, {workers, 0}]");
  cn_buf_free(&b);
  cn_runtime_free(rt);
}

static void test_start_failure(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf b = CN_BUF_INIT, why = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_start_options o = {"top", &why};
  cn_pid pid, p;
  uint64_t t0;

  /* a and s start, b fails: a and s are shut down (s must be killed after
   * its 50 ms) before start returns, in reverse order; c never starts. */
  t0 = uv_hrtime();
  assert_int_equal(
      cn_supervisor_start_link(
          rt,
          T(&b, "{" FLAGS("one_for_one", "1") ", [" CH("a") ", " CHM(
                    "s", "stubborn",
                    ", shutdown => 50") ", " CHM("b", "fail",
                                                 "") ", " CH("c") "]}"),
          &o, &pid),
      CN_EEXIT);
  assert_true(uv_hrtime() - t0 >= 40000000ULL);
  expect_eq(cn_buf_term(&why),
            T(&ex, "{shutdown, {failed_to_start_child, b, oops}}"));
  rec_expect("a/shutdown,");
  assert_int_equal(cn_whereis(rt, "a", &p), CN_ENOENT);
  assert_int_equal(cn_whereis(rt, "s", &p), CN_ENOENT);
  assert_int_equal(cn_whereis(rt, "c", &p), CN_ENOENT);
  assert_int_equal(cn_whereis(rt, "top", &p), CN_ENOENT);
  wait_count(rt, 0);

  /* A module nobody registered: apply/3's undef. */
  assert_int_equal(
      cn_supervisor_start(rt,
                          T(&b, "{#{}, [#{id => x, start => {nomod, go, "
                                "[1]}}]}"),
                          &o, &pid),
      CN_EEXIT);
  expect_eq(cn_buf_term(&why),
            T(&ex, "{shutdown, {failed_to_start_child, x, {'EXIT', {undef, "
                   "[{nomod, go, [1], []}]}}}}"));
  cn_buf_free(&b);
  cn_buf_free(&why);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

/* ---- Strategies ------------------------------------------------------- */

static void test_one_for_one(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(rt, "{" FLAGS("one_for_one", "10") ", [" CH(
                                 "a") ", " CH("b") ", " CH("c") "]}");
  cn_pid a = whereis(rt, "a"), b = whereis(rt, "b"), c = whereis(rt, "c");
  cn_pid b2;

  kill_pid(rt, b);
  b2 = whereis_new(rt, "b", b);
  call_until(rt, sup, "which_children",
             "[{c, ~p, worker, [worker]}, {b, ~p, worker, [worker]}, "
             "{a, ~p, worker, [worker]}]",
             &c, &b2, &a);
  rec_expect("");
  /* A crash through a callback's CN_STOP. */
  cast(rt, a, "{crash, boom}");
  (void)whereis_new(rt, "a", a);
  rec_expect("a/boom,");
  assert_true(cn_is_alive(rt, c));
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);
  rec_expect("a/boom,c/shutdown,b/shutdown,a/shutdown,");
  wait_count(rt, 0);
  cn_runtime_free(rt);
}

static void test_one_for_all(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(rt, "{" FLAGS("one_for_all", "10") ", [" CH(
                                 "a") ", " CH("b") ", " CH("c") "]}");
  cn_pid a = whereis(rt, "a"), b = whereis(rt, "b"), c = whereis(rt, "c");
  cn_pid a2, b2, c2;

  kill_pid(rt, b);
  a2 = whereis_new(rt, "a", a);
  b2 = whereis_new(rt, "b", b);
  c2 = whereis_new(rt, "c", c);
  call_until(rt, sup, "which_children",
             "[{c, ~p, worker, [worker]}, {b, ~p, worker, [worker]}, "
             "{a, ~p, worker, [worker]}]",
             &c2, &b2, &a2);
  /* The others were shut down in reverse start order. */
  rec_expect("c/shutdown,a/shutdown,");
  assert_false(cn_is_alive(rt, a));
  assert_false(cn_is_alive(rt, c));
  cn_runtime_free(rt);
}

static void test_rest_for_one(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup =
      start_sup(rt, "{" FLAGS("rest_for_one", "10") ", [" CH("a") ", " CH(
                        "b") ", " CH("c") ", " CH("d") "]}");
  cn_pid a = whereis(rt, "a"), b = whereis(rt, "b"), c = whereis(rt, "c");
  cn_pid d = whereis(rt, "d"), b2, c2, d2;

  kill_pid(rt, b);
  b2 = whereis_new(rt, "b", b);
  c2 = whereis_new(rt, "c", c);
  d2 = whereis_new(rt, "d", d);
  call_until(rt, sup, "which_children",
             "[{d, ~p, worker, [worker]}, {c, ~p, worker, [worker]}, "
             "{b, ~p, worker, [worker]}, {a, ~p, worker, [worker]}]",
             &d2, &c2, &b2, &a);
  rec_expect("d/shutdown,c/shutdown,");
  /* The last child: only itself. */
  rec_reset();
  kill_pid(rt, d2);
  (void)whereis_new(rt, "d", d2);
  call_until(rt, sup, "count_children",
             "[{specs, 4}, {active, 4}, {supervisors, 0}, {workers, 4}]");
  rec_expect("");
  assert_true(cn_is_alive(rt, c2));
  cn_runtime_free(rt);
}

/* A restart that fails is retried (try_again_restart), and the retries
 * count towards the intensity; one_for_all restarts everyone again. */
static void test_restart_retries(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup =
      start_sup(rt, "{" FLAGS("one_for_all", "100") ", [" CH("a") ", " CHM(
                        "b", "flaky", "") ", " CH("c") "]}");
  cn_pid a = whereis(rt, "a"), b = whereis(rt, "b"), c = whereis(rt, "c");
  cn_pid a2, b2, c2;

  atomic_store(&g_flaky, 3);
  kill_pid(rt, a);
  b2 = whereis_new(rt, "b", b);
  c2 = whereis_new(rt, "c", c);
  a2 = whereis(rt, "a");
  assert_int_equal(atomic_load(&g_flaky), 0);
  call_until(rt, sup, "which_children",
             "[{c, ~p, worker, [worker]}, {b, ~p, worker, [worker]}, "
             "{a, ~p, worker, [worker]}]",
             &c2, &b2, &a2);
  assert_false(cn_is_alive(rt, c));
  cn_runtime_free(rt);
}

/* While a restart keeps failing the child is `restarting`. */
static void test_restarting_state(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup =
      start_sup(rt, "{{one_for_one, 100000, 5}, [" CHM("x", "flaky", "") "]}");
  cn_pid x = whereis(rt, "x"), x2;

  atomic_store(&g_flaky, 1000000);
  kill_pid(rt, x);
  call_until(rt, sup, "which_children", "[{x, restarting, worker, [worker]}]");
  call_expect(rt, sup, "{restart_child, x}", "{error, restarting}");
  call_expect(rt, sup, "{delete_child, x}", "{error, restarting}");
  call_expect(rt, sup, "count_children",
              "[{specs, 1}, {active, 0}, {supervisors, 0}, {workers, 1}]");
  atomic_store(&g_flaky, 0);
  x2 = whereis_new(rt, "x", x);
  call_until(rt, sup, "which_children", "[{x, ~p, worker, [worker]}]", &x2);
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);
  cn_runtime_free(rt);
}

/* ---- Restart types ---------------------------------------------------- */

static void test_restart_types(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(
      rt,
      "{" FLAGS("one_for_one", "100") ", [" CH("p") ", " CHM(
          "t", "trap",
          ", restart => transient") ", " CHM("tmp", "trap",
                                             ", restart => temporary") "]}");
  cn_pid p = whereis(rt, "p"), t = whereis(rt, "t"), tmp = whereis(rt, "tmp");
  cn_pid p2, t2, t3;

  /* permanent: restarted even after a normal exit. */
  cast(rt, p, "{crash, normal}");
  p2 = whereis_new(rt, "p", p);
  /* transient: not after normal, shutdown or {shutdown, _}. */
  cast(rt, t, "{crash, normal}");
  call_until(rt, sup, "which_children",
             "[{tmp, ~p, worker, [worker]}, {t, undefined, worker, [worker]}, "
             "{p, ~p, worker, [worker]}]",
             &tmp, &p2);
  t2 = restart_child(rt, sup, "t");
  call_expect(rt, sup, "{get_childspec, t}",
              "{ok, #{id => t, start => {worker, start_link, [trap, t]}, "
              "restart => transient, significant => false, shutdown => 5000, "
              "type => worker, modules => [worker]}}");
  cast(rt, t2, "{crash, {shutdown, bye}}");
  call_until(rt, sup, "which_children",
             "[{tmp, ~p, worker, [worker]}, {t, undefined, worker, [worker]}, "
             "{p, ~p, worker, [worker]}]",
             &tmp, &p2);
  t2 = restart_child(rt, sup, "t");
  cast(rt, t2, "{crash, shutdown}");
  wait_unregistered(rt, "t");
  call_until(rt, sup, "count_children",
             "[{specs, 3}, {active, 2}, {supervisors, 0}, {workers, 3}]");
  /* ... but after a crash, yes. */
  t2 = restart_child(rt, sup, "t");
  cast(rt, t2, "{crash, boom}");
  t3 = whereis_new(rt, "t", t2);
  /* temporary: never; and it leaves the specs. */
  cast(rt, tmp, "{crash, boom}");
  call_until(rt, sup, "which_children",
             "[{t, ~p, worker, [worker]}, {p, ~p, worker, [worker]}]", &t3,
             &p2);
  call_expect(rt, sup, "{get_childspec, tmp}", "{error, not_found}");
  cn_runtime_free(rt);
}

/* ---- Intensity -------------------------------------------------------- */

static void test_intensity(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup =
      start_sup(rt, "{{one_for_one, 2, 10}, [" CH("a") ", " CH("b") "]}");
  cn_pid a = whereis(rt, "a"), b = whereis(rt, "b");
  cn_ref ref;
  int i;

  assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &ref), 0);
  for (i = 0; i < 2; i++) {
    kill_pid(rt, a);
    a = whereis_new(rt, "a", a);
  }
  rec_expect("");
  /* The third restart in 10 s is one too many. */
  kill_pid(rt, a);
  expect_down(rt, &ref, "shutdown");
  assert_false(cn_is_alive(rt, sup));
  assert_false(cn_is_alive(rt, b));
  rec_expect("b/shutdown,");
  wait_count(rt, 0);
  cn_runtime_free(rt);
}

/* Intensity 0: no restart at all. */
static void test_intensity_zero(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(rt, "{{one_for_one, 0, 1}, [" CH("a") "]}");
  cn_ref ref;
  assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &ref), 0);
  cast(rt, whereis(rt, "a"), "{crash, boom}");
  expect_down(rt, &ref, "shutdown");
  rec_expect("a/boom,");
  cn_runtime_free(rt);
}

/* ---- Shutdown --------------------------------------------------------- */

static void test_shutdown_order(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf b = CN_BUF_INIT, m = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_pid sup = start_sup(
      rt, "{#{}, [" CH("a") ", " CH("b") ", " CH("c") ", " CH("d") "]}");

  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);
  rec_expect("d/shutdown,c/shutdown,b/shutdown,a/shutdown,");
  wait_count(rt, 0);

  /* Linked to this thread, its parent: the parent's exit signal. */
  rec_reset();
  assert_int_equal(
      cn_supervisor_start_link(rt, T(&b, "{#{}, [" CH("a") ", " CH("b") "]}"),
                               NULL, &sup),
      0);
  assert_int_equal(cn_exit(rt, sup, T(&b, "{shutdown, parent}")), 0);
  assert_int_equal(cn_receive(rt, tmo(5000), &m), 0);
  expect_eq(cn_buf_term(&m), T(&ex, "{'EXIT', ~p, {shutdown, parent}}", &sup));
  rec_expect("b/shutdown,a/shutdown,");

  /* A stranger's exit signal is not the parent's: ignored. */
  rec_reset();
  sup = start_sup(rt, "{#{}, [" CH("a") "]}");
  assert_int_equal(cn_exit(rt, sup, T(&b, "shutdown")), 0);
  call_expect(rt, sup, "count_children",
              "[{specs, 1}, {active, 1}, {supervisors, 0}, {workers, 1}]");
  {
    cn_ref ref;
    cn_term why = T(&ex, "{shutdown, x}");
    assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &ref), 0);
    assert_int_equal(cn_stop(rt, cn_to_pid(sup), &why, tmo(5000)), 0);
    expect_down(rt, &ref, "{shutdown, x}");
  }
  rec_expect("a/shutdown,");
  cn_buf_free(&b);
  cn_buf_free(&m);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

static void test_brutal_kill(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(
      rt,
      "{#{}, [" CHM("k", "trap",
                    ", shutdown => "
                    "brutal_kill") ", " CHM("j", "trap",
                                            ", shutdown => brutal_kill") "]}");
  cn_pid k = whereis(rt, "k"), j = whereis(rt, "j");

  call_expect(rt, sup, "{terminate_child, k}", "ok");
  assert_false(cn_is_alive(rt, k));
  call_expect(rt, sup, "which_children",
              "[{j, ~p, worker, [worker]}, {k, undefined, worker, [worker]}]",
              &j);
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);
  assert_false(cn_is_alive(rt, j));
  rec_expect(""); /* killed: terminate never ran */
  cn_runtime_free(rt);
}

static void test_shutdown_timeout(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(
      rt, "{#{}, [" CHM("i", "trap",
                        ", shutdown => "
                        "infinity") ", " CHM("s", "stubborn",
                                             ", shutdown => 100") "]}");
  cn_pid s = whereis(rt, "s");
  uint64_t t0 = uv_hrtime(), dt;

  /* It ignores the shutdown: killed after 100 ms. */
  call_expect(rt, sup, "{terminate_child, s}", "ok");
  dt = uv_hrtime() - t0;
  assert_true(dt >= 90000000ULL);
  assert_false(cn_is_alive(rt, s));
  rec_expect("");
  /* infinity waits as long as it takes. */
  call_expect(rt, sup, "{terminate_child, i}", "ok");
  rec_expect("i/shutdown,");
  {
    cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
    call_term(rt, sup, T(&rq, "{restart_child, s}"), &rep);
    s = whereis(rt, "s");
    expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &s));
    cn_buf_free(&rq);
    cn_buf_free(&rep);
    cn_buf_free(&ex);
  }
  t0 = uv_hrtime();
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);
  assert_true(uv_hrtime() - t0 >= 90000000ULL);
  assert_false(cn_is_alive(rt, s));
  cn_runtime_free(rt);
}

/* Calls that arrive during a shutdown wait for it, and see its result. */
typedef struct bg_call {
  cn_runtime *rt;
  cn_pid sup;
  int rc;
  cn_buf reply;
} bg_call;

static void *bg_terminate(void *arg) {
  bg_call *c = arg;
  cn_buf rq = CN_BUF_INIT;
  cn_build(&rq, "{terminate_child, s}");
  c->rc =
      cn_call(c->rt, cn_to_pid(c->sup), cn_buf_term(&rq), tmo(5000), &c->reply);
  cn_buf_free(&rq);
  return NULL;
}

static void *bg_stop(void *arg) {
  bg_call *c = arg;
  c->rc = cn_stop(c->rt, cn_to_pid(c->sup), NULL, tmo(5000));
  return NULL;
}

static void test_calls_postponed(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(rt, "{#{}, [" CH("a") ", " CHM(
                                 "s", "stubborn", ", shutdown => 300") "]}");
  cn_pid a = whereis(rt, "a");
  bg_call c;
  pthread_t th;
  cn_buf ex = CN_BUF_INIT;

  memset(&c, 0, sizeof(c));
  c.rt = rt;
  c.sup = sup;
  cn_buf_init(&c.reply);
  assert_int_equal(pthread_create(&th, NULL, bg_terminate, &c), 0);
  uv_sleep(100);
  call_expect(rt, sup, "which_children",
              "[{s, undefined, worker, [worker]}, {a, ~p, worker, [worker]}]",
              &a);
  pthread_join(th, NULL);
  assert_int_equal(c.rc, 0);
  expect_eq(cn_buf_term(&c.reply), T(&ex, "ok"));

  /* A call that arrives while the supervisor stops learns its reason. */
  {
    cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT;
    call_term(rt, sup, T(&rq, "{restart_child, s}"), &rep);
    assert_int_equal(pthread_create(&th, NULL, bg_stop, &c), 0);
    uv_sleep(100);
    assert_int_equal(
        cn_call(rt, cn_to_pid(sup), T(&rq, "which_children"), tmo(5000), &rep),
        CN_EEXIT);
    expect_eq(cn_buf_term(&rep), T(&ex, "normal"));
    pthread_join(th, NULL);
    assert_int_equal(c.rc, 0);
    rec_expect("a/shutdown,");
    cn_buf_free(&rq);
    cn_buf_free(&rep);
  }
  cn_buf_free(&c.reply);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

/* ---- Calls ------------------------------------------------------------ */

static void test_calls(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(
      rt, "{" FLAGS("one_for_one", "10") ", [" CH("a") ", " CH("b") "]}");
  cn_pid a = whereis(rt, "a"), b = whereis(rt, "b"), c, b2;
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;

  call_expect(rt, sup, "which_children",
              "[{b, ~p, worker, [worker]}, {a, ~p, worker, [worker]}]", &b, &a);
  call_expect(rt, sup, "count_children",
              "[{specs, 2}, {active, 2}, {supervisors, 0}, {workers, 2}]");
  call_expect(rt, sup, "{get_childspec, a}",
              "{ok, #{id => a, start => {worker, start_link, [trap, a]}, "
              "restart => permanent, significant => false, shutdown => 5000, "
              "type => worker, modules => [worker]}}");
  call_expect(rt, sup, "{get_childspec, zz}", "{error, not_found}");

  /* start_child */
  call_term(
      rt, sup,
      T(&rq, "{start_child, " CHM("c", "trap", ", restart => temporary") "}"),
      &rep);
  c = whereis(rt, "c");
  expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &c));
  call_expect(rt, sup, "{get_childspec, c}",
              "{ok, #{id => c, start => {worker, start_link, undefined}, "
              "restart => temporary, significant => false, shutdown => 5000, "
              "type => worker, modules => [worker]}}");
  call_term(rt, sup, T(&rq, "{start_child, " CH("c") "}"), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "{error, {already_started, ~p}}", &c));
  call_term(rt, sup,
            T(&rq, "{start_child, {c, {worker, start_link, []}, permanent, "
                   "5000, worker, [worker]}}"),
            &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "{error, {already_started, ~p}}", &c));
  call_expect(rt, sup, "{start_child, " CHM("d", "fail", "") "}",
              "{error, {oops, {child, undefined, d, {worker, start_link, "
              "[fail, d]}, permanent, false, 5000, worker, [worker]}}}");
  call_expect(rt, sup, "{start_child, #{id => e}}", "{error, missing_start}");
  call_expect(rt, sup, "{start_child, #{id => e, start => {nomod, f, []}}}",
              "{error, {{'EXIT', {undef, [{nomod, f, [], []}]}}, {child, "
              "undefined, e, {nomod, f, []}, permanent, false, 5000, worker, "
              "[nomod]}}}");
  call_expect(rt, sup, "{start_child, " CHM("g", "ignore", "") "}",
              "{ok, undefined}");
  call_expect(rt, sup, "{start_child, " CHM("g", "ignore", "") "}",
              "{error, already_present}");
  call_expect(rt, sup,
              "{start_child, " CHM("h", "ignore", ", restart => temporary") "}",
              "{ok, undefined}");
  call_expect(rt, sup, "{get_childspec, h}", "{error, not_found}");
  call_expect(rt, sup, "which_children",
              "[{g, undefined, worker, [worker]}, {c, ~p, worker, [worker]}, "
              "{b, ~p, worker, [worker]}, {a, ~p, worker, [worker]}]",
              &c, &b, &a);

  /* restart_child, delete_child */
  call_expect(rt, sup, "{restart_child, a}", "{error, running}");
  call_expect(rt, sup, "{restart_child, zz}", "{error, not_found}");
  call_expect(rt, sup, "{restart_child, g}", "{ok, undefined}");
  call_expect(rt, sup, "{delete_child, a}", "{error, running}");
  call_expect(rt, sup, "{delete_child, g}", "ok");
  call_expect(rt, sup, "{delete_child, g}", "{error, not_found}");

  /* terminate_child */
  call_expect(rt, sup, "{terminate_child, b}", "ok");
  rec_expect("b/shutdown,");
  call_expect(rt, sup, "{terminate_child, b}", "ok");
  call_expect(rt, sup, "which_children",
              "[{c, ~p, worker, [worker]}, {b, undefined, worker, [worker]}, "
              "{a, ~p, worker, [worker]}]",
              &c, &a);
  call_expect(rt, sup, "count_children",
              "[{specs, 3}, {active, 2}, {supervisors, 0}, {workers, 3}]");
  call_term(rt, sup, T(&rq, "{restart_child, b}"), &rep);
  b2 = whereis(rt, "b");
  expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &b2));
  call_expect(rt, sup, "{terminate_child, b}", "ok");
  call_expect(rt, sup, "{delete_child, b}", "ok");
  call_expect(rt, sup, "{terminate_child, c}", "ok");
  call_expect(rt, sup, "{get_childspec, c}", "{error, not_found}");
  call_expect(rt, sup, "{terminate_child, zz}", "{error, not_found}");
  rec_expect("b/shutdown,b/shutdown,c/shutdown,");
  call_expect(rt, sup, "which_children", "[{a, ~p, worker, [worker]}]", &a);

  /* An unknown call is a function_clause crash, as in OTP: the caller
   * gets the reason once the children are down. */
  rec_reset();
  assert_int_equal(cn_call(rt, cn_to_pid(sup), T(&rq, "foo"), tmo(5000), &rep),
                   CN_EEXIT);
  expect_eq(cn_buf_term(&rep),
            T(&ex, "{function_clause, [{supervisor, handle_call, "
                   "[foo, '_', '_'], []}]}"));
  rec_expect("a/shutdown,");
  assert_false(cn_is_alive(rt, sup));
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

/* Other messages are ignored; an unknown cast is a function_clause crash,
 * as in OTP. */
static void test_stray_messages(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf b = CN_BUF_INIT, rq = CN_BUF_INIT;
  cn_pid sup = start_sup(rt, "{#{}, [" CH("a") "]}");
  cn_pid a = whereis(rt, "a");
  cn_ref ref;

  assert_int_equal(cn_send(rt, cn_to_pid(sup), T(&b, "{hello, 1}")), 0);
  assert_int_equal(
      cn_send(rt, cn_to_pid(sup), T(&b, "{'DOWN', 1, process, 2, 3}")), 0);
  assert_int_equal(
      cn_cast(rt, cn_to_pid(sup), T(&b, "{try_again_restart, nobody}")), 0);
  call_expect(rt, sup, "which_children", "[{a, ~p, worker, [worker]}]", &a);
  assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &ref), 0);
  assert_int_equal(cn_cast(rt, cn_to_pid(sup), T(&b, "what")), 0);
  expect_down(rt, &ref,
              "{function_clause, [{supervisor, handle_cast, "
              "[what, '_'], []}]}");
  rec_expect("a/shutdown,");

  /* With no child to wait for, the crash is immediate. */
  sup = start_sup(rt, "{#{}, []}");
  assert_int_equal(
      cn_call(rt, cn_to_pid(sup), T(&rq, "{bad, 1}"), tmo(5000), &b), CN_EEXIT);
  expect_eq(cn_buf_term(&b),
            T(&rq, "{function_clause, [{supervisor, handle_call, "
                   "[{bad, 1}, '_', '_'], []}]}"));
  assert_false(cn_is_alive(rt, sup));
  cn_buf_free(&b);
  cn_buf_free(&rq);
  cn_runtime_free(rt);
}

/* ---- simple_one_for_one ----------------------------------------------- */

static void test_simple_one_for_one(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup =
      start_sup(rt, "{" FLAGS("simple_one_for_one",
                              "10") ", "
                                    "[#{id => w, start => {worker, start_link, "
                                    "[trap]}}]}");
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_pid p1, p2, p3;
  const char *spec = "{ok, #{id => w, start => {worker, start_link, [trap]}, "
                     "restart => permanent, significant => false, shutdown => "
                     "5000, type => worker, modules => [worker]}}";

  call_expect(rt, sup, "which_children", "[]");
  call_expect(rt, sup, "count_children",
              "[{specs, 1}, {active, 0}, {supervisors, 0}, {workers, 0}]");
  call_term(rt, sup, T(&rq, "{start_child, [w1, 42]}"), &rep);
  p1 = whereis(rt, "w1");
  expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &p1));
  call_term(rt, sup, T(&rq, "{start_child, [w2, 43]}"), &rep);
  p2 = whereis(rt, "w2");
  expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &p2));
  /* The extra args come after the MFA's. */
  call_expect(rt, p1, "args", "[trap, w1, 42]");
  call_expect(rt, sup, "which_children",
              "[{undefined, ~p, worker, [worker]}, "
              "{undefined, ~p, worker, [worker]}]",
              &p1, &p2);
  call_expect(rt, sup, "count_children",
              "[{specs, 1}, {active, 2}, {supervisors, 0}, {workers, 2}]");
  call_term(rt, sup, T(&rq, "{get_childspec, ~p}", &p1), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, spec));
  call_expect(rt, sup, "{get_childspec, w}", spec);
  call_term(rt, sup, T(&rq, "{get_childspec, ~p}", &sup), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "{error, not_found}"));
  call_expect(rt, sup, "{terminate_child, w}", "{error, simple_one_for_one}");
  call_term(rt, sup, T(&rq, "{terminate_child, ~p}", &sup), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "{error, not_found}"));
  call_expect(rt, sup, "{restart_child, w}", "{error, simple_one_for_one}");
  call_expect(rt, sup, "{delete_child, w}", "{error, simple_one_for_one}");
  call_expect(rt, sup, "{start_child, notalist}",
              "{error, {'EXIT', {badarg, []}}}");
  call_term(rt, sup, T(&rq, "{start_child, [w3, 1, ignored]}"), &rep);
  p3 = whereis(rt, "w3");
  expect_eq(cn_buf_term(&rep), T(&ex, "{ok, ~p}", &p3));

  /* A crash: restarted with the same args. */
  kill_pid(rt, p1);
  p1 = whereis_new(rt, "w1", p1);
  call_expect(rt, p1, "args", "[trap, w1, 42]");
  call_until(rt, sup, "count_children",
             "[{specs, 1}, {active, 3}, {supervisors, 0}, {workers, 3}]");

  /* terminate_child by pid. */
  call_term(rt, sup, T(&rq, "{terminate_child, ~p}", &p2), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "ok"));
  assert_false(cn_is_alive(rt, p2));
  rec_expect("w2/shutdown,");
  /* A dead pid that was never ours: ok, as OTP answers. */
  call_term(rt, sup, T(&rq, "{terminate_child, ~p}", &p2), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "ok"));

  /* Stop: every child at once. */
  rec_reset();
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);
  assert_false(cn_is_alive(rt, p1));
  assert_false(cn_is_alive(rt, p3));
  wait_count(rt, 0);
  rec_order("w1/shutdown,", NULL);
  rec_order("w3/shutdown,", NULL);
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

static void test_simple_temporary_and_restarting(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(
      rt, "{" FLAGS("simple_one_for_one",
                    "100000") ", "
                              "[#{id => w, start => {worker, start_link, "
                              "[flaky]}, shutdown => brutal_kill}]}");
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT;
  cn_pid p;

  call_term(rt, sup, T(&rq, "{start_child, [w1]}"), &rep);
  p = whereis(rt, "w1");
  atomic_store(&g_flaky, 1000000);
  kill_pid(rt, p);
  call_until(rt, sup, "which_children",
             "[{undefined, restarting, worker, [worker]}]");
  call_until(rt, sup, "count_children",
             "[{specs, 1}, {active, 0}, {supervisors, 0}, {workers, 1}]");
  /* terminate_child on the pid that is being restarted drops it. */
  call_term(rt, sup, T(&rq, "{terminate_child, ~p}", &p), &rep);
  call_expect(rt, sup, "which_children", "[]");
  atomic_store(&g_flaky, 0);
  call_expect(rt, sup, "count_children",
              "[{specs, 1}, {active, 0}, {supervisors, 0}, {workers, 0}]");
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(5000)), 0);

  /* Temporary children are never restarted. */
  sup = start_sup(rt, "{#{strategy => simple_one_for_one}, [#{id => w, "
                      "start => {worker, start_link, [trap]}, restart => "
                      "temporary}]}");
  call_term(rt, sup, T(&rq, "{start_child, [t1]}"), &rep);
  p = whereis(rt, "t1");
  cast(rt, p, "{crash, boom}");
  call_until(rt, sup, "which_children", "[]");
  assert_int_equal(cn_whereis(rt, "t1", &p), CN_ENOENT);
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_runtime_free(rt);
}

/* Many children: started, crashed and restarted, then all stopped at
 * once. */
static void test_simple_many(void **st) {
  enum { N = 2000 };
  cn_runtime *rt = sup_rt();
  cn_pid sup = start_sup(rt, "{{simple_one_for_one, 1000, 5}, [#{id => w, "
                             "start => {worker, start_link, [normal]}}]}");
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_pid *p = calloc(N, sizeof(*p));
  int i;

  T(&rq, "{start_child, []}");
  for (i = 0; i < N; i++) {
    call_term(rt, sup, cn_buf_term(&rq), &rep);
    assert_int_equal(cn_match(cn_buf_term(&rep), "{ok, ~p}", &p[i]), 0);
  }
  for (i = 0; i < N; i += 20)
    kill_pid(rt, p[i]);
  /* Every killed child is replaced by a new one. */
  for (int tries = 0;; tries++) {
    cn_iter it;
    cn_term e;
    cn_pid q;
    size_t n = 0, stale = 0;
    call_term(rt, sup, T(&rq, "which_children"), &rep);
    assert_int_equal(cn_iter_init(&it, cn_buf_term(&rep), &n), 0);
    assert_int_equal(n, N);
    while (cn_iter_next(&it, &e)) {
      if (cn_match(e, "{undefined, ~p, worker, [worker]}", &q) != 0)
        stale++;
      else
        for (i = 0; i < N; i += 20)
          stale += cn_pid_equal(&q, &p[i]);
    }
    if (stale == 0)
      break;
    assert_true(tries < tmo(2000));
    uv_sleep(1);
  }
  call_expect(rt, sup, "count_children",
              "[{specs, 1}, {active, 2000}, {supervisors, 0}, "
              "{workers, 2000}]");
  call_term(rt, sup, T(&rq, "{terminate_child, ~p}", &p[1]), &rep);
  expect_eq(cn_buf_term(&rep), T(&ex, "ok"));
  assert_int_equal(cn_stop(rt, cn_to_pid(sup), NULL, tmo(10000)), 0);
  wait_count(rt, 0);
  free(p);
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

/* ---- auto_shutdown ---------------------------------------------------- */

static void test_auto_shutdown(void **st) {
  cn_runtime *rt = sup_rt();
  cn_ref ref;
  cn_pid sup = start_sup(
      rt, "{#{auto_shutdown => any_significant}, [" CHM(
              "s", "trap",
              ", restart => transient, significant => true") ", " CH("o") "]}");

  assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &ref), 0);
  cast(rt, whereis(rt, "s"), "{crash, normal}");
  expect_down(rt, &ref, "shutdown");
  rec_expect("s/normal,o/shutdown,");

  rec_reset();
  sup = start_sup(
      rt,
      "{#{auto_shutdown => all_significant}, [" CHM(
          "s1", "trap",
          ", restart => temporary, significant => true") ", " CHM("s2", "trap",
                                                                  ", restart "
                                                                  "=> "
                                                                  "transient, "
                                                                  "significant "
                                                                  "=> true") ","
                                                                             " " CH(
                                                                                 "o") "]}");
  assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &ref), 0);
  cast(rt, whereis(rt, "s1"), "{crash, boom}");
  call_until(rt, sup, "count_children",
             "[{specs, 2}, {active, 2}, {supervisors, 0}, {workers, 2}]");
  cast(rt, whereis(rt, "s2"), "{crash, shutdown}");
  expect_down(rt, &ref, "shutdown");
  rec_expect("s1/boom,s2/shutdown,o/shutdown,");
  cn_runtime_free(rt);
}

/* ---- Trees ------------------------------------------------------------ */

#define INNER "{" FLAGS("one_for_all", "10") ", [" CH("x") ", " CH("y") "]}"
#define INNER_START "{sup, start_link, [" INNER ", inner]}"
#define INNER_CHILD                                                            \
  "#{id => inner, start => " INNER_START ", type => supervisor}"
#define TREE "{" FLAGS("one_for_one", "10") ", [" CH("w0") ", " INNER_CHILD "]}"

static void test_nested(void **st) {
  cn_runtime *rt = sup_rt();
  cn_pid root = start_sup(rt, TREE);
  cn_pid w0 = whereis(rt, "w0"), in = whereis(rt, "inner");
  cn_pid x = whereis(rt, "x"), y = whereis(rt, "y"), in2, x2, y2;

  call_expect(rt, root, "which_children",
              "[{inner, ~p, supervisor, [sup]}, {w0, ~p, worker, [worker]}]",
              &in, &w0);
  call_expect(rt, root, "count_children",
              "[{specs, 2}, {active, 2}, {supervisors, 1}, {workers, 1}]");
  call_expect(rt, root, "{get_childspec, inner}",
              "{ok, #{id => inner, start => {sup, start_link, [" INNER
              ", inner]}, restart => permanent, significant => false, "
              "shutdown => infinity, type => supervisor, modules => [sup]}}");

  /* The inner supervisor handles its own. */
  kill_pid(rt, x);
  x2 = whereis_new(rt, "x", x);
  y2 = whereis_new(rt, "y", y);
  rec_expect("y/shutdown,");
  assert_true(cn_is_alive(rt, in));

  /* The inner supervisor dies: its children go with it (the link), the
   * root restarts it, and it starts new ones. */
  rec_reset();
  kill_pid(rt, in);
  in2 = whereis_new(rt, "inner", in);
  x = whereis_new(rt, "x", x2);
  y = whereis_new(rt, "y", y2);
  call_until(rt, root, "which_children",
             "[{inner, ~p, supervisor, [sup]}, {w0, ~p, worker, [worker]}]",
             &in2, &w0);
  call_expect(rt, in2, "which_children",
              "[{y, ~p, worker, [worker]}, {x, ~p, worker, [worker]}]", &y, &x);

  /* Stopping the root: the inner tree first (it started last), each in
   * reverse order. */
  rec_reset();
  assert_int_equal(cn_stop(rt, cn_to_pid(root), NULL, tmo(5000)), 0);
  rec_expect("y/shutdown,x/shutdown,w0/shutdown,");
  wait_count(rt, 0);
  cn_runtime_free(rt);
}

/* A nested supervisor that fails to start fails its parent's start. */
static void test_nested_start_failure(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf b = CN_BUF_INIT, why = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_start_options o = {NULL, &why};
  cn_pid pid;
  int i;

  assert_int_equal(
      cn_supervisor_start(
          rt,
          T(&b, "{#{}, [" CH("w0") ", #{id => inner, start => {sup, "
                                   "start_link, [{#{}, [" CH("x") ", " CHM(
                                       "f", "fail",
                                       "") "]}]}, type => supervisor}]}"),
          &o, &pid),
      CN_EEXIT);
  expect_eq(cn_buf_term(&why),
            T(&ex, "{shutdown, {failed_to_start_child, inner, {shutdown, "
                   "{failed_to_start_child, f, oops}}}}"));
  /* x was shut down by the inner reaper, w0 by the outer one. */
  for (i = 0; i < tmo(2000) && cn_process_count(rt) > 0; i++)
    uv_sleep(1);
  wait_count(rt, 0);
  rec_order("x/shutdown,", NULL);
  rec_order("w0/shutdown,", NULL);
  cn_buf_free(&b);
  cn_buf_free(&why);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

/* The runtime shuts a running tree down, root first, in order. */
static void test_runtime_shutdown(void **st) {
  cn_runtime *rt = sup_rt();
  cn_buf b = CN_BUF_INIT;
  cn_pid root;
  (void)start_sup(rt, TREE);
  /* And one linked to this thread, with a simple_one_for_one inside. */
  assert_int_equal(
      cn_supervisor_start_link(
          rt,
          T(&b, "{#{}, [#{id => pool, start => {sup, start_link, [{#{strategy "
                "=> simple_one_for_one}, [#{id => p, start => {worker, "
                "start_link, [trap]}}]}, pool]}, type => supervisor}]}"),
          NULL, &root),
      0);
  {
    cn_buf rep = CN_BUF_INIT;
    call_term(rt, whereis(rt, "pool"), T(&b, "{start_child, [p1]}"), &rep);
    assert_int_equal(cn_match(cn_buf_term(&rep), "{ok, _}"), 0);
    (void)whereis(rt, "p1");
    cn_buf_free(&rep);
  }
  assert_int_equal(cn_runtime_shutdown(rt, tmo(5000)), 0);
  assert_int_equal(cn_process_count(rt), 0);
  cn_runtime_free(rt);
  rec_order("y/shutdown,", "x/shutdown,", "w0/shutdown,", NULL);
  rec_order("p1/shutdown,", NULL);
  cn_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_module_register),
      cmocka_unit_test(test_server_register),
      cmocka_unit_test(test_bad_specs),
      cmocka_unit_test(test_start_failure),
      cmocka_unit_test(test_one_for_one),
      cmocka_unit_test(test_one_for_all),
      cmocka_unit_test(test_rest_for_one),
      cmocka_unit_test(test_restart_retries),
      cmocka_unit_test(test_restarting_state),
      cmocka_unit_test(test_restart_types),
      cmocka_unit_test(test_intensity),
      cmocka_unit_test(test_intensity_zero),
      cmocka_unit_test(test_shutdown_order),
      cmocka_unit_test(test_brutal_kill),
      cmocka_unit_test(test_shutdown_timeout),
      cmocka_unit_test(test_calls_postponed),
      cmocka_unit_test(test_calls),
      cmocka_unit_test(test_stray_messages),
      cmocka_unit_test(test_simple_one_for_one),
      cmocka_unit_test(test_simple_temporary_and_restarting),
      cmocka_unit_test(test_simple_many),
      cmocka_unit_test(test_auto_shutdown),
      cmocka_unit_test(test_nested),
      cmocka_unit_test(test_nested_start_failure),
      cmocka_unit_test(test_runtime_shutdown),
  };
  return run_group("supervisor", tests, NULL, NULL);
}
