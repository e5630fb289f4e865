/* Fragmented distribution messages (DFLAG_FRAGMENTS): reassembly of what
 * a peer sends in fragments, and the fragment headers of what we send.
 * No I/O here: conn.c feeds frames in and writes fragments out, and the
 * tests (tests/test-dist-proto.c) and the fuzzer drive it in memory.
 *
 * A peer splits a large message into a first fragment (131 'E' SeqId
 * FragId 0, then the control term and the start of the payload) and
 * continuations (131 'F' SeqId FragId, then more payload).  FragId counts
 * down to 1, the last.  Sequences of different senders interleave on one
 * connection; each sender's fragments come in order (erl_ext_dist,
 * "Distribution Header for Fragmented Messages").  A whole sequence is
 * handed on as the frame it stands for, 131 'D' 0 followed by every
 * fragment's body, which cn__ctl_parse reads as it reads an unfragmented
 * frame.
 *
 * Limits.  A sequence may hold at most max_body bytes (the node's
 * max_message plus room for the control term), and all sequences of a
 * connection together at most budget bytes, each counted with its
 * bookkeeping.  A sequence that would pass either limit is refused: its
 * first bytes are handed back once, so that a call in it can be failed at
 * once, its memory is freed, and its later fragments are dropped as they
 * come, until its last.  The connection stays up: only malformed or
 * out-of-order fragments break it.
 */
#include <stdlib.h>
#include <string.h>

#include "dist/proto.h"
#include "runtime/internal.h"

#define SEQ_COST 128 /* bookkeeping counted per sequence */

static uint64_t be64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void put_be64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (unsigned char)v;
    v >>= 8;
  }
}

void cn__frags_init(cn__frags *f, size_t max_body, size_t budget) {
  memset(f, 0, sizeof(*f));
  f->max_body = max_body;
  f->budget = budget;
}

/* Every sequence costs SEQ_COST plus the capacity of its buffer. */
static size_t cost(const cn__frag_seq *s) { return SEQ_COST + s->cap; }

static void seq_free(cn__frags *f, cn__frag_seq *s) {
  f->bytes -= cost(s);
  f->n--;
  cn__block_free(s->data, s->bcap);
  free(s);
}

void cn__frags_free(cn__frags *f) {
  while (f->seqs) {
    cn__frag_seq *s = f->seqs;
    f->seqs = s->next;
    seq_free(f, s);
  }
}

/* Finds sequence id and moves it to the front: a sender's fragments
 * usually come in runs, so the search is short. */
static cn__frag_seq *find(cn__frags *f, uint64_t id) {
  cn__frag_seq **sp, *s;
  for (sp = &f->seqs; (s = *sp); sp = &s->next) {
    if (s->id == id) {
      *sp = s->next;
      s->next = f->seqs;
      f->seqs = s;
      return s;
    }
  }
  return NULL;
}

static void unlink_seq(cn__frags *f, cn__frag_seq *s) {
  cn__frag_seq **sp;
  for (sp = &f->seqs; *sp; sp = &(*sp)->next) {
    if (*sp == s) {
      *sp = s->next;
      return;
    }
  }
}

/* Drops s once its last fragment is in. */
static void retire(cn__frags *f, cn__frag_seq *s) {
  if (s->left == 0) {
    unlink_seq(f, s);
    seq_free(f, s);
  }
}

/* Refuses s: hands its first bytes (with the fragment just read, when s
 * holds less than that) to head, frees its buffer, and drops what still
 * comes for it.  Returns CN__FRAG_REFUSED. */
static int refuse(cn__frags *f, cn__frag_seq *s, const char *body, size_t n,
                  cn_buf *head) {
  size_t keep = s->len < CN__FRAG_HEAD ? s->len : CN__FRAG_HEAD;
  cn_buf_reset(head);
  cn_buf_append(head, "\203D\0", 3);
  if (keep > 3)
    cn_buf_append(head, s->data + 3, keep - 3);
  if (head->len < CN__FRAG_HEAD)
    cn_buf_append(head, body,
                  n < CN__FRAG_HEAD - head->len ? n
                                                : CN__FRAG_HEAD - head->len);
  f->bytes -= s->cap;
  cn__block_free(s->data, s->bcap);
  s->data = NULL;
  s->len = s->cap = s->bcap = 0;
  s->refused = 1;
  f->refused++;
  retire(f, s);
  return CN__FRAG_REFUSED;
}

