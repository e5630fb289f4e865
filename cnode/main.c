/* cnode: the node program.
 *
 * Starts a runtime named as an Erlang node, makes it a node of the cluster
 * (cn_dist_start), and hosts the kv and echo servers under the supervisor
 * cnode_sup (servers.h).  From iex --sname:
 *
 *   GenServer.call({:kv, :"cnode@host"}, {:put, :a, 1})
 *
 * Output.  Once every server runs and the node is registered with epmd,
 * the program prints one line on stdout, `cnode: ready as NODE on port
 * PORT`, and nothing else there; scripts wait for "ready as".  Everything
 * else (errors, the shutdown) goes to stderr.
 *
 * Exit status: 0 after SIGINT or SIGTERM (a clean shutdown); 1 when
 * startup fails or cnode_sup gives up (its children crashed more than 100
 * times in a second), after which the node shuts down rather than run on
 * without its servers; 2 for a bad command line.
 */
#include "cookie.h"
#include "servers.h"

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long the servers get to stop on shutdown before the runtime kills
 * them: each child spec allows 5 s, and there are two. */
#define SHUTDOWN_MS 10000

/* How often the main thread looks for cnode_sup's DOWN while it waits for
 * a signal (see wait_for_end). */
#define WATCH_MS 250

typedef struct config {
  char node[CN_MAX_NODE_NAME + 1]; /* name@host */
  const char *cookie;              /* --cookie, or NULL: the cookie file */
  const char *listen;              /* --listen, or NULL: the default */
  uint16_t port;                   /* --port, 0: any free port */
  unsigned schedulers;             /* --schedulers, 0: one per core */
  bool published;                  /* --published: a visible node */
  bool no_dist;                    /* --no-dist: no distribution */
  unsigned handshake_ms;           /* --handshake-ms, 0: the default */
  unsigned ticktime;               /* --ticktime, 0: the default */
  unsigned max_handshakes;         /* --max-handshakes, 0: the default */
  unsigned long max_message;       /* --max-message, 0: the default */
  unsigned long max_mailbox;       /* --max-mailbox, 0: unlimited */
  unsigned long busy_limit;        /* --busy-limit, 0: the default */
} config;

#define SYNOPSIS                                                               \
  "usage: cnode [--sname NAME | --name NAME@HOST] [--cookie COOKIE]\n"         \
  "             [--listen ADDR] [--port N] [--schedulers N]\n"                 \
  "             [--hidden | --published] [--handshake-ms MS]\n"                \
  "             [--ticktime S] [--max-handshakes N] [--max-message N]\n"       \
  "             [--max-mailbox N] [--busy-limit N] [--no-dist] [--help]\n"

static const char usage_text[] = SYNOPSIS
    "\n"
    "A C node for Erlang/Elixir clusters, hosting the servers kv and echo\n"
    "under the supervisor cnode_sup.\n"
    "\n"
    "  --sname NAME     node name NAME@<short host name> (default: cnode)\n"
    "  --name N@HOST    the full node name\n"
    "  --cookie COOKIE  the cookie; default: read $HOME/.erlang.cookie as\n"
    "                   erl does, creating it when missing\n"
    "  --listen ADDR    address for distribution connections (default:\n"
    "                   the host name's address when it is a loopback\n"
    "                   address, else 127.0.0.1)\n"
    "  --port N         distribution port (default: any free port)\n"
    "  --schedulers N   scheduler threads (default: one per core)\n"
    "  --hidden         a hidden node, as erl -hidden (the default)\n"
    "  --published      a visible node, as a plain erl node\n"
    "  --handshake-ms MS  time allowed for a handshake (default 7000)\n"
    "  --ticktime S     net_ticktime: a peer silent this long is dropped\n"
    "                   (default 60)\n"
    "  --max-handshakes N  accepted connections still in their handshake\n"
    "                   (default 64)\n"
    "  --max-message N  largest message in bytes, both ways (default 1G;\n"
    "                   K, M and G suffixes are binary); a bigger one is\n"
    "                   refused alone, and a call in it fails at once\n"
    "  --max-mailbox N  messages a server may have waiting (default 0,\n"
    "                   unlimited); past it calls fail at once and casts\n"
    "                   are dropped\n"
    "  --busy-limit N   output bytes that make a connection busy and\n"
    "                   suspend its senders (default 1M)\n"
    "  --no-dist        run the servers in a runtime without distribution,\n"
    "                   for C-only smoke tests: no epmd, no cookie\n"
    "  --help           print this and exit\n"
    "\n"
    "Prints `cnode: ready as NODE on port PORT` on stdout once it serves\n"
    "(port 0 with --no-dist).  SIGINT or SIGTERM stops it; exit status 0\n"
    "then, 1 when it fails, 2 for a bad command line.\n";

