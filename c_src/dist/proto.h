/* The distribution protocol without I/O: flags, the version 6 handshake as
 * a state machine, the epmd messages, and the control-message parser.
 * Not installed.  The connection layer (conn.c) feeds these with bytes and
 * writes out what they produce; nothing here touches a socket, so every
 * piece is unit-tested in memory (tests/test-dist-proto.c).
 *
 * References: the ERTS "Distribution Protocol" chapter, kernel's
 * dist.hrl (flag values), dist_util.erl (the handshake) and erts dist.h.
 */
#ifndef CN_DIST_PROTO_H
#define CN_DIST_PROTO_H

#include <cnode.h>

/* ---- Capability flags (erts dist.h / kernel dist.hrl) ---------------- */

#define CN__DFLAG_PUBLISHED 0x01ULL
#define CN__DFLAG_ATOM_CACHE 0x02ULL
#define CN__DFLAG_EXTENDED_REFERENCES 0x04ULL
#define CN__DFLAG_DIST_MONITOR 0x08ULL
#define CN__DFLAG_FUN_TAGS 0x10ULL
#define CN__DFLAG_DIST_MONITOR_NAME 0x20ULL
#define CN__DFLAG_HIDDEN_ATOM_CACHE 0x40ULL
#define CN__DFLAG_NEW_FUN_TAGS 0x80ULL
#define CN__DFLAG_EXTENDED_PIDS_PORTS 0x100ULL
#define CN__DFLAG_EXPORT_PTR_TAG 0x200ULL
#define CN__DFLAG_BIT_BINARIES 0x400ULL
#define CN__DFLAG_NEW_FLOATS 0x800ULL
#define CN__DFLAG_UNICODE_IO 0x1000ULL
#define CN__DFLAG_DIST_HDR_ATOM_CACHE 0x2000ULL
#define CN__DFLAG_SMALL_ATOM_TAGS 0x4000ULL
#define CN__DFLAG_UTF8_ATOMS 0x10000ULL
#define CN__DFLAG_MAP_TAG 0x20000ULL
#define CN__DFLAG_BIG_CREATION 0x40000ULL
#define CN__DFLAG_SEND_SENDER 0x80000ULL
#define CN__DFLAG_BIG_SEQTRACE_LABELS 0x100000ULL
#define CN__DFLAG_EXIT_PAYLOAD 0x400000ULL
#define CN__DFLAG_FRAGMENTS 0x800000ULL
#define CN__DFLAG_HANDSHAKE_23 0x1000000ULL
#define CN__DFLAG_UNLINK_ID 0x2000000ULL
#define CN__DFLAG_MANDATORY_25_DIGEST 0x4000000ULL
#define CN__DFLAG_SPAWN (1ULL << 32)
#define CN__DFLAG_NAME_ME (1ULL << 33)
#define CN__DFLAG_V4_NC (1ULL << 34)
#define CN__DFLAG_ALIAS (1ULL << 35)
#define CN__DFLAG_ALTACT_SIG (1ULL << 37) /* OTP 28 */

/* What OTP 25 requires of every peer (DFLAG_DIST_MANDATORY_25). */
#define CN__DFLAGS_MANDATORY_25                                                \
  (CN__DFLAG_EXTENDED_REFERENCES | CN__DFLAG_FUN_TAGS |                        \
   CN__DFLAG_EXTENDED_PIDS_PORTS | CN__DFLAG_UTF8_ATOMS |                      \
   CN__DFLAG_NEW_FUN_TAGS | CN__DFLAG_BIG_CREATION | CN__DFLAG_NEW_FLOATS |    \
   CN__DFLAG_MAP_TAG | CN__DFLAG_EXPORT_PTR_TAG | CN__DFLAG_BIT_BINARIES |     \
   CN__DFLAG_HANDSHAKE_23)

/* What OTP 26, 27 and 28 add to that (DFLAG_DIST_MANDATORY_26): every
 * peer of theirs must offer these too, or the handshake fails. */
#define CN__DFLAGS_MANDATORY_26 (CN__DFLAG_V4_NC | CN__DFLAG_UNLINK_ID)

