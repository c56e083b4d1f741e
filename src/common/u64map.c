/* SPDX-License-Identifier: MIT */
/* Linear probing with tombstones; grows at 70% occupancy including them. */
#include "u64map.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define TOMB UINT64_MAX

static size_t hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (size_t)k;
}

void u64map_init(struct u64map *m)
{
    memset(m, 0, sizeof(*m));
}

void u64map_deinit(struct u64map *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static struct u64map_slot *find(const struct u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct u64map_slot *s = &m->slots[i];
        if (s->key == key)
            return s;
        if (s->key == 0)
            return NULL;
    }
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
    struct u64map_slot *s = find(m, key);
    return s ? s->val : NULL;
}

static void grow(struct u64map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    if (m->len * 2 < m->cap)
        ncap = m->cap; /* mostly tombstones: rehash at the same size */
    struct u64map_slot *old = m->slots;
    size_t ocap = m->cap;
    m->slots = xcalloc(ncap, sizeof(*m->slots));
    m->cap = ncap;
    m->used = m->len;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].key == 0 || old[i].key == TOMB)
            continue;
        size_t j = hash(old[i].key) & (ncap - 1);
        while (m->slots[j].key)
            j = (j + 1) & (ncap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

void u64map_put(struct u64map *m, uint64_t key, void *val)
{
    struct u64map_slot *s = find(m, key);
    if (s) {
        s->val = val;
        return;
    }
    if ((m->used + 1) * 10 >= m->cap * 7)
        grow(m);
    size_t i = hash(key) & (m->cap - 1);
    while (m->slots[i].key != 0 && m->slots[i].key != TOMB)
        i = (i + 1) & (m->cap - 1);
    if (m->slots[i].key == 0)
        m->used++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->len++;
}

void *u64map_del(struct u64map *m, uint64_t key)
{
    struct u64map_slot *s = find(m, key);
    if (!s)
        return NULL;
    void *v = s->val;
    s->key = TOMB;
    s->val = NULL;
    m->len--;
    return v;
}

int u64map_next(const struct u64map *m, size_t *iter, uint64_t *key, void **val)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->slots[i].key != 0 && m->slots[i].key != TOMB) {
            *key = m->slots[i].key;
            *val = m->slots[i].val;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
