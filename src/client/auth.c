/* SPDX-License-Identifier: MIT */
/* Challenge signing; see auth.h. */
#include "auth.h"
#include "common/err.h"

#include <sodium.h>
#include <string.h>

#include "common/banned.h"

void auth_message(const uint8_t nonce[AUTH_NONCE_LEN], uint8_t out[AUTH_MSG_LEN])
{
    memcpy(out, AUTH_CONTEXT, AUTH_CONTEXT_LEN);
    memcpy(out + AUTH_CONTEXT_LEN, nonce, AUTH_NONCE_LEN);
}

int auth_sign(const unsigned char *sk, const uint8_t *nonce, size_t nonce_len,
              uint8_t sig[AUTH_SIG_LEN])
{
    uint8_t msg[AUTH_MSG_LEN];
    if (nonce_len != AUTH_NONCE_LEN)
        return PARLEY_EPROTO;
    auth_message(nonce, msg);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
    return 0;
}
