/* SPDX-License-Identifier: MIT */
/* Secret chats in libparley: the secret-state lock, this device's
 * identity, trust records, sessions started from peers' bundles, and
 * safety numbers. Sending is secret_send.c's, receiving and expiry
 * secret_recv.c's, what the three share secret_int.h's; this device's keys
 * on the server are prekeys.c's, the cryptography src/crypto's, the key and
 * session files src/e2e's. The flows and their crash ordering are described
 * in docs/internals/client.md. */
#include "secret_int.h"

#include "common/err.h"
#include "crypto/fingerprint.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "crypto/x3dh.h"
#include "crypto/xeddsa.h"
#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

#include "common/banned.h"

#define LOCK_FILE "secret.lock"
#define TRUST_FILE "trust"
#define REGISTRATION_ID_MAX 16383

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

bool secret__is_me(const struct parley *p, const char *name)
{
    return strcmp(name, p->acct.username) == 0;
}

/* The e2e peer name of an account: sessions are files named after it. */
void secret__e2e_peer(uint64_t user_id, char out[E2E_PEER_LEN])
{
    snprintf(out, E2E_PEER_LEN, "u%llu", (unsigned long long)user_id);
}

/* The e2e peer name under which the session a device had before its
 * current one is kept (see "Secret chats" in docs/internals/client.md). */
void secret__e2e_peer_prev(uint64_t user_id, char out[E2E_PEER_LEN])
{
    snprintf(out, E2E_PEER_LEN, "u%llu.prev", (unsigned long long)user_id);
}

/* Files of e2e, the crypto and msgstore report damage in their own words;
 * to the application a damaged local file is PARLEY_ECONFIG. */
int secret__local_err(int err)
{
    return err == PARLEY_EMALFORMED || err == PARLEY_EVERSION ? PARLEY_ECONFIG : err;
}

int secret__chat_dir(const struct parley *p, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s/%s", p->home, SECRET_DIR, name);
    return n < 0 || (size_t)n >= size ? PARLEY_EINVAL : 0;
}

/* HOME/secret/NAME, created 0700 with its parent when missing. */
int secret__make_chat_dir(const struct parley *p, const char *name, char *out, size_t size)
{
    char top[PATH_LEN];
    int err = home_path(top, sizeof(top), p->home, SECRET_DIR);
    if (!err)
        err = home_init(top);
    if (!err)
        err = secret__chat_dir(p, name, out, size);
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
int secret__trust_get(const struct parley *p, const char *name, uint64_t user_id, struct trust *t)
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

int secret__trust_put(const struct parley *p, const char *name, const struct trust *t)
{
    char path[PATH_LEN], dir[PATH_LEN];
    int err = secret__make_chat_dir(p, name, dir, sizeof(dir));
    if (!err)
        err = trust_path(p, name, path, sizeof(path));
    if (!err)
        err = trust_save(path, t);
    if (err)
        parley__log(p, 3, "secret: cannot save the trust record of @%s", name);
    return err;
}

/* Forgets a device that is not (any more) one of account t's: its
 * sessions go, its record stays as removed, with the keys it had, so that
 * the same device id coming back with another key is a change. */
void secret__forget_device(struct parley *p, struct trust *t, uint64_t device_id)
{
    char e2e_name[E2E_PEER_LEN];
    secret__e2e_peer(t->user_id, e2e_name);
    trust_remove(t, device_id);
    int err = e2e_session_remove(&p->e2e, e2e_name, (uint32_t)device_id);
    secret__e2e_peer_prev(t->user_id, e2e_name);
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
int secret__get_bundles(struct parley *p, const char *name, uint64_t device_id, PlFrame **out)
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
int secret__archive_session(struct parley *p, uint64_t user_id, uint64_t device_id,
                            const struct ratchet *old)
{
    char prev[E2E_PEER_LEN];
    secret__e2e_peer_prev(user_id, prev);
    return secret__local_err(e2e_session_save(&p->e2e, prev, (uint32_t)device_id, old));
}

/* Saves s as the session with the device after moving the current one, if
 * any, to the archive; a damaged current one is simply replaced. */
static int replace_session(struct parley *p, uint64_t user_id, uint64_t device_id,
                           const struct ratchet *s)
{
    char cur[E2E_PEER_LEN];
    struct ratchet *old = NULL;
    secret__e2e_peer(user_id, cur);
    int err = e2e_session_load(&p->e2e, cur, (uint32_t)device_id, &old);
    if (!err)
        err = secret__archive_session(p, user_id, device_id, old);
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
int secret__start_sessions(struct parley *p, const struct e2e_identity *id, const char *name,
                           const Parley__V1__GetBundleResponse *r, struct trust *t)
{
    struct ratchet *s[TRUST_DEVICES_MAX] = {0};
    struct x3dh_bundle b[TRUST_DEVICES_MAX];
    char peer[E2E_PEER_LEN];
    int err = 0;
    size_t i;
    secret__e2e_peer(r->user_id, peer);
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
    if (secret__is_me(p, name))
        return PARLEY_EINVAL;
    int err = secret__identity(p, &id);
    if (err)
        return err;
    if (!(t = malloc(sizeof(*t)))) {
        err = PARLEY_ENOMEM;
        goto out;
    }
    if ((err = secret__get_bundles(p, name, 0, &resp)))
        goto out;
    const Parley__V1__GetBundleResponse *r = resp->response->get_bundle;
    if ((err = secret__trust_get(p, name, r->user_id, t)) ||
        (err = secret__start_sessions(p, &id, name, r, t)))
        goto out;
    /* Devices the server no longer lists cannot receive: forget them. */
    for (size_t i = t->n; i-- > 0;) {
        uint64_t dev = t->dev[i].device_id;
        bool listed = false;
        if (t->dev[i].removed)
            continue;
        for (size_t k = 0; k < r->n_bundles; k++)
            listed |= r->bundles[k]->device_id == dev;
        if (!listed)
            secret__forget_device(p, t, dev);
    }
    if ((err = secret__trust_put(p, name, t)))
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

/* Runs op(p, peer) holding the home's secret lock; without an account
 * op runs unlocked, as its own checks answer first. */
static int with_secret_lock(struct parley *p, const char *peer,
                            int (*op)(struct parley *p, const char *peer))
{
    if (!p || !p->has_account)
        return op(p, peer);
    int err = secret__lock(p);
    if (err)
        return err;
    err = op(p, peer);
    secret__unlock(p);
    return err;
}

int parley_secret_start(struct parley *p, const char *peer)
{
    return with_secret_lock(p, peer, secret_start);
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
    int err = secret__trust_get(p, name, 0, t);
    const struct trust_device *dev = err ? NULL : trust_shown(t);
    if (!err && !dev)
        err = PARLEY_ENOTFOUND;
    if (!err)
        err = secret__identity(p, &id);
    if (err)
        goto out;
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
    int err = secret__trust_get(p, name, 0, t);
    struct trust_device *dev = err ? NULL : trust_shown(t);
    if (!err && !dev)
        err = PARLEY_ENOTFOUND;
    /* Only the key parley_verify shows is accepted: another changed
     * device is shown, and accepted, next. */
    if (!err && trust_is_changed(dev)) {
        trust_accept(dev);
        err = secret__trust_put(p, name, t);
        if (!err)
            parley__log(p, 1, "secret: accepted the identity key of @%s device %llu", name,
                        (unsigned long long)dev->device_id);
    }
    free(t);
    return err;
}

int parley_verify_accept(struct parley *p, const char *peer)
{
    return with_secret_lock(p, peer, verify_accept);
}
