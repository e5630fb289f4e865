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
/* Each write takes what small frames are ready, then fragments of large
 * messages up to this much: the most a small call waits behind them. */
#define WRITE_BATCH ((size_t)256 << 10)
/* Of a stream's bytes, stretches this long and up go out from where they
 * are (writev); shorter ones are copied into the output buffer. */
#define SEG_MIN ((size_t)4 << 10)
#define MAX_SEGS 24 /* per write */

/* A stretch of a stream's bytes that the next write takes in place. */
typedef struct cn__wseg {
  size_t at; /* it goes before the output buffer's byte at */
  const char *p;
  size_t len;
} cn__wseg;
#define TICK_ANSWER_MS 500
#define TICK_ANSWERS 8

static void process_input(cn__conn *c);
static int tls_input(cn__conn *c, size_t n);

/* ---- Lifetime --------------------------------------------------------- */

static void entry_free(cn__oentry *e) {
  cn_buf_free(&e->buf);
  cn__msg_free(e->tail_msg);
  free(e);
}

static void entries_free(cn__oentry **list) {
  cn__oentry *e, *ne;
  for (e = *list; e; e = ne) {
    ne = e->next;
    entry_free(e);
  }
  *list = NULL;
}

/* An entry that is sent, or dropped: a write may still take bytes from
 * it, so it is freed after the next write completes (see start_write). */
static void retire_entry(cn__conn *c, cn__oentry *e) {
  e->next = c->retire;
  c->retire = e;
}

/* Drops every large message waiting to go out (and what queued behind
 * them). */
static void streams_free(cn__conn *c) {
  cn__ostream *s, *ns;
  cn__oentry *e, *ne;
  for (s = c->streams; s; s = ns) {
    ns = s->next;
    for (e = s->head; e; e = ne) {
      ne = e->next;
      retire_entry(c, e);
    }
    free(s);
  }
  if (c->streams && c->dn)
    cn__dist_set_streaming(c->d, c->dn, false);
  c->streams = NULL;
  c->oq_bytes = 0;
  if (!c->writing)
    entries_free(&c->retire);
}

/* A connection is freed once its handles are closed and its requests have
 * called back: handles counts both. */
static void conn_unref(cn__conn *c) {
  if (--c->handles > 0)
    return;
  cn_buf_free(&c->in);
  cn_buf_free(&c->out);
  cn_buf_free(&c->wbuf);
  cn_buf_free(&c->epmd);
  cn_buf_free(&c->fdone);
  cn_buf_free(&c->fhead);
  cn_buf_free(&c->skip_head);
  cn__frags_free(&c->frags);
  streams_free(c);
  entries_free(&c->retire);
  entries_free(&c->retire_w);
  free(c->segs);
  cn__tls_free(c->tls);
  free(c);
}

static void on_closed(uv_handle_t *h) { conn_unref(h->data); }

