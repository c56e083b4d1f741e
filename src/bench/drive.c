/* SPDX-License-Identifier: MIT */
/* Phases of the loop, and the connection driver that brings a set of
 * clients up for a scenario's setup (see bench.h). */
#include "bench.h"
#include "common/err.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define DRIVE_TICK_MS 5
#define DRIVE_BACKOFF_MS 100
#define DRIVE_BACKOFF_MAX_MS 2000

static void on_tick(uv_timer_t *t)
{
    struct bench *b = PL_CONTAINER_OF(t, struct bench, tick);
    if (b->on_tick)
        b->on_tick(b);
}

void bench_phase_run(struct bench *b, unsigned period_ms, void (*fn)(struct bench *b))
{
    b->on_tick = fn;
    (void)uv_timer_start(&b->tick, on_tick, period_ms, period_ms);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&b->tick);
    b->on_tick = NULL;
}

void bench_phase_end(struct bench *b)
{
    uv_stop(&b->loop);
}

void bench_drain_loop(struct bench *b)
{
    uv_timer_stop(&b->tick);
    uv_run(&b->loop, UV_RUN_DEFAULT);
}

void bench_count_code(uint64_t *by_code, int err)
{
    unsigned w = err_to_wire(err);
    by_code[w < BENCH_ERR_CODES ? w : BENCH_ERR_CODES - 1]++;
}

json_t *bench_codes_json(const uint64_t *by_code)
{
    json_t *o = json_object();
    for (unsigned i = 0; i < BENCH_ERR_CODES; i++) {
        if (by_code[i])
            json_object_set_new(o, err_name(err_from_wire(i)),
                                json_integer((json_int_t)by_code[i]));
    }
    return o;
}

/* Closing */

static void closing_ready(struct client *cl, int err, uint32_t retry_after_ms)
{
    (void)cl;
    (void)err;
    (void)retry_after_ms;
}

static void closing_frame(struct client *cl, const PlFrame *f)
{
    (void)cl;
    (void)f;
}

static void closing_closed(struct client *cl)
{
    (void)cl;
}

static const struct client_ops closing_ops = {closing_ready, closing_frame, closing_closed};

void bench_close_clients(struct bench *b, struct client **clients, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        clients[i]->ops = &closing_ops;
        if (clients[i]->live)
            client_close(clients[i], 0);
    }
    bench_drain_loop(b);
}

/* The driver */

enum slot_state { SLOT_PENDING = 0, SLOT_ACTIVE, SLOT_UP, SLOT_FAILED };

struct slot {
    enum slot_state state;
    unsigned attempts;
    uint32_t retry_after_ms; /* advised by the last refusal */
    int64_t not_before_us;
};

struct drive {
    struct bench *b;
    struct client **clients;
    struct slot *slots;
    size_t n;
    size_t active;  /* connections in progress */
    size_t live;    /* connections not yet closed */
    size_t settled; /* slots up or failed */
    size_t cursor;  /* where to look for pending slots */
    enum client_mode mode;
    bool keep;
    bool ending;
    unsigned concurrency;
    unsigned max_attempts;
    int64_t deadline_us;
    struct drive_stats *st;
};

static void drive_ready(struct client *cl, int err, uint32_t retry_after_ms)
{
    struct drive *d = cl->owner;
    struct slot *s = &d->slots[cl->slot];
    if (err == 0) {
        s->state = SLOT_UP;
        d->settled++;
        d->active--;
        d->st->ready++;
        if (d->st->latency)
            hist_record(d->st->latency, (uint64_t)(bench_now_us() - cl->started_us));
        if (!d->keep)
            client_close(cl, 0);
        return;
    }
    bench_count_code(d->st->by_code, err);
    if (err == PARLEY_ERATE_LIMITED || err == PARLEY_EBUSY) {
        if (retry_after_ms > 0)
            d->st->refused_retry++;
        else
            d->st->refused_noretry++;
    } else if (err == PARLEY_ETIMEOUT) {
        d->st->timeouts++;
    }
    s->retry_after_ms = retry_after_ms;
}

