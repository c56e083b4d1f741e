/* SPDX-License-Identifier: MIT */
/* The per-connection send-queue limit against a real parleyd configured with
 * the smallest queue: a device that stops reading is cut off with close code
 * 1008 while its sender and everyone else are served as usual, the drop is
 * counted in /metrics, and the device gets every message back, exactly once
 * and in pts order, by reconnecting and syncing from pts 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "rawproto.h"
#include "testserver.h"

#include <parley.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The smallest send queue parleyd accepts; it may not be below the frame
 * limit, so that is lowered to match. */
#define QUEUE_BYTES 65536
#define FRAME_BYTES 65536
#define MAX_MESSAGES 2000 /* the bound on sends before the reader must be cut off */
#define MORE_AFTER_CUT 10 /* sent after the cut, and again after the close */
#define CHECK_EVERY 10    /* sends between looks at /metrics */
#define TAG_LEN 8         /* "%08u" at the start of each text */
#define EMOJI "\xf0\x9f\x98\x80"
/* 4096 code points (the text limit), 16,360 bytes: a tag and 4088 emoji. */
#define TEXT_CHARS 4096
#define TEXT_BYTES (TAG_LEN + (TEXT_CHARS - TAG_LEN) * 4)

static struct testserver srv;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    char conf[128];
    snprintf(conf, sizeof(conf), "[limits]\nmax_frame_bytes = %d\nsend_queue_bytes = %d\n",
             FRAME_BYTES, QUEUE_BYTES);
    return testserver_start_conf(&srv, conf);
}

static int teardown(void **state)
{
    (void)state;
    return testserver_finish(&srv);
}

static double metric(const char *name)
{
    char *res = raw_http_get(srv.port, "/metrics");
    assert_true(strncmp(res, "HTTP/1.1 200 ", 13) == 0);
    double v = raw_metric(res, name);
    free(res);
    return v;
}

static struct wsconn *dial(void)
{
    /* The server's messages obey its own (lowered) frame limit, so this
     * client refuses anything larger. */
    struct wsconn_options opt = {.timeout_ms = 10000, .max_message = FRAME_BYTES};
    struct wsconn *c = NULL;
    assert_int_equal(wsconn_open(srv.url, &opt, &c), 0);
    return c;
}

/* The next frame, response or push; the caller frees it. */
static PlFrame *recv_frame(struct wsconn *c)
{
    uint8_t *data;
    size_t len;
    int rc = wsconn_recv(c, 10000, &data, &len);
    if (rc)
        fail_msg("receive failed: %s (close code %d)", parley_errname(rc), wsconn_close_code(c));
    PlFrame *f = NULL;
    assert_int_equal(frame_decode(data, len, FRAME_BYTES, &f), 0);
    free(data);
    return f;
}

/* Authenticates c as device with sk; returns the account's pts. */
static uint64_t auth(struct wsconn *c, uint64_t device, const uint8_t sk[64])
{
    uint8_t nonce[32], sig[64];
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    uint64_t id = raw_auth_req(c, device, nonce, sig);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    uint64_t pts = f->response->auth->pts;
    frame_free(f);
    return pts;
}

/* One SyncRequest from from_pts with the default limit; the caller frees
 * the answer. */
static PlFrame *sync_page(struct wsconn *c, uint64_t from_pts)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SyncRequest sr = PARLEY__V1__SYNC_REQUEST__INIT;
    sr.from_pts = from_pts;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SYNC;
    req.sync = &sr;
    PlFrame *f = raw_call(c, &req);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_SYNC);
    return f;
}

/* --- messages ------------------------------------------------------------- */

/* Text number i: its tag, then emoji up to the text limit. */
static void make_text(char *text, unsigned i)
{
    char tag[TAG_LEN + 1];
    snprintf(tag, sizeof(tag), "%08u", i);
    memcpy(text, tag, TAG_LEN);
    for (size_t off = TAG_LEN; off < TEXT_BYTES; off += 4)
        memcpy(text + off, EMOJI, 4);
}

