/* SPDX-License-Identifier: MIT */
/* Auto-delete against a real parleyd, in the raw protocol: setting a
 * chat's time reaches both accounts' logs and devices; messages sent
 * afterwards carry their expiry, and once it passes the server deletes
 * them (history, sync, the database files) and tells every device with a
 * MessagesDeleted update, live and in the log; messages sent before, or
 * after turning it off, stay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "client/wsconn.h"
#include "common/err.h"
#include "proto/frame.h"
#include "rawproto.h"
#include "testserver.h"

#include <parley.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TTL_MAX 31536000u

static struct testserver srv;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    return testserver_start_conf(&srv, "");
}

static int teardown(void **state)
{
    (void)state;
    return testserver_finish(&srv);
}

static uint64_t set_ttl_send(struct wsconn *c, const char *peer, uint32_t ttl)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SetTtlRequest st = PARLEY__V1__SET_TTL_REQUEST__INIT;
    Parley__V1__Peer p = PARLEY__V1__PEER__INIT;
    p.username = (char *)peer;
    st.peer = &p;
    st.ttl_s = ttl;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_SET_TTL;
    req.set_ttl = &st;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

/* Sets the ttl and returns the ChatTtl update's pts in the caller's log. */
static uint64_t set_ttl_ok(struct wsconn *c, const char *peer, uint32_t ttl)
{
    uint64_t id = set_ttl_send(c, peer, ttl);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_SET_TTL);
    assert_int_equal(f->response->set_ttl->ttl_s, ttl);
    uint64_t pts = f->response->set_ttl->pts;
    assert_true(pts > 0);
    frame_free(f);
    return pts;
}

/* Sends text and returns the stored message's id and expiry. */
static uint64_t send_ok(struct wsconn *c, const char *to, const char *text, int64_t *expires)
{
    uint64_t id = raw_send_text(c, to, text, strlen(text));
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    const Parley__V1__Message *m = f->response->send->message;
    uint64_t msg = m->id;
    *expires = m->expires;
    if (m->expires)
        assert_true(m->expires >= m->date);
    frame_free(f);
    return msg;
}

/* The next push update on c; the caller frees the frame. */
static PlFrame *next_update(struct wsconn *c)
{
    for (;;) {
        uint8_t *data;
        size_t len;
        assert_int_equal(wsconn_recv(c, 15000, &data, &len), 0);
        PlFrame *f = NULL;
        assert_int_equal(frame_decode(data, len, FRAME_MAX_DEFAULT, &f), 0);
        free(data);
        if (f->body_case == PARLEY__V1__FRAME__BODY_PUSH &&
            f->push->kind_case == PARLEY__V1__PUSH__KIND_UPDATE)
            return f;
        frame_free(f);
    }
}

static PlFrame *sync_from(struct wsconn *c, uint64_t from)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SyncRequest sr = PARLEY__V1__SYNC_REQUEST__INIT;
    sr.from_pts = from;
    sr.limit = 1000;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SYNC;
    req.sync = &sr;
    PlFrame *f = raw_call(c, &req);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_SYNC);
    return f;
}

/* The ids of the chat's messages in history (newest first), at most 16. */
static size_t history_ids(struct wsconn *c, const char *peer, uint64_t *ids)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__HistoryRequest hr = PARLEY__V1__HISTORY_REQUEST__INIT;
    Parley__V1__Peer p = PARLEY__V1__PEER__INIT;
    p.username = (char *)peer;
    hr.peer = &p;
    hr.limit = 16;
    req.method_case = PARLEY__V1__REQUEST__METHOD_HISTORY;
    req.history = &hr;
    PlFrame *f = raw_call(c, &req);
    size_t n = f->response->history->n_messages;
    for (size_t i = 0; i < n; i++)
        ids[i] = f->response->history->messages[i]->id;
    frame_free(f);
    return n;
}

