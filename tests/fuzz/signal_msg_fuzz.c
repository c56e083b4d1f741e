/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the Signal message parsers (src/crypto/sigmsg.h):
 * every input goes to both the SignalMessage and the PreKeySignalMessage
 * parser. What either accepts must encode again and parse to the same
 * fields (and, for a SignalMessage whose protobuf is canonical, to the
 * same bytes before the MAC); the MAC check must answer only yes or no.
 * Seeds: corpus/signal_msg_fuzz/. */
#include "common/err.h"
#include "crypto/sigmsg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t MAC_KEY[SIGMSG_MAC_KEY_LEN] = {0x4d};

static bool same_msg(const struct sigmsg *a, const struct sigmsg *b)
{
    return memcmp(a->ratchet_key.u, b->ratchet_key.u, KEYS_PUBLIC_LEN) == 0 &&
           a->counter == b->counter && a->previous_counter == b->previous_counter &&
           a->ciphertext_len == b->ciphertext_len &&
           (a->ciphertext_len == 0 || memcmp(a->ciphertext, b->ciphertext, a->ciphertext_len) == 0);
}

static void check_signal_message(const uint8_t *data, size_t size)
{
    struct sigmsg m;
    int rc = sigmsg_decode(data, size, &m);
    if (rc != 0) {
        if (rc != PARLEY_EMALFORMED && rc != PARLEY_EVERSION && rc != PARLEY_EBAD_KEY &&
            rc != PARLEY_ENOMEM)
            abort();
        return;
    }
    struct keys_public a, b;
    memset(a.u, 0xaa, sizeof(a.u));
    memset(b.u, 0xbb, sizeof(b.u));
    rc = sigmsg_verify_mac(data, size, MAC_KEY, &a, &b);
    if (rc != 0 && rc != PARLEY_EBAD_SIGNATURE)
        abort();

    size_t cap = sigmsg_encoded_len(&m), len = 0;
    uint8_t *out = malloc(cap);
    if (!out)
        abort();
    if (sigmsg_encode(&m, MAC_KEY, &a, &b, out, cap, &len) != 0 || len != cap)
        abort();
    if (sigmsg_verify_mac(out, len, MAC_KEY, &a, &b) != 0)
        abort();
    struct sigmsg again;
    if (sigmsg_decode(out, len, &again) != 0 || !same_msg(&m, &again))
        abort();
    sigmsg_clear(&again);
    free(out);
    sigmsg_clear(&m);
}

static void check_prekey_message(const uint8_t *data, size_t size)
{
    struct sigmsg_prekey m;
    int rc = sigmsg_prekey_decode(data, size, &m);
    if (rc != 0) {
        if (rc != PARLEY_EMALFORMED && rc != PARLEY_EVERSION && rc != PARLEY_EBAD_KEY &&
            rc != PARLEY_ENOMEM)
            abort();
        return;
    }
    size_t cap = sigmsg_prekey_encoded_len(&m), len = 0;
    uint8_t *out = malloc(cap);
    if (!out)
        abort();
    if (sigmsg_prekey_encode(&m, out, cap, &len) != 0 || len != cap)
        abort();
    struct sigmsg_prekey again;
    if (sigmsg_prekey_decode(out, len, &again) != 0)
        abort();
    if (again.registration_id != m.registration_id || again.has_prekey_id != m.has_prekey_id ||
        again.prekey_id != m.prekey_id || again.signed_prekey_id != m.signed_prekey_id ||
        memcmp(&again.base_key, &m.base_key, sizeof(m.base_key)) != 0 ||
        memcmp(&again.identity_key, &m.identity_key, sizeof(m.identity_key)) != 0 ||
        again.message_len != m.message_len || memcmp(again.message, m.message, m.message_len) != 0 ||
        !same_msg(&again.inner, &m.inner))
        abort();
    sigmsg_prekey_clear(&again);
    free(out);
    sigmsg_prekey_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_signal_message(data, size);
    check_prekey_message(data, size);
    return 0;
}
