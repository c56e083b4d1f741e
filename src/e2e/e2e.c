/* SPDX-License-Identifier: MIT */
/* parley-e2e's state directory: fixed-size key files, ratchet session files,
 * each replaced atomically. Secrets pass through sodium_malloc'ed buffers
 * and are wiped before they are released. */
#include "e2e/e2e.h"
#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

#define SESSION_FILE_MAX (4u << 20) /* a session state above this is refused as damaged */
#define NAME_MAX_LEN 128            /* longest file name we build, with room for ".tmp" */

bool e2e_is_peer_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > E2E_PEER_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool good = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
        if (!good)
            return false;
    }
    return true;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int open_dir(const struct e2e_dir *d)
{
    int fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -1 : fd;
}

/* Read the file name in d into a new sodium_malloc'ed buffer of at most cap
 * bytes. Returns 0, *out, *len; or PARLEY_ENOTFOUND, PARLEY_EMALFORMED (too
 * big), PARLEY_EIO, PARLEY_ENOMEM. */
static int read_file(const struct e2e_dir *d, const char *name, size_t cap, uint8_t **out,
                     size_t *len)
{
    int dfd = open_dir(d);
    if (dfd < 0)
        return errno == ENOENT ? PARLEY_ENOTFOUND : PARLEY_EIO;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int saved = errno;
    close(dfd);
    if (fd < 0)
        return saved == ENOENT ? PARLEY_ENOTFOUND : PARLEY_EIO;
    int rc = PARLEY_EIO;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    if (st.st_size < 0 || (uint64_t)st.st_size > cap) {
        rc = PARLEY_EMALFORMED;
        goto out;
    }
    size_t n = (size_t)st.st_size;
    buf = sodium_malloc(n ? n : 1);
    if (!buf) {
        rc = PARLEY_ENOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto out;
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    if (buf)
        sodium_free(buf); /* sodium_free wipes */
    close(fd);
    return rc;
}

/* Read a file that must be exactly len bytes into out (a secret buffer). */
static int read_exact(const struct e2e_dir *d, const char *name, uint8_t *out, size_t len)
{
    uint8_t *buf;
    size_t n;
    int rc = read_file(d, name, len, &buf, &n);
    if (rc != 0)
        return rc;
    if (n == len)
        memcpy(out, buf, len);
    else
        rc = PARLEY_EMALFORMED;
    sodium_free(buf);
    return rc;
}

/* Replace the file name in d with data: a 0600 temp file, written and
 * fsync'd, renamed over name, then the directory fsync'd. */
static int write_file(const struct e2e_dir *d, const char *name, const uint8_t *data, size_t len)
{
    char tmp[NAME_MAX_LEN + 8];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
        return PARLEY_EINVAL;
    int dfd = open_dir(d);
    if (dfd < 0)
        return PARLEY_EIO;
    int rc = PARLEY_EIO;
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        goto out;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    bool good = done == len && fchmod(fd, 0600) == 0 && fsync(fd) == 0;
    if (close(fd) != 0)
        good = false;
    if (!good || renameat(dfd, tmp, dfd, name) != 0) {
        (void)unlinkat(dfd, tmp, 0);
        goto out;
    }
    (void)fsync(dfd);
    rc = 0;
out:
    close(dfd);
    return rc;
}

static bool file_exists(const struct e2e_dir *d, const char *name)
{
    int dfd = open_dir(d);
    if (dfd < 0)
        return false;
    struct stat st;
    bool yes = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    close(dfd);
    return yes;
}

int e2e_init(const struct e2e_dir *d, uint32_t registration_id, uint32_t device_id,
             struct e2e_identity *out)
{
    if (mkdir(d->path, 0700) != 0 && errno != EEXIST)
        return PARLEY_EIO;
    struct stat st;
    if (stat(d->path, &st) != 0 || !S_ISDIR(st.st_mode))
        return PARLEY_EIO;
    if (file_exists(d, "identity"))
        return PARLEY_EEXIST;
    struct keys_pair *kp;
    int rc = keys_generate(&kp);
    if (rc != 0)
        return rc;
    uint8_t reg[8];
    put_u32(reg, registration_id);
    put_u32(reg + 4, device_id);
    uint8_t *priv = sodium_malloc(KEYS_PRIVATE_LEN);
    if (!priv) {
        keys_free(kp);
        return PARLEY_ENOMEM;
    }
    keys_private_export(kp, priv);
    /* The identity file is written last: its presence means initialised. */
    rc = write_file(d, "registration", reg, sizeof(reg));
    if (rc == 0)
        rc = write_file(d, "identity", priv, KEYS_PRIVATE_LEN);
    sodium_free(priv);
    if (rc != 0) {
        keys_free(kp);
        return rc;
    }
    out->key = kp;
    out->registration_id = registration_id;
    out->device_id = device_id;
    return 0;
}

int e2e_identity_load(const struct e2e_dir *d, struct e2e_identity *out)
{
    uint8_t reg[8];
    int rc = read_exact(d, "registration", reg, sizeof(reg));
    if (rc == PARLEY_ENOTFOUND)
        return PARLEY_ENOACCOUNT;
    if (rc != 0)
        return rc;
    uint8_t *priv = sodium_malloc(KEYS_PRIVATE_LEN);
    if (!priv)
        return PARLEY_ENOMEM;
    rc = read_exact(d, "identity", priv, KEYS_PRIVATE_LEN);
    struct keys_pair *kp = NULL;
    if (rc == 0)
        rc = keys_from_private(priv, &kp);
    sodium_free(priv);
    if (rc == PARLEY_ENOTFOUND)
        return PARLEY_ENOACCOUNT;
    if (rc != 0)
        return rc;
    out->key = kp;
    out->registration_id = get_u32(reg);
    out->device_id = get_u32(reg + 4);
    return 0;
}

/* Load or make a prekey file: 32 private bytes, then the signature when
 * identity is non-NULL (a signed prekey). */
static int load_or_make(const struct e2e_dir *d, const char *name, bool create,
                        const struct keys_pair *identity, struct keys_pair **key,
                        uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    size_t len = KEYS_PRIVATE_LEN + (identity ? XEDDSA_SIGNATURE_LEN : 0);
    uint8_t *buf = sodium_malloc(len);
    if (!buf)
        return PARLEY_ENOMEM;
    struct keys_pair *kp = NULL;
    int rc = read_exact(d, name, buf, len);
    if (rc == 0) {
        rc = keys_from_private(buf, &kp);
    } else if (rc == PARLEY_ENOTFOUND && create) {
        rc = keys_generate(&kp);
        if (rc == 0) {
            keys_private_export(kp, buf);
            if (identity) {
                uint8_t wire[KEYS_PUBLIC_WIRE_LEN];
                keys_public_encode(keys_public_of(kp), wire);
                rc = xeddsa_sign(identity, wire, sizeof(wire), buf + KEYS_PRIVATE_LEN);
            }
        }
        if (rc == 0)
            rc = write_file(d, name, buf, len);
    }
    if (rc == 0) {
        if (identity)
            memcpy(sig, buf + KEYS_PRIVATE_LEN, XEDDSA_SIGNATURE_LEN);
        *key = kp;
    } else {
        keys_free(kp);
    }
    sodium_free(buf);
    return rc;
}

int e2e_signed_prekey(const struct e2e_dir *d, uint32_t id, bool create,
                      const struct keys_pair *identity, struct keys_pair **key,
                      uint8_t sig[XEDDSA_SIGNATURE_LEN])
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof(name), "signed-prekey-%u", (unsigned)id);
    return load_or_make(d, name, create, identity, key, sig);
}

