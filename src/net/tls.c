/* SPDX-License-Identifier: MIT */
/* OpenSSL with memory BIOs for the handshake (and for TLS 1.2), then
 * tls13.c's record layer: the socket stays libuv's, TLS only transforms
 * bytes. The read BIO reports "retry" when empty so that SSL_read asks for
 * more instead of seeing end of file. */
#include "net/tls.h"
#include "net/tls13.h"

#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

struct net_tls {
    SSL *ssl; /* until the move to rl; for good on TLS 1.2 */
    struct tls13 rl;
    bool compact; /* on rl, ssl freed */
    uint8_t secret_len;
    uint8_t got; /* bit 0: the client's traffic secret, bit 1: the server's */
    /* During the handshake the key log callback parks the two traffic
     * secrets in rl.rx.secret and rl.tx.secret; tls13_init takes them. */
};

/* --- secrets from OpenSSL's key log callback ---------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses "LABEL <client random, 64 hex> <secret, hex>" into out (at most
 * TLS13_SECRET_MAX bytes); returns its length, or 0. */
static size_t parse_secret(const char *line, size_t label_len, uint8_t *out)
{
    const char *p = line + label_len;
    if (*p++ != ' ')
        return 0;
    for (int i = 0; i < 64; i++)
        if (hexval(*p++) < 0)
            return 0;
    if (*p++ != ' ')
        return 0;
    size_t n = 0;
    while (p[0] && p[1] && n < TLS13_SECRET_MAX) {
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[n++] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    return *p == '\0' && (n == 32 || n == 48) ? n : 0;
}

static void keylog_cb(const SSL *ssl, const char *line)
{
    static const char client[] = "CLIENT_TRAFFIC_SECRET_0";
    static const char server[] = "SERVER_TRAFFIC_SECRET_0";
    struct net_tls *t = SSL_get_app_data(ssl);
    if (!t)
        return;
    uint8_t *dst;
    size_t label_len;
    uint8_t bit;
    if (strncmp(line, client, sizeof(client) - 1) == 0) {
        dst = t->rl.rx.secret;
        label_len = sizeof(client) - 1;
        bit = 1;
    } else if (strncmp(line, server, sizeof(server) - 1) == 0) {
        dst = t->rl.tx.secret;
        label_len = sizeof(server) - 1;
        bit = 2;
    } else {
        return; /* handshake and exporter secrets, TLS 1.2's CLIENT_RANDOM */
    }
    size_t n = parse_secret(line, label_len, dst);
    if (n == 0 || (t->secret_len && t->secret_len != n)) {
        t->got = 0xff; /* inconsistent: stay on OpenSSL */
        return;
    }
    t->secret_len = (uint8_t)n;
    t->got |= bit;
}

void net_tls_ctx_prepare(SSL_CTX *ctx)
{
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);
}

/* --- OpenSSL ------------------------------------------------------------ */

/* A fresh pair of memory BIOs for ssl (the old ones freed), or false. */
static bool new_bios(SSL *ssl)
{
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (!rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        return false;
    }
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    return true;
}

struct net_tls *net__tls_new(SSL_CTX *ctx)
{
    struct net_tls *t = xcalloc(1, sizeof(*t));
    SSL *ssl = SSL_new(ctx);
    if (!ssl || !new_bios(ssl) || SSL_set_min_proto_version(ssl, TLS1_2_VERSION) != 1) {
        SSL_free(ssl);
        free(t);
        return NULL;
    }
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    SSL_set_app_data(ssl, t);
    SSL_set_accept_state(ssl);
    t->ssl = ssl;
    return t;
}

void net__tls_free(struct net_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    tls13_wipe(&t->rl);
    free(t);
}

/* Moves everything OpenSSL wrote into the write BIO to out. */
static void drain(SSL *ssl, struct net_buf *out)
{
    BIO *wbio = SSL_get_wbio(ssl);
    size_t pending;
    while ((pending = BIO_ctrl_pending(wbio)) > 0) {
        uint8_t *p = net__buf_reserve(out, pending);
        int n = BIO_read(wbio, p, (int)PL_MIN(pending, (size_t)INT32_MAX));
        if (n <= 0)
            break;
        out->len += (size_t)n;
    }
}

/* Records in p[0..len): an upper bound on what OpenSSL sent under its
 * application key in the call that wrote them (session tickets). */
static uint64_t count_records(const uint8_t *p, size_t len)
{
    uint64_t n = 0;
    while (len > 0) {
        size_t rec = len >= TLS13_HEADER ? TLS13_HEADER + ((size_t)p[3] << 8 | p[4]) : len;
        if (rec > len)
            rec = len;
        p += rec;
        len -= rec;
        n++;
    }
    return n;
}

static enum net_tls_result from_tls13(enum tls13_result r)
{
    return r == TLS13_OK ? NET_TLS_OK : r == TLS13_CLOSED ? NET_TLS_CLOSED : NET_TLS_ERROR;
}

/* After the handshake's last step, which appended out[sent_from..) to
 * out: moves the connection to tls13.c if it can, and feeds it whatever
 * ciphertext OpenSSL did not read. Returns false to stay on OpenSSL, true
 * when *res is the read's result. */
