/* SPDX-License-Identifier: MIT */
/* The two load engines the scenarios are made of, driven from a phase's
 * tick: signload starts sign-ups on fresh connections (open loop at a rate,
 * or a fixed number in flight); msgload runs pairs of signed-in clients
 * messaging each other (closed loop with a window, or open loop at a rate)
 * and checks every message end to end, as plain messages or as secret
 * envelopes. signthread runs a signload on a
 * thread and loop of its own, beside a msgload. */
#ifndef PARLEY_BENCH_LOAD_H
#define PARLEY_BENCH_LOAD_H

#include "bench.h"

/* Sign-ups */

struct signload_stats {
    uint64_t started, accepted, timeouts, errors;
    uint64_t refused_retry;   /* RATE_LIMITED/BUSY carrying retry_after_ms */
    uint64_t refused_noretry; /* RATE_LIMITED/BUSY without it: a server bug */
    uint64_t skipped;         /* open loop: not started, too many in flight or too late */
    uint64_t by_code[BENCH_ERR_CODES];
    struct hist latency; /* connect to signed up, accepted ones */
};

struct attempt;

struct signload {
    struct bench *b;
    struct signload_stats st;
    double rate; /* per second; 0: keep max_inflight in flight */
    size_t max_inflight;
    bool running; /* starting new sign-ups */
    int64_t t0_us;
    int64_t pause_until_us; /* closed loop: a refusal's retry_after */
    size_t inflight;        /* connections not yet closed */
    struct attempt *head;   /* newest first */
    struct attempt *tail;   /* oldest */
};

void signload_init(struct signload *s, struct bench *b, double rate, size_t max_inflight);
void signload_start(struct signload *s);
void signload_tick(struct signload *s);
/* Starts no more; those in flight finish or time out. */
void signload_stop(struct signload *s);
/* Closes what is in flight; call bench_drain_loop after. */
void signload_abort(struct signload *s);

/* Sign-ups on a thread of their own */

struct signthread;

/* Starts a thread with its own loop that runs an open-loop signload at
 * rate (at most max_inflight in flight) from start_us until stop_us
 * (bench_now_us clock) or signthread_stop, whichever is first; then waits
 * for what is in flight (timing it out after b's timeout_ms) and ends. It
 * shares with the caller only b's read-only target and options, and takes
 * a range of account numbers from b, so names stay unique. Call from b's
 * loop thread. Returns 0 and *out (owned by the caller, free with
 * signthread_free), or PARLEY_EIO (no loop or no thread) and nothing
 * started. */
PL_NODISCARD int signthread_start(struct signthread **out, struct bench *b, double rate,
                                  size_t max_inflight, int64_t start_us, int64_t stop_us);
/* Asks the thread to start no more sign-ups (it notices within a tick);
 * safe to call more than once, from the thread that started it. */
void signthread_stop(struct signthread *t);
/* Waits until the thread has ended; idempotent. The figures below may be
 * read only after it. */
void signthread_join(struct signthread *t);
/* The sign-ups' figures; valid until signthread_free, after the join. */
const struct signload_stats *signthread_stats(const struct signthread *t);
/* Sign-ups started per second while the thread was starting them: what
 * it actually offered (skipped ones not counted); 0 if it never started. */
double signthread_offered_per_s(const struct signthread *t);
/* Joins if need be (after signthread_stop), then frees t; NULL is a no-op. */
void signthread_free(struct signthread *t);

/* Messages */

#define MSGLOAD_PHASES 3

struct mclient;

struct msgload {
    struct bench *b;
    struct mclient *mc;
    size_t n;        /* 2 * pairs */
    double rate;     /* total per second; 0: closed loop */
    unsigned window; /* most messages in flight per client */
    unsigned size;   /* text bytes */
    bool sending;
    int64_t t0_us;
    uint64_t slots; /* open loop: send slots scheduled so far */
    size_t rr;      /* open loop: next client */
    unsigned nphases;
    int64_t phase_start_us[MSGLOAD_PHASES];
    struct hist *phase_hist[MSGLOAD_PHASES]; /* by send time */
    struct hist *latency;                    /* all */
    uint64_t sent, acked, delivered, delivered_in_window, duplicates, failed;
    uint64_t capped;     /* open loop: skipped, the client had window in flight */
    uint64_t unexpected; /* pushes that are not one of ours */
    uint64_t conn_lost;  /* clients whose connection dropped */
    uint64_t by_code[BENCH_ERR_CODES];
    uint64_t client_id_state; /* next SendRequest.client_id comes from it (random start) */
    /* Secret envelopes (msgload_keys_begin): SendSecretRequest with one
     * Envelope for the partner's device, received as Push.secret and acked
     * with AckSecretRequest, the acks of a loop turn in one request. */
    bool secret;
    bool ack_check_live;       /* ack_check initialised, closed by msgload_free */
    uv_check_t ack_check;      /* runs after the turn's reads: sends the queued acks */
    struct mclient *ack_dirty; /* clients with acks queued this turn */
    uint64_t keys_ok, keys_failed;
    uint64_t keys_by_code[BENCH_ERR_CODES];
    uint64_t acks;         /* envelope ids sent in AckSecretRequests */
    uint64_t acks_deleted; /* AckSecretResponse.deleted, summed */
    uint64_t ack_errors;   /* AckSecretRequests answered with an error */
};

/* Signs up 2 * pairs clients, kept connected; returns 0 or PARLEY_ECONNECT
 * (not all came up; ds says why). */
PL_NODISCARD int msgload_setup(struct msgload *m, struct bench *b, unsigned pairs,
                               struct drive_stats *ds);
/* Starts the window now; a closed loop sends each client's first window. */
void msgload_begin(struct msgload *m, double rate, unsigned window, unsigned size);
/* A new latency phase begins now (at most MSGLOAD_PHASES, counting the
 * first from msgload_begin). */
void msgload_next_phase(struct msgload *m);
/* Switches m to secret envelopes: every client uploads keys (an identity
 * key, a signed prekey, random bytes of the right form, no one-time
 * prekeys). Call after msgload_setup, then msgload_keys_tick from a phase
 * until msgload_keys_pending is 0; keys_ok and keys_failed tell the
 * outcome. */
void msgload_keys_begin(struct msgload *m);
/* Sends uploads again whose refusal's retry_after has passed. */
void msgload_keys_tick(struct msgload *m);
/* Uploads neither accepted nor given up. */
size_t msgload_keys_pending(const struct msgload *m);
void msgload_tick(struct msgload *m);
void msgload_stop(struct msgload *m);
/* Messages in flight on live connections; with secret envelopes, acks
 * queued or unanswered too. */
uint64_t msgload_inflight(const struct msgload *m);
uint64_t msgload_lost(const struct msgload *m);
/* Closes every connection and frees everything. */
void msgload_free(struct msgload *m);

#endif
