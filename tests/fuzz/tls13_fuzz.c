/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the TLS 1.3 record layer (net/tls13.c) a connection
 * runs on after the handshake. No sockets: a server end and a mirrored
 * client end (the same fixed secrets, rx and tx swapped) talk through
 * buffers, so records authenticate and the fuzzer gets past the AEAD to
 * inner types, padding, alerts and KeyUpdate.
 *
 * Input: one byte of setup (bits 0-1: cipher suite 0x1301/0x1302/0x1303/0x1301,
 * bits 2-3: which ends start a few records short of the per-key limit,
 * bits 4-7: how few), then up to 64 operations, each an op byte (bits 0-2:
 * kind, bit 3: its flag) and its operands:
 *   0 app     client seals application data; flag: the server's callback
 *             stops after its first delivery (the connection then closes)
 *   1 seal    client tls13_seal with an inner type from the input
 *             (KeyUpdate, alerts, odd types, type 0 for padding)
 *   2 raw     raw bytes to the server; flag: replay the last sealed bytes
 *   3 flip    a sealed record with one byte changed
 *   4 inner   a record sealed here from an explicit inner plaintext
 *             (content, type, any amount of zero padding); flag: its
 *             header's first three bytes come from the input
 *   5 write   the server writes application data; flag: the client reads
 *   6 close   the server sends close_notify; flag: the client reads
 *   7 flush   the client reads what the server sent; flag: the client
 *             sends close_notify instead
 * Content is a big-endian u16 length and that many bytes, or with bit 15
 * set, a length and one fill byte (up to 20000 bytes). Bytes reach a
 * tls13_read in chunks sized by a chunk byte (0: all at once).
 *
 * Checks: what the server delivers and returns matches a model of RFC 8446
 * section 5 for every well-formed record; the two ends' keys agree after
 * each KeyUpdate; a changed or replayed record never delivers anything;
 * what the server writes reads back on the client end, which never has to
 * answer or fail unless the server sent it a fatal alert; records have
 * the sizes they should; ERROR and CLOSED stay. Seeds: corpus/tls13_fuzz/. */
#include "net/buf.h"
#include "net/tls13.h"

#include "common/compiler.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 64
#define MAX_CONTENT 20000
#define TAG 16
#define REKEY_AFTER (1ull << 24) /* tls13.c's records per key */
#define KEY_UPDATE_RECORD (TLS13_HEADER + 5 + 1 + TAG)
#define ALERT_RECORD (TLS13_HEADER + 2 + 1 + TAG)
#define MAX_INNER (TLS13_MAX_CIPHER - TAG + 8) /* a few past what a header may say */

enum op { OP_APP, OP_SEAL, OP_RAW, OP_FLIP, OP_INNER, OP_WRITE, OP_CLOSE, OP_FLUSH };
#define OP_FLAG 0x08

enum alert_sent { ALERT_UNKNOWN, ALERT_YES, ALERT_NO };

/* --- input ------------------------------------------------------------- */

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint16_t u16(struct input *in)
{
    uint16_t hi = u8(in);
    return (uint16_t)(hi << 8 | u8(in));
}

static void *xalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (!p)
        abort();
    return p;
}

/* Content as the header comment says; *len gets its length. */
static uint8_t *content(struct input *in, size_t *len)
{
    uint16_t w = u16(in);
    uint8_t *p;
    if (w & 0x8000) {
        *len = (size_t)(w & 0x7fff) % (MAX_CONTENT + 1);
        p = xalloc(*len);
        memset(p, u8(in), *len);
    } else {
        *len = PL_MIN(PL_MIN((size_t)w, (size_t)MAX_CONTENT), in->n);
        p = xalloc(*len);
        if (*len > 0)
            memcpy(p, in->p, *len);
        in->p += *len;
        in->n -= *len;
    }
    return p;
}

/* --- model of the server end's reading (RFC 8446 section 5) ------------ */

