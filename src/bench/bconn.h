/* SPDX-License-Identifier: MIT */
/* The bench's client connection: a non-blocking libuv TCP stream, optional
 * TLS on OpenSSL memory BIOs, the HTTP/1.1 upgrade to /v1/ws and client-side
 * WebSocket framing by wslay (masked frames), carrying one protobuf Frame
 * per message. Many per loop; it knows nothing of accounts or scenarios. */
#ifndef PARLEY_BENCH_BCONN_H
#define PARLEY_BENCH_BCONN_H

#include "common/compiler.h"
#include "proto/frame.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <wslay/wslay.h>

#define BCONN_OUT_MAX (4u << 20) /* unsent bytes beyond which we give up on the server */

/* Where every connection of a run goes; shared, read-only once set up. */
struct bconn_target {
    struct sockaddr_storage addr;
    char host[80];    /* the Host header: "127.0.0.1:PORT" or "[::1]:PORT" */
    SSL_CTX *ssl_ctx; /* NULL for plaintext */
    size_t max_frame; /* largest message accepted from the server */
};

struct bconn;

/* Bytes waiting to be written: data[0..len) of cap allocated. */
struct bconn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* Called once the WebSocket is open. */
typedef void bconn_open_cb(struct bconn *c);
/* Called for each Frame from the server; f is borrowed for the call. */
typedef void bconn_frame_cb(struct bconn *c, const PlFrame *f);
/* Called exactly once when the connection is gone and its handles are
 * closed; the owner may free the memory holding c from here on. */
typedef void bconn_close_cb(struct bconn *c);

struct bconn_ops {
    bconn_open_cb *on_open;
    bconn_frame_cb *on_frame;
    bconn_close_cb *on_close;
};

enum bconn_state {
    BCONN_IDLE = 0,
    BCONN_CONNECTING,
    BCONN_TLS,     /* TLS handshake */
    BCONN_UPGRADE, /* HTTP upgrade sent, waiting for 101 */
    BCONN_OPEN,    /* WebSocket up */
    BCONN_CLOSING, /* uv_close issued */
};

struct bconn {
    uv_tcp_t tcp;
    uv_prepare_t flusher; /* active while app or out holds bytes: writes once per loop turn */
    uv_connect_t connect_req;
    uv_write_t write_req; /* the one write in flight, of wr */
    const struct bconn_target *target;
    const struct bconn_ops *ops;
    enum bconn_state state;
    SSL *ssl;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
    wslay_event_context_ptr ws;
    http_parser hp;
    const uint8_t *rd; /* bytes wslay has still to read during ws_input */
    size_t rd_len;
    char hdr_name[16]; /* the upgrade response header being read, lower case */
    size_t hdr_name_len;
    bool writing;         /* write_req is in flight */
    uint8_t open_handles; /* tcp and flusher until their close callbacks ran */
    struct bconn_buf app; /* TLS only: plaintext for the next SSL_write */
    struct bconn_buf out; /* bytes for the socket, not yet handed to libuv */
    struct bconn_buf wr;  /* bytes handed to libuv in write_req */
    /* Why the connection ended: 0 while open; a negative PARLEY_E*. */
    int err;
    int http_status;         /* status of the upgrade response, 0 before */
    uint32_t retry_after_ms; /* Retry-After of a 429/503 upgrade answer */
    uint16_t close_code;     /* WebSocket close code from the server, 0 if none */
};

/* Starts connecting c (memory owned by the caller, not moved until
 * on_close) to target on loop; ops and target are borrowed and must outlive
 * the connection. Returns 0, after which on_close runs exactly once (also
 * when connecting fails); or a negative PARLEY_E* and no callback runs. */
PL_NODISCARD int bconn_start(struct bconn *c, uv_loop_t *loop, const struct bconn_target *target,
                             const struct bconn_ops *ops);

/* Queues f as one binary message; f is borrowed (encoded and copied). What
 * is queued for c goes out in one write per loop turn, before the loop next
 * polls. Returns 0, or PARLEY_ECLOSED when the WebSocket is not open or c
 * has more than BCONN_OUT_MAX bytes unsent (c is then closed). */
PL_NODISCARD int bconn_send(struct bconn *c, const PlFrame *f);

/* Closes c with reason err (0 for a normal end); safe to call from any
 * callback of c and more than once (the first reason sticks). on_close runs
 * later, from the loop. */
void bconn_close(struct bconn *c, int err);

/* Bytes queued for c and not yet written to the socket. */
size_t bconn_pending(const struct bconn *c);

/* Seeds the calling thread's generator of WebSocket masking keys (RFC 6455
 * wants them unpredictable to intermediaries, not secret). Call once per
 * thread before its first bconn_start. */
void bconn_seed(uint64_t seed);

/* Frees the scratch space the calling thread's connections share (the
 * decode arena and the encode buffer). Call once on each thread that ran
 * connections, after its last connection is closed. */
void bconn_cleanup(void);

#endif
