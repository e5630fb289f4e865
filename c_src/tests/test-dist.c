/* Distribution tests, C node to C node: two (or three) runtimes in this
 * process, each a node registered with the real epmd, talking over real
 * loopback TCP with the real handshake.  The same semantics are tested
 * against real erl and elixir nodes in test_erl/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <cnode.h>
#include <uv.h>
#include "helpers.h"

/* A node with schedulers threads and the given dist options (cookie and
 * handshake time filled in). */
static cn_runtime *node_new_with(char *name, size_t cap, const char *tag,
                                 const char *cookie, unsigned schedulers,
                                 cn_dist_options d) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  node_name(name, cap, tag);
  memset(&o, 0, sizeof(o));
  o.schedulers = schedulers;
  o.node_name = name;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  d.cookie = cookie;
  d.handshake_ms = (unsigned)tmo(3000);
  assert_int_equal(cn_dist_start(rt, &d), 0);
  assert_true(cn_dist_port(rt) > 0);
  return rt;
}

static cn_runtime *node_new(char *name, size_t cap, const char *tag,
                            const char *cookie) {
  cn_dist_options d;
  memset(&d, 0, sizeof(d));
  return node_new_with(name, cap, tag, cookie, 2, d);
}

/* ---- A server ---------------------------------------------------------
 * Calls: {echo, T} -> T; pid -> its pid; {stop, R} -> stops with R;
 * {sleep, Ms} -> ok after Ms (deferred); {call, Dest, Req} -> {ok, Reply}
 * or {error, Name} from an async call to {Dest, Node}. */

typedef struct later {
  cn_from *from;
} later;

static void call_done(cn_proc *self, void *state, int status, cn_term reply,
                      void *arg) {
  cn_from *from = arg;
  (void)self;
  (void)state;
  if (status == 0)
    cn_replyf(from, "{ok, ~t}", reply);
  else if (status == CN_EEXIT)
    cn_replyf(from, "{exit, ~t}", reply);
  else
    cn_replyf(from, "{error, ~a}", cn_err_name(status));
}

static int srv_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  cn_term t;
  int64_t ms;
  char name[64], node[256];
  (void)state;
  if (cn_match(req, "{echo, ~t}", &t) == 0)
    return cn_put_term(reply, t) == 0 ? CN_REPLY : CN_STOP;
  if (cn_match(req, "pid") == 0) {
    cn_pid me = cn_proc_pid(self);
    return cn_put_pid(reply, &me) == 0 ? CN_REPLY : CN_STOP;
  }
  if (cn_match(req, "{stop, ~t}", &t) == 0) {
    cn_set_reason_term(self, t);
    return CN_STOP;
  }
  if (cn_match(req, "{sleep, ~i}", &ms) == 0) {
    cn_pid me = cn_proc_pid(self);
    cn_buf b = CN_BUF_INIT;
    cn_ref tref;
    cn_build(&b, "{wake, ~u}", (uint64_t)(uintptr_t)from);
    cn_send_after(cn_proc_runtime(self), (unsigned)ms, cn_to_pid(me),
                  cn_buf_term(&b), &tref);
    cn_buf_free(&b);
    return CN_NOREPLY;
  }
  if (cn_match(req, "{blob, ~i}", &ms) == 0) {
    /* A binary of ms zero bytes. */
    char *z = calloc(1, (size_t)ms);
    int rc = cn_put_binary(reply, z, (size_t)ms);
    free(z);
    return rc == 0 ? CN_REPLY : CN_STOP;
  }
  if (cn_match(req, "{call, ~a, ~a, ~t}", name, sizeof(name), node,
               sizeof(node), &t) == 0) {
    if (cn_call_async(self, cn_to_remote(name, node), t, tmo(2000), call_done,
                      from) != 0)
      return CN_STOP;
    return CN_NOREPLY;
  }
  return cn_build(reply, "{error, unknown_call}") == 0 ? CN_REPLY : CN_STOP;
}

static int srv_info(cn_proc *self, void *state, cn_term msg) {
  uint64_t f;
  (void)self;
  (void)state;
  if (cn_match(msg, "{wake, ~u}", &f) == 0)
    cn_replyf((cn_from *)(uintptr_t)f, "ok");
  return CN_NOREPLY;
}

/* Casts: {hold, Ms}: stuck in C code for Ms, its scheduler with it.
 * {flood, Name, Node, N}: N messages of 1 MiB to {Name, Node}, in this
 * one callback. */
