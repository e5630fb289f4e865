/* Cluster tests, C node to C node: node monitoring, global and pg between
 * two published runtimes in this process (no BEAM).  Both runtimes run
 * global's full protocol against each other, lockers and all, so this
 * also covers the locker's active side (select_node), which a BEAM peer
 * usually takes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cnode.h>
#include "helpers.h"

static cn_runtime *node_new(char *name, size_t cap, const char *tag,
                            bool published) {
  cn_runtime_options o;
  cn_dist_options d;
  cn_runtime *rt = NULL;
  node_name(name, cap, tag);
  memset(&o, 0, sizeof(o));
  o.schedulers = 2;
  o.node_name = name;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  memset(&d, 0, sizeof(d));
  d.cookie = "cluster-test";
  d.published = published;
  d.handshake_ms = (unsigned)tmo(3000);
  assert_int_equal(cn_dist_start(rt, &d), 0);
  return rt;
}

/* A process that keeps nothing: a member to register and join. */
static const cn_server_ops idle_ops = {.name = "idle"};

/* Receives on the thread until a message matching pattern (no holes)
 * arrives, dropping others; fails after ms. */
static void expect_msg(cn_runtime *rt, const char *pattern, int ms) {
  cn_buf m = CN_BUF_INIT;
  int i;
  for (i = 0; i < ms / 10; i++) {
    if (cn_receive(rt, 10, &m) == 0 && cn_match(cn_buf_term(&m), pattern) == 0)
      break;
  }
  cn_buf_free(&m);
  assert_true(i < ms / 10);
}

/* nodeup and nodedown reach a subscribed thread, for a visible
 * connection; a hidden one is reported only with CN_NODES_ALL. */
static void test_monitor_nodes(void **st) {
  char a[128], b[128], h[128], pat[300];
  cn_runtime *ra = node_new(a, sizeof(a), "mna", true);
  cn_runtime *rb = node_new(b, sizeof(b), "mnb", true);
  cn_runtime *rh = node_new(h, sizeof(h), "mnh", false);
  cn_pid me;
  const char *names[4];
  (void)st;
  assert_int_equal(cn_self(ra, &me), 0);
  assert_int_equal(cn_dist_monitor_nodes(ra, me, true, 0), 0);
  assert_int_equal(cn_dist_connect(ra, b, tmo(5000)), 0);
  snprintf(pat, sizeof(pat), "{nodeup, '%s'}", b);
  expect_msg(ra, pat, tmo(5000));
  assert_int_equal(cn_dist_nodes_of(ra, 0, names, 4), 1);
  assert_string_equal(names[0], b);
  /* A hidden node: no nodeup for the default subscription... */
  assert_int_equal(cn_dist_monitor_nodes(ra, me, true, CN_NODES_ALL), 0);
  assert_int_equal(cn_dist_connect(ra, h, tmo(5000)), 0);
  snprintf(pat, sizeof(pat), "{nodeup, '%s'}", h);
  expect_msg(ra, pat, tmo(5000));
  assert_int_equal(cn_dist_nodes_of(ra, 0, names, 4), 1);
  assert_int_equal(cn_dist_nodes_of(ra, CN_NODES_ALL, names, 4), 2);
  assert_int_equal(cn_dist_monitor_nodes(ra, me, false, CN_NODES_ALL), 0);
  assert_int_equal(cn_dist_monitor_nodes(ra, me, false, CN_NODES_ALL),
                   CN_ENOENT);
  /* ... and nodedown when the connection goes. */
  assert_int_equal(cn_dist_disconnect(ra, b), 0);
  snprintf(pat, sizeof(pat), "{nodedown, '%s'}", b);
  expect_msg(ra, pat, tmo(5000));
  assert_int_equal(cn_dist_monitor_nodes(ra, me, false, 0), 0);
  cn_runtime_free(rh);
  cn_runtime_free(rb);
  cn_runtime_free(ra);
}

/* Two published C nodes sync, see each other's global names, and a name
 * goes with its process and with its node. */
