/* Tests for the I/O-free distribution protocol (dist/proto.h): the flag
 * constants, the version 6 handshake, the epmd messages and the control
 * message parser.  Everything runs in memory; erl is run (through popen)
 * only to read kernel's dist.hrl and to compute reference digests, and its
 * absence is a failure, not a skip.
 *
 * Input handed to the code under test is copied into heap blocks of
 * exactly its size first, so that AddressSanitizer catches any read past
 * the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dist/proto.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A heap copy of exactly n bytes (ASan then sees any overread). */
static char *exact(const void *p, size_t n) {
  char *c = malloc(n ? n : 1);
  assert_non_null(c);
  if (n)
    memcpy(c, p, n);
  return c;
}

/* Runs erl with an -eval expression (which must not contain single
 * quotes) and returns its standard output, malloc'ed.  Fails the test
 * when erl cannot be run. */
static char *run_erl(const char *eval) {
  char cmd[4096];
  char *out = NULL;
  size_t len = 0, cap = 0;
  FILE *f;
  int st;

  snprintf(cmd, sizeof cmd, "erl -noshell -eval '%s' 2>/dev/null", eval);
  f = popen(cmd, "r");
  assert_non_null(f);
  for (;;) {
    if (cap - len < 4096) {
      cap = cap ? cap * 2 : 8192;
      out = realloc(out, cap);
      assert_non_null(out);
    }
    size_t n = fread(out + len, 1, cap - len - 1, f);
    if (n == 0)
      break;
    len += n;
  }
  out[len] = '\0';
  st = pclose(f);
  if (st != 0)
    fail_msg("erl failed (status %d); the tests need erl on PATH", st);
  return out;
}

/* ---- Flags against kernel's dist.hrl --------------------------------- */

typedef struct hrl_def {
  char name[64];
  uint64_t value;
  int ok; /* 0: the expression could not be evaluated */
} hrl_def;

typedef struct hrl {
  hrl_def defs[128];
  size_t n;
} hrl;

static const hrl_def *hrl_find(const hrl *h, const char *name) {
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->defs[i].name, name) == 0)
      return &h->defs[i];
  return NULL;
}

/* A tiny evaluator for the expressions dist.hrl uses: integers (16#..
 * too), ?MACRO, parentheses, bor, bsl and band (one precedence level,
 * left to right, as in Erlang). */
typedef struct ev {
  const char *p;
  const hrl *h;
  int err;
} ev;

static uint64_t ev_expr(ev *e);

static void ev_ws(ev *e) {
  while (*e->p == ' ' || *e->p == '\t' || *e->p == '\n' || *e->p == '\r')
    e->p++;
}

static uint64_t ev_primary(ev *e) {
  uint64_t v = 0;

  ev_ws(e);
  if (*e->p == '(') {
    e->p++;
    v = ev_expr(e);
    ev_ws(e);
    if (*e->p != ')')
      e->err = 1;
    else
      e->p++;
    return v;
  }
  if (*e->p == '?') {
    char name[64];
    size_t n = 0;
    e->p++;
    while ((*e->p == '_' || (*e->p >= 'A' && *e->p <= 'Z') ||
            (*e->p >= 'a' && *e->p <= 'z') || (*e->p >= '0' && *e->p <= '9')) &&
           n < sizeof name - 1)
      name[n++] = *e->p++;
    name[n] = '\0';
    const hrl_def *d = hrl_find(e->h, name);
    if (d == NULL || !d->ok)
      e->err = 1;
    return d ? d->value : 0;
  }
  if (*e->p >= '0' && *e->p <= '9') {
    while (*e->p >= '0' && *e->p <= '9')
      v = v * 10 + (uint64_t)(*e->p++ - '0');
    if (*e->p == '#') {
      uint64_t base = v;
      v = 0;
      e->p++;
      for (;;) {
        int d;
        char c = *e->p;
        if (c >= '0' && c <= '9')
          d = c - '0';
        else if (c >= 'a' && c <= 'f')
          d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
          d = c - 'A' + 10;
        else
          break;
        if ((uint64_t)d >= base)
          break;
        v = v * base + (uint64_t)d;
        e->p++;
      }
    }
    return v;
  }
  e->err = 1;
  return 0;
}

static uint64_t ev_expr(ev *e) {
  uint64_t v = ev_primary(e);

  for (;;) {
    ev_ws(e);
    if (strncmp(e->p, "bor", 3) == 0) {
      e->p += 3;
      v |= ev_primary(e);
    } else if (strncmp(e->p, "band", 4) == 0) {
      e->p += 4;
      v &= ev_primary(e);
    } else if (strncmp(e->p, "bsl", 3) == 0) {
      e->p += 3;
      uint64_t s = ev_primary(e);
      v = s < 64 ? v << s : 0;
    } else {
      return v;
    }
  }
}