static int srv_cast(cn_proc *self, void *state, cn_term msg) {
  char name[64], node[256];
  int64_t ms, i;
  (void)state;
  if (cn_match(msg, "{hold, ~i}", &ms) == 0)
    uv_sleep((unsigned)ms);
  if (cn_match(msg, "{flood, ~a, ~a, ~i}", name, sizeof(name), node,
               sizeof(node), &ms) == 0) {
    cn_buf b = CN_BUF_INIT;
    char *z = calloc(1, 1 << 20);
    cn_put_binary(&b, z, 1 << 20);
    free(z);
    for (i = 0; i < ms; i++)
      cn_send(cn_proc_runtime(self), cn_to_remote(name, node), cn_buf_term(&b));
    cn_buf_free(&b);
  }
  return CN_NOREPLY;
}

static const cn_server_ops srv_ops = {.name = "test_srv",
                                      .handle_call = srv_call,
                                      .handle_cast = srv_cast,
                                      .handle_info = srv_info};

static cn_pid start_srv(cn_runtime *rt, const char *name) {
  cn_start_options o = {name, NULL};
  cn_pid pid;
  assert_int_equal(cn_start(rt, &srv_ops, NULL, &o, &pid), 0);
  return pid;
}

/* ---- Tests ------------------------------------------------------------ */

static void test_call_both_ways(void **st) {
  char a_name[128], b_name[128];
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT, x = CN_BUF_INIT;
  cn_pid bpid, got;
  int i;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "cookie1");
  b = node_new(b_name, sizeof(b_name), "b", "cookie1");
  bpid = start_srv(b, "echo");
  start_srv(a, "echo");

  /* By {Name, Node}: connects on demand. */
  assert_int_equal(
      cn_call(a, cn_to_remote("echo", b_name),
              T(&q, "{echo, {hello, ~b, ~f, [1 | 2]}}", "bin", (size_t)3, 1.5),
              tmo(5000), &r),
      0);
  assert_true(cn_term_equal(cn_buf_term(&r), T(&x, "{hello, ~b, ~f, [1 | 2]}",
                                               "bin", (size_t)3, 1.5)));
  /* By pid, many times, in order. */
  for (i = 0; i < 200; i++) {
    assert_int_equal(cn_call(a, cn_to_pid(bpid),
                             T(&q, "{echo, ~i}", (int64_t)i), tmo(5000), &r),
                     0);
    assert_true(cn_term_equal(cn_buf_term(&r), T(&x, "~i", (int64_t)i)));
  }
  assert_int_equal(
      cn_call(a, cn_to_remote("echo", b_name), T(&q, "pid"), tmo(5000), &r), 0);
  assert_int_equal(cn_match(cn_buf_term(&r), "~p", &got), 0);
  assert_true(cn_pid_equal(&got, &bpid));

  /* A server on b calls back to a (async, from inside a callback). */
  assert_int_equal(cn_call(b, cn_to_remote("echo", b_name),
                           T(&q, "{call, echo, ~a, {echo, back}}", a_name),
                           tmo(5000), &r),
                   0);
  assert_true(cn_term_equal(cn_buf_term(&r), T(&x, "{ok, back}")));

  {
    const char *names[4];
    assert_int_equal(cn_dist_nodes(a, names, 4), 1);
    assert_string_equal(names[0], b_name);
  }
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_buf_free(&x);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

