/* SPDX-License-Identifier: MIT */
/* The TLS 1.3 record layer after the handshake: record framing, AEAD
 * protection with a per-record nonce (RFC 8446 section 5.3), inner
 * content types and padding, alerts and KeyUpdate (section 4.6.3). */
#include "net/tls13.h"

#include "common/err.h"
#include "common/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <string.h>

#include "common/banned.h"

#define TAG_LEN 16
#define REKEY_AFTER (1ull << 24) /* records per key; AES-GCM allows 2^24.5 */

/* Alert descriptions (RFC 8446 section 6). */
enum {
    ALERT_CLOSE_NOTIFY = 0,
    ALERT_UNEXPECTED_MESSAGE = 10,
    ALERT_BAD_RECORD_MAC = 20,
    ALERT_RECORD_OVERFLOW = 22,
    ALERT_ILLEGAL_PARAMETER = 47,
    ALERT_DECODE_ERROR = 50,
    ALERT_INTERNAL_ERROR = 80,
    ALERT_USER_CANCELED = 90
};

#define HS_KEY_UPDATE 24

static const struct suite {
    uint16_t id;
    const char *cipher; /* OpenSSL's name, for EVP_CIPHER_fetch */
    uint8_t key_len;
    uint8_t hash_len;
} suites[] = {
    {0x1301, "AES-128-GCM", 16, 32},
    {0x1302, "AES-256-GCM", 32, 48},
    {0x1303, "ChaCha20-Poly1305", 32, 32},
};
#define NSUITES (sizeof(suites) / sizeof(suites[0]))

/* --- cipher contexts: one per thread and suite ------------------------- */

static EVP_CIPHER *fetched[NSUITES];
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;
static bool have_key; /* pthread_key_create succeeded */

struct thread_ctx {
    EVP_CIPHER_CTX *c[NSUITES];
};

static void thread_ctx_free(void *p)
{
    struct thread_ctx *tc = p;
    for (size_t i = 0; i < NSUITES; i++)
        EVP_CIPHER_CTX_free(tc->c[i]);
    OPENSSL_free(tc);
}

static void fetch_all(void)
{
    for (size_t i = 0; i < NSUITES; i++)
        fetched[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
    have_key = pthread_key_create(&ctx_key, thread_ctx_free) == 0;
}

/* This thread's context for suite s, set up for the cipher, or NULL if
 * OpenSSL cannot provide it. It keeps the key schedule of the last record
 * it sealed or opened until it is keyed again or its thread exits. */
static EVP_CIPHER_CTX *cipher_ctx(size_t s)
{
    pthread_once(&fetch_once, fetch_all);
    if (!have_key || !fetched[s])
        return NULL;
    struct thread_ctx *tc = pthread_getspecific(ctx_key);
    if (!tc) {
        tc = OPENSSL_zalloc(sizeof(*tc));
        if (!tc || pthread_setspecific(ctx_key, tc) != 0) {
            OPENSSL_free(tc);
            return NULL;
        }
    }
    if (!tc->c[s]) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        if (!c || EVP_CipherInit_ex2(c, fetched[s], NULL, NULL, 1, NULL) != 1) {
            EVP_CIPHER_CTX_free(c);
            return NULL;
        }
        tc->c[s] = c;
    }
    return tc->c[s];
}

/* --- key schedule ------------------------------------------------------ */

int tls13_expand_label(size_t hash_len, const uint8_t *secret, const char *label, uint8_t *out,
                       size_t out_len)
{
    const EVP_MD *md = hash_len == 32 ? EVP_sha256() : hash_len == 48 ? EVP_sha384() : NULL;
    size_t label_len = strlen(label);
    if (!md || out_len == 0 || out_len > hash_len || label_len > 249)
        return PARLEY_EINVAL;
    /* HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label,
     * opaque context<0..255> (empty); then HKDF-Expand's counter 0x01. */
    uint8_t info[2 + 1 + 255 + 1 + 1];
    size_t n = 0;
    info[n++] = (uint8_t)(out_len >> 8);
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(6 + label_len);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = 0;
    info[n++] = 1;
    uint8_t t1[EVP_MAX_MD_SIZE];
    unsigned t1_len = 0;
    if (!HMAC(md, secret, (int)hash_len, info, n, t1, &t1_len) || t1_len != hash_len) {
        OPENSSL_cleanse(t1, sizeof(t1));
        return PARLEY_ETLS;
    }
    memcpy(out, t1, out_len);
    OPENSSL_cleanse(t1, sizeof(t1));
    return 0;
}

