/* SPDX-License-Identifier: MIT */
/* Admission queue: FIFO order, the per-turn budget, the in-flight cap and
 * its kick, capacity, refusal after max_wait, close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/admission.h"

#include <uv.h>

struct item {
    struct adm_item adm;
    int n;
};

struct log {
    int ran[64];
    int n_ran;
    int refused[64];
    int n_refused;
    int dropped[64];
    int n_dropped;
    unsigned busy; /* the caller's count of admitted items still working */
    bool run_adds_busy;
    unsigned run_sleep_us; /* each run keeps the loop busy this long */
};

static void run(struct adm_item *it, void *arg)
{
    struct log *l = arg;
    if (l->n_ran < 64)
        l->ran[l->n_ran] = PL_CONTAINER_OF(it, struct item, adm)->n;
    l->n_ran++;
    if (l->run_adds_busy)
        l->busy++;
    if (l->run_sleep_us)
        uv_sleep(l->run_sleep_us / 1000);
}

static void refuse(struct adm_item *it, void *arg)
{
    struct log *l = arg;
    l->refused[l->n_refused++] = PL_CONTAINER_OF(it, struct item, adm)->n;
}

static void drop(struct adm_item *it, void *arg)
{
    struct log *l = arg;
    if (l->n_dropped < 64)
        l->dropped[l->n_dropped] = PL_CONTAINER_OF(it, struct item, adm)->n;
    l->n_dropped++;
}

static void start(uv_loop_t *loop, struct admission *a, struct log *l, unsigned budget,
                  unsigned capacity, unsigned busy_max, uint64_t max_wait_ms)
{
    assert_int_equal(uv_loop_init(loop), 0);
    struct adm_limits lim = {
        .budget = budget, .capacity = capacity, .busy_max = busy_max, .max_wait_ms = max_wait_ms};
    assert_int_equal(admission_init(a, loop, &lim, &l->busy, run, refuse, l), 0);
}

static void finish(uv_loop_t *loop, struct admission *a)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    (void)a;
}

static void test_budget_per_turn_in_order(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct admission a;
    struct log l = {0};
    start(&loop, &a, &l, 3, 100, 100, 0);
    struct item items[8];
    for (int i = 0; i < 8; i++) {
        items[i].n = i;
        admission_push(&a, &items[i].adm);
    }
    assert_int_equal(a.len, 8);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(l.n_ran, 3);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(l.n_ran, 6);
    /* The idle handle keeps the loop from blocking, so a default run ends
     * once the queue is empty (the check handle is unref'ed). */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(l.n_ran, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(l.ran[i], i);
    assert_int_equal(a.len, 0);
    admission_close(&a, drop);
    assert_int_equal(l.n_dropped, 0);
    finish(&loop, &a);
}

/* At busy_max nothing starts (and the loop does not spin: a default run
 * returns with items waiting); admission_kick after busy falls lets the
 * next ones through. */
static void test_in_flight_cap_and_kick(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct admission a;
    struct log l = {.run_adds_busy = true};
    start(&loop, &a, &l, 10, 100, 2, 0);
    struct item items[5];
    for (int i = 0; i < 5; i++) {
        items[i].n = i;
        admission_push(&a, &items[i].adm);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* returns: nothing can start, nothing to wait for */
    assert_int_equal(l.n_ran, 2);
    assert_int_equal(a.len, 3);
    l.busy = 1; /* one finished */
    admission_kick(&a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(l.n_ran, 3);
    assert_int_equal(l.ran[2], 2);
    l.busy = 0;
    admission_kick(&a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(l.n_ran, 5);
    admission_close(&a, drop);
    finish(&loop, &a);
}

static void test_capacity_and_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct admission a;
    struct log l = {0};
    start(&loop, &a, &l, 1, 2, 100, 0);
    struct item items[3] = {{.n = 0}, {.n = 1}, {.n = 2}};
    assert_false(admission_full(&a));
    admission_push(&a, &items[0].adm);
    assert_false(admission_full(&a));
    admission_push(&a, &items[1].adm);
    assert_true(admission_full(&a));
    struct adm_limits wider = {.budget = 0, .capacity = 10, .busy_max = 100};
    admission_set_limits(&a, &wider); /* a zero budget still lets one through */
    assert_false(admission_full(&a));
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(l.n_ran, 1);
    admission_close(&a, drop);
    assert_int_equal(l.n_dropped, 1);
    assert_int_equal(l.dropped[0], 1);
    assert_true(admission_full(&a)); /* closed: everything is refused */
    finish(&loop, &a);
}

/* Items that waited max_wait_ms are refused, oldest first, without
 * counting against the budget; younger ones still start. */
static void test_items_waiting_too_long_are_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct admission a;
    struct log l = {.run_adds_busy = true};
    start(&loop, &a, &l, 10, 100, 1, 50);
    struct item items[4] = {{.n = 0}, {.n = 1}, {.n = 2}, {.n = 3}};
    admission_push(&a, &items[0].adm);
    admission_push(&a, &items[1].adm);
    admission_push(&a, &items[2].adm);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(l.n_ran, 1); /* busy_max 1 */
    /* Make the waiting ones old: loop time is what counts. */
    items[1].adm.since_ms -= 60;
    items[2].adm.since_ms -= 60;
    admission_push(&a, &items[3].adm);
    l.busy = 0;
    admission_kick(&a);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(l.n_refused, 2);
    assert_int_equal(l.refused[0], 1);
    assert_int_equal(l.refused[1], 2);
    assert_int_equal(l.n_ran, 2);
    assert_int_equal(l.ran[1], 3);
    admission_close(&a, drop);
    finish(&loop, &a);
}

/* With turn_ms, turns kept busy by the started items halve the budget
 * down to one; once turns are short again it grows back by one a turn, up
 * to the configured budget. (The busy work is 5 ms per item against a 1 ms
 * target, and the recovery runs with a 1 s target, so the outcome does not
 * depend on the machine's speed.) */
static void test_budget_adapts_to_busy_turns(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct admission a;
    struct log l = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_loop_configure(&loop, UV_METRICS_IDLE_TIME), 0);
    struct adm_limits lim = {.budget = 8, .capacity = 1000, .busy_max = 1000, .turn_ms = 1};
    assert_int_equal(admission_init(&a, &loop, &lim, &l.busy, run, refuse, &l), 0);
    static struct item items[200];
    for (int i = 0; i < 200; i++) {
        items[i].n = i;
        admission_push(&a, &items[i].adm);
    }
    l.run_sleep_us = 5000;
    unsigned prev = a.cur_budget;
    for (int turn = 0; turn < 6; turn++) {
        int before = l.n_ran;
        uv_run(&loop, UV_RUN_NOWAIT);
        assert_true(l.n_ran - before <= (int)a.cur_budget);
        if (turn > 0)
            assert_true(a.cur_budget == 1 || a.cur_budget <= prev / 2);
        prev = a.cur_budget;
    }
    assert_int_equal(a.cur_budget, 1);

    l.run_sleep_us = 0;
    lim.turn_ms = 1000;
    admission_set_limits(&a, &lim);
    for (unsigned want = 2; want <= 8; want++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        assert_int_equal(a.cur_budget, want);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(a.cur_budget, 8); /* never past the configured budget */
    admission_close(&a, drop);
    finish(&loop, &a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_per_turn_in_order),
        cmocka_unit_test(test_in_flight_cap_and_kick),
        cmocka_unit_test(test_capacity_and_close),
        cmocka_unit_test(test_items_waiting_too_long_are_refused),
        cmocka_unit_test(test_budget_adapts_to_busy_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
