/* SPDX-License-Identifier: MIT */
/* Interop of ratchet.h with libsignal-protocol-c's session_builder and
 * session_cipher, on in-memory stores: libsignal publishes a bundle and
 * parley starts the session, and the reverse; with and without a one-time
 * prekey. The two converse over several ratchet turns with messages
 * delivered out of order, dropped and delivered late, and both refuse a
 * replay. */
#include "common/err.h"
#include "crypto/ratchet.h"
#include "crypto/sigmsg.h"
#include "crypto/signal_provider_test_util.h"
#include "crypto/xeddsa.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include <curve.h>
#include <key_helper.h>
#include <protocol.h>
#include <ratchet.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <session_pre_key.h>
#include <signal_protocol.h>

#define SPK_ID 7
#define OTK_ID 99
#define MAX_PREKEYS 4


/* ---- libsignal's side: in-memory stores for one peer ---- */

struct sig_store {
    signal_buffer *identity_pub, *identity_priv;
    uint32_t registration_id;
    signal_buffer *session; /* the one remote address's record */
    uint32_t prekey_ids[MAX_PREKEYS];
    signal_buffer *prekeys[MAX_PREKEYS];
    uint32_t signed_id;
    signal_buffer *signed_prekey;
};

static int st_get_identity(signal_buffer **pub, signal_buffer **priv, void *arg)
{
    struct sig_store *s = arg;
    *pub = signal_buffer_copy(s->identity_pub);
    *priv = signal_buffer_copy(s->identity_priv);
    return 0;
}

static int st_get_registration_id(void *arg, uint32_t *id)
{
    *id = ((struct sig_store *)arg)->registration_id;
    return 0;
}

static int st_save_identity(const signal_protocol_address *a, uint8_t *k, size_t n, void *arg)
{
    (void)a, (void)k, (void)n, (void)arg;
    return 0;
}

static int st_is_trusted(const signal_protocol_address *a, uint8_t *k, size_t n, void *arg)
{
    (void)a, (void)k, (void)n, (void)arg;
    return 1;
}

static int st_load_session(signal_buffer **record, signal_buffer **user_record,
                           const signal_protocol_address *a, void *arg)
{
    (void)user_record, (void)a;
    struct sig_store *s = arg;
    if (!s->session)
        return 0;
    *record = signal_buffer_copy(s->session);
    return 1;
}

static int st_sub_devices(signal_int_list **l, const char *n, size_t len, void *arg)
{
    (void)n, (void)len, (void)arg;
    *l = signal_int_list_alloc();
    return 0;
}

static int st_store_session(const signal_protocol_address *a, uint8_t *rec, size_t len,
                            uint8_t *urec, size_t ulen, void *arg)
{
    (void)a, (void)urec, (void)ulen;
    struct sig_store *s = arg;
    signal_buffer_bzero_free(s->session);
    s->session = signal_buffer_create(rec, len);
    return s->session ? 0 : SG_ERR_NOMEM;
}

static int st_contains_session(const signal_protocol_address *a, void *arg)
{
    (void)a;
    return ((struct sig_store *)arg)->session != NULL;
}

static int st_delete_session(const signal_protocol_address *a, void *arg)
{
    (void)a;
    struct sig_store *s = arg;
    signal_buffer_bzero_free(s->session);
    s->session = NULL;
    return 1;
}

static int st_delete_all(const char *n, size_t len, void *arg)
{
    (void)n, (void)len;
    return st_delete_session(NULL, arg);
}

static int prekey_slot(struct sig_store *s, uint32_t id)
{
    for (int i = 0; i < MAX_PREKEYS; i++)
        if (s->prekeys[i] && s->prekey_ids[i] == id)
            return i;
    return -1;
}

static int st_load_prekey(signal_buffer **rec, uint32_t id, void *arg)
{
    struct sig_store *s = arg;
    int i = prekey_slot(s, id);
    if (i < 0)
        return SG_ERR_INVALID_KEY_ID;
    *rec = signal_buffer_copy(s->prekeys[i]);
    return SG_SUCCESS;
}

static int st_store_prekey(uint32_t id, uint8_t *rec, size_t len, void *arg)
{
    struct sig_store *s = arg;
    for (int i = 0; i < MAX_PREKEYS; i++) {
        if (!s->prekeys[i]) {
            s->prekey_ids[i] = id;
            s->prekeys[i] = signal_buffer_create(rec, len);
            return 0;
        }
    }
    return SG_ERR_NOMEM;
}

