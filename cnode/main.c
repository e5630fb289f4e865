/* cnode: the node program.
 *
 * Starts a runtime named as an Erlang node, makes it a node of the cluster,
 * and hosts the kv and echo servers under the supervisor cnode_sup
 * (servers.h).  From iex --sname:
 *
 *   GenServer.call({:kv, :"cnode@host"}, {:put, :a, 1})
 *
 * The library's cn_node_run (cnode/node.h) does the node's life: the name
 * as erl makes it, the cookie file as erl reads it, the signals, the
 * order (distribution first, then cnode_sup), the ready line and the clean
 * stop.  This file reads the command line into its options.
 *
 * Output.  Once every server runs and the node is registered with epmd,
 * the program prints one line on stdout, `cnode: ready as NODE on port
 * PORT`, and nothing else there; scripts wait for "ready as".  Everything
 * else (errors, the shutdown) goes to stderr, one timestamped line per
 * event, through the log hook (cnode/log.h; --log-level).
 *
 * Exit status: 0 after SIGINT or SIGTERM (a clean shutdown); 1 when
 * startup fails or cnode_sup gives up (its children crashed more than 100
 * times in a second), after which the node shuts down rather than run on
 * without its servers; 2 for a bad command line.
 */
#include "cli.h"
#include "servers.h"

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct config {
  cn_node_options node;   /* what cn_node_run gets */
  cn_log_level log_level; /* --log-level */
} config;

#define SYNOPSIS                                                               \
  "usage: cnode [--sname NAME | --name NAME] [--cookie COOKIE]\n"              \
  "             [--listen ADDR] [--port N] [--schedulers N]\n"                 \
  "             [--hidden | --published] [--handshake-ms MS]\n"                \
  "             [--ticktime S] [--max-handshakes N] [--max-message N]\n"       \
  "             [--max-mailbox N] [--busy-limit N] [--no-dist]\n"              \
  "             [--log-level LEVEL] [--help]\n"

static const char usage_text[] = SYNOPSIS
    "\n"
    "A C node for Erlang/Elixir clusters, hosting the servers kv and echo\n"
    "under the supervisor cnode_sup.\n"
    "\n"
    "  --sname NAME     a short node name, as erl -sname: NAME@<host name up\n"
    "                   to its first dot>, or NAME@HOST (default: cnode)\n"
    "  --name NAME      a long node name, as erl -name: NAME@HOST.DOMAIN, or\n"
    "                   NAME and the domain found as erl finds it\n"
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
    "  --log-level L    error, warning, info or debug: what goes to stderr\n"
    "                   (default info)\n"
    "  --help           print this and exit\n"
    "\n"
    "Prints `cnode: ready as NODE on port PORT` on stdout once it serves\n"
    "(port 0 with --no-dist).  SIGINT or SIGTERM stops it; exit status 0\n"
    "then, 1 when it fails, 2 for a bad command line.\n";

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

/* Checks the node name now, so that a bad one is a bad command line
 * (status 2) with a message that says which rule it breaks; cn_node_run
 * makes the same name again.  Returns 0 or -1 after printing why. */
