/* SPDX-License-Identifier: MIT */
/* Tests of the server's TLS (tls.h) and its TLS 1.3 record layer
 * (tls13.h) against OpenSSL as the client, on memory BIOs: every suite,
 * session tickets, data pipelined behind the client's Finished, records
 * split at every byte, KeyUpdate both ways, close_notify, tampered and
 * malformed records, TLS 1.2 staying on OpenSSL; and the key schedule
 * against RFC 8448's trace. */
#include "net/tls.h"
#include "net/tls13.h"

#include "common/err.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/banned.h"

#define BIG (100 * 1024) /* several full records */

static SSL_CTX *server_ctx(int num_tickets)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    if (num_tickets >= 0)
        assert_int_equal(SSL_CTX_set_num_tickets(ctx, (size_t)num_tickets), 1);
    net_tls_ctx_prepare(ctx);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/* An OpenSSL client and our server, joined by memory BIOs. */
struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *c;
    BIO *c_in, *c_out; /* the client's read and write BIOs (ours to feed and drain) */
    struct net_tls *s;
    struct net_buf s_out; /* what the server wrote, not yet given to the client */
    uint8_t scratch[NET_TLS_SCRATCH];
    uint8_t *got; /* plaintext the server received */
    size_t got_len;
    enum net_tls_result last; /* the server's last read result */
    size_t step;              /* feed the server this many bytes per read (0: all) */
};

static bool on_plain(void *arg, const uint8_t *data, size_t len)
{
    struct pair *p = arg;
    p->got = realloc(p->got, p->got_len + len);
    assert_non_null(p->got);
    memcpy(p->got + p->got_len, data, len);
    p->got_len += len;
    return true;
}

/* Client -> server: everything the client wrote. */
static void to_server(struct pair *p)
{
    size_t n = (size_t)BIO_ctrl_pending(p->c_out);
    if (n == 0)
        return;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(BIO_read(p->c_out, buf, (int)n), (int)n);
    size_t step = p->step ? p->step : n;
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        p->last = net__tls_read(p->s, buf + off, k, p->scratch, on_plain, p, &p->s_out);
        if (p->last != NET_TLS_OK)
            break;
    }
    free(buf);
}

/* Server -> client. */
static void to_client(struct pair *p)
{
    if (p->s_out.len > 0)
        assert_int_equal(BIO_write(p->c_in, p->s_out.data, (int)p->s_out.len), (int)p->s_out.len);
    net__buf_free(&p->s_out);
}

static void pair_open(struct pair *p, int num_tickets, const char *suites, int max_version)
{
    memset(p, 0, sizeof(*p));
    p->sctx = server_ctx(num_tickets);
    p->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->cctx);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
    if (suites)
        assert_int_equal(SSL_CTX_set_ciphersuites(p->cctx, suites), 1);
    if (max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(p->cctx, max_version), 1);
    p->c = SSL_new(p->cctx);
    assert_non_null(p->c);
    p->c_in = BIO_new(BIO_s_mem());
    p->c_out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(p->c_in, -1);
    SSL_set_bio(p->c, p->c_in, p->c_out);
    SSL_set_connect_state(p->c);
    p->s = net__tls_new(p->sctx);
    assert_non_null(p->s);
}

static void pair_handshake(struct pair *p)
{
    for (int i = 0; i < 10 && !(SSL_is_init_finished(p->c) && net__tls_is_established(p->s)); i++) {
        int rv = SSL_do_handshake(p->c);
        if (rv != 1)
            assert_int_equal(SSL_get_error(p->c, rv), SSL_ERROR_WANT_READ);
        to_server(p);
        assert_int_equal(p->last, NET_TLS_OK);
        to_client(p);
    }
    assert_true(SSL_is_init_finished(p->c));
    assert_true(net__tls_is_established(p->s));
}

static void pair_close(struct pair *p)
{
    SSL_free(p->c);
    SSL_CTX_free(p->cctx);
    net__tls_free(p->s);
    SSL_CTX_free(p->sctx);
    net__buf_free(&p->s_out);
    free(p->got);
}

