/* SPDX-License-Identifier: MIT */
/* Receiving in secret chats: envelopes fetched or pushed are decrypted,
 * stored, delivered exactly once and acked; received receipts and timer
 * changes are applied; messages whose self-destruct timer ran out are
 * deleted. Sessions and trust records are secret.c's; the crash ordering is
 * described in docs/internals/client.md. */
#include "secret_int.h"

#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "crypto/xeddsa.h"
#include "msgstore.h"
#include "trust.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/banned.h"

#define FETCH_LIMIT 100

/* Self-destruct timers: expiry. */

/* Tells d's callback (if any) that the messages ids of the chat with name
 * are gone. */
static void deliver_deleted(const char *name, const uint64_t *ids, size_t n, struct delivery *d)
{
    char chat[NAME_LEN];
    struct parley_msg msg;
    if (!d || !d->cb)
        return;
    memset(&msg, 0, sizeof(msg));
    snprintf(chat, sizeof(chat), "@%s", name);
    msg.kind = PARLEY_MSG_DELETED;
    msg.secret = true;
    msg.chat = chat;
    msg.from = msg.to = msg.text = "";
    msg.deleted_ids = ids;
    msg.n_deleted = n;
    if (d->cb(d->arg, &msg) != 0)
        d->stop = true;
}

/* Deletes every stored message whose timer ran out, in every chat; each
 * chat's removals go to d (may be NULL) as one DELETED entry. A damaged
 * chat is logged and skipped, and its error returned once the others are
 * done. Needs the secret-state lock. */
int secret__expire(struct parley *p, struct delivery *d)
{
    char top[PATH_LEN], dir[PATH_LEN];
    int first = 0;
    int err = home_path(top, sizeof(top), p->home, SECRET_DIR);
    if (err)
        return err;
    DIR *ds = opendir(top);
    if (!ds)
        return errno == ENOENT ? 0 : PARLEY_EIO;
    int64_t now = (int64_t)time(NULL);
    const struct dirent *de;
    while (!(d && d->stop) && (de = readdir(ds))) {
        char name[USERNAME_MAX + 1];
        uint64_t *ids = NULL;
        size_t n = 0;
        int64_t next;
        if (username_normalize(de->d_name, name) != 0 || strcmp(name, de->d_name) != 0 ||
            secret__chat_dir(p, name, dir, sizeof(dir)) != 0)
            continue;
        if ((err = msgstore_expire(dir, now, &ids, &n, &next))) {
            parley__log(p, 3, "secret: cannot delete expired messages of @%s: %s", name,
                        err_name(err));
            first = first ? first : secret__local_err(err);
            continue;
        }
        if (n) {
            parley__log(p, 0, "secret: %zu message(s) of @%s self-destructed", n, name);
            deliver_deleted(name, ids, n, d);
        }
        free(ids);
    }
    closedir(ds);
    return first;
}

int parley__secret_expire(struct parley *p, struct delivery *d)
{
    int err = secret__lock(p);
    if (err)
        return err;
    err = secret__expire(p, d);
    secret__unlock(p);
    return err;
}

/* Receiving. */

/* The responder's prekey store (e2e_lookup), with the client's error
 * mapping for a damaged file. */
static int on_lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out)
{
    return secret__local_err(e2e_lookup(arg, is_signed, id, out));
}

/* True when a decrypt failure is the envelope's fault (garbage, replay,
 * no session): it is then refused for good. Anything else is ours. */
static bool is_message_fault(int err)
{
    switch (err) {
    case PARLEY_EBAD_SIGNATURE:
    case PARLEY_EBAD_NONCE:
    case PARLEY_EMALFORMED:
    case PARLEY_EVERSION:
    case PARLEY_EBAD_KEY:
    case PARLEY_ETOOBIG:
    case PARLEY_ENOTFOUND:
    case PARLEY_EINVAL:
        return true;
    default:
        return false;
    }
}

