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

#include <sys/stat.h>

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

/* Reopens the fixture's store with the write-ahead log checkpointed at
 * checkpoint_bytes. */
static void reopen_checkpoint(struct fixture *f, uint64_t checkpoint_bytes)
{
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    struct store_config cfg = {.path = f->path, .checkpoint_bytes = checkpoint_bytes};
    f->st = NULL;
    assert_int_equal(store_open(&cfg, &f->st), 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
}

static off_t wal_size(const struct fixture *f)
{
    char p[160];
    snprintf(p, sizeof(p), "%s-wal", f->path);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_size;
}

/* n sends of about 1 KiB from a to b, one commit each, client ids from
 * first; returns the largest the write-ahead log file was after any. */
static off_t send_many(struct fixture *f, uint64_t a, uint64_t b, uint64_t first, int n)
{
    char text[1001];
    memset(text, 'w', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    off_t most = 0;
    for (int i = 0; i < n; i++) {
        struct store_req r;
        send_ok(f, a, b, first + (uint64_t)i, text, &r);
        store_req_reset(&r);
        off_t now = wal_size(f);
        most = now > most ? now : most;
    }
    return most;
}

/* checkpoint_bytes decides when the writer copies the log into the
 * database: with 64 KiB the log file never holds much more than that (one
 * commit beyond it at most, and it is cut back when it restarts); with
 * 64 MiB, 600 commits (about 10 MiB of log) stay in it, where SQLite's own
 * default would have checkpointed at 4 MiB. Nothing is lost either way. */
static void test_checkpoint_size_bounds_the_log(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);

    reopen_checkpoint(f, 64 << 10);
    off_t small = send_many(f, alice, bob, 1, 200);
    assert_true(small > 0);
    assert_true(small <= 128 << 10);

    reopen_checkpoint(f, 64 << 20);
    off_t large = send_many(f, alice, bob, 1001, 600);
    assert_true(large > 6 << 20);

    reopen_checkpoint(f, 0);
    struct store_req r;
    prep_sync(&r, bob, 0, 0, 1000);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.pts, 800);
    assert_int_equal(r.out.n_msgs, 800);
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

/* --- secret messages ------------------------------------------------------- */

#define DATE 1700000000

/* Adds another device to user straight in the file, as no store operation
 * does that yet; the store reads devices from the file on each send. */
static uint64_t add_device(struct fixture *f, uint64_t user)
{
    sqlite3 *db = NULL;
    char sql[160];
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    snprintf(sql, sizeof(sql),
             "INSERT INTO devices (user_id, pubkey, created) VALUES (%llu, randomblob(32), 1)",
             (unsigned long long)user);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    uint64_t id = (uint64_t)sqlite3_last_insert_rowid(db);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return id;
}

/* Gives device keys, so that it takes part in secret sends. */
static void give_keys(struct fixture *f, uint64_t device)
{
    struct store_prekey pks[1];
    struct store_req req;
    prep_upload(&req, device, (uint8_t)device, (uint32_t)device, 7, pks, 1, 1);
    assert_int_equal(run_req(f, &req), 0);
}

/* Envelopes for devs[0..n), all with body and type. */
static void fill_envs(struct store_envelope_in *envs, const uint64_t *devs, size_t n,
                      const uint8_t *body, size_t body_len, uint32_t type)
{
    for (size_t i = 0; i < n; i++) {
        envs[i].device_id = devs[i];
        envs[i].type = type;
        envs[i].body = body;
        envs[i].body_len = body_len;
    }
}

static void prep_secret(struct store_req *req, uint64_t from, uint64_t from_device, uint64_t to,
                        uint64_t client_id, const struct store_envelope_in *envs, size_t n)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SECRET_SEND;
    req->in.secret.from_user = from;
    req->in.secret.from_device = from_device;
    req->in.secret.to_user = to;
    req->in.secret.client_id = client_id;
    req->in.secret.date = DATE;
    req->in.secret.envs = envs;
    req->in.secret.n_envs = n;
}

static void prep_fetch(struct store_req *req, uint64_t device, unsigned limit)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SECRET_FETCH;
    req->in.fetch.device = device;
    req->in.fetch.limit = limit;
    req->in.fetch.max_bytes = SIZE_MAX;
}

static void prep_ack(struct store_req *req, uint64_t device, const uint64_t *ids, size_t n)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SECRET_ACK;
    req->in.ack.device = device;
    req->in.ack.ids = ids;
    req->in.ack.n_ids = n;
}

/* Acks ids for device and returns how many went. */
static unsigned ack(struct fixture *f, uint64_t device, const uint64_t *ids, size_t n)
{
    struct store_req req;
    prep_ack(&req, device, ids, n);
    assert_int_equal(run_req(f, &req), 0);
    return req.out.deleted;
}

/* How many envelopes are queued for device. */
static size_t queued_for(struct fixture *f, uint64_t device)
{
    struct store_req req;
    prep_fetch(&req, device, STORE_PAGE_MAX);
    assert_int_equal(run_req(f, &req), 0);
    size_t n = req.out.n_envelopes;
    assert_false(req.out.more);
    store_req_reset(&req);
    return n;
}

/* The status a request ends with: the refusal of store_submit, or the one
 * its callback gets (the contract allows either for some refusals). */
static int final_status(struct fixture *f, struct store_req *req)
{
    int done = 0;
    req->cb = on_done;
    req->data = &done;
    int rc = store_submit(f->port, req);
    if (rc != 0)
        return rc;
    while (!done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(done, 1);
    return req->status;
}

/* Submission must refuse req with PARLEY_EINVAL and never call back. */
static void assert_refused(struct fixture *f, struct store_req *req)
{
    int done = 0;
    req->cb = on_done;
    req->data = &done;
    assert_int_equal(store_submit(f->port, req), PARLEY_EINVAL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(done, 0);
}

/* got[0..n) holds exactly the ids of want[0..n_want), in any order. */
static void assert_same_ids(const uint64_t *got, size_t n, const uint64_t *want, size_t n_want)
{
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n_want; i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found = found || got[j] == want[i];
        if (!found)
            fail_msg("device %llu not reported", (unsigned long long)want[i]);
    }
}

static void assert_mismatch(const struct store_mismatch *m, uint64_t user, const uint64_t *missing,
                            size_t n_missing, const uint64_t *stale, size_t n_stale)
{
    assert_int_equal(m->user_id, user);
    assert_same_ids(m->missing, m->n_missing, missing, n_missing);
    assert_same_ids(m->stale, m->n_stale, stale, n_stale);
}

static void test_secret_send_queues_the_envelope_for_its_device_only(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t b2 = add_device(f, bob); /* no keys: needs no envelope */
    give_keys(f, a1);
    give_keys(f, b1);

    static const uint8_t body[] = {0x33, 0x00, 0xff, 0x10, 0x00, 0x7f, 0x80, 0x01};
    struct store_envelope_in env;
    fill_envs(&env, &b1, 1, body, sizeof(body), 3);
    struct store_req r;
    prep_secret(&r, alice, a1, bob, 77, &env, 1);
    assert_int_equal(run_req(f, &r), 0);
    assert_false(r.out.duplicate);
    assert_int_equal(r.out.n_mismatches, 0);
    assert_true(r.out.msg.id > 0);
    assert_int_equal(r.out.msg.from_user, alice);
    assert_int_equal(r.out.msg.from_device, a1);
    assert_int_equal(r.out.msg.to_user, bob);
    assert_int_equal(r.out.msg.client_id, 77);
    assert_int_equal(r.out.msg.date, DATE);
    assert_string_equal(r.out.msg.from_name, "alice");
    assert_string_equal(r.out.msg.to_name, "bob");
    assert_int_equal(r.out.n_envs, 1);
    assert_non_null(r.out.envs);
    const uint64_t env_id = r.out.envs[0].id;
    const uint64_t msg_id = r.out.msg.id;
    assert_true(env_id > 0);
    assert_int_equal(r.out.envs[0].user_id, bob);
    assert_int_equal(r.out.envs[0].device_id, b1);
    store_req_reset(&r);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM envelopes"), 1);

    prep_fetch(&r, b1, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 1);
    assert_false(r.out.more);
    const struct store_envelope *e = &r.out.envelopes[0];
    assert_int_equal(e->id, env_id);
    assert_int_equal(e->message_id, msg_id);
    assert_int_equal(e->from_user, alice);
    assert_int_equal(e->from_device, a1);
    assert_int_equal(e->to_user, bob);
    assert_int_equal(e->date, DATE);
    assert_int_equal(e->type, 3);
    assert_string_equal(e->from_name, "alice");
    assert_string_equal(e->to_name, "bob");
    assert_int_equal(e->body_len, sizeof(body));
    assert_memory_equal(e->body, body, sizeof(body));
    store_req_reset(&r);
    assert_null(r.out.envelopes);

    /* Fetching does not dequeue; other devices have nothing. */
    assert_int_equal(queued_for(f, b1), 1);
    assert_int_equal(queued_for(f, b2), 0);
    assert_int_equal(queued_for(f, a1), 0);
    assert_int_equal(queued_for(f, b1 + 1000), 0);
}

static void test_secret_send_to_all_devices_shares_one_message_id(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t b2 = add_device(f, bob);
    uint64_t a2 = add_device(f, alice);
    give_keys(f, a1);
    give_keys(f, a2);
    give_keys(f, b1);
    give_keys(f, b2);

    /* One distinct body per device, listed in no particular order. */
    const uint64_t devs[3] = {b2, a2, b1};
    const uint64_t owner[3] = {bob, alice, bob};
    uint8_t bodies[3][4] = {{1, 1, 1, 1}, {2, 2, 2, 2}, {3, 3, 3, 3}};
    struct store_envelope_in envs[3];
    for (size_t i = 0; i < 3; i++)
        fill_envs(&envs[i], &devs[i], 1, bodies[i], sizeof(bodies[i]), (uint32_t)i + 1);
    struct store_req r;
    prep_secret(&r, alice, a1, bob, 5, envs, 3);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envs, 3);
    uint64_t ids[3];
    const uint64_t msg_id = r.out.msg.id;
    for (size_t i = 0; i < 3; i++) {
        ids[i] = r.out.envs[i].id;
        assert_int_equal(r.out.envs[i].device_id, devs[i]);
        assert_int_equal(r.out.envs[i].user_id, owner[i]);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(ids[i], ids[j]);
    }
    store_req_reset(&r);

    for (size_t i = 0; i < 3; i++) {
        prep_fetch(&r, devs[i], 10);
        assert_int_equal(run_req(f, &r), 0);
        assert_int_equal(r.out.n_envelopes, 1);
        assert_int_equal(r.out.envelopes[0].id, ids[i]);
        assert_int_equal(r.out.envelopes[0].message_id, msg_id);
        assert_int_equal(r.out.envelopes[0].type, i + 1);
        assert_int_equal(r.out.envelopes[0].to_user, bob);
        assert_memory_equal(r.out.envelopes[0].body, bodies[i], sizeof(bodies[i]));
        store_req_reset(&r);
    }
    assert_int_equal(queued_for(f, a1), 0);
}

