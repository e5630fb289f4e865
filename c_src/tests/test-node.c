/* Tests of what a node program needs from the library: the log hook
 * (levels, a handler of one's own, the default format on stderr, and the
 * runtime's and the distribution layer's events through it). */
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
#include <pthread.h>

/* ---- A handler that records events ------------------------------------ */

#define MAX_SEEN 64

typedef struct seen_event {
  cn_log_level level;
  char domain[64];
  char text[CN_LOG_MAX_TEXT + 1];
  int64_t time_us;
  struct cn_runtime *rt;
} seen_event;

typedef struct recorder {
  pthread_mutex_t mu;
  seen_event ev[MAX_SEEN];
  int n;
} recorder;

static recorder rec = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};

static void record(const cn_log_event *ev, void *arg) {
  recorder *r = arg;
  pthread_mutex_lock(&r->mu);
  if (r->n < MAX_SEEN) {
    seen_event *s = &r->ev[r->n++];
    s->level = ev->level;
    snprintf(s->domain, sizeof(s->domain), "%s", ev->domain);
    snprintf(s->text, sizeof(s->text), "%s", ev->text);
    s->time_us = ev->time_us;
    s->rt = ev->rt;
  }
  pthread_mutex_unlock(&r->mu);
}

static int seen_count(void) {
  int n;
  pthread_mutex_lock(&rec.mu);
  n = rec.n;
  pthread_mutex_unlock(&rec.mu);
  return n;
}

/* Starts recording every event, at level. */
static void record_from_now(cn_log_level level) {
  pthread_mutex_lock(&rec.mu);
  rec.n = 0;
  pthread_mutex_unlock(&rec.mu);
  assert_int_equal(cn_log_set_level(level), 0);
  cn_log_set_handler(record, &rec);
}

static void record_stop(void) {
  cn_log_set_handler(NULL, NULL);
  assert_int_equal(cn_log_set_level(CN_LOG_DEFAULT_LEVEL), 0);
}

