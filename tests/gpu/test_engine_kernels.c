/* GPU tests of the kernels only the CUDA engine uses (vocab.cu, attention_small.cu, cast.cu, gather.cu,
 * fill_random.cu) and of its fused launches (grouped GEMM, add+norm, q/k norm + RoPE):
 * each against the CPU reference or the unfused kernels, and bitwise invariance of each against itself in launches
 * of other sizes. Skipped (not passed) without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/br.h"
#include "common/philox.h"
#include "kernels/cpu/kern_cpu.h"
#include "rollout/sampler.h"

#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"

static uint64_t g_rng = 99;
static float frand(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int have_gpu(void) { return kern_cuda_device_count() > 0; }

static void *dev_copy(const void *h, size_t bytes) {
    void *d = kern_cuda_malloc(bytes);
    kern_cuda_upload(d, h, bytes);
    return d;
}

/* The host sampler's Gumbel-max token: argmax of x_j / T + g_j (g: rollout_gumbel, the host's noise) in fp32, the
 * lower id on a tie -- what the device computes without its pruning. */
static int host_gumbel_token(float *g, const float *xr, int V, const kern_row_req *q) {
    rollout_gumbel(g, V, q->seed, q->sample_id, q->position);
    int best = 0;
    for (int j = 1; j < V; j++)
        if (xr[j] / q->temperature + g[j] > xr[best] / q->temperature + g[best]) best = j;
    return best;
}

static void test_vocab_rows(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Vs[] = {61, 1000, 151936};
    enum { R = 5 };
    for (int vi = 0; vi < 3; vi++) {
        const int V = Vs[vi];
        float *x = malloc(sizeof(float) * R * V);
        for (int i = 0; i < R * V; i++) x[i] = 4.0f * frand();
        x[2 * V + 7] = x[2 * V + 9] = 50.0f; /* a tie in row 2 */
        x[4 * V + 3] = 60.0f;
        x[4 * V + 1] = 60.0f; /* greedy tie in row 4: the lower id wins */
        kern_row_req req[R] = {
            {1.0f, KERN_ROW_GREEDY, -1, 10, 0, 0},   {0.8f, KERN_ROW_GUMBEL, -1, 40, 3, 17},
            {1.3f, KERN_ROW_TARGET, 5, 11, 0, 0},    {1.0f, KERN_ROW_GUMBEL, -1, 41, 3, 18},
            {1.0f, KERN_ROW_GREEDY, -1, 12, 0, 0}};
        float *dx = dev_copy(x, sizeof(float) * R * V);
        kern_row_req *dreq = dev_copy(req, sizeof req);
        kern_row_out *dout = kern_cuda_malloc(sizeof(kern_row_out) * R);
        kern_row_out out[R], one[R];
        const size_t wsb = kern_cuda_vocab_rows_workspace(R, V);
        void *ws = kern_cuda_malloc(wsb);
        kern_cuda_vocab_rows(dout, dx, dreq, R, V, ws, wsb, NULL);
        kern_cuda_download(out, dout, sizeof out);
        /* the same rows, one launch each */
        for (int r = 0; r < R; r++) {
            kern_cuda_vocab_rows(dout, dx + (size_t)r * V, dreq + r, 1, V, ws, wsb, NULL);
            kern_cuda_download(&one[r], dout, sizeof one[r]);
        }
        assert_memory_equal(out, one, sizeof out);
        float *g = malloc(sizeof(float) * V);
        for (int r = 0; r < R; r++) {
            const float *xr = x + (size_t)r * V;
            const float T = req[r].temperature;
            assert_true(out[r].digest == kern_cpu_digest(xr, V));
            float m = -INFINITY;
            double sum = 0;
            for (int j = 0; j < V; j++) m = fmaxf(m, xr[j] / T);
            assert_memory_equal(&out[r].m, &m, sizeof m);
            for (int j = 0; j < V; j++) sum += exp((double)(xr[j] / T) - m);
            double lse_err = fabs(out[r].lse - log(sum));
            assert_true(lse_err <= 1e-5);
            if (req[r].mode == KERN_ROW_GREEDY) assert_int_equal(out[r].token, kern_cpu_argmax(xr, V));
            if (req[r].mode == KERN_ROW_TARGET) assert_int_equal(out[r].token, 5);
            if (req[r].mode == KERN_ROW_GUMBEL) /* the host sampler's noise (kern_logf) and argmax, exactly */
                assert_int_equal(out[r].token, host_gumbel_token(g, xr, V, &req[r]));
            assert_memory_equal(&out[r].x_token, &xr[out[r].token], sizeof(float));
            printf("  vocab_rows V=%-6d row %d mode %d: token %d, lse error %.2g\n", V, r, req[r].mode, out[r].token,
                   lse_err);
        }
        assert_int_equal(out[4].token, 1);
        printf("  vocab_rows V=%d: digests, max, greedy and Gumbel tokens equal to the host's\n", V);
        free(g);
        free(x);
        kern_cuda_free(dx);
        kern_cuda_free(dreq);
        kern_cuda_free(dout);
        kern_cuda_free(ws);
    }
}

