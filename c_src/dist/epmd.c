/* The epmd messages (ERTS "Distribution Protocol", the EPMD section) and
 * the start of a local epmd.  Encoders append to a cn_buf; parsers read a
 * caller's buffer and never past its length, so the connection layer can
 * hand them whatever it has read so far.
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist/proto.h"
#include "term/term_internal.h"

enum {
  EPMD_ALIVE2_X_RESP = 118,
  EPMD_PORT2_RESP = 119,
  EPMD_ALIVE2_REQ = 120,
  EPMD_ALIVE2_RESP = 121,
  EPMD_PORT_PLEASE2_REQ = 122,
  EPMD_NODE_HIDDEN = 72,
  EPMD_NODE_NORMAL = 77,
  EPMD_PROTO_TCP = 0,
  /* Version 6 only, as OTP 25's erl_epmd registers (ERL_DIST_VER_LOW and
   * _HIGH in dist.hrl): every peer that can talk to us sends the 'N'
   * send_name, so there is no version 5 to offer. */
  EPMD_DIST_VERSION = 6
};

/* The part of a node name before '@' that epmd registers and looks up.
 * epmd keeps at most MAXSYMLEN (255) bytes of it. */
static int alive_ok(const char *alive, size_t *len) {
  if (alive == NULL)
    return 0;
  *len = strlen(alive);
  return *len > 0 && *len <= CN_MAX_NODE_NAME;
}

int cn__epmd_alive2_req(cn_buf *out, const char *alive, uint16_t port,
                        int hidden) {
  char msg[2 + 13 + CN_MAX_NODE_NAME];
  size_t n, body;

  if (!alive_ok(alive, &n))
    return CN_EINVAL;
  body = 1 + 2 + 1 + 1 + 2 + 2 + 2 + n + 2;
  cn__put16(msg, (uint32_t)body);
  msg[2] = (char)EPMD_ALIVE2_REQ;
  cn__put16(msg + 3, port);
  msg[5] = (char)(hidden ? EPMD_NODE_HIDDEN : EPMD_NODE_NORMAL);
  msg[6] = (char)EPMD_PROTO_TCP;
  cn__put16(msg + 7, EPMD_DIST_VERSION); /* highest */
  cn__put16(msg + 9, EPMD_DIST_VERSION); /* lowest */
  cn__put16(msg + 11, (uint32_t)n);
  memcpy(msg + 13, alive, n);
  cn__put16(msg + 13 + n, 0); /* no Extra */
  return cn_buf_append(out, msg, 2 + body);
}

int cn__epmd_alive2_resp(const char *buf, size_t len, uint32_t *creation) {
  const unsigned char *u = (const unsigned char *)buf;
  size_t need;

  if (len < 1)
    return 1;
  if (u[0] == EPMD_ALIVE2_X_RESP)
    need = 6;
  else if (u[0] == EPMD_ALIVE2_RESP)
    need = 4;
  else
    return CN_EPROTO;
  if (len < 2)
    return 1;
  /* A refusal is final whatever follows, so it is reported without
   * waiting for the creation bytes. */
  if (u[1] != 0)
    return CN_EEXIST;
  if (len < need)
    return 1;
  /* epmd says nothing more on this connection until it closes, so any
   * byte past the reply is garbage (erl_epmd rejects it too). */
  if (len > need)
    return CN_EPROTO;
  *creation = need == 6 ? cn__get32(buf + 2) : cn__get16(buf + 2);
  return 0;
}

int cn__epmd_port2_req(cn_buf *out, const char *alive) {
  char msg[3 + CN_MAX_NODE_NAME];
  size_t n;

  if (!alive_ok(alive, &n))
    return CN_EINVAL;
  cn__put16(msg, (uint32_t)(1 + n));
  msg[2] = (char)EPMD_PORT_PLEASE2_REQ;
  memcpy(msg + 3, alive, n);
  return cn_buf_append(out, msg, 3 + n);
}

int cn__epmd_port2_resp(const char *buf, size_t len, uint16_t *port,
                        uint16_t *highest_version) {
  const unsigned char *u = (const unsigned char *)buf;

  if (len < 1)
    return 1;
  if (u[0] != EPMD_PORT2_RESP)
    return CN_EPROTO;
  if (len < 2)
    return 1;
  if (u[1] != 0)
    return CN_ENOENT;
  /* Tag, result, port, node type, protocol, highest and lowest version.
   * The name and Extra that follow are not needed (erl_epmd throws them
   * away too), so the answer is complete here and epmd closes the socket
   * after the rest. */
  if (len < 10)
    return 1;
  *port = cn__get16(buf + 2);
  *highest_version = cn__get16(buf + 6);
  return 0;
}

int cn__epmd_spawn_daemon(void) {
  char arg0[] = "epmd", arg1[] = "-daemon";
  char *argv[] = {arg0, arg1, NULL};
  pid_t pid;
  int status;

  posix_spawnattr_t attr;
  sigset_t none, dfl;
  int rc;

  /* The daemon outlives us: it must not inherit our blocked signals (a
   * node program typically blocks SIGINT and SIGTERM to wait for them)
   * nor an ignored SIGPIPE. */
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  sigaddset(&dfl, SIGINT);
  sigaddset(&dfl, SIGTERM);
  sigaddset(&dfl, SIGHUP);
  if (posix_spawnattr_init(&attr) != 0)
    return CN_ESYSTEM;
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  rc = posix_spawnp(&pid, "epmd", NULL, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return CN_ESYSTEM;
  /* `epmd -daemon` forks the daemon and exits 0 at once, before the
   * daemon binds its port, so success here only means that epmd could be
   * run.  The caller learns whether an epmd listens by connecting to it
   * (a daemon that finds the port taken by another epmd just exits). */
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return CN_ESYSTEM;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return CN_ESYSTEM;
  return 0;
}