struct model {
    struct net_buf data; /* application data the server must deliver */
    enum tls13_result result;
    bool done;      /* a record ended the connection; later ones do not count */
    bool own_fail;  /* the server failed itself (and sends an alert unless shut) */
    bool ku;        /* the last record was a KeyUpdate: the client's key moves on */
    size_t answers; /* KeyUpdates with update_requested (answered once per read call) */
};

static void model_fail(struct model *m, bool own)
{
    m->result = TLS13_ERROR;
    m->own_fail = own;
    m->done = true;
}

/* One record whose header was hdr (3 bytes) and body length body_len,
 * holding inner (TLSInnerPlaintext) if it authenticates. */
static void model_record(struct model *m, const uint8_t hdr[3], size_t body_len,
                         const uint8_t *inner, size_t len)
{
    if (m->done)
        return;
    if (hdr[0] != TLS13_APPDATA || hdr[1] != 3 || hdr[2] != 3 || body_len > TLS13_MAX_CIPHER ||
        body_len < 1 + TAG || m->ku) {
        /* A bad header, or sealed under the key a KeyUpdate before it in
         * the same batch ended (the client has not moved on yet). */
        model_fail(m, true);
        return;
    }
    if (len > TLS13_MAX_PLAIN + 1) { /* content, type and padding: 2^14 + 1 at most */
        model_fail(m, true);
        return;
    }
    size_t n = len;
    while (n > 0 && inner[n - 1] == 0)
        n--;
    if (n == 0) {
        model_fail(m, true);
        return;
    }
    uint8_t type = inner[--n];
    if (n > TLS13_MAX_PLAIN) {
        model_fail(m, true);
        return;
    }
    switch (type) {
    case TLS13_APPDATA:
        net__buf_append(&m->data, inner, n);
        return;
    case TLS13_ALERT:
        if (n != 2)
            model_fail(m, true);
        else if (inner[1] == 0) {
            m->result = TLS13_CLOSED;
            m->done = true;
        } else if (inner[1] != 90)
            model_fail(m, false); /* the peer's fatal alert: not answered */
        return;
    case TLS13_HANDSHAKE:
        if (n != 5 || inner[0] != 24 || inner[1] != 0 || inner[2] != 0 || inner[3] != 1 ||
            inner[4] > 1) {
            model_fail(m, true);
            return;
        }
        m->ku = true;
        m->answers += inner[4];
        return;
    default:
        model_fail(m, true);
        return;
    }
}

/* The records tls13_seal makes of data (KeyUpdates it adds on its own are
 * invisible to the reader). */
static void model_seal(struct model *m, uint8_t type, const uint8_t *data, size_t len, uint8_t *tmp)
{
    static const uint8_t hdr[3] = {TLS13_APPDATA, 3, 3};
    do {
        size_t n = PL_MIN(len, (size_t)TLS13_MAX_PLAIN);
        if (n > 0)
            memcpy(tmp, data, n);
        tmp[n] = type;
        model_record(m, hdr, n + 1 + TAG, tmp, n + 1);
        data += n;
        len -= n;
    } while (len > 0);
}

/* The bytes tls13_seal appends for len bytes of content, moving *seq as
 * it does (a KeyUpdate of its own first whenever the key has had its
 * records). */
static size_t seal_len(uint64_t *seq, size_t len)
{
    size_t total = 0;
    do {
        if (*seq >= REKEY_AFTER) {
            total += KEY_UPDATE_RECORD;
            *seq = 0;
        }
        size_t n = PL_MIN(len, (size_t)TLS13_MAX_PLAIN);
        total += TLS13_HEADER + n + 1 + TAG;
        (*seq)++;
        len -= n;
    } while (len > 0);
    return total;
}

/* --- the two ends -------------------------------------------------------- */

/* What the server's callback is told to expect. */
struct sink {
    const uint8_t *want; /* when checking: the data the server must deliver */
    size_t want_len;
    size_t got;
    bool check;
    bool poisoned;   /* nothing may authenticate: any delivery is a bug */
    bool stop_first; /* stop after the first delivery, as a closing connection does */
    bool stopped;
    uint64_t hash;
};

