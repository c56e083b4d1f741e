/* SPDX-License-Identifier: MIT */
/* Interop of keys.h, xeddsa.h and hkdf.h with Signal's reference C library,
 * libsignal-protocol-c, run in-process as the peer: each side verifies the
 * other's signatures, both make the same signature from the same key and
 * randomness, agreement gives equal secrets both ways, and the two
 * verifiers give the same verdict on tampered and edge-case signatures.
 * The library runs on the test-only crypto provider of
 * signal_provider_test_util.c. */
#include "common/err.h"
#include "crypto/hkdf.h"
#include "crypto/keys.h"
#include "crypto/signal_provider_test_util.h"
#include "crypto/xeddsa.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sodium.h>

#include <curve.h>
#include <hkdf.h>
#include <signal_protocol.h>


/* ---- helpers ---- */

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(hex), 2 * len);
    size_t bin_len = 0;
    assert_int_equal(sodium_hex2bin(out, len, hex, 2 * len, NULL, &bin_len, NULL), 0);
    assert_int_equal(bin_len, len);
}

/* libsignal's view of a 33-byte public key. */
static ec_public_key *their_public(const struct keys_public *pk)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(pk, wire);
    ec_public_key *key = NULL;
    assert_int_equal(curve_decode_point(&key, wire, sizeof(wire), sigtest_ctx), 0);
    return key;
}

/* Our view of a libsignal public key, through its 33-byte serialization. */
static void our_public(const ec_public_key *key, struct keys_public *out)
{
    signal_buffer *buf = NULL;
    assert_int_equal(ec_public_key_serialize(&buf, key), 0);
    assert_int_equal(signal_buffer_len(buf), KEYS_PUBLIC_WIRE_LEN);
    assert_int_equal(keys_public_decode(signal_buffer_data(buf), signal_buffer_len(buf), out), 0);
    signal_buffer_free(buf);
}

/* Our key pair from libsignal's private key, through its 32-byte form. */
static struct keys_pair *our_pair(const ec_key_pair *pair)
{
    signal_buffer *buf = NULL;
    assert_int_equal(ec_private_key_serialize(&buf, ec_key_pair_get_private(pair)), 0);
    assert_int_equal(signal_buffer_len(buf), KEYS_PRIVATE_LEN);
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_from_private(signal_buffer_data(buf), &kp), 0);
    signal_buffer_free(buf);
    return kp;
}

/* libsignal's verdict: 1 valid, 0 invalid. */
static int their_verify(const struct keys_public *pk, const uint8_t *msg, size_t msg_len,
                        const uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    ec_public_key *key = their_public(pk);
    int v = curve_verify_signature(key, msg, msg_len, sig, XEDDSA_SIGNATURE_LEN);
    SIGNAL_UNREF(key);
    assert_true(v == 0 || v == 1);
    return v;
}

/* Our verdict in libsignal's terms, failing on anything but yes or no. */
static int our_verify(const struct keys_public *pk, const uint8_t *msg, size_t msg_len,
                      const uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    int rc = xeddsa_verify(pk, msg, msg_len, sig, XEDDSA_SIGNATURE_LEN);
    if (rc != 0)
        assert_int_equal(rc, PARLEY_EBAD_SIGNATURE);
    return rc == 0;
}

/* Both verifiers must give the verdict want. */
static void assert_both(int want, const struct keys_public *pk, const uint8_t *msg,
                        size_t msg_len, const uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    assert_int_equal(their_verify(pk, msg, msg_len, sig), want);
    assert_int_equal(our_verify(pk, msg, msg_len, sig), want);
}

/* The group order L, little-endian. */
static const char L_HEX[] = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

/* s += L over 32 little-endian bytes (the caller keeps it below 2^253). */
static void add_l(uint8_t s[32])
{
    uint8_t l[32];
    unhex(L_HEX, l, 32);
    unsigned carry = 0;
    for (int i = 0; i < 32; i++) {
        unsigned v = (unsigned)s[i] + l[i] + carry;
        s[i] = (uint8_t)v;
        carry = v >> 8;
    }
    assert_int_equal(carry, 0);
}

