/* Runtime tests: processes, calls, casts, names, timers, links, monitors,
 * exits, timeouts and deadlock detection. */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cnode.h>
#include <uv.h>
#include "helpers.h"

/* ---- A test server ---------------------------------------------------
 * State: a counter.  Calls:
 *   get -> {ok, N}; {add, K} -> {ok, N+K}; {defer, Ms} -> ok after Ms
 *   {stop, Reason} -> stop without reply; {stop_reply, R} -> reply ok, stop
 *   {call, Pid} -> calls Pid with get asynchronously, replies its answer
 *   sync_self -> cn_call from inside a handler (must be CN_EDEADLK)
 *   bad -> returns 42 (bad return value)
 *   {timeout, Ms} -> ok, and sets the idle timeout
 *   trap -> ok, traps exits; {link, Pid} -> ok
 *   infos -> {ok, [Info...]} the messages seen by handle_info (newest first)
 * Casts: {add, K}; stop.
 */
typedef struct srv {
  int64_t n;
  cn_buf infos; /* list cells accumulated as a term */
  int ninfos;
  int *terminated; /* set to 1 + order when terminate runs */
} srv;

static int term_order;

static int srv_init(cn_proc *self, void *arg, void **state) {
  srv *s = calloc(1, sizeof(*s));
  s->terminated = arg;
  cn_buf_init(&s->infos);
  *state = s;
  return CN_NOREPLY;
}

typedef struct deferred {
  cn_from *from;
} deferred;

static void reply_cb(cn_proc *self, void *state, int status, cn_term reply,
                     void *arg) {
  cn_from *from = arg;
  if (status == 0)
    cn_replyf(from, "{ok, ~t}", reply);
  else if (status == CN_EEXIT)
    cn_replyf(from, "{error, {exit, ~t}}", reply);
  else
    cn_replyf(from, "{error, ~a}", cn_err_name(status));
}

static int srv_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  srv *s = state;
  int64_t k;
  cn_term t;
  cn_pid pid;
  char store[64];
  cn_buf b;

  if (cn_match(req, "get") == 0)
    return cn_build(reply, "{ok, ~i}", s->n), CN_REPLY;
  if (cn_match(req, "{add, ~i}", &k) == 0) {
    s->n += k;
    return cn_build(reply, "{ok, ~i}", s->n), CN_REPLY;
  }
  if (cn_match(req, "{defer, ~i}", &k) == 0) {
    cn_buf_init_with(&b, store, sizeof(store));
    cn_build(&b, "{deferred_reply, ~i}", (int64_t)(uintptr_t)from);
    /* Reply later through a timer message to ourselves. */
    cn_send_after(cn_proc_runtime(self), (unsigned)k,
                  cn_to_pid(cn_proc_pid(self)), cn_buf_term(&b), NULL);
    cn_buf_free(&b);
    return CN_NOREPLY;
  }
  if (cn_match(req, "{stop, ~t}", &t) == 0) {
    cn_set_reason_term(self, t);
    return CN_STOP;
  }
  if (cn_match(req, "{stop_reply, ~t}", &t) == 0) {
    cn_set_reason_term(self, t);
    cn_build(reply, "ok");
    return CN_STOP_REPLY;
  }
  if (cn_match(req, "{call, ~p}", &pid) == 0) {
    cn_buf_init_with(&b, store, sizeof(store));
    cn_build(&b, "get");
    cn_call_async(self, cn_to_pid(pid), cn_buf_term(&b), tmo(2000), reply_cb,
                  from);
    cn_buf_free(&b);
    return CN_NOREPLY;
  }
  if (cn_match(req, "{call_name, ~t}", &t) == 0) {
    char name[64];
    cn_get_atom(t, name, sizeof(name));
    cn_buf_init_with(&b, store, sizeof(store));
    cn_build(&b, "get");
    cn_call_async(self, cn_to_name(name), cn_buf_term(&b), tmo(2000), reply_cb,
                  from);
    cn_buf_free(&b);
    return CN_NOREPLY;
  }
  if (cn_match(req, "{call_req, ~p, ~t, ~i}", &pid, &t, &k) == 0) {
    cn_call_async(self, cn_to_pid(pid), t, (int)k, reply_cb, from);
    return CN_NOREPLY;
  }
  if (cn_match(req, "sync_self") == 0) {
    cn_buf r = CN_BUF_INIT;
    cn_buf_init_with(&b, store, sizeof(store));
    cn_build(&b, "get");
    int rc = cn_call(cn_proc_runtime(self), cn_to_pid(cn_proc_pid(self)),
                     cn_buf_term(&b), 100, &r);
    cn_buf_free(&b);
    cn_buf_free(&r);
    return cn_build(reply, "~a", cn_err_name(rc)), CN_REPLY;
  }
  if (cn_match(req, "{big, ~i}", &k) == 0) {
    /* A binary reply of k bytes (over max_message when k is). */
    char *z = calloc(1, (size_t)k);
    cn_put_binary(reply, z, (size_t)k);
    free(z);
    return CN_REPLY;
  }
  if (cn_match(req, "bad") == 0)
    return 42;
  if (cn_match(req, "continue") == 0) /* srv has no handle_continue */
    return cn_build(reply, "~a", cn_err_name(cn_continue(self, "x"))), CN_REPLY;
  if (cn_match(req, "forgot") == 0)
    return cn_build(reply, "done"); /* the trap: 0 is no result */
  if (cn_match(req, "garbage_reply") == 0) {
    /* A tuple that claims two elements and holds one. */
    static const char junk[] = {104, 2, 97, 1};
    cn_buf_append(reply, junk, sizeof(junk));
    return CN_REPLY;
  }
  if (cn_match(req, "{timeout, ~i}", &k) == 0) {
    cn_set_timeout(self, (int)k);
    return cn_build(reply, "ok"), CN_REPLY;
  }
  if (cn_match(req, "trap_status") == 0) {
    /* Sets the flag to what it was, and says what that was. */
    bool old = false, again = true;
    assert_int_equal(cn_trap_exit(self, false, &old), 0);
    assert_int_equal(cn_trap_exit(self, old, &again), 0);
    assert_false(again);
    return cn_build(reply, "~a", old ? "trapping" : "not_trapping"), CN_REPLY;
  }
  if (cn_match(req, "trap") == 0) {
    cn_trap_exit(self, true, NULL);
    return cn_build(reply, "ok"), CN_REPLY;
  }
  if (cn_match(req, "{link, ~p}", &pid) == 0) {
    cn_link(cn_proc_runtime(self), pid);
    return cn_build(reply, "ok"), CN_REPLY;
  }
  if (cn_match(req, "{unlink, ~p}", &pid) == 0) {
    cn_unlink(cn_proc_runtime(self), pid);
    return cn_build(reply, "ok"), CN_REPLY;
  }
  if (cn_match(req, "{monitor, ~p}", &pid) == 0) {
    cn_ref r;
    cn_monitor(cn_proc_runtime(self), cn_to_pid(pid), &r);
    return cn_build(reply, "ok"), CN_REPLY;
  }
  if (cn_match(req, "infos") == 0) {
    cn_put_tuple(reply, 2);
    cn_put_atom(reply, "ok");
    cn_put_list(reply, (uint32_t)s->ninfos);
    cn_buf_append(reply, s->infos.data, s->infos.len);
    cn_put_nil(reply);
    return CN_REPLY;
  }
  return cn_build(reply, "{error, unknown}"), CN_REPLY;
}

static int srv_cast(cn_proc *self, void *state, cn_term msg) {
  srv *s = state;
  int64_t k;
  if (cn_match(msg, "{busy, ~i}", &k) == 0) {
    uv_sleep((unsigned)k); /* a handler stuck in C code for a while */
    return CN_NOREPLY;
  }
  if (cn_match(msg, "{add, ~i}", &k) == 0) {
    s->n += k;
    return CN_NOREPLY;
  }
  if (cn_match(msg, "stop") == 0)
    return CN_STOP;
  return CN_NOREPLY;
}

static int srv_info(cn_proc *self, void *state, cn_term msg) {
  srv *s = state;
  int64_t k;
  if (cn_match(msg, "{deferred_reply, ~i}", &k) == 0) {
    cn_replyf((cn_from *)(uintptr_t)k, "deferred_ok");
    return CN_NOREPLY;
  }
  /* Keep a copy of every other message, newest first. */
  {
    cn_buf nb = CN_BUF_INIT;
    cn_put_term(&nb, msg);
    cn_buf_append(&nb, s->infos.data, s->infos.len);
    cn_buf_free(&s->infos);
    s->infos = nb;
    s->ninfos++;
  }
  return CN_NOREPLY;
}

static void srv_terminate(cn_proc *self, void *state, cn_term reason) {
  srv *s = state;
  if (s->terminated)
    *s->terminated = ++term_order;
}

static void srv_free(void *state) {
  srv *s = state;
  cn_buf_free(&s->infos);
  free(s);
}

static const cn_server_ops srv_ops = {
    .name = "test_srv",
    .init = srv_init,
    .handle_call = srv_call,
    .handle_cast = srv_cast,
    .handle_info = srv_info,
    .terminate = srv_terminate,
    .free_state = srv_free,
};

