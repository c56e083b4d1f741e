/* SPDX-License-Identifier: MIT */
/* Process-wide counters for /metrics, rendered in the Prometheus text
 * format. Counters are atomics, bumped from any loop. */
#ifndef PARLEY_CORE_METRICS_H
#define PARLEY_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Request methods as counted; METHOD_UNKNOWN covers undecodable frames and
 * methods this server does not know. */
enum metrics_method {
    METHOD_UNKNOWN = 0,
    METHOD_CHALLENGE,
    METHOD_SIGNUP,
    METHOD_AUTH,
    METHOD_SEND,
    METHOD_SYNC,
    METHOD_HISTORY,
    METHOD_PING,
    METHOD_RESOLVE,
    METHOD_UPLOAD_KEYS,
    METHOD_GET_BUNDLE,
    METHOD_KEY_COUNT,
    METHOD_SEND_SECRET,
    METHOD_FETCH_SECRET,
    METHOD_ACK_SECRET,
    METHOD_SET_TTL,
    METHOD_COUNT
};

#define METRICS_RESULTS 64 /* index 0: ok; n: wire error code n */

struct metrics {
    _Atomic uint64_t requests[METHOD_COUNT][METRICS_RESULTS];
    _Atomic uint64_t pushes;          /* push frames queued to connections */
    _Atomic uint64_t rate_limited;    /* refusals with RATE_LIMITED */
    _Atomic uint64_t admission_refusals; /* sign-ups and logins refused with BUSY */
    _Atomic uint64_t auth_failures;   /* bad signatures and nonces */
    _Atomic uint64_t secret_envelopes; /* secret envelopes stored (one per device) */
    _Atomic uint64_t secret_acked;    /* secret envelopes deleted on ack */
    _Atomic uint64_t purged_messages; /* messages deleted by auto-delete */
    _Atomic uint64_t expired_envelopes; /* secret envelopes deleted unacked, too old */
};

extern struct metrics metrics;

void metrics_count(enum metrics_method m, int err);
const char *metrics_method_name(enum metrics_method m);

struct server;
/* Renders every metric into a new malloc'ed buffer of *len bytes. */
char *metrics_render(struct server *srv, size_t *len);

#endif
