/* SPDX-License-Identifier: MIT */
/* Unit tests of store.h against a real SQLite file in a temporary directory,
 * driven through a real libuv loop. A second SQLite connection holding the
 * write lock makes the writer thread wait, so that batches form
 * deterministically. */
#include "store/store.h"
#include "common/err.h"
#include "common/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/banned.h"

struct fixture {
    char dir[64];
    char path[128];
    uv_loop_t loop;
    struct store *st;
    struct store_port *port;
};

static struct store *open_store_cache(const char *path, unsigned max_batch, unsigned max_queue,
                                      unsigned user_cache)
{
    struct store_config cfg = {
        .path = path, .max_batch = max_batch, .max_queue = max_queue, .user_cache = user_cache};
    struct store *st = NULL;
    assert_int_equal(store_open(&cfg, &st), 0);
    assert_non_null(st);
    return st;
}

static struct store *open_store(const char *path, unsigned max_batch, unsigned max_queue)
{
    return open_store_cache(path, max_batch, max_queue, 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/parley-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/parley.db", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    *state = f;
    return 0;
}

static void remove_db(const char *dir)
{
    static const char *const names[] = {"parley.db", "parley.db-wal", "parley.db-shm"};
    char p[160];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(dir), 0);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    remove_db(f->dir);
    free(f);
    return 0;
}

static void on_done(struct store_req *req)
{
    int *done = req->data;
    (*done)++;
}

/* Submits req and runs the loop until its callback has fired. */
static int run_req(struct fixture *f, struct store_req *req)
{
    int done = 0;
    req->cb = on_done;
    req->data = &done;
    assert_int_equal(store_submit(f->port, req), 0);
    while (!done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(done, 1);
    return req->status;
}

static void set_name(char dst[USERNAME_MAX + 1], const char *name)
{
    memset(dst, 0, USERNAME_MAX + 1);
    memcpy(dst, name, strlen(name));
}

static void prep_signup(struct store_req *req, const char *name, uint8_t key_byte)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SIGNUP;
    set_name(req->in.signup.username, name);
    memset(req->in.signup.pubkey, key_byte, STORE_PUBKEY_LEN);
}

static uint64_t signup(struct fixture *f, const char *name, uint8_t key_byte, uint64_t *device)
{
    struct store_req req;
    prep_signup(&req, name, key_byte);
    assert_int_equal(run_req(f, &req), 0);
    assert_string_equal(req.out.username, name);
    if (device)
        *device = req.out.device_id;
    store_req_reset(&req);
    return req.out.user_id;
}

static void prep_send(struct store_req *req, uint64_t from, uint64_t to, uint64_t client_id,
                      const char *text)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SEND;
    req->in.send.from_user = from;
    req->in.send.from_device = from * 100;
    req->in.send.to_user = to;
    req->in.send.client_id = client_id;
    req->in.send.date = 1700000000;
    req->in.send.text = text;
    req->in.send.text_len = strlen(text);
}

/* Sends text and returns the result in *out (the caller resets it). */
static void send_ok(struct fixture *f, uint64_t from, uint64_t to, uint64_t client_id,
                    const char *text, struct store_req *out)
{
    prep_send(out, from, to, client_id, text);
    assert_int_equal(run_req(f, out), 0);
}

static void prep_sync(struct store_req *req, uint64_t user, uint64_t device, uint64_t from_pts,
                      unsigned limit)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SYNC;
    req->in.sync.user = user;
    req->in.sync.device = device;
    req->in.sync.from_pts = from_pts;
    req->in.sync.limit = limit;
}

static void prep_history(struct store_req *req, uint64_t user, uint64_t peer, uint64_t before_id,
                         unsigned limit)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_HISTORY;
    req->in.history.user = user;
    req->in.history.peer = peer;
    req->in.history.before_id = before_id;
    req->in.history.limit = limit;
}

/* Takes SQLite's write lock on the file from a second connection, so that
 * the store's writer waits in BEGIN IMMEDIATE and requests pile up. */
