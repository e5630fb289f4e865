/* fuzz_control: the control-message parser (cn__ctl_parse), and the
 * readers of a frame cut short (cn__ctl_parse_head, cn__call_head),
 * against hostile frames.
 *
 * The input is one frame's content, as the connection hands it over: the
 * bytes after the 4-byte length, either 'p' (112), the control tuple with
 * its version byte, and the payload with its own, or 131 'D' 0 and the two
 * terms without version bytes (the seeds are frames a real OTP 25 node
 * sent, in both forms).  Each frame is parsed with the default limits and
 * with tight ones, and its head on its own.  Nothing may crash, leak or
 * read out of bounds, and:
 *
 *  - the result is one of the documented codes, and the same every time;
 *  - on success every field the op has is a term that validates alone,
 *    lies inside the frame, and is of the type the op demands; fields the
 *    op does not have are empty; the control term and the payload tile
 *    the frame;
 *  - a payload error (CN_EBADTERM, CN_ETOODEEP, CN_ETOOBIG) comes only
 *    for an op with a payload, with the control fields set and the
 *    payload fields empty;
 *  - tighter limits never accept what the defaults refuse;
 *  - the head reader agrees with the whole parse on where the payload
 *    starts, and reads every prefix of the frame without harm.
 */
#include "dist/proto.h"
#include "fuzz/fuzz.h"

/* Ops and what they carry, from the ERTS distribution protocol chapter:
 * the fields each op fills, and whether its payload is the message or
 * an exit reason. */
enum {
  F_FROM = 1,
  F_TO = 2,
  F_REF = 4,
  F_REASON = 8, /* inline in the control tuple */
  F_TOKEN = 16,
  F_ID = 32,
  P_MSG = 64,
  P_REASON = 128,
  F_MFA = 256 /* SPAWN_REQUEST: mfa and opts */
};

static int op_fields(int op) {
  switch (op) {
  case CN__DOP_LINK:
    return F_FROM | F_TO;
  case CN__DOP_SEND:
    return F_TO | P_MSG;
  case CN__DOP_EXIT:
  case CN__DOP_EXIT2:
    return F_FROM | F_TO | F_REASON;
  case CN__DOP_REG_SEND:
    return F_FROM | F_TO | P_MSG;
  case CN__DOP_SEND_TT:
    return F_TO | F_TOKEN | P_MSG;
  case CN__DOP_EXIT_TT:
  case CN__DOP_EXIT2_TT:
    return F_FROM | F_TO | F_TOKEN | F_REASON;
  case CN__DOP_REG_SEND_TT:
    return F_FROM | F_TO | F_TOKEN | P_MSG;
  case CN__DOP_MONITOR_P:
  case CN__DOP_DEMONITOR_P:
    return F_FROM | F_TO | F_REF;
  case CN__DOP_MONITOR_P_EXIT:
    return F_FROM | F_TO | F_REF | F_REASON;
  case CN__DOP_SEND_SENDER:
  case CN__DOP_ALIAS_SEND:
    return F_FROM | F_TO | P_MSG;
  case CN__DOP_SEND_SENDER_TT:
  case CN__DOP_ALIAS_SEND_TT:
    return F_FROM | F_TO | F_TOKEN | P_MSG;
  case CN__DOP_PAYLOAD_EXIT:
  case CN__DOP_PAYLOAD_EXIT2:
    return F_FROM | F_TO | P_REASON;
  case CN__DOP_PAYLOAD_EXIT_TT:
  case CN__DOP_PAYLOAD_EXIT2_TT:
    return F_FROM | F_TO | F_TOKEN | P_REASON;
  case CN__DOP_PAYLOAD_MONITOR_P_EXIT:
    return F_FROM | F_TO | F_REF | P_REASON;
  case CN__DOP_UNLINK_ID:
  case CN__DOP_UNLINK_ID_ACK:
    return F_FROM | F_TO | F_ID;
  case CN__DOP_SPAWN_REQUEST:
    return F_FROM | F_REF | F_MFA | P_MSG;
  case CN__DOP_SPAWN_REQUEST_TT:
    return F_FROM | F_REF | F_MFA | F_TOKEN | P_MSG;
  case CN__DOP_ALTACT_SIG_SEND: /* an exit to an alias or a name */
    return F_FROM | F_TO | P_REASON;
  default:
    return 0; /* not accepted */
  }
}

/* A field the op has: a term inside the frame that validates alone.  A
 * field the op lacks: empty. */
