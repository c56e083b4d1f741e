/* SPDX-License-Identifier: MIT */
/* The SQLite backend of store.h: one connection, owned by one writer thread
 * that runs queued requests in batches (one transaction and one fsync per
 * batch) and hands each result back through its request's port. This file
 * holds the schema, the statements, the threads and batching, the ports and
 * the helpers the operations share (store_sqlite_int.h); the operations are
 * in store_sqlite_{msgs,keys,secret,expiry}.c. The schema, batching rules
 * and lifetimes are described in docs/internals/store.md. */
#include "store/store.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/text.h"
#include "common/u64map.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_sqlite_int.h"

#include "common/banned.h"

#define SCHEMA_VERSION STORE_SCHEMA_VERSION
#define DEFAULT_MAX_BATCH 1024
#define DEFAULT_MAX_QUEUE 65536
#define DEFAULT_USER_CACHE (1u << 20)
#define DEFAULT_CHECKPOINT_BYTES (128u << 20)
#define DEFAULT_BULK_PER_BATCH 64
#define DEFAULT_ENVELOPES_PER_DEVICE 10000
#define BUSY_TIMEOUT_MS 5000
/* Under load, deleted content leaves the write-ahead log within this. */
#define SCRUB_MAX_NS (10ull * 1000 * 1000 * 1000)

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

/* Version 5: what a send leaves for its retries once its content is gone:
 * a secret send's ids, recipient and date after its envelopes are acked
 * (expires with the envelopes), and a cloud message's after auto-delete
 * purged it (kept a day). No content. */
static const char schema_v5_sql[] =
    "CREATE TABLE secret_sends ("
    " from_user INTEGER NOT NULL,"
    " client_id INTEGER NOT NULL,"
    " message_id INTEGER NOT NULL,"
    " from_device INTEGER NOT NULL,"
    " to_user INTEGER NOT NULL,"
    " date INTEGER NOT NULL,"
    " PRIMARY KEY (from_user, client_id)) WITHOUT ROWID;"
    "CREATE INDEX secret_sends_date ON secret_sends(date);"
    "CREATE TABLE purged_sends ("
    " from_user INTEGER NOT NULL,"
    " client_id INTEGER NOT NULL,"
    " message_id INTEGER NOT NULL,"
    " to_user INTEGER NOT NULL,"
    " from_pts INTEGER NOT NULL,"
    " date INTEGER NOT NULL,"
    " purged INTEGER NOT NULL,"
    " PRIMARY KEY (from_user, client_id)) WITHOUT ROWID;"
    "CREATE INDEX purged_sends_purged ON purged_sends(purged);"
    "INSERT OR IGNORE INTO secret_sends (from_user, client_id, message_id, from_device, to_user,"
    " date) SELECT from_user, client_id, message_id, from_device, to_user, date FROM envelopes;"
    "PRAGMA user_version = 5;";

/* schema_steps[v] takes a database from version v to v + 1. */
static const char *const schema_steps[SCHEMA_VERSION] = {
    schema_v1_sql, schema_v2_sql, schema_v3_sql, schema_v4_sql, schema_v5_sql};

/* clang-format on */

/* Columns 0-8 of every message query; column 9 is the pts to report and
 * column 10 the expiry. */
#define MSG_COLS                                                                                   \
    "m.id, m.from_user, m.from_device, m.to_user, m.client_id, m.date, m.text, fu.username, "      \
    "tu.username"