static sqlite3 *hold_write_lock(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static void release_write_lock(sqlite3 *db)
{
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int64_t query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void test_signup_then_duplicate_name_is_taken(void **state)
{
    struct fixture *f = *state;
    struct store_req req;
    prep_signup(&req, "alice", 1);
    assert_int_equal(run_req(f, &req), 0);
    assert_true(req.out.user_id > 0);
    assert_true(req.out.device_id > 0);
    assert_int_equal(req.out.pts, 0);
    assert_memory_equal(req.out.pubkey, req.in.signup.pubkey, STORE_PUBKEY_LEN);

    prep_signup(&req, "alice", 2);
    assert_int_equal(run_req(f, &req), PARLEY_ETAKEN);
    store_req_reset(&req);
}

static void test_signup_with_reused_pubkey_is_bad_key_and_keeps_no_user(void **state)
{
    struct fixture *f = *state;
    signup(f, "alice", 1, NULL);
    struct store_req req;
    prep_signup(&req, "bob", 1);
    assert_int_equal(run_req(f, &req), PARLEY_EBAD_KEY);

    /* The failed sign-up rolled back its user row: the name is still free. */
    memset(&req, 0, sizeof(req));
    req.op = STORE_OP_RESOLVE;
    set_name(req.in.username, "bob");
    assert_int_equal(run_req(f, &req), PARLEY_ENOUSER);
    signup(f, "bob", 2, NULL);
}

static void test_device_returns_owner_and_missing_device_is_enodevice(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    uint64_t alice = signup(f, "alice", 7, &dev);
    struct store_req out;
    send_ok(f, alice, alice, 1, "note to self", &out);
    store_req_reset(&out);

    struct store_req req;
    memset(&req, 0, sizeof(req));
    req.op = STORE_OP_DEVICE;
    req.in.device_id = dev;
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.user_id, alice);
    assert_int_equal(req.out.device_id, dev);
    assert_string_equal(req.out.username, "alice");
    uint8_t key[STORE_PUBKEY_LEN];
    memset(key, 7, sizeof(key));
    assert_memory_equal(req.out.pubkey, key, STORE_PUBKEY_LEN);
    assert_int_equal(req.out.pts, 1);

    req.in.device_id = dev + 1000;
    assert_int_equal(run_req(f, &req), PARLEY_ENODEVICE);
}

static void test_resolve_finds_user_and_missing_name_is_enouser(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    assert_int_not_equal(alice, bob);

    struct store_req req;
    memset(&req, 0, sizeof(req));
    req.op = STORE_OP_RESOLVE;
    set_name(req.in.username, "bob");
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.user_id, bob);
    assert_string_equal(req.out.username, "bob");

    set_name(req.in.username, "carol");
    assert_int_equal(run_req(f, &req), PARLEY_ENOUSER);
}

static void test_send_increments_pts_of_both_sides_in_order(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct store_req r;

    send_ok(f, alice, bob, 11, "hi bob", &r);
    assert_false(r.out.duplicate);
    assert_int_equal(r.out.msg.pts, 1);
    assert_int_equal(r.out.to_pts, 1);
    assert_int_equal(r.out.msg.from_user, alice);
    assert_int_equal(r.out.msg.to_user, bob);
    assert_int_equal(r.out.msg.from_device, alice * 100);
    assert_int_equal(r.out.msg.client_id, 11);
    assert_int_equal(r.out.msg.date, 1700000000);
    assert_string_equal(r.out.msg.from_name, "alice");
    assert_string_equal(r.out.msg.to_name, "bob");
    assert_string_equal(r.out.msg.text, "hi bob");
    assert_int_equal(r.out.msg.text_len, 6);
    uint64_t first_id = r.out.msg.id;
    store_req_reset(&r);
    store_req_reset(&r);

    send_ok(f, bob, alice, 21, "hi alice", &r);
    assert_int_equal(r.out.msg.pts, 2);
    assert_int_equal(r.out.to_pts, 2);
    assert_true(r.out.msg.id > first_id);
    store_req_reset(&r);

    send_ok(f, alice, alice, 12, "self", &r);
    assert_int_equal(r.out.msg.pts, 3);
    assert_int_equal(r.out.to_pts, 0);
    store_req_reset(&r);

    send_ok(f, alice, bob, 13, "again", &r);
    assert_int_equal(r.out.msg.pts, 4);
    assert_int_equal(r.out.to_pts, 3);
    store_req_reset(&r);
}

static void test_send_same_client_id_twice_returns_first_message(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct store_req first, again;

    send_ok(f, alice, bob, 42, "once", &first);
    send_ok(f, alice, bob, 43, "other", &again);
    store_req_reset(&again);
    send_ok(f, alice, bob, 42, "once, retried", &again);
    assert_true(again.out.duplicate);
    assert_false(first.out.duplicate);
    assert_int_equal(again.out.msg.id, first.out.msg.id);
    assert_int_equal(again.out.msg.pts, first.out.msg.pts);
    assert_int_equal(again.out.msg.pts, 1);
    assert_int_equal(again.out.to_pts, 0);
    assert_string_equal(again.out.msg.text, "once");
    assert_string_equal(again.out.msg.from_name, "alice");
    assert_string_equal(again.out.msg.to_name, "bob");
    store_req_reset(&first);
    store_req_reset(&again);

    assert_int_equal(query_int(f->path, "SELECT count(*) FROM messages WHERE client_id = 42"), 1);
    assert_int_equal(query_int(f->path, "SELECT max(pts) FROM updates WHERE user_id = "
                     "(SELECT id FROM users WHERE username = 'alice')"), 2);
    assert_int_equal(query_int(f->path, "SELECT max(pts) FROM updates WHERE user_id = "
                     "(SELECT id FROM users WHERE username = 'bob')"), 2);
}

static void test_send_to_missing_user_is_enouser(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    struct store_req r;
    prep_send(&r, alice, alice + 999, 5, "nobody");
    assert_int_equal(run_req(f, &r), PARLEY_ENOUSER);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM messages"), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM updates"), 0);
}