static void test_call_errors(void **st) {
  char a_name[128], b_name[128], ghost[128];
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT, x = CN_BUF_INIT;
  uint64_t t0;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "cookie2");
  b = node_new(b_name, sizeof(b_name), "b", "cookie2");
  start_srv(b, "echo");

  /* noproc at once for a missing name (no timeout wait). */
  t0 = uv_hrtime();
  assert_int_equal(
      cn_call(a, cn_to_remote("nosuch", b_name), T(&q, "x"), tmo(5000), &r),
      CN_ENOPROC);
  assert_int_equal(
      cn_call(a, cn_to_remote("nosuch", b_name), T(&q, "x"), tmo(5000), &r),
      CN_ENOPROC);
  assert_true(uv_hrtime() - t0 < (uint64_t)tmo(4000) * 1000000ULL);

  /* The server's exit reason reaches the caller. */
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name),
                           T(&q, "{stop, {my, reason}}"), tmo(5000), &r),
                   CN_EEXIT);
  assert_true(cn_term_equal(cn_buf_term(&r), T(&x, "{my, reason}")));

  /* A timeout, and the late reply never reaches us. */
  start_srv(b, "echo");
  assert_int_equal(
      cn_call(a, cn_to_remote("echo", b_name), T(&q, "{sleep, 300}"), 50, &r),
      CN_ETIMEDOUT);
  assert_int_equal(cn_receive(a, tmo(600), &r), CN_ETIMEDOUT);

  /* A node that does not exist. */
  node_name(ghost, sizeof(ghost), "ghost");
  assert_int_equal(
      cn_call(a, cn_to_remote("echo", ghost), T(&q, "x"), tmo(5000), &r),
      CN_ENOCONN);
  assert_int_equal(cn_dist_connect(a, ghost, tmo(5000)), CN_ENOCONN);
  assert_int_equal(cn_dist_connect(a, b_name, tmo(5000)), 0);

  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_buf_free(&x);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

static void test_monitor_link_nodedown(void **st) {
  char a_name[128], b_name[128];
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT, x = CN_BUF_INIT;
  cn_pid bpid, me;
  cn_ref mref, got;
  cn_term reason;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "cookie3");
  b = node_new(b_name, sizeof(b_name), "b", "cookie3");
  bpid = start_srv(b, "echo");
  assert_int_equal(cn_self(a, &me), 0);

  /* A monitor by pid: DOWN with the reason. */
  assert_int_equal(cn_monitor(a, cn_to_pid(bpid), &mref), 0);
  assert_int_equal(
      cn_call(a, cn_to_pid(bpid), T(&q, "{stop, bye}"), tmo(5000), &r),
      CN_EEXIT);
  assert_int_equal(cn_receive(a, tmo(5000), &r), 0);
  assert_int_equal(
      cn_match(cn_buf_term(&r), "{'DOWN', ~r, process, _, ~t}", &got, &reason),
      0);
  assert_true(cn_ref_equal(&got, &mref));
  assert_true(cn_is_atom(reason, "bye"));

  /* A monitor by name of a missing name: noproc, with {Name, Node}. */
  assert_int_equal(cn_monitor(a, cn_to_remote("nosuch", b_name), &mref), 0);
  assert_int_equal(cn_receive(a, tmo(5000), &r), 0);
  assert_true(cn_term_equal(
      cn_buf_term(&r),
      T(&x, "{'DOWN', ~r, process, {nosuch, ~a}, noproc}", &mref, b_name)));

  /* A link: the thread (which traps) gets the EXIT. */
  bpid = start_srv(b, "echo");
  assert_int_equal(cn_link(a, bpid), 0);
  assert_int_equal(cn_exit(a, bpid, T(&q, "kill")), 0);
  assert_int_equal(cn_receive(a, tmo(5000), &r), 0);
  assert_true(
      cn_term_equal(cn_buf_term(&r), T(&x, "{'EXIT', ~p, killed}", &bpid)));

  /* Node down: monitors and links fire with noconnection. */
  bpid = start_srv(b, "echo2");
  assert_int_equal(cn_monitor(a, cn_to_pid(bpid), &mref), 0);
  assert_int_equal(cn_link(a, bpid), 0);
  /* A round trip makes sure both signals are through. */
  assert_int_equal(cn_call(a, cn_to_pid(bpid), T(&q, "pid"), tmo(5000), &r), 0);
  assert_int_equal(cn_dist_disconnect(a, b_name), 0);
  {
    int downs = 0, exits = 0, i;
    for (i = 0; i < 2; i++) {
      assert_int_equal(cn_receive(a, tmo(5000), &r), 0);
      if (cn_term_equal(
              cn_buf_term(&r),
              T(&x, "{'DOWN', ~r, process, ~p, noconnection}", &mref, &bpid)))
        downs++;
      else if (cn_term_equal(cn_buf_term(&r),
                             T(&x, "{'EXIT', ~p, noconnection}", &bpid)))
        exits++;
    }
    assert_int_equal(downs, 1);
    assert_int_equal(exits, 1);
  }
  /* The other side fired its end too: the server, linked to us and not
   * trapping, died of noconnection.  A new one answers after a
   * reconnect. */
  {
    int i;
    for (i = 0; i < 500 && cn_is_alive(b, bpid); i++)
      uv_sleep(10);
    assert_false(cn_is_alive(b, bpid));
  }
  /* Both nodes freed what they held for the connection. */
  {
    cn_dist_stats s;
    assert_int_equal(cn_dist_get_stats(a, &s), 0);
    assert_int_equal(s.links, 0);
    assert_int_equal(s.monitors, 0);
    assert_int_equal(s.queued, 0);
    assert_int_equal(cn_dist_get_stats(b, &s), 0);
    assert_int_equal(s.nodes_up, 0);
    assert_int_equal(s.links, 0);
    assert_int_equal(s.monitors, 0);
  }
  assert_int_equal(cn_call(a, cn_to_pid(bpid), T(&q, "pid"), tmo(5000), &r),
                   CN_ENOPROC);
  bpid = start_srv(b, "echo3");
  assert_int_equal(
      cn_call(a, cn_to_remote("echo3", b_name), T(&q, "pid"), tmo(5000), &r),
      0);

  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_buf_free(&x);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