static cn__conn *conn_new(cn__dist *d, int initiator) {
  cn__conn *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->d = d;
  c->initiator = initiator;
  cn__frags_init(&c->frags, d->frame_limit - 3, d->opt.max_reassembly);
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

/* A close that is part of normal operation (logged at info), not a
 * fault (logged as a warning). */
static bool orderly(const char *why) {
  static const char *const normal[] = {"node stopping", "closed by peer",
                                       "disconnected",
                                       "replaced by a new connection"};
  size_t i;
  for (i = 0; i < sizeof(normal) / sizeof(normal[0]); i++)
    if (strcmp(why, normal[i]) == 0)
      return true;
  return false;
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
    cn__dist_log(d, orderly(why) ? CN_LOG_INFO : CN_LOG_WARNING,
                 "connection to %s closed: %s",
                 c->dn ? cn_node_name(c->dn->node) : "?", why);
  else if (why && was != C_UP)
    cn__dist_log(d, CN_LOG_WARNING, "handshake with %s failed: %s",
                 c->hs.peer_name_len ? c->hs.peer_name : "a peer", why);
  if (was != C_UP)
    atomic_fetch_add(&d->st_hs_failed, 1);
  /* What waits to go out is lost with the connection, as on the BEAM;
   * senders parked on it go on. */
  streams_free(c);
  if (c->busy && c->dn) {
    c->busy = 0;
    cn__dist_set_busy(d, c->dn, 0);
  }
  if (c->dn) {
    cn__dist_node_down(d, c->dn, c, c->hs_rc);
    /* Senders that waited for their large messages go on too. */
    cn__dist_unpark(d, c->dn);
  }
  if (c->resolving)
    uv_cancel((uv_req_t *)&c->gai); /* its callback drops its ref */
  uv_close((uv_handle_t *)&c->timer, on_closed);
  if (c->tcp_open)
    uv_close((uv_handle_t *)&c->tcp, on_closed);
  if (c->etcp_open)
    uv_close((uv_handle_t *)&c->etcp, on_closed);
  cn__dist_conn_gone(d);
}

static void on_timeout(uv_timer_t *t) {
  cn__conn *c = t->data;
  c->hs_rc = CN_ETIMEDOUT;
  cn__conn_close(c, "handshake timed out");
}

/* ---- Writing ---------------------------------------------------------- */

static void start_write(cn__conn *c);

/* ---- Streams: large messages and what queues behind them ------------- */

static uint32_t be32(const char *p);

static void put_be32(char *p, size_t v) {
  p[0] = (char)(v >> 24);
  p[1] = (char)(v >> 16);
  p[2] = (char)(v >> 8);
  p[3] = (char)v;
}

static cn__ostream *stream_of(cn__conn *c, cn_pid sender, cn_pid to) {
  cn__ostream *s;
  for (s = c->streams; s; s = s->next)
    if (cn_pid_equal(&s->sender, &sender) && cn_pid_equal(&s->to, &to))
      return s;
  return NULL;
}

size_t cn__conn_streamed(cn__conn *c, cn_pid sender) {
  const cn__ostream *s;
  const cn__oentry *e;
  size_t n = 0;
  for (s = c->streams; s; s = s->next)
    if (cn_pid_equal(&s->sender, &sender))
      for (e = s->head; e; e = e->next)
        n++;
  return n;
}

cn_buf *cn__conn_target(cn__conn *c, cn_pid sender, cn_pid to, size_t payload) {
  cn__ostream *s = stream_of(c, sender, to), **sp;
  cn__oentry *e;
  bool big = (c->peer_flags & CN__DFLAG_FRAGMENTS) && payload > CN__FRAG_SIZE;
  if (!s && !big)
    return &c->out;
  if (!(e = calloc(1, sizeof(*e))))
    return &c->out; /* no memory: it goes whole, and may overtake */
  if (!s) {
    if (!(s = calloc(1, sizeof(*s)))) {
      free(e);
      return &c->out;
    }
    s->sender = sender;
    s->to = to;
    if (!c->streams && c->dn)
      cn__dist_set_streaming(c->d, c->dn, true);
    for (sp = &c->streams; *sp; sp = &(*sp)->next)
      ;
    *sp = s;
  }
  if (s->tail)
    s->tail->next = e;
  else
    s->head = e;
  s->tail = e;
  return &e->buf;
}

static size_t queued(const cn__conn *c) {
  return c->out.len + c->seg_bytes + (c->writing ? c->wbytes : 0);
}

/* Busy is the output buffer and the write in flight over busy_limit: the
 * streams feed the buffer a write at a time, so a large message does not
 * make its connection busy for everyone; its own sender waits for it
 * instead (see cn__dist_unpark). */
static void update_busy(cn__conn *c) {
  int busy = queued(c) > c->d->opt.busy_limit;
  if (busy != c->busy && c->dn && c->state == C_UP) {
    c->busy = busy;
    cn__dist_set_busy(c->d, c->dn, busy);
  }
}

void cn__conn_queued(cn__conn *c, cn_buf *b) {
  if (b != &c->out)
    c->oq_bytes += b->len + cn__container_of(b, cn__oentry, buf)->tail_len;
  cn__conn_mark_dirty(c);
  update_busy(c);
}

bool cn__conn_attach(cn__conn *c, cn_buf *b, cn__msg *m, const char *tail,
                     size_t len) {
  cn__oentry *e;
  if (b == &c->out)
    return false;
  e = cn__container_of(b, cn__oentry, buf);
  e->tail_msg = m;
  e->tail = tail;
  e->tail_len = len;
  return true;
}

/* Room for n more bytes in the output buffer and k more segments, so
 * that what follows cannot fail half-way. */
static int reserve(cn__conn *c, size_t n, size_t k) {
  if (cn_buf_reserve(&c->out, n) != 0)
    return CN_ENOMEM;
  if (c->nsegs + k > c->segs_cap) {
    size_t cap = c->segs_cap ? 2 * c->segs_cap : 16;
    cn__wseg *ns;
    while (cap < c->nsegs + k)
      cap *= 2;
    if (!(ns = realloc(c->segs, cap * sizeof(*ns))))
      return CN_ENOMEM;
    c->segs = ns;
    c->segs_cap = cap;
  }
  return 0;
}

/* Bytes [a, a + n) of entry e (its buffer, then its tail) go out next:
 * copied into the output buffer, or, when long and the transport takes
 * them as they are (not TLS), as a segment of the next write, which
 * reads them where they lie.  Room was reserved (reserve: n bytes, two
 * segments). */
static void put_range(cn__conn *c, cn__oentry *e, size_t a, size_t n) {
  while (n > 0) {
    const char *p;
    size_t k;
    if (a < e->buf.len) {
      p = e->buf.data + a;
      k = e->buf.len - a;
    } else {
      p = e->tail + (a - e->buf.len);
      k = e->tail_len - (a - e->buf.len);
    }
    if (k > n)
      k = n;
    if (c->tls || k < SEG_MIN) {
      cn_buf_append(&c->out, p, k);
    } else {
      cn__wseg *g = &c->segs[c->nsegs++];
      g->at = c->out.len;
      g->p = p;
      g->len = k;
      c->seg_bytes += k;
    }
    a += k;
    n -= k;
  }
}

/* Appends the next fragment of the frame that entry e is sending, of
 * flen bytes after its length: 131 'D' 0 then the control term and the
 * payload (what frames to a peer that takes fragments look like).  Each
 * fragment carries the next part of what follows the 'D' header; the
 * first one the whole control term. */
static void emit_fragment(cn__conn *c, cn__oentry *e, size_t flen) {
  static const cn_term_limits lim = {0, 0};
  size_t body = e->pos + 4; /* where the frame's body starts in e */
  size_t inbuf = e->buf.len - body < flen ? e->buf.len - body : flen;
  size_t off = 3, ctl_len, total, first, chunk, hl;
  char hdr[CN__FRAG_HDR_FIRST];
  int is_first = e->sent == 0;

  /* We encoded it, and its control term lies in buf (a tail is payload
   * only): sound. */
  cn_term_validate(e->buf.data + body, inbuf, &off, &lim);
  ctl_len = off - 3;
  total = flen - 3;
  first = ctl_len > CN__FRAG_SIZE ? ctl_len : CN__FRAG_SIZE;
  if (is_first) {
    e->seq = ++c->next_seq;
    e->left =
        1 + (total > first ? (total - first + CN__FRAG_SIZE - 1) / CN__FRAG_SIZE
                           : 0);
  }
  chunk = is_first ? (total < first ? total : first)
                   : (total - e->sent < CN__FRAG_SIZE ? total - e->sent
                                                      : CN__FRAG_SIZE);
  hl = is_first ? CN__FRAG_HDR_FIRST : CN__FRAG_HDR_NEXT;
  cn__frag_header(hdr, is_first, e->seq, e->left);
  if (reserve(c, 4 + hl + chunk, 2) != 0)
    return; /* try again on the next write */
  put_be32(c->out.data + c->out.len, hl + chunk);
  c->out.len += 4;
  cn_buf_append(&c->out, hdr, hl);
  put_range(c, e, body + 3 + e->sent, chunk);
  e->sent += chunk;
  e->left--;
  c->oq_bytes -= chunk;
  atomic_fetch_add_explicit(&c->d->st_fragments_out, 1, memory_order_relaxed);
  if (e->sent == total) {
    c->oq_bytes -= 4 + flen - total;
    e->pos += 4 + flen;
    e->sent = 0;
  }
}

/* Retires the entries at the head of s that have nothing left to send
 * (and sets *done then: their sender may go on, see cn__dist_unpark).
 * Returns false when s is empty then. */
static bool pop_sent(cn__conn *c, cn__ostream *s, int *done) {
  cn__oentry *e;
  while ((e = s->head) && e->pos >= e->buf.len + e->tail_len) {
    s->head = e->next;
    if (!s->head)
      s->tail = NULL;
    retire_entry(c, e);
    *done = 1;
  }
  return s->head != NULL;
}

/* Appends one frame or one fragment from the head of stream s, which has
 * something left to send. */
static void emit_one(cn__conn *c, cn__ostream *s) {
  cn__oentry *e = s->head;
  size_t flen = be32(e->buf.data + e->pos);
  if (!(c->peer_flags & CN__DFLAG_FRAGMENTS) || flen <= CN__FRAG_SIZE) {
    if (reserve(c, 4 + flen, 2) == 0) {
      put_range(c, e, e->pos, 4 + flen);
      e->pos += 4 + flen;
      c->oq_bytes -= 4 + flen;
    }
  } else {
    emit_fragment(c, e, flen);
  }
}

/* What the next write holds: the output buffer and the segments. */
static size_t batch(const cn__conn *c) { return c->out.len + c->seg_bytes; }

/* Tops the output buffer up from the streams, a frame or fragment from
 * each in turn.  A stream that empties is dropped, and its sender, if
 * parked, may go on. */
static void fill_out(cn__conn *c) {
  int done = 0, stuck = 0;
  while (c->streams && batch(c) < WRITE_BATCH && c->nsegs < MAX_SEGS &&
         !stuck) {
    cn__ostream **sp = &c->streams;
    while (*sp && batch(c) < WRITE_BATCH && c->nsegs < MAX_SEGS) {
      cn__ostream *s = *sp;
      if (pop_sent(c, s, &done)) {
        size_t before = c->out.len;
        emit_one(c, s);
        if (c->out.len == before) {
          stuck = 1; /* no memory: try again on the next write */
          break;
        }
      }
      if (!pop_sent(c, s, &done)) {
        *sp = s->next;
        free(s);
        done = 1;
      } else {
        sp = &s->next;
      }
    }
  }
  if (!c->streams && c->dn)
    cn__dist_set_streaming(c->d, c->dn, false);
  if (done && c->dn)
    cn__dist_unpark(c->d, c->dn);
}

/* A write is over: what it used is given back. */
static void write_done(cn__conn *c) {
  c->writing = 0;
  entries_free(&c->retire_w);
  if (c->wbuf.cap > KEEP_BUF) {
    cn_buf_free(&c->wbuf);
    cn_buf_init(&c->wbuf);
  } else {
    cn_buf_reset(&c->wbuf);
  }
}

static void on_write(uv_write_t *req, int status) {
  cn__conn *c = req->data;
  write_done(c);
  if (c->state != C_CLOSING) {
    if (status < 0)
      cn__conn_close(c, uv_strerror(status));
    else if (c->close_after_write && c->out.len == 0 && !c->streams)
      cn__conn_close(c, c->close_why);
    else
      start_write(c);
    if (c->state != C_CLOSING)
      update_busy(c);
  }
  conn_unref(c);
}

/* Drops the first n bytes of the buffers b[0 .. *nb). */
static uv_buf_t *skip_written(uv_buf_t *b, unsigned *nb, size_t n) {
  while (*nb > 0 && n >= b->len) {
    n -= b->len;
    b++;
    (*nb)--;
  }
  if (*nb > 0) {
    b->base += n;
    b->len -= n;
  }
  return b;
}

/* One write: the output buffer, with the segments (stretches of large
 * messages, read where they lie) in their places, by writev.  The
 * entries retired meanwhile live until it completes.
 *
 * Without streams it is first tried at once (uv_try_write): the kernel
 * nearly always takes a turn's replies whole, and then nothing is left
 * for the loop to do.  A uv_write request, even one that completes at
 * once, costs an extra turn of the loop with an epoll_wait, and an
 * epoll_ctl when its POLLOUT is dropped (libuv re-arms the watcher).  A
 * partial write queues the rest.  Streams keep the request, so that a
 * large message goes a batch per turn, between the other connections'
 * work. */
static void start_write(cn__conn *c) {
  uv_buf_t bufs[2 * MAX_SEGS + 1], *b = bufs;
  unsigned nb = 0;
  size_t i, prev = 0, total;
  cn_buf tmp;
  int n;
  if (c->writing || c->state == C_CLOSING || !c->tcp_open)
    return;
  if (c->state == C_UP && c->streams && batch(c) < WRITE_BATCH)
    fill_out(c);
  if (c->tls && cn__tls_wrap(c->tls, &c->out) != 0) {
    cn__conn_close(c, cn__tls_why(c->tls));
    return;
  }
  if (c->out.len == 0 && c->nsegs == 0) {
    entries_free(&c->retire);
    update_busy(c);
    return;
  }
  tmp = c->wbuf;
  c->wbuf = c->out;
  c->out = tmp;
  for (i = 0; i < c->nsegs; i++) {
    const cn__wseg *g = &c->segs[i];
    if (g->at > prev)
      b[nb++] = uv_buf_init(c->wbuf.data + prev, (unsigned)(g->at - prev));
    b[nb++] = uv_buf_init((char *)g->p, (unsigned)g->len);
    prev = g->at;
  }
  if (c->wbuf.len > prev)
    b[nb++] = uv_buf_init(c->wbuf.data + prev, (unsigned)(c->wbuf.len - prev));
  total = c->wbytes = c->wbuf.len + c->seg_bytes;
  c->nsegs = 0;
  c->seg_bytes = 0;
  c->retire_w = c->retire;
  c->retire = NULL;
  c->wrote = 1;
  c->last_write = c->write_start = uv_now(c->d->loop);
  atomic_fetch_add_explicit(&c->d->st_bytes_out, total, memory_order_relaxed);
  /* An error here (EAGAIN, or a reset) leaves it to uv_write to report. */
  n = c->streams ? 0 : uv_try_write((uv_stream_t *)&c->tcp, b, nb);
  if (n > 0 && (size_t)n == total) {
    write_done(c);
    if (c->close_after_write && c->out.len == 0)
      cn__conn_close(c, c->close_why);
    else
      update_busy(c);
    return;
  }
  if (n > 0)
    b = skip_written(b, &nb, (size_t)n);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, b, nb, on_write) != 0) {
    cn__conn_close(c, "write failed");
    return;
  }
  c->writing = 1;
  c->handles++;
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

