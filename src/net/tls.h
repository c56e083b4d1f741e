/* SPDX-License-Identifier: MIT */
/* Server-side TLS on memory BIOs: ciphertext from the socket goes in,
 * plaintext comes out through a callback, and whatever OpenSSL wants sent
 * is appended to an output buffer the caller writes. Knows no sockets. */
#ifndef PARLEY_NET_TLS_H
#define PARLEY_NET_TLS_H

#include "common/compiler.h"
#include "net/buf.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum net_tls_result {
    NET_TLS_OK = 0,     /* go on */
    NET_TLS_CLOSED = 1, /* the peer sent close_notify */
    NET_TLS_ERROR = 2   /* handshake or record failure: drop the connection */
};

/* Returns true to keep reading, false to stop (the connection is closing). */
typedef bool net_tls_plain_cb(void *arg, const uint8_t *data, size_t len);

/* A new server SSL on a pair of memory BIOs: TLS 1.2 minimum, no
 * renegotiation, buffers released while idle. NULL on failure. */
SSL *net__tls_new(SSL_CTX *ctx);

/* Feeds ciphertext, advancing the handshake and passing decrypted bytes to
 * cb in chunks of at most scratch_len (scratch is the caller's); appends
 * handshake and alert records to out. */
enum net_tls_result net__tls_read(SSL *ssl, const uint8_t *data, size_t len, uint8_t *scratch,
                                  size_t scratch_len, net_tls_plain_cb *cb, void *arg,
                                  struct net_buf *out);

/* Encrypts len bytes of plaintext into out. Only after the handshake.
 * Returns 0 or PARLEY_ETLS. */
PL_NODISCARD int net__tls_write(SSL *ssl, const uint8_t *data, size_t len, struct net_buf *out);

/* Appends a close_notify alert to out. */
void net__tls_shutdown(SSL *ssl, struct net_buf *out);

bool net__tls_is_established(const SSL *ssl);

/* For a quiet connection: swaps both memory BIOs for new, empty ones if
 * they hold nothing, as a memory BIO keeps the largest buffer it ever
 * grew (a handshake flight) for good. OpenSSL's own record buffers are
 * released by SSL_MODE_RELEASE_BUFFERS. */
void net__tls_shrink(SSL *ssl);

#endif
