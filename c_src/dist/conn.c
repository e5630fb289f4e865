/* Distribution connections on libuv: accepting and dialling (through the
 * peer's epmd), the handshake, framing, ticks, and batched writes.  Every
 * function here runs on the dist loop (see dist_internal.h). */
#include "dist_internal.h"

#include <stdlib.h>
#include <string.h>

/* Read buffers grow to the frame being read; an idle connection gives
 * back anything above this. */
#define KEEP_BUF ((size_t)256 << 10)
#define READ_CHUNK ((size_t)64 << 10)
#define TICK_ANSWER_MS 500
#define TICK_ANSWERS 8

static void process_input(cn__conn *c);

/* ---- Lifetime --------------------------------------------------------- */

/* A connection is freed once its handles are closed and its requests have
 * called back: refs counts both. */
static void conn_unref(cn__conn *c) {
  if (--c->handles > 0)
    return;
  cn_buf_free(&c->in);
  cn_buf_free(&c->out);
  cn_buf_free(&c->wbuf);
  cn_buf_free(&c->epmd);
  free(c);
}

static void on_closed(uv_handle_t *h) { conn_unref(h->data); }

static cn__conn *conn_new(cn__dist *d, int initiator) {
  cn__conn *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->d = d;
  c->initiator = initiator;
  c->handles = 1; /* the timer, initialised here */
  uv_timer_init(d->loop, &c->timer);
  c->timer.data = c;
  c->tcp.data = c;
  c->etcp.data = c;
  c->next = d->conns;
  d->conns = c;
  return c;
}

static void unlink_conn(cn__conn *c) {
  cn__conn **cp;
  for (cp = &c->d->conns; *cp; cp = &(*cp)->next) {
    if (*cp == c) {
      *cp = c->next;
      return;
    }
  }
}

void cn__conn_close(cn__conn *c, const char *why) {
  cn__dist *d = c->d;
  int was = c->state;
  if (was == C_CLOSING)
    return;
  c->state = C_CLOSING;
  unlink_conn(c);
  if (c->dirty) {
    cn__conn **cp;
    for (cp = &d->dirty; *cp; cp = &(*cp)->next_dirty) {
      if (*cp == c) {
        *cp = c->next_dirty;
        break;
      }
    }
    c->dirty = 0;
  }
  if (!c->initiator && was != C_UP && d->pending_accepts > 0)
    d->pending_accepts--;
  if (why && (was == C_UP || c->initiator))
    cn__dist_log(d, "connection to %s closed: %s",
                 c->dn ? cn_node_name(c->dn->node) : "?", why);
  else if (why && was != C_UP)
    cn__dist_log(d, "handshake with %s failed: %s",
                 c->hs.peer_name_len ? c->hs.peer_name : "a peer", why);
  if (was != C_UP)
    atomic_fetch_add(&d->st_hs_failed, 1);
  if (c->dn)
    cn__dist_node_down(d, c->dn, c, c->hs_rc);
  if (c->resolving)
    uv_cancel((uv_req_t *)&c->gai); /* its callback drops its ref */
  uv_close((uv_handle_t *)&c->timer, on_closed);
  if (c->tcp_open)
    uv_close((uv_handle_t *)&c->tcp, on_closed);
  if (c->etcp_open)
    uv_close((uv_handle_t *)&c->etcp, on_closed);
}

static void on_timeout(uv_timer_t *t) {
  cn__conn *c = t->data;
  c->hs_rc = CN_ETIMEDOUT;
  cn__conn_close(c, "handshake timed out");
}

/* ---- Writing ---------------------------------------------------------- */

static void start_write(cn__conn *c);

static void on_write(uv_write_t *req, int status) {
  cn__conn *c = req->data;
  c->writing = 0;
  if (c->wbuf.cap > KEEP_BUF) {
    cn_buf_free(&c->wbuf);
    cn_buf_init(&c->wbuf);
  } else {
    cn_buf_reset(&c->wbuf);
  }
  if (c->state != C_CLOSING) {
    if (status < 0)
      cn__conn_close(c, uv_strerror(status));
    else if (c->close_after_write && c->out.len == 0)
      cn__conn_close(c, c->close_why);
    else
      start_write(c);
  }
  conn_unref(c);
}

