/* SPDX-License-Identifier: MIT */
/* Client WebSocket over a non-blocking socket driven by poll(): the socket
 * is non-blocking so that wslay's event API can drain it; every public call
 * turns that back into "blocking with a deadline". */
#include "wsconn.h"
#include "common/err.h"
#include "known.h"
#include "proto/frame.h"
#include "url.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "common/banned.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HTTP_RESPONSE_MAX 8192 /* the upgrade response's status line and headers */
#define CLOSE_LINGER_MS 200    /* how long wsconn_free tries to deliver its close frame */

struct wsmsg {
    struct wsmsg *next;
    size_t len;
    uint8_t data[];
};

struct wsconn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    wslay_event_context_ptr ws;
    struct wsconn_options opt;
    struct url url;
    short want;         /* poll events the last would-block I/O needs */
    uint8_t *pre;       /* bytes read past the upgrade response, for wslay */
    size_t pre_len;
    size_t pre_off;
    struct wsmsg *head; /* received messages, oldest first */
    struct wsmsg **tail;
    size_t queued;
    int dead;           /* 0, or why no more I/O is possible (PARLEY_ECLOSED, ...) */
    int io_err;         /* the PARLEY_E* of the last failed socket call */
};

PL_PRINTF(3, 4) static void wlog(const struct wsconn *c, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!c->opt.log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->opt.log(c->opt.log_arg, level, line);
}

/* SIGPIPE from writes to a closed TLS socket (OpenSSL uses write(2)) is
 * blocked for the calling thread and any pending one consumed, as libpq
 * does, so that neither the application nor its handler sees it. */
struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    g->was_pending = false;
    if (sigismember(&g->old, SIGPIPE) && sigpending(&pending) == 0)
        g->was_pending = sigismember(&pending, SIGPIPE);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
    sigset_t set, pending;
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_in(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Waits for events on c->fd until deadline (-1: none). */
static int wait_fd(struct wsconn *c, short events, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            ms = left <= 0 ? 0 : (int)PL_MIN(left, 3600000);
        }
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return 0;
        if (r == 0)
            return PARLEY_ETIMEOUT;
        if (errno != EINTR)
            return PARLEY_EIO;
    }
}

static int errno_to_err(int e)
{
    return (e == EPIPE || e == ECONNRESET || e == ENOTCONN) ? PARLEY_ECLOSED : PARLEY_EIO;
}

/* Reads or writes once. Returns bytes moved (> 0), 0 on end of stream
 * (reads only), -1 when it would block (c->want says on what), or -2 on
 * failure (c->io_err says why). */
static ssize_t ssl_result(struct wsconn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        c->want = POLLIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->want = POLLOUT;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        c->io_err = errno ? errno_to_err(errno) : PARLEY_ECLOSED;
        ERR_clear_error();
        return -2;
    default:
        c->io_err = PARLEY_ETLS;
        ERR_clear_error();
        return -2;
    }
}

static ssize_t raw_read(struct wsconn *c, void *buf, size_t len)
{
    if (c->ssl) {
        int n = SSL_read(c->ssl, buf, (int)PL_MIN(len, (size_t)1 << 30));
        return n > 0 ? n : ssl_result(c, n);
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->want = POLLIN;
            return -1;
        }
        c->io_err = errno_to_err(errno);
        return -2;
    }
}

static ssize_t raw_write(struct wsconn *c, const void *buf, size_t len)
{
    if (c->ssl) {
        int n = SSL_write(c->ssl, buf, (int)PL_MIN(len, (size_t)1 << 30));
        if (n > 0)
            return n;
        ssize_t r = ssl_result(c, n);
        if (r == 0) {
            c->io_err = PARLEY_ECLOSED;
            return -2;
        }
        return r;
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->want = POLLOUT;
            return -1;
        }
        c->io_err = n < 0 ? errno_to_err(errno) : PARLEY_EIO;
        return -2;
    }
}