/* Asserts that update u is alice's text number i at pts i in bob's log. */
static void expect_update(const Parley__V1__Update *u, unsigned i)
{
    assert_int_equal(u->pts, i);
    assert_int_equal(u->kind_case, PARLEY__V1__UPDATE__KIND_NEW_MESSAGE);
    const Parley__V1__Message *m = u->new_message;
    assert_string_equal(m->from_username, "alice");
    assert_string_equal(m->to_username, "bob");
    assert_int_equal(m->text.len, TEXT_BYTES);
    char want[TEXT_BYTES];
    make_text(want, i);
    assert_memory_equal(m->text.data, want, TEXT_BYTES);
}

static struct parley *open_device(const char *name)
{
    char home[400];
    snprintf(home, sizeof(home), "%s/home-%s", srv.dir, name);
    struct parley_options opt = {.home = home, .server_url = srv.url};
    struct parley *p = NULL;
    assert_int_equal(parley_open(&opt, &p), 0);
    return p;
}

static void alice_sends(struct parley *alice, char *text, unsigned i)
{
    struct parley_msg m;
    make_text(text, i);
    int rc = parley_send(alice, "@bob", text, TEXT_BYTES, 0, &m);
    if (rc)
        fail_msg("send %u failed: %s", i, parley_errname(rc));
    assert_false(m.duplicate);
    assert_int_equal(m.pts, i); /* alice's log: only her sends to bob */
}

/* Reads everything bob was sent until the server's close; returns how many
 * pushes arrived. They are the first of alice's messages, in pts order. */
static unsigned drain_until_closed(struct wsconn *bob)
{
    unsigned n = 0;
    for (;;) {
        uint8_t *data;
        size_t len;
        int rc = wsconn_recv(bob, 10000, &data, &len);
        if (rc == PARLEY_ECLOSED)
            return n;
        if (rc)
            fail_msg("bob's connection ended with %s, not a close", parley_errname(rc));
        PlFrame *f = NULL;
        assert_int_equal(frame_decode(data, len, FRAME_BYTES, &f), 0);
        free(data);
        assert_int_equal(f->body_case, PARLEY__V1__FRAME__BODY_PUSH);
        if (f->push->kind_case == PARLEY__V1__PUSH__KIND_UPDATE) {
            n++;
            expect_update(f->push->update, n);
        }
        frame_free(f);
    }
}

/* Syncs bob from pts 0, page by page as the protocol says, checking that
 * pts 1..n arrive each once and in order; returns the account's pts. */
static uint64_t sync_all(struct wsconn *bob, unsigned n, unsigned *pages)
{
    uint64_t local_pts = 0, server_pts = 0;
    bool more = true;
    *pages = 0;
    while (more) {
        PlFrame *f = sync_page(bob, local_pts);
        const Parley__V1__SyncResponse *r = f->response->sync;
        more = r->more;
        server_pts = r->pts;
        /* A page that says there is more must make progress. */
        assert_true(r->n_updates > 0 || !more);
        for (size_t k = 0; k < r->n_updates; k++) {
            assert_true(local_pts < n);
            expect_update(r->updates[k], (unsigned)(local_pts + 1));
            local_pts = r->updates[k]->pts;
        }
        (*pages)++;
        frame_free(f);
    }
    assert_int_equal(local_pts, n);
    return server_pts;
}

/* Pages bob's chat with alice newest first with the largest limit; each
 * page must fit the frame limit (dial refuses more) and page on from its
 * oldest message. Returns how many pages it took; asserts all n came, once,
 * newest first. */
static unsigned history_all(struct wsconn *bob, unsigned n)
{
    uint64_t before = 0;
    unsigned got = 0, pages = 0;
    for (;;) {
        Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
        Parley__V1__HistoryRequest hr = PARLEY__V1__HISTORY_REQUEST__INIT;
        Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
        peer.username = "alice";
        hr.peer = &peer;
        hr.before_id = before;
        hr.limit = 1000;
        req.method_case = PARLEY__V1__REQUEST__METHOD_HISTORY;
        req.history = &hr;
        PlFrame *f = raw_call(bob, &req);
        const Parley__V1__HistoryResponse *r = f->response->history;
        pages++;
        if (r->n_messages == 0) {
            frame_free(f);
            break;
        }
        for (size_t k = 0; k < r->n_messages; k++) {
            const Parley__V1__Message *m = r->messages[k];
            char want[TEXT_BYTES];
            make_text(want, n - got);
            assert_int_equal(m->text.len, TEXT_BYTES);
            assert_memory_equal(m->text.data, want, TEXT_BYTES);
            assert_true(before == 0 || m->id < before);
            before = m->id;
            got++;
        }
        frame_free(f);
    }
    assert_int_equal(got, n);
    return pages;
}