static uint8_t *pattern(size_t n, uint8_t seed)
{
    uint8_t *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 7 + seed + (i >> 8));
    return b;
}

/* Client writes n bytes; the server must receive exactly them. */
static void client_sends(struct pair *p, size_t n, uint8_t seed)
{
    uint8_t *b = pattern(n, seed);
    size_t before = p->got_len;
    assert_int_equal(SSL_write(p->c, b, (int)n), (int)n);
    to_server(p);
    assert_int_equal(p->last, NET_TLS_OK);
    assert_int_equal(p->got_len - before, n);
    assert_memory_equal(p->got + before, b, n);
    free(b);
}

/* Server writes n bytes; the client must read exactly them. */
static void server_sends(struct pair *p, size_t n, uint8_t seed)
{
    uint8_t *b = pattern(n, seed);
    assert_int_equal(net__tls_write(p->s, b, n, &p->s_out), 0);
    to_client(p);
    uint8_t *r = malloc(n);
    assert_non_null(r);
    size_t have = 0;
    while (have < n) {
        int k = SSL_read(p->c, r + have, (int)(n - have));
        assert_true(k > 0);
        have += (size_t)k;
    }
    assert_memory_equal(r, b, n);
    free(r);
    free(b);
}

static void exchange(struct pair *p)
{
    client_sends(p, 1, 1);
    server_sends(p, 1, 2);
    client_sends(p, BIG, 3);
    server_sends(p, BIG, 4);
    client_sends(p, 16384, 5); /* exactly one full record */
    server_sends(p, 16385, 6); /* one full record and one byte */
}

/* --- every suite, tickets or none -------------------------------------- */

static void run_suite(const char *suite, int tickets)
{
    struct pair p;
    pair_open(&p, tickets, suite, 0);
    pair_handshake(&p);
    assert_true(net__tls_is_compact(p.s));
    exchange(&p);
    pair_close(&p);
}

static void test_aes128_gcm(void **state)
{
    (void)state;
    run_suite("TLS_AES_128_GCM_SHA256", -1);
}

static void test_aes256_gcm(void **state)
{
    (void)state;
    run_suite("TLS_AES_256_GCM_SHA384", -1);
}

static void test_chacha20_poly1305(void **state)
{
    (void)state;
    run_suite("TLS_CHACHA20_POLY1305_SHA256", -1);
}

/* Session tickets go out under the server's application key before the
 * record layer takes over: its first sequence number counts them. */
static void test_ticket_counts(void **state)
{
    (void)state;
    run_suite(NULL, 0);
    run_suite(NULL, 1);
    run_suite(NULL, 5);
}

/* A new server connection on the pair's (changed) server context. */
static void renew_server(struct pair *p)
{
    net__tls_free(p->s);
    p->s = net__tls_new(p->sctx);
    assert_non_null(p->s);
}

/* The handshake completes on OpenSSL, which keeps the connection and
 * carries the data; then the pair is closed. */
static void expect_openssl_keeps(struct pair *p)
{
    pair_handshake(p);
    assert_false(net__tls_is_compact(p->s));
    exchange(p);
    pair_close(p);
}

/* TLS 1.2 and suites tls13.c does not run stay on OpenSSL and work. */
static void test_tls12_stays_on_openssl(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, -1, NULL, TLS1_2_VERSION);
    expect_openssl_keeps(&p);

    pair_open(&p, -1, "TLS_AES_128_CCM_SHA256", 0);
    SSL_CTX_set_ciphersuites(p.sctx, "TLS_AES_128_CCM_SHA256");
    renew_server(&p);
    expect_openssl_keeps(&p);
}

/* A context never prepared keeps every connection on OpenSSL. */
static void test_unprepared_ctx(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, -1, NULL, 0);
    SSL_CTX_set_keylog_callback(p.sctx, NULL);
    renew_server(&p);
    expect_openssl_keeps(&p);
}