static int st_contains_prekey(uint32_t id, void *arg)
{
    return prekey_slot(arg, id) >= 0;
}

static int st_remove_prekey(uint32_t id, void *arg)
{
    struct sig_store *s = arg;
    int i = prekey_slot(s, id);
    if (i >= 0) {
        signal_buffer_bzero_free(s->prekeys[i]);
        s->prekeys[i] = NULL;
    }
    return 0;
}

static int st_load_signed(signal_buffer **rec, uint32_t id, void *arg)
{
    struct sig_store *s = arg;
    if (!s->signed_prekey || s->signed_id != id)
        return SG_ERR_INVALID_KEY_ID;
    *rec = signal_buffer_copy(s->signed_prekey);
    return SG_SUCCESS;
}

static int st_store_signed(uint32_t id, uint8_t *rec, size_t len, void *arg)
{
    struct sig_store *s = arg;
    signal_buffer_bzero_free(s->signed_prekey);
    s->signed_id = id;
    s->signed_prekey = signal_buffer_create(rec, len);
    return 0;
}

static int st_contains_signed(uint32_t id, void *arg)
{
    struct sig_store *s = arg;
    return s->signed_prekey && s->signed_id == id;
}

static int st_remove_signed(uint32_t id, void *arg)
{
    (void)id, (void)arg;
    return 0;
}

static signal_protocol_store_context *store_context_new(struct sig_store *s)
{
    signal_protocol_store_context *ctx = NULL;
    assert_int_equal(signal_protocol_store_context_create(&ctx, sigtest_ctx), 0);
    signal_protocol_session_store ss = {
        .load_session_func = st_load_session,
        .get_sub_device_sessions_func = st_sub_devices,
        .store_session_func = st_store_session,
        .contains_session_func = st_contains_session,
        .delete_session_func = st_delete_session,
        .delete_all_sessions_func = st_delete_all,
        .user_data = s,
    };
    signal_protocol_pre_key_store ps = {
        .load_pre_key = st_load_prekey,
        .store_pre_key = st_store_prekey,
        .contains_pre_key = st_contains_prekey,
        .remove_pre_key = st_remove_prekey,
        .user_data = s,
    };
    signal_protocol_signed_pre_key_store sps = {
        .load_signed_pre_key = st_load_signed,
        .store_signed_pre_key = st_store_signed,
        .contains_signed_pre_key = st_contains_signed,
        .remove_signed_pre_key = st_remove_signed,
        .user_data = s,
    };
    signal_protocol_identity_key_store is = {
        .get_identity_key_pair = st_get_identity,
        .get_local_registration_id = st_get_registration_id,
        .save_identity = st_save_identity,
        .is_trusted_identity = st_is_trusted,
        .user_data = s,
    };
    assert_int_equal(signal_protocol_store_context_set_session_store(ctx, &ss), 0);
    assert_int_equal(signal_protocol_store_context_set_pre_key_store(ctx, &ps), 0);
    assert_int_equal(signal_protocol_store_context_set_signed_pre_key_store(ctx, &sps), 0);
    assert_int_equal(signal_protocol_store_context_set_identity_key_store(ctx, &is), 0);
    return ctx;
}

static void sig_store_deinit(struct sig_store *s)
{
    signal_buffer_bzero_free(s->identity_pub);
    signal_buffer_bzero_free(s->identity_priv);
    signal_buffer_bzero_free(s->session);
    for (int i = 0; i < MAX_PREKEYS; i++)
        signal_buffer_bzero_free(s->prekeys[i]);
    signal_buffer_bzero_free(s->signed_prekey);
}

/* ---- one party of a conversation, either library ---- */

static const signal_protocol_address ADDR = {"peer", 4, 1};

struct party {
    bool is_parley;
    /* parley */
    struct keys_pair *identity, *signed_prekey, *prekey;
    bool prekey_used;
    struct ratchet *session;
    /* libsignal */
    struct sig_store store;
    signal_protocol_store_context *ctx;
    session_cipher *cipher;
    ratchet_identity_key_pair *sig_identity;
};

