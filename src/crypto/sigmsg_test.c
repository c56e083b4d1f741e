/* SPDX-License-Identifier: MIT */
/* Unit tests of sigmsg.h: the exact bytes of a SignalMessage and a
 * PreKeySignalMessage, round trips, the MAC over both identity keys, and
 * every refusal (version, length, missing fields, key forms, MAC). Interop
 * with libsignal-protocol-c is in sigmsg_signal_test.c. */
#include "common/err.h"
#include "crypto/sigmsg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

static const uint8_t MAC_KEY[SIGMSG_MAC_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                   12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                   23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t CT[] = "sixteen byte msg";

static struct keys_public key_of(uint8_t fill)
{
    struct keys_public k;
    memset(k.u, fill, sizeof(k.u));
    return k;
}

static struct sigmsg sample(void)
{
    struct sigmsg m = {.ratchet_key = key_of(0x11), .counter = 7, .previous_counter = 300};
    m.ciphertext = (uint8_t *)CT;
    m.ciphertext_len = 16;
    return m;
}

/* Encode sample() with sender identity 0xAA.. and receiver 0xBB... */
static size_t encode_sample(uint8_t *out, size_t cap)
{
    struct sigmsg m = sample();
    struct keys_public a = key_of(0xaa), b = key_of(0xbb);
    size_t len = 0;
    assert_int_equal(sigmsg_encode(&m, MAC_KEY, &a, &b, out, cap, &len), 0);
    assert_int_equal(len, sigmsg_encoded_len(&m));
    return len;
}

static void test_signal_message_bytes_are_version_protobuf_mac(void **state)
{
    (void)state;
    uint8_t out[128];
    size_t len = encode_sample(out, sizeof(out));
    /* 0x33; field 1 (33 bytes); field 2 = 7; field 3 = 300 (0xac 0x02);
     * field 4 (16 bytes); MAC. */
    uint8_t want[1 + 2 + 33 + 2 + 3 + 2 + 16];
    size_t n = 0;
    want[n++] = 0x33;
    want[n++] = 0x0a;
    want[n++] = 33;
    want[n++] = 0x05;
    memset(want + n, 0x11, 32);
    n += 32;
    want[n++] = 0x10;
    want[n++] = 7;
    want[n++] = 0x18;
    want[n++] = 0xac;
    want[n++] = 0x02;
    want[n++] = 0x22;
    want[n++] = 16;
    memcpy(want + n, CT, 16);
    n += 16;
    assert_int_equal(n, sizeof(want));
    assert_int_equal(len, sizeof(want) + SIGMSG_MAC_LEN);
    assert_memory_equal(out, want, sizeof(want));

    /* The MAC is HMAC-SHA256 over sender || receiver || framed message. */
    uint8_t macin[33 + 33 + sizeof(want)], full[32];
    macin[0] = 0x05;
    memset(macin + 1, 0xaa, 32);
    macin[33] = 0x05;
    memset(macin + 34, 0xbb, 32);
    memcpy(macin + 66, want, sizeof(want));
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, MAC_KEY, sizeof(MAC_KEY));
    crypto_auth_hmacsha256_update(&st, macin, sizeof(macin));
    crypto_auth_hmacsha256_final(&st, full);
    assert_memory_equal(out + sizeof(want), full, SIGMSG_MAC_LEN);
}

static void test_signal_message_round_trips_and_mac_verifies(void **state)
{
    (void)state;
    uint8_t out[128];
    size_t len = encode_sample(out, sizeof(out));
    struct sigmsg got;
    assert_int_equal(sigmsg_decode(out, len, &got), 0);
    assert_memory_equal(got.ratchet_key.u, key_of(0x11).u, 32);
    assert_int_equal(got.counter, 7);
    assert_int_equal(got.previous_counter, 300);
    assert_int_equal(got.ciphertext_len, 16);
    assert_memory_equal(got.ciphertext, CT, 16);
    sigmsg_clear(&got);
    assert_null(got.ciphertext);

    struct keys_public a = key_of(0xaa), b = key_of(0xbb);
    assert_int_equal(sigmsg_verify_mac(out, len, MAC_KEY, &a, &b), 0);
}

