/* Between the runtime's messages and the wire: encoding what local
 * processes send to other nodes, delivering what comes in, and the link
 * and monitor records that make node-down signals possible.  Runs on the
 * dist loop only.
 *
 * Pids and references in control messages are read with the term layer's
 * "known" readers: a peer cannot make us intern node names that way (the
 * node table is process-wide and bounded), and a field naming a node no
 * one has heard of is no field we could use anyway. */
#include "dist_internal.h"
#include "term/term_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Record tables ---------------------------------------------------- */

static uint64_t link_hash(cn_pid local, cn_pid remote) {
  /* Keyed, since peers choose the remote pids (and their node names). */
  cn__sip s;
  cn__sip_init(&s, cn__hash_key());
  cn__sip_word(&s, (uint64_t)local.node | (uint64_t)local.id << 32);
  cn__sip_word(&s, (uint64_t)local.serial | (uint64_t)local.creation << 32);
  cn__sip_word(&s, (uint64_t)remote.node | (uint64_t)remote.id << 32);
  cn__sip_word(&s, (uint64_t)remote.serial | (uint64_t)remote.creation << 32);
  return cn__sip_final(&s);
}

static cn__rec *rec_of(cn__hnode *n) {
  return cn__container_of(n, cn__rec, node);
}

typedef struct mon_key {
  const cn_ref *ref;
  int kind;
} mon_key;

static bool mon_is(const cn__hnode *n, const void *key) {
  const cn__rec *r = cn__container_of(n, cn__rec, node);
  const mon_key *k = key;
  return r->kind == k->kind && cn_ref_equal(&r->ref, k->ref);
}

typedef struct link_key {
  cn_pid local, remote;
} link_key;

static bool link_is(const cn__hnode *n, const void *key) {
  const cn__rec *r = cn__container_of(n, cn__rec, node);
  const link_key *k = key;
  return r->kind == REC_LINK && cn_pid_equal(&r->local, &k->local) &&
         cn_pid_equal(&r->remote, &k->remote);
}

/* Records come from the schedulers' caches (a call from a BEAM client
 * adds one and takes it again). */
_Static_assert(sizeof(cn__rec) <= CN__REC_DIST_SIZE,
               "a connection's record fits CN__REC_DIST");

static void rec_free(cn__rec *r);

static cn__rec *rec_add(cn__rtab *t, int kind, const cn_ref *ref, cn_pid local,
                        cn_pid remote, const char *name) {
  cn__rec *r;
  if (!(r = cn__rec_alloc(CN__REC_DIST)))
    return NULL;
  memset(r, 0, sizeof(*r));
  if (name && !(r->name = strdup(name))) {
    cn__rec_free(CN__REC_DIST, r);
    return NULL;
  }
  r->kind = (uint8_t)kind;
  if (ref)
    r->ref = *ref;
  r->local = local;
  r->remote = remote;
  if (cn__htab_add(t, &r->node,
                   kind == REC_LINK ? link_hash(local, remote)
                                    : cn__ref_hash(&r->ref)) != 0) {
    rec_free(r);
    return NULL;
  }
  return r;
}

static void rec_free(cn__rec *r) {
  free(r->name);
  cn__rec_free(CN__REC_DIST, r);
}

/* Takes the monitor record for ref (of the given kind) out of t. */
static cn__rec *mon_take(cn__rtab *t, const cn_ref *ref, int kind) {
  mon_key k = {ref, kind};
  cn__hnode *n = cn__htab_take(t, cn__ref_hash(ref), mon_is, &k);
  return n ? rec_of(n) : NULL;
}

static cn__rec *mon_find(cn__rtab *t, const cn_ref *ref, int kind) {
  mon_key k = {ref, kind};
  cn__hnode **lp = cn__htab_find(t, cn__ref_hash(ref), mon_is, &k);
  return lp ? rec_of(*lp) : NULL;
}

static void link_add(cn__rtab *t, cn_pid local, cn_pid remote) {
  link_key k = {local, remote};
  if (!cn__htab_find(t, link_hash(local, remote), link_is, &k))
    rec_add(t, REC_LINK, NULL, local, remote, NULL);
}

static void link_remove(cn__rtab *t, cn_pid local, cn_pid remote) {
  link_key k = {local, remote};
  cn__hnode *n = cn__htab_take(t, link_hash(local, remote), link_is, &k);
  if (n)
    rec_free(rec_of(n));
}

static void free_rec(cn__hnode *n, void *arg) {
  (void)arg;
  rec_free(rec_of(n));
}

void cn__rtab_free(cn__rtab *t) { cn__htab_drain(t, free_rec, NULL); }

/* ---- Signals to local processes --------------------------------------- */

/* A signal to a local process: a monitor's or demonitor's carries the
 * hash its record in the connection's table took (ref_hash, else 0), so
 * that the process's own table need not hash the reference again. */
static void hashed_signal(cn__dist *d, int kind, cn_pid to, cn_pid from,
                          const cn_ref *ref, uint64_t ref_hash,
                          const char *name, cn_term data, int flags) {
  cn__msg *m = cn__msg_new(kind, data.ptr, data.len);
  if (!m)
    return;
  m->from = from;
  m->flags = (uint8_t)flags;
  if (ref)
    m->ref = *ref;
  if (kind == CN__S_MONITOR || kind == CN__S_DEMONITOR)
    m->ref_hash = ref_hash;
  if (name && !(m->name = strdup(name))) {
    cn__msg_free(m);
    return;
  }
  if (kind == CN__S_LINK || kind == CN__S_MONITOR)
    cn__signal(d->rt, to, m);
  else
    cn__deliver(d->rt, to, m);
}

static void local_signal(cn__dist *d, int kind, cn_pid to, cn_pid from,
                         const cn_ref *ref, const char *name, cn_term data,
                         int flags) {
  hashed_signal(d, kind, to, from, ref, 0, name, data, flags);
}

static const cn_term no_term = {NULL, 0};

/* ---- Encoding --------------------------------------------------------- */

/* Frames to a peer that takes fragments carry a distribution header that
 * refers to no atom cache entry (131 'D' 0) and terms without version
 * bytes: erts expects exactly that from such a peer, and refuses a
 * pass-through frame.  Older peers get pass-through frames ('p', then
 * each term with its version byte 131). */