/* A message on the wire and the text it carries. */
struct wire {
    uint8_t *data;
    size_t len;
    int type; /* CIPHERTEXT_SIGNAL_TYPE or CIPHERTEXT_PREKEY_TYPE */
    char text[40];
};

static int parley_lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out)
{
    struct party *p = arg;
    if (is_signed && id == SPK_ID) {
        *out = p->signed_prekey;
        return 0;
    }
    if (!is_signed && id == OTK_ID && !p->prekey_used) {
        *out = p->prekey;
        return 0;
    }
    return PARLEY_ENOTFOUND;
}

static struct keys_pair *gen(void)
{
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    return kp;
}

static void parley_party_init(struct party *p)
{
    memset(p, 0, sizeof(*p));
    p->is_parley = true;
    p->identity = gen();
    p->signed_prekey = gen();
    p->prekey = gen();
}

static void sig_party_init(struct party *p, uint32_t registration_id)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(
        signal_protocol_key_helper_generate_identity_key_pair(&p->sig_identity, sigtest_ctx), 0);
    assert_int_equal(ec_public_key_serialize(&p->store.identity_pub,
                                             ratchet_identity_key_pair_get_public(p->sig_identity)),
                     0);
    assert_int_equal(
        ec_private_key_serialize(&p->store.identity_priv,
                                 ratchet_identity_key_pair_get_private(p->sig_identity)),
        0);
    p->store.registration_id = registration_id;
    p->ctx = store_context_new(&p->store);
    assert_int_equal(session_cipher_create(&p->cipher, p->ctx, &ADDR, sigtest_ctx), 0);
}

static void party_deinit(struct party *p)
{
    if (p->is_parley) {
        keys_free(p->identity);
        keys_free(p->signed_prekey);
        keys_free(p->prekey);
        ratchet_free(p->session);
        return;
    }
    session_cipher_free(p->cipher);
    signal_protocol_store_context_destroy(p->ctx);
    SIGNAL_UNREF(p->sig_identity);
    sig_store_deinit(&p->store);
}

static void to_public(const ec_public_key *k, struct keys_public *out)
{
    signal_buffer *b = NULL;
    assert_int_equal(ec_public_key_serialize(&b, k), 0);
    assert_int_equal(keys_public_decode(signal_buffer_data(b), signal_buffer_len(b), out), 0);
    signal_buffer_free(b);
}

static ec_public_key *from_public(const struct keys_public *pk)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(pk, wire);
    ec_public_key *k = NULL;
    assert_int_equal(curve_decode_point(&k, wire, sizeof(wire), sigtest_ctx), 0);
    return k;
}

/* libsignal publishes: signed prekey (and a one-time prekey) in its stores,
 * the bundle as parley reads it. */
static void sig_publish(struct party *bob, bool with_prekey, struct x3dh_bundle *b)
{
    session_signed_pre_key *spk = NULL;
    assert_int_equal(signal_protocol_key_helper_generate_signed_pre_key(&spk, bob->sig_identity,
                                                                        SPK_ID, 1000, sigtest_ctx),
                     0);
    signal_buffer *buf = NULL;
    assert_int_equal(session_signed_pre_key_serialize(&buf, spk), 0);
    assert_int_equal(
        st_store_signed(SPK_ID, signal_buffer_data(buf), signal_buffer_len(buf), &bob->store), 0);
    signal_buffer_bzero_free(buf);

    memset(b, 0, sizeof(*b));
    to_public(ratchet_identity_key_pair_get_public(bob->sig_identity), &b->identity_key);
    b->signed_prekey_id = SPK_ID;
    to_public(ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk)), &b->signed_prekey);
    assert_int_equal(session_signed_pre_key_get_signature_len(spk), XEDDSA_SIGNATURE_LEN);
    memcpy(b->signed_prekey_signature, session_signed_pre_key_get_signature(spk),
           XEDDSA_SIGNATURE_LEN);
    SIGNAL_UNREF(spk);

    if (with_prekey) {
        ec_key_pair *kp = NULL;
        session_pre_key *pk = NULL;
        assert_int_equal(curve_generate_key_pair(sigtest_ctx, &kp), 0);
        assert_int_equal(session_pre_key_create(&pk, OTK_ID, kp), 0);
        assert_int_equal(session_pre_key_serialize(&buf, pk), 0);
        assert_int_equal(
            st_store_prekey(OTK_ID, signal_buffer_data(buf), signal_buffer_len(buf), &bob->store),
            0);
        signal_buffer_bzero_free(buf);
        b->has_prekey = true;
        b->prekey_id = OTK_ID;
        to_public(ec_key_pair_get_public(kp), &b->prekey);
        SIGNAL_UNREF(pk);
        SIGNAL_UNREF(kp);
    }
}