/* Gumbel-max rows at Qwen3's vocabulary: the device token (whose exact noise is skipped where a bound says the id
 * cannot win) equals the host sampler's over every id, for temperatures 1 (no division), 0.7, 1.3 and 0.25, spread
 * and peaked rows, rows with -inf and NaN logits. */
static void test_vocab_gumbel_exact(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    enum { R = 40 };
    const int V = 151936;
    static const float Ts[] = {1.0f, 0.7f, 1.3f, 0.25f};
    float *x = malloc(sizeof(float) * R * V), *g = malloc(sizeof(float) * V);
    kern_row_req req[R];
    for (int r = 0; r < R; r++) {
        float *xr = x + (size_t)r * V;
        const float spread = r % 5 == 4 ? 0.05f : 4.0f + (float)(r % 3); /* r % 5 == 4: nearly flat rows */
        for (int j = 0; j < V; j++) xr[j] = spread * frand();
        if (r % 4 == 1) xr[(r * 7919) % V] += 12.0f; /* a peaked row */
        if (r % 6 == 2) for (int j = 0; j < V; j += 3) xr[j] = -INFINITY;
        if (r % 7 == 3) xr[(r * 104729) % V] = NAN;
        kern_row_req q = {Ts[r % 4], KERN_ROW_GUMBEL, -1, 100 + r, 9, (uint64_t)(1000 + r)};
        req[r] = q;
    }
    float *dx = dev_copy(x, sizeof(float) * R * V);
    kern_row_req *dreq = dev_copy(req, sizeof req);
    kern_row_out *dout = kern_cuda_malloc(sizeof(kern_row_out) * R), out[R];
    const size_t wsb = kern_cuda_vocab_rows_workspace(R, V);
    void *ws = kern_cuda_malloc(wsb);
    kern_cuda_vocab_rows(dout, dx, dreq, R, V, ws, wsb, NULL);
    kern_cuda_download(out, dout, sizeof out);
    int differ = 0;
    for (int r = 0; r < R; r++) {
        const int want = host_gumbel_token(g, x + (size_t)r * V, V, &req[r]);
        if (out[r].token != want) {
            printf("    row %d (T=%g): device token %d, host %d\n", r, req[r].temperature, out[r].token, want);
            differ++;
        }
    }
    printf("    vocab_rows Gumbel V=%d: %d of %d rows' tokens differ from the host sampler's\n", V, differ, R);
    assert_int_equal(differ, 0);
    free(x), free(g);
    kern_cuda_free(dx), kern_cuda_free(dreq), kern_cuda_free(dout), kern_cuda_free(ws);
}

/* Rows whose every logit is NaN: greedy and Gumbel give id 0, as the host sampler (kern_cpu_argmax, rollout_sample),
 * never -1 (which the engine would feed back as a token). V = 61 (one segment) and 20000 (three). */
