/* SPDX-License-Identifier: MIT */
/* Unit tests of ratchet.h: two parley sessions converse over several
 * ratchet turns, with and without a one-time prekey; out-of-order and
 * dropped messages; replays, tampering, bad padding, counters too far
 * ahead, unknown ratchet keys and prekeys, bad signatures and garbage are
 * each refused with their code and leave the serialized state byte for
 * byte as it was; the serialized form round-trips and its parser refuses
 * garbage. Interop with libsignal-protocol-c is in ratchet_signal_test.c. */
#include "common/err.h"
#include "crypto/hkdf.h"
#include "crypto/ratchet.h"
#include "crypto/sigmsg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <sodium.h>

/* Offsets in ratchet_serialize's documented layout. */
#define OFF_OUR_IDENTITY 2
#define OFF_SEND_PUB (2 + 64 + 8 + 32)
#define OFF_SEND_CHAIN (OFF_SEND_PUB + 64)
#define OFF_SEND_INDEX (OFF_SEND_CHAIN + 32)

struct bob {
    struct keys_pair *identity, *signed_prekey, *prekey;
    bool prekey_gone; /* the one-time prekey was consumed */
};

static struct keys_pair *gen(void)
{
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    return kp;
}

static int lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out)
{
    struct bob *b = arg;
    if (is_signed && id == 7) {
        *out = b->signed_prekey;
        return 0;
    }
    if (!is_signed && id == 99 && !b->prekey_gone) {
        *out = b->prekey;
        return 0;
    }
    return PARLEY_ENOTFOUND;
}

static void bob_init(struct bob *b)
{
    b->identity = gen();
    b->signed_prekey = gen();
    b->prekey = gen();
    b->prekey_gone = false;
}

static void bob_deinit(struct bob *b)
{
    keys_free(b->identity);
    keys_free(b->signed_prekey);
    keys_free(b->prekey);
}

static struct ratchet_responder responder_of(struct bob *b)
{
    return (struct ratchet_responder){b->identity, 222, lookup, b};
}

static void bundle_of(const struct bob *bob, bool with_prekey, struct x3dh_bundle *b)
{
    memset(b, 0, sizeof(*b));
    b->identity_key = *keys_public_of(bob->identity);
    b->signed_prekey_id = 7;
    b->signed_prekey = *keys_public_of(bob->signed_prekey);
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&b->signed_prekey, wire);
    assert_int_equal(xeddsa_sign(bob->identity, wire, sizeof(wire), b->signed_prekey_signature), 0);
    b->has_prekey = with_prekey;
    if (with_prekey) {
        b->prekey_id = 99;
        b->prekey = *keys_public_of(bob->prekey);
    }
}

/* A message on the wire. */
struct msg {
    uint8_t *data;
    size_t len;
    enum ratchet_msg_type type;
    char text[32];
};

static struct msg enc(struct ratchet *s, const char *text)
{
    struct msg m = {0};
    snprintf(m.text, sizeof(m.text), "%s", text);
    assert_int_equal(
        ratchet_encrypt(s, (const uint8_t *)text, strlen(text), &m.data, &m.len, &m.type), 0);
    return m;
}

static void msg_free(struct msg *m)
{
    free(m->data);
    m->data = NULL;
}

/* The serialized state, for before/after comparisons. */
struct snap {
    uint8_t *data;
    size_t len;
};

static struct snap snap_of(const struct ratchet *s)
{
    struct snap n;
    n.len = ratchet_serialized_len(s);
    n.data = malloc(n.len);
    assert_non_null(n.data);
    size_t len = 0;
    assert_int_equal(ratchet_serialize(s, n.data, n.len, &len), 0);
    assert_int_equal(len, n.len);
    return n;
}

static void assert_unchanged(const struct ratchet *s, struct snap *before)
{
    struct snap after = snap_of(s);
    assert_int_equal(after.len, before->len);
    assert_memory_equal(after.data, before->data, before->len);
    free(after.data);
    free(before->data);
    before->data = NULL;
}

/* Deliver m to a session (prekey messages through the responder path when
 * b is given) and check the text. */
