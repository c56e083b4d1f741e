/* SPDX-License-Identifier: MIT */
/* Admission queue: FIFO order, the per-turn budget, capacity, close. */
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
    int dropped[64];
    int n_dropped;
    struct admission *a;
    int push_from_run; /* run pushes this item once, to test re-entry */
    struct item *extra;
};

static void run(struct adm_item *it, void *arg)
{
    struct log *l = arg;
    struct item *x = PL_CONTAINER_OF(it, struct item, adm);
    l->ran[l->n_ran++] = x->n;
    if (l->extra && x->n == l->push_from_run) {
        admission_push(l->a, &l->extra->adm);
        l->extra = NULL;
    }
}

static void drop(struct adm_item *it, void *arg)
{
    struct log *l = arg;
    l->dropped[l->n_dropped++] = PL_CONTAINER_OF(it, struct item, adm)->n;
}

static void test_budget_per_turn_in_order(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct admission a;
    struct log l = {.a = &a};
    assert_int_equal(admission_init(&a, &loop, 3, 100, run, &l), 0);
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
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_capacity_counts_busy(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct admission a;
    struct log l = {.a = &a};
    assert_int_equal(admission_init(&a, &loop, 1, 3, run, &l), 0);
    struct item items[3] = {{.n = 0}, {.n = 1}, {.n = 2}};
    assert_false(admission_full(&a, 0));
    assert_false(admission_full(&a, 2));
    assert_true(admission_full(&a, 3));
    admission_push(&a, &items[0].adm);
    admission_push(&a, &items[1].adm);
    assert_false(admission_full(&a, 0));
    assert_true(admission_full(&a, 1));
    admission_set_limits(&a, 5, 10);
    assert_false(admission_full(&a, 7));
    assert_true(admission_full(&a, 8));
    admission_set_limits(&a, 0, 10); /* a zero budget still lets one through */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(l.n_ran, 1);
    admission_close(&a, drop);
    assert_int_equal(l.n_dropped, 1);
    assert_int_equal(l.dropped[0], 1);
    assert_true(admission_full(&a, 0)); /* closed: everything is refused */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_push_from_inside_run_counts_against_the_budget(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct admission a;
    struct item extra = {.n = 99};
    struct log l = {.a = &a, .push_from_run = 0, .extra = &extra};
    assert_int_equal(admission_init(&a, &loop, 2, 100, run, &l), 0);
    struct item first = {.n = 0};
    admission_push(&a, &first.adm);
    uv_run(&loop, UV_RUN_NOWAIT);
    /* 0 ran and pushed 99, which the same turn's budget then took. */
    assert_int_equal(l.n_ran, 2);
    assert_int_equal(l.ran[1], 99);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(l.n_ran, 2);
    admission_close(&a, drop);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_per_turn_in_order),
        cmocka_unit_test(test_capacity_counts_busy),
        cmocka_unit_test(test_push_from_inside_run_counts_against_the_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