#define MSG_JOIN " JOIN users fu ON fu.id = m.from_user JOIN users tu ON tu.id = m.to_user"

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
                     " OR EXISTS (SELECT 1 FROM purged_sends t WHERE t.from_user = u.id)"
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
    [ST_ENV_BY_CLIENT_ID] = "SELECT message_id, from_device, to_user, date FROM secret_sends"
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
    [ST_EXPIRED] = "SELECT id, from_user, to_user, from_pts, to_pts, client_id, date FROM messages"
                   " WHERE expires > 0 AND expires <= ?1 ORDER BY expires, id LIMIT ?2",
    [ST_UPDATE_DELETE] = "DELETE FROM updates WHERE user_id = ?1 AND pts = ?2",
    [ST_MSG_DELETE] = "DELETE FROM messages WHERE id = ?1",
    [ST_NEXT_EXPIRY] = "SELECT min(expires) FROM messages WHERE expires > 0",
    [ST_ENV_EXPIRE] = "DELETE FROM envelopes WHERE id IN (SELECT id FROM envelopes"
                      " WHERE date < ?1 ORDER BY date LIMIT ?2)",
    /* Every envelope has its send's row, with the same date. */
    [ST_ENV_OLDEST] = "SELECT min(date) FROM secret_sends",
    [ST_ENV_COUNT] = "SELECT count(*) FROM envelopes WHERE device_id = ?1",
    [ST_TOMB_INSERT] = "INSERT OR REPLACE INTO purged_sends (from_user, client_id, message_id,"
                       " to_user, from_pts, date, purged) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_TOMB_GET] = "SELECT message_id, to_user, from_pts, date FROM purged_sends"
                    " WHERE from_user = ?1 AND client_id = ?2",
    [ST_TOMB_EXPIRE] = "DELETE FROM purged_sends WHERE (from_user, client_id) IN"
                       " (SELECT from_user, client_id FROM purged_sends WHERE purged < ?1"
                       " ORDER BY purged LIMIT ?2)",
    [ST_TOMB_OLDEST] = "SELECT min(purged) FROM purged_sends",
    [ST_SEND_RECORD] = "INSERT INTO secret_sends (from_user, client_id, message_id, from_device,"
                       " to_user, date) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_SEND_EXPIRE] = "DELETE FROM secret_sends WHERE (from_user, client_id) IN"
                       " (SELECT from_user, client_id FROM secret_sends WHERE date < ?1"
                       " ORDER BY date LIMIT ?2)",
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
    u64map_deinit(&st->queued_envs);
    uv_cond_destroy(&st->cond);
    uv_mutex_destroy(&st->lock);
    free(st);
}

/* ---- SQLite helpers (writer thread) ---- */

int sq_sql_fail(struct store *st, const char *what, int rc)
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
    int ret = rc == SQLITE_DONE ? 0 : sq_sql_fail(st, stmt_sql[id], rc);
    sqlite3_reset(s);
    return ret;
}

/* ---- Result building (writer thread) ---- */

static void scratch_clear(struct scratch *sc)
{
    sc->n_msgs = 0;
    sc->len = 0;
}

/* Appends n bytes of p and a NUL; returns the offset of the copy. */
size_t sq_scratch_str(struct scratch *sc, const void *p, size_t n)
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

struct pending_msg *sq_scratch_msg(struct scratch *sc)
{
    if (sc->n_msgs == sc->cap_msgs) {
        sc->cap_msgs = sc->cap_msgs ? sc->cap_msgs * 2 : 64;
        sc->msgs = xrealloc(sc->msgs, sc->cap_msgs * sizeof(*sc->msgs));
    }
    struct pending_msg *pm = &sc->msgs[sc->n_msgs++];
    memset(pm, 0, sizeof(*pm));
    return pm;
}

size_t sq_scratch_column_text(struct scratch *sc, sqlite3_stmt *s, int i)
{
    const unsigned char *p = sqlite3_column_text(s, i);
    size_t n = p ? (size_t)sqlite3_column_bytes(s, i) : 0;
    return sq_scratch_str(sc, p, n);
}

/* Reads one row of a MSG_COLS query (plus the pts in column 9). */
void sq_scratch_msg_row(struct scratch *sc, sqlite3_stmt *s)
{
    struct pending_msg *pm = sq_scratch_msg(sc);
    pm->m.id = column_u64(s, 0);
    pm->m.from_user = column_u64(s, 1);
    pm->m.from_device = column_u64(s, 2);
    pm->m.to_user = column_u64(s, 3);
    pm->m.client_id = column_u64(s, 4);
    pm->m.date = sqlite3_column_int64(s, 5);
    pm->text_off = sq_scratch_column_text(sc, s, 6);
    pm->m.text_len = (size_t)sqlite3_column_bytes(s, 6);
    pm->from_off = sq_scratch_column_text(sc, s, 7);
    pm->to_off = sq_scratch_column_text(sc, s, 8);
    pm->m.pts = column_u64(s, 9);
    pm->m.expires = sqlite3_column_int64(s, 10);
}

