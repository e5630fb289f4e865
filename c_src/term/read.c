/* By hand only what ei has no call for: a term's type, views, iteration.
 *
 * Readers: the type of a term, its scalar values, and iteration over the
 * elements of tuples, lists and maps.  Integers and binaries are decoded
 * by ei_decode_*; atoms, floats, pids and references by the layer's views,
 * each for the reason given where it is read.  ei trusts its input (it takes no
 * length), which is safe here only because a cn_term is a view of bytes the
 * bounded validator accepted, or that cn_build / cn_put_* wrote: no ei call
 * below ever sees anything else.
 */
#include <string.h>

#include <ei.h>

#include "term_internal.h"

/* Values of cn_iter.string. */
enum { IT_FLAT = 0, IT_STRING = 1, IT_LIST = 2 };

/* The type of each class (CLS_*); floats and bitstrings are told apart by
 * their tags. */
static const cn_term_type class_type[CLS_BITS + 1] = {
    [CLS_NUMBER] = CN_T_INTEGER, [CLS_ATOM] = CN_T_ATOM,  [CLS_REF] = CN_T_REF,
    [CLS_FUN] = CN_T_FUN,        [CLS_PORT] = CN_T_PORT,  [CLS_PID] = CN_T_PID,
    [CLS_TUPLE] = CN_T_TUPLE,    [CLS_MAP] = CN_T_MAP,    [CLS_NIL] = CN_T_NIL,
    [CLS_LIST] = CN_T_LIST,      [CLS_BITS] = CN_T_BINARY};

cn_term_type cn_term_typeof(cn_term t) {
  if (t.len == 0 || t.ptr == NULL)
    return CN_T_INVALID;
  if (cn__is_float(t.ptr))
    return CN_T_FLOAT;
  if ((unsigned char)t.ptr[0] == ETF_BIT_BINARY &&
      (unsigned char)t.ptr[5] != 8 && cn__get32(t.ptr + 1) != 0)
    return CN_T_BITSTRING;
  return class_type[cn__class(t.ptr)];
}

int cn_get_int64(cn_term t, int64_t *v) {
  long long x;
  int i = 0;
  /* The commonest integer is read inline: the call into ei costs more. */
  if (t.len != 0 && (unsigned char)t.ptr[0] == ETF_SMALL_INTEGER) {
    *v = (unsigned char)t.ptr[1];
    return 0;
  }
  if (t.len != 0 && (unsigned char)t.ptr[0] == ETF_INTEGER) {
    *v = (int32_t)cn__get32(t.ptr + 1);
    return 0;
  }
  if (t.len == 0 || ei_decode_longlong(t.ptr, &i, &x) < 0)
    return CN_ENOMATCH;
  *v = x;
  return 0;
}

int cn_get_uint64(cn_term t, uint64_t *v) {
  unsigned long long x;
  long long z;
  int i = 0;
  if (t.len == 0)
    return CN_ENOMATCH;
  if (ei_decode_ulonglong(t.ptr, &i, &x) < 0) {
    /* ei refuses a bignum whose sign is set even when its magnitude is
     * zero, which erts reads as 0. */
    i = 0;
    if (ei_decode_longlong(t.ptr, &i, &z) < 0 || z != 0)
      return CN_ENOMATCH;
    x = 0;
  }
  *v = x;
  return 0;
}

int cn_get_double(cn_term t, double *v) {
  /* Not ei_decode_double: it reads FLOAT_EXT's text with sscanf, which
   * follows the C locale's decimal point; cn__float_value does not. */
  if (t.len == 0 || !cn__is_float(t.ptr) || cn__float_value(t.ptr, v) != 0)
    return CN_ENOMATCH;
  return 0;
}

/* cn_get_atom_n, and cn_get_atom when cstr: a name with a NUL is then
 * CN_ENOTSUP, checked before the size so that the error does not depend
 * on cap.  The atom is viewed once for both. */
static inline int get_atom(cn_term t, char *buf, size_t cap, size_t *len,
                           bool cstr) {
  char tmp[2 * 255];
  const char *s;
  cn__atom a;
  size_t n;

  if (t.len == 0 || !cn__is_atom_tag((unsigned char)t.ptr[0]))
    return CN_ENOMATCH;
  cn__atom_view(t.ptr, &a);
  if (cstr && cn__atom_has_nul(&a))
    return CN_ENOTSUP; /* not a C string */
  /* Not ei_decode_atom_as: it copies byte by byte, which made reading a
   * UTF-8 'hello' twice as slow. */
  s = cn__atom_text(&a, tmp, &n);
  if (buf == NULL || n >= cap)
    return CN_ENOSPC;
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (len != NULL)
    *len = n;
  return 0;
}

int cn_get_atom_n(cn_term t, char *buf, size_t cap, size_t *len) {
  return get_atom(t, buf, cap, len, false);
}

int cn_get_atom(cn_term t, char *buf, size_t cap) {
  return get_atom(t, buf, cap, NULL, true);
}

int cn_get_binary(cn_term t, const char **p, size_t *n) {
  const char *d;
  size_t bits;
  int i = 0;
  if (t.len == 0 || ei_decode_bitstring(t.ptr, &i, &d, NULL, &bits) < 0 ||
      bits % 8 != 0)
    return CN_ENOMATCH;
  *p = d;
  *n = bits / 8;
  return 0;
}

bool cn_is_atom(cn_term t, const char *name) {
  cn__atom a;
  if (t.len == 0 || name == NULL || !cn__is_atom_tag((unsigned char)t.ptr[0]))
    return false;
  cn__atom_view(t.ptr, &a);
  return cn__atom_eq(&a, name, strlen(name));
}

