/* SPDX-License-Identifier: MIT */
/* libparley's public API (include/parley.h): device state through home.h,
 * the connection through wsconn.h, and the request/response, sync and
 * exactly-once delivery rules of the protocol. */
#include <parley.h>

#include "auth.h"
#include "common/err.h"
#include "common/text.h"
#include "home.h"
#include "known.h"
#include "parley_int.h"
#include "proto/frame.h"
#include "url.h"
#include "wsconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/banned.h"

#define DEFAULT_SERVER "https://127.0.0.1:8443"
#define DEFAULT_TIMEOUT_MS 10000
#define SYNC_LIMIT 100
#define HISTORY_LIMIT_DEFAULT 50
#define HISTORY_LIMIT_MAX 1000
#define TTL_MAX 31536000u /* a chat's auto-delete time: a year (PROTOCOL.md "Auto-delete") */
#define E2E_DIR "e2e"

void parley__log(const struct parley *p, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!p->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    p->log(p->log_arg, level, line);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int time_left(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    return left <= 0 ? 0 : (int)PL_MIN(left, 3600000);
}

bool parley__is_transport_err(int err)
{
    return err == PARLEY_ECLOSED || err == PARLEY_EIO || err == PARLEY_ETIMEOUT ||
           err == PARLEY_ECONNECT;
}

const char *parley_strerror(int err)
{
    return err_text(err);
}

const char *parley_errname(int err)
{
    return err_name(err);
}

static int resolve_home(const struct parley_options *opt, char *out, size_t size)
{
    const char *h = opt && opt->home ? opt->home : getenv("PARLEY_HOME");
    int n;
    if (h && *h) {
        n = snprintf(out, size, "%s", h);
    } else {
        const char *user_home = getenv("HOME");
        if (!user_home || !*user_home)
            return PARLEY_EINVAL;
        n = snprintf(out, size, "%s/.parley", user_home);
    }
    if (n < 0 || (size_t)n >= size)
        return PARLEY_EINVAL;
    return 0;
}

int parley_open(const struct parley_options *opt, struct parley **out)
{
    struct url url;
    if (!out)
        return PARLEY_EINVAL;
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;
    struct parley *p = calloc(1, sizeof(*p));
    if (!p)
        return PARLEY_ENOMEM;
    if (opt) {
        p->log = opt->log;
        p->log_arg = opt->log_arg;
        p->timeout_ms = opt->timeout_ms;
    }
    if (p->timeout_ms == 0)
        p->timeout_ms = DEFAULT_TIMEOUT_MS;
    int err = resolve_home(opt, p->home, sizeof(p->home));
    if (!err)
        err = home_path(p->known_path, sizeof(p->known_path), p->home, KNOWN_FILE);
    if (!err)
        err = home_path(p->e2e_path, sizeof(p->e2e_path), p->home, E2E_DIR);
    p->e2e.path = p->e2e_path;
    if (!err) {
        err = home_init(p->home);
        if (err)
            parley__log(p, 3, "home: cannot create %s", p->home);
    }
    if (!err) {
        err = home_load_account(p->home, &p->acct);
        p->has_account = err == 0;
        if (err == PARLEY_ENOACCOUNT)
            err = 0;
    }
    if (!err)
        err = home_load_pts(p->home, &p->pts);
    if (!err) {
        /* The URL in use: explicit, then environment, then the account's. */
        const char *s = opt && opt->server_url ? opt->server_url : getenv("PARLEY_SERVER");
        if ((!s || !*s) && p->has_account)
            s = p->acct.server;
        if (!s || !*s)
            s = DEFAULT_SERVER;
        if (strlen(s) >= sizeof(p->server) || url_parse(s, &url) != 0)
            err = PARLEY_EINVAL;
        else
            memcpy(p->server, s, strlen(s) + 1);
    }
    if (err) {
        parley_close(p);
        return err;
    }
    *out = p;
    return 0;
}

static void drop_conn(struct parley *p)
{
    wsconn_free(p->conn);
    p->conn = NULL;
    p->authed = false;
    /* Secret envelopes pushed meanwhile wait on the server: fetch them. */
    p->secret_lost = true;
}

static void clear_pushq(struct parley *p)
{
    for (size_t i = 0; i < p->pushq_len; i++)
        frame_free(p->pushq[i]);
    p->pushq_len = 0;
}

void parley_close(struct parley *p)
{
    if (!p)
        return;
    drop_conn(p);
    clear_pushq(p);
    parley__secret_clear(p);
    frame_free(p->keep);
    frame_free(p->last_error);
    home_key_free(p->sk);
    sodium_memzero(p, sizeof(*p));
    free(p);
}

const char *parley_server_url(const struct parley *p)
{
    return p ? p->server : "";
}

unsigned parley_retry_after_ms(const struct parley *p)
{
    return p ? p->retry_after_ms : 0;
}

int parley_whoami(struct parley *p, struct parley_account *out)
{
    if (!p || !out)
        return PARLEY_EINVAL;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    memset(out, 0, sizeof(*out));
    memcpy(out->username, p->acct.username, sizeof(out->username));
    out->user_id = p->acct.user_id;
    out->device_id = p->acct.device_id;
    out->pts = p->pts;
    memcpy(out->server, p->acct.server, sizeof(out->server));
    return 0;
}

static int open_conn(struct parley *p)
{
    struct wsconn_options o = {
        .timeout_ms = p->timeout_ms,
        .known_servers = p->known_path,
        .log = p->log,
        .log_arg = p->log_arg,
    };
    return wsconn_open(p->server, &o, &p->conn);
}

/* Maps an Error message to its code, remembering retry_after_ms. */
static int wire_error(struct parley *p, const Parley__V1__Error *e, const char *what)
{
    int err = err_from_wire(e->code);
    if (err == 0)
        err = PARLEY_EPROTO;
    p->retry_after_ms = e->retry_after_ms;
    parley__log(p, err == PARLEY_EINTERNAL || err == PARLEY_EPROTO ? 3 : 1, "%s: %s (%s)", what,
                err_name(err), e->message && *e->message ? e->message : "no detail");
    return err;
}

/* Takes ownership of a received frame. Returns 1 and hands it over in
 * *resp when it answers request id, 0 when it was queued or dropped, or a
 * negative code (a Push.error: the server is closing). */
static int take_frame(struct parley *p, PlFrame *in, uint64_t id, PlFrame **resp)
{
    if (in->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && in->response) {
        if (id && (in->response->id == id || (in->response->id == 0 && in->response->error))) {
            *resp = in;
            return 1;
        }
        parley__log(p, 0, "rpc: dropping response to request %llu",
                    (unsigned long long)in->response->id);
    } else if (in->body_case == PARLEY__V1__FRAME__BODY_PUSH && in->push) {
        const Parley__V1__Push *push = in->push;
        if (push->kind_case == PARLEY__V1__PUSH__KIND_UPDATE && push->update) {
            if (p->pushq_len < PUSHQ_MAX) {
                p->pushq[p->pushq_len++] = in;
                return 0;
            }
            p->push_lost = true;
        } else if (push->kind_case == PARLEY__V1__PUSH__KIND_SECRET && push->secret) {
            if (p->secq_len < PUSHQ_MAX) {
                p->secq[p->secq_len++] = in;
                return 0;
            }
            p->secret_lost = true; /* still queued on the server: a fetch gets it */
        } else if (push->kind_case == PARLEY__V1__PUSH__KIND_PREKEYS_LOW) {
            p->keys_low = true;
        } else if (push->kind_case == PARLEY__V1__PUSH__KIND_ERROR && push->error) {
            int err = wire_error(p, push->error, "server closing");
            frame_free(in);
            drop_conn(p);
            return err;
        }
    }
    frame_free(in);
    return 0;
}

/* Reads one frame from the connection within timeout_ms and passes it to
 * take_frame. Transport and decoding failures drop the connection. */
static int read_frame(struct parley *p, int timeout_ms, uint64_t id, PlFrame **resp)
{
    uint8_t *data;
    size_t len;
    PlFrame *in;
    int err = wsconn_recv(p->conn, timeout_ms, &data, &len);
    if (err) {
        if (err != PARLEY_ETIMEOUT || id)
            drop_conn(p);
        return err;
    }
    err = frame_decode(data, len, FRAME_MAX_DEFAULT, &in);
    free(data);
    if (err) {
        parley__log(p, 3, "rpc: undecodable frame from server (%s)", err_name(err));
        drop_conn(p);
        return PARLEY_EPROTO;
    }
    return take_frame(p, in, id, resp);
}

/* Sends req and waits for its answer; pushes meanwhile are queued. Returns
 * 0 and *out (the frame, owned by the caller), whose response has result
 * want; or the response's error; or a transport error (the connection is
 * then dropped). */
int parley__call(struct parley *p, PlRequest *req, int want, PlFrame **out)
{
    PlFrame f = PARLEY__V1__FRAME__INIT;
    PlFrame *in = NULL;
    size_t len;
    f.version = FRAME_VERSION;
    f.body_case = PARLEY__V1__FRAME__BODY_REQUEST;
    f.request = req;
    req->id = ++p->next_id;
    uint8_t *buf = frame_encode(&f, &len);
    if (!buf)
        return PARLEY_ENOMEM;
    int err = wsconn_send(p->conn, buf, len, p->timeout_ms);
    free(buf);
    if (err) {
        if (err != PARLEY_ENOMEM)
            drop_conn(p);
        return err;
    }
    int64_t deadline = p->timeout_ms < 0 ? -1 : now_ms() + p->timeout_ms;
    for (;;) {
        err = read_frame(p, time_left(deadline), req->id, &in);
        if (err < 0)
            return err;
        if (err == 1)
            break;
    }
    const PlResponse *r = in->response;
    err = 0;
    if (r->error) {
        err = wire_error(p, r->error, "request failed");
        frame_free(p->last_error);
        p->last_error = in; /* its details (Error.devices) stay readable */
        return err;
    }
    if ((int)r->result_case != want) {
        frame_free(in);
        return PARLEY_EPROTO;
    }
    *out = in;
    return 0;
}

static int load_key(struct parley *p)
{
    if (p->sk)
        return 0;
    return home_load_key(p->home, &p->sk);
}

static int get_nonce(struct parley *p, uint8_t nonce[AUTH_NONCE_LEN])
{
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__ChallengeRequest ch = PARLEY__V1__CHALLENGE_REQUEST__INIT;
    PlFrame *resp;
    req.method_case = PARLEY__V1__REQUEST__METHOD_CHALLENGE;
    req.challenge = &ch;
    int err = parley__call(p, &req, PARLEY__V1__RESPONSE__RESULT_CHALLENGE, &resp);
    if (err)
        return err;
    const Parley__V1__ChallengeResponse *c = resp->response->challenge;
    if (!c || c->nonce.len != AUTH_NONCE_LEN)
        err = PARLEY_EPROTO;
    else
        memcpy(nonce, c->nonce.data, AUTH_NONCE_LEN);
    frame_free(resp);
    return err;
}

int parley_connect(struct parley *p)
{
    uint8_t nonce[AUTH_NONCE_LEN], sig[AUTH_SIG_LEN];
    PlFrame *resp;
    if (!p)
        return PARLEY_EINVAL;
    if (p->conn && p->authed)
        return 0;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    int err = load_key(p);
    if (err)
        return err;
    if (!p->conn && (err = open_conn(p)))
        return err;
    if ((err = get_nonce(p, nonce)) || (err = auth_sign(p->sk, nonce, sizeof(nonce), sig)))
        goto fail;

    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__AuthRequest ar = PARLEY__V1__AUTH_REQUEST__INIT;
    ar.device_id = p->acct.device_id;
    ar.nonce.data = nonce;
    ar.nonce.len = sizeof(nonce);
    ar.signature.data = sig;
    ar.signature.len = sizeof(sig);
    req.method_case = PARLEY__V1__REQUEST__METHOD_AUTH;
    req.auth = &ar;
    if ((err = parley__call(p, &req, PARLEY__V1__RESPONSE__RESULT_AUTH, &resp)))
        goto fail;
    const Parley__V1__AuthResponse *a = resp->response->auth;
    if (!a || a->user_id != p->acct.user_id) {
        parley__log(p, 3, "auth: server answered for another user");
        frame_free(resp);
        err = PARLEY_EPROTO;
        goto fail;
    }
    parley__log(p, 0, "auth: device %llu of @%s authenticated, server pts %llu",
                (unsigned long long)p->acct.device_id, p->acct.username,
                (unsigned long long)a->pts);
    frame_free(resp);
    p->authed = true;
    /* Secret chats need this device's keys on the server; a failure other
     * than the connection's is logged and leaves cloud chats working. */
    err = parley__keys_check(p);
    if (parley__is_transport_err(err))
        goto fail;
    return 0;
fail:
    drop_conn(p);
    return err;
}

int parley_signup(struct parley *p, const char *username)
{
    char name[USERNAME_MAX + 1];
    uint8_t nonce[AUTH_NONCE_LEN], sig[AUTH_SIG_LEN], pk[HOME_PUBLIC_KEY_LEN];
    PlFrame *resp;
    if (!p || !username)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    if (p->has_account)
        return PARLEY_EEXIST;
    if (username_normalize(username, name) != 0)
        return PARLEY_EBAD_USERNAME;
    /* A key left by an unfinished signup is reused; otherwise a new one is
     * saved before the server hears of it, so that it is never lost. */
    int err = load_key(p);
    if (err == PARLEY_ENOACCOUNT) {
        if ((err = home_key_new(&p->sk)))
            return err;
        if ((err = home_save_key(p->home, p->sk))) {
            home_key_free(p->sk);
            p->sk = NULL;
            return err;
        }
    } else if (err) {
        return err;
    }
    crypto_sign_ed25519_sk_to_pk(pk, p->sk);

    drop_conn(p);
    if ((err = open_conn(p)))
        return err;
    if ((err = get_nonce(p, nonce)) || (err = auth_sign(p->sk, nonce, sizeof(nonce), sig)))
        goto fail;
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SignupRequest sr = PARLEY__V1__SIGNUP_REQUEST__INIT;
    sr.username = name;
    sr.public_key.data = pk;
    sr.public_key.len = sizeof(pk);
    sr.nonce.data = nonce;
    sr.nonce.len = sizeof(nonce);
    sr.signature.data = sig;
    sr.signature.len = sizeof(sig);
    req.method_case = PARLEY__V1__REQUEST__METHOD_SIGNUP;
    req.signup = &sr;
    if ((err = parley__call(p, &req, PARLEY__V1__RESPONSE__RESULT_SIGNUP, &resp)))
        goto fail;

    const Parley__V1__SignupResponse *s = resp->response->signup;
    struct home_account a;
    memset(&a, 0, sizeof(a));
    if (!s || !s->user_id || !s->device_id) {
        frame_free(resp);
        err = PARLEY_EPROTO;
        goto fail;
    }
    a.user_id = s->user_id;
    a.device_id = s->device_id;
    if (username_normalize(s->username && *s->username ? s->username : name, a.username) != 0)
        memcpy(a.username, name, sizeof(a.username));
    frame_free(resp);
    memcpy(a.server, p->server, sizeof(a.server));
    if ((err = home_save_account(p->home, &a)) || (err = home_save_pts(p->home, 0))) {
        parley__log(p, 3, "home: signed up as user %llu but cannot save the account",
                    (unsigned long long)a.user_id);
        goto fail;
    }
    p->acct = a;
    p->has_account = true;
    p->pts = 0;
    p->authed = true;
    parley__log(p, 1, "signup: @%s is user %llu, device %llu", a.username,
                (unsigned long long)a.user_id, (unsigned long long)a.device_id);
    /* The account exists whatever happens now; keys missing on the server
     * are uploaded again by the next connect. */
    if (parley__keys_check(p) != 0)
        parley__log(p, 2, "signup: secret-chat keys not published yet; the next connect retries");
    return 0;
fail:
    drop_conn(p);
    return err;
}

/* parley__call() on an authenticated connection, reconnecting once when the
 * connection fails before the answer. Only for idempotent requests. */
int parley__call_authed(struct parley *p, PlRequest *req, int want, PlFrame **out)
{
    for (int attempt = 0;; attempt++) {
        int err = parley_connect(p);
        if (!err)
            err = parley__call(p, req, want, out);
        if (!parley__is_transport_err(err) || attempt == 1)
            return err;
        parley__log(p, 1, "rpc: %s before the answer; reconnecting once", err_name(err));
    }
}

/* Fills out from m; the strings point into m and names. */
static int msg_from_wire(const struct parley *p, const Parley__V1__Message *m, uint64_t pts,
                         struct names *names, struct parley_msg *out)
{
    size_t chars;
    if (!m || !m->from_username || !m->to_username || m->text.len > TEXT_MAX_BYTES ||
        utf8_check((const char *)m->text.data, m->text.len, &chars) != 0 ||
        strlen(m->from_username) > PARLEY_USERNAME_MAX ||
        strlen(m->to_username) > PARLEY_USERNAME_MAX)
        return PARLEY_EPROTO;
    memset(out, 0, sizeof(*out));
    snprintf(names->from, sizeof(names->from), "@%s", m->from_username);
    snprintf(names->to, sizeof(names->to), "@%s", m->to_username);
    out->outgoing = m->from_user_id == p->acct.user_id;
    memcpy(names->chat, out->outgoing ? names->to : names->from, sizeof(names->chat));
    out->id = m->id;
    out->pts = pts;
    out->client_id = m->client_id;
    out->from_user_id = m->from_user_id;
    out->to_user_id = m->to_user_id;
    out->date = m->date;
    out->chat = names->chat;
    out->from = names->from;
    out->to = names->to;
    if (m->text.len)
        memcpy(names->text, m->text.data, m->text.len);
    names->text[m->text.len] = '\0';
    out->text = names->text;
    out->text_len = m->text.len;
    out->expires = m->expires;
    return 0;
}

static int check_peer(const char *peer, char name[USERNAME_MAX + 1])
{
    if (!peer)
        return PARLEY_EINVAL;
    return username_normalize(peer, name) == 0 ? 0 : PARLEY_EBAD_USERNAME;
}

/* The checks of a request about a peer, in their order: p, the peer's
 * name (into name), the call's other arguments (args_ok), an account. */
static int begin_peer_request(struct parley *p, const char *peer, bool args_ok,
                              char name[USERNAME_MAX + 1])
{
    if (!p)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    int err = check_peer(peer, name);
    if (err)
        return err;
    if (!args_ok)
        return PARLEY_EINVAL;
    return p->has_account ? 0 : PARLEY_ENOACCOUNT;
}

int parley_send(struct parley *p, const char *peer, const char *text, size_t len,
                uint64_t client_id, struct parley_msg *out)
{
    char name[USERNAME_MAX + 1];
    size_t chars;
    PlFrame *resp;
    if (!p || !text)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    if (len == 0)
        return PARLEY_EINVAL;
    if (utf8_check(text, len, &chars) != 0)
        return PARLEY_EBAD_UTF8;
    if (chars > PARLEY_TEXT_MAX_CHARS)
        return PARLEY_ETEXT_TOO_LONG;
    int err = check_peer(peer, name);
    if (err)
        return err;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    /* 53 random bits: exact as a JSON number (the CLI, the web client). */
    while (client_id == 0) {
        randombytes_buf(&client_id, sizeof(client_id));
        client_id &= CLIENT_ID_RANDOM_MASK;
    }
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendRequest sr = PARLEY__V1__SEND_REQUEST__INIT;
    Parley__V1__Peer to = PARLEY__V1__PEER__INIT;
    to.username = name;
    sr.to = &to;
    sr.client_id = client_id;
    sr.text.data = (uint8_t *)text;
    sr.text.len = len;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND;
    req.send = &sr;
    /* A retry carries the same client_id, so the server stores it once. */
    err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_SEND, &resp);
    if (err)
        return err;
    const Parley__V1__SendResponse *s = resp->response->send;
    struct parley_msg m;
    err = s ? msg_from_wire(p, s->message, s->pts, &p->keep_names, &m) : PARLEY_EPROTO;
    if (err) {
        frame_free(resp);
        return err;
    }
    m.duplicate = s->duplicate;
    frame_free(p->keep);
    p->keep = resp;
    if (out)
        *out = m;
    return 0;
}

