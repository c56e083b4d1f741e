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
#define MSGSTORE_TIMER_MAX 604800    /* seconds: a secret chat's timer is at most a week */
#define MSGSTORE_EXPIRING_MAX 1000   /* messages of one chat whose timer runs at once */

/* One message. text is borrowed for msgstore_put; from msgstore_get it
 * points into a buffer the caller frees with msgstore_text_free. */
struct msgstore_msg {
    uint64_t message_id;
    uint64_t from_user_id;
    uint64_t to_user_id;
    int64_t date;          /* unix seconds, server clock */
    uint32_t timer_s;      /* self-destruct timer when sent; 0: none */
    int64_t expires;       /* unix seconds it is deleted (from the expiry index; ignored by
                              msgstore_put); 0: not scheduled */
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

/* Deletes a stored message, pending or delivered: its file is overwritten
 * with zeros and fsync'd before it is unlinked, and the directory fsync'd.
 * Returns 0 (also when it was not stored) or PARLEY_EIO. */
PL_NODISCARD int msgstore_remove(const char *dir, uint64_t message_id, uint64_t from_user_id);

/* Self-destruct timers. The chat's timer is the file "timer" in dir; the
 * expiry of each message whose timer runs is a line of the chat's index
 * "expiring", so that a check reads one small file per chat and a message
 * file holding plaintext is never rewritten (the old copy would stay in a
 * freed block). Each index entry also records whether the read receipt
 * for it is still owed to the sender. */

/* The chat's timer: 0 when dir has no timer file. Returns 0 and *out, or
 * PARLEY_ECONFIG (damaged file), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_timer_get(const char *dir, uint32_t *out);

/* Records the chat's timer (0..MSGSTORE_TIMER_MAX) in dir (created 0700 if
 * missing), atomically, mode 0600. Returns 0, or PARLEY_EINVAL, PARLEY_EIO. */
PL_NODISCARD int msgstore_timer_set(const char *dir, uint32_t timer_s);

/* Schedules the stored message (message_id, from_user_id) for deletion at
 * expires (> 0); an earlier expiry already recorded is kept. With
 * receipt_owed, a read receipt for it is owed until msgstore_receipts_sent.
 * Returns 0, or PARLEY_ENOTFOUND (not stored), PARLEY_EBUSY (the chat has
 * MSGSTORE_EXPIRING_MAX messages waiting; owed receipts of messages
 * already deleted do not count), PARLEY_ECONFIG (damaged index),
 * PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_set_expiry(const char *dir, uint64_t message_id, uint64_t from_user_id,
                                     int64_t expires, bool receipt_owed);

/* Records that a read receipt is owed for (message_id, from_user_id),
 * already deleted (read while MSGSTORE_EXPIRING_MAX messages waited). Owed
 * receipts of deleted messages are kept apart from the timers, at most
 * MSGSTORE_EXPIRING_MAX of them: beyond, the oldest is given up. Returns 0,
 * or PARLEY_ECONFIG (damaged index), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_owe_receipt(const char *dir, uint64_t message_id, uint64_t from_user_id);

/* Deletes every message of dir whose expiry is at or before now (the file
 * overwritten, then unlinked; the directory fsync'd). Returns 0 and
 * *ids and *n, the message ids deleted (malloc'ed, caller frees; NULL when
 * none), and *next, the earliest expiry still waiting (0: none); or
 * PARLEY_ECONFIG (damaged index), PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_expire(const char *dir, int64_t now, uint64_t **ids, size_t *n,
                                 int64_t *next);

/* The message ids of dir whose read receipt is owed (malloc'ed, caller
 * frees; NULL when none), at most 2 * MSGSTORE_EXPIRING_MAX. Returns 0, or
 * PARLEY_ECONFIG, PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int msgstore_receipts_owed(const char *dir, uint64_t **ids, size_t *n);

/* Records that the receipts for ids were sent. Returns 0, or the errors
 * of msgstore_receipts_owed. */
PL_NODISCARD int msgstore_receipts_sent(const char *dir, const uint64_t *ids, size_t n);

#endif