/* Appends a fragment's body to s within the limits.  expect is what the
 * whole frame will take if every fragment is as big as the first (0 when
 * unknown).  Returns 0, or -1 when s must be refused. */
static int add_body(cn__frags *f, cn__frag_seq *s, const char *p, size_t n,
                    size_t expect) {
  size_t limit = 3 + f->max_body, need, cap, bcap;
  char *nd;
  if (n > limit - s->len)
    return -1;
  need = s->len + n;
  if (need > s->cap) {
    /* Grow once to the promised size, so that a large message is not
     * copied again and again, or else double; never past the limit, and
     * never past the budget when the exact need still fits. */
    cap = expect >= need && expect <= limit ? expect : 2 * s->cap;
    if (cap < need)
      cap = need;
    if (cap > limit)
      cap = limit;
    if (f->bytes - s->cap + cap > f->budget)
      cap = need;
    if (f->bytes - s->cap + cap > f->budget)
      return -1;
    /* A block that may be kept from an earlier large message (see
     * runtime/blocks.c): no page faults, and its memory is not given
     * back to the kernel between messages. */
    if (!(nd = cn__block_alloc(cap, &bcap)))
      return -1;
    if (s->len)
      memcpy(nd, s->data, s->len);
    cn__block_free(s->data, s->bcap);
    f->bytes += cap - s->cap;
    s->data = nd;
    s->cap = cap;
    s->bcap = bcap;
  }
  memcpy(s->data + s->len, p, n);
  s->len += n;
  return 0;
}

int cn__frags_feed(cn__frags *f, const char *frame, size_t len, cn_buf *done,
                   cn_buf *head) {
  const unsigned char *u = (const unsigned char *)frame;
  uint64_t id, frag;
  cn__frag_seq *s;
  size_t hdr, body;
  size_t expect = 0;

  if (len < 2 || u[0] != 131 ||
      (u[1] != CN__DIST_FRAG_HEADER && u[1] != CN__DIST_FRAG_CONT))
    return CN_EPROTO;
  hdr = u[1] == CN__DIST_FRAG_HEADER ? CN__FRAG_HDR_FIRST : CN__FRAG_HDR_NEXT;
  if (len < hdr)
    return CN_EPROTO;
  id = be64(u + 2);
  frag = be64(u + 10);
  body = len - hdr;
  if (frag == 0)
    return CN_EPROTO;

  if (u[1] == CN__DIST_FRAG_HEADER) {
    /* NumberOfAtomCacheRefs: we offer no atom cache, so 0. */
    if (u[18] != 0 || find(f, id))
      return CN_EPROTO;
    if (!(s = calloc(1, sizeof(*s))))
      return CN_ENOMEM;
    s->id = id;
    s->left = frag;
    s->next = f->seqs;
    f->seqs = s;
    f->n++;
    f->bytes += SEQ_COST;
    if (frag > 1 && body <= (SIZE_MAX - 3) / frag)
      expect = 3 + body * frag;
    s->left--;
    if (f->n > CN__FRAG_MAX_SEQS || f->bytes > f->budget ||
        add_body(f, s, "\203D\0", 3, expect) != 0)
      return refuse(f, s, frame + hdr, body, head);
  } else {
    if (!(s = find(f, id)) || frag != s->left)
      return CN_EPROTO; /* unknown, or out of order */
    s->left--;
    if (s->refused) {
      retire(f, s);
      return CN__FRAG_MORE;
    }
  }
  if (add_body(f, s, frame + hdr, body, expect) != 0)
    return refuse(f, s, frame + hdr, body, head);
  if (s->left > 0)
    return CN__FRAG_MORE;
  /* Complete: hand the frame over. */
  unlink_seq(f, s);
  cn_buf_free(done);
  done->data = s->data;
  done->len = s->len;
  done->cap = s->bcap;
  done->on_heap = 1;
  done->err = 0;
  f->bytes -= s->cap;
  s->data = NULL;
  s->cap = 0;
  seq_free(f, s);
  return CN__FRAG_DONE;
}

void cn__frag_header(char out[CN__FRAG_HDR_FIRST], int first, uint64_t id,
                     uint64_t frag) {
  unsigned char *u = (unsigned char *)out;
  u[0] = 131;
  u[1] = first ? CN__DIST_FRAG_HEADER : CN__DIST_FRAG_CONT;
  put_be64(u + 2, id);
  put_be64(u + 10, frag);
  if (first)
    u[18] = 0;
}
