/* The control-message parser: one pass-through frame ('p', then the
 * control tuple and, for some operations, one payload term) into a
 * cn__ctl of views into the frame.  Nothing is read with the term
 * readers before the bounded validator has accepted it.
 *
 * The shapes are those of the ERTS "Distribution Protocol" chapter
 * ("Protocol between Connected Nodes"), checked field by field as erts
 * checks them in erts_net_message(), and a little more strictly: every
 * pid and reference field must be one.
 */
#include <string.h>

#include "dist/proto.h"
#include "term/term_internal.h"

#define PASS_THROUGH 112

/* What one element of a control tuple must be, and where it goes. */
enum {
  F_NONE = 0,
  F_UNUSED,    /* kept for compatibility ('' from erts): any term */
  F_FROM_PID,  /* out->from, a pid */
  F_FROM_PROC, /* out->from, a pid or an atom (a monitored name) */
  F_TO_PID,    /* out->to, a pid */
  F_TO_PROC,   /* out->to, a pid or an atom */
  F_TO_ATOM,   /* out->to, a registered name */
  F_TO_REF,    /* out->to, a process alias */
  F_REF,       /* out->ref, a monitor reference */
  F_REASON,    /* out->reason, any term */
  F_TOKEN,     /* out->token, any term (a seq_trace token) */
  F_ID,        /* out->id, a non-negative integer of 64 bits */
  F_MFA,       /* out->mfa, {Module, Function, Arity} */
  F_OPTS       /* out->opts, a list (proper or not: the caller reads it) */
};

/* Where the payload term goes. */
enum { P_NONE = 0, P_MSG, P_REASON };

typedef struct op_spec {
  unsigned char arity;    /* 0: the op is not accepted */
  unsigned char payload;  /* P_* */
  unsigned char field[6]; /* F_* of elements 2 .. arity */
} op_spec;

#define MAX_OP 37

/* Indexed by op.  Left out, and so refused: UNLINK (4; the new link
 * protocol's UNLINK_ID replaces it and we offer DFLAG_UNLINK_ID),
 * NODE_LINK (5) and GROUP_LEADER (7; erts never sends them to a C node
 * that has no group leaders), and SPAWN_REPLY (31, 32; we never send a
 * SPAWN_REQUEST). */
static const op_spec specs[MAX_OP + 1] = {
    [CN__DOP_LINK] = {3, P_NONE, {F_FROM_PID, F_TO_PID}},
    [CN__DOP_SEND] = {3, P_MSG, {F_UNUSED, F_TO_PID}},
    [CN__DOP_EXIT] = {4, P_NONE, {F_FROM_PID, F_TO_PID, F_REASON}},
    [CN__DOP_REG_SEND] = {4, P_MSG, {F_FROM_PID, F_UNUSED, F_TO_ATOM}},
    [CN__DOP_EXIT2] = {4, P_NONE, {F_FROM_PID, F_TO_PID, F_REASON}},
    [CN__DOP_SEND_TT] = {4, P_MSG, {F_UNUSED, F_TO_PID, F_TOKEN}},
    [CN__DOP_EXIT_TT] = {5, P_NONE, {F_FROM_PID, F_TO_PID, F_TOKEN, F_REASON}},
    [CN__DOP_REG_SEND_TT] = {5,
                             P_MSG,
                             {F_FROM_PID, F_UNUSED, F_TO_ATOM, F_TOKEN}},
    [CN__DOP_EXIT2_TT] = {5, P_NONE, {F_FROM_PID, F_TO_PID, F_TOKEN, F_REASON}},
    [CN__DOP_MONITOR_P] = {4, P_NONE, {F_FROM_PID, F_TO_PROC, F_REF}},
    [CN__DOP_DEMONITOR_P] = {4, P_NONE, {F_FROM_PID, F_TO_PROC, F_REF}},
    [CN__DOP_MONITOR_P_EXIT] = {5,
                                P_NONE,
                                {F_FROM_PROC, F_TO_PID, F_REF, F_REASON}},
    [CN__DOP_SEND_SENDER] = {3, P_MSG, {F_FROM_PID, F_TO_PID}},
    [CN__DOP_SEND_SENDER_TT] = {4, P_MSG, {F_FROM_PID, F_TO_PID, F_TOKEN}},
    [CN__DOP_PAYLOAD_EXIT] = {3, P_REASON, {F_FROM_PID, F_TO_PID}},
    [CN__DOP_PAYLOAD_EXIT_TT] = {4, P_REASON, {F_FROM_PID, F_TO_PID, F_TOKEN}},
    [CN__DOP_PAYLOAD_EXIT2] = {3, P_REASON, {F_FROM_PID, F_TO_PID}},
    [CN__DOP_PAYLOAD_EXIT2_TT] = {4, P_REASON, {F_FROM_PID, F_TO_PID, F_TOKEN}},
    [CN__DOP_PAYLOAD_MONITOR_P_EXIT] = {4,
                                        P_REASON,
                                        {F_FROM_PROC, F_TO_PID, F_REF}},
    [CN__DOP_ALIAS_SEND] = {3, P_MSG, {F_FROM_PID, F_TO_REF}},
    [CN__DOP_ALIAS_SEND_TT] = {4, P_MSG, {F_FROM_PID, F_TO_REF, F_TOKEN}},
    [CN__DOP_SPAWN_REQUEST] = {6,
                               P_MSG,
                               {F_REF, F_FROM_PID, F_UNUSED, F_MFA, F_OPTS}},
    [CN__DOP_SPAWN_REQUEST_TT] =
        {7, P_MSG, {F_REF, F_FROM_PID, F_UNUSED, F_MFA, F_OPTS, F_TOKEN}},
    [CN__DOP_UNLINK_ID] = {4, P_NONE, {F_ID, F_FROM_PID, F_TO_PID}},
    [CN__DOP_UNLINK_ID_ACK] = {4, P_NONE, {F_ID, F_FROM_PID, F_TO_PID}},
};