/* What this node offers (a hidden node: PUBLISHED is added when the node
 * is published).  No atom cache: every frame we read is a pass-through
 * ('p') frame, a frame with a distribution header that refers to no atom
 * cache entry (131 'D' 0), or a fragment (131 'E'/'F').  Like erts
 * (DFLAG_DIST_DEFAULT) it also sends MANDATORY_25_DIGEST, the shorthand
 * for the OTP 25 set that later releases plan to require, and ALTACT_SIG,
 * so that an OTP 28+ peer may use ALTACT_SIG_SEND, which replaces
 * ALIAS_SEND (deprecated in OTP 28, removed in OTP 30). */
#define CN__DFLAGS_OURS                                                        \
  (CN__DFLAGS_MANDATORY_25 | CN__DFLAGS_MANDATORY_26 |                         \
   CN__DFLAG_DIST_MONITOR | CN__DFLAG_DIST_MONITOR_NAME |                      \
   CN__DFLAG_SMALL_ATOM_TAGS | CN__DFLAG_UNICODE_IO | CN__DFLAG_EXIT_PAYLOAD | \
   CN__DFLAG_BIG_SEQTRACE_LABELS | CN__DFLAG_ALIAS | CN__DFLAG_ALTACT_SIG |    \
   CN__DFLAG_SEND_SENDER | CN__DFLAG_FRAGMENTS |                               \
   CN__DFLAG_MANDATORY_25_DIGEST | CN__DFLAG_SPAWN)

/* ---- Control message operations ------------------------------------- */

enum cn__dop {
  CN__DOP_LINK = 1,
  CN__DOP_SEND = 2,
  CN__DOP_EXIT = 3,
  CN__DOP_UNLINK = 4, /* obsolete; not accepted */
  CN__DOP_NODE_LINK = 5,
  CN__DOP_REG_SEND = 6,
  CN__DOP_GROUP_LEADER = 7,
  CN__DOP_EXIT2 = 8,
  CN__DOP_SEND_TT = 12,
  CN__DOP_EXIT_TT = 13,
  CN__DOP_REG_SEND_TT = 16,
  CN__DOP_EXIT2_TT = 18,
  CN__DOP_MONITOR_P = 19,
  CN__DOP_DEMONITOR_P = 20,
  CN__DOP_MONITOR_P_EXIT = 21,
  CN__DOP_SEND_SENDER = 22,
  CN__DOP_SEND_SENDER_TT = 23,
  CN__DOP_PAYLOAD_EXIT = 24,
  CN__DOP_PAYLOAD_EXIT_TT = 25,
  CN__DOP_PAYLOAD_EXIT2 = 26,
  CN__DOP_PAYLOAD_EXIT2_TT = 27,
  CN__DOP_PAYLOAD_MONITOR_P_EXIT = 28,
  CN__DOP_SPAWN_REQUEST = 29,
  CN__DOP_SPAWN_REQUEST_TT = 30,
  CN__DOP_SPAWN_REPLY = 31,
  CN__DOP_SPAWN_REPLY_TT = 32,
  CN__DOP_ALIAS_SEND = 33,
  CN__DOP_ALIAS_SEND_TT = 34,
  CN__DOP_UNLINK_ID = 35,
  CN__DOP_UNLINK_ID_ACK = 36,
  CN__DOP_ALTACT_SIG_SEND = 37 /* OTP 28, with DFLAG_ALTACT_SIG */
};

/* The flags of ALTACT_SIG_SEND, {37, Flags, From, To} or
 * {37, Flags, From, To, Token}: a message (or, with EXIT, an exit signal
 * whose reason is the payload) to a pid, an alias (ALIAS) or a registered
 * name (NAME); PRIO marks a priority signal, TOKEN a trace token in the
 * fifth element.  Only the low byte has meaning yet. */
#define CN__ALTACT_PRIO 0x01
#define CN__ALTACT_TOKEN 0x02
#define CN__ALTACT_ALIAS 0x04
#define CN__ALTACT_NAME 0x08
#define CN__ALTACT_EXIT 0x10

/* ---- The handshake (version 6) --------------------------------------- */

/* What the accepting side answers a peer's send_name with, decided by the
 * node table (the arbitration of dist_util.erl). */
