/* SPDX-License-Identifier: MIT */
/* Sending in secret chats: a SecretContent padded and encrypted once per
 * device of the peer and of our other devices, DEVICES_CHANGED answered,
 * the sent copy stored; read receipts and timer changes go the same way.
 * Sessions and trust records are secret.c's; see docs/internals/client.md. */
#include "secret_int.h"

#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "msgstore.h"
#include "trust.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/banned.h"

#define ENVELOPES_MAX 100 /* per send, as the protocol allows */
#define SEND_ATTEMPTS 3   /* a send and two retries after DEVICES_CHANGED */
#define PAD_BLOCK 160     /* packed content is padded to a multiple of this */

/* What a secret message carries (a SecretContent without its padding). */
struct content {
    const char *text; /* UTF-8; NULL or len 0: none (a receipt or a timer change) */
    size_t len;
    uint32_t timer_s;     /* the chat's timer when sent */
    bool timer_update;    /* sets the chat's timer to timer_s */
    const uint64_t *read; /* receipts: the peer's messages now read */
    size_t n_read;
};

/* One encrypted copy of the message, for one device. */
struct sealed {
    uint64_t device_id;
    uint32_t type;
    uint8_t *body; /* ciphertext, malloc'ed */
    size_t len;
};

struct outbox {
    size_t n;
    struct sealed e[ENVELOPES_MAX];
};

/* The two accounts a send reaches: the peer's devices and our others. */
struct reach {
    char peer[USERNAME_MAX + 1];
    struct trust *them;
    struct trust *us;
};

/* Sending. */

/* The plaintext of a send: SecretContent with random padding bytes, so
 * that the packed content is a multiple of PAD_BLOCK bytes (as PROTOCOL.md
 * suggests, like Signal), in sodium_malloc'ed memory (free with
 * sodium_free). */
static int build_content(const struct content *in, uint8_t **out, size_t *out_len)
{
    Parley__V1__SecretContent c = PARLEY__V1__SECRET_CONTENT__INIT;
    uint8_t pad[2 * PAD_BLOCK];
    c.text.data = (uint8_t *)in->text;
    c.text.len = in->text ? in->len : 0;
    c.timer_s = in->timer_s;
    c.timer_update = in->timer_update;
    c.read = (uint64_t *)in->read;
    c.n_read = in->n_read;
    c.padding.data = pad;
    /* The padding field's own tag and length count too: try lengths until
     * the whole lands on a multiple (at most one block plus a few). */
    size_t n;
    for (c.padding.len = 1;; c.padding.len++) {
        n = parley__v1__secret_content__get_packed_size(&c);
        if (n % PAD_BLOCK == 0 || c.padding.len == sizeof(pad))
            break;
    }
    randombytes_buf(pad, c.padding.len);
    uint8_t *buf = sodium_malloc(n);
    if (!buf)
        return PARLEY_ENOMEM;
    parley__v1__secret_content__pack(&c, buf);
    *out = buf;
    *out_len = n;
    return 0;
}

static void outbox_clear(struct outbox *ob)
{
    for (size_t i = 0; i < ob->n; i++)
        free(ob->e[i].body);
    ob->n = 0;
}

static bool outbox_has(const struct outbox *ob, uint64_t device_id)
{
    for (size_t i = 0; i < ob->n; i++)
        if (ob->e[i].device_id == device_id)
            return true;
    return false;
}

static void outbox_remove(struct outbox *ob, uint64_t device_id)
{
    for (size_t i = 0; i < ob->n; i++) {
        if (ob->e[i].device_id != device_id)
            continue;
        free(ob->e[i].body);
        ob->e[i] = ob->e[--ob->n];
        return;
    }
}

/* Encrypts pt for one device of account name (record t) into ob: with its
 * session, started from a fresh bundle when there is none. The session is
 * saved before the envelope leaves, so that a message key is never used
 * twice, even across a crash. A session whose identity is not the one
 * recorded, or a record marked changed, is PARLEY_EUNTRUSTED_IDENTITY. */