static void check_field(const char *frame, size_t len, cn_term t, int has) {
  size_t off = 0;
  if (!has) {
    FZ_CHECK(t.ptr == NULL && t.len == 0);
    return;
  }
  FZ_CHECK(t.len > 0 && t.ptr >= frame && t.ptr + t.len <= frame + len);
  FZ_OK(cn_term_validate(t.ptr, t.len, &off, NULL));
  FZ_CHECK(off == t.len);
  /* What the node does next with such a field: decode it (pids and
   * references only of the nodes fz_node_ok allows, since decoding
   * interns the node's name), print it for a log line, and hash it. */
  {
    cn_buf b = CN_BUF_INIT;
    cn_term_type ty = cn_term_typeof(t);
    char name[256];
    cn_pid pid;
    cn_ref ref;
    int rc;

    if (ty == CN_T_PID && fz_node_ok(t))
      FZ_OK(cn_get_pid(t, &pid));
    if (ty == CN_T_REF && fz_node_ok(t))
      FZ_OK(cn_get_ref(t, &ref));
    if (ty == CN_T_ATOM) {
      rc = cn_get_atom(t, name, sizeof name); /* ENOTSUP: a NUL in it */
      FZ_CHECK(rc == 0 || rc == CN_ENOSPC || rc == CN_ENOTSUP);
    }
    FZ_OK(cn_term_print(t, &b));
    FZ_CHECK(b.len > 0 && b.data[b.len] == '\0');
    cn_buf_free(&b);
    FZ_CHECK(cn_term_hash(t) == cn_term_hash(t));
  }
}

/* The types the op demands of from and to (control.c documents them). */
static void check_types(const cn__ctl *c) {
  cn_term_type from = cn_term_typeof(c->from), to = cn_term_typeof(c->to);
  switch (c->op) {
  case CN__DOP_MONITOR_P_EXIT:
  case CN__DOP_PAYLOAD_MONITOR_P_EXIT:
    FZ_CHECK(from == CN_T_PID || from == CN_T_ATOM);
    break;
  case CN__DOP_SEND:
  case CN__DOP_SEND_TT:
    FZ_CHECK(from == CN_T_INVALID);
    break;
  default:
    FZ_CHECK(from == CN_T_PID);
    break;
  }
  switch (c->op) {
  case CN__DOP_REG_SEND:
  case CN__DOP_REG_SEND_TT:
    FZ_CHECK(to == CN_T_ATOM);
    break;
  case CN__DOP_MONITOR_P:
  case CN__DOP_DEMONITOR_P:
    FZ_CHECK(to == CN_T_PID || to == CN_T_ATOM);
    break;
  case CN__DOP_ALIAS_SEND:
  case CN__DOP_ALIAS_SEND_TT:
    FZ_CHECK(to == CN_T_REF);
    break;
  case CN__DOP_ALTACT_SIG_SEND:
    FZ_CHECK(to == ((c->altact & CN__ALTACT_ALIAS) ? CN_T_REF : CN_T_ATOM));
    break;
  case CN__DOP_SPAWN_REQUEST:
  case CN__DOP_SPAWN_REQUEST_TT:
    FZ_CHECK(to == CN_T_INVALID);
    FZ_CHECK(cn_term_typeof(c->mfa) == CN_T_TUPLE);
    FZ_CHECK(cn_term_typeof(c->opts) == CN_T_LIST ||
             cn_term_typeof(c->opts) == CN_T_NIL);
    break;
  default:
    FZ_CHECK(to == CN_T_PID);
    break;
  }
  if (op_fields(c->op) & F_REF)
    FZ_CHECK(cn_term_typeof(c->ref) == CN_T_REF);
}

static int same_term(cn_term a, cn_term b) {
  return a.ptr == b.ptr && a.len == b.len;
}

/* Field by field, since padding is not part of the result. */
static int same_ctl(const cn__ctl *a, const cn__ctl *b) {
  return a->op == b->op && same_term(a->from, b->from) &&
         same_term(a->to, b->to) && same_term(a->ref, b->ref) &&
         same_term(a->reason, b->reason) && same_term(a->token, b->token) &&
         a->id == b->id && same_term(a->msg, b->msg) &&
         same_term(a->mfa, b->mfa) && same_term(a->opts, b->opts) &&
         a->has_payload == b->has_payload;
}

