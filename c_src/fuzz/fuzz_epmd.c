/* fuzz_epmd: the epmd codec (dist/epmd.c) against hostile answers.
 *
 * The input's first byte holds knobs, and the rest is what epmd said.
 * Both response decoders (ALIVE2_X_RESP / ALIVE2_RESP and PORT2_RESP)
 * read every prefix of it, as the connection hands them whatever it has
 * read so far, each prefix from a heap block of exactly its size.  Their
 * results are checked against a model written from the ERTS protocol
 * chapter: "more bytes" (1) until the answer is whole, the same final
 * answer for every longer prefix (only ALIVE2 refuses bytes after its
 * answer), and outputs written only on success.
 *
 * The same bytes then feed the encoders (the name is the text up to the
 * first NUL, the port two bytes of it), whose requests are decoded back
 * as epmd would and must carry exactly what was asked; answers built
 * from the input must decode to the values they were built from.
 */
#include "dist/proto.h"
#include "fuzz/fuzz.h"

/* Prefixes are all checked up to this length, then only the whole. */
#define PREFIX_MAX 64

static uint32_t get16(const unsigned char *p) {
  return ((uint32_t)p[0] << 8) | p[1];
}

static uint32_t get32(const unsigned char *p) {
  return (get16(p) << 16) | get16(p + 2);
}

/* What cn__epmd_alive2_resp must say about u[0 .. n). */
static int alive2_model(const unsigned char *u, size_t n, uint32_t *creation) {
  size_t need;
  if (n < 1)
    return 1;
  if (u[0] == 118)
    need = 6;
  else if (u[0] == 121)
    need = 4;
  else
    return CN_EPROTO;
  if (n < 2)
    return 1;
  if (u[1] != 0)
    return CN_EEXIST;
  if (n < need)
    return 1;
  if (n > need)
    return CN_EPROTO;
  *creation = need == 6 ? get32(u + 2) : get16(u + 2);
  return 0;
}

/* What cn__epmd_port2_resp must say about u[0 .. n). */
static int port2_model(const unsigned char *u, size_t n, uint16_t *port,
                       uint16_t *version) {
  if (n < 1)
    return 1;
  if (u[0] != 119)
    return CN_EPROTO;
  if (n < 2)
    return 1;
  if (u[1] != 0)
    return CN_ENOENT;
  if (n < 10)
    return 1;
  *port = (uint16_t)get16(u + 2);
  *version = (uint16_t)get16(u + 6);
  return 0;
}

/* Runs both decoders on u[0 .. n) and compares them with the models. */
static void decode_prefix(const unsigned char *u, size_t n) {
  char *c = fz_exact(u, n);
  uint32_t creation = 0xdeadbeef, want_creation = 0xdeadbeef;
  uint16_t port = 0xbeef, version = 0xcafe;
  uint16_t want_port = 0xbeef, want_version = 0xcafe;
  int rc, want;

  rc = cn__epmd_alive2_resp(c, n, &creation);
  want = alive2_model(u, n, &want_creation);
  FZ_CHECK(rc == want && creation == want_creation);

  rc = cn__epmd_port2_resp(c, n, &port, &version);
  want = port2_model(u, n, &want_port, &want_version);
  FZ_CHECK(rc == want && port == want_port && version == want_version);
  free(c);
}

/* Once final, a PORT2_RESP answer stays as it was for longer prefixes. */
static void port2_stable(const unsigned char *u, size_t n) {
  int last = 1;
  size_t k;
  for (k = 0; k <= n && k <= PREFIX_MAX; k++) {
    char *c = fz_exact(u, k);
    uint16_t port, version;
    int rc = cn__epmd_port2_resp(c, k, &port, &version);
    if (last != 1)
      FZ_CHECK(rc == last);
    last = rc;
    free(c);
  }
}

