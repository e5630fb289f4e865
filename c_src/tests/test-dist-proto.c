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

#include "dist/coalesce.h"
#include "dist/proto.h"
#include "helpers.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A small deterministic generator, so that failures reproduce. */
static uint32_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (uint32_t)(*s >> 11);
}

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

  /* What we offer: everything mandatory, fragments, nothing that needs
   * machinery we do not have. */
  assert_true((CN__DFLAGS_OURS & CN__DFLAGS_MANDATORY_25) ==
              CN__DFLAGS_MANDATORY_25);
  assert_true((CN__DFLAGS_OURS & CN__DFLAG_FRAGMENTS) != 0);
  /* SPAWN: erpc and rpc need it (spawn.c answers SPAWN_REQUEST). */
  assert_true((CN__DFLAGS_OURS & CN__DFLAG_SPAWN) != 0);
  assert_true((CN__DFLAGS_OURS &
               (CN__DFLAG_PUBLISHED | CN__DFLAG_ATOM_CACHE |
                CN__DFLAG_DIST_HDR_ATOM_CACHE | CN__DFLAG_NAME_ME)) == 0);
}

/* OTP 26, 27 and 28 cannot run here; their flags are checked against
 * the values in their sources instead (lib/kernel/include/dist.hrl and
 * erts/emulator/beam/dist.h of OTP-26.0, OTP-27.0 and OTP-28.0): each
 * requires DFLAGS_MANDATORY, which is MANDATORY_DFLAGS_25 (unchanged
 * since OTP 25, checked above against this machine's dist.hrl) plus
 * MANDATORY_DFLAGS_26 = DFLAG_V4_NC bor DFLAG_UNLINK_ID; OTP 28 adds
 * DFLAG_ALTACT_SIG (16#20 bsl 32) and control message 37. */
static void test_flags_otp26_28(void **state) {
  static const struct {
    const char *otp;
    uint64_t mandatory; /* DFLAGS_MANDATORY of that release */
  } releases[] = {
      {"26", CN__DFLAGS_MANDATORY_25 | (0x04ULL << 32) | 0x02000000ULL},
      {"27", CN__DFLAGS_MANDATORY_25 | (0x04ULL << 32) | 0x02000000ULL},
      {"28", CN__DFLAGS_MANDATORY_25 | (0x04ULL << 32) | 0x02000000ULL},
  };
  (void)state;

  assert_true(CN__DFLAG_V4_NC == (0x04ULL << 32));
  assert_true(CN__DFLAG_UNLINK_ID == 0x02000000ULL);
  assert_true(CN__DFLAG_ALTACT_SIG == (0x20ULL << 32));
  assert_true(CN__DFLAGS_MANDATORY_26 ==
              (CN__DFLAG_V4_NC | CN__DFLAG_UNLINK_ID));
  assert_int_equal(CN__DOP_ALTACT_SIG_SEND, 37);
  assert_int_equal(CN__ALTACT_PRIO, 1 << 0);
  assert_int_equal(CN__ALTACT_TOKEN, 1 << 1);
  assert_int_equal(CN__ALTACT_ALIAS, 1 << 2);
  assert_int_equal(CN__ALTACT_NAME, 1 << 3);
  assert_int_equal(CN__ALTACT_EXIT, 1 << 4);
  for (size_t i = 0; i < COUNT(releases); i++) {
    if ((CN__DFLAGS_OURS & releases[i].mandatory) != releases[i].mandatory)
      fail_msg("OTP %s would refuse us: we lack 0x%llx", releases[i].otp,
               (unsigned long long)(releases[i].mandatory & ~CN__DFLAGS_OURS));
  }
  /* What OTP 28 sends in DFLAG_DIST_DEFAULT and we take part in. */
  assert_true((CN__DFLAGS_OURS & CN__DFLAG_ALTACT_SIG) != 0);
  assert_true((CN__DFLAGS_OURS & CN__DFLAG_MANDATORY_25_DIGEST) != 0);
}

/* ---- The digest against erlang:md5 ----------------------------------- */

static void test_digest_matches_erl(void **state) {
  static const struct {
    const char *cookie;
    uint32_t challenge;
  } cases[] = {
      {"secret", 0},
      {"secret", 1},
      {"secret", 4294967295u},
      {"ABCDEFGHIJKLMNOP", 123456789},
      {"", 42},
      {NULL, 7}, /* NULL: 255 'x' */
  };
  char long_cookie[256];
  char *got, *line, *save = NULL;
  size_t i;

  (void)state;
  memset(long_cookie, 'x', 255);
  long_cookie[255] = '\0';
  got = run_erl("lists:foreach(fun({C,N}) -> io:format(\"~s~n\", "
                "[[io_lib:format(\"~2.16.0b\",[B]) || "
                "<<B>> <= erlang:md5([C|integer_to_list(N)])]]) end, "
                "[{\"secret\",0},{\"secret\",1},{\"secret\",4294967295},"
                "{\"ABCDEFGHIJKLMNOP\",123456789},{\"\",42},"
                "{lists:duplicate(255,$x),7}]), halt().");
  line = strtok_r(got, "\n", &save);
  for (i = 0; i < COUNT(cases); i++) {
    const char *c = cases[i].cookie ? cases[i].cookie : long_cookie;
    unsigned char d[16];
    char hex[33];

    assert_non_null(line);
    cn__hs_digest(c, strlen(c), cases[i].challenge, d);
    for (int k = 0; k < 16; k++)
      snprintf(hex + 2 * k, 3, "%02x", d[k]);
    assert_string_equal(hex, line);
    line = strtok_r(NULL, "\n", &save);
  }
  free(got);
}

/* ---- The handshake ----------------------------------------------------- */

#define FLAGS_FULL (CN__DFLAGS_OURS | CN__DFLAG_PUBLISHED)
/* A peer that lacks a mandatory flag sends no MANDATORY_25_DIGEST either
 * (that bit stands for them all). */
#define FLAGS_NO_DIGEST (FLAGS_FULL & ~CN__DFLAG_MANDATORY_25_DIGEST)

/* One side of an in-memory connection. */
typedef struct peer {
  cn__hs h;
  cn_buf in;  /* received and not yet consumed */
  cn_buf out; /* produced and not yet delivered */
  cn_buf log; /* everything ever received, for the fuzz tests */
  int rc;     /* last result of cn__hs_feed */
  int feeds;
} peer;

static void peer_free(peer *p) {
  cn_buf_free(&p->in);
  cn_buf_free(&p->out);
  cn_buf_free(&p->log);
}

/* Feeds p everything it has received, from an exact-size copy. */
static void peer_feed(peer *p) {
  size_t used = (size_t)-1;
  char *c = exact(p->in.data, p->in.len);

  p->rc = cn__hs_feed(&p->h, c, p->in.len, &used, &p->out);
  p->feeds++;
  assert_true(used <= p->in.len);
  if (p->rc < 0)
    assert_non_null(p->h.error);
  memmove(p->in.data, p->in.data + used, p->in.len - used);
  p->in.len -= used;
  free(c);
}

