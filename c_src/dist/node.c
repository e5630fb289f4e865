/* Distribution: start and stop, epmd registration, the node table, and
 * the public cn_dist_* calls.  See dist_internal.h for the threading. */
#include "dist_internal.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The dist loop is scheduler 0's. */
#define DIST_SCHED 0

cn__dist *cn__dist_of(cn_runtime *rt) {
  return atomic_load_explicit(&rt->dist, memory_order_acquire);
}

static bool on_dist_loop(cn__dist *d) {
  cn__sched *s = cn__current_sched();
  return s && s == &d->rt->sched[DIST_SCHED];
}

/* ---- Logging ---------------------------------------------------------- */

/* At most LOG_BURST lines per second: a hostile peer must not be able to
 * fill the disk through us.  Suppressed lines are counted and reported. */
#define LOG_BURST 20

void cn__dist_log(cn__dist *d, cn_log_level level, const char *fmt, ...) {
  uint64_t now = uv_hrtime() / 1000000000ULL;
  va_list ap;
  /* Dropped levels do not count against the rate limit. */
  if (!cn__log_enabled(level))
    return;
  if (now != d->log_window) {
    if (d->log_suppressed)
      cn__logf(d->rt, CN_LOG_WARNING, "cnode dist", "%u log lines suppressed",
               d->log_suppressed);
    d->log_window = now;
    d->log_n = d->log_suppressed = 0;
  }
  if (++d->log_n > LOG_BURST) {
    d->log_suppressed++;
    return;
  }
  va_start(ap, fmt);
  cn__logv(d->rt, level, "cnode dist", fmt, ap);
  va_end(ap);
}

/* ---- The node table --------------------------------------------------- */

cn__dnode *cn__dnode_get(cn__dist *d, uint32_t node, int create) {
  cn__dnode *dn;
  if (node < d->nodes_cap && d->nodes[node])
    return d->nodes[node];
  if (!create)
    return NULL;
  if (node >= d->nodes_cap) {
    size_t cap = d->nodes_cap ? d->nodes_cap : 16;
    cn__dnode **nv;
    while (cap <= node)
      cap *= 2;
    if (!(nv = realloc(d->nodes, cap * sizeof(*nv))))
      return NULL;
    memset(nv + d->nodes_cap, 0, (cap - d->nodes_cap) * sizeof(*nv));
    d->nodes = nv;
    d->nodes_cap = cap;
  }
  if (!(dn = calloc(1, sizeof(*dn))))
    return NULL;
  dn->node = node;
  d->nodes[node] = dn;
  return dn;
}

