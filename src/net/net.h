/* SPDX-License-Identifier: MIT */
/* The network layer of parleyd: per-loop listeners, TLS on memory BIOs,
 * HTTP/1.1 (http-parser) and WebSocket (wslay). It hands each complete
 * binary WebSocket message up to core by callback and knows nothing of
 * protobuf or accounts; core answers plain HTTP requests (/healthz,
 * /metrics) through on_http. Everything here runs on one loop's thread. */
#ifndef PARLEY_NET_NET_H
#define PARLEY_NET_NET_H

#include "common/compiler.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct net_loop; /* the listener and connections of one event loop */
struct net_conn; /* one client connection */

/* Where other loops hand connections to a loop (net_conn_move). Its owner
 * keeps it alive as long as any loop may move a connection to it (parleyd:
 * the process's life); the loop it feeds opens it (net_loop_open_inbox)
 * and closes it when it stops. */
struct net_inbox {
    uv_mutex_t lock;
    struct net_loop *nl;   /* NULL: taking nothing (not opened yet, or stopping) */
    struct net_conn *head; /* posted, not yet taken up by nl */
};

/* A zero field takes its default. */
struct net_limits {
    size_t max_frame;         /* largest WebSocket message accepted, bytes (default 1 MiB);
                                 a larger one closes with 1009 */
    size_t max_send_queue;    /* queued outgoing bytes beyond which a connection is cut off
                                 (default 4 MiB) */
    size_t max_http_header;   /* request line + headers, bytes (default 8 KiB); beyond: 431 */
    unsigned handshake_ms;    /* TLS + HTTP upgrade must finish within this (default 10 s);
                                 also the idle limit between plain HTTP requests */
    unsigned idle_ping_ms;    /* a WebSocket ping after this much silence; 0: off. With no
                                 bytes for twice this, the connection is dropped */
};

struct net_http_response {
    int status;               /* e.g. 200, 404; left 0: net answers 404 */
    const char *content_type; /* static string; NULL: text/plain */
    char *body;               /* xmalloc'ed; net frees it */
    size_t body_len;
};

struct net_callbacks {
    /* The WebSocket upgrade on GET /v1/ws succeeded. */
    void (*on_open)(struct net_conn *c);
    /* One complete binary message (at most max_frame bytes); data is valid
     * only during the call. The connection may be closed from inside. */
    void (*on_message)(struct net_conn *c, const uint8_t *data, size_t len);
    /* The connection is gone (after on_open only, exactly once); c is freed
     * after return and net_conn_send on it returns PARLEY_ECLOSED. */
    void (*on_close)(struct net_conn *c);
    /* Any GET or HEAD request other than the upgrade. path excludes the
     * query. For HEAD, net sends the headers (with Content-Length) but not
     * the body. Other methods get 405 from net without a call. res starts
     * zeroed. */
    void (*on_http)(struct net_loop *nl, const char *method, const char *path,
                    struct net_http_response *res);
    /* c was taken up by this loop after net_conn_move (or taken back by
     * its old loop when the new one would not take it); called on the
     * loop c now belongs to, before c reads again. c may be at a new
     * address (its memory is remade by this loop's thread): the pointer
     * the mover held is invalid, and c is the connection from now on.
     * May be NULL. */
    void (*on_moved)(struct net_conn *c);
};

/* Starts accepting on fd, an already bound and listening TCP socket that
 * this net_loop takes ownership of (closed on failure too); fd -1: a loop
 * that accepts nothing and serves only connections moved to it through
 * its inbox (net_loop_open_inbox). tls may be NULL
 * (plaintext); otherwise the net_loop takes a reference (SSL_CTX_up_ref).
 * limits and cbs are copied; data is returned by net_loop_data. Returns 0
 * and sets *out, or PARLEY_EINVAL, PARLEY_EIO (libuv refused fd).
 * Thread: loop's. */
PL_NODISCARD int net_loop_start(uv_loop_t *loop, int fd, SSL_CTX *tls,
                                const struct net_limits *limits,
                                const struct net_callbacks *cbs, void *data,
                                struct net_loop **out);

