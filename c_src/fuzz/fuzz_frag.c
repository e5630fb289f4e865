/* fuzz_frag: the fragment reassembler (dist/frag.c) against hostile
 * sequences of fragments.
 *
 * The input is a little program that a peer could have sent as frames.
 * Each step starts with an op byte:
 *   0  a first fragment: SeqId (1 byte), FragId (1 byte), body length
 *      (1 byte), body;
 *   1  a continuation: SeqId (1 byte), FragId (1 byte), body length
 *      (1 byte), body;
 *   2  a raw frame: length (1 byte), bytes (any header, or none);
 *   3  the same first fragment as 0, with a body of a valid control term
 *      and the head of a '$gen_call' (so refusals have a call to find).
 * Small ids make sequences meet; the limits are small (a 1 KiB message, a
 * 4 KiB budget) so that refusals happen all the time.  Nothing may crash,
 * leak or read out of bounds, and after every step:
 *
 *  - the result is one of the documented codes;
 *  - a whole message is a 131 'D' 0 frame no bigger than the limit allows,
 *    and the control-message parser takes it without harm;
 *  - a refused message's head is at most CN__FRAG_HEAD bytes of a 131 'D'
 *    0 frame, and the head parsers take it without harm;
 *  - the memory accounting is exact: bytes is the sum over the sequences
 *    in progress of their bookkeeping and their buffers, and n is their
 *    number, never more than CN__FRAG_MAX_SEQS + 1;
 *  - a protocol error ends the connection (the harness stops there);
 *  - once freed, nothing is left.
 */
#include "dist/proto.h"
#include "fuzz/fuzz.h"

#define MAX_BODY 1024
#define BUDGET 4096
#define SEQ_COST 128 /* as frag.c counts each sequence */

static void check_accounting(const cn__frags *f) {
  const cn__frag_seq *s;
  size_t bytes = 0, n = 0;
  for (s = f->seqs; s; s = s->next) {
    bytes += SEQ_COST + s->cap;
    n++;
    FZ_CHECK(s->len <= s->cap);
    FZ_CHECK(s->refused ? s->cap == 0 : s->len <= 3 + MAX_BODY);
  }
  FZ_CHECK(bytes == f->bytes);
  FZ_CHECK(n == f->n);
  FZ_CHECK(n <= CN__FRAG_MAX_SEQS + 1);
}

static void check_done(const cn_buf *done) {
  static const cn_term_limits lim = {64, 1 << 20};
  cn__ctl ctl;
  FZ_CHECK(done->len >= 3 && done->len <= 3 + MAX_BODY);
  FZ_CHECK((unsigned char)done->data[0] == 131 &&
           done->data[1] == CN__DIST_HEADER && done->data[2] == 0);
  (void)cn__ctl_parse(done->data, done->len, &lim, &ctl);
}

static void check_head(const cn_buf *head) {
  static const cn_term_limits lim = {64, 1 << 20};
  cn_term caller, tag;
  size_t pay = 0;
  cn__ctl ctl;
  char *copy;
  FZ_CHECK(head->len >= 3 && head->len <= CN__FRAG_HEAD);
  FZ_CHECK((unsigned char)head->data[0] == 131 &&
           head->data[1] == CN__DIST_HEADER && head->data[2] == 0);
  copy = fz_exact(head->data, head->len);
  if (cn__ctl_parse_head(copy, head->len, &lim, &ctl, &pay) == 0) {
    FZ_CHECK(pay <= head->len);
    (void)cn__call_head(copy + pay, head->len - pay, &caller, &tag);
  }
  free(copy);
}

/* A control term and the head of a call, as a first fragment's body. */
static size_t call_body(char *out, size_t cap) {
  cn_buf b;
  cn_pid p = {0, 1, 2, 3};
  cn_ref r = {0, 3, 3, {1, 2, 3}};
  size_t n;
  cn_buf_init_with(&b, out, cap);
  if (cn_build(&b, "{6, ~p, '', echo}", &p) != 0 ||
      cn_build(&b, "{'$gen_call', {~p, [alias | ~r]}, {echo, \"xxxx\"}}", &p,
               &r) != 0 ||
      b.data != out) {
    cn_buf_free(&b);
    return 0;
  }
  n = b.len;
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cn__frags f;
  cn_buf done = CN_BUF_INIT, head = CN_BUF_INIT;
  size_t i = 0;
  char frame[CN__FRAG_HDR_FIRST + 255 + 512];

  cn__frags_init(&f, MAX_BODY, BUDGET);
  while (i < size) {
    uint8_t op = data[i++] % 4;
    size_t len = 0, n;
    char *copy;
    int rc;

    if (op == 2) {
      if (i >= size)
        break;
      n = data[i++];
      if (n > size - i)
        n = size - i;
      memcpy(frame, data + i, n);
      i += n;
      len = n;
    } else {
      uint8_t id, frag, body;
      if (size - i < 3)
        break;
      id = data[i++];
      frag = data[i++];
      body = data[i++];
      cn__frag_header(frame, op != 1, id % 8, frag % 8);
      len = op == 1 ? CN__FRAG_HDR_NEXT : CN__FRAG_HDR_FIRST;
      if (op == 3) {
        len += call_body(frame + len, sizeof(frame) - len);
      } else {
        n = body < size - i ? body : size - i;
        memcpy(frame + len, data + i, n);
        i += n;
        len += n;
      }
    }
    copy = fz_exact(frame, len);
    rc = cn__frags_feed(&f, copy, len, &done, &head);
    free(copy);
    FZ_CHECK(rc == CN__FRAG_MORE || rc == CN__FRAG_DONE ||
             rc == CN__FRAG_REFUSED || rc == CN_EPROTO || rc == CN_ENOMEM);
    check_accounting(&f);
    if (rc == CN__FRAG_DONE)
      check_done(&done);
    else if (rc == CN__FRAG_REFUSED)
      check_head(&head);
    else if (rc < 0)
      break; /* the connection closes */
  }
  cn__frags_free(&f);
  FZ_CHECK(f.n == 0 && f.bytes == 0 && f.seqs == NULL);
  cn_buf_free(&done);
  cn_buf_free(&head);
  return 0;
}