/* A decrypted envelope, before it is stored. */
struct opened {
    struct ratchet *s;   /* the session it decrypted on, moved on: saved as current */
    struct ratchet *old; /* the current session it displaced: saved as previous; may be NULL */
    uint8_t *pt;
    size_t pt_len;
    bool used_prekey;
    uint32_t used_prekey_id;
};

static void opened_free(struct opened *o)
{
    ratchet_plaintext_free(o->pt, o->pt_len);
    ratchet_free(o->s);
    ratchet_free(o->old);
    memset(o, 0, sizeof(*o));
}

/* Loads the current (prev false) or previous session with the sender's
 * device into *s: NULL when there is none. */
static int load_session(struct parley *p, const Parley__V1__SecretEnvelope *e, bool prev,
                        struct ratchet **s)
{
    char name[E2E_PEER_LEN];
    if (prev)
        secret__e2e_peer_prev(e->from_user_id, name);
    else
        secret__e2e_peer(e->from_user_id, name);
    *s = NULL;
    int err = e2e_session_load(&p->e2e, name, (uint32_t)e->from_device_id, s);
    return err == PARLEY_ENOTFOUND ? 0 : secret__local_err(err);
}

/* Decrypts e with session *s (NULL: none yet). A PreKeySignalMessage that
 * starts a new session replaces *s, freeing the one it replaced. */
static int decrypt_with(struct parley *p, const struct e2e_identity *id,
                        const Parley__V1__SecretEnvelope *e, struct ratchet **s, struct opened *o)
{
    if (e->type != RATCHET_MSG_PREKEY)
        return *s ? ratchet_decrypt(*s, e->body.data, e->body.len, &o->pt, &o->pt_len)
                  : PARLEY_ENOTFOUND;
    struct e2e_lookup lk = {.dir = &p->e2e, .identity = id->key};
    struct ratchet_responder me = {.identity = id->key,
                                   .registration_id = id->registration_id,
                                   .lookup = on_lookup,
                                   .arg = &lk};
    int err = ratchet_decrypt_prekey(s, &me, e->body.data, e->body.len, &o->pt, &o->pt_len,
                                     &o->used_prekey, &o->used_prekey_id);
    e2e_lookup_release(&lk);
    return err;
}

/* Decrypts e with the current session of its device, else with the
 * previous one, which then becomes current again: when both ends started a
 * session, each replaced the other's, and the one the peer still sends on
 * wins. A PreKeySignalMessage that starts a new session displaces the
 * current one to the archive. */
static int open_envelope(struct parley *p, const struct e2e_identity *id,
                         const Parley__V1__SecretEnvelope *e, struct opened *o)
{
    struct ratchet *cur = NULL, *copy = NULL, *prev = NULL;
    memset(o, 0, sizeof(*o));
    int err = load_session(p, e, false, &cur);
    /* ratchet_decrypt_prekey frees a session it replaces: keep a copy. */
    if (!err && cur && e->type == RATCHET_MSG_PREKEY)
        err = load_session(p, e, false, &copy);
    if (err)
        goto out;
    const struct ratchet *before = cur;
    err = decrypt_with(p, id, e, &cur, o);
    if (!err) {
        o->s = cur;
        cur = NULL;
        if (copy && o->s != before) {
            o->old = copy;
            copy = NULL;
        }
        goto out;
    }
    int first = err;
    if (!is_message_fault(first))
        goto out;
    if ((err = load_session(p, e, true, &prev)) || !prev) {
        err = err ? err : first;
        goto out;
    }
    if (decrypt_with(p, id, e, &prev, o) != 0) {
        err = first; /* the current session's refusal is the one to report */
        goto out;
    }
    err = 0;
    parley__log(p, 1, "secret: user %llu device %llu went back to the previous session",
                (unsigned long long)e->from_user_id, (unsigned long long)e->from_device_id);
    o->s = prev;
    prev = NULL;
    /* For a PreKeySignalMessage cur may have been freed; copy is intact. */
    if (e->type == RATCHET_MSG_PREKEY) {
        o->old = copy;
        copy = NULL;
    } else {
        o->old = cur;
        cur = NULL;
    }
out:
    ratchet_free(cur);
    ratchet_free(copy);
    ratchet_free(prev);
    return err;
}

