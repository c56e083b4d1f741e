/* SPDX-License-Identifier: MIT */
/* Bad input against a real parleyd: malformed protobuf, oversize frame,
 * unknown method, bad signature, replayed nonce, missing version, requests
 * before authentication. Each gets its documented error, and the server
 * keeps serving the same and other connections. Then libparley end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "client/wsconn.h"
#include "common/err.h"
#include "proto/frame.h"
#include "rawproto.h"
#include "testserver.h"

#include <parley.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct testserver srv;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    return testserver_start(&srv, NULL);
}

static int teardown(void **state)
{
    (void)state;
    return testserver_finish(&srv);
}

static void test_malformed_protobuf_gets_emalformed(void **state)
{
    (void)state;
    struct wsconn *c = raw_dial(srv.url);
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99};
    raw_send_bytes(c, junk, sizeof(junk));
    raw_expect_error(c, 0, PARLEY_EMALFORMED);
    raw_expect_ping(c);
    wsconn_free(c);
}

static void test_oversize_frame_closes_with_1009_others_unaffected(void **state)
{
    (void)state;
    struct wsconn *other = raw_dial(srv.url);
    struct wsconn *c = raw_dial(srv.url);
    size_t len = FRAME_MAX_DEFAULT + 1;
    uint8_t *big = calloc(1, len);
    assert_non_null(big);
    int rc = wsconn_send(c, big, len, 10000);
    free(big);
    if (rc == 0) {
        uint8_t *data;
        size_t n;
        rc = wsconn_recv(c, 10000, &data, &n);
    }
    assert_int_equal(rc, PARLEY_ECLOSED);
    assert_int_equal(wsconn_close_code(c), 1009);
    wsconn_free(c);
    raw_expect_ping(other);
    wsconn_free(other);
}

static void test_unknown_method_gets_eunknown_method(void **state)
{
    (void)state;
    struct wsconn *c = raw_dial(srv.url);
    /* Frame{version=1, request{id=77, field 99 = 1}}: a method this server
     * does not know. */
    const uint8_t req[] = {0x08, 0x4d, 0x98, 0x06, 0x01};
    uint8_t frame[2 + 2 + sizeof(req)] = {0x08, 0x01, 0x12, sizeof(req)};
    memcpy(frame + 4, req, sizeof(req));
    raw_send_bytes(c, frame, sizeof(frame));
    raw_expect_error(c, 77, PARLEY_EUNKNOWN_METHOD);
    raw_expect_ping(c);
    wsconn_free(c);
}

static void test_missing_version_gets_eversion(void **state)
{
    (void)state;
    struct wsconn *c = raw_dial(srv.url);
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__PingRequest ping = PARLEY__V1__PING_REQUEST__INIT;
    req.id = 5;
    req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
    req.ping = &ping;
    raw_send_request(c, &req, 0);
    raw_expect_error(c, 5, PARLEY_EVERSION);
    wsconn_free(c);
}

static void test_send_before_auth_gets_enoauth(void **state)
{
    (void)state;
    struct wsconn *c = raw_dial(srv.url);
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
    peer.username = "nobody";
    sr.to = &peer;
    sr.client_id = 1;
    sr.text.data = (uint8_t *)"hello";
    sr.text.len = 5;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &sr;
    raw_send_request(c, &req, FRAME_VERSION);
    raw_expect_error(c, req.id, PARLEY_ENOAUTH);
    wsconn_free(c);
}

