/* cnode call | cast | ping: a client for shell scripts and operators.
 *
 *   cnode call [OPTIONS] NAME 'TERM'   gen_server:call({NAME, NODE}, TERM)
 *   cnode cast [OPTIONS] NAME 'TERM'   gen_server:cast({NAME, NODE}, TERM)
 *   cnode ping [OPTIONS]               net_adm:ping(NODE)
 *
 * TERM is Erlang term syntax (cn_term_parse); the reply is printed in
 * Erlang syntax (cn_term_print), one line on stdout.  NODE is any node, a
 * BEAM node or a C one.  The client is a hidden node of its own, named
 * cnode_cli_<pid>@host (short or long names as NODE has them), and leaves
 * no trace behind: it exits as soon as the answer is in.
 *
 * A cast is delivered before the client exits: after it, the client waits
 * for an answer from NODE's net_kernel on the same connection, which the
 * distribution keeps in order.
 *
 * Exit status (CLI_EXIT_* below, also in cnode(1) and the README): 0 with
 * an answer; otherwise a distinct code, with the reason on stderr.
 */
#include "cli.h"

#include <cnode.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_ERROR = 1,    /* anything else: no memory, no epmd, ... */
  CLI_EXIT_USAGE = 2,    /* a bad command line or term text */
  CLI_EXIT_TIMEOUT = 3,  /* no answer within --timeout */
  CLI_EXIT_NOPROC = 4,   /* no process registered as NAME on NODE */
  CLI_EXIT_NODEDOWN = 5, /* NODE could not be reached, or went away */
  CLI_EXIT_COOKIE = 6,   /* NODE refused our cookie */
  CLI_EXIT_EXIT = 7,     /* the server exited during the call */
  CLI_EXIT_REFUSED = 8   /* NODE refused the call: too large, mailbox full */
};

#define CLI_USAGE                                                              \
  "usage: cnode call [OPTIONS] NAME TERM\n"                                    \
  "       cnode cast [OPTIONS] NAME TERM\n"                                    \
  "       cnode ping [OPTIONS]\n"                                              \
  "options: [--node NODE] [--cookie-file PATH] [--timeout MS]\n"               \
  "         [--proto-dist inet_tcp|inet_tls] [--ssl-dist-optfile FILE]\n"

static void cli_help(FILE *f) {
  fputs(CLI_USAGE, f);
  fputs("\n"
        "Calls, casts to or pings a node of the cluster, BEAM or C.  TERM is\n"
        "in Erlang syntax, such as '{get, <<\"a\">>}'; a call prints the\n"
        "reply in Erlang syntax.\n\n"
        "  --node NODE         the node (default cnode@<host>); NAME alone\n"
        "                      means NAME@<host name up to its first dot>\n"
        "  --cookie-file PATH  read the cookie there (default: $CNODE_COOKIE\n"
        "                      if set, else $HOME/.erlang.cookie)\n"
        "  --timeout MS        how long to wait (default 5000)\n"
        "  --proto-dist P      inet_tcp (default) or inet_tls, as the node\n"
        "  --ssl-dist-optfile FILE  the TLS options (erl -ssl_dist_optfile);\n"
        "                      the client side's are used\n\n"
        "Exit status: 0 answered; 1 other error; 2 bad command line or term;\n"
        "3 timeout; 4 noproc; 5 nodedown; 6 cookie refused; 7 the server\n"
        "exited (its reason on stderr); 8 refused (too large, mailbox full).\n",
        f);
}

/* Maps a library error to an exit status, saying why on stderr. */
static int cli_fail(int rc, const char *node, const char *name,
                    const cn_buf *reason) {
  fflush(stdout); /* what stdout holds comes first */
  switch (rc) {
  case CN_ETIMEDOUT:
    fprintf(stderr, "cnode: timeout: no answer from %s\n", node);
    return CLI_EXIT_TIMEOUT;
  case CN_ENOPROC:
    fprintf(stderr, "cnode: noproc: no process %s on %s\n", name, node);
    return CLI_EXIT_NOPROC;
  case CN_ENOCONN:
    fprintf(stderr, "cnode: nodedown: cannot reach %s\n", node);
    return CLI_EXIT_NODEDOWN;
  case CN_EAUTH:
    fprintf(stderr, "cnode: %s refused our cookie\n", node);
    return CLI_EXIT_COOKIE;
  case CN_EEXIT: {
    cn_buf text = CN_BUF_INIT;
    cn_term_print(cn_buf_term(reason), &text);
    fprintf(stderr, "cnode: %s exited: %s\n", name,
            text.data ? text.data : "?");
    cn_buf_free(&text);
    return CLI_EXIT_EXIT;
  }
  case CN_ETOOBIG:
  case CN_EFULL:
    fprintf(stderr, "cnode: %s refused the call: %s\n", node, cn_strerror(rc));
    return CLI_EXIT_REFUSED;
  default:
    fprintf(stderr, "cnode: %s: %s\n", node, cn_strerror(rc));
    return CLI_EXIT_ERROR;
  }
}