/* A received SecretContent: text (sodium_malloc'ed, wiped on free) and
 * read (malloc'ed) owned; free with parsed_free. */
struct parsed {
    char *text;
    size_t text_len;
    uint32_t timer_s;
    bool timer_update;
    uint64_t *read;
    size_t n_read;
};

static void parsed_free(struct parsed *c)
{
    if (c->text)
        sodium_free(c->text);
    free(c->read);
    memset(c, 0, sizeof(*c));
}

/* Parses the plaintext; the text is copied to a wiped buffer (the
 * unpacked copy is wiped too). Returns 0, or PARLEY_EMALFORMED (not a
 * SecretContent, bad UTF-8, too long, a timer out of range, too many
 * receipts), PARLEY_ENOMEM. */
static int parse_content(const uint8_t *pt, size_t len, struct parsed *out)
{
    Parley__V1__SecretContent *c = parley__v1__secret_content__unpack(NULL, len, pt);
    size_t chars;
    int err = 0;
    memset(out, 0, sizeof(*out));
    if (!c)
        return PARLEY_EMALFORMED;
    if (c->text.len > TEXT_MAX_BYTES ||
        (c->text.len && (utf8_check((const char *)c->text.data, c->text.len, &chars) != 0 ||
                         chars > PARLEY_TEXT_MAX_CHARS)) ||
        c->timer_s > MSGSTORE_TIMER_MAX || c->n_read > RECEIPT_IDS_MAX)
        err = PARLEY_EMALFORMED;
    if (!err && !(out->text = sodium_malloc(c->text.len + 1)))
        err = PARLEY_ENOMEM;
    if (!err && c->n_read && !(out->read = malloc(c->n_read * sizeof(*out->read))))
        err = PARLEY_ENOMEM;
    if (!err) {
        if (c->text.len)
            memcpy(out->text, c->text.data, c->text.len);
        out->text[c->text.len] = '\0';
        out->text_len = c->text.len;
        out->timer_s = c->timer_s;
        out->timer_update = c->timer_update;
        if (c->n_read)
            memcpy(out->read, c->read, c->n_read * sizeof(*out->read));
        out->n_read = c->n_read;
    } else {
        parsed_free(out);
    }
    if (c->text.data)
        sodium_memzero(c->text.data, c->text.len);
    parley__v1__secret_content__free_unpacked(c, NULL);
    return err;
}

/* Hands a stored message to the callback as a struct parley_msg. Returns
 * 0, or PARLEY_ENOMEM (the message stays pending for the next recv). */
static int deliver(const struct parley *p, const struct msgstore_msg *m, struct delivery *d)
{
    struct names *nm = malloc(sizeof(*nm));
    struct parley_msg msg;
    if (!nm)
        return PARLEY_ENOMEM;
    memset(&msg, 0, sizeof(msg));
    snprintf(nm->from, sizeof(nm->from), "@%s", m->from);
    snprintf(nm->to, sizeof(nm->to), "@%s", m->to);
    msg.outgoing = m->from_user_id == p->acct.user_id;
    memcpy(nm->chat, msg.outgoing ? nm->to : nm->from, sizeof(nm->chat));
    memcpy(nm->text, m->text, m->text_len);
    nm->text[m->text_len] = '\0';
    msg.id = m->message_id;
    msg.from_user_id = m->from_user_id;
    msg.to_user_id = m->to_user_id;
    msg.date = m->date;
    msg.chat = nm->chat;
    msg.from = nm->from;
    msg.to = nm->to;
    msg.text = nm->text;
    msg.text_len = m->text_len;
    msg.secret = true;
    msg.identity_changed = m->identity_changed;
    msg.kind = PARLEY_MSG_TEXT;
    msg.expires = m->expires;
    msg.timer_s = m->timer_s;
    if (d->cb && d->cb(d->arg, &msg) != 0)
        d->stop = true;
    d->delivered++;
    sodium_memzero(nm, sizeof(*nm));
    free(nm);
    return 0;
}