/* ALTACT_SIG_SEND's two shapes, for their payloads; its elements are
 * read by altact(). */
static const op_spec altact_msg = {4, P_MSG, {0}};
static const op_spec altact_exit = {4, P_REASON, {0}};

/* Checks one element against its kind and stores it.  Returns 0 or -1. */
static int take(cn__ctl *out, int kind, cn_term e) {
  cn_term_type t = cn_term_typeof(e);

  switch (kind) {
  case F_UNUSED:
    return 0;
  case F_FROM_PID:
  case F_FROM_PROC:
    if (t != CN_T_PID && !(kind == F_FROM_PROC && t == CN_T_ATOM))
      return -1;
    out->from = e;
    return 0;
  case F_TO_PID:
  case F_TO_PROC:
  case F_TO_ATOM:
  case F_TO_REF:
    if (!((t == CN_T_PID && (kind == F_TO_PID || kind == F_TO_PROC)) ||
          (t == CN_T_ATOM && (kind == F_TO_PROC || kind == F_TO_ATOM)) ||
          (t == CN_T_REF && kind == F_TO_REF)))
      return -1;
    out->to = e;
    return 0;
  case F_REF:
    if (t != CN_T_REF)
      return -1;
    out->ref = e;
    return 0;
  case F_REASON:
    out->reason = e;
    return 0;
  case F_TOKEN:
    out->token = e;
    return 0;
  case F_ID:
    return cn_get_uint64(e, &out->id) == 0 ? 0 : -1;
  case F_MFA: {
    cn_term m, f, a;
    int64_t arity;
    if (cn_match(e, "{~t, ~t, ~t}", &m, &f, &a) != 0 ||
        cn_term_typeof(m) != CN_T_ATOM || cn_term_typeof(f) != CN_T_ATOM ||
        cn_get_int64(a, &arity) != 0 || arity < 0 || arity > 255)
      return -1;
    out->mfa = e;
    return 0;
  }
  case F_OPTS:
    if (t != CN_T_LIST && t != CN_T_NIL)
      return -1;
    out->opts = e;
    return 0;
  default:
    return -1;
  }
}

/* The low byte of a non-negative integer of any size (erts reads the
 * flags of ALTACT_SIG_SEND so, leaving room for more flags in a bignum).
 * Returns it, or -1 when e is not a non-negative integer. */
static int low_byte(cn_term e) {
  cn__int v;
  if (cn_term_typeof(e) != CN_T_INTEGER)
    return -1;
  cn__int_view(e.ptr, &v);
  if (v.neg)
    return -1;
  return v.n ? v.mag[0] : 0;
}

