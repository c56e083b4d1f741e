/* SPDX-License-Identifier: MIT */
/* Trust files; see trust.h and docs/internals/client.md. Parsing is strict:
 * a damaged file could otherwise turn a changed key into an accepted one. */
#include "trust.h"
#include "common/err.h"
#include "home.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define KEY_HEX_LEN (2 * KEYS_PUBLIC_WIRE_LEN)
#define NO_KEY "-"
#define REMOVED " removed"
/* "device " + 20 digits + 2 keys in hex + separators + " removed" + newline */
#define LINE_MAX_LEN (7 + 20 + 2 * (KEY_HEX_LEN + 1) + 8 + 2)

void trust_init(struct trust *t, uint64_t user_id)
{
    memset(t, 0, sizeof(*t));
    t->user_id = user_id;
}

static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_key(const char *s, size_t len, struct keys_public *out)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    size_t bin_len;
    if (len != KEY_HEX_LEN ||
        sodium_hex2bin(wire, sizeof(wire), s, len, NULL, &bin_len, NULL) != 0 ||
        bin_len != sizeof(wire))
        return false;
    return keys_public_decode(wire, sizeof(wire), out) == 0;
}

/* "device ID CURRENT ACCEPTED|-[ removed]" without its newline. */
static bool parse_device(char *line, struct trust_device *d)
{
    const char *id = line + strlen("device ");
    const char *sp1 = strchr(id, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    memset(d, 0, sizeof(*d));
    if (!sp1 || !sp2)
        return false;
    char *sp3 = strchr(sp2 + 1, ' ');
    if (sp3) {
        if (strcmp(sp3, REMOVED) != 0)
            return false;
        *sp3 = '\0';
        d->removed = true;
    }
    if (!parse_u64(id, (size_t)(sp1 - id), &d->device_id) || d->device_id == 0 ||
        !parse_key(sp1 + 1, (size_t)(sp2 - sp1 - 1), &d->current))
        return false;
    const char *acc = sp2 + 1;
    if (strcmp(acc, NO_KEY) == 0)
        return true;
    d->has_accepted = true;
    return parse_key(acc, strlen(acc), &d->accepted);
}

static int parse(char *buf, size_t len, struct trust *t)
{
    bool have_user = false;
    char *line = buf, *next;
    if (strlen(buf) != len)
        return PARLEY_ECONFIG; /* a NUL byte */
    for (; *line; line = next) {
        char *nl = strchr(line, '\n');
        if (!nl)
            return PARLEY_ECONFIG; /* cut short */
        *nl = '\0';
        next = nl + 1;
        if (!have_user) {
            /* The account comes first, so every device line belongs to it. */
            if (strncmp(line, "user_id ", 8) != 0 ||
                !parse_u64(line + 8, strlen(line + 8), &t->user_id) || t->user_id == 0)
                return PARLEY_ECONFIG;
            have_user = true;
            continue;
        }
        struct trust_device d;
        if (strncmp(line, "device ", 7) != 0 || !parse_device(line, &d) ||
            trust_find(t, d.device_id) || t->n == TRUST_DEVICES_MAX)
            return PARLEY_ECONFIG;
        t->dev[t->n++] = d;
    }
    return have_user ? 0 : PARLEY_ECONFIG;
}

int trust_load(const char *path, struct trust *out)
{
    char *buf;
    size_t len;
    int err = home_read_file(path, &buf, &len);
    if (err)
        return err;
    struct trust *t = calloc(1, sizeof(*t));
    if (!t) {
        free(buf);
        return PARLEY_ENOMEM;
    }
    err = parse(buf, len, t);
    if (!err)
        *out = *t;
    free(t);
    free(buf);
    return err;
}

static void put_key(char *out, const struct keys_public *k)
{
    uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
    keys_public_encode(k, wire);
    sodium_bin2hex(out, KEY_HEX_LEN + 1, wire, sizeof(wire));
}

int trust_save(const char *path, const struct trust *t)
{
    size_t cap = 32 + t->n * LINE_MAX_LEN, off = 0;
    char *buf = malloc(cap);
    if (!buf)
        return PARLEY_ENOMEM;
    off += (size_t)snprintf(buf, cap, "user_id %llu\n", (unsigned long long)t->user_id);
    for (size_t i = 0; i < t->n; i++) {
        const struct trust_device *d = &t->dev[i];
        char cur[KEY_HEX_LEN + 1], acc[KEY_HEX_LEN + 1];
        put_key(cur, &d->current);
        if (d->has_accepted)
            put_key(acc, &d->accepted);
        else
            memcpy(acc, NO_KEY, sizeof(NO_KEY));
        off +=
            (size_t)snprintf(buf + off, cap - off, "device %llu %s %s%s\n",
                             (unsigned long long)d->device_id, cur, acc, d->removed ? REMOVED : "");
    }
    int err = home_write_file(path, buf, off);
    free(buf);
    return err;
}

struct trust_device *trust_find(struct trust *t, uint64_t device_id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->dev[i].device_id == device_id)
            return &t->dev[i];
    return NULL;
}

int trust_see(struct trust *t, uint64_t device_id, const struct keys_public *key,
              enum trust_verdict *verdict)
{
    struct trust_device *d = trust_find(t, device_id);
    if (!d) {
        if (t->n == TRUST_DEVICES_MAX) {
            /* The oldest removed device makes room; none: too many devices. */
            size_t i;
            for (i = 0; i < t->n && !t->dev[i].removed; i++)
                ;
            if (i == t->n)
                return PARLEY_EPROTO;
            memmove(&t->dev[i], &t->dev[i + 1], (t->n - i - 1) * sizeof(t->dev[0]));
            t->n--;
        }
        d = &t->dev[t->n++];
        memset(d, 0, sizeof(*d));
        d->device_id = device_id;
        d->current = *key;
        d->accepted = *key;
        d->has_accepted = !t->distrust_new;
        *verdict = t->distrust_new ? TRUST_CHANGED : TRUST_FIRST_USE;
        return 0;
    }
    /* A removed device that comes back is the same device: a key other
     * than the one it had is a change, never a first use. */
    d->removed = false;
    if (memcmp(d->current.u, key->u, KEYS_PUBLIC_LEN) == 0) {
        *verdict = TRUST_SAME;
        return 0;
    }
    d->current = *key;
    *verdict = TRUST_CHANGED;
    return 0;
}

bool trust_is_changed(const struct trust_device *d)
{
    return !d->has_accepted || memcmp(d->current.u, d->accepted.u, KEYS_PUBLIC_LEN) != 0;
}

bool trust_any_changed(const struct trust *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (!t->dev[i].removed && trust_is_changed(&t->dev[i]))
            return true;
    return false;
}

size_t trust_count(const struct trust *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += !t->dev[i].removed;
    return n;
}

struct trust_device *trust_shown(struct trust *t)
{
    struct trust_device *best = NULL;
    for (size_t i = 0; i < t->n; i++) {
        struct trust_device *d = &t->dev[i];
        if (d->removed)
            continue;
        if (!best || (trust_is_changed(d) && !trust_is_changed(best)) ||
            (trust_is_changed(d) == trust_is_changed(best) && d->device_id < best->device_id))
            best = d;
    }
    return best;
}

void trust_accept(struct trust_device *d)
{
    d->accepted = d->current;
    d->has_accepted = true;
}

void trust_remove(struct trust *t, uint64_t device_id)
{
    struct trust_device *d = trust_find(t, device_id);
    if (d)
        d->removed = true;
}