/* parley publishes; libsignal's session builder processes the bundle. */
static void sig_process_parley_bundle(struct party *alice, const struct party *bob,
                                      bool with_prekey)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    uint8_t sig[XEDDSA_SIGNATURE_LEN];
    keys_public_encode(keys_public_of(bob->signed_prekey), wire);
    assert_int_equal(xeddsa_sign(bob->identity, wire, sizeof(wire), sig), 0);
    ec_public_key *spk = from_public(keys_public_of(bob->signed_prekey));
    ec_public_key *idk = from_public(keys_public_of(bob->identity));
    ec_public_key *otk = with_prekey ? from_public(keys_public_of(bob->prekey)) : NULL;
    session_pre_key_bundle *bundle = NULL;
    assert_int_equal(session_pre_key_bundle_create(&bundle, 222, 1, with_prekey ? OTK_ID : 0, otk,
                                                   SPK_ID, spk, sig, sizeof(sig), idk),
                     0);
    session_builder *builder = NULL;
    assert_int_equal(session_builder_create(&builder, alice->ctx, &ADDR, sigtest_ctx), 0);
    assert_int_equal(session_builder_process_pre_key_bundle(builder, bundle), 0);
    session_builder_free(builder);
    SIGNAL_UNREF(bundle);
    SIGNAL_UNREF(spk);
    SIGNAL_UNREF(idk);
    SIGNAL_UNREF(otk);
}

static struct wire send_text(struct party *p, const char *text)
{
    struct wire w = {0};
    snprintf(w.text, sizeof(w.text), "%s", text);
    if (p->is_parley) {
        enum ratchet_msg_type type;
        assert_int_equal(ratchet_encrypt(p->session, (const uint8_t *)text, strlen(text), &w.data,
                                         &w.len, &type),
                         0);
        w.type = type == RATCHET_MSG_PREKEY ? CIPHERTEXT_PREKEY_TYPE : CIPHERTEXT_SIGNAL_TYPE;
        return w;
    }
    ciphertext_message *cm = NULL;
    assert_int_equal(session_cipher_encrypt(p->cipher, (const uint8_t *)text, strlen(text), &cm),
                     0);
    w.type = ciphertext_message_get_type(cm);
    signal_buffer *ser = ciphertext_message_get_serialized(cm);
    w.len = signal_buffer_len(ser);
    w.data = malloc(w.len);
    assert_non_null(w.data);
    memcpy(w.data, signal_buffer_data(ser), w.len);
    SIGNAL_UNREF(cm);
    return w;
}

/* Deliver w to p; returns 0 and checks the text, or the library's error. */
static int deliver(struct party *p, const struct wire *w)
{
    if (p->is_parley) {
        uint8_t *pt = NULL;
        size_t pt_len = 0;
        int rc;
        if (w->type == CIPHERTEXT_PREKEY_TYPE) {
            struct ratchet_responder r = {p->identity, 222, parley_lookup, p};
            bool used = false;
            uint32_t id = 0;
            rc = ratchet_decrypt_prekey(&p->session, &r, w->data, w->len, &pt, &pt_len, &used, &id);
            if (rc == 0 && used) {
                assert_int_equal(id, OTK_ID);
                p->prekey_used = true;
            }
        } else {
            assert_non_null(p->session);
            rc = ratchet_decrypt(p->session, w->data, w->len, &pt, &pt_len);
        }
        if (rc == 0) {
            assert_int_equal(pt_len, strlen(w->text));
            assert_memory_equal(pt, w->text, pt_len);
            ratchet_plaintext_free(pt, pt_len);
        }
        return rc;
    }
    signal_buffer *pt = NULL;
    int rc;
    if (w->type == CIPHERTEXT_PREKEY_TYPE) {
        pre_key_signal_message *m = NULL;
        assert_int_equal(pre_key_signal_message_deserialize(&m, w->data, w->len, sigtest_ctx), 0);
        rc = session_cipher_decrypt_pre_key_signal_message(p->cipher, m, NULL, &pt);
        SIGNAL_UNREF(m);
    } else {
        signal_message *m = NULL;
        assert_int_equal(signal_message_deserialize(&m, w->data, w->len, sigtest_ctx), 0);
        rc = session_cipher_decrypt_signal_message(p->cipher, m, NULL, &pt);
        SIGNAL_UNREF(m);
    }
    if (rc == 0) {
        assert_int_equal(signal_buffer_len(pt), strlen(w->text));
        assert_memory_equal(signal_buffer_data(pt), w->text, strlen(w->text));
    }
    signal_buffer_bzero_free(pt);
    return rc;
}

