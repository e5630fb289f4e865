/* cnode: what every node program needs, above the distribution layer.
 *
 * A node program does what erl does before its first line of user code:
 * it makes its node name from -sname or -name, finds the cookie in
 * ~/.erlang.cookie (creating the file when there is none), starts
 * distribution, starts its servers, and runs until it is told to stop.
 * cn_node_run() does all of it, so that a node is about ten lines of
 * main():
 *
 *   static int start(cn_runtime *rt, void *arg, cn_pid *watch) {
 *     cn_start_options so = {.name = "counter"};
 *     return cn_start(rt, &counter_ops, NULL, &so, watch);
 *   }
 *
 *   int main(int argc, char **argv) {
 *     cn_node_options opts = {.sname = argc > 1 ? argv[1] : "my_node"};
 *     return cn_node_run(&opts, start, NULL) == 0 ? 0 : 1;
 *   }
 *
 * The order, and why.  cn_node_run creates the runtime, then starts
 * distribution (cn_dist_start), then calls the program's start function,
 * then prints the ready line.  The servers start after cn_dist_start:
 *   - so that their init may already reach other nodes (connect, call,
 *     monitor a remote process, join a remote group), which it cannot
 *     before distribution runs;
 *   - so that their pids carry the node's final name and creation, the
 *     ones peers will see;
 *   - and the ready line, printed after both, is the one moment a script
 *     or a supervisor (the BEAM side's port owner) may take the node as
 *     serving.  Between cn_dist_start and the end of the start function a
 *     peer that finds the node in epmd can connect, and a call to a name
 *     not yet registered fails with noproc, as on an Erlang node whose
 *     application has not started yet: wait for the ready line.
 * A program that builds its own main() with cn_runtime_new and
 * cn_dist_start should keep this order.
 *
 * The pieces are exported on their own too: cn_cookie_load (erl's cookie
 * file rules), cn_node_shortname and cn_node_longname (erl's -sname and
 * -name rules).
 */
#ifndef CNODE_NODE_H
#define CNODE_NODE_H

#include "dist.h"
#include "log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The cookie file -------------------------------------------------- */

#define CN_COOKIE_MAX 255       /* bytes of a cookie (cn_dist_options) */
#define CN_COOKIE_NEW_LEN 20    /* letters in a new cookie, as erl makes */
#define CN_COOKIE_PATH_MAX 4096 /* bytes of a cookie file's path */

/* What cn_cookie_load and cn_cookie_read found.  About 4.6 KB; the caller
 * owns it (a local variable will do). */
typedef struct cn_cookie {
  char value[CN_COOKIE_MAX + 1];        /* the cookie, NUL-terminated */
  char path[CN_COOKIE_PATH_MAX];        /* the file it came from (on failure:
                                         * the file at fault, or "") */
  bool created;                         /* this call created path */
  char error[CN_COOKIE_PATH_MAX + 128]; /* on failure: one line, naming
                                         * the file and the reason */
} cn_cookie;

/* Finds the cookie as erl does when not given -setcookie (kernel's
 * auth.erl, OTP 25): it reads $HOME/.erlang.cookie, else
 * $XDG_CONFIG_HOME/erlang/.erlang.cookie ($HOME/.config/erlang/ when
 * XDG_CONFIG_HOME is not set), and when neither file exists it creates
 * the first (20 random letters A-Z from OpenSSL's generator, no newline,
 * mode 0400, created atomically so that an erl starting at the same
 * moment ends up with the same cookie).  A file is refused, as erl
 * refuses it, when group or others may access it, when it is not a
 * regular file, or when it holds anything but one cookie (printable
 * ASCII, then only newlines, carriage returns and spaces).
 *
 * Returns 0 with c->value, c->path and c->created set.  On failure,
 * c->error holds one line for the user, and returns CN_EINVAL (a file
 * that is not a usable cookie file: bad contents, mode, type, or a path
 * too long), CN_ENOENT (neither $HOME nor $XDG_CONFIG_HOME is set, so
 * there is no file to look for), or CN_ESYSTEM (a file could not be
 * read, created or written; the random generator failed).  Not
 * thread-safe against changes of the environment (it reads HOME and
 * XDG_CONFIG_HOME); otherwise thread-safe. */
CN_EXTERN int cn_cookie_load(cn_cookie *c);

/* Reads the cookie file at path with the same checks, and never creates
 * it.  Returns 0 with c->value and c->path set (c->created false), or
 * CN_ENOENT (no such file), CN_EINVAL or CN_ESYSTEM as above, with
 * c->error set.  Thread-safe. */
CN_EXTERN int cn_cookie_read(const char *path, cn_cookie *c);

/* ---- Node names ------------------------------------------------------- */

/* erl -sname NAME: writes NAME@HOST into out (cap bytes, NUL-terminated),
 * HOST being this machine's host name up to its first dot.  name may
 * carry its own @HOST, which must have no dot in it ("NAME@" counts as
 * no host, as for erl).  NAME must be made of letters, digits, '_' and
 * '-', as erl requires; HOST of printable ASCII.  Returns 0, CN_EINVAL
 * (a bad name, or a HOST with a dot), CN_ENOSPC (over cap bytes, or over
 * CN_MAX_NODE_NAME), CN_ENOENT (the host name is empty) or CN_ESYSTEM
 * (gethostname failed).  Thread-safe. */
