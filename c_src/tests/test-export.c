/* cn_export and cn_apply: the export table, OTP's classes, undef, and the
 * rules an export must keep.  The wire side (SPAWN_REQUEST, rex) is
 * tested against real erl in test_erl/cnode_rpc_SUITE.erl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

static int fn_add(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  int64_t a, b;
  (void)rt;
  (void)arg;
  if (cn_match(args, "[~i, ~i]", &a, &b) != 0) {
    cn_build(out, "badarg");
    return CN_ERROR;
  }
  cn_build(out, "~i", a + b);
  return CN_RETURN;
}

/* Ends in the class named by its argument, with reason why. */
static int fn_raise(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)rt;
  (void)arg;
  cn_build(out, "why");
  if (cn_match(args, "[throw]") == 0)
    return CN_THROW;
  if (cn_match(args, "[exit]") == 0)
    return CN_EXIT;
  if (cn_match(args, "[error]") == 0)
    return CN_ERROR;
  if (cn_match(args, "[bad]") == 0)
    return 0; /* not a class: bad_return_value */
  cn_buf_reset(out);
  return CN_RETURN; /* with no term: bad_return */
}

static int fn_arg(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  (void)rt;
  (void)args;
  return cn_build(out, "~i", (int64_t)(intptr_t)arg) == 0 ? CN_RETURN
                                                          : CN_ERROR;
}

/* Blocks on a call, as an export may (it runs on a thread). */
static int fn_blocking(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  cn_buf msg = CN_BUF_INIT;
  int rc;
  (void)args;
  (void)arg;
  rc = cn_receive(rt, 10, &msg);
  cn_buf_free(&msg);
  return cn_build(out, "~a", rc == CN_ETIMEDOUT ? "waited" : "odd") == 0
             ? CN_RETURN
             : CN_ERROR;
}

static void test_table(void **state) {
  cn_runtime *rt = rt_new(1);
  char long_name[300];
  (void)state;
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';

  assert_int_equal(cn_export(rt, "calc", "add", 2, fn_add, NULL), 0);
  assert_true(cn_is_exported(rt, "calc", "add", 2));
  assert_false(cn_is_exported(rt, "calc", "add", 3));
  assert_false(cn_is_exported(rt, "calc", "sub", 2));
  /* The same MFA twice; another arity is another function. */
  assert_int_equal(cn_export(rt, "calc", "add", 2, fn_raise, NULL), CN_EEXIST);
  assert_int_equal(cn_export(rt, "calc", "add", 3, fn_raise, NULL), 0);
  /* Bad arguments. */
  assert_int_equal(cn_export(rt, "calc", "x", 256, fn_add, NULL), CN_EINVAL);
  assert_int_equal(cn_export(rt, "", "x", 0, fn_add, NULL), CN_EINVAL);
  assert_int_equal(cn_export(rt, "m", "", 0, fn_add, NULL), CN_EINVAL);
  assert_int_equal(cn_export(rt, NULL, "x", 0, fn_add, NULL), CN_EINVAL);
  assert_int_equal(cn_export(rt, "m", long_name, 0, fn_add, NULL), CN_EINVAL);
  assert_int_equal(cn_export(rt, "m", "x", 0, NULL, NULL), CN_EINVAL);
  assert_int_equal(cn_export(NULL, "m", "x", 0, fn_add, NULL), CN_EINVAL);
  assert_int_equal(cn_export(rt, "m", "x", 255, fn_add, NULL), 0);
  cn_runtime_free(rt);
}

