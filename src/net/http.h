/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 request reader for the net module: feeds bytes to http-parser and
 * keeps only what parleyd needs (method, path, the WebSocket upgrade
 * headers, keep-alive). Pure: no sockets, usable from the fuzz target.
 * Responding is left to server.c. */
#ifndef PARLEY_NET_HTTP_H
#define PARLEY_NET_HTTP_H

#include "common/compiler.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_REQ_PATH_MAX 2048      /* longer request targets get 414 */
#define NET_REQ_VALUE_MAX 255      /* longest tracked header value kept, bytes */
#define NET_REQ_BODY_DISCARD_MAX 65536 /* bodies up to this are read and dropped; larger: 413 */

/* What net__req_feed found. */
enum net_req_result {
    NET_REQ_MORE = 0, /* everything consumed, the request is not complete yet */
    NET_REQ_DONE = 1, /* one complete request; call net__req_reset before feeding more */
    NET_REQ_ERROR = 2 /* malformed or over a limit: answer req->error_status and close */
};

/* What a complete request asks for (net__req_upgrade). */
enum net_req_kind {
    NET_REQ_PLAIN = 0,   /* any request other than the upgrade path: core's on_http */
    NET_REQ_UPGRADE = 1, /* a valid WebSocket upgrade on the upgrade path */
    NET_REQ_REJECT = 2   /* the upgrade path, but not a valid upgrade: answer status */
};

#define NET_REQ_WS_PATH "/v1/ws"

/* One request being read; embedded in a connection during its HTTP phase.
 * Only the fields below "results" are meant for callers. */
struct net_req {
    http_parser parser;
    size_t max_header;  /* request line + headers limit, bytes */
    size_t head_bytes;  /* bytes of the current head fed so far */
    size_t body_bytes;  /* body bytes discarded so far */
    size_t url_len;     /* bytes of the request target in path so far */
    char field[32];     /* current header name (lowercased), truncated */
    size_t field_len;
    bool field_long;    /* the current name did not fit: not one we track */
    int cur;            /* which tracked header the current value belongs to */
    bool in_value;
    size_t val_len;
    char val[NET_REQ_VALUE_MAX + 1]; /* current tracked header's value */
    bool val_long;      /* the current value did not fit */
    bool headers_done;
    bool complete;

    /* results, valid after NET_REQ_DONE (error_status also after NET_REQ_ERROR) */
    int error_status;   /* 400, 413, 414, 431 */
    char method[16];    /* "GET" */
    char path[NET_REQ_PATH_MAX + 1]; /* the request target while reading; then its path,
                                        without query or fragment */
    bool keep_alive;
    bool upgrade_websocket;  /* Upgrade: has token "websocket" */
    bool connection_upgrade; /* Connection: has token "upgrade" */
    int key_count;           /* Sec-WebSocket-Key headers seen */
    bool key_valid;          /* the (single) key is base64 of 16 bytes */
    char key[32];             /* the key, NUL-terminated, when key_valid */
    bool version_13;         /* Sec-WebSocket-Version: 13 */
    bool version_seen;
};

/* Prepares r for the first request of a connection; max_header bounds the
 * request line plus headers (431 beyond). */
void net__req_init(struct net_req *r, size_t max_header);
/* Prepares r for the next pipelined request on the same connection. */
void net__req_reset(struct net_req *r);

/* Feeds len bytes; sets *used to how many were consumed (all of them for
 * NET_REQ_MORE; up to the end of the request for NET_REQ_DONE). The caller
 * feeds the rest after net__req_reset. After NET_REQ_ERROR, r is dead. */
enum net_req_result net__req_feed(struct net_req *r, const char *data, size_t len, size_t *used);

/* Classifies a complete request. For NET_REQ_REJECT, *status is 400 (bad
 * upgrade headers or key) or 426 (missing or unsupported version; answer
 * with "Sec-WebSocket-Version: 13"). */
enum net_req_kind net__req_upgrade(const struct net_req *r, int *status);

/* Whether the request's parser saw the upgrade and stopped: the bytes after
 * it belong to the WebSocket stream. */
bool net__req_is_upgrade(const struct net_req *r);

#endif
