/* TLS distribution (inet_tls_dist) on OpenSSL memory BIOs; see tls.h.
 *
 * What OTP 25's inet_tls_dist does, and so what this does:
 *   - TLS 1.2 only unless the options say versions (dist_defaults/1);
 *   - verify_none on both sides unless verify_peer is set; with it, a
 *     server checks the client's chain (and, with fail_if_no_peer_cert,
 *     that there is one), and a client checks the server's chain and
 *     that the certificate names the host part of the node it dials (the
 *     server_name_indication inet_tls_dist sets, which ssl checks);
 *   - a server sends no session tickets (ssl's default).
 * The options come from an ssl_dist_optfile's text (cn_dist_tls_parse)
 * or from -ssl_dist_opt style pairs (cn_dist_tls_set). */
#include "dist/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define OTP_DEPTH 10 /* ssl's default depth */
#define READ_ROOM ((size_t)16 << 10)

struct cn__tls_ctx {
  SSL_CTX *server, *client;
};

struct cn__tls {
  SSL *ssl;
  BIO *rbio, *wbio; /* ciphertext in, ciphertext out (owned by ssl) */
  int up;
  char why[160];
};

/* ---- Options --------------------------------------------------------- */

static int set_verify(cn_tls_verify *v, const char *s) {
  if (strcmp(s, "verify_peer") == 0)
    *v = CN_TLS_VERIFY_PEER;
  else if (strcmp(s, "verify_none") == 0)
    *v = CN_TLS_VERIFY_NONE;
  else
    return CN_EINVAL;
  return 0;
}

static int set_bool(bool *b, const char *s) {
  if (strcmp(s, "true") == 0)
    *b = true;
  else if (strcmp(s, "false") == 0)
    *b = false;
  else
    return CN_EINVAL;
  return 0;
}

static int set_version(unsigned *v, const char *s) {
  if (strcmp(s, "tlsv1.2") == 0)
    *v |= CN_TLS_V1_2;
  else if (strcmp(s, "tlsv1.3") == 0)
    *v |= CN_TLS_V1_3;
  else
    return CN_EINVAL;
  return 0;
}

/* Options that OTP's ssl takes and that change nothing the peer sees
 * here: accepted, so that an optfile written for erl works as it is. */
static bool ignored(const char *opt) {
  static const char *const names[] = {"secure_renegotiate", "reuse_sessions",
                                      "hibernate_after", NULL};
  size_t i;
  for (i = 0; names[i]; i++)
    if (strcmp(opt, names[i]) == 0)
      return true;
  return false;
}

/* True for the options of the optfile that this node has. */
static bool known(const char *opt, bool server) {
  static const char *const names[] = {"certfile",   "keyfile", "password",
                                      "cacertfile", "verify",  "depth",
                                      "versions",   NULL};
  size_t i;
  for (i = 0; names[i]; i++)
    if (strcmp(opt, names[i]) == 0)
      return true;
  return ignored(opt) || (server && strcmp(opt, "fail_if_no_peer_cert") == 0);
}

/* One option of one side, its value as text.  Strings are kept. */
static int side_set(cn_dist_tls_side *s, bool server, const char *opt,
                    const char *val) {
  unsigned long d;
  char *end;
  if (strcmp(opt, "certfile") == 0)
    s->certfile = val;
  else if (strcmp(opt, "keyfile") == 0)
    s->keyfile = val;
  else if (strcmp(opt, "password") == 0)
    s->password = val;
  else if (strcmp(opt, "cacertfile") == 0)
    s->cacertfile = val;
  else if (strcmp(opt, "verify") == 0)
    return set_verify(&s->verify, val);
  else if (server && strcmp(opt, "fail_if_no_peer_cert") == 0)
    return set_bool(&s->fail_if_no_peer_cert, val);
  else if (strcmp(opt, "depth") == 0) {
    d = strtoul(val, &end, 10);
    if (!*val || *end || d > 100)
      return CN_EINVAL;
    s->depth = (unsigned)d;
  } else if (!ignored(opt))
    return CN_EINVAL;
  return 0;
}