static void test_secret_ack_deletes_only_the_devices_own_envelopes(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t a2 = add_device(f, alice);
    give_keys(f, a1);
    give_keys(f, a2);
    give_keys(f, b1);
    const uint64_t devs[2] = {b1, a2};
    static const uint8_t body[] = "ack me";
    struct store_envelope_in envs[2];
    fill_envs(envs, devs, 2, body, sizeof(body), 1);
    struct store_req r;
    prep_secret(&r, alice, a1, bob, 1, envs, 2);
    assert_int_equal(run_req(f, &r), 0);
    const uint64_t for_b1 = r.out.envs[0].id, for_a2 = r.out.envs[1].id;
    store_req_reset(&r);

    /* Another device's envelope, and ids that do not exist: ignored. */
    assert_int_equal(ack(f, a2, &for_b1, 1), 0);
    assert_int_equal(ack(f, a1, (const uint64_t[]){for_b1, for_a2}, 2), 0);
    assert_int_equal(queued_for(f, b1), 1);
    assert_int_equal(queued_for(f, a2), 1);

    assert_int_equal(ack(f, b1, (const uint64_t[]){for_a2 + 1000, for_b1, for_a2}, 3), 1);
    assert_int_equal(queued_for(f, b1), 0);
    assert_int_equal(queued_for(f, a2), 1);
    assert_int_equal(ack(f, b1, &for_b1, 1), 0);
    /* The same id twice in one ack goes once. */
    assert_int_equal(ack(f, a2, (const uint64_t[]){for_a2, for_a2}, 2), 1);
    assert_int_equal(queued_for(f, a2), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM envelopes"), 0);
}

static void test_secret_fetch_pages_oldest_first_with_limit_and_more(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    give_keys(f, a1);
    give_keys(f, b1);
    uint64_t msg_ids[5];
    uint8_t bodies[5][2];
    struct store_req r;
    for (size_t i = 0; i < 5; i++) {
        bodies[i][0] = 0xb0;
        bodies[i][1] = (uint8_t)i;
        struct store_envelope_in env;
        fill_envs(&env, &b1, 1, bodies[i], 2, 1);
        prep_secret(&r, alice, a1, bob, 100 + i, &env, 1);
        assert_int_equal(run_req(f, &r), 0);
        msg_ids[i] = r.out.msg.id;
        store_req_reset(&r);
    }

    /* All five in one page: exactly the limit, nothing more. */
    prep_fetch(&r, b1, 5);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 5);
    assert_false(r.out.more);
    store_req_reset(&r);

    size_t next = 0;
    const size_t pages[3] = {2, 2, 1};
    for (size_t p = 0; p < 3; p++) {
        prep_fetch(&r, b1, 2);
        assert_int_equal(run_req(f, &r), 0);
        assert_int_equal(r.out.n_envelopes, pages[p]);
        assert_int_equal(r.out.more, p < 2);
        uint64_t ids[2];
        for (size_t i = 0; i < r.out.n_envelopes; i++, next++) {
            assert_int_equal(r.out.envelopes[i].message_id, msg_ids[next]);
            assert_int_equal(r.out.envelopes[i].body_len, 2);
            assert_memory_equal(r.out.envelopes[i].body, bodies[next], 2);
            ids[i] = r.out.envelopes[i].id;
        }
        size_t n = r.out.n_envelopes;
        store_req_reset(&r);
        assert_int_equal(ack(f, b1, ids, n), n);
    }
    assert_int_equal(next, 5);
    prep_fetch(&r, b1, 2);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 0);
    assert_false(r.out.more);
    store_req_reset(&r);
}

/* Alice (sending from a1) has a2 with keys and a3 without; Bob has b1 and
 * b2 with keys and b3 without; Carol's c1 has keys. */
struct cast {
    uint64_t alice, bob, carol;
    uint64_t a1, a2, a3, b1, b2, b3, c1;
};

static void make_cast(struct fixture *f, struct cast *c)
{
    c->alice = signup(f, "alice", 1, &c->a1);
    c->bob = signup(f, "bob", 2, &c->b1);
    c->carol = signup(f, "carol", 3, &c->c1);
    c->a2 = add_device(f, c->alice);
    c->a3 = add_device(f, c->alice);
    c->b2 = add_device(f, c->bob);
    c->b3 = add_device(f, c->bob);
    give_keys(f, c->a1);
    give_keys(f, c->a2);
    give_keys(f, c->b1);
    give_keys(f, c->b2);
    give_keys(f, c->c1);
}

/* Sends alice -> bob to devs[0..n) and expects PARLEY_EDEVICES_CHANGED;
 * the caller checks r->out.mismatches and resets r. */
static void send_refused(struct fixture *f, const struct cast *c, const uint64_t *devs, size_t n,
                         struct store_req *r)
{
    static const uint8_t body[] = "refused";
    struct store_envelope_in envs[8];
    assert_true(n <= 8);
    fill_envs(envs, devs, n, body, sizeof(body), 1);
    prep_secret(r, c->alice, c->a1, c->bob, 9, envs, n);
    assert_int_equal(run_req(f, r), PARLEY_EDEVICES_CHANGED);
    r->in.secret.envs = NULL; /* envs is gone when this returns */
}

static void test_secret_send_with_changed_devices_reports_them_and_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct cast c;
    make_cast(f, &c);
    struct store_req r;

    /* Bob's b2 is missing. */
    send_refused(f, &c, (const uint64_t[]){c.b1, c.a2}, 2, &r);
    assert_int_equal(r.out.n_mismatches, 1);
    assert_mismatch(&r.out.mismatches[0], c.bob, (const uint64_t[]){c.b2}, 1, NULL, 0);
    store_req_reset(&r);

    /* A device that does not exist, and Bob's b3, which has no keys. */
    send_refused(f, &c, (const uint64_t[]){c.b1, c.b2, c.a2, c.b1 + 1000}, 4, &r);
    assert_int_equal(r.out.n_mismatches, 1);
    assert_mismatch(&r.out.mismatches[0], c.bob, NULL, 0, (const uint64_t[]){c.b1 + 1000}, 1);
    store_req_reset(&r);
    send_refused(f, &c, (const uint64_t[]){c.b3, c.b1, c.b2, c.a2}, 4, &r);
    assert_int_equal(r.out.n_mismatches, 1);
    assert_mismatch(&r.out.mismatches[0], c.bob, NULL, 0, (const uint64_t[]){c.b3}, 1);
    store_req_reset(&r);

    /* The sending device itself is stale, for the sender only. */
    send_refused(f, &c, (const uint64_t[]){c.b1, c.b2, c.a2, c.a1}, 4, &r);
    assert_int_equal(r.out.n_mismatches, 1);
    assert_mismatch(&r.out.mismatches[0], c.alice, NULL, 0, (const uint64_t[]){c.a1}, 1);
    store_req_reset(&r);

    /* The sender's other device is missing. */
    send_refused(f, &c, (const uint64_t[]){c.b1, c.b2}, 2, &r);
    assert_int_equal(r.out.n_mismatches, 1);
    assert_mismatch(&r.out.mismatches[0], c.alice, (const uint64_t[]){c.a2}, 1, NULL, 0);
    store_req_reset(&r);

    /* Everything at once: recipient first, then sender; Carol's device is
     * not Alice's, so it counts against Bob. */
    send_refused(f, &c, (const uint64_t[]){c.a3, c.c1, c.b1}, 3, &r);
    assert_int_equal(r.out.n_mismatches, 2);
    assert_mismatch(&r.out.mismatches[0], c.bob, (const uint64_t[]){c.b2}, 1,
                    (const uint64_t[]){c.c1}, 1);
    assert_mismatch(&r.out.mismatches[1], c.alice, (const uint64_t[]){c.a2}, 1,
                    (const uint64_t[]){c.a3}, 1);
    store_req_reset(&r);
    assert_int_equal(r.out.n_mismatches, 0);

    /* Nothing of any of them was queued. */
    const uint64_t all[] = {c.a1, c.a2, c.a3, c.b1, c.b2, c.b3, c.c1, c.b1 + 1000};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_int_equal(queued_for(f, all[i]), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM envelopes"), 0);

    /* The right list goes through, and the refused client_id was not used. */
    static const uint8_t body[] = "ok";
    struct store_envelope_in envs[3];
    fill_envs(envs, (const uint64_t[]){c.b2, c.a2, c.b1}, 3, body, sizeof(body), 1);
    prep_secret(&r, c.alice, c.a1, c.bob, 9, envs, 3);
    assert_int_equal(run_req(f, &r), 0);
    assert_false(r.out.duplicate);
    assert_int_equal(r.out.n_envs, 3);
    store_req_reset(&r);
}