CN_EXTERN int cn_node_shortname(const char *name, char *out, size_t cap);

/* erl -name NAME: writes NAME@HOST.DOMAIN into out.  name may carry its
 * own @HOST, taken as it is (dots or not).  Otherwise, as erl on Linux
 * finds it: the host name (gethostname) up to its first dot, then the
 * domain from the first of: the line "domain D" in resolv.conf (in
 * $ERL_INET_ETC_DIR when set, as for erl, else /etc); the rest of the
 * host name after its first dot; the rest of the name the resolver gives
 * as the host's canonical name.  Returns as cn_node_shortname, and
 * CN_ENOENT when no domain is found (erl: "Can't set long node name!").
 * May block on the resolver.  Thread-safe, but for changes of the
 * environment (it reads ERL_INET_ETC_DIR). */
CN_EXTERN int cn_node_longname(const char *name, char *out, size_t cap);

/* ---- Running a node --------------------------------------------------- */

/* Starts the program's servers, on the thread that called cn_node_run,
 * after distribution started (see the top of this file).  *watch starts
 * out zeroed, which watches nothing; set it to a pid (normally the top
 * supervisor's) to make the node stop when that process exits, for
 * whatever reason, as an Erlang node stops when its permanent
 * application's top supervisor dies.  (cn_node_run monitors it once start
 * has returned: a process already gone by then stops the node at once,
 * with the reason noproc.)  Returns 0 to run, or an error code (then the
 * node is shut down and cn_node_run returns that code). */
typedef int (*cn_node_start_fn)(cn_runtime *rt, void *arg, cn_pid *watch);

#define CN_NODE_DEFAULT_SHUTDOWN_MS 10000

typedef struct cn_node_options {
  /* The node name, as erl takes it: sname as -sname (cn_node_shortname),
   * or name as -name (cn_node_longname).  Give one of the two. */
  const char *sname;
  const char *name;
  bool no_dist;    /* a named runtime without distribution: no epmd,
                    * no cookie (C-only smoke tests) */
  bool quiet;      /* no ready line on stdout */
  int shutdown_ms; /* what the processes get to stop once the node is
                    * told to; 0: CN_NODE_DEFAULT_SHUTDOWN_MS */
  /* Passed to cn_runtime_new, but for node_name, which is set from sname
   * or name (what it holds is ignored). */
  cn_runtime_options runtime;
  /* Passed to cn_dist_start.  cookie NULL: cn_cookie_load() finds it, as
   * erl does without -setcookie. */
  cn_dist_options dist;
} cn_node_options;

/* Runs a node from start to stop, as main() of a node program:
 *   1. makes the node name and, unless given (or no_dist), finds the
 *      cookie;
 *   2. blocks SIGINT and SIGTERM in the calling thread, so that every
 *      thread the runtime starts inherits the mask and the signals wait
 *      for step 6, and ignores SIGPIPE (a peer that goes away mid-write
 *      must give an error, not kill the program; so must a closed stdout);
 *   3. creates the runtime and starts distribution (unless no_dist);
 *   4. calls start(rt, arg, &watch);
 *   5. logs "ready as NODE on port PORT" at info level and, unless quiet,
 *      prints "cnode: ready as NODE on port PORT" on stdout (port 0 with
 *      no_dist) and flushes it: the one line on stdout, which scripts
 *      wait for;
 *   6. waits for SIGINT or SIGTERM, or for the watched process to exit;
 *   7. shuts the runtime down (cn_runtime_shutdown with shutdown_ms, so
 *      that supervisors stop their children in order), frees it, takes
 *      any SIGINT or SIGTERM still pending, and puts the signal mask and
 *      SIGPIPE's action back as they were.
 * Every step logs what went wrong through the log hook (cnode/log.h), at
 * error level, and "stopped" at info level at the end.
 *
 * Returns 0 after a signal stopped the node; CN_EEXIT when the watched
 * process exited (the node was then shut down); otherwise the error of
 * the step that failed, the node having been shut down: CN_EINVAL (bad
 * options, name or cookie file), an error of cn_node_shortname,
 * cn_node_longname, cn_cookie_load, cn_runtime_new or cn_dist_start, or
 * the one start returned.  start is not called when an earlier step
 * failed.
 *
 * Call it from the main thread, before the program starts threads of its
 * own (threads started earlier do not have SIGINT and SIGTERM blocked, and
 * a signal sent to the process may go to one of them and kill it), and
 * from one thread at a time: it changes process-wide signal state.
 * Threads that start does start inherit the mask; a plain thread that
 * wants the node to stop sends kill(getpid(), SIGTERM), after logging
 * why: a signal the process sent itself is logged at CN_LOG_DEBUG
 * ("SIGTERM (raised by the program): stopping"), one from another process
 * at CN_LOG_INFO ("SIGTERM: stopping"). */
CN_EXTERN int cn_node_run(const cn_node_options *opts, cn_node_start_fn start,
                          void *arg);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_NODE_H */
