/* SPDX-License-Identifier: MIT */
/* Interop of fingerprint.h with libsignal-protocol-c's numeric fingerprint:
 * for the same identity keys and stable identifiers, safety_number equals
 * displayable_fingerprint_text of fingerprint_generator_create (5200
 * iterations) and fingerprint_generator_create_for, from both sides, and
 * safety_side equals its local and remote halves. The library runs on the
 * test-only crypto provider of signal_provider_test_util.c. */
#include "common/err.h"
#include "crypto/fingerprint.h"
#include "crypto/keys.h"
#include "crypto/signal_provider_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include <curve.h>
#include <fingerprint.h>
#include <signal_protocol.h>


/* libsignal's view of a public key, through the 33-byte form. */
static ec_public_key *their_public(const struct keys_public *pk)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(pk, wire);
    ec_public_key *key = NULL;
    assert_int_equal(curve_decode_point(&key, wire, sizeof(wire), sigtest_ctx), 0);
    return key;
}

/* Check one pair of sides against libsignal, as local and as remote. */
static void check_pair(const struct keys_public *a, const char *id_a, const struct keys_public *b,
                       const char *id_b)
{
    ec_public_key *ka = their_public(a), *kb = their_public(b);
    fingerprint_generator *gen = NULL;
    assert_int_equal(fingerprint_generator_create(&gen, SAFETY_ITERATIONS, 1, sigtest_ctx), 0);

    fingerprint *fp_ab = NULL, *fp_ba = NULL;
    assert_int_equal(fingerprint_generator_create_for(gen, id_a, ka, id_b, kb, &fp_ab), 0);
    assert_int_equal(fingerprint_generator_create_for(gen, id_b, kb, id_a, ka, &fp_ba), 0);
    const displayable_fingerprint *d_ab = fingerprint_get_displayable(fp_ab);
    const displayable_fingerprint *d_ba = fingerprint_get_displayable(fp_ba);

    char ours[SAFETY_DIGITS + 1], side[SAFETY_SIDE_DIGITS + 1];
    assert_int_equal(safety_number(a, id_a, b, id_b, ours), 0);
    assert_string_equal(ours, displayable_fingerprint_text(d_ab));
    assert_int_equal(safety_number(b, id_b, a, id_a, ours), 0);
    assert_string_equal(ours, displayable_fingerprint_text(d_ba));

    assert_int_equal(safety_side(a, id_a, side), 0);
    assert_string_equal(side, displayable_fingerprint_local(d_ab));
    assert_string_equal(side, displayable_fingerprint_remote(d_ba));
    assert_int_equal(safety_side(b, id_b, side), 0);
    assert_string_equal(side, displayable_fingerprint_remote(d_ab));
    assert_string_equal(side, displayable_fingerprint_local(d_ba));

    SIGNAL_UNREF(fp_ab);
    SIGNAL_UNREF(fp_ba);
    fingerprint_generator_free(gen);
    SIGNAL_UNREF(ka);
    SIGNAL_UNREF(kb);
}

static void test_random_keys_match_libsignal(void **state)
{
    (void)state;
    static const char *const ids[][2] = {
        {"@alice", "@bob"},
        {"+14152222222", "+14153333333"},
        {"same", "same"},
        {"x", "a much longer stable identifier, with spaces and punctuation!"},
    };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct keys_pair *ka = NULL, *kb = NULL;
        assert_int_equal(keys_generate(&ka), 0);
        assert_int_equal(keys_generate(&kb), 0);
        check_pair(keys_public_of(ka), ids[i][0], keys_public_of(kb), ids[i][1]);
        keys_free(ka);
        keys_free(kb);
    }
}

static void test_libsignal_keys_match(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        ec_key_pair *pa = NULL, *pb = NULL;
        assert_int_equal(curve_generate_key_pair(sigtest_ctx, &pa), 0);
        assert_int_equal(curve_generate_key_pair(sigtest_ctx, &pb), 0);
        struct keys_public a, b;
        signal_buffer *buf = NULL;
        assert_int_equal(ec_public_key_serialize(&buf, ec_key_pair_get_public(pa)), 0);
        assert_int_equal(keys_public_decode(signal_buffer_data(buf), signal_buffer_len(buf), &a),
                         0);
        signal_buffer_free(buf);
        buf = NULL;
        assert_int_equal(ec_public_key_serialize(&buf, ec_key_pair_get_public(pb)), 0);
        assert_int_equal(keys_public_decode(signal_buffer_data(buf), signal_buffer_len(buf), &b),
                         0);
        signal_buffer_free(buf);
        check_pair(&a, "@carol", &b, "@dave");
        SIGNAL_UNREF(pa);
        SIGNAL_UNREF(pb);
    }
}

/* Edge keys: all zeros, all 0xFF, and a pair whose sides tie. */
static void test_edge_keys_match_libsignal(void **state)
{
    (void)state;
    struct keys_public zero, ff;
    memset(zero.u, 0, sizeof(zero.u));
    memset(ff.u, 0xff, sizeof(ff.u));
    check_pair(&zero, "@z", &ff, "@f");
    check_pair(&zero, "@same", &zero, "@same");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_keys_match_libsignal),
        cmocka_unit_test(test_libsignal_keys_match),
        cmocka_unit_test(test_edge_keys_match_libsignal),
    };
    return cmocka_run_group_tests(tests, sigtest_setup, sigtest_teardown);
}
