/* SPDX-License-Identifier: MIT */
/* Tests of WebSocket framing edge cases (RFC 6455) in ws.h: hand-built
 * client frames go in through net__ws_feed, and everything the server
 * writes is captured from on_output and parsed back into frames. The
 * sockets around a stream are net_test.c's. */
#include "net/ws.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/banned.h"

#define MAX_FRAME 1024           /* the stream's message limit in these tests */
#define OUT_CAP (128 * 1024)     /* room for a 65536-byte message and its header */
#define MAX_MSGS 8               /* messages one test may receive */
#define WIRE_CAP (4 * MAX_FRAME) /* client bytes one test builds at a time */

#define FIN 0x80u
#define RSV1 0x40u
#define RSV2 0x20u
#define RSV3 0x10u

/* --- the server side under test --------------------------------------- */

struct peer {
    struct net_ws ws;
    uint8_t *out; /* everything the server wrote, in order */
    size_t out_len;
    uint8_t msgs[MAX_MSGS * MAX_FRAME]; /* the messages delivered, back to back */
    size_t msg_len[MAX_MSGS];
    size_t msg_count;
    size_t msgs_used; /* bytes of msgs in use */
};

static void on_message(void *arg, const uint8_t *data, size_t len)
{
    struct peer *p = arg;
    assert_true(p->msg_count < MAX_MSGS);
    assert_true(len <= sizeof(p->msgs) - p->msgs_used);
    if (len > 0)
        memcpy(p->msgs + p->msgs_used, data, len);
    p->msg_len[p->msg_count++] = len;
    p->msgs_used += len;
}

static void on_output(void *arg, const uint8_t *data, size_t len)
{
    struct peer *p = arg;
    assert_true(len <= OUT_CAP - p->out_len);
    memcpy(p->out + p->out_len, data, len);
    p->out_len += len;
}

static const struct net_ws_handler handler = {.on_message = on_message, .on_output = on_output};

static int peer_setup(void **state)
{
    struct peer *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    p->out = malloc(OUT_CAP);
    if (!p->out) {
        free(p);
        return -1;
    }
    net__ws_init(&p->ws, MAX_FRAME, &handler, p);
    *state = p;
    return 0;
}

static int peer_teardown(void **state)
{
    struct peer *p = *state;
    net__ws_deinit(&p->ws);
    free(p->out);
    free(p);
    return 0;
}

/* Starts over with a fresh stream, for tests that try several inputs. */
static void peer_reset(struct peer *p)
{
    net__ws_deinit(&p->ws);
    p->out_len = 0;
    p->msg_count = 0;
    p->msgs_used = 0;
    net__ws_init(&p->ws, MAX_FRAME, &handler, p);
}

/* --- client frames ---------------------------------------------------- */

struct wire {
    uint8_t b[WIRE_CAP];
    size_t len;
};

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Appends a frame whose first byte is b0 and whose header declares
 * declared_len bytes, followed by the first n of them (masked if asked).
 * The length takes the fewest bytes that hold it, as RFC 6455 5.2 asks. */
static void wire_frame_ex(struct wire *w, uint8_t b0, bool masked, uint64_t declared_len,
                          const void *payload, size_t n)
{
    assert_true(w->len + 14 + n <= sizeof(w->b));
    uint8_t *q = w->b + w->len;
    *q++ = b0;
    uint8_t mask_bit = masked ? 0x80u : 0;
    if (declared_len < 126) {
        *q++ = mask_bit | (uint8_t)declared_len;
    } else if (declared_len <= 0xffff) {
        *q++ = mask_bit | 126;
        *q++ = (uint8_t)(declared_len >> 8);
        *q++ = (uint8_t)declared_len;
    } else {
        *q++ = mask_bit | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            *q++ = (uint8_t)(declared_len >> shift);
    }
    if (masked) {
        memcpy(q, mask_key, 4);
        q += 4;
    }
    const uint8_t *src = payload;
    for (size_t i = 0; i < n; i++)
        *q++ = masked ? (uint8_t)(src[i] ^ mask_key[i % 4]) : src[i];
    w->len = (size_t)(q - w->b);
}

/* Appends a complete masked frame, as a client must send it. */
static void wire_frame(struct wire *w, uint8_t b0, const void *payload, size_t n)
{
    wire_frame_ex(w, b0, true, n, payload, n);
}

