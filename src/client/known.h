/* SPDX-License-Identifier: MIT */
/* known_servers: certificate pins for servers whose certificate the system
 * CAs do not vouch for, trusted on first use as ssh does. One line per
 * server, "HOST:PORT SHA256-HEX" (the SHA-256 of the certificate's DER).
 * File I/O only; wsconn decides when to consult it. */
#ifndef PARLEY_CLIENT_KNOWN_H
#define PARLEY_CLIENT_KNOWN_H

#include "common/compiler.h"

#include <stdint.h>

#define KNOWN_FP_LEN 32
#define KNOWN_FILE "known_servers" /* its name in the home directory */

/* Looks hostport up in the file at path. Returns 0 when its pin equals fp,
 * PARLEY_ENOTFOUND when the file or the entry is missing,
 * PARLEY_ECERT_CHANGED when the pin differs, PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int known_check(const char *path, const char *hostport, const uint8_t fp[KNOWN_FP_LEN]);

/* Sets the pin of hostport to fp, replacing any old line for it, by an
 * atomic rewrite of the file (created 0600). Lines it does not understand
 * are kept. Returns 0, PARLEY_EINVAL (hostport holds a space or newline),
 * PARLEY_EIO, PARLEY_ENOMEM. */
PL_NODISCARD int known_add(const char *path, const char *hostport, const uint8_t fp[KNOWN_FP_LEN]);

#endif
