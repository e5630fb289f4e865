/* cnode: the node program's supervisor, cnode_sup.  See servers.h. */
#include "servers.h"

/* The spec, exactly as an Erlang supervisor's init/1 would return it.  An
 * intensity of 100 restarts per second lets callers crash echo on purpose
 * (its {stop, Reason} request) in a loop without taking the supervisor, and
 * with it the node, down; a real crash loop still ends it within a
 * second. */
#define SUP_SPEC                                                               \
  "{#{strategy => one_for_one, intensity => 100, period => 1},"                \
  " [#{id => kv, start => {cnode_kv, start_link, [{local, kv}, []]},"          \
  "    restart => permanent, shutdown => 5000, type => worker,"                \
  "    modules => [cnode_kv]},"                                                \
  "  #{id => echo, start => {cnode_echo, start_link, [{local, echo}, []]},"    \
  "    restart => permanent, shutdown => 5000, type => worker,"                \
  "    modules => [cnode_echo]}]}"

int node_sup_start(cn_runtime *rt, cn_pid *pid, cn_buf *reason) {
  cn_start_options opts = {.name = NODE_SUP_NAME, .reason = reason};
  cn_buf spec = CN_BUF_INIT;
  int err;

  if ((err = cn_server_register(rt, &kv_server_ops)) != 0 ||
      (err = cn_server_register(rt, &echo_server_ops)) != 0 ||
      (err = cn_build(&spec, SUP_SPEC)) != 0) {
    cn_buf_free(&spec);
    return err;
  }
  err = cn_supervisor_start(rt, cn_buf_term(&spec), &opts, pid);
  cn_buf_free(&spec);
  return err;
}
