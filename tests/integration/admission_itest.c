/* SPDX-License-Identifier: MIT */
/* Admission control against a real parleyd: with a tiny sign-up queue, a
 * burst of sign-ups is either served or refused at once with BUSY and a
 * retry_after, never left hanging; /metrics counts each refusal; every
 * refused client that waits retry_after and tries again gets in; and a
 * signed-in device is served throughout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/err.h"
#include "rawproto.h"
#include "testserver.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BURST 48
#define RETRY_AFTER_MS 50

static struct testserver srv;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    char conf[128];
    snprintf(conf, sizeof(conf),
             "[admission]\nauth_queue_max = 2\nauth_per_turn = 1\nretry_after_ms = %d\n",
             RETRY_AFTER_MS);
    return testserver_start_conf(&srv, conf);
}

static int teardown(void **state)
{
    (void)state;
    return testserver_finish(&srv);
}

struct client {
    struct wsconn *c;
    uint8_t pk[32], sk[64];
    char name[32];
    uint64_t req_id;
    bool in;
};

static void signup_send(struct client *cl)
{
    uint8_t nonce[32], sig[64];
    raw_challenge(cl->c, nonce);
    raw_sign_nonce(cl->sk, nonce, sig);
    cl->req_id = raw_signup_req(cl->c, cl->name, cl->pk, nonce, sig);
}

/* Reads cl's sign-up answer: 1 if in, 0 if refused as the contract says. */
static int signup_answer(struct client *cl)
{
    PlFrame *f = raw_recv_response(cl->c);
    assert_int_equal(f->response->id, cl->req_id);
    int in = 0;
    if (f->response->error) {
        const Parley__V1__Error *e = f->response->error;
        assert_string_equal(err_name(err_from_wire(e->code)), err_name(PARLEY_EBUSY));
        /* retry_after_ms plus up to half again, at random */
        assert_in_range(e->retry_after_ms, RETRY_AFTER_MS, RETRY_AFTER_MS + RETRY_AFTER_MS / 2);
    } else {
        assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_SIGNUP);
        assert_string_equal(f->response->signup->username, cl->name);
        in = 1;
    }
    frame_free(f);
    return in;
}

static void test_signup_burst_is_served_or_refused_with_retry_after(void **state)
{
    (void)state;
    /* A signed-in device that keeps being served during the burst. */
    uint8_t pk[32], sk[64];
    struct wsconn *old = raw_dial(srv.url);
    (void)raw_signup_ok(old, "settled", pk, sk);

    static struct client cl[BURST];
    for (int i = 0; i < BURST; i++) {
        cl[i].c = raw_dial(srv.url);
        crypto_sign_keypair(cl[i].pk, cl[i].sk);
        snprintf(cl[i].name, sizeof(cl[i].name), "burst_%d", i);
    }
    /* Nonces first, then every sign-up back to back, then the answers. */
    uint8_t nonce[BURST][32], sig[BURST][64];
    for (int i = 0; i < BURST; i++) {
        raw_challenge(cl[i].c, nonce[i]);
        raw_sign_nonce(cl[i].sk, nonce[i], sig[i]);
    }
    for (int i = 0; i < BURST; i++)
        cl[i].req_id = raw_signup_req(cl[i].c, cl[i].name, cl[i].pk, nonce[i], sig[i]);
    raw_expect_ping(old);
    int in = 0, refused = 0;
    for (int i = 0; i < BURST; i++) {
        cl[i].in = signup_answer(&cl[i]);
        in += cl[i].in;
        refused += !cl[i].in;
    }
    print_message("burst of %d: %d in, %d refused with BUSY\n", BURST, in, refused);
    assert_true(in >= 1);
    assert_int_equal(in + refused, BURST);

    char *m = raw_http_get(srv.port, "/metrics");
    assert_int_equal((int)raw_metric(m, "parley_admission_refusals_total"), refused);
    char label[128];
    snprintf(label, sizeof(label), "parley_requests_total{method=\"signup\",result=\"EBUSY\"}");
    if (refused)
        assert_int_equal((int)raw_metric(m, label), refused);
    free(m);

    /* Everyone refused gets in by waiting retry_after and trying again. */
    for (int round = 0; round < 200; round++) {
        int waiting = 0;
        for (int i = 0; i < BURST; i++)
            if (!cl[i].in) {
                signup_send(&cl[i]);
                waiting++;
            }
        if (!waiting)
            break;
        for (int i = 0; i < BURST; i++)
            if (!cl[i].in && signup_answer(&cl[i]))
                cl[i].in = true;
        usleep(RETRY_AFTER_MS * 3 / 2 * 1000);
    }
    for (int i = 0; i < BURST; i++) {
        assert_true(cl[i].in);
        /* Signed in: the connection sends like any other. */
        uint64_t id = raw_send_text(cl[i].c, "settled", "hello", 5);
        PlFrame *f = raw_recv_response(cl[i].c);
        assert_int_equal(f->response->id, id);
        assert_null(f->response->error);
        frame_free(f);
        wsconn_free(cl[i].c);
    }
    raw_expect_ping(old);
    wsconn_free(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signup_burst_is_served_or_refused_with_retry_after),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