static void test_secret_send_refusals_write_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1, c1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t carol = signup(f, "carol", 3, &c1);
    give_keys(f, a1);
    give_keys(f, b1);
    static const uint8_t body[] = "x";
    struct store_envelope_in envs[2];
    struct store_req r;

    /* The same device twice. */
    fill_envs(envs, (const uint64_t[]){b1, b1}, 2, body, sizeof(body), 1);
    prep_secret(&r, alice, a1, bob, 1, envs, 2);
    assert_int_equal(final_status(f, &r), PARLEY_EINVAL);
    store_req_reset(&r);

    /* Carol has a device, but without keys: even listed, it is no keys. */
    fill_envs(envs, &c1, 1, body, sizeof(body), 1);
    prep_secret(&r, alice, a1, carol, 2, envs, 1);
    assert_int_equal(run_req(f, &r), PARLEY_ENOKEYS);
    store_req_reset(&r);

    /* No such recipient. */
    fill_envs(envs, &b1, 1, body, sizeof(body), 1);
    prep_secret(&r, alice, a1, carol + 1000, 3, envs, 1);
    assert_int_equal(run_req(f, &r), PARLEY_ENOUSER);
    store_req_reset(&r);

    assert_int_equal(queued_for(f, b1), 0);
    assert_int_equal(queued_for(f, c1), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM envelopes"), 0);
}

static void test_secret_send_retry_while_queued_is_a_duplicate(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t a2 = add_device(f, alice);
    give_keys(f, a1);
    give_keys(f, a2);
    give_keys(f, b1);
    static const uint8_t body[] = "first";
    static const uint8_t other[] = "retried";
    const uint64_t devs[2] = {b1, a2};
    struct store_envelope_in envs[2], again_envs[2];
    fill_envs(envs, devs, 2, body, sizeof(body), 1);
    fill_envs(again_envs, devs, 2, other, sizeof(other), 2);

    struct store_req r;
    prep_secret(&r, alice, a1, bob, 42, envs, 2);
    assert_int_equal(run_req(f, &r), 0);
    const uint64_t msg_id = r.out.msg.id;
    const uint64_t for_b1 = r.out.envs[0].id, for_a2 = r.out.envs[1].id;
    store_req_reset(&r);

    /* The retry, with another date and bodies, changes nothing. */
    prep_secret(&r, alice, a1, bob, 42, again_envs, 2);
    r.in.secret.date = DATE + 50;
    assert_int_equal(run_req(f, &r), 0);
    assert_true(r.out.duplicate);
    assert_int_equal(r.out.msg.id, msg_id);
    assert_int_equal(r.out.msg.from_user, alice);
    assert_int_equal(r.out.msg.from_device, a1);
    assert_int_equal(r.out.msg.to_user, bob);
    assert_int_equal(r.out.msg.client_id, 42);
    assert_int_equal(r.out.msg.date, DATE);
    assert_string_equal(r.out.msg.from_name, "alice");
    assert_string_equal(r.out.msg.to_name, "bob");
    assert_int_equal(r.out.n_envs, 0);
    store_req_reset(&r);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM envelopes"), 2);
    prep_fetch(&r, b1, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 1);
    assert_memory_equal(r.out.envelopes[0].body, body, sizeof(body));
    store_req_reset(&r);

    /* Still a duplicate while one envelope of it is queued. */
    assert_int_equal(ack(f, b1, &for_b1, 1), 1);
    prep_secret(&r, alice, a1, bob, 42, again_envs, 2);
    assert_int_equal(run_req(f, &r), 0);
    assert_true(r.out.duplicate);
    assert_int_equal(r.out.msg.id, msg_id);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 0);
    assert_int_equal(queued_for(f, a2), 1);

    /* Two sends of one client_id queued together: the second is the retry. */
    struct store_req twice[2];
    int done = 0;
    sqlite3 *lock = hold_write_lock(f->path);
    for (size_t i = 0; i < 2; i++) {
        prep_secret(&twice[i], alice, a1, bob, 43, envs, 2);
        twice[i].cb = on_done;
        twice[i].data = &done;
        assert_int_equal(store_submit(f->port, &twice[i]), 0);
    }
    release_write_lock(lock);
    while (done < 2)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(twice[0].status, 0);
    assert_int_equal(twice[1].status, 0);
    assert_false(twice[0].out.duplicate);
    assert_true(twice[1].out.duplicate);
    assert_int_equal(twice[1].out.msg.id, twice[0].out.msg.id);
    assert_int_not_equal(twice[0].out.msg.id, msg_id);
    assert_int_equal(twice[1].out.n_envs, 0);
    store_req_reset(&twice[0]);
    store_req_reset(&twice[1]);
    assert_int_equal(queued_for(f, b1), 1);
    assert_int_equal(queued_for(f, a2), 2);
    (void)for_a2;
}

/* Whether the file at path holds the n bytes of pat (a missing file does
 * not). */
static bool file_has(const char *path, const uint8_t *pat, size_t n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    size_t len = 0, cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(fp);
    bool found = false;
    for (size_t i = 0; !found && i + n <= len; i++)
        found = memcmp(buf + i, pat, n) == 0;
    free(buf);
    return found;
}

static void random_bytes(uint8_t *out, size_t n)
{
    FILE *fp = fopen("/dev/urandom", "rb");
    assert_non_null(fp);
    assert_int_equal(fread(out, 1, n, fp), n);
    fclose(fp);
}

static int64_t query_int_readonly(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

#define BIG_BODY 20000 /* spills into overflow pages */

static void test_acked_envelopes_leave_no_copy_in_the_files(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t a2 = add_device(f, alice);
    give_keys(f, a1);
    give_keys(f, a2);
    give_keys(f, b1);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);

    uint8_t pat[64];
    random_bytes(pat, sizeof(pat));
    uint8_t *big = malloc(BIG_BODY);
    assert_non_null(big);
    random_bytes(big, BIG_BODY);
    const uint8_t *big_mid = big + BIG_BODY / 2; /* a slice on an overflow page */
    struct store_envelope_in envs[2];
    fill_envs(&envs[0], &b1, 1, pat, sizeof(pat), 1);
    fill_envs(&envs[1], &a2, 1, big, BIG_BODY, 1);
    struct store_req r;
    prep_secret(&r, alice, a1, bob, 1, envs, 2);
    assert_int_equal(run_req(f, &r), 0);
    const uint64_t for_b1 = r.out.envs[0].id, for_a2 = r.out.envs[1].id;
    store_req_reset(&r);

    /* Queued, the bodies are in the files: the search can find them. */
    assert_true(file_has(f->path, pat, sizeof(pat)) || file_has(wal, pat, sizeof(pat)));
    assert_true(file_has(f->path, big_mid, 64) || file_has(wal, big_mid, 64));
    prep_fetch(&r, a2, 1);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.envelopes[0].body_len, BIG_BODY);
    assert_memory_equal(r.out.envelopes[0].body, big, BIG_BODY);
    store_req_reset(&r);

    assert_int_equal(ack(f, b1, &for_b1, 1), 1);
    assert_int_equal(ack(f, a2, &for_a2, 1), 1);

    /* Once the writer is idle the log is checkpointed and truncated; it
     * gets nothing more to do, so this is a wait, not a race. */
    struct stat sb;
    uint64_t deadline = uv_hrtime() + 10ull * 1000 * 1000 * 1000;
    while (stat(wal, &sb) == 0 && sb.st_size > 0 && uv_hrtime() < deadline)
        usleep(10 * 1000);
    if (stat(wal, &sb) == 0 && sb.st_size > 0)
        fail_msg("the -wal file still has %lld bytes with the writer idle after acks",
                 (long long)sb.st_size);
    assert_false(file_has(wal, pat, sizeof(pat)));
    assert_false(file_has(f->path, pat, sizeof(pat)));
    assert_false(file_has(f->path, big_mid, 64));

    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = NULL;
    f->port = NULL;
    assert_false(file_has(f->path, pat, sizeof(pat)));
    assert_false(file_has(wal, pat, sizeof(pat)));
    assert_false(file_has(f->path, big_mid, 64));
    assert_false(file_has(wal, big_mid, 64));
    assert_int_equal(query_int_readonly(f->path, "SELECT count(*) FROM envelopes"), 0);
    free(big);

    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
}

