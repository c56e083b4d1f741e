/* SPDX-License-Identifier: MIT */
/* Unit tests of libparley's internals without a server: server URLs
 * (url.h), the home directory's files and modes (home.h), certificate pins
 * (known.h), the auth signature (auth.h), and what the public API answers
 * before signup. Each test gets a fresh temporary directory, removed after. */
#include "client/auth.h"
#include "client/client_test_util.h"
#include "client/home.h"
#include "client/known.h"
#include "client/url.h"
#include "common/err.h"

#include <parley.h>

#include <dirent.h>
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

/* f->dir + "/" + name into buf. */
static void in_dir(char *buf, size_t size, const struct fixture *f, const char *name)
{
    assert_int_equal(home_path(buf, size, f->dir, name), 0);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode;
}

/* The names in dir, except "." and "..". */
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* The whole file at path, NUL-terminated; the caller frees. */
/* noinline: GCC 12 at -O2 otherwise mistakes the result for a pointer to
 * the local it was read through (-Wdangling-pointer). */
__attribute__((noinline)) static char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    int rc = home_read_file(path, &buf, len);
    assert_int_equal(rc, 0);
    assert_non_null(buf);
    return buf;
}

/* URLs (url.h) */

static struct url parse_ok(const char *s)
{
    struct url u;
    memset(&u, 0, sizeof(u));
    int err = url_parse(s, &u);
    if (err)
        fail_msg("url_parse(\"%s\") = %s, want 0", s, err_name(err));
    return u;
}

static void parse_fails(const char *s)
{
    struct url u, before;
    memset(&u, 0xA5, sizeof(u));
    memcpy(&before, &u, sizeof(u));
    int err = url_parse(s, &u);
    if (err != PARLEY_EINVAL)
        fail_msg("url_parse(\"%s\") = %d, want PARLEY_EINVAL", s ? s : "(null)", err);
    /* On failure *out is untouched. */
    assert_memory_equal(&u, &before, sizeof(u));
}

static void test_url_https_host_port_fills_every_field(void **state)
{
    (void)state;
    struct url u = parse_ok("https://chat.example.org:8443");
    assert_true(u.tls);
    assert_false(u.host_is_ip);
    assert_string_equal(u.host, "chat.example.org");
    assert_string_equal(u.port, "8443");
    assert_string_equal(u.hostport, "chat.example.org:8443");

    u = parse_ok("https://chat.example.org:8443/");
    assert_string_equal(u.hostport, "chat.example.org:8443");
}

static void test_url_missing_port_defaults_to_443_or_80(void **state)
{
    (void)state;
    struct url u = parse_ok("https://example.org");
    assert_true(u.tls);
    assert_string_equal(u.port, "443");
    assert_string_equal(u.hostport, "example.org:443");

    u = parse_ok("https://example.org/");
    assert_string_equal(u.port, "443");

    u = parse_ok("http://127.0.0.1");
    assert_false(u.tls);
    assert_true(u.host_is_ip);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.hostport, "127.0.0.1:80");
}

static void test_url_ipv6_brackets_leave_host_and_stay_in_hostport(void **state)
{
    (void)state;
    struct url u = parse_ok("https://[2001:db8::1]:9000/");
    assert_true(u.tls);
    assert_true(u.host_is_ip);
    assert_string_equal(u.host, "2001:db8::1");
    assert_string_equal(u.port, "9000");
    assert_string_equal(u.hostport, "[2001:db8::1]:9000");

    u = parse_ok("http://[::1]");
    assert_false(u.tls);
    assert_true(u.host_is_ip);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]:80");
}

static void test_url_ipv4_literal_is_an_ip_and_names_are_not(void **state)
{
    (void)state;
    struct url u = parse_ok("https://192.0.2.7:1");
    assert_true(u.host_is_ip);
    assert_string_equal(u.host, "192.0.2.7");
    assert_string_equal(u.hostport, "192.0.2.7:1");

    u = parse_ok("https://192.0.2.7.example.org");
    assert_false(u.host_is_ip);
}

static void test_url_port_range_is_1_to_65535(void **state)
{
    (void)state;
    assert_string_equal(parse_ok("https://h:1").port, "1");
    assert_string_equal(parse_ok("https://h:65535").port, "65535");
    parse_fails("https://h:0");
    parse_fails("https://h:65536");
    parse_fails("https://h:99999");
    parse_fails("https://h:123456");
    parse_fails("https://h:");
    parse_fails("https://h:-1");
    parse_fails("https://h:+80");
    parse_fails("https://h:80a");
    parse_fails("https://h:1:2");
    parse_fails("https://[::1]:");
}

static void test_url_plain_http_only_to_loopback(void **state)
{
    (void)state;
    assert_string_equal(parse_ok("http://127.0.0.1:8080").hostport, "127.0.0.1:8080");
    assert_string_equal(parse_ok("http://127.8.9.10:1").host, "127.8.9.10");
    assert_string_equal(parse_ok("http://localhost:5").hostport, "localhost:5");
    assert_string_equal(parse_ok("http://[::1]:6/").hostport, "[::1]:6");

    parse_fails("http://example.org");
    parse_fails("http://example.org:80");
    parse_fails("http://10.0.0.1:8080");
    parse_fails("http://128.0.0.1");
    parse_fails("http://[2001:db8::1]:80");
    parse_fails("http://[::2]");
    parse_fails("http://127.0.0.1.example.org");
    parse_fails("http://localhost.example.org");
    /* The same hosts are fine over TLS. */
    assert_true(parse_ok("https://example.org").tls);
    assert_true(parse_ok("https://10.0.0.1:8080").tls);
}

