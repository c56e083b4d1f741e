/* SPDX-License-Identifier: MIT */
/* Trust on first use for secret chats: per peer account, the identity key
 * each of its devices showed (current) and the one the user accepted,
 * kept in one small 0600 file (format in docs/internals/client.md). A
 * device whose current key is not the accepted one is "changed": sending
 * to that account stays blocked until the user accepts. Knows nothing of
 * the network or of sessions. */
#ifndef PARLEY_CLIENT_TRUST_H
#define PARLEY_CLIENT_TRUST_H

#include "common/compiler.h"
#include "crypto/keys.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRUST_DEVICES_MAX 100 /* entries, as many devices as one secret send can reach */

struct trust_device {
    uint64_t device_id;
    struct keys_public current; /* the key the device showed last */
    bool has_accepted;          /* false: the user never accepted a key for it */
    struct keys_public accepted;
    bool removed; /* no longer a device of the account (a tombstone): its keys are kept, so
                     that the same id coming back with another key is seen as changed */
};

/* One peer account's devices, in the order they were first seen,
 * removed ones included. */
struct trust {
    uint64_t user_id;
    bool distrust_new; /* new devices are not accepted either: the name passed to another
                          account (not saved: its devices are saved unaccepted) */
    size_t n;
    struct trust_device dev[TRUST_DEVICES_MAX];
};

/* What trust_see found. */
enum trust_verdict {
    TRUST_FIRST_USE, /* a device not seen before: its key is recorded and accepted
                        (not accepted, and TRUST_CHANGED, with distrust_new) */
    TRUST_SAME,      /* the key recorded as current */
    TRUST_CHANGED,   /* another key than the current one: recorded, not accepted */
};

/* Empties t for the account user_id. */
void trust_init(struct trust *t, uint64_t user_id);

/* Reads the trust file at path into *out. Returns 0, or PARLEY_ENOTFOUND
 * (no file), PARLEY_ECONFIG (present but malformed: a cut-short line, an
 * unknown or repeated line, a bad key or number, too many devices),
 * PARLEY_EIO, PARLEY_ENOMEM. *out is written only on success. */
PL_NODISCARD int trust_load(const char *path, struct trust *out);

/* Replaces the file at path with t, atomically, mode 0600. Returns 0, or
 * PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int trust_save(const char *path, const struct trust *t);

/* The entry of device, or NULL. Valid until t changes. */
struct trust_device *trust_find(struct trust *t, uint64_t device_id);

/* Records that device showed key, and that it is a device of the account
 * again if it was removed. A new device is trusted on first use (unless
 * t->distrust_new); a key other than the current one (also of a removed
 * device) becomes current but not accepted. A new device takes the slot of
 * the oldest removed one when t is full. Returns 0 and *verdict, or
 * PARLEY_EPROTO (t already holds TRUST_DEVICES_MAX devices that are not
 * removed: more than the protocol allows). */
PL_NODISCARD int trust_see(struct trust *t, uint64_t device_id, const struct keys_public *key,
                           enum trust_verdict *verdict);

/* True if d's current key is not one the user accepted. */
bool trust_is_changed(const struct trust_device *d);

/* True if any device of t that is not removed is changed. */
bool trust_any_changed(const struct trust *t);

/* How many devices of t are not removed. */
size_t trust_count(const struct trust *t);

/* The device that parley_verify shows: of the changed devices, else of
 * all, the one with the lowest id; removed devices left out. NULL when
 * there is none. Valid until t changes. */
struct trust_device *trust_shown(struct trust *t);

/* Accepts d's current key. */
void trust_accept(struct trust_device *d);

/* Marks device removed (no longer a device of the account) and keeps its
 * keys; absent: no-op. */
void trust_remove(struct trust *t, uint64_t device_id);

#endif
