/* SPDX-License-Identifier: MIT */
/* The router contract: fan-out of encoded push frames to every loop (and,
 * with a NATS backend, every node) holding a connection of an account.
 * Core subscribes a loop to an account while one of its connections is
 * authenticated as it, and publishes after a commit. The in-process backend
 * is router_local.c. */
#ifndef PARLEY_ROUTER_ROUTER_H
#define PARLEY_ROUTER_ROUTER_H

#include "common/compiler.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ROUTER_MAX_PORTS 64

struct router;
struct router_port;

/* Called on the port's loop for each frame published to an account this
 * port subscribes to. frame is valid only during the call. Connections of
 * exclude_device (0: none) must be skipped: that device already has it.
 * When only_device is not 0, the frame is for that device's connections
 * alone. */
typedef void router_deliver_cb(void *arg, uint64_t user_id, uint64_t exclude_device,
                               uint64_t only_device, const uint8_t *frame, size_t len);

PL_NODISCARD int router_new(struct router **out);
/* All ports must be closed first. NULL: no-op. */
void router_free(struct router *r);

/* Opens a port for loop (call on that loop's thread). At most
 * ROUTER_MAX_PORTS per router: PARLEY_EBUSY beyond. */
PL_NODISCARD int router_port_open(struct router *r, uv_loop_t *loop, router_deliver_cb *cb,
                                  void *arg, struct router_port **out);
/* Unsubscribes everything, drops undelivered frames and closes (async). */
void router_port_close(struct router_port *p);

/* Counts one more (or one fewer) connection of user_id on this port's loop.
 * Thread: the port's loop. */
void router_subscribe(struct router_port *p, uint64_t user_id);
void router_unsubscribe(struct router_port *p, uint64_t user_id);

/* Delivers a copy of frame to every port subscribed to user_id, this one
 * included (synchronously for this one, through its loop for the others).
 * Thread: the port's loop. */
void router_publish(struct router_port *p, uint64_t user_id, uint64_t exclude_device,
                    const uint8_t *frame, size_t len);

/* As router_publish, for the connections of one device (device_id, not 0)
 * of user_id only. */
void router_publish_device(struct router_port *p, uint64_t user_id, uint64_t device_id,
                           const uint8_t *frame, size_t len);

#endif