static void test_secret_submit_rejects_invalid_requests(void **state)
{
    struct fixture *f = *state;
    static const uint8_t body[1] = {1};
    struct store_envelope_in env = {.device_id = 5, .type = 1, .body = body, .body_len = 1};
    struct store_envelope_in *many = calloc(STORE_ENVELOPES_MAX + 1, sizeof(*many));
    assert_non_null(many);
    for (size_t i = 0; i <= STORE_ENVELOPES_MAX; i++) {
        many[i] = env;
        many[i].device_id = 1000 + i;
    }
    uint8_t *huge = calloc(1, STORE_ENVELOPE_BODY_MAX + 1);
    assert_non_null(huge);
    struct store_req r;

    /* SECRET_SEND: zero ids, no or too many envelopes, bad bodies. */
    prep_secret(&r, 0, 1, 2, 1, &env, 1);
    assert_refused(f, &r);
    prep_secret(&r, 1, 0, 2, 1, &env, 1);
    assert_refused(f, &r);
    prep_secret(&r, 1, 1, 0, 1, &env, 1);
    assert_refused(f, &r);
    prep_secret(&r, 1, 1, 2, 0, &env, 1);
    assert_refused(f, &r);
    prep_secret(&r, 1, 1, 2, 1, &env, 0);
    assert_refused(f, &r);
    prep_secret(&r, 1, 1, 2, 1, NULL, 1);
    assert_refused(f, &r);
    prep_secret(&r, 1, 1, 2, 1, many, STORE_ENVELOPES_MAX + 1);
    assert_refused(f, &r);
    struct store_envelope_in bad = env;
    bad.device_id = 0;
    prep_secret(&r, 1, 1, 2, 1, &bad, 1);
    assert_refused(f, &r);
    bad = env;
    bad.body_len = 0;
    prep_secret(&r, 1, 1, 2, 1, &bad, 1);
    assert_refused(f, &r);
    bad = env;
    bad.body = NULL;
    prep_secret(&r, 1, 1, 2, 1, &bad, 1);
    assert_refused(f, &r);
    bad = env;
    bad.body = huge;
    bad.body_len = STORE_ENVELOPE_BODY_MAX + 1;
    prep_secret(&r, 1, 1, 2, 1, &bad, 1);
    assert_refused(f, &r);

    /* SECRET_FETCH: a zero device, a limit outside 1..STORE_PAGE_MAX. */
    prep_fetch(&r, 0, 10);
    assert_refused(f, &r);
    prep_fetch(&r, 5, 0);
    assert_refused(f, &r);
    prep_fetch(&r, 5, STORE_PAGE_MAX + 1);
    assert_refused(f, &r);

    /* SECRET_ACK: a zero device, no ids, more than STORE_ACK_MAX. */
    uint64_t *ids = calloc(STORE_ACK_MAX + 1, sizeof(*ids));
    assert_non_null(ids);
    for (size_t i = 0; i <= STORE_ACK_MAX; i++)
        ids[i] = i + 1;
    prep_ack(&r, 0, ids, 1);
    assert_refused(f, &r);
    prep_ack(&r, 5, ids, 0);
    assert_refused(f, &r);
    prep_ack(&r, 5, NULL, 1);
    assert_refused(f, &r);
    prep_ack(&r, 5, ids, STORE_ACK_MAX + 1);
    assert_refused(f, &r);

    /* The largest of each is accepted. */
    prep_fetch(&r, 5, STORE_PAGE_MAX);
    assert_int_equal(run_req(f, &r), 0);
    prep_ack(&r, 5, ids, STORE_ACK_MAX);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.deleted, 0);
    prep_secret(&r, 1, 1, 2, 1, many, STORE_ENVELOPES_MAX);
    assert_int_not_equal(final_status(f, &r), PARLEY_EINVAL);
    store_req_reset(&r);

    /* A body of exactly STORE_ENVELOPE_BODY_MAX goes through whole. */
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    give_keys(f, a1);
    give_keys(f, b1);
    memset(huge, 0x5a, STORE_ENVELOPE_BODY_MAX);
    bad = env;
    bad.device_id = b1;
    bad.body = huge;
    bad.body_len = STORE_ENVELOPE_BODY_MAX;
    prep_secret(&r, alice, a1, bob, 1, &bad, 1);
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    prep_fetch(&r, b1, 1);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 1);
    assert_int_equal(r.out.envelopes[0].body_len, STORE_ENVELOPE_BODY_MAX);
    assert_memory_equal(r.out.envelopes[0].body, huge, STORE_ENVELOPE_BODY_MAX);
    store_req_reset(&r);
    free(ids);
    free(huge);
    free(many);
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
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);

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

    /* Opening again finds version 3 and changes nothing. */
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM identity_keys"), 1);
}

/* The version 2 schema exactly as the second release created it, with a
 * device that has keys and a message. */
/* A 33-byte key in Signal's form, as an SQL blob literal. */
#define V2_KEY "X'05" V2_HALF V2_HALF "'"
#define V2_HALF "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
static const char v2_tables[] =
    "CREATE TABLE identity_keys (device_id INTEGER PRIMARY KEY REFERENCES devices(id),"
    " registration_id INTEGER NOT NULL, key BLOB NOT NULL CHECK (length(key) = 33));"
    "CREATE TABLE signed_prekeys (device_id INTEGER PRIMARY KEY REFERENCES devices(id),"
    " id INTEGER NOT NULL, key BLOB NOT NULL CHECK (length(key) = 33),"
    " signature BLOB NOT NULL CHECK (length(signature) = 64), created INTEGER NOT NULL);"
    "CREATE TABLE one_time_prekeys (device_id INTEGER NOT NULL REFERENCES devices(id),"
    " id INTEGER NOT NULL, key BLOB NOT NULL CHECK (length(key) = 33),"
    " PRIMARY KEY (device_id, id)) WITHOUT ROWID;"
    "PRAGMA user_version = 2;"
    "INSERT INTO identity_keys VALUES (5, 4321, " V2_KEY ");"
    "INSERT INTO signed_prekeys VALUES (5, 7, " V2_KEY ", zeroblob(64), 1);"
    "INSERT INTO one_time_prekeys VALUES (5, 1, " V2_KEY ");"
    "INSERT INTO one_time_prekeys VALUES (5, 2, " V2_KEY ");";

static void test_version_2_database_upgrades_keeping_its_data(void **state)
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
    if (sqlite3_exec(db, v1_schema, NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db, v2_tables, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("v2 schema: %s", err);
    sqlite3_close(db);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), 2);

    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);

    /* The old rows are there: the message, the keys and their stock. */
    struct store_req req;
    prep_sync(&req, 1, 5, 0, 10);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_msgs, 1);
    assert_string_equal(req.out.msgs[0].text, "from v1");
    store_req_reset(&req);
    bool has_keys = false;
    assert_int_equal(key_count(f, 5, &has_keys), 2);
    assert_true(has_keys);
    prep_bundle(&req, 1, 0, 0);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_bundles, 1);
    assert_int_equal(req.out.bundles[0].registration_id, 4321);
    assert_int_equal(req.out.bundles[0].signed_prekey.id, 7);
    assert_int_equal(req.out.bundles[0].prekey.id, 1);
    store_req_reset(&req);

    /* The old keyed device takes part in secret messages. */
    uint64_t b1;
    uint64_t bob = signup(f, "bob", 2, &b1);
    give_keys(f, b1);
    static const uint8_t body[] = "to the old device";
    struct store_envelope_in env;
    fill_envs(&env, (const uint64_t[]){5}, 1, body, sizeof(body), 1);
    prep_secret(&req, bob, b1, 1, 1, &env, 1);
    assert_int_equal(run_req(f, &req), 0);
    store_req_reset(&req);
    prep_fetch(&req, 5, 10);
    assert_int_equal(run_req(f, &req), 0);
    assert_int_equal(req.out.n_envelopes, 1);
    assert_string_equal(req.out.envelopes[0].from_name, "bob");
    assert_string_equal(req.out.envelopes[0].to_name, "olduser");
    assert_memory_equal(req.out.envelopes[0].body, body, sizeof(body));
    store_req_reset(&req);

    /* Opening again finds version 3 and keeps the queue. */
    reopen(f, 0);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(queued_for(f, 5), 1);
}

static void test_newer_schema_version_refuses_to_open(void **state)
{
    struct fixture *f = *state;
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
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

/* --- auto-delete ----------------------------------------------------------- */

static void prep_ttl(struct store_req *req, uint64_t user, uint64_t peer, uint32_t ttl_s)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_SET_TTL;
    req->in.ttl.user = user;
    req->in.ttl.peer = peer;
    req->in.ttl.ttl_s = ttl_s;
}

/* Sets the chat's auto-delete; *pts and *to_pts (either may be NULL) get
 * the result. */
static void set_ttl(struct fixture *f, uint64_t user, uint64_t peer, uint32_t ttl_s, uint64_t *pts,
                    uint64_t *to_pts)
{
    struct store_req req;
    prep_ttl(&req, user, peer, ttl_s);
    assert_int_equal(run_req(f, &req), 0);
    if (pts)
        *pts = req.out.pts;
    if (to_pts)
        *to_pts = req.out.to_pts;
    store_req_reset(&req);
}

static void prep_purge(struct store_req *req, int64_t now, unsigned limit)
{
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_PURGE;
    req->in.purge.now = now;
    req->in.purge.limit = limit;
}

/* Sends text dated date; returns the result in *out (the caller resets it). */
static void send_at(struct fixture *f, uint64_t from, uint64_t to, uint64_t client_id,
                    const char *text, int64_t date, struct store_req *out)
{
    prep_send(out, from, to, client_id, text);
    out->in.send.date = date;
    assert_int_equal(run_req(f, out), 0);
}

/* Sends text dated date and returns its id and, in *expires, its expiry. */
static uint64_t send_id(struct fixture *f, uint64_t from, uint64_t to, uint64_t client_id,
                        int64_t date, int64_t *expires)
{
    struct store_req r;
    send_at(f, from, to, client_id, "expiring", date, &r);
    uint64_t id = r.out.msg.id;
    if (expires)
        *expires = r.out.msg.expires;
    store_req_reset(&r);
    return id;
}

/* Id i of a DELETED update: 8 bytes, little-endian. */
static uint64_t deleted_id(const struct store_msg *m, size_t i)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = (v << 8) | m->ids[i * 8 + (size_t)b];
    return v;
}

/* Syncs all of user's log from from_pts into *r (the caller resets it). */
static void sync_all(struct fixture *f, uint64_t user, uint64_t from_pts, struct store_req *r)
{
    prep_sync(r, user, 0, from_pts, STORE_PAGE_MAX);
    assert_int_equal(run_req(f, r), 0);
    assert_false(r->out.more);
}

/* The pts of user's log: SYNC's out.pts. */
static uint64_t log_pts(struct fixture *f, uint64_t user)
{
    struct store_req r;
    prep_sync(&r, user, 0, UINT64_MAX / 2, 1);
    assert_int_equal(run_req(f, &r), 0);
    uint64_t pts = r.out.pts;
    store_req_reset(&r);
    return pts;
}

/* The entry of out.purged for user; fails if there is none. */
static const struct store_purged *purged_of(const struct store_req *r, uint64_t user)
{
    for (size_t i = 0; i < r->out.n_purged; i++)
        if (r->out.purged[i].user_id == user)
            return &r->out.purged[i];
    fail_msg("user %llu not in the purge result", (unsigned long long)user);
    return NULL;
}

