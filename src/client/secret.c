/* SPDX-License-Identifier: MIT */
/* Secret chats in libparley: sessions started from peers' bundles, sends
 * encrypted once per device, envelopes taken from the server exactly once
 * into the local store, trust on first use and safety numbers. This
 * device's keys on the server are prekeys.c's, the cryptography
 * src/crypto's, the key and session files src/e2e's; the flows and their
 * crash ordering are described in docs/internals/client.md. */
#include "parley_int.h"

#include "common/err.h"
#include "crypto/fingerprint.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "crypto/x3dh.h"
#include "crypto/xeddsa.h"
#include "msgstore.h"
#include "trust.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/banned.h"

#define SECRET_DIR "secret"
#define LOCK_FILE "secret.lock"
#define TRUST_FILE "trust"
#define REGISTRATION_ID_MAX 16383
#define ENVELOPES_MAX 100 /* per send, as the protocol allows */
#define SEND_ATTEMPTS 3   /* a send and two retries after DEVICES_CHANGED */
#define FETCH_LIMIT 100
#define PAD_BLOCK 160   /* packed content is padded to a multiple of this */
#define E2E_PEER_LEN 32 /* "u" + 20 digits + ".prev" + NUL */

#define RECEIPT_IDS_MAX MSGSTORE_EXPIRING_MAX /* message ids in one receipt */

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

/* Serializes changes of the secret-chat state between the processes that
 * share a home (a recv --follow beside a send): a session is read,
 * advanced and written back, and two writers at once would lose an update
 * and use a message key twice. Nests within one struct parley. */
int secret__lock(struct parley *p)
{
    char path[PATH_LEN];
    if (p->lock_depth > 0) {
        p->lock_depth++;
        return 0;
    }
    int err = home_path(path, sizeof(path), p->home, LOCK_FILE);
    if (err)
        return err;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return PARLEY_EIO;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return PARLEY_EIO;
        }
    }
    p->lock_fd = fd;
    p->lock_depth = 1;
    return 0;
}

void secret__unlock(struct parley *p)
{
    if (--p->lock_depth == 0)
        close(p->lock_fd); /* releases the lock */
}

static bool is_me(const struct parley *p, const char *name)
{
    return strcmp(name, p->acct.username) == 0;
}

/* The e2e peer name of an account: sessions are files named after it. */
static void e2e_peer(uint64_t user_id, char out[E2E_PEER_LEN])
{
    snprintf(out, E2E_PEER_LEN, "u%llu", (unsigned long long)user_id);
}

/* The e2e peer name under which the session a device had before its
 * current one is kept (see "Secret chats" in docs/internals/client.md). */
static void e2e_peer_prev(uint64_t user_id, char out[E2E_PEER_LEN])
{
    snprintf(out, E2E_PEER_LEN, "u%llu.prev", (unsigned long long)user_id);
}

/* Files of e2e, the crypto and msgstore report damage in their own words;
 * to the application a damaged local file is PARLEY_ECONFIG. */
int secret__local_err(int err)
{
    return err == PARLEY_EMALFORMED || err == PARLEY_EVERSION ? PARLEY_ECONFIG : err;
}

static int chat_dir(const struct parley *p, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s/%s", p->home, SECRET_DIR, name);
    return n < 0 || (size_t)n >= size ? PARLEY_EINVAL : 0;
}

/* HOME/secret/NAME, created 0700 with its parent when missing. */
static int make_chat_dir(const struct parley *p, const char *name, char *out, size_t size)
{
    char top[PATH_LEN];
    int err = home_path(top, sizeof(top), p->home, SECRET_DIR);
    if (!err)
        err = home_init(top);
    if (!err)
        err = chat_dir(p, name, out, size);
    if (!err)
        err = home_init(out);
    return err;
}

static int trust_path(const struct parley *p, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s/%s/%s", p->home, SECRET_DIR, name, TRUST_FILE);
    return n < 0 || (size_t)n >= size ? PARLEY_EINVAL : 0;
}

