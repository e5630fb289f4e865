/* my_node: a distributed node of your own in ten lines of main().
 *
 * A node that BEAM processes call with GenServer.call, hosting one server
 * of its own: "counter", under the supervisor "my_node_sup", which
 * restarts it when it dies.  cn_node_run (cnode/node.h) does everything
 * else a node program does: the node name as erl -sname makes it, the
 * cookie as erl finds it, distribution, the ready line, and the clean stop
 * on SIGINT or SIGTERM.
 *
 *   my_node NAME [COOKIE]  runs as NAME@<host> until SIGINT or SIGTERM;
 *                          without COOKIE, ~/.erlang.cookie as erl reads
 *                          it (created when missing)
 *   my_node                the self-test that `make check` runs: the node
 *                          starts as my_node_test_<pid>, a second node in
 *                          this program calls its counter over real
 *                          distribution, then SIGTERM stops it; exit
 *                          status 0 when every reply was right
 *
 * From iex --sname me --cookie COOKIE, with my_node NAME COOKIE running:
 *
 *   GenServer.call({:counter, :"NAME@host"}, {:add, 5})   #=> {:ok, 5}
 *   GenServer.cast({:counter, :"NAME@host"}, {:add, 2})
 *   GenServer.call({:counter, :"NAME@host"}, :get)        #=> {:ok, 7}
 *
 *   cc my_node.c $(pkg-config --cflags --libs cnode) -o my_node
 */
#include <cnode.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- The counter: one integer ------------------------------------------
 * Calls: get -> {ok, N};  {add, K} -> {ok, N + K} ({error, badarg} unless
 * K is an integer, {error, overflow} outside 64 bits, leaving N as it
 * was);  reset -> {ok, N}, and N is 0 again;  else {error, unknown_call}.
 * Cast: {add, K}.  A restart starts again from 0. */

static int counter_init(cn_proc *self, void *arg, void **state) {
  int64_t *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return CN_STOP;
  *state = n;
  return CN_NOREPLY; /* init's "ok": carry on */
}

/* Adds k to *n unless the sum overflows; returns false then. */
static bool add(int64_t *n, int64_t k) {
  int64_t sum;
  if (__builtin_add_overflow(*n, k, &sum))
    return false;
  *n = sum;
  return true;
}

static int counter_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                        cn_buf *reply) {
  int64_t *n = state, k, old = *n;
  int err;

  if (cn_match(req, "get") == 0)
    err = cn_build(reply, "{ok, ~i}", *n);
  else if (cn_match(req, "{add, ~i}", &k) == 0)
    err = add(n, k) ? cn_build(reply, "{ok, ~i}", *n)
                    : cn_build(reply, "{error, overflow}");
  else if (cn_match(req, "{add, _}") == 0)
    err = cn_build(reply, "{error, badarg}");
  else if (cn_match(req, "reset") == 0) {
    *n = 0;
    err = cn_build(reply, "{ok, ~i}", old);
  } else
    err = cn_build(reply, "{error, unknown_call}");
  return err == 0 ? CN_REPLY : CN_STOP; /* out of memory: let it restart */
}

static int counter_cast(cn_proc *self, void *state, cn_term msg) {
  int64_t k;
  if (cn_match(msg, "{add, ~i}", &k) == 0)
    add(state, k);
  return CN_NOREPLY;
}

static const cn_server_ops counter_ops = {
    .name = "my_counter",
    .init = counter_init,
    .handle_call = counter_call,
    .handle_cast = counter_cast,
    .free_state = free,
};

/* ---- The node's servers ------------------------------------------------ */

/* cn_node_run calls this once distribution runs.  The supervisor is the
 * process to watch: should it give up (more than 10 restarts in a
 * second), the node stops, with exit status 1. */
static int start_servers(cn_runtime *rt, void *arg, cn_pid *watch) {
  cn_start_options so = {.name = "my_node_sup"};
  cn_buf spec = CN_BUF_INIT;
  int err = cn_server_register(rt, &counter_ops); /* module my_counter */

  /* {my_counter, start_link, [{local, counter}, []]}: as
   * gen_server:start_link({local, counter}, my_counter, [], []). */
  if (err == 0)
    err = cn_build(&spec, "{#{strategy => one_for_one, intensity => 10,"
                          "   period => 1},"
                          " [#{id => counter,"
                          "    start => {my_counter, start_link,"
                          "              [{local, counter}, []]}}]}");
  if (err == 0)
    err = cn_supervisor_start(rt, cn_buf_term(&spec), &so, watch);
  cn_buf_free(&spec);
  return err;
}

/* ---- The self-test ------------------------------------------------------ */

#define TEST_COOKIE "my_node_self_test"

