/* SPDX-License-Identifier: MIT */
/* The Double Ratchet and a session's encrypt and decrypt, wire-compatible
 * with libsignal-protocol-c's session_cipher.c for message version 3: chain
 * and root KDFs, AES-256-CBC message bodies, SignalMessage and, until the
 * first reply, PreKeySignalMessage framing (sigmsg.h), skipped message keys
 * for out-of-order delivery, and the state's serialized form. Prekey stores,
 * identity trust and files are the callers'. Rules: docs/internals/crypto.md. */
#ifndef PARLEY_CRYPTO_RATCHET_H
#define PARLEY_CRYPTO_RATCHET_H

#include "common/compiler.h"
#include "crypto/keys.h"
#include "crypto/x3dh.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATCHET_STATE_VERSION 1  /* first byte of ratchet_serialize's output */
#define RATCHET_MAX_CHAINS 5     /* receiving chains kept, as libsignal's MAX_RECEIVER_CHAINS */
#define RATCHET_MAX_SKIP 2000    /* a message may be at most this far ahead in its chain */
#define RATCHET_MAX_SKIPPED 2000 /* skipped message keys kept over all chains, oldest dropped */

/* One session with one peer device. Its state lives in sodium_malloc'ed
 * memory and is wiped on ratchet_free. Belongs to one thread at a time. */
struct ratchet;

/* What an encrypted message is framed as. */
enum ratchet_msg_type {
    RATCHET_MSG_WHISPER = 2, /* SignalMessage (libsignal's CIPHERTEXT_SIGNAL_TYPE) */
    RATCHET_MSG_PREKEY = 3,  /* PreKeySignalMessage (CIPHERTEXT_PREKEY_TYPE) */
};

/* Start a session as the initiator on a peer's bundle (borrowed): make a
 * base key, run x3dh_initiate (which checks the signed prekey's signature)
 * and take the first DH ratchet step, as libsignal's session builder and
 * ratcheting_session_alice_initialize do. Until a message from the peer
 * decrypts, ratchet_encrypt frames each message as a PreKeySignalMessage
 * carrying our_registration_id, the prekey ids and the base key.
 * their_registration_id is kept for the caller. Returns 0 and *out (free
 * with ratchet_free), or PARLEY_EINVAL (NULL argument), the errors of
 * x3dh_initiate (PARLEY_EBAD_SIGNATURE, PARLEY_EBAD_KEY), PARLEY_ENOMEM,
 * PARLEY_EINTERNAL. */
PL_NODISCARD int ratchet_initiate(const struct keys_pair *our_identity,
                                  uint32_t our_registration_id, const struct x3dh_bundle *bundle,
                                  uint32_t their_registration_id, struct ratchet **out);

/* The responder's prekey store: set *out to our key pair (borrowed; it must
 * stay valid until ratchet_decrypt_prekey returns) for the signed prekey
 * (is_signed) or one-time prekey with this id, and return 0; or return
 * PARLEY_ENOTFOUND when there is none (or another PARLEY_E* code, passed
 * through). */
typedef int ratchet_prekey_cb(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out);

/* The responder's own keys, borrowed for one call. */
struct ratchet_responder {
    const struct keys_pair *identity;
    uint32_t registration_id;
    ratchet_prekey_cb *lookup;
    void *arg;
};

/* Decrypt a PreKeySignalMessage (in, len: untrusted, borrowed). When
 * *session is a session this message's base key and identity already
 * started (the initiator sends several before our reply), it decrypts with
 * that session and looks nothing up. Otherwise it looks up the signed
 * prekey and the one-time prekey the message names, runs x3dh_respond,
 * decrypts the inner message on the new session and, only then, frees
 * *session (may be NULL) and replaces it. On success returns 0 with the
 * plaintext in *out, *out_len (malloc'ed, free with ratchet_plaintext_free)
 * and *used_prekey_id set to the one-time prekey consumed (the caller
 * deletes it) with *used_prekey true, or *used_prekey false when none was.
 * The caller checks ratchet_their_identity before trusting the session.
 * Errors: PARLEY_EINVAL, the parser's (PARLEY_EMALFORMED, PARLEY_EVERSION,
 * PARLEY_EBAD_KEY), the lookup's (PARLEY_ENOTFOUND), those of
 * ratchet_decrypt; *session and all outputs are then unchanged. */