/* The trust record of account name (user_id, when known, is its account
 * id: a record of another account under the same name is replaced by an
 * empty one whose devices are all recorded as changed). A missing file is
 * an empty record. */
static int trust_get(const struct parley *p, const char *name, uint64_t user_id, struct trust *t)
{
    char path[PATH_LEN];
    int err = trust_path(p, name, path, sizeof(path));
    if (!err)
        err = trust_load(path, t);
    if (err == PARLEY_ENOTFOUND) {
        trust_init(t, user_id);
        return 0;
    }
    if (err)
        return err;
    if (user_id && t->user_id != user_id) {
        parley__log(p, 2, "secret: @%s is now user %llu, was %llu: its keys need accepting", name,
                    (unsigned long long)user_id, (unsigned long long)t->user_id);
        trust_init(t, user_id);
        t->distrust_new = true;
    }
    return 0;
}

static int trust_put(const struct parley *p, const char *name, const struct trust *t)
{
    char path[PATH_LEN], dir[PATH_LEN];
    int err = make_chat_dir(p, name, dir, sizeof(dir));
    if (!err)
        err = trust_path(p, name, path, sizeof(path));
    if (!err)
        err = trust_save(path, t);
    if (err)
        parley__log(p, 3, "secret: cannot save the trust record of @%s", name);
    return err;
}

/* Forgets a device that is not (any more) one of account t's. */
static void forget_device(struct parley *p, struct trust *t, uint64_t device_id)
{
    char e2e_name[E2E_PEER_LEN];
    e2e_peer(t->user_id, e2e_name);
    trust_remove(t, device_id);
    int err = e2e_session_remove(&p->e2e, e2e_name, (uint32_t)device_id);
    e2e_peer_prev(t->user_id, e2e_name);
    if (!err)
        err = e2e_session_remove(&p->e2e, e2e_name, (uint32_t)device_id);
    if (err)
        parley__log(p, 2, "secret: cannot remove the session with gone device %llu",
                    (unsigned long long)device_id);
}

/* Loads this device's Signal identity, making it on first use. */
int secret__identity(struct parley *p, struct e2e_identity *out)
{
    if (p->acct.device_id == 0 || p->acct.device_id > UINT32_MAX) {
        parley__log(p, 3, "secret: device id %llu does not fit a Signal device id",
                    (unsigned long long)p->acct.device_id);
        return PARLEY_EPROTO;
    }
    int err = e2e_identity_load(&p->e2e, out);
    if (err == PARLEY_ENOACCOUNT) {
        uint32_t reg = randombytes_uniform(REGISTRATION_ID_MAX) + 1;
        err = e2e_init(&p->e2e, reg, (uint32_t)p->acct.device_id, out);
        if (!err)
            parley__log(p, 1, "secret: made this device's identity key");
    }
    if (err)
        return secret__local_err(err);
    if (out->device_id != p->acct.device_id || out->registration_id == 0 ||
        out->registration_id > REGISTRATION_ID_MAX) {
        keys_free(out->key);
        out->key = NULL;
        parley__log(p, 3, "secret: the identity in the home belongs to another device");
        return PARLEY_ECONFIG;
    }
    return 0;
}

/* Sessions from bundles. */

/* Reads a bundle from the wire into b; PARLEY_EPROTO when malformed. */
static int bundle_parse(const Parley__V1__PreKeyBundle *pb, struct x3dh_bundle *b)
{
    const Parley__V1__SignedPreKey *s = pb->signed_prekey;
    memset(b, 0, sizeof(*b));
    if (!s || pb->device_id == 0 || pb->device_id > UINT32_MAX ||
        keys_public_decode(pb->identity_key.data, pb->identity_key.len, &b->identity_key) ||
        keys_public_decode(s->public_key.data, s->public_key.len, &b->signed_prekey) ||
        s->signature.len != XEDDSA_SIGNATURE_LEN)
        return PARLEY_EPROTO;
    b->signed_prekey_id = s->id;
    memcpy(b->signed_prekey_signature, s->signature.data, XEDDSA_SIGNATURE_LEN);
    if (pb->prekey) {
        if (keys_public_decode(pb->prekey->public_key.data, pb->prekey->public_key.len, &b->prekey))
            return PARLEY_EPROTO;
        b->has_prekey = true;
        b->prekey_id = pb->prekey->id;
    }
    return 0;
}

