/* SPDX-License-Identifier: MIT */
/* Unit tests of fingerprint.h: the safety number is the same from either
 * side, stable across calls, changes when either key or identifier
 * changes, is made of digits only; the formatter groups by five; bad
 * arguments are refused and leave the output untouched. */
#include "common/err.h"
#include "crypto/fingerprint.h"
#include "crypto/keys.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

static void fill_key(struct keys_public *pk, uint8_t seed)
{
    for (size_t i = 0; i < KEYS_PUBLIC_LEN; i++)
        pk->u[i] = (uint8_t)(seed + 7 * i);
}

static void assert_digits(const char *s, size_t len)
{
    assert_int_equal(strlen(s), len);
    for (size_t i = 0; i < len; i++)
        assert_true(s[i] >= '0' && s[i] <= '9');
}

static void test_order_independent(void **state)
{
    (void)state;
    struct keys_public a, b;
    fill_key(&a, 1);
    fill_key(&b, 2);
    char ab[SAFETY_DIGITS + 1], ba[SAFETY_DIGITS + 1];
    assert_int_equal(safety_number(&a, "@alice", &b, "@bob", ab), 0);
    assert_int_equal(safety_number(&b, "@bob", &a, "@alice", ba), 0);
    assert_digits(ab, SAFETY_DIGITS);
    assert_string_equal(ab, ba);

    /* The halves are the two sides, the smaller first. */
    char sa[SAFETY_SIDE_DIGITS + 1], sb[SAFETY_SIDE_DIGITS + 1];
    assert_int_equal(safety_side(&a, "@alice", sa), 0);
    assert_int_equal(safety_side(&b, "@bob", sb), 0);
    assert_digits(sa, SAFETY_SIDE_DIGITS);
    const char *lo = strcmp(sa, sb) <= 0 ? sa : sb;
    const char *hi = lo == sa ? sb : sa;
    assert_memory_equal(ab, lo, SAFETY_SIDE_DIGITS);
    assert_string_equal(ab + SAFETY_SIDE_DIGITS, hi);
}

static void test_stable(void **state)
{
    (void)state;
    struct keys_public a, b;
    fill_key(&a, 10);
    fill_key(&b, 20);
    char first[SAFETY_DIGITS + 1], again[SAFETY_DIGITS + 1];
    assert_int_equal(safety_number(&a, "@alice", &b, "@bob", first), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(safety_number(&a, "@alice", &b, "@bob", again), 0);
        assert_string_equal(first, again);
    }
}

static void test_either_key_change_changes_it(void **state)
{
    (void)state;
    struct keys_pair *ka = NULL, *kb = NULL, *kc = NULL;
    assert_int_equal(keys_generate(&ka), 0);
    assert_int_equal(keys_generate(&kb), 0);
    assert_int_equal(keys_generate(&kc), 0);
    const struct keys_public *a = keys_public_of(ka), *b = keys_public_of(kb),
                             *c = keys_public_of(kc);
    char base[SAFETY_DIGITS + 1], other[SAFETY_DIGITS + 1];
    assert_int_equal(safety_number(a, "@alice", b, "@bob", base), 0);

    assert_int_equal(safety_number(c, "@alice", b, "@bob", other), 0);
    assert_string_not_equal(base, other);
    assert_int_equal(safety_number(a, "@alice", c, "@bob", other), 0);
    assert_string_not_equal(base, other);

    /* One bit of either key, and either identifier, matter too. */
    struct keys_public flipped = *a;
    flipped.u[31] ^= 0x80;
    assert_int_equal(safety_number(&flipped, "@alice", b, "@bob", other), 0);
    assert_string_not_equal(base, other);
    flipped = *b;
    flipped.u[0] ^= 0x01;
    assert_int_equal(safety_number(a, "@alice", &flipped, "@bob", other), 0);
    assert_string_not_equal(base, other);
    assert_int_equal(safety_number(a, "@alicE", b, "@bob", other), 0);
    assert_string_not_equal(base, other);
    assert_int_equal(safety_number(a, "@alice", b, "@bob2", other), 0);
    assert_string_not_equal(base, other);

    keys_free(ka);
    keys_free(kb);
    keys_free(kc);
}

/* Recompute one side by the definition, with the one-shot SHA-512: every
 * round, the first included, hashes its input followed by the key. */
