/* The node layer: erl's -sname and -name rules, and cn_node_run, a node
 * program's main() from the name to the clean stop.  See cnode/node.h. */
#include <cnode.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define DOMAIN "cnode" /* the log domain */

/* How often the waiting thread looks for the watched process's DOWN while
 * it waits for a signal (see wait_for_end). */
#define WATCH_MS 250

/* ---- Node names ------------------------------------------------------- */

/* net_kernel:valid_name_head/1: ^[0-9A-Za-z_\-]+$ */
static bool valid_head(const char *s, size_t n) {
  size_t i;
  if (n == 0)
    return false;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
          (c >= 'a' && c <= 'z') || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* net_kernel:validate_hostname/1 allows any character from '!' to U+00FF;
 * we take printable ASCII without '@', since a second '@' would make the
 * name ambiguous to every tool that splits it at the first. */
static bool valid_host(const char *s) {
  if (!*s)
    return false;
  for (; *s; s++) {
    if (*s < '!' || *s > '~' || *s == '@')
      return false;
  }
  return true;
}

/* gethostname(), whole.  Returns 0, CN_ESYSTEM or CN_ENOENT (empty). */
static int host_name(char *out, size_t cap) {
  if (gethostname(out, cap) != 0)
    return CN_ESYSTEM;
  out[cap - 1] = '\0';
  return out[0] ? 0 : CN_ENOENT;
}

/* Writes head (n bytes) @ host [. domain] into out. */
static int join_name(char *out, size_t cap, const char *head, size_t n,
                     const char *host, const char *domain) {
  int len;
  if (!valid_host(host) || (domain && !valid_host(domain)))
    return CN_EINVAL;
  len = snprintf(out, cap, "%.*s@%s%s%s", (int)n, head, host, domain ? "." : "",
                 domain ? domain : "");
  if (len < 0)
    return CN_EINVAL;
  if ((size_t)len >= cap || len > CN_MAX_NODE_NAME) {
    if (cap > 0)
      out[0] = '\0';
    return CN_ENOSPC;
  }
  return 0;
}

/* Splits name at its first '@': the head's length, and the host after it,
 * or NULL when there is none ("NAME@" has none, as net_kernel's
 * create_hostpart/2 reads it). */
static const char *split(const char *name, size_t *head_len) {
  const char *at = strchr(name, '@');
  *head_len = at ? (size_t)(at - name) : strlen(name);
  return at && at[1] ? at + 1 : NULL;
}

int cn_node_shortname(const char *name, char *out, size_t cap) {
  char host[256];
  const char *given;
  size_t n;
  int err;

  if (!name || !out || cap == 0)
    return CN_EINVAL;
  given = split(name, &n);
  if (!valid_head(name, n))
    return CN_EINVAL;
  if (given) {
    if (strchr(given, '.'))
      return CN_EINVAL; /* erl: "Can't set short node name!" */
    return join_name(out, cap, name, n, given, NULL);
  }
  if ((err = host_name(host, sizeof(host))) != 0)
    return err;
  host[strcspn(host, ".")] = '\0';
  if (!host[0])
    return CN_ENOENT;
  return join_name(out, cap, name, n, host, NULL);
}

/* The last "domain D" line of resolv.conf, as inet_parse:resolv/2 and
 * inet_db read it, into out; false when there is none. */
static bool resolv_domain(char *out, size_t cap) {
  const char *dir = getenv("ERL_INET_ETC_DIR");
  char path[4096], line[1024], *word, *save;
  bool found = false;
  FILE *f;

  snprintf(path, sizeof(path), "%s/resolv.conf", dir && *dir ? dir : "/etc");
  if (!(f = fopen(path, "re")))
    return false;
  while (fgets(line, sizeof(line), f)) {
    word = strtok_r(line, " \t\r\n", &save);
    if (!word || strcmp(word, "domain") != 0)
      continue;
    if ((word = strtok_r(NULL, " \t\r\n", &save)) && *word != '#' &&
        *word != ';' && strlen(word) < cap) {
      memcpy(out, word, strlen(word) + 1);
      found = true;
    }
  }
  fclose(f);
  return found;
}

/* The domain in the resolver's canonical name for host, into out. */
static bool canonical_domain(const char *host, char *out, size_t cap) {
  struct addrinfo hints, *res = NULL;
  const char *dot;
  bool found = false;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_CANONNAME;
  if (getaddrinfo(host, NULL, &hints, &res) != 0)
    return false;
  if (res && res->ai_canonname && (dot = strchr(res->ai_canonname, '.')) &&
      dot[1] && strlen(dot + 1) < cap) {
    memcpy(out, dot + 1, strlen(dot + 1) + 1);
    found = true;
  }
  freeaddrinfo(res);
  return found;
}

int cn_node_longname(const char *name, char *out, size_t cap) {
  char host[256], domain[256];
  const char *given;
  char *dot;
  size_t n;
  int err;

  if (!name || !out || cap == 0)
    return CN_EINVAL;
  given = split(name, &n);
  if (!valid_head(name, n))
    return CN_EINVAL;
  if (given)
    return join_name(out, cap, name, n, given, NULL);
  if ((err = host_name(host, sizeof(host))) != 0)
    return err;
  /* inet_config:init/0: the host name's own domain first, then
   * resolv.conf's, which replaces it; when there is still none (Linux),
   * the canonical name's. */
  dot = strchr(host, '.');
  if (resolv_domain(domain, sizeof(domain)))
    ;
  else if (dot && dot[1])
    snprintf(domain, sizeof(domain), "%s", dot + 1);
  else if (!canonical_domain(host, domain, sizeof(domain)))
    return CN_ENOENT; /* erl: "Can't set long node name!" */
  if (dot)
    *dot = '\0';
  if (!host[0])
    return CN_ENOENT;
  return join_name(out, cap, name, n, host, domain);
}

/* ---- Running a node --------------------------------------------------- */

/* Logs what err says, after what (a printf format). */
static void log_err(int err, const char *what, const char *arg) {
  cn_log(CN_LOG_ERROR, DOMAIN, "%s%s: %s (%s)", what, arg ? arg : "",
         cn_strerror(err), cn_err_name(err));
}

/* Logs that the watched process exited, with its reason. */
static void log_watched_exit(cn_pid pid, cn_term reason) {
  cn_buf p = CN_BUF_INIT, r = CN_BUF_INIT, b = CN_BUF_INIT;
  if (cn_build(&b, "~p", &pid) != 0 || cn_term_print(cn_buf_term(&b), &p) != 0)
    cn_buf_free(&p);
  if (reason.len == 0 || cn_term_print(reason, &r) != 0)
    cn_buf_free(&r);
  cn_log(CN_LOG_ERROR, DOMAIN,
         "the watched process %s exited, so the node "
         "stops: %s",
         p.data ? p.data : "?", r.data ? r.data : "?");
  cn_buf_free(&p);
  cn_buf_free(&r);
  cn_buf_free(&b);
}

/* Waits for SIGINT or SIGTERM (blocked in every thread) or, when watching,
 * for the watched process's DOWN, whichever comes first.  Returns 0 for a
 * signal, CN_EEXIT for the DOWN, CN_ESYSTEM when sigtimedwait fails.
 *
 * The thread has two things to wait for and no call that waits for both:
 * sigtimedwait sees only signals, cn_receive only messages.  It waits for
 * signals, which answer at once, and looks at its mailbox for the DOWN
 * every WATCH_MS; that only matters when the node is failing anyway, where
 * a quarter of a second is no delay.  A signal thread that woke this one
 * through the runtime would answer both at once, at the price of a second
 * thread to stop and join. */
static int wait_for_end(cn_runtime *rt, const sigset_t *sigs,
                        const cn_pid *watch, const cn_ref *mon) {
  struct timespec tick = {WATCH_MS / 1000, (WATCH_MS % 1000) * 1000000L};
  cn_buf msg = CN_BUF_INIT;
  cn_term reason;
  cn_ref ref;
  int sig, rc = 0;

  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    sig = sigtimedwait(sigs, &si, watch ? &tick : NULL);
    if (sig == SIGINT || sig == SIGTERM) {
      /* One the program raised itself (init:stop, --stdin-eof, a thread's
       * kill(getpid(), ...)) comes after the line that said why: logging
       * "SIGTERM" at info would name a signal nobody sent. */
      bool own = si.si_code == SI_USER && si.si_pid == getpid();
      cn_log(own ? CN_LOG_DEBUG : CN_LOG_INFO, DOMAIN, "%s%s: stopping",
             sig == SIGINT ? "SIGINT" : "SIGTERM",
             own ? " (raised by the program)" : "");
      break;
    }
    if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      cn_log(CN_LOG_ERROR, DOMAIN, "sigtimedwait: %s", strerror(errno));
      rc = CN_ESYSTEM;
      break;
    }
    while (watch && cn_receive(rt, 0, &msg) == 0) {
      if (cn_match(cn_buf_term(&msg), "{'DOWN', ~r, process, _, ~t}", &ref,
                   &reason) == 0 &&
          cn_ref_equal(&ref, mon)) {
        log_watched_exit(*watch, reason);
        cn_buf_free(&msg);
        return CN_EEXIT;
      }
    }
  }
  cn_buf_free(&msg);
  return rc;
}

