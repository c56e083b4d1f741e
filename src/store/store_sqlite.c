/* SPDX-License-Identifier: MIT */
/* The SQLite backend of store.h: one connection, owned by one writer thread
 * that runs queued requests in batches (one transaction and one fsync per
 * batch) and hands each result back through its request's port. The schema,
 * batching rules and lifetimes are described in docs/internals/store.md. */
#include "store/store.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/text.h"
#include "common/u64map.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

#define MODULE "store"
#define SCHEMA_VERSION STORE_SCHEMA_VERSION
#define DEFAULT_MAX_BATCH 1024
#define DEFAULT_MAX_QUEUE 65536
#define DEFAULT_USER_CACHE (1u << 20)
#define DEFAULT_BULK_PER_BATCH 64
#define BUSY_TIMEOUT_MS 5000
/* Largest text accepted: the protocol's character limit in 4-byte UTF-8. */
#define TEXT_MAX_BYTES ((size_t)PARLEY_TEXT_MAX_CHARS * 4)
/* Result scratch above this is released after use rather than kept. */
#define SCRATCH_KEEP_BYTES (1024 * 1024)

/* The schema is built step by step: a fresh file runs every step from
 * version 0, an older file the steps above its version, all in one write
 * transaction. A step ends by setting its user_version. */
/* clang-format off */
static const char schema_v1_sql[] =
    "CREATE TABLE users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " username TEXT NOT NULL UNIQUE,"
    " created INTEGER NOT NULL,"
    " pts INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE devices ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id INTEGER NOT NULL REFERENCES users(id),"
    " pubkey BLOB NOT NULL UNIQUE CHECK (length(pubkey) = 32),"
    " created INTEGER NOT NULL,"
    " sync_pts INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX devices_user ON devices(user_id);"
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " from_user INTEGER NOT NULL,"
    " from_device INTEGER NOT NULL,"
    " to_user INTEGER NOT NULL,"
    " client_id INTEGER NOT NULL,"
    " date INTEGER NOT NULL,"
    " text TEXT NOT NULL,"
    " chat_lo INTEGER NOT NULL,"
    " chat_hi INTEGER NOT NULL,"
    " from_pts INTEGER NOT NULL,"
    " UNIQUE (from_user, client_id));"
    "CREATE INDEX messages_chat ON messages(chat_lo, chat_hi, id);"
    "CREATE TABLE updates ("
    " user_id INTEGER NOT NULL,"
    " pts INTEGER NOT NULL,"
    " message_id INTEGER NOT NULL,"
    " PRIMARY KEY (user_id, pts)) WITHOUT ROWID;"
    "PRAGMA user_version = 1;";

/* Version 2: the keys devices publish for secret chats. */
static const char schema_v2_sql[] =
    "CREATE TABLE identity_keys ("
    " device_id INTEGER PRIMARY KEY REFERENCES devices(id),"
    " registration_id INTEGER NOT NULL,"
    " key BLOB NOT NULL CHECK (length(key) = 33));"
    "CREATE TABLE signed_prekeys ("
    " device_id INTEGER PRIMARY KEY REFERENCES devices(id),"
    " id INTEGER NOT NULL,"
    " key BLOB NOT NULL CHECK (length(key) = 33),"
    " signature BLOB NOT NULL CHECK (length(signature) = 64),"
    " created INTEGER NOT NULL);"
    "CREATE TABLE one_time_prekeys ("
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " id INTEGER NOT NULL,"
    " key BLOB NOT NULL CHECK (length(key) = 33),"
    " PRIMARY KEY (device_id, id)) WITHOUT ROWID;"
    "PRAGMA user_version = 2;";

/* Version 3: secret messages, one envelope row per destination device,
 * deleted when that device acks it. */
static const char schema_v3_sql[] =
    "CREATE TABLE envelopes ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " device_id INTEGER NOT NULL,"
    " message_id INTEGER NOT NULL,"
    " from_user INTEGER NOT NULL,"
    " from_device INTEGER NOT NULL,"
    " to_user INTEGER NOT NULL,"
    " client_id INTEGER NOT NULL,"
    " type INTEGER NOT NULL,"
    " date INTEGER NOT NULL,"
    " body BLOB NOT NULL);"
    "CREATE INDEX envelopes_device ON envelopes(device_id, id);"
    "CREATE INDEX envelopes_client ON envelopes(from_user, client_id);"
    "PRAGMA user_version = 3;";

/* Version 4: auto-delete. A message's expiry (0: never) with a partial
 * index over the expiring ones, its pts in the recipient's log (so a purge
 * finds both update rows), the chats' settings, and update kinds other
 * than a new message. */
static const char schema_v4_sql[] =
    "ALTER TABLE messages ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN to_pts INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX messages_expiry ON messages(expires) WHERE expires > 0;"
    "ALTER TABLE updates ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE updates ADD COLUMN arg INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE updates ADD COLUMN ids BLOB;"
    "CREATE TABLE chat_ttl ("
    " chat_lo INTEGER NOT NULL,"
    " chat_hi INTEGER NOT NULL,"
    " ttl_s INTEGER NOT NULL,"
    " PRIMARY KEY (chat_lo, chat_hi)) WITHOUT ROWID;"
    "CREATE INDEX chat_ttl_hi ON chat_ttl(chat_hi);"
    "CREATE INDEX envelopes_date ON envelopes(date);"
    "PRAGMA user_version = 4;";

/* schema_steps[v] takes a database from version v to v + 1. */
static const char *const schema_steps[SCHEMA_VERSION] = {schema_v1_sql, schema_v2_sql,
                                                         schema_v3_sql, schema_v4_sql};

/* updates.kind: a new message (message_id), messages purged (ids: 8 bytes
 * per id, little-endian), a chat's auto-delete set by this account or by
 * the peer (message_id: the peer, arg: ttl_s). */
#define UPD_MESSAGE 0
#define UPD_DELETED 1
#define UPD_TTL_SELF 2
#define UPD_TTL_PEER 3
/* clang-format on */

/* Columns 0-8 of every message query; column 9 is the pts to report and
 * column 10 the expiry. */
#define MSG_COLS                                                                                   \
    "m.id, m.from_user, m.from_device, m.to_user, m.client_id, m.date, m.text, fu.username, "      \
    "tu.username"
#define MSG_JOIN " JOIN users fu ON fu.id = m.from_user JOIN users tu ON tu.id = m.to_user"

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
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN DEFERRED",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT req",
    [ST_RELEASE] = "RELEASE req",
    [ST_ROLLBACK_TO] = "ROLLBACK TO req",
    [ST_USER_INSERT] = "INSERT INTO users (username, created) VALUES (?1, ?2)",
    [ST_USER_BY_NAME] = "SELECT id FROM users WHERE username = ?1",
    /* A user's pts is the last of its update log; users.pts is a floor
     * for it, kept for logs whose newest rows are ever deleted. */
    [ST_USER_LOAD] = "SELECT u.username, max(u.pts, coalesce("
                     "(SELECT max(p.pts) FROM updates p WHERE p.user_id = u.id), 0)),"
                     " EXISTS (SELECT 1 FROM chat_ttl t WHERE t.chat_lo = u.id)"
                     " OR EXISTS (SELECT 1 FROM chat_ttl t WHERE t.chat_hi = u.id)"
                     " FROM users u WHERE u.id = ?1",
    [ST_DEVICE_INSERT] = "INSERT INTO devices (user_id, pubkey, created) VALUES (?1, ?2, ?3)",
    [ST_DEVICE_GET] = "SELECT d.user_id, u.username, d.pubkey FROM devices d"
                      " JOIN users u ON u.id = d.user_id WHERE d.id = ?1",
    [ST_DEVICE_SYNC_PTS] = "UPDATE devices SET sync_pts = ?3"
                           " WHERE id = ?1 AND user_id = ?2 AND sync_pts < ?3",
    [ST_MSG_BY_CLIENT_ID] = "SELECT " MSG_COLS ", m.from_pts, m.expires FROM messages m" MSG_JOIN
                            " WHERE m.from_user = ?1 AND m.client_id = ?2",
    [ST_MSG_INSERT] = "INSERT INTO messages (from_user, from_device, to_user, client_id, date,"
                      " text, chat_lo, chat_hi, from_pts, expires, to_pts)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_UPDATE_INSERT] = "INSERT INTO updates (user_id, pts, message_id) VALUES (?1, ?2, ?3)",
    /* Other kinds of updates have no message: outer joins, columns 0-10
     * NULL, then kind, arg, ids, message_id and (TTL) the peer's name in
     * 11-15. */
    [ST_SYNC_PAGE] = "SELECT " MSG_COLS ", u.pts, m.expires, u.kind, u.arg, u.ids, u.message_id,"
                     " pu.username"
                     " FROM updates u LEFT JOIN messages m ON u.kind = 0 AND m.id = u.message_id"
                     " LEFT JOIN users fu ON fu.id = m.from_user"
                     " LEFT JOIN users tu ON tu.id = m.to_user"
                     " LEFT JOIN users pu ON u.kind >= 2 AND pu.id = u.message_id"
                     " WHERE u.user_id = ?1 AND u.pts > ?2 ORDER BY u.pts LIMIT ?3",
    [ST_HISTORY_PAGE] = "SELECT " MSG_COLS ", 0, m.expires FROM messages m" MSG_JOIN
                        " WHERE m.chat_lo = ?1 AND m.chat_hi = ?2 AND m.id < ?3"
                        " ORDER BY m.id DESC LIMIT ?4",
    [ST_IDENTITY_GET] = "SELECT registration_id, key FROM identity_keys WHERE device_id = ?1",
    [ST_IDENTITY_INSERT] = "INSERT INTO identity_keys (device_id, registration_id, key)"
                           " VALUES (?1, ?2, ?3)",
    [ST_SIGNED_PUT] = "INSERT OR REPLACE INTO signed_prekeys (device_id, id, key, signature,"
                      " created) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_SIGNED_EXISTS] = "SELECT 1 FROM signed_prekeys WHERE device_id = ?1",
    [ST_PREKEY_INSERT] = "INSERT INTO one_time_prekeys (device_id, id, key) VALUES (?1, ?2, ?3)",
    [ST_PREKEY_COUNT] = "SELECT count(*) FROM one_time_prekeys WHERE device_id = ?1",
    /* One statement finds and deletes the prekey: the writer thread is the
     * only writer, so no other fetch can take it in between. */
    [ST_PREKEY_TAKE] = "DELETE FROM one_time_prekeys WHERE device_id = ?1 AND id ="
                       " (SELECT min(id) FROM one_time_prekeys WHERE device_id = ?1)"
                       " RETURNING id, key",
    [ST_BUNDLE_DEVICES] = "SELECT d.id, k.registration_id, k.key, s.id, s.key, s.signature"
                          " FROM devices d JOIN identity_keys k ON k.device_id = d.id"
                          " JOIN signed_prekeys s ON s.device_id = d.id"
                          " WHERE d.user_id = ?1 AND (?2 = 0 OR d.id = ?2) AND d.id != ?3"
                          " ORDER BY d.id",
    [ST_ENV_BY_CLIENT_ID] = "SELECT message_id, from_device, to_user, date FROM envelopes"
                            " WHERE from_user = ?1 AND client_id = ?2 LIMIT 1",
    [ST_KEYED_DEVICES] = "SELECT d.id, d.user_id FROM devices d"
                         " JOIN identity_keys k ON k.device_id = d.id"
                         " WHERE d.user_id IN (?1, ?2) ORDER BY d.id",
    [ST_DEVICE_USER] = "SELECT user_id FROM devices WHERE id = ?1",
    [ST_ENV_INSERT] = "INSERT INTO envelopes (device_id, message_id, from_user, from_device,"
                      " to_user, client_id, type, date, body)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_ENV_SET_MESSAGE] = "UPDATE envelopes SET message_id = id WHERE id = ?1",
    [ST_ENV_PAGE] = "SELECT e.id, e.message_id, e.from_user, e.from_device, e.to_user, e.date,"
                    " e.type, e.body, fu.username, tu.username FROM envelopes e"
                    " JOIN users fu ON fu.id = e.from_user JOIN users tu ON tu.id = e.to_user"
                    " WHERE e.device_id = ?1 ORDER BY e.id LIMIT ?2",
    [ST_ENV_DELETE] = "DELETE FROM envelopes WHERE id = ?1 AND device_id = ?2",
    [ST_TTL_GET] = "SELECT ttl_s FROM chat_ttl WHERE chat_lo = ?1 AND chat_hi = ?2",
    [ST_TTL_PUT] = "INSERT OR REPLACE INTO chat_ttl (chat_lo, chat_hi, ttl_s) VALUES (?1, ?2, ?3)",
    [ST_TTL_DELETE] = "DELETE FROM chat_ttl WHERE chat_lo = ?1 AND chat_hi = ?2",
    [ST_UPDATE_INSERT_KIND] = "INSERT INTO updates (user_id, pts, message_id, kind, arg, ids)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* The partial index messages_expiry serves both: no scan. */
    [ST_EXPIRED] = "SELECT id, from_user, to_user, from_pts, to_pts FROM messages"
                   " WHERE expires > 0 AND expires <= ?1 ORDER BY expires, id LIMIT ?2",
    [ST_UPDATE_DELETE] = "DELETE FROM updates WHERE user_id = ?1 AND pts = ?2",
    [ST_MSG_DELETE] = "DELETE FROM messages WHERE id = ?1",
    [ST_NEXT_EXPIRY] = "SELECT min(expires) FROM messages WHERE expires > 0",
    [ST_ENV_EXPIRE] = "DELETE FROM envelopes WHERE id IN (SELECT id FROM envelopes"
                      " WHERE date < ?1 ORDER BY date LIMIT ?2)",
    [ST_ENV_OLDEST] = "SELECT min(date) FROM envelopes",
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
    bool ttl_chats; /* some chat of this user may have auto-delete: look it up on send */
    char name[USERNAME_MAX + 1];
};