static void test_bad_signature_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], nonce[32], sig[64];
    struct wsconn *c = raw_dial(srv.url);
    uint64_t device = raw_signup_ok(c, "sigtest", pk, sk);
    wsconn_free(c);

    /* Sign-up with a signature by another key. */
    c = raw_dial(srv.url);
    uint8_t pk2[32], sk2[64], sk3[64], pk3[32];
    crypto_sign_keypair(pk2, sk2);
    crypto_sign_keypair(pk3, sk3);
    raw_challenge(c, nonce);
    raw_sign_nonce(sk3, nonce, sig);
    raw_expect_error(c, raw_signup_req(c, "sigtest2", pk2, nonce, sig), PARLEY_EBAD_SIGNATURE);

    /* Login to an existing device with a wrong key. */
    raw_challenge(c, nonce);
    raw_sign_nonce(sk3, nonce, sig);
    raw_expect_error(c, raw_auth_req(c, device, nonce, sig), PARLEY_EBAD_SIGNATURE);

    /* The right key on a fresh nonce still works. */
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    uint64_t id = raw_auth_req(c, device, nonce, sig);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_string_equal(f->response->auth->username, "sigtest");
    frame_free(f);
    wsconn_free(c);
}

static void test_replayed_nonce_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], nonce[32], sig[64];
    struct wsconn *a = raw_dial(srv.url);
    uint64_t device = raw_signup_ok(a, "replay", pk, sk);
    wsconn_free(a);

    /* A good login, captured... */
    a = raw_dial(srv.url);
    raw_challenge(a, nonce);
    raw_sign_nonce(sk, nonce, sig);
    uint64_t id = raw_auth_req(a, device, nonce, sig);
    PlFrame *f = raw_recv_response(a);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    frame_free(f);

    /* ...and replayed on another connection. */
    struct wsconn *b = raw_dial(srv.url);
    raw_expect_error(b, raw_auth_req(b, device, nonce, sig), PARLEY_EBAD_NONCE);
    /* Replayed on that connection after it asked for its own nonce. */
    uint8_t fresh[32];
    raw_challenge(b, fresh);
    raw_expect_error(b, raw_auth_req(b, device, nonce, sig), PARLEY_EBAD_NONCE);
    /* The fresh nonce was consumed by the failed attempt too. */
    raw_sign_nonce(sk, fresh, sig);
    raw_expect_error(b, raw_auth_req(b, device, fresh, sig), PARLEY_EBAD_NONCE);
    raw_expect_ping(b);
    wsconn_free(b);
    wsconn_free(a);
}

static void test_duplicate_and_invalid_username(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], nonce[32], sig[64];
    struct wsconn *c = raw_dial(srv.url);
    raw_signup_ok(c, "taken_name", pk, sk);
    wsconn_free(c);
    c = raw_dial(srv.url);
    crypto_sign_keypair(pk, sk);
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    raw_expect_error(c, raw_signup_req(c, "Taken_Name", pk, nonce, sig), PARLEY_ETAKEN);
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    raw_expect_error(c, raw_signup_req(c, "no", pk, nonce, sig), PARLEY_EBAD_USERNAME);
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    raw_expect_error(c, raw_signup_req(c, "bad-char", pk, nonce, sig), PARLEY_EBAD_USERNAME);
    wsconn_free(c);
}

/* --- libparley end to end ----------------------------------------------- */

struct collected {
    char texts[16][64];
    uint64_t pts[16];
    int n;
};

static int collect(void *arg, const struct parley_msg *m)
{
    struct collected *c = arg;
    if (c->n < 16) {
        snprintf(c->texts[c->n], sizeof(c->texts[0]), "%s", m->text);
        c->pts[c->n] = m->pts;
        c->n++;
    }
    return 0;
}

static struct parley *open_device(const char *home)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
    struct parley_options opt = {.home = home, .server_url = srv.url};
    struct parley *p = NULL;
    assert_int_equal(parley_open(&opt, &p), 0);
    return p;
}

/* The text rules hold on the wire, not only in libparley: a NUL inside the
 * text, ill-formed UTF-8, an empty text and one over the limit are refused
 * with their codes, nothing is stored, and the connection keeps working. */
