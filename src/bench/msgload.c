/* SPDX-License-Identifier: MIT */
/* Pairs of clients messaging each other, checked end to end. Each text is
 * "SENDER:SEQ:SENT_US:" padded with 'x' to the wanted size (a secret
 * envelope's body: the same head over random bytes); the partner parses it
 * on receipt, so latency is send to receipt on one clock, and a bitmap per
 * receiver of the sender's sequence numbers tells new from duplicate.
 * Whatever was sent, not refused, and never arrived is lost. */
#include "load.h"
#include "common/err.h"
#include "common/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define SETUP_CONCURRENCY 32
#define SETUP_ATTEMPTS 8
#define SETUP_LIMIT_S 120.0
#define TEXT_HEAD_MAX 64
#define KEYS_ATTEMPTS 8
#define ENVELOPE_TYPE_WHISPER 2 /* a SignalMessage: the session exists */
#define ACK_BATCH 64            /* ids per AckSecretRequest (the protocol allows 1000) */
#define KEY_BYTES 33            /* 0x05 || Curve25519 key */
#define SIGNATURE_BYTES 64
/* Request ids above the sends' (CLIENT_ID_FIRST_FREE + sequence number):
 * an ack's id carries how many envelope ids it holds, so its answer,
 * success or error, settles them. */
#define ID_KEYS UINT64_MAX
#define ID_ACK_BASE (UINT64_MAX - 2 * ACK_BATCH)

enum keys_state { KEYS_WAIT = 0, KEYS_SENT, KEYS_OK, KEYS_FAILED };

struct mclient {
    struct client cl;
    struct account acct;
    struct msgload *m;
    uint32_t idx;
    struct mclient *partner;
    uint64_t next_seq; /* sequence numbers sent so far */
    uint64_t inflight; /* sent, neither received by the partner nor refused */
    uint64_t *seen;    /* bit s: the partner's message s arrived */
    size_t seen_words;
    uint8_t *text;          /* a scratch text of m->size bytes */
    int64_t pause_until_us; /* after a refusal: no sends before this */
    /* Secret envelopes only. */
    enum keys_state keys;
    unsigned keys_attempts;
    int64_t keys_at_us;       /* KEYS_WAIT: send the upload at this time */
    uint64_t *acks;           /* ACK_BATCH envelope ids to ack at the end of the turn */
    unsigned n_acks;          /* entries of acks in use */
    bool ack_queued;          /* on m->ack_dirty */
    struct mclient *ack_next; /* next on m->ack_dirty */
    uint64_t acks_inflight;   /* ids in acks sent and not yet answered */
};

static bool seen_test_and_set(struct mclient *r, uint64_t seq)
{
    size_t w = (size_t)(seq / 64);
    if (w >= r->seen_words) {
        size_t words = PL_MAX(w + 1, r->seen_words * 2);
        r->seen = xrealloc(r->seen, words * sizeof(uint64_t));
        memset(r->seen + r->seen_words, 0, (words - r->seen_words) * sizeof(uint64_t));
        r->seen_words = words;
    }
    uint64_t bit = UINT64_C(1) << (seq % 64);
    bool was = r->seen[w] & bit;
    r->seen[w] |= bit;
    return was;
}

/* A fresh client_id: splitmix64 of a counter with a random start, so ids
 * look random and never repeat within a run, without a system call each
 * (randombytes_buf is one getrandom per message). */