/* A MessagesDeleted update: the ids point into u. */
static int deleted_from_wire(const Parley__V1__Update *u, struct parley_msg *out)
{
    const Parley__V1__MessagesDeleted *d = u->messages_deleted;
    if (!d)
        return PARLEY_EPROTO;
    memset(out, 0, sizeof(*out));
    out->kind = PARLEY_MSG_DELETED;
    out->pts = u->pts;
    out->chat = out->from = out->to = out->text = "";
    out->deleted_ids = d->ids;
    out->n_deleted = d->n_ids;
    return 0;
}

/* A ChatTtl update: chat is the other member, from who changed it. */
static int ttl_from_wire(const struct parley *p, const Parley__V1__Update *u, struct names *names,
                         struct parley_msg *out)
{
    const Parley__V1__ChatTtl *c = u->chat_ttl;
    if (!c || !c->peer_username || strlen(c->peer_username) > PARLEY_USERNAME_MAX)
        return PARLEY_EPROTO;
    memset(out, 0, sizeof(*out));
    snprintf(names->chat, sizeof(names->chat), "@%s", c->peer_username);
    snprintf(names->from, sizeof(names->from), "@%s",
             c->by_user_id == p->acct.user_id ? p->acct.username : c->peer_username);
    names->to[0] = names->text[0] = '\0';
    out->kind = PARLEY_MSG_TTL;
    out->pts = u->pts;
    out->from_user_id = c->by_user_id;
    out->outgoing = c->by_user_id == p->acct.user_id;
    out->chat = names->chat;
    out->from = names->from;
    out->to = names->to;
    out->text = names->text;
    out->ttl_s = c->ttl_s;
    return 0;
}

