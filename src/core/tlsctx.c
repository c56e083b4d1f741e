/* SPDX-License-Identifier: MIT */
/* Self-signed certificate generation and server SSL_CTX set-up. */
#include "tlsctx.h"
#include "common/err.h"
#include "common/log.h"
#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

static void log_ssl_error(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    log_error("tls", "event=%s error=\"%s\"", what, e ? buf : "unknown");
    ERR_clear_error();
}

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Writes a new self-signed P-256 certificate and key; the key file is
 * created 0600 before anything is written to it. */
static int generate(const char *cert_path, const char *key_path)
{
    int rc = PARLEY_ETLS;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    FILE *kf = NULL, *cf = NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    if (!pkey || !cert)
        goto out;
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto out;
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
        goto out;
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600);
    X509_set_pubkey(cert, pkey);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"parleyd", -1,
                               -1, 0);
    X509_set_issuer_name(cert, name);
    if (add_ext(cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") ||
        add_ext(cert, NID_basic_constraints, "critical,CA:FALSE"))
        goto out;
    if (!X509_sign(cert, pkey, EVP_sha256()))
        goto out;
    int kfd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (kfd < 0 || !(kf = fdopen(kfd, "w"))) {
        if (kfd >= 0)
            close(kfd);
        log_error("tls", "event=keygen path=%s error=\"%s\"", key_path, strerror(errno));
        rc = PARLEY_EIO;
        goto out;
    }
    cf = fopen(cert_path, "w");
    if (!cf || !PEM_write_PrivateKey(kf, pkey, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_X509(cf, cert))
        goto out;
    if (fflush(kf) || fsync(fileno(kf)) || fflush(cf) || fsync(fileno(cf)))
        goto out;
    log_info("tls", "event=self_signed_generated cert=%s", cert_path);
    rc = 0;
out:
    if (rc == PARLEY_ETLS)
        log_ssl_error("self_signed");
    if (kf)
        fclose(kf);
    if (cf)
        fclose(cf);
    BN_free(bn);
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return rc;
}

int tlsctx_new(const char *cert_path, const char *key_path, const char *data_dir, SSL_CTX **out)
{
    char cert[1100], key[1100];
    if (!cert_path[0]) {
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/tls", data_dir);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            log_error("tls", "event=mkdir path=%s error=\"%s\"", dir, strerror(errno));
            return PARLEY_ETLS;
        }
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
            int rc = generate(cert, key);
            if (rc)
                return PARLEY_ETLS;
        }
        cert_path = cert;
        key_path = key;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_error("ctx_new");
        return PARLEY_ETLS;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    net_tls_ctx_prepare(ctx); /* TLS 1.3 connections leave OpenSSL after the handshake */
    /* One TLS 1.3 session ticket per handshake, not OpenSSL's two: a
     * device holds one connection, and each ticket costs the handshake
     * about 30 us (it pays for the key log hand-over above). */
    SSL_CTX_set_num_tickets(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_error("load_cert");
        SSL_CTX_free(ctx);
        return PARLEY_ETLS;
    }
    *out = ctx;
    return 0;
}