/* init:stop/0, exported while cn_node_run runs the node: a clean stop,
 * as SIGTERM asks for one (wait_for_end takes it).  As on the BEAM it
 * answers ok at once and the node stops a moment later, so that the
 * answer reaches the caller (an erl_call, an rpc) before the node closes
 * its connections: the signal is raised 100 ms later, by a thread of its
 * own. */
static void *stop_later(void *arg) {
  (void)arg;
  uv_sleep(100);
  kill(getpid(), SIGTERM);
  return NULL;
}

static int init_stop(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
  pthread_attr_t at;
  pthread_t th;
  (void)rt;
  (void)args;
  (void)arg;
  cn_log(CN_LOG_INFO, DOMAIN, "init:stop() called: stopping");
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&th, &at, stop_later, NULL) != 0)
    kill(getpid(), SIGTERM);
  pthread_attr_destroy(&at);
  return cn_put_atom(out, "ok") == 0 ? CN_RETURN : CN_ERROR;
}

/* Exports init:stop/0 (unless the program has its own: CN_EEXIST is
 * fine).  Returns 0 or CN_ENOMEM. */
static int export_init_stop(cn_runtime *rt) {
  int rc = cn_export(rt, "init", "stop", 0, init_stop, NULL);
  return rc == CN_EEXIST ? 0 : rc;
}

