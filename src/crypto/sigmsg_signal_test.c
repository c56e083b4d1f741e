/* SPDX-License-Identifier: MIT */
/* Interop of sigmsg.h with libsignal-protocol-c: messages it creates parse
 * in parley with equal fields and a MAC that verifies, parley writes the
 * very same bytes from the same fields, and parley's messages deserialize
 * and verify in libsignal; both parsers give the same verdict on every
 * single-bit change of a message. SignalMessage and PreKeySignalMessage,
 * with and without a one-time prekey id. */
#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/signal_provider_test_util.h"
#include "crypto/sigmsg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include <curve.h>
#include <protocol.h>
#include <signal_protocol.h>


/* A fresh libsignal public key and our view of it. */
static ec_public_key *their_key(struct keys_public *ours)
{
    ec_key_pair *pair = NULL;
    assert_int_equal(curve_generate_key_pair(sigtest_ctx, &pair), 0);
    ec_public_key *pub = ec_key_pair_get_public(pair);
    SIGNAL_REF(pub);
    SIGNAL_UNREF(pair);
    signal_buffer *buf = NULL;
    assert_int_equal(ec_public_key_serialize(&buf, pub), 0);
    assert_int_equal(keys_public_decode(signal_buffer_data(buf), signal_buffer_len(buf), ours), 0);
    signal_buffer_free(buf);
    return pub;
}

static void assert_same_key(const ec_public_key *theirs, const struct keys_public *ours)
{
    signal_buffer *buf = NULL;
    assert_int_equal(ec_public_key_serialize(&buf, theirs), 0);
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(ours, wire);
    assert_int_equal(signal_buffer_len(buf), sizeof(wire));
    assert_memory_equal(signal_buffer_data(buf), wire, sizeof(wire));
    signal_buffer_free(buf);
}

/* One SignalMessage's inputs, in both libraries' terms. */
struct fixture {
    ec_public_key *ratchet, *sender, *receiver;
    struct keys_public our_ratchet, our_sender, our_receiver;
    uint8_t mac_key[SIGMSG_MAC_KEY_LEN];
    uint32_t counter, previous_counter;
    uint8_t ct[200];
    size_t ct_len;
};

static void fixture_init(struct fixture *f, unsigned i)
{
    f->ratchet = their_key(&f->our_ratchet);
    f->sender = their_key(&f->our_sender);
    f->receiver = their_key(&f->our_receiver);
    randombytes_buf(f->mac_key, sizeof(f->mac_key));
    /* Small, multi-byte and extreme varints. */
    static const uint32_t counters[] = {0, 1, 127, 128, 2000, 65535, 0x7fffffff, UINT32_MAX};
    f->counter = counters[i % 8];
    f->previous_counter = counters[(i / 8 + i) % 8];
    f->ct_len = 1 + randombytes_uniform(sizeof(f->ct));
    randombytes_buf(f->ct, f->ct_len);
}

static void fixture_deinit(struct fixture *f)
{
    SIGNAL_UNREF(f->ratchet);
    SIGNAL_UNREF(f->sender);
    SIGNAL_UNREF(f->receiver);
}

static signal_message *their_message(const struct fixture *f)
{
    signal_message *msg = NULL;
    assert_int_equal(signal_message_create(&msg, 3, f->mac_key, sizeof(f->mac_key), f->ratchet,
                                           f->counter, f->previous_counter, f->ct, f->ct_len,
                                           f->sender, f->receiver, sigtest_ctx),
                     0);
    return msg;
}

static signal_buffer *serialized(void *msg)
{
    return ciphertext_message_get_serialized((ciphertext_message *)msg);
}

static size_t our_message(const struct fixture *f, uint8_t *out, size_t cap)
{
    struct sigmsg m = {.ratchet_key = f->our_ratchet,
                       .counter = f->counter,
                       .previous_counter = f->previous_counter,
                       .ciphertext = (uint8_t *)f->ct,
                       .ciphertext_len = f->ct_len};
    size_t len = 0;
    assert_int_equal(sigmsg_encode(&m, f->mac_key, &f->our_sender, &f->our_receiver, out, cap, &len),
                     0);
    return len;
}

static void test_signal_message_from_libsignal_parses_with_equal_fields(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 64; i++) {
        struct fixture f;
        fixture_init(&f, i);
        signal_message *msg = their_message(&f);
        signal_buffer *buf = serialized(msg);

        struct sigmsg got;
        assert_int_equal(sigmsg_decode(signal_buffer_data(buf), signal_buffer_len(buf), &got), 0);
        assert_same_key(f.ratchet, &got.ratchet_key);
        assert_int_equal(got.counter, f.counter);
        assert_int_equal(got.previous_counter, f.previous_counter);
        assert_int_equal(got.ciphertext_len, f.ct_len);
        assert_memory_equal(got.ciphertext, f.ct, f.ct_len);
        sigmsg_clear(&got);
        assert_int_equal(sigmsg_verify_mac(signal_buffer_data(buf), signal_buffer_len(buf),
                                           f.mac_key, &f.our_sender, &f.our_receiver),
                         0);
        /* The MAC binds the direction: receiver and sender swapped fail. */
        assert_int_equal(sigmsg_verify_mac(signal_buffer_data(buf), signal_buffer_len(buf),
                                           f.mac_key, &f.our_receiver, &f.our_sender),
                         PARLEY_EBAD_SIGNATURE);

        /* parley writes the same bytes from the same fields. */
        uint8_t ours[512];
        size_t len = our_message(&f, ours, sizeof(ours));
        assert_int_equal(len, signal_buffer_len(buf));
        assert_memory_equal(ours, signal_buffer_data(buf), len);

        SIGNAL_UNREF(msg);
        fixture_deinit(&f);
    }
}

