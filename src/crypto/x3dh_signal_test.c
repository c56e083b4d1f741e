/* SPDX-License-Identifier: MIT */
/* Interop of x3dh.h with libsignal-protocol-c's ratcheting_session.c:
 * parley's initiator and libsignal's ratcheting_session_bob_initialize on
 * the same keys reach the same root key and chain key; libsignal's
 * ratcheting_session_alice_initialize and parley's responder do too (its
 * root key after the first ratchet step, which libsignal takes at once,
 * recomputed here). With and without a one-time prekey; the signed prekey
 * signed by libsignal. */
#include "common/err.h"
#include "crypto/hkdf.h"
#include "crypto/signal_provider_test_util.h"
#include "crypto/x3dh.h"

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
#include <ratchet.h>
#include <session_state.h>
#include <signal_protocol.h>


/* A libsignal key pair and parley's copy of it. */
struct both_pair {
    ec_key_pair *theirs;
    struct keys_pair *ours;
};

static void both_pair_init(struct both_pair *p)
{
    assert_int_equal(curve_generate_key_pair(sigtest_ctx, &p->theirs), 0);
    signal_buffer *buf = NULL;
    assert_int_equal(ec_private_key_serialize(&buf, ec_key_pair_get_private(p->theirs)), 0);
    assert_int_equal(keys_from_private(signal_buffer_data(buf), &p->ours), 0);
    signal_buffer_bzero_free(buf);
}

static void both_pair_deinit(struct both_pair *p)
{
    SIGNAL_UNREF(p->theirs);
    keys_free(p->ours);
}

static ratchet_identity_key_pair *identity_of(const struct both_pair *p)
{
    ratchet_identity_key_pair *id = NULL;
    assert_int_equal(ratchet_identity_key_pair_create(&id, ec_key_pair_get_public(p->theirs),
                                                      ec_key_pair_get_private(p->theirs)),
                     0);
    return id;
}

static void assert_buffer(signal_buffer *buf, const uint8_t want[X3DH_KEY_LEN])
{
    assert_int_equal(signal_buffer_len(buf), X3DH_KEY_LEN);
    assert_memory_equal(signal_buffer_data(buf), want, X3DH_KEY_LEN);
    signal_buffer_bzero_free(buf);
}

static void test_parley_initiator_matches_libsignal_responder(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        bool with_prekey = round % 2 == 0;
        struct both_pair alice_id, alice_base, bob_id, bob_spk, bob_otk;
        both_pair_init(&alice_id);
        both_pair_init(&alice_base);
        both_pair_init(&bob_id);
        both_pair_init(&bob_spk);
        both_pair_init(&bob_otk);

        /* Bob's bundle, the signature made by libsignal. */
        struct x3dh_bundle b = {.signed_prekey_id = 1, .has_prekey = with_prekey, .prekey_id = 2};
        b.identity_key = *keys_public_of(bob_id.ours);
        b.signed_prekey = *keys_public_of(bob_spk.ours);
        b.prekey = *keys_public_of(bob_otk.ours);
        signal_buffer *spk = NULL, *sig = NULL;
        assert_int_equal(ec_public_key_serialize(&spk, ec_key_pair_get_public(bob_spk.theirs)), 0);
        assert_int_equal(curve_calculate_signature(sigtest_ctx, &sig,
                                                   ec_key_pair_get_private(bob_id.theirs),
                                                   signal_buffer_data(spk), signal_buffer_len(spk)),
                         0);
        memcpy(b.signed_prekey_signature, signal_buffer_data(sig), XEDDSA_SIGNATURE_LEN);
        signal_buffer_free(spk);
        signal_buffer_free(sig);

        struct x3dh_keys ours;
        assert_int_equal(x3dh_initiate(alice_id.ours, alice_base.ours, &b, &ours), 0);

        ratchet_identity_key_pair *bob_identity = identity_of(&bob_id);
        bob_signal_protocol_parameters *params = NULL;
        assert_int_equal(bob_signal_protocol_parameters_create(
                             &params, bob_identity, bob_spk.theirs,
                             with_prekey ? bob_otk.theirs : NULL, bob_spk.theirs,
                             ec_key_pair_get_public(alice_id.theirs),
                             ec_key_pair_get_public(alice_base.theirs)),
                         0);
        session_state *st = NULL;
        assert_int_equal(session_state_create(&st, sigtest_ctx), 0);
        assert_int_equal(ratcheting_session_bob_initialize(st, params, sigtest_ctx), 0);

        signal_buffer *buf = NULL;
        assert_int_equal(ratchet_root_key_get_key(session_state_get_root_key(st), &buf), 0);
        assert_buffer(buf, ours.root_key);
        assert_int_equal(ratchet_chain_key_get_key(session_state_get_sender_chain_key(st), &buf), 0);
        assert_buffer(buf, ours.chain_key);

        SIGNAL_UNREF(st);
        SIGNAL_UNREF(params);
        SIGNAL_UNREF(bob_identity);
        both_pair_deinit(&alice_id);
        both_pair_deinit(&alice_base);
        both_pair_deinit(&bob_id);
        both_pair_deinit(&bob_spk);
        both_pair_deinit(&bob_otk);
    }
}

