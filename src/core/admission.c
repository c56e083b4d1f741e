/* SPDX-License-Identifier: MIT */
#include "admission.h"

#include "common/err.h"

#include "common/banned.h"

static void run_budget(struct admission *a)
{
    for (unsigned n = 0; n < a->budget && a->head && !a->closed; n++) {
        struct adm_item *it = a->head;
        a->head = it->next;
        if (!a->head)
            a->tail = NULL;
        a->len--;
        it->next = NULL;
        a->run(it, a->arg);
    }
    if (!a->head && !a->closed)
        uv_idle_stop(&a->idle);
}

static void on_check(uv_check_t *h)
{
    run_budget(PL_CONTAINER_OF(h, struct admission, check));
}

static void on_idle(uv_idle_t *h)
{
    PL_UNUSED(h); /* its only job is a zero poll timeout while items wait */
}

int admission_init(struct admission *a, uv_loop_t *loop, unsigned budget, unsigned capacity,
                   adm_run_fn *run, void *arg)
{
    *a = (struct admission){.run = run, .arg = arg};
    admission_set_limits(a, budget, capacity);
    if (uv_check_init(loop, &a->check) != 0)
        return PARLEY_EIO;
    if (uv_idle_init(loop, &a->idle) != 0) {
        uv_close((uv_handle_t *)&a->check, NULL);
        return PARLEY_EIO;
    }
    uv_check_start(&a->check, on_check);
    uv_unref((uv_handle_t *)&a->check); /* never keeps the loop alive by itself */
    return 0;
}

void admission_set_limits(struct admission *a, unsigned budget, unsigned capacity)
{
    a->budget = budget ? budget : 1;
    a->capacity = capacity;
}

bool admission_full(const struct admission *a, unsigned busy)
{
    return a->closed || (unsigned long long)a->len + busy >= a->capacity;
}

void admission_push(struct admission *a, struct adm_item *it)
{
    it->next = NULL;
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    a->len++;
    uv_idle_start(&a->idle, on_idle);
}

void admission_close(struct admission *a, void (*drop)(struct adm_item *it, void *arg))
{
    if (a->closed)
        return;
    a->closed = true;
    while (a->head) {
        struct adm_item *it = a->head;
        a->head = it->next;
        it->next = NULL;
        a->len--;
        drop(it, a->arg);
    }
    a->tail = NULL;
    uv_close((uv_handle_t *)&a->check, NULL);
    uv_close((uv_handle_t *)&a->idle, NULL);
}
