/* SPDX-License-Identifier: MIT */
/* parley-e2e: a small interop tool over src/crypto, so that another
 * Signal-protocol implementation can be tested against ours from a shell.
 * Parses the command line and the JSON on stdin, runs one step (init,
 * bundle, start-session, encrypt, decrypt) on the state in STATE_DIR
 * (e2e.h) and prints one JSON object. Errors are one {"error": ...} object
 * on stderr; exit status 0 done, 1 refused or failed, 2 bad usage. */
#include "common/err.h"
#include "crypto/keys.h"
#include "crypto/ratchet.h"
#include "crypto/sigmsg.h"
#include "crypto/x3dh.h"
#include "crypto/xeddsa.h"
#include "e2e/e2e.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define INPUT_MAX (2u * SIGMSG_MAX_LEN) /* stdin above this is refused */

static const char usage_text[] =
    "usage: parley-e2e STATE_DIR init --registration-id N [--device-id D]\n"
    "       parley-e2e STATE_DIR bundle --signed-prekey-id B [--prekey-id A]\n"
    "       parley-e2e STATE_DIR start-session --peer NAME [--peer-device D] < bundle JSON\n"
    "       parley-e2e STATE_DIR encrypt --peer NAME [--peer-device D] < plaintext\n"
    "       parley-e2e STATE_DIR decrypt --peer NAME [--peer-device D] < {\"type\",\"body\"}";

/* Print {"error": msg} on stderr and return status, for main to exit with. */
PL_PRINTF(2, 3) static int fail(int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s}", "error", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    fprintf(stderr, "%s\n", s ? s : "{\"error\":\"out of memory\"}");
    free(s);
    json_decref(o);
    return status;
}

static int usage(const char *why)
{
    fprintf(stderr, "%s\n", usage_text);
    return fail(EXIT_USAGE, "%s", why);
}

/* What a crypto or state error means to the person at the shell. */
static const char *why(int rc)
{
    switch (rc) {
    case PARLEY_EBAD_SIGNATURE:
        return "authentication failed (bad MAC or signature: tampered, or not for this session)";
    case PARLEY_EBAD_NONCE:
        return "message key already used or dropped (a replay)";
    case PARLEY_EMALFORMED:
        return "malformed message or damaged state file";
    case PARLEY_EVERSION:
        return "unsupported message or state version";
    case PARLEY_EBAD_KEY:
        return "invalid public key (wrong form or low order)";
    case PARLEY_ETOOBIG:
        return "message too large, or too far ahead in its chain";
    case PARLEY_ENOTFOUND:
        return "unknown prekey id";
    case PARLEY_ENOACCOUNT:
        return "state directory not initialised (run init)";
    case PARLEY_EEXIST:
        return "state directory already initialised";
    case PARLEY_EIO:
        return "cannot read or write the state directory";
    default:
        return err_text(rc);
    }
}

/* Print o (taking ownership) on stdout, compact, one line. */
static int print_json(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return fail(EXIT_FAIL, "out of memory");
    int ok = printf("%s\n", s) >= 0 && fflush(stdout) == 0;
    free(s);
    return ok ? 0 : fail(EXIT_FAIL, "cannot write output");
}