/* Sends what is in out (and the streams), then closes: a refusal's status
 * message, or a node's last words. */
static void close_after_write(cn__conn *c, const char *why) {
  if (c->out.len == 0 && !c->writing && !c->streams &&
      !(c->tls && cn__tls_pending(c->tls))) {
    cn__conn_close(c, why);
    return;
  }
  c->close_after_write = 1;
  c->close_why = why;
  uv_read_stop((uv_stream_t *)&c->tcp);
  start_write(c);
}

#define SHUTDOWN_FLUSH_MS 2000

static void on_flush_deadline(uv_timer_t *t) {
  cn__conn_close(t->data, "node stopping (output not flushed in time)");
}

void cn__conn_shutdown(cn__conn *c) {
  if (c->state != C_UP || !c->tcp_open) {
    cn__conn_close(c, "node stopping");
    return;
  }
  uv_timer_start(&c->timer, on_flush_deadline, SHUTDOWN_FLUSH_MS, 0);
  close_after_write(c, "node stopping");
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
    if (c->writing && now - c->write_start > limit) {
      /* It talks but reads nothing: our write has waited a whole tick
       * time.  Only now is it dropped (a busy connection suspends its
       * senders instead). */
      cn__conn_close(c, "peer reads nothing: no write completed for "
                        "ticktime");
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
    if (c->state != C_UP && cn__hs_awaits_ack(&c->hs)) {
      c->hs_rc = CN_EAUTH;
      cn__conn_close(c, "closed by peer after our challenge_reply: "
                        "it refused our cookie");
      return;
    }
    cn__conn_close(c, n == UV_EOF ? "closed by peer" : uv_strerror((int)n));
    return;
  }
  if (n == 0 || c->state == C_CLOSING)
    return;
  c->last_read = uv_now(c->d->loop);
  atomic_fetch_add_explicit(&c->d->st_bytes_in, (uint64_t)n,
                            memory_order_relaxed);
  if (c->tls) {
    if (tls_input(c, (size_t)n) != 0 || !cn__tls_up(c->tls))
      return;
  } else {
    c->in.len += (size_t)n;
  }
  process_input(c);
}

