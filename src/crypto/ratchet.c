/* SPDX-License-Identifier: MIT */
/* The Double Ratchet on keys.h, hkdf.h, sigmsg.h and x3dh.h, following
 * libsignal-protocol-c's session_cipher.c, ratchet.c and session_state.c.
 * Every change is made on a scratch copy of the state and committed by a
 * pointer swap only when the whole operation has succeeded. */
#include "crypto/ratchet.h"

#include "common/err.h"
#include "crypto/hkdf.h"
#include "crypto/sigmsg.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#define KEY_LEN 32
#define IV_LEN 16
#define AES_BLOCK 16

static const uint8_t INFO_RATCHET[] = "WhisperRatchet";
static const uint8_t INFO_MESSAGE_KEYS[] = "WhisperMessageKeys";

struct chain {
    uint8_t key[KEY_LEN];
    uint32_t index; /* counter of the next message key this key yields */
};

struct recv_chain {
    uint32_t id; /* names the chain in skipped[]; unique within a session */
    struct keys_public their;
    struct chain ck;
};

/* A message key skipped over, kept as its seed HMAC(chain key, 0x01). */
struct skipped {
    uint32_t chain_id;
    uint32_t counter;
    uint8_t seed[KEY_LEN];
};

struct msg_keys {
    uint8_t cipher[KEY_LEN];
    uint8_t mac[KEY_LEN];
    uint8_t iv[IV_LEN];
};

/* The whole session, flat, so that a copy is one memcpy. */
struct state {
    struct keys_public our_identity;
    struct keys_public their_identity;
    uint32_t local_registration_id;
    uint32_t remote_registration_id;
    uint8_t root[KEY_LEN];
    struct keys_public send_pub;
    uint8_t send_priv[KEYS_PRIVATE_LEN];
    struct chain send;
    uint32_t previous_counter; /* last index of our previous sending chain */
    bool pending;              /* initiator, no reply yet: send PreKeySignalMessages */
    bool pending_has_prekey;
    uint32_t pending_prekey_id;
    uint32_t pending_signed_prekey_id;
    struct keys_public base_key; /* the initiator's X3DH base key, both roles */
    uint32_t next_chain_id;
    uint32_t n_recv; /* recv[0] is the newest */
    struct recv_chain recv[RATCHET_MAX_CHAINS];
    uint32_t n_skipped; /* skipped[0] is the oldest */
    struct skipped skipped[RATCHET_MAX_SKIPPED];
};

struct ratchet {
    struct state *cur;     /* committed */
    struct state *scratch; /* work copy; meaningless between calls */
};

static size_t used_len(const struct state *st)
{
    return offsetof(struct state, skipped) + st->n_skipped * sizeof(struct skipped);
}

static void state_copy(struct state *dst, const struct state *src)
{
    memcpy(dst, src, used_len(src));
}

static void state_wipe(struct state *st)
{
    sodium_memzero(st, used_len(st));
}

static int session_alloc(struct ratchet **out)
{
    if (sodium_init() < 0)
        return PARLEY_EINTERNAL;
    struct ratchet *s = calloc(1, sizeof(*s));
    if (!s)
        return PARLEY_ENOMEM;
    s->cur = sodium_malloc(sizeof(struct state));
    s->scratch = sodium_malloc(sizeof(struct state));
    if (!s->cur || !s->scratch) {
        ratchet_free(s);
        return PARLEY_ENOMEM;
    }
    memset(s->cur, 0, offsetof(struct state, skipped));
    memset(s->scratch, 0, offsetof(struct state, skipped));
    *out = s;
    return 0;
}

void ratchet_free(struct ratchet *s)
{
    if (!s)
        return;
    sodium_free(s->cur); /* wipes */
    sodium_free(s->scratch);
    free(s);
}

static void commit(struct ratchet *s)
{
    struct state *old = s->cur;
    s->cur = s->scratch;
    s->scratch = old;
    state_wipe(old);
}

/* ---- KDFs (libsignal ratchet.c) ---- */

static void chain_seed(const uint8_t ck[KEY_LEN], uint8_t seed[KEY_LEN])
{
    static const uint8_t one = 0x01;
    crypto_auth_hmacsha256(seed, &one, 1, ck);
}

static void chain_next(uint8_t ck[KEY_LEN])
{
    static const uint8_t two = 0x02;
    uint8_t next[KEY_LEN];
    crypto_auth_hmacsha256(next, &two, 1, ck);
    memcpy(ck, next, KEY_LEN);
    sodium_memzero(next, sizeof(next));
}

