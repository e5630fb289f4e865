/* rpc_node: C functions that Erlang calls with rpc, erpc and erl_call.
 *
 * cn_export (cnode/export.h) registers a C function as Mod:Fun/Arity.
 * This node exports two:
 *   calc:add/2      (A, B) -> A + B; error:badarg for anything but two
 *                   integers, as erlang:'+' would say
 *   calc:divide/2   (A, B) -> A div B; throw:divide_by_zero when B is 0,
 *                   to show a throw crossing to the caller
 *
 *   rpc_node NAME [COOKIE]  runs as NAME@<host> until SIGINT, SIGTERM or
 *                           init:stop(); without COOKIE, ~/.erlang.cookie
 *   rpc_node                the self-test that `make check` runs: the
 *                           same functions through cn_apply, no BEAM
 *
 * From erl -sname me -setcookie COOKIE, with rpc_node NAME COOKIE running:
 *
 *   erpc:call('NAME@host', calc, add, [1, 2]).        %=> 3
 *   rpc:call('NAME@host', calc, divide, [1, 0]).      %=> divide_by_zero
 *   erpc:call('NAME@host', calc, add, [a, 2]).
 *     %=> ** exception error: {exception,badarg,[{calc,add,2,[]}]}
 *
 * and from a shell, with OTP's erl_call:
 *
 *   erl_call -sname NAME -c COOKIE -a 'calc add [40, 2]'   # prints 42
 *
 *   cc rpc_node.c $(pkg-config --cflags --libs cnode) -o rpc_node
 */
#include <cnode.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int calc_add(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  int64_t a, b;
  (void)rt;
  (void)arg;
  if (cn_match(args, "[~i, ~i]", &a, &b) != 0 ||
      __builtin_add_overflow(a, b, &a)) {
    cn_build(out, "badarg");
    return CN_ERROR; /* error:badarg in the caller */
  }
  cn_build(out, "~i", a);
  return CN_RETURN;
}

static int calc_divide(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  int64_t a, b;
  (void)rt;
  (void)arg;
  if (cn_match(args, "[~i, ~i]", &a, &b) != 0 || (a == INT64_MIN && b == -1)) {
    cn_build(out, "badarg");
    return CN_ERROR;
  }
  if (b == 0) {
    cn_build(out, "divide_by_zero");
    return CN_THROW; /* rpc:call returns it; erpc:call throws it */
  }
  cn_build(out, "~i", a / b);
  return CN_RETURN;
}

static int export_calc(cn_runtime *rt) {
  int rc = cn_export(rt, "calc", "add", 2, calc_add, NULL);
  return rc ? rc : cn_export(rt, "calc", "divide", 2, calc_divide, NULL);
}

static int start(cn_runtime *rt, void *arg, cn_pid *watch) {
  (void)arg;
  (void)watch; /* nothing to watch: the node runs until it is stopped */
  return export_calc(rt);
}

/* The self-test: each function through cn_apply, which runs an export
 * on the calling thread as a remote call would run it. */
static int self_test(void) {
  cn_runtime *rt;
  cn_buf args = CN_BUF_INIT, out = CN_BUF_INIT;
  int ok = 1;
  if (cn_runtime_new(NULL, &rt) != 0 || export_calc(rt) != 0)
    return 1;
  cn_build(&args, "[40, 2]");
  ok &= cn_apply(rt, "calc", "add", cn_buf_term(&args), &out) == CN_RETURN &&
        cn_match(cn_buf_term(&out), "42") == 0;
  cn_buf_reset(&args);
  cn_build(&args, "[1, 0]");
  ok &= cn_apply(rt, "calc", "divide", cn_buf_term(&args), &out) == CN_THROW &&
        cn_match(cn_buf_term(&out), "divide_by_zero") == 0;
  cn_buf_reset(&args);
  cn_build(&args, "[a, 2]");
  ok &= cn_apply(rt, "calc", "add", cn_buf_term(&args), &out) == CN_ERROR &&
        cn_match(cn_buf_term(&out), "badarg") == 0;
  /* calc:add/3 is not exported: undef. */
  cn_buf_reset(&args);
  cn_build(&args, "[1, 2, 3]");
  ok &= cn_apply(rt, "calc", "add", cn_buf_term(&args), &out) == CN_ENOENT;
  cn_buf_free(&args);
  cn_buf_free(&out);
  cn_runtime_free(rt);
  printf("rpc_node self-test: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  cn_node_options opts;
  if (argc < 2)
    return self_test();
  memset(&opts, 0, sizeof(opts));
  opts.sname = argv[1];
  opts.dist.cookie = argc > 2 ? argv[2] : NULL; /* NULL: ~/.erlang.cookie */
  return cn_node_run(&opts, start, NULL) == 0 ? 0 : 1;
}
