/* Not ei: ei_decode_* copies out and trusts; these read views in place. */
/* Readers: the type of a term, its scalar values, and iteration over the
 * elements of tuples, lists and maps.
 */
#include <string.h>

#include "term_internal.h"

/* Values of cn_iter.string. */
enum { IT_FLAT = 0, IT_STRING = 1, IT_LIST = 2 };

cn_term_type cn_term_typeof(cn_term t) {
  if (t.len == 0 || t.ptr == NULL)
    return CN_T_INVALID;
  switch (cn__class(t.ptr)) {
  case CLS_NUMBER: {
    unsigned char tag = (unsigned char)t.ptr[0];
    return tag == ETF_NEW_FLOAT || tag == ETF_FLOAT ? CN_T_FLOAT : CN_T_INTEGER;
  }
  case CLS_ATOM:
    return CN_T_ATOM;
  case CLS_REF:
    return CN_T_REF;
  case CLS_FUN:
    return CN_T_FUN;
  case CLS_PORT:
    return CN_T_PORT;
  case CLS_PID:
    return CN_T_PID;
  case CLS_TUPLE:
    return CN_T_TUPLE;
  case CLS_MAP:
    return CN_T_MAP;
  case CLS_NIL:
    return CN_T_NIL;
  case CLS_LIST:
    return CN_T_LIST;
  case CLS_BITS:
    if ((unsigned char)t.ptr[0] == ETF_BINARY || (unsigned char)t.ptr[5] == 8 ||
        cn__get32(t.ptr + 1) == 0)
      return CN_T_BINARY;
    return CN_T_BITSTRING;
  default:
    return CN_T_INVALID;
  }
}

static int is_int_tag(unsigned char tag) {
  return tag == ETF_SMALL_INTEGER || tag == ETF_INTEGER ||
         tag == ETF_SMALL_BIG || tag == ETF_LARGE_BIG;
}

/* The integer's magnitude, when it fits in 64 bits. */
static int int_mag(cn_term t, uint64_t *m, int *neg) {
  cn__int v;
  size_t i;

  if (t.len == 0 || !is_int_tag((unsigned char)t.ptr[0]))
    return CN_ENOMATCH;
  cn__int_view(t.ptr, &v);
  if (v.n > 8)
    return CN_ENOMATCH;
  *m = 0;
  for (i = v.n; i-- > 0;)
    *m = (*m << 8) | v.mag[i];
  *neg = v.neg;
  return 0;
}

int cn_get_int64(cn_term t, int64_t *v) {
  uint64_t m;
  int neg;

  if (int_mag(t, &m, &neg) != 0)
    return CN_ENOMATCH;
  if (neg) {
    if (m > (uint64_t)INT64_MAX + 1)
      return CN_ENOMATCH;
    *v = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
  } else {
    if (m > (uint64_t)INT64_MAX)
      return CN_ENOMATCH;
    *v = (int64_t)m;
  }
  return 0;
}

int cn_get_uint64(cn_term t, uint64_t *v) {
  uint64_t m;
  int neg;

  if (int_mag(t, &m, &neg) != 0 || neg)
    return CN_ENOMATCH;
  *v = m;
  return 0;
}

int cn_get_double(cn_term t, double *v) {
  unsigned char tag;
  double d;

  if (t.len == 0)
    return CN_ENOMATCH;
  tag = (unsigned char)t.ptr[0];
  if (tag != ETF_NEW_FLOAT && tag != ETF_FLOAT)
    return CN_ENOMATCH;
  if (cn__float_value(t.ptr, &d) != 0)
    return CN_ENOMATCH;
  *v = d;
  return 0;
}

int cn_get_atom(cn_term t, char *buf, size_t cap) {
  cn__atom a;
  size_t n;

  if (t.len == 0 || !cn__is_atom_tag((unsigned char)t.ptr[0]))
    return CN_ENOMATCH;
  cn__atom_view(t.ptr, &a);
  n = cn__atom_utf8_len(&a);
  if (buf == NULL || n >= cap)
    return CN_ENOSPC;
  cn__atom_utf8(&a, buf);
  buf[n] = '\0';
  return 0;
}

int cn_get_binary(cn_term t, const char **p, size_t *n) {
  if (cn_term_typeof(t) != CN_T_BINARY)
    return CN_ENOMATCH;
  *n = cn__get32(t.ptr + 1);
  *p = t.ptr + ((unsigned char)t.ptr[0] == ETF_BINARY ? 5 : 6);
  return 0;
}

bool cn_is_atom(cn_term t, const char *name) {
  cn__atom a;
  if (t.len == 0 || name == NULL || !cn__is_atom_tag((unsigned char)t.ptr[0]))
    return false;
  cn__atom_view(t.ptr, &a);
  return cn__atom_eq(&a, name, strlen(name));
}

