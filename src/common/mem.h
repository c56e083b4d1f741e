/* SPDX-License-Identifier: MIT */
/* Allocation for parleyd: on out-of-memory it logs and aborts, so callers
 * never handle NULL. libparley does not use these (it returns PARLEY_ENOMEM). */
#ifndef PARLEY_COMMON_MEM_H
#define PARLEY_COMMON_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void *xmemdup(const void *p, size_t n);

#endif