static int seal(struct parley *p, const struct e2e_identity *id, const char *name, struct trust *t,
                uint64_t device_id, const uint8_t *pt, size_t pt_len, struct outbox *ob)
{
    char e2e_name[E2E_PEER_LEN];
    struct ratchet *s = NULL;
    uint8_t *body = NULL;
    size_t len;
    enum ratchet_msg_type type;
    enum trust_verdict v;
    if (device_id == 0 || device_id > UINT32_MAX || ob->n == ENVELOPES_MAX)
        return PARLEY_EPROTO;
    secret__e2e_peer(t->user_id, e2e_name);
    int err = e2e_session_load(&p->e2e, e2e_name, (uint32_t)device_id, &s);
    if (err == PARLEY_ENOTFOUND) {
        PlFrame *resp;
        if ((err = secret__get_bundles(p, name, device_id, &resp)))
            return err;
        const Parley__V1__GetBundleResponse *r = resp->response->get_bundle;
        if (r->user_id != t->user_id || r->n_bundles != 1 || !r->bundles[0] ||
            r->bundles[0]->device_id != device_id)
            err = PARLEY_EPROTO;
        if (!err)
            err = secret__start_sessions(p, id, name, r, t);
        frame_free(resp);
        if (!err)
            err = e2e_session_load(&p->e2e, e2e_name, (uint32_t)device_id, &s);
    }
    if (err)
        return secret__local_err(err);
    if ((err = trust_see(t, device_id, ratchet_their_identity(s), &v)))
        goto out;
    if (v == TRUST_CHANGED)
        parley__log(p, 2, "secret: session with @%s device %llu has another identity key", name,
                    (unsigned long long)device_id);
    if (trust_is_changed(trust_find(t, device_id))) {
        err = PARLEY_EUNTRUSTED_IDENTITY;
        goto out;
    }
    if ((err = ratchet_encrypt(s, pt, pt_len, &body, &len, &type)))
        goto out;
    if ((err = secret__local_err(e2e_session_save(&p->e2e, e2e_name, (uint32_t)device_id, s)))) {
        free(body);
        goto out;
    }
    ob->e[ob->n++] = (struct sealed){device_id, (uint32_t)type, body, len};
out:
    ratchet_free(s);
    return err;
}

/* Seals pt for every device of the peer and our other devices that ob
 * lacks. A device the server says has no keys any more is forgotten. */
static int seal_all(struct parley *p, const struct e2e_identity *id, struct reach *to,
                    const uint8_t *pt, size_t pt_len, struct outbox *ob)
{
    struct trust *ts[2] = {to->them, to->us};
    const char *names[2] = {to->peer, p->acct.username};
    for (int k = 0; k < 2; k++) {
        struct trust *t = ts[k];
        for (size_t i = 0; i < t->n;) {
            uint64_t dev = t->dev[i].device_id;
            if ((k == 1 && dev == p->acct.device_id) || t->dev[i].removed || outbox_has(ob, dev)) {
                i++;
                continue;
            }
            int err = seal(p, id, names[k], t, dev, pt, pt_len, ob);
            if (err == PARLEY_ENOKEYS || err == PARLEY_ENODEVICE) {
                secret__forget_device(p, t, dev);
                continue;
            }
            if (err)
                return err;
            i++;
        }
    }
    return 0;
}

/* A device listed both as stale and as missing, in one account's entry or
 * across two, would be forgotten and then trusted again on a key of the
 * server's choosing. More than two entries (the send's two accounts) are
 * refused too. */