static cn_pid start_srv(cn_runtime *rt, int *terminated) {
  cn_pid pid;
  assert_int_equal(cn_start(rt, &srv_ops, terminated, NULL, &pid), 0);
  return pid;
}

/* Calls and checks the reply against an expected term written as text. */
static int call_expect(cn_runtime *rt, cn_dest to, const char *req,
                       const char *expect) {
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  int rc;
  assert_int_equal(cn_build(&rq, req), 0);
  rc = cn_call(rt, to, cn_buf_term(&rq), tmo(2000), &rep);
  if (rc == 0 && expect) {
    assert_int_equal(cn_build(&ex, expect), 0);
    if (!cn_term_equal(cn_buf_term(&rep), cn_buf_term(&ex))) {
      cn_buf txt = CN_BUF_INIT;
      cn_term_print(cn_buf_term(&rep), &txt);
      fail_msg("reply %s, expected %s", txt.data, expect);
    }
  }
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  return rc;
}

static void wait_dead(cn_runtime *rt, cn_pid pid) {
  int i;
  for (i = 0; i < tmo(2000) && cn_is_alive(rt, pid); i++)
    uv_sleep(1);
  assert_false(cn_is_alive(rt, pid));
}

/* Receives one message on this thread and matches it against pattern. */
static cn_buf rx;
static cn_term receive(cn_runtime *rt) {
  assert_int_equal(cn_receive(rt, tmo(2000), &rx), 0);
  return cn_buf_term(&rx);
}

/* ---- Tests ------------------------------------------------------------ */

static void test_call_cast_info(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  cn_buf b = CN_BUF_INIT;
  int i;

  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 0}"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "{add, 5}", "{ok, 5}"), 0);
  for (i = 0; i < 100; i++)
    assert_int_equal(cn_cast(rt, cn_to_pid(pid), T(&b, "{add, 1}")), 0);
  /* FIFO per sender: the call comes after the casts. */
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 105}"), 0);
  assert_int_equal(cn_send(rt, cn_to_pid(pid), T(&b, "{hello, 1}")), 0);
  assert_int_equal(
      call_expect(rt, cn_to_pid(pid), "infos", "{ok, [{hello, 1}]}"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "nope", "{error, unknown}"),
                   0);
  /* One buffer as request and reply, on the inline path (idle server). */
  {
    cn_buf one = CN_BUF_INIT;
    cn_build(&one, "{add, 2}");
    assert_int_equal(
        cn_call(rt, cn_to_pid(pid), cn_buf_term(&one), tmo(1000), &one), 0);
    assert_int_equal(cn_match(cn_buf_term(&one), "{ok, 107}"), 0);
    cn_buf_free(&one);
  }
  assert_int_equal(cn_process_count(rt), 1);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(1000)), 0);
  assert_false(cn_is_alive(rt, pid));
  assert_int_equal(cn_process_count(rt), 0);
  cn_buf_free(&b);
  cn_runtime_free(rt);
}

/* handle_continue: a server that records what it handles, in order. */
typedef struct contsrv {
  cn_buf events; /* list cells, oldest first */
  int n;
} contsrv;

static void note(contsrv *s, cn_term t) {
  cn_put_term(&s->events, t);
  s->n++;
}

static int cont_init(cn_proc *self, void *arg, void **state) {
  contsrv *s = calloc(1, sizeof(*s));
  (void)arg;
  cn_buf_init(&s->events);
  *state = s;
  assert_int_equal(cn_continue(self, "from_init"), 0);
  return CN_NOREPLY;
}

static int cont_continue(cn_proc *self, void *state, cn_term c) {
  int64_t n;
  note(state, c);
  if (cn_match(c, "{again, ~i}", &n) == 0 && n > 0)
    cn_continue(self, "{again, ~i}", n - 1);
  return CN_NOREPLY;
}

static int cont_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                     cn_buf *reply) {
  contsrv *s = state;
  (void)from;
  if (cn_match(req, "cont") == 0) {
    cn_continue(self, "{again, 2}");
    return cn_build(reply, "ok"), CN_REPLY;
  }
  if (cn_match(req, "stop_cont") == 0) {
    cn_continue(self, "never");
    return CN_STOP; /* a stop drops the continue */
  }
  cn_put_list(reply, (uint32_t)s->n);
  cn_buf_append(reply, s->events.data, s->events.len);
  cn_put_nil(reply);
  return CN_REPLY;
}

static int cont_cast(cn_proc *self, void *state, cn_term msg) {
  char store[64];
  cn_buf b;
  (void)self;
  cn_buf_init_with(&b, store, sizeof(store));
  cn_build(&b, "{cast, ~t}", msg);
  note(state, cn_buf_term(&b));
  cn_buf_free(&b);
  return CN_NOREPLY;
}

static void cont_free(void *state) {
  contsrv *s = state;
  cn_buf_free(&s->events);
  free(s);
}

static const cn_server_ops cont_ops = {.name = "cont_srv",
                                       .init = cont_init,
                                       .handle_call = cont_call,
                                       .handle_cast = cont_cast,
                                       .handle_continue = cont_continue,
                                       .free_state = cont_free};

static void test_handle_continue(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_buf b = CN_BUF_INIT;
  cn_pid pid;
  (void)st;
  assert_int_equal(cn_start(rt, &cont_ops, NULL, NULL, &pid), 0);
  /* init's continue comes before a cast sent the moment start returned. */
  assert_int_equal(cn_cast(rt, cn_to_pid(pid), T(&b, "a")), 0);
  assert_int_equal(
      call_expect(rt, cn_to_pid(pid), "events", "[from_init, {cast, a}]"), 0);
  /* After a call's reply, before the next message; and again. */
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "cont", "ok"), 0);
  assert_int_equal(cn_cast(rt, cn_to_pid(pid), T(&b, "b")), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "events",
                               "[from_init, {cast, a}, {again, 2}, "
                               "{again, 1}, {again, 0}, {cast, b}]"),
                   0);
  /* Without handle_continue there is no continue. */
  {
    cn_pid other = start_srv(rt, NULL);
    assert_int_equal(
        call_expect(rt, cn_to_pid(other), "continue", "'CN_ENOTSUP'"), 0);
  }
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "stop_cont", NULL),
                   CN_EEXIT);
  wait_dead(rt, pid);
  cn_buf_free(&b);
  cn_runtime_free(rt);
}

/* Many links on one process (a large supervisor's shape): linked and
 * unlinked one by one, the right ones die with it. */
static void test_many_links(void **st) {
  enum { N = 20000 };
  cn_runtime *rt = rt_new(2);
  cn_pid hub = start_srv(rt, NULL), *kids = malloc(N * sizeof(*kids));
  cn_buf r = CN_BUF_INIT;
  int i, alive = 0;
  (void)st;
  for (i = 0; i < N; i++) {
    kids[i] = start_srv(rt, NULL);
    assert_int_equal(
        cn_callf(rt, cn_to_pid(hub), tmo(2000), &r, "{link, ~p}", &kids[i]), 0);
  }
  for (i = 1; i < N; i += 2)
    assert_int_equal(
        cn_callf(rt, cn_to_pid(hub), tmo(2000), &r, "{unlink, ~p}", &kids[i]),
        0);
  assert_int_equal(cn_exit(rt, hub, T(&r, "boom")), 0);
  wait_dead(rt, hub);
  /* The linked half dies, asynchronously. */
  for (int tries = 0; tries < tmo(5000); tries++) {
    for (alive = 0, i = 0; i < N; i += 2)
      alive += cn_is_alive(rt, kids[i]);
    if (alive == 0)
      break;
    uv_sleep(1);
  }
  assert_int_equal(alive, 0);
  for (i = 1; i < N; i += 2)
    assert_true(cn_is_alive(rt, kids[i]));
  free(kids);
  cn_buf_free(&r);
  cn_runtime_free(rt);
}

/* The format forms build the term themselves. */
static void test_formatted_calls(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  cn_buf r = CN_BUF_INIT, ex = CN_BUF_INIT;
  (void)st;
  assert_int_equal(cn_castf(rt, cn_to_pid(pid), "{add, ~i}", (int64_t)5), 0);
  assert_int_equal(
      cn_callf(rt, cn_to_pid(pid), tmo(2000), &r, "{add, ~i}", (int64_t)2), 0);
  assert_true(cn_term_equal(cn_buf_term(&r), T(&ex, "{ok, 7}")));
  assert_int_equal(cn_sendf(rt, cn_to_pid(pid), "{hello, ~a}", "world"), 0);
  assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &r, "infos"), 0);
  assert_true(cn_term_equal(cn_buf_term(&r), T(&ex, "{ok, [{hello, world}]}")));
  /* A bad format sends nothing. */
  assert_int_equal(cn_castf(rt, cn_to_pid(pid), "{add, "), CN_EBADFMT);
  assert_int_equal(cn_sendf(rt, cn_to_pid(pid), "{"), CN_EBADFMT);
  assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &r, "]"),
                   CN_EBADFMT);
  assert_int_equal(cn_callf(rt, cn_to_pid(pid), tmo(2000), &r, "get"), 0);
  assert_true(cn_term_equal(cn_buf_term(&r), T(&ex, "{ok, 7}")));
  cn_buf_free(&r);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

