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
 * stop.  This file reads the command line (and CNODE_COOKIE) into its
 * options, and refuses what cannot work before anything starts.
 *
 * The cookie.  From --cookie-file PATH (read as erl reads
 * ~/.erlang.cookie, never created) or --cookie COOKIE (works, but every
 * user of the machine may see it in ps, so it logs a warning), which
 * conflict; else from $CNODE_COOKIE; else cn_node_run reads
 * ~/.erlang.cookie as erl does.  CNODE_COOKIE is
 * wiped and removed from the program's environment once read, whether or
 * not it is used, so that /proc/PID/environ and any child lose it.
 *
 * Output.  Once every server runs and the node is registered with epmd,
 * the program prints one line on stdout, `cnode: ready as NODE on port
 * PORT`, and nothing else there; scripts wait for "ready as".  Everything
 * else (errors, the shutdown) goes to stderr, one timestamped line per
 * event, through the log hook (cnode/log.h; --log-level).  A bad command
 * line is told on stderr in one line that starts with "cnode: ".
 *
 * Exit status: 0 after SIGINT or SIGTERM, or end of input with
 * --stdin-eof (a clean shutdown), and after --help and --version; 1 when
 * startup fails (the cookie file cannot be used, epmd cannot be reached,
 * the name is taken, ...) or cnode_sup gives up (its children crashed more
 * than 100 times in a second), after which the node shuts down rather than
 * run on without its servers; 2 for a bad command line (an unknown or
 * malformed option, a bad node name, flags that conflict) or a bad
 * CNODE_COOKIE.
 */
#include "cli.h"
#include "modules.h"
#include "servers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The environment variable that may carry the cookie. */
#define COOKIE_ENV "CNODE_COOKIE"

typedef struct config {
  cn_node_options node;           /* what cn_node_run gets */
  cn_log_level log_level;         /* --log-level */
  bool stdin_eof;                 /* --stdin-eof: stop at the end of stdin */
  bool cookie_in_argv;            /* the cookie came from --cookie */
  const char *cookie_file;        /* --cookie-file */
  char cookie[CN_COOKIE_MAX + 1]; /* a copy of the cookie given */
  cn_cookie file;                 /* what --cookie-file read */
  bool tls;                       /* --proto-dist inet_tls */
  const char *tls_optfile;        /* --ssl-dist-optfile */
  const char *tls_opts[64];       /* --ssl-dist-opt KEY VALUE pairs */
  int n_tls_opts;                 /* entries in tls_opts (two a pair) */
  cn_dist_tls tls_conf;           /* what c.node.dist.tls points to */
  cn_buf tls_store;               /* the optfile's strings */
} config;

#define SYNOPSIS                                                               \
  "usage: cnode [--sname NAME | --name NAME]\n"                                \
  "             [--cookie-file PATH | --cookie COOKIE]\n"                      \
  "             [--listen ADDR] [--port N] [--schedulers N]\n"                 \
  "             [--hidden | --published] [--handshake-ms MS]\n"                \
  "             [--ticktime S] [--max-handshakes N] [--max-message N]\n"       \
  "             [--max-mailbox N] [--busy-limit N] [--coalesce-max-us N]\n"    \
  "             [--start-epmd true|false] [--epmd-port N] [--no-dist]\n"       \
  "             [--proto-dist inet_tcp|inet_tls] [--ssl-dist-optfile FILE]\n"  \
  "             [--ssl-dist-opt KEY VALUE]...\n"                               \
  "             [--stdin-eof] [--log-level LEVEL] [--help] [--version]\n"      \
  "       cnode call | cast [--node NODE] [--cookie-file PATH]\n"              \
  "                         [--timeout MS] NAME TERM\n"                        \
  "       cnode ping [--node NODE] [--cookie-file PATH] [--timeout MS]\n"

