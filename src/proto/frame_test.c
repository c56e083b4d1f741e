/* SPDX-License-Identifier: MIT */
/* Unit tests of the frame codec (frame.h): every request, response and push
 * survives encode and decode, limits and garbage give their error codes,
 * and unknown fields and methods from newer peers decode without failing. */
#include "common/err.h"
#include "proto/frame.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Encodes f, decodes the bytes again and returns the decoded Frame. */
static PlFrame *round_trip(const PlFrame *f)
{
    size_t len = 0;
    uint8_t *buf = frame_encode(f, &len);
    assert_non_null(buf);
    PlFrame *out = NULL;
    assert_int_equal(frame_decode(buf, len, FRAME_MAX_DEFAULT, &out), 0);
    assert_non_null(out);
    /* Encoding the decoded frame gives the same bytes. */
    size_t len2 = 0;
    uint8_t *buf2 = frame_encode(out, &len2);
    assert_non_null(buf2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);
    free(buf);
    assert_int_equal(out->version, f->version);
    assert_int_equal(out->body_case, f->body_case);
    return out;
}

static PlFrame *round_trip_request(Parley__V1__Request *req)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = req;
    PlFrame *out = round_trip(&f);
    assert_non_null(out->request);
    assert_int_equal(out->request->id, req->id);
    assert_int_equal(out->request->method_case, req->method_case);
    assert_int_equal(frame_request_id(out), req->id);
    return out;
}

static PlFrame *round_trip_response(Parley__V1__Response *res)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = res;
    PlFrame *out = round_trip(&f);
    assert_non_null(out->response);
    assert_int_equal(out->response->id, res->id);
    assert_int_equal(out->response->result_case, res->result_case);
    assert_int_equal(out->response->error != NULL, res->error != NULL);
    /* Only requests have a request id. */
    assert_int_equal(frame_request_id(out), 0);
    return out;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

static void test_challenge_request_round_trips(void **state)
{
    (void)state;
    Parley__V1__ChallengeRequest ch = PARLEY__V1__CHALLENGE_REQUEST__INIT;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 1;
    req.method_case = PARLEY__V1__REQUEST__METHOD_CHALLENGE;
    req.challenge = &ch;
    PlFrame *out = round_trip_request(&req);
    assert_non_null(out->request->challenge);
    frame_free(out);
}

static void test_signup_request_round_trips(void **state)
{
    (void)state;
    uint8_t key[32], nonce[32], sig[64];
    fill(key, sizeof(key), 1);
    fill(nonce, sizeof(nonce), 2);
    fill(sig, sizeof(sig), 3);
    Parley__V1__SignupRequest su = PARLEY__V1__SIGNUP_REQUEST__INIT;
    su.username = "alice";
    su.public_key = (ProtobufCBinaryData){sizeof(key), key};
    su.nonce = (ProtobufCBinaryData){sizeof(nonce), nonce};
    su.signature = (ProtobufCBinaryData){sizeof(sig), sig};
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 2;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SIGNUP;
    req.signup = &su;
    PlFrame *out = round_trip_request(&req);
    const Parley__V1__SignupRequest *got = out->request->signup;
    assert_string_equal(got->username, "alice");
    assert_int_equal(got->public_key.len, 32);
    assert_memory_equal(got->public_key.data, key, 32);
    assert_int_equal(got->nonce.len, 32);
    assert_memory_equal(got->nonce.data, nonce, 32);
    assert_int_equal(got->signature.len, 64);
    assert_memory_equal(got->signature.data, sig, 64);
    frame_free(out);
}

static void test_auth_request_round_trips(void **state)
{
    (void)state;
    uint8_t nonce[32], sig[64];
    fill(nonce, sizeof(nonce), 4);
    fill(sig, sizeof(sig), 5);
    Parley__V1__AuthRequest au = PARLEY__V1__AUTH_REQUEST__INIT;
    au.device_id = UINT64_MAX;
    au.nonce = (ProtobufCBinaryData){sizeof(nonce), nonce};
    au.signature = (ProtobufCBinaryData){sizeof(sig), sig};
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = UINT64_MAX;
    req.method_case = PARLEY__V1__REQUEST__METHOD_AUTH;
    req.auth = &au;
    PlFrame *out = round_trip_request(&req);
    const Parley__V1__AuthRequest *got = out->request->auth;
    assert_int_equal(got->device_id, UINT64_MAX);
    assert_memory_equal(got->nonce.data, nonce, 32);
    assert_memory_equal(got->signature.data, sig, 64);
    frame_free(out);
}

