/* The built-in net_kernel process.  A BEAM node's net_adm:ping/1 (and so
 * Node.ping/1) is gen:call({net_kernel, Node}, '$gen_call',
 * {is_auth, node()}): a node that answers yes is "pong".  The handshake
 * has already checked the cookie by then, so the answer is always yes. */
#include "dist_internal.h"

static int nk_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                   cn_buf *reply) {
  (void)self;
  (void)state;
  (void)from;
  if (cn_match(req, "{is_auth, _}") == 0)
    return cn_put_atom(reply, "yes") == 0 ? CN_REPLY : CN_STOP;
  return cn_build(reply, "{error, unknown_call}") == 0 ? CN_REPLY : CN_STOP;
}

static const cn_server_ops nk_ops = {
    .name = "net_kernel",
    .handle_call = nk_call,
};

int cn__net_kernel_start(cn__dist *d) {
  cn_start_options o = {"net_kernel", NULL};
  return cn_start(d->rt, &nk_ops, NULL, &o, &d->net_kernel);
}
