/* SPDX-License-Identifier: MIT */
/* The protocol on one connection: decode a Frame, check limits and
 * authentication, hand the work to the store, answer when it has committed,
 * and fan the result out through the router. Runs on the connection's loop;
 * a session outlives its connection until its last store callback. */
#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/text.h"
#include "metrics.h"
#include "proto/frame.h"
#include "server.h"
#include "session_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

/* Username to user id, per loop. Usernames never change owner, so entries
 * never go stale. */
struct name_entry {
    char name[USERNAME_MAX + 1];
    uint64_t user_id;
};

#define NAME_CACHE_MAX 100000

static uint64_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    return h == 0 || h == UINT64_MAX ? 1 : h;
}

static uint64_t name_lookup(struct worker *w, const char *name)
{
    struct name_entry *e = u64map_get(&w->names, name_hash(name));
    return e && strcmp(e->name, name) == 0 ? e->user_id : 0;
}

static void name_remember(struct worker *w, const char *name, uint64_t user_id)
{
    uint64_t h = name_hash(name);
    struct name_entry *e = u64map_get(&w->names, h);
    if (!e) {
        if (w->names.len >= NAME_CACHE_MAX)
            return;
        e = xmalloc(sizeof(*e));
        u64map_put(&w->names, h, e);
    }
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->user_id = user_id;
}

static void session_unref(struct session *s)
{
    if (--s->refs == 0)
        free(s);
}

/* Encodes and queues a frame; a connection that is gone drops it. */
void session_send_frame(struct session *s, const PlFrame *f)
{
    if (!s->conn)
        return;
    size_t len;
    const uint8_t *buf = frame_encode_buf(f, &s->w->enc, &len);
    if (!buf) {
        log_error("core", "event=oom what=frame_encode");
        abort();
    }
    int rc = net_conn_send(s->conn, buf, len);
    if (rc)
        log_debug("core", "event=send_dropped user=%llu", (unsigned long long)s->user_id);
    frame_buf_release(&s->w->enc, ENCODE_KEEP);
}

static void respond(struct session *s, Parley__V1__Response *resp, enum metrics_method m)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = resp;
    metrics_count(m, 0);
    session_send_frame(s, &f);
}

/* Answers op's request with resp (its id filled in here). */
void session_respond_to(const struct op *op, Parley__V1__Response *resp)
{
    resp->id = op->request_id;
    respond(op->s, resp, op->method);
}

/* The wait advised with BUSY: retry_after_ms plus up to half again at
 * random, so that clients refused together do not all come back together. */
uint32_t session_busy_retry_ms(const struct config *cfg)
{
    uint32_t base = cfg->retry_after_ms;
    return base + randombytes_uniform(base / 2 + 1);
}

void session_respond_error(struct session *s, uint64_t id, enum metrics_method m, int err,
                           uint32_t retry_after_ms)
{
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__Error e = PARLEY__V1__ERROR__INIT;
    resp.id = id;
    resp.error = &e;
    e.code = err_to_wire(err);
    e.message = (char *)err_text(err);
    e.retry_after_ms = retry_after_ms;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = &resp;
    metrics_count(m, err);
    if (err == PARLEY_ERATE_LIMITED)
        atomic_fetch_add_explicit(&metrics.rate_limited, 1, memory_order_relaxed);
    session_send_frame(s, &f);
}

static void msg_to_proto(const struct store_msg *m, Parley__V1__Message *out)
{
    parley__v1__message__init(out);
    out->id = m->id;
    out->from_user_id = m->from_user;
    out->from_username = (char *)(m->from_name ? m->from_name : "");
    out->to_user_id = m->to_user;
    out->to_username = (char *)(m->to_name ? m->to_name : "");
    out->text.data = (uint8_t *)(m->text ? m->text : "");
    out->text.len = m->text ? m->text_len : 0;
    out->date = m->date;
    out->client_id = m->client_id;
    out->from_device_id = m->from_device;
    out->expires = m->expires;
}

/* --- store submission --------------------------------------------------- */

static void on_store_done(struct store_req *req);

/* Ops come from a per-worker free list: a request allocates nothing in
 * the steady state. */
struct op *session_op_new(struct session *s, uint64_t request_id, enum metrics_method m)
{
    struct worker *w = s->w;
    struct op *op = w->op_free;
    if (op) {
        w->op_free = op->free_next;
        w->op_free_n--;
        memset(op, 0, sizeof(*op));
    } else {
        op = xcalloc(1, sizeof(*op));
    }
    op->s = s;
    op->request_id = request_id;
    op->method = m;
    op->req.cb = on_store_done;
    op->req.data = op;
    return op;
}

void session_op_free(struct op *op)
{
    struct worker *w = op->s->w;
    store_req_reset(&op->req);
    if (op->text != op->text_small)
        free(op->text);
    free(op->prekeys);
    op->prekeys = NULL;
    free(op->owned);
    op->owned = NULL;
    if (w->op_free_n >= OP_FREE_MAX) {
        free(op);
        return;
    }
    op->free_next = w->op_free;
    w->op_free = op;
    w->op_free_n++;
}

void session_worker_free(struct worker *w)
{
    while (w->op_free) {
        struct op *op = w->op_free;
        w->op_free = op->free_next;
        free(op);
    }
    w->op_free_n = 0;
    arena_deinit(&w->req_arena);
    free(w->enc.data);
    w->enc.data = NULL;
    w->enc.cap = 0;
}

/* Submits op; on refusal answers the request and frees op. */
void session_submit(struct op *op)
{
    struct session *s = op->s;
    struct worker *w = s->w;
    int rc = store_submit(w->store, &op->req);
    if (rc) {
        uint32_t retry = rc == PARLEY_EBUSY ? session_busy_retry_ms(cfg_of(s)) : 0;
        session_respond_error(s, op->request_id, op->method, rc, retry);
        session_op_free(op);
        return;
    }
    s->refs++;
    w->in_flight++;
    if (op->method == METHOD_SIGNUP || op->method == METHOD_AUTH)
        w->auth_in_flight++;
}