/* Bob signs up and then stops reading. Alice sends large messages until the
 * server cuts bob off; every send succeeds, and a third client is served
 * throughout. Bob then finds the 1008 close after what was already on its
 * way, reconnects, syncs everything from pts 0, and gets the next message
 * live. */
static void test_slow_reader_cut_off_with_1008_then_resyncs_by_pts(void **state)
{
    (void)state;
    assert_int_equal(metric("parley_send_queue_drops_total"), 0);

    uint8_t bob_pk[32], bob_sk[64], carol_pk[32], carol_sk[64];
    struct wsconn *bob = dial();
    uint64_t bob_device = raw_signup_ok(bob, "bob", bob_pk, bob_sk);
    struct wsconn *carol = dial();
    (void)raw_signup_ok(carol, "carol", carol_pk, carol_sk);
    struct parley *alice = open_device("alice");
    assert_int_equal(parley_signup(alice, "alice"), 0);

    /* From here on bob reads nothing. */
    char *text = malloc(TEXT_BYTES);
    assert_non_null(text);
    unsigned sent = 0;
    bool cut = false;
    while (!cut && sent < MAX_MESSAGES) {
        alice_sends(alice, text, ++sent);
        if (sent % CHECK_EVERY == 0) {
            raw_expect_ping(carol);
            cut = metric("parley_send_queue_drops_total") >= 1;
        }
    }
    if (!cut)
        fail_msg("bob was not cut off after %u messages of %d bytes", sent, TEXT_BYTES);
    /* More while bob's connection is closing, and after it is gone: the
     * sync must bring these too. */
    for (unsigned k = 0; k < MORE_AFTER_CUT; k++)
        alice_sends(alice, text, ++sent);
    raw_expect_ping(carol);
    assert_int_equal(metric("parley_send_queue_drops_total"), 1);

    /* Bob reads again, soon enough for the server to hand over what was
     * already on its way and then its close frame: 1008. */
    unsigned pushed = drain_until_closed(bob);
    assert_int_equal(wsconn_close_code(bob), 1008);
    assert_true(pushed < sent);
    wsconn_free(bob);
    for (unsigned k = 0; k < MORE_AFTER_CUT; k++)
        alice_sends(alice, text, ++sent);

    /* Reconnect, authenticate and sync from 0 as after any 1008. */
    bob = dial();
    assert_int_equal(auth(bob, bob_device, bob_sk), sent);
    unsigned pages;
    assert_int_equal(sync_all(bob, sent, &pages), sent);
    assert_true(pages > 1);
    /* Synced to the end: nothing more. */
    PlFrame *f = sync_page(bob, sent);
    assert_int_equal(f->response->sync->n_updates, 0);
    assert_false(f->response->sync->more);
    assert_int_equal(f->response->sync->pts, sent);
    frame_free(f);

    /* History pages too hold only what fits in one frame. */
    assert_true(history_all(bob, sent) > 2);

    /* Live again: alice's next message arrives as a push with the next pts. */
    alice_sends(alice, text, ++sent);
    f = recv_frame(bob);
    assert_int_equal(f->body_case, PARLEY__V1__FRAME__BODY_PUSH);
    assert_int_equal(f->push->kind_case, PARLEY__V1__PUSH__KIND_UPDATE);
    expect_update(f->push->update, sent);
    frame_free(f);

    /* Nobody else was cut off. */
    raw_expect_ping(carol);
    raw_expect_ping(bob);
    assert_int_equal(metric("parley_send_queue_drops_total"), 1);
    assert_int_equal(metric("parley_websockets"), 3);

    free(text);
    parley_close(alice);
    wsconn_free(carol);
    wsconn_free(bob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_reader_cut_off_with_1008_then_resyncs_by_pts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
