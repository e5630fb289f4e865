/* The version 6 handshake (OTP 23+, DFLAG_HANDSHAKE_23) as a state
 * machine, both sides, after kernel's dist_util.erl:
 *
 *   initiator                          acceptor
 *   send_name 'N' flags creation name  ->
 *                                      <- status 's' ok | ok_simultaneous |
 *                                         nok | not_allowed | alive
 *   ('alive' only) 's' true | false    ->
 *                                      <- challenge 'N' flags challenge
 *                                         creation name
 *   challenge_reply 'r' challenge digest ->
 *                                      <- challenge_ack 'a' digest
 *
 * Every message has a 2-byte big-endian length prefix (4 bytes under TLS,
 * as inet_tls_dist runs the handshake with {packet, 4}).  When both sides
 * send 'N' there is no "complement" message ('c'): that one only follows
 * an old 'n' send_name, which OTP 25 no longer sends and we refuse.
 *
 * The input is the caller's buffer: it may hold any prefix of the peer's
 * byte stream, and only whole messages are consumed.  Every read is
 * checked against the message's length.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "dist/proto.h"
#include "term/term_internal.h"

enum {
  ST_I_BEGIN,     /* initiator: cn__hs_begin not yet called */
  ST_I_STATUS,    /* initiator: waiting for 's' */
  ST_I_CHALLENGE, /* initiator: waiting for the acceptor's 'N' */
  ST_I_ACK,       /* initiator: waiting for 'a' */
  ST_A_NAME,      /* acceptor: waiting for the initiator's 'N' */
  ST_A_ALIVE,     /* acceptor: said "alive"; waiting for 's' true/false */
  ST_A_REPLY,     /* acceptor: waiting for 'r' */
  ST_DONE
  /* A failed machine keeps its error code (negative) as its state. */
};

/* Fixed parts of the messages: tag, flags (8), [challenge (4),]
 * creation (4), name length (2). */
#define SEND_NAME_HDR 15
#define CHALLENGE_HDR 19
#define REPLY_LEN 21  /* 'r', challenge (4), digest (16) */
#define ACK_LEN 17    /* 'a', digest (16) */
#define STATUS_MAX 16 /* "sok_simultaneous" */

/* The longest message we ever send: a challenge with a 255-byte name. */
#define OUT_MAX (2 + CHALLENGE_HDR + CN_MAX_NODE_NAME)

/* Leaves the machine failed: later feeds return the same error. */
static int fail(cn__hs *h, int err, const char *why) {
  h->state = err;
  h->error = why;
  return err;
}

/* MD5 of the cookie followed by the challenge in decimal, as
 * dist_util:gen_digest/2.  Returns 0, or -1 when the digest cannot be
 * computed (an OpenSSL without MD5, such as one in FIPS mode). */
static int digest(const char *cookie, size_t cookie_len, uint32_t challenge,
                  unsigned char out[16]) {
  char text[256 + 10];
  unsigned int n = 0;
  int d;

  if (cookie_len > 255)
    return -1;
  memcpy(text, cookie, cookie_len);
  d = snprintf(text + cookie_len, sizeof text - cookie_len, "%lu",
               (unsigned long)challenge);
  if (d < 0)
    return -1;
  if (EVP_Digest(text, cookie_len + (size_t)d, out, &n, EVP_md5(), NULL) != 1)
    return -1;
  return n == 16 ? 0 : -1;
}

void cn__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
                   unsigned char out[16]) {
  /* The handshake calls digest() and fails on its error; for other
   * callers a zeroed digest is the documented failure value. */
  if (digest(cookie, cookie_len, challenge, out) != 0)
    memset(out, 0, 16);
}

