/* SPDX-License-Identifier: MIT */
/* Auto-delete for cloud chats: the per-chat setting (SetTtlRequest), and
 * the purge that deletes expired messages. Worker 0 asks the store once a
 * second (and at once again while a purge finds more due); the store finds
 * them through its expiry index, deletes them with their update rows and
 * appends a MessagesDeleted update to every account that had them, which
 * this file pushes to the accounts' devices. Rules: docs/PROTOCOL.md
 * "Auto-delete". */
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "session_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

#define PURGE_PERIOD_MS 1000
#define PURGE_BACKLOG_MS 50 /* the pause between purges while more are due */

/* --- the setting --------------------------------------------------------- */

void expiry_handle_set_ttl(struct session *s, uint64_t id, const Parley__V1__SetTtlRequest *r)
{
    const enum metrics_method m = METHOD_SET_TTL;
    if (r->ttl_s > STORE_TTL_MAX) {
        session_respond_error(s, id, m, PARLEY_EINVAL, 0);
        return;
    }
    if (!session_account_rate_ok(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    op->ttl_s = r->ttl_s;
    session_submit_to_peer(op, r->peer, expiry_set_ttl_start);
}

void expiry_set_ttl_start(struct op *op, uint64_t peer)
{
    op->req.op = STORE_OP_SET_TTL;
    op->req.in.ttl.user = op->s->user_id;
    op->req.in.ttl.peer = peer;
    op->req.in.ttl.ttl_s = op->ttl_s;
}

/* Pushes the ChatTtl update to the peer's devices and to the setter's
 * other devices. */
static void publish_ttl(struct session *s, const struct store_req *req)
{
    Parley__V1__ChatTtl ct = PARLEY__V1__CHAT_TTL__INIT;
    Parley__V1__Update up = PARLEY__V1__UPDATE__INIT;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    ct.ttl_s = req->in.ttl.ttl_s;
    ct.by_user_id = req->in.ttl.user;
    up.kind_case = PARLEY__V1__UPDATE__KIND_CHAT_TTL;
    up.chat_ttl = &ct;
    push.kind_case = PARLEY__V1__PUSH__KIND_UPDATE;
    push.update = &up;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    size_t len;
    const uint8_t *buf;
    const char *user_name = req->out.n_msgs ? req->out.msgs[0].from_name : "";
    const char *peer_name = req->out.n_msgs ? req->out.msgs[0].to_name : "";
    if (req->out.to_pts) {
        up.pts = req->out.to_pts;
        ct.peer_user_id = req->in.ttl.user;
        ct.peer_username = (char *)user_name;
        if (!(buf = frame_encode_buf(&f, &s->w->enc, &len)))
            abort();
        router_publish(s->w->router, req->in.ttl.peer, 0, buf, len);
    }
    up.pts = req->out.pts;
    ct.peer_user_id = req->in.ttl.peer;
    ct.peer_username = (char *)peer_name;
    if (!(buf = frame_encode_buf(&f, &s->w->enc, &len)))
        abort();
    router_publish(s->w->router, req->in.ttl.user, s->device_id, buf, len);
}

void expiry_set_ttl_done(struct op *op)
{
    struct store_req *req = &op->req;
    publish_ttl(op->s, req);
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__SetTtlResponse r = PARLEY__V1__SET_TTL_RESPONSE__INIT;
    r.ttl_s = req->in.ttl.ttl_s;
    r.pts = req->out.pts;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_SET_TTL;
    resp.set_ttl = &r;
    session_respond_to(op, &resp);
}

/* --- the purge ----------------------------------------------------------- */

static void on_expiry_tick(uv_timer_t *t);

/* Tells every device of each account what the purge deleted. */
static void publish_purged(struct worker *w, const struct store_req *req)
{
    Parley__V1__MessagesDeleted del = PARLEY__V1__MESSAGES_DELETED__INIT;
    Parley__V1__Update up = PARLEY__V1__UPDATE__INIT;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    up.kind_case = PARLEY__V1__UPDATE__KIND_MESSAGES_DELETED;
    up.messages_deleted = &del;
    push.kind_case = PARLEY__V1__PUSH__KIND_UPDATE;
    push.update = &up;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    size_t total = 0;
    for (size_t i = 0; i < req->out.n_purged; i++) {
        const struct store_purged *p = &req->out.purged[i];
        up.pts = p->pts;
        del.ids = (uint64_t *)p->ids;
        del.n_ids = p->n_ids;
        total += p->n_ids;
        size_t len;
        const uint8_t *buf = frame_encode_buf(&f, &w->enc, &len);
        if (!buf)
            abort();
        router_publish(w->router, p->user_id, 0, buf, len);
    }
    /* Each message counts once per account that had it (two for a chat). */
    atomic_fetch_add_explicit(&metrics.purged_messages, total, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics.expired_envelopes, req->out.envelopes_expired,
                              memory_order_relaxed);
    log_debug("core", "event=purge accounts=%zu entries=%zu", req->out.n_purged, total);
}

static void on_purge_done(struct store_req *req)
{
    struct worker *w = req->data;
    w->in_flight--;
    w->purge_busy = false;
    bool again = false;
    if (req->status == 0) {
        publish_purged(w, req);
        again = req->out.more;
    } else {
        log_warn("core", "event=purge_failed error=%s", err_name(req->status));
    }
    store_req_reset(req);
    /* A backlog (after downtime, or a busy chat's messages coming due) is
     * taken a batch at a time with a pause between, not back to back: the
     * writer serves everyone else in between. */
    if (again && !w->stopping && w->expiry_on)
        uv_timer_start(&w->expiry_timer, on_expiry_tick, PURGE_BACKLOG_MS, PURGE_PERIOD_MS);
    worker_maybe_finish(w);
}

static void purge_submit(struct worker *w)
{
    if (w->purge_busy || w->stopping || !w->store)
        return;
    struct store_req *req = &w->purge;
    memset(req, 0, sizeof(*req));
    req->op = STORE_OP_PURGE;
    req->cb = on_purge_done;
    req->data = w;
    req->in.purge.now = (int64_t)time(NULL);
    req->in.purge.limit = STORE_PURGE_MAX;
    req->in.purge.envelopes_before =
        req->in.purge.now - (int64_t)w->conf->cfg.envelope_days * 86400;
    /* A refusal (queue full) is tried again at the next tick. */
    if (store_submit(w->store, req) != 0)
        return;
    w->purge_busy = true;
    w->in_flight++;
}

static void on_expiry_tick(uv_timer_t *t)
{
    purge_submit(PL_CONTAINER_OF(t, struct worker, expiry_timer));
}

int expiry_start(struct worker *w)
{
    if (uv_timer_init(&w->loop, &w->expiry_timer) != 0)
        return PARLEY_EINTERNAL;
    w->expiry_on = true;
    if (uv_timer_start(&w->expiry_timer, on_expiry_tick, PURGE_PERIOD_MS, PURGE_PERIOD_MS) != 0)
        return PARLEY_EINTERNAL;
    return 0;
}

void expiry_stop(struct worker *w)
{
    if (!w->expiry_on)
        return;
    w->expiry_on = false;
    uv_close((uv_handle_t *)&w->expiry_timer, NULL);
}
