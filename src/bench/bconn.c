/* SPDX-License-Identifier: MIT */
/* Client connection for the load generator (see bconn.h). Bytes flow
 *   read:  uv_read -> [SSL_read via rbio] -> http_parser (upgrade) -> wslay
 *   write: bconn_send's frames, wslay's control frames -> one buffer per
 *          connection -> once per loop turn: [SSL_write, drain wbio] ->
 *          uv_try_write -> what the socket did not take: one uv_write
 * Everything runs on the caller's loop; nothing blocks. Scratch space is
 * per thread, so loops on different threads share nothing. */
#include "bconn.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/mem.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

#define READ_BUF_BYTES 65536
#define TLS_CHUNK 16384

#define BUF_FIRST_BYTES 512
#define BUF_KEEP_BYTES 65536 /* a larger write buffer is freed once written */
#define ARENA_FIRST_BYTES 16384
#define ENCODE_KEEP_BYTES 65536 /* a larger encode buffer is freed after use */

static _Thread_local uint64_t mask_state = 0x9e3779b97f4a7c15ull;

/* Scratch shared by every connection of one thread: a loop runs on one
 * thread and each use ends before the next begins. */
static _Thread_local struct arena decode_arena; /* a received Frame, reset after its callback */
static _Thread_local bool decode_arena_ready;
static _Thread_local struct frame_buf encode_buf; /* a Frame being sent, before framing */