static void test_send_request_round_trips(void **state)
{
    (void)state;
    Parley__V1__Peer to = PARLEY__V1__PEER__INIT;
    to.username = "bob";
    Parley__V1__SendRequest snd = PARLEY__V1__SEND_REQUEST__INIT;
    snd.to = &to;
    snd.client_id = 0x8877665544332211ull;
    /* bytes, so an embedded NUL survives the trip (the server refuses it). */
    static const char text[] = "h\xc3\xa9llo\0 \xf0\x9f\x98\x80";
    snd.text.data = (uint8_t *)text;
    snd.text.len = sizeof(text) - 1;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 3;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &snd;
    PlFrame *out = round_trip_request(&req);
    const Parley__V1__SendRequest *got = out->request->send;
    assert_non_null(got->to);
    assert_int_equal(got->to->user_id, 0);
    assert_string_equal(got->to->username, "bob");
    assert_int_equal(got->client_id, 0x8877665544332211ull);
    assert_int_equal(got->text.len, sizeof(text) - 1);
    assert_memory_equal(got->text.data, text, sizeof(text) - 1);
    frame_free(out);
}

static void test_sync_request_round_trips(void **state)
{
    (void)state;
    Parley__V1__SyncRequest sy = PARLEY__V1__SYNC_REQUEST__INIT;
    sy.from_pts = 41;
    sy.limit = 1000;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 4;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SYNC;
    req.sync = &sy;
    PlFrame *out = round_trip_request(&req);
    assert_int_equal(out->request->sync->from_pts, 41);
    assert_int_equal(out->request->sync->limit, 1000);
    frame_free(out);
}

static void test_history_request_round_trips(void **state)
{
    (void)state;
    Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
    peer.user_id = 77;
    Parley__V1__HistoryRequest hi = PARLEY__V1__HISTORY_REQUEST__INIT;
    hi.peer = &peer;
    hi.before_id = 1234;
    hi.limit = 50;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 5;
    req.method_case = PARLEY__V1__REQUEST__METHOD_HISTORY;
    req.history = &hi;
    PlFrame *out = round_trip_request(&req);
    const Parley__V1__HistoryRequest *got = out->request->history;
    assert_int_equal(got->peer->user_id, 77);
    assert_string_equal(got->peer->username, "");
    assert_int_equal(got->before_id, 1234);
    assert_int_equal(got->limit, 50);
    frame_free(out);
}

static void test_ping_request_round_trips(void **state)
{
    (void)state;
    Parley__V1__PingRequest pi = PARLEY__V1__PING_REQUEST__INIT;
    pi.payload = 0xfeedfacecafebeefull;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 6;
    req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
    req.ping = &pi;
    PlFrame *out = round_trip_request(&req);
    assert_int_equal(out->request->ping->payload, 0xfeedfacecafebeefull);
    frame_free(out);
}

static void test_resolve_request_round_trips(void **state)
{
    (void)state;
    Parley__V1__ResolveRequest re = PARLEY__V1__RESOLVE_REQUEST__INIT;
    re.username = "@Carol";
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 7;
    req.method_case = PARLEY__V1__REQUEST__METHOD_RESOLVE;
    req.resolve = &re;
    PlFrame *out = round_trip_request(&req);
    assert_string_equal(out->request->resolve->username, "@Carol");
    frame_free(out);
}

static void test_challenge_response_round_trips(void **state)
{
    (void)state;
    uint8_t nonce[32];
    fill(nonce, sizeof(nonce), 9);
    Parley__V1__ChallengeResponse ch = PARLEY__V1__CHALLENGE_RESPONSE__INIT;
    ch.nonce = (ProtobufCBinaryData){sizeof(nonce), nonce};
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 1;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_CHALLENGE;
    res.challenge = &ch;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->challenge->nonce.len, 32);
    assert_memory_equal(out->response->challenge->nonce.data, nonce, 32);
    frame_free(out);
}

static void test_signup_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__SignupResponse su = PARLEY__V1__SIGNUP_RESPONSE__INIT;
    su.user_id = 10;
    su.device_id = 11;
    su.username = "alice";
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 2;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_SIGNUP;
    res.signup = &su;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->signup->user_id, 10);
    assert_int_equal(out->response->signup->device_id, 11);
    assert_string_equal(out->response->signup->username, "alice");
    frame_free(out);
}

