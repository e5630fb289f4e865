/* By hand only what ei has no call for: a term's type, views, iteration.
 *
 * Readers: the type of a term, its scalar values, and iteration over the
 * elements of tuples, lists and maps.  Scalars are decoded by ei_decode_*.
 * ei trusts its input (it takes no length), which is safe here only
 * because a cn_term is a view of bytes the bounded validator accepted, or
 * that cn_build / cn_put_* wrote: no ei call below ever sees anything
 * else.
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
  unsigned char tag;
  if (t.len == 0 || t.ptr == NULL)
    return CN_T_INVALID;
  tag = (unsigned char)t.ptr[0];
  if (tag == ETF_NEW_FLOAT || tag == ETF_FLOAT)
    return CN_T_FLOAT;
  if (tag == ETF_BIT_BINARY && (unsigned char)t.ptr[5] != 8 &&
      cn__get32(t.ptr + 1) != 0)
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
  double d;
  int i = 0;
  if (t.len == 0)
    return CN_ENOMATCH;
  /* ei reads FLOAT_EXT's text with sscanf, which follows the C locale's
   * decimal point; cn__float_value does not. */
  if ((unsigned char)t.ptr[0] == ETF_FLOAT) {
    if (cn__float_value(t.ptr, &d) != 0)
      return CN_ENOMATCH;
  } else if (ei_decode_double(t.ptr, &i, &d) < 0) {
    return CN_ENOMATCH;
  }
  *v = d;
  return 0;
}

/* cn_get_atom_n, and cn_get_atom when cstr: a name with a NUL is then
 * CN_ENOTSUP, checked before the size so that the error does not depend
 * on cap.  The atom is viewed once for both. */
