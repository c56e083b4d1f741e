/* SPDX-License-Identifier: MIT */
/* The device-key proof of the protocol: an Ed25519 detached signature over
 * the 14 bytes "parley-auth-v1" followed by the server's 32-byte nonce. */
#ifndef PARLEY_CLIENT_AUTH_H
#define PARLEY_CLIENT_AUTH_H

#include "common/compiler.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_CONTEXT "parley-auth-v1"
#define AUTH_CONTEXT_LEN 14
#define AUTH_NONCE_LEN 32
#define AUTH_MSG_LEN (AUTH_CONTEXT_LEN + AUTH_NONCE_LEN)
#define AUTH_SIG_LEN 64

/* Writes the signed message for nonce into out. */
void auth_message(const uint8_t nonce[AUTH_NONCE_LEN], uint8_t out[AUTH_MSG_LEN]);

/* Signs the message for nonce (nonce_len bytes) with sk, a libsodium
 * Ed25519 secret key (64 bytes, borrowed). Returns 0, or PARLEY_EPROTO
 * when nonce_len is not AUTH_NONCE_LEN. */
PL_NODISCARD int auth_sign(const unsigned char *sk, const uint8_t *nonce, size_t nonce_len,
                           uint8_t sig[AUTH_SIG_LEN]);

#endif