/* d's key and IV from secret (section 7.3), sequence back to 0; d is
 * changed only if every step succeeds, so a failure never leaves a new
 * sequence number beside an old key. */
static int set_dir(const struct suite *s, struct tls13_dir *d, const uint8_t *secret)
{
    struct tls13_dir n = {0};
    memcpy(n.secret, secret, s->hash_len);
    int rc = 0;
    if (tls13_expand_label(s->hash_len, n.secret, "key", n.key, s->key_len) != 0 ||
        tls13_expand_label(s->hash_len, n.secret, "iv", n.iv, sizeof(n.iv)) != 0)
        rc = PARLEY_ETLS;
    else
        *d = n;
    OPENSSL_cleanse(&n, sizeof(n));
    return rc;
}

/* The next generation of d's secret (section 7.2) and its keys. */
static int update_dir(const struct suite *s, struct tls13_dir *d)
{
    uint8_t next[TLS13_SECRET_MAX];
    int rc = tls13_expand_label(s->hash_len, d->secret, "traffic upd", next, s->hash_len);
    if (rc == 0)
        rc = set_dir(s, d, next);
    OPENSSL_cleanse(next, sizeof(next));
    return rc;
}

bool tls13_suite_supported(uint16_t id, size_t *secret_len)
{
    for (size_t i = 0; i < NSUITES; i++) {
        if (suites[i].id == id) {
            if (secret_len)
                *secret_len = suites[i].hash_len;
            return true;
        }
    }
    return false;
}

int tls13_init(struct tls13 *t, uint16_t suite_id, const uint8_t *rx_secret,
               const uint8_t *tx_secret, size_t secret_len, uint64_t tx_seq)
{
    memset(t, 0, sizeof(*t));
    size_t i = 0;
    while (i < NSUITES && suites[i].id != suite_id)
        i++;
    if (i == NSUITES || secret_len != suites[i].hash_len || tx_seq >= REKEY_AFTER)
        return PARLEY_EINVAL;
    t->suite = (uint8_t)i;
    if (set_dir(&suites[i], &t->rx, rx_secret) != 0 ||
        set_dir(&suites[i], &t->tx, tx_secret) != 0) {
        tls13_wipe(t);
        return PARLEY_ETLS;
    }
    t->tx.seq = tx_seq;
    return 0;
}

void tls13_wipe(struct tls13 *t)
{
    net__buf_free(&t->in);
    OPENSSL_cleanse(&t->rx, sizeof(t->rx));
    OPENSSL_cleanse(&t->tx, sizeof(t->tx));
}

/* --- records ----------------------------------------------------------- */

