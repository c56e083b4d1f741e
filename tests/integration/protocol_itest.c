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
#include "testserver.h"

#include <parley.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct testserver srv;
static uint64_t next_id = 1;

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
    int rc = testserver_stop(&srv, SIGTERM);
    bool dirty = testserver_sanitizer_report(&srv);
    testserver_cleanup(&srv);
    return rc == 0 && !dirty ? 0 : -1;
}

static struct wsconn *dial(void)
{
    struct wsconn_options opt = {.timeout_ms = 10000};
    struct wsconn *c = NULL;
    int rc = wsconn_open(srv.url, &opt, &c);
    assert_int_equal(rc, 0);
    return c;
}

static void send_raw(struct wsconn *c, const uint8_t *data, size_t len)
{
    assert_int_equal(wsconn_send(c, data, len, 10000), 0);
}

static void send_request(struct wsconn *c, Parley__V1__Request *req, uint32_t version)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = version;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = req;
    size_t len;
    uint8_t *buf = frame_encode(&f, &len);
    assert_non_null(buf);
    send_raw(c, buf, len);
    free(buf);
}

/* Waits for the next Response (skipping pushes); the caller frees it. */
static PlFrame *recv_response(struct wsconn *c)
{
    for (;;) {
        uint8_t *data;
        size_t len;
        assert_int_equal(wsconn_recv(c, 10000, &data, &len), 0);
        PlFrame *f = NULL;
        assert_int_equal(frame_decode(data, len, FRAME_MAX_DEFAULT, &f), 0);
        free(data);
        if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE)
            return f;
        frame_free(f);
    }
}

/* Asserts the next response answers id with error code err. */
static void expect_error(struct wsconn *c, uint64_t id, int err)
{
    PlFrame *f = recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_non_null(f->response->error);
    assert_string_equal(err_name(err_from_wire(f->response->error->code)), err_name(err));
    frame_free(f);
}

static void expect_ping_works(struct wsconn *c)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__PingRequest ping = PARLEY__V1__PING_REQUEST__INIT;
    ping.payload = 0xfeed;
    req.id = next_id++;
    req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
    req.ping = &ping;
    send_request(c, &req, FRAME_VERSION);
    PlFrame *f = recv_response(c);
    assert_int_equal(f->response->id, req.id);
    assert_null(f->response->error);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_PING);
    assert_int_equal(f->response->ping->payload, 0xfeed);
    frame_free(f);
}

/* Asks for a nonce; copies it into nonce[32]. */
static void challenge(struct wsconn *c, uint8_t nonce[32])
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__ChallengeRequest ch = PARLEY__V1__CHALLENGE_REQUEST__INIT;
    req.id = next_id++;
    req.method_case = PARLEY__V1__REQUEST__METHOD_CHALLENGE;
    req.challenge = &ch;
    send_request(c, &req, FRAME_VERSION);
    PlFrame *f = recv_response(c);
    assert_null(f->response->error);
    assert_int_equal(f->response->challenge->nonce.len, 32);
    memcpy(nonce, f->response->challenge->nonce.data, 32);
    frame_free(f);
}

static void sign_nonce(const uint8_t sk[64], const uint8_t nonce[32], uint8_t sig[64])
{
    uint8_t msg[14 + 32];
    memcpy(msg, "parley-auth-v1", 14);
    memcpy(msg + 14, nonce, 32);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
}

static uint64_t signup_req(struct wsconn *c, const char *name, const uint8_t pk[32],
                           const uint8_t nonce[32], const uint8_t sig[64])
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SignupRequest su = PARLEY__V1__SIGNUP_REQUEST__INIT;
    su.username = (char *)name;
    su.public_key.data = (uint8_t *)pk;
    su.public_key.len = 32;
    su.nonce.data = (uint8_t *)nonce;
    su.nonce.len = 32;
    su.signature.data = (uint8_t *)sig;
    su.signature.len = 64;
    req.id = next_id++;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SIGNUP;
    req.signup = &su;
    send_request(c, &req, FRAME_VERSION);
    return req.id;
}

