/* SPDX-License-Identifier: MIT */
/* Signatures with Curve25519 keys, bit for bit as libsignal-protocol-c makes
 * and checks them (curve.c curve_calculate_signature and
 * curve_verify_signature, on curve25519/ed25519/additions/curve_sigs.c):
 * the X25519 private scalar signs as an Ed25519 scalar, and the sign of the
 * Edwards public key, which the Montgomery form loses, rides in the top
 * bit of the signature's last byte. Signal uses them for signed prekeys.
 * Formats and the exact acceptance rules: docs/internals/crypto.md. */
#ifndef PARLEY_CRYPTO_XEDDSA_H
#define PARLEY_CRYPTO_XEDDSA_H

#include "common/compiler.h"
#include "crypto/keys.h"

#include <stddef.h>
#include <stdint.h>

#define XEDDSA_SIGNATURE_LEN 64 /* R (32) then S (32), sign bit in byte 63 bit 7 */
#define XEDDSA_RANDOM_LEN 64    /* fresh randomness hashed into each nonce */

/* Sign msg (borrowed; may be NULL when msg_len is 0) with kp into sig, with
 * 64 fresh random bytes in the nonce as libsignal-protocol-c does, so two
 * signatures of one message differ. Returns 0, or PARLEY_EINVAL (NULL
 * argument), or PARLEY_EINTERNAL (a degenerate scalar, probability about
 * 2^-250); sig is written only on success. Any thread. */
PL_NODISCARD int xeddsa_sign(const struct keys_pair *kp, const uint8_t *msg, size_t msg_len,
                             uint8_t sig[XEDDSA_SIGNATURE_LEN]);

/* Check sig (sig_len bytes, untrusted) over msg under the Curve25519 public
 * key pk. Accepts exactly the signatures curve_verify_signature accepts:
 * sig_len must be 64; the key's top bit is ignored and its value taken mod
 * 2^255-19; S (sign bit removed) must be below 2^253 but need not be
 * reduced mod the group order; low-order and mixed-order keys are not
 * refused here (keys_agree refuses them for agreement). Returns 0 when
 * valid, PARLEY_EBAD_SIGNATURE when not, PARLEY_EINVAL (NULL pointer with
 * a non-zero length, or NULL pk), PARLEY_ENOMEM (OpenSSL could not
 * allocate) or PARLEY_EINTERNAL (libsodium refused an internal step, a bug
 * of ours). Any thread. */
PL_NODISCARD int xeddsa_verify(const struct keys_public *pk, const uint8_t *msg, size_t msg_len,
                               const uint8_t *sig, size_t sig_len);

/* Module-internal, for tests: xeddsa_sign with caller-chosen randomness, so
 * a signature can be compared byte for byte with libsignal-protocol-c's
 * from the same key, message and random bytes. Never use a fixed random
 * outside tests. */
PL_NODISCARD int xeddsa__sign_with_random(const struct keys_pair *kp, const uint8_t *msg,
                                          size_t msg_len, const uint8_t random[XEDDSA_RANDOM_LEN],
                                          uint8_t sig[XEDDSA_SIGNATURE_LEN]);

#endif
