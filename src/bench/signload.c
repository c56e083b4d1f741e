/* SPDX-License-Identifier: MIT */
/* Sign-ups as a new user's app does them: a fresh connection, a challenge,
 * a signed SignupRequest (which authenticates the connection), then it
 * hangs up. Each attempt owns its memory and frees it when closed. */
#include "load.h"
#include "common/err.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

/* Open loop: an attempt whose time is further behind than this when the
 * generator gets to it is skipped, not started in a burst with later ones;
 * and one tick stops starting once it has run this long. */
#define SIGNLOAD_LATE_US 10000

struct attempt {
    struct client cl;
    struct account acct;
    struct signload *s;
    struct attempt *prev, *next;
};

void signload_init(struct signload *s, struct bench *b, double rate, size_t max_inflight)
{
    memset(s, 0, sizeof(*s));
    s->b = b;
    s->rate = rate;
    s->max_inflight = max_inflight ? max_inflight : 1;
    hist_init(&s->st.latency);
}

static void on_ready(struct client *cl, int err, uint32_t retry_after_ms)
{
    struct attempt *a = cl->owner;
    struct signload *s = a->s;
    if (err == 0) {
        s->st.accepted++;
        hist_record(&s->st.latency, (uint64_t)(bench_now_us() - cl->started_us));
        client_close(cl, 0);
        return;
    }
    bench_count_code(s->st.by_code, err);
    if (err == PARLEY_ERATE_LIMITED || err == PARLEY_EBUSY) {
        if (retry_after_ms > 0) {
            s->st.refused_retry++;
            if (s->rate == 0) /* closed loop: honour the advice, as an app would */
                s->pause_until_us = bench_now_us() + (int64_t)retry_after_ms * 1000;
        } else {
            s->st.refused_noretry++;
        }
    } else if (err == PARLEY_ETIMEOUT) {
        s->st.timeouts++;
    } else {
        s->st.errors++;
    }
}

static void on_frame(struct client *cl, const PlFrame *f)
{
    (void)cl;
    (void)f;
}

static void on_closed(struct client *cl)
{
    struct attempt *a = cl->owner;
    struct signload *s = a->s;
    if (a->prev)
        a->prev->next = a->next;
    else
        s->head = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        s->tail = a->prev;
    s->inflight--;
    free(a);
}

static const struct client_ops signload_ops = {on_ready, on_frame, on_closed};

static bool start_one(struct signload *s)
{
    struct bench *b = s->b;
    struct attempt *a = xcalloc(1, sizeof(*a));
    a->s = s;
    account_init(&a->acct, b->prefix, b->next_account++);
    a->cl.owner = a;
    s->st.started++;
    int rc = client_start(&a->cl, &b->loop, &b->target, &signload_ops, &a->acct, CLIENT_SIGNUP);
    if (rc) {
        bench_count_code(s->st.by_code, rc);
        s->st.errors++;
        free(a);
        return false;
    }
    a->next = s->head;
    if (s->head)
        s->head->prev = a;
    else
        s->tail = a;
    s->head = a;
    s->inflight++;
    return true;
}

void signload_start(struct signload *s)
{
    s->running = true;
    s->t0_us = bench_now_us();
}

void signload_tick(struct signload *s)
{
    int64_t now = bench_now_us();
    int64_t timeout_us = (int64_t)s->b->opt.timeout_ms * 1000;
    /* Oldest last: stop at the first that is not yet due to time out. */
    for (struct attempt *a = s->tail; a && now - a->cl.started_us > timeout_us; a = a->prev) {
        if (a->cl.live && !a->cl.reported)
            client_close(&a->cl, PARLEY_ETIMEOUT);
    }
    if (!s->running)
        return;
    if (s->rate > 0) {
        int64_t since = now - s->t0_us;
        uint64_t due = (uint64_t)(s->rate * (double)since / 1e6);
        uint64_t late = since > SIGNLOAD_LATE_US
                            ? (uint64_t)(s->rate * (double)(since - SIGNLOAD_LATE_US) / 1e6)
                            : 0;
        if (s->st.started + s->st.skipped < late)
            s->st.skipped = late - s->st.started;
        while (s->st.started + s->st.skipped < due) {
            if (s->inflight >= s->max_inflight)
                s->st.skipped++;
            else if (!start_one(s))
                break;
            if (bench_now_us() - now > SIGNLOAD_LATE_US)
                break; /* what is still due now is late by the next tick */
        }
        return;
    }
    if (now < s->pause_until_us)
        return;
    while (s->inflight < s->max_inflight && now >= s->pause_until_us) {
        if (!start_one(s))
            break;
    }
}

void signload_stop(struct signload *s)
{
    s->running = false;
}

void signload_abort(struct signload *s)
{
    s->running = false;
    for (struct attempt *a = s->head; a; a = a->next) {
        if (a->cl.live)
            client_close(&a->cl, PARLEY_ETIMEOUT);
    }
}
