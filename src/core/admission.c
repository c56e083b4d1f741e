/* SPDX-License-Identifier: MIT */
#include "admission.h"

#include "common/err.h"

#include "common/banned.h"

static struct adm_item *pop(struct admission *a)
{
    struct adm_item *it = a->head;
    a->head = it->next;
    if (!a->head)
        a->tail = NULL;
    a->len--;
    it->next = NULL;
    return it;
}

/* Adapts the budget to how long the loop's turns run: a turn busy longer
 * than turn_ms (sign-ups, logins and everyone's messages together) means
 * signed-in devices wait that long, so sign-ups get half as many starts;
 * each shorter turn gives one back (additive increase, multiplicative
 * decrease). Time blocked in poll is not busy time. */
static void adapt_budget(struct admission *a)
{
    uint64_t now_ns = uv_hrtime(), idle_ns = uv_metrics_idle_time(a->loop);
    uint64_t span = now_ns - a->last_check_ns, idle = idle_ns - a->last_idle_ns;
    uint64_t busy = span > idle ? span - idle : 0;
    a->last_check_ns = now_ns;
    a->last_idle_ns = idle_ns;
    if (!a->lim.turn_ms)
        a->cur_budget = a->lim.budget;
    else if (busy > (uint64_t)a->lim.turn_ms * 1000000)
        a->cur_budget = a->cur_budget > 1 ? a->cur_budget / 2 : 1;
    else if (a->cur_budget < a->lim.budget)
        a->cur_budget++;
}

static void run_budget(struct admission *a)
{
    adapt_budget(a);
    uint64_t now = uv_now(a->loop);
    unsigned started = 0;
    while (a->head && !a->closed) {
        if (a->lim.max_wait_ms && now - a->head->since_ms >= a->lim.max_wait_ms) {
            a->refuse(pop(a), a->arg); /* cheap: an answer, no work */
            continue;
        }
        if (started >= a->cur_budget || *a->busy >= a->lim.busy_max)
            break;
        a->run(pop(a), a->arg);
        started++;
    }
    /* Spin the loop only while items can start; otherwise admission_kick
     * or the next I/O brings the check back. */
    if (a->closed)
        return;
    if (!a->head || *a->busy >= a->lim.busy_max)
        uv_idle_stop(&a->idle);
}

static void on_check(uv_check_t *h)
{
    run_budget(PL_CONTAINER_OF(h, struct admission, check));
}

static void on_idle(uv_idle_t *h)
{
    PL_UNUSED(h); /* its only job is a zero poll timeout while items can start */
}

int admission_init(struct admission *a, uv_loop_t *loop, const struct adm_limits *lim,
                   const unsigned *busy, adm_run_fn *run, adm_run_fn *refuse, void *arg)
{
    *a = (struct admission){.loop = loop, .busy = busy, .run = run, .refuse = refuse, .arg = arg};
    admission_set_limits(a, lim);
    if (uv_check_init(loop, &a->check) != 0)
        return PARLEY_EIO;
    if (uv_idle_init(loop, &a->idle) != 0) {
        uv_close((uv_handle_t *)&a->check, NULL);
        return PARLEY_EIO;
    }
    a->last_check_ns = uv_hrtime();
    a->last_idle_ns = uv_metrics_idle_time(loop);
    uv_check_start(&a->check, on_check);
    uv_unref((uv_handle_t *)&a->check); /* never keeps the loop alive by itself */
    return 0;
}

void admission_set_limits(struct admission *a, const struct adm_limits *lim)
{
    a->lim = *lim;
    if (a->lim.budget == 0)
        a->lim.budget = 1;
    if (a->cur_budget == 0 || a->cur_budget > a->lim.budget)
        a->cur_budget = a->lim.budget;
    if (a->lim.busy_max == 0)
        a->lim.busy_max = 1;
}

bool admission_full(const struct admission *a)
{
    return a->closed || a->len >= a->lim.capacity;
}

void admission_push(struct admission *a, struct adm_item *it)
{
    it->next = NULL;
    it->since_ms = uv_now(a->loop);
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    a->len++;
    if (*a->busy < a->lim.busy_max)
        uv_idle_start(&a->idle, on_idle);
}

void admission_kick(struct admission *a)
{
    if (!a->closed && a->head && *a->busy < a->lim.busy_max)
        uv_idle_start(&a->idle, on_idle);
}

void admission_close(struct admission *a, void (*drop)(struct adm_item *it, void *arg))
{
    if (a->closed)
        return;
    a->closed = true;
    while (a->head)
        drop(pop(a), a->arg);
    uv_close((uv_handle_t *)&a->check, NULL);
    uv_close((uv_handle_t *)&a->idle, NULL);
}