PL_NODISCARD int ratchet_decrypt_prekey(struct ratchet **session,
                                        const struct ratchet_responder *self, const uint8_t *in,
                                        size_t len, uint8_t **out, size_t *out_len,
                                        bool *used_prekey, uint32_t *used_prekey_id);

/* Encrypt pt (pt_len bytes, borrowed; may be empty) with the next message
 * key of the sending chain: AES-256-CBC with PKCS#7 padding, framed and
 * MACed as a SignalMessage, wrapped in a PreKeySignalMessage while the
 * session is the initiator's and unanswered. Returns 0 with the message in
 * *out, *out_len (malloc'ed, free with free()) and its framing in *type, or
 * PARLEY_EINVAL (NULL argument), PARLEY_ETOOBIG (the message would exceed
 * SIGMSG_MAX_LEN, or the chain's counter is exhausted), PARLEY_ENOMEM,
 * PARLEY_EINTERNAL; the session then is unchanged. */
PL_NODISCARD int ratchet_encrypt(struct ratchet *s, const uint8_t *pt, size_t pt_len, uint8_t **out,
                                 size_t *out_len, enum ratchet_msg_type *type);

/* Decrypt a SignalMessage (in, len: untrusted, borrowed). A new ratchet key
 * takes a DH ratchet step (the oldest of RATCHET_MAX_CHAINS receiving
 * chains and its skipped keys are dropped); message keys skipped over are
 * kept for later (RATCHET_MAX_SKIPPED in all, oldest dropped); each message
 * key is used once. The MAC is checked before anything is decrypted.
 * Returns 0 with the plaintext in *out, *out_len (malloc'ed, free with
 * ratchet_plaintext_free), or, leaving the session exactly as it was:
 * PARLEY_EINVAL (NULL argument), the parser's (PARLEY_EMALFORMED,
 * PARLEY_EVERSION, PARLEY_EBAD_KEY), PARLEY_EBAD_SIGNATURE (the MAC does
 * not match: tampering, another session, or a ratchet key whose chain was
 * dropped), PARLEY_EBAD_NONCE (a counter whose key was used or dropped: a
 * replay), PARLEY_ETOOBIG (more than RATCHET_MAX_SKIP ahead in its chain),
 * PARLEY_EMALFORMED (the MAC matches but the padding is wrong),
 * PARLEY_EBAD_KEY (a low-order ratchet key), PARLEY_ENOMEM,
 * PARLEY_EINTERNAL. */
PL_NODISCARD int ratchet_decrypt(struct ratchet *s, const uint8_t *in, size_t len, uint8_t **out,
                                 size_t *out_len);

/* Wipe and free a plaintext from ratchet_decrypt*; NULL is a no-op. */
void ratchet_plaintext_free(uint8_t *pt, size_t len);

/* The peer's identity key; valid until the session changes or is freed. */
const struct keys_public *ratchet_their_identity(const struct ratchet *s);

/* The peer's registration id (from the bundle's caller or the
 * PreKeySignalMessage). */
uint32_t ratchet_their_registration_id(const struct ratchet *s);

/* True while the initiator still wraps messages in PreKeySignalMessages. */
bool ratchet_is_pending_prekey(const struct ratchet *s);

/* Bytes ratchet_serialize writes for s now. */
size_t ratchet_serialized_len(const struct ratchet *s);

/* Write the whole state of s into out (out_cap bytes): a secret, which the
 * caller stores in a 0600 file and wipes. Returns 0 and *out_len, or
 * PARLEY_EINVAL (NULL argument), PARLEY_ETOOBIG (out_cap too small). */
PL_NODISCARD int ratchet_serialize(const struct ratchet *s, uint8_t *out, size_t out_cap,
                                   size_t *out_len);

/* Rebuild a session from ratchet_serialize's bytes (borrowed; the caller
 * wipes them). Refuses anything it would not write: another version byte,
 * a wrong length, unknown flag bits, counts above the limits, a sending key
 * pair whose halves do not match, skipped keys of no kept chain or not
 * behind it. Returns 0 and *out, or PARLEY_EINVAL (NULL argument),
 * PARLEY_EVERSION, PARLEY_EMALFORMED, PARLEY_ENOMEM, PARLEY_EINTERNAL. */
PL_NODISCARD int ratchet_deserialize(const uint8_t *in, size_t len, struct ratchet **out);

/* Wipe and free a session; NULL is a no-op. */
void ratchet_free(struct ratchet *s);

#endif
