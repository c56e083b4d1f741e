/* SPDX-License-Identifier: MIT */
/* X3DH key agreement for message version 3, as libsignal-protocol-c's
 * ratcheting_session.c computes it: 32 bytes of 0xFF, then three or four
 * X25519 results, through HKDF-SHA256 (salt 32 zero bytes, info
 * "WhisperText") into the first root key and chain key of the ratchet.
 * The initiator ("Alice") checks the signed prekey's signature first.
 * Sessions, prekey stores and messages are the callers'. */
#ifndef PARLEY_CRYPTO_X3DH_H
#define PARLEY_CRYPTO_X3DH_H

#include "common/compiler.h"
#include "crypto/keys.h"
#include "crypto/xeddsa.h"

#include <stdbool.h>
#include <stdint.h>

#define X3DH_KEY_LEN 32 /* root key and chain key */

/* A peer's published keys as the initiator fetched them. Public data. */
struct x3dh_bundle {
    struct keys_public identity_key;
    uint32_t signed_prekey_id;
    struct keys_public signed_prekey;
    uint8_t signed_prekey_signature[XEDDSA_SIGNATURE_LEN]; /* over the 33-byte key */
    bool has_prekey;           /* false: the peer's one-time prekeys ran out */
    uint32_t prekey_id;        /* valid when has_prekey */
    struct keys_public prekey; /* valid when has_prekey */
};

/* The agreement's result. Secrets: callers keep them in sodium_malloc'ed
 * memory and wipe them (sodium_memzero) when done. */
struct x3dh_keys {
    uint8_t root_key[X3DH_KEY_LEN];
    uint8_t chain_key[X3DH_KEY_LEN];
};

/* Initiator's side. our_base is the fresh ephemeral key the caller made
 * (keys_generate) and sends as the PreKeySignalMessage's baseKey; all
 * arguments are borrowed. Checks the bundle's signed-prekey signature under
 * its identity key before anything else, then computes
 * DH(identity, signed prekey) || DH(base, peer identity) ||
 * DH(base, signed prekey) [|| DH(base, one-time prekey)]. Returns 0 and
 * *out, or PARLEY_EINVAL (NULL argument), PARLEY_EBAD_SIGNATURE (the
 * signature does not verify), PARLEY_EBAD_KEY (a peer key is of low order,
 * so an agreement is all zeros), PARLEY_ENOMEM, PARLEY_EINTERNAL. *out is
 * written only on success. Any thread. */
PL_NODISCARD int x3dh_initiate(const struct keys_pair *our_identity,
                               const struct keys_pair *our_base,
                               const struct x3dh_bundle *bundle, struct x3dh_keys *out);

/* Responder's side, on a PreKeySignalMessage's identity and base keys:
 * our_prekey is the one-time prekey it names, or NULL when it names none;
 * the caller looked both prekeys up by id (an unknown id is its refusal).
 * Computes DH(signed prekey, peer identity) || DH(identity, base) ||
 * DH(signed prekey, base) [|| DH(one-time prekey, base)]. Returns as
 * x3dh_initiate, without the signature check. */
PL_NODISCARD int x3dh_respond(const struct keys_pair *our_identity,
                              const struct keys_pair *our_signed_prekey,
                              const struct keys_pair *our_prekey,
                              const struct keys_public *their_identity,
                              const struct keys_public *their_base, struct x3dh_keys *out);

#endif
