/* TLS for distribution connections (inet_tls_dist), on OpenSSL memory
 * BIOs: the connection reads and writes the TCP stream itself, on the
 * dist loop, and hands bytes through here.  Nothing here blocks or
 * touches a socket.  Not installed.
 *
 * The connection's side of it (conn.c):
 *   - bytes read go through cn__tls_unwrap, which turns them into
 *     plaintext in place (the connection's input buffer);
 *   - before each write, cn__tls_wrap turns the output buffer's plaintext
 *     into records, with whatever TLS itself has to say (handshake
 *     messages, alerts) in front;
 *   - the distribution handshake starts once cn__tls_unwrap says the TLS
 *     handshake is done.
 */
#ifndef CN_DIST_TLS_H
#define CN_DIST_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "cnode/dist.h"

typedef struct cn__tls_ctx cn__tls_ctx; /* per node: keys and CAs loaded */
typedef struct cn__tls cn__tls;         /* per connection */

/* Loads the certificates, keys and CAs of o.  Returns 0 with *out set,
 * CN_EINVAL with why (up to cap bytes, never a secret) saying what is
 * wrong, or CN_ENOMEM.  Any thread. */
int cn__tls_ctx_new(const cn_dist_tls *o, cn__tls_ctx **out, char *why,
                    size_t cap);
void cn__tls_ctx_free(cn__tls_ctx *x);

/* A connection's TLS state: the client side (we dial; host is the host
 * part of the node name dialled, sent as SNI and checked against the
 * server's certificate with verify_peer), or the server side (host NULL).
 * Returns NULL without memory.  Dist loop. */
cn__tls *cn__tls_new(cn__tls_ctx *x, bool client, const char *host);
void cn__tls_free(cn__tls *t);

/* Client: queues the ClientHello (cn__tls_wrap sends it).  Returns 0 or
 * CN_EPROTO. */
int cn__tls_start(cn__tls *t);

/* n bytes of the TLS stream were just read into in->data + in->len (not
 * yet counted in in->len): replaces them with the plaintext they carry,
 * appended to in.  Returns 0 (nothing more to say), 1 (the TLS handshake
 * completed in this call), or a negative CN_E* with cn__tls_why saying
 * why (a refused certificate, an alert from the peer, bytes that are not
 * TLS: a plain TCP peer).  After an error, what is pending (an alert)
 * may still be sent before closing. */
int cn__tls_unwrap(cn__tls *t, cn_buf *in, size_t n);

/* Encrypts out's bytes (only once the TLS handshake is done; before it
 * out must hold nothing) and replaces them with every record waiting to
 * be sent.  Returns 0, CN_ENOMEM or CN_EPROTO. */
int cn__tls_wrap(cn__tls *t, cn_buf *out);

/* True when TLS has records waiting for cn__tls_wrap. */
bool cn__tls_pending(const cn__tls *t);

/* True once the TLS handshake is done. */
bool cn__tls_up(const cn__tls *t);

/* Why the last call failed: static or per-connection text. */
const char *cn__tls_why(const cn__tls *t);

/* "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384, peer CN=..." once up. */
void cn__tls_describe(const cn__tls *t, char *buf, size_t cap);

#endif /* CN_DIST_TLS_H */
