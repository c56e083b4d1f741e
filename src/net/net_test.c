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

/* What a test server does beyond echoing; fixed before its loop starts. */
struct srv_opts {
    bool no_listener;          /* fd -1: serves only connections moved to it */
    struct net_inbox *inbox;   /* opened on the loop's thread right after the start */
    struct net_inbox *move_to; /* where "move" sends the connection */
    int move_replies;          /* numbered replies "move" queues after "moving" */
    int bulk_replies;          /* numbered replies "bulk" queues */
    size_t reply_len;          /* the size of each numbered reply */
    int sndbuf;                /* the listener's SO_SNDBUF, which accepted sockets
                                  inherit (0: the system's, which grows) */
};

struct server {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    uv_thread_t self;       /* the loop's thread, as it sees itself */
    struct net_loop *nl;
    struct net_limits limits;
    struct srv_opts opts;
    SSL_CTX *tls;
    int fd;
    int port;
    int start_rv;
    uv_sem_t started;
    uv_async_t hold;        /* srv_hold: the loop's thread waits in its next check phase */
    uv_check_t hold_check;
    uv_sem_t held, release;
    bool stopping;          /* net_loop_stop was called (loop's thread only) */
    atomic_int opens, closes, messages, done;
    atomic_int moved;       /* on_moved calls on this loop */
    atomic_int relocated;   /* of those, with the connection at a new address */
    _Atomic uintptr_t moving_at; /* the address of the connection last sent away */
    atomic_int errors;      /* callbacks on the wrong loop or thread, failed sends */
    atomic_int move_rv;     /* net_conn_move's result for the last "move" */
    atomic_int move_again_rv; /* and for a second call right after it */
    size_t last_len;
    struct net_stats stats; /* taken when the loop stops */
    struct net_stats stats_at_close; /* taken by the last on_close */
    int send_rv;            /* net_conn_send's result for the last "flood" */
};

/* Whether c's data is the server of the loop c is on, and this is that
 * loop's thread: a connection is served by the loop that owns it. */
static bool srv_owns(struct net_conn *c)
{
    struct server *s = net_conn_data(c);
    uv_thread_t me = uv_thread_self();
    return s == net_loop_data(net_conn_loop(c)) && uv_thread_equal(&me, &s->self);
}

/* Numbered reply i, len bytes (at least 5): 'R', i in 4 bytes, then a
 * pattern that depends on i, so a reply out of place or cut short shows. */
static void reply_fill(uint8_t *p, size_t len, uint32_t i)
{
    p[0] = 'R';
    for (int k = 0; k < 4; k++)
        p[1 + k] = (uint8_t)(i >> (24 - 8 * k));
    for (size_t k = 5; k < len; k++)
        p[k] = (uint8_t)(i * 7 + k);
}

static void srv_send(struct net_conn *c, const void *data, size_t len)
{
    if (net_conn_send(c, data, len) != 0)
        atomic_fetch_add(&((struct server *)net_conn_data(c))->errors, 1);
}

static void srv_send_replies(struct net_conn *c, int n, size_t len)
{
    uint8_t *p = xmalloc(len);
    for (int i = 0; i < n; i++) {
        reply_fill(p, len, (uint32_t)i);
        srv_send(c, p, len);
    }
    free(p);
}

static void srv_stop_loop(struct server *s);
static void srv_close_handles(struct server *s);

static void srv_on_open(struct net_conn *c)
{
    struct server *s = net_loop_data(net_conn_loop(c));
    net_conn_set_data(c, s);
    atomic_fetch_add(&s->opens, 1);
}

/* Echoes each message; "flood" asks for more than the send queue holds.
 * "move" answers "moving" (and opts.move_replies numbered replies), then
 * moves the connection to opts.move_to; "move-stop" moves it, then stops
 * this loop and closes the test's handles at once, as srv_on_stop does;
 * "bulk" answers opts.bulk_replies numbered replies. */
