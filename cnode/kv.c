/* cnode: the kv server (module cnode_kv, registered as kv).
 *
 * A key-value store whose keys and values are any terms.  Keys compare
 * with =:=, so 1 and 1.0 are different keys, while the same atom or
 * binary is one key whatever its encoding on the wire.
 *
 * Calls:
 *   {put, K, V}     -> ok
 *   {get, K}        -> {ok, V} | error
 *   {delete, K}     -> ok (also when K is absent)
 *   keys            -> [K]   in no particular order
 *   {incr, K, N}    -> {ok, New} | {error, badarg | not_integer | overflow}
 *   anything else   -> {error, unknown_call}
 * Casts: {put, K, V} and {delete, K}; other casts and all infos are
 * ignored.
 *
 * sys:get_state({kv, Node}) (:sys.get_state in iex) shows the store as a
 * map of its keys to their values, #{K => V}, the way an Elixir user sees
 * an Agent holding a map; sys:get_status shows the same map as the State.
 *
 * incr.  N must be an integer ({error, badarg} otherwise, checked first).
 * A missing key counts as 0; a stored value that is not an integer gives
 * {error, not_integer}.  The sum is computed exactly, over integers of any
 * size (bignums included, as Erlang would), and it is stored only when it
 * fits in a signed 64-bit integer; otherwise the reply is
 * {error, overflow} and the stored value is left as it was.  So a bignum
 * operand is fine when the sum fits (2^70 + -2^70 gives {ok, 0}), and a
 * bignum stored with put can be brought back into range by incr, but incr
 * never produces one.
 *
 * When memory runs out, a call answers {error, enomem} and leaves the
 * store as it was.  kv never takes a value it could not send back: a put
 * whose {ok, V} answer would be over the runtime's max_message answers
 * {error, too_big} and stores nothing (a cast of it is dropped), and a
 * keys reply over max_message answers {error, too_big}.
 *
 * The hash table uses cn_term_hash, which is SipHash under a random key
 * that the process draws when it starts hashing.  A peer that sends keys
 * crafted to collide cannot know where they land, so they spread over
 * the buckets like any other keys, and no chain grows long enough to make
 * puts and gets quadratic.  The stored hashes stay valid for the life of
 * the table, since the key never changes within a process.
 */
#include "servers.h"

#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 16 /* a power of two */

typedef struct entry {
  struct entry *next; /* the next entry in the same bucket */
  uint64_t hash;      /* cn_term_hash of the key */
  char *val;          /* the value's encoded bytes, owned */
  size_t vlen;        /* bytes at val */
  size_t klen;        /* bytes at key */
  char key[];         /* the key's encoded bytes */
} entry;

typedef struct kv {
  entry **buckets; /* chains of entries; nbuckets of them */
  size_t nbuckets; /* a power of two */
  size_t count;    /* entries in the table */
} kv;

static cn_term key_of(const entry *e) {
  cn_term t = {e->key, e->klen};
  return t;
}

static cn_term val_of(const entry *e) {
  cn_term t = {e->val, e->vlen};
  return t;
}

static char *dup_bytes(cn_term t) {
  char *p = malloc(t.len);
  if (p)
    memcpy(p, t.ptr, t.len);
  return p;
}

/* Returns the link that points at key's entry, or at the NULL that ends
 * its chain when key is absent, so that callers can both find and unlink. */
static entry **find(kv *s, cn_term key, uint64_t hash) {
  entry **pp = &s->buckets[hash & (s->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->hash == hash && cn_term_equal(key_of(*pp), key))
      return pp;
  }
  return pp;
}

/* Doubles the table when it holds more entries than buckets.  A failed
 * allocation keeps the old table, which stays correct, only slower. */