/* Montgomery u of an Edwards point encoding: u = (1 + y) / (1 - y) mod p. */
static void edwards_to_u(const uint8_t ed[32], uint8_t u_out[32])
{
    uint8_t yb[32];
    memcpy(yb, ed, 32);
    yb[31] &= 0x7f;
    BN_CTX *bn = BN_CTX_new();
    assert_non_null(bn);
    BIGNUM *p = BN_new(), *y = BN_new(), *num = BN_new(), *den = BN_new(), *u = BN_new();
    assert_non_null(u);
    BN_zero(p);
    assert_true(BN_set_bit(p, 255) && BN_sub_word(p, 19));
    assert_non_null(BN_lebin2bn(yb, 32, y));
    assert_true(BN_mod_add(num, BN_value_one(), y, p, bn));
    assert_true(BN_mod_sub(den, BN_value_one(), y, p, bn));
    assert_non_null(BN_mod_inverse(den, den, p, bn));
    assert_true(BN_mod_mul(u, num, den, p, bn));
    assert_int_equal(BN_bn2lebinpad(u, u_out, 32), 32);
    BN_free(p);
    BN_free(y);
    BN_free(num);
    BN_free(den);
    BN_free(u);
    BN_CTX_free(bn);
}

static const size_t MSG_LENS[] = {0, 1, 32, 33, 64, 1000};

/* ---- tests ---- */

static void test_parley_signs_libsignal_verifies(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        struct keys_pair *kp = NULL, *other = NULL;
        assert_int_equal(keys_generate(&kp), 0);
        assert_int_equal(keys_generate(&other), 0);
        for (size_t i = 0; i < sizeof(MSG_LENS) / sizeof(MSG_LENS[0]); i++) {
            uint8_t msg[1000], sig[XEDDSA_SIGNATURE_LEN];
            size_t len = MSG_LENS[i];
            randombytes_buf(msg, sizeof(msg));
            assert_int_equal(xeddsa_sign(kp, len ? msg : NULL, len, sig), 0);
            assert_both(1, keys_public_of(kp), msg, len, sig);
            /* Wrong key, changed message, changed signature: refused. */
            assert_both(0, keys_public_of(other), msg, len, sig);
            if (len) {
                msg[len / 2] ^= 0x01;
                assert_both(0, keys_public_of(kp), msg, len, sig);
                msg[len / 2] ^= 0x01;
            }
            sig[5] ^= 0x20;
            assert_both(0, keys_public_of(kp), msg, len, sig);
        }
        keys_free(kp);
        keys_free(other);
    }
}

static void test_libsignal_signs_parley_verifies(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        ec_key_pair *pair = NULL;
        assert_int_equal(curve_generate_key_pair(sigtest_ctx, &pair), 0);
        struct keys_public pk;
        our_public(ec_key_pair_get_public(pair), &pk);
        for (size_t i = 0; i < sizeof(MSG_LENS) / sizeof(MSG_LENS[0]); i++) {
            uint8_t msg[1000];
            size_t len = MSG_LENS[i];
            randombytes_buf(msg, sizeof(msg));
            signal_buffer *sigbuf = NULL;
            assert_int_equal(
                curve_calculate_signature(sigtest_ctx, &sigbuf, ec_key_pair_get_private(pair), msg, len),
                0);
            assert_int_equal(signal_buffer_len(sigbuf), XEDDSA_SIGNATURE_LEN);
            uint8_t sig[XEDDSA_SIGNATURE_LEN];
            memcpy(sig, signal_buffer_data(sigbuf), sizeof(sig));
            signal_buffer_free(sigbuf);

            assert_int_equal(xeddsa_verify(&pk, msg, len, sig, sizeof(sig)), 0);
            /* The carried sign bit matters: flipped, the key is another one. */
            sig[63] ^= 0x80;
            assert_int_equal(xeddsa_verify(&pk, msg, len, sig, sizeof(sig)),
                             PARLEY_EBAD_SIGNATURE);
            sig[63] ^= 0x80;
            if (len) {
                msg[0] ^= 0x80;
                assert_int_equal(xeddsa_verify(&pk, msg, len, sig, sizeof(sig)),
                                 PARLEY_EBAD_SIGNATURE);
                msg[0] ^= 0x80;
            }
            struct keys_public wrong = pk;
            wrong.u[0] ^= 0x04;
            assert_int_equal(xeddsa_verify(&wrong, msg, len, sig, sizeof(sig)),
                             PARLEY_EBAD_SIGNATURE);
            assert_int_equal(xeddsa_verify(&pk, msg, len, sig, sizeof(sig) - 1),
                             PARLEY_EBAD_SIGNATURE);
        }
        SIGNAL_UNREF(pair);
    }
}