static void wake_waiters(cn__dist *d, cn__dnode *dn, int rc) {
  cn__waiter *w;
  pthread_mutex_lock(&d->mu);
  while ((w = dn->waiters)) {
    dn->waiters = w->next;
    w->rc = rc;
    w->done = 1;
  }
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

void cn__dist_fail_queue(cn__dist *d, cn__dnode *dn, int rc) {
  cn__msg *m;
  while ((m = dn->wq_head)) {
    dn->wq_head = m->next;
    cn__route_fail(d, m);
  }
  dn->wq_tail = NULL;
  wake_waiters(d, dn, rc);
}

void cn__dist_node_up(cn__dist *d, cn__dnode *dn, cn__conn *c) {
  cn__msg *m;
  bool visible;
  if (dn->pending == c)
    dn->pending = NULL;
  dn->conn = c;
  pthread_mutex_lock(&d->mu);
  if (d->n_up == d->up_cap) {
    size_t cap = d->up_cap ? d->up_cap * 2 : 8;
    uint32_t *nv = realloc(d->up_nodes, cap * sizeof(*nv));
    if (nv) {
      d->up_nodes = nv;
      d->up_cap = cap;
    }
  }
  visible = d->opt.published && (c->peer_flags & CN__DFLAG_PUBLISHED);
  if (d->n_up < d->up_cap)
    d->up_nodes[d->n_up++] = dn->node | (visible ? CN__UP_VISIBLE : 0);
  pthread_mutex_unlock(&d->mu);
  atomic_fetch_add(&d->st_connections, 1);
  /* Before any frame of the connection is read, as net_kernel's nodeup
   * comes before the node's traffic. */
  cn__dist_notify_node(d, dn->node, true, visible);
  /* What waited for the connection goes out first, in order. */
  while ((m = dn->wq_head)) {
    dn->wq_head = m->next;
    if (!dn->wq_head)
      dn->wq_tail = NULL;
    cn__route_out(d, m->to, m);
  }
  wake_waiters(d, dn, 0);
}

void cn__dist_node_down(cn__dist *d, cn__dnode *dn, cn__conn *c, int rc) {
  if (dn->conn == c) {
    size_t i;
    bool visible = false;
    dn->conn = NULL;
    pthread_mutex_lock(&d->mu);
    for (i = 0; i < d->n_up; i++) {
      if ((d->up_nodes[i] & ~CN__UP_VISIBLE) == dn->node) {
        visible = d->up_nodes[i] & CN__UP_VISIBLE;
        d->up_nodes[i] = d->up_nodes[--d->n_up];
        break;
      }
    }
    pthread_mutex_unlock(&d->mu);
    cn__route_node_down(d, dn);
    /* After the links and monitors fired, as net_kernel's nodedown comes
     * after the node's traffic. */
    cn__dist_notify_node(d, dn->node, false, visible);
  }
  if (dn->pending == c && rc == CN_EEXIST) {
    /* The peer said nok: both sides dialled at once and its own attempt
     * to us goes on.  What waits stays queued for that connection, for a
     * while (see cn__dist_expire). */
    dn->pending = NULL;
    dn->wq_deadline = uv_now(d->loop) + 2 * (uint64_t)d->opt.handshake_ms;
    return;
  }
  if (dn->pending == c) {
    dn->pending = NULL;
    /* The attempt failed: whatever waited for it fails with it. */
    cn__dist_fail_queue(d, dn, rc ? rc : CN_ENOCONN);
  }
}

void cn__dist_expire(cn__dist *d) {
  uint64_t now = uv_now(d->loop);
  size_t i;
  for (i = 0; i < d->nodes_cap; i++) {
    cn__dnode *dn = d->nodes[i];
    if (dn && !dn->conn && !dn->pending && dn->wq_head &&
        now >= dn->wq_deadline)
      cn__dist_fail_queue(d, dn, CN_ENOCONN);
  }
}

void cn__dist_connect_node(cn__dist *d, cn__dnode *dn) {
  if (dn->conn || dn->pending || atomic_load(&d->stopping))
    return;
  cn__conn_dial(d, dn);
}

/* ---- Handing messages to the dist loop -------------------------------- */

static int dist_deliver_now(cn__dist *d, cn_pid to, cn__msg *m);

static void drain_inq(cn__dist *d) {
  cn__msg *tail, *m = cn__msgq_take(&d->inq, NULL, NULL, &tail), *next;
  for (; m; m = next) { /* oldest first */
    next = m->next;
    m->next = NULL;
    cn__route_out(d, m->to, m);
  }
}

/* ---- Back-pressure ---------------------------------------------------- */

/* d->busy[node]: NODE_BUSY while its connection is busy, NODE_STREAMING
 * while it has large messages going out (streams). */
#define NODE_BUSY 1
#define NODE_STREAMING 2

static bool node_busy(cn__dist *d, uint32_t node) {
  return node < CN_MAX_NODES &&
         (atomic_load_explicit(&d->busy[node], memory_order_relaxed) &
          NODE_BUSY);
}

static bool node_streaming(cn__dist *d, uint32_t node) {
  return node < CN_MAX_NODES &&
         (atomic_load_explicit(&d->busy[node], memory_order_relaxed) &
          NODE_STREAMING);
}

void cn__dist_set_streaming(cn__dist *d, cn__dnode *dn, bool on) {
  if (dn->node >= CN_MAX_NODES)
    return;
  if (on)
    atomic_fetch_or(&d->busy[dn->node], (uint8_t)NODE_STREAMING);
  else
    atomic_fetch_and(&d->busy[dn->node], (uint8_t)~NODE_STREAMING);
}

/* A parked sender may go on once its node's connection is not busy and
 * holds at most one message of its in a stream (or is gone).  One: a
 * server that answered with a large reply goes on serving other callers
 * while it goes out, and only its next large message waits for it, so
 * each sender has at most two large messages queued. */
static bool may_go(cn__dist *d, cn__dnode *dn, cn_proc *p) {
  cn__conn *c = dn ? dn->conn : NULL;
  return !c || atomic_load(&d->stopping) ||
         (!c->busy && cn__conn_streamed(c, p->pid) <= 1);
}

void cn__dist_unpark(cn__dist *d, cn__dnode *dn) {
  cn_proc **pp = &dn->parked, *p;
  while ((p = *pp)) {
    if (may_go(d, dn, p)) {
      *pp = p->park_next;
      p->park_next = NULL;
      cn__schedule(p);
    } else {
      pp = &p->park_next;
    }
  }
}

void cn__dist_set_busy(cn__dist *d, cn__dnode *dn, int busy) {
  if (dn->node < CN_MAX_NODES) {
    pthread_mutex_lock(&d->mu);
    if (busy)
      atomic_fetch_or(&d->busy[dn->node], (uint8_t)NODE_BUSY);
    else
      atomic_fetch_and(&d->busy[dn->node], (uint8_t)~NODE_BUSY);
    if (!busy)
      pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
  }
  if (busy)
    atomic_fetch_add(&d->st_busy, 1);
  else
    cn__dist_unpark(d, dn);
}

/* Parks p on its node, or schedules it at once when it may go on. */
static void park_on_loop(cn__dist *d, cn_proc *p) {
  cn__dnode *dn = cn__dnode_get(d, p->park_node - 1, 0);
  p->park_node = 0;
  if (may_go(d, dn, p)) {
    cn__schedule(p);
    return;
  }
  p->park_next = dn->parked;
  dn->parked = p;
}

static void drain_parkq(cn__dist *d) {
  cn_proc *tail, *p = cn__procq_take(&d->parkq, NULL, NULL, &tail), *next;
  for (; p; p = next) {
    next = p->park_next;
    p->park_next = NULL;
    park_on_loop(d, p);
  }
}

static bool dist_park(cn_runtime *rt, cn_proc *p, uint32_t node) {
  cn__dist *d = cn__dist_of(rt);
  if (!d)
    return false;
  if (on_dist_loop(d)) {
    if (atomic_load(&d->stopping))
      return false;
    cn__dnode *dn = cn__dnode_get(d, node, 0);
    if (may_go(d, dn, p))
      return false;
    p->park_next = dn->parked;
    dn->parked = p;
    return true;
  }
  /* park_node tells the loop which node; the loop owns p from here.  The
   * lock orders this against dist_stop: whatever is pushed before stopping
   * is set is drained by the loop's stop, and nothing is pushed after. */
  pthread_mutex_lock(&d->mu);
  if (atomic_load(&d->stopping)) {
    pthread_mutex_unlock(&d->mu);
    return false;
  }
  p->park_node = node + 1;
  cn__procq_push(&d->parkq, p, NULL);
  pthread_mutex_unlock(&d->mu);
  uv_async_send(&d->wake);
  return true;
}

static bool dist_busy(cn_runtime *rt, uint32_t node) {
  cn__dist *d = cn__dist_of(rt);
  return d && node_busy(d, node);
}

/* A plain thread that sent to a busy connection waits for it to drain,
 * or to go. */
static void wait_not_busy(cn__dist *d, uint32_t node) {
  pthread_mutex_lock(&d->mu);
  while (node_busy(d, node) && !atomic_load(&d->stopping))
    cn__cond_wait(&d->cv, &d->mu, 0);
  pthread_mutex_unlock(&d->mu);
}

static int dist_deliver(cn_runtime *rt, cn_pid to, cn__msg *m) {
  cn__dist *d = cn__dist_of(rt);
  bool message = m->kind == CN__M_MSG || m->kind == CN__M_CAST ||
                 m->kind == CN__M_CALL || m->kind == CN__M_REPLY;
  bool big = m->len > CN__FRAG_SIZE;
  if (atomic_load_explicit(&d->stopping, memory_order_relaxed)) {
    cn__msg_free(m);
    return CN_ENOCONN;
  }
  m->to = to;
  if (message && (big || node_busy(d, to.node) || node_streaming(d, to.node))) {
    /* Back-pressure, as the BEAM suspends a sender: a process after its
     * callback (until the connection drains and at most one message of
     * its own waits in streams; while the node has streams, any message
     * may have queued behind one there), a plain thread here (while the
     * connection is busy).  A scheduler thread that runs no process is
     * never held up. */
    cn_proc *cur = cn__current();
    if (!cn__current_sched()) {
      if (node_busy(d, to.node) && !on_dist_loop(d)) {
        int rc = dist_deliver_now(d, to, m);
        wait_not_busy(d, to.node);
        return rc;
      }
    } else if (cur && !cur->thread) {
      cur->park_node = to.node + 1;
    }
  }
  return dist_deliver_now(d, to, m);
}

static void on_wake(uv_async_t *h) {
  drain_inq(h->data);
  drain_parkq(h->data);
}

static int dist_deliver_now(cn__dist *d, cn_pid to, cn__msg *m) {
  if (on_dist_loop(d)) {
    /* Keep the order of what other threads queued before us. */
    drain_inq(d);
    cn__route_out(d, to, m);
    return 0;
  }
  if (!cn__msgq_push(&d->inq, m, NULL)) /* the first since the last
                                         * drain wakes the loop */
    uv_async_send(&d->wake);
  return 0;
}

/* Once per loop turn, before it polls: the turn's writes, then the hold
 * (coalesce.h) if the turn handled several frames at once (answering
 * several requests, or reading a one-way stream) and nothing else is
 * waiting to run here. */
static void on_flush(uv_prepare_t *h) {
  cn__dist *d = h->data;
  unsigned frames = d->turn_frames, us;
  bool wrote = d->dirty != NULL;
  cn__conn_flush_all(d);
  if (frames == 0)
    return;
  d->turn_frames = 0;
  cn__coalesce_turn(&d->co, uv_hrtime(), frames, wrote);
  us = wrote ? cn__coalesce_hold_us(&d->co) : cn__coalesce_read_hold_us(&d->co);
  if (us > 0 && frames >= CN__CO_MIN_FRAMES && !atomic_load(&d->stopping) &&
      cn__sched_quiet(d->rt)) {
    struct timespec ts = {0, (long)us * 1000};
    nanosleep(&ts, NULL);
  }
}

static void on_ticker(uv_timer_t *h) {
  cn__conn_tick_all(h->data);
  cn__dist_expire(h->data);
  cn__blocks_trim(false);
}

/* ---- epmd registration (blocking, in cn_dist_start) ------------------- */

static int connect_loopback(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Registers alive at port; keeps the connection open in *fd_out (epmd
 * forgets the node when it closes).  Starts epmd when none answers. */
static int epmd_register(cn__dist *d, const char *alive, int *fd_out) {
  cn_buf req = CN_BUF_INIT;
  uint32_t epmd_creation; /* epmd's; ours stays the runtime's */
  char resp[16];
  size_t got = 0;
  int fd = -1, rc, tries;

  fd = connect_loopback(d->opt.epmd_port);
  if (fd < 0 && !d->opt.no_epmd_daemon) {
    if (cn__epmd_spawn_daemon() != 0)
      return CN_ENOCONN;
    /* epmd -daemon returns before the daemon listens. */
    for (tries = 0; tries < 100 && fd < 0; tries++) {
      uv_sleep(20);
      fd = connect_loopback(d->opt.epmd_port);
    }
  }
  if (fd < 0)
    return CN_ENOCONN;
  if ((rc = cn__epmd_alive2_req(&req, alive, d->port, !d->opt.published)) !=
          0 ||
      write_all(fd, req.data, req.len) != 0) {
    cn_buf_free(&req);
    close(fd);
    return rc ? rc : CN_ENOCONN;
  }
  cn_buf_free(&req);
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    ssize_t r;
    if (poll(&pfd, 1, 5000) <= 0) {
      rc = CN_ENOCONN;
      break;
    }
    r = read(fd, resp + got, sizeof(resp) - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      rc = CN_ENOCONN;
      break;
    }
    got += (size_t)r;
    rc = cn__epmd_alive2_resp(resp, got, &epmd_creation);
    if (rc != 1)
      break;
  }
  if (rc != 0) {
    close(fd);
    return rc == CN_EEXIST ? CN_EEXIST : CN_ENOCONN;
  }
  *fd_out = fd;
  return 0;
}

/* ---- Listening -------------------------------------------------------- */

/* The default address: where the node's own host name points, when that
 * is a loopback address (so that peers who resolve the name reach us),
 * and 127.0.0.1 otherwise.  Never every interface unless told. */
static void default_listen_addr(const char *node, char *out, size_t cap) {
  const char *host = strchr(node, '@');
  struct addrinfo hints, *res = NULL;
  snprintf(out, cap, "127.0.0.1");
  if (!host)
    return;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host + 1, NULL, &hints, &res) == 0 && res) {
    struct sockaddr_in *sa = (struct sockaddr_in *)res->ai_addr;
    if ((ntohl(sa->sin_addr.s_addr) >> 24) == 127)
      inet_ntop(AF_INET, &sa->sin_addr, out, (socklen_t)cap);
  }
  if (res)
    freeaddrinfo(res);
}