/* Standard base64 with padding of in, as a jansson string. */
static json_t *b64_json(const uint8_t *in, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (!s)
        return NULL;
    sodium_bin2base64(s, cap, in, len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *key_json(const struct keys_public *pk)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(pk, wire);
    return b64_json(wire, sizeof(wire));
}

/* Decode base64 text s into a new malloc'ed buffer. Returns 0 or -1. */
static int b64_decode(const char *s, uint8_t **out, size_t *len)
{
    size_t n = strlen(s);
    uint8_t *buf = malloc(n / 4 * 3 + 3);
    if (!buf)
        return -1;
    size_t got;
    if (sodium_base642bin(buf, n / 4 * 3 + 3, s, n, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        (n % 4) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = got;
    return 0;
}

/* Read all of stdin, at most INPUT_MAX bytes, into sodium_malloc'ed memory
 * (it may be a plaintext), NUL-terminated. Returns 0 or a PARLEY_E* code. */
static int read_stdin(uint8_t **out, size_t *len)
{
    uint8_t *buf = sodium_malloc(INPUT_MAX + 1);
    if (!buf)
        return PARLEY_ENOMEM;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(STDIN_FILENO, buf + got, INPUT_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sodium_free(buf);
            return PARLEY_EIO;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got > INPUT_MAX) {
            sodium_free(buf);
            return PARLEY_ETOOBIG;
        }
    }
    buf[got] = 0;
    *out = buf;
    *len = got;
    return 0;
}

/* Parse the JSON object on stdin. Returns it, or NULL with the reason in
 * err (errlen bytes). */
static json_t *read_json(char *err, size_t errlen)
{
    uint8_t *in;
    size_t len;
    int rc = read_stdin(&in, &len);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read stdin: %s",
                 rc == PARLEY_ETOOBIG ? "too large" : err_text(rc));
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb((const char *)in, len, JSON_REJECT_DUPLICATES, &je);
    sodium_free(in);
    if (!o) {
        snprintf(err, errlen, "stdin is not JSON: %s", je.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        snprintf(err, errlen, "stdin is not a JSON object");
        return NULL;
    }
    return o;
}

/* A decimal number in [min, max], digits only. */
static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    if (!s || s[0] < '0' || s[0] > '9' || strlen(s) > 10)
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    unsigned long long v = strtoull(s, NULL, 10);
    if (v < min || v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* The options of every command; which are allowed and required is each
 * command's to check. */
struct opts {
    const char *registration_id, *device_id, *signed_prekey_id, *prekey_id, *peer, *peer_device;
};

static bool parse_opts(int argc, char **argv, struct opts *o, const char **bad)
{
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--registration-id") == 0)
            slot = &o->registration_id;
        else if (strcmp(argv[i], "--device-id") == 0)
            slot = &o->device_id;
        else if (strcmp(argv[i], "--signed-prekey-id") == 0)
            slot = &o->signed_prekey_id;
        else if (strcmp(argv[i], "--prekey-id") == 0)
            slot = &o->prekey_id;
        else if (strcmp(argv[i], "--peer") == 0)
            slot = &o->peer;
        else if (strcmp(argv[i], "--peer-device") == 0)
            slot = &o->peer_device;
        if (!slot || *slot || i + 1 >= argc) {
            *bad = argv[i];
            return false;
        }
        *slot = argv[++i];
    }
    return true;
}

/* True when every option set in o is one of allowed_slots (pointers to
 * members of o). */
static bool only(const struct opts *o, const char *const *allowed_slots[], size_t n)
{
    const char *const *all[] = {&o->registration_id, &o->device_id, &o->signed_prekey_id,
                                &o->prekey_id,       &o->peer,      &o->peer_device};
    for (size_t i = 0; i < PL_ARRAY_LEN(all); i++) {
        if (!*all[i])
            continue;
        bool ok = false;
        for (size_t j = 0; j < n; j++)
            ok = ok || allowed_slots[j] == all[i];
        if (!ok)
            return false;
    }
    return true;
}

static int cmd_init(const struct e2e_dir *d, const struct opts *o)
{
    const char *const *allowed[] = {&o->registration_id, &o->device_id};
    if (!only(o, allowed, PL_ARRAY_LEN(allowed)))
        return usage("init takes --registration-id N [--device-id D]");
    uint32_t reg, dev = 1;
    if (!o->registration_id || !parse_u32(o->registration_id, 1, UINT32_MAX, &reg))
        return usage("--registration-id must be a number from 1 to 4294967295");
    if (o->device_id && !parse_u32(o->device_id, 1, INT32_MAX, &dev))
        return usage("--device-id must be a number from 1 to 2147483647");
    struct e2e_identity id;
    int rc = e2e_init(d, reg, dev, &id);
    if (rc != 0)
        return fail(EXIT_FAIL, "init: %s", why(rc));
    json_t *out = json_pack("{s:I,s:I,s:o}", "registrationId", (json_int_t)reg, "deviceId",
                            (json_int_t)dev, "identityKey", key_json(keys_public_of(id.key)));
    keys_free(id.key);
    return print_json(out);
}

static int cmd_bundle(const struct e2e_dir *d, const struct opts *o)
{
    const char *const *allowed[] = {&o->signed_prekey_id, &o->prekey_id};
    if (!only(o, allowed, PL_ARRAY_LEN(allowed)))
        return usage("bundle takes --signed-prekey-id B [--prekey-id A]");
    uint32_t spk_id, pk_id = 0;
    if (!o->signed_prekey_id || !parse_u32(o->signed_prekey_id, 0, UINT32_MAX, &spk_id))
        return usage("--signed-prekey-id must be a number from 0 to 4294967295");
    if (o->prekey_id && !parse_u32(o->prekey_id, 0, UINT32_MAX, &pk_id))
        return usage("--prekey-id must be a number from 0 to 4294967295");
    struct e2e_identity id;
    int rc = e2e_identity_load(d, &id);
    if (rc != 0)
        return fail(EXIT_FAIL, "bundle: %s", why(rc));
    struct keys_pair *spk = NULL, *pk = NULL;
    uint8_t sig[XEDDSA_SIGNATURE_LEN];
    rc = e2e_signed_prekey(d, spk_id, true, id.key, &spk, sig);
    if (rc == 0 && o->prekey_id)
        rc = e2e_prekey(d, pk_id, true, &pk);
    json_t *out = NULL;
    if (rc == 0) {
        out = json_pack("{s:I,s:I,s:o,s:I,s:o,s:o}", "registrationId",
                        (json_int_t)id.registration_id, "deviceId", (json_int_t)id.device_id,
                        "identityKey", key_json(keys_public_of(id.key)), "signedPreKeyId",
                        (json_int_t)spk_id, "signedPreKeyPublic", key_json(keys_public_of(spk)),
                        "signedPreKeySignature", b64_json(sig, sizeof(sig)));
        if (out && pk &&
            (json_object_set_new(out, "preKeyId", json_integer(pk_id)) != 0 ||
             json_object_set_new(out, "preKeyPublic", key_json(keys_public_of(pk))) != 0)) {
            json_decref(out);
            out = NULL;
        }
    }
    keys_free(pk);
    keys_free(spk);
    keys_free(id.key);
    if (rc != 0)
        return fail(EXIT_FAIL, "bundle: %s", why(rc));
    return print_json(out);
}

/* The peer and device options of start-session, encrypt and decrypt. */
static int peer_opts(const struct opts *o, const char *cmd, uint32_t *device)
{
    const char *const *allowed[] = {&o->peer, &o->peer_device};
    char msg[128];
    snprintf(msg, sizeof(msg), "%s takes --peer NAME [--peer-device D]", cmd);
    if (!only(o, allowed, PL_ARRAY_LEN(allowed)) || !o->peer)
        return usage(msg);
    if (!e2e_is_peer_name(o->peer))
        return usage("--peer NAME must be 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.'");
    *device = 1;
    if (o->peer_device && !parse_u32(o->peer_device, 1, INT32_MAX, device))
        return usage("--peer-device must be a number from 1 to 2147483647");
    return 0;
}

/* A uint32 member of o; false when absent or out of range. */
static bool get_id(json_t *o, const char *key, uint32_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
        return false;
    *out = (uint32_t)json_integer_value(v);
    return true;
}

/* A base64 member of o of exactly len bytes, into out. Returns 0, or -1
 * with the reason in err. */
static int get_bytes(json_t *o, const char *key, uint8_t *out, size_t len, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        snprintf(err, errlen, "missing field %s", key);
        return -1;
    }
    uint8_t *buf;
    size_t n;
    if (!json_is_string(v) || b64_decode(json_string_value(v), &buf, &n) != 0) {
        snprintf(err, errlen, "%s is not standard base64", key);
        return -1;
    }
    int rc = 0;
    if (n != len) {
        snprintf(err, errlen, "%s must be %zu bytes, not %zu", key, len, n);
        rc = -1;
    } else {
        memcpy(out, buf, len);
    }
    free(buf);
    return rc;
}

static int get_key(json_t *o, const char *key, struct keys_public *out, char *err, size_t errlen)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    if (get_bytes(o, key, wire, sizeof(wire), err, errlen) != 0)
        return -1;
    if (keys_public_decode(wire, sizeof(wire), out) != 0) {
        snprintf(err, errlen, "%s is not a 33-byte Curve25519 key with type byte 0x05", key);
        return -1;
    }
    return 0;
}