/* Reading a received message with a timer starts it: the message gets
 * its expiry, and a read receipt is owed to the sender. */
static void start_timer(const struct parley *p, struct msgstore_msg *m)
{
    if (m->timer_s && m->from_user_id != p->acct.user_id && m->expires == 0)
        m->expires = (int64_t)time(NULL) + m->timer_s;
}

/* Deletes at once a message whose timer cannot be recorded (the chat has
 * MSGSTORE_EXPIRING_MAX waiting), reports it to d, and owes its receipt
 * when owed (a received message read now). */
static int delete_now(struct parley *p, const char *dir, const char *chat, uint64_t message_id,
                      uint64_t from_user_id, bool owed, struct delivery *d)
{
    parley__log(p, 2, "secret: too many messages of @%s waiting for their timer; deleting %llu",
                chat, (unsigned long long)message_id);
    int err = msgstore_remove(dir, message_id, from_user_id);
    if (!err && owed && !(err = msgstore_owe_receipt(dir, message_id, from_user_id)))
        p->receipts_owed = true;
    if (!err)
        deliver_deleted(chat, &message_id, 1, d);
    return secret__local_err(err);
}

/* After the callback saw m: records its expiry (a full index deletes it
 * at once, reported: it was read), then marks it delivered. */
static int delivered(struct parley *p, const char *dir, const struct msgstore_msg *m,
                     struct delivery *d)
{
    int err = 0;
    if (m->expires) {
        err = msgstore_set_expiry(dir, m->message_id, m->from_user_id, m->expires, true);
        if (err == PARLEY_EBUSY)
            return delete_now(p, dir, m->from_user_id == p->acct.user_id ? m->to : m->from,
                              m->message_id, m->from_user_id, true, d);
        if (!err)
            p->receipts_owed = true;
    }
    return err ? secret__local_err(err)
               : msgstore_mark_delivered(dir, m->message_id, m->from_user_id);
}

/* Delivers a message stored by an earlier run that stopped before
 * delivering it, then marks it delivered. */
static int deliver_stored(struct parley *p, const char *dir, uint64_t message_id,
                          uint64_t from_user_id, struct delivery *d)
{
    struct msgstore_msg m;
    int err = msgstore_get(dir, message_id, from_user_id, &m);
    if (err)
        return secret__local_err(err);
    start_timer(p, &m);
    err = deliver(p, &m, d);
    if (!err)
        err = delivered(p, dir, &m, d);
    msgstore_text_free(&m);
    return err;
}

/* Shows a timer change of the chat with chat, made by from (the peer, or
 * another device of ours), once it is recorded; changed: sent by a device
 * whose identity key changed and is not accepted, and not recorded. */
static void deliver_timer(const struct parley *p, const char *from, const char *chat,
                          const Parley__V1__SecretEnvelope *e, uint32_t timer_s, bool changed,
                          struct delivery *d)
{
    char chat_at[NAME_LEN], from_at[NAME_LEN];
    struct parley_msg msg;
    memset(&msg, 0, sizeof(msg));
    snprintf(chat_at, sizeof(chat_at), "@%s", chat);
    snprintf(from_at, sizeof(from_at), "@%s", from);
    msg.kind = PARLEY_MSG_TTL;
    msg.id = e->message_id;
    msg.from_user_id = e->from_user_id;
    msg.to_user_id = e->to_user_id;
    msg.date = e->date;
    msg.outgoing = e->from_user_id == p->acct.user_id;
    msg.secret = true;
    msg.chat = chat_at;
    msg.from = from_at;
    msg.to = msg.text = "";
    msg.ttl_s = timer_s;
    msg.identity_changed = changed;
    if (d->cb && d->cb(d->arg, &msg) != 0)
        d->stop = true;
    d->delivered++;
}