static void test_deferred_reply(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  assert_int_equal(
      call_expect(rt, cn_to_pid(pid), "{defer, 20}", "deferred_ok"), 0);
  cn_runtime_free(rt);
}

/* A plain thread keeps the server it called last (see cn_call): calls
 * that switch between servers each reach the right one, and a server
 * that exited, by stop or by its own cast, is no longer called. */
static void test_call_kept_server(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid a = start_srv(rt, NULL), b = start_srv(rt, NULL);
  cn_buf m = CN_BUF_INIT;
  assert_int_equal(call_expect(rt, cn_to_pid(a), "{add, 1}", "{ok, 1}"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "{add, 1}", "{ok, 2}"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(b), "{add, 7}", "{ok, 7}"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "get", "{ok, 2}"), 0);
  assert_int_equal(cn_stop(rt, cn_to_pid(a), NULL, tmo(1000)), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "get", NULL), CN_ENOPROC);
  assert_int_equal(call_expect(rt, cn_to_pid(b), "get", "{ok, 7}"), 0);
  /* b stops on a cast while this thread still keeps it. */
  assert_int_equal(cn_build(&m, "stop"), 0);
  assert_int_equal(cn_cast(rt, cn_to_pid(b), cn_buf_term(&m)), 0);
  for (int i = 0; i < 1000 && cn_process_count(rt) > 0; i++)
    uv_sleep(1);
  assert_int_equal(cn_process_count(rt), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(b), "get", NULL), CN_ENOPROC);
  cn_buf_free(&m);
  cn_runtime_free(rt);
}

static void test_call_noproc(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  uint64_t t0;
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(1000)), 0);
  t0 = uv_hrtime();
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", NULL), CN_ENOPROC);
  assert_int_equal(call_expect(rt, cn_to_name("nobody"), "get", NULL),
                   CN_ENOPROC);
  /* At once, not after the timeout. */
  assert_true(uv_hrtime() - t0 < 500000000ULL);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, 100), CN_ENOPROC);
  cn_runtime_free(rt);
}

static void test_call_timeout_late_reply(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT;
  assert_int_equal(cn_build(&rq, "{defer, 100}"), 0);
  assert_int_equal(cn_call(rt, cn_to_pid(pid), cn_buf_term(&rq), 10, &rep),
                   CN_ETIMEDOUT);
  /* The late reply must not reach this thread's mailbox. */
  uv_sleep(200);
  assert_int_equal(cn_receive(rt, 50, &rep), CN_ETIMEDOUT);
  /* And the next call gets its own reply. */
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 0}"), 0);
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_runtime_free(rt);
}

static void test_exit_reason_reaches_caller(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  int term = 0;

  assert_int_equal(cn_build(&rq, "{stop, {shutdown, boom}}"), 0);
  assert_int_equal(
      cn_call(rt, cn_to_pid(pid), cn_buf_term(&rq), tmo(1000), &rep), CN_EEXIT);
  cn_build(&ex, "{shutdown, boom}");
  assert_true(cn_term_equal(cn_buf_term(&rep), cn_buf_term(&ex)));
  assert_false(cn_is_alive(rt, pid));

  /* stop_reply: the caller gets the reply, then the server is gone. */
  pid = start_srv(rt, &term);
  assert_int_equal(
      call_expect(rt, cn_to_pid(pid), "{stop_reply, normal}", "ok"), 0);
  wait_dead(rt, pid);
  assert_true(term > 0);

  /* A bad return value crashes the server with {bad_return_value, 42}. */
  pid = start_srv(rt, NULL);
  cn_buf_reset(&rq);
  cn_build(&rq, "bad");
  assert_int_equal(
      cn_call(rt, cn_to_pid(pid), cn_buf_term(&rq), tmo(1000), &rep), CN_EEXIT);
  cn_buf_reset(&ex);
  cn_build(&ex, "{bad_return_value, 42}");
  assert_true(cn_term_equal(cn_buf_term(&rep), cn_buf_term(&ex)));
  /* So does a handler that returns what cn_build returned (0): the
   * forgotten CN_REPLY fails loudly, not as a caller's timeout. */
  pid = start_srv(rt, NULL);
  cn_buf_reset(&rq);
  cn_build(&rq, "forgot");
  assert_int_equal(
      cn_call(rt, cn_to_pid(pid), cn_buf_term(&rq), tmo(1000), &rep), CN_EEXIT);
  cn_buf_reset(&ex);
  cn_build(&ex, "{bad_return_value, 0}");
  assert_true(cn_term_equal(cn_buf_term(&rep), cn_buf_term(&ex)));
  cn_buf_free(&rq);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

static void test_deadlock_detected(void **st) {
  cn_runtime *rt = rt_new(1);
  cn_pid pid = start_srv(rt, NULL);
  cn_pid me;
  cn_buf b = CN_BUF_INIT, r = CN_BUF_INIT;
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "sync_self", "'CN_EDEADLK'"),
                   0);
  /* A thread calling its own pid. */
  assert_int_equal(cn_self(rt, &me), 0);
  assert_int_equal(cn_call(rt, cn_to_pid(me), T(&b, "x"), 100, &r), CN_EDEADLK);
  cn_buf_free(&b);
  cn_buf_free(&r);
  cn_runtime_free(rt);
}

static void test_names(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid a = start_srv(rt, NULL), b = start_srv(rt, NULL), w;
  cn_start_options o = {"kv", NULL};
  cn_buf t = CN_BUF_INIT;

  assert_int_equal(cn_register(rt, "a", a), 0);
  assert_int_equal(cn_register(rt, "a", b), CN_EEXIST);
  assert_int_equal(cn_register(rt, "a2", a), CN_EEXIST); /* one name each */
  assert_int_equal(cn_register(rt, "undefined", b), CN_EINVAL);
  assert_int_equal(cn_whereis(rt, "a", &w), 0);
  assert_true(cn_pid_equal(&w, &a));
  assert_int_equal(call_expect(rt, cn_to_name("a"), "get", "{ok, 0}"), 0);
  assert_int_equal(cn_send(rt, cn_to_name("zzz"), T(&t, "x")), CN_ENOPROC);
  assert_int_equal(cn_cast(rt, cn_to_name("zzz"), T(&t, "x")), 0);
  assert_int_equal(cn_unregister(rt, "a"), 0);
  assert_int_equal(cn_unregister(rt, "a"), CN_ENOENT);
  assert_int_equal(cn_whereis(rt, "a", &w), CN_ENOENT);

  /* Start with a name; a second start gets EEXIST and the holder. */
  assert_int_equal(cn_start(rt, &srv_ops, NULL, &o, &a), 0);
  assert_int_equal(cn_start(rt, &srv_ops, NULL, &o, &w), CN_EEXIST);
  assert_true(cn_pid_equal(&w, &a));
  /* The name goes with the process. */
  assert_int_equal(cn_stop(rt, cn_to_name("kv"), NULL, tmo(1000)), 0);
  assert_int_equal(cn_whereis(rt, "kv", &w), CN_ENOENT);
  assert_int_equal(cn_start(rt, &srv_ops, NULL, &o, &a), 0);
  cn_buf_free(&t);
  cn_runtime_free(rt);
}

/* Each thread keeps its last lookup that found a name (names.c): every
 * change to the names, and another runtime, must miss it. */
static void test_names_last_hit(void **st) {
  static const char long_name[] = "a_name_longer_than_the_thirty_one_kept";
  cn_runtime *rt = rt_new(2), *rt2 = rt_new(1);
  cn_pid a = start_srv(rt, NULL), b = start_srv(rt, NULL);
  cn_pid c = start_srv(rt2, NULL), w;
  int i;

  /* Two runtimes number their processes alike: b is not c's twin. */
  assert_false(cn_pid_equal(&b, &c));
  assert_int_equal(cn_register(rt, "n", b), 0);
  assert_int_equal(cn_register(rt2, "n", c), 0);
  for (i = 0; i < 3; i++) { /* the same name in two runtimes, in turn */
    assert_int_equal(cn_whereis(rt, "n", &w), 0);
    assert_true(cn_pid_equal(&w, &b));
    assert_int_equal(cn_whereis(rt2, "n", &w), 0);
    assert_true(cn_pid_equal(&w, &c));
  }
  assert_int_equal(cn_whereis(rt, "n", &w), 0);
  /* Moved to another process: the new holder at once. */
  assert_int_equal(cn_unregister(rt, "n"), 0);
  assert_int_equal(cn_register(rt, "n", a), 0);
  assert_int_equal(cn_whereis(rt, "n", &w), 0);
  assert_true(cn_pid_equal(&w, &a));
  assert_int_equal(cn_unregister(rt, "n"), 0);
  assert_int_equal(cn_register(rt, "n", b), 0);
  assert_int_equal(cn_whereis(rt, "n", &w), 0);
  assert_true(cn_pid_equal(&w, &b));
  /* A prefix or an extension of the kept name is another name. */
  assert_int_equal(cn_whereis(rt, "", &w), CN_ENOENT);
  assert_int_equal(cn_whereis(rt, "nn", &w), CN_ENOENT);
  /* A name too long to keep is found each time. */
  assert_int_equal(cn_register(rt, long_name, a), 0);
  for (i = 0; i < 2; i++) {
    assert_int_equal(cn_whereis(rt, long_name, &w), 0);
    assert_true(cn_pid_equal(&w, &a));
  }
  /* Its holder stops: the name goes, whoever looked it up last. */
  assert_int_equal(cn_whereis(rt, "n", &w), 0);
  assert_int_equal(cn_stop(rt, cn_to_pid(b), NULL, tmo(1000)), 0);
  assert_int_equal(cn_whereis(rt, "n", &w), CN_ENOENT);
  /* A runtime made after rt2 ends (perhaps at its address) has no "n". */
  assert_int_equal(cn_whereis(rt2, "n", &w), 0);
  cn_runtime_free(rt2);
  rt2 = rt_new(1);
  assert_int_equal(cn_whereis(rt2, "n", &w), CN_ENOENT);
  cn_runtime_free(rt2);
  cn_runtime_free(rt);
}

