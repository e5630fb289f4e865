/* sys tests: system messages ({system, {Pid, Tag}, Req}, as sys.erl sends
 * them) driven from C against servers and supervisors: get_state with and
 * without format_state, get_status's shape, suspend and resume (calls and
 * casts wait in order), change_code only while suspended, replace_state
 * refused at once, terminate, the debug requests, unknown requests; and
 * the log lines: a crash report, a supervisor restarting a child and a
 * supervisor giving up. */
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
#include <unistd.h>
#include "helpers.h"

/* ---- A handler that records log events --------------------------------- */

#define MAX_SEEN 64

typedef struct seen_event {
  cn_log_level level;
  char text[CN_LOG_MAX_TEXT + 1];
} seen_event;

static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static seen_event seen[MAX_SEEN];
static int nseen;

static void record(const cn_log_event *ev, void *arg) {
  (void)arg;
  pthread_mutex_lock(&rec_mu);
  if (nseen < MAX_SEEN) {
    seen[nseen].level = ev->level;
    snprintf(seen[nseen].text, sizeof(seen[nseen].text), "%s", ev->text);
    nseen++;
  }
  pthread_mutex_unlock(&rec_mu);
}

static void record_from_now(cn_log_level level) {
  pthread_mutex_lock(&rec_mu);
  nseen = 0;
  pthread_mutex_unlock(&rec_mu);
  assert_int_equal(cn_log_set_level(level), 0);
  cn_log_set_handler(record, NULL);
}

static void record_stop(void) {
  cn_log_set_handler(NULL, NULL);
  assert_int_equal(cn_log_set_level(CN_LOG_DEFAULT_LEVEL), 0);
}

/* The level of the first event whose text holds needle, waiting up to ms
 * for it; 0 when none came. */
static int wait_seen(const char *needle, int ms, char *text, size_t cap) {
  for (;;) {
    int i, level = 0;
    pthread_mutex_lock(&rec_mu);
    for (i = 0; i < nseen && !level; i++) {
      if (strstr(seen[i].text, needle)) {
        level = (int)seen[i].level;
        if (text)
          snprintf(text, cap, "%s", seen[i].text);
      }
    }
    pthread_mutex_unlock(&rec_mu);
    if (level || (ms -= 5) < 0)
      return level;
    usleep(5000);
  }
}

/* ---- The counter server (module sys_ctr) -------------------------------
 * State: a counter.  Calls: get -> N; incr -> N + 1; {crash, R} -> exits
 * with R.  Cast: incr.  code_change: Extra refuse refuses with reason nope,
 * anything else multiplies the counter by 10.  terminate records its
 * reason.  format_state: {count, N}. */

static char g_terminated[256];

static int ctr_init(cn_proc *self, void *arg, void **state) {
  int64_t *n = malloc(sizeof(*n));
  (void)self;
  (void)arg;
  if (!n)
    return CN_STOP;
  *n = 0;
  *state = n;
  return CN_NOREPLY;
}

static int ctr_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  int64_t *n = state;
  cn_term why;
  (void)from;
  if (cn_is_atom(req, "get"))
    return cn_build(reply, "~i", *n) ? CN_STOP : CN_REPLY;
  if (cn_is_atom(req, "incr"))
    return cn_build(reply, "~i", ++*n) ? CN_STOP : CN_REPLY;
  if (cn_match(req, "{crash, ~t}", &why) == 0) {
    cn_set_reason_term(self, why);
    return CN_STOP;
  }
  return cn_build(reply, "unknown") ? CN_STOP : CN_REPLY;
}

static int ctr_cast(cn_proc *self, void *state, cn_term msg) {
  (void)self;
  if (cn_is_atom(msg, "incr"))
    ++*(int64_t *)state;
  return CN_NOREPLY;
}

static void ctr_terminate(cn_proc *self, void *state, cn_term reason) {
  cn_buf b = CN_BUF_INIT;
  (void)self;
  (void)state;
  cn_term_print(reason, &b);
  snprintf(g_terminated, sizeof(g_terminated), "%.*s", (int)b.len,
           b.data ? b.data : "");
  cn_buf_free(&b);
}

