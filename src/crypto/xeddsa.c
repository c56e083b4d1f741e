/* SPDX-License-Identifier: MIT */
/* XEdDSA as libsignal-protocol-c computes it, on libsodium's Ed25519 point
 * and scalar API; OpenSSL BIGNUM converts a Montgomery u to an Edwards y,
 * which libsodium has no public call for. Verification reproduces the
 * reference's ref10 arithmetic exactly, torsion included, which libsodium's
 * own Ed25519 verify (stricter) would not. */
#include "crypto/xeddsa.h"

#include "common/err.h"

#include <openssl/bn.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "common/banned.h"

#define POINT_LEN 32
#define SCALAR_LEN 32

/* The encoding of the neutral element (x = 0, y = 1). */
static const uint8_t IDENTITY[POINT_LEN] = {1};

static bool is_identity(const uint8_t p[POINT_LEN])
{
    return memcmp(p, IDENTITY, POINT_LEN) == 0;
}

/* out = in mod L, for a 32-byte little-endian integer. */
static void scalar_reduce32(uint8_t out[SCALAR_LEN], const uint8_t in[SCALAR_LEN])
{
    uint8_t wide[crypto_core_ed25519_NONREDUCEDSCALARBYTES] = {0};
    memcpy(wide, in, SCALAR_LEN);
    crypto_core_ed25519_scalar_reduce(out, wide);
    sodium_memzero(wide, sizeof(wide));
}

/* out = k*B for a reduced scalar k; libsodium refuses k = 0, whose product
 * is the neutral element. */
static int base_mul(uint8_t out[POINT_LEN], const uint8_t k[SCALAR_LEN])
{
    if (sodium_is_zero(k, SCALAR_LEN)) {
        memcpy(out, IDENTITY, POINT_LEN);
        return 0;
    }
    return crypto_scalarmult_ed25519_base_noclamp(out, k) == 0 ? 0 : PARLEY_EINTERNAL;
}

/* out = k*P for a reduced scalar k and any point P on the curve, exactly as
 * ref10's variable-base arithmetic computes it. libsodium multiplies only
 * points of the prime-order subgroup, so P is split as P = P_L + T with P_L
 * in that subgroup and T of order dividing 8: P_L = (8^-1 mod L) * 8P and
 * T = P - P_L; then k*P = k*P_L + (k mod 8)*T. */
static int point_mul(uint8_t out[POINT_LEN], const uint8_t k[SCALAR_LEN],
                     const uint8_t p[POINT_LEN])
{
    uint8_t p8[POINT_LEN], pl[POINT_LEN], t[POINT_LEN], kpl[POINT_LEN], kt[POINT_LEN];
    uint8_t eight[SCALAR_LEN] = {8}, inv8[SCALAR_LEN];

    memcpy(p8, p, POINT_LEN);
    for (int i = 0; i < 3; i++)
        if (crypto_core_ed25519_add(p8, p8, p8) != 0)
            return PARLEY_EINTERNAL;
    if (is_identity(p8)) {
        memcpy(pl, IDENTITY, POINT_LEN);
    } else {
        if (crypto_core_ed25519_scalar_invert(inv8, eight) != 0 ||
            crypto_scalarmult_ed25519_noclamp(pl, inv8, p8) != 0)
            return PARLEY_EINTERNAL;
    }
    if (crypto_core_ed25519_sub(t, p, pl) != 0)
        return PARLEY_EINTERNAL;

    if (is_identity(pl) || sodium_is_zero(k, SCALAR_LEN)) {
        memcpy(kpl, IDENTITY, POINT_LEN);
    } else if (crypto_scalarmult_ed25519_noclamp(kpl, k, pl) != 0) {
        return PARLEY_EINTERNAL;
    }
    memcpy(kt, IDENTITY, POINT_LEN);
    for (unsigned i = 0; i < (unsigned)(k[0] & 7); i++)
        if (crypto_core_ed25519_add(kt, kt, t) != 0)
            return PARLEY_EINTERNAL;
    return crypto_core_ed25519_add(out, kpl, kt) == 0 ? 0 : PARLEY_EINTERNAL;
}