static void test_monitors(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL), got;
  cn_ref ref, r2;
  cn_buf b = CN_BUF_INIT;
  cn_term reason;

  assert_int_equal(cn_monitor(rt, cn_to_pid(pid), &ref), 0);
  assert_int_equal(cn_exit(rt, pid, T(&b, "{custom, 1}")), 0);
  assert_int_equal(cn_match(receive(rt), "{'DOWN', ~r, process, ~p, ~t}", &r2,
                            &got, &reason),
                   0);
  assert_true(cn_ref_equal(&ref, &r2));
  assert_true(cn_pid_equal(&got, &pid));
  assert_int_equal(cn_match(reason, "{custom, 1}"), 0);

  /* A dead pid: DOWN noproc at once. */
  assert_int_equal(cn_monitor(rt, cn_to_pid(pid), &ref), 0);
  assert_int_equal(
      cn_match(receive(rt), "{'DOWN', ~r, process, _, noproc}", &r2), 0);
  assert_true(cn_ref_equal(&ref, &r2));

  /* By name: the object is {Name, Node}. */
  assert_int_equal(cn_monitor(rt, cn_to_name("ghost"), &ref), 0);
  assert_int_equal(cn_match(receive(rt),
                            "{'DOWN', _, process, {ghost, 'nonode@nohost'}, "
                            "noproc}"),
                   0);

  /* Demonitor: no DOWN afterwards. */
  pid = start_srv(rt, NULL);
  assert_int_equal(cn_monitor(rt, cn_to_pid(pid), &ref), 0);
  assert_int_equal(cn_demonitor(rt, &ref, true), 0);
  assert_int_equal(cn_demonitor(rt, &ref, false), CN_ENOENT);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(1000)), 0);
  assert_int_equal(cn_receive(rt, 100, &rx), CN_ETIMEDOUT);
  cn_buf_free(&b);
  cn_runtime_free(rt);
}

/* Past CN__MON_INDEX_AT, a process's monitors sit in a table by
 * reference too (both the watcher's set and the target's): taking any
 * one of many in any order takes that one, and the DOWNs at exit go to
 * exactly those left; a set emptied and filled again indexes again. */
static void test_many_monitors(void **st) {
  enum { N = 40 };
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  cn_ref ref[N], got;
  bool left[N];
  int i, j, round, downs = 0;

  for (round = 0; round < 2; round++) {
    for (i = 0; i < N; i++) {
      assert_int_equal(
          cn_monitor(rt, i % 4 ? cn_to_pid(pid) : cn_to_name("many_mon_srv"),
                     &ref[i]),
          0);
      left[i] = true;
    }
    if (round == 0) {
      /* The named ones were DOWN at once (noproc); take all the rest. */
      for (i = 0; i < N; i += 4)
        assert_int_equal(cn_match(receive(rt), "{'DOWN', _, process, _, "
                                               "noproc}"),
                         0);
      for (i = N - 1; i >= 0; i--)
        assert_int_equal(cn_demonitor(rt, &ref[i], true),
                         i % 4 ? 0 : CN_ENOENT);
      assert_int_equal(cn_register(rt, "many_mon_srv", pid), 0);
      continue;
    }
    /* Every third one, from the middle out, then one again. */
    for (j = 0; j < N; j++) {
      i = (N / 2 + (j % 2 ? j / 2 + 1 : -(j / 2)) + N) % N;
      if (i % 3 == 0) {
        assert_int_equal(cn_demonitor(rt, &ref[i], false), 0);
        left[i] = false;
      }
    }
    assert_int_equal(cn_demonitor(rt, &ref[3], false), CN_ENOENT);
  }
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, tmo(1000)), 0);
  for (;;) {
    if (cn_receive(rt, 200, &rx) == CN_ETIMEDOUT)
      break;
    assert_int_equal(
        cn_match(cn_buf_term(&rx), "{'DOWN', ~r, process, _, _}", &got), 0);
    for (i = 0; i < N && !(left[i] && cn_ref_equal(&ref[i], &got)); i++)
      ;
    assert_true(i < N); /* one we kept, and only once */
    left[i] = false;
    downs++;
  }
  for (i = 0; i < N; i++)
    assert_false(left[i]);
  assert_int_equal(downs, N - (N + 2) / 3);
  cn_runtime_free(rt);
}

static void test_links_and_exits(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid a = start_srv(rt, NULL), b = start_srv(rt, NULL), from;
  cn_buf t = CN_BUF_INIT;
  cn_ref ref;
  cn_term reason;
  int i;

  /* a links to b; b dies with an abnormal reason; a (not trapping) dies
   * too, and its monitor says why. */
  assert_int_equal(cn_build(&t, "{link, ~p}", &b), 0);
  assert_int_equal(cn_call(rt, cn_to_pid(a), cn_buf_term(&t), tmo(1000), &rx),
                   0);
  assert_int_equal(cn_monitor(rt, cn_to_pid(a), &ref), 0);
  assert_int_equal(cn_exit(rt, b, T(&t, "boom")), 0);
  assert_int_equal(cn_match(receive(rt), "{'DOWN', _, process, _, boom}"), 0);

  /* exit(normal) is ignored by a process that does not trap exits. */
  a = start_srv(rt, NULL);
  assert_int_equal(cn_exit(rt, a, T(&t, "normal")), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "get", "{ok, 0}"), 0);

  /* Trapping: exits become messages; kill cannot be trapped. */
  assert_int_equal(call_expect(rt, cn_to_pid(a), "trap_status", "not_trapping"),
                   0);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "trap", "ok"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "trap_status", "trapping"), 0);
  assert_int_equal(cn_trap_exit(NULL, true, NULL), CN_EINVAL);
  assert_int_equal(cn_exit(rt, a, T(&t, "normal")), 0);
  assert_int_equal(cn_exit(rt, a, T(&t, "other")), 0);
  assert_int_equal(cn_self(rt, &from), 0);
  cn_buf_reset(&t);
  cn_build(&t, "{ok, [{'EXIT', ~p, other}, {'EXIT', ~p, normal}]}", &from,
           &from);
  {
    cn_buf rep = CN_BUF_INIT, rq = CN_BUF_INIT;
    cn_build(&rq, "infos");
    assert_int_equal(
        cn_call(rt, cn_to_pid(a), cn_buf_term(&rq), tmo(1000), &rep), 0);
    assert_true(cn_term_equal(cn_buf_term(&rep), cn_buf_term(&t)));
    cn_buf_free(&rep);
    cn_buf_free(&rq);
  }
  assert_int_equal(cn_monitor(rt, cn_to_pid(a), &ref), 0);
  assert_int_equal(cn_exit(rt, a, T(&t, "kill")), 0);
  assert_int_equal(
      cn_match(receive(rt), "{'DOWN', _, process, _, ~t}", &reason), 0);
  assert_true(cn_is_atom(reason, "killed"));

  /* A thread linked to a process gets {'EXIT', Pid, Reason}. */
  a = start_srv(rt, NULL);
  assert_int_equal(cn_link(rt, a), 0);
  assert_int_equal(cn_exit(rt, a, T(&t, "bye")), 0);
  assert_int_equal(cn_match(receive(rt), "{'EXIT', ~p, bye}", &from), 0);
  assert_true(cn_pid_equal(&from, &a));
  /* Linking to a dead pid: exit signal noproc. */
  assert_int_equal(cn_link(rt, a), 0);
  assert_int_equal(cn_match(receive(rt), "{'EXIT', _, noproc}"), 0);

  /* unlink: the exit no longer arrives. */
  a = start_srv(rt, NULL);
  assert_int_equal(cn_link(rt, a), 0);
  assert_int_equal(cn_unlink(rt, a), 0);
  assert_int_equal(cn_exit(rt, a, T(&t, "bye")), 0);
  wait_dead(rt, a);
  assert_int_equal(cn_receive(rt, 100, &rx), CN_ETIMEDOUT);

  /* A linked exit storm: a chain of 1000 linked servers dies from one
   * end to the other. */
  {
    cn_pid first = start_srv(rt, NULL), prev = first, cur;
    for (i = 0; i < 1000; i++) {
      cur = start_srv(rt, NULL);
      cn_buf_reset(&t);
      cn_build(&t, "{link, ~p}", &prev);
      assert_int_equal(
          cn_call(rt, cn_to_pid(cur), cn_buf_term(&t), tmo(1000), &rx), 0);
      prev = cur;
    }
    assert_int_equal(cn_monitor(rt, cn_to_pid(prev), &ref), 0);
    assert_int_equal(cn_exit(rt, first, T(&t, "storm")), 0);
    assert_int_equal(cn_match(receive(rt), "{'DOWN', _, process, _, storm}"),
                     0);
    for (i = 0; i < tmo(2000) && cn_process_count(rt) > 0; i++)
      uv_sleep(1);
    assert_int_equal(cn_process_count(rt), 0);
  }
  cn_buf_free(&t);
  cn_runtime_free(rt);
}

