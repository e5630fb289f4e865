/* A server module for the stock node: a counter, in two versions with
 * different state layouts, built from this one file.
 *
 *   cnode --load build/release/examples/modules/counter.so
 *   iex> GenServer.call({:counter, node}, {:add, 5})      # {:ok, 5}
 *
 * Version "1" (counter.so) keeps the count.  Version "2" (counter_v2.so,
 * built with -DCOUNTER_VSN=2) keeps the count and the number of calls
 * served, and answers `calls` too.  Each version's code_change converts
 * from the other's layout, so a running counter can be upgraded and
 * downgraded, with the count kept, through OTP's own sys calls:
 *
 *   GenServer.call({:cnode_code, node}, {:load, ~c"/path/counter_v2.so"})
 *   :sys.suspend({:counter, node})
 *   :sys.change_code({:counter, node}, :counter, ~c"1", [])
 *   :sys.resume({:counter, node})
 *
 * Calls: {add, N} -> {ok, Count}; get -> {ok, Count}; vsn -> "1" | "2";
 * calls (version 2) -> {ok, Calls}.  init's argument is the starting
 * count (an integer; default 0, from the module's args).
 *
 * Build: cc -shared -fPIC -o counter.so counter.c $(pkg-config --cflags
 * cnode).  It links nothing: the node provides the cn_* functions.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cnode.h>
#include <cnode/module.h>

#ifndef COUNTER_VSN
#define COUNTER_VSN 1
#endif

/* The two layouts.  Version 2 puts a field in front, so that reading one
 * layout as the other would show at once. */
typedef struct state_v1 {
  int64_t count;
} state_v1;

typedef struct state_v2 {
  uint64_t calls;
  int64_t count;
} state_v2;

#if COUNTER_VSN == 1
typedef state_v1 state;
#define VSN "1"
#else
typedef state_v2 state;
#define VSN "2"
#endif

static int counter_init(cn_proc *self, void *arg, void **out) {
  const cn_term *start = arg;
  state *s = calloc(1, sizeof *s);
  (void)self;
  if (!s)
    return CN_ENOMEM;
  if (start && cn_get_int64(*start, &s->count) != 0)
    s->count = 0;
  *out = s;
  return CN_NOREPLY;
}

static int counter_call(cn_proc *self, void *st, cn_term req, cn_from *from,
                        cn_buf *reply) {
  state *s = st;
  int64_t n;
  (void)self;
  (void)from;
#if COUNTER_VSN == 2
  s->calls++;
  if (cn_match(req, "calls") == 0)
    cn_build(reply, "{ok, ~u}", s->calls);
  else
#endif
      if (cn_match(req, "{add, ~i}", &n) == 0) {
    s->count += n;
    cn_build(reply, "{ok, ~i}", s->count);
  } else if (cn_match(req, "get") == 0) {
    cn_build(reply, "{ok, ~i}", s->count);
  } else if (cn_match(req, "vsn") == 0) {
    cn_build(reply, "~c", VSN);
  } else {
    cn_build(reply, "{error, unknown_call}");
  }
  return CN_REPLY;
}

/* True when the version term v (sys:change_code's OldVsn: "1" as a
 * charlist, <<"1">> or '1') names version text. */
static bool vsn_is(cn_term v, const char *text) {
  char store[32];
  cn_buf b;
  bool same;
  cn_buf_init_with(&b, store, sizeof store);
  same = (cn_build(&b, "~c", text) == 0 && cn_term_equal(v, cn_buf_term(&b)));
  cn_buf_reset(&b);
  same = same ||
         (cn_build(&b, "~s", text) == 0 && cn_term_equal(v, cn_buf_term(&b))) ||
         cn_is_atom(v, text);
  cn_buf_free(&b);
  return same;
}

/* The state the other version left, converted to this version's layout.
 * old_vsn is what sys:change_code was given: "1" or "2", or {down, V}. */
static int counter_code_change(cn_proc *self, void **st, cn_term old_vsn,
                               cn_term extra) {
  cn_term inner;
  (void)extra;
  if (cn_match(old_vsn, "{down, ~t}", &inner) == 0)
    old_vsn = inner;
  if (vsn_is(old_vsn, VSN))
    return CN_NOREPLY; /* the same layout */
#if COUNTER_VSN == 2
  if (vsn_is(old_vsn, "1")) {
    state_v1 *old = *st;
    state_v2 *s = malloc(sizeof *s);
    if (!s)
      return CN_STOP;
    s->count = old->count;
    s->calls = 0;
    free(old);
    *st = s;
    return CN_NOREPLY;
  }
#else
  if (vsn_is(old_vsn, "2")) {
    state_v2 *old = *st;
    state_v1 *s = malloc(sizeof *s);
    if (!s)
      return CN_STOP;
    s->count = old->count;
    free(old);
    *st = s;
    return CN_NOREPLY;
  }
#endif
  cn_set_reason(self, "{unknown_vsn, ~t}", old_vsn);
  return CN_STOP;
}

static int counter_format_state(cn_proc *self, void *st, cn_buf *out) {
  const state *s = st;
  (void)self;
#if COUNTER_VSN == 2
  return cn_build(out, "#{vsn => ~c, count => ~i, calls => ~u}", VSN, s->count,
                  s->calls);
#else
  return cn_build(out, "#{vsn => ~c, count => ~i}", VSN, s->count);
#endif
}

static void counter_free(void *st) { free(st); }

static const cn_server_ops counter_ops = {
    .name = "counter",
    .init = counter_init,
    .handle_call = counter_call,
    .code_change = counter_code_change,
    .free_state = counter_free,
    .format_state = counter_format_state,
};

CN_MODULE_EXPORT = {CN_MODULE_ABI, "counter", VSN, &counter_ops, "0", NULL, 0};