int cn_dist_tls_set(cn_dist_tls *tls, const char *key, const char *value) {
  if (!tls || !key || !value)
    return CN_EINVAL;
  if (strncmp(key, "server_", 7) == 0)
    return side_set(&tls->server, true, key + 7, value);
  if (strncmp(key, "client_", 7) == 0)
    return side_set(&tls->client, false, key + 7, value);
  return CN_EINVAL;
}

/* The text of a string ("..."), a binary, or an atom, NUL-terminated in
 * buf.  Returns 0 or -1. */
static int term_text(cn_term v, char *buf, size_t cap) {
  const char *bin;
  cn_iter it;
  cn_term e;
  int64_t c;
  size_t n = 0;
  if (cn_get_atom(v, buf, cap) == 0)
    return 0;
  if (cn_get_binary(v, &bin, &n) == 0) {
    if (n >= cap || memchr(bin, 0, n))
      return -1;
    memcpy(buf, bin, n);
    buf[n] = '\0';
    return 0;
  }
  if (cn_term_typeof(v) != CN_T_LIST || cn_iter_init(&it, v, NULL) != 0)
    return -1;
  while (cn_iter_next(&it, &e)) {
    if (n + 1 >= cap || cn_get_int64(e, &c) != 0 || c < 1 || c > 255)
      return -1;
    buf[n++] = (char)c;
  }
  buf[n] = '\0';
  return 0;
}

/* Where a string option's text went in the store: fixed up into a
 * pointer once the store stops growing. */
typedef struct fixup {
  const char **field;
  size_t off;
} fixup;

#define MAX_FIXUPS 16

static int parse_side(cn_term opts, cn_dist_tls_side *s, bool server,
                      cn_buf *store, fixup *fx, size_t *nfx, char *why,
                      size_t cap) {
  char key[64], val[4096];
  int64_t num;
  cn_iter it;
  cn_term e, v, x;
  if (cn_term_typeof(opts) == CN_T_NIL)
    return 0;
  if (cn_term_typeof(opts) != CN_T_LIST || cn_iter_init(&it, opts, NULL) != 0) {
    snprintf(why, cap, "%s: wants a list of options",
             server ? "server" : "client");
    return CN_EINVAL;
  }
  while (cn_iter_next(&it, &e)) {
    int rc = 0;
    if (cn_match(e, "{~a, ~t}", key, sizeof key, &v) != 0) {
      snprintf(why, cap, "%s: an option is not {Key, Value}",
               server ? "server" : "client");
      return CN_EINVAL;
    }
    if (strcmp(key, "versions") == 0) {
      cn_iter vi;
      if (cn_iter_init(&vi, v, NULL) != 0)
        rc = CN_EINVAL;
      s->versions = 0;
      while (rc == 0 && cn_iter_next(&vi, &x))
        rc = term_text(x, val, sizeof val) != 0
                 ? CN_EINVAL
                 : set_version(&s->versions, val);
      if (rc == 0 && s->versions == 0)
        rc = CN_EINVAL;
    } else if (cn_get_int64(v, &num) == 0) {
      snprintf(val, sizeof val, "%lld", (long long)num);
      rc = side_set(s, server, key, val);
    } else if (term_text(v, val, sizeof val) != 0) {
      rc = CN_EINVAL;
    } else {
      /* Strings go to the store; a kept pointer is fixed up later. */
      const char **field = NULL;
      if (strcmp(key, "certfile") == 0)
        field = &s->certfile;
      else if (strcmp(key, "keyfile") == 0)
        field = &s->keyfile;
      else if (strcmp(key, "password") == 0)
        field = &s->password;
      else if (strcmp(key, "cacertfile") == 0)
        field = &s->cacertfile;
      rc = side_set(s, server, key, val);
      if (rc == 0 && field) {
        if (*nfx == MAX_FIXUPS) {
          rc = CN_EINVAL;
        } else {
          fx[*nfx].field = field;
          fx[*nfx].off = store->len;
          (*nfx)++;
          if (cn_buf_append(store, val, strlen(val) + 1) != 0)
            return CN_ENOMEM;
        }
      }
    }
    if (rc != 0) {
      snprintf(why, cap, "%s: %s option %s", server ? "server" : "client",
               known(key, server) ? "a bad value for the"
                                  : "the C node does not support the",
               key);
      return CN_EINVAL;
    }
  }
  return 0;
}