int secret__check_mismatch(const Parley__V1__Error *e)
{
    if (e && e->n_devices > 2)
        return PARLEY_EPROTO; /* one entry per account of the send */
    for (size_t i = 0; e && i < e->n_devices; i++) {
        const Parley__V1__DeviceMismatch *s = e->devices[i];
        for (size_t k = 0; s && k < e->n_devices; k++) {
            const Parley__V1__DeviceMismatch *m = e->devices[k];
            for (size_t a = 0; m && a < s->n_stale; a++)
                for (size_t b = 0; b < m->n_missing; b++)
                    if (s->stale[a] == m->missing[b])
                        return PARLEY_EPROTO;
        }
    }
    return 0;
}

/* Applies the DeviceMismatch list of the last DEVICES_CHANGED error:
 * envelopes of stale devices are dropped and the devices forgotten;
 * missing devices are sealed for (from a fresh bundle when there is no
 * session). The list is copied first: the calls made here replace
 * p->last_error. */
static int fix_devices(struct parley *p, const struct e2e_identity *id, struct reach *to,
                       const uint8_t *pt, size_t pt_len, struct outbox *ob)
{
    struct change {
        struct trust *t;
        uint64_t device_id;
        bool stale;
    } ch[2 * ENVELOPES_MAX];
    size_t n = 0;
    int err;
    const Parley__V1__Error *e =
        p->last_error && p->last_error->response ? p->last_error->response->error : NULL;
    for (size_t i = 0; e && i < e->n_devices; i++) {
        const Parley__V1__DeviceMismatch *m = e->devices[i];
        struct trust *t = NULL;
        if (m && m->user_id == to->them->user_id)
            t = to->them;
        else if (m && m->user_id == p->acct.user_id)
            t = to->us;
        if (!t || m->n_stale + m->n_missing > PL_ARRAY_LEN(ch) - n) {
            parley__log(p, 3, "secret: unusable device list in DEVICES_CHANGED");
            return PARLEY_EPROTO;
        }
        for (size_t k = 0; k < m->n_stale; k++)
            ch[n++] = (struct change){t, m->stale[k], true};
        for (size_t k = 0; k < m->n_missing; k++)
            ch[n++] = (struct change){t, m->missing[k], false};
    }
    if (n == 0)
        return PARLEY_EPROTO; /* the same send would fail the same way */
    if ((err = secret__check_mismatch(e))) {
        parley__log(p, 3, "secret: DEVICES_CHANGED lists a device as both stale and missing");
        return err;
    }
    parley__log(p, 1, "secret: device list of @%s changed; sending again", to->peer);
    /* A gone device of ours is listed against the recipient (the server
     * cannot tell whose it was), so a stale device leaves both records. */
    for (size_t i = 0; i < n; i++) {
        if (ch[i].stale) {
            outbox_remove(ob, ch[i].device_id);
            if (trust_find(to->them, ch[i].device_id))
                secret__forget_device(p, to->them, ch[i].device_id);
            if (trust_find(to->us, ch[i].device_id))
                secret__forget_device(p, to->us, ch[i].device_id);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (ch[i].stale || outbox_has(ob, ch[i].device_id))
            continue;
        if (ch[i].t == to->us && ch[i].device_id == p->acct.device_id)
            return PARLEY_EPROTO;
        const char *name = ch[i].t == to->us ? p->acct.username : to->peer;
        err = seal(p, id, name, ch[i].t, ch[i].device_id, pt, pt_len, ob);
        if (err)
            return err;
    }
    return 0;
}

static int send_envelopes(struct parley *p, const char *name, uint64_t client_id,
                          const struct outbox *ob, PlFrame **out)
{
    Parley__V1__Envelope env[ENVELOPES_MAX], *envp[ENVELOPES_MAX];
    if (ob->n == 0)
        return PARLEY_ENOKEYS;
    for (size_t i = 0; i < ob->n; i++) {
        parley__v1__envelope__init(&env[i]);
        env[i].device_id = ob->e[i].device_id;
        env[i].type = ob->e[i].type;
        env[i].body.data = ob->e[i].body;
        env[i].body.len = ob->e[i].len;
        envp[i] = &env[i];
    }
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__SendSecretRequest sr = PARLEY__V1__SEND_SECRET_REQUEST__INIT;
    Parley__V1__Peer to = PARLEY__V1__PEER__INIT;
    to.username = (char *)name;
    sr.to = &to;
    sr.client_id = client_id;
    sr.n_envelopes = ob->n;
    sr.envelopes = envp;
    req.method_case = PARLEY__V1__REQUEST__METHOD_SEND_SECRET;
    req.send_secret = &sr;
    /* A retry carries the same client_id and the same envelopes. */
    int err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_SEND_SECRET, out);
    if (!err && !(*out)->response->send_secret) {
        frame_free(*out);
        err = PARLEY_EPROTO;
    }
    return err;
}