static void test_start_link(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid, from;
  cn_buf t = CN_BUF_INIT;
  assert_int_equal(cn_start_link(rt, &srv_ops, NULL, NULL, &pid), 0);
  assert_int_equal(cn_exit(rt, pid, T(&t, "crash")), 0);
  assert_int_equal(cn_match(receive(rt), "{'EXIT', ~p, crash}", &from), 0);
  assert_true(cn_pid_equal(&from, &pid));
  cn_buf_free(&t);
  cn_runtime_free(rt);
}

static int stop_init(cn_proc *self, void *arg, void **state) {
  if (arg == NULL)
    return CN_IGNORE;
  cn_set_reason(self, "{init_failed, ~i}", (int64_t)7);
  return CN_STOP;
}
static const cn_server_ops stop_ops = {.name = "stopper", .init = stop_init};

static void test_init_results(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_buf reason = CN_BUF_INIT;
  cn_start_options o = {"s", &reason};
  cn_pid pid;
  assert_int_equal(cn_start(rt, &stop_ops, NULL, &o, &pid), CN_EIGNORE);
  assert_int_equal(cn_start_link(rt, &stop_ops, &o, &o, &pid), CN_EEXIT);
  assert_int_equal(cn_match(cn_buf_term(&reason), "{init_failed, 7}"), 0);
  assert_int_equal(cn_whereis(rt, "s", &pid), CN_ENOENT);
  assert_int_equal(cn_process_count(rt), 0);
  /* The failed start_link delivered no exit to this thread. */
  assert_int_equal(cn_receive(rt, 50, &rx), CN_ETIMEDOUT);
  cn_buf_free(&reason);
  cn_runtime_free(rt);
}

static void test_process_calls(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid a = start_srv(rt, NULL), b = start_srv(rt, NULL);
  cn_buf t = CN_BUF_INIT, rep = CN_BUF_INIT;
  cn_start_options o = {"bee", NULL};
  cn_pid c;

  assert_int_equal(call_expect(rt, cn_to_pid(b), "{add, 9}", "{ok, 9}"), 0);
  cn_build(&t, "{call, ~p}", &b);
  assert_int_equal(cn_call(rt, cn_to_pid(a), cn_buf_term(&t), tmo(2000), &rep),
                   0);
  assert_int_equal(cn_match(cn_buf_term(&rep), "{ok, {ok, 9}}"), 0);

  /* Async call to a missing name: noproc through the callback. */
  assert_int_equal(call_expect(rt, cn_to_pid(a), "{call_name, bee}",
                               "{error, 'CN_ENOPROC'}"),
                   0);
  assert_int_equal(cn_start(rt, &srv_ops, NULL, &o, &c), 0);
  assert_int_equal(
      call_expect(rt, cn_to_pid(a), "{call_name, bee}", "{ok, {ok, 0}}"), 0);
  /* Async call timing out; the late reply is dropped. */
  cn_buf_reset(&t);
  cn_build(&t, "{call_req, ~p, {defer, 100}, 20}", &b);
  assert_int_equal(cn_call(rt, cn_to_pid(a), cn_buf_term(&t), tmo(2000), &rep),
                   0);
  assert_int_equal(cn_match(cn_buf_term(&rep), "{error, 'CN_ETIMEDOUT'}"), 0);
  uv_sleep(150);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "infos", "{ok, []}"), 0);
  /* The target dying mid-call: the caller gets its exit reason. */
  cn_buf_reset(&t);
  cn_build(&t, "{call_req, ~p, {stop, {shutdown, mid}}, 2000}", &b);
  assert_int_equal(cn_call(rt, cn_to_pid(a), cn_buf_term(&t), tmo(2000), &rep),
                   0);
  assert_int_equal(
      cn_match(cn_buf_term(&rep), "{error, {exit, {shutdown, mid}}}"), 0);
  assert_false(cn_is_alive(rt, b));
  /* And a dead target: noproc. */
  cn_buf_reset(&t);
  cn_build(&t, "{call_req, ~p, get, 100}", &b);
  assert_int_equal(cn_call(rt, cn_to_pid(a), cn_buf_term(&t), tmo(2000), &rep),
                   0);
  assert_int_equal(cn_match(cn_buf_term(&rep), "{error, 'CN_ENOPROC'}"), 0);
  cn_buf_free(&t);
  cn_buf_free(&rep);
  cn_runtime_free(rt);
}

/* ---- The call timer ----------------------------------------------------
 * A caller process: the cast {call, I, Pid, Req, Timeout} makes call I
 * with cn_call_async, and its callback sends {done, I, Status, Ms} (Ms
 * since the call was made) to the thread that started the caller. */
typedef struct caller_st {
  cn_pid main;
  uint64_t started[64];
  int ndone[64]; /* callbacks seen per call: never more than one */
  int in_call;   /* inside cn_call_async, where no callback may run */
} caller_st;

static void caller_cb(cn_proc *self, void *state, int status, cn_term reply,
                      void *arg) {
  caller_st *c = state;
  int i = (int)(intptr_t)arg;
  assert_false(c->in_call);
  c->ndone[i]++;
  cn_sendf(cn_proc_runtime(self), cn_to_pid(c->main), "{done, ~i, ~a, ~i}",
           (int64_t)i, status == 0 ? "ok" : cn_err_name(status),
           (int64_t)((uv_hrtime() - c->started[i]) / 1000000));
}

static int caller_cast(cn_proc *self, void *state, cn_term msg) {
  caller_st *c = state;
  int64_t i, ms;
  cn_pid to;
  cn_term req;
  if (cn_match(msg, "{call, ~i, ~p, ~t, ~i}", &i, &to, &req, &ms) != 0 ||
      i < 0 || i >= 64)
    return CN_NOREPLY;
  c->started[i] = uv_hrtime();
  c->in_call = 1;
  if (cn_call_async(self, cn_to_pid(to), req, ms, caller_cb,
                    (void *)(intptr_t)i) != 0)
    cn_sendf(cn_proc_runtime(self), cn_to_pid(c->main), "{failed, ~i}", i);
  c->in_call = 0;
  return CN_NOREPLY;
}

static int caller_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                       cn_buf *reply) {
  caller_st *c = state;
  int n = 0;
  for (int i = 0; i < 64; i++) {
    assert_true(c->ndone[i] <= 1);
    n += c->ndone[i];
  }
  return cn_build(reply, "~i", (int64_t)n), CN_REPLY;
}

static int caller_init(cn_proc *self, void *arg, void **state) {
  caller_st *c = calloc(1, sizeof(*c));
  c->main = *(cn_pid *)arg;
  *state = c;
  return CN_NOREPLY;
}

static const cn_server_ops caller_ops = {
    .name = "test_caller",
    .init = caller_init,
    .handle_cast = caller_cast,
    .handle_call = caller_call,
    .free_state = free,
};

/* Makes call i from the caller to `to` with {defer, defer_ms} (answered
 * after defer_ms) and timeout tmo_ms. */
static void caller_go(cn_runtime *rt, cn_pid caller_pid, int i, cn_pid to,
                      int defer_ms, int tmo_ms) {
  assert_int_equal(cn_castf(rt, cn_to_pid(caller_pid),
                            "{call, ~i, ~p, {defer, ~i}, ~i}", (int64_t)i, &to,
                            (int64_t)defer_ms, (int64_t)tmo_ms),
                   0);
}

/* Receives {done, I, Status, Ms}, checks I and Status, returns Ms. */
static int64_t caller_done(cn_runtime *rt, int i, const char *status) {
  int64_t gi = -1, ms = -1;
  char st[32];
  cn_term t = receive(rt);
  cn_term a;
  if (cn_match(t, "{done, ~i, ~t, ~i}", &gi, &a, &ms) != 0 ||
      cn_get_atom(a, st, sizeof(st)) != 0) {
    cn_buf txt = CN_BUF_INIT;
    cn_term_print(t, &txt);
    fail_msg("unexpected %s", txt.data);
  }
  if (gi != i || strcmp(st, status) != 0)
    fail_msg("call %d ended %s, expected call %d %s", (int)gi, st, i, status);
  return ms;
}

