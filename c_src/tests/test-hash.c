/* Tests for the keyed hashes (issue 7, hash flooding): the SipHash core in
 * util/siphash.h, the process's key, and the tables whose keys peers
 * choose: cn_term_hash (the kv server, users' own tables), registered
 * names and node names.
 *
 * SipHash is checked against the paper's test vectors and against
 * OpenSSL's EVP_MAC("SIPHASH") on random input, so that OpenSSL is the
 * oracle.  The flooding tests play the attacker: they copy the old,
 * unkeyed hash functions (which anyone could read in the source), build
 * thousands of keys that collide under them, check that they really do,
 * and then check that the keyed hashes spread the same keys.  The bounds
 * hold with overwhelming probability for any key (the chance that 4096
 * random hashes put 16 in one of 4096 buckets is about 1e-10), and with
 * certainty for the fixed keys, whose results never change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>

#include "runtime/internal.h"
#include "term/term_internal.h"
#include "util/siphash.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define NKEYS 4096    /* crafted keys per test */
#define NBUCKETS 4096 /* buckets of the table they are put in */
#define MAX_CHAIN 16  /* the longest chain a spread must stay below */

/* A small deterministic generator, so that failures reproduce. */
static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void put_le64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* The key 00 01 02 .. 0f of the SipHash paper's vectors. */
static void paper_key(uint8_t k[16]) {
  int i;
  for (i = 0; i < 16; i++)
    k[i] = (uint8_t)i;
}

/* The longest chain when the n hashes go into nbuckets (a power of two)
 * buckets by their low bits, as every table here does. */
static size_t longest_chain(const uint64_t *h, size_t n, size_t nbuckets) {
  size_t *count = calloc(nbuckets, sizeof *count), i, max = 0;
  assert_non_null(count);
  for (i = 0; i < n; i++) {
    size_t b = (size_t)(h[i] & (nbuckets - 1));
    if (++count[b] > max)
      max = count[b];
  }
  free(count);
  return max;
}

static int u64_order(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* How many different values the n hashes take. */
static size_t distinct(const uint64_t *h, size_t n) {
  uint64_t *v = malloc(n * sizeof *v);
  size_t i, d = n ? 1 : 0;
  assert_non_null(v);
  memcpy(v, h, n * sizeof *v);
  qsort(v, n, sizeof *v, u64_order);
  for (i = 1; i < n; i++)
    d += v[i] != v[i - 1];
  free(v);
  return d;
}

/* ---- OpenSSL, the oracle ------------------------------------------------ */

/* SipHash-2-4 with a 64-bit output through EVP_MAC, as a little-endian
 * word (OpenSSL writes the output least significant byte first). */
static uint64_t openssl_siphash(const uint8_t key[16], const void *p,
                                size_t n) {
  EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_SIPHASH, NULL);
  EVP_MAC_CTX *ctx;
  size_t size = 8, outl = 0;
  unsigned char out[8];
  OSSL_PARAM params[2];

  assert_non_null(mac);
  ctx = EVP_MAC_CTX_new(mac);
  assert_non_null(ctx);
  params[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size);
  params[1] = OSSL_PARAM_construct_end();
  assert_int_equal(EVP_MAC_init(ctx, key, 16, params), 1);
  assert_int_equal(EVP_MAC_update(ctx, p, n), 1);
  assert_int_equal(EVP_MAC_final(ctx, out, &outl, sizeof out), 1);
  assert_int_equal(outl, 8);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return cn__le64(out);
}

/* ---- The SipHash core ---------------------------------------------------- */

/* SipHash-2-4 of the messages 00, 00 01, .. 00 01 .. 3e under the key
 * 00 01 .. 0f, from the reference implementation's vectors.h (the paper's
 * appendix gives the 15-byte one, a129ca6149be45e5). */