static int check_text(const char *text, size_t len)
{
    size_t chars;
    if (len == 0)
        return PARLEY_EINVAL;
    if (utf8_check(text, len, &chars) != 0)
        return PARLEY_EBAD_UTF8;
    return chars > PARLEY_TEXT_MAX_CHARS ? PARLEY_ETEXT_TOO_LONG : 0;
}

/* Stores the sent message and fills out, if not NULL (strings in
 * p->keep_names). */
static void sent(struct parley *p, const char *name, uint64_t to_user_id, const char *text,
                 size_t len, uint32_t timer_s, uint64_t client_id,
                 const Parley__V1__SendSecretResponse *r, struct parley_msg *out)
{
    struct names *nm = &p->keep_names;
    struct msgstore_msg m = {
        .message_id = r->id,
        .from_user_id = p->acct.user_id,
        .to_user_id = to_user_id,
        .date = r->date,
        .timer_s = timer_s,
        .text = text,
        .text_len = len,
    };
    char dir[PATH_LEN];
    memcpy(m.from, p->acct.username, sizeof(m.from));
    memcpy(m.to, name, strlen(name) + 1);
    /* The server has the message whatever happens here: a failure only
     * leaves it out of this device's local copy of the chat. A duplicate
     * is stored too (the same file again): the first attempt's answer may
     * have been lost before its copy was stored. */
    if (secret__make_chat_dir(p, name, dir, sizeof(dir)) != 0 || msgstore_put(dir, &m, true) != 0)
        parley__log(p, 2, "secret: message %llu sent but not stored locally",
                    (unsigned long long)r->id);
    if (!out)
        return;
    snprintf(nm->from, sizeof(nm->from), "@%s", p->acct.username);
    snprintf(nm->to, sizeof(nm->to), "@%s", name);
    memcpy(nm->chat, nm->to, sizeof(nm->chat));
    memcpy(nm->text, text, len);
    nm->text[len] = '\0';
    memset(out, 0, sizeof(*out));
    out->id = r->id;
    out->client_id = client_id;
    out->from_user_id = p->acct.user_id;
    out->to_user_id = to_user_id;
    out->date = r->date;
    out->chat = nm->chat;
    out->from = nm->from;
    out->to = nm->to;
    out->text = nm->text;
    out->text_len = len;
    out->outgoing = true;
    out->duplicate = r->duplicate;
    out->secret = true;
    out->timer_s = timer_s;
}

/* Sends c in the secret chat with account name (normalized, not this
 * one); a message with text is kept in the home and described in out (may
 * be NULL). Needs the secret-state lock. */
