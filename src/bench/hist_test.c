/* SPDX-License-Identifier: MIT */
/* Unit tests for the latency histogram: bucket layout, precision bound,
 * percentiles against a sorted reference, merging, clamping. */
#include "bench/hist.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/banned.h"

static struct hist *hist_alloc(void)
{
    struct hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    hist_init(h);
    return h;
}

static void test_empty_hist_reports_zero(void **state)
{
    (void)state;
    struct hist *h = hist_alloc();
    assert_int_equal(h->count, 0);
    assert_int_equal(hist_percentile(h, 0.5), 0);
    assert_int_equal(hist_percentile(h, 0.99), 0);
    free(h);
}

static void test_small_values_are_exact(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 2 * HIST_SUB; v++) {
        assert_int_equal(hist_bucket_of(v), v);
        assert_int_equal(hist_bucket_low((unsigned)v), v);
    }
}

static void test_buckets_are_contiguous_and_monotonic(void **state)
{
    (void)state;
    for (unsigned b = 1; b < HIST_BUCKETS; b++) {
        uint64_t low = hist_bucket_low(b);
        assert_true(low > hist_bucket_low(b - 1));
        assert_int_equal(hist_bucket_of(low), b);
        assert_int_equal(hist_bucket_of(low - 1), b - 1);
    }
    assert_int_equal(hist_bucket_of(HIST_VALUE_MAX), HIST_BUCKETS - 1);
    assert_int_equal(hist_bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
}

static void test_relative_error_is_bounded(void **state)
{
    (void)state;
    /* Every value lies in a bucket no wider than 1/64 of its lower bound. */
    uint64_t v = 1;
    while (v < HIST_VALUE_MAX / 3) {
        unsigned b = hist_bucket_of(v);
        uint64_t low = hist_bucket_low(b);
        uint64_t next = b + 1 < HIST_BUCKETS ? hist_bucket_low(b + 1) : HIST_VALUE_MAX + 1;
        assert_true(low <= v && v < next);
        if (low >= 2 * HIST_SUB)
            assert_true((next - low) * HIST_SUB <= low);
        v = v * 3 + 1;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_percentiles_match_sorted_reference(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint64_t *vals = malloc(N * sizeof(*vals));
    assert_non_null(vals);
    struct hist *h = hist_alloc();
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* A long-tailed spread from 1 us to about 1 s. */
        vals[i] = 1 + (x % 1000) * (x % 1000) * ((x >> 20) % 1000) / 1000;
        hist_record(h, vals[i]);
    }
    qsort(vals, N, sizeof(*vals), cmp_u64);
    const double qs[] = {0.01, 0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t want = vals[(size_t)(qs[i] * N) - 1];
        uint64_t got = hist_percentile(h, qs[i]);
        uint64_t diff = got > want ? got - want : want - got;
        if (diff * 32 > want + 32)
            fail_msg("p%g: got %llu, want %llu", qs[i] * 100, (unsigned long long)got,
                     (unsigned long long)want);
    }
    assert_int_equal(hist_percentile(h, 0), vals[0]);
    assert_int_equal(hist_percentile(h, 1), vals[N - 1]);
    assert_int_equal(h->min_us, vals[0]);
    assert_int_equal(h->max_us, vals[N - 1]);
    free(h);
    free(vals);
}

static void test_single_value_percentiles_are_that_value(void **state)
{
    (void)state;
    struct hist *h = hist_alloc();
    hist_record(h, 12345);
    assert_int_equal(hist_percentile(h, 0.5), 12345);
    assert_int_equal(hist_percentile(h, 0.99), 12345);
    free(h);
}

static void test_merge_adds_counts_and_extremes(void **state)
{
    (void)state;
    struct hist *a = hist_alloc(), *b = hist_alloc();
    for (uint64_t v = 1; v <= 100; v++)
        hist_record(a, v);
    for (uint64_t v = 1001; v <= 1100; v++)
        hist_record(b, v);
    hist_merge(a, b);
    assert_int_equal(a->count, 200);
    assert_int_equal(a->min_us, 1);
    assert_int_equal(a->max_us, 1100);
    assert_int_equal(a->sum_us, 5050 + 105050);
    assert_true(hist_percentile(a, 0.5) <= 100);
    assert_true(hist_percentile(a, 0.51) > 1000);
    free(a);
    free(b);
}

static void test_huge_values_are_clamped(void **state)
{
    (void)state;
    struct hist *h = hist_alloc();
    hist_record(h, UINT64_MAX);
    assert_int_equal(h->max_us, HIST_VALUE_MAX);
    assert_int_equal(hist_percentile(h, 0.5), HIST_VALUE_MAX);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_hist_reports_zero),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_buckets_are_contiguous_and_monotonic),
        cmocka_unit_test(test_relative_error_is_bounded),
        cmocka_unit_test(test_percentiles_match_sorted_reference),
        cmocka_unit_test(test_single_value_percentiles_are_that_value),
        cmocka_unit_test(test_merge_adds_counts_and_extremes),
        cmocka_unit_test(test_huge_values_are_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
