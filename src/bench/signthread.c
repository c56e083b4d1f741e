/* SPDX-License-Identifier: MIT */
/* A signload on a thread and libuv loop of its own (see load.h), so the
 * cost of sign-ups in the generator (a connection, a key pair and a
 * signature each) delays nothing on the loop that times messages. The
 * thread and its starter share only what is read-only once it starts, one
 * atomic stop flag, and the figures, read after the join. */
#include "common/err.h"
#include "common/mem.h"
#include "load.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define SIGNTHREAD_TICK_MS 1
/* Account numbers the thread takes from the run: far more than any run
 * can sign up, few enough to keep names short. */
#define SIGNTHREAD_NAMES ((uint64_t)1 << 32)

struct signthread {
    struct bench sb; /* the thread's loop and tick; target, options and names copied */
    struct signload s;
    uv_thread_t tid;
    uint64_t seed;       /* for the thread's WebSocket masking keys */
    int64_t start_us;    /* read-only once the thread runs */
    int64_t stop_us;     /* read-only once the thread runs */
    atomic_bool stop;    /* the starter's request to stop early */
    bool running_thread; /* the thread exists and is not joined (starter only) */
    /* The thread's own, read by the starter after the join. */
    bool ended;           /* no more sign-ups will start */
    int64_t t_started_us; /* when the first could start; 0: never */
    int64_t t_stopped_us; /* when the last could start */
};

static void tick(struct bench *sb)
{
    struct signthread *t = PL_CONTAINER_OF(sb, struct signthread, sb);
    int64_t now = bench_now_us();
    bool stop = atomic_load_explicit(&t->stop, memory_order_relaxed);
    if (!t->ended && !t->s.running && (stop || now >= t->stop_us)) {
        t->ended = true; /* stopped before it began */
        t->t_stopped_us = now;
    } else if (!t->ended && !t->s.running && now >= t->start_us) {
        signload_start(&t->s);
        t->t_started_us = now;
    } else if (t->s.running && (stop || now >= t->stop_us)) {
        signload_stop(&t->s);
        t->ended = true;
        t->t_stopped_us = now;
    }
    signload_tick(&t->s);
    if (!t->ended)
        return;
    if (now - t->t_stopped_us > (int64_t)sb->opt.timeout_ms * 1000 + 1000000)
        signload_abort(&t->s);
    if (t->s.inflight == 0)
        bench_phase_end(sb);
}

static void thread_main(void *arg)
{
    struct signthread *t = arg;
    struct bench *sb = &t->sb;
    bconn_seed(t->seed);
    bench_phase_run(sb, SIGNTHREAD_TICK_MS, tick);
    bench_drain_loop(sb);
    uv_close((uv_handle_t *)&sb->tick, NULL);
    uv_run(&sb->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&sb->loop) != 0)
        fputs("parley-bench: sign-up thread: handles left open at exit\n", stderr);
    bconn_cleanup();
}

int signthread_start(struct signthread **out, struct bench *b, double rate, size_t max_inflight,
                     int64_t start_us, int64_t stop_us)
{
    struct signthread *t = xcalloc(1, sizeof(*t));
    struct bench *sb = &t->sb;
    sb->target = b->target;
    sb->opt = b->opt;
    memcpy(sb->prefix, b->prefix, sizeof(sb->prefix));
    sb->next_account = b->next_account;
    b->next_account += SIGNTHREAD_NAMES;
    sb->fd_limit = b->fd_limit;
    signload_init(&t->s, sb, rate, max_inflight);
    randombytes_buf(&t->seed, sizeof(t->seed));
    t->start_us = start_us;
    t->stop_us = stop_us;
    atomic_init(&t->stop, false);
    if (uv_loop_init(&sb->loop) != 0) {
        free(t);
        return PARLEY_EIO;
    }
    uv_timer_init(&sb->loop, &sb->tick);
    /* The loop is set up here and used only by the thread from now on:
     * creating the thread orders the two. */
    if (uv_thread_create(&t->tid, thread_main, t) != 0) {
        uv_close((uv_handle_t *)&sb->tick, NULL);
        uv_run(&sb->loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&sb->loop);
        free(t);
        return PARLEY_EIO;
    }
    t->running_thread = true;
    *out = t;
    return 0;
}

void signthread_stop(struct signthread *t)
{
    atomic_store_explicit(&t->stop, true, memory_order_relaxed);
}

void signthread_join(struct signthread *t)
{
    if (!t->running_thread)
        return;
    (void)uv_thread_join(&t->tid);
    t->running_thread = false;
}

const struct signload_stats *signthread_stats(const struct signthread *t)
{
    return &t->s.st;
}

double signthread_offered_per_s(const struct signthread *t)
{
    if (t->t_started_us == 0 || t->t_stopped_us <= t->t_started_us)
        return 0;
    return (double)t->s.st.started / ((double)(t->t_stopped_us - t->t_started_us) / 1e6);
}

void signthread_free(struct signthread *t)
{
    if (!t)
        return;
    signthread_stop(t);
    signthread_join(t);
    free(t);
}