static int send_content(struct parley *p, const char *name, const struct content *c,
                        uint64_t client_id, struct parley_msg *out)
{
    struct e2e_identity id = {0};
    struct reach to = {0};
    struct outbox *ob = NULL;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    PlFrame *resp = NULL;
    memcpy(to.peer, name, strlen(name) + 1);
    while (client_id == 0) {
        randombytes_buf(&client_id, sizeof(client_id));
        client_id &= CLIENT_ID_RANDOM_MASK;
    }
    int err = secret__identity(p, &id);
    if (err)
        return err;
    to.them = malloc(sizeof(*to.them));
    to.us = malloc(sizeof(*to.us));
    ob = calloc(1, sizeof(*ob));
    if (!to.them || !to.us || !ob) {
        err = PARLEY_ENOMEM;
        goto out;
    }
    if ((err = secret__trust_get(p, to.peer, 0, to.them)) ||
        (err = secret__trust_get(p, p->acct.username, p->acct.user_id, to.us)))
        goto out;
    if (trust_count(to.them) == 0) {
        /* No session yet: start one, as parley_secret_start would. The
         * record is looked up again with the account id the server gave:
         * another account's record is not trusted, and devices removed
         * before keep their keys. */
        if ((err = secret__get_bundles(p, to.peer, 0, &resp)))
            goto out;
        const Parley__V1__GetBundleResponse *r = resp->response->get_bundle;
        if (!(err = secret__trust_get(p, to.peer, r->user_id, to.them)))
            err = secret__start_sessions(p, &id, to.peer, r, to.them);
        frame_free(resp);
        resp = NULL;
        if (err || (err = secret__trust_put(p, to.peer, to.them)))
            goto out;
    }
    if (trust_any_changed(to.them) || trust_any_changed(to.us)) {
        err = PARLEY_EUNTRUSTED_IDENTITY;
        goto out;
    }
    if ((err = build_content(c, &pt, &pt_len)))
        goto out;
    err = seal_all(p, &id, &to, pt, pt_len, ob);
    for (int attempt = 1; !err; attempt++) {
        err = send_envelopes(p, to.peer, client_id, ob, &resp);
        if (err != PARLEY_EDEVICES_CHANGED || attempt == SEND_ATTEMPTS)
            break;
        err = fix_devices(p, &id, &to, pt, pt_len, ob);
    }
    /* New and changed keys are recorded whatever became of the send. A
     * failure is logged by secret__trust_put; it is not the caller's error: the
     * send's own result is (after a send that went through, a retry would
     * send twice), and an unsaved first use is simply seen again. */
    if (secret__trust_put(p, to.peer, to.them) == 0 && to.us->n)
        (void)secret__trust_put(p, p->acct.username, to.us);
    if (err)
        goto out;
    if (c->text && c->len)
        sent(p, to.peer, to.them->user_id, c->text, c->len, c->timer_s, client_id,
             resp->response->send_secret, out);
out:
    frame_free(resp);
    if (pt)
        sodium_free(pt);
    if (ob)
        outbox_clear(ob);
    free(ob);
    free(to.them);
    free(to.us);
    keys_free(id.key);
    return err;
}

/* The checks every secret send makes first, in the order of the contract. */
static int check_peer(struct parley *p, const char *peer, char name[USERNAME_MAX + 1])
{
    if (username_normalize(peer, name) != 0)
        return PARLEY_EBAD_USERNAME;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    return secret__is_me(p, name) ? PARLEY_EINVAL : 0;
}

static int send_secret(struct parley *p, const char *peer, const char *text, size_t len,
                       uint64_t client_id, struct parley_msg *out)
{
    char name[USERNAME_MAX + 1], dir[PATH_LEN];
    if (!p || !text || !peer)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    int err = check_text(text, len);
    if (err || (err = check_peer(p, peer, name)))
        return err;
    struct content c = {.text = text, .len = len};
    /* Messages whose timer ran out go before anything else happens. */
    if ((err = secret__expire(p, NULL)) || (err = secret__chat_dir(p, name, dir, sizeof(dir))) ||
        (err = msgstore_timer_get(dir, &c.timer_s)))
        return err;
    return send_content(p, name, &c, client_id, out);
}

int parley_send_secret(struct parley *p, const char *peer, const char *text, size_t len,
                       uint64_t client_id, struct parley_msg *out)
{
    if (!p || !p->has_account)
        return send_secret(p, peer, text, len, client_id, out); /* its checks come first */
    int err = secret__lock(p);
    if (err)
        return err;
    err = send_secret(p, peer, text, len, client_id, out);
    secret__unlock(p);
    return err;
}