int cn__hs_init(cn__hs *h, int initiator, const char *self_name,
                uint32_t self_creation, uint64_t self_flags, const char *cookie,
                const char *expect_name, cn__hs_arbitrate_fn arbitrate,
                void *arg) {
  size_t clen;

  if (h == NULL || self_name == NULL || cookie == NULL)
    return CN_EINVAL;
  if (strlen(self_name) == 0 || strlen(self_name) > CN_MAX_NODE_NAME)
    return CN_EINVAL;
  if (initiator && expect_name == NULL)
    return CN_EINVAL;
  clen = strlen(cookie);
  if (clen >= sizeof h->cookie)
    return CN_EINVAL;
  memset(h, 0, sizeof *h);
  h->initiator = initiator != 0;
  h->state = h->initiator ? ST_I_BEGIN : ST_A_NAME;
  h->self_name = self_name;
  h->self_creation = self_creation;
  h->self_flags = self_flags;
  memcpy(h->cookie, cookie, clen + 1);
  h->cookie_len = clen;
  h->expect_name = expect_name;
  h->arbitrate = arbitrate;
  h->arbitrate_arg = arg;
  if (RAND_bytes((unsigned char *)&h->my_challenge,
                 (int)sizeof h->my_challenge) != 1)
    return CN_ESYSTEM;
  return 0;
}

/* Appends one message built in msg with a 2-byte prefix, with the
 * 4-byte one instead under TLS (len4).  Returns 0 or CN_ENOMEM. */
static int append_msg(const cn__hs *h, cn_buf *out, const char *msg, size_t n) {
  static const char zero[2] = {0, 0};
  if (h->len4 && cn_buf_append(out, zero, 2) != 0)
    return CN_ENOMEM;
  return cn_buf_append(out, msg, n);
}

/* Appends one message (prefix included) that was built in msg. */
static int emit(cn__hs *h, cn_buf *out, const char *msg, size_t n) {
  if (append_msg(h, out, msg, n) != 0)
    return fail(h, CN_ENOMEM, "out of memory for a handshake message");
  return 0;
}

static int emit_status(cn__hs *h, cn_buf *out, const char *text) {
  char msg[2 + STATUS_MAX];
  size_t n = strlen(text);

  cn__put16(msg, (uint32_t)(1 + n));
  msg[2] = 's';
  memcpy(msg + 3, text, n);
  return emit(h, out, msg, 3 + n);
}

int cn__hs_begin(cn__hs *h, cn_buf *out) {
  char msg[OUT_MAX];
  size_t n = strlen(h->self_name);

  if (!h->initiator || h->state != ST_I_BEGIN)
    return CN_EINVAL;
  cn__put16(msg, (uint32_t)(SEND_NAME_HDR + n));
  msg[2] = 'N';
  cn__put32(msg + 3, (uint32_t)(h->self_flags >> 32));
  cn__put32(msg + 7, (uint32_t)h->self_flags);
  cn__put32(msg + 11, h->self_creation);
  cn__put16(msg + 15, (uint32_t)n);
  memcpy(msg + 17, h->self_name, n);
  /* On ENOMEM the machine stays in ST_I_BEGIN, so begin can be retried. */
  if (append_msg(h, out, msg, 2 + SEND_NAME_HDR + n) != 0)
    return CN_ENOMEM;
  h->state = ST_I_STATUS;
  return 0;
}

/* A plausible static node name: name@host, both parts non-empty, one
 * '@', printable ASCII without spaces, at most 255 bytes (what
 * dist_util:is_name_ok/2 checks, plus the atom size limit).  Latin-1
 * names are refused: they would need converting before they could be
 * used as UTF-8 atoms, and no node we talk to needs them. */
static int name_ok(const unsigned char *s, size_t n) {
  size_t i, at = 0, ats = 0;

  if (n < 3 || n > CN_MAX_NODE_NAME)
    return 0;
  for (i = 0; i < n; i++) {
    if (s[i] < 0x21 || s[i] > 0x7e)
      return 0;
    if (s[i] == '@') {
      ats++;
      at = i;
    }
  }
  return ats == 1 && at > 0 && at < n - 1;
}

/* From OTP 25, DFLAG_MANDATORY_25_DIGEST stands for all the flags of
 * MANDATORY_DFLAGS_25 (dist_util:expand_mandatory_25_flag/1). */
static uint64_t expand_flags(uint64_t f) {
  if (f & CN__DFLAG_MANDATORY_25_DIGEST)
    f |= CN__DFLAGS_MANDATORY_25;
  return f;
}