static void test_apply_classes(void **state) {
  cn_runtime *rt = rt_new(1);
  cn_buf a = CN_BUF_INIT, out = CN_BUF_INIT;
  (void)state;
  assert_int_equal(cn_export(rt, "calc", "add", 2, fn_add, NULL), 0);
  assert_int_equal(cn_export(rt, "t", "raise", 1, fn_raise, NULL), 0);
  assert_int_equal(cn_export(rt, "t", "arg", 0, fn_arg, (void *)(intptr_t)7),
                   0);

  assert_int_equal(cn_apply(rt, "calc", "add", T(&a, "[1, 2]"), &out),
                   CN_RETURN);
  assert_int_equal(cn_match(cn_buf_term(&out), "3"), 0);
  assert_int_equal(cn_apply(rt, "t", "arg", T(&a, "[]"), &out), CN_RETURN);
  assert_int_equal(cn_match(cn_buf_term(&out), "7"), 0);
  assert_int_equal(cn_apply(rt, "t", "raise", T(&a, "[throw]"), &out),
                   CN_THROW);
  assert_int_equal(cn_match(cn_buf_term(&out), "why"), 0);
  assert_int_equal(cn_apply(rt, "t", "raise", T(&a, "[exit]"), &out), CN_EXIT);
  assert_int_equal(cn_apply(rt, "t", "raise", T(&a, "[error]"), &out),
                   CN_ERROR);
  assert_int_equal(cn_match(cn_buf_term(&out), "why"), 0);
  /* An export that breaks the rules is the caller's error. */
  assert_int_equal(cn_apply(rt, "t", "raise", T(&a, "[bad]"), &out), CN_ERROR);
  assert_int_equal(cn_match(cn_buf_term(&out), "{bad_return_value, 0}"), 0);
  assert_int_equal(cn_apply(rt, "t", "raise", T(&a, "[none]"), &out), CN_ERROR);
  assert_int_equal(cn_match(cn_buf_term(&out), "bad_return"), 0);
  /* undef: no such function, or not at that arity. */
  assert_int_equal(cn_apply(rt, "calc", "add", T(&a, "[1]"), &out), CN_ENOENT);
  assert_int_equal(out.len, 0);
  assert_int_equal(cn_apply(rt, "nomod", "nofun", T(&a, "[]"), &out),
                   CN_ENOENT);
  /* Arguments must be a proper list. */
  assert_int_equal(cn_apply(rt, "calc", "add", T(&a, "{1, 2}"), &out),
                   CN_EBADTERM);
  assert_int_equal(cn_apply(rt, "calc", "add", T(&a, "[1 | 2]"), &out),
                   CN_EBADTERM);
  /* erlang:apply/2 with an external fun applies the export; the
   * runtime has no other erlang:apply. */
  /* [fun calc:add/2, [2, 3]], the fun as EXPORT_EXT (113). */
  cn_buf_reset(&a);
  assert_int_equal(cn_put_list(&a, 2), 0);
  assert_int_equal(cn_buf_append(&a, "\x71", 1), 0);
  assert_int_equal(cn_put_atom(&a, "calc"), 0);
  assert_int_equal(cn_put_atom(&a, "add"), 0);
  assert_int_equal(cn_put_int(&a, 2), 0);
  assert_int_equal(cn_build(&a, "[2, 3]"), 0);
  assert_int_equal(cn_put_nil(&a), 0);
  assert_int_equal(cn_apply(rt, "erlang", "apply", cn_buf_term(&a), &out),
                   CN_RETURN);
  assert_int_equal(cn_match(cn_buf_term(&out), "5"), 0);
  assert_int_equal(cn_apply(rt, "erlang", "apply", T(&a, "[x, []]"), &out),
                   CN_ENOENT);
  assert_int_equal(
      cn_apply(rt, "erlang", "apply", T(&a, "[calc, add, [4, 5]]"), &out),
      CN_RETURN);
  assert_int_equal(cn_match(cn_buf_term(&out), "9"), 0);
  assert_int_equal(
      cn_apply(rt, "erlang", "apply", T(&a, "[calc, add, [4]]"), &out),
      CN_ENOENT);
  cn_buf_free(&a);
  cn_buf_free(&out);
  cn_runtime_free(rt);
}

/* An export may block: cn_apply runs it on the calling thread, which
 * must not be a process's callback. */
static int in_callback_rc;

static int cb_init(cn_proc *self, void *arg, void **state) {
  cn_buf a = CN_BUF_INIT, out = CN_BUF_INIT;
  (void)arg;
  (void)state;
  cn_build(&a, "[1, 2]");
  in_callback_rc =
      cn_apply(cn_proc_runtime(self), "calc", "add", cn_buf_term(&a), &out);
  cn_buf_free(&a);
  cn_buf_free(&out);
  return CN_IGNORE;
}

static const cn_server_ops cb_ops = {.init = cb_init};

static void test_apply_blocking(void **state) {
  cn_runtime *rt = rt_new(1);
  cn_buf a = CN_BUF_INIT, out = CN_BUF_INIT;
  cn_pid pid;
  (void)state;
  assert_int_equal(cn_export(rt, "calc", "add", 2, fn_add, NULL), 0);
  assert_int_equal(cn_export(rt, "t", "block", 0, fn_blocking, NULL), 0);
  assert_int_equal(cn_apply(rt, "t", "block", T(&a, "[]"), &out), CN_RETURN);
  assert_int_equal(cn_match(cn_buf_term(&out), "waited"), 0);
  assert_int_equal(cn_start(rt, &cb_ops, NULL, NULL, &pid), CN_EIGNORE);
  assert_int_equal(in_callback_rc, CN_EDEADLK);
  assert_int_equal(cn_apply(NULL, "t", "block", T(&a, "[]"), &out), CN_EINVAL);
  cn_buf_free(&a);
  cn_buf_free(&out);
  cn_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_apply_classes),
      cmocka_unit_test(test_apply_blocking),
  };
  return run_group("export", tests, NULL, NULL);
}
