/* SPDX-License-Identifier: MIT */
/* Frame decoding and encoding on protobuf-c. */
#include "frame.h"
#include "common/arena.h"
#include "common/err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

/* protobuf-c accepts an over-long encoding of field number 0 and keeps it as
 * an unknown field that it then cannot re-encode; field 0 is invalid in
 * protobuf, so such input is malformed. Walks m and every sub-message. */
static bool has_field_zero(const ProtobufCMessage *m)
{
    if (!m)
        return false;
    for (size_t i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            ProtobufCMessage *const *items;
            memcpy(&n, base + fd->quantifier_offset, sizeof(n));
            memcpy(&items, base + fd->offset, sizeof(items));
            for (size_t k = 0; k < n; k++)
                if (has_field_zero(items[k]))
                    return true;
            continue;
        }
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;
            memcpy(&which, base + fd->quantifier_offset, sizeof(which));
            if (which != fd->id)
                continue;
        }
        const ProtobufCMessage *sub;
        memcpy(&sub, base + fd->offset, sizeof(sub));
        if (has_field_zero(sub))
            return true;
    }
    return false;
}

static int decode(const uint8_t *data, size_t len, size_t max, ProtobufCAllocator *alloc,
                  PlFrame **out)
{
    if (len > max)
        return PARLEY_ETOOBIG;
    PlFrame *f = parley__v1__frame__unpack(alloc, len, data);
    if (!f)
        return PARLEY_EMALFORMED;
    if (has_field_zero(&f->base)) {
        parley__v1__frame__free_unpacked(f, alloc);
        return PARLEY_EMALFORMED;
    }
    *out = f;
    return 0;
}

int frame_decode(const uint8_t *data, size_t len, size_t max, PlFrame **out)
{
    return decode(data, len, max, NULL, out);
}

static void *arena_pc_alloc(void *data, size_t size)
{
    return arena_alloc(data, size);
}

static void arena_pc_free(void *data, void *p)
{
    PL_UNUSED(data);
    PL_UNUSED(p); /* everything goes at arena_reset */
}

int frame_decode_arena(const uint8_t *data, size_t len, size_t max, struct arena *a,
                       PlFrame **out)
{
    ProtobufCAllocator alloc = {.alloc = arena_pc_alloc, .free = arena_pc_free, .allocator_data = a};
    return decode(data, len, max, &alloc, out);
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

const uint8_t *frame_encode_buf(const PlFrame *f, struct frame_buf *b, size_t *len)
{
    size_t n = parley__v1__frame__get_packed_size(f);
    if (n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < n)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return NULL;
        b->data = p;
        b->cap = cap;
    }
    *len = parley__v1__frame__pack(f, b->data);
    return b->data;
}

void frame_buf_release(struct frame_buf *b, size_t keep)
{
    if (b->cap > keep) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

uint64_t frame_request_id(const PlFrame *f)
{
    if (f->body_case == PARLEY__V1__FRAME__BODY_REQUEST && f->request)
        return f->request->id;
    return 0;
}