static void assert_ids(const uint64_t *got, size_t n, const uint64_t *want, size_t n_want)
{
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

/* The DELETED update m lists exactly want[0..n), in this order. */
static void assert_deleted(const struct store_msg *m, const uint64_t *want, size_t n)
{
    assert_int_equal(m->kind, STORE_UPD_DELETED);
    assert_int_equal(m->n_ids, n);
    assert_non_null(m->ids);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(deleted_id(m, i), want[i]);
}

static void assert_ttl_update(const struct store_msg *m, uint64_t pts, uint64_t peer,
                              uint32_t ttl_s, bool by_peer)
{
    assert_int_equal(m->kind, STORE_UPD_TTL);
    assert_int_equal(m->pts, pts);
    assert_int_equal(m->peer, peer);
    assert_int_equal(m->ttl_s, ttl_s);
    assert_int_equal(m->by_peer, by_peer);
}

/* How many messages HISTORY shows between user and peer. */
static size_t history_count(struct fixture *f, uint64_t user, uint64_t peer)
{
    struct store_req r;
    prep_history(&r, user, peer, 0, STORE_PAGE_MAX);
    assert_int_equal(run_req(f, &r), 0);
    size_t n = r.out.n_msgs;
    store_req_reset(&r);
    return n;
}

static void test_set_ttl_appends_an_update_to_both_logs(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    struct store_req r;
    send_ok(f, alice, bob, 1, "before", &r);
    store_req_reset(&r);

    uint64_t pts = 0, to_pts = 0;
    set_ttl(f, alice, bob, 60, &pts, &to_pts);
    assert_int_equal(pts, 2);
    assert_int_equal(to_pts, 2);

    sync_all(f, alice, 0, &r);
    assert_int_equal(r.out.pts, 2);
    assert_int_equal(r.out.n_msgs, 2);
    assert_int_equal(r.out.msgs[0].kind, STORE_UPD_MESSAGE);
    assert_string_equal(r.out.msgs[0].text, "before");
    assert_int_equal(r.out.msgs[0].expires, 0);
    assert_ttl_update(&r.out.msgs[1], 2, bob, 60, false);
    store_req_reset(&r);
    sync_all(f, bob, 1, &r);
    assert_int_equal(r.out.pts, 2);
    assert_int_equal(r.out.n_msgs, 1);
    assert_ttl_update(&r.out.msgs[0], 2, alice, 60, true);
    store_req_reset(&r);

    /* The peer turns it off: the same pair of updates, the other way. */
    set_ttl(f, bob, alice, 0, &pts, &to_pts);
    assert_int_equal(pts, 3);
    assert_int_equal(to_pts, 3);
    sync_all(f, bob, 2, &r);
    assert_int_equal(r.out.n_msgs, 1);
    assert_ttl_update(&r.out.msgs[0], 3, alice, 0, false);
    store_req_reset(&r);
    sync_all(f, alice, 2, &r);
    assert_int_equal(r.out.n_msgs, 1);
    assert_ttl_update(&r.out.msgs[0], 3, bob, 0, true);
    store_req_reset(&r);

    /* Notes to self: one update, in the one log. */
    set_ttl(f, alice, alice, STORE_TTL_MAX, &pts, &to_pts);
    assert_int_equal(pts, 4);
    assert_int_equal(to_pts, 0);
    sync_all(f, alice, 3, &r);
    assert_int_equal(r.out.pts, 4);
    assert_int_equal(r.out.n_msgs, 1);
    assert_ttl_update(&r.out.msgs[0], 4, alice, STORE_TTL_MAX, false);
    store_req_reset(&r);
    assert_int_equal(log_pts(f, bob), 3);

    /* No such peer: refused, and neither log moves. */
    prep_ttl(&r, alice, bob + 1000, 60);
    assert_int_equal(run_req(f, &r), PARLEY_ENOUSER);
    prep_ttl(&r, bob + 1000, alice, 60);
    assert_int_equal(run_req(f, &r), PARLEY_ENOUSER);
    assert_int_equal(log_pts(f, alice), 4);
    send_ok(f, alice, bob, 2, "after", &r);
    assert_int_equal(r.out.msg.pts, 5);
    assert_int_equal(r.out.to_pts, 4);
    assert_int_equal(r.out.msg.expires, 0);
    store_req_reset(&r);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM updates"), 9);
}

static void test_ttl_and_purge_submit_rejects_invalid_requests(void **state)
{
    struct fixture *f = *state;
    struct store_req r;
    prep_ttl(&r, 1, 2, STORE_TTL_MAX + 1);
    assert_refused(f, &r);
    prep_ttl(&r, 0, 2, 60);
    assert_refused(f, &r);
    prep_ttl(&r, 1, 0, 60);
    assert_refused(f, &r);
    prep_purge(&r, DATE, 0);
    assert_refused(f, &r);
    prep_purge(&r, DATE, STORE_PURGE_MAX + 1);
    assert_refused(f, &r);

    /* The largest of each is accepted. */
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    prep_ttl(&r, alice, bob, STORE_TTL_MAX);
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    prep_purge(&r, DATE, STORE_PURGE_MAX);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 0);
    store_req_reset(&r);
}

static void test_send_expires_only_in_the_chat_with_ttl(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    uint64_t carol = signup(f, "carol", 3, NULL);
    struct store_req r;
    int64_t expires = -1;
    send_id(f, alice, bob, 1, DATE, &expires);
    assert_int_equal(expires, 0);

    set_ttl(f, alice, bob, 60, NULL, NULL);
    send_at(f, alice, bob, 2, "hello", DATE + 5, &r);
    assert_int_equal(r.out.msg.expires, DATE + 5 + 60);
    assert_int_equal(r.out.msg.date, DATE + 5);
    const uint64_t expiring = r.out.msg.id;
    store_req_reset(&r);
    /* The setting is the chat's: it holds for the peer's sends too. */
    send_id(f, bob, alice, 3, DATE + 7, &expires);
    assert_int_equal(expires, DATE + 7 + 60);
    /* The store's clock dates the message: expires follows that date. */
    prep_send(&r, alice, bob, 4, "now");
    r.in.send.date = 0;
    assert_int_equal(run_req(f, &r), 0);
    assert_true(r.out.msg.date > 0);
    assert_int_equal(r.out.msg.expires, r.out.msg.date + 60);
    store_req_reset(&r);
    /* A retry of the message sent before the setting stays as it was. */
    send_at(f, alice, bob, 1, "retried", DATE + 9, &r);
    assert_true(r.out.duplicate);
    assert_int_equal(r.out.msg.expires, 0);
    store_req_reset(&r);

    /* Other chats of both members do not expire. */
    send_id(f, alice, carol, 5, DATE, &expires);
    assert_int_equal(expires, 0);
    send_id(f, carol, bob, 6, DATE, &expires);
    assert_int_equal(expires, 0);
    send_id(f, bob, bob, 7, DATE, &expires);
    assert_int_equal(expires, 0);

    /* SYNC and HISTORY rows carry the expiry. */
    sync_all(f, bob, 0, &r);
    int64_t want_sync[] = {0, 0, DATE + 65, DATE + 67, -1, 0, 0};
    assert_int_equal(r.out.n_msgs, 7);
    for (size_t i = 0; i < 7; i++) {
        if (i == 1 || i == 4)
            continue; /* the TTL update; the message dated by the clock */
        assert_int_equal(r.out.msgs[i].kind, STORE_UPD_MESSAGE);
        assert_int_equal(r.out.msgs[i].expires, want_sync[i]);
    }
    assert_int_equal(r.out.msgs[1].kind, STORE_UPD_TTL);
    store_req_reset(&r);
    prep_history(&r, alice, bob, expiring + 1, 2);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 2);
    assert_int_equal(r.out.msgs[0].id, expiring);
    assert_int_equal(r.out.msgs[0].expires, DATE + 65);
    assert_int_equal(r.out.msgs[1].expires, 0);
    store_req_reset(&r);

    /* Turned off, new messages no longer expire; the old ones still do. */
    set_ttl(f, bob, alice, 0, NULL, NULL);
    send_id(f, alice, bob, 8, DATE + 20, &expires);
    assert_int_equal(expires, 0);
    send_id(f, bob, alice, 9, DATE + 20, &expires);
    assert_int_equal(expires, 0);
    prep_history(&r, bob, alice, expiring + 1, 1);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.msgs[0].expires, DATE + 65);
    store_req_reset(&r);
}

/* The writer's cached "has chats with auto-delete" flag is lost whenever
 * its tiny cache is emptied; reloaded, it must still find the setting, and
 * never invent one. */
static void test_ttl_chat_found_again_with_a_tiny_user_cache(void **state)
{
    struct fixture *f = *state;
    uint64_t u[4] = {signup(f, "ann", 1, NULL), signup(f, "ben", 2, NULL),
                     signup(f, "cat", 3, NULL), signup(f, "dan", 4, NULL)};
    reopen(f, 2);
    /* ann-ben with ttl, cat-dan with ttl (set from the higher id), the
     * other pairs without. */
    set_ttl(f, u[0], u[1], 100, NULL, NULL);
    set_ttl(f, u[3], u[2], 50, NULL, NULL);
    for (int round = 0; round < 2; round++) {
        uint64_t cid = 1000 * (uint64_t)(round + 1);
        for (int a = 0; a < 4; a++) {
            for (int b = 0; b < 4; b++) {
                int64_t expires = -1;
                send_id(f, u[a], u[b], cid++, DATE, &expires);
                int64_t want = 0;
                if ((a == 0 && b == 1) || (a == 1 && b == 0))
                    want = DATE + 100;
                else if ((a == 2 && b == 3) || (a == 3 && b == 2))
                    want = DATE + 50;
                if (expires != want)
                    fail_msg("round %d, %d to %d: expires %lld, want %lld", round, a, b,
                             (long long)expires, (long long)want);
            }
        }
        reopen(f, 2); /* the second round starts with an empty cache */
    }
}

static void test_purge_before_expiry_changes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    set_ttl(f, alice, bob, 60, NULL, NULL);
    int64_t expires;
    send_id(f, alice, bob, 1, DATE, &expires);
    assert_int_equal(expires, DATE + 60);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    struct stat before_wal, after_wal;
    assert_int_equal(stat(wal, &before_wal), 0);
    struct store_stats before, after;
    store_stats(f->st, &before);

    struct store_req r;
    prep_purge(&r, DATE + 59, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 0);
    assert_null(r.out.purged);
    assert_false(r.out.more);
    store_req_reset(&r);
    prep_purge(&r, 0, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 0);
    store_req_reset(&r);

    /* No write transaction, nothing appended to the files. */
    store_stats(f->st, &after);
    assert_int_equal(after.commits, before.commits);
    assert_int_equal(stat(wal, &after_wal), 0);
    assert_int_equal(after_wal.st_size, before_wal.st_size);
    assert_int_equal(history_count(f, alice, bob), 1);
    assert_int_equal(log_pts(f, alice), 2);
    assert_int_equal(log_pts(f, bob), 2);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM updates"), 4);
}

