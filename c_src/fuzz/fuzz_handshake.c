/* fuzz_handshake: the version 6 handshake state machine (cn__hs_*, in
 * dist/handshake.c) against a hostile peer, on both sides.
 *
 * Input layout:
 *   byte 0     bit 0: our side (1: we dialled, the initiator; 0: we
 *              accepted); bits 1-3: what the acceptor's arbitration
 *              answers (0-4 are the cn__hs_status values; 5-7 are out
 *              of range, which must count as not_allowed); bits 4-5:
 *              how many messages of a valid transcript the peer sends
 *              first (0-3), so that mutations reach the later states
 *              without having to forge digests;
 *   bytes 1-4  the seed that chooses the sizes of the pieces the bytes
 *              arrive in;
 *   the rest   the peer's bytes (after the transcript prefix, if any).
 *
 * The seeds are real transcripts: bytes a real OTP 25 node sent to a fake
 * node that used the challenge and cookie below (see seeds.escript).
 *
 * The peer's bytes are fed three ways: all at once, one byte at a time,
 * and in random pieces, keeping unconsumed bytes for the next call as a
 * connection does.  All three must end the same way: the same result,
 * bytes consumed, bytes sent, arbitration calls and final state.  And:
 * a result is final once it is not 0; a failure says why (h->error); a
 * completed handshake knows a plausible peer name, the peer's flags
 * include OTP 25's mandatory ones, and an initiator's peer is the node
 * it dialled.
 */
#include "dist/proto.h"
#include "fuzz/fuzz.h"

#define OUR_NAME "fake@127.0.0.1"  /* the node under test */
#define PEER_NAME "real@127.0.0.1" /* the peer (the real node) */
#define COOKIE "cookie"            /* both sides' cookie */
#define OUR_CHALLENGE 0x12345678u  /* fixed, so digests stay valid */
#define PEER_CHALLENGE 0x0badcafeu /* the transcript partner's */
#define OUR_FLAGS (CN__DFLAGS_OURS | CN__DFLAG_PUBLISHED)
#define OUR_CREATION 0x11223344u
#define PEER_CREATION 0x55667788u

#define HDR 5
/* Longer than any handshake message we accept whole (a challenge with a
 * 255-byte name is 2 + 19 + 255). */
#define BYTES_MAX 320

/* What the arbitration callback saw, for comparing runs. */
typedef struct arb {
  cn__hs_status answer;
  int calls;
  char name[CN_MAX_NODE_NAME + 1];
  uint32_t creation;
} arb;

static cn__hs_status arbitrate(void *arg, const char *name, size_t len,
                               uint32_t creation) {
  arb *a = arg;
  FZ_CHECK(len >= 3 && len <= CN_MAX_NODE_NAME);
  a->calls++;
  memcpy(a->name, name, len);
  a->name[len] = '\0';
  a->creation = creation;
  return a->answer;
}

/* A fresh machine on our side. */
static void setup(cn__hs *h, int initiator, arb *a, cn_buf *out) {
  FZ_OK(cn__hs_init(h, initiator, OUR_NAME, OUR_CREATION, OUR_FLAGS, COOKIE,
                    initiator ? PEER_NAME : NULL, arbitrate, a));
  h->my_challenge = OUR_CHALLENGE;
  if (initiator)
    FZ_OK(cn__hs_begin(h, out));
}

/* The first messages a valid peer sends (2-byte prefixes included), up
 * to max of them, appended to b.  The peer is a second machine, run
 * against one of ours until the handshake settles. */
