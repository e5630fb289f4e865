/* TLS distribution tests, C node to C node: runtimes in this process,
 * registered with the real epmd, over real loopback TCP, with a CA and
 * certificates this program makes with OpenSSL (EC P-256) in a scratch
 * directory.  Real erl -proto_dist inet_tls nodes are in
 * test_erl/cnode_tls_SUITE.erl. */
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
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>
#include "helpers.h"

static char dir[256]; /* the scratch directory with the PEM files */

/* ---- Certificates ------------------------------------------------------ */

static EVP_PKEY *key_new(void) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  assert_non_null(k);
  return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509_EXTENSION *ext;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  assert_non_null(ext);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/* A certificate for key named cn, signed by issuer (NULL: self-signed, a
 * CA), for this host (san NULL) or for the names in san. */
static X509 *cert_new(const char *cn, EVP_PKEY *key, X509 *issuer,
                      EVP_PKEY *issuer_key, long serial, const char *san_in) {
  X509 *c = X509_new();
  char host[256], san[600];
  assert_non_null(c);
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 86400);
  X509_set_pubkey(c, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC,
                             (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer)
                                 : X509_get_subject_name(c));
  if (!issuer) {
    add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else if (san_in) {
    add_ext(c, issuer, NID_subject_alt_name, san_in);
  } else {
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    if (strchr(host, '.'))
      *strchr(host, '.') = '\0';
    snprintf(san, sizeof(san), "DNS:localhost,DNS:%s,IP:127.0.0.1", host);
    add_ext(c, issuer, NID_subject_alt_name, san);
  }
  assert_true(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return c;
}

static void write_pem(const char *name, X509 *cert, EVP_PKEY *key) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  if (cert)
    assert_int_equal(PEM_write_X509(f, cert), 1);
  if (key)
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL),
                     1);
  fclose(f);
}

/* ca.pem; node.pem (certificate and key in one file, signed by ca);
 * rogue.pem (signed by a CA nobody trusts); other.pem (signed by ca, for
 * another host). */