static int parse_bundle(json_t *j, struct x3dh_bundle *b, uint32_t *reg, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    if (!get_id(j, "registrationId", reg)) {
        snprintf(err, errlen, "registrationId missing or not a number from 0 to 4294967295");
        return -1;
    }
    if (!get_id(j, "signedPreKeyId", &b->signed_prekey_id)) {
        snprintf(err, errlen, "signedPreKeyId missing or not a number from 0 to 4294967295");
        return -1;
    }
    if (get_key(j, "identityKey", &b->identity_key, err, errlen) != 0 ||
        get_key(j, "signedPreKeyPublic", &b->signed_prekey, err, errlen) != 0 ||
        get_bytes(j, "signedPreKeySignature", b->signed_prekey_signature,
                  sizeof(b->signed_prekey_signature), err, errlen) != 0)
        return -1;
    bool has_id = json_object_get(j, "preKeyId") != NULL;
    bool has_key = json_object_get(j, "preKeyPublic") != NULL;
    if (has_id != has_key) {
        snprintf(err, errlen, "preKeyId and preKeyPublic come together or not at all");
        return -1;
    }
    if (has_id) {
        if (!get_id(j, "preKeyId", &b->prekey_id)) {
            snprintf(err, errlen, "preKeyId is not a number from 0 to 4294967295");
            return -1;
        }
        if (get_key(j, "preKeyPublic", &b->prekey, err, errlen) != 0)
            return -1;
        b->has_prekey = true;
    }
    return 0;
}

