/* SPDX-License-Identifier: MIT */
/* Log-linear latency histogram (see hist.h). Bucket b below 2 * HIST_SUB
 * holds exactly the value b; above, each power of two [2^m, 2^(m+1)) is cut
 * into HIST_SUB equal buckets of width 2^(m - HIST_SUB_BITS). */
#include "hist.h"

#include <string.h>

#include "common/banned.h"

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_us = UINT64_MAX;
}

unsigned hist_bucket_of(uint64_t us)
{
    if (us > HIST_VALUE_MAX)
        us = HIST_VALUE_MAX;
    if (us < 2 * HIST_SUB)
        return (unsigned)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)((us >> shift) - HIST_SUB);
}

uint64_t hist_bucket_low(unsigned bucket)
{
    if (bucket < 2 * HIST_SUB)
        return bucket;
    unsigned shift = bucket / HIST_SUB - 1;
    return (uint64_t)(bucket % HIST_SUB + HIST_SUB) << shift;
}

static uint64_t bucket_width(unsigned bucket)
{
    return bucket < 2 * HIST_SUB ? 1 : UINT64_C(1) << (bucket / HIST_SUB - 1);
}

void hist_record(struct hist *h, uint64_t us)
{
    if (us > HIST_VALUE_MAX)
        us = HIST_VALUE_MAX;
    h->buckets[hist_bucket_of(us)]++;
    h->count++;
    h->sum_us += us;
    if (us < h->min_us)
        h->min_us = us;
    if (us > h->max_us)
        h->max_us = us;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum_us += src->sum_us;
    if (src->min_us < dst->min_us)
        dst->min_us = src->min_us;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
}

uint64_t hist_percentile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min_us;
    if (q >= 1)
        return h->max_us;
    /* The rank of the wanted value, 1-based: the smallest r with
     * r >= q * count. */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_low(i) + bucket_width(i) / 2;
            if (v < h->min_us)
                v = h->min_us;
            if (v > h->max_us)
                v = h->max_us;
            return v;
        }
    }
    return h->max_us;
}