static inline int get_atom(cn_term t, char *buf, size_t cap, size_t *len,
                           bool cstr) {
  cn__atom a;
  size_t n;
  int i = 0;

  if (t.len == 0 || !cn__is_atom_tag((unsigned char)t.ptr[0]))
    return CN_ENOMATCH;
  cn__atom_view(t.ptr, &a);
  if (cstr && cn__atom_has_nul(&a))
    return CN_ENOTSUP; /* not a C string */
  n = cn__atom_utf8_len(&a);
  if (buf == NULL || n >= cap)
    return CN_ENOSPC;
  /* A UTF-8 name is copied as it is.  ei converts a Latin-1 one; it copies
   * byte by byte, which made reading a UTF-8 'hello' twice as slow.  n is
   * at most 2 * 65535 bytes (a Latin-1 ATOM_EXT), so n + 1 is an int. */
  if (!a.latin1) {
    memcpy(buf, a.s, n);
    buf[n] = '\0';
  } else if (ei_decode_atom_as(t.ptr, &i, buf, (int)n + 1, ERLANG_UTF8, NULL,
                               NULL) < 0) {
    return CN_ENOMATCH;
  }
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

/* ident_fill's path for the older encodings, through the view that
 * compare and print use; apart, so that the fast path's frame stays
 * small.  ei would keep only 2 bits of the 8-bit creation of PID_EXT,
 * REFERENCE_EXT and NEW_REFERENCE_EXT; the validator lets the
 * whole byte through, so it is read whole, and the term re-encodes as it
 * came. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int
ident_fill_old(const char *p, cn_term_type type, uint32_t node, void *out) {
  cn_pid *pid = out;
  cn_ref *ref = out;
  cn__ident d;
  uint32_t k;

  cn__ident_view(p, &d);
  if (type == CN_T_PID) {
    pid->node = node;
    pid->id = (uint32_t)d.id;
    pid->serial = d.serial;
    pid->creation = d.creation;
  } else {
    ref->node = node;
    ref->len = d.len;
    ref->creation = d.creation;
    for (k = 0; k < CN_REF_MAX_WORDS; k++)
      ref->n[k] = k < d.len ? cn__get32(d.words + 4 * k) : 0;
  }
  return 0;
}

/* Reads the pid or reference (type) at p, whose node's index is node,
 * into out (a cn_pid or cn_ref).  NEW_PID_EXT and NEWER_REFERENCE_EXT, all that
 * OTP 23+ sends, are read here: ei_decode_pid first copies the node's name into
 * a 1 KiB struct, which made reading a pid 30% slower. */
static int ident_fill(const char *p, cn_term_type type, uint32_t node,
                      void *out) {
  unsigned char tag = (unsigned char)p[0];
  cn_pid *pid = out;
  cn_ref *ref = out;
  const char *q;
  cn__atom a;
  uint32_t k;

  if (type == CN_T_PID && tag == ETF_NEW_PID) {
    q = cn__atom_view(p + 1, &a);
    pid->node = node;
    pid->id = cn__get32(q);
    pid->serial = cn__get32(q + 4);
    pid->creation = cn__get32(q + 8);
    return 0;
  }
  if (type == CN_T_REF && tag == ETF_NEWER_REFERENCE) {
    q = cn__atom_view(p + 3, &a);
    ref->node = node;
    ref->len = cn__get16(p + 1); /* the validator allows 1 to 5 */
    ref->creation = cn__get32(q);
    for (k = 0; k < CN_REF_MAX_WORDS; k++)
      ref->n[k] = k < ref->len ? cn__get32(q + 4 + 4 * k) : 0;
    return 0;
  }
  return ident_fill_old(p, type, node, out);
}

int cn__ident_node(const char *p, cn_term_type type, uint32_t *node, bool add) {
  unsigned char tag = (unsigned char)p[0];
  int ref3 = tag == ETF_NEW_REFERENCE || tag == ETF_NEWER_REFERENCE, rc;
  cn__atom a;

  if (type == CN_T_PID ? tag != ETF_PID && tag != ETF_NEW_PID
                       : tag != ETF_REFERENCE && !ref3)
    return CN_ENOMATCH;
  /* The node is interned from the term's own bytes, which is cheaper than
   * measuring ei's copy of them.  A new name with a NUL in it is refused:
   * as a C string (ei's, or cn_node_name's) it would read as another
   * node's name, perhaps ours.  Known names skip that check. */
  cn__atom_view(p + (ref3 ? 3 : 1), &a);
  rc = cn__intern_atom(&a, node, false);
  if (rc != CN_ENOENT || !add)
    return rc;
  return cn__atom_has_nul(&a) ? CN_EINVAL : cn__intern_atom(&a, node, true);
}

/* Decodes the identifier t into out (see ident_fill), interning its node
 * when add; out is left alone on failure. */
static int ident_get(cn_term t, cn_term_type type, bool add, void *out) {
  uint32_t node;
  int rc = t.len == 0 ? CN_ENOMATCH : cn__ident_node(t.ptr, type, &node, add);
  return rc != 0 ? rc : ident_fill(t.ptr, type, node, out);
}

void cn__pid_fill(const char *p, uint32_t node, cn_pid *out) {
  ident_fill(p, CN_T_PID, node, out);
}

void cn__ref_fill(const char *p, uint32_t node, cn_ref *out) {
  ident_fill(p, CN_T_REF, node, out);
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
  unsigned char tag;
  size_t n = 0;

  if (t.len == 0 || p == NULL)
    return CN_ENOMATCH;
  tag = (unsigned char)p[0];
  it->end = p + t.len;
  it->tail.ptr = NULL;
  it->tail.len = 0;
  it->string = IT_FLAT;
  it->scratch[0] = it->scratch[1] = 0;
  switch (cn__class(p)) {
  case CLS_TUPLE:
    n = cn__tuple_arity(p);
    it->pos = p + (tag == ETF_SMALL_TUPLE ? 2 : 5);
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
    if (count != NULL)
      *count = l.str ? (size_t)l.left : (size_t)cn__list_count(p);
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