static int setup(void **st) {
  EVP_PKEY *cak, *nk, *rck, *rk;
  X509 *ca, *n, *rca, *r, *o;
  (void)st;
  snprintf(dir, sizeof(dir), "%s/cn-test-tls-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir))
    return -1;
  cak = key_new();
  nk = key_new();
  rck = key_new();
  rk = key_new();
  ca = cert_new("test CA", cak, NULL, NULL, 1, NULL);
  n = cert_new("node", nk, ca, cak, 2, NULL);
  rca = cert_new("rogue CA", rck, NULL, NULL, 3, NULL);
  r = cert_new("rogue", rk, rca, rck, 4, NULL);
  o = cert_new("other", nk, ca, cak, 5, "DNS:other.example");
  write_pem("ca.pem", ca, NULL);
  write_pem("node.pem", n, nk);
  write_pem("rogue.pem", r, rk);
  write_pem("other.pem", o, nk);
  X509_free(o);
  X509_free(ca);
  X509_free(n);
  X509_free(rca);
  X509_free(r);
  EVP_PKEY_free(cak);
  EVP_PKEY_free(nk);
  EVP_PKEY_free(rck);
  EVP_PKEY_free(rk);
  return 0;
}

static int teardown(void **st) {
  const char *f[] = {"ca.pem", "node.pem", "rogue.pem", "other.pem"};
  char path[512];
  size_t i;
  (void)st;
  for (i = 0; i < 4; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, f[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

/* ---- Nodes --------------------------------------------------------------- */

typedef struct tls_conf {
  cn_dist_tls tls;
  char cert[512], ca[512];
} tls_conf;

/* verify_peer both ways with cert (a file of dir) and ca.pem. */
static void conf(tls_conf *c, const char *cert, unsigned versions) {
  memset(c, 0, sizeof(*c));
  snprintf(c->cert, sizeof(c->cert), "%s/%s", dir, cert);
  snprintf(c->ca, sizeof(c->ca), "%s/ca.pem", dir);
  c->tls.server.certfile = c->tls.client.certfile = c->cert;
  c->tls.server.cacertfile = c->tls.client.cacertfile = c->ca;
  c->tls.server.verify = c->tls.client.verify = CN_TLS_VERIFY_PEER;
  c->tls.server.fail_if_no_peer_cert = true;
  c->tls.server.versions = c->tls.client.versions = versions;
}

static cn_runtime *node(char *name, size_t cap, const char *tag,
                        const cn_dist_tls *tls) {
  cn_runtime_options o;
  cn_dist_options d;
  cn_runtime *rt = NULL;
  node_name(name, cap, tag);
  memset(&o, 0, sizeof(o));
  o.schedulers = 2;
  o.node_name = name;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  memset(&d, 0, sizeof(d));
  d.cookie = "tlscookie";
  d.handshake_ms = (unsigned)tmo(3000);
  d.tls = tls;
  assert_int_equal(cn_dist_start(rt, &d), 0);
  return rt;
}

static int srv_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                    cn_buf *reply) {
  cn_term t;
  int64_t n;
  (void)self;
  (void)state;
  (void)from;
  if (cn_match(req, "{echo, ~t}", &t) == 0)
    return cn_put_term(reply, t) == 0 ? CN_REPLY : CN_STOP;
  if (cn_match(req, "{blob, ~i}", &n) == 0) {
    char *z = malloc((size_t)n);
    int rc;
    memset(z, 0x5a, (size_t)n);
    rc = cn_put_binary(reply, z, (size_t)n);
    free(z);
    return rc == 0 ? CN_REPLY : CN_STOP;
  }
  return CN_STOP;
}

static const cn_server_ops srv_ops = {.name = "tls_srv",
                                      .handle_call = srv_call};

static void start_echo(cn_runtime *rt) {
  cn_start_options o = {"echo", NULL};
  cn_pid pid;
  assert_int_equal(cn_start(rt, &srv_ops, NULL, &o, &pid), 0);
}

/* ---- Tests ----------------------------------------------------------- */

/* Calls both ways over TLS 1.2 and 1.3, and a 3 MiB reply in fragments. */
static void tls_calls(unsigned versions) {
  char a_name[128], b_name[128];
  tls_conf ca, cb;
  cn_runtime *a, *b;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  const char *bin = NULL;
  size_t n = 0;
  cn_dist_stats s;
  conf(&ca, "node.pem", versions);
  conf(&cb, "node.pem", versions);
  a = node(a_name, sizeof(a_name), "tlsa", &ca.tls);
  b = node(b_name, sizeof(b_name), "tlsb", &cb.tls);
  start_echo(a);
  start_echo(b);
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name),
                           T(&q, "{echo, hello}"), tmo(5000), &r),
                   0);
  assert_true(cn_is_atom(cn_buf_term(&r), "hello"));
  assert_int_equal(cn_call(b, cn_to_remote("echo", a_name),
                           T(&q, "{echo, back}"), tmo(5000), &r),
                   0);
  assert_true(cn_is_atom(cn_buf_term(&r), "back"));
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name),
                           T(&q, "{blob, ~i}", (int64_t)(3 << 20)), tmo(10000),
                           &r),
                   0);
  assert_int_equal(cn_get_binary(cn_buf_term(&r), &bin, &n), 0);
  assert_int_equal(n, 3 << 20);
  assert_true(bin[0] == 0x5a && bin[n - 1] == 0x5a);
  assert_int_equal(cn_dist_get_stats(b, &s), 0);
  assert_true(s.fragments_out > 1);
  assert_int_equal(s.handshakes_failed, 0);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(b);
}

static void test_tls12_calls(void **st) {
  (void)st;
  tls_calls(0);
}

static void test_tls13_calls(void **st) {
  (void)st;
  tls_calls(CN_TLS_V1_3);
}

/* A certificate from an unknown CA is refused whichever side dials, and
 * the node serves trusted peers on. */