typedef struct tester {
  char node[CN_MAX_NODE_NAME + 1]; /* the node under test */
  pthread_t thread;
  bool running;
  int failures;
} tester;

/* Sends req (a cn_build format) to {counter, node} as a call, or as a cast
 * when want is NULL, and checks the printed reply against want. */
static void check(cn_runtime *peer, tester *t, const char *req,
                  const char *want) {
  cn_buf b = CN_BUF_INIT, reply = CN_BUF_INIT, text = CN_BUF_INIT;
  cn_dest counter = cn_to_remote("counter", t->node);
  int err = cn_build(&b, req);

  if (err == 0 && want == NULL)
    err = cn_cast(peer, counter, cn_buf_term(&b));
  else if (err == 0)
    err = cn_call(peer, counter, cn_buf_term(&b), 5000, &reply);
  if (err == 0 && want)
    err = cn_term_print(cn_buf_term(&reply), &text);
  if (err != 0 || (want && strcmp(text.data, want) != 0)) {
    fprintf(stderr, "my_node: %s -> %s, want %s\n", req,
            err ? cn_strerror(err) : text.data, want ? want : "a cast");
    t->failures++;
  } else if (want) {
    printf("my_node: %s -> %s\n", req, text.data);
  }
  cn_buf_free(&b);
  cn_buf_free(&reply);
  cn_buf_free(&text);
}

/* A second node, in this program, calls the counter over a real
 * distribution connection, as an Elixir node would; then the whole
 * program gets SIGTERM, which cn_node_run's thread takes. */
static void *test_from_peer(void *arg) {
  tester *t = arg;
  char name[32], node[CN_MAX_NODE_NAME + 1];
  cn_runtime_options ro = {.schedulers = 1, .node_name = node};
  cn_dist_options dopt = {.cookie = TEST_COOKIE};
  cn_runtime *peer = NULL;

  snprintf(name, sizeof(name), "my_node_peer_%d", (int)getpid());
  if (cn_node_shortname(name, node, sizeof(node)) != 0 ||
      cn_runtime_new(&ro, &peer) != 0 || cn_dist_start(peer, &dopt) != 0) {
    fprintf(stderr, "my_node: cannot start the peer node\n");
    t->failures++;
  } else {
    check(peer, t, "get", "{ok,0}");
    check(peer, t, "{add, 5}", "{ok,5}");
    check(peer, t, "{add, 2}", NULL); /* a cast, ahead of the next call */
    check(peer, t, "get", "{ok,7}");
    check(peer, t, "{add, 9223372036854775807}", "{error,overflow}");
    check(peer, t, "{add, five}", "{error,badarg}");
    check(peer, t, "reset", "{ok,7}");
    check(peer, t, "get", "{ok,0}");
    check(peer, t, "hello", "{error,unknown_call}");
  }
  if (peer)
    cn_runtime_free(peer);
  kill(getpid(), SIGTERM); /* to the process: a thread would keep it */
  return NULL;
}

static int start_and_test(cn_runtime *rt, void *arg, cn_pid *watch) {
  tester *t = arg;
  int err = start_servers(rt, NULL, watch);

  if (err != 0)
    return err;
  snprintf(t->node, sizeof(t->node), "%s", cn_node_name(cn_runtime_node(rt)));
  if (pthread_create(&t->thread, NULL, test_from_peer, t) != 0)
    return CN_ESYSTEM;
  t->running = true;
  return 0;
}

static int self_test(void) {
  char name[32];
  tester t = {.failures = 0};
  cn_node_options opts = {.sname = name, .dist.cookie = TEST_COOKIE};
  int err;

  snprintf(name, sizeof(name), "my_node_test_%d", (int)getpid());
  err = cn_node_run(&opts, start_and_test, &t);
  if (t.running)
    pthread_join(t.thread, NULL);
  if (err != 0 || t.failures != 0 || !t.running) {
    fprintf(stderr, "my_node: self-test FAILED (%s, %d wrong replies)\n",
            cn_strerror(err), t.failures);
    return 1;
  }
  printf("my_node: self-test ok\n");
  return 0;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv) {
  cn_node_options opts = {.sname = argc > 1 ? argv[1] : NULL};

  if (argc == 1) /* no arguments: the self-test, as make check runs it */
    return self_test();
  if (argc > 3 || argv[1][0] == '-') {
    fprintf(stderr, "usage: my_node [NAME [COOKIE]]\n");
    return 2;
  }
  opts.dist.cookie = argc == 3 ? argv[2] : NULL; /* NULL: ~/.erlang.cookie */
  return cn_node_run(&opts, start_servers, NULL) == 0 ? 0 : 1;
}
