/* SPDX-License-Identifier: MIT */
/* One server-side WebSocket stream (RFC 6455) on wslay: frames in from bytes
 * the caller feeds, frames out through a callback. Binary messages go up;
 * text messages close with 1003, oversize ones (wslay's limit) with 1009;
 * ping, pong and the close reply are wslay's. No sockets: the fuzz target
 * drives it directly. */
#ifndef PARLEY_NET_WS_H
#define PARLEY_NET_WS_H

#include "common/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#define NET_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

struct net_ws_handler {
    /* One complete binary message; data is valid only during the call. */
    void (*on_message)(void *arg, const uint8_t *data, size_t len);
    /* Framed bytes to send, in order; data is valid only during the call. */
    void (*on_output)(void *arg, const uint8_t *data, size_t len);
};

/* Where the incoming byte stream stands between frames, tracked beside
 * wslay so that its state can be dropped while the stream is quiet. */
struct net_ws_track {
    uint8_t hdr[14];  /* the frame header so far */
    uint8_t have;     /* bytes in hdr */
    uint8_t need;     /* the header's full size once 2 bytes are in; else 0 */
    bool frag;        /* inside a fragmented data message */
    uint64_t left;    /* payload bytes of the current frame still to come */
};

struct net_ws {
    wslay_event_context_ptr ctx; /* NULL while hibernating (net__ws_hibernate) */
    size_t max_frame;
    struct net_ws_track trk;
    const struct net_ws_handler *h; /* borrowed, outlives ws */
    void *arg;
    const uint8_t *in; /* the bytes being fed, consumed by the recv callback */
    size_t in_len;
    uint16_t close_code; /* the code this side closed with; 0: none yet */
};

/* Sets up ws with messages up to max_frame bytes. Aborts on OOM (xmalloc). */
void net__ws_init(struct net_ws *ws, size_t max_frame, const struct net_ws_handler *h, void *arg);
void net__ws_deinit(struct net_ws *ws);

/* Reads frames from data[0..len), calling on_message per binary message and
 * on_output for control replies. Bytes after a close are dropped. */
void net__ws_feed(struct net_ws *ws, const uint8_t *data, size_t len);

/* Frames queued messages out through on_output. */
void net__ws_flush(struct net_ws *ws);

/* Queues one binary message (copied). Returns 0, or PARLEY_ECLOSED once a
 * close has been queued or the stream failed. */
PL_NODISCARD int net__ws_send(struct net_ws *ws, const uint8_t *data, size_t len);
/* Queues an empty ping. */
void net__ws_ping(struct net_ws *ws);
/* Queues a close (reason truncated to 123 bytes) and stops reading.
 * Idempotent: the first code wins. */
void net__ws_close(struct net_ws *ws, uint16_t code, const char *reason);

/* Frees wslay's state (over 8 KiB) if the stream is between messages with
 * nothing queued and not closing; it is made again when bytes arrive or
 * something is sent. Returns whether it hibernated (or already was). For
 * connections that have been quiet a while: waking costs an allocation. */
bool net__ws_hibernate(struct net_ws *ws);

/* Bytes of queued, not yet framed messages. */
size_t net__ws_queued(const struct net_ws *ws);
/* Whether the stream has ended: a close was queued or received, or wslay
 * failed. Nothing more will be delivered. */
bool net__ws_is_closing(const struct net_ws *ws);
/* Whether everything including the close frame has gone out. */
bool net__ws_is_done(const struct net_ws *ws);
/* The status code this side closed with (set by net__ws_close or by wslay
 * for protocol errors, e.g. 1009 for an oversize message); 0 if none. */
uint16_t net__ws_close_code(const struct net_ws *ws);

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + RFC 6455 GUID)) into
 * out (NET_WS_ACCEPT_LEN + 1 bytes, NUL-terminated). */
void net__ws_accept_key(const char *key, char out[NET_WS_ACCEPT_LEN + 1]);

#endif
