/* SPDX-License-Identifier: MIT */
/* A device's home directory: its Ed25519 key, account, sync position,
 * prekey counters and pinned server certificates, as small line-based files (formats in
 * docs/internals/client.md). Every write is atomic (temporary file, fsync,
 * rename, fsync of the directory); files are 0600 in a 0700 directory.
 * Knows nothing of the network. */
#ifndef PARLEY_CLIENT_HOME_H
#define PARLEY_CLIENT_HOME_H

#include "common/compiler.h"

#include <parley.h>
#include <stddef.h>
#include <stdint.h>

#define HOME_SECRET_KEY_LEN 64 /* libsodium's Ed25519 secret key: seed || public key */
#define HOME_PUBLIC_KEY_LEN 32
#define HOME_FILE_MAX 65536    /* largest state file read, bytes */

struct home_account {
    char server[256];                        /* the URL signed up on */
    uint64_t user_id;
    uint64_t device_id;
    char username[PARLEY_USERNAME_MAX + 1];  /* case-folded, without '@' */
};

/* Creates dir (mode 0700; parents must exist) unless it exists as a
 * directory. Returns 0, or PARLEY_EIO. */
PL_NODISCARD int home_init(const char *dir);

/* Writes path+name as "<dir>/<name>" into buf. Returns 0, or PARLEY_EINVAL
 * when it does not fit. */
PL_NODISCARD int home_path(char *buf, size_t size, const char *dir, const char *name);

/* Replaces the file at path with len bytes of data, atomically, mode 0600.
 * Returns 0, or PARLEY_EIO (the old file is then unchanged). */
PL_NODISCARD int home_write_file(const char *path, const void *data, size_t len);

/* Reads the whole file at path (at most HOME_FILE_MAX bytes) into a
 * NUL-terminated malloc'ed buffer owned by the caller. Returns 0, or
 * PARLEY_ENOTFOUND (no file), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int home_read_file(const char *path, char **out, size_t *len);

/* The account file. load: PARLEY_ENOACCOUNT when missing, PARLEY_ECONFIG
 * when malformed, PARLEY_EIO, PARLEY_ENOMEM. save: PARLEY_EINVAL (a field
 * too long or holding a newline), PARLEY_EIO. */
PL_NODISCARD int home_load_account(const char *dir, struct home_account *out);
PL_NODISCARD int home_save_account(const char *dir, const struct home_account *a);

/* The device key. load sets *sk to HOME_SECRET_KEY_LEN bytes from
 * sodium_malloc, owned by the caller (free with home_key_free); returns
 * PARLEY_ENOACCOUNT when there is no key, PARLEY_ECONFIG when malformed,
 * PARLEY_EIO, PARLEY_ENOMEM. save: PARLEY_EIO. */
PL_NODISCARD int home_load_key(const char *dir, unsigned char **sk);
PL_NODISCARD int home_save_key(const char *dir, const unsigned char *sk);
/* Wipes and frees a key from home_load_key or home_key_new; NULL: no-op. */
void home_key_free(unsigned char *sk);
/* A fresh key pair in sodium_malloc'ed memory. PARLEY_ENOMEM. */
PL_NODISCARD int home_key_new(unsigned char **sk);

/* The local side of this device's prekey stock, for secret chats: which
 * one-time prekey id comes next (ids are never reused while the counter
 * lasts) and which signed prekey is current, made when. */
struct home_prekeys {
    uint32_t next_prekey_id;    /* 1..HOME_PREKEY_ID_MAX */
    uint32_t signed_prekey_id;  /* 0: none made yet */
    int64_t signed_prekey_date; /* unix seconds it was made */
};
#define HOME_PREKEY_ID_MAX 0xFFFFFFu /* Signal's prekey ids are 24-bit */

/* The prekeys file: {1, 0, 0} when missing. load: PARLEY_ECONFIG (a
 * missing, repeated or out-of-range field, a cut-short line), PARLEY_EIO,
 * PARLEY_ENOMEM. save: PARLEY_EIO. */
PL_NODISCARD int home_load_prekeys(const char *dir, struct home_prekeys *out);
PL_NODISCARD int home_save_prekeys(const char *dir, const struct home_prekeys *st);

/* The sync position: 0 when the file is missing. load: PARLEY_ECONFIG,
 * PARLEY_EIO, PARLEY_ENOMEM. save: PARLEY_EIO. */
PL_NODISCARD int home_load_pts(const char *dir, uint64_t *out);
PL_NODISCARD int home_save_pts(const char *dir, uint64_t pts);

#endif
