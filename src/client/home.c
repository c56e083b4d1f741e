/* SPDX-License-Identifier: MIT */
/* Home directory state; see home.h and docs/internals/client.md. */
#include "home.h"
#include "common/err.h"
#include "common/text.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

#define KEY_FILE "device_key"
#define ACCOUNT_FILE "account"
#define PTS_FILE "pts"
#define PREKEYS_FILE "prekeys"
#define KEY_TAG "ed25519 "

int home_init(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    return PARLEY_EIO;
}

int home_path(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return PARLEY_EINVAL;
    return 0;
}

/* Makes the rename in dir durable. */
static void sync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0 || n >= sizeof(dir)) {
        dir[0] = slash ? '/' : '.';
        dir[1] = '\0';
    } else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int home_write_file(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return PARLEY_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return PARLEY_EIO;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0600) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    sync_parent(path);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return PARLEY_EIO;
}

int home_read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? PARLEY_ENOTFOUND : PARLEY_EIO;
    char *buf = malloc(HOME_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return PARLEY_ENOMEM;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, HOME_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return PARLEY_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > HOME_FILE_MAX) {
            free(buf);
            close(fd);
            return PARLEY_EIO;
        }
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int load(const char *dir, const char *name, int missing, char **out, size_t *len)
{
    char path[4096];
    int err = home_path(path, sizeof(path), dir, name);
    if (err)
        return err;
    err = home_read_file(path, out, len);
    return err == PARLEY_ENOTFOUND ? missing : err;
}

static int save(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    int err = home_path(path, sizeof(path), dir, name);
    if (err)
        return err;
    return home_write_file(path, data, len);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return false;
    *out = v;
    return true;
}

int home_load_account(const char *dir, struct home_account *out)
{
    struct home_account a;
    char *buf, *line, *next;
    size_t len;
    unsigned seen = 0;
    int err = load(dir, ACCOUNT_FILE, PARLEY_ENOACCOUNT, &buf, &len);
    if (err)
        return err;
    memset(&a, 0, sizeof(a));
    err = PARLEY_ECONFIG;
    if (strlen(buf) != len)
        goto out;
    for (line = buf; *line; line = next) {
        char *nl = strchr(line, '\n');
        if (!nl)
            goto out;
        *nl = '\0';
        next = nl + 1;
        char *sp = strchr(line, ' ');
        if (!sp)
            goto out;
        *sp = '\0';
        const char *val = sp + 1;
        if (strcmp(line, "server") == 0) {
            if (strlen(val) >= sizeof(a.server))
                goto out;
            memcpy(a.server, val, strlen(val) + 1);
            seen |= 1;
        } else if (strcmp(line, "user_id") == 0) {
            if (!parse_u64(val, &a.user_id))
                goto out;
            seen |= 2;
        } else if (strcmp(line, "device_id") == 0) {
            if (!parse_u64(val, &a.device_id))
                goto out;
            seen |= 4;
        } else if (strcmp(line, "username") == 0) {
            if (username_normalize(val, a.username) != 0)
                goto out;
            seen |= 8;
        }
        /* Unknown keys are skipped so that newer versions can add some. */
    }
    if (seen != 15)
        goto out;
    *out = a;
    err = 0;
out:
    free(buf);
    return err;
}

int home_save_account(const char *dir, const struct home_account *a)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "server %s\nuser_id %llu\ndevice_id %llu\nusername %s\n",
                     a->server, (unsigned long long)a->user_id, (unsigned long long)a->device_id,
                     a->username);
    if (n < 0 || (size_t)n >= sizeof(buf) || strchr(a->server, '\n') || strchr(a->username, '\n'))
        return PARLEY_EINVAL;
    return save(dir, ACCOUNT_FILE, buf, (size_t)n);
}

void home_key_free(unsigned char *sk)
{
    if (sk)
        sodium_free(sk); /* sodium_free wipes the memory before freeing it */
}

int home_key_new(unsigned char **sk)
{
    unsigned char pk[HOME_PUBLIC_KEY_LEN];
    unsigned char *k = sodium_malloc(HOME_SECRET_KEY_LEN);
    if (!k)
        return PARLEY_ENOMEM;
    crypto_sign_keypair(pk, k);
    *sk = k;
    return 0;
}