static void test_url_refuses_path_query_fragment_and_userinfo(void **state)
{
    (void)state;
    parse_fails("https://h/x");
    parse_fails("https://h:1/v1/ws");
    parse_fails("https://h//");
    parse_fails("https://h/?a=1");
    parse_fails("https://h?a=1");
    parse_fails("https://h#top");
    parse_fails("https://user@h");
    parse_fails("https://user:pw@h:1");
    parse_fails("https://[::1]x");
}

static void test_url_refuses_junk(void **state)
{
    (void)state;
    parse_fails(NULL);
    parse_fails("");
    parse_fails("example.org");
    parse_fails("example.org:443");
    parse_fails("//example.org");
    parse_fails("ftp://example.org");
    parse_fails("wss://example.org");
    parse_fails("https:example.org");
    parse_fails("https://");
    parse_fails("https:///");
    parse_fails("https://:443");
    parse_fails("https:// h");
    parse_fails("https://h h");
    parse_fails("https://[::1");
    parse_fails("https://[]:1");
    parse_fails("https://[not-an-ip]:1");
    parse_fails("https://[127.0.0.1]");
    parse_fails("https://::1");
    parse_fails("https://h\n");
}

static void test_url_host_length_limit(void **state)
{
    (void)state;
    char s[URL_HOST_MAX + 32];
    char host[URL_HOST_MAX + 2];
    memset(host, 'a', URL_HOST_MAX);
    host[URL_HOST_MAX] = '\0';
    snprintf(s, sizeof(s), "https://%s:65535", host);
    struct url u = parse_ok(s);
    assert_int_equal(strlen(u.host), URL_HOST_MAX);
    assert_int_equal(strlen(u.hostport), URL_HOST_MAX + 6);

    host[URL_HOST_MAX] = 'a';
    host[URL_HOST_MAX + 1] = '\0';
    snprintf(s, sizeof(s), "https://%s", host);
    parse_fails(s);
}

static void test_url_is_loopback(void **state)
{
    (void)state;
    assert_true(url_is_loopback("localhost"));
    assert_true(url_is_loopback("LocalHost"));
    assert_true(url_is_loopback("127.0.0.1"));
    assert_true(url_is_loopback("127.255.255.254"));
    assert_true(url_is_loopback("::1"));
    assert_true(url_is_loopback("0:0:0:0:0:0:0:1"));
    assert_false(url_is_loopback("128.0.0.1"));
    assert_false(url_is_loopback("10.127.0.1"));
    assert_false(url_is_loopback("::2"));
    assert_false(url_is_loopback("::"));
    assert_false(url_is_loopback("localhost.example.org"));
    assert_false(url_is_loopback("[::1]"));
    assert_false(url_is_loopback(""));
}

/* The home directory (home.h) */

static void test_home_init_creates_0700_and_accepts_an_existing_dir(void **state)
{
    struct fixture *f = *state;
    char home[600], file[600], orphan[700];
    in_dir(home, sizeof(home), f, "home");
    assert_int_equal(home_init(home), 0);
    mode_t m = mode_of(home);
    assert_true(S_ISDIR(m));
    assert_int_equal(m & 07777, 0700);
    assert_int_equal(home_init(home), 0);

    in_dir(file, sizeof(file), f, "file");
    client_write_raw(file, "x", 1);
    assert_int_equal(home_init(file), PARLEY_EIO);

    /* Parents are not created. */
    assert_int_equal(home_path(orphan, sizeof(orphan), f->dir, "no/such/home"), 0);
    assert_int_equal(home_init(orphan), PARLEY_EIO);
}

static void test_home_path_joins_and_refuses_what_does_not_fit(void **state)
{
    (void)state;
    char buf[16];
    assert_int_equal(home_path(buf, sizeof(buf), "/h", "pts"), 0);
    assert_string_equal(buf, "/h/pts");
    /* "/home/a/account" is 15 characters plus the NUL: exactly 16. */
    assert_int_equal(home_path(buf, sizeof(buf), "/home/a", "account"), 0);
    assert_string_equal(buf, "/home/a/account");
    assert_int_equal(home_path(buf, sizeof(buf), "/home/ab", "account"), PARLEY_EINVAL);
}

static void test_home_write_file_is_0600_atomic_and_leaves_no_temp(void **state)
{
    struct fixture *f = *state;
    char path[600];
    size_t len;
    in_dir(path, sizeof(path), f, "state");
    client_write_raw(path, "old and longer content", 22);
    assert_int_equal(chmod(path, 0644), 0);

    assert_int_equal(home_write_file(path, "new", 3), 0);
    assert_int_equal(mode_of(path) & 07777, 0600);
    char *buf = slurp(path, &len);
    assert_int_equal(len, 3);
    assert_string_equal(buf, "new");
    free(buf);
    assert_int_equal(count_entries(f->dir), 1);

    assert_int_equal(home_write_file(path, "", 0), 0);
    buf = slurp(path, &len);
    assert_int_equal(len, 0);
    free(buf);
}