static bool dist_header(const cn__conn *c) {
  return (c->peer_flags & CN__DFLAG_FRAGMENTS) != 0;
}

static size_t frame_begin(const cn__conn *c, cn_buf *b) {
  static const char pass[6] = {0, 0, 0, 0, 'p', (char)131};
  static const char hdr[7] = {0, 0, 0, 0, (char)131, CN__DIST_HEADER, 0};
  size_t mark = b->len;
  if (dist_header(c))
    cn_buf_append(b, hdr, sizeof(hdr));
  else
    cn_buf_append(b, pass, sizeof(pass));
  return mark;
}

/* Before a payload term. */
static void put_version(const cn__conn *c, cn_buf *b) {
  static const char v = (char)131;
  if (!dist_header(c))
    cn_buf_append(b, &v, 1);
}

/* Closes a frame opened at mark.  A frame that could not be built whole
 * (no memory) is taken back out, so the stream stays well-formed. */
static int frame_end(cn__dist *d, cn_buf *b, size_t mark) {
  size_t n = b->len - mark - 4;
  unsigned char *p = (unsigned char *)b->data + mark;
  if (b->err || n > UINT32_MAX) {
    b->len = mark;
    b->err = 0;
    cn__dist_log(d, CN_LOG_WARNING, "a message could not be encoded; dropped");
    return CN_ENOMEM;
  }
  p[0] = (unsigned char)(n >> 24);
  p[1] = (unsigned char)(n >> 16);
  p[2] = (unsigned char)(n >> 8);
  p[3] = (unsigned char)n;
  atomic_fetch_add_explicit(&d->st_frames_out, 1, memory_order_relaxed);
  return 0;
}

static bool pid_set(const cn_pid *p) { return p->id || p->serial; }

/* The sender of a message that has none (a plain thread's cn_send): the
 * node's net_kernel, as the BEAM needs a pid in REG_SEND. */
static cn_pid sender_of(cn__dist *d, cn_pid from) {
  return pid_set(&from) ? from : d->net_kernel;
}

/* Starts a send of a message to `to` (pid, or m->name there): the control
 * message, then the payload's version byte.  The caller appends the
 * payload and calls frame_end. */
static size_t begin_send(cn__dist *d, cn__conn *c, cn_buf *b, cn_pid from,
                         cn_pid to, const char *name) {
  size_t mark = frame_begin(c, b);
  if (name) {
    cn_put_tuple(b, 4);
    cn_put_int(b, CN__DOP_REG_SEND);
    cn_put_pid(b, &from);
    cn_put_atom(b, "");
    cn_put_atom(b, name);
  } else if ((c->peer_flags & CN__DFLAG_SEND_SENDER) && pid_set(&from)) {
    cn_put_tuple(b, 3);
    cn_put_int(b, CN__DOP_SEND_SENDER);
    cn_put_pid(b, &from);
    cn_put_pid(b, &to);
  } else {
    cn_put_tuple(b, 3);
    cn_put_int(b, CN__DOP_SEND);
    cn_put_atom(b, "");
    cn_put_pid(b, &to);
  }
  put_version(c, b);
  return mark;
}

/* The remote end of a monitor: the pid, or the name as an atom. */
static void put_proc(cn_buf *b, cn_pid pid, const char *name) {
  if (name)
    cn_put_atom(b, name);
  else
    cn_put_pid(b, &pid);
}

static void encode_exitish(cn__dist *d, cn__conn *c, cn_buf *b, int op,
                           int payload_op, cn_pid from, cn_pid to,
                           const cn_ref *ref, const char *name,
                           cn_term reason) {
  size_t mark = frame_begin(c, b);
  bool payload = (c->peer_flags & CN__DFLAG_EXIT_PAYLOAD) != 0;
  int arity = (ref ? 4 : 3) + (payload ? 0 : 1);
  cn_put_tuple(b, (uint32_t)arity);
  cn_put_int(b, payload ? payload_op : op);
  put_proc(b, from, name);
  cn_put_pid(b, &to);
  if (ref)
    cn_put_ref(b, ref);
  if (payload)
    put_version(c, b);
  cn_put_term(b, reason);
  frame_end(d, b, mark);
}

/* Payloads this long and up, queued behind a stream, are not copied: the
 * frame ends with the message's own bytes (cn__conn_attach).  A reply
 * that cn__route_reply splits off its handler's buffer (CN__ADOPT_MIN
 * and up) must go out that way too, or it would be copied after all. */
#define TAIL_MIN ((size_t)16 << 10)
_Static_assert(CN__ADOPT_MIN >= TAIL_MIN, "split replies go out uncopied");

/* Ends a send frame opened at mark with m's data as its payload: a copy
 * in b, or, for a large one in a stream, m itself, which then belongs
 * to the stream (returns true). */
static bool put_payload(cn__dist *d, cn__conn *c, cn_buf *b, size_t mark,
                        cn__msg *m) {
  cn_term data = {m->data, m->len};
  const char *tail = m->data;
  size_t tlen = m->len, n;
  unsigned char *p;
  if (m->kind == CN__M_REPLY && m->aux) {
    /* A split reply (see cn__route_reply): {Tag, then the reply in the
     * handler's own buffer. */
    cn_buf_append(b, m->data, m->aux);
    tail = m->block;
    tlen = m->len - m->aux;
    data = (cn_term){tail, tlen};
  }
  n = b->len - mark - 4 + tlen;
  if (tlen < TAIL_MIN || b->err || n > UINT32_MAX ||
      !cn__conn_attach(c, b, m, tail, tlen)) {
    cn_put_term(b, data);
    frame_end(d, b, mark);
    return false;
  }
  p = (unsigned char *)b->data + mark;
  p[0] = (unsigned char)(n >> 24);
  p[1] = (unsigned char)(n >> 16);
  p[2] = (unsigned char)(n >> 8);
  p[3] = (unsigned char)n;
  atomic_fetch_add_explicit(&d->st_frames_out, 1, memory_order_relaxed);
  return true;
}

