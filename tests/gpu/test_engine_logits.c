/* GPU end-to-end numerics: the CUDA engine's logits for the tiny Qwen3/Llama/GPT-2 models (bf16 weights) against
 * HF transformers in float64 (reference.safetensors), in the fp32 mode (limit 1e-4 row-relative, as on the CPU)
 * and the invariant mode (bf16 GEMM inputs, 4 layers: limit 5e-2, a first guess to replace by the measured
 * value), and bitwise equality of every row's logits between
 * one whole-sequence step (prefill) and token-by-token steps (decode). Skipped without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "policy/forward.h"
#include "policy/policy.h"

#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"
#include "rollout/engine.h"

#define MODELS BR_TEST_DATA "/models"
enum { L = 64 };

/* Runs row 0 of the reference ids through the engine: one prefill step (all L rows want logits) into pre, then
 * token by token into dec. */
static void run(const char *family, const char *mode, double limit) {
    char dir[512], ref_path[512];
    snprintf(dir, sizeof dir, "%s/%s/bf16", MODELS, family);
    snprintf(ref_path, sizeof ref_path, "%s/%s/reference.safetensors", MODELS, family);
    policy_weights *w = NULL;
    policy_st *ref = NULL;
    if (policy_weights_load(dir, &w) != BR_OK || policy_st_open(ref_path, &ref) != BR_OK) fail_msg("%s", br_last_error());
    const st_tensor *ids_t = policy_st_find(ref, "input_ids"), *lg_t = policy_st_find(ref, "logits_bf16_weights");
    assert_non_null(ids_t);
    assert_non_null(lg_t);
    const int32_t *ids = ids_t->data;
    const float *want = lg_t->data;
    const int V = w->cfg.vocab;
    rollout_engine *e = NULL;
    kern_mode km = KERN_MODE_INVARIANT;
    assert_int_equal(kern_mode_parse(mode, &km), 0);
    const rollout_engine_opts eo = {ROLLOUT_DEVICE_CUDA, km, L, 16, 16, NULL, NULL, br_tuning_default()};
    assert_int_equal(rollout_engine_create(w, &eo, &e), BR_OK);
    policy_kvcache *kv = rollout_engine_kv(e);
    rollout_sampling samp = {1.0f, 1.0f, 0, 0};
    rollout_row rows[L];
    rollout_row_out out[L];
    float *pre = malloc(sizeof(float) * L * V), *dec = malloc(sizeof(float) * L * V);
    int32_t pos[L];
    policy_seq seq, *sq[L];
    for (int t = 0; t < L; t++) {
        pos[t] = t;
        rows[t] = (rollout_row){t + 1 < L ? ids[t + 1] : 0, &samp, 0, t + 1};
    }
    assert_int_equal(policy_seq_init(kv, &seq), BR_OK);
    assert_int_equal(policy_kv_reserve(kv, &seq, L), BR_OK);
    for (int t = 0; t < L; t++) sq[t] = &seq;
    policy_batch b = {L, ids, pos, sq, NULL};
    assert_int_equal(rollout_engine_step(e, &b, rows, out), BR_OK);
    assert_int_equal(rollout_engine_last_logits(e, pre, L), BR_OK);
    policy_kv_release(kv, &seq);
    assert_int_equal(policy_kv_reserve(kv, &seq, L), BR_OK);
    for (int t = 0; t < L; t++) {
        policy_batch one = {1, ids + t, pos + t, sq, NULL};
        assert_int_equal(rollout_engine_step(e, &one, rows + t, out), BR_OK);
        assert_int_equal(rollout_engine_last_logits(e, dec + (size_t)t * V, 1), BR_OK);
    }
    assert_memory_equal(pre, dec, sizeof(float) * L * V);
    double worst = 0;
    for (int t = 0; t < L; t++) {
        double err = 0, mx = 0;
        for (int i = 0; i < V; i++) {
            err = fmax(err, fabs((double)pre[(size_t)t * V + i] - want[(size_t)t * V + i]));
            mx = fmax(mx, fabs((double)want[(size_t)t * V + i]));
        }
        worst = fmax(worst, err / mx);
    }
    printf("  %s bf16, --kernels %s: max row-relative error vs HF float64 %.3g (limit %.0e); prefill == decode "
           "bitwise for %d positions\n", family, mode, worst, limit, L);
    assert_true(worst <= limit);
    policy_kv_release(kv, &seq);
    policy_seq_free(&seq);
    free(pre);
    free(dec);
    rollout_engine_free(e);
    policy_st_free(ref);
    policy_weights_free(w);
}

static void test_logits(void **state) {
    (void)state;
    if (kern_cuda_device_count() == 0) skip();
    static const char *fam[] = {"tiny-qwen3", "tiny-llama", "tiny-gpt2"};
    for (int i = 0; i < 3; i++) {
        run(fam[i], "fp32", 1e-4);
        run(fam[i], "invariant", 5e-2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_logits)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
