/* SPDX-License-Identifier: MIT */
/* What secret.c (lock, identity, trust, sessions), secret_send.c and
 * secret_recv.c share; nothing else includes it. What parley.c and
 * prekeys.c see of secret chats is in parley_int.h. */
#ifndef PARLEY_CLIENT_SECRET_INT_H
#define PARLEY_CLIENT_SECRET_INT_H

#include "msgstore.h"
#include "parley_int.h"
#include "trust.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratchet;

#define SECRET_DIR "secret"                   /* HOME/secret/NAME holds the chat with NAME */
#define E2E_PEER_LEN 32                       /* "u" + 20 digits + ".prev" + NUL */
#define RECEIPT_IDS_MAX MSGSTORE_EXPIRING_MAX /* message ids in one receipt */

/* secret.c */

/* True when name (normalized) is this account's. */
bool secret__is_me(const struct parley *p, const char *name);

/* Writes the e2e peer name of account user_id's current sessions to out. */
void secret__e2e_peer(uint64_t user_id, char out[E2E_PEER_LEN]);

/* Writes the e2e peer name of account user_id's previous sessions to out. */
void secret__e2e_peer_prev(uint64_t user_id, char out[E2E_PEER_LEN]);

/* Writes HOME/secret/NAME to out; PARLEY_EINVAL when it does not fit. */
PL_NODISCARD int secret__chat_dir(const struct parley *p, const char *name, char *out, size_t size);

/* secret__chat_dir, creating the directory (0700) and its parent when
 * missing; PARLEY_EINVAL, PARLEY_EIO. */
PL_NODISCARD int secret__make_chat_dir(const struct parley *p, const char *name, char *out,
                                       size_t size);

/* Loads the trust record of account name into t (missing: empty; another
 * user_id than recorded: empty, devices distrusted); 0 or a load error. */
PL_NODISCARD int secret__trust_get(const struct parley *p, const char *name, uint64_t user_id,
                                   struct trust *t);

/* Saves t as the trust record of account name; 0 or an error, logged (so
 * a caller may ignore it). */
int secret__trust_put(const struct parley *p, const char *name, const struct trust *t);

/* Marks device_id removed in t (its keys kept) and removes its current and
 * previous sessions (a failure is logged). */
void secret__forget_device(struct parley *p, struct trust *t, uint64_t device_id);

/* GetBundleRequest for account name (device_id 0: every device); 0 and
 * *out (frame_free) with at least one bundle, PARLEY_EPROTO, or a call error. */
PL_NODISCARD int secret__get_bundles(struct parley *p, const char *name, uint64_t device_id,
                                     PlFrame **out);

/* Saves old as the previous session with the device; 0 or an e2e error. */
PL_NODISCARD int secret__archive_session(struct parley *p, uint64_t user_id, uint64_t device_id,
                                         const struct ratchet *old);

/* Verifies every bundle of r, then records each key in t and saves a new
 * session per device; 0, PARLEY_EPROTO, PARLEY_EBAD_SIGNATURE or a local error. */
PL_NODISCARD int secret__start_sessions(struct parley *p, const struct e2e_identity *id,
                                        const char *name, const Parley__V1__GetBundleResponse *r,
                                        struct trust *t);

/* secret_send.c */

/* PARLEY_EPROTO when the DeviceMismatch lists of e (may be NULL) name one
 * device as both stale and missing; else 0. */
PL_NODISCARD int secret__check_mismatch(const Parley__V1__Error *e);

/* Sends each chat's owed read receipts, marking them sent; 0 or the first
 * damaged index's error. Needs the secret-state lock. */
PL_NODISCARD int secret__send_receipts(struct parley *p);

/* secret_recv.c */

/* Deletes every chat's expired messages, removals to d (may be NULL); 0 or
 * the first damaged chat's error. Needs the secret-state lock. */
PL_NODISCARD int secret__expire(struct parley *p, struct delivery *d);

#endif