static void maybe_grow(kv *s) {
  size_t n = s->nbuckets * 2, i;
  entry **b, *e, *next;

  if (s->count <= s->nbuckets || n < s->nbuckets)
    return;
  if (!(b = calloc(n, sizeof(*b))))
    return;
  for (i = 0; i < s->nbuckets; i++) {
    for (e = s->buckets[i]; e; e = next) {
      next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = n;
}

/* Replaces the value of e with a copy of val.  Returns 0, or CN_ENOMEM
 * with e unchanged. */
static int set_value(entry *e, cn_term val) {
  char *v = dup_bytes(val);
  if (!v)
    return CN_ENOMEM;
  free(e->val);
  e->val = v;
  e->vlen = val.len;
  return 0;
}

/* Stores copies of key and val.  Returns 0, or CN_ENOMEM with the table
 * unchanged. */
static int put(kv *s, cn_term key, cn_term val) {
  uint64_t hash = cn_term_hash(key);
  entry **pp = find(s, key, hash), *e;

  if (*pp)
    return set_value(*pp, val);
  if (!(e = malloc(sizeof(*e) + key.len)))
    return CN_ENOMEM;
  if (!(e->val = dup_bytes(val))) {
    free(e);
    return CN_ENOMEM;
  }
  e->vlen = val.len;
  e->hash = hash;
  e->klen = key.len;
  memcpy(e->key, key.ptr, key.len);
  e->next = NULL;
  *pp = e;
  s->count++;
  maybe_grow(s);
  return 0;
}

static void erase(kv *s, cn_term key) {
  entry **pp = find(s, key, cn_term_hash(key)), *e = *pp;
  if (e) {
    *pp = e->next;
    free(e->val);
    free(e);
    s->count--;
  }
}

/* ---- Exact integer sums ------------------------------------------------ */

/* An integer term as sign and magnitude: n little-endian base-256 digits
 * at mag (possibly with leading zero digits, which bignums from other
 * encoders may carry).  Small integers are unpacked into own[]. */
typedef struct bigint {
  bool neg;
  const unsigned char *mag;
  size_t n;
  unsigned char own[4];
} bigint;

/* Reads an integer term in any of its four encodings.  The term passed
 * the runtime's validator, so its lengths are right.  Returns false for
 * anything that is not an integer. */
static bool read_int(cn_term t, bigint *b) {
  const unsigned char *p = (const unsigned char *)t.ptr;
  uint32_t u;

  if (t.len < 2)
    return false;
  switch (p[0]) {
  case 97: /* SMALL_INTEGER_EXT: one unsigned byte */
    b->neg = false;
    b->own[0] = p[1];
    b->mag = b->own;
    b->n = 1;
    return true;
  case 98: /* INTEGER_EXT: 32-bit big-endian, signed */
    if (t.len < 5)
      return false;
    u = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
        p[4];
    b->neg = (u & 0x80000000u) != 0;
    if (b->neg)
      u = 0u - u; /* the magnitude, also for -2^31 */
    b->own[0] = (unsigned char)u;
    b->own[1] = (unsigned char)(u >> 8);
    b->own[2] = (unsigned char)(u >> 16);
    b->own[3] = (unsigned char)(u >> 24);
    b->mag = b->own;
    b->n = 4;
    return true;
  case 110: /* SMALL_BIG_EXT: n (1 byte), sign, digits */
    if (t.len < 3 || t.len - 3 < p[1])
      return false;
    b->n = p[1];
    b->neg = p[2] != 0;
    b->mag = p + 3;
    return true;
  case 111: /* LARGE_BIG_EXT: n (4 bytes, big-endian), sign, digits */
    if (t.len < 6)
      return false;
    u = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
        p[4];
    if (t.len - 6 < u)
      return false;
    b->n = u;
    b->neg = p[5] != 0;
    b->mag = p + 6;
    return true;
  default:
    return false;
  }
}

static unsigned digit(const bigint *b, size_t i) {
  return i < b->n ? b->mag[i] : 0;
}

/* Compares magnitudes: negative, zero or positive. */
static int cmp_mag(const bigint *a, const bigint *b) {
  size_t i = a->n > b->n ? a->n : b->n;
  while (i-- > 0) {
    if (digit(a, i) != digit(b, i))
      return digit(a, i) < digit(b, i) ? -1 : 1;
  }
  return 0;
}

/* Sets *out to a + b and returns true when the exact sum fits in int64_t;
 * returns false otherwise.  Works digit by digit, so operands of any size
 * cost no allocation: only the low eight digits of the result are kept,
 * and any non-zero digit above them means the sum does not fit. */
static bool add_fits(const bigint *a, const bigint *b, int64_t *out) {
  const bigint *big = a, *small = b;
  bool subtract = a->neg != b->neg, neg, high = false;
  size_t n = (a->n > b->n ? a->n : b->n) + 1, i;
  uint64_t lo = 0;
  int carry = 0;

  /* With opposite signs, subtract the smaller magnitude from the larger;
   * the result takes the larger one's sign. */
  if (subtract && cmp_mag(a, b) < 0) {
    big = b;
    small = a;
  }
  neg = big->neg;
  for (i = 0; i < n; i++) {
    int d = subtract ? (int)digit(big, i) - (int)digit(small, i) - carry
                     : (int)digit(big, i) + (int)digit(small, i) + carry;
    carry = subtract ? d < 0 : d > 255;
    d = subtract ? (d + 256) % 256 : d % 256;
    if (i < 8)
      lo |= (uint64_t)d << (8 * i);
    else if (d != 0)
      high = true;
  }
  if (high)
    return false;
  if (!neg || lo == 0) {
    if (lo > (uint64_t)INT64_MAX)
      return false;
    *out = (int64_t)lo;
    return true;
  }
  if (lo > (uint64_t)INT64_MAX + 1)
    return false;
  *out = lo == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)lo;
  return true;
}

/* {incr, K, N}.  See the header comment for the rules. */
static void incr(kv *s, cn_term key, cn_term by, cn_buf *reply) {
  static const char zero[] = {97, 0}; /* the integer 0 */
  uint64_t hash = cn_term_hash(key);
  entry **pp = find(s, key, hash);
  cn_term old = {zero, sizeof(zero)};
  bigint a, b;
  int64_t sum;
  char store[16];
  cn_buf enc;
  int err;

  if (!read_int(by, &b)) {
    cn_build(reply, "{error, badarg}");
    return;
  }
  if (*pp)
    old = val_of(*pp);
  if (!read_int(old, &a)) {
    cn_build(reply, "{error, not_integer}");
    return;
  }
  if (!add_fits(&a, &b, &sum)) {
    cn_build(reply, "{error, overflow}");
    return;
  }
  cn_buf_init_with(&enc, store, sizeof(store));
  err = cn_put_int(&enc, sum);
  if (err == 0)
    err = *pp ? set_value(*pp, cn_buf_term(&enc))
              : put(s, key, cn_buf_term(&enc));
  cn_buf_free(&enc);
  if (err == 0)
    cn_build(reply, "{ok, ~i}", sum);
  else
    cn_build(reply, "{error, enomem}");
}

/* keys: every key, in table order. */
static void keys(kv *s, cn_buf *reply, size_t max_message) {
  size_t i;
  entry *e;

  cn_put_list(reply, (uint32_t)s->count);
  for (i = 0; i < s->nbuckets; i++) {
    for (e = s->buckets[i]; e; e = e->next)
      cn_put_term(reply, key_of(e));
  }
  cn_put_nil(reply);
  /* Say why, rather than let the runtime fail the call for its size. */
  if (reply->err == 0 && reply->len > max_message) {
    cn_buf_reset(reply);
    cn_build(reply, "{error, too_big}");
  }
}

/* ---- Callbacks -------------------------------------------------------- */

/* Room for {ok, V} around a value: a tuple header and the atom ok. */
#define OK_WRAP 16

/* True when {ok, V} fits in max_message, so that a get can return v. */
static bool returnable(cn_proc *self, cn_term v) {
  size_t max = cn_max_message(cn_proc_runtime(self));
  return v.len <= max && max - v.len >= OK_WRAP;
}

static int kv_init(cn_proc *self, void *arg, void **state) {
  kv *s = calloc(1, sizeof(*s));
  if (!s)
    return CN_STOP;
  if (!(s->buckets = calloc(MIN_BUCKETS, sizeof(*s->buckets)))) {
    free(s);
    return CN_STOP;
  }
  s->nbuckets = MIN_BUCKETS;
  *state = s;
  return CN_NOREPLY;
}

static int kv_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                   cn_buf *reply) {
  kv *s = state;
  cn_term k, v;
  entry *e;

  if (cn_match(req, "{get, ~t}", &k) == 0) {
    e = *find(s, k, cn_term_hash(k));
    if (e)
      cn_build(reply, "{ok, ~t}", val_of(e));
    else
      cn_build(reply, "error");
  } else if (cn_match(req, "{put, ~t, ~t}", &k, &v) == 0) {
    if (!returnable(self, v))
      cn_build(reply, "{error, too_big}");
    else if (put(s, k, v) == 0)
      cn_build(reply, "ok");
    else
      cn_build(reply, "{error, enomem}");
  } else if (cn_match(req, "{delete, ~t}", &k) == 0) {
    erase(s, k);
    cn_build(reply, "ok");
  } else if (cn_is_atom(req, "keys")) {
    keys(s, reply, cn_max_message(cn_proc_runtime(self)));
  } else if (cn_match(req, "{incr, ~t, ~t}", &k, &v) == 0) {
    incr(s, k, v, reply);
  } else {
    cn_build(reply, "{error, unknown_call}");
  }
  /* Only running out of memory leaves a builder error here.  Replying
   * with nothing would stop the server, so try the short answer; if even
   * that fails, the runtime stops the server with bad_reply. */
  if (reply->err != 0) {
    cn_buf_reset(reply);
    cn_build(reply, "{error, enomem}");
  }
  return CN_REPLY;
}