static int ctr_code_change(cn_proc *self, void **state, cn_term old_vsn,
                           cn_term extra) {
  (void)old_vsn;
  if (cn_is_atom(extra, "refuse")) {
    cn_set_reason(self, "nope");
    return CN_STOP;
  }
  *(int64_t *)*state *= 10;
  return CN_NOREPLY;
}

static void ctr_free(void *state) { free(state); }

static int ctr_format(cn_proc *self, void *state, cn_buf *out) {
  (void)self;
  return cn_build(out, "{count, ~i}", *(int64_t *)state);
}

static int bad_format(cn_proc *self, void *state, cn_buf *out) {
  (void)self;
  (void)state;
  (void)out;
  return CN_ENOMEM;
}

static const cn_server_ops ctr_ops = {
    .name = "sys_ctr",
    .init = ctr_init,
    .handle_call = ctr_call,
    .handle_cast = ctr_cast,
    .terminate = ctr_terminate,
    .code_change = ctr_code_change,
    .free_state = ctr_free,
    .format_state = ctr_format,
};

/* The same server with no format_state, and with one that fails. */
static const cn_server_ops plain_ops = {
    .name = "sys_plain",
    .init = ctr_init,
    .handle_call = ctr_call,
    .free_state = ctr_free,
};

static const cn_server_ops failing_ops = {
    .name = "sys_failing",
    .init = ctr_init,
    .handle_call = ctr_call,
    .free_state = ctr_free,
    .format_state = bad_format,
};

/* ---- Helpers ------------------------------------------------------------ */

static cn_runtime *rt;

static int setup(void **st) {
  (void)st;
  rt = rt_new(2);
  g_terminated[0] = 0;
  return rt ? 0 : -1;
}

static int teardown(void **st) {
  (void)st;
  cn_runtime_free(rt);
  rt = NULL;
  return 0;
}

/* Sends {system, {Self, {sys_tag, N}}, Req} to dest, as gen:call(Dest,
 * system, Req) does, and returns the reply from {{sys_tag, N}, Reply}
 * in *reply.  Fails the test on a timeout or on any other message. */
static void sys_call(cn_dest dest, const char *req_fmt, cn_buf *reply, ...) {
  static int64_t n;
  char req_store[256];
  cn_buf req, msg = CN_BUF_INIT;
  cn_term tag_got, r;
  cn_pid me;
  int64_t got;
  va_list ap;

  cn_buf_init_with(&req, req_store, sizeof(req_store));
  va_start(ap, reply);
  assert_int_equal(cn_vbuild(&req, req_fmt, ap), 0);
  va_end(ap);
  assert_int_equal(cn_self(rt, &me), 0);
  n++;
  assert_int_equal(cn_sendf(rt, dest, "{system, {~p, {sys_tag, ~i}}, ~t}", &me,
                            n, cn_buf_term(&req)),
                   0);
  assert_int_equal(cn_receive(rt, tmo(2000), &msg), 0);
  assert_int_equal(cn_match(cn_buf_term(&msg), "{~t, ~t}", &tag_got, &r), 0);
  assert_int_equal(cn_match(tag_got, "{sys_tag, ~i}", &got), 0);
  assert_int_equal(got, n);
  cn_buf_reset(reply);
  assert_int_equal(cn_put_term(reply, r), 0);
  cn_buf_free(&msg);
  cn_buf_free(&req);
}

/* t printed as ~w prints it. */
static void expect_print(cn_term t, const char *want) {
  cn_buf b = CN_BUF_INIT;
  assert_int_equal(cn_term_print(t, &b), 0);
  assert_int_equal(cn_buf_append(&b, "", 1), 0);
  assert_string_equal(b.data, want);
  cn_buf_free(&b);
}

static void expect_reply(cn_dest dest, const char *req, const char *want) {
  cn_buf reply = CN_BUF_INIT;
  sys_call(dest, req, &reply);
  expect_print(cn_buf_term(&reply), want);
  cn_buf_free(&reply);
}

static cn_pid start_ctr(const cn_server_ops *ops, const char *name) {
  cn_start_options opts = {name, NULL};
  cn_pid pid;
  assert_int_equal(cn_start(rt, ops, NULL, &opts, &pid), 0);
  return pid;
}

static void call_expect(cn_pid pid, const char *req, const char *want) {
  cn_buf reply = CN_BUF_INIT;
  assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &reply, req), 0);
  expect_print(cn_buf_term(&reply), want);
  cn_buf_free(&reply);
}

