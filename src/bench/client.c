/* SPDX-License-Identifier: MIT */
/* Sign-up and auth on a bench connection (see client.h). */
#include "client.h"
#include "common/err.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

#define AUTH_CONTEXT "parley-auth-v1"
#define AUTH_CONTEXT_LEN 14
#define NONCE_LEN 32

int64_t bench_now_us(void)
{
    return (int64_t)(uv_hrtime() / 1000);
}

void account_init(struct account *a, const char *prefix, uint64_t n)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char num[16];
    size_t len = 0;
    do {
        num[len++] = digits[n % 36];
        n /= 36;
    } while (n && len < sizeof(num));
    memset(a, 0, sizeof(*a));
    int w = snprintf(a->username, sizeof(a->username), "%s_", prefix);
    for (size_t i = 0; i < len && (size_t)w + i + 1 < sizeof(a->username); i++)
        a->username[(size_t)w + i] = num[len - 1 - i];
    crypto_sign_keypair(a->pk, a->sk);
}

static struct client *of_conn(struct bconn *c)
{
    return PL_CONTAINER_OF(c, struct client, conn);
}

static void report(struct client *cl, int err, uint32_t retry_after_ms)
{
    if (cl->reported)
        return;
    cl->reported = true;
    cl->ops->on_ready(cl, err, retry_after_ms);
}

static int send_request(struct client *cl, Parley__V1__Request *req)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = req;
    return bconn_send(&cl->conn, &f);
}

static void on_open(struct bconn *c)
{
    struct client *cl = of_conn(c);
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__ChallengeRequest ch = PARLEY__V1__CHALLENGE_REQUEST__INIT;
    req.id = CLIENT_ID_CHALLENGE;
    req.method_case = PARLEY__V1__REQUEST__METHOD_CHALLENGE;
    req.challenge = &ch;
    cl->state = CLIENT_CHALLENGE;
    int rc = send_request(cl, &req);
    if (rc)
        client_close(cl, rc);
}

static void send_login(struct client *cl, const ProtobufCBinaryData *nonce)
{
    uint8_t msg[AUTH_CONTEXT_LEN + NONCE_LEN];
    uint8_t sig[crypto_sign_BYTES];
    if (nonce->len != NONCE_LEN) {
        client_close(cl, PARLEY_EPROTO);
        return;
    }
    memcpy(msg, AUTH_CONTEXT, AUTH_CONTEXT_LEN);
    memcpy(msg + AUTH_CONTEXT_LEN, nonce->data, NONCE_LEN);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), cl->acct->sk);

    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SignupRequest su = PARLEY__V1__SIGNUP_REQUEST__INIT;
    Parley__V1__AuthRequest au = PARLEY__V1__AUTH_REQUEST__INIT;
    req.id = CLIENT_ID_LOGIN;
    if (cl->mode == CLIENT_SIGNUP) {
        su.username = cl->acct->username;
        su.public_key.data = cl->acct->pk;
        su.public_key.len = sizeof(cl->acct->pk);
        su.nonce = *nonce;
        su.signature.data = sig;
        su.signature.len = sizeof(sig);
        req.method_case = PARLEY__V1__REQUEST__METHOD_SIGNUP;
        req.signup = &su;
    } else {
        au.device_id = cl->acct->device_id;
        au.nonce = *nonce;
        au.signature.data = sig;
        au.signature.len = sizeof(sig);
        req.method_case = PARLEY__V1__REQUEST__METHOD_AUTH;
        req.auth = &au;
    }
    cl->state = CLIENT_LOGIN;
    int rc = send_request(cl, &req);
    if (rc)
        client_close(cl, rc);
}

static void on_frame(struct bconn *c, const PlFrame *f)
{
    struct client *cl = of_conn(c);
    if (cl->state == CLIENT_GONE)
        return;
    if (cl->state == CLIENT_READY) {
        cl->ops->on_frame(cl, f);
        return;
    }
    if (f->body_case == PARLEY__V1__FRAME__BODY_PUSH && f->push &&
        f->push->kind_case == PARLEY__V1__PUSH__KIND_ERROR && f->push->error) {
        /* The server says why it is about to close. */
        report(cl, err_from_wire(f->push->error->code), f->push->error->retry_after_ms);
        client_close(cl, PARLEY_ECLOSED);
        return;
    }
    if (f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE || !f->response)
        return;
    const Parley__V1__Response *r = f->response;
    if (r->error) {
        report(cl, err_from_wire(r->error->code), r->error->retry_after_ms);
        client_close(cl, 0);
        return;
    }
    if (cl->state == CLIENT_CHALLENGE && r->id == CLIENT_ID_CHALLENGE &&
        r->result_case == PARLEY__V1__RESPONSE__RESULT_CHALLENGE && r->challenge) {
        send_login(cl, &r->challenge->nonce);
        return;
    }
    if (cl->state != CLIENT_LOGIN || r->id != CLIENT_ID_LOGIN) {
        report(cl, PARLEY_EPROTO, 0);
        client_close(cl, PARLEY_EPROTO);
        return;
    }
    if (cl->mode == CLIENT_SIGNUP && r->result_case == PARLEY__V1__RESPONSE__RESULT_SIGNUP &&
        r->signup) {
        cl->acct->user_id = r->signup->user_id;
        cl->acct->device_id = r->signup->device_id;
    } else if (!(cl->mode == CLIENT_AUTH && r->result_case == PARLEY__V1__RESPONSE__RESULT_AUTH)) {
        report(cl, PARLEY_EPROTO, 0);
        client_close(cl, PARLEY_EPROTO);
        return;
    }
    cl->state = CLIENT_READY;
    report(cl, 0, 0);
}

static void on_close(struct bconn *c)
{
    struct client *cl = of_conn(c);
    cl->state = CLIENT_GONE;
    cl->live = false;
    int err = c->err ? c->err : PARLEY_ECLOSED;
    report(cl, err, c->retry_after_ms);
    cl->ops->on_closed(cl);
}

static const struct bconn_ops client_conn_ops = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_close = on_close,
};

int client_start(struct client *cl, uv_loop_t *loop, const struct bconn_target *t,
                 const struct client_ops *ops, struct account *acct, enum client_mode mode)
{
    cl->ops = ops;
    cl->acct = acct;
    cl->mode = mode;
    cl->state = CLIENT_CONNECTING;
    cl->reported = false;
    cl->started_us = bench_now_us();
    cl->deadline_us = 0;
    int rc = bconn_start(&cl->conn, loop, t, &client_conn_ops);
    cl->live = rc == 0;
    return rc;
}

int client_request(struct client *cl, Parley__V1__Request *req)
{
    if (cl->state != CLIENT_READY)
        return PARLEY_ECLOSED;
    return send_request(cl, req);
}

void client_close(struct client *cl, int err)
{
    if (cl->state != CLIENT_GONE)
        cl->state = CLIENT_GONE;
    bconn_close(&cl->conn, err);
}
