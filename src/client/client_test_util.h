/* SPDX-License-Identifier: MIT */
/* What libparley's unit test programs share: a fresh temporary directory
 * per test, with umask 0 so that the modes seen are the ones the code
 * asked for, removed afterwards; and writing raw bytes into a file. */
#ifndef PARLEY_CLIENT_TEST_UTIL_H
#define PARLEY_CLIENT_TEST_UTIL_H

#include <stddef.h>
#include <sys/types.h>

struct fixture {
    char dir[512];
    mode_t old_umask;
};

/* cmocka setup and teardown: *state is a struct fixture. */
int client_tmp_setup(void **state);
int client_tmp_teardown(void **state);

/* Writes len bytes of data as the whole file at path (asserts). */
void client_write_raw(const char *path, const void *data, size_t len);

#endif