static void test_vocab_rows_all_nan(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Vs[] = {61, 20000};
    for (int vi = 0; vi < 2; vi++) {
        const int V = Vs[vi];
        float *x = malloc(sizeof(float) * 2 * V), *g = malloc(sizeof(float) * V);
        for (int i = 0; i < 2 * V; i++) x[i] = NAN;
        kern_row_req req[2] = {{1.0f, KERN_ROW_GREEDY, -1, 3, 0, 0}, {0.7f, KERN_ROW_GUMBEL, -1, 4, 5, 6}};
        float *dx = dev_copy(x, sizeof(float) * 2 * V);
        kern_row_req *dreq = dev_copy(req, sizeof req);
        kern_row_out *dout = kern_cuda_malloc(sizeof(kern_row_out) * 2), out[2];
        const size_t wsb = kern_cuda_vocab_rows_workspace(2, V);
        void *ws = kern_cuda_malloc(wsb);
        kern_cuda_vocab_rows(dout, dx, dreq, 2, V, ws, wsb, NULL);
        kern_cuda_download(out, dout, sizeof out);
        assert_int_equal(out[0].token, kern_cpu_argmax(x, V));
        assert_int_equal(out[1].token, host_gumbel_token(g, x + V, V, &req[1]));
        assert_int_equal(out[0].token, 0);
        assert_int_equal(out[1].token, 0);
        assert_true(isnan(out[0].x_token) && isnan(out[1].x_token));
        printf("    vocab_rows all-NaN rows V=%d: greedy and Gumbel tokens %d and %d (the host's: 0)\n", V, out[0].token,
               out[1].token);
        free(x), free(g);
        kern_cuda_free(dx), kern_cuda_free(dreq), kern_cuda_free(dout), kern_cuda_free(ws);
    }
}

static void test_attn_small(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int cfgs[][3] = {{8, 4, 8}, {8, 2, 16}, {4, 4, 4}}; /* heads, kv heads, head dim */
    for (int ci = 0; ci < 3; ci++) {
        const int H = cfgs[ci][0], KV = cfgs[ci][1], hd = cfgs[ci][2], T = 77, P = 16, n_pages = 8;
        int32_t table[5] = {6, 1, 7, 3, 0};
        const size_t cache = (size_t)n_pages * P * KV * hd;
        float *kc = calloc(cache, 4), *vc = calloc(cache, 4), *k = malloc(4 * T * KV * hd), *v = malloc(4 * T * KV * hd);
        float *q = malloc(4 * T * H * hd), *ref = malloc(4 * T * H * hd), *got = malloc(4 * T * H * hd);
        float *one = malloc(4 * H * hd);
        for (int i = 0; i < T * KV * hd; i++) {
            k[i] = 2 * frand();
            v[i] = frand();
        }
        for (int i = 0; i < T * H * hd; i++) q[i] = 2 * frand();
        int32_t pos[77], ptoff[77];
        const int32_t *tabs[77];
        for (int t = 0; t < T; t++) {
            pos[t] = t;
            ptoff[t] = 0;
            tabs[t] = table;
        }
        kern_kv_layer kv = {kc, vc, P, KV, hd};
        kern_cpu_kv_write(&kv, k, v, tabs, pos, T);
        const float scale = 1.0f / sqrtf((float)hd);
        kern_cpu_attention(ref, q, &kv, tabs, pos, T, H, scale);
        float *dkc = dev_copy(kc, cache * 4), *dvc = dev_copy(vc, cache * 4), *dq = dev_copy(q, 4 * T * H * hd);
        int32_t *dpages = dev_copy(table, sizeof table), *dpos = dev_copy(pos, sizeof pos), *dpt = dev_copy(ptoff, sizeof ptoff);
        float *dout = kern_cuda_malloc(4 * T * H * hd);
        kern_cuda_attn_small(dout, dq, dkc, dvc, dpages, dpt, dpos, T, H, KV, hd, P, scale, NULL);
        kern_cuda_download(got, dout, 4 * T * H * hd);
        int bad = 0;
        double worst = 0;
        for (int i = 0; i < T * H * hd; i++) {
            double e = fabs((double)got[i] - ref[i]);
            worst = fmax(worst, e);
            bad += !(e <= 1e-5 + 1e-4 * fabs(ref[i]));
        }
        printf("  attn_small H=%d KV=%d hd=%d: max |gpu - cpu| %.2g, %d outside 1e-5 + 1e-4|ref|\n", H, KV, hd, worst, bad);
        assert_int_equal(bad, 0);
        /* decode-shaped calls (one row) and chunks of 16 rows give the same bits */
        for (int t = 0; t < T; t++) {
            kern_cuda_attn_small(dout, dq + (size_t)t * H * hd, dkc, dvc, dpages, dpt, dpos + t, 1, H, KV, hd, P, scale, NULL);
            kern_cuda_download(one, dout, 4 * H * hd);
            assert_memory_equal(one, got + (size_t)t * H * hd, 4 * H * hd);
        }
        for (int t0 = 0; t0 < T; t0 += 16) {
            int n = T - t0 < 16 ? T - t0 : 16;
            kern_cuda_attn_small(dout, dq + (size_t)t0 * H * hd, dkc, dvc, dpages, dpt, dpos + t0, n, H, KV, hd, P, scale, NULL);
            float part[16 * 8 * 16];
            kern_cuda_download(part, dout, 4 * (size_t)n * H * hd);
            assert_memory_equal(part, got + (size_t)t0 * H * hd, 4 * (size_t)n * H * hd);
        }
        free(kc); free(vc); free(k); free(v); free(q); free(ref); free(got); free(one);
        kern_cuda_free(dkc); kern_cuda_free(dvc); kern_cuda_free(dq); kern_cuda_free(dpages); kern_cuda_free(dpos);
        kern_cuda_free(dpt); kern_cuda_free(dout);
    }
}