/* The rest of an ALTACT_SIG_SEND, {37, Flags, From, To} or
 * {37, Flags, From, To, Token}, as erts_net_message() reads it: at least
 * four elements (later releases may add more, which are ignored), a
 * token only when Flags says so, To a reference with ALIAS, an atom with
 * NAME (never both), else a pid.  Returns the spec of its payload, or
 * NULL. */
static const op_spec *altact(cn_iter *it, size_t arity, cn__ctl *out) {
  cn_term e;
  int flags;

  if (arity < 4 || !cn_iter_next(it, &e) || (flags = low_byte(e)) < 0)
    return NULL;
  if (!cn_iter_next(it, &e) || take(out, F_FROM_PID, e) != 0 ||
      !cn_iter_next(it, &e))
    return NULL;
  if ((flags & CN__ALTACT_ALIAS) && (flags & CN__ALTACT_NAME))
    return NULL;
  if (take(out,
           flags & CN__ALTACT_ALIAS  ? F_TO_REF
           : flags & CN__ALTACT_NAME ? F_TO_ATOM
                                     : F_TO_PID,
           e) != 0)
    return NULL;
  if (flags & CN__ALTACT_TOKEN) {
    if (arity < 5 || !cn_iter_next(it, &e))
      return NULL;
    out->token = e;
  }
  out->altact = flags;
  if (flags & CN__ALTACT_EXIT) {
    out->op = (flags & (CN__ALTACT_ALIAS | CN__ALTACT_NAME))
                  ? CN__DOP_ALTACT_SIG_SEND
                  : CN__DOP_PAYLOAD_EXIT2;
    return &altact_exit;
  }
  out->op = flags & CN__ALTACT_ALIAS  ? CN__DOP_ALIAS_SEND
            : flags & CN__ALTACT_NAME ? CN__DOP_REG_SEND
                                      : CN__DOP_SEND_SENDER;
  return &altact_msg;
}

/* Reads the validated control tuple into out.  Returns the op's spec, or
 * NULL when the tuple is not one we accept. */
static const op_spec *parse_control(cn_term ctl, cn__ctl *out) {
  cn_iter it;
  cn_term e;
  size_t arity, i;
  int64_t op;
  const op_spec *s;

  if (cn_term_typeof(ctl) != CN_T_TUPLE || cn_iter_init(&it, ctl, &arity))
    return NULL;
  if (arity < 1 || !cn_iter_next(&it, &e) || cn_get_int64(e, &op) != 0)
    return NULL;
  if (op == CN__DOP_ALTACT_SIG_SEND)
    return altact(&it, arity, out);
  if (op < 0 || op > MAX_OP)
    return NULL;
  s = &specs[op];
  if (s->arity == 0 || arity != s->arity)
    return NULL;
  out->op = (int)op;
  for (i = 0; i + 1 < arity; i++) {
    if (!cn_iter_next(&it, &e) || take(out, s->field[i], e) != 0)
      return NULL;
  }
  return s;
}

/* Where the control term of a frame starts, and whether its terms carry
 * version bytes: a pass-through frame ('p', 131, Control, 131, Payload),
 * or one with a distribution header and no atom cache references
 * (131 'D' 0, Control, Payload), which is what an OTP node sends a peer
 * that offers DFLAG_FRAGMENTS, and what our fragment reassembler makes of
 * a whole sequence.  A header with atom cache references is refused: we
 * do not offer DFLAG_DIST_HDR_ATOM_CACHE. */
static int frame_body(const char *frame, size_t len, size_t *off,
                      int *versioned) {
  const unsigned char *u = (const unsigned char *)frame;
  if (len >= 2 && u[0] == PASS_THROUGH && u[1] == ETF_VERSION) {
    *off = 2;
    *versioned = 1;
    return 0;
  }
  if (len >= 3 && u[0] == ETF_VERSION && u[1] == CN__DIST_HEADER && u[2] == 0) {
    *off = 3;
    *versioned = 0;
    return 0;
  }
  return CN_EPROTO;
}

