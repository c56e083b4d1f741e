/* SPDX-License-Identifier: MIT */
/* Safety numbers; see fingerprint.h. One side's digits:
 *   h = version (2 bytes, big-endian) || key (33) || id
 *   h = SHA-512(h || key (33)), SAFETY_ITERATIONS times
 * (so the first round hashes version || key || id || key), then six 5-byte
 * big-endian chunks of h, each mod 100000, as 5 digits. */
#include "crypto/fingerprint.h"

#include "common/err.h"

#include <stdint.h>
#include <string.h>

#include <sodium.h>

#define CHUNK_LEN 5       /* hash bytes per group of digits */
#define CHUNK_MOD 100000u /* 10^SAFETY_GROUP */
#define USED_HASH_LEN 30  /* SAFETY_SIDE_DIGITS / SAFETY_GROUP * CHUNK_LEN */

static void hash_side(const struct keys_public *key, const char *id, size_t id_len,
                      uint8_t out[crypto_hash_sha512_BYTES])
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    const uint8_t version[2] = {(uint8_t)(SAFETY_VERSION >> 8), (uint8_t)SAFETY_VERSION};
    crypto_hash_sha512_state st;

    keys_public_encode(key, wire);
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, version, sizeof(version));
    crypto_hash_sha512_update(&st, wire, sizeof(wire));
    crypto_hash_sha512_update(&st, (const uint8_t *)id, id_len);
    crypto_hash_sha512_update(&st, wire, sizeof(wire));
    crypto_hash_sha512_final(&st, out);
    for (int i = 1; i < SAFETY_ITERATIONS; i++) {
        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, out, crypto_hash_sha512_BYTES);
        crypto_hash_sha512_update(&st, wire, sizeof(wire));
        crypto_hash_sha512_final(&st, out);
    }
}

static int check_id(const char *id, size_t *len)
{
    if (!id)
        return PARLEY_EINVAL;
    size_t n = strnlen(id, SAFETY_ID_MAX + 1);
    if (n == 0 || n > SAFETY_ID_MAX)
        return PARLEY_EINVAL;
    *len = n;
    return 0;
}

int safety_side(const struct keys_public *key, const char *id, char out[SAFETY_SIDE_DIGITS + 1])
{
    size_t id_len = 0;
    if (!key || !out || check_id(id, &id_len) < 0)
        return PARLEY_EINVAL;
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;

    uint8_t h[crypto_hash_sha512_BYTES];
    hash_side(key, id, id_len, h);

    char digits[SAFETY_SIDE_DIGITS + 1];
    for (size_t i = 0; i < USED_HASH_LEN / CHUNK_LEN; i++) {
        const uint8_t *c = h + i * CHUNK_LEN;
        uint64_t chunk = 0;
        for (size_t j = 0; j < CHUNK_LEN; j++)
            chunk = (chunk << 8) | c[j];
        uint32_t v = (uint32_t)(chunk % CHUNK_MOD);
        for (int d = SAFETY_GROUP - 1; d >= 0; d--) {
            digits[i * SAFETY_GROUP + (size_t)d] = (char)('0' + v % 10);
            v /= 10;
        }
    }
    digits[SAFETY_SIDE_DIGITS] = '\0';
    memcpy(out, digits, sizeof(digits));
    return 0;
}

int safety_number(const struct keys_public *local_key, const char *local_id,
                  const struct keys_public *remote_key, const char *remote_id,
                  char out[SAFETY_DIGITS + 1])
{
    char local[SAFETY_SIDE_DIGITS + 1], remote[SAFETY_SIDE_DIGITS + 1];
    if (!out)
        return PARLEY_EINVAL;
    int rc = safety_side(local_key, local_id, local);
    if (rc < 0)
        return rc;
    rc = safety_side(remote_key, remote_id, remote);
    if (rc < 0)
        return rc;

    /* libsignal orders with strcmp, the smaller (or equal) local first. */
    const char *first = local, *second = remote;
    if (strcmp(local, remote) > 0) {
        first = remote;
        second = local;
    }
    memcpy(out, first, SAFETY_SIDE_DIGITS);
    memcpy(out + SAFETY_SIDE_DIGITS, second, SAFETY_SIDE_DIGITS + 1);
    return 0;
}

int safety_format(const char *digits, char *out, size_t out_size)
{
    if (!digits || !out)
        return PARLEY_EINVAL;
    size_t n = strlen(digits);
    if (n == 0 || n % SAFETY_GROUP != 0)
        return PARLEY_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (digits[i] < '0' || digits[i] > '9')
            return PARLEY_EINVAL;
    size_t need = n + n / SAFETY_GROUP; /* n digits, n/5 - 1 spaces, NUL */
    if (out_size < need)
        return PARLEY_EINVAL;

    char *p = out;
    for (size_t i = 0; i < n; i += SAFETY_GROUP) {
        if (i > 0)
            *p++ = ' ';
        memcpy(p, digits + i, SAFETY_GROUP);
        p += SAFETY_GROUP;
    }
    *p = '\0';
    return 0;
}
