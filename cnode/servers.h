/* cnode: the servers the node program hosts, and their supervisor.
 *
 *   cnode_sup (one_for_one, intensity 100, period 1)
 *   |-- kv     module cnode_kv: a key-value store of terms
 *   `-- echo   module cnode_echo: echoes, sleeps, stops and calls on
 *              request, for testing callers (and the node) from outside
 *
 * Each server is registered by its callbacks (cn_server_register), so the
 * child specs start them with {Module, start_link, [{local, Name}, []]}
 * and no start function of their own.  The requests each server answers
 * are listed in its file.
 */
#ifndef CNODE_PROGRAM_SERVERS_H
#define CNODE_PROGRAM_SERVERS_H

#include <cnode.h>

#define NODE_SUP_NAME "cnode_sup" /* the supervisor's registered name */
#define KV_NAME "kv"              /* the kv server's registered name */
#define ECHO_NAME "echo"          /* the echo server's registered name */

/* The kv server's callbacks (module cnode_kv).  Its state is made by
 * init; the start argument is ignored. */
extern const cn_server_ops kv_server_ops;

/* The echo server's callbacks (module cnode_echo). */
extern const cn_server_ops echo_server_ops;

/* The cluster server's callbacks (module cnode_cluster, registered as
 * CLUSTER_NAME; cluster.c lists its requests).  The start argument is
 * ignored. */
#define CLUSTER_NAME "cnode_cluster"
extern const cn_server_ops cluster_server_ops;

/* Registers the modules cnode_kv and cnode_echo with rt and starts the
 * supervisor registered as "cnode_sup", with kv and echo as its children,
 * not linked to the caller.  Returns 0 with *pid set once both children
 * run, or an error of cn_server_register or cn_supervisor_start, with the
 * supervisor's reason (if any) in *reason.  Thread-safe; call it once per
 * runtime, since the modules stay registered. */
int node_sup_start(cn_runtime *rt, cn_pid *pid, cn_buf *reason);

/* Exports cnode_echo:echo/1, raise/2 and sleep/1 (see echo.c), for
 * testing rpc, erpc and erl_call against C functions.  Returns 0 or an
 * error of cn_export. */
int echo_export(cn_runtime *rt);

#endif /* CNODE_PROGRAM_SERVERS_H */