/* Parses the control term at the start of the frame.  On success *off is
 * where the payload term starts (past its version byte, if the frame's
 * terms have them) and the op's spec is returned.  *rc is CN_EPROTO or
 * CN_ENOMEM on failure, and CN_EBADTERM for a missing payload version
 * byte. */
static const op_spec *parse_head(const char *frame, size_t len,
                                 const cn_term_limits *lim, cn__ctl *out,
                                 size_t *off, int *rc) {
  const op_spec *s;
  size_t start;
  int versioned;
  cn_term ctl;

  memset(out, 0, sizeof *out);
  *rc = CN_EPROTO;
  if (frame_body(frame, len, &start, &versioned) != 0)
    return NULL;
  *off = start;
  if ((*rc = cn_term_validate(frame, len, off, lim)) != 0) {
    if (*rc != CN_ENOMEM)
      *rc = CN_EPROTO;
    return NULL;
  }
  ctl.ptr = frame + start;
  ctl.len = *off - start;
  if ((s = parse_control(ctl, out)) == NULL) {
    memset(out, 0, sizeof *out);
    *rc = CN_EPROTO;
    return NULL;
  }
  *rc = 0;
  if (s->payload == P_NONE)
    return s;
  out->has_payload = 1;
  if (*off == len) {
    *rc = CN_EPROTO;
    return NULL;
  }
  /* From here the frame's framing is sound: the frame's length bounds the
   * payload, so a bad payload costs only this message. */
  if (versioned && (unsigned char)frame[(*off)++] != ETF_VERSION)
    *rc = CN_EBADTERM;
  return s;
}

int cn__ctl_parse_head(const char *frame, size_t len, const cn_term_limits *lim,
                       cn__ctl *out, size_t *payload) {
  size_t off = 0;
  int rc;
  const op_spec *s = parse_head(frame, len, lim, out, &off, &rc);
  if (!s || rc != 0)
    return rc ? rc : CN_EPROTO;
  if (s->payload == P_NONE)
    return CN_EPROTO;
  *payload = off;
  return 0;
}

int cn__ctl_parse(const char *frame, size_t len, const cn_term_limits *lim,
                  cn__ctl *out) {
  const op_spec *s;
  size_t off = 0, start;
  cn_term pay;
  int rc;

  if (!(s = parse_head(frame, len, lim, out, &off, &rc)))
    return rc;
  if (s->payload == P_NONE)
    return off == len ? 0 : CN_EPROTO;
  if (rc != 0)
    return rc;
  start = off;
  if ((rc = cn_term_validate(frame, len, &off, lim)) != 0)
    return rc;
  if (off != len)
    return CN_EBADTERM; /* junk after the payload: still only this one */
  pay.ptr = frame + start;
  pay.len = off - start;
  if (s->payload == P_REASON)
    out->reason = pay;
  else
    out->msg = pay;
  return 0;
}

/* Reads one whole term at *off of buf[0 .. len) into *t.  The term must be
 * complete within len, which may end anywhere after it. */
static int head_term(const char *buf, size_t len, size_t *off, cn_term *t) {
  static const cn_term_limits small = {64, 4096};
  size_t start = *off;
  int rc = cn_term_validate(buf, len, off, &small);
  if (rc != 0)
    return rc;
  t->ptr = buf + start;
  t->len = *off - start;
  return 0;
}

int cn__call_head(const char *pay, size_t len, cn_term *caller, cn_term *tag) {
  const unsigned char *u = (const unsigned char *)pay;
  size_t off;
  cn_term e;
  /* {'$gen_call', {Pid, Tag}, Request}: a 3-tuple whose first element is
   * the atom, then a 2-tuple.  Only the head must be there. */
  if (len < 2 || u[0] != ETF_SMALL_TUPLE || u[1] != 3)
    return CN_ENOMATCH;
  off = 2;
  if (head_term(pay, len, &off, &e) != 0 || !cn_is_atom(e, "$gen_call"))
    return CN_ENOMATCH;
  if (off + 2 > len || u[off] != ETF_SMALL_TUPLE || u[off + 1] != 2)
    return CN_ENOMATCH;
  off += 2;
  if (head_term(pay, len, &off, caller) != 0 ||
      cn_term_typeof(*caller) != CN_T_PID ||
      head_term(pay, len, &off, tag) != 0)
    return CN_ENOMATCH;
  return 0;
}