static void dec_ok(struct ratchet **s, struct bob *b, const struct msg *m)
{
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    if (m->type == RATCHET_MSG_PREKEY) {
        assert_non_null(b);
        struct ratchet_responder r = responder_of(b);
        bool used = true;
        uint32_t used_id = 0;
        assert_int_equal(
            ratchet_decrypt_prekey(s, &r, m->data, m->len, &pt, &pt_len, &used, &used_id), 0);
        if (used) {
            assert_int_equal(used_id, 99);
            b->prekey_gone = true;
        }
    } else {
        assert_int_equal(ratchet_decrypt(*s, m->data, m->len, &pt, &pt_len), 0);
    }
    assert_int_equal(pt_len, strlen(m->text));
    assert_memory_equal(pt, m->text, pt_len);
    ratchet_plaintext_free(pt, pt_len);
}

static int dec_rc(struct ratchet *s, const uint8_t *data, size_t len)
{
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    int rc = ratchet_decrypt(s, data, len, &pt, &pt_len);
    if (rc == 0)
        ratchet_plaintext_free(pt, pt_len);
    else
        assert_null(pt);
    return rc;
}

/* Alice starts, sends one prekey message, Bob answers, Alice reads it. */
static void start(struct bob *b, struct keys_pair *alice_id, bool with_prekey,
                  struct ratchet **alice, struct ratchet **bob)
{
    struct x3dh_bundle bundle;
    bundle_of(b, with_prekey, &bundle);
    assert_int_equal(ratchet_initiate(alice_id, 111, &bundle, 222, alice), 0);
    assert_true(ratchet_is_pending_prekey(*alice));
    struct msg m = enc(*alice, "hello bob");
    assert_int_equal(m.type, RATCHET_MSG_PREKEY);
    *bob = NULL;
    dec_ok(bob, b, &m);
    msg_free(&m);
    assert_int_equal(ratchet_their_registration_id(*bob), 111);
    assert_memory_equal(ratchet_their_identity(*bob)->u, keys_public_of(alice_id)->u,
                        KEYS_PUBLIC_LEN);
    m = enc(*bob, "hello alice");
    assert_int_equal(m.type, RATCHET_MSG_WHISPER);
    dec_ok(alice, NULL, &m);
    msg_free(&m);
    assert_false(ratchet_is_pending_prekey(*alice));
}

static void test_converse_several_turns(void **state)
{
    (void)state;
    for (int with_prekey = 0; with_prekey < 2; with_prekey++) {
        struct bob b;
        bob_init(&b);
        struct keys_pair *alice_id = gen();
        struct x3dh_bundle bundle;
        bundle_of(&b, with_prekey, &bundle);
        struct ratchet *alice = NULL, *bob = NULL;
        assert_int_equal(ratchet_initiate(alice_id, 111, &bundle, 222, &alice), 0);

        /* Three prekey messages before any reply; the later two reuse
         * Bob's session and consume nothing. */
        for (int i = 0; i < 3; i++) {
            char text[32];
            snprintf(text, sizeof(text), "a%d", i);
            struct msg m = enc(alice, text);
            assert_int_equal(m.type, RATCHET_MSG_PREKEY);
            dec_ok(&bob, &b, &m);
            msg_free(&m);
        }
        assert_int_equal(b.prekey_gone, with_prekey == 1);
        for (int turn = 0; turn < 6; turn++) {
            struct ratchet *from = turn % 2 ? alice : bob;
            struct ratchet *to = turn % 2 ? bob : alice;
            for (int i = 0; i <= turn; i++) {
                char text[32];
                snprintf(text, sizeof(text), "t%d m%d", turn, i);
                struct msg m = enc(from, text);
                assert_int_equal(m.type, RATCHET_MSG_WHISPER);
                dec_ok(&to, NULL, &m);
                msg_free(&m);
            }
        }
        assert_false(ratchet_is_pending_prekey(alice));
        ratchet_free(alice);
        ratchet_free(bob);
        keys_free(alice_id);
        bob_deinit(&b);
    }
}

