/* SPDX-License-Identifier: MIT */
/* The server's TLS context: from configured PEM files, or from a self-signed
 * pair generated once under the data directory. */
#ifndef PARLEY_CORE_TLSCTX_H
#define PARLEY_CORE_TLSCTX_H

#include "common/compiler.h"

#include <openssl/ssl.h>

/* Builds a server SSL_CTX (TLS 1.2 minimum) from cert_path/key_path, or,
 * when both are empty, from data_dir/tls/{cert,key}.pem, generating a
 * self-signed P-256 pair there first if missing (key file mode 0600).
 * Returns 0 and *out (caller owns a reference), or PARLEY_ETLS with the
 * reason logged. */
PL_NODISCARD int tlsctx_new(const char *cert_path, const char *key_path, const char *data_dir,
                            SSL_CTX **out);

#endif