struct store {
    sqlite3 *db;                  /* used only by the writer thread once it runs */
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared once, reset after each use */
    uv_thread_t thread;
    unsigned max_batch;
    unsigned max_queue;
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
    bool scrub;             /* writer thread only: envelopes were deleted since the last
                               WAL truncation */
    struct u64map users;    /* writer thread only: user id -> struct user_entry */
    unsigned users_max;     /* the cache is emptied when it would grow past this */
};

struct store_port {
    uv_async_t async;            /* wakes the loop when done_head is non-empty */
    struct store *st;            /* holds a reference until the port is closed */
    uv_mutex_t lock;             /* guards done_head and done_tail */
    struct store_req *done_head; /* finished, callback not yet called */
    struct store_req *done_tail;
    unsigned inflight;  /* submitted, callback not yet called; loop thread only */
    bool closing;       /* store_port_close called; loop thread only */
    bool close_started; /* uv_close called; loop thread only */
};

static void users_clear(struct store *st)
{
    void *v;
    uint64_t k;
    for (size_t it = 0; u64map_next(&st->users, &it, &k, &v);)
        free(v);
    u64map_deinit(&st->users);
    u64map_init(&st->users);
}

static void store_unref(struct store *st)
{
    if (atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    free(st->scratch.msgs);
    free(st->scratch.str);
    users_clear(st);
    u64map_deinit(&st->users);
    uv_cond_destroy(&st->cond);
    uv_mutex_destroy(&st->lock);
    free(st);
}

/* ---- SQLite helpers (writer thread) ---- */

static int sql_fail(struct store *st, const char *what, int rc)
{
    log_error(MODULE, "event=sqlite_error what=%s rc=%d reason=\"%s\"", what, rc,
              sqlite3_errmsg(st->db));
    return PARLEY_ESTORE;
}

/* Runs a statement without parameters or rows (BEGIN, COMMIT, SAVEPOINT...). */
static int exec_stmt(struct store *st, enum stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s);
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(st, stmt_sql[id], rc);
    sqlite3_reset(s);
    return ret;
}

static void bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
    sqlite3_bind_int64(s, i, (sqlite3_int64)v);
}

static uint64_t column_u64(sqlite3_stmt *s, int i)
{
    return (uint64_t)sqlite3_column_int64(s, i);
}

/* ---- Result building (writer thread) ---- */

static void scratch_clear(struct scratch *sc)
{
    sc->n_msgs = 0;
    sc->len = 0;
}

/* Appends n bytes of p and a NUL; returns the offset of the copy. */
static size_t scratch_str(struct scratch *sc, const void *p, size_t n)
{
    if (sc->len + n + 1 > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 4096;
        while (cap < sc->len + n + 1)
            cap *= 2;
        sc->str = xrealloc(sc->str, cap);
        sc->cap = cap;
    }
    size_t off = sc->len;
    if (n)
        memcpy(sc->str + off, p, n);
    sc->str[off + n] = '\0';
    sc->len += n + 1;
    return off;
}

static struct pending_msg *scratch_msg(struct scratch *sc)
{
    if (sc->n_msgs == sc->cap_msgs) {
        sc->cap_msgs = sc->cap_msgs ? sc->cap_msgs * 2 : 64;
        sc->msgs = xrealloc(sc->msgs, sc->cap_msgs * sizeof(*sc->msgs));
    }
    struct pending_msg *pm = &sc->msgs[sc->n_msgs++];
    memset(pm, 0, sizeof(*pm));
    return pm;
}

static size_t scratch_column_text(struct scratch *sc, sqlite3_stmt *s, int i)
{
    const unsigned char *p = sqlite3_column_text(s, i);
    size_t n = p ? (size_t)sqlite3_column_bytes(s, i) : 0;
    return scratch_str(sc, p, n);
}

/* Reads one row of a MSG_COLS query (plus the pts in column 9). */
static void scratch_msg_row(struct scratch *sc, sqlite3_stmt *s)
{
    struct pending_msg *pm = scratch_msg(sc);
    pm->m.id = column_u64(s, 0);
    pm->m.from_user = column_u64(s, 1);
    pm->m.from_device = column_u64(s, 2);
    pm->m.to_user = column_u64(s, 3);
    pm->m.client_id = column_u64(s, 4);
    pm->m.date = sqlite3_column_int64(s, 5);
    pm->text_off = scratch_column_text(sc, s, 6);
    pm->m.text_len = (size_t)sqlite3_column_bytes(s, 6);
    pm->from_off = scratch_column_text(sc, s, 7);
    pm->to_off = scratch_column_text(sc, s, 8);
    pm->m.pts = column_u64(s, 9);
    pm->m.expires = sqlite3_column_int64(s, 10);
}

/* Reads one row of the sync page: a message, or another kind of update. */
static void scratch_update_row(struct scratch *sc, sqlite3_stmt *s)
{
    int kind = sqlite3_column_int(s, 11);
    if (kind == UPD_MESSAGE) {
        scratch_msg_row(sc, s);
        return;
    }
    struct pending_msg *pm = scratch_msg(sc);
    pm->m.pts = column_u64(s, 9);
    pm->from_off = pm->text_off = scratch_str(sc, "", 0);
    pm->to_off = scratch_column_text(sc, s, 15); /* TTL: the peer's name; else "" */
    if (kind == UPD_DELETED) {
        const void *ids = sqlite3_column_blob(s, 13);
        size_t n = ids ? (size_t)sqlite3_column_bytes(s, 13) / 8 : 0;
        pm->m.kind = STORE_UPD_DELETED;
        pm->m.n_ids = n;
        pm->ids_off = scratch_str(sc, ids, n * 8);
    } else {
        pm->m.kind = STORE_UPD_TTL;
        pm->m.ttl_s = (uint32_t)sqlite3_column_int64(s, 12);
        pm->m.peer = column_u64(s, 14);
        pm->m.by_peer = kind == UPD_TTL_PEER;
    }
}

static void fix_strings(struct store_msg *m, const struct pending_msg *pm, const char *strs)
{
    *m = pm->m;
    m->from_name = strs + pm->from_off;
    m->to_name = strs + pm->to_off;
    m->text = strs + pm->text_off;
    m->ids = m->n_ids ? (const uint8_t *)strs + pm->ids_off : NULL;
}

/* Moves the scratch into one block owned by req: out.msgs for SYNC and
 * HISTORY, out.msg for SEND. */
static void scratch_finish(struct scratch *sc, struct store_req *req)
{
    if (req->op == STORE_OP_SEND) {
        char *block = xmemdup(sc->str, sc->len);
        fix_strings(&req->out.msg, &sc->msgs[0], block);
        req->priv = block;
    } else if (sc->n_msgs > 0) {
        size_t head = sc->n_msgs * sizeof(struct store_msg);
        char *block = xmalloc(head + sc->len);
        struct store_msg *msgs = (struct store_msg *)(void *)block;
        memcpy(block + head, sc->str, sc->len);
        for (size_t i = 0; i < sc->n_msgs; i++)
            fix_strings(&msgs[i], &sc->msgs[i], block + head);
        req->out.msgs = msgs;
        req->out.n_msgs = sc->n_msgs;
        req->priv = block;
    }
    if (sc->cap > SCRATCH_KEEP_BYTES) {
        free(sc->str);
        sc->str = NULL;
        sc->cap = 0;
    }
    if (sc->cap_msgs * sizeof(*sc->msgs) > SCRATCH_KEEP_BYTES) {
        free(sc->msgs);
        sc->msgs = NULL;
        sc->cap_msgs = 0;
    }
    scratch_clear(sc);
}

/* ---- Operations (writer thread, inside the batch transaction) ---- */

/* Makes room for n more cache entries: when the cache would pass its
 * bound it is emptied (entries reload on use), so call this before taking
 * pointers to entries a request needs. */
static void users_reserve(struct store *st, unsigned n)
{
    if (st->users.len + n > st->users_max)
        users_clear(st);
}

/* The cache entry of user id, loaded on a miss. Returns 0 and sets *out,
 * PARLEY_ENOUSER or PARLEY_ESTORE. */