struct run {
    struct tls13 srv, cli;
    size_t suite; /* index into suite_ids */
    size_t hash_len, key_len;
    uint8_t *scratch;       /* TLS13_SCRATCH bytes, shared by both ends as a thread's would be */
    uint8_t *tmp;           /* for the model */
    struct net_buf srv_out; /* server to client, not yet read by the client */
    struct net_buf cli_out; /* what the client end answers: must stay empty */
    struct net_buf s2c;     /* application data the server wrote, not yet read back */
    size_t s2c_got;
    struct net_buf last; /* the last records the client sent, for replay */
    struct sink sink;
    enum tls13_result srv_state, cli_state;
    enum alert_sent srv_alert;
    bool desync; /* the server's reading is no longer modelled */
};

static bool on_server_plain(void *arg, const uint8_t *data, size_t len)
{
    struct sink *s = arg;
    if (!data || len == 0 || len > TLS13_MAX_PLAIN || s->poisoned)
        abort();
    if (s->check) {
        if (len > s->want_len - s->got || memcmp(data, s->want + s->got, len) != 0)
            abort();
        s->got += len;
    }
    for (size_t i = 0; i < len; i++)
        s->hash = (s->hash ^ data[i]) * 1099511628211ULL;
    if (s->stop_first) {
        s->stopped = true;
        return false;
    }
    return true;
}

static bool on_client_plain(void *arg, const uint8_t *data, size_t len)
{
    struct run *r = arg;
    if (!data || len == 0 || len > TLS13_MAX_PLAIN || len > r->s2c.len - r->s2c_got ||
        memcmp(data, r->s2c.data + r->s2c_got, len) != 0)
        abort();
    r->s2c_got += len;
    return true;
}

/* Feeds len bytes to t in reads sized by chunk; stops at the first result
 * other than TLS13_OK, or when the sink stopped. */
static enum tls13_result feed(struct run *r, struct tls13 *t, const uint8_t *p, size_t len,
                              uint8_t chunk, tls13_plain_cb *cb, void *arg, struct net_buf *out)
{
    size_t step = chunk & 0x3f;
    step = step == 0 ? (size_t)-1 : (chunk & 0x40) ? step * 331 : step;
    if (len == 0)
        return tls13_read(t, NULL, 0, r->scratch, cb, arg, out);
    for (size_t i = 0; len > 0; i++) {
        size_t n = (chunk & 0x80) && (i & 1) ? 1 + i % 5 : step;
        n = PL_MIN(n, len);
        enum tls13_result res = tls13_read(t, p, n, r->scratch, cb, arg, out);
        if (res != TLS13_OK)
            return res;
        if (cb == on_server_plain && r->sink.stopped)
            return res;
        p += n;
        len -= n;
    }
    return TLS13_OK;
}

static bool same_dir(const struct tls13_dir *a, const struct tls13_dir *b)
{
    return memcmp(a->secret, b->secret, sizeof(a->secret)) == 0 &&
           memcmp(a->key, b->key, sizeof(a->key)) == 0 &&
           memcmp(a->iv, b->iv, sizeof(a->iv)) == 0 && a->seq == b->seq;
}

/* The client end's side of a KeyUpdate it sent (tls13_seal does not move
 * the key on by itself): RFC 8446 section 7.2, through the exposed label
 * expansion. */
static void next_key(struct run *r, struct tls13_dir *d)
{
    uint8_t next[TLS13_SECRET_MAX];
    if (tls13_expand_label(r->hash_len, d->secret, "traffic upd", next, r->hash_len) != 0)
        abort();
    memcpy(d->secret, next, r->hash_len);
    if (tls13_expand_label(r->hash_len, d->secret, "key", d->key, r->key_len) != 0 ||
        tls13_expand_label(r->hash_len, d->secret, "iv", d->iv, sizeof(d->iv)) != 0)
        abort();
    d->seq = 0;
}