/* GetBundleRequest for account name (device_id 0: every device). */
static int get_bundles(struct parley *p, const char *name, uint64_t device_id, PlFrame **out)
{
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__GetBundleRequest gb = PARLEY__V1__GET_BUNDLE_REQUEST__INIT;
    Parley__V1__Peer peer = PARLEY__V1__PEER__INIT;
    peer.username = (char *)name;
    gb.peer = &peer;
    gb.device_id = device_id;
    req.method_case = PARLEY__V1__REQUEST__METHOD_GET_BUNDLE;
    req.get_bundle = &gb;
    int err = parley__call_authed(p, &req, PARLEY__V1__RESPONSE__RESULT_GET_BUNDLE, out);
    if (err)
        return err;
    const Parley__V1__GetBundleResponse *r = (*out)->response->get_bundle;
    if (!r || r->user_id == 0 || r->n_bundles == 0 || r->n_bundles > TRUST_DEVICES_MAX) {
        frame_free(*out);
        return PARLEY_EPROTO;
    }
    return 0;
}

/* Keeps old, the session a device had, as its previous one, so that
 * messages the peer sent on it still decrypt after ours replaced it. */
static int archive_session(struct parley *p, uint64_t user_id, uint64_t device_id,
                           const struct ratchet *old)
{
    char prev[E2E_PEER_LEN];
    e2e_peer_prev(user_id, prev);
    return secret__local_err(e2e_session_save(&p->e2e, prev, (uint32_t)device_id, old));
}

/* Saves s as the session with the device after moving the current one, if
 * any, to the archive; a damaged current one is simply replaced. */
static int replace_session(struct parley *p, uint64_t user_id, uint64_t device_id,
                           const struct ratchet *s)
{
    char cur[E2E_PEER_LEN];
    struct ratchet *old = NULL;
    e2e_peer(user_id, cur);
    int err = e2e_session_load(&p->e2e, cur, (uint32_t)device_id, &old);
    if (!err)
        err = archive_session(p, user_id, device_id, old);
    else if (err != PARLEY_ENOMEM && err != PARLEY_EIO)
        err = 0;
    ratchet_free(old);
    if (!err)
        err = secret__local_err(e2e_session_save(&p->e2e, cur, (uint32_t)device_id, s));
    return err;
}

/* Verifies every bundle of r (each signed-prekey signature, by
 * ratchet_initiate) and only then records each device's key in t and saves
 * a new session with it. */
static int start_sessions(struct parley *p, const struct e2e_identity *id, const char *name,
                          const Parley__V1__GetBundleResponse *r, struct trust *t)
{
    struct ratchet *s[TRUST_DEVICES_MAX] = {0};
    struct x3dh_bundle b[TRUST_DEVICES_MAX];
    char peer[E2E_PEER_LEN];
    int err = 0;
    size_t i;
    e2e_peer(r->user_id, peer);
    for (i = 0; i < r->n_bundles && !err; i++) {
        const Parley__V1__PreKeyBundle *pb = r->bundles[i];
        err = pb ? bundle_parse(pb, &b[i]) : PARLEY_EPROTO;
        if (!err && r->user_id == p->acct.user_id && pb->device_id == p->acct.device_id)
            err = PARLEY_EPROTO; /* the server never hands us our own bundle */
        if (!err)
            err = ratchet_initiate(id->key, id->registration_id, &b[i], pb->registration_id, &s[i]);
        if (err == PARLEY_EBAD_SIGNATURE)
            parley__log(p, 3, "secret: bundle of @%s device %llu has a bad signature; refused",
                        name, (unsigned long long)pb->device_id);
    }
    if (err == PARLEY_EINVAL || err == PARLEY_EBAD_KEY)
        err = PARLEY_EPROTO; /* a malformed bundle, or a low-order key in it */
    for (i = 0; i < r->n_bundles && !err; i++) {
        enum trust_verdict v;
        uint64_t dev = r->bundles[i]->device_id;
        if ((err = trust_see(t, dev, &b[i].identity_key, &v)))
            break;
        if (v == TRUST_CHANGED)
            parley__log(p, 2, "secret: identity key of @%s device %llu changed", name,
                        (unsigned long long)dev);
        err = replace_session(p, r->user_id, dev, s[i]);
    }
    for (i = 0; i < r->n_bundles; i++)
        ratchet_free(s[i]);
    return err;
}

