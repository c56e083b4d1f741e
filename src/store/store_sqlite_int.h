/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of the SQLite backend of store.h: the
 * store's state and prepared statements, the helpers of the writer thread,
 * and the operations it dispatches. Everything here runs on the writer
 * thread unless a comment says otherwise. Not part of the store contract. */
#ifndef PARLEY_STORE_SQLITE_INT_H
#define PARLEY_STORE_SQLITE_INT_H

#include "common/compiler.h"
#include "common/u64map.h"
#include "store/store.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define MODULE "store"
/* Largest text accepted: the protocol's character limit in 4-byte UTF-8. */
#define TEXT_MAX_BYTES ((size_t)PARLEY_TEXT_MAX_CHARS * 4)
/* Result scratch above this is released after use rather than kept. */
#define SCRATCH_KEEP_BYTES (1024 * 1024)

/* updates.kind: a new message (message_id), messages purged (ids: 8 bytes
 * per id, little-endian), a chat's auto-delete set by this account or by
 * the peer (message_id: the peer, arg: ttl_s). */
#define UPD_MESSAGE 0
#define UPD_DELETED 1
#define UPD_TTL_SELF 2
#define UPD_TTL_PEER 3

enum stmt_id {
    ST_BEGIN_WRITE,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_USER_INSERT,
    ST_USER_BY_NAME,
    ST_USER_LOAD,
    ST_DEVICE_INSERT,
    ST_DEVICE_GET,
    ST_DEVICE_SYNC_PTS,
    ST_MSG_BY_CLIENT_ID,
    ST_MSG_INSERT,
    ST_UPDATE_INSERT,
    ST_SYNC_PAGE,
    ST_HISTORY_PAGE,
    ST_IDENTITY_GET,
    ST_IDENTITY_INSERT,
    ST_SIGNED_PUT,
    ST_SIGNED_EXISTS,
    ST_PREKEY_INSERT,
    ST_PREKEY_COUNT,
    ST_PREKEY_TAKE,
    ST_BUNDLE_DEVICES,
    ST_ENV_BY_CLIENT_ID,
    ST_KEYED_DEVICES,
    ST_DEVICE_USER,
    ST_ENV_INSERT,
    ST_ENV_SET_MESSAGE,
    ST_ENV_PAGE,
    ST_ENV_DELETE,
    ST_TTL_GET,
    ST_TTL_PUT,
    ST_TTL_DELETE,
    ST_UPDATE_INSERT_KIND,
    ST_EXPIRED,
    ST_UPDATE_DELETE,
    ST_MSG_DELETE,
    ST_NEXT_EXPIRY,
    ST_ENV_EXPIRE,
    ST_ENV_OLDEST,
    ST_SEND_RECORD,
    ST_ENV_COUNT,
    ST_TOMB_INSERT,
    ST_TOMB_GET,
    ST_TOMB_EXPIRE,
    ST_TOMB_OLDEST,
    ST_SEND_EXPIRE,
    ST_COUNT
};

/* A message being built: its string fields are offsets into the scratch
 * string buffer until the result block is allocated. */
struct pending_msg {
    struct store_msg m;
    size_t from_off;
    size_t to_off;
    size_t text_off;
    size_t ids_off; /* DELETED updates: the ids blob */
};

/* Writer-thread buffers, reused across requests so that a result costs one
 * allocation: the final block. */
struct scratch {
    struct pending_msg *msgs;
    size_t n_msgs;
    size_t cap_msgs;
    char *str;
    size_t len;
    size_t cap;
};

/* What the writer knows of a user: the name and the pts of the newest
 * committed update, so that a send costs no user lookups or updates. */
struct user_entry {
    uint64_t pts;
    bool ttl_chats; /* some chat of this user may have auto-delete, or a message of theirs
                       was purged: look the chat and retries up on send */
    char name[USERNAME_MAX + 1];
};

struct store {
    sqlite3 *db;                  /* used only by the writer thread once it runs */
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared once, reset after each use */
    uv_thread_t thread;
    unsigned max_batch;
    unsigned max_queue;
    uint64_t checkpoint_bytes;
    atomic_uint refs; /* store_close's own, plus one per open port */

    uv_mutex_t lock;        /* guards everything below */
    uv_cond_t cond;         /* signalled when the queue becomes non-empty or on close */
    struct store_req *head; /* submitted, not yet taken by the writer */
    struct store_req *tail;
    struct store_req *bulk_head; /* the same for bulk (low-priority) requests */
    struct store_req *bulk_tail;
    unsigned bulk_per_batch;
    unsigned queued; /* length of head..tail, at most max_queue */
    bool closing;    /* store_close started: no new requests or ports */
    struct store_stats stats;

