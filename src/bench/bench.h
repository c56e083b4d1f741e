/* SPDX-License-Identifier: MIT */
/* parley-bench's shared state and its parts: the run (loop, target,
 * options), server figures from /proc, the connection driver used by setup
 * phases, the sign-up and messaging load engines, and the scenarios. All on
 * one libuv loop in one thread, but for surge's sign-ups, which run on a
 * second thread with a struct bench of their own (signthread in load.h). */
#ifndef PARLEY_BENCH_BENCH_H
#define PARLEY_BENCH_BENCH_H

#include "client.h"
#include "common/compiler.h"
#include "hist.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define BENCH_MAX_DURATION_S 3600.0
#define BENCH_ERR_CODES 64 /* wire error numbers counted one by one; larger ones share the last */

struct bench_opts {
    const char *server_url;
    int server_pid;          /* 0: no server figures */
    const char *config_name; /* reported as given, or NULL */
    bool json;
    const char *scenario;
    double rate; /* per second; 0: closed loop / --max */
    bool max;
    unsigned concurrency;
    double duration_s;
    unsigned pairs;
    unsigned window;
    unsigned size;
    double signup_rate;
    unsigned conns;
    double hold_s;
    bool tls;
    unsigned accounts;
    double ping_interval_s;
    unsigned timeout_ms; /* a sign-up, login or request without answer after this failed */
    unsigned drain_ms;   /* after a window: how long to wait for what is in flight */
};

/* Server figures read from /proc. */
struct procstat {
    bool ok;
    double cpu_s;     /* utime + stime */
    uint64_t rss_kib; /* VmRSS */
    uint64_t hwm_kib; /* VmHWM, peak RSS */
};

struct bench {
    uv_loop_t loop;
    struct bconn_target target;
    struct bench_opts opt;
    char prefix[16];       /* unique per run: usernames are PREFIX_N */
    uint64_t next_account; /* N of the next username */
    uint64_t fd_limit;     /* the open-file soft limit after raising it */
    uv_timer_t tick;       /* the phase's periodic work */
    void (*on_tick)(struct bench *b);
    bool stopping;      /* SIGINT: end the window now */
    void *scenario_mem; /* the scenario's state, until scenario_free */
};

/* Headline figures every scenario reports. */
struct bench_result {
    double duration_s;
    uint64_t sent, delivered, lost, duplicates, errors;
    double per_s;
    const struct hist *latency; /* NULL: no latency figures */
    struct procstat before, after;
};

/* Reads /proc/PID/stat and /proc/PID/status; returns 0 or PARLEY_ENOTFOUND
 * (no such process) or PARLEY_EIO. */
PL_NODISCARD int procstat_read(int pid, struct procstat *out);

/* Runs the loop with on_tick called every period_ms until bench_phase_end.
 * Returns when the phase has ended. */
void bench_phase_run(struct bench *b, unsigned period_ms, void (*on_tick)(struct bench *b));
void bench_phase_end(struct bench *b);
/* Runs the loop until nothing is left to do (all connections closed). */
void bench_drain_loop(struct bench *b);

/* Connection driver for setup: brings each of n clients up (sign-up or
 * auth of its account), at most concurrency at a time, retrying refusals
 * after their retry_after and failures with backoff, up to max_attempts
 * each. keep: leave the connection open (it is READY afterwards) or close
 * it once done. Returns how many are up; the figures go to *st. */
struct drive_stats {
    uint64_t attempts, ready, failed, timeouts;
    uint64_t refused_retry;   /* RATE_LIMITED or BUSY with retry_after_ms */
    uint64_t refused_noretry; /* RATE_LIMITED or BUSY without: a server bug */
    uint64_t by_code[BENCH_ERR_CODES];
    struct hist *latency; /* connect to authenticated; may be NULL */
};
size_t drive_clients(struct bench *b, struct client **clients, size_t n, enum client_mode mode,
                     bool keep, unsigned concurrency, unsigned max_attempts, double limit_s,
                     struct drive_stats *st);

/* Closes every client that is still open and waits until all are gone. */
void bench_close_clients(struct bench *b, struct client **clients, size_t n);

/* Counts an error code (negative PARLEY_E*) into by_code. */
void bench_count_code(uint64_t *by_code, int err);
/* A JSON object {"ENAME": count, ...} of the non-zero entries. */
json_t *bench_codes_json(const uint64_t *by_code);

/* The scenarios: each runs to its end, fills r and adds its own figures to
 * extra. Return 0, or 1 when the run could not be carried out (setup
 * failed), with a message on stderr. */
int scenario_signup(struct bench *b, struct bench_result *r, json_t *extra);
int scenario_msgs(struct bench *b, struct bench_result *r, json_t *extra);
/* msgs over secret envelopes: keys uploaded in setup, Push.secret acked. */
int scenario_secret(struct bench *b, struct bench_result *r, json_t *extra);
int scenario_idle(struct bench *b, struct bench_result *r, json_t *extra);
int scenario_surge(struct bench *b, struct bench_result *r, json_t *extra);
/* Frees what the scenario kept for the result (its latency histogram),
 * closing whatever it still has open. */
void scenario_free(struct bench *b);

#endif