/* The first recorded event whose text holds needle, or NULL. */
static const seen_event *find_seen(const char *needle) {
  int i, n = seen_count();
  for (i = 0; i < n; i++) {
    if (strstr(rec.ev[i].text, needle))
      return &rec.ev[i];
  }
  return NULL;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Runs fn with fd 2 sent to a file, and returns what it wrote there. */
static void capture_stderr(void (*fn)(void), char *out, size_t cap) {
  char path[] = "/tmp/cn-test-node-XXXXXX";
  int fd = mkstemp(path), saved = dup(2);
  ssize_t n;

  assert_true(fd >= 0 && saved >= 0);
  unlink(path);
  fflush(stderr);
  assert_int_equal(dup2(fd, 2), 2);
  fn();
  fflush(stderr);
  assert_int_equal(dup2(saved, 2), 2);
  close(saved);
  n = pread(fd, out, cap - 1, 0);
  close(fd);
  assert_true(n >= 0);
  out[n] = '\0';
}

/* ---- Levels and the handler ------------------------------------------- */

static void test_log_levels(void **state) {
  cn_log_level l = CN_LOG_ERROR;
  const char *names[] = {"error", "warning", "info", "debug"};
  int i;

  assert_int_equal(cn_log_get_level(), CN_LOG_INFO); /* the default */
  for (i = 0; i < 4; i++) {
    assert_string_equal(cn_log_level_name((cn_log_level)(i + 1)), names[i]);
    assert_int_equal(cn_log_level_parse(names[i], &l), 0);
    assert_int_equal(l, i + 1);
  }
  assert_int_equal(cn_log_level_parse("WARNING", &l), 0);
  assert_int_equal(l, CN_LOG_WARNING);
  l = CN_LOG_DEBUG;
  assert_int_equal(cn_log_level_parse("warn", &l), CN_EINVAL);
  assert_int_equal(cn_log_level_parse("", &l), CN_EINVAL);
  assert_int_equal(cn_log_level_parse(NULL, &l), CN_EINVAL);
  assert_int_equal(l, CN_LOG_DEBUG); /* left alone on failure */
  assert_string_equal(cn_log_level_name((cn_log_level)0), "?");
  assert_string_equal(cn_log_level_name((cn_log_level)5), "?");

  assert_int_equal(cn_log_set_level(CN_LOG_ERROR), 0);
  assert_int_equal(cn_log_get_level(), CN_LOG_ERROR);
  assert_int_equal(cn_log_set_level((cn_log_level)0), CN_EINVAL);
  assert_int_equal(cn_log_set_level((cn_log_level)9), CN_EINVAL);
  assert_int_equal(cn_log_get_level(), CN_LOG_ERROR); /* unchanged */
  assert_int_equal(cn_log_set_level(CN_LOG_DEFAULT_LEVEL), 0);
}

static void log_back_to_default(void) {
  cn_log(CN_LOG_ERROR, "mine", "to stderr, not to the recorder");
}

static void test_log_handler(void **state) {
  int64_t t0 = now_us(), t1;
  char out[256];
  const seen_event *e;

  record_from_now(CN_LOG_WARNING);
  cn_log(CN_LOG_WARNING, "mine", "%d bottles of %s", 99, "beer");
  cn_log(CN_LOG_ERROR, NULL, "no domain");
  cn_log(CN_LOG_INFO, "mine", "below the level: dropped");
  cn_log(CN_LOG_DEBUG, "mine", "below the level: dropped");
  cn_log((cn_log_level)0, "mine", "not a level: dropped");
  t1 = now_us();
  assert_int_equal(seen_count(), 2);
  e = &rec.ev[0];
  assert_int_equal(e->level, CN_LOG_WARNING);
  assert_string_equal(e->domain, "mine");
  assert_string_equal(e->text, "99 bottles of beer");
  assert_null(e->rt);
  assert_true(e->time_us >= t0 - 1000 && e->time_us <= t1 + 1000);
  assert_int_equal(rec.ev[1].level, CN_LOG_ERROR);
  assert_string_equal(rec.ev[1].domain, "");
  assert_string_equal(rec.ev[1].text, "no domain");

  /* debug passes everything; a long text is cut, not refused. */
  assert_int_equal(cn_log_set_level(CN_LOG_DEBUG), 0);
  cn_log(CN_LOG_DEBUG, "mine", "%2000s|", "x");
  assert_int_equal(seen_count(), 3);
  assert_int_equal(strlen(rec.ev[2].text), CN_LOG_MAX_TEXT);

  /* Once the handler is replaced, the old one gets nothing. */
  cn_log_set_handler(NULL, NULL);
  assert_int_equal(cn_log_set_level(CN_LOG_ERROR), 0);
  capture_stderr(log_back_to_default, out, sizeof(out));
  assert_int_equal(seen_count(), 3);
  assert_non_null(strstr(out, " error mine: to stderr, not to the recorder\n"));
  record_stop();
}

/* ---- The default format ----------------------------------------------- */

static void test_log_format(void **state) {
  cn_log_event ev = {CN_LOG_WARNING, "cnode dist", "connection closed",
                     1796106600123456, NULL};
  char buf[256], small[16];
  size_t n;

  n = cn_log_format(&ev, buf, sizeof(buf));
  assert_string_equal(
      buf, "2026-12-01T06:30:00.123Z warning cnode dist: connection closed\n");
  assert_int_equal(n, strlen(buf));

  ev.domain = "";
  ev.level = CN_LOG_DEBUG;
  ev.time_us = 999; /* 1970, and a millisecond that rounds down */
  cn_log_format(&ev, buf, sizeof(buf));
  assert_string_equal(buf,
                      "1970-01-01T00:00:00.000Z debug connection closed\n");
  ev.time_us = -1500; /* before 1970: floor, not truncation */
  cn_log_format(&ev, buf, sizeof(buf));
  assert_string_equal(buf,
                      "1969-12-31T23:59:59.998Z debug connection closed\n");

  /* One event, one line: control characters do not break it. */
  ev.time_us = 1796106600000000;
  ev.level = CN_LOG_ERROR;
  ev.domain = "a\nb";
  ev.text = "line one\nline two\r\x1b[31m";
  cn_log_format(&ev, buf, sizeof(buf));
  assert_string_equal(
      buf, "2026-12-01T06:30:00.000Z error a?b: line one?line two??[31m\n");

  /* Cut to fit, NUL-terminated, and the length says it was cut. */
  ev.domain = "cnode";
  ev.text = "x";
  n = cn_log_format(&ev, small, sizeof(small));
  assert_int_equal(n, strlen("2026-12-01T06:30:00.000Z error cnode: x\n"));
  assert_int_equal(strlen(small), sizeof(small) - 1);
  assert_memory_equal(small, "2026-12-01T06:3", sizeof(small));
}

static void log_two_lines(void) {
  cn_log(CN_LOG_WARNING, "cnode", "%s", "the first");
  cn_log(CN_LOG_DEBUG, "cnode", "dropped at info");
  cn_log(CN_LOG_INFO, "cnode dist", "the second");
}

static void test_log_default_stderr(void **state) {
  char out[512], l1[128], l2[128];
  int y, mo, d, h, mi, s, ms;
  char z;

  assert_int_equal(cn_log_set_level(CN_LOG_INFO), 0);
  capture_stderr(log_two_lines, out, sizeof(out));
  assert_int_equal(sscanf(out, "%127[^\n]\n%127[^\n]\n", l1, l2), 2);
  assert_int_equal(sscanf(l1, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h,
                          &mi, &s, &ms, &z),
                   8);
  assert_true(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31);
  assert_true(h < 24 && mi < 60 && s < 61 && ms < 1000 && z == 'Z');
  assert_int_equal(strlen(l1), 24 + strlen(" warning cnode: the first"));
  assert_string_equal(l1 + 24, " warning cnode: the first");
  assert_string_equal(l2 + 24, " info cnode dist: the second");
  assert_int_equal(strlen(out), strlen(l1) + strlen(l2) + 2);
}

/* ---- The library's own events go through the hook --------------------- */

/* Answers every call with a binary of 4096 bytes. */
static int big_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  static char zeros[4096];
  return cn_build(reply, "~b", zeros, sizeof(zeros)) == 0 ? CN_REPLY : CN_STOP;
}

