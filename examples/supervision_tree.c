/* supervision_tree: a supervisor of supervisors, crashed on purpose.
 *
 *   root (one_for_one)
 *   |-- kv        a worker holding one integer, registered as "kv"
 *   `-- store     a supervisor (rest_for_one)
 *       |-- db        registered as "db"
 *       `-- cache     registered as "cache"; it depends on db
 *
 * The tree is described by an Erlang term, the same one an Erlang
 * supervisor's init/1 would return.  Its start MFAs name C modules: the
 * "service" server, registered by its callbacks (cn_server_register), so
 * that {service, start_link, [{local, Name}, Name]} starts and registers
 * it with no start function of ours; and "supervisor", a start function
 * registered with cn_module_register, which starts a nested supervisor
 * from the spec in its args.
 *
 * main() kills kv and checks that root restarted it (with a fresh state);
 * kills db and checks that store restarted db and then cache (rest_for_one)
 * while kv kept running; asks root for its children with the same calls
 * Erlang's supervisor module makes; then stops root, which shuts the tree
 * down in reverse start order, and checks the order the services saw.
 *
 * Note that an exit signal from main() would not do to crash a service:
 * services trap exits, so a signal from anyone but their parent arrives as
 * a message.  kill cannot be trapped; {crash, Reason} makes one stop.
 *
 *   cc supervision_tree.c $(pkg-config --cflags --libs cnode)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#endif

#include <cnode.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- The service: a worker that holds one integer ---------------------- */

/* Each service notes its name here when it terminates, so that main() can
 * check the shutdown order.  Services run on scheduler threads. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char stopped[256];

typedef struct service {
  char name[32];
  int64_t n;
} service;

static int service_init(cn_proc *self, void *arg, void **state) {
  service *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return CN_STOP;
  /* arg: the start MFA's Arg (an atom here), valid while init runs. */
  if (cn_get_atom(*(const cn_term *)arg, s->name, sizeof(s->name)) != 0) {
    free(s);
    return CN_STOP;
  }
  /* Trap exits, so that the supervisor's shutdown runs terminate. */
  cn_trap_exit(self, true, NULL);
  *state = s;
  return CN_NOREPLY;
}

/* get -> {ok, N};  {add, K} -> {ok, N + K}. */
static int service_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                        cn_buf *reply) {
  service *s = state;
  int64_t k;
  if (cn_match(req, "{add, ~i}", &k) == 0)
    s->n += k;
  return cn_build(reply, "{ok, ~i}", s->n) == 0 ? CN_REPLY : CN_STOP;
}

/* {crash, Reason}: stop with that reason, as a bug would. */
static int service_cast(cn_proc *self, void *state, cn_term msg) {
  cn_term reason;
  if (cn_match(msg, "{crash, ~t}", &reason) != 0)
    return CN_NOREPLY;
  cn_set_reason_term(self, reason);
  return CN_STOP;
}

static void service_terminate(cn_proc *self, void *state, cn_term reason) {
  service *s = state;
  pthread_mutex_lock(&log_mu);
  snprintf(stopped + strlen(stopped), sizeof(stopped) - strlen(stopped), "%s ",
           s->name);
  pthread_mutex_unlock(&log_mu);
}

/* free_state runs on every exit, also when a kill skips terminate. */
static void service_free(void *state) { free(state); }

static const cn_server_ops service_ops = {
    .name = "service",
    .init = service_init,
    .handle_call = service_call,
    .handle_cast = service_cast,
    .terminate = service_terminate,
    .free_state = service_free,
};

/* The "supervisor" module: {supervisor, start_link, [Name, Spec]}. */
static int supervisor_start(cn_runtime *rt, cn_term args, void *arg,
                            cn_pid *pid, cn_buf *reason) {
  char name[32];
  cn_term spec;
  cn_start_options opts = {.name = name, .reason = reason};

  if (cn_match(args, "[~a, ~t]", name, sizeof(name), &spec) != 0) {
    cn_build(reason, "{badarg, ~t}", args);
    return CN_EINVAL;
  }
  return cn_supervisor_start_link(rt, spec, &opts, pid);
}

/* ---- main(): a plain thread ------------------------------------------- */

#define TREE                                                                   \
  "{#{strategy => one_for_one, intensity => 5, period => 10},"                 \
  " [#{id => kv, start => {service, start_link, [{local, kv}, kv]}},"          \
  "  #{id => store, type => supervisor,"                                       \
  "    start => {supervisor, start_link, [store,"                              \
  "      {#{strategy => rest_for_one, intensity => 5, period => 10},"          \
  "       [#{id => db, start => {service, start_link, [{local, db}, db]}},"    \
  "        #{id => cache, start => {service, start_link, [{local, cache}, "    \
  "cache]}}]}]}}]}"

static int failures;

