/* SPDX-License-Identifier: MIT */
/* The bump allocator: alignment, growth past the first block, reset keeps
 * the first block and frees the rest, contents stay put until reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

static void test_alignment_and_distinct_memory(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256);
    unsigned char *p[20];
    for (int i = 0; i < 20; i++) {
        p[i] = arena_alloc(&a, (size_t)i * 3 + 1);
        assert_int_equal((uintptr_t)p[i] % alignof(max_align_t), 0);
        memset(p[i], i, (size_t)i * 3 + 1);
    }
    /* Nothing overlapped: every allocation still holds its own bytes. */
    for (int i = 0; i < 20; i++)
        for (int k = 0; k < i * 3 + 1; k++)
            assert_int_equal(p[i][k], i);
    assert_non_null(arena_alloc(&a, 0));
    arena_deinit(&a);
}

static void test_grows_past_the_first_block_and_reset_keeps_it(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 128);
    void *first = arena_alloc(&a, 16);
    unsigned char *big = arena_alloc(&a, 10000); /* larger than any block so far */
    memset(big, 0xab, 10000);
    unsigned char *after = arena_alloc(&a, 100);
    memset(after, 0xcd, 100);
    assert_int_equal(big[9999], 0xab);
    assert_true(a.used >= 16 + 10000 + 100);
    arena_reset(&a);
    assert_int_equal(a.used, 0);
    /* The first block is reused: the first allocation lands where it did. */
    assert_ptr_equal(arena_alloc(&a, 16), first);
    arena_deinit(&a);
    assert_null(a.first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_distinct_memory),
        cmocka_unit_test(test_grows_past_the_first_block_and_reset_keeps_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
