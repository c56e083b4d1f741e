/* SPDX-License-Identifier: MIT */
/* Error codes inside parley. The one table lives in include/parley.h
 * (PARLEY_ERRNO_MAP), public because libparley callers and the wire share
 * it: functions return 0 or a negative PARLEY_E*, the wire carries the
 * positive number. */
#ifndef PARLEY_COMMON_ERR_H
#define PARLEY_COMMON_ERR_H

#include <parley.h> /* PARLEY_ERRNO_MAP and the PARLEY_E* values */

/* Text for a negative PARLEY_E* code (or 0); never NULL. */
const char *err_text(int code);
/* Symbolic name ("EINVAL") for a negative code; "UNKNOWN" otherwise. */
const char *err_name(int code);
/* The wire number for a negative code, and back; unknown wire numbers map
 * to PARLEY_EPROTO so that a newer server's code never reads as success. */
unsigned err_to_wire(int code);
int err_from_wire(unsigned wire);

#endif