/* ---- Start ------------------------------------------------------------ */

static const cn__dist_ops ops; /* below */

typedef struct setup {
  cn__dist *d;
  const char *addr;
  int rc;
} setup;

static void setup_on_loop(void *arg) {
  setup *su = arg;
  cn__dist *d = su->d;
  d->loop = cn__sched_loop(d->rt, DIST_SCHED);
  uv_async_init(d->loop, &d->wake, on_wake);
  d->wake.data = d;
  uv_prepare_init(d->loop, &d->flush);
  d->flush.data = d;
  uv_prepare_start(&d->flush, on_flush);
  uv_unref((uv_handle_t *)&d->flush);
  cn__coalesce_init(
      &d->co, d->opt.coalesce_max_us > 0 ? (unsigned)d->opt.coalesce_max_us : 0,
      uv_hrtime());
  /* Holds of tens of microseconds: the default timer slack (50 us)
   * would stretch them.  This thread only. */
  (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  uv_timer_init(d->loop, &d->ticker);
  d->ticker.data = d;
  {
    /* Four ticks per ticktime, as net_kernel does. */
    uint64_t every = (uint64_t)d->opt.ticktime_s * 1000 / 4;
    /* Queues left by a lost simultaneous connect expire on this timer
     * too, so it runs at least once per handshake time. */
    if (every > d->opt.handshake_ms)
      every = d->opt.handshake_ms;
    uv_timer_start(&d->ticker, on_ticker, every, every);
  }
  uv_unref((uv_handle_t *)&d->ticker);
  d->handles = 3;
  su->rc = cn__conn_listen(d, su->addr, d->opt.listen_port);
}

static void fill_defaults(cn_dist_options *o) {
  const char *env;
  if (!o->ticktime_s)
    o->ticktime_s = CN_DIST_DEFAULT_TICKTIME;
  if (!o->handshake_ms)
    o->handshake_ms = CN_DIST_DEFAULT_HANDSHAKE_MS;
  if (!o->max_handshakes)
    o->max_handshakes = CN_DIST_DEFAULT_MAX_HANDSHAKES;
  if (!o->busy_limit)
    o->busy_limit = CN_DIST_DEFAULT_BUSY_LIMIT;
  if (!o->coalesce_max_us)
    o->coalesce_max_us = CN_DIST_DEFAULT_COALESCE_MAX_US;
  if (!o->epmd_port) {
    env = getenv("ERL_EPMD_PORT");
    o->epmd_port = env && atoi(env) > 0 && atoi(env) < 65536
                       ? (uint16_t)atoi(env)
                       : CN_DIST_DEFAULT_EPMD_PORT;
  }
}

static void dist_free_mem(cn__dist *d) {
  cn__global_free(d);
  cn__pg_free(d);
  cn__nodemons_free(d);
  cn__tls_ctx_free(d->tls);
  free((void *)d->busy);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cv);
  free(d->up_nodes);
  free(d->nodes);
  free(d);
}

