/* SPDX-License-Identifier: MIT */
/* Unit tests of hkdf.h: RFC 5869 appendix A test cases 1-3 (SHA-256), an
 * empty salt read as HashLen zeros, and the argument refusals. */
#include "common/err.h"
#include "crypto/hkdf.h"

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

static void fill_seq(uint8_t *out, size_t len, uint8_t first)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(first + i);
}

static void test_rfc5869_case_1_basic(void **state)
{
    (void)state;
    uint8_t ikm[22], salt[13], info[10], want[42], okm[42];
    memset(ikm, 0x0b, sizeof(ikm));
    fill_seq(salt, sizeof(salt), 0x00);
    fill_seq(info, sizeof(info), 0xf0);
    unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
          want, sizeof(want));
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info), okm,
                                 sizeof(okm)),
                     0);
    assert_memory_equal(okm, want, sizeof(want));
}

static void test_rfc5869_case_2_long_inputs(void **state)
{
    (void)state;
    uint8_t ikm[80], salt[80], info[80], want[82], okm[82];
    fill_seq(ikm, sizeof(ikm), 0x00);
    fill_seq(salt, sizeof(salt), 0x60);
    fill_seq(info, sizeof(info), 0xb0);
    unhex("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
          "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
          "cc30c58179ec3e87c14c01d5c1f3434f1d87",
          want, sizeof(want));
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info), okm,
                                 sizeof(okm)),
                     0);
    assert_memory_equal(okm, want, sizeof(want));
}

static void test_rfc5869_case_3_no_salt_no_info(void **state)
{
    (void)state;
    uint8_t ikm[22], want[42], okm[42], zeros[HKDF_SHA256_LEN] = {0};
    memset(ikm, 0x0b, sizeof(ikm));
    unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
          want, sizeof(want));
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, okm, sizeof(okm)), 0);
    assert_memory_equal(okm, want, sizeof(want));
    /* An absent salt is HashLen zeros (RFC 5869 section 2.2), as Signal's
     * root-key derivation passes it explicitly. */
    memset(okm, 0, sizeof(okm));
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), zeros, sizeof(zeros), NULL, 0, okm, sizeof(okm)),
                     0);
    assert_memory_equal(okm, want, sizeof(want));
}

static void test_output_lengths_at_and_past_the_limit(void **state)
{
    (void)state;
    uint8_t ikm[32] = {1};
    uint8_t *okm = malloc(HKDF_OUT_MAX + 1);
    assert_non_null(okm);
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, okm, HKDF_OUT_MAX), 0);
    /* A shorter output is a prefix of a longer one. */
    uint8_t short_okm[33];
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, short_okm, sizeof(short_okm)),
                     0);
    assert_memory_equal(short_okm, okm, sizeof(short_okm));
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, okm, HKDF_OUT_MAX + 1),
                     PARLEY_EINVAL);
    assert_int_equal(hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, okm, 0), PARLEY_EINVAL);
    free(okm);
}

static void test_bad_arguments_are_refused(void **state)
{
    (void)state;
    uint8_t ikm[32] = {1}, out[32];
    assert_int_equal(hkdf_sha256(NULL, 32, NULL, 0, NULL, 0, out, 32), PARLEY_EINVAL);
    assert_int_equal(hkdf_sha256(ikm, 0, NULL, 0, NULL, 0, out, 32), PARLEY_EINVAL);
    assert_int_equal(hkdf_sha256(ikm, 32, NULL, 1, NULL, 0, out, 32), PARLEY_EINVAL);
    assert_int_equal(hkdf_sha256(ikm, 32, NULL, 0, NULL, 1, out, 32), PARLEY_EINVAL);
    assert_int_equal(hkdf_sha256(ikm, 32, NULL, 0, NULL, 0, NULL, 32), PARLEY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5869_case_1_basic),
        cmocka_unit_test(test_rfc5869_case_2_long_inputs),
        cmocka_unit_test(test_rfc5869_case_3_no_salt_no_info),
        cmocka_unit_test(test_output_lengths_at_and_past_the_limit),
        cmocka_unit_test(test_bad_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