static int secret_start(struct parley *p, const char *peer)
{
    char name[USERNAME_MAX + 1];
    struct e2e_identity id = {0};
    struct trust *t = NULL;
    PlFrame *resp = NULL;
    if (!p || !peer)
        return PARLEY_EINVAL;
    p->retry_after_ms = 0;
    if (username_normalize(peer, name) != 0)
        return PARLEY_EBAD_USERNAME;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    if (is_me(p, name))
        return PARLEY_EINVAL;
    int err = secret__identity(p, &id);
    if (err)
        return err;
    if (!(t = malloc(sizeof(*t)))) {
        err = PARLEY_ENOMEM;
        goto out;
    }
    if ((err = get_bundles(p, name, 0, &resp)))
        goto out;
    const Parley__V1__GetBundleResponse *r = resp->response->get_bundle;
    if ((err = trust_get(p, name, r->user_id, t)) || (err = start_sessions(p, &id, name, r, t)))
        goto out;
    /* Devices the server no longer lists cannot receive: forget them. */
    for (size_t i = t->n; i-- > 0;) {
        uint64_t dev = t->dev[i].device_id;
        bool listed = false;
        for (size_t k = 0; k < r->n_bundles; k++)
            listed |= r->bundles[k]->device_id == dev;
        if (!listed)
            forget_device(p, t, dev);
    }
    if ((err = trust_put(p, name, t)))
        goto out;
    parley__log(p, 1, "secret: started sessions with %zu device(s) of @%s", r->n_bundles, name);
    if (trust_any_changed(t))
        err = PARLEY_EUNTRUSTED_IDENTITY;
out:
    frame_free(resp);
    free(t);
    keys_free(id.key);
    return err;
}