void bconn_seed(uint64_t seed)
{
    mask_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

void bconn_cleanup(void)
{
    if (decode_arena_ready)
        arena_deinit(&decode_arena);
    decode_arena_ready = false;
    frame_buf_release(&encode_buf, 0);
}

/* xorshift64*: masking keys only need to be unpredictable to a proxy. */
static uint64_t mask_next(void)
{
    mask_state ^= mask_state >> 12;
    mask_state ^= mask_state << 25;
    mask_state ^= mask_state >> 27;
    return mask_state * 0x2545f4914f6cdd1dull;
}

/* Room for n more bytes at the end of b; the caller fills them and adds n
 * to b->len. */
static uint8_t *buf_room(struct bconn_buf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : BUF_FIRST_BYTES;
        while (cap - b->len < n)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

static void buf_free(struct bconn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t bconn_pending(const struct bconn *c)
{
    return c->app.len + c->out.len + c->wr.len;
}

static void on_closed(uv_handle_t *h)
{
    struct bconn *c = h->data;
    if (--c->open_handles > 0)
        return;
    if (c->ws)
        wslay_event_context_free(c->ws);
    c->ws = NULL;
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    buf_free(&c->app);
    buf_free(&c->out);
    buf_free(&c->wr);
    c->ops->on_close(c);
}

static void net_flush(struct bconn *c, bool may_queue);

void bconn_close(struct bconn *c, int err)
{
    if (c->state == BCONN_CLOSING)
        return;
    /* What is queued goes out if the socket takes it now (a close frame,
     * say); nothing waits for it. */
    if (c->state != BCONN_CONNECTING && c->state != BCONN_IDLE)
        net_flush(c, false);
    c->state = BCONN_CLOSING;
    c->err = err;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    uv_close((uv_handle_t *)&c->flusher, on_closed);
}

/* Moves what OpenSSL has produced to out. */
static void tls_drain(struct bconn *c)
{
    for (;;) {
        size_t n = BIO_ctrl_pending(c->wbio);
        if (n == 0)
            break;
        n = PL_MIN(n, (size_t)TLS_CHUNK);
        int r = BIO_read(c->wbio, buf_room(&c->out, n), (int)n);
        if (r <= 0)
            break;
        c->out.len += (size_t)r;
    }
}

/* Encrypts what app holds into out. */
static int tls_encrypt(struct bconn *c)
{
    const uint8_t *p = c->app.data;
    size_t len = c->app.len;
    while (len > 0) {
        int n = SSL_write(c->ssl, p, (int)PL_MIN(len, (size_t)1 << 30));
        if (n <= 0) {
            ERR_clear_error();
            c->app.len = 0;
            return PARLEY_ETLS;
        }
        p += n;
        len -= (size_t)n;
        tls_drain(c);
    }
    c->app.len = 0;
    return 0;
}

static void on_flush(uv_prepare_t *p);

static void arm_flush(struct bconn *c)
{
    if (c->state != BCONN_CLOSING && !uv_is_active((uv_handle_t *)&c->flusher))
        (void)uv_prepare_start(&c->flusher, on_flush);
}

static void on_written(uv_write_t *req, int status)
{
    struct bconn *c = req->data;
    c->writing = false;
    c->wr.len = 0;
    if (c->wr.cap > BUF_KEEP_BYTES)
        buf_free(&c->wr); /* a stall's backlog should not pin its memory */
    if (status < 0) {
        if (status != UV_ECANCELED)
            bconn_close(c, PARLEY_ECLOSED);
        return;
    }
    if (c->out.len > 0 || c->app.len > 0)
        net_flush(c, true);
}

/* Writes out (after encrypting app) with one system call; what the socket
 * does not take now goes to one uv_write when may_queue, else is dropped
 * (the connection is closing). */
static void net_flush(struct bconn *c, bool may_queue)
{
    if (c->app.len > 0 && tls_encrypt(c) != 0) {
        if (may_queue)
            bconn_close(c, PARLEY_ETLS);
        return;
    }
    if (c->writing || c->out.len == 0)
        return;
    uv_buf_t buf = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (n == (int)c->out.len) {
        c->out.len = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        c->out.len = 0;
        if (may_queue)
            bconn_close(c, PARLEY_ECLOSED);
        return;
    }
    if (!may_queue)
        return;
    size_t done = n > 0 ? (size_t)n : 0;
    /* The rest goes in one uv_write from wr; out starts afresh. */
    struct bconn_buf t = c->wr;
    c->wr = c->out;
    c->out = t;
    c->out.len = 0;
    buf = uv_buf_init((char *)c->wr.data + done, (unsigned)(c->wr.len - done));
    c->wr.len -= done;
    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
        c->wr.len = 0;
        bconn_close(c, PARLEY_ECLOSED);
        return;
    }
    c->writing = true;
}

static void on_flush(uv_prepare_t *p)
{
    struct bconn *c = PL_CONTAINER_OF(p, struct bconn, flusher);
    (void)uv_prepare_stop(p);
    net_flush(c, true);
}

/* Room for n application bytes, written before the loop next polls; NULL
 * (and c closed) when that would put more than BCONN_OUT_MAX unsent. */
static uint8_t *app_room(struct bconn *c, size_t n)
{
    if (c->state == BCONN_CLOSING)
        return NULL;
    if (bconn_pending(c) + n > BCONN_OUT_MAX) {
        bconn_close(c, PARLEY_ETIMEOUT); /* the server does not read: give up */
        return NULL;
    }
    arm_flush(c);
    return buf_room(c->ssl ? &c->app : &c->out, n);
}

static void app_commit(struct bconn *c, size_t n)
{
    if (c->ssl)
        c->app.len += n;
    else
        c->out.len += n;
}

/* Queues application bytes, through TLS when there is TLS; they are copied. */
static int app_write(struct bconn *c, const uint8_t *data, size_t len)
{
    uint8_t *p = app_room(c, len);
    if (!p)
        return PARLEY_ECLOSED;
    memcpy(p, data, len);
    app_commit(c, len);
    return 0;
}

/* Queues what OpenSSL produced during the handshake. */
static void tls_flush(struct bconn *c)
{
    tls_drain(c);
    if (c->out.len > 0)
        arm_flush(c);
}

/* wslay callbacks */

static ssize_t on_ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user)
{
    (void)flags;
    struct bconn *c = user;
    if (c->rd_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = PL_MIN(len, c->rd_len);
    memcpy(buf, c->rd, n);
    c->rd += n;
    c->rd_len -= n;
    return (ssize_t)n;
}

static ssize_t on_ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    (void)flags;
    struct bconn *c = user;
    if (app_write(c, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int on_ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    while (len > 0) {
        uint64_t r = mask_next();
        size_t n = PL_MIN(len, sizeof(r));
        memcpy(buf, &r, n);
        buf += n;
        len -= n;
    }
    return 0;
}

static void on_ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    (void)ctx;
    struct bconn *c = user;
    if (c->state != BCONN_OPEN)
        return;
    switch (arg->opcode) {
    case WSLAY_BINARY_FRAME: {
        if (!decode_arena_ready) {
            arena_init(&decode_arena, ARENA_FIRST_BYTES);
            decode_arena_ready = true;
        }
        PlFrame *f = NULL;
        int rc =
            frame_decode_arena(arg->msg, arg->msg_length, c->target->max_frame, &decode_arena, &f);
        if (rc) {
            arena_reset(&decode_arena);
            bconn_close(c, PARLEY_EPROTO);
            return;
        }
        c->ops->on_frame(c, f);
        arena_reset(&decode_arena); /* the frame and all in it: on_frame copied what it keeps */
        break;
    }
    case WSLAY_CONNECTION_CLOSE:
        c->close_code = arg->status_code;
        break;
    case WSLAY_TEXT_FRAME:
        bconn_close(c, PARLEY_EPROTO); /* the server never sends text */
        break;
    default:
        break; /* ping and pong: wslay answers pings itself */
    }
}

/* Pushes wslay's queued frames out; closes c when the WebSocket is done. */
static void ws_flush(struct bconn *c)
{
    if (c->state != BCONN_OPEN)
        return;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        bconn_close(c, PARLEY_ECLOSED);
        return;
    }
    if (c->state == BCONN_OPEN && wslay_event_get_close_received(c->ws) &&
        !wslay_event_want_write(c->ws))
        bconn_close(c, PARLEY_ECLOSED);
}

static void ws_input(struct bconn *c, const uint8_t *data, size_t len)
{
    c->rd = data;
    c->rd_len = len;
    int rc = wslay_event_recv(c->ws);
    c->rd = NULL;
    c->rd_len = 0;
    if (c->state != BCONN_OPEN)
        return;
    if (rc != 0) {
        bconn_close(c, PARLEY_EPROTO);
        return;
    }
    ws_flush(c);
}

/* The HTTP upgrade */

static int on_hdr_field(http_parser *hp, const char *at, size_t len)
{
    struct bconn *c = hp->data;
    if (c->hdr_name_len + len >= sizeof(c->hdr_name)) {
        c->hdr_name_len = sizeof(c->hdr_name); /* too long to be one we want */
        return 0;
    }
    memcpy(c->hdr_name + c->hdr_name_len, at, len);
    c->hdr_name_len += len;
    c->hdr_name[c->hdr_name_len] = '\0';
    return 0;
}

static int on_hdr_value(http_parser *hp, const char *at, size_t len)
{
    struct bconn *c = hp->data;
    if (c->hdr_name_len < sizeof(c->hdr_name) && strcasecmp(c->hdr_name, "retry-after") == 0) {
        char num[16];
        size_t n = PL_MIN(len, sizeof(num) - 1);
        memcpy(num, at, n);
        num[n] = '\0';
        unsigned long s = strtoul(num, NULL, 10);
        c->retry_after_ms = s > 86400 ? 86400000u : (uint32_t)s * 1000u;
    }
    c->hdr_name_len = 0;
    return 0;
}

static int on_hdrs_done(http_parser *hp)
{
    struct bconn *c = hp->data;
    c->http_status = (int)hp->status_code;
    return 1; /* no body is read: either it is 101, or we close */
}

static const http_parser_settings upgrade_settings = {
    .on_header_field = on_hdr_field,
    .on_header_value = on_hdr_value,
    .on_headers_complete = on_hdrs_done,
};

static int ws_open(struct bconn *c)
{
    struct wslay_event_callbacks cbs = {
        .recv_callback = on_ws_recv,
        .send_callback = on_ws_send,
        .genmask_callback = on_ws_genmask,
        .on_msg_recv_callback = on_ws_msg,
    };
    if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0)
        return PARLEY_ENOMEM;
    wslay_event_config_set_max_recv_msg_length(c->ws, c->target->max_frame);
    c->state = BCONN_OPEN;
    return 0;
}

