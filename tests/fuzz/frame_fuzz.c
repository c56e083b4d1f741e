/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the frame codec: any bytes a peer can send go through
 * frame_decode with the default 1 MiB limit; a decoded frame is walked field
 * by field (so the sanitizers see every pointer the server would read), then
 * re-encoded, decoded again and compared. Seeds: corpus/frame_fuzz/. */
#include "common/err.h"
#include "proto/frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Folds bytes into a sum the compiler cannot drop, so every read happens. */
static volatile uint64_t sink;

static void touch_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = n;
    for (size_t i = 0; i < n; i++)
        h = h * 31 + b[i];
    sink += h;
}

static void touch_str(const char *s)
{
    if (!s)
        abort(); /* protobuf-c gives "" for absent strings, never NULL */
    touch_bytes(s, strlen(s));
}

static void touch_bin(ProtobufCBinaryData b)
{
    if (b.len && !b.data)
        abort();
    touch_bytes(b.data, b.len);
}

static void touch_peer(const Parley__V1__Peer *p)
{
    if (!p)
        return;
    sink += p->user_id;
    touch_str(p->username);
}

static void touch_error(const Parley__V1__Error *e)
{
    if (!e)
        return;
    sink += e->code + e->retry_after_ms + (uint64_t)err_from_wire(e->code);
    touch_str(e->message);
    touch_str(err_name(err_from_wire(e->code)));
    for (size_t i = 0; i < e->n_devices; i++) {
        const Parley__V1__DeviceMismatch *m = e->devices[i];
        if (!m)
            abort(); /* repeated message elements are never NULL */
        sink += m->user_id;
        touch_bytes(m->missing, m->n_missing * sizeof(*m->missing));
        touch_bytes(m->stale, m->n_stale * sizeof(*m->stale));
    }
}

static void touch_envelope(const Parley__V1__SecretEnvelope *e)
{
    if (!e)
        abort(); /* repeated elements and set oneof members are never NULL */
    sink += e->id + e->message_id + e->from_user_id + e->from_device_id + e->to_user_id +
            e->type + (uint64_t)e->date;
    touch_str(e->from_username);
    touch_str(e->to_username);
    touch_bin(e->body);
}

static void touch_message(const Parley__V1__Message *m)
{
    if (!m)
        return;
    sink += m->id + m->from_user_id + m->to_user_id + (uint64_t)m->date + m->client_id +
            m->from_device_id + (uint64_t)m->expires;
    touch_str(m->from_username);
    touch_str(m->to_username);
    touch_bin(m->text);
}

static void touch_update(const Parley__V1__Update *u)
{
    if (!u)
        abort(); /* repeated message elements are never NULL */
    sink += u->pts;
    switch (u->kind_case) {
    case PARLEY__V1__UPDATE__KIND_NEW_MESSAGE:
        touch_message(u->new_message);
        break;
    case PARLEY__V1__UPDATE__KIND_MESSAGES_DELETED:
        touch_bytes(u->messages_deleted->ids,
                    u->messages_deleted->n_ids * sizeof(*u->messages_deleted->ids));
        break;
    case PARLEY__V1__UPDATE__KIND_CHAT_TTL:
        sink += u->chat_ttl->peer_user_id + u->chat_ttl->ttl_s + u->chat_ttl->by_user_id;
        touch_str(u->chat_ttl->peer_username);
        break;
    case PARLEY__V1__UPDATE__KIND__NOT_SET:
        break;
    default:
        abort();
    }
}

static void touch_signed_prekey(const Parley__V1__SignedPreKey *k)
{
    if (!k)
        return;
    sink += k->id;
    touch_bin(k->public_key);
    touch_bin(k->signature);
}

static void touch_prekey(const Parley__V1__PreKey *k)
{
    if (!k)
        return;
    sink += k->id;
    touch_bin(k->public_key);
}

static void touch_bundle(const Parley__V1__PreKeyBundle *b)
{
    if (!b)
        abort(); /* repeated message elements are never NULL */
    sink += b->device_id + b->registration_id;
    touch_bin(b->identity_key);
    touch_signed_prekey(b->signed_prekey);
    touch_prekey(b->prekey);
}