typedef enum cn__hs_status {
  CN__HS_ST_OK = 0,      /* "sok": go on */
  CN__HS_ST_OK_SIMUL,    /* "sok_simultaneous": go on; the caller aborts
                          * its own attempt to connect to the peer */
  CN__HS_ST_NOK,         /* "snok": we keep our own attempt; stop */
  CN__HS_ST_NOT_ALLOWED, /* "snot_allowed": stop */
  CN__HS_ST_ALIVE        /* "salive": we have a connection to that name;
                          * the peer answers true (replace it) or false */
} cn__hs_status;

/* Called on the accepting side once the peer's name is known.  name is
 * not NUL-terminated. */
typedef cn__hs_status (*cn__hs_arbitrate_fn)(void *arg, const char *name,
                                             size_t len, uint32_t creation);

typedef struct cn__hs {
  int state;             /* private */
  int initiator;         /* 1: we connected; 0: we accepted */
  const char *self_name; /* our node name (NUL-terminated, kept) */
  uint32_t self_creation;
  uint64_t self_flags;
  char cookie[256]; /* copied, NUL-terminated */
  size_t cookie_len;
  const char *expect_name; /* initiator: the node we dialled (kept) */
  cn__hs_arbitrate_fn arbitrate;
  void *arbitrate_arg;
  uint32_t my_challenge; /* from RAND_bytes (tests may set it) */
  uint32_t peer_challenge;
  /* Known once the handshake is done (peer_name as soon as it is read).
   * peer_name is name@host, printable ASCII, NUL-terminated.  peer_flags
   * are the flags the peer sent, with MANDATORY_25_DIGEST expanded to the
   * flags it stands for; what the connection may use is
   * peer_flags & self_flags (dist_util's adjust_flags). */
  char peer_name[CN_MAX_NODE_NAME + 1];
  size_t peer_name_len;
  uint64_t peer_flags;
  uint32_t peer_creation;
  int replaces;      /* accepting side: the peer said true to
                      * "alive"; the old connection must go */
  const char *error; /* static text for the log when one failed */
  int len4;          /* 4-byte length prefixes, as inet_tls_dist's
                      * {packet, 4} (set after cn__hs_init) */
} cn__hs;

/* Sets h up.  initiator: 1 when we dialled expect_name.  arbitrate is used
 * only on the accepting side (NULL: always CN__HS_ST_OK).  Returns 0, or
 * CN_EINVAL (cookie over 255 bytes; self_name NULL, empty or over
 * CN_MAX_NODE_NAME; an initiator without expect_name) or CN_ESYSTEM (no
 * random source). */
int cn__hs_init(cn__hs *h, int initiator, const char *self_name,
                uint32_t self_creation, uint64_t self_flags, const char *cookie,
                const char *expect_name, cn__hs_arbitrate_fn arbitrate,
                void *arg);

/* The initiator's first message (send_name 'N', with its 2-byte length
 * prefix), appended to out.  Returns 0, CN_ENOMEM (h is unchanged, so
 * begin may be retried) or CN_EINVAL (not an initiator, or called
 * twice). */
int cn__hs_begin(cn__hs *h, cn_buf *out);

/* Feeds bytes read from the socket.  Consumes whole handshake messages
 * (2-byte big-endian length prefix) from buf and sets *used to the bytes
 * consumed; appends what must be sent to out.  Returns:
 *   0           more bytes are needed;
 *   1           the handshake is complete; bytes after *used are the
 *               connection's first frames;
 *   CN_EAUTH    a wrong digest (wrong cookie);
 *   CN_EEXIST   refused by arbitration (nok, alive answered false);
 *   CN_ENOTSUP  the peer lacks a mandatory flag or speaks an old version;
 *   CN_EPROTO   anything malformed or out of order, an implausible
 *               node name, or (initiator) a peer that is not
 *               expect_name;
 *   CN_ENOMEM;
 *   CN_ESYSTEM  OpenSSL cannot compute MD5 (FIPS mode);
 *   CN_EINVAL   an initiator fed before cn__hs_begin.
 * After an error h->error says why; out may hold a status to send
 * before closing ("snot_allowed" for a peer lacking mandatory flags or
 * asking for a dynamic name, and when arbitration says not_allowed;
 * "snok" for nok).  An acceptor's arbitration refusal (nok, not_allowed)
 * and an initiator's receipt of "snok" or "snot_allowed" are CN_EEXIST.
 * Once it has failed, h returns the same error from every later feed;
 * once complete, it returns 1 and consumes nothing. */
