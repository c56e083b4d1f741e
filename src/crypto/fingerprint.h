/* SPDX-License-Identifier: MIT */
/* Safety numbers: the 60-digit fingerprint two people compare to check
 * that they hold each other's identity keys, computed as
 * libsignal-protocol-c's numeric fingerprint (fingerprint.c, version 0,
 * 5200 iterations), so both show the same digits as Signal's displayable
 * fingerprint text. The prefix is safety_, not fingerprint_, which is
 * libsignal's own (its interop test links both). Rules:
 * docs/internals/crypto.md. */
#ifndef PARLEY_CRYPTO_FINGERPRINT_H
#define PARLEY_CRYPTO_FINGERPRINT_H

#include "common/compiler.h"
#include "crypto/keys.h"

#include <stddef.h>

#define SAFETY_VERSION 0       /* the 2-byte version prefix of the first hash */
#define SAFETY_ITERATIONS 5200 /* SHA-512 rounds per side, as Signal uses */
#define SAFETY_ID_MAX 256      /* longest stable identifier, in bytes */
#define SAFETY_SIDE_DIGITS 30  /* digits derived from one side's key */
#define SAFETY_DIGITS (2 * SAFETY_SIDE_DIGITS)
#define SAFETY_GROUP 5 /* digits per group in the formatted text */
/* Room for safety_format of SAFETY_DIGITS digits: groups, spaces and NUL. */
#define SAFETY_FORMATTED_SIZE (SAFETY_DIGITS + SAFETY_DIGITS / SAFETY_GROUP)

/* One side's 30 digits from its identity key and stable identifier (a
 * NUL-terminated string, e.g. the user name; 1..SAFETY_ID_MAX bytes).
 * Writes SAFETY_SIDE_DIGITS digits and a NUL into out. Returns 0, or
 * PARLEY_EINVAL (NULL argument, empty or too long identifier) or
 * PARLEY_EINTERNAL (libsodium cannot start); out is untouched on error. */
PL_NODISCARD int safety_side(const struct keys_public *key, const char *id,
                             char out[SAFETY_SIDE_DIGITS + 1]);

/* The safety number of a conversation: both sides' digits, the smaller
 * string first, so either party computing it gets the same SAFETY_DIGITS
 * digits (libsignal's displayable_fingerprint_text). Writes them and a NUL
 * into out. All arguments are borrowed. Returns 0, or an error as
 * safety_side; out is untouched on error. */
PL_NODISCARD int safety_number(const struct keys_public *local_key, const char *local_id,
                               const struct keys_public *remote_key, const char *remote_id,
                               char out[SAFETY_DIGITS + 1]);

/* Format a digit string for display: groups of SAFETY_GROUP digits
 * separated by single spaces ("12345 67890 ..."), NUL-terminated. digits
 * must be a non-empty multiple of SAFETY_GROUP characters, all '0'..'9';
 * out_size must hold the result (SAFETY_FORMATTED_SIZE for a safety
 * number). Returns 0, or PARLEY_EINVAL (NULL, bad digits, out too small);
 * out is untouched on error. */
PL_NODISCARD int safety_format(const char *digits, char *out, size_t out_size);

#endif
