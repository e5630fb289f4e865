/* two_nodes: distribution from C, with no BEAM.
 *
 * Two runtimes in one program become two nodes of a cluster: each
 * registers with epmd (which is started if none runs) and listens on
 * loopback.  Node "a" hosts a "greeter" server; node "b" calls it as
 * {greeter, a@host} over a real distribution connection, monitors it, and
 * sees it exit.  An erl or iex on the same host with the same cookie could
 * call the greeter the same way (GenServer.call({:greeter, :"a...@host"},
 * {:hello, "you"})) while the program runs.
 *
 *   cc two_nodes.c $(pkg-config --cflags --libs cnode) -o two_nodes
 */
#include <cnode.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* {hello, Name} -> {hi, Name, Node};  {stop, Reason} stops the server. */
static int greeter_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                        cn_buf *reply) {
  cn_runtime *rt = cn_proc_runtime(self);
  cn_term who;
  (void)state;
  (void)from;
  if (cn_match(req, "{hello, ~t}", &who) == 0)
    return cn_build(reply, "{hi, ~t, ~a}", who,
                    cn_node_name(cn_runtime_node(rt))) == 0
               ? CN_REPLY
               : CN_STOP;
  if (cn_match(req, "{stop, ~t}", &who) == 0) {
    cn_set_reason_term(self, who);
    return CN_STOP; /* the caller gets our reason, through its monitor */
  }
  return cn_build(reply, "{error, unknown_call}") == 0 ? CN_REPLY : CN_STOP;
}

static const cn_server_ops greeter_ops = {.name = "greeter",
                                          .handle_call = greeter_call};

/* A node named NAME_PID@host, so that two runs never clash in epmd. */
static int start_node(const char *prefix, char *name, size_t cap,
                      cn_runtime **rt) {
  cn_runtime_options ro;
  cn_dist_options dopt;
  char host[256];
  int err;

  gethostname(host, sizeof(host));
  host[sizeof(host) - 1] = 0;
  host[strcspn(host, ".")] = 0; /* the short name, as erl -sname */
  snprintf(name, cap, "%s%d@%.64s", prefix, (int)getpid(), host);
  memset(&ro, 0, sizeof(ro));
  ro.node_name = name;
  if ((err = cn_runtime_new(&ro, rt)) != 0)
    return err;
  memset(&dopt, 0, sizeof(dopt));
  dopt.cookie = "two_nodes_example";
  if ((err = cn_dist_start(*rt, &dopt)) != 0) {
    cn_runtime_free(*rt);
    return err;
  }
  printf("node %s listens on port %u\n", name, cn_dist_port(*rt));
  return 0;
}

static int fail(const char *what, int err) {
  fprintf(stderr, "two_nodes: %s: %s\n", what, cn_strerror(err));
  return 1;
}

int main(void) {
  char a_name[128], b_name[128];
  cn_runtime *a, *b;
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT, text = CN_BUF_INIT;
  cn_start_options so = {"greeter", NULL};
  cn_pid greeter;
  cn_ref mref;
  int err, rc = 1;

  if ((err = start_node("a", a_name, sizeof(a_name), &a)) != 0)
    return fail("node a", err);
  if ((err = start_node("b", b_name, sizeof(b_name), &b)) != 0) {
    cn_runtime_free(a);
    return fail("node b", err);
  }
  if ((err = cn_start(a, &greeter_ops, NULL, &so, &greeter)) != 0) {
    fail("start greeter", err);
    goto out;
  }

  /* From b's main thread: a call by {Name, Node}.  The first send to a
   * connects b to a (epmd lookup, handshake). */
  cn_build(&req, "{hello, ~b}", "world", (size_t)5);
  err = cn_call(b, cn_to_remote("greeter", a_name), cn_buf_term(&req), 5000,
                &reply);
  if (err != 0) {
    fail("call", err);
    goto out;
  }
  cn_term_print(cn_buf_term(&reply), &text);
  printf("b got %.*s\n", (int)text.len, text.data);

  /* Monitor the greeter across the wire, then stop it with a call: the
   * call fails with its reason, and the DOWN carries it too. */
  if ((err = cn_monitor(b, cn_to_pid(greeter), &mref)) != 0) {
    fail("monitor", err);
    goto out;
  }
  cn_buf_reset(&req);
  cn_build(&req, "{stop, going_home}");
  err = cn_call(b, cn_to_pid(greeter), cn_buf_term(&req), 5000, &reply);
  if (err != CN_EEXIT || !cn_is_atom(cn_buf_term(&reply), "going_home")) {
    fail("stop call", err ? err : CN_EINVAL);
    goto out;
  }
  if ((err = cn_receive(b, 5000, &reply)) != 0 ||
      cn_match(cn_buf_term(&reply), "{'DOWN', _, process, _, going_home}")) {
    fail("DOWN", err ? err : CN_ENOMATCH);
    goto out;
  }
  cn_buf_reset(&text);
  cn_term_print(cn_buf_term(&reply), &text);
  printf("b got %.*s\n", (int)text.len, text.data);
  rc = 0;

out:
  cn_buf_free(&req);
  cn_buf_free(&reply);
  cn_buf_free(&text);
  cn_runtime_free(b);
  cn_runtime_free(a);
  if (rc == 0)
    printf("two_nodes: ok\n");
  return rc;
}