static uint64_t auth_req(struct wsconn *c, uint64_t device, const uint8_t nonce[32],
                         const uint8_t sig[64])
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__AuthRequest au = PARLEY__V1__AUTH_REQUEST__INIT;
    au.device_id = device;
    au.nonce.data = (uint8_t *)nonce;
    au.nonce.len = 32;
    au.signature.data = (uint8_t *)sig;
    au.signature.len = 64;
    req.id = next_id++;
    req.method_case = PARLEY__V1__REQUEST__METHOD_AUTH;
    req.auth = &au;
    send_request(c, &req, FRAME_VERSION);
    return req.id;
}

/* Signs up name on c; returns the device id. */
static uint64_t signup_ok(struct wsconn *c, const char *name, uint8_t pk[32], uint8_t sk[64])
{
    uint8_t nonce[32], sig[64];
    crypto_sign_keypair(pk, sk);
    challenge(c, nonce);
    sign_nonce(sk, nonce, sig);
    uint64_t id = signup_req(c, name, pk, nonce, sig);
    PlFrame *f = recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    uint64_t device = f->response->signup->device_id;
    assert_true(device > 0);
    frame_free(f);
    return device;
}

static void test_malformed_protobuf_gets_emalformed(void **state)
{
    (void)state;
    struct wsconn *c = dial();
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99};
    send_raw(c, junk, sizeof(junk));
    expect_error(c, 0, PARLEY_EMALFORMED);
    expect_ping_works(c);
    wsconn_free(c);
}

static void test_oversize_frame_closes_with_1009_others_unaffected(void **state)
{
    (void)state;
    struct wsconn *other = dial();
    struct wsconn *c = dial();
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
    expect_ping_works(other);
    wsconn_free(other);
}

static void test_unknown_method_gets_eunknown_method(void **state)
{
    (void)state;
    struct wsconn *c = dial();
    /* Frame{version=1, request{id=77, field 99 = 1}}: a method this server
     * does not know. */
    const uint8_t req[] = {0x08, 0x4d, 0x98, 0x06, 0x01};
    uint8_t frame[2 + 2 + sizeof(req)] = {0x08, 0x01, 0x12, sizeof(req)};
    memcpy(frame + 4, req, sizeof(req));
    send_raw(c, frame, sizeof(frame));
    expect_error(c, 77, PARLEY_EUNKNOWN_METHOD);
    expect_ping_works(c);
    wsconn_free(c);
}

static void test_missing_version_gets_eversion(void **state)
{
    (void)state;
    struct wsconn *c = dial();
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__PingRequest ping = PARLEY__V1__PING_REQUEST__INIT;
    req.id = 5;
    req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
    req.ping = &ping;
    send_request(c, &req, 0);
    expect_error(c, 5, PARLEY_EVERSION);
    wsconn_free(c);
}

static void test_send_before_auth_gets_enoauth(void **state)
{
    (void)state;
    struct wsconn *c = dial();
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
    peer.username = "nobody";
    sr.to = &peer;
    sr.client_id = 1;
    sr.text.data = (uint8_t *)"hello";
    sr.text.len = 5;
    req.id = next_id++;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &sr;
    send_request(c, &req, FRAME_VERSION);
    expect_error(c, req.id, PARLEY_ENOAUTH);
    wsconn_free(c);
}

