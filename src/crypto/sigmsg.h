/* SPDX-License-Identifier: MIT */
/* Signal's two message formats, byte for byte as libsignal-protocol-c
 * writes and reads them (protocol.c, message version 3): SignalMessage
 * (version byte, protobuf, truncated HMAC-SHA256) and PreKeySignalMessage
 * (version byte, protobuf holding the X3DH inputs and a SignalMessage).
 * This module frames, parses and MACs; the keys come from the ratchet, and
 * decrypting is the ratchet's. Rules: docs/internals/crypto.md. */
#ifndef PARLEY_CRYPTO_SIGMSG_H
#define PARLEY_CRYPTO_SIGMSG_H

#include "common/compiler.h"
#include "crypto/keys.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGMSG_VERSION 3          /* Signal's CIPHERTEXT_CURRENT_VERSION */
#define SIGMSG_VERSION_BYTE 0x33  /* (version << 4) | current version, as written */
#define SIGMSG_MAC_LEN 8          /* truncated HMAC-SHA256 after a SignalMessage */
#define SIGMSG_MAC_KEY_LEN 32     /* the ratchet's message MAC key */
#define SIGMSG_MAX_LEN (1u << 20) /* any framed message above this is refused */

/* A SignalMessage's fields. Filled by sigmsg_decode, which allocates
 * ciphertext (release with sigmsg_clear); for sigmsg_encode the caller
 * points ciphertext at its own bytes. */
struct sigmsg {
    struct keys_public ratchet_key; /* sender's current ratchet public key */
    uint32_t counter;               /* message index in the sender's chain */
    uint32_t previous_counter;      /* length of the sender's previous chain */
    uint8_t *ciphertext;            /* AES-256-CBC output; not a secret */
    size_t ciphertext_len;
};

/* A PreKeySignalMessage's fields. sigmsg_prekey_decode allocates message
 * (the framed inner SignalMessage, kept whole because its MAC covers it)
 * and inner.ciphertext; release with sigmsg_prekey_clear. */
struct sigmsg_prekey {
    uint32_t registration_id;       /* sender's; 0 when absent, as libsignal reads it */
    bool has_prekey_id;             /* false: X3DH without a one-time prekey */
    uint32_t prekey_id;             /* receiver's one-time prekey, if has_prekey_id */
    uint32_t signed_prekey_id;      /* receiver's signed prekey */
    struct keys_public base_key;    /* sender's X3DH ephemeral key */
    struct keys_public identity_key; /* sender's identity key */
    uint8_t *message;               /* framed SignalMessage, MAC included */
    size_t message_len;
    struct sigmsg inner;            /* message, parsed */
};

/* Bytes sigmsg_encode will write for m: 1 + protobuf + SIGMSG_MAC_LEN. */
size_t sigmsg_encoded_len(const struct sigmsg *m);

/* Frame m (borrowed) as a SignalMessage into out (out_cap bytes) and MAC
 * it with mac_key over the sender's and receiver's identity keys, as
 * libsignal's signal_message_create does. Returns 0 and *out_len, or
 * PARLEY_EINVAL (NULL argument, ciphertext NULL with a non-zero length),
 * PARLEY_ETOOBIG (out_cap below sigmsg_encoded_len(m), or the result above
 * SIGMSG_MAX_LEN), PARLEY_EINTERNAL (protobuf-c packed a different length).
 * out is unspecified on error. Any thread. */
PL_NODISCARD int sigmsg_encode(const struct sigmsg *m, const uint8_t mac_key[SIGMSG_MAC_KEY_LEN],
                               const struct keys_public *sender_identity,
                               const struct keys_public *receiver_identity, uint8_t *out,
                               size_t out_cap, size_t *out_len);

/* Parse a framed SignalMessage from untrusted input (borrowed). Accepts
 * what libsignal's signal_message_deserialize accepts for version 3:
 * length above 1 + SIGMSG_MAC_LEN, version nibble (high 4 bits of byte 0)
 * 3, a protobuf with ratchetKey, counter and ciphertext present (an absent
 * previousCounter reads 0), ratchetKey in the 33-byte form. The MAC is not
 * checked here (sigmsg_verify_mac, once the keys are known). Returns 0 and
 * fills *out (free with sigmsg_clear), or PARLEY_EINVAL (NULL argument),
 * PARLEY_EMALFORMED (too short or too long, not a protobuf, a required
 * field missing), PARLEY_EVERSION (version nibble not 3), PARLEY_EBAD_KEY
 * (ratchet key not in the 33-byte form), PARLEY_ENOMEM. *out is untouched
 * on error. */
PL_NODISCARD int sigmsg_decode(const uint8_t *in, size_t len, struct sigmsg *out);

/* Check the MAC of a framed SignalMessage (in, len: as received) under
 * mac_key and the two identity keys, in constant time. Returns 0 when it
 * matches, PARLEY_EBAD_SIGNATURE when not, PARLEY_EMALFORMED when len is
 * at most 1 + SIGMSG_MAC_LEN, PARLEY_EINVAL on a NULL argument. */
PL_NODISCARD int sigmsg_verify_mac(const uint8_t *in, size_t len,
                                   const uint8_t mac_key[SIGMSG_MAC_KEY_LEN],
                                   const struct keys_public *sender_identity,
                                   const struct keys_public *receiver_identity);

/* Release what sigmsg_decode allocated and zero m; NULL is a no-op. */
void sigmsg_clear(struct sigmsg *m);

/* Bytes sigmsg_prekey_encode will write for m (m->message is framed). */
size_t sigmsg_prekey_encoded_len(const struct sigmsg_prekey *m);

/* Frame m as a PreKeySignalMessage into out, as libsignal's
 * pre_key_signal_message_create does; m->message (a framed SignalMessage,
 * from sigmsg_encode) is copied in as it is and m->inner is ignored.
 * Returns 0 and *out_len, or PARLEY_EINVAL (NULL argument or message),
 * PARLEY_ETOOBIG (out too small or result above SIGMSG_MAX_LEN),
 * PARLEY_EINTERNAL. Any thread. */
PL_NODISCARD int sigmsg_prekey_encode(const struct sigmsg_prekey *m, uint8_t *out, size_t out_cap,
                                      size_t *out_len);

/* Parse a framed PreKeySignalMessage from untrusted input (borrowed), as
 * libsignal's pre_key_signal_message_deserialize: version nibble 3; a
 * protobuf with signedPreKeyId, baseKey, identityKey and message present
 * (registrationId and preKeyId optional); both keys in the 33-byte form;
 * message a SignalMessage sigmsg_decode accepts, of the same version.
 * Returns 0 and fills *out (free with sigmsg_prekey_clear), or the errors
 * of sigmsg_decode; *out is untouched on error. */
PL_NODISCARD int sigmsg_prekey_decode(const uint8_t *in, size_t len, struct sigmsg_prekey *out);

/* Release what sigmsg_prekey_decode allocated and zero m; NULL is a no-op. */
void sigmsg_prekey_clear(struct sigmsg_prekey *m);

#endif