static const uint64_t paper_vectors[64] = {
    0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL,
    0x85676696d7fb7e2dULL, 0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL,
    0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL, 0x93f5f5799a932462ULL,
    0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
    0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL,
    0xa129ca6149be45e5ULL, 0x3f2acc7f57c29bdbULL, 0x699ae9f52cbe4794ULL,
    0x4bc1b3f0968dd39cULL, 0xbb6dc91da77961bdULL, 0xbed65cf21aa2ee98ULL,
    0xd0f2cbb02e3b67c7ULL, 0x93536795e3a33e88ULL, 0xa80c038ccd5ccec8ULL,
    0xb8ad50c6f649af94ULL, 0xbce192de8a85b8eaULL, 0x17d835b85bbb15f3ULL,
    0x2f2e6163076bcfadULL, 0xde4daaaca71dc9a5ULL, 0xa6a2506687956571ULL,
    0xad87a3535c49ef28ULL, 0x32d892fad841c342ULL, 0x7127512f72f27cceULL,
    0xa7f32346f95978e3ULL, 0x12e0b01abb051238ULL, 0x15e034d40fa197aeULL,
    0x314dffbe0815a3b4ULL, 0x027990f029623981ULL, 0xcadcd4e59ef40c4dULL,
    0x9abfd8766a33735cULL, 0x0e3ea96b5304a7d0ULL, 0xad0c42d6fc585992ULL,
    0x187306c89bc215a9ULL, 0xd4a60abcf3792b95ULL, 0xf935451de4f21df2ULL,
    0xa9538f0419755787ULL, 0xdb9acddff56ca510ULL, 0xd06c98cd5c0975ebULL,
    0xe612a3cb9ecba951ULL, 0xc766e62cfcadaf96ULL, 0xee64435a9752fe72ULL,
    0xa192d576b245165aULL, 0x0a8787bf8ecb74b2ULL, 0x81b3e73d20b49b6fULL,
    0x7fa8220ba3b2eceaULL, 0x245731c13ca42499ULL, 0xb78dbfaf3a8d83bdULL,
    0xea1ad565322a1a0bULL, 0x60e61c23a3795013ULL, 0x6606d7e446282b93ULL,
    0x6ca4ecb15c5f91e1ULL, 0x9f626da15c9625f3ULL, 0xe51b38608ef25f57ULL,
    0x958a324ceb064572ULL,
};

static void test_siphash_vectors(void **state) {
  uint8_t k[16];
  unsigned char msg[64];
  cn__sipkey key;
  size_t i, j;
  (void)state;

  paper_key(k);
  key = cn__sipkey_of(k);
  for (i = 0; i < sizeof msg; i++)
    msg[i] = (unsigned char)i;
  for (i = 0; i < COUNT(paper_vectors); i++) {
    cn__sip s;
    uint64_t tail = 0;
    if (cn__siphash(&key, msg, i) != paper_vectors[i])
      fail_msg("one-shot, %zu bytes", i);
    /* The word interface, with the last partial block given apart. */
    cn__sip_init(&s, &key);
    for (j = 0; j + 8 <= i; j += 8)
      cn__sip_word(&s, cn__le64(msg + j));
    for (; j < i; j++)
      tail |= (uint64_t)msg[j] << (8 * (j % 8));
    if (cn__sip_final_tail(&s, tail, i % 8) != paper_vectors[i])
      fail_msg("word by word, %zu bytes", i);
    /* OpenSSL agrees with the vectors too, so it can serve as the oracle
     * below. */
    if (openssl_siphash(k, msg, i) != paper_vectors[i])
      fail_msg("OpenSSL, %zu bytes", i);
  }
}

static void test_siphash_openssl(void **state) {
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  unsigned char msg[300];
  size_t round, i;
  (void)state;

  for (round = 0; round < 2000; round++) {
    uint8_t k[16];
    cn__sipkey key;
    cn__sip s;
    size_t n = (size_t)(rnd(&seed) % sizeof msg);
    for (i = 0; i < 16; i++)
      k[i] = (uint8_t)rnd(&seed);
    for (i = 0; i < n; i++)
      msg[i] = (unsigned char)rnd(&seed);
    key = cn__sipkey_of(k);
    if (cn__siphash(&key, msg, n) != openssl_siphash(k, msg, n))
      fail_msg("round %zu: %zu bytes", round, n);
    /* A stream of whole words is the SipHash of their bytes. */
    n -= n % 8;
    cn__sip_init(&s, &key);
    for (i = 0; i < n; i += 8)
      cn__sip_word(&s, cn__le64(msg + i));
    if (cn__sip_final(&s) != openssl_siphash(k, msg, n))
      fail_msg("round %zu: %zu bytes as words", round, n);
  }
}

/* ---- The process's key --------------------------------------------------- */

static void *read_key(void *arg) {
  *(cn__sipkey *)arg = *cn__hash_key();
  return NULL;
}

/* Runs this program again with --print-hash: a fresh process, whose
 * cn_term_hash of the atom ok comes back as text. */