static void test_purge_deletes_due_messages_and_logs_their_ids(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    uint64_t carol = signup(f, "carol", 3, NULL);
    set_ttl(f, alice, bob, 60, NULL, NULL); /* alice 1, bob 1 */
    int64_t exp1, exp2;
    uint64_t m1 = send_id(f, alice, bob, 1, DATE, &exp1);     /* alice 2, bob 2 */
    uint64_t m2 = send_id(f, bob, alice, 2, DATE + 1, &exp2); /* alice 3, bob 3 */
    uint64_t keep = send_id(f, alice, carol, 3, DATE, NULL);  /* alice 4, carol 1 */
    assert_int_equal(exp1, DATE + 60);
    assert_int_equal(exp2, DATE + 61);

    /* Due exactly at its expiry, and due long after it. */
    struct store_req r;
    prep_purge(&r, DATE + 61, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_false(r.out.more);
    assert_int_equal(r.out.n_purged, 2);
    const uint64_t both[2] = {m1, m2};
    const struct store_purged *pa = purged_of(&r, alice);
    assert_int_equal(pa->pts, 5);
    assert_ids(pa->ids, pa->n_ids, both, 2);
    const struct store_purged *pb = purged_of(&r, bob);
    assert_int_equal(pb->pts, 4);
    assert_ids(pb->ids, pb->n_ids, both, 2);
    store_req_reset(&r);
    assert_null(r.out.purged);

    /* The rows are gone; the other chat is untouched. */
    assert_int_equal(history_count(f, alice, bob), 0);
    assert_int_equal(history_count(f, alice, carol), 1);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM messages"), 1);

    /* Each log lost its two message rows and gained one DELETED update. */
    sync_all(f, alice, 0, &r);
    assert_int_equal(r.out.pts, 5);
    assert_int_equal(r.out.n_msgs, 3);
    assert_ttl_update(&r.out.msgs[0], 1, bob, 60, false);
    assert_int_equal(r.out.msgs[1].pts, 4);
    assert_int_equal(r.out.msgs[1].kind, STORE_UPD_MESSAGE);
    assert_int_equal(r.out.msgs[1].id, keep);
    assert_int_equal(r.out.msgs[2].pts, 5);
    assert_deleted(&r.out.msgs[2], both, 2);
    store_req_reset(&r);
    sync_all(f, bob, 0, &r);
    assert_int_equal(r.out.pts, 4);
    assert_int_equal(r.out.n_msgs, 2);
    assert_ttl_update(&r.out.msgs[0], 1, alice, 60, true);
    assert_int_equal(r.out.msgs[1].pts, 4);
    assert_deleted(&r.out.msgs[1], both, 2);
    store_req_reset(&r);
    sync_all(f, carol, 0, &r);
    assert_int_equal(r.out.n_msgs, 1);
    assert_int_equal(r.out.msgs[0].kind, STORE_UPD_MESSAGE);
    store_req_reset(&r);

    /* Nothing is left to purge; the logs go on after the DELETED updates. */
    prep_purge(&r, DATE + 10000, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 0);
    store_req_reset(&r);
    send_ok(f, bob, alice, 4, "next", &r);
    assert_int_equal(r.out.msg.pts, 5);
    assert_int_equal(r.out.to_pts, 6);
    store_req_reset(&r);
}

static void test_purge_of_a_note_to_self_touches_one_log_once(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    set_ttl(f, alice, alice, 10, NULL, NULL);
    uint64_t m = send_id(f, alice, alice, 1, DATE, NULL);
    struct store_req r;
    prep_purge(&r, DATE + 10, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 1);
    assert_int_equal(r.out.purged[0].user_id, alice);
    assert_int_equal(r.out.purged[0].pts, 3);
    assert_ids(r.out.purged[0].ids, r.out.purged[0].n_ids, &m, 1);
    store_req_reset(&r);
    sync_all(f, alice, 0, &r);
    assert_int_equal(r.out.n_msgs, 2);
    assert_int_equal(r.out.msgs[0].kind, STORE_UPD_TTL);
    assert_int_equal(r.out.msgs[1].pts, 3);
    assert_deleted(&r.out.msgs[1], &m, 1);
    store_req_reset(&r);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM messages"), 0);
}

static void test_purge_takes_the_oldest_expiry_first_and_reports_more(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    set_ttl(f, alice, bob, 60, NULL, NULL);
    /* Sent newest date first: ids rise while expiries fall. */
    uint64_t m[6];
    for (int i = 0; i < 6; i++)
        m[i] = send_id(f, alice, bob, (uint64_t)i + 1, DATE + 5 - i, NULL);
    uint64_t later = send_id(f, alice, bob, 10, DATE + 100, NULL);

    struct store_req r;
    const uint64_t want[3][2] = {{m[4], m[5]}, {m[2], m[3]}, {m[0], m[1]}};
    for (int p = 0; p < 3; p++) {
        prep_purge(&r, DATE + 65, 2);
        assert_int_equal(run_req(f, &r), 0);
        assert_int_equal(r.out.more, p < 2);
        assert_int_equal(r.out.n_purged, 2);
        const struct store_purged *pa = purged_of(&r, alice);
        assert_int_equal(pa->pts, 9 + (uint64_t)p);
        assert_ids(pa->ids, pa->n_ids, want[p], 2);
        const struct store_purged *pb = purged_of(&r, bob);
        assert_int_equal(pb->pts, 9 + (uint64_t)p);
        assert_ids(pb->ids, pb->n_ids, want[p], 2);
        store_req_reset(&r);
    }
    /* The one due later stays until its time. */
    prep_purge(&r, DATE + 159, 2);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 0);
    assert_false(r.out.more);
    store_req_reset(&r);
    assert_int_equal(history_count(f, bob, alice), 1);
    prep_purge(&r, DATE + 160, 2);
    assert_int_equal(run_req(f, &r), 0);
    assert_false(r.out.more);
    assert_int_equal(r.out.n_purged, 2);
    assert_ids(purged_of(&r, bob)->ids, purged_of(&r, bob)->n_ids, &later, 1);
    assert_int_equal(purged_of(&r, bob)->pts, 12);
    store_req_reset(&r);
    assert_int_equal(history_count(f, bob, alice), 0);

    /* Bob's log: the TTL update, then four DELETED updates, nothing else. */
    sync_all(f, bob, 0, &r);
    assert_int_equal(r.out.pts, 12);
    assert_int_equal(r.out.n_msgs, 5);
    assert_int_equal(r.out.msgs[0].kind, STORE_UPD_TTL);
    for (size_t i = 1; i < 5; i++) {
        assert_int_equal(r.out.msgs[i].pts, 8 + i);
        assert_int_equal(r.out.msgs[i].kind, STORE_UPD_DELETED);
    }
    assert_deleted(&r.out.msgs[1], want[0], 2);
    assert_deleted(&r.out.msgs[4], &later, 1);
    store_req_reset(&r);
}

/* A purge may delete the newest rows of a log: the log never goes back to
 * a pts it has used, neither in this run nor after a restart. */
static void test_pts_continue_after_a_purge_and_a_reopen(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    set_ttl(f, alice, bob, 60, NULL, NULL); /* 1, 1 */
    send_id(f, alice, bob, 1, DATE, NULL);  /* 2, 2 */
    send_id(f, alice, bob, 2, DATE, NULL);  /* 3, 3 */
    struct store_req r;
    prep_purge(&r, DATE + 60, 10); /* 4, 4 */
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(purged_of(&r, alice)->pts, 4);
    store_req_reset(&r);
    send_ok(f, alice, bob, 3, "after", &r);
    assert_int_equal(r.out.msg.pts, 5);
    assert_int_equal(r.out.to_pts, 5);
    store_req_reset(&r);

    /* The message just sent expires too; purged, it leaves the DELETED
     * update as the newest row of each log. */
    prep_purge(&r, DATE + 100000000, 10); /* 6, 6 */
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 2);
    assert_int_equal(purged_of(&r, bob)->pts, 6);
    store_req_reset(&r);
    reopen(f, 0);
    set_ttl(f, bob, alice, 0, NULL, NULL);     /* 7, 7 */
    send_ok(f, bob, alice, 4, "reopened", &r); /* 8, 8 */
    assert_int_equal(r.out.msg.pts, 8);
    assert_int_equal(r.out.to_pts, 8);
    store_req_reset(&r);
    /* Alice's log: the message at 5 was purged, its DELETED update is 6. */
    sync_all(f, alice, 0, &r);
    assert_int_equal(r.out.pts, 8);
    assert_int_equal(r.out.n_msgs, 5);
    const uint64_t pts[] = {1, 4, 6, 7, 8};
    const enum store_update_kind kinds[] = {STORE_UPD_TTL, STORE_UPD_DELETED, STORE_UPD_DELETED,
                                            STORE_UPD_TTL, STORE_UPD_MESSAGE};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(r.out.msgs[i].pts, pts[i]);
        assert_int_equal(r.out.msgs[i].kind, kinds[i]);
    }
    store_req_reset(&r);
}

/* Closes the fixture's store and port, leaving the files to the test. */
static void close_store(struct fixture *f)
{
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    f->st = NULL;
    f->port = NULL;
}

static void test_purge_query_uses_the_expiry_index(void **state)
{
    struct fixture *f = *state;
    close_store(f);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT id, from_user, to_user,"
                                        " from_pts, to_pts FROM messages WHERE expires > 0 AND"
                                        " expires <= 123 ORDER BY expires, id LIMIT 5",
                                        -1, &s, NULL),
                     SQLITE_OK);
    bool uses_index = false;
    int rows = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        assert_non_null(detail);
        rows++;
        uses_index = uses_index || strstr(detail, "messages_expiry") != NULL;
        if (strstr(detail, "SCAN messages") && !strstr(detail, "USING"))
            fail_msg("the purge query scans the table: %s", detail);
    }
    assert_int_equal(rc, SQLITE_DONE);
    assert_true(rows > 0);
    assert_true(uses_index);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
}

