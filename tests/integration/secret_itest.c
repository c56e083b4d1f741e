/* SPDX-License-Identifier: MIT */
/* Secret envelopes against a real parleyd, in the raw protocol: a send is
 * routed to the recipient device live and queued for it, deleted when that
 * device acks it (and then gone from the database files too); an offline
 * device fetches page by page; a wrong device list is refused with the
 * mismatch and changes nothing; retries are answered with the original;
 * malformed sends are refused. Bodies are opaque bytes here: the server
 * never reads them. */
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_LEN 33
#define BODY_MAX 32768
#define TYPE_WHISPER 2
#define TYPE_PREKEY 3

static struct testserver srv;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    /* Debug logging: even at its most verbose, no body reaches the log. */
    return testserver_start_conf(&srv, "[server]\nlog_level = debug\n");
}

static int teardown(void **state)
{
    (void)state;
    return testserver_finish(&srv);
}

/* A user signed up on a fresh connection, with keys uploaded (or not). */
struct user {
    struct wsconn *c;
    uint64_t device;
    uint8_t pk[32];
    uint8_t sk[64];
};

static void upload_keys(struct wsconn *c, uint8_t b)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__UploadKeysRequest up = PARLEY__V1__UPLOAD_KEYS_REQUEST__INIT;
    Parley__V1__SignedPreKey sp = PARLEY__V1__SIGNED_PRE_KEY__INIT;
    uint8_t identity[KEY_LEN], signed_key[KEY_LEN], sig[64];
    identity[0] = signed_key[0] = 0x05;
    memset(identity + 1, b, KEY_LEN - 1);
    memset(signed_key + 1, b ^ 0xff, KEY_LEN - 1);
    memset(sig, 0x5a, sizeof(sig));
    up.identity_key.data = identity;
    up.identity_key.len = KEY_LEN;
    up.registration_id = 77;
    sp.id = 1;
    sp.public_key.data = signed_key;
    sp.public_key.len = KEY_LEN;
    sp.signature.data = sig;
    sp.signature.len = sizeof(sig);
    up.signed_prekey = &sp;
    req.method_case = PARLEY__V1__REQUEST__METHOD_UPLOAD_KEYS;
    req.upload_keys = &up;
    frame_free(raw_call(c, &req));
}

static void user_new(struct user *u, const char *name, bool keys)
{
    u->c = raw_dial(srv.url);
    u->device = raw_signup_ok(u->c, name, u->pk, u->sk);
    if (keys)
        upload_keys(u->c, (uint8_t)u->device);
}

/* A send of n envelopes (devices[i], type, body i) to peer; returns its id. */
struct env_spec {
    uint64_t device;
    uint32_t type;
    const uint8_t *body;
    size_t len;
};

static uint64_t send_secret(struct wsconn *c, const char *peer, uint64_t client_id,
                            const struct env_spec *e, size_t n)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendSecretRequest ss = PARLEY__V1__SEND_SECRET_REQUEST__INIT;
    Parley__V1__Peer p = PARLEY__V1__PEER__INIT;
    Parley__V1__Envelope envs[8], *envp[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        parley__v1__envelope__init(&envs[i]);
        envs[i].device_id = e[i].device;
        envs[i].type = e[i].type;
        envs[i].body.data = (uint8_t *)e[i].body;
        envs[i].body.len = e[i].len;
        envp[i] = &envs[i];
    }
    p.username = (char *)peer;
    ss.to = &p;
    ss.client_id = client_id;
    ss.n_envelopes = n;
    ss.envelopes = envp;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND_SECRET;
    req.send_secret = &ss;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

/* Sends one envelope for device and asserts success; returns the message id. */
static uint64_t send_one_ok(struct wsconn *c, const char *peer, uint64_t device, uint64_t client_id,
                            const uint8_t *body, size_t len, bool *duplicate)
{
    struct env_spec e = {device, TYPE_PREKEY, body, len};
    uint64_t id = send_secret(c, peer, client_id, &e, 1);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_SEND_SECRET);
    uint64_t msg = f->response->send_secret->id;
    assert_true(msg > 0);
    assert_true(f->response->send_secret->date > 0);
    if (duplicate)
        *duplicate = f->response->send_secret->duplicate;
    frame_free(f);
    return msg;
}

