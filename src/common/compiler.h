/* SPDX-License-Identifier: MIT */
/* Compiler attributes and small macros shared by every module. */
#ifndef PARLEY_COMMON_COMPILER_H
#define PARLEY_COMMON_COMPILER_H

#include <stddef.h>

#define PL_NODISCARD __attribute__((warn_unused_result))
#define PL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define PL_UNUSED(x) ((void)(x))
#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PL_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define PL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PL_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
