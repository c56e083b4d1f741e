/* SPDX-License-Identifier: MIT */
/* Unit tests of text.h: username normalization and UTF-8 validation with
 * code point counting, including the ill-formed sequences of Unicode 15
 * table 3-7 that a lenient decoder would let through. */
#include "common/err.h"
#include "common/text.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Sentinel written into outputs to prove a failing call leaves them alone. */
#define UNTOUCHED_NAME "untouched"
#define UNTOUCHED_CHARS ((size_t)0xdeadbeef)

static int normalize(const char *name, char out[USERNAME_MAX + 1])
{
    memset(out, 0, USERNAME_MAX + 1);
    memcpy(out, UNTOUCHED_NAME, sizeof(UNTOUCHED_NAME));
    return username_normalize(name, out);
}

static void assert_username_ok(const char *name, const char *want)
{
    char out[USERNAME_MAX + 1];
    assert_int_equal(normalize(name, out), 0);
    assert_string_equal(out, want);
}

static void assert_username_bad(const char *name)
{
    char out[USERNAME_MAX + 1];
    assert_int_equal(normalize(name, out), PARLEY_EBAD_USERNAME);
    assert_string_equal(out, UNTOUCHED_NAME);
}

static void test_username_accepts_lowercase_digits_underscore(void **state)
{
    (void)state;
    assert_username_ok("alice", "alice");
    assert_username_ok("bob_42", "bob_42");
    assert_username_ok("___", "___");
    assert_username_ok("007", "007");
}

static void test_username_folds_ascii_case(void **state)
{
    (void)state;
    assert_username_ok("Alice", "alice");
    assert_username_ok("ALICE_B0B", "alice_b0b");
    assert_username_ok("@MiXeD", "mixed");
}

static void test_username_drops_one_leading_at(void **state)
{
    (void)state;
    assert_username_ok("@alice", "alice");
    assert_username_bad("@@alice");
    assert_username_bad("alice@");
    assert_username_bad("al@ice");
}

static void test_username_accepts_exactly_3_chars(void **state)
{
    (void)state;
    assert_username_ok("abc", "abc");
    assert_username_ok("@abc", "abc");
}

static void test_username_rejects_2_chars(void **state)
{
    (void)state;
    assert_username_bad("ab");
    assert_username_bad("@ab");
    assert_username_bad("a");
}

static void test_username_accepts_exactly_32_chars(void **state)
{
    (void)state;
    const char *n32 = "abcdefghijklmnopqrstuvwxyz012345";
    assert_int_equal(strlen(n32), 32);
    assert_username_ok(n32, n32);
    assert_username_ok("@ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", n32);
}

static void test_username_rejects_33_chars(void **state)
{
    (void)state;
    const char *n33 = "abcdefghijklmnopqrstuvwxyz0123456";
    assert_int_equal(strlen(n33), 33);
    assert_username_bad(n33);
    assert_username_bad("@abcdefghijklmnopqrstuvwxyz0123456");
    char longer[256];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_username_bad(longer);
}

