/* SPDX-License-Identifier: MIT */
/* Prekeys against a real parleyd, in the raw protocol: upload, bundle
 * fetches that consume one-time prekeys, refusals that change nothing
 * (taken ids, bad key forms, a second identity key), an empty stock that
 * still gives a bundle, and the low-stock push to the device's connections. */
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

#define KEY_LEN 33
#define SIG_LEN 64
#define MAX_UPLOAD 100

static struct testserver srv;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    return testserver_start_conf(&srv, "");
}

static int teardown(void **state)
{
    (void)state;
    return testserver_finish(&srv);
}

/* A key in Signal's form whose 32 bytes are all b. */
static void fill_key(uint8_t key[KEY_LEN], uint8_t b)
{
    key[0] = 0x05;
    memset(key + 1, b, KEY_LEN - 1);
}

/* What an upload sends; the test breaks fields of it on purpose. */
struct upload {
    uint8_t identity[KEY_LEN];
    size_t identity_len;
    uint32_t registration_id;
    bool has_signed;
    uint32_t signed_id;
    uint8_t signed_key[KEY_LEN];
    uint8_t signature[SIG_LEN];
    size_t signature_len;
    size_t n;
    uint32_t ids[MAX_UPLOAD + 1];
    uint8_t keys[MAX_UPLOAD + 1][KEY_LEN];
    size_t key_len[MAX_UPLOAD + 1];
};

/* A well-formed upload: identity key byte idb, signed prekey signed_id
 * (0: none), one-time prekeys first..first+n-1. */
static void upload_init(struct upload *u, uint8_t idb, uint32_t signed_id, uint32_t first, size_t n)
{
    memset(u, 0, sizeof(*u));
    fill_key(u->identity, idb);
    u->identity_len = KEY_LEN;
    u->registration_id = 4321;
    if (signed_id) {
        u->has_signed = true;
        u->signed_id = signed_id;
        fill_key(u->signed_key, (uint8_t)signed_id);
        memset(u->signature, 0x5a, SIG_LEN);
        u->signature_len = SIG_LEN;
    }
    u->n = n;
    for (size_t i = 0; i < n; i++) {
        u->ids[i] = first + (uint32_t)i;
        fill_key(u->keys[i], (uint8_t)(first + i));
        u->key_len[i] = KEY_LEN;
    }
}

static uint64_t upload_send(struct wsconn *c, const struct upload *u)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__UploadKeysRequest up = PARLEY__V1__UPLOAD_KEYS_REQUEST__INIT;
    Parley__V1__SignedPreKey sp = PARLEY__V1__SIGNED_PRE_KEY__INIT;
    Parley__V1__PreKey pks[MAX_UPLOAD + 1];
    Parley__V1__PreKey *pkp[MAX_UPLOAD + 1];
    up.identity_key.data = (uint8_t *)u->identity;
    up.identity_key.len = u->identity_len;
    up.registration_id = u->registration_id;
    if (u->has_signed) {
        sp.id = u->signed_id;
        sp.public_key.data = (uint8_t *)u->signed_key;
        sp.public_key.len = KEY_LEN;
        sp.signature.data = (uint8_t *)u->signature;
        sp.signature.len = u->signature_len;
        up.signed_prekey = &sp;
    }
    for (size_t i = 0; i < u->n; i++) {
        parley__v1__pre_key__init(&pks[i]);
        pks[i].id = u->ids[i];
        pks[i].public_key.data = (uint8_t *)u->keys[i];
        pks[i].public_key.len = u->key_len[i];
        pkp[i] = &pks[i];
    }
    up.n_prekeys = u->n;
    up.prekeys = pkp;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_UPLOAD_KEYS;
    req.upload_keys = &up;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

/* Uploads u and asserts success; returns the stock the server reports. */
static unsigned upload_ok(struct wsconn *c, const struct upload *u)
{
    uint64_t id = upload_send(c, u);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_UPLOAD_KEYS);
    unsigned count = f->response->upload_keys->prekey_count;
    frame_free(f);
    return count;
}

static uint64_t bundle_send(struct wsconn *c, const char *peer)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__GetBundleRequest gb = PARLEY__V1__GET_BUNDLE_REQUEST__INIT;
    Parley__V1__Peer p = PARLEY__V1__PEER__INIT;
    p.username = (char *)peer;
    gb.peer = &p;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_GET_BUNDLE;
    req.get_bundle = &gb;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

/* Fetches peer's bundles and asserts there is exactly one; the caller
 * frees the frame. */
static PlFrame *bundle_ok(struct wsconn *c, const char *peer)
{
    uint64_t id = bundle_send(c, peer);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_GET_BUNDLE);
    assert_int_equal(f->response->get_bundle->n_bundles, 1);
    return f;
}

static unsigned key_count(struct wsconn *c, bool *has_keys)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__KeyCountRequest kc = PARLEY__V1__KEY_COUNT_REQUEST__INIT;
    req.method_case = PARLEY__V1__REQUEST__METHOD_KEY_COUNT;
    req.key_count = &kc;
    PlFrame *f = raw_call(c, &req);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_KEY_COUNT);
    unsigned n = f->response->key_count->prekey_count;
    if (has_keys)
        *has_keys = f->response->key_count->has_keys;
    frame_free(f);
    return n;
}

