/* SipHash-2-4 over byte strings, and the process's random key. */
#include "util/siphash.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

uint64_t cn__siphash(const cn__sipkey *key, const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t tail = 0;
  cn__sip st;
  size_t i;

  cn__sip_init(&st, key);
  for (; n >= 8; s += 8, n -= 8)
    cn__sip_word(&st, cn__le64(s));
  for (i = n; i-- > 0;)
    tail = tail << 8 | s[i];
  return cn__sip_final_tail(&st, tail, n);
}

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static cn__sipkey key;

static void key_init(void) {
  uint8_t k[16];

  if (RAND_bytes(k, (int)sizeof k) == 1) {
    key = cn__sipkey_of(k);
  } else {
    /* No entropy to be had.  Mix what differs between processes and
     * runs under a fixed key, so that at least no two nodes share one. */
    struct timespec rt = {0, 0}, mt = {0, 0};
    uint64_t v[6];
    cn__sipkey fixed = {0x243F6A8885A308D3ULL, 0x13198A2E03707344ULL};

    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mt);
    v[0] = (uint64_t)rt.tv_sec;
    v[1] = (uint64_t)rt.tv_nsec;
    v[2] = (uint64_t)mt.tv_sec << 32 ^ (uint64_t)mt.tv_nsec;
    v[3] = (uint64_t)getpid();
    v[4] = (uint64_t)(uintptr_t)&v;        /* the stack, under ASLR */
    v[5] = (uint64_t)(uintptr_t)&key_init; /* the library, under ASLR */
    key.k0 = cn__siphash(&fixed, v, sizeof v);
    v[0] ^= 1;
    key.k1 = cn__siphash(&fixed, v, sizeof v);
  }
}

const cn__sipkey *cn__hash_key(void) {
  pthread_once(&key_once, key_init);
  return &key;
}