int cn__ident_node(const char *p, cn_term_type type, uint32_t *node, bool add) {
  unsigned char tag = (unsigned char)p[0];
  cn__atom a;

  if (type == CN_T_PID && (tag == ETF_PID || tag == ETF_NEW_PID))
    cn__atom_view(p + 1, &a);
  else if (type == CN_T_REF && tag == ETF_REFERENCE)
    cn__atom_view(p + 1, &a);
  else if (type == CN_T_REF &&
           (tag == ETF_NEW_REFERENCE || tag == ETF_NEWER_REFERENCE))
    cn__atom_view(p + 3, &a);
  else
    return CN_ENOMATCH;
  return cn__intern_atom(&a, node, add);
}

void cn__pid_fill(const char *p, uint32_t node, cn_pid *out) {
  const char *q = p + 1;
  q += cn__atom_size(q);
  out->node = node;
  out->id = cn__get32(q);
  out->serial = cn__get32(q + 4);
  out->creation =
      (unsigned char)p[0] == ETF_PID ? (unsigned char)q[8] : cn__get32(q + 8);
}

void cn__ref_fill(const char *p, uint32_t node, cn_ref *out) {
  unsigned char tag = (unsigned char)p[0];
  const char *q;
  uint32_t i, len;

  out->node = node;
  if (tag == ETF_REFERENCE) {
    q = p + 1;
    q += cn__atom_size(q);
    out->len = 1;
    out->n[0] = cn__get32(q);
    for (i = 1; i < CN_REF_MAX_WORDS; i++)
      out->n[i] = 0;
    out->creation = (unsigned char)q[4];
    return;
  }
  len = cn__get16(p + 1);
  q = p + 3;
  q += cn__atom_size(q);
  if (tag == ETF_NEW_REFERENCE) {
    out->creation = (unsigned char)q[0];
    q += 1;
  } else {
    out->creation = cn__get32(q);
    q += 4;
  }
  out->len = len;
  for (i = 0; i < CN_REF_MAX_WORDS; i++)
    out->n[i] = i < len ? cn__get32(q + 4 * i) : 0;
}

int cn__decode_pid(const char *p, cn_pid *out) {
  uint32_t node;
  int rc = cn__ident_node(p, CN_T_PID, &node, true);
  if (rc == 0)
    cn__pid_fill(p, node, out);
  return rc;
}

int cn__decode_ref(const char *p, cn_ref *out) {
  uint32_t node;
  int rc = cn__ident_node(p, CN_T_REF, &node, true);
  if (rc == 0)
    cn__ref_fill(p, node, out);
  return rc;
}

int cn__get_pid_known(cn_term t, cn_pid *p) {
  uint32_t node;
  int rc;
  if (t.len == 0)
    return CN_ENOMATCH;
  if ((rc = cn__ident_node(t.ptr, CN_T_PID, &node, false)) == 0)
    cn__pid_fill(t.ptr, node, p);
  return rc;
}

int cn__get_ref_known(cn_term t, cn_ref *r) {
  uint32_t node;
  int rc;
  if (t.len == 0)
    return CN_ENOMATCH;
  if ((rc = cn__ident_node(t.ptr, CN_T_REF, &node, false)) == 0)
    cn__ref_fill(t.ptr, node, r);
  return rc;
}

int cn__decode_port(const char *p, cn_port *out) {
  unsigned char tag = (unsigned char)p[0];
  cn__atom node;
  const char *q;
  uint32_t idx;
  int rc;

  if (tag != ETF_PORT && tag != ETF_NEW_PORT && tag != ETF_V4_PORT)
    return CN_ENOMATCH;
  q = cn__atom_view(p + 1, &node);
  if ((rc = cn__intern_atom(&node, &idx, true)) != 0)
    return rc;
  out->node = idx;
  if (tag == ETF_V4_PORT) {
    out->id = cn__get64(q);
    out->creation = cn__get32(q + 8);
  } else {
    out->id = cn__get32(q);
    out->creation = tag == ETF_PORT ? (unsigned char)q[4] : cn__get32(q + 4);
  }
  return 0;
}

int cn_get_pid(cn_term t, cn_pid *p) {
  cn_pid tmp;
  int rc;
  if (t.len == 0)
    return CN_ENOMATCH;
  if ((rc = cn__decode_pid(t.ptr, &tmp)) == 0)
    *p = tmp;
  return rc;
}

int cn_get_ref(cn_term t, cn_ref *r) {
  cn_ref tmp;
  int rc;
  if (t.len == 0)
    return CN_ENOMATCH;
  if ((rc = cn__decode_ref(t.ptr, &tmp)) == 0)
    *r = tmp;
  return rc;
}

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