static void test_sync_returns_updates_in_pts_order_with_limit_and_more(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, &dev);
    char text[16];
    struct store_req r;
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof(text), "m%d", i);
        send_ok(f, i % 2 ? bob : alice, i % 2 ? alice : bob, (uint64_t)i + 1, text, &r);
        store_req_reset(&r);
    }

    prep_sync(&r, bob, dev, 1, 3);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.pts, 5);
    assert_true(r.out.more);
    assert_int_equal(r.out.n_msgs, 3);
    for (size_t i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "m%zu", i + 1);
        assert_int_equal(r.out.msgs[i].pts, i + 2);
        assert_string_equal(r.out.msgs[i].text, text);
    }
    assert_string_equal(r.out.msgs[0].from_name, "bob");
    assert_string_equal(r.out.msgs[0].to_name, "alice");
    store_req_reset(&r);
    assert_null(r.out.msgs);
    assert_int_equal(query_int(f->path, "SELECT sync_pts FROM devices WHERE user_id = 2"), 1);

    prep_sync(&r, bob, dev, 4, 3);
    assert_int_equal(run_req(f, &r), 0);
    assert_false(r.out.more);
    assert_int_equal(r.out.n_msgs, 1);
    assert_int_equal(r.out.msgs[0].pts, 5);
    store_req_reset(&r);
    assert_int_equal(query_int(f->path, "SELECT sync_pts FROM devices WHERE user_id = 2"), 4);

    /* Up to date: nothing, and sync_pts never goes back nor past the log. */
    prep_sync(&r, bob, dev, 99, 3);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 0);
    assert_false(r.out.more);
    assert_int_equal(r.out.pts, 5);
    prep_sync(&r, bob, dev, 2, 3);
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    assert_int_equal(query_int(f->path, "SELECT sync_pts FROM devices WHERE user_id = 2"), 5);

    prep_sync(&r, bob + 50, 0, 0, 3);
    assert_int_equal(run_req(f, &r), PARLEY_ENOUSER);
}

static void test_history_pages_newest_first_by_before_id(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    uint64_t carol = signup(f, "carol", 3, NULL);
    uint64_t ids[6];
    struct store_req r;
    for (int i = 0; i < 6; i++) {
        send_ok(f, i % 2 ? bob : alice, i % 2 ? alice : bob, (uint64_t)i + 1, "x", &r);
        ids[i] = r.out.msg.id;
        store_req_reset(&r);
        send_ok(f, alice, carol, (uint64_t)i + 100, "other chat", &r);
        store_req_reset(&r);
    }

    prep_history(&r, bob, alice, 0, 4);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(r.out.msgs[i].id, ids[5 - i]);
        assert_int_equal(r.out.msgs[i].pts, 0);
    }
    uint64_t oldest = r.out.msgs[3].id;
    store_req_reset(&r);

    prep_history(&r, alice, bob, oldest, 4);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 2);
    assert_int_equal(r.out.msgs[0].id, ids[1]);
    assert_int_equal(r.out.msgs[1].id, ids[0]);
    assert_string_equal(r.out.msgs[1].from_name, "alice");
    assert_string_equal(r.out.msgs[1].text, "x");
    store_req_reset(&r);

    prep_history(&r, alice, bob, ids[0], 4);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 0);
    assert_null(r.out.msgs);

    prep_history(&r, alice, carol + 50, 0, 4);
    assert_int_equal(run_req(f, &r), PARLEY_ENOUSER);
}

static void test_failing_request_does_not_abort_its_batch(void **state)
{
    struct fixture *f = *state;
    struct store_req blocker, reqs[3];
    struct store_stats before, after;
    int done = 0;
    store_stats(f->st, &before);
    prep_signup(&blocker, "zed", 9);
    prep_signup(&reqs[0], "alice", 1);
    prep_signup(&reqs[1], "alice", 2);
    prep_signup(&reqs[2], "bob", 3);
    sqlite3 *lock = hold_write_lock(f->path);
    /* The writer takes the blocker and waits for the lock; the next three
     * then queue up and form one batch. */
    blocker.cb = on_done;
    blocker.data = &done;
    assert_int_equal(store_submit(f->port, &blocker), 0);
    usleep(100 * 1000);
    for (int i = 0; i < 3; i++) {
        reqs[i].cb = on_done;
        reqs[i].data = &done;
        assert_int_equal(store_submit(f->port, &reqs[i]), 0);
    }
    release_write_lock(lock);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(done, 4);
    assert_int_equal(blocker.status, 0);
    assert_int_equal(reqs[0].status, 0);
    assert_int_equal(reqs[1].status, PARLEY_ETAKEN);
    assert_int_equal(reqs[2].status, 0);
    store_stats(f->st, &after);
    /* The three shared one transaction: a batch of 3 (or of 4, had the
     * writer been too slow to take the blocker alone). */
    assert_in_range(after.commits - before.commits, 1, 2);
    assert_int_equal(
        after.batch_hist[1] + after.batch_hist[2] - before.batch_hist[1] - before.batch_hist[2], 1);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM users"), 3);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM devices"), 3);
}

#define N_CONCURRENT 200

struct concurrent {
    struct store_req reqs[N_CONCURRENT];
    int done;
    uint64_t last_pts;
};

