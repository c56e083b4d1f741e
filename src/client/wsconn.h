/* SPDX-License-Identifier: MIT */
/* One client WebSocket connection, blocking with timeouts: TCP, TLS with
 * system-CA or pinned trust, the HTTP/1.1 upgrade at GET /v1/ws, and whole
 * binary messages in both directions (wslay). It carries arbitrary bytes
 * and knows nothing of protobuf, so integration tests use it directly to
 * send malformed or oversize frames. Not thread-safe; SIGPIPE is never
 * raised by its writes. */
#ifndef PARLEY_CLIENT_WSCONN_H
#define PARLEY_CLIENT_WSCONN_H

#include "common/compiler.h"

#include <parley.h>
#include <stddef.h>
#include <stdint.h>

#define WSCONN_TIMEOUT_DEFAULT_MS 10000
#define WSCONN_RECV_QUEUE_MAX 4096 /* received messages held before the caller reads them */

struct wsconn;

/* Decides whether to trust a server certificate that the system CAs do not
 * vouch for: sha256 is the digest of its DER encoding, hostport the
 * server's "host:port". Returns 0 to accept, or a negative PARLEY_E* that
 * wsconn_open then returns. */
typedef int wsconn_pin_cb(void *arg, const char *hostport, const uint8_t sha256[32]);

struct wsconn_options {
    int timeout_ms;            /* for the whole of wsconn_open; 0: WSCONN_TIMEOUT_DEFAULT_MS */
    size_t max_message;        /* largest message received, bytes; 0: FRAME_MAX_DEFAULT */
    const char *known_servers; /* pin file for trust on first use (known.h); or NULL */
    wsconn_pin_cb *pin_cb;     /* consulted when known_servers is NULL; NULL: refuse */
    void *pin_arg;
    parley_log_cb *log;        /* may be NULL */
    void *log_arg;
};

/* Connects to url (url.h syntax) and completes the WebSocket handshake.
 * For https://, a certificate that fails system-CA and hostname
 * verification is checked against known_servers (its pin saved on first
 * contact) or pin_cb. opt is copied (strings are borrowed until
 * wsconn_free). Returns 0 and sets *out, or: PARLEY_EINVAL (bad URL),
 * PARLEY_ECONNECT (resolve/connect), PARLEY_ETLS (handshake, or an
 * untrusted certificate with no pin source), PARLEY_ECERT_CHANGED (pin
 * mismatch), PARLEY_EBUSY/PARLEY_ERATE_LIMITED (HTTP 503/429),
 * PARLEY_EPROTO (any other bad upgrade response), PARLEY_ETIMEOUT,
 * PARLEY_ECLOSED, PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int wsconn_open(const char *url, const struct wsconn_options *opt,
                             struct wsconn **out);

/* Sends data[0..len) (any bytes, len may be 0) as one binary message and
 * waits up to timeout_ms (-1: forever) until it is written to the socket.
 * Returns 0, or PARLEY_ETIMEOUT, PARLEY_ECLOSED, PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int wsconn_send(struct wsconn *c, const uint8_t *data, size_t len, int timeout_ms);

/* Waits up to timeout_ms (-1: forever, 0: only what has arrived) for the
 * next whole data message (binary or text; pings are answered inside).
 * Returns 0 and sets *data (malloc'ed, owned by the caller; never NULL) and
 * *len, or PARLEY_ETIMEOUT, PARLEY_ECLOSED (closed by the server: see
 * wsconn_close_code, or EOF), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int wsconn_recv(struct wsconn *c, int timeout_ms, uint8_t **data, size_t *len);

/* The status code of the server's close frame (1005 if it had none), or 0
 * if none was received yet. */
int wsconn_close_code(const struct wsconn *c);

/* Sends a close frame (1000) if still open, without waiting long, closes
 * the socket and frees. NULL: no-op. */
void wsconn_free(struct wsconn *c);

#endif