static void test_home_write_file_failure_is_eio_and_cleans_up(void **state)
{
    struct fixture *f = *state;
    char path[600], inner[700];
    in_dir(path, sizeof(path), f, "missing/state");
    assert_int_equal(home_write_file(path, "x", 1), PARLEY_EIO);

    /* A non-empty directory cannot be replaced by a file: the rename fails,
     * the directory stays and the temporary file is removed. */
    in_dir(path, sizeof(path), f, "busy");
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(home_path(inner, sizeof(inner), path, "keep"), 0);
    client_write_raw(inner, "k", 1);
    assert_int_equal(home_write_file(path, "x", 1), PARLEY_EIO);
    assert_true(S_ISDIR(mode_of(path)));
    assert_int_equal(count_entries(path), 1);
    assert_int_equal(count_entries(f->dir), 1);
}

static void test_home_read_file_missing_empty_and_size_limit(void **state)
{
    struct fixture *f = *state;
    char path[600];
    char *buf = (char *)"untouched";
    size_t len = 12345;
    in_dir(path, sizeof(path), f, "data");
    assert_int_equal(home_read_file(path, &buf, &len), PARLEY_ENOTFOUND);
    assert_string_equal(buf, "untouched");
    assert_int_equal(len, 12345);

    client_write_raw(path, "", 0);
    buf = slurp(path, &len);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], '\0');
    free(buf);

    char *big = malloc(HOME_FILE_MAX + 1);
    assert_non_null(big);
    memset(big, 'z', HOME_FILE_MAX + 1);
    client_write_raw(path, big, HOME_FILE_MAX);
    buf = slurp(path, &len);
    assert_int_equal(len, HOME_FILE_MAX);
    assert_int_equal(buf[HOME_FILE_MAX - 1], 'z');
    assert_int_equal(buf[HOME_FILE_MAX], '\0');
    free(buf);

    client_write_raw(path, big, HOME_FILE_MAX + 1);
    buf = (char *)"untouched";
    assert_int_equal(home_read_file(path, &buf, &len), PARLEY_EIO);
    assert_string_equal(buf, "untouched");
    free(big);

    /* A directory where a file should be. */
    assert_int_equal(home_read_file(f->dir, &buf, &len), PARLEY_EIO);
}

static struct home_account sample_account(void)
{
    struct home_account a;
    memset(&a, 0, sizeof(a));
    snprintf(a.server, sizeof(a.server), "https://chat.example.org:8443");
    a.user_id = 7;
    a.device_id = UINT64_MAX;
    snprintf(a.username, sizeof(a.username), "alice_01");
    return a;
}

static void test_home_account_round_trips_in_a_0600_file(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct home_account a = sample_account(), b;
    memset(&b, 0, sizeof(b));
    assert_int_equal(home_save_account(f->dir, &a), 0);
    in_dir(path, sizeof(path), f, "account");
    assert_int_equal(mode_of(path) & 07777, 0600);
    assert_int_equal(home_load_account(f->dir, &b), 0);
    assert_string_equal(b.server, a.server);
    assert_int_equal(b.user_id, 7);
    assert_int_equal(b.device_id, UINT64_MAX);
    assert_string_equal(b.username, "alice_01");

    a.user_id = 8;
    assert_int_equal(home_save_account(f->dir, &a), 0);
    assert_int_equal(home_load_account(f->dir, &b), 0);
    assert_int_equal(b.user_id, 8);
}

static void test_home_account_missing_is_enoaccount(void **state)
{
    struct fixture *f = *state;
    struct home_account b = sample_account();
    assert_int_equal(home_load_account(f->dir, &b), PARLEY_ENOACCOUNT);
    assert_int_equal(b.user_id, 7);
}

static void test_home_account_folds_username_and_skips_unknown_keys(void **state)
{
    struct fixture *f = *state;
    char path[600];
    static const char text[] = "server https://h:1\n"
                               "color blue\n"
                               "username @Bob_2\n"
                               "device_id 3\n"
                               "user_id 2\n";
    struct home_account b;
    in_dir(path, sizeof(path), f, "account");
    client_write_raw(path, text, sizeof(text) - 1);
    assert_int_equal(home_load_account(f->dir, &b), 0);
    assert_string_equal(b.server, "https://h:1");
    assert_string_equal(b.username, "bob_2");
    assert_int_equal(b.user_id, 2);
    assert_int_equal(b.device_id, 3);
}

