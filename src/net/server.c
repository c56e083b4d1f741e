/* SPDX-License-Identifier: MIT */
/* The listener and connection lifecycle of one loop: accept, read into one
 * shared per-loop buffer, TLS (tls.c), HTTP requests (http.c) until the
 * upgrade, then WebSocket (ws.c). Output is batched: connections with
 * something to send join a dirty list that a uv_prepare handle flushes once
 * per loop turn, before the loop blocks. One periodic timer sweeps all
 * connections for handshake deadlines, idle pings and stuck closes, so no
 * connection owns a timer. */
#include "net/net.h"
#include "net/buf.h"
#include "net/http.h"
#include "net/tls.h"
#include "net/ws.h"

#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/banned.h"

#define READ_BUF_SIZE 65536  /* the per-loop read buffer, bytes */
#define PLAIN_BUF_SIZE NET_TLS_SCRATCH /* the per-loop TLS plaintext scratch: one record */
#define CLOSE_GRACE_MS 3000  /* a closing connection that cannot flush is dropped after this */
#define SWEEP_MAX_MS 1000    /* the sweep's period, shortened for short limits */
#define SWEEP_MIN_MS 10
#define HIBERNATE_MS 1000    /* quiet this long, a connection frees its WebSocket state */
#define LISTEN_BACKLOG 4096  /* the kernel caps it at net.core.somaxconn */

#define DEFAULT_MAX_FRAME (1u << 20)
#define DEFAULT_MAX_SEND_QUEUE (4u << 20)
#define DEFAULT_MAX_HTTP_HEADER 8192
#define DEFAULT_HANDSHAKE_MS 10000

enum conn_state { CONN_HTTP, CONN_WS };

struct net_conn {
    uv_tcp_t tcp;
    struct net_loop *nl;
    struct net_conn *prev, *next;             /* nl->conns, for the sweep and stop */
    struct net_conn *dirty_prev, *dirty_next; /* nl->dirty, while is_dirty */
    struct net_tls *tls;                      /* NULL for plaintext */
    struct net_req *req;                      /* during CONN_HTTP only */
    struct net_ws ws;                         /* in CONN_WS only */
    struct net_buf plain;                     /* plaintext not yet encrypted (TLS only) */
    struct net_buf out;                       /* wire bytes not yet handed to libuv */
    uv_write_t *wreq;       /* the write in flight (192 bytes: not kept while idle) */
    uint8_t *wbuf;          /* storage of the write in flight, freed in on_write */
    size_t wlen;            /* bytes in flight */
    uint64_t deadline_ms;   /* CONN_HTTP: the next request must complete by then */
    uint64_t close_deadline_ms; /* closing: dropped without flushing after this */
    uint64_t last_rx_ms;    /* last bytes read */
    bool sporadic;          /* the last read came after a quiet spell: hibernate once flushed */
    enum conn_state state;
    bool is_dirty;
    bool writing;           /* wreq in flight */
    bool closing;           /* no more input; close once flushed */
    bool handle_closed;     /* uv_close called; freed in its callback */
    bool opened;            /* on_open was called, so on_close will be */
    bool ping_sent;         /* an idle ping is outstanding */
    bool tls_shutdown_sent;
    bool tls_counted;       /* its completed handshake is in the counters */
    bool served;            /* answered at least one request */
    bool moving;            /* net_conn_move: reading stopped, leaves at the next flush */
    int move_fd;            /* while moving, once the handle is closed: the socket */
    struct net_inbox *move_to;
    struct net_conn *inbox_next; /* in move_to's list */
    void *data;
    char peer[INET6_ADDRSTRLEN];
};

struct net_loop {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_prepare_t flusher; /* flushes nl->dirty once per loop turn */
    uv_timer_t sweeper;   /* deadlines and idle pings for all connections */
    uv_async_t inbox_async; /* connections moved here (net_conn_move) */
    struct net_inbox *inbox; /* NULL: none opened */
    bool listening;       /* listener is open */
    SSL_CTX *tls;         /* one reference held; NULL: plaintext */
    struct net_limits limits;
    struct net_callbacks cbs;
    void *data;
    struct net_conn *conns; /* every connection not yet freed */
    struct net_conn *dirty; /* connections with output to flush */
    uint8_t *rbuf;          /* READ_BUF_SIZE, lent to one read at a time */
    bool rbuf_busy;
    uint8_t *pbuf;          /* PLAIN_BUF_SIZE, TLS plaintext scratch */
    bool stopping;
    bool finishing;
    unsigned handles_open;  /* listener, flusher, sweeper, inbox until their close callbacks */
    void (*done)(void *data);
    void *done_data;
    _Atomic uint64_t accepted;
    _Atomic uint64_t open_ws;
    _Atomic uint64_t open_conns;
    _Atomic uint64_t http_requests;
    _Atomic uint64_t send_queue_drops;
    _Atomic uint64_t oversize_frames;
    _Atomic uint64_t handshake_failures;
    _Atomic uint64_t tls_handshakes;
    _Atomic uint64_t tls_compact;
    _Atomic uint64_t moved_in;
    unsigned hibernated;    /* connections hibernated since the last sweep */
};

