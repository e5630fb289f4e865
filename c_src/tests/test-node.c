/* Tests of what a node program needs from the library: the log hook
 * (levels, a handler of one's own, the default format on stderr, and the
 * runtime's and the distribution layer's events through it), the cookie
 * file as erl reads and creates it, erl's -sname and -name rules, and
 * cn_node_run from start to a clean stop. */
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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "helpers.h"

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

/* Waits up to ms for an event whose text holds needle: 0 or
 * CN_ETIMEDOUT. */
static int wait_seen(const char *needle, int ms) {
  for (;;) {
    if (find_seen(needle))
      return 0;
    if ((ms -= 5) < 0)
      return CN_ETIMEDOUT;
    usleep(5000);
  }
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
  assert_int_equal(e->level, CN_LOG_ERROR);
  assert_string_equal(e->domain, "cnode dist");
  assert_ptr_equal(e->rt, rt);
  record_stop();
  cn_runtime_free(rt);
}

/* ---- Scratch directories and files ------------------------------------ */

static void scratch_dir(char *dir, size_t cap) {
  snprintf(dir, cap, "/tmp/cn-test-node-XXXXXX");
  assert_non_null(mkdtemp(dir));
}

static void rm_rf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void write_file(const char *path, const char *data, size_t len,
                       mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

static void write_text(const char *path, const char *text) {
  write_file(path, text, strlen(text), 0644);
}

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  assert_true(n > 0 && (size_t)n < cap);
}

/* HOME and XDG_CONFIG_HOME as given (NULL: unset). */
static void set_env(const char *home, const char *xdg) {
  if (home)
    setenv("HOME", home, 1);
  else
    unsetenv("HOME");
  if (xdg)
    setenv("XDG_CONFIG_HOME", xdg, 1);
  else
    unsetenv("XDG_CONFIG_HOME");
}

static char saved_home[4096];
static bool had_home;

static void save_env(void) {
  const char *h = getenv("HOME");
  had_home = h != NULL;
  snprintf(saved_home, sizeof(saved_home), "%s", h ? h : "");
}

static void restore_env(void) { set_env(had_home ? saved_home : NULL, NULL); }

/* ---- The cookie file -------------------------------------------------- */

static bool all_letters(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (s[i] < 'A' || s[i] > 'Z')
      return false;
  }
  return s[n] == '\0';
}

static void test_cookie_created(void **state) {
  char dir[64], dir2[64], path[256], data[64];
  cn_cookie c, again, reread, other;
  struct stat st;
  mode_t old;
  int fd;

  save_env();
  scratch_dir(dir, sizeof(dir));
  scratch_dir(dir2, sizeof(dir2));
  path_in(path, sizeof(path), dir, ".erlang.cookie");
  set_env(dir, NULL);
  old = umask(0777); /* the file is 0400 whatever the umask */
  assert_int_equal(cn_cookie_load(&c), 0);
  umask(old);
  assert_true(c.created);
  assert_string_equal(c.path, path);
  assert_string_equal(c.error, "");
  assert_true(all_letters(c.value, CN_COOKIE_NEW_LEN));
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0400);
  /* 20 letters and no newline, as erl writes it. */
  assert_true((fd = open(path, O_RDONLY)) >= 0);
  assert_int_equal(read(fd, data, sizeof(data)), CN_COOKIE_NEW_LEN);
  close(fd);
  assert_memory_equal(data, c.value, CN_COOKIE_NEW_LEN);

  /* The next start reads it and creates nothing. */
  assert_int_equal(cn_cookie_load(&again), 0);
  assert_false(again.created);
  assert_string_equal(again.value, c.value);
  assert_string_equal(again.path, path);
  assert_int_equal(cn_cookie_read(path, &reread), 0);
  assert_false(reread.created);
  assert_string_equal(reread.value, c.value);

  /* Another home, another random cookie. */
  set_env(dir2, NULL);
  assert_int_equal(cn_cookie_load(&other), 0);
  assert_true(other.created);
  assert_true(all_letters(other.value, CN_COOKIE_NEW_LEN));
  assert_string_not_equal(other.value, c.value);

  restore_env();
  rm_rf(dir);
  rm_rf(dir2);
}

/* Reads data written to a 0400 file; returns the error, the cookie in c. */
static int read_data(const char *dir, const char *data, size_t len,
                     cn_cookie *c) {
  char path[256];
  path_in(path, sizeof(path), dir, "cookie");
  unlink(path);
  write_file(path, data, len, 0400);
  return cn_cookie_read(path, c);
}

