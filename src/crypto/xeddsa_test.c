/* SPDX-License-Identifier: MIT */
/* Unit tests of xeddsa.h without the reference library: known answers
 * (made by libsignal-protocol-c's curve_calculate_signature from the same
 * key, message and random bytes; interop_signal_test.c checks them against
 * it again), a fresh nonce per signature, and the refusals. */
#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/xeddsa.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(hex), 2 * len);
    size_t bin_len = 0;
    assert_int_equal(sodium_hex2bin(out, len, hex, 2 * len, NULL, &bin_len, NULL), 0);
    assert_int_equal(bin_len, len);
}

static const char KAT_MSG[] = "parley signed prekey";

/* private key bytes first+0 .. first+31, random bytes 0 .. 63 */
struct kat {
    uint8_t first;
    const char *pub;
    const char *sig;
};

static const struct kat KATS[] = {
    {0xa0, "605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23c",
     "bf21cb7900befa716b44b1a542513b050958d1c18dd955e438f84f85c3bfc1c6"
     "d81c1f1fa5323e4bbb2cde5aa2c97a731843cdc372357df9dc84909a07bbe30b"},
    /* This key's Edwards form is "negative": the top bit of byte 63 is set. */
    {0x40, "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a",
     "e58c0397560fc150c4705c96f9341faeede45917a539b69bbccdbe413ea48079"
     "b874a5e7c4e85999dadf0bee814064487a05bf043a22a853c861cd71e1927587"},
};

static struct keys_pair *kat_pair(uint8_t first)
{
    uint8_t priv[KEYS_PRIVATE_LEN];
    for (int i = 0; i < KEYS_PRIVATE_LEN; i++)
        priv[i] = (uint8_t)(first + i);
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_from_private(priv, &kp), 0);
    return kp;
}

static void test_known_answers_sign_and_verify(void **state)
{
    (void)state;
    uint8_t z[XEDDSA_RANDOM_LEN];
    for (int i = 0; i < XEDDSA_RANDOM_LEN; i++)
        z[i] = (uint8_t)i;
    for (size_t k = 0; k < sizeof(KATS) / sizeof(KATS[0]); k++) {
        struct keys_pair *kp = kat_pair(KATS[k].first);
        uint8_t pub[32], want[XEDDSA_SIGNATURE_LEN], sig[XEDDSA_SIGNATURE_LEN];
        unhex(KATS[k].pub, pub, sizeof(pub));
        unhex(KATS[k].sig, want, sizeof(want));
        assert_memory_equal(keys_public_of(kp)->u, pub, sizeof(pub));
        assert_int_equal(xeddsa__sign_with_random(kp, (const uint8_t *)KAT_MSG,
                                                  sizeof(KAT_MSG) - 1, z, sig),
                         0);
        assert_memory_equal(sig, want, sizeof(want));
        assert_int_equal(xeddsa_verify(keys_public_of(kp), (const uint8_t *)KAT_MSG,
                                       sizeof(KAT_MSG) - 1, want, sizeof(want)),
                         0);
        keys_free(kp);
    }
}

static void test_each_signature_has_a_fresh_nonce(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t s1[XEDDSA_SIGNATURE_LEN], s2[XEDDSA_SIGNATURE_LEN];
    assert_int_equal(xeddsa_sign(kp, (const uint8_t *)"m", 1, s1), 0);
    assert_int_equal(xeddsa_sign(kp, (const uint8_t *)"m", 1, s2), 0);
    assert_memory_not_equal(s1, s2, 32); /* R differs */
    assert_int_equal(xeddsa_verify(keys_public_of(kp), (const uint8_t *)"m", 1, s1, 64), 0);
    assert_int_equal(xeddsa_verify(keys_public_of(kp), (const uint8_t *)"m", 1, s2, 64), 0);
    keys_free(kp);
}

static void test_empty_message_signs_and_verifies(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t sig[XEDDSA_SIGNATURE_LEN];
    assert_int_equal(xeddsa_sign(kp, NULL, 0, sig), 0);
    assert_int_equal(xeddsa_verify(keys_public_of(kp), NULL, 0, sig, sizeof(sig)), 0);
    assert_int_equal(xeddsa_verify(keys_public_of(kp), (const uint8_t *)"x", 1, sig, sizeof(sig)),
                     PARLEY_EBAD_SIGNATURE);
    keys_free(kp);
}

static void test_signing_a_prekey_public_key(void **state)
{
    (void)state;
    /* Signal signs the 33-byte serialized signed prekey. */
    struct keys_pair *identity = NULL, *prekey = NULL;
    assert_int_equal(keys_generate(&identity), 0);
    assert_int_equal(keys_generate(&prekey), 0);
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN], sig[XEDDSA_SIGNATURE_LEN];
    keys_public_encode(keys_public_of(prekey), wire);
    assert_int_equal(xeddsa_sign(identity, wire, sizeof(wire), sig), 0);
    assert_int_equal(xeddsa_verify(keys_public_of(identity), wire, sizeof(wire), sig, sizeof(sig)),
                     0);
    /* The prekey's own key cannot stand in for the identity key. */
    assert_int_equal(xeddsa_verify(keys_public_of(prekey), wire, sizeof(wire), sig, sizeof(sig)),
                     PARLEY_EBAD_SIGNATURE);
    keys_free(identity);
    keys_free(prekey);
}

