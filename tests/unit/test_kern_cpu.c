/* Tests for kernels/cpu: each kernel against an independent float64 reference, and bitwise invariance of
 * each kernel against itself when the same row is computed in calls of other sizes (memcmp). */
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
#include "kernels/cpu/kern_cpu.h"

/* Deterministic test data: splitmix64 -> uniform in [-1, 1). */
static uint64_t g_rng = 0x1234567u;
static float frand(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
}

/* |got - ref| <= atol + rtol*|ref|, printing the first mismatches. */
static int check_close(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol) {
    int bad = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        double rel = err / (fabs(ref[i]) + 1e-30);
        if (rel > worst && fabs(ref[i]) > atol) worst = rel;
        if (!(err <= atol + rtol * fabs(ref[i]))) {
            if (bad < 5) printf("  %s[%zu]: got %.9g ref %.9g\n", what, i, got[i], ref[i]);
            bad++;
        }
    }
    printf("  %s: %zu values, max rel err %.3g, %d outside tolerance\n", what, n, worst, bad);
    return bad;
}

static void test_matmul_numerics(void **state) {
    (void)state;
    const int M = 5, N = 37, K = 1100; /* K > one conversion block and not a multiple of 8 */
    float *x = malloc(sizeof(float) * M * K), *w32 = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    uint16_t *wbf = malloc(2 * (size_t)N * K), *wt = malloc(2 * (size_t)N * K);
    float *out = malloc(sizeof(float) * M * N);
    double *ref = malloc(sizeof(double) * M * N);
    fill(x, (size_t)M * K, 1);
    fill(w32, (size_t)N * K, 0.1f);
    fill(bias, N, 1);
    for (int i = 0; i < N * K; i++) wbf[i] = br_f32_to_bf16(w32[i]);
    /* Transposed (Conv1D) layout of the same bf16 matrix: (K, N). */
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) wt[(size_t)k * N + n] = wbf[(size_t)n * K + k];

    kern_wt W32 = {w32, KERN_F32, K, 1, N, K, 0};
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double a = 0;
            for (int k = 0; k < K; k++) a += (double)x[m * K + k] * w32[(size_t)n * K + k];
            ref[m * N + n] = a + bias[n];
        }
    kern_cpu_matmul(out, x, &W32, bias, M);
    assert_int_equal(check_close("matmul f32", out, ref, (size_t)M * N, 1e-5, 1e-5), 0);

    kern_wt WB = {wbf, KERN_BF16, K, 1, N, K, 0}, WT = {wt, KERN_BF16, 1, N, N, K, 0};
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double a = 0;
            for (int k = 0; k < K; k++) a += (double)x[m * K + k] * br_bf16_to_f32(wbf[(size_t)n * K + k]);
            ref[m * N + n] = a;
        }
    kern_cpu_matmul(out, x, &WB, NULL, M);
    assert_int_equal(check_close("matmul bf16", out, ref, (size_t)M * N, 1e-5, 1e-5), 0);
    /* The strided (transposed) view gives the same bits as the row-major one. */
    float *out2 = malloc(sizeof(float) * M * N);
    kern_cpu_matmul(out2, x, &WT, NULL, M);
    assert_memory_equal(out, out2, sizeof(float) * M * N);
    free(out2);
    free(x); free(w32); free(bias); free(wbf); free(wt); free(out); free(ref);
}

static void test_matmul_invariance(void **state) {
    (void)state;
    const int MMAX = 64, N = 24, K = 200;
    float *x = malloc(sizeof(float) * MMAX * K), *w = malloc(sizeof(float) * N * K);
    float *full = malloc(sizeof(float) * MMAX * N), *part = malloc(sizeof(float) * MMAX * N);
    fill(x, (size_t)MMAX * K, 1);
    fill(w, (size_t)N * K, 1);
    kern_wt W = {w, KERN_F32, K, 1, N, K, 0};
    kern_cpu_matmul(full, x, &W, NULL, MMAX);
    for (int M = 1; M <= MMAX; M++)
        for (int start = 0; start + M <= MMAX; start += M) {
            kern_cpu_matmul(part, x + (size_t)start * K, &W, NULL, M);
            assert_memory_equal(part, full + (size_t)start * N, sizeof(float) * M * N);
        }
    free(x); free(w); free(full); free(part);
}