static void test_untrusted_refused(void **st) {
  char a_name[128], b_name[128], r_name[128];
  tls_conf ca, cb, cr;
  cn_runtime *a, *b, *rogue;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  cn_dist_stats s;
  (void)st;
  conf(&ca, "node.pem", 0);
  conf(&cb, "node.pem", 0);
  conf(&cr, "rogue.pem", 0);
  a = node(a_name, sizeof(a_name), "tlsa", &ca.tls);
  b = node(b_name, sizeof(b_name), "tlsb", &cb.tls);
  rogue = node(r_name, sizeof(r_name), "tlsr", &cr.tls);
  start_echo(b);
  start_echo(rogue);
  assert_int_equal(cn_call(rogue, cn_to_remote("echo", b_name),
                           T(&q, "{echo, x}"), tmo(5000), &r),
                   CN_ENOCONN);
  assert_int_equal(cn_call(b, cn_to_remote("echo", r_name), T(&q, "{echo, x}"),
                           tmo(5000), &r),
                   CN_ENOCONN);
  assert_int_equal(cn_call(a, cn_to_remote("echo", b_name), T(&q, "{echo, y}"),
                           tmo(5000), &r),
                   0);
  assert_int_equal(cn_dist_get_stats(b, &s), 0);
  assert_true(s.handshakes_failed >= 2);
  assert_int_equal(s.nodes_up, 1);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(b);
  cn_runtime_free(rogue);
}

/* With verify_peer a client checks that the server's certificate names
 * the host of the node it dials (inet_tls_dist's server_name_indication);
 * a server checks no names, as OTP's does by default. */
static void test_hostname_checked(void **st) {
  char a_name[128], w_name[128];
  tls_conf ca, cw;
  cn_runtime *a, *w;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  (void)st;
  conf(&ca, "node.pem", 0);
  conf(&cw, "other.pem", 0);
  a = node(a_name, sizeof(a_name), "tlsa", &ca.tls);
  w = node(w_name, sizeof(w_name), "tlsw", &cw.tls);
  start_echo(a);
  start_echo(w);
  assert_int_equal(cn_call(a, cn_to_remote("echo", w_name), T(&q, "{echo, x}"),
                           tmo(5000), &r),
                   CN_ENOCONN);
  assert_int_equal(cn_call(w, cn_to_remote("echo", a_name), T(&q, "{echo, y}"),
                           tmo(5000), &r),
                   0);
  assert_true(cn_is_atom(cn_buf_term(&r), "y"));
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(a);
  cn_runtime_free(w);
}

/* A plain TCP node and a TLS node cannot talk, either way. */
static void test_plain_refused(void **st) {
  char b_name[128], p_name[128];
  tls_conf cb;
  cn_runtime *b, *p;
  cn_buf q = CN_BUF_INIT, r = CN_BUF_INIT;
  (void)st;
  conf(&cb, "node.pem", 0);
  b = node(b_name, sizeof(b_name), "tlsb", &cb.tls);
  p = node(p_name, sizeof(p_name), "plain", NULL);
  start_echo(b);
  start_echo(p);
  assert_int_equal(cn_call(p, cn_to_remote("echo", b_name), T(&q, "{echo, x}"),
                           tmo(8000), &r),
                   CN_ENOCONN);
  assert_int_equal(cn_call(b, cn_to_remote("echo", p_name), T(&q, "{echo, x}"),
                           tmo(8000), &r),
                   CN_ENOCONN);
  cn_buf_free(&q);
  cn_buf_free(&r);
  cn_runtime_free(b);
  cn_runtime_free(p);
}

/* Bad options fail cn_dist_start, and nothing is left behind. */
static void test_bad_options(void **st) {
  char name[128];
  cn_runtime_options o;
  cn_dist_options d;
  cn_runtime *rt = NULL;
  tls_conf c;
  (void)st;
  node_name(name, sizeof(name), "tlsbad");
  memset(&o, 0, sizeof(o));
  o.node_name = name;
  assert_int_equal(cn_runtime_new(&o, &rt), 0);
  memset(&d, 0, sizeof(d));
  d.cookie = "c";
  conf(&c, "nosuch.pem", 0);
  d.tls = &c.tls;
  assert_int_equal(cn_dist_start(rt, &d), CN_EINVAL);
  conf(&c, "node.pem", 0);
  c.tls.server.keyfile = c.ca; /* a file without a key */
  assert_int_equal(cn_dist_start(rt, &d), CN_EINVAL);
  conf(&c, "node.pem", 0);
  c.tls.client.cacertfile = NULL; /* verify_peer without CAs */
  assert_int_equal(cn_dist_start(rt, &d), CN_EINVAL);
  cn_runtime_free(rt);
}

