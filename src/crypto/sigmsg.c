/* SPDX-License-Identifier: MIT */
/* Framing, parsing and MACs of Signal's SignalMessage and
 * PreKeySignalMessage on protobuf-c, with the acceptance rules of
 * libsignal-protocol-c's protocol.c. Keys and ciphertext come from and go
 * to the ratchet; nothing here is secret except the MAC key, borrowed. */
#include "crypto/sigmsg.h"

#include "common/err.h"
#include "signal_wire.pb-c.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define VERSION_OF(byte) ((uint8_t)((byte) >> 4))

static void mac_compute(const uint8_t *framed, size_t framed_len,
                        const uint8_t mac_key[SIGMSG_MAC_KEY_LEN],
                        const struct keys_public *sender, const struct keys_public *receiver,
                        uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    crypto_auth_hmacsha256_init(&st, mac_key, SIGMSG_MAC_KEY_LEN);
    keys_public_encode(sender, wire);
    crypto_auth_hmacsha256_update(&st, wire, sizeof(wire));
    keys_public_encode(receiver, wire);
    crypto_auth_hmacsha256_update(&st, wire, sizeof(wire));
    crypto_auth_hmacsha256_update(&st, framed, framed_len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
}

size_t sigmsg_encoded_len(const struct sigmsg *m)
{
    Parley__Signal__SignalMessage pb = PARLEY__SIGNAL__SIGNAL_MESSAGE__INIT;
    uint8_t key[KEYS_PUBLIC_WIRE_LEN];
    pb.has_ratchetkey = 1;
    pb.ratchetkey.data = key;
    pb.ratchetkey.len = sizeof(key);
    pb.has_counter = 1;
    pb.counter = m->counter;
    pb.has_previouscounter = 1;
    pb.previouscounter = m->previous_counter;
    pb.has_ciphertext = 1;
    pb.ciphertext.len = m->ciphertext_len;
    return 1 + parley__signal__signal_message__get_packed_size(&pb) + SIGMSG_MAC_LEN;
}

int sigmsg_encode(const struct sigmsg *m, const uint8_t mac_key[SIGMSG_MAC_KEY_LEN],
                  const struct keys_public *sender_identity,
                  const struct keys_public *receiver_identity, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    if (!m || !mac_key || !sender_identity || !receiver_identity || !out || !out_len ||
        (!m->ciphertext && m->ciphertext_len))
        return PARLEY_EINVAL;
    if (m->ciphertext_len > SIGMSG_MAX_LEN)
        return PARLEY_ETOOBIG;
    Parley__Signal__SignalMessage pb = PARLEY__SIGNAL__SIGNAL_MESSAGE__INIT;
    uint8_t key[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(&m->ratchet_key, key);
    pb.has_ratchetkey = 1;
    pb.ratchetkey.data = key;
    pb.ratchetkey.len = sizeof(key);
    pb.has_counter = 1;
    pb.counter = m->counter;
    pb.has_previouscounter = 1;
    pb.previouscounter = m->previous_counter;
    pb.has_ciphertext = 1;
    pb.ciphertext.data = m->ciphertext;
    pb.ciphertext.len = m->ciphertext_len;
    size_t body = parley__signal__signal_message__get_packed_size(&pb);
    size_t total = 1 + body + SIGMSG_MAC_LEN;
    if (total > out_cap || total > SIGMSG_MAX_LEN)
        return PARLEY_ETOOBIG;
    out[0] = SIGMSG_VERSION_BYTE;
    if (parley__signal__signal_message__pack(&pb, out + 1) != body)
        return PARLEY_EINTERNAL;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    mac_compute(out, 1 + body, mac_key, sender_identity, receiver_identity, mac);
    memcpy(out + 1 + body, mac, SIGMSG_MAC_LEN);
    *out_len = total;
    return 0;
}

int sigmsg_verify_mac(const uint8_t *in, size_t len, const uint8_t mac_key[SIGMSG_MAC_KEY_LEN],
                      const struct keys_public *sender_identity,
                      const struct keys_public *receiver_identity)
{
    if (!in || !mac_key || !sender_identity || !receiver_identity)
        return PARLEY_EINVAL;
    if (len <= 1 + SIGMSG_MAC_LEN)
        return PARLEY_EMALFORMED;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    mac_compute(in, len - SIGMSG_MAC_LEN, mac_key, sender_identity, receiver_identity, mac);
    return sodium_memcmp(mac, in + len - SIGMSG_MAC_LEN, SIGMSG_MAC_LEN) == 0
               ? 0
               : PARLEY_EBAD_SIGNATURE;
}

/* Check the version nibble as libsignal does for the messages it can read,
 * narrowed to the one version parley speaks. */
static int check_version(uint8_t byte)
{
    return VERSION_OF(byte) == SIGMSG_VERSION ? 0 : PARLEY_EVERSION;
}

int sigmsg_decode(const uint8_t *in, size_t len, struct sigmsg *out)
{
    if (!in || !out)
        return PARLEY_EINVAL;
    if (len <= 1 + SIGMSG_MAC_LEN || len > SIGMSG_MAX_LEN)
        return PARLEY_EMALFORMED;
    int rc = check_version(in[0]);
    if (rc)
        return rc;
    Parley__Signal__SignalMessage *pb =
        parley__signal__signal_message__unpack(NULL, len - 1 - SIGMSG_MAC_LEN, in + 1);
    if (!pb)
        return PARLEY_EMALFORMED;
    struct sigmsg m = {0};
    rc = PARLEY_EMALFORMED;
    if (!pb->has_ratchetkey || !pb->has_counter || !pb->has_ciphertext)
        goto done;
    rc = keys_public_decode(pb->ratchetkey.data, pb->ratchetkey.len, &m.ratchet_key);
    if (rc)
        goto done;
    m.counter = pb->counter;
    m.previous_counter = pb->has_previouscounter ? pb->previouscounter : 0;
    m.ciphertext_len = pb->ciphertext.len;
    /* One byte at least, so that an empty ciphertext still owns a buffer. */
    m.ciphertext = malloc(m.ciphertext_len ? m.ciphertext_len : 1);
    if (!m.ciphertext) {
        rc = PARLEY_ENOMEM;
        goto done;
    }
    if (m.ciphertext_len)
        memcpy(m.ciphertext, pb->ciphertext.data, m.ciphertext_len);
    *out = m;
    rc = 0;
done:
    parley__signal__signal_message__free_unpacked(pb, NULL);
    return rc;
}

void sigmsg_clear(struct sigmsg *m)
{
    if (!m)
        return;
    free(m->ciphertext);
    memset(m, 0, sizeof(*m));
}

static void prekey_fill(const struct sigmsg_prekey *m, Parley__Signal__PreKeySignalMessage *pb,
                        uint8_t base[KEYS_PUBLIC_WIRE_LEN], uint8_t ident[KEYS_PUBLIC_WIRE_LEN])
{
    keys_public_encode(&m->base_key, base);
    keys_public_encode(&m->identity_key, ident);
    pb->has_registrationid = 1;
    pb->registrationid = m->registration_id;
    pb->has_prekeyid = m->has_prekey_id;
    pb->prekeyid = m->has_prekey_id ? m->prekey_id : 0;
    pb->has_signedprekeyid = 1;
    pb->signedprekeyid = m->signed_prekey_id;
    pb->has_basekey = 1;
    pb->basekey.data = base;
    pb->basekey.len = KEYS_PUBLIC_WIRE_LEN;
    pb->has_identitykey = 1;
    pb->identitykey.data = ident;
    pb->identitykey.len = KEYS_PUBLIC_WIRE_LEN;
    pb->has_message = 1;
    pb->message.data = m->message;
    pb->message.len = m->message_len;
}

size_t sigmsg_prekey_encoded_len(const struct sigmsg_prekey *m)
{
    Parley__Signal__PreKeySignalMessage pb = PARLEY__SIGNAL__PRE_KEY_SIGNAL_MESSAGE__INIT;
    uint8_t base[KEYS_PUBLIC_WIRE_LEN], ident[KEYS_PUBLIC_WIRE_LEN];
    prekey_fill(m, &pb, base, ident);
    return 1 + parley__signal__pre_key_signal_message__get_packed_size(&pb);
}

int sigmsg_prekey_encode(const struct sigmsg_prekey *m, uint8_t *out, size_t out_cap,
                         size_t *out_len)
{
    if (!m || !m->message || !m->message_len || !out || !out_len)
        return PARLEY_EINVAL;
    if (m->message_len > SIGMSG_MAX_LEN)
        return PARLEY_ETOOBIG;
    Parley__Signal__PreKeySignalMessage pb = PARLEY__SIGNAL__PRE_KEY_SIGNAL_MESSAGE__INIT;
    uint8_t base[KEYS_PUBLIC_WIRE_LEN], ident[KEYS_PUBLIC_WIRE_LEN];
    prekey_fill(m, &pb, base, ident);
    size_t body = parley__signal__pre_key_signal_message__get_packed_size(&pb);
    if (1 + body > out_cap || 1 + body > SIGMSG_MAX_LEN)
        return PARLEY_ETOOBIG;
    out[0] = SIGMSG_VERSION_BYTE;
    if (parley__signal__pre_key_signal_message__pack(&pb, out + 1) != body)
        return PARLEY_EINTERNAL;
    *out_len = 1 + body;
    return 0;
}

int sigmsg_prekey_decode(const uint8_t *in, size_t len, struct sigmsg_prekey *out)
{
    if (!in || !out)
        return PARLEY_EINVAL;
    if (len <= 1 || len > SIGMSG_MAX_LEN)
        return PARLEY_EMALFORMED;
    int rc = check_version(in[0]);
    if (rc)
        return rc;
    Parley__Signal__PreKeySignalMessage *pb =
        parley__signal__pre_key_signal_message__unpack(NULL, len - 1, in + 1);
    if (!pb)
        return PARLEY_EMALFORMED;
    struct sigmsg_prekey m = {0};
    rc = PARLEY_EMALFORMED;
    if (!pb->has_signedprekeyid || !pb->has_basekey || !pb->has_identitykey || !pb->has_message)
        goto done;
    m.registration_id = pb->has_registrationid ? pb->registrationid : 0;
    m.has_prekey_id = pb->has_prekeyid;
    m.prekey_id = pb->has_prekeyid ? pb->prekeyid : 0;
    m.signed_prekey_id = pb->signedprekeyid;
    if ((rc = keys_public_decode(pb->basekey.data, pb->basekey.len, &m.base_key)) != 0 ||
        (rc = keys_public_decode(pb->identitykey.data, pb->identitykey.len, &m.identity_key)) != 0)
        goto done;
    rc = sigmsg_decode(pb->message.data, pb->message.len, &m.inner);
    if (rc == PARLEY_EINVAL) /* protobuf-c gives NULL data for an empty field */
        rc = PARLEY_EMALFORMED;
    if (rc)
        goto done;
    /* Both version nibbles are 3 by now, so the inner and outer versions
     * agree, which libsignal checks separately. */
    m.message_len = pb->message.len;
    m.message = malloc(m.message_len);
    if (!m.message) {
        sigmsg_clear(&m.inner);
        rc = PARLEY_ENOMEM;
        goto done;
    }
    memcpy(m.message, pb->message.data, m.message_len);
    *out = m;
    rc = 0;
done:
    parley__signal__pre_key_signal_message__free_unpacked(pb, NULL);
    return rc;
}

void sigmsg_prekey_clear(struct sigmsg_prekey *m)
{
    if (!m)
        return;
    sigmsg_clear(&m->inner);
    free(m->message);
    memset(m, 0, sizeof(*m));
}