static int user_get(struct store *st, uint64_t id, struct user_entry **out)
{
    struct user_entry *e = u64map_get(&st->users, id);
    if (e) {
        *out = e;
        return 0;
    }
    sqlite3_stmt *s = st->stmt[ST_USER_LOAD];
    bind_u64(s, 1, id);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (!name || len > USERNAME_MAX) {
            log_error(MODULE, "event=corrupt_row table=users id=%llu", (unsigned long long)id);
            ret = PARLEY_ESTORE;
        } else {
            e = xmalloc(sizeof(*e));
            memcpy(e->name, name, len);
            e->name[len] = '\0';
            e->pts = column_u64(s, 1);
            e->ttl_chats = sqlite3_column_int(s, 2) != 0;
            u64map_put(&st->users, id, e);
            *out = e;
        }
    } else if (rc == SQLITE_DONE) {
        ret = PARLEY_ENOUSER;
    } else {
        ret = sql_fail(st, "user_load", rc);
    }
    sqlite3_reset(s);
    return ret;
}

static int update_insert(struct store *st, uint64_t user, uint64_t pts, uint64_t msg_id)
{
    sqlite3_stmt *s = st->stmt[ST_UPDATE_INSERT];
    bind_u64(s, 1, user);
    bind_u64(s, 2, pts);
    bind_u64(s, 3, msg_id);
    int rc = sqlite3_step(s);
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(st, "update_insert", rc);
    sqlite3_reset(s);
    return ret;
}

static int op_signup(struct store *st, struct store_req *req)
{
    sqlite3_int64 now = (sqlite3_int64)time(NULL);
    sqlite3_stmt *s = st->stmt[ST_USER_INSERT];
    sqlite3_bind_text(s, 1, req->in.signup.username, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        ret = PARLEY_ETAKEN;
    else if (rc != SQLITE_DONE)
        ret = sql_fail(st, "user_insert", rc);
    sqlite3_reset(s);
    if (ret)
        return ret;
    uint64_t user_id = (uint64_t)sqlite3_last_insert_rowid(st->db);

    s = st->stmt[ST_DEVICE_INSERT];
    bind_u64(s, 1, user_id);
    sqlite3_bind_blob(s, 2, req->in.signup.pubkey, STORE_PUBKEY_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        ret = PARLEY_EBAD_KEY;
    else if (rc != SQLITE_DONE)
        ret = sql_fail(st, "device_insert", rc);
    sqlite3_reset(s);
    if (ret)
        return ret;

    req->out.user_id = user_id;
    req->out.device_id = (uint64_t)sqlite3_last_insert_rowid(st->db);
    /* No cache entry yet: the first use loads it (pts 0) once committed. */
    memcpy(req->out.username, req->in.signup.username, sizeof(req->out.username));
    memcpy(req->out.pubkey, req->in.signup.pubkey, STORE_PUBKEY_LEN);
    req->out.pts = 0;
    return 0;
}

static int op_device(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_DEVICE_GET];
    bind_u64(s, 1, req->in.device_id);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(s, 1);
        size_t name_len = (size_t)sqlite3_column_bytes(s, 1);
        const void *key = sqlite3_column_blob(s, 2);
        size_t key_len = (size_t)sqlite3_column_bytes(s, 2);
        if (!name || name_len > USERNAME_MAX || !key || key_len != STORE_PUBKEY_LEN) {
            log_error(MODULE, "event=corrupt_row table=devices id=%llu",
                      (unsigned long long)req->in.device_id);
            ret = PARLEY_ESTORE;
        } else {
            req->out.user_id = column_u64(s, 0);
            req->out.device_id = req->in.device_id;
            memcpy(req->out.username, name, name_len);
            req->out.username[name_len] = '\0';
            memcpy(req->out.pubkey, key, STORE_PUBKEY_LEN);
        }
    } else if (rc == SQLITE_DONE) {
        ret = PARLEY_ENODEVICE;
    } else {
        ret = sql_fail(st, "device_get", rc);
    }
    sqlite3_reset(s);
    if (ret)
        return ret;
    struct user_entry *ue;
    users_reserve(st, 1);
    if ((ret = user_get(st, req->out.user_id, &ue)) != 0)
        return ret == PARLEY_ENOUSER ? PARLEY_ESTORE : ret;
    req->out.pts = ue->pts;
    return 0;
}

static int op_resolve(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_USER_BY_NAME];
    sqlite3_bind_text(s, 1, req->in.username, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        req->out.user_id = column_u64(s, 0);
        memcpy(req->out.username, req->in.username, sizeof(req->out.username));
    } else if (rc == SQLITE_DONE) {
        ret = PARLEY_ENOUSER;
    } else {
        ret = sql_fail(st, "user_by_name", rc);
    }
    sqlite3_reset(s);
    return ret;
}

/* Finds an earlier message of the same sender with the same client id and,
 * if there is one, makes it the result. Returns 0 with *found set, or
 * PARLEY_ESTORE. */
static int send_find_duplicate(struct store *st, struct store_req *req, bool *found)
{
    sqlite3_stmt *s = st->stmt[ST_MSG_BY_CLIENT_ID];
    bind_u64(s, 1, req->in.send.from_user);
    bind_u64(s, 2, req->in.send.client_id);
    int rc = sqlite3_step(s);
    int ret = 0;
    *found = false;
    if (rc == SQLITE_ROW) {
        scratch_msg_row(&st->scratch, s);
        *found = true;
    } else if (rc != SQLITE_DONE) {
        ret = sql_fail(st, "msg_by_client_id", rc);
    }
    sqlite3_reset(s);
    return ret;
}

/* The auto-delete time of the chat of a and b (0: off). */
static int chat_ttl_get(struct store *st, uint64_t a, uint64_t b, uint32_t *ttl)
{
    sqlite3_stmt *s = st->stmt[ST_TTL_GET];
    bind_u64(s, 1, PL_MIN(a, b));
    bind_u64(s, 2, PL_MAX(a, b));
    int rc = sqlite3_step(s);
    int ret = 0;
    *ttl = 0;
    if (rc == SQLITE_ROW)
        *ttl = (uint32_t)sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        ret = sql_fail(st, "ttl_get", rc);
    sqlite3_reset(s);
    return ret;
}

static int op_send(struct store *st, struct store_req *req)
{
    const uint64_t from = req->in.send.from_user, to = req->in.send.to_user;
    struct scratch *sc = &st->scratch;
    struct user_entry *fu, *tu;
    users_reserve(st, 2);
    int ret = user_get(st, to, &tu);
    if (ret == 0)
        ret = user_get(st, from, &fu);
    if (ret)
        return ret;
    /* The new pts take effect in the cache only once every row is in. */
    const uint64_t from_pts = fu->pts + 1;
    const uint64_t to_pts = to != from ? tu->pts + 1 : 0;

    int64_t date = req->in.send.date ? req->in.send.date : (int64_t)time(NULL);
    uint32_t ttl = 0;
    if ((fu->ttl_chats || tu->ttl_chats) && (ret = chat_ttl_get(st, from, to, &ttl)) != 0)
        return ret;
    const int64_t expires = ttl ? date + ttl : 0;
    const char *text = req->in.send.text ? req->in.send.text : "";
    size_t text_len = req->in.send.text_len;
    sqlite3_stmt *s = st->stmt[ST_MSG_INSERT];
    bind_u64(s, 1, from);
    bind_u64(s, 2, req->in.send.from_device);
    bind_u64(s, 3, to);
    bind_u64(s, 4, req->in.send.client_id);
    sqlite3_bind_int64(s, 5, date);
    sqlite3_bind_text(s, 6, text, (int)text_len, SQLITE_STATIC);
    bind_u64(s, 7, PL_MIN(from, to));
    bind_u64(s, 8, PL_MAX(from, to));
    bind_u64(s, 9, from_pts);
    sqlite3_bind_int64(s, 10, expires);
    bind_u64(s, 11, to_pts);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        /* (from_user, client_id) is taken: a retry. The original is the
         * answer, and nothing changes. */
        bool dup;
        if ((ret = send_find_duplicate(st, req, &dup)) != 0)
            return ret;
        if (!dup)
            return sql_fail(st, "msg_duplicate_vanished", rc);
        req->out.duplicate = true;
        req->out.to_pts = 0;
        return 0;
    }
    if (rc != SQLITE_DONE)
        return sql_fail(st, "msg_insert", rc);
    uint64_t msg_id = (uint64_t)sqlite3_last_insert_rowid(st->db);

    if ((ret = update_insert(st, from, from_pts, msg_id)) != 0)
        return ret;
    if (to != from && (ret = update_insert(st, to, to_pts, msg_id)) != 0)
        return ret;
    fu->pts = from_pts;
    if (to != from)
        tu->pts = to_pts;

    struct pending_msg *pm = scratch_msg(sc);
    pm->from_off = scratch_str(sc, fu->name, strlen(fu->name));
    pm->to_off = scratch_str(sc, tu->name, strlen(tu->name));
    pm->m.id = msg_id;
    pm->m.from_user = from;
    pm->m.from_device = req->in.send.from_device;
    pm->m.to_user = to;
    pm->m.client_id = req->in.send.client_id;
    pm->m.date = date;
    pm->m.pts = from_pts;
    pm->m.expires = expires;
    if (expires && st->next_expiry != 0 && expires < st->next_expiry)
        st->next_expiry = expires; /* 0 (unknown) stays: the next purge looks */
    pm->m.text_len = text_len;
    pm->text_off = scratch_str(sc, text, text_len);
    req->out.duplicate = false;
    req->out.to_pts = to_pts;
    return 0;
}

static int op_sync(struct store *st, struct store_req *req)
{
    const uint64_t user = req->in.sync.user;
    struct user_entry *ue;
    users_reserve(st, 1);
    int ret = user_get(st, user, &ue);
    if (ret)
        return ret;
    const uint64_t pts = ue->pts;
    req->out.pts = pts;
    /* A device cannot have seen more than the log holds. */
    uint64_t from_pts = PL_MIN(req->in.sync.from_pts, pts);

    if (from_pts < pts) {
        sqlite3_stmt *s = st->stmt[ST_SYNC_PAGE];
        bind_u64(s, 1, user);
        bind_u64(s, 2, from_pts);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)req->in.sync.limit + 1);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (st->scratch.n_msgs == req->in.sync.limit) {
                req->out.more = true;
                rc = SQLITE_DONE;
                break;
            }
            scratch_update_row(&st->scratch, s);
        }
        if (rc != SQLITE_DONE)
            ret = sql_fail(st, "sync_page", rc);
        sqlite3_reset(s);
        if (ret)
            return ret;
    }

    if (req->in.sync.device && from_pts > 0) {
        sqlite3_stmt *s = st->stmt[ST_DEVICE_SYNC_PTS];
        bind_u64(s, 1, req->in.sync.device);
        bind_u64(s, 2, user);
        bind_u64(s, 3, from_pts);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            ret = sql_fail(st, "device_sync_pts", rc);
        sqlite3_reset(s);
    }
    return ret;
}