static uint64_t hash_in_child(void) {
  char cmd[4200], exe[4096], line[64];
  unsigned long long v = 0;
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  FILE *f;

  assert_true(n > 0);
  exe[n] = '\0';
  snprintf(cmd, sizeof cmd, "'%s' --print-hash", exe);
  f = popen(cmd, "r");
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof line, f));
  assert_int_equal(pclose(f), 0);
  assert_int_equal(sscanf(line, "%llx", &v), 1);
  return v;
}

static void test_process_key(void **state) {
  pthread_t t[4];
  cn__sipkey got[4], zero = {0, 0};
  const cn__sipkey *key = cn__hash_key();
  cn_buf b = CN_BUF_INIT;
  uint64_t a, c;
  size_t i;
  (void)state;

  /* One key for the process, whichever thread asks first. */
  for (i = 0; i < COUNT(t); i++)
    assert_int_equal(pthread_create(&t[i], NULL, read_key, &got[i]), 0);
  for (i = 0; i < COUNT(t); i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_memory_equal(&got[i], key, sizeof *key);
  }
  assert_ptr_equal(cn__hash_key(), key);
  assert_memory_not_equal(key, &zero, sizeof zero);

  /* cn_term_hash is the hash under that key, and NULL means that key. */
  assert_int_equal(cn_build(&b, "ok"), 0);
  assert_true(cn_term_hash(cn_buf_term(&b)) ==
              cn_term_hash_keyed(cn_buf_term(&b), NULL));

  /* Another process draws another key (equal by chance once in 2^64). */
  a = hash_in_child();
  c = hash_in_child();
  assert_true(a != c);
  assert_true(a != cn_term_hash(cn_buf_term(&b)));
  cn_buf_free(&b);
}

/* ---- cn_term_hash_keyed -------------------------------------------------- */

static cn_term view(const void *p, size_t n) {
  cn_term t = {p, n};
  return t;
}

/* cn_term_hash_keyed under the paper's key, pinned: a change to the
 * canonical stream (which would silently break users' stored hashes)
 * must show up here. */
static const struct pinned {
  const char *fmt;
  uint64_t hash;
} pinned[] = {
    {"ok", 0xb75bf1dd5e022f38ULL},
    {"42", 0xa868848e4c748576ULL},
    {"-1.5", 0xb055d4d97ded82a5ULL},
    {"[]", 0xaeb2c2f8b56a1246ULL},
    {"{ok, [1, 2, 3]}", 0x29c8f30d5e5d693eULL},
    {"#{a => 1, b => {}}", 0x133fadb9b0c237a5ULL},
    {"[a | b]", 0x5d53830cc39231c4ULL},
};

static void test_term_hash_keyed(void **state) {
  uint8_t k[16], other[16];
  unsigned char words[24];
  cn_buf b = CN_BUF_INIT;
  size_t i;
  (void)state;

  paper_key(k);
  for (i = 0; i < COUNT(pinned); i++) {
    uint64_t h;
    cn_buf_reset(&b);
    assert_int_equal(cn_build(&b, pinned[i].fmt), 0);
    h = cn_term_hash_keyed(cn_buf_term(&b), k);
    if (h != pinned[i].hash)
      fail_msg("%s: 0x%016llxULL", pinned[i].fmt, (unsigned long long)h);
  }

  /* The stream is what compare.c says: the atom ok is the words
   * H_ATOM (3), its length (2) and its text, little-endian; OpenSSL
   * gives the same SipHash of those bytes. */
  put_le64(words, 3);
  put_le64(words + 8, 2);
  put_le64(words + 16, 'o' | 'k' << 8);
  assert_true(cn_term_hash_keyed(view("\x77\x02ok", 4), k) ==
              openssl_siphash(k, words, sizeof words));

  /* Encodings do not matter under a fixed key either: the atom ok as
   * ATOM_EXT, [1,2,3] as LIST_EXT, a map with its pairs swapped. */
  assert_true(cn_term_hash_keyed(view("\x64\x00\x02ok", 5), k) ==
              cn_term_hash_keyed(view("\x77\x02ok", 4), k));
  assert_true(
      cn_term_hash_keyed(view("\x6b\x00\x03\x01\x02\x03", 6), k) ==
      cn_term_hash_keyed(
          view("\x6c\x00\x00\x00\x03\x61\x01\x61\x02\x61\x03\x6a", 12), k));
  assert_true(
      cn_term_hash_keyed(
          view("\x74\x00\x00\x00\x02\x77\x01\x61\x61\x01\x77\x01\x62\x61\x02",
               15),
          k) ==
      cn_term_hash_keyed(
          view("\x74\x00\x00\x00\x02\x77\x01\x62\x61\x02\x77\x01\x61\x61\x01",
               15),
          k));

  /* Another key, another hash. */
  memcpy(other, k, sizeof other);
  other[15] ^= 1;
  assert_true(cn_term_hash_keyed(view("\x77\x02ok", 4), k) !=
              cn_term_hash_keyed(view("\x77\x02ok", 4), other));
  /* An empty view hashes to 0 under any key. */
  assert_true(cn_term_hash_keyed(view(NULL, 0), k) == 0);
  cn_buf_free(&b);
}