static int write_all(struct wsconn *c, const void *buf, size_t len, int64_t deadline)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = raw_write(c, p, len);
        if (n == -2)
            return c->io_err;
        if (n == -1) {
            int err = wait_fd(c, c->want, deadline);
            if (err)
                return err;
            continue;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* wslay callbacks */

static ssize_t on_ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user)
{
    struct wsconn *c = user;
    PL_UNUSED(flags);
    if (c->pre_off < c->pre_len) {
        size_t n = PL_MIN(len, c->pre_len - c->pre_off);
        memcpy(buf, c->pre + c->pre_off, n);
        c->pre_off += n;
        return (ssize_t)n;
    }
    ssize_t n = raw_read(c, buf, len);
    if (n > 0)
        return n;
    if (n == -1) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    c->io_err = n == 0 ? PARLEY_ECLOSED : c->io_err;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t on_ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                          int flags, void *user)
{
    struct wsconn *c = user;
    PL_UNUSED(flags);
    ssize_t n = raw_write(c, data, len);
    if (n > 0)
        return n;
    wslay_event_set_error(ctx, n == -1 ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int on_ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    PL_UNUSED(ctx);
    PL_UNUSED(user);
    randombytes_buf(buf, len);
    return 0;
}

static void on_ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    struct wsconn *c = user;
    PL_UNUSED(ctx);
    if (arg->opcode != WSLAY_BINARY_FRAME && arg->opcode != WSLAY_TEXT_FRAME)
        return;
    if (c->queued >= WSCONN_RECV_QUEUE_MAX) {
        c->dead = PARLEY_EPROTO;
        return;
    }
    struct wsmsg *m = malloc(sizeof(*m) + arg->msg_length + 1);
    if (!m) {
        c->dead = PARLEY_ENOMEM;
        return;
    }
    m->next = NULL;
    m->len = arg->msg_length;
    if (arg->msg_length)
        memcpy(m->data, arg->msg, arg->msg_length);
    *c->tail = m;
    c->tail = &m->next;
    c->queued++;
}

/* Connection setup */

static int tcp_connect(struct wsconn *c, int64_t deadline)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = c->url.host_is_ip ? AI_NUMERICHOST : 0;
    int gai = getaddrinfo(c->url.host, c->url.port, &hints, &res);
    if (gai != 0) {
        wlog(c, 3, "net: cannot resolve %s: %s", c->url.host, gai_strerror(gai));
        return gai == EAI_MEMORY ? PARLEY_ENOMEM : PARLEY_ECONNECT;
    }
    int err = PARLEY_ECONNECT;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0)
            continue;
        c->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                wlog(c, 2, "net: connect to %s failed: %s", c->url.hostport, strerror(errno));
                goto next;
            }
            err = wait_fd(c, POLLOUT, deadline);
            if (err)
                goto next;
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                wlog(c, 2, "net: connect to %s failed: %s", c->url.hostport, strerror(soerr));
                err = PARLEY_ECONNECT;
                goto next;
            }
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        freeaddrinfo(res);
        return 0;
    next:
        close(fd);
        c->fd = -1;
        if (err == PARLEY_ETIMEOUT)
            break;
        err = PARLEY_ECONNECT;
    }
    freeaddrinfo(res);
    return err;
}

static int check_trust(struct wsconn *c)
{
    X509 *cert = SSL_get1_peer_certificate(c->ssl);
    uint8_t fp[KNOWN_FP_LEN];
    unsigned fp_len = 0;
    if (!cert)
        return PARLEY_ETLS;
    long vr = SSL_get_verify_result(c->ssl);
    int ok = X509_digest(cert, EVP_sha256(), fp, &fp_len);
    X509_free(cert);
    if (vr == X509_V_OK)
        return 0;
    if (!ok || fp_len != KNOWN_FP_LEN)
        return PARLEY_ETLS;
    wlog(c, 0, "tls: %s not verified by system CAs (%s); checking its pin", c->url.hostport,
         X509_verify_cert_error_string(vr));
    if (c->opt.known_servers) {
        int err = known_check(c->opt.known_servers, c->url.hostport, fp);
        if (err == PARLEY_ENOTFOUND) {
            err = known_add(c->opt.known_servers, c->url.hostport, fp);
            if (!err)
                wlog(c, 2, "tls: first contact with %s: certificate pinned in known_servers",
                     c->url.hostport);
        } else if (err == PARLEY_ECERT_CHANGED) {
            wlog(c, 3, "tls: certificate of %s differs from its pin in known_servers",
                 c->url.hostport);
        }
        return err;
    }
    if (c->opt.pin_cb)
        return c->opt.pin_cb(c->opt.pin_arg, c->url.hostport, fp);
    return PARLEY_ETLS;
}

