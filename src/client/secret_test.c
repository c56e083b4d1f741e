/* SPDX-License-Identifier: MIT */
/* Unit tests of libparley's secret-chat state without a server: the trust
 * records (trust.h), the local message store (msgstore.h), the prekey
 * counters (home.h), and what the secret-chat API answers from local
 * state alone: argument checks, trust on first use, a changed key that
 * blocks sending until accepted, safety numbers equal on both sides, and
 * damaged files refused. Each test gets a fresh temporary directory. */
#include "client/client_test_util.h"
#include "client/home.h"
#include "client/msgstore.h"
#include "client/secret_int.h"
#include "client/trust.h"
#include "common/err.h"
#include "e2e/e2e.h"

#include <parley.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/banned.h"

/* A closed port: a call that gets past the local checks fails to connect. */
#define NO_SERVER "http://127.0.0.1:1"

static void path_in(char *buf, size_t size, const char *dir, const char *name)
{
    assert_int_equal(home_path(buf, size, dir, name), 0);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static struct keys_public some_key(uint8_t fill)
{
    struct keys_public k;
    memset(k.u, fill, sizeof(k.u));
    return k;
}

/* Trust records (trust.h) */

static void test_trust_first_use_then_same_then_changed_until_accepted(void **state)
{
    (void)state;
    struct trust *t = malloc(sizeof(*t));
    enum trust_verdict v;
    struct keys_public k1 = some_key(1), k2 = some_key(2);
    assert_non_null(t);
    trust_init(t, 42);
    assert_int_equal(trust_see(t, 5, &k1, &v), 0);
    assert_int_equal(v, TRUST_FIRST_USE);
    assert_false(trust_any_changed(t));
    assert_int_equal(trust_see(t, 5, &k1, &v), 0);
    assert_int_equal(v, TRUST_SAME);
    assert_int_equal(trust_see(t, 5, &k2, &v), 0);
    assert_int_equal(v, TRUST_CHANGED);
    assert_true(trust_is_changed(trust_find(t, 5)));
    assert_true(trust_any_changed(t));
    /* Seeing the new key again does not make it accepted. */
    assert_int_equal(trust_see(t, 5, &k2, &v), 0);
    assert_int_equal(v, TRUST_SAME);
    assert_true(trust_any_changed(t));
    trust_accept(trust_find(t, 5));
    assert_false(trust_any_changed(t));
    assert_memory_equal(trust_find(t, 5)->accepted.u, k2.u, KEYS_PUBLIC_LEN);
    /* Another device is trusted on its own first use. */
    assert_int_equal(trust_see(t, 9, &k1, &v), 0);
    assert_int_equal(v, TRUST_FIRST_USE);
    assert_int_equal(t->n, 2);
    assert_int_equal(trust_count(t), 2);
    trust_remove(t, 77);
    assert_int_equal(trust_count(t), 2);
    /* A name that passed to another account: its devices are not trusted. */
    trust_init(t, 43);
    t->distrust_new = true;
    assert_int_equal(trust_see(t, 5, &k1, &v), 0);
    assert_int_equal(v, TRUST_CHANGED);
    assert_true(trust_any_changed(t));
    trust_accept(trust_find(t, 5));
    assert_false(trust_any_changed(t));
    free(t);
}

/* Devices 1..TRUST_DEVICES_MAX, each first seen with key k: a full record. */
static void fill_devices(struct trust *t, const struct keys_public *k)
{
    enum trust_verdict v;
    for (uint64_t d = 1; d <= TRUST_DEVICES_MAX; d++)
        assert_int_equal(trust_see(t, d, k, &v), 0);
}

/* Review finding 1: a device forgotten (DEVICES_CHANGED, a bundle list
 * without it) and then shown again with another key was trusted on first
 * use. Its record now stays, removed, with the key it had. */
static void test_trust_removed_device_back_with_another_key_is_changed(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct trust *t = malloc(sizeof(*t)), *u = malloc(sizeof(*u));
    enum trust_verdict v;
    struct keys_public k1 = some_key(1), k2 = some_key(2);
    assert_non_null(t);
    assert_non_null(u);
    trust_init(t, 42);
    assert_int_equal(trust_see(t, 5, &k1, &v), 0);
    assert_int_equal(trust_see(t, 6, &k1, &v), 0);
    trust_remove(t, 5);
    trust_remove(t, 6);
    assert_int_equal(trust_count(t), 0);
    assert_null(trust_shown(t));
    /* Removed devices are kept in the file. */
    path_in(path, sizeof(path), f->dir, "trust");
    assert_int_equal(trust_save(path, t), 0);
    assert_int_equal(trust_load(path, u), 0);
    assert_int_equal(u->n, 2);
    assert_true(u->dev[0].removed);
    assert_int_equal(trust_count(u), 0);
    /* Back with another key: changed, not a first use. */
    assert_int_equal(trust_see(u, 5, &k2, &v), 0);
    assert_int_equal(v, TRUST_CHANGED);
    assert_false(trust_find(u, 5)->removed);
    assert_true(trust_any_changed(u));
    assert_int_equal(trust_shown(u)->device_id, 5);
    /* Back with its key: the same device as before. */
    assert_int_equal(trust_see(u, 6, &k1, &v), 0);
    assert_int_equal(v, TRUST_SAME);
    assert_false(trust_is_changed(trust_find(u, 6)));
    assert_int_equal(trust_count(u), 2);
    /* A full record makes room by dropping the oldest removed device. */
    trust_init(t, 1);
    fill_devices(t, &k1);
    trust_remove(t, 3);
    assert_int_equal(trust_see(t, 1000, &k1, &v), 0);
    assert_int_equal(v, TRUST_FIRST_USE);
    assert_null(trust_find(t, 3));
    assert_int_equal(t->n, TRUST_DEVICES_MAX);
    free(t);
    free(u);
}

static void test_trust_refuses_more_devices_than_a_send_reaches(void **state)
{
    (void)state;
    struct trust *t = malloc(sizeof(*t));
    enum trust_verdict v;
    struct keys_public k = some_key(3);
    assert_non_null(t);
    trust_init(t, 1);
    fill_devices(t, &k);
    assert_int_equal(trust_see(t, TRUST_DEVICES_MAX + 1, &k, &v), PARLEY_EPROTO);
    assert_int_equal(t->n, TRUST_DEVICES_MAX);
    free(t);
}

static void test_trust_round_trips_in_a_0600_file(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct trust *t = malloc(sizeof(*t)), *u = malloc(sizeof(*u));
    enum trust_verdict v;
    struct keys_public k1 = some_key(1), k2 = some_key(2);
    assert_non_null(t);
    assert_non_null(u);
    path_in(path, sizeof(path), f->dir, "trust");
    assert_int_equal(trust_load(path, u), PARLEY_ENOTFOUND);
    trust_init(t, 42);
    assert_int_equal(trust_see(t, 5, &k1, &v), 0);
    assert_int_equal(trust_see(t, 6, &k1, &v), 0);
    assert_int_equal(trust_see(t, 6, &k2, &v), 0);
    t->dev[0].has_accepted = false; /* as after the account's name changed hands */
    assert_int_equal(trust_save(path, t), 0);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(trust_load(path, u), 0);
    assert_int_equal(u->user_id, 42);
    assert_int_equal(u->n, 2);
    assert_int_equal(u->dev[0].device_id, 5);
    assert_false(u->dev[0].has_accepted);
    assert_true(trust_is_changed(&u->dev[0]));
    assert_int_equal(u->dev[1].device_id, 6);
    assert_memory_equal(u->dev[1].current.u, k2.u, KEYS_PUBLIC_LEN);
    assert_memory_equal(u->dev[1].accepted.u, k1.u, KEYS_PUBLIC_LEN);
    assert_true(trust_is_changed(&u->dev[1]));
    free(t);
    free(u);
}

static void test_trust_corrupt_or_truncated_is_econfig(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct trust *t = malloc(sizeof(*t));
    static const char key[] = "050101010101010101010101010101010101010101010101010101010101010101";
    char good[300], buf[400];
    assert_non_null(t);
    path_in(path, sizeof(path), f->dir, "trust");
    snprintf(good, sizeof(good), "user_id 3\ndevice 4 %s %s\n", key, key);
    client_write_raw(path, good, strlen(good));
    assert_int_equal(trust_load(path, t), 0);
    t->user_id = 99;

    const char *bad[] = {
        "",                                          /* no account line */
        "device 4 x -\n",                            /* device before account */
        "user_id 3",                                 /* cut short */
        "user_id 0\n",                               /* no such account */
        "user_id 3\nuser_id 3\n",                    /* repeated */
        "user_id 3\ncolor blue\n",                   /* unknown line */
        "user_id 3\ndevice 0 K -\n",                 /* device 0 */
        "user_id 3\ndevice 4 K\n",                   /* accepted key missing */
        "user_id 3\ndevice 4 K K K\n",               /* a field too many */
        "user_id 3\ndevice 4 K -\ndevice 4 K -\n",   /* device twice */
        "user_id 3\ndevice 4 06K -\n",               /* key too long */
        "user_id 3\ndevice 4 K zz\n",                /* not a key */
        "user_id 3\ndevice 04 K -\n",                /* leading zero */
        "user_id 3\ndevice 4 K - gone\n",            /* an unknown flag */
        "user_id 3\ndevice 4 K - removed removed\n", /* the flag twice */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* K stands for a valid key. */
        size_t o = 0;
        for (const char *c = bad[i]; *c && o < sizeof(buf) - 70; c++) {
            if (*c == 'K') {
                memcpy(buf + o, key, strlen(key));
                o += strlen(key);
            } else {
                buf[o++] = *c;
            }
        }
        client_write_raw(path, buf, o);
        if (trust_load(path, t) != PARLEY_ECONFIG)
            fail_msg("case %zu: not refused", i);
    }
    /* A key of the wrong type byte; a NUL byte. */
    snprintf(buf, sizeof(buf), "user_id 3\ndevice 4 06%s -\n", key + 2);
    client_write_raw(path, buf, strlen(buf));
    assert_int_equal(trust_load(path, t), PARLEY_ECONFIG);
    memcpy(buf, good, strlen(good));
    buf[3] = '\0';
    client_write_raw(path, buf, strlen(good));
    assert_int_equal(trust_load(path, t), PARLEY_ECONFIG);
    assert_int_equal(t->user_id, 99); /* untouched on error */
    free(t);
}

/* Review finding 1: a DEVICES_CHANGED that names a device as both stale
 * and missing would have it forgotten and trusted again on a new key. */
static void test_device_list_with_a_device_stale_and_missing_is_eproto(void **state)
{
    (void)state;
    uint64_t them_stale[] = {5}, them_missing[] = {6}, us_missing[] = {5}, us_stale[] = {7};
    Parley__V1__DeviceMismatch them = PARLEY__V1__DEVICE_MISMATCH__INIT;
    Parley__V1__DeviceMismatch us = PARLEY__V1__DEVICE_MISMATCH__INIT;
    Parley__V1__DeviceMismatch *list[3] = {&them, &us, &us};
    Parley__V1__Error e = PARLEY__V1__ERROR__INIT;
    them.user_id = 2;
    them.stale = them_stale;
    them.n_stale = 1;
    them.missing = them_missing;
    them.n_missing = 1;
    us.user_id = 1;
    us.stale = us_stale;
    us.n_stale = 1;
    e.devices = list;
    e.n_devices = 2;
    assert_int_equal(secret__check_mismatch(NULL), 0);
    assert_int_equal(secret__check_mismatch(&e), 0);
    /* In one account's entry. */
    them_missing[0] = 5;
    assert_int_equal(secret__check_mismatch(&e), PARLEY_EPROTO);
    /* Across the two entries. */
    them_missing[0] = 6;
    us.missing = us_missing;
    us.n_missing = 1;
    assert_int_equal(secret__check_mismatch(&e), PARLEY_EPROTO);
    /* More entries than the send's two accounts. */
    us.n_missing = 0;
    e.n_devices = 3;
    assert_int_equal(secret__check_mismatch(&e), PARLEY_EPROTO);
}

/* The message store (msgstore.h) */

static struct msgstore_msg sample_msg(void)
{
    struct msgstore_msg m;
    memset(&m, 0, sizeof(m));
    m.message_id = 1234;
    m.from_user_id = 7;
    m.to_user_id = 8;
    m.date = 1700000000;
    m.timer_s = 30;
    m.identity_changed = true;
    snprintf(m.from, sizeof(m.from), "alice");
    snprintf(m.to, sizeof(m.to), "bob");
    m.text = "h\xc3\xa9llo\nworld";
    m.text_len = strlen(m.text);
    return m;
}

static void test_msgstore_pending_then_delivered_in_0600_files(void **state)
{
    struct fixture *f = *state;
    char dir[600], pending[700], final[700];
    struct msgstore_msg m = sample_msg(), got;
    enum msgstore_state st;
    path_in(dir, sizeof(dir), f->dir, "chat");
    path_in(pending, sizeof(pending), dir, "1234-7.pending");
    path_in(final, sizeof(final), dir, "1234-7");

    assert_int_equal(msgstore_state(dir, 1234, 7, &st), 0);
    assert_int_equal(st, MSGSTORE_NONE);
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ENOTFOUND);
    assert_int_equal(msgstore_put(dir, &m, false), 0);
    assert_int_equal(mode_of(dir), 0700);
    assert_int_equal(mode_of(pending), 0600);
    assert_int_equal(msgstore_state(dir, 1234, 7, &st), 0);
    assert_int_equal(st, MSGSTORE_PENDING);
    /* The key is (message id, sender): another sender's 1234 is another. */
    assert_int_equal(msgstore_state(dir, 1234, 8, &st), 0);
    assert_int_equal(st, MSGSTORE_NONE);

    assert_int_equal(msgstore_get(dir, 1234, 7, &got), 0);
    assert_int_equal(got.message_id, 1234);
    assert_int_equal(got.from_user_id, 7);
    assert_int_equal(got.to_user_id, 8);
    assert_int_equal(got.date, 1700000000);
    assert_int_equal(got.timer_s, 30);
    assert_true(got.identity_changed);
    assert_string_equal(got.from, "alice");
    assert_string_equal(got.to, "bob");
    assert_int_equal(got.text_len, m.text_len);
    assert_string_equal(got.text, m.text);
    msgstore_text_free(&got);
    assert_null(got.text);

    assert_int_equal(msgstore_mark_delivered(dir, 1234, 7), 0);
    assert_false(exists(pending));
    assert_int_equal(mode_of(final), 0600);
    assert_int_equal(msgstore_state(dir, 1234, 7, &st), 0);
    assert_int_equal(st, MSGSTORE_DELIVERED);
    assert_int_equal(msgstore_mark_delivered(dir, 1234, 7), 0);
    assert_int_equal(msgstore_mark_delivered(dir, 99, 7), PARLEY_ENOTFOUND);
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), 0);
    msgstore_text_free(&got);

    /* Single messages can be deleted (self-destruct timers). */
    assert_int_equal(msgstore_remove(dir, 1234, 7), 0);
    assert_false(exists(final));
    assert_int_equal(msgstore_state(dir, 1234, 7, &st), 0);
    assert_int_equal(st, MSGSTORE_NONE);
    assert_int_equal(msgstore_remove(dir, 1234, 7), 0);
}

