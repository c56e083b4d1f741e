/* SPDX-License-Identifier: MIT */
/* Pairs of clients messaging each other, checked end to end. Each text is
 * "SENDER:SEQ:SENT_US:" padded with 'x' to the wanted size; the partner
 * parses it on receipt, so latency is send to receipt on one clock, and a
 * bitmap per receiver of the sender's sequence numbers tells new from
 * duplicate. Whatever was sent, not refused, and never arrived is lost. */
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
    if ((size_t)head < len)
        memset(c->text + head, 'x', len - (size_t)head);

    Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__Peer to = PARLEY__V1__PEER__INIT;
    to.user_id = c->partner->acct.user_id;
    sr.to = &to;
    sr.client_id = next_client_id(m);
    sr.text.data = c->text;
    sr.text.len = len;
    req.id = CLIENT_ID_FIRST_FREE + seq;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &sr;
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

/* The partner got a message: account for it at the sender. */
static void on_message(struct mclient *r, const Parley__V1__Message *msg)
{
    struct msgload *m = r->m;
    char head[TEXT_HEAD_MAX + 1];
    size_t n = PL_MIN(msg->text.len, (size_t)TEXT_HEAD_MAX);
    memcpy(head, msg->text.data, n);
    head[n] = '\0';
    char *p = head, *end;
    unsigned long long idx = strtoull(p, &end, 10);
    if (*end != ':' || idx >= m->n || m->mc[idx].partner != r ||
        msg->from_user_id != r->partner->acct.user_id) {
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

static void mc_frame(struct client *cl, const PlFrame *f)
{
    struct mclient *c = cl->owner;
    struct msgload *m = c->m;
    if (f->body_case == PARLEY__V1__FRAME__BODY_PUSH && f->push) {
        const Parley__V1__Push *p = f->push;
        if (p->kind_case == PARLEY__V1__PUSH__KIND_UPDATE && p->update &&
            p->update->kind_case == PARLEY__V1__UPDATE__KIND_NEW_MESSAGE && p->update->new_message)
            on_message(c, p->update->new_message);
        else if (p->kind_case == PARLEY__V1__PUSH__KIND_ERROR && p->error)
            bench_count_code(m->by_code, err_from_wire(p->error->code));
        else
            m->unexpected++;
        return;
    }
    if (f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE || !f->response)
        return;
    const Parley__V1__Response *r = f->response;
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
    if (r->result_case == PARLEY__V1__RESPONSE__RESULT_SEND)
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
        if (m->mc[i].cl.state == CLIENT_READY)
            n += m->mc[i].inflight;
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
    bench_close_clients(m->b, cls, m->n);
    free(cls);
    for (size_t i = 0; i < m->n; i++) {
        free(m->mc[i].seen);
        free(m->mc[i].text);
    }
    free(m->mc);
    for (unsigned i = 0; i < MSGLOAD_PHASES; i++)
        free(m->phase_hist[i]);
    free(m->latency);
    m->mc = NULL;
}
