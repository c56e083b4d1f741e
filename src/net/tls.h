/* SPDX-License-Identifier: MIT */
/* Server-side TLS: ciphertext from the socket goes in, plaintext comes out
 * through a callback, and whatever TLS wants sent is appended to an output
 * buffer the caller writes. Knows no sockets.
 *
 * OpenSSL runs the handshake on memory BIOs. Once a TLS 1.3 handshake with
 * one of its three AEAD suites is done, the connection moves to tls13.c's
 * record layer on the traffic secrets OpenSSL reports (its key log
 * callback) and the SSL object is freed: that keeps about 300 bytes per
 * connection instead of about 15 KiB. TLS 1.2 connections stay on OpenSSL
 * for their whole life. */
#ifndef PARLEY_NET_TLS_H
#define PARLEY_NET_TLS_H

#include "common/compiler.h"
#include "net/buf.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What net__tls_read needs of its scratch buffer: one record's body. */
#define NET_TLS_SCRATCH (16384 + 256)

enum net_tls_result {
    NET_TLS_OK = 0,     /* go on */
    NET_TLS_CLOSED = 1, /* the peer sent close_notify */
    NET_TLS_ERROR = 2   /* handshake or record failure: drop the connection */
};

/* Returns true to keep reading, false to stop (the connection is closing). */
typedef bool net_tls_plain_cb(void *arg, const uint8_t *data, size_t len);

struct net_tls;

/* Prepares a server SSL_CTX for the move to tls13.c (installs the key log
 * callback that hands each connection its traffic secrets). Call before
 * the context is shared between threads. Without it every connection
 * stays on OpenSSL, which works too. */
void net_tls_ctx_prepare(SSL_CTX *ctx);

/* A new server connection: TLS 1.2 minimum, no renegotiation, buffers
 * released while idle. NULL on failure. */
struct net_tls *net__tls_new(SSL_CTX *ctx);
void net__tls_free(struct net_tls *t);

/* Feeds ciphertext, advancing the handshake and passing decrypted bytes to
 * cb (from scratch, NET_TLS_SCRATCH bytes, the caller's); appends
 * handshake, KeyUpdate and alert records to out. */
enum net_tls_result net__tls_read(struct net_tls *t, const uint8_t *data, size_t len,
                                  uint8_t *scratch, net_tls_plain_cb *cb, void *arg,
                                  struct net_buf *out);

/* Encrypts len bytes of plaintext into out. Only after the handshake.
 * Returns 0 or PARLEY_ETLS. */
PL_NODISCARD int net__tls_write(struct net_tls *t, const uint8_t *data, size_t len,
                                struct net_buf *out);

/* Appends a close_notify alert to out. */
void net__tls_shutdown(struct net_tls *t, struct net_buf *out);

bool net__tls_is_established(const struct net_tls *t);

/* Whether the connection runs on tls13.c's record layer (no SSL object). */
bool net__tls_is_compact(const struct net_tls *t);

/* For a quiet connection still on OpenSSL: swaps both memory BIOs for new,
 * empty ones if they hold nothing, as a memory BIO keeps the largest
 * buffer it ever grew (a handshake flight) for good. OpenSSL's own record
 * buffers are released by SSL_MODE_RELEASE_BUFFERS. */
void net__tls_shrink(struct net_tls *t);
/* A copy of t made by the calling thread's allocator, t wiped and freed,
 * if t is compact; otherwise t itself (OpenSSL's objects point at it). For
 * a connection that moved to another thread: see net_conn_move. */
struct net_tls *net__tls_relocate(struct net_tls *t);

#endif