int cn__hs_feed(cn__hs *h, const char *buf, size_t len, size_t *used,
                cn_buf *out);

/* True when h is an initiator that sent its challenge_reply (its digest
 * of the cookie) and waits for the challenge_ack.  A BEAM peer that finds
 * the digest wrong says nothing: it closes the connection (dist_util's
 * recv_challenge_reply), so a close at this point is how an initiator
 * learns that its cookie was refused. */
bool cn__hs_awaits_ack(const cn__hs *h);

/* The digest: MD5 of the cookie followed by the challenge as a decimal
 * unsigned integer (dist_util:gen_digest/2).  When MD5 is unavailable
 * (OpenSSL in FIPS mode) out is zeroed; the handshake itself checks for
 * that and fails with CN_ESYSTEM instead. */
void cn__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
                   unsigned char out[16]);

/* ---- epmd ------------------------------------------------------------ */

/* ALIVE2_REQ (with its 2-byte length prefix) for alive (the part of the
 * node name before '@'), appended to out.  hidden picks node type 72
 * (hidden) over 77 (normal); versions are 6..6, as OTP 25 registers.
 * Returns 0, CN_ENOMEM, or CN_EINVAL (alive NULL, empty or over 255
 * bytes). */
int cn__epmd_alive2_req(cn_buf *out, const char *alive, uint16_t port,
                        int hidden);

/* Parses ALIVE2_X_RESP (or ALIVE2_RESP).  buf holds every byte read from
 * epmd so far.  Returns 0 with *creation set, 1 when more bytes are
 * needed, CN_EEXIST when epmd refused (the name is taken; known from the
 * first two bytes), CN_EPROTO when malformed or followed by more bytes. */
int cn__epmd_alive2_resp(const char *buf, size_t len, uint32_t *creation);

/* PORT_PLEASE2_REQ for alive, appended to out.  Returns as
 * cn__epmd_alive2_req. */
int cn__epmd_port2_req(cn_buf *out, const char *alive);

/* Parses PORT2_RESP.  Returns 0 with *port and *highest_version set,
 * 1 when more bytes are needed, CN_ENOENT when epmd does not know the
 * name, CN_EPROTO when malformed.  As in erl_epmd, the answer is complete
 * after its first 10 bytes (up to the lowest version); the name and
 * Extra that follow are ignored.  The caller checks that the peer speaks
 * version 6 (*highest_version >= 6). */
int cn__epmd_port2_resp(const char *buf, size_t len, uint16_t *port,
                        uint16_t *highest_version);

/* Runs `epmd -daemon` (found on PATH) and waits for it to return.  Blocks:
 * call it from a thread that may block.  Returns 0, or CN_ESYSTEM. */
int cn__epmd_spawn_daemon(void);

/* ---- Frames and control messages ------------------------------------ */

/* A parsed control message.  Terms point into the frame. */
typedef struct cn__ctl {
  int op;          /* CN__DOP_* */
  cn_term from;    /* sender pid (or, in MONITOR_P_EXIT, pid or atom) */
  cn_term to;      /* pid; atom for REG_SEND and by-name monitors;
                    * ref for ALIAS_SEND */
  cn_term ref;     /* MONITOR_P, DEMONITOR_P, MONITOR_P_EXIT */
  cn_term reason;  /* EXIT, EXIT2, MONITOR_P_EXIT (inline or payload) */
  cn_term token;   /* the _TT trace token, when present */
  uint64_t id;     /* UNLINK_ID, UNLINK_ID_ACK */
  int altact;      /* the flags (CN__ALTACT_*) when the message came
                    * as an ALTACT_SIG_SEND; 0 otherwise */
  cn_term msg;     /* the message of a send; SPAWN_REQUEST's argument
                    * list */
  cn_term mfa;     /* SPAWN_REQUEST: {Module, Function, Arity} */
  cn_term opts;    /* SPAWN_REQUEST: the option list */
  int has_payload; /* the op carries a payload term */
} cn__ctl;