static void test_msgstore_refuses_what_it_cannot_write_back(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    struct msgstore_msg m = sample_msg();
    path_in(dir, sizeof(dir), f->dir, "chat");
    snprintf(m.from, sizeof(m.from), "Alice"); /* not case-folded */
    assert_int_equal(msgstore_put(dir, &m, true), PARLEY_EINVAL);
    m = sample_msg();
    m.text_len = MSGSTORE_TEXT_MAX + 1;
    assert_int_equal(msgstore_put(dir, &m, true), PARLEY_EINVAL);
    m = sample_msg();
    m.text = "";
    m.text_len = 0;
    assert_int_equal(msgstore_put(dir, &m, true), 0);
}

static void test_msgstore_corrupt_or_truncated_is_econfig(void **state)
{
    struct fixture *f = *state;
    char dir[600], path[700], *buf;
    size_t len;
    struct msgstore_msg m = sample_msg(), got;
    path_in(dir, sizeof(dir), f->dir, "chat");
    path_in(path, sizeof(path), dir, "1234-7");
    assert_int_equal(msgstore_put(dir, &m, true), 0);
    assert_int_equal(home_read_file(path, &buf, &len), 0);

    client_write_raw(path, buf, len - 1); /* cut short */
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    client_write_raw(path, buf, len - 3);
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    char *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 'x'; /* a byte after the text */
    client_write_raw(path, longer, len + 1);
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    free(longer);
    client_write_raw(path, buf + 16, len - 16); /* the first line gone */
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    char *edited = malloc(len);
    assert_non_null(edited);
    memcpy(edited, buf, len);
    edited[len - 4] = '\0'; /* a NUL byte in the text */
    client_write_raw(path, edited, len);
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    memcpy(edited, buf, len);
    edited[strlen("message_id ")] = '5'; /* another message's id */
    client_write_raw(path, edited, len);
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    free(edited);
    static const char bad_flag[] = "message_id 1234\nfrom_user_id 7\nfrom alice\nto_user_id 8\n"
                                   "to bob\ndate 1\ntimer_s 0\nidentity_changed 2\ntext 1\nx\n";
    client_write_raw(path, bad_flag, strlen(bad_flag));
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), PARLEY_ECONFIG);
    client_write_raw(path, buf, len); /* the original reads again */
    assert_int_equal(msgstore_get(dir, 1234, 7, &got), 0);
    msgstore_text_free(&got);
    free(buf);
}