int cn_dist_tls_parse(const char *text, size_t len, cn_dist_tls *tls,
                      cn_buf *store, char *why, size_t cap) {
  cn_buf term = CN_BUF_INIT;
  cn_parse_error pe = {0, NULL};
  fixup fx[MAX_FIXUPS];
  size_t nfx = 0, i;
  char side[16];
  cn_iter it;
  cn_term e, opts;
  int rc;

  if (!text || !tls || !store || !why || cap == 0)
    return CN_EINVAL;
  memset(tls, 0, sizeof(*tls));
  why[0] = '\0';
  if ((rc = cn_term_parse(&term, text, len, &pe)) != 0) {
    if (rc == CN_EBADFMT)
      snprintf(why, cap, "%s at byte %zu", pe.what ? pe.what : "bad syntax",
               pe.offset);
    cn_buf_free(&term);
    return rc == CN_ENOMEM ? rc : CN_EINVAL;
  }
  rc = 0;
  if ((cn_term_typeof(cn_buf_term(&term)) != CN_T_LIST &&
       cn_term_typeof(cn_buf_term(&term)) != CN_T_NIL) ||
      cn_iter_init(&it, cn_buf_term(&term), NULL) != 0) {
    snprintf(why, cap, "wants a list: [{server, [...]}, {client, [...]}]");
    rc = CN_EINVAL;
  }
  while (rc == 0 && cn_iter_next(&it, &e)) {
    if (cn_match(e, "{~a, ~t}", side, sizeof side, &opts) != 0 ||
        (strcmp(side, "server") != 0 && strcmp(side, "client") != 0)) {
      snprintf(why, cap, "wants {server, [...]} and {client, [...]} only");
      rc = CN_EINVAL;
      break;
    }
    rc = strcmp(side, "server") == 0
             ? parse_side(opts, &tls->server, true, store, fx, &nfx, why, cap)
             : parse_side(opts, &tls->client, false, store, fx, &nfx, why, cap);
  }
  cn_buf_free(&term);
  if (rc != 0)
    return rc;
  for (i = 0; i < nfx; i++)
    *fx[i].field = store->data + fx[i].off;
  return 0;
}

/* ---- Contexts --------------------------------------------------------- */

/* The reason of OpenSSL's most recent error, as static text. */
static const char *ssl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown error";
}

/* A file option that cannot be read: says so with the system's reason
 * (OpenSSL's own is only "system lib").  Returns true when it is fine. */
static bool readable(const char *who, const char *opt, const char *path,
                     char *why, size_t cap) {
  FILE *f = fopen(path, "r");
  if (f) {
    fclose(f);
    return true;
  }
  snprintf(why, cap, "%s %s %s: %s", who, opt, path, strerror(errno));
  return false;
}

/* Puts the key's password in front of OpenSSL's default callback only
 * while the key loads. */
