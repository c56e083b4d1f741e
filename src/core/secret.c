/* SPDX-License-Identifier: MIT */
/* Secret chats on the server: opaque end-to-end envelopes, one per
 * destination device, stored until that device acks its copy and then
 * deleted. The server checks the form of a send (sizes, types, that the
 * device list matches the accounts' devices with keys) and never looks
 * inside a body; no body or text reaches a log line or a metric. The rules
 * are docs/PROTOCOL.md "Secret messages". */
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "session_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

#define FETCH_LIMIT_DEFAULT 100
/* libsignal's ciphertext types: SignalMessage and PreKeySignalMessage. */
#define ENVELOPE_TYPE_WHISPER 2
#define ENVELOPE_TYPE_PREKEY 3

/* --- send ---------------------------------------------------------------- */

/* Checks a send's form; 0 or the error to answer. */
static int check_send(const Parley__V1__SendSecretRequest *r)
{
    if (r->client_id == 0 || r->n_envelopes == 0 || r->n_envelopes > STORE_ENVELOPES_MAX)
        return PARLEY_EINVAL;
    for (size_t i = 0; i < r->n_envelopes; i++) {
        const Parley__V1__Envelope *e = r->envelopes[i];
        if (e->device_id == 0 || e->body.len == 0 || e->body.len > STORE_ENVELOPE_BODY_MAX ||
            (e->type != ENVELOPE_TYPE_WHISPER && e->type != ENVELOPE_TYPE_PREKEY))
            return PARLEY_EINVAL;
    }
    return 0;
}

/* Copies the envelopes into one block the op owns (the decoded frame goes
 * when the handler returns; the store reads them until its callback). */
static void keep_envelopes(struct op *op, const Parley__V1__SendSecretRequest *r)
{
    size_t n = r->n_envelopes, bytes = n * sizeof(struct store_envelope_in);
    for (size_t i = 0; i < n; i++)
        bytes += r->envelopes[i]->body.len;
    uint8_t *block = xmalloc(bytes);
    struct store_envelope_in *envs = (struct store_envelope_in *)(void *)block;
    uint8_t *body = block + n * sizeof(*envs);
    for (size_t i = 0; i < n; i++) {
        const Parley__V1__Envelope *e = r->envelopes[i];
        envs[i].device_id = e->device_id;
        envs[i].type = e->type;
        envs[i].body = body;
        envs[i].body_len = e->body.len;
        memcpy(body, e->body.data, e->body.len);
        body += e->body.len;
    }
    op->owned = block;
    op->owned_len = bytes;
    op->owned_n = n;
}

void secret_handle_send(struct session *s, uint64_t id, const Parley__V1__SendSecretRequest *r)
{
    const enum metrics_method m = METHOD_SEND_SECRET;
    int rc = check_send(r);
    if (rc) {
        session_respond_error(s, id, m, rc, 0);
        return;
    }
    if (!session_account_rate_ok(s, id, m))
        return;
    struct op *op = session_op_new(s, id, m);
    op->client_id = r->client_id;
    keep_envelopes(op, r);
    session_submit_to_peer(op, r->to, secret_send_start);
}

void secret_send_start(struct op *op, uint64_t to_user)
{
    struct session *s = op->s;
    /* Set only now: a peer lookup before used in.username, which shares
     * the union. */
    op->req.op = STORE_OP_SECRET_SEND;
    op->req.in.secret.envs = op->owned;
    op->req.in.secret.n_envs = op->owned_n;
    op->req.in.secret.from_user = s->user_id;
    op->req.in.secret.from_device = s->device_id;
    op->req.in.secret.to_user = to_user;
    op->req.in.secret.client_id = op->client_id;
    op->req.in.secret.date = (int64_t)time(NULL);
}

/* Pushes each stored envelope to the connections of its device, wherever
 * they are; a device that is offline fetches it later. */
static void publish_envelopes(struct op *op)
{
    struct session *s = op->s;
    const struct store_req *req = &op->req;
    Parley__V1__SecretEnvelope env = PARLEY__V1__SECRET_ENVELOPE__INIT;
    Parley__V1__Push push = PARLEY__V1__PUSH__INIT;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    env.message_id = req->out.msg.id;
    env.from_user_id = req->out.msg.from_user;
    env.from_username = (char *)req->out.msg.from_name;
    env.from_device_id = req->out.msg.from_device;
    env.to_user_id = req->out.msg.to_user;
    env.to_username = (char *)req->out.msg.to_name;
    env.date = req->out.msg.date;
    push.kind_case = PARLEY__V1__PUSH__KIND_SECRET;
    push.secret = &env;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH;
    f.push = &push;
    for (size_t i = 0; i < req->out.n_envs; i++) {
        const struct store_envelope_ref *ref = &req->out.envs[i];
        const struct store_envelope_in *in = &req->in.secret.envs[i];
        env.id = ref->id;
        env.type = in->type;
        env.body.data = (uint8_t *)in->body;
        env.body.len = in->body_len;
        size_t len;
        const uint8_t *buf = frame_encode_buf(&f, &s->w->enc, &len);
        if (!buf) {
            log_error("core", "event=oom what=frame_encode");
            abort();
        }
        router_publish_device(s->w->router, ref->user_id, ref->device_id, buf, len);
    }
}

void secret_send_done(struct op *op)
{
    struct store_req *req = &op->req;
    if (!req->out.duplicate) {
        atomic_fetch_add_explicit(&metrics.secret_envelopes, req->out.n_envs, memory_order_relaxed);
        publish_envelopes(op);
    }
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__SendSecretResponse r = PARLEY__V1__SEND_SECRET_RESPONSE__INIT;
    r.id = req->out.msg.id;
    r.date = req->out.msg.date;
    r.duplicate = req->out.duplicate;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_SEND_SECRET;
    resp.send_secret = &r;
    session_respond_to(op, &resp);
}