enum { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

/* Moves what src produced to dst, in pieces, feeding dst after each. */
static void deliver(peer *src, peer *dst, int split, uint64_t *seed) {
  size_t pos = 0;

  while (pos < src->out.len) {
    size_t left = src->out.len - pos, n;
    if (split == SPLIT_WHOLE)
      n = left;
    else if (split == SPLIT_BYTES)
      n = 1;
    else
      n = 1 + rnd(seed) % left;
    assert_int_equal(cn_buf_append(&dst->in, src->out.data + pos, n), 0);
    assert_int_equal(cn_buf_append(&dst->log, src->out.data + pos, n), 0);
    pos += n;
    if (dst->rc == 0)
      peer_feed(dst);
  }
  src->out.len = 0;
}

/* Sets up a as the initiator dialling b_name and b as the acceptor. */
static void pair_init(peer *a, peer *b, const char *a_name, const char *b_name,
                      const char *a_cookie, const char *b_cookie,
                      uint64_t a_flags, uint64_t b_flags,
                      cn__hs_arbitrate_fn arb, void *arg) {
  memset(a, 0, sizeof *a);
  memset(b, 0, sizeof *b);
  assert_int_equal(cn__hs_init(&a->h, 1, a_name, 0x11223344, a_flags, a_cookie,
                               b_name, NULL, NULL),
                   0);
  assert_int_equal(cn__hs_init(&b->h, 0, b_name, 0x55667788, b_flags, b_cookie,
                               NULL, arb, arg),
                   0);
}

/* Runs the handshake until nothing more is sent. */
static void pair_run(peer *a, peer *b, int split, uint64_t seed) {
  int rounds;

  assert_int_equal(cn__hs_begin(&a->h, &a->out), 0);
  for (rounds = 0; rounds < 10; rounds++) {
    if (a->out.len == 0 && b->out.len == 0)
      return;
    deliver(a, b, split, &seed);
    deliver(b, a, split, &seed);
  }
  fail_msg("the handshake did not settle");
}

static void check_done(peer *a, peer *b, const char *a_name, const char *b_name,
                       uint64_t a_flags, uint64_t b_flags) {
  assert_int_equal(a->rc, 1);
  assert_int_equal(b->rc, 1);
  assert_null(a->h.error);
  assert_null(b->h.error);
  assert_string_equal(a->h.peer_name, b_name);
  assert_int_equal(a->h.peer_name_len, strlen(b_name));
  assert_string_equal(b->h.peer_name, a_name);
  assert_int_equal(b->h.peer_name_len, strlen(a_name));
  assert_int_equal(a->h.peer_creation, 0x55667788);
  assert_int_equal(b->h.peer_creation, 0x11223344);
  assert_true(a->h.peer_flags == b_flags);
  assert_true(b->h.peer_flags == a_flags);
  assert_int_equal(a->h.peer_challenge, b->h.my_challenge);
  assert_int_equal(b->h.peer_challenge, a->h.my_challenge);
  assert_int_equal(a->in.len, 0);
  assert_int_equal(b->in.len, 0);
}

static void test_handshake_ok(void **state) {
  static const char *names[2] = {"alpha@host.example", "b@h"};
  (void)state;

  for (int dir = 0; dir < 2; dir++) {
    const char *an = names[dir], *bn = names[1 - dir];
    for (int split = SPLIT_WHOLE; split <= SPLIT_RANDOM; split++) {
      int runs = split == SPLIT_RANDOM ? 200 : 1;
      for (int r = 0; r < runs; r++) {
        peer a, b;
        pair_init(&a, &b, an, bn, "cookie", "cookie", FLAGS_FULL,
                  CN__DFLAGS_OURS, NULL, NULL);
        pair_run(&a, &b, split, 0x9e3779b97f4a7c15ULL + (uint64_t)r);
        check_done(&a, &b, an, bn, FLAGS_FULL, CN__DFLAGS_OURS);
        assert_int_equal(b.h.replaces, 0);
        if (split == SPLIT_BYTES)
          assert_true(a.feeds > 20 && b.feeds > 20);
        peer_free(&a);
        peer_free(&b);
      }
    }
  }
}

/* Bytes after the last handshake message are the first frames: they are
 * left unconsumed, and a finished machine consumes nothing more. */
static void test_handshake_leaves_frames(void **state) {
  static const char tick[4] = {0, 0, 0, 0};
  peer a, b;
  uint64_t seed = 1;
  size_t used = 99;

  (void)state;
  pair_init(&a, &b, "a@h", "b@h", "c", "c", FLAGS_FULL, FLAGS_FULL, NULL, NULL);
  assert_int_equal(cn__hs_begin(&a.h, &a.out), 0);
  deliver(&a, &b, SPLIT_WHOLE, &seed); /* send_name */
  deliver(&b, &a, SPLIT_WHOLE, &seed); /* status, challenge */
  deliver(&a, &b, SPLIT_WHOLE, &seed); /* challenge_reply */
  assert_int_equal(b.rc, 1);
  assert_int_equal(cn_buf_append(&b.out, tick, 4), 0);
  deliver(&b, &a, SPLIT_WHOLE, &seed); /* challenge_ack and a tick */
  assert_int_equal(a.rc, 1);
  assert_int_equal(a.in.len, 4);
  assert_int_equal(cn__hs_feed(&a.h, tick, 4, &used, &a.out), 1);
  assert_int_equal(used, 0);
  assert_int_equal(a.out.len, 0);
  peer_free(&a);
  peer_free(&b);
}

static void test_handshake_wrong_cookie(void **state) {
  for (int split = SPLIT_WHOLE; split <= SPLIT_BYTES; split++) {
    peer a, b;
    (void)state;
    pair_init(&a, &b, "a@h", "b@h", "right", "wrong", FLAGS_FULL, FLAGS_FULL,
              NULL, NULL);
    pair_run(&a, &b, split, 7);
    assert_int_equal(b.rc, CN_EAUTH);
    assert_non_null(b.h.error);
    assert_int_equal(a.rc, 0); /* still waiting for an ack */
    /* A failed machine keeps failing the same way. */
    size_t used;
    assert_int_equal(cn__hs_feed(&b.h, "\0\1x", 3, &used, &b.out), CN_EAUTH);
    assert_int_equal(used, 0);
    peer_free(&a);
    peer_free(&b);
  }
}

/* An ack with a wrong digest (an acceptor with another cookie, or a
 * tampered one) fails the initiator with CN_EAUTH. */
static void test_handshake_bad_ack(void **state) {
  peer a, b;
  uint64_t seed = 1;

  (void)state;
  pair_init(&a, &b, "a@h", "b@h", "c", "c", FLAGS_FULL, FLAGS_FULL, NULL, NULL);
  assert_int_equal(cn__hs_begin(&a.h, &a.out), 0);
  deliver(&a, &b, SPLIT_WHOLE, &seed);
  deliver(&b, &a, SPLIT_WHOLE, &seed);
  deliver(&a, &b, SPLIT_WHOLE, &seed);
  assert_int_equal(b.rc, 1);
  assert_int_equal(b.out.len, 2 + 17);
  assert_int_equal(b.out.data[2], 'a');
  b.out.data[10] ^= 0x20;
  deliver(&b, &a, SPLIT_WHOLE, &seed);
  assert_int_equal(a.rc, CN_EAUTH);
  peer_free(&a);
  peer_free(&b);
}

typedef struct arb_state {
  cn__hs_status answer;
  int calls;
  char name[256];
  uint32_t creation;
} arb_state;

static cn__hs_status arbitrate(void *arg, const char *name, size_t len,
                               uint32_t creation) {
  arb_state *s = arg;
  s->calls++;
  assert_true(len < sizeof s->name);
  memcpy(s->name, name, len);
  s->name[len] = '\0';
  s->creation = creation;
  return s->answer;
}

/* Checks that out holds exactly one status message with text. */
static void assert_status(const cn_buf *out, const char *text) {
  size_t n = strlen(text);
  assert_int_equal(out->len, 3 + n);
  assert_int_equal((unsigned char)out->data[0], (1 + n) >> 8);
  assert_int_equal((unsigned char)out->data[1], (1 + n) & 0xff);
  assert_int_equal(out->data[2], 's');
  assert_memory_equal(out->data + 3, text, n);
}

static void test_handshake_arbitration(void **state) {
  static const struct {
    cn__hs_status answer;
    const char *text;
    int a_rc, b_rc, replaces;
  } cases[] = {
      {CN__HS_ST_OK, "ok", 1, 1, 0},
      {CN__HS_ST_OK_SIMUL, "ok_simultaneous", 1, 1, 0},
      {CN__HS_ST_NOK, "nok", CN_EEXIST, CN_EEXIST, 0},
      {CN__HS_ST_NOT_ALLOWED, "not_allowed", CN_EEXIST, CN_EEXIST, 0},
      {CN__HS_ST_ALIVE, "alive", 1, 1, 1},
  };
  (void)state;

  for (size_t i = 0; i < COUNT(cases); i++) {
    for (int split = SPLIT_WHOLE; split <= SPLIT_BYTES; split++) {
      arb_state s = {cases[i].answer, 0, "", 0};
      peer a, b;
      uint64_t seed = 3;

      pair_init(&a, &b, "a@h", "b@h", "c", "c", FLAGS_FULL, FLAGS_FULL,
                arbitrate, &s);
      assert_int_equal(cn__hs_begin(&a.h, &a.out), 0);
      deliver(&a, &b, split, &seed);
      assert_int_equal(s.calls, 1);
      assert_string_equal(s.name, "a@h");
      assert_int_equal(s.creation, 0x11223344);
      /* The status goes first (then, when the handshake goes on, the
       * challenge follows except after "alive"). */
      assert_true(b.out.len >= 3 + strlen(cases[i].text));
      assert_int_equal(b.out.data[2], 's');
      assert_memory_equal(b.out.data + 3, cases[i].text, strlen(cases[i].text));
      if (cases[i].answer == CN__HS_ST_ALIVE ||
          cases[i].b_rc != 1) /* nothing but the status */
        assert_status(&b.out, cases[i].text);
      for (int r = 0; r < 10 && (a.out.len || b.out.len); r++) {
        deliver(&b, &a, split, &seed);
        deliver(&a, &b, split, &seed);
      }
      assert_int_equal(a.rc, cases[i].a_rc);
      assert_int_equal(b.rc, cases[i].b_rc);
      assert_int_equal(b.h.replaces, cases[i].replaces);
      if (a.rc == 1)
        check_done(&a, &b, "a@h", "b@h", FLAGS_FULL, FLAGS_FULL);
      peer_free(&a);
      peer_free(&b);
    }
  }
}

/* ---- Hand-made handshake messages ------------------------------------ */

static void put16(cn_buf *b, uint32_t v) {
  unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
  assert_int_equal(cn_buf_append(b, x, 2), 0);
}

static void put32(cn_buf *b, uint32_t v) {
  put16(b, v >> 16);
  put16(b, v & 0xffff);
}

/* One message: the 2-byte length, then body. */
static void msg_raw(cn_buf *b, const void *body, size_t n) {
  put16(b, (uint32_t)n);
  assert_int_equal(cn_buf_append(b, body, n), 0);
}

static void msg_send_name(cn_buf *b, uint64_t flags, uint32_t creation,
                          const char *name, size_t name_len, size_t extra) {
  put16(b, (uint32_t)(15 + name_len + extra));
  assert_int_equal(cn_buf_append(b, "N", 1), 0);
  put32(b, (uint32_t)(flags >> 32));
  put32(b, (uint32_t)flags);
  put32(b, creation);
  put16(b, (uint32_t)name_len);
  assert_int_equal(cn_buf_append(b, name, name_len), 0);
  for (size_t i = 0; i < extra; i++)
    assert_int_equal(cn_buf_append(b, "z", 1), 0);
}

static void msg_challenge(cn_buf *b, uint64_t flags, uint32_t challenge,
                          uint32_t creation, const char *name) {
  size_t n = strlen(name);
  put16(b, (uint32_t)(19 + n));
  assert_int_equal(cn_buf_append(b, "N", 1), 0);
  put32(b, (uint32_t)(flags >> 32));
  put32(b, (uint32_t)flags);
  put32(b, challenge);
  put32(b, creation);
  put16(b, (uint32_t)n);
  assert_int_equal(cn_buf_append(b, name, n), 0);
}

/* Feeds h the whole of in (an exact-size copy). */
static int feed_buf(cn__hs *h, const cn_buf *in, size_t *used, cn_buf *out) {
  char *c = exact(in->data, in->len);
  int rc = cn__hs_feed(h, c, in->len, used, out);
  assert_true(*used <= in->len);
  if (rc < 0)
    assert_non_null(h->error);
  free(c);
  return rc;
}

static void acceptor(cn__hs *h, cn__hs_arbitrate_fn arb, void *arg) {
  assert_int_equal(
      cn__hs_init(h, 0, "me@here", 9, FLAGS_FULL, "c", NULL, arb, arg), 0);
}

static void test_handshake_alive_false(void **state) {
  arb_state s = {CN__HS_ST_ALIVE, 0, "", 0};
  cn__hs h;
  cn_buf in = CN_BUF_INIT, out = CN_BUF_INIT;
  size_t used;

  (void)state;
  /* "false": the peer keeps its old connection. */
  acceptor(&h, arbitrate, &s);
  msg_send_name(&in, FLAGS_FULL, 1, "a@h", 3, 0);
  msg_raw(&in, "sfalse", 6);
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EEXIST);
  assert_int_equal(used, in.len);
  assert_status(&out, "alive");
  assert_int_equal(h.replaces, 0);

  /* Anything but true or false is a protocol error. */
  static const char *bad[] = {"strue!", "sTrue", "s", "xtrue", "sok"};
  for (size_t i = 0; i < COUNT(bad); i++) {
    in.len = out.len = 0;
    acceptor(&h, arbitrate, &s);
    msg_send_name(&in, FLAGS_FULL, 1, "a@h", 3, 0);
    msg_raw(&in, bad[i], strlen(bad[i]));
    assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);
  }

  /* "true": the challenge follows and the old connection must go. */
  in.len = out.len = 0;
  acceptor(&h, arbitrate, &s);
  msg_send_name(&in, FLAGS_FULL, 1, "a@h", 3, 0);
  msg_raw(&in, "strue", 5);
  assert_int_equal(feed_buf(&h, &in, &used, &out), 0);
  assert_int_equal(h.replaces, 1);
  assert_int_equal(out.len, 3 + 5 + 2 + 19 + 7);
  assert_int_equal(out.data[2 + 6 + 2], 'N');
  cn_buf_free(&in);
  cn_buf_free(&out);
}

static void test_handshake_mandatory_flags(void **state) {
  (void)state;

  /* An initiator that lacks any one mandatory flag is refused with
   * not_allowed, and learns it as CN_EEXIST. */
  for (int bit = 0; bit < 64; bit++) {
    uint64_t f = 1ULL << bit;
    if (!(CN__DFLAGS_MANDATORY_25 & f))
      continue;
    peer a, b;
    pair_init(&a, &b, "a@h", "b@h", "c", "c", FLAGS_NO_DIGEST & ~f, FLAGS_FULL,
              NULL, NULL);
    assert_int_equal(cn__hs_begin(&a.h, &a.out), 0);
    uint64_t seed = 1;
    deliver(&a, &b, SPLIT_WHOLE, &seed);
    assert_int_equal(b.rc, CN_ENOTSUP);
    assert_status(&b.out, "not_allowed");
    deliver(&b, &a, SPLIT_WHOLE, &seed);
    assert_int_equal(a.rc, CN_EEXIST);
    peer_free(&a);
    peer_free(&b);

    /* An acceptor that lacks it: the initiator gives up. */
    pair_init(&a, &b, "a@h", "b@h", "c", "c", FLAGS_FULL, FLAGS_NO_DIGEST & ~f,
              NULL, NULL);
    pair_run(&a, &b, SPLIT_WHOLE, 1);
    assert_int_equal(a.rc, CN_ENOTSUP);
    assert_int_equal(b.rc, 0);
    peer_free(&a);
    peer_free(&b);
  }

  /* Optional flags may all be missing, and MANDATORY_25_DIGEST stands
   * for the whole mandatory set (OTP 25 may send it alone). */
  static const uint64_t sets[] = {
      CN__DFLAGS_MANDATORY_25,
      CN__DFLAG_MANDATORY_25_DIGEST,
      CN__DFLAG_MANDATORY_25_DIGEST | CN__DFLAG_ALIAS,
      CN__DFLAGS_MANDATORY_25 | CN__DFLAG_PUBLISHED | CN__DFLAG_SPAWN |
          CN__DFLAG_FRAGMENTS | CN__DFLAG_ATOM_CACHE |
          CN__DFLAG_DIST_HDR_ATOM_CACHE | (1ULL << 40),
  };
  for (size_t i = 0; i < COUNT(sets); i++) {
    uint64_t expanded = sets[i];
    if (expanded & CN__DFLAG_MANDATORY_25_DIGEST)
      expanded |= CN__DFLAGS_MANDATORY_25;
    peer a, b;
    pair_init(&a, &b, "a@h", "b@h", "c", "c", sets[i], sets[i], NULL, NULL);
    pair_run(&a, &b, SPLIT_RANDOM, i);
    check_done(&a, &b, "a@h", "b@h", expanded, expanded);
    peer_free(&a);
    peer_free(&b);
  }
}