static void test_wrong_cookie(void **st) {
  char a_name[128], b_name[128], c_name[128];
  cn_runtime *a, *b, *c;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_dist_stats s;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "right");
  b = node_new(b_name, sizeof(b_name), "b", "right");
  c = node_new(c_name, sizeof(c_name), "c", "wrong");
  start_srv(b, "echo");
  assert_int_equal(
      cn_call(c, cn_to_remote("echo", b_name), T(&q, "pid"), tmo(5000), &r),
      CN_ENOCONN);
  assert_int_equal(
      cn_call(a, cn_to_remote("echo", b_name), T(&q, "pid"), tmo(5000), &r), 0);
  assert_int_equal(cn_dist_get_stats(b, &s), 0);
  assert_true(s.handshakes_failed >= 1);
  assert_true(s.connections >= 1);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(b);
  cn_runtime_free(c);
}

/* Large messages between C nodes go in fragments both ways; a request or
 * a reply over the receiver's max_message fails the call at once
 * (CN_ETOOBIG), and the connection stays up. */
static void test_large_messages(void **st) {
  char a_name[128], b_name[128];
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_dist_stats sa, sb;
  cn_dist_options d;
  char *z;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "big");
  memset(&d, 0, sizeof(d));
  d.max_message = 4 << 20;
  b = node_new_with(b_name, sizeof(b_name), "b", "big", 2, d);
  assert_int_equal(cn_max_message(b), 4 << 20);
  start_srv(b, "echo");
  /* 3 MiB each way. */
  z = malloc(3 << 20);
  memset(z, 'z', 3 << 20);
  cn_buf_reset(&q);
  assert_int_equal(cn_build(&q, "{echo, ~b}", z, (size_t)(3 << 20)), 0);
  assert_int_equal(
      cn_call(a, cn_to_remote("echo", b_name), cn_buf_term(&q), tmo(10000), &r),
      0);
  {
    const char *p = NULL;
    size_t n = 0;
    assert_int_equal(cn_get_binary(cn_buf_term(&r), &p, &n), 0);
    assert_int_equal(n, 3 << 20);
    assert_memory_equal(p, z, n);
  }
  free(z);
  assert_int_equal(cn_dist_get_stats(a, &sa), 0);
  assert_int_equal(cn_dist_get_stats(b, &sb), 0);
  assert_true(sa.fragments_out >= 40 && sa.fragments_in >= 40);
  assert_true(sb.fragments_out >= 40 && sb.fragments_in >= 40);
  /* A request over b's limit, and a reply over it: refused at once. */
  z = calloc(1, 5 << 20);
  cn_buf_reset(&q);
  assert_int_equal(cn_build(&q, "{echo, ~b}", z, (size_t)(5 << 20)), 0);
  free(z);
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name), cn_buf_term(&q),
                           CN_INFINITY, &r),
                   CN_ETOOBIG);
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name),
                           T(&q, "{blob, ~i}", (int64_t)(5 << 20)), CN_INFINITY,
                           &r),
                   CN_ETOOBIG);
  /* The connection and b's server are as they were. */
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name),
                           T(&q, "{echo, still}"), tmo(5000), &r),
                   0);
  assert_int_equal(cn_dist_get_stats(b, &sb), 0);
  assert_true(sb.too_large >= 1);
  assert_int_equal(sb.nodes_up, 1);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