static const cn_server_ops big_ops = {.name = "bigmouth",
                                      .handle_call = big_call};

static void test_log_runtime_events(void **state) {
  cn_runtime_options o = {.schedulers = 1, .limits = {.max_size = 1024}};
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  const seen_event *e;
  cn_runtime *rt;
  cn_pid pid;

  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  assert_int_equal(cn_start(rt, &big_ops, NULL, NULL, &pid), 0);
  assert_int_equal(cn_build(&req, "hello"), 0);

  /* At error level the runtime's warning is not delivered. */
  record_from_now(CN_LOG_ERROR);
  assert_int_equal(cn_call(rt, cn_to_pid(pid), cn_buf_term(&req), 5000, &reply),
                   CN_ETOOBIG);
  assert_int_equal(seen_count(), 0);

  record_from_now(CN_LOG_WARNING);
  assert_int_equal(cn_call(rt, cn_to_pid(pid), cn_buf_term(&req), 5000, &reply),
                   CN_ETOOBIG);
  assert_non_null(e = find_seen("bigmouth: a reply of "));
  assert_int_equal(e->level, CN_LOG_WARNING);
  assert_string_equal(e->domain, "cnode");
  assert_ptr_equal(e->rt, rt);
  assert_non_null(strstr(e->text, "is over max_message (1024)"));
  record_stop();

  cn_buf_free(&req);
  cn_buf_free(&reply);
  cn_runtime_free(rt);
}

static void test_log_dist_events(void **state) {
  char name[128], host[256];
  cn_runtime_options o = {.schedulers = 1, .node_name = name};
  /* TEST-NET-3: an address no interface here has, so listen fails. */
  cn_dist_options d = {.cookie = "c", .listen_addr = "203.0.113.7"};
  const seen_event *e;
  cn_runtime *rt;

  gethostname(host, sizeof(host));
  host[sizeof(host) - 1] = '\0';
  host[strcspn(host, ".")] = '\0';
  snprintf(name, sizeof(name), "cntest_log_%d@%.64s", (int)getpid(), host);
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  record_from_now(CN_LOG_WARNING);
  assert_int_equal(cn_dist_start(rt, &d), CN_ESYSTEM);
  assert_non_null(e = find_seen("cannot listen on 203.0.113.7:"));
  assert_int_equal(e->level, CN_LOG_WARNING);
  assert_string_equal(e->domain, "cnode dist");
  assert_ptr_equal(e->rt, rt);
  record_stop();
  cn_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_levels),
      cmocka_unit_test(test_log_handler),
      cmocka_unit_test(test_log_format),
      cmocka_unit_test(test_log_default_stderr),
      cmocka_unit_test(test_log_runtime_events),
      cmocka_unit_test(test_log_dist_events),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