static uint32_t be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 |
         u[3];
}

/* ---- TLS (tls.h) ----------------------------------------------------- */

/* n bytes of the TLS stream were read: their plaintext goes to c->in.
 * When the TLS handshake completes, the distribution handshake starts
 * (we send the first message when we dialled).  Returns 0, or -1 when c
 * is closing. */
static int tls_input(cn__conn *c, size_t n) {
  char desc[256];
  int rc = cn__tls_unwrap(c->tls, &c->in, n);
  if (cn__tls_pending(c->tls))
    cn__conn_mark_dirty(c);
  if (rc < 0) {
    c->hs_rc = CN_ENOCONN;
    close_after_write(c, cn__tls_why(c->tls));
    return -1;
  }
  if (rc == 1) {
    cn__tls_describe(c->tls, desc, sizeof(desc));
    cn__dist_log(
        c->d, CN_LOG_INFO, "TLS up %s %s: %s", c->initiator ? "to" : "from",
        c->initiator && c->dn ? cn_node_name(c->dn->node) : "a peer", desc);
    if (c->initiator) {
      if (cn__hs_begin(&c->hs, &c->out) != 0) {
        cn__conn_close(c, "handshake setup failed");
        return -1;
      }
      cn__conn_mark_dirty(c);
    }
  }
  return 0;
}