static void test_expired_messages_are_purged_and_every_device_told(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], bpk[32], bsk[64];
    struct wsconn *alice = raw_dial(srv.url);
    uint64_t alice_dev = raw_signup_ok(alice, "ttl_alice", pk, sk);
    struct wsconn *alice2 = raw_dial(srv.url); /* her second connection */
    raw_auth_ok(alice2, alice_dev, sk);
    struct wsconn *bob = raw_dial(srv.url);
    (void)raw_signup_ok(bob, "ttl_bob", bpk, bsk);

    int64_t exp;
    uint64_t before = send_ok(alice, "ttl_bob", "sent before the setting", &exp);
    assert_int_equal(exp, 0);
    PlFrame *f = next_update(bob);
    frame_free(f);

    uint64_t apts = set_ttl_ok(alice, "@ttl_bob", 2);
    f = next_update(bob);
    assert_int_equal(f->push->update->kind_case, PARLEY__V1__UPDATE__KIND_CHAT_TTL);
    assert_int_equal(f->push->update->chat_ttl->ttl_s, 2);
    assert_int_equal(f->push->update->chat_ttl->by_user_id,
                     f->push->update->chat_ttl->peer_user_id);
    assert_string_equal(f->push->update->chat_ttl->peer_username, "ttl_alice");
    frame_free(f);

    const char *secret_words = "this text expires in two seconds";
    uint64_t gone = send_ok(alice, "ttl_bob", secret_words, &exp);
    assert_true(exp > 0);
    f = next_update(bob);
    assert_int_equal(f->push->update->kind_case, PARLEY__V1__UPDATE__KIND_NEW_MESSAGE);
    assert_int_equal(f->push->update->new_message->id, gone);
    assert_int_equal(f->push->update->new_message->expires, exp);
    uint64_t bob_msg_pts = f->push->update->pts;
    frame_free(f);
    assert_true(testserver_store_holds(&srv, secret_words, strlen(secret_words)));

    /* Both accounts' devices are told, live. */
    struct wsconn *who[2] = {bob, alice2};
    for (int k = 0; k < 2; k++) {
        f = next_update(who[k]);
        while (f->push->update->kind_case != PARLEY__V1__UPDATE__KIND_MESSAGES_DELETED) {
            frame_free(f); /* alice2 also saw the ttl change and her send */
            f = next_update(who[k]);
        }
        assert_int_equal(f->push->update->messages_deleted->n_ids, 1);
        assert_int_equal(f->push->update->messages_deleted->ids[0], gone);
        frame_free(f);
    }

    /* Gone from history and the log; the earlier message stays. */
    uint64_t ids[16];
    size_t n = history_ids(bob, "ttl_alice", ids);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], before);
    f = sync_from(bob, 0);
    const Parley__V1__SyncResponse *sr = f->response->sync;
    bool saw_delete = false;
    for (size_t i = 0; i < sr->n_updates; i++) {
        const Parley__V1__Update *u = sr->updates[i];
        assert_int_not_equal(u->pts, bob_msg_pts);
        if (u->kind_case == PARLEY__V1__UPDATE__KIND_NEW_MESSAGE)
            assert_int_not_equal(u->new_message->id, gone);
        if (u->kind_case == PARLEY__V1__UPDATE__KIND_MESSAGES_DELETED) {
            assert_int_equal(u->messages_deleted->ids[0], gone);
            assert_int_equal(u->pts, sr->pts);
            saw_delete = true;
        }
    }
    assert_true(saw_delete);
    frame_free(f);
    /* Alice's log has the setting and the deletion too. */
    f = sync_from(alice, apts - 1);
    assert_int_equal(f->response->sync->updates[0]->kind_case, PARLEY__V1__UPDATE__KIND_CHAT_TTL);
    assert_int_equal(f->response->sync->updates[0]->chat_ttl->ttl_s, 2);
    assert_string_equal(f->response->sync->updates[0]->chat_ttl->peer_username, "ttl_bob");
    frame_free(f);

    /* And from the database files, once the store is idle. */
    bool held = true;
    for (int i = 0; i < 100 && held; i++) {
        held = testserver_store_holds(&srv, secret_words, strlen(secret_words));
        if (held)
            usleep(100 * 1000);
    }
    assert_false(held);
    char *m = raw_http_get(srv.port, "/metrics");
    assert_true(raw_metric(m, "parley_purged_messages_total") >= 2);
    free(m);

    /* Off again: new messages do not expire. */
    (void)set_ttl_ok(bob, "ttl_alice", 0);
    (void)send_ok(alice, "ttl_bob", "this one stays", &exp);
    assert_int_equal(exp, 0);
    wsconn_free(bob);
    wsconn_free(alice2);
    wsconn_free(alice);
}

static void test_bad_settings_are_refused(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    struct wsconn *c = raw_dial(srv.url);
    raw_expect_error(c, set_ttl_send(c, "ttl_x", 5), PARLEY_ENOAUTH);
    (void)raw_signup_ok(c, "ttl_carol", pk, sk);
    raw_expect_error(c, set_ttl_send(c, "ttl_nobody_here", 5), PARLEY_ENOUSER);
    raw_expect_error(c, set_ttl_send(c, "-bad-", 5), PARLEY_EBAD_USERNAME);
    raw_expect_error(c, set_ttl_send(c, "ttl_carol", TTL_MAX + 1), PARLEY_EINVAL);
    /* The longest is fine, for a note to self too. */
    (void)set_ttl_ok(c, "ttl_carol", TTL_MAX);
    int64_t exp;
    (void)send_ok(c, "ttl_carol", "note", &exp);
    assert_true(exp > 0);
    wsconn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expired_messages_are_purged_and_every_device_told),
        cmocka_unit_test(test_bad_settings_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