static int cmd_start_session(const struct e2e_dir *d, const struct opts *o)
{
    uint32_t device;
    int st = peer_opts(o, "start-session", &device);
    if (st != 0)
        return st;
    char err[256];
    json_t *j = read_json(err, sizeof(err));
    if (!j)
        return fail(EXIT_FAIL, "start-session: %s", err);
    struct x3dh_bundle b;
    uint32_t their_reg;
    int bad = parse_bundle(j, &b, &their_reg, err, sizeof(err));
    json_decref(j);
    if (bad)
        return fail(EXIT_FAIL, "start-session: bundle: %s", err);
    struct e2e_identity id;
    int rc = e2e_identity_load(d, &id);
    if (rc != 0)
        return fail(EXIT_FAIL, "start-session: %s", why(rc));
    struct ratchet *s = NULL;
    rc = ratchet_initiate(id.key, id.registration_id, &b, their_reg, &s);
    if (rc == 0)
        rc = e2e_session_save(d, o->peer, device, s);
    ratchet_free(s);
    keys_free(id.key);
    if (rc == PARLEY_EBAD_SIGNATURE)
        return fail(EXIT_FAIL, "start-session: the signed prekey's signature does not verify");
    if (rc != 0)
        return fail(EXIT_FAIL, "start-session: %s", why(rc));
    return print_json(json_pack("{s:s,s:I}", "peer", o->peer, "peerDevice", (json_int_t)device));
}

/* Print why the session with peer and device could not be loaded (rc, from
 * e2e_session_load) and return the exit status. */
static int session_error(const char *cmd, const char *peer, uint32_t device, int rc)
{
    if (rc == PARLEY_ENOTFOUND)
        return fail(EXIT_FAIL, "%s: no session with peer %s device %u (run start-session)", cmd,
                    peer, (unsigned)device);
    return fail(EXIT_FAIL, "%s: session with peer %s device %u: %s", cmd, peer, (unsigned)device,
                why(rc));
}

static int cmd_encrypt(const struct e2e_dir *d, const struct opts *o)
{
    uint32_t device;
    int st = peer_opts(o, "encrypt", &device);
    if (st != 0)
        return st;
    struct ratchet *s;
    int rc = e2e_session_load(d, o->peer, device, &s);
    if (rc != 0)
        return session_error("encrypt", o->peer, device, rc);
    uint8_t *pt = NULL, *msg = NULL;
    size_t pt_len, msg_len;
    enum ratchet_msg_type type;
    rc = read_stdin(&pt, &pt_len);
    if (rc == 0)
        rc = ratchet_encrypt(s, pt, pt_len, &msg, &msg_len, &type);
    if (pt)
        sodium_free(pt);
    if (rc == 0)
        rc = e2e_session_save(d, o->peer, device, s);
    ratchet_free(s);
    if (rc != 0) {
        free(msg);
        return fail(EXIT_FAIL, "encrypt: %s", why(rc));
    }
    json_t *out = json_pack("{s:s,s:o}", "type", type == RATCHET_MSG_PREKEY ? "prekey" : "whisper",
                            "body", b64_json(msg, msg_len));
    free(msg);
    return print_json(out);
}

/* Print {"plaintext": base64} from a wiped buffer, not through jansson,
 * so that no copy of the plaintext outlives this call. */
