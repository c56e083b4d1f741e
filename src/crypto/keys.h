/* SPDX-License-Identifier: MIT */
/* Curve25519 key pairs and X25519 agreement, with public keys in the form
 * Signal's libsignal-protocol-c puts on the wire: one type byte (0x05, "DJB")
 * then the 32-byte Montgomery u-coordinate. Signing with these keys is
 * xeddsa.h's; key derivation is hkdf.h's. Rules: docs/internals/crypto.md. */
#ifndef PARLEY_CRYPTO_KEYS_H
#define PARLEY_CRYPTO_KEYS_H

#include "common/compiler.h"

#include <stddef.h>
#include <stdint.h>

#define KEYS_DJB_TYPE 0x05      /* type byte of a serialized Curve25519 public key */
#define KEYS_PUBLIC_LEN 32      /* raw u-coordinate, little-endian */
#define KEYS_PUBLIC_WIRE_LEN 33 /* KEYS_DJB_TYPE then the raw key */
#define KEYS_PRIVATE_LEN 32     /* clamped scalar, little-endian */
#define KEYS_SHARED_LEN 32      /* X25519 output */

/* A Curve25519 public key. Public data: callers may embed, copy and compare
 * it freely. u is taken as libsignal-protocol-c takes it: any 32 bytes. */
struct keys_public {
    uint8_t u[KEYS_PUBLIC_LEN];
};

/* A key pair; the private half lives in sodium_malloc'ed memory (guard
 * pages, never swapped where the system allows) and is wiped on free. */
struct keys_pair;

/* Make a fresh key pair from the system's CSPRNG. The private scalar is
 * clamped (low 3 bits clear, bit 255 clear, bit 254 set) before it is
 * stored, as libsignal-protocol-c's curve_generate_private_key does, so the
 * same 32 bytes serve X25519 and XEdDSA. Returns 0 and *out (free with
 * keys_free), or PARLEY_ENOMEM, or PARLEY_EINTERNAL if libsodium cannot
 * start; *out is untouched on error. */
PL_NODISCARD int keys_generate(struct keys_pair **out);

/* Rebuild a key pair from a stored 32-byte private key (borrowed; the
 * caller wipes its copy). The key is clamped as keys_generate clamps, which
 * X25519 would do anyway, so agreement results never change. Returns 0 and
 * *out, or PARLEY_EINVAL (NULL argument), PARLEY_ENOMEM, PARLEY_EINTERNAL. */
PL_NODISCARD int keys_from_private(const uint8_t priv[KEYS_PRIVATE_LEN], struct keys_pair **out);

/* Wipe and release a key pair; keys_free(NULL) is a no-op. */
void keys_free(struct keys_pair *kp);

/* The public half of kp; valid until keys_free(kp). */
const struct keys_public *keys_public_of(const struct keys_pair *kp);

/* Copy the clamped private key into out, for the caller to store. out is a
 * secret: the caller wipes it (sodium_memzero) once stored. */
void keys_private_export(const struct keys_pair *kp, uint8_t out[KEYS_PRIVATE_LEN]);

/* Write pk in the 33-byte wire form: KEYS_DJB_TYPE then pk->u. */
void keys_public_encode(const struct keys_public *pk, uint8_t out[KEYS_PUBLIC_WIRE_LEN]);

/* Parse the 33-byte wire form from untrusted input. Exactly as
 * libsignal-protocol-c's curve_decode_point: the length must be 33 and the
 * first byte 0x05; the 32 key bytes are then taken as they are (a low-order
 * point is refused later, by keys_agree). Returns 0 and fills *out, or
 * PARLEY_EBAD_KEY (wrong length or type byte) or PARLEY_EINVAL (NULL
 * argument with a non-zero length); *out is untouched on error. */
PL_NODISCARD int keys_public_decode(const uint8_t *in, size_t len, struct keys_public *out);

/* X25519 (RFC 7748) of our private key and peer's public key into out
 * (a secret: the caller wipes it). Returns 0, or PARLEY_EBAD_KEY when the
 * result is all zeros (peer sent a low-order point, so the output would be
 * known to anyone), with out zeroed. libsignal-protocol-c's
 * curve_calculate_agreement returns that zero secret; parley refuses it. */
PL_NODISCARD int keys_agree(const struct keys_pair *self, const struct keys_public *peer,
                            uint8_t out[KEYS_SHARED_LEN]);

/* Module-internal: the clamped private scalar of kp, for xeddsa.c. Valid
 * until keys_free(kp); never copy it out of sodium_malloc'ed memory. */
const uint8_t *keys__private(const struct keys_pair *kp);

#endif