/* Self-destruct timers (msgstore.h) */

static void test_msgstore_timer_file_round_trips_0600_and_damage_is_econfig(void **state)
{
    struct fixture *f = *state;
    char dir[600], path[700];
    uint32_t t = 99;
    path_in(dir, sizeof(dir), f->dir, "chat");
    path_in(path, sizeof(path), dir, "timer");
    assert_int_equal(msgstore_timer_get(dir, &t), 0); /* no directory, no file: off */
    assert_int_equal(t, 0);
    assert_int_equal(msgstore_timer_set(dir, 604801), PARLEY_EINVAL);
    assert_false(exists(dir));
    assert_int_equal(msgstore_timer_set(dir, 5), 0);
    assert_int_equal(mode_of(dir), 0700);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(msgstore_timer_get(dir, &t), 0);
    assert_int_equal(t, 5);
    assert_int_equal(msgstore_timer_set(dir, 604800), 0);
    assert_int_equal(msgstore_timer_get(dir, &t), 0);
    assert_int_equal(t, 604800);
    assert_int_equal(msgstore_timer_set(dir, 0), 0);
    assert_int_equal(msgstore_timer_get(dir, &t), 0);
    assert_int_equal(t, 0);

    static const char *const bad[] = {
        "",                       /* empty */
        "timer_s 5",              /* cut short */
        "timer_s 604801\n",       /* out of range */
        "timer_s -5\n",           /* not a number */
        "timer_s 05\n",           /* not canonical */
        "timer 5\n",              /* another key */
        "timer_s 5\ntimer_s 6\n", /* twice */
        "timer_s 5\n\n",          /* a line after */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        client_write_raw(path, bad[i], strlen(bad[i]));
        t = 77;
        assert_int_equal(msgstore_timer_get(dir, &t), PARLEY_ECONFIG);
        assert_int_equal(t, 77); /* out-params only on success */
    }
    client_write_raw(path, "timer_s 5\0\n", 11); /* a NUL byte */
    assert_int_equal(msgstore_timer_get(dir, &t), PARLEY_ECONFIG);
}

