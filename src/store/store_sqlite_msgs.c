/* SPDX-License-Identifier: MIT */
/* The SQLite backend's operations on accounts, devices, 1:1 messages and
 * the update log: SIGNUP, DEVICE, RESOLVE, SEND, SYNC, HISTORY. Writer
 * thread, inside the batch transaction (store_sqlite.c). */
#include "store_sqlite_int.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/text.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

int sq_op_signup(struct store *st, struct store_req *req)
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
        ret = sq_sql_fail(st, "user_insert", rc);
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
        ret = sq_sql_fail(st, "device_insert", rc);
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

int sq_op_device(struct store *st, struct store_req *req)
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
        ret = sq_sql_fail(st, "device_get", rc);
    }
    sqlite3_reset(s);
    if (ret)
        return ret;
    struct user_entry *ue;
    sq_users_reserve(st, 1);
    if ((ret = sq_user_get(st, req->out.user_id, &ue)) != 0)
        return ret == PARLEY_ENOUSER ? PARLEY_ESTORE : ret;
    req->out.pts = ue->pts;
    return 0;
}

int sq_op_resolve(struct store *st, struct store_req *req)
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
        ret = sq_sql_fail(st, "user_by_name", rc);
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
        sq_scratch_msg_row(&st->scratch, s);
        *found = true;
    } else if (rc != SQLITE_DONE) {
        ret = sq_sql_fail(st, "msg_by_client_id", rc);
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
        ret = sq_sql_fail(st, "ttl_get", rc);
    sqlite3_reset(s);
    return ret;
}

/* A retry of a message that auto-delete has purged (its row, and with it
 * the UNIQUE key that finds retries, is gone): answered from the purged
 * send's record with its id, pts and date and no text. Returns 0 with
 * *found, or an error. */
static int send_find_purged(struct store *st, struct store_req *req, struct user_entry *fu,
                            bool *found)
{
    sqlite3_stmt *s = st->stmt[ST_TOMB_GET];
    bind_u64(s, 1, req->in.send.from_user);
    bind_u64(s, 2, req->in.send.client_id);
    int rc = sqlite3_step(s);
    int ret = 0;
    *found = rc == SQLITE_ROW;
    struct store_msg m = {0};
    if (rc == SQLITE_ROW) {
        m.id = column_u64(s, 0);
        m.to_user = column_u64(s, 1);
        m.pts = column_u64(s, 2);
        m.date = sqlite3_column_int64(s, 3);
    } else if (rc != SQLITE_DONE) {
        ret = sq_sql_fail(st, "tomb_get", rc);
    }
    sqlite3_reset(s);
    if (ret || !*found)
        return ret;
    struct user_entry *tu;
    if ((ret = sq_user_get(st, m.to_user, &tu)) != 0)
        return ret;
    struct scratch *sc = &st->scratch;
    struct pending_msg *pm = sq_scratch_msg(sc);
    pm->m = m;
    pm->m.from_user = req->in.send.from_user;
    pm->m.client_id = req->in.send.client_id;
    pm->from_off = sq_scratch_str(sc, fu->name, strlen(fu->name));
    pm->to_off = sq_scratch_str(sc, tu->name, strlen(tu->name));
    pm->text_off = sq_scratch_str(sc, "", 0);
    req->out.duplicate = true;
    req->out.to_pts = 0;
    return 0;
}

int sq_op_send(struct store *st, struct store_req *req)
{
    const uint64_t from = req->in.send.from_user, to = req->in.send.to_user;
    struct scratch *sc = &st->scratch;
    struct user_entry *fu, *tu;
    sq_users_reserve(st, 3);
    int ret = sq_user_get(st, to, &tu);
    if (ret == 0)
        ret = sq_user_get(st, from, &fu);
    if (ret)
        return ret;
    if (fu->ttl_chats) {
        bool purged;
        if ((ret = send_find_purged(st, req, fu, &purged)) != 0 || purged)
            return ret;
    }
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
            return sq_sql_fail(st, "msg_duplicate_vanished", rc);
        req->out.duplicate = true;
        req->out.to_pts = 0;
        return 0;
    }
    if (rc != SQLITE_DONE)
        return sq_sql_fail(st, "msg_insert", rc);
    uint64_t msg_id = (uint64_t)sqlite3_last_insert_rowid(st->db);

    if ((ret = sq_update_insert(st, from, from_pts, msg_id)) != 0)
        return ret;
    if (to != from && (ret = sq_update_insert(st, to, to_pts, msg_id)) != 0)
        return ret;
    fu->pts = from_pts;
    if (to != from)
        tu->pts = to_pts;

    struct pending_msg *pm = sq_scratch_msg(sc);
    pm->from_off = sq_scratch_str(sc, fu->name, strlen(fu->name));
    pm->to_off = sq_scratch_str(sc, tu->name, strlen(tu->name));
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
    pm->text_off = sq_scratch_str(sc, text, text_len);
    req->out.duplicate = false;
    req->out.to_pts = to_pts;
    return 0;
}

int sq_op_sync(struct store *st, struct store_req *req)
{
    const uint64_t user = req->in.sync.user;
    struct user_entry *ue;
    sq_users_reserve(st, 1);
    int ret = sq_user_get(st, user, &ue);
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
            sq_scratch_update_row(&st->scratch, s);
        }
        if (rc != SQLITE_DONE)
            ret = sq_sql_fail(st, "sync_page", rc);
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
            ret = sq_sql_fail(st, "device_sync_pts", rc);
        sqlite3_reset(s);
    }
    return ret;
}

int sq_op_history(struct store *st, struct store_req *req)
{
    const uint64_t user = req->in.history.user, peer = req->in.history.peer;
    struct user_entry *ue;
    sq_users_reserve(st, 1);
    int ret = sq_user_get(st, peer, &ue);
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
        sq_scratch_msg_row(&st->scratch, s);
    if (rc != SQLITE_DONE)
        ret = sq_sql_fail(st, "history_page", rc);
    sqlite3_reset(s);
    return ret;
}