/* Appends a masked close frame carrying code and reason. */
static void wire_close(struct wire *w, uint16_t code, const char *reason)
{
    uint8_t body[125];
    size_t rlen = strlen(reason);
    assert_true(rlen <= sizeof(body) - 2);
    body[0] = (uint8_t)(code >> 8);
    body[1] = (uint8_t)code;
    memcpy(body + 2, reason, rlen);
    wire_frame(w, FIN | WSLAY_CONNECTION_CLOSE, body, rlen + 2);
}

static void feed(struct peer *p, const struct wire *w)
{
    net__ws_feed(&p->ws, w->b, w->len);
}

/* --- server frames ---------------------------------------------------- */

struct frame {
    uint8_t opcode;
    const uint8_t *payload; /* points into peer.out */
    size_t len;
    size_t header_len;
};

/* Reads the frame at p->out[*off] and checks what RFC 6455 asks of every
 * frame a server sends: unfragmented (we never fragment), no reserved bits,
 * unmasked (5.1), and the length in the fewest bytes (5.2). */
static void next_frame(const struct peer *p, size_t *off, struct frame *f)
{
    const uint8_t *h = p->out + *off;
    size_t avail = p->out_len - *off;
    assert_true(avail >= 2);
    assert_int_equal(h[0] & 0xf0u, FIN);
    assert_int_equal(h[1] & 0x80u, 0);
    uint64_t len = h[1] & 0x7fu;
    size_t hl = 2;
    if (len == 126) {
        assert_true(avail >= 4);
        len = (uint64_t)h[2] << 8 | h[3];
        assert_true(len >= 126);
        hl = 4;
    } else if (len == 127) {
        assert_true(avail >= 10);
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        assert_true(len > 0xffff);
        assert_true(len < (1ull << 63));
        hl = 10;
    }
    assert_true(len <= avail - hl);
    f->opcode = h[0] & 0x0fu;
    f->payload = h + hl;
    f->len = (size_t)len;
    f->header_len = hl;
    *off += hl + (size_t)len;
}

/* Parses all output; returns the number of frames. */
static size_t out_frames(const struct peer *p, struct frame *f, size_t max)
{
    size_t off = 0, n = 0;
    while (off < p->out_len) {
        assert_true(n < max);
        next_frame(p, &off, &f[n++]);
    }
    return n;
}

static uint16_t close_code(const struct frame *f)
{
    assert_int_equal(f->opcode, WSLAY_CONNECTION_CLOSE);
    assert_true(f->len >= 2);
    return (uint16_t)(f->payload[0] << 8 | f->payload[1]);
}

/* The server has answered with exactly one close frame carrying code,
 * delivered nothing, and ignores whatever comes next. */
static void assert_closed_with(struct peer *p, uint16_t code)
{
    struct frame f[4];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(close_code(&f[0]), code);
    assert_int_equal(p->msg_count, 0);
    assert_int_equal(net__ws_close_code(&p->ws), code);
    assert_true(net__ws_is_closing(&p->ws));
    assert_true(net__ws_is_done(&p->ws));

    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "late", 4);
    wire_frame(&w, FIN | WSLAY_PING, "p", 1);
    size_t out_before = p->out_len;
    feed(p, &w);
    assert_int_equal(p->msg_count, 0);
    assert_int_equal(p->out_len, out_before);
    assert_int_equal(net__ws_send(&p->ws, (const uint8_t *)"x", 1), PARLEY_ECLOSED);
}

static void fill_pattern(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed + i * 7);
}

/* --- messages that go up ---------------------------------------------- */

static void test_masked_binary_message_is_delivered_whole(void **state)
{
    struct peer *p = *state;
    uint8_t data[300];
    fill_pattern(data, sizeof(data), 1);
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, data, sizeof(data));
    feed(p, &w);
    assert_int_equal(p->msg_count, 1);
    assert_int_equal(p->msg_len[0], sizeof(data));
    assert_memory_equal(p->msgs, data, sizeof(data));
    assert_int_equal(p->out_len, 0);
    assert_false(net__ws_is_closing(&p->ws));
}