static void drive_closed(struct client *cl)
{
    struct drive *d = cl->owner;
    struct slot *s = &d->slots[cl->slot];
    d->live--;
    if (s->state != SLOT_ACTIVE)
        return; /* up, then closed by us */
    d->active--;
    s->attempts++;
    if (s->attempts >= d->max_attempts || d->ending) {
        s->state = SLOT_FAILED;
        d->settled++;
        d->st->failed++;
        return;
    }
    uint64_t backoff = (uint64_t)DRIVE_BACKOFF_MS << PL_MIN(s->attempts, 5u);
    if (backoff > DRIVE_BACKOFF_MAX_MS)
        backoff = DRIVE_BACKOFF_MAX_MS;
    if (s->retry_after_ms > backoff)
        backoff = s->retry_after_ms + randombytes_uniform(s->retry_after_ms / 2 + 1);
    s->state = SLOT_PENDING;
    s->not_before_us = bench_now_us() + (int64_t)backoff * 1000;
    if (cl->slot < d->cursor)
        d->cursor = cl->slot;
    if (d->mode == CLIENT_SIGNUP) /* a fresh name: the old one may have been taken after all */
        account_init(cl->acct, d->b->prefix, d->b->next_account++);
}

static void drive_frame(struct client *cl, const PlFrame *f)
{
    (void)cl;
    (void)f; /* pushes before the scenario starts are not counted */
}

static const struct client_ops drive_ops = {drive_ready, drive_frame, drive_closed};

static struct drive *current_drive;

/* Nothing in progress that could still call back into d: kept connections
 * are handed to the scenario, all others must have closed. */
static bool drive_idle(const struct drive *d)
{
    return d->active == 0 && (d->keep || d->live == 0);
}

static void drive_tick(struct bench *b)
{
    struct drive *d = current_drive;
    int64_t now = bench_now_us();
    if (!d->ending && (now > d->deadline_us || b->stopping)) {
        d->ending = true;
        for (size_t i = 0; i < d->n; i++) {
            if (d->slots[i].state == SLOT_ACTIVE)
                client_close(d->clients[i], PARLEY_ETIMEOUT);
            else if (d->slots[i].state == SLOT_PENDING) {
                d->slots[i].state = SLOT_FAILED;
                d->settled++;
                d->st->failed++;
            }
        }
    }
    if (d->ending) {
        if (drive_idle(d))
            bench_phase_end(b);
        return;
    }
    /* Timeouts of what is in progress. */
    int64_t timeout_us = (int64_t)b->opt.timeout_ms * 1000;
    for (size_t i = 0; i < d->n && d->active > 0; i++) {
        if (d->slots[i].state == SLOT_ACTIVE && d->clients[i]->live &&
            now - d->clients[i]->started_us > timeout_us && !d->clients[i]->reported)
            client_close(d->clients[i], PARLEY_ETIMEOUT);
    }
    /* Start what may start. */
    bool skipped = false;
    for (size_t i = d->cursor; i < d->n && d->active < d->concurrency; i++) {
        struct slot *s = &d->slots[i];
        if (s->state != SLOT_PENDING)
            continue;
        if (s->not_before_us > now) {
            if (!skipped)
                d->cursor = i;
            skipped = true;
            continue;
        }
        if (!skipped)
            d->cursor = i + 1;
        struct client *cl = d->clients[i];
        cl->owner = d;
        cl->slot = i;
        d->st->attempts++;
        int rc = client_start(cl, &b->loop, &b->target, &drive_ops, cl->acct, d->mode);
        if (rc) {
            bench_count_code(d->st->by_code, rc);
            s->state = SLOT_FAILED;
            d->settled++;
            d->st->failed++;
            continue;
        }
        s->state = SLOT_ACTIVE;
        d->active++;
        d->live++;
    }
    if (d->settled == d->n && drive_idle(d))
        bench_phase_end(b);
}

size_t drive_clients(struct bench *b, struct client **clients, size_t n, enum client_mode mode,
                     bool keep, unsigned concurrency, unsigned max_attempts, double limit_s,
                     struct drive_stats *st)
{
    struct drive d = {
        .b = b,
        .clients = clients,
        .slots = xcalloc(n ? n : 1, sizeof(struct slot)),
        .n = n,
        .mode = mode,
        .keep = keep,
        .concurrency = concurrency ? concurrency : 1,
        .max_attempts = max_attempts ? max_attempts : 1,
        .deadline_us = bench_now_us() + (int64_t)(limit_s * 1e6),
        .st = st,
    };
    current_drive = &d;
    if (n > 0)
        bench_phase_run(b, DRIVE_TICK_MS, drive_tick);
    current_drive = NULL;
    size_t up = 0;
    for (size_t i = 0; i < n; i++) {
        if (clients[i]->live)
            clients[i]->ops = &closing_ops; /* until the scenario sets its own */
        if (d.slots[i].state == SLOT_UP && clients[i]->state == CLIENT_READY)
            up++;
    }
    free(d.slots);
    return up;
}