static bool move_to_tls13(struct net_tls *t, size_t sent_from, struct net_buf *out,
                          enum net_tls_result *res, uint8_t *scratch, net_tls_plain_cb *cb,
                          void *arg)
{
    SSL *ssl = t->ssl;
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    size_t secret_len = 0;
    if (t->got != 3 || SSL_version(ssl) != TLS1_3_VERSION || SSL_has_pending(ssl) || !cipher ||
        !tls13_suite_supported(SSL_CIPHER_get_protocol_id(cipher), &secret_len) ||
        secret_len != t->secret_len) {
        tls13_wipe(&t->rl); /* the parked secrets: OpenSSL keeps its own */
        return false;
    }
    uint8_t rx[TLS13_SECRET_MAX], tx[TLS13_SECRET_MAX];
    memcpy(rx, t->rl.rx.secret, secret_len);
    memcpy(tx, t->rl.tx.secret, secret_len);
    uint64_t sent = count_records(out->data + sent_from, out->len - sent_from);
    int rc = tls13_init(&t->rl, SSL_CIPHER_get_protocol_id(cipher), rx, tx, secret_len, sent);
    OPENSSL_cleanse(rx, sizeof(rx));
    OPENSSL_cleanse(tx, sizeof(tx));
    if (rc != 0)
        return false; /* rl is wiped; OpenSSL carries on */
    /* Ciphertext after the client's Finished that OpenSSL left unread. */
    BIO *rbio = SSL_get_rbio(ssl);
    size_t left = BIO_ctrl_pending(rbio);
    uint8_t *rest = NULL;
    if (left > 0) {
        rest = xmalloc(left);
        if (BIO_read(rbio, rest, (int)left) != (int)left) {
            /* A memory BIO does not fail this way; if it did, bytes may
             * be gone from both layers: drop the connection. */
            free(rest);
            tls13_wipe(&t->rl);
            *res = NET_TLS_ERROR;
            return true;
        }
    }
    SSL_free(ssl);
    t->ssl = NULL;
    t->compact = true;
    *res = from_tls13(tls13_read(&t->rl, rest, left, scratch, cb, arg, out));
    free(rest);
    return true;
}

static enum net_tls_result ssl_failed(SSL *ssl, int rv)
{
    int err = SSL_get_error(ssl, rv);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return NET_TLS_OK;
    if (err == SSL_ERROR_ZERO_RETURN)
        return NET_TLS_CLOSED;
    unsigned long e = ERR_peek_error();
    log_debug("net", "event=tls_error reason=\"%s\"", e ? ERR_reason_error_string(e) : "-");
    ERR_clear_error();
    return NET_TLS_ERROR;
}

enum net_tls_result net__tls_read(struct net_tls *t, const uint8_t *data, size_t len,
                                  uint8_t *scratch, net_tls_plain_cb *cb, void *arg,
                                  struct net_buf *out)
{
    if (t->compact)
        return from_tls13(tls13_read(&t->rl, data, len, scratch, cb, arg, out));
    SSL *ssl = t->ssl;
    if (len > 0) {
        size_t written = 0;
        /* A memory BIO grows to take everything; one read at most. */
        if (BIO_write_ex(SSL_get_rbio(ssl), data, len, &written) != 1 || written != len)
            return NET_TLS_ERROR;
    }
    ERR_clear_error();
    if (!SSL_is_init_finished(ssl)) {
        size_t sent_from = out->len;
        int rv = SSL_do_handshake(ssl);
        drain(ssl, out);
        if (rv != 1)
            return ssl_failed(ssl, rv);
        enum net_tls_result res;
        if (move_to_tls13(t, sent_from, out, &res, scratch, cb, arg))
            return res;
    }
    enum net_tls_result result = NET_TLS_OK;
    for (;;) {
        size_t n = 0;
        int rv = SSL_read_ex(ssl, scratch, NET_TLS_SCRATCH, &n);
        if (rv == 1) {
            if (!cb(arg, scratch, n))
                break;
            continue;
        }
        result = ssl_failed(ssl, rv);
        break;
    }
    drain(ssl, out);
    return result;
}

int net__tls_write(struct net_tls *t, const uint8_t *data, size_t len, struct net_buf *out)
{
    if (t->compact)
        return tls13_write(&t->rl, data, len, out);
    SSL *ssl = t->ssl;
    ERR_clear_error();
    while (len > 0) {
        size_t n = 0;
        if (SSL_write_ex(ssl, data, len, &n) != 1) {
            ERR_clear_error();
            drain(ssl, out);
            return PARLEY_ETLS;
        }
        data += n;
        len -= n;
        drain(ssl, out);
    }
    return 0;
}

void net__tls_shutdown(struct net_tls *t, struct net_buf *out)
{
    if (t->compact) {
        tls13_close_notify(&t->rl, out);
        return;
    }
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl))
        (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
    drain(t->ssl, out);
}

void net__tls_shrink(struct net_tls *t)
{
    if (t->compact)
        return; /* rl keeps only a partial record, freed once whole */
    SSL *ssl = t->ssl;
    if (BIO_ctrl_pending(SSL_get_rbio(ssl)) == 0 && BIO_ctrl_pending(SSL_get_wbio(ssl)) == 0)
        (void)new_bios(ssl); /* on failure the old pair stays, which is fine */
}

struct net_tls *net__tls_relocate(struct net_tls *t)
{
    if (!t->compact)
        return t;
    struct net_tls *n = xmalloc(sizeof(*n));
    memcpy(n, t, sizeof(*n));
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
    return n;
}

bool net__tls_is_established(const struct net_tls *t)
{
    return t->compact || SSL_is_init_finished(t->ssl) != 0;
}

bool net__tls_is_compact(const struct net_tls *t)
{
    return t->compact;
}