static int op_history(struct store *st, struct store_req *req)
{
    const uint64_t user = req->in.history.user, peer = req->in.history.peer;
    struct user_entry *ue;
    users_reserve(st, 1);
    int ret = user_get(st, peer, &ue);
    if (ret)
        return ret;
    uint64_t before = req->in.history.before_id;
    if (before == 0 || before > (uint64_t)INT64_MAX)
        before = (uint64_t)INT64_MAX;

    sqlite3_stmt *s = st->stmt[ST_HISTORY_PAGE];
    bind_u64(s, 1, PL_MIN(user, peer));
    bind_u64(s, 2, PL_MAX(user, peer));
    bind_u64(s, 3, before);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)req->in.history.limit);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        scratch_msg_row(&st->scratch, s);
    if (rc != SQLITE_DONE)
        ret = sql_fail(st, "history_page", rc);
    sqlite3_reset(s);
    return ret;
}

/* ---- Prekeys (writer thread) ---- */

/* The number of one-time prekeys device holds. Returns 0 or PARLEY_ESTORE. */
static int prekey_count(struct store *st, uint64_t device, unsigned *out)
{
    sqlite3_stmt *s = st->stmt[ST_PREKEY_COUNT];
    bind_u64(s, 1, device);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = (unsigned)sqlite3_column_int64(s, 0);
    else
        ret = sql_fail(st, "prekey_count", rc);
    sqlite3_reset(s);
    return ret;
}

/* Runs a statement that returns no rows; a UNIQUE or PRIMARY KEY conflict
 * returns conflict, any other failure PARLEY_ESTORE. */
static int step_write(struct store *st, sqlite3_stmt *s, const char *what, int conflict)
{
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
        ret = conflict;
    else if (rc != SQLITE_DONE)
        ret = sql_fail(st, what, rc);
    sqlite3_reset(s);
    return ret;
}

/* Every refusal but a taken prekey id comes before the first write; that
 * one is found by the insert itself, so the request runs in a savepoint
 * (see run_one) and a refusal leaves nothing behind. */
static int op_upload_keys(struct store *st, struct store_req *req)
{
    const uint64_t device = req->in.keys.device;
    sqlite3_stmt *s = st->stmt[ST_IDENTITY_GET];
    bind_u64(s, 1, device);
    int rc = sqlite3_step(s);
    int ret = 0;
    bool has_identity = false;
    if (rc == SQLITE_ROW) {
        const void *key = sqlite3_column_blob(s, 1);
        has_identity = true;
        if ((uint32_t)sqlite3_column_int64(s, 0) != req->in.keys.registration_id ||
            sqlite3_column_bytes(s, 1) != STORE_KEY_LEN || !key ||
            memcmp(key, req->in.keys.identity_key, STORE_KEY_LEN) != 0)
            ret = PARLEY_EIDENTITY_KEY;
    } else if (rc != SQLITE_DONE) {
        ret = sql_fail(st, "identity_get", rc);
    }
    sqlite3_reset(s);
    if (ret)
        return ret;

    if (!req->in.keys.has_signed) {
        s = st->stmt[ST_SIGNED_EXISTS];
        bind_u64(s, 1, device);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            ret = PARLEY_EINVAL; /* the first upload must bring a signed prekey */
        else if (rc != SQLITE_ROW)
            ret = sql_fail(st, "signed_exists", rc);
        sqlite3_reset(s);
        if (ret)
            return ret;
    }

    unsigned count;
    if ((ret = prekey_count(st, device, &count)) != 0)
        return ret;
    if (count + req->in.keys.n_prekeys > STORE_PREKEYS_MAX)
        return PARLEY_ETOO_MANY_PREKEYS;

    if (!has_identity) {
        s = st->stmt[ST_IDENTITY_INSERT];
        bind_u64(s, 1, device);
        sqlite3_bind_int64(s, 2, req->in.keys.registration_id);
        sqlite3_bind_blob(s, 3, req->in.keys.identity_key, STORE_KEY_LEN, SQLITE_STATIC);
        if ((ret = step_write(st, s, "identity_insert", PARLEY_ESTORE)) != 0)
            return ret;
    }
    if (req->in.keys.has_signed) {
        s = st->stmt[ST_SIGNED_PUT];
        bind_u64(s, 1, device);
        sqlite3_bind_int64(s, 2, req->in.keys.signed_prekey.id);
        sqlite3_bind_blob(s, 3, req->in.keys.signed_prekey.key, STORE_KEY_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, req->in.keys.signature, STORE_SIG_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
        if ((ret = step_write(st, s, "signed_put", PARLEY_ESTORE)) != 0)
            return ret;
    }
    s = st->stmt[ST_PREKEY_INSERT];
    for (size_t i = 0; i < req->in.keys.n_prekeys; i++) {
        const struct store_prekey *pk = &req->in.keys.prekeys[i];
        bind_u64(s, 1, device);
        sqlite3_bind_int64(s, 2, pk->id);
        sqlite3_bind_blob(s, 3, pk->key, STORE_KEY_LEN, SQLITE_STATIC);
        if ((ret = step_write(st, s, "prekey_insert", PARLEY_EPREKEY_ID)) != 0)
            return ret;
    }
    req->out.prekey_count = count + (unsigned)req->in.keys.n_prekeys;
    return 0;
}

/* Copies a blob column of exactly n bytes; false if it has another size. */
static bool column_blob_n(sqlite3_stmt *s, int i, void *dst, size_t n)
{
    const void *p = sqlite3_column_blob(s, i);
    if (!p || (size_t)sqlite3_column_bytes(s, i) != n)
        return false;
    memcpy(dst, p, n);
    return true;
}

/* Reads the devices with keys first, then takes their prekeys: every
 * refusal comes before the first delete, as for SEND. */
static int op_get_bundle(struct store *st, struct store_req *req)
{
    struct user_entry *ue;
    users_reserve(st, 1);
    int ret = user_get(st, req->in.bundle.user, &ue);
    if (ret)
        return ret;

    struct store_bundle *b = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = st->stmt[ST_BUNDLE_DEVICES];
    bind_u64(s, 1, req->in.bundle.user);
    bind_u64(s, 2, req->in.bundle.device);
    bind_u64(s, 3, req->in.bundle.skip_device);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            b = xrealloc(b, cap * sizeof(*b));
        }
        struct store_bundle *e = &b[n];
        memset(e, 0, sizeof(*e));
        e->device_id = column_u64(s, 0);
        e->registration_id = (uint32_t)sqlite3_column_int64(s, 1);
        e->signed_prekey.id = (uint32_t)sqlite3_column_int64(s, 3);
        if (!column_blob_n(s, 2, e->identity_key, STORE_KEY_LEN) ||
            !column_blob_n(s, 4, e->signed_prekey.key, STORE_KEY_LEN) ||
            !column_blob_n(s, 5, e->signature, STORE_SIG_LEN)) {
            log_error(MODULE, "event=corrupt_row table=identity_keys device=%llu",
                      (unsigned long long)e->device_id);
            ret = PARLEY_ESTORE;
            break;
        }
        n++;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = sql_fail(st, "bundle_devices", rc);
    sqlite3_reset(s);
    if (ret == 0 && n == 0)
        ret = PARLEY_ENOKEYS;

    s = st->stmt[ST_PREKEY_TAKE];
    for (size_t i = 0; ret == 0 && i < n; i++) {
        bind_u64(s, 1, b[i].device_id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            b[i].has_prekey = true;
            b[i].prekey.id = (uint32_t)sqlite3_column_int64(s, 0);
            if (!column_blob_n(s, 1, b[i].prekey.key, STORE_KEY_LEN)) {
                log_error(MODULE, "event=corrupt_row table=one_time_prekeys device=%llu",
                          (unsigned long long)b[i].device_id);
                ret = PARLEY_ESTORE;
            } else {
                rc = sqlite3_step(s); /* runs the delete to its end */
            }
        }
        if (ret == 0 && rc != SQLITE_DONE)
            ret = sql_fail(st, "prekey_take", rc);
        sqlite3_reset(s);
        if (ret == 0)
            ret = prekey_count(st, b[i].device_id, &b[i].prekey_count);
    }
    if (ret) {
        free(b);
        return ret;
    }
    req->out.bundles = b;
    req->out.n_bundles = n;
    req->priv = b;
    return 0;
}

static int op_key_count(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_SIGNED_EXISTS];
    bind_u64(s, 1, req->in.device_id);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        req->out.has_keys = true;
    else if (rc != SQLITE_DONE)
        ret = sql_fail(st, "signed_exists", rc);
    sqlite3_reset(s);
    if (ret == 0)
        ret = prekey_count(st, req->in.device_id, &req->out.prekey_count);
    return ret;
}

/* ---- Secret messages (writer thread) ---- */

/* Builds the mismatch of a refused secret send in one block owned by req:
 * for to (first) and from, the devices with keys that got no envelope, and
 * the envelopes whose device is not one of them. keyed[i] belongs to
 * keyed_user[i]; a listed device that is not keyed is charged to from when
 * it is one of from's devices, else to to. */
struct mm_build {
    uint64_t *ids; /* missing then stale, per user */
    size_t n;
    size_t cap;
};

static void mm_push(struct mm_build *b, uint64_t id)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->ids = xrealloc(b->ids, b->cap * sizeof(*b->ids));
    }
    b->ids[b->n++] = id;
}

static int device_user(struct store *st, uint64_t device, uint64_t *user)
{
    sqlite3_stmt *s = st->stmt[ST_DEVICE_USER];
    bind_u64(s, 1, device);
    int rc = sqlite3_step(s);
    int ret = 0;
    *user = 0;
    if (rc == SQLITE_ROW)
        *user = column_u64(s, 0);
    else if (rc != SQLITE_DONE)
        ret = sql_fail(st, "device_user", rc);
    sqlite3_reset(s);
    return ret;
}