static void test_signal_message_from_parley_deserializes_and_verifies_in_libsignal(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 64; i++) {
        struct fixture f;
        fixture_init(&f, i);
        uint8_t ours[512];
        size_t len = our_message(&f, ours, sizeof(ours));

        signal_message *msg = NULL;
        assert_int_equal(signal_message_deserialize(&msg, ours, len, sigtest_ctx), 0);
        assert_int_equal(signal_message_get_message_version(msg), 3);
        assert_int_equal(ec_public_key_compare(signal_message_get_sender_ratchet_key(msg),
                                               f.ratchet),
                         0);
        assert_int_equal(signal_message_get_counter(msg), f.counter);
        signal_buffer *body = signal_message_get_body(msg);
        assert_int_equal(signal_buffer_len(body), f.ct_len);
        assert_memory_equal(signal_buffer_data(body), f.ct, f.ct_len);
        assert_int_equal(signal_message_verify_mac(msg, f.sender, f.receiver, f.mac_key,
                                                   sizeof(f.mac_key), sigtest_ctx),
                         1);
        SIGNAL_UNREF(msg);

        /* A changed MAC byte fails there too. */
        ours[len - 1 - i % SIGMSG_MAC_LEN] ^= 0x40;
        assert_int_equal(signal_message_deserialize(&msg, ours, len, sigtest_ctx), 0);
        assert_int_equal(signal_message_verify_mac(msg, f.sender, f.receiver, f.mac_key,
                                                   sizeof(f.mac_key), sigtest_ctx),
                         0);
        SIGNAL_UNREF(msg);
        fixture_deinit(&f);
    }
}

/* libsignal's and parley's parse verdicts on every single-bit change of a
 * message, the version byte aside (parley reads only version 3, where
 * libsignal's SignalMessage parser also takes version 2). */
static void test_parsers_agree_on_every_bit_flip(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, 9);
    f.ct_len = 20;
    uint8_t msg[512];
    size_t len = our_message(&f, msg, sizeof(msg));
    unsigned refused = 0;
    for (size_t bit = 8; bit < len * 8; bit++) {
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        signal_message *theirs = NULL;
        int t = signal_message_deserialize(&theirs, msg, len, sigtest_ctx);
        SIGNAL_UNREF(theirs);
        struct sigmsg got;
        int o = sigmsg_decode(msg, len, &got);
        if (o == 0)
            sigmsg_clear(&got);
        if ((t == 0) != (o == 0))
            fail_msg("bit %zu: libsignal %d, parley %d", bit, t, o);
        refused += o != 0;
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Some flips must have been refused, or the test proves nothing. */
    assert_true(refused > 0);
    fixture_deinit(&f);
}

/* A PreKeySignalMessage's inputs around a fixture's SignalMessage. */
struct prekey_fixture {
    struct fixture f;
    ec_public_key *base, *identity;
    struct keys_public our_base, our_identity;
    uint32_t registration_id, prekey_id, signed_prekey_id;
    bool with_prekey;
};

static void prekey_fixture_init(struct prekey_fixture *p, unsigned i)
{
    fixture_init(&p->f, i);
    p->base = their_key(&p->our_base);
    p->identity = their_key(&p->our_identity);
    p->registration_id = randombytes_uniform(16380) + 1;
    p->prekey_id = i * 1000 + 1;
    p->signed_prekey_id = randombytes_random() & 0xffffff;
    p->with_prekey = i % 2 == 0;
}

static void prekey_fixture_deinit(struct prekey_fixture *p)
{
    SIGNAL_UNREF(p->base);
    SIGNAL_UNREF(p->identity);
    fixture_deinit(&p->f);
}

