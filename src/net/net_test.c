/* SPDX-License-Identifier: MIT */
/* Tests of the net module: the HTTP request reader and the WebSocket accept
 * key on their own, then a real net_loop on 127.0.0.1 driven by a blocking
 * client socket (plaintext and TLS) from the test's main thread while the
 * loop runs in a second thread. */
#include "net/http.h"
#include "net/net.h"
#include "net/tls.h"
#include "net/ws.h"

#include "common/err.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "common/banned.h"

/* --- HTTP request reader ---------------------------------------------- */

#define UPGRADE_REQ(key, version)                                                                  \
    "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" \
    key version "\r\n"
#define GOOD_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define V13 "Sec-WebSocket-Version: 13\r\n"

static enum net_req_result feed_all(struct net_req *r, const char *s, size_t *used)
{
    return net__req_feed(r, s, strlen(s), used);
}

static void test_http_good_upgrade_is_accepted(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    const char *s = UPGRADE_REQ(GOOD_KEY, V13) "\x82\x80";
    size_t used = 0;
    assert_int_equal(feed_all(&r, s, &used), NET_REQ_DONE);
    assert_int_equal(used, strlen(s) - 2); /* the frame bytes stay with the caller */
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.path, "/v1/ws");
    assert_true(net__req_is_upgrade(&r));
    int status = 0;
    assert_int_equal(net__req_upgrade(&r, &status), NET_REQ_UPGRADE);
    assert_string_equal(r.key, "dGhlIHNhbXBsZSBub25jZQ==");
}

static void test_http_upgrade_split_byte_by_byte(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    const char *s = UPGRADE_REQ(GOOD_KEY, V13);
    size_t n = strlen(s), used = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        assert_int_equal(net__req_feed(&r, s + i, 1, &used), NET_REQ_MORE);
        assert_int_equal(used, 1);
    }
    assert_int_equal(net__req_feed(&r, s + n - 1, 1, &used), NET_REQ_DONE);
    int status = 0;
    assert_int_equal(net__req_upgrade(&r, &status), NET_REQ_UPGRADE);
}

static void test_http_missing_key_is_400(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    size_t used;
    assert_int_equal(feed_all(&r, UPGRADE_REQ("", V13), &used), NET_REQ_DONE);
    int status = 0;
    assert_int_equal(net__req_upgrade(&r, &status), NET_REQ_REJECT);
    assert_int_equal(status, 400);

    net__req_init(&r, 8192);
    assert_int_equal(feed_all(&r, UPGRADE_REQ("Sec-WebSocket-Key: short==\r\n", V13), &used),
                     NET_REQ_DONE);
    assert_int_equal(net__req_upgrade(&r, &status), NET_REQ_REJECT);
    assert_int_equal(status, 400);
}

static void test_http_wrong_version_is_426(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    size_t used;
    assert_int_equal(feed_all(&r, UPGRADE_REQ(GOOD_KEY, "Sec-WebSocket-Version: 8\r\n"), &used),
                     NET_REQ_DONE);
    int status = 0;
    assert_int_equal(net__req_upgrade(&r, &status), NET_REQ_REJECT);
    assert_int_equal(status, 426);
}

static void test_http_header_too_large_is_431(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 256);
    char big[1024];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Pad: %0400d\r\n\r\n", 0);
    assert_true(n > 0);
    size_t used;
    assert_int_equal(net__req_feed(&r, big, (size_t)n, &used), NET_REQ_ERROR);
    assert_int_equal(r.error_status, 431);

    /* Also when the head arrives in pieces. */
    net__req_init(&r, 256);
    enum net_req_result res = NET_REQ_MORE;
    for (int i = 0; i < n && res == NET_REQ_MORE; i += 10)
        res = net__req_feed(&r, big + i, PL_MIN(10, n - i), &used);
    assert_int_equal(res, NET_REQ_ERROR);
    assert_int_equal(r.error_status, 431);
}