/* With the same private key, message and 64 random bytes, both libraries
 * make the same 64 bytes: the algorithm, not just its verifier, matches. */
static void test_same_key_and_random_give_identical_signatures(void **state)
{
    (void)state;
    for (int round = 0; round < 32; round++) {
        ec_key_pair *pair = NULL;
        assert_int_equal(curve_generate_key_pair(sigtest_ctx, &pair), 0);
        struct keys_pair *kp = our_pair(pair);
        struct keys_public theirs;
        our_public(ec_key_pair_get_public(pair), &theirs);
        assert_memory_equal(keys_public_of(kp)->u, theirs.u, KEYS_PUBLIC_LEN);

        uint8_t msg[100], z[XEDDSA_RANDOM_LEN], ours[XEDDSA_SIGNATURE_LEN];
        size_t len = (size_t)round * 3;
        randombytes_buf(msg, sizeof(msg));
        randombytes_buf(z, sizeof(z));
        sigtest_fixed_random = z;
        signal_buffer *sigbuf = NULL;
        int rc = curve_calculate_signature(sigtest_ctx, &sigbuf, ec_key_pair_get_private(pair), msg, len);
        sigtest_fixed_random = NULL;
        assert_int_equal(rc, 0);
        assert_int_equal(xeddsa__sign_with_random(kp, msg, len, z, ours), 0);
        assert_memory_equal(ours, signal_buffer_data(sigbuf), XEDDSA_SIGNATURE_LEN);
        signal_buffer_free(sigbuf);
        keys_free(kp);
        SIGNAL_UNREF(pair);
    }
}

/* The known answers of xeddsa_test.c, remade by libsignal-protocol-c. */
static void test_libsignal_reproduces_the_known_answers(void **state)
{
    (void)state;
    static const struct {
        uint8_t first;
        const char *sig;
    } kats[] = {
        {0xa0, "bf21cb7900befa716b44b1a542513b050958d1c18dd955e438f84f85c3bfc1c6"
               "d81c1f1fa5323e4bbb2cde5aa2c97a731843cdc372357df9dc84909a07bbe30b"},
        {0x40, "e58c0397560fc150c4705c96f9341faeede45917a539b69bbccdbe413ea48079"
               "b874a5e7c4e85999dadf0bee814064487a05bf043a22a853c861cd71e1927587"},
    };
    static const char msg[] = "parley signed prekey";
    uint8_t z[XEDDSA_RANDOM_LEN];
    for (int i = 0; i < XEDDSA_RANDOM_LEN; i++)
        z[i] = (uint8_t)i;
    for (size_t k = 0; k < sizeof(kats) / sizeof(kats[0]); k++) {
        uint8_t priv[KEYS_PRIVATE_LEN], want[XEDDSA_SIGNATURE_LEN];
        for (int i = 0; i < KEYS_PRIVATE_LEN; i++)
            priv[i] = (uint8_t)(kats[k].first + i);
        /* libsignal clamps when it generates a key, not when it decodes one;
         * keys_from_private clamps, so hand libsignal the clamped form. */
        priv[0] &= 248;
        priv[31] = (uint8_t)((priv[31] & 127) | 64);
        unhex(kats[k].sig, want, sizeof(want));
        ec_private_key *key = NULL;
        assert_int_equal(curve_decode_private_point(&key, priv, sizeof(priv), sigtest_ctx), 0);
        signal_buffer *sigbuf = NULL;
        sigtest_fixed_random = z;
        int rc = curve_calculate_signature(sigtest_ctx, &sigbuf, key, (const uint8_t *)msg,
                                           sizeof(msg) - 1);
        sigtest_fixed_random = NULL;
        assert_int_equal(rc, 0);
        assert_memory_equal(signal_buffer_data(sigbuf), want, sizeof(want));
        signal_buffer_free(sigbuf);
        SIGNAL_UNREF(key);
    }
}

