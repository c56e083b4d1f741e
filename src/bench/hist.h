/* SPDX-License-Identifier: MIT */
/* A latency histogram with bounded memory: log-linear buckets over
 * microseconds, exact below 128 us and within 1/64 (1.6 %) above, up to
 * about 50 days. Recording is O(1) and never allocates; percentiles are read
 * from the buckets, min, max and mean are exact. Single-threaded. */
#ifndef PARLEY_BENCH_HIST_H
#define PARLEY_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6 /* 64 linear sub-buckets per power of two */
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_MSB 41 /* values above 2^42 - 1 us are clamped */
#define HIST_BUCKETS ((HIST_MAX_MSB - HIST_SUB_BITS + 2) * HIST_SUB)
#define HIST_VALUE_MAX ((UINT64_C(1) << (HIST_MAX_MSB + 1)) - 1)

struct hist {
    uint64_t count;
    uint64_t sum_us; /* exact sum of the recorded (clamped) values */
    uint64_t min_us; /* UINT64_MAX while empty */
    uint64_t max_us;
    uint64_t buckets[HIST_BUCKETS];
};

/* Empties h. */
void hist_init(struct hist *h);

/* Records one value in microseconds; values above HIST_VALUE_MAX count as
 * HIST_VALUE_MAX. */
void hist_record(struct hist *h, uint64_t us);

/* Adds every value of src to dst; src is borrowed. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at or below which a fraction q (0..1) of the recorded values
 * lie, as the middle of its bucket clamped to [min, max]; 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double q);

/* The bucket a value falls in, and the lowest value of a bucket. Exposed
 * for tests. */
unsigned hist_bucket_of(uint64_t us);
uint64_t hist_bucket_low(unsigned bucket);

#endif
