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
#define TIMER_FILE "timer"
#define INDEX_FILE "expiring"
#define INDEX_LINE_MAX 80 /* "ID FROM EXPIRES OWED\n": 20 + 20 + 20 + 1 digits, spaces */
/* Entries of one index: MSGSTORE_EXPIRING_MAX waiting for their time and as
 * many kept only for a receipt owed, so that owed receipts never block
 * the timer of a message read later. */
#define INDEX_MAX (2 * MSGSTORE_EXPIRING_MAX)
#define OWED_GONE 2 /* OWED value: receipt owed, message already deleted */

/* One line of the expiry index. */
struct entry {
    uint64_t message_id;
    uint64_t from_user_id;
    int64_t expires;   /* unix seconds, > 0 */
    bool receipt_owed; /* the read receipt is not sent yet */
    bool gone;         /* the message is deleted; kept for receipt_owed */
};

struct index {
    size_t n;
    struct entry e[INDEX_MAX];
};

static int index_load(const char *dir, struct index *ix);
static size_t waiting(const struct index *ix);
static struct entry *index_find(struct index *ix, uint64_t message_id, uint64_t from_user_id);

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
    if (!err) {
        struct index *ix = malloc(sizeof(*ix));
        const struct entry *en;
        if (!ix || (err = index_load(dir, ix)))
            err = err ? err : PARLEY_ENOMEM;
        else if ((en = index_find(ix, message_id, from_user_id)))
            m.expires = en->expires;
        free(ix);
        if (err)
            msgstore_text_free(&m);
    }
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

/* Overwrites the file at path with zeros and fsyncs it, so that its
 * blocks do not keep the plaintext once it is unlinked (on a file system
 * that writes in place; a copy-on-write one or a flash translation layer
 * may still hold old blocks). */
