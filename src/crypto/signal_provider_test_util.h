/* SPDX-License-Identifier: MIT */
/* Test-only: a libsignal-protocol-c context on a small OpenSSL crypto
 * provider, shared by the interop tests (the *_signal_test.c beside it) and
 * compiled into them alone, never into the product. */
#ifndef PARLEY_CRYPTO_SIGNAL_PROVIDER_TEST_UTIL_H
#define PARLEY_CRYPTO_SIGNAL_PROVIDER_TEST_UTIL_H

#include <stdint.h>

#include <signal_protocol.h>

/* When non-NULL, the provider's random source returns these bytes for each
 * request of up to 64 bytes (and fails larger ones), so that a test knows
 * libsignal's signature nonce. NULL: random bytes from OpenSSL. */
extern const uint8_t *sigtest_fixed_random;

/* A libsignal context with the provider installed; NULL on failure.
 * Release with signal_context_destroy. */
signal_context *sigtest_context_new(void);

/* The context of a test program's group, made by sigtest_setup (also
 * sodium_init) and destroyed by sigtest_teardown: cmocka group fixtures. */
extern signal_context *sigtest_ctx;
int sigtest_setup(void **state);
int sigtest_teardown(void **state);

#endif