static void wire_free(struct wire *w)
{
    free(w->data);
    w->data = NULL;
}

/* The conversation both directions run: init has a session on resp's
 * bundle and speaks first. */
static void converse(struct party *init, struct party *resp)
{
    /* Two prekey messages, the second delivered first. */
    struct wire p0 = send_text(init, "prekey 0");
    struct wire p1 = send_text(init, "prekey 1");
    assert_int_equal(p0.type, CIPHERTEXT_PREKEY_TYPE);
    assert_int_equal(p1.type, CIPHERTEXT_PREKEY_TYPE);
    assert_int_equal(deliver(resp, &p1), 0);
    assert_int_equal(deliver(resp, &p0), 0);

    /* Replies: r1 dropped for now, r2 before r0. */
    struct wire r0 = send_text(resp, "reply 0");
    struct wire r1 = send_text(resp, "reply 1");
    struct wire r2 = send_text(resp, "reply 2");
    assert_int_equal(r0.type, CIPHERTEXT_SIGNAL_TYPE);
    assert_int_equal(deliver(init, &r2), 0);
    assert_int_equal(deliver(init, &r0), 0);

    /* The initiator has its answer: plain SignalMessages from now on. */
    struct wire w[4];
    for (int i = 0; i < 4; i++) {
        char text[40];
        snprintf(text, sizeof(text), "whisper %d", i);
        w[i] = send_text(init, text);
        assert_int_equal(w[i].type, CIPHERTEXT_SIGNAL_TYPE);
    }
    assert_int_equal(deliver(resp, &w[3]), 0);
    assert_int_equal(deliver(resp, &w[1]), 0);
    assert_int_equal(deliver(resp, &w[0]), 0);

    /* One more turn each, then the dropped messages arrive late. */
    struct wire t0 = send_text(resp, "turn r");
    assert_int_equal(deliver(init, &t0), 0);
    struct wire t1 = send_text(init, "turn i");
    assert_int_equal(deliver(resp, &t1), 0);
    assert_int_equal(deliver(resp, &w[2]), 0);
    assert_int_equal(deliver(init, &r1), 0);

    /* Replays are refused by whichever library receives them. */
    int rc = deliver(resp, &w[3]);
    assert_int_equal(rc, resp->is_parley ? PARLEY_EBAD_NONCE : SG_ERR_DUPLICATE_MESSAGE);
    rc = deliver(init, &r1);
    assert_int_equal(rc, init->is_parley ? PARLEY_EBAD_NONCE : SG_ERR_DUPLICATE_MESSAGE);

    /* Several ratchet turns, each delivered in reverse with one dropped. */
    for (int turn = 0; turn < 6; turn++) {
        struct party *from = turn % 2 ? init : resp;
        struct party *to = turn % 2 ? resp : init;
        struct wire m[4];
        for (int i = 0; i < 4; i++) {
            char text[40];
            snprintf(text, sizeof(text), "turn %d msg %d", turn, i);
            m[i] = send_text(from, text);
        }
        for (int i = 3; i >= 0; i--)
            if (i != 1)
                assert_int_equal(deliver(to, &m[i]), 0);
        for (int i = 0; i < 4; i++)
            wire_free(&m[i]);
    }
    wire_free(&p0);
    wire_free(&p1);
    wire_free(&r0);
    wire_free(&r1);
    wire_free(&r2);
    wire_free(&t0);
    wire_free(&t1);
    for (int i = 0; i < 4; i++)
        wire_free(&w[i]);
}