static void encode(cn__dist *d, cn__conn *c, cn__dnode *dn, cn_pid to,
                   cn__msg *m) {
  /* Into the output buffer, or behind the sender's earlier large
   * messages (see "Large messages" in dist_internal.h). */
  cn_buf *b = cn__conn_target(
      c, m->kind == CN__M_CALL && m->cfrom ? m->cfrom->pid : m->from, to,
      m->len);
  cn_term data = {m->data, m->len};
  const char *toname = (m->flags & CN__F_TONAME) ? m->name : NULL;
  size_t mark;
  cn__rec *r;
  bool kept = false; /* m went with its frame */

  switch (m->kind) {
  case CN__M_MSG:
    mark = begin_send(d, c, b, sender_of(d, m->from), to, toname);
    kept = put_payload(d, c, b, mark, m);
    break;
  case CN__M_CAST:
    mark = begin_send(d, c, b, sender_of(d, m->from), to, toname);
    cn_put_tuple(b, 2);
    cn_put_atom(b, "$gen_cast");
    kept = put_payload(d, c, b, mark, m);
    break;
  case CN__M_CALL: {
    /* gen:call's shape: monitor the server, then send with the monitor
     * ref as the alias in the tag, so that a late reply is dropped here
     * once we demonitor. */
    cn_pid caller = m->cfrom->pid;
    const cn_ref *ref = &m->cfrom->ref;
    if (m->flags & CN__F_CALLMON) {
      if (!rec_add(&dn->mons, REC_OMON, ref, caller, to, toname)) {
        cn__route_fail(d, m);
        return;
      }
      mark = frame_begin(c, b);
      cn_put_tuple(b, 4);
      cn_put_int(b, CN__DOP_MONITOR_P);
      cn_put_pid(b, &caller);
      put_proc(b, to, toname);
      cn_put_ref(b, ref);
      frame_end(d, b, mark);
    }
    mark = begin_send(d, c, b, caller, to, toname);
    cn_put_tuple(b, 3);
    cn_put_atom(b, "$gen_call");
    cn_put_tuple(b, 2);
    cn_put_pid(b, &caller);
    cn_put_list(b, 1);
    cn_put_atom(b, "alias");
    cn_put_ref(b, ref);
    kept = put_payload(d, c, b, mark, m);
    break;
  }
  case CN__M_REPLY:
    /* To a remote caller: data is {Tag, Reply}. */
    if ((m->flags & CN__F_ALIAS) && (c->peer_flags & CN__DFLAG_ALTACT_SIG)) {
      /* OTP 28 deprecates ALIAS_SEND for this, and OTP 30 drops it. */
      mark = frame_begin(c, b);
      cn_put_tuple(b, 4);
      cn_put_int(b, CN__DOP_ALTACT_SIG_SEND);
      cn_put_int(b, CN__ALTACT_ALIAS);
      cn_put_pid(b, &m->from);
      cn_put_ref(b, &m->ref);
      put_version(c, b);
    } else if ((m->flags & CN__F_ALIAS) && (c->peer_flags & CN__DFLAG_ALIAS)) {
      mark = frame_begin(c, b);
      cn_put_tuple(b, 3);
      cn_put_int(b, CN__DOP_ALIAS_SEND);
      cn_put_pid(b, &m->from);
      cn_put_ref(b, &m->ref);
      put_version(c, b);
    } else {
      mark = begin_send(d, c, b, m->from, to, NULL);
    }
    kept = put_payload(d, c, b, mark, m);
    break;
  case CN__S_EXIT:
    if (m->flags & CN__F_LINKED) {
      link_remove(&dn->links, m->from, to);
      encode_exitish(d, c, b, CN__DOP_EXIT, CN__DOP_PAYLOAD_EXIT, m->from, to,
                     NULL, NULL, data);
    } else {
      encode_exitish(d, c, b, CN__DOP_EXIT2, CN__DOP_PAYLOAD_EXIT2, m->from, to,
                     NULL, NULL, data);
    }
    break;
  case CN__S_LINK:
    link_add(&dn->links, m->from, to);
    mark = frame_begin(c, b);
    cn_put_tuple(b, 3);
    cn_put_int(b, CN__DOP_LINK);
    cn_put_pid(b, &m->from);
    cn_put_pid(b, &to);
    frame_end(d, b, mark);
    break;
  case CN__S_UNLINK:
    link_remove(&dn->links, m->from, to);
    mark = frame_begin(c, b);
    cn_put_tuple(b, 4);
    cn_put_int(b, CN__DOP_UNLINK_ID);
    cn_put_uint(b, ++dn->unlink_id);
    cn_put_pid(b, &m->from);
    cn_put_pid(b, &to);
    frame_end(d, b, mark);
    break;
  case CN__S_MONITOR: {
    const char *name = (m->flags & CN__F_BYNAME) ? m->name : NULL;
    if (!rec_add(&dn->mons, REC_OMON, &m->ref, m->from, to, name)) {
      cn__route_fail(d, m);
      return;
    }
    mark = frame_begin(c, b);
    cn_put_tuple(b, 4);
    cn_put_int(b, CN__DOP_MONITOR_P);
    cn_put_pid(b, &m->from);
    put_proc(b, to, name);
    cn_put_ref(b, &m->ref);
    frame_end(d, b, mark);
    break;
  }
  case CN__S_DEMONITOR:
    if (!(r = mon_take(&dn->mons, &m->ref, REC_OMON)))
      break; /* the DOWN came first, or the connection went */
    mark = frame_begin(c, b);
    cn_put_tuple(b, 4);
    cn_put_int(b, CN__DOP_DEMONITOR_P);
    cn_put_pid(b, &r->local);
    put_proc(b, r->remote, r->name);
    cn_put_ref(b, &m->ref);
    frame_end(d, b, mark);
    rec_free(r);
    break;
  case CN__S_DOWN:
    /* One of our processes answers a remote monitor. */
    if ((r = mon_take(&dn->mons, &m->ref, REC_TMON)) != NULL)
      rec_free(r);
    encode_exitish(d, c, b, CN__DOP_MONITOR_P_EXIT,
                   CN__DOP_PAYLOAD_MONITOR_P_EXIT, m->from, to, &m->ref,
                   (m->flags & CN__F_BYNAME) ? m->name : NULL, data);
    break;
  default:
    break;
  }
  if (!kept)
    cn__msg_free(m);
  cn__conn_queued(c, b);
}

/* Kinds that only clean up after an earlier signal: with no connection
 * they have nothing left to do. */