static void test_global_two_c_nodes(void **st) {
  char a[128], b[128];
  cn_runtime *ra = node_new(a, sizeof(a), "gla", true);
  cn_runtime *rb = node_new(b, sizeof(b), "glb", true);
  cn_pid pa, pb, got;
  int i;
  (void)st;
  assert_int_equal(cn_start(ra, &idle_ops, NULL, NULL, &pa), 0);
  assert_int_equal(cn_start(rb, &idle_ops, NULL, NULL, &pb), 0);
  assert_int_equal(cn_global_register(ra, "early_a", pa), 0);
  assert_int_equal(cn_global_register(ra, "early_a", pa), CN_EEXIST);
  assert_int_equal(cn_dist_connect(ra, b, tmo(5000)), 0);
  assert_int_equal(cn_global_sync(ra, tmo(10000)), 0);
  assert_int_equal(cn_global_sync(rb, tmo(10000)), 0);
  /* The name registered before the connection reached b. */
  for (i = 0; i < tmo(5000) / 10 && cn_global_whereis(rb, "early_a", &got); i++)
    usleep(10000);
  assert_int_equal(cn_global_whereis(rb, "early_a", &got), 0);
  assert_true(cn_pid_equal(&got, &pa));
  /* One registered after: on both at once (the lock covers both). */
  assert_int_equal(cn_global_register(rb, "late_b", pb), 0);
  assert_int_equal(cn_global_whereis(ra, "late_b", &got), 0);
  assert_true(cn_pid_equal(&got, &pb));
  assert_int_equal(cn_global_register(ra, "late_b", pa), CN_EEXIST);
  /* Unregister, on both. */
  assert_int_equal(cn_global_unregister(rb, "late_b"), 0);
  assert_int_equal(cn_global_whereis(ra, "late_b", &got), CN_ENOENT);
  /* The process dies: its name goes on both nodes. */
  assert_int_equal(cn_stop(ra, cn_to_pid(pa), NULL, tmo(2000)), 0);
  for (i = 0; i < tmo(5000) / 10 && cn_global_whereis(rb, "early_a", &got) == 0;
       i++)
    usleep(10000);
  assert_int_equal(cn_global_whereis(rb, "early_a", &got), CN_ENOENT);
  assert_int_equal(cn_global_whereis(ra, "early_a", &got), CN_ENOENT);
  /* The node goes: its names go. */
  assert_int_equal(cn_global_register(rb, "of_b", pb), 0);
  assert_int_equal(cn_global_whereis(ra, "of_b", &got), 0);
  cn_runtime_free(rb);
  for (i = 0; i < tmo(5000) / 10 && cn_global_whereis(ra, "of_b", &got) == 0;
       i++)
    usleep(10000);
  assert_int_equal(cn_global_whereis(ra, "of_b", &got), CN_ENOENT);
  cn_runtime_free(ra);
}

/* The same name registered in two partitions: when they meet, the
 * smaller node resolves the conflict with the default method
 * (random_exit_name): the pid of the smaller node keeps the name on both,
 * and the other process is killed. */
static void test_global_name_conflict(void **st) {
  char a[128], b[128];
  cn_runtime *ra = node_new(a, sizeof(a), "cfa", true);
  cn_runtime *rb = node_new(b, sizeof(b), "cfb", true);
  cn_pid pa, pb, got;
  int i;
  (void)st;
  assert_true(strcmp(a, b) < 0);
  assert_int_equal(cn_start(ra, &idle_ops, NULL, NULL, &pa), 0);
  assert_int_equal(cn_start(rb, &idle_ops, NULL, NULL, &pb), 0);
  assert_int_equal(cn_global_register(ra, "both", pa), 0);
  assert_int_equal(cn_global_register(rb, "both", pb), 0);
  assert_int_equal(cn_dist_connect(ra, b, tmo(5000)), 0);
  assert_int_equal(cn_global_sync(ra, tmo(10000)), 0);
  assert_int_equal(cn_global_sync(rb, tmo(10000)), 0);
  for (i = 0; i < tmo(5000) / 10 && cn_is_alive(rb, pb); i++)
    usleep(10000);
  assert_false(cn_is_alive(rb, pb));
  assert_true(cn_is_alive(ra, pa));
  for (i = 0;
       i < tmo(5000) / 10 &&
       !(cn_global_whereis(rb, "both", &got) == 0 && cn_pid_equal(&got, &pa));
       i++)
    usleep(10000);
  assert_int_equal(cn_global_whereis(rb, "both", &got), 0);
  assert_true(cn_pid_equal(&got, &pa));
  assert_int_equal(cn_global_whereis(ra, "both", &got), 0);
  assert_true(cn_pid_equal(&got, &pa));
  cn_runtime_free(rb);
  cn_runtime_free(ra);
}

static size_t members(cn_runtime *rt, const char *scope, const char *group,
                      bool local, cn_pid *pids, size_t cap) {
  cn_buf g = CN_BUF_INIT;
  size_t n;
  assert_int_equal(cn_put_atom(&g, group), 0);
  n = cn_pg_get_members(rt, scope, cn_buf_term(&g), local, pids, cap);
  cn_buf_free(&g);
  return n;
}

