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
  F_ID         /* out->id, a non-negative integer of 64 bits */
};

/* Where the payload term goes. */
enum { P_NONE = 0, P_MSG, P_REASON };

typedef struct op_spec {
  unsigned char arity;    /* 0: the op is not accepted */
  unsigned char payload;  /* P_* */
  unsigned char field[5]; /* F_* of elements 2 .. arity */
} op_spec;

#define MAX_OP 36

/* Indexed by op.  Left out, and so refused: UNLINK (4; the new link
 * protocol's UNLINK_ID replaces it and we offer DFLAG_UNLINK_ID),
 * NODE_LINK (5) and GROUP_LEADER (7; erts never sends them to a C node
 * that has no group leaders), and the SPAWN_* ops (29-32; we do not offer
 * DFLAG_SPAWN). */
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
    [CN__DOP_UNLINK_ID] = {4, P_NONE, {F_ID, F_FROM_PID, F_TO_PID}},
    [CN__DOP_UNLINK_ID_ACK] = {4, P_NONE, {F_ID, F_FROM_PID, F_TO_PID}},
};

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
  default:
    return -1;
  }
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

int cn__ctl_parse(const char *frame, size_t len, const cn_term_limits *lim,
                  cn__ctl *out) {
  const op_spec *s;
  size_t off = 2, start;
  cn_term ctl, pay;
  int rc;

  memset(out, 0, sizeof *out);
  /* A frame of another type, such as one with a distribution header
   * (131 'D' or 'E': atom cache, fragments), is refused: we offer neither
   * DFLAG_DIST_HDR_ATOM_CACHE nor DFLAG_FRAGMENTS. */
  if (len < 2 || (unsigned char)frame[0] != PASS_THROUGH ||
      (unsigned char)frame[1] != ETF_VERSION)
    return CN_EPROTO;
  rc = cn_term_validate(frame, len, &off, lim);
  if (rc == CN_ENOMEM)
    return rc;
  if (rc != 0)
    return CN_EPROTO;
  ctl.ptr = frame + 2;
  ctl.len = off - 2;
  if ((s = parse_control(ctl, out)) == NULL) {
    memset(out, 0, sizeof *out);
    return CN_EPROTO;
  }
  if (s->payload == P_NONE)
    return off == len ? 0 : CN_EPROTO;

  out->has_payload = 1;
  if (off == len)
    return CN_EPROTO;
  /* From here the frame's framing is sound: the frame's length bounds the
   * payload, so a bad payload costs only this message. */
  if ((unsigned char)frame[off] != ETF_VERSION)
    return CN_EBADTERM;
  start = ++off;
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