/* A read receipt: the messages it names, of the other party of its
 * sender, expire timer_s after the receipt's date. A receipt from the peer
 * names our messages; one from another device of ours, the peer's. */
static int apply_receipt(struct parley *p, const char *dir, const char *chat,
                         const Parley__V1__SecretEnvelope *e, const struct parsed *c,
                         struct delivery *d)
{
    uint64_t author = e->from_user_id == p->acct.user_id ? e->to_user_id : p->acct.user_id;
    for (size_t i = 0; i < c->n_read; i++) {
        struct msgstore_msg m;
        int err = msgstore_get(dir, c->read[i], author, &m);
        if (err == PARLEY_ENOTFOUND)
            continue; /* deleted already, or never here */
        if (err)
            return secret__local_err(err);
        uint32_t timer_s = m.timer_s;
        msgstore_text_free(&m);
        if (timer_s == 0 || e->date <= 0)
            continue;
        err = msgstore_set_expiry(dir, c->read[i], author, e->date + (int64_t)timer_s, false);
        if (err == PARLEY_EBUSY)
            err = delete_now(p, dir, chat, c->read[i], author, false, d);
        if (err)
            return secret__local_err(err);
    }
    return 0;
}

/* Records the sender's key: the message is flagged when it is changed. */
static int check_sender(struct parley *p, const char *from, const Parley__V1__SecretEnvelope *e,
                        const struct ratchet *s, struct trust *t, bool *changed)
{
    enum trust_verdict v;
    int err = secret__trust_get(p, from, e->from_user_id, t);
    if (!err)
        err = trust_see(t, e->from_device_id, ratchet_their_identity(s), &v);
    if (err)
        return err;
    if (v == TRUST_CHANGED)
        parley__log(p, 2, "secret: identity key of @%s device %llu changed", from,
                    (unsigned long long)e->from_device_id);
    *changed = trust_is_changed(trust_find(t, e->from_device_id));
    return 0;
}

/* For an envelope whose message an earlier run stored (pending) and may
 * have stopped before saving the session: decrypts it again and, if that
 * works, saves the session and deletes the used one-time prekey, so that
 * neither the message key nor the prekey's secret stays on disk and the
 * envelope, fetched again, cannot be decrypted again. The plaintext is
 * discarded: the stored copy is the one delivered. A refusal that is the
 * envelope's (a replay) means the session had moved on: 0. */
static int finish_session(struct parley *p, const struct e2e_identity *id,
                          const Parley__V1__SecretEnvelope *e)
{
    char e2e_name[E2E_PEER_LEN];
    struct opened o;
    int err = open_envelope(p, id, e, &o);
    if (err)
        return is_message_fault(err) ? 0 : err;
    secret__e2e_peer(e->from_user_id, e2e_name);
    err = secret__local_err(e2e_session_save(&p->e2e, e2e_name, (uint32_t)e->from_device_id, o.s));
    if (!err && o.old)
        err = secret__archive_session(p, e->from_user_id, e->from_device_id, o.old);
    if (!err && o.used_prekey && e2e_prekey_remove(&p->e2e, o.used_prekey_id) != 0)
        parley__log(p, 3, "secret: cannot delete used one-time prekey %u",
                    (unsigned)o.used_prekey_id);
    if (!err)
        parley__log(p, 1, "secret: session with user %llu device %llu saved after a stop",
                    (unsigned long long)e->from_user_id, (unsigned long long)e->from_device_id);
    opened_free(&o);
    return err;
}

/* Takes one envelope: decrypts it, stores the message pending, saves the
 * trust record and session, deletes the used one-time prekey, delivers,
 * marks it delivered. Sets *ack when the server may delete it (taken, or
 * refused for good). A stored message is never decrypted again, so a crash
 * before the ack delivers nothing twice. */