static const char usage_text[] = SYNOPSIS
    "\n"
    "A C node for Erlang/Elixir clusters, hosting the servers kv and echo\n"
    "under the supervisor cnode_sup.\n"
    "\n"
    "  --sname NAME     a short node name, as erl -sname: NAME@<host name up\n"
    "                   to its first dot>, or NAME@HOST (default: cnode);\n"
    "                   NAME of letters, digits, _ and -, HOST without dots\n"
    "  --name NAME      a long node name, as erl -name: NAME@HOST.DOMAIN, or\n"
    "                   NAME and the domain found as erl finds it\n"
    "  --cookie-file PATH  read the cookie from PATH, which must be a\n"
    "                   cookie file as erl wants ~/.erlang.cookie (mode\n"
    "                   0400 or 0600, one cookie); it is never created\n"
    "  --cookie COOKIE  the cookie itself: visible to every user in ps, so\n"
    "                   prefer --cookie-file or $" COOKIE_ENV "\n"
    "                   (default, with neither: $" COOKIE_ENV ", else\n"
    "                   $HOME/.erlang.cookie as erl reads it, created when\n"
    "                   missing)\n"
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
    "  --coalesce-max-us N  the longest the distribution loop holds still\n"
    "                   after a busy turn, so that requests arriving\n"
    "                   meanwhile are answered together (it measures how\n"
    "                   long helps), or between the reads of a stream of\n"
    "                   casts; up to N (default 400; 0: never)\n"
    "  --start-epmd B   true (default): start `epmd -daemon` when none\n"
    "                   runs, as erl does; false: never, as erl\n"
    "                   -start_epmd false (startup fails without epmd)\n"
    "  --epmd-port N    epmd's port, as erl -epmd_port (default:\n"
    "                   $ERL_EPMD_PORT, else 4369)\n"
    "  --proto-dist P   inet_tcp (default) or inet_tls: TLS on every\n"
    "                   distribution connection, as erl -proto_dist\n"
    "                   inet_tls (plain TCP peers are refused)\n"
    "  --ssl-dist-optfile FILE  TLS options as erl -ssl_dist_optfile:\n"
    "                   [{server, [{certfile, \"F\"}, ...]}, {client, "
    "[...]}].\n"
    "                   certfile, keyfile, password, cacertfile, verify,\n"
    "                   fail_if_no_peer_cert, depth, versions\n"
    "  --ssl-dist-opt KEY VALUE  one TLS option as erl -ssl_dist_opt, such\n"
    "                   as server_certfile PATH or client_verify verify_peer\n"
    "                   (applied after the optfile's)\n"
    "  --no-dist        run the servers in a runtime without distribution,\n"
    "                   for C-only smoke tests: no epmd, no cookie; the\n"
    "                   flags for distribution are refused with it\n"
    "  --stdin-eof      stop cleanly (status 0) when stdin reaches its end,\n"
    "                   as when the node runs as an Erlang port whose\n"
    "                   owner closed it or died\n"
    "  --log-level L    error, warning, info or debug: what goes to stderr\n"
    "                   (default info)\n"
    "  --help           print this and exit\n"
    "  --version        print `cnode VERSION` and exit\n"
    "\n"
    "Prints `cnode: ready as NODE on port PORT` on stdout once it serves\n"
    "(port 0 with --no-dist).  SIGINT or SIGTERM stops it; exit status 0\n"
    "then, 1 when it fails to start or its supervisor gives up, 2 for a bad\n"
    "command line (or a bad $" COOKIE_ENV ").\n";

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

/* Says what is wrong with a node name given to flag (--sname or --name),
 * by erl's rules (net_kernel's valid_name_head/1 and create_hostpart/2):
 * the part before the @ is one or more letters, digits, '_' and '-'; the
 * host after it is printable ASCII without spaces, and for a short name
 * without dots.  Two @ are refused too, although erl would take the
 * second into the host.  Returns 0 when none of these is broken, else -1
 * after printing which one is. */
