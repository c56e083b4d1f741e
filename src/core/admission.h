/* SPDX-License-Identifier: MIT */
/* Admission control for one event loop: expensive unauthenticated work
 * (sign-ups, logins) waits in a bounded FIFO and is let through at most
 * `budget` items per loop turn, after the turn's I/O, so work for signed-in
 * devices (handled as it is read) always goes first; and only while fewer
 * than busy_max admitted items are still being worked on (at the store),
 * so they never pile up ahead of that work there. The caller refuses what
 * finds the queue full at once (admission_full); what waits too long is
 * refused by the queue (the refuse callback). */
#ifndef PARLEY_CORE_ADMISSION_H
#define PARLEY_CORE_ADMISSION_H

#include "common/compiler.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct adm_item {
    struct adm_item *next;
    uint64_t since_ms; /* when it was pushed (loop time) */
};

/* Runs one admitted item; it no longer belongs to the queue. */
typedef void adm_run_fn(struct adm_item *it, void *arg);

struct adm_limits {
    unsigned budget;      /* items started per loop turn, >= 1 */
    unsigned capacity;    /* items waiting beyond which admission_full says so */
    unsigned busy_max;    /* no item starts while *busy is at this */
    uint64_t max_wait_ms; /* an item waiting this long is refused instead; 0: no limit */
    unsigned turn_ms;     /* target busy time of a loop turn: longer turns halve the budget,
                             shorter ones give one back (up to budget); 0: fixed budget */
};

struct admission {
    uv_check_t check;  /* runs the budget after each turn's I/O */
    uv_idle_t idle;    /* keeps the loop from blocking while items can start */
    uv_loop_t *loop;
    struct adm_item *head, *tail;
    unsigned len;      /* items waiting */
    struct adm_limits lim;
    unsigned cur_budget;  /* the budget in force: lim.budget, less while turns run long */
    uint64_t last_check_ns;
    uint64_t last_idle_ns;
    const unsigned *busy; /* admitted items still being worked on, kept by the caller */
    adm_run_fn *run;
    adm_run_fn *refuse; /* an item that waited max_wait_ms: the caller answers "busy" */
    void *arg;
    bool closed;
};

/* Sets a up on loop; busy is read each turn. With lim.turn_ms, the loop
 * must have been configured with UV_METRICS_IDLE_TIME (the busy time of a
 * turn is the time between checks less the time blocked in poll). Returns
 * 0 or PARLEY_EIO. Thread: loop's. */
PL_NODISCARD int admission_init(struct admission *a, uv_loop_t *loop,
                                const struct adm_limits *lim, const unsigned *busy,
                                adm_run_fn *run, adm_run_fn *refuse, void *arg);

/* New limits from a reload; waiting items stay. */
void admission_set_limits(struct admission *a, const struct adm_limits *lim);

/* Whether the queue is at capacity (or closed): refuse the next item. */
bool admission_full(const struct admission *a);

/* Appends it to the queue; it runs in a later check phase of this loop. */
void admission_push(struct admission *a, struct adm_item *it);

/* Call when *busy has fallen: waiting items may start on the next turn. */
void admission_kick(struct admission *a);

/* Hands every waiting item to drop (in FIFO order) and stops the handles
 * (their close is pending until the loop runs). a is unusable afterwards;
 * its memory must stay valid until the loop has run once more. */
void admission_close(struct admission *a, void (*drop)(struct adm_item *it, void *arg));

#endif
