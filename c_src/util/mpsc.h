/* The one MPSC queue of the library.  Not installed.
 *
 * Many threads push; one owner takes everything at once.  It is a
 * lock-free LIFO stack (one CAS per push); take swaps the whole stack out
 * and reverses it, so that what one producer pushed comes out in the order
 * it was pushed (FIFO per producer).  A stack may be closed: take leaves a
 * sentinel in place of the stack, and a push that meets the sentinel fails
 * (a dead process's mailbox: its senders learn at once).
 *
 * The queue is written once, and made for each element type that uses it
 * (messages, processes) by CN__MPSC_DEFINE, which links elements through a
 * pointer field of theirs.  C has no generics; this is the one copy.
 */
#ifndef CN_UTIL_MPSC_H
#define CN_UTIL_MPSC_H

#include <stdatomic.h>
#include <stddef.h>

/* Defines, for elements of type `type` linked through their field
 * `link` (a type *):
 *
 *   type *prefix_push(_Atomic(type *) *head, type *n, type *closed)
 *     Pushes n.  Returns the head it replaced (NULL: the stack was
 *     empty, which tells the producer to wake the owner), or `closed`
 *     without pushing when the stack holds that sentinel (closed may be
 *     NULL: no sentinel).  Thread-safe.
 *
 *   type *prefix_take(_Atomic(type *) *head, type *with, type *closed,
 *                     type **tail)
 *     The owner's: swaps the stack for `with` (NULL, or the sentinel to
 *     close it) and returns what was there, oldest first, with the newest
 *     in *tail (NULL, NULL when empty or already closed; a closed stack
 *     stays closed). */
#define CN__MPSC_DEFINE(prefix, type, link)                                    \
  static inline type *prefix##_push(_Atomic(type *) *head, type *n,            \
                                    type *closed) {                            \
    type *h = atomic_load_explicit(head, memory_order_relaxed);                \
    do {                                                                       \
      if (closed && h == closed)                                               \
        return closed;                                                         \
      n->link = h;                                                             \
    } while (!atomic_compare_exchange_weak_explicit(                           \
        head, &h, n, memory_order_acq_rel, memory_order_relaxed));             \
    return h;                                                                  \
  }                                                                            \
  static inline type *prefix##_take(_Atomic(type *) *head, type *with,         \
                                    type *closed, type **tail) {               \
    type *batch = atomic_exchange_explicit(head, with, memory_order_acq_rel);  \
    type *rev = NULL;                                                          \
    if (closed && batch == closed) {                                           \
      atomic_store(head, closed); /* it stays closed */                        \
      batch = NULL;                                                            \
    }                                                                          \
    *tail = batch;                                                             \
    while (batch) {                                                            \
      type *next = batch->link;                                                \
      batch->link = rev;                                                       \
      rev = batch;                                                             \
      batch = next;                                                            \
    }                                                                          \
    return rev;                                                                \
  }

#endif /* CN_UTIL_MPSC_H */