static bool cleanup_only(const cn__msg *m) {
  return m->kind == CN__S_DEMONITOR || m->kind == CN__S_UNLINK ||
         m->kind == CN__S_DOWN || m->kind == CN__M_REPLY ||
         (m->kind == CN__S_EXIT && (m->flags & CN__F_LINKED));
}

void cn__route_out(cn__dist *d, cn_pid to, cn__msg *m) {
  cn__dnode *dn;
  if (to.node == d->rt->node) {
    /* Our own name with another creation: an earlier incarnation's pid,
     * which names no one now. */
    cn__msg_free(m);
    return;
  }
  if (!(dn = cn__dnode_get(d, to.node, 1))) {
    cn__route_fail(d, m);
    return;
  }
  if (dn->conn) {
    encode(d, dn->conn, dn, to, m);
    return;
  }
  if (cleanup_only(m) && !dn->pending && !dn->wq_head) {
    cn__msg_free(m);
    return;
  }
  /* Connect on first send, as the BEAM does; the message waits. */
  m->to = to;
  m->next = NULL;
  if (dn->wq_tail)
    dn->wq_tail->next = m;
  else
    dn->wq_head = m;
  dn->wq_tail = m;
  cn__dist_connect_node(d, dn);
  if (!dn->pending && !dn->conn) /* could not even start */
    cn__dist_fail_queue(d, dn, CN_ENOCONN);
}

void cn__route_fail(cn__dist *d, cn__msg *m) {
  cn_term nc = cn__atom_term("noconnection");
  const char *name =
      (m->flags & (CN__F_TONAME | CN__F_BYNAME)) ? m->name : NULL;
  int byname = name ? CN__F_BYNAME : 0;
  switch (m->kind) {
  case CN__M_CALL:
    if (m->cfrom && (m->flags & CN__F_CALLMON))
      local_signal(d, CN__S_DOWN, m->cfrom->pid, m->to, &m->cfrom->ref, name,
                   nc, byname);
    break;
  case CN__S_LINK:
    local_signal(d, CN__S_EXIT, m->from, m->to, NULL, NULL, nc, CN__F_LINKED);
    break;
  case CN__S_MONITOR:
    local_signal(d, CN__S_DOWN, m->from, m->to, &m->ref, name, nc, byname);
    break;
  default:
    break;
  }
  cn__msg_free(m);
}

/* A record of a connection that went: its signal fires, and it goes. */
static void fire_rec(cn__hnode *n, void *arg) {
  cn__dist *d = arg;
  cn__rec *r = rec_of(n);
  cn_term nc = cn__atom_term("noconnection");
  if (r->kind == REC_LINK)
    local_signal(d, CN__S_EXIT, r->local, r->remote, NULL, NULL, nc,
                 CN__F_LINKED);
  else if (r->kind == REC_OMON)
    local_signal(d, CN__S_DOWN, r->local, r->remote, &r->ref, r->name, nc,
                 r->name ? CN__F_BYNAME : 0);
  else
    local_signal(d, CN__S_DEMONITOR, r->local, r->remote, &r->ref, NULL,
                 no_term, 0);
  rec_free(r);
}

void cn__route_node_down(cn__dist *d, cn__dnode *dn) {
  /* Both tables are detached before any record fires, so what the
   * signals cause never sees them half-cleared. */
  cn__rtab links = dn->links, mons = dn->mons;
  dn->links = (cn__rtab)CN__HTAB_INIT;
  dn->mons = (cn__rtab)CN__HTAB_INIT;
  cn__htab_drain(&links, fire_rec, d);
  cn__htab_drain(&mons, fire_rec, d);
}

/* ---- Incoming --------------------------------------------------------- */

/* ---- Answering a remote caller ----------------------------------------- */

/* How to answer a gen_server:call from another node: its tag, copied.  A
 * cn_from holds it, opaque to the runtime (cn_from.route). */
typedef struct call_route {
  size_t len;
  char tag[];
} call_route;

static call_route *route_new(cn_term tag) {
  call_route *r = malloc(sizeof(*r) + tag.len);
  if (r) {
    r->len = tag.len;
    memcpy(r->tag, tag.ptr, tag.len);
  }
  return r;
}

/* The reply gen_server:call waits for, {Tag, Reply}, sent to the caller's
 * alias when its tag has one (OTP 24+ callers tag a call [alias | Ref]; a
 * reply sent to the alias is dropped once the caller has given up). */
int cn__route_reply(cn_runtime *rt, const cn_from *from, cn_term reply,
                    cn_buf *own) {
  const call_route *r = from->route;
  cn_term tag = {r->tag, r->len};
  size_t n = 2 + tag.len + reply.len; /* SMALL_TUPLE_EXT, arity, Tag, Reply */
  cn__msg *m;
  cn_buf b;
  if (own && own->on_heap && own->data == reply.ptr && own->len == reply.len &&
      reply.len >= CN__ADOPT_MIN && 2 + tag.len <= UINT32_MAX &&
      (m = cn__msg_new(CN__M_REPLY, NULL, 2 + tag.len)) != NULL) {
    /* A large reply is not copied: the message holds {Tag, (its aux
     * bytes) and takes the handler's buffer over for the reply, which
     * goes out from there (put_payload).  Its len is the whole term's;
     * only put_payload reads its bytes. */
    m->data[0] = (char)104;
    m->data[1] = 2;
    memcpy(m->data + 2, tag.ptr, tag.len);
    m->aux = (uint32_t)(2 + tag.len);
    m->len = n;
    m->block = own->data;
    m->block_cap = own->cap;
    own->data = NULL;
    own->cap = 0;
    own->on_heap = 0;
  } else if (!(m = cn__msg_new(CN__M_REPLY, NULL, n))) {
    return CN_ENOMEM;
  } else {
    cn_buf_init_with(&b, m->data, n);
    if (cn_build(&b, "{~t, ~t}", tag, reply) != 0 || b.data != m->data ||
        b.len != n) {
      cn_buf_free(&b);
      cn__msg_free(m);
      return CN_EINVAL; /* not reached: both terms were checked */
    }
  }
  m->ref = from->ref;
  m->from = from->server;
  m->flags = (from->flags & CN__FROM_ALIAS) ? CN__F_ALIAS : 0;
  cn__deliver(rt, from->pid, m);
  return 0;
}