static void start_write(cn__conn *c) {
  cn_buf tmp;
  uv_buf_t b;
  if (c->writing && c->out.len > 2 * c->d->opt.max_frame) {
    /* The peer reads nothing while we keep producing: rather than grow
     * without bound, drop it (its links and monitors fire). */
    cn__conn_close(c, "peer not reading (output over 2 x max_frame)");
    return;
  }
  if (c->writing || c->out.len == 0 || c->state == C_CLOSING || !c->tcp_open)
    return;
  tmp = c->wbuf;
  c->wbuf = c->out;
  c->out = tmp;
  b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    cn__conn_close(c, "write failed");
    return;
  }
  c->writing = 1;
  c->handles++;
  c->wrote = 1;
  c->last_write = uv_now(c->d->loop);
  atomic_fetch_add_explicit(&c->d->st_bytes_out, c->wbuf.len,
                            memory_order_relaxed);
}

void cn__conn_mark_dirty(cn__conn *c) {
  if (!c->dirty && c->state != C_CLOSING) {
    c->dirty = 1;
    c->next_dirty = c->d->dirty;
    c->d->dirty = c;
  }
}

void cn__conn_flush_all(cn__dist *d) {
  cn__conn *c;
  while ((c = d->dirty)) {
    d->dirty = c->next_dirty;
    c->dirty = 0;
    start_write(c);
  }
}

/* Sends what is in out, then closes (a refusal's status message). */
static void close_after_write(cn__conn *c, const char *why) {
  if (c->out.len == 0 && !c->writing) {
    cn__conn_close(c, why);
    return;
  }
  c->close_after_write = 1;
  c->close_why = why;
  uv_read_stop((uv_stream_t *)&c->tcp);
  start_write(c);
}

/* ---- Ticks ------------------------------------------------------------ */

/* An empty frame, unless something is on its way anyway. */
static void send_tick(cn__conn *c) {
  static const char tick[4] = {0, 0, 0, 0};
  if (c->out.len == 0 && !c->writing) {
    cn_buf_append(&c->out, tick, sizeof(tick));
    cn__conn_mark_dirty(c);
  }
}


void cn__conn_tick_all(cn__dist *d) {
  uint64_t now = uv_now(d->loop);
  uint64_t limit = (uint64_t)d->opt.ticktime_s * 1000;
  cn__conn *c, *next;
  for (c = d->conns; c; c = next) {
    next = c->next;
    if (c->state != C_UP)
      continue;
    if (now - c->last_read > limit) {
      cn__conn_close(c, "net_tick_timeout: nothing heard for ticktime");
      continue;
    }
    if (!c->wrote)
      send_tick(c);
    c->wrote = 0;
    c->ticks_answered = 0;
  }
}

/* ---- Reading ---------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  cn__conn *c = h->data;
  (void)suggested;
  if (c->in_off > 0 && c->in_off == c->in.len) {
    c->in.len = c->in_off = 0;
  } else if (c->in_off > 0 && c->in_off >= c->in.cap / 2) {
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
  if (cn_buf_reserve(&c->in, READ_CHUNK) != 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  cn__conn *c = s->data;
  (void)buf;
  if (n < 0) {
    cn__conn_close(c, n == UV_EOF ? "closed by peer" : uv_strerror((int)n));
    return;
  }
  if (n == 0 || c->state == C_CLOSING)
    return;
  c->in.len += (size_t)n;
  c->last_read = uv_now(c->d->loop);
  atomic_fetch_add_explicit(&c->d->st_bytes_in, (uint64_t)n,
                            memory_order_relaxed);
  process_input(c);
}

static uint32_t be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 |
         u[3];
}

/* ---- The handshake ---------------------------------------------------- */

static cn__hs_status arbitrate(void *arg, const char *name, size_t len,
                               uint32_t creation) {
  cn__conn *c = arg;
  cn__dist *d = c->d;
  cn__dnode *dn;
  uint32_t node;
  (void)creation;
  if (cn_node_intern(name, len, &node) != 0 || node == d->rt->node)
    return CN__HS_ST_NOT_ALLOWED;
  dn = cn__dnode_get(d, node, 0);
  if (dn && dn->conn)
    return CN__HS_ST_ALIVE;
  if (dn && dn->pending) {
    /* Both sides dial at once: the greater name keeps its own attempt
     * (dist_util's rule). */
    if (strcmp(d->name, cn_node_name(node)) > 0)
      return CN__HS_ST_NOK;
    return CN__HS_ST_OK_SIMUL;
  }
  return CN__HS_ST_OK;
}