int e2e_prekey(const struct e2e_dir *d, uint32_t id, bool create, struct keys_pair **key)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof(name), "prekey-%u", (unsigned)id);
    return load_or_make(d, name, create, NULL, key, NULL);
}

/* Unlink name in d, then make that durable; a missing file is no error. */
static int remove_file(const struct e2e_dir *d, const char *name)
{
    int dfd = open_dir(d);
    if (dfd < 0)
        return PARLEY_EIO;
    int rc = unlinkat(dfd, name, 0) == 0 || errno == ENOENT ? 0 : PARLEY_EIO;
    if (rc == 0)
        (void)fsync(dfd);
    close(dfd);
    return rc;
}

int e2e_prekey_remove(const struct e2e_dir *d, uint32_t id)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof(name), "prekey-%u", (unsigned)id);
    return remove_file(d, name);
}

int e2e_signed_prekey_remove(const struct e2e_dir *d, uint32_t id)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof(name), "signed-prekey-%u", (unsigned)id);
    return remove_file(d, name);
}

static int session_name(const char *peer, uint32_t device, char name[NAME_MAX_LEN])
{
    if (!e2e_is_peer_name(peer))
        return PARLEY_EINVAL;
    snprintf(name, NAME_MAX_LEN, "session-%s.%u", peer, (unsigned)device);
    return 0;
}

int e2e_session_load(const struct e2e_dir *d, const char *peer, uint32_t device,
                     struct ratchet **out)
{
    char name[NAME_MAX_LEN];
    int rc = session_name(peer, device, name);
    if (rc != 0)
        return rc;
    uint8_t *buf;
    size_t len;
    rc = read_file(d, name, SESSION_FILE_MAX, &buf, &len);
    if (rc != 0)
        return rc;
    rc = ratchet_deserialize(buf, len, out);
    sodium_free(buf);
    return rc;
}

int e2e_session_save(const struct e2e_dir *d, const char *peer, uint32_t device,
                     const struct ratchet *s)
{
    char name[NAME_MAX_LEN];
    int rc = session_name(peer, device, name);
    if (rc != 0)
        return rc;
    size_t cap = ratchet_serialized_len(s);
    uint8_t *buf = sodium_malloc(cap ? cap : 1);
    if (!buf)
        return PARLEY_ENOMEM;
    size_t len;
    rc = ratchet_serialize(s, buf, cap, &len);
    if (rc == 0)
        rc = write_file(d, name, buf, len);
    sodium_free(buf);
    return rc;
}

int e2e_session_remove(const struct e2e_dir *d, const char *peer, uint32_t device)
{
    char name[NAME_MAX_LEN];
    int rc = session_name(peer, device, name);
    return rc != 0 ? rc : remove_file(d, name);
}

int e2e_lookup(void *arg, bool is_signed, uint32_t id, const struct keys_pair **out)
{
    struct e2e_lookup *l = arg;
    uint8_t sig[XEDDSA_SIGNATURE_LEN];
    struct keys_pair **slot = is_signed ? &l->signed_prekey : &l->prekey;
    keys_free(*slot);
    *slot = NULL;
    int rc = is_signed ? e2e_signed_prekey(l->dir, id, false, l->identity, slot, sig)
                       : e2e_prekey(l->dir, id, false, slot);
    if (rc == 0)
        *out = *slot;
    return rc;
}

void e2e_lookup_release(struct e2e_lookup *l)
{
    keys_free(l->prekey);
    keys_free(l->signed_prekey);
    l->prekey = l->signed_prekey = NULL;
}