static void check(int ok, const char *what) {
  printf("supervision_tree: %s: %s\n", what, ok ? "ok" : "FAILED");
  if (!ok)
    failures++;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits up to 2 s for name to be registered by a process other than old:
 * a restart.  Returns the new pid in *now. */
static int restarted(cn_runtime *rt, const char *name, cn_pid old,
                     cn_pid *now) {
  int i;
  for (i = 0; i < 2000; i++) {
    if (cn_whereis(rt, name, now) == 0 && !cn_pid_equal(now, &old))
      return 1;
    sleep_ms(1);
  }
  return 0;
}

/* Calls dest with a request from fmt; prints the reply; returns 0 or an
 * error.  The reply stays in *reply. */
static int call(cn_runtime *rt, cn_dest dest, cn_buf *reply, const char *fmt,
                ...) {
  cn_buf req = CN_BUF_INIT, text = CN_BUF_INIT;
  va_list ap;
  int err;

  va_start(ap, fmt);
  err = cn_vbuild(&req, fmt, ap);
  va_end(ap);
  if (err == 0)
    err = cn_call(rt, dest, cn_buf_term(&req), 5000, reply);
  if (err == 0 && cn_term_print(cn_buf_term(&req), &text) == 0 &&
      cn_buf_append(&text, " -> ", 4) == 0 &&
      cn_term_print(cn_buf_term(reply), &text) == 0)
    printf("  %s\n", text.data);
  cn_buf_free(&req);
  cn_buf_free(&text);
  return err;
}

int main(void) {
  cn_runtime *rt;
  cn_buf spec = CN_BUF_INIT, reply = CN_BUF_INIT, why = CN_BUF_INIT;
  cn_start_options opts = {.name = "root", .reason = &why};
  cn_pid root, kv, kv2, store, db, db2, cache, cache2;
  int64_t n = -1;
  int err;

  if ((err = cn_runtime_new(NULL, &rt)) != 0) {
    fprintf(stderr, "supervision_tree: cn_runtime_new: %s\n", cn_strerror(err));
    return 1;
  }
  if ((err = cn_server_register(rt, &service_ops)) != 0 ||
      (err = cn_module_register(rt, "supervisor", supervisor_start, NULL)) !=
          0 ||
      (err = cn_build(&spec, TREE)) != 0) {
    fprintf(stderr, "supervision_tree: setup: %s\n", cn_strerror(err));
    cn_runtime_free(rt);
    return 1;
  }

  /* The whole tree is running when this returns. */
  err = cn_supervisor_start(rt, cn_buf_term(&spec), &opts, &root);
  if (err != 0) {
    cn_buf text = CN_BUF_INIT;
    cn_term_print(cn_buf_term(&why), &text);
    fprintf(stderr, "supervision_tree: start: %s %s\n", cn_strerror(err),
            text.data ? text.data : "");
    cn_buf_free(&text);
    cn_runtime_free(rt);
    return 1;
  }
  cn_whereis(rt, "kv", &kv);
  cn_whereis(rt, "store", &store);
  cn_whereis(rt, "db", &db);
  cn_whereis(rt, "cache", &cache);
  printf("supervision_tree: started\n");
  call(rt, cn_to_name("root"), &reply, "which_children");

  /* 1. kv dies (an exit signal kill cannot be trapped).  root restarts
   *    it, with a fresh state. */
  call(rt, cn_to_name("kv"), &reply, "{add, ~i}", (int64_t)42);
  cn_buf_reset(&why);
  cn_build(&why, "kill");
  cn_exit(rt, kv, cn_buf_term(&why));
  check(restarted(rt, "kv", kv, &kv2), "kv restarted by root");
  if (call(rt, cn_to_name("kv"), &reply, "get") == 0)
    cn_match(cn_buf_term(&reply), "{ok, ~i}", &n);
  check(n == 0, "the new kv starts from 0");

  /* 2. db crashes: store (rest_for_one) restarts db, then cache, which
   *    was started after it.  kv and store itself are untouched. */
  cn_buf_reset(&why);
  cn_build(&why, "{crash, on_purpose}");
  cn_cast(rt, cn_to_pid(db), cn_buf_term(&why));
  check(restarted(rt, "db", db, &db2), "db restarted by store");
  check(restarted(rt, "cache", cache, &cache2),
        "cache restarted after db (rest_for_one)");
  check(cn_is_alive(rt, kv2) && cn_is_alive(rt, store),
        "kv and store kept running");

  /* 3. The calls Erlang's supervisor module makes, answered alike. */
  call(rt, cn_to_name("root"), &reply, "count_children");
  check(cn_match(cn_buf_term(&reply),
                 "[{specs, 2}, {active, 2}, {supervisors, 1}, {workers, 1}]") ==
            0,
        "count_children");
  call(rt, cn_to_name("store"), &reply, "which_children");
  {
    cn_buf want = CN_BUF_INIT;
    cn_build(&want,
             "[{cache, ~p, worker, [service]}, {db, ~p, worker, "
             "[service]}]",
             &cache2, &db2);
    check(cn_term_equal(cn_buf_term(&reply), cn_buf_term(&want)),
          "which_children of store");
    cn_buf_free(&want);
  }
  call(rt, cn_to_name("root"), &reply, "{terminate_child, kv}");
  call(rt, cn_to_name("root"), &reply, "{restart_child, kv}");
  check(cn_match(cn_buf_term(&reply), "{ok, _}") == 0, "restart_child kv");

  /* 4. Stop root: children go in reverse start order, each tree likewise:
   *    store (cache, then db), then kv. */
  pthread_mutex_lock(&log_mu);
  stopped[0] = 0;
  pthread_mutex_unlock(&log_mu);
  err = cn_stop(rt, cn_to_pid(root), NULL, 5000);
  pthread_mutex_lock(&log_mu);
  printf("supervision_tree: stopped: %s\n", stopped);
  check(err == 0 && strcmp(stopped, "cache db kv ") == 0,
        "shutdown in reverse start order");
  pthread_mutex_unlock(&log_mu);
  check(!cn_is_alive(rt, store) && !cn_is_alive(rt, db2), "tree is gone");

  cn_buf_free(&spec);
  cn_buf_free(&reply);
  cn_buf_free(&why);
  cn_runtime_free(rt);
  if (failures) {
    fprintf(stderr, "supervision_tree: FAILED (%d checks)\n", failures);
    return 1;
  }
  printf("supervision_tree: ok\n");
  return 0;
}
