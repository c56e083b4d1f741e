/* SPDX-License-Identifier: MIT */
/* A bump allocator for short-lived objects that all die together: one
 * request's decoded frame, say. Allocation is a pointer bump; arena_reset
 * frees everything at once and keeps the first block for reuse, so a loop
 * that resets after each request allocates nothing in the steady state.
 * Not thread-safe. */
#ifndef PARLEY_COMMON_ARENA_H
#define PARLEY_COMMON_ARENA_H

#include "compiler.h"

#include <stddef.h>

struct arena_block;

struct arena {
    struct arena_block *first; /* kept across resets */
    struct arena_block *cur;   /* where allocations come from */
    size_t first_size;
    size_t used;               /* bytes in use, over all blocks (for tests and stats) */
};

/* Sets a up; its first block (first_size bytes) is made on first use. */
void arena_init(struct arena *a, size_t first_size);

/* n bytes aligned for any type, valid until the next reset. Aborts on OOM
 * (xmalloc), like the rest of the server. n may be 0. */
void *arena_alloc(struct arena *a, size_t n);

/* Frees every allocation; blocks beyond the first go back to the system. */
void arena_reset(struct arena *a);

/* Frees everything including the first block. */
void arena_deinit(struct arena *a);

#endif