static void test_home_account_corrupt_or_truncated_is_econfig(void **state)
{
    struct fixture *f = *state;
    char path[600], long_server[400];
    static const char good[] = "server https://h:1\nuser_id 2\ndevice_id 3\nusername bob\n";
    static const char nul[] = "server s\nuser_id 2\0\ndevice_id 3\nusername bob\n";
    struct {
        const char *what;
        const char *data;
        size_t len;
    } cases[] = {
        {"empty", "", 0},
        {"truncated before the last newline", good, sizeof(good) - 2},
        {"truncated mid-line", good, 30},
        {"no username", "server https://h:1\nuser_id 2\ndevice_id 3\n", 0},
        {"no server", "user_id 2\ndevice_id 3\nusername bob\n", 0},
        {"user_id not a number", "server s\nuser_id x\ndevice_id 3\nusername bob\n", 0},
        {"user_id negative", "server s\nuser_id -2\ndevice_id 3\nusername bob\n", 0},
        {"user_id empty", "server s\nuser_id \ndevice_id 3\nusername bob\n", 0},
        {"user_id trailing junk", "server s\nuser_id 2 \ndevice_id 3\nusername bob\n", 0},
        {"device_id overflows",
         "server s\nuser_id 2\ndevice_id 18446744073709551616\nusername bob\n", 0},
        {"username too short", "server s\nuser_id 2\ndevice_id 3\nusername bo\n", 0},
        {"username with a space", "server s\nuser_id 2\ndevice_id 3\nusername b b\n", 0},
        {"CRLF line ends", "server s\r\nuser_id 2\r\ndevice_id 3\r\nusername bob\r\n", 0},
        {"line without a space", "server s\nuser_id 2\ndevice_id 3\nusername bob\njunk\n", 0},
        {"blank line", "server s\n\nuser_id 2\ndevice_id 3\nusername bob\n", 0},
        {"NUL byte", nul, sizeof(nul) - 1},
        {"server too long", long_server, 0},
    };
    memset(long_server, 0, sizeof(long_server));
    memcpy(long_server, "server ", 7);
    memset(long_server + 7, 'h', 256);
    memcpy(long_server + 263, "\nuser_id 2\ndevice_id 3\nusername bob\n", 36);

    in_dir(path, sizeof(path), f, "account");
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].data);
        struct home_account b = sample_account();
        client_write_raw(path, cases[i].data, len);
        int err = home_load_account(f->dir, &b);
        if (err != PARLEY_ECONFIG)
            fail_msg("account %s: got %d, want PARLEY_ECONFIG", cases[i].what, err);
        assert_int_equal(b.user_id, 7);
    }
}

static void test_home_save_account_refuses_line_breaks_in_fields(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct home_account a = sample_account(), b;
    in_dir(path, sizeof(path), f, "account");

    snprintf(a.server, sizeof(a.server), "https://h:1\nuser_id 99");
    assert_int_equal(home_save_account(f->dir, &a), PARLEY_EINVAL);
    assert_int_equal(home_load_account(f->dir, &b), PARLEY_ENOACCOUNT);

    a = sample_account();
    snprintf(a.username, sizeof(a.username), "bob\nserver x");
    assert_int_equal(home_save_account(f->dir, &a), PARLEY_EINVAL);
    assert_int_equal(home_load_account(f->dir, &b), PARLEY_ENOACCOUNT);
    assert_int_equal(count_entries(f->dir), 0);
}

static void test_home_key_round_trips_in_a_0600_file_and_signs(void **state)
{
    struct fixture *f = *state;
    char path[600];
    unsigned char *sk = NULL, *back = NULL;
    unsigned char pk[HOME_PUBLIC_KEY_LEN], sig[crypto_sign_BYTES];
    static const unsigned char msg[] = "hello";
    size_t len;

    assert_int_equal(home_key_new(&sk), 0);
    assert_non_null(sk);
    assert_int_equal(home_save_key(f->dir, sk), 0);
    in_dir(path, sizeof(path), f, "device_key");
    assert_int_equal(mode_of(path) & 07777, 0600);
    char *text = slurp(path, &len);
    assert_int_equal(len, 8 + 2 * HOME_SECRET_KEY_LEN + 1);
    assert_memory_equal(text, "ed25519 ", 8);
    assert_int_equal(text[len - 1], '\n');
    free(text);

    assert_int_equal(home_load_key(f->dir, &back), 0);
    assert_non_null(back);
    assert_memory_equal(back, sk, HOME_SECRET_KEY_LEN);

    crypto_sign_ed25519_sk_to_pk(pk, sk);
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, sizeof(msg), back), 0);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), pk), 0);

    /* Two new keys differ. */
    unsigned char *other = NULL;
    assert_int_equal(home_key_new(&other), 0);
    assert_memory_not_equal(other, sk, HOME_SECRET_KEY_LEN);
    home_key_free(other);
    home_key_free(back);
    home_key_free(sk);
    home_key_free(NULL);
}

static void test_home_key_missing_is_enoaccount(void **state)
{
    struct fixture *f = *state;
    unsigned char *sk = (unsigned char *)"untouched";
    assert_int_equal(home_load_key(f->dir, &sk), PARLEY_ENOACCOUNT);
    assert_string_equal((const char *)sk, "untouched");
}