/* Messages an acceptor must refuse on arrival. */
static void test_handshake_acceptor_refusals(void **state) {
  char long_name[300];
  static const struct {
    const char *name;
    int rc;
  } names[] = {
      {"nohost", CN_EPROTO},
      {"@host", CN_EPROTO},
      {"name@", CN_EPROTO},
      {"a@b@c", CN_EPROTO},
      {"a b@c", CN_EPROTO},
      {"a\x01@b", CN_EPROTO},
      {"a@b\x7f", CN_EPROTO},
      {"\xc3\xa9@h", CN_EPROTO},
      {"@", CN_EPROTO},
      {"", CN_EPROTO},
      {"x@y", 0},
      {"n-1.x_y@h.c.d", 0},
  };
  cn__hs h;
  cn_buf in = CN_BUF_INIT, out = CN_BUF_INIT;
  size_t used;

  (void)state;
  for (size_t i = 0; i < COUNT(names); i++) {
    in.len = out.len = 0;
    acceptor(&h, NULL, NULL);
    msg_send_name(&in, FLAGS_FULL, 1, names[i].name, strlen(names[i].name), 0);
    assert_int_equal(feed_buf(&h, &in, &used, &out), names[i].rc);
    if (names[i].rc == 0)
      assert_string_equal(h.peer_name, names[i].name);
    else
      assert_int_equal(out.len, 0);
  }

  /* 255 bytes is the longest name; 256 is refused. */
  memset(long_name, 'n', sizeof long_name);
  long_name[100] = '@';
  for (size_t n = 254; n <= 257; n++) {
    in.len = out.len = 0;
    acceptor(&h, NULL, NULL);
    msg_send_name(&in, FLAGS_FULL, 1, long_name, n, 0);
    assert_int_equal(feed_buf(&h, &in, &used, &out), n <= 255 ? 0 : CN_EPROTO);
    if (n <= 255)
      assert_int_equal(h.peer_name_len, n);
  }

  /* Bytes after the name are ignored, as dist_util ignores them. */
  in.len = out.len = 0;
  acceptor(&h, NULL, NULL);
  msg_send_name(&in, FLAGS_FULL, 1, "a@h", 3, 9);
  assert_int_equal(feed_buf(&h, &in, &used, &out), 0);
  assert_string_equal(h.peer_name, "a@h");

  /* A name that runs past its message. */
  in.len = out.len = 0;
  acceptor(&h, NULL, NULL);
  put16(&in, 15 + 2);
  assert_int_equal(cn_buf_append(&in, "N", 1), 0);
  put32(&in, 0);
  put32(&in, (uint32_t)FLAGS_FULL);
  put32(&in, 1);
  put16(&in, 3);
  assert_int_equal(cn_buf_append(&in, "a@", 2), 0);
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);

  /* The old version 5 send_name. */
  in.len = out.len = 0;
  acceptor(&h, NULL, NULL);
  msg_raw(&in,
          "n\0\5\0\x0f\xff\xff"
          "a@h",
          10);
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_ENOTSUP);
  assert_int_equal(out.len, 0);

  /* A dynamic name (NAME_ME, from a node started without a name). */
  in.len = out.len = 0;
  acceptor(&h, NULL, NULL);
  msg_send_name(&in, FLAGS_FULL | CN__DFLAG_NAME_ME, 0, "host", 4, 0);
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_ENOTSUP);
  assert_status(&out, "not_allowed");

  /* Wrong tags, empty and short messages. */
  static const char *junk[] = {"X", "r", "a", "N", "s", "Nabc"};
  for (size_t i = 0; i < COUNT(junk); i++) {
    in.len = out.len = 0;
    acceptor(&h, NULL, NULL);
    msg_raw(&in, junk[i], strlen(junk[i]));
    assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);
  }
  in.len = out.len = 0;
  acceptor(&h, NULL, NULL);
  put16(&in, 0);
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);

  /* A challenge_reply of the wrong size fails at once, before its bytes
   * have arrived. */
  in.len = out.len = 0;
  acceptor(&h, NULL, NULL);
  msg_send_name(&in, FLAGS_FULL, 1, "a@h", 3, 0);
  put16(&in, 22);
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);

  cn_buf_free(&in);
  cn_buf_free(&out);
}

static void initiator(cn__hs *h, cn_buf *out) {
  assert_int_equal(cn__hs_init(h, 1, "me@here", 9, FLAGS_FULL, "c",
                               "peer@there", NULL, NULL),
                   0);
  assert_int_equal(cn__hs_begin(h, out), 0);
}

/* Messages an initiator must refuse, and its answer to "alive". */
static void test_handshake_initiator_refusals(void **state) {
  static const struct {
    const char *status;
    int rc;
  } statuses[] = {
      {"sok", 0},          {"sok_simultaneous", 0},
      {"snok", CN_EEXIST}, {"snot_allowed", CN_EEXIST},
      {"sfoo", CN_EPROTO}, {"sOK", CN_EPROTO},
      {"sok ", CN_EPROTO}, {"snamed:", CN_EPROTO},
      {"N", CN_EPROTO},    {"a", CN_EPROTO},
  };
  cn__hs h;
  cn_buf in = CN_BUF_INIT, out = CN_BUF_INIT;
  size_t used;

  (void)state;
  for (size_t i = 0; i < COUNT(statuses); i++) {
    in.len = out.len = 0;
    initiator(&h, &out);
    out.len = 0;
    msg_raw(&in, statuses[i].status, strlen(statuses[i].status));
    assert_int_equal(feed_buf(&h, &in, &used, &out), statuses[i].rc);
    assert_int_equal(out.len, 0);
  }

  /* "alive": we answer true and wait for the challenge. */
  in.len = out.len = 0;
  initiator(&h, &out);
  out.len = 0;
  msg_raw(&in, "salive", 6);
  assert_int_equal(feed_buf(&h, &in, &used, &out), 0);
  assert_status(&out, "true");

  /* The challenge must come from the node we dialled. */
  static const struct {
    const char *name;
    int rc;
  } names[] = {
      {"peer@there", 0},        {"peer@there2", CN_EPROTO},
      {"peer@ther", CN_EPROTO}, {"Peer@there", CN_EPROTO},
      {"nohost", CN_EPROTO},
  };
  for (size_t i = 0; i < COUNT(names); i++) {
    in.len = out.len = 0;
    initiator(&h, &out);
    out.len = 0;
    msg_raw(&in, "sok", 3);
    msg_challenge(&in, FLAGS_FULL, 77, 5, names[i].name);
    assert_int_equal(feed_buf(&h, &in, &used, &out), names[i].rc);
    if (names[i].rc == 0) {
      unsigned char d[16];
      assert_int_equal(h.peer_challenge, 77);
      assert_int_equal(h.peer_creation, 5);
      /* challenge_reply: our challenge, then the digest of theirs. */
      assert_int_equal(out.len, 2 + 21);
      assert_int_equal(out.data[2], 'r');
      cn__hs_digest("c", 1, 77, d);
      assert_memory_equal(out.data + 7, d, 16);
    }
  }

  /* A challenge without a mandatory flag, or with NAME_ME. */
  in.len = out.len = 0;
  initiator(&h, &out);
  msg_raw(&in, "sok", 3);
  msg_challenge(&in, FLAGS_NO_DIGEST & ~CN__DFLAG_BIG_CREATION, 1, 1,
                "peer@there");
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_ENOTSUP);
  in.len = out.len = 0;
  initiator(&h, &out);
  msg_raw(&in, "sok", 3);
  msg_challenge(&in, FLAGS_FULL | CN__DFLAG_NAME_ME, 1, 1, "peer@there");
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);

  /* Out of order: an ack or a challenge in place of the status. */
  in.len = out.len = 0;
  initiator(&h, &out);
  msg_challenge(&in, FLAGS_FULL, 1, 1, "peer@there");
  assert_int_equal(feed_buf(&h, &in, &used, &out), CN_EPROTO);

  cn_buf_free(&in);
  cn_buf_free(&out);
}

static void test_handshake_api(void **state) {
  char cookie[300];
  cn__hs h;
  cn_buf out = CN_BUF_INIT;
  size_t used = 5;

  (void)state;
  memset(cookie, 'k', sizeof cookie);
  cookie[255] = '\0';
  assert_int_equal(
      cn__hs_init(&h, 0, "a@b", 1, FLAGS_FULL, cookie, NULL, NULL, NULL), 0);
  assert_int_equal(h.cookie_len, 255);
  cookie[255] = 'k';
  cookie[256] = '\0';
  assert_int_equal(
      cn__hs_init(&h, 0, "a@b", 1, FLAGS_FULL, cookie, NULL, NULL, NULL),
      CN_EINVAL);
  assert_int_equal(
      cn__hs_init(&h, 0, NULL, 1, FLAGS_FULL, "c", NULL, NULL, NULL),
      CN_EINVAL);
  assert_int_equal(cn__hs_init(&h, 0, "", 1, FLAGS_FULL, "c", NULL, NULL, NULL),
                   CN_EINVAL);
  assert_int_equal(
      cn__hs_init(&h, 0, "a@b", 1, FLAGS_FULL, NULL, NULL, NULL, NULL),
      CN_EINVAL);
  assert_int_equal(
      cn__hs_init(&h, 1, "a@b", 1, FLAGS_FULL, "c", NULL, NULL, NULL),
      CN_EINVAL);

  /* begin only once, and only on the initiator; feed only after it. */
  assert_int_equal(
      cn__hs_init(&h, 0, "a@b", 1, FLAGS_FULL, "c", NULL, NULL, NULL), 0);
  assert_int_equal(cn__hs_begin(&h, &out), CN_EINVAL);
  assert_int_equal(
      cn__hs_init(&h, 1, "a@b", 1, FLAGS_FULL, "c", "x@y", NULL, NULL), 0);
  assert_int_equal(cn__hs_feed(&h, "", 0, &used, &out), CN_EINVAL);
  assert_int_equal(used, 0);
  assert_int_equal(cn__hs_begin(&h, &out), 0);
  assert_int_equal(cn__hs_begin(&h, &out), CN_EINVAL);

  /* send_name, byte for byte. */
  static const unsigned char want[] = {0,    18,   'N',  0,    0,   0,  0x2d,
                                       0x07, 0xdf, 0x5f, 0xbd, 0,   0,  0,
                                       1,    0,    3,    'a',  '@', 'b'};
  assert_true(FLAGS_FULL == 0x2d07df5fbdULL);
  assert_int_equal(out.len, sizeof want);
  assert_memory_equal(out.data, want, sizeof want);

  /* Two challenges from init differ (RAND_bytes), almost surely. */
  cn__hs h2;
  int same = 0;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(
        cn__hs_init(&h2, 0, "a@b", 1, FLAGS_FULL, "c", NULL, NULL, NULL), 0);
    same += h2.my_challenge == h.my_challenge;
  }
  assert_true(same < 4);
  cn_buf_free(&out);
}

/* ---- Handshake fuzzing ------------------------------------------------- */

/* A transcript of a complete handshake with fixed challenges, so that a
 * fresh machine fed the same bytes reaches the same states. */
typedef struct transcript {
  cn__hs_status answer; /* what the acceptor's arbitration says */
  cn_buf to_init;       /* everything the initiator received */
  cn_buf to_acc;        /* everything the acceptor received */
} transcript;

#define CH_A 0xa1a2a3a4u
#define CH_B 0xb1b2b3b4u

static cn__hs_status fixed_answer(void *arg, const char *name, size_t len,
                                  uint32_t creation) {
  (void)name;
  (void)len;
  (void)creation;
  return *(cn__hs_status *)arg;
}

static void fresh(cn__hs *h, int init, transcript *t) {
  cn_buf scratch = CN_BUF_INIT;
  if (init) {
    assert_int_equal(cn__hs_init(h, 1, "a@h", 0x11223344, FLAGS_FULL, "c",
                                 "b@h", NULL, NULL),
                     0);
    h->my_challenge = CH_A;
    assert_int_equal(cn__hs_begin(h, &scratch), 0);
  } else {
    assert_int_equal(cn__hs_init(h, 0, "b@h", 0x55667788, FLAGS_FULL, "c", NULL,
                                 fixed_answer, &t->answer),
                     0);
    h->my_challenge = CH_B;
  }
  cn_buf_free(&scratch);
}

static void make_transcript(transcript *t, cn__hs_status answer) {
  peer a, b;

  memset(t, 0, sizeof *t);
  t->answer = answer;
  pair_init(&a, &b, "a@h", "b@h", "c", "c", FLAGS_FULL, FLAGS_FULL,
            fixed_answer, &t->answer);
  a.h.my_challenge = CH_A;
  b.h.my_challenge = CH_B;
  pair_run(&a, &b, SPLIT_WHOLE, 1);
  assert_int_equal(a.rc, 1);
  assert_int_equal(b.rc, 1);
  t->to_init = a.log;
  t->to_acc = b.log;
  cn_buf_init(&a.log);
  cn_buf_init(&b.log);
  peer_free(&a);
  peer_free(&b);
}

static void transcript_free(transcript *t) {
  cn_buf_free(&t->to_init);
  cn_buf_free(&t->to_acc);
}

static int allowed_hs_rc(int rc) {
  return rc == 0 || rc == 1 || rc == CN_EPROTO || rc == CN_EAUTH ||
         rc == CN_ENOTSUP || rc == CN_EEXIST;
}

/* Feeds a fresh machine bytes[0 .. n) in pieces (whole: one piece; else
 * random pieces from seed, or single bytes when seed is 0), always
 * keeping unconsumed bytes for the next call as a connection would, and
 * returns the last result. */
static int replay(transcript *t, int init, const unsigned char *bytes, size_t n,
                  int whole, uint64_t seed) {
  cn__hs h;
  cn_buf in = CN_BUF_INIT, out = CN_BUF_INIT;
  size_t pos = 0, used;
  int rc = 0, last_rc = 0;

  fresh(&h, init, t);
  do {
    size_t left = n - pos, k;
    k = whole ? left : seed ? 1 + rnd(&seed) % (left ? left : 1) : 1;
    if (k > left)
      k = left;
    /* (cn_buf_append refuses 0 bytes into an empty buffer.) */
    if (k > 0)
      assert_int_equal(cn_buf_append(&in, bytes + pos, k), 0);
    pos += k;
    rc = feed_buf(&h, &in, &used, &out);
    assert_true(allowed_hs_rc(rc));
    /* Once a result is final it stays. */
    if (last_rc != 0)
      assert_int_equal(rc, last_rc);
    last_rc = rc;
    if (used > 0)
      memmove(in.data, in.data + used, in.len - used);
    in.len -= used;
  } while (pos < n);
  cn_buf_free(&in);
  cn_buf_free(&out);
  return rc;
}