/* Delivers update u if it is the next one (pts == local + 1) and moves the
 * sync position past it; authoritative (from a sync) also accepts a jump.
 * Sets *gap when a live update is ahead of the next one. */
static int apply_update(struct parley *p, const Parley__V1__Update *u, bool authoritative,
                        struct delivery *d, bool *gap)
{
    if (u->pts <= p->pts)
        return 0; /* already delivered: exactly once */
    if (u->pts != p->pts + 1) {
        if (!authoritative) {
            *gap = true;
            return 0;
        }
        parley__log(p, 1, "sync: server log jumps from pts %llu to %llu",
                    (unsigned long long)p->pts, (unsigned long long)u->pts);
    }
    struct names names;
    struct parley_msg m;
    int err = 0;
    bool known = true;
    switch (u->kind_case) {
    case PARLEY__V1__UPDATE__KIND_NEW_MESSAGE:
        err = msg_from_wire(p, u->new_message, u->pts, &names, &m);
        break;
    case PARLEY__V1__UPDATE__KIND_MESSAGES_DELETED:
        err = deleted_from_wire(u, &m);
        break;
    case PARLEY__V1__UPDATE__KIND_CHAT_TTL:
        err = ttl_from_wire(p, u, &names, &m);
        break;
    default:
        known = false; /* a kind from a newer server: skipped, pts advances */
        break;
    }
    if (err)
        return err;
    if (known) {
        if (d->cb && d->cb(d->arg, &m) != 0)
            d->stop = true;
        d->delivered++;
    }
    err = home_save_pts(p->home, u->pts);
    if (err) {
        parley__log(p, 3, "home: cannot save the sync position");
        return err;
    }
    p->pts = u->pts;
    return 0;
}