/* Steps 3 to 6 of cn_node_run, with the signals blocked. */
static int run(const cn_node_options *opts, const char *node,
               const cn_dist_options *dopt, const sigset_t *sigs,
               cn_node_start_fn start, void *arg) {
  static const cn_pid none;
  cn_runtime_options ro = opts->runtime;
  cn_runtime *rt = NULL;
  cn_pid watch = none;
  bool watching = false;
  cn_ref mon;
  int err;

  memset(&mon, 0, sizeof(mon));
  ro.node_name = node;
  if ((err = cn_runtime_new(&ro, &rt)) != 0) {
    log_err(err, "cannot create the runtime for ", node);
    return err;
  }
  if (!opts->no_dist && (err = cn_dist_start(rt, dopt)) != 0) {
    cn_log(CN_LOG_ERROR, DOMAIN, "cannot start distribution as %s: %s (%s)%s",
           node, cn_strerror(err), cn_err_name(err),
           err == CN_EEXIST    ? "; is the name taken in epmd?"
           : err == CN_ENOCONN ? "; epmd could not be reached or started"
                               : "");
  } else if ((err = export_init_stop(rt)) != 0) {
    log_err(err, "cannot export init:stop/0", NULL);
  } else if ((err = start(rt, arg, &watch)) != 0) {
    log_err(err, "the node's start function failed", NULL);
  } else {
    watching = memcmp(&watch, &none, sizeof(none)) != 0;
    if (watching && (err = cn_monitor(rt, cn_to_pid(watch), &mon)) != 0)
      log_err(err, "cannot monitor the watched process", NULL);
  }
  if (err == 0) {
    unsigned port = opts->no_dist ? 0u : (unsigned)cn_dist_port(rt);
    cn_log(CN_LOG_INFO, DOMAIN, "ready as %s on port %u", node, port);
    if (!opts->quiet) {
      printf("cnode: ready as %s on port %u\n", node, port);
      fflush(stdout);
    }
    err = wait_for_end(rt, sigs, watching ? &watch : NULL, &mon);
  }
  cn_runtime_shutdown(rt, opts->shutdown_ms ? opts->shutdown_ms
                                            : CN_NODE_DEFAULT_SHUTDOWN_MS);
  cn_runtime_free(rt);
  return err;
}