static void test_signal_message_mac_refuses_any_change(void **state)
{
    (void)state;
    uint8_t out[128];
    size_t len = encode_sample(out, sizeof(out));
    struct keys_public a = key_of(0xaa), b = key_of(0xbb);
    for (size_t i = 0; i < len * 8; i++) {
        out[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(sigmsg_verify_mac(out, len, MAC_KEY, &a, &b), PARLEY_EBAD_SIGNATURE);
        out[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* Identities swapped, or another receiver, or another key. */
    assert_int_equal(sigmsg_verify_mac(out, len, MAC_KEY, &b, &a), PARLEY_EBAD_SIGNATURE);
    struct keys_public c = key_of(0xcc);
    assert_int_equal(sigmsg_verify_mac(out, len, MAC_KEY, &a, &c), PARLEY_EBAD_SIGNATURE);
    uint8_t other[SIGMSG_MAC_KEY_LEN];
    memcpy(other, MAC_KEY, sizeof(other));
    other[31] ^= 1;
    assert_int_equal(sigmsg_verify_mac(out, len, other, &a, &b), PARLEY_EBAD_SIGNATURE);
    /* Truncated by one byte: the MAC is then read from other bytes. */
    assert_int_equal(sigmsg_verify_mac(out, len - 1, MAC_KEY, &a, &b), PARLEY_EBAD_SIGNATURE);
    assert_int_equal(sigmsg_verify_mac(out, 1 + SIGMSG_MAC_LEN, MAC_KEY, &a, &b),
                     PARLEY_EMALFORMED);
    assert_int_equal(sigmsg_verify_mac(out, len, MAC_KEY, &a, &b), 0);
}

static void test_signal_message_refuses_other_versions(void **state)
{
    (void)state;
    uint8_t out[128];
    size_t len = encode_sample(out, sizeof(out));
    struct sigmsg got = {0};
    static const uint8_t bad[] = {0x03, 0x13, 0x23, 0x43, 0xf3, 0x00};
    for (size_t i = 0; i < sizeof(bad); i++) {
        out[0] = bad[i];
        assert_int_equal(sigmsg_decode(out, len, &got), PARLEY_EVERSION);
    }
    /* The low nibble is the sender's highest version; libsignal ignores it. */
    out[0] = 0x34;
    assert_int_equal(sigmsg_decode(out, len, &got), 0);
    sigmsg_clear(&got);
}

static void test_signal_message_refuses_short_and_garbage(void **state)
{
    (void)state;
    uint8_t out[128];
    size_t len = encode_sample(out, sizeof(out));
    struct sigmsg got = {0};
    for (size_t n = 0; n <= 1 + SIGMSG_MAC_LEN; n++)
        assert_int_equal(sigmsg_decode(out, n, &got), PARLEY_EMALFORMED);
    /* Cut inside the protobuf: the MAC's 8 bytes end up as field bytes. */
    assert_int_not_equal(sigmsg_decode(out, len - 20, &got), 0);
    uint8_t junk[32];
    memset(junk, 0xff, sizeof(junk));
    junk[0] = 0x33;
    assert_int_equal(sigmsg_decode(junk, sizeof(junk), &got), PARLEY_EMALFORMED);
    assert_int_equal(sigmsg_decode(NULL, 10, &got), PARLEY_EINVAL);
    assert_int_equal(sigmsg_decode(out, len, NULL), PARLEY_EINVAL);
    assert_null(got.ciphertext);
}

/* A framed SignalMessage from raw protobuf bytes and a zero MAC. */
static size_t frame(const uint8_t *pb, size_t pb_len, uint8_t *out)
{
    out[0] = 0x33;
    memcpy(out + 1, pb, pb_len);
    memset(out + 1 + pb_len, 0, SIGMSG_MAC_LEN);
    return 1 + pb_len + SIGMSG_MAC_LEN;
}

static void test_signal_message_refuses_missing_fields_and_bad_keys(void **state)
{
    (void)state;
    uint8_t key[35] = {0x0a, 33, 0x05};
    memset(key + 3, 0x11, 32);
    static const uint8_t counter[] = {0x10, 1}, prev[] = {0x18, 0}, ct[] = {0x22, 1, 0x99};
    uint8_t pb[64], out[80];
    struct sigmsg got = {0};
    size_t n;

    /* All three required fields: accepted, previousCounter defaulting. */
    n = 0;
    memcpy(pb + n, key, sizeof(key)), n += sizeof(key);
    memcpy(pb + n, counter, 2), n += 2;
    memcpy(pb + n, ct, 3), n += 3;
    assert_int_equal(sigmsg_decode(out, frame(pb, n, out), &got), 0);
    assert_int_equal(got.previous_counter, 0);
    assert_int_equal(got.ciphertext_len, 1);
    sigmsg_clear(&got);

    /* Without the ratchet key, the counter, or the ciphertext. */
    n = 0;
    memcpy(pb + n, counter, 2), n += 2;
    memcpy(pb + n, prev, 2), n += 2;
    memcpy(pb + n, ct, 3), n += 3;
    assert_int_equal(sigmsg_decode(out, frame(pb, n, out), &got), PARLEY_EMALFORMED);
    n = 0;
    memcpy(pb + n, key, sizeof(key)), n += sizeof(key);
    memcpy(pb + n, ct, 3), n += 3;
    assert_int_equal(sigmsg_decode(out, frame(pb, n, out), &got), PARLEY_EMALFORMED);
    n = 0;
    memcpy(pb + n, key, sizeof(key)), n += sizeof(key);
    memcpy(pb + n, counter, 2), n += 2;
    assert_int_equal(sigmsg_decode(out, frame(pb, n, out), &got), PARLEY_EMALFORMED);

    /* A ratchet key with another type byte, or 32 or 34 bytes long. */
    uint8_t badkey[36];
    memcpy(badkey, key, sizeof(key));
    badkey[2] = 0x06;
    n = 0;
    memcpy(pb + n, badkey, sizeof(key)), n += sizeof(key);
    memcpy(pb + n, counter, 2), n += 2;
    memcpy(pb + n, ct, 3), n += 3;
    assert_int_equal(sigmsg_decode(out, frame(pb, n, out), &got), PARLEY_EBAD_KEY);
    for (int delta = -1; delta <= 1; delta += 2) {
        memcpy(badkey, key, sizeof(key));
        badkey[1] = (uint8_t)(33 + delta);
        n = 0;
        memcpy(pb + n, badkey, (size_t)(35 + delta)), n += (size_t)(35 + delta);
        memcpy(pb + n, counter, 2), n += 2;
        memcpy(pb + n, ct, 3), n += 3;
        assert_int_equal(sigmsg_decode(out, frame(pb, n, out), &got), PARLEY_EBAD_KEY);
    }
    assert_null(got.ciphertext);
}

static void test_signal_message_encode_refuses_small_buffer(void **state)
{
    (void)state;
    struct sigmsg m = sample();
    struct keys_public a = key_of(0xaa), b = key_of(0xbb);
    uint8_t out[128];
    size_t len = 0, need = sigmsg_encoded_len(&m);
    assert_int_equal(sigmsg_encode(&m, MAC_KEY, &a, &b, out, need - 1, &len), PARLEY_ETOOBIG);
    assert_int_equal(len, 0);
    m.ciphertext = NULL;
    assert_int_equal(sigmsg_encode(&m, MAC_KEY, &a, &b, out, sizeof(out), &len), PARLEY_EINVAL);
}

/* A PreKeySignalMessage around encode_sample()'s message. */
static size_t encode_prekey(bool with_prekey, uint8_t *out, size_t cap, uint8_t *inner,
                            size_t *inner_len)
{
    *inner_len = encode_sample(inner, 128);
    struct sigmsg_prekey p = {.registration_id = 4242,
                              .has_prekey_id = with_prekey,
                              .prekey_id = with_prekey ? 17 : 0,
                              .signed_prekey_id = 5,
                              .base_key = key_of(0x22),
                              .identity_key = key_of(0xaa),
                              .message = inner,
                              .message_len = *inner_len};
    size_t len = 0;
    assert_int_equal(sigmsg_prekey_encode(&p, out, cap, &len), 0);
    assert_int_equal(len, sigmsg_prekey_encoded_len(&p));
    return len;
}

static void test_prekey_message_round_trips_with_and_without_prekey(void **state)
{
    (void)state;
    for (int with = 0; with <= 1; with++) {
        uint8_t out[256], inner[128];
        size_t inner_len, len = encode_prekey(with, out, sizeof(out), inner, &inner_len);
        assert_int_equal(out[0], 0x33);
        /* protobuf-c writes fields by number: preKeyId (1) first when set. */
        assert_int_equal(out[1], with ? 0x08 : 0x12);
        struct sigmsg_prekey got;
        assert_int_equal(sigmsg_prekey_decode(out, len, &got), 0);
        assert_int_equal(got.registration_id, 4242);
        assert_int_equal(got.has_prekey_id, with);
        assert_int_equal(got.prekey_id, with ? 17 : 0);
        assert_int_equal(got.signed_prekey_id, 5);
        assert_memory_equal(got.base_key.u, key_of(0x22).u, 32);
        assert_memory_equal(got.identity_key.u, key_of(0xaa).u, 32);
        assert_int_equal(got.message_len, inner_len);
        assert_memory_equal(got.message, inner, inner_len);
        assert_int_equal(got.inner.counter, 7);
        assert_int_equal(got.inner.previous_counter, 300);
        assert_memory_equal(got.inner.ciphertext, CT, 16);
        struct keys_public a = key_of(0xaa), b = key_of(0xbb);
        assert_int_equal(sigmsg_verify_mac(got.message, got.message_len, MAC_KEY, &a, &b), 0);
        sigmsg_prekey_clear(&got);
        assert_null(got.message);
    }
}

static void test_prekey_message_refuses_bad_input(void **state)
{
    (void)state;
    uint8_t out[256], inner[128];
    size_t inner_len, len = encode_prekey(true, out, sizeof(out), inner, &inner_len);
    struct sigmsg_prekey got = {0};
    assert_int_equal(sigmsg_prekey_decode(out, 1, &got), PARLEY_EMALFORMED);
    assert_int_equal(sigmsg_prekey_decode(out, 0, &got), PARLEY_EMALFORMED);
    assert_int_not_equal(sigmsg_prekey_decode(out, len - 1, &got), 0);
    out[0] = 0x23;
    assert_int_equal(sigmsg_prekey_decode(out, len, &got), PARLEY_EVERSION);
    out[0] = 0x43;
    assert_int_equal(sigmsg_prekey_decode(out, len, &got), PARLEY_EVERSION);
    out[0] = 0x33;

    /* The inner message of another version is refused, as libsignal does. */
    const uint8_t *at = memmem(out, len, inner, inner_len);
    assert_non_null(at);
    size_t inner_at = (size_t)(at - out);
    out[inner_at] = 0x43;
    assert_int_equal(sigmsg_prekey_decode(out, len, &got), PARLEY_EVERSION);
    out[inner_at] = 0x33;

    /* A base key with another type byte: field 2 sits after field 1 (2 bytes). */
    assert_int_equal(out[3], 0x12);
    out[5] = 0x06;
    assert_int_equal(sigmsg_prekey_decode(out, len, &got), PARLEY_EBAD_KEY);
    out[5] = 0x05;

    /* Each required field missing: rebuild the protobuf without it. */
    static const uint8_t base[] = {0x12, 33, 0x05}, ident[] = {0x1a, 33, 0x05};
    static const uint8_t regid[] = {0x28, 1}, spk[] = {0x30, 5};
    for (int drop = 0; drop < 4; drop++) {
        uint8_t buf[256];
        size_t n = 0;
        buf[n++] = 0x33;
        if (drop != 0) {
            memcpy(buf + n, base, 3), n += 3;
            memset(buf + n, 0x22, 32), n += 32;
        }
        if (drop != 1) {
            memcpy(buf + n, ident, 3), n += 3;
            memset(buf + n, 0xaa, 32), n += 32;
        }
        if (drop != 2) {
            buf[n++] = 0x22;
            buf[n++] = (uint8_t)inner_len;
            memcpy(buf + n, inner, inner_len), n += inner_len;
        }
        memcpy(buf + n, regid, 2), n += 2;
        if (drop != 3)
            memcpy(buf + n, spk, 2), n += 2;
        assert_int_equal(sigmsg_prekey_decode(buf, n, &got), PARLEY_EMALFORMED);
    }
    assert_null(got.message);
    assert_int_equal(sigmsg_prekey_decode(out, len, &got), 0);
    sigmsg_prekey_clear(&got);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_message_bytes_are_version_protobuf_mac),
        cmocka_unit_test(test_signal_message_round_trips_and_mac_verifies),
        cmocka_unit_test(test_signal_message_mac_refuses_any_change),
        cmocka_unit_test(test_signal_message_refuses_other_versions),
        cmocka_unit_test(test_signal_message_refuses_short_and_garbage),
        cmocka_unit_test(test_signal_message_refuses_missing_fields_and_bad_keys),
        cmocka_unit_test(test_signal_message_encode_refuses_small_buffer),
        cmocka_unit_test(test_prekey_message_round_trips_with_and_without_prekey),
        cmocka_unit_test(test_prekey_message_refuses_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