static int status_to_err(int status)
{
    switch (status) {
    case 429:
        return PARLEY_ERATE_LIMITED;
    case 503:
        return PARLEY_EBUSY;
    default:
        return PARLEY_EPROTO;
    }
}

static void upgrade_input(struct bconn *c, const uint8_t *data, size_t len)
{
    size_t used = http_parser_execute(&c->hp, &upgrade_settings, (const char *)data, len);
    if (c->http_status == 0) {
        if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK)
            bconn_close(c, PARLEY_EPROTO);
        return; /* headers not complete yet */
    }
    if (c->http_status != 101) {
        bconn_close(c, status_to_err(c->http_status));
        return;
    }
    int rc = ws_open(c);
    if (rc) {
        bconn_close(c, rc);
        return;
    }
    c->ops->on_open(c);
    if (c->state == BCONN_OPEN && used < len)
        ws_input(c, data + used, len - used);
    else
        ws_flush(c);
}

/* Application bytes from the server, after TLS. */
static void app_input(struct bconn *c, const uint8_t *data, size_t len)
{
    if (c->state == BCONN_UPGRADE)
        upgrade_input(c, data, len);
    else if (c->state == BCONN_OPEN)
        ws_input(c, data, len);
}

static int send_upgrade(struct bconn *c)
{
    uint8_t key[16];
    char key64[32];
    for (size_t i = 0; i < sizeof(key); i += 8) {
        uint64_t r = mask_next();
        memcpy(key + i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: parley-bench\r\n\r\n",
                     c->target->host, key64);
    if (n < 0 || (size_t)n >= sizeof(req))
        return PARLEY_EINVAL;
    http_parser_init(&c->hp, HTTP_RESPONSE);
    c->hp.data = c;
    c->state = BCONN_UPGRADE;
    return app_write(c, (const uint8_t *)req, (size_t)n);
}

/* Drives the TLS handshake; true once it is done. */
static bool tls_step(struct bconn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return true;
    int e = SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        bconn_close(c, PARLEY_ETLS);
        return false;
    }
    tls_flush(c);
    return false;
}