static void on_concurrent_send(struct store_req *req)
{
    struct concurrent *c = req->data;
    assert_int_equal(req->status, 0);
    /* Callbacks of one port come in submission order, and so do the pts. */
    assert_int_equal(req->out.msg.pts, c->last_pts + 1);
    c->last_pts = req->out.msg.pts;
    c->done++;
    store_req_reset(req);
}

static void test_concurrent_sends_share_commits(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct store_stats before, after;
    store_stats(f->st, &before);

    struct concurrent *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    sqlite3 *lock = hold_write_lock(f->path);
    for (int i = 0; i < N_CONCURRENT; i++) {
        prep_send(&c->reqs[i], alice, bob, (uint64_t)i + 1, "load");
        c->reqs[i].cb = on_concurrent_send;
        c->reqs[i].data = c;
        assert_int_equal(store_submit(f->port, &c->reqs[i]), 0);
    }
    release_write_lock(lock);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->done, N_CONCURRENT);
    assert_int_equal(c->last_pts, N_CONCURRENT);

    store_stats(f->st, &after);
    uint64_t commits = after.commits - before.commits;
    assert_int_equal(after.committed_reqs - before.committed_reqs, N_CONCURRENT);
    /* The writer took some before it blocked on the lock, the rest queued:
     * at most two transactions, one of them with at least half the sends. */
    assert_in_range(commits, 1, 2);
    uint64_t multi = 0, total = 0, lat = 0;
    for (size_t i = 0; i < 8; i++) {
        total += after.batch_hist[i] - before.batch_hist[i];
        if (i > 0)
            multi += after.batch_hist[i] - before.batch_hist[i];
    }
    for (size_t i = 0; i < 10; i++)
        lat += after.latency_hist[i] - before.latency_hist[i];
    assert_int_equal(total, commits);
    assert_int_equal(lat, commits);
    assert_true(multi >= 1);
    assert_true(after.batch_hist[6] + after.batch_hist[7] >
                before.batch_hist[6] + before.batch_hist[7]);
    assert_int_equal(after.queue_refusals, 0);
    assert_int_equal(query_int(f->path, "SELECT max(pts) FROM updates WHERE user_id = "
                     "(SELECT id FROM users WHERE username = 'bob')"),
                     N_CONCURRENT);
    free(c);
}

static void test_full_queue_refuses_with_ebusy(void **state)
{
    struct fixture *f = *state;
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = open_store(f->path, 1, 4);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);

    struct store_req reqs[20];
    int done = 0, accepted = 0;
    char name[16];
    sqlite3 *lock = hold_write_lock(f->path);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        prep_signup(&reqs[i], name, (uint8_t)(i + 1));
        reqs[i].cb = on_done;
        reqs[i].data = &done;
        int rc = store_submit(f->port, &reqs[i]);
        if (rc == 0)
            accepted++;
        else
            assert_int_equal(rc, PARLEY_EBUSY);
    }
    release_write_lock(lock);
    /* The writer took at most one (max_batch) before it blocked. */
    assert_in_range(accepted, 4, 5);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(done, accepted);
    struct store_stats stats;
    store_stats(f->st, &stats);
    assert_int_equal(stats.queue_refusals, 20 - accepted);
    assert_int_equal(stats.batch_hist[0], stats.commits);
}

static void test_submit_rejects_invalid_requests(void **state)
{
    struct fixture *f = *state;
    struct store_req r;
    prep_signup(&r, "alice", 1);
    r.cb = NULL;
    assert_int_equal(store_submit(f->port, &r), PARLEY_EINVAL);
    prep_signup(&r, "", 1);
    r.cb = on_done;
    assert_int_equal(store_submit(f->port, &r), PARLEY_EINVAL);
    prep_sync(&r, 1, 0, 0, 0);
    r.cb = on_done;
    assert_int_equal(store_submit(f->port, &r), PARLEY_EINVAL);
    prep_history(&r, 1, 2, 0, STORE_PAGE_MAX + 1);
    r.cb = on_done;
    assert_int_equal(store_submit(f->port, &r), PARLEY_EINVAL);
    prep_send(&r, 1, 2, 0, "no client id");
    r.cb = on_done;
    assert_int_equal(store_submit(f->port, &r), PARLEY_EINVAL);
    memset(&r, 0, sizeof(r));
    r.op = (enum store_op)99;
    r.cb = on_done;
    assert_int_equal(store_submit(f->port, &r), PARLEY_EINVAL);
}

/* Reopens the fixture's store with the given user cache size. */
static void reopen(struct fixture *f, unsigned user_cache)
{
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = open_store_cache(f->path, 0, 0, user_cache);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
}

/* The writer's cache of names and pts may hold fewer users than are
 * talking: with room for two, three users in rotation keep reloading each
 * other, and every log still counts 1, 2, 3... without a gap or a repeat. */