/* The next frame on c, which must be a secret push; the caller frees it. */
static PlFrame *expect_secret_push(struct wsconn *c)
{
    uint8_t *data;
    size_t len;
    assert_int_equal(wsconn_recv(c, 10000, &data, &len), 0);
    PlFrame *f = NULL;
    assert_int_equal(frame_decode(data, len, FRAME_MAX_DEFAULT, &f), 0);
    free(data);
    assert_int_equal(f->body_case, PARLEY__V1__FRAME__BODY_PUSH);
    assert_int_equal(f->push->kind_case, PARLEY__V1__PUSH__KIND_SECRET);
    return f;
}

/* This device's queued envelopes, one page; the caller frees the frame. */
static PlFrame *fetch(struct wsconn *c, uint32_t limit)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__FetchSecretRequest fr = PARLEY__V1__FETCH_SECRET_REQUEST__INIT;
    fr.limit = limit;
    req.method_case = PARLEY__V1__REQUEST__METHOD_FETCH_SECRET;
    req.fetch_secret = &fr;
    PlFrame *f = raw_call(c, &req);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_FETCH_SECRET);
    return f;
}

static uint64_t ack_send(struct wsconn *c, const uint64_t *ids, size_t n)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__AckSecretRequest ar = PARLEY__V1__ACK_SECRET_REQUEST__INIT;
    ar.ids = (uint64_t *)ids;
    ar.n_ids = n;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_ACK_SECRET;
    req.ack_secret = &ar;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

static unsigned ack(struct wsconn *c, const uint64_t *ids, size_t n)
{
    uint64_t id = ack_send(c, ids, n);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_ACK_SECRET);
    unsigned deleted = f->response->ack_secret->deleted;
    frame_free(f);
    return deleted;
}

/* Whether the database or its write-ahead log holds any 32-byte piece of
 * body (pieces 1000 bytes apart, so that one falls inside a page whatever
 * way SQLite splits the row over overflow pages). */
static bool store_holds(const uint8_t *body, size_t len)
{
    for (size_t off = 0; off + 32 <= len; off += 1000)
        if (testserver_store_holds(&srv, body + off, 32))
            return true;
    return false;
}

static void test_envelope_is_pushed_queued_and_gone_after_ack(void **state)
{
    (void)state;
    struct user alice, bob;
    user_new(&alice, "sc_alice", true);
    user_new(&bob, "sc_bob", true);
    /* A body over one database page, so that overflow pages are covered. */
    size_t len = 6000;
    uint8_t *body = malloc(len);
    assert_non_null(body);
    randombytes_buf(body, len);

    uint64_t msg = send_one_ok(alice.c, "@sc_bob", bob.device, 4242, body, len, NULL);
    PlFrame *f = expect_secret_push(bob.c);
    const Parley__V1__SecretEnvelope *e = f->push->secret;
    assert_int_equal(e->message_id, msg);
    assert_true(e->id > 0);
    assert_int_equal(e->from_device_id, alice.device);
    assert_string_equal(e->from_username, "sc_alice");
    assert_string_equal(e->to_username, "sc_bob");
    assert_int_equal(e->type, TYPE_PREKEY);
    assert_int_equal(e->body.len, len);
    assert_memory_equal(e->body.data, body, len);
    uint64_t env_id = e->id;
    frame_free(f);

    /* Queued until acked, for bob's device only. */
    f = fetch(bob.c, 0);
    assert_int_equal(f->response->fetch_secret->n_envelopes, 1);
    assert_int_equal(f->response->fetch_secret->envelopes[0]->id, env_id);
    assert_memory_equal(f->response->fetch_secret->envelopes[0]->body.data, body, len);
    assert_false(f->response->fetch_secret->more);
    frame_free(f);
    f = fetch(alice.c, 0);
    assert_int_equal(f->response->fetch_secret->n_envelopes, 0);
    frame_free(f);
    /* Alice cannot ack bob's copy away. */
    assert_int_equal(ack(alice.c, &env_id, 1), 0);
    assert_true(store_holds(body, len));

    assert_int_equal(ack(bob.c, &env_id, 1), 1);
    assert_int_equal(ack(bob.c, &env_id, 1), 0);
    f = fetch(bob.c, 0);
    assert_int_equal(f->response->fetch_secret->n_envelopes, 0);
    frame_free(f);

    /* The store scrubs its files once idle: wait for it (bounded). */
    bool held = true;
    for (int i = 0; i < 100 && held; i++) {
        held = store_holds(body, len);
        if (held)
            usleep(100 * 1000);
    }
    assert_false(held);
    /* Nor the server's log, raw or in hex. */
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", body[i]);
    assert_false(testserver_file_holds(srv.err_path, (const uint8_t *)hex, 64));
    for (size_t off = 0; off + 32 <= len; off += 1000)
        assert_false(testserver_file_holds(srv.err_path, body + off, 32));
    char *m = raw_http_get(srv.port, "/metrics");
    assert_true(raw_metric(m, "parley_secret_envelopes_total") >= 1);
    assert_true(raw_metric(m, "parley_secret_acked_total") >= 1);
    free(m);
    free(body);
    wsconn_free(bob.c);
    wsconn_free(alice.c);
}