static void handshake_done(cn__conn *c) {
  cn__dist *d = c->d;
  cn__dnode *dn;
  uint32_t node;
  if (cn_node_intern(c->hs.peer_name, c->hs.peer_name_len, &node) != 0 ||
      !(dn = cn__dnode_get(d, node, 1))) {
    cn__conn_close(c, "out of memory");
    return;
  }
  if (!c->initiator) {
    d->pending_accepts--;
    if (dn->conn && dn->conn != c) /* the peer said true to "alive" */
      cn__conn_close(dn->conn, "replaced by a new connection");
    if (dn->pending && dn->pending != c) {
      /* ok_simultaneous: drop our own attempt without failing what waits
       * for the node, which this connection now carries. */
      cn__conn *mine = dn->pending;
      dn->pending = NULL;
      mine->dn = NULL;
      cn__conn_close(mine, NULL);
    }
  }
  c->dn = dn;
  c->state = C_UP;
  c->peer_flags = c->hs.peer_flags;
  c->last_read = uv_now(d->loop);
  uv_timer_stop(&c->timer);
  cn__dist_node_up(d, dn, c);
}

/* ---- Ticks we answer ------------------------------------------------- */

static void on_tick_answer(uv_timer_t *t) {
  cn__conn *c = t->data;
  if (c->state == C_UP)
    send_tick(c);
}

/* A tick came in.  Answer it, as ei does, so that a peer whose ticktime is
 * shorter than ours still hears from us in time.  Two nodes that both
 * answer would bounce ticks forever, so answers are at least
 * TICK_ANSWER_MS apart (a later one waits on the connection's timer), and
 * at most TICK_ANSWERS go out per tick period of ours. */
static void answer_tick(cn__conn *c) {
  uint64_t since = uv_now(c->d->loop) - c->last_write;
  if (c->ticks_answered >= TICK_ANSWERS ||
      uv_is_active((uv_handle_t *)&c->timer))
    return;
  c->ticks_answered++;
  if (since >= TICK_ANSWER_MS)
    send_tick(c);
  else
    uv_timer_start(&c->timer, on_tick_answer, TICK_ANSWER_MS - since, 0);
}

/* ---- Input ------------------------------------------------------------ */

static void process_input(cn__conn *c) {
  cn__dist *d = c->d;
  if (c->state == C_HANDSHAKE) {
    size_t used = 0;
    int rc = cn__hs_feed(&c->hs, c->in.data + c->in_off, c->in.len - c->in_off,
                         &used, &c->out);
    c->in_off += used;
    if (c->out.len)
      cn__conn_mark_dirty(c);
    if (rc < 0) {
      c->hs_rc = rc;
      close_after_write(c, c->hs.error ? c->hs.error : cn_strerror(rc));
      return;
    }
    if (rc == 0)
      return;
    handshake_done(c);
    if (c->state != C_UP)
      return;
  }
  while (c->state == C_UP) {
    size_t avail = c->in.len - c->in_off;
    const char *p = c->in.data + c->in_off;
    uint32_t len;
    int rc;
    if (avail < 4)
      break;
    len = be32(p);
    if (len == 0) {
      c->in_off += 4;
      answer_tick(c);
      continue;
    }
    if (len > d->opt.max_frame) {
      atomic_fetch_add(&d->st_bad_frames, 1);
      cn__conn_close(c, "frame over max_frame");
      return;
    }
    if (avail - 4 < len) {
      /* Make room for the whole frame now, so reads fill it directly. */
      if (c->in_off > 0) {
        memmove(c->in.data, p, avail);
        c->in.len = avail;
        c->in_off = 0;
      }
      if (cn_buf_reserve(&c->in, (size_t)len + 4 - avail) != 0) {
        cn__conn_close(c, "out of memory for a frame");
        return;
      }
      break;
    }
    c->in_off += 4 + (size_t)len;
    atomic_fetch_add_explicit(&d->st_frames_in, 1, memory_order_relaxed);
    rc = cn__route_in(d, c, p + 4, len);
    if (rc != 0) {
      atomic_fetch_add(&d->st_bad_frames, 1);
      cn__conn_close(c, cn_strerror(rc));
      return;
    }
  }
  if (c->in_off == c->in.len) {
    c->in_off = c->in.len = 0;
    if (c->in.cap > KEEP_BUF) {
      cn_buf_free(&c->in);
      cn_buf_init(&c->in);
    }
  }
}