static void touch_request(const Parley__V1__Request *r)
{
    sink += r->id;
    switch (r->method_case) {
    case PARLEY__V1__REQUEST__METHOD_CHALLENGE:
        sink += r->challenge != NULL;
        break;
    case PARLEY__V1__REQUEST__METHOD_SIGNUP:
        touch_str(r->signup->username);
        touch_bin(r->signup->public_key);
        touch_bin(r->signup->nonce);
        touch_bin(r->signup->signature);
        break;
    case PARLEY__V1__REQUEST__METHOD_AUTH:
        sink += r->auth->device_id;
        touch_bin(r->auth->nonce);
        touch_bin(r->auth->signature);
        break;
    case PARLEY__V1__REQUEST__METHOD_SEND:
        touch_peer(r->send->to);
        sink += r->send->client_id;
        touch_bin(r->send->text);
        break;
    case PARLEY__V1__REQUEST__METHOD_SYNC:
        sink += r->sync->from_pts + r->sync->limit;
        break;
    case PARLEY__V1__REQUEST__METHOD_HISTORY:
        touch_peer(r->history->peer);
        sink += r->history->before_id + r->history->limit;
        break;
    case PARLEY__V1__REQUEST__METHOD_PING:
        sink += r->ping->payload;
        break;
    case PARLEY__V1__REQUEST__METHOD_RESOLVE:
        touch_str(r->resolve->username);
        break;
    case PARLEY__V1__REQUEST__METHOD_UPLOAD_KEYS:
        touch_bin(r->upload_keys->identity_key);
        sink += r->upload_keys->registration_id;
        touch_signed_prekey(r->upload_keys->signed_prekey);
        for (size_t i = 0; i < r->upload_keys->n_prekeys; i++) {
            if (!r->upload_keys->prekeys[i])
                abort();
            touch_prekey(r->upload_keys->prekeys[i]);
        }
        break;
    case PARLEY__V1__REQUEST__METHOD_GET_BUNDLE:
        touch_peer(r->get_bundle->peer);
        sink += r->get_bundle->device_id;
        break;
    case PARLEY__V1__REQUEST__METHOD_KEY_COUNT:
        sink += r->key_count != NULL;
        break;
    case PARLEY__V1__REQUEST__METHOD_SEND_SECRET:
        touch_peer(r->send_secret->to);
        sink += r->send_secret->client_id;
        for (size_t i = 0; i < r->send_secret->n_envelopes; i++) {
            const Parley__V1__Envelope *e = r->send_secret->envelopes[i];
            if (!e)
                abort();
            sink += e->device_id + e->type;
            touch_bin(e->body);
        }
        break;
    case PARLEY__V1__REQUEST__METHOD_FETCH_SECRET:
        sink += r->fetch_secret->limit;
        break;
    case PARLEY__V1__REQUEST__METHOD_SET_TTL:
        touch_peer(r->set_ttl->peer);
        sink += r->set_ttl->ttl_s;
        break;
    case PARLEY__V1__REQUEST__METHOD_ACK_SECRET:
        touch_bytes(r->ack_secret->ids, r->ack_secret->n_ids * sizeof(*r->ack_secret->ids));
        break;
    case PARLEY__V1__REQUEST__METHOD__NOT_SET:
        break;
    default:
        abort();
    }
}

static void touch_response(const Parley__V1__Response *r)
{
    sink += r->id;
    touch_error(r->error);
    switch (r->result_case) {
    case PARLEY__V1__RESPONSE__RESULT_CHALLENGE:
        touch_bin(r->challenge->nonce);
        break;
    case PARLEY__V1__RESPONSE__RESULT_SIGNUP:
        sink += r->signup->user_id + r->signup->device_id;
        touch_str(r->signup->username);
        break;
    case PARLEY__V1__RESPONSE__RESULT_AUTH:
        sink += r->auth->user_id + r->auth->pts;
        touch_str(r->auth->username);
        break;
    case PARLEY__V1__RESPONSE__RESULT_SEND:
        touch_message(r->send->message);
        sink += r->send->pts + (uint64_t)r->send->duplicate;
        break;
    case PARLEY__V1__RESPONSE__RESULT_SYNC:
        for (size_t i = 0; i < r->sync->n_updates; i++)
            touch_update(r->sync->updates[i]);
        sink += r->sync->pts + (uint64_t)r->sync->more;
        break;
    case PARLEY__V1__RESPONSE__RESULT_HISTORY:
        for (size_t i = 0; i < r->history->n_messages; i++) {
            if (!r->history->messages[i])
                abort();
            touch_message(r->history->messages[i]);
        }
        break;
    case PARLEY__V1__RESPONSE__RESULT_PING:
        sink += r->ping->payload;
        break;
    case PARLEY__V1__RESPONSE__RESULT_RESOLVE:
        sink += r->resolve->user_id;
        touch_str(r->resolve->username);
        break;
    case PARLEY__V1__RESPONSE__RESULT_UPLOAD_KEYS:
        sink += r->upload_keys->prekey_count;
        break;
    case PARLEY__V1__RESPONSE__RESULT_GET_BUNDLE:
        sink += r->get_bundle->user_id;
        for (size_t i = 0; i < r->get_bundle->n_bundles; i++)
            touch_bundle(r->get_bundle->bundles[i]);
        break;
    case PARLEY__V1__RESPONSE__RESULT_KEY_COUNT:
        sink += r->key_count->prekey_count + (uint64_t)r->key_count->has_keys;
        break;
    case PARLEY__V1__RESPONSE__RESULT_SEND_SECRET:
        sink += r->send_secret->id + (uint64_t)r->send_secret->date +
                (uint64_t)r->send_secret->duplicate;
        break;
    case PARLEY__V1__RESPONSE__RESULT_FETCH_SECRET:
        for (size_t i = 0; i < r->fetch_secret->n_envelopes; i++)
            touch_envelope(r->fetch_secret->envelopes[i]);
        sink += (uint64_t)r->fetch_secret->more;
        break;
    case PARLEY__V1__RESPONSE__RESULT_SET_TTL:
        sink += r->set_ttl->ttl_s + r->set_ttl->pts;
        break;
    case PARLEY__V1__RESPONSE__RESULT_ACK_SECRET:
        sink += r->ack_secret->deleted;
        break;
    case PARLEY__V1__RESPONSE__RESULT__NOT_SET:
        break;
    default:
        abort();
    }
}