static void test_pts_exact_with_a_tiny_user_cache(void **state)
{
    struct fixture *f = *state;
    uint64_t u[3] = {signup(f, "ann", 1, NULL), signup(f, "ben", 2, NULL),
                     signup(f, "cat", 3, NULL)};
    reopen(f, 2);
    uint64_t want[3] = {0, 0, 0};
    for (int i = 0; i < 30; i++) {
        int a = i % 3, b = (i + 1 + i / 3) % 3;
        struct store_req r;
        send_ok(f, u[a], u[b], 1000 + (uint64_t)i, "rot", &r);
        want[a]++;
        assert_int_equal(r.out.msg.pts, want[a]);
        assert_string_equal(r.out.msg.from_name, a == 0 ? "ann" : a == 1 ? "ben" : "cat");
        if (b != a) {
            want[b]++;
            assert_int_equal(r.out.to_pts, want[b]);
        }
        store_req_reset(&r);
    }
    for (int k = 0; k < 3; k++) {
        struct store_req r;
        prep_sync(&r, u[k], 0, 0, 1000);
        assert_int_equal(run_req(f, &r), 0);
        assert_int_equal(r.out.pts, want[k]);
        assert_int_equal(r.out.n_msgs, want[k]);
        for (size_t j = 0; j < r.out.n_msgs; j++)
            assert_int_equal(r.out.msgs[j].pts, j + 1);
        store_req_reset(&r);
    }
}

/* users.pts is a floor under the log's last pts (for logs whose newest rows
 * are ever deleted): a reopened store continues above it. */
static void test_pts_continue_above_the_users_floor(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct store_req r;
    send_ok(f, alice, bob, 1, "one", &r);
    store_req_reset(&r);
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE users SET pts = 40 WHERE username = 'bob'", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    send_ok(f, alice, bob, 2, "two", &r);
    assert_int_equal(r.out.msg.pts, 2);
    assert_int_equal(r.out.to_pts, 41);
    store_req_reset(&r);
}

static void test_reopen_after_close_keeps_data(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct store_req r;
    send_ok(f, alice, bob, 9, "durable", &r);
    uint64_t id = r.out.msg.id;
    store_req_reset(&r);

    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);

    prep_sync(&r, bob, 0, 0, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 1);
    assert_int_equal(r.out.msgs[0].id, id);
    assert_string_equal(r.out.msgs[0].text, "durable");
    store_req_reset(&r);

    /* The retry after a restart is still recognised. */
    send_ok(f, alice, bob, 9, "durable", &r);
    assert_true(r.out.duplicate);
    assert_int_equal(r.out.msg.id, id);
    store_req_reset(&r);
    send_ok(f, alice, bob, 10, "after", &r);
    assert_int_equal(r.out.msg.pts, 2);
    assert_true(r.out.msg.id > id);
    store_req_reset(&r);
}

static void test_close_with_requests_queued_completes_them(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct concurrent *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    for (int i = 0; i < 50; i++) {
        prep_send(&c->reqs[i], alice, bob, (uint64_t)i + 1, "queued");
        c->reqs[i].cb = on_concurrent_send;
        c->reqs[i].data = c;
        assert_int_equal(store_submit(f->port, &c->reqs[i]), 0);
    }
    store_close(f->st);
    assert_int_equal(c->done, 0);
    struct store_req late;
    prep_signup(&late, "late", 9);
    late.cb = on_done;
    assert_int_equal(store_submit(f->port, &late), PARLEY_EBUSY);

    /* The port outlives the store; its loop delivers the results. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->done, 50);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM messages"), 50);
    free(c);

    store_port_close(f->port);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = NULL;
    f->port = NULL;
}

static void test_port_closed_with_requests_in_flight_delivers_them_first(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    struct store_req reqs[3];
    int done = 0;
    sqlite3 *lock = hold_write_lock(f->path);
    for (int i = 0; i < 3; i++) {
        prep_send(&reqs[i], alice, alice, (uint64_t)i + 1, "self");
        reqs[i].cb = on_done;
        reqs[i].data = &done;
        assert_int_equal(store_submit(f->port, &reqs[i]), 0);
    }
    store_port_close(f->port);
    struct store_req late;
    prep_signup(&late, "late", 9);
    late.cb = on_done;
    assert_int_equal(store_submit(f->port, &late), PARLEY_EINVAL);
    release_write_lock(lock);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(done, 3);
    for (int i = 0; i < 3; i++)
        store_req_reset(&reqs[i]);
    store_close(f->st);
    f->st = NULL;
    f->port = NULL;
}

/* --- prekeys --------------------------------------------------------------- */

/* A key in Signal's form whose 32 bytes are all b. */
static void fill_key(uint8_t key[STORE_KEY_LEN], uint8_t b)
{
    key[0] = 0x05;
    memset(key + 1, b, STORE_KEY_LEN - 1);
}

/* An upload of identity key byte idb, registration id reg, signed prekey
 * signed_id (0: none) and one-time prekeys ids first..first+n-1. */
static void prep_upload(struct store_req *req, uint64_t device, uint8_t idb, uint32_t reg,
                        uint32_t signed_id, struct store_prekey *pks, uint32_t first, size_t n)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_UPLOAD_KEYS;
    req->in.keys.device = device;
    req->in.keys.registration_id = reg;
    fill_key(req->in.keys.identity_key, idb);
    if (signed_id) {
        req->in.keys.has_signed = true;
        req->in.keys.signed_prekey.id = signed_id;
        fill_key(req->in.keys.signed_prekey.key, (uint8_t)signed_id);
        memset(req->in.keys.signature, (int)(signed_id & 0xff), STORE_SIG_LEN);
    }
    for (size_t i = 0; i < n; i++) {
        pks[i].id = first + (uint32_t)i;
        fill_key(pks[i].key, (uint8_t)(first + i));
    }
    req->in.keys.prekeys = pks;
    req->in.keys.n_prekeys = n;
}

