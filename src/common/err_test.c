/* SPDX-License-Identifier: MIT */
/* Unit tests of the error table (err.h): wire numbers round-trip, unknown
 * numbers never read as success, names and texts always exist, and
 * docs/PROTOCOL.md documents every code. */
#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct err_entry {
    const char *name; /* "EINVAL", as written in PARLEY_ERRNO_MAP */
    int code;         /* the negative PARLEY_E* value */
    unsigned wire;    /* the positive number on the wire */
    const char *text;
};

static const struct err_entry entries[] = {
#define X(name, num, text) {#name, PARLEY_##name, num, text},
    PARLEY_ERRNO_MAP(X)
#undef X
};

static void test_every_code_round_trips_through_wire(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        const struct err_entry *e = &entries[i];
        assert_int_equal(e->code, -(int)e->wire);
        assert_int_equal(err_to_wire(e->code), e->wire);
        assert_int_equal(err_from_wire(e->wire), e->code);
        assert_int_equal(err_from_wire(err_to_wire(e->code)), e->code);
    }
}

static void test_wire_numbers_are_unique_and_nonzero(void **state)
{
    (void)state;
    size_t n = sizeof(entries) / sizeof(entries[0]);
    for (size_t i = 0; i < n; i++) {
        assert_true(entries[i].wire > 0);
        for (size_t k = i + 1; k < n; k++) {
            assert_int_not_equal(entries[i].wire, entries[k].wire);
            assert_string_not_equal(entries[i].name, entries[k].name);
        }
    }
}

static void test_success_maps_to_wire_zero_and_back(void **state)
{
    (void)state;
    assert_int_equal(err_to_wire(0), 0);
    assert_int_equal(err_from_wire(0), 0);
    /* A positive value is not an error code; it must not invent one. */
    assert_int_equal(err_to_wire(5), 0);
}

static void test_unknown_wire_number_maps_to_eproto(void **state)
{
    (void)state;
    unsigned past_table = 0;
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
        past_table = entries[i].wire > past_table ? entries[i].wire : past_table;
    past_table++; /* the first number the table does not name yet */
    unsigned unknown[] = {past_table, 999, 1000, 65535, 0x7fffffffu, 0x80000000u, 0xffffffffu};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        assert_int_equal(err_from_wire(unknown[i]), PARLEY_EPROTO);
}

static void test_names_and_texts_match_the_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        const struct err_entry *e = &entries[i];
        assert_string_equal(err_name(e->code), e->name);
        assert_string_equal(err_text(e->code), e->text);
        assert_true(strlen(e->text) > 0);
    }
    assert_string_equal(err_name(PARLEY_ENOUSER), "ENOUSER");
    assert_string_equal(err_text(PARLEY_ENOUSER), "no such user");
}

static void test_name_and_text_are_never_null(void **state)
{
    (void)state;
    int codes[] = {0, 1, 42, -33, -99, -1000, 1000000, -1000000, INT32_MIN + 1, INT32_MAX};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(err_name(codes[i]));
        assert_non_null(err_text(codes[i]));
    }
    for (int c = -200; c <= 200; c++) {
        assert_non_null(err_name(c));
        assert_non_null(err_text(c));
    }
    assert_string_equal(err_name(0), "OK");
    assert_string_equal(err_name(-999), "UNKNOWN");
    assert_string_equal(err_text(-999), "unknown error");
}

/* Reads a whole file into a NUL-terminated buffer, or fails the test. */
static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size >= 0);
    assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    buf[size] = '\0';
    fclose(fp);
    return buf;
}

static void test_protocol_doc_lists_every_error_code(void **state)
{
    (void)state;
    const char *root = getenv("PARLEY_SOURCE_DIR");
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/docs/PROTOCOL.md", root && *root ? root : ".");
    assert_true(n > 0 && (size_t)n < sizeof(path));
    char *doc = read_file(path);

    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        char token[64];
        n = snprintf(token, sizeof(token), "`%s`", entries[i].name);
        assert_true(n > 0 && (size_t)n < sizeof(token));
        if (!strstr(doc, token))
            fail_msg("docs/PROTOCOL.md does not document %s (wire %u)", token, entries[i].wire);
        n = snprintf(token, sizeof(token), "`%u`", entries[i].wire);
        assert_true(n > 0 && (size_t)n < sizeof(token));
        if (!strstr(doc, token))
            fail_msg("docs/PROTOCOL.md does not give the wire number %s of %s", token,
                     entries[i].name);
    }
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_round_trips_through_wire),
        cmocka_unit_test(test_wire_numbers_are_unique_and_nonzero),
        cmocka_unit_test(test_success_maps_to_wire_zero_and_back),
        cmocka_unit_test(test_unknown_wire_number_maps_to_eproto),
        cmocka_unit_test(test_names_and_texts_match_the_table),
        cmocka_unit_test(test_name_and_text_are_never_null),
        cmocka_unit_test(test_protocol_doc_lists_every_error_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