/* --- authentication ----------------------------------------------------- */

static void go_online(struct session *s, uint64_t user_id, uint64_t device_id)
{
    struct worker *w = s->w;
    s->authed = true;
    s->user_id = user_id;
    s->device_id = device_id;
    struct session *head = u64map_get(&w->online, user_id);
    s->prev_online = NULL;
    s->next_online = head;
    if (head)
        head->prev_online = s;
    u64map_put(&w->online, user_id, s);
    router_subscribe(w->router, user_id);
}

static void go_offline(struct session *s)
{
    struct worker *w = s->w;
    if (!s->authed)
        return;
    if (s->prev_online)
        s->prev_online->next_online = s->next_online;
    else if (s->next_online)
        u64map_put(&w->online, s->user_id, s->next_online);
    else
        u64map_del(&w->online, s->user_id);
    if (s->next_online)
        s->next_online->prev_online = s->prev_online;
    s->authed = false;
    router_unsubscribe(w->router, s->user_id);
}

/* A device signed in. On the front loop its connection moves on to a
 * messaging loop, where it goes online (on_moved); the answer, already
 * queued, goes out from there. It stays where it is when anything else of
 * it is still pending here (another request at the store or waiting for
 * admission) or it cannot move: the front loop serves it like any loop. */
static void sign_in(struct session *s, uint64_t user_id, uint64_t device_id)
{
    struct worker *w = s->w;
    struct server *srv = w->srv;
    if (w->front && !w->stopping && srv->n_messaging > 0 && s->refs == 2) {
        /* At random, not in turn: a client's devices and its peers sign
         * in one after another, and turns would part them as regularly. */
        struct worker *to = &srv->workers[randombytes_uniform(srv->n_messaging)];
        if (net_conn_move(s->conn, &to->inbox) == 0) {
            s->moving = true;
            s->user_id = user_id;
            s->device_id = device_id;
            return;
        }
    }
    go_online(s, user_id, device_id);
}

/* Checks and consumes the connection's nonce: a nonce is good once. */
static int take_nonce(struct session *s, const ProtobufCBinaryData *nonce)
{
    bool ok = s->has_nonce && nonce->len == NONCE_LEN &&
              sodium_memcmp(nonce->data, s->nonce, NONCE_LEN) == 0;
    s->has_nonce = false;
    return ok ? 0 : PARLEY_EBAD_NONCE;
}

static bool signature_ok(const uint8_t *sig, const uint8_t *nonce, const uint8_t *pubkey)
{
    uint8_t msg[AUTH_CONTEXT_LEN + NONCE_LEN];
    memcpy(msg, AUTH_CONTEXT, AUTH_CONTEXT_LEN);
    memcpy(msg + AUTH_CONTEXT_LEN, nonce, NONCE_LEN);
    return crypto_sign_verify_detached(sig, msg, sizeof(msg), pubkey) == 0;
}

/* Admission control: sign-ups and logins queue (admission.h) and are let
 * through a few per loop turn, after that turn's work for signed-in
 * devices; beyond the queue's capacity (waiting plus at the store) they are
 * refused at once with BUSY and retry_after, never left to time out. */
static bool admit_auth(struct session *s, uint64_t id, enum metrics_method m)
{
    if (!admission_full(&s->w->adm))
        return true;
    atomic_fetch_add_explicit(&metrics.admission_refusals, 1, memory_order_relaxed);
    session_respond_error(s, id, m, PARLEY_EBUSY, session_busy_retry_ms(cfg_of(s)));
    return false;
}

static void enqueue_auth(struct op *op)
{
    op->s->refs++; /* the queue's */
    admission_push(&op->s->w->adm, &op->adm);
}

/* An admitted sign-up or login: the costly signature check (sign-up), then
 * the store. */
void session_admitted(struct adm_item *it, void *arg)
{
    PL_UNUSED(arg);
    struct op *op = PL_CONTAINER_OF(it, struct op, adm);
    struct session *s = op->s;
    if (!s->conn || s->w->stopping) {
        session_op_free(op);
    } else if (op->method == METHOD_SIGNUP &&
               !signature_ok(op->signature, op->nonce, op->req.in.signup.pubkey)) {
        atomic_fetch_add_explicit(&metrics.auth_failures, 1, memory_order_relaxed);
        session_respond_error(s, op->request_id, op->method, PARLEY_EBAD_SIGNATURE, 0);
        session_op_free(op);
    } else {
        session_submit(op);
    }
    session_unref(s);
}

/* A sign-up or login that waited [admission] max_wait_ms: answered BUSY
 * with retry_after rather than left to time out. */
void session_admission_refuse(struct adm_item *it, void *arg)
{
    PL_UNUSED(arg);
    struct op *op = PL_CONTAINER_OF(it, struct op, adm);
    struct session *s = op->s;
    atomic_fetch_add_explicit(&metrics.admission_refusals, 1, memory_order_relaxed);
    session_respond_error(s, op->request_id, op->method, PARLEY_EBUSY,
                          session_busy_retry_ms(cfg_of(s)));
    session_op_free(op);
    session_unref(s);
}

/* A queued sign-up or login of a stopping loop: dropped unanswered, as the
 * connection is closing with 1001. */
void session_admission_drop(struct adm_item *it, void *arg)
{
    PL_UNUSED(arg);
    struct op *op = PL_CONTAINER_OF(it, struct op, adm);
    struct session *s = op->s;
    session_op_free(op);
    session_unref(s);
}

static void handle_challenge(struct session *s, uint64_t id)
{
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__ChallengeResponse ch = PARLEY__V1__CHALLENGE_RESPONSE__INIT;
    randombytes_buf(s->nonce, NONCE_LEN);
    s->has_nonce = true;
    ch.nonce.data = s->nonce;
    ch.nonce.len = NONCE_LEN;
    resp.id = id;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_CHALLENGE;
    resp.challenge = &ch;
    respond(s, &resp, METHOD_CHALLENGE);
}