static void test_tampered_signature_message_or_key_is_refused(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t msg[40], sig[XEDDSA_SIGNATURE_LEN];
    randombytes_buf(msg, sizeof(msg));
    assert_int_equal(xeddsa_sign(kp, msg, sizeof(msg), sig), 0);
    struct keys_public pk = *keys_public_of(kp);
    for (size_t i = 0; i < sizeof(sig); i++) {
        sig[i] ^= 0x01;
        assert_int_equal(xeddsa_verify(&pk, msg, sizeof(msg), sig, sizeof(sig)),
                         PARLEY_EBAD_SIGNATURE);
        sig[i] ^= 0x01;
    }
    sig[63] ^= 0x80; /* the carried sign bit */
    assert_int_equal(xeddsa_verify(&pk, msg, sizeof(msg), sig, sizeof(sig)), PARLEY_EBAD_SIGNATURE);
    sig[63] ^= 0x80;
    for (size_t i = 0; i < sizeof(msg); i++) {
        msg[i] ^= 0x10;
        assert_int_equal(xeddsa_verify(&pk, msg, sizeof(msg), sig, sizeof(sig)),
                         PARLEY_EBAD_SIGNATURE);
        msg[i] ^= 0x10;
    }
    assert_int_equal(xeddsa_verify(&pk, msg, sizeof(msg) - 1, sig, sizeof(sig)),
                     PARLEY_EBAD_SIGNATURE);
    for (size_t i = 0; i < 31; i++) {
        pk.u[i] ^= 0x02;
        assert_int_equal(xeddsa_verify(&pk, msg, sizeof(msg), sig, sizeof(sig)),
                         PARLEY_EBAD_SIGNATURE);
        pk.u[i] ^= 0x02;
    }
    assert_int_equal(xeddsa_verify(&pk, msg, sizeof(msg), sig, sizeof(sig)), 0);
    keys_free(kp);
}

static void test_wrong_signature_lengths_are_refused(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t sig[XEDDSA_SIGNATURE_LEN + 1] = {0};
    assert_int_equal(xeddsa_sign(kp, (const uint8_t *)"m", 1, sig), 0);
    for (size_t len = 0; len <= sizeof(sig); len++) {
        int want = len == XEDDSA_SIGNATURE_LEN ? 0 : PARLEY_EBAD_SIGNATURE;
        assert_int_equal(xeddsa_verify(keys_public_of(kp), (const uint8_t *)"m", 1, sig, len), want);
    }
    keys_free(kp);
}

/* An all-zero signature under the all-zero key (Edwards key of order 2):
 * S*B - h*A is then the neutral element or the key itself, and neither
 * encodes as 32 zero bytes, so the reference refuses it and so must we. */
static void test_zero_signature_under_zero_key_is_refused(void **state)
{
    (void)state;
    struct keys_public zero = {{0}};
    uint8_t sig[XEDDSA_SIGNATURE_LEN] = {0};
    assert_int_equal(xeddsa_verify(&zero, (const uint8_t *)"m", 1, sig, sizeof(sig)),
                     PARLEY_EBAD_SIGNATURE);
}

static void test_null_arguments_are_refused(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t sig[XEDDSA_SIGNATURE_LEN], z[XEDDSA_RANDOM_LEN] = {0};
    assert_int_equal(xeddsa_sign(NULL, NULL, 0, sig), PARLEY_EINVAL);
    assert_int_equal(xeddsa_sign(kp, NULL, 1, sig), PARLEY_EINVAL);
    assert_int_equal(xeddsa_sign(kp, NULL, 0, NULL), PARLEY_EINVAL);
    assert_int_equal(xeddsa__sign_with_random(kp, NULL, 0, NULL, sig), PARLEY_EINVAL);
    assert_int_equal(xeddsa__sign_with_random(kp, NULL, 0, z, sig), 0);
    assert_int_equal(xeddsa_verify(NULL, NULL, 0, sig, sizeof(sig)), PARLEY_EINVAL);
    assert_int_equal(xeddsa_verify(keys_public_of(kp), NULL, 1, sig, sizeof(sig)), PARLEY_EINVAL);
    assert_int_equal(xeddsa_verify(keys_public_of(kp), NULL, 0, NULL, 64), PARLEY_EINVAL);
    assert_int_equal(xeddsa_verify(keys_public_of(kp), NULL, 0, NULL, 0), PARLEY_EBAD_SIGNATURE);
    keys_free(kp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers_sign_and_verify),
        cmocka_unit_test(test_each_signature_has_a_fresh_nonce),
        cmocka_unit_test(test_empty_message_signs_and_verifies),
        cmocka_unit_test(test_signing_a_prekey_public_key),
        cmocka_unit_test(test_tampered_signature_message_or_key_is_refused),
        cmocka_unit_test(test_wrong_signature_lengths_are_refused),
        cmocka_unit_test(test_zero_signature_under_zero_key_is_refused),
        cmocka_unit_test(test_null_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