static void test_offline_device_fetches_page_by_page(void **state)
{
    (void)state;
    struct user alice, bob;
    user_new(&alice, "sc_off_alice", true);
    user_new(&bob, "sc_off_bob", true);
    wsconn_free(bob.c);
    uint8_t body[3][40];
    uint64_t msgs[3];
    for (int i = 0; i < 3; i++) {
        randombytes_buf(body[i], sizeof(body[i]));
        msgs[i] = send_one_ok(alice.c, "sc_off_bob", bob.device, 100 + (uint64_t)i, body[i],
                              sizeof(body[i]), NULL);
    }
    assert_true(msgs[0] < msgs[1] && msgs[1] < msgs[2]);

    bob.c = raw_dial(srv.url);
    raw_auth_ok(bob.c, bob.device, bob.sk);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        PlFrame *f = fetch(bob.c, 1);
        const Parley__V1__FetchSecretResponse *r = f->response->fetch_secret;
        assert_int_equal(r->n_envelopes, 1);
        assert_int_equal(r->more, i < 2);
        assert_int_equal(r->envelopes[0]->message_id, msgs[i]);
        assert_memory_equal(r->envelopes[0]->body.data, body[i], sizeof(body[i]));
        assert_int_equal(r->envelopes[0]->from_user_id != 0, true);
        ids[i] = r->envelopes[0]->id;
        frame_free(f);
        /* Acked one by one: the next page starts after it. */
        assert_int_equal(ack(bob.c, &ids[i], 1), 1);
    }
    PlFrame *f = fetch(bob.c, 10);
    assert_int_equal(f->response->fetch_secret->n_envelopes, 0);
    frame_free(f);
    wsconn_free(bob.c);
    wsconn_free(alice.c);
}

static void test_wrong_device_list_is_refused_with_the_mismatch(void **state)
{
    (void)state;
    struct user alice, bob;
    user_new(&alice, "sc_mm_alice", true);
    user_new(&bob, "sc_mm_bob", true);
    uint8_t body[16] = {1, 2, 3};
    /* No envelope for bob's device; one for a device that does not exist,
     * and one for alice's own sending device. */
    struct env_spec e[2] = {{bob.device + 100000, TYPE_WHISPER, body, sizeof(body)},
                            {alice.device, TYPE_WHISPER, body, sizeof(body)}};
    uint64_t id = send_secret(alice.c, "sc_mm_bob", 9, e, 2);
    PlFrame *f = raw_recv_response(alice.c);
    assert_int_equal(f->response->id, id);
    const Parley__V1__Error *err = f->response->error;
    assert_non_null(err);
    assert_int_equal(err->code, 37);
    assert_int_equal(err->n_devices, 2);
    const Parley__V1__DeviceMismatch *mb = err->devices[0], *ma = err->devices[1];
    assert_int_equal(mb->n_missing, 1);
    assert_int_equal(mb->missing[0], bob.device);
    assert_int_equal(mb->n_stale, 1);
    assert_int_equal(mb->stale[0], bob.device + 100000);
    assert_int_equal(ma->n_missing, 0);
    assert_int_equal(ma->n_stale, 1);
    assert_int_equal(ma->stale[0], alice.device);
    frame_free(f);

    /* An extra device only: stale alone. */
    struct env_spec e2[2] = {{bob.device, TYPE_WHISPER, body, sizeof(body)},
                             {bob.device + 100000, TYPE_WHISPER, body, sizeof(body)}};
    id = send_secret(alice.c, "sc_mm_bob", 10, e2, 2);
    f = raw_recv_response(alice.c);
    assert_int_equal(f->response->id, id);
    assert_non_null(f->response->error);
    assert_int_equal(f->response->error->n_devices, 1);
    assert_int_equal(f->response->error->devices[0]->user_id,
                     f->response->error->devices[0]->user_id);
    assert_int_equal(f->response->error->devices[0]->n_missing, 0);
    assert_int_equal(f->response->error->devices[0]->n_stale, 1);
    frame_free(f);

    /* Nothing was queued by the refused sends. */
    f = fetch(bob.c, 0);
    assert_int_equal(f->response->fetch_secret->n_envelopes, 0);
    frame_free(f);
    wsconn_free(bob.c);
    wsconn_free(alice.c);
}

