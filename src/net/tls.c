/* SPDX-License-Identifier: MIT */
/* OpenSSL with memory BIOs: the socket stays libuv's, OpenSSL only
 * transforms bytes. The read BIO reports "retry" when empty so that SSL_read
 * asks for more instead of seeing end of file. */
#include "net/tls.h"

#include "common/err.h"
#include "common/log.h"

#include <openssl/err.h>
#include <string.h>

#include "common/banned.h"

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

SSL *net__tls_new(SSL_CTX *ctx)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    if (!new_bios(ssl)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    if (SSL_set_min_proto_version(ssl, TLS1_2_VERSION) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
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

enum net_tls_result net__tls_read(SSL *ssl, const uint8_t *data, size_t len, uint8_t *scratch,
                                  size_t scratch_len, net_tls_plain_cb *cb, void *arg,
                                  struct net_buf *out)
{
    enum net_tls_result result = NET_TLS_OK;
    if (len > 0) {
        size_t written = 0;
        /* A memory BIO grows to take everything; one read at most. */
        if (BIO_write_ex(SSL_get_rbio(ssl), data, len, &written) != 1 || written != len)
            return NET_TLS_ERROR;
    }
    ERR_clear_error();
    for (;;) {
        size_t n = 0;
        int rv = SSL_read_ex(ssl, scratch, scratch_len, &n);
        if (rv == 1) {
            if (!cb(arg, scratch, n))
                break;
            continue;
        }
        int err = SSL_get_error(ssl, rv);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        if (err == SSL_ERROR_ZERO_RETURN) {
            result = NET_TLS_CLOSED;
            break;
        }
        unsigned long e = ERR_peek_error();
        log_debug("net", "event=tls_error reason=\"%s\"", e ? ERR_reason_error_string(e) : "-");
        ERR_clear_error();
        result = NET_TLS_ERROR;
        break;
    }
    drain(ssl, out);
    return result;
}

int net__tls_write(SSL *ssl, const uint8_t *data, size_t len, struct net_buf *out)
{
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

void net__tls_shutdown(SSL *ssl, struct net_buf *out)
{
    ERR_clear_error();
    if (SSL_is_init_finished(ssl))
        (void)SSL_shutdown(ssl);
    ERR_clear_error();
    drain(ssl, out);
}

void net__tls_shrink(SSL *ssl)
{
    if (BIO_ctrl_pending(SSL_get_rbio(ssl)) == 0 && BIO_ctrl_pending(SSL_get_wbio(ssl)) == 0)
        (void)new_bios(ssl); /* on failure the old pair stays, which is fine */
}

bool net__tls_is_established(const SSL *ssl)
{
    return SSL_is_init_finished(ssl) != 0;
}