static int mandatory_ok(uint64_t f) {
  return (f & CN__DFLAGS_MANDATORY_25) == CN__DFLAGS_MANDATORY_25;
}

static void set_peer_name(cn__hs *h, const char *s, size_t n) {
  memcpy(h->peer_name, s, n);
  h->peer_name[n] = '\0';
  h->peer_name_len = n;
}

/* The bounds of a message's length in each state, checked as soon as the
 * prefix is in, so that a bad length fails at once instead of waiting for
 * up to 64 KiB that will never be valid. */
static void len_bounds(int state, size_t *min, size_t *max) {
  switch (state) {
  case ST_I_STATUS:
  case ST_A_ALIVE:
    *min = 2;
    *max = 1 + STATUS_MAX;
    break;
  case ST_I_CHALLENGE:
    *min = CHALLENGE_HDR + 3;
    *max = 0xffff;
    break;
  case ST_I_ACK:
    *min = *max = ACK_LEN;
    break;
  case ST_A_REPLY:
    *min = *max = REPLY_LEN;
    break;
  default: /* ST_A_NAME: an old 'n' is shorter, and must get ENOTSUP. */
    *min = 1;
    *max = 0xffff;
    break;
  }
}

static int status_is(const char *m, size_t n, const char *text) {
  size_t t = strlen(text);
  return n == 1 + t && memcmp(m + 1, text, t) == 0;
}

/* Acceptor: sends our challenge, after status ok (or alive and true). */
static int send_challenge(cn__hs *h, cn_buf *out) {
  char msg[OUT_MAX];
  size_t self_len = strlen(h->self_name);
  int rc;

  cn__put16(msg, (uint32_t)(CHALLENGE_HDR + self_len));
  msg[2] = 'N';
  cn__put32(msg + 3, (uint32_t)(h->self_flags >> 32));
  cn__put32(msg + 7, (uint32_t)h->self_flags);
  cn__put32(msg + 11, h->my_challenge);
  cn__put32(msg + 15, h->self_creation);
  cn__put16(msg + 19, (uint32_t)self_len);
  memcpy(msg + 21, h->self_name, self_len);
  if ((rc = emit(h, out, msg, 2 + CHALLENGE_HDR + self_len)) != 0)
    return rc;
  h->state = ST_A_REPLY;
  return 0;
}

/* Acceptor: the initiator's send_name. */
static int on_send_name(cn__hs *h, const char *m, size_t n, cn_buf *out) {
  uint64_t flags;
  size_t name_len;
  cn__hs_status st;
  int rc;

  if (m[0] == 'n')
    return fail(h, CN_ENOTSUP,
                "peer sent an old (version 5) send_name; OTP 23+ needed");
  if (m[0] != 'N')
    return fail(h, CN_EPROTO, "expected send_name 'N'");
  if (n < SEND_NAME_HDR)
    return fail(h, CN_EPROTO, "send_name too short");
  flags = cn__get64(m + 1);
  name_len = cn__get16(m + 13);
  /* Bytes after the name are ignored, as dist_util does (its recv_name
   * drops the residue), leaving room for later extensions. */
  if (name_len > n - SEND_NAME_HDR)
    return fail(h, CN_EPROTO, "send_name name runs past the message");
  if (flags & CN__DFLAG_NAME_ME) {
    (void)emit_status(h, out, "not_allowed");
    return fail(h, CN_ENOTSUP, "peer asks for a dynamic name (NAME_ME)");
  }
  if (!name_ok((const unsigned char *)m + SEND_NAME_HDR, name_len))
    return fail(h, CN_EPROTO, "send_name carries an invalid node name");
  set_peer_name(h, m + SEND_NAME_HDR, name_len);
  h->peer_flags = expand_flags(flags);
  h->peer_creation = cn__get32(m + 9);
  if (!mandatory_ok(h->peer_flags)) {
    (void)emit_status(h, out, "not_allowed");
    return fail(h, CN_ENOTSUP, "peer lacks a flag mandatory in OTP 25");
  }

  st = h->arbitrate ? h->arbitrate(h->arbitrate_arg, h->peer_name,
                                   h->peer_name_len, h->peer_creation)
                    : CN__HS_ST_OK;
  switch (st) {
  case CN__HS_ST_OK:
    rc = emit_status(h, out, "ok");
    break;
  case CN__HS_ST_OK_SIMUL:
    rc = emit_status(h, out, "ok_simultaneous");
    break;
  case CN__HS_ST_NOK:
    (void)emit_status(h, out, "nok");
    return fail(h, CN_EEXIST, "simultaneous connect: ours goes on (nok)");
  case CN__HS_ST_ALIVE:
    if ((rc = emit_status(h, out, "alive")) != 0)
      return rc;
    h->state = ST_A_ALIVE;
    return 0;
  case CN__HS_ST_NOT_ALLOWED:
  default:
    (void)emit_status(h, out, "not_allowed");
    return fail(h, CN_EEXIST, "connection from this node not allowed");
  }
  if (rc != 0)
    return rc;
  return send_challenge(h, out);
}