static void transcript(int initiator, cn__hs_status answer, int max,
                       cn_buf *b) {
  cn__hs ours, peer;
  cn_buf to_peer = CN_BUF_INIT, to_ours = CN_BUF_INIT;
  arb a = {answer, 0, "", 0};
  size_t used;
  int msgs = 0, round, rc_ours = 0, rc_peer = 0;

  setup(&ours, initiator, &a, &to_peer);
  FZ_OK(cn__hs_init(&peer, !initiator, PEER_NAME, PEER_CREATION, OUR_FLAGS,
                    COOKIE, initiator ? NULL : OUR_NAME, arbitrate, &a));
  peer.my_challenge = PEER_CHALLENGE;
  if (!initiator)
    FZ_OK(cn__hs_begin(&peer, &to_ours));
  for (round = 0; round < 8 && msgs < max; round++) {
    if (to_peer.len > 0 && rc_peer == 0) {
      rc_peer = cn__hs_feed(&peer, to_peer.data, to_peer.len, &used, &to_ours);
      FZ_CHECK(used <= to_peer.len);
      to_peer.len = 0;
    }
    /* Each message the peer produced, one by one. */
    while (to_ours.len >= 2 && msgs < max) {
      size_t n = 2 + (((unsigned char)to_ours.data[0] << 8) |
                      (unsigned char)to_ours.data[1]);
      FZ_CHECK(n <= to_ours.len);
      FZ_OK(cn_buf_append(b, to_ours.data, n));
      msgs++;
      if (rc_ours == 0) {
        rc_ours = cn__hs_feed(&ours, to_ours.data, n, &used, &to_peer);
        FZ_CHECK(used == n);
      }
      memmove(to_ours.data, to_ours.data + n, to_ours.len - n);
      to_ours.len -= n;
    }
    if (to_peer.len == 0)
      break;
  }
  cn_buf_free(&to_peer);
  cn_buf_free(&to_ours);
}

/* Everything one way of feeding produced. */
typedef struct outcome {
  int rc;
  size_t consumed;
  cn_buf out;
  arb a;
  cn__hs h;
} outcome;

enum { WHOLE, BYTES, RANDOM };

/* Feeds bytes[0 .. n) to a fresh machine in pieces. */
static void run(int initiator, cn__hs_status answer, const char *bytes,
                size_t n, int split, uint64_t seed, outcome *o) {
  cn_buf in = CN_BUF_INIT;
  size_t pos = 0, used;
  int last = 0, feeds = 0;

  memset(o, 0, sizeof *o);
  o->a.answer = answer;
  cn_buf_init(&o->out);
  setup(&o->h, initiator, &o->a, &o->out);
  do {
    size_t left = n - pos, k, out_before = o->out.len;
    char *c;
    if (split == WHOLE)
      k = left;
    else if (split == BYTES)
      /* One byte at a time through the longest valid message; beyond,
       * pieces of 64 keep the copying below linear. */
      k = pos < BYTES_MAX ? 1 : 64;
    else
      k = left ? 1 + fz_rand(&seed) % (fz_rand(&seed) % 4 ? left : 8) : 0;
    if (k > left)
      k = left;
    if (k > 0)
      FZ_OK(cn_buf_append(&in, bytes + pos, k));
    pos += k;
    /* An exact-size copy, so that a read past the end is caught. */
    c = fz_exact(in.data, in.len);
    used = (size_t)-1;
    o->rc = cn__hs_feed(&o->h, c, in.len, &used, &o->out);
    free(c);
    feeds++;
    FZ_CHECK(used <= in.len);
    FZ_CHECK(o->rc == 0 || o->rc == 1 || o->rc == CN_EPROTO ||
             o->rc == CN_EAUTH || o->rc == CN_ENOTSUP || o->rc == CN_EEXIST);
    /* A result that is not 0 is final: later feeds give it again and
     * consume and send nothing. */
    if (last != 0) {
      FZ_CHECK(o->rc == last && used == 0 && o->out.len == out_before);
    }
    last = o->rc;
    if (o->rc < 0)
      FZ_CHECK(o->h.error != NULL);
    else
      FZ_CHECK(o->h.error == NULL);
    o->consumed += used;
    if (used > 0) {
      memmove(in.data, in.data + used, in.len - used);
      in.len -= used;
    }
  } while (pos < n);
  FZ_CHECK(o->consumed + in.len == n);
  FZ_CHECK(feeds >= 1);
  cn_buf_free(&in);
}