/* A reply to one of our calls, {Tag, Reply}, sent to the caller's pid by
 * a peer that does not use aliases. */
static bool as_reply(cn__dnode *dn, cn_pid to, cn_term msg, cn_ref *ref,
                     cn_term *reply) {
  cn_iter it;
  cn_term tag;
  cn__rec *r;
  if ((unsigned char)msg.ptr[0] != 104 || (unsigned char)msg.ptr[1] != 2 ||
      cn_iter_init(&it, msg, NULL) || !cn_iter_next(&it, &tag) ||
      !cn_iter_next(&it, reply))
    return false;
  if (cn__get_ref_known(tag, ref) != 0 && !cn__tag_alias(tag, ref))
    return false;
  r = mon_find(&dn->mons, ref, REC_OMON);
  return r && cn_pid_equal(&r->local, &to);
}

static void drop(cn__dist *d, const char *why) {
  atomic_fetch_add(&d->st_dropped, 1);
  cn__dist_log(d, CN_LOG_WARNING, "message dropped: %s", why);
}

/* The reply to our call with monitor (and alias) ref was refused for its
 * size: the caller learns at once (CN_ETOOBIG), and we drop our monitor
 * on the server.  Returns false when the call is not ours (any more). */
static bool fail_our_call(cn__dist *d, cn__conn *c, const cn_ref *ref) {
  cn__rec *r = mon_take(&c->dn->mons, ref, REC_OMON);
  cn__msg *m;
  size_t mark;
  if (!r)
    return false;
  mark = frame_begin(c, &c->out);
  cn_put_tuple(&c->out, 4);
  cn_put_int(&c->out, CN__DOP_DEMONITOR_P);
  cn_put_pid(&c->out, &r->local);
  put_proc(&c->out, r->remote, r->name);
  cn_put_ref(&c->out, ref);
  frame_end(d, &c->out, mark);
  cn__conn_queued(c, &c->out);
  if ((m = cn__msg_new(CN__M_REPLY, NULL, 0)) != NULL) {
    m->ref = *ref;
    m->from = r->remote;
    m->flags = CN__F_ERRNO | CN__F_DEMONDONE;
    m->aux = (uint32_t)-CN_ETOOBIG;
    cn__deliver(d->rt, r->local, m);
  }
  rec_free(r);
  return true;
}

/* A message over max_message: counted and logged. */
static void too_large(cn__dist *d, cn__conn *c, size_t total) {
  atomic_fetch_add(&d->st_too_large, 1);
  atomic_fetch_add(&d->st_dropped, 1);
  if (total)
    cn__dist_log(d, CN_LOG_WARNING,
                 "a message of %zu bytes from %s refused: over "
                 "max_message (%zu)",
                 total, cn_node_name(c->dn->node), cn_max_message(d->rt));
  else
    cn__dist_log(d, CN_LOG_WARNING,
                 "a fragmented message from %s refused: over "
                 "max_message (%zu) or the reassembly budget",
                 cn_node_name(c->dn->node), cn_max_message(d->rt));
}

/* Fails a BEAM caller's call to our process `to` (named `name` in a
 * REG_SEND, else NULL) with err, at once: its gen_server:call holds a
 * monitor on `to` whose ref is the alias in its tag, and the DOWN of that
 * monitor, with the refusal's reason, makes the call exit.  The process
 * drops its end of the monitor.  A caller without such a monitor (an
 * old-style or hand-made call) can only wait out its timeout. */
static void fail_remote_call(cn__dist *d, cn__conn *c, cn_pid to,
                             const char *name, cn_pid caller, cn_term tag,
                             int err) {
  cn__dnode *dn = c->dn;
  char store[64];
  cn_buf reason;
  cn_ref alias;
  cn__rec *r;
  if (!cn__tag_alias(tag, &alias) ||
      !(r = mon_find(&dn->mons, &alias, REC_TMON)) ||
      !cn_pid_equal(&r->remote, &caller) || !cn_pid_equal(&r->local, &to)) {
    cn__dist_log(d, CN_LOG_WARNING,
                 "a call from %s was refused (%s); its caller holds no "
                 "monitor to tell it by",
                 cn_node_name(dn->node), cn_strerror(err));
    return;
  }
  r = mon_take(&dn->mons, &alias, REC_TMON);
  local_signal(d, CN__S_DEMONITOR, to, caller, &alias, NULL, no_term, 0);
  cn_buf_init_with(&reason, store, sizeof(store));
  if (cn__refusal_reason(d->rt, err, &reason) == 0) {
    encode_exitish(d, c, &c->out, CN__DOP_MONITOR_P_EXIT,
                   CN__DOP_PAYLOAD_MONITOR_P_EXIT, to, caller, &alias,
                   r->byname ? name : NULL, cn_buf_term(&reason));
    cn__conn_queued(c, &c->out);
  }
  cn_buf_free(&reason);
  rec_free(r);
}

/* A message of kind holding term t of the frame being routed.  A large
 * term of a reassembled frame stays where it is: the message takes the
 * frame's buffer over (c->adopt), and *adopted says so. */
static cn__msg *msg_of(cn__conn *c, int kind, cn_term t, bool *adopted) {
  cn_buf *a = c->adopt;
  cn__msg *m;
  if (a && a->data && t.len >= CN__ADOPT_MIN && t.ptr >= a->data &&
      t.ptr + t.len <= a->data + a->len &&
      (m = cn__msg_adopt(kind, a->data, a->cap, t.ptr, t.len)) != NULL) {
    cn_buf_init(a);
    if (adopted)
      *adopted = true;
    return m;
  }
  return cn__msg_new(kind, t.ptr, t.len);
}

/* Delivers a message for local process `to` (reached through `name`, or
 * NULL): a call, a cast, a reply to one of our calls, or anything else. */
