/* Shared prompt KV on the CUDA engine: kern_cuda_kv_copy_page against the CPU engine's memcpy of one page of every
 * layer's K and V, and rollouts with sharing bitwise equal to rollouts without it (rollout_run on --device cuda,
 * invariant and fp32 modes, stories260K and tiny-qwen3, n = 8, page sizes 1, 16, 13 (divides the shared 39 tokens of
 * a 40-token prompt) and 7, max_seqs 3 (a group split over admissions) and 32). Skipped without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rollout/scheduler.h"

#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"

#define STORIES BR_TEST_DATA "/../../configs/models/stories260K"
#define QWEN3 BR_TEST_DATA "/models/tiny-qwen3/bf16"

static void test_copy_page_kernel(void **state) {
    (void)state;
    if (kern_cuda_device_count() == 0) skip();
    /* page 7, 2 KV heads, hd 16; the same geometry with f32 (4-byte) and bf16 (2-byte) elements */
    const int n_layers = 3, n_pages = 5;
    const int64_t page = 7 * 2 * 16, layer = n_pages * page, all = n_layers * layer * 4; /* bytes of the f32 cache */
    for (int64_t es = 4; es >= 2; es -= 2) {
        unsigned char *hk = malloc((size_t)all), *hv = malloc((size_t)all), *gk = malloc((size_t)all),
                      *gv = malloc((size_t)all);
        assert_true(hk && hv && gk && gv);
        for (int64_t i = 0; i < all; i++) hk[i] = (unsigned char)(i * 7 + 1), hv[i] = (unsigned char)(i * 13 + 5);
        void *dk = kern_cuda_malloc((size_t)all), *dv = kern_cuda_malloc((size_t)all);
        kern_cuda_upload(dk, hk, (size_t)all);
        kern_cuda_upload(dv, hv, (size_t)all);
        kern_cuda_kv_copy_page(dk, dv, n_layers, layer * es, page * es, 3, 1, (cudaStream_t)0);
        kern_cuda_stream_sync((cudaStream_t)0);
        kern_cuda_download(gk, dk, (size_t)all);
        kern_cuda_download(gv, dv, (size_t)all);
        for (int l = 0; l < n_layers; l++) { /* the reference: engine_cpu.c's memcpy of one page of each layer */
            memcpy(hk + (l * layer + 3 * page) * es, hk + (l * layer + 1 * page) * es, (size_t)(page * es));
            memcpy(hv + (l * layer + 3 * page) * es, hv + (l * layer + 1 * page) * es, (size_t)(page * es));
        }
        assert_memory_equal(gk, hk, (size_t)all); /* the copied pages, and every other byte untouched */
        assert_memory_equal(gv, hv, (size_t)all);
        kern_cuda_free(dk);
        kern_cuda_free(dv);
        free(hk);
        free(hv);
        free(gk);
        free(gv);
    }
}

enum { NP = 4, N = 8, NJ = NP * N };
static int32_t PROMPTS[NP][40];
static const int LENS[NP] = {40, 5, 17, 9};
static const int32_t STOP[] = {2, 426};

static void run_model(const char *dir) {
    policy_weights *w = NULL;
    if (policy_weights_load(dir, &w) != BR_OK) fail_msg("%s", br_last_error());
    for (int p = 0; p < NP; p++) {
        PROMPTS[p][0] = 1;
        for (int i = 1; i < 40; i++) PROMPTS[p][i] = 3 + (p * 131 + i * 37) % 500;
    }
    rollout_job jobs[NJ];
    for (int k = 0; k < NJ; k++) { /* the generate driver's layout: a prompt's samples in a row */
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k].sample_id = k;
        jobs[k].prompt = PROMPTS[k / N];
        jobs[k].prompt_len = LENS[k / N];
        jobs[k].max_new = 24 + k % N;
        jobs[k].sampling = (rollout_sampling){k / N == 3 ? 0.0f : 1.0f, k / N == 1 ? 0.9f : 1.0f, 0, 5};
        jobs[k].stop_ids = STOP;
        jobs[k].n_stop = 2;
    }
    static const kern_mode modes[] = {KERN_MODE_INVARIANT, KERN_MODE_FP32};
    static const int pages[] = {1, 16, 13, 7}, seqs[] = {3, 32};
    rollout_result off[NJ], on[NJ];
    for (int m = 0; m < 2; m++)
        for (int ip = 0; ip < 4; ip++)
            for (int is = 0; is < 2; is++) {
                rollout_run_stats st;
                rollout_sched_opts o = {.max_batch_tokens = 64, .max_seqs = seqs[is], .prefill_chunk = 16,
                                        .page_size = pages[ip], .device = ROLLOUT_DEVICE_CUDA, .mode = modes[m],
                                        .tuning = br_tuning_default(), .stats = &st,
                                        .sizes_given = ROLLOUT_GIVEN_MAX_SEQS | ROLLOUT_GIVEN_BATCH_TOKENS};
                o.no_share_prompt_kv = 1;
                if (rollout_run(w, &o, jobs, NJ, off, NULL, NULL) != BR_OK) fail_msg("%s", br_last_error());
                o.no_share_prompt_kv = 0;
                if (rollout_run(w, &o, jobs, NJ, on, NULL, NULL) != BR_OK) fail_msg("%s", br_last_error());
                assert_int_equal(st.prompt_groups, NP);
                for (int i = 0; i < NJ; i++) {
                    assert_int_equal(off[i].n, on[i].n);
                    assert_int_equal(off[i].finish, on[i].finish);
                    assert_memory_equal(off[i].tokens, on[i].tokens, 4 * (size_t)off[i].n);
                    assert_memory_equal(off[i].logprobs, on[i].logprobs, 4 * (size_t)off[i].n);
                    assert_memory_equal(off[i].digests, on[i].digests, 8 * (size_t)off[i].n);
                    rollout_result_free(&off[i]);
                    rollout_result_free(&on[i]);
                }
            }
    printf("  %s: shared == unshared on the GPU (invariant, fp32; page sizes 1, 16, 13, 7; max_seqs 3, 32)\n", dir);
    policy_weights_free(w);
}

static void test_rollouts(void **state) {
    (void)state;
    if (kern_cuda_device_count() == 0) skip();
    run_model(STORIES);
    run_model(QWEN3);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_copy_page_kernel), cmocka_unit_test(test_rollouts)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
