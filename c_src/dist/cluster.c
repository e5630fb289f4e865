/* Node monitoring: net_kernel:monitor_nodes/2.  The dist loop tells the
 * subscribers of every connection that comes up or goes down (see
 * cn__dist_node_up and cn__dist_node_down in node.c); global and pg
 * build on it. */
#include "cnode/cluster.h"
#include "dist_internal.h"

#include <stdlib.h>
#include <string.h>

void cn__dist_notify_node(cn__dist *d, uint32_t node, bool up, bool visible) {
  cn_buf b = CN_BUF_INIT;
  cn__nodemon *subs;
  size_t i, n;
  if (cn_build(&b, "{~a, ~a}", up ? "nodeup" : "nodedown",
               cn_node_name(node)) != 0) {
    cn_buf_free(&b);
    return;
  }
  /* Copied out, so that no lock is held while delivering. */
  pthread_mutex_lock(&d->mu);
  n = d->n_nodemons;
  subs = n ? malloc(n * sizeof(*subs)) : NULL;
  if (subs)
    memcpy(subs, d->nodemons, n * sizeof(*subs));
  pthread_mutex_unlock(&d->mu);
  for (i = 0; subs && i < n; i++) {
    cn__msg *m;
    if (!visible && !(subs[i].flags & CN_NODES_ALL))
      continue;
    if (!(m = cn__msg_new(CN__M_MSG, b.data, b.len)))
      break;
    if (cn__deliver(d->rt, subs[i].pid, m) == CN_ENOPROC) {
      /* A dead subscriber's subscriptions go. */
      cn_dist_monitor_nodes(d->rt, subs[i].pid, false, subs[i].flags);
    }
  }
  free(subs);
  cn_buf_free(&b);
}

void cn__nodemons_free(cn__dist *d) {
  free(d->nodemons);
  d->nodemons = NULL;
  d->n_nodemons = d->nodemons_cap = 0;
}

int cn_dist_monitor_nodes(cn_runtime *rt, cn_pid pid, bool on, unsigned flags) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  int rc = 0;
  size_t i;
  if (!rt || (flags & ~CN_NODES_ALL) || pid.node != cn_runtime_node(rt))
    return CN_EINVAL;
  if (!d)
    return CN_ENOTSUP;
  pthread_mutex_lock(&d->mu);
  if (on) {
    if (d->n_nodemons == d->nodemons_cap) {
      size_t cap = d->nodemons_cap ? 2 * d->nodemons_cap : 8;
      cn__nodemon *nv = realloc(d->nodemons, cap * sizeof(*nv));
      if (!nv)
        rc = CN_ENOMEM;
      else {
        d->nodemons = nv;
        d->nodemons_cap = cap;
      }
    }
    if (rc == 0) {
      d->nodemons[d->n_nodemons].pid = pid;
      d->nodemons[d->n_nodemons++].flags = flags;
    }
  } else {
    rc = CN_ENOENT;
    for (i = 0; i < d->n_nodemons; i++) {
      if (cn_pid_equal(&d->nodemons[i].pid, &pid) &&
          d->nodemons[i].flags == flags) {
        memmove(&d->nodemons[i], &d->nodemons[i + 1],
                (d->n_nodemons - i - 1) * sizeof(*d->nodemons));
        d->n_nodemons--;
        rc = 0;
        break;
      }
    }
  }
  pthread_mutex_unlock(&d->mu);
  return rc;
}

size_t cn_dist_nodes_of(cn_runtime *rt, unsigned flags, const char **names,
                        size_t cap) {
  cn__dist *d = rt ? cn__dist_of(rt) : NULL;
  size_t i, n = 0;
  if (!d)
    return 0;
  pthread_mutex_lock(&d->mu);
  for (i = 0; i < d->n_up; i++) {
    uint32_t e = d->up_nodes[i];
    if (!(flags & CN_NODES_ALL) && !(e & CN__UP_VISIBLE))
      continue;
    if (n < cap)
      names[n] = cn_node_name(e & ~CN__UP_VISIBLE);
    n++;
  }
  pthread_mutex_unlock(&d->mu);
  return n;
}
