/* SPDX-License-Identifier: MIT */
#include "arena.h"

#include "mem.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "banned.h"

struct arena_block {
    struct arena_block *next;
    size_t size; /* bytes of data */
    size_t off;  /* bytes used */
    alignas(max_align_t) unsigned char data[];
};

#define ALIGN ((size_t)alignof(max_align_t))

static struct arena_block *block_new(size_t size)
{
    struct arena_block *b = xmalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->off = 0;
    return b;
}

void arena_init(struct arena *a, size_t first_size)
{
    a->first = a->cur = NULL;
    a->first_size = first_size ? first_size : 4096;
    a->used = 0;
}

void *arena_alloc(struct arena *a, size_t n)
{
    size_t need = (n + ALIGN - 1) & ~(ALIGN - 1);
    if (need < n)
        abort(); /* overflow: no request is this large */
    if (!a->first)
        a->first = a->cur = block_new(a->first_size);
    struct arena_block *b = a->cur;
    if (b->size - b->off < need) {
        /* A new block after cur: at least double the first, or the request. */
        size_t size = a->first_size * 2 > need ? a->first_size * 2 : need;
        struct arena_block *nb = block_new(size);
        nb->next = b->next;
        b->next = nb;
        a->cur = b = nb;
    }
    void *p = b->data + b->off;
    b->off += need;
    a->used += need;
    return p;
}

void arena_reset(struct arena *a)
{
    if (!a->first)
        return;
    struct arena_block *b = a->first->next;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->first->next = NULL;
    a->first->off = 0;
    a->cur = a->first;
    a->used = 0;
}

void arena_deinit(struct arena *a)
{
    arena_reset(a);
    free(a->first);
    a->first = a->cur = NULL;
}