static void test_norms(void **state) {
    (void)state;
    const int M = 3, D = 67;
    float x[3 * 67], w[67], b[67], out[3 * 67];
    double ref[3 * 67];
    fill(x, M * D, 2);
    fill(w, D, 1);
    fill(b, D, 1);
    for (int m = 0; m < M; m++) {
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[m * D + i] * x[m * D + i];
        double inv = 1.0 / sqrt(ss / D + 1e-5);
        for (int i = 0; i < D; i++) ref[m * D + i] = x[m * D + i] * inv * w[i];
    }
    kern_cpu_rmsnorm(out, x, w, M, D, 1e-5f);
    assert_int_equal(check_close("rmsnorm", out, ref, (size_t)M * D, 1e-6, 1e-5), 0);
    for (int m = 0; m < M; m++) {
        double mean = 0, var = 0;
        for (int i = 0; i < D; i++) mean += x[m * D + i];
        mean /= D;
        for (int i = 0; i < D; i++) var += (x[m * D + i] - mean) * (x[m * D + i] - mean);
        double rstd = 1.0 / sqrt(var / D + 1e-5);
        for (int i = 0; i < D; i++) ref[m * D + i] = (x[m * D + i] - mean) * rstd * w[i] + b[i];
    }
    kern_cpu_layernorm(out, x, w, b, M, D, 1e-5f);
    assert_int_equal(check_close("layernorm", out, ref, (size_t)M * D, 1e-5, 1e-5), 0);
    /* invariance: row 2 alone == row 2 in the batch */
    float one[67];
    kern_cpu_layernorm(one, x + 2 * D, w, b, 1, D, 1e-5f);
    assert_memory_equal(one, out + 2 * D, sizeof one);
    kern_cpu_rmsnorm(out, x, w, M, D, 1e-5f);
    kern_cpu_rmsnorm(one, x + 2 * D, w, 1, D, 1e-5f);
    assert_memory_equal(one, out + 2 * D, sizeof one);
}

static void test_rope_and_activations(void **state) {
    (void)state;
    const int hd = 16, maxp = 50, H = 2;
    float *tab = malloc(sizeof(float) * maxp * hd);
    kern_cpu_rope_table(tab, maxp, hd, 10000.0, KERN_F32);
    float x[2 * 2 * 16], orig[2 * 2 * 16];
    fill(x, sizeof x / sizeof x[0], 1);
    memcpy(orig, x, sizeof x);
    int32_t pos[2] = {0, 37};
    kern_cpu_rope(x, pos, tab, 2, H, hd);
    double ref[64];
    for (int m = 0; m < 2; m++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd / 2; i++) {
                double a = pos[m] * (double)(float)pow(10000.0, -2.0 * i / hd);
                double x1 = orig[(m * H + h) * hd + i], x2 = orig[(m * H + h) * hd + i + hd / 2];
                ref[(m * H + h) * hd + i] = x1 * cos(a) - x2 * sin(a);
                ref[(m * H + h) * hd + i + hd / 2] = x2 * cos(a) + x1 * sin(a);
            }
    assert_int_equal(check_close("rope", x, ref, 64, 1e-6, 1e-5), 0);
    free(tab);

    float g[40], u[40], o[40];
    double r[40];
    fill(g, 40, 6);
    fill(u, 40, 2);
    kern_cpu_swiglu(o, g, u, 40);
    for (int i = 0; i < 40; i++) r[i] = g[i] / (1 + exp(-(double)g[i])) * u[i];
    assert_int_equal(check_close("swiglu", o, r, 40, 1e-6, 1e-5), 0);
    memcpy(o, g, sizeof o);
    kern_cpu_gelu_tanh(o, 40);
    for (int i = 0; i < 40; i++) {
        double v = g[i];
        r[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    assert_int_equal(check_close("gelu_tanh", o, r, 40, 1e-6, 1e-5), 0);
}

/* Attention: a sequence of T tokens with cached K/V on scattered pages; float64 softmax reference;
 * prefill (all rows in one call) == decode (one row per call) == rows in mixed groups, bitwise. */
static void test_attention(void **state) {
    (void)state;
    const int T = 100, H = 4, KV = 2, hd = 8, P = 16, n_pages = 16;
    float *kc = calloc((size_t)n_pages * P * KV * hd, sizeof(float)), *vc = calloc((size_t)n_pages * P * KV * hd, sizeof(float));
    kern_kv_layer kv = {kc, vc, P, KV, hd};
    int32_t table[7] = {9, 2, 14, 0, 5, 11, 3}; /* scattered pages */
    float *k = malloc(sizeof(float) * T * KV * hd), *v = malloc(sizeof(float) * T * KV * hd);
    float *q = malloc(sizeof(float) * T * H * hd);
    fill(k, (size_t)T * KV * hd, 3);
    fill(v, (size_t)T * KV * hd, 1);
    fill(q, (size_t)T * H * hd, 3);
    int32_t pos[100];
    const int32_t *tabs[100];
    for (int t = 0; t < T; t++) {
        pos[t] = t;
        tabs[t] = table;
    }
    kern_cpu_kv_write(&kv, k, v, tabs, pos, T);
    float *out = malloc(sizeof(float) * T * H * hd), *one = malloc(sizeof(float) * H * hd);
    double *ref = malloc(sizeof(double) * T * H * hd);
    const float scale = 1.0f / sqrtf((float)hd);
    kern_cpu_attention(out, q, &kv, tabs, pos, T, H, scale);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KV);
            double s[100], mx = -1e300, l = 0;
            for (int j = 0; j <= t; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)q[(t * H + h) * hd + e] * k[(j * KV + g) * hd + e];
                s[j] = d * scale;
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j <= t; j++) l += exp(s[j] - mx);
            for (int e = 0; e < hd; e++) {
                double a = 0;
                for (int j = 0; j <= t; j++) a += exp(s[j] - mx) / l * v[(j * KV + g) * hd + e];
                ref[(t * H + h) * hd + e] = a;
            }
        }
    assert_int_equal(check_close("attention", out, ref, (size_t)T * H * hd, 1e-6, 1e-5), 0);
    /* decode-shaped calls: each row alone */
    for (int t = 0; t < T; t++) {
        kern_cpu_attention(one, q + (size_t)t * H * hd, &kv, tabs, pos + t, 1, H, scale);
        assert_memory_equal(one, out + (size_t)t * H * hd, sizeof(float) * H * hd);
    }
    /* chunked calls of 7 rows */
    for (int t0 = 0; t0 < T; t0 += 7) {
        int n = T - t0 < 7 ? T - t0 : 7;
        float part[7 * 4 * 8];
        kern_cpu_attention(part, q + (size_t)t0 * H * hd, &kv, tabs, pos + t0, n, H, scale);
        assert_memory_equal(part, out + (size_t)t0 * H * hd, sizeof(float) * n * H * hd);
    }
    free(kc); free(vc); free(k); free(v); free(q); free(out); free(one); free(ref);
}