/* Random hex text of n characters, NUL-terminated (buf holds n + 1). */
static void random_text(char *buf, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t *raw = malloc(n);
    assert_non_null(raw);
    random_bytes(raw, n);
    for (size_t i = 0; i < n; i++)
        buf[i] = hex[raw[i] & 15];
    buf[n] = '\0';
    free(raw);
}

#define BIG_TEXT 12000 /* bytes: spills into overflow pages */

static void test_purged_text_leaves_no_copy_in_the_files(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    char pat[65];
    random_text(pat, 64);
    char *big = malloc(BIG_TEXT + 1);
    assert_non_null(big);
    random_text(big, BIG_TEXT);
    const uint8_t *big_mid = (const uint8_t *)big + BIG_TEXT / 2;

    set_ttl(f, alice, bob, 30, NULL, NULL);
    struct store_req r;
    send_at(f, alice, bob, 1, pat, DATE, &r);
    store_req_reset(&r);
    send_at(f, bob, alice, 2, big, DATE, &r);
    store_req_reset(&r);
    /* Stored, the texts are in the files: the search can find them. */
    assert_true(file_has(f->path, (const uint8_t *)pat, 64) ||
                file_has(wal, (const uint8_t *)pat, 64));
    assert_true(file_has(f->path, big_mid, 64) || file_has(wal, big_mid, 64));

    prep_purge(&r, DATE + 30, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 2);
    assert_int_equal(purged_of(&r, alice)->n_ids, 2);
    store_req_reset(&r);

    /* Idle after the purge, the writer checkpoints and truncates the log;
     * it gets nothing more to do, so this is a wait, not a race. */
    struct stat sb;
    uint64_t deadline = uv_hrtime() + 10ull * 1000 * 1000 * 1000;
    while (stat(wal, &sb) == 0 && sb.st_size > 0 && uv_hrtime() < deadline)
        usleep(10 * 1000);
    if (stat(wal, &sb) == 0 && sb.st_size > 0)
        fail_msg("the -wal file still has %lld bytes with the writer idle after a purge",
                 (long long)sb.st_size);
    assert_false(file_has(wal, (const uint8_t *)pat, 64));
    assert_false(file_has(f->path, (const uint8_t *)pat, 64));
    assert_false(file_has(wal, big_mid, 64));
    assert_false(file_has(f->path, big_mid, 64));

    close_store(f);
    assert_false(file_has(f->path, (const uint8_t *)pat, 64));
    assert_false(file_has(wal, (const uint8_t *)pat, 64));
    assert_false(file_has(f->path, big_mid, 64));
    assert_false(file_has(wal, big_mid, 64));
    assert_int_equal(query_int_readonly(f->path, "SELECT count(*) FROM messages"), 0);
    free(big);
    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
}

/* The version 3 tables as the third release created them, with a queued
 * envelope for the old device, and bob with a message from olduser. */
static const char v3_tables[] =
    "CREATE TABLE envelopes (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id INTEGER NOT NULL,"
    " message_id INTEGER NOT NULL, from_user INTEGER NOT NULL, from_device INTEGER NOT NULL,"
    " to_user INTEGER NOT NULL, client_id INTEGER NOT NULL, type INTEGER NOT NULL,"
    " date INTEGER NOT NULL, body BLOB NOT NULL);"
    "CREATE INDEX envelopes_device ON envelopes(device_id, id);"
    "CREATE INDEX envelopes_client ON envelopes(from_user, client_id);"
    "PRAGMA user_version = 3;"
    "INSERT INTO users (id, username, created, pts) VALUES (2, 'bob', 1, 0);"
    "INSERT INTO devices (id, user_id, pubkey, created) VALUES (6, 2, randomblob(32), 1);"
    "INSERT INTO messages VALUES (4, 1, 5, 2, 78, 1700000001, 'to bob in v3', 1, 2, 2);"
    "INSERT INTO updates VALUES (1, 2, 4);"
    "INSERT INTO updates VALUES (2, 1, 4);"
    "INSERT INTO envelopes VALUES (9, 5, 9, 2, 6, 1, 1, 3, 1700000002, X'0a0b0c');";

static void test_version_3_database_upgrades_keeping_messages_and_envelopes(void **state)
{
    struct fixture *f = *state;
    close_store(f);
    static const char *const names[] = {"parley.db", "parley.db-wal", "parley.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, v1_schema, NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db, v2_tables, NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db, v3_tables, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("v3 schema: %s", err);
    sqlite3_close(db);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), 3);

    f->st = open_store(f->path, 0, 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);

    /* The old messages are there, as messages that never expire. */
    struct store_req r;
    sync_all(f, 1, 0, &r);
    assert_int_equal(r.out.pts, 2);
    assert_int_equal(r.out.n_msgs, 2);
    assert_string_equal(r.out.msgs[0].text, "from v1");
    assert_string_equal(r.out.msgs[1].text, "to bob in v3");
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(r.out.msgs[i].kind, STORE_UPD_MESSAGE);
        assert_int_equal(r.out.msgs[i].expires, 0);
    }
    store_req_reset(&r);
    prep_history(&r, 2, 1, 0, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 1);
    assert_int_equal(r.out.msgs[0].id, 4);
    assert_int_equal(r.out.msgs[0].expires, 0);
    store_req_reset(&r);

    /* The queued envelope too. */
    prep_fetch(&r, 5, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 1);
    assert_int_equal(r.out.envelopes[0].id, 9);
    assert_string_equal(r.out.envelopes[0].from_name, "bob");
    assert_int_equal(r.out.envelopes[0].body_len, 3);
    assert_memory_equal(r.out.envelopes[0].body, "\x0a\x0b\x0c", 3);
    store_req_reset(&r);

    /* Auto-delete works on the old chat and leaves the old messages. */
    uint64_t pts = 0, to_pts = 0;
    set_ttl(f, 2, 1, 10, &pts, &to_pts);
    assert_int_equal(pts, 2);
    assert_int_equal(to_pts, 3);
    uint64_t m = send_id(f, 1, 2, 79, DATE, NULL);
    prep_purge(&r, INT64_MAX, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 2);
    assert_ids(purged_of(&r, 1)->ids, purged_of(&r, 1)->n_ids, &m, 1);
    assert_int_equal(purged_of(&r, 1)->pts, 5);
    assert_int_equal(purged_of(&r, 2)->pts, 4);
    store_req_reset(&r);
    assert_int_equal(history_count(f, 1, 2), 1);
    assert_int_equal(history_count(f, 1, 1), 1);

    reopen(f, 0);
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(queued_for(f, 5), 1);
    assert_int_equal(query_int(f->path, "SELECT count(*) FROM messages"), 2);
}


/* With a tiny user cache an account is reloaded during the purge: its pts
 * must come from before its newest update row is deleted, never reused. */
static void test_purge_with_a_tiny_user_cache_never_reuses_a_pts(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    reopen(f, 2);
    set_ttl(f, alice, bob, 60, NULL, NULL);  /* 1, 1 */
    send_id(f, alice, bob, 1, DATE, NULL);   /* 2, 2 */
    struct store_req r;
    prep_purge(&r, DATE + 60, 10);           /* 3, 3 */
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 2);
    uint64_t pa = purged_of(&r, alice)->pts, pb = purged_of(&r, bob)->pts;
    store_req_reset(&r);
    assert_int_equal(pa, 3);
    assert_int_equal(pb, 3);
}

/* After a reopen, a send that expires later than a message from before
 * the reopen must not hide that message's earlier expiry from the purge. */
static void test_purge_after_a_reopen_finds_older_due_messages(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    uint64_t carol = signup(f, "carol", 3, NULL);
    set_ttl(f, alice, bob, 10, NULL, NULL);
    uint64_t m = send_id(f, alice, bob, 1, DATE, NULL); /* expires DATE + 10 */
    reopen(f, 0);
    set_ttl(f, alice, carol, 1000, NULL, NULL);
    send_id(f, alice, carol, 2, DATE, NULL); /* expires DATE + 1000 */
    struct store_req r;
    prep_purge(&r, DATE + 500, 10);
    assert_int_equal(run_req(f, &r), 0);
    size_t n = r.out.n_purged;
    store_req_reset(&r);
    assert_int_equal(n, 2);
    assert_int_equal(history_count(f, alice, bob), 0);
    (void)m;
}

/* The same without a small cache: after a restart nothing is cached, and
 * the DELETED update still gets a new pts. */
static void test_purge_after_a_restart_never_reuses_a_pts(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    set_ttl(f, alice, bob, 60, NULL, NULL); /* 1, 1 */
    send_id(f, alice, bob, 1, DATE, NULL);  /* 2, 2 */
    reopen(f, 0);
    struct store_req r;
    prep_purge(&r, DATE + 60, 10); /* 3, 3 */
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 2);
    uint64_t pa = purged_of(&r, alice)->pts, pb = purged_of(&r, bob)->pts;
    store_req_reset(&r);
    assert_int_equal(pa, 3);
    assert_int_equal(pb, 3);
}

static void test_first_purge_after_open_with_nothing_due_commits_nothing(void **state)
{
    struct fixture *f = *state;
    struct store_stats before, after;
    store_stats(f->st, &before);
    struct store_req r;
    prep_purge(&r, DATE, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 0);
    store_stats(f->st, &after);
    assert_int_equal(after.commits, before.commits);
}

/* Envelopes no device took before the bound go with a purge, oldest first,
 * a limit at a time; newer ones stay; a reopen finds the oldest again. */