/* ALIVE2_REQ and PORT_PLEASE2_REQ for name, decoded as epmd would. */
static void check_encoders(const char *name, uint16_t port, int hidden) {
  static const char before[] = "xy";
  size_t n = strlen(name);
  int valid = n > 0 && n <= 255;
  cn_buf b = CN_BUF_INIT;
  const unsigned char *m;
  int rc;

  FZ_OK(cn_buf_append(&b, before, 2));
  rc = cn__epmd_alive2_req(&b, name, port, hidden);
  FZ_CHECK(rc == (valid ? 0 : CN_EINVAL));
  if (rc == 0) {
    FZ_CHECK(memcmp(b.data, before, 2) == 0);
    m = (const unsigned char *)b.data + 2;
    FZ_CHECK(b.len == 2 + 2 + 13 + n);
    FZ_CHECK(get16(m) == b.len - 4);
    FZ_CHECK(m[2] == 120 && get16(m + 3) == port);
    FZ_CHECK(m[5] == (hidden ? 72 : 77) && m[6] == 0);
    FZ_CHECK(get16(m + 7) == 6 && get16(m + 9) == 6);
    FZ_CHECK(get16(m + 11) == n && memcmp(m + 13, name, n) == 0);
    FZ_CHECK(get16(m + 13 + n) == 0); /* no Extra */
  } else {
    FZ_CHECK(b.len == 2);
  }

  b.len = 2;
  rc = cn__epmd_port2_req(&b, name);
  FZ_CHECK(rc == (valid ? 0 : CN_EINVAL));
  if (rc == 0) {
    m = (const unsigned char *)b.data + 2;
    FZ_CHECK(b.len == 2 + 3 + n);
    FZ_CHECK(get16(m) == 1 + n && m[2] == 122);
    FZ_CHECK(memcmp(m + 3, name, n) == 0);
  } else {
    FZ_CHECK(b.len == 2);
  }
  cn_buf_free(&b);

  FZ_CHECK(cn__epmd_port2_req(&b, NULL) == CN_EINVAL && b.len == 0);
  FZ_CHECK(cn__epmd_alive2_req(&b, NULL, 1, 0) == CN_EINVAL && b.len == 0);
}

/* Answers built from the input decode to what they were built from. */
static void check_answers(uint32_t creation, uint16_t port, const char *name) {
  unsigned char m[2 + 8 + 2 + 255 + 2];
  size_t n = strlen(name), k;
  uint32_t c;
  uint16_t p, v;

  if (n > 255)
    n = 255;
  m[0] = 118;
  m[1] = 0;
  m[2] = (unsigned char)(creation >> 24);
  m[3] = (unsigned char)(creation >> 16);
  m[4] = (unsigned char)(creation >> 8);
  m[5] = (unsigned char)creation;
  FZ_CHECK(cn__epmd_alive2_resp((const char *)m, 6, &c) == 0 && c == creation);
  m[0] = 121;
  FZ_CHECK(cn__epmd_alive2_resp((const char *)m, 4, &c) == 0 &&
           c == (creation >> 16));

  /* PORT2_RESP: result, port, type, protocol, versions, name, Extra. */
  m[0] = 119;
  m[1] = 0;
  m[2] = (unsigned char)(port >> 8);
  m[3] = (unsigned char)port;
  m[4] = 77;
  m[5] = 0;
  m[6] = 0;
  m[7] = 6;
  m[8] = 0;
  m[9] = 6;
  m[10] = (unsigned char)(n >> 8);
  m[11] = (unsigned char)n;
  memcpy(m + 12, name, n);
  m[12 + n] = 0;
  m[13 + n] = 0;
  for (k = 10; k <= 14 + n; k++) {
    char *e = fz_exact(m, k);
    FZ_CHECK(cn__epmd_port2_resp(e, k, &p, &v) == 0 && p == port && v == 6);
    free(e);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const unsigned char *u = data + 1;
  size_t n = size ? size - 1 : 0, k;
  char name[301];
  size_t nlen = 0;
  uint16_t port;
  uint32_t creation;

  if (size == 0)
    return 0;
  for (k = 0; k <= n && k <= PREFIX_MAX; k++)
    decode_prefix(u, k);
  if (n > PREFIX_MAX)
    decode_prefix(u, n);
  port2_stable(u, n);

  /* The encoders' inputs, from the same bytes. */
  while (nlen < n && nlen < sizeof name - 1 && u[nlen] != 0) {
    name[nlen] = (char)u[nlen];
    nlen++;
  }
  name[nlen] = '\0';
  port = n >= 2 ? (uint16_t)get16(u) : 4369;
  creation = n >= 4 ? get32(u) : 1;
  check_encoders(name, port, data[0] & 1);
  check_answers(creation, port, name);
  return 0;
}