static void test_handshake_truncation(void **state) {
  static const cn__hs_status answers[] = {CN__HS_ST_OK, CN__HS_ST_ALIVE};
  (void)state;

  for (size_t v = 0; v < COUNT(answers); v++) {
    transcript t;
    make_transcript(&t, answers[v]);
    for (int init = 0; init < 2; init++) {
      const cn_buf *s = init ? &t.to_init : &t.to_acc;
      const unsigned char *u = (const unsigned char *)s->data;
      for (size_t p = 0; p <= s->len; p++) {
        int want = p == s->len ? 1 : 0;
        assert_int_equal(replay(&t, init, u, p, 1, 0), want);
        assert_int_equal(replay(&t, init, u, p, 0, 0), want);
      }
    }
    transcript_free(&t);
  }
}

/* Every byte of every message changed in a few ways, and random damage:
 * never a crash, only 0, 1 or a handshake error, and the same result
 * however the bytes are split. */
static void test_handshake_mutation(void **state) {
  static const cn__hs_status answers[] = {CN__HS_ST_OK, CN__HS_ST_ALIVE};
  uint64_t seed = 0x1234567;
  (void)state;

  for (size_t v = 0; v < COUNT(answers); v++) {
    transcript t;
    make_transcript(&t, answers[v]);
    for (int init = 0; init < 2; init++) {
      const cn_buf *s = init ? &t.to_init : &t.to_acc;
      unsigned char *m = malloc(s->len + 64);
      assert_non_null(m);
      for (size_t i = 0; i < s->len; i++) {
        unsigned char x = (unsigned char)s->data[i];
        const unsigned char alt[] = {x ^ 0x01, x ^ 0x80, 0, 0xff,
                                     (unsigned char)(x + 1)};
        for (size_t k = 0; k < sizeof alt; k++) {
          if (alt[k] == x)
            continue;
          memcpy(m, s->data, s->len);
          m[i] = alt[k];
          int rc = replay(&t, init, m, s->len, 1, 0);
          assert_int_equal(replay(&t, init, m, s->len, 0, 0), rc);
        }
      }
      for (int r = 0; r < 3000; r++) {
        size_t n = s->len;
        memcpy(m, s->data, n);
        int hits = 1 + (int)(rnd(&seed) % 4);
        for (int k = 0; k < hits; k++)
          m[rnd(&seed) % n] = (unsigned char)rnd(&seed);
        if (rnd(&seed) % 4 == 0)
          n = rnd(&seed) % (s->len + 1);
        else if (rnd(&seed) % 4 == 0)
          for (size_t e = rnd(&seed) % 64; e > 0; e--)
            m[n++] = (unsigned char)rnd(&seed);
        int rc = replay(&t, init, m, n, 1, 0);
        assert_int_equal(replay(&t, init, m, n, 0, rnd(&seed) | 1), rc);
      }
      free(m);
    }
    transcript_free(&t);
  }
}

/* Well-framed messages of random content in every state. */
static void test_handshake_garbage(void **state) {
  static const char tags[] = "NnsraXc";
  uint64_t seed = 99;
  unsigned char buf[600];
  transcript t;
  (void)state;

  make_transcript(&t, CN__HS_ST_OK);
  for (int r = 0; r < 20000; r++) {
    int init = r & 1;
    const cn_buf *s = init ? &t.to_init : &t.to_acc;
    /* A valid prefix of 0 to 2 messages, then one random message. */
    size_t n = 0, keep = rnd(&seed) % 3, off = 0;
    for (size_t k = 0; k < keep && off + 2 <= s->len; k++)
      off += 2 + (((unsigned char)s->data[off] << 8) |
                  (unsigned char)s->data[off + 1]);
    if (off > s->len)
      off = s->len;
    memcpy(buf, s->data, off);
    n = off;
    size_t len = rnd(&seed) % 300;
    buf[n++] = (unsigned char)(len >> 8);
    buf[n++] = (unsigned char)len;
    for (size_t i = 0; i < len; i++)
      buf[n + i] = (unsigned char)rnd(&seed);
    if (len > 0)
      buf[n] = (unsigned char)tags[rnd(&seed) % (sizeof tags - 1)];
    n += len;
    int rc = replay(&t, init, buf, n, 1, 0);
    assert_int_equal(replay(&t, init, buf, n, 0, rnd(&seed) | 1), rc);
  }
  transcript_free(&t);
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

/* ---- Control messages -------------------------------------------------- */

/* The terms the control tuples below are made of, one letter each:
 *   P, Q  pids (from, to)       A  an atom (a registered name)
 *   R     a reference           T  a trace token (a 5-tuple)
 *   X     an exit reason        U  '' (the Unused field)
 *   I     an UNLINK_ID id (over 32 bits)
 *   M     a message (a payload) F  1.5, of no type any field wants */
static cn_buf terms[128];

static void terms_init(void) {
  uint32_t node;
  cn_pid p = {0, 41, 0, 7}, q = {0, 42, 1, 7};
  cn_ref r = {0, 7, 3, {1, 2, 3}};

  if (terms['P'].len)
    return;
  assert_int_equal(cn_node_intern("peer@host", 9, &node), 0);
  p.node = node;
  r.node = node;
  assert_int_equal(cn_put_pid(&terms['P'], &p), 0);
  assert_int_equal(cn_put_pid(&terms['Q'], &q), 0);
  assert_int_equal(cn_put_ref(&terms['R'], &r), 0);
  assert_int_equal(cn_build(&terms['A'], "kv"), 0);
  assert_int_equal(cn_build(&terms['T'], "{0, 1, 2, ~p, 5}", &p), 0);
  assert_int_equal(cn_build(&terms['X'], "{shutdown, \"bye\"}"), 0);
  assert_int_equal(cn_build(&terms['U'], "''"), 0);
  assert_int_equal(cn_build(&terms['I'], "123456789012"), 0);
  assert_int_equal(
      cn_build(&terms['M'], "{'$gen_call', {~p, [alias | ~r]}, get}", &p, &r),
      0);
  assert_int_equal(cn_build(&terms['F'], "1.5"), 0);
}

static cn_term term_of(char c) { return cn_buf_term(&terms[(int)c]); }

/* Appends 'p', 131 and the control tuple {op, elems...}, then, when
 * payload is not 0, 131 and that term. */
static void ctl_frame(cn_buf *f, int64_t op, const char *elems, char payload) {
  size_t n = strlen(elems);
  assert_int_equal(cn_buf_append(f, "p\x83", 2), 0);
  assert_int_equal(cn_put_tuple(f, (uint32_t)(n + 1)), 0);
  assert_int_equal(cn_put_int(f, op), 0);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(cn_put_term(f, term_of(elems[i])), 0);
  if (payload) {
    assert_int_equal(cn_buf_append(f, "\x83", 1), 0);
    assert_int_equal(cn_put_term(f, term_of(payload)), 0);
  }
}

/* The copy the last parse read, kept so that out's views stay valid
 * until the next parse. */
static char *last_copy;

/* Parses an exact-size copy of f. */
static int parse(const cn_buf *f, const cn_term_limits *lim, cn__ctl *out) {
  free(last_copy);
  last_copy = exact(f->data, f->len);
  return cn__ctl_parse(last_copy, f->len, lim, out);
}

static const struct ctl_case {
  int op;
  const char *elems;                 /* after the op */
  char payload;                      /* 0, 'M' or 'X' */
  char from, to, ref, reason, token; /* the letters expected; 0: empty */
  int has_id;
} ctl_cases[] = {
    {CN__DOP_LINK, "PQ", 0, 'P', 'Q', 0, 0, 0, 0},
    {CN__DOP_SEND, "UQ", 'M', 0, 'Q', 0, 0, 0, 0},
    {CN__DOP_EXIT, "PQX", 0, 'P', 'Q', 0, 'X', 0, 0},
    {CN__DOP_REG_SEND, "PUA", 'M', 'P', 'A', 0, 0, 0, 0},
    {CN__DOP_EXIT2, "PQX", 0, 'P', 'Q', 0, 'X', 0, 0},
    {CN__DOP_SEND_TT, "UQT", 'M', 0, 'Q', 0, 0, 'T', 0},
    {CN__DOP_EXIT_TT, "PQTX", 0, 'P', 'Q', 0, 'X', 'T', 0},
    {CN__DOP_REG_SEND_TT, "PUAT", 'M', 'P', 'A', 0, 0, 'T', 0},
    {CN__DOP_EXIT2_TT, "PQTX", 0, 'P', 'Q', 0, 'X', 'T', 0},
    {CN__DOP_MONITOR_P, "PQR", 0, 'P', 'Q', 'R', 0, 0, 0},
    {CN__DOP_MONITOR_P, "PAR", 0, 'P', 'A', 'R', 0, 0, 0},
    {CN__DOP_DEMONITOR_P, "PQR", 0, 'P', 'Q', 'R', 0, 0, 0},
    {CN__DOP_DEMONITOR_P, "PAR", 0, 'P', 'A', 'R', 0, 0, 0},
    {CN__DOP_MONITOR_P_EXIT, "PQRX", 0, 'P', 'Q', 'R', 'X', 0, 0},
    {CN__DOP_MONITOR_P_EXIT, "AQRX", 0, 'A', 'Q', 'R', 'X', 0, 0},
    {CN__DOP_SEND_SENDER, "PQ", 'M', 'P', 'Q', 0, 0, 0, 0},
    {CN__DOP_SEND_SENDER_TT, "PQT", 'M', 'P', 'Q', 0, 0, 'T', 0},
    {CN__DOP_PAYLOAD_EXIT, "PQ", 'X', 'P', 'Q', 0, 'X', 0, 0},
    {CN__DOP_PAYLOAD_EXIT_TT, "PQT", 'X', 'P', 'Q', 0, 'X', 'T', 0},
    {CN__DOP_PAYLOAD_EXIT2, "PQ", 'X', 'P', 'Q', 0, 'X', 0, 0},
    {CN__DOP_PAYLOAD_EXIT2_TT, "PQT", 'X', 'P', 'Q', 0, 'X', 'T', 0},
    {CN__DOP_PAYLOAD_MONITOR_P_EXIT, "PQR", 'X', 'P', 'Q', 'R', 'X', 0, 0},
    {CN__DOP_PAYLOAD_MONITOR_P_EXIT, "AQR", 'X', 'A', 'Q', 'R', 'X', 0, 0},
    {CN__DOP_ALIAS_SEND, "PR", 'M', 'P', 'R', 0, 0, 0, 0},
    {CN__DOP_ALIAS_SEND_TT, "PRT", 'M', 'P', 'R', 0, 0, 'T', 0},
    {CN__DOP_UNLINK_ID, "IPQ", 0, 'P', 'Q', 0, 0, 0, 1},
    {CN__DOP_UNLINK_ID_ACK, "IPQ", 0, 'P', 'Q', 0, 0, 0, 1},
};

static void check_field(cn_term got, char letter) {
  if (letter == 0) {
    assert_null(got.ptr);
    assert_int_equal(got.len, 0);
  } else {
    assert_true(cn_term_equal(got, term_of(letter)));
  }
}

/* The control fields of a parse of case c (the payload aside). */
static void check_ctl(const cn__ctl *out, const struct ctl_case *c) {
  assert_int_equal(out->op, c->op);
  check_field(out->from, c->from);
  check_field(out->to, c->to);
  check_field(out->ref, c->ref);
  check_field(out->token, c->token);
  assert_true(out->id == (c->has_id ? 123456789012ULL : 0));
  assert_int_equal(out->has_payload, c->payload != 0);
  if (c->payload == 0) {
    check_field(out->reason, c->reason);
    check_field(out->msg, 0);
  }
}

static void test_ctl_every_op(void **state) {
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(ctl_cases); i++) {
    const struct ctl_case *c = &ctl_cases[i];
    cn_buf f = CN_BUF_INIT;
    cn__ctl out;
    const char *keep;

    ctl_frame(&f, c->op, c->elems, c->payload);
    assert_int_equal(parse(&f, NULL, &out), 0);
    keep = last_copy;
    check_ctl(&out, c);
    /* The views point into the frame. */
    assert_true(out.to.ptr > keep && out.to.ptr < keep + f.len);
    if (c->payload == 'M') {
      check_field(out.msg, 'M');
      check_field(out.reason, 0);
      assert_true(out.msg.ptr + out.msg.len == keep + f.len);
    } else if (c->payload == 'X') {
      check_field(out.reason, 'X');
      check_field(out.msg, 0);
      assert_true(out.reason.ptr + out.reason.len == keep + f.len);
    }
    cn_buf_free(&f);
  }
}