    struct scratch scratch; /* writer thread only */
    int64_t next_expiry;    /* writer thread only: no message expires before this; 0: unknown */
    int64_t oldest_envelope; /* writer thread only: no envelope is older; 0: unknown */
    int64_t oldest_tomb;    /* writer thread only: no purged_sends row is older; 0: unknown */
    uint64_t scrub_since;   /* writer thread only: uv_hrtime when scrub was set */
    bool scrub;             /* writer thread only: envelopes were deleted since the last
                               WAL truncation */
    struct u64map users;    /* writer thread only: user id -> struct user_entry */
    /* writer thread only: device id -> its queued envelopes + 1, as an
     * integer in the pointer; loaded on first use, emptied when it would
     * pass users_max entries and after purges and failed batches. */
    struct u64map queued_envs;
    unsigned envelopes_per_device;
    unsigned users_max;     /* the cache is emptied when it would grow past this */
};

static inline void bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
    sqlite3_bind_int64(s, i, (sqlite3_int64)v);
}

static inline uint64_t column_u64(sqlite3_stmt *s, int i)
{
    return (uint64_t)sqlite3_column_int64(s, i);
}

/* ---- Helpers (store_sqlite.c) ---- */

/* Logs a failed statement; returns PARLEY_ESTORE. */
int sq_sql_fail(struct store *st, const char *what, int rc);
/* Steps a statement that returns no rows and resets it: 0, conflict on a
 * UNIQUE or PRIMARY KEY violation, else PARLEY_ESTORE. */
int sq_step_write(struct store *st, sqlite3_stmt *s, const char *what, int conflict);
/* Copies a blob column of exactly n bytes; false if it has another size. */
bool sq_column_blob_n(sqlite3_stmt *s, int i, void *dst, size_t n);
/* Scratch building: a copy of n bytes plus a NUL (returns its offset), a
 * new zeroed pending message, a text column's copy, and rows of the message
 * and sync queries (see the statements' column comments). */
size_t sq_scratch_str(struct scratch *sc, const void *p, size_t n);
struct pending_msg *sq_scratch_msg(struct scratch *sc);
size_t sq_scratch_column_text(struct scratch *sc, sqlite3_stmt *s, int i);
void sq_scratch_msg_row(struct scratch *sc, sqlite3_stmt *s);
void sq_scratch_update_row(struct scratch *sc, sqlite3_stmt *s);
/* The user cache: make room for n entries before taking pointers to any;
 * an entry, loaded on a miss (PARLEY_ENOUSER, PARLEY_ESTORE). */
void sq_users_reserve(struct store *st, unsigned n);
int sq_user_get(struct store *st, uint64_t id, struct user_entry **out);
/* Appends a new-message update to user's log. */
int sq_update_insert(struct store *st, uint64_t user, uint64_t pts, uint64_t msg_id);

/* ---- Operations: each runs one request inside the batch's transaction
 * and returns its status (store.h documents each). ---- */

/* store_sqlite_msgs.c */
int sq_op_signup(struct store *st, struct store_req *req);
int sq_op_device(struct store *st, struct store_req *req);
int sq_op_resolve(struct store *st, struct store_req *req);
int sq_op_send(struct store *st, struct store_req *req);
int sq_op_sync(struct store *st, struct store_req *req);
int sq_op_history(struct store *st, struct store_req *req);
/* store_sqlite_keys.c */
int sq_op_upload_keys(struct store *st, struct store_req *req);
int sq_op_get_bundle(struct store *st, struct store_req *req);
int sq_op_key_count(struct store *st, struct store_req *req);
/* store_sqlite_secret.c */
int sq_op_secret_send(struct store *st, struct store_req *req);
int sq_op_secret_fetch(struct store *st, struct store_req *req);
int sq_op_secret_ack(struct store *st, struct store_req *req);
/* Forgets the queued-envelope counts (they reload on use). */
void sq_queued_clear(struct store *st);
/* store_sqlite_expiry.c */
int sq_op_set_ttl(struct store *st, struct store_req *req);
int sq_op_purge(struct store *st, struct store_req *req);
/* Whether a purge has work (so its batch must write). */
bool sq_purge_due(const struct store *st, const struct store_req *req);
/* Read the earliest message expiry and the oldest envelope's date into
 * st (INT64_MAX: none), at open and after purges. */
int sq_next_expiry_load(struct store *st);
int sq_oldest_envelope_load(struct store *st);
int sq_oldest_tomb_load(struct store *st);

/* How long a purged cloud message's ids are kept for its retries. */
#define TOMB_KEEP_S 86400

#endif