/* The state a completed handshake leaves. */
static void check_done(const outcome *o, int initiator) {
  const cn__hs *h = &o->h;
  const char *at;

  FZ_CHECK(h->peer_name_len >= 3 && h->peer_name_len <= CN_MAX_NODE_NAME);
  FZ_CHECK(strlen(h->peer_name) == h->peer_name_len);
  at = strchr(h->peer_name, '@');
  FZ_CHECK(at != NULL && at != h->peer_name && at[1] != '\0' &&
           strchr(at + 1, '@') == NULL);
  FZ_CHECK((h->peer_flags & CN__DFLAGS_MANDATORY_25) ==
           CN__DFLAGS_MANDATORY_25);
  if (initiator) {
    FZ_CHECK(strcmp(h->peer_name, PEER_NAME) == 0);
    FZ_CHECK(o->a.calls == 0 && !h->replaces);
  } else {
    /* Arbitration ran once, on the name the peer sent. */
    FZ_CHECK(o->a.calls == 1 && strcmp(o->a.name, h->peer_name) == 0);
    FZ_CHECK(o->a.creation == h->peer_creation);
    FZ_CHECK(!(h->peer_flags & CN__DFLAG_NAME_ME));
    FZ_CHECK(h->replaces == (o->a.answer == CN__HS_ST_ALIVE));
    FZ_CHECK(o->a.answer == CN__HS_ST_OK || o->a.answer == CN__HS_ST_OK_SIMUL ||
             o->a.answer == CN__HS_ST_ALIVE);
  }
}

static void same_outcome(const outcome *x, const outcome *y) {
  FZ_CHECK(x->rc == y->rc && x->consumed == y->consumed);
  FZ_CHECK(
      x->out.len == y->out.len &&
      (x->out.len == 0 || memcmp(x->out.data, y->out.data, x->out.len) == 0));
  FZ_CHECK(x->a.calls == y->a.calls && x->a.creation == y->a.creation &&
           strcmp(x->a.name, y->a.name) == 0);
  FZ_CHECK(x->h.peer_name_len == y->h.peer_name_len &&
           memcmp(x->h.peer_name, y->h.peer_name, x->h.peer_name_len) == 0);
  FZ_CHECK(x->h.peer_flags == y->h.peer_flags &&
           x->h.peer_creation == y->h.peer_creation &&
           x->h.peer_challenge == y->h.peer_challenge &&
           x->h.replaces == y->h.replaces && x->h.state == y->h.state);
  FZ_CHECK((x->h.error == NULL) == (y->h.error == NULL));
  if (x->h.error != NULL)
    FZ_CHECK(strcmp(x->h.error, y->h.error) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned char hdr[HDR] = {0};
  int initiator, prefix;
  cn__hs_status answer;
  uint64_t seed;
  cn_buf bytes = CN_BUF_INIT;
  outcome o[3];
  int i;

  memcpy(hdr, data, size < HDR ? size : HDR);
  initiator = hdr[0] & 1;
  answer = (cn__hs_status)((hdr[0] >> 1) & 7);
  prefix = (hdr[0] >> 4) & 3;
  seed = ((uint64_t)hdr[1] << 24 | (uint64_t)hdr[2] << 16 |
          (uint64_t)hdr[3] << 8 | hdr[4]) *
             0x9e3779b97f4a7c15ULL +
         1;

  if (prefix > 0)
    transcript(initiator, answer, prefix, &bytes);
  if (size > HDR)
    FZ_OK(cn_buf_append(&bytes, data + HDR, size - HDR));

  run(initiator, answer, bytes.data, bytes.len, WHOLE, 0, &o[0]);
  run(initiator, answer, bytes.data, bytes.len, BYTES, 0, &o[1]);
  run(initiator, answer, bytes.data, bytes.len, RANDOM, seed, &o[2]);
  same_outcome(&o[0], &o[1]);
  same_outcome(&o[0], &o[2]);
  if (o[0].rc == 1)
    check_done(&o[0], initiator);
  for (i = 0; i < 3; i++)
    cn_buf_free(&o[i].out);
  cn_buf_free(&bytes);

  /* An initiator fed before it began is refused. */
  {
    cn__hs h;
    arb a = {CN__HS_ST_OK, 0, "", 0};
    size_t used = 1;
    cn_buf out = CN_BUF_INIT;
    FZ_OK(cn__hs_init(&h, 1, OUR_NAME, 1, OUR_FLAGS, COOKIE, PEER_NAME,
                      arbitrate, &a));
    FZ_CHECK(cn__hs_feed(&h, "", 0, &used, &out) == CN_EINVAL && used == 0);
    FZ_CHECK(out.len == 0);
  }
  return 0;
}
