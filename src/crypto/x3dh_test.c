/* SPDX-License-Identifier: MIT */
/* Unit tests of x3dh.h: both sides derive the same keys with and without a
 * one-time prekey, the one-time prekey changes them, a bad signed-prekey
 * signature and low-order peer keys are refused and nothing is written.
 * Equality with libsignal-protocol-c is in x3dh_signal_test.c. */
#include "common/err.h"
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

struct party {
    struct keys_pair *identity, *signed_prekey, *prekey, *base;
};

static struct keys_pair *gen(void)
{
    struct keys_pair *kp = NULL;
    assert_int_equal(keys_generate(&kp), 0);
    return kp;
}

static void party_init(struct party *p)
{
    p->identity = gen();
    p->signed_prekey = gen();
    p->prekey = gen();
    p->base = gen();
}

static void party_deinit(struct party *p)
{
    keys_free(p->identity);
    keys_free(p->signed_prekey);
    keys_free(p->prekey);
    keys_free(p->base);
}

static void bundle_of(const struct party *bob, bool with_prekey, struct x3dh_bundle *b)
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

static void test_both_sides_derive_the_same_keys(void **state)
{
    (void)state;
    struct party alice, bob;
    party_init(&alice);
    party_init(&bob);
    struct x3dh_keys with[2], without[2];
    for (int w = 0; w <= 1; w++) {
        struct x3dh_bundle b;
        bundle_of(&bob, w, &b);
        struct x3dh_keys *k = w ? with : without;
        assert_int_equal(x3dh_initiate(alice.identity, alice.base, &b, &k[0]), 0);
        assert_int_equal(x3dh_respond(bob.identity, bob.signed_prekey, w ? bob.prekey : NULL,
                                      keys_public_of(alice.identity), keys_public_of(alice.base),
                                      &k[1]),
                         0);
        assert_memory_equal(k[0].root_key, k[1].root_key, X3DH_KEY_LEN);
        assert_memory_equal(k[0].chain_key, k[1].chain_key, X3DH_KEY_LEN);
        assert_memory_not_equal(k[0].root_key, k[0].chain_key, X3DH_KEY_LEN);
    }
    /* DH4 enters the secret. */
    assert_memory_not_equal(with[0].root_key, without[0].root_key, X3DH_KEY_LEN);

    /* Another base key gives other keys. */
    struct x3dh_bundle b;
    bundle_of(&bob, true, &b);
    struct keys_pair *base2 = gen();
    struct x3dh_keys other;
    assert_int_equal(x3dh_initiate(alice.identity, base2, &b, &other), 0);
    assert_memory_not_equal(other.root_key, with[0].root_key, X3DH_KEY_LEN);
    keys_free(base2);
    party_deinit(&alice);
    party_deinit(&bob);
}

static void test_bad_signed_prekey_signature_is_refused_first(void **state)
{
    (void)state;
    struct party alice, bob, mallory;
    party_init(&alice);
    party_init(&bob);
    party_init(&mallory);
    struct x3dh_bundle b;
    struct x3dh_keys out, untouched;
    memset(&out, 0x5a, sizeof(out));
    untouched = out;

    bundle_of(&bob, true, &b);
    b.signed_prekey_signature[10] ^= 1;
    assert_int_equal(x3dh_initiate(alice.identity, alice.base, &b, &out), PARLEY_EBAD_SIGNATURE);

    /* The signed prekey replaced by another key under Bob's signature. */
    bundle_of(&bob, true, &b);
    b.signed_prekey = *keys_public_of(mallory.signed_prekey);
    assert_int_equal(x3dh_initiate(alice.identity, alice.base, &b, &out), PARLEY_EBAD_SIGNATURE);

    /* A signature by another identity. */
    bundle_of(&mallory, true, &b);
    b.identity_key = *keys_public_of(bob.identity);
    assert_int_equal(x3dh_initiate(alice.identity, alice.base, &b, &out), PARLEY_EBAD_SIGNATURE);
    assert_memory_equal(&out, &untouched, sizeof(out));

    party_deinit(&alice);
    party_deinit(&bob);
    party_deinit(&mallory);
}

static void test_low_order_keys_are_refused(void **state)
{
    (void)state;
    struct party alice, bob;
    party_init(&alice);
    party_init(&bob);
    struct x3dh_bundle b;
    struct x3dh_keys out, untouched;
    memset(&out, 0x5a, sizeof(out));
    untouched = out;

    /* A low-order one-time prekey: the signature still holds. */
    bundle_of(&bob, true, &b);
    memset(b.prekey.u, 0, sizeof(b.prekey.u));
    assert_int_equal(x3dh_initiate(alice.identity, alice.base, &b, &out), PARLEY_EBAD_KEY);

    /* A low-order base key on the responder's side. */
    struct keys_public zero;
    memset(zero.u, 0, sizeof(zero.u));
    assert_int_equal(x3dh_respond(bob.identity, bob.signed_prekey, bob.prekey,
                                  keys_public_of(alice.identity), &zero, &out),
                     PARLEY_EBAD_KEY);
    assert_int_equal(x3dh_respond(bob.identity, bob.signed_prekey, NULL, &zero,
                                  keys_public_of(alice.base), &out),
                     PARLEY_EBAD_KEY);
    assert_memory_equal(&out, &untouched, sizeof(out));

    assert_int_equal(x3dh_initiate(NULL, alice.base, &b, &out), PARLEY_EINVAL);
    assert_int_equal(x3dh_respond(bob.identity, NULL, NULL, &zero, &zero, &out), PARLEY_EINVAL);
    party_deinit(&alice);
    party_deinit(&bob);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_sides_derive_the_same_keys),
        cmocka_unit_test(test_bad_signed_prekey_signature_is_refused_first),
        cmocka_unit_test(test_low_order_keys_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