/* A call on a thread of its own, to see it wait. */
typedef struct caller {
  pthread_t th;
  cn_dest to;
  const char *req;
  int status;
  cn_buf reply;
  atomic_int done;
} caller;

static void *caller_main(void *arg) {
  caller *c = arg;
  c->status = cn_callf(rt, c->to, tmo(5000), &c->reply, c->req);
  atomic_store(&c->done, 1);
  return NULL;
}

static void caller_start(caller *c, cn_dest to, const char *req) {
  memset(c, 0, sizeof(*c));
  c->to = to;
  c->req = req;
  cn_buf_init(&c->reply);
  assert_int_equal(pthread_create(&c->th, NULL, caller_main, c), 0);
}

/* Joins c and checks how its call ended: want is the reply printed, or
 * NULL for a call that failed with status. */
static void caller_join_expect(caller *c, int status, const char *want) {
  pthread_join(c->th, NULL);
  assert_int_equal(c->status, status);
  if (want)
    expect_print(cn_buf_term(&c->reply), want);
  cn_buf_free(&c->reply);
}

/* ---- Tests ---------------------------------------------------------- */

static void test_get_state(void **st) {
  cn_pid a = start_ctr(&ctr_ops, NULL), b = start_ctr(&plain_ops, NULL),
         c = start_ctr(&failing_ops, NULL);
  (void)st;
  expect_reply(cn_to_pid(a), "get_state", "{count,0}");
  call_expect(a, "incr", "1");
  expect_reply(cn_to_pid(a), "get_state", "{count,1}");
  /* Without format_state: the documented placeholder. */
  expect_reply(cn_to_pid(b), "get_state", "{cnode_state,sys_plain}");
  /* A failing format_state: the error that makes sys:get_state raise. */
  {
    char want[128];
    snprintf(want, sizeof(want),
             "{error,{callback_failed,{sys_failing,format_state},%d}}",
             CN_ENOMEM);
    expect_reply(cn_to_pid(c), "get_state", want);
  }
  assert_int_equal(cn_stop(rt, cn_to_pid(a), NULL, tmo(2000)), 0);
  assert_int_equal(cn_stop(rt, cn_to_pid(b), NULL, tmo(2000)), 0);
  assert_int_equal(cn_stop(rt, cn_to_pid(c), NULL, tmo(2000)), 0);
}

static void test_get_status(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, "sys_status"), p2, parent;
  cn_buf reply = CN_BUF_INIT;
  cn_term pdict, dbg, misc, header, data, state;
  char sysstate[32];
  (void)st;
  sys_call(cn_to_name("sys_status"), "get_status", &reply);
  assert_int_equal(cn_match(cn_buf_term(&reply),
                            "{status, ~p, {module, gen_server},"
                            " [~t, ~a, ~p, ~t, ~t]}",
                            &p2, &pdict, sysstate, sizeof(sysstate), &parent,
                            &dbg, &misc),
                   0);
  assert_true(cn_pid_equal(&p2, &pid));
  assert_string_equal(sysstate, "running");
  /* Not linked: its own parent, as gen_server:start gives. */
  assert_true(cn_pid_equal(&parent, &pid));
  expect_print(pdict, "[{'$initial_call',{sys_ctr,init,1}}]");
  expect_print(dbg, "[]");
  assert_int_equal(cn_match(misc,
                            "[{header, ~t}, {data, ~t}, {data, [{_, ~t}]}]",
                            &header, &data, &state),
                   0);
  {
    cn_buf want = CN_BUF_INIT;
    assert_int_equal(
        cn_build(&want, "~c", "Status for generic server sys_status"), 0);
    assert_true(cn_term_equal(header, cn_buf_term(&want)));
    cn_buf_free(&want);
  }
  expect_print(state, "{count,0}");
  /* Suspended shows in the status. */
  expect_reply(cn_to_pid(pid), "suspend", "ok");
  sys_call(cn_to_pid(pid), "get_status", &reply);
  assert_int_equal(
      cn_match(cn_buf_term(&reply), "{status, _, _, [_, suspended, _, _, _]}"),
      0);
  expect_reply(cn_to_pid(pid), "resume", "ok");
  cn_buf_free(&reply);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(2000)), 0);
}