static int check_name(const char *sname, const char *name) {
  char node[CN_MAX_NODE_NAME + 1];
  int err = sname ? cn_node_shortname(sname, node, sizeof(node))
                  : cn_node_longname(name, node, sizeof(node));
  if (err == 0)
    return 0;
  if (err == CN_EINVAL && sname)
    fprintf(stderr,
            "cnode: --sname wants NAME or NAME@HOST, NAME of letters, "
            "digits, _ and -, HOST without dots, not '%s'\n",
            sname);
  else if (err == CN_EINVAL)
    fprintf(stderr,
            "cnode: --name wants NAME or NAME@HOST, NAME of letters, "
            "digits, _ and -, not '%s'\n",
            name);
  else if (err == CN_ENOSPC)
    fprintf(stderr, "cnode: the node name is longer than %d bytes\n",
            CN_MAX_NODE_NAME);
  else if (err == CN_ENOENT && name)
    fprintf(stderr, "cnode: no domain found for a long name: give --name "
                    "NAME@HOST.DOMAIN\n");
  else
    fprintf(stderr, "cnode: cannot read the host name: %s\n", cn_strerror(err));
  return -1;
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
    BUSY,
    LOGLEVEL
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
      {"log-level", required_argument, NULL, LOGLEVEL},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  cn_runtime_options *ro = &c->node.runtime;
  cn_dist_options *d = &c->node.dist;
  unsigned long v;
  int o;

  memset(c, 0, sizeof(*c));
  c->log_level = CN_LOG_DEFAULT_LEVEL;
  /* The leading ':' tells a missing argument from an unknown option. */
  opterr = 0;
  while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (o) {
    case SNAME:
      c->node.sname = optarg;
      break;
    case NAME:
      c->node.name = optarg;
      break;
    case COOKIE:
      if (!*optarg || strlen(optarg) > CN_COOKIE_MAX) {
        fprintf(stderr, "cnode: --cookie wants 1 to %d bytes\n", CN_COOKIE_MAX);
        return -1;
      }
      d->cookie = optarg;
      break;
    case LISTEN:
      d->listen_addr = optarg;
      break;
    case PORT:
      if (!parse_num(optarg, 0, 65535, &v)) {
        fprintf(stderr, "cnode: --port wants 0..65535, not '%s'\n", optarg);
        return -1;
      }
      d->listen_port = (uint16_t)v;
      break;
    case SCHED:
      if (!parse_num(optarg, 1, 1024, &v)) {
        fprintf(stderr, "cnode: --schedulers wants 1..1024, not '%s'\n",
                optarg);
        return -1;
      }
      ro->schedulers = (unsigned)v;
      break;
    case HIDDEN:
      d->published = false;
      break;
    case PUB:
      d->published = true;
      break;
    case NODIST:
      c->node.no_dist = true;
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
        d->handshake_ms = (unsigned)v;
      else if (o == TICK)
        d->ticktime_s = (unsigned)v;
      else
        d->max_handshakes = (unsigned)v;
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
      /* The runtime's limit and the dist layer's, as one setting. */
      ro->limits.max_size = v;
      d->max_message = v;
      break;
    case MAXMBOX:
      if (!parse_num(optarg, 0, 4294967295UL, &v)) {
        fprintf(stderr,
                "cnode: --max-mailbox wants 0..4294967295, not "
                "'%s'\n",
                optarg);
        return -1;
      }
      ro->max_mailbox = v;
      break;
    case BUSY:
      if (!parse_bytes(optarg, 1024, 1UL << 40, &v)) {
        fprintf(stderr,
                "cnode: --busy-limit wants 1K to 1T bytes, not "
                "'%s'\n",
                optarg);
        return -1;
      }
      d->busy_limit = v;
      break;
    case LOGLEVEL:
      if (cn_log_level_parse(optarg, &c->log_level) != 0) {
        fprintf(stderr,
                "cnode: --log-level wants error, warning, info or debug, "
                "not '%s'\n",
                optarg);
        return -1;
      }
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
  if (c->node.sname && c->node.name) {
    fprintf(stderr, "cnode: give --sname or --name, not both\n");
    return -1;
  }
  if (!c->node.sname && !c->node.name)
    c->node.sname = "cnode";
  return check_name(c->node.sname, c->node.name);
}

/* cn_node_run's start function: cnode_sup and its children, with the
 * supervisor as the process to watch (the node stops when it gives up). */
static int start(cn_runtime *rt, void *arg, cn_pid *sup) {
  cn_buf reason = CN_BUF_INIT, text = CN_BUF_INIT;
  int err = node_sup_start(rt, sup, &reason);

  if (err != 0) {
    if (reason.len == 0 || cn_term_print(cn_buf_term(&reason), &text) != 0)
      cn_buf_free(&text);
    cn_log(CN_LOG_ERROR, "cnode",
           "cannot start " NODE_SUP_NAME ": %s (%s); the reason: %s",
           cn_strerror(err), cn_err_name(err),
           text.data ? text.data : "(none given)");
  }
  cn_buf_free(&reason);
  cn_buf_free(&text);
  return err;
}

/* Parses the command line and runs the node until SIGINT, SIGTERM or the
 * death of cnode_sup; see the top of this file for the output and the
 * exit status. */
int main(int argc, char **argv) {
  config c;
  int rc;

  if (argc > 1 && cnode_cli_command(argv[1]))
    return cnode_cli(argc - 1, argv + 1);
  rc = parse_args(argc, argv, &c);

  if (rc != 0)
    return rc > 0 ? 0 : 2;
  cn_log_set_level(c.log_level);
  return cn_node_run(&c.node, start, NULL) == 0 ? 0 : 1;
}
