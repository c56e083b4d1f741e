/* SPDX-License-Identifier: MIT */
/* Admission control for one event loop: expensive unauthenticated work
 * (sign-ups, logins) waits in a bounded FIFO and is let through at most
 * `budget` items per loop turn, after the turn's I/O, so work for signed-in
 * devices (handled as it is read) always goes first. The caller decides
 * what is over capacity and refuses it at once (admission_full). */
#ifndef PARLEY_CORE_ADMISSION_H
#define PARLEY_CORE_ADMISSION_H

#include "common/compiler.h"

#include <stdbool.h>
#include <uv.h>

struct adm_item {
    struct adm_item *next;
};

/* Runs one admitted item; it no longer belongs to the queue. */
typedef void adm_run_fn(struct adm_item *it, void *arg);

struct admission {
    uv_check_t check;  /* runs the budget after each turn's I/O */
    uv_idle_t idle;    /* keeps the loop from blocking while items wait */
    struct adm_item *head, *tail;
    unsigned len;      /* items waiting */
    unsigned budget;   /* items let through per loop turn, >= 1 */
    unsigned capacity; /* admission_full beyond this many waiting + `busy` */
    adm_run_fn *run;
    void *arg;
    bool closed;
};

/* Sets a up on loop. Returns 0 or PARLEY_EIO. Thread: loop's. */
PL_NODISCARD int admission_init(struct admission *a, uv_loop_t *loop, unsigned budget,
                                unsigned capacity, adm_run_fn *run, void *arg);

/* New limits from a reload; waiting items stay. */
void admission_set_limits(struct admission *a, unsigned budget, unsigned capacity);

/* Whether one more item would exceed the capacity, counting `busy` items
 * already admitted and still being worked on (e.g. at the store). */
bool admission_full(const struct admission *a, unsigned busy);

/* Appends it to the queue; it runs in a later check phase of this loop. */
void admission_push(struct admission *a, struct adm_item *it);

/* Hands every waiting item to drop (in FIFO order) and stops the handles
 * (their close is pending until the loop runs). a is unusable afterwards;
 * its memory must stay valid until the loop has run once more. */
void admission_close(struct admission *a, void (*drop)(struct adm_item *it, void *arg));

#endif
