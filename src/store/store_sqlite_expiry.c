/* SPDX-License-Identifier: MIT */
/* The SQLite backend's auto-delete: SET_TTL, and PURGE of expired messages
 * (through the expiry index) and of envelopes nobody took in time. Writer
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
    int ret = rc == SQLITE_DONE ? 0 : sq_sql_fail(st, "update_insert_kind", rc);
    sqlite3_reset(s);
    return ret;
}

/* Every refusal comes before the first write, as for SEND. */
int sq_op_set_ttl(struct store *st, struct store_req *req)
{
    const uint64_t user = req->in.ttl.user, peer = req->in.ttl.peer;
    const uint32_t ttl = req->in.ttl.ttl_s;
    struct user_entry *ue, *pe;
    sq_users_reserve(st, 2);
    int ret = sq_user_get(st, peer, &pe);
    if (ret == 0)
        ret = sq_user_get(st, user, &ue);
    if (ret)
        return ret;
    sqlite3_stmt *s = st->stmt[ttl ? ST_TTL_PUT : ST_TTL_DELETE];
    bind_u64(s, 1, PL_MIN(user, peer));
    bind_u64(s, 2, PL_MAX(user, peer));
    if (ttl)
        sqlite3_bind_int64(s, 3, ttl);
    if ((ret = sq_step_write(st, s, "ttl_put", PARLEY_ESTORE)) != 0)
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
    struct pending_msg *pm = sq_scratch_msg(&st->scratch);
    pm->m.kind = STORE_UPD_TTL;
    pm->from_off = sq_scratch_str(&st->scratch, ue->name, strlen(ue->name));
    pm->to_off = sq_scratch_str(&st->scratch, pe->name, strlen(pe->name));
    pm->text_off = sq_scratch_str(&st->scratch, "", 0);
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
    return sq_step_write(st, s, "update_delete", PARLEY_ESTORE);
}

/* Reads the earliest expiry left into st->next_expiry (INT64_MAX: none). */
int sq_next_expiry_load(struct store *st)
{
    sqlite3_stmt *s = st->stmt[ST_NEXT_EXPIRY];
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        st->next_expiry = sqlite3_column_type(s, 0) == SQLITE_NULL ? INT64_MAX
                                                                    : sqlite3_column_int64(s, 0);
    else
        ret = sq_sql_fail(st, "next_expiry", rc);
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

static bool tombs_due(const struct store *st, const struct store_req *req)
{
    return st->oldest_tomb == 0 || st->oldest_tomb < req->in.purge.now - TOMB_KEEP_S;
}

bool sq_purge_due(const struct store *st, const struct store_req *req)
{
    return messages_due(st, req) || envelopes_due(st, req) || tombs_due(st, req);
}

int sq_oldest_tomb_load(struct store *st)
{
    sqlite3_stmt *s = st->stmt[ST_TOMB_OLDEST];
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        st->oldest_tomb = sqlite3_column_type(s, 0) == SQLITE_NULL ? INT64_MAX
                                                                    : sqlite3_column_int64(s, 0);
    else
        ret = sq_sql_fail(st, "tomb_oldest", rc);
    sqlite3_reset(s);
    return ret;
}

/* Forgets purged sends kept longer than TOMB_KEEP_S, up to limit. */
static int expire_tombs(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_TOMB_EXPIRE];
    sqlite3_bind_int64(s, 1, req->in.purge.now - TOMB_KEEP_S);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)req->in.purge.limit);
    int ret = sq_step_write(st, s, "tomb_expire", PARLEY_ESTORE);
    if (ret)
        return ret;
    if ((unsigned)sqlite3_changes(st->db) == req->in.purge.limit)
        req->out.more = true;
    return sq_oldest_tomb_load(st);
}

/* Reads the oldest envelope's date into st->oldest_envelope (INT64_MAX:
 * none). */
int sq_oldest_envelope_load(struct store *st)
{
    sqlite3_stmt *s = st->stmt[ST_ENV_OLDEST];
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        st->oldest_envelope = sqlite3_column_type(s, 0) == SQLITE_NULL
                                  ? INT64_MAX
                                  : sqlite3_column_int64(s, 0);
    else
        ret = sq_sql_fail(st, "env_oldest", rc);
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
    int ret = sq_step_write(st, s, "env_expire", PARLEY_ESTORE);
    if (ret)
        return ret;
    req->out.envelopes_expired = (unsigned)sqlite3_changes(st->db);
    if (req->out.envelopes_expired)
        sq_queued_clear(st); /* which devices lost how many is not known */
    if (req->out.envelopes_expired == req->in.purge.limit)
        req->out.more = true;
    s = st->stmt[ST_SEND_EXPIRE];
    sqlite3_bind_int64(s, 1, req->in.purge.envelopes_before);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)req->in.purge.limit);
    if ((ret = sq_step_write(st, s, "send_expire", PARLEY_ESTORE)) != 0)
        return ret;
    if ((unsigned)sqlite3_changes(st->db) == req->in.purge.limit)
        req->out.more = true;
    return sq_oldest_envelope_load(st);
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

int sq_op_purge(struct store *st, struct store_req *req)
{
    if (envelopes_due(st, req)) {
        int ret = expire_envelopes(st, req);
        if (ret)
            return ret;
    }
    if (tombs_due(st, req)) {
        int ret = expire_tombs(st, req);
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
        uint64_t id, from, to, from_pts, to_pts, client_id;
        int64_t date;
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
        row[rows].client_id = column_u64(s, 5);
        row[rows].date = sqlite3_column_int64(s, 6);
        rows++;
    }
    if (rc != SQLITE_DONE)
        ret = sq_sql_fail(st, "expired", rc);
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
        sq_users_reserve(st, 1);
        if ((ret = sq_user_get(st, e[i].user, &ue)) == 0)
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
        if ((ret = sq_step_write(st, d, "msg_delete", PARLEY_ESTORE)) != 0)
            break;
        /* Its retries still find it for a day (send_find_purged). */
        d = st->stmt[ST_TOMB_INSERT];
        bind_u64(d, 1, row[i].from);
        bind_u64(d, 2, row[i].client_id);
        bind_u64(d, 3, row[i].id);
        bind_u64(d, 4, row[i].to);
        bind_u64(d, 5, row[i].from_pts);
        sqlite3_bind_int64(d, 6, row[i].date);
        sqlite3_bind_int64(d, 7, req->in.purge.now);
        if ((ret = sq_step_write(st, d, "tomb_insert", PARLEY_ESTORE)) != 0)
            break;
        if (st->oldest_tomb == INT64_MAX)
            st->oldest_tomb = req->in.purge.now;
        struct user_entry *fe = u64map_get(&st->users, row[i].from);
        if (fe)
            fe->ttl_chats = true;
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
        ret = sq_next_expiry_load(st);
    if (ret == 0 && n_users)
        purge_result(req, e, n, pts, n_users);
    free(pts);
    free(e);
    return ret;
}