static void test_cast_gather_fill(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    const int M = 9, K = 172, Kp = 176, D = 33;
    float x[9 * 172];
    for (int i = 0; i < M * K; i++) x[i] = 3 * frand();
    x[5] = NAN;
    x[6] = INFINITY;
    float *dx = dev_copy(x, sizeof x);
    uint16_t *db = kern_cuda_malloc(2 * M * Kp), hb[9 * 176];
    kern_cuda_cast_bf16_pad(db, dx, M, K, Kp, NULL);
    kern_cuda_download(hb, db, sizeof hb);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < Kp; k++)
            assert_int_equal(hb[m * Kp + k], k < K ? br_f32_to_bf16(x[m * K + k]) : 0);
    /* gather rows 4, 0, 4 of a (9, 33) matrix */
    int32_t idx[3] = {4, 0, 4}, *didx = dev_copy(idx, sizeof idx);
    float *dg = kern_cuda_malloc(4 * 3 * D), g[3 * 33];
    kern_cuda_gather_rows(dg, dx, didx, 3, D, NULL);
    kern_cuda_download(g, dg, sizeof g);
    for (int r = 0; r < 3; r++) assert_memory_equal(g + r * D, x + idx[r] * D, 4 * D);
    /* random weights: element (n, k) = scale * (2u - 1), u = br_uniform01(Philox(seed, id, n*K + k)) */
    const int N = 5, KK = 19, KP = 32;
    float *df = kern_cuda_malloc(4 * N * KP), f[5 * 32];
    kern_cuda_fill_random(df, KERN_F32, N, KK, KP, 7, 123, 0.25f, NULL);
    kern_cuda_download(f, df, sizeof f);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < KP; k++) {
            float want = 0.0f;
            if (k < KK) {
                uint64_t e = (uint64_t)(n * KK + k);
                uint32_t w[4];
                br_rand_u32x4(7, 123, (uint32_t)(e >> 32), (uint32_t)e >> 2, w);
                want = 0.25f * (2.0f * br_uniform01(w[e & 3]) - 1.0f);
            }
            assert_memory_equal(&f[n * KP + k], &want, 4);
        }
    kern_cuda_free(dx); kern_cuda_free(db); kern_cuda_free(didx); kern_cuda_free(dg); kern_cuda_free(df);
}

/* More rows than a grid's y dimension takes (65535): the call goes in slices; every row equals the same row
 * computed in a call of 1000 rows (bitwise: token, x_token, m, lse, digest). */