static void test_http_plain_get_goes_to_core(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    size_t used;
    assert_int_equal(feed_all(&r, "GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n", &used),
                     NET_REQ_DONE);
    assert_string_equal(r.path, "/healthz");
    assert_true(r.keep_alive);
    int status = 0;
    assert_int_equal(net__req_upgrade(&r, &status), NET_REQ_PLAIN);

    net__req_init(&r, 8192);
    assert_int_equal(feed_all(&r, "GET / HTTP/1.0\r\n\r\n", &used), NET_REQ_DONE);
    assert_false(r.keep_alive);
}

static void test_http_pipelined_requests_are_split(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    const char *s = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                    "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
    size_t len = strlen(s), used;
    const char *want[] = {"/a", "/b", "/c"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(net__req_feed(&r, s, len, &used), NET_REQ_DONE);
        assert_string_equal(r.path, want[i]);
        assert_int_equal(r.keep_alive, i < 2);
        s += used;
        len -= used;
        net__req_reset(&r);
    }
    assert_int_equal(len, 0);
}

static void test_http_large_body_is_413(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    size_t used;
    assert_int_equal(feed_all(&r, "POST / HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n", &used),
                     NET_REQ_ERROR);
    assert_int_equal(r.error_status, 413);
}

static void test_http_garbage_is_400(void **state)
{
    (void)state;
    struct net_req r;
    net__req_init(&r, 8192);
    size_t used;
    assert_int_equal(feed_all(&r, "\x16\x03\x01 hello\r\n\r\n", &used), NET_REQ_ERROR);
    assert_int_equal(r.error_status, 400);
}