int parley_secret_start(struct parley *p, const char *peer)
{
    if (!p || !p->has_account)
        return secret_start(p, peer); /* its checks come first */
    int err = secret__lock(p);
    if (err)
        return err;
    err = secret_start(p, peer);
    secret__unlock(p);
    return err;
}

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
static int secret_expire(struct parley *p, struct delivery *d)
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
            chat_dir(p, name, dir, sizeof(dir)) != 0)
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
    err = secret_expire(p, d);
    secret__unlock(p);
    return err;
}

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
    e2e_peer(t->user_id, e2e_name);
    int err = e2e_session_load(&p->e2e, e2e_name, (uint32_t)device_id, &s);
    if (err == PARLEY_ENOTFOUND) {
        PlFrame *resp;
        if ((err = get_bundles(p, name, device_id, &resp)))
            return err;
        const Parley__V1__GetBundleResponse *r = resp->response->get_bundle;
        if (r->user_id != t->user_id || r->n_bundles != 1 || !r->bundles[0] ||
            r->bundles[0]->device_id != device_id)
            err = PARLEY_EPROTO;
        if (!err)
            err = start_sessions(p, id, name, r, t);
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
            if ((k == 1 && dev == p->acct.device_id) || outbox_has(ob, dev)) {
                i++;
                continue;
            }
            int err = seal(p, id, names[k], t, dev, pt, pt_len, ob);
            if (err == PARLEY_ENOKEYS || err == PARLEY_ENODEVICE) {
                forget_device(p, t, dev);
                continue;
            }
            if (err)
                return err;
            i++;
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
    parley__log(p, 1, "secret: device list of @%s changed; sending again", to->peer);
    /* A gone device of ours is listed against the recipient (the server
     * cannot tell whose it was), so a stale device leaves both records. */
    for (size_t i = 0; i < n; i++) {
        if (ch[i].stale) {
            outbox_remove(ob, ch[i].device_id);
            if (trust_find(to->them, ch[i].device_id))
                forget_device(p, to->them, ch[i].device_id);
            if (trust_find(to->us, ch[i].device_id))
                forget_device(p, to->us, ch[i].device_id);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (ch[i].stale || outbox_has(ob, ch[i].device_id))
            continue;
        if (ch[i].t == to->us && ch[i].device_id == p->acct.device_id)
            return PARLEY_EPROTO;
        const char *name = ch[i].t == to->us ? p->acct.username : to->peer;
        int err = seal(p, id, name, ch[i].t, ch[i].device_id, pt, pt_len, ob);
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
     * leaves it out of this device's local copy of the chat. */
    if (!r->duplicate &&
        (make_chat_dir(p, name, dir, sizeof(dir)) != 0 || msgstore_put(dir, &m, true) != 0))
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
    if ((err = trust_get(p, to.peer, 0, to.them)) ||
        (err = trust_get(p, p->acct.username, p->acct.user_id, to.us)))
        goto out;
    if (to.them->n == 0) {
        /* No session yet: start one, as parley_secret_start would. */
        if ((err = get_bundles(p, to.peer, 0, &resp)))
            goto out;
        const Parley__V1__GetBundleResponse *r = resp->response->get_bundle;
        trust_init(to.them, r->user_id);
        err = start_sessions(p, &id, to.peer, r, to.them);
        frame_free(resp);
        resp = NULL;
        if (err || (err = trust_put(p, to.peer, to.them)))
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
     * failure is logged by trust_put; it is not the caller's error: the
     * send's own result is (after a send that went through, a retry would
     * send twice), and an unsaved first use is simply seen again. */
    if (trust_put(p, to.peer, to.them) == 0 && to.us->n)
        (void)trust_put(p, p->acct.username, to.us);
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
    return is_me(p, name) ? PARLEY_EINVAL : 0;
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
    if ((err = secret_expire(p, NULL)) || (err = chat_dir(p, name, dir, sizeof(dir))) ||
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

/* Receiving. */

/* The responder's prekey store for ratchet_decrypt_prekey. */
struct lookup {
    const struct e2e_dir *dir;
    const struct keys_pair *identity;
    struct keys_pair *signed_prekey;
    struct keys_pair *prekey;
};

static int on_lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out)
{
    struct lookup *self = arg;
    uint8_t sig[XEDDSA_SIGNATURE_LEN];
    struct keys_pair **slot = is_signed ? &self->signed_prekey : &self->prekey;
    keys_free(*slot);
    *slot = NULL;
    int err = is_signed ? e2e_signed_prekey(self->dir, id, false, self->identity, slot, sig)
                        : e2e_prekey(self->dir, id, false, slot);
    if (err == 0)
        *out = *slot;
    return secret__local_err(err);
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
        e2e_peer_prev(e->from_user_id, name);
    else
        e2e_peer(e->from_user_id, name);
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
    struct lookup lk = {.dir = &p->e2e, .identity = id->key};
    struct ratchet_responder me = {.identity = id->key,
                                   .registration_id = id->registration_id,
                                   .lookup = on_lookup,
                                   .arg = &lk};
    int err = ratchet_decrypt_prekey(s, &me, e->body.data, e->body.len, &o->pt, &o->pt_len,
                                     &o->used_prekey, &o->used_prekey_id);
    keys_free(lk.prekey);
    keys_free(lk.signed_prekey);
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

/* After the callback saw m: records its expiry (a full index deletes it
 * at once: it was read), then marks it delivered. */
static int delivered(struct parley *p, const char *dir, const struct msgstore_msg *m)
{
    int err = 0;
    if (m->expires) {
        err = msgstore_set_expiry(dir, m->message_id, m->from_user_id, m->expires, true);
        if (err == PARLEY_EBUSY) {
            parley__log(p, 2, "secret: too many messages waiting for their timer; deleting %llu",
                        (unsigned long long)m->message_id);
            return msgstore_remove(dir, m->message_id, m->from_user_id);
        }
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
        err = delivered(p, dir, &m);
    msgstore_text_free(&m);
    return err;
}

/* Shows a timer change of the chat with chat, made by from (the peer, or
 * another device of ours), once it is recorded. */
static void deliver_timer(const struct parley *p, const char *from, const char *chat,
                          const Parley__V1__SecretEnvelope *e, uint32_t timer_s, struct delivery *d)
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
    if (d->cb && d->cb(d->arg, &msg) != 0)
        d->stop = true;
    d->delivered++;
}

/* A read receipt: the messages it names, of the other party of its
 * sender, expire timer_s after the receipt's date. A receipt from the peer
 * names our messages; one from another device of ours, the peer's. */
static int apply_receipt(struct parley *p, const char *dir, const Parley__V1__SecretEnvelope *e,
                         const struct parsed *c)
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
            err = msgstore_remove(dir, c->read[i], author);
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
    int err = trust_get(p, from, e->from_user_id, t);
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
    int err = make_chat_dir(p, outgoing ? to : from, dir, sizeof(dir));
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
        if ((err = deliver_stored(p, dir, e->message_id, e->from_user_id, d)))
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
    if ((err = check_sender(p, from, e, o.s, t, &changed)))
        goto hold_opened;
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
    e2e_peer(e->from_user_id, e2e_name);
    /* Stored first: once the session moves on, the message could not be
     * decrypted again. A message without text (a receipt, a timer change)
     * is not stored; what it changes is recorded before the session moves
     * on, so a crash between the two applies it again, harmlessly. */
    if ((c.text_len && (err = msgstore_put(dir, &m, false))) ||
        (c.timer_update && (err = secret__local_err(msgstore_timer_set(dir, c.timer_s)))) ||
        (c.n_read && (err = apply_receipt(p, dir, e, &c))) || (err = trust_put(p, from, t)) ||
        (err = secret__local_err(
             e2e_session_save(&p->e2e, e2e_name, (uint32_t)e->from_device_id, o.s))) ||
        (o.old && (err = archive_session(p, e->from_user_id, e->from_device_id, o.old))))
        goto hold_opened;
    /* A used one-time prekey must go, or its secret outlives the session. */
    if (o.used_prekey && e2e_prekey_remove(&p->e2e, o.used_prekey_id) != 0)
        parley__log(p, 3, "secret: cannot delete used one-time prekey %u",
                    (unsigned)o.used_prekey_id);
    if (c.timer_update) {
        parley__log(p, 1, "secret: @%s set the timer of the chat with @%s to %u s", from,
                    outgoing ? to : from, (unsigned)c.timer_s);
        deliver_timer(p, from, outgoing ? to : from, e, c.timer_s, d);
    }
    if (c.text_len) {
        start_timer(p, &m);
        if (!(err = deliver(p, &m, d)))
            err = delivered(p, dir, &m);
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

/* Sends every read receipt owed, one message per chat (at most
 * RECEIPT_IDS_MAX ids each; the rest follow in the next one). A chat
 * whose receipt cannot be sent keeps it owed in its index, for the next
 * parley_recv (not the next wake-up: a peer whose key needs accepting
 * would be retried every second). Needs the secret-state lock. */
static int send_receipts(struct parley *p)
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
            is_me(p, name) || chat_dir(p, name, dir, sizeof(dir)) != 0)
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

int parley__secret_recv(struct parley *p, struct delivery *d, bool fetch)
{
    struct e2e_identity id = {0};
    int err;
    if (p->keys_low && p->authed && (err = parley__keys_check(p)) && parley__is_transport_err(err))
        return err;
    if ((err = secret__lock(p)))
        return err;
    /* Every wake-up deletes what expired, before anything is shown. */
    if ((err = secret_expire(p, d)) || d->stop ||
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
        err = send_receipts(p);
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

/* Safety numbers. */

int parley_verify(struct parley *p, const char *peer, struct parley_safety *out)
{
    char name[USERNAME_MAX + 1], my_id[24], their_id[24];
    char digits[SAFETY_DIGITS + 1];
    struct e2e_identity id = {0};
    if (!p || !peer || !out)
        return PARLEY_EINVAL;
    if (username_normalize(peer, name) != 0)
        return PARLEY_EBAD_USERNAME;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    struct trust *t = malloc(sizeof(*t));
    if (!t)
        return PARLEY_ENOMEM;
    int err = trust_get(p, name, 0, t);
    if (!err && t->n == 0)
        err = PARLEY_ENOTFOUND;
    if (!err)
        err = secret__identity(p, &id);
    if (err)
        goto out;
    const struct trust_device *dev = &t->dev[0];
    for (size_t i = 1; i < t->n; i++)
        if (t->dev[i].device_id < dev->device_id)
            dev = &t->dev[i];
    /* The stable identifiers are the user ids in decimal: both ends know
     * both, and unlike a name an id is never given to another account. */
    snprintf(my_id, sizeof(my_id), "%llu", (unsigned long long)p->acct.user_id);
    snprintf(their_id, sizeof(their_id), "%llu", (unsigned long long)t->user_id);
    struct parley_safety s;
    memset(&s, 0, sizeof(s));
    err = safety_number(keys_public_of(id.key), my_id, &dev->current, their_id, digits);
    if (!err)
        err = safety_format(digits, s.number, sizeof(s.number));
    if (err) {
        err = PARLEY_EINTERNAL;
        goto out;
    }
    s.device_id = dev->device_id;
    s.changed = trust_any_changed(t);
    *out = s;
out:
    keys_free(id.key);
    free(t);
    return err;
}

static int verify_accept(struct parley *p, const char *peer)
{
    char name[USERNAME_MAX + 1];
    if (!p || !peer)
        return PARLEY_EINVAL;
    if (username_normalize(peer, name) != 0)
        return PARLEY_EBAD_USERNAME;
    if (!p->has_account)
        return PARLEY_ENOACCOUNT;
    struct trust *t = malloc(sizeof(*t));
    if (!t)
        return PARLEY_ENOMEM;
    int err = trust_get(p, name, 0, t);
    if (!err && t->n == 0)
        err = PARLEY_ENOTFOUND;
    if (!err && trust_any_changed(t)) {
        trust_accept(t);
        err = trust_put(p, name, t);
        if (!err)
            parley__log(p, 1, "secret: accepted the current identity keys of @%s", name);
    }
    free(t);
    return err;
}

int parley_verify_accept(struct parley *p, const char *peer)
{
    if (!p || !p->has_account)
        return verify_accept(p, peer); /* its checks come first */
    int err = secret__lock(p);
    if (err)
        return err;
    err = verify_accept(p, peer);
    secret__unlock(p);
    return err;
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
    if (err || (err = secret_expire(p, NULL)) || (err = chat_dir(p, name, dir, sizeof(dir))) ||
        (err = secret__local_err(msgstore_timer_get(dir, &old))))
        return err;
    struct content c = {.timer_s = timer_s, .timer_update = true};
    if ((err = send_content(p, name, &c, 0, NULL)))
        return err;
    /* The peer has the change: record it for the messages sent from now. */
    if ((err = make_chat_dir(p, name, dir, sizeof(dir))) ||
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