static int take_envelope(struct parley *p, const struct e2e_identity *id,
                         const Parley__V1__SecretEnvelope *e, struct delivery *d, bool *ack)
{
    char from[USERNAME_MAX + 1], to[USERNAME_MAX + 1], dir[PATH_LEN];
    struct opened o;
    struct trust *t = NULL;
    struct parsed c = {0};
    enum msgstore_state state;
    bool changed = false;
    *ack = true;
    if (!e->from_username || !e->to_username || username_normalize(e->from_username, from) ||
        username_normalize(e->to_username, to) || e->message_id == 0 || e->from_user_id == 0 ||
        e->from_device_id == 0 || e->from_device_id > UINT32_MAX || e->body.len == 0 ||
        (e->type != RATCHET_MSG_PREKEY && e->type != RATCHET_MSG_WHISPER) ||
        (e->from_user_id == p->acct.user_id &&
         (e->from_device_id == p->acct.device_id || strcmp(from, p->acct.username) != 0)) ||
        (e->from_user_id != p->acct.user_id && e->to_user_id != p->acct.user_id)) {
        parley__log(p, 2, "secret: dropping malformed envelope %llu", (unsigned long long)e->id);
        return 0;
    }
    bool outgoing = e->from_user_id == p->acct.user_id;
    int err = secret__make_chat_dir(p, outgoing ? to : from, dir, sizeof(dir));
    if (!err)
        err = msgstore_state(dir, e->message_id, e->from_user_id, &state);
    if (err)
        goto hold;
    if (state == MSGSTORE_DELIVERED) {
        parley__log(p, 0, "secret: envelope %llu was taken before; acking it",
                    (unsigned long long)e->id);
        return 0;
    }
    if (state == MSGSTORE_PENDING) {
        parley__log(p, 0, "secret: envelope %llu was stored before; delivering it",
                    (unsigned long long)e->id);
        if ((err = finish_session(p, id, e)) ||
            (err = deliver_stored(p, dir, e->message_id, e->from_user_id, d)))
            goto hold;
        return 0;
    }
    err = open_envelope(p, id, e, &o);
    if (err) {
        if (!is_message_fault(err))
            goto hold;
        parley__log(p, 2, "secret: dropping envelope %llu from user %llu device %llu: %s",
                    (unsigned long long)e->id, (unsigned long long)e->from_user_id,
                    (unsigned long long)e->from_device_id, err_name(err));
        return 0;
    }
    err = parse_content(o.pt, o.pt_len, &c);
    if (err == PARLEY_EMALFORMED) {
        parley__log(p, 2, "secret: dropping envelope %llu: not a message",
                    (unsigned long long)e->id);
        opened_free(&o);
        return 0;
    }
    if (err || !(t = malloc(sizeof(*t)))) {
        err = err ? err : PARLEY_ENOMEM;
        goto hold_opened;
    }
    if ((err = check_sender(p, from, e, o.s, t, &changed))) {
        if (err != PARLEY_EPROTO)
            goto hold_opened;
        /* The sender's record is full: the envelope's fault, never a
         * reason to block the queue behind it. */
        parley__log(p, 2, "secret: dropping envelope %llu: user %llu has too many devices",
                    (unsigned long long)e->id, (unsigned long long)e->from_user_id);
        opened_free(&o);
        parsed_free(&c);
        free(t);
        return 0;
    }
    struct msgstore_msg m = {
        .message_id = e->message_id,
        .from_user_id = e->from_user_id,
        .to_user_id = e->to_user_id,
        .date = e->date,
        .timer_s = c.timer_s,
        .identity_changed = changed,
        .text = c.text,
        .text_len = c.text_len,
    };
    memcpy(m.from, from, sizeof(m.from));
    memcpy(m.to, to, sizeof(m.to));
    char e2e_name[E2E_PEER_LEN];
    secret__e2e_peer(e->from_user_id, e2e_name);
    /* A timer change or receipts from a device whose key changed and is
     * not accepted may come from whoever holds that key: not applied (the
     * change is still shown, flagged). */
    bool apply = !changed;
    if (changed && (c.timer_update || c.n_read))
        parley__log(p, 2,
                    "secret: timer change or receipts of envelope %llu not applied: "
                    "the identity key of @%s device %llu is not accepted",
                    (unsigned long long)e->id, from, (unsigned long long)e->from_device_id);
    /* Stored first: once the session moves on, the message could not be
     * decrypted again. A message without text (a receipt, a timer change)
     * is not stored; what it changes is recorded before the session moves
     * on, so a crash between the two applies it again, harmlessly. */
    if ((c.text_len && (err = msgstore_put(dir, &m, false))) ||
        (apply && c.timer_update &&
         (err = secret__local_err(msgstore_timer_set(dir, c.timer_s)))) ||
        (apply && c.n_read && (err = apply_receipt(p, dir, outgoing ? to : from, e, &c, d))) ||
        (err = secret__trust_put(p, from, t)) ||
        (err = secret__local_err(
             e2e_session_save(&p->e2e, e2e_name, (uint32_t)e->from_device_id, o.s))) ||
        (o.old && (err = secret__archive_session(p, e->from_user_id, e->from_device_id, o.old))))
        goto hold_opened;
    /* A used one-time prekey must go, or its secret outlives the session. */
    if (o.used_prekey && e2e_prekey_remove(&p->e2e, o.used_prekey_id) != 0)
        parley__log(p, 3, "secret: cannot delete used one-time prekey %u",
                    (unsigned)o.used_prekey_id);
    if (c.timer_update) {
        if (apply)
            parley__log(p, 1, "secret: @%s set the timer of the chat with @%s to %u s", from,
                        outgoing ? to : from, (unsigned)c.timer_s);
        deliver_timer(p, from, outgoing ? to : from, e, c.timer_s, changed, d);
    }
    if (c.text_len) {
        start_timer(p, &m);
        if (!(err = deliver(p, &m, d)))
            err = delivered(p, dir, &m, d);
    }
    opened_free(&o);
    parsed_free(&c);
    free(t);
    if (err) {
        /* Stored: the next recv delivers it from the store. */
        *ack = false;
        parley__log(p, 3, "secret: message %llu stored but not delivered: %s",
                    (unsigned long long)e->message_id, err_name(err));
    }
    return err;
hold_opened:
    opened_free(&o);
    parsed_free(&c);
    free(t);
hold:
    *ack = false;
    parley__log(p, 3, "secret: cannot take envelope %llu: %s", (unsigned long long)e->id,
                err_name(err));
    return err;
}