static int side_ctx(const cn_dist_tls_side *s, bool server, SSL_CTX **out,
                    char *why, size_t cap) {
  const char *who = server ? "server" : "client";
  unsigned v = s->versions ? s->versions : CN_TLS_V1_2;
  SSL_CTX *ctx =
      SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  int mode;
  if (!ctx) {
    snprintf(why, cap, "%s: cannot make a TLS context: %s", who, ssl_reason());
    return CN_ENOMEM;
  }
  SSL_CTX_set_min_proto_version(ctx, v & CN_TLS_V1_2 ? TLS1_2_VERSION
                                                     : TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, v & CN_TLS_V1_3 ? TLS1_3_VERSION
                                                     : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (server)
    SSL_CTX_set_num_tickets(ctx, 0);
  else
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (s->certfile) {
    const char *key = s->keyfile ? s->keyfile : s->certfile;
    int ok;
    if (!readable(who, "certfile", s->certfile, why, cap) ||
        !readable(who, "keyfile", key, why, cap))
      goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, s->certfile) != 1) {
      snprintf(why, cap, "%s certfile %s: %s", who, s->certfile, ssl_reason());
      goto fail;
    }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)s->password);
    ok = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (!ok) {
      snprintf(why, cap, "%s keyfile %s: %s", who, key, ssl_reason());
      goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      snprintf(why, cap, "%s: the key does not match the certificate", who);
      goto fail;
    }
  } else if (s->keyfile) {
    snprintf(why, cap, "%s: a keyfile without a certfile", who);
    goto fail;
  }
  if (s->cacertfile && !readable(who, "cacertfile", s->cacertfile, why, cap))
    goto fail;
  if (s->cacertfile &&
      SSL_CTX_load_verify_locations(ctx, s->cacertfile, NULL) != 1) {
    snprintf(why, cap, "%s cacertfile %s: %s", who, s->cacertfile,
             ssl_reason());
    goto fail;
  }
  if (s->verify == CN_TLS_VERIFY_PEER && !s->cacertfile) {
    snprintf(why, cap, "%s: verify_peer needs a cacertfile", who);
    goto fail;
  }
  mode = SSL_VERIFY_NONE;
  if (s->verify == CN_TLS_VERIFY_PEER) {
    mode = SSL_VERIFY_PEER;
    if (server && s->fail_if_no_peer_cert)
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  SSL_CTX_set_verify(ctx, mode, NULL);
  SSL_CTX_set_verify_depth(ctx, s->depth ? (int)s->depth : OTP_DEPTH);
  *out = ctx;
  return 0;
fail:
  SSL_CTX_free(ctx);
  return CN_EINVAL;
}

int cn__tls_ctx_new(const cn_dist_tls *o, cn__tls_ctx **out, char *why,
                    size_t cap) {
  cn__tls_ctx *x = calloc(1, sizeof(*x));
  int rc;
  if (!x)
    return CN_ENOMEM;
  ERR_clear_error();
  if ((rc = side_ctx(&o->server, true, &x->server, why, cap)) != 0 ||
      (rc = side_ctx(&o->client, false, &x->client, why, cap)) != 0) {
    cn__tls_ctx_free(x);
    ERR_clear_error();
    return rc;
  }
  *out = x;
  return 0;
}

void cn__tls_ctx_free(cn__tls_ctx *x) {
  if (!x)
    return;
  SSL_CTX_free(x->server);
  SSL_CTX_free(x->client);
  free(x);
}

/* ---- Connections ------------------------------------------------------ */

static bool is_ip(const char *host) {
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

cn__tls *cn__tls_new(cn__tls_ctx *x, bool client, const char *host) {
  cn__tls *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->ssl = SSL_new(client ? x->client : x->server);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio)
    goto fail;
  /* An empty memory BIO says "retry", not end of file. */
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns them now */
  if (client) {
    SSL_set_connect_state(t->ssl);
    if (host && *host) {
      /* inet_tls_dist sets server_name_indication to the host part of
       * the node name; with verify_peer, ssl checks the certificate
       * against it. */
      if (is_ip(host)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) != 1)
          goto fail_ssl;
      } else if (SSL_set_tlsext_host_name(t->ssl, host) != 1 ||
                 SSL_set1_host(t->ssl, host) != 1) {
        goto fail_ssl;
      }
    }
  } else {
    SSL_set_accept_state(t->ssl);
  }
  return t;
fail:
  BIO_free(t->rbio);
  BIO_free(t->wbio);
fail_ssl:
  SSL_free(t->ssl);
  free(t);
  ERR_clear_error();
  return NULL;
}

void cn__tls_free(cn__tls *t) {
  if (!t)
    return;
  SSL_free(t->ssl);
  free(t);
}