/* Two nodes for back-pressure tests: a (returned; two schedulers, the
 * given busy_limit) and *b, with one scheduler and a "holder" server
 * that can stop it (cast {hold, Ms}). */
static cn_runtime *node_new_held(char *a_name, char *b_name, size_t cap,
                                 const char *cookie, size_t busy_limit,
                                 cn_runtime **b) {
  cn_dist_options d;
  cn_runtime *a;
  memset(&d, 0, sizeof(d));
  d.busy_limit = busy_limit;
  a = node_new_with(a_name, cap, "a", cookie, 2, d);
  memset(&d, 0, sizeof(d));
  *b = node_new_with(b_name, cap, "b", cookie, 1, d);
  start_srv(*b, "holder");
  return a;
}

/* Connects a to b (a call to b's server sink), then stops b's only
 * scheduler for ms. */
static void connect_and_hold(cn_runtime *a, const char *b_name,
                             const char *sink, int64_t ms) {
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  assert_int_equal(
      cn_call(a, cn_to_remote(sink, b_name), T(&q, "n"), tmo(5000), &r), 0);
  assert_int_equal(
      cn_cast(a, cn_to_remote("holder", b_name), T(&q, "{hold, ~i}", ms)), 0);
  cn_buf_free(&q);
  cn_buf_free(&r);
}

static void start_sink(cn_runtime *rt, const char *name,
                       const cn_server_ops *ops, void *state) {
  cn_start_options o = {name, NULL};
  cn_pid pid;
  assert_int_equal(cn_start(rt, ops, state, &o, &pid), 0);
}

/* Back-pressure.  b has one scheduler, and a server on it holds that
 * scheduler (its dist loop too) for a while, so b reads nothing.  A
 * process on a that floods b is suspended once a's connection is busy: it
 * answers nothing until b reads again.  A plain thread's nosuspend send
 * gets CN_EBUSY meanwhile.  Nothing is dropped: b's sink gets every
 * message. */
typedef struct sink {
  int n;
} sink;

static int sink_info(cn_proc *self, void *state, cn_term msg) {
  (void)self;
  (void)msg;
  ((sink *)state)->n++;
  return CN_NOREPLY;
}

static int sink_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                     cn_buf *reply) {
  (void)self;
  (void)req;
  (void)from;
  return cn_build(reply, "~i", (int64_t)((sink *)state)->n) == 0 ? CN_REPLY
                                                                 : CN_STOP;
}

static const cn_server_ops sink_ops = {
    .name = "sink", .handle_call = sink_call, .handle_info = sink_info};

