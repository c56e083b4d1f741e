/* SPDX-License-Identifier: MIT */
/* Secret-chat message files; see msgstore.h. A file is a fixed sequence of
 * "key value" lines, then "text LEN", the LEN text bytes and a newline.
 * Plaintext buffers are wiped before they are freed. */
#include "msgstore.h"
#include "common/err.h"
#include "home.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

#define PENDING_SUFFIX ".pending"
#define HEAD_MAX 512 /* the header lines, bounded by their fields */

/* dir + "/" + "<message_id>-<from_user_id>" [+ ".pending"] */
static int msg_path(char *buf, size_t size, const char *dir, uint64_t id, uint64_t from,
                    bool pending)
{
    int n = snprintf(buf, size, "%s/%llu-%llu%s", dir, (unsigned long long)id,
                     (unsigned long long)from, pending ? PENDING_SUFFIX : "");
    return n < 0 || (size_t)n >= size ? PARLEY_EINVAL : 0;
}

static int exists(const char *path, bool *yes)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        *yes = true;
        return 0;
    }
    *yes = false;
    return errno == ENOENT ? 0 : PARLEY_EIO;
}

int msgstore_state(const char *dir, uint64_t message_id, uint64_t from_user_id,
                   enum msgstore_state *out)
{
    char path[4096];
    bool yes;
    int err = msg_path(path, sizeof(path), dir, message_id, from_user_id, false);
    if (!err)
        err = exists(path, &yes);
    if (err)
        return err;
    if (yes) {
        *out = MSGSTORE_DELIVERED;
        return 0;
    }
    if ((err = msg_path(path, sizeof(path), dir, message_id, from_user_id, true)) ||
        (err = exists(path, &yes)))
        return err;
    *out = yes ? MSGSTORE_PENDING : MSGSTORE_NONE;
    return 0;
}

static bool is_name(const char *s)
{
    char norm[USERNAME_MAX + 1];
    return username_normalize(s, norm) == 0 && strcmp(norm, s) == 0;
}

int msgstore_put(const char *dir, const struct msgstore_msg *m, bool delivered)
{
    char path[4096];
    if (m->text_len > MSGSTORE_TEXT_MAX || !is_name(m->from) || !is_name(m->to))
        return PARLEY_EINVAL;
    int err = msg_path(path, sizeof(path), dir, m->message_id, m->from_user_id, !delivered);
    if (err)
        return err;
    if ((err = home_init(dir)))
        return err;
    size_t cap = HEAD_MAX + m->text_len + 1;
    char *buf = sodium_malloc(cap);
    if (!buf)
        return PARLEY_ENOMEM;
    int n = snprintf(buf, HEAD_MAX,
                     "message_id %llu\nfrom_user_id %llu\nfrom %s\nto_user_id %llu\nto %s\n"
                     "date %lld\ntimer_s %u\nidentity_changed %d\ntext %zu\n",
                     (unsigned long long)m->message_id, (unsigned long long)m->from_user_id,
                     m->from, (unsigned long long)m->to_user_id, m->to, (long long)m->date,
                     (unsigned)m->timer_s, m->identity_changed ? 1 : 0, m->text_len);
    if (n < 0 || n >= HEAD_MAX) {
        sodium_free(buf);
        return PARLEY_EINVAL;
    }
    if (m->text_len)
        memcpy(buf + n, m->text, m->text_len);
    buf[(size_t)n + m->text_len] = '\n';
    err = home_write_file(path, buf, (size_t)n + m->text_len + 1);
    sodium_free(buf); /* wipes */
    return err;
}

/* Takes the line "key VALUE\n" at *pos: the value, NUL-terminated in place. */
static const char *field(char **pos, const char *key)
{
    size_t k = strlen(key);
    char *line = *pos;
    char *nl = strchr(line, '\n');
    if (!nl || strncmp(line, key, k) != 0 || line[k] != ' ')
        return NULL;
    *nl = '\0';
    *pos = nl + 1;
    return line + k + 1;
}

static bool to_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9' || (s[0] == '0' && s[1]))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static bool to_i64(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool copy_name(const char *s, char out[USERNAME_MAX + 1])
{
    if (!s || !is_name(s))
        return false;
    memcpy(out, s, strlen(s) + 1);
    return true;
}