/* --- how the bytes arrive ---------------------------------------------- */

/* The client's first data rides behind its Finished, in the same read. */
static void test_data_pipelined_after_finished(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, -1, NULL, 0);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    to_server(&p);
    to_client(&p);
    assert_int_equal(SSL_do_handshake(p.c), 1); /* the client's Finished is queued */
    assert_int_equal(SSL_write(p.c, "GET / HTTP/1.1\r\n", 16), 16);
    to_server(&p); /* Finished and the data, one read */
    assert_int_equal(p.last, NET_TLS_OK);
    assert_true(net__tls_is_compact(p.s));
    assert_int_equal(p.got_len, 16);
    assert_memory_equal(p.got, "GET / HTTP/1.1\r\n", 16);
    to_client(&p);
    server_sends(&p, 100, 9);
    pair_close(&p);
}

/* Records split at every possible byte: one byte per read, then odd sizes. */
static void test_split_reads(void **state)
{
    (void)state;
    static const size_t steps[] = {1, 2, 3, 5, 4096, 16389, 16390};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct pair p;
        pair_open(&p, -1, NULL, 0);
        p.step = steps[i];
        pair_handshake(&p);
        assert_true(net__tls_is_compact(p.s));
        client_sends(&p, 1, 1);
        client_sends(&p, 40000, 2);
        server_sends(&p, 10, 3);
        pair_close(&p);
    }
}

/* --- KeyUpdate ---------------------------------------------------------- */

static void test_key_update_from_client(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, -1, NULL, 0);
    pair_handshake(&p);
    /* Not requested: the server's key stays, the client's moves. */
    assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    client_sends(&p, 300, 1);
    assert_int_equal(p.s_out.len, 0); /* nothing to answer */
    server_sends(&p, 300, 2);
    /* Requested: the server answers with its own KeyUpdate, then moves. */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED), 1);
        client_sends(&p, 5000, (uint8_t)(3 + round));
        assert_true(p.s_out.len > 0);
        server_sends(&p, 5000, (uint8_t)(6 + round));
        client_sends(&p, 7, 9);
    }
    pair_close(&p);
}

/* Several requests in one read get one answer: a peer that asks again
 * and again without reading cannot make us queue an answer for each. */
static void test_key_update_requests_coalesce(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, -1, NULL, 0);
    pair_handshake(&p);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED), 1);
        assert_int_equal(SSL_write(p.c, "k", 1), 1);
    }
    to_server(&p);
    assert_int_equal(p.last, NET_TLS_OK);
    assert_int_equal(p.got_len, 5);
    assert_int_equal(p.s_out.len, 5 + 5 + 1 + 16); /* one KeyUpdate record */
    server_sends(&p, 1000, 1);
    client_sends(&p, 1000, 2);
    pair_close(&p);
}

/* Before AES-GCM's limit of records per key the server updates its own
 * key, unasked; the client follows. */
static void test_key_update_from_server(void **state)
{
    (void)state;
    struct pair p = {0}; /* only its on_plain collector */
    /* Two tls13 ends with the same secrets: a client end decrypts what
     * the server end writes after its sequence number nears the limit. */
    struct tls13 srv, cli;
    uint8_t a[32], b[32];
    for (int i = 0; i < 32; i++) {
        a[i] = (uint8_t)i;
        b[i] = (uint8_t)(100 + i);
    }
    assert_int_equal(tls13_init(&srv, 0x1301, a, b, 32, 0), 0);
    assert_int_equal(tls13_init(&cli, 0x1301, b, a, 32, 0), 0);
    srv.tx.seq = (1ull << 24) - 2;
    cli.rx.seq = (1ull << 24) - 2;
    struct net_buf wire = {0}, back = {0};
    uint8_t scratch[TLS13_SCRATCH];
    for (uint8_t i = 0; i < 4; i++)
        assert_int_equal(tls13_write(&srv, &i, 1, &wire), 0);
    assert_true(srv.tx.seq < 4); /* a new key, its count restarted */
    assert_int_equal(tls13_read(&cli, wire.data, wire.len, scratch, on_plain, &p, &back), TLS13_OK);
    assert_int_equal(p.got_len, 4);
    for (uint8_t i = 0; i < 4; i++)
        assert_int_equal(p.got[i], i);
    assert_int_equal(back.len, 0);
    net__buf_free(&wire);
    net__buf_free(&back);
    tls13_wipe(&srv);
    tls13_wipe(&cli);
    free(p.got);
}