static int message_keys(const uint8_t seed[KEY_LEN], struct msg_keys *mk)
{
    uint8_t okm[2 * KEY_LEN + IV_LEN];
    int rc = hkdf_sha256(seed, KEY_LEN, NULL, 0, INFO_MESSAGE_KEYS, sizeof(INFO_MESSAGE_KEYS) - 1,
                         okm, sizeof(okm));
    if (rc == 0) {
        memcpy(mk->cipher, okm, KEY_LEN);
        memcpy(mk->mac, okm + KEY_LEN, KEY_LEN);
        memcpy(mk->iv, okm + 2 * KEY_LEN, IV_LEN);
    }
    sodium_memzero(okm, sizeof(okm));
    return rc;
}

/* root, chain = HKDF(DH(our_priv, their), salt = root, "WhisperRatchet"). */
static int root_step(uint8_t root[KEY_LEN], const uint8_t our_priv[KEYS_PRIVATE_LEN],
                     const struct keys_public *their, uint8_t chain_out[KEY_LEN])
{
    struct keys_pair *kp = NULL;
    int rc = keys_from_private(our_priv, &kp);
    if (rc)
        return rc;
    uint8_t dh[KEYS_SHARED_LEN];
    uint8_t okm[2 * KEY_LEN];
    rc = keys_agree(kp, their, dh);
    if (rc == 0)
        rc = hkdf_sha256(dh, sizeof(dh), root, KEY_LEN, INFO_RATCHET, sizeof(INFO_RATCHET) - 1, okm,
                         sizeof(okm));
    if (rc == 0) {
        memcpy(root, okm, KEY_LEN);
        memcpy(chain_out, okm + KEY_LEN, KEY_LEN);
    }
    sodium_memzero(dh, sizeof(dh));
    sodium_memzero(okm, sizeof(okm));
    keys_free(kp);
    return rc;
}

/* A fresh sending ratchet key pair into st. */
static int new_send_key(struct state *st)
{
    struct keys_pair *kp = NULL;
    int rc = keys_generate(&kp);
    if (rc)
        return rc;
    st->send_pub = *keys_public_of(kp);
    keys_private_export(kp, st->send_priv);
    keys_free(kp);
    return 0;
}

/* ---- AES-256-CBC, PKCS#7 ---- */

static int aes_cbc(bool enc, const struct msg_keys *mk, const uint8_t *in, size_t in_len,
                   uint8_t **out, size_t *out_len)
{
    if (in_len > SIGMSG_MAX_LEN)
        return PARLEY_ETOOBIG;
    size_t cap = in_len + AES_BLOCK;
    uint8_t *buf = malloc(cap);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc = 0, n1 = 0, n2 = 0;
    if (!buf || !ctx) {
        rc = PARLEY_ENOMEM;
        goto done;
    }
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, mk->cipher, mk->iv, enc ? 1 : 0) != 1 ||
        EVP_CipherUpdate(ctx, buf, &n1, in, (int)in_len) != 1) {
        rc = PARLEY_EINTERNAL;
        goto done;
    }
    if (EVP_CipherFinal_ex(ctx, buf + n1, &n2) != 1) {
        /* Decrypting: the length is not a whole number of blocks or the
         * padding is wrong. Encrypting cannot fail here. */
        rc = enc ? PARLEY_EINTERNAL : PARLEY_EMALFORMED;
        goto done;
    }
    *out_len = (size_t)n1 + (size_t)n2;
    *out = buf;
    buf = NULL;