static void test_ctl_arity_and_types(void **state) {
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(ctl_cases); i++) {
    const struct ctl_case *c = &ctl_cases[i];
    size_t n = strlen(c->elems);
    char elems[16];
    cn_buf f = CN_BUF_INIT;
    cn__ctl out;

    /* One element short, one too many. */
    memcpy(elems, c->elems, n - 1);
    elems[n - 1] = '\0';
    ctl_frame(&f, c->op, elems, c->payload);
    assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);
    assert_int_equal(out.op, 0);
    f.len = 0;
    memcpy(elems, c->elems, n);
    elems[n] = 'U';
    elems[n + 1] = '\0';
    ctl_frame(&f, c->op, elems, c->payload);
    assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);

    /* Each element replaced by a float: an error exactly where the
     * element has a type to check. */
    for (size_t k = 0; k < n; k++) {
      memcpy(elems, c->elems, n + 1);
      elems[k] = 'F';
      f.len = 0;
      ctl_frame(&f, c->op, elems, c->payload);
      int typed = strchr("PQARI", c->elems[k]) != NULL;
      assert_int_equal(parse(&f, NULL, &out), typed ? CN_EPROTO : 0);
    }

    /* Each typed element replaced by a term of another kind that no
     * field of that place accepts: a ref for a pid or an atom (even where
     * either may come), a pid for a ref or an id. */
    for (size_t k = 0; k < n; k++) {
      char e = c->elems[k], swap;
      if (e == 'P' || e == 'Q' || e == 'A')
        swap = 'R';
      else if (e == 'R' || e == 'I')
        swap = 'P';
      else
        continue;
      memcpy(elems, c->elems, n + 1);
      elems[k] = swap;
      f.len = 0;
      ctl_frame(&f, c->op, elems, c->payload);
      assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);
    }

    /* A payload missing, or one where the op has none. */
    f.len = 0;
    ctl_frame(&f, c->op, c->elems, c->payload ? 0 : 'M');
    assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);

    /* A byte after the end: after a control message with no payload it
     * breaks the frame; after a payload only that payload is bad. */
    f.len = 0;
    ctl_frame(&f, c->op, c->elems, c->payload);
    assert_int_equal(cn_buf_append(&f, "\x6a", 1), 0);
    assert_int_equal(parse(&f, NULL, &out),
                     c->payload ? CN_EBADTERM : CN_EPROTO);
    if (c->payload)
      assert_int_equal(out.op, c->op);
    cn_buf_free(&f);
  }
}

/* ALTACT_SIG_SEND (OTP 28), built by hand as erts_dsig_send_msg() and
 * erts_dsig_send_exit2() build it, and read as erts_net_message() reads
 * it: into the older op that says the same. */
static void test_ctl_altact(void **state) {
  static const struct {
    const char *flags; /* the Flags element, for cn_build */
    const char *elems; /* From, To, more */
    char payload;
    int rc, op; /* expected; op only when rc is 0 */
    char to, token;
  } cases[] = {
      /* A message to a pid, an alias, a name; priority; a token. */
      {"0", "PQ", 'M', 0, CN__DOP_SEND_SENDER, 'Q', 0},
      {"4", "PR", 'M', 0, CN__DOP_ALIAS_SEND, 'R', 0},
      {"8", "PA", 'M', 0, CN__DOP_REG_SEND, 'A', 0},
      {"9", "PA", 'M', 0, CN__DOP_REG_SEND, 'A', 0},
      {"5", "PR", 'M', 0, CN__DOP_ALIAS_SEND, 'R', 0},
      {"2", "PQT", 'M', 0, CN__DOP_SEND_SENDER, 'Q', 'T'},
      {"6", "PRT", 'M', 0, CN__DOP_ALIAS_SEND, 'R', 'T'},
      /* Exit signals: to a pid as PAYLOAD_EXIT2, to an alias or a name
       * as themselves. */
      {"16", "PQ", 'X', 0, CN__DOP_PAYLOAD_EXIT2, 'Q', 0},
      {"17", "PQ", 'X', 0, CN__DOP_PAYLOAD_EXIT2, 'Q', 0},
      {"20", "PR", 'X', 0, CN__DOP_ALTACT_SIG_SEND, 'R', 0},
      {"21", "PR", 'X', 0, CN__DOP_ALTACT_SIG_SEND, 'R', 0},
      {"24", "PA", 'X', 0, CN__DOP_ALTACT_SIG_SEND, 'A', 0},
      {"18", "PQT", 'X', 0, CN__DOP_PAYLOAD_EXIT2, 'Q', 'T'},
      /* Room to grow: more elements, and flags beyond the low byte, of
       * any size, are ignored. */
      {"0", "PQUU", 'M', 0, CN__DOP_SEND_SENDER, 'Q', 0},
      {"0", "PQT", 'M', 0, CN__DOP_SEND_SENDER, 'Q', 0},
      {"256", "PQ", 'M', 0, CN__DOP_SEND_SENDER, 'Q', 0},
      {"18446744073709551620", "PR", 'M', 0, CN__DOP_ALIAS_SEND, 'R', 0},
      {"340282366920938463463374607431768211464", "PA", 'M', 0,
       CN__DOP_REG_SEND, 'A', 0},
      /* Refused, as erts refuses them (it closes the connection). */
      {"-1", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"-18446744073709551620", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"1.5", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"kv", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"12", "PR", 'M', CN_EPROTO, 0, 0, 0},
      {"12", "PA", 'M', CN_EPROTO, 0, 0, 0},
      {"4", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"4", "PA", 'M', CN_EPROTO, 0, 0, 0},
      {"8", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "PA", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "PR", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "AQ", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "RQ", 'M', CN_EPROTO, 0, 0, 0},
      {"2", "PQ", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "P", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "", 'M', CN_EPROTO, 0, 0, 0},
      {"0", "PQ", 0, CN_EPROTO, 0, 0, 0},
      {"16", "PQ", 0, CN_EPROTO, 0, 0, 0},
  };
  cn_buf f = CN_BUF_INIT;
  cn__ctl out;
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(cases); i++) {
    size_t n = strlen(cases[i].elems);
    f.len = 0;
    assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
    assert_int_equal(cn_put_tuple(&f, (uint32_t)(n + 2)), 0);
    assert_int_equal(cn_put_int(&f, CN__DOP_ALTACT_SIG_SEND), 0);
    assert_int_equal(cn_build(&f, cases[i].flags), 0);
    for (size_t k = 0; k < n; k++)
      assert_int_equal(cn_put_term(&f, term_of(cases[i].elems[k])), 0);
    if (cases[i].payload) {
      assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
      assert_int_equal(cn_put_term(&f, term_of(cases[i].payload)), 0);
    }
    if (parse(&f, NULL, &out) != cases[i].rc)
      fail_msg("case %zu: {37, %s, %s}: want %d", i, cases[i].flags,
               cases[i].elems, cases[i].rc);
    if (cases[i].rc != 0)
      continue;
    assert_int_equal(out.op, cases[i].op);
    assert_true(out.altact != 0 || strcmp(cases[i].flags, "0") == 0 ||
                strcmp(cases[i].flags, "256") == 0);
    check_field(out.from, 'P');
    check_field(out.to, cases[i].to);
    check_field(out.token, cases[i].token);
    assert_true(out.has_payload);
    check_field(cases[i].payload == 'X' ? out.reason : out.msg,
                cases[i].payload);
  }

  /* The head of one too large to keep reads the same way. */
  {
    size_t pay;
    f.len = 0;
    assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
    assert_int_equal(
        cn_build(&f, "{37, 4, ~t, ~t}", term_of('P'), term_of('R')), 0);
    assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
    assert_int_equal(cn__ctl_parse_head(f.data, f.len, NULL, &out, &pay), 0);
    assert_int_equal(out.op, CN__DOP_ALIAS_SEND);
    assert_int_equal(pay, f.len);
  }
  cn_buf_free(&f);
}

static void test_ctl_unlink_id(void **state) {
  cn_buf f = CN_BUF_INIT;
  cn__ctl out;
  static const struct {
    const char *id;
    int rc;
    uint64_t want;
  } ids[] = {
      {"0", 0, 0},
      {"1", 0, 1},
      {"18446744073709551615", 0, UINT64_MAX},
      {"18446744073709551616", CN_EPROTO, 0},
      {"-1", CN_EPROTO, 0},
      {"one", CN_EPROTO, 0},
  };
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(ids); i++) {
    f.len = 0;
    assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
    assert_int_equal(cn_put_tuple(&f, 4), 0);
    assert_int_equal(cn_put_int(&f, CN__DOP_UNLINK_ID), 0);
    assert_int_equal(cn_build(&f, ids[i].id), 0);
    assert_int_equal(cn_put_term(&f, term_of('P')), 0);
    assert_int_equal(cn_put_term(&f, term_of('Q')), 0);
    assert_int_equal(parse(&f, NULL, &out), ids[i].rc);
    if (ids[i].rc == 0)
      assert_true(out.id == ids[i].want);
  }
  cn_buf_free(&f);
}

/* SPAWN_REQUEST(_TT): the fields, and the argument list as payload. */
static void test_ctl_spawn_request(void **state) {
  cn_buf f = CN_BUF_INIT;
  cn_term r = term_of('R');
  cn__ctl out;
  char m[8], fn[8];
  int64_t arity;
  (void)state;
  terms_init();
  r = term_of('R');

  assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
  assert_int_equal(cn_build(&f, "{29, ~t, ~t, ~t, {m, f, 2}, [monitor]}", r,
                            term_of('P'), term_of('Q')),
                   0);
  assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
  assert_int_equal(cn_build(&f, "[1, x]"), 0);
  assert_int_equal(parse(&f, NULL, &out), 0);
  assert_int_equal(out.op, CN__DOP_SPAWN_REQUEST);
  assert_true(cn_term_equal(out.ref, r));
  assert_true(cn_term_equal(out.from, term_of('P')));
  assert_int_equal(
      cn_match(out.mfa, "{~a, ~a, ~i}", m, sizeof m, fn, sizeof fn, &arity), 0);
  assert_string_equal(m, "m");
  assert_string_equal(fn, "f");
  assert_int_equal(arity, 2);
  assert_int_equal(cn_match(out.opts, "[monitor]"), 0);
  assert_int_equal(cn_match(out.msg, "[1, x]"), 0);
  /* Without its argument list it is malformed. */
  f.len = 0;
  assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
  assert_int_equal(cn_build(&f, "{29, ~t, ~t, ~t, {m, f, 0}, []}", r,
                            term_of('P'), term_of('Q')),
                   0);
  assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);
  /* SPAWN_REQUEST_TT, with its token last. */
  f.len = 0;
  assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
  assert_int_equal(cn_build(&f, "{30, ~t, ~t, ~t, {m, f, 0}, [], tok}", r,
                            term_of('P'), term_of('Q')),
                   0);
  assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
  assert_int_equal(cn_build(&f, "[]"), 0);
  assert_int_equal(parse(&f, NULL, &out), 0);
  assert_int_equal(out.op, CN__DOP_SPAWN_REQUEST_TT);
  assert_true(cn_is_atom(out.token, "tok"));
  cn_buf_free(&f);
}

static void test_ctl_refused_ops(void **state) {
  static const struct {
    const char *ctl; /* cn_build format, with ~t for P and ~T for R */
  } refused[] = {
      {"{4, ~t, ~t}"}, /* UNLINK */
      {"{5}"},         /* NODE_LINK */
      {"{7, ~t, ~t}"}, /* GROUP_LEADER */
      {"{0, ~t, ~t}"},
      {"{9, ~t, ~t}"},
      {"{10, ~t, ~t}"},
      {"{11, ~t, ~t}"},
      {"{14, ~t, ~t}"},
      {"{15, ~t, ~t}"},
      {"{17, ~t, ~t}"},
      {"{38, ~t, ~t}"},
      {"{100, ~t, ~t}"},
      {"{-1, ~t, ~t}"},
      {"{256, ~t, ~t}"},
      {"{18446744073709551618, ~t, ~t}"},
      {"{link, ~t, ~t}"},
      {"{1.0, ~t, ~t}"},
      {"{29, ~T, ~t, ~t, {m, f}, []}"},        /* SPAWN_REQUEST: no arity */
      {"{29, ~T, ~t, ~t, {m, f, 256}, []}"},   /* arity over 255 */
      {"{29, ~T, ~t, ~t, {m, \"f\", 1}, []}"}, /* not an atom */
      {"{29, ~T, ~t, ~t, {m, f, 1}, opts}"},   /* not a list */
      {"{29, 1, ~t, ~t, {m, f, 1}, []}"},      /* ReqId not a ref */
      {"{30, ~T, ~t, ~t, {m, f, 1}, []}"},     /* _TT without a token */
      {"{31, ~T, ~t, 0, ~t}"},                 /* SPAWN_REPLY */
      {"{32, ~T, ~t, 0, ~t, tok}"},            /* SPAWN_REPLY_TT */
      {"{}"},
      {"[1, ~t, ~t]"},
      {"link"},
      {"[]"},
      {"1"},
      {"\"bin\""},
      {"#{1 => ~t}"},
  };
  cn_buf f = CN_BUF_INIT;
  cn__ctl out;
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(refused); i++) {
    cn_term r = term_of('R');
    f.len = 0;
    assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
    if (strstr(refused[i].ctl, "~T"))
      assert_int_equal(cn_build(&f, refused[i].ctl, &r, term_of('P'),
                                term_of('Q'), term_of('P')),
                       0);
    else
      assert_int_equal(cn_build(&f, refused[i].ctl, term_of('P'), term_of('Q')),
                       0);
    assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);
    /* With a payload after it, too. */
    assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
    assert_int_equal(cn_put_term(&f, term_of('M')), 0);
    assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);
  }
  cn_buf_free(&f);
}

