/* fuzz_parse: cn_term_parse against hostile text.
 *
 * The input is text that claims to be one Erlang term.  Nothing may crash,
 * leak or read outside the input, and:
 *
 *  - a refusal leaves the buffer as it was and points inside the text,
 *    with a reason;
 *  - an accepted text gives exactly one term that the bounded validator
 *    accepts;
 *  - that term printed (cn_term_print) reads back as an equal term, which
 *    prints the same text again.
 */
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cn_buf b = CN_BUF_INIT, text = CN_BUF_INIT, back = CN_BUF_INIT,
         again = CN_BUF_INIT;
  cn_parse_error err = {0, NULL};
  size_t off = 0, before;
  int rc;

  if (size > 1 << 16)
    return 0;
  FZ_OK(cn_put_atom(&b, "before"));
  before = b.len;
  rc = cn_term_parse(&b, (const char *)data, size, &err);
  if (rc != 0) {
    FZ_CHECK(rc == CN_EBADFMT || rc == CN_ENOMEM);
    FZ_CHECK(b.len == before);
    FZ_CHECK(err.what != NULL && err.offset <= size);
    cn_buf_free(&b);
    return 0;
  }
  FZ_OK(cn_term_validate(b.data, b.len, &off, NULL));
  FZ_CHECK(off == before);
  FZ_OK(cn_term_validate(b.data, b.len, &off, NULL));
  FZ_CHECK(off == b.len);
  {
    cn_term t = {b.data + before, b.len - before};
    FZ_OK(cn_term_print(t, &text));
    rc = cn_term_parse(&back, text.data, text.len, &err);
    if (rc != 0)
      fprintf(stderr, "printed as %s: %s at %zu\n", text.data, err.what,
              err.offset);
    FZ_OK(rc);
    FZ_CHECK(cn_term_equal(t, cn_buf_term(&back)));
    FZ_OK(cn_term_print(cn_buf_term(&back), &again));
    FZ_CHECK(again.len == text.len &&
             memcmp(again.data, text.data, text.len) == 0);
  }
  cn_buf_free(&b);
  cn_buf_free(&text);
  cn_buf_free(&back);
  cn_buf_free(&again);
  return 0;
}
