/* SPDX-License-Identifier: MIT */
/* WebSocket streams on wslay's event API. wslay reassembles fragments,
 * answers pings and closes, and enforces max_frame (closing with 1009);
 * this file adds parley's policy: binary only (text closes with 1003), and
 * makes every protocol error close with 1002. */
#include "net/ws.h"

#include "common/err.h"
#include "common/log.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    PL_UNUSED(flags);
    struct net_ws *ws = user_data;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = PL_MIN(len, ws->in_len);
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    PL_UNUSED(ctx);
    PL_UNUSED(flags);
    struct net_ws *ws = user_data;
    ws->h->on_output(ws->arg, data, len);
    return (ssize_t)len;
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data)
{
    PL_UNUSED(ctx);
    /* Refuse text at its first frame rather than buffer a whole message. */
    if (arg->opcode == WSLAY_TEXT_FRAME)
        net__ws_close(user_data, WSLAY_CODE_UNSUPPORTED_DATA, "binary frames only");
    /* A close body is empty or starts with a 2-byte code (RFC 6455 5.5.1);
     * wslay would take a single byte as no code and echo an empty close. */
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1)
        net__ws_close(user_data, WSLAY_CODE_PROTOCOL_ERROR, NULL);
}

/* wslay's frame parser refuses a bad header (a control frame that is
 * fragmented or over 125 bytes, a length not in its shortest form or with
 * the top bit set) by queueing a close without a code, where RFC 6455 7.4.1
 * and docs/PROTOCOL.md say 1002. That close is never sent: this one is
 * written instead, which is safe between wslay calls since on_send takes
 * every byte, so wslay never leaves a frame half-written. */
static void fail_protocol(struct net_ws *ws)
{
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea}; /* FIN|close, 2 bytes, 1002 */
    if (ws->close_code == 0 && wslay_event_get_write_enabled(ws->ctx)) {
        ws->close_code = WSLAY_CODE_PROTOCOL_ERROR;
        ws->h->on_output(ws->arg, close_1002, sizeof(close_1002));
    }
    wslay_event_shutdown_read(ws->ctx);
    wslay_event_shutdown_write(ws->ctx);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user_data)
{
    PL_UNUSED(ctx);
    struct net_ws *ws = user_data;
    if (arg->opcode != WSLAY_BINARY_FRAME || net__ws_is_closing(ws))
        return;
    ws->h->on_message(ws->arg, arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = on_recv,
    .send_callback = on_send,
    .on_frame_recv_start_callback = on_frame_start,
    .on_msg_recv_callback = on_msg,
};

/* Makes wslay's state if the stream is hibernating. */
static void wake(struct net_ws *ws)
{
    if (ws->ctx)
        return;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
        log_error("net", "event=oom what=wslay");
        abort();
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_frame);
}

void net__ws_init(struct net_ws *ws, size_t max_frame, const struct net_ws_handler *h, void *arg)
{
    memset(ws, 0, sizeof(*ws));
    ws->h = h;
    ws->arg = arg;
    ws->max_frame = max_frame;
    wake(ws);
}

void net__ws_deinit(struct net_ws *ws)
{
    if (ws->ctx)
        wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
}

/* Follows frame boundaries in data[0..len): header bytes one by one,
 * payloads skipped whole. Only needs to be right for well-formed input;
 * anything else makes wslay close the stream, which never hibernates. */
static void track(struct net_ws_track *t, const uint8_t *data, size_t len)
{
    while (len > 0) {
        if (t->need == 0 || t->have < t->need) {
            t->hdr[t->have++] = *data++;
            len--;
            if (t->have == 2) {
                uint8_t l7 = t->hdr[1] & 0x7f;
                t->need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) +
                                    ((t->hdr[1] & 0x80) ? 4 : 0));
            }
            if (t->need == 0 || t->have < t->need)
                continue;
            uint8_t l7 = t->hdr[1] & 0x7f;
            uint64_t n = l7;
            if (l7 >= 126) {
                unsigned bytes = l7 == 126 ? 2 : 8;
                n = 0;
                for (unsigned i = 0; i < bytes; i++)
                    n = (n << 8) | t->hdr[2 + i];
            }
            t->left = n;
        } else {
            size_t k = (size_t)PL_MIN((uint64_t)len, t->left);
            t->left -= k;
            data += k;
            len -= k;
        }
        if (t->need != 0 && t->have == t->need && t->left == 0) {
            uint8_t opcode = t->hdr[0] & 0x0f;
            if (opcode < 0x8) /* data: continuation, text, binary */
                t->frag = !(t->hdr[0] & 0x80);
            t->have = t->need = 0;
        }
    }
}