done:
    if (buf) {
        sodium_memzero(buf, cap);
        free(buf);
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

void ratchet_plaintext_free(uint8_t *pt, size_t len)
{
    if (!pt)
        return;
    sodium_memzero(pt, len);
    free(pt);
}

/* ---- starting a session ---- */

int ratchet_initiate(const struct keys_pair *our_identity, uint32_t our_registration_id,
                     const struct x3dh_bundle *bundle, uint32_t their_registration_id,
                     struct ratchet **out)
{
    if (!our_identity || !bundle || !out)
        return PARLEY_EINVAL;
    struct ratchet *s = NULL;
    struct keys_pair *base = NULL;
    struct x3dh_keys *keys = NULL;
    int rc = session_alloc(&s);
    if (rc)
        return rc;
    keys = sodium_malloc(sizeof(*keys));
    if (!keys) {
        rc = PARLEY_ENOMEM;
        goto done;
    }
    rc = keys_generate(&base);
    if (rc == 0)
        rc = x3dh_initiate(our_identity, base, bundle, keys);
    if (rc)
        goto done;

    struct state *st = s->cur;
    st->our_identity = *keys_public_of(our_identity);
    st->their_identity = bundle->identity_key;
    st->local_registration_id = our_registration_id;
    st->remote_registration_id = their_registration_id;
    st->pending = true;
    st->pending_has_prekey = bundle->has_prekey;
    st->pending_prekey_id = bundle->has_prekey ? bundle->prekey_id : 0;
    st->pending_signed_prekey_id = bundle->signed_prekey_id;
    st->base_key = *keys_public_of(base);
    /* The peer sends on the X3DH chain with its signed prekey as its
     * ratchet key; we take a DH step at once to send. */
    st->n_recv = 1;
    st->recv[0].id = st->next_chain_id++;
    st->recv[0].their = bundle->signed_prekey;
    memcpy(st->recv[0].ck.key, keys->chain_key, KEY_LEN);
    st->recv[0].ck.index = 0;
    memcpy(st->root, keys->root_key, KEY_LEN);
    rc = new_send_key(st);
    if (rc == 0)
        rc = root_step(st->root, st->send_priv, &bundle->signed_prekey, st->send.key);
    st->send.index = 0;
done:
    sodium_free(keys);
    keys_free(base);
    if (rc) {
        ratchet_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- decrypting ---- */

static struct recv_chain *find_chain(struct state *st, const struct keys_public *their)
{
    for (uint32_t i = 0; i < st->n_recv; i++)
        if (sodium_memcmp(st->recv[i].their.u, their->u, KEYS_PUBLIC_LEN) == 0)
            return &st->recv[i];
    return NULL;
}

static void drop_skipped_where(struct state *st, uint32_t chain_id)
{
    uint32_t w = 0;
    for (uint32_t r = 0; r < st->n_skipped; r++) {
        if (st->skipped[r].chain_id == chain_id)
            continue;
        if (w != r)
            st->skipped[w] = st->skipped[r];
        w++;
    }
    sodium_memzero(&st->skipped[w], (st->n_skipped - w) * sizeof(struct skipped));
    st->n_skipped = w;
}

static void remove_skipped(struct state *st, uint32_t i)
{
    memmove(&st->skipped[i], &st->skipped[i + 1], (st->n_skipped - i - 1) * sizeof(struct skipped));
    st->n_skipped--;
    sodium_memzero(&st->skipped[st->n_skipped], sizeof(struct skipped));
}

/* A DH ratchet step on their new ratchet key, as libsignal's
 * session_cipher_get_or_create_chain_key. Returns the new receiving chain. */
static int dh_step(struct state *st, const struct keys_public *their, struct recv_chain **out)
{
    uint8_t recv_ck[KEY_LEN];
    int rc = root_step(st->root, st->send_priv, their, recv_ck);
    if (rc == 0)
        rc = new_send_key(st);
    if (rc == 0)
        rc = root_step(st->root, st->send_priv, their, st->send.key);
    if (rc) {
        sodium_memzero(recv_ck, sizeof(recv_ck));
        return rc;
    }
    st->previous_counter = st->send.index > 0 ? st->send.index - 1 : 0;
    st->send.index = 0;
    if (st->n_recv == RATCHET_MAX_CHAINS) {
        drop_skipped_where(st, st->recv[RATCHET_MAX_CHAINS - 1].id);
        st->n_recv--;
    }
    memmove(&st->recv[1], &st->recv[0], st->n_recv * sizeof(struct recv_chain));
    st->n_recv++;
    st->recv[0].id = st->next_chain_id++;
    st->recv[0].their = *their;
    memcpy(st->recv[0].ck.key, recv_ck, KEY_LEN);
    st->recv[0].ck.index = 0;
    sodium_memzero(recv_ck, sizeof(recv_ck));
    *out = &st->recv[0];
    return 0;
}

/* The message key seed for counter on chain c, as libsignal's
 * session_cipher_get_or_create_message_keys: a kept skipped key (removed),
 * or the chain advanced past counter, keeping the keys it skips. */
static int take_seed(struct state *st, struct recv_chain *c, uint32_t counter,
                     uint8_t seed[KEY_LEN])
{
    if (c->ck.index > counter) {
        for (uint32_t i = 0; i < st->n_skipped; i++) {
            struct skipped *k = &st->skipped[i];
            if (k->chain_id == c->id && k->counter == counter) {
                memcpy(seed, k->seed, KEY_LEN);
                remove_skipped(st, i);
                return 0;
            }
        }
        return PARLEY_EBAD_NONCE;
    }
    if (counter - c->ck.index > RATCHET_MAX_SKIP)
        return PARLEY_ETOOBIG;
    while (c->ck.index < counter) {
        if (st->n_skipped == RATCHET_MAX_SKIPPED)
            remove_skipped(st, 0);
        struct skipped *k = &st->skipped[st->n_skipped++];
        k->chain_id = c->id;
        k->counter = c->ck.index;
        chain_seed(c->ck.key, k->seed);
        chain_next(c->ck.key);
        c->ck.index++;
    }
    chain_seed(c->ck.key, seed);
    chain_next(c->ck.key);
    /* The chain ends at UINT32_MAX: a later counter would wrap. */
    if (c->ck.index == UINT32_MAX)
        return PARLEY_ETOOBIG;
    c->ck.index++;
    return 0;
}

/* Decrypt a framed SignalMessage on st (a scratch copy). */
static int decrypt_on(struct state *st, const uint8_t *in, size_t len, uint8_t **out,
                      size_t *out_len)
{
    struct sigmsg m;
    int rc = sigmsg_decode(in, len, &m);
    if (rc)
        return rc;
    uint8_t seed[KEY_LEN];
    struct msg_keys mk;
    struct recv_chain *c = find_chain(st, &m.ratchet_key);
    if (!c)
        rc = dh_step(st, &m.ratchet_key, &c);
    if (rc == 0)
        rc = take_seed(st, c, m.counter, seed);
    if (rc == 0)
        rc = message_keys(seed, &mk);
    if (rc == 0)
        rc = sigmsg_verify_mac(in, len, mk.mac, &st->their_identity, &st->our_identity);
    if (rc == 0)
        rc = aes_cbc(false, &mk, m.ciphertext, m.ciphertext_len, out, out_len);
    if (rc == 0) {
        st->pending = false;
        st->pending_has_prekey = false;
        st->pending_prekey_id = 0;
        st->pending_signed_prekey_id = 0;
    }
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(&mk, sizeof(mk));
    sigmsg_clear(&m);
    return rc;
}

int ratchet_decrypt(struct ratchet *s, const uint8_t *in, size_t len, uint8_t **out,
                    size_t *out_len)
{
    if (!s || !in || !out || !out_len)
        return PARLEY_EINVAL;
    state_copy(s->scratch, s->cur);
    int rc = decrypt_on(s->scratch, in, len, out, out_len);
    if (rc) {
        state_wipe(s->scratch);
        return rc;
    }
    commit(s);
    return 0;
}

int ratchet_decrypt_prekey(struct ratchet **session, const struct ratchet_responder *self,
                           const uint8_t *in, size_t len, uint8_t **out, size_t *out_len,
                           bool *used_prekey, uint32_t *used_prekey_id)
{
    if (!session || !self || !self->identity || !self->lookup || !in || !out || !out_len ||
        !used_prekey || !used_prekey_id)
        return PARLEY_EINVAL;
    struct sigmsg_prekey pm;
    int rc = sigmsg_prekey_decode(in, len, &pm);
    if (rc)
        return rc;
    struct ratchet *old = *session;
    if (old && sodium_memcmp(old->cur->base_key.u, pm.base_key.u, KEYS_PUBLIC_LEN) == 0 &&
        sodium_memcmp(old->cur->their_identity.u, pm.identity_key.u, KEYS_PUBLIC_LEN) == 0) {
        /* A further message of the exchange that started this session. */
        rc = ratchet_decrypt(old, pm.message, pm.message_len, out, out_len);
        if (rc == 0)
            *used_prekey = false;
        sigmsg_prekey_clear(&pm);
        return rc;
    }

    struct ratchet *s = NULL;
    struct x3dh_keys *keys = NULL;
    const struct keys_pair *spk = NULL, *otk = NULL;
    rc = self->lookup(self->arg, true, pm.signed_prekey_id, &spk);
    if (rc == 0 && !spk)
        rc = PARLEY_ENOTFOUND;
    if (rc == 0 && pm.has_prekey_id) {
        rc = self->lookup(self->arg, false, pm.prekey_id, &otk);
        if (rc == 0 && !otk)
            rc = PARLEY_ENOTFOUND;
    }
    if (rc == 0)
        rc = session_alloc(&s);
    if (rc == 0 && !(keys = sodium_malloc(sizeof(*keys))))
        rc = PARLEY_ENOMEM;
    if (rc == 0)
        rc = x3dh_respond(self->identity, spk, otk, &pm.identity_key, &pm.base_key, keys);
    if (rc)
        goto done;

    /* As ratcheting_session_bob_initialize: we send on the X3DH chain with
     * the signed prekey as our ratchet key; nothing to receive on yet. */
    struct state *st = s->cur;
    st->our_identity = *keys_public_of(self->identity);
    st->their_identity = pm.identity_key;
    st->local_registration_id = self->registration_id;
    st->remote_registration_id = pm.registration_id;
    st->base_key = pm.base_key;
    memcpy(st->root, keys->root_key, KEY_LEN);
    st->send_pub = *keys_public_of(spk);
    keys_private_export(spk, st->send_priv);
    memcpy(st->send.key, keys->chain_key, KEY_LEN);
    st->send.index = 0;
    rc = ratchet_decrypt(s, pm.message, pm.message_len, out, out_len);
    if (rc)
        goto done;
    *used_prekey = pm.has_prekey_id;
    *used_prekey_id = pm.has_prekey_id ? pm.prekey_id : 0;
    ratchet_free(old);
    *session = s;
    s = NULL;
done:
    sodium_free(keys);
    ratchet_free(s);
    sigmsg_prekey_clear(&pm);
    return rc;
}

/* ---- encrypting ---- */

int ratchet_encrypt(struct ratchet *s, const uint8_t *pt, size_t pt_len, uint8_t **out,
                    size_t *out_len, enum ratchet_msg_type *type)
{
    if (!s || (!pt && pt_len) || !out || !out_len || !type)
        return PARLEY_EINVAL;
    const struct state *st = s->cur;
    if (st->send.index == UINT32_MAX)
        return PARLEY_ETOOBIG;
    static const uint8_t empty[1];
    uint8_t seed[KEY_LEN];
    struct msg_keys mk;
    uint8_t *ct = NULL, *msg = NULL, *pre = NULL;
    size_t ct_len = 0, msg_len = 0, pre_len = 0;
    chain_seed(st->send.key, seed);
    int rc = message_keys(seed, &mk);
    if (rc == 0)
        rc = aes_cbc(true, &mk, pt ? pt : empty, pt_len, &ct, &ct_len);
    if (rc)
        goto done;
    struct sigmsg m = {
        .ratchet_key = st->send_pub,
        .counter = st->send.index,
        .previous_counter = st->previous_counter,
        .ciphertext = ct,
        .ciphertext_len = ct_len,
    };
    msg_len = sigmsg_encoded_len(&m);
    if (msg_len > SIGMSG_MAX_LEN) {
        rc = PARLEY_ETOOBIG;
        goto done;
    }
    msg = malloc(msg_len);
    if (!msg) {
        rc = PARLEY_ENOMEM;
        goto done;
    }
    rc = sigmsg_encode(&m, mk.mac, &st->our_identity, &st->their_identity, msg, msg_len, &msg_len);
    if (rc)
        goto done;
    if (st->pending) {
        struct sigmsg_prekey p = {
            .registration_id = st->local_registration_id,
            .has_prekey_id = st->pending_has_prekey,
            .prekey_id = st->pending_prekey_id,
            .signed_prekey_id = st->pending_signed_prekey_id,
            .base_key = st->base_key,
            .identity_key = st->our_identity,
            .message = msg,
            .message_len = msg_len,
        };
        pre_len = sigmsg_prekey_encoded_len(&p);
        if (pre_len > SIGMSG_MAX_LEN) {
            rc = PARLEY_ETOOBIG;
            goto done;
        }
        pre = malloc(pre_len);
        if (!pre) {
            rc = PARLEY_ENOMEM;
            goto done;
        }
        rc = sigmsg_prekey_encode(&p, pre, pre_len, &pre_len);
        if (rc)
            goto done;
    }
    /* Commit: the only change an encryption makes. */
    chain_next(s->cur->send.key);
    s->cur->send.index++;
    if (pre) {
        *out = pre;
        *out_len = pre_len;
        *type = RATCHET_MSG_PREKEY;
        pre = NULL;
    } else {
        *out = msg;
        *out_len = msg_len;
        *type = RATCHET_MSG_WHISPER;
        msg = NULL;
    }
done:
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(&mk, sizeof(mk));
    free(ct);
    free(msg);
    free(pre);
    return rc;
}

/* ---- accessors ---- */

const struct keys_public *ratchet_their_identity(const struct ratchet *s)
{
    return &s->cur->their_identity;
}

uint32_t ratchet_their_registration_id(const struct ratchet *s)
{
    return s->cur->remote_registration_id;
}

bool ratchet_is_pending_prekey(const struct ratchet *s)
{
    return s->cur->pending;
}

/* ---- serialized form ----
 * version (1) | flags (1: bit 0 pending, bit 1 pending has prekey)
 * | our identity (32) | their identity (32) | local reg (4) | remote reg (4)
 * | root (32) | send pub (32) | send priv (32) | send chain key (32)
 * | send index (4) | previous counter (4) | pending prekey id (4)
 * | pending signed prekey id (4) | base key (32) | next chain id (4)
 * | n_recv (1) | n_recv x {id (4), their (32), chain key (32), index (4)}
 * | n_skipped (2) | n_skipped x {chain id (4), counter (4), seed (32)}
 * Integers big-endian. */

#define FLAG_PENDING 0x01
#define FLAG_PENDING_PREKEY 0x02
#define HEAD_LEN (2 + 32 * 2 + 4 * 2 + 32 * 4 + 4 * 4 + 32 + 4 + 1)
#define RECV_LEN (4 + 32 + 32 + 4)
#define SKIP_LEN (4 + 4 + 32)

size_t ratchet_serialized_len(const struct ratchet *s)
{
    return HEAD_LEN + s->cur->n_recv * RECV_LEN + 2 + s->cur->n_skipped * SKIP_LEN;
}

struct wr {
    uint8_t *p;
};

static void put(struct wr *w, const void *src, size_t n)
{
    memcpy(w->p, src, n);
    w->p += n;
}

static void put32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

int ratchet_serialize(const struct ratchet *s, uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (!s || !out || !out_len)
        return PARLEY_EINVAL;
    size_t need = ratchet_serialized_len(s);
    if (out_cap < need)
        return PARLEY_ETOOBIG;
    const struct state *st = s->cur;
    struct wr w = {out};
    uint8_t head[2] = {RATCHET_STATE_VERSION,
                       (uint8_t)((st->pending ? FLAG_PENDING : 0) |
                                 (st->pending_has_prekey ? FLAG_PENDING_PREKEY : 0))};
    put(&w, head, 2);
    put(&w, st->our_identity.u, 32);
    put(&w, st->their_identity.u, 32);
    put32(&w, st->local_registration_id);
    put32(&w, st->remote_registration_id);
    put(&w, st->root, 32);
    put(&w, st->send_pub.u, 32);
    put(&w, st->send_priv, 32);
    put(&w, st->send.key, 32);
    put32(&w, st->send.index);
    put32(&w, st->previous_counter);
    put32(&w, st->pending_prekey_id);
    put32(&w, st->pending_signed_prekey_id);
    put(&w, st->base_key.u, 32);
    put32(&w, st->next_chain_id);
    uint8_t n = (uint8_t)st->n_recv;
    put(&w, &n, 1);
    for (uint32_t i = 0; i < st->n_recv; i++) {
        put32(&w, st->recv[i].id);
        put(&w, st->recv[i].their.u, 32);
        put(&w, st->recv[i].ck.key, 32);
        put32(&w, st->recv[i].ck.index);
    }
    uint8_t ns[2] = {(uint8_t)(st->n_skipped >> 8), (uint8_t)st->n_skipped};
    put(&w, ns, 2);
    for (uint32_t i = 0; i < st->n_skipped; i++) {
        put32(&w, st->skipped[i].chain_id);
        put32(&w, st->skipped[i].counter);
        put(&w, st->skipped[i].seed, 32);
    }
    *out_len = (size_t)(w.p - out);
    return 0;
}

struct rd {
    const uint8_t *p;
    size_t left;
};

static bool get(struct rd *r, void *dst, size_t n)
{
    if (r->left < n)
        return false;
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

static bool get32(struct rd *r, uint32_t *v)
{
    uint8_t b[4];
    if (!get(r, b, 4))
        return false;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return true;
}

static int parse_state(struct rd *r, struct state *st)
{
    uint8_t head[2];
    if (!get(r, head, 2))
        return PARLEY_EMALFORMED;
    if (head[0] != RATCHET_STATE_VERSION)
        return PARLEY_EVERSION;
    if (head[1] & ~(FLAG_PENDING | FLAG_PENDING_PREKEY))
        return PARLEY_EMALFORMED;
    st->pending = head[1] & FLAG_PENDING;
    st->pending_has_prekey = head[1] & FLAG_PENDING_PREKEY;
    uint8_t n_recv = 0, ns[2] = {0};
    bool ok = get(r, st->our_identity.u, 32) && get(r, st->their_identity.u, 32) &&
              get32(r, &st->local_registration_id) && get32(r, &st->remote_registration_id) &&
              get(r, st->root, 32) && get(r, st->send_pub.u, 32) && get(r, st->send_priv, 32) &&
              get(r, st->send.key, 32) && get32(r, &st->send.index) &&
              get32(r, &st->previous_counter) && get32(r, &st->pending_prekey_id) &&
              get32(r, &st->pending_signed_prekey_id) && get(r, st->base_key.u, 32) &&
              get32(r, &st->next_chain_id) && get(r, &n_recv, 1);
    if (!ok || n_recv > RATCHET_MAX_CHAINS)
        return PARLEY_EMALFORMED;
    if (!st->pending &&
        (st->pending_has_prekey || st->pending_prekey_id || st->pending_signed_prekey_id))
        return PARLEY_EMALFORMED;
    if (st->pending && !st->pending_has_prekey && st->pending_prekey_id)
        return PARLEY_EMALFORMED;
    /* The private key must be a clamped scalar whose public key is send_pub. */
    if ((st->send_priv[0] & 7) || (st->send_priv[31] & 0xc0) != 0x40)
        return PARLEY_EMALFORMED;
    uint8_t pub[KEYS_PUBLIC_LEN];
    if (crypto_scalarmult_base(pub, st->send_priv) != 0 ||
        sodium_memcmp(pub, st->send_pub.u, KEYS_PUBLIC_LEN) != 0)
        return PARLEY_EMALFORMED;
    st->n_recv = n_recv;
    for (uint32_t i = 0; i < n_recv; i++) {
        struct recv_chain *c = &st->recv[i];
        if (!get32(r, &c->id) || !get(r, c->their.u, 32) || !get(r, c->ck.key, 32) ||
            !get32(r, &c->ck.index))
            return PARLEY_EMALFORMED;
        if (c->id >= st->next_chain_id)
            return PARLEY_EMALFORMED;
        for (uint32_t j = 0; j < i; j++)
            if (st->recv[j].id == c->id ||
                memcmp(st->recv[j].their.u, c->their.u, KEYS_PUBLIC_LEN) == 0)
                return PARLEY_EMALFORMED;
    }
    if (!get(r, ns, 2))
        return PARLEY_EMALFORMED;
    uint32_t n_skipped = (uint32_t)ns[0] << 8 | ns[1];
    if (n_skipped > RATCHET_MAX_SKIPPED)
        return PARLEY_EMALFORMED;
    st->n_skipped = 0;
    for (uint32_t i = 0; i < n_skipped; i++) {
        struct skipped *k = &st->skipped[i];
        if (!get32(r, &k->chain_id) || !get32(r, &k->counter) || !get(r, k->seed, 32))
            return PARLEY_EMALFORMED;
        st->n_skipped++;
        const struct recv_chain *c = NULL;
        for (uint32_t j = 0; j < n_recv && !c; j++)
            if (st->recv[j].id == k->chain_id)
                c = &st->recv[j];
        if (!c || k->counter >= c->ck.index)
            return PARLEY_EMALFORMED;
        for (uint32_t j = 0; j < i; j++)
            if (st->skipped[j].chain_id == k->chain_id && st->skipped[j].counter == k->counter)
                return PARLEY_EMALFORMED;
    }
    if (r->left != 0)
        return PARLEY_EMALFORMED;
    return 0;
}

int ratchet_deserialize(const uint8_t *in, size_t len, struct ratchet **out)
{
    if (!in || !out)
        return PARLEY_EINVAL;
    struct ratchet *s = NULL;
    int rc = session_alloc(&s);
    if (rc)
        return rc;
    struct rd r = {in, len};
    rc = parse_state(&r, s->cur);
    if (rc) {
        ratchet_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