static void test_back_pressure(void **st) {
  char a_name[128], b_name[128];
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_dist_stats sa;
  cn_pid flooder;
  sink s = {0};
  int64_t got = 0;
  int i, rc = 0;
  (void)st;
  a = node_new_held(a_name, b_name, sizeof(a_name), "bp", 64 << 10, &b);
  start_sink(b, "sink", &sink_ops, &s);
  flooder = start_srv(a, NULL);
  /* Connect, then stop b's only scheduler for 3 s. */
  connect_and_hold(a, b_name, "sink", tmo(3000));
  uv_sleep(200);
  assert_int_equal(
      cn_cast(a, cn_to_pid(flooder), T(&q, "{flood, sink, ~a, 32}", b_name)),
      0);
  /* Once the kernel's buffers are full, the connection is busy. */
  for (i = 0; i < tmo(200); i++) {
    rc = cn_send_opts(a, cn_to_remote("sink", b_name), T(&q, "x"),
                      CN_SEND_NOSUSPEND);
    if (rc == CN_EBUSY)
      break;
    assert_int_equal(rc, 0);
    got--; /* one more message for the sink */
    uv_sleep(10);
  }
  assert_int_equal(rc, CN_EBUSY);
  /* The flooder is suspended after its callback: it answers nothing. */
  assert_int_equal(cn_call(a, cn_to_pid(flooder), T(&q, "pid"), 500, &r),
                   CN_ETIMEDOUT);
  assert_int_equal(cn_dist_get_stats(a, &sa), 0);
  assert_true(sa.busy >= 1);
  /* b reads again: the flooder goes on, and every message arrived. */
  assert_int_equal(cn_call(a, cn_to_pid(flooder), T(&q, "pid"), tmo(20000), &r),
                   0);
  {
    int64_t want = 32 - got, n = 0; /* got counted the extra sends */
    for (i = 0; i < tmo(200) && n < want; i++) {
      rc = cn_call(a, cn_to_remote("sink", b_name), T(&q, "n"), tmo(5000), &r);
      assert_int_equal(rc, 0);
      assert_int_equal(cn_get_int64(cn_buf_term(&r), &n), 0);
      if (n < want)
        uv_sleep(50);
    }
    assert_int_equal(n, want);
  }
  assert_int_equal(cn_send_opts(a, cn_to_remote("sink", b_name), T(&q, "x"),
                                CN_SEND_NOSUSPEND),
                   0);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

/* Writes the kernel takes only in part.  b's only scheduler is held, so
 * b reads nothing, while a's main thread sends 3000 messages of 1 to
 * 8 KiB (those of 4 KiB and more are written from the message itself,
 * the others copied into the output buffer): a's writes fill the socket
 * and go out in pieces.  b's sink sees every message, whole and in
 * order. */
typedef struct seq_sink {
  int64_t next; /* the sequence number expected */
  int64_t bad;  /* messages out of order or damaged */
} seq_sink;

static size_t seq_size(int64_t i) {
  return i % 3 == 0 ? 8000 : 1000 + (size_t)(i % 7) * 300;
}

static int seq_info(cn_proc *self, void *state, cn_term msg) {
  seq_sink *k = state;
  const char *p;
  size_t n, j;
  int64_t i;
  (void)self;
  if (cn_match(msg, "{~i, ~b}", &i, &p, &n) != 0 || i != k->next ||
      n != seq_size(i)) {
    k->bad++;
  } else {
    for (j = 0; j < n && (unsigned char)p[j] == (unsigned char)(i + j); j++)
      ;
    k->bad += j != n;
  }
  k->next++;
  return CN_NOREPLY;
}

static int seq_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  seq_sink *k = state;
  (void)self;
  (void)req;
  (void)from;
  return cn_build(reply, "{~i, ~i}", k->next, k->bad) == 0 ? CN_REPLY : CN_STOP;
}

static const cn_server_ops seq_ops = {
    .name = "seq_sink", .handle_call = seq_call, .handle_info = seq_info};

static void test_partial_writes_keep_order(void **st) {
  char a_name[128], b_name[128], bin[8000];
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  seq_sink k = {0, 0};
  int64_t i, next = 0, bad = -1;
  size_t j;
  int tries;
  (void)st;
  /* Never busy: every message is queued. */
  a = node_new_held(a_name, b_name, sizeof(a_name), "pw", 256 << 20, &b);
  start_sink(b, "seq", &seq_ops, &k);
  connect_and_hold(a, b_name, "seq", tmo(1500));
  uv_sleep(100);
  for (i = 0; i < 3000; i++) {
    for (j = 0; j < seq_size(i); j++)
      bin[j] = (char)(i + (int64_t)j);
    assert_int_equal(cn_send(a, cn_to_remote("seq", b_name),
                             T(&q, "{~i, ~b}", i, bin, seq_size(i))),
                     0);
  }
  for (tries = 0; tries < tmo(200) && next < 3000; tries++) {
    assert_int_equal(
        cn_call(a, cn_to_remote("seq", b_name), T(&q, "n"), tmo(5000), &r), 0);
    assert_int_equal(cn_match(cn_buf_term(&r), "{~i, ~i}", &next, &bad), 0);
    if (next < 3000)
      uv_sleep(50);
  }
  assert_int_equal(next, 3000);
  assert_int_equal(bad, 0);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

/* Peers without the cookie cannot fill the process-wide node table: the
 * name in a send_name is only looked up until the challenge is answered.
 * 200 raw connections each send a send_name with a fresh name (all of
 * them answered "sok") and go; none of the names is interned. */
static void test_names_not_interned_before_auth(void **st) {
  char a_name[128], fake[64];
  cn_runtime *a;
  uint32_t idx;
  int i;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "names");
  for (i = 0; i < 200; i++) {
    struct sockaddr_in sa;
    unsigned char msg[96], resp[16];
    size_t nl, n = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(cn_dist_port(a));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    nl = (size_t)snprintf(fake, sizeof(fake), "fake%d_%d@nowhere", i,
                          (int)getpid());
    /* send_name, version 6: 'N', flags (OTP 25's mandatory set and
     * HANDSHAKE_23), creation, name. */
    msg[0] = 0;
    msg[1] = (unsigned char)(1 + 8 + 4 + 2 + nl);
    msg[2] = 'N';
    memcpy(msg + 3, "\0\0\0\0\x01\x07\x0f\x94", 8);
    memcpy(msg + 11, "\0\0\0\x01", 4);
    msg[15] = 0;
    msg[16] = (unsigned char)nl;
    memcpy(msg + 17, fake, nl);
    assert_int_equal(write(fd, msg, 17 + nl), (ssize_t)(17 + nl));
    while (n < 5) {
      ssize_t r = read(fd, resp + n, 5 - n);
      assert_true(r > 0);
      n += (size_t)r;
    }
    assert_memory_equal(resp, "\0\x03sok", 5);
    close(fd);
    assert_int_equal(cn_node_find(fake, nl, &idx), CN_ENOENT);
  }
  /* A name that completes the handshake is interned, of course. */
  assert_int_equal(cn_node_find(a_name, strlen(a_name), &idx), 0);
  cn_runtime_free(a);
}

