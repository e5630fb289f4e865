/* counter: the smallest complete libcnode program.
 *
 * A gen_server registered as "counter" holds one integer.  main() casts
 * {add, 5} to it, calls it with get and {add, 10}, prints and checks the
 * replies, then stops the server and frees the runtime.
 *
 *   cc counter.c $(pkg-config --cflags --libs cnode) -o counter
 */
#include <cnode.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- The server: every callback runs inside the "counter" process ----- */

/* init runs in the new process before cn_start returns.  The state it
 * allocates belongs to the process until free_state gives it back. */
static int counter_init(cn_proc *self, void *arg, void **state) {
  int64_t *n = malloc(sizeof *n);
  if (n == NULL)
    return CN_STOP;           /* cn_start then fails with CN_EEXIT */
  *n = *(const int64_t *)arg; /* arg is only lent to init: copy it */
  *state = n;
  return CN_NOREPLY;
}

/* get -> {ok, N};  {add, K} -> {ok, N + K}.  req is valid only until we
 * return; *reply is an empty buffer that the runtime sends for us when we
 * return CN_REPLY.  (CN_NOREPLY would mean "I keep from and answer later
 * with cn_reply", as gen_server's {noreply, State} does.) */
static int counter_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                        cn_buf *reply) {
  int64_t *n = state, k;

  if (cn_match(req, "{add, ~i}", &k) == 0)
    *n += k;
  else if (cn_match(req, "get") != 0)
    return cn_build(reply, "{error, bad_request}") == 0 ? CN_REPLY : CN_STOP;
  return cn_build(reply, "{ok, ~i}", *n) == 0 ? CN_REPLY : CN_STOP;
}

/* {add, K}, sent with cn_cast: nobody waits, so there is nothing to reply.
 * Anything else is ignored. */
static int counter_cast(cn_proc *self, void *state, cn_term msg) {
  int64_t *n = state, k;

  if (cn_match(msg, "{add, ~i}", &k) == 0)
    *n += k;
  return CN_NOREPLY;
}

/* Runs on every exit, however the server goes: cn_stop, a crash, a kill,
 * a shutdown.  (terminate, if a server has one, is for cleanup with
 * effects, and does not run when an exit signal kills a server that does
 * not trap exits: memory must not wait for it.) */
static void counter_free(void *state) { free(state); }

static const cn_server_ops counter_ops = {
    .name = "counter",
    .init = counter_init,
    .handle_call = counter_call,
    .handle_cast = counter_cast,
    .free_state = counter_free,
};

/* ---- The client: main() is a plain thread ----------------------------- */

/* Calls "counter" with a request built from fmt (cn_build syntax), prints
 * the request and the reply, and takes N out of {ok, N}. */
static int call(cn_runtime *rt, int64_t *n, const char *fmt, ...) {
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT, text = CN_BUF_INIT;
  va_list ap;
  int err;

  va_start(ap, fmt);
  err = cn_vbuild(&req, fmt, ap);
  va_end(ap);
  if (err == 0) /* blocks until the reply comes back, or for 5 s */
    err = cn_call(rt, cn_to_name("counter"), cn_buf_term(&req), 5000, &reply);
  if (err == 0 && cn_term_print(cn_buf_term(&req), &text) == 0 &&
      cn_buf_append(&text, " -> ", 4) == 0 &&
      cn_term_print(cn_buf_term(&reply), &text) == 0)
    printf("counter: %s\n", text.data);
  if (err == 0)
    err = cn_match(cn_buf_term(&reply), "{ok, ~i}", n);
  cn_buf_free(&req); /* every buffer owns its bytes: free each one */
  cn_buf_free(&reply);
  cn_buf_free(&text);
  return err;
}

int main(void) {
  cn_runtime *rt;
  cn_start_options opts = {.name = "counter"}; /* register it by name */
  cn_buf msg = CN_BUF_INIT;
  int64_t start = 0, got = 0, added = 0;
  cn_pid pid;
  int err;

  if ((err = cn_runtime_new(NULL, &rt)) != 0) { /* NULL: one thread a core */
    fprintf(stderr, "counter: cn_runtime_new: %s\n", cn_strerror(err));
    return 1;
  }
  err = cn_start(rt, &counter_ops, &start, &opts, &pid);
  if (err == 0)
    err = cn_build(&msg, "{add, ~i}", (int64_t)5); /* ~i takes an int64_t */
  if (err == 0) /* the message is copied: msg is ours to free */
    err = cn_cast(rt, cn_to_name("counter"), cn_buf_term(&msg));
  if (err == 0) /* messages from one sender arrive in order: the cast first */
    err = call(rt, &got, "get");
  if (err == 0)
    err = call(rt, &added, "{add, ~i}", (int64_t)10);
  /* cn_stop stops the server with reason normal; free_state frees its
   * state.  (cn_runtime_free alone would also do, through free_state.) */
  if (err == 0)
    err = cn_stop(rt, cn_to_pid(pid), NULL, 5000);
  cn_buf_free(&msg);
  cn_runtime_free(rt);

  if (err != 0 || got != 5 || added != 15) {
    fprintf(stderr, "counter: FAILED: %s; got %lld and %lld, want 5 and 15\n",
            cn_strerror(err), (long long)got, (long long)added);
    return 1;
  }
  printf("counter: ok\n");
  return 0;
}
