/* SPDX-License-Identifier: MIT */
/* A growable byte buffer for the net module's outgoing bytes. Callers cap
 * it (max_send_queue); it frees its storage whenever it is emptied, so idle
 * connections hold none. */
#ifndef PARLEY_NET_BUF_H
#define PARLEY_NET_BUF_H

#include <stddef.h>
#include <stdint.h>

struct net_buf {
    uint8_t *data; /* xmalloc'ed, NULL while empty */
    size_t len;    /* bytes held */
    size_t cap;    /* bytes allocated */
};

/* Makes room for n more bytes and returns where they go (len unchanged). */
uint8_t *net__buf_reserve(struct net_buf *b, size_t n);
void net__buf_append(struct net_buf *b, const void *p, size_t n);
/* Hands the storage to the caller (to free) and leaves b empty. */
uint8_t *net__buf_take(struct net_buf *b, size_t *len);
void net__buf_free(struct net_buf *b);

#endif