static void test_cookie_contents(void **state) {
  char dir[64], path[256], big[5000];
  cn_cookie c;

  scratch_dir(dir, sizeof(dir));
  path_in(path, sizeof(path), dir, "cookie");

  assert_int_equal(read_data(dir, "secret\n", 7, &c), 0);
  assert_string_equal(c.value, "secret");
  assert_string_equal(c.path, path);
  assert_false(c.created);
  /* check_cookie/2: spaces inside the printable run belong to the cookie,
   * trailing ones too; after it, newlines, returns and spaces go. */
  assert_int_equal(read_data(dir, "two words  \r\n \n", 15, &c), 0);
  assert_string_equal(c.value, "two words  ");
  memset(big, 'x', sizeof(big));
  assert_int_equal(read_data(dir, big, CN_COOKIE_MAX, &c), 0);
  assert_int_equal(strlen(c.value), CN_COOKIE_MAX);

  assert_int_equal(read_data(dir, big, CN_COOKIE_MAX + 1, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "longer than 255 bytes"));
  assert_non_null(strstr(c.error, path));
  assert_string_equal(c.value, "");
  assert_int_equal(read_data(dir, big, sizeof(big), &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "too long"));
  assert_int_equal(read_data(dir, "", 0, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "holds no cookie"));
  assert_int_equal(read_data(dir, "\n", 1, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "holds no cookie"));
  assert_int_equal(read_data(dir, "abc\x01", 4, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "bad characters in cookie file"));
  assert_int_equal(read_data(dir, "abc\ndef\n", 8, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "bad characters"));
  assert_int_equal(read_data(dir, "caf\xc3\xa9", 5, &c), CN_EINVAL);
  assert_int_equal(read_data(dir, "abc\tdef", 7, &c), CN_EINVAL);

  unlink(path);
  assert_int_equal(cn_cookie_read(path, &c), CN_ENOENT);
  assert_non_null(strstr(c.error, path));
  assert_int_equal(cn_cookie_read("", &c), CN_EINVAL);
  assert_int_equal(cn_cookie_read(NULL, &c), CN_EINVAL);
  assert_int_equal(cn_cookie_read(path, NULL), CN_EINVAL);
  assert_int_equal(cn_cookie_load(NULL), CN_EINVAL);
  rm_rf(dir);
}

static void test_cookie_refused_files(void **state) {
  char dir[64], path[256], sub[256], fifo[256];
  cn_cookie c;
  struct stat st;

  save_env();
  scratch_dir(dir, sizeof(dir));
  path_in(path, sizeof(path), dir, ".erlang.cookie");

  /* check_attributes/4: group or others may not have any access. */
  write_file(path, "secret", 6, 0440);
  assert_int_equal(cn_cookie_read(path, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "must be accessible by owner only"));
  assert_non_null(strstr(c.error, "chmod 400"));
  write_file(path, "secret", 6, 0404);
  assert_int_equal(cn_cookie_read(path, &c), CN_EINVAL);
  write_file(path, "secret", 6, 0401);
  assert_int_equal(cn_cookie_read(path, &c), CN_EINVAL);
  write_file(path, "secret", 6, 0600); /* the owner's own bits are fine */
  assert_int_equal(cn_cookie_read(path, &c), 0);
  assert_string_equal(c.value, "secret");

  /* cn_cookie_load refuses it too, and neither replaces it nor falls back
   * to a new file. */
  write_file(path, "secret", 6, 0444);
  set_env(dir, NULL);
  assert_int_equal(cn_cookie_load(&c), CN_EINVAL);
  assert_false(c.created);
  assert_string_equal(c.path, path);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0444);
  assert_int_equal(st.st_size, 6);

  /* Not a regular file: a directory, a FIFO (which must not hang us). */
  path_in(sub, sizeof(sub), dir, "adir");
  assert_int_equal(mkdir(sub, 0700), 0);
  assert_int_equal(cn_cookie_read(sub, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "not a regular file"));
  path_in(fifo, sizeof(fifo), dir, "afifo");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(cn_cookie_read(fifo, &c), CN_EINVAL);
  assert_non_null(strstr(c.error, "not a regular file"));

  /* Unreadable (root reads anything, so only as another user). */
  if (geteuid() != 0) {
    write_file(path, "secret", 6, 0000);
    assert_int_equal(cn_cookie_read(path, &c), CN_ESYSTEM);
    assert_non_null(strstr(c.error, "cannot read cookie file"));
  }

  /* A home that does not exist: the file cannot be created. */
  path_in(sub, sizeof(sub), dir, "no/such/home");
  set_env(sub, NULL);
  assert_int_equal(cn_cookie_load(&c), CN_ESYSTEM);
  assert_non_null(strstr(c.error, "cannot create cookie file"));

  restore_env();
  rm_rf(dir);
}