static void test_home_key_corrupt_or_truncated_is_econfig(void **state)
{
    struct fixture *f = *state;
    char path[600], good[8 + 2 * HOME_SECRET_KEY_LEN + 2], bad[sizeof(good) + 8];
    unsigned char *sk = NULL;
    size_t good_len;

    assert_int_equal(home_key_new(&sk), 0);
    assert_int_equal(home_save_key(f->dir, sk), 0);
    home_key_free(sk);
    in_dir(path, sizeof(path), f, "device_key");
    char *text = slurp(path, &good_len);
    assert_int_equal(good_len, sizeof(good) - 1);
    memcpy(good, text, good_len + 1);
    free(text);

    struct {
        const char *what;
        size_t at; /* byte to overwrite, or SIZE_MAX */
        char with;
        size_t len; /* bytes written */
    } cases[] = {
        {"empty", SIZE_MAX, 0, 0},
        {"no final newline", SIZE_MAX, 0, good_len - 1},
        {"one hex digit short", SIZE_MAX, 0, good_len - 2},
        {"half a key", SIZE_MAX, 0, 8 + HOME_SECRET_KEY_LEN},
        {"wrong tag", 0, 'x', good_len},
        {"not hex", 8 + 10, 'g', good_len},
        {"seed changed", 8 + 3, '0', good_len},
        {"public half changed", 8 + 2 * HOME_SECRET_KEY_LEN - 1, '0', good_len},
        {"trailing data", good_len, 'x', good_len + 2},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        memcpy(bad, good, good_len + 1);
        bad[good_len + 1] = '\n';
        if (cases[i].at != SIZE_MAX) {
            /* Make sure the byte really changes. */
            char c = cases[i].with;
            if (bad[cases[i].at] == c)
                c = c == '0' ? '1' : (char)(c + 1);
            bad[cases[i].at] = c;
        }
        client_write_raw(path, bad, cases[i].len);
        unsigned char *k = NULL;
        int err = home_load_key(f->dir, &k);
        if (err != PARLEY_ECONFIG)
            fail_msg("key %s: got %d, want PARLEY_ECONFIG", cases[i].what, err);
        assert_null(k);
    }
}

static void test_home_pts_defaults_to_0_and_round_trips(void **state)
{
    struct fixture *f = *state;
    char path[600];
    uint64_t v = 99;
    assert_int_equal(home_load_pts(f->dir, &v), 0);
    assert_int_equal(v, 0);

    assert_int_equal(home_save_pts(f->dir, 42), 0);
    in_dir(path, sizeof(path), f, "pts");
    assert_int_equal(mode_of(path) & 07777, 0600);
    assert_int_equal(home_load_pts(f->dir, &v), 0);
    assert_int_equal(v, 42);

    assert_int_equal(home_save_pts(f->dir, UINT64_MAX), 0);
    assert_int_equal(home_load_pts(f->dir, &v), 0);
    assert_int_equal(v, UINT64_MAX);
}

static void test_home_pts_corrupt_or_truncated_is_econfig(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct {
        const char *what;
        const char *data;
        size_t len;
    } cases[] = {
        {"empty", "", 0},
        {"newline only", "\n", 1},
        {"no final newline", "15", 2},
        {"not a number", "abc\n", 4},
        {"negative", "-1\n", 3},
        {"leading space", " 1\n", 3},
        {"trailing space", "12 \n", 4},
        {"two lines", "1\n2\n", 4},
        {"CRLF", "12\r\n", 4},
        {"overflow", "18446744073709551616\n", 21},
        {"NUL after the number", "7\0\n", 3},
        {"zero-filled", "\0\0\0\0", 4},
    };
    in_dir(path, sizeof(path), f, "pts");
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        uint64_t v = 99;
        client_write_raw(path, cases[i].data, cases[i].len);
        int err = home_load_pts(f->dir, &v);
        if (err != PARLEY_ECONFIG)
            fail_msg("pts %s: got %d, want PARLEY_ECONFIG", cases[i].what, err);
        assert_int_equal(v, 99);
    }
}

/* Certificate pins (known.h) */

static void fill_fp(uint8_t fp[KNOWN_FP_LEN], uint8_t seed)
{
    for (size_t i = 0; i < KNOWN_FP_LEN; i++)
        fp[i] = (uint8_t)(seed + i * 13);
}

static void pin_line(char *buf, size_t size, const char *hostport, const uint8_t fp[KNOWN_FP_LEN])
{
    char hex[2 * KNOWN_FP_LEN + 1];
    sodium_bin2hex(hex, sizeof(hex), fp, KNOWN_FP_LEN);
    snprintf(buf, size, "%s %s\n", hostport, hex);
}

static void test_known_first_contact_saves_and_same_pin_is_accepted(void **state)
{
    struct fixture *f = *state;
    char path[600], want[128];
    uint8_t fp[KNOWN_FP_LEN], other[KNOWN_FP_LEN];
    size_t len;
    fill_fp(fp, 1);
    fill_fp(other, 2);
    in_dir(path, sizeof(path), f, KNOWN_FILE);

    assert_int_equal(known_check(path, "h.example:443", fp), PARLEY_ENOTFOUND);
    assert_int_equal(known_add(path, "h.example:443", fp), 0);
    assert_int_equal(mode_of(path) & 07777, 0600);
    char *text = slurp(path, &len);
    pin_line(want, sizeof(want), "h.example:443", fp);
    assert_string_equal(text, want);
    free(text);

    assert_int_equal(known_check(path, "h.example:443", fp), 0);
    assert_int_equal(known_check(path, "h.example:443", other), PARLEY_ECERT_CHANGED);
    /* The whole fingerprint counts, up to its last bit. */
    memcpy(other, fp, sizeof(other));
    other[KNOWN_FP_LEN - 1] ^= 0x80;
    assert_int_equal(known_check(path, "h.example:443", other), PARLEY_ECERT_CHANGED);
    assert_int_equal(known_check(path, "h.example:8443", fp), PARLEY_ENOTFOUND);
    assert_int_equal(known_check(path, "other.example:443", fp), PARLEY_ENOTFOUND);
}