static void test_bad_signature_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], nonce[32], sig[64];
    struct wsconn *c = dial();
    uint64_t device = signup_ok(c, "sigtest", pk, sk);
    wsconn_free(c);

    /* Sign-up with a signature by another key. */
    c = dial();
    uint8_t pk2[32], sk2[64], sk3[64], pk3[32];
    crypto_sign_keypair(pk2, sk2);
    crypto_sign_keypair(pk3, sk3);
    challenge(c, nonce);
    sign_nonce(sk3, nonce, sig);
    expect_error(c, signup_req(c, "sigtest2", pk2, nonce, sig), PARLEY_EBAD_SIGNATURE);

    /* Login to an existing device with a wrong key. */
    challenge(c, nonce);
    sign_nonce(sk3, nonce, sig);
    expect_error(c, auth_req(c, device, nonce, sig), PARLEY_EBAD_SIGNATURE);

    /* The right key on a fresh nonce still works. */
    challenge(c, nonce);
    sign_nonce(sk, nonce, sig);
    uint64_t id = auth_req(c, device, nonce, sig);
    PlFrame *f = recv_response(c);
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
    struct wsconn *a = dial();
    uint64_t device = signup_ok(a, "replay", pk, sk);
    wsconn_free(a);

    /* A good login, captured... */
    a = dial();
    challenge(a, nonce);
    sign_nonce(sk, nonce, sig);
    uint64_t id = auth_req(a, device, nonce, sig);
    PlFrame *f = recv_response(a);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    frame_free(f);

    /* ...and replayed on another connection. */
    struct wsconn *b = dial();
    expect_error(b, auth_req(b, device, nonce, sig), PARLEY_EBAD_NONCE);
    /* Replayed on that connection after it asked for its own nonce. */
    uint8_t fresh[32];
    challenge(b, fresh);
    expect_error(b, auth_req(b, device, nonce, sig), PARLEY_EBAD_NONCE);
    /* The fresh nonce was consumed by the failed attempt too. */
    sign_nonce(sk, fresh, sig);
    expect_error(b, auth_req(b, device, fresh, sig), PARLEY_EBAD_NONCE);
    expect_ping_works(b);
    wsconn_free(b);
    wsconn_free(a);
}

static void test_duplicate_and_invalid_username(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], nonce[32], sig[64];
    struct wsconn *c = dial();
    signup_ok(c, "taken_name", pk, sk);
    wsconn_free(c);
    c = dial();
    crypto_sign_keypair(pk, sk);
    challenge(c, nonce);
    sign_nonce(sk, nonce, sig);
    expect_error(c, signup_req(c, "Taken_Name", pk, nonce, sig), PARLEY_ETAKEN);
    challenge(c, nonce);
    sign_nonce(sk, nonce, sig);
    expect_error(c, signup_req(c, "no", pk, nonce, sig), PARLEY_EBAD_USERNAME);
    challenge(c, nonce);
    sign_nonce(sk, nonce, sig);
    expect_error(c, signup_req(c, "bad-char", pk, nonce, sig), PARLEY_EBAD_USERNAME);
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

/* Sends text[0..len) to @to on c and returns the request id. */
static uint64_t send_text(struct wsconn *c, const char *to, const void *text, size_t len)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
    peer.username = (char *)to;
    sr.to = &peer;
    sr.client_id = next_id * 7919;
    sr.text.data = (uint8_t *)text;
    sr.text.len = len;
    req.id = next_id++;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &sr;
    send_request(c, &req, FRAME_VERSION);
    return req.id;
}

/* The text rules hold on the wire, not only in libparley: a NUL inside the
 * text, ill-formed UTF-8, an empty text and one over the limit are refused
 * with their codes, nothing is stored, and the connection keeps working. */
static void test_bad_text_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *b = dial();
    (void)signup_ok(b, "textpeer", pk, sk);
    struct wsconn *a = dial();
    (void)signup_ok(a, "textsender", pk, sk);

    static const char nul[] = "before\0after";
    expect_error(a, send_text(a, "textpeer", nul, sizeof(nul) - 1), PARLEY_EBAD_UTF8);
    static const char bad[] = "caf\xc3";
    expect_error(a, send_text(a, "textpeer", bad, sizeof(bad) - 1), PARLEY_EBAD_UTF8);
    static const char overlong[] = "\xc0\xaf";
    expect_error(a, send_text(a, "textpeer", overlong, sizeof(overlong) - 1), PARLEY_EBAD_UTF8);
    expect_error(a, send_text(a, "textpeer", "", 0), PARLEY_EINVAL);
    size_t n = 4097 * 2;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* 4097 code points, 8194 bytes */
    expect_error(a, send_text(a, "textpeer", big, n), PARLEY_ETEXT_TOO_LONG);
    /* Exactly at the limit is fine. */
    uint64_t id = send_text(a, "textpeer", big, n - 2);
    free(big);
    PlFrame *f = recv_response(a);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->send->message->text.len, 4096 * 2);
    /* The refused sends left nothing: the stored message is the first. */
    assert_int_equal(f->response->send->pts, 1);
    frame_free(f);
    expect_ping_works(a);
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