static int tls_connect(struct wsconn *c, int64_t deadline)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        return PARLEY_ENOMEM;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* The verdict is read after the handshake, so that a failure can fall
     * back to the pin instead of aborting. */
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_set_default_verify_paths(c->ctx) != 1)
        wlog(c, 1, "tls: cannot load the system CA store");
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return PARLEY_ENOMEM;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (c->url.host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, c->url.host) != 1)
            return PARLEY_ETLS;
    } else {
        if (SSL_set_tlsext_host_name(c->ssl, c->url.host) != 1 ||
            SSL_set1_host(c->ssl, c->url.host) != 1)
            return PARLEY_ETLS;
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        ssize_t s = ssl_result(c, r);
        if (s != -1) {
            wlog(c, 3, "tls: handshake with %s failed", c->url.hostport);
            return PARLEY_ETLS;
        }
        int err = wait_fd(c, c->want, deadline);
        if (err)
            return err;
    }
    return check_trust(c);
}

struct upgrade_check {
    const char *accept; /* the expected Sec-WebSocket-Accept */
    char field[32];     /* the header name being read, lowercased; "" when too long */
    bool accept_ok, upgrade_ok, connection_ok;
};

static int on_hdr_field(http_parser *hp, const char *at, size_t len)
{
    struct upgrade_check *u = hp->data;
    if (len >= sizeof(u->field)) {
        u->field[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        u->field[i] = (char)((at[i] >= 'A' && at[i] <= 'Z') ? at[i] - 'A' + 'a' : at[i]);
    u->field[len] = '\0';
    return 0;
}

static bool token_in(const char *at, size_t len, const char *token)
{
    size_t t = strlen(token);
    for (size_t i = 0; i + t <= len; i++)
        if (strncasecmp(at + i, token, t) == 0)
            return true;
    return false;
}

static int on_hdr_value(http_parser *hp, const char *at, size_t len)
{
    struct upgrade_check *u = hp->data;
    if (strcmp(u->field, "sec-websocket-accept") == 0)
        u->accept_ok = len == strlen(u->accept) && memcmp(at, u->accept, len) == 0;
    else if (strcmp(u->field, "upgrade") == 0)
        u->upgrade_ok = len == 9 && strncasecmp(at, "websocket", 9) == 0;
    else if (strcmp(u->field, "connection") == 0)
        u->connection_ok = token_in(at, len, "upgrade");
    return 0;
}

static int ws_upgrade(struct wsconn *c, int64_t deadline)
{
    uint8_t key_raw[16];
    char key[sodium_base64_ENCODED_LEN(16, sodium_base64_VARIANT_ORIGINAL)];
    char accept[sodium_base64_ENCODED_LEN(SHA_DIGEST_LENGTH, sodium_base64_VARIANT_ORIGINAL)];
    char keyguid[sizeof(key) + sizeof(WS_GUID)];
    uint8_t sha[SHA_DIGEST_LENGTH];
    char req[1024];

    randombytes_buf(key_raw, sizeof(key_raw));
    sodium_bin2base64(key, sizeof(key), key_raw, sizeof(key_raw), sodium_base64_VARIANT_ORIGINAL);
    int kn = snprintf(keyguid, sizeof(keyguid), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)keyguid, (size_t)kn, sha);
    sodium_bin2base64(accept, sizeof(accept), sha, sizeof(sha), sodium_base64_VARIANT_ORIGINAL);

    int n = snprintf(req, sizeof(req),
                     "GET /v1/ws HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "User-Agent: libparley/0.1\r\n"
                     "\r\n",
                     c->url.hostport, key);
    if (n < 0 || (size_t)n >= sizeof(req))
        return PARLEY_EINVAL;
    int err = write_all(c, req, (size_t)n, deadline);
    if (err)
        return err;

    char *buf = malloc(HTTP_RESPONSE_MAX);
    if (!buf)
        return PARLEY_ENOMEM;
    size_t len = 0;
    char *end;
    while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
        if (len == HTTP_RESPONSE_MAX) {
            err = PARLEY_EPROTO;
            goto out;
        }
        ssize_t r = raw_read(c, buf + len, HTTP_RESPONSE_MAX - len);
        if (r > 0) {
            len += (size_t)r;
        } else if (r == 0) {
            err = PARLEY_ECLOSED;
            goto out;
        } else if (r == -2) {
            err = c->io_err;
            goto out;
        } else if ((err = wait_fd(c, c->want, deadline))) {
            goto out;
        }
    }
    size_t head_len = (size_t)(end - buf) + 4;

    struct upgrade_check u = {.accept = accept};
    http_parser hp;
    http_parser_settings hs;
    http_parser_init(&hp, HTTP_RESPONSE);
    http_parser_settings_init(&hs);
    hs.on_header_field = on_hdr_field;
    hs.on_header_value = on_hdr_value;
    hp.data = &u;
    http_parser_execute(&hp, &hs, buf, head_len);
    if (HTTP_PARSER_ERRNO(&hp) != HPE_OK) {
        wlog(c, 3, "ws: malformed upgrade response from %s", c->url.hostport);
        err = PARLEY_EPROTO;
        goto out;
    }
    if (hp.status_code != 101) {
        wlog(c, 3, "ws: %s answered the upgrade with HTTP %u", c->url.hostport, hp.status_code);
        err = hp.status_code == 503   ? PARLEY_EBUSY
              : hp.status_code == 429 ? PARLEY_ERATE_LIMITED
                                      : PARLEY_EPROTO;
        goto out;
    }
    if (!u.accept_ok || !u.upgrade_ok || !u.connection_ok) {
        wlog(c, 3, "ws: bad upgrade headers from %s", c->url.hostport);
        err = PARLEY_EPROTO;
        goto out;
    }
    if (len > head_len) {
        c->pre = malloc(len - head_len);
        if (!c->pre) {
            err = PARLEY_ENOMEM;
            goto out;
        }
        memcpy(c->pre, buf + head_len, len - head_len);
        c->pre_len = len - head_len;
    }
    err = 0;
out:
    free(buf);
    return err;
}