static void test_ws_accept_key_matches_rfc6455_example(void **state)
{
    (void)state;
    char out[NET_WS_ACCEPT_LEN + 1];
    net__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* --- loopback server -------------------------------------------------- */

struct server {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    struct net_loop *nl;
    struct net_limits limits;
    SSL_CTX *tls;
    int fd;
    int port;
    int start_rv;
    uv_sem_t started;
    atomic_int opens, closes, messages, done;
    size_t last_len;
    struct net_stats stats; /* taken when the loop stops */
    struct net_stats stats_at_close; /* taken by the last on_close */
    int send_rv;            /* net_conn_send's result for the last "flood" */
};

static void srv_on_open(struct net_conn *c)
{
    struct server *s = net_loop_data(net_conn_loop(c));
    net_conn_set_data(c, s);
    atomic_fetch_add(&s->opens, 1);
}

/* Echoes each message; "flood" asks for more than the send queue holds. */
static void srv_on_message(struct net_conn *c, const uint8_t *data, size_t len)
{
    struct server *s = net_conn_data(c);
    atomic_fetch_add(&s->messages, 1);
    s->last_len = len;
    if (len == 5 && memcmp(data, "flood", 5) == 0) {
        static uint8_t big[3000];
        for (int i = 0; i < 10; i++) {
            s->send_rv = net_conn_send(c, big, sizeof(big));
            if (s->send_rv != 0)
                break;
        }
        return;
    }
    if (len == 5 && memcmp(data, "close", 5) == 0) {
        net_conn_close(c, 4000, "bye");
        net_conn_close(c, 4001, "again"); /* idempotent */
        assert_int_equal(net_conn_send(c, data, len), PARLEY_ECLOSED);
        return;
    }
    if (net_conn_send(c, data, len) != 0)
        fail_msg("echo failed");
}

static void srv_on_close(struct net_conn *c)
{
    struct server *s = net_conn_data(c);
    atomic_fetch_add(&s->closes, 1);
    net_loop_stats(net_conn_loop(c), &s->stats_at_close);
}

static void srv_on_http(struct net_loop *nl, const char *method, const char *path,
                        struct net_http_response *res)
{
    (void)nl;
    (void)method;
    if (strcmp(path, "/healthz") == 0) {
        res->status = 200;
        res->content_type = "text/plain";
        res->body = xstrdup("ok\n");
        res->body_len = 3;
    } else {
        res->status = 404;
        res->content_type = "text/plain";
        res->body = xstrdup("nope\n");
        res->body_len = 5;
    }
}

static const struct net_callbacks srv_cbs = {
    .on_open = srv_on_open,
    .on_message = srv_on_message,
    .on_close = srv_on_close,
    .on_http = srv_on_http,
};

static void srv_on_done(void *data)
{
    struct server *s = data;
    atomic_store(&s->done, 1);
}

static void srv_on_stop(uv_async_t *a)
{
    struct server *s = a->data;
    net_loop_stats(s->nl, &s->stats);
    net_loop_stop(s->nl, srv_on_done, s);
    uv_close((uv_handle_t *)a, NULL);
}

static void srv_thread(void *arg)
{
    struct server *s = arg;
    s->start_rv = net_loop_start(&s->loop, s->fd, s->tls, &s->limits, &srv_cbs, s, &s->nl);
    uv_sem_post(&s->started);
    if (s->start_rv == 0)
        uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void srv_start(struct server *s, SSL_CTX *tls, const struct net_limits *limits)
{
    memset(s, 0, sizeof(*s));
    s->tls = tls;
    s->limits = *limits;
    assert_int_equal(uv_loop_init(&s->loop), 0);
    assert_int_equal(uv_async_init(&s->loop, &s->stop, srv_on_stop), 0);
    s->stop.data = s;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(uv_sem_init(&s->started, 0), 0);
    assert_int_equal(uv_thread_create(&s->thread, srv_thread, s), 0);
    uv_sem_wait(&s->started);
    assert_int_equal(s->start_rv, 0);
}

/* Stops the loop, waits for it, and checks that everything was released. */
static void srv_stop(struct server *s)
{
    uv_async_send(&s->stop);
    assert_int_equal(uv_thread_join(&s->thread), 0);
    assert_int_equal(atomic_load(&s->done), 1);
    assert_int_equal(uv_loop_close(&s->loop), 0);
    uv_sem_destroy(&s->started);
}

static struct net_limits test_limits(void)
{
    struct net_limits l = {
        .max_frame = 1024,
        .max_send_queue = 8192,
        .max_http_header = 4096,
        .handshake_ms = 5000,
        .idle_ping_ms = 0,
    };
    return l;
}

/* --- blocking test client --------------------------------------------- */

struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

static void cl_connect(struct client *cl, int port, bool tls)
{
    memset(cl, 0, sizeof(*cl));
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(cl->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(cl->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (tls) {
        cl->ctx = SSL_CTX_new(TLS_client_method());
        assert_non_null(cl->ctx);
        SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_NONE, NULL);
        cl->ssl = SSL_new(cl->ctx);
        SSL_set_fd(cl->ssl, cl->fd);
        assert_int_equal(SSL_connect(cl->ssl), 1);
    }
}

static void cl_close(struct client *cl)
{
    if (cl->ssl)
        SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
    close(cl->fd);
}

static void cl_write(struct client *cl, const void *data, size_t len)
{
    if (cl->ssl) {
        assert_int_equal(SSL_write(cl->ssl, data, (int)len), (int)len);
        return;
    }
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(cl->fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void cl_puts(struct client *cl, const char *s)
{
    cl_write(cl, s, strlen(s));
}

/* Reads up to len bytes; 0 on end of stream. */
static ssize_t cl_read_some(struct client *cl, void *buf, size_t len)
{
    if (cl->ssl) {
        int n = SSL_read(cl->ssl, buf, (int)len);
        return n > 0 ? n : 0;
    }
    ssize_t n = recv(cl->fd, buf, len, 0);
    return n > 0 ? n : 0;
}

static bool cl_read_exact(struct client *cl, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = cl_read_some(cl, p, len);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool cl_at_eof(struct client *cl)
{
    uint8_t b;
    return cl_read_some(cl, &b, 1) == 0;
}

/* Reads one HTTP response; returns its status, head in head, body in body. */
static int cl_read_response(struct client *cl, char *head, size_t head_cap, char *body,
                            size_t body_cap)
{
    size_t n = 0;
    while (n + 1 < head_cap) {
        if (!cl_read_exact(cl, head + n, 1))
            return -1;
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    int status = (int)strtol(head + 9, NULL, 10);
    const char *cl_hdr = strstr(head, "Content-Length: ");
    size_t blen = cl_hdr ? (size_t)strtoul(cl_hdr + 16, NULL, 10) : 0;
    if (body) {
        if (blen >= body_cap || !cl_read_exact(cl, body, blen))
            return -1;
        body[blen] = '\0';
    }
    return status;
}

/* Sends one masked frame. */
static void cl_frame(struct client *cl, bool fin, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
    memcpy(hdr + h, mask, 4);
    h += 4;
    uint8_t *buf = xmalloc(h + len);
    memcpy(buf, hdr, h);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        buf[h + i] = p[i] ^ mask[i % 4];
    cl_write(cl, buf, h + len);
    free(buf);
}

/* Reads one (unmasked) server frame; returns its opcode or -1. */
static int cl_read_frame(struct client *cl, uint8_t *payload, size_t cap, size_t *len)
{
    uint8_t b[8];
    if (!cl_read_exact(cl, b, 2))
        return -1;
    int opcode = b[0] & 0x0f;
    if (b[1] & 0x80)
        return -1; /* servers never mask */
    uint64_t plen = b[1] & 0x7f;
    if (plen == 126) {
        if (!cl_read_exact(cl, b, 2))
            return -1;
        plen = ((uint64_t)b[0] << 8) | b[1];
    } else if (plen == 127) {
        if (!cl_read_exact(cl, b, 8))
            return -1;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | b[i];
    }
    if (plen > cap || !cl_read_exact(cl, payload, (size_t)plen))
        return -1;
    *len = (size_t)plen;
    return opcode;
}

/* Reads frames until a close; returns its status code or -1. */
static int cl_read_close(struct client *cl)
{
    uint8_t buf[4096];
    size_t len;
    for (;;) {
        int op = cl_read_frame(cl, buf, sizeof(buf), &len);
        if (op < 0)
            return -1;
        if (op == WSLAY_CONNECTION_CLOSE)
            return len >= 2 ? (buf[0] << 8) | buf[1] : 0;
    }
}

static void cl_upgrade(struct client *cl)
{
    cl_puts(cl, UPGRADE_REQ(GOOD_KEY, V13));
    char head[1024];
    assert_int_equal(cl_read_response(cl, head, sizeof(head), NULL, 0), 101);
    assert_non_null(strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
}

/* --- TLS credentials -------------------------------------------------- */

static SSL_CTX *make_server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    net_tls_ctx_prepare(ctx);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/* --- end-to-end ------------------------------------------------------- */

static void ws_session(bool tls)
{
    SSL_CTX *ctx = tls ? make_server_ctx() : NULL;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, ctx, &l);
    SSL_CTX_free(ctx); /* the net_loop holds its own reference */

    struct client cl;
    cl_connect(&cl, s.port, tls);

    /* Plain HTTP first, pipelined, on the same keep-alive connection. */
    cl_puts(&cl, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /healthz HTTP/1.1\r\n\r\n"
                 "GET /nowhere HTTP/1.1\r\n\r\n");
    char head[1024], body[256];
    assert_int_equal(cl_read_response(&cl, head, sizeof(head), body, sizeof(body)), 200);
    assert_string_equal(body, "ok\n");
    assert_non_null(strstr(head, "Content-Length: 3\r\n"));
    assert_int_equal(cl_read_response(&cl, head, sizeof(head), NULL, 0), 200);
    assert_non_null(strstr(head, "Content-Length: 3\r\n"));
    assert_int_equal(cl_read_response(&cl, head, sizeof(head), body, sizeof(body)), 404);

    /* Then the upgrade on the same connection. */
    cl_upgrade(&cl);
    uint8_t buf[2048];
    size_t len;
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "hello", 5);
    assert_int_equal(cl_read_frame(&cl, buf, sizeof(buf), &len), WSLAY_BINARY_FRAME);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);

    /* Fragmented, with a ping in the middle: pong first, then the echo. */
    cl_frame(&cl, false, WSLAY_BINARY_FRAME, "frag", 4);
    cl_frame(&cl, true, WSLAY_PING, "p1", 2);
    cl_frame(&cl, false, WSLAY_CONTINUATION_FRAME, "men", 3);
    cl_frame(&cl, true, WSLAY_CONTINUATION_FRAME, "ted", 3);
    assert_int_equal(cl_read_frame(&cl, buf, sizeof(buf), &len), WSLAY_PONG);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "p1", 2);
    assert_int_equal(cl_read_frame(&cl, buf, sizeof(buf), &len), WSLAY_BINARY_FRAME);
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "fragmented", 10);

    /* A message of exactly max_frame passes. */
    uint8_t big[1024];
    memset(big, 'x', sizeof(big));
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, big, sizeof(big));
    assert_int_equal(cl_read_frame(&cl, buf, sizeof(buf), &len), WSLAY_BINARY_FRAME);
    assert_int_equal(len, sizeof(big));

    /* The client closes; the server answers and hangs up. */
    uint8_t code[2] = {0x03, 0xe8};
    cl_frame(&cl, true, WSLAY_CONNECTION_CLOSE, code, 2);
    assert_int_equal(cl_read_close(&cl), 1000);
    assert_true(cl_at_eof(&cl));
    cl_close(&cl);

    srv_stop(&s);
    assert_int_equal(atomic_load(&s.opens), 1);
    assert_int_equal(atomic_load(&s.closes), 1);
    assert_int_equal(atomic_load(&s.messages), 3);
    assert_int_equal(s.stats.accepted, 1);
    assert_int_equal(s.stats.http_requests, 3);
    assert_int_equal(s.stats.handshake_failures, 0);
    assert_int_equal(s.stats_at_close.open_ws, 0);
    assert_int_equal(s.stats_at_close.open_conns, 0);
    /* TLS 1.3 with OpenSSL's default suites: off OpenSSL after the handshake. */
    assert_int_equal(s.stats.tls_handshakes, tls ? 1 : 0);
    assert_int_equal(s.stats.tls_compact, tls ? 1 : 0);
}

static void test_e2e_plaintext_http_and_websocket(void **state)
{
    (void)state;
    ws_session(false);
}

static void test_e2e_tls_http_and_websocket(void **state)
{
    (void)state;
    ws_session(true);
}

/* Opens a WebSocket, sends one frame, and returns the close code received. */
static int close_code_after(struct server *s, bool fin, uint8_t opcode, const void *p, size_t len)
{
    struct client cl;
    cl_connect(&cl, s->port, false);
    cl_upgrade(&cl);
    cl_frame(&cl, fin, opcode, p, len);
    int code = cl_read_close(&cl);
    assert_true(cl_at_eof(&cl));
    cl_close(&cl);
    return code;
}

static void test_e2e_oversize_message_closes_1009(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, NULL, &l);
    uint8_t big[1025] = {0};
    assert_int_equal(close_code_after(&s, true, WSLAY_BINARY_FRAME, big, sizeof(big)), 1009);
    /* Fragments count together. */
    struct client cl;
    cl_connect(&cl, s.port, false);
    cl_upgrade(&cl);
    cl_frame(&cl, false, WSLAY_BINARY_FRAME, big, 600);
    cl_frame(&cl, true, WSLAY_CONTINUATION_FRAME, big, 600);
    assert_int_equal(cl_read_close(&cl), 1009);
    cl_close(&cl);
    srv_stop(&s);
    assert_int_equal(s.stats.oversize_frames, 2);
    assert_int_equal(atomic_load(&s.messages), 0);
    assert_int_equal(atomic_load(&s.closes), 2);
}

static void test_e2e_text_message_closes_1003(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, NULL, &l);
    assert_int_equal(close_code_after(&s, true, WSLAY_TEXT_FRAME, "hi", 2), 1003);
    srv_stop(&s);
    assert_int_equal(atomic_load(&s.messages), 0);
}

