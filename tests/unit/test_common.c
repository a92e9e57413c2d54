/* Tests for common/: error messages, exact 16-bit float conversions, hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/br.h"

static void test_fail_message(void **state) {
    (void)state;
    assert_int_equal(br_fail(BR_EINVAL, "%s: field '%s' = %d", "cfg.json", "dim", -1), BR_EINVAL);
    assert_string_equal(br_last_error(), "cfg.json: field 'dim' = -1");
    br_fail_ctx(BR_EINVAL, "loading %s", "DIR");
    assert_string_equal(br_last_error(), "loading DIR: cfg.json: field 'dim' = -1");
    assert_int_equal(br_exit_code(BR_EINVAL), 2);
    assert_int_equal(br_exit_code(BR_ERUNTIME), 3);
}

static void test_f16(void **state) {
    (void)state;
    /* values from IEEE 754 binary16 definitions */
    assert_true(br_f16_to_f32(0x3c00) == 1.0f);
    assert_true(br_f16_to_f32(0xc000) == -2.0f);
    assert_true(br_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(br_f16_to_f32(0x0001) == 5.9604644775390625e-08f); /* smallest subnormal 2^-24 */
    assert_true(br_f16_to_f32(0x03ff) == 6.097555160522461e-05f);  /* largest subnormal */
    assert_true(br_f16_to_f32(0x3555) == 0.333251953125f);
}

static void test_f32_to_f16(void **state) {
    (void)state;
    assert_int_equal(br_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(br_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(br_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(br_f32_to_f16(65520.0f), 0x7c00);          /* rounds up to inf */
    assert_int_equal(br_f32_to_f16(5.9604644775390625e-08f), 0x0001);
    assert_int_equal(br_f32_to_f16(2.98023223876953125e-08f), 0x0000); /* half the smallest subnormal: tie to even 0 */
    assert_int_equal(br_f32_to_f16(1.00048828125f), 0x3c00);    /* 1 + 2^-11: tie -> even */
    assert_int_equal(br_f32_to_f16(1.00146484375f), 0x3c02);    /* 1 + 3*2^-11: tie -> even (up) */
    /* every f16 value survives the round trip */
    for (uint32_t h = 0; h < 0x7c00; h++) assert_int_equal(br_f32_to_f16(br_f16_to_f32((uint16_t)h)), h);
}

static void test_bf16(void **state) {
    (void)state;
    assert_true(br_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(br_bf16_to_f32(0xc040) == -3.0f);
    assert_int_equal(br_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is a tie between 0x3f80 and 0x3f81: round to even -> 0x3f80 */
    assert_int_equal(br_f32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(br_f32_to_bf16(1.01171875f), 0x3f82); /* tie 0x3f81/0x3f82 -> even */
}

static void test_hash(void **state) {
    (void)state;
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4};
    assert_true(br_hash64(a, sizeof a, 0) == br_hash64(b, sizeof b, 0));
    b[3] = -0.0f * 0 + 4.0000005f;
    assert_true(br_hash64(a, sizeof a, 0) != br_hash64(b, sizeof b, 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_message),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_f32_to_f16),
        cmocka_unit_test(test_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