/* ---- The attacker's model of the old hashes ------------------------------ */

/* Until issue 7 these tables hashed without a key.  What follows copies
 * the old functions as they were, as an attacker who read the source
 * would: cn_term_hash's multiply-xorshift (compare.c), the names table's
 * FNV-1a variant (names.c: its offset basis lacks the last digit of
 * FNV's) and the node table's FNV-1a (node.c). */
#define OLD_SEED 0x243F6A8885A308D3ULL
#define OLD_MUL 0x9E3779B97F4A7C15ULL
#define OLD_H_BITS 14

static uint64_t old_hmix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= OLD_MUL;
  return h ^ (h >> 29);
}

static uint64_t old_fmix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  return h ^ (h >> 33);
}

static uint64_t old_hbytes(uint64_t h, const unsigned char *s, size_t n) {
  uint64_t w;
  h = old_hmix(h, n);
  while (n >= 8) {
    memcpy(&w, s, 8);
    h = old_hmix(h, w);
    s += 8;
    n -= 8;
  }
  if (n != 0) {
    w = 0;
    memcpy(&w, s, n);
    h = old_hmix(h, w);
  }
  return h;
}

/* The old cn_term_hash of a binary of n >= 1 bytes. */
static uint64_t old_binary_hash(const unsigned char *s, size_t n) {
  uint64_t h = old_hmix(old_hmix(OLD_SEED, OLD_H_BITS), 8);
  h = old_hbytes(h, s, n - 1);
  return old_fmix(old_hmix(h, s[n - 1]));
}

static uint64_t old_name_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  while (*s) {
    h ^= (unsigned char)*s++;
    h *= 1099511628211ULL;
  }
  return h;
}

static uint32_t old_node_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

/* The inverse of an odd number modulo 2^64 (Newton's iteration: each step
 * doubles the bits that are right, from 3). */
static uint64_t inverse(uint64_t a) {
  uint64_t x = a;
  int i;
  for (i = 0; i < 5; i++)
    x *= 2 - a * x;
  return x;
}

/* The inverse of x -> old_hmix(x, 0): every step of the old hash can be
 * undone, which is what makes colliding keys cheap to build. */
static uint64_t old_unmix(uint64_t z) {
  uint64_t y = z ^ (z >> 29) ^ (z >> 58);
  return y * inverse(OLD_MUL);
}

/* A 17-byte binary whose old hash is old_fmix(target): bytes 0..7 hold i
 * (so that keys differ), byte 16 is fixed, and bytes 8..15 are solved for
 * by running the last two steps of the old hash backwards. */
static void old_collider(uint64_t i, uint64_t target, unsigned char out[17]) {
  uint64_t h = old_hmix(old_hmix(OLD_SEED, OLD_H_BITS), 8);
  uint64_t before_last;
  h = old_hmix(h, 16); /* the length of the first 16 bytes */
  h = old_hmix(h, i);  /* bytes 0..7 */
  out[16] = '!';
  before_last = old_unmix(target) ^ out[16];
  put_le64(out, i);
  put_le64(out + 8, old_unmix(before_last) ^ h);
}

/* FNV-1a, either width, steps over the low 16 bits only: a byte string
 * that ends in three bytes c0 c1 c2, with c2 solved so that the low 16
 * bits of the hash are target.  Those bits pick the bucket in any table of
 * up to 65536 buckets, which is all an attacker needs.  Returns 0 when no
 * such bytes exist after h. */
static int fnv_tail16(uint64_t h, uint64_t prime, uint16_t target,
                      unsigned char out[3]) {
  uint64_t want = (uint64_t)target * inverse(prime) & 0xFFFF;
  unsigned c0, c1;
  for (c0 = 'a'; c0 <= 'z'; c0++) {
    for (c1 = 1; c1 <= 255; c1++) {
      uint64_t h1 = ((h ^ c0) * prime ^ c1) * prime;
      uint64_t c2 = (want ^ h1) & 0xFFFF;
      if (c2 >= 1 && c2 <= 255) {
        out[0] = (unsigned char)c0;
        out[1] = (unsigned char)c1;
        out[2] = (unsigned char)c2;
        return 1;
      }
    }
  }
  return 0;
}

