/* SPDX-License-Identifier: MIT */
/* Unit tests of keys.h: the RFC 7748 X25519 vectors (section 5.2, including
 * the iterated one to 1,000, and the section 6.1 exchange), the 33-byte
 * public-key form and its refusals, clamping, and the refusal of an
 * all-zero shared secret. */
#include "common/err.h"
#include "crypto/keys.h"

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

static struct keys_pair *pair_from_hex(const char *hex)
{
    uint8_t priv[KEYS_PRIVATE_LEN];
    unhex(hex, priv, sizeof(priv));
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_from_private(priv, &kp), 0);
    assert_non_null(kp);
    return kp;
}

/* X25519(k, u) through the public API: k as a stored private key, u as a
 * peer's public key. */
static int x25519(const uint8_t k[32], const uint8_t u[32], uint8_t out[32])
{
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_from_private(k, &kp), 0);
    struct keys_public peer;
    memcpy(peer.u, u, 32);
    int rc = keys_agree(kp, &peer, out);
    keys_free(kp);
    return rc;
}

static void assert_x25519(const char *k_hex, const char *u_hex, const char *want_hex)
{
    uint8_t k[32], u[32], want[32], out[32];
    unhex(k_hex, k, 32);
    unhex(u_hex, u, 32);
    unhex(want_hex, want, 32);
    assert_int_equal(x25519(k, u, out), 0);
    assert_memory_equal(out, want, 32);
}

static void test_rfc7748_5_2_vector_1(void **state)
{
    (void)state;
    assert_x25519("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                  "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                  "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
}

/* The u of this vector has its top bit set, which X25519 must ignore. */
static void test_rfc7748_5_2_vector_2_ignores_top_bit_of_u(void **state)
{
    (void)state;
    assert_x25519("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                  "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                  "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
}

static void test_rfc7748_5_2_iterated_1_and_1000(void **state)
{
    (void)state;
    uint8_t k[32] = {9}, u[32] = {9}, r[32], want1[32], want1000[32];
    unhex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079", want1, 32);
    unhex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51", want1000, 32);
    for (int i = 1; i <= 1000; i++) {
        assert_int_equal(x25519(k, u, r), 0);
        memcpy(u, k, 32);
        memcpy(k, r, 32);
        if (i == 1)
            assert_memory_equal(k, want1, 32);
    }
    assert_memory_equal(k, want1000, 32);
}

static void test_rfc7748_6_1_diffie_hellman(void **state)
{
    (void)state;
    struct keys_pair *alice =
        pair_from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    struct keys_pair *bob =
        pair_from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    uint8_t want_a[32], want_b[32], want_k[32], k1[32], k2[32];
    unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", want_a, 32);
    unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", want_b, 32);
    unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", want_k, 32);
    assert_memory_equal(keys_public_of(alice)->u, want_a, 32);
    assert_memory_equal(keys_public_of(bob)->u, want_b, 32);
    assert_int_equal(keys_agree(alice, keys_public_of(bob), k1), 0);
    assert_int_equal(keys_agree(bob, keys_public_of(alice), k2), 0);
    assert_memory_equal(k1, want_k, 32);
    assert_memory_equal(k2, want_k, 32);
    keys_free(alice);
    keys_free(bob);
}

static void test_generated_keys_are_clamped_and_agree(void **state)
{
    (void)state;
    struct keys_pair *a = NULL, *b = NULL;
    assert_int_equal(keys_generate(&a), 0);
    assert_int_equal(keys_generate(&b), 0);
    uint8_t priv[KEYS_PRIVATE_LEN];
    keys_private_export(a, priv);
    assert_int_equal(priv[0] & 7, 0);
    assert_int_equal(priv[31] & 0xc0, 0x40);
    assert_memory_not_equal(keys_public_of(a)->u, keys_public_of(b)->u, KEYS_PUBLIC_LEN);

    uint8_t k1[32], k2[32];
    assert_int_equal(keys_agree(a, keys_public_of(b), k1), 0);
    assert_int_equal(keys_agree(b, keys_public_of(a), k2), 0);
    assert_memory_equal(k1, k2, 32);

    /* Exported then re-imported, the key is the same key. */
    struct keys_pair *a2 = NULL;
    assert_int_equal(keys_from_private(priv, &a2), 0);
    sodium_memzero(priv, sizeof(priv));
    assert_memory_equal(keys_public_of(a2)->u, keys_public_of(a)->u, KEYS_PUBLIC_LEN);
    keys_free(a2);
    keys_free(a);
    keys_free(b);
}

static void test_from_private_clamps(void **state)
{
    (void)state;
    uint8_t raw[32], clamped[32], out[32];
    memset(raw, 0xff, sizeof(raw));
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_from_private(raw, &kp), 0);
    keys_private_export(kp, out);
    memcpy(clamped, raw, sizeof(clamped));
    clamped[0] = 0xf8;
    clamped[31] = 0x7f;
    assert_memory_equal(out, clamped, 32);
    keys_free(kp);
}

static void test_public_encode_decode_round_trip(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(keys_public_of(kp), wire);
    assert_int_equal(wire[0], 0x05);
    assert_memory_equal(wire + 1, keys_public_of(kp)->u, 32);
    struct keys_public back;
    assert_int_equal(keys_public_decode(wire, sizeof(wire), &back), 0);
    assert_memory_equal(back.u, keys_public_of(kp)->u, 32);
    keys_free(kp);
}

static void test_public_decode_refuses_other_types_and_lengths(void **state)
{
    (void)state;
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN + 1];
    memset(wire, 0x42, sizeof(wire));
    wire[0] = KEYS_DJB_TYPE;
    struct keys_public out, untouched;
    memset(&untouched, 0xa5, sizeof(untouched));

    for (unsigned type = 0; type < 256; type++) {
        if (type == KEYS_DJB_TYPE)
            continue;
        wire[0] = (uint8_t)type;
        out = untouched;
        assert_int_equal(keys_public_decode(wire, KEYS_PUBLIC_WIRE_LEN, &out), PARLEY_EBAD_KEY);
        assert_memory_equal(&out, &untouched, sizeof(out));
    }
    wire[0] = KEYS_DJB_TYPE;
    for (size_t len = 0; len <= sizeof(wire); len++) {
        if (len == KEYS_PUBLIC_WIRE_LEN)
            continue;
        out = untouched;
        assert_int_equal(keys_public_decode(wire, len, &out), PARLEY_EBAD_KEY);
        assert_memory_equal(&out, &untouched, sizeof(out));
    }
    /* The raw 32-byte form, without its type byte, is refused too. */
    assert_int_equal(keys_public_decode(wire + 1, KEYS_PUBLIC_LEN, &out), PARLEY_EBAD_KEY);
    assert_int_equal(keys_public_decode(NULL, 0, &out), PARLEY_EBAD_KEY);
    assert_int_equal(keys_public_decode(NULL, 33, &out), PARLEY_EINVAL);
    assert_int_equal(keys_public_decode(wire, 33, NULL), PARLEY_EINVAL);
}