void secret_send_failed(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    if (req->status != PARLEY_EDEVICES_CHANGED) {
        session_respond_error(s, op->request_id, op->method, req->status, 0);
        return;
    }
    Parley__V1__DeviceMismatch mm[2], *mmp[2];
    size_t n = PL_MIN(req->out.n_mismatches, PL_ARRAY_LEN(mm));
    for (size_t i = 0; i < n; i++) {
        const struct store_mismatch *sm = &req->out.mismatches[i];
        parley__v1__device_mismatch__init(&mm[i]);
        mm[i].user_id = sm->user_id;
        mm[i].missing = (uint64_t *)sm->missing;
        mm[i].n_missing = sm->n_missing;
        mm[i].stale = (uint64_t *)sm->stale;
        mm[i].n_stale = sm->n_stale;
        mmp[i] = &mm[i];
    }
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__Error e = PARLEY__V1__ERROR__INIT;
    e.code = err_to_wire(PARLEY_EDEVICES_CHANGED);
    e.message = (char *)err_text(PARLEY_EDEVICES_CHANGED);
    e.n_devices = n;
    e.devices = mmp;
    resp.id = op->request_id;
    resp.error = &e;
    PlFrame f = PARLEY__V1__FRAME__INIT;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = &resp;
    metrics_count(op->method, PARLEY_EDEVICES_CHANGED);
    session_send_frame(s, &f);
}

/* --- fetch --------------------------------------------------------------- */

void secret_handle_fetch(struct session *s, uint64_t id, const Parley__V1__FetchSecretRequest *r)
{
    struct op *op = session_op_new(s, id, METHOD_FETCH_SECRET);
    op->req.op = STORE_OP_SECRET_FETCH;
    op->req.in.fetch.device = s->device_id;
    op->req.in.fetch.limit = r->limit == 0               ? FETCH_LIMIT_DEFAULT
                             : r->limit > STORE_PAGE_MAX ? STORE_PAGE_MAX
                                                         : r->limit;
    /* No more than one frame's worth leaves the store: a page of 1000
     * envelopes of 32 KiB would be 32 MB, read to send 1 MiB. */
    op->req.in.fetch.max_bytes = cfg_of(s)->max_frame_bytes;
    session_submit(op);
}

static void envelope_to_proto(const struct store_envelope *e, Parley__V1__SecretEnvelope *out)
{
    parley__v1__secret_envelope__init(out);
    out->id = e->id;
    out->message_id = e->message_id;
    out->from_user_id = e->from_user;
    out->from_username = (char *)(e->from_name ? e->from_name : "");
    out->from_device_id = e->from_device;
    out->to_user_id = e->to_user;
    out->to_username = (char *)(e->to_name ? e->to_name : "");
    out->type = e->type;
    out->body.data = (uint8_t *)e->body;
    out->body.len = e->body_len;
    out->date = e->date;
}

void secret_fetch_done(struct op *op)
{
    struct session *s = op->s;
    struct store_req *req = &op->req;
    size_t n = req->out.n_envelopes;
    Parley__V1__SecretEnvelope *envs = xcalloc(n, sizeof(*envs));
    Parley__V1__SecretEnvelope **envp = xcalloc(n, sizeof(*envp));
    /* As a sync page: what fits in one frame, at least one envelope. */
    size_t used = 0, fit = 0;
    for (; fit < n; fit++) {
        envelope_to_proto(&req->out.envelopes[fit], &envs[fit]);
        envp[fit] = &envs[fit];
        if (!session_page_take(s, &used, parley__v1__secret_envelope__get_packed_size(&envs[fit]),
                               fit == 0))
            break;
    }
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__FetchSecretResponse r = PARLEY__V1__FETCH_SECRET_RESPONSE__INIT;
    r.n_envelopes = fit;
    r.envelopes = envp;
    r.more = req->out.more || fit < n;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_FETCH_SECRET;
    resp.fetch_secret = &r;
    session_respond_to(op, &resp);
    free(envp);
    free(envs);
}

/* --- ack ----------------------------------------------------------------- */

void secret_handle_ack(struct session *s, uint64_t id, const Parley__V1__AckSecretRequest *r)
{
    const enum metrics_method m = METHOD_ACK_SECRET;
    if (r->n_ids == 0 || r->n_ids > STORE_ACK_MAX) {
        session_respond_error(s, id, m, PARLEY_EINVAL, 0);
        return;
    }
    struct op *op = session_op_new(s, id, m);
    op->owned = xmemdup(r->ids, r->n_ids * sizeof(*r->ids));
    op->owned_len = r->n_ids * sizeof(*r->ids);
    op->owned_n = r->n_ids;
    op->req.op = STORE_OP_SECRET_ACK;
    op->req.in.ack.device = s->device_id;
    op->req.in.ack.ids = op->owned;
    op->req.in.ack.n_ids = r->n_ids;
    session_submit(op);
}

void secret_ack_done(struct op *op)
{
    struct store_req *req = &op->req;
    atomic_fetch_add_explicit(&metrics.secret_acked, req->out.deleted, memory_order_relaxed);
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__AckSecretResponse r = PARLEY__V1__ACK_SECRET_RESPONSE__INIT;
    r.deleted = req->out.deleted;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_ACK_SECRET;
    resp.ack_secret = &r;
    session_respond_to(op, &resp);
}