static void nonce_for(const struct tls13_dir *d, uint8_t nonce[12])
{
    memcpy(nonce, d->iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/* Encrypts one record of len content bytes (len <= TLS13_MAX_PLAIN) of
 * the given type onto out. */
static int seal_one(struct tls13 *t, uint8_t type, const uint8_t *data, size_t len,
                    struct net_buf *out)
{
    EVP_CIPHER_CTX *c = cipher_ctx(t->suite);
    if (!c)
        return PARLEY_ETLS;
    size_t body = len + 1 + TAG_LEN;
    uint8_t *p = net__buf_reserve(out, TLS13_HEADER + body);
    p[0] = TLS13_APPDATA; /* the outer type of every protected record */
    p[1] = 3;
    p[2] = 3;
    p[3] = (uint8_t)(body >> 8);
    p[4] = (uint8_t)body;
    uint8_t *q = p + TLS13_HEADER;
    if (len > 0)
        memcpy(q, data, len);
    q[len] = type;
    uint8_t nonce[12];
    nonce_for(&t->tx, nonce);
    int outl = 0, finl = 0;
    if (EVP_CipherInit_ex2(c, NULL, t->tx.key, nonce, 1, NULL) != 1 ||
        EVP_CipherUpdate(c, NULL, &outl, p, TLS13_HEADER) != 1 ||
        EVP_CipherUpdate(c, q, &outl, q, (int)(len + 1)) != 1 ||
        EVP_CipherFinal_ex(c, q + outl, &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, q + len + 1) != 1)
        return PARLEY_ETLS;
    out->len += TLS13_HEADER + body;
    t->tx.seq++;
    return 0;
}

/* Our KeyUpdate (update_not_requested) under the current key, then the
 * next key for what follows. On failure nothing more may be sealed: the
 * connection is marked failed (no alert). */
static int send_key_update(struct tls13 *t, struct net_buf *out)
{
    static const uint8_t msg[5] = {HS_KEY_UPDATE, 0, 0, 1, 0};
    t->reply_update = false;
    if (seal_one(t, TLS13_HANDSHAKE, msg, sizeof(msg), out) != 0 ||
        update_dir(&suites[t->suite], &t->tx) != 0) {
        t->failed = true;
        return PARLEY_ETLS;
    }
    return 0;
}

/* A fatal alert, sent if the keys still allow it; nothing more after. */
static enum tls13_result fail(struct tls13 *t, uint8_t desc, struct net_buf *out)
{
    if (!t->failed && !t->shut) {
        const uint8_t alert[2] = {2, desc};
        (void)seal_one(t, TLS13_ALERT, alert, sizeof(alert), out);
    }
    t->failed = true; /* also after our close_notify: nothing more is read */
    net__buf_free(&t->in);
    return TLS13_ERROR;
}

int tls13_seal(struct tls13 *t, uint8_t type, const uint8_t *data, size_t len, struct net_buf *out)
{
    if (t->failed || t->shut)
        return PARLEY_ETLS;
    if (t->reply_update && send_key_update(t, out) != 0)
        return PARLEY_ETLS;
    do {
        if (t->tx.seq >= REKEY_AFTER && send_key_update(t, out) != 0)
            return PARLEY_ETLS;
        size_t n = len < TLS13_MAX_PLAIN ? len : TLS13_MAX_PLAIN;
        if (seal_one(t, type, data, n, out) != 0) {
            t->failed = true;
            return PARLEY_ETLS;
        }
        data += n;
        len -= n;
    } while (len > 0);
    return 0;
}

int tls13_write(struct tls13 *t, const uint8_t *data, size_t len, struct net_buf *out)
{
    if (len == 0)
        return 0;
    return tls13_seal(t, TLS13_APPDATA, data, len, out);
}

void tls13_close_notify(struct tls13 *t, struct net_buf *out)
{
    if (t->failed || t->shut)
        return;
    const uint8_t alert[2] = {1, ALERT_CLOSE_NOTIFY};
    if (tls13_seal(t, TLS13_ALERT, alert, sizeof(alert), out) != 0)
        log_debug("net", "event=tls_close_notify_failed");
    t->shut = true; /* nothing after close_notify */
}

/* Decrypts one whole record (hdr: its 5 header bytes, body: its body)
 * into scratch and acts on it. Sets *stop when cb asked to stop. */
static enum tls13_result open_one(struct tls13 *t, const uint8_t *hdr, const uint8_t *body,
                                  size_t body_len, uint8_t *scratch, tls13_plain_cb *cb, void *arg,
                                  struct net_buf *out, bool *stop)
{
    EVP_CIPHER_CTX *c = cipher_ctx(t->suite);
    if (!c)
        return fail(t, ALERT_INTERNAL_ERROR, out);
    size_t clen = body_len - TAG_LEN;
    uint8_t nonce[12];
    nonce_for(&t->rx, nonce);
    int outl = 0, finl = 0;
    if (EVP_CipherInit_ex2(c, NULL, t->rx.key, nonce, 0, NULL) != 1 ||
        EVP_CipherUpdate(c, NULL, &outl, hdr, TLS13_HEADER) != 1 ||
        EVP_CipherUpdate(c, scratch, &outl, body, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, (void *)(body + clen)) != 1 ||
        EVP_CipherFinal_ex(c, scratch + outl, &finl) != 1)
        return fail(t, ALERT_BAD_RECORD_MAC, out);
    t->rx.seq++;
    if (t->rx.seq == 0)
        return fail(t, ALERT_INTERNAL_ERROR, out); /* 2^64 records: cannot happen */
    /* TLSInnerPlaintext: content, type, zero padding; at most 2^14 + 1
     * bytes in all (section 5.4). */
    if (clen > TLS13_MAX_PLAIN + 1)
        return fail(t, ALERT_RECORD_OVERFLOW, out);
    size_t n = clen;
    while (n > 0 && scratch[n - 1] == 0)
        n--;
    if (n == 0)
        return fail(t, ALERT_UNEXPECTED_MESSAGE, out);
    uint8_t type = scratch[--n];
    switch (type) {
    case TLS13_APPDATA:
        if (n > 0 && !cb(arg, scratch, n))
            *stop = true;
        return TLS13_OK;
    case TLS13_ALERT:
        if (n != 2)
            return fail(t, ALERT_DECODE_ERROR, out);
        if (scratch[1] == ALERT_CLOSE_NOTIFY) {
            t->closed = true;
            return TLS13_CLOSED;
        }
        if (scratch[1] == ALERT_USER_CANCELED)
            return TLS13_OK; /* a close_notify follows */
        t->failed = true;    /* the peer's fatal alert: no answer */
        net__buf_free(&t->in);
        return TLS13_ERROR;
    case TLS13_HANDSHAKE:
        /* After the handshake a client may send only KeyUpdate (no
         * post-handshake authentication is offered), and it must end its
         * record as the key changes after it (section 5.1). */
        if (n != 5 || scratch[0] != HS_KEY_UPDATE || scratch[1] != 0 || scratch[2] != 0 ||
            scratch[3] != 1)
            return fail(t, ALERT_UNEXPECTED_MESSAGE, out);
        if (scratch[4] > 1)
            return fail(t, ALERT_ILLEGAL_PARAMETER, out);
        if (update_dir(&suites[t->suite], &t->rx) != 0)
            return fail(t, ALERT_INTERNAL_ERROR, out);
        /* Our answer goes out once, at the end of this read or before
         * our next record, however many requests came meanwhile. */
        if (scratch[4] == 1 && !t->shut)
            t->reply_update = true;
        return TLS13_OK;
    default:
        return fail(t, ALERT_UNEXPECTED_MESSAGE, out);
    }
}

/* The body length of the record whose header is h, or 0 if the header is
 * not one a TLS 1.3 peer may send after the handshake. */
static size_t check_header(const uint8_t *h, uint8_t *alert)
{
    size_t body = ((size_t)h[3] << 8) | h[4];
    if (h[0] != TLS13_APPDATA || h[1] != 3 || h[2] != 3) {
        *alert = ALERT_UNEXPECTED_MESSAGE;
        return 0;
    }
    if (body > TLS13_MAX_CIPHER) {
        *alert = ALERT_RECORD_OVERFLOW;
        return 0;
    }
    if (body < 1 + TAG_LEN) {
        *alert = ALERT_DECODE_ERROR;
        return 0;
    }
    return body;
}

enum tls13_result tls13_read(struct tls13 *t, const uint8_t *data, size_t len, uint8_t *scratch,
                             tls13_plain_cb *cb, void *arg, struct net_buf *out)
{
    if (t->failed)
        return TLS13_ERROR;
    if (t->closed)
        return TLS13_CLOSED;
    bool stop = false;
    uint8_t alert = 0;
    while (len > 0 && !stop) {
        enum tls13_result r;
        if (t->in.len > 0 || len < TLS13_HEADER) {
            /* Gather a record across reads: the header first, then its body. */
            size_t want = TLS13_HEADER;
            if (t->in.len >= TLS13_HEADER)
                want += check_header(t->in.data, &alert);
            size_t take = want - t->in.len;
            if (take > len)
                take = len;
            net__buf_append(&t->in, data, take);
            data += take;
            len -= take;
            if (t->in.len < TLS13_HEADER)
                break;
            if (t->in.len == TLS13_HEADER) {
                size_t body = check_header(t->in.data, &alert);
                if (body == 0)
                    return fail(t, alert, out);
                continue; /* now gather the body */
            }
            if (t->in.len < want)
                break;
            r = open_one(t, t->in.data, t->in.data + TLS13_HEADER, t->in.len - TLS13_HEADER,
                         scratch, cb, arg, out, &stop);
            net__buf_free(&t->in);
        } else {
            size_t body = check_header(data, &alert);
            if (body == 0)
                return fail(t, alert, out);
            if (len < TLS13_HEADER + body) {
                net__buf_append(&t->in, data, len); /* the rest comes later */
                break;
            }
            r = open_one(t, data, data + TLS13_HEADER, body, scratch, cb, arg, out, &stop);
            data += TLS13_HEADER + body;
            len -= TLS13_HEADER + body;
        }
        if (r != TLS13_OK)
            return r;
    }
    if (t->reply_update && !t->shut && send_key_update(t, out) != 0)
        return TLS13_ERROR;
    return TLS13_OK;
}