/* Calls of one process with different timeouts share its call timer: each
 * still times out at its own deadline, in deadline order, a shorter one
 * arriving after a longer one included; a call without a timeout never
 * does; and the late replies are dropped (one callback per call). */
static void test_call_timer(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid me, c, target = start_srv(rt, NULL);
  cn_buf rep = CN_BUF_INIT;
  int64_t ms;

  assert_int_equal(cn_self(rt, &me), 0);
  assert_int_equal(cn_start(rt, &caller_ops, &me, NULL, &c), 0);
  caller_go(rt, c, 0, target, tmo(300), tmo(1000)); /* ok at 300 */
  caller_go(rt, c, 1, target, tmo(1500), tmo(200)); /* times out at 200 */
  caller_go(rt, c, 2, target, tmo(1500), tmo(50));  /* at 50: armed earlier */
  caller_go(rt, c, 3, target, 10, CN_INFINITY);     /* ok at 10 */
  caller_go(rt, c, 4, target, tmo(1500), tmo(100)); /* at 100 */
  assert_true(caller_done(rt, 3, "ok") >= 10);
  ms = caller_done(rt, 2, "CN_ETIMEDOUT");
  assert_true(ms >= tmo(50) && ms < tmo(50) + tmo(40));
  ms = caller_done(rt, 4, "CN_ETIMEDOUT");
  assert_true(ms >= tmo(100) && ms < tmo(100) + tmo(90));
  ms = caller_done(rt, 1, "CN_ETIMEDOUT");
  assert_true(ms >= tmo(200));
  ms = caller_done(rt, 0, "ok");
  assert_true(ms >= tmo(300) && ms < tmo(1000));
  /* The deferred replies to 1, 2 and 4 come at 1500 and are dropped. */
  uv_sleep((unsigned)tmo(1500) - (unsigned)tmo(200) + 100);
  assert_int_equal(cn_receive(rt, 50, &rep), CN_ETIMEDOUT);
  assert_int_equal(cn_call(rt, cn_to_pid(c), T(&rep, "count"), tmo(2000), &rep),
                   0);
  assert_int_equal(cn_match(cn_buf_term(&rep), "5"), 0);
  cn_buf_free(&rep);
  cn_runtime_free(rt);
}

/* The timer armed for a process's first call outlives it: calls made
 * after its deadline, each answered in time, do not time out when it
 * fires, and a later call that is not answered times out after its own
 * timeout, not the first call's. */
static void test_call_timer_rearms(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid me, c, target = start_srv(rt, NULL);
  uint64_t t0 = uv_hrtime();
  cn_buf rep = CN_BUF_INIT;
  int64_t ms;
  int i;

  assert_int_equal(cn_self(rt, &me), 0);
  assert_int_equal(cn_start(rt, &caller_ops, &me, NULL, &c), 0);
  /* 5 ms calls with a 60 ms timeout, one after the other, for well past
   * the first one's deadline. */
  for (i = 0; uv_hrtime() - t0 < 3 * 60 * 1000000ULL && i < 60; i++) {
    caller_go(rt, c, i % 60, target, 5, tmo(60));
    caller_done(rt, i % 60, "ok");
  }
  assert_true(i > 12);
  caller_go(rt, c, 63, target, tmo(400), tmo(80));
  ms = caller_done(rt, 63, "CN_ETIMEDOUT");
  assert_true(ms >= tmo(80) && ms < tmo(80) + tmo(200));
  /* And a process that exits with its timer armed: nothing fires. */
  assert_int_equal(cn_stop(rt, cn_to_pid(c), NULL, tmo(2000)), 0);
  assert_int_equal(cn_receive(rt, 150, &rep), CN_ETIMEDOUT);
  /* The server answers call 63 (to no one) before the runtime goes. */
  uv_sleep((unsigned)tmo(400));
  cn_buf_free(&rep);
  cn_runtime_free(rt);
}

/* A process's call to an idle local server runs in the server at once,
 * on the caller's scheduler, yet is answered as through the mailbox: the
 * callback runs later, never inside cn_call_async, and once; a server that
 * defers its reply, stops without one or calls on in its handler answers
 * as it would from its mailbox. */
static void test_async_call_inline(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid me, c, target = start_srv(rt, NULL), other = start_srv(rt, NULL);
  cn_buf rep = CN_BUF_INIT;
  int64_t gi = -1;

  assert_int_equal(cn_self(rt, &me), 0);
  assert_int_equal(cn_start(rt, &caller_ops, &me, NULL, &c), 0);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(cn_castf(rt, cn_to_pid(c), "{call, ~i, ~p, {add, 1}, ~i}",
                              (int64_t)i, &target, (int64_t)tmo(2000)),
                     0);
    caller_done(rt, i, "ok");
  }
  assert_int_equal(call_expect(rt, cn_to_pid(target), "get", "{ok, 20}"), 0);
  caller_go(rt, c, 20, target, 20, tmo(2000)); /* deferred: ok later */
  assert_true(caller_done(rt, 20, "ok") >= 19);
  /* The handler's own call goes through the mailbox, and comes back. */
  assert_int_equal(cn_castf(rt, cn_to_pid(c), "{call, 21, ~p, {call, ~p}, ~i}",
                            &target, &other, (int64_t)tmo(2000)),
                   0);
  caller_done(rt, 21, "ok");
  /* Stopping without a reply: the caller gets the exit. */
  assert_int_equal(cn_castf(rt, cn_to_pid(c),
                            "{call, 22, ~p, {stop, {shutdown, x}}, ~i}",
                            &target, (int64_t)tmo(2000)),
                   0);
  caller_done(rt, 22, "CN_EEXIT");
  wait_dead(rt, target);
  assert_int_equal(cn_call(rt, cn_to_pid(c), T(&rep, "count"), tmo(2000), &rep),
                   0);
  assert_int_equal(cn_get_int64(cn_buf_term(&rep), &gi), 0);
  assert_int_equal(gi, 23);
  cn_buf_free(&rep);
  cn_runtime_free(rt);
}

static void test_timers(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid me;
  cn_ref r1, r2;
  cn_buf t = CN_BUF_INIT;
  cn_ms left = -1;
  uint64_t t0 = uv_hrtime();

  assert_int_equal(cn_self(rt, &me), 0);
  assert_int_equal(cn_send_after(rt, 30, cn_to_pid(me), T(&t, "tick"), &r1), 0);
  assert_int_equal(cn_send_after(rt, 5000, cn_to_pid(me), T(&t, "never"), &r2),
                   0);
  assert_true(cn_is_atom(receive(rt), "tick"));
  assert_true(uv_hrtime() - t0 >= 29000000ULL);
  assert_int_equal(cn_cancel_timer(rt, &r1, NULL), CN_ENOENT);
  assert_int_equal(cn_cancel_timer(rt, &r2, &left), 0);
  assert_true(left > 4000 && left <= 5000);
  assert_int_equal(cn_cancel_timer(rt, &r2, NULL), CN_ENOENT);
  /* Order: shorter first. */
  cn_send_after(rt, 40, cn_to_pid(me), T(&t, "b"), NULL);
  cn_send_after(rt, 10, cn_to_pid(me), T(&t, "a"), NULL);
  assert_true(cn_is_atom(receive(rt), "a"));
  assert_true(cn_is_atom(receive(rt), "b"));
  cn_buf_free(&t);
  cn_runtime_free(rt);
}

static void test_server_timeout(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "{timeout, 20}", "ok"), 0);
  /* Nothing may reach the server before its timer fires (a message would
   * cancel it), and a loaded machine fires timers late: wait well past. */
  uv_sleep(500);
  /* The call that reads infos itself comes after the timeout fired. */
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "infos", "{ok, [timeout]}"),
                   0);
  /* A message before the timeout cancels it. */
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "{timeout, 100}", "ok"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 0}"), 0);
  uv_sleep(200);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "infos", "{ok, [timeout]}"),
                   0);
  cn_runtime_free(rt);
}

/* Threads that used the runtime exit while it is being freed: a thread's
 * key destructor may then run during cn_runtime_free, and must neither
 * touch a context the free has released nor let the free go on under it
 * (ASan and TSan watch this one). */
typedef struct exiter {
  cn_runtime *rt;
  atomic_int *go, *ready;
  int rc;
} exiter;

static void *exit_on_go(void *arg) {
  exiter *e = arg;
  cn_pid me;
  e->rc = cn_self(e->rt, &me);
  atomic_fetch_add(e->ready, 1);
  while (!atomic_load(e->go))
    ;
  return NULL;
}

static void test_threads_exit_during_free(void **st) {
  int round, i;
  for (round = 0; round < 50; round++) {
    cn_runtime *rt = rt_new(2);
    atomic_int go = 0, ready = 0;
    pthread_t th[4];
    exiter e[4];
    cn_pid me;
    assert_int_equal(cn_self(rt, &me), 0);
    for (i = 0; i < 4; i++) {
      e[i] = (exiter){rt, &go, &ready, -1};
      assert_int_equal(pthread_create(&th[i], NULL, exit_on_go, &e[i]), 0);
    }
    while (atomic_load(&ready) < 4)
      uv_sleep(1);
    assert_int_equal(cn_runtime_shutdown(rt, tmo(2000)), 0);
    atomic_store(&go, 1);
    cn_runtime_free(rt);
    for (i = 0; i < 4; i++) {
      pthread_join(th[i], NULL);
      assert_int_equal(e[i].rc, 0);
    }
  }
}