static int ack(struct parley *p, const uint64_t *ids, size_t n)
{
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__AckSecretRequest ar = PARLEY__V1__ACK_SECRET_REQUEST__INIT;
    PlFrame *resp;
    if (n == 0)
        return 0;
    ar.n_ids = n;
    ar.ids = (uint64_t *)ids;
    req.method_case = PARLEY__V1__REQUEST__METHOD_ACK_SECRET;
    req.ack_secret = &ar;
    int err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_ACK_SECRET, &resp);
    if (!err)
        frame_free(resp);
    return err;
}

/* Takes envelopes in order until one fails or the callback stops, then
 * acks those taken. *taken counts them. */
static int take_batch(struct parley *p, const struct e2e_identity *id,
                      Parley__V1__SecretEnvelope *const *envs, size_t n, struct delivery *d,
                      size_t *taken)
{
    uint64_t ids[FETCH_LIMIT] = {0}; /* zeroed: GCC cannot see that ack() reads only n_ids */
    size_t n_ids = 0;
    int err = 0;
    *taken = 0;
    for (size_t i = 0; i < n && !d->stop; i++) {
        bool do_ack = false;
        if (!envs[i])
            continue;
        if ((err = take_envelope(p, id, envs[i], d, &do_ack)))
            break;
        (*taken)++;
        if (do_ack)
            ids[n_ids++] = envs[i]->id;
        if (n_ids == FETCH_LIMIT) {
            if ((err = ack(p, ids, n_ids)))
                return err;
            n_ids = 0;
        }
    }
    int aerr = ack(p, ids, n_ids);
    return err ? err : aerr;
}

