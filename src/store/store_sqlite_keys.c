/* SPDX-License-Identifier: MIT */
/* The SQLite backend's prekey operations for secret chats: UPLOAD_KEYS,
 * GET_BUNDLE (taking one-time prekeys atomically), KEY_COUNT. Writer
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
        ret = sq_sql_fail(st, "prekey_count", rc);
    sqlite3_reset(s);
    return ret;
}

/* Every refusal but a taken prekey id comes before the first write; that
 * one is found by the insert itself, so the request runs in a savepoint
 * (see run_one) and a refusal leaves nothing behind. */
int sq_op_upload_keys(struct store *st, struct store_req *req)
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
        ret = sq_sql_fail(st, "identity_get", rc);
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
            ret = sq_sql_fail(st, "signed_exists", rc);
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
        if ((ret = sq_step_write(st, s, "identity_insert", PARLEY_ESTORE)) != 0)
            return ret;
    }
    if (req->in.keys.has_signed) {
        s = st->stmt[ST_SIGNED_PUT];
        bind_u64(s, 1, device);
        sqlite3_bind_int64(s, 2, req->in.keys.signed_prekey.id);
        sqlite3_bind_blob(s, 3, req->in.keys.signed_prekey.key, STORE_KEY_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, req->in.keys.signature, STORE_SIG_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
        if ((ret = sq_step_write(st, s, "signed_put", PARLEY_ESTORE)) != 0)
            return ret;
    }
    s = st->stmt[ST_PREKEY_INSERT];
    for (size_t i = 0; i < req->in.keys.n_prekeys; i++) {
        const struct store_prekey *pk = &req->in.keys.prekeys[i];
        bind_u64(s, 1, device);
        sqlite3_bind_int64(s, 2, pk->id);
        sqlite3_bind_blob(s, 3, pk->key, STORE_KEY_LEN, SQLITE_STATIC);
        if ((ret = sq_step_write(st, s, "prekey_insert", PARLEY_EPREKEY_ID)) != 0)
            return ret;
    }
    req->out.prekey_count = count + (unsigned)req->in.keys.n_prekeys;
    return 0;
}

/* Reads the devices with keys first, then takes their prekeys: every
 * refusal comes before the first delete, as for SEND. */
int sq_op_get_bundle(struct store *st, struct store_req *req)
{
    struct user_entry *ue;
    sq_users_reserve(st, 1);
    int ret = sq_user_get(st, req->in.bundle.user, &ue);
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
        if (!sq_column_blob_n(s, 2, e->identity_key, STORE_KEY_LEN) ||
            !sq_column_blob_n(s, 4, e->signed_prekey.key, STORE_KEY_LEN) ||
            !sq_column_blob_n(s, 5, e->signature, STORE_SIG_LEN)) {
            log_error(MODULE, "event=corrupt_row table=identity_keys device=%llu",
                      (unsigned long long)e->device_id);
            ret = PARLEY_ESTORE;
            break;
        }
        n++;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = sq_sql_fail(st, "bundle_devices", rc);
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
            if (!sq_column_blob_n(s, 1, b[i].prekey.key, STORE_KEY_LEN)) {
                log_error(MODULE, "event=corrupt_row table=one_time_prekeys device=%llu",
                          (unsigned long long)b[i].device_id);
                ret = PARLEY_ESTORE;
            } else {
                rc = sqlite3_step(s); /* runs the delete to its end */
            }
        }
        if (ret == 0 && rc != SQLITE_DONE)
            ret = sq_sql_fail(st, "prekey_take", rc);
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

int sq_op_key_count(struct store *st, struct store_req *req)
{
    sqlite3_stmt *s = st->stmt[ST_SIGNED_EXISTS];
    bind_u64(s, 1, req->in.device_id);
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW)
        req->out.has_keys = true;
    else if (rc != SQLITE_DONE)
        ret = sq_sql_fail(st, "signed_exists", rc);
    sqlite3_reset(s);
    if (ret == 0)
        ret = prekey_count(st, req->in.device_id, &req->out.prekey_count);
    return ret;
}