static void srv_on_message(struct net_conn *c, const uint8_t *data, size_t len)
{
    struct server *s = net_conn_data(c);
    if (!srv_owns(c))
        atomic_fetch_add(&s->errors, 1);
    atomic_fetch_add(&s->messages, 1);
    s->last_len = len;
    bool stop = len == 9 && memcmp(data, "move-stop", 9) == 0;
    if ((len == 4 && memcmp(data, "move", 4) == 0) || stop) {
        srv_send(c, "moving", 6);
        srv_send_replies(c, s->opts.move_replies, s->opts.reply_len);
        atomic_store(&s->moving_at, (uintptr_t)c);
        atomic_store(&s->move_rv, net_conn_move(c, s->opts.move_to));
        /* Already moving: refused, and c stays on its way. */
        atomic_store(&s->move_again_rv, net_conn_move(c, s->opts.move_to));
        if (stop) {
            srv_stop_loop(s);
            srv_close_handles(s);
        }
        return;
    }
    if (len == 4 && memcmp(data, "bulk", 4) == 0) {
        srv_send_replies(c, s->opts.bulk_replies, s->opts.reply_len);
        return;
    }
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
    if (!srv_owns(c))
        atomic_fetch_add(&s->errors, 1);
    atomic_fetch_add(&s->closes, 1);
    net_loop_stats(net_conn_loop(c), &s->stats_at_close);
}

/* c arrived on this loop (or came back): from now on it is this server's. */
static void srv_on_moved(struct net_conn *c)
{
    struct server *s = net_loop_data(net_conn_loop(c));
    struct server *from = net_conn_data(c);
    if ((uintptr_t)c != atomic_load(&from->moving_at))
        atomic_fetch_add(&s->relocated, 1);
    net_conn_set_data(c, s);
    if (!srv_owns(c))
        atomic_fetch_add(&s->errors, 1);
    atomic_fetch_add(&s->moved, 1);
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
    .on_moved = srv_on_moved,
};

static void srv_on_done(void *data)
{
    struct server *s = data;
    atomic_store(&s->done, 1);
}

/* Takes the stats and stops the net_loop, once (loop's thread). */
static void srv_stop_loop(struct server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    net_loop_stats(s->nl, &s->stats);
    net_loop_stop(s->nl, srv_on_done, s);
}

/* Closes the test's own handles: from then on only the net_loop's keep
 * the loop running, until it has finished (loop's thread). */
static void srv_close_handles(struct server *s)
{
    if (uv_is_closing((uv_handle_t *)&s->stop))
        return;
    uv_close((uv_handle_t *)&s->stop, NULL);
    uv_close((uv_handle_t *)&s->hold, NULL);
    uv_close((uv_handle_t *)&s->hold_check, NULL);
}

static void srv_on_stop(uv_async_t *a)
{
    srv_stop_loop(a->data);
    srv_close_handles(a->data);
}

/* After this turn's I/O: tell srv_hold, and wait for srv_release. The
 * asyncs sent meanwhile then run together in the next turn, in the order
 * they were made (stop first, the inbox's last). */
static void srv_on_hold_check(uv_check_t *h)
{
    struct server *s = h->data;
    uv_check_stop(h);
    uv_sem_post(&s->held);
    uv_sem_wait(&s->release);
}

static void srv_on_hold(uv_async_t *a)
{
    struct server *s = a->data;
    uv_check_start(&s->hold_check, srv_on_hold_check);
}

/* Makes the loop's thread wait (srv_release ends it); returns once it does. */
static void srv_hold(struct server *s)
{
    uv_async_send(&s->hold);
    uv_sem_wait(&s->held);
}

static void srv_release(struct server *s)
{
    uv_sem_post(&s->release);
}

static void srv_thread(void *arg)
{
    struct server *s = arg;
    s->self = uv_thread_self();
    s->start_rv = net_loop_start(&s->loop, s->fd, s->tls, &s->limits, &srv_cbs, s, &s->nl);
    if (s->start_rv == 0 && s->opts.inbox)
        s->start_rv = net_loop_open_inbox(s->nl, s->opts.inbox);
    uv_sem_post(&s->started);
    if (s->start_rv == 0)
        uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void srv_start_with(struct server *s, SSL_CTX *tls, const struct net_limits *limits,
                           const struct srv_opts *opts)
{
    memset(s, 0, sizeof(*s));
    s->tls = tls;
    s->limits = *limits;
    s->opts = *opts;
    assert_int_equal(uv_loop_init(&s->loop), 0);
    assert_int_equal(uv_async_init(&s->loop, &s->stop, srv_on_stop), 0);
    s->stop.data = s;
    /* Neither keeps the loop running. */
    assert_int_equal(uv_async_init(&s->loop, &s->hold, srv_on_hold), 0);
    s->hold.data = s;
    uv_unref((uv_handle_t *)&s->hold);
    assert_int_equal(uv_check_init(&s->loop, &s->hold_check), 0);
    s->hold_check.data = s;
    uv_unref((uv_handle_t *)&s->hold_check);
    assert_int_equal(uv_sem_init(&s->held, 0), 0);
    assert_int_equal(uv_sem_init(&s->release, 0), 0);
    s->fd = -1;
    if (!opts->no_listener) {
        s->fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(s->fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (opts->sndbuf > 0) {
            int rv = setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &opts->sndbuf, sizeof(opts->sndbuf));
            assert_int_equal(rv, 0);
        }
        assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(s->fd, 16), 0);
        socklen_t sl = sizeof(sa);
        assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
        s->port = ntohs(sa.sin_port);
    }
    assert_int_equal(uv_sem_init(&s->started, 0), 0);
    assert_int_equal(uv_thread_create(&s->thread, srv_thread, s), 0);
    uv_sem_wait(&s->started);
    assert_int_equal(s->start_rv, 0);
}