/* Gets the difference from the local pts until the server has no more. */
static int sync_all(struct parley *p, struct delivery *d)
{
    for (;;) {
        PlRequest req = PARLEY__V1__REQUEST__INIT;
        Parley__V1__SyncRequest sr = PARLEY__V1__SYNC_REQUEST__INIT;
        PlFrame *resp;
        sr.from_pts = p->pts;
        sr.limit = SYNC_LIMIT;
        req.method_case = PARLEY__V1__REQUEST__METHOD_SYNC;
        req.sync = &sr;
        int err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_SYNC, &resp);
        if (err)
            return err;
        const Parley__V1__SyncResponse *s = resp->response->sync;
        uint64_t before = p->pts;
        bool gap = false;
        for (size_t i = 0; s && i < s->n_updates && !err && !d->stop; i++)
            if (s->updates[i])
                err = apply_update(p, s->updates[i], true, d, &gap);
        bool more = s && s->more;
        frame_free(resp);
        if (err || d->stop || !more)
            return err;
        if (p->pts == before) {
            parley__log(p, 3, "sync: server says more but sent nothing new");
            return PARLEY_EPROTO;
        }
    }
}

/* Applies queued live updates in order; a gap or lost pushes mean a sync,
 * during which new pushes may queue up again. */
static int drain_pushes(struct parley *p, struct delivery *d)
{
    for (;;) {
        bool gap = p->push_lost;
        int err = 0;
        size_t i;
        p->push_lost = false;
        for (i = 0; i < p->pushq_len && !err && !d->stop && !gap; i++)
            err = apply_update(p, p->pushq[i]->push->update, false, d, &gap);
        /* Updates left after a gap are older than what the sync returns
         * or are returned by it. */
        clear_pushq(p);
        if (err || d->stop || !gap)
            return err;
        parley__log(p, 0, "sync: gap after pts %llu; syncing", (unsigned long long)p->pts);
        if ((err = sync_all(p, d)) || d->stop)
            return err;
    }
}