static void test_old_model(void **state) {
  (void)state;
  /* The model is the old code: the old cn_term_hash returned these for
   * <<"abc">>, <<"01234567">> and <<"0123456789abcdef!">>, and the old
   * hash_str("a") and hash_name("a", 1) computed these (the latter is
   * FNV-1a's own test vector). */
  assert_true(old_binary_hash((const unsigned char *)"abc", 3) ==
              0x80fbc0e682a2315dULL);
  assert_true(old_binary_hash((const unsigned char *)"01234567", 8) ==
              0x8dc21497a1e420d1ULL);
  assert_true(old_binary_hash((const unsigned char *)"0123456789abcdef!", 17) ==
              0xcd8240c787362775ULL);
  assert_true(old_name_hash("a") == 0x44bd8ad473cd9906ULL);
  assert_true(old_node_hash("a", 1) == 0xe40c292cu);
  assert_true(inverse(OLD_MUL) * OLD_MUL == 1);
  assert_true(old_unmix(old_hmix(12345, 0)) == 12345);
}

/* ---- Flooding cn_term_hash ----------------------------------------------- */

static void test_term_flood(void **state) {
  const uint64_t target = 0xC0111DE5C0111DE5ULL;
  unsigned char(*keys)[17] = calloc(NKEYS, sizeof *keys);
  uint64_t *old = calloc(NKEYS, sizeof *old);
  uint64_t *h = calloc(NKEYS, sizeof *h);
  uint64_t *hk = calloc(NKEYS, sizeof *hk);
  cn_buf b = CN_BUF_INIT;
  uint8_t k[16];
  size_t i;
  (void)state;

  assert_non_null(keys);
  assert_non_null(old);
  assert_non_null(h);
  assert_non_null(hk);
  paper_key(k);
  for (i = 0; i < NKEYS; i++) {
    cn_term t;
    old_collider(i, target, keys[i]);
    old[i] = old_binary_hash(keys[i], 17);
    /* The key as the kv server gets it: a binary term. */
    cn_buf_reset(&b);
    assert_int_equal(cn_build(&b, "~b", keys[i], (size_t)17), 0);
    t = cn_buf_term(&b);
    h[i] = cn_term_hash(t);
    hk[i] = cn_term_hash_keyed(t, k);
  }
  /* Distinct keys, one old hash: the old table put them in one chain. */
  for (i = 1; i < NKEYS; i++)
    assert_memory_not_equal(keys[i], keys[i - 1], 17);
  assert_int_equal(distinct(old, NKEYS), 1);
  assert_true(old[0] == old_fmix(target));
  assert_int_equal(longest_chain(old, NKEYS, NBUCKETS), NKEYS);

  /* Keyed, they spread: under the process's key and under a known one. */
  assert_int_equal(distinct(h, NKEYS), NKEYS);
  assert_in_range(longest_chain(h, NKEYS, NBUCKETS), 1, MAX_CHAIN - 1);
  assert_int_equal(distinct(hk, NKEYS), NKEYS);
  assert_in_range(longest_chain(hk, NKEYS, NBUCKETS), 1, MAX_CHAIN - 1);

  cn_buf_free(&b);
  free(keys);
  free(old);
  free(h);
  free(hk);
}

/* ---- Flooding the names table -------------------------------------------- */

#define NAME_MAX_LEN 16

/* NKEYS names "svc_XXXX_" + three bytes whose old hashes agree in their
 * low 16 bits. */
static char (*crafted_names(void))[NAME_MAX_LEN] {
  char(*names)[NAME_MAX_LEN] = calloc(NKEYS, sizeof *names);
  size_t i;
  assert_non_null(names);
  for (i = 0; i < NKEYS; i++) {
    int n = snprintf(names[i], NAME_MAX_LEN, "svc_%04zx_", i);
    assert_true(fnv_tail16(old_name_hash(names[i]), 1099511628211ULL, 0xF00D,
                           (unsigned char *)names[i] + n));
  }
  return names;
}

static const cn_server_ops idle_ops = {.name = "idle"};