static void test_message_split_byte_by_byte_is_delivered_once(void **state)
{
    struct peer *p = *state;
    uint8_t data[200]; /* a 16-bit extended length, so the header is split too */
    fill_pattern(data, sizeof(data), 2);
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, data, sizeof(data));
    for (size_t i = 0; i < w.len; i++) {
        assert_int_equal(p->msg_count, 0);
        net__ws_feed(&p->ws, w.b + i, 1);
    }
    assert_int_equal(p->msg_count, 1);
    assert_int_equal(p->msg_len[0], sizeof(data));
    assert_memory_equal(p->msgs, data, sizeof(data));
    assert_int_equal(p->out_len, 0);
}

static void test_two_messages_in_one_feed_are_both_delivered(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "first", 5);
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "second!", 7);
    feed(p, &w);
    assert_int_equal(p->msg_count, 2);
    assert_int_equal(p->msg_len[0], 5);
    assert_int_equal(p->msg_len[1], 7);
    assert_memory_equal(p->msgs, "firstsecond!", 12);
    assert_int_equal(p->out_len, 0);
}

static void test_empty_binary_message_is_delivered(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, NULL, 0);
    feed(p, &w);
    assert_int_equal(p->msg_count, 1);
    assert_int_equal(p->msg_len[0], 0);
}

static void test_fragments_are_reassembled_into_one_message(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, WSLAY_BINARY_FRAME, "abc", 3);
    wire_frame(&w, WSLAY_CONTINUATION_FRAME, NULL, 0);
    wire_frame(&w, WSLAY_CONTINUATION_FRAME, "defg", 4);
    wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "hi", 2);
    feed(p, &w);
    assert_int_equal(p->msg_count, 1);
    assert_int_equal(p->msg_len[0], 9);
    assert_memory_equal(p->msgs, "abcdefghi", 9);
    assert_int_equal(p->out_len, 0);
}

static void test_ping_between_fragments_is_answered_first(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, WSLAY_BINARY_FRAME, "frag1-", 6);
    wire_frame(&w, FIN | WSLAY_PING, "are you there", 13);
    feed(p, &w);

    /* The pong is out while the message is still incomplete. */
    assert_int_equal(p->msg_count, 0);
    struct frame f[4];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(f[0].opcode, WSLAY_PONG);
    assert_int_equal(f[0].len, 13);
    assert_memory_equal(f[0].payload, "are you there", 13);

    w.len = 0;
    wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "frag2", 5);
    feed(p, &w);
    assert_int_equal(p->msg_count, 1);
    assert_int_equal(p->msg_len[0], 11);
    assert_memory_equal(p->msgs, "frag1-frag2", 11);
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1); /* nothing more written */
    assert_false(net__ws_is_closing(&p->ws));
}

static void test_message_of_exactly_max_frame_is_delivered(void **state)
{
    struct peer *p = *state;
    static uint8_t data[MAX_FRAME];
    fill_pattern(data, sizeof(data), 3);
    struct wire w = {0};
    wire_frame(&w, WSLAY_BINARY_FRAME, data, 1000);
    wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, data + 1000, MAX_FRAME - 1000);
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, data, MAX_FRAME);
    feed(p, &w);
    assert_int_equal(p->msg_count, 2);
    assert_int_equal(p->msg_len[0], MAX_FRAME);
    assert_int_equal(p->msg_len[1], MAX_FRAME);
    assert_memory_equal(p->msgs, data, MAX_FRAME);
    assert_memory_equal(p->msgs + MAX_FRAME, data, MAX_FRAME);
    assert_int_equal(p->out_len, 0);
}

/* --- protocol errors: 1002 -------------------------------------------- */

static void test_unmasked_client_frame_closes_1002(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame_ex(&w, FIN | WSLAY_BINARY_FRAME, false, 5, "hello", 5);
    feed(p, &w);
    assert_closed_with(p, 1002);
}

static void test_reserved_bits_close_1002(void **state)
{
    struct peer *p = *state;
    const uint8_t rsv[] = {RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3};
    for (size_t i = 0; i < PL_ARRAY_LEN(rsv); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_frame(&w, FIN | rsv[i] | WSLAY_BINARY_FRAME, "x", 1);
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
    /* Also on a control frame in the middle of a message. */
    peer_reset(p);
    struct wire w = {0};
    wire_frame(&w, WSLAY_BINARY_FRAME, "x", 1);
    wire_frame(&w, FIN | RSV1 | WSLAY_PING, NULL, 0);
    feed(p, &w);
    assert_closed_with(p, 1002);
}

static void test_unknown_opcodes_close_1002(void **state)
{
    struct peer *p = *state;
    const uint8_t ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < PL_ARRAY_LEN(ops); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_frame(&w, FIN | ops[i], "x", 1);
        feed(p, &w);
        assert_closed_with(p, 1002);

        /* And between the fragments of a message. */
        peer_reset(p);
        w.len = 0;
        wire_frame(&w, WSLAY_BINARY_FRAME, "x", 1);
        wire_frame(&w, FIN | ops[i], "y", 1);
        wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "z", 1);
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
}