static bool id_in(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static int secret_mismatch(struct store *st, struct store_req *req, const uint64_t *keyed,
                           const uint64_t *keyed_user, size_t n_keyed, bool *found)
{
    const uint64_t users[2] = {req->in.secret.to_user, req->in.secret.from_user};
    const struct store_envelope_in *envs = req->in.secret.envs;
    const size_t n_envs = req->in.secret.n_envs;
    struct mm_build b = {0};
    size_t counts[2][2] = {{0}}; /* [user][missing, stale] */
    uint64_t *listed = xmalloc(n_envs * sizeof(*listed));
    for (size_t i = 0; i < n_envs; i++)
        listed[i] = envs[i].device_id;
    int ret = 0;
    *found = false;
    for (unsigned u = 0; u < 2 && ret == 0; u++) {
        if (u == 1 && users[1] == users[0])
            break; /* a note to self: one account */
        for (size_t i = 0; i < n_keyed; i++) {
            if (keyed_user[i] != users[u] || keyed[i] == req->in.secret.from_device)
                continue;
            if (!id_in(listed, n_envs, keyed[i])) {
                mm_push(&b, keyed[i]);
                counts[u][0]++;
            }
        }
        for (size_t i = 0; i < n_envs && ret == 0; i++) {
            uint64_t dev = listed[i];
            bool ok = false;
            for (size_t k = 0; k < n_keyed; k++)
                ok = ok || (keyed[k] == dev && dev != req->in.secret.from_device);
            if (ok)
                continue;
            uint64_t owner;
            if ((ret = device_user(st, dev, &owner)) != 0)
                break;
            unsigned charged = users[1] != users[0] && owner == users[1] ? 1 : 0;
            if (charged == u) {
                mm_push(&b, dev);
                counts[u][1]++;
            }
        }
    }
    free(listed);
    if (ret || b.n == 0) {
        free(b.ids);
        return ret;
    }
    /* The ids were pushed user by user, missing before stale. */
    uint64_t *block = xmemdup(b.ids, b.n * sizeof(*b.ids));
    free(b.ids);
    size_t off = 0, n = 0;
    for (unsigned u = 0; u < 2; u++) {
        if (counts[u][0] + counts[u][1] == 0)
            continue;
        struct store_mismatch *m = &req->out.mismatches[n++];
        m->user_id = users[u];
        m->missing = block + off;
        m->n_missing = counts[u][0];
        off += counts[u][0];
        m->stale = block + off;
        m->n_stale = counts[u][1];
        off += counts[u][1];
    }
    req->out.n_mismatches = n;
    req->priv = block;
    *found = true;
    return 0;
}

/* The devices with keys of the recipient and the sender, in id order. */
static int keyed_devices(struct store *st, uint64_t to, uint64_t from, uint64_t **ids,
                         uint64_t **owners, size_t *n)
{
    size_t cap = 0;
    *ids = NULL;
    *owners = NULL;
    *n = 0;
    sqlite3_stmt *s = st->stmt[ST_KEYED_DEVICES];
    bind_u64(s, 1, to);
    bind_u64(s, 2, from);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *ids = xrealloc(*ids, cap * sizeof(**ids));
            *owners = xrealloc(*owners, cap * sizeof(**owners));
        }
        (*ids)[*n] = column_u64(s, 0);
        (*owners)[*n] = column_u64(s, 1);
        (*n)++;
    }
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(st, "keyed_devices", rc);
    sqlite3_reset(s);
    return ret;
}

/* Looks for queued envelopes of (from_user, client_id): a retry. */
static int secret_find_duplicate(struct store *st, struct store_req *req, bool *found)
{
    sqlite3_stmt *s = st->stmt[ST_ENV_BY_CLIENT_ID];
    bind_u64(s, 1, req->in.secret.from_user);
    bind_u64(s, 2, req->in.secret.client_id);
    int rc = sqlite3_step(s);
    int ret = 0;
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
        req->out.msg.id = column_u64(s, 0);
        req->out.msg.from_device = column_u64(s, 1);
        req->out.msg.to_user = column_u64(s, 2);
        req->out.msg.date = sqlite3_column_int64(s, 3);
    } else if (rc != SQLITE_DONE) {
        ret = sql_fail(st, "env_by_client_id", rc);
    }
    sqlite3_reset(s);
    return ret;
}

/* The result block of a SECRET_SEND: n envelope refs, then both names;
 * owned by req (freed by store_req_reset, also on failure). */
static struct store_envelope_ref *secret_result(struct store_req *req, size_t n,
                                                const char *from_name, const char *to_name)
{
    size_t head = n * sizeof(struct store_envelope_ref);
    size_t fl = strlen(from_name) + 1, tl = strlen(to_name) + 1;
    char *block = xcalloc(1, head + fl + tl);
    memcpy(block + head, from_name, fl);
    memcpy(block + head + fl, to_name, tl);
    free(req->priv);
    req->priv = block;
    req->out.msg.from_name = block + head;
    req->out.msg.to_name = block + head + fl;
    req->out.msg.text = "";
    req->out.envs = n ? (struct store_envelope_ref *)(void *)block : NULL;
    req->out.n_envs = n;
    return req->out.envs;
}

/* Every refusal (no such user, no keys, a retry, a device mismatch) comes
 * before the first insert, as for SEND. */
static int op_secret_send(struct store *st, struct store_req *req)
{
    const uint64_t from = req->in.secret.from_user, to = req->in.secret.to_user;
    const struct store_envelope_in *envs = req->in.secret.envs;
    const size_t n_envs = req->in.secret.n_envs;
    struct user_entry *fu, *tu;
    users_reserve(st, 2);
    int ret = user_get(st, to, &tu);
    if (ret == 0)
        ret = user_get(st, from, &fu);
    if (ret)
        return ret;
    for (size_t i = 0; i < n_envs; i++)
        for (size_t j = i + 1; j < n_envs; j++)
            if (envs[i].device_id == envs[j].device_id)
                return PARLEY_EINVAL;

    bool dup;
    if ((ret = secret_find_duplicate(st, req, &dup)) != 0)
        return ret;
    if (dup) {
        /* The original's recipient may differ if the client reused an id. */
        if (req->out.msg.to_user != to && (ret = user_get(st, req->out.msg.to_user, &tu)) != 0)
            return ret;
        req->out.duplicate = true;
        req->out.msg.from_user = from;
        req->out.msg.client_id = req->in.secret.client_id;
        secret_result(req, 0, fu->name, tu->name);
        return 0;
    }

    uint64_t *keyed, *owners;
    size_t n_keyed;
    if ((ret = keyed_devices(st, to, from, &keyed, &owners, &n_keyed)) != 0)
        goto out;
    bool to_keyed = false;
    for (size_t i = 0; i < n_keyed; i++)
        to_keyed = to_keyed || (owners[i] == to && keyed[i] != req->in.secret.from_device);
    if (!to_keyed) {
        ret = PARLEY_ENOKEYS;
        goto out;
    }
    bool mismatch;
    if ((ret = secret_mismatch(st, req, keyed, owners, n_keyed, &mismatch)) != 0)
        goto out;
    if (mismatch) {
        ret = PARLEY_EDEVICES_CHANGED;
        goto out;
    }

    int64_t date = req->in.secret.date ? req->in.secret.date : (int64_t)time(NULL);
    struct store_envelope_ref *refs = secret_result(req, n_envs, fu->name, tu->name);
    uint64_t message_id = 0;
    sqlite3_stmt *s = st->stmt[ST_ENV_INSERT];
    for (size_t i = 0; i < n_envs && ret == 0; i++) {
        bind_u64(s, 1, envs[i].device_id);
        bind_u64(s, 2, message_id);
        bind_u64(s, 3, from);
        bind_u64(s, 4, req->in.secret.from_device);
        bind_u64(s, 5, to);
        bind_u64(s, 6, req->in.secret.client_id);
        sqlite3_bind_int64(s, 7, envs[i].type);
        sqlite3_bind_int64(s, 8, date);
        sqlite3_bind_blob(s, 9, envs[i].body, (int)envs[i].body_len, SQLITE_STATIC);
        if ((ret = step_write(st, s, "env_insert", PARLEY_ESTORE)) != 0)
            break;
        refs[i].id = (uint64_t)sqlite3_last_insert_rowid(st->db);
        if (st->oldest_envelope != 0 && date < st->oldest_envelope)
            st->oldest_envelope = date; /* 0 (unknown) stays: the next purge looks */
        refs[i].device_id = envs[i].device_id;
        for (size_t k = 0; k < n_keyed; k++)
            if (keyed[k] == envs[i].device_id)
                refs[i].user_id = owners[k];
        if (i == 0) {
            message_id = refs[0].id;
            sqlite3_stmt *u = st->stmt[ST_ENV_SET_MESSAGE];
            bind_u64(u, 1, message_id);
            ret = step_write(st, u, "env_set_message", PARLEY_ESTORE);
        }
    }
    if (ret)
        goto out;
    req->out.msg.id = message_id;
    req->out.msg.from_user = from;
    req->out.msg.from_device = req->in.secret.from_device;
    req->out.msg.to_user = to;
    req->out.msg.client_id = req->in.secret.client_id;
    req->out.msg.date = date;
out:
    free(keyed);
    free(owners);
    return ret;
}

/* An envelope being read: names and body are offsets into the scratch
 * string buffer until the result block is made. */
struct pending_env {
    struct store_envelope e;
    size_t from_off;
    size_t to_off;
    size_t body_off;
};

static int op_secret_fetch(struct store *st, struct store_req *req)
{
    struct scratch *sc = &st->scratch;
    struct pending_env *pe = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = st->stmt[ST_ENV_PAGE];
    bind_u64(s, 1, req->in.fetch.device);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)req->in.fetch.limit + 1);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == req->in.fetch.limit) {
            req->out.more = true;
            rc = SQLITE_DONE;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            pe = xrealloc(pe, cap * sizeof(*pe));
        }
        struct pending_env *p = &pe[n++];
        memset(p, 0, sizeof(*p));
        p->e.id = column_u64(s, 0);
        p->e.message_id = column_u64(s, 1);
        p->e.from_user = column_u64(s, 2);
        p->e.from_device = column_u64(s, 3);
        p->e.to_user = column_u64(s, 4);
        p->e.date = sqlite3_column_int64(s, 5);
        p->e.type = (uint32_t)sqlite3_column_int64(s, 6);
        const void *body = sqlite3_column_blob(s, 7);
        p->e.body_len = (size_t)sqlite3_column_bytes(s, 7);
        p->body_off = scratch_str(sc, body, body ? p->e.body_len : 0);
        p->from_off = scratch_column_text(sc, s, 8);
        p->to_off = scratch_column_text(sc, s, 9);
    }
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(st, "env_page", rc);
    sqlite3_reset(s);
    if (ret == 0 && n > 0) {
        size_t head = n * sizeof(struct store_envelope);
        char *block = xmalloc(head + sc->len);
        struct store_envelope *out = (struct store_envelope *)(void *)block;
        char *strs = block + head;
        memcpy(strs, sc->str, sc->len);
        for (size_t i = 0; i < n; i++) {
            out[i] = pe[i].e;
            out[i].from_name = strs + pe[i].from_off;
            out[i].to_name = strs + pe[i].to_off;
            out[i].body = (const uint8_t *)strs + pe[i].body_off;
        }
        req->out.envelopes = out;
        req->out.n_envelopes = n;
        req->priv = block;
    }
    /* The bodies were copied through the scratch: wipe it. */
    if (sc->len)
        memset(sc->str, 0, sc->len);
    free(pe);
    return ret;
}

static int op_secret_ack(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_ENV_DELETE];
    unsigned deleted = 0;
    for (size_t i = 0; i < req->in.ack.n_ids; i++) {
        bind_u64(s, 1, req->in.ack.ids[i]);
        bind_u64(s, 2, req->in.ack.device);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return sql_fail(st, "env_delete", rc);
        deleted += (unsigned)sqlite3_changes(st->db);
    }
    req->out.deleted = deleted;
    return 0;
}

/* ---- Auto-delete (writer thread) ---- */