static void test_libsignal_initiator_matches_parley_responder(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        bool with_prekey = round % 2 == 0;
        struct both_pair alice_id, alice_base, bob_id, bob_spk, bob_otk;
        both_pair_init(&alice_id);
        both_pair_init(&alice_base);
        both_pair_init(&bob_id);
        both_pair_init(&bob_spk);
        both_pair_init(&bob_otk);

        ratchet_identity_key_pair *alice_identity = identity_of(&alice_id);
        alice_signal_protocol_parameters *params = NULL;
        ec_public_key *spk_pub = ec_key_pair_get_public(bob_spk.theirs);
        assert_int_equal(alice_signal_protocol_parameters_create(
                             &params, alice_identity, alice_base.theirs,
                             ec_key_pair_get_public(bob_id.theirs), spk_pub,
                             with_prekey ? ec_key_pair_get_public(bob_otk.theirs) : NULL, spk_pub),
                         0);
        session_state *st = NULL;
        assert_int_equal(session_state_create(&st, sigtest_ctx), 0);
        assert_int_equal(ratcheting_session_alice_initialize(st, params, sigtest_ctx), 0);

        struct x3dh_keys ours;
        assert_int_equal(x3dh_respond(bob_id.ours, bob_spk.ours, with_prekey ? bob_otk.ours : NULL,
                                      keys_public_of(alice_id.ours),
                                      keys_public_of(alice_base.ours), &ours),
                         0);

        /* libsignal's Alice receives on Bob's signed prekey with our chain key. */
        signal_buffer *buf = NULL;
        assert_int_equal(
            ratchet_chain_key_get_key(session_state_get_receiver_chain_key(st, spk_pub), &buf), 0);
        assert_buffer(buf, ours.chain_key);

        /* Her root key has taken one ratchet step from ours: HKDF of
         * DH(her sending ratchet key, Bob's signed prekey), salt our root
         * key, info "WhisperRatchet", first 32 of 64 bytes. */
        ec_key_pair *sending = session_state_get_sender_ratchet_key_pair(st);
        signal_buffer *priv = NULL;
        assert_int_equal(ec_private_key_serialize(&priv, ec_key_pair_get_private(sending)), 0);
        struct keys_pair *ratchet = NULL;
        assert_int_equal(keys_from_private(signal_buffer_data(priv), &ratchet), 0);
        signal_buffer_bzero_free(priv);
        uint8_t dh[KEYS_SHARED_LEN], okm[64];
        assert_int_equal(keys_agree(ratchet, keys_public_of(bob_spk.ours), dh), 0);
        static const uint8_t info[] = "WhisperRatchet";
        assert_int_equal(hkdf_sha256(dh, sizeof(dh), ours.root_key, X3DH_KEY_LEN, info,
                                     sizeof(info) - 1, okm, sizeof(okm)),
                         0);
        assert_int_equal(ratchet_root_key_get_key(session_state_get_root_key(st), &buf), 0);
        assert_buffer(buf, okm);
        keys_free(ratchet);

        SIGNAL_UNREF(st);
        SIGNAL_UNREF(params);
        SIGNAL_UNREF(alice_identity);
        both_pair_deinit(&alice_id);
        both_pair_deinit(&alice_base);
        both_pair_deinit(&bob_id);
        both_pair_deinit(&bob_spk);
        both_pair_deinit(&bob_otk);
    }
}

/* A signature libsignal refuses, parley refuses before any agreement. */
static void test_signature_libsignal_refuses_is_refused(void **state)
{
    (void)state;
    struct both_pair alice_id, alice_base, bob_id, bob_spk;
    both_pair_init(&alice_id);
    both_pair_init(&alice_base);
    both_pair_init(&bob_id);
    both_pair_init(&bob_spk);
    struct x3dh_bundle b = {.signed_prekey_id = 1};
    b.identity_key = *keys_public_of(bob_id.ours);
    b.signed_prekey = *keys_public_of(bob_spk.ours);
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&b.signed_prekey, wire);
    assert_int_equal(xeddsa_sign(bob_id.ours, wire, sizeof(wire), b.signed_prekey_signature), 0);
    b.signed_prekey_signature[63] ^= 0x80; /* the sign bit */
    assert_int_equal(curve_verify_signature(ec_key_pair_get_public(bob_id.theirs), wire,
                                            sizeof(wire), b.signed_prekey_signature,
                                            XEDDSA_SIGNATURE_LEN),
                     0);
    struct x3dh_keys out;
    assert_int_equal(x3dh_initiate(alice_id.ours, alice_base.ours, &b, &out),
                     PARLEY_EBAD_SIGNATURE);
    both_pair_deinit(&alice_id);
    both_pair_deinit(&alice_base);
    both_pair_deinit(&bob_id);
    both_pair_deinit(&bob_spk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parley_initiator_matches_libsignal_responder),
        cmocka_unit_test(test_libsignal_initiator_matches_parley_responder),
        cmocka_unit_test(test_signature_libsignal_refuses_is_refused),
    };
    return cmocka_run_group_tests(tests, sigtest_setup, sigtest_teardown);
}
