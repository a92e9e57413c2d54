/* Tests for common/: error messages, exact 16-bit float conversions, hashing, the BITROLL_* switches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/br.h"
#include "common/tuning.h"

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

/* The 0/1 switches of common/tuning.h: variable -> field. */
static const struct {
    const char *var;
    size_t off;
} tuning_flags[] = {
    {"BITROLL_CUDA_GRAPHS", offsetof(br_tuning, cuda_graphs)},
    {"BITROLL_CUDA_PROFILE", offsetof(br_tuning, cuda_profile)},
    {"BITROLL_PDL", offsetof(br_tuning, pdl)},
    {"BITROLL_GEMM_SHORT", offsetof(br_tuning, gemm_short)},
    {"BITROLL_GEMM_ROWPAR_FUSED", offsetof(br_tuning, gemm_rowpar_fused)},
    {"BITROLL_GEMM_WGMMA", offsetof(br_tuning, gemm_wgmma)},
    {"BITROLL_GEMM_SMALL_TMA", offsetof(br_tuning, gemm_small_tma)},
    {"BITROLL_GEMM_SMALL_RX", offsetof(br_tuning, gemm_small_rx)},
    {"BITROLL_SHARE_GPUS", offsetof(br_tuning, share_gpus)},
    {"BITROLL_NCCL", offsetof(br_tuning, nccl)},
    {"BITROLL_WEIGHTS_BCAST", offsetof(br_tuning, weights_bcast)},
};

/* Field by field (the struct has padding bytes). */
static void tuning_equal(const br_tuning *a, const br_tuning *b) {
    assert_int_equal(a->cuda_graphs, b->cuda_graphs);
    assert_int_equal(a->cuda_profile, b->cuda_profile);
    assert_int_equal(a->pdl, b->pdl);
    assert_int_equal(a->gemm_short, b->gemm_short);
    assert_int_equal(a->gemm_rowpar_fused, b->gemm_rowpar_fused);
    assert_int_equal(a->gemm_wgmma, b->gemm_wgmma);
    assert_int_equal(a->gemm_small_tma, b->gemm_small_tma);
    assert_int_equal(a->gemm_small_rx, b->gemm_small_rx);
    assert_int_equal(a->attn_decode, b->attn_decode);
    assert_int_equal(a->share_gpus, b->share_gpus);
    assert_int_equal(a->nccl, b->nccl);
    assert_int_equal(a->weights_bcast, b->weights_bcast);
    assert_int_equal(a->inject_failure_rank, b->inject_failure_rank);
    assert_int_equal(a->inject_kill_after_records, b->inject_kill_after_records);
    assert_int_equal(a->write_piece_bytes, b->write_piece_bytes);
    assert_int_equal(a->comm_timeout_s, b->comm_timeout_s);
    assert_int_equal(a->h5_guard_s, b->h5_guard_s);
}

static void tuning_unset_all(void) {
    for (size_t i = 0; i < sizeof tuning_flags / sizeof tuning_flags[0]; i++) unsetenv(tuning_flags[i].var);
    unsetenv("BITROLL_ATTN_DECODE");
}

/* Defaults as tuning.h documents them; each 0/1 switch read as 0 and 1 into its own field only; any other value
 * refused with the variable and the value in the message; the JSON names every switch with its value. */
static void test_tuning_env(void **state) {
    (void)state;
    tuning_unset_all();
    br_tuning t;
    assert_int_equal(br_tuning_from_env(&t), BR_OK);
    assert_int_equal(t.cuda_graphs, 1);
    assert_int_equal(t.cuda_profile, 0);
    assert_int_equal(t.pdl, 1);
    assert_int_equal(t.gemm_short, 1);
    assert_int_equal(t.gemm_rowpar_fused, 1);
    assert_int_equal(t.gemm_wgmma, 1);
    assert_int_equal(t.gemm_small_tma, 1);
    assert_int_equal(t.gemm_small_rx, 1);
    assert_int_equal(t.attn_decode, BR_ATTN_DECODE_AUTO);
    assert_int_equal(t.share_gpus, 0);
    assert_int_equal(t.nccl, 1);
    assert_int_equal(t.weights_bcast, 1);
    assert_int_equal(t.inject_failure_rank, -1);
    const br_tuning def = t;
    for (size_t i = 0; i < sizeof tuning_flags / sizeof tuning_flags[0]; i++) {
        const char *var = tuning_flags[i].var;
        for (int v = 0; v <= 1; v++) {
            setenv(var, v ? "1" : "0", 1);
            assert_int_equal(br_tuning_from_env(&t), BR_OK);
            br_tuning want = def;
            *(int *)((char *)&want + tuning_flags[i].off) = v;
            tuning_equal(&t, &want);
        }
        setenv(var, "yes", 1);
        br_tuning kept = def;
        assert_int_equal(br_tuning_from_env(&kept), BR_EINVAL);
        tuning_equal(&kept, &def); /* *out untouched on error */
        assert_non_null(strstr(br_last_error(), var));
        assert_non_null(strstr(br_last_error(), "'yes'"));
        unsetenv(var);
    }
    setenv("BITROLL_ATTN_DECODE", "walk", 1);
    assert_int_equal(br_tuning_from_env(&t), BR_OK);
    assert_int_equal(t.attn_decode, BR_ATTN_DECODE_WALK);
    setenv("BITROLL_ATTN_DECODE", "parallel", 1);
    assert_int_equal(br_tuning_from_env(&t), BR_OK);
    assert_int_equal(t.attn_decode, BR_ATTN_DECODE_PARALLEL);
    setenv("BITROLL_ATTN_DECODE", "fast", 1);
    assert_int_equal(br_tuning_from_env(&t), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "BITROLL_ATTN_DECODE='fast'"));
    unsetenv("BITROLL_ATTN_DECODE");

    setenv("BITROLL_GEMM_WGMMA", "0", 1);
    setenv("BITROLL_PDL", "0", 1);
    assert_int_equal(br_tuning_from_env(&t), BR_OK);
    char json[1024];
    br_tuning_json(&t, json, sizeof json);
    assert_string_equal(json, "{\"cuda_graphs\":1,\"cuda_profile\":0,\"pdl\":0,\"gemm_short\":1,\"gemm_rowpar_fused\":1,"
                              "\"gemm_wgmma\":0,\"gemm_small_tma\":1,\"gemm_small_rx\":1,\"attn_decode\":\"auto\",\"share_gpus\":0,"
                              "\"nccl\":1,\"weights_bcast\":1,\"inject_failure_rank\":-1}");
    tuning_unset_all();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_message),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_f32_to_f16),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_tuning_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