/* The next frame on c, which must be a prekeys_low push; returns its count. */
static unsigned expect_prekeys_low(struct wsconn *c)
{
    uint8_t *data;
    size_t len;
    assert_int_equal(wsconn_recv(c, 10000, &data, &len), 0);
    PlFrame *f = NULL;
    assert_int_equal(frame_decode(data, len, FRAME_MAX_DEFAULT, &f), 0);
    free(data);
    assert_int_equal(f->body_case, PARLEY__V1__FRAME__BODY_PUSH);
    assert_int_equal(f->push->kind_case, PARLEY__V1__PUSH__KIND_PREKEYS_LOW);
    unsigned n = f->push->prekeys_low->prekey_count;
    frame_free(f);
    return n;
}

static void test_fetch_consumes_one_prekey_and_empty_stock_still_gives_a_bundle(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *bob = raw_dial(srv.url);
    uint64_t bob_dev = raw_signup_ok(bob, "pk_bob", pk, sk);
    struct upload u;
    upload_init(&u, 0xb0, 7, 100, 3);
    assert_int_equal(upload_ok(bob, &u), 3);
    wsconn_free(bob); /* offline from here on */

    struct wsconn *alice = raw_dial(srv.url);
    uint8_t apk[32], ask[64];
    (void)raw_signup_ok(alice, "pk_alice", apk, ask);
    bool seen[3] = {false, false, false};
    uint8_t want[KEY_LEN];
    for (int i = 0; i < 3; i++) {
        PlFrame *f = bundle_ok(alice, "@pk_bob");
        const Parley__V1__PreKeyBundle *b = f->response->get_bundle->bundles[0];
        assert_int_equal(b->device_id, bob_dev);
        assert_int_equal(b->registration_id, 4321);
        fill_key(want, 0xb0);
        assert_int_equal(b->identity_key.len, KEY_LEN);
        assert_memory_equal(b->identity_key.data, want, KEY_LEN);
        assert_non_null(b->signed_prekey);
        assert_int_equal(b->signed_prekey->id, 7);
        assert_int_equal(b->signed_prekey->signature.len, SIG_LEN);
        assert_non_null(b->prekey);
        assert_in_range(b->prekey->id, 100, 102);
        assert_false(seen[b->prekey->id - 100]);
        seen[b->prekey->id - 100] = true;
        fill_key(want, (uint8_t)b->prekey->id);
        assert_memory_equal(b->prekey->public_key.data, want, KEY_LEN);
        frame_free(f);
    }
    /* The stock is empty: the bundle comes without a one-time prekey. */
    PlFrame *f = bundle_ok(alice, "pk_bob");
    assert_null(f->response->get_bundle->bundles[0]->prekey);
    assert_non_null(f->response->get_bundle->bundles[0]->signed_prekey);
    frame_free(f);
    wsconn_free(alice);

    /* Offline meanwhile, bob learns his stock at his next connection. */
    bob = raw_dial(srv.url);
    raw_auth_ok(bob, bob_dev, sk);
    bool has_keys = false;
    assert_int_equal(key_count(bob, &has_keys), 0);
    assert_true(has_keys);
    wsconn_free(bob);
}

static void test_taken_prekey_ids_are_refused_and_change_nothing(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *c = raw_dial(srv.url);
    (void)raw_signup_ok(c, "pk_dup", pk, sk);
    struct upload u;
    upload_init(&u, 0xd0, 7, 1, 3);
    assert_int_equal(upload_ok(c, &u), 3);

    /* New ids 4 and 5, then 2 again, with a new signed prekey. */
    upload_init(&u, 0xd0, 8, 4, 3);
    u.ids[2] = 2;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EPREKEY_ID);
    /* One id twice in the same request. */
    upload_init(&u, 0xd0, 8, 10, 2);
    u.ids[1] = 10;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EPREKEY_ID);
    assert_int_equal(key_count(c, NULL), 3);

    struct wsconn *other = raw_dial(srv.url);
    (void)raw_signup_ok(other, "pk_dup_peer", pk, sk);
    PlFrame *f = bundle_ok(other, "pk_dup");
    /* The refused uploads did not rotate the signed prekey either. */
    assert_int_equal(f->response->get_bundle->bundles[0]->signed_prekey->id, 7);
    assert_in_range(f->response->get_bundle->bundles[0]->prekey->id, 1, 3);
    frame_free(f);
    wsconn_free(other);
    wsconn_free(c);
}