/* ---- Pids, references and ports ----------------------------------------- */

/* Reads the pid or reference t (type) into out (a cn_pid or cn_ref),
 * through the view that compare and print use, interning its node when
 * add (else CN_ENOENT for a name no one interned); out is left alone on
 * failure.  Not ei_decode_pid / _ref: they first copy the node's name
 * into a 1 KiB struct, which made reading a pid 30% slower, and they keep
 * only 2 bits of the 8-bit creation of PID_EXT, REFERENCE_EXT and
 * NEW_REFERENCE_EXT, which the validator lets through whole (so the term
 * re-encodes as it came). */
static int ident_get(cn_term t, cn_term_type type, bool add, void *out) {
  cn_pid *pid = out;
  cn_ref *ref = out;
  uint32_t node, k;
  cn__ident d;
  int rc;

  if (t.len == 0 || cn__class(t.ptr) != (type == CN_T_PID ? CLS_PID : CLS_REF))
    return CN_ENOMATCH;
  /* The node is interned from the term's own bytes, which is cheaper than
   * measuring ei's copy of them.  A new name with a NUL in it is refused:
   * as a C string (ei's, or cn_node_name's) it would read as another
   * node's name, perhaps ours.  Known names skip that check. */
  cn__ident_view(t.ptr, &d);
  rc = cn__intern_atom(&d.node, &node, false);
  if (rc == CN_ENOENT && add)
    rc = cn__atom_has_nul(&d.node) ? CN_EINVAL
                                   : cn__intern_atom(&d.node, &node, true);
  if (rc != 0)
    return rc;
  if (type == CN_T_PID) {
    *pid = (cn_pid){node, (uint32_t)d.id, d.serial, d.creation};
    return 0;
  }
  ref->node = node;
  ref->len = d.len;
  ref->creation = d.creation;
  for (k = 0; k < CN_REF_MAX_WORDS; k++)
    ref->n[k] = k < d.len ? cn__get32(d.words + 4 * k) : 0;
  return 0;
}

int cn__get_pid_known(cn_term t, cn_pid *p) {
  return ident_get(t, CN_T_PID, false, p);
}

int cn__get_ref_known(cn_term t, cn_ref *r) {
  return ident_get(t, CN_T_REF, false, r);
}

int cn_get_pid(cn_term t, cn_pid *p) { return ident_get(t, CN_T_PID, true, p); }

int cn_get_ref(cn_term t, cn_ref *r) { return ident_get(t, CN_T_REF, true, r); }

/* ---- Iteration ---------------------------------------------------------- */

int cn_iter_init(cn_iter *it, cn_term t, size_t *count) {
  const char *p = t.ptr;
  size_t n = 0;

  if (t.len == 0 || p == NULL)
    return CN_ENOMATCH;
  it->end = p + t.len;
  it->tail.ptr = NULL;
  it->tail.len = 0;
  it->string = IT_FLAT;
  it->scratch[0] = it->scratch[1] = 0;
  switch (cn__class(p)) {
  case CLS_TUPLE:
    n = cn__tuple_arity(p);
    it->pos = p + ((unsigned char)p[0] == ETF_SMALL_TUPLE ? 2 : 5);
    break;
  case CLS_MAP:
    n = 2 * (size_t)cn__get32(p + 1);
    it->pos = p + 5;
    break;
  case CLS_NIL: /* [] or "" */
    it->pos = cn__skip_fast(p);
    it->tail = t;
    break;
  case CLS_LIST: {
    cn__list l;
    it->pos = p;
    cn__list_enter(&l, &it->pos);
    it->string = l.str ? IT_STRING : IT_LIST;
    it->left = (size_t)l.left;
    if (count != NULL) { /* walks the list, across all its segments */
      uint64_t c = 0;
      cn__list_end(&l, it->pos, &c);
      *count = (size_t)c;
    }
    return 0;
  }
  default:
    return CN_ENOMATCH;
  }
  it->left = n;
  if (count != NULL)
    *count = n;
  return 0;
}

bool cn_iter_next(cn_iter *it, cn_term *elem) {
  cn__list l;
  const char *x;
  int more;

  if (it->left > 0 && it->pos >= it->end)
    return false; /* only for a view that lies about its length */
  if (it->left > 0 && it->string != IT_STRING) {
    /* An element of a tuple, a map or a LIST_EXT segment. */
    it->left--;
    x = it->pos;
    it->pos = cn__skip_fast(x);
    elem->ptr = x;
    elem->len = (size_t)(it->pos - x);
    return true;
  }
  if (it->string == IT_FLAT)
    return false;
  /* String bytes, the next segment, or the tail: the list cursor. */
  l.left = it->left;
  l.str = it->string == IT_STRING;
  more = cn__list_next(&l, &it->pos, &x);
  it->left = (size_t)l.left;
  it->string = !more ? IT_FLAT : l.str ? IT_STRING : IT_LIST;
  if (!more) {
    it->tail.ptr = x;
    it->tail.len = x == it->pos ? (size_t)(cn__skip_fast(x) - x) : 1;
    return false;
  }
  elem->ptr = x;
  if (x == it->pos) { /* the first element of a LIST_EXT segment */
    it->pos = cn__skip_fast(x);
    elem->len = (size_t)(it->pos - x);
  } else { /* a STRING_EXT byte: the static table outlives the iterator */
    elem->len = 2;
  }
  return true;
}
