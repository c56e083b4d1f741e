/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "rawproto.h"

#include "common/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t next_id = 1;

uint64_t raw_next_id(void)
{
    return next_id++;
}

struct wsconn *raw_dial(const char *url)
{
    struct wsconn_options opt = {.timeout_ms = 10000};
    struct wsconn *c = NULL;
    int rc = wsconn_open(url, &opt, &c);
    assert_int_equal(rc, 0);
    return c;
}

void raw_send_bytes(struct wsconn *c, const uint8_t *data, size_t len)
{
    assert_int_equal(wsconn_send(c, data, len, 10000), 0);
}

void raw_send_request(struct wsconn *c, Parley__V1__Request *req, uint32_t version)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = version;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = req;
    size_t len;
    uint8_t *buf = frame_encode(&f, &len);
    assert_non_null(buf);
    raw_send_bytes(c, buf, len);
    free(buf);
}

PlFrame *raw_recv_response(struct wsconn *c)
{
    for (;;) {
        uint8_t *data;
        size_t len;
        assert_int_equal(wsconn_recv(c, 10000, &data, &len), 0);
        PlFrame *f = NULL;
        assert_int_equal(frame_decode(data, len, FRAME_MAX_DEFAULT, &f), 0);
        free(data);
        if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE)
            return f;
        frame_free(f);
    }
}

PlFrame *raw_call(struct wsconn *c, Parley__V1__Request *req)
{
    req->id = raw_next_id();
    raw_send_request(c, req, FRAME_VERSION);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, req->id);
    if (f->response->error)
        fail_msg("request %llu failed: %s", (unsigned long long)req->id,
                 f->response->error->message);
    return f;
}

void raw_expect_error(struct wsconn *c, uint64_t id, int err)
{
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_non_null(f->response->error);
    assert_string_equal(err_name(err_from_wire(f->response->error->code)), err_name(err));
    frame_free(f);
}

void raw_expect_ping(struct wsconn *c)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__PingRequest ping = PARLEY__V1__PING_REQUEST__INIT;
    ping.payload = 0xfeed;
    req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
    req.ping = &ping;
    PlFrame *f = raw_call(c, &req);
    assert_int_equal(f->response->result_case, PARLEY__V1__RESPONSE__RESULT_PING);
    assert_int_equal(f->response->ping->payload, 0xfeed);
    frame_free(f);
}

void raw_challenge(struct wsconn *c, uint8_t nonce[32])
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__ChallengeRequest ch = PARLEY__V1__CHALLENGE_REQUEST__INIT;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_CHALLENGE;
    req.challenge = &ch;
    raw_send_request(c, &req, FRAME_VERSION);
    PlFrame *f = raw_recv_response(c);
    assert_null(f->response->error);
    assert_int_equal(f->response->challenge->nonce.len, 32);
    memcpy(nonce, f->response->challenge->nonce.data, 32);
    frame_free(f);
}

void raw_sign_nonce(const uint8_t sk[64], const uint8_t nonce[32], uint8_t sig[64])
{
    uint8_t msg[14 + 32];
    memcpy(msg, "parley-auth-v1", 14);
    memcpy(msg + 14, nonce, 32);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
}

uint64_t raw_signup_req(struct wsconn *c, const char *name, const uint8_t pk[32],
                        const uint8_t nonce[32], const uint8_t sig[64])
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SignupRequest su = PARLEY__V1__SIGNUP_REQUEST__INIT;
    su.username = (char *)name;
    su.public_key.data = (uint8_t *)pk;
    su.public_key.len = 32;
    su.nonce.data = (uint8_t *)nonce;
    su.nonce.len = 32;
    su.signature.data = (uint8_t *)sig;
    su.signature.len = 64;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_SIGNUP;
    req.signup = &su;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

uint64_t raw_auth_req(struct wsconn *c, uint64_t device, const uint8_t nonce[32],
                      const uint8_t sig[64])
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__AuthRequest au = PARLEY__V1__AUTH_REQUEST__INIT;
    au.device_id = device;
    au.nonce.data = (uint8_t *)nonce;
    au.nonce.len = 32;
    au.signature.data = (uint8_t *)sig;
    au.signature.len = 64;
    req.id = raw_next_id();
    req.method_case = PARLEY__V1__REQUEST__METHOD_AUTH;
    req.auth = &au;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

uint64_t raw_signup_ok(struct wsconn *c, const char *name, uint8_t pk[32], uint8_t sk[64])
{
    uint8_t nonce[32], sig[64];
    crypto_sign_keypair(pk, sk);
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    uint64_t id = raw_signup_req(c, name, pk, nonce, sig);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    uint64_t device = f->response->signup->device_id;
    assert_true(device > 0);
    frame_free(f);
    return device;
}

void raw_auth_ok(struct wsconn *c, uint64_t device, const uint8_t sk[64])
{
    uint8_t nonce[32], sig[64];
    raw_challenge(c, nonce);
    raw_sign_nonce(sk, nonce, sig);
    uint64_t id = raw_auth_req(c, device, nonce, sig);
    PlFrame *f = raw_recv_response(c);
    assert_int_equal(f->response->id, id);
    assert_null(f->response->error);
    frame_free(f);
}

uint64_t raw_send_text(struct wsconn *c, const char *to, const void *text, size_t len)
{
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
    peer.username = (char *)to;
    sr.to = &peer;
    req.id = raw_next_id();
    sr.client_id = req.id * 7919;
    sr.text.data = (uint8_t *)text;
    sr.text.len = len;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &sr;
    raw_send_request(c, &req, FRAME_VERSION);
    return req.id;
}

char *raw_http_get(unsigned port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    assert_true(n > 0 && (size_t)n < sizeof(req));
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        assert_true(r >= 0);
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

double raw_metric(const char *metrics, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = metrics; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    fail_msg("metric %s not found", name);
    return 0;
}