/* --- endings ------------------------------------------------------------ */

static void test_close_notify_both_ways(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, -1, NULL, 0);
    pair_handshake(&p);
    client_sends(&p, 10, 1);
    net__tls_shutdown(p.s, &p.s_out);
    to_client(&p);
    char c;
    assert_int_equal(SSL_read(p.c, &c, 1), 0);
    assert_int_equal(SSL_get_error(p.c, 0), SSL_ERROR_ZERO_RETURN);
    /* Nothing goes out after close_notify. */
    assert_int_equal(net__tls_write(p.s, (const uint8_t *)"x", 1, &p.s_out), PARLEY_ETLS);
    assert_int_equal(p.s_out.len, 0);
    assert_int_equal(SSL_shutdown(p.c), 1);
    to_server(&p);
    assert_int_equal(p.last, NET_TLS_CLOSED);
    pair_close(&p);
}

/* A fatal error after our own close_notify still ends reading: a genuine
 * record that follows a forged one is not delivered. */
static void test_error_after_close_notify_sticks(void **state)
{
    (void)state;
    uint8_t a[32] = {3}, b[32] = {4};
    struct tls13 srv, cli;
    assert_int_equal(tls13_init(&srv, 0x1301, a, b, 32, 0), 0);
    assert_int_equal(tls13_init(&cli, 0x1301, b, a, 32, 0), 0);
    struct net_buf back = {0}, good = {0};
    uint8_t scratch[TLS13_SCRATCH];
    struct pair p = {0};
    tls13_close_notify(&srv, &back);
    assert_true(back.len > 0);
    net__buf_free(&back);
    assert_int_equal(tls13_write(&cli, (const uint8_t *)"hello", 5, &good), 0);
    good.data[7] ^= 1;
    assert_int_equal(tls13_read(&srv, good.data, good.len, scratch, on_plain, &p, &back),
                     TLS13_ERROR);
    assert_int_equal(back.len, 0); /* no alert after close_notify */
    good.data[7] ^= 1;             /* the genuine record */
    assert_int_equal(tls13_read(&srv, good.data, good.len, scratch, on_plain, &p, &back),
                     TLS13_ERROR);
    assert_int_equal(p.got_len, 0);
    net__buf_free(&good);
    tls13_wipe(&srv);
    tls13_wipe(&cli);
}

/* The client's record with one bit flipped: a fatal bad_record_mac goes
 * back, the client sees it, and the server reads nothing more. */
static void test_tampered_record(void **state)
{
    (void)state;
    for (size_t flip = 0; flip < 3; flip++) {
        struct pair p;
        pair_open(&p, -1, NULL, 0);
        pair_handshake(&p);
        assert_int_equal(SSL_write(p.c, "hello", 5), 5);
        uint8_t rec[64];
        int n = BIO_read(p.c_out, rec, sizeof(rec));
        assert_int_equal(n, 5 + 5 + 1 + 16);
        size_t at[] = {6, 5 + 5, (size_t)n - 1}; /* ciphertext, type byte, tag */
        rec[at[flip]] ^= 0x10;
        p.last = net__tls_read(p.s, rec, (size_t)n, p.scratch, on_plain, &p, &p.s_out);
        assert_int_equal(p.last, NET_TLS_ERROR);
        assert_int_equal(p.got_len, 0);
        assert_true(p.s_out.len > 0);
        to_client(&p);
        char c;
        assert_true(SSL_read(p.c, &c, 1) <= 0);
        assert_int_equal(SSL_get_error(p.c, -1), SSL_ERROR_SSL);
        ERR_clear_error();
        /* The genuine record now is refused too: the connection is over. */
        rec[at[flip]] ^= 0x10;
        p.last = net__tls_read(p.s, rec, (size_t)n, p.scratch, on_plain, &p, &p.s_out);
        assert_int_equal(p.last, NET_TLS_ERROR);
        assert_int_equal(p.got_len, 0);
        assert_int_equal(net__tls_write(p.s, (const uint8_t *)"x", 1, &p.s_out), PARLEY_ETLS);
        pair_close(&p);
    }
}