/* Low-order points (RFC 7748 section 6.1's "check for the all-zero value"):
 * u = 0, u = 1, and the order-8 point; each gives a zero secret. */
static void test_agree_refuses_low_order_points(void **state)
{
    (void)state;
    static const char *const low_order[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        struct keys_public peer;
        unhex(low_order[i], peer.u, 32);
        uint8_t out[32];
        memset(out, 0x5a, sizeof(out));
        assert_int_equal(keys_agree(kp, &peer, out), PARLEY_EBAD_KEY);
        assert_true(sodium_is_zero(out, sizeof(out)));
    }
    keys_free(kp);
}

static void test_null_arguments_are_refused(void **state)
{
    (void)state;
    uint8_t priv[32] = {1}, out[32];
    assert_int_equal(keys_generate(NULL), PARLEY_EINVAL);
    assert_int_equal(keys_from_private(NULL, &(struct keys_pair *){NULL}), PARLEY_EINVAL);
    assert_int_equal(keys_from_private(priv, NULL), PARLEY_EINVAL);
    struct keys_public pk = {{9}};
    assert_int_equal(keys_agree(NULL, &pk, out), PARLEY_EINVAL);
    keys_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7748_5_2_vector_1),
        cmocka_unit_test(test_rfc7748_5_2_vector_2_ignores_top_bit_of_u),
        cmocka_unit_test(test_rfc7748_5_2_iterated_1_and_1000),
        cmocka_unit_test(test_rfc7748_6_1_diffie_hellman),
        cmocka_unit_test(test_generated_keys_are_clamped_and_agree),
        cmocka_unit_test(test_from_private_clamps),
        cmocka_unit_test(test_public_encode_decode_round_trip),
        cmocka_unit_test(test_public_decode_refuses_other_types_and_lengths),
        cmocka_unit_test(test_agree_refuses_low_order_points),
        cmocka_unit_test(test_null_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