static void test_vocab_rows(void **state) {
    (void)state;
    const int V = 1001;
    float x[1001], lp[1001];
    fill(x, V, 8);
    x[17] = 9.0f;
    x[500] = 9.0f; /* tie: lower id wins */
    assert_int_equal(kern_cpu_argmax(x, V), 17);
    x[3] = NAN;
    assert_int_equal(kern_cpu_argmax(x, V), 17);
    x[3] = 0;
    for (int ti = 0; ti < 3; ti++) {
        float T = ti == 0 ? 1.0f : ti == 1 ? 0.7f : 1.3f;
        double mx = -1e300, l = 0, ref[1001];
        for (int i = 0; i < V; i++) mx = fmax(mx, (double)x[i] / T);
        for (int i = 0; i < V; i++) l += exp((double)x[i] / T - mx);
        for (int i = 0; i < V; i++) ref[i] = (double)x[i] / T - mx - log(l);
        kern_cpu_logsoftmax(lp, x, V, T);
        assert_int_equal(check_close("logsoftmax", lp, ref, V, 1e-5, 1e-5), 0);
        for (int i = 0; i < V; i += 97) {
            float one = kern_cpu_logprob(x, V, T, i);
            assert_memory_equal(&one, &lp[i], sizeof one);
        }
    }
    /* digest vs the formula of docs/FORMAT.md written out independently (summed backwards) */
    uint64_t want = 0;
    for (int i = V - 1; i >= 0; i--) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        uint64_t z = ((uint64_t)i << 32) | b;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        want += z ^ (z >> 31);
    }
    uint64_t d = kern_cpu_digest(x, V);
    assert_true(d == want);
    /* swapping two values changes it (the index is hashed with the value) */
    float y[1001];
    memcpy(y, x, sizeof y);
    y[5] = x[6];
    y[6] = x[5];
    assert_true(kern_cpu_digest(y, V) != d);
    x[0] = nextafterf(x[0], 100.0f);
    assert_true(d != kern_cpu_digest(x, V));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_numerics),
        cmocka_unit_test(test_matmul_invariance),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_rope_and_activations),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_vocab_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