static int name_rules(const char *flag, const char *s) {
  const char *at = strchr(s, '@'), *p;
  const char *end = at ? at : s + strlen(s);

  if (*s == '\0') {
    fprintf(stderr, "cnode: %s: the node name is empty\n", flag);
    return -1;
  }
  if (at && strchr(at + 1, '@')) {
    fprintf(stderr, "cnode: %s '%s': a node name has one @ at most\n", flag, s);
    return -1;
  }
  if (end == s) {
    fprintf(stderr, "cnode: %s '%s': nothing before the @\n", flag, s);
    return -1;
  }
  for (p = s; p < end; p++) {
    unsigned char ch = (unsigned char)*p;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')
      continue;
    fprintf(stderr,
            "cnode: %s '%s': the name before the @ may hold only letters, "
            "digits, _ and - (as erl wants), not '%c' (byte %u)\n",
            flag, s, ch >= ' ' && ch <= '~' ? ch : '?', ch);
    return -1;
  }
  if (!at)
    return 0;
  for (p = at + 1; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch <= ' ' || ch > '~') {
      fprintf(stderr,
              "cnode: %s '%s': the host after the @ may hold only printable "
              "ASCII without spaces (byte %u)\n",
              flag, s, ch);
      return -1;
    }
    if (ch == '.' && flag[2] == 's') {
      fprintf(stderr,
              "cnode: %s '%s': the host of a short name has no dots "
              "(give --name for a long name)\n",
              flag, s);
      return -1;
    }
  }
  return 0;
}

/* Checks the node name now, so that a bad one is a bad command line
 * (status 2) with a message that says which rule it breaks; cn_node_run
 * makes the same name again.  Returns 0 or -1 after printing why. */
static int check_name(const char *sname, const char *name) {
  char node[CN_MAX_NODE_NAME + 1];
  const char *flag = sname ? "--sname" : "--name";
  const char *given = sname ? sname : name;
  int err;

  if (name_rules(flag, given) != 0)
    return -1;
  err = sname ? cn_node_shortname(sname, node, sizeof(node))
              : cn_node_longname(name, node, sizeof(node));
  if (err == 0)
    return 0;
  if (err == CN_EINVAL)
    fprintf(stderr, "cnode: %s '%s' is not a valid node name\n", flag, given);
  else if (err == CN_ENOSPC)
    fprintf(stderr, "cnode: %s '%s': the node name is longer than %d bytes\n",
            flag, given, CN_MAX_NODE_NAME);
  else if (err == CN_ENOENT && name)
    fprintf(stderr, "cnode: no domain found for a long name: give --name "
                    "NAME@HOST.DOMAIN\n");
  else
    fprintf(stderr, "cnode: cannot read the host name: %s\n", cn_strerror(err));
  return -1;
}

/* Takes the cookie from $CNODE_COOKIE into c->cookie (unless one was
 * given on the command line), and in every case wipes the variable's
 * value in place and removes it from the environment, so that neither
 * /proc/PID/environ nor a child process (epmd) sees it.  Returns 0, or -1
 * after printing what is wrong with it. */
static int take_cookie_env(config *c, bool wanted) {
  char *v = getenv(COOKIE_ENV);
  size_t n;

  if (!v)
    return 0;
  n = strlen(v);
  if (wanted && (n == 0 || n > CN_COOKIE_MAX)) {
    fprintf(stderr, "cnode: $" COOKIE_ENV " wants 1 to %d bytes, not %zu\n",
            CN_COOKIE_MAX, n);
    memset(v, 0, n);
    unsetenv(COOKIE_ENV);
    return -1;
  }
  if (wanted) {
    memcpy(c->cookie, v, n + 1);
    c->node.dist.cookie = c->cookie;
  }
  memset(v, 0, n);
  unsetenv(COOKIE_ENV);
  return 0;
}

/* The flags that mean something only with distribution, as bits of the
 * seen mask in parse_args, in the order of their names below. */
enum {
  F_COOKIE,
  F_COOKIE_FILE,
  F_LISTEN,
  F_PORT,
  F_HIDDEN,
  F_PUBLISHED,
  F_HSMS,
  F_TICK,
  F_MAXHS,
  F_BUSY,
  F_COALESCE,
  F_START_EPMD,
  F_EPMD_PORT,
  F_PROTO,
  F_SSL_FILE,
  F_SSL_OPT,
  F_COUNT
};

