/* SPDX-License-Identifier: MIT */
/* This device's Signal keys on the server: the identity, a signed prekey
 * rotated weekly and a stock of one-time prekeys near 100, uploaded when
 * the server lacks them or runs low. The key files are src/e2e's; the
 * rules are in docs/internals/client.md "Secret chats". */
#include "parley_int.h"

#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/xeddsa.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/banned.h"

#define PREKEYS_TARGET 100                      /* one-time prekeys kept in stock on the server */
#define PREKEYS_LOW 10                          /* below this, the stock is topped up */
#define SIGNED_PREKEY_MAX_AGE_S (7 * 24 * 3600) /* rotated weekly, as Signal does */

static uint32_t next_prekey_id(uint32_t id)
{
    return id >= HOME_PREKEY_ID_MAX ? 1 : id + 1;
}

static uint32_t prev_prekey_id(uint32_t id)
{
    return id <= 1 ? HOME_PREKEY_ID_MAX : id - 1;
}

static void remove_prekeys(struct parley *p, const Parley__V1__PreKey *pk, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (e2e_prekey_remove(&p->e2e, pk[i].id) != 0)
            parley__log(p, 2, "secret: cannot remove unused prekey %u", (unsigned)pk[i].id);
}

/* Makes n one-time prekeys in the e2e directory with ids from *next on,
 * skipping ids whose file exists (a counter behind its files: such a key
 * may be in stock on the server), and advances *next past them. Their
 * public halves go to pub and pk. On error none of them is left. */
static int make_prekeys(struct parley *p, uint32_t *next, size_t n,
                        uint8_t pub[][KEYS_PUBLIC_WIRE_LEN], Parley__V1__PreKey *pk)
{
    uint32_t pid = *next;
    for (size_t i = 0; i < n; i++) {
        struct keys_pair *kp = NULL;
        int err;
        for (unsigned tries = 0;; tries++, pid = next_prekey_id(pid)) {
            if (tries == HOME_PREKEY_ID_MAX) {
                remove_prekeys(p, pk, i);
                return PARLEY_ETOO_MANY_PREKEYS;
            }
            err = e2e_prekey(&p->e2e, pid, false, &kp);
            if (err != 0)
                break;
            keys_free(kp);
            kp = NULL;
        }
        if (err == PARLEY_ENOTFOUND)
            err = e2e_prekey(&p->e2e, pid, true, &kp);
        if (err) {
            remove_prekeys(p, pk, i);
            return secret__local_err(err);
        }
        keys_public_encode(keys_public_of(kp), pub[i]);
        keys_free(kp);
        parley__v1__pre_key__init(&pk[i]);
        pk[i].id = pid;
        pk[i].public_key.data = pub[i];
        pk[i].public_key.len = KEYS_PUBLIC_WIRE_LEN;
        pid = next_prekey_id(pid);
    }
    *next = pid;
    return 0;
}

/* Uploads n one-time prekeys and, with new_signed or first, the signed
 * prekey (a new one when new_signed). The prekey counter is saved before
 * the upload, so that a crash never hands out an id twice. */
