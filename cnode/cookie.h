/* cnode: the node program's cookie, found the way erl finds it.
 *
 * erl reads $HOME/.erlang.cookie, then $XDG_CONFIG_HOME/erlang/.erlang.cookie
 * (kernel's auth.erl), and creates the first of them when neither exists.
 * A node that is to talk to erl nodes started by the same user must end up
 * with the same cookie, so this follows auth.erl rule by rule, including
 * its refusal of a file that group or others can read.
 */
#ifndef CNODE_PROGRAM_COOKIE_H
#define CNODE_PROGRAM_COOKIE_H

#include <stdbool.h>
#include <stddef.h>

#define COOKIE_MAX 255    /* cn_dist_options.cookie; also erl's atom limit */
#define COOKIE_NEW_LEN 20 /* letters in a new cookie, as auth.erl makes */

/* Finds the cookie as erl would without -setcookie, creating
 * $HOME/.erlang.cookie (20 random letters A-Z, mode 0400) when no cookie
 * file exists.  On success returns 0 with the NUL-terminated cookie in
 * cookie (which holds COOKIE_MAX + 1 bytes), the file it came from in path
 * (pathcap bytes), and *created set when this call created that file.  On
 * failure returns -1 with a one-line message, naming the file and the
 * reason, in err (errcap bytes).  Not thread-safe: it reads the
 * environment. */
int cookie_load(char *cookie, char *err, size_t errcap, bool *created,
                char *path, size_t pathcap);

#endif /* CNODE_PROGRAM_COOKIE_H */