static const char *const dist_flag_names[F_COUNT] = {
    "--cookie",         "--cookie-file", "--listen",           "--port",
    "--hidden",         "--published",   "--handshake-ms",     "--ticktime",
    "--max-handshakes", "--busy-limit",  "--coalesce-max-us",  "--start-epmd",
    "--epmd-port",      "--proto-dist",  "--ssl-dist-optfile", "--ssl-dist-opt",
};

/* Refuses flags that cannot go together.  Returns 0 or -1 after printing
 * which two conflict. */
static int check_conflicts(const config *c, unsigned seen) {
  int i;

  if (c->node.sname && c->node.name) {
    fprintf(stderr, "cnode: give --sname or --name, not both\n");
    return -1;
  }
  if ((seen & (1u << F_HIDDEN)) && (seen & (1u << F_PUBLISHED))) {
    fprintf(stderr, "cnode: give --hidden or --published, not both\n");
    return -1;
  }
  if ((seen & (1u << F_COOKIE)) && (seen & (1u << F_COOKIE_FILE))) {
    fprintf(stderr, "cnode: give --cookie or --cookie-file, not both\n");
    return -1;
  }
  if ((seen & (1u << F_SSL_FILE | 1u << F_SSL_OPT)) && !c->tls) {
    fprintf(stderr,
            "cnode: %s is for TLS distribution: give "
            "--proto-dist inet_tls too\n",
            seen & (1u << F_SSL_FILE) ? "--ssl-dist-optfile"
                                      : "--ssl-dist-opt");
    return -1;
  }
  if (c->node.no_dist) {
    for (i = 0; i < F_COUNT; i++) {
      if (seen & (1u << i)) {
        fprintf(stderr,
                "cnode: %s is for distribution, which --no-dist turns "
                "off: give one or the other\n",
                dist_flag_names[i]);
        return -1;
      }
    }
  }
  return 0;
}

/* Fills c from the command line.  Returns 0 to run, 1 when --help or
 * --version was printed, or -1 after printing what is wrong. */