static int print_plaintext(const uint8_t *pt, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = sodium_malloc(cap);
    if (!b64)
        return fail(EXIT_FAIL, "out of memory");
    sodium_bin2base64(b64, cap, pt, len, sodium_base64_VARIANT_ORIGINAL);
    int ok = fputs("{\"plaintext\":\"", stdout) >= 0 && fputs(b64, stdout) >= 0 &&
             fputs("\"}\n", stdout) >= 0 && fflush(stdout) == 0;
    sodium_free(b64);
    return ok ? 0 : fail(EXIT_FAIL, "cannot write output");
}

static int cmd_decrypt(const struct e2e_dir *d, const struct opts *o)
{
    uint32_t device;
    int st = peer_opts(o, "decrypt", &device);
    if (st != 0)
        return st;
    char err[256];
    json_t *j = read_json(err, sizeof(err));
    if (!j)
        return fail(EXIT_FAIL, "decrypt: %s", err);
    json_t *type = json_object_get(j, "type");
    json_t *body = json_object_get(j, "body");
    bool is_prekey = json_is_string(type) && strcmp(json_string_value(type), "prekey") == 0;
    bool is_whisper = json_is_string(type) && strcmp(json_string_value(type), "whisper") == 0;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    if (!type || !body)
        st = fail(EXIT_FAIL, "decrypt: missing field %s", type ? "body" : "type");
    else if (!is_prekey && !is_whisper)
        st = fail(EXIT_FAIL, "decrypt: type must be \"prekey\" or \"whisper\"");
    else if (!json_is_string(body) || b64_decode(json_string_value(body), &msg, &msg_len) != 0)
        st = fail(EXIT_FAIL, "decrypt: body is not standard base64");
    json_decref(j);
    if (st != 0)
        return st;

    struct e2e_identity id = {0};
    struct ratchet *s = NULL;
    struct e2e_lookup lk = {.dir = d};
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    bool used = false;
    uint32_t used_id = 0;
    int rc = e2e_identity_load(d, &id);
    if (rc != 0) {
        st = fail(EXIT_FAIL, "decrypt: %s", why(rc));
        goto out;
    }
    rc = e2e_session_load(d, o->peer, device, &s);
    if (rc == PARLEY_ENOTFOUND && is_prekey) {
        s = NULL;
    } else if (rc != 0) {
        s = NULL;
        st = session_error("decrypt", o->peer, device, rc);
        goto out;
    }
    if (is_prekey) {
        lk.identity = id.key;
        struct ratchet_responder me = {.identity = id.key,
                                       .registration_id = id.registration_id,
                                       .lookup = e2e_lookup,
                                       .arg = &lk};
        rc = ratchet_decrypt_prekey(&s, &me, msg, msg_len, &pt, &pt_len, &used, &used_id);
    } else {
        rc = ratchet_decrypt(s, msg, msg_len, &pt, &pt_len);
    }
    if (rc == 0)
        rc = e2e_session_save(d, o->peer, device, s);
    if (rc == 0 && used)
        rc = e2e_prekey_remove(d, used_id);
    if (rc != 0) {
        st = fail(EXIT_FAIL, "decrypt: %s", why(rc));
        goto out;
    }
    st = print_plaintext(pt, pt_len);
out:
    ratchet_plaintext_free(pt, pt_len);
    e2e_lookup_release(&lk);
    ratchet_free(s);
    keys_free(id.key);
    free(msg);
    return st;
}

int main(int argc, char **argv)
{
    umask(077);
    if (argc < 3)
        return usage("expected STATE_DIR and a command");
    if (sodium_init() < 0)
        return fail(EXIT_FAIL, "libsodium cannot start");
    struct e2e_dir d = {.path = argv[1]};
    if (d.path[0] == 0)
        return usage("STATE_DIR is empty");
    struct opts o;
    const char *bad = NULL;
    if (!parse_opts(argc - 3, argv + 3, &o, &bad)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown, repeated or valueless option: %.100s", bad);
        return usage(msg);
    }
    const char *cmd = argv[2];
    if (strcmp(cmd, "init") == 0)
        return cmd_init(&d, &o);
    if (strcmp(cmd, "bundle") == 0)
        return cmd_bundle(&d, &o);
    if (strcmp(cmd, "start-session") == 0)
        return cmd_start_session(&d, &o);
    if (strcmp(cmd, "encrypt") == 0)
        return cmd_encrypt(&d, &o);
    if (strcmp(cmd, "decrypt") == 0)
        return cmd_decrypt(&d, &o);
    char msg[160];
    snprintf(msg, sizeof(msg), "unknown command: %.100s", cmd);
    return usage(msg);
}