static int update_insert_kind(struct store *st, uint64_t user, uint64_t pts, uint64_t message_id,
                              int kind, uint64_t arg, const void *ids, size_t ids_len)
{
    sqlite3_stmt *s = st->stmt[ST_UPDATE_INSERT_KIND];
    bind_u64(s, 1, user);
    bind_u64(s, 2, pts);
    bind_u64(s, 3, message_id);
    sqlite3_bind_int(s, 4, kind);
    bind_u64(s, 5, arg);
    if (ids)
        sqlite3_bind_blob(s, 6, ids, (int)ids_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 6);
    int rc = sqlite3_step(s);
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(st, "update_insert_kind", rc);
    sqlite3_reset(s);
    return ret;
}

/* Every refusal comes before the first write, as for SEND. */
static int op_set_ttl(struct store *st, struct store_req *req)
{
    const uint64_t user = req->in.ttl.user, peer = req->in.ttl.peer;
    const uint32_t ttl = req->in.ttl.ttl_s;
    struct user_entry *ue, *pe;
    users_reserve(st, 2);
    int ret = user_get(st, peer, &pe);
    if (ret == 0)
        ret = user_get(st, user, &ue);
    if (ret)
        return ret;
    sqlite3_stmt *s = st->stmt[ttl ? ST_TTL_PUT : ST_TTL_DELETE];
    bind_u64(s, 1, PL_MIN(user, peer));
    bind_u64(s, 2, PL_MAX(user, peer));
    if (ttl)
        sqlite3_bind_int64(s, 3, ttl);
    if ((ret = step_write(st, s, "ttl_put", PARLEY_ESTORE)) != 0)
        return ret;
    const uint64_t pts = ue->pts + 1, to_pts = peer != user ? pe->pts + 1 : 0;
    if ((ret = update_insert_kind(st, user, pts, peer, UPD_TTL_SELF, ttl, NULL, 0)) != 0)
        return ret;
    if (to_pts && (ret = update_insert_kind(st, peer, to_pts, user, UPD_TTL_PEER, ttl, NULL, 0)))
        return ret;
    ue->pts = pts;
    if (to_pts)
        pe->pts = to_pts;
    if (ttl)
        ue->ttl_chats = pe->ttl_chats = true;
    req->out.pts = pts;
    req->out.to_pts = to_pts;
    /* Both names, for the pushes: msgs[0].from_name (user), to_name (peer). */
    struct pending_msg *pm = scratch_msg(&st->scratch);
    pm->m.kind = STORE_UPD_TTL;
    pm->from_off = scratch_str(&st->scratch, ue->name, strlen(ue->name));
    pm->to_off = scratch_str(&st->scratch, pe->name, strlen(pe->name));
    pm->text_off = scratch_str(&st->scratch, "", 0);
    return 0;
}

/* An expired message, and which account lost it (one entry per account). */
struct purge_entry {
    uint64_t user;
    uint64_t id;
};

static int purge_entry_cmp(const void *a, const void *b)
{
    const struct purge_entry *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int delete_update(struct store *st, uint64_t user, uint64_t pts)
{
    sqlite3_stmt *s = st->stmt[ST_UPDATE_DELETE];
    bind_u64(s, 1, user);
    bind_u64(s, 2, pts);
    return step_write(st, s, "update_delete", PARLEY_ESTORE);
}

/* Reads the earliest expiry left into st->next_expiry (INT64_MAX: none). */
static int next_expiry_load(struct store *st)
{
    sqlite3_stmt *s = st->stmt[ST_NEXT_EXPIRY];
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        st->next_expiry = sqlite3_column_type(s, 0) == SQLITE_NULL ? INT64_MAX
                                                                    : sqlite3_column_int64(s, 0);
    else
        ret = sql_fail(st, "next_expiry", rc);
    sqlite3_reset(s);
    return ret;
}

static bool messages_due(const struct store *st, const struct store_req *req)
{
    return st->next_expiry == 0 || req->in.purge.now >= st->next_expiry;
}

static bool envelopes_due(const struct store *st, const struct store_req *req)
{
    return req->in.purge.envelopes_before &&
           (st->oldest_envelope == 0 || st->oldest_envelope < req->in.purge.envelopes_before);
}

static bool purge_due(const struct store *st, const struct store_req *req)
{
    return messages_due(st, req) || envelopes_due(st, req);
}

/* Reads the oldest envelope's date into st->oldest_envelope (INT64_MAX:
 * none). */
static int oldest_envelope_load(struct store *st)
{
    sqlite3_stmt *s = st->stmt[ST_ENV_OLDEST];
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        st->oldest_envelope = sqlite3_column_type(s, 0) == SQLITE_NULL
                                  ? INT64_MAX
                                  : sqlite3_column_int64(s, 0);
    else
        ret = sql_fail(st, "env_oldest", rc);
    sqlite3_reset(s);
    return ret;
}

/* Deletes up to limit envelopes older than the request's bound, then
 * reads the oldest date left (INT64_MAX: none). */
static int expire_envelopes(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_ENV_EXPIRE];
    sqlite3_bind_int64(s, 1, req->in.purge.envelopes_before);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)req->in.purge.limit);
    int ret = step_write(st, s, "env_expire", PARLEY_ESTORE);
    if (ret)
        return ret;
    req->out.envelopes_expired = (unsigned)sqlite3_changes(st->db);
    if (req->out.envelopes_expired == req->in.purge.limit)
        req->out.more = true;
    return oldest_envelope_load(st);
}

/* Builds PURGE's result block: the purged records, then their ids. */
static void purge_result(struct store_req *req, const struct purge_entry *e, size_t n,
                         const uint64_t *pts_of_user, size_t n_users)
{
    size_t head = n_users * sizeof(struct store_purged);
    char *block = xmalloc(head + n * sizeof(uint64_t));
    struct store_purged *out = (struct store_purged *)(void *)block;
    uint64_t *ids = (uint64_t *)(void *)(block + head);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || e[i].user != e[i - 1].user) {
            out[u].user_id = e[i].user;
            out[u].pts = pts_of_user[u];
            out[u].ids = ids + i;
            out[u].n_ids = 0;
            u++;
        }
        ids[i] = e[i].id;
        out[u - 1].n_ids++;
    }
    req->out.purged = out;
    req->out.n_purged = n_users;
    req->priv = block;
}

static int op_purge(struct store *st, struct store_req *req)
{
    if (envelopes_due(st, req)) {
        int ret = expire_envelopes(st, req);
        if (ret)
            return ret;
    }
    if (!messages_due(st, req))
        return 0;
    const unsigned limit = req->in.purge.limit;
    struct purge_entry *e = xmalloc(2 * (size_t)limit * sizeof(*e));
    size_t n = 0, rows = 0;
    sqlite3_stmt *s = st->stmt[ST_EXPIRED];
    sqlite3_bind_int64(s, 1, req->in.purge.now);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)limit + 1);
    int rc, ret = 0;
    /* Rows are read before any is deleted: the statement stays valid. */
    struct {
        uint64_t id, from, to, from_pts, to_pts;
    } *row = xmalloc((size_t)limit * sizeof(*row));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rows == limit) {
            req->out.more = true;
            rc = SQLITE_DONE;
            break;
        }
        row[rows].id = column_u64(s, 0);
        row[rows].from = column_u64(s, 1);
        row[rows].to = column_u64(s, 2);
        row[rows].from_pts = column_u64(s, 3);
        row[rows].to_pts = column_u64(s, 4);
        rows++;
    }
    if (rc != SQLITE_DONE)
        ret = sql_fail(st, "expired", rc);
    sqlite3_reset(s);

    /* Each account's pts is read before its newest update rows may be
     * deleted: a reload after that (the cache may be cold or emptied)
     * would compute it from what is left and hand out a used pts again. */
    for (size_t i = 0; i < rows; i++) {
        e[n++] = (struct purge_entry){row[i].from, row[i].id};
        if (row[i].to != row[i].from)
            e[n++] = (struct purge_entry){row[i].to, row[i].id};
    }
    qsort(e, n, sizeof(*e), purge_entry_cmp);
    uint64_t *pts = xmalloc((n ? n : 1) * sizeof(*pts));
    size_t n_users = 0;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        if (i > 0 && e[i].user == e[i - 1].user)
            continue;
        struct user_entry *ue;
        users_reserve(st, 1);
        if ((ret = user_get(st, e[i].user, &ue)) == 0)
            pts[n_users++] = ue->pts + 1;
    }

    for (size_t i = 0; ret == 0 && i < rows; i++) {
        if ((ret = delete_update(st, row[i].from, row[i].from_pts)) != 0)
            break;
        if (row[i].to != row[i].from && row[i].to_pts &&
            (ret = delete_update(st, row[i].to, row[i].to_pts)) != 0)
            break;
        sqlite3_stmt *d = st->stmt[ST_MSG_DELETE];
        bind_u64(d, 1, row[i].id);
        ret = step_write(st, d, "msg_delete", PARLEY_ESTORE);
    }
    free(row);

    /* One DELETED update per account, with its ids in increasing order, at
     * the pts read above: newer than any update row deleted, so the
     * account's pts never goes back, and a later reload finds it. */
    uint8_t *blob = xmalloc((n ? n : 1) * 8);
    for (size_t i = 0, u = 0; ret == 0 && i < n; u++) {
        size_t j = i;
        while (j < n && e[j].user == e[i].user)
            j++;
        for (size_t k = i; k < j; k++)
            for (int b = 0; b < 8; b++)
                blob[(k - i) * 8 + (size_t)b] = (uint8_t)(e[k].id >> (8 * b));
        ret = update_insert_kind(st, e[i].user, pts[u], 0, UPD_DELETED, 0, blob, (j - i) * 8);
        if (ret)
            break;
        struct user_entry *ue = u64map_get(&st->users, e[i].user);
        if (ue)
            ue->pts = pts[u];
        i = j;
    }
    free(blob);
    if (ret == 0)
        ret = next_expiry_load(st);
    if (ret == 0 && n_users)
        purge_result(req, e, n, pts, n_users);
    free(pts);
    free(e);
    return ret;
}

/* Whether req may write; a purge writes only when something is due. */
static bool op_writes(const struct store *st, const struct store_req *req)
{
    enum store_op op = req->op;
    if (op == STORE_OP_PURGE)
        return purge_due(st, req);
    return op == STORE_OP_SIGNUP || op == STORE_OP_SEND || op == STORE_OP_SYNC ||
           op == STORE_OP_UPLOAD_KEYS || op == STORE_OP_GET_BUNDLE ||
           op == STORE_OP_SECRET_SEND || op == STORE_OP_SECRET_ACK || op == STORE_OP_SET_TTL;
}

static int dispatch(struct store *st, struct store_req *req)
{
    switch (req->op) {
    case STORE_OP_SIGNUP:
        return op_signup(st, req);
    case STORE_OP_DEVICE:
        return op_device(st, req);
    case STORE_OP_RESOLVE:
        return op_resolve(st, req);
    case STORE_OP_SEND:
        return op_send(st, req);
    case STORE_OP_SYNC:
        return op_sync(st, req);
    case STORE_OP_HISTORY:
        return op_history(st, req);
    case STORE_OP_UPLOAD_KEYS:
        return op_upload_keys(st, req);
    case STORE_OP_GET_BUNDLE:
        return op_get_bundle(st, req);
    case STORE_OP_KEY_COUNT:
        return op_key_count(st, req);
    case STORE_OP_SECRET_SEND:
        return op_secret_send(st, req);
    case STORE_OP_SECRET_FETCH:
        return op_secret_fetch(st, req);
    case STORE_OP_SECRET_ACK:
        return op_secret_ack(st, req);
    case STORE_OP_SET_TTL:
        return op_set_ttl(st, req);
    case STORE_OP_PURGE:
        return op_purge(st, req);
    }
    return PARLEY_EINVAL;
}

