/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the bytes a client sends parleyd before TLS is
 * taken off: HTTP/1.1 requests (net/http.c), and after a successful upgrade
 * in the input, WebSocket frames (net/ws.c on wslay). No sockets: the
 * input is fed in pieces whose sizes come from the input's first byte. */
#include "net/http.h"
#include "net/ws.h"

#include "common/err.h"
#include "common/mem.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    struct net_ws *ws;
    size_t messages;
    size_t out_bytes;
    uint64_t hash; /* of every message and output byte, in order */
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct sink *s = arg;
    s->messages++;
    s->hash = fnv(s->hash, msg, len) * 31 + len;
    /* Echo a few, as core would answer, to drive the send side too. */
    if (s->messages <= 4 && net__ws_send(s->ws, msg, PL_MIN(len, (size_t)256)) != 0)
        return;
    if (len > 0 && msg[0] == 0xff)
        net__ws_close(s->ws, 1000, "done");
}

static void on_output(void *arg, const uint8_t *data, size_t len)
{
    struct sink *s = arg;
    if (len > 0 && data == NULL)
        abort();
    s->out_bytes += len;
    s->hash = fnv(s->hash, data, len);
}

static const struct net_ws_handler handler = {.on_message = on_message, .on_output = on_output};

/* Feeds the stream in step-sized reads; with hibernate, drops wslay's
 * state whenever the stream allows it, which must change nothing. */
static struct sink feed_ws(const uint8_t *data, size_t size, size_t step, bool hibernate)
{
    struct net_ws ws;
    struct sink s = {.ws = &ws, .hash = 1469598103934665603ULL};
    net__ws_init(&ws, 4096, &handler, &s);
    while (size > 0) {
        size_t n = PL_MIN(size, step);
        net__ws_feed(&ws, data, n);
        data += n;
        size -= n;
        if (net__ws_is_closing(&ws))
            break;
        if (hibernate)
            (void)net__ws_hibernate(&ws);
    }
    net__ws_flush(&ws);
    s.hash = s.hash * 31 + net__ws_close_code(&ws);
    (void)net__ws_queued(&ws);
    net__ws_deinit(&ws);
    s.ws = NULL;
    return s;
}

/* The same stream with and without hibernation: same messages, same bytes
 * out, same close. */
static void feed_ws_both(const uint8_t *data, size_t size, size_t step)
{
    struct sink a = feed_ws(data, size, step, false);
    struct sink b = feed_ws(data, size, step, true);
    if (a.messages != b.messages || a.out_bytes != b.out_bytes || a.hash != b.hash)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 16) * 37 + 1; /* 1..556 bytes per read */
    data++;
    size--;
    struct net_req *r = xmalloc(sizeof(*r));
    net__req_init(r, 1024);
    size_t off = 0;
    while (off < size) {
        size_t used = 0;
        size_t n = PL_MIN(size - off, step);
        enum net_req_result res = net__req_feed(r, (const char *)data + off, n, &used);
        if (used > n)
            abort();
        off += used;
        if (res == NET_REQ_MORE)
            continue;
        if (res == NET_REQ_ERROR)
            break;
        int status = 0;
        enum net_req_kind kind = net__req_upgrade(r, &status);
        if (kind == NET_REQ_UPGRADE) {
            char accept[NET_WS_ACCEPT_LEN + 1];
            net__ws_accept_key(r->key, accept);
            if (strlen(accept) != NET_WS_ACCEPT_LEN)
                abort();
            feed_ws_both(data + off, size - off, step);
            break;
        }
        if (kind == NET_REQ_REJECT && status != 400 && status != 426)
            abort();
        if (!r->keep_alive)
            break;
        net__req_reset(r);
    }
    free(r);
    return 0;
}