static void handle_signup(struct session *s, uint64_t id, const Parley__V1__SignupRequest *r)
{
    const enum metrics_method m = METHOD_SIGNUP;
    const struct config *cfg = cfg_of(s);
    char name[USERNAME_MAX + 1];
    int rc = take_nonce(s, &r->nonce);
    if (rc) {
        atomic_fetch_add_explicit(&metrics.auth_failures, 1, memory_order_relaxed);
        session_respond_error(s, id, m, rc, 0);
        return;
    }
    if (username_normalize(r->username, name)) {
        session_respond_error(s, id, m, PARLEY_EBAD_USERNAME, 0);
        return;
    }
    if (r->public_key.len != STORE_PUBKEY_LEN) {
        session_respond_error(s, id, m, PARLEY_EBAD_KEY, 0);
        return;
    }
    if (r->signature.len != SIGNATURE_LEN) {
        atomic_fetch_add_explicit(&metrics.auth_failures, 1, memory_order_relaxed);
        session_respond_error(s, id, m, PARLEY_EBAD_SIGNATURE, 0);
        return;
    }
    uint32_t wait = ratelimit_take(s->w->srv->signup_limits, s->ip_key, cfg->signup_ip_rate,
                                   cfg->signup_ip_burst, server_now_ms());
    if (wait) {
        session_respond_error(s, id, m, PARLEY_ERATE_LIMITED, wait);
        return;
    }
    if (!admit_auth(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    op->req.op = STORE_OP_SIGNUP;
    op->req.bulk = true;
    memcpy(op->req.in.signup.username, name, sizeof(name));
    memcpy(op->req.in.signup.pubkey, r->public_key.data, STORE_PUBKEY_LEN);
    /* The signature is checked once admitted, against this nonce (the
     * connection may ask for a new one meanwhile). */
    memcpy(op->signature, r->signature.data, SIGNATURE_LEN);
    memcpy(op->nonce, s->nonce, NONCE_LEN);
    enqueue_auth(op);
}

static void signup_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    log_info("core", "event=signup user=%llu device=%llu", (unsigned long long)req->out.user_id,
             (unsigned long long)req->out.device_id);
    if (!s->conn)
        return;
    if (!s->authed)
        sign_in(s, req->out.user_id, req->out.device_id);
    name_remember(s->w, req->in.signup.username, req->out.user_id);
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__SignupResponse r = PARLEY__V1__SIGNUP_RESPONSE__INIT;
    r.user_id = req->out.user_id;
    r.device_id = req->out.device_id;
    r.username = req->in.signup.username;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_SIGNUP;
    resp.signup = &r;
    session_respond_to(op, &resp);
}

static void handle_auth(struct session *s, uint64_t id, const Parley__V1__AuthRequest *r)
{
    const enum metrics_method m = METHOD_AUTH;
    int rc = take_nonce(s, &r->nonce);
    if (rc) {
        atomic_fetch_add_explicit(&metrics.auth_failures, 1, memory_order_relaxed);
        session_respond_error(s, id, m, rc, 0);
        return;
    }
    if (r->signature.len != SIGNATURE_LEN) {
        atomic_fetch_add_explicit(&metrics.auth_failures, 1, memory_order_relaxed);
        session_respond_error(s, id, m, PARLEY_EBAD_SIGNATURE, 0);
        return;
    }
    if (r->device_id == 0) {
        session_respond_error(s, id, m, PARLEY_ENODEVICE, 0);
        return;
    }
    if (!admit_auth(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    op->req.op = STORE_OP_DEVICE;
    op->req.bulk = true;
    op->req.in.device_id = r->device_id;
    memcpy(op->signature, r->signature.data, SIGNATURE_LEN);
    memcpy(op->nonce, r->nonce.data, NONCE_LEN);
    enqueue_auth(op);
}

static void auth_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    if (!signature_ok(op->signature, op->nonce, req->out.pubkey)) {
        atomic_fetch_add_explicit(&metrics.auth_failures, 1, memory_order_relaxed);
        session_respond_error(s, op->request_id, op->method, PARLEY_EBAD_SIGNATURE, 0);
        return;
    }
    if (!s->conn)
        return;
    if (s->authed) {
        session_respond_error(s, op->request_id, op->method, PARLEY_EALREADY_AUTH, 0);
        return;
    }
    sign_in(s, req->out.user_id, req->in.device_id);
    log_debug("core", "event=auth user=%llu device=%llu", (unsigned long long)s->user_id,
              (unsigned long long)s->device_id);
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__AuthResponse r = PARLEY__V1__AUTH_RESPONSE__INIT;
    r.user_id = req->out.user_id;
    r.username = req->out.username;
    r.pts = req->out.pts;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_AUTH;
    resp.auth = &r;
    session_respond_to(op, &resp);
}

/* --- messages ----------------------------------------------------------- */

bool session_account_rate_ok(struct session *s, uint64_t id, enum metrics_method m)
{
    const struct config *cfg = cfg_of(s);
    uint32_t wait = ratelimit_take(s->w->srv->account_limits, s->user_id, cfg->account_rate,
                                   cfg->account_burst, server_now_ms());
    if (wait)
        session_respond_error(s, id, m, PARLEY_ERATE_LIMITED, wait);
    return wait == 0;
}

/* Resolves a Peer to a user id: at once when given or cached (returns 0 and
 * sets *user_id), or by a store lookup (returns 1 after preparing op for it;
 * on_store_done then calls op->peer_start), or an error. */
static int resolve_peer(struct op *op, const Parley__V1__Peer *peer, uint64_t *user_id)
{
    if (!peer)
        return PARLEY_EINVAL;
    if (peer->user_id) {
        *user_id = peer->user_id;
        return 0;
    }
    if (username_normalize(peer->username, op->peer_name))
        return PARLEY_EBAD_USERNAME;
    uint64_t id = name_lookup(op->s->w, op->peer_name);
    if (id) {
        *user_id = id;
        return 0;
    }
    op->resolving = true;
    op->req.op = STORE_OP_RESOLVE;
    memcpy(op->req.in.username, op->peer_name, sizeof(op->peer_name));
    return 1;
}

void session_submit_to_peer(struct op *op, const Parley__V1__Peer *peer,
                            void (*start)(struct op *op, uint64_t peer))
{
    uint64_t id;
    op->peer_start = start;
    int rc = resolve_peer(op, peer, &id);
    if (rc < 0) {
        session_respond_error(op->s, op->request_id, op->method, rc, 0);
        session_op_free(op);
        return;
    }
    if (rc == 0)
        start(op, id);
    session_submit(op);
}

static void start_send(struct op *op, uint64_t to_user)
{
    struct session *s = op->s;
    op->req.op = STORE_OP_SEND;
    op->req.in.send.from_user = s->user_id;
    op->req.in.send.from_device = s->device_id;
    op->req.in.send.to_user = to_user;
    op->req.in.send.client_id = op->client_id;
    op->req.in.send.date = (int64_t)time(NULL);
    op->req.in.send.text = op->text;
    op->req.in.send.text_len = op->text_len;
}

static void start_history(struct op *op, uint64_t peer)
{
    op->req.op = STORE_OP_HISTORY;
    op->req.in.history.user = op->s->user_id;
    op->req.in.history.peer = peer;
    op->req.in.history.before_id = op->before_id;
    op->req.in.history.limit = op->limit;
}

static void handle_send(struct session *s, uint64_t id, const Parley__V1__SendRequest *r)
{
    const enum metrics_method m = METHOD_SEND;
    const struct config *cfg = cfg_of(s);
    size_t len = r->text.len, chars;
    if (r->client_id == 0 || len == 0) {
        session_respond_error(s, id, m, PARLEY_EINVAL, 0);
        return;
    }
    if (utf8_check((const char *)r->text.data, len, &chars)) {
        session_respond_error(s, id, m, PARLEY_EBAD_UTF8, 0);
        return;
    }
    if (chars > cfg->max_text_chars) {
        session_respond_error(s, id, m, PARLEY_ETEXT_TOO_LONG, 0);
        return;
    }
    if (!session_account_rate_ok(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    op->text = len < sizeof(op->text_small) ? op->text_small : xmalloc(len + 1);
    memcpy(op->text, r->text.data, len);
    op->text[len] = '\0';
    op->text_len = len;
    op->client_id = r->client_id;
    session_submit_to_peer(op, r->to, start_send);
}

/* Fans a committed message out: to the recipient's devices, and to the
 * sender's other devices. */
static void publish_message(struct session *s, const struct store_req *req)
{
    Parley__V1__Message msg;
    Parley__V1__Update up = PARLEY__V1__UPDATE__INIT;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    msg_to_proto(&req->out.msg, &msg);
    up.kind_case = PARLEY__V1__UPDATE__KIND_NEW_MESSAGE;
    up.new_message = &msg;
    push.kind_case = PARLEY__V1__PUSH__KIND_UPDATE;
    push.update = &up;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    size_t len;
    const uint8_t *buf;
    struct frame_buf *enc = &s->w->enc; /* router_publish copies what it keeps */
    if (req->out.msg.to_user != req->out.msg.from_user && req->out.to_pts) {
        up.pts = req->out.to_pts;
        if (!(buf = frame_encode_buf(&f, enc, &len)))
            abort();
        router_publish(s->w->router, req->out.msg.to_user, 0, buf, len);
    }
    up.pts = req->out.msg.pts;
    if (!(buf = frame_encode_buf(&f, enc, &len)))
        abort();
    router_publish(s->w->router, req->out.msg.from_user, req->out.msg.from_device, buf, len);
}

static void send_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    if (!req->out.duplicate)
        publish_message(s, req);
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__SendResponse r = PARLEY__V1__SEND_RESPONSE__INIT;
    Parley__V1__Message msg;
    msg_to_proto(&req->out.msg, &msg);
    r.message = &msg;
    r.pts = req->out.msg.pts;
    r.duplicate = req->out.duplicate;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_SEND;
    resp.send = &r;
    session_respond_to(op, &resp);
}

static unsigned clamp_limit(uint32_t limit, unsigned dflt)
{
    if (limit == 0)
        return dflt;
    return limit > STORE_PAGE_MAX ? STORE_PAGE_MAX : limit;
}

static void handle_sync(struct session *s, uint64_t id, const Parley__V1__SyncRequest *r)
{
    struct op *op = session_op_new(s, id, METHOD_SYNC);
    op->req.op = STORE_OP_SYNC;
    op->req.in.sync.user = s->user_id;
    op->req.in.sync.device = s->device_id;
    op->req.in.sync.from_pts = r->from_pts;
    op->req.in.sync.limit = clamp_limit(r->limit, SYNC_LIMIT_DEFAULT);
    session_submit(op);
}

/* The wire form of one log entry; what it points to lives in the page's
 * arrays (one slot per entry; ids is the next free slot of the ids array,
 * advanced past what this entry uses). */
struct page_slots {
    Parley__V1__Message *msgs;
    Parley__V1__MessagesDeleted *dels;
    Parley__V1__ChatTtl *ttls;
    uint64_t *ids;
};

static void update_to_proto(const struct store_msg *m, uint64_t self, size_t i,
                            struct page_slots *ps, Parley__V1__Update *up)
{
    parley__v1__update__init(up);
    up->pts = m->pts;
    switch (m->kind) {
    case STORE_UPD_MESSAGE:
        msg_to_proto(m, &ps->msgs[i]);
        up->kind_case = PARLEY__V1__UPDATE__KIND_NEW_MESSAGE;
        up->new_message = &ps->msgs[i];
        break;
    case STORE_UPD_DELETED:
        parley__v1__messages_deleted__init(&ps->dels[i]);
        for (size_t k = 0; k < m->n_ids; k++) {
            uint64_t id = 0;
            for (int b = 7; b >= 0; b--)
                id = id << 8 | m->ids[k * 8 + (size_t)b];
            ps->ids[k] = id;
        }
        ps->dels[i].ids = ps->ids;
        ps->dels[i].n_ids = m->n_ids;
        ps->ids += m->n_ids;
        up->kind_case = PARLEY__V1__UPDATE__KIND_MESSAGES_DELETED;
        up->messages_deleted = &ps->dels[i];
        break;
    case STORE_UPD_TTL:
        parley__v1__chat_ttl__init(&ps->ttls[i]);
        ps->ttls[i].peer_user_id = m->peer;
        ps->ttls[i].ttl_s = m->ttl_s;
        ps->ttls[i].by_user_id = m->by_peer ? m->peer : self;
        ps->ttls[i].peer_username = (char *)(m->to_name ? m->to_name : "");
        up->kind_case = PARLEY__V1__UPDATE__KIND_CHAT_TTL;
        up->chat_ttl = &ps->ttls[i];
        break;
    }
}

bool session_page_take(const struct session *s, size_t *used, size_t packed, bool first)
{
    size_t room = cfg_of(s)->max_frame_bytes - PAGE_FRAME_OVERHEAD;
    size_t one = packed + PAGE_ENTRY_OVERHEAD;
    if (!first && *used + one > room)
        return false;
    *used += one;
    return true;
}

static void sync_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    size_t n = req->out.n_msgs, n_ids = 0;
    for (size_t i = 0; i < n; i++)
        n_ids += req->out.msgs[i].n_ids;
    struct page_slots ps = {
        .msgs = xcalloc(n, sizeof(*ps.msgs)),
        .dels = xcalloc(n, sizeof(*ps.dels)),
        .ttls = xcalloc(n, sizeof(*ps.ttls)),
        .ids = xcalloc(n_ids ? n_ids : 1, sizeof(uint64_t)),
    };
    uint64_t *ids_base = ps.ids;
    Parley__V1__Update *ups = xcalloc(n, sizeof(*ups));
    Parley__V1__Update **upp = xcalloc(n, sizeof(*upp));
    /* A page holds the updates that fit in one frame (at least one, so that
     * paging goes on): a bigger answer would break the frame limit and could
     * overflow the send queue, cutting the syncing client off with 1008.
     * The rest is announced with more. */
    size_t used = 0, fit = 0;
    for (; fit < n; fit++) {
        size_t i = fit;
        update_to_proto(&req->out.msgs[i], req->in.sync.user, i, &ps, &ups[i]);
        upp[i] = &ups[i];
        if (!session_page_take(s, &used, parley__v1__update__get_packed_size(&ups[i]), i == 0))
            break;
    }
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__SyncResponse r = PARLEY__V1__SYNC_RESPONSE__INIT;
    r.n_updates = fit;
    r.updates = upp;
    r.pts = req->out.pts;
    r.more = req->out.more || fit < n;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_SYNC;
    resp.sync = &r;
    session_respond_to(op, &resp);
    free(upp);
    free(ups);
    free(ids_base);
    free(ps.ttls);
    free(ps.dels);
    free(ps.msgs);
}

static void handle_history(struct session *s, uint64_t id, const Parley__V1__HistoryRequest *r)
{
    struct op *op = session_op_new(s, id, METHOD_HISTORY);
    op->before_id = r->before_id;
    op->limit = clamp_limit(r->limit, HISTORY_LIMIT_DEFAULT);
    session_submit_to_peer(op, r->peer, start_history);
}

static void history_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    size_t n = req->out.n_msgs;
    Parley__V1__Message *msgs = xcalloc(n, sizeof(*msgs));
    Parley__V1__Message **msgp = xcalloc(n, sizeof(*msgp));
    /* As in sync_done: only what fits in one frame, at least one message;
     * the client pages on from the oldest one it got. */
    size_t used = 0, fit = 0;
    for (; fit < n; fit++) {
        msg_to_proto(&req->out.msgs[fit], &msgs[fit]);
        msgp[fit] = &msgs[fit];
        if (!session_page_take(s, &used, parley__v1__message__get_packed_size(&msgs[fit]),
                               fit == 0))
            break;
    }
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__HistoryResponse r = PARLEY__V1__HISTORY_RESPONSE__INIT;
    r.n_messages = fit;
    r.messages = msgp;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_HISTORY;
    resp.history = &r;
    session_respond_to(op, &resp);
    free(msgp);
    free(msgs);
}

static void handle_resolve(struct session *s, uint64_t id, const Parley__V1__ResolveRequest *r)
{
    struct op *op = session_op_new(s, id, METHOD_RESOLVE);
    if (username_normalize(r->username, op->peer_name)) {
        session_respond_error(s, id, op->method, PARLEY_EBAD_USERNAME, 0);
        session_op_free(op);
        return;
    }
    op->req.op = STORE_OP_RESOLVE;
    memcpy(op->req.in.username, op->peer_name, sizeof(op->peer_name));
    session_submit(op);
}

static void resolve_done(struct op *op)
{
    struct store_req *req = &op->req;
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__ResolveResponse r = PARLEY__V1__RESOLVE_RESPONSE__INIT;
    r.user_id = req->out.user_id;
    r.username = req->in.username;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_RESOLVE;
    resp.resolve = &r;
    session_respond_to(op, &resp);
}

/* --- prekeys ------------------------------------------------------------ */

/* A public key in Signal's form: the Curve25519 type byte, then 32 bytes.
 * The server checks no more than that; the key's worth is the clients'. */
static bool key_form_ok(const ProtobufCBinaryData *k)
{
    return k->len == STORE_KEY_LEN && k->data[0] == KEY_TYPE_DJB;
}

static void handle_upload_keys(struct session *s, uint64_t id,
                               const Parley__V1__UploadKeysRequest *r)
{
    const enum metrics_method m = METHOD_UPLOAD_KEYS;
    const Parley__V1__SignedPreKey *sp = r->signed_prekey;
    int err = 0;
    if (r->registration_id == 0 || r->registration_id > REGISTRATION_ID_MAX ||
        r->n_prekeys > STORE_PREKEYS_PER_UPLOAD)
        err = PARLEY_EINVAL;
    else if (!key_form_ok(&r->identity_key) || (sp && !key_form_ok(&sp->public_key)))
        err = PARLEY_EBAD_KEY;
    else if (sp && sp->signature.len != STORE_SIG_LEN)
        err = PARLEY_EBAD_SIGNATURE;
    for (size_t i = 0; err == 0 && i < r->n_prekeys; i++) {
        if (!key_form_ok(&r->prekeys[i]->public_key))
            err = PARLEY_EBAD_KEY;
    }
    if (err) {
        session_respond_error(s, id, m, err, 0);
        return;
    }
    if (!session_account_rate_ok(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    struct store_req *req = &op->req;
    req->op = STORE_OP_UPLOAD_KEYS;
    req->in.keys.device = s->device_id;
    req->in.keys.registration_id = r->registration_id;
    memcpy(req->in.keys.identity_key, r->identity_key.data, STORE_KEY_LEN);
    if (sp) {
        req->in.keys.has_signed = true;
        req->in.keys.signed_prekey.id = sp->id;
        memcpy(req->in.keys.signed_prekey.key, sp->public_key.data, STORE_KEY_LEN);
        memcpy(req->in.keys.signature, sp->signature.data, STORE_SIG_LEN);
    }
    if (r->n_prekeys) {
        /* The decoded frame goes when this handler returns; the store
         * reads the prekeys until its callback. */
        op->prekeys = xmalloc(r->n_prekeys * sizeof(*op->prekeys));
        for (size_t i = 0; i < r->n_prekeys; i++) {
            op->prekeys[i].id = r->prekeys[i]->id;
            memcpy(op->prekeys[i].key, r->prekeys[i]->public_key.data, STORE_KEY_LEN);
        }
    }
    req->in.keys.prekeys = op->prekeys;
    req->in.keys.n_prekeys = r->n_prekeys;
    session_submit(op);
}

static void upload_keys_done(struct op *op)
{
    struct store_req *req = &op->req;
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__UploadKeysResponse r = PARLEY__V1__UPLOAD_KEYS_RESPONSE__INIT;
    r.prekey_count = req->out.prekey_count;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_UPLOAD_KEYS;
    resp.upload_keys = &r;
    session_respond_to(op, &resp);
}

static void start_get_bundle(struct op *op, uint64_t peer)
{
    op->req.op = STORE_OP_GET_BUNDLE;
    op->req.in.bundle.user = peer;
    op->req.in.bundle.device = op->device_filter;
    /* A device never needs a session with itself. */
    op->req.in.bundle.skip_device = op->s->device_id;
}

static void handle_get_bundle(struct session *s, uint64_t id, const Parley__V1__GetBundleRequest *r)
{
    const enum metrics_method m = METHOD_GET_BUNDLE;
    /* Each fetch takes a prekey from someone's stock: it counts against
     * the account's rate like a send, so that no one drains stocks fast. */
    if (!session_account_rate_ok(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    op->device_filter = r->device_id;
    session_submit_to_peer(op, r->peer, start_get_bundle);
}

/* Tells a device whose stock a fetch has left low, on every connection it
 * has, wherever it is connected. */
static void publish_prekeys_low(struct session *s, uint64_t user, uint64_t device, unsigned count)
{
    Parley__V1__PrekeysLow low = PARLEY__V1__PREKEYS_LOW__INIT;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    low.prekey_count = count;
    push.kind_case = PARLEY__V1__PUSH__KIND_PREKEYS_LOW;
    push.prekeys_low = &low;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    size_t len;
    const uint8_t *buf = frame_encode_buf(&f, &s->w->enc, &len);
    if (!buf)
        abort();
    router_publish_device(s->w->router, user, device, buf, len);
}

static void get_bundle_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    size_t n = req->out.n_bundles;
    for (size_t i = 0; i < n; i++) {
        const struct store_bundle *b = &req->out.bundles[i];
        if (b->has_prekey && b->prekey_count < PREKEYS_LOW)
            publish_prekeys_low(s, req->in.bundle.user, b->device_id, b->prekey_count);
    }
    Parley__V1__PreKeyBundle *bundles = xcalloc(n, sizeof(*bundles));
    Parley__V1__PreKeyBundle **bp = xcalloc(n, sizeof(*bp));
    Parley__V1__SignedPreKey *signed_keys = xcalloc(n, sizeof(*signed_keys));
    Parley__V1__PreKey *prekeys = xcalloc(n, sizeof(*prekeys));
    for (size_t i = 0; i < n; i++) {
        struct store_bundle *b = &req->out.bundles[i];
        Parley__V1__PreKeyBundle *pb = &bundles[i];
        parley__v1__pre_key_bundle__init(pb);
        pb->device_id = b->device_id;
        pb->registration_id = b->registration_id;
        pb->identity_key.data = b->identity_key;
        pb->identity_key.len = STORE_KEY_LEN;
        parley__v1__signed_pre_key__init(&signed_keys[i]);
        signed_keys[i].id = b->signed_prekey.id;
        signed_keys[i].public_key.data = b->signed_prekey.key;
        signed_keys[i].public_key.len = STORE_KEY_LEN;
        signed_keys[i].signature.data = b->signature;
        signed_keys[i].signature.len = STORE_SIG_LEN;
        pb->signed_prekey = &signed_keys[i];
        if (b->has_prekey) {
            parley__v1__pre_key__init(&prekeys[i]);
            prekeys[i].id = b->prekey.id;
            prekeys[i].public_key.data = b->prekey.key;
            prekeys[i].public_key.len = STORE_KEY_LEN;
            pb->prekey = &prekeys[i];
        }
        bp[i] = pb;
    }
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__GetBundleResponse r = PARLEY__V1__GET_BUNDLE_RESPONSE__INIT;
    r.user_id = req->in.bundle.user;
    r.n_bundles = n;
    r.bundles = bp;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_GET_BUNDLE;
    resp.get_bundle = &r;
    session_respond_to(op, &resp);
    free(prekeys);
    free(signed_keys);
    free(bp);
    free(bundles);
}

static void handle_key_count(struct session *s, uint64_t id)
{
    struct op *op = session_op_new(s, id, METHOD_KEY_COUNT);
    op->req.op = STORE_OP_KEY_COUNT;
    op->req.in.device_id = s->device_id;
    session_submit(op);
}

static void key_count_done(struct op *op)
{
    struct store_req *req = &op->req;
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__KeyCountResponse r = PARLEY__V1__KEY_COUNT_RESPONSE__INIT;
    r.prekey_count = req->out.prekey_count;
    r.has_keys = req->out.has_keys;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_KEY_COUNT;
    resp.key_count = &r;
    session_respond_to(op, &resp);
}

static void done_ok(struct op *op);

static void on_store_done(struct store_req *req)
{
    struct op *op = req->data;
    struct session *s = op->s;
    struct worker *w = s->w;
    w->in_flight--;
    if (op->method == METHOD_SIGNUP || op->method == METHOD_AUTH) {
        w->auth_in_flight--;
        if (w->adm_open)
            admission_kick(&w->adm);
    }

    if (op->resolving) {
        /* Step one of a request to a peer: its id is known now. */
        op->resolving = false;
        if (req->status == 0) {
            uint64_t peer = req->out.user_id;
            name_remember(w, op->peer_name, peer);
            store_req_reset(req);
            memset(&req->out, 0, sizeof(req->out));
            op->peer_start(op, peer);
            if (!w->stopping && s->conn) {
                session_submit(op);
                session_unref(s);
                return;
            }
        } else {
            session_respond_error(s, op->request_id, op->method, req->status, 0);
        }
        session_op_free(op);
        session_unref(s);
        worker_maybe_finish(w);
        return;
    }

    if (req->status && op->method == METHOD_SEND_SECRET)
        secret_send_failed(op);
    else if (req->status)
        session_respond_error(s, op->request_id, op->method, req->status, 0);
    else
        done_ok(op);
    session_op_free(op);
    session_unref(s);
    worker_maybe_finish(w);
}

/* A request the store completed without error: its method's answer. */
static void done_ok(struct op *op)
{
    switch (op->method) {
    case METHOD_SIGNUP:
        signup_done(op);
        break;
    case METHOD_AUTH:
        auth_done(op);
        break;
    case METHOD_SEND:
        send_done(op);
        break;
    case METHOD_SYNC:
        sync_done(op);
        break;
    case METHOD_HISTORY:
        history_done(op);
        break;
    case METHOD_RESOLVE:
        resolve_done(op);
        break;
    case METHOD_UPLOAD_KEYS:
        upload_keys_done(op);
        break;
    case METHOD_GET_BUNDLE:
        get_bundle_done(op);
        break;
    case METHOD_KEY_COUNT:
        key_count_done(op);
        break;
    case METHOD_SEND_SECRET:
        secret_send_done(op);
        break;
    case METHOD_FETCH_SECRET:
        secret_fetch_done(op);
        break;
    case METHOD_ACK_SECRET:
        secret_ack_done(op);
        break;
    case METHOD_SET_TTL:
        expiry_set_ttl_done(op);
        break;
    default:
        break;
    }
}

/* --- dispatch ----------------------------------------------------------- */

static enum metrics_method method_of(const Parley__V1__Request *r)
{
    switch (r->method_case) {
    case PARLEY__V1__REQUEST__METHOD_CHALLENGE:
        return METHOD_CHALLENGE;
    case PARLEY__V1__REQUEST__METHOD_SIGNUP:
        return METHOD_SIGNUP;
    case PARLEY__V1__REQUEST__METHOD_AUTH:
        return METHOD_AUTH;
    case PARLEY__V1__REQUEST__METHOD_SEND:
        return METHOD_SEND;
    case PARLEY__V1__REQUEST__METHOD_SYNC:
        return METHOD_SYNC;
    case PARLEY__V1__REQUEST__METHOD_HISTORY:
        return METHOD_HISTORY;
    case PARLEY__V1__REQUEST__METHOD_PING:
        return METHOD_PING;
    case PARLEY__V1__REQUEST__METHOD_RESOLVE:
        return METHOD_RESOLVE;
    case PARLEY__V1__REQUEST__METHOD_UPLOAD_KEYS:
        return METHOD_UPLOAD_KEYS;
    case PARLEY__V1__REQUEST__METHOD_GET_BUNDLE:
        return METHOD_GET_BUNDLE;
    case PARLEY__V1__REQUEST__METHOD_KEY_COUNT:
        return METHOD_KEY_COUNT;
    case PARLEY__V1__REQUEST__METHOD_SEND_SECRET:
        return METHOD_SEND_SECRET;
    case PARLEY__V1__REQUEST__METHOD_FETCH_SECRET:
        return METHOD_FETCH_SECRET;
    case PARLEY__V1__REQUEST__METHOD_ACK_SECRET:
        return METHOD_ACK_SECRET;
    case PARLEY__V1__REQUEST__METHOD_SET_TTL:
        return METHOD_SET_TTL;
    default:
        return METHOD_UNKNOWN;
    }
}

static void handle_request(struct session *s, const Parley__V1__Request *r)
{
    const struct config *cfg = cfg_of(s);
    enum metrics_method m = method_of(r);
    uint64_t id = r->id;

    uint32_t wait = ratelimit_take(s->w->srv->ip_limits, s->ip_key, cfg->ip_rate, cfg->ip_burst,
                                   server_now_ms());
    if (wait) {
        session_respond_error(s, id, m, PARLEY_ERATE_LIMITED, wait);
        return;
    }
    if (m == METHOD_UNKNOWN) {
        session_respond_error(s, id, m, PARLEY_EUNKNOWN_METHOD, 0);
        return;
    }
    if (s->w->stopping) {
        session_respond_error(s, id, m, PARLEY_EBUSY, session_busy_retry_ms(cfg));
        return;
    }
    bool needs_auth =
        m != METHOD_CHALLENGE && m != METHOD_SIGNUP && m != METHOD_AUTH && m != METHOD_PING;
    if (needs_auth && !s->authed) {
        session_respond_error(s, id, m, PARLEY_ENOAUTH, 0);
        return;
    }
    if ((m == METHOD_SIGNUP || m == METHOD_AUTH) && s->authed) {
        session_respond_error(s, id, m, PARLEY_EALREADY_AUTH, 0);
        return;
    }
    switch (m) {
    case METHOD_CHALLENGE:
        handle_challenge(s, id);
        break;
    case METHOD_SIGNUP:
        handle_signup(s, id, r->signup);
        break;
    case METHOD_AUTH:
        handle_auth(s, id, r->auth);
        break;
    case METHOD_SEND:
        handle_send(s, id, r->send);
        break;
    case METHOD_SYNC:
        handle_sync(s, id, r->sync);
        break;
    case METHOD_HISTORY:
        handle_history(s, id, r->history);
        break;
    case METHOD_RESOLVE:
        handle_resolve(s, id, r->resolve);
        break;
    case METHOD_UPLOAD_KEYS:
        handle_upload_keys(s, id, r->upload_keys);
        break;
    case METHOD_GET_BUNDLE:
        handle_get_bundle(s, id, r->get_bundle);
        break;
    case METHOD_KEY_COUNT:
        handle_key_count(s, id);
        break;
    case METHOD_SEND_SECRET:
        secret_handle_send(s, id, r->send_secret);
        break;
    case METHOD_FETCH_SECRET:
        secret_handle_fetch(s, id, r->fetch_secret);
        break;
    case METHOD_ACK_SECRET:
        secret_handle_ack(s, id, r->ack_secret);
        break;
    case METHOD_SET_TTL:
        expiry_handle_set_ttl(s, id, r->set_ttl);
        break;
    case METHOD_PING: {
        Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
        Parley__V1__PingResponse p = PARLEY__V1__PING_RESPONSE__INIT;
        p.payload = r->ping->payload;
        resp.id = id;
        resp.result_case = PARLEY__V1__RESPONSE__RESULT_PING;
        resp.ping = &p;
        respond(s, &resp, m);
        break;
    }
    default:
        break;
    }
}

static void on_open(struct net_conn *c)
{
    struct worker *w = net_loop_data(net_conn_loop(c));
    struct session *s = xcalloc(1, sizeof(*s));
    s->conn = c;
    s->w = w;
    s->refs = 1;
    s->ip_key = ratelimit_ip_key(net_conn_peer(c));
    net_conn_set_data(c, s);
}

static void on_message(struct net_conn *c, const uint8_t *data, size_t len)
{
    struct session *s = net_conn_data(c);
    struct arena *a = &s->w->req_arena;
    PlFrame *f;
    int rc = frame_decode_arena(data, len, cfg_of(s)->max_frame_bytes, a, &f);
    if (rc) {
        arena_reset(a);
        session_respond_error(s, 0, METHOD_UNKNOWN, rc, 0);
        return;
    }
    if (f->version == 0) {
        session_respond_error(s, frame_request_id(f), METHOD_UNKNOWN, PARLEY_EVERSION, 0);
    } else if (f->body_case != PARLEY__V1__FRAME__BODY_REQUEST || !f->request) {
        session_respond_error(s, 0, METHOD_UNKNOWN, PARLEY_EPROTO, 0);
    } else {
        handle_request(s, f->request);
    }
    arena_reset(a); /* the frame and everything in it; handlers copied what they keep */
}

/* The connection arrived on this loop (sign_in), or came back to the
 * front loop when the messaging loop was stopping. */
static void on_moved(struct net_conn *c)
{
    struct session *s = net_conn_data(c);
    struct worker *w = net_loop_data(net_conn_loop(c));
    if (s->refs == 1 && !s->next_online && !s->prev_online) {
        /* Nothing but the connection points at s: remade by this thread's
         * allocator, as net remade c, so that the front loop's heap keeps
         * nothing of a device that has moved on. */
        struct session *n = xmalloc(sizeof(*n));
        memcpy(n, s, sizeof(*n));
        sodium_memzero(s, sizeof(*s));
        free(s);
        s = n;
        net_conn_set_data(c, s);
    }
    s->conn = c;
    s->w = w;
    if (s->moving) {
        s->moving = false;
        if (!w->stopping)
            go_online(s, s->user_id, s->device_id);
    }
}

static void on_close(struct net_conn *c)
{
    struct session *s = net_conn_data(c);
    go_offline(s);
    sodium_memzero(s->nonce, sizeof(s->nonce));
    s->conn = NULL;
    session_unref(s);
}

static void on_http(struct net_loop *nl, const char *method, const char *path,
                    struct net_http_response *res)
{
    struct worker *w = net_loop_data(nl);
    res->content_type = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        res->status = 405;
        res->body = xstrdup("method not allowed\n");
    } else if (strcmp(path, "/healthz") == 0) {
        res->status = w->stopping ? 503 : 200;
        res->body = xstrdup(w->stopping ? "stopping\n" : "ok\n");
    } else if (strcmp(path, "/metrics") == 0) {
        res->status = 200;
        res->content_type = "text/plain; version=0.0.4; charset=utf-8";
        res->body = metrics_render(w->srv, &res->body_len);
        return;
    } else {
        res->status = 404;
        res->body = xstrdup("not found\n");
    }
    res->body_len = strlen(res->body);
}

const struct net_callbacks session_callbacks = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
    .on_http = on_http,
    .on_moved = on_moved,
};

void session_deliver(void *arg, uint64_t user_id, uint64_t exclude_device, uint64_t only_device,
                     const uint8_t *frame, size_t len)
{
    struct worker *w = arg;
    struct session *s = u64map_get(&w->online, user_id);
    while (s) {
        struct session *next = s->next_online;
        if (s->device_id != exclude_device && (!only_device || s->device_id == only_device) &&
            s->conn) {
            atomic_fetch_add_explicit(&metrics.pushes, 1, memory_order_relaxed);
            if (net_conn_send(s->conn, frame, len))
                log_debug("core", "event=push_dropped user=%llu", (unsigned long long)user_id);
        }
        s = next;
    }
}