static int kv_cast(cn_proc *self, void *state, cn_term msg) {
  kv *s = state;
  cn_term k, v;

  if (cn_match(msg, "{put, ~t, ~t}", &k, &v) == 0) {
    if (returnable(self, v))
      put(s, k, v); /* a cast has no one to tell about a failure */
  } else if (cn_match(msg, "{delete, ~t}", &k) == 0)
    erase(s, k);
  return CN_NOREPLY;
}

static void kv_free(void *state) {
  kv *s = state;
  entry *e, *next;
  size_t i;

  for (i = 0; i < s->nbuckets; i++) {
    for (e = s->buckets[i]; e; e = next) {
      next = e->next;
      free(e->val);
      free(e);
    }
  }
  free(s->buckets);
  free(s);
}

/* format_state: the store as a map, #{K => V} (see the header). */
static int kv_format_state(cn_proc *self, void *state, cn_buf *out) {
  kv *s = state;
  size_t i;
  entry *e;
  (void)self;
  if (s->count > UINT32_MAX)
    return CN_ETOOBIG;
  cn_put_map(out, (uint32_t)s->count);
  for (i = 0; i < s->nbuckets; i++) {
    for (e = s->buckets[i]; e; e = e->next) {
      cn_put_term(out, key_of(e));
      cn_put_term(out, val_of(e));
    }
  }
  return out->err;
}

const cn_server_ops kv_server_ops = {
    .name = "cnode_kv",
    .init = kv_init,
    .handle_call = kv_call,
    .handle_cast = kv_cast,
    .free_state = kv_free,
    .format_state = kv_format_state,
};
