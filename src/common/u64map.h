/* SPDX-License-Identifier: MIT */
/* An open-addressing hash map from non-zero uint64_t keys to pointers, for
 * per-loop tables (online users, rate-limit buckets). Not thread-safe. */
#ifndef PARLEY_COMMON_U64MAP_H
#define PARLEY_COMMON_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct u64map_slot {
    uint64_t key; /* 0: empty; UINT64_MAX: deleted */
    void *val;
};

struct u64map {
    struct u64map_slot *slots;
    size_t cap;   /* power of two */
    size_t len;   /* live entries */
    size_t used;  /* live + deleted */
};

void u64map_init(struct u64map *m);
void u64map_deinit(struct u64map *m);
/* The value for key, or NULL. */
void *u64map_get(const struct u64map *m, uint64_t key);
/* Sets key to val (non-NULL), replacing any value. Aborts on OOM. */
void u64map_put(struct u64map *m, uint64_t key, void *val);
/* Removes key; returns its value or NULL. */
void *u64map_del(struct u64map *m, uint64_t key);

/* Iterates: for (size_t i = 0; u64map_next(m, &i, &k, &v);) ... Removing the
 * current entry while iterating is allowed; inserting is not. */
int u64map_next(const struct u64map *m, size_t *iter, uint64_t *key, void **val);

#endif