/* Feeds wire to the server. With m, checks result, delivery and output
 * against the model; without, only what holds whatever the bytes were. */
static void to_server(struct run *r, const uint8_t *wire, size_t len, uint8_t chunk,
                      const struct model *m)
{
    struct sink *s = &r->sink;
    s->check = m != NULL;
    s->want = m ? m->data.data : NULL;
    s->want_len = m ? m->data.len : 0;
    s->got = 0;
    bool shut = r->srv.shut;
    size_t out_before = r->srv_out.len;
    enum tls13_result res = feed(r, &r->srv, wire, len, chunk, on_server_plain, s, &r->srv_out);
    size_t grew = r->srv_out.len - out_before;
    if (shut && grew != 0)
        abort(); /* nothing goes out after close_notify */
    /* An ERROR is fatal (failed: nothing more read or written), also once
     * our close_notify is out; a CLOSED is remembered. */
    if ((res == TLS13_ERROR) != r->srv.failed || (res == TLS13_CLOSED) != r->srv.closed)
        abort();
    if (res != TLS13_OK && r->srv.in.len != 0)
        abort(); /* a partial record kept after the end */
    if (s->poisoned && res == TLS13_CLOSED)
        abort();
    if (m && s->stopped) {
        if (res != TLS13_OK)
            abort();
    } else if (m) {
        if (res != m->result || s->got != m->data.len)
            abort();
        /* Requests are answered with one KeyUpdate at the end of each read
         * call that saw any (so at least one if the feed ended well, at
         * most one per request), then our alert if we failed. */
        size_t alert = !shut && res == TLS13_ERROR && m->own_fail ? ALERT_RECORD : 0;
        if (grew < alert || (grew - alert) % KEY_UPDATE_RECORD != 0)
            abort();
        size_t replies = (grew - alert) / KEY_UPDATE_RECORD;
        if (replies > (shut ? 0 : m->answers))
            abort();
        if (res == TLS13_OK && !shut && (replies > 0) != (m->answers > 0))
            abort();
        if (res == TLS13_OK && r->srv.reply_update)
            abort(); /* a read that ended well leaves no answer pending */
        if (res == TLS13_OK && r->srv.in.len != 0)
            abort();
    }
    if (res == TLS13_ERROR)
        r->srv_alert = shut ? ALERT_NO : !m ? ALERT_UNKNOWN : m->own_fail ? ALERT_YES : ALERT_NO;
    r->srv_state = res;
    if (s->stopped)
        r->desync = true;
}

/* The client end reads everything the server sent. */
static void to_client(struct run *r, uint8_t chunk)
{
    if (r->cli_state == TLS13_OK) {
        enum tls13_result res = feed(r, &r->cli, r->srv_out.data, r->srv_out.len, chunk,
                                     on_client_plain, r, &r->cli_out);
        if (r->cli_out.len != 0)
            abort(); /* the server never asks for an answer */
        enum tls13_result want = TLS13_OK;
        if (r->srv.shut)
            want = TLS13_CLOSED; /* its close_notify was in srv_out */
        else if (r->srv.failed && r->srv_alert == ALERT_YES)
            want = TLS13_ERROR;
        else if (r->srv.failed && r->srv_alert == ALERT_UNKNOWN && res == TLS13_ERROR)
            want = TLS13_ERROR;
        if (res != want || r->s2c_got != r->s2c.len)
            abort();
        if (res == TLS13_OK && !same_dir(&r->cli.rx, &r->srv.tx))
            abort();
        r->cli_state = res;
    }
    net__buf_free(&r->srv_out);
    net__buf_free(&r->s2c);
    r->s2c_got = 0;
}

/* Has the client end seal content, checks the bytes it made, and hands
 * them to the server; a flipped byte (flip != 0) at pos. */