static void test_control_frame_over_125_bytes_closes_1002(void **state)
{
    struct peer *p = *state;
    const uint8_t ops[] = {WSLAY_PING, WSLAY_PONG, WSLAY_CONNECTION_CLOSE};
    uint8_t body[126];
    fill_pattern(body, sizeof(body), 4);
    body[0] = 0x03; /* a valid close code, 1000, should the body be read */
    body[1] = 0xe8;
    for (size_t i = 0; i < PL_ARRAY_LEN(ops); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_frame(&w, FIN | ops[i], body, sizeof(body));
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
}

static void test_fragmented_control_frame_closes_1002(void **state)
{
    struct peer *p = *state;
    const uint8_t ops[] = {WSLAY_PING, WSLAY_PONG, WSLAY_CONNECTION_CLOSE};
    for (size_t i = 0; i < PL_ARRAY_LEN(ops); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_frame(&w, ops[i], "\x03\xe8", 2); /* FIN clear */
        wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "ab", 2);
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
}

static void test_continuation_without_message_closes_1002(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "orphan", 6);
    feed(p, &w);
    assert_closed_with(p, 1002);

    /* Also right after a complete message. */
    peer_reset(p);
    w.len = 0;
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "done", 4);
    wire_frame(&w, WSLAY_CONTINUATION_FRAME, "more", 4);
    feed(p, &w);
    assert_int_equal(p->msg_count, 1);
    p->msg_count = 0;
    assert_closed_with(p, 1002);
}

static void test_data_frame_inside_fragmented_message_closes_1002(void **state)
{
    struct peer *p = *state;
    const uint8_t ops[] = {WSLAY_BINARY_FRAME, WSLAY_TEXT_FRAME};
    for (size_t i = 0; i < PL_ARRAY_LEN(ops); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_frame(&w, WSLAY_BINARY_FRAME, "part", 4);
        wire_frame(&w, FIN | ops[i], "new", 3);
        wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "end", 3);
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
}

static void test_non_minimal_or_64bit_overflowing_length_closes_1002(void **state)
{
    struct peer *p = *state;
    /* 5 bytes in a 16-bit length, 200 in a 64-bit one, and a 64-bit length
     * with its most significant bit set (RFC 6455 5.2). */
    static const uint8_t headers[][10] = {
        {FIN | WSLAY_BINARY_FRAME, 0x80 | 126, 0x00, 0x05},
        {FIN | WSLAY_BINARY_FRAME, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0x00, 0xc8},
        {FIN | WSLAY_BINARY_FRAME, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0x05},
    };
    static const size_t header_len[] = {4, 10, 10};
    for (size_t i = 0; i < PL_ARRAY_LEN(headers); i++) {
        peer_reset(p);
        struct wire w = {0};
        memcpy(w.b, headers[i], header_len[i]);
        memcpy(w.b + header_len[i], mask_key, 4);
        w.len = header_len[i] + 4 + 5;
        memset(w.b + header_len[i] + 4, 'x', 5);
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
}

/* --- limits: 1009 ----------------------------------------------------- */

static void test_frame_declaring_max_frame_plus_one_closes_1009(void **state)
{
    struct peer *p = *state;
    /* The header and one byte: wslay looks at a frame once its payload
     * starts, and refuses it then rather than when the payload is whole. */
    struct wire w = {0};
    wire_frame_ex(&w, FIN | WSLAY_BINARY_FRAME, true, MAX_FRAME + 1, "x", 1);
    feed(p, &w);
    assert_closed_with(p, 1009);
}

static void test_frame_declaring_2_pow_62_closes_1009_without_allocating(void **state)
{
    struct peer *p = *state;
    /* Buffering the declared size would fail (or abort under ASan) instead
     * of closing with 1009. */
    const uint64_t huge[] = {1ull << 62, (1ull << 63) - 1, (uint64_t)MAX_FRAME << 20};
    for (size_t i = 0; i < PL_ARRAY_LEN(huge); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_frame_ex(&w, FIN | WSLAY_BINARY_FRAME, true, huge[i], "abcdefgh", 8);
        feed(p, &w);
        assert_closed_with(p, 1009);
    }
    /* Also when it continues a fragmented message. */
    peer_reset(p);
    struct wire w = {0};
    wire_frame(&w, WSLAY_BINARY_FRAME, "abc", 3);
    wire_frame_ex(&w, FIN | WSLAY_CONTINUATION_FRAME, true, 1ull << 62, "abcdefgh", 8);
    feed(p, &w);
    assert_closed_with(p, 1009);
}

static void test_fragments_summing_over_max_frame_close_1009(void **state)
{
    struct peer *p = *state;
    static uint8_t data[MAX_FRAME / 2];
    fill_pattern(data, sizeof(data), 5);
    struct wire w = {0};
    wire_frame(&w, WSLAY_BINARY_FRAME, data, sizeof(data));
    wire_frame(&w, WSLAY_CONTINUATION_FRAME, data, sizeof(data)); /* exactly MAX_FRAME so far */
    wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "!", 1);
    feed(p, &w);
    assert_closed_with(p, 1009);
}

