/* SPDX-License-Identifier: MIT */
/* Test-only crypto provider for libsignal-protocol-c on OpenSSL: HMAC-SHA256
 * via EVP_MAC, SHA-512, AES-CBC/CTR, random bytes from RAND_bytes or fixed
 * ones. Linked into the interop tests only. */
#include "crypto/signal_provider_test_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sodium.h>

const uint8_t *sigtest_fixed_random;

static int on_random(uint8_t *data, size_t len, void *user_data)
{
    (void)user_data;
    if (sigtest_fixed_random) {
        if (len > 64)
            return SG_ERR_UNKNOWN;
        memcpy(data, sigtest_fixed_random, len);
        return 0;
    }
    return RAND_bytes(data, (int)len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

static int on_hmac_init(void **hctx, const uint8_t *key, size_t key_len, void *user_data)
{
    (void)user_data;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context keeps its own reference */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!c || EVP_MAC_init(c, key, key_len, params) != 1) {
        EVP_MAC_CTX_free(c);
        return SG_ERR_UNKNOWN;
    }
    *hctx = c;
    return 0;
}

static int on_hmac_update(void *hctx, const uint8_t *data, size_t len, void *user_data)
{
    (void)user_data;
    return EVP_MAC_update(hctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

static int on_hmac_final(void *hctx, signal_buffer **output, void *user_data)
{
    (void)user_data;
    uint8_t md[32];
    size_t md_len = 0;
    if (EVP_MAC_final(hctx, md, &md_len, sizeof(md)) != 1)
        return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(md, md_len);
    return *output ? 0 : SG_ERR_NOMEM;
}

static void on_hmac_cleanup(void *hctx, void *user_data)
{
    (void)user_data;
    EVP_MAC_CTX_free(hctx);
}

static int on_sha512_init(void **dctx, void *user_data)
{
    (void)user_data;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha512(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return SG_ERR_UNKNOWN;
    }
    *dctx = c;
    return 0;
}

static int on_sha512_update(void *dctx, const uint8_t *data, size_t len, void *user_data)
{
    (void)user_data;
    return EVP_DigestUpdate(dctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

static int on_sha512_final(void *dctx, signal_buffer **output, void *user_data)
{
    (void)user_data;
    uint8_t md[64];
    unsigned md_len = 0;
    /* The context is reused after final, as the provider contract says. */
    if (EVP_DigestFinal_ex(dctx, md, &md_len) != 1 ||
        EVP_DigestInit_ex(dctx, EVP_sha512(), NULL) != 1)
        return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(md, md_len);
    return *output ? 0 : SG_ERR_NOMEM;
}

static void on_sha512_cleanup(void *dctx, void *user_data)
{
    (void)user_data;
    EVP_MD_CTX_free(dctx);
}

static const EVP_CIPHER *aes_cipher(int cipher, size_t key_len)
{
    bool cbc = cipher == SG_CIPHER_AES_CBC_PKCS5;
    if (!cbc && cipher != SG_CIPHER_AES_CTR_NOPADDING)
        return NULL;
    switch (key_len) {
    case 16:
        return cbc ? EVP_aes_128_cbc() : EVP_aes_128_ctr();
    case 24:
        return cbc ? EVP_aes_192_cbc() : EVP_aes_192_ctr();
    case 32:
        return cbc ? EVP_aes_256_cbc() : EVP_aes_256_ctr();
    default:
        return NULL;
    }
}

static int aes_run(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
                   const uint8_t *iv, size_t iv_len, const uint8_t *in, size_t in_len, int enc)
{
    const EVP_CIPHER *c = aes_cipher(cipher, key_len);
    if (!c || iv_len != 16 || in_len > INT32_MAX - 32)
        return SG_ERR_INVAL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t *buf = malloc(in_len + 32);
    int rc = SG_ERR_UNKNOWN, n1 = 0, n2 = 0;
    if (ctx && buf && EVP_CipherInit_ex(ctx, c, NULL, key, iv, enc) == 1 &&
        EVP_CipherUpdate(ctx, buf, &n1, in, (int)in_len) == 1 &&
        EVP_CipherFinal_ex(ctx, buf + n1, &n2) == 1) {
        *output = signal_buffer_create(buf, (size_t)n1 + (size_t)n2);
        rc = *output ? 0 : SG_ERR_NOMEM;
    }
    free(buf);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

static int on_encrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
                      const uint8_t *iv, size_t iv_len, const uint8_t *plaintext,
                      size_t plaintext_len, void *user_data)
{
    (void)user_data;
    return aes_run(output, cipher, key, key_len, iv, iv_len, plaintext, plaintext_len, 1);
}

static int on_decrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
                      const uint8_t *iv, size_t iv_len, const uint8_t *ciphertext,
                      size_t ciphertext_len, void *user_data)
{
    (void)user_data;
    return aes_run(output, cipher, key, key_len, iv, iv_len, ciphertext, ciphertext_len, 0);
}
signal_context *sigtest_context_new(void)
{
    static const signal_crypto_provider provider = {
        .random_func = on_random,
        .hmac_sha256_init_func = on_hmac_init,
        .hmac_sha256_update_func = on_hmac_update,
        .hmac_sha256_final_func = on_hmac_final,
        .hmac_sha256_cleanup_func = on_hmac_cleanup,
        .sha512_digest_init_func = on_sha512_init,
        .sha512_digest_update_func = on_sha512_update,
        .sha512_digest_final_func = on_sha512_final,
        .sha512_digest_cleanup_func = on_sha512_cleanup,
        .encrypt_func = on_encrypt,
        .decrypt_func = on_decrypt,
    };
    signal_context *ctx = NULL;
    if (signal_context_create(&ctx, NULL) != 0)
        return NULL;
    if (signal_context_set_crypto_provider(ctx, &provider) != 0) {
        signal_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

signal_context *sigtest_ctx;

int sigtest_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    sigtest_ctx = sigtest_context_new();
    return sigtest_ctx ? 0 : -1;
}

int sigtest_teardown(void **state)
{
    (void)state;
    signal_context_destroy(sigtest_ctx);
    sigtest_ctx = NULL;
    return 0;
}