static void test_agreement_equal_both_ways(void **state)
{
    (void)state;
    for (int round = 0; round < 16; round++) {
        struct keys_pair *ours = NULL;
        assert_int_equal(keys_generate(&ours), 0);
        ec_key_pair *theirs = NULL;
        assert_int_equal(curve_generate_key_pair(sigtest_ctx, &theirs), 0);

        struct keys_public their_pk;
        our_public(ec_key_pair_get_public(theirs), &their_pk);
        uint8_t k_ours[KEYS_SHARED_LEN];
        assert_int_equal(keys_agree(ours, &their_pk, k_ours), 0);

        ec_public_key *our_pk = their_public(keys_public_of(ours));
        uint8_t *k_theirs = NULL;
        assert_int_equal(curve_calculate_agreement(&k_theirs, our_pk, ec_key_pair_get_private(theirs)),
                         KEYS_SHARED_LEN);
        assert_memory_equal(k_ours, k_theirs, KEYS_SHARED_LEN);
        free(k_theirs);
        SIGNAL_UNREF(our_pk);
        SIGNAL_UNREF(theirs);
        keys_free(ours);
    }
}

/* libsignal accepts what it never makes: S not reduced mod L (only S below
 * 2^253 is checked), and a key with its top bit set (ignored). We must
 * accept the same, and refuse S at or above 2^253 as it does. */
static void test_verifiers_agree_on_unreduced_s_and_key_top_bit(void **state)
{
    (void)state;
    ec_key_pair *pair = NULL;
    assert_int_equal(curve_generate_key_pair(sigtest_ctx, &pair), 0);
    struct keys_public pk;
    our_public(ec_key_pair_get_public(pair), &pk);
    int unreduced_seen = 0;
    for (int round = 0; round < 16; round++) {
        uint8_t msg[16], sig[XEDDSA_SIGNATURE_LEN];
        randombytes_buf(msg, sizeof(msg));
        signal_buffer *sigbuf = NULL;
        assert_int_equal(curve_calculate_signature(sigtest_ctx, &sigbuf, ec_key_pair_get_private(pair),
                                                   msg, sizeof(msg)),
                         0);
        memcpy(sig, signal_buffer_data(sigbuf), sizeof(sig));
        signal_buffer_free(sigbuf);

        struct keys_public top = pk;
        top.u[31] |= 0x80;
        assert_both(1, &top, msg, sizeof(msg), sig);

        uint8_t s[32], big[XEDDSA_SIGNATURE_LEN];
        memcpy(s, sig + 32, 32);
        uint8_t sign = s[31] & 0x80;
        s[31] &= 0x7f;
        add_l(s);
        memcpy(big, sig, 32);
        memcpy(big + 32, s, 32);
        big[63] |= sign;
        /* S + L stays below 2^253 for all but a sliver of S. */
        if ((s[31] & 0x60) == 0) {
            unreduced_seen++;
            assert_both(1, &pk, msg, sizeof(msg), big);
        }
        /* Bits 253 and 254 of S set: refused by both, whatever else holds. */
        memcpy(big, sig, sizeof(big));
        big[63] |= 0x20;
        assert_both(0, &pk, msg, sizeof(msg), big);
        memcpy(big, sig, sizeof(big));
        big[63] |= 0x40;
        assert_both(0, &pk, msg, sizeof(msg), big);
    }
    assert_true(unreduced_seen > 0);
    SIGNAL_UNREF(pair);
}