static void test_prekey_message_from_libsignal_parses_with_equal_fields(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 32; i++) {
        struct prekey_fixture p;
        prekey_fixture_init(&p, i);
        signal_message *inner = their_message(&p.f);
        pre_key_signal_message *msg = NULL;
        assert_int_equal(pre_key_signal_message_create(&msg, 3, p.registration_id,
                                                       p.with_prekey ? &p.prekey_id : NULL,
                                                       p.signed_prekey_id, p.base, p.identity,
                                                       inner, sigtest_ctx),
                         0);
        signal_buffer *buf = serialized(msg);

        struct sigmsg_prekey got;
        assert_int_equal(
            sigmsg_prekey_decode(signal_buffer_data(buf), signal_buffer_len(buf), &got), 0);
        assert_int_equal(got.registration_id, p.registration_id);
        assert_int_equal(got.has_prekey_id, p.with_prekey);
        if (p.with_prekey)
            assert_int_equal(got.prekey_id, p.prekey_id);
        assert_int_equal(got.signed_prekey_id, p.signed_prekey_id);
        assert_same_key(p.base, &got.base_key);
        assert_same_key(p.identity, &got.identity_key);
        signal_buffer *inner_buf = serialized(inner);
        assert_int_equal(got.message_len, signal_buffer_len(inner_buf));
        assert_memory_equal(got.message, signal_buffer_data(inner_buf), got.message_len);
        assert_int_equal(got.inner.counter, p.f.counter);
        assert_memory_equal(got.inner.ciphertext, p.f.ct, p.f.ct_len);
        assert_int_equal(sigmsg_verify_mac(got.message, got.message_len, p.f.mac_key,
                                           &p.f.our_sender, &p.f.our_receiver),
                         0);

        /* The same bytes from parley. */
        uint8_t ours[1024];
        size_t len = 0;
        assert_int_equal(sigmsg_prekey_encode(&got, ours, sizeof(ours), &len), 0);
        assert_int_equal(len, signal_buffer_len(buf));
        assert_memory_equal(ours, signal_buffer_data(buf), len);

        sigmsg_prekey_clear(&got);
        SIGNAL_UNREF(msg);
        SIGNAL_UNREF(inner);
        prekey_fixture_deinit(&p);
    }
}

static void test_prekey_message_from_parley_deserializes_in_libsignal(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 32; i++) {
        struct prekey_fixture p;
        prekey_fixture_init(&p, i);
        uint8_t inner[512], out[1024];
        size_t inner_len = our_message(&p.f, inner, sizeof(inner)), len = 0;
        struct sigmsg_prekey m = {.registration_id = p.registration_id,
                                  .has_prekey_id = p.with_prekey,
                                  .prekey_id = p.prekey_id,
                                  .signed_prekey_id = p.signed_prekey_id,
                                  .base_key = p.our_base,
                                  .identity_key = p.our_identity,
                                  .message = inner,
                                  .message_len = inner_len};
        assert_int_equal(sigmsg_prekey_encode(&m, out, sizeof(out), &len), 0);

        pre_key_signal_message *msg = NULL;
        assert_int_equal(pre_key_signal_message_deserialize(&msg, out, len, sigtest_ctx), 0);
        assert_int_equal(pre_key_signal_message_get_message_version(msg), 3);
        assert_int_equal(pre_key_signal_message_get_registration_id(msg), p.registration_id);
        assert_int_equal(pre_key_signal_message_has_pre_key_id(msg), p.with_prekey);
        if (p.with_prekey)
            assert_int_equal(pre_key_signal_message_get_pre_key_id(msg), p.prekey_id);
        assert_int_equal(pre_key_signal_message_get_signed_pre_key_id(msg), p.signed_prekey_id);
        assert_int_equal(ec_public_key_compare(pre_key_signal_message_get_base_key(msg), p.base),
                         0);
        assert_int_equal(
            ec_public_key_compare(pre_key_signal_message_get_identity_key(msg), p.identity), 0);
        signal_message *sm = pre_key_signal_message_get_signal_message(msg);
        assert_int_equal(signal_message_get_counter(sm), p.f.counter);
        assert_int_equal(signal_message_verify_mac(sm, p.f.sender, p.f.receiver, p.f.mac_key,
                                                   sizeof(p.f.mac_key), sigtest_ctx),
                         1);
        SIGNAL_UNREF(msg);

        /* Bit flips after the version byte: the two parsers agree. */
        if (i < 2) {
            for (size_t bit = 8; bit < len * 8; bit++) {
                out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                pre_key_signal_message *theirs = NULL;
                int t = pre_key_signal_message_deserialize(&theirs, out, len, sigtest_ctx);
                SIGNAL_UNREF(theirs);
                struct sigmsg_prekey got;
                int o = sigmsg_prekey_decode(out, len, &got);
                if (o == 0)
                    sigmsg_prekey_clear(&got);
                /* An inner version of 2 is refused by both: libsignal
                 * checks that inner and outer versions agree. */
                if ((t == 0) != (o == 0))
                    fail_msg("bit %zu: libsignal %d, parley %d", bit, t, o);
                out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            }
        }
        prekey_fixture_deinit(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_message_from_libsignal_parses_with_equal_fields),
        cmocka_unit_test(test_signal_message_from_parley_deserializes_and_verifies_in_libsignal),
        cmocka_unit_test(test_parsers_agree_on_every_bit_flip),
        cmocka_unit_test(test_prekey_message_from_libsignal_parses_with_equal_fields),
        cmocka_unit_test(test_prekey_message_from_parley_deserializes_in_libsignal),
    };
    return cmocka_run_group_tests(tests, sigtest_setup, sigtest_teardown);
}