/* A delivered message (message_id, from 7) with timer timer_s. */
static void put_timed(const char *dir, uint64_t message_id, uint32_t timer_s)
{
    struct msgstore_msg m = sample_msg();
    m.message_id = message_id;
    m.timer_s = timer_s;
    assert_int_equal(msgstore_put(dir, &m, true), 0);
}

static void test_msgstore_expiry_persists_and_expired_files_go(void **state)
{
    struct fixture *f = *state;
    char dir[600], index[700], first[700], second[700];
    struct msgstore_msg got;
    uint64_t *ids = NULL;
    size_t n = 9;
    int64_t next = -1;
    path_in(dir, sizeof(dir), f->dir, "chat");
    path_in(index, sizeof(index), dir, "expiring");
    path_in(first, sizeof(first), dir, "1-7");
    path_in(second, sizeof(second), dir, "2-7");
    put_timed(dir, 1, 5);
    put_timed(dir, 2, 5);
    put_timed(dir, 3, 0);

    /* Nothing scheduled: nothing goes, however late it is. */
    assert_int_equal(msgstore_expire(dir, INT64_MAX, &ids, &n, &next), 0);
    assert_null(ids);
    assert_int_equal(n, 0);
    assert_int_equal(next, 0);
    assert_int_equal(msgstore_set_expiry(dir, 99, 7, 1000, false), PARLEY_ENOTFOUND);
    assert_int_equal(msgstore_set_expiry(dir, 1, 7, 0, false), PARLEY_EINVAL);

    assert_int_equal(msgstore_set_expiry(dir, 1, 7, 1000, true), 0);
    assert_int_equal(mode_of(index), 0600);
    assert_int_equal(msgstore_set_expiry(dir, 2, 7, 2000, false), 0);
    /* A later expiry does not postpone; an earlier one wins. */
    assert_int_equal(msgstore_set_expiry(dir, 2, 7, 3000, false), 0);
    assert_int_equal(msgstore_get(dir, 2, 7, &got), 0);
    assert_int_equal(got.expires, 2000);
    msgstore_text_free(&got);
    assert_int_equal(msgstore_set_expiry(dir, 2, 7, 1500, false), 0);
    assert_int_equal(msgstore_get(dir, 2, 7, &got), 0);
    assert_int_equal(got.expires, 1500);
    assert_int_equal(got.timer_s, 5);
    msgstore_text_free(&got);
    assert_int_equal(msgstore_get(dir, 3, 7, &got), 0);
    assert_int_equal(got.expires, 0);
    msgstore_text_free(&got);

    /* Before its time nothing goes; then the due one, and only it. */
    assert_int_equal(msgstore_expire(dir, 999, &ids, &n, &next), 0);
    assert_int_equal(n, 0);
    assert_int_equal(next, 1000);
    assert_int_equal(msgstore_expire(dir, 1000, &ids, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    assert_int_equal(next, 1500);
    assert_false(exists(first));
    assert_true(exists(second));
    assert_int_equal(msgstore_get(dir, 1, 7, &got), PARLEY_ENOTFOUND);
    /* Reported once. */
    assert_int_equal(msgstore_expire(dir, 1000, &ids, &n, &next), 0);
    assert_int_equal(n, 0);

    /* A receipt still owed outlives the message, until it is sent. */
    uint64_t *owed = NULL;
    size_t n_owed = 0;
    assert_int_equal(msgstore_receipts_owed(dir, &owed, &n_owed), 0);
    assert_int_equal(n_owed, 1);
    assert_int_equal(owed[0], 1);
    assert_int_equal(msgstore_receipts_sent(dir, owed, n_owed), 0);
    free(owed);
    assert_int_equal(msgstore_receipts_owed(dir, &owed, &n_owed), 0);
    assert_int_equal(n_owed, 0);
    assert_null(owed);

    assert_int_equal(msgstore_expire(dir, 5000, &ids, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 2);
    free(ids);
    assert_int_equal(next, 0);
    assert_false(exists(second));
    assert_false(exists(index));                        /* nothing waits: no index */
    assert_int_equal(msgstore_get(dir, 3, 7, &got), 0); /* no timer: stays */
    msgstore_text_free(&got);
}

static void test_msgstore_damaged_expiry_index_is_econfig(void **state)
{
    struct fixture *f = *state;
    char dir[600], index[700], *buf;
    size_t len, n;
    struct msgstore_msg got;
    uint64_t *ids;
    int64_t next;
    path_in(dir, sizeof(dir), f->dir, "chat");
    path_in(index, sizeof(index), dir, "expiring");
    put_timed(dir, 1, 5);
    put_timed(dir, 2, 5);
    assert_int_equal(msgstore_set_expiry(dir, 1, 7, 1000, true), 0);
    assert_int_equal(msgstore_set_expiry(dir, 2, 7, 2000, false), 0);
    assert_int_equal(home_read_file(index, &buf, &len), 0);
    assert_string_equal(buf, "1 7 1000 1\n2 7 2000 0\n");

    static const char *const bad[] = {
        "1 7 1000 1\n2 7 2000 0",   /* cut short */
        "1 7 1000 1\n2 7 2000\n",   /* a field missing */
        "1 7 1000 3\n",             /* not a flag */
        "1 7 0 1\n",                /* no expiry */
        "1 7 -5 1\n",               /* negative */
        "1 7 1000 1\n1 7 2000 0\n", /* twice */
        "1  7 1000 1\n",            /* two spaces */
        "1 7 1000 1 9\n",           /* a field more */
        "x 7 1000 1\n",             /* not a number */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        client_write_raw(index, bad[i], strlen(bad[i]));
        assert_int_equal(msgstore_expire(dir, 5000, &ids, &n, &next), PARLEY_ECONFIG);
        assert_int_equal(msgstore_get(dir, 1, 7, &got), PARLEY_ECONFIG);
        assert_int_equal(msgstore_set_expiry(dir, 1, 7, 10, false), PARLEY_ECONFIG);
    }
    client_write_raw(index, "1 7 1000 1\0\n", 12); /* a NUL byte */
    assert_int_equal(msgstore_expire(dir, 5000, &ids, &n, &next), PARLEY_ECONFIG);
    /* Nothing was deleted on a damaged index. */
    assert_int_equal(msgstore_get(dir, 1, 7, &got), PARLEY_ECONFIG);
    client_write_raw(index, buf, len);
    assert_int_equal(msgstore_get(dir, 1, 7, &got), 0);
    assert_int_equal(got.expires, 1000);
    msgstore_text_free(&got);
    free(buf);
}

#define OWED_GONE_FOR_TEST 2 /* the index's OWED value of a deleted message's receipt */

/* Writes an index of n entries: ids first.., from 7, expiring at expires,
 * with the given OWED field. */
static void write_index(const char *index, uint64_t first, size_t n, int64_t expires, int owed)
{
    char *buf = malloc(n * 64 + 1);
    size_t len = 0;
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, 64, "%llu 7 %lld %d\n", (unsigned long long)(first + i),
                                (long long)expires, owed);
    client_write_raw(index, buf, len);
    free(buf);
}

/* Review finding 6: receipts owed for messages already deleted filled the
 * index, and every message read after that was deleted at once without a
 * receipt. They are now kept apart from the timers. */
static void test_msgstore_owed_receipts_never_block_new_timers(void **state)
{
    struct fixture *f = *state;
    char dir[600], index[700];
    uint64_t *ids = NULL;
    size_t n = 0;
    int64_t next;
    path_in(dir, sizeof(dir), f->dir, "chat");
    path_in(index, sizeof(index), dir, "expiring");
    put_timed(dir, 5000, 5);
    /* A full index of messages whose timer ran out, receipts not sent. */
    write_index(index, 1, MSGSTORE_EXPIRING_MAX, 1000, 1);
    assert_int_equal(msgstore_expire(dir, 2000, &ids, &n, &next), 0);
    assert_int_equal(n, 0); /* their files were gone */
    free(ids);
    assert_int_equal(msgstore_set_expiry(dir, 5000, 7, 9000, true), 0);
    assert_int_equal(msgstore_receipts_owed(dir, &ids, &n), 0);
    assert_int_equal(n, MSGSTORE_EXPIRING_MAX + 1);
    free(ids);

    /* A full index of timers still running: EBUSY; the receipt of a message
     * deleted at once is owed all the same. */
    write_index(index, 1, MSGSTORE_EXPIRING_MAX, INT64_MAX / 2, 0);
    assert_int_equal(msgstore_set_expiry(dir, 5000, 7, 9000, true), PARLEY_EBUSY);
    assert_int_equal(msgstore_remove(dir, 5000, 7), 0);
    assert_int_equal(msgstore_owe_receipt(dir, 5000, 7), 0);
    assert_int_equal(msgstore_receipts_owed(dir, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 5000);
    free(ids);
    /* Kept until sent, then dropped; never counted as a running timer. */
    assert_int_equal(msgstore_expire(dir, 2000, &ids, &n, &next), 0);
    assert_int_equal(n, 0);
    free(ids);
    assert_int_equal(msgstore_receipts_owed(dir, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(msgstore_receipts_sent(dir, ids, n), 0);
    free(ids);
    assert_int_equal(msgstore_expire(dir, 2000, &ids, &n, &next), 0);
    free(ids);
    assert_int_equal(msgstore_receipts_owed(dir, &ids, &n), 0);
    assert_int_equal(n, 0);
    free(ids);
    /* Owed receipts of deleted messages are bounded: the oldest goes. */
    write_index(index, 1, MSGSTORE_EXPIRING_MAX, 1000, OWED_GONE_FOR_TEST);
    assert_int_equal(msgstore_owe_receipt(dir, 5001, 7), 0);
    assert_int_equal(msgstore_receipts_owed(dir, &ids, &n), 0);
    assert_int_equal(n, MSGSTORE_EXPIRING_MAX);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[n - 1], 5001);
    free(ids);
}

/* Prekey counters (home.h) */

static void test_home_prekeys_default_round_trip_and_corrupt(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct home_prekeys st, got;
    assert_int_equal(home_load_prekeys(f->dir, &st), 0);
    assert_int_equal(st.next_prekey_id, 1);
    assert_int_equal(st.signed_prekey_id, 0);
    st = (struct home_prekeys){
        .next_prekey_id = 101, .signed_prekey_id = 3, .signed_prekey_date = 1700000000};
    assert_int_equal(home_save_prekeys(f->dir, &st), 0);
    path_in(path, sizeof(path), f->dir, "prekeys");
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(home_load_prekeys(f->dir, &got), 0);
    assert_int_equal(got.next_prekey_id, 101);
    assert_int_equal(got.signed_prekey_id, 3);
    assert_int_equal(got.signed_prekey_date, 1700000000);

    const char *bad[] = {
        "next_prekey_id 1\nsigned_prekey_id 0\n",                              /* missing */
        "next_prekey_id 1\nsigned_prekey_id 0\nsigned_prekey_date 0",          /* cut short */
        "next_prekey_id 0\nsigned_prekey_id 0\nsigned_prekey_date 0\n",        /* id 0 */
        "next_prekey_id 16777216\nsigned_prekey_id 0\nsigned_prekey_date 0\n", /* > 24 bits */
        "next_prekey_id 1\nnext_prekey_id 1\nsigned_prekey_id 0\nsigned_prekey_date 0\n",
        "next_prekey_id 1\nsigned_prekey_id x\nsigned_prekey_date 0\n",
        "next_prekey_id 1\nsigned_prekey_id 0\nsigned_prekey_date 0\ncolor 1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        client_write_raw(path, bad[i], strlen(bad[i]));
        if (home_load_prekeys(f->dir, &got) != PARLEY_ECONFIG)
            fail_msg("case %zu: not refused", i);
    }
}

/* The API on local state */

/* A home with an account (user_id, device_id, name), its device key and
 * its Signal identity, as signup leaves it; *pub gets the identity's public key. */
static void make_home(const struct fixture *f, const char *name, uint64_t user_id,
                      uint64_t device_id, char *home, size_t size, struct keys_public *pub)
{
    char e2e_path[700];
    struct home_account a;
    memset(&a, 0, sizeof(a));
    snprintf(a.server, sizeof(a.server), NO_SERVER);
    a.user_id = user_id;
    a.device_id = device_id;
    snprintf(a.username, sizeof(a.username), "%s", name);
    path_in(home, size, f->dir, name);
    assert_int_equal(home_init(home), 0);
    assert_int_equal(home_save_account(home, &a), 0);
    unsigned char *sk;
    assert_int_equal(home_key_new(&sk), 0);
    assert_int_equal(home_save_key(home, sk), 0);
    home_key_free(sk);
    path_in(e2e_path, sizeof(e2e_path), home, "e2e");
    struct e2e_dir d = {.path = e2e_path};
    struct e2e_identity id;
    assert_int_equal(e2e_init(&d, 77, (uint32_t)device_id, &id), 0);
    if (pub)
        *pub = *keys_public_of(id.key);
    keys_free(id.key);
}

/* Records in home that peer (user_id) has one device with key. */
static void record_peer(const char *home, const char *peer, uint64_t user_id, uint64_t device_id,
                        const struct keys_public *key)
{
    char dir[700], path[800];
    struct trust *t = malloc(sizeof(*t));
    enum trust_verdict v;
    assert_non_null(t);
    path_in(dir, sizeof(dir), home, "secret");
    assert_int_equal(home_init(dir), 0);
    path_in(path, sizeof(path), dir, peer);
    assert_int_equal(home_init(path), 0);
    path_in(dir, sizeof(dir), path, "trust");
    trust_init(t, user_id);
    assert_int_equal(trust_see(t, device_id, key, &v), 0);
    assert_int_equal(trust_save(dir, t), 0);
    free(t);
}

static struct parley *open_at(const char *home)
{
    struct parley *p = NULL;
    struct parley_options o = {.home = home, .server_url = NO_SERVER, .timeout_ms = 200};
    assert_int_equal(parley_open(&o, &p), 0);
    return p;
}

static void test_secret_api_checks_arguments_and_account_first(void **state)
{
    struct fixture *f = *state;
    char home[600];
    struct parley_safety s;
    struct parley_msg m;
    path_in(home, sizeof(home), f->dir, "empty");
    struct parley *p = open_at(home);
    assert_int_equal(parley_secret_start(NULL, "@bob"), PARLEY_EINVAL);
    assert_int_equal(parley_secret_start(p, NULL), PARLEY_EINVAL);
    assert_int_equal(parley_secret_start(p, "@b"), PARLEY_EBAD_USERNAME);
    assert_int_equal(parley_secret_start(p, "@bob"), PARLEY_ENOACCOUNT);
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_ENOACCOUNT);
    assert_int_equal(parley_send_secret(p, "@bob", "", 0, 0, &m), PARLEY_EINVAL);
    assert_int_equal(parley_send_secret(p, "@bob", "\xff", 1, 0, &m), PARLEY_EBAD_UTF8);
    assert_int_equal(parley_send_secret(p, "bad name", "hi", 2, 0, &m), PARLEY_EBAD_USERNAME);
    assert_int_equal(parley_verify(p, "@bob", &s), PARLEY_ENOACCOUNT);
    assert_int_equal(parley_verify(p, "@bob", NULL), PARLEY_EINVAL);
    assert_int_equal(parley_verify_accept(p, "@bob"), PARLEY_ENOACCOUNT);
    parley_close(p);

    /* With an account: no chat with oneself, no safety number before a key. */
    make_home(f, "alice", 1, 1, home, sizeof(home), NULL);
    p = open_at(home);
    assert_int_equal(parley_secret_start(p, "@Alice"), PARLEY_EINVAL);
    assert_int_equal(parley_send_secret(p, "alice", "hi", 2, 0, &m), PARLEY_EINVAL);
    assert_int_equal(parley_verify(p, "@bob", &s), PARLEY_ENOTFOUND);
    assert_int_equal(parley_verify_accept(p, "@bob"), PARLEY_ENOTFOUND);
    parley_close(p);
}

static void test_safety_numbers_are_the_same_on_both_sides(void **state)
{
    struct fixture *f = *state;
    char alice[600], bob[600];
    struct keys_public ka, kb;
    struct parley_safety sa, sb;
    make_home(f, "alice", 1, 10, alice, sizeof(alice), &ka);
    make_home(f, "bob", 2, 20, bob, sizeof(bob), &kb);
    record_peer(alice, "bob", 2, 20, &kb);
    record_peer(bob, "alice", 1, 10, &ka);
    struct parley *pa = open_at(alice), *pb = open_at(bob);
    assert_int_equal(parley_verify(pa, "@bob", &sa), 0);
    assert_int_equal(parley_verify(pb, "alice", &sb), 0);
    assert_string_equal(sa.number, sb.number);
    assert_int_equal(strlen(sa.number), 71);
    for (size_t i = 0; i < 71; i++)
        assert_true(i % 6 == 5 ? sa.number[i] == ' '
                               : (sa.number[i] >= '0' && sa.number[i] <= '9'));
    assert_int_equal(sa.device_id, 20);
    assert_int_equal(sb.device_id, 10);
    assert_false(sa.changed);
    /* A third party's key gives another number. */
    struct keys_public other = some_key(9);
    record_peer(alice, "bob", 2, 20, &other);
    assert_int_equal(parley_verify(pa, "@bob", &sa), 0);
    assert_string_not_equal(sa.number, sb.number);
    parley_close(pa);
    parley_close(pb);
}

static void test_changed_key_blocks_sending_until_accepted(void **state)
{
    struct fixture *f = *state;
    char alice[600], path[800], trust_file[900];
    struct keys_public kb = some_key(4), kb2 = some_key(5);
    struct parley_safety s;
    struct parley_msg m;
    struct trust *t = malloc(sizeof(*t));
    enum trust_verdict v;
    assert_non_null(t);
    make_home(f, "alice", 1, 10, alice, sizeof(alice), NULL);
    record_peer(alice, "bob", 2, 20, &kb);
    path_in(path, sizeof(path), alice, "secret/bob");
    path_in(trust_file, sizeof(trust_file), path, "trust");
    assert_int_equal(trust_load(trust_file, t), 0);
    assert_int_equal(trust_see(t, 20, &kb2, &v), 0);
    assert_int_equal(v, TRUST_CHANGED);
    assert_int_equal(trust_save(trust_file, t), 0);

    struct parley *p = open_at(alice);
    /* Refused before any network: the server in the options is closed. */
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_EUNTRUSTED_IDENTITY);
    assert_int_equal(parley_verify(p, "@bob", &s), 0);
    assert_true(s.changed);
    assert_int_equal(parley_verify_accept(p, "@bob"), 0);
    assert_int_equal(parley_verify(p, "@bob", &s), 0);
    assert_false(s.changed);
    assert_int_equal(trust_load(trust_file, t), 0);
    assert_memory_equal(t->dev[0].accepted.u, kb2.u, KEYS_PUBLIC_LEN);
    assert_int_equal(mode_of(trust_file), 0600);
    /* Accepted: the send now gets as far as the network. */
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_ECONNECT);
    parley_close(p);
    free(t);
}

/* Review finding 5: verify showed the lowest device's number while accept
 * took every device's current key. Now verify shows a changed device
 * first, and accept takes only the key verify showed. */
static void test_verify_shows_a_changed_device_and_accept_takes_only_it(void **state)
{
    struct fixture *f = *state;
    char alice[600], trust_file[900];
    struct keys_public k20 = some_key(4), k30 = some_key(5), k40 = some_key(6), knew = some_key(7);
    struct parley_safety s;
    struct trust *t = malloc(sizeof(*t));
    enum trust_verdict v;
    assert_non_null(t);
    make_home(f, "alice", 1, 10, alice, sizeof(alice), NULL);
    record_peer(alice, "bob", 2, 20, &k20);
    path_in(trust_file, sizeof(trust_file), alice, "secret/bob/trust");
    assert_int_equal(trust_load(trust_file, t), 0);
    assert_int_equal(trust_see(t, 30, &k30, &v), 0);
    assert_int_equal(trust_see(t, 40, &k40, &v), 0);
    assert_int_equal(trust_see(t, 40, &knew, &v), 0);
    assert_int_equal(trust_see(t, 30, &knew, &v), 0);
    assert_int_equal(trust_save(trust_file, t), 0);

    struct parley *p = open_at(alice);
    assert_int_equal(parley_verify(p, "@bob", &s), 0);
    assert_int_equal(s.device_id, 30); /* changed, though 20 is lower */
    assert_true(s.changed);
    assert_int_equal(parley_verify_accept(p, "@bob"), 0);
    assert_int_equal(trust_load(trust_file, t), 0);
    assert_false(trust_is_changed(trust_find(t, 30)));
    assert_true(trust_is_changed(trust_find(t, 40))); /* not shown: not accepted */
    assert_int_equal(parley_verify(p, "@bob", &s), 0);
    assert_int_equal(s.device_id, 40);
    assert_true(s.changed);
    assert_int_equal(parley_verify_accept(p, "@bob"), 0);
    assert_int_equal(parley_verify(p, "@bob", &s), 0);
    assert_int_equal(s.device_id, 20);
    assert_false(s.changed);
    parley_close(p);
    free(t);
}

/* Records what a recv callback got. */
struct seen {
    size_t n;
    enum parley_msg_kind kind;
    char chat[40];
    uint64_t ids[4];
    size_t n_ids;
    bool secret;
};

static int on_seen(void *arg, const struct parley_msg *m)
{
    struct seen *s = arg;
    s->n++;
    s->kind = m->kind;
    s->secret = m->secret;
    snprintf(s->chat, sizeof(s->chat), "%s", m->chat);
    s->n_ids = m->n_deleted < 4 ? m->n_deleted : 4;
    for (size_t i = 0; i < s->n_ids; i++)
        s->ids[i] = m->deleted_ids[i];
    return 0;
}

static void test_expired_messages_go_before_the_network(void **state)
{
    struct fixture *f = *state;
    char alice[600], dir[800], path[900];
    struct keys_public kb = some_key(4);
    struct parley_msg m;
    struct seen seen = {0};
    make_home(f, "alice", 1, 10, alice, sizeof(alice), NULL);
    record_peer(alice, "bob", 2, 20, &kb);
    path_in(dir, sizeof(dir), alice, "secret/bob");
    put_timed(dir, 1, 5);
    put_timed(dir, 2, 5);
    put_timed(dir, 3, 5);
    path_in(path, sizeof(path), dir, "1-7");
    assert_int_equal(msgstore_set_expiry(dir, 1, 7, 1000, false), 0); /* long ago */
    assert_int_equal(msgstore_set_expiry(dir, 3, 7, INT64_MAX / 2, false), 0);

    struct parley *p = open_at(alice);
    /* The server is closed: recv fails, but only after the deletion. */
    assert_int_equal(parley_recv(p, 0, false, on_seen, &seen), PARLEY_ECONNECT);
    assert_false(exists(path));
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.kind, PARLEY_MSG_DELETED);
    assert_true(seen.secret);
    assert_string_equal(seen.chat, "@bob");
    assert_int_equal(seen.n_ids, 1);
    assert_int_equal(seen.ids[0], 1);
    seen.n = 0;
    assert_int_equal(parley_recv(p, 0, false, on_seen, &seen), PARLEY_ECONNECT);
    assert_int_equal(seen.n, 0);

    /* A send deletes too; unread (no expiry) and not yet due stay. */
    assert_int_equal(msgstore_set_expiry(dir, 2, 7, 1000, false), 0);
    path_in(path, sizeof(path), dir, "2-7");
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_ECONNECT);
    assert_false(exists(path));
    path_in(path, sizeof(path), dir, "3-7");
    assert_true(exists(path));

    /* The timer: checked first, a damaged file refused before the network. */
    assert_int_equal(parley_secret_timer(p, "@bob", 604801), PARLEY_EINVAL);
    assert_int_equal(parley_secret_timer(p, "@alice", 5), PARLEY_EINVAL);
    assert_int_equal(parley_secret_timer(p, "b", 5), PARLEY_EBAD_USERNAME);
    assert_int_equal(parley_secret_timer(NULL, "@bob", 5), PARLEY_EINVAL);
    assert_int_equal(parley_secret_timer(p, "@bob", 5), PARLEY_ECONNECT);
    path_in(path, sizeof(path), dir, "timer");
    assert_false(exists(path)); /* not sent: not recorded */
    client_write_raw(path, "timer_s 5", 9);
    assert_int_equal(parley_secret_timer(p, "@bob", 5), PARLEY_ECONFIG);
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_ECONFIG);
    parley_close(p);

    char empty[600];
    path_in(empty, sizeof(empty), f->dir, "empty");
    p = open_at(empty);
    assert_int_equal(parley_secret_timer(p, "@bob", 5), PARLEY_ENOACCOUNT);
    parley_close(p);
}