bool net__ws_hibernate(struct net_ws *ws)
{
    if (!ws->ctx)
        return true;
    const struct net_ws_track *t = &ws->trk;
    if (ws->close_code != 0 || net__ws_is_closing(ws) || t->have != 0 || t->frag ||
        wslay_event_want_write(ws->ctx) || wslay_event_get_queued_msg_count(ws->ctx) != 0)
        return false;
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
    return true;
}

void net__ws_feed(struct net_ws *ws, const uint8_t *data, size_t len)
{
    wake(ws);
    track(&ws->trk, data, len);
    ws->in = data;
    ws->in_len = len;
    /* Some wslay versions stop reading while a control reply is queued;
     * sending in between lets them go on. */
    while (ws->in_len > 0 && wslay_event_get_read_enabled(ws->ctx)) {
        size_t before = ws->in_len;
        int rv = wslay_event_recv(ws->ctx);
        /* Our recv callback never fails, so this is a malformed header. */
        if (rv == WSLAY_ERR_CALLBACK_FAILURE) {
            fail_protocol(ws);
            break;
        }
        if (rv != 0)
            wslay_event_shutdown_read(ws->ctx);
        net__ws_flush(ws);
        if (rv != 0 || ws->in_len == before)
            break;
    }
    if (wslay_event_get_read_enabled(ws->ctx) == 0)
        net__ws_flush(ws);
    ws->in = NULL;
    ws->in_len = 0;
}

void net__ws_flush(struct net_ws *ws)
{
    if (!ws->ctx)
        return;
    if (wslay_event_send(ws->ctx) != 0)
        wslay_event_shutdown_write(ws->ctx);
}

int net__ws_send(struct net_ws *ws, const uint8_t *data, size_t len)
{
    if (net__ws_is_closing(ws))
        return PARLEY_ECLOSED;
    wake(ws);
    struct wslay_event_msg msg = {.opcode = WSLAY_BINARY_FRAME, .msg = data, .msg_length = len};
    int rv = wslay_event_queue_msg(ws->ctx, &msg);
    if (rv == WSLAY_ERR_NOMEM) {
        log_error("net", "event=oom what=wslay");
        abort();
    }
    return rv == 0 ? 0 : PARLEY_ECLOSED;
}

void net__ws_ping(struct net_ws *ws)
{
    wake(ws);
    struct wslay_event_msg msg = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
    int rv = wslay_event_queue_msg(ws->ctx, &msg);
    PL_UNUSED(rv); /* NO_MORE_MSG once closing: no ping needed then */
}

void net__ws_close(struct net_ws *ws, uint16_t code, const char *reason)
{
    if (ws->close_code != 0)
        return;
    wake(ws);
    ws->close_code = code;
    size_t rlen = reason ? PL_MIN(strlen(reason), (size_t)123) : 0;
    int rv = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen);
    PL_UNUSED(rv); /* NO_MORE_MSG: wslay already queued its own close */
    wslay_event_shutdown_read(ws->ctx);
}

size_t net__ws_queued(const struct net_ws *ws)
{
    return ws->ctx ? wslay_event_get_queued_msg_length(ws->ctx) : 0;
}

bool net__ws_is_closing(const struct net_ws *ws)
{
    if (!ws->ctx) /* hibernating: only an open stream hibernates */
        return ws->close_code != 0;
    return ws->close_code != 0 || !wslay_event_get_read_enabled(ws->ctx) ||
           !wslay_event_get_write_enabled(ws->ctx) || wslay_event_get_close_received(ws->ctx);
}

bool net__ws_is_done(const struct net_ws *ws)
{
    return ws->ctx && !wslay_event_get_write_enabled(ws->ctx);
}

uint16_t net__ws_close_code(const struct net_ws *ws)
{
    if (ws->close_code != 0)
        return ws->close_code;
    if (ws->ctx && wslay_event_get_close_sent(ws->ctx))
        return wslay_event_get_status_code_sent(ws->ctx);
    return 0;
}

void net__ws_accept_key(const char *key, char out[NET_WS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *mdc = EVP_MD_CTX_new();
    if (!mdc || EVP_DigestInit_ex(mdc, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(mdc, key, strlen(key)) != 1 ||
        EVP_DigestUpdate(mdc, ws_guid, sizeof(ws_guid) - 1) != 1 ||
        EVP_DigestFinal_ex(mdc, md, &md_len) != 1 || md_len != 20) {
        log_error("net", "event=sha1_failed");
        abort();
    }
    EVP_MD_CTX_free(mdc);
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    out[NET_WS_ACCEPT_LEN] = '\0';
}