static void test_e2e_close_from_callback(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, NULL, &l);
    assert_int_equal(close_code_after(&s, true, WSLAY_BINARY_FRAME, "close", 5), 4000);
    srv_stop(&s);
    assert_int_equal(atomic_load(&s.closes), 1);
}

static void test_e2e_full_send_queue_closes_1008(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, NULL, &l);
    assert_int_equal(close_code_after(&s, true, WSLAY_BINARY_FRAME, "flood", 5), 1008);
    srv_stop(&s);
    assert_int_equal(s.send_rv, PARLEY_ECLOSED);
    assert_int_equal(s.stats.send_queue_drops, 1);
}

static void test_e2e_bad_upgrades_are_refused(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, NULL, &l);
    char head[1024];
    struct client cl;
    cl_connect(&cl, s.port, false);
    cl_puts(&cl, UPGRADE_REQ(GOOD_KEY, "Sec-WebSocket-Version: 12\r\n"));
    assert_int_equal(cl_read_response(&cl, head, sizeof(head), NULL, 0), 426);
    assert_non_null(strstr(head, "Sec-WebSocket-Version: 13\r\n"));
    cl_close(&cl);

    cl_connect(&cl, s.port, false);
    cl_puts(&cl, UPGRADE_REQ("", V13));
    assert_int_equal(cl_read_response(&cl, head, sizeof(head), NULL, 0), 400);
    cl_close(&cl);

    char big[6000];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: %05000d\r\n\r\n", 0);
    cl_connect(&cl, s.port, false);
    cl_write(&cl, big, (size_t)n);
    assert_int_equal(cl_read_response(&cl, head, sizeof(head), NULL, 0), 431);
    cl_close(&cl);
    srv_stop(&s);
    assert_int_equal(s.stats.handshake_failures, 3);
    assert_int_equal(atomic_load(&s.opens), 0);
}