static void test_vocab_rows_many(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    const int R = 70001, V = 61, S = 1000;
    float *x = malloc(sizeof(float) * (size_t)R * V);
    kern_row_req *req = malloc(sizeof(kern_row_req) * R);
    kern_row_out *all = malloc(sizeof(kern_row_out) * R), *part = malloc(sizeof(kern_row_out) * R);
    assert_non_null(x), assert_non_null(req), assert_non_null(all), assert_non_null(part);
    for (size_t i = 0; i < (size_t)R * V; i++) x[i] = 4.0f * frand();
    for (int r = 0; r < R; r++) {
        kern_row_req q = {1.0f, r % 3 == 0 ? KERN_ROW_GREEDY : KERN_ROW_GUMBEL, -1, r % 997, 7, (uint64_t)r};
        req[r] = q;
    }
    float *dx = dev_copy(x, sizeof(float) * (size_t)R * V);
    kern_row_req *dreq = dev_copy(req, sizeof(kern_row_req) * R);
    kern_row_out *dout = kern_cuda_malloc(sizeof(kern_row_out) * R);
    size_t wsb = kern_cuda_vocab_rows_workspace(R, V);
    void *ws = kern_cuda_malloc(wsb);
    kern_cuda_vocab_rows(dout, dx, dreq, R, V, ws, wsb, NULL);
    kern_cuda_download(all, dout, sizeof(kern_row_out) * R);
    for (int r0 = 0; r0 < R; r0 += S) {
        const int n = R - r0 < S ? R - r0 : S;
        kern_cuda_vocab_rows(dout + r0, dx + (size_t)r0 * V, dreq + r0, n, V, ws, wsb, NULL);
    }
    kern_cuda_download(part, dout, sizeof(kern_row_out) * R);
    int differ = 0;
    for (int r = 0; r < R; r++)
        differ += all[r].token != part[r].token || memcmp(&all[r].x_token, &part[r].x_token, 4) ||
                  memcmp(&all[r].m, &part[r].m, 4) || memcmp(&all[r].lse, &part[r].lse, 4) ||
                  all[r].digest != part[r].digest;
    printf("    vocab_rows R=%d (> 65535) V=%d: %d rows differ from calls of %d rows\n", R, V, differ, S);
    assert_int_equal(differ, 0);
    kern_cuda_free(dx), kern_cuda_free(dreq), kern_cuda_free(dout), kern_cuda_free(ws);
    free(x), free(req), free(all), free(part);
}

/* Grouped GEMM (q/k/v, gate/up in one launch): each output equals its own single call bit for bit, at M on both
 * sides of the decode/large kernel switch and for every block width the decode kernel picks (N_total small and
 * large); and the single call is within tolerance of the CPU reference (the numerics test of kern_cuda_gemm_bf16
 * lives in test_kern_cuda). */
static void test_gemm_grouped(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Ms[] = {1, 5, 16, 17, 33, 64, 65, 200};
    static const int shapes[][3] = {{2048, 512, 512}, {1000, 24, 8}, {6144, 6144, 0}, {40, 0, 0}, {300, 72, 72}};
    for (int si = 0; si < 5; si++) {
        const int K = si == 4 ? 528 : 1024; /* 528: a partial last k tile in both kernels (64- and 128-deep) */
        int n = 0, Ns[3];
        for (int i = 0; i < 3; i++)
            if (shapes[si][i]) Ns[n++] = shapes[si][i];
        uint16_t *hx = malloc(2 * 200 * K);
        for (int i = 0; i < 200 * K; i++) hx[i] = br_f32_to_bf16(frand());
        uint16_t *dx = dev_copy(hx, 2 * 200 * K);
        uint16_t *dw[3];
        float *db[3], *dog[3], *dos[3];
        for (int i = 0; i < n; i++) {
            uint16_t *hw = malloc(2 * (size_t)Ns[i] * K);
            float *hb = malloc(4 * (size_t)Ns[i]);
            for (int j = 0; j < Ns[i] * K; j++) hw[j] = br_f32_to_bf16(0.05f * frand());
            for (int j = 0; j < Ns[i]; j++) hb[j] = frand();
            dw[i] = dev_copy(hw, 2 * (size_t)Ns[i] * K);
            db[i] = i == 1 ? NULL : dev_copy(hb, 4 * (size_t)Ns[i]); /* one segment without bias */
            dog[i] = kern_cuda_malloc(4 * 200 * (size_t)Ns[i]);
            dos[i] = kern_cuda_malloc(4 * 200 * (size_t)Ns[i]);
            free(hw);
            free(hb);
        }
        int differ = 0, tested = 0;
        for (int mi = 0; mi < 8; mi++) {
            const int M = Ms[mi];
            kern_cuda_gemm_bf16_multi(n, dog, (const uint16_t *const *)dw, (const float *const *)db, Ns, dx, M, K,
                                      NULL);
            for (int i = 0; i < n; i++) kern_cuda_gemm_bf16(dos[i], dx, dw[i], db[i], M, Ns[i], K, NULL);
            for (int i = 0; i < n; i++) {
                size_t bytes = 4 * (size_t)M * Ns[i];
                float *a = malloc(bytes), *b = malloc(bytes);
                kern_cuda_download(a, dog[i], bytes);
                kern_cuda_download(b, dos[i], bytes);
                differ += memcmp(a, b, bytes) != 0;
                tested++;
                free(a);
                free(b);
            }
        }
        printf("    gemm grouped N=(%d,%d,%d) K=%d: %d of %d outputs differ from their single calls\n", Ns[0],
               n > 1 ? Ns[1] : 0, n > 2 ? Ns[2] : 0, K, differ, tested);
        assert_int_equal(differ, 0);
        for (int i = 0; i < n; i++) {
            kern_cuda_free(dw[i]);
            kern_cuda_free(db[i]);
            kern_cuda_free(dog[i]);
            kern_cuda_free(dos[i]);
        }
        kern_cuda_free(dx);
        free(hx);
    }
}