static void test_empty_and_block_sized_plaintexts(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    const char *texts[] = {"", "0123456789abcde", "0123456789abcdef", "0123456789abcdef0"};
    for (size_t i = 0; i < 4; i++) {
        struct msg m = enc(alice, texts[i]);
        dec_ok(&bob, NULL, &m);
        msg_free(&m);
    }
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_out_of_order_and_dropped_across_turns(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, false, &alice, &bob);

    struct msg a[6];
    a[0] = enc(alice, "a0");
    a[1] = enc(alice, "a1");
    a[2] = enc(alice, "a2");
    dec_ok(&bob, NULL, &a[2]); /* a0 and a1 are kept as skipped */
    struct msg r = enc(bob, "r0");
    dec_ok(&alice, NULL, &r); /* Alice turns her ratchet */
    msg_free(&r);
    a[3] = enc(alice, "a3");
    a[4] = enc(alice, "a4"); /* dropped: never delivered */
    a[5] = enc(alice, "a5");
    dec_ok(&bob, NULL, &a[5]);
    dec_ok(&bob, NULL, &a[0]); /* from the previous chain */
    dec_ok(&bob, NULL, &a[3]);
    dec_ok(&bob, NULL, &a[1]);
    /* Replays of out-of-order deliveries are refused. */
    struct snap before = snap_of(bob);
    assert_int_equal(dec_rc(bob, a[0].data, a[0].len), PARLEY_EBAD_NONCE);
    assert_int_equal(dec_rc(bob, a[5].data, a[5].len), PARLEY_EBAD_NONCE);
    assert_unchanged(bob, &before);
    /* The dropped one still decrypts when it turns up. */
    dec_ok(&bob, NULL, &a[4]);
    r = enc(bob, "r1");
    dec_ok(&alice, NULL, &r);
    msg_free(&r);
    for (int i = 0; i < 6; i++)
        msg_free(&a[i]);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_replay_refused_state_unchanged(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    struct msg m = enc(alice, "once");
    dec_ok(&bob, NULL, &m);
    struct snap before = snap_of(bob);
    assert_int_equal(dec_rc(bob, m.data, m.len), PARLEY_EBAD_NONCE);
    assert_unchanged(bob, &before);
    msg_free(&m);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

/* Flip each bit of the part after the version byte, one at a time: every
 * change is refused (MAC, parse or key) and nothing changes. */
static void test_tampering_refused_state_unchanged(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    struct msg m = enc(alice, "tamper with me");
    struct snap before = snap_of(bob);
    for (size_t i = 0; i < m.len * 8; i++) {
        m.data[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rc = dec_rc(bob, m.data, m.len);
        assert_int_not_equal(rc, 0);
        m.data[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    assert_unchanged(bob, &before);
    /* The ciphertext's last byte specifically: a MAC failure. */
    m.data[m.len - SIGMSG_MAC_LEN - 1] ^= 1;
    before = snap_of(bob);
    assert_int_equal(dec_rc(bob, m.data, m.len), PARLEY_EBAD_SIGNATURE);
    assert_unchanged(bob, &before);
    m.data[m.len - SIGMSG_MAC_LEN - 1] ^= 1;
    dec_ok(&bob, NULL, &m); /* the original still decrypts */
    msg_free(&m);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_garbage_refused_state_unchanged(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    struct msg m = enc(alice, "prefix me");
    struct snap before = snap_of(bob);
    /* Every proper prefix and random bytes of many lengths. */
    for (size_t len = 0; len < m.len; len++)
        assert_int_not_equal(dec_rc(bob, m.data, len), 0);
    uint8_t junk[300];
    for (size_t len = 1; len < sizeof(junk); len += 7) {
        randombytes_buf(junk, len);
        assert_int_not_equal(dec_rc(bob, junk, len), 0);
        junk[0] = SIGMSG_VERSION_BYTE;
        assert_int_not_equal(dec_rc(bob, junk, len), 0);
    }
    assert_int_equal(dec_rc(bob, m.data, 0), PARLEY_EMALFORMED);
    assert_unchanged(bob, &before);

    /* The same through the prekey path, with and without a session. */
    struct ratchet_responder r = responder_of(&b);
    before = snap_of(bob);
    struct ratchet *none = NULL;
    for (size_t len = 1; len < sizeof(junk); len += 7) {
        randombytes_buf(junk, len);
        junk[0] = SIGMSG_VERSION_BYTE;
        uint8_t *pt = NULL;
        size_t pt_len = 0;
        bool used = false;
        uint32_t id = 0;
        assert_int_not_equal(ratchet_decrypt_prekey(&bob, &r, junk, len, &pt, &pt_len, &used, &id),
                             0);
        assert_int_not_equal(ratchet_decrypt_prekey(&none, &r, junk, len, &pt, &pt_len, &used, &id),
                             0);
        assert_null(none);
        assert_null(pt);
    }
    assert_unchanged(bob, &before);
    dec_ok(&bob, NULL, &m);
    msg_free(&m);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

/* Build a SignalMessage as a peer holding s's sending chain would: s is
 * serialized to read its chain key (the documented layout), the message key
 * for counter is derived by the KDFs written out here, and body is
 * encrypted raw (no padding added) when raw, else with PKCS#7. */
static void forge(const struct ratchet *s, const struct keys_public *receiver, uint32_t counter,
                  const struct keys_public *ratchet_key, const uint8_t *body, size_t body_len,
                  bool raw, uint8_t *out, size_t cap, size_t *out_len)
{
    struct snap n = snap_of(s);
    uint8_t ck[32];
    memcpy(ck, n.data + OFF_SEND_CHAIN, 32);
    uint32_t index = (uint32_t)n.data[OFF_SEND_INDEX] << 24 |
                     (uint32_t)n.data[OFF_SEND_INDEX + 1] << 16 |
                     (uint32_t)n.data[OFF_SEND_INDEX + 2] << 8 | n.data[OFF_SEND_INDEX + 3];
    struct keys_public sender, own_ratchet;
    memcpy(sender.u, n.data + OFF_OUR_IDENTITY, 32);
    memcpy(own_ratchet.u, n.data + OFF_SEND_PUB, 32);
    const uint8_t one = 1, two = 2;
    for (; index < counter; index++) {
        uint8_t next[32];
        crypto_auth_hmacsha256(next, &two, 1, ck);
        memcpy(ck, next, 32);
    }
    uint8_t seed[32], okm[80];
    crypto_auth_hmacsha256(seed, &one, 1, ck);
    static const char info[] = "WhisperMessageKeys";
    assert_int_equal(hkdf_sha256(seed, 32, NULL, 0, (const uint8_t *)info, strlen(info), okm, 80),
                     0);
    uint8_t ct[256];
    int n1 = 0, n2 = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, okm, okm + 64), 1);
    EVP_CIPHER_CTX_set_padding(ctx, raw ? 0 : 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, ct, &n1, body, (int)body_len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, ct + n1, &n2), 1);
    EVP_CIPHER_CTX_free(ctx);
    struct sigmsg m = {
        .ratchet_key = ratchet_key ? *ratchet_key : own_ratchet,
        .counter = counter,
        .previous_counter = 0,
        .ciphertext = ct,
        .ciphertext_len = (size_t)(n1 + n2),
    };
    assert_int_equal(sigmsg_encode(&m, okm + 32, &sender, receiver, out, cap, out_len), 0);
    free(n.data);
}

static void test_bad_padding_under_valid_mac_refused(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    const struct keys_public *bob_id = keys_public_of(b.identity);
    uint8_t wire[512];
    size_t len = 0;

    /* The forger is honest first: its padded message decrypts. */
    forge(alice, bob_id, 0, NULL, (const uint8_t *)"forged", 6, false, wire, sizeof(wire), &len);
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    assert_int_equal(ratchet_decrypt(bob, wire, len, &pt, &pt_len), 0);
    assert_memory_equal(pt, "forged", 6);
    ratchet_plaintext_free(pt, pt_len);

    /* A block whose last byte is 0x00, then one ending 0x11: not PKCS#7. */
    uint8_t block[16];
    memset(block, 0x41, sizeof(block));
    for (int k = 0; k < 2; k++) {
        block[15] = k == 0 ? 0x00 : 0x11;
        forge(alice, bob_id, 1, NULL, block, sizeof(block), true, wire, sizeof(wire), &len);
        struct snap before = snap_of(bob);
        assert_int_equal(dec_rc(bob, wire, len), PARLEY_EMALFORMED);
        assert_unchanged(bob, &before);
    }
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_counter_too_far_ahead_refused(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    const struct keys_public *bob_id = keys_public_of(b.identity);
    uint8_t wire[512];
    size_t len = 0;
    /* Alice's chain is at 0 and Bob's view of it too. */
    forge(alice, bob_id, RATCHET_MAX_SKIP + 1, NULL, (const uint8_t *)"x", 1, false, wire,
          sizeof(wire), &len);
    struct snap before = snap_of(bob);
    assert_int_equal(dec_rc(bob, wire, len), PARLEY_ETOOBIG);
    assert_unchanged(bob, &before);
    /* Exactly RATCHET_MAX_SKIP ahead is accepted. */
    forge(alice, bob_id, RATCHET_MAX_SKIP, NULL, (const uint8_t *)"x", 1, false, wire, sizeof(wire),
          &len);
    assert_int_equal(dec_rc(bob, wire, len), 0);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_unknown_or_low_order_ratchet_key_refused(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    const struct keys_public *bob_id = keys_public_of(b.identity);
    uint8_t wire[512];
    size_t len = 0;
    struct keys_pair *stranger = gen();
    forge(alice, bob_id, 0, keys_public_of(stranger), (const uint8_t *)"x", 1, false, wire,
          sizeof(wire), &len);
    struct snap before = snap_of(bob);
    assert_int_equal(dec_rc(bob, wire, len), PARLEY_EBAD_SIGNATURE);
    assert_unchanged(bob, &before);
    struct keys_public zero = {{0}};
    forge(alice, bob_id, 0, &zero, (const uint8_t *)"x", 1, false, wire, sizeof(wire), &len);
    before = snap_of(bob);
    assert_int_equal(dec_rc(bob, wire, len), PARLEY_EBAD_KEY);
    assert_unchanged(bob, &before);
    keys_free(stranger);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

/* A chain older than RATCHET_MAX_CHAINS turns is forgotten: its message
 * is refused and nothing changes. */
static void test_dropped_chain_refused(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    struct msg old = enc(alice, "late");
    struct msg keep = enc(alice, "kept");
    dec_ok(&bob, NULL, &keep);
    for (int turn = 0; turn < RATCHET_MAX_CHAINS; turn++) {
        struct msg r = enc(bob, "r");
        dec_ok(&alice, NULL, &r);
        msg_free(&r);
        struct msg m = enc(alice, "a");
        dec_ok(&bob, NULL, &m);
        msg_free(&m);
    }
    struct snap before = snap_of(bob);
    assert_int_equal(dec_rc(bob, old.data, old.len), PARLEY_EBAD_SIGNATURE);
    assert_unchanged(bob, &before);
    msg_free(&old);
    msg_free(&keep);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

/* Skipped keys over all chains are capped; the oldest go first. */
static void test_skipped_keys_capped_oldest_dropped(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    struct msg first = enc(alice, "first");
    struct msg second = enc(alice, "second");
    for (int i = 2; i < RATCHET_MAX_SKIP; i++) {
        struct msg m = enc(alice, "skip");
        msg_free(&m);
    }
    struct msg last = enc(alice, "last"); /* counter RATCHET_MAX_SKIP */
    dec_ok(&bob, NULL, &last);            /* RATCHET_MAX_SKIPPED kept */
    struct msg r = enc(bob, "r");
    dec_ok(&alice, NULL, &r);
    msg_free(&r);
    struct msg a0 = enc(alice, "a0");
    struct msg a1 = enc(alice, "a1");
    dec_ok(&bob, NULL, &a1); /* one more skipped: "first" is dropped */
    struct snap before = snap_of(bob);
    assert_int_equal(dec_rc(bob, first.data, first.len), PARLEY_EBAD_NONCE);
    assert_unchanged(bob, &before);
    dec_ok(&bob, NULL, &second);
    dec_ok(&bob, NULL, &a0);
    msg_free(&first);
    msg_free(&second);
    msg_free(&last);
    msg_free(&a0);
    msg_free(&a1);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_unknown_prekey_refused_session_unchanged(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct x3dh_bundle bundle;
    bundle_of(&b, true, &bundle);
    struct ratchet *alice = NULL, *bob = NULL;
    assert_int_equal(ratchet_initiate(alice_id, 111, &bundle, 222, &alice), 0);
    struct msg m = enc(alice, "hi");
    struct ratchet_responder r = responder_of(&b);
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    bool used = false;
    uint32_t id = 5;

    b.prekey_gone = true; /* one-time prekey unknown */
    assert_int_equal(ratchet_decrypt_prekey(&bob, &r, m.data, m.len, &pt, &pt_len, &used, &id),
                     PARLEY_ENOTFOUND);
    assert_null(bob);
    assert_null(pt);
    assert_int_equal(id, 5);

    /* An existing session with someone else stays as it was. */
    struct ratchet *other_alice = NULL, *existing = NULL;
    start(&b, alice_id, false, &other_alice, &existing);
    struct ratchet *kept = existing;
    struct snap before = snap_of(existing);
    assert_int_equal(ratchet_decrypt_prekey(&existing, &r, m.data, m.len, &pt, &pt_len, &used, &id),
                     PARLEY_ENOTFOUND);
    assert_ptr_equal(existing, kept);
    assert_unchanged(existing, &before);

    /* Unknown signed prekey. */
    b.prekey_gone = false;
    bundle.signed_prekey_id = 8;
    struct ratchet *alice2 = NULL;
    assert_int_equal(ratchet_initiate(alice_id, 111, &bundle, 222, &alice2), 0);
    struct msg m2 = enc(alice2, "hi");
    assert_int_equal(ratchet_decrypt_prekey(&bob, &r, m2.data, m2.len, &pt, &pt_len, &used, &id),
                     PARLEY_ENOTFOUND);
    assert_null(bob);
    /* The right ids: it works. */
    dec_ok(&bob, &b, &m);
    assert_true(b.prekey_gone);

    msg_free(&m);
    msg_free(&m2);
    ratchet_free(alice);
    ratchet_free(alice2);
    ratchet_free(other_alice);
    ratchet_free(existing);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_bad_signed_prekey_signature_refused(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct x3dh_bundle bundle;
    bundle_of(&b, true, &bundle);
    bundle.signed_prekey_signature[5] ^= 1;
    struct ratchet *alice = (struct ratchet *)&bundle; /* must stay untouched */
    assert_int_equal(ratchet_initiate(alice_id, 111, &bundle, 222, &alice), PARLEY_EBAD_SIGNATURE);
    assert_ptr_equal(alice, (struct ratchet *)&bundle);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_serialize_round_trip_continues(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct x3dh_bundle bundle;
    bundle_of(&b, true, &bundle);
    struct ratchet *alice = NULL, *bob = NULL;
    assert_int_equal(ratchet_initiate(alice_id, 111, &bundle, 222, &alice), 0);

    /* Pending state round-trips. */
    struct snap s1 = snap_of(alice);
    struct ratchet *copy = NULL;
    assert_int_equal(ratchet_deserialize(s1.data, s1.len, &copy), 0);
    assert_true(ratchet_is_pending_prekey(copy));
    assert_unchanged(copy, &s1);
    ratchet_free(alice);
    alice = copy;

    struct msg m0 = enc(alice, "m0");
    struct msg m1 = enc(alice, "m1");
    struct msg m2 = enc(alice, "m2");
    dec_ok(&bob, &b, &m2); /* Bob keeps skipped keys for m0, m1 */
    struct msg r = enc(bob, "r");
    dec_ok(&alice, NULL, &r);
    msg_free(&r);

    /* The initiator's state after the first reply (no longer pending)
     * round-trips too, and sends plain messages. */
    assert_false(ratchet_is_pending_prekey(alice));
    struct snap sa = snap_of(alice);
    assert_int_equal(ratchet_deserialize(sa.data, sa.len, &copy), 0);
    assert_unchanged(copy, &sa);
    assert_false(ratchet_is_pending_prekey(copy));
    ratchet_free(alice);
    alice = copy;

    struct snap s2 = snap_of(bob);
    assert_int_equal(ratchet_deserialize(s2.data, s2.len, &copy), 0);
    assert_unchanged(copy, &s2);
    ratchet_free(bob);
    bob = copy;
    dec_ok(&bob, &b, &m0); /* a prekey message on the restored session */
    dec_ok(&bob, &b, &m1);
    for (int turn = 0; turn < 3; turn++) {
        struct msg x = enc(alice, "x");
        dec_ok(&bob, &b, &x);
        msg_free(&x);
        struct msg y = enc(bob, "y");
        dec_ok(&alice, NULL, &y);
        msg_free(&y);
    }
    msg_free(&m0);
    msg_free(&m1);
    msg_free(&m2);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static int deser_rc(const uint8_t *in, size_t len)
{
    struct ratchet *s = NULL;
    int rc = ratchet_deserialize(in, len, &s);
    ratchet_free(s);
    return rc;
}

static void test_deserialize_refuses_garbage(void **state)
{
    (void)state;
    struct bob b;
    bob_init(&b);
    struct keys_pair *alice_id = gen();
    struct ratchet *alice = NULL, *bob = NULL;
    start(&b, alice_id, true, &alice, &bob);
    struct msg m0 = enc(alice, "m0");
    struct msg m1 = enc(alice, "m1");
    dec_ok(&bob, NULL, &m1); /* one skipped key */
    struct snap s = snap_of(bob);
    assert_int_equal(deser_rc(s.data, s.len), 0);

    for (size_t len = 0; len < s.len; len++)
        assert_int_not_equal(deser_rc(s.data, len), 0);
    uint8_t *longer = malloc(s.len + 1);
    assert_non_null(longer);
    memcpy(longer, s.data, s.len);
    longer[s.len] = 0;
    assert_int_equal(deser_rc(longer, s.len + 1), PARLEY_EMALFORMED);
    free(longer);

    s.data[0] = RATCHET_STATE_VERSION + 1;
    assert_int_equal(deser_rc(s.data, s.len), PARLEY_EVERSION);
    s.data[0] = RATCHET_STATE_VERSION;
    s.data[1] = 0x80; /* unknown flag */
    assert_int_equal(deser_rc(s.data, s.len), PARLEY_EMALFORMED);
    s.data[1] = 0;
    s.data[OFF_SEND_PUB] ^= 1; /* key halves disagree */
    assert_int_equal(deser_rc(s.data, s.len), PARLEY_EMALFORMED);
    s.data[OFF_SEND_PUB] ^= 1;
    /* The skipped key's counter (4 bytes before its seed at the end) made
     * not behind its chain. */
    size_t counter_off = s.len - 32 - 4;
    s.data[counter_off] = 0x7f;
    assert_int_equal(deser_rc(s.data, s.len), PARLEY_EMALFORMED);
    s.data[counter_off] = 0;
    /* Its chain id made unknown. */
    s.data[counter_off - 4] = 0x7f;
    assert_int_equal(deser_rc(s.data, s.len), PARLEY_EMALFORMED);
    s.data[counter_off - 4] = 0;
    assert_int_equal(deser_rc(s.data, s.len), 0);
    for (int i = 0; i < 200; i++) {
        uint8_t junk[600];
        size_t len = 1 + randombytes_uniform(sizeof(junk));
        randombytes_buf(junk, len);
        junk[0] = RATCHET_STATE_VERSION;
        assert_int_not_equal(deser_rc(junk, len), 0);
    }
    assert_int_equal(deser_rc(NULL, 0), PARLEY_EINVAL);
    free(s.data);
    msg_free(&m0);
    msg_free(&m1);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_id);
    bob_deinit(&b);
}

static void test_null_arguments_refused(void **state)
{
    (void)state;
    uint8_t *out = NULL;
    size_t len = 0;
    enum ratchet_msg_type type;
    assert_int_equal(ratchet_encrypt(NULL, (const uint8_t *)"x", 1, &out, &len, &type),
                     PARLEY_EINVAL);
    assert_int_equal(ratchet_decrypt(NULL, (const uint8_t *)"x", 1, &out, &len), PARLEY_EINVAL);
    struct ratchet *s = NULL;
    assert_int_equal(ratchet_initiate(NULL, 1, NULL, 2, &s), PARLEY_EINVAL);
    ratchet_free(NULL);
    ratchet_plaintext_free(NULL, 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converse_several_turns),
        cmocka_unit_test(test_empty_and_block_sized_plaintexts),
        cmocka_unit_test(test_out_of_order_and_dropped_across_turns),
        cmocka_unit_test(test_replay_refused_state_unchanged),
        cmocka_unit_test(test_tampering_refused_state_unchanged),
        cmocka_unit_test(test_garbage_refused_state_unchanged),
        cmocka_unit_test(test_bad_padding_under_valid_mac_refused),
        cmocka_unit_test(test_counter_too_far_ahead_refused),
        cmocka_unit_test(test_unknown_or_low_order_ratchet_key_refused),
        cmocka_unit_test(test_dropped_chain_refused),
        cmocka_unit_test(test_skipped_keys_capped_oldest_dropped),
        cmocka_unit_test(test_unknown_prekey_refused_session_unchanged),
        cmocka_unit_test(test_bad_signed_prekey_signature_refused),
        cmocka_unit_test(test_serialize_round_trip_continues),
        cmocka_unit_test(test_deserialize_refuses_garbage),
        cmocka_unit_test(test_null_arguments_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