int cn_dist_start(cn_runtime *rt, const cn_dist_options *opts) {
  char alive[CN_MAX_NODE_NAME + 1], addr[64];
  const char *at;
  cn__dist *d;
  setup su;
  int rc;

  if (!rt || !opts || !opts->cookie || strlen(opts->cookie) > 255 ||
      rt->node == 0)
    return CN_EINVAL;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  if (cn__dist_of(rt) || rt->dist_ops)
    return CN_EEXIST;
  if (!(d = calloc(1, sizeof(*d))))
    return CN_ENOMEM;
  d->rt = rt;
  d->opt = *opts;
  fill_defaults(&d->opt);
  snprintf(d->name, sizeof(d->name), "%s", cn_node_name(rt->node));
  snprintf(d->cookie, sizeof(d->cookie), "%s", opts->cookie);
  d->opt.cookie = d->cookie;
  d->opt.listen_addr = NULL;
  d->flags = CN__DFLAGS_OURS | (opts->published ? CN__DFLAG_PUBLISHED : 0);
  d->creation = rt->creation;
  d->lim.max_depth =
      rt->limits.max_depth ? rt->limits.max_depth : CN_TERM_DEFAULT_MAX_DEPTH;
  /* One limit both ways: a smaller max_message lowers the runtime's, so
   * that what a server accepts from the wire it can also send back. */
  if (d->opt.max_message == 0 || d->opt.max_message > cn_max_message(rt))
    d->opt.max_message = cn_max_message(rt);
  if (d->opt.max_message < 64)
    d->opt.max_message = 64;
  atomic_store(&rt->max_message, d->opt.max_message);
  /* Payloads may be a little over max_message on the wire: a call's
   * request or a reply travels inside an envelope (the '$gen_call' tuple,
   * the caller, the tag), and what a process gets is held to max_message
   * exactly (see deliver_msg). */
  d->lim.max_size = d->opt.max_message + CN__ENVELOPE;
  d->frame_limit = d->opt.max_message + CN__CTL_ROOM;
  if (!d->opt.max_reassembly)
    d->opt.max_reassembly = 2 * d->frame_limit;
  d->opt.tls = NULL; /* read here, not kept */
  if (opts->tls) {
    char why[512];
    if ((rc = cn__tls_ctx_new(opts->tls, &d->tls, why, sizeof(why))) != 0) {
      if (rc == CN_EINVAL)
        cn__logf(rt, CN_LOG_ERROR, "cnode dist", "TLS distribution: %s", why);
      free(d);
      return rc;
    }
    /* As OTP: the node starts, and every handshake it accepts fails. */
    if (!opts->tls->server.certfile)
      cn__logf(rt, CN_LOG_WARNING, "cnode dist",
               "TLS distribution without a server certfile: connections "
               "from other nodes will fail");
  }
  if (!(d->busy = calloc(CN_MAX_NODES, sizeof(*d->busy)))) {
    cn__tls_ctx_free(d->tls);
    free(d);
    return CN_ENOMEM;
  }
  d->epmd_fd = -1;
  pthread_mutex_init(&d->mu, NULL);
  uv_cond_init(&d->cv); /* monotonic, for cn__cond_wait */
  at = strchr(d->name, '@');
  snprintf(alive, sizeof(alive), "%.*s", (int)(at - d->name), d->name);
  if (opts->listen_addr)
    snprintf(addr, sizeof(addr), "%s", opts->listen_addr);
  else
    default_listen_addr(d->name, addr, sizeof(addr));

  /* Listen first (epmd needs our port), then register. */
  su.d = d;
  su.addr = addr;
  su.rc = 0;
  cn__sched_run(rt, DIST_SCHED, setup_on_loop, &su);
  rc = su.rc;
  /* Our pids already carry the runtime's creation, and peers learn it in
   * the handshake; epmd's is not used.  The listener may accept while we
   * register, so nothing here touches what the loop reads. */
  if (rc == 0)
    rc = epmd_register(d, alive, &d->epmd_fd);
  rt->dist_ops = &ops;
  atomic_store_explicit(&rt->dist, d, memory_order_release);
  if (rc != 0) {
    ops.stop(rt);
    atomic_store(&rt->dist, NULL);
    rt->dist_ops = NULL;
    /* The closed handles' callbacks have run (stop waits for them). */
    dist_free_mem(d);
    return rc;
  }
  if ((rc = cn__net_kernel_start(d)) != 0)
    cn__logf(rt, CN_LOG_ERROR, "cnode dist", "net_kernel did not start: %s",
             cn_strerror(rc));
  /* A hidden node takes no part in global, as in OTP. */
  if (d->opt.published && (rc = cn__global_start(d)) != 0)
    cn__logf(rt, CN_LOG_ERROR, "cnode dist", "global did not start: %s",
             cn_strerror(rc));
  if ((rc = cn__rex_start(d)) != 0)
    cn__logf(rt, CN_LOG_ERROR, "cnode dist", "rex did not start: %s",
             cn_strerror(rc));
  if ((rc = cn__builtins_export(d)) != 0)
    cn__logf(rt, CN_LOG_ERROR, "cnode dist", "built-in exports: %s",
             cn_strerror(rc));
  return 0;
}