/* Headers a TLS 1.3 client never sends after the handshake. */
static void test_malformed_headers(void **state)
{
    (void)state;
    static const uint8_t bad[][5] = {
        {22, 3, 3, 0, 40},      /* a plaintext handshake record */
        {20, 3, 3, 0, 1},       /* change_cipher_spec after Finished */
        {23, 3, 1, 0, 40},      /* wrong legacy version */
        {23, 3, 3, 0x41, 0x01}, /* 2^14 + 257: over the limit */
        {23, 3, 3, 0, 16},      /* shorter than a tag and a type byte */
        {23, 3, 3, 0, 0},       /* empty */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pair p;
        pair_open(&p, -1, NULL, 0);
        pair_handshake(&p);
        /* In one piece, and a byte at a time. */
        p.last = net__tls_read(p.s, bad[i], 5, p.scratch, on_plain, &p, &p.s_out);
        assert_int_equal(p.last, NET_TLS_ERROR);
        assert_true(p.s_out.len > 0); /* the alert */
        pair_close(&p);

        pair_open(&p, -1, NULL, 0);
        pair_handshake(&p);
        for (size_t k = 0; k < 4; k++)
            assert_int_equal(net__tls_read(p.s, &bad[i][k], 1, p.scratch, on_plain, &p, &p.s_out),
                             NET_TLS_OK);
        assert_int_equal(net__tls_read(p.s, &bad[i][4], 1, p.scratch, on_plain, &p, &p.s_out),
                         NET_TLS_ERROR);
        pair_close(&p);
    }
}

/* Well-encrypted records the server must still refuse: a handshake
 * message other than KeyUpdate, a bad KeyUpdate, an unknown inner type,
 * all padding, a fatal alert from the client. */
static void test_refused_inner_content(void **state)
{
    (void)state;
    static const struct {
        uint8_t type;
        uint8_t data[8];
        size_t len;
        enum tls13_result want;
    } cases[] = {
        {TLS13_HANDSHAKE, {4, 0, 0, 1, 0}, 5, TLS13_ERROR},     /* NewSessionTicket-like */
        {TLS13_HANDSHAKE, {24, 0, 0, 1, 2}, 5, TLS13_ERROR},    /* update_requested 2 */
        {TLS13_HANDSHAKE, {24, 0, 0, 2, 0, 0}, 6, TLS13_ERROR}, /* wrong length */
        {TLS13_HANDSHAKE, {24, 0, 0, 1}, 4, TLS13_ERROR},       /* cut short */
        {TLS13_ALERT, {2, 40}, 2, TLS13_ERROR},                 /* handshake_failure */
        {TLS13_ALERT, {1, 0, 0}, 3, TLS13_ERROR},               /* three-byte alert */
        {TLS13_ALERT, {1, 90}, 2, TLS13_OK},                    /* user_canceled */
        {TLS13_ALERT, {1, 0}, 2, TLS13_CLOSED},                 /* close_notify */
        {20, {1}, 1, TLS13_ERROR},                              /* protected CCS */
        {0, {0}, 0, TLS13_ERROR},                               /* padding only */
    };
    uint8_t a[32] = {1}, b[32] = {2};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tls13 srv, cli;
        assert_int_equal(tls13_init(&srv, 0x1303, a, b, 32, 0), 0);
        assert_int_equal(tls13_init(&cli, 0x1303, b, a, 32, 0), 0);
        struct net_buf wire = {0}, back = {0};
        uint8_t scratch[TLS13_SCRATCH];
        /* tls13_seal always writes a type byte; "padding only" is a
         * record whose type byte is itself 0. */
        assert_int_equal(tls13_seal(&cli, cases[i].type, cases[i].data, cases[i].len, &wire), 0);
        struct pair p = {0};
        assert_int_equal(tls13_read(&srv, wire.data, wire.len, scratch, on_plain, &p, &back),
                         cases[i].want);
        assert_int_equal(p.got_len, 0);
        if (cases[i].want == TLS13_ERROR && !(cases[i].type == TLS13_ALERT && cases[i].len == 2))
            assert_true(back.len > 0); /* our alert; none answers the client's fatal one */
        net__buf_free(&wire);
        net__buf_free(&back);
        tls13_wipe(&srv);
        tls13_wipe(&cli);
    }
}