/* ---- The handshake ---------------------------------------------------- */

static cn__hs_status arbitrate(void *arg, const char *name, size_t len,
                               uint32_t creation) {
  cn__conn *c = arg;
  cn__dist *d = c->d;
  cn__dnode *dn = NULL;
  uint32_t node;
  (void)creation;
  /* Before the challenge, nothing from the peer is trusted: its name is
   * looked up, never interned (that waits for handshake_done), so that
   * peers without the cookie cannot fill the node table. */
  if (len == strlen(d->name) && memcmp(name, d->name, len) == 0)
    return CN__HS_ST_NOT_ALLOWED;
  if (cn_node_find(name, len, &node) == 0)
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
  cn__dist_log(d, CN_LOG_INFO, "connection to %s up (%s, %s)",
               cn_node_name(node), c->initiator ? "outgoing" : "incoming",
               c->peer_flags & CN__DFLAG_PUBLISHED ? "visible" : "hidden");
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

/* Drops the next bytes of a frame over the frame limit, after keeping its
 * head.  Returns true when the frame is behind us. */
static bool skip_input(cn__conn *c, size_t avail) {
  size_t take = avail < c->skip ? avail : (size_t)c->skip;
  if (c->skip_head.len < c->skip_need) {
    size_t want = c->skip_need - c->skip_head.len;
    cn_buf_append(&c->skip_head, c->in.data + c->in_off,
                  take < want ? take : want);
  }
  c->in_off += take;
  c->skip -= take;
  if (!c->skip_told && (c->skip_head.len >= c->skip_need || c->skip_head.err)) {
    c->skip_told = 1;
    cn__route_refused(c->d, c, c->skip_head.data, c->skip_head.len,
                      c->skip_total);
  }
  if (c->skip > 0)
    return false;
  if (c->skip_head.cap > KEEP_BUF)
    cn_buf_free(&c->skip_head);
  return c->state == C_UP;
}

/* A fragment: reassembled, refused, or a broken connection. */
static int take_fragment(cn__conn *c, const char *frame, size_t len) {
  cn__dist *d = c->d;
  int rc = cn__frags_feed(&c->frags, frame, len, &c->fdone, &c->fhead);
  atomic_fetch_add_explicit(&d->st_fragments_in, 1, memory_order_relaxed);
  switch (rc) {
  case CN__FRAG_MORE:
    return 0;
  case CN__FRAG_DONE:
    c->adopt = &c->fdone;
    rc = cn__route_in(d, c, c->fdone.data, c->fdone.len);
    c->adopt = NULL;
    /* Unless its message took it, a large message's buffer goes back at
     * once (kept for the next, see runtime/blocks.c). */
    cn__block_free(c->fdone.data, c->fdone.cap);
    cn_buf_init(&c->fdone);
    return rc;
  case CN__FRAG_REFUSED:
    cn__route_refused(d, c, c->fhead.data, c->fhead.len, 0);
    return 0;
  default:
    return rc == CN_ENOMEM ? rc : CN_EPROTO;
  }
}

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
    bool hdr = (c->peer_flags & CN__DFLAG_FRAGMENTS) != 0;
    cn__frame_kind what;
    uint32_t len;
    int rc;
    if (c->skip > 0) {
      if (skip_input(c, avail))
        continue;
      break;
    }
    if (avail < 4)
      break;
    len = be32(p);
    if (len == 0) {
      c->in_off += 4;
      answer_tick(c);
      continue;
    }
    if (len > d->frame_limit) {
      if (avail < 6)
        break;
      /* Whatever the flags said: any fragment header this big closes. */
      what = cn__frame_kind_of(p + 4, 2, true);
      if (what == CN__FRAME_FRAG_HEAD || what == CN__FRAME_FRAG_CONT) {
        /* Fragments are small by nature; one this big is no fragment. */
        atomic_fetch_add(&d->st_bad_frames, 1);
        cn__conn_close(c, "fragment over the frame limit");
        return;
      }
      /* Too large to keep, but framed: drop its bytes as they come,
       * keeping its head to fail the call in it, if any. */
      c->in_off += 4;
      c->skip = c->skip_total = len;
      c->skip_need = len < CN__FRAG_HEAD ? len : CN__FRAG_HEAD;
      c->skip_told = 0;
      cn_buf_reset(&c->skip_head);
      atomic_fetch_add_explicit(&d->st_frames_in, 1, memory_order_relaxed);
      continue;
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
    what = cn__frame_kind_of(p + 4, len, hdr);
    /* Coalescing counts signals, not pieces: a fragmented message counts
     * once, or one caller's large request would look like several
     * callers' and be held for (coalesce.h). */
    d->turn_frames += what != CN__FRAME_FRAG_CONT;
    if (what == CN__FRAME_BAD)
      rc = CN_EPROTO;
    else if (what == CN__FRAME_WHOLE)
      rc = cn__route_in(d, c, p + 4, len);
    else
      rc = take_fragment(c, p + 4, len);
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
                  arbitrate, c) != 0 ||
      (d->tls && !(c->tls = cn__tls_new(d->tls, false, NULL)))) {
    cn__conn_close(c, "handshake setup failed");
    return;
  }
  c->hs.len4 = c->tls != NULL;
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
    cn__dist_log(d, CN_LOG_ERROR, "cannot listen on %s:%u: %s", addr, port,
                 uv_strerror(rc));
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
                  cn_node_name(c->dn->node), NULL, NULL) != 0) {
    cn__conn_close(c, "handshake setup failed");
    return;
  }
  /* Under TLS the distribution handshake waits for the TLS one (see
   * tls_input). */
  if (d->tls) {
    const char *at = strchr(cn_node_name(c->dn->node), '@');
    c->hs.len4 = 1;
    if (!(c->tls = cn__tls_new(d->tls, true, at ? at + 1 : NULL)) ||
        cn__tls_start(c->tls) != 0) {
      cn__conn_close(c, c->tls ? cn__tls_why(c->tls) : "out of memory");
      return;
    }
  } else if (cn__hs_begin(&c->hs, &c->out) != 0) {
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