static void test_known_entries_match_the_whole_hostport(void **state)
{
    struct fixture *f = *state;
    char path[600];
    uint8_t a[KNOWN_FP_LEN], b[KNOWN_FP_LEN];
    fill_fp(a, 10);
    fill_fp(b, 20);
    in_dir(path, sizeof(path), f, KNOWN_FILE);
    assert_int_equal(known_add(path, "h:1", a), 0);
    assert_int_equal(known_add(path, "[::1]:1", b), 0);
    assert_int_equal(known_check(path, "h:10", a), PARLEY_ENOTFOUND);
    assert_int_equal(known_check(path, "h:", a), PARLEY_ENOTFOUND);
    assert_int_equal(known_check(path, "::1]:1", b), PARLEY_ENOTFOUND);
    assert_int_equal(known_check(path, "h:1", a), 0);
    assert_int_equal(known_check(path, "[::1]:1", b), 0);
    assert_int_equal(known_check(path, "[::1]:1", a), PARLEY_ECERT_CHANGED);
}

static void test_known_add_replaces_the_pin_and_keeps_other_lines(void **state)
{
    struct fixture *f = *state;
    char path[600], other_line[128], old_line[128], new_line[128];
    uint8_t fp_other[KNOWN_FP_LEN], fp_old[KNOWN_FP_LEN], fp_new[KNOWN_FP_LEN];
    size_t len;
    fill_fp(fp_other, 3);
    fill_fp(fp_old, 4);
    fill_fp(fp_new, 5);
    pin_line(other_line, sizeof(other_line), "other:1", fp_other);
    pin_line(old_line, sizeof(old_line), "h:443", fp_old);
    pin_line(new_line, sizeof(new_line), "h:443", fp_new);

    char text[512];
    snprintf(text, sizeof(text), "# pinned by hand\n%s%sfuture-format line\n", other_line,
             old_line);
    in_dir(path, sizeof(path), f, KNOWN_FILE);
    client_write_raw(path, text, strlen(text));
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(known_check(path, "h:443", fp_old), 0);

    assert_int_equal(known_add(path, "h:443", fp_new), 0);
    assert_int_equal(mode_of(path) & 07777, 0600);
    assert_int_equal(known_check(path, "h:443", fp_new), 0);
    assert_int_equal(known_check(path, "h:443", fp_old), PARLEY_ECERT_CHANGED);
    assert_int_equal(known_check(path, "other:1", fp_other), 0);

    char *got = slurp(path, &len);
    assert_non_null(strstr(got, "# pinned by hand\n"));
    assert_non_null(strstr(got, "future-format line\n"));
    assert_non_null(strstr(got, other_line));
    assert_non_null(strstr(got, new_line));
    assert_null(strstr(got, old_line));
    /* Exactly one line for h:443. */
    assert_ptr_equal(strstr(got, "h:443 "), strstr(got, new_line));
    assert_null(strstr(strstr(got, new_line) + 1, "h:443 "));
    free(got);
}