static void deliver_msg(cn__dist *d, cn__conn *c, cn_pid to, const char *name,
                        cn_pid from, cn_term msg) {
  cn_runtime *rt = d->rt;
  cn__dnode *dn = c->dn;
  cn_iter it;
  cn_term e[3], tag = no_term;
  cn__msg *m = NULL;
  size_t n = 0;
  cn_ref ref;
  int rc, is_call;
  bool adopted = false;
  char *tagcopy = NULL;

  if ((unsigned char)msg.ptr[0] == 104 && cn_iter_init(&it, msg, &n) == 0 &&
      n >= 2 && n <= 3) {
    cn_iter_next(&it, &e[0]);
    cn_iter_next(&it, &e[1]);
    if (n == 3)
      cn_iter_next(&it, &e[2]);
    if (n == 3 && cn_is_atom(e[0], "$gen_call")) {
      cn_iter fit;
      cn_term caller;
      size_t fn = 0;
      cn_pid cpid;
      if (cn_iter_init(&fit, e[1], &fn) == 0 &&
          (unsigned char)e[1].ptr[0] == 104 && fn == 2 &&
          cn_iter_next(&fit, &caller) && cn_iter_next(&fit, &tag) &&
          cn_get_pid(caller, &cpid) == 0) {
        if (!(m = msg_of(c, CN__M_CALL, e[2], &adopted)) ||
            !(m->cfrom = cn__from_new(rt)) ||
            !(m->cfrom->route = route_new(tag))) {
          cn__msg_free(m);
          drop(d, "out of memory");
          return;
        }
        m->cfrom->flags |= CN__FROM_REMOTE;
        m->cfrom->pid = cpid;
        m->cfrom->server = to;
        if (cn__tag_alias(tag, &m->cfrom->ref))
          m->cfrom->flags |= CN__FROM_ALIAS;
        m->from = cpid;
      }
    } else if (n == 2 && cn_is_atom(e[0], "$gen_cast")) {
      m = msg_of(c, CN__M_CAST, e[1], NULL);
    }
  }
  if (!m) {
    cn_term reply;
    if (as_reply(dn, to, msg, &ref, &reply)) {
      m = msg_of(c, CN__M_REPLY, reply, NULL);
      if (m)
        m->ref = ref;
    } else {
      m = msg_of(c, CN__M_MSG, msg, NULL);
    }
  }
  if (!m) {
    drop(d, "out of memory");
    return;
  }
  if (m->kind != CN__M_CALL)
    m->from = from;
  from = m->from;
  is_call = m->kind == CN__M_CALL;
  if (m->len > cn_max_message(rt)) {
    /* The wire allows room for the envelope ('$gen_call', the caller and
     * its tag); what the process gets is held to max_message exactly. */
    too_large(d, c, m->len);
    if (is_call)
      fail_remote_call(d, c, to, name, from, tag, CN_ETOOBIG);
    else if (m->kind == CN__M_REPLY)
      fail_our_call(d, c, &m->ref);
    cn__msg_free(m);
    return;
  }
  /* The tag lies in the frame, which an adopted call takes with it when
   * it is dropped: a refused call is answered from a copy. */
  if (adopted && is_call && (tagcopy = malloc(tag.len)) != NULL) {
    memcpy(tagcopy, tag.ptr, tag.len);
    tag.ptr = tagcopy;
  }
  /* A dead pid drops it, as in Erlang.  A full mailbox drops it too
   * (counted by the runtime), and a call then fails at once. */
  if ((rc = cn__deliver(rt, to, m)) == CN_EFULL && is_call &&
      (tagcopy || !adopted))
    fail_remote_call(d, c, to, name, from, tag, CN_EFULL);
  free(tagcopy);
}

/* A pid of ours, from a field the parser typed as a pid. */
static int local_pid(cn__dist *d, cn_term t, cn_pid *pid) {
  if (cn__get_pid_known(t, pid) != 0)
    return CN_EPROTO;
  return pid->node == d->rt->node ? 0 : CN_EPROTO;
}

static int remote_pid(cn__dnode *dn, cn_term t, cn_pid *pid) {
  if (cn__get_pid_known(t, pid) != 0)
    return CN_EPROTO;
  /* A peer speaks only for its own processes. */
  return pid->node == dn->node ? 0 : CN_EPROTO;
}

static void answer_noproc(cn__dist *d, cn__conn *c, cn_pid watcher,
                          const char *name, const cn_ref *ref) {
  encode_exitish(d, c, &c->out, CN__DOP_MONITOR_P_EXIT,
                 CN__DOP_PAYLOAD_MONITOR_P_EXIT, watcher, watcher, ref, name,
                 cn__atom_term("noproc"));
  cn__conn_mark_dirty(c);
}