static void test_auth_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__AuthResponse au = PARLEY__V1__AUTH_RESPONSE__INIT;
    au.user_id = 10;
    au.username = "alice";
    au.pts = 99;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 3;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_AUTH;
    res.auth = &au;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->auth->user_id, 10);
    assert_string_equal(out->response->auth->username, "alice");
    assert_int_equal(out->response->auth->pts, 99);
    frame_free(out);
}

static Parley__V1__Message sample_message(void)
{
    Parley__V1__Message m = PARLEY__V1__MESSAGE__INIT;
    m.id = 500;
    m.from_user_id = 10;
    m.from_username = "alice";
    m.to_user_id = 20;
    m.to_username = "bob";
    m.text.data = (uint8_t *)"hi bob";
    m.text.len = 6;
    m.date = 1700000000;
    m.client_id = 0x1122334455667788ull;
    m.from_device_id = 11;
    return m;
}

static void assert_sample_message(const Parley__V1__Message *m)
{
    assert_non_null(m);
    assert_int_equal(m->id, 500);
    assert_int_equal(m->from_user_id, 10);
    assert_string_equal(m->from_username, "alice");
    assert_int_equal(m->to_user_id, 20);
    assert_string_equal(m->to_username, "bob");
    assert_int_equal(m->text.len, 6);
    assert_memory_equal(m->text.data, "hi bob", 6);
    assert_int_equal(m->date, 1700000000);
    assert_int_equal(m->client_id, 0x1122334455667788ull);
    assert_int_equal(m->from_device_id, 11);
}

static void test_send_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__Message m = sample_message();
    Parley__V1__SendResponse snd = PARLEY__V1__SEND_RESPONSE__INIT;
    snd.message = &m;
    snd.pts = 7;
    snd.duplicate = 1;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 4;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_SEND;
    res.send = &snd;
    PlFrame *out = round_trip_response(&res);
    assert_sample_message(out->response->send->message);
    assert_int_equal(out->response->send->pts, 7);
    assert_true(out->response->send->duplicate);
    frame_free(out);
}

static void test_sync_response_with_updates_round_trips(void **state)
{
    (void)state;
    Parley__V1__Message m = sample_message();
    Parley__V1__Update u1 = PARLEY__V1__UPDATE__INIT;
    u1.pts = 5;
    u1.kind_case = PARLEY__V1__UPDATE__KIND_NEW_MESSAGE;
    u1.new_message = &m;
    Parley__V1__Update u2 = u1;
    u2.pts = 6;
    Parley__V1__Update *updates[] = {&u1, &u2};
    Parley__V1__SyncResponse sy = PARLEY__V1__SYNC_RESPONSE__INIT;
    sy.n_updates = 2;
    sy.updates = updates;
    sy.pts = 9;
    sy.more = 1;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 5;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_SYNC;
    res.sync = &sy;
    PlFrame *out = round_trip_response(&res);
    const Parley__V1__SyncResponse *got = out->response->sync;
    assert_int_equal(got->n_updates, 2);
    assert_int_equal(got->updates[0]->pts, 5);
    assert_int_equal(got->updates[1]->pts, 6);
    assert_int_equal(got->updates[1]->kind_case, PARLEY__V1__UPDATE__KIND_NEW_MESSAGE);
    assert_sample_message(got->updates[1]->new_message);
    assert_int_equal(got->pts, 9);
    assert_true(got->more);
    frame_free(out);
}

static void test_empty_sync_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__SyncResponse sy = PARLEY__V1__SYNC_RESPONSE__INIT;
    sy.pts = 3;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 6;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_SYNC;
    res.sync = &sy;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->sync->n_updates, 0);
    assert_int_equal(out->response->sync->pts, 3);
    assert_false(out->response->sync->more);
    frame_free(out);
}

static void test_history_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__Message m1 = sample_message();
    Parley__V1__Message m2 = sample_message();
    m2.id = 499;
    Parley__V1__Message *msgs[] = {&m1, &m2};
    Parley__V1__HistoryResponse hi = PARLEY__V1__HISTORY_RESPONSE__INIT;
    hi.n_messages = 2;
    hi.messages = msgs;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 7;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_HISTORY;
    res.history = &hi;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->history->n_messages, 2);
    assert_sample_message(out->response->history->messages[0]);
    assert_int_equal(out->response->history->messages[1]->id, 499);
    frame_free(out);
}