/* Acceptor: the initiator's answer to "alive". */
static int on_alive_reply(cn__hs *h, const char *m, size_t n, cn_buf *out) {
  if (m[0] != 's')
    return fail(h, CN_EPROTO, "expected a status answer to alive");
  if (status_is(m, n, "false"))
    return fail(h, CN_EEXIST, "peer keeps its old connection (alive false)");
  if (!status_is(m, n, "true"))
    return fail(h, CN_EPROTO, "status answer to alive not true or false");
  h->replaces = 1;
  return send_challenge(h, out);
}

/* Acceptor: challenge_reply, the initiator's challenge and its digest of
 * ours. */
static int on_reply(cn__hs *h, const char *m, size_t n, cn_buf *out) {
  unsigned char want[16];
  char msg[2 + ACK_LEN];

  if (m[0] != 'r' || n != REPLY_LEN)
    return fail(h, CN_EPROTO, "expected challenge_reply 'r'");
  if (digest(h->cookie, h->cookie_len, h->my_challenge, want) != 0)
    return fail(h, CN_ESYSTEM, "MD5 is not available from OpenSSL");
  if (CRYPTO_memcmp(want, m + 5, 16) != 0)
    return fail(h, CN_EAUTH, "wrong digest in challenge_reply (cookie)");
  h->peer_challenge = cn__get32(m + 1);
  cn__put16(msg, ACK_LEN);
  msg[2] = 'a';
  if (digest(h->cookie, h->cookie_len, h->peer_challenge,
             (unsigned char *)msg + 3) != 0)
    return fail(h, CN_ESYSTEM, "MD5 is not available from OpenSSL");
  if (emit(h, out, msg, sizeof msg) != 0)
    return CN_ENOMEM;
  h->state = ST_DONE;
  return 1;
}

/* Initiator: the acceptor's status. */
static int on_status(cn__hs *h, const char *m, size_t n, cn_buf *out) {
  if (m[0] != 's')
    return fail(h, CN_EPROTO, "expected status 's'");
  if (status_is(m, n, "ok") || status_is(m, n, "ok_simultaneous")) {
    h->state = ST_I_CHALLENGE;
    return 0;
  }
  if (status_is(m, n, "alive")) {
    /* The peer still has a connection from a node of our name: an
     * earlier incarnation of us, or one it has not yet seen go down.  We
     * are dialling, so we hold no connection to it and the old one must
     * go (dist_util answers with net_kernel's is_pending, true here). */
    if (emit_status(h, out, "true") != 0)
      return CN_ENOMEM;
    h->state = ST_I_CHALLENGE;
    return 0;
  }
  if (status_is(m, n, "nok"))
    return fail(h, CN_EEXIST,
                "simultaneous connect: the peer's attempt goes on (nok)");
  if (status_is(m, n, "not_allowed"))
    return fail(h, CN_EEXIST, "peer does not allow our connection");
  return fail(h, CN_EPROTO, "unknown status from peer");
}