/* Suspended, the server answers sys only; a cast and a call wait, in
 * order, and run on resume. */
static void test_suspend_resume(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, NULL);
  cn_proc_info info = {0};
  caller c;
  (void)st;
  expect_reply(cn_to_pid(pid), "suspend", "ok");
  assert_int_equal(cn_castf(rt, cn_to_pid(pid), "incr"), 0);
  caller_start(&c, cn_to_pid(pid), "get");
  usleep(200 * 1000);
  assert_int_equal(atomic_load(&c.done), 0);
  assert_int_equal(cn_process_info(rt, pid, &info), 0);
  assert_int_equal(info.message_queue_len, 2);
  expect_reply(cn_to_pid(pid), "get_state", "{count,0}");
  expect_reply(cn_to_pid(pid), "resume", "ok");
  caller_join_expect(&c, 0, "1");
  expect_reply(cn_to_pid(pid), "get_state", "{count,1}");
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(2000)), 0);
}

/* A suspended server killed: its waiting caller hears at once. */
static void test_exit_while_suspended(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, NULL);
  cn_buf reason = CN_BUF_INIT;
  caller c;
  (void)st;
  expect_reply(cn_to_pid(pid), "suspend", "ok");
  caller_start(&c, cn_to_pid(pid), "get");
  usleep(100 * 1000);
  assert_int_equal(atomic_load(&c.done), 0);
  assert_int_equal(cn_exit(rt, pid, T(&reason, "kill")), 0);
  caller_join_expect(&c, CN_EEXIT, "killed");
  assert_false(cn_is_alive(rt, pid));
  cn_buf_free(&reason);
}

static void test_change_code(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, NULL);
  (void)st;
  call_expect(pid, "incr", "1");
  /* Only while suspended, as in sys:do_cmd/6. */
  expect_reply(cn_to_pid(pid), "{change_code, sys_ctr, v1, go}",
               "{error,{unknown_system_msg,{change_code,sys_ctr,v1,go}}}");
  expect_reply(cn_to_pid(pid), "suspend", "ok");
  expect_reply(cn_to_pid(pid), "{change_code, sys_ctr, v1, go}", "ok");
  expect_reply(cn_to_pid(pid), "get_state", "{count,10}");
  /* Refused: the reason set, the state kept. */
  expect_reply(cn_to_pid(pid), "{change_code, sys_ctr, v1, refuse}",
               "{error,nope}");
  expect_reply(cn_to_pid(pid), "get_state", "{count,10}");
  expect_reply(cn_to_pid(pid), "resume", "ok");
  call_expect(pid, "get", "10");
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(2000)), 0);
}

static void test_replace_state_and_unknown(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, NULL);
  (void)st;
  /* A fun cannot run in C: an error, at once, that sys raises. */
  expect_reply(cn_to_pid(pid), "{replace_state, fn}",
               "{error,{not_supported,replace_state}}");
  expect_reply(cn_to_pid(pid), "bogus", "{error,{unknown_system_msg,bogus}}");
  expect_reply(cn_to_pid(pid), "{debug, bogus}", "unknown_debug");
  expect_reply(cn_to_pid(pid), "get_state", "{count,0}");
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(2000)), 0);
}