/* ---- Stop ------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  cn__dist *d = h->data;
  if (--d->handles == 0) {
    pthread_mutex_lock(&d->mu);
    d->stopped = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
  }
}

static void stop_on_loop(void *arg) {
  cn__dist *d = arg;
  cn__conn *c, *next;
  size_t i;
  drain_inq(d);
  /* Parked senders go on: there is nothing left to wait for. */
  drain_parkq(d);
  for (i = 0; i < d->nodes_cap; i++) {
    if (d->nodes[i])
      cn__dist_unpark(d, d->nodes[i]);
  }
  if (!uv_is_closing((uv_handle_t *)&d->listener) && d->listener.loop)
    uv_close((uv_handle_t *)&d->listener, on_handle_closed);
  /* What is on its way still goes (the exit signals and DOWNs of a node
   * going down, above all), within a deadline; then each connection
   * closes. */
  d->stop_began = 1;
  for (c = d->conns; c; c = next) {
    next = c->next;
    cn__conn_shutdown(c);
  }
  /* Anything still waiting for a connection fails now. */
  for (i = 0; i < d->nodes_cap; i++) {
    if (d->nodes[i])
      cn__dist_fail_queue(d, d->nodes[i], CN_ENOCONN);
  }
  cn__dist_conn_gone(d);
}

