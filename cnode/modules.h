/* cnode: server modules loaded into the node program (modules.c), the
 * --config file that names them, and the cnode_code process that loads
 * new versions of them while they run. */
#ifndef CNODE_PROGRAM_MODULES_H
#define CNODE_PROGRAM_MODULES_H

#include <cnode.h>
#include <cnode/module.h>

#define CODE_NAME "cnode_code" /* the code server's registered name */

/* --load PATH: a module to start with its own defaults.  Returns 0 or
 * CN_ENOMEM. */
int modules_add_path(const char *path);

/* Reads the --config file: one term in Erlang syntax, a proplist
 *   [{node, [{sname, "img"}, {log_level, info}, ...]},
 *    {modules, [Path | {Path, [{name, N}, {args, T}, {restart, R},
 *                               {shutdown, Ms}]}]}].
 * The node settings become command-line flags (sname -> --sname, and so
 * on; true for the flags that take no value), appended to *args (malloc'ed
 * strings, *nargs of them) so that the command line, read after them,
 * wins.  The modules are queued as --load would queue them.  Returns 0, or
 * -1 after printing why on stderr. */
int config_read(const char *path, char ***args, int *nargs);

/* Loads each queued module, registers its callbacks, and starts it under
 * the supervisor registered as sup; then starts cnode_code.  Returns 0,
 * or an error after logging why. */
int modules_start(cn_runtime *rt, const char *sup);

#endif