/* --- text: 1003 ------------------------------------------------------- */

static void test_text_message_closes_1003(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_TEXT_FRAME, "hello", 5);
    feed(p, &w);
    assert_closed_with(p, 1003);

    /* Refused at the first fragment, before the message is complete. */
    peer_reset(p);
    w.len = 0;
    wire_frame(&w, WSLAY_TEXT_FRAME, "hel", 3);
    feed(p, &w);
    assert_closed_with(p, 1003);
}

/* --- closing ---------------------------------------------------------- */

static void test_client_close_1000_is_echoed(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_close(&w, 1000, "bye");
    feed(p, &w);
    struct frame f[4];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(close_code(&f[0]), 1000);
    assert_int_equal(f[0].len, 5);
    assert_memory_equal(f[0].payload + 2, "bye", 3);
    assert_int_equal(p->msg_count, 0);
    assert_true(net__ws_is_closing(&p->ws));
    assert_true(net__ws_is_done(&p->ws));
    assert_int_equal(net__ws_close_code(&p->ws), 1000);
}

static void test_client_close_with_other_valid_codes_is_echoed(void **state)
{
    struct peer *p = *state;
    const uint16_t codes[] = {1001, 1003, 1008, 1011, 3000, 4999};
    for (size_t i = 0; i < PL_ARRAY_LEN(codes); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_close(&w, codes[i], "");
        feed(p, &w);
        struct frame f[4];
        assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
        assert_int_equal(close_code(&f[0]), codes[i]);
    }
    /* A close without a body is answered with a close (RFC 6455 5.5.1). */
    peer_reset(p);
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_CONNECTION_CLOSE, NULL, 0);
    feed(p, &w);
    struct frame f[4];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(f[0].opcode, WSLAY_CONNECTION_CLOSE);
    assert_true(net__ws_is_done(&p->ws));
}

static void test_client_close_with_invalid_code_closes_1002(void **state)
{
    struct peer *p = *state;
    /* Below 1000, reserved for no status / abnormal / TLS (RFC 6455 7.4.1),
     * unassigned in 1000-2999, and above 4999. */
    const uint16_t codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < PL_ARRAY_LEN(codes); i++) {
        peer_reset(p);
        struct wire w = {0};
        wire_close(&w, codes[i], "why");
        feed(p, &w);
        assert_closed_with(p, 1002);
    }
}

static void test_client_close_with_one_byte_body_closes_1002(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_CONNECTION_CLOSE, "\x03", 1);
    feed(p, &w);
    assert_closed_with(p, 1002);
}

static void test_bytes_after_client_close_are_ignored(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_close(&w, 1000, "");
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "after", 5);
    wire_frame(&w, FIN | WSLAY_PING, "p", 1);
    w.b[w.len++] = 0xff; /* garbage, not even a frame */
    feed(p, &w);
    /* The echo, then silence: no message, no pong, no second close. */
    assert_closed_with(p, 1000);
}

/* --- what the server sends -------------------------------------------- */