/* The fused residual add + norm equals kern_cuda_add followed by the norm, bit for bit (x and both outputs), and
 * its rows do not depend on M. */
static void test_add_norm_fused(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    const int M = 7, D = 1000;
    float *x = malloc(4 * M * D), *y = malloc(4 * M * D), w[1000], b[1000];
    for (int i = 0; i < M * D; i++) {
        x[i] = 2 * frand();
        y[i] = frand();
    }
    for (int i = 0; i < D; i++) {
        w[i] = 1 + 0.5f * frand();
        b[i] = 0.1f * frand();
    }
    float *dw = dev_copy(w, sizeof w), *db = dev_copy(b, sizeof b), *dy = dev_copy(y, 4 * M * D);
    for (int ln = 0; ln < 2; ln++) {
        float *x1 = dev_copy(x, 4 * M * D), *x2 = dev_copy(x, 4 * M * D), *x3 = dev_copy(x, 4 * M * D);
        float *o1 = kern_cuda_malloc(4 * M * D), *o2 = kern_cuda_malloc(4 * M * D), *o3 = kern_cuda_malloc(4 * M * D);
        uint16_t *b1 = kern_cuda_malloc(2 * M * D), *b2 = kern_cuda_malloc(2 * M * D);
        kern_cuda_add(x1, dy, (int64_t)M * D, NULL);
        if (ln) {
            kern_cuda_layernorm(o1, b1, x1, dw, db, M, D, 1e-5f, NULL);
            kern_cuda_add_layernorm(x2, dy, o2, b2, dw, db, M, D, 1e-5f, NULL);
            for (int m = 0; m < M; m++) /* one row at a time */
                kern_cuda_add_layernorm(x3 + m * D, dy + m * D, o3 + m * D, NULL, dw, db, 1, D, 1e-5f, NULL);
        } else {
            kern_cuda_rmsnorm(o1, b1, x1, dw, M, D, 1e-6f, NULL);
            kern_cuda_add_rmsnorm(x2, dy, o2, b2, dw, M, D, 1e-6f, NULL);
            for (int m = 0; m < M; m++)
                kern_cuda_add_rmsnorm(x3 + m * D, dy + m * D, o3 + m * D, NULL, dw, 1, D, 1e-6f, NULL);
        }
        float *h1 = malloc(4 * M * D), *h2 = malloc(4 * M * D), *h3 = malloc(4 * M * D);
        uint16_t *hb1 = malloc(2 * M * D), *hb2 = malloc(2 * M * D);
        kern_cuda_download(h1, x1, 4 * M * D);
        kern_cuda_download(h2, x2, 4 * M * D);
        kern_cuda_download(h3, x3, 4 * M * D);
        assert_memory_equal(h1, h2, 4 * M * D);
        assert_memory_equal(h1, h3, 4 * M * D);
        for (int i = 0; i < M * D; i++) { /* and the residual is the plain fp32 sum */
            float want = x[i] + y[i];
            assert_memory_equal(&h1[i], &want, 4);
        }
        kern_cuda_download(h1, o1, 4 * M * D);
        kern_cuda_download(h2, o2, 4 * M * D);
        kern_cuda_download(h3, o3, 4 * M * D);
        assert_memory_equal(h1, h2, 4 * M * D);
        assert_memory_equal(h1, h3, 4 * M * D);
        kern_cuda_download(hb1, b1, 2 * M * D);
        kern_cuda_download(hb2, b2, 2 * M * D);
        assert_memory_equal(hb1, hb2, 2 * M * D);
        printf("    add+%s fused: x, f32 and bf16 outputs equal to add then norm (M=%d and row by row)\n",
               ln ? "layernorm" : "rmsnorm", M);
        kern_cuda_free(x1); kern_cuda_free(x2); kern_cuda_free(x3); kern_cuda_free(o1); kern_cuda_free(o2);
        kern_cuda_free(o3); kern_cuda_free(b1); kern_cuda_free(b2);
        free(h1); free(h2); free(h3); free(hb1); free(hb2);
    }
    kern_cuda_free(dw); kern_cuda_free(db); kern_cuda_free(dy);
    free(x);
    free(y);
}