/* --- key schedule -------------------------------------------------------- */

static void hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* RFC 8448 section 3: the server's application traffic secret and the
 * write key and IV derived from it. */
static void test_expand_label_rfc8448(void **state)
{
    (void)state;
    uint8_t secret[32], key[16], iv[12], want_key[16], want_iv[12];
    hex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5", secret, 32);
    hex("17422dda596ed5d9acd890e3c63f5051", want_key, 16);
    hex("5b78923dee08579033e523d9", want_iv, 12);
    assert_int_equal(tls13_expand_label(32, secret, "key", key, 16), 0);
    assert_int_equal(tls13_expand_label(32, secret, "iv", iv, 12), 0);
    assert_memory_equal(key, want_key, 16);
    assert_memory_equal(iv, want_iv, 12);
    assert_int_equal(tls13_expand_label(20, secret, "key", key, 16), PARLEY_EINVAL);
    assert_int_equal(tls13_expand_label(32, secret, "key", key, 33), PARLEY_EINVAL);
    assert_int_equal(tls13_expand_label(32, secret, "key", key, 0), PARLEY_EINVAL);
}

static void test_init_refuses(void **state)
{
    (void)state;
    struct tls13 t;
    uint8_t s[48] = {0};
    size_t len = 0;
    assert_false(tls13_suite_supported(0x1304, &len)); /* AES-128-CCM */
    assert_true(tls13_suite_supported(0x1302, &len));
    assert_int_equal(len, 48);
    assert_int_equal(tls13_init(&t, 0x1304, s, s, 32, 0), PARLEY_EINVAL);
    assert_int_equal(tls13_init(&t, 0x1302, s, s, 32, 0), PARLEY_EINVAL); /* SHA-384 wants 48 */
    assert_int_equal(tls13_init(&t, 0x1301, s, s, 32, 1ull << 24), PARLEY_EINVAL);
    assert_int_equal(tls13_init(&t, 0x1302, s, s, 48, 2), 0);
    assert_int_equal(t.tx.seq, 2);
    tls13_wipe(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes128_gcm),
        cmocka_unit_test(test_aes256_gcm),
        cmocka_unit_test(test_chacha20_poly1305),
        cmocka_unit_test(test_ticket_counts),
        cmocka_unit_test(test_tls12_stays_on_openssl),
        cmocka_unit_test(test_unprepared_ctx),
        cmocka_unit_test(test_data_pipelined_after_finished),
        cmocka_unit_test(test_split_reads),
        cmocka_unit_test(test_key_update_from_client),
        cmocka_unit_test(test_key_update_requests_coalesce),
        cmocka_unit_test(test_key_update_from_server),
        cmocka_unit_test(test_close_notify_both_ways),
        cmocka_unit_test(test_tampered_record),
        cmocka_unit_test(test_error_after_close_notify_sticks),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_refused_inner_content),
        cmocka_unit_test(test_expand_label_rfc8448),
        cmocka_unit_test(test_init_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