/* The distribution header's tags (erl_ext_dist): a header with atom
 * cache references, and the first and later fragments of a message. */
#define CN__DIST_HEADER 68      /* 'D' */
#define CN__DIST_FRAG_HEADER 69 /* 'E' */
#define CN__DIST_FRAG_CONT 70   /* 'F' */

/* What a frame's content (the bytes after the 4-byte length) is, from its
 * first bytes, before anything parses it.  As erts: a peer that took
 * fragments (hdr) sends distribution headers (131), one that did not
 * pass-through frames ('p'); nothing else. */
typedef enum cn__frame_kind {
  CN__FRAME_BAD,       /* neither: the connection must close */
  CN__FRAME_WHOLE,     /* a control message (and payload) in one frame */
  CN__FRAME_FRAG_HEAD, /* the first fragment of a message */
  CN__FRAME_FRAG_CONT  /* a later fragment */
} cn__frame_kind;

static inline cn__frame_kind cn__frame_kind_of(const char *frame, size_t len,
                                               bool hdr) {
  if (len < 1 || (unsigned char)frame[0] != (hdr ? 131 : 'p'))
    return CN__FRAME_BAD;
  if (hdr && len >= 2 && (unsigned char)frame[1] == CN__DIST_FRAG_HEADER)
    return CN__FRAME_FRAG_HEAD;
  if (hdr && len >= 2 && (unsigned char)frame[1] == CN__DIST_FRAG_CONT)
    return CN__FRAME_FRAG_CONT;
  return CN__FRAME_WHOLE;
}

/* Parses one frame's content: the bytes after the 4-byte length.  Either
 * a pass-through frame, 'p' (112) then the control term (with its version
 * byte 131) and, for ops that have one, the payload term (also with 131);
 * or a frame with a distribution header that refers to no atom cache
 * entries (131, 'D', 0), then the two terms without version bytes, as OTP
 * nodes send to a peer that offers DFLAG_FRAGMENTS.  Both are checked by the
 * bounded validator with lim before anything reads them.  Returns: 0 ok;
 *   CN_EPROTO    the frame or its control message is malformed, of an
 *                unknown or unsupported op, lacks its payload, or has
 *                bytes after a control message that takes no payload:
 *                the connection must close;
 *   CN_EBADTERM, CN_ETOODEEP, CN_ETOOBIG
 *                the control message is sound but the payload is
 *                malformed (a missing version byte or bytes after it
 *                included) or over a limit: drop the message, keep the
 *                connection (out->op,
 *                the control fields and has_payload are set; msg and
 *                reason are empty);
 *   CN_ENOMEM    no memory for the validator's stack.
 * The payload of a PAYLOAD_EXIT* or PAYLOAD_MONITOR_P_EXIT goes to
 * out->reason, that of a send to out->msg.  The fields a tuple does not
 * have stay empty (zero), such as from in SEND.  Pids, atoms and
 * references are type-checked (which node a pid is of is the caller's
 * business); Unused, Reason and Token may be any term.
 * SPAWN_REQUEST(_TT) {29, ReqId, From, GroupLeader, {M, F, A}, OptList}
 * sets ref, from, mfa (a tuple of two atoms and an arity), opts (a list)
 * and, as the payload, msg (the argument list).  We never send a
 * SPAWN_REQUEST, so SPAWN_REPLY is CN_EPROTO, as are UNLINK, NODE_LINK
 * and GROUP_LEADER.
 *
 * An ALTACT_SIG_SEND (OTP 28) is read into the op that says the same
 * with the older control messages, with out->altact holding its flags:
 * a message to a pid is a SEND_SENDER, to an alias an ALIAS_SEND, to a
 * name a REG_SEND; an exit signal to a pid is a PAYLOAD_EXIT2.  An exit
 * signal to an alias or to a name has no older form and keeps op
 * CN__DOP_ALTACT_SIG_SEND (reason in out->reason, target in out->to).
 * PRIO needs nothing here: a C process never asks for priority
 * messages, and erts delivers a priority signal to a process that did
 * not ask for them as an ordinary one. */
int cn__ctl_parse(const char *frame, size_t len, const cn_term_limits *lim,
                  cn__ctl *out);

