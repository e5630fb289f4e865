/* cnode: server modules that the node program loads.
 *
 * A server module is a shared object that exports one described symbol,
 * `cnode_module`, of type cn_module: the module's name, its version, its
 * callbacks, and the defaults of its child spec.  The stock node loads it
 * with `cnode --load PATH` (or from a --config file), registers the
 * callbacks under the module's name, and starts the server under
 * cnode_sup, registered under that name:
 *
 *   #include <cnode.h>
 *   #include <cnode/module.h>
 *
 *   static const cn_server_ops ops = {.name = "counter", ...};
 *   CN_MODULE_EXPORT = {CN_MODULE_ABI, "counter", "1", &ops, "0", NULL, 0};
 *
 *   cc -shared -fPIC -o counter.so counter.c $(pkg-config --cflags cnode)
 *
 * The object links nothing: the node program provides every cn_* function
 * (it exports them to the modules it loads).  ops->name must be the
 * module's name.
 *
 * A new version of a loaded module is loaded beside the old one (the
 * registered process cnode_code, {load, Path}), and OTP's
 * sys:suspend/change_code/resume switch a running server to it: the new
 * version's code_change gets the old version's state and its version
 * string, and returns the converted state.  See README.md, "Load your
 * servers into the node".
 */
#ifndef CNODE_MODULE_H
#define CNODE_MODULE_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The layout of cn_module this header describes.  The node refuses a
 * module built for another. */
#define CN_MODULE_ABI 1

/* The name of the symbol the node looks up. */
#define CN_MODULE_SYMBOL "cnode_module"

typedef struct cn_module {
  unsigned abi;             /* CN_MODULE_ABI */
  const char *name;         /* the module (an atom), also its default
                             * registered name; equal to ops->name */
  const char *vsn;          /* its version, any text ("1", "2.0.1"), as
                             * sys and cnode_code report it */
  const cn_server_ops *ops; /* the server's callbacks */
  /* The child spec's defaults, each of which the --config file may
   * override: */
  const char *args;     /* init's argument in Erlang syntax; NULL: none
                         * (init gets NULL) */
  const char *restart;  /* "permanent" (NULL), "transient" or
                         * "temporary" */
  unsigned shutdown_ms; /* 0: 5000 */
} cn_module;

/* Defines the described symbol: CN_MODULE_EXPORT = {...}; */
#define CN_MODULE_EXPORT CN_EXTERN const cn_module cnode_module

#ifdef __cplusplus
}
#endif
#endif /* CNODE_MODULE_H */