static void test_ping_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__PingResponse pi = PARLEY__V1__PING_RESPONSE__INIT;
    pi.payload = 42;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 8;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_PING;
    res.ping = &pi;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->ping->payload, 42);
    frame_free(out);
}

static void test_resolve_response_round_trips(void **state)
{
    (void)state;
    Parley__V1__ResolveResponse re = PARLEY__V1__RESOLVE_RESPONSE__INIT;
    re.user_id = 30;
    re.username = "carol";
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 9;
    res.result_case = PARLEY__V1__RESPONSE__RESULT_RESOLVE;
    res.resolve = &re;
    PlFrame *out = round_trip_response(&res);
    assert_int_equal(out->response->resolve->user_id, 30);
    assert_string_equal(out->response->resolve->username, "carol");
    frame_free(out);
}

static void test_error_response_round_trips_with_retry_after(void **state)
{
    (void)state;
    Parley__V1__Error err = PARLEY__V1__ERROR__INIT;
    err.code = err_to_wire(PARLEY_ERATE_LIMITED);
    err.message = "rate limited";
    err.retry_after_ms = 1500;
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 10;
    res.error = &err;
    PlFrame *out = round_trip_response(&res);
    const Parley__V1__Error *got = out->response->error;
    assert_non_null(got);
    assert_int_equal(err_from_wire(got->code), PARLEY_ERATE_LIMITED);
    assert_string_equal(got->message, "rate limited");
    assert_int_equal(got->retry_after_ms, 1500);
    assert_int_equal(out->response->result_case, PARLEY__V1__RESPONSE__RESULT__NOT_SET);
    frame_free(out);
}

static void test_push_update_round_trips(void **state)
{
    (void)state;
    Parley__V1__Message m = sample_message();
    Parley__V1__Update up = PARLEY__V1__UPDATE__INIT;
    up.pts = 12;
    up.kind_case = PARLEY__V1__UPDATE__KIND_NEW_MESSAGE;
    up.new_message = &m;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    push.kind_case = PARLEY__V1__PUSH__KIND_UPDATE;
    push.update = &up;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    PlFrame *out = round_trip(&f);
    assert_int_equal(out->push->kind_case, PARLEY__V1__PUSH__KIND_UPDATE);
    assert_int_equal(out->push->update->pts, 12);
    assert_sample_message(out->push->update->new_message);
    assert_int_equal(frame_request_id(out), 0);
    frame_free(out);
}

static void test_push_error_round_trips(void **state)
{
    (void)state;
    Parley__V1__Error err = PARLEY__V1__ERROR__INIT;
    err.code = err_to_wire(PARLEY_EBUSY);
    err.message = "shutting down";
    err.retry_after_ms = 2000;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    push.kind_case = PARLEY__V1__PUSH__KIND_ERROR;
    push.error = &err;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    PlFrame *out = round_trip(&f);
    assert_int_equal(out->push->kind_case, PARLEY__V1__PUSH__KIND_ERROR);
    assert_int_equal(err_from_wire(out->push->error->code), PARLEY_EBUSY);
    assert_int_equal(out->push->error->retry_after_ms, 2000);
    frame_free(out);
}

static void test_empty_frame_encodes_to_zero_bytes_and_decodes(void **state)
{
    (void)state;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    size_t len = 99;
    uint8_t *buf = frame_encode(&f, &len);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    PlFrame *out = NULL;
    assert_int_equal(frame_decode(buf, 0, FRAME_MAX_DEFAULT, &out), 0);
    assert_int_equal(out->version, 0);
    assert_int_equal(out->body_case, PARLEY__V1__FRAME__BODY__NOT_SET);
    assert_int_equal(frame_request_id(out), 0);
    frame_free(out);
    free(buf);
}

static void test_ping_request_encodes_to_documented_bytes(void **state)
{
    (void)state;
    /* The example bytes in docs/PROTOCOL.md, "Encoding example". */
    static const uint8_t want[] = {0x08, 0x01, 0x12, 0x07, 0x08, 0x01,
                                   0x82, 0x01, 0x02, 0x08, 0x2a};
    Parley__V1__PingRequest pi = PARLEY__V1__PING_REQUEST__INIT;
    pi.payload = 42;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 1;
    req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
    req.ping = &pi;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = &req;
    size_t len = 0;
    uint8_t *buf = frame_encode(&f, &len);
    assert_non_null(buf);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    free(buf);
}