/* Both nodes dial each other at once: one connection wins, and every
 * call made during the race is answered. */
typedef struct racer {
  cn_runtime *rt;
  const char *peer;
  int ok;
} racer;

static void race_thread(void *arg) {
  racer *rc = arg;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  int i;
  for (i = 0; i < 20; i++)
    if (cn_call(rc->rt, cn_to_remote("echo", rc->peer),
                T(&q, "{echo, ~i}", (int64_t)i), tmo(5000), &r) == 0)
      rc->ok++;
  cn_buf_free(&q);
  cn_buf_free(&r);
}

static void test_simultaneous_connect(void **st) {
  char a_name[128], b_name[128];
  cn_runtime *a, *b;
  uv_thread_t ta, tb;
  racer ra, rb;
  (void)st;
  a = node_new(a_name, sizeof(a_name), "a", "cookie5");
  b = node_new(b_name, sizeof(b_name), "b", "cookie5");
  start_srv(a, "echo");
  start_srv(b, "echo");
  ra.rt = a;
  ra.peer = b_name;
  ra.ok = 0;
  rb.rt = b;
  rb.peer = a_name;
  rb.ok = 0;
  uv_thread_create(&ta, race_thread, &ra);
  uv_thread_create(&tb, race_thread, &rb);
  uv_thread_join(&ta);
  uv_thread_join(&tb);
  assert_int_equal(ra.ok, 20);
  assert_int_equal(rb.ok, 20);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

static void test_api_errors(void **st) {
  cn_runtime_options o;
  cn_dist_options d;
  cn_runtime *rt;
  cn_dist_stats s;
  (void)st;
  memset(&o, 0, sizeof(o));
  memset(&d, 0, sizeof(d));
  o.schedulers = 1;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  d.cookie = "x";
  assert_int_equal(cn_dist_start(rt, &d), CN_EINVAL); /* nonode@nohost */
  assert_int_equal(cn_dist_get_stats(rt, &s), CN_ENOTSUP);
  assert_int_equal(cn_dist_connect(rt, "a@b", 10), CN_ENOTSUP);
  assert_int_equal(cn_dist_port(rt), 0);
  {
    /* Without distribution, a remote link or monitor fails as
     * noconnection, and a call with CN_ENOCONN. */
    cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
    cn_ref mref;
    assert_int_equal(cn_call(rt, cn_to_remote("x", "y@z"), T(&q, "a"), 100, &r),
                     CN_ENOCONN);
    assert_int_equal(cn_monitor(rt, cn_to_remote("x", "y@z"), &mref), 0);
    assert_int_equal(cn_receive(rt, tmo(1000), &r), 0);
    assert_int_equal(
        cn_match(cn_buf_term(&r), "{'DOWN', _, process, _, noconnection}"), 0);
    cn_buf_free(&q);
    cn_buf_free(&r);
  }
  cn_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api_errors),
      cmocka_unit_test(test_call_both_ways),
      cmocka_unit_test(test_call_errors),
      cmocka_unit_test(test_monitor_link_nodedown),
      cmocka_unit_test(test_wrong_cookie),
      cmocka_unit_test(test_large_messages),
      cmocka_unit_test(test_back_pressure),
      cmocka_unit_test(test_partial_writes_keep_order),
      cmocka_unit_test(test_names_not_interned_before_auth),
      cmocka_unit_test(test_simultaneous_connect),
  };
  return run_group("dist", tests, NULL, NULL);
}
