/* SPDX-License-Identifier: MIT */
/* config.h: defaults, parsing, every problem reported with file and line,
 * and whole-configuration validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/err.h"
#include "core/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/parley-config-test-XXXXXX";

static const char *write_conf(const char *text)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int load_text(struct config *cfg, const char *text, char *errbuf, size_t cap)
{
    snprintf(path, sizeof(path), "/tmp/parley-config-test-XXXXXX");
    write_conf(text);
    FILE *err = fmemopen(errbuf, cap, "w");
    assert_non_null(err);
    config_defaults(cfg);
    int rc = config_load(cfg, path, err);
    fclose(err);
    unlink(path);
    return rc;
}

static void test_defaults_validate(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    assert_int_equal(config_validate(&cfg, NULL), 0);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8443);
    assert_int_equal(cfg.max_frame_bytes, 1024 * 1024);
    assert_int_equal(cfg.max_text_chars, 4096);
}

static void test_repo_example_config_is_valid(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    assert_int_equal(config_load(&cfg, "parleyd.conf", stderr), 0);
    assert_int_equal(config_validate(&cfg, stderr), 0);
}

static void test_load_sets_values(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024] = "";
    int rc = load_text(&cfg,
                       "[server]\nlisten = 127.0.0.2:0\nplaintext = true\nthreads = 3\n"
                       "[limits]\nmax_frame_bytes = 2048\n[ratelimit]\naccount_rate = 2.5\n",
                       err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    assert_string_equal(cfg.listen_host, "127.0.0.2");
    assert_int_equal(cfg.listen_port, 0);
    assert_true(cfg.plaintext);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.max_frame_bytes, 2048);
    assert_true(cfg.account_rate == 2.5);
}

/* [store] checkpoint_mib: 128 by default, 1-65536. */
static void test_store_checkpoint_size(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    assert_int_equal(cfg.store_checkpoint_mib, 128);
    char err[1024] = "";
    assert_int_equal(load_text(&cfg, "[store]\ncheckpoint_mib = 16\n", err, sizeof(err)), 0);
    assert_int_equal(cfg.store_checkpoint_mib, 16);
    err[0] = '\0';
    assert_int_equal(load_text(&cfg, "[store]\ncheckpoint_mib = 0\n", err, sizeof(err)),
                     PARLEY_ECONFIG);
    assert_non_null(strstr(err, ":2: [store] checkpoint_mib:"));
    err[0] = '\0';
    assert_int_equal(load_text(&cfg, "[store]\ncheckpoint_mib = 65537\n", err, sizeof(err)),
                     PARLEY_ECONFIG);
    assert_non_null(strstr(err, ":2: [store] checkpoint_mib:"));
}

static void test_every_problem_reported_with_line(void **state)
{
    (void)state;
    struct config cfg;
    char err[2048] = "";
    int rc = load_text(&cfg,
                       "[server]\nlisten = nowhere\n"     /* line 2 */
                       "bogus = 1\n"                      /* line 3 */
                       "[limits]\nmax_text_chars = 5000\n" /* line 5 */
                       "max_frame_bytes = -1\n",          /* line 6 */
                       err, sizeof(err));
    assert_int_equal(rc, PARLEY_ECONFIG);
    assert_non_null(strstr(err, ":2: [server] listen:"));
    assert_non_null(strstr(err, ":3: [server] bogus: unknown key"));
    assert_non_null(strstr(err, ":5: [limits] max_text_chars:"));
    assert_non_null(strstr(err, ":6: [limits] max_frame_bytes:"));
}

static void test_syntax_error_reported(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024] = "";
    assert_int_equal(load_text(&cfg, "[server\nlisten\n", err, sizeof(err)), PARLEY_ECONFIG);
    assert_non_null(strstr(err, "syntax error"));
}

static void test_missing_file_reported(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    char err[512] = "";
    FILE *f = fmemopen(err, sizeof(err), "w");
    assert_int_equal(config_load(&cfg, "/nonexistent/parley.conf", f), PARLEY_ECONFIG);
    fclose(f);
    assert_non_null(strstr(err, "cannot open"));
}

static void test_plaintext_refused_off_loopback(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    cfg.plaintext = true;
    assert_int_equal(config_set_listen(&cfg, "0.0.0.0:8080"), 0);
    assert_int_equal(config_validate(&cfg, NULL), PARLEY_ECONFIG);
    assert_int_equal(config_set_listen(&cfg, "[::1]:8080"), 0);
    assert_int_equal(config_validate(&cfg, NULL), 0);
    assert_int_equal(config_set_listen(&cfg, "127.9.9.9:1"), 0);
    assert_int_equal(config_validate(&cfg, NULL), 0);
}

static void test_listen_parsing(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    assert_int_equal(config_set_listen(&cfg, "localhost:0"), 0);
    assert_int_equal(config_set_listen(&cfg, "[::1]:443"), 0);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 443);
    assert_int_equal(config_set_listen(&cfg, "127.0.0.1"), PARLEY_EINVAL);
    assert_int_equal(config_set_listen(&cfg, "127.0.0.1:65536"), PARLEY_EINVAL);
    assert_int_equal(config_set_listen(&cfg, "127.0.0.1:x"), PARLEY_EINVAL);
    assert_int_equal(config_set_listen(&cfg, "example.com:80"), PARLEY_EINVAL);
    assert_int_equal(config_set_listen(&cfg, ":80"), PARLEY_EINVAL);
}

static void test_tls_files_must_come_in_pairs(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "parleyd.conf");
    assert_int_equal(config_validate(&cfg, NULL), PARLEY_ECONFIG);
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "/nonexistent/key.pem");
    assert_int_equal(config_validate(&cfg, NULL), PARLEY_ECONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_validate),
        cmocka_unit_test(test_repo_example_config_is_valid),
        cmocka_unit_test(test_load_sets_values),
        cmocka_unit_test(test_store_checkpoint_size),
        cmocka_unit_test(test_every_problem_reported_with_line),
        cmocka_unit_test(test_syntax_error_reported),
        cmocka_unit_test(test_missing_file_reported),
        cmocka_unit_test(test_plaintext_refused_off_loopback),
        cmocka_unit_test(test_listen_parsing),
        cmocka_unit_test(test_tls_files_must_come_in_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
