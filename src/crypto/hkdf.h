/* SPDX-License-Identifier: MIT */
/* HKDF-SHA256 (RFC 5869), extract then expand, through OpenSSL 3's EVP_KDF
 * "HKDF". This is the KDF libsignal-protocol-c uses for message version 3
 * (hkdf.c, iteration counter from 1); its callers (X3DH, the ratchet) choose
 * the salts and info strings. */
#ifndef PARLEY_CRYPTO_HKDF_H
#define PARLEY_CRYPTO_HKDF_H

#include "common/compiler.h"

#include <stddef.h>
#include <stdint.h>

#define HKDF_SHA256_LEN 32
#define HKDF_OUT_MAX (255 * HKDF_SHA256_LEN) /* RFC 5869: L <= 255 * HashLen */

/* Derive out_len bytes into out from the input keying material ikm, with
 * an optional salt (NULL or empty means HashLen zero bytes, as RFC 5869
 * says) and optional info (NULL or empty). All inputs are borrowed; out is
 * a secret the caller wipes. Returns 0, or PARLEY_EINVAL (ikm NULL or
 * empty, out NULL, out_len 0 or above HKDF_OUT_MAX, a NULL pointer with a
 * non-zero length), or PARLEY_EINTERNAL (OpenSSL failed; out is zeroed). */
PL_NODISCARD int hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                             size_t salt_len, const uint8_t *info, size_t info_len, uint8_t *out,
                             size_t out_len);

#endif