static int wipe_file(const char *path)
{
    static const char zeros[4096];
    struct stat st;
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : PARLEY_EIO;
    int err = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : PARLEY_EIO;
    for (off_t done = 0; !err && done < st.st_size;) {
        size_t chunk = (size_t)PL_MIN((off_t)sizeof(zeros), st.st_size - done);
        ssize_t w = pwrite(fd, zeros, chunk, done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            err = PARLEY_EIO;
        else
            done += w;
    }
    if (!err && fsync(fd) != 0)
        err = PARLEY_EIO;
    close(fd);
    return err;
}

int msgstore_remove(const char *dir, uint64_t message_id, uint64_t from_user_id)
{
    char path[4096];
    for (int pending = 0; pending < 2; pending++) {
        int err = msg_path(path, sizeof(path), dir, message_id, from_user_id, pending);
        if (!err)
            err = wipe_file(path);
        if (err)
            return err;
        if (unlink(path) != 0 && errno != ENOENT)
            return PARLEY_EIO;
    }
    sync_dir(dir);
    return 0;
}

/* Self-destruct timers. */

int msgstore_timer_get(const char *dir, uint32_t *out)
{
    char path[4096];
    char *buf = NULL;
    size_t len = 0;
    uint64_t v;
    int err = home_path(path, sizeof(path), dir, TIMER_FILE);
    if (!err)
        err = home_read_file(path, &buf, &len);
    if (err == PARLEY_ENOTFOUND) {
        *out = 0;
        return 0;
    }
    if (err)
        return err;
    char *pos = buf;
    /* Exactly one line: a NUL byte ends it early, so the length differs. */
    if (!to_u64(field(&pos, "timer_s"), MSGSTORE_TIMER_MAX, &v) || (size_t)(pos - buf) != len)
        err = PARLEY_ECONFIG;
    free(buf);
    if (!err)
        *out = (uint32_t)v;
    return err;
}

int msgstore_timer_set(const char *dir, uint32_t timer_s)
{
    char path[4096], line[32];
    if (timer_s > MSGSTORE_TIMER_MAX)
        return PARLEY_EINVAL;
    int err = home_path(path, sizeof(path), dir, TIMER_FILE);
    if (!err)
        err = home_init(dir);
    if (err)
        return err;
    int n = snprintf(line, sizeof(line), "timer_s %u\n", (unsigned)timer_s);
    return home_write_file(path, line, (size_t)n);
}

/* Takes the next space- or newline-terminated token at *pos. */
static const char *token(char **pos, char end)
{
    char *s = *pos;
    char *t = strchr(s, end);
    char *nl = strchr(s, '\n');
    if (!t || (end != '\n' && nl && nl < t))
        return NULL;
    *t = '\0';
    *pos = t + 1;
    return s;
}

/* Reads dir's index into ix (empty when there is none). */
static int index_load(const char *dir, struct index *ix)
{
    char path[4096];
    char *buf = NULL;
    size_t len = 0;
    ix->n = 0;
    int err = home_path(path, sizeof(path), dir, INDEX_FILE);
    if (!err)
        err = home_read_file(path, &buf, &len);
    if (err == PARLEY_ENOTFOUND)
        return 0;
    if (err)
        return err;
    char *pos = buf;
    /* A NUL byte stops the parse before the end, which is refused. */
    while (!err && (size_t)(pos - buf) < len) {
        struct entry en;
        uint64_t exp, owed;
        if (ix->n == INDEX_MAX || !to_u64(token(&pos, ' '), UINT64_MAX, &en.message_id) ||
            !to_u64(token(&pos, ' '), UINT64_MAX, &en.from_user_id) ||
            !to_u64(token(&pos, ' '), INT64_MAX, &exp) || exp == 0 ||
            !to_u64(token(&pos, '\n'), OWED_GONE, &owed)) {
            err = PARLEY_ECONFIG;
            break;
        }
        en.expires = (int64_t)exp;
        en.receipt_owed = owed != 0;
        en.gone = owed == OWED_GONE;
        for (size_t i = 0; i < ix->n; i++)
            if (ix->e[i].message_id == en.message_id && ix->e[i].from_user_id == en.from_user_id)
                err = PARLEY_ECONFIG; /* twice */
        ix->e[ix->n++] = en;
    }
    if (!err && (size_t)(pos - buf) != len)
        err = PARLEY_ECONFIG;
    /* Each kind is bounded, as written. */
    if (!err &&
        (waiting(ix) > MSGSTORE_EXPIRING_MAX || ix->n - waiting(ix) > MSGSTORE_EXPIRING_MAX))
        err = PARLEY_ECONFIG;
    free(buf);
    return err;
}

/* Replaces dir's index with ix; an empty index is no file. */
static int index_save(const char *dir, const struct index *ix)
{
    char path[4096];
    int err = home_path(path, sizeof(path), dir, INDEX_FILE);
    if (err)
        return err;
    if (ix->n == 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            return PARLEY_EIO;
        sync_dir(dir);
        return 0;
    }
    char *buf = malloc(ix->n * INDEX_LINE_MAX);
    size_t len = 0;
    if (!buf)
        return PARLEY_ENOMEM;
    for (size_t i = 0; i < ix->n; i++) {
        const struct entry *en = &ix->e[i];
        int n = snprintf(buf + len, INDEX_LINE_MAX, "%llu %llu %lld %d\n",
                         (unsigned long long)en->message_id, (unsigned long long)en->from_user_id,
                         (long long)en->expires,
                         en->gone && en->receipt_owed ? OWED_GONE
                         : en->receipt_owed           ? 1
                                                      : 0);
        len += (size_t)n;
    }
    err = home_write_file(path, buf, len);
    free(buf);
    return err;
}

static struct entry *index_find(struct index *ix, uint64_t message_id, uint64_t from_user_id)
{
    for (size_t i = 0; i < ix->n; i++)
        if (ix->e[i].message_id == message_id && ix->e[i].from_user_id == from_user_id)
            return &ix->e[i];
    return NULL;
}

/* How many entries of ix wait for their message's time. */
static size_t waiting(const struct index *ix)
{
    size_t n = 0;
    for (size_t i = 0; i < ix->n; i++)
        n += !ix->e[i].gone;
    return n;
}

/* Gives up the oldest owed receipts of deleted messages beyond
 * MSGSTORE_EXPIRING_MAX. */
static void trim_gone(struct index *ix)
{
    size_t gone = 0, kept = 0;
    for (size_t i = 0; i < ix->n; i++)
        gone += ix->e[i].gone;
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->e[i].gone && gone > MSGSTORE_EXPIRING_MAX) {
            gone--;
            continue;
        }
        ix->e[kept++] = ix->e[i];
    }
    ix->n = kept;
}

/* Makes en an entry kept only for its owed receipt. Such entries are at
 * most MSGSTORE_EXPIRING_MAX (one receipt's worth): beyond, the oldest
 * one's receipt is given up, so that they never crowd out the timers. */
static void keep_for_receipt(struct index *ix, struct entry en)
{
    size_t gone = 0;
    en.gone = true;
    for (size_t i = 0; i < ix->n; i++)
        gone += ix->e[i].gone;
    if (gone == MSGSTORE_EXPIRING_MAX) {
        size_t i;
        for (i = 0; !ix->e[i].gone; i++)
            ;
        memmove(&ix->e[i], &ix->e[i + 1], (ix->n - i - 1) * sizeof(ix->e[0]));
        ix->n--;
    }
    ix->e[ix->n++] = en;
}

int msgstore_owe_receipt(const char *dir, uint64_t message_id, uint64_t from_user_id)
{
    struct index *ix = malloc(sizeof(*ix));
    if (!ix)
        return PARLEY_ENOMEM;
    int err = index_load(dir, ix);
    struct entry *en = err ? NULL : index_find(ix, message_id, from_user_id);
    if (!err && en) {
        en->receipt_owed = true;
        en->gone = true;
    } else if (!err) {
        keep_for_receipt(ix, (struct entry){message_id, from_user_id, 1, true, true});
    }
    if (!err)
        err = index_save(dir, ix);
    free(ix);
    return err;
}