/* Reads one row of the sync page: a message, or another kind of update. */
void sq_scratch_update_row(struct scratch *sc, sqlite3_stmt *s)
{
    int kind = sqlite3_column_int(s, 11);
    if (kind == UPD_MESSAGE) {
        sq_scratch_msg_row(sc, s);
        return;
    }
    struct pending_msg *pm = sq_scratch_msg(sc);
    pm->m.pts = column_u64(s, 9);
    pm->from_off = pm->text_off = sq_scratch_str(sc, "", 0);
    pm->to_off = sq_scratch_column_text(sc, s, 15); /* TTL: the peer's name; else "" */
    if (kind == UPD_DELETED) {
        const void *ids = sqlite3_column_blob(s, 13);
        size_t n = ids ? (size_t)sqlite3_column_bytes(s, 13) / 8 : 0;
        pm->m.kind = STORE_UPD_DELETED;
        pm->m.n_ids = n;
        pm->ids_off = sq_scratch_str(sc, ids, n * 8);
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

/* ---- The user cache and the update log (writer thread) ---- */

/* Makes room for n more cache entries: when the cache would pass its
 * bound it is emptied (entries reload on use), so call this before taking
 * pointers to entries a request needs. */
void sq_users_reserve(struct store *st, unsigned n)
{
    if (st->users.len + n > st->users_max)
        users_clear(st);
}

/* The cache entry of user id, loaded on a miss. Returns 0 and sets *out,
 * PARLEY_ENOUSER or PARLEY_ESTORE. */
int sq_user_get(struct store *st, uint64_t id, struct user_entry **out)
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
        ret = sq_sql_fail(st, "user_load", rc);
    }
    sqlite3_reset(s);
    return ret;
}

int sq_update_insert(struct store *st, uint64_t user, uint64_t pts, uint64_t msg_id)
{
    sqlite3_stmt *s = st->stmt[ST_UPDATE_INSERT];
    bind_u64(s, 1, user);
    bind_u64(s, 2, pts);
    bind_u64(s, 3, msg_id);
    int rc = sqlite3_step(s);
    int ret = rc == SQLITE_DONE ? 0 : sq_sql_fail(st, "update_insert", rc);
    sqlite3_reset(s);
    return ret;
}

/* Runs a statement that returns no rows; a UNIQUE or PRIMARY KEY conflict
 * returns conflict, any other failure PARLEY_ESTORE. */
int sq_step_write(struct store *st, sqlite3_stmt *s, const char *what, int conflict)
{
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
        ret = conflict;
    else if (rc != SQLITE_DONE)
        ret = sq_sql_fail(st, what, rc);
    sqlite3_reset(s);
    return ret;
}

/* Copies a blob column of exactly n bytes; false if it has another size. */
bool sq_column_blob_n(sqlite3_stmt *s, int i, void *dst, size_t n)
{
    const void *p = sqlite3_column_blob(s, i);
    if (!p || (size_t)sqlite3_column_bytes(s, i) != n)
        return false;
    memcpy(dst, p, n);
    return true;
}

/* Whether req may write; a purge writes only when something is due. */
static bool op_writes(const struct store *st, const struct store_req *req)
{
    enum store_op op = req->op;
    if (op == STORE_OP_PURGE)
        return sq_purge_due(st, req);
    return op == STORE_OP_SIGNUP || op == STORE_OP_SEND || op == STORE_OP_SYNC ||
           op == STORE_OP_UPLOAD_KEYS || op == STORE_OP_GET_BUNDLE ||
           op == STORE_OP_SECRET_SEND || op == STORE_OP_SECRET_ACK || op == STORE_OP_SET_TTL;
}