static void test_bad_text_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *b = raw_dial(srv.url);
    (void)raw_signup_ok(b, "textpeer", pk, sk);
    struct wsconn *a = raw_dial(srv.url);
    (void)raw_signup_ok(a, "textsender", pk, sk);

    static const char nul[] = "before\0after";
    raw_expect_error(a, raw_send_text(a, "textpeer", nul, sizeof(nul) - 1), PARLEY_EBAD_UTF8);
    static const char bad[] = "caf\xc3";
    raw_expect_error(a, raw_send_text(a, "textpeer", bad, sizeof(bad) - 1), PARLEY_EBAD_UTF8);
    static const char overlong[] = "\xc0\xaf";
    raw_expect_error(a, raw_send_text(a, "textpeer", overlong, sizeof(overlong) - 1), PARLEY_EBAD_UTF8);
    raw_expect_error(a, raw_send_text(a, "textpeer", "", 0), PARLEY_EINVAL);
    size_t n = 4097 * 2;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* 4097 code points, 8194 bytes */
    raw_expect_error(a, raw_send_text(a, "textpeer", big, n), PARLEY_ETEXT_TOO_LONG);
    /* Exactly at the limit is fine. */
    uint64_t id = raw_send_text(a, "textpeer", big, n - 2);
    free(big);
    PlFrame *f = raw_recv_response(a);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->send->message->text.len, 4096 * 2);
    /* The refused sends left nothing: the stored message is the first. */
    assert_int_equal(f->response->send->pts, 1);
    frame_free(f);
    raw_expect_ping(a);
    wsconn_free(a);
    wsconn_free(b);
}

static void test_libparley_both_ways_and_retry_is_idempotent(void **state)
{
    (void)state;
    char home_a[300], home_b[300];
    snprintf(home_a, sizeof(home_a), "%s/home-carol", srv.dir);
    snprintf(home_b, sizeof(home_b), "%s/home-dave", srv.dir);
    struct parley *a = open_device(home_a), *b = open_device(home_b);
    assert_int_equal(parley_signup(a, "carol"), 0);
    assert_int_equal(parley_signup(b, "dave"), 0);

    struct parley_msg m;
    assert_int_equal(parley_send(a, "@dave", "one", 3, 0, &m), 0);
    assert_false(m.duplicate);
    uint64_t first_id = m.id;
    assert_int_equal(parley_send(a, "@dave", "two", 3, 99, &m), 0);
    assert_int_equal(parley_send(a, "@dave", "two", 3, 99, &m), 0);
    assert_true(m.duplicate);
    assert_true(m.id > first_id);
    assert_int_equal(parley_send(b, "@carol", "back", 4, 0, NULL), 0);
    assert_int_equal(parley_send(a, "@nobody_here", "x", 1, 0, NULL), PARLEY_ENOUSER);

    struct collected got = {0};
    assert_int_equal(parley_recv(b, 0, false, collect, &got), 0);
    /* dave's log: carol's two messages, then his own reply. */
    assert_int_equal(got.n, 3);
    assert_string_equal(got.texts[0], "one");
    assert_string_equal(got.texts[1], "two");
    assert_string_equal(got.texts[2], "back");
    assert_true(got.pts[0] < got.pts[1] && got.pts[1] < got.pts[2]);

    struct collected again = {0};
    assert_int_equal(parley_recv(b, 0, false, collect, &again), 0);
    assert_int_equal(again.n, 0);

    struct collected hist = {0};
    assert_int_equal(parley_history(a, "@dave", 0, 10, collect, &hist), 0);
    assert_int_equal(hist.n, 3);
    assert_string_equal(hist.texts[0], "back");
    parley_close(a);
    parley_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_protobuf_gets_emalformed),
        cmocka_unit_test(test_oversize_frame_closes_with_1009_others_unaffected),
        cmocka_unit_test(test_unknown_method_gets_eunknown_method),
        cmocka_unit_test(test_missing_version_gets_eversion),
        cmocka_unit_test(test_send_before_auth_gets_enoauth),
        cmocka_unit_test(test_bad_signature_refused),
        cmocka_unit_test(test_replayed_nonce_refused),
        cmocka_unit_test(test_duplicate_and_invalid_username),
        cmocka_unit_test(test_bad_text_refused),
        cmocka_unit_test(test_libparley_both_ways_and_retry_is_idempotent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