/* Every single-bit change of a valid signature, key and message gets the
 * same verdict from both verifiers (a refusal, except where the bit is one
 * libsignal ignores). */
static void test_verifiers_agree_on_every_single_bit_flip(void **state)
{
    (void)state;
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    uint8_t msg[24], sig[XEDDSA_SIGNATURE_LEN];
    randombytes_buf(msg, sizeof(msg));
    assert_int_equal(xeddsa_sign(kp, msg, sizeof(msg), sig), 0);
    struct keys_public pk = *keys_public_of(kp);

    for (int bit = 0; bit < XEDDSA_SIGNATURE_LEN * 8; bit++) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_both(0, &pk, msg, sizeof(msg), sig);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (int bit = 0; bit < KEYS_PUBLIC_LEN * 8; bit++) {
        pk.u[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_both(bit == 255, &pk, msg, sizeof(msg), sig);
        pk.u[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (int bit = 0; bit < (int)sizeof(msg) * 8; bit++) {
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_both(0, &pk, msg, sizeof(msg), sig);
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_both(1, &pk, msg, sizeof(msg), sig);
    keys_free(kp);
}

/* Under the low-order key u = 0 (Edwards y = -1, a point of order 2),
 * libsignal accepts a signature anyone can forge: S = 0 and R the neutral
 * element or the key itself, by the parity of the hash. We accept exactly
 * the same, also for u = p (non-canonical 0), and refuse the other R. This
 * is why keys_agree refuses low-order keys: they vouch for nothing. */
static void test_verifiers_agree_on_low_order_key_forgeries(void **state)
{
    (void)state;
    static const char *const zero_keys[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
    };
    /* y = -1 = p - 1, sign bit 0: the Edwards key the verifiers derive. */
    uint8_t a_enc[32], identity[32] = {1};
    unhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", a_enc, 32);
    for (size_t k = 0; k < sizeof(zero_keys) / sizeof(zero_keys[0]); k++) {
        struct keys_public pk;
        unhex(zero_keys[k], pk.u, 32);
        for (uint8_t m = 0; m < 8; m++) {
            uint8_t msg[1] = {m}, sig[XEDDSA_SIGNATURE_LEN] = {0}, hram[64], h[32];
            /* h for R = identity decides: even h means S*B - h*A = identity. */
            crypto_hash_sha512_state st;
            crypto_hash_sha512_init(&st);
            crypto_hash_sha512_update(&st, identity, 32);
            crypto_hash_sha512_update(&st, a_enc, 32);
            crypto_hash_sha512_update(&st, msg, 1);
            crypto_hash_sha512_final(&st, hram);
            crypto_core_ed25519_scalar_reduce(h, hram);
            memcpy(sig, identity, 32);
            assert_both((h[0] & 1) == 0, &pk, msg, 1, sig);
            /* With R = A, odd h is needed. */
            crypto_hash_sha512_init(&st);
            crypto_hash_sha512_update(&st, a_enc, 32);
            crypto_hash_sha512_update(&st, a_enc, 32);
            crypto_hash_sha512_update(&st, msg, 1);
            crypto_hash_sha512_final(&st, hram);
            crypto_core_ed25519_scalar_reduce(h, hram);
            memcpy(sig, a_enc, 32);
            assert_both((h[0] & 1) == 1, &pk, msg, 1, sig);
        }
    }
}

/* A key whose Edwards point has a torsion component (P = a*B + T, T of
 * order 8): a signer who knows a can make signatures that pass only with
 * the exact ref10 arithmetic, where h*P keeps (h mod 8)*T. With
 * R = r*B - j*T the equation holds when h mod 8 == j; each round searches
 * r and j until it does. Both verifiers accept such a signature, and both
 * refuse it once S is off by one. */
static void test_verifiers_agree_on_mixed_order_keys(void **state)
{
    (void)state;
    uint8_t t8[32];
    /* A point of order 8 (the Edwards form of u = e0eb7a7c...). */
    unhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", t8, 32);
    for (int round = 0; round < 16; round++) {
        uint8_t a[32], A[32], P[32];
        crypto_core_ed25519_scalar_random(a);
        assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(A, a), 0);
        assert_int_equal(crypto_core_ed25519_add(P, A, t8), 0);
        struct keys_public pk;
        edwards_to_u(P, pk.u);

        uint8_t msg[8], r[32], rb[32], R[32], h[32], hram[64];
        randombytes_buf(msg, sizeof(msg));
        bool found = false;
        for (int tries = 0; !found; tries++) {
            assert_true(tries < 1000);
            crypto_core_ed25519_scalar_random(r);
            assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(rb, r), 0);
            uint8_t jt[32] = {1}; /* j*T, from the neutral element up */
            for (int j = 0; j < 8 && !found; j++) {
                assert_int_equal(crypto_core_ed25519_sub(R, rb, jt), 0);
                crypto_hash_sha512_state st;
                crypto_hash_sha512_init(&st);
                crypto_hash_sha512_update(&st, R, 32);
                crypto_hash_sha512_update(&st, P, 32);
                crypto_hash_sha512_update(&st, msg, sizeof(msg));
                crypto_hash_sha512_final(&st, hram);
                crypto_core_ed25519_scalar_reduce(h, hram);
                found = (h[0] & 7) == j;
                assert_int_equal(crypto_core_ed25519_add(jt, jt, t8), 0);
            }
        }
        uint8_t ha[32], s[32], sig[XEDDSA_SIGNATURE_LEN];
        crypto_core_ed25519_scalar_mul(ha, h, a);
        crypto_core_ed25519_scalar_add(s, ha, r);
        memcpy(sig, R, 32);
        memcpy(sig + 32, s, 32);
        sig[63] |= P[31] & 0x80;
        assert_both(1, &pk, msg, sizeof(msg), sig);

        uint8_t one[32] = {1};
        crypto_core_ed25519_scalar_add(s, s, one);
        memcpy(sig + 32, s, 32);
        sig[63] |= P[31] & 0x80;
        assert_both(0, &pk, msg, sizeof(msg), sig);
    }
}

static void test_hkdf_matches_libsignal_v3(void **state)
{
    (void)state;
    hkdf_context *kdf = NULL;
    assert_int_equal(hkdf_create(&kdf, 3, sigtest_ctx), 0);
    static const char info[] = "WhisperRatchet";
    for (size_t out_len = 1; out_len <= 200; out_len += 13) {
        uint8_t ikm[32], salt[32], ours[200];
        randombytes_buf(ikm, sizeof(ikm));
        randombytes_buf(salt, sizeof(salt));
        uint8_t *theirs = NULL;
        ssize_t n = hkdf_derive_secrets(kdf, &theirs, ikm, sizeof(ikm), salt, sizeof(salt),
                                        (const uint8_t *)info, sizeof(info) - 1, out_len);
        assert_int_equal(n, (ssize_t)out_len);
        assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), (const uint8_t *)info,
                                     sizeof(info) - 1, ours, out_len),
                         0);
        assert_memory_equal(ours, theirs, out_len);
        free(theirs);
    }
    SIGNAL_UNREF(kdf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parley_signs_libsignal_verifies),
        cmocka_unit_test(test_libsignal_signs_parley_verifies),
        cmocka_unit_test(test_same_key_and_random_give_identical_signatures),
        cmocka_unit_test(test_libsignal_reproduces_the_known_answers),
        cmocka_unit_test(test_agreement_equal_both_ways),
        cmocka_unit_test(test_verifiers_agree_on_unreduced_s_and_key_top_bit),
        cmocka_unit_test(test_verifiers_agree_on_every_single_bit_flip),
        cmocka_unit_test(test_verifiers_agree_on_low_order_key_forgeries),
        cmocka_unit_test(test_verifiers_agree_on_mixed_order_keys),
        cmocka_unit_test(test_hkdf_matches_libsignal_v3),
    };
    return cmocka_run_group_tests(tests, sigtest_setup, sigtest_teardown);
}