/* ---- Accepting -------------------------------------------------------- */

static void on_connection(uv_stream_t *srv, int status) {
  cn__dist *d = srv->data;
  cn__conn *c;
  if (status < 0 || atomic_load(&d->stopping))
    return;
  if (!(c = conn_new(d, 0)))
    return;
  uv_tcp_init(d->loop, &c->tcp);
  c->tcp_open = 1;
  c->handles++;
  c->state = C_HANDSHAKE;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    cn__conn_close(c, NULL);
    return;
  }
  d->pending_accepts++;
  if (d->pending_accepts > d->opt.max_handshakes) {
    cn__conn_close(c, "too many pending handshakes (max_handshakes)");
    return;
  }
  if (cn__hs_init(&c->hs, 0, d->name, d->creation, d->flags, d->cookie, NULL,
                  arbitrate, c) != 0) {
    cn__conn_close(c, "handshake setup failed");
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_timer_start(&c->timer, on_timeout, d->opt.handshake_ms, 0);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int cn__conn_listen(cn__dist *d, const char *addr, uint16_t port) {
  struct sockaddr_storage ss;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  int len = sizeof(ss);
  int rc;
  uv_tcp_init(d->loop, &d->listener);
  d->listener.data = d;
  d->handles++;
  if (uv_ip4_addr(addr, port, sin) != 0 &&
      uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss) != 0)
    return CN_EINVAL;
  if ((rc = uv_tcp_bind(&d->listener, (struct sockaddr *)&ss, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&d->listener, 128, on_connection)) != 0) {
    cn__dist_log(d, "cannot listen on %s:%u: %s", addr, port, uv_strerror(rc));
    return CN_ESYSTEM;
  }
  if (uv_tcp_getsockname(&d->listener, (struct sockaddr *)&ss, &len) == 0)
    d->port = ntohs(ss.ss_family == AF_INET
                        ? sin->sin_port
                        : ((struct sockaddr_in6 *)&ss)->sin6_port);
  return 0;
}

