/* SPDX-License-Identifier: MIT */
/* The frame codec: one protobuf Frame per WebSocket message, decoded with
 * size limits. Used by parleyd and libparley alike; knows nothing of
 * sockets. The generated protobuf-c types come from proto/parley.proto. */
#ifndef PARLEY_PROTO_FRAME_H
#define PARLEY_PROTO_FRAME_H

#include "common/compiler.h"
#include "parley.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define FRAME_VERSION 1
#define FRAME_MAX_DEFAULT (1024 * 1024)

typedef Parley__V1__Frame PlFrame; /* short names for the generated types */

/* Decodes data[0..len). Returns 0 and sets *out (free with frame_free), or
 * PARLEY_ETOOBIG when len > max, or PARLEY_EMALFORMED when the bytes are
 * not a Frame (unknown fields are not an error: they are ignored). */
PL_NODISCARD int frame_decode(const uint8_t *data, size_t len, size_t max, PlFrame **out);
void frame_free(PlFrame *f);

struct arena;
/* The same, with every allocation from arena a: nothing to free, the frame
 * lives until arena_reset (the loop resets after each request). */
PL_NODISCARD int frame_decode_arena(const uint8_t *data, size_t len, size_t max, struct arena *a,
                                    PlFrame **out);

/* Serializes f into a new buffer of *len bytes, owned by the caller (free()).
 * Returns NULL only when out of memory. */
uint8_t *frame_encode(const PlFrame *f, size_t *len);

/* A reusable encoding buffer. */
struct frame_buf {
    uint8_t *data;
    size_t cap;
};
/* Encodes f into b (grown as needed); returns b->data and sets *len, or
 * NULL when out of memory. Valid until the next use of b. */
const uint8_t *frame_encode_buf(const PlFrame *f, struct frame_buf *b, size_t *len);
/* Frees b's storage if it grew past keep bytes (one big answer should not
 * pin its buffer); b stays usable. */
void frame_buf_release(struct frame_buf *b, size_t keep);

/* The request id of a Frame that carries a request, else 0. */
uint64_t frame_request_id(const PlFrame *f);

#endif
