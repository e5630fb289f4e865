/* cnode call | cast | ping: the node program's client commands (cli.c). */
#ifndef CNODE_PROGRAM_CLI_H
#define CNODE_PROGRAM_CLI_H

#include <stdbool.h>

#include <cnode.h>

/* True when word (argv[1]) names a client command. */
bool cnode_cli_command(const char *word);

/* Runs the client command argv[0] ("call", "cast" or "ping") with its
 * options and arguments, and returns the exit status (see cli.c). */
int cnode_cli(int argc, char **argv);

/* Reads an ssl_dist_optfile (erl -ssl_dist_optfile) into *tls, its
 * strings into store.  Returns 0, or -1 after printing on stderr why the
 * file cannot be used. */
int cnode_read_tls_optfile(const char *path, cn_dist_tls *tls, cn_buf *store);

#endif