static void test_debug(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, NULL);
  cn_buf reply = CN_BUF_INIT;
  cn_term stats;
  uint64_t in, out;
  (void)st;
  expect_reply(cn_to_pid(pid), "{debug, {statistics, get}}",
               "{ok,no_statistics}");
  expect_reply(cn_to_pid(pid), "{debug, {statistics, true}}", "ok");
  call_expect(pid, "incr", "1"); /* inline */
  assert_int_equal(cn_castf(rt, cn_to_pid(pid), "incr"), 0);
  call_expect(pid, "incr", "3");
  sys_call(cn_to_pid(pid), "{debug, {statistics, get}}", &reply);
  assert_int_equal(cn_match(cn_buf_term(&reply), "{ok, ~t}", &stats), 0);
  assert_int_equal(cn_match(stats,
                            "[{start_time, {{_, _, _}, {_, _, _}}},"
                            " {current_time, {{_, _, _}, {_, _, _}}},"
                            " {reductions, 0}, {messages_in, ~u},"
                            " {messages_out, ~u}]",
                            &in, &out),
                   0);
  assert_int_equal(in, 3);
  assert_int_equal(out, 2);
  expect_reply(cn_to_pid(pid), "{debug, {trace, true}}", "ok");
  expect_reply(cn_to_pid(pid), "{debug, {log, {true, 5}}}", "ok");
  expect_reply(cn_to_pid(pid), "{debug, {log, get}}", "{ok,[]}");
  expect_reply(cn_to_pid(pid), "{debug, {log_to_file, \"/tmp/x\"}}",
               "{error,open_file}");
  expect_reply(cn_to_pid(pid), "{debug, {install, {f, s}}}",
               "{error,{not_supported,install}}");
  expect_reply(cn_to_pid(pid), "{debug, {remove, f}}", "ok");
  sys_call(cn_to_pid(pid), "get_status", &reply);
  assert_int_equal(cn_match(cn_buf_term(&reply),
                            "{status, _, _, [_, running, _, [{trace, true},"
                            " {log, {5, []}}, {statistics, _}], _]}"),
                   0);
  expect_reply(cn_to_pid(pid), "{debug, no_debug}", "ok");
  sys_call(cn_to_pid(pid), "get_status", &reply);
  assert_int_equal(
      cn_match(cn_buf_term(&reply), "{status, _, _, [_, _, _, [], _]}"), 0);
  expect_reply(cn_to_pid(pid), "{debug, {statistics, get}}",
               "{ok,no_statistics}");
  cn_buf_free(&reply);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(2000)), 0);
}

/* {terminate, Reason}: ok, then terminate runs and monitors see Reason;
 * an abnormal reason is a crash report. */
static void test_terminate(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, "sys_term");
  cn_buf msg = CN_BUF_INIT;
  char text[CN_LOG_MAX_TEXT + 1];
  cn_ref mref;
  (void)st;
  assert_int_equal(cn_monitor(rt, cn_to_pid(pid), &mref), 0);
  record_from_now(CN_LOG_INFO);
  expect_reply(cn_to_pid(pid), "{terminate, {bye, 1}}", "ok");
  assert_int_equal(cn_receive(rt, tmo(2000), &msg), 0);
  assert_int_equal(
      cn_match(cn_buf_term(&msg), "{'DOWN', _, process, _, {bye, 1}}"), 0);
  assert_string_equal(g_terminated, "{bye,1}");
  assert_int_equal(wait_seen("crash report", 2000, text, sizeof(text)),
                   CN_LOG_ERROR);
  assert_non_null(strstr(text, "server sys_term (sys_ctr)"));
  assert_non_null(strstr(text, "reason {bye,1}"));
  /* A normal stop is no crash. */
  pid = start_ctr(&ctr_ops, "sys_term2");
  assert_int_equal(cn_monitor(rt, cn_to_pid(pid), &mref), 0);
  expect_reply(cn_to_pid(pid), "{terminate, normal}", "ok");
  assert_int_equal(cn_receive(rt, tmo(2000), &msg), 0);
  assert_int_equal(
      cn_match(cn_buf_term(&msg), "{'DOWN', _, process, _, normal}"), 0);
  assert_int_equal(wait_seen("sys_term2", 100, NULL, 0), 0);
  record_stop();
  cn_buf_free(&msg);
}

/* A server that stops with an abnormal reason logs one crash report:
 * name, module, reason and the last message, cut short when long. */