/* Initiator: the acceptor's challenge. */
static int on_challenge(cn__hs *h, const char *m, size_t n, cn_buf *out) {
  size_t name_len, expect_len;
  uint64_t flags;
  char msg[2 + REPLY_LEN];

  if (m[0] != 'N' || n < CHALLENGE_HDR)
    return fail(h, CN_EPROTO, "expected challenge 'N'");
  flags = cn__get64(m + 1);
  name_len = cn__get16(m + 17);
  /* As in send_name, bytes after the name are ignored (dist_util). */
  if (name_len > n - CHALLENGE_HDR)
    return fail(h, CN_EPROTO, "challenge name runs past the message");
  if (!name_ok((const unsigned char *)m + CHALLENGE_HDR, name_len))
    return fail(h, CN_EPROTO, "challenge carries an invalid node name");
  expect_len = strlen(h->expect_name);
  if (name_len != expect_len ||
      memcmp(m + CHALLENGE_HDR, h->expect_name, expect_len) != 0)
    return fail(h, CN_EPROTO, "peer is not the node we dialled");
  set_peer_name(h, m + CHALLENGE_HDR, name_len);
  h->peer_flags = expand_flags(flags);
  h->peer_challenge = cn__get32(m + 9);
  h->peer_creation = cn__get32(m + 13);
  if (!mandatory_ok(h->peer_flags))
    return fail(h, CN_ENOTSUP, "peer lacks a flag mandatory in OTP 25");
  if (h->peer_flags & CN__DFLAG_NAME_ME)
    return fail(h, CN_EPROTO, "peer sets NAME_ME in its challenge");
  cn__put16(msg, REPLY_LEN);
  msg[2] = 'r';
  cn__put32(msg + 3, h->my_challenge);
  if (digest(h->cookie, h->cookie_len, h->peer_challenge,
             (unsigned char *)msg + 7) != 0)
    return fail(h, CN_ESYSTEM, "MD5 is not available from OpenSSL");
  if (emit(h, out, msg, sizeof msg) != 0)
    return CN_ENOMEM;
  h->state = ST_I_ACK;
  return 0;
}

/* Initiator: challenge_ack, the acceptor's digest of our challenge. */
static int on_ack(cn__hs *h, const char *m, size_t n) {
  unsigned char want[16];

  if (m[0] != 'a' || n != ACK_LEN)
    return fail(h, CN_EPROTO, "expected challenge_ack 'a'");
  if (digest(h->cookie, h->cookie_len, h->my_challenge, want) != 0)
    return fail(h, CN_ESYSTEM, "MD5 is not available from OpenSSL");
  if (CRYPTO_memcmp(want, m + 1, 16) != 0)
    return fail(h, CN_EAUTH, "wrong digest in challenge_ack (cookie)");
  h->state = ST_DONE;
  return 1;
}

bool cn__hs_awaits_ack(const cn__hs *h) {
  return h->initiator && h->state == ST_I_ACK;
}

int cn__hs_feed(cn__hs *h, const char *buf, size_t len, size_t *used,
                cn_buf *out) {
  size_t off = 0, n, min, max, hl = h->len4 ? 4 : 2;
  const char *m;
  int rc;

  *used = 0;
  for (;;) {
    if (h->state < 0)
      return h->state;
    if (h->state == ST_DONE)
      return 1;
    if (h->state == ST_I_BEGIN)
      return CN_EINVAL;
    if (len - off < hl)
      return 0;
    n = h->len4 ? cn__get32(buf + off) : cn__get16(buf + off);
    len_bounds(h->state, &min, &max);
    if (n < min || n > max)
      return fail(h, CN_EPROTO, "handshake message of a bad length");
    if (len - off - hl < n)
      return 0;
    m = buf + off + hl;
    switch (h->state) {
    case ST_I_STATUS:
      rc = on_status(h, m, n, out);
      break;
    case ST_I_CHALLENGE:
      rc = on_challenge(h, m, n, out);
      break;
    case ST_I_ACK:
      rc = on_ack(h, m, n);
      break;
    case ST_A_NAME:
      rc = on_send_name(h, m, n, out);
      break;
    case ST_A_ALIVE:
      rc = on_alive_reply(h, m, n, out);
      break;
    default: /* ST_A_REPLY */
      rc = on_reply(h, m, n, out);
      break;
    }
    off += hl + n;
    *used = off;
    if (rc != 0)
      return rc;
  }
}