/* Parses frame with lim and checks the result.  Returns the result. */
static int parse_checked(const char *frame, size_t len,
                         const cn_term_limits *lim, cn__ctl *out) {
  cn__ctl again;
  int rc = cn__ctl_parse(frame, len, lim, out), f;

  FZ_CHECK(rc == 0 || rc == CN_EPROTO || rc == CN_EBADTERM ||
           rc == CN_ETOODEEP || rc == CN_ETOOBIG);
  FZ_CHECK(cn__ctl_parse(frame, len, lim, &again) == rc);
  FZ_CHECK(same_ctl(&again, out));
  if (rc == CN_EPROTO)
    return rc;

  f = op_fields(out->op);
  FZ_CHECK(f != 0);
  FZ_CHECK(out->has_payload == ((f & (P_MSG | P_REASON)) != 0));
  check_field(frame, len, out->from, (f & F_FROM) != 0);
  check_field(frame, len, out->to, (f & F_TO) != 0);
  check_field(frame, len, out->ref, (f & F_REF) != 0);
  /* An ALTACT_SIG_SEND, read as an older op, has a token when its flags
   * say so. */
  check_field(frame, len, out->token,
              (f & F_TOKEN) != 0 || (out->altact & CN__ALTACT_TOKEN) != 0);
  check_field(frame, len, out->mfa, (f & F_MFA) != 0);
  check_field(frame, len, out->opts, (f & F_MFA) != 0);
  if (!(f & F_ID))
    FZ_CHECK(out->id == 0);
  check_types(out);
  if (rc != 0) {
    /* A bad payload costs the message only: the control part is whole,
     * and neither payload field is set. */
    FZ_CHECK(out->has_payload);
    FZ_CHECK(out->msg.len == 0);
    if (f & P_REASON)
      FZ_CHECK(out->reason.len == 0);
    else
      check_field(frame, len, out->reason, (f & F_REASON) != 0);
    return rc;
  }
  check_field(frame, len, out->msg, (f & P_MSG) != 0);
  check_field(frame, len, out->reason, (f & (P_REASON | F_REASON)) != 0);
  /* With a payload, it ends the frame, right after its version byte in a
   * pass-through frame. */
  if (f & P_MSG)
    FZ_CHECK(out->msg.ptr + out->msg.len == frame + len &&
             (frame[0] != 'p' || (unsigned char)out->msg.ptr[-1] == 131));
  if (f & P_REASON)
    FZ_CHECK(out->reason.ptr + out->reason.len == frame + len &&
             (frame[0] != 'p' || (unsigned char)out->reason.ptr[-1] == 131));
  return 0;
}

/* The head reader on the whole frame agrees with the parse; on a prefix
 * it reads what is there. */
static void check_head(const char *frame, size_t len, const cn__ctl *whole,
                       int rc) {
  cn__ctl head;
  size_t pay = 0, cut;
  cn_term caller, tag;
  int hrc = cn__ctl_parse_head(frame, len, NULL, &head, &pay);
  FZ_CHECK(hrc == 0 || hrc == CN_EPROTO || hrc == CN_EBADTERM);
  if (rc == 0 && whole->has_payload) {
    FZ_CHECK(hrc == 0);
    FZ_CHECK(head.op == whole->op);
    FZ_CHECK(frame + pay ==
             (whole->msg.len ? whole->msg.ptr : whole->reason.ptr));
  }
  if (hrc == 0) {
    FZ_CHECK(pay <= len);
    if (cn__call_head(frame + pay, len - pay, &caller, &tag) == 0) {
      FZ_CHECK(cn_term_typeof(caller) == CN_T_PID);
      FZ_CHECK(caller.ptr >= frame + pay && tag.ptr + tag.len <= frame + len);
    }
  }
  /* A prefix, as a frame too large to keep leaves of itself. */
  cut = len / 2;
  if (cut > 0) {
    char *copy = fz_exact(frame, cut);
    if (cn__ctl_parse_head(copy, cut, NULL, &head, &pay) == 0)
      (void)cn__call_head(copy + pay, cut - pay, &caller, &tag);
    free(copy);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const cn_term_limits tight = {4, 48};
  const char *frame = (const char *)data;
  cn__ctl def, lim;
  int rc, rc2;

  rc = parse_checked(frame, size, NULL, &def);
  rc2 = parse_checked(frame, size, &tight, &lim);
  check_head(frame, size, &def, rc);
  /* Tighter limits accept nothing the defaults refuse, and what both
   * accept parses the same. */
  if (rc2 == 0) {
    FZ_CHECK(rc == 0);
    FZ_CHECK(same_ctl(&def, &lim));
  }
  if (rc == CN_EPROTO)
    FZ_CHECK(rc2 == CN_EPROTO);
  return 0;
}
