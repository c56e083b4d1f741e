/* SPDX-License-Identifier: MIT */
/* Included last in every .c file: poisons functions that are easy to misuse.
 * Use snprintf, memcpy with an explicit length, strtol/strtoull, and
 * randombytes_buf instead. */
#ifndef PARLEY_COMMON_BANNED_H
#define PARLEY_COMMON_BANNED_H

#pragma GCC poison strcpy strcat sprintf vsprintf gets atoi atol strtok rand srand

#endif