static void test_decode_rejects_len_above_max_with_etoobig(void **state)
{
    (void)state;
    size_t n = FRAME_MAX_DEFAULT + 1;
    uint8_t *buf = calloc(1, n);
    assert_non_null(buf);
    PlFrame *out = (PlFrame *)&out; /* any non-NULL value; it must stay */
    PlFrame *sentinel = out;
    assert_int_equal(frame_decode(buf, n, FRAME_MAX_DEFAULT, &out), PARLEY_ETOOBIG);
    assert_ptr_equal(out, sentinel);
    free(buf);

    /* The limit is the caller's: a valid 11-byte frame is too big for 10. */
    static const uint8_t ping[] = {0x08, 0x01, 0x12, 0x07, 0x08, 0x01,
                                   0x82, 0x01, 0x02, 0x08, 0x2a};
    assert_int_equal(frame_decode(ping, sizeof(ping), sizeof(ping) - 1, &out), PARLEY_ETOOBIG);
    out = NULL;
    assert_int_equal(frame_decode(ping, sizeof(ping), sizeof(ping), &out), 0);
    assert_int_equal(frame_request_id(out), 1);
    frame_free(out);
}

static void test_decode_rejects_garbage_with_emalformed(void **state)
{
    (void)state;
    const struct {
        const char *why;
        const uint8_t *data;
        size_t len;
    } cases[] = {
        {"wire type 7 does not exist", (const uint8_t[]){0x0f}, 1},
        {"field number 0", (const uint8_t[]){0x00, 0x01}, 2},
        {"truncated varint", (const uint8_t[]){0x08, 0x80}, 2},
        {"varint over 10 bytes",
         (const uint8_t[]){0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12},
        {"length past the end", (const uint8_t[]){0x12, 0x05, 0x08, 0x01}, 4},
        {"request body not a message", (const uint8_t[]){0x12, 0x02, 0xff, 0xff}, 4},
        {"tag without a value", (const uint8_t[]){0x08}, 1},
        {"text, not protobuf", (const uint8_t *)"hello, server", 13},
        {"huge length", (const uint8_t[]){0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}, 6},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        PlFrame *out = NULL;
        int rc = frame_decode(cases[i].data, cases[i].len, FRAME_MAX_DEFAULT, &out);
        if (rc != PARLEY_EMALFORMED)
            fail_msg("%s: got %d (%s), want EMALFORMED", cases[i].why, rc, err_name(rc));
        assert_null(out);
    }
}

static void test_decode_ignores_unknown_frame_field(void **state)
{
    (void)state;
    /* Frame{version 1, field 15 varint 7, field 16 bytes "xyz", field 5
     * fixed32, then request{id 9, ping{}}}: a newer sender's fields. */
    static const uint8_t data[] = {
        0x08, 0x01,                               /* version = 1 */
        0x78, 0x07,                               /* field 15, varint 7 */
        0x82, 0x01, 0x03, 'x',  'y',  'z',        /* field 16, bytes */
        0x2d, 0x01, 0x02, 0x03, 0x04,             /* field 5, fixed32 */
        0x12, 0x05, 0x08, 0x09, 0x82, 0x01, 0x00, /* request{id 9, ping{}} */
    };
    PlFrame *out = NULL;
    assert_int_equal(frame_decode(data, sizeof(data), FRAME_MAX_DEFAULT, &out), 0);
    assert_int_equal(out->version, 1);
    assert_int_equal(out->body_case, PARLEY__V1__FRAME__BODY_REQUEST);
    assert_int_equal(out->request->method_case, PARLEY__V1__REQUEST__METHOD_PING);
    assert_int_equal(frame_request_id(out), 9);
    frame_free(out);
}

static void test_decode_ignores_unknown_field_inside_method(void **state)
{
    (void)state;
    /* request{id 3, send{client_id 5, field 20 varint 1, text "hi"}} */
    static const uint8_t data[] = {
        0x08, 0x01, 0x12, 0x0d, 0x08, 0x03, 0x6a, 0x09, 0x10,
        0x05, 0xa0, 0x01, 0x01, 0x1a, 0x02, 'h',  'i',
    };
    PlFrame *out = NULL;
    assert_int_equal(frame_decode(data, sizeof(data), FRAME_MAX_DEFAULT, &out), 0);
    assert_int_equal(out->request->method_case, PARLEY__V1__REQUEST__METHOD_SEND);
    assert_int_equal(out->request->send->client_id, 5);
    assert_int_equal(out->request->send->text.len, 2);
    assert_memory_equal(out->request->send->text.data, "hi", 2);
    assert_null(out->request->send->to);
    frame_free(out);
}

static void test_decode_unknown_method_leaves_method_not_set(void **state)
{
    (void)state;
    /* Frame{version 1, request{id 42, field 99 = {payload 1}}}: a method
     * this version does not know; the server answers UNKNOWN_METHOD. */
    static const uint8_t data[] = {
        0x08, 0x01, 0x12, 0x07, 0x08, 0x2a, 0x9a, 0x06, 0x02, 0x08, 0x01,
    };
    PlFrame *out = NULL;
    assert_int_equal(frame_decode(data, sizeof(data), FRAME_MAX_DEFAULT, &out), 0);
    assert_int_equal(out->body_case, PARLEY__V1__FRAME__BODY_REQUEST);
    assert_int_equal(out->request->method_case, PARLEY__V1__REQUEST__METHOD__NOT_SET);
    assert_int_equal(frame_request_id(out), 42);
    frame_free(out);
}

static void test_decode_keeps_last_of_repeated_oneof_members(void **state)
{
    (void)state;
    /* request{id 1, challenge{}, ping{payload 5}}: protobuf's rule is that
     * the last member of a oneof on the wire wins. */
    static const uint8_t data[] = {
        0x12, 0x09, 0x08, 0x01, 0x52, 0x00, 0x82, 0x01, 0x02, 0x08, 0x05,
    };
    PlFrame *out = NULL;
    assert_int_equal(frame_decode(data, sizeof(data), FRAME_MAX_DEFAULT, &out), 0);
    assert_int_equal(out->request->method_case, PARLEY__V1__REQUEST__METHOD_PING);
    assert_int_equal(out->request->ping->payload, 5);
    frame_free(out);
}

static void test_frame_request_id_is_zero_without_request(void **state)
{
    (void)state;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    assert_int_equal(frame_request_id(&f), 0);
    Parley__V1__Response res = PARLEY__V1__RESPONSE__INIT;
    res.id = 77;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = &res;
    assert_int_equal(frame_request_id(&f), 0);
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    req.id = 78;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = &req;
    assert_int_equal(frame_request_id(&f), 78);
}

static void test_frame_free_null_is_noop(void **state)
{
    (void)state;
    frame_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge_request_round_trips),
        cmocka_unit_test(test_signup_request_round_trips),
        cmocka_unit_test(test_auth_request_round_trips),
        cmocka_unit_test(test_send_request_round_trips),
        cmocka_unit_test(test_sync_request_round_trips),
        cmocka_unit_test(test_history_request_round_trips),
        cmocka_unit_test(test_ping_request_round_trips),
        cmocka_unit_test(test_resolve_request_round_trips),
        cmocka_unit_test(test_challenge_response_round_trips),
        cmocka_unit_test(test_signup_response_round_trips),
        cmocka_unit_test(test_auth_response_round_trips),
        cmocka_unit_test(test_send_response_round_trips),
        cmocka_unit_test(test_sync_response_with_updates_round_trips),
        cmocka_unit_test(test_empty_sync_response_round_trips),
        cmocka_unit_test(test_history_response_round_trips),
        cmocka_unit_test(test_ping_response_round_trips),
        cmocka_unit_test(test_resolve_response_round_trips),
        cmocka_unit_test(test_error_response_round_trips_with_retry_after),
        cmocka_unit_test(test_push_update_round_trips),
        cmocka_unit_test(test_push_error_round_trips),
        cmocka_unit_test(test_empty_frame_encodes_to_zero_bytes_and_decodes),
        cmocka_unit_test(test_ping_request_encodes_to_documented_bytes),
        cmocka_unit_test(test_decode_rejects_len_above_max_with_etoobig),
        cmocka_unit_test(test_decode_rejects_garbage_with_emalformed),
        cmocka_unit_test(test_decode_ignores_unknown_frame_field),
        cmocka_unit_test(test_decode_ignores_unknown_field_inside_method),
        cmocka_unit_test(test_decode_unknown_method_leaves_method_not_set),
        cmocka_unit_test(test_decode_keeps_last_of_repeated_oneof_members),
        cmocka_unit_test(test_frame_request_id_is_zero_without_request),
        cmocka_unit_test(test_frame_free_null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