static void test_shutdown_runs_terminate(void **st) {
  cn_runtime *rt = rt_new(2);
  int t1 = 0, t2 = 0;
  cn_pid a = start_srv(rt, &t1), b = start_srv(rt, &t2);
  assert_int_equal(call_expect(rt, cn_to_pid(a), "trap", "ok"), 0);
  (void)b;
  assert_int_equal(cn_runtime_shutdown(rt, tmo(2000)), 0);
  /* A trapping server runs terminate; a non-trapping one just dies. */
  assert_true(t1 > 0);
  assert_int_equal(t2, 0);
  cn_runtime_free(rt);
}

/* ---- Stress: many threads calling many servers ------------------------ */

#define NSERVERS 16
#define NTHREADS 8
#define NCALLS 5000

typedef struct stress_arg {
  cn_runtime *rt;
  cn_pid *servers;
  int id;
  int errors;
} stress_arg;

static void stress_thread(void *p) {
  stress_arg *a = p;
  cn_buf rq = CN_BUF_INIT, rep = CN_BUF_INIT;
  int i;
  for (i = 0; i < NCALLS; i++) {
    int64_t got;
    cn_pid who;
    int s = (i * 7 + a->id) % NSERVERS;
    cn_buf_reset(&rq);
    /* echo-style request: the server's pid and our own tag come back. */
    cn_build(&rq, "{add, ~i}", (int64_t)1);
    if (cn_call(a->rt, cn_to_pid(a->servers[s]), cn_buf_term(&rq), tmo(5000),
                &rep) != 0 ||
        cn_match(cn_buf_term(&rep), "{ok, ~i}", &got) != 0)
      a->errors++;
    (void)who;
    if (i % 50 == 0)
      cn_cast(a->rt, cn_to_pid(a->servers[s]), cn_buf_term(&rq));
  }
  cn_buf_free(&rq);
  cn_buf_free(&rep);
}

static void test_stress(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid servers[NSERVERS];
  uv_thread_t th[NTHREADS];
  stress_arg args[NTHREADS];
  int64_t total = 0, n;
  int i;
  cn_buf rep = CN_BUF_INIT, rq = CN_BUF_INIT;

  for (i = 0; i < NSERVERS; i++)
    servers[i] = start_srv(rt, NULL);
  for (i = 0; i < NTHREADS; i++) {
    args[i] = (stress_arg){rt, servers, i, 0};
    uv_thread_create(&th[i], stress_thread, &args[i]);
  }
  for (i = 0; i < NTHREADS; i++) {
    uv_thread_join(&th[i]);
    assert_int_equal(args[i].errors, 0);
  }
  cn_build(&rq, "get");
  for (i = 0; i < NSERVERS; i++) {
    assert_int_equal(
        cn_call(rt, cn_to_pid(servers[i]), cn_buf_term(&rq), tmo(2000), &rep),
        0);
    assert_int_equal(cn_match(cn_buf_term(&rep), "{ok, ~i}", &n), 0);
    total += n;
  }
  /* Every call and cast counted exactly once. */
  assert_int_equal(total, (int64_t)NTHREADS * (NCALLS + NCALLS / 50));
  cn_buf_free(&rep);
  cn_buf_free(&rq);
  cn_runtime_free(rt);
}

static void test_many_processes(void **st) {
  cn_runtime *rt = rt_new(2);
  enum { N = 20000 };
  cn_pid *p = malloc(sizeof(*p) * N);
  int i;
  for (i = 0; i < N; i++)
    p[i] = start_srv(rt, NULL);
  assert_int_equal(cn_process_count(rt), N);
  for (i = 0; i < N; i += 2)
    assert_int_equal(cn_stop(rt, cn_to_pid(p[i]), NULL, tmo(1000)), 0);
  assert_int_equal(cn_process_count(rt), N / 2);
  /* Pids are not reused while a serial can tell them apart. */
  {
    cn_pid q = start_srv(rt, NULL);
    assert_false(cn_pid_equal(&q, &p[0]));
    assert_false(cn_is_alive(rt, p[0]));
  }
  free(p);
  cn_runtime_free(rt);
}

static void test_bad_terms(void **st) {
  cn_runtime *rt = rt_new(2);
  cn_pid pid = start_srv(rt, NULL), other = start_srv(rt, NULL), me;
  static const char truncated[] = {104, 3, 100, 0, 2, 'o', 'k'};
  static const char trailing[] = {97, 1, 97, 2};
  cn_term bad = {truncated, sizeof(truncated)};
  cn_term extra = {trailing, sizeof(trailing)};
  cn_term empty = {NULL, 0};
  cn_buf rep = CN_BUF_INIT, ex = CN_BUF_INIT;
  cn_ref tref;

  /* Every entry point refuses a malformed term, and nothing reaches the
   * server. */
  assert_int_equal(cn_send(rt, cn_to_pid(pid), bad), CN_EBADTERM);
  assert_int_equal(cn_cast(rt, cn_to_pid(pid), bad), CN_EBADTERM);
  assert_int_equal(cn_cast(rt, cn_to_pid(pid), extra), CN_EBADTERM);
  assert_int_equal(cn_send(rt, cn_to_pid(pid), empty), CN_EBADTERM);
  assert_int_equal(cn_call(rt, cn_to_pid(pid), bad, tmo(1000), &rep),
                   CN_EBADTERM);
  assert_int_equal(cn_self(rt, &me), 0);
  assert_int_equal(cn_send_after(rt, 1, cn_to_pid(me), bad, &tref),
                   CN_EBADTERM);
  assert_int_equal(cn_exit(rt, pid, bad), CN_EBADTERM);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), &bad, tmo(1000)), CN_EBADTERM);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "infos", "{ok, []}"), 0);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 0}"), 0);

  /* A handler that builds a malformed reply fails with bad_reply; its
   * caller hears why, and another server is untouched. */
  cn_build(&ex, "garbage_reply");
  assert_int_equal(
      cn_call(rt, cn_to_pid(pid), cn_buf_term(&ex), tmo(1000), &rep), CN_EEXIT);
  assert_true(cn_is_atom(cn_buf_term(&rep), "bad_reply"));
  assert_false(cn_is_alive(rt, pid));
  assert_int_equal(call_expect(rt, cn_to_pid(other), "{add, 1}", "{ok, 1}"), 0);
  cn_buf_free(&rep);
  cn_buf_free(&ex);
  cn_runtime_free(rt);
}

static void test_stop_timeout_kills(void **st) {
  cn_runtime *rt = rt_new(1);
  cn_pid pid = start_srv(rt, NULL);
  cn_buf b = CN_BUF_INIT;
  /* The server is busy for 300 ms; a 30 ms stop times out and kills it,
   * and the server is gone when cn_stop returns. */
  assert_int_equal(cn_cast(rt, cn_to_pid(pid), T(&b, "{busy, 300}")), 0);
  uv_sleep(20);
  assert_int_equal(cn_stop(rt, cn_to_pid(pid), NULL, 30), CN_ETIMEDOUT);
  assert_false(cn_is_alive(rt, pid));
  cn_buf_free(&b);
  cn_runtime_free(rt);
}

static void test_node_identity(void **st) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  cn_pid pid;
  uint32_t idx;
  memset(&o, 0, sizeof(o));
  /* C-only mode: nonode@nohost, creation 0. */
  rt = rt_new(1);
  pid = start_srv(rt, NULL);
  assert_string_equal(cn_node_name(pid.node), "nonode@nohost");
  assert_int_equal(pid.creation, 0);
  cn_runtime_free(rt);
  /* A named node mints pids (and refs) for that node and creation. */
  o.schedulers = 1;
  o.node_name = "cnode_test@localhost";
  o.creation = 1234567;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  pid = start_srv(rt, NULL);
  assert_int_equal(cn_node_intern("cnode_test@localhost", 20, &idx), 0);
  assert_int_equal(pid.node, idx);
  assert_int_equal(pid.creation, 1234567);
  assert_int_equal(cn_runtime_node(rt), idx);
  assert_true(cn_is_alive(rt, pid));
  cn_runtime_free(rt);
  o.node_name = "no_at_sign";
  assert_int_equal(cn_runtime_new(&o, &rt), CN_EINVAL);
}

/* max_mailbox: a server stuck in a handler fills its mailbox; past the
 * limit a call fails at once, sends and casts are dropped and counted, and
 * what was accepted is handled once the server is back. */