int cn__route_in(cn__dist *d, cn__conn *c, const char *frame, size_t len) {
  cn_runtime *rt = d->rt;
  cn__dnode *dn = c->dn;
  char name[256];
  cn__ctl ctl;
  cn_pid from = {0, 0, 0, 0}, to = {0, 0, 0, 0};
  cn_ref ref;
  cn__rec *r;
  int rc = cn__ctl_parse(frame, len, &d->lim, &ctl);

  if (rc == CN_ETOOBIG) {
    /* Sound, but over max_message: refused alone, as one too large to
     * read at all is. */
    cn__route_refused(d, c, frame, len, len);
    return 0;
  }
  if (rc == CN_EBADTERM || rc == CN_ETOODEEP) {
    /* The control message is sound: only this message is lost. */
    atomic_fetch_add(&d->st_dropped, 1);
    cn__dist_log(d, CN_LOG_WARNING, "message from %s dropped: payload %s",
                 cn_node_name(dn->node), cn_strerror(rc));
    return 0;
  }
  if (rc != 0)
    return CN_EPROTO;

  switch (ctl.op) {
  case CN__DOP_SEND:
  case CN__DOP_SEND_TT:
  case CN__DOP_SEND_SENDER:
  case CN__DOP_SEND_SENDER_TT:
    if (local_pid(d, ctl.to, &to) != 0)
      return CN_EPROTO;
    if (ctl.op == CN__DOP_SEND_SENDER || ctl.op == CN__DOP_SEND_SENDER_TT)
      cn__get_pid_known(ctl.from, &from);
    deliver_msg(d, c, to, NULL, from, ctl.msg);
    break;
  case CN__DOP_REG_SEND:
  case CN__DOP_REG_SEND_TT:
    if (cn_get_atom(ctl.to, name, sizeof(name)) < 0)
      return CN_EPROTO;
    cn__get_pid_known(ctl.from, &from);
    if (cn__name_lookup(rt, name, &to) != 0) {
      atomic_fetch_add(&d->st_dropped, 1); /* as erts: silently */
      break;
    }
    deliver_msg(d, c, to, name, from, ctl.msg);
    break;
  case CN__DOP_ALIAS_SEND:
  case CN__DOP_ALIAS_SEND_TT: {
    cn_term reply;
    cn_ref alias;
    if (cn__get_ref_known(ctl.to, &alias) != 0)
      return CN_EPROTO;
    if (!(r = mon_find(&dn->mons, &alias, REC_OMON))) {
      /* An alias we no longer hold: the late reply the alias exists to
       * drop. */
      atomic_fetch_add(&d->st_dropped, 1);
      break;
    }
    if (as_reply(dn, r->local, ctl.msg, &ref, &reply) &&
        cn_ref_equal(&ref, &alias)) {
      cn__msg *m;
      if (reply.len > cn_max_message(rt)) {
        too_large(d, c, reply.len);
        fail_our_call(d, c, &alias);
        break;
      }
      m = msg_of(c, CN__M_REPLY, reply, NULL);
      if (m) {
        m->ref = alias;
        cn__get_pid_known(ctl.from, &m->from);
        cn__deliver(rt, r->local, m);
      }
    } else {
      cn__get_pid_known(ctl.from, &from);
      deliver_msg(d, c, r->local, NULL, from, ctl.msg);
    }
    break;
  }
  case CN__DOP_LINK:
    if (remote_pid(dn, ctl.from, &from) || local_pid(d, ctl.to, &to))
      return CN_EPROTO;
    link_add(&dn->links, to, from);
    local_signal(d, CN__S_LINK, to, from, NULL, NULL, no_term, 0);
    break;
  case CN__DOP_UNLINK_ID:
    if (remote_pid(dn, ctl.from, &from) || local_pid(d, ctl.to, &to))
      return CN_EPROTO;
    link_remove(&dn->links, to, from);
    local_signal(d, CN__S_UNLINK, to, from, NULL, NULL, no_term, 0);
    {
      size_t mark = frame_begin(c, &c->out);
      cn_put_tuple(&c->out, 4);
      cn_put_int(&c->out, CN__DOP_UNLINK_ID_ACK);
      cn_put_uint(&c->out, ctl.id);
      cn_put_pid(&c->out, &to);
      cn_put_pid(&c->out, &from);
      frame_end(d, &c->out, mark);
      cn__conn_mark_dirty(c);
    }
    break;
  case CN__DOP_UNLINK_ID_ACK:
    break; /* we dropped the link when we sent UNLINK_ID */
  case CN__DOP_EXIT:
  case CN__DOP_EXIT_TT:
  case CN__DOP_PAYLOAD_EXIT:
  case CN__DOP_PAYLOAD_EXIT_TT:
    if (remote_pid(dn, ctl.from, &from) || local_pid(d, ctl.to, &to))
      return CN_EPROTO;
    link_remove(&dn->links, to, from);
    local_signal(d, CN__S_EXIT, to, from, NULL, NULL, ctl.reason, CN__F_LINKED);
    break;
  case CN__DOP_EXIT2:
  case CN__DOP_EXIT2_TT:
  case CN__DOP_PAYLOAD_EXIT2:
  case CN__DOP_PAYLOAD_EXIT2_TT:
    if (remote_pid(dn, ctl.from, &from) || local_pid(d, ctl.to, &to))
      return CN_EPROTO;
    local_signal(d, CN__S_EXIT, to, from, NULL, NULL, ctl.reason, 0);
    break;
  case CN__DOP_ALTACT_SIG_SEND:
    /* An exit signal to one of our aliases or registered names: to the
     * process behind it, if there still is one (erts drops it
     * otherwise). */
    if (remote_pid(dn, ctl.from, &from))
      return CN_EPROTO;
    if (ctl.altact & CN__ALTACT_ALIAS) {
      cn_ref alias;
      if (cn__get_ref_known(ctl.to, &alias) != 0)
        return CN_EPROTO;
      r = mon_find(&dn->mons, &alias, REC_OMON);
      if (r)
        to = r->local;
    } else {
      cn_pid named;
      if (cn_get_atom(ctl.to, name, sizeof(name)) < 0)
        return CN_EPROTO;
      if (cn__name_lookup(rt, name, &named) == 0)
        to = named;
    }
    if (!pid_set(&to)) {
      atomic_fetch_add(&d->st_dropped, 1);
      break;
    }
    local_signal(d, CN__S_EXIT, to, from, NULL, NULL, ctl.reason, 0);
    break;
  case CN__DOP_MONITOR_P: {
    const char *byname = NULL;
    if (remote_pid(dn, ctl.from, &from) || cn__get_ref_known(ctl.ref, &ref))
      return CN_EPROTO;
    if (cn_term_typeof(ctl.to) == CN_T_ATOM) {
      if (cn_get_atom(ctl.to, name, sizeof(name)) < 0)
        return CN_EPROTO;
      byname = name;
      if (cn__name_lookup(rt, name, &to) != 0) {
        /* No such name: DOWN noproc at once (the point of fact 2). */
        answer_noproc(d, c, from, name, &ref);
        break;
      }
    } else if (local_pid(d, ctl.to, &to) != 0) {
      return CN_EPROTO;
    }
    if (!(r = rec_add(&dn->mons, REC_TMON, &ref, to, from, NULL))) {
      drop(d, "out of memory");
      break;
    }
    r->byname = byname != NULL;
    hashed_signal(d, CN__S_MONITOR, to, from, &ref, r->node.hash, byname,
                  no_term, byname ? CN__F_BYNAME : 0);
    break;
  }
  case CN__DOP_DEMONITOR_P:
    if (remote_pid(dn, ctl.from, &from) || cn__get_ref_known(ctl.ref, &ref))
      return CN_EPROTO;
    if ((r = mon_take(&dn->mons, &ref, REC_TMON)) != NULL) {
      hashed_signal(d, CN__S_DEMONITOR, r->local, from, &ref, r->node.hash,
                    NULL, no_term, 0);
      rec_free(r);
    }
    break;
  case CN__DOP_MONITOR_P_EXIT:
  case CN__DOP_PAYLOAD_MONITOR_P_EXIT:
    if (local_pid(d, ctl.to, &to) || cn__get_ref_known(ctl.ref, &ref))
      return CN_EPROTO;
    if (!(r = mon_take(&dn->mons, &ref, REC_OMON)))
      break; /* demonitored meanwhile */
    if (cn_term_typeof(ctl.from) == CN_T_PID) {
      if (remote_pid(dn, ctl.from, &from) != 0) {
        rec_free(r);
        return CN_EPROTO;
      }
    } else {
      from = r->remote;
    }
    local_signal(d, CN__S_DOWN, r->local, r->name ? r->remote : from, &ref,
                 r->name, ctl.reason, r->name ? CN__F_BYNAME : 0);
    rec_free(r);
    break;
  case CN__DOP_SPAWN_REQUEST:
  case CN__DOP_SPAWN_REQUEST_TT:
    if (remote_pid(dn, ctl.from, &from) || cn__get_ref_known(ctl.ref, &ref))
      return CN_EPROTO;
    cn__spawn_request(d, c, from, &ref, ctl.mfa, ctl.opts, ctl.msg);
    break;
  default:
    return CN_EPROTO;
  }
  return 0;
}