/* New connections use tls from now on (takes a reference, drops the old;
 * NULL: plaintext). Existing connections keep theirs. limits too (NULL:
 * unchanged): max_send_queue and the timeouts apply to every connection at
 * once, max_http_header from the next accept, max_frame from the next
 * upgrade. */
void net_loop_reload(struct net_loop *nl, SSL_CTX *tls, const struct net_limits *limits);

/* Stops accepting, closes every connection (WebSocket close 1001; HTTP
 * connections after their pending response) and frees everything once
 * closed; then calls done(data) (may be NULL) on the loop. nl is invalid
 * from then on. A connection that cannot flush is dropped after 3 s. */
void net_loop_stop(struct net_loop *nl, void (*done)(void *data), void *data);

void *net_loop_data(struct net_loop *nl);

void net_inbox_init(struct net_inbox *in);
void net_inbox_deinit(struct net_inbox *in);
/* From now until it stops, nl takes up the connections other loops move to
 * in. Returns 0 or PARLEY_EIO. Thread: nl's. */
PL_NODISCARD int net_loop_open_inbox(struct net_loop *nl, struct net_inbox *in);

/* Moves c, a WebSocket connection, to the loop fed by `to` (normally on
 * another thread): c stops reading at once; at the end of this loop turn,
 * once no write is in flight, its socket, TLS and WebSocket state and
 * unsent output leave this loop, and the other loop takes c up, calls
 * on_moved and reads again. If that loop takes nothing (stopping), this
 * one takes c back the same way. Nothing is lost or reordered. Messages
 * already read when the move begins are still handed to on_message here,
 * within the current callback; after that nothing happens to c on this
 * loop, and the caller must not touch c or its data until on_moved,
 * which is given c's new address.
 * Returns 0, or PARLEY_EBUSY
 * (c is closing, not yet a WebSocket, or already moving: it stays).
 * Thread: c's loop. */
PL_NODISCARD int net_conn_move(struct net_conn *c, struct net_inbox *to);

/* Queues one binary WebSocket message (copied). Writes are batched and
 * flushed once per loop turn. If the connection's queue would exceed
 * max_send_queue, the connection is closed (code 1008, counted as a
 * send-queue drop) and PARLEY_ECLOSED is returned; also PARLEY_ECLOSED when
 * it is already closing. */
PL_NODISCARD int net_conn_send(struct net_conn *c, const uint8_t *data, size_t len);

/* Sends a WebSocket close with code and reason (truncated to 123 bytes),
 * then closes the socket once it is written; queued messages not yet sent
 * are dropped. Idempotent: the first code wins. Safe inside callbacks; c
 * stays valid until on_close returns. */
void net_conn_close(struct net_conn *c, uint16_t code, const char *reason);

void net_conn_set_data(struct net_conn *c, void *data);
void *net_conn_data(const struct net_conn *c);
struct net_loop *net_conn_loop(const struct net_conn *c);
/* The peer's address as text ("127.0.0.1"), valid as long as c. */
const char *net_conn_peer(const struct net_conn *c);

struct net_stats {
    uint64_t accepted;          /* TCP connections accepted */
    uint64_t open_ws;           /* WebSocket connections open now */
    uint64_t open_conns;        /* TCP connections open now */
    uint64_t http_requests;     /* plain HTTP requests answered */
    uint64_t send_queue_drops;  /* connections cut off for a full send queue */
    uint64_t oversize_frames;   /* connections closed with 1009 */
    uint64_t handshake_failures;/* TLS or HTTP upgrade failures and timeouts */
    uint64_t tls_handshakes;    /* TLS handshakes completed */
    uint64_t tls_compact;       /* of those, moved to the TLS 1.3 record layer (tls13.c) */
    uint64_t moved_in;          /* connections taken up from another loop (net_conn_move) */
};
/* This loop's counters (the caller sums over loops). Any thread: the
 * counters are atomics, read relaxed. */
void net_loop_stats(const struct net_loop *nl, struct net_stats *out);

#endif