/* Frames that are not pass-through frames with one sound control term. */
static void test_ctl_bad_frames(void **state) {
  cn_buf f = CN_BUF_INIT, good = CN_BUF_INIT;
  cn__ctl out;
  (void)state;
  terms_init();

  ctl_frame(&good, CN__DOP_SEND_SENDER, "PQ", 'M');
  assert_int_equal(parse(&good, NULL, &out), 0);

  /* Empty, too short, no 'p', a distribution header instead ('D' for
   * the atom cache, 'E' for fragments), the wrong version byte. */
  static const char *heads[] = {"",         "p",        "\x83",  "q\x83",
                                "\x83\x44", "\x83\x45", "p\x82", "pp"};
  for (size_t i = 0; i < COUNT(heads); i++) {
    size_t hn = strlen(heads[i]);
    f.len = 0;
    if (hn > 0)
      assert_int_equal(cn_buf_append(&f, heads[i], hn), 0);
    if (hn >= 2)
      assert_int_equal(cn_buf_append(&f, good.data + 2, good.len - 2), 0);
    assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);
  }
  /* A 'D' header where the control term should be. */
  f.len = 0;
  assert_int_equal(cn_buf_append(&f, "p\x83\x44\0", 4), 0);
  assert_int_equal(parse(&f, NULL, &out), CN_EPROTO);

  /* A control term over the limits (then the connection must go, even
   * though the framing would allow dropping just this message). */
  cn_term_limits small = {4, 0};
  f.len = 0;
  assert_int_equal(cn_buf_append(&f, "p\x83", 2), 0);
  assert_int_equal(cn_build(&f, "{23, ~t, ~t, {{{{{{deep}}}}}}}", term_of('P'),
                            term_of('Q')),
                   0);
  assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
  assert_int_equal(cn_put_term(&f, term_of('U')), 0);
  assert_int_equal(parse(&f, &small, &out), CN_EPROTO);
  assert_int_equal(parse(&f, NULL, &out), 0);
  cn_term_limits tiny = {0, 20};
  assert_int_equal(parse(&good, &tiny, &out), CN_EPROTO);

  cn_buf_free(&f);
  cn_buf_free(&good);
}

/* A sound control message with a bad payload: the payload's error, and
 * the control fields set so that the caller can log and count it. */
static void test_ctl_bad_payload(void **state) {
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(ctl_cases); i++) {
    const struct ctl_case *c = &ctl_cases[i];
    cn_buf f = CN_BUF_INIT;
    cn__ctl out;
    size_t ctl_len;

    if (c->payload == 0)
      continue;
    ctl_frame(&f, c->op, c->elems, 0);
    ctl_len = f.len;

    /* A binary that claims 1 MiB and holds 1 byte. */
    assert_int_equal(cn_buf_append(&f, "\x83\x6d\0\x10\0\0x", 7), 0);
    assert_int_equal(parse(&f, NULL, &out), CN_EBADTERM);
    check_ctl(&out, c);
    check_field(out.msg, 0);
    check_field(out.reason, 0);

    /* No version byte. */
    f.len = ctl_len;
    assert_int_equal(cn_put_term(&f, term_of('M')), 0);
    assert_int_equal(parse(&f, NULL, &out), CN_EBADTERM);
    check_ctl(&out, c);

    /* A compressed term (erts never sends one on a connection). */
    f.len = ctl_len;
    assert_int_equal(cn_buf_append(&f, "\x83\x50\0\0\0\1x", 7), 0);
    assert_int_equal(parse(&f, NULL, &out), CN_EBADTERM);

    /* Over the size limit (the control term is within it). */
    cn_term_limits lim = {0, 200};
    static char big[1000];
    f.len = ctl_len;
    assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
    assert_int_equal(cn_put_binary(&f, big, sizeof big), 0);
    assert_int_equal(parse(&f, &lim, &out), CN_ETOOBIG);
    check_ctl(&out, c);
    assert_int_equal(parse(&f, NULL, &out), 0);

    /* Over the depth limit. */
    cn_term_limits shallow = {8, 0};
    f.len = ctl_len;
    assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
    assert_int_equal(cn_build(&f, "[[[[[[[[[[[[x]]]]]]]]]]]]"), 0);
    assert_int_equal(parse(&f, &shallow, &out), CN_ETOODEEP);
    check_ctl(&out, c);
    cn_buf_free(&f);
  }
}

/* A payload nested a million deep: CN_ETOODEEP under the default limit,
 * and no stack overflow even when the limit allows it all. */
static void test_ctl_deep_payload(void **state) {
  const size_t depth = 1000000;
  cn_buf f = CN_BUF_INIT;
  cn__ctl out;
  (void)state;
  terms_init();

  ctl_frame(&f, CN__DOP_SEND_SENDER, "PQ", 0);
  assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
  assert_int_equal(cn_buf_reserve(&f, 2 * depth + 1), 0);
  for (size_t i = 0; i < depth; i++) {
    f.data[f.len++] = 104; /* SMALL_TUPLE_EXT */
    f.data[f.len++] = 1;
  }
  f.data[f.len++] = 106; /* [] */
  assert_int_equal(parse(&f, NULL, &out), CN_ETOODEEP);
  assert_int_equal(out.op, CN__DOP_SEND_SENDER);
  check_field(out.from, 'P');
  check_field(out.to, 'Q');
  assert_int_equal(out.has_payload, 1);

  cn_term_limits all = {2 * depth, 0};
  assert_int_equal(parse(&f, &all, &out), 0);
  assert_int_equal(out.msg.len, 2 * depth + 1);
  cn_buf_free(&f);
}

static int allowed_ctl_rc(int rc) {
  return rc == 0 || rc == CN_EPROTO || rc == CN_EBADTERM || rc == CN_ETOODEEP ||
         rc == CN_ETOOBIG;
}

/* Every proper prefix of every frame is an error (the frame length is
 * the only framing), and random damage never crashes. */
/* The same frame without version bytes, after a distribution header that
 * refers to no atom cache entry (131 'D' 0): what an OTP node sends a peer
 * that offers DFLAG_FRAGMENTS. */
static void d_frame(cn_buf *d, const cn_buf *p) {
  size_t off = 2;
  assert_int_equal(cn_term_validate(p->data, p->len, &off, NULL), 0);
  cn_buf_reset(d);
  assert_int_equal(cn_buf_append(d,
                                 "\x83"
                                 "D\0",
                                 3),
                   0);
  assert_int_equal(cn_buf_append(d, p->data + 2, off - 2), 0);
  if (off < p->len)
    assert_int_equal(cn_buf_append(d, p->data + off + 1, p->len - off - 1), 0);
}

static void test_ctl_dist_header(void **state) {
  (void)state;
  terms_init();
  for (size_t i = 0; i < COUNT(ctl_cases); i++) {
    const struct ctl_case *c = &ctl_cases[i];
    cn_buf f = CN_BUF_INIT, d = CN_BUF_INIT;
    cn__ctl a, b;
    ctl_frame(&f, c->op, c->elems, c->payload);
    d_frame(&d, &f);
    assert_int_equal(parse(&f, NULL, &a), 0);
    {
      char *copy = exact(d.data, d.len);
      assert_int_equal(cn__ctl_parse(copy, d.len, NULL, &b), 0);
      assert_int_equal(a.op, b.op);
      assert_int_equal(a.has_payload, b.has_payload);
      assert_true(
          a.msg.len == b.msg.len &&
          (a.msg.len == 0 || memcmp(a.msg.ptr, b.msg.ptr, a.msg.len) == 0));
      assert_true(a.reason.len == b.reason.len);
      assert_true(a.to.len == b.to.len);
      free(copy);
    }
    /* Atom cache references are refused (we offer no atom cache). */
    d.data[2] = 1;
    assert_int_equal(parse(&d, NULL, &b), CN_EPROTO);
    cn_buf_free(&f);
    cn_buf_free(&d);
  }
}

/* The head of a frame cut short: the control term and where the payload
 * starts; then the call in the payload's first bytes. */
static void test_ctl_head_and_call(void **state) {
  cn_buf f = CN_BUF_INIT, d = CN_BUF_INIT;
  cn__ctl out;
  size_t pay = 0, cut;
  cn_term caller, tag;
  (void)state;
  terms_init();

  ctl_frame(&f, CN__DOP_REG_SEND, "PUA", 'M');
  d_frame(&d, &f);
  for (int form = 0; form < 2; form++) {
    cn_buf *b = form ? &d : &f;
    for (cut = 0; cut <= b->len; cut++) {
      char *copy = exact(b->data, cut);
      int rc = cn__ctl_parse_head(copy, cut, NULL, &out, &pay);
      if (rc == 0) {
        assert_int_equal(out.op, CN__DOP_REG_SEND);
        assert_true(pay <= cut);
        rc = cn__call_head(copy + pay, cut - pay, &caller, &tag);
        if (rc == 0) {
          assert_true(cn_term_equal(caller, term_of('P')));
          assert_int_equal(cn_term_typeof(tag), CN_T_LIST);
        } else {
          assert_int_equal(rc, CN_ENOMATCH);
        }
        /* The whole head of the call is there once the request starts. */
        if (cut == b->len)
          assert_int_equal(rc, 0);
      } else {
        assert_int_equal(rc, CN_EPROTO);
      }
      free(copy);
    }
  }
  /* Ops without a payload have no head to look at. */
  cn_buf_reset(&f);
  ctl_frame(&f, CN__DOP_LINK, "PQ", 0);
  assert_int_equal(cn__ctl_parse_head(f.data, f.len, NULL, &out, &pay),
                   CN_EPROTO);
  /* Other payloads are not calls. */
  {
    static const char *not_calls[] = {"{'$gen_cast', x}",
                                      "{'$gen_call', x, y}",
                                      "{'$gen_call', {1, t}, y}",
                                      "{x, {~t, t}, y}",
                                      "[1]",
                                      "{'$gen_call', {~t, t}}"};
    for (size_t i = 0; i < COUNT(not_calls); i++) {
      cn_buf_reset(&d);
      assert_int_equal(cn_build(&d, not_calls[i], term_of('P')), 0);
      {
        char *copy = exact(d.data, d.len);
        assert_int_equal(cn__call_head(copy, d.len, &caller, &tag),
                         CN_ENOMATCH);
        free(copy);
      }
    }
  }
  cn_buf_free(&f);
  cn_buf_free(&d);
}

/* Cuts the frame d (131 'D' 0 ...) into fragments of at most size body
 * bytes each, as sequence id, appended to frags as 4-byte-length frames. */
static size_t fragment(cn_buf *frags, const cn_buf *d, size_t size,
                       uint64_t id) {
  size_t body = d->len - 3, n = (body + size - 1) / size, i;
  for (i = 0; i < n; i++) {
    char hdr[CN__FRAG_HDR_FIRST];
    size_t hl = i == 0 ? CN__FRAG_HDR_FIRST : CN__FRAG_HDR_NEXT;
    size_t part = body - i * size < size ? body - i * size : size;
    unsigned char len4[4];
    uint32_t fl = (uint32_t)(hl + part);
    cn__frag_header(hdr, i == 0, id, n - i);
    len4[0] = (unsigned char)(fl >> 24);
    len4[1] = (unsigned char)(fl >> 16);
    len4[2] = (unsigned char)(fl >> 8);
    len4[3] = (unsigned char)fl;
    assert_int_equal(cn_buf_append(frags, len4, 4), 0);
    assert_int_equal(cn_buf_append(frags, hdr, hl), 0);
    assert_int_equal(cn_buf_append(frags, d->data + 3 + i * size, part), 0);
  }
  return n;
}

