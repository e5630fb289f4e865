/* cnode: a member of the cluster.  Node monitoring, global and pg.
 *
 * Node monitoring is net_kernel:monitor_nodes/2: a process (or a plain
 * thread's pid) gets {nodeup, Node} when a connection completes its
 * handshake and {nodedown, Node} when it goes, after the connection's
 * links and monitors have fired.  By default only visible nodes are
 * reported (both ends published), as OTP does; CN_NODES_ALL adds the
 * hidden ones.
 *
 * global.  A published node (cn_dist_options.published) starts a
 * global_name_server that takes part in OTP 25's global protocol (the
 * connect, lock and name-exchange protocol of global.erl, version 8): a
 * BEAM node's global:sync() returns with this node in the cluster, the
 * cluster forms its full mesh through it, names registered on BEAM nodes
 * resolve here, and names registered here resolve there.  A hidden node
 * takes no part in global, as in OTP.  See the README, "global and pg",
 * for what is left out (name conflicts are not resolved here; global
 * groups are not supported).
 *
 * pg.  A scope is a registered process of that name (OTP's default scope
 * is `pg`), started with cn_pg_start_scope; it speaks pg.erl's protocol
 * with the scopes of the same name on the visible nodes: members joined
 * here are seen by :pg.get_members there, and the other way round.  A
 * member that dies leaves its groups; the members of a node that goes
 * down leave with it.  Groups are any terms.
 */
#ifndef CNODE_CLUSTER_H
#define CNODE_CLUSTER_H

#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Node monitoring --------------------------------------------------- */

#define CN_NODES_ALL 0x1u /* hidden nodes too (node_type all) */

/* net_kernel:monitor_nodes(On, Opts) for pid (a local process or a plain
 * thread's pid; see cn_self).  On: from now on pid gets {nodeup, Node} and
 * {nodedown, Node} messages (Node an atom); a pid subscribed twice gets
 * each message twice, as in OTP.  Off: drops one subscription.  A dead
 * pid's subscriptions are dropped.  Returns 0, CN_ENOTSUP (distribution is
 * not started), CN_ENOENT (off, not subscribed), CN_EINVAL or CN_ENOMEM.
 * Thread-safe. */
CN_EXTERN int cn_dist_monitor_nodes(cn_runtime *rt, cn_pid pid, bool on,
                                    unsigned flags);

/* nodes() (visible only) or, with CN_NODES_ALL, nodes(connected), as
 * cn_dist_nodes: fills names (static storage) with up to cap names and
 * returns how many there are.  Thread-safe. */
CN_EXTERN size_t cn_dist_nodes_of(cn_runtime *rt, unsigned flags,
                                  const char **names, size_t cap);

/* ---- global ------------------------------------------------------------ */

/* global:whereis_name(Name) for an atom name.  Returns 0 with *pid set,
 * CN_ENOENT (not registered), or CN_ENOTSUP (global is not running: a
 * hidden node, or no distribution).  Thread-safe. */
CN_EXTERN int cn_global_whereis(cn_runtime *rt, const char *name, cn_pid *pid);

/* The same for any term as the name. */
CN_EXTERN int cn_global_whereis_term(cn_runtime *rt, cn_term name, cn_pid *pid);

/* global:register_name(Name, Pid) for an atom name: takes global's lock
 * on every known node, registers the name there and here, and lets the
 * lock go.  The name goes when the process dies (every node monitors it)
 * and when this node goes down.  The resolve method given to the other
 * nodes is global:random_exit_name/3.  Returns 0 (yes), CN_EEXIST (no:
 * the name is taken, or pid already has a global name), CN_ENOTSUP,
 * CN_EINVAL, or CN_EDEADLK inside a callback: it blocks (until the lock
 * is had), so call it from a plain thread.  Thread-safe. */
CN_EXTERN int cn_global_register(cn_runtime *rt, const char *name, cn_pid pid);

/* global:unregister_name(Name).  Returns 0 (also when the name was not
 * registered), CN_ENOTSUP, CN_EINVAL or CN_EDEADLK, as above. */
CN_EXTERN int cn_global_unregister(cn_runtime *rt, const char *name);

/* global:registered_names(): appends the list of names to out.  Returns
 * 0, CN_ENOTSUP or CN_ENOMEM.  Thread-safe. */
CN_EXTERN int cn_global_registered_names(cn_runtime *rt, cn_buf *out);

/* global:sync(): waits until global has exchanged names with every
 * visible node connected now, or until timeout.  Returns 0, CN_ETIMEDOUT,
 * CN_ENOTSUP or CN_EDEADLK.  Thread-safe. */
CN_EXTERN int cn_global_sync(cn_runtime *rt, cn_ms timeout);

/* ---- pg ---------------------------------------------------------------- */

/* pg:start_link(Scope): starts the scope process, registered as scope,
 * which discovers the scopes of that name on the visible nodes.  Returns
 * 0, CN_EEXIST (started already, or the name is taken), CN_ENOTSUP
 * (distribution is not started), CN_EINVAL or CN_ENOMEM.  Thread-safe;
 * not from inside a callback (CN_EDEADLK). */
CN_EXTERN int cn_pg_start_scope(cn_runtime *rt, const char *scope);

/* pg:join(Scope, Group, Pid): pid, a local process, joins group (any
 * term; a process may join a group more than once, as in OTP).  The
 * scope process does it: from a plain thread this is a call, done when it
 * returns (then cn_pg_get_members sees it, and the other nodes' scopes as
 * its message arrives); from a callback, where nothing may block, it is a
 * message, done a moment later.  Returns 0, CN_ENOENT (no such scope),
 * CN_EINVAL (pid is not local, or a bad group term) or CN_ENOMEM.
 * Thread-safe. */
CN_EXTERN int cn_pg_join(cn_runtime *rt, const char *scope, cn_term group,
                         cn_pid pid);

/* pg:leave(Scope, Group, Pid): one membership of pid in group goes, as
 * cn_pg_join does it.  Returns 0, CN_ENOENT (no such scope, or pid is not
 * in group: OTP's not_joined) or CN_EINVAL.  Thread-safe. */
CN_EXTERN int cn_pg_leave(cn_runtime *rt, const char *scope, cn_term group,
                          cn_pid pid);

/* pg:get_members(Scope, Group), or with local_only
 * pg:get_local_members: fills pids with up to cap members and returns how
 * many there are (0 for no such scope or group).  Thread-safe. */
CN_EXTERN size_t cn_pg_get_members(cn_runtime *rt, const char *scope,
                                   cn_term group, bool local_only, cn_pid *pids,
                                   size_t cap);

/* pg:which_groups(Scope): appends the list of groups that have members to
 * out.  Returns 0, CN_ENOENT (no such scope) or CN_ENOMEM.
 * Thread-safe. */
CN_EXTERN int cn_pg_which_groups(cn_runtime *rt, const char *scope,
                                 cn_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_CLUSTER_H */