static int parse_args(int argc, char **argv, config *c) {
  enum {
    SNAME = 256,
    NAME,
    COOKIE,
    COOKIE_FILE,
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
    COALESCE,
    START_EPMD,
    EPMD_PORT,
    STDIN_EOF,
    LOGLEVEL,
    VERSION,
    LOAD,
    CONFIG,
    PROTO,
    SSL_FILE,
    SSL_OPT
  };
  static const struct option opts[] = {
      {"sname", required_argument, NULL, SNAME},
      {"name", required_argument, NULL, NAME},
      {"cookie", required_argument, NULL, COOKIE},
      {"cookie-file", required_argument, NULL, COOKIE_FILE},
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
      {"coalesce-max-us", required_argument, NULL, COALESCE},
      {"start-epmd", required_argument, NULL, START_EPMD},
      {"epmd-port", required_argument, NULL, EPMD_PORT},
      {"stdin-eof", no_argument, NULL, STDIN_EOF},
      {"log-level", required_argument, NULL, LOGLEVEL},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, VERSION},
      {"load", required_argument, NULL, LOAD},
      {"config", required_argument, NULL, CONFIG},
      {"proto-dist", required_argument, NULL, PROTO},
      {"ssl-dist-optfile", required_argument, NULL, SSL_FILE},
      {"ssl-dist-opt", required_argument, NULL, SSL_OPT},
      {NULL, 0, NULL, 0},
  };
  cn_runtime_options *ro = &c->node.runtime;
  cn_dist_options *d = &c->node.dist;
  unsigned seen = 0;
  unsigned long v;
  size_t n;
  int o;

  memset(c, 0, sizeof(*c));
  c->log_level = CN_LOG_DEFAULT_LEVEL;
  /* The leading ':' tells a missing argument from an unknown option.
   * getopt_long takes unambiguous prefixes too (--vers, --cookie-f). */
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
      n = strlen(optarg);
      if (n == 0 || n > CN_COOKIE_MAX) {
        fprintf(stderr, "cnode: --cookie wants 1 to %d bytes\n", CN_COOKIE_MAX);
        return -1;
      }
      /* A copy, and the argument blanked: ps shows the command line from
       * now on without the cookie (it may have seen it already, hence
       * the warning main logs). */
      memcpy(c->cookie, optarg, n + 1);
      memset(optarg, 'x', n);
      d->cookie = c->cookie;
      c->cookie_in_argv = true;
      seen |= 1u << F_COOKIE;
      break;
    case COOKIE_FILE:
      if (!*optarg) {
        fprintf(stderr, "cnode: --cookie-file wants a path\n");
        return -1;
      }
      c->cookie_file = optarg;
      seen |= 1u << F_COOKIE_FILE;
      break;
    case LISTEN:
      d->listen_addr = optarg;
      seen |= 1u << F_LISTEN;
      break;
    case PORT:
    case EPMD_PORT:
      if (!parse_num(optarg, o == PORT ? 0 : 1, 65535, &v)) {
        fprintf(stderr, "cnode: %s wants %s..65535, not '%s'\n",
                o == PORT ? "--port" : "--epmd-port", o == PORT ? "0" : "1",
                optarg);
        return -1;
      }
      if (o == PORT)
        d->listen_port = (uint16_t)v;
      else
        d->epmd_port = (uint16_t)v;
      seen |= 1u << (o == PORT ? F_PORT : F_EPMD_PORT);
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
      seen |= 1u << F_HIDDEN;
      break;
    case PUB:
      d->published = true;
      seen |= 1u << F_PUBLISHED;
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
      seen |= 1u << (o == HSMS ? F_HSMS : o == TICK ? F_TICK : F_MAXHS);
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
      seen |= 1u << F_BUSY;
      break;
    case COALESCE:
      if (!parse_num(optarg, 0, 100000, &v)) {
        fprintf(stderr,
                "cnode: --coalesce-max-us wants 0..100000, not "
                "'%s'\n",
                optarg);
        return -1;
      }
      d->coalesce_max_us = v == 0 ? -1 : (int)v;
      seen |= 1u << F_COALESCE;
      break;
    case START_EPMD:
      /* erl's -start_epmd takes true and false. */
      if (strcmp(optarg, "true") == 0)
        d->no_epmd_daemon = false;
      else if (strcmp(optarg, "false") == 0)
        d->no_epmd_daemon = true;
      else {
        fprintf(stderr, "cnode: --start-epmd wants true or false, not '%s'\n",
                optarg);
        return -1;
      }
      seen |= 1u << F_START_EPMD;
      break;
    case STDIN_EOF:
      c->stdin_eof = true;
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
    case VERSION:
      printf("cnode %s\n", cn_version_string());
      return 1;
    case LOAD:
      if (modules_add_path(optarg) != 0) {
        fprintf(stderr, "cnode: out of memory\n");
        return -1;
      }
      break;
    case CONFIG: /* read before the rest: see with_config() */
      break;
    case PROTO:
      if (strcmp(optarg, "inet_tls") != 0 && strcmp(optarg, "inet_tcp") != 0) {
        fprintf(stderr,
                "cnode: --proto-dist wants inet_tcp or inet_tls, not '%s'\n",
                optarg);
        return -1;
      }
      c->tls = strcmp(optarg, "inet_tls") == 0;
      seen |= 1u << F_PROTO;
      break;
    case SSL_FILE:
      c->tls_optfile = optarg;
      seen |= 1u << F_SSL_FILE;
      break;
    case SSL_OPT:
      /* KEY VALUE, as erl's -ssl_dist_opt: the value is the next word;
       * checked here, applied after the optfile (see read_tls). */
      if (optind >= argc) {
        fprintf(stderr, "cnode: --ssl-dist-opt wants KEY VALUE\n");
        return -1;
      }
      if (cn_dist_tls_set(&(cn_dist_tls){0}, optarg, argv[optind]) != 0) {
        fprintf(stderr,
                "cnode: --ssl-dist-opt: no option %s, or a bad value "
                "'%s' for it\n",
                optarg, argv[optind]);
        return -1;
      }
      if (c->n_tls_opts + 2 >
          (int)(sizeof(c->tls_opts) / sizeof(c->tls_opts[0]))) {
        fprintf(stderr, "cnode: too many --ssl-dist-opt\n");
        return -1;
      }
      c->tls_opts[c->n_tls_opts++] = optarg;
      c->tls_opts[c->n_tls_opts++] = argv[optind++];
      seen |= 1u << F_SSL_OPT;
      break;
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
  if (check_conflicts(c, seen) != 0)
    return -1;
  /* A flag names the cookie, else the environment may; either way the
   * variable leaves the environment. */
  if (take_cookie_env(c, !c->node.no_dist && !d->cookie && !c->cookie_file) !=
      0)
    return -1;
  if (!c->node.sname && !c->node.name)
    c->node.sname = "cnode";
  return check_name(c->node.sname, c->node.name);
}