int msgstore_set_expiry(const char *dir, uint64_t message_id, uint64_t from_user_id,
                        int64_t expires, bool receipt_owed)
{
    enum msgstore_state state;
    if (expires <= 0)
        return PARLEY_EINVAL;
    int err = msgstore_state(dir, message_id, from_user_id, &state);
    if (err)
        return err;
    if (state == MSGSTORE_NONE)
        return PARLEY_ENOTFOUND;
    struct index *ix = malloc(sizeof(*ix));
    if (!ix)
        return PARLEY_ENOMEM;
    if ((err = index_load(dir, ix)))
        goto out;
    struct entry *en = index_find(ix, message_id, from_user_id);
    if (en) {
        if (expires >= en->expires && (en->receipt_owed || !receipt_owed) && !en->gone)
            goto out; /* nothing changes */
        if (en->gone && waiting(ix) >= MSGSTORE_EXPIRING_MAX) {
            err = PARLEY_EBUSY;
            goto out;
        }
        en->expires = en->gone ? expires : PL_MIN(en->expires, expires);
        en->receipt_owed |= receipt_owed;
        en->gone = false; /* stored again */
    } else if (waiting(ix) >= MSGSTORE_EXPIRING_MAX) {
        err = PARLEY_EBUSY;
        goto out;
    } else {
        ix->e[ix->n++] = (struct entry){message_id, from_user_id, expires, receipt_owed, false};
    }
    err = index_save(dir, ix);
out:
    free(ix);
    return err;
}

int msgstore_expire(const char *dir, int64_t now, uint64_t **ids, size_t *n, int64_t *next)
{
    uint64_t *out = NULL;
    size_t n_out = 0, kept = 0;
    int64_t first = 0;
    bool gone_now = false;
    struct index *ix = malloc(sizeof(*ix));
    if (!ix)
        return PARLEY_ENOMEM;
    int err = index_load(dir, ix);
    if (!err && ix->n && !(out = malloc(ix->n * sizeof(*out))))
        err = PARLEY_ENOMEM;
    for (size_t i = 0; !err && i < ix->n; i++) {
        struct entry en = ix->e[i];
        enum msgstore_state state = MSGSTORE_NONE;
        if (en.gone) {
            if (en.receipt_owed)
                ix->e[kept++] = en;
            continue;
        }
        if (en.expires > now) {
            first = first == 0 ? en.expires : PL_MIN(first, en.expires);
            ix->e[kept++] = en;
            continue;
        }
        /* A file already gone was reported when it went (a crash before
         * the index was saved): it is only dropped from the index. */
        if ((err = msgstore_state(dir, en.message_id, en.from_user_id, &state)))
            break;
        if (state != MSGSTORE_NONE) {
            if ((err = msgstore_remove(dir, en.message_id, en.from_user_id)))
                break;
            out[n_out++] = en.message_id;
        }
        /* The sender still deletes its copy on the receipt. */
        if (en.receipt_owed) {
            en.gone = true;
            ix->e[kept++] = en;
            gone_now = true;
        }
    }
    if (!err && (kept != ix->n || gone_now)) {
        ix->n = kept;
        trim_gone(ix);
        err = index_save(dir, ix);
    }
    free(ix);
    if (err) {
        /* Files removed before the failure are found gone next time. */
        free(out);
        return err;
    }
    if (n_out == 0) {
        free(out);
        out = NULL;
    }
    *ids = out;
    *n = n_out;
    *next = first;
    return 0;
}

int msgstore_receipts_owed(const char *dir, uint64_t **ids, size_t *n)
{
    uint64_t *out = NULL;
    size_t k = 0;
    struct index *ix = malloc(sizeof(*ix));
    if (!ix)
        return PARLEY_ENOMEM;
    int err = index_load(dir, ix);
    for (size_t i = 0; !err && i < ix->n; i++) {
        if (!ix->e[i].receipt_owed)
            continue;
        if (!out && !(out = malloc(ix->n * sizeof(*out))))
            err = PARLEY_ENOMEM;
        else
            out[k++] = ix->e[i].message_id;
    }
    free(ix);
    if (err) {
        free(out);
        return err;
    }
    *ids = out;
    *n = k;
    return 0;
}

int msgstore_receipts_sent(const char *dir, const uint64_t *ids, size_t n)
{
    bool changed = false;
    struct index *ix = malloc(sizeof(*ix));
    if (!ix)
        return PARLEY_ENOMEM;
    int err = index_load(dir, ix);
    size_t kept = 0;
    for (size_t i = 0; !err && i < ix->n; i++) {
        for (size_t k = 0; k < n; k++)
            if (ix->e[i].receipt_owed && ix->e[i].message_id == ids[k]) {
                ix->e[i].receipt_owed = false;
                changed = true;
            }
        /* A deleted message's entry was kept only for its receipt. */
        if (!ix->e[i].gone || ix->e[i].receipt_owed)
            ix->e[kept++] = ix->e[i];
    }
    if (!err)
        ix->n = kept;
    if (!err && changed)
        err = index_save(dir, ix);
    free(ix);
    return err;
}