/* The target node's full name: NODE as given when it has an @, else
 * NODE@<short host>. */
static int target_name(const char *arg, char *out, size_t cap) {
  if (strchr(arg, '@') != NULL) {
    if (strlen(arg) >= cap)
      return CN_ENOSPC;
    strcpy(out, arg);
    return 0;
  }
  return cn_node_shortname(arg, out, cap);
}

static int load_cookie(const char *file, cn_cookie *ck) {
  const char *env = getenv("CNODE_COOKIE");
  int rc;
  if (file == NULL && env != NULL && *env != '\0') {
    if (strlen(env) > CN_COOKIE_MAX) {
      fprintf(stderr, "cnode: CNODE_COOKIE is over %d bytes\n", CN_COOKIE_MAX);
      return CLI_EXIT_USAGE;
    }
    strcpy(ck->value, env);
    return 0;
  }
  rc = file ? cn_cookie_read(file, ck) : cn_cookie_load(ck);
  if (rc != 0) {
    fprintf(stderr, "cnode: %s\n", ck->error);
    return CLI_EXIT_ERROR;
  }
  return 0;
}

int cnode_read_tls_optfile(const char *path, cn_dist_tls *tls, cn_buf *store) {
  cn_buf text = CN_BUF_INIT;
  char buf[65536], why[256];
  ssize_t n = 0;
  int fd, rc = 0;

  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    fprintf(stderr, "cnode: --ssl-dist-optfile %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  while ((n = read(fd, buf, sizeof buf)) > 0 && text.len < (1u << 20))
    cn_buf_append(&text, buf, (size_t)n);
  close(fd);
  if (n < 0 || text.err ||
      (rc = cn_dist_tls_parse(text.data ? text.data : "", text.len, tls, store,
                              why, sizeof why)) != 0) {
    fprintf(stderr, "cnode: --ssl-dist-optfile %s: %s\n", path,
            n < 0 || text.err || rc == CN_ENOMEM ? "cannot read it" : why);
    cn_buf_free(&text);
    return -1;
  }
  cn_buf_free(&text);
  return 0;
}

bool cnode_cli_command(const char *word) {
  return strcmp(word, "call") == 0 || strcmp(word, "cast") == 0 ||
         strcmp(word, "ping") == 0;
}

int cnode_cli(int argc, char **argv) {
  static const struct option opts[] = {
      {"node", required_argument, NULL, 'n'},
      {"cookie-file", required_argument, NULL, 'c'},
      {"timeout", required_argument, NULL, 't'},
      {"proto-dist", required_argument, NULL, 'p'},
      {"ssl-dist-optfile", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *cmd = argv[0], *node_arg = "cnode", *cookie_file = NULL;
  const char *optfile = NULL;
  bool tls = false;
  cn_dist_tls tls_conf;
  cn_buf tls_store = CN_BUF_INIT;
  char node[CN_MAX_NODE_NAME + 1], self[CN_MAX_NODE_NAME + 1], base[64];
  long timeout = 5000;
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT, text = CN_BUF_INIT;
  cn_runtime_options ro = {.schedulers = 1};
  cn_dist_options d = {0};
  cn_runtime *rt = NULL;
  cn_cookie ck;
  int o, rc, status = CLI_EXIT_OK, want_args;

  if (!cnode_cli_command(cmd)) {
    fprintf(stderr, "cnode: unknown command '%s'\n" CLI_USAGE, cmd);
    return CLI_EXIT_USAGE;
  }
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    char *end;
    switch (o) {
    case 'n':
      node_arg = optarg;
      break;
    case 'c':
      cookie_file = optarg;
      break;
    case 't':
      timeout = strtol(optarg, &end, 10);
      if (*optarg == '\0' || *end != '\0' || timeout < 0 ||
          timeout > 2147483647) {
        fprintf(stderr, "cnode: --timeout wants 0..2147483647 ms, not '%s'\n",
                optarg);
        return CLI_EXIT_USAGE;
      }
      break;
    case 'p':
      if (strcmp(optarg, "inet_tls") != 0 && strcmp(optarg, "inet_tcp") != 0) {
        fprintf(stderr,
                "cnode: --proto-dist wants inet_tcp or inet_tls, not '%s'\n",
                optarg);
        return CLI_EXIT_USAGE;
      }
      tls = strcmp(optarg, "inet_tls") == 0;
      break;
    case 's':
      optfile = optarg;
      break;
    case 'h':
      cli_help(stdout);
      return CLI_EXIT_OK;
    case ':':
      fprintf(stderr, "cnode: %s wants an argument\n" CLI_USAGE,
              argv[optind - 1]);
      return CLI_EXIT_USAGE;
    default:
      fprintf(stderr, "cnode: unknown option '%s'\n" CLI_USAGE,
              argv[optind - 1]);
      return CLI_EXIT_USAGE;
    }
  }
  if (optfile && !tls) {
    fprintf(stderr, "cnode: --ssl-dist-optfile is for TLS distribution: "
                    "give --proto-dist inet_tls too\n");
    return CLI_EXIT_USAGE;
  }
  want_args = strcmp(cmd, "ping") == 0 ? 0 : 2;
  if (argc - optind != want_args) {
    fprintf(stderr, "cnode %s wants %s\n" CLI_USAGE, cmd,
            want_args ? "NAME and TERM" : "no arguments");
    return CLI_EXIT_USAGE;
  }
  if (want_args) {
    cn_parse_error pe = {0, NULL};
    const char *t = argv[optind + 1];
    if (cn_term_parse(&req, t, strlen(t), &pe) != 0) {
      fprintf(stderr, "cnode: TERM: %s at byte %zu: %s\n",
              pe.what ? pe.what : "out of memory", pe.offset, t);
      status = CLI_EXIT_USAGE;
      goto out;
    }
  }
  if (target_name(node_arg, node, sizeof node) != 0) {
    fprintf(stderr, "cnode: --node: not a node name: '%s'\n", node_arg);
    status = CLI_EXIT_USAGE;
    goto out;
  }
  if ((status = load_cookie(cookie_file, &ck)) != 0)
    goto out;
  /* Our own name: long when the target's host has a dot, as erl would
   * need to reach it. */
  snprintf(base, sizeof base, "cnode_cli_%ld", (long)getpid());
  rc = strchr(strchr(node, '@'), '.')
           ? cn_node_longname(base, self, sizeof self)
           : cn_node_shortname(base, self, sizeof self);
  if (rc != 0) {
    fprintf(stderr, "cnode: cannot make a node name: %s\n", cn_strerror(rc));
    status = CLI_EXIT_ERROR;
    goto out;
  }
  ro.node_name = self;
  d.cookie = ck.value;
  if (tls) {
    memset(&tls_conf, 0, sizeof(tls_conf));
    if (optfile &&
        cnode_read_tls_optfile(optfile, &tls_conf, &tls_store) != 0) {
      status = CLI_EXIT_ERROR;
      goto out;
    }
    d.tls = &tls_conf;
  }
  cn_log_set_level(CN_LOG_ERROR); /* the exit status says what went wrong */
  if ((rc = cn_runtime_new(&ro, &rt)) != 0 || (rc = cn_dist_start(rt, &d))) {
    fprintf(stderr, "cnode: cannot start distribution as %s: %s\n", self,
            cn_strerror(rc));
    status = CLI_EXIT_ERROR;
    goto out;
  }
  if ((rc = cn_dist_connect(rt, node, (cn_ms)timeout)) != 0) {
    if (strcmp(cmd, "ping") == 0)
      printf("pang\n");
    status = cli_fail(rc, node, "", &reply);
    goto out;
  }
  if (strcmp(cmd, "call") == 0) {
    rc = cn_call(rt, cn_to_remote(argv[optind], node), cn_buf_term(&req),
                 (cn_ms)timeout, &reply);
    if (rc != 0) {
      status = cli_fail(rc, node, argv[optind], &reply);
      goto out;
    }
    if (cn_term_print(cn_buf_term(&reply), &text) != 0) {
      status = cli_fail(CN_ENOMEM, node, argv[optind], &reply);
      goto out;
    }
    printf("%s\n", text.data);
    goto out;
  }
  if (strcmp(cmd, "cast") == 0 &&
      (rc = cn_cast(rt, cn_to_remote(argv[optind], node), cn_buf_term(&req)))) {
    status = cli_fail(rc, node, argv[optind], &reply);
    goto out;
  }
  /* ping, and the end of a cast: net_kernel's answer on the connection. */
  rc = cn_callf(rt, cn_to_remote("net_kernel", node), (cn_ms)timeout, &reply,
                "{is_auth, ~a}", self);
  if (rc != 0) {
    if (strcmp(cmd, "ping") == 0)
      printf("pang\n");
    status = cli_fail(rc, node, "net_kernel", &reply);
    goto out;
  }
  if (strcmp(cmd, "ping") == 0)
    printf("pong\n");
out:
  fflush(stdout);
  if (rt != NULL)
    cn_runtime_free(rt);
  cn_buf_free(&req);
  cn_buf_free(&reply);
  cn_buf_free(&text);
  cn_buf_free(&tls_store);
  return status;
}