int parley_recv(struct parley *p, int timeout_ms, bool follow, parley_msg_cb *cb, void *arg)
{
    struct delivery d = {.cb = cb, .arg = arg};
    if (!p)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    /* Secret messages whose timer ran out go before anything is shown; a
     * damaged secret file is reported by parley__secret_recv, after the
     * cloud updates. */
    if (parley__secret_expire(p, &d) == 0 && d.stop)
        return 0;
    int err = sync_all(p, &d);
    if (!err && !d.stop)
        err = drain_pushes(p, &d);
    if (!err && !d.stop)
        err = parley__secret_recv(p, &d, true);
    if (err || d.stop)
        return err;
    if (!follow && (d.delivered > 0 || timeout_ms == 0))
        return 0;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        PlFrame *unused = NULL;
        if ((err = parley_connect(p)))
            return err;
        /* After a reconnect, secret envelopes pushed meanwhile are fetched. */
        if ((err = parley__secret_recv(p, &d, false)) || d.stop)
            return err;
        if (!follow && d.delivered > 0)
            return 0;
        /* Woken at least every SECRET_EXPIRE_WAKE_MS, so that expired
         * secret messages go on time (parley__secret_recv above). */
        int wait_ms = time_left(deadline);
        if (wait_ms < 0 || wait_ms > SECRET_EXPIRE_WAKE_MS)
            wait_ms = SECRET_EXPIRE_WAKE_MS;
        err = read_frame(p, wait_ms, 0, &unused);
        if (err == PARLEY_ETIMEOUT && (deadline < 0 || time_left(deadline) > 0))
            continue;
        if (err == PARLEY_ETIMEOUT)
            return 0;
        if (err < 0)
            return err;
        if ((err = drain_pushes(p, &d)) || d.stop)
            return err;
        if ((err = parley__secret_recv(p, &d, false)) || d.stop)
            return err;
        if (!follow && d.delivered > 0)
            return 0;
        if (deadline >= 0 && time_left(deadline) == 0)
            return 0;
    }
}