static void tls_input(struct bconn *c, const uint8_t *data, size_t len)
{
    if (BIO_write(c->rbio, data, (int)len) != (int)len) {
        bconn_close(c, PARLEY_ENOMEM);
        return;
    }
    if (c->state == BCONN_TLS) {
        if (!tls_step(c))
            return;
        tls_flush(c);
        if (send_upgrade(c) != 0)
            return;
    }
    uint8_t buf[TLS_CHUNK];
    while (c->state == BCONN_UPGRADE || c->state == BCONN_OPEN) {
        int n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n > 0) {
            app_input(c, buf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        ERR_clear_error();
        bconn_close(c, e == SSL_ERROR_ZERO_RETURN ? PARLEY_ECLOSED : PARLEY_ETLS);
        return;
    }
    if (c->state == BCONN_UPGRADE || c->state == BCONN_OPEN)
        tls_flush(c); /* session tickets, alerts */
}

/* One read buffer for every connection of a thread: each read is consumed
 * before the next. */
static _Thread_local uint8_t read_buf[READ_BUF_BYTES];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    *buf = uv_buf_init((char *)read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct bconn *c = PL_CONTAINER_OF(s, struct bconn, tcp);
    if (n == 0 || c->state == BCONN_CLOSING)
        return;
    if (n < 0) {
        bconn_close(c, PARLEY_ECLOSED);
        return;
    }
    if (c->ssl)
        tls_input(c, (const uint8_t *)buf->base, (size_t)n);
    else
        app_input(c, (const uint8_t *)buf->base, (size_t)n);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct bconn *c = PL_CONTAINER_OF(req, struct bconn, connect_req);
    if (c->state == BCONN_CLOSING)
        return;
    if (status < 0) {
        bconn_close(c, PARLEY_ECONNECT);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        bconn_close(c, PARLEY_ECONNECT);
        return;
    }
    if (!c->target->ssl_ctx) {
        (void)send_upgrade(c);
        return;
    }
    c->ssl = SSL_new(c->target->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        bconn_close(c, PARLEY_ENOMEM);
        return;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    c->state = BCONN_TLS;
    (void)tls_step(c);
}

int bconn_start(struct bconn *c, uv_loop_t *loop, const struct bconn_target *target,
                const struct bconn_ops *ops)
{
    memset(c, 0, sizeof(*c));
    c->target = target;
    c->ops = ops;
    if (uv_tcp_init(loop, &c->tcp) != 0)
        return PARLEY_ENOMEM;
    (void)uv_prepare_init(loop, &c->flusher); /* cannot fail */
    c->tcp.data = c;
    c->flusher.data = c;
    c->open_handles = 2;
    c->state = BCONN_CONNECTING;
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&target->addr,
                       on_connected) != 0)
        bconn_close(c, PARLEY_ECONNECT);
    return 0;
}

/* Copies n bytes from src to dst, XORed with the 4-byte key (RFC 6455 5.3). */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4])
{
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ key[i % 4];
}

int bconn_send(struct bconn *c, const PlFrame *f)
{
    if (c->state != BCONN_OPEN || wslay_event_get_close_sent(c->ws) ||
        !wslay_event_get_write_enabled(c->ws))
        return PARLEY_ECLOSED;
    /* Framed here rather than by wslay_event_queue_msg, which would copy
     * the message into a queue entry and mask it into a second copy. wslay
     * never holds part of a frame (the send callback always takes all), so
     * its control frames and these stay whole and in order. */
    size_t len = 0;
    const uint8_t *data = frame_encode_buf(f, &encode_buf, &len);
    if (!data)
        return PARLEY_ENOMEM;
    uint8_t hdr[14];
    size_t hl = 2;
    hdr[0] = 0x80 | WSLAY_BINARY_FRAME; /* FIN, one frame per message */
    if (len < 126) {
        hdr[1] = 0x80 | (uint8_t)len;
    } else if (len <= 0xffff) {
        hdr[1] = 0x80 | 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        hl = 4;
    } else {
        hdr[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    uint64_t r = mask_next();
    memcpy(hdr + hl, &r, 4);
    hl += 4;
    uint8_t *p = app_room(c, hl + len);
    if (!p) {
        frame_buf_release(&encode_buf, ENCODE_KEEP_BYTES);
        return PARLEY_ECLOSED;
    }
    memcpy(p, hdr, hl);
    mask_copy(p + hl, data, len, hdr + hl - 4);
    app_commit(c, hl + len);
    frame_buf_release(&encode_buf, ENCODE_KEEP_BYTES);
    return 0;
}