void cn__dist_conn_gone(cn__dist *d) {
  if (!d->stop_began || d->conns || d->handles_closing)
    return;
  d->handles_closing = 1;
  uv_close((uv_handle_t *)&d->flush, on_handle_closed);
  uv_close((uv_handle_t *)&d->ticker, on_handle_closed);
  uv_close((uv_handle_t *)&d->wake, on_handle_closed);
}

static void dist_stop(cn_runtime *rt) {
  cn__dist *d = cn__dist_of(rt);
  int was;
  if (!d)
    return;
  pthread_mutex_lock(&d->mu);
  was = atomic_exchange(&d->stopping, 1);
  pthread_cond_broadcast(&d->cv); /* threads waiting in sends go on */
  pthread_mutex_unlock(&d->mu);
  if (was)
    return;
  cn__sched_run(rt, DIST_SCHED, stop_on_loop, d);
  /* Close callbacks run on the loop's next turns. */
  pthread_mutex_lock(&d->mu);
  while (!d->stopped)
    pthread_cond_wait(&d->cv, &d->mu);
  pthread_mutex_unlock(&d->mu);
  /* global's locker thread ends now: with the connections gone, a call it
   * makes to another node fails at once instead of waiting out its
   * timeout; the processes it calls here still run. */
  cn__global_stop(d);
  if (d->epmd_fd >= 0) {
    close(d->epmd_fd); /* epmd forgets us */
    d->epmd_fd = -1;
  }
}