static void srv_start(struct server *s, SSL_CTX *tls, const struct net_limits *limits)
{
    struct srv_opts opts = {0};
    srv_start_with(s, tls, limits, &opts);
}

/* Stops the loop, waits for it, and checks that everything was released. */
static void srv_stop(struct server *s)
{
    uv_async_send(&s->stop);
    assert_int_equal(uv_thread_join(&s->thread), 0);
    assert_int_equal(atomic_load(&s->done), 1);
    assert_int_equal(uv_loop_close(&s->loop), 0);
    uv_sem_destroy(&s->started);
    uv_sem_destroy(&s->held);
    uv_sem_destroy(&s->release);
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

/* rcvbuf: the socket's receive buffer in bytes (0: the system's default),
 * set before connecting so that the window offered stays that small. */
static void cl_connect_rcvbuf(struct client *cl, int port, bool tls, int rcvbuf)
{
    memset(cl, 0, sizeof(*cl));
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(cl->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(cl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
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

static void cl_connect(struct client *cl, int port, bool tls)
{
    cl_connect_rcvbuf(cl, port, tls, 0);
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

/* Appends one masked frame to out (at least len + 14 bytes free); returns
 * its size. */
static size_t frame_put(uint8_t *out, bool fin, uint8_t opcode, const void *payload, size_t len)
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
    memcpy(out, hdr, h);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        out[h + i] = p[i] ^ mask[i % 4];
    return h + len;
}

/* Sends one masked frame. */
static void cl_frame(struct client *cl, bool fin, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t *buf = xmalloc(len + 14);
    size_t n = frame_put(buf, fin, opcode, payload, len);
    cl_write(cl, buf, n);
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

/* Reads one binary message and checks it is exactly msg. */
static void cl_expect(struct client *cl, const char *msg)
{
    uint8_t buf[256];
    size_t len = 0;
    assert_int_equal(cl_read_frame(cl, buf, sizeof(buf), &len), WSLAY_BINARY_FRAME);
    assert_int_equal(len, strlen(msg));
    assert_memory_equal(buf, msg, len);
}

/* Sends msg as one binary message and reads its echo. */
static void cl_echo(struct client *cl, const char *msg)
{
    cl_frame(cl, true, WSLAY_BINARY_FRAME, msg, strlen(msg));
    cl_expect(cl, msg);
}

/* Reads numbered replies first..first+n-1 (reply_fill) of len bytes each. */
static void cl_expect_replies(struct client *cl, int first, int n, size_t len)
{
    uint8_t *want = xmalloc(len), *got = xmalloc(len);
    for (int i = first; i < first + n; i++) {
        size_t got_len = 0;
        reply_fill(want, len, (uint32_t)i);
        assert_int_equal(cl_read_frame(cl, got, len, &got_len), WSLAY_BINARY_FRAME);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, want, len);
    }
    free(want);
    free(got);
}

/* The client's side of a normal close: 1000, answered, then end of stream. */
static void cl_close_1000(struct client *cl)
{
    uint8_t code[2] = {0x03, 0xe8};
    cl_frame(cl, true, WSLAY_CONNECTION_CLOSE, code, 2);
    assert_int_equal(cl_read_close(cl), 1000);
    assert_true(cl_at_eof(cl));
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

/* --- moving connections between loops --------------------------------- */

/* Two loops on two threads: a listens and sends a connection on "move" to
 * b, which has no listener and takes connections up through its inbox.
 * On the heap: a failed assertion leaves the test early, and its loops'
 * threads must not run on a stack frame that the next test reuses. */
struct pair {
    struct net_inbox inbox;   /* b's */
    struct net_inbox inbox_a; /* a's, when a opens one too */
    struct server a, b;
};

static struct pair *pair_new(void)
{
    struct pair *p = xcalloc(1, sizeof(*p));
    net_inbox_init(&p->inbox);
    net_inbox_init(&p->inbox_a);
    return p;
}

/* Once both loops have stopped. */
static void pair_free(struct pair *p)
{
    net_inbox_deinit(&p->inbox);
    net_inbox_deinit(&p->inbox_a);
    free(p);
}

/* b starts without TLS: a moved connection carries its own. */
static struct pair *pair_start(SSL_CTX *tls, const struct net_limits *l,
                               const struct srv_opts *a_opts)
{
    struct pair *p = pair_new();
    struct srv_opts bo = {.no_listener = true, .inbox = &p->inbox};
    srv_start_with(&p->b, NULL, l, &bo);
    struct srv_opts ao = {0};
    if (a_opts)
        ao = *a_opts;
    ao.move_to = &p->inbox;
    srv_start_with(&p->a, tls, l, &ao);
    return p;
}

/* Waits (at most 5 s) until a loop has handed a connection to in, not
 * yet taken up: in's list, under its lock, as net_conn_move leaves it. */
static bool inbox_wait_posted(struct net_inbox *in)
{
    for (int i = 0; i < 5000; i++) {
        uv_mutex_lock(&in->lock);
        bool posted = in->head != NULL;
        uv_mutex_unlock(&in->lock);
        if (posted)
            return true;
        uv_sleep(1);
    }
    return false;
}

static void move_session(bool tls)
{
    SSL_CTX *ctx = tls ? make_server_ctx() : NULL;
    struct net_limits l = test_limits();
    struct pair *p = pair_start(ctx, &l, NULL);
    SSL_CTX_free(ctx);

    struct client cl;
    cl_connect(&cl, p->a.port, tls);
    cl_upgrade(&cl);
    cl_echo(&cl, "one");
    assert_int_equal(atomic_load(&p->a.messages), 1);

    /* The reply queued before the move comes first, then b serves. */
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
    cl_expect(&cl, "moving");
    assert_int_equal(atomic_load(&p->a.move_rv), 0);
    assert_int_equal(atomic_load(&p->a.move_again_rv), PARLEY_EBUSY);
    cl_echo(&cl, "two");
    cl_echo(&cl, "three");
    assert_int_equal(atomic_load(&p->a.messages), 2);
    assert_int_equal(atomic_load(&p->b.messages), 2);
    assert_int_equal(atomic_load(&p->a.moved), 0);
    assert_int_equal(atomic_load(&p->b.moved), 1);
    /* Quiet when it left: remade by b's thread (its WebSocket state was
     * hibernated), so a's heap keeps nothing of it. */
    assert_int_equal(atomic_load(&p->b.relocated), 1);

    /* While it lives on b, it is counted there and no longer on a. */
    struct net_stats sa, sb;
    net_loop_stats(p->a.nl, &sa);
    net_loop_stats(p->b.nl, &sb);
    assert_int_equal(sa.accepted, 1);
    assert_int_equal(sa.open_ws, 0);
    assert_int_equal(sa.open_conns, 0);
    assert_int_equal(sa.moved_in, 0);
    assert_int_equal(sb.accepted, 0);
    assert_int_equal(sb.open_ws, 1);
    assert_int_equal(sb.open_conns, 1);
    assert_int_equal(sb.moved_in, 1);

    cl_close_1000(&cl);
    cl_close(&cl);
    srv_stop(&p->a);
    srv_stop(&p->b);

    assert_int_equal(atomic_load(&p->a.opens), 1);
    assert_int_equal(atomic_load(&p->b.opens), 0);
    assert_int_equal(atomic_load(&p->a.closes), 0);
    assert_int_equal(atomic_load(&p->b.closes), 1);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    assert_int_equal(p->a.stats.moved_in, 0);
    assert_int_equal(p->b.stats.moved_in, 1);
    /* c left a long before a stopped; on b, the stats taken at stop may
     * precede the close callback, so the last on_close's are the ones. */
    assert_int_equal(p->a.stats.open_ws, 0);
    assert_int_equal(p->a.stats.open_conns, 0);
    assert_int_equal(p->b.stats_at_close.open_ws, 0);
    assert_int_equal(p->b.stats_at_close.open_conns, 0);
    /* The handshake was a's, on the TLS 1.3 record layer, which moved. */
    assert_int_equal(p->a.stats.tls_handshakes, tls ? 1 : 0);
    assert_int_equal(p->a.stats.tls_compact, tls ? 1 : 0);
    assert_int_equal(p->b.stats.tls_handshakes, 0);
    pair_free(p);
}

static void test_move_plaintext(void **state)
{
    (void)state;
    move_session(false);
}

static void test_move_tls(void **state)
{
    (void)state;
    move_session(true);
}

/* "move" and what follows it in one write, the last frame cut in two: the
 * rest of that write is a's to answer (it was read already), the cut
 * frame is finished on b from the WebSocket state that moved with it. */
static void move_pipelined(bool tls)
{
    SSL_CTX *ctx = tls ? make_server_ctx() : NULL;
    struct net_limits l = test_limits();
    struct pair *p = pair_start(ctx, &l, NULL);
    SSL_CTX_free(ctx);

    struct client cl;
    cl_connect(&cl, p->a.port, tls);
    cl_upgrade(&cl);
    cl_echo(&cl, "first");

    uint8_t buf[512];
    size_t n = frame_put(buf, true, WSLAY_BINARY_FRAME, "move", 4);
    char msg[8];
    for (int i = 0; i < 8; i++) {
        snprintf(msg, sizeof(msg), "p%d", i);
        n += frame_put(buf + n, true, WSLAY_BINARY_FRAME, msg, strlen(msg));
    }
    uint8_t last[16];
    size_t last_n = frame_put(last, true, WSLAY_BINARY_FRAME, "p8", 2);
    memcpy(buf + n, last, 3);
    n += 3;
    cl_write(&cl, buf, n);

    cl_expect(&cl, "moving");
    for (int i = 0; i < 8; i++) {
        snprintf(msg, sizeof(msg), "p%d", i);
        cl_expect(&cl, msg);
    }
    /* Every reply so far was read: the connection is on b by now. */
    cl_write(&cl, last + 3, last_n - 3);
    cl_expect(&cl, "p8");
    cl_echo(&cl, "last");

    cl_close_1000(&cl);
    cl_close(&cl);
    srv_stop(&p->a);
    srv_stop(&p->b);

    /* "first", "move", p0..p8, "last": each answered once, in order. */
    assert_int_equal(atomic_load(&p->a.messages) + atomic_load(&p->b.messages), 12);
    assert_true(atomic_load(&p->a.messages) >= 2);
    assert_true(atomic_load(&p->b.messages) >= 2);
    assert_int_equal(atomic_load(&p->a.move_rv), 0);
    assert_int_equal(atomic_load(&p->a.moved), 0);
    assert_int_equal(atomic_load(&p->b.moved), 1);
    /* Mid-frame when it left: wslay's state, which points into the
     * connection, went along, so the connection kept its address. */
    assert_int_equal(atomic_load(&p->b.relocated), 0);
    assert_int_equal(atomic_load(&p->b.closes), 1);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    assert_int_equal(p->b.stats.moved_in, 1);
    pair_free(p);
}

static void test_move_pipelined_plaintext(void **state)
{
    (void)state;
    move_pipelined(false);
}

static void test_move_pipelined_tls(void **state)
{
    (void)state;
    move_pipelined(true);
}

/* Output queued before the move leaves with the connection: first many
 * replies queued in the same callback, then (second client) a move while a
 * large write is still in flight: a's sockets have a small send buffer
 * that does not grow, the client a small window, so most of 1 MB is still
 * a's to write when "move" comes, and the move waits for that write. */
static void test_move_carries_queued_output(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    l.max_send_queue = 4u << 20;
    struct srv_opts ao = {
        .move_replies = 20, .bulk_replies = 2500, .reply_len = 400, .sndbuf = 16384};
    struct pair *p = pair_start(NULL, &l, &ao);

    struct client cl;
    cl_connect(&cl, p->a.port, false);
    cl_upgrade(&cl);
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
    cl_expect(&cl, "moving");
    cl_expect_replies(&cl, 0, 20, 400);
    cl_echo(&cl, "after");
    assert_int_equal(atomic_load(&p->b.messages), 1);

    /* About 1 MB to a client that reads only the first reply before
     * asking to move: a's write is still going on when "move" comes. */
    struct client slow;
    cl_connect_rcvbuf(&slow, p->a.port, false, 4096);
    cl_upgrade(&slow);
    cl_frame(&slow, true, WSLAY_BINARY_FRAME, "bulk", 4);
    cl_expect_replies(&slow, 0, 1, 400);
    cl_frame(&slow, true, WSLAY_BINARY_FRAME, "move", 4);
    cl_expect_replies(&slow, 1, 2499, 400);
    cl_expect(&slow, "moving");
    cl_expect_replies(&slow, 0, 20, 400);
    cl_echo(&slow, "after too");
    assert_int_equal(atomic_load(&p->b.messages), 2);

    cl_close_1000(&cl);
    cl_close(&cl);
    cl_close_1000(&slow);
    cl_close(&slow);
    srv_stop(&p->a);
    srv_stop(&p->b);
    assert_int_equal(atomic_load(&p->a.messages), 3);
    assert_int_equal(atomic_load(&p->b.moved), 2);
    assert_int_equal(atomic_load(&p->b.closes), 2);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    assert_int_equal(p->a.stats.send_queue_drops, 0);
    assert_int_equal(p->b.stats.send_queue_drops, 0);
    assert_int_equal(p->b.stats.moved_in, 2);
    assert_int_equal(p->b.stats_at_close.open_ws, 0);
    assert_int_equal(p->b.stats_at_close.open_conns, 0);
    pair_free(p);
}

/* b stopped: its inbox takes nothing, so a takes the connection back
 * (on_moved on a; not counted in a's moved_in, which counts only
 * connections taken from an inbox) and goes on serving it. */
static void test_move_to_stopped_loop_comes_back(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct pair *p = pair_start(NULL, &l, NULL);
    srv_stop(&p->b);

    struct client cl;
    cl_connect(&cl, p->a.port, false);
    cl_upgrade(&cl);
    cl_echo(&cl, "one");
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
    cl_expect(&cl, "moving");
    cl_echo(&cl, "two");
    assert_int_equal(atomic_load(&p->a.move_rv), 0);
    assert_int_equal(atomic_load(&p->a.move_again_rv), PARLEY_EBUSY);
    assert_int_equal(atomic_load(&p->a.moved), 1);
    struct net_stats sa;
    net_loop_stats(p->a.nl, &sa);
    assert_int_equal(sa.open_ws, 1);
    assert_int_equal(sa.open_conns, 1);
    assert_int_equal(sa.moved_in, 0);

    /* And again: a connection that came back can move (and come back) again. */
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
    cl_expect(&cl, "moving");
    cl_echo(&cl, "three");
    assert_int_equal(atomic_load(&p->a.moved), 2);

    cl_close_1000(&cl);
    cl_close(&cl);
    srv_stop(&p->a);
    assert_int_equal(atomic_load(&p->a.messages), 5);
    assert_int_equal(atomic_load(&p->a.closes), 1);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.messages), 0);
    assert_int_equal(atomic_load(&p->b.moved), 0);
    assert_int_equal(p->a.stats.moved_in, 0);
    assert_int_equal(p->b.stats.moved_in, 0);
    assert_int_equal(p->a.stats_at_close.open_ws, 0);
    assert_int_equal(p->a.stats_at_close.open_conns, 0);
    pair_free(p);
}

/* Stopping a closes only what a owns (1001); a connection moved to b stays
 * up until b stops, and then gets its 1001 from b. */
static void test_move_stop_each_loop(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct pair *p = pair_start(NULL, &l, NULL);

    struct client on_b, on_a;
    cl_connect(&on_b, p->a.port, false);
    cl_upgrade(&on_b);
    cl_frame(&on_b, true, WSLAY_BINARY_FRAME, "move", 4);
    cl_expect(&on_b, "moving");
    cl_echo(&on_b, "on b");
    cl_connect(&on_a, p->a.port, false);
    cl_upgrade(&on_a);
    cl_echo(&on_a, "on a");

    uv_async_send(&p->a.stop);
    assert_int_equal(cl_read_close(&on_a), 1001);
    assert_true(cl_at_eof(&on_a));
    cl_close(&on_a);
    srv_stop(&p->a);
    assert_int_equal(atomic_load(&p->a.closes), 1);
    assert_int_equal(p->a.stats_at_close.open_ws, 0);
    assert_int_equal(p->a.stats_at_close.open_conns, 0);

    cl_echo(&on_b, "still on b");
    uv_async_send(&p->b.stop);
    assert_int_equal(cl_read_close(&on_b), 1001);
    assert_true(cl_at_eof(&on_b));
    cl_close(&on_b);
    srv_stop(&p->b);

    assert_int_equal(atomic_load(&p->a.messages), 2);
    assert_int_equal(atomic_load(&p->b.messages), 2);
    assert_int_equal(atomic_load(&p->b.moved), 1);
    assert_int_equal(atomic_load(&p->b.closes), 1);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    assert_int_equal(p->b.stats.moved_in, 1);
    assert_int_equal(p->b.stats.open_ws, 1); /* taken just before b stopped */
    assert_int_equal(p->b.stats_at_close.open_ws, 0);
    assert_int_equal(p->b.stats_at_close.open_conns, 0);
    pair_free(p);
}

/* a stops in the very callback that moves the connection, and closes the
 * test's own handles as srv_on_stop does: only the net_loop keeps a's loop
 * running now, and it must until the connection has left. Its 1001 is
 * queued before the connection leaves, so b, which takes it up, sends that
 * close and calls on_close; a finishes once it has left. */
static void test_move_while_old_loop_stops(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct pair *p = pair_start(NULL, &l, NULL);

    struct client cl;
    cl_connect(&cl, p->a.port, false);
    cl_upgrade(&cl);
    cl_echo(&cl, "one");
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move-stop", 9);
    assert_int_equal(cl_read_close(&cl), 1001);
    assert_true(cl_at_eof(&cl));
    cl_close(&cl);
    srv_stop(&p->a);
    srv_stop(&p->b);

    assert_int_equal(atomic_load(&p->a.move_rv), 0);
    assert_int_equal(atomic_load(&p->a.move_again_rv), PARLEY_EBUSY);
    assert_int_equal(atomic_load(&p->a.closes) + atomic_load(&p->b.closes), 1);
    assert_int_equal(atomic_load(&p->b.moved), 1);
    assert_int_equal(atomic_load(&p->b.closes), 1);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    assert_int_equal(p->b.stats.moved_in, 1);
    assert_int_equal(p->b.stats_at_close.open_ws, 0);
    assert_int_equal(p->b.stats_at_close.open_conns, 0);
    pair_free(p);
}

/* b stops with a connection handed to it and not yet taken up: b is held
 * while a hands it over, then its stop and its inbox run in one turn, the
 * stop first. b takes the connection up (on_moved) and closes it with 1001
 * (on_close), "moving" first; b finishes although the test's own handles
 * are closed: the net_loop keeps its loop running until then. */
static void test_move_into_stopping_loop(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    struct pair *p = pair_start(NULL, &l, NULL);
    struct client cl;
    cl_connect(&cl, p->a.port, false);
    cl_upgrade(&cl);
    cl_echo(&cl, "one");

    srv_hold(&p->b);
    cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
    bool posted = inbox_wait_posted(&p->inbox);
    uv_async_send(&p->b.stop);
    srv_release(&p->b);
    assert_true(posted);
    cl_expect(&cl, "moving");
    assert_int_equal(cl_read_close(&cl), 1001);
    assert_true(cl_at_eof(&cl));
    cl_close(&cl);
    srv_stop(&p->b);
    srv_stop(&p->a);

    assert_int_equal(atomic_load(&p->b.moved), 1);
    assert_int_equal(atomic_load(&p->b.closes), 1);
    assert_int_equal(atomic_load(&p->a.closes), 0);
    assert_int_equal(atomic_load(&p->a.moved), 0);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    /* Taken up inside net_loop_stop, so after the stats taken at stop. */
    assert_int_equal(p->b.stats_at_close.moved_in, 1);
    assert_int_equal(p->b.stats_at_close.open_ws, 0);
    assert_int_equal(p->b.stats_at_close.open_conns, 0);
    pair_free(p);
}

/* Both loops open an inbox and "move" sends the connection to the other
 * one: back and forth ten times, the TLS and WebSocket state with it. */
static void move_back_and_forth(bool tls)
{
    SSL_CTX *ctx = tls ? make_server_ctx() : NULL;
    struct net_limits l = test_limits();
    struct pair *p = pair_new();
    struct srv_opts bo = {.no_listener = true, .inbox = &p->inbox, .move_to = &p->inbox_a};
    srv_start_with(&p->b, NULL, &l, &bo);
    struct srv_opts ao = {.inbox = &p->inbox_a, .move_to = &p->inbox};
    srv_start_with(&p->a, ctx, &l, &ao);
    SSL_CTX_free(ctx);

    struct client cl;
    cl_connect(&cl, p->a.port, tls);
    cl_upgrade(&cl);
    char msg[16];
    for (int i = 0; i < 10; i++) {
        cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
        cl_expect(&cl, "moving");
        snprintf(msg, sizeof(msg), "n%d", i);
        cl_echo(&cl, msg);
        /* After an odd number of moves it is on b, else on a. */
        assert_int_equal(atomic_load(&p->b.moved), (i + 2) / 2);
        assert_int_equal(atomic_load(&p->a.moved), (i + 1) / 2);
    }
    cl_close_1000(&cl);
    cl_close(&cl);
    srv_stop(&p->a);
    srv_stop(&p->b);

    assert_int_equal(atomic_load(&p->a.messages), 10);
    assert_int_equal(atomic_load(&p->b.messages), 10);
    assert_int_equal(atomic_load(&p->a.closes), 1);
    assert_int_equal(atomic_load(&p->b.closes), 0);
    assert_int_equal(atomic_load(&p->a.errors), 0);
    assert_int_equal(atomic_load(&p->b.errors), 0);
    assert_int_equal(p->a.stats.moved_in, 5);
    assert_int_equal(p->b.stats.moved_in, 5);
    /* It left b long before b stopped; it closed on a. */
    assert_int_equal(p->b.stats.open_ws, 0);
    assert_int_equal(p->b.stats.open_conns, 0);
    assert_int_equal(p->a.stats_at_close.open_ws, 0);
    assert_int_equal(p->a.stats_at_close.open_conns, 0);
    pair_free(p);
}

static void test_move_back_and_forth_plaintext(void **state)
{
    (void)state;
    move_back_and_forth(false);
}

static void test_move_back_and_forth_tls(void **state)
{
    (void)state;
    move_back_and_forth(true);
}

/* A move racing with something else, many times over: b stopping, a
 * stopping, or the client vanishing while the connection is on its way.
 * Whatever wins, the connection is closed exactly once, by the loop that
 * owns it then, and the client (if still there) hears 1001. */
static void test_move_races(void **state)
{
    (void)state;
    struct net_limits l = test_limits();
    for (int i = 0; i < 30; i++) {
        struct pair *p = pair_start(NULL, &l, NULL);
        struct client cl;
        cl_connect(&cl, p->a.port, false);
        cl_upgrade(&cl);
        cl_echo(&cl, "one");
        cl_frame(&cl, true, WSLAY_BINARY_FRAME, "move", 4);
        switch (i % 3) {
        case 0: { /* the client resets the connection at once */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(cl.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            cl_close(&cl);
            srv_stop(&p->b);
            srv_stop(&p->a);
            break;
        }
        case 1: /* b stops while the connection may be on its way there */
            srv_stop(&p->b);
            srv_stop(&p->a);
            assert_int_equal(cl_read_close(&cl), 1001);
            assert_true(cl_at_eof(&cl));
            cl_close(&cl);
            break;
        default: /* a stops while the connection may be leaving */
            srv_stop(&p->a);
            srv_stop(&p->b);
            assert_int_equal(cl_read_close(&cl), 1001);
            assert_true(cl_at_eof(&cl));
            cl_close(&cl);
            break;
        }
        assert_int_equal(atomic_load(&p->a.closes) + atomic_load(&p->b.closes), 1);
        assert_true(atomic_load(&p->a.moved) + atomic_load(&p->b.moved) <= 1);
        /* b closes what it took up, and only that; it may have taken it
         * up inside net_loop_stop, after the stats taken at stop. */
        assert_int_equal(atomic_load(&p->b.closes), atomic_load(&p->b.moved));
        if (atomic_load(&p->b.closes))
            assert_int_equal(p->b.stats_at_close.moved_in, 1);
        else
            assert_int_equal(p->b.stats.moved_in, 0);
        assert_int_equal(p->a.stats.moved_in, 0);
        assert_int_equal(atomic_load(&p->a.errors), 0);
        assert_int_equal(atomic_load(&p->b.errors), 0);
        pair_free(p);
    }
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
        cmocka_unit_test(test_move_plaintext),
        cmocka_unit_test(test_move_tls),
        cmocka_unit_test(test_move_pipelined_plaintext),
        cmocka_unit_test(test_move_pipelined_tls),
        cmocka_unit_test(test_move_carries_queued_output),
        cmocka_unit_test(test_move_to_stopped_loop_comes_back),
        cmocka_unit_test(test_move_stop_each_loop),
        cmocka_unit_test(test_move_while_old_loop_stops),
        cmocka_unit_test(test_move_into_stopping_loop),
        cmocka_unit_test(test_move_back_and_forth_plaintext),
        cmocka_unit_test(test_move_back_and_forth_tls),
        cmocka_unit_test(test_move_races),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
