/* SPDX-License-Identifier: MIT */
/* Frame decoding and encoding on protobuf-c. */
#include "frame.h"
#include "common/err.h"

#include <stdlib.h>

#include "common/banned.h"

int frame_decode(const uint8_t *data, size_t len, size_t max, PlFrame **out)
{
    if (len > max)
        return PARLEY_ETOOBIG;
    PlFrame *f = parley__v1__frame__unpack(NULL, len, data);
    if (!f)
        return PARLEY_EMALFORMED;
    *out = f;
    return 0;
}

void frame_free(PlFrame *f)
{
    if (f)
        parley__v1__frame__free_unpacked(f, NULL);
}

uint8_t *frame_encode(const PlFrame *f, size_t *len)
{
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    *len = parley__v1__frame__pack(f, buf);
    return buf;
}

uint64_t frame_request_id(const PlFrame *f)
{
    if (f->body_case == PARLEY__V1__FRAME__BODY_REQUEST && f->request)
        return f->request->id;
    return 0;
}