static int fetch_all(struct parley *p, const struct e2e_identity *id, struct delivery *d)
{
    for (;;) {
        PlRequest req = PARLEY__V1__REQUEST__INIT;
        Parley__V1__FetchSecretRequest fr = PARLEY__V1__FETCH_SECRET_REQUEST__INIT;
        PlFrame *resp;
        size_t taken;
        fr.limit = FETCH_LIMIT;
        req.method_case = PARLEY__V1__REQUEST__METHOD_FETCH_SECRET;
        req.fetch_secret = &fr;
        int err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_FETCH_SECRET, &resp);
        if (err)
            return err;
        const Parley__V1__FetchSecretResponse *r = resp->response->fetch_secret;
        size_t n = r ? PL_MIN(r->n_envelopes, (size_t)FETCH_LIMIT) : 0;
        err = r ? take_batch(p, id, r->envelopes, n, d, &taken) : PARLEY_EPROTO;
        bool more = r && r->more;
        frame_free(resp);
        if (!err && !more)
            parley__log(p, 0, "secret: no more queued envelopes");
        if (err || d->stop || !more)
            return err;
        if (taken == 0) {
            parley__log(p, 3, "secret: server says more but sent nothing");
            return PARLEY_EPROTO;
        }
    }
}

/* Takes the queued Push.secret frames; more may queue while it acks. */
static int take_pushed(struct parley *p, const struct e2e_identity *id, struct delivery *d)
{
    int err = 0;
    while (p->secq_len && !err && !d->stop) {
        size_t n = PL_MIN(p->secq_len, (size_t)FETCH_LIMIT), taken;
        PlFrame *batch[FETCH_LIMIT];
        Parley__V1__SecretEnvelope *envs[FETCH_LIMIT];
        memcpy(batch, p->secq, n * sizeof(batch[0]));
        memmove(p->secq, p->secq + n, (p->secq_len - n) * sizeof(p->secq[0]));
        p->secq_len -= n;
        for (size_t i = 0; i < n; i++)
            envs[i] = batch[i]->push->secret;
        err = take_batch(p, id, envs, n, d, &taken);
        for (size_t i = 0; i < n; i++)
            frame_free(batch[i]);
    }
    /* Left after a stop or error: still queued on the server. */
    parley__secret_clear(p);
    return err;
}

int parley__secret_recv(struct parley *p, struct delivery *d, bool fetch)
{
    struct e2e_identity id = {0};
    int err;
    if (p->keys_low && p->authed && (err = parley__keys_check(p)) && parley__is_transport_err(err))
        return err;
    if ((err = secret__lock(p)))
        return err;
    /* Every wake-up deletes what expired, before anything is shown. */
    if ((err = secret__expire(p, d)) || d->stop ||
        (!fetch && !p->secret_lost && p->secq_len == 0 && !p->receipts_owed)) {
        secret__unlock(p);
        return err;
    }
    if ((err = secret__identity(p, &id))) {
        secret__unlock(p);
        return err;
    }
    if (fetch || p->secret_lost) {
        p->secret_lost = false;
        err = fetch_all(p, &id, d);
        if (err == PARLEY_EUNKNOWN_METHOD) {
            parley__log(p, 0, "secret: this server has no secret chats");
            err = 0;
        }
    }
    if (!err && !d->stop)
        err = take_pushed(p, &id, d);
    /* Owed from what this call delivered, or (on the first call of a
     * parley_recv) left by an earlier one that could not send them. */
    if (!err && (fetch || p->receipts_owed))
        err = secret__send_receipts(p);
    keys_free(id.key);
    secret__unlock(p);
    return err;
}

void parley__secret_clear(struct parley *p)
{
    for (size_t i = 0; i < p->secq_len; i++)
        frame_free(p->secq[i]);
    p->secq_len = 0;
}
