/* cnode: C functions exported as Mod:Fun/Arity.
 *
 * A node answers rpc:call/4, erpc:call/4, erl_call and a remote
 * spawn(Node, M, F, A) by looking M:F/A up in its runtime's export table.
 * cn_export() puts a C function there:
 *
 *   static int add(cn_runtime *rt, cn_term args, cn_buf *out, void *arg) {
 *     int64_t a, b;
 *     if (cn_match(args, "[~i, ~i]", &a, &b) != 0) {
 *       cn_build(out, "badarg");
 *       return CN_ERROR;            // error:badarg in the caller
 *     }
 *     cn_build(out, "~i", a + b);
 *     return CN_RETURN;
 *   }
 *   cn_export(rt, "calc", "add", 2, add, NULL);
 *
 * and then, from any node of the cluster, erpc:call(Node, calc, add,
 * [1, 2]) returns 3.  How the function ends is one of OTP's classes: a
 * value (CN_RETURN), or throw, exit or error with a reason (CN_THROW,
 * CN_EXIT, CN_ERROR), which the caller sees exactly as it would see
 * Mod:Fun raise it on a BEAM node (erpc re-raises the class; rpc returns
 * the value of a throw, and {badrpc, {'EXIT', ...}} for exit and error).
 * An error's stack trace is [{Mod, Fun, Arity, []}].
 *
 * Where it runs.  Each call runs on a thread of its own, in a process of
 * its own as the caller sees it (the pid a remote spawn returns), so the
 * function may block: it may cn_call, cn_receive, sleep or do I/O, as
 * Erlang code called by rpc may.  The thread's own pid (cn_self) is not
 * the spawned process's pid; messages sent to the spawned process are not
 * seen by the function.
 *
 * A call to an M:F/A that is not in the table fails as it does on a BEAM
 * node without that function: erpc raises error:undef with the stack
 * [{M, F, Args, []}], rpc returns {badrpc, {'EXIT', {undef, [{M, F, Args,
 * []}]}}}, and a spawned process exits with {undef, [{M, F, Args, []}]}.
 *
 * With distribution started (cn_dist_start) the table also holds the
 * built-in exports that operators' tools call (erlang:node/0 and the
 * others listed in the README, "rpc, erpc and erl_call").
 */
#ifndef CNODE_EXPORT_H
#define CNODE_EXPORT_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How an exported function ends (OTP's classes).  0 is none of them, so
 * that `return cn_build(...)` by mistake is an error, not a value. */
enum cn_export_result {
  CN_RETURN = 1, /* *out holds the return value */
  CN_THROW = 2,  /* throw(*out) */
  CN_EXIT = 3,   /* exit(*out) */
  CN_ERROR = 4   /* error(*out) */
};

/* An exported function.  args is the argument list (a proper list of
 * arity elements), valid during the call.  out is an empty buffer: append
 * exactly one term, the value or the reason, and return one of
 * cn_export_result.  Any other return value, or an out that is not one
 * term, is error:{bad_return_value, Value} for the caller.  arg is
 * cn_export's.  Runs on a thread of its own (see above), so it may
 * block. */
typedef int (*cn_export_fn)(cn_runtime *rt, cn_term args, cn_buf *out,
                            void *arg);

/* Registers fn as mod:fun/arity.  The names are copied; arg is kept.
 * Returns 0, CN_EEXIST (mod:fun/arity is exported already, by the
 * program or built in), CN_EINVAL (a NULL argument, a name that is empty
 * or over 255 bytes, an arity over 255) or CN_ENOMEM.  Exports stay for
 * the runtime's life.  Thread-safe. */
CN_EXTERN int cn_export(cn_runtime *rt, const char *mod, const char *fun,
                        unsigned arity, cn_export_fn fn, void *arg);

/* True when mod:fun/arity is exported.  Thread-safe. */
CN_EXTERN bool cn_is_exported(cn_runtime *rt, const char *mod, const char *fun,
                              unsigned arity);

/* apply(mod, fun, args) on the calling thread: runs the export and blocks
 * until it returns.  args must be a proper list.  Returns the
 * cn_export_result (the value or reason replaces out's contents), or
 * CN_ENOENT when mod:fun/length(args) is not exported (undef),
 * CN_EBADTERM when args is not a proper list, CN_EDEADLK inside a
 * process's callback (an export may block; call it from a thread).  A
 * function that broke the cn_export_fn rules gives CN_ERROR with
 * {bad_return_value, Value} or bad_return in out.  Thread-safe. */
CN_EXTERN int cn_apply(cn_runtime *rt, const char *mod, const char *fun,
                       cn_term args, cn_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_EXPORT_H */