static void prep_bundle(struct store_req *req, uint64_t user, uint64_t device, uint64_t skip)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_GET_BUNDLE;
    req->in.bundle.user = user;
    req->in.bundle.device = device;
    req->in.bundle.skip_device = skip;
}

static unsigned key_count(struct fixture *f, uint64_t device, bool *has_keys)
{
    struct store_req req;
    memset(&req, 0, sizeof(req));
    req.op = STORE_OP_KEY_COUNT;
    req.in.device_id = device;
    assert_int_equal(run_req(f, &req), 0);
    if (has_keys)
        *has_keys = req.out.has_keys;
    return req.out.prekey_count;
}

static void test_upload_then_bundle_hands_out_each_prekey_once(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    uint64_t alice = signup(f, "alice", 1, &dev);
    bool has_keys = true;
    assert_int_equal(key_count(f, dev, &has_keys), 0);
    assert_false(has_keys);

    struct store_prekey pks[3];
    struct store_req req;
    prep_upload(&req, dev, 0xaa, 1234, 7, pks, 100, 3);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.prekey_count, 3);
    assert_int_equal(key_count(f, dev, &has_keys), 3);
    assert_true(has_keys);

    uint8_t want[STORE_KEY_LEN];
    for (uint32_t i = 0; i < 3; i++) {
        prep_bundle(&req, alice, 0, 0);
        assert_int_equal(run_req(f, &req), 0);
        assert_int_equal(req.out.n_bundles, 1);
        const struct store_bundle *b = &req.out.bundles[0];
        assert_int_equal(b->device_id, dev);
        assert_int_equal(b->registration_id, 1234);
        fill_key(want, 0xaa);
        assert_memory_equal(b->identity_key, want, STORE_KEY_LEN);
        assert_int_equal(b->signed_prekey.id, 7);
        fill_key(want, 7);
        assert_memory_equal(b->signed_prekey.key, want, STORE_KEY_LEN);
        assert_int_equal(b->signature[0], 7);
        assert_true(b->has_prekey);
        assert_int_equal(b->prekey.id, 100 + i);
        fill_key(want, (uint8_t)(100 + i));
        assert_memory_equal(b->prekey.key, want, STORE_KEY_LEN);
        assert_int_equal(b->prekey_count, 2 - i);
        store_req_reset(&req);
    }
    /* An empty stock still gives a bundle, without a one-time prekey. */
    prep_bundle(&req, alice, 0, 0);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_bundles, 1);
    assert_false(req.out.bundles[0].has_prekey);
    assert_int_equal(req.out.bundles[0].prekey_count, 0);
    assert_int_equal(req.out.bundles[0].signed_prekey.id, 7);
    store_req_reset(&req);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM one_time_prekeys"), 0);
}

static void test_upload_with_a_taken_prekey_id_changes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    (void)signup(f, "alice", 1, &dev);
    struct store_prekey pks[5];
    struct store_req req;
    prep_upload(&req, dev, 0xaa, 1, 7, pks, 10, 3); /* ids 10, 11, 12 */
    assert_int_equal(run_req(f, &req), 0);

    /* ids 13, 14 and 12 again, with a new signed prekey: all refused. */
    prep_upload(&req, dev, 0xaa, 1, 8, pks, 12, 3);
    pks[0].id = 13;
    pks[1].id = 14;
    pks[2].id = 12;
    assert_int_equal(run_req(f, &req), PARLEY_EPREKEY_ID);
    /* The same id twice in one request. */
    prep_upload(&req, dev, 0xaa, 1, 8, pks, 20, 2);
    pks[1].id = 20;
    assert_int_equal(run_req(f, &req), PARLEY_EPREKEY_ID);

    assert_int_equal(key_count(f, dev, NULL), 3);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM one_time_prekeys"), 3);
    assert_int_equal(query_int(f->path, "SELECT id FROM signed_prekeys"), 7);
}

static void test_identity_key_is_set_once(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    (void)signup(f, "alice", 1, &dev);
    struct store_prekey pks[2];
    struct store_req req;
    prep_upload(&req, dev, 0xaa, 1, 7, pks, 1, 1);
    assert_int_equal(run_req(f, &req), 0);
    /* Another identity key, or another registration id: refused, nothing added. */
    prep_upload(&req, dev, 0xbb, 1, 0, pks, 2, 1);
    assert_int_equal(run_req(f, &req), PARLEY_EIDENTITY_KEY);
    prep_upload(&req, dev, 0xaa, 2, 0, pks, 2, 1);
    assert_int_equal(run_req(f, &req), PARLEY_EIDENTITY_KEY);
    assert_int_equal(key_count(f, dev, NULL), 1);
    /* The same again is fine, and needs no signed prekey after the first. */
    prep_upload(&req, dev, 0xaa, 1, 0, pks, 2, 1);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.prekey_count, 2);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM identity_keys"), 1);
}

