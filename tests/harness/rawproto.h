/* SPDX-License-Identifier: MIT */
/* The wire protocol spoken by hand for C integration tests: raw WebSocket
 * connections (client/wsconn.h) and protobuf frames, so tests can send
 * exactly the bytes they mean, bad ones included. Every helper asserts
 * (cmocka) on anything unexpected. */
#ifndef PARLEY_TESTS_RAWPROTO_H
#define PARLEY_TESTS_RAWPROTO_H

#include "client/wsconn.h"
#include "proto/frame.h"

#include <stddef.h>
#include <stdint.h>

/* A fresh request id, unique within the test process. */
uint64_t raw_next_id(void);

/* Connects to url; asserts success. */
struct wsconn *raw_dial(const char *url);

void raw_send_bytes(struct wsconn *c, const uint8_t *data, size_t len);

/* Wraps req in a Frame of the given version and sends it. */
void raw_send_request(struct wsconn *c, Parley__V1__Request *req, uint32_t version);

/* The next Response, skipping pushes; the caller frees it (frame_free). */
PlFrame *raw_recv_response(struct wsconn *c);

/* Sends req with a fresh id and returns its response, which must answer
 * it without an error; the caller frees it. */
PlFrame *raw_call(struct wsconn *c, Parley__V1__Request *req);

/* Asserts the next response answers id with error err (a PARLEY_E*). */
void raw_expect_error(struct wsconn *c, uint64_t id, int err);

/* Asserts a PingRequest gets its answer: the connection is still served. */
void raw_expect_ping(struct wsconn *c);

/* Asks for a nonce; copies it into nonce[32]. */
void raw_challenge(struct wsconn *c, uint8_t nonce[32]);

/* The signature the protocol wants: Ed25519 over "parley-auth-v1" || nonce. */
void raw_sign_nonce(const uint8_t sk[64], const uint8_t nonce[32], uint8_t sig[64]);

/* Sends a SignupRequest / AuthRequest; returns its request id. */
uint64_t raw_signup_req(struct wsconn *c, const char *name, const uint8_t pk[32],
                        const uint8_t nonce[32], const uint8_t sig[64]);
uint64_t raw_auth_req(struct wsconn *c, uint64_t device, const uint8_t nonce[32],
                      const uint8_t sig[64]);

/* Makes a key pair into pk/sk and signs up name on c (which is then
 * authenticated); asserts success and returns the device id. */
uint64_t raw_signup_ok(struct wsconn *c, const char *name, uint8_t pk[32], uint8_t sk[64]);

/* Authenticates c as device with sk; asserts success. */
void raw_auth_ok(struct wsconn *c, uint64_t device, const uint8_t sk[64]);

/* Sends text[0..len) to @to (client_id derived from the request id);
 * returns the request id. */
uint64_t raw_send_text(struct wsconn *c, const char *to, const void *text, size_t len);

/* GET path over plain HTTP/1.1 from 127.0.0.1:port; returns the whole
 * response (status line, headers, body), malloc'ed, NUL-terminated. */
char *raw_http_get(unsigned port, const char *path);

/* The value of a metric line "name value" in a /metrics body; asserts it
 * is there. name includes any labels, exactly as printed. */
double raw_metric(const char *metrics, const char *name);

#endif