static void test_purge_expires_undelivered_envelopes(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    give_keys(f, a1);
    give_keys(f, b1);
    static const uint8_t body[] = {0x33, 1, 2, 3};
    struct store_envelope_in env;
    fill_envs(&env, &b1, 1, body, sizeof(body), 3);
    struct store_req r;
    for (uint64_t i = 0; i < 3; i++) { /* dated DATE, DATE + 1, DATE + 2 */
        prep_secret(&r, alice, a1, bob, 100 + i, &env, 1);
        r.in.secret.date = DATE + (int64_t)i;
        assert_int_equal(run_req(f, &r), 0);
        store_req_reset(&r);
    }
    prep_secret(&r, alice, a1, bob, 200, &env, 1);
    r.in.secret.date = DATE + 1000;
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 4);

    /* A bound at or before the oldest changes nothing. */
    prep_purge(&r, DATE + 5000, 10);
    r.in.purge.envelopes_before = DATE;
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.envelopes_expired, 0);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 4);

    reopen(f, 0);
    prep_purge(&r, DATE + 5000, 2);
    r.in.purge.envelopes_before = DATE + 500;
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.envelopes_expired, 2);
    assert_true(r.out.more);
    store_req_reset(&r);
    prep_purge(&r, DATE + 5000, 2);
    r.in.purge.envelopes_before = DATE + 500;
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.envelopes_expired, 1);
    assert_false(r.out.more);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 1);
}

/* A page also ends at max_bytes of bodies, but never before its first
 * envelope. */
static void test_secret_fetch_pages_by_bytes(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    give_keys(f, a1);
    give_keys(f, b1);
    static uint8_t body[100];
    struct store_envelope_in env;
    fill_envs(&env, &b1, 1, body, sizeof(body), 2);
    struct store_req r;
    for (uint64_t i = 0; i < 3; i++) {
        prep_secret(&r, alice, a1, bob, 300 + i, &env, 1);
        assert_int_equal(run_req(f, &r), 0);
        store_req_reset(&r);
    }
    prep_fetch(&r, b1, 10);
    r.in.fetch.max_bytes = 250;
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 2);
    assert_true(r.out.more);
    store_req_reset(&r);
    prep_fetch(&r, b1, 10);
    r.in.fetch.max_bytes = 50;
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 1);
    assert_true(r.out.more);
    store_req_reset(&r);
    prep_fetch(&r, b1, 10);
    r.in.fetch.max_bytes = 300;
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_envelopes, 3);
    assert_false(r.out.more);
    store_req_reset(&r);
}

/* A retry finds its send even once every copy is acked, until the record
 * of the send expires with the envelopes' age bound. */
static void test_secret_retry_after_ack_is_still_a_duplicate(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    give_keys(f, a1);
    give_keys(f, b1);
    static const uint8_t body[] = {0x33, 9, 9};
    struct store_envelope_in env;
    fill_envs(&env, &b1, 1, body, sizeof(body), 3);
    struct store_req r;
    prep_secret(&r, alice, a1, bob, 4242, &env, 1);
    assert_int_equal(run_req(f, &r), 0);
    uint64_t msg = r.out.msg.id, env_id = r.out.envs[0].id;
    store_req_reset(&r);
    assert_int_equal(ack(f, b1, &env_id, 1), 1);
    assert_int_equal(queued_for(f, b1), 0);

    prep_secret(&r, alice, a1, bob, 4242, &env, 1);
    r.in.secret.date = DATE + 5;
    assert_int_equal(run_req(f, &r), 0);
    assert_true(r.out.duplicate);
    assert_int_equal(r.out.msg.id, msg);
    assert_int_equal(r.out.msg.date, DATE);
    assert_int_equal(r.out.n_envs, 0);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 0);

    /* Once the record is older than the bound, it goes with a purge. */
    prep_purge(&r, DATE + 10, 10);
    r.in.purge.envelopes_before = DATE + 1;
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    prep_secret(&r, alice, a1, bob, 4242, &env, 1);
    r.in.secret.date = DATE + 20;
    assert_int_equal(run_req(f, &r), 0);
    assert_false(r.out.duplicate);
    assert_true(r.out.msg.id > msg);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 1);
}

/* A device's queue is bounded: past envelopes_per_device a send is
 * refused, writes nothing, and goes through again once the device acks;
 * the count survives a reopen and a purge of old envelopes. */
static void test_secret_queue_per_device_is_bounded(void **state)
{
    struct fixture *f = *state;
    uint64_t a1, b1, c1;
    uint64_t alice = signup(f, "alice", 1, &a1);
    uint64_t bob = signup(f, "bob", 2, &b1);
    uint64_t carol = signup(f, "carol", 3, &c1);
    give_keys(f, a1);
    give_keys(f, b1);
    give_keys(f, c1);
    store_port_close(f->port);
    store_close(f->st);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    struct store_config cfg = {.path = f->path, .envelopes_per_device = 2};
    assert_int_equal(store_open(&cfg, &f->st), 0);
    assert_int_equal(store_port_open(f->st, &f->loop, &f->port), 0);

    static const uint8_t body[] = {0x33, 1};
    struct store_envelope_in env;
    fill_envs(&env, &b1, 1, body, sizeof(body), 3);
    struct store_req r;
    uint64_t ids[2];
    for (uint64_t i = 0; i < 2; i++) {
        prep_secret(&r, alice, a1, bob, 500 + i, &env, 1);
        assert_int_equal(run_req(f, &r), 0);
        ids[i] = r.out.envs[0].id;
        store_req_reset(&r);
    }
    prep_secret(&r, alice, a1, bob, 502, &env, 1);
    assert_int_equal(run_req(f, &r), PARLEY_EQUEUE_FULL);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 2);
    /* Another device's queue is its own. */
    struct store_envelope_in envc;
    fill_envs(&envc, &c1, 1, body, sizeof(body), 3);
    prep_secret(&r, alice, a1, carol, 503, &envc, 1);
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);

    assert_int_equal(ack(f, b1, &ids[0], 1), 1);
    prep_secret(&r, alice, a1, bob, 502, &env, 1);
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    prep_secret(&r, alice, a1, bob, 504, &env, 1);
    assert_int_equal(run_req(f, &r), PARLEY_EQUEUE_FULL);
    store_req_reset(&r);

    /* Counted again from the table after a purge of old envelopes. */
    prep_purge(&r, DATE, 10);
    r.in.purge.envelopes_before = DATE - 100; /* nothing that old */
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    prep_secret(&r, alice, a1, bob, 505, &env, 1);
    assert_int_equal(run_req(f, &r), PARLEY_EQUEUE_FULL);
    store_req_reset(&r);
    assert_int_equal(queued_for(f, b1), 2);
}

/* A retry of a cloud message that auto-delete purged is still answered
 * with the original (id, pts, date, no text) for a day, also after a
 * reopen; after that the id is forgotten. */
static void test_retry_of_a_purged_message_is_a_duplicate(void **state)
{
    struct fixture *f = *state;
    uint64_t alice = signup(f, "alice", 1, NULL);
    uint64_t bob = signup(f, "bob", 2, NULL);
    set_ttl(f, alice, bob, 10, NULL, NULL);
    struct store_req r;
    send_at(f, alice, bob, 777, "gone soon", DATE, &r);
    uint64_t id = r.out.msg.id, pts = r.out.msg.pts;
    store_req_reset(&r);
    prep_purge(&r, DATE + 10, 10);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_purged, 2);
    store_req_reset(&r);

    reopen(f, 0);
    send_at(f, alice, bob, 777, "gone soon", DATE + 20, &r);
    assert_true(r.out.duplicate);
    assert_int_equal(r.out.msg.id, id);
    assert_int_equal(r.out.msg.pts, pts);
    assert_int_equal(r.out.msg.date, DATE);
    assert_int_equal(r.out.msg.text_len, 0);
    assert_string_equal(r.out.msg.to_name, "bob");
    store_req_reset(&r);
    prep_history(&r, bob, alice, 0, 4);
    assert_int_equal(run_req(f, &r), 0);
    assert_int_equal(r.out.n_msgs, 0); /* nothing was stored again */
    store_req_reset(&r);

    /* A day after the purge the record goes; the id is new again. */
    prep_purge(&r, DATE + 10 + 86400 + 1, 10);
    assert_int_equal(run_req(f, &r), 0);
    store_req_reset(&r);
    send_at(f, alice, bob, 777, "sent again", DATE + 90000, &r);
    assert_false(r.out.duplicate);
    assert_true(r.out.msg.id > id);
    store_req_reset(&r);
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
        cmocka_unit_test_setup_teardown(test_checkpoint_size_bounds_the_log, setup, teardown),
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
        cmocka_unit_test_setup_teardown(test_secret_send_queues_the_envelope_for_its_device_only,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_send_to_all_devices_shares_one_message_id,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_ack_deletes_only_the_devices_own_envelopes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_fetch_pages_oldest_first_with_limit_and_more,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_secret_send_with_changed_devices_reports_them_and_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_send_refusals_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_send_retry_while_queued_is_a_duplicate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_acked_envelopes_leave_no_copy_in_the_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_secret_submit_rejects_invalid_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_version_1_database_upgrades_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_2_database_upgrades_keeping_its_data,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_with_a_tiny_user_cache_never_reuses_a_pts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_after_a_reopen_finds_older_due_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_after_a_restart_never_reuses_a_pts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_purge_after_open_with_nothing_due_commits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_expires_undelivered_envelopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_fetch_pages_by_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_retry_after_ack_is_still_a_duplicate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_secret_queue_per_device_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_of_a_purged_message_is_a_duplicate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_version_refuses_to_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_ttl_appends_an_update_to_both_logs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ttl_and_purge_submit_rejects_invalid_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_expires_only_in_the_chat_with_ttl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ttl_chat_found_again_with_a_tiny_user_cache, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_before_expiry_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_deletes_due_messages_and_logs_their_ids, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_of_a_note_to_self_touches_one_log_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_takes_the_oldest_expiry_first_and_reports_more,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pts_continue_after_a_purge_and_a_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_query_uses_the_expiry_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purged_text_leaves_no_copy_in_the_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_version_3_database_upgrades_keeping_messages_and_envelopes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