static void test_crash_report(void **st) {
  cn_pid pid = start_ctr(&ctr_ops, NULL);
  cn_buf reply = CN_BUF_INIT;
  char text[CN_LOG_MAX_TEXT + 1], want[64];
  (void)st;
  record_from_now(CN_LOG_ERROR);
  assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &reply,
                            "{crash, {boom, ~i}}", (int64_t)42),
                   CN_EEXIT);
  assert_int_equal(wait_seen("crash report", 2000, text, sizeof(text)),
                   CN_LOG_ERROR);
  assert_non_null(strstr(text, "(sys_ctr)"));
  assert_non_null(strstr(text, "reason {boom,42}"));
  assert_non_null(strstr(text, "last message in {crash,{boom,42}}"));
  /* Unnamed: the pid names it. */
  snprintf(want, sizeof(want), "server <0.%u.%u>", pid.id, pid.serial);
  assert_non_null(strstr(text, want));

  /* A long reason is cut to a few hundred bytes. */
  record_from_now(CN_LOG_ERROR);
  pid = start_ctr(&ctr_ops, NULL);
  assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &reply,
                            "{crash, ~b}", "", (size_t)0),
                   CN_EEXIT);
  {
    char big[5000];
    memset(big, 'x', sizeof(big));
    pid = start_ctr(&ctr_ops, NULL);
    record_from_now(CN_LOG_ERROR);
    assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &reply,
                              "{crash, ~b}", big, sizeof(big)),
                     CN_EEXIT);
    assert_int_equal(wait_seen("crash report", 2000, text, sizeof(text)),
                     CN_LOG_ERROR);
    assert_true(strlen(text) < 900);
    assert_non_null(strstr(text, "..."));
  }
  /* No crash report for a normal stop or for a kill by signal. */
  record_from_now(CN_LOG_ERROR);
  pid = start_ctr(&ctr_ops, NULL);
  assert_int_equal(
      cn_callf(rt, cn_to_pid(pid), tmo(2000), &reply, "{crash, normal}"),
      CN_EEXIT);
  pid = start_ctr(&ctr_ops, NULL);
  assert_int_equal(cn_exit(rt, pid, T(&reply, "oops")), 0);
  usleep(50 * 1000);
  assert_int_equal(wait_seen("crash report", 50, NULL, 0), 0);
  record_stop();
  cn_buf_free(&reply);
}

/* ---- Supervisors ------------------------------------------------------ */

static int start_sup(const char *spec_fmt, const char *name, cn_pid *pid) {
  cn_buf spec = CN_BUF_INIT;
  cn_start_options opts = {name, NULL};
  int rc;
  T(&spec, spec_fmt);
  rc = cn_supervisor_start(rt, cn_buf_term(&spec), &opts, pid);
  cn_buf_free(&spec);
  return rc;
}

#define SUP_SPEC                                                               \
  "{#{strategy => one_for_one, intensity => 1, period => 60},"                 \
  " [#{id => ctr, start => {sys_ctr, start_link, [{local, sys_sup_ctr}, "      \
  "[]]}}]}"