static void test_retry_returns_the_original(void **state)
{
    (void)state;
    struct user alice, bob;
    user_new(&alice, "sc_re_alice", true);
    user_new(&bob, "sc_re_bob", true);
    wsconn_free(bob.c);
    uint8_t body[32];
    randombytes_buf(body, sizeof(body));
    bool dup = true;
    uint64_t first = send_one_ok(alice.c, "sc_re_bob", bob.device, 555, body, sizeof(body), &dup);
    assert_false(dup);
    uint64_t again = send_one_ok(alice.c, "sc_re_bob", bob.device, 555, body, sizeof(body), &dup);
    assert_true(dup);
    assert_int_equal(again, first);

    bob.c = raw_dial(srv.url);
    raw_auth_ok(bob.c, bob.device, bob.sk);
    PlFrame *f = fetch(bob.c, 0);
    assert_int_equal(f->response->fetch_secret->n_envelopes, 1);
    frame_free(f);
    wsconn_free(bob.c);
    wsconn_free(alice.c);
}

static void test_malformed_sends_and_acks_are_refused(void **state)
{
    (void)state;
    struct user alice, bob, carol;
    user_new(&alice, "sc_bad_alice", true);
    user_new(&bob, "sc_bad_bob", true);
    user_new(&carol, "sc_bad_carol", false); /* no keys */
    uint8_t *big = calloc(1, BODY_MAX + 1);
    assert_non_null(big);
    struct env_spec ok = {bob.device, TYPE_PREKEY, big, 10};
    struct env_spec e;

    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 0, &ok, 1), PARLEY_EINVAL);
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 1, &ok, 0), PARLEY_EINVAL);
    e = ok;
    e.type = 1;
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 1, &e, 1), PARLEY_EINVAL);
    e = ok;
    e.len = 0;
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 1, &e, 1), PARLEY_EINVAL);
    e = ok;
    e.len = BODY_MAX + 1;
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 1, &e, 1), PARLEY_EINVAL);
    e = ok;
    e.device = 0;
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 1, &e, 1), PARLEY_EINVAL);
    struct env_spec twice[2] = {ok, ok};
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_bob", 1, twice, 2), PARLEY_EINVAL);
    raw_expect_error(alice.c, send_secret(alice.c, "sc_nobody_here", 1, &ok, 1), PARLEY_ENOUSER);
    e = ok;
    e.device = carol.device;
    raw_expect_error(alice.c, send_secret(alice.c, "sc_bad_carol", 1, &e, 1), PARLEY_ENOKEYS);
    raw_expect_error(alice.c, ack_send(alice.c, NULL, 0), PARLEY_EINVAL);
    /* The largest body is fine. */
    e = ok;
    e.len = BODY_MAX;
    (void)send_one_ok(alice.c, "sc_bad_bob", bob.device, 77, big, BODY_MAX, NULL);
    PlFrame *f = expect_secret_push(bob.c);
    assert_int_equal(f->push->secret->body.len, BODY_MAX);
    frame_free(f);
    /* Before authentication, nothing. */
    struct wsconn *anon = raw_dial(srv.url);
    raw_expect_error(anon, send_secret(anon, "sc_bad_bob", 1, &ok, 1), PARLEY_ENOAUTH);
    wsconn_free(anon);
    raw_expect_ping(alice.c);
    free(big);
    wsconn_free(carol.c);
    wsconn_free(bob.c);
    wsconn_free(alice.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_is_pushed_queued_and_gone_after_ack),
        cmocka_unit_test(test_offline_device_fetches_page_by_page),
        cmocka_unit_test(test_wrong_device_list_is_refused_with_the_mismatch),
        cmocka_unit_test(test_retry_returns_the_original),
        cmocka_unit_test(test_malformed_sends_and_acks_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