/* ---- Dialling --------------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status) {
  cn__conn *c = req->data;
  cn__dist *d = c->d;
  if (c->state == C_CLOSING) {
    conn_unref(c);
    return;
  }
  conn_unref(c);
  if (status < 0) {
    c->hs_rc = CN_ENOCONN;
    cn__conn_close(c, uv_strerror(status));
    return;
  }
  c->state = C_HANDSHAKE;
  if (cn__hs_init(&c->hs, 1, d->name, d->creation, d->flags, d->cookie,
                  cn_node_name(c->dn->node), NULL, NULL) != 0 ||
      cn__hs_begin(&c->hs, &c->out) != 0) {
    cn__conn_close(c, "handshake setup failed");
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  cn__conn_mark_dirty(c);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void dial_peer(cn__conn *c) {
  struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;
  uv_tcp_init(c->d->loop, &c->tcp);
  c->tcp_open = 1;
  c->handles++;
  c->state = C_CONNECT;
  sin->sin_port = htons(c->port);
  c->creq.data = c;
  if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&c->addr,
                     on_connected) != 0) {
    c->hs_rc = CN_ENOCONN;
    cn__conn_close(c, "connect failed");
    return;
  }
  c->handles++;
}

static void on_epmd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  cn__conn *c = s->data;
  uint16_t port = 0, version = 0;
  int rc;
  if (c->state != C_EPMD)
    return;
  if (n > 0)
    cn_buf_append(&c->epmd, buf->base, (size_t)n);
  rc = cn__epmd_port2_resp(c->epmd.data, c->epmd.len, &port, &version);
  if (rc == 1 && n >= 0)
    return;
  uv_close((uv_handle_t *)&c->etcp, on_closed);
  c->etcp_open = 0;
  if (rc != 0 || version < 6) {
    c->hs_rc = CN_ENOCONN;
    cn__conn_close(c, rc == CN_ENOENT ? "epmd does not know the node"
                      : rc == 0       ? "the node speaks an old protocol"
                                      : "no answer from its epmd");
    return;
  }
  c->port = port;
  dial_peer(c);
}

static void on_epmd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  cn__conn *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->ebuf, sizeof(c->ebuf));
}

static void on_epmd_written(uv_write_t *req, int status) {
  cn__conn *c = req->data;
  (void)status;
  conn_unref(c);
}

static void on_epmd_connected(uv_connect_t *creq, int status) {
  cn__conn *c = creq->data;
  const char *at = strchr(cn_node_name(c->dn ? c->dn->node : 0), '@');
  char alive[CN_MAX_NODE_NAME + 1];
  int closing = c->state != C_EPMD;
  cn_buf req;
  uv_buf_t b;
  conn_unref(c); /* may free c when it was closing */
  if (closing)
    return;
  if (status < 0 || !at) {
    c->hs_rc = CN_ENOCONN;
    cn__conn_close(c, "cannot reach the node's epmd");
    return;
  }
  {
    const char *nm = cn_node_name(c->dn->node);
    snprintf(alive, sizeof(alive), "%.*s", (int)(at - nm), nm);
  }
  /* The request (at most 3 + 255 bytes) is built in place in ereq_buf,
   * which outlives the write. */
  cn_buf_init_with(&req, c->ereq_buf, sizeof(c->ereq_buf));
  if (cn__epmd_port2_req(&req, alive) != 0 || req.data != c->ereq_buf) {
    cn_buf_free(&req);
    cn__conn_close(c, "epmd request failed");
    return;
  }
  b = uv_buf_init(c->ereq_buf, (unsigned)req.len);
  c->ewreq.data = c;
  if (uv_write(&c->ewreq, (uv_stream_t *)&c->etcp, &b, 1, on_epmd_written) == 0)
    c->handles++;
  uv_read_start((uv_stream_t *)&c->etcp, on_epmd_alloc, on_epmd_read);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  cn__conn *c = req->data;
  cn__dist *d = c->d;
  struct sockaddr_in sa;
  c->resolving = 0;
  if (c->state != C_RESOLVE || status < 0 || !res) {
    if (res)
      uv_freeaddrinfo(res);
    if (c->state == C_RESOLVE) {
      c->hs_rc = CN_ENOCONN;
      cn__conn_close(c, "cannot resolve the node's host");
    }
    conn_unref(c);
    return;
  }
  memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  conn_unref(c);
  c->state = C_EPMD;
  uv_tcp_init(d->loop, &c->etcp);
  c->etcp_open = 1;
  c->handles++;
  memcpy(&sa, &c->addr, sizeof(sa));
  sa.sin_port = htons(d->opt.epmd_port);
  c->ecreq.data = c;
  if (uv_tcp_connect(&c->ecreq, &c->etcp, (struct sockaddr *)&sa,
                     on_epmd_connected) != 0) {
    c->hs_rc = CN_ENOCONN;
    cn__conn_close(c, "cannot reach the node's epmd");
    return;
  }
  c->handles++;
}

void cn__conn_dial(cn__dist *d, cn__dnode *dn) {
  const char *host = strchr(cn_node_name(dn->node), '@');
  struct addrinfo hints;
  cn__conn *c;
  if (!host || !(c = conn_new(d, 1)))
    return;
  c->dn = dn;
  dn->pending = c;
  c->state = C_RESOLVE;
  uv_timer_start(&c->timer, on_timeout, d->opt.handshake_ms, 0);
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  c->gai.data = c;
  if (uv_getaddrinfo(d->loop, &c->gai, on_resolved, host + 1, NULL, &hints) !=
      0) {
    c->hs_rc = CN_ENOCONN;
    cn__conn_close(c, "cannot resolve the node's host");
    return;
  }
  c->resolving = 1;
  c->handles++;
}