/* Reads every -define(NAME, Expr). of the file (comments stripped). */
static void hrl_load(hrl *h, const char *path) {
  FILE *f = fopen(path, "r");
  char *text, *p;
  long size;

  if (f == NULL)
    fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  text = calloc(1, (size_t)size + 1);
  assert_non_null(text);
  assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  /* Erlang comments run from % to the end of the line. */
  for (p = text; *p; p++) {
    if (*p == '%')
      while (*p && *p != '\n')
        *p++ = ' ';
    if (!*p)
      break;
  }
  memset(h, 0, sizeof *h);
  for (p = text; (p = strstr(p, "-define(")) != NULL;) {
    hrl_def *d;
    size_t n = 0;
    ev e;

    p += 8;
    assert_true(h->n < COUNT(h->defs));
    d = &h->defs[h->n];
    while (*p == ' ')
      p++;
    while (*p && *p != ',' && *p != ' ' && *p != '(' && n < 63)
      d->name[n++] = *p++;
    d->name[n] = '\0';
    while (*p == ' ')
      p++;
    if (*p != ',')
      continue; /* a macro with arguments: not one of ours */
    p++;
    e.p = p;
    e.h = h;
    e.err = 0;
    d->value = ev_expr(&e);
    ev_ws(&e);
    d->ok = !e.err && *e.p == ')';
    h->n++;
  }
  free(text);
}

static void load_dist_hrl(hrl *h) {
  char *dir = run_erl("io:format(\"~s\",[code:lib_dir(kernel)]),halt().");
  char path[4096];

  assert_true(strlen(dir) > 0);
  snprintf(path, sizeof path, "%s/include/dist.hrl", dir);
  free(dir);
  hrl_load(h, path);
}