/* The host name up to its first dot, as erl -sname uses it. */
static int short_host(char *out, size_t cap) {
  char *dot;
  if (gethostname(out, cap) != 0)
    return -1;
  out[cap - 1] = '\0';
  if ((dot = strchr(out, '.')))
    *dot = '\0';
  return out[0] ? 0 : -1;
}

/* A decimal number in [min, max], with nothing after it. */
static bool parse_num(const char *s, unsigned long min, unsigned long max,
                      unsigned long *out) {
  char *end;
  unsigned long v;

  if (*s < '0' || *s > '9')
    return false;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* A byte count: a number in [min, max], optionally with a K, M or G
 * suffix (powers of 1024), and nothing else. */
static bool parse_bytes(const char *s, unsigned long min, unsigned long max,
                        unsigned long *out) {
  char num[32];
  size_t n = strlen(s);
  unsigned long mult = 1, v;
  if (n == 0 || n >= sizeof(num))
    return false;
  memcpy(num, s, n + 1);
  switch (num[n - 1]) {
  case 'k':
  case 'K':
    mult = 1UL << 10;
    break;
  case 'm':
  case 'M':
    mult = 1UL << 20;
    break;
  case 'g':
  case 'G':
    mult = 1UL << 30;
    break;
  default:
    break;
  }
  if (mult != 1)
    num[n - 1] = '\0';
  if (!parse_num(num, 0, ULONG_MAX / mult, &v))
    return false;
  v *= mult;
  if (v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* Sets the node name from --sname (name, which may carry @host of its own)
 * or --name (full, which must), or the default.  Returns 0 or -1 with a
 * message printed. */
static int set_node(config *c, const char *sname, const char *full) {
  char host[256];
  int n;

  if (full) {
    const char *at = strchr(full, '@');
    if (!at || at == full || !at[1] || strchr(at + 1, '@')) {
      fprintf(stderr, "cnode: --name wants NAME@HOST, not '%s'\n", full);
      return -1;
    }
    n = snprintf(c->node, sizeof(c->node), "%s", full);
  } else {
    const char *name = sname ? sname : "cnode";
    const char *at = strchr(name, '@');
    if (at) {
      /* erl -sname takes name@host too, as long as host is short. */
      if (at == name || !at[1] || strchr(at + 1, '@') || strchr(at, '.')) {
        fprintf(stderr,
                "cnode: --sname wants a name, or NAME@HOST with a host "
                "without dots, not '%s'\n",
                name);
        return -1;
      }
      n = snprintf(c->node, sizeof(c->node), "%s", name);
    } else {
      if (!*name) {
        fprintf(stderr, "cnode: --sname wants a name\n");
        return -1;
      }
      if (short_host(host, sizeof(host)) != 0) {
        fprintf(stderr, "cnode: cannot read the host name: %s\n",
                strerror(errno));
        return -1;
      }
      n = snprintf(c->node, sizeof(c->node), "%s@%s", name, host);
    }
  }
  if (n < 0 || (size_t)n >= sizeof(c->node)) {
    fprintf(stderr, "cnode: the node name is longer than %d bytes\n",
            CN_MAX_NODE_NAME);
    return -1;
  }
  return 0;
}

/* Fills c from the command line.  Returns 0 to run, 1 when --help was
 * printed, or -1 after printing what is wrong. */
static int parse_args(int argc, char **argv, config *c) {
  enum {
    SNAME = 256,
    NAME,
    COOKIE,
    LISTEN,
    PORT,
    SCHED,
    HIDDEN,
    PUB,
    NODIST,
    HSMS,
    TICK,
    MAXHS,
    MAXMSG,
    MAXMBOX,
    BUSY
  };
  static const struct option opts[] = {
      {"sname", required_argument, NULL, SNAME},
      {"name", required_argument, NULL, NAME},
      {"cookie", required_argument, NULL, COOKIE},
      {"listen", required_argument, NULL, LISTEN},
      {"port", required_argument, NULL, PORT},
      {"schedulers", required_argument, NULL, SCHED},
      {"hidden", no_argument, NULL, HIDDEN},
      {"published", no_argument, NULL, PUB},
      {"no-dist", no_argument, NULL, NODIST},
      {"handshake-ms", required_argument, NULL, HSMS},
      {"ticktime", required_argument, NULL, TICK},
      {"max-handshakes", required_argument, NULL, MAXHS},
      {"max-message", required_argument, NULL, MAXMSG},
      {"max-mailbox", required_argument, NULL, MAXMBOX},
      {"busy-limit", required_argument, NULL, BUSY},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *sname = NULL, *full = NULL;
  unsigned long v;
  int o;

  memset(c, 0, sizeof(*c));
  /* The leading ':' tells a missing argument from an unknown option. */
  opterr = 0;
  while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (o) {
    case SNAME:
      sname = optarg;
      break;
    case NAME:
      full = optarg;
      break;
    case COOKIE:
      if (!*optarg || strlen(optarg) > COOKIE_MAX) {
        fprintf(stderr, "cnode: --cookie wants 1 to %d bytes\n", COOKIE_MAX);
        return -1;
      }
      c->cookie = optarg;
      break;
    case LISTEN:
      c->listen = optarg;
      break;
    case PORT:
      if (!parse_num(optarg, 0, 65535, &v)) {
        fprintf(stderr, "cnode: --port wants 0..65535, not '%s'\n", optarg);
        return -1;
      }
      c->port = (uint16_t)v;
      break;
    case SCHED:
      if (!parse_num(optarg, 1, 1024, &v)) {
        fprintf(stderr, "cnode: --schedulers wants 1..1024, not '%s'\n",
                optarg);
        return -1;
      }
      c->schedulers = (unsigned)v;
      break;
    case HIDDEN:
      c->published = false;
      break;
    case PUB:
      c->published = true;
      break;
    case NODIST:
      c->no_dist = true;
      break;
    case HSMS:
    case TICK:
    case MAXHS:
      if (!parse_num(optarg, 1, 1000000000, &v)) {
        fprintf(stderr, "cnode: %s wants a positive number, not '%s'\n",
                argv[optind - 1], optarg);
        return -1;
      }
      if (o == HSMS)
        c->handshake_ms = (unsigned)v;
      else if (o == TICK)
        c->ticktime = (unsigned)v;
      else
        c->max_handshakes = (unsigned)v;
      break;
    case MAXMSG:
      if (!parse_bytes(optarg, 64, (unsigned long)CN_DEFAULT_MAX_MESSAGE * 3,
                       &v)) {
        fprintf(stderr,
                "cnode: --max-message wants 64 to 3G bytes, not "
                "'%s'\n",
                optarg);
        return -1;
      }
      c->max_message = v;
      break;
    case MAXMBOX:
      if (!parse_num(optarg, 0, 4294967295UL, &v)) {
        fprintf(stderr,
                "cnode: --max-mailbox wants 0..4294967295, not "
                "'%s'\n",
                optarg);
        return -1;
      }
      c->max_mailbox = v;
      break;
    case BUSY:
      if (!parse_bytes(optarg, 1024, 1UL << 40, &v)) {
        fprintf(stderr,
                "cnode: --busy-limit wants 1K to 1T bytes, not "
                "'%s'\n",
                optarg);
        return -1;
      }
      c->busy_limit = v;
      break;
    case 'h':
      fputs(usage_text, stdout);
      return 1;
    case ':':
      fprintf(stderr, "cnode: %s needs an argument\n", argv[optind - 1]);
      fputs(SYNOPSIS, stderr);
      return -1;
    default:
      fprintf(stderr, "cnode: unknown option %s\n", argv[optind - 1]);
      fputs(SYNOPSIS, stderr);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "cnode: unexpected argument '%s'\n", argv[optind]);
    fputs(SYNOPSIS, stderr);
    return -1;
  }
  if (sname && full) {
    fprintf(stderr, "cnode: give --sname or --name, not both\n");
    return -1;
  }
  return set_node(c, sname, full);
}

/* Prints a term to stderr after prefix. */
static void print_term(const char *prefix, cn_term t) {
  cn_buf text = CN_BUF_INIT;
  if (t.len > 0 && cn_term_print(t, &text) == 0)
    fprintf(stderr, "%s%s\n", prefix, text.data);
  else
    fprintf(stderr, "%s(no reason given)\n", prefix);
  cn_buf_free(&text);
}

/* Waits for SIGINT or SIGTERM (blocked in every thread, see main) or for
 * cnode_sup to die, whichever comes first.  Returns the exit status: 0 for
 * a signal, 1 when the supervisor died.
 *
 * The main thread has two things to wait for and no call that waits for
 * both: sigtimedwait sees only signals, cn_receive only messages.  It
 * waits for signals, which answer at once, and looks at its mailbox for
 * the supervisor's DOWN every WATCH_MS; that only matters when the node is
 * failing anyway, where a quarter of a second is no delay.  A signal
 * thread that woke the main thread through the runtime would answer both
 * at once, at the price of a second thread to stop and join. */
static int wait_for_end(cn_runtime *rt, const sigset_t *sigs,
                        const cn_ref *sup_mon) {
  struct timespec tick = {WATCH_MS / 1000, (WATCH_MS % 1000) * 1000000L};
  cn_buf msg = CN_BUF_INIT;
  cn_term reason;
  cn_ref ref;
  int sig;

  for (;;) {
    sig = sigtimedwait(sigs, NULL, &tick);
    if (sig == SIGINT || sig == SIGTERM)
      break;
    if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      fprintf(stderr, "cnode: sigtimedwait: %s\n", strerror(errno));
      break;
    }
    while (cn_receive(rt, 0, &msg) == 0) {
      if (cn_match(cn_buf_term(&msg), "{'DOWN', ~r, process, _, ~t}", &ref,
                   &reason) == 0 &&
          cn_ref_equal(&ref, sup_mon)) {
        print_term("cnode: " NODE_SUP_NAME " exited, so the node stops: ",
                   reason);
        cn_buf_free(&msg);
        return 1;
      }
    }
  }
  cn_buf_free(&msg);
  return 0;
}

/* Reads or creates the cookie file unless --cookie gave one.  Returns 0
 * with c->cookie set (to c_store when read from the file), or -1. */
static int find_cookie(config *c, char *store) {
  char err[4352], path[4096];
  bool created;

  if (c->cookie || c->no_dist)
    return 0;
  if (cookie_load(store, err, sizeof(err), &created, path, sizeof(path)) != 0) {
    fprintf(stderr, "cnode: %s\n", err);
    return -1;
  }
  if (created)
    fprintf(stderr, "cnode: created the cookie file %s\n", path);
  c->cookie = store;
  return 0;
}

/* Starts distribution (unless --no-dist) and then the servers.  This
 * order leaves no window where a ready node lacks its servers: the ready
 * line comes after both.  It also means that the servers' pids carry the
 * node's final creation, should the distribution layer adopt the one epmd
 * hands out.  Returns 0 with *sup set, or 1 after printing why not. */
static int start(cn_runtime *rt, const config *c, cn_pid *sup) {
  cn_dist_options d = {0};
  cn_buf reason = CN_BUF_INIT;
  int err;

  if (!c->no_dist) {
    d.cookie = c->cookie;
    d.listen_addr = c->listen;
    d.listen_port = c->port;
    d.published = c->published;
    d.handshake_ms = c->handshake_ms;
    d.ticktime_s = c->ticktime;
    d.max_handshakes = c->max_handshakes;
    d.max_message = c->max_message;
    d.busy_limit = c->busy_limit;
    if ((err = cn_dist_start(rt, &d)) != 0) {
      fprintf(stderr, "cnode: cannot start distribution as %s: %s (%s)%s\n",
              c->node, cn_strerror(err), cn_err_name(err),
              err == CN_EEXIST    ? "; is the name taken in epmd?"
              : err == CN_ENOCONN ? "; epmd could not be reached or started"
                                  : "");
      return 1;
    }
  }
  if ((err = node_sup_start(rt, sup, &reason)) != 0) {
    fprintf(stderr, "cnode: cannot start " NODE_SUP_NAME ": %s (%s)\n",
            cn_strerror(err), cn_err_name(err));
    if (reason.len > 0)
      print_term("cnode: the reason: ", cn_buf_term(&reason));
    cn_buf_free(&reason);
    return 1;
  }
  cn_buf_free(&reason);
  return 0;
}

/* Parses the command line, starts the node, prints the ready line, and
 * runs until SIGINT, SIGTERM or the death of cnode_sup; see the top of
 * this file for the output and the exit status. */
int main(int argc, char **argv) {
  char cookie[COOKIE_MAX + 1];
  cn_runtime_options ro = {0};
  cn_runtime *rt = NULL;
  sigset_t sigs;
  cn_ref sup_mon;
  cn_pid sup;
  config c;
  int rc, err;

  rc = parse_args(argc, argv, &c);
  if (rc != 0)
    return rc > 0 ? 0 : 2;
  if (find_cookie(&c, cookie) != 0)
    return 1;

  /* Block the stop signals before any thread exists, so that every thread
   * the runtime starts inherits the mask and only sigtimedwait in this
   * thread ever takes them.  A peer that goes away mid-write must give
   * an error, not SIGPIPE; so must a closed stdout. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  if ((err = pthread_sigmask(SIG_BLOCK, &sigs, NULL)) != 0) {
    fprintf(stderr, "cnode: pthread_sigmask: %s\n", strerror(err));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);

  ro.schedulers = c.schedulers;
  ro.node_name = c.node;
  ro.creation = 0; /* the runtime picks one; see cn_runtime_options */
  ro.max_mailbox = c.max_mailbox;
  ro.limits.max_size = c.max_message; /* 0: the default */
  if ((err = cn_runtime_new(&ro, &rt)) != 0) {
    fprintf(stderr, "cnode: cannot create the runtime for %s: %s (%s)\n",
            c.node, cn_strerror(err), cn_err_name(err));
    return 1;
  }
  if (start(rt, &c, &sup) != 0) {
    cn_runtime_free(rt);
    return 1;
  }
  if ((err = cn_monitor(rt, cn_to_pid(sup), &sup_mon)) != 0) {
    fprintf(stderr, "cnode: cannot monitor " NODE_SUP_NAME ": %s\n",
            cn_strerror(err));
    cn_runtime_free(rt);
    return 1;
  }

  printf("cnode: ready as %s on port %u\n", c.node,
         c.no_dist ? 0u : (unsigned)cn_dist_port(rt));
  fflush(stdout);

  rc = wait_for_end(rt, &sigs, &sup_mon);
  cn_runtime_shutdown(rt, SHUTDOWN_MS);
  cn_runtime_free(rt);
  fprintf(stderr, "cnode: stopped\n");
  return rc;
}
