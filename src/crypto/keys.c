/* SPDX-License-Identifier: MIT */
/* Curve25519 key pairs on libsodium: generation, the 33-byte public-key wire
 * form of libsignal-protocol-c, and X25519 agreement that refuses low-order
 * peers. Signing lives in xeddsa.c. */
#include "crypto/keys.h"

#include "common/err.h"

#include <sodium.h>
#include <string.h>

#include "common/banned.h"

/* The whole pair sits in one sodium_malloc'ed block so the private scalar
 * never lives on the ordinary heap. */
struct keys_pair {
    uint8_t priv[KEYS_PRIVATE_LEN]; /* clamped scalar */
    struct keys_public pub;         /* priv times the base point u = 9 */
};

/* Clamp as X25519 does (RFC 7748 decodeScalar25519) and as
 * libsignal-protocol-c stores its private keys. */
static void clamp(uint8_t k[KEYS_PRIVATE_LEN])
{
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

/* Allocate a pair and derive its public key from priv, already set. */
static int finish(struct keys_pair *kp, struct keys_pair **out)
{
    if (crypto_scalarmult_base(kp->pub.u, kp->priv) != 0) {
        /* Unreachable for a clamped scalar; kept as a refusal, not a crash. */
        keys_free(kp);
        return PARLEY_EINTERNAL;
    }
    *out = kp;
    return 0;
}

static struct keys_pair *pair_alloc(void)
{
    struct keys_pair *kp = sodium_malloc(sizeof(*kp));
    if (kp)
        memset(kp, 0, sizeof(*kp));
    return kp;
}

int keys_generate(struct keys_pair **out)
{
    if (!out)
        return PARLEY_EINVAL;
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;
    struct keys_pair *kp = pair_alloc();
    if (!kp)
        return PARLEY_ENOMEM;
    randombytes_buf(kp->priv, sizeof(kp->priv));
    clamp(kp->priv);
    return finish(kp, out);
}

int keys_from_private(const uint8_t priv[KEYS_PRIVATE_LEN], struct keys_pair **out)
{
    if (!priv || !out)
        return PARLEY_EINVAL;
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;
    struct keys_pair *kp = pair_alloc();
    if (!kp)
        return PARLEY_ENOMEM;
    memcpy(kp->priv, priv, sizeof(kp->priv));
    clamp(kp->priv);
    return finish(kp, out);
}

void keys_free(struct keys_pair *kp)
{
    if (!kp)
        return;
    sodium_memzero(kp, sizeof(*kp));
    sodium_free(kp);
}

const struct keys_public *keys_public_of(const struct keys_pair *kp)
{
    return &kp->pub;
}

void keys_private_export(const struct keys_pair *kp, uint8_t out[KEYS_PRIVATE_LEN])
{
    memcpy(out, kp->priv, KEYS_PRIVATE_LEN);
}

const uint8_t *keys__private(const struct keys_pair *kp)
{
    return kp->priv;
}

void keys_public_encode(const struct keys_public *pk, uint8_t out[KEYS_PUBLIC_WIRE_LEN])
{
    out[0] = KEYS_DJB_TYPE;
    memcpy(out + 1, pk->u, KEYS_PUBLIC_LEN);
}

int keys_public_decode(const uint8_t *in, size_t len, struct keys_public *out)
{
    if (!out || (!in && len))
        return PARLEY_EINVAL;
    if (len != KEYS_PUBLIC_WIRE_LEN || in[0] != KEYS_DJB_TYPE)
        return PARLEY_EBAD_KEY;
    memcpy(out->u, in + 1, KEYS_PUBLIC_LEN);
    return 0;
}

int keys_agree(const struct keys_pair *self, const struct keys_public *peer,
               uint8_t out[KEYS_SHARED_LEN])
{
    if (!self || !peer || !out)
        return PARLEY_EINVAL;
    /* libsodium returns -1 for an all-zero result (and for the low-order
     * inputs that give one); check again so that the contract does not rest
     * on that detail of one libsodium version. */
    if (crypto_scalarmult(out, self->priv, peer->u) != 0 || sodium_is_zero(out, KEYS_SHARED_LEN)) {
        sodium_memzero(out, KEYS_SHARED_LEN);
        return PARLEY_EBAD_KEY;
    }
    return 0;
}