static void test_cookie_search_order(void **state) {
  char dir[64], xdg[256], xdg_erl[256], xdg_file[256], home_file[256];
  char conf[256], conf_erl[256], conf_file[256];
  cn_cookie c;

  save_env();
  scratch_dir(dir, sizeof(dir));
  path_in(xdg, sizeof(xdg), dir, "xdg");
  path_in(xdg_erl, sizeof(xdg_erl), xdg, "erlang");
  path_in(xdg_file, sizeof(xdg_file), xdg_erl, ".erlang.cookie");
  path_in(home_file, sizeof(home_file), dir, ".erlang.cookie");
  path_in(conf, sizeof(conf), dir, ".config");
  path_in(conf_erl, sizeof(conf_erl), conf, "erlang");
  path_in(conf_file, sizeof(conf_file), conf_erl, ".erlang.cookie");
  assert_int_equal(mkdir(xdg, 0700), 0);
  assert_int_equal(mkdir(xdg_erl, 0700), 0);
  assert_int_equal(mkdir(conf, 0700), 0);
  assert_int_equal(mkdir(conf_erl, 0700), 0);

  /* No $HOME file: $XDG_CONFIG_HOME/erlang/.erlang.cookie. */
  write_file(xdg_file, "fromxdg", 7, 0400);
  set_env(dir, xdg);
  assert_int_equal(cn_cookie_load(&c), 0);
  assert_string_equal(c.value, "fromxdg");
  assert_string_equal(c.path, xdg_file);
  assert_false(c.created);
  /* Without XDG_CONFIG_HOME, $HOME/.config/erlang/. */
  write_file(conf_file, "fromconfig", 10, 0400);
  set_env(dir, NULL);
  assert_int_equal(cn_cookie_load(&c), 0);
  assert_string_equal(c.value, "fromconfig");
  assert_string_equal(c.path, conf_file);
  /* $HOME/.erlang.cookie comes first. */
  write_file(home_file, "fromhome", 8, 0400);
  set_env(dir, xdg);
  assert_int_equal(cn_cookie_load(&c), 0);
  assert_string_equal(c.value, "fromhome");
  assert_string_equal(c.path, home_file);

  /* No $HOME: the XDG file is the one made. */
  unlink(xdg_file);
  set_env(NULL, xdg);
  assert_int_equal(cn_cookie_load(&c), 0);
  assert_true(c.created);
  assert_string_equal(c.path, xdg_file);
  assert_true(all_letters(c.value, CN_COOKIE_NEW_LEN));

  set_env(NULL, NULL);
  assert_int_equal(cn_cookie_load(&c), CN_ENOENT);
  assert_non_null(strstr(c.error, "$HOME"));
  restore_env();
  rm_rf(dir);
}

/* ---- Node names ------------------------------------------------------- */

static void short_host(char *out, size_t cap) {
  assert_int_equal(gethostname(out, cap), 0);
  out[cap - 1] = '\0';
  out[strcspn(out, ".")] = '\0';
}