/* The same for the first bytes of a frame too large to keep: only the
 * control term must be there, and the op must take a payload.  Returns 0
 * with *payload set to where the payload term starts (past its version
 * byte), CN_EPROTO, CN_EBADTERM (no version byte) or CN_ENOMEM. */
int cn__ctl_parse_head(const char *frame, size_t len, const cn_term_limits *lim,
                       cn__ctl *out, size_t *payload);

/* Reads the head of a payload that may be cut short: when it starts
 * {'$gen_call', {Pid, Tag}, ..., sets *caller and *tag (views into pay)
 * and returns 0; otherwise CN_ENOMATCH.  For failing a call whose
 * message was refused unread. */
int cn__call_head(const char *pay, size_t len, cn_term *caller, cn_term *tag);

/* ---- Fragments (DFLAG_FRAGMENTS) ------------------------------------ */

#define CN__FRAG_HDR_FIRST 19 /* 131 'E' SeqId(8) FragId(8) 0 */
#define CN__FRAG_HDR_NEXT 18  /* 131 'F' SeqId(8) FragId(8) */
#define CN__FRAG_SIZE                                                          \
  65536 /* the body of each fragment we send, as                               \
         * an OTP node cuts them */
#define CN__FRAG_HEAD                                                          \
  4096                         /* bytes of a refused message kept to find      \
                                * a call in it */
#define CN__FRAG_MAX_SEQS 4096 /* sequences in progress per connection */

/* A message being reassembled: 131 'D' 0, then the bodies so far. */
typedef struct cn__frag_seq {
  struct cn__frag_seq *next;
  uint64_t id;   /* the sender's sequence id */
  uint64_t left; /* fragments still to come */
  char *data;    /* from cn__block_alloc */
  size_t len, cap;
  size_t bcap; /* data's real capacity (cap or more) */
  int refused; /* over a limit: the rest is dropped */
} cn__frag_seq;

/* The sequences in progress on one connection. */
typedef struct cn__frags {
  cn__frag_seq *seqs; /* most recently fed first */
  size_t n;           /* sequences in progress */
  size_t bytes;       /* their memory, bookkeeping included */
  size_t max_body;    /* per sequence: control term and payload */
  size_t budget;      /* all sequences together */
  uint64_t refused;   /* sequences refused so far */
} cn__frags;

enum {
  CN__FRAG_MORE = 0,   /* taken; the message is not complete yet */
  CN__FRAG_DONE = 1,   /* *done holds a whole frame */
  CN__FRAG_REFUSED = 2 /* the sequence went over a limit: *head holds its
                        * first bytes, as a frame cut short */
};

/* Sets up an empty set of sequences with its limits. */
void cn__frags_init(cn__frags *f, size_t max_body, size_t budget);

/* Frees every sequence in progress. */
void cn__frags_free(cn__frags *f);

/* Feeds one frame (the bytes after the 4-byte length) that starts with
 * 131 'E' or 131 'F'.  Returns CN__FRAG_MORE; CN__FRAG_DONE with the
 * message in *done as one frame, 131 'D' 0 then the control term and the
 * payload (done's old contents are freed; the caller frees it); or
 * CN__FRAG_REFUSED, once per refused sequence, with *head holding its
 * first (up to CN__FRAG_HEAD) bytes in the same form.  Errors, after
 * which the connection must close: CN_EPROTO (a malformed header, atom
 * cache references, a FragId of 0, a first fragment for a sequence in
 * progress, a continuation of none, or one out of order) and CN_ENOMEM.
 * A sequence over max_body or over the budget, or one past
 * CN__FRAG_MAX_SEQS at once, is refused, never an error. */
int cn__frags_feed(cn__frags *f, const char *frame, size_t len, cn_buf *done,
                   cn_buf *head);

/* Writes a fragment header: the first one's (CN__FRAG_HDR_FIRST bytes,
 * with no atom cache references) or a continuation's
 * (CN__FRAG_HDR_NEXT). */
void cn__frag_header(char out[CN__FRAG_HDR_FIRST], int first, uint64_t id,
                     uint64_t frag);

#endif /* CN_DIST_PROTO_H */