static void wait_members(cn_runtime *rt, const char *scope, const char *group,
                         size_t want) {
  cn_pid pids[8];
  int i;
  for (i = 0;
       i < tmo(5000) / 10 && members(rt, scope, group, false, pids, 8) != want;
       i++)
    usleep(10000);
  assert_int_equal(members(rt, scope, group, false, pids, 8), want);
}

/* pg between two C nodes: joins and leaves both ways, a member's death,
 * the other node's going, the bookkeeping of local members and groups. */
static void test_pg_two_c_nodes(void **st) {
  char a[128], b[128];
  cn_runtime *ra = node_new(a, sizeof(a), "pga", true);
  cn_runtime *rb = node_new(b, sizeof(b), "pgb", true);
  cn_buf g = CN_BUF_INIT, groups = CN_BUF_INIT;
  cn_pid pa, pb, pids[8];
  (void)st;
  assert_int_equal(cn_put_atom(&g, "room"), 0);
  assert_int_equal(cn_pg_start_scope(ra, "pg"), 0);
  assert_int_equal(cn_pg_start_scope(ra, "pg"), CN_EEXIST);
  assert_int_equal(cn_pg_start_scope(rb, "pg"), 0);
  assert_int_equal(cn_start(ra, &idle_ops, NULL, NULL, &pa), 0);
  assert_int_equal(cn_start(rb, &idle_ops, NULL, NULL, &pb), 0);
  /* Joined before the nodes meet: sent in the discover's sync. */
  assert_int_equal(cn_pg_join(ra, "pg", cn_buf_term(&g), pa), 0);
  assert_int_equal(cn_pg_join(ra, "nope", cn_buf_term(&g), pa), CN_ENOENT);
  assert_int_equal(cn_pg_join(ra, "pg", cn_buf_term(&g), pb), CN_EINVAL);
  assert_int_equal(cn_dist_connect(ra, b, tmo(5000)), 0);
  wait_members(rb, "pg", "room", 1);
  assert_int_equal(members(rb, "pg", "room", false, pids, 8), 1);
  assert_true(cn_pid_equal(&pids[0], &pa));
  assert_int_equal(members(rb, "pg", "room", true, pids, 8), 0);
  /* Joined after: sent as a join. */
  assert_int_equal(cn_pg_join(rb, "pg", cn_buf_term(&g), pb), 0);
  assert_int_equal(members(rb, "pg", "room", true, pids, 8), 1);
  wait_members(ra, "pg", "room", 2);
  assert_int_equal(cn_pg_which_groups(ra, "pg", &groups), 0);
  assert_int_equal(cn_match(cn_buf_term(&groups), "[room]"), 0);
  /* Twice in a group, as in OTP; a leave takes one. */
  assert_int_equal(cn_pg_join(rb, "pg", cn_buf_term(&g), pb), 0);
  wait_members(ra, "pg", "room", 3);
  assert_int_equal(cn_pg_leave(rb, "pg", cn_buf_term(&g), pb), 0);
  wait_members(ra, "pg", "room", 2);
  /* A member that dies leaves, here and there. */
  assert_int_equal(cn_stop(rb, cn_to_pid(pb), NULL, tmo(2000)), 0);
  wait_members(rb, "pg", "room", 1);
  wait_members(ra, "pg", "room", 1);
  assert_int_equal(cn_pg_leave(rb, "pg", cn_buf_term(&g), pb), CN_ENOENT);
  /* The other node goes: its members go. */
  cn_runtime_free(ra);
  wait_members(rb, "pg", "room", 0);
  cn_buf_reset(&groups);
  assert_int_equal(cn_pg_which_groups(rb, "pg", &groups), 0);
  assert_int_equal(cn_match(cn_buf_term(&groups), "[]"), 0);
  cn_runtime_free(rb);
  cn_buf_free(&g);
  cn_buf_free(&groups);
}

/* A hidden node has no global; calls say so. */
static void test_hidden_no_global(void **st) {
  char a[128];
  cn_runtime *ra = node_new(a, sizeof(a), "hng", false);
  cn_pid p;
  (void)st;
  assert_int_equal(cn_global_whereis(ra, "x", &p), CN_ENOTSUP);
  assert_int_equal(cn_whereis(ra, "global_name_server", &p), CN_ENOENT);
  cn_runtime_free(ra);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_monitor_nodes),
      cmocka_unit_test(test_global_two_c_nodes),
      cmocka_unit_test(test_global_name_conflict),
      cmocka_unit_test(test_pg_two_c_nodes),
      cmocka_unit_test(test_hidden_no_global),
  };
  return cmocka_run_group_tests_name("cluster", tests, NULL, NULL);
}