static void test_damaged_secret_state_is_econfig(void **state)
{
    struct fixture *f = *state;
    char alice[600], path[800];
    struct keys_public kb = some_key(4);
    struct parley_safety s;
    struct parley_msg m;
    make_home(f, "alice", 1, 10, alice, sizeof(alice), NULL);
    record_peer(alice, "bob", 2, 20, &kb);

    path_in(path, sizeof(path), alice, "secret/bob/trust");
    client_write_raw(path, "user_id 2\ndevice 20", 19);
    struct parley *p = open_at(alice);
    assert_int_equal(parley_verify(p, "@bob", &s), PARLEY_ECONFIG);
    assert_int_equal(parley_verify_accept(p, "@bob"), PARLEY_ECONFIG);
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_ECONFIG);
    parley_close(p);

    record_peer(alice, "bob", 2, 20, &kb);
    path_in(path, sizeof(path), alice, "e2e/identity");
    client_write_raw(path, "short", 5);
    p = open_at(alice);
    assert_int_equal(parley_verify(p, "@bob", &s), PARLEY_ECONFIG);
    assert_int_equal(parley_send_secret(p, "@bob", "hi", 2, 0, &m), PARLEY_ECONFIG);
    parley_close(p);

    /* An identity made for another device of the account. */
    char e2e_path[700];
    path_in(e2e_path, sizeof(e2e_path), alice, "e2e");
    path_in(path, sizeof(path), e2e_path, "identity");
    assert_int_equal(unlink(path), 0);
    path_in(path, sizeof(path), e2e_path, "registration");
    assert_int_equal(unlink(path), 0);
    struct e2e_dir d = {.path = e2e_path};
    struct e2e_identity id;
    assert_int_equal(e2e_init(&d, 77, 11, &id), 0);
    keys_free(id.key);
    p = open_at(alice);
    assert_int_equal(parley_verify(p, "@bob", &s), PARLEY_ECONFIG);
    parley_close(p);
}

