/* Shared prompt KV on the CUDA engine: kern_cuda_kv_copy_page against the CPU engine's memcpy of one page of every
 * layer's K and V, and rollouts with sharing bitwise equal to rollouts without it (rollout_run on --device cuda,
 * invariant and fp32 modes, stories260K and tiny-qwen3, n = 8, page sizes 1, 16, 13 (divides the shared 39 tokens of
 * a 40-token prompt) and 7, max_seqs 3 (a group split over admissions) and 32). Skipped without a GPU. */
#include <math.h>
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

/* Shared-prefix decode (kern_cuda_attn_decode_casc_bf16) == the plain fused decode (kern_cuda_attn_decode_fused_bf16),
 * bitwise: f32 and bf16 outputs and the cache after the rows' own K/V are written. Rows 0-2 share 64 keys (pages 0-3),
 * row 3 is alone, rows 4 .. 4 + cap - 1 share 96 keys (cap = kern_cuda_attn_casc_max_rows: the largest group), the
 * last two rows share 32 keys; positions differ within groups (the prefix ends inside or at a page, windows start
 * anywhere). Head configurations G = 1, 2, 4, 8 and head dims 32 .. 256. */
static uint32_t g_rng = 12345u;
static float frand_sym(void) { /* in [-1, 1) */
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)(g_rng >> 8) / 8388608.0f - 1.0f;
}
static uint16_t bf16_of(float f) { /* round to nearest even (finite values) */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void test_casc_decode_kernel(void **state) {
    (void)state;
    if (kern_cuda_device_count() == 0) skip();
    static const int cfgs[][3] = {{16, 8, 128}, {32, 8, 128}, {8, 8, 64}, {4, 2, 256}, {4, 2, 32}, {16, 2, 64}};
    const int P = 16, NPAGE = 400;
    int bad = 0;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const int H = cfgs[ci][0], KV = cfgs[ci][1], hd = cfgs[ci][2], cap = kern_cuda_attn_casc_max_rows(H, KV);
        assert_true(cap >= 2);
        const int M = 4 + cap + 2;
        int32_t keys[32] = {0}, n[32] = {0}, pos[32], ptoff[32], pages[32 * 20];
        int np = 0, next = 0;
        for (int m = 0; m < M; m++) { /* groups: 0-2 (64 keys), 4 .. 4 + cap - 1 (96), the last two (32) */
            const int g0 = m < 3 ? 0 : m == 3 ? 3 : m < 4 + cap ? 4 : 4 + cap;
            const int gk = m < 3 ? 64 : m == 3 ? 0 : m < 4 + cap ? 96 : 32;
            keys[m] = gk;
            if (m == g0 && m != 3) n[m] = m < 3 ? 3 : m < 4 + cap ? cap : 2;
            pos[m] = gk + 1 + (m * 37) % 150; /* own keys after the prefix: 2 .. 150 */
            ptoff[m] = np;
            const int need = (pos[m] + 1 + P - 1) / P, shared_pages = gk / P;
            for (int i = 0; i < need; i++)
                pages[np + i] = i < shared_pages && m != g0 ? pages[ptoff[g0] + i] : next++;
            np += need;
        }
        assert_true(next <= NPAGE);
        const size_t cache = (size_t)NPAGE * P * KV * hd, nq = (size_t)M * H * hd, nkv = (size_t)M * KV * hd;
        uint16_t *hc = malloc(cache * 2), *hv = malloc(cache * 2);
        float *q = malloc(nq * 4), *kn = malloc(nkv * 4), *vn = malloc(nkv * 4);
        for (size_t i = 0; i < cache; i++) hc[i] = bf16_of(2 * frand_sym()), hv[i] = bf16_of(frand_sym());
        for (size_t i = 0; i < nq; i++) q[i] = 2 * frand_sym();
        for (size_t i = 0; i < nkv; i++) kn[i] = 2 * frand_sym(), vn[i] = frand_sym();
        uint16_t *kA = kern_cuda_malloc(cache * 2), *vA = kern_cuda_malloc(cache * 2), *kB = kern_cuda_malloc(cache * 2),
                 *vB = kern_cuda_malloc(cache * 2);
        kern_cuda_upload(kA, hc, cache * 2), kern_cuda_upload(kB, hc, cache * 2);
        kern_cuda_upload(vA, hv, cache * 2), kern_cuda_upload(vB, hv, cache * 2);
        float *dq = kern_cuda_malloc(nq * 4), *dkn = kern_cuda_malloc(nkv * 4), *dvn = kern_cuda_malloc(nkv * 4);
        kern_cuda_upload(dq, q, nq * 4), kern_cuda_upload(dkn, kn, nkv * 4), kern_cuda_upload(dvn, vn, nkv * 4);
        int32_t *dpages = kern_cuda_malloc((size_t)np * 4), *dpt = kern_cuda_malloc(M * 4), *dpos = kern_cuda_malloc(M * 4),
                *dkeys = kern_cuda_malloc(M * 4), *dn = kern_cuda_malloc(M * 4);
        kern_cuda_upload(dpages, pages, (size_t)np * 4), kern_cuda_upload(dpt, ptoff, M * 4);
        kern_cuda_upload(dpos, pos, M * 4), kern_cuda_upload(dkeys, keys, M * 4), kern_cuda_upload(dn, n, M * 4);
        const size_t wsb = kern_cuda_attn_casc_ws(M, H, hd);
        float *st = kern_cuda_malloc(wsb), *oA = kern_cuda_malloc(nq * 4), *oB = kern_cuda_malloc(nq * 4);
        uint16_t *bA = kern_cuda_malloc(nq * 2), *bB = kern_cuda_malloc(nq * 2);
        kern_cuda_memset(st, 0xff, wsb); /* NaN: a state read before it is written fails */
        kern_cuda_memset(oA, 0xff, nq * 4), kern_cuda_memset(oB, 0xff, nq * 4);
        const float scale = 1.0f / sqrtf((float)hd);
        kern_cuda_attn_decode_fused_bf16(oA, NULL, kA, vA, dkn, dvn, dq, dpages, dpt, dpos, M, H, KV, hd, P, scale, NULL);
        kern_cuda_attn_decode_fused_bf16(NULL, bA, kA, vA, dkn, dvn, dq, dpages, dpt, dpos, M, H, KV, hd, P, scale, NULL);
        const kern_attn_casc cz = {dkeys, dn, st};
        kern_cuda_attn_decode_casc_bf16(oB, NULL, kB, vB, dkn, dvn, dq, dpages, dpt, dpos, M, H, KV, hd, P, scale, &cz,
                                        NULL);
        kern_cuda_attn_decode_casc_bf16(NULL, bB, kB, vB, dkn, dvn, dq, dpages, dpt, dpos, M, H, KV, hd, P, scale, &cz,
                                        NULL);
        kern_cuda_stream_sync(NULL);
        float *a = malloc(nq * 4), *b = malloc(nq * 4);
        uint16_t *ca = malloc(cache * 2), *cb = malloc(cache * 2);
        int d_out = 0, d_bf = 0, d_cache = 0;
        kern_cuda_download(a, oA, nq * 4), kern_cuda_download(b, oB, nq * 4);
        for (size_t i = 0; i < nq; i++) d_out += memcmp(a + i, b + i, 4) != 0 || b[i] != b[i];
        kern_cuda_download(ca, bA, nq * 2), kern_cuda_download(cb, bB, nq * 2);
        for (size_t i = 0; i < nq; i++) d_bf += ca[i] != cb[i];
        kern_cuda_download(ca, kA, cache * 2), kern_cuda_download(cb, kB, cache * 2);
        d_cache += memcmp(ca, cb, cache * 2) != 0;
        kern_cuda_download(ca, vA, cache * 2), kern_cuda_download(cb, vB, cache * 2);
        d_cache += memcmp(ca, cb, cache * 2) != 0;
        printf("    casc decode H=%d KV=%d hd=%d, %d rows (groups of 3, %d, 2): %d f32 outputs differ from the plain "
               "decode (or NaN), %d bf16, %d caches\n", H, KV, hd, M, cap, d_out, d_bf, d_cache);
        bad += d_out + d_bf + d_cache;
        free(hc), free(hv), free(q), free(kn), free(vn), free(a), free(b), free(ca), free(cb);
        kern_cuda_free(kA), kern_cuda_free(vA), kern_cuda_free(kB), kern_cuda_free(vB), kern_cuda_free(dq);
        kern_cuda_free(dkn), kern_cuda_free(dvn), kern_cuda_free(dpages), kern_cuda_free(dpt), kern_cuda_free(dpos);
        kern_cuda_free(dkeys), kern_cuda_free(dn), kern_cuda_free(st), kern_cuda_free(oA), kern_cuda_free(oB);
        kern_cuda_free(bA), kern_cuda_free(bB);
    }
    assert_int_equal(bad, 0);
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_copy_page_kernel), cmocka_unit_test(test_casc_decode_kernel),
                                       cmocka_unit_test(test_rollouts)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
