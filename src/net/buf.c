/* SPDX-License-Identifier: MIT */
/* Growable output buffer; doubling growth, no storage while empty. */
#include "net/buf.h"

#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

uint8_t *net__buf_reserve(struct net_buf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < n)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void net__buf_append(struct net_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(net__buf_reserve(b, n), p, n);
    b->len += n;
}

uint8_t *net__buf_take(struct net_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void net__buf_free(struct net_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