static void test_supervisor(void **st) {
  cn_pid sup, child, child2;
  cn_buf reply = CN_BUF_INIT, wc = CN_BUF_INIT;
  cn_term state, pdict;
  char text[CN_LOG_MAX_TEXT + 1];
  caller c;
  (void)st;
  assert_int_equal(cn_server_register(rt, &ctr_ops), 0);
  assert_int_equal(start_sup(SUP_SPEC, "sys_sup", &sup), 0);
  assert_int_equal(cn_whereis(rt, "sys_sup_ctr", &child), 0);

  /* get_state: the flags and the children as which_children gives. */
  sys_call(cn_to_pid(sup), "get_state", &reply);
  assert_int_equal(
      cn_callf(rt, cn_to_pid(sup), tmo(2000), &wc, "which_children"), 0);
  assert_int_equal(cn_match(cn_buf_term(&reply),
                            "#{strategy => one_for_one, intensity => 1,"
                            " period => 60, auto_shutdown => never,"
                            " children => ~t}",
                            &state),
                   0);
  assert_true(cn_term_equal(state, cn_buf_term(&wc)));
  sys_call(cn_to_pid(sup), "get_status", &reply);
  assert_int_equal(cn_match(cn_buf_term(&reply),
                            "{status, _, {module, gen_server},"
                            " [~t, running, _, [], _]}",
                            &pdict),
                   0);
  expect_print(pdict, "[{'$initial_call',{supervisor,init,1}}]");
  /* The child's parent is the supervisor. */
  sys_call(cn_to_pid(child), "get_status", &reply);
  {
    cn_pid parent;
    assert_int_equal(cn_match(cn_buf_term(&reply),
                              "{status, _, _, [_, _, ~p, _, _]}", &parent),
                     0);
    assert_true(cn_pid_equal(&parent, &sup));
  }

  /* Suspended, it holds its calls. */
  expect_reply(cn_to_pid(sup), "suspend", "ok");
  caller_start(&c, cn_to_pid(sup), "count_children");
  usleep(150 * 1000);
  assert_int_equal(atomic_load(&c.done), 0);
  expect_reply(cn_to_pid(sup), "resume", "ok");
  caller_join_expect(&c, 0,
                     "[{specs,1},{active,1},{supervisors,0},{workers,1}]");

  /* A child crash: a crash report, then the restart (info). */
  record_from_now(CN_LOG_INFO);
  assert_int_equal(
      cn_callf(rt, cn_to_pid(child), tmo(2000), &reply, "{crash, first}"),
      CN_EEXIT);
  assert_int_equal(wait_seen("restarting child", 2000, text, sizeof(text)),
                   CN_LOG_INFO);
  assert_non_null(strstr(text, "supervisor sys_sup: restarting child ctr"));
  assert_non_null(strstr(text, "reason first"));
  assert_int_equal(wait_seen("crash report", 100, NULL, 0), CN_LOG_ERROR);
  for (int i = 0; i < 200 && cn_whereis(rt, "sys_sup_ctr", &child2) != 0; i++)
    usleep(5000);
  assert_int_equal(cn_whereis(rt, "sys_sup_ctr", &child2), 0);
  assert_false(cn_pid_equal(&child, &child2));

  /* A second crash within the period: over intensity 1, it gives up. */
  {
    cn_ref mref;
    cn_buf msg = CN_BUF_INIT;
    assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &mref), 0);
    assert_int_equal(
        cn_callf(rt, cn_to_pid(child2), tmo(2000), &reply, "{crash, second}"),
        CN_EEXIT);
    assert_int_equal(
        wait_seen("reached max restart intensity", 2000, text, sizeof(text)),
        CN_LOG_ERROR);
    assert_non_null(strstr(text, "supervisor sys_sup"));
    assert_non_null(strstr(text, "child ctr"));
    assert_non_null(strstr(text, "reason second"));
    assert_int_equal(cn_receive(rt, tmo(2000), &msg), 0);
    assert_int_equal(
        cn_match(cn_buf_term(&msg), "{'DOWN', _, process, _, shutdown}"), 0);
    cn_buf_free(&msg);
  }
  record_stop();
  cn_buf_free(&reply);
  cn_buf_free(&wc);
}

/* {terminate, Reason} to a supervisor: ok, its children go first, then it
 * exits with Reason. */
static void test_supervisor_terminate(void **st) {
  cn_pid sup, child;
  cn_buf msg = CN_BUF_INIT;
  cn_ref mref, cref;
  (void)st;
  assert_int_equal(cn_server_register(rt, &ctr_ops), 0);
  assert_int_equal(start_sup(SUP_SPEC, NULL, &sup), 0);
  assert_int_equal(cn_whereis(rt, "sys_sup_ctr", &child), 0);
  assert_int_equal(cn_monitor(rt, cn_to_pid(child), &cref), 0);
  assert_int_equal(cn_monitor(rt, cn_to_pid(sup), &mref), 0);
  /* Suspended first: the stop must still get through. */
  expect_reply(cn_to_pid(sup), "suspend", "ok");
  expect_reply(cn_to_pid(sup), "{terminate, shutdown}", "ok");
  assert_int_equal(cn_receive(rt, tmo(2000), &msg), 0);
  assert_int_equal(
      cn_match(cn_buf_term(&msg), "{'DOWN', _, process, _, shutdown}"), 0);
  assert_int_equal(cn_receive(rt, tmo(2000), &msg), 0);
  assert_int_equal(
      cn_match(cn_buf_term(&msg), "{'DOWN', _, process, _, shutdown}"), 0);
  assert_false(cn_is_alive(rt, sup));
  assert_false(cn_is_alive(rt, child));
  cn_buf_free(&msg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get_state, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_suspend_resume, setup, teardown),
      cmocka_unit_test_setup_teardown(test_exit_while_suspended, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_change_code, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replace_state_and_unknown, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_debug, setup, teardown),
      cmocka_unit_test_setup_teardown(test_terminate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crash_report, setup, teardown),
      cmocka_unit_test_setup_teardown(test_supervisor, setup, teardown),
      cmocka_unit_test_setup_teardown(test_supervisor_terminate, setup,
                                      teardown),
  };
  return run_group("sys", tests, NULL, NULL);
}
