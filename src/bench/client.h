/* SPDX-License-Identifier: MIT */
/* A bench client: one connection that signs up a new account or
 * authenticates an existing device (challenge, Ed25519 over
 * "parley-auth-v1" || nonce), then hands the scenario every later Frame.
 * Owns no memory of its own beyond the connection it embeds. */
#ifndef PARLEY_BENCH_CLIENT_H
#define PARLEY_BENCH_CLIENT_H

#include "bconn.h"
#include "common/compiler.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#define CLIENT_ID_CHALLENGE 1
#define CLIENT_ID_LOGIN 2
#define CLIENT_ID_FIRST_FREE 16 /* scenarios number their requests from here */

/* An account with one device, as the bench created it. */
struct account {
    char username[33];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    uint64_t user_id;   /* 0 until signed up */
    uint64_t device_id; /* 0 until signed up */
};

/* Fills a with a fresh key pair and the name PREFIX_N (N in base 36). */
void account_init(struct account *a, const char *prefix, uint64_t n);

enum client_mode { CLIENT_SIGNUP, CLIENT_AUTH };

enum client_state {
    CLIENT_CONNECTING = 0, /* TCP, TLS, upgrade */
    CLIENT_CHALLENGE,      /* ChallengeRequest sent */
    CLIENT_LOGIN,          /* SignupRequest or AuthRequest sent */
    CLIENT_READY,          /* authenticated */
    CLIENT_GONE,           /* the connection is closing */
};

struct client;

/* The outcome of sign-up or auth, called once unless the connection is
 * closed by the owner first: err 0 (authenticated), a server refusal (the
 * PARLEY_E* of its Error, with retry_after_ms as sent; for an HTTP 429/503
 * upgrade answer, RATE_LIMITED/BUSY with its Retry-After), or a local
 * failure (ECONNECT, ECLOSED, EPROTO, ETLS). */
typedef void client_ready_cb(struct client *cl, int err, uint32_t retry_after_ms);
/* A Frame received once READY; borrowed for the call. */
typedef void client_frame_cb(struct client *cl, const PlFrame *f);
/* The connection is gone; the owner may free cl. */
typedef void client_closed_cb(struct client *cl);

struct client_ops {
    client_ready_cb *on_ready;
    client_frame_cb *on_frame;
    client_closed_cb *on_closed;
};

struct client {
    struct bconn conn;
    const struct client_ops *ops;
    struct account *acct; /* borrowed; user_id and device_id written on sign-up */
    void *owner;          /* for the scenario */
    size_t slot;          /* for the setup driver */
    enum client_mode mode;
    enum client_state state;
    bool reported;       /* on_ready has run */
    bool live;           /* between a successful client_start and on_closed */
    int64_t started_us;  /* when the connection began */
    int64_t deadline_us; /* the scenario's own timeout for what it waits on */
};

/* Connects and signs up or authenticates acct; see the callbacks for what
 * follows. cl is owned by the caller and must stay put until on_closed.
 * Returns 0, or a negative PARLEY_E* and nothing runs. */
PL_NODISCARD int client_start(struct client *cl, uv_loop_t *loop, const struct bconn_target *t,
                              const struct client_ops *ops, struct account *acct,
                              enum client_mode mode);

/* Sends a Request with id (>= CLIENT_ID_FIRST_FREE) and the method set in
 * req by the caller; returns 0 or PARLEY_ECLOSED/ENOMEM. */
PL_NODISCARD int client_request(struct client *cl, Parley__V1__Request *req);

/* Closes the connection; on_closed follows. */
void client_close(struct client *cl, int err);

/* Microseconds on a monotonic clock. */
int64_t bench_now_us(void);

#endif