/* TLS distribution: reads the --ssl-dist-optfile, then applies the
 * --ssl-dist-opt pairs, into c->tls_conf.  Returns 0, or -1 after printing
 * what is wrong (a startup failure, status 1). */
static int read_tls(config *c) {
  int i;
  if (c->tls_optfile &&
      cnode_read_tls_optfile(c->tls_optfile, &c->tls_conf, &c->tls_store) != 0)
    return -1;
  for (i = 0; i + 1 < c->n_tls_opts; i += 2)
    cn_dist_tls_set(&c->tls_conf, c->tls_opts[i], c->tls_opts[i + 1]);
  c->node.dist.tls = &c->tls_conf;
  return 0;
}

/* Reads the --cookie-file.  Returns 0, or -1 after printing why it cannot
 * be used (a startup failure, status 1: the command line was fine). */
static int read_cookie_file(config *c) {
  int err = cn_cookie_read(c->cookie_file, &c->file);

  if (err != 0) {
    fprintf(stderr, "cnode: --cookie-file: %s\n", c->file.error);
    return -1;
  }
  c->node.dist.cookie = c->file.value;
  return 0;
}

/* --stdin-eof: reads stdin to its end, throwing the bytes away, then asks
 * the node to stop as a signal would, which cn_node_run takes as a clean
 * stop.  It is started from start(), so it inherits the mask in which
 * cn_node_run blocked SIGINT and SIGTERM and never takes one itself. */
static void *stdin_watch(void *arg) {
  char buf[4096];
  ssize_t r;

  (void)arg;
  for (;;) {
    r = read(STDIN_FILENO, buf, sizeof(buf));
    if (r > 0 || (r < 0 && errno == EINTR))
      continue;
    break;
  }
  cn_log(CN_LOG_INFO, "cnode", "stdin %s: stopping (--stdin-eof)",
         r == 0 ? "reached its end" : "failed");
  kill(getpid(), SIGTERM);
  return NULL;
}

/* With distribution: the cluster server, and on a published node pg's
 * default scope (global starts with distribution). */
static int cluster_start(cn_runtime *rt, const config *c) {
  cn_start_options o = {CLUSTER_NAME, NULL};
  cn_pid pid;
  int err;
  if (cn_dist_port(rt) == 0)
    return 0;
  if ((err = cn_start(rt, &cluster_server_ops, NULL, &o, &pid)) != 0) {
    cn_log(CN_LOG_ERROR, "cnode", "cannot start " CLUSTER_NAME ": %s",
           cn_strerror(err));
    return err;
  }
  if (c->node.dist.published && (err = cn_pg_start_scope(rt, "pg")) != 0) {
    cn_log(CN_LOG_ERROR, "cnode", "cannot start the pg scope: %s",
           cn_strerror(err));
    return err;
  }
  return 0;
}

/* cn_node_run's start function: cnode_sup and its children, with the
 * supervisor as the process to watch (the node stops when it gives up);
 * and the stdin watcher when config asks for one. */