static void test_known_malformed_pin_for_the_host_counts_as_changed(void **state)
{
    struct fixture *f = *state;
    char path[600], hex[2 * KNOWN_FP_LEN + 1], line[256];
    uint8_t fp[KNOWN_FP_LEN];
    fill_fp(fp, 6);
    sodium_bin2hex(hex, sizeof(hex), fp, sizeof(fp));
    in_dir(path, sizeof(path), f, KNOWN_FILE);

    const char *bad_values[] = {"", "zz", "not-hex-at-all", NULL, NULL, NULL};
    char short_hex[2 * KNOWN_FP_LEN], long_hex[2 * KNOWN_FP_LEN + 3], crlf[2 * KNOWN_FP_LEN + 2];
    memcpy(short_hex, hex, sizeof(short_hex) - 1);
    short_hex[sizeof(short_hex) - 1] = '\0';
    snprintf(long_hex, sizeof(long_hex), "%sab", hex);
    snprintf(crlf, sizeof(crlf), "%s\r", hex);
    bad_values[3] = short_hex;
    bad_values[4] = long_hex;
    bad_values[5] = crlf;
    for (size_t i = 0; i < PL_ARRAY_LEN(bad_values); i++) {
        snprintf(line, sizeof(line), "h:1 %s\n", bad_values[i]);
        client_write_raw(path, line, strlen(line));
        int err = known_check(path, "h:1", fp);
        if (err != PARLEY_ECERT_CHANGED)
            fail_msg("pin \"%s\": got %d, want PARLEY_ECERT_CHANGED", bad_values[i], err);
    }

    /* A line that is not "HOST:PORT HEX" at all is no entry for the host. */
    client_write_raw(path, "h:1\ngarbage\n\n", 13);
    assert_int_equal(known_check(path, "h:1", fp), PARLEY_ENOTFOUND);

    /* Upper-case hex and a missing final newline are still the same pin. */
    for (char *p = hex; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    snprintf(line, sizeof(line), "h:1 %s", hex);
    client_write_raw(path, line, strlen(line));
    assert_int_equal(known_check(path, "h:1", fp), 0);
}

static void test_known_add_refuses_unsafe_hostport(void **state)
{
    struct fixture *f = *state;
    char path[600];
    uint8_t fp[KNOWN_FP_LEN];
    fill_fp(fp, 7);
    in_dir(path, sizeof(path), f, KNOWN_FILE);
    assert_int_equal(known_add(path, "a b:1", fp), PARLEY_EINVAL);
    assert_int_equal(known_add(path, "a:1\nb:2", fp), PARLEY_EINVAL);
    assert_int_equal(known_add(path, "a:1\r", fp), PARLEY_EINVAL);
    assert_int_equal(known_add(path, "", fp), PARLEY_EINVAL);
    assert_int_equal(count_entries(f->dir), 0);
}

static void test_known_unreadable_file_is_eio(void **state)
{
    struct fixture *f = *state;
    uint8_t fp[KNOWN_FP_LEN];
    fill_fp(fp, 8);
    /* The pin file path names a directory. */
    assert_int_equal(known_check(f->dir, "h:1", fp), PARLEY_EIO);
    assert_int_equal(known_add(f->dir, "h:1", fp), PARLEY_EIO);
}

/* The auth signature (auth.h) */

static void test_auth_message_is_context_then_nonce(void **state)
{
    (void)state;
    uint8_t nonce[AUTH_NONCE_LEN], msg[AUTH_MSG_LEN];
    for (size_t i = 0; i < sizeof(nonce); i++)
        nonce[i] = (uint8_t)(0xF0 ^ i);
    assert_int_equal(AUTH_MSG_LEN, 46);
    auth_message(nonce, msg);
    assert_memory_equal(msg, "parley-auth-v1", 14);
    assert_memory_equal(msg + 14, nonce, sizeof(nonce));
}

static void test_auth_signature_verifies_with_the_device_public_key(void **state)
{
    (void)state;
    unsigned char *sk = NULL, pk[HOME_PUBLIC_KEY_LEN];
    uint8_t nonce[AUTH_NONCE_LEN], msg[AUTH_MSG_LEN], sig[AUTH_SIG_LEN], sig2[AUTH_SIG_LEN];
    assert_int_equal(home_key_new(&sk), 0);
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    randombytes_buf(nonce, sizeof(nonce));

    assert_int_equal(auth_sign(sk, nonce, sizeof(nonce), sig), 0);
    auth_message(nonce, msg);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), pk), 0);
    /* It signs the context too: the bare nonce does not verify. */
    assert_int_not_equal(crypto_sign_verify_detached(sig, nonce, sizeof(nonce), pk), 0);
    /* Nor does another nonce. */
    nonce[0] ^= 1;
    auth_message(nonce, msg);
    assert_int_not_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), pk), 0);
    /* Nor another key. */
    nonce[0] ^= 1;
    auth_message(nonce, msg);
    unsigned char *sk2 = NULL;
    assert_int_equal(home_key_new(&sk2), 0);
    assert_int_equal(auth_sign(sk2, nonce, sizeof(nonce), sig2), 0);
    assert_int_not_equal(crypto_sign_verify_detached(sig2, msg, sizeof(msg), pk), 0);
    home_key_free(sk2);
    home_key_free(sk);
}

static void test_auth_sign_refuses_a_nonce_of_the_wrong_length(void **state)
{
    (void)state;
    unsigned char *sk = NULL;
    uint8_t nonce[AUTH_NONCE_LEN + 1] = {0}, sig[AUTH_SIG_LEN];
    assert_int_equal(home_key_new(&sk), 0);
    assert_int_equal(auth_sign(sk, nonce, AUTH_NONCE_LEN - 1, sig), PARLEY_EPROTO);
    assert_int_equal(auth_sign(sk, nonce, AUTH_NONCE_LEN + 1, sig), PARLEY_EPROTO);
    assert_int_equal(auth_sign(sk, nonce, 0, sig), PARLEY_EPROTO);
    home_key_free(sk);
}

/* The public API before and after signup, without a server */

static int open_home(const struct fixture *f, const char *name, const char *server,
                     struct parley **out)
{
    char home[600];
    in_dir(home, sizeof(home), f, name);
    struct parley_options o = {.home = home, .server_url = server, .timeout_ms = 100};
    return parley_open(&o, out);
}

static int count_msg(void *arg, const struct parley_msg *m)
{
    (void)m;
    ++*(int *)arg;
    return 0;
}

static void test_open_creates_home_0700_and_writes_nothing(void **state)
{
    struct fixture *f = *state;
    char home[600];
    struct parley *p = NULL;
    assert_int_equal(open_home(f, "dev", "https://127.0.0.1:1", &p), 0);
    assert_non_null(p);
    in_dir(home, sizeof(home), f, "dev");
    assert_int_equal(mode_of(home) & 07777, 0700);
    assert_int_equal(count_entries(home), 0);
    assert_string_equal(parley_server_url(p), "https://127.0.0.1:1");
    parley_close(p);
    parley_close(NULL);
}

static void test_queries_before_signup_are_enoaccount(void **state)
{
    struct fixture *f = *state;
    struct parley *p = NULL;
    struct parley_account acct;
    int seen = 0;
    assert_int_equal(open_home(f, "dev", "https://127.0.0.1:1", &p), 0);
    memset(&acct, 0x5A, sizeof(acct));
    assert_int_equal(parley_whoami(p, &acct), PARLEY_ENOACCOUNT);
    assert_int_equal(acct.user_id, UINT64_C(0x5A5A5A5A5A5A5A5A));
    assert_int_equal(parley_connect(p), PARLEY_ENOACCOUNT);
    assert_int_equal(parley_send(p, "@bob", "hi", 2, 0, NULL), PARLEY_ENOACCOUNT);
    assert_int_equal(parley_recv(p, 0, false, count_msg, &seen), PARLEY_ENOACCOUNT);
    assert_int_equal(parley_history(p, "@bob", 0, 0, count_msg, &seen), PARLEY_ENOACCOUNT);
    assert_int_equal(seen, 0);
    /* Checked before anything else: an invalid name never reaches a server. */
    assert_int_equal(parley_signup(p, "x"), PARLEY_EBAD_USERNAME);
    assert_int_equal(parley_retry_after_ms(p), 0);
    parley_close(p);
}