static int upload(struct parley *p, const struct e2e_identity *id, struct home_prekeys *st,
                  bool first, bool new_signed, size_t n)
{
    uint8_t pub[PREKEYS_TARGET][KEYS_PUBLIC_WIRE_LEN];
    Parley__V1__PreKey pk[PREKEYS_TARGET], *pkp[PREKEYS_TARGET];
    uint8_t id_pub[KEYS_PUBLIC_WIRE_LEN], spk_pub[KEYS_PUBLIC_WIRE_LEN];
    uint8_t sig[XEDDSA_SIGNATURE_LEN];
    struct keys_pair *spk = NULL;
    PlFrame *resp = NULL;
    uint32_t old_spk = st->signed_prekey_id;
    uint32_t spk_id = new_signed ? next_prekey_id(old_spk) : old_spk;
    size_t made = 0;
    int err;

    struct home_prekeys next = *st;
    if ((err = make_prekeys(p, &next.next_prekey_id, n, pub, pk)))
        return err;
    made = n;
    if (n && (err = home_save_prekeys(p->home, &next)))
        goto refused;
    *st = next;
    for (size_t i = 0; i < n; i++)
        pkp[i] = &pk[i];

    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__UploadKeysRequest up = PARLEY__V1__UPLOAD_KEYS_REQUEST__INIT;
    Parley__V1__SignedPreKey sp = PARLEY__V1__SIGNED_PRE_KEY__INIT;
    keys_public_encode(keys_public_of(id->key), id_pub);
    up.identity_key.data = id_pub;
    up.identity_key.len = sizeof(id_pub);
    up.registration_id = id->registration_id;
    if (first || new_signed) {
        /* The signature covers the 33-byte form, as libsignal signs it. */
        if ((err = e2e_signed_prekey(&p->e2e, spk_id, true, id->key, &spk, sig))) {
            err = secret__local_err(err);
            goto refused;
        }
        keys_public_encode(keys_public_of(spk), spk_pub);
        keys_free(spk);
        sp.id = spk_id;
        sp.public_key.data = spk_pub;
        sp.public_key.len = sizeof(spk_pub);
        sp.signature.data = sig;
        sp.signature.len = sizeof(sig);
        up.signed_prekey = &sp;
    }
    up.n_prekeys = n;
    up.prekeys = pkp;
    req.method_case = PARLEY__V1__REQUEST__METHOD_UPLOAD_KEYS;
    req.upload_keys = &up;
    err = parley__call(p, &req, PARLEY__V1__RESPONSE__RESULT_UPLOAD_KEYS, &resp);
    if (err) {
        if (parley__is_transport_err(err))
            return err; /* the server may hold them: the files stay */
        goto refused;
    }
    parley__log(p, 1, "secret: uploaded %zu one-time prekeys%s; %u in stock", n,
                up.signed_prekey ? " and the signed prekey" : "",
                resp->response->upload_keys ? resp->response->upload_keys->prekey_count : 0);
    frame_free(resp);
    if (new_signed) {
        st->signed_prekey_id = spk_id;
        st->signed_prekey_date = (int64_t)time(NULL);
        if ((err = home_save_prekeys(p->home, st)))
            return err;
        /* The previous signed prekey stays for messages already under way
         * to it; the one before goes. */
        if (old_spk && prev_prekey_id(old_spk) != spk_id &&
            e2e_signed_prekey_remove(&p->e2e, prev_prekey_id(old_spk)) != 0)
            parley__log(p, 2, "secret: cannot remove an old signed prekey");
    }
    return 0;
refused:
    /* The server holds none of them: they would only fill the directory. */
    remove_prekeys(p, pk, made);
    return err;
}

static int keys_check(struct parley *p)
{
    struct e2e_identity id = {0};
    struct home_prekeys st;
    PlFrame *resp;
    int err = secret__identity(p, &id);
    if (err)
        return err;
    if ((err = home_load_prekeys(p->home, &st)))
        goto out;
    PlRequest req = PARLEY__V1__REQUEST__INIT;
    Parley__V1__KeyCountRequest kc = PARLEY__V1__KEY_COUNT_REQUEST__INIT;
    req.method_case = PARLEY__V1__REQUEST__METHOD_KEY_COUNT;
    req.key_count = &kc;
    if ((err = parley__call(p, &req, PARLEY__V1__RESPONSE__RESULT_KEY_COUNT, &resp)))
        goto out;
    bool has_keys = resp->response->key_count && resp->response->key_count->has_keys;
    uint32_t count = resp->response->key_count ? resp->response->key_count->prekey_count : 0;
    frame_free(resp);

    bool first = !has_keys;
    int64_t age = (int64_t)time(NULL) - st.signed_prekey_date;
    bool new_signed = st.signed_prekey_id == 0 || (has_keys && age >= SIGNED_PREKEY_MAX_AGE_S);
    size_t n = 0;
    if (first || count < PREKEYS_LOW || p->keys_low)
        n = count >= PREKEYS_TARGET ? 0 : PREKEYS_TARGET - count;
    if (first || new_signed || n)
        err = upload(p, &id, &st, first, new_signed, n);
    if (!err)
        p->keys_low = false;
out:
    keys_free(id.key);
    return err;
}

int parley__keys_check(struct parley *p)
{
    if (p->in_keys_check || !p->has_account)
        return 0;
    int err = secret__lock(p);
    if (err)
        return err;
    p->in_keys_check = true;
    err = keys_check(p);
    p->in_keys_check = false;
    secret__unlock(p);
    if (err && !parley__is_transport_err(err))
        parley__log(p, 2, "secret: cannot publish this device's keys: %s", err_name(err));
    return err;
}