static void test_bad_key_forms_are_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *c = raw_dial(srv.url);
    struct upload u;
    upload_init(&u, 0xe0, 7, 1, 2);
    raw_expect_error(c, upload_send(c, &u), PARLEY_ENOAUTH);
    (void)raw_signup_ok(c, "pk_forms", pk, sk);

    upload_init(&u, 0xe0, 7, 1, 2);
    u.identity_len = 32; /* a raw key without the type byte */
    raw_expect_error(c, upload_send(c, &u), PARLEY_EBAD_KEY);
    upload_init(&u, 0xe0, 7, 1, 2);
    u.identity[0] = 0x06;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EBAD_KEY);
    upload_init(&u, 0xe0, 7, 1, 2);
    u.signed_key[0] = 0x00;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EBAD_KEY);
    upload_init(&u, 0xe0, 7, 1, 2);
    u.key_len[1] = 34;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EBAD_KEY);
    upload_init(&u, 0xe0, 7, 1, 2);
    u.signature_len = 63;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EBAD_SIGNATURE);
    upload_init(&u, 0xe0, 7, 1, 2);
    u.registration_id = 0;
    raw_expect_error(c, upload_send(c, &u), PARLEY_EINVAL);
    upload_init(&u, 0xe0, 7, 1, MAX_UPLOAD + 1);
    raw_expect_error(c, upload_send(c, &u), PARLEY_EINVAL);
    /* The first upload must bring a signed prekey. */
    upload_init(&u, 0xe0, 0, 1, 2);
    raw_expect_error(c, upload_send(c, &u), PARLEY_EINVAL);

    bool has_keys = true;
    assert_int_equal(key_count(c, &has_keys), 0);
    assert_false(has_keys);
    upload_init(&u, 0xe0, 7, 1, MAX_UPLOAD);
    assert_int_equal(upload_ok(c, &u), MAX_UPLOAD);
    raw_expect_ping(c);
    wsconn_free(c);
}

static void test_second_identity_key_is_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *c = raw_dial(srv.url);
    (void)raw_signup_ok(c, "pk_ident", pk, sk);
    struct upload u;
    upload_init(&u, 0x11, 7, 1, 1);
    assert_int_equal(upload_ok(c, &u), 1);
    upload_init(&u, 0x22, 7, 2, 1);
    raw_expect_error(c, upload_send(c, &u), PARLEY_EIDENTITY_KEY);
    assert_int_equal(key_count(c, NULL), 1);
    /* The same identity again, with prekeys only: fine. */
    upload_init(&u, 0x11, 0, 2, 1);
    assert_int_equal(upload_ok(c, &u), 2);
    wsconn_free(c);
}

static void test_low_stock_is_pushed_to_the_devices_connections(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *carol = raw_dial(srv.url);
    uint64_t carol_dev = raw_signup_ok(carol, "pk_carol", pk, sk);
    struct wsconn *carol2 = raw_dial(srv.url);
    raw_auth_ok(carol2, carol_dev, sk);
    struct upload u;
    upload_init(&u, 0xc0, 7, 1, 11);
    assert_int_equal(upload_ok(carol, &u), 11);

    struct wsconn *dave = raw_dial(srv.url);
    (void)raw_signup_ok(dave, "pk_dave", pk, sk);
    /* 11 -> 10 leaves enough; 10 -> 9 is low. The first push either
     * connection sees must therefore say 9. */
    frame_free(bundle_ok(dave, "pk_carol"));
    frame_free(bundle_ok(dave, "pk_carol"));
    assert_int_equal(expect_prekeys_low(carol), 9);
    assert_int_equal(expect_prekeys_low(carol2), 9);
    frame_free(bundle_ok(dave, "pk_carol"));
    assert_int_equal(expect_prekeys_low(carol), 8);
    assert_int_equal(key_count(carol, NULL), 8);
    /* Uploading refills; the answer carries the new stock. */
    upload_init(&u, 0xc0, 0, 100, 20);
    assert_int_equal(upload_ok(carol, &u), 28);
    wsconn_free(dave);
    wsconn_free(carol2);
    wsconn_free(carol);
}

static void test_account_without_keys_and_unknown_peer(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *c = raw_dial(srv.url);
    (void)raw_signup_ok(c, "pk_nokeys", pk, sk);
    struct wsconn *d = raw_dial(srv.url);
    (void)raw_signup_ok(d, "pk_fetcher", pk, sk);
    raw_expect_error(d, bundle_send(d, "pk_nokeys"), PARLEY_ENOKEYS);
    raw_expect_error(d, bundle_send(d, "pk_nobody_at_all"), PARLEY_ENOUSER);
    raw_expect_error(d, bundle_send(d, "-bad-"), PARLEY_EBAD_USERNAME);
    /* A device is never handed its own bundle. */
    struct upload u;
    upload_init(&u, 0xf0, 7, 1, 1);
    assert_int_equal(upload_ok(c, &u), 1);
    raw_expect_error(c, bundle_send(c, "pk_nokeys"), PARLEY_ENOKEYS);
    assert_int_equal(key_count(c, NULL), 1);
    wsconn_free(d);
    wsconn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_consumes_one_prekey_and_empty_stock_still_gives_a_bundle),
        cmocka_unit_test(test_taken_prekey_ids_are_refused_and_change_nothing),
        cmocka_unit_test(test_bad_key_forms_are_refused),
        cmocka_unit_test(test_second_identity_key_is_refused),
        cmocka_unit_test(test_low_stock_is_pushed_to_the_devices_connections),
        cmocka_unit_test(test_account_without_keys_and_unknown_peer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
