/* SPDX-License-Identifier: MIT */
/* One mutex-guarded map of buckets. A bucket stores its token count at its
 * last update time, so refilling costs nothing until it is looked at. */
#include "ratelimit.h"
#include "common/mem.h"
#include "common/u64map.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/banned.h"

struct bucket {
    double tokens;
    uint64_t at_ms;
    double rate, burst;
};

struct ratelimit {
    uv_mutex_t lock;
    struct u64map buckets;
    size_t max_keys;
};

struct ratelimit *ratelimit_new(size_t max_keys)
{
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    if (uv_mutex_init(&rl->lock))
        abort();
    u64map_init(&rl->buckets);
    rl->max_keys = max_keys;
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    uint64_t k;
    void *v;
    for (size_t it = 0; u64map_next(&rl->buckets, &it, &k, &v);)
        free(v);
    u64map_deinit(&rl->buckets);
    uv_mutex_destroy(&rl->lock);
    free(rl);
}

static double refill(const struct bucket *b, uint64_t now_ms)
{
    double t = b->tokens + (double)(now_ms - b->at_ms) * b->rate / 1000.0;
    return t > b->burst ? b->burst : t;
}

/* Drops buckets that are full again: they hold no information. */
static void sweep(struct ratelimit *rl, uint64_t now_ms)
{
    uint64_t k;
    void *v;
    for (size_t it = 0; u64map_next(&rl->buckets, &it, &k, &v);) {
        struct bucket *b = v;
        if (refill(b, now_ms) >= b->burst) {
            u64map_del(&rl->buckets, k);
            free(b);
        }
    }
}

uint32_t ratelimit_take(struct ratelimit *rl, uint64_t key, double rate, double burst,
                        uint64_t now_ms)
{
    uint32_t wait = 0;
    uv_mutex_lock(&rl->lock);
    struct bucket *b = u64map_get(&rl->buckets, key);
    if (!b) {
        if (rl->buckets.len >= rl->max_keys)
            sweep(rl, now_ms);
        b = xmalloc(sizeof(*b));
        b->tokens = burst;
        b->at_ms = now_ms;
        u64map_put(&rl->buckets, key, b);
    }
    b->rate = rate;
    b->burst = burst;
    if (now_ms > b->at_ms) {
        b->tokens = refill(b, now_ms);
        b->at_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        double ms = ceil((1.0 - b->tokens) * 1000.0 / rate);
        wait = ms < 1 ? 1 : ms > 86400000.0 ? 86400000u : (uint32_t)ms;
    }
    uv_mutex_unlock(&rl->lock);
    return wait;
}

uint64_t ratelimit_ip_key(const char *ip)
{
    unsigned char a[16];
    uint64_t h = 1469598103934665603ULL;
    size_t n = 0;
    if (inet_pton(AF_INET, ip, a) == 1)
        n = 4;
    else if (inet_pton(AF_INET6, ip, a) == 1)
        n = 8; /* a /64 is what one IPv6 host can freely choose addresses from */
    for (size_t i = 0; i < n; i++)
        h = (h ^ a[i]) * 1099511628211ULL;
    h ^= n;
    return h == 0 || h == UINT64_MAX ? 1 : h;
}