/* The Edwards y of the Montgomery u in pk, as the reference's fe_frombytes
 * and fe_montx_to_edy take it: bit 255 ignored, the rest read mod p,
 * y = (u - 1) / (u + 1) with the inverse as a power, so u = -1 gives 0. */
static int montx_to_edy(uint8_t y_out[POINT_LEN], const uint8_t u_in[POINT_LEN])
{
    int rc = PARLEY_ENOMEM;
    uint8_t ub[POINT_LEN];
    memcpy(ub, u_in, POINT_LEN);
    ub[31] &= 0x7f;

    BN_CTX *ctx = BN_CTX_new();
    if (!ctx)
        return rc;
    BN_CTX_start(ctx);
    BIGNUM *p = BN_CTX_get(ctx), *e = BN_CTX_get(ctx), *u = BN_CTX_get(ctx);
    BIGNUM *um1 = BN_CTX_get(ctx), *up1 = BN_CTX_get(ctx), *y = BN_CTX_get(ctx);
    if (!y)
        goto out;
    /* p = 2^255 - 19 and e = p - 2 */
    BN_zero(p);
    if (!BN_set_bit(p, 255) || !BN_sub_word(p, 19) || !BN_copy(e, p) ||
        !BN_sub_word(e, 2))
        goto out;
    if (!BN_lebin2bn(ub, POINT_LEN, u) || !BN_nnmod(u, u, p, ctx) ||
        !BN_mod_sub(um1, u, BN_value_one(), p, ctx) ||
        !BN_mod_add(up1, u, BN_value_one(), p, ctx) || !BN_mod_exp(up1, up1, e, p, ctx) ||
        !BN_mod_mul(y, um1, up1, p, ctx) || BN_bn2lebinpad(y, y_out, POINT_LEN) != POINT_LEN)
        goto out;
    rc = 0;
out:
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return rc;
}

int xeddsa__sign_with_random(const struct keys_pair *kp, const uint8_t *msg, size_t msg_len,
                             const uint8_t random[XEDDSA_RANDOM_LEN],
                             uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    if (!kp || (!msg && msg_len) || !random || !sig)
        return PARLEY_EINVAL;

    static const uint8_t empty[1] = {0};
    if (!msg)
        msg = empty; /* libsodium's hash wants a pointer even for zero bytes */

    const uint8_t *a_raw = keys__private(kp);
    uint8_t a[SCALAR_LEN], A[POINT_LEN], nonce[crypto_hash_sha512_BYTES], r[SCALAR_LEN];
    uint8_t R[POINT_LEN], hram[crypto_hash_sha512_BYTES], h[SCALAR_LEN], ha[SCALAR_LEN];
    uint8_t S[SCALAR_LEN], prefix[32];
    crypto_hash_sha512_state st;
    int rc = PARLEY_EINTERNAL;

    /* The reference multiplies the clamped scalar itself; a*B equals
     * (a mod L)*B, and every later product is mod L anyway. */
    scalar_reduce32(a, a_raw);
    if (sodium_is_zero(a, SCALAR_LEN) || base_mul(A, a) != 0)
        goto out;

    /* r = SHA-512(0xFE || 0xFF * 31 || a || M || Z) mod L: the private key
     * and fresh randomness, domain-separated from the challenge hash. */
    prefix[0] = 0xFE;
    memset(prefix + 1, 0xFF, sizeof(prefix) - 1);
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, prefix, sizeof(prefix));
    crypto_hash_sha512_update(&st, a_raw, SCALAR_LEN);
    crypto_hash_sha512_update(&st, msg, msg_len);
    crypto_hash_sha512_update(&st, random, XEDDSA_RANDOM_LEN);
    crypto_hash_sha512_final(&st, nonce);
    crypto_core_ed25519_scalar_reduce(r, nonce);
    if (base_mul(R, r) != 0)
        goto out;

    /* h = SHA-512(R || A || M) mod L with A as computed, sign bit and all;
     * S = h*a + r mod L. */
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, R, POINT_LEN);
    crypto_hash_sha512_update(&st, A, POINT_LEN);
    crypto_hash_sha512_update(&st, msg, msg_len);
    crypto_hash_sha512_final(&st, hram);
    crypto_core_ed25519_scalar_reduce(h, hram);
    crypto_core_ed25519_scalar_mul(ha, h, a);
    crypto_core_ed25519_scalar_add(S, ha, r);

    memcpy(sig, R, POINT_LEN);
    memcpy(sig + POINT_LEN, S, SCALAR_LEN);
    sig[63] = (uint8_t)((sig[63] & 0x7f) | (A[31] & 0x80)); /* S < 2^253: bit 255 is free */
    rc = 0;
