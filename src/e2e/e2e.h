/* SPDX-License-Identifier: MIT */
/* The state directory of parley-e2e: our identity and registration, signed
 * and one-time prekeys by id, and one ratchet session per peer device, each
 * in its own file of mode 0600 written atomically (temp file, fsync,
 * rename). The cryptography is src/crypto's; the command line and JSON are
 * parley_e2e_main.c's. Layout: docs/internals/e2e.md. */
#ifndef PARLEY_E2E_E2E_H
#define PARLEY_E2E_E2E_H

#include "common/compiler.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "crypto/xeddsa.h"

#include <stdbool.h>
#include <stdint.h>

#define E2E_PEER_NAME_MAX 64 /* peer names: 1..64 of [A-Za-z0-9._-], not starting with '.' */

/* An open state directory; the path is borrowed from the caller. */
struct e2e_dir {
    const char *path;
};

/* Our identity: key pair (free with keys_free) and ids. */
struct e2e_identity {
    struct keys_pair *key;
    uint32_t registration_id;
    uint32_t device_id;
};

/* True if name is a valid peer name (safe as part of a file name). */
bool e2e_is_peer_name(const char *name);

/* Create the directory (mode 0700) if it does not exist, then write a fresh
 * identity with these ids. Returns 0 and fills *out (the caller frees
 * out->key), or PARLEY_EEXIST (already initialised), PARLEY_EIO, or the
 * errors of keys_generate. */
PL_NODISCARD int e2e_init(const struct e2e_dir *d, uint32_t registration_id, uint32_t device_id,
                          struct e2e_identity *out);

/* Load the identity. Returns 0 and *out, or PARLEY_ENOACCOUNT (not
 * initialised), PARLEY_EMALFORMED (a damaged file), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int e2e_identity_load(const struct e2e_dir *d, struct e2e_identity *out);

/* Load the signed prekey with this id; when create is true and there is
 * none, make one, sign its 33-byte public form with identity and store
 * both. Returns 0, *key (free with keys_free) and sig, or PARLEY_ENOTFOUND
 * (none and !create), PARLEY_EMALFORMED, PARLEY_EIO, PARLEY_ENOMEM,
 * PARLEY_EINTERNAL. */
PL_NODISCARD int e2e_signed_prekey(const struct e2e_dir *d, uint32_t id, bool create,
                                   const struct keys_pair *identity, struct keys_pair **key,
                                   uint8_t sig[XEDDSA_SIGNATURE_LEN]);

/* As e2e_signed_prekey, for a one-time prekey (no signature). */
PL_NODISCARD int e2e_prekey(const struct e2e_dir *d, uint32_t id, bool create,
                            struct keys_pair **key);

/* Remove the one-time prekey with this id (used up). Returns 0 (also when
 * it was already gone) or PARLEY_EIO. */
PL_NODISCARD int e2e_prekey_remove(const struct e2e_dir *d, uint32_t id);

/* Remove the signed prekey with this id (replaced long enough ago).
 * Returns 0 (also when it was already gone) or PARLEY_EIO. */
PL_NODISCARD int e2e_signed_prekey_remove(const struct e2e_dir *d, uint32_t id);

/* Load the session with peer (a valid peer name) and device. Returns 0 and
 * *out (free with ratchet_free), or PARLEY_ENOTFOUND (no session),
 * PARLEY_EIO, or ratchet_deserialize's errors. */
PL_NODISCARD int e2e_session_load(const struct e2e_dir *d, const char *peer, uint32_t device,
                                  struct ratchet **out);

/* Store s (borrowed) as the session with peer and device, replacing any.
 * Returns 0, or PARLEY_EIO, PARLEY_ENOMEM, PARLEY_EINTERNAL; the previous
 * file is then unchanged. */
PL_NODISCARD int e2e_session_save(const struct e2e_dir *d, const char *peer, uint32_t device,
                                  const struct ratchet *s);

/* Remove the session with peer and device (the device is gone). Returns 0
 * (also when there was none), or PARLEY_EINVAL (bad peer name), PARLEY_EIO. */
PL_NODISCARD int e2e_session_remove(const struct e2e_dir *d, const char *peer, uint32_t device);

/* A responder's prekey store over the state directory, for
 * ratchet_decrypt_prekey (pass e2e_lookup as the callback and the struct
 * as its argument): each call loads the signed or one-time prekey with that
 * id (PARLEY_ENOTFOUND when there is none), kept until the next call of
 * the same kind or e2e_lookup_release. */
struct e2e_lookup {
    const struct e2e_dir *dir;
    const struct keys_pair *identity; /* borrowed */
    struct keys_pair *signed_prekey;  /* owned: the last one loaded */
    struct keys_pair *prekey;
};

PL_NODISCARD int e2e_lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out);

/* Frees the keys l loaded; l can be used again. */
void e2e_lookup_release(struct e2e_lookup *l);

#endif