static void client_seal(struct run *r, uint8_t type, const uint8_t *data, size_t len, uint8_t chunk,
                        size_t pos, uint8_t flip)
{
    net__buf_free(&r->last);
    if (r->cli.shut || r->cli.failed) {
        if (tls13_seal(&r->cli, type, data, len, &r->last) == 0 || r->last.len != 0)
            abort();
        return;
    }
    uint64_t seq = r->cli.tx.seq;
    size_t want = seal_len(&seq, len);
    if (tls13_seal(&r->cli, type, data, len, &r->last) != 0 || r->last.len != want ||
        r->cli.tx.seq != seq)
        abort();
    struct model m = {0};
    model_seal(&m, type, data, len, r->tmp);
    if (flip) {
        r->last.data[pos % r->last.len] ^= flip;
        r->sink.poisoned = true;
        r->desync = true;
        to_server(r, r->last.data, r->last.len, chunk, NULL);
        if (r->srv_state == TLS13_OK && r->srv.in.len == 0)
            abort(); /* took the changed record, or lost it without failing */
    } else {
        bool modelled = !r->desync;
        to_server(r, r->last.data, r->last.len, chunk, modelled ? &m : NULL);
        if (m.ku && !m.done)
            next_key(r, &r->cli.tx);
        if (modelled && r->srv_state == TLS13_OK && !r->sink.stopped &&
            !same_dir(&r->srv.rx, &r->cli.tx))
            abort();
    }
    net__buf_free(&m.data);
}

/* One record sealed here with the client end's key: header (3 bytes),
 * then inner as TLSInnerPlaintext, whatever it holds. */