static void test_first_upload_needs_a_signed_prekey_and_rotation_replaces_it(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    uint64_t alice = signup(f, "alice", 1, &dev);
    struct store_prekey pks[1];
    struct store_req req;
    prep_upload(&req, dev, 0xaa, 1, 0, pks, 1, 1);
    assert_int_equal(run_req(f, &req), PARLEY_EINVAL);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM identity_keys"), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM one_time_prekeys"), 0);

    prep_upload(&req, dev, 0xaa, 1, 7, pks, 1, 0);
    assert_int_equal(run_req(f, &req), 0);
    prep_upload(&req, dev, 0xaa, 1, 9, pks, 1, 0);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM signed_prekeys"), 1);
    prep_bundle(&req, alice, 0, 0);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.bundles[0].signed_prekey.id, 9);
    assert_int_equal(req.out.bundles[0].signed_prekey.key[1], 9);
    assert_int_equal(req.out.bundles[0].signature[0], 9);
    store_req_reset(&req);
}

static void test_stock_is_bounded(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    (void)signup(f, "alice", 1, &dev);
    struct store_prekey *pks = calloc(STORE_PREKEYS_PER_UPLOAD + 1, sizeof(*pks));
    assert_non_null(pks);
    struct store_req req;
    uint32_t next = 1;
    for (int i = 0; i < STORE_PREKEYS_MAX / STORE_PREKEYS_PER_UPLOAD; i++) {
        prep_upload(&req, dev, 0xaa, 1, 7, pks, next, STORE_PREKEYS_PER_UPLOAD);
        assert_int_equal(run_req(f, &req), 0);
        next += STORE_PREKEYS_PER_UPLOAD;
    }
    assert_int_equal(req.out.prekey_count, STORE_PREKEYS_MAX);
    prep_upload(&req, dev, 0xaa, 1, 7, pks, next, 1);
    assert_int_equal(run_req(f, &req), PARLEY_ETOO_MANY_PREKEYS);
    assert_int_equal(key_count(f, dev, NULL), STORE_PREKEYS_MAX);
    /* More than one request may carry is refused at submission. */
    prep_upload(&req, dev, 0xaa, 1, 7, pks, next, STORE_PREKEYS_PER_UPLOAD + 1);
    req.cb = on_done;
    assert_int_equal(store_submit(f->port, &req), PARLEY_EINVAL);
    free(pks);
}

static void test_bundle_errors_and_device_filters(void **state)
{
    struct fixture *f = *state;
    uint64_t dev_a, dev_b;
    uint64_t alice = signup(f, "alice", 1, &dev_a);
    uint64_t bob = signup(f, "bob", 2, &dev_b);
    struct store_req req;
    prep_bundle(&req, bob, 0, 0);
    assert_int_equal(run_req(f, &req), PARLEY_ENOKEYS);
    prep_bundle(&req, bob + 1000, 0, 0);
    assert_int_equal(run_req(f, &req), PARLEY_ENOUSER);

    struct store_prekey pks[2];
    prep_upload(&req, dev_b, 0xbb, 2, 5, pks, 1, 2);
    assert_int_equal(run_req(f, &req), 0);
    /* Another device of the account, or the fetching device itself: none. */
    prep_bundle(&req, bob, dev_a, 0);
    assert_int_equal(run_req(f, &req), PARLEY_ENOKEYS);
    prep_bundle(&req, bob, 0, dev_b);
    assert_int_equal(run_req(f, &req), PARLEY_ENOKEYS);
    assert_int_equal(key_count(f, dev_b, NULL), 2);
    prep_bundle(&req, bob, dev_b, 0);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_bundles, 1);
    assert_int_equal(req.out.bundles[0].device_id, dev_b);
    store_req_reset(&req);
    prep_bundle(&req, alice, 0, 0);
    assert_int_equal(run_req(f, &req), PARLEY_ENOKEYS);
}

#define N_FETCHES 60
#define STOCK 40

struct fetches {
    struct store_req reqs[N_FETCHES];
    int done;
    bool seen[STOCK + 1];
    int with_prekey;
};

static void on_fetch(struct store_req *req)
{
    struct fetches *c = req->data;
    c->done++;
    assert_int_equal(req->status, 0);
    assert_int_equal(req->out.n_bundles, 1);
    const struct store_bundle *b = &req->out.bundles[0];
    if (b->has_prekey) {
        assert_in_range(b->prekey.id, 1, STOCK);
        if (c->seen[b->prekey.id])
            fail_msg("prekey %u handed out twice", b->prekey.id);
        c->seen[b->prekey.id] = true;
        c->with_prekey++;
        assert_int_equal(b->prekey_count, STOCK - c->with_prekey);
    } else {
        assert_int_equal(b->prekey_count, 0);
    }
    store_req_reset(req);
}