static void test_max_mailbox(void **st) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  cn_buf b = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_proc_info pi;
  cn_runtime_stats rs = {0};
  cn_pid pid, caller;
  int i;
  (void)st;
  memset(&o, 0, sizeof(o));
  o.schedulers = 2;
  o.max_mailbox = 4;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  pid = start_srv(rt, NULL);
  caller = start_srv(rt, NULL);
  assert_int_equal(
      cn_cast(rt, cn_to_pid(pid), T(&b, "{busy, ~i}", (int64_t)tmo(1000))), 0);
  /* Wait until the busy cast is being handled: then the mailbox is
   * empty, and the server takes nothing from it for a while. */
  for (i = 0; i < 1000; i++) {
    assert_int_equal(cn_process_info(rt, pid, &pi), 0);
    if (pi.message_queue_len == 0)
      break;
    uv_sleep(1);
  }
  for (i = 0; i < 4; i++)
    assert_int_equal(cn_cast(rt, cn_to_pid(pid), T(&b, "{add, 1}")), 0);
  assert_int_equal(cn_cast(rt, cn_to_pid(pid), T(&b, "{add, 100}")), CN_EFULL);
  assert_int_equal(cn_send(rt, cn_to_pid(pid), T(&b, "hello")), CN_EFULL);
  assert_int_equal(cn_call(rt, cn_to_pid(pid), T(&b, "get"), tmo(5000), &r),
                   CN_EFULL);
  assert_int_equal(cn_process_info(rt, pid, &pi), 0);
  assert_int_equal(pi.message_queue_len, 4);
  /* The same from a process, through cn_call_async.  (Its answer may wait
   * for the busy server's scheduler, so the mailbox may have drained
   * when it comes.) */
  {
    cn_buf q = CN_BUF_INIT, ex = CN_BUF_INIT;
    assert_int_equal(
        cn_build(&q, "{call_req, ~p, get, ~i}", &pid, (int64_t)tmo(5000)), 0);
    assert_int_equal(
        cn_call(rt, cn_to_pid(caller), cn_buf_term(&q), tmo(5000), &r), 0);
    assert_true(cn_term_equal(cn_buf_term(&r), T(&ex, "{error, 'CN_EFULL'}")));
    cn_buf_free(&q);
    cn_buf_free(&ex);
  }
  assert_int_equal(cn_process_info(rt, pid, &pi), 0);
  assert_int_equal(pi.dropped, 2);
  assert_int_equal(pi.refused_calls, 2);
  assert_int_equal(cn_runtime_get_stats(rt, &rs), 0);
  assert_int_equal(rs.mailbox_dropped, 2);
  assert_int_equal(rs.mailbox_refused, 2);
  /* Back from the handler, the server works through its mailbox: the
   * accepted casts were all handled, and nothing else was. */
  for (i = 0; i < tmo(5000); i++) {
    assert_int_equal(cn_process_info(rt, pid, &pi), 0);
    if (pi.message_queue_len == 0)
      break;
    uv_sleep(1);
  }
  assert_int_equal(pi.message_queue_len, 0);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 4}"), 0);
  {
    cn_pid dead = pid;
    dead.serial++;
    assert_int_equal(cn_process_info(rt, dead, &pi), CN_ENOPROC);
  }
  cn_buf_free(&b);
  cn_buf_free(&r);
  cn_runtime_free(rt);
}

/* A reply over max_message: the caller gets CN_ETOOBIG at once, on the
 * inline path and the message path alike, and the server lives on with
 * its state. */
static void test_reply_too_large(void **st) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  cn_buf b = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_runtime_stats rs = {0};
  cn_pid pid, caller;
  (void)st;
  memset(&o, 0, sizeof(o));
  o.schedulers = 2;
  o.limits.max_size = 1 << 20;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  assert_int_equal(cn_max_message(rt), 1 << 20);
  pid = start_srv(rt, NULL);
  caller = start_srv(rt, NULL);
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "{add, 7}", "{ok, 7}"), 0);
  /* Under the limit, and just over it (a 1 MiB binary's header makes it
   * 1 MiB + 5 bytes). */
  assert_int_equal(cn_call(rt, cn_to_pid(pid),
                           T(&b, "{big, ~i}", (int64_t)1000000), tmo(5000), &r),
                   0);
  assert_int_equal(r.len, 1000005);
  assert_int_equal(cn_call(rt, cn_to_pid(pid),
                           T(&b, "{big, ~i}", (int64_t)(1 << 20)), tmo(5000),
                           &r),
                   CN_ETOOBIG);
  assert_true(cn_is_alive(rt, pid));
  {
    cn_buf q = CN_BUF_INIT, ex = CN_BUF_INIT;
    assert_int_equal(cn_build(&q, "{call_req, ~p, {big, ~i}, ~i}", &pid,
                              (int64_t)(2 << 20), (int64_t)tmo(5000)),
                     0);
    assert_int_equal(
        cn_call(rt, cn_to_pid(caller), cn_buf_term(&q), tmo(5000), &r), 0);
    assert_true(
        cn_term_equal(cn_buf_term(&r), T(&ex, "{error, 'CN_ETOOBIG'}")));
    cn_buf_free(&q);
    cn_buf_free(&ex);
  }
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "get", "{ok, 7}"), 0);
  assert_int_equal(cn_runtime_get_stats(rt, &rs), 0);
  assert_int_equal(rs.replies_too_large, 2);
  /* What is sent is held to the same limit. */
  {
    char *z = calloc(1, 2 << 20);
    cn_buf_reset(&b);
    cn_put_binary(&b, z, 2 << 20);
    free(z);
    assert_int_equal(cn_send(rt, cn_to_pid(pid), cn_buf_term(&b)), CN_ETOOBIG);
  }
  cn_buf_free(&b);
  cn_buf_free(&r);
  cn_runtime_free(rt);
}

/* A flat term (a tuple of atoms and small integers, which the runtime
 * checks without the validator's walk) is held to max_message too. */
static void test_flat_term_too_large(void **st) {
  cn_runtime_options o;
  cn_runtime *rt = NULL;
  cn_buf b = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_pid pid;
  (void)st;
  memset(&o, 0, sizeof(o));
  o.schedulers = 1;
  o.limits.max_size = 40;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  pid = start_srv(rt, NULL);
  /* 2 + 4 * 12 = 50 bytes, flat */
  T(&b, "{aaaaaaaaaa, bbbbbbbbbb, cccccccccc, dddddddddd}");
  assert_int_equal(b.len, 50);
  assert_int_equal(cn_send(rt, cn_to_pid(pid), cn_buf_term(&b)), CN_ETOOBIG);
  assert_int_equal(cn_call(rt, cn_to_pid(pid), cn_buf_term(&b), tmo(5000), &r),
                   CN_ETOOBIG);
  /* 2 + 12 + 2 = 16 bytes: under the limit, and answered. */
  assert_int_equal(call_expect(rt, cn_to_pid(pid), "{add, 7}", "{ok, 7}"), 0);
  assert_int_equal(cn_send(rt, cn_to_pid(pid), T(&b, "{aaaaaaaaaa, 1}")), 0);
  cn_buf_free(&b);
  cn_buf_free(&r);
  cn_runtime_free(rt);
}

/* The library says which version it is, as the headers do. */
static void test_version(void **st) {
  char want[32];
  (void)st;
  assert_int_equal(cn_version(), CN_VERSION_HEX);
  snprintf(want, sizeof(want), "%d.%d.%d", CN_VERSION_MAJOR, CN_VERSION_MINOR,
           CN_VERSION_PATCH);
  assert_string_equal(cn_version_string(), want);
}

static void test_strerror(void **st) {
  assert_string_equal(cn_strerror(0), "ok");
  assert_string_equal(cn_strerror(CN_ENOPROC), "no such process");
  assert_string_equal(cn_err_name(CN_ETIMEDOUT), "CN_ETIMEDOUT");
  assert_string_equal(cn_strerror(-9999), "unknown error");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_max_mailbox),
      cmocka_unit_test(test_formatted_calls),
      cmocka_unit_test(test_many_links),
      cmocka_unit_test(test_handle_continue),
      cmocka_unit_test(test_reply_too_large),
      cmocka_unit_test(test_flat_term_too_large),
      cmocka_unit_test(test_node_identity),
      cmocka_unit_test(test_bad_terms),
      cmocka_unit_test(test_stop_timeout_kills),
      cmocka_unit_test(test_call_cast_info),
      cmocka_unit_test(test_deferred_reply),
      cmocka_unit_test(test_call_kept_server),
      cmocka_unit_test(test_call_noproc),
      cmocka_unit_test(test_call_timeout_late_reply),
      cmocka_unit_test(test_exit_reason_reaches_caller),
      cmocka_unit_test(test_deadlock_detected),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_names_last_hit),
      cmocka_unit_test(test_monitors),
      cmocka_unit_test(test_many_monitors),
      cmocka_unit_test(test_links_and_exits),
      cmocka_unit_test(test_start_link),
      cmocka_unit_test(test_init_results),
      cmocka_unit_test(test_process_calls),
      cmocka_unit_test(test_timers),
      cmocka_unit_test(test_call_timer),
      cmocka_unit_test(test_call_timer_rearms),
      cmocka_unit_test(test_async_call_inline),
      cmocka_unit_test(test_server_timeout),
      cmocka_unit_test(test_threads_exit_during_free),
      cmocka_unit_test(test_shutdown_runs_terminate),
      cmocka_unit_test(test_stress),
      cmocka_unit_test(test_many_processes),
  };
  int rc = run_group("runtime", tests, NULL, NULL);
  cn_buf_free(&rx);
  return rc;
}