static void test_username_rejects_bad_chars(void **state)
{
    (void)state;
    const char *bad[] = {
        "ali ce", "alice!", "ali-ce",  "ali.ce",  "alice\n", "\talice", "al/ice",
        "äbc",    "名前名", "abc\x7f", "abc\xff", "a+b+c",   "ab\\c",   "ab$c",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_username_bad(bad[i]);
}

static void test_username_rejects_empty_and_lone_at(void **state)
{
    (void)state;
    assert_username_bad("");
    assert_username_bad("@");
}

static void test_username_rejects_null(void **state)
{
    (void)state;
    assert_username_bad(NULL);
}

/* utf8_check on a byte string with an explicit length. */
static int check(const char *s, size_t len, size_t *chars)
{
    *chars = UNTOUCHED_CHARS;
    return utf8_check(s, len, chars);
}

static void assert_utf8_ok(const char *s, size_t len, size_t want_chars)
{
    size_t chars;
    assert_int_equal(check(s, len, &chars), 0);
    assert_int_equal(chars, want_chars);
}

static void assert_utf8_bad(const char *s, size_t len)
{
    size_t chars;
    assert_int_equal(check(s, len, &chars), PARLEY_EBAD_UTF8);
    assert_int_equal(chars, UNTOUCHED_CHARS);
}

#define OK(lit, n) assert_utf8_ok(lit, sizeof(lit) - 1, n)
#define BAD(lit) assert_utf8_bad(lit, sizeof(lit) - 1)

static void test_utf8_accepts_ascii_and_counts_bytes(void **state)
{
    (void)state;
    OK("hello, world", 12);
    OK("\x01\x7f", 2);
    OK("", 0);
}

static void test_utf8_accepts_2_byte_sequences(void **state)
{
    (void)state;
    OK("\xc2\x80", 1);          /* U+0080, the smallest 2-byte value */
    OK("\xc3\xa9t\xc3\xa9", 3); /* "été" */
    OK("\xdf\xbf", 1);          /* U+07FF */
}

static void test_utf8_accepts_3_byte_sequences(void **state)
{
    (void)state;
    OK("\xe0\xa0\x80", 1); /* U+0800 */
    OK("\xe2\x82\xac", 1); /* U+20AC euro sign */
    OK("\xed\x9f\xbf", 1); /* U+D7FF, just below the surrogates */
    OK("\xee\x80\x80", 1); /* U+E000, just above them */
    OK("\xef\xbf\xbf", 1); /* U+FFFF */
    OK("\xe5\x90\x8d\xe5\x89\x8d", 2);
}

static void test_utf8_accepts_4_byte_sequences(void **state)
{
    (void)state;
    OK("\xf0\x90\x80\x80", 1); /* U+10000 */
    OK("\xf0\x9f\x98\x80", 1); /* U+1F600 emoji */
    OK("\xf4\x8f\xbf\xbf", 1); /* U+10FFFF, the last code point */
    OK("a\xf0\x9f\x98\x80z", 3);
}

static void test_utf8_rejects_overlong_encodings(void **state)
{
    (void)state;
    BAD("\xc0\x80");         /* U+0000 in 2 bytes */
    BAD("\xc1\xbf");         /* U+007F in 2 bytes */
    BAD("\xe0\x80\x80");     /* U+0000 in 3 bytes */
    BAD("\xe0\x9f\xbf");     /* U+07FF in 3 bytes */
    BAD("\xf0\x80\x80\x80"); /* U+0000 in 4 bytes */
    BAD("\xf0\x8f\xbf\xbf"); /* U+FFFF in 4 bytes */
    BAD("\xc0\xaf");         /* the classic overlong '/' */
}

static void test_utf8_rejects_surrogates(void **state)
{
    (void)state;
    BAD("\xed\xa0\x80");             /* U+D800 */
    BAD("\xed\xbf\xbf");             /* U+DFFF */
    BAD("\xed\xa0\xbd\xed\xb8\x80"); /* a CESU-8 surrogate pair */
}

static void test_utf8_rejects_above_u10ffff(void **state)
{
    (void)state;
    BAD("\xf4\x90\x80\x80"); /* U+110000 */
    BAD("\xf5\x80\x80\x80");
    BAD("\xf7\xbf\xbf\xbf");
    BAD("\xf8\x88\x80\x80\x80"); /* old 5-byte form */
    BAD("\xfc\x84\x80\x80\x80\x80");
    BAD("\xfe");
    BAD("\xff");
}

static void test_utf8_rejects_truncated_sequences(void **state)
{
    (void)state;
    BAD("\xc3");
    BAD("\xe2\x82");
    BAD("\xe2");
    BAD("\xf0\x9f\x98");
    BAD("\xf0\x9f");
    BAD("\xf0");
    BAD("abc\xe2\x82");
    /* A sequence cut short by a following ASCII byte. */
    BAD("\xe2\x82z");
    BAD("\xf0\x9f\x98z");
    /* The length is what counts, not a NUL terminator: "é" cut at 1 byte. */
    assert_utf8_bad("\xc3\xa9", 1);
}

static void test_utf8_rejects_nul(void **state)
{
    (void)state;
    assert_utf8_bad("\0", 1);
    assert_utf8_bad("ab\0cd", 5);
    assert_utf8_bad("ab\0", 3);
}

static void test_utf8_rejects_lone_continuation_bytes(void **state)
{
    (void)state;
    BAD("\x80");
    BAD("\xbf");
    BAD("a\x80");
    BAD("\xc3\xa9\xa9"); /* one continuation too many */
    BAD("\xe2\x82\xac\x80");
}

static void test_utf8_rejects_bad_continuation_bytes(void **state)
{
    (void)state;
    BAD("\xc3\x28");
    BAD("\xe2\x28\xa1");
    BAD("\xe2\x82\x28");
    BAD("\xf0\x28\x8c\xbc");
    BAD("\xf0\x90\x28\xbc");
    BAD("\xf0\x9f\x98\xc3");
}

static void test_utf8_counts_4096_emoji_as_4096_chars(void **state)
{
    (void)state;
    const char emoji[] = "\xf0\x9f\x98\x80";
    size_t len = 4096 * 4;
    char *s = malloc(len);
    assert_non_null(s);
    for (size_t i = 0; i < 4096; i++)
        memcpy(s + i * 4, emoji, 4);
    assert_utf8_ok(s, len, 4096);
    assert_int_equal(4096, PARLEY_TEXT_MAX_CHARS);
    /* One more is 4097 characters: the server's TEXT_TOO_LONG boundary. */
    char *t = malloc(len + 4);
    assert_non_null(t);
    memcpy(t, s, len);
    memcpy(t + len, emoji, 4);
    assert_utf8_ok(t, len + 4, 4097);
    /* A bad byte at the very end is still found. */
    t[len + 3] = 'x';
    assert_utf8_bad(t, len + 4);
    free(t);
    free(s);
}

static void test_utf8_counts_mixed_widths(void **state)
{
    (void)state;
    /* 'a', 'é', '€', '😀': 1 + 2 + 3 + 4 bytes, 4 characters. */
    OK("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_username_accepts_lowercase_digits_underscore),
        cmocka_unit_test(test_username_folds_ascii_case),
        cmocka_unit_test(test_username_drops_one_leading_at),
        cmocka_unit_test(test_username_accepts_exactly_3_chars),
        cmocka_unit_test(test_username_rejects_2_chars),
        cmocka_unit_test(test_username_accepts_exactly_32_chars),
        cmocka_unit_test(test_username_rejects_33_chars),
        cmocka_unit_test(test_username_rejects_bad_chars),
        cmocka_unit_test(test_username_rejects_empty_and_lone_at),
        cmocka_unit_test(test_username_rejects_null),
        cmocka_unit_test(test_utf8_accepts_ascii_and_counts_bytes),
        cmocka_unit_test(test_utf8_accepts_2_byte_sequences),
        cmocka_unit_test(test_utf8_accepts_3_byte_sequences),
        cmocka_unit_test(test_utf8_accepts_4_byte_sequences),
        cmocka_unit_test(test_utf8_rejects_overlong_encodings),
        cmocka_unit_test(test_utf8_rejects_surrogates),
        cmocka_unit_test(test_utf8_rejects_above_u10ffff),
        cmocka_unit_test(test_utf8_rejects_truncated_sequences),
        cmocka_unit_test(test_utf8_rejects_nul),
        cmocka_unit_test(test_utf8_rejects_lone_continuation_bytes),
        cmocka_unit_test(test_utf8_rejects_bad_continuation_bytes),
        cmocka_unit_test(test_utf8_counts_4096_emoji_as_4096_chars),
        cmocka_unit_test(test_utf8_counts_mixed_widths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