static void test_sent_messages_are_unmasked_with_minimal_length(void **state)
{
    struct peer *p = *state;
    const size_t sizes[] = {0, 125, 126, 65535, 65536};
    const size_t header[] = {2, 2, 4, 4, 10};
    uint8_t *data = malloc(65536);
    assert_non_null(data);
    fill_pattern(data, 65536, 6);
    for (size_t i = 0; i < PL_ARRAY_LEN(sizes); i++) {
        peer_reset(p);
        assert_int_equal(net__ws_send(&p->ws, data, sizes[i]), 0);
        assert_int_equal(net__ws_queued(&p->ws), sizes[i]);
        assert_int_equal(p->out_len, 0); /* nothing goes out before the flush */
        net__ws_flush(&p->ws);
        assert_int_equal(net__ws_queued(&p->ws), 0);
        struct frame f[2];
        assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
        assert_int_equal(f[0].opcode, WSLAY_BINARY_FRAME);
        assert_int_equal(f[0].header_len, header[i]);
        assert_int_equal(f[0].len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(f[0].payload, data, sizes[i]);
    }
    free(data);
}

static void test_close_reason_is_truncated_to_125_byte_payload(void **state)
{
    struct peer *p = *state;
    char reason[201];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    reason[122] = 'L'; /* the last byte that fits */
    reason[123] = 'X'; /* the first that does not */
    net__ws_close(&p->ws, 1001, reason);
    net__ws_close(&p->ws, 1000, "second"); /* the first code wins */
    assert_true(net__ws_is_closing(&p->ws));
    net__ws_flush(&p->ws);
    struct frame f[2];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(close_code(&f[0]), 1001);
    assert_int_equal(f[0].len, 125);
    assert_memory_equal(f[0].payload + 2, reason, 123);
    assert_int_equal(net__ws_close_code(&p->ws), 1001);
    assert_true(net__ws_is_done(&p->ws));
}

static void test_close_goes_before_queued_messages_and_drops_them(void **state)
{
    struct peer *p = *state;
    assert_int_equal(net__ws_send(&p->ws, (const uint8_t *)"queued", 6), 0);
    net__ws_close(&p->ws, 1008, "full");
    assert_int_equal(net__ws_send(&p->ws, (const uint8_t *)"late", 4), PARLEY_ECLOSED);
    net__ws_flush(&p->ws);
    struct frame f[2];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(close_code(&f[0]), 1008);
}

#define WS_TEST(fn) cmocka_unit_test_setup_teardown(fn, peer_setup, peer_teardown)

/* --- hibernation: the wslay state is dropped between messages ---------- */

/* Between whole messages the stream hibernates, and the next message (and
 * a ping, and a send) wakes it with nothing lost. */
static void test_hibernates_between_messages_and_wakes_on_input(void **state)
{
    struct peer *p = *state;
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "one", 3);
    feed(p, &w);
    assert_true(net__ws_hibernate(&p->ws));
    assert_null(p->ws.ctx);
    assert_true(net__ws_hibernate(&p->ws)); /* already */
    assert_false(net__ws_is_closing(&p->ws));
    assert_false(net__ws_is_done(&p->ws));
    assert_int_equal(net__ws_queued(&p->ws), 0);
    assert_int_equal(net__ws_close_code(&p->ws), 0);

    w.len = 0;
    wire_frame(&w, FIN | WSLAY_PING, "hi", 2);
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, "two", 3);
    feed(p, &w);
    assert_int_equal(p->msg_count, 2);
    assert_memory_equal(p->msgs, "onetwo", 6);
    struct frame f[4];
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 1);
    assert_int_equal(f[0].opcode, WSLAY_PONG);

    assert_true(net__ws_hibernate(&p->ws));
    assert_int_equal(net__ws_send(&p->ws, (const uint8_t *)"out", 3), 0);
    assert_non_null(p->ws.ctx);
    assert_false(net__ws_hibernate(&p->ws)); /* a message is queued */
    net__ws_flush(&p->ws);
    assert_int_equal(out_frames(p, f, PL_ARRAY_LEN(f)), 2);
    assert_int_equal(f[1].opcode, WSLAY_BINARY_FRAME);
    assert_int_equal(f[1].len, 3);
    assert_true(net__ws_hibernate(&p->ws));
}