/* A string literal and its length. */
#define TXT(s) (s), (sizeof(s) - 1)

/* The optfile's text, and -ssl_dist_opt pairs. */
static void test_optfile(void **st) {
  static const char text[] =
      "%% as erl reads it\n"
      "[{server, [{certfile, \"/s/cert.pem\"}, {keyfile, <<\"/s/key.pem\">>},\n"
      "           {cacertfile, \"/ca.pem\"}, {verify, verify_peer},\n"
      "           {fail_if_no_peer_cert, true}, {secure_renegotiate, true},\n"
      "           {depth, 3}, {versions, ['tlsv1.2', 'tlsv1.3']}]},\n"
      " {client, [{certfile, \"/c/cert.pem\"}, {verify, verify_none}]}].\n";
  cn_dist_tls t;
  cn_buf store = CN_BUF_INIT;
  char why[200];
  (void)st;
  assert_int_equal(
      cn_dist_tls_parse(text, strlen(text), &t, &store, why, sizeof(why)), 0);
  assert_string_equal(t.server.certfile, "/s/cert.pem");
  assert_string_equal(t.server.keyfile, "/s/key.pem");
  assert_string_equal(t.server.cacertfile, "/ca.pem");
  assert_int_equal(t.server.verify, CN_TLS_VERIFY_PEER);
  assert_true(t.server.fail_if_no_peer_cert);
  assert_int_equal(t.server.depth, 3);
  assert_int_equal(t.server.versions, CN_TLS_V1_2 | CN_TLS_V1_3);
  assert_string_equal(t.client.certfile, "/c/cert.pem");
  assert_null(t.client.keyfile);
  assert_int_equal(t.client.verify, CN_TLS_VERIFY_NONE);

  /* What the node does not have is named. */
  assert_int_equal(cn_dist_tls_parse(TXT("[{server, [{ciphers, \"x\"}]}]"), &t,
                                     &store, why, sizeof(why)),
                   CN_EINVAL);
  assert_non_null(strstr(why, "does not support the option ciphers"));
  assert_int_equal(cn_dist_tls_parse(TXT("[{client, [{fail_if_no_peer_cert, "
                                         "true}]}]"),
                                     &t, &store, why, sizeof(why)),
                   CN_EINVAL);
  assert_int_equal(cn_dist_tls_parse(TXT("[{server, [{verify, maybe}]}]"), &t,
                                     &store, why, sizeof(why)),
                   CN_EINVAL);
  assert_non_null(strstr(why, "a bad value for the option verify"));
  assert_int_equal(
      cn_dist_tls_parse(TXT("[{other, []}]"), &t, &store, why, sizeof(why)),
      CN_EINVAL);
  assert_int_equal(
      cn_dist_tls_parse(TXT("[{server, ["), &t, &store, why, sizeof(why)),
      CN_EINVAL);
  assert_true(strlen(why) > 0);

  memset(&t, 0, sizeof(t));
  assert_int_equal(cn_dist_tls_set(&t, "server_certfile", "/x.pem"), 0);
  assert_string_equal(t.server.certfile, "/x.pem");
  assert_int_equal(cn_dist_tls_set(&t, "client_verify", "verify_peer"), 0);
  assert_int_equal(t.client.verify, CN_TLS_VERIFY_PEER);
  assert_int_equal(cn_dist_tls_set(&t, "server_fail_if_no_peer_cert", "true"),
                   0);
  assert_int_equal(cn_dist_tls_set(&t, "client_fail_if_no_peer_cert", "true"),
                   CN_EINVAL);
  assert_int_equal(cn_dist_tls_set(&t, "server_depth", "x"), CN_EINVAL);
  assert_int_equal(cn_dist_tls_set(&t, "certfile", "/x"), CN_EINVAL);
  cn_buf_free(&store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_optfile),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_tls12_calls),
      cmocka_unit_test(test_tls13_calls),
      cmocka_unit_test(test_untrusted_refused),
      cmocka_unit_test(test_hostname_checked),
      cmocka_unit_test(test_plain_refused),
  };
  return run_group("tls", tests, setup, teardown);
}