/* Parses buf (len bytes, NUL-terminated, headers edited in place); the text
 * is copied to a new sodium_malloc'ed buffer. */
static int parse(char *buf, size_t len, struct msgstore_msg *m)
{
    uint64_t v, flag, text_len;
    char *pos = buf;
    const char *s;
    memset(m, 0, sizeof(*m));
    /* A NUL byte in the header ends a line early (strchr), which fails. */
    if (!to_u64(field(&pos, "message_id"), UINT64_MAX, &m->message_id) ||
        !to_u64(field(&pos, "from_user_id"), UINT64_MAX, &m->from_user_id) ||
        !copy_name(field(&pos, "from"), m->from) ||
        !to_u64(field(&pos, "to_user_id"), UINT64_MAX, &m->to_user_id) ||
        !copy_name(field(&pos, "to"), m->to) || !to_i64(field(&pos, "date"), &m->date) ||
        !to_u64(field(&pos, "timer_s"), UINT32_MAX, &v) ||
        !to_u64(field(&pos, "identity_changed"), 1, &flag) || !(s = field(&pos, "text")) ||
        !to_u64(s, MSGSTORE_TEXT_MAX, &text_len))
        return PARLEY_ECONFIG;
    m->timer_s = (uint32_t)v;
    m->identity_changed = flag == 1;
    size_t head = (size_t)(pos - buf);
    /* Exactly the text and one newline follow: a longer or shorter file
     * was cut short or altered. */
    if (head > len || len - head != text_len + 1 || buf[len - 1] != '\n' ||
        memchr(pos, '\0', text_len))
        return PARLEY_ECONFIG;
    char *text = sodium_malloc(text_len + 1);
    if (!text)
        return PARLEY_ENOMEM;
    memcpy(text, pos, text_len);
    text[text_len] = '\0';
    m->text = text;
    m->text_len = text_len;
    return 0;
}

int msgstore_get(const char *dir, uint64_t message_id, uint64_t from_user_id,
                 struct msgstore_msg *out)
{
    char path[4096];
    char *buf = NULL;
    size_t len = 0;
    int err = msg_path(path, sizeof(path), dir, message_id, from_user_id, false);
    if (!err) {
        err = home_read_file(path, &buf, &len);
        if (err == PARLEY_ENOTFOUND &&
            !(err = msg_path(path, sizeof(path), dir, message_id, from_user_id, true)))
            err = home_read_file(path, &buf, &len);
    }
    if (err)
        return err;
    struct msgstore_msg m;
    err = parse(buf, len, &m);
    if (!err && (m.message_id != message_id || m.from_user_id != from_user_id)) {
        msgstore_text_free(&m);
        err = PARLEY_ECONFIG; /* a file under another message's name */
    }
    sodium_memzero(buf, len);
    free(buf);
    if (!err)
        *out = m;
    return err;
}

void msgstore_text_free(struct msgstore_msg *m)
{
    if (m->text)
        sodium_free((void *)m->text);
    m->text = NULL;
    m->text_len = 0;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int msgstore_mark_delivered(const char *dir, uint64_t message_id, uint64_t from_user_id)
{
    char from[4096], to[4096];
    int err = msg_path(from, sizeof(from), dir, message_id, from_user_id, true);
    if (!err)
        err = msg_path(to, sizeof(to), dir, message_id, from_user_id, false);
    if (err)
        return err;
    if (rename(from, to) != 0) {
        bool done;
        if (errno == ENOENT && exists(to, &done) == 0)
            return done ? 0 : PARLEY_ENOTFOUND;
        return PARLEY_EIO;
    }
    sync_dir(dir);
    return 0;
}

int msgstore_remove(const char *dir, uint64_t message_id, uint64_t from_user_id)
{
    char path[4096];
    for (int pending = 0; pending < 2; pending++) {
        int err = msg_path(path, sizeof(path), dir, message_id, from_user_id, pending);
        if (err)
            return err;
        if (unlink(path) != 0 && errno != ENOENT)
            return PARLEY_EIO;
    }
    sync_dir(dir);
    return 0;
}