/* Not inside a frame (header or payload split across reads) nor inside a
 * fragmented message: the state wslay holds would be lost. */
static void test_no_hibernation_mid_frame_or_mid_message(void **state)
{
    struct peer *p = *state;
    uint8_t data[300];
    fill_pattern(data, sizeof(data), 9);
    struct wire w = {0};
    wire_frame(&w, FIN | WSLAY_BINARY_FRAME, data, sizeof(data));
    net__ws_feed(&p->ws, w.b, 1); /* half a header */
    assert_false(net__ws_hibernate(&p->ws));
    net__ws_feed(&p->ws, w.b + 1, 9); /* header and a few payload bytes */
    assert_false(net__ws_hibernate(&p->ws));
    net__ws_feed(&p->ws, w.b + 10, w.len - 10);
    assert_int_equal(p->msg_count, 1);
    assert_memory_equal(p->msgs, data, sizeof(data));
    assert_true(net__ws_hibernate(&p->ws));

    w.len = 0;
    wire_frame(&w, WSLAY_BINARY_FRAME, "frag-", 5);
    feed(p, &w);
    assert_false(net__ws_hibernate(&p->ws));
    w.len = 0;
    wire_frame(&w, FIN | WSLAY_PING, NULL, 0); /* a control frame does not end it */
    feed(p, &w);
    assert_false(net__ws_hibernate(&p->ws));
    w.len = 0;
    wire_frame(&w, FIN | WSLAY_CONTINUATION_FRAME, "end", 3);
    feed(p, &w);
    assert_int_equal(p->msg_count, 2);
    assert_memory_equal(p->msgs + sizeof(data), "frag-end", 8);
    assert_true(net__ws_hibernate(&p->ws));
}

/* A closing stream keeps its state: the close must still go out. */
static void test_no_hibernation_once_closing(void **state)
{
    struct peer *p = *state;
    assert_true(net__ws_hibernate(&p->ws));
    net__ws_close(&p->ws, 1001, "going away"); /* wakes it */
    assert_false(net__ws_hibernate(&p->ws));
    net__ws_flush(&p->ws);
    assert_closed_with(p, 1001);
    assert_false(net__ws_hibernate(&p->ws));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WS_TEST(test_masked_binary_message_is_delivered_whole),
        WS_TEST(test_message_split_byte_by_byte_is_delivered_once),
        WS_TEST(test_two_messages_in_one_feed_are_both_delivered),
        WS_TEST(test_empty_binary_message_is_delivered),
        WS_TEST(test_fragments_are_reassembled_into_one_message),
        WS_TEST(test_ping_between_fragments_is_answered_first),
        WS_TEST(test_message_of_exactly_max_frame_is_delivered),
        WS_TEST(test_unmasked_client_frame_closes_1002),
        WS_TEST(test_reserved_bits_close_1002),
        WS_TEST(test_unknown_opcodes_close_1002),
        WS_TEST(test_control_frame_over_125_bytes_closes_1002),
        WS_TEST(test_fragmented_control_frame_closes_1002),
        WS_TEST(test_continuation_without_message_closes_1002),
        WS_TEST(test_data_frame_inside_fragmented_message_closes_1002),
        WS_TEST(test_non_minimal_or_64bit_overflowing_length_closes_1002),
        WS_TEST(test_frame_declaring_max_frame_plus_one_closes_1009),
        WS_TEST(test_frame_declaring_2_pow_62_closes_1009_without_allocating),
        WS_TEST(test_fragments_summing_over_max_frame_close_1009),
        WS_TEST(test_text_message_closes_1003),
        WS_TEST(test_client_close_1000_is_echoed),
        WS_TEST(test_client_close_with_other_valid_codes_is_echoed),
        WS_TEST(test_client_close_with_invalid_code_closes_1002),
        WS_TEST(test_client_close_with_one_byte_body_closes_1002),
        WS_TEST(test_bytes_after_client_close_are_ignored),
        WS_TEST(test_sent_messages_are_unmasked_with_minimal_length),
        WS_TEST(test_close_reason_is_truncated_to_125_byte_payload),
        WS_TEST(test_close_goes_before_queued_messages_and_drops_them),
        WS_TEST(test_hibernates_between_messages_and_wakes_on_input),
        WS_TEST(test_no_hibernation_mid_frame_or_mid_message),
        WS_TEST(test_no_hibernation_once_closing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