static void test_side_matches_definition(void **state)
{
    (void)state;
    struct keys_public a;
    fill_key(&a, 33);
    const char *id = "+14155550100";
    uint8_t buf[crypto_hash_sha512_BYTES + KEYS_PUBLIC_WIRE_LEN + 64];
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&a, wire);
    size_t n = 0;
    buf[n++] = 0;
    buf[n++] = 0;
    memcpy(buf + n, wire, sizeof(wire));
    n += sizeof(wire);
    memcpy(buf + n, id, strlen(id));
    n += strlen(id);
    memcpy(buf + n, wire, sizeof(wire));
    n += sizeof(wire);
    uint8_t h[crypto_hash_sha512_BYTES];
    crypto_hash_sha512(h, buf, n);
    for (int i = 1; i < SAFETY_ITERATIONS; i++) {
        memcpy(buf, h, sizeof(h));
        memcpy(buf + sizeof(h), wire, sizeof(wire));
        crypto_hash_sha512(h, buf, sizeof(h) + sizeof(wire));
    }
    char want[SAFETY_SIDE_DIGITS + 1];
    for (int i = 0; i < 6; i++) {
        uint64_t v = 0;
        for (int j = 0; j < 5; j++)
            v = (v << 8) | h[5 * i + j];
        snprintf(want + 5 * i, 6, "%05u", (unsigned)(v % 100000));
    }
    char got[SAFETY_SIDE_DIGITS + 1];
    assert_int_equal(safety_side(&a, id, got), 0);
    assert_string_equal(got, want);
}

static void test_format(void **state)
{
    (void)state;
    char out[SAFETY_FORMATTED_SIZE];
    const char *d = "012345678901234567890123456789012345678901234567890123456789";
    assert_int_equal(safety_format(d, out, sizeof(out)), 0);
    assert_string_equal(out, "01234 56789 01234 56789 01234 56789 01234 56789 01234 56789 "
                             "01234 56789");
    assert_int_equal(strlen(out) + 1, SAFETY_FORMATTED_SIZE);

    char small[12];
    assert_int_equal(safety_format("12345", small, 6), 0);
    assert_string_equal(small, "12345");
    assert_int_equal(safety_format("1234567890", small, 12), 0);
    assert_string_equal(small, "12345 67890");

    /* Refusals leave out untouched. */
    memset(small, 'x', sizeof(small));
    assert_int_equal(safety_format("1234567890", small, 11), PARLEY_EINVAL);
    assert_int_equal(safety_format("123456", small, sizeof(small)), PARLEY_EINVAL);
    assert_int_equal(safety_format("", small, sizeof(small)), PARLEY_EINVAL);
    assert_int_equal(safety_format("1234a", small, sizeof(small)), PARLEY_EINVAL);
    assert_int_equal(safety_format(NULL, small, sizeof(small)), PARLEY_EINVAL);
    assert_int_equal(safety_format("12345", NULL, 6), PARLEY_EINVAL);
    for (size_t i = 0; i < sizeof(small); i++)
        assert_int_equal(small[i], 'x');

    /* A real safety number formats to twelve groups. */
    struct keys_public a, b;
    fill_key(&a, 5);
    fill_key(&b, 6);
    char num[SAFETY_DIGITS + 1];
    assert_int_equal(safety_number(&a, "@a", &b, "@b", num), 0);
    assert_int_equal(safety_format(num, out, sizeof(out)), 0);
    for (size_t i = 0; i < SAFETY_FORMATTED_SIZE - 1; i++)
        assert_true((i % 6 == 5) ? out[i] == ' ' : (out[i] >= '0' && out[i] <= '9'));
}

static void test_refusals(void **state)
{
    (void)state;
    struct keys_public a, b;
    fill_key(&a, 1);
    fill_key(&b, 2);
    char out[SAFETY_DIGITS + 1];
    memset(out, 'x', sizeof(out));
    char long_id[SAFETY_ID_MAX + 2];
    memset(long_id, 'i', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';

    assert_int_equal(safety_number(NULL, "@a", &b, "@b", out), PARLEY_EINVAL);
    assert_int_equal(safety_number(&a, NULL, &b, "@b", out), PARLEY_EINVAL);
    assert_int_equal(safety_number(&a, "@a", NULL, "@b", out), PARLEY_EINVAL);
    assert_int_equal(safety_number(&a, "@a", &b, "", out), PARLEY_EINVAL);
    assert_int_equal(safety_number(&a, long_id, &b, "@b", out), PARLEY_EINVAL);
    assert_int_equal(safety_number(&a, "@a", &b, "@b", NULL), PARLEY_EINVAL);
    assert_int_equal(safety_side(&a, "@a", NULL), PARLEY_EINVAL);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 'x');

    /* The longest identifier allowed is accepted. */
    long_id[SAFETY_ID_MAX] = '\0';
    assert_int_equal(safety_number(&a, long_id, &b, "@b", out), 0);
    assert_digits(out, SAFETY_DIGITS);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_stable),
        cmocka_unit_test(test_either_key_change_changes_it),
        cmocka_unit_test(test_side_matches_definition),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