/* The next frame of a fragment stream, or 0 bytes at its end. */
static size_t next_frame(const cn_buf *s, size_t *off, const char **p) {
  const unsigned char *u;
  size_t n;
  if (*off >= s->len)
    return 0;
  u = (const unsigned char *)s->data + *off;
  n = (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
  *p = s->data + *off + 4;
  *off += 4 + n;
  return n;
}

static int feed(cn__frags *f, const char *p, size_t n, cn_buf *done,
                cn_buf *head) {
  char *copy = exact(p, n);
  int rc = cn__frags_feed(f, copy, n, done, head);
  free(copy);
  return rc;
}

static void test_frags_reassemble(void **state) {
  cn_buf big = CN_BUF_INIT, f1 = CN_BUF_INIT, f2 = CN_BUF_INIT;
  cn_buf d1 = CN_BUF_INIT, d2 = CN_BUF_INIT, s1 = CN_BUF_INIT, s2 = CN_BUF_INIT,
         done = CN_BUF_INIT, head = CN_BUF_INIT;
  cn__frags fr;
  size_t o1 = 0, o2 = 0, n1, n2, got = 0;
  const char *p;
  cn__ctl out;
  (void)state;
  terms_init();

  /* Two messages, 300 KB and 70 KB, cut in 64 KiB and 1000-byte pieces,
   * their fragments interleaved. */
  {
    char *z = calloc(1, 300000);
    assert_int_equal(cn_build(&big, "{data, ~b}", z, (size_t)300000), 0);
    free(z);
  }
  ctl_frame(&f1, CN__DOP_SEND_SENDER, "PQ", 0);
  assert_int_equal(cn_buf_append(&f1, "\x83", 1), 0);
  assert_int_equal(cn_put_term(&f1, cn_buf_term(&big)), 0);
  d_frame(&d1, &f1);
  ctl_frame(&f2, CN__DOP_REG_SEND, "PUA", 'M');
  for (int i = 0; i < 70; i++)
    assert_int_equal(cn_buf_append(&f2, "", 0), 0);
  d_frame(&d2, &f2);
  n1 = fragment(&s1, &d1, CN__FRAG_SIZE, 7);
  n2 = fragment(&s2, &d2, 10, 8);
  assert_true(n1 == 5 && n2 > 5);

  cn__frags_init(&fr, 1 << 20, 4 << 20);
  for (;;) {
    size_t n;
    int rc;
    if ((n = next_frame(&s1, &o1, &p)) > 0) {
      rc = feed(&fr, p, n, &done, &head);
      if (rc == CN__FRAG_DONE) {
        assert_int_equal(done.len, d1.len);
        assert_memory_equal(done.data, d1.data, d1.len);
        got++;
      } else {
        assert_int_equal(rc, CN__FRAG_MORE);
      }
    }
    if ((n = next_frame(&s2, &o2, &p)) > 0) {
      rc = feed(&fr, p, n, &done, &head);
      if (rc == CN__FRAG_DONE) {
        assert_int_equal(done.len, d2.len);
        assert_memory_equal(done.data, d2.data, d2.len);
        assert_int_equal(cn__ctl_parse(done.data, done.len, NULL, &out), 0);
        assert_int_equal(out.op, CN__DOP_REG_SEND);
        got++;
      } else {
        assert_int_equal(rc, CN__FRAG_MORE);
      }
    }
    if (o1 >= s1.len && o2 >= s2.len)
      break;
  }
  assert_int_equal(got, 2);
  assert_int_equal(fr.n, 0);
  assert_int_equal(fr.bytes, 0);

  /* A single-fragment sequence is complete at once. */
  {
    cn_buf s3 = CN_BUF_INIT;
    size_t o3 = 0, n;
    assert_int_equal(fragment(&s3, &d2, 1 << 20, 9), 1);
    n = next_frame(&s3, &o3, &p);
    assert_int_equal(feed(&fr, p, n, &done, &head), CN__FRAG_DONE);
    assert_memory_equal(done.data, d2.data, d2.len);
    cn_buf_free(&s3);
  }
  cn__frags_free(&fr);
  cn_buf_free(&big);
  cn_buf_free(&f1);
  cn_buf_free(&f2);
  cn_buf_free(&d1);
  cn_buf_free(&d2);
  cn_buf_free(&s1);
  cn_buf_free(&s2);
  cn_buf_free(&done);
  cn_buf_free(&head);
}

static void test_frags_errors_and_limits(void **state) {
  cn_buf f = CN_BUF_INIT, d = CN_BUF_INIT, s = CN_BUF_INIT, done = CN_BUF_INIT,
         head = CN_BUF_INIT;
  cn__frags fr;
  size_t off, n, i;
  const char *p;
  char hdr[CN__FRAG_HDR_FIRST];
  cn__ctl out;
  size_t pay;
  cn_term caller, tag;
  (void)state;
  terms_init();

  /* A call with a 200 KB request, in 64 KiB fragments. */
  {
    cn_buf req = CN_BUF_INIT;
    cn_pid pp;
    cn_ref rr;
    char *z = calloc(1, 200000);
    assert_int_equal(cn_get_pid(term_of('P'), &pp), 0);
    assert_int_equal(cn_get_ref(term_of('R'), &rr), 0);
    assert_int_equal(cn_build(&req, "{'$gen_call', {~p, [alias | ~r]}, ~b}",
                              &pp, &rr, z, (size_t)200000),
                     0);
    free(z);
    ctl_frame(&f, CN__DOP_REG_SEND, "PUA", 0);
    assert_int_equal(cn_buf_append(&f, "\x83", 1), 0);
    assert_int_equal(cn_put_term(&f, cn_buf_term(&req)), 0);
    cn_buf_free(&req);
  }
  d_frame(&d, &f);
  assert_int_equal(fragment(&s, &d, CN__FRAG_SIZE, 1), 4);

  /* Over max_body: refused once, at the fragment that passes it, with
   * the head of the call; the rest is dropped; nothing is left. */
  cn__frags_init(&fr, 150000, 1 << 30);
  for (off = 0, i = 0; (n = next_frame(&s, &off, &p)) > 0; i++) {
    int rc = feed(&fr, p, n, &done, &head);
    assert_int_equal(rc, i == 2 ? CN__FRAG_REFUSED : CN__FRAG_MORE);
    if (rc == CN__FRAG_REFUSED) {
      assert_true(head.len <= CN__FRAG_HEAD);
      assert_int_equal(
          cn__ctl_parse_head(head.data, head.len, NULL, &out, &pay), 0);
      assert_int_equal(out.op, CN__DOP_REG_SEND);
      assert_int_equal(
          cn__call_head(head.data + pay, head.len - pay, &caller, &tag), 0);
    }
  }
  assert_int_equal(fr.n, 0);
  assert_int_equal(fr.bytes, 0);
  assert_int_equal(fr.refused, 1);
  cn__frags_free(&fr);

  /* Over the budget: the same. */
  cn__frags_init(&fr, 1 << 30, 100000);
  for (off = 0, i = 0; (n = next_frame(&s, &off, &p)) > 0; i++) {
    int rc = feed(&fr, p, n, &done, &head);
    assert_int_equal(rc, i == 1 ? CN__FRAG_REFUSED : CN__FRAG_MORE);
  }
  assert_int_equal(fr.n, 0);
  cn__frags_free(&fr);

  /* Too many sequences at once: the newcomer is refused. */
  cn__frags_init(&fr, 1 << 30, (size_t)1 << 40);
  off = 0;
  n = next_frame(&s, &off, &p);
  for (i = 0; i < CN__FRAG_MAX_SEQS + 1; i++) {
    char *copy = exact(p, n);
    cn__frag_header(copy, 1, 1000 + i, 4);
    assert_int_equal(cn__frags_feed(&fr, copy, n, &done, &head),
                     i < CN__FRAG_MAX_SEQS ? CN__FRAG_MORE : CN__FRAG_REFUSED);
    free(copy);
  }
  assert_int_equal(fr.n, CN__FRAG_MAX_SEQS + 1); /* the refused one waits
                                                  * for its last fragment */
  cn__frags_free(&fr);
  assert_int_equal(fr.n, 0);

  /* Protocol errors. */
  cn__frags_init(&fr, 1 << 30, 1 << 30);
  off = 0;
  n = next_frame(&s, &off, &p);
  {
    char *copy = exact(p, n);
    /* A FragId of 0; atom cache references; too short. */
    cn__frag_header(copy, 1, 5, 0);
    assert_int_equal(cn__frags_feed(&fr, copy, n, &done, &head), CN_EPROTO);
    cn__frag_header(copy, 1, 5, 2);
    copy[18] = 1;
    assert_int_equal(cn__frags_feed(&fr, copy, n, &done, &head), CN_EPROTO);
    assert_int_equal(cn__frags_feed(&fr, copy, 10, &done, &head), CN_EPROTO);
    copy[18] = 0;
    assert_int_equal(cn__frags_feed(&fr, copy, n, &done, &head), CN__FRAG_MORE);
    /* The same sequence started again. */
    assert_int_equal(cn__frags_feed(&fr, copy, n, &done, &head), CN_EPROTO);
    free(copy);
  }
  /* Continuations: of an unknown sequence, out of order, then right. */
  cn__frag_header(hdr, 0, 6, 1);
  assert_int_equal(feed(&fr, hdr, CN__FRAG_HDR_NEXT, &done, &head), CN_EPROTO);
  cn__frag_header(hdr, 0, 5, 2);
  assert_int_equal(feed(&fr, hdr, CN__FRAG_HDR_NEXT, &done, &head), CN_EPROTO);
  cn__frag_header(hdr, 0, 5, 1);
  assert_int_equal(feed(&fr, hdr, CN__FRAG_HDR_NEXT, &done, &head),
                   CN__FRAG_DONE);
  /* Not fragments at all. */
  assert_int_equal(feed(&fr, "p\x83", 2, &done, &head), CN_EPROTO);
  assert_int_equal(feed(&fr, "\x83", 1, &done, &head), CN_EPROTO);
  cn__frags_free(&fr);

  /* Random mutations of a valid stream never crash, and leave nothing
   * behind once freed. */
  {
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 300; round++) {
      cn__frags_init(&fr, 150000, 300000);
      for (off = 0; (n = next_frame(&s, &off, &p)) > 0;) {
        char *copy = exact(p, n);
        int k = rnd(&seed) % 4;
        for (int j = 0; j < k; j++)
          copy[rnd(&seed) % (n < 32 ? n : 32)] ^= (char)(1 + rnd(&seed) % 255);
        (void)cn__frags_feed(&fr, copy, rnd(&seed) % 8 == 0 ? n / 2 : n, &done,
                             &head);
        free(copy);
      }
      cn__frags_free(&fr);
      assert_int_equal(fr.bytes, 0);
    }
  }
  cn_buf_free(&f);
  cn_buf_free(&d);
  cn_buf_free(&s);
  cn_buf_free(&done);
  cn_buf_free(&head);
}

static void test_ctl_truncation_and_mutation(void **state) {
  uint64_t seed = 5;
  (void)state;
  terms_init();

  for (size_t i = 0; i < COUNT(ctl_cases); i++) {
    const struct ctl_case *c = &ctl_cases[i];
    cn_buf f = CN_BUF_INIT, m = CN_BUF_INIT;
    cn__ctl out;

    ctl_frame(&f, c->op, c->elems, c->payload);
    for (size_t p = 0; p < f.len; p++) {
      cn_buf t = f;
      t.len = p;
      int rc = parse(&t, NULL, &out);
      assert_true(rc == CN_EPROTO || rc == CN_EBADTERM);
    }
    for (int r = 0; r < 2000; r++) {
      m.len = 0;
      assert_int_equal(cn_buf_append(&m, f.data, f.len), 0);
      int hits = 1 + (int)(rnd(&seed) % 3);
      for (int k = 0; k < hits; k++)
        m.data[rnd(&seed) % m.len] = (char)rnd(&seed);
      if (rnd(&seed) % 3 == 0)
        m.len = rnd(&seed) % (m.len + 1);
      int rc = parse(&m, NULL, &out);
      assert_true(allowed_ctl_rc(rc));
      if (rc == 0)
        assert_true(out.op >= CN__DOP_LINK && out.op <= CN__DOP_UNLINK_ID_ACK);
    }
    cn_buf_free(&f);
    cn_buf_free(&m);
  }
}

static int teardown_terms(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT(terms); i++)
    cn_buf_free(&terms[i]);
  free(last_copy);
  last_copy = NULL;
  return 0;
}

/* ---- Coalescing (dist/coalesce.h) ------------------------------------- */

/* Runs n windows against a load whose rate (frames/s) at each hold level
 * is rate[level], each window's rate off by up to +-noise (a fraction),
 * pseudo-randomly, as one window's rate is on this VM; returns how many
 * windows held from lo to hi us. */
static unsigned co_run_noisy(cn__coalesce *k, const double *rate, unsigned n,
                             double noise, unsigned lo, unsigned hi) {
  static const unsigned us[] = {0, 50, 100, 200, 400};
  uint32_t x = 12345;
  unsigned i, lvl, in = 0;
  for (i = 0; i < n; i++) {
    double f;
    for (lvl = 0; us[lvl] != cn__coalesce_hold_us(k); lvl++)
      ;
    if (us[lvl] >= lo && us[lvl] <= hi)
      in++;
    x = x * 1103515245u + 12345u;
    f = 1.0 + noise * (2.0 * (double)(x >> 16 & 0x7fff) / 32767.0 - 1.0);
    cn__coalesce_window(k, 10000, rate[lvl] * f);
  }
  return in;
}

/* As co_run_noisy without noise; returns how many windows held something
 * else than want (us). */
static unsigned co_run(cn__coalesce *k, const double *rate, unsigned n,
                       unsigned want) {
  return n - co_run_noisy(k, rate, n, 0, want, want);
}

/* The hold kept (not the one on trial), in us. */
static unsigned co_kept(const cn__coalesce *k) {
  static const unsigned us[] = {0, 50, 100, 200, 400};
  return us[k->level];
}

/* 16 callers on this VM: the rate (frames/s) per hold peaks at 200 us. */
static const double co_peak[] = {21000, 25500, 29000, 31500, 28000};

