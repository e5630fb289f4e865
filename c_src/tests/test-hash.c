/* Tests for the keyed hashes (issue 7, hash flooding): the SipHash core in
 * util/siphash.h and the process's key.
 *
 * SipHash is checked against the paper's test vectors and against
 * OpenSSL's EVP_MAC("SIPHASH") on random input, so that OpenSSL is the
 * oracle.
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

#include "util/siphash.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A small deterministic generator, so that failures reproduce. */
static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* The key 00 01 02 .. 0f of the SipHash paper's vectors. */
static void paper_key(uint8_t k[16]) {
  int i;
  for (i = 0; i < 16; i++)
    k[i] = (uint8_t)i;
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

static void test_process_key(void **state) {
  pthread_t t[4];
  cn__sipkey got[4], zero = {0, 0};
  const cn__sipkey *key = cn__hash_key();
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
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_siphash_vectors),
      cmocka_unit_test(test_siphash_openssl),
      cmocka_unit_test(test_process_key),
  };

  return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
