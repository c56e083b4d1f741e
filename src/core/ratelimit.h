/* SPDX-License-Identifier: MIT */
/* Token-bucket rate limits keyed by a 64-bit key (an IP address, an account
 * id), shared by all loops. Memory is bounded by max_keys: beyond it, idle
 * buckets (those that would be full again) are dropped first. */
#ifndef PARLEY_CORE_RATELIMIT_H
#define PARLEY_CORE_RATELIMIT_H

#include "common/compiler.h"

#include <stddef.h>
#include <stdint.h>

struct ratelimit;

struct ratelimit *ratelimit_new(size_t max_keys);
void ratelimit_free(struct ratelimit *rl);

/* Takes one token from key's bucket, which refills at rate tokens per second
 * up to burst. Returns 0 when a token was taken, or else the milliseconds
 * until one will be available (at least 1). Any thread. */
uint32_t ratelimit_take(struct ratelimit *rl, uint64_t key, double rate, double burst,
                        uint64_t now_ms);

/* Keys that hash an IPv4 or IPv6 address given as text; never 0. */
uint64_t ratelimit_ip_key(const char *ip);

#endif