int cn_node_run(const cn_node_options *opts, cn_node_start_fn start,
                void *arg) {
  char node[CN_MAX_NODE_NAME + 1];
  struct timespec zero = {0, 0};
  struct sigaction ign, old_pipe;
  sigset_t sigs, old_mask;
  cn_dist_options dopt;
  cn_cookie cookie;
  int err;

  if (!opts || !start || !opts->sname == !opts->name) {
    cn_log(CN_LOG_ERROR, DOMAIN, "cn_node_run: %s",
           !opts || !start ? "no options or no start function"
                           : "give sname or name (one of the two)");
    return CN_EINVAL;
  }
  err = opts->sname ? cn_node_shortname(opts->sname, node, sizeof(node))
                    : cn_node_longname(opts->name, node, sizeof(node));
  if (err != 0) {
    cn_log(CN_LOG_ERROR, DOMAIN, "cannot make a node name from %s '%s': %s%s",
           opts->sname ? "sname" : "name",
           opts->sname ? opts->sname : opts->name, cn_strerror(err),
           err == CN_EINVAL ? " (NAME is letters, digits, _ and -; HOST has "
                              "no dots for a short name)"
           : err == CN_ENOENT && opts->name
               ? " (no domain found: give NAME@HOST.DOMAIN)"
               : "");
    return err;
  }
  dopt = opts->dist;
  if (!opts->no_dist && !dopt.cookie) {
    if ((err = cn_cookie_load(&cookie)) != 0) {
      cn_log(CN_LOG_ERROR, DOMAIN, "%s", cookie.error);
      return err;
    }
    if (cookie.created)
      cn_log(CN_LOG_INFO, DOMAIN, "created the cookie file %s", cookie.path);
    dopt.cookie = cookie.value;
  }

  /* Block the stop signals before any thread exists, so that every thread
   * the runtime starts inherits the mask and only sigtimedwait here ever
   * takes them. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  if ((err = pthread_sigmask(SIG_BLOCK, &sigs, &old_mask)) != 0) {
    cn_log(CN_LOG_ERROR, DOMAIN, "pthread_sigmask: %s", strerror(err));
    return CN_ESYSTEM;
  }
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGPIPE, &ign, &old_pipe);

  err = run(opts, node, &dopt, &sigs, start, arg);

  /* A second Ctrl-C during the shutdown must not kill the program once
   * the mask is back. */
  while (sigtimedwait(&sigs, NULL, &zero) > 0)
    ;
  sigaction(SIGPIPE, &old_pipe, NULL);
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  explicit_bzero(cookie.value, sizeof(cookie.value));
  cn_log(CN_LOG_INFO, DOMAIN, "stopped");
  return err;
}