out:
    sodium_memzero(a, sizeof(a));
    sodium_memzero(nonce, sizeof(nonce));
    sodium_memzero(r, sizeof(r));
    sodium_memzero(ha, sizeof(ha));
    sodium_memzero(&st, sizeof(st));
    return rc;
}

int xeddsa_sign(const struct keys_pair *kp, const uint8_t *msg, size_t msg_len,
                uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    if (!kp || (!msg && msg_len) || !sig)
        return PARLEY_EINVAL;
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;
    uint8_t z[XEDDSA_RANDOM_LEN];
    randombytes_buf(z, sizeof(z));
    int rc = xeddsa__sign_with_random(kp, msg, msg_len, z, sig);
    sodium_memzero(z, sizeof(z));
    return rc;
}

int xeddsa_verify(const struct keys_public *pk, const uint8_t *msg, size_t msg_len,
                  const uint8_t *sig, size_t sig_len)
{
    if (!pk || (!msg && msg_len) || (!sig && sig_len))
        return PARLEY_EINVAL;
    if (sig_len != XEDDSA_SIGNATURE_LEN)
        return PARLEY_EBAD_SIGNATURE;
    static const uint8_t empty[1] = {0};
    if (!msg)
        msg = empty;

    /* The Edwards key: y from u, sign bit from the signature. */
    uint8_t A[POINT_LEN];
    int rc = montx_to_edy(A, pk->u);
    if (rc != 0)
        return rc;
    A[31] = (uint8_t)((A[31] & 0x7f) | (sig[63] & 0x80));

    /* S without the sign bit must be below 2^253, the reference's only
     * check on S ("strict parsing of s"); it is not compared with L. */
    uint8_t s[SCALAR_LEN], s_red[SCALAR_LEN];
    memcpy(s, sig + 32, SCALAR_LEN);
    s[31] &= 0x7f;
    if (s[31] & 0xe0)
        return PARLEY_EBAD_SIGNATURE;

    /* A must decode to a curve point; adding the neutral element is how
     * libsodium's API says whether it does. */
    uint8_t tmp[POINT_LEN];
    if (crypto_core_ed25519_add(tmp, A, IDENTITY) != 0)
        return PARLEY_EBAD_SIGNATURE;

    uint8_t hram[crypto_hash_sha512_BYTES], h[SCALAR_LEN];
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, sig, POINT_LEN);
    crypto_hash_sha512_update(&st, A, POINT_LEN);
    crypto_hash_sha512_update(&st, msg, msg_len);
    crypto_hash_sha512_final(&st, hram);
    crypto_core_ed25519_scalar_reduce(h, hram);

    /* R' = S*B - h*A, compared with R as encoded bytes, so a non-canonical
     * R never matches. */
    uint8_t sb[POINT_LEN], ha[POINT_LEN], rcheck[POINT_LEN];
    scalar_reduce32(s_red, s);
    if (base_mul(sb, s_red) != 0 || point_mul(ha, h, A) != 0 ||
        crypto_core_ed25519_sub(rcheck, sb, ha) != 0)
        return PARLEY_EINTERNAL;
    return sodium_memcmp(rcheck, sig, POINT_LEN) == 0 ? 0 : PARLEY_EBAD_SIGNATURE;
}
