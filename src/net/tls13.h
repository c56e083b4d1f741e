/* SPDX-License-Identifier: MIT */
/* The TLS 1.3 record layer (RFC 8446 section 5) a connection runs on once
 * OpenSSL has finished the handshake: what it keeps is the two application
 * traffic secrets, the keys and IVs derived from them, and a sequence
 * number per direction (about 300 bytes), where an OpenSSL SSL object
 * keeps about 15 KiB for the life of the connection. The AEADs are
 * OpenSSL's, run through one cipher context per thread and suite, keyed
 * per record, so an idle connection holds no cipher state.
 *
 * Handled after the handshake: application data, alerts (close_notify,
 * user_canceled; any other alert ends the connection), and KeyUpdate in
 * both directions (answered once when the peer requests it, however often
 * it asks before our next record; sent by us before 2^24 records under one
 * key, below AES-GCM's limit). Anything else
 * (a post-handshake message other than KeyUpdate, a record that does not
 * authenticate, a malformed or oversized record) is a fatal error: a fatal
 * alert goes out, encrypted, and nothing more is read or written. */
#ifndef PARLEY_NET_TLS13_H
#define PARLEY_NET_TLS13_H

#include "common/compiler.h"
#include "net/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS13_MAX_PLAIN 16384                    /* 2^14: one record's content */
#define TLS13_MAX_CIPHER (TLS13_MAX_PLAIN + 256) /* 2^14 + 256: a record's body */
#define TLS13_HEADER 5
#define TLS13_SCRATCH TLS13_MAX_CIPHER /* what tls13_read needs of its scratch */
#define TLS13_SECRET_MAX 48            /* SHA-384 */

/* Inner content types (RFC 8446 section 5.1). */
enum { TLS13_ALERT = 21, TLS13_HANDSHAKE = 22, TLS13_APPDATA = 23 };

enum tls13_result {
    TLS13_OK = 0,     /* go on */
    TLS13_CLOSED = 1, /* the peer sent close_notify */
    TLS13_ERROR = 2   /* fatal: a fatal alert was appended to out, if one could be */
};

struct tls13_dir {
    uint8_t secret[TLS13_SECRET_MAX]; /* the current application traffic secret */
    uint8_t key[32];
    uint8_t iv[12];
    uint64_t seq;
};

struct tls13 {
    struct tls13_dir rx, tx;
    struct net_buf in; /* the start of a record not yet whole; no storage otherwise */
    uint8_t suite;     /* index into tls13.c's suite table */
    bool failed;       /* a fatal error was met or sent: nothing more in or out */
    bool closed;       /* close_notify received */
    bool shut;         /* close_notify sent: nothing more out, reading goes on */
    bool reply_update; /* the peer asked for our KeyUpdate; not yet sent */
};

/* Whether tls13 can run the TLS 1.3 cipher suite with IANA number id
 * (0x1301 AES-128-GCM, 0x1302 AES-256-GCM, 0x1303 ChaCha20-Poly1305), and
 * its hash length (the length of its secrets). */
bool tls13_suite_supported(uint16_t id, size_t *secret_len);

/* Sets t up from the handshake's application traffic secrets (*_0; each
 * secret_len bytes, as tls13_suite_supported says), with tx_seq records
 * already sent under the server's key (session tickets). Copies the
 * secrets; the caller wipes its own. Returns 0 or PARLEY_EINVAL. */
PL_NODISCARD int tls13_init(struct tls13 *t, uint16_t suite_id, const uint8_t *rx_secret,
                            const uint8_t *tx_secret, size_t secret_len, uint64_t tx_seq);

/* Wipes the keys and frees the partial record. */
void tls13_wipe(struct tls13 *t);

/* Returns true to keep reading, false to stop. */
typedef bool tls13_plain_cb(void *arg, const uint8_t *data, size_t len);

/* Takes len bytes of ciphertext as they came off the socket (any split),
 * passes the application data of each whole record to cb (from scratch,
 * which must hold TLS13_SCRATCH bytes), keeps a partial record for the
 * next call, and appends what the record layer has to say (KeyUpdate,
 * alerts) to out. After cb returns false the rest of data is dropped. */
enum tls13_result tls13_read(struct tls13 *t, const uint8_t *data, size_t len, uint8_t *scratch,
                             tls13_plain_cb *cb, void *arg, struct net_buf *out);

/* Encrypts len bytes of content of the given inner type into records of
 * at most TLS13_MAX_PLAIN bytes appended to out. Returns 0 or PARLEY_ETLS
 * (after a fatal error, or if the cipher fails). */
PL_NODISCARD int tls13_seal(struct tls13 *t, uint8_t type, const uint8_t *data, size_t len,
                            struct net_buf *out);

/* Application data: tls13_seal with TLS13_APPDATA. */
PL_NODISCARD int tls13_write(struct tls13 *t, const uint8_t *data, size_t len, struct net_buf *out);

/* Appends an encrypted close_notify alert to out (once; nothing after a
 * fatal error). */
void tls13_close_notify(struct tls13 *t, struct net_buf *out);

/* HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context, for an
 * output no longer than the hash (all TLS 1.3's traffic key schedule
 * needs). hash_len is 32 (SHA-256) or 48 (SHA-384). Returns 0 or
 * PARLEY_EINVAL / PARLEY_ETLS. Exposed for its test vectors. */
PL_NODISCARD int tls13_expand_label(size_t hash_len, const uint8_t *secret, const char *label,
                                    uint8_t *out, size_t out_len);

#endif
