/* SPDX-License-Identifier: MIT */
/* The SQLite backend's secret-message operations: SECRET_SEND (the device
 * list check and one envelope row per device), SECRET_FETCH, SECRET_ACK.
 * Writer thread, inside the batch transaction (store_sqlite.c). */
#include "store_sqlite_int.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/text.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

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
        ret = sq_sql_fail(st, "device_user", rc);
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
    int ret = rc == SQLITE_DONE ? 0 : sq_sql_fail(st, "keyed_devices", rc);
    sqlite3_reset(s);
    return ret;
}

void sq_queued_clear(struct store *st)
{
    u64map_deinit(&st->queued_envs);
    u64map_init(&st->queued_envs);
}

/* How many envelopes device has queued: from the counts, or counted
 * through its index range (bounded by the cap). */
static int queued_get(struct store *st, uint64_t device, size_t *out)
{
    void *v = u64map_get(&st->queued_envs, device);
    if (v) {
        *out = (size_t)(uintptr_t)v - 1;
        return 0;
    }
    sqlite3_stmt *s = st->stmt[ST_ENV_COUNT];
    bind_u64(s, 1, device);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(s, 0);
    else
        ret = sq_sql_fail(st, "env_count", rc);
    sqlite3_reset(s);
    if (ret == 0) {
        if (st->queued_envs.len >= st->users_max)
            sq_queued_clear(st);
        u64map_put(&st->queued_envs, device, (void *)(uintptr_t)(*out + 1));
    }
    return ret;
}

static void queued_add(struct store *st, uint64_t device, size_t n, bool remove)
{
    void *v = u64map_get(&st->queued_envs, device);
    if (!v)
        return; /* not counted yet: loads when needed */
    size_t q = (size_t)(uintptr_t)v - 1;
    q = remove ? (q > n ? q - n : 0) : q + n;
    u64map_put(&st->queued_envs, device, (void *)(uintptr_t)(q + 1));
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
        ret = sq_sql_fail(st, "env_by_client_id", rc);
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
int sq_op_secret_send(struct store *st, struct store_req *req)
{
    const uint64_t from = req->in.secret.from_user, to = req->in.secret.to_user;
    const struct store_envelope_in *envs = req->in.secret.envs;
    const size_t n_envs = req->in.secret.n_envs;
    struct user_entry *fu, *tu;
    sq_users_reserve(st, 2);
    int ret = sq_user_get(st, to, &tu);
    if (ret == 0)
        ret = sq_user_get(st, from, &fu);
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
        if (req->out.msg.to_user != to && (ret = sq_user_get(st, req->out.msg.to_user, &tu)) != 0)
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

    /* A device that never takes its envelopes must not fill the disk. */
    for (size_t i = 0; i < n_envs; i++) {
        size_t q = 0;
        if ((ret = queued_get(st, envs[i].device_id, &q)) != 0)
            goto out;
        if (q >= st->envelopes_per_device) {
            ret = PARLEY_EQUEUE_FULL;
            goto out;
        }
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
        if ((ret = sq_step_write(st, s, "env_insert", PARLEY_ESTORE)) != 0)
            break;
        refs[i].id = (uint64_t)sqlite3_last_insert_rowid(st->db);
        queued_add(st, envs[i].device_id, 1, false);
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
            ret = sq_step_write(st, u, "env_set_message", PARLEY_ESTORE);
        }
    }
    if (ret)
        goto out;
    /* Retries find the send here, even once every copy is acked. */
    s = st->stmt[ST_SEND_RECORD];
    bind_u64(s, 1, from);
    bind_u64(s, 2, req->in.secret.client_id);
    bind_u64(s, 3, message_id);
    bind_u64(s, 4, req->in.secret.from_device);
    bind_u64(s, 5, to);
    sqlite3_bind_int64(s, 6, date);
    if ((ret = sq_step_write(st, s, "send_record", PARLEY_ESTORE)) != 0)
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

int sq_op_secret_fetch(struct store *st, struct store_req *req)
{
    struct scratch *sc = &st->scratch;
    struct pending_env *pe = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = st->stmt[ST_ENV_PAGE];
    bind_u64(s, 1, req->in.fetch.device);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)req->in.fetch.limit + 1);
    int rc;
    size_t bytes = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        /* A page ends at limit envelopes or max_bytes of bodies (at least
         * one envelope), so that no result holds more than its frame. */
        size_t len = (size_t)sqlite3_column_bytes(s, 7);
        if (n == req->in.fetch.limit || (n > 0 && bytes + len > req->in.fetch.max_bytes)) {
            req->out.more = true;
            rc = SQLITE_DONE;
            break;
        }
        bytes += len;
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
        p->body_off = sq_scratch_str(sc, body, body ? p->e.body_len : 0);
        p->from_off = sq_scratch_column_text(sc, s, 8);
        p->to_off = sq_scratch_column_text(sc, s, 9);
    }
    int ret = rc == SQLITE_DONE ? 0 : sq_sql_fail(st, "env_page", rc);
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

int sq_op_secret_ack(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_ENV_DELETE];
    unsigned deleted = 0;
    for (size_t i = 0; i < req->in.ack.n_ids; i++) {
        bind_u64(s, 1, req->in.ack.ids[i]);
        bind_u64(s, 2, req->in.ack.device);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return sq_sql_fail(st, "env_delete", rc);
        deleted += (unsigned)sqlite3_changes(st->db);
    }
    queued_add(st, req->in.ack.device, deleted, true);
    req->out.deleted = deleted;
    return 0;
}