static void test_names_flood(void **state) {
  char(*names)[NAME_MAX_LEN] = crafted_names();
  uint64_t *old = calloc(NKEYS, sizeof *old);
  uint64_t *h = calloc(NKEYS, sizeof *h);
  cn_pid *pids = calloc(NKEYS, sizeof *pids);
  cn_runtime *rt = NULL;
  size_t i;
  (void)state;

  assert_non_null(old);
  assert_non_null(h);
  assert_non_null(pids);
  for (i = 0; i < NKEYS; i++) {
    old[i] = old_name_hash(names[i]);
    h[i] = cn__name_hash(names[i]);
  }
  /* One bucket for all under the old hash, in any table up to 65536. */
  for (i = 0; i < NKEYS; i++)
    assert_int_equal(old[i] & 0xFFFF, 0xF00D);
  assert_int_equal(longest_chain(old, NKEYS, NBUCKETS), NKEYS);

  assert_int_equal(distinct(h, NKEYS), NKEYS);
  assert_in_range(longest_chain(h, NKEYS, NBUCKETS), 1, MAX_CHAIN - 1);

  /* And the real table holds them all: one server per name. */
  assert_int_equal(cn_runtime_new(NULL, &rt), 0);
  for (i = 0; i < NKEYS; i++) {
    cn_start_options o = {names[i], NULL};
    assert_int_equal(cn_start(rt, &idle_ops, NULL, &o, &pids[i]), 0);
  }
  for (i = 0; i < NKEYS; i++) {
    cn_pid p = {0};
    assert_int_equal(cn_whereis(rt, names[i], &p), 0);
    assert_true(cn_pid_equal(&p, &pids[i]));
  }
  assert_int_equal(cn_runtime_shutdown(rt, 5000), 0);
  cn_runtime_free(rt);
  free(names);
  free(old);
  free(h);
  free(pids);
}

/* ---- Flooding the node table --------------------------------------------- */

static void test_node_flood(void **state) {
  char(*names)[NAME_MAX_LEN] = calloc(NKEYS, sizeof *names);
  uint64_t *old = calloc(NKEYS, sizeof *old);
  uint64_t *h = calloc(NKEYS, sizeof *h);
  uint32_t *idx = calloc(NKEYS, sizeof *idx);
  size_t i, len = 0;
  (void)state;

  assert_non_null(names);
  assert_non_null(old);
  assert_non_null(h);
  assert_non_null(idx);
  for (i = 0; i < NKEYS; i++) {
    int n = snprintf(names[i], NAME_MAX_LEN, "n%04zx@evil", i);
    assert_true(fnv_tail16(old_node_hash(names[i], (size_t)n), 16777619u,
                           0xBEEF, (unsigned char *)names[i] + n));
    len = (size_t)n + 3;
    old[i] = old_node_hash(names[i], len);
    h[i] = cn__node_hash(names[i], len);
  }
  /* node.c's table has 4096 buckets; the old hash filled one of them. */
  for (i = 0; i < NKEYS; i++)
    assert_int_equal(old[i] % 4096, 0xBEEF % 4096);
  assert_int_equal(longest_chain(old, NKEYS, 4096), NKEYS);

  /* 32 bits: a few equal hashes are possible, a long chain is not. */
  assert_in_range(longest_chain(h, NKEYS, 4096), 1, MAX_CHAIN - 1);

  /* And the real table interns them all, each under its own index. */
  for (i = 0; i < NKEYS; i++) {
    const char *back;
    assert_int_equal(cn_node_intern(names[i], len, &idx[i]), 0);
    back = cn_node_name(idx[i]);
    assert_non_null(back);
    assert_string_equal(back, names[i]);
  }
  for (i = 0; i < NKEYS; i++) {
    uint32_t again;
    assert_int_equal(cn_node_intern(names[i], len, &again), 0);
    assert_int_equal(again, idx[i]);
  }
  for (i = 0; i < NKEYS; i++)
    h[i] = idx[i];
  assert_int_equal(distinct(h, NKEYS), NKEYS);
  free(names);
  free(old);
  free(h);
  free(idx);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_siphash_vectors),
      cmocka_unit_test(test_siphash_openssl),
      cmocka_unit_test(test_process_key),
      cmocka_unit_test(test_term_hash_keyed),
      cmocka_unit_test(test_old_model),
      cmocka_unit_test(test_term_flood),
      cmocka_unit_test(test_names_flood),
      cmocka_unit_test(test_node_flood),
  };

  /* The child of test_process_key. */
  if (argc == 2 && strcmp(argv[1], "--print-hash") == 0) {
    printf("%016llx\n",
           (unsigned long long)cn_term_hash(view("\x77\x02ok", 4)));
    return 0;
  }
  return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