static void dist_free(cn_runtime *rt) {
  cn__dist *d = cn__dist_of(rt);
  cn__msg *m, *next;
  size_t i;
  if (!d)
    return;
  for (m = atomic_exchange(&d->inq, NULL); m; m = next) {
    next = m->next;
    cn__msg_free(m);
  }
  for (i = 0; i < d->nodes_cap; i++) {
    cn__dnode *dn = d->nodes[i];
    if (!dn)
      continue;
    cn__rtab_free(&dn->mons);
    cn__rtab_free(&dn->links);
    free(dn);
  }
  atomic_store(&rt->dist, NULL);
  dist_free_mem(d);
}

static const cn__dist_ops ops = {dist_deliver, dist_stop, dist_free,
                                 dist_park,    dist_busy, cn__route_reply};

/* ---- Public calls ----------------------------------------------------- */

uint16_t cn_dist_port(cn_runtime *rt) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  return d ? d->port : 0;
}

typedef struct connect_req {
  cn__dist *d;
  uint32_t node;
  cn__waiter w;
} connect_req;

static void connect_on_loop(void *arg) {
  connect_req *r = arg;
  cn__dist *d = r->d;
  cn__dnode *dn = cn__dnode_get(d, r->node, 1);
  if (!dn) {
    r->w.done = 1;
    r->w.rc = CN_ENOMEM;
    return;
  }
  if (dn->conn) {
    r->w.done = 1;
    return;
  }
  pthread_mutex_lock(&d->mu);
  r->w.next = dn->waiters;
  dn->waiters = &r->w;
  pthread_mutex_unlock(&d->mu);
  cn__dist_connect_node(d, dn);
}

static void unwait_on_loop(void *arg) {
  connect_req *r = arg;
  cn__dnode *dn = cn__dnode_get(r->d, r->node, 0);
  cn__waiter **wp;
  pthread_mutex_lock(&r->d->mu);
  for (wp = dn ? &dn->waiters : NULL; wp && *wp; wp = &(*wp)->next) {
    if (*wp == &r->w) {
      *wp = r->w.next;
      break;
    }
  }
  pthread_mutex_unlock(&r->d->mu);
}