/* Runs one request inside the open transaction. A sign-up or key upload,
 * which writes several rows and may be refused after the first, runs inside
 * its own savepoint so that a refusal undoes only its own changes. A send,
 * sync or bundle fetch needs none: every refusal comes before its first
 * write, each statement undoes itself when it fails, and a failure between
 * its writes (I/O, disk full) fails the whole batch. Returns the request's
 * status, or sets *lost when the enclosing transaction must not commit. */
static int run_one(struct store *st, struct store_req *req, bool *lost)
{
    bool savepoint = req->op == STORE_OP_SIGNUP || req->op == STORE_OP_UPLOAD_KEYS;
    int status;
    if (savepoint && exec_stmt(st, ST_SAVEPOINT) != 0) {
        status = PARLEY_ESTORE;
    } else {
        status = dispatch(st, req);
        if (status == 0)
            scratch_finish(&st->scratch, req);
        scratch_clear(&st->scratch);
        if (savepoint) {
            if (status != 0 && exec_stmt(st, ST_ROLLBACK_TO) != 0)
                *lost = true;
            if (exec_stmt(st, ST_RELEASE) != 0)
                *lost = true;
        } else if (status == PARLEY_ESTORE && op_writes(st, req)) {
            *lost = true; /* it may have written part of its rows */
        }
    }
    /* SQLite rolls back the whole transaction on some errors (I/O, full). */
    if (sqlite3_get_autocommit(st->db))
        *lost = true;
    return status;
}

static void fail_all(struct store_req *head, int status)
{
    for (struct store_req *r = head; r; r = r->next) {
        store_req_reset(r);
        memset(&r->out, 0, sizeof(r->out));
        r->status = status;
    }
}

static unsigned batch_bucket(unsigned n)
{
    unsigned b = 0;
    while (b < PL_ARRAY_LEN(((struct store_stats *)0)->batch_hist) - 1 && n >= 2u << b)
        b++;
    return b;
}

static unsigned latency_bucket(uint64_t us)
{
    unsigned b = 0;
    uint64_t lim = 250;
    while (b < PL_ARRAY_LEN(((struct store_stats *)0)->latency_hist) - 1 && us >= lim) {
        b++;
        lim *= 2;
    }
    return b;
}

/* Runs a batch of n requests in one transaction. A batch with any writing
 * request uses BEGIN IMMEDIATE and one durable COMMIT; a read-only batch
 * uses a read transaction, which costs no fsync. */
static void run_batch(struct store *st, struct store_req *head, unsigned n)
{
    bool write = false;
    for (struct store_req *r = head; r; r = r->next)
        write = write || op_writes(st, r);

    if (exec_stmt(st, write ? ST_BEGIN_WRITE : ST_BEGIN_READ) != 0) {
        fail_all(head, PARLEY_ESTORE);
        return;
    }
    bool lost = false;
    for (struct store_req *r = head; r && !lost; r = r->next)
        r->status = run_one(st, r, &lost);

    int rc = PARLEY_ESTORE;
    uint64_t t0 = uv_hrtime();
    if (!lost)
        rc = exec_stmt(st, ST_COMMIT);
    uint64_t commit_us = (uv_hrtime() - t0) / 1000;
    if (rc != 0) {
        if (!sqlite3_get_autocommit(st->db) && exec_stmt(st, ST_ROLLBACK) != 0)
            log_error(MODULE, "event=rollback_failed");
        log_error(MODULE, "event=batch_failed reqs=%u write=%d", n, write);
        fail_all(head, PARLEY_ESTORE);
        users_clear(st); /* it may hold pts of the rolled-back sends */
        st->next_expiry = 0; /* and the expiry after a rolled-back purge */
        st->oldest_envelope = 0;
        return;
    }
    log_debug(MODULE, "event=batch reqs=%u write=%d commit_us=%llu", n, write,
              (unsigned long long)commit_us);
    if (!write)
        return;
    for (struct store_req *r = head; r; r = r->next)
        if (r->status == 0 && ((r->op == STORE_OP_SECRET_ACK && r->out.deleted) ||
                               (r->op == STORE_OP_PURGE && (r->out.n_purged || r->out.envelopes_expired))))
            st->scrub = true;
    uv_mutex_lock(&st->lock);
    st->stats.commits++;
    st->stats.committed_reqs += n;
    st->stats.batch_hist[batch_bucket(n)]++;
    st->stats.latency_hist[latency_bucket(commit_us)]++;
    st->stats.latency_us_sum += commit_us;
    uv_mutex_unlock(&st->lock);
}

/* Hands finished requests to their ports, keeping their order, one lock
 * and one wake-up per run of requests of the same port. */
static void deliver(struct store_req *head)
{
    while (head) {
        struct store_port *port = head->port;
        struct store_req *last = head;
        while (last->next && last->next->port == port)
            last = last->next;
        struct store_req *rest = last->next;
        last->next = NULL;
        /* The wake-up is sent under the lock: once the loop has taken these
         * requests it may close and free the port, so nothing of it is
         * touched after the unlock. */
        uv_mutex_lock(&port->lock);
        if (port->done_tail)
            port->done_tail->next = head;
        else
            port->done_head = head;
        port->done_tail = last;
        uv_async_send(&port->async);
        uv_mutex_unlock(&port->lock);
        head = rest;
    }
}

/* Moves up to max requests from the front of queue (*qh, *qt) to the end of
 * the list (*head, *last); returns how many. */
static unsigned take(struct store_req **qh, struct store_req **qt, unsigned max,
                     struct store_req **head, struct store_req **last)
{
    unsigned n = 0;
    while (n < max && *qh) {
        struct store_req *r = *qh;
        *qh = r->next;
        r->next = NULL;
        if (*last)
            (*last)->next = r;
        else
            *head = r;
        *last = r;
        n++;
    }
    if (!*qh)
        *qt = NULL;
    return n;
}

/* Acked envelopes and purged messages are overwritten in the database
 * (secure_delete), but their pages stay in the write-ahead log until it is
 * reused. Once the
 * writer has nothing queued, a TRUNCATE checkpoint copies the log into the
 * database and empties it, so that no copy of a delivered envelope is left
 * in either file. The writer's connection is the only one, so the
 * checkpoint cannot be blocked by a reader. */
static void scrub_if_idle(struct store *st)
{
    if (!st->scrub)
        return;
    uv_mutex_lock(&st->lock);
    bool idle = !st->head && !st->bulk_head;
    uv_mutex_unlock(&st->lock);
    if (!idle)
        return;
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc != SQLITE_OK) {
        log_warn(MODULE, "event=checkpoint_failed rc=%d reason=\"%s\"", rc,
                 sqlite3_errmsg(st->db));
        return; /* tried again after the next batch */
    }
    st->scrub = false;
}

static void writer_main(void *arg)
{
    struct store *st = arg;
    for (;;) {
        uv_mutex_lock(&st->lock);
        while (!st->head && !st->bulk_head && !st->closing)
            uv_cond_wait(&st->cond, &st->lock);
        if (!st->head && !st->bulk_head) {
            uv_mutex_unlock(&st->lock);
            break;
        }
        /* Everything ordinary first (up to max_batch), then a few bulk
         * requests: the batch is one list, ordinary ones in front. */
        struct store_req *head = NULL, *last = NULL;
        unsigned n = take(&st->head, &st->tail, st->max_batch, &head, &last);
        unsigned room = PL_MAX(st->max_batch - n, 1u); /* bulk never starves outright */
        n += take(&st->bulk_head, &st->bulk_tail, PL_MIN(room, st->bulk_per_batch), &head,
                  &last);
        st->queued -= n;
        uv_mutex_unlock(&st->lock);

        run_batch(st, head, n);
        deliver(head);
        scrub_if_idle(st);
    }
}

/* ---- Opening and closing ---- */

static int db_exec(struct store *st, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error(MODULE, "event=open_failed step=\"%.40s\" rc=%d reason=\"%s\"", sql, rc,
                  msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return PARLEY_ESTORE;
    }
    return 0;
}

/* Runs a one-row query and returns its first column as an integer. */
static int db_query_int(struct store *st, const char *sql, sqlite3_int64 *out, char *text,
                        size_t text_size)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        log_error(MODULE, "event=open_failed step=\"%s\" rc=%d reason=\"%s\"", sql, rc,
                  sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
        return PARLEY_ESTORE;
    }
    if (out)
        *out = sqlite3_column_int64(s, 0);
    if (text) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(text, text_size, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(s);
    return 0;
}

/* Creates the schema in a fresh database, or upgrades an older one step by
 * step, inside one write transaction so that two processes opening the
 * same file cannot both create or migrate it, and a failed step leaves the
 * file as it was. A newer version than this build knows refuses to open. */
static int db_schema(struct store *st)
{
    sqlite3_int64 version = 0;
    int ret = db_exec(st, "BEGIN IMMEDIATE");
    if (ret)
        return ret;
    ret = db_query_int(st, "PRAGMA user_version", &version, NULL, 0);
    if (ret == 0 && (version < 0 || version > SCHEMA_VERSION)) {
        log_error(MODULE, "event=open_failed reason=\"schema version %lld, expected at most %d\"",
                  (long long)version, SCHEMA_VERSION);
        ret = PARLEY_ESTORE;
    }
    for (sqlite3_int64 v = version; ret == 0 && v < SCHEMA_VERSION; v++) {
        ret = db_exec(st, schema_steps[v]);
        if (ret == 0 && version > 0)
            log_info(MODULE, "event=migrate from=%lld to=%lld", (long long)v, (long long)v + 1);
    }
    if (ret == 0)
        ret = db_exec(st, "COMMIT");
    if (ret && !sqlite3_get_autocommit(st->db))
        (void)db_exec(st, "ROLLBACK");
    return ret;
}

static int db_open(struct store *st, const char *path)
{
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error(MODULE, "event=open_failed path=%s rc=%d reason=\"%s\"", path, rc,
                  st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        return PARLEY_ESTORE;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);

    char mode[16];
    int ret = db_query_int(st, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode));
    if (ret)
        return ret;
    if (strcmp(mode, "wal") != 0) {
        log_error(MODULE, "event=open_failed path=%s reason=\"journal_mode is %s, not wal\"", path,
                  mode);
        return PARLEY_ESTORE;
    }
    /* secure_delete: a deleted row (an acked envelope, a used prekey) is
     * overwritten in the file, not left in a free page. */
    ret = db_exec(st, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                      " PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON");
    if (ret)
        return ret;
    if ((ret = db_schema(st)) != 0)
        return ret;

    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            log_error(MODULE, "event=open_failed step=prepare sql=\"%s\" rc=%d reason=\"%s\"",
                      stmt_sql[i], rc, sqlite3_errmsg(st->db));
            return PARLEY_ESTORE;
        }
    }
    /* What the first purge needs, so that it is a no-op when nothing is due. */
    if ((ret = next_expiry_load(st)) != 0 || (ret = oldest_envelope_load(st)) != 0)
        return ret;
    return 0;
}

