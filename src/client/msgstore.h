/* SPDX-License-Identifier: MIT */
/* The device's local store of secret-chat messages: one 0600 file per
 * message in the chat's 0700 directory, named by (message id, sender), so
 * that a message is found, deduplicated and deleted (self-destruct) on its
 * own. A message is first stored "pending" (taken from the server, not yet
 * handed to the application) and then marked delivered by a rename.
 * Format: docs/internals/client.md. Knows nothing of the network or of
 * cryptography. */
#ifndef PARLEY_CLIENT_MSGSTORE_H
#define PARLEY_CLIENT_MSGSTORE_H

#include "common/compiler.h"
#include "common/text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSGSTORE_TEXT_MAX (4 * 4096) /* bytes: PARLEY_TEXT_MAX_CHARS of UTF-8 */

/* One message. text is borrowed for msgstore_put; from msgstore_get it
 * points into a buffer the caller frees with msgstore_text_free. */
struct msgstore_msg {
    uint64_t message_id;
    uint64_t from_user_id;
    uint64_t to_user_id;
    int64_t date;          /* unix seconds, server clock */
    uint32_t timer_s;      /* self-destruct timer when sent; 0: none */
    bool identity_changed; /* the sender's key was changed and not accepted */
    char from[USERNAME_MAX + 1];
    char to[USERNAME_MAX + 1];
    const char *text; /* UTF-8, NUL-terminated */
    size_t text_len;
};

enum msgstore_state {
    MSGSTORE_NONE,      /* not stored */
    MSGSTORE_PENDING,   /* stored, not yet delivered */
    MSGSTORE_DELIVERED, /* stored and delivered */
};

/* Where (message_id, from_user_id) stands in the chat directory dir.
 * Returns 0 and *out, or PARLEY_EIO. */
PL_NODISCARD int msgstore_state(const char *dir, uint64_t message_id, uint64_t from_user_id,
                                enum msgstore_state *out);

/* Stores m in dir (created 0700 if missing; its parent must exist) as
 * pending or delivered, atomically, mode 0600. Returns 0, or PARLEY_EINVAL
 * (text too long, a name not a username), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_put(const char *dir, const struct msgstore_msg *m, bool delivered);

/* Reads a stored message (pending or delivered) into *out. Returns 0, or
 * PARLEY_ENOTFOUND, PARLEY_ECONFIG (malformed file), PARLEY_EIO,
 * PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_get(const char *dir, uint64_t message_id, uint64_t from_user_id,
                              struct msgstore_msg *out);

/* Wipes and frees the text of a message from msgstore_get; NULL text: no-op. */
void msgstore_text_free(struct msgstore_msg *m);

/* Marks a pending message delivered. Returns 0 (also when it already was),
 * or PARLEY_ENOTFOUND, PARLEY_EIO. */
PL_NODISCARD int msgstore_mark_delivered(const char *dir, uint64_t message_id,
                                         uint64_t from_user_id);

/* Deletes a stored message, pending or delivered. Returns 0 (also when it
 * was not stored) or PARLEY_EIO. */
PL_NODISCARD int msgstore_remove(const char *dir, uint64_t message_id, uint64_t from_user_id);

#endif