int wsconn_open(const char *url, const struct wsconn_options *opt, struct wsconn **out)
{
    struct sigpipe_guard g;
    struct wsconn *c = calloc(1, sizeof(*c));
    if (!c)
        return PARLEY_ENOMEM;
    c->fd = -1;
    c->tail = &c->head;
    if (opt)
        c->opt = *opt;
    if (c->opt.timeout_ms == 0)
        c->opt.timeout_ms = WSCONN_TIMEOUT_DEFAULT_MS;
    if (c->opt.max_message == 0)
        c->opt.max_message = FRAME_MAX_DEFAULT;
    int err = url_parse(url, &c->url);
    if (err) {
        free(c);
        return err;
    }
    sigpipe_block(&g);
    int64_t deadline = deadline_in(c->opt.timeout_ms);
    err = tcp_connect(c, deadline);
    if (!err && c->url.tls)
        err = tls_connect(c, deadline);
    if (!err)
        err = ws_upgrade(c, deadline);
    if (!err) {
        struct wslay_event_callbacks cbs = {
            .recv_callback = on_ws_recv,
            .send_callback = on_ws_send,
            .genmask_callback = on_ws_genmask,
            .on_msg_recv_callback = on_ws_msg,
        };
        if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0) {
            c->ws = NULL;
            err = PARLEY_ENOMEM;
        } else {
            wslay_event_config_set_max_recv_msg_length(c->ws, c->opt.max_message);
        }
    }
    sigpipe_restore(&g);
    if (err) {
        c->dead = err;
        wsconn_free(c);
        return err;
    }
    wlog(c, 0, "ws: connected to %s", c->url.hostport);
    *out = c;
    return 0;
}

/* Writes what wslay has queued, waiting up to deadline; deadline 0 means
 * only what fits without waiting. */
static int flush(struct wsconn *c, int64_t deadline)
{
    while (wslay_event_want_write(c->ws)) {
        c->io_err = PARLEY_EIO;
        if (wslay_event_send(c->ws) != 0) {
            c->dead = c->io_err;
            return c->dead;
        }
        if (!wslay_event_want_write(c->ws))
            break;
        if (deadline == 0)
            return 0;
        int err = wait_fd(c, c->want, deadline);
        if (err)
            return err;
    }
    return 0;
}