#define T(name) cmocka_unit_test_setup_teardown(name, client_tmp_setup, client_tmp_teardown)

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        T(test_trust_first_use_then_same_then_changed_until_accepted),
        T(test_trust_removed_device_back_with_another_key_is_changed),
        T(test_trust_refuses_more_devices_than_a_send_reaches),
        T(test_device_list_with_a_device_stale_and_missing_is_eproto),
        T(test_trust_round_trips_in_a_0600_file),
        T(test_trust_corrupt_or_truncated_is_econfig),
        T(test_msgstore_pending_then_delivered_in_0600_files),
        T(test_msgstore_refuses_what_it_cannot_write_back),
        T(test_msgstore_corrupt_or_truncated_is_econfig),
        T(test_msgstore_timer_file_round_trips_0600_and_damage_is_econfig),
        T(test_msgstore_expiry_persists_and_expired_files_go),
        T(test_msgstore_damaged_expiry_index_is_econfig),
        T(test_msgstore_owed_receipts_never_block_new_timers),
        T(test_home_prekeys_default_round_trip_and_corrupt),
        T(test_secret_api_checks_arguments_and_account_first),
        T(test_safety_numbers_are_the_same_on_both_sides),
        T(test_changed_key_blocks_sending_until_accepted),
        T(test_verify_shows_a_changed_device_and_accept_takes_only_it),
        T(test_damaged_secret_state_is_econfig),
        T(test_expired_messages_go_before_the_network),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