#define FLAG(x)                                                                \
  { "DFLAG_" #x, CN__DFLAG_##x }

static const struct {
  const char *name;
  uint64_t value;
} our_flags[] = {
    FLAG(PUBLISHED),
    FLAG(ATOM_CACHE),
    FLAG(EXTENDED_REFERENCES),
    FLAG(DIST_MONITOR),
    FLAG(FUN_TAGS),
    FLAG(DIST_MONITOR_NAME),
    FLAG(HIDDEN_ATOM_CACHE),
    FLAG(NEW_FUN_TAGS),
    FLAG(EXTENDED_PIDS_PORTS),
    FLAG(EXPORT_PTR_TAG),
    FLAG(BIT_BINARIES),
    FLAG(NEW_FLOATS),
    FLAG(UNICODE_IO),
    FLAG(DIST_HDR_ATOM_CACHE),
    FLAG(SMALL_ATOM_TAGS),
    FLAG(UTF8_ATOMS),
    FLAG(MAP_TAG),
    FLAG(BIG_CREATION),
    FLAG(SEND_SENDER),
    FLAG(BIG_SEQTRACE_LABELS),
    FLAG(EXIT_PAYLOAD),
    FLAG(FRAGMENTS),
    FLAG(HANDSHAKE_23),
    FLAG(UNLINK_ID),
    FLAG(MANDATORY_25_DIGEST),
    FLAG(SPAWN),
    FLAG(NAME_ME),
    FLAG(V4_NC),
    FLAG(ALIAS),
};

static void test_flags_match_dist_hrl(void **state) {
  hrl h;
  const hrl_def *d;
  size_t i, j, seen = 0;

  (void)state;
  load_dist_hrl(&h);
  for (i = 0; i < COUNT(our_flags); i++) {
    d = hrl_find(&h, our_flags[i].name);
    if (d == NULL || !d->ok)
      fail_msg("%s is not in dist.hrl", our_flags[i].name);
    if (d->value != our_flags[i].value)
      fail_msg("%s: ours 0x%llx, dist.hrl 0x%llx", our_flags[i].name,
               (unsigned long long)our_flags[i].value,
               (unsigned long long)d->value);
  }
  /* Every flag dist.hrl defines is one we know (DFLAG_RESERVED is a mask
   * of unused bits), so that a new OTP flag is noticed here. */
  for (i = 0; i < h.n; i++) {
    if (strncmp(h.defs[i].name, "DFLAG_", 6) != 0 ||
        strcmp(h.defs[i].name, "DFLAG_RESERVED") == 0)
      continue;
    for (j = 0; j < COUNT(our_flags); j++)
      if (strcmp(h.defs[i].name, our_flags[j].name) == 0)
        break;
    if (j == COUNT(our_flags))
      fail_msg("dist.hrl has %s, which proto.h lacks", h.defs[i].name);
    seen++;
  }
  assert_int_equal(seen, COUNT(our_flags));

  d = hrl_find(&h, "MANDATORY_DFLAGS_25");
  assert_non_null(d);
  assert_true(d->ok);
  assert_true(d->value == CN__DFLAGS_MANDATORY_25);

  /* epmd registration uses versions 6..6, as erl_epmd does. */
  d = hrl_find(&h, "ERL_DIST_VER_LOW");
  assert_non_null(d);
  assert_true(d->ok && d->value == 6);
  d = hrl_find(&h, "ERL_DIST_VER_HIGH");
  assert_non_null(d);
  assert_true(d->ok && d->value == 6);

  /* What we offer: everything mandatory, nothing that needs machinery we
   * do not have. */
  assert_true((CN__DFLAGS_OURS & CN__DFLAGS_MANDATORY_25) ==
              CN__DFLAGS_MANDATORY_25);
  assert_true(
      (CN__DFLAGS_OURS & (CN__DFLAG_PUBLISHED | CN__DFLAG_ATOM_CACHE |
                          CN__DFLAG_DIST_HDR_ATOM_CACHE | CN__DFLAG_FRAGMENTS |
                          CN__DFLAG_SPAWN | CN__DFLAG_NAME_ME)) == 0);
}

/* ---- epmd ------------------------------------------------------------- */

static void test_epmd_alive2_req(void **state) {
  static const unsigned char hidden[] = {
      0, 16, 120, 0x11, 0x12, 72, 0, 0, 6, 0, 6, 0, 3, 'f', 'o', 'o', 0, 0};
  cn_buf b = CN_BUF_INIT;
  char name[300];

  (void)state;
  assert_int_equal(cn__epmd_alive2_req(&b, "foo", 4370, 1), 0);
  assert_int_equal(b.len, sizeof hidden);
  assert_memory_equal(b.data, hidden, sizeof hidden);
  b.len = 0;
  assert_int_equal(cn__epmd_alive2_req(&b, "foo", 4370, 0), 0);
  assert_int_equal(b.len, sizeof hidden);
  assert_int_equal(b.data[5], 77);
  assert_memory_equal(b.data + 6, hidden + 6, sizeof hidden - 6);

  memset(name, 'x', sizeof name);
  name[255] = '\0';
  b.len = 0;
  assert_int_equal(cn__epmd_alive2_req(&b, name, 1, 1), 0);
  assert_int_equal(b.len, 13 + 255 + 2);
  name[255] = 'x';
  name[256] = '\0';
  b.len = 0;
  assert_int_equal(cn__epmd_alive2_req(&b, name, 1, 1), CN_EINVAL);
  assert_int_equal(cn__epmd_alive2_req(&b, "", 1, 1), CN_EINVAL);
  assert_int_equal(cn__epmd_alive2_req(&b, NULL, 1, 1), CN_EINVAL);
  assert_int_equal(b.len, 0);
  cn_buf_free(&b);
}

static int alive2_exact(const unsigned char *p, size_t n, uint32_t *c) {
  char *x = exact(p, n);
  int rc = cn__epmd_alive2_resp(x, n, c);
  free(x);
  return rc;
}

static void test_epmd_alive2_resp(void **state) {
  static const unsigned char x_ok[] = {118, 0, 0x12, 0x34, 0x56, 0x78};
  static const unsigned char y_ok[] = {121, 0, 0x01, 0x02};
  static const unsigned char x_no[] = {118, 1, 0, 0, 0, 0};
  static const unsigned char y_no[] = {121, 3, 0, 0};
  static const unsigned char x_long[] = {118, 0, 0, 0, 0, 1, 0};
  static const unsigned char bad[] = {119, 0, 0, 0, 0, 1};
  uint32_t c = 0;
  size_t i;

  (void)state;
  for (i = 0; i < sizeof x_ok; i++)
    assert_int_equal(alive2_exact(x_ok, i, &c), 1);
  assert_int_equal(alive2_exact(x_ok, sizeof x_ok, &c), 0);
  assert_int_equal(c, 0x12345678);
  for (i = 0; i < sizeof y_ok; i++)
    assert_int_equal(alive2_exact(y_ok, i, &c), 1);
  assert_int_equal(alive2_exact(y_ok, sizeof y_ok, &c), 0);
  assert_int_equal(c, 0x0102);
  /* A refusal is known from its second byte. */
  for (i = 2; i <= sizeof x_no; i++)
    assert_int_equal(alive2_exact(x_no, i, &c), CN_EEXIST);
  for (i = 2; i <= sizeof y_no; i++)
    assert_int_equal(alive2_exact(y_no, i, &c), CN_EEXIST);
  assert_int_equal(alive2_exact(x_long, sizeof x_long, &c), CN_EPROTO);
  for (i = 1; i <= sizeof bad; i++)
    assert_int_equal(alive2_exact(bad, i, &c), CN_EPROTO);
}

static void test_epmd_port2(void **state) {
  static const unsigned char req[] = {0, 4, 122, 'f', 'o', 'o'};
  static const unsigned char ok[] = {119, 0, 0x11, 0x12, 77,  0, 0, 6, 0, 5,
                                     0,   3, 'f',  'o',  'o', 0, 2, 1, 2};
  static const unsigned char no[] = {119, 1};
  static const unsigned char bad[] = {118, 0, 0, 0};
  cn_buf b = CN_BUF_INIT;
  uint16_t port = 0, ver = 0;
  char name[300];

  (void)state;
  assert_int_equal(cn__epmd_port2_req(&b, "foo"), 0);
  assert_int_equal(b.len, sizeof req);
  assert_memory_equal(b.data, req, sizeof req);
  memset(name, 'y', sizeof name);
  name[256] = '\0';
  assert_int_equal(cn__epmd_port2_req(&b, name), CN_EINVAL);
  assert_int_equal(cn__epmd_port2_req(&b, ""), CN_EINVAL);
  assert_int_equal(b.len, sizeof req);
  cn_buf_free(&b);

  for (size_t i = 0; i <= sizeof ok; i++) {
    char *x = exact(ok, i);
    int rc = cn__epmd_port2_resp(x, i, &port, &ver);
    free(x);
    assert_int_equal(rc, i < 10 ? 1 : 0);
    if (rc == 0) {
      assert_int_equal(port, 4370);
      assert_int_equal(ver, 6);
    }
  }
  for (size_t i = 0; i <= sizeof no; i++) {
    char *x = exact(no, i);
    assert_int_equal(cn__epmd_port2_resp(x, i, &port, &ver),
                     i < 2 ? 1 : CN_ENOENT);
    free(x);
  }
  for (size_t i = 1; i <= sizeof bad; i++) {
    char *x = exact(bad, i);
    assert_int_equal(cn__epmd_port2_resp(x, i, &port, &ver), CN_EPROTO);
    free(x);
  }
}

/* Writes an executable script called epmd into dir. */
static void fake_epmd(const char *dir, const char *body) {
  char path[512];
  FILE *f;

  snprintf(path, sizeof path, "%s/epmd", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "#!/bin/sh\n%s\n", body);
  fclose(f);
  assert_int_equal(chmod(path, 0755), 0);
}

/* cn__epmd_spawn_daemon against fake epmds on a PATH of our own, so that
 * the test starts no daemon. */
static void test_epmd_spawn_daemon(void **state) {
  char dir[] = "/tmp/cn-epmd-XXXXXX";
  char args[600], body[700], got[64] = "";
  const char *old = getenv("PATH");
  char *saved = old ? strdup(old) : NULL;
  FILE *f;

  (void)state;
  assert_non_null(mkdtemp(dir));
  assert_int_equal(setenv("PATH", dir, 1), 0);

  /* No epmd on PATH. */
  assert_int_equal(cn__epmd_spawn_daemon(), CN_ESYSTEM);

  /* One that succeeds, and sees the argument -daemon. */
  snprintf(args, sizeof args, "%s/args", dir);
  snprintf(body, sizeof body, "echo \"$@\" > %s; exit 0", args);
  fake_epmd(dir, body);
  assert_int_equal(cn__epmd_spawn_daemon(), 0);
  f = fopen(args, "r");
  assert_non_null(f);
  assert_non_null(fgets(got, sizeof got, f));
  fclose(f);
  assert_string_equal(got, "-daemon\n");

  /* One that fails, and one killed by a signal. */
  fake_epmd(dir, "exit 3");
  assert_int_equal(cn__epmd_spawn_daemon(), CN_ESYSTEM);
  fake_epmd(dir, "kill -9 $$");
  assert_int_equal(cn__epmd_spawn_daemon(), CN_ESYSTEM);

  if (saved)
    setenv("PATH", saved, 1);
  else
    unsetenv("PATH");
  free(saved);
  snprintf(body, sizeof body, "%s/epmd", dir);
  unlink(body);
  unlink(args);
  assert_int_equal(rmdir(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flags_match_dist_hrl),
      cmocka_unit_test(test_epmd_alive2_req),
      cmocka_unit_test(test_epmd_alive2_resp),
      cmocka_unit_test(test_epmd_port2),
      cmocka_unit_test(test_epmd_spawn_daemon),
  };
  return cmocka_run_group_tests_name("dist-proto", tests, NULL, NULL);
}