/* Read receipts. */

/* Sends every read receipt owed, one message per chat (at most
 * RECEIPT_IDS_MAX ids each; the rest follow in the next one). A chat
 * whose receipt cannot be sent keeps it owed in its index, for the next
 * parley_recv (not the next wake-up: a peer whose key needs accepting
 * would be retried every second). Needs the secret-state lock. */
int secret__send_receipts(struct parley *p)
{
    char top[PATH_LEN], dir[PATH_LEN];
    int first = 0;
    int err = home_path(top, sizeof(top), p->home, SECRET_DIR);
    if (err)
        return err;
    DIR *ds = opendir(top);
    if (!ds)
        return errno == ENOENT ? 0 : PARLEY_EIO;
    const struct dirent *de;
    p->receipts_owed = false;
    while ((de = readdir(ds))) {
        char name[USERNAME_MAX + 1];
        uint64_t *ids = NULL;
        size_t n = 0;
        if (username_normalize(de->d_name, name) != 0 || strcmp(name, de->d_name) != 0 ||
            secret__is_me(p, name) || secret__chat_dir(p, name, dir, sizeof(dir)) != 0)
            continue;
        int serr = 0;
        err = msgstore_receipts_owed(dir, &ids, &n);
        if (!err && n) {
            struct content c = {.read = ids, .n_read = PL_MIN(n, (size_t)RECEIPT_IDS_MAX)};
            serr = send_content(p, name, &c, 0, NULL);
            if (!serr)
                err = msgstore_receipts_sent(dir, ids, c.n_read);
            if (!serr && !err)
                parley__log(p, 0, "secret: sent a read receipt for %zu message(s) to @%s", c.n_read,
                            name);
        }
        free(ids);
        /* Not sent (the peer's key needs accepting, the network failed):
         * owed, not the recv's failure. A damaged index is. */
        if (serr)
            parley__log(p, 2, "secret: read receipt to @%s not sent: %s", name, err_name(serr));
        if (err) {
            parley__log(p, 3, "secret: read receipts of @%s: %s", name, err_name(err));
            first = first ? first : secret__local_err(err);
        }
        if (parley__is_transport_err(serr))
            break;
    }
    closedir(ds);
    return first;
}

/* Self-destruct timers: changing one. */

static int secret_timer(struct parley *p, const char *peer, uint32_t timer_s)
{
    char name[USERNAME_MAX + 1], dir[PATH_LEN];
    uint32_t old;
    if (!p || !peer || timer_s > MSGSTORE_TIMER_MAX)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    int err = check_peer(p, peer, name);
    /* A damaged timer file is refused before anything is sent. */
    if (err || (err = secret__expire(p, NULL)) ||
        (err = secret__chat_dir(p, name, dir, sizeof(dir))) ||
        (err = secret__local_err(msgstore_timer_get(dir, &old))))
        return err;
    struct content c = {.timer_s = timer_s, .timer_update = true};
    if ((err = send_content(p, name, &c, 0, NULL)))
        return err;
    /* The peer has the change: record it for the messages sent from now. */
    if ((err = secret__make_chat_dir(p, name, dir, sizeof(dir))) ||
        (err = msgstore_timer_set(dir, timer_s)))
        parley__log(p, 3, "secret: timer of @%s sent but not recorded: %s", name, err_name(err));
    else
        parley__log(p, 1, "secret: timer of the chat with @%s set to %u s", name,
                    (unsigned)timer_s);
    return err;
}

int parley_secret_timer(struct parley *p, const char *peer, uint32_t timer_s)
{
    if (!p || !p->has_account)
        return secret_timer(p, peer, timer_s); /* its checks come first */
    int err = secret__lock(p);
    if (err)
        return err;
    err = secret_timer(p, peer, timer_s);
    secret__unlock(p);
    return err;
}