static void test_coalesce_climbs_to_the_best_hold(void **state) {
  cn__coalesce k;
  unsigned off;
  (void)state;
  cn__coalesce_init(&k, 400, 0);
  assert_int_equal(cn__coalesce_hold_us(&k), 0);
  (void)co_run(&k, co_peak, 12, 200);
  assert_int_equal(co_kept(&k), 200);
  /* Settled: it still tries 100 and 400 now and then, ever more rarely. */
  off = co_run(&k, co_peak, 400, 200);
  assert_true(off > 0);
  assert_true(off < 400 / 8);
}

/* The same, where 50 and 100 us gain about the same (each wake-up
 * gathers as many requests) and 200 us much more. */
static const double co_plateau[] = {21000, 25500, 26000, 31500, 28000};

static void test_coalesce_crosses_a_flat_stretch(void **state) {
  /* A try of 100 that did no worse leads to a try of 200, not back to
   * 50; a try that did worse turns back, as before. */
  const double *curves[] = {co_plateau, co_peak};
  cn__coalesce k;
  (void)state;
  for (size_t i = 0; i < 2; i++) {
    cn__coalesce_init(&k, 400, 0);
    (void)co_run(&k, curves[i], 12, 200);
    assert_int_equal(co_kept(&k), 200);
  }
}

static void test_coalesce_noisy_rates(void **state) {
  /* Each window's rate off by up to 10%: once climbed, most windows
   * still hold at or next to the peak. */
  static const struct {
    const double *rate;
    unsigned lo, hi, min; /* of 400 windows */
  } c[] = {{co_peak, 100, 200, 280}, {co_plateau, 200, 200, 200}};
  cn__coalesce k;
  (void)state;
  for (size_t i = 0; i < 2; i++) {
    cn__coalesce_init(&k, 400, 0);
    (void)co_run_noisy(&k, c[i].rate, 40, 0.10, 0, 400);
    assert_true(co_run_noisy(&k, c[i].rate, 400, 0.10, c[i].lo, c[i].hi) >
                c[i].min);
  }
}

/* What a frame is, before anything parses it; and what it counts for in a
 * coalescing turn: a message cut in fragments counts once, as one caller's
 * large request is one request (dist/conn.c). */
static void test_frame_kinds(void **state) {
  static const char whole_hdr[] = {(char)131, CN__DIST_HEADER, 0};
  static const char pass[] = {'p', (char)131, 104, 0};
  char first[CN__FRAG_HDR_FIRST], next[CN__FRAG_HDR_FIRST];
  unsigned i, turn = 0;
  (void)state;

  assert_int_equal(cn__frame_kind_of(whole_hdr, sizeof whole_hdr, true),
                   CN__FRAME_WHOLE);
  assert_int_equal(cn__frame_kind_of(pass, sizeof pass, false),
                   CN__FRAME_WHOLE);
  /* The other framing than the one the flags agreed on, or nothing. */
  assert_int_equal(cn__frame_kind_of(pass, sizeof pass, true), CN__FRAME_BAD);
  assert_int_equal(cn__frame_kind_of(whole_hdr, sizeof whole_hdr, false),
                   CN__FRAME_BAD);
  assert_int_equal(cn__frame_kind_of(pass, 0, false), CN__FRAME_BAD);
  /* A lone version byte is a frame for the parser to refuse. */
  assert_int_equal(cn__frame_kind_of(whole_hdr, 1, true), CN__FRAME_WHOLE);

  /* The fragments our own sender writes: the first, then three more. */
  cn__frag_header(first, 1, 7, 4);
  assert_int_equal(cn__frame_kind_of(first, sizeof first, true),
                   CN__FRAME_FRAG_HEAD);
  assert_int_equal(cn__frame_kind_of(first, sizeof first, false),
                   CN__FRAME_BAD);
  turn += cn__frame_kind_of(first, sizeof first, true) != CN__FRAME_FRAG_CONT;
  for (i = 3; i >= 1; i--) {
    cn__frag_header(next, 0, 7, i);
    assert_int_equal(cn__frame_kind_of(next, sizeof next, true),
                     CN__FRAME_FRAG_CONT);
    turn += cn__frame_kind_of(next, sizeof next, true) != CN__FRAME_FRAG_CONT;
  }
  assert_int_equal(turn, 1);
}

static void test_coalesce_one_caller_stays_at_zero(void **state) {
  /* A single caller only loses by a hold. */
  static const double rate[] = {12000, 9800, 8000, 6000, 4000};
  cn__coalesce k;
  unsigned off;
  (void)state;
  cn__coalesce_init(&k, 400, 0);
  off = co_run(&k, rate, 400, 0);
  assert_int_equal(co_kept(&k), 0);
  assert_true(off < 400 / 12); /* tries of 50 us, backed off to 1 in 18 */
}

static void test_coalesce_flat_rate_prefers_shorter(void **state) {
  /* A rate that does not care (the callers are not waiting on the CPU):
   * no longer hold is kept, and a shorter one is. */
  static const double flat[] = {20000, 20000, 20000, 20000, 20000};
  cn__coalesce k;
  (void)state;
  cn__coalesce_init(&k, 400, 0);
  (void)co_run(&k, co_peak, 12, 200);
  assert_int_equal(co_kept(&k), 200);
  (void)co_run(&k, flat, 200, 0);
  assert_int_equal(co_kept(&k), 0);
}

static void test_coalesce_light_load_and_limits(void **state) {
  cn__coalesce k;
  unsigned i;
  (void)state;
  /* Under light load nothing is held, at once. */
  cn__coalesce_init(&k, 400, 0);
  (void)co_run(&k, co_peak, 12, 200);
  assert_int_equal(co_kept(&k), 200);
  cn__coalesce_window(&k, CN__CO_LIGHT_FRAMES - 1, 100);
  assert_int_equal(cn__coalesce_hold_us(&k), 0);
  /* max_us caps the climb (here at 100), and 0 never holds. */
  cn__coalesce_init(&k, 150, 0);
  (void)co_run(&k, co_peak, 40, 100);
  assert_int_equal(co_kept(&k), 100);
  assert_true(cn__coalesce_hold_us(&k) <= 100);
  cn__coalesce_init(&k, 0, 0);
  for (i = 0; i < 50; i++) {
    cn__coalesce_window(&k, 10000, co_peak[4]);
    assert_int_equal(cn__coalesce_hold_us(&k), 0);
  }
  /* Turns close a window only once it has run CN__CO_WINDOW_NS. */
  cn__coalesce_init(&k, 400, 1000);
  cn__coalesce_turn(&k, 1000 + CN__CO_WINDOW_NS - 1, 5000, true);
  assert_int_equal(k.win_frames, 5000);
  cn__coalesce_turn(&k, 1000 + CN__CO_WINDOW_NS, 5000, true);
  assert_int_equal(k.win_frames, 0);
  assert_int_equal(cn__coalesce_hold_us(&k), 50); /* the first try */
}

/* Phases of load with idle stretches between them, as make bench runs
 * them: a window that spans an idle stretch is light load, so its rate
 * (mostly the stretch) is never averaged into the kept hold's. */
static void test_coalesce_idle_stretch(void **state) {
  cn__coalesce k;
  uint64_t now = 1000, t;
  unsigned i;
  (void)state;
  cn__coalesce_init(&k, 400, now);
  /* A busy phase, every turn 1 ms apart. */
  for (i = 0; i < 120; i++) {
    now += 1000000;
    cn__coalesce_turn(&k, now, 100, true);
  }
  assert_true(k.base > 0);
  /* 60 ms of nothing, then a turn of 5,000 frames (more than light load
   * allows in a window): light load all the same, from the start. */
  now += 60000000;
  cn__coalesce_turn(&k, now, 5000, true);
  assert_int_equal(k.level, 0);
  assert_int_equal(cn__coalesce_hold_us(&k), 0);
  assert_true(k.base == 0);
  assert_int_equal(k.win_frames, 5000); /* the next window's first turn */
  assert_int_equal(k.win_start, now);
  /* Busy again: the window closes at its length, on the new phase's
   * rate alone. */
  t = now;
  for (i = 0; i < 50; i++) {
    now += 1000000;
    cn__coalesce_turn(&k, now, 100, true);
  }
  assert_int_equal(k.win_start, t + CN__CO_WINDOW_NS);
  assert_true(k.base > 0.9 * (5000.0 + 49 * 100) * 1e9 / CN__CO_WINDOW_NS);
  /* Turns just under a window apart are not idle. */
  cn__coalesce_init(&k, 400, now);
  for (i = 0; i < 3; i++) {
    now += CN__CO_WINDOW_NS - 1;
    cn__coalesce_turn(&k, now, 5000, true);
  }
  assert_true(k.base > 0);
}

/* Runs one window of turns, each of which handled frames, and wrote
 * when i % every == 0 (never when every is 0); returns the read hold
 * that follows. */
static unsigned co_turns(cn__coalesce *k, uint64_t *now, unsigned turns,
                         unsigned frames, unsigned every) {
  uint64_t start = *now;
  unsigned i;
  for (i = 0; i < turns; i++) {
    *now = start + CN__CO_WINDOW_NS * (i + 1) / turns; /* the last closes */
    cn__coalesce_turn(k, *now, frames, every != 0 && i % every == 0);
  }
  return cn__coalesce_read_hold_us(k);
}

static void test_coalesce_one_way_streams(void **state) {
  cn__coalesce k;
  uint64_t now = 0;
  (void)state;
  cn__coalesce_init(&k, 400, now);
  assert_int_equal(cn__coalesce_read_hold_us(&k), 0); /* none yet */
  /* Casts: turns that read and write nothing hold the longest. */
  assert_int_equal(co_turns(&k, &now, 100, 20, 0), 400);
  /* One turn in 8 writing (a tick, a call now and then) is still
   * one-way; one in 2 (requests answered later) is not. */
  assert_int_equal(co_turns(&k, &now, 96, 20, 8), 400);
  assert_int_equal(co_turns(&k, &now, 100, 20, 2), 0);
  /* Turns that answer leave it to the controller. */
  assert_int_equal(co_turns(&k, &now, 100, 20, 1), 0);
  /* Light load holds nothing. */
  assert_int_equal(co_turns(&k, &now, 100, 20, 0), 400);
  assert_int_equal(co_turns(&k, &now, 10, CN__CO_LIGHT_FRAMES / 20, 0), 0);
  /* The cap bounds it, and 0 never holds. */
  cn__coalesce_init(&k, 150, now);
  assert_int_equal(co_turns(&k, &now, 100, 20, 0), 100);
  cn__coalesce_init(&k, 0, now);
  assert_int_equal(co_turns(&k, &now, 100, 20, 0), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flags_match_dist_hrl),
      cmocka_unit_test(test_flags_otp26_28),
      cmocka_unit_test(test_digest_matches_erl),
      cmocka_unit_test(test_handshake_ok),
      cmocka_unit_test(test_handshake_leaves_frames),
      cmocka_unit_test(test_handshake_wrong_cookie),
      cmocka_unit_test(test_handshake_bad_ack),
      cmocka_unit_test(test_handshake_arbitration),
      cmocka_unit_test(test_handshake_alive_false),
      cmocka_unit_test(test_handshake_mandatory_flags),
      cmocka_unit_test(test_handshake_acceptor_refusals),
      cmocka_unit_test(test_handshake_initiator_refusals),
      cmocka_unit_test(test_handshake_api),
      cmocka_unit_test(test_handshake_truncation),
      cmocka_unit_test(test_handshake_mutation),
      cmocka_unit_test(test_handshake_garbage),
      cmocka_unit_test(test_epmd_alive2_req),
      cmocka_unit_test(test_epmd_alive2_resp),
      cmocka_unit_test(test_epmd_port2),
      cmocka_unit_test(test_epmd_spawn_daemon),
      cmocka_unit_test(test_ctl_every_op),
      cmocka_unit_test(test_ctl_arity_and_types),
      cmocka_unit_test(test_ctl_unlink_id),
      cmocka_unit_test(test_ctl_altact),
      cmocka_unit_test(test_ctl_spawn_request),
      cmocka_unit_test(test_ctl_refused_ops),
      cmocka_unit_test(test_ctl_bad_frames),
      cmocka_unit_test(test_ctl_bad_payload),
      cmocka_unit_test(test_ctl_deep_payload),
      cmocka_unit_test(test_ctl_truncation_and_mutation),
      cmocka_unit_test(test_ctl_dist_header),
      cmocka_unit_test(test_ctl_head_and_call),
      cmocka_unit_test(test_frags_reassemble),
      cmocka_unit_test(test_frags_errors_and_limits),
      cmocka_unit_test(test_coalesce_climbs_to_the_best_hold),
      cmocka_unit_test(test_coalesce_crosses_a_flat_stretch),
      cmocka_unit_test(test_coalesce_noisy_rates),
      cmocka_unit_test(test_frame_kinds),
      cmocka_unit_test(test_coalesce_one_caller_stays_at_zero),
      cmocka_unit_test(test_coalesce_idle_stretch),
      cmocka_unit_test(test_coalesce_flat_rate_prefers_shorter),
      cmocka_unit_test(test_coalesce_light_load_and_limits),
      cmocka_unit_test(test_coalesce_one_way_streams),
  };
  return run_group("dist-proto", tests, NULL, teardown_terms);
}