static bool has_buffered_input(const struct wsconn *c)
{
    return c->pre_off < c->pre_len || (c->ssl && SSL_pending(c->ssl) > 0);
}

/* After a failed write, reads for a moment what the server sent before
 * it closed (typically a close frame saying why), so that
 * wsconn_close_code can report it. */
static void drain_after_failure(struct wsconn *c)
{
    int64_t deadline = now_ms() + CLOSE_LINGER_MS;
    while (wslay_event_get_read_enabled(c->ws) && !wslay_event_get_close_received(c->ws)) {
        if (!has_buffered_input(c) && wait_fd(c, POLLIN, deadline) != 0)
            break;
        if (wslay_event_recv(c->ws) != 0)
            break;
    }
}

int wsconn_send(struct wsconn *c, const uint8_t *data, size_t len, int timeout_ms)
{
    struct sigpipe_guard g;
    if (c->dead)
        return PARLEY_ECLOSED;
    struct wslay_event_msg m = {.opcode = WSLAY_BINARY_FRAME, .msg = data, .msg_length = len};
    int r = wslay_event_queue_msg(c->ws, &m);
    if (r == WSLAY_ERR_NOMEM)
        return PARLEY_ENOMEM;
    if (r != 0)
        return PARLEY_ECLOSED;
    sigpipe_block(&g);
    int64_t deadline = deadline_in(timeout_ms);
    int err = flush(c, deadline < 0 ? -1 : PL_MAX(deadline, 1));
    if (err == PARLEY_ECLOSED || err == PARLEY_EIO)
        drain_after_failure(c);
    sigpipe_restore(&g);
    return err;
}

int wsconn_recv(struct wsconn *c, int timeout_ms, uint8_t **data, size_t *len)
{
    struct sigpipe_guard g;
    int err = 0;
    int64_t deadline = deadline_in(timeout_ms);
    sigpipe_block(&g);
    for (;;) {
        struct wsmsg *m = c->head;
        if (m) {
            c->head = m->next;
            if (!c->head)
                c->tail = &c->head;
            c->queued--;
            /* The header sits before the payload: move it down so that the
             * caller can free() what it gets. */
            size_t n = m->len;
            memmove(m, m->data, n);
            *len = n;
            *data = (uint8_t *)m;
            break;
        }
        if (c->dead) {
            err = c->dead;
            break;
        }
        if (!wslay_event_get_read_enabled(c->ws)) {
            /* The server sent a close frame (or a fatal protocol error);
             * reply with ours, briefly. */
            (void)flush(c, now_ms() + CLOSE_LINGER_MS);
            c->dead = PARLEY_ECLOSED;
            continue;
        }
        (void)flush(c, 0);
        if (!has_buffered_input(c)) {
            short ev = POLLIN;
            if (wslay_event_want_write(c->ws))
                ev |= POLLOUT;
            err = wait_fd(c, ev, deadline);
            if (err)
                break;
        }
        c->io_err = PARLEY_EIO;
        if (wslay_event_recv(c->ws) != 0)
            c->dead = c->io_err;
    }
    sigpipe_restore(&g);
    return err;
}

int wsconn_close_code(const struct wsconn *c)
{
    if (!c->ws || !wslay_event_get_close_received(c->ws))
        return 0;
    return wslay_event_get_status_code_received(c->ws);
}

void wsconn_free(struct wsconn *c)
{
    struct sigpipe_guard g;
    if (!c)
        return;
    sigpipe_block(&g);
    if (c->ws && !c->dead && !wslay_event_get_close_sent(c->ws) &&
        wslay_event_queue_close(c->ws, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0) == 0)
        (void)flush(c, now_ms() + CLOSE_LINGER_MS);
    if (c->ssl && !c->dead)
        (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
    sigpipe_restore(&g);
    if (c->ws)
        wslay_event_context_free(c->ws);
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    while (c->head) {
        struct wsmsg *m = c->head;
        c->head = m->next;
        free(m);
    }
    free(c->pre);
    free(c);
}
