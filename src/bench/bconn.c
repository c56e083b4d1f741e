/* SPDX-License-Identifier: MIT */
/* Client connection for the load generator (see bconn.h). Bytes flow
 *   read:  uv_read -> [SSL_read via rbio] -> http_parser (upgrade) -> wslay
 *   write: wslay -> [SSL_write, drain wbio] -> uv_write
 * Everything runs on the caller's loop; nothing blocks. */
#include "bconn.h"
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

struct write_req {
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

static uint64_t mask_state = 0x9e3779b97f4a7c15ull;

void bconn_seed(uint64_t seed)
{
    mask_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

/* xorshift64*: masking keys only need to be unpredictable to a proxy. */
static uint64_t mask_next(void)
{
    mask_state ^= mask_state >> 12;
    mask_state ^= mask_state << 25;
    mask_state ^= mask_state >> 27;
    return mask_state * 0x2545f4914f6cdd1dull;
}

size_t bconn_pending(const struct bconn *c)
{
    return c->tcp.write_queue_size;
}

static void on_closed(uv_handle_t *h)
{
    struct bconn *c = PL_CONTAINER_OF(h, struct bconn, tcp);
    if (c->ws)
        wslay_event_context_free(c->ws);
    c->ws = NULL;
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    c->ops->on_close(c);
}

void bconn_close(struct bconn *c, int err)
{
    if (c->state == BCONN_CLOSING)
        return;
    c->state = BCONN_CLOSING;
    c->err = err;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = PL_CONTAINER_OF(req, struct write_req, req);
    struct bconn *c = req->data;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        bconn_close(c, PARLEY_ECLOSED);
}

/* Hands bytes to the socket; they are copied. */
static int net_write(struct bconn *c, const uint8_t *data, size_t len)
{
    if (c->state == BCONN_CLOSING)
        return PARLEY_ECLOSED;
    if (bconn_pending(c) + len > BCONN_OUT_MAX) {
        bconn_close(c, PARLEY_ETIMEOUT); /* the server does not read: give up */
        return PARLEY_ECLOSED;
    }
    struct write_req *w = xmalloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    w->len = len;
    w->req.data = c;
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
        free(w);
        bconn_close(c, PARLEY_ECLOSED);
        return PARLEY_ECLOSED;
    }
    return 0;
}

/* Moves what OpenSSL has produced to the socket. */
static int tls_flush(struct bconn *c)
{
    uint8_t buf[TLS_CHUNK];
    while (BIO_ctrl_pending(c->wbio) > 0) {
        int n = BIO_read(c->wbio, buf, sizeof(buf));
        if (n <= 0)
            break;
        int rc = net_write(c, buf, (size_t)n);
        if (rc)
            return rc;
    }
    return 0;
}

/* Writes application bytes, through TLS when there is TLS. */
static int app_write(struct bconn *c, const uint8_t *data, size_t len)
{
    if (!c->ssl)
        return net_write(c, data, len);
    while (len > 0) {
        int n = SSL_write(c->ssl, data, (int)PL_MIN(len, (size_t)1 << 30));
        if (n <= 0) {
            ERR_clear_error();
            bconn_close(c, PARLEY_ETLS);
            return PARLEY_ETLS;
        }
        data += n;
        len -= (size_t)n;
    }
    return tls_flush(c);
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
        PlFrame *f = NULL;
        int rc = frame_decode(arg->msg, arg->msg_length, c->target->max_frame, &f);
        if (rc) {
            bconn_close(c, PARLEY_EPROTO);
            return;
        }
        c->ops->on_frame(c, f);
        frame_free(f);
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
    c->in_recv = true;
    int rc = wslay_event_recv(c->ws);
    c->in_recv = false;
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
    (void)tls_flush(c);
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
        if (tls_flush(c) != 0 || send_upgrade(c) != 0)
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
        (void)tls_flush(c); /* session tickets, alerts */
}

/* One read buffer for every connection: the loop is single-threaded and
 * each read is consumed before the next. */
static uint8_t read_buf[READ_BUF_BYTES];

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
    c->state = BCONN_CONNECTING;
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&target->addr,
                       on_connected) != 0)
        bconn_close(c, PARLEY_ECONNECT);
    return 0;
}

int bconn_send(struct bconn *c, const PlFrame *f)
{
    if (c->state != BCONN_OPEN)
        return PARLEY_ECLOSED;
    size_t len = 0;
    uint8_t *data = frame_encode(f, &len);
    if (!data)
        return PARLEY_ENOMEM;
    struct wslay_event_msg m = {.opcode = WSLAY_BINARY_FRAME, .msg = data, .msg_length = len};
    int r = wslay_event_queue_msg(c->ws, &m);
    free(data);
    if (r != 0)
        return r == WSLAY_ERR_NOMEM ? PARLEY_ENOMEM : PARLEY_ECLOSED;
    if (!c->in_recv)
        ws_flush(c);
    return 0;
}