/* Says why an SSL call failed, in t->why, and clears OpenSSL's errors.
 * A certificate we refused says what was wrong with it. */
static int failed(cn__tls *t, const char *what) {
  long vr = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (vr != X509_V_OK && e &&
      ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
    snprintf(t->why, sizeof(t->why), "TLS %s: certificate refused: %s", what,
             X509_verify_cert_error_string(vr));
  else
    snprintf(t->why, sizeof(t->why), "TLS %s: %s%s", what,
             r ? r : "connection closed by the peer",
             e && ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER
                 ? " (the peer does not speak TLS: a plain TCP node?)"
                 : "");
  ERR_clear_error();
  return CN_EPROTO;
}

int cn__tls_start(cn__tls *t) {
  int r;
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->up = 1;
    return 0;
  }
  r = SSL_get_error(t->ssl, r);
  if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
    return 0;
  return failed(t, "handshake");
}

int cn__tls_unwrap(cn__tls *t, cn_buf *in, size_t n) {
  int r, status = 0;
  ERR_clear_error();
  if (n > 0) {
    /* The ciphertext lies just past in's bytes; the plaintext goes over
     * it once the BIO has its copy. */
    if (BIO_write(t->rbio, in->data + in->len, (int)n) != (int)n)
      return CN_ENOMEM;
  }
  if (!t->up) {
    r = SSL_do_handshake(t->ssl);
    if (r != 1) {
      r = SSL_get_error(t->ssl, r);
      if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
        return 0;
      return failed(t, "handshake");
    }
    t->up = 1;
    status = 1;
  }
  for (;;) {
    size_t room;
    if (cn_buf_reserve(in, READ_ROOM) != 0)
      return CN_ENOMEM;
    room = in->cap - in->len;
    r = SSL_read(t->ssl, in->data + in->len,
                 room > INT_MAX ? INT_MAX : (int)room);
    if (r > 0) {
      in->len += (size_t)r;
      continue;
    }
    r = SSL_get_error(t->ssl, r);
    if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
      return status;
    if (r == SSL_ERROR_ZERO_RETURN) {
      snprintf(t->why, sizeof(t->why), "closed by peer (TLS close_notify)");
      return CN_ENOCONN;
    }
    return failed(t, "read");
  }
}

int cn__tls_wrap(cn__tls *t, cn_buf *out) {
  size_t off = 0, pend;
  ERR_clear_error();
  if (out->len > 0 && !t->up) {
    snprintf(t->why, sizeof(t->why), "TLS: data before the handshake");
    return CN_EPROTO;
  }
  while (off < out->len) {
    size_t n = out->len - off;
    int w = SSL_write(t->ssl, out->data + off, n > INT_MAX ? INT_MAX : (int)n);
    if (w <= 0)
      return failed(t, "write");
    off += (size_t)w;
  }
  cn_buf_reset(out);
  pend = BIO_ctrl_pending(t->wbio);
  if (pend == 0)
    return 0;
  if (cn_buf_reserve(out, pend) != 0)
    return CN_ENOMEM;
  if (BIO_read(t->wbio, out->data, (int)pend) != (int)pend)
    return CN_EPROTO;
  out->len = pend;
  return 0;
}

bool cn__tls_pending(const cn__tls *t) { return BIO_ctrl_pending(t->wbio) > 0; }

bool cn__tls_up(const cn__tls *t) { return t->up; }

const char *cn__tls_why(const cn__tls *t) {
  return t->why[0] ? t->why : "TLS error";
}

void cn__tls_describe(const cn__tls *t, char *buf, size_t cap) {
  X509 *peer = SSL_get1_peer_certificate(t->ssl);
  char subject[128] = "no certificate";
  if (peer) {
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
                              subject, sizeof(subject));
    X509_free(peer);
  }
  snprintf(buf, cap, "%s %s, peer certificate %s%s", SSL_get_version(t->ssl),
           SSL_get_cipher_name(t->ssl), peer ? "CN=" : "", subject);
}
