/* cnode: supervisors.
 *
 * A supervisor is a process that starts, watches and restarts children, with
 * OTP's strategies, restart types, intensity and shutdown rules.  Its
 * specification is an Erlang term, exactly what supervisor:init/1 returns:
 *
 *   {#{strategy => one_for_one, intensity => 1, period => 5},
 *    [#{id => kv, start => {kv_server, start_link, []},
 *       restart => permanent, shutdown => 5000, type => worker,
 *       modules => [kv_server]}]}
 *
 * The tuple forms ({one_for_one, 1, 5} and {Id, StartMFA, Restart,
 * Shutdown, Type, Modules}) are accepted too.  The module of a start MFA
 * names a C start function registered with cn_module_register; the
 * function name is informational and the Args list is passed to it.
 *
 * Supervisors answer the same calls with the same terms as OTP's
 * supervisor, so Erlang code and C code drive them alike:
 *   which_children, count_children, {start_child, Spec | ExtraArgs},
 *   {terminate_child, Id | Pid}, {restart_child, Id}, {delete_child, Id},
 *   {get_childspec, Id}.
 */
#ifndef CNODE_SUPERVISOR_H
#define CNODE_SUPERVISOR_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Starts one child and links it to the caller (the supervisor): normally
 * cn_start_link(rt, &ops, ...).  args is the Args list of the child's start
 * MFA (for simple_one_for_one, with start_child's extra arguments appended).
 * arg is the pointer given to cn_module_register.  Returns 0 with *pid set,
 * CN_EIGNORE (the child is not started; OTP's ignore), or an error, with
 * the error reason built into *reason when known. */
typedef int (*cn_child_start_fn)(cn_runtime *rt, cn_term args, void *arg,
                                 cn_pid *pid, cn_buf *reason);

/* Registers module (an atom) so that child specs may name it in their start
 * MFA.  Returns 0, CN_EEXIST, CN_EINVAL or CN_ENOMEM.  Thread-safe. */
CN_EXTERN int cn_module_register(cn_runtime *rt, const char *module,
                                 cn_child_start_fn start, void *arg);

/* Registers a server module by its callbacks alone: ops->name (an atom)
 * is the module, and a child spec's {Module, start_link, Args} starts the
 * server linked to its supervisor, with no start function of your own.
 * Args take the shapes gen_server:start_link/3,4 take:
 *   []                      init gets a NULL arg;
 *   [Arg]                   init gets a const cn_term * to Arg;
 *   [{local, Name}, Arg]    the same, and the server is registered as
 *                           Name; a name already taken fails the start
 *                           with {already_started, Pid}.
 * Arg lives in the supervisor's spec and is valid while init runs: copy
 * what you keep.  Other Args fail the start with {badarg, Args}.  ops must
 * outlive the runtime.  Returns 0, CN_EEXIST (the module is registered),
 * CN_EINVAL (no ops or no ops->name) or CN_ENOMEM.  Thread-safe. */
CN_EXTERN int cn_server_register(cn_runtime *rt, const cn_server_ops *ops);

/* Makes ops the version of its server module (ops->name, registered with
 * cn_server_register) that later starts use, and that sys:change_code(
 * Server, Module, OldVsn, Extra) moves a suspended server of the module
 * to: the new version's code_change gets the old state (and OldVsn) and
 * returns the new one, and from then on the server runs the new
 * callbacks.  The old ops must stay valid until no process runs them
 * (cn_server_users).  Returns 0, CN_ENOENT (no such module), or
 * CN_EINVAL (no ops or name, or a module registered with
 * cn_module_register).  Thread-safe. */
CN_EXTERN int cn_server_upgrade(cn_runtime *rt, const cn_server_ops *ops);

/* How many live processes run ops now.  A snapshot: a process may start
 * or switch just after.  Thread-safe. */
CN_EXTERN size_t cn_server_users(cn_runtime *rt, const cn_server_ops *ops);

/* Starts a supervisor with spec (see above).  The children start in order
 * before this returns; if one fails, those already started are shut down
 * and CN_EEXIT is returned with {shutdown, {failed_to_start_child, Id,
 * Reason}} in opts->reason.  An invalid spec gives CN_EINVAL with
 * {bad_start_spec, ...} or similar in opts->reason.  Otherwise as
 * cn_start. */
CN_EXTERN int cn_supervisor_start(cn_runtime *rt, cn_term spec,
                                  const cn_start_options *opts, cn_pid *pid);

/* The same, linked to the caller (supervisor:start_link). */
CN_EXTERN int cn_supervisor_start_link(cn_runtime *rt, cn_term spec,
                                       const cn_start_options *opts,
                                       cn_pid *pid);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_SUPERVISOR_H */