static void client_inner(struct run *r, const uint8_t hdr[3], const uint8_t *inner, size_t len,
                         uint8_t chunk)
{
    static const EVP_CIPHER *(*const ciphers[])(void) = {EVP_aes_128_gcm, EVP_aes_256_gcm,
                                                         EVP_chacha20_poly1305};
    net__buf_free(&r->last);
    size_t body = len + TAG;
    uint8_t *p = net__buf_reserve(&r->last, TLS13_HEADER + body);
    memcpy(p, hdr, 3);
    p[3] = (uint8_t)(body >> 8);
    p[4] = (uint8_t)body;
    uint8_t nonce[12];
    memcpy(nonce, r->cli.tx.iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (uint8_t)(r->cli.tx.seq >> (8 * i));
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, finl = 0;
    if (!c || EVP_EncryptInit_ex(c, ciphers[r->suite](), NULL, r->cli.tx.key, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &outl, p, TLS13_HEADER) != 1 ||
        EVP_EncryptUpdate(c, p + TLS13_HEADER, &outl, inner, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, p + TLS13_HEADER + outl, &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG, p + TLS13_HEADER + len) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    r->last.len = TLS13_HEADER + body;
    r->cli.tx.seq++;
    struct model m = {0};
    model_record(&m, hdr, body, inner, len);
    bool modelled = !r->desync;
    to_server(r, r->last.data, r->last.len, chunk, modelled ? &m : NULL);
    if (m.ku && !m.done)
        next_key(r, &r->cli.tx);
    if (modelled && r->srv_state == TLS13_OK && !same_dir(&r->srv.rx, &r->cli.tx))
        abort();
    net__buf_free(&m.data);
}

/* The server writes len bytes; the record sizes and sequence numbers must
 * be what tls13_seal promises. */
static void server_write(struct run *r, const uint8_t *data, size_t len)
{
    size_t before = r->srv_out.len;
    uint64_t seq = r->srv.tx.seq;
    size_t want = 0;
    if (r->srv.reply_update) { /* an answer still owed goes first */
        want = KEY_UPDATE_RECORD;
        seq = 0;
    }
    want += seal_len(&seq, len);
    int rc = tls13_write(&r->srv, data, len, &r->srv_out);
    if (len == 0) {
        if (rc != 0 || r->srv_out.len != before)
            abort();
        return;
    }
    if (r->srv.failed || r->srv.shut) {
        if (rc == 0 || r->srv_out.len != before)
            abort();
        return;
    }
    if (rc != 0 || r->srv_out.len - before != want || r->srv.tx.seq != seq)
        abort();
    net__buf_append(&r->s2c, data, len);
}

static void server_close(struct run *r)
{
    size_t before = r->srv_out.len;
    bool quiet = r->srv.failed || r->srv.shut;
    uint64_t seq = r->srv.tx.seq;
    size_t want = 0;
    if (!quiet && r->srv.reply_update) { /* an answer still owed goes first */
        want = KEY_UPDATE_RECORD;
        seq = 0;
    }
    if (!quiet)
        want += seal_len(&seq, 2);
    tls13_close_notify(&r->srv, &r->srv_out);
    if (r->srv_out.len - before != want || (!quiet && !r->srv.shut))
        abort();
}

static void run_ops(struct run *r, struct input *in)
{
    for (int i = 0; i < MAX_OPS && in->n > 0 && r->srv_state == TLS13_OK && !r->sink.stopped; i++) {
        uint8_t op = u8(in);
        bool flag = op & OP_FLAG;
        size_t len = 0;
        uint8_t *data = NULL;
        switch ((enum op)(op & 7)) {
        case OP_APP:
        case OP_SEAL: {
            uint8_t type = (op & 7) == OP_APP ? TLS13_APPDATA : u8(in);
            data = content(in, &len);
            r->sink.stop_first = (op & 7) == OP_APP && flag;
            client_seal(r, type, data, len, u8(in), 0, 0);
            r->sink.stop_first = false;
            break;
        }
        case OP_FLIP: {
            uint8_t type = u8(in);
            data = content(in, &len);
            len = PL_MIN(len, (size_t)TLS13_MAX_PLAIN); /* one record (and a KeyUpdate, maybe) */
            size_t pos = u16(in);
            uint8_t x = u8(in);
            client_seal(r, type, data, len, u8(in), pos, x ? x : 0x80);
            break;
        }
        case OP_RAW: {
            struct tls13_dir rx = r->srv.rx;
            bool replay = flag && r->last.len > 0;
            if (flag) {
                len = r->last.len;
                data = xalloc(len);
                if (len > 0)
                    memcpy(data, r->last.data, len);
            } else
                data = content(in, &len);
            to_server(r, data, len, u8(in), NULL);
            if (replay && !r->desync && r->srv_state != TLS13_ERROR)
                abort(); /* an old record went through again */
            if (r->srv_state == TLS13_OK && (r->srv.in.len > 0 || !same_dir(&rx, &r->srv.rx)))
                r->desync = true;
            break;
        }
        case OP_INNER: {
            uint8_t hdr[3] = {TLS13_APPDATA, 3, 3};
            if (flag) {
                hdr[0] = u8(in);
                hdr[1] = u8(in);
                hdr[2] = u8(in);
            }
            data = content(in, &len);
            uint8_t type = u8(in);
            size_t pad = u16(in) % (MAX_INNER + 1);
            size_t n = PL_MIN(len, (size_t)MAX_INNER - 1);
            size_t total = PL_MIN(n + 1 + pad, (size_t)MAX_INNER);
            uint8_t *inner = xalloc(total);
            memset(inner, 0, total);
            memcpy(inner, data, n);
            inner[n] = type;
            if (!r->cli.shut && !r->cli.failed)
                client_inner(r, hdr, inner, total, u8(in));
            free(inner);
            break;
        }
        case OP_WRITE:
            data = content(in, &len);
            server_write(r, data, len);
            if (flag)
                to_client(r, u8(in));
            break;
        case OP_CLOSE:
            server_close(r);
            if (flag)
                to_client(r, u8(in));
            break;
        case OP_FLUSH: {
            if (!flag) {
                to_client(r, u8(in));
                break;
            }
            net__buf_free(&r->last);
            bool quiet = r->cli.shut || r->cli.failed;
            uint64_t seq = r->cli.tx.seq;
            size_t want = quiet ? 0 : seal_len(&seq, 2);
            tls13_close_notify(&r->cli, &r->last);
            if (r->last.len != want || (!quiet && !r->cli.shut))
                abort();
            if (!quiet) {
                static const uint8_t close_notify[2] = {1, 0};
                struct model m = {0};
                model_seal(&m, TLS13_ALERT, close_notify, 2, r->tmp);
                to_server(r, r->last.data, r->last.len, u8(in), r->desync ? NULL : &m);
                net__buf_free(&m.data);
            }
            break;
        }
        }
        free(data);
    }
}

/* After the operations: ERROR and CLOSED must stay; the server says its
 * last and closes; the client end reads it all. */
static void finish(struct run *r, struct input *in)
{
    static const uint8_t junk[TLS13_HEADER + 1 + TAG] = {TLS13_APPDATA, 3, 3, 0, 1 + TAG};
    if (r->srv_state != TLS13_OK) {
        size_t before = r->srv_out.len;
        r->sink.poisoned = true;
        if (tls13_read(&r->srv, junk, sizeof(junk), r->scratch, on_server_plain, &r->sink,
                       &r->srv_out) != r->srv_state ||
            tls13_read(&r->srv, NULL, 0, r->scratch, on_server_plain, &r->sink, &r->srv_out) !=
                r->srv_state ||
            r->srv_out.len != before)
            abort();
    }
    static const uint8_t bye[] = "bye";
    server_write(r, bye, sizeof(bye) - 1);
    server_close(r);
    to_client(r, u8(in));
    if (r->cli_state != TLS13_OK && (tls13_read(&r->cli, junk, sizeof(junk), r->scratch,
                                                on_client_plain, r, &r->cli_out) != r->cli_state ||
                                     r->cli_out.len != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t suite_ids[3] = {0x1301, 0x1302, 0x1303};
    static const uint8_t key_lens[3] = {16, 32, 32};
    if (size < 1)
        return 0;
    struct input in = {data, size};
    uint8_t cfg = u8(&in);
    size_t suite = (size_t)(cfg & 3) % 3;
    uint64_t near = REKEY_AFTER - 1 - (cfg >> 4);

    struct run *r = xalloc(sizeof(*r));
    memset(r, 0, sizeof(*r));
    if (!tls13_suite_supported(suite_ids[suite], &r->hash_len))
        abort();
    r->suite = suite;
    r->key_len = key_lens[suite];
    uint8_t c2s[TLS13_SECRET_MAX], s2c[TLS13_SECRET_MAX];
    for (size_t i = 0; i < sizeof(c2s); i++) {
        c2s[i] = (uint8_t)(0x11 * i + 1);
        s2c[i] = (uint8_t)(0x5a ^ (7 * i));
    }
    uint64_t srv_seq = cfg & 0x04 ? near : 0, cli_seq = cfg & 0x08 ? near : 0;
    if (tls13_init(&r->srv, suite_ids[suite], c2s, s2c, r->hash_len, srv_seq) != 0 ||
        tls13_init(&r->cli, suite_ids[suite], s2c, c2s, r->hash_len, cli_seq) != 0)
        abort();
    /* As after session tickets: each end's reading follows the other's writing. */
    r->srv.rx.seq = cli_seq;
    r->cli.rx.seq = srv_seq;
    r->scratch = xalloc(TLS13_SCRATCH);
    r->tmp = xalloc(TLS13_MAX_PLAIN + 1);

    run_ops(r, &in);
    finish(r, &in);

    tls13_wipe(&r->srv);
    tls13_wipe(&r->cli);
    net__buf_free(&r->srv_out);
    net__buf_free(&r->cli_out);
    net__buf_free(&r->s2c);
    net__buf_free(&r->last);
    free(r->scratch);
    free(r->tmp);
    free(r);
    return 0;
}