int parley_history(struct parley *p, const char *peer, uint64_t before_id, unsigned limit,
                   parley_msg_cb *cb, void *arg)
{
    char name[USERNAME_MAX + 1];
    PlFrame *resp;
    int err = begin_peer_request(p, peer, limit <= HISTORY_LIMIT_MAX, name);
    if (err)
        return err;
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__HistoryRequest hr = PARLEY__V1__HISTORY_REQUEST__INIT;
    Parley__V1__Peer pe = PARLEY__V1__PEER__INIT;
    pe.username = name;
    hr.peer = &pe;
    hr.before_id = before_id;
    hr.limit = limit ? limit : HISTORY_LIMIT_DEFAULT;
    req.method_case = PARLEY__V1__REQUEST__METHOD_HISTORY;
    req.history = &hr;
    if ((err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_HISTORY, &resp)))
        return err;
    const Parley__V1__HistoryResponse *h = resp->response->history;
    for (size_t i = 0; h && i < h->n_messages && !err; i++) {
        struct names names;
        struct parley_msg m;
        err = msg_from_wire(p, h->messages[i], 0, &names, &m);
        if (!err && cb && cb(arg, &m) != 0)
            break;
    }
    frame_free(resp);
    return err;
}

int parley_set_ttl(struct parley *p, const char *peer, uint32_t ttl_s)
{
    char name[USERNAME_MAX + 1];
    PlFrame *resp;
    int err = begin_peer_request(p, peer, ttl_s <= TTL_MAX, name);
    if (err)
        return err;
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SetTtlRequest st = PARLEY__V1__SET_TTL_REQUEST__INIT;
    Parley__V1__Peer pe = PARLEY__V1__PEER__INIT;
    pe.username = name;
    st.peer = &pe;
    st.ttl_s = ttl_s;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SET_TTL;
    req.set_ttl = &st;
    /* Idempotent: setting the same time again changes nothing but the log. */
    if ((err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_SET_TTL, &resp)))
        return err;
    frame_free(resp);
    return 0;
}