static int start(cn_runtime *rt, void *arg, cn_pid *sup) {
  const config *c = arg;
  cn_buf reason = CN_BUF_INIT, text = CN_BUF_INIT;
  pthread_t th;
  int err;

  err = node_sup_start(rt, sup, &reason);
  if (err != 0) {
    if (reason.len == 0 || cn_term_print(cn_buf_term(&reason), &text) != 0)
      cn_buf_free(&text);
    cn_log(CN_LOG_ERROR, "cnode",
           "cannot start " NODE_SUP_NAME ": %s (%s); the reason: %s",
           cn_strerror(err), cn_err_name(err),
           text.data ? text.data : "(none given)");
  } else if ((err = echo_export(rt)) != 0) {
    cn_log(CN_LOG_ERROR, "cnode", "cannot export cnode_echo's functions: %s",
           cn_strerror(err));
  } else if ((err = modules_start(rt, NODE_SUP_NAME)) != 0) {
    /* modules_start said why */
  } else if ((err = cluster_start(rt, c)) != 0) {
    /* cluster_start said why */
  } else if (c->stdin_eof) {
    /* Only once the node is up: a node that failed to start stops
     * without it. */
    err = pthread_create(&th, NULL, stdin_watch, NULL);
    if (err != 0) {
      cn_log(CN_LOG_ERROR, "cnode", "cannot start the stdin watcher: %s",
             strerror(err));
      err = CN_ESYSTEM;
    } else {
      pthread_detach(th);
    }
  }
  cn_buf_free(&reason);
  cn_buf_free(&text);
  return err;
}

/* --config FILE: the file's node settings come first as flags, so that the
 * command line wins; its modules are queued before those of --load.
 * Replaces *argc and *argv when there is a file.  Returns 0 or -1. */
/* The command line with the --config file's flags in front (argv[1 ..
 * config_n] are the file's, malloc'ed), freed when the node is done. */
static char **config_argv;
static int config_n;

static void free_config_argv(void) {
  int i;
  for (i = 1; config_argv && i <= config_n; i++)
    free(config_argv[i]);
  free(config_argv);
}

static int with_config(int *argc, char ***argv) {
  char **args = NULL, **all;
  const char *file = NULL;
  int i, n = 0;

  for (i = 1; i < *argc; i++) {
    if (strcmp((*argv)[i], "--config") == 0 && i + 1 < *argc)
      file = (*argv)[++i];
    else if (strncmp((*argv)[i], "--config=", 9) == 0)
      file = (*argv)[i] + 9;
  }
  if (!file)
    return 0;
  if (config_read(file, &args, &n) != 0 ||
      !(all = malloc((size_t)(*argc + n + 1) * sizeof *all))) {
    for (i = 0; i < n; i++)
      free(args[i]);
    free(args);
    return -1;
  }
  all[0] = (*argv)[0];
  if (n > 0) /* args is NULL when the file sets nothing */
    memcpy(all + 1, args, (size_t)n * sizeof *all);
  memcpy(all + 1 + n, *argv + 1, (size_t)*argc * sizeof *all); /* + NULL */
  free(args);
  *argc += n;
  *argv = config_argv = all;
  config_n = n;
  atexit(free_config_argv);
  return 0;
}

/* Parses the command line and runs the node until SIGINT, SIGTERM, the
 * end of stdin (--stdin-eof) or the death of cnode_sup; see the top of
 * this file for the output and the exit status. */
int main(int argc, char **argv) {
  static config c; /* big (the cookie file's buffers): not on the stack */
  int rc;

  if (argc > 1 && cnode_cli_command(argv[1]))
    return cnode_cli(argc - 1, argv + 1);
  if (with_config(&argc, &argv) != 0)
    return 2;
  rc = parse_args(argc, argv, &c);

  if (rc != 0)
    return rc > 0 ? 0 : 2;
  cn_log_set_level(c.log_level);
  if (c.cookie_file && read_cookie_file(&c) != 0)
    return 1;
  if (c.tls && read_tls(&c) != 0)
    return 1;
  /* The stdin watcher's SIGTERM may come after cn_node_run has put the
   * signal mask back (the node stopped on a signal of its own meanwhile):
   * with the stop signals blocked from here on, it stays pending and the
   * exit status stays 0.  (epmd, when the node starts it, gets a clean
   * mask of its own.) */
  if (c.stdin_eof) {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
  }
  if (c.cookie_in_argv)
    cn_log(CN_LOG_WARNING, "cnode",
           "the cookie given with --cookie is visible to every user in ps; "
           "give --cookie-file PATH or $" COOKIE_ENV " instead");
  return cn_node_run(&c.node, start, &c) == 0 ? 0 : 1;
}
