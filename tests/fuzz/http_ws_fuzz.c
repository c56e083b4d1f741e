/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the bytes a client sends parleyd before TLS is
 * taken off: HTTP/1.1 requests (net/http.c), and after a successful upgrade
 * in the input, WebSocket frames (net/ws.c on wslay). No sockets: the
 * input is fed in pieces whose sizes come from the input's first byte. */
#include "net/http.h"
#include "net/ws.h"

#include "common/err.h"
#include "common/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    struct net_ws *ws;
    size_t messages;
    size_t out_bytes;
};

static void on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct sink *s = arg;
    s->messages++;
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
}

static const struct net_ws_handler handler = {.on_message = on_message, .on_output = on_output};

static void feed_ws(const uint8_t *data, size_t size, size_t step)
{
    struct net_ws ws;
    struct sink s = {.ws = &ws};
    net__ws_init(&ws, 4096, &handler, &s);
    while (size > 0) {
        size_t n = PL_MIN(size, step);
        net__ws_feed(&ws, data, n);
        data += n;
        size -= n;
        if (net__ws_is_closing(&ws))
            break;
    }
    net__ws_flush(&ws);
    (void)net__ws_close_code(&ws);
    (void)net__ws_queued(&ws);
    net__ws_deinit(&ws);
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
            feed_ws(data + off, size - off, step);
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