static int dispatch(struct store *st, struct store_req *req)
{
    switch (req->op) {
    case STORE_OP_SIGNUP:
        return sq_op_signup(st, req);
    case STORE_OP_DEVICE:
        return sq_op_device(st, req);
    case STORE_OP_RESOLVE:
        return sq_op_resolve(st, req);
    case STORE_OP_SEND:
        return sq_op_send(st, req);
    case STORE_OP_SYNC:
        return sq_op_sync(st, req);
    case STORE_OP_HISTORY:
        return sq_op_history(st, req);
    case STORE_OP_UPLOAD_KEYS:
        return sq_op_upload_keys(st, req);
    case STORE_OP_GET_BUNDLE:
        return sq_op_get_bundle(st, req);
    case STORE_OP_KEY_COUNT:
        return sq_op_key_count(st, req);
    case STORE_OP_SECRET_SEND:
        return sq_op_secret_send(st, req);
    case STORE_OP_SECRET_FETCH:
        return sq_op_secret_fetch(st, req);
    case STORE_OP_SECRET_ACK:
        return sq_op_secret_ack(st, req);
    case STORE_OP_SET_TTL:
        return sq_op_set_ttl(st, req);
    case STORE_OP_PURGE:
        return sq_op_purge(st, req);
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
        } else if (status == PARLEY_ESTORE &&
                   (req->op == STORE_OP_PURGE || op_writes(st, req))) {
            /* A purge changes what op_writes looks at: any failure of one
             * counts as a partial write. */
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
        sq_queued_clear(st); /* and counts of rolled-back envelopes */
        st->next_expiry = 0; /* and the expiry after a rolled-back purge */
        st->oldest_envelope = 0;
        st->oldest_tomb = 0;
        return;
    }
    log_debug(MODULE, "event=batch reqs=%u write=%d commit_us=%llu", n, write,
              (unsigned long long)commit_us);
    if (!write)
        return;
    for (struct store_req *r = head; r; r = r->next) {
        bool deleted = r->status == 0 && ((r->op == STORE_OP_SECRET_ACK && r->out.deleted) ||
                                          (r->op == STORE_OP_PURGE &&
                                           (r->out.n_purged || r->out.envelopes_expired)));
        if (deleted && !st->scrub) {
            st->scrub = true;
            st->scrub_since = uv_hrtime();
        }
    }
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
 * reused. Once the writer has nothing queued, or at the latest SCRUB_MAX_NS
 * after the first such deletion even under load, a TRUNCATE checkpoint
 * copies the log into the database and empties it, so that no copy of a
 * delivered envelope or an expired message is left in either file. The
 * writer's connection is the only one, so no reader can block it. */
static void scrub_if_idle(struct store *st)
{
    if (!st->scrub)
        return;
    uv_mutex_lock(&st->lock);
    bool idle = !st->head && !st->bulk_head;
    uv_mutex_unlock(&st->lock);
    if (!idle && uv_hrtime() - st->scrub_since < SCRUB_MAX_NS)
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
    (void)pthread_setname_np(pthread_self(), "parley-store");
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

/* The writer copies the write-ahead log into the database (SQLite's
 * automatic checkpoint, at the end of a commit) once the log holds
 * checkpoint_bytes, not SQLite's default of 1000 pages (4 MiB): a send
 * dirties a few pages spread over the file (the message, its two index
 * entries, an update row for each side), every commit appends them to the
 * log again, and each checkpoint writes the newest copy of every page once
 * and fsyncs the database. Rarer checkpoints write each hot page once for
 * many commits (docs/BENCHMARKS.md: 20-30 % more sends per second under
 * load). The log file is cut back to the same size after it restarts, so
 * one large transaction does not leave a large file behind. The writer's
 * connection is the only one, so each checkpoint completes and the log
 * restarts from its beginning at the next commit: the log stays near
 * checkpoint_bytes. */
static int db_checkpoint_size(struct store *st)
{
    sqlite3_int64 page = 0;
    int ret = db_query_int(st, "PRAGMA page_size", &page, NULL, 0);
    if (ret)
        return ret;
    uint64_t pages = st->checkpoint_bytes / (uint64_t)PL_MAX(page, 512);
    pages = PL_MIN(PL_MAX(pages, 1u), (uint64_t)INT32_MAX);
    if (sqlite3_wal_autocheckpoint(st->db, (int)pages) != SQLITE_OK)
        return PARLEY_ESTORE;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %" PRIu64, st->checkpoint_bytes);
    return db_query_int(st, sql, NULL, NULL, 0);
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
    if ((ret = db_checkpoint_size(st)) != 0)
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
    if ((ret = sq_next_expiry_load(st)) != 0 || (ret = sq_oldest_envelope_load(st)) != 0 ||
        (ret = sq_oldest_tomb_load(st)) != 0)
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
    u64map_init(&st->queued_envs);
    st->users_max = cfg->user_cache ? cfg->user_cache : DEFAULT_USER_CACHE;
    st->envelopes_per_device =
        cfg->envelopes_per_device ? cfg->envelopes_per_device : DEFAULT_ENVELOPES_PER_DEVICE;
    st->max_batch = cfg->max_batch ? cfg->max_batch : DEFAULT_MAX_BATCH;
    st->bulk_per_batch = cfg->bulk_per_batch ? cfg->bulk_per_batch : DEFAULT_BULK_PER_BATCH;
    st->max_queue = cfg->max_queue ? cfg->max_queue : DEFAULT_MAX_QUEUE;
    st->checkpoint_bytes = cfg->checkpoint_bytes ? cfg->checkpoint_bytes : DEFAULT_CHECKPOINT_BYTES;
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
    log_info(MODULE,
             "event=open path=%s max_batch=%u max_queue=%u user_cache=%u checkpoint_bytes=%" PRIu64,
             cfg->path, st->max_batch, st->max_queue, st->users_max, st->checkpoint_bytes);
    *out = st;
    return 0;

fail_db:
    db_close(st);
    uv_cond_destroy(&st->cond);
fail_cond:
    uv_mutex_destroy(&st->lock);
fail_mutex:
    u64map_deinit(&st->users);
    u64map_deinit(&st->queued_envs);
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
        return req->in.fetch.device && req->in.fetch.limit >= 1 && req->in.fetch.max_bytes &&
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