/* ---- Spawned processes (spawn.c) ------------------------------------ */

int cn__route_watch(cn__dist *d, cn__dnode *dn, cn_pid local, cn_pid remote,
                    const cn_ref *mref, bool link) {
  cn__rec *r;
  if (mref) {
    if (!(r = rec_add(&dn->mons, REC_TMON, mref, local, remote, NULL)))
      return CN_ENOMEM;
    local_signal(d, CN__S_MONITOR, local, remote, mref, NULL, no_term, 0);
  }
  if (link) {
    link_add(&dn->links, local, remote);
    local_signal(d, CN__S_LINK, local, remote, NULL, NULL, no_term, 0);
  }
  return 0;
}

void cn__route_spawn_reply(cn__dist *d, cn__conn *c, const cn_ref *req,
                           cn_pid to, int flags, const cn_pid *pid,
                           const char *error) {
  size_t mark = frame_begin(c, &c->out);
  cn_put_tuple(&c->out, 5);
  cn_put_int(&c->out, CN__DOP_SPAWN_REPLY);
  cn_put_ref(&c->out, req);
  cn_put_pid(&c->out, &to);
  cn_put_int(&c->out, flags);
  if (pid)
    cn_put_pid(&c->out, pid);
  else
    cn_put_atom(&c->out, error);
  frame_end(d, &c->out, mark);
  cn__conn_queued(c, &c->out);
}

/* ---- Refused for their size ------------------------------------------ */

void cn__route_refused(cn__dist *d, cn__conn *c, const char *head, size_t len,
                       size_t total) {
  cn_runtime *rt = d->rt;
  cn__dnode *dn = c->dn;
  cn_term_limits lim = {0, 0};
  char name[256], store[64];
  cn_term caller, tag;
  cn_pid to, cpid, from;
  cn_buf reason;
  size_t pay = 0;
  cn__ctl ctl;
  cn_ref ref;
  cn__rec *r;

  too_large(d, c, total);
  lim.max_depth = d->lim.max_depth;
  if (cn__ctl_parse_head(head, len, &lim, &ctl, &pay) != 0)
    return;
  cn_buf_init_with(&reason, store, sizeof(store));
  cn__refusal_reason(rt, CN_ETOOBIG, &reason);
  switch (ctl.op) {
  case CN__DOP_SEND:
  case CN__DOP_SEND_TT:
  case CN__DOP_SEND_SENDER:
  case CN__DOP_SEND_SENDER_TT:
  case CN__DOP_REG_SEND:
  case CN__DOP_REG_SEND_TT: {
    const char *byname = NULL;
    if (ctl.op == CN__DOP_REG_SEND || ctl.op == CN__DOP_REG_SEND_TT) {
      if (cn_get_atom(ctl.to, name, sizeof(name)) < 0 ||
          cn__name_lookup(rt, name, &to) != 0)
        break;
      byname = name;
    } else if (local_pid(d, ctl.to, &to) != 0) {
      break;
    }
    if (cn__call_head(head + pay, len - pay, &caller, &tag) == 0 &&
        remote_pid(dn, caller, &cpid) == 0)
      fail_remote_call(d, c, to, byname, cpid, tag, CN_ETOOBIG);
    break;
  }
  case CN__DOP_ALIAS_SEND:
  case CN__DOP_ALIAS_SEND_TT:
    /* The reply to one of our calls (we alias only calls): the caller
     * learns at once, and we drop our monitor. */
    if (cn__get_ref_known(ctl.to, &ref) == 0)
      fail_our_call(d, c, &ref);
    break;
  case CN__DOP_PAYLOAD_EXIT:
  case CN__DOP_PAYLOAD_EXIT_TT:
  case CN__DOP_PAYLOAD_EXIT2:
  case CN__DOP_PAYLOAD_EXIT2_TT: {
    /* A signal is never lost: it fires with a reason that says why its
     * own could not be read. */
    bool linked =
        ctl.op == CN__DOP_PAYLOAD_EXIT || ctl.op == CN__DOP_PAYLOAD_EXIT_TT;
    if (remote_pid(dn, ctl.from, &from) || local_pid(d, ctl.to, &to))
      break;
    if (linked)
      link_remove(&dn->links, to, from);
    local_signal(d, CN__S_EXIT, to, from, NULL, NULL, cn_buf_term(&reason),
                 linked ? CN__F_LINKED : 0);
    break;
  }
  case CN__DOP_PAYLOAD_MONITOR_P_EXIT:
    if (local_pid(d, ctl.to, &to) || cn__get_ref_known(ctl.ref, &ref) ||
        !(r = mon_take(&dn->mons, &ref, REC_OMON)))
      break;
    from = r->remote;
    if (cn_term_typeof(ctl.from) == CN_T_PID)
      remote_pid(dn, ctl.from, &from);
    local_signal(d, CN__S_DOWN, r->local, r->name ? r->remote : from, &ref,
                 r->name, cn_buf_term(&reason), r->name ? CN__F_BYNAME : 0);
    rec_free(r);
    break;
  default:
    break;
  }
  cn_buf_free(&reason);
}