/* Qwen3's q/k norm + RoPE in one launch == kern_cuda_rmsnorm then kern_cuda_rope, bit for bit, for q and k. */
static void test_qk_norm_rope_fused(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int hds[] = {16, 32, 64, 128, 256}; /* 16 and 32: tiny models' head dims */
    const int H = 4, KV = 2, max_pos = 40;
    int32_t pos[37] = {0, 7, 39, 3, 3}; /* M = 5: these; M = 37 (222 head rows, the last block of 8 rows partial) */
    for (int m = 5; m < 37; m++) pos[m] = (m * 13) % max_pos;
    for (int hi = 0; hi < 10; hi++) {
        const int hd = hds[hi % 5], M = hi < 5 ? 5 : 37;
        const size_t nq = (size_t)M * H * hd, nk = (size_t)M * KV * hd;
        float *q = malloc(4 * nq), *k = malloc(4 * nk), *qw = malloc(4 * hd), *kw = malloc(4 * hd);
        float *rope = malloc(sizeof(float) * max_pos * hd);
        for (size_t i = 0; i < nq; i++) q[i] = 3 * frand();
        for (size_t i = 0; i < nk; i++) k[i] = 3 * frand();
        for (int i = 0; i < hd; i++) qw[i] = 1 + 0.3f * frand(), kw[i] = 1 + 0.3f * frand();
        kern_cpu_rope_table(rope, max_pos, hd, 1000000.0f, KERN_BF16);
        float *dq = dev_copy(q, 4 * nq), *dk = dev_copy(k, 4 * nk), *dqw = dev_copy(qw, 4 * hd),
              *dkw = dev_copy(kw, 4 * hd), *drope = dev_copy(rope, sizeof(float) * max_pos * hd);
        int32_t *dpos = dev_copy(pos, sizeof(int32_t) * M);
        float *q1 = kern_cuda_malloc(4 * nq), *k1 = kern_cuda_malloc(4 * nk);
        float *q2 = kern_cuda_malloc(4 * nq), *k2 = kern_cuda_malloc(4 * nk);
        kern_cuda_rmsnorm(q1, NULL, dq, dqw, M * H, hd, 1e-6f, NULL);
        kern_cuda_rmsnorm(k1, NULL, dk, dkw, M * KV, hd, 1e-6f, NULL);
        kern_cuda_rope(q1, dpos, drope, M, H, hd, NULL);
        kern_cuda_rope(k1, dpos, drope, M, KV, hd, NULL);
        kern_cuda_qk_norm_rope(q2, k2, dq, dk, dqw, dkw, dpos, drope, M, H, KV, hd, 1e-6f, NULL);
        float *a = malloc(4 * nq), *b = malloc(4 * nq);
        kern_cuda_download(a, q1, 4 * nq);
        kern_cuda_download(b, q2, 4 * nq);
        assert_memory_equal(a, b, 4 * nq);
        kern_cuda_download(a, k1, 4 * nk);
        kern_cuda_download(b, k2, 4 * nk);
        assert_memory_equal(a, b, 4 * nk);
        printf("    qk norm+rope fused M=%d hd=%d: q and k equal to rmsnorm then rope\n", M, hd);
        free(q); free(k); free(qw); free(kw); free(rope); free(a); free(b);
        kern_cuda_free(dq); kern_cuda_free(dk); kern_cuda_free(dqw); kern_cuda_free(dkw); kern_cuda_free(drope);
        kern_cuda_free(dpos); kern_cuda_free(q1); kern_cuda_free(k1); kern_cuda_free(q2); kern_cuda_free(k2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_rows),
        cmocka_unit_test(test_vocab_rows_many),
        cmocka_unit_test(test_vocab_gumbel_exact),
        cmocka_unit_test(test_vocab_rows_all_nan),
        cmocka_unit_test(test_attn_small),
        cmocka_unit_test(test_cast_gather_fill),
        cmocka_unit_test(test_gemm_grouped),
        cmocka_unit_test(test_add_norm_fused),
        cmocka_unit_test(test_qk_norm_rope_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
