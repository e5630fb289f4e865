/* SipHash-2-4, the keyed hash behind every table whose keys a peer can
 * choose (terms in cn_term_hash, registered names, node names, link and
 * monitor records).  Without a key, a peer that knows the hash function
 * can send thousands of keys that land in one bucket and turn each lookup
 * into a walk of the whole table; with a secret random key it cannot
 * predict where any key lands.
 *
 * The core is written here by hand rather than called through OpenSSL's
 * EVP_MAC("SIPHASH"), because the term hash feeds it one 64-bit word at a
 * time from its canonical walk and most keys are a handful of words.  For
 * an atom or a short binary, EVP_MAC costs 2.3 to 3 times this core even
 * with a context kept per thread and the words buffered into one update,
 * and 3 to 5 times fed word by word or with a fresh context per hash (the
 * commit that added this file has the figures).  The tests check this
 * core against the SipHash paper's vectors and against EVP_MAC on random
 * input.
 *
 * Two interfaces: cn__siphash() hashes a byte string in one go; the
 * cn__sip_* functions absorb a stream of whole 64-bit words, which is the
 * SipHash of the bytes of those words in little-endian order.
 */
#ifndef CN_UTIL_SIPHASH_H
#define CN_UTIL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A 128-bit SipHash key, as the two little-endian halves of its 16 bytes. */
typedef struct cn__sipkey {
  uint64_t k0, k1;
} cn__sipkey;

/* The state of one SipHash computation over whole words. */
typedef struct cn__sip {
  uint64_t v0, v1, v2, v3;
  uint64_t n; /* bytes absorbed so far */
} cn__sip;

#define CN__SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void cn__sip_round(cn__sip *s) {
  s->v0 += s->v1;
  s->v1 = CN__SIP_ROTL(s->v1, 13);
  s->v1 ^= s->v0;
  s->v0 = CN__SIP_ROTL(s->v0, 32);
  s->v2 += s->v3;
  s->v3 = CN__SIP_ROTL(s->v3, 16);
  s->v3 ^= s->v2;
  s->v0 += s->v3;
  s->v3 = CN__SIP_ROTL(s->v3, 21);
  s->v3 ^= s->v0;
  s->v2 += s->v1;
  s->v1 = CN__SIP_ROTL(s->v1, 17);
  s->v1 ^= s->v2;
  s->v2 = CN__SIP_ROTL(s->v2, 32);
}

/* The eight bytes at s as a little-endian word, on any machine. */
static inline uint64_t cn__le64(const unsigned char *s) {
  uint64_t w;
  memcpy(&w, s, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

/* The key of 16 bytes k, read as the SipHash paper does (little-endian). */
static inline cn__sipkey cn__sipkey_of(const uint8_t k[16]) {
  cn__sipkey key;
  key.k0 = cn__le64(k);
  key.k1 = cn__le64(k + 8);
  return key;
}

/* Starts a hash under key. */
static inline void cn__sip_init(cn__sip *s, const cn__sipkey *key) {
  s->v0 = key->k0 ^ 0x736f6d6570736575ULL;
  s->v1 = key->k1 ^ 0x646f72616e646f6dULL;
  s->v2 = key->k0 ^ 0x6c7967656e657261ULL;
  s->v3 = key->k1 ^ 0x7465646279746573ULL;
  s->n = 0;
}

/* Absorbs the eight bytes of m, least significant first. */
static inline void cn__sip_word(cn__sip *s, uint64_t m) {
  s->v3 ^= m;
  cn__sip_round(s);
  cn__sip_round(s);
  s->v0 ^= m;
  s->n += 8;
}

/* Absorbs the last, partial block (tail holds ntail < 8 bytes, least
 * significant first, the rest zero) and returns the 64-bit hash.  The
 * state is spent afterwards. */
static inline uint64_t cn__sip_final_tail(cn__sip *s, uint64_t tail,
                                          size_t ntail) {
  uint64_t b = (s->n + ntail) << 56 | tail;
  s->v3 ^= b;
  cn__sip_round(s);
  cn__sip_round(s);
  s->v0 ^= b;
  s->v2 ^= 0xff;
  cn__sip_round(s);
  cn__sip_round(s);
  cn__sip_round(s);
  cn__sip_round(s);
  return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* Returns the hash of the words absorbed so far; the state is spent. */
static inline uint64_t cn__sip_final(cn__sip *s) {
  return cn__sip_final_tail(s, 0, 0);
}

/* SipHash-2-4 of the n bytes at p under key. */
uint64_t cn__siphash(const cn__sipkey *key, const void *p, size_t n);

/* The process's own random key, drawn from OpenSSL's RAND_bytes on first
 * use (under pthread_once) and the same for the life of the process, so
 * that a hash stored in a table stays valid.  Thread-safe.  If RAND_bytes
 * fails, which OpenSSL allows only when the system has no entropy source,
 * the key is derived from the clock, the pid and addresses instead:
 * weaker, but never the same fixed key in every process. */
const cn__sipkey *cn__hash_key(void);

#endif
