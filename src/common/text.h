/* SPDX-License-Identifier: MIT */
/* Text checks shared by server and client: UTF-8 validation and usernames. */
#ifndef PARLEY_COMMON_TEXT_H
#define PARLEY_COMMON_TEXT_H

#include "compiler.h"

#include <stdbool.h>
#include <stddef.h>

#define USERNAME_MIN 3
#define USERNAME_MAX 32

/* Counts the code points of s[0..len) into *chars if it is well-formed
 * UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF, no NUL).
 * Returns 0, or PARLEY_EBAD_UTF8 and leaves *chars alone. */
PL_NODISCARD int utf8_check(const char *s, size_t len, size_t *chars);

/* Case-folds name (ASCII) into out (USERNAME_MAX + 1 bytes) and checks it is
 * 3-32 of [a-z0-9_]. A leading '@' is accepted and dropped. Returns 0, or
 * PARLEY_EBAD_USERNAME with out untouched. */
PL_NODISCARD int username_normalize(const char *name, char out[USERNAME_MAX + 1]);

#endif