static void test_shortname(void **state) {
  char host[256], want[512], out[300], tiny[8], longname[300];

  short_host(host, sizeof(host));
  snprintf(want, sizeof(want), "foo@%s", host);
  assert_int_equal(cn_node_shortname("foo", out, sizeof(out)), 0);
  assert_string_equal(out, want);
  assert_int_equal(cn_node_shortname("foo@", out, sizeof(out)), 0);
  assert_string_equal(out, want); /* "NAME@" is no host, as for erl */
  assert_int_equal(cn_node_shortname("My_node-2@box", out, sizeof(out)), 0);
  assert_string_equal(out, "My_node-2@box");

  assert_int_equal(cn_node_shortname("foo@box.example.com", out, sizeof(out)),
                   CN_EINVAL); /* erl: "Can't set short node name!" */
  assert_int_equal(cn_node_shortname("", out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname("@box", out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname("a.b", out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname("a b", out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname("caf\xc3\xa9", out, sizeof(out)),
                   CN_EINVAL);
  assert_int_equal(cn_node_shortname("a@b@c", out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname("a@b c", out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname(NULL, out, sizeof(out)), CN_EINVAL);
  assert_int_equal(cn_node_shortname("foo", NULL, 10), CN_EINVAL);

  assert_int_equal(cn_node_shortname("fooo@box", tiny, sizeof(tiny)),
                   CN_ENOSPC);
  assert_int_equal(cn_node_shortname("foo@box", tiny, sizeof(tiny)), 0);
  assert_string_equal(tiny, "foo@box");
  /* A node name is an atom: at most CN_MAX_NODE_NAME bytes. */
  memset(longname, 'n', sizeof(longname));
  memcpy(longname + CN_MAX_NODE_NAME - 4, "@box", 5);
  assert_int_equal(cn_node_shortname(longname, out, sizeof(out)), 0);
  assert_int_equal(strlen(out), CN_MAX_NODE_NAME);
  memset(longname, 'n', sizeof(longname));
  memcpy(longname + CN_MAX_NODE_NAME - 3, "@box", 5);
  assert_int_equal(cn_node_shortname(longname, out, sizeof(out)), CN_ENOSPC);
}

static void test_longname(void **state) {
  char dir[64], conf[256], host[256], want[600], out[300];
  const char *old = getenv("ERL_INET_ETC_DIR");
  char saved[4096];
  int rc;

  snprintf(saved, sizeof(saved), "%s", old ? old : "");
  assert_int_equal(cn_node_longname("foo@box.example.com", out, sizeof(out)),
                   0);
  assert_string_equal(out, "foo@box.example.com");
  assert_int_equal(cn_node_longname("foo@box", out, sizeof(out)), 0);
  assert_string_equal(out, "foo@box"); /* -name takes @HOST as it is */
  assert_int_equal(cn_node_longname("f.o@box.org", out, sizeof(out)),
                   CN_EINVAL);
  assert_int_equal(cn_node_longname("foo@a@b.org", out, sizeof(out)),
                   CN_EINVAL);

  /* resolv.conf's "domain", the last one, as inet_db keeps it. */
  short_host(host, sizeof(host));
  scratch_dir(dir, sizeof(dir));
  path_in(conf, sizeof(conf), dir, "resolv.conf");
  write_text(conf, "# generated\nsearch other.test\ndomain first.test\n"
                   "nameserver 127.0.0.1\n  domain   example.test  \n");
  setenv("ERL_INET_ETC_DIR", dir, 1);
  snprintf(want, sizeof(want), "foo@%s.example.test", host);
  assert_int_equal(cn_node_longname("foo", out, sizeof(out)), 0);
  assert_string_equal(out, want);
  assert_int_equal(cn_node_longname("foo", out, 10), CN_ENOSPC);

  /* Without it, the host name's own domain or the resolver's; a host
   * with neither has no long name. */
  write_text(conf, "search only.test\n");
  rc = cn_node_longname("foo", out, sizeof(out));
  if (rc == 0) {
    snprintf(want, sizeof(want), "foo@%s.", host);
    assert_memory_equal(out, want, strlen(want));
    assert_true(strlen(out) > strlen(want));
  } else {
    assert_int_equal(rc, CN_ENOENT);
  }

  if (old)
    setenv("ERL_INET_ETC_DIR", saved, 1);
  else
    unsetenv("ERL_INET_ETC_DIR");
  rm_rf(dir);
}

/* ---- cn_node_run ------------------------------------------------------ */

/* ping -> pong.  Cast {stop, Reason} stops it with Reason. */
static int pinger_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                       cn_buf *reply) {
  if (cn_match(req, "ping") == 0)
    return cn_build(reply, "pong") == 0 ? CN_REPLY : CN_STOP;
  return cn_build(reply, "{error, unknown_call}") == 0 ? CN_REPLY : CN_STOP;
}

static int pinger_cast(cn_proc *self, void *state, cn_term msg) {
  cn_term why;
  if (cn_match(msg, "{stop, ~t}", &why) == 0 &&
      cn_set_reason_term(self, why) == 0)
    return CN_STOP;
  return CN_NOREPLY;
}

static const cn_server_ops pinger_ops = {
    .name = "pinger", .handle_call = pinger_call, .handle_cast = pinger_cast};

enum { THEN_SIGTERM, THEN_STOP_SERVER, DIST_CALL_THEN_SIGTERM };

typedef struct run_ctx {
  int starts;         /* start calls */
  int what;           /* what the thread does: THEN_* */
  int start_result;   /* what start returns after it started */
  bool watch;         /* start watches the server */
  cn_runtime *rt;     /* the node's */
  cn_pid server;      /* the pinger */
  char node[256];     /* the node's name, as start saw it */
  uint16_t port;      /* its dist port, as start saw it */
  const char *cookie; /* DIST_CALL_THEN_SIGTERM: the cookie to use */
  pthread_t thread;
  bool have_thread;
  int verdict; /* the thread's: 0 when all went as meant */
} run_ctx;

/* Calls the pinger from a second node over real distribution. */
static int dist_call(run_ctx *x) {
  char name[300], host[256];
  cn_runtime_options o = {.schedulers = 1, .node_name = name};
  cn_dist_options d = {.cookie = x->cookie};
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  cn_runtime *peer;
  int err;

  short_host(host, sizeof(host));
  snprintf(name, sizeof(name), "cntest_peer_%d@%s", (int)getpid(), host);
  if ((err = cn_runtime_new(&o, &peer)) != 0)
    return err;
  if ((err = cn_dist_start(peer, &d)) == 0 &&
      (err = cn_build(&req, "ping")) == 0)
    err = cn_call(peer, cn_to_remote("pinger", x->node), cn_buf_term(&req),
                  10000, &reply);
  if (err == 0)
    err = cn_match(cn_buf_term(&reply), "pong");
  cn_buf_free(&req);
  cn_buf_free(&reply);
  cn_runtime_free(peer);
  return err;
}

static void *run_thread(void *arg) {
  run_ctx *x = arg;
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  int err = cn_build(&req, "ping");

  if (err == 0)
    err = cn_call(x->rt, cn_to_name("pinger"), cn_buf_term(&req), 5000, &reply);
  if (err == 0)
    err = cn_match(cn_buf_term(&reply), "pong");
  if (err == 0 && x->what == DIST_CALL_THEN_SIGTERM)
    err = dist_call(x);
  if (err == 0 && x->what == THEN_STOP_SERVER) {
    /* Once the node watches the server (the ready event comes after),
     * so that the DOWN carries the server's reason, not noproc. */
    err = wait_seen("ready as ", 10000);
    cn_buf_reset(&req);
    if (err == 0)
      if ((err = cn_build(&req, "{stop, {shutdown, test}}")) == 0)
        err = cn_cast(x->rt, cn_to_name("pinger"), cn_buf_term(&req));
  } else {
    /* To the process, not this thread: the node's thread takes it. */
    kill(getpid(), SIGTERM);
  }
  x->verdict = err;
  cn_buf_free(&req);
  cn_buf_free(&reply);
  return NULL;
}

static int run_start(cn_runtime *rt, void *arg, cn_pid *watch) {
  static const cn_pid zero;
  run_ctx *x = arg;
  cn_start_options so = {.name = "pinger"};
  int err;

  x->starts++;
  x->rt = rt;
  assert_memory_equal(watch, &zero, sizeof(zero)); /* watches nothing */
  snprintf(x->node, sizeof(x->node), "%s", cn_node_name(cn_runtime_node(rt)));
  x->port = cn_dist_port(rt);
  if ((err = cn_start(rt, &pinger_ops, NULL, &so, &x->server)) != 0)
    return err;
  if (x->watch)
    *watch = x->server;
  if (x->start_result != 0)
    return x->start_result;
  if (pthread_create(&x->thread, NULL, run_thread, x) != 0)
    return CN_ESYSTEM;
  x->have_thread = true;
  return 0;
}

static void join_run_thread(run_ctx *x) {
  if (x->have_thread)
    assert_int_equal(pthread_join(x->thread, NULL), 0);
  x->have_thread = false;
}

/* Runs the node with fd 1 sent to a file; the ready line goes to out. */
static int run_capturing_stdout(const cn_node_options *o, run_ctx *x, char *out,
                                size_t cap) {
  char path[] = "/tmp/cn-test-node-XXXXXX";
  int fd = mkstemp(path), saved = dup(1), rc;
  ssize_t n;

  assert_true(fd >= 0 && saved >= 0);
  unlink(path);
  fflush(stdout);
  assert_int_equal(dup2(fd, 1), 1);
  rc = cn_node_run(o, run_start, x);
  fflush(stdout);
  assert_int_equal(dup2(saved, 1), 1);
  close(saved);
  n = pread(fd, out, cap - 1, 0);
  close(fd);
  assert_true(n >= 0);
  out[n] = '\0';
  return rc;
}

static void assert_signals_as_before(void) {
  struct sigaction sa;
  sigset_t cur;
  assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
  assert_false(sigismember(&cur, SIGTERM));
  assert_false(sigismember(&cur, SIGINT));
  assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
  assert_true(sa.sa_handler == SIG_DFL);
}

static void test_run_bad_options(void **state) {
  cn_node_options o;
  run_ctx x;

  memset(&x, 0, sizeof(x));
  memset(&o, 0, sizeof(o));
  o.no_dist = true;
  record_from_now(CN_LOG_ERROR);
  assert_int_equal(cn_node_run(NULL, run_start, &x), CN_EINVAL);
  assert_int_equal(cn_node_run(&o, run_start, &x), CN_EINVAL); /* no name */
  o.sname = "a";
  assert_int_equal(cn_node_run(&o, NULL, &x), CN_EINVAL);
  o.name = "a@b.org";
  assert_int_equal(cn_node_run(&o, run_start, &x), CN_EINVAL); /* both */
  o.name = NULL;
  o.sname = "bad.name";
  assert_int_equal(cn_node_run(&o, run_start, &x), CN_EINVAL);
  assert_non_null(find_seen("cannot make a node name from sname 'bad.name'"));
  assert_int_equal(seen_count(), 5);
  record_stop();
  assert_int_equal(x.starts, 0);
  assert_signals_as_before();
}

static void test_run_until_sigterm(void **state) {
  char name[64], want_node[300], want[400], out[512];
  cn_node_options o;
  const seen_event *e;
  run_ctx x;

  memset(&x, 0, sizeof(x));
  memset(&o, 0, sizeof(o));
  snprintf(name, sizeof(name), "cntest_run_%d", (int)getpid());
  assert_int_equal(cn_node_shortname(name, want_node, sizeof(want_node)), 0);
  o.sname = name;
  o.no_dist = true;
  o.runtime.schedulers = 2;
  x.what = THEN_SIGTERM;
  record_from_now(CN_LOG_DEBUG);
  assert_int_equal(run_capturing_stdout(&o, &x, out, sizeof(out)), 0);
  join_run_thread(&x);
  assert_int_equal(x.starts, 1);
  assert_int_equal(x.verdict, 0);
  assert_string_equal(x.node, want_node);
  assert_int_equal(x.port, 0);
  snprintf(want, sizeof(want), "cnode: ready as %s on port 0\n", want_node);
  assert_string_equal(out, want);
  snprintf(want, sizeof(want), "ready as %s on port 0", want_node);
  assert_non_null(e = find_seen(want)); /* in the log too */
  assert_int_equal(e->level, CN_LOG_INFO);
  /* The thread raised the signal itself (as init:stop and --stdin-eof
   * do, after logging why): not an operator's, so debug, and said so.
   * An operator's (cnode_cli_SUITE, my_node_test.exs) is info
   * "SIGTERM: stopping". */
  assert_null(find_seen("SIGTERM: stopping"));
  assert_non_null(e = find_seen("SIGTERM (raised by the program): stopping"));
  assert_int_equal(e->level, CN_LOG_DEBUG);
  assert_non_null(e = find_seen("stopped"));
  assert_string_equal(e->domain, "cnode");
  assert_int_equal(e->level, CN_LOG_INFO);
  record_stop();
  assert_signals_as_before();
}

static void test_run_watched_exit(void **state) {
  char name[64], out[512];
  cn_node_options o;
  const seen_event *e;
  run_ctx x;

  memset(&x, 0, sizeof(x));
  memset(&o, 0, sizeof(o));
  snprintf(name, sizeof(name), "cntest_watch_%d", (int)getpid());
  o.sname = name;
  o.no_dist = true;
  o.quiet = true;
  x.what = THEN_STOP_SERVER;
  x.watch = true;
  record_from_now(CN_LOG_INFO);
  assert_int_equal(run_capturing_stdout(&o, &x, out, sizeof(out)), CN_EEXIT);
  join_run_thread(&x);
  assert_int_equal(x.verdict, 0);
  assert_string_equal(out, ""); /* quiet */
  assert_non_null(e = find_seen("exited, so the node stops: "));
  assert_int_equal(e->level, CN_LOG_ERROR);
  assert_non_null(strstr(e->text, "{shutdown,test}"));
  assert_non_null(strstr(e->text, "the watched process #Pid<"));
  record_stop();
  assert_signals_as_before();
}

static void test_run_start_fails(void **state) {
  char name[64];
  cn_node_options o;
  const seen_event *e;
  run_ctx x;

  memset(&x, 0, sizeof(x));
  memset(&o, 0, sizeof(o));
  snprintf(name, sizeof(name), "cntest_fail_%d", (int)getpid());
  o.sname = name;
  o.no_dist = true;
  o.quiet = true;
  x.start_result = CN_EEXIST;
  record_from_now(CN_LOG_ERROR);
  assert_int_equal(cn_node_run(&o, run_start, &x), CN_EEXIST);
  assert_int_equal(x.starts, 1);
  assert_non_null(e = find_seen("the node's start function failed"));
  assert_non_null(strstr(e->text, "CN_EEXIST"));
  record_stop();
  assert_signals_as_before();
}

/* A real node: the cookie from a new cookie file, distribution, and a
 * call over it from a second node to the server start registered. */
static void test_run_distributed(void **state) {
  char dir[64], name[64], path[256];
  cn_node_options o;
  const seen_event *e;
  cn_cookie c;
  run_ctx x;

  save_env();
  scratch_dir(dir, sizeof(dir));
  set_env(dir, NULL);
  path_in(path, sizeof(path), dir, ".erlang.cookie");
  memset(&x, 0, sizeof(x));
  memset(&o, 0, sizeof(o));
  snprintf(name, sizeof(name), "cntest_dist_%d", (int)getpid());
  o.sname = name;
  o.quiet = true;
  o.runtime.schedulers = 2;
  x.what = DIST_CALL_THEN_SIGTERM;
  /* A cookie file made beforehand: the node finds it by itself
   * (o.dist.cookie stays NULL), and the peer uses the same cookie. */
  assert_int_equal(cn_cookie_load(&c), 0);
  assert_true(c.created);
  x.cookie = c.value;
  record_from_now(CN_LOG_INFO);
  assert_int_equal(cn_node_run(&o, run_start, &x), 0);
  join_run_thread(&x);
  assert_int_equal(x.verdict, 0);
  assert_true(x.port > 0);
  assert_null(find_seen("created the cookie file")); /* it was there */
  assert_non_null(e = find_seen("stopped"));
  record_stop();

  /* Without a cookie file, the node makes one, as erl does. */
  unlink(path);
  memset(&x, 0, sizeof(x));
  x.what = THEN_SIGTERM;
  record_from_now(CN_LOG_INFO);
  assert_int_equal(cn_node_run(&o, run_start, &x), 0);
  join_run_thread(&x);
  assert_int_equal(x.verdict, 0);
  assert_non_null(e = find_seen("created the cookie file "));
  assert_non_null(strstr(e->text, path));
  record_stop();
  assert_int_equal(cn_cookie_read(path, &c), 0);
  assert_true(all_letters(c.value, CN_COOKIE_NEW_LEN));

  restore_env();
  rm_rf(dir);
  assert_signals_as_before();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_levels),
      cmocka_unit_test(test_log_handler),
      cmocka_unit_test(test_log_format),
      cmocka_unit_test(test_log_default_stderr),
      cmocka_unit_test(test_log_runtime_events),
      cmocka_unit_test(test_log_dist_events),
      cmocka_unit_test(test_cookie_created),
      cmocka_unit_test(test_cookie_contents),
      cmocka_unit_test(test_cookie_refused_files),
      cmocka_unit_test(test_cookie_search_order),
      cmocka_unit_test(test_shortname),
      cmocka_unit_test(test_longname),
      cmocka_unit_test(test_run_bad_options),
      cmocka_unit_test(test_run_until_sigterm),
      cmocka_unit_test(test_run_watched_exit),
      cmocka_unit_test(test_run_start_fails),
      cmocka_unit_test(test_run_distributed),
  };
  return run_group("node", tests, NULL, NULL);
}
