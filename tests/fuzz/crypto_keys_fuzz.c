/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the Signal-form public-key parser and XEdDSA verify
 * (src/crypto). Input: a 33-byte wire key, a signature (64 bytes when the
 * input is long enough), then the message. The parser must accept exactly
 * 0x05 plus 32 bytes and round-trip it; verify must never crash and answer
 * only yes or no; and under a fixed honest key it must accept nothing but
 * the one signature that key made (its S may be written unreduced, as the
 * reference allows), so a forgery found by the fuzzer aborts.
 * Seeds: corpus/crypto_keys_fuzz/. */
#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/xeddsa.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fixed key signs KNOWN_MSG once, with random bytes 0..63; this is the
 * known answer of src/crypto/xeddsa_test.c (private key bytes 0x40..0x5f). */
static const uint8_t KNOWN_MSG[] = "parley signed prekey";
static const uint8_t KNOWN_R[32] = {
    0xe5, 0x8c, 0x03, 0x97, 0x56, 0x0f, 0xc1, 0x50, 0xc4, 0x70, 0x5c, 0x96, 0xf9, 0x34, 0x1f, 0xae,
    0xed, 0xe4, 0x59, 0x17, 0xa5, 0x39, 0xb6, 0x9b, 0xbc, 0xcd, 0xbe, 0x41, 0x3e, 0xa4, 0x80, 0x79,
};

static struct keys_pair *fixed_key(void)
{
    static struct keys_pair *kp;
    if (!kp) {
        uint8_t priv[KEYS_PRIVATE_LEN];
        for (int i = 0; i < KEYS_PRIVATE_LEN; i++)
            priv[i] = (uint8_t)(0x40 + i);
        if (keys_from_private(priv, &kp) != 0)
            abort();
    }
    return kp;
}

static void check_parse(const uint8_t *data, size_t size)
{
    struct keys_public pk;
    memset(&pk, 0xa5, sizeof(pk));
    int rc = keys_public_decode(data, size, &pk);
    bool want = size == KEYS_PUBLIC_WIRE_LEN && data[0] == KEYS_DJB_TYPE;
    if (want != (rc == 0))
        abort();
    if (rc != 0) {
        if (rc != PARLEY_EBAD_KEY)
            abort();
        return;
    }
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&pk, wire);
    if (memcmp(wire, data, sizeof(wire)) != 0)
        abort();
}

static int verify(const struct keys_public *pk, const uint8_t *msg, size_t msg_len,
                  const uint8_t *sig, size_t sig_len)
{
    int rc = xeddsa_verify(pk, msg_len ? msg : NULL, msg_len, sig_len ? sig : NULL, sig_len);
    if (rc != 0 && rc != PARLEY_EBAD_SIGNATURE)
        abort();
    if (rc == 0 && sig_len != XEDDSA_SIGNATURE_LEN)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse(data, size);
    if (size >= KEYS_PUBLIC_WIRE_LEN)
        check_parse(data, KEYS_PUBLIC_WIRE_LEN);
    if (size < KEYS_PUBLIC_WIRE_LEN)
        return 0;

    const uint8_t *sig = data + KEYS_PUBLIC_WIRE_LEN;
    size_t rest = size - KEYS_PUBLIC_WIRE_LEN;
    size_t sig_len = rest < XEDDSA_SIGNATURE_LEN ? rest : XEDDSA_SIGNATURE_LEN;
    const uint8_t *msg = sig + sig_len;
    size_t msg_len = rest - sig_len;

    /* Any key the input names, low-order and non-canonical ones included:
     * only a yes or a no. */
    struct keys_public pk;
    memcpy(pk.u, data + 1, KEYS_PUBLIC_LEN);
    verify(&pk, msg, msg_len, sig, sig_len);

    /* The honest key: a yes only for the signature it made. S is not
     * compared, since S and S + L are both accepted and S is fixed by R, the
     * key and the message. */
    if (verify(keys_public_of(fixed_key()), msg, msg_len, sig, sig_len) == 0) {
        if (msg_len != sizeof(KNOWN_MSG) - 1 || memcmp(msg, KNOWN_MSG, msg_len) != 0 ||
            memcmp(sig, KNOWN_R, sizeof(KNOWN_R)) != 0)
            abort();
    }
    return 0;
}