static void db_close(struct store *st)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(st->stmt[i]);
        st->stmt[i] = NULL;
    }
    int rc = sqlite3_close(st->db);
    if (rc != SQLITE_OK)
        log_error(MODULE, "event=close_failed rc=%d reason=\"%s\"", rc, sqlite3_errstr(rc));
    st->db = NULL;
}

int store_open(const struct store_config *cfg, struct store **out)
{
    if (!cfg || !cfg->path || !out)
        return PARLEY_EINVAL;
    if (!sqlite3_threadsafe()) {
        log_error(MODULE, "event=open_failed reason=\"libsqlite3 built without threads\"");
        return PARLEY_ESTORE;
    }
    /* No global allocation statistics: they take a mutex on every SQLite
     * malloc. Only possible before SQLite initializes; later calls (a second
     * store in one process) are refused harmlessly. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    struct store *st = xcalloc(1, sizeof(*st));
    u64map_init(&st->users);
    st->users_max = cfg->user_cache ? cfg->user_cache : DEFAULT_USER_CACHE;
    st->max_batch = cfg->max_batch ? cfg->max_batch : DEFAULT_MAX_BATCH;
    st->bulk_per_batch = cfg->bulk_per_batch ? cfg->bulk_per_batch : DEFAULT_BULK_PER_BATCH;
    st->max_queue = cfg->max_queue ? cfg->max_queue : DEFAULT_MAX_QUEUE;
    atomic_init(&st->refs, 1);

    int ret = PARLEY_ESTORE;
    if (uv_mutex_init(&st->lock) != 0)
        goto fail_mutex;
    if (uv_cond_init(&st->cond) != 0)
        goto fail_cond;
    if ((ret = db_open(st, cfg->path)) != 0)
        goto fail_db;
    if (uv_thread_create(&st->thread, writer_main, st) != 0) {
        log_error(MODULE, "event=open_failed reason=\"cannot start writer thread\"");
        ret = PARLEY_ESTORE;
        goto fail_db;
    }
    log_info(MODULE, "event=open path=%s max_batch=%u max_queue=%u user_cache=%u", cfg->path,
             st->max_batch, st->max_queue, st->users_max);
    *out = st;
    return 0;

fail_db:
    db_close(st);
    uv_cond_destroy(&st->cond);
fail_cond:
    uv_mutex_destroy(&st->lock);
fail_mutex:
    u64map_deinit(&st->users);
    free(st);
    return ret;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    uv_mutex_lock(&st->lock);
    st->closing = true;
    uv_cond_signal(&st->cond);
    uv_mutex_unlock(&st->lock);
    uv_thread_join(&st->thread);
    db_close(st);
    log_info(MODULE, "event=close commits=%llu", (unsigned long long)st->stats.commits);
    store_unref(st);
}

/* ---- Ports (their loop's thread) ---- */

static void port_maybe_close(struct store_port *port);

static void on_port_closed(uv_handle_t *h)
{
    struct store_port *port = PL_CONTAINER_OF(h, struct store_port, async);
    uv_mutex_destroy(&port->lock);
    store_unref(port->st);
    free(port);
}

static void on_port_async(uv_async_t *h)
{
    struct store_port *port = PL_CONTAINER_OF(h, struct store_port, async);
    uv_mutex_lock(&port->lock);
    struct store_req *r = port->done_head;
    port->done_head = port->done_tail = NULL;
    uv_mutex_unlock(&port->lock);
    while (r) {
        /* The callback may free or resubmit r, so nothing of r is read after. */
        struct store_req *next = r->next;
        r->next = NULL;
        port->inflight--;
        r->cb(r);
        r = next;
    }
    if (port->inflight == 0 && !port->close_started)
        uv_unref((uv_handle_t *)&port->async);
    port_maybe_close(port);
}

static void port_maybe_close(struct store_port *port)
{
    if (port->closing && !port->close_started && port->inflight == 0) {
        port->close_started = true;
        uv_close((uv_handle_t *)&port->async, on_port_closed);
    }
}

int store_port_open(struct store *st, uv_loop_t *loop, struct store_port **out)
{
    if (!st || !loop || !out)
        return PARLEY_EINVAL;
    uv_mutex_lock(&st->lock);
    bool closing = st->closing;
    if (!closing)
        atomic_fetch_add(&st->refs, 1);
    uv_mutex_unlock(&st->lock);
    if (closing)
        return PARLEY_EINVAL;

    struct store_port *port = xcalloc(1, sizeof(*port));
    port->st = st;
    if (uv_mutex_init(&port->lock) != 0)
        goto fail_mutex;
    if (uv_async_init(loop, &port->async, on_port_async) != 0)
        goto fail_async;
    /* An idle port does not keep its loop alive; submit refs it. */
    uv_unref((uv_handle_t *)&port->async);
    *out = port;
    return 0;

fail_async:
    uv_mutex_destroy(&port->lock);
fail_mutex:
    free(port);
    store_unref(st);
    return PARLEY_EINTERNAL;
}

void store_port_close(struct store_port *port)
{
    if (!port)
        return;
    port->closing = true;
    port_maybe_close(port);
}

static bool username_ok(const char *name)
{
    size_t n = strnlen(name, USERNAME_MAX + 1);
    return n > 0 && n <= USERNAME_MAX;
}

static int validate(const struct store_req *req)
{
    if (!req->cb)
        return PARLEY_EINVAL;
    switch (req->op) {
    case STORE_OP_SIGNUP:
        return username_ok(req->in.signup.username) ? 0 : PARLEY_EINVAL;
    case STORE_OP_DEVICE:
        return 0;
    case STORE_OP_RESOLVE:
        return username_ok(req->in.username) ? 0 : PARLEY_EINVAL;
    case STORE_OP_SEND:
        if (!req->in.send.from_user || !req->in.send.to_user || !req->in.send.client_id)
            return PARLEY_EINVAL;
        if (req->in.send.text_len > TEXT_MAX_BYTES || (!req->in.send.text && req->in.send.text_len))
            return PARLEY_EINVAL;
        return 0;
    case STORE_OP_SYNC:
        return req->in.sync.limit >= 1 && req->in.sync.limit <= STORE_PAGE_MAX ? 0 : PARLEY_EINVAL;
    case STORE_OP_HISTORY:
        return req->in.history.limit >= 1 && req->in.history.limit <= STORE_PAGE_MAX
                   ? 0
                   : PARLEY_EINVAL;
    case STORE_OP_UPLOAD_KEYS:
        if (!req->in.keys.device || req->in.keys.n_prekeys > STORE_PREKEYS_PER_UPLOAD ||
            (req->in.keys.n_prekeys && !req->in.keys.prekeys))
            return PARLEY_EINVAL;
        return 0;
    case STORE_OP_GET_BUNDLE:
        return req->in.bundle.user ? 0 : PARLEY_EINVAL;
    case STORE_OP_KEY_COUNT:
        return req->in.device_id ? 0 : PARLEY_EINVAL;
    case STORE_OP_SECRET_SEND:
        if (!req->in.secret.from_user || !req->in.secret.from_device || !req->in.secret.to_user ||
            !req->in.secret.client_id || !req->in.secret.envs || req->in.secret.n_envs == 0 ||
            req->in.secret.n_envs > STORE_ENVELOPES_MAX)
            return PARLEY_EINVAL;
        for (size_t i = 0; i < req->in.secret.n_envs; i++) {
            const struct store_envelope_in *e = &req->in.secret.envs[i];
            if (!e->device_id || !e->body || e->body_len == 0 ||
                e->body_len > STORE_ENVELOPE_BODY_MAX)
                return PARLEY_EINVAL;
        }
        return 0;
    case STORE_OP_SECRET_FETCH:
        return req->in.fetch.device && req->in.fetch.limit >= 1 &&
                       req->in.fetch.limit <= STORE_PAGE_MAX
                   ? 0
                   : PARLEY_EINVAL;
    case STORE_OP_SECRET_ACK:
        return req->in.ack.device && req->in.ack.ids && req->in.ack.n_ids >= 1 &&
                       req->in.ack.n_ids <= STORE_ACK_MAX
                   ? 0
                   : PARLEY_EINVAL;
    case STORE_OP_SET_TTL:
        return req->in.ttl.user && req->in.ttl.peer && req->in.ttl.ttl_s <= STORE_TTL_MAX
                   ? 0
                   : PARLEY_EINVAL;
    case STORE_OP_PURGE:
        return req->in.purge.limit >= 1 && req->in.purge.limit <= STORE_PURGE_MAX
                   ? 0
                   : PARLEY_EINVAL;
    }
    return PARLEY_EINVAL;
}

int store_submit(struct store_port *port, struct store_req *req)
{
    if (!port || !req || port->closing)
        return PARLEY_EINVAL;
    int ret = validate(req);
    if (ret)
        return ret;
    req->status = 0;
    memset(&req->out, 0, sizeof(req->out));
    req->port = port;
    req->next = NULL;
    req->priv = NULL;

    struct store *st = port->st;
    uv_mutex_lock(&st->lock);
    if (st->closing || st->queued >= st->max_queue) {
        if (!st->closing)
            st->stats.queue_refusals++;
        uv_mutex_unlock(&st->lock);
        return PARLEY_EBUSY;
    }
    bool was_empty = !st->head && !st->bulk_head;
    struct store_req **qh = req->bulk ? &st->bulk_head : &st->head;
    struct store_req **qt = req->bulk ? &st->bulk_tail : &st->tail;
    if (*qt)
        (*qt)->next = req;
    else
        *qh = req;
    *qt = req;
    st->queued++;
    if (was_empty)
        uv_cond_signal(&st->cond);
    uv_mutex_unlock(&st->lock);

    /* The completion is delivered on this thread, so it cannot overtake this. */
    if (port->inflight++ == 0)
        uv_ref((uv_handle_t *)&port->async);
    return 0;
}

void store_req_reset(struct store_req *req)
{
    if (!req)
        return;
    free(req->priv);
    req->priv = NULL;
    req->out.msgs = NULL;
    req->out.n_msgs = 0;
    req->out.bundles = NULL;
    req->out.n_bundles = 0;
    req->out.envs = NULL;
    req->out.n_envs = 0;
    req->out.n_mismatches = 0;
    req->out.envelopes = NULL;
    req->out.n_envelopes = 0;
    req->out.purged = NULL;
    req->out.n_purged = 0;
    req->out.msg.from_name = NULL;
    req->out.msg.to_name = NULL;
    req->out.msg.text = NULL;
}

void store_stats(struct store *st, struct store_stats *out)
{
    uv_mutex_lock(&st->lock);
    *out = st->stats;
    uv_mutex_unlock(&st->lock);
}
