/* SPDX-License-Identifier: MIT */
/* X3DH for message version 3 on keys.h, xeddsa.h and hkdf.h. The master
 * secret is assembled in sodium_malloc'ed memory and wiped before return. */
#include "crypto/x3dh.h"

#include "common/err.h"
#include "crypto/hkdf.h"

#include <string.h>

#include <sodium.h>

#define DISCONTINUITY_LEN 32 /* the 0xFF prefix: no X25519 output begins so */
#define SECRET_MAX (DISCONTINUITY_LEN + 4 * KEYS_SHARED_LEN)

static const uint8_t INFO[] = "WhisperText";

/* One agreement per pair; the secret grows by KEYS_SHARED_LEN each time. */
struct dh_step {
    const struct keys_pair *ours;
    const struct keys_public *theirs;
};

static int derive(const struct dh_step *steps, size_t n, struct x3dh_keys *out)
{
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;
    uint8_t *secret = sodium_malloc(SECRET_MAX + 2 * X3DH_KEY_LEN);
    if (!secret)
        return PARLEY_ENOMEM;
    uint8_t *okm = secret + SECRET_MAX;
    size_t len = DISCONTINUITY_LEN;
    memset(secret, 0xff, DISCONTINUITY_LEN);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = keys_agree(steps[i].ours, steps[i].theirs, secret + len);
        len += KEYS_SHARED_LEN;
    }
    if (rc == 0) {
        static const uint8_t salt[HKDF_SHA256_LEN] = {0};
        rc = hkdf_sha256(secret, len, salt, sizeof(salt), INFO, sizeof(INFO) - 1, okm,
                         2 * X3DH_KEY_LEN);
    }
    if (rc == 0) {
        memcpy(out->root_key, okm, X3DH_KEY_LEN);
        memcpy(out->chain_key, okm + X3DH_KEY_LEN, X3DH_KEY_LEN);
    }
    sodium_free(secret); /* wipes */
    return rc;
}

int x3dh_initiate(const struct keys_pair *our_identity, const struct keys_pair *our_base,
                  const struct x3dh_bundle *bundle, struct x3dh_keys *out)
{
    if (!our_identity || !our_base || !bundle || !out)
        return PARLEY_EINVAL;
    uint8_t spk[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&bundle->signed_prekey, spk);
    int rc = xeddsa_verify(&bundle->identity_key, spk, sizeof(spk),
                           bundle->signed_prekey_signature, XEDDSA_SIGNATURE_LEN);
    if (rc)
        return rc;
    const struct dh_step steps[] = {
        {our_identity, &bundle->signed_prekey},
        {our_base, &bundle->identity_key},
        {our_base, &bundle->signed_prekey},
        {our_base, &bundle->prekey},
    };
    return derive(steps, bundle->has_prekey ? 4 : 3, out);
}

int x3dh_respond(const struct keys_pair *our_identity, const struct keys_pair *our_signed_prekey,
                 const struct keys_pair *our_prekey, const struct keys_public *their_identity,
                 const struct keys_public *their_base, struct x3dh_keys *out)
{
    if (!our_identity || !our_signed_prekey || !their_identity || !their_base || !out)
        return PARLEY_EINVAL;
    const struct dh_step steps[] = {
        {our_signed_prekey, their_identity},
        {our_identity, their_base},
        {our_signed_prekey, their_base},
        {our_prekey, their_base},
    };
    return derive(steps, our_prekey ? 4 : 3, out);
}