int home_load_key(const char *dir, unsigned char **sk)
{
    char *buf;
    size_t len, bin_len;
    const char *end;
    int err = load(dir, KEY_FILE, PARLEY_ENOACCOUNT, &buf, &len);
    if (err)
        return err;
    unsigned char *k = sodium_malloc(HOME_SECRET_KEY_LEN);
    if (!k) {
        sodium_memzero(buf, len);
        free(buf);
        return PARLEY_ENOMEM;
    }
    err = PARLEY_ECONFIG;
    size_t tag = strlen(KEY_TAG);
    if (len == tag + 2 * HOME_SECRET_KEY_LEN + 1 && memcmp(buf, KEY_TAG, tag) == 0 &&
        buf[len - 1] == '\n' &&
        sodium_hex2bin(k, HOME_SECRET_KEY_LEN, buf + tag, 2 * HOME_SECRET_KEY_LEN, NULL, &bin_len,
                       &end) == 0 &&
        bin_len == HOME_SECRET_KEY_LEN) {
        /* The public half must match the seed, or signatures would fail. */
        unsigned char seed[crypto_sign_SEEDBYTES], pk[HOME_PUBLIC_KEY_LEN];
        unsigned char again[HOME_SECRET_KEY_LEN];
        if (crypto_sign_ed25519_sk_to_seed(seed, k) == 0 &&
            crypto_sign_seed_keypair(pk, again, seed) == 0 &&
            sodium_memcmp(again, k, HOME_SECRET_KEY_LEN) == 0)
            err = 0;
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(again, sizeof(again));
    }
    sodium_memzero(buf, len);
    free(buf);
    if (err) {
        sodium_free(k);
        return err;
    }
    *sk = k;
    return 0;
}

int home_save_key(const char *dir, const unsigned char *sk)
{
    size_t tag = strlen(KEY_TAG);
    char *buf = sodium_malloc(tag + 2 * HOME_SECRET_KEY_LEN + 2);
    if (!buf)
        return PARLEY_ENOMEM;
    memcpy(buf, KEY_TAG, tag);
    sodium_bin2hex(buf + tag, 2 * HOME_SECRET_KEY_LEN + 1, sk, HOME_SECRET_KEY_LEN);
    buf[tag + 2 * HOME_SECRET_KEY_LEN] = '\n';
    int err = save(dir, KEY_FILE, buf, tag + 2 * HOME_SECRET_KEY_LEN + 1);
    sodium_free(buf);
    return err;
}

int home_load_pts(const char *dir, uint64_t *out)
{
    char *buf;
    size_t len;
    int err = load(dir, PTS_FILE, PARLEY_ENOTFOUND, &buf, &len);
    if (err == PARLEY_ENOTFOUND) {
        *out = 0;
        return 0;
    }
    if (err)
        return err;
    /* Exactly "PTS\n": a file cut short or holding a NUL is corrupt, not a
     * smaller position, which would deliver messages a second time. */
    uint64_t v;
    err = PARLEY_ECONFIG;
    if (len > 0 && buf[len - 1] == '\n' && strlen(buf) == len) {
        buf[len - 1] = '\0';
        if (parse_u64(buf, &v))
            err = 0;
    }
    free(buf);
    if (!err)
        *out = v;
    return err;
}

int home_save_pts(const char *dir, uint64_t pts)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)pts);
    return save(dir, PTS_FILE, buf, (size_t)n);
}

int home_load_prekeys(const char *dir, struct home_prekeys *out)
{
    static const char *const keys[] = {"next_prekey_id", "signed_prekey_id",
                                       "signed_prekey_date"};
    uint64_t v[3];
    unsigned seen = 0;
    char *buf, *line, *next;
    size_t len;
    int err = load(dir, PREKEYS_FILE, PARLEY_ENOTFOUND, &buf, &len);
    if (err == PARLEY_ENOTFOUND) {
        *out = (struct home_prekeys){.next_prekey_id = 1};
        return 0;
    }
    if (err)
        return err;
    err = PARLEY_ECONFIG;
    if (strlen(buf) != len)
        goto out;
    for (line = buf; *line; line = next) {
        char *nl = strchr(line, '\n');
        char *sp = strchr(line, ' ');
        if (!nl || !sp || sp > nl)
            goto out;
        *nl = '\0';
        *sp = '\0';
        next = nl + 1;
        size_t k;
        for (k = 0; k < 3 && strcmp(line, keys[k]) != 0; k++)
            ;
        if (k == 3 || (seen & (1u << k)) || !parse_u64(sp + 1, &v[k]))
            goto out;
        seen |= 1u << k;
    }
    if (seen != 7 || v[0] == 0 || v[0] > HOME_PREKEY_ID_MAX || v[1] > HOME_PREKEY_ID_MAX ||
        v[2] > INT64_MAX)
        goto out;
    out->next_prekey_id = (uint32_t)v[0];
    out->signed_prekey_id = (uint32_t)v[1];
    out->signed_prekey_date = (int64_t)v[2];
    err = 0;
out:
    free(buf);
    return err;
}

int home_save_prekeys(const char *dir, const struct home_prekeys *st)
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "next_prekey_id %u\nsigned_prekey_id %u\nsigned_prekey_date %lld\n",
                     (unsigned)st->next_prekey_id, (unsigned)st->signed_prekey_id,
                     (long long)(st->signed_prekey_date < 0 ? 0 : st->signed_prekey_date));
    return save(dir, PREKEYS_FILE, buf, (size_t)n);
}