static void test_whoami_reads_the_saved_account_and_pts(void **state)
{
    struct fixture *f = *state;
    char home[600];
    struct parley *p = NULL;
    struct parley_account acct;
    struct home_account a = sample_account();
    in_dir(home, sizeof(home), f, "dev");
    assert_int_equal(home_init(home), 0);
    assert_int_equal(home_save_account(home, &a), 0);
    assert_int_equal(home_save_pts(home, 17), 0);

    /* Without an explicit URL or $PARLEY_SERVER, the account's server. */
    assert_int_equal(unsetenv("PARLEY_SERVER"), 0);
    assert_int_equal(open_home(f, "dev", NULL, &p), 0);
    assert_string_equal(parley_server_url(p), a.server);
    assert_int_equal(parley_whoami(p, &acct), 0);
    assert_string_equal(acct.username, "alice_01");
    assert_int_equal(acct.user_id, 7);
    assert_int_equal(acct.device_id, UINT64_MAX);
    assert_int_equal(acct.pts, 17);
    assert_string_equal(acct.server, a.server);
    assert_int_equal(parley_signup(p, "alice_01"), PARLEY_EEXIST);
    parley_close(p);
}

static void test_open_refuses_corrupt_state_and_remote_plain_http(void **state)
{
    struct fixture *f = *state;
    char home[600], path[700];
    struct parley *p = NULL;
    struct home_account a = sample_account();
    in_dir(home, sizeof(home), f, "dev");
    assert_int_equal(home_init(home), 0);

    assert_int_equal(open_home(f, "dev", "http://example.org:8080", &p), PARLEY_EINVAL);
    assert_null(p);

    assert_int_equal(home_path(path, sizeof(path), home, "account"), 0);
    client_write_raw(path, "server https://h:1\nuser_id 2\n", 29);
    assert_int_equal(open_home(f, "dev", "https://127.0.0.1:1", &p), PARLEY_ECONFIG);
    assert_null(p);

    assert_int_equal(home_save_account(home, &a), 0);
    assert_int_equal(home_path(path, sizeof(path), home, "pts"), 0);
    client_write_raw(path, "12x\n", 4);
    assert_int_equal(open_home(f, "dev", "https://127.0.0.1:1", &p), PARLEY_ECONFIG);
    assert_null(p);
}

#define T(name) cmocka_unit_test_setup_teardown(name, client_tmp_setup, client_tmp_teardown)

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        T(test_url_https_host_port_fills_every_field),
        T(test_url_missing_port_defaults_to_443_or_80),
        T(test_url_ipv6_brackets_leave_host_and_stay_in_hostport),
        T(test_url_ipv4_literal_is_an_ip_and_names_are_not),
        T(test_url_port_range_is_1_to_65535),
        T(test_url_plain_http_only_to_loopback),
        T(test_url_refuses_path_query_fragment_and_userinfo),
        T(test_url_refuses_junk),
        T(test_url_host_length_limit),
        T(test_url_is_loopback),
        T(test_home_init_creates_0700_and_accepts_an_existing_dir),
        T(test_home_path_joins_and_refuses_what_does_not_fit),
        T(test_home_write_file_is_0600_atomic_and_leaves_no_temp),
        T(test_home_write_file_failure_is_eio_and_cleans_up),
        T(test_home_read_file_missing_empty_and_size_limit),
        T(test_home_account_round_trips_in_a_0600_file),
        T(test_home_account_missing_is_enoaccount),
        T(test_home_account_folds_username_and_skips_unknown_keys),
        T(test_home_account_corrupt_or_truncated_is_econfig),
        T(test_home_save_account_refuses_line_breaks_in_fields),
        T(test_home_key_round_trips_in_a_0600_file_and_signs),
        T(test_home_key_missing_is_enoaccount),
        T(test_home_key_corrupt_or_truncated_is_econfig),
        T(test_home_pts_defaults_to_0_and_round_trips),
        T(test_home_pts_corrupt_or_truncated_is_econfig),
        T(test_known_first_contact_saves_and_same_pin_is_accepted),
        T(test_known_entries_match_the_whole_hostport),
        T(test_known_add_replaces_the_pin_and_keeps_other_lines),
        T(test_known_malformed_pin_for_the_host_counts_as_changed),
        T(test_known_add_refuses_unsafe_hostport),
        T(test_known_unreadable_file_is_eio),
        T(test_auth_message_is_context_then_nonce),
        T(test_auth_signature_verifies_with_the_device_public_key),
        T(test_auth_sign_refuses_a_nonce_of_the_wrong_length),
        T(test_open_creates_home_0700_and_writes_nothing),
        T(test_queries_before_signup_are_enoaccount),
        T(test_whoami_reads_the_saved_account_and_pts),
        T(test_open_refuses_corrupt_state_and_remote_plain_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