static void test_e2e_silent_client_times_out(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    l.handshake_ms = 100;
    struct server s;
    srv_start(&s, NULL, &l);
    struct client cl;
    cl_connect(&cl, s.port, false);
    cl_puts(&cl, "GET /v1/ws HTTP/1.1\r\n");
    assert_true(cl_at_eof(&cl));
    cl_close(&cl);
    srv_stop(&s);
    assert_int_equal(s.stats.handshake_failures, 1);
}

static void test_e2e_idle_connection_gets_ping(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    l.idle_ping_ms = 100;
    struct server s;
    srv_start(&s, NULL, &l);
    struct client cl;
    cl_connect(&cl, s.port, false);
    cl_upgrade(&cl);
    uint8_t buf[256];
    size_t len;
    assert_int_equal(cl_read_frame(&cl, buf, sizeof(buf), &len), WSLAY_PING);
    cl_frame(&cl, true, WSLAY_PONG, buf, len);
    cl_close(&cl);
    srv_stop(&s);
}

static void test_e2e_stop_closes_with_1001(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct server s;
    srv_start(&s, NULL, &l);
    struct client cl;
    cl_connect(&cl, s.port, false);
    cl_upgrade(&cl);
    /* Make sure the server has opened it before stopping. */
    uint8_t buf[16];
    size_t len;
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "x", 1);
    assert_int_equal(cl_read_frame(&cl, buf, sizeof(buf), &len), WSLAY_BINARY_FRAME);
    uv_async_send(&s.stop);
    assert_int_equal(cl_read_close(&cl), 1001);
    assert_true(cl_at_eof(&cl));
    cl_close(&cl);
    srv_stop(&s);
    assert_int_equal(atomic_load(&s.closes), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_good_upgrade_is_accepted),
        cmocka_unit_test(test_http_upgrade_split_byte_by_byte),
        cmocka_unit_test(test_http_missing_key_is_400),
        cmocka_unit_test(test_http_wrong_version_is_426),
        cmocka_unit_test(test_http_header_too_large_is_431),
        cmocka_unit_test(test_http_plain_get_goes_to_core),
        cmocka_unit_test(test_http_pipelined_requests_are_split),
        cmocka_unit_test(test_http_large_body_is_413),
        cmocka_unit_test(test_http_garbage_is_400),
        cmocka_unit_test(test_ws_accept_key_matches_rfc6455_example),
        cmocka_unit_test(test_e2e_plaintext_http_and_websocket),
        cmocka_unit_test(test_e2e_tls_http_and_websocket),
        cmocka_unit_test(test_e2e_oversize_message_closes_1009),
        cmocka_unit_test(test_e2e_text_message_closes_1003),
        cmocka_unit_test(test_e2e_close_from_callback),
        cmocka_unit_test(test_e2e_full_send_queue_closes_1008),
        cmocka_unit_test(test_e2e_bad_upgrades_are_refused),
        cmocka_unit_test(test_e2e_silent_client_times_out),
        cmocka_unit_test(test_e2e_idle_connection_gets_ping),
        cmocka_unit_test(test_e2e_stop_closes_with_1001),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