static void stat_add(_Atomic uint64_t *s, int64_t d)
{
    atomic_fetch_add_explicit(s, (uint64_t)d, memory_order_relaxed);
}

static void flush_conn(struct net_conn *c);

/* --- dirty list ------------------------------------------------------- */

static void mark_dirty(struct net_conn *c)
{
    if (c->is_dirty || c->handle_closed)
        return;
    struct net_loop *nl = c->nl;
    /* Pending output keeps the loop alive until flushed: a connection
     * that is moving or closing reads nothing, so nothing else might. */
    if (!nl->dirty)
        uv_ref((uv_handle_t *)&nl->flusher);
    c->is_dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = nl->dirty;
    if (nl->dirty)
        nl->dirty->dirty_prev = c;
    nl->dirty = c;
}

static void dirty_unlink(struct net_conn *c)
{
    if (!c->is_dirty)
        return;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        c->nl->dirty = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->is_dirty = false;
}

static void on_flush(uv_prepare_t *h)
{
    struct net_loop *nl = PL_CONTAINER_OF(h, struct net_loop, flusher);
    struct net_conn *c;
    while ((c = nl->dirty) != NULL) {
        dirty_unlink(c);
        flush_conn(c);
    }
    if (!nl->stopping)
        uv_unref((uv_handle_t *)&nl->flusher);
}

/* --- lifecycle -------------------------------------------------------- */

static void maybe_finish(struct net_loop *nl);
static void inbox_shut(struct net_loop *nl);

static void on_conn_closed(uv_handle_t *h)
{
    struct net_conn *c = PL_CONTAINER_OF(h, struct net_conn, tcp);
    struct net_loop *nl = c->nl;
    if (c->prev)
        c->prev->next = c->next;
    else
        nl->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    stat_add(&nl->open_conns, -1);
    if (c->opened) {
        stat_add(&nl->open_ws, -1);
        if (nl->cbs.on_close)
            nl->cbs.on_close(c);
    }
    log_debug("net", "event=conn_closed peer=%s", c->peer);
    if (c->state == CONN_WS)
        net__ws_deinit(&c->ws);
    free(c->req);
    net__tls_free(c->tls);
    net__buf_free(&c->plain);
    net__buf_free(&c->out);
    free(c->wbuf);
    free(c);
    maybe_finish(nl);
}