static void touch_push(const Parley__V1__Push *p)
{
    switch (p->kind_case) {
    case PARLEY__V1__PUSH__KIND_UPDATE:
        touch_update(p->update);
        break;
    case PARLEY__V1__PUSH__KIND_ERROR:
        touch_error(p->error);
        break;
    case PARLEY__V1__PUSH__KIND_PREKEYS_LOW:
        sink += p->prekeys_low->prekey_count;
        break;
    case PARLEY__V1__PUSH__KIND_SECRET:
        touch_envelope(p->secret);
        break;
    case PARLEY__V1__PUSH__KIND__NOT_SET:
        break;
    default:
        abort();
    }
}

static void touch_frame(const PlFrame *f)
{
    sink += f->version + frame_request_id(f);
    switch (f->body_case) {
    case PARLEY__V1__FRAME__BODY_REQUEST:
        touch_request(f->request);
        break;
    case PARLEY__V1__FRAME__BODY_RESPONSE:
        touch_response(f->response);
        break;
    case PARLEY__V1__FRAME__BODY_PUSH:
        touch_push(f->push);
        break;
    case PARLEY__V1__FRAME__BODY__NOT_SET:
        break;
    default:
        abort();
    }
}

/* Counts the unknown fields with field number 0 anywhere in m. protobuf-c
 * 1.4 rejects the one-byte tag 0x00 but keeps an over-long encoding of it
 * (80 80 00) as an unknown field, which it then re-packs as the byte 0x00
 * that it rejects: such frames decode once but not after re-encoding. */
static size_t count_zero_tags(const ProtobufCMessage *m)
{
    if (!m)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < m->n_unknown_fields; i++)
        n += m->unknown_fields[i].tag == 0;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count;
            ProtobufCMessage *const *items;
            memcpy(&count, base + fd->quantifier_offset, sizeof(count));
            memcpy(&items, base + fd->offset, sizeof(items));
            for (size_t k = 0; k < count; k++)
                n += count_zero_tags(items[k]);
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
        n += count_zero_tags(sub);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PlFrame *f = NULL;
    int rc = frame_decode(data, size, FRAME_MAX_DEFAULT, &f);
    if (rc != 0) {
        if (rc != PARLEY_EMALFORMED && rc != PARLEY_ETOOBIG)
            abort();
        if (rc == PARLEY_ETOOBIG && size <= FRAME_MAX_DEFAULT)
            abort();
        return 0;
    }
    touch_frame(f);

    /* The first re-encoding may differ from the input (unknown fields and
     * default values dropped, strings cut at a NUL, repeated oneof members
     * collapsed); from then on, encode and decode must be stable. */
    size_t len1 = 0;
    uint8_t *buf1 = frame_encode(f, &len1);
    if (!buf1)
        abort();
    PlFrame *g = NULL;
    rc = frame_decode(buf1, len1, FRAME_MAX_DEFAULT > len1 ? FRAME_MAX_DEFAULT : len1, &g);
    if (count_zero_tags(&f->base) > 0) {
        /* The protobuf-c quirk above; anything else must round-trip. */
        if (rc == 0)
            frame_free(g);
        free(buf1);
        frame_free(f);
        return 0;
    }
    if (rc != 0)
        abort();
    touch_frame(g);
    size_t len2 = 0;
    uint8_t *buf2 = frame_encode(g, &len2);
    if (!buf2)
        abort();
    if (len2 != len1 || memcmp(buf1, buf2, len1) != 0)
        abort();
    if (g->body_case != f->body_case || frame_request_id(g) != frame_request_id(f))
        abort();

    free(buf2);
    frame_free(g);
    free(buf1);
    frame_free(f);
    return 0;
}
