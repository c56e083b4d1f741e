/* SPDX-License-Identifier: MIT */
/* libFuzzer target for what a session takes from outside: a saved session
 * state (ratchet_deserialize, read back from a device's files) and the
 * messages a peer sends (ratchet_decrypt, ratchet_decrypt_prekey). The
 * first input byte picks which; the rest is the untrusted bytes. A refused
 * message must leave the session byte for byte as it was; an accepted state
 * must serialize again. The two sessions it decrypts on are made once per
 * process (fresh keys), so a message of another run fails its MAC: the
 * target exercises everything up to and including the MAC check and the
 * refusals around it. Seeds: corpus/ratchet_fuzz/. */
#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "crypto/x3dh.h"
#include "crypto/xeddsa.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct saved {
    uint8_t *data;
    size_t len;
};

static struct keys_pair *bob_identity, *bob_signed;
static struct saved alice_state, bob_state;

static void must(int rc)
{
    if (rc != 0)
        abort();
}

static struct saved save(const struct ratchet *s)
{
    struct saved v = {.len = ratchet_serialized_len(s)};
    v.data = malloc(v.len);
    if (!v.data)
        abort();
    size_t n = 0;
    must(ratchet_serialize(s, v.data, v.len, &n));
    if (n != v.len)
        abort();
    return v;
}

static bool same(const struct ratchet *s, const struct saved *v)
{
    struct saved now = save(s);
    bool eq = now.len == v->len && memcmp(now.data, v->data, v->len) == 0;
    free(now.data);
    return eq;
}

static int lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out)
{
    (void)arg;
    if (!is_signed || id != 7)
        return PARLEY_ENOTFOUND;
    *out = bob_signed;
    return 0;
}

static const struct ratchet_responder bob_self = {NULL, 222, lookup, NULL};

/* Alice starts a session on Bob's bundle (no one-time prekey), Bob answers:
 * both sessions are past their first exchange. */
static void setup_once(void)
{
    struct keys_pair *alice_identity;
    must(keys_generate(&alice_identity));
    must(keys_generate(&bob_identity));
    must(keys_generate(&bob_signed));
    struct x3dh_bundle bundle;
    memset(&bundle, 0, sizeof(bundle));
    bundle.identity_key = *keys_public_of(bob_identity);
    bundle.signed_prekey_id = 7;
    bundle.signed_prekey = *keys_public_of(bob_signed);
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&bundle.signed_prekey, wire);
    must(xeddsa_sign(bob_identity, wire, sizeof(wire), bundle.signed_prekey_signature));

    struct ratchet *alice = NULL, *bob = NULL;
    must(ratchet_initiate(alice_identity, 111, &bundle, 222, &alice));
    uint8_t *m, *pt;
    size_t m_len, pt_len;
    enum ratchet_msg_type type;
    must(ratchet_encrypt(alice, (const uint8_t *)"hello", 5, &m, &m_len, &type));
    struct ratchet_responder self = bob_self;
    self.identity = bob_identity;
    bool used;
    uint32_t used_id;
    must(ratchet_decrypt_prekey(&bob, &self, m, m_len, &pt, &pt_len, &used, &used_id));
    free(m);
    ratchet_plaintext_free(pt, pt_len);
    must(ratchet_encrypt(bob, (const uint8_t *)"hi", 2, &m, &m_len, &type));
    must(ratchet_decrypt(alice, m, m_len, &pt, &pt_len));
    free(m);
    ratchet_plaintext_free(pt, pt_len);
    alice_state = save(alice);
    bob_state = save(bob);
    ratchet_free(alice);
    ratchet_free(bob);
    keys_free(alice_identity);
}

static void fuzz_state(const uint8_t *data, size_t size)
{
    struct ratchet *s = NULL;
    if (ratchet_deserialize(data, size, &s) != 0)
        return;
    struct saved again = save(s); /* what was accepted must write back */
    free(again.data);
    ratchet_free(s);
}

/* Decrypts data on a fresh copy of a saved session; a refusal must leave
 * it as it was. */
static void fuzz_decrypt(const struct saved *state, bool prekey, const uint8_t *data, size_t size)
{
    struct ratchet *s = NULL;
    must(ratchet_deserialize(state->data, state->len, &s));
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    int rc;
    if (prekey) {
        struct ratchet_responder self = bob_self;
        self.identity = bob_identity;
        bool used = false;
        uint32_t used_id = 0;
        rc = ratchet_decrypt_prekey(&s, &self, data, size, &pt, &pt_len, &used, &used_id);
    } else {
        rc = ratchet_decrypt(s, data, size, &pt, &pt_len);
    }
    if (rc == 0)
        ratchet_plaintext_free(pt, pt_len);
    else if (!same(s, state))
        abort();
    ratchet_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup_once();
        ready = true;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 5;
    data++;
    size--;
    switch (mode) {
    case 0:
        fuzz_state(data, size);
        break;
    case 1:
        fuzz_decrypt(&bob_state, false, data, size);
        break;
    case 2:
        fuzz_decrypt(&alice_state, false, data, size);
        break;
    case 3:
        fuzz_decrypt(&bob_state, true, data, size);
        break;
    default: {
        /* A saved state with one byte changed at a chosen offset. */
        if (size < 3)
            break;
        size_t at = ((size_t)data[0] << 8 | data[1]) % bob_state.len;
        uint8_t *copy = malloc(bob_state.len);
        if (!copy)
            abort();
        memcpy(copy, bob_state.data, bob_state.len);
        copy[at] ^= data[2] ? data[2] : 1;
        fuzz_state(copy, bob_state.len);
        free(copy);
        break;
    }
    }
    return 0;
}