/* Closes the socket now, dropping unsent output. */
static void conn_abort(struct net_conn *c)
{
    if (c->handle_closed)
        return;
    c->handle_closed = true;
    c->closing = true;
    dirty_unlink(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* Stops reading input and closes once the output is flushed. */
static void begin_close(struct net_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_deadline_ms = uv_now(c->nl->loop) + CLOSE_GRACE_MS;
    mark_dirty(c);
}

/* Starts closing if the WebSocket stream ended (ours, the peer's, or
 * wslay's own close for a protocol error) and counts why. */
static void ws_check_closing(struct net_conn *c)
{
    if (c->closing || !net__ws_is_closing(&c->ws))
        return;
    uint16_t code = net__ws_close_code(&c->ws);
    if (code == WSLAY_CODE_MESSAGE_TOO_BIG)
        stat_add(&c->nl->oversize_frames, 1);
    log_debug("net", "event=ws_closing peer=%s code=%u", c->peer, (unsigned)code);
    begin_close(c);
}

static size_t conn_pending(const struct net_conn *c)
{
    size_t n = c->plain.len + c->out.len + c->wlen;
    if (c->state == CONN_WS)
        n += net__ws_queued(&c->ws);
    return n;
}

static void handshake_failed(struct net_conn *c, const char *why)
{
    stat_add(&c->nl->handshake_failures, 1);
    log_debug("net", "event=handshake_failed peer=%s reason=%s", c->peer, why);
}

/* --- output ----------------------------------------------------------- */

static void out_append(struct net_conn *c, const void *data, size_t len)
{
    net__buf_append(c->tls ? &c->plain : &c->out, data, len);
}

static void on_write(uv_write_t *req, int status)
{
    struct net_conn *c = req->data;
    free(req);
    c->wreq = NULL;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = 0;
    c->writing = false;
    if (status < 0) {
        if (status != UV_ECANCELED)
            log_debug("net", "event=write_failed peer=%s err=%s", c->peer, uv_err_name(status));
        conn_abort(c);
        return;
    }
    mark_dirty(c);
}

/* Whether a closing connection has nothing more to say above TLS. */
static bool close_ready(struct net_conn *c)
{
    return c->plain.len == 0 && (c->state != CONN_WS || net__ws_is_done(&c->ws));
}

/* Lets a quiet WebSocket connection give back its wslay state (net__ws_hibernate). */
static void conn_hibernate(struct net_conn *c)
{
    bool awake = c->ws.ctx != NULL;
    if (awake && net__ws_hibernate(&c->ws)) {
        c->nl->hibernated++;
        if (c->tls)
            net__tls_shrink(c->tls);
    }
}

static void move_out(struct net_conn *c);

static void flush_conn(struct net_conn *c)
{
    if (c->handle_closed)
        return;
    if (c->state == CONN_WS) {
        net__ws_flush(&c->ws);
        ws_check_closing(c);
    }
    if (c->tls && c->plain.len > 0) {
        int rv = net__tls_write(c->tls, c->plain.data, c->plain.len, &c->out);
        net__buf_free(&c->plain);
        if (rv != 0) {
            conn_abort(c);
            return;
        }
    }
    if (c->writing)
        return; /* on_write marks the connection dirty again */
    if (c->moving) {
        move_out(c);
        return;
    }
    for (;;) {
        if (c->out.len == 0 && c->closing && close_ready(c)) {
            if (c->tls && !c->tls_shutdown_sent && net__tls_is_established(c->tls)) {
                c->tls_shutdown_sent = true;
                net__tls_shutdown(c->tls, &c->out);
            }
            if (c->out.len == 0) {
                conn_abort(c);
                return;
            }
        }
        if (c->out.len == 0) {
            if (c->sporadic && c->state == CONN_WS && !c->closing && c->plain.len == 0)
                conn_hibernate(c);
            return;
        }
        uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            log_debug("net", "event=write_failed peer=%s err=%s", c->peer, uv_err_name(n));
            conn_abort(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        if (done == c->out.len) {
            net__buf_free(&c->out);
            continue; /* a close may now be ready */
        }
        size_t len;
        c->wbuf = net__buf_take(&c->out, &len);
        c->wlen = len - done;
        b = uv_buf_init((char *)c->wbuf + done, (unsigned)c->wlen);
        c->wreq = xmalloc(sizeof(*c->wreq));
        c->wreq->data = c;
        int rv = uv_write(c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rv != 0) {
            free(c->wreq);
            c->wreq = NULL;
            conn_abort(c);
            return;
        }
        c->writing = true;
        return;
    }
}

/* --- HTTP ------------------------------------------------------------- */

static void out_printf(struct net_conn *c, const char *fmt, ...) PL_PRINTF(2, 3);
static void out_printf(struct net_conn *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        out_append(c, line, PL_MIN((size_t)n, sizeof(line) - 1));
}

static void respond(struct net_conn *c, int status, const char *content_type, const char *extra,
                    const char *body, size_t body_len, bool send_body, bool keep_alive)
{
    out_printf(c,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Connection: %s\r\n%s\r\n",
               status, http_status_str((enum http_status)status),
               content_type ? content_type : "text/plain; charset=utf-8", body_len,
               keep_alive ? "keep-alive" : "close", extra ? extra : "");
    if (send_body && body_len > 0)
        out_append(c, body, body_len);
    mark_dirty(c);
}

/* Answers a request net refuses itself, then closes. */
static void respond_error(struct net_conn *c, int status, const char *extra)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, http_status_str((enum http_status)status));
    respond(c, status, NULL, extra, body, n > 0 ? (size_t)n : 0, true, false);
    begin_close(c);
}

static const struct net_ws_handler ws_handler;

static void do_upgrade(struct net_conn *c)
{
    struct net_loop *nl = c->nl;
    char accept[NET_WS_ACCEPT_LEN + 1];
    net__ws_accept_key(c->req->key, accept);
    out_printf(c,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
               accept);
    free(c->req);
    c->req = NULL;
    c->state = CONN_WS;
    c->deadline_ms = 0;
    c->last_rx_ms = uv_now(nl->loop);
    net__ws_init(&c->ws, nl->limits.max_frame, &ws_handler, c);
    c->opened = true;
    stat_add(&nl->open_ws, 1);
    log_debug("net", "event=ws_open peer=%s", c->peer);
    mark_dirty(c);
    if (nl->cbs.on_open)
        nl->cbs.on_open(c);
}

static void handle_request(struct net_conn *c)
{
    struct net_loop *nl = c->nl;
    struct net_req *r = c->req;
    int status = 0;
    switch (net__req_upgrade(r, &status)) {
    case NET_REQ_UPGRADE:
        do_upgrade(c);
        return;
    case NET_REQ_REJECT:
        handshake_failed(c, "bad_upgrade");
        respond_error(c, status, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return;
    case NET_REQ_PLAIN:
        break;
    }
    stat_add(&nl->http_requests, 1);
    c->served = true;
    c->deadline_ms = uv_now(nl->loop) + nl->limits.handshake_ms;
    log_debug("net", "event=http_request peer=%s method=%s", c->peer, r->method);
    bool head = strcmp(r->method, "HEAD") == 0;
    if (!head && strcmp(r->method, "GET") != 0) {
        static const char body[] = "405 Method Not Allowed\n";
        respond(c, 405, NULL, "Allow: GET, HEAD\r\n", body, sizeof(body) - 1, true, r->keep_alive);
    } else {
        struct net_http_response res = {0};
        if (nl->cbs.on_http)
            nl->cbs.on_http(nl, r->method, r->path, &res);
        if (res.status < 100 || res.status > 999) {
            free(res.body);
            static const char body[] = "404 Not Found\n";
            respond(c, 404, NULL, NULL, body, sizeof(body) - 1, !head, r->keep_alive);
        } else {
            respond(c, res.status, res.content_type, NULL, res.body, res.body_len, !head,
                    r->keep_alive);
            free(res.body);
        }
    }
    if (!r->keep_alive)
        begin_close(c);
}

static void ws_input(struct net_conn *c, const uint8_t *data, size_t len);

static void http_input(struct net_conn *c, const uint8_t *data, size_t len)
{
    while (len > 0 && !c->closing && c->state == CONN_HTTP) {
        size_t used = 0;
        enum net_req_result r = net__req_feed(c->req, (const char *)data, len, &used);
        data += used;
        len -= used;
        if (r == NET_REQ_MORE)
            break;
        if (r == NET_REQ_ERROR) {
            if (!c->served)
                handshake_failed(c, "bad_request");
            respond_error(c, c->req->error_status, NULL);
            break;
        }
        handle_request(c);
        if (c->state == CONN_HTTP && !c->closing) {
            net__req_reset(c->req);
            if (conn_pending(c) > c->nl->limits.max_send_queue) {
                stat_add(&c->nl->send_queue_drops, 1);
                conn_abort(c);
                return;
            }
        }
    }
    if (len > 0 && c->state == CONN_WS && !c->closing)
        ws_input(c, data, len);
}

/* --- WebSocket -------------------------------------------------------- */

static void ws_on_message(void *arg, const uint8_t *data, size_t len)
{
    struct net_conn *c = arg;
    if (c->closing || !c->nl->cbs.on_message)
        return;
    c->nl->cbs.on_message(c, data, len);
}

static void ws_on_output(void *arg, const uint8_t *data, size_t len)
{
    out_append(arg, data, len);
}

static const struct net_ws_handler ws_handler = {
    .on_message = ws_on_message,
    .on_output = ws_on_output,
};

/* Answers the protocol gives by itself (WebSocket pongs and closes, TLS
 * KeyUpdates) to a peer that does not read must not pile up: past the
 * send queue's limit and some slack, the connection is dropped. */
static void drop_if_backlogged(struct net_conn *c)
{
    if (!c->handle_closed && conn_pending(c) > c->nl->limits.max_send_queue + 65536) {
        stat_add(&c->nl->send_queue_drops, 1);
        conn_abort(c);
    }
}

static void ws_input(struct net_conn *c, const uint8_t *data, size_t len)
{
    net__ws_feed(&c->ws, data, len);
    ws_check_closing(c);
    mark_dirty(c);
    drop_if_backlogged(c);
}

/* --- input ------------------------------------------------------------ */

static bool on_plain(void *arg, const uint8_t *data, size_t len)
{
    struct net_conn *c = arg;
    if (c->closing)
        return false;
    if (c->state == CONN_HTTP)
        http_input(c, data, len);
    else
        ws_input(c, data, len);
    return !c->closing;
}

static void conn_input(struct net_conn *c, const uint8_t *data, size_t len)
{
    if (c->closing)
        return;
    if (!c->tls) {
        on_plain(c, data, len);
        return;
    }
    enum net_tls_result r = net__tls_read(c->tls, data, len, c->nl->pbuf, on_plain, c, &c->out);
    if (c->handle_closed)
        return;
    if (r == NET_TLS_ERROR) {
        if (!c->opened && !c->served)
            handshake_failed(c, "tls");
        begin_close(c); /* sends the alert, if any */
        return;
    }
    if (r == NET_TLS_CLOSED) {
        conn_abort(c);
        return;
    }
    if (!c->tls_counted && net__tls_is_established(c->tls)) {
        c->tls_counted = true;
        stat_add(&c->nl->tls_handshakes, 1);
        if (net__tls_is_compact(c->tls))
            stat_add(&c->nl->tls_compact, 1);
    }
    mark_dirty(c);
    drop_if_backlogged(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    PL_UNUSED(suggested);
    struct net_conn *c = PL_CONTAINER_OF(h, struct net_conn, tcp);
    struct net_loop *nl = c->nl;
    if (!nl->rbuf_busy) {
        nl->rbuf_busy = true;
        *buf = uv_buf_init((char *)nl->rbuf, READ_BUF_SIZE);
    } else {
        *buf = uv_buf_init(xmalloc(READ_BUF_SIZE), READ_BUF_SIZE);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct net_conn *c = PL_CONTAINER_OF(s, struct net_conn, tcp);
    struct net_loop *nl = c->nl;
    if (nread > 0) {
        uint64_t now = uv_now(nl->loop);
        c->sporadic = now - c->last_rx_ms >= HIBERNATE_MS;
        c->last_rx_ms = now;
        c->ping_sent = false;
        conn_input(c, (const uint8_t *)buf->base, (size_t)nread);
    } else if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("net", "event=read_failed peer=%s err=%s", c->peer,
                      uv_err_name((int)nread));
        conn_abort(c);
    }
    if (buf->base == (char *)nl->rbuf)
        nl->rbuf_busy = false;
    else
        free(buf->base);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct net_loop *nl = PL_CONTAINER_OF(server, struct net_loop, listener);
    if (status < 0) {
        log_warn("net", "event=accept_failed err=%s", uv_err_name(status));
        return;
    }
    struct net_conn *c = xcalloc(1, sizeof(*c));
    c->nl = nl;
    uv_tcp_init(nl->loop, &c->tcp);
    c->next = nl->conns;
    if (nl->conns)
        nl->conns->prev = c;
    nl->conns = c;
    stat_add(&nl->open_conns, 1);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_abort(c);
        return;
    }
    stat_add(&nl->accepted, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    snprintf(c->peer, sizeof(c->peer), "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uint64_t now = uv_now(nl->loop);
    c->deadline_ms = now + nl->limits.handshake_ms;
    c->last_rx_ms = now;
    c->state = CONN_HTTP;
    if (nl->tls) {
        c->tls = net__tls_new(nl->tls);
        if (!c->tls) {
            handshake_failed(c, "ssl_new");
            conn_abort(c);
            return;
        }
    }
    c->req = xmalloc(sizeof(*c->req));
    net__req_init(c->req, nl->limits.max_http_header);
    log_debug("net", "event=accept peer=%s tls=%d", c->peer, c->tls != NULL);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_abort(c);
}

/* --- sweep ------------------------------------------------------------ */

static void on_sweep(uv_timer_t *t)
{
    struct net_loop *nl = PL_CONTAINER_OF(t, struct net_loop, sweeper);
    uint64_t now = uv_now(nl->loop);
    unsigned idle_ms = nl->limits.idle_ping_ms;
    for (struct net_conn *c = nl->conns, *next; c; c = next) {
        next = c->next; /* conn_abort never frees before the close callback */
        if (c->handle_closed)
            continue;
        if (c->closing) {
            if (now >= c->close_deadline_ms)
                conn_abort(c);
            continue;
        }
        if (c->state == CONN_HTTP) {
            if (now >= c->deadline_ms) {
                if (!c->served)
                    handshake_failed(c, "timeout");
                conn_abort(c);
            }
            continue;
        }
        uint64_t quiet = now - c->last_rx_ms;
        /* A connection quiet for a while gives back its WebSocket state;
         * output buffers are already freed once written. */
        if (quiet >= HIBERNATE_MS && c->out.len == 0 && c->plain.len == 0 && !c->writing)
            conn_hibernate(c);
        if (idle_ms == 0)
            continue;
        if (c->ping_sent && quiet >= 2 * (uint64_t)idle_ms) {
            log_debug("net", "event=idle_timeout peer=%s", c->peer);
            conn_abort(c);
        } else if (!c->ping_sent && quiet >= idle_ms) {
            c->ping_sent = true;
            net__ws_ping(&c->ws);
            mark_dirty(c);
        }
    }
    /* Hand the pages of the WebSocket state freed since the last sweep
     * back to the system: glibc keeps freed chunks inside its heap, and
     * idle connections are only small if their memory really goes. */
    if (nl->hibernated > 0) {
        nl->hibernated = 0;
        malloc_trim(0);
    }
}

static uint64_t sweep_period(const struct net_limits *l)
{
    uint64_t p = SWEEP_MAX_MS;
    p = PL_MIN(p, (uint64_t)l->handshake_ms / 4);
    if (l->idle_ping_ms)
        p = PL_MIN(p, (uint64_t)l->idle_ping_ms / 4);
    return PL_MAX(p, (uint64_t)SWEEP_MIN_MS);
}

/* --- loop ------------------------------------------------------------- */

static void apply_limits(struct net_loop *nl, const struct net_limits *l)
{
    nl->limits = *l;
    if (nl->limits.max_frame == 0)
        nl->limits.max_frame = DEFAULT_MAX_FRAME;
    if (nl->limits.max_send_queue == 0)
        nl->limits.max_send_queue = DEFAULT_MAX_SEND_QUEUE;
    if (nl->limits.max_http_header == 0)
        nl->limits.max_http_header = DEFAULT_MAX_HTTP_HEADER;
    if (nl->limits.handshake_ms == 0)
        nl->limits.handshake_ms = DEFAULT_HANDSHAKE_MS;
}

static void on_loop_handle_closed(uv_handle_t *h)
{
    struct net_loop *nl = h->data;
    if (--nl->handles_open > 0)
        return;
    void (*done)(void *) = nl->done;
    void *done_data = nl->done_data;
    SSL_CTX_free(nl->tls);
    free(nl->rbuf);
    free(nl->pbuf);
    free(nl);
    if (done)
        done(done_data);
}

static void maybe_finish(struct net_loop *nl)
{
    if (!nl->stopping || nl->conns || nl->finishing)
        return;
    nl->finishing = true;
    uv_close((uv_handle_t *)&nl->flusher, on_loop_handle_closed);
    uv_close((uv_handle_t *)&nl->sweeper, on_loop_handle_closed);
    if (nl->inbox)
        uv_close((uv_handle_t *)&nl->inbox_async, on_loop_handle_closed);
}

static void on_start_failed_closed(uv_handle_t *h)
{
    free(h->data);
}

int net_loop_start(uv_loop_t *loop, int fd, SSL_CTX *tls, const struct net_limits *limits,
                   const struct net_callbacks *cbs, void *data, struct net_loop **out)
{
    if (!loop || fd < -1 || !limits || !cbs || !out) {
        if (fd >= 0)
            close(fd);
        return PARLEY_EINVAL;
    }
    struct net_loop *nl = xcalloc(1, sizeof(*nl));
    nl->loop = loop;
    nl->cbs = *cbs;
    nl->data = data;
    apply_limits(nl, limits);
    nl->listener.data = nl;
    nl->flusher.data = nl;
    nl->sweeper.data = nl;
    nl->inbox_async.data = nl;
    if (fd >= 0) {
        int rv = uv_tcp_init(loop, &nl->listener);
        if (rv != 0) {
            close(fd);
            free(nl);
            return PARLEY_EIO;
        }
        rv = uv_tcp_open(&nl->listener, fd);
        if (rv != 0)
            close(fd);
        else
            rv = uv_listen((uv_stream_t *)&nl->listener, LISTEN_BACKLOG, on_connection);
        if (rv != 0) {
            log_error("net", "event=listen_failed err=%s", uv_err_name(rv));
            uv_close((uv_handle_t *)&nl->listener, on_start_failed_closed);
            return PARLEY_EIO;
        }
        nl->listening = true;
    }
    nl->rbuf = xmalloc(READ_BUF_SIZE);
    nl->pbuf = xmalloc(PLAIN_BUF_SIZE);
    if (tls) {
        SSL_CTX_up_ref(tls);
        nl->tls = tls;
    }
    uv_prepare_init(loop, &nl->flusher);
    uv_prepare_start(&nl->flusher, on_flush);
    uv_unref((uv_handle_t *)&nl->flusher);
    uv_timer_init(loop, &nl->sweeper);
    uint64_t period = sweep_period(&nl->limits);
    uv_timer_start(&nl->sweeper, on_sweep, period, period);
    uv_unref((uv_handle_t *)&nl->sweeper);
    nl->handles_open = nl->listening ? 3 : 2;
    *out = nl;
    return 0;
}

void net_loop_reload(struct net_loop *nl, SSL_CTX *tls, const struct net_limits *limits)
{
    if (tls)
        SSL_CTX_up_ref(tls);
    SSL_CTX_free(nl->tls);
    nl->tls = tls;
    if (limits) {
        apply_limits(nl, limits);
        uint64_t period = sweep_period(&nl->limits);
        uv_timer_start(&nl->sweeper, on_sweep, period, period);
    }
}

void net_loop_stop(struct net_loop *nl, void (*done)(void *data), void *data)
{
    if (nl->stopping)
        return;
    nl->stopping = true;
    nl->done = done;
    nl->done_data = data;
    /* The loop runs until every connection is gone and done is called. */
    uv_ref((uv_handle_t *)&nl->flusher);
    log_debug("net", "event=loop_stop");
    if (nl->listening)
        uv_close((uv_handle_t *)&nl->listener, on_loop_handle_closed);
    inbox_shut(nl);
    for (struct net_conn *c = nl->conns; c; c = c->next) {
        if (c->state == CONN_WS)
            net_conn_close(c, WSLAY_CODE_GOING_AWAY, "server shutting down");
        else
            begin_close(c);
    }
    maybe_finish(nl);
}

void *net_loop_data(struct net_loop *nl)
{
    return nl->data;
}

void net_loop_stats(const struct net_loop *nl, struct net_stats *out)
{
    out->accepted = atomic_load_explicit(&nl->accepted, memory_order_relaxed);
    out->open_ws = atomic_load_explicit(&nl->open_ws, memory_order_relaxed);
    out->open_conns = atomic_load_explicit(&nl->open_conns, memory_order_relaxed);
    out->http_requests = atomic_load_explicit(&nl->http_requests, memory_order_relaxed);
    out->send_queue_drops = atomic_load_explicit(&nl->send_queue_drops, memory_order_relaxed);
    out->oversize_frames = atomic_load_explicit(&nl->oversize_frames, memory_order_relaxed);
    out->handshake_failures = atomic_load_explicit(&nl->handshake_failures, memory_order_relaxed);
    out->tls_handshakes = atomic_load_explicit(&nl->tls_handshakes, memory_order_relaxed);
    out->tls_compact = atomic_load_explicit(&nl->tls_compact, memory_order_relaxed);
    out->moved_in = atomic_load_explicit(&nl->moved_in, memory_order_relaxed);
}

/* --- moving connections between loops --------------------------------- */

void net_inbox_init(struct net_inbox *in)
{
    uv_mutex_init(&in->lock);
    in->nl = NULL;
    in->head = NULL;
}

void net_inbox_deinit(struct net_inbox *in)
{
    uv_mutex_destroy(&in->lock);
}

static void inbox_take_all(struct net_loop *nl);

static void on_inbox(uv_async_t *h)
{
    inbox_take_all(h->data);
}

int net_loop_open_inbox(struct net_loop *nl, struct net_inbox *in)
{
    if (nl->inbox || nl->stopping)
        return PARLEY_EINVAL;
    if (uv_async_init(nl->loop, &nl->inbox_async, on_inbox) != 0)
        return PARLEY_EIO;
    uv_unref((uv_handle_t *)&nl->inbox_async);
    nl->handles_open++;
    nl->inbox = in;
    uv_mutex_lock(&in->lock);
    in->nl = nl;
    uv_mutex_unlock(&in->lock);
    return 0;
}

/* c, between loops, copied into memory from this thread's allocator and
 * the old copy freed, when nothing points into it: its handle is closed,
 * it is on no list, and its WebSocket state hibernated at move_out (wslay
 * holds a pointer to c->ws). The thread that accepted and signed it in
 * (the front loop) then keeps no long-lived memory of it, and the pages
 * that its handshakes used come free (malloc_trim in the sweep). */
static struct net_conn *conn_relocate(struct net_conn *c)
{
    if (c->ws.ctx || c->req || c->wreq)
        return c;
    struct net_conn *n = xmalloc(sizeof(*n));
    memcpy(n, c, sizeof(*n));
    n->ws.arg = n;
    if (n->tls)
        n->tls = net__tls_relocate(n->tls);
    free(c);
    return n;
}

/* Takes c up on nl: a new handle on nl's loop for its socket, then
 * on_moved, then reading. */
static void adopt(struct net_loop *nl, struct net_conn *c)
{
    c = conn_relocate(c);
    c->nl = nl;
    c->prev = NULL;
    c->next = nl->conns;
    if (nl->conns)
        nl->conns->prev = c;
    nl->conns = c;
    stat_add(&nl->open_conns, 1);
    stat_add(&nl->open_ws, 1);
    c->moving = false;
    c->move_to = NULL;
    c->handle_closed = false;
    c->is_dirty = false;
    uv_tcp_init(nl->loop, &c->tcp);
    int rv = uv_tcp_open(&c->tcp, c->move_fd);
    if (rv != 0) {
        log_warn("net", "event=move_failed peer=%s err=%s", c->peer, uv_err_name(rv));
        close(c->move_fd);
        c->move_fd = -1;
        if (nl->cbs.on_moved)
            nl->cbs.on_moved(c); /* on_close comes next, on this loop */
        conn_abort(c);
        return;
    }
    c->move_fd = -1;
    uv_tcp_nodelay(&c->tcp, 1);
    if (nl->cbs.on_moved)
        nl->cbs.on_moved(c);
    if (nl->stopping)
        net_conn_close(c, WSLAY_CODE_GOING_AWAY, "server shutting down");
    if (!c->closing && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_abort(c);
        return;
    }
    mark_dirty(c); /* output carried over, if any */
}

static void inbox_take_all(struct net_loop *nl)
{
    struct net_inbox *in = nl->inbox;
    uv_mutex_lock(&in->lock);
    struct net_conn *c = in->head;
    in->head = NULL;
    uv_mutex_unlock(&in->lock);
    /* Posted newest first: take them up in the order they came. */
    struct net_conn *rev = NULL;
    while (c) {
        struct net_conn *next = c->inbox_next;
        c->inbox_next = rev;
        rev = c;
        c = next;
    }
    while (rev) {
        struct net_conn *next = rev->inbox_next;
        rev->inbox_next = NULL;
        stat_add(&nl->moved_in, 1);
        adopt(nl, rev);
        rev = next;
    }
}

/* A stopping loop takes nothing more; what was posted already it takes up
 * (and closes with the rest). */
static void inbox_shut(struct net_loop *nl)
{
    if (!nl->inbox)
        return;
    uv_mutex_lock(&nl->inbox->lock);
    nl->inbox->nl = NULL;
    uv_mutex_unlock(&nl->inbox->lock);
    inbox_take_all(nl);
}

/* Hands c to in's loop; false if that loop takes nothing. */
static bool inbox_post(struct net_inbox *in, struct net_conn *c)
{
    uv_mutex_lock(&in->lock);
    bool ok = in->nl != NULL;
    if (ok) {
        c->inbox_next = in->head;
        in->head = c;
        uv_async_send(&in->nl->inbox_async);
    }
    uv_mutex_unlock(&in->lock);
    return ok;
}

static void on_move_closed(uv_handle_t *h)
{
    struct net_conn *c = PL_CONTAINER_OF(h, struct net_conn, tcp);
    struct net_loop *nl = c->nl;
    if (c->prev)
        c->prev->next = c->next;
    else
        nl->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    stat_add(&nl->open_conns, -1);
    stat_add(&nl->open_ws, -1);
    if (!inbox_post(c->move_to, c))
        adopt(nl, c); /* the other loop is stopping: c stays here */
    maybe_finish(nl);
}

/* The socket leaves this loop: a duplicate of it survives the handle's
 * close, and the close callback posts c to its new loop. */
static void move_out(struct net_conn *c)
{
    uv_os_fd_t fd;
    int dup_fd = -1;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) {
        /* Out of descriptors: c stays, and reads again. */
        log_warn("net", "event=move_failed peer=%s reason=dup", c->peer);
        c->moving = false;
        c->move_to = NULL;
        if (c->nl->cbs.on_moved)
            c->nl->cbs.on_moved(c);
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
            conn_abort(c);
        else
            mark_dirty(c);
        return;
    }
    c->move_fd = dup_fd;
    c->handle_closed = true;
    dirty_unlink(c);
    /* Its wslay state is made again by the new loop's thread when it
     * next reads (conn_relocate); a stream mid-frame keeps it. Not
     * counted for the sweep's malloc_trim: this thread's heap is in
     * constant use by handshakes, and the other loops' sweeps trim it. */
    (void)net__ws_hibernate(&c->ws);
    uv_close((uv_handle_t *)&c->tcp, on_move_closed);
}

int net_conn_move(struct net_conn *c, struct net_inbox *to)
{
    if (!to || c->moving || c->closing || c->handle_closed || c->state != CONN_WS)
        return PARLEY_EBUSY;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->moving = true;
    c->move_to = to;
    mark_dirty(c);
    return 0;
}

/* --- connections ------------------------------------------------------ */

int net_conn_send(struct net_conn *c, const uint8_t *data, size_t len)
{
    if (c->closing || c->state != CONN_WS)
        return PARLEY_ECLOSED;
    if (conn_pending(c) + len > c->nl->limits.max_send_queue) {
        stat_add(&c->nl->send_queue_drops, 1);
        log_debug("net", "event=send_queue_full peer=%s", c->peer);
        net_conn_close(c, WSLAY_CODE_POLICY_VIOLATION, "send queue full");
        return PARLEY_ECLOSED;
    }
    if (net__ws_send(&c->ws, data, len) != 0)
        return PARLEY_ECLOSED;
    mark_dirty(c);
    return 0;
}

void net_conn_close(struct net_conn *c, uint16_t code, const char *reason)
{
    if (c->closing)
        return;
    if (c->state == CONN_WS) {
        net__ws_close(&c->ws, code, reason);
        ws_check_closing(c);
    } else {
        begin_close(c);
    }
}

void net_conn_set_data(struct net_conn *c, void *data)
{
    c->data = data;
}

void *net_conn_data(const struct net_conn *c)
{
    return c->data;
}

struct net_loop *net_conn_loop(const struct net_conn *c)
{
    return c->nl;
}

const char *net_conn_peer(const struct net_conn *c)
{
    return c->peer;
}