static void test_concurrent_fetches_never_share_a_prekey(void **state)
{
    struct fixture *f = *state;
    uint64_t dev;
    uint64_t alice = signup(f, "alice", 1, &dev);
    struct store_prekey pks[STOCK];
    struct store_req req;
    prep_upload(&req, dev, 0xaa, 1, 7, pks, 1, STOCK);
    assert_int_equal(run_req(f, &req), 0);

    struct fetches *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    /* Held back by the lock, the fetches queue up and run in batches. */
    sqlite3 *lock = hold_write_lock(f->path);
    for (int i = 0; i < N_FETCHES; i++) {
        prep_bundle(&c->reqs[i], alice, 0, 0);
        c->reqs[i].cb = on_fetch;
        c->reqs[i].data = c;
        assert_int_equal(store_submit(f->port, &c->reqs[i]), 0);
    }
    release_write_lock(lock);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->done, N_FETCHES);
    assert_int_equal(c->with_prekey, STOCK);
    for (int id = 1; id <= STOCK; id++)
        assert_true(c->seen[id]);
    free(c);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM one_time_prekeys"), 0);
}

/* The version 1 schema exactly as the first release created it. */
static const char v1_schema[] =
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE,"
    " created INTEGER NOT NULL, pts INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE devices (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id INTEGER NOT NULL REFERENCES users(id),"
    " pubkey BLOB NOT NULL UNIQUE CHECK (length(pubkey) = 32), created INTEGER NOT NULL,"
    " sync_pts INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX devices_user ON devices(user_id);"
    "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, from_user INTEGER NOT NULL,"
    " from_device INTEGER NOT NULL, to_user INTEGER NOT NULL, client_id INTEGER NOT NULL,"
    " date INTEGER NOT NULL, text TEXT NOT NULL, chat_lo INTEGER NOT NULL,"
    " chat_hi INTEGER NOT NULL, from_pts INTEGER NOT NULL, UNIQUE (from_user, client_id));"
    "CREATE INDEX messages_chat ON messages(chat_lo, chat_hi, id);"
    "CREATE TABLE updates (user_id INTEGER NOT NULL, pts INTEGER NOT NULL,"
    " message_id INTEGER NOT NULL, PRIMARY KEY (user_id, pts)) WITHOUT ROWID;"
    "PRAGMA user_version = 1;"
    "INSERT INTO users (id, username, created, pts) VALUES (1, 'olduser', 1, 0);"
    "INSERT INTO devices (id, user_id, pubkey, created) VALUES (5, 1, zeroblob(32), 1);"
    "INSERT INTO messages VALUES (3, 1, 5, 1, 77, 1700000000, 'from v1', 1, 1, 1);"
    "INSERT INTO updates VALUES (1, 1, 3);";

static void test_version_1_database_upgrades_in_place(void **state)
{
    struct fixture *f = *state;
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    static const char *const names[] = {"parley.db", "parley.db-wal", "parley.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, v1_schema, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("v1 schema: %s", err);
    sqlite3_close(db);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), 1);

    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), 2);

    /* The old rows are there and the log goes on from them. */
    struct store_req req;
    prep_sync(&req, 1, 5, 0, 10);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_msgs, 1);
    assert_string_equal(req.out.msgs[0].text, "from v1");
    store_req_reset(&req);
    send_ok(f, 1, 1, 78, "after", &req);
    assert_int_equal(req.out.msg.pts, 2);
    store_req_reset(&req);
    /* The new tables work for the old device. */
    struct store_prekey pks[1];
    prep_upload(&req, 5, 0xaa, 1, 7, pks, 1, 1);
    assert_int_equal(run_req(f, &req), 0);
    prep_bundle(&req, 1, 0, 0);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_bundles, 1);
    assert_true(req.out.bundles[0].has_prekey);
    store_req_reset(&req);

    /* Opening again finds version 2 and changes nothing. */
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM identity_keys"), 1);
}

static void test_newer_schema_version_refuses_to_open(void **state)
{
    struct fixture *f = *state;
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store_config cfg = {.path = f->path};
    struct store *st = NULL;
    log_threshold = LOG_LEVEL_ERROR + 1; /* the refusal is logged as an error */
    assert_int_equal(store_open(&cfg, &st), PARLEY_ESTORE);
    log_threshold = LOG_LEVEL_WARN;
    assert_null(st);
    f->st = NULL;
    f->port = NULL;
}

int main(void)
{
    log_threshold = LOG_LEVEL_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signup_then_duplicate_name_is_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signup_with_reused_pubkey_is_bad_key_and_keeps_no_user,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_returns_owner_and_missing_device_is_enodevice,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_finds_user_and_missing_name_is_enouser, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_increments_pts_of_both_sides_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_same_client_id_twice_returns_first_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_to_missing_user_is_enouser, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_returns_updates_in_pts_order_with_limit_and_more,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_pages_newest_first_by_before_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failing_request_does_not_abort_its_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_sends_share_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_refuses_with_ebusy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_rejects_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_close_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pts_exact_with_a_tiny_user_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pts_continue_above_the_users_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_requests_queued_completes_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_port_closed_with_requests_in_flight_delivers_them_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_then_bundle_hands_out_each_prekey_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upload_with_a_taken_prekey_id_changes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_identity_key_is_set_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_first_upload_needs_a_signed_prekey_and_rotation_replaces_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_errors_and_device_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_fetches_never_share_a_prekey, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_version_1_database_upgrades_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_version_refuses_to_open, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