int cn_dist_connect(cn_runtime *rt, const char *node, cn_ms timeout) {
  int timeout_ms = cn__ms(timeout);
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  connect_req r;
  uint64_t deadline;
  int rc;

  if (!rt || !node || !strchr(node, '@'))
    return CN_EINVAL;
  if (!d || atomic_load(&d->stopping))
    return CN_ENOTSUP;
  if (cn__current() || cn__current_sched())
    return CN_EDEADLK;
  memset(&r, 0, sizeof(r));
  r.d = d;
  if ((rc = cn_node_intern(node, strlen(node), &r.node)) != 0)
    return rc;
  if (r.node == rt->node)
    return 0; /* ourselves: always "connected" */
  cn__sched_run(rt, DIST_SCHED, connect_on_loop, &r);
  deadline =
      timeout_ms < 0 ? 0 : uv_hrtime() + (uint64_t)timeout_ms * 1000000ULL + 1;
  pthread_mutex_lock(&d->mu);
  while (!r.w.done && cn__cond_wait(&d->cv, &d->mu, deadline))
    ;
  rc = r.w.done ? r.w.rc : CN_ETIMEDOUT;
  pthread_mutex_unlock(&d->mu);
  if (!r.w.done)
    cn__sched_run(rt, DIST_SCHED, unwait_on_loop, &r);
  return rc;
}

typedef struct disconnect_req {
  cn__dist *d;
  uint32_t node;
  int rc;
} disconnect_req;

static void disconnect_on_loop(void *arg) {
  disconnect_req *r = arg;
  cn__dnode *dn = cn__dnode_get(r->d, r->node, 0);
  if (!dn || !dn->conn) {
    r->rc = CN_ENOENT;
    return;
  }
  cn__conn_close(dn->conn, "disconnected");
}

int cn_dist_disconnect(cn_runtime *rt, const char *node) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  disconnect_req r = {d, 0, 0};
  if (!rt || !node)
    return CN_EINVAL;
  if (!d || atomic_load(&d->stopping))
    return CN_ENOENT;
  if (cn_node_intern(node, strlen(node), &r.node) != 0)
    return CN_ENOENT;
  cn__sched_run(rt, DIST_SCHED, disconnect_on_loop, &r);
  return r.rc;
}

size_t cn_dist_nodes(cn_runtime *rt, const char **names, size_t cap) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  size_t i, n;
  if (!d)
    return 0;
  pthread_mutex_lock(&d->mu);
  n = d->n_up;
  for (i = 0; i < n && i < cap; i++)
    names[i] = cn_node_name(d->up_nodes[i] & ~CN__UP_VISIBLE);
  pthread_mutex_unlock(&d->mu);
  return n;
}

typedef struct gauge_req {
  cn__dist *d;
  cn_dist_stats *st;
} gauge_req;

static void gauges_on_loop(void *arg) {
  gauge_req *r = arg;
  cn__dist *d = r->d;
  size_t i;
  for (i = 0; i < d->nodes_cap; i++) {
    cn__dnode *dn = d->nodes[i];
    cn__msg *m;
    if (!dn)
      continue;
    r->st->nodes_up += dn->conn != NULL;
    r->st->links += dn->links.n;
    r->st->monitors += dn->mons.n;
    for (m = dn->wq_head; m; m = m->next)
      r->st->queued++;
  }
}

int cn_dist_get_stats(cn_runtime *rt, cn_dist_stats *st) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  if (!d || !st)
    return d ? CN_EINVAL : CN_ENOTSUP;
  memset(st, 0, sizeof(*st));
  if (!atomic_load(&d->stopping) && (on_dist_loop(d) || !cn__current_sched())) {
    gauge_req r = {d, st};
    cn__sched_run(rt, DIST_SCHED, gauges_on_loop, &r);
  }
  st->connections = atomic_load(&d->st_connections);
  st->handshakes_failed = atomic_load(&d->st_hs_failed);
  st->frames_in = atomic_load(&d->st_frames_in);
  st->frames_out = atomic_load(&d->st_frames_out);
  st->bytes_in = atomic_load(&d->st_bytes_in);
  st->bytes_out = atomic_load(&d->st_bytes_out);
  st->dropped = atomic_load(&d->st_dropped);
  st->bad_frames = atomic_load(&d->st_bad_frames);
  st->too_large = atomic_load(&d->st_too_large);
  st->fragments_in = atomic_load(&d->st_fragments_in);
  st->fragments_out = atomic_load(&d->st_fragments_out);
  st->busy = atomic_load(&d->st_busy);
  return 0;
}