static void run_libsignal_bundle_parley_initiates(bool with_prekey)
{
    struct party alice, bob;
    parley_party_init(&alice);
    sig_party_init(&bob, 222);
    struct x3dh_bundle b;
    sig_publish(&bob, with_prekey, &b);
    assert_int_equal(ratchet_initiate(alice.identity, 111, &b, 222, &alice.session), 0);
    converse(&alice, &bob);
    /* libsignal removed the one-time prekey it consumed. */
    assert_int_equal(st_contains_prekey(OTK_ID, &bob.store), 0);
    party_deinit(&alice);
    party_deinit(&bob);
}

static void run_parley_bundle_libsignal_initiates(bool with_prekey)
{
    struct party alice, bob;
    sig_party_init(&alice, 111);
    parley_party_init(&bob);
    sig_process_parley_bundle(&alice, &bob, with_prekey);
    converse(&alice, &bob);
    assert_int_equal(bob.prekey_used, with_prekey);
    assert_int_equal(ratchet_their_registration_id(bob.session), 111);
    struct keys_public alice_id;
    to_public(ratchet_identity_key_pair_get_public(alice.sig_identity), &alice_id);
    assert_memory_equal(ratchet_their_identity(bob.session)->u, alice_id.u, KEYS_PUBLIC_LEN);
    party_deinit(&alice);
    party_deinit(&bob);
}

static void test_parley_initiates_on_libsignal_bundle_with_prekey(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        run_libsignal_bundle_parley_initiates(true);
}

static void test_parley_initiates_on_libsignal_bundle_without_prekey(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        run_libsignal_bundle_parley_initiates(false);
}

static void test_libsignal_initiates_on_parley_bundle_with_prekey(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        run_parley_bundle_libsignal_initiates(true);
}

static void test_libsignal_initiates_on_parley_bundle_without_prekey(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        run_parley_bundle_libsignal_initiates(false);
}

/* A message libsignal made, tampered with, is refused by parley and
 * leaves its session as it was; the original then decrypts. */
static void test_tampered_libsignal_message_refused(void **state)
{
    (void)state;
    struct party alice, bob;
    parley_party_init(&alice);
    sig_party_init(&bob, 222);
    struct x3dh_bundle b;
    sig_publish(&bob, true, &b);
    assert_int_equal(ratchet_initiate(alice.identity, 111, &b, 222, &alice.session), 0);
    struct wire p = send_text(&alice, "hi");
    assert_int_equal(deliver(&bob, &p), 0);
    struct wire r = send_text(&bob, "tamper");
    size_t n = ratchet_serialized_len(alice.session);
    uint8_t *before = malloc(n), *after = malloc(n);
    assert_non_null(before);
    assert_non_null(after);
    size_t len = 0;
    assert_int_equal(ratchet_serialize(alice.session, before, n, &len), 0);
    r.data[r.len - SIGMSG_MAC_LEN - 2] ^= 0x20;
    assert_int_equal(deliver(&alice, &r), PARLEY_EBAD_SIGNATURE);
    r.data[r.len - 1] ^= 0x01;
    assert_int_equal(deliver(&alice, &r), PARLEY_EBAD_SIGNATURE);
    assert_int_equal(ratchet_serialized_len(alice.session), n);
    assert_int_equal(ratchet_serialize(alice.session, after, n, &len), 0);
    assert_memory_equal(before, after, n);
    r.data[r.len - SIGMSG_MAC_LEN - 2] ^= 0x20;
    r.data[r.len - 1] ^= 0x01;
    assert_int_equal(deliver(&alice, &r), 0);
    free(before);
    free(after);
    wire_free(&p);
    wire_free(&r);
    party_deinit(&alice);
    party_deinit(&bob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parley_initiates_on_libsignal_bundle_with_prekey),
        cmocka_unit_test(test_parley_initiates_on_libsignal_bundle_without_prekey),
        cmocka_unit_test(test_libsignal_initiates_on_parley_bundle_with_prekey),
        cmocka_unit_test(test_libsignal_initiates_on_parley_bundle_without_prekey),
        cmocka_unit_test(test_tampered_libsignal_message_refused),
    };
    return cmocka_run_group_tests(tests, sigtest_setup, sigtest_teardown);
}