static uint64_t next_client_id(struct msgload *m)
{
    uint64_t z;
    do {
        z = (m->client_id_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
    } while (z == 0);
    return z;
}

static int send_one(struct mclient *c)
{
    struct msgload *m = c->m;
    int64_t now = bench_now_us();
    uint64_t seq = c->next_seq;
    int head = snprintf((char *)c->text, TEXT_HEAD_MAX + 1, "%" PRIu32 ":%" PRIu64 ":%" PRId64 ":",
                        c->idx, seq, now);
    size_t len = PL_MAX((size_t)head, (size_t)m->size);
    /* A secret body keeps the random bytes msgload_keys_begin put there. */
    if ((size_t)head < len && !m->secret)
        memset(c->text + head, 'x', len - (size_t)head);

    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__SendSecretRequest ss = PARLEY__V1__SEND_SECRET_REQUEST__INIT;
    Parley__V1__Envelope env = PARLEY__V1__ENVELOPE__INIT;
    Parley__V1__Envelope *envs[1] = {&env};
    Parley__V1__Peer to = PARLEY__V1__PEER__INIT;
    to.user_id = c->partner->acct.user_id;
    req.id = CLIENT_ID_FIRST_FREE + seq;
    if (m->secret) {
        env.device_id = c->partner->acct.device_id;
        env.type = ENVELOPE_TYPE_WHISPER;
        env.body.data = c->text;
        env.body.len = len;
        ss.to = &to;
        ss.client_id = next_client_id(m);
        ss.n_envelopes = 1;
        ss.envelopes = envs;
        req.method_case = PARLEY__V1__REQUEST__METHOD_SEND_SECRET;
        req.send_secret = &ss;
    } else {
        sr.to = &to;
        sr.client_id = next_client_id(m);
        sr.text.data = c->text;
        sr.text.len = len;
        req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
        req.send = &sr;
    }
    int rc = client_request(&c->cl, &req);
    if (rc)
        return rc;
    c->next_seq++;
    c->inflight++;
    m->sent++;
    return 0;
}

static unsigned phase_of(const struct msgload *m, int64_t sent_us)
{
    unsigned p = 0;
    while (p + 1 < m->nphases && sent_us >= m->phase_start_us[p + 1])
        p++;
    return p;
}

/* The partner got a message (text or envelope body, from from_user):
 * account for it at the sender. */
static void on_message(struct mclient *r, uint64_t from_user, const ProtobufCBinaryData *text)
{
    struct msgload *m = r->m;
    char head[TEXT_HEAD_MAX + 1];
    size_t n = PL_MIN(text->len, (size_t)TEXT_HEAD_MAX);
    memcpy(head, text->data, n);
    head[n] = '\0';
    char *p = head, *end;
    unsigned long long idx = strtoull(p, &end, 10);
    if (*end != ':' || idx >= m->n || m->mc[idx].partner != r ||
        from_user != r->partner->acct.user_id) {
        m->unexpected++;
        return;
    }
    struct mclient *s = &m->mc[idx];
    p = end + 1;
    unsigned long long seq = strtoull(p, &end, 10);
    if (*end != ':' || seq >= s->next_seq) {
        m->unexpected++;
        return;
    }
    p = end + 1;
    long long sent_us = strtoll(p, &end, 10);
    if (*end != ':') {
        m->unexpected++;
        return;
    }
    if (seen_test_and_set(r, seq)) {
        m->duplicates++;
        return;
    }
    int64_t now = bench_now_us();
    uint64_t lat = now > sent_us ? (uint64_t)(now - sent_us) : 0;
    m->delivered++;
    if (m->sending)
        m->delivered_in_window++;
    hist_record(m->latency, lat);
    hist_record(m->phase_hist[phase_of(m, sent_us)], lat);
    if (s->inflight > 0)
        s->inflight--;
    if (m->sending && m->rate == 0 && now >= s->pause_until_us) {
        while (s->inflight < m->window && s->cl.state == CLIENT_READY) {
            if (send_one(s) != 0)
                break;
        }
    }
}

/* Secret envelopes: keys and acks */

/* Sends c's queued acks in one AckSecretRequest; on a connection that is
 * gone they are dropped (the server keeps the envelopes). */
static void flush_acks(struct mclient *c)
{
    struct msgload *m = c->m;
    unsigned n = c->n_acks;
    c->n_acks = 0;
    if (n == 0 || c->cl.state != CLIENT_READY)
        return;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__AckSecretRequest ar = PARLEY__V1__ACK_SECRET_REQUEST__INIT;
    ar.ids = c->acks;
    ar.n_ids = n;
    req.id = ID_ACK_BASE + n;
    req.method_case = PARLEY__V1__REQUEST__METHOD_ACK_SECRET;
    req.ack_secret = &ar;
    int rc = client_request(&c->cl, &req);
    if (rc) {
        m->ack_errors++;
        bench_count_code(m->by_code, rc);
        return;
    }
    m->acks += n;
    c->acks_inflight += n;
}

/* After the turn's reads: one ack request per client that received
 * envelopes, written with the turn's other output. */
static void on_ack_check(uv_check_t *h)
{
    struct msgload *m = PL_CONTAINER_OF(h, struct msgload, ack_check);
    while (m->ack_dirty) {
        struct mclient *c = m->ack_dirty;
        m->ack_dirty = c->ack_next;
        c->ack_next = NULL;
        c->ack_queued = false;
        flush_acks(c);
    }
    uv_check_stop(h);
}

static void queue_ack(struct mclient *c, uint64_t envelope_id)
{
    struct msgload *m = c->m;
    c->acks[c->n_acks++] = envelope_id;
    if (c->n_acks == ACK_BATCH) {
        flush_acks(c);
        return;
    }
    if (!c->ack_queued) {
        c->ack_queued = true;
        c->ack_next = m->ack_dirty;
        m->ack_dirty = c;
        uv_check_start(&m->ack_check, on_ack_check);
    }
}

/* Every envelope is acked, ours or not: the protocol wants even those that
 * cannot be read acked and dropped. */
static void on_secret(struct mclient *c, const Parley__V1__SecretEnvelope *e)
{
    if (e->from_device_id != c->partner->acct.device_id || e->type != ENVELOPE_TYPE_WHISPER)
        c->m->unexpected++;
    else
        on_message(c, e->from_user_id, &e->body);
    queue_ack(c, e->id);
}

static void send_keys(struct mclient *c)
{
    struct msgload *m = c->m;
    uint8_t keys[2 * KEY_BYTES + SIGNATURE_BYTES];
    randombytes_buf(keys, sizeof(keys));
    keys[0] = 0x05;
    keys[KEY_BYTES] = 0x05;
    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__UploadKeysRequest up = PARLEY__V1__UPLOAD_KEYS_REQUEST__INIT;
    Parley__V1__SignedPreKey spk = PARLEY__V1__SIGNED_PRE_KEY__INIT;
    up.identity_key.data = keys;
    up.identity_key.len = KEY_BYTES;
    up.registration_id = 1 + randombytes_uniform(16383);
    spk.id = 1;
    spk.public_key.data = keys + KEY_BYTES;
    spk.public_key.len = KEY_BYTES;
    spk.signature.data = keys + 2 * KEY_BYTES;
    spk.signature.len = SIGNATURE_BYTES;
    up.signed_prekey = &spk;
    req.id = ID_KEYS;
    req.method_case = PARLEY__V1__REQUEST__METHOD_UPLOAD_KEYS;
    req.upload_keys = &up;
    c->keys_attempts++;
    int rc = client_request(&c->cl, &req);
    if (rc) {
        bench_count_code(m->keys_by_code, rc);
        c->keys = KEYS_FAILED;
        m->keys_failed++;
        return;
    }
    c->keys = KEYS_SENT;
}

/* An upload's answer: done, or again after a refusal's retry_after. */
static void on_keys_answer(struct mclient *c, const Parley__V1__Response *r)
{
    struct msgload *m = c->m;
    if (c->keys != KEYS_SENT)
        return;
    if (!r->error) {
        c->keys = KEYS_OK;
        m->keys_ok++;
        return;
    }
    int err = err_from_wire(r->error->code);
    bench_count_code(m->keys_by_code, err);
    if ((err == PARLEY_ERATE_LIMITED || err == PARLEY_EBUSY) && c->keys_attempts < KEYS_ATTEMPTS) {
        c->keys = KEYS_WAIT;
        c->keys_at_us = bench_now_us() + (int64_t)PL_MAX(r->error->retry_after_ms, 1u) * 1000;
        return;
    }
    c->keys = KEYS_FAILED;
    m->keys_failed++;
}

void msgload_keys_begin(struct msgload *m)
{
    m->secret = true;
    uv_check_init(&m->b->loop, &m->ack_check);
    m->ack_check_live = true;
    for (size_t i = 0; i < m->n; i++) {
        struct mclient *c = &m->mc[i];
        /* The body's filler: random bytes, written once; each send puts
         * its head over the start. */
        randombytes_buf(c->text, PL_MAX((size_t)TEXT_HEAD_MAX + 1, (size_t)m->b->opt.size));
        c->acks = xcalloc(ACK_BATCH, sizeof(uint64_t));
        c->keys = KEYS_WAIT;
        c->keys_at_us = 0;
    }
    msgload_keys_tick(m);
}

void msgload_keys_tick(struct msgload *m)
{
    int64_t now = bench_now_us();
    for (size_t i = 0; i < m->n; i++) {
        struct mclient *c = &m->mc[i];
        if (c->keys != KEYS_WAIT && c->keys != KEYS_SENT)
            continue;
        if (c->cl.state != CLIENT_READY) {
            c->keys = KEYS_FAILED;
            m->keys_failed++;
        } else if (c->keys == KEYS_WAIT && now >= c->keys_at_us) {
            send_keys(c);
        }
    }
}

size_t msgload_keys_pending(const struct msgload *m)
{
    return m->n - (size_t)(m->keys_ok + m->keys_failed);
}

static void mc_frame(struct client *cl, const PlFrame *f)
{
    struct mclient *c = cl->owner;
    struct msgload *m = c->m;
    if (f->body_case == PARLEY__V1__FRAME__BODY_PUSH && f->push) {
        const Parley__V1__Push *p = f->push;
        if (p->kind_case == PARLEY__V1__PUSH__KIND_UPDATE && p->update &&
            p->update->kind_case == PARLEY__V1__UPDATE__KIND_NEW_MESSAGE && p->update->new_message)
            on_message(c, p->update->new_message->from_user_id, &p->update->new_message->text);
        else if (p->kind_case == PARLEY__V1__PUSH__KIND_SECRET && p->secret && m->secret)
            on_secret(c, p->secret);
        else if (p->kind_case == PARLEY__V1__PUSH__KIND_ERROR && p->error)
            bench_count_code(m->by_code, err_from_wire(p->error->code));
        else
            m->unexpected++;
        return;
    }
    if (f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE || !f->response)
        return;
    const Parley__V1__Response *r = f->response;
    if (m->secret && r->id == ID_KEYS) {
        on_keys_answer(c, r);
        return;
    }
    if (m->secret && r->id > ID_ACK_BASE && r->id <= ID_ACK_BASE + ACK_BATCH) {
        uint64_t n = r->id - ID_ACK_BASE;
        c->acks_inflight -= PL_MIN(n, c->acks_inflight);
        if (r->error) {
            m->ack_errors++;
            bench_count_code(m->by_code, err_from_wire(r->error->code));
        } else if (r->result_case == PARLEY__V1__RESPONSE__RESULT_ACK_SECRET && r->ack_secret) {
            m->acks_deleted += r->ack_secret->deleted;
        }
        return;
    }
    if (r->error) {
        bench_count_code(m->by_code, err_from_wire(r->error->code));
        if (r->id >= CLIENT_ID_FIRST_FREE) {
            m->failed++;
            if (c->inflight > 0)
                c->inflight--;
            /* The closed loop tops the window up from the tick, after the
             * wait the server asked for. */
            c->pause_until_us =
                bench_now_us() + (int64_t)PL_MAX(r->error->retry_after_ms, 1u) * 1000;
        }
        return;
    }
    if (r->result_case == PARLEY__V1__RESPONSE__RESULT_SEND ||
        r->result_case == PARLEY__V1__RESPONSE__RESULT_SEND_SECRET)
        m->acked++;
}

static void mc_ready(struct client *cl, int err, uint32_t retry_after_ms)
{
    (void)cl;
    (void)err;
    (void)retry_after_ms;
}

static void mc_closed(struct client *cl)
{
    struct mclient *c = cl->owner;
    c->m->conn_lost++;
}

static const struct client_ops msgload_ops = {mc_ready, mc_frame, mc_closed};

int msgload_setup(struct msgload *m, struct bench *b, unsigned pairs, struct drive_stats *ds)
{
    memset(m, 0, sizeof(*m));
    m->b = b;
    m->n = (size_t)pairs * 2;
    randombytes_buf(&m->client_id_state, sizeof(m->client_id_state));
    m->mc = xcalloc(m->n, sizeof(*m->mc));
    m->latency = xmalloc(sizeof(*m->latency));
    hist_init(m->latency);
    for (unsigned i = 0; i < MSGLOAD_PHASES; i++) {
        m->phase_hist[i] = xmalloc(sizeof(struct hist));
        hist_init(m->phase_hist[i]);
    }
    struct client **cls = xcalloc(m->n, sizeof(*cls));
    for (size_t i = 0; i < m->n; i++) {
        struct mclient *c = &m->mc[i];
        c->m = m;
        c->idx = (uint32_t)i;
        c->partner = &m->mc[i ^ 1];
        c->text = xmalloc(PL_MAX((size_t)TEXT_HEAD_MAX + 1, (size_t)b->opt.size) + 1);
        account_init(&c->acct, b->prefix, b->next_account++);
        c->cl.acct = &c->acct;
        cls[i] = &c->cl;
    }
    size_t up = drive_clients(b, cls, m->n, CLIENT_SIGNUP, true, SETUP_CONCURRENCY, SETUP_ATTEMPTS,
                              SETUP_LIMIT_S, ds);
    free(cls);
    for (size_t i = 0; i < m->n; i++) {
        m->mc[i].cl.owner = &m->mc[i];
        m->mc[i].cl.ops = &msgload_ops;
    }
    return up == m->n ? 0 : PARLEY_ECONNECT;
}

void msgload_begin(struct msgload *m, double rate, unsigned window, unsigned size)
{
    m->rate = rate;
    m->window = window ? window : 1;
    m->size = size;
    m->sending = true;
    m->t0_us = bench_now_us();
    m->nphases = 1;
    m->phase_start_us[0] = m->t0_us;
    if (rate > 0)
        return;
    for (size_t i = 0; i < m->n; i++) {
        struct mclient *c = &m->mc[i];
        while (c->inflight < m->window && c->cl.state == CLIENT_READY) {
            if (send_one(c) != 0)
                break;
        }
    }
}

void msgload_next_phase(struct msgload *m)
{
    if (m->nphases < MSGLOAD_PHASES)
        m->phase_start_us[m->nphases++] = bench_now_us();
}

/* Closed loop: refills windows that a refused send left short. */
static void refill(struct msgload *m, int64_t now)
{
    for (size_t i = 0; i < m->n; i++) {
        struct mclient *c = &m->mc[i];
        if (c->pause_until_us == 0 || now < c->pause_until_us)
            continue;
        c->pause_until_us = 0;
        while (c->inflight < m->window && c->cl.state == CLIENT_READY) {
            if (send_one(c) != 0)
                break;
        }
    }
}

void msgload_tick(struct msgload *m)
{
    if (!m->sending || m->n == 0)
        return;
    int64_t now = bench_now_us();
    if (m->rate <= 0) {
        refill(m, now);
        return;
    }
    uint64_t due = (uint64_t)(m->rate * (double)(now - m->t0_us) / 1e6);
    while (m->slots < due) {
        m->slots++;
        struct mclient *c = &m->mc[m->rr];
        m->rr = (m->rr + 1) % m->n;
        if (c->cl.state != CLIENT_READY || c->inflight >= m->window) {
            m->capped++;
            continue;
        }
        int rc = send_one(c);
        if (rc)
            bench_count_code(m->by_code, rc);
    }
}

void msgload_stop(struct msgload *m)
{
    m->sending = false;
}

uint64_t msgload_inflight(const struct msgload *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct mclient *c = &m->mc[i];
        if (c->cl.state == CLIENT_READY)
            n += c->inflight + c->n_acks + c->acks_inflight;
    }
    return n;
}

uint64_t msgload_lost(const struct msgload *m)
{
    uint64_t settled = m->delivered + m->failed;
    return m->sent > settled ? m->sent - settled : 0;
}

void msgload_free(struct msgload *m)
{
    if (!m->mc)
        return;
    struct client **cls = xcalloc(m->n ? m->n : 1, sizeof(*cls));
    for (size_t i = 0; i < m->n; i++)
        cls[i] = &m->mc[i].cl;
    /* Closed here, gone once bench_close_clients has run the loop. */
    if (m->ack_check_live)
        uv_close((uv_handle_t *)&m->ack_check, NULL);
    m->ack_check_live = false;
    bench_close_clients(m->b, cls, m->n);
    free(cls);
    for (size_t i = 0; i < m->n; i++) {
        free(m->mc[i].seen);
        free(m->mc[i].text);
        free(m->mc[i].acks);
    }
    free(m->mc);
    for (unsigned i = 0; i < MSGLOAD_PHASES; i++)
        free(m->phase_hist[i]);
    free(m->latency);
    m->mc = NULL;
}
