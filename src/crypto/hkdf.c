/* SPDX-License-Identifier: MIT */
/* HKDF-SHA256 on OpenSSL 3's EVP_KDF; libsodium 1.0.18 has no HKDF. */
#include "crypto/hkdf.h"

#include "common/err.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <sodium.h>

#include "common/banned.h"

int hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
    if (!ikm || !ikm_len || !out || !out_len || out_len > HKDF_OUT_MAX || (!salt && salt_len) ||
        (!info && info_len))
        return PARLEY_EINVAL;

    int rc = PARLEY_EINTERNAL;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (!ctx)
        goto out;

    /* An absent salt is HashLen zeros in RFC 5869 and in OpenSSL alike; an
     * empty octet string is left out rather than passed as a NULL pointer. */
    OSSL_PARAM params[5];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    if (salt_len)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    if (info_len)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    params[n] = OSSL_PARAM_construct_end();

    if (EVP_KDF_derive(ctx, out, out_len, params) == 1)
        rc = 0;
    else
        sodium_memzero(out, out_len);
out:
    EVP_KDF_CTX_free(ctx); /* wipes the copies of ikm and salt it holds */
    EVP_KDF_free(kdf);
    return rc;
}
