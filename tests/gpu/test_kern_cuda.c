/* GPU tests for kernels/cuda: every kernel against the CPU reference (kernels/cpu) within a stated tolerance,
 * and bitwise (memcmp) invariance: GEMM rows for M = 1..512 equal to M = 1, attention outputs equal between
 * prefill (chunk sizes 1, 16, 256) and decode, vocabulary rows alone equal to the same rows in larger calls, the
 * device top-k / top-p sampler equal to the host's (rollout_sample) token for token. The standard mode's split-KV
 * attention is checked against the CPU and for run-to-run determinism only (it is not invariant, by design). With no
 * CUDA device (or no CUDA backend built), every test calls skip(): cmocka prints "[  SKIPPED ]" and ctest reports the
 * test as skipped, never passed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/br.h"
#include "kernels/cpu/kern_cpu.h"
#include "rollout/sampler.h"
#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"
#endif

#ifdef BR_HAVE_CUDA

static int have_gpu(void) {
    static int g = -1;
    if (g < 0) {
        g = kern_cuda_device_count() > 0;
        if (!g) printf("no CUDA device: GPU tests skipped\n");
    }
    return g;
}

/* Deterministic test data: splitmix64 -> uniform in [-1, 1). */
static uint64_t g_rng = 0x5eed1234u;
static float frand(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rand_f32(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
    return x;
}
/* Rounds x to bf16 in place and returns the bf16 copy. */
static uint16_t *to_bf16(float *x, size_t n) {
    uint16_t *b = malloc(n * 2);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        b[i] = br_f32_to_bf16(x[i]);
        x[i] = br_bf16_to_f32(b[i]);
    }
    return b;
}
static void *dev_copy(const void *h, size_t bytes) {
    void *d = kern_cuda_malloc(bytes);
    kern_cuda_upload(d, h, bytes);
    return d;
}
/* Device buffer filled with a NaN pattern, so that unwritten outputs fail every comparison. */
static void *dev_poison(size_t bytes) {
    void *d = kern_cuda_malloc(bytes);
    kern_cuda_memset(d, 0xff, bytes);
    return d;
}
static float *host_of(const void *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    assert_non_null(h);
    kern_cuda_download(h, d, n * sizeof(float));
    return h;
}

/* |got - ref| <= atol + rtol*|ref| for every element; prints the first mismatches and the largest errors. */
static int check_close(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol) {
    int bad = 0;
    double max_abs = 0, max_rel = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)ref[i]);
        if (err > max_abs) max_abs = err;
        if (fabs(ref[i]) > 1e-3 && err / fabs(ref[i]) > max_rel) max_rel = err / fabs(ref[i]);
        if (!(err <= atol + rtol * fabs((double)ref[i]))) {
            if (bad < 5) printf("  %s[%zu]: gpu %.9g cpu %.9g\n", what, i, got[i], ref[i]);
            bad++;
        }
    }
    printf("  %-34s n=%-9zu max|err| %.3g  max rel %.3g  (atol %.0e rtol %.0e)  %d outside\n", what, n, max_abs,
           max_rel, atol, rtol, bad);
    return bad;
}
/* Bitwise equality; prints the first differing element. */
static int check_same(const char *what, const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof(float)) == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) {
            printf("  %s: first difference at %zu: %.9g vs %.9g\n", what, i, a[i], b[i]);
            break;
        }
    return 1;
}

/* ---- GEMM */

/* CPU reference for the invariant GEMM: kern_cpu_matmul on the bf16-rounded activations. */
static void cpu_gemm(float *out, const float *x, const uint16_t *w, const float *bias, int M, int N, int K) {
    kern_wt W = {w, KERN_BF16, K, 1, N, K, 0};
    kern_cpu_matmul(out, x, &W, bias, M);
}

static void test_gemm_vs_cpu(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int shapes[][3] = {{1, 64, 64},    {7, 300, 1040},  {16, 4096, 512}, {33, 200, 272},
                                    {64, 128, 256}, {65, 257, 528},  {130, 96, 4096}, {300, 1000, 1024}};
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = rand_f32((size_t)M * K, 1.0f), *wf = rand_f32((size_t)N * K, 0.05f), *bias = rand_f32(N, 1.0f);
        uint16_t *xb = to_bf16(x, (size_t)M * K), *wb = to_bf16(wf, (size_t)N * K);
        float *ref = malloc(sizeof(float) * M * N);
        cpu_gemm(ref, x, wb, bias, M, N, K);
        void *dx = dev_copy(xb, (size_t)M * K * 2), *dw = dev_copy(wb, (size_t)N * K * 2),
             *db = dev_copy(bias, N * sizeof(float)), *dxf = dev_copy(x, (size_t)M * K * 4);
        float *dout = dev_poison((size_t)M * N * 4);
        char what[96];

        kern_cuda_gemm_bf16(dout, dx, dw, db, M, N, K, NULL);
        float *got = host_of(dout, (size_t)M * N);
        snprintf(what, sizeof what, "gemm invariant M=%d N=%d K=%d", M, N, K);
        bad += check_close(what, got, ref, (size_t)M * N, 1e-3, 1e-3);
        free(got);

        kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
        kern_cuda_gemm_standard(dout, dx, dw, db, M, N, K, NULL);
        got = host_of(dout, (size_t)M * N);
        snprintf(what, sizeof what, "gemm standard M=%d N=%d K=%d", M, N, K);
        bad += check_close(what, got, ref, (size_t)M * N, 1e-3, 1e-3);
        free(got);

        /* fp32 mode: bit-identical to the CPU reference (same 8-lane order, no FMA). */
        kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
        kern_cuda_gemm_f32(dout, dxf, dw, KERN_BF16, db, M, N, K, NULL);
        got = host_of(dout, (size_t)M * N);
        snprintf(what, sizeof what, "gemm fp32 M=%d N=%d K=%d", M, N, K);
        bad += check_close(what, got, ref, (size_t)M * N, 0, 0);
        bad += check_same(what, got, ref, (size_t)M * N);
        free(got);

        kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(db), kern_cuda_free(dxf), kern_cuda_free(dout);
        free(x), free(wf), free(bias), free(xb), free(wb), free(ref);
    }
    assert_int_equal(bad, 0);
}

/* fp32 mode with fp32 weights and K not a multiple of 8: still bit-identical to kern_cpu_matmul. */
static void test_gemm_f32_weights(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    const int M = 5, N = 37, K = 1100;
    float *x = rand_f32((size_t)M * K, 1.0f), *w = rand_f32((size_t)N * K, 0.1f), *ref = malloc(sizeof(float) * M * N);
    kern_wt W = {w, KERN_F32, K, 1, N, K, 0};
    kern_cpu_matmul(ref, x, &W, NULL, M);
    void *dx = dev_copy(x, (size_t)M * K * 4), *dw = dev_copy(w, (size_t)N * K * 4);
    float *dout = dev_poison((size_t)M * N * 4);
    kern_cuda_gemm_f32(dout, dx, dw, KERN_F32, NULL, M, N, K, NULL);
    float *got = host_of(dout, (size_t)M * N);
    assert_int_equal(check_close("gemm fp32 (f32 W) M=5 N=37 K=1100", got, ref, (size_t)M * N, 0, 0), 0);
    assert_int_equal(check_same("gemm fp32 (f32 W)", got, ref, (size_t)M * N), 0);
    kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(dout);
    free(x), free(w), free(ref), free(got);
}

/* ---- fp32-mode GEMM on sub-matrices (kern_cuda_gemm_f32_ld): the decode kernel (M <= 4) and the tiled one */

/* x = columns [xo, xo + K) of an (M, ldx) array, W = columns [wo, wo + K) of an (N, ldw) array (the views of the
 * row-parallel chunks); W bf16 or f32. Returns 1 unless the GPU output equals kern_cpu_matmul_ld bit for bit. */
static int gemm_f32_ld_case(int M, int N, int K, kern_dtype wdt, int use_bias, int64_t ldx, int xo, int64_t ldw,
                            int wo) {
    const size_t es = wdt == KERN_BF16 ? 2 : 4;
    float *x = rand_f32((size_t)M * ldx, 1.0f), *wf = rand_f32((size_t)N * ldw, 0.05f), *bias = rand_f32(N, 1.0f);
    uint16_t *wb = wdt == KERN_BF16 ? to_bf16(wf, (size_t)N * ldw) : NULL;
    const void *wh = wdt == KERN_BF16 ? (const void *)wb : (const void *)wf;
    float *ref = malloc(sizeof(float) * M * N);
    assert_non_null(ref);
    const kern_wt W = {(const char *)wh + wo * es, wdt, ldw, 1, N, K, 0};
    kern_cpu_matmul_ld(ref, x + xo, ldx, &W, use_bias ? bias : NULL, M);

    void *dx = dev_copy(x, (size_t)M * ldx * 4), *dw = dev_copy(wh, (size_t)N * ldw * es);
    float *db = use_bias ? dev_copy(bias, (size_t)N * 4) : NULL, *dout = dev_poison((size_t)M * N * 4);
    kern_cuda_gemm_f32_ld(dout, (const float *)dx + xo, ldx, (const char *)dw + wo * es, ldw, wdt, db, M, N, K, NULL);
    float *got = host_of(dout, (size_t)M * N);
    char what[128];
    snprintf(what, sizeof what, "gemm fp32 M=%d N=%d K=%d W=%s bias=%d ldx=%lld+%d ldw=%lld+%d", M, N, K,
             wdt == KERN_BF16 ? "bf16" : "f32", use_bias, (long long)ldx, xo, (long long)ldw, wo);
    const int bad = check_same(what, got, ref, (size_t)M * N);
    kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(db), kern_cuda_free(dout);
    free(x), free(wf), free(bias), free(wb), free(ref), free(got);
    return bad;
}

/* 1 when the M x N result `got` differs from the rows computed alone (`one`), else 0; the first 5 differing calls
 * (shown = how many so far) print what differs. */
static int rows_differ(const float *got, const float *one, int M, int N, int shown) {
    if (memcmp(got, one, (size_t)M * N * 4) == 0) return 0;
    if (shown < 5) {
        char what[64];
        snprintf(what, sizeof what, "M=%d vs M=1", M);
        check_same(what, got, one, (size_t)M * N);
    }
    return 1;
}

/* The fp32 GEMM cases of one kernel's tests, each bitwise against kern_cpu_matmul_ld: every (M, N, K) of the grid
 * Ms x Ns x Ks once, compact (the dtype and the bias alternating over the grid: both of each at every M), then
 * every (M, N, K) of Mv x Nv x Kv as sub-matrices at a column offset, with f32 and bf16 W: 16-byte-aligned views
 * (offset 8, width K + 16: 16-byte rows when K % 8 == 0) and misaligned ones. Returns how many differ. */
#define N_OF(a) (int)(sizeof(a) / sizeof(a[0]))
static int gemm_f32_cases(const int *Ms, int nm, const int *Ns, int nn, const int *Ks, int nk, const int *Mv, int nmv,
                          const int *Nv, int nnv, const int *Kv, int nkv, int *cases) {
    int bad = 0;
    for (int im = 0; im < nm; im++)
        for (int in = 0; in < nn; in++)
            for (int ik = 0; ik < nk; ik++) {
                const int M = Ms[im], N = Ns[in], K = Ks[ik];
                const kern_dtype wdt = (im + in + ik) & 1 ? KERN_F32 : KERN_BF16;
                bad += gemm_f32_ld_case(M, N, K, wdt, (in + ik) & 1, K, 0, K, 0);
                (*cases)++;
            }
    for (int im = 0; im < nmv; im++)
        for (int in = 0; in < nnv; in++)
            for (int ik = 0; ik < nkv; ik++)
                for (int d = 0; d < 2; d++) {
                    const int M = Mv[im], N = Nv[in], K = Kv[ik];
                    const kern_dtype wdt = d ? KERN_F32 : KERN_BF16;
                    bad += gemm_f32_ld_case(M, N, K, wdt, (im + ik) & 1, K + 24, 8, K + 16, 8);
                    bad += gemm_f32_ld_case(M, N, K, wdt, (im + ik + 1) & 1, K + 5, 3, K + 3, 3);
                    *cases += 2;
                }
    return bad;
}

/* The decode kernel (M <= 4: M = 1, 2, 3 here) and the tiled one at small M (5, 8, 16, 17), N and K not multiples of
 * anything (K = 1, 7: shorter than a lane round; 8; 128: a row-parallel head chunk; 1000: a partial last stage;
 * 3072), W rows 16-byte aligned (cp.async, octet loads) and misaligned (the plain-load paths). */
static void test_gemm_f32_small(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Ms[] = {1, 2, 3, 5, 8, 16, 17}, Ns[] = {1, 7, 64, 1000, 4096}, Ks[] = {1, 7, 8, 128, 1000, 3072};
    static const int Mv[] = {1, 5, 16, 17}, Nv[] = {7, 1000}, Kv[] = {7, 128, 1000};
    int cases = 0;
    const int bad = gemm_f32_cases(Ms, N_OF(Ms), Ns, N_OF(Ns), Ks, N_OF(Ks), Mv, N_OF(Mv), Nv, N_OF(Nv), Kv, N_OF(Kv),
                                   &cases);
    printf("  gemm fp32 vs kern_cpu_matmul_ld: %d cases, %d not bitwise equal\n", cases, bad);
    assert_int_equal(bad, 0);
}

/* The register-tiled kernel (M > 4): M = 17 .. 64 (decode batches; 17, 33, 65: one live row in the last 16-row
 * block) and 200, N not a multiple of its 16 / 32 columns, K across its 128-k tiles (1, 7: a partial tile only; 8;
 * 128: one whole tile; 129: a 1-k second tile; 300: two whole tiles and 44 k = 4 steps by 4, then lane tails of 2 or
 * 1; 1000; 3072). On an H200 (132 SMs) N = 1, 7 and 333 (M <= 65), 1000 (M <= 32) run the TM = 4 tiles (16 x 16),
 * the rest TM = 8 (16 x 32). Sub-matrices: 16-byte-aligned rows (octet loads) and misaligned ones (element loads). */
static void test_gemm_f32_tiled(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Ms[] = {17, 24, 32, 33, 40, 64, 65, 200}, Ns[] = {1, 7, 333, 1000, 2100},
                     Ks[] = {1, 7, 8, 128, 129, 300, 1000, 3072};
    static const int Mv[] = {17, 33, 64, 65}, Nv[] = {7, 1000}, Kv[] = {7, 128, 1000};
    int cases = 0;
    const int bad = gemm_f32_cases(Ms, N_OF(Ms), Ns, N_OF(Ns), Ks, N_OF(Ks), Mv, N_OF(Mv), Nv, N_OF(Nv), Kv, N_OF(Kv),
                                   &cases);
    printf("  gemm fp32 (tiled, M = 17..200) vs kern_cpu_matmul_ld: %d cases, %d not bitwise equal\n", cases, bad);
    assert_int_equal(bad, 0);
}

/* Row m of an M-row call == the same row computed alone (M = 1, the decode kernel), for M = 1..4 (the decode
 * kernel's row counts 1, 2, 4 and 3 padded up to 4) and the tiled kernel's 5 .. 200 (both of its tiles: which one
 * runs follows M and N; partial 16-row blocks). */
static int gemm_f32_rows_invariance(int N, int K, kern_dtype wdt, int use_bias, int64_t ld, int off) {
    enum { MAXM = 200 };
    static const int Ms[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  12, 15,  16,  17,
                             24, 32, 33, 40, 48, 49, 63, 64, 65, 100, 129, MAXM};
    const int nM = (int)(sizeof Ms / sizeof Ms[0]);
    const size_t es = wdt == KERN_BF16 ? 2 : 4;
    float *x = rand_f32((size_t)MAXM * ld, 1.0f), *wf = rand_f32((size_t)N * ld, 0.05f), *bias = rand_f32(N, 1.0f);
    uint16_t *wb = wdt == KERN_BF16 ? to_bf16(wf, (size_t)N * ld) : NULL;
    const void *wh = wdt == KERN_BF16 ? (const void *)wb : (const void *)wf;
    void *dx = dev_copy(x, (size_t)MAXM * ld * 4), *dw = dev_copy(wh, (size_t)N * ld * es);
    float *db = use_bias ? dev_copy(bias, (size_t)N * 4) : NULL, *dout = dev_poison((size_t)MAXM * N * 4);
    const float *dxo = (const float *)dx + off;
    const void *dwo = (const char *)dw + off * es;
    float *one = malloc(sizeof(float) * MAXM * N), *got = malloc(sizeof(float) * MAXM * N);
    assert_non_null(one);
    assert_non_null(got);
    for (int m = 0; m < MAXM; m++) { /* each row alone */
        kern_cuda_gemm_f32_ld(dout, dxo + (size_t)m * ld, ld, dwo, ld, wdt, db, 1, N, K, NULL);
        kern_cuda_download(one + (size_t)m * N, dout, (size_t)N * 4);
    }
    int bad_m = 0;
    for (int i = 0; i < nM; i++) {
        const int M = Ms[i];
        kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
        kern_cuda_gemm_f32_ld(dout, dxo, ld, dwo, ld, wdt, db, M, N, K, NULL);
        kern_cuda_download(got, dout, (size_t)M * N * 4);
        bad_m += rows_differ(got, one, M, N, bad_m);
    }
    printf("  gemm fp32 invariance N=%d K=%d W=%s bias=%d ld=%lld+%d: %d values of M (1..%d), %d differ from M=1\n", N,
           K, wdt == KERN_BF16 ? "bf16" : "f32", use_bias, (long long)ld, off, nM, MAXM, bad_m);
    kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(db), kern_cuda_free(dout);
    free(x), free(wf), free(bias), free(wb), free(one), free(got);
    return bad_m;
}

static void test_gemm_f32_invariance(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    int bad = 0;
    bad += gemm_f32_rows_invariance(1024, 1024, KERN_BF16, 1, 1024, 0);
    bad += gemm_f32_rows_invariance(4099, 1000, KERN_BF16, 0, 1000, 0); /* NO = 16 blocks on an H200, partial stage */
    bad += gemm_f32_rows_invariance(20000, 300, KERN_F32, 1, 300, 0);   /* NO = 32 blocks */
    bad += gemm_f32_rows_invariance(1000, 128, KERN_BF16, 0, 1040, 256); /* a head chunk of o_proj */
    bad += gemm_f32_rows_invariance(257, 77, KERN_BF16, 1, 301, 3);      /* misaligned rows: plain loads */
    bad += gemm_f32_rows_invariance(300, 7, KERN_F32, 0, 7, 0);
    assert_int_equal(bad, 0);
}

/* Rows of a call of M rows == the same rows computed alone (M = 1), for every M in the list. */
static int gemm_invariance(int N, int K, const int *Ms, int nM, int use_bias, kern_mode mode) {
    const int MAXM = 512;
    float *x = rand_f32((size_t)MAXM * K, 1.0f), *wf = rand_f32((size_t)N * K, 0.05f), *bias = rand_f32(N, 1.0f);
    uint16_t *xb = to_bf16(x, (size_t)MAXM * K), *wb = to_bf16(wf, (size_t)N * K);
    void *dx = dev_copy(mode == KERN_MODE_FP32 ? (void *)x : (void *)xb, (size_t)MAXM * K * (mode == KERN_MODE_FP32 ? 4 : 2));
    void *dw = dev_copy(wb, (size_t)N * K * 2), *db = use_bias ? dev_copy(bias, N * 4) : NULL;
    float *dout = dev_poison((size_t)MAXM * N * 4);
    float *one = malloc(sizeof(float) * MAXM * N), *got = malloc(sizeof(float) * MAXM * N);
    const size_t xrow = (size_t)K * (mode == KERN_MODE_FP32 ? 4 : 2);
    for (int m = 0; m < MAXM; m++) { /* each row alone */
        const void *xm = (const char *)dx + m * xrow;
        if (mode == KERN_MODE_FP32) kern_cuda_gemm_f32(dout, xm, dw, KERN_BF16, db, 1, N, K, NULL);
        else kern_cuda_gemm_bf16(dout, xm, dw, db, 1, N, K, NULL);
        kern_cuda_download(one + (size_t)m * N, dout, (size_t)N * 4);
    }
    int bad_m = 0;
    for (int i = 0; i < nM; i++) {
        const int M = Ms[i];
        kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
        if (mode == KERN_MODE_FP32) kern_cuda_gemm_f32(dout, dx, dw, KERN_BF16, db, M, N, K, NULL);
        else kern_cuda_gemm_bf16(dout, dx, dw, db, M, N, K, NULL);
        kern_cuda_download(got, dout, (size_t)M * N * 4);
        bad_m += rows_differ(got, one, M, N, bad_m);
    }
    printf("  gemm %s invariance N=%d K=%d bias=%d: %d values of M tested (1..%d), %d differ from M=1\n",
           kern_mode_name(mode), N, K, use_bias, nM, Ms[nM - 1], bad_m);
    kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(db), kern_cuda_free(dout);
    free(x), free(wf), free(bias), free(xb), free(wb), free(one), free(got);
    return bad_m;
}

/* The invariant cases under each kernel choice {gemm_wgmma, gemm_small_tma, gemm_small_rx} of `kernels`; the fp32 case
 * too when with_fp32. */
static void gemm_batch_invariance_run(const int (*kernels)[3], int n_kernels, int with_fp32) {
    int all[512], sparse[128], n_sparse = 0;
    for (int m = 1; m <= 512; m++) all[m - 1] = m;
    for (int m = 1; m <= 80; m++) sparse[n_sparse++] = m;
    static const int more[] = {96, 100, 127, 128, 129, 200, 255, 256, 257, 300, 383, 384, 385, 450, 511, 512};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) sparse[n_sparse++] = more[i];
    int bad = 0;
    for (int k = 0; k < n_kernels; k++) {
        const int wgmma = kernels[k][0], small_tma = kernels[k][1], small_rx = kernels[k][2];
        kern_cuda_tuning t = kern_cuda_set_tuning(NULL);
        t.gemm_wgmma = wgmma;
        t.gemm_small_tma = small_tma;
        t.gemm_small_rx = small_rx;
        const kern_cuda_tuning prev = kern_cuda_set_tuning(&t);
        printf("  M <= 64 kernel: %s%s; M > 64 kernel: %s\n", small_tma ? "gemm_small_tma" : "gemm_small",
               small_tma && small_rx ? " (resident x where it fits)" : "",
               wgmma ? "gemm_wg where the device is sm_90, else gemm_big" : "gemm_big");
        bad += gemm_invariance(1024, 1024, all, 512, 1, KERN_MODE_INVARIANT);
        bad += gemm_invariance(1000, 528, all, 512, 0, KERN_MODE_INVARIANT); /* N, K not multiples of the tiles */
        bad += gemm_invariance(3072, 1024, all, 512, 0, KERN_MODE_INVARIANT);
        bad += gemm_invariance(4096, 4096, sparse, n_sparse, 0, KERN_MODE_INVARIANT);
        bad += gemm_invariance(11008, 4096, sparse, n_sparse, 0, KERN_MODE_INVARIANT); /* M split over blocks */
        /* N >= 128 * SMs: the decode kernels with 2 and 4 m16 tiles per block (8 warps) */
        bad += gemm_invariance(20000, 512, sparse, n_sparse, 1, KERN_MODE_INVARIANT);
        kern_cuda_set_tuning(&prev);
    }
    if (with_fp32) bad += gemm_invariance(1000, 528, sparse, n_sparse, 1, KERN_MODE_FP32);
    assert_int_equal(bad, 0);
}

static void test_gemm_batch_invariance(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    /* M > 64 on gemm_wg (wgmma, sm_90; the default) and on gemm_big (mma.sync, gemm_wgmma = 0), both against the M = 1
     * rows of gemm_small */
    static const int kernels[][3] = {{1, 0, 0}, {0, 0, 0}};
    gemm_batch_invariance_run(kernels, 2, 1);
}

/* ---- fp32-mode row-parallel chunks in one launch (kern_cuda_gemm_f32_chunks) */

/* C chunks of kc columns from column `off` of x (MAXM, ldx) and W (N, ldw), W bf16 or f32, for every M of Ms (the
 * first M rows of x): the chunked call == C separate kern_cuda_gemm_f32_ld calls on the column views (memcmp, both
 * outputs poisoned first), and its last chunk == kern_cpu_matmul_ld bit for bit. Returns how many (M, chunk) pairs
 * differ; *diff_f32 += the number of differing floats. */
static int gemm_f32_chunks_case(int N, int kc, int C, kern_dtype wdt, int64_t ldx, int64_t ldw, int off, const int *Ms,
                                int nM, long *diff_f32) {
    const int MAXM = Ms[nM - 1], cl = C - 1; /* cl: the chunk checked against the CPU (the largest offset) */
    const size_t es = wdt == KERN_BF16 ? 2 : 4, parts = (size_t)C * MAXM * N;
    float *x = rand_f32((size_t)MAXM * ldx, 1.0f), *wf = rand_f32((size_t)N * ldw, 0.05f);
    uint16_t *wb = wdt == KERN_BF16 ? to_bf16(wf, (size_t)N * ldw) : NULL;
    const void *wh = wdt == KERN_BF16 ? (const void *)wb : (const void *)wf;
    void *dx = dev_copy(x, (size_t)MAXM * ldx * 4), *dw = dev_copy(wh, (size_t)N * ldw * es);
    const float *dxo = (const float *)dx + off;
    const char *dwo = (const char *)dw + off * es;
    float *dgot = dev_poison(parts * 4), *done = dev_poison(parts * 4);
    float *got = malloc(parts * 4), *one = malloc(parts * 4), *ref = malloc((size_t)MAXM * N * 4);
    assert_non_null(got);
    assert_non_null(one);
    assert_non_null(ref);
    const kern_wt Wl = {(const char *)wh + (off + (int64_t)cl * kc) * es, wdt, ldw, 1, N, kc, 0};
    int bad = 0;
    long nd_all = 0, nd_cpu_all = 0;
    for (int i = 0; i < nM; i++) {
        const int M = Ms[i];
        const size_t MN = (size_t)M * N;
        kern_cuda_memset(dgot, 0xff, parts * 4);
        kern_cuda_memset(done, 0xff, parts * 4);
        kern_cuda_gemm_f32_chunks(dgot, dxo, ldx, dwo, ldw, wdt, M, N, kc, C, NULL);
        for (int c = 0; c < C; c++)
            kern_cuda_gemm_f32_ld(done + c * MN, dxo + (int64_t)c * kc, ldx, dwo + (int64_t)c * kc * es, ldw, wdt, NULL,
                                  M, N, kc, NULL);
        kern_cuda_download(got, dgot, C * MN * 4);
        kern_cuda_download(one, done, C * MN * 4);
        kern_cpu_matmul_ld(ref, x + off + (int64_t)cl * kc, ldx, &Wl, NULL, M);
        long nd = 0, nd_cpu = 0;
        for (int c = 0; c < C; c++) {
            long ndc = 0;
            for (size_t e = 0; e < MN; e++) ndc += memcmp(got + c * MN + e, one + c * MN + e, 4) != 0;
            if (ndc && nd == 0) {
                char what[96];
                snprintf(what, sizeof what, "chunks M=%d chunk %d vs gemm_f32_ld", M, c);
                check_same(what, got + c * MN, one + c * MN, MN);
            }
            bad += ndc != 0;
            nd += ndc;
        }
        for (size_t e = 0; e < MN; e++) nd_cpu += memcmp(got + cl * MN + e, ref + e, 4) != 0;
        if (nd_cpu) {
            char what[96];
            snprintf(what, sizeof what, "chunks M=%d chunk %d vs kern_cpu_matmul_ld", M, cl);
            check_same(what, got + cl * MN, ref, MN);
        }
        bad += nd_cpu != 0;
        nd_all += nd, nd_cpu_all += nd_cpu;
    }
    printf("  gemm fp32 chunks N=%d kc=%d C=%d W=%s ldx=%lld ldw=%lld +%d, M=%d..%d: %ld of C calls' floats differ, "
           "%ld of the CPU's (chunk %d)\n",
           N, kc, C, wdt == KERN_BF16 ? "bf16" : "f32", (long long)ldx, (long long)ldw, off, Ms[0], MAXM, nd_all,
           nd_cpu_all, cl);
    *diff_f32 += nd_all + nd_cpu_all;
    kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(dgot), kern_cuda_free(done);
    free(x), free(wf), free(wb), free(got), free(one), free(ref);
    return bad;
}

/* kern_cuda_gemm_f32_chunks == C kern_cuda_gemm_f32_ld calls bitwise, for M across both kernels (1, 3, 16: the
 * decode kernel; 17 .. 200: the tiled one, both tiles) and chunk shapes: 16 heads of 128 (o_proj) and 16 MLP chunks of
 * 192 (down_proj) with 16-byte-aligned rows (vector loads), the latter as views (ldx, ldw > K, column offset 8);
 * 3 chunks of 32 at a misaligned offset (element loads); chunks of 7 in 16-byte-aligned rows (a single call of chunk 0
 * takes the vector loads, the chunked call element loads for all: the flags never change a value). */
static void test_gemm_f32_chunks(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Ms[] = {1, 3, 16, 17, 40, 64, 200};
    static const int cs[][6] = {/* N, K (all chunks), C, ldx - K, ldw - K, column offset */
                                {1024, 2048, 16, 0, 0, 0},
                                {1000, 3072, 16, 24, 16, 8},
                                {257, 96, 3, 5, 3, 3},
                                {300, 35, 5, 5, 5, 0}};
    int bad = 0, cases = 0;
    long diff = 0;
    for (int i = 0; i < N_OF(cs); i++)
        for (int d = 0; d < 2; d++) {
            const int N = cs[i][0], K = cs[i][1], C = cs[i][2], off = cs[i][5];
            bad += gemm_f32_chunks_case(N, K / C, C, d ? KERN_F32 : KERN_BF16, K + off + cs[i][3],
                                        K + off + cs[i][4], off, Ms, N_OF(Ms), &diff);
            cases += N_OF(Ms);
        }
    printf("  gemm fp32 chunks: %d (shape, W, M) cases, %d (M, chunk) results differ, %ld floats\n", cases, bad, diff);
    assert_int_equal(bad, 0);
    assert_int_equal(diff, 0);
}

/* ---- Row-parallel GEMM (o_proj, down_proj): K in C chunks summed left to right */

/* out = rowpar GEMM of the first M rows of dx (bf16, K columns). */
static void rowpar_run(float *dout, const void *dx, const void *dw, const float *db, int M, int N, int K, int C) {
    size_t ws_bytes = kern_cuda_gemm_rowpar_ws(M, N, K, C);
    float *ws = ws_bytes ? dev_poison(ws_bytes) : NULL; /* partials poisoned: an unwritten one fails */
    kern_cuda_gemm_rowpar_ws_prepare(ws, ws_bytes);
    kern_cuda_gemm_bf16_rowpar(dout, ws, ws_bytes, dx, dw, db, M, N, K, C, NULL);
    kern_cuda_sync();
    kern_cuda_free(ws);
}

static int rowpar_case(int N, int K, int C, const int *Ms, int nM, int use_bias) {
    const int MAXM = Ms[nM - 1], kc = K / C;
    float *x = rand_f32((size_t)MAXM * K, 1.0f), *wf = rand_f32((size_t)N * K, 0.05f), *bias = rand_f32(N, 1.0f);
    uint16_t *xb = to_bf16(x, (size_t)MAXM * K), *wb = to_bf16(wf, (size_t)N * K);
    void *dx = dev_copy(xb, (size_t)MAXM * K * 2), *dw = dev_copy(wb, (size_t)N * K * 2);
    float *db = use_bias ? dev_copy(bias, (size_t)N * 4) : NULL;
    float *dout = dev_poison((size_t)MAXM * N * 4), *dparts = dev_poison((size_t)C * MAXM * N * 4);
    float *one = malloc(sizeof(float) * MAXM * N), *got = malloc(sizeof(float) * MAXM * N);
    float *parts = malloc(sizeof(float) * C * MAXM * N), *ref = malloc(sizeof(float) * MAXM * N);
    int bad = 0;
    char what[128];
    /* each row alone */
    for (int m = 0; m < MAXM; m++) {
        rowpar_run(dout, (const char *)dx + (size_t)m * K * 2, dw, db, 1, N, K, C);
        kern_cuda_download(one + (size_t)m * N, dout, (size_t)N * 4);
    }
    /* numerics: the chunk partials against an fp64 sum over each chunk's columns; the total against the CPU GEMM */
    kern_cuda_gemm_bf16_partials(dparts, dx, dw, MAXM, N, K, C, 0, C, NULL);
    kern_cuda_download(parts, dparts, (size_t)C * MAXM * N * 4);
    double max_err = 0;
    int bad_p = 0;
    for (int c = 0; c < C; c++)
        for (int m = 0; m < MAXM; m++)
            for (int n = 0; n < N; n++) {
                double r = 0, a = 0;
                for (int k = c * kc; k < (c + 1) * kc; k++) {
                    double t = (double)x[(size_t)m * K + k] * br_bf16_to_f32(wb[(size_t)n * K + k]);
                    r += t, a += fabs(t);
                }
                double err = fabs(parts[((size_t)c * MAXM + m) * N + n] - r);
                if (err > max_err) max_err = err;
                if (!(err <= 1e-4 * a + 1e-6)) bad_p++;
            }
    printf("  rowpar partials N=%d K=%d C=%d M=%d: max|err| vs fp64 %.3g, %d outside 1e-4*sum|terms|\n", N, K, C,
           MAXM, max_err, bad_p);
    bad += bad_p;
    cpu_gemm(ref, x, wb, use_bias ? bias : NULL, MAXM, N, K);
    snprintf(what, sizeof what, "gemm rowpar N=%d K=%d C=%d vs cpu", N, K, C);
    bad += check_close(what, one, ref, (size_t)MAXM * N, 1e-3, 1e-3);
    /* the chunking is real: the sum of chunks is not the unchunked GEMM's bits everywhere */
    if (C > 1) {
        kern_cuda_gemm_bf16(dout, dx, dw, db, MAXM, N, K, NULL);
        kern_cuda_download(got, dout, (size_t)MAXM * N * 4);
        int diff = 0;
        for (size_t i = 0; i < (size_t)MAXM * N; i++) diff += memcmp(got + i, one + i, 4) != 0;
        printf("  rowpar C=%d vs the unchunked GEMM: %d of %d elements differ (expected > 0)\n", C, diff, MAXM * N);
        if (diff == 0) bad++;
    }
    /* bitwise: every M equals the rows alone, with a fresh workspace and with one workspace reused by every call
     * (its tile counters must come back to zero); TP groups of 2 and C ranks (chunk ranges gathered, then summed) */
    int bad_m = 0, bad_tp = 0, bad_reuse = 0;
    const size_t shared_bytes = kern_cuda_gemm_rowpar_ws(MAXM, N, K, C);
    float *shared_ws = shared_bytes ? dev_poison(shared_bytes) : NULL;
    kern_cuda_gemm_rowpar_ws_prepare(shared_ws, shared_bytes);
    for (int i = 0; i < nM; i++) {
        const int M = Ms[i];
        kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
        rowpar_run(dout, dx, dw, db, M, N, K, C);
        kern_cuda_download(got, dout, (size_t)M * N * 4);
        if (memcmp(got, one, (size_t)M * N * 4)) {
            if (bad_m < 3) {
                snprintf(what, sizeof what, "rowpar M=%d vs M=1", M);
                check_same(what, got, one, (size_t)M * N);
            }
            bad_m++;
        }
        for (int rep = 0; rep < 2; rep++) {
            kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
            kern_cuda_gemm_bf16_rowpar(dout, shared_ws, shared_bytes, dx, dw, db, M, N, K, C, NULL);
            kern_cuda_download(got, dout, (size_t)M * N * 4);
            if (memcmp(got, one, (size_t)M * N * 4)) {
                if (bad_reuse < 3) {
                    snprintf(what, sizeof what, "rowpar M=%d, reused workspace, call %d vs M=1", M, rep + 1);
                    check_same(what, got, one, (size_t)M * N);
                }
                bad_reuse++;
            }
        }
        for (int tp = 2; tp <= C; tp *= 2) {
            if (i % 7 && i != nM - 1) continue; /* every 7th M and the last */
            kern_cuda_memset(dparts, 0xff, (size_t)C * M * N * 4);
            for (int r = 0; r < tp; r++) /* rank r's chunks land in its slots, as an all-gather leaves them */
                kern_cuda_gemm_bf16_partials(dparts + (size_t)r * (C / tp) * M * N, dx, dw, M, N, K, C, r * C / tp,
                                             (r + 1) * C / tp, NULL);
            kern_cuda_memset(dout, 0xff, (size_t)M * N * 4);
            kern_cuda_chunk_seq(dout, dparts, C, M, N, db, NULL);
            kern_cuda_download(got, dout, (size_t)M * N * 4);
            if (memcmp(got, one, (size_t)M * N * 4)) {
                snprintf(what, sizeof what, "rowpar TP=%d M=%d vs TP=1 M=1", tp, M);
                check_same(what, got, one, (size_t)M * N);
                bad_tp++;
            }
        }
    }
    printf("  gemm rowpar invariance N=%d K=%d C=%d bias=%d: %d values of M (1..%d), %d differ from M=1, %d with a "
           "reused workspace; TP splits: %d differ\n", N, K, C, use_bias, nM, MAXM, bad_m, bad_reuse, bad_tp);
    bad += bad_m + bad_tp + bad_reuse;
    kern_cuda_free(shared_ws);
    kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(db), kern_cuda_free(dout), kern_cuda_free(dparts);
    free(x), free(wf), free(bias), free(xb), free(wb), free(one), free(got), free(parts), free(ref);
    return bad;
}

static void gemm_rowpar_run(int small_tma, int small_rx) {
    int all[512], sparse[128], n_sparse = 0;
    for (int m = 1; m <= 512; m++) all[m - 1] = m;
    for (int m = 1; m <= 70; m++) sparse[n_sparse++] = m;
    static const int more[] = {100, 128, 129, 255, 256, 300};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) sparse[n_sparse++] = more[i];
    int bad = 0;
    kern_cuda_tuning t = kern_cuda_set_tuning(NULL);
    t.gemm_small_tma = small_tma;
    t.gemm_small_rx = small_rx;
    const kern_cuda_tuning prev = kern_cuda_set_tuning(&t);
    printf("  M <= 64 kernel: %s%s\n", small_tma ? "gemm_small_tma" : "gemm_small",
           small_tma && small_rx ? " (resident x where it fits)" : "");
    bad += rowpar_case(1024, 2048, 8, all, 512, 0);      /* o_proj of Qwen3-0.6B: chunks of 256 (4 k tiles) */
    bad += rowpar_case(1000, 384, 8, sparse, n_sparse, 1); /* chunks of 48: inside a k tile (partials at any M) */
    bad += rowpar_case(520, 3072, 4, sparse, n_sparse, 1); /* chunks of 768, N not a multiple of the tiles */
    bad += rowpar_case(64, 1024, 1, sparse, n_sparse, 0);  /* C = 1: the plain GEMM */
    /* N C >= 64 x SMs (on an H200): at M <= 16 gemm_small_tma's 8-warp resident-x blocks with the last-block sum,
     * N not a multiple of their 64 columns */
    static const int wide[] = {1, 2, 3, 5, 8, 13, 16, 17, 33, 64, 65};
    bad += rowpar_case(1100, 1024, 8, wide, (int)(sizeof wide / sizeof wide[0]), 1);
    kern_cuda_set_tuning(&prev);
    assert_int_equal(bad, 0);
}

static void test_gemm_rowpar(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    gemm_rowpar_run(0, 0);
}

/* The TMA-fed decode kernel (kern_cuda_tuning.gemm_small_tma, the default on sm_90 devices; the tests above pin
 * gemm_small): its rows must be the bits of the other kernels' -- row invariance against gemm_wg's M > 64 rows, and
 * the row-parallel GEMM (partials, the fused last-block sum at M <= 16, TP splits). */
static void test_gemm_small_tma(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    /* a pipeline that never completes (an mbarrier waiting for bytes that never come) would hang the whole program:
     * SIGALRM ends it instead (the other tests take seconds) */
    printf("  gemm_small_tma, under a 240 s alarm\n");
    fflush(stdout);
    alarm(240);
    /* M <= 64 on gemm_small_tma, x in its ring and resident (8-warp blocks, N >= 64 x SMs: N = 11,008 and 20,000
     * here; M <= 16 where the rows fit: M <= 3 at K = 4,096, all at K = 512), against gemm_wg's rows (which
     * test_gemm_batch_invariance ties to gemm_small's) */
    static const int kernels[][3] = {{1, 1, 0}, {1, 1, 1}};
    gemm_batch_invariance_run(kernels, 2, 0);
    gemm_rowpar_run(1, 0);
    gemm_rowpar_run(1, 1);
    alarm(0);
}

/* ---- The decode attention with Qwen3's q/k norm + RoPE in its prologue */

/* kern_cuda_attn_decode_fused_qknorm_bf16 == kern_cuda_qk_norm_rope, then kern_cuda_attn_decode_fused_bf16: both
 * outputs of every step and the whole cache afterwards, bitwise; 5 sequences with 1 .. 300 keys already cached, 3
 * decode steps. kernel 2: the parallel-chunk kernel (the prologue); 1: the walk (two launches inside). */
static int attn_qk_norm_case(int H, int KV, int hd, int kernel) {
    enum { S = 5, STEPS = 3, PS = 16 };
    static const int pre[S] = {1, 33, 130, 300, 7};
    const int max_pages = (300 + STEPS + PS - 1) / PS, n_slots = S * max_pages * PS, max_pos = 310;
    const size_t qrow = (size_t)H * hd, krow = (size_t)KV * hd, cache = (size_t)n_slots * krow;
    kern_cuda_tuning t = kern_cuda_set_tuning(NULL);
    const kern_cuda_tuning prev = t;
    t.attn_decode = kernel;
    kern_cuda_set_tuning(&t);
    float *cf = rand_f32(cache, 1.0f);
    uint16_t *cb = to_bf16(cf, cache);
    uint16_t *kcA = dev_copy(cb, cache * 2), *vcA = dev_copy(cb, cache * 2), *kcB = dev_copy(cb, cache * 2),
             *vcB = dev_copy(cb, cache * 2);
    float *qw = rand_f32(hd, 1.0f), *kw = rand_f32(hd, 1.0f), *rope = rand_f32((size_t)max_pos * hd, 1.0f);
    float *dqw = dev_copy(qw, hd * 4), *dkw = dev_copy(kw, hd * 4), *drope = dev_copy(rope, (size_t)max_pos * hd * 4);
    int32_t pages[S * 20], pt[S], pos[S];
    assert_true(max_pages <= 20);
    for (int i = 0; i < S * max_pages; i++) pages[i] = i;
    for (int s = 0; s < S; s++) pt[s] = s * max_pages;
    int32_t *dpages = dev_copy(pages, sizeof(int32_t) * S * max_pages), *dpt = dev_copy(pt, sizeof pt);
    int32_t *dpos = kern_cuda_malloc(sizeof pos);
    float *q2 = dev_poison(S * qrow * 4), *k2 = dev_poison(S * krow * 4), *q2b = dev_poison(S * qrow * 4),
          *k2b = dev_poison(S * krow * 4);
    float *oA = dev_poison(S * qrow * 4), *oB = dev_poison(S * qrow * 4);
    uint16_t *bA = dev_poison(S * qrow * 2), *bB = dev_poison(S * qrow * 2);
    const size_t hbytes = cache * 2 > S * qrow * 4 ? cache * 2 : S * qrow * 4;
    float *ha = malloc(hbytes), *hb = malloc(hbytes);
    const float scale = 1.0f / sqrtf((float)hd), eps = 1e-6f;
    int bad = 0;
    char what[128];
    for (int step = 0; step < STEPS; step++) {
        for (int s = 0; s < S; s++) pos[s] = pre[s] + step;
        kern_cuda_upload(dpos, pos, sizeof pos);
        float *q = rand_f32(S * qrow, 3.0f), *k = rand_f32(S * krow, 3.0f), *v = rand_f32(S * krow, 1.0f);
        float *dq = dev_copy(q, S * qrow * 4), *dk = dev_copy(k, S * krow * 4), *dv = dev_copy(v, S * krow * 4);
        kern_cuda_qk_norm_rope(q2, k2, dq, dk, dqw, dkw, dpos, drope, S, H, KV, hd, eps, NULL);
        kern_cuda_attn_decode_fused_bf16(oA, bA, kcA, vcA, k2, dv, q2, dpages, dpt, dpos, S, H, KV, hd, PS, scale, NULL);
        kern_cuda_attn_decode_fused_qknorm_bf16(oB, bB, kcB, vcB, dk, dv, dq, dqw, dkw, drope, eps, q2b, k2b, dpages,
                                                dpt, dpos, S, H, KV, hd, PS, scale, NULL);
        kern_cuda_sync();
        kern_cuda_download(ha, oA, S * qrow * 4), kern_cuda_download(hb, oB, S * qrow * 4);
        snprintf(what, sizeof what, "attn+qk norm H=%d KV=%d hd=%d kernel %d step %d: f32 out", H, KV, hd, kernel, step);
        bad += check_same(what, hb, ha, S * qrow);
        kern_cuda_download(ha, bA, S * qrow * 2), kern_cuda_download(hb, bB, S * qrow * 2);
        if (memcmp(ha, hb, S * qrow * 2)) {
            printf("  attn+qk norm H=%d KV=%d hd=%d kernel %d step %d: bf16 out differs\n", H, KV, hd, kernel, step);
            bad++;
        }
        kern_cuda_free(dq), kern_cuda_free(dk), kern_cuda_free(dv);
        free(q), free(k), free(v);
    }
    const uint16_t *caches[2][2] = {{kcA, kcB}, {vcA, vcB}};
    for (int c = 0; c < 2; c++) {
        kern_cuda_download(ha, caches[c][0], cache * 2), kern_cuda_download(hb, caches[c][1], cache * 2);
        if (memcmp(ha, hb, cache * 2)) {
            printf("  attn+qk norm H=%d KV=%d hd=%d kernel %d: the %s cache differs\n", H, KV, hd, kernel, c ? "V" : "K");
            bad++;
        }
    }
    printf("  attention decode + q/k norm H=%d KV=%d hd=%d, %s: %d of %d outputs and caches not the two calls' bits\n",
           H, KV, hd, kernel == 1 ? "the walk" : "parallel chunks", bad, 2 * STEPS + 2);
    kern_cuda_set_tuning(&prev);
    kern_cuda_free(kcA), kern_cuda_free(vcA), kern_cuda_free(kcB), kern_cuda_free(vcB), kern_cuda_free(dqw);
    kern_cuda_free(dkw), kern_cuda_free(drope), kern_cuda_free(dpages), kern_cuda_free(dpt), kern_cuda_free(dpos);
    kern_cuda_free(q2), kern_cuda_free(k2), kern_cuda_free(q2b), kern_cuda_free(k2b), kern_cuda_free(oA);
    kern_cuda_free(oB), kern_cuda_free(bA), kern_cuda_free(bB);
    free(cf), free(cb), free(qw), free(kw), free(rope), free(ha), free(hb);
    return bad;
}

static void test_attention_qk_norm(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int shapes[][3] = {{16, 8, 128}, {32, 8, 128}, {8, 2, 64}, {6, 2, 32}, {4, 4, 256}};
    int bad = 0;
    for (int i = 0; i < 5; i++)
        for (int kernel = 2; kernel >= 1; kernel--)
            bad += attn_qk_norm_case(shapes[i][0], shapes[i][1], shapes[i][2], kernel);
    assert_int_equal(bad, 0);
}

/* ---- The ordered split of the decode attention (kern_cuda_attn_decode_split_bf16) */

/* kern_cuda_attn_decode_split_bf16 at 2, 3, 7, 32 splits and the engine's count == the one-launch decode kernel
 * (kern_cuda_attn_decode_fused_qknorm_bf16, or kern_cuda_attn_decode_fused_bf16 when qkn is 0): f32 and bf16
 * outputs of every step and the whole K/V caches afterwards, bitwise; 3 sequences with 4,100, 1,000 and 33 keys
 * already cached (random cache contents), 2 decode steps. The one-launch kernel's numerics against the CPU
 * reference and its equality with prefill are test_attention's. */
static int attn_split_case(int H, int KV, int hd, int qkn) {
    enum { S = 3, STEPS = 2, PS = 16, NV = 5 };
    static const int pre[S] = {4100, 1000, 33};
    const int max_pages = (4100 + STEPS + PS - 1) / PS, n_slots = S * max_pages * PS, max_pos = 4110;
    const int key_cap = max_pages * PS;
    const size_t qrow = (size_t)H * hd, krow = (size_t)KV * hd, cache = (size_t)n_slots * krow;
    float *cf = rand_f32(cache, 1.0f);
    uint16_t *cb = to_bf16(cf, cache);
    uint16_t *kc[NV + 1], *vc[NV + 1];
    for (int i = 0; i <= NV; i++) kc[i] = dev_copy(cb, cache * 2), vc[i] = dev_copy(cb, cache * 2);
    float *qw = rand_f32(hd, 1.0f), *kw = rand_f32(hd, 1.0f), *rope = rand_f32((size_t)max_pos * hd, 1.0f);
    float *dqw = dev_copy(qw, hd * 4), *dkw = dev_copy(kw, hd * 4), *drope = dev_copy(rope, (size_t)max_pos * hd * 4);
    int32_t *pages = malloc(sizeof(int32_t) * S * max_pages), pt[S], pos[S];
    assert_non_null(pages);
    for (int i = 0; i < S * max_pages; i++) pages[i] = (i * 7) % (S * max_pages); /* shuffled: 7 is coprime */
    for (int s = 0; s < S; s++) pt[s] = s * max_pages;
    int32_t *dpages = dev_copy(pages, sizeof(int32_t) * S * max_pages), *dpt = dev_copy(pt, sizeof pt);
    int32_t *dpos = kern_cuda_malloc(sizeof pos);
    float *q2 = dev_poison(S * qrow * 4), *k2 = dev_poison(S * krow * 4);
    float *oA = dev_poison(S * qrow * 4), *oB = dev_poison(S * qrow * 4);
    uint16_t *bA = dev_poison(S * qrow * 2), *bB = dev_poison(S * qrow * 2);
    const size_t wsb = kern_cuda_attn_decode_split_workspace(S, H, hd, key_cap);
    void *ws = kern_cuda_malloc(wsb);
    kern_cuda_memset(ws, 0, wsb); /* its counters start at zero; every call must leave them so (reused below) */
    const size_t hbytes = cache * 2 > S * qrow * 4 ? cache * 2 : S * qrow * 4;
    float *ha = malloc(hbytes), *hb = malloc(hbytes);
    assert_non_null(ha);
    assert_non_null(hb);
    const float scale = 1.0f / sqrtf((float)hd), eps = 1e-6f;
    int splits[NV] = {2, 3, 7, 32, 0}, bad = 0, cmp = 0;
    char what[160];
    for (int step = 0; step < STEPS; step++) {
        for (int s = 0; s < S; s++) pos[s] = pre[s] + step;
        kern_cuda_upload(dpos, pos, sizeof pos);
        splits[NV - 1] = kern_cuda_attn_decode_split_count(S, KV, pos[0] + 1, 132);
        float *q = rand_f32(S * qrow, 3.0f), *k = rand_f32(S * krow, 3.0f), *v = rand_f32(S * krow, 1.0f);
        float *dq = dev_copy(q, S * qrow * 4), *dk = dev_copy(k, S * krow * 4), *dv = dev_copy(v, S * krow * 4);
        if (qkn)
            kern_cuda_attn_decode_fused_qknorm_bf16(oA, bA, kc[NV], vc[NV], dk, dv, dq, dqw, dkw, drope, eps, q2, k2,
                                                    dpages, dpt, dpos, S, H, KV, hd, PS, scale, NULL);
        else
            kern_cuda_attn_decode_fused_bf16(oA, bA, kc[NV], vc[NV], dk, dv, dq, dpages, dpt, dpos, S, H, KV, hd, PS,
                                             scale, NULL);
        for (int i = 0; i < NV; i++) {
            kern_cuda_memset(oB, 0xff, S * qrow * 4), kern_cuda_memset(bB, 0xff, S * qrow * 2);
            kern_cuda_attn_decode_split_bf16(oB, bB, kc[i], vc[i], dk, dv, dq, qkn ? dqw : NULL, qkn ? dkw : NULL,
                                             qkn ? drope : NULL, eps, dpages, dpt, dpos, S, H, KV, hd, PS, scale,
                                             splits[i], key_cap, ws, wsb, NULL);
            kern_cuda_sync();
            kern_cuda_download(ha, oA, S * qrow * 4), kern_cuda_download(hb, oB, S * qrow * 4);
            snprintf(what, sizeof what, "attn split H=%d KV=%d hd=%d qkn %d, %d splits, step %d: f32 out", H, KV, hd,
                     qkn, splits[i], step);
            bad += check_same(what, hb, ha, S * qrow);
            kern_cuda_download(ha, bA, S * qrow * 2), kern_cuda_download(hb, bB, S * qrow * 2);
            if (memcmp(ha, hb, S * qrow * 2)) {
                printf("  %s: the bf16 out differs\n", what);
                bad++;
            }
            cmp += 2;
        }
        kern_cuda_free(dq), kern_cuda_free(dk), kern_cuda_free(dv);
        free(q), free(k), free(v);
    }
    for (int i = 0; i < NV; i++)
        for (int c = 0; c < 2; c++) {
            kern_cuda_download(ha, c ? vc[NV] : kc[NV], cache * 2);
            kern_cuda_download(hb, c ? vc[i] : kc[i], cache * 2);
            if (memcmp(ha, hb, cache * 2)) {
                printf("  attn split H=%d KV=%d hd=%d qkn %d, %d splits: the %s cache differs\n", H, KV, hd, qkn,
                       splits[i], c ? "V" : "K");
                bad++;
            }
            cmp++;
        }
    printf("  attention decode split H=%d KV=%d hd=%d qkn %d (last: %d splits): %d of %d outputs and caches not the "
           "one-launch kernel's bits\n", H, KV, hd, qkn, splits[NV - 1], bad, cmp);
    for (int i = 0; i <= NV; i++) kern_cuda_free(kc[i]), kern_cuda_free(vc[i]);
    kern_cuda_free(dqw), kern_cuda_free(dkw), kern_cuda_free(drope), kern_cuda_free(dpages), kern_cuda_free(dpt);
    kern_cuda_free(dpos), kern_cuda_free(q2), kern_cuda_free(k2), kern_cuda_free(oA), kern_cuda_free(oB);
    kern_cuda_free(bA), kern_cuda_free(bB), kern_cuda_free(ws);
    free(cf), free(cb), free(qw), free(kw), free(rope), free(pages), free(ha), free(hb);
    return bad;
}

static void test_attention_split(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    /* G = 2 (Qwen3-0.6B), 4 (8B), 4 at hd 64, 3 at hd 32, 1 at hd 256, 16, 3 at hd 128 */
    static const int shapes[][3] = {{16, 8, 128}, {32, 8, 128}, {8, 2, 64}, {6, 2, 32}, {4, 4, 256}, {16, 1, 64},
                                    {12, 4, 128}};
    int bad = 0;
    for (int i = 0; i < 7; i++)
        for (int qkn = 1; qkn >= 0; qkn--) bad += attn_split_case(shapes[i][0], shapes[i][1], shapes[i][2], qkn);
    assert_int_equal(bad, 0);
}

/* ---- The fp32 mode's norm (kern_cuda_cpuo_norm) == the CPU's kern_cpu_add + kern_cpu_rmsnorm / kern_cpu_layernorm bit
 * for bit: RMS and LayerNorm, with a residual (x += y, checked too) and without, out aliasing x (no residual), rows of
 * 64 .. 15,000 (past 48 KB of shared memory: the raised limit), 1 / 5 / 64 rows. */
static void test_cpuo_norm(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Ds[] = {64, 128, 1000, 1024, 4096, 15000}, Ms[] = {1, 5, 64};
    int bad = 0, cases = 0;
    for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
            for (int kind = 0; kind < 2; kind++)    /* RMS, LayerNorm */
                for (int resid = 0; resid < 3; resid++) { /* none, none with out == x, x += y */
                    const int D = Ds[di], M = Ms[mi];
                    const size_t n = (size_t)M * D;
                    float *x = rand_f32(n, 3.0f), *y = rand_f32(n, 1.0f), *w = rand_f32(D, 1.0f),
                          *b = rand_f32(D, 0.5f), *ref = malloc(n * 4);
                    assert_non_null(ref);
                    void *dx = dev_copy(x, n * 4), *dy = dev_copy(y, n * 4), *dw = dev_copy(w, D * 4),
                         *db = dev_copy(b, D * 4);
                    float *dout = resid == 1 ? (float *)dx : dev_poison(n * 4);
                    if (resid == 2) kern_cpu_add(x, y, (int64_t)n);
                    if (kind == 0) kern_cpu_rmsnorm(ref, x, w, M, D, 1e-6f);
                    else kern_cpu_layernorm(ref, x, w, b, M, D, 1e-5f);
                    kern_cuda_cpuo_norm(dout, dx, resid == 2 ? dy : NULL, dw, kind ? db : NULL, M, D,
                                        kind ? 1e-5f : 1e-6f, NULL);
                    float *got = host_of(dout, n), *gx = host_of(dx, n);
                    char what[96];
                    snprintf(what, sizeof what, "cpuo_norm %s D=%d M=%d %s", kind ? "layer" : "rms", D, M,
                             resid == 2 ? "x += y" : resid == 1 ? "out == x" : "");
                    int d = check_same(what, got, ref, n);
                    if (resid == 2) d += check_same("cpuo_norm x += y", gx, x, n);
                    if (d) printf("  %s: DIFFERENT\n", what);
                    bad += d != 0;
                    cases++;
                    if (resid != 1) kern_cuda_free(dout);
                    kern_cuda_free(dx), kern_cuda_free(dy), kern_cuda_free(dw), kern_cuda_free(db);
                    free(x), free(y), free(w), free(b), free(ref), free(got), free(gx);
                }
    printf("  cpuo_norm vs kern_cpu_rmsnorm / kern_cpu_layernorm: %d cases, %d not bitwise equal\n", cases, bad);
    assert_int_equal(bad, 0);
}

/* ---- Norms and element-wise kernels */

static void test_norms(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Ds[] = {1000, 4096, 64};
    const int M = 9;
    int bad = 0;
    for (size_t s = 0; s < 3; s++) {
        const int D = Ds[s];
        const size_t n = (size_t)M * D;
        float *x = rand_f32(n, 3.0f), *w = rand_f32(D, 1.0f), *b = rand_f32(D, 1.0f), *ref = malloc(n * 4);
        void *dx = dev_copy(x, n * 4), *dw = dev_copy(w, D * 4), *db = dev_copy(b, D * 4);
        float *dout = dev_poison(n * 4), *dout1 = dev_poison((size_t)D * 4);
        uint16_t *dbf = dev_poison(n * 2), *bf = malloc(n * 2);
        char what[64];
        for (int kind = 0; kind < 2; kind++) {
            if (kind == 0) {
                kern_cpu_rmsnorm(ref, x, w, M, D, 1e-6f);
                kern_cuda_rmsnorm(dout, dbf, dx, dw, M, D, 1e-6f, NULL);
            } else {
                kern_cpu_layernorm(ref, x, w, b, M, D, 1e-5f);
                kern_cuda_layernorm(dout, dbf, dx, dw, db, M, D, 1e-5f, NULL);
            }
            float *got = host_of(dout, n);
            snprintf(what, sizeof what, "%s D=%d", kind ? "layernorm" : "rmsnorm", D);
            bad += check_close(what, got, ref, n, 1e-5, 1e-5);
            kern_cuda_download(bf, dbf, n * 2);
            for (size_t i = 0; i < n; i++)
                if (bf[i] != br_f32_to_bf16(got[i])) {
                    printf("  %s: bf16 output %zu is not RNE of the f32 output\n", what, i);
                    bad++;
                    break;
                }
            /* Row invariance: the last row alone gives the same bits. */
            const float *xl = (const float *)dx + (size_t)(M - 1) * D;
            if (kind == 0) kern_cuda_rmsnorm(dout1, NULL, xl, dw, 1, D, 1e-6f, NULL);
            else kern_cuda_layernorm(dout1, NULL, xl, dw, db, 1, D, 1e-5f, NULL);
            float *one = host_of(dout1, D);
            bad += check_same(what, one, got + (size_t)(M - 1) * D, D);
            free(got), free(one);
        }
        kern_cuda_free(dx), kern_cuda_free(dw), kern_cuda_free(db), kern_cuda_free(dout), kern_cuda_free(dout1);
        kern_cuda_free(dbf);
        free(x), free(w), free(b), free(ref), free(bf);
    }
    assert_int_equal(bad, 0);
}

static void test_elementwise(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    int bad = 0;
    /* RoPE: same table, same fp32 operations -> zero tolerance. */
    {
        const int M = 11, H = 6, hd = 64, max_pos = 4096;
        const size_t n = (size_t)M * H * hd;
        float *rope = malloc(sizeof(float) * max_pos * hd), *x = rand_f32(n, 2.0f), *ref = malloc(n * 4);
        int32_t pos[11] = {0, 1, 2, 31, 32, 100, 1000, 4095, 7, 7, 2048};
        kern_cpu_rope_table(rope, max_pos, hd, 1e6, KERN_F32);
        void *drope = dev_copy(rope, sizeof(float) * max_pos * hd), *dpos = dev_copy(pos, sizeof pos);
        float *dx = dev_copy(x, n * 4);
        memcpy(ref, x, n * 4);
        kern_cpu_rope(ref, pos, rope, M, H, hd);
        kern_cuda_rope(dx, dpos, drope, M, H, hd, NULL);
        float *got = host_of(dx, n);
        bad += check_close("rope", got, ref, n, 0, 0);
        kern_cuda_free(drope), kern_cuda_free(dpos), kern_cuda_free(dx);
        free(rope), free(x), free(ref), free(got);
    }
    {
        const size_t n = 100003;
        float *g = rand_f32(n, 8.0f), *u = rand_f32(n, 2.0f), *ref = malloc(n * 4);
        void *dg = dev_copy(g, n * 4), *du = dev_copy(u, n * 4);
        float *dout = dev_poison(n * 4);
        uint16_t *dbf = dev_poison(n * 2), *bf = malloc(n * 2);
        kern_cpu_swiglu(ref, g, u, (int64_t)n);
        kern_cuda_swiglu(dout, dbf, dg, du, (int64_t)n, NULL);
        float *got = host_of(dout, n);
        bad += check_close("swiglu", got, ref, n, 1e-6, 1e-6);
        kern_cuda_download(bf, dbf, n * 2);
        for (size_t i = 0; i < n; i++)
            if (bf[i] != br_f32_to_bf16(got[i])) {
                printf("  swiglu bf16 output %zu is not RNE of the f32 output\n", i);
                bad++;
                break;
            }
        free(got);
        /* GELU in place on a copy of g. */
        memcpy(ref, g, n * 4);
        kern_cpu_gelu_tanh(ref, (int64_t)n);
        kern_cuda_gelu_tanh(dg, NULL, (int64_t)n, NULL);
        got = host_of(dg, n);
        bad += check_close("gelu_tanh", got, ref, n, 1e-6, 1e-6);
        free(got);
        /* add: exact. */
        kern_cuda_upload(dout, g, n * 4);
        memcpy(ref, g, n * 4);
        kern_cpu_add(ref, u, (int64_t)n);
        kern_cuda_add(dout, du, (int64_t)n, NULL);
        got = host_of(dout, n);
        bad += check_close("add", got, ref, n, 0, 0);
        /* cast: RNE, exact. */
        kern_cuda_cast_bf16(dbf, dout, (int64_t)n, NULL);
        kern_cuda_download(bf, dbf, n * 2);
        int cast_bad = 0;
        for (size_t i = 0; i < n; i++) cast_bad += bf[i] != br_f32_to_bf16(got[i]);
        printf("  cast_bf16: %d of %zu differ from br_f32_to_bf16\n", cast_bad, n);
        bad += cast_bad;
        free(got);
        kern_cuda_free(dg), kern_cuda_free(du), kern_cuda_free(dout), kern_cuda_free(dbf);
        free(g), free(u), free(ref), free(bf);
    }
    /* Embedding, bf16 and f32 tables, with and without position embeddings: exact. */
    {
        const int V = 500, P = 64, D = 96, M = 7;
        int32_t tok[7] = {0, 499, 3, 3, 250, 1, 77}, pos[7] = {0, 1, 2, 63, 5, 5, 30};
        float *e = rand_f32((size_t)V * D, 1.0f), *pe = rand_f32((size_t)P * D, 0.1f), *ref = malloc(sizeof(float) * M * D);
        uint16_t *eb = to_bf16(e, (size_t)V * D), *peb = to_bf16(pe, (size_t)P * D);
        void *dtok = dev_copy(tok, sizeof tok), *dpos = dev_copy(pos, sizeof pos);
        float *dout = dev_poison(sizeof(float) * M * D);
        for (int dt = 0; dt < 2; dt++)
            for (int with_pos = 0; with_pos < 2; with_pos++) {
                kern_wt E = {dt ? (const void *)eb : (const void *)e, dt ? KERN_BF16 : KERN_F32, D, 1, V, D, 0};
                kern_wt PE = {dt ? (const void *)peb : (const void *)pe, dt ? KERN_BF16 : KERN_F32, D, 1, P, D, 0};
                kern_cpu_embed(ref, &E, with_pos ? &PE : NULL, tok, pos, M);
                void *de = dev_copy(E.data, (size_t)V * D * (dt ? 2 : 4)), *dpe = dev_copy(PE.data, (size_t)P * D * (dt ? 2 : 4));
                kern_cuda_embed(dout, de, with_pos ? dpe : NULL, E.dtype, dtok, dpos, M, D, NULL);
                float *got = host_of(dout, (size_t)M * D);
                char what[48];
                snprintf(what, sizeof what, "embed %s pos=%d", dt ? "bf16" : "f32", with_pos);
                bad += check_close(what, got, ref, (size_t)M * D, 0, 0);
                free(got);
                kern_cuda_free(de), kern_cuda_free(dpe);
            }
        kern_cuda_free(dtok), kern_cuda_free(dpos), kern_cuda_free(dout);
        free(e), free(pe), free(ref), free(eb), free(peb);
    }
    assert_int_equal(bad, 0);
}

/* ---- Attention */

typedef struct {
    int n_heads, n_kv, hd, page_size;
} attn_cfg;

/* A batch of sequences with shuffled page tables; every token's q, k, v drawn once. */
typedef struct {
    attn_cfg c;
    int n_seqs, total, n_pages, max_pages;
    int lens[8], first[8];          /* token count and first global token index of each sequence */
    int32_t *pages;                 /* (n_seqs * max_pages) */
    float *q, *k, *v;               /* (total, n_heads|n_kv, hd) */
} attn_case;

static void attn_case_init(attn_case *a, attn_cfg c, const int *lens, int n_seqs) {
    memset(a, 0, sizeof *a);
    a->c = c;
    a->n_seqs = n_seqs;
    int maxlen = 0;
    for (int s = 0; s < n_seqs; s++) {
        a->lens[s] = lens[s];
        a->first[s] = a->total;
        a->total += lens[s];
        if (lens[s] > maxlen) maxlen = lens[s];
    }
    a->max_pages = (maxlen + c.page_size - 1) / c.page_size;
    a->n_pages = a->max_pages * n_seqs + 3;
    /* A random permutation of the pool's pages, handed out in order: tables are not contiguous. */
    int32_t *perm = malloc(sizeof(int32_t) * a->n_pages);
    for (int i = 0; i < a->n_pages; i++) perm[i] = i;
    for (int i = a->n_pages - 1; i > 0; i--) {
        int j = (int)((frand() * 0.5f + 0.5f) * (float)(i + 1));
        if (j > i) j = i;
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    a->pages = malloc(sizeof(int32_t) * n_seqs * a->max_pages);
    for (int i = 0; i < n_seqs * a->max_pages; i++) a->pages[i] = perm[i];
    free(perm);
    a->q = rand_f32((size_t)a->total * c.n_heads * c.hd, 1.0f);
    a->k = rand_f32((size_t)a->total * c.n_kv * c.hd, 1.0f);
    a->v = rand_f32((size_t)a->total * c.n_kv * c.hd, 1.0f);
}

static void attn_case_free(attn_case *a) { free(a->pages), free(a->q), free(a->k), free(a->v); }

/* bf16 outputs of the fused decode that differ from kern_cuda_cast_bf16_pad of its f32 output (attn_gpu_run with
 * chunk -1 adds to it). */
static long attn_bf16_mismatch;
/* 1: attn_gpu_run and splitkv_gpu_run use a bf16 KV cache and the _bf16 entry points (test_attention_bf16_cache). */
static int attn_kv_bf16;
/* 1: attn_gpu_run's f32 calls (chunk >= 0) attend with the fp32 mode's kern_cuda_cpuo_attention
 * (test_cpuo_attention). */
static int attn_cpuo;

/* Runs all tokens through the GPU in calls built round-robin: each call takes the next `chunk` tokens of every
 * unfinished sequence (so calls mix sequences); chunk 0 = decode (one token per sequence per call, decode kernel);
 * chunk -1 = decode through kern_cuda_attn_decode_fused: no separate K/V write (the launch writes each row's K/V
 * into the cache, whose other slots hold a huge poison), f32 and bf16 outputs, the bf16 compared with the cast of
 * the f32 (attn_bf16_mismatch); chunk -2 = the same with the bf16 output alone (the engine's call), the f32 from a
 * plain decode call on the cache it wrote. out (total, n_heads, hd) in global token order. */
static float *attn_gpu_run(const attn_case *a, int chunk) {
    const attn_cfg c = a->c;
    const size_t slot = (size_t)c.n_kv * c.hd, qrow = (size_t)c.n_heads * c.hd;
    const int b16 = attn_kv_bf16;
    const size_t pool = (size_t)a->n_pages * c.page_size * slot * (b16 ? 2 : 4);
    void *dk = kern_cuda_malloc(pool), *dv = kern_cuda_malloc(pool);
    kern_cuda_memset(dk, 0x7f, pool), kern_cuda_memset(dv, 0x7f, pool); /* unwritten slots would be huge */
    void *dpages = dev_copy(a->pages, sizeof(int32_t) * a->n_seqs * a->max_pages);
    float *dout = dev_poison(a->total * qrow * 4);
    /* Per-call packed inputs. */
    float *bq = kern_cuda_malloc(a->total * qrow * 4), *bk = kern_cuda_malloc(a->total * slot * 4),
          *bv = kern_cuda_malloc(a->total * slot * 4), *bo = kern_cuda_malloc(a->total * qrow * 4);
    int32_t *hpt = malloc(sizeof(int32_t) * a->total), *hpos = malloc(sizeof(int32_t) * a->total),
            *hidx = malloc(sizeof(int32_t) * a->total);
    int32_t *dpt = kern_cuda_malloc(sizeof(int32_t) * a->total), *dpos = kern_cuda_malloc(sizeof(int32_t) * a->total);
    int done[8] = {0};
    for (;;) {
        int M = 0;
        for (int s = 0; s < a->n_seqs; s++) {
            int take = chunk > 0 ? chunk : 1;
            for (int i = 0; i < take && done[s] < a->lens[s]; i++, done[s]++) {
                hpt[M] = s * a->max_pages;
                hpos[M] = done[s];
                hidx[M] = a->first[s] + done[s];
                M++;
            }
        }
        if (M == 0) break;
        for (int m = 0; m < M; m++) { /* gather this call's rows (device to device through the host is fine here) */
            kern_cuda_upload(bq + m * qrow, a->q + hidx[m] * qrow, qrow * 4);
            kern_cuda_upload(bk + m * slot, a->k + hidx[m] * slot, slot * 4);
            kern_cuda_upload(bv + m * slot, a->v + hidx[m] * slot, slot * 4);
        }
        kern_cuda_upload(dpt, hpt, sizeof(int32_t) * M);
        kern_cuda_upload(dpos, hpos, sizeof(int32_t) * M);
        const float scale = 1.0f / sqrtf((float)c.hd);
        if (chunk < 0) {
            uint16_t *bb = kern_cuda_malloc(M * qrow * 2), *bc = kern_cuda_malloc(M * qrow * 2);
            kern_cuda_memset(bb, 0xff, M * qrow * 2);
            if (chunk == -1 && b16) {
                kern_cuda_attn_decode_fused_bf16(bo, bb, dk, dv, bk, bv, bq, dpages, dpt, dpos, M, c.n_heads, c.n_kv,
                                                 c.hd, c.page_size, scale, NULL);
            } else if (chunk == -1) {
                kern_cuda_attn_decode_fused(bo, bb, dk, dv, bk, bv, bq, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd,
                                            c.page_size, scale, NULL);
            } else if (b16) {
                kern_cuda_attn_decode_fused_bf16(NULL, bb, dk, dv, bk, bv, bq, dpages, dpt, dpos, M, c.n_heads, c.n_kv,
                                                 c.hd, c.page_size, scale, NULL);
                kern_cuda_attn_decode_bf16(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd, c.page_size,
                                           scale, NULL);
            } else { /* the engine's call: bf16 output only; the f32 comes from a plain decode of the same cache */
                kern_cuda_attn_decode_fused(NULL, bb, dk, dv, bk, bv, bq, dpages, dpt, dpos, M, c.n_heads, c.n_kv,
                                            c.hd, c.page_size, scale, NULL);
                kern_cuda_attn_decode(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd, c.page_size,
                                      scale, NULL);
            }
            kern_cuda_cast_bf16_pad(bc, bo, M, (int)qrow, (int)qrow, NULL);
            uint16_t *hb = malloc(M * qrow * 2), *hc = malloc(M * qrow * 2);
            assert_non_null(hb);
            assert_non_null(hc);
            kern_cuda_download(hb, bb, M * qrow * 2);
            kern_cuda_download(hc, bc, M * qrow * 2);
            for (size_t i = 0; i < M * qrow; i++) attn_bf16_mismatch += hb[i] != hc[i];
            free(hb), free(hc);
            kern_cuda_free(bb), kern_cuda_free(bc);
        } else if (b16) {
            kern_cuda_kv_write_bf16(dk, dv, bk, bv, dpages, dpt, dpos, M, c.page_size, c.n_kv, c.hd, NULL);
            if (chunk) kern_cuda_attn_prefill_bf16(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd, c.page_size, scale, NULL);
            else kern_cuda_attn_decode_bf16(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd, c.page_size, scale, NULL);
        } else {
            kern_cuda_kv_write(dk, dv, bk, bv, dpages, dpt, dpos, M, c.page_size, c.n_kv, c.hd, NULL);
            if (attn_cpuo) kern_cuda_cpuo_attention(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd,
                                                    c.page_size, scale, NULL);
            else if (chunk) kern_cuda_attn_prefill(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd, c.page_size, scale, NULL);
            else kern_cuda_attn_decode(bo, bq, dk, dv, dpages, dpt, dpos, M, c.n_heads, c.n_kv, c.hd, c.page_size, scale, NULL);
        }
        float *ho = host_of(bo, M * qrow);
        for (int m = 0; m < M; m++) kern_cuda_upload(dout + hidx[m] * qrow, ho + m * qrow, qrow * 4);
        free(ho);
    }
    float *out = host_of(dout, a->total * qrow);
    kern_cuda_free(dk), kern_cuda_free(dv), kern_cuda_free(dpages);
    kern_cuda_free(dout), kern_cuda_free(bq), kern_cuda_free(bk), kern_cuda_free(bv);
    kern_cuda_free(bo), kern_cuda_free(dpt), kern_cuda_free(dpos);
    free(hpt), free(hpos), free(hidx);
    return out;
}

/* CPU reference: all tokens written, then every row attended (rows only read keys <= their position). */
static float *attn_cpu_run(const attn_case *a) {
    const attn_cfg c = a->c;
    const size_t slot = (size_t)c.n_kv * c.hd, qrow = (size_t)c.n_heads * c.hd;
    kern_kv_layer kv = {calloc((size_t)a->n_pages * c.page_size * slot, 4), calloc((size_t)a->n_pages * c.page_size * slot, 4),
                        c.page_size, c.n_kv, c.hd};
    const int32_t **tables = malloc(sizeof(int32_t *) * a->total);
    int32_t *pos = malloc(sizeof(int32_t) * a->total);
    for (int s = 0; s < a->n_seqs; s++)
        for (int t = 0; t < a->lens[s]; t++) {
            tables[a->first[s] + t] = a->pages + s * a->max_pages;
            pos[a->first[s] + t] = t;
        }
    kern_cpu_kv_write(&kv, a->k, a->v, tables, pos, a->total);
    float *out = malloc(a->total * qrow * 4);
    kern_cpu_attention(out, a->q, &kv, tables, pos, a->total, c.n_heads, 1.0f / sqrtf((float)c.hd));
    free(kv.k), free(kv.v), free(tables), free(pos);
    return out;
}

/* Prefill calls of 1, 16 and 256 rows per sequence and the engine's fused decode call (K/V written by the attention
 * launch itself, bf16 output for o_proj; by each decode kernel choice, and the bf16-only call) against `dec`, the
 * decode call's output, bitwise; prints each comparison under `tag`. Returns how many differ. */
static int attn_same_as_decode(const attn_case *a, const float *dec, const char *tag) {
    const attn_cfg c = a->c;
    const size_t n = (size_t)a->total * c.n_heads * c.hd;
    char what[112];
    int bad = 0;
    static const int chunks[] = {1, 16, 256};
    for (int k = 0; k < 3; k++) {
        float *pre = attn_gpu_run(a, chunks[k]);
        snprintf(what, sizeof what, "attn %sprefill chunk %d vs decode (H=%d KV=%d hd=%d)", tag, chunks[k], c.n_heads,
                 c.n_kv, c.hd);
        const int diff = check_same(what, pre, dec, n);
        printf("  %-66s %s\n", what, diff ? "DIFFERENT" : "bitwise equal");
        bad += diff;
        free(pre);
    }
    static const char *const kname[3] = {"default", "walk", "parallel"};
    for (int run = 0; run < 4; run++) {
        const int which = run < 3 ? run : 0, bf_only = run == 3;
        kern_cuda_tuning t = kern_cuda_set_tuning(NULL);
        t.attn_decode = which;
        const kern_cuda_tuning prev = kern_cuda_set_tuning(&t);
        float *fus = attn_gpu_run(a, bf_only ? -2 : -1);
        kern_cuda_set_tuning(&prev);
        snprintf(what, sizeof what, "attn %sdecode fused (%s%s) vs decode (H=%d KV=%d hd=%d)", tag, kname[which],
                 bf_only ? ", bf16 only" : "", c.n_heads, c.n_kv, c.hd);
        const int diff = check_same(what, fus, dec, n);
        printf("  %-66s %s\n", what, diff ? "DIFFERENT" : "bitwise equal");
        bad += diff;
        free(fus);
    }
    return bad;
}

static void test_attention(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    /* G = 2, 4, 1, 8, 2, 16 (hd 64, 128, 32, 256; even G at hd >= 64: two warps per chunk in the decode kernel,
     * whose phase-3 owner warps then hold 1 to 4 heads), 1; 513 keys = 3 windows of 8 chunks at hd 64; 5 sequences x 32 KV heads = more blocks than SMs: the default decode
     * choice is then the walk; G = 3 and 6: the decode kernel's passes of 1 and 2 heads run more than once */
    static const attn_cfg cfgs[] = {{16, 8, 128, 16}, {8, 2, 64, 32}, {4, 4, 32, 64}, {32, 4, 256, 16}, {4, 2, 32, 48},
                                    {16, 1, 64, 16}, {32, 2, 128, 32}, {16, 1, 32, 16}, {32, 2, 256, 16},
                                    {32, 32, 64, 16}, {12, 4, 128, 16}, {24, 4, 64, 32}};
    static const int lens[] = {300, 77, 1, 513, 33};
    int bad = 0;
    attn_bf16_mismatch = 0;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const attn_cfg c = cfgs[ci];
        attn_case a;
        attn_case_init(&a, c, lens, 5);
        const size_t n = (size_t)a.total * c.n_heads * c.hd;
        float *ref = attn_cpu_run(&a);
        float *dec = attn_gpu_run(&a, 0);
        char what[96];
        snprintf(what, sizeof what, "attn decode H=%d KV=%d hd=%d page=%d", c.n_heads, c.n_kv, c.hd, c.page_size);
        bad += check_close(what, dec, ref, n, 1e-5, 1e-4);
        /* prefill == decode; the engine's decode call (these 5-sequence calls choose the parallel kernel by
         * default) == decode */
        bad += attn_same_as_decode(&a, dec, "");
        free(ref), free(dec);
        attn_case_free(&a);
    }
    printf("  attn decode fused: %ld bf16 outputs differ from the cast of the f32 output\n", attn_bf16_mismatch);
    assert_int_equal(attn_bf16_mismatch, 0);
    assert_int_equal(bad, 0);
}

/* The fp32 mode's attention (kern_cuda_cpuo_attention) == kern_cpu_attention bit for bit (memcmp): calls of one row
 * per sequence (decode) and of up to 256 (prefill) mixing 5 sequences of 1 .. 513 keys over shuffled pages; G = 1 .. 8,
 * hd 32 .. 256, and the kernel's other staging paths: hd 512 (one K/V buffer instead of two) and hd 13 (4-byte copies:
 * rows not a multiple of 16 bytes), page size 5. */
static void test_cpuo_attention(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const attn_cfg cfgs[] = {{16, 8, 128, 16}, {8, 2, 64, 32}, {4, 4, 32, 64}, {32, 4, 256, 16}, {4, 2, 32, 48},
                                    {16, 2, 128, 16}, {4, 2, 512, 16}, {6, 3, 13, 5}};
    static const int lens[] = {300, 77, 1, 513, 33}, chunks[] = {0, 256};
    int bad = 0;
    attn_cpuo = 1;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const attn_cfg c = cfgs[ci];
        attn_case a;
        attn_case_init(&a, c, lens, 5);
        const size_t n = (size_t)a.total * c.n_heads * c.hd;
        float *ref = attn_cpu_run(&a);
        for (int k = 0; k < 2; k++) {
            float *got = attn_gpu_run(&a, chunks[k]);
            char what[96];
            snprintf(what, sizeof what, "cpuo attention H=%d KV=%d hd=%d page=%d, %s", c.n_heads, c.n_kv, c.hd,
                     c.page_size, chunks[k] ? "prefill calls" : "decode calls");
            const int d = check_same(what, got, ref, n);
            printf("  %-66s %s\n", what, d ? "DIFFERENT" : "bitwise equal to kern_cpu_attention");
            bad += d;
            free(got);
        }
        free(ref);
        attn_case_free(&a);
    }
    attn_cpuo = 0;
    assert_int_equal(bad, 0);
}

/* ---- Split-KV attention (standard mode: NOT invariant; checked against the CPU and against itself run to run) */

/* Query rows of a split-KV call, as global token indices of an attn_case. */
typedef struct {
    const char *name;
    int prefill; /* the launcher's row-sharing flag */
    int M;
    int32_t idx[1024];
} splitkv_rows;

/* Every token in sequence order (prefill rows; blocks share K/V and straddle sequence boundaries). */
static void rows_all(splitkv_rows *r, const attn_case *a) {
    r->name = "all rows", r->prefill = 1, r->M = 0;
    for (int i = 0; i < a->total && r->M < 1024; i++) r->idx[r->M++] = i;
}
/* Positions of every sequence interleaved (k*37 + 11*s mod len): blocks mix sequences and positions. */
static void rows_mixed(splitkv_rows *r, const attn_case *a) {
    r->name = "mixed positions", r->prefill = 1, r->M = 0;
    for (int k = 0; k < 24; k++)
        for (int s = 0; s < a->n_seqs; s++) r->idx[r->M++] = a->first[s] + (k * 37 + 11 * s) % a->lens[s];
}
/* The last token of each sequence (a decode step). */
static void rows_last(splitkv_rows *r, const attn_case *a) {
    r->name = "decode rows", r->prefill = 0, r->M = 0;
    for (int s = 0; s < a->n_seqs; s++) r->idx[r->M++] = a->first[s] + a->lens[s] - 1;
}

/* Writes every token's K/V into a shuffled-page cache, then runs kern_cuda_attn_splitkv on the rows `r` with
 * n_splits splits; returns out (r->M, n_heads, hd). */
static float *splitkv_gpu_run(const attn_case *a, const splitkv_rows *r, int n_splits) {
    const attn_cfg c = a->c;
    const size_t slot = (size_t)c.n_kv * c.hd, qrow = (size_t)c.n_heads * c.hd;
    const int b16 = attn_kv_bf16;
    const size_t pool = (size_t)a->n_pages * c.page_size * slot * (b16 ? 2 : 4);
    void *dk = kern_cuda_malloc(pool), *dv = kern_cuda_malloc(pool);
    kern_cuda_memset(dk, 0x7f, pool), kern_cuda_memset(dv, 0x7f, pool); /* unwritten slots would be huge */
    void *dpages = dev_copy(a->pages, sizeof(int32_t) * a->n_seqs * a->max_pages);
    int32_t *hpt = malloc(sizeof(int32_t) * a->total), *hpos = malloc(sizeof(int32_t) * a->total);
    for (int s = 0; s < a->n_seqs; s++)
        for (int t = 0; t < a->lens[s]; t++) hpt[a->first[s] + t] = s * a->max_pages, hpos[a->first[s] + t] = t;
    int32_t *dpt = dev_copy(hpt, sizeof(int32_t) * a->total), *dpos = dev_copy(hpos, sizeof(int32_t) * a->total);
    float *dkn = dev_copy(a->k, a->total * slot * 4), *dvn = dev_copy(a->v, a->total * slot * 4);
    if (b16) kern_cuda_kv_write_bf16(dk, dv, dkn, dvn, dpages, dpt, dpos, a->total, c.page_size, c.n_kv, c.hd, NULL);
    else kern_cuda_kv_write(dk, dv, dkn, dvn, dpages, dpt, dpos, a->total, c.page_size, c.n_kv, c.hd, NULL);
    /* this call's rows */
    const int M = r->M;
    float *hq = malloc(M * qrow * 4);
    int32_t *rpt = malloc(sizeof(int32_t) * M), *rpos = malloc(sizeof(int32_t) * M);
    for (int m = 0; m < M; m++) {
        memcpy(hq + m * qrow, a->q + (size_t)r->idx[m] * qrow, qrow * 4);
        rpt[m] = hpt[r->idx[m]], rpos[m] = hpos[r->idx[m]];
    }
    float *dq = dev_copy(hq, M * qrow * 4);
    int32_t *drpt = dev_copy(rpt, sizeof(int32_t) * M), *drpos = dev_copy(rpos, sizeof(int32_t) * M);
    float *dout = dev_poison(M * qrow * 4);
    const size_t ws_bytes = kern_cuda_attn_splitkv_workspace_bytes(M, c.n_heads, c.hd, n_splits);
    float *ws = ws_bytes ? dev_poison(ws_bytes) : NULL; /* NaN: a partial read before written fails the checks */
    if (b16)
        kern_cuda_attn_splitkv_bf16(dout, dq, dk, dv, dpages, drpt, drpos, M, c.n_heads, c.n_kv, c.hd, c.page_size,
                                    1.0f / sqrtf((float)c.hd), n_splits, r->prefill, ws, ws_bytes, NULL);
    else
        kern_cuda_attn_splitkv(dout, dq, dk, dv, dpages, drpt, drpos, M, c.n_heads, c.n_kv, c.hd, c.page_size,
                               1.0f / sqrtf((float)c.hd), n_splits, r->prefill, ws, ws_bytes, NULL);
    float *out = host_of(dout, M * qrow);
    kern_cuda_free(dk), kern_cuda_free(dv), kern_cuda_free(dpages), kern_cuda_free(dpt), kern_cuda_free(dpos);
    kern_cuda_free(dkn), kern_cuda_free(dvn), kern_cuda_free(dq), kern_cuda_free(drpt), kern_cuda_free(drpos);
    kern_cuda_free(dout), kern_cuda_free(ws);
    free(hpt), free(hpos), free(hq), free(rpt), free(rpos);
    return out;
}

/* The CPU reference's rows r->idx, (r->M, n_heads, hd). */
static float *splitkv_ref_rows(const float *ref_all, const attn_case *a, const splitkv_rows *r) {
    const size_t qrow = (size_t)a->c.n_heads * a->c.hd;
    float *o = malloc(r->M * qrow * 4);
    assert_non_null(o);
    for (int m = 0; m < r->M; m++) memcpy(o + m * qrow, ref_all + (size_t)r->idx[m] * qrow, qrow * 4);
    return o;
}

/* Numerics: within tolerance of kern_cpu_attention for n_splits = 1, 2, 7, 32 (32 leaves most splits of the short
 * sequences empty), GQA, shuffled pages, prefill rows, mixed positions and decode rows. */
static void test_attention_splitkv(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const attn_cfg cfgs[] = {{8, 2, 64, 16}, {16, 4, 128, 32}, {32, 8, 128, 16}, {12, 1, 64, 48}};
    static const int lens[] = {300, 77, 1, 513, 33};
    static const int splits[] = {1, 2, 7, 32};
    void (*const makers[])(splitkv_rows *, const attn_case *) = {rows_all, rows_mixed, rows_last};
    splitkv_rows *r = malloc(sizeof *r);
    assert_non_null(r);
    int bad = 0;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const attn_cfg c = cfgs[ci];
        attn_case a;
        attn_case_init(&a, c, lens, 5);
        float *ref_all = attn_cpu_run(&a);
        for (size_t k = 0; k < sizeof makers / sizeof makers[0]; k++) {
            makers[k](r, &a);
            float *ref = splitkv_ref_rows(ref_all, &a, r);
            for (size_t si = 0; si < sizeof splits / sizeof splits[0]; si++) {
                float *got = splitkv_gpu_run(&a, r, splits[si]);
                char what[96];
                snprintf(what, sizeof what, "splitkv S=%d %s H=%d KV=%d hd=%d", splits[si], r->name, c.n_heads,
                         c.n_kv, c.hd);
                bad += check_close(what, got, ref, (size_t)r->M * c.n_heads * c.hd, 1e-5, 1e-4);
                free(got);
            }
            free(ref);
        }
        free(ref_all);
        attn_case_free(&a);
    }
    free(r);
    assert_int_equal(bad, 0);
}

/* Same inputs and n_splits -> the same bits, run to run (memcmp). Across n_splits the bits may differ: printed
 * for information, never asserted (this kernel is not invariant, on purpose). */
static void test_attention_splitkv_deterministic(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    const attn_cfg c = {16, 4, 128, 16};
    static const int lens[] = {700, 5, 129};
    attn_case a;
    attn_case_init(&a, c, lens, 3);
    splitkv_rows *r = malloc(sizeof *r);
    assert_non_null(r);
    int bad = 0;
    float *first_of[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        if (k == 0) rows_last(r, &a);
        else rows_mixed(r, &a);
        const size_t n = (size_t)r->M * c.n_heads * c.hd;
        static const int splits[] = {1, 7, 32};
        for (int si = 0; si < 3; si++) {
            float *x = splitkv_gpu_run(&a, r, splits[si]);
            for (int rep = 0; rep < 3; rep++) {
                float *y = splitkv_gpu_run(&a, r, splits[si]);
                char what[80];
                snprintf(what, sizeof what, "splitkv S=%d %s rerun %d", splits[si], r->name, rep);
                const int diff = check_same(what, y, x, n);
                if (diff) printf("  %-50s DIFFERENT\n", what);
                bad += diff;
                free(y);
            }
            if (si == 0) {
                first_of[k] = x;
            } else {
                size_t nd = 0;
                for (size_t i = 0; i < n; i++) nd += memcmp(x + i, first_of[k] + i, 4) != 0;
                printf("  splitkv %s: S=%d vs S=1: %zu of %zu elements differ (not invariant, by design)\n", r->name,
                       splits[si], nd, n);
                free(x);
            }
        }
    }
    free(first_of[0]), free(first_of[1]), free(r);
    attn_case_free(&a);
    assert_int_equal(bad, 0);
}

/* The split count "by count" (host code; runs without a device too): 1 when the (row, KV head) pairs already cover
 * 80% of the SMs or the longest row fits one chunk, else enough splits for one wave, capped; and the engine's
 * workspace bound covers every call. */
static void test_attention_splitkv_choice(void **state) {
    (void)state;
    const int n_sm = 132;
    assert_int_equal(kern_cuda_attn_splitkv_splits(1, 8, 4096, n_sm), 17);       /* ceil(132 / 8) */
    assert_int_equal(kern_cuda_attn_splitkv_splits(4, 8, 4096, n_sm), 5);        /* ceil(132 / 32) */
    assert_int_equal(kern_cuda_attn_splitkv_splits(14, 8, 4096, n_sm), 1);       /* 112 >= 0.8 * 132 */
    assert_int_equal(kern_cuda_attn_splitkv_splits(1, 8, 32, n_sm), 1);          /* one chunk */
    assert_int_equal(kern_cuda_attn_splitkv_splits(1, 8, 100, n_sm), 4);         /* capped by 4 chunks */
    assert_int_equal(kern_cuda_attn_splitkv_splits(1, 1, 1 << 20, n_sm), KERN_CUDA_SPLITKV_MAX);
    assert_int_equal(kern_cuda_attn_splitkv_splits(0, 8, 4096, n_sm), 1);
    static const int kvs[] = {1, 2, 4, 8};
    for (int ki = 0; ki < 4; ki++) {
        const int kv = kvs[ki], H = 4 * kv, hd = 128, T = 2048;
        const size_t most = kern_cuda_attn_splitkv_workspace_max(T, H, kv, hd, n_sm);
        for (int M = 1; M <= T; M++)
            for (int keys = 1; keys <= 1 << 16; keys *= 3) {
                const int S = kern_cuda_attn_splitkv_splits(M, kv, keys, n_sm);
                assert_true(S >= 1 && S <= KERN_CUDA_SPLITKV_MAX);
                assert_true(kern_cuda_attn_splitkv_workspace_bytes(M, H, hd, S) <= most);
            }
        printf("  splitkv workspace for T=%d H=%d KV=%d hd=%d on %d SMs: %zu bytes\n", T, H, kv, hd, n_sm, most);
    }
}

/* ---- bf16 KV cache (the invariant and standard modes' cache: kv_elem.cuh)
 *
 * kern_cuda_kv_write_bf16 stores br_f32_to_bf16 (the host's rounding, a separate implementation) of every value,
 * specials included. Then, for every attention entry point, a bf16 cache filled from UNROUNDED K/V gives exactly the
 * bits of the f32 entry point on a cache filled from the host-rounded K/V (the kernels widen exactly and do the same
 * arithmetic); decode == prefill chunks 1 / 16 / 256 == the fused decode (each kernel choice) on the bf16 cache; and
 * the result is within 1e-5 + 1e-4 |ref| of kern_cpu_attention on the host-rounded K/V. */
static void round_kv(attn_case *a) {
    const size_t n = (size_t)a->total * a->c.n_kv * a->c.hd;
    free(to_bf16(a->k, n));
    free(to_bf16(a->v, n));
}

static void test_kv_write_bf16(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    enum { NV = 4096 };
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                                       0x00000001u, 0x807fffffu, 0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu,
                                       0x3f807fffu, 0xff7fffffu, 0x00008000u, 0x00018000u};
    float *x = rand_f32(NV, 3.0f);
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) memcpy(x + i, special + i, 4);
    for (int i = 64; i < NV; i += 7) x[i] *= 1.1e38f; /* magnitudes up to 3.3e38: the largest round to inf */
    /* NV values as 64 tokens x (2 KV heads x hd 32) of one sequence, pages of 16 in a shuffled order */
    const int hd = 32, n_kv = 2, T = NV / (hd * n_kv), P = 16, n_pages = T / P;
    int32_t pages[4] = {2, 0, 3, 1}, pt[64], pos[64];
    for (int t = 0; t < T; t++) pt[t] = 0, pos[t] = t;
    float *dx = dev_copy(x, NV * 4);
    void *dpages = dev_copy(pages, sizeof pages), *dpt = dev_copy(pt, sizeof pt), *dpos = dev_copy(pos, sizeof pos);
    uint16_t *dk = kern_cuda_malloc((size_t)n_pages * P * n_kv * hd * 2), *dv = kern_cuda_malloc((size_t)n_pages * P * n_kv * hd * 2);
    kern_cuda_kv_write_bf16(dk, dv, dx, dx, dpages, dpt, dpos, T, P, n_kv, hd, NULL);
    uint16_t *hk = malloc(NV * 2), *hv = malloc(NV * 2);
    assert_true(hk && hv);
    kern_cuda_download(hk, dk, NV * 2);
    kern_cuda_download(hv, dv, NV * 2);
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n_kv * hd; e++) {
            const size_t slot = ((size_t)pages[t / P] * P + t % P) * n_kv * hd + e;
            const float v = x[t * n_kv * hd + e];
            const uint16_t want = br_f32_to_bf16(v);
            const int nan = v != v;
            const int ok_k = nan ? (hk[slot] & 0x7fff) > 0x7f80 : hk[slot] == want;
            const int ok_v = nan ? (hv[slot] & 0x7fff) > 0x7f80 : hv[slot] == want;
            if (!(ok_k && ok_v)) {
                if (bad < 5) printf("  kv_write_bf16: %a -> %04x / %04x, want %04x\n", v, hk[slot], hv[slot], want);
                bad++;
            }
        }
    printf("  kv_write_bf16: %d of %d values (%zu specials) differ from the host's rounding\n", bad, NV,
           sizeof special / sizeof special[0]);
    kern_cuda_free(dx), kern_cuda_free(dpages), kern_cuda_free(dpt), kern_cuda_free(dpos), kern_cuda_free(dk);
    kern_cuda_free(dv);
    free(x), free(hk), free(hv);
    assert_int_equal(bad, 0);
}

/* attn_small on a bf16 or f32 cache, every token of every sequence in one call. out (total, n_heads, hd). */
static float *small_run(const attn_case *a, int b16) {
    const attn_cfg c = a->c;
    const size_t slot = (size_t)c.n_kv * c.hd, qrow = (size_t)c.n_heads * c.hd;
    const size_t pool = (size_t)a->n_pages * c.page_size * slot * (b16 ? 2 : 4);
    void *dk = kern_cuda_malloc(pool), *dv = kern_cuda_malloc(pool);
    kern_cuda_memset(dk, 0x7f, pool), kern_cuda_memset(dv, 0x7f, pool);
    void *dpages = dev_copy(a->pages, sizeof(int32_t) * a->n_seqs * a->max_pages);
    int32_t *hpt = malloc(sizeof(int32_t) * a->total), *hpos = malloc(sizeof(int32_t) * a->total);
    assert_true(hpt && hpos);
    for (int s = 0; s < a->n_seqs; s++)
        for (int t = 0; t < a->lens[s]; t++) hpt[a->first[s] + t] = s * a->max_pages, hpos[a->first[s] + t] = t;
    int32_t *dpt = dev_copy(hpt, sizeof(int32_t) * a->total), *dpos = dev_copy(hpos, sizeof(int32_t) * a->total);
    float *dkn = dev_copy(a->k, a->total * slot * 4), *dvn = dev_copy(a->v, a->total * slot * 4);
    float *dq = dev_copy(a->q, a->total * qrow * 4), *dout = dev_poison(a->total * qrow * 4);
    const float scale = 1.0f / sqrtf((float)c.hd);
    if (b16) {
        kern_cuda_kv_write_bf16(dk, dv, dkn, dvn, dpages, dpt, dpos, a->total, c.page_size, c.n_kv, c.hd, NULL);
        kern_cuda_attn_small_bf16(dout, dq, dk, dv, dpages, dpt, dpos, a->total, c.n_heads, c.n_kv, c.hd, c.page_size,
                                  scale, NULL);
    } else {
        kern_cuda_kv_write(dk, dv, dkn, dvn, dpages, dpt, dpos, a->total, c.page_size, c.n_kv, c.hd, NULL);
        kern_cuda_attn_small(dout, dq, dk, dv, dpages, dpt, dpos, a->total, c.n_heads, c.n_kv, c.hd, c.page_size, scale,
                             NULL);
    }
    float *out = host_of(dout, a->total * qrow);
    kern_cuda_free(dk), kern_cuda_free(dv), kern_cuda_free(dpages), kern_cuda_free(dpt), kern_cuda_free(dpos);
    kern_cuda_free(dkn), kern_cuda_free(dvn), kern_cuda_free(dq), kern_cuda_free(dout);
    free(hpt), free(hpos);
    return out;
}

static void test_attention_bf16_cache(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const attn_cfg cfgs[] = {{16, 8, 128, 16}, {8, 2, 64, 32}, {32, 4, 256, 16}, {16, 1, 32, 16},
                                    {32, 32, 64, 16}, {8, 4, 16, 16}, {4, 2, 8, 7}};
    static const int lens[] = {300, 77, 1, 513, 33};
    int bad = 0;
    attn_bf16_mismatch = 0;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const attn_cfg c = cfgs[ci];
        attn_case a, r; /* the same draw, unrounded (a) and with K/V rounded on the host (r) */
        const uint64_t seed = g_rng;
        attn_case_init(&a, c, lens, 5);
        g_rng = seed;
        attn_case_init(&r, c, lens, 5);
        round_kv(&r);
        const size_t n = (size_t)a.total * c.n_heads * c.hd;
        float *ref = attn_cpu_run(&r);
        char what[112];
        if (c.hd < 32) { /* attention_small.cu */
            float *got = small_run(&a, 1), *f32 = small_run(&r, 0);
            snprintf(what, sizeof what, "small bf16 cache vs CPU (H=%d KV=%d hd=%d)", c.n_heads, c.n_kv, c.hd);
            bad += check_close(what, got, ref, n, 1e-5, 1e-4);
            snprintf(what, sizeof what, "small bf16 cache vs f32 cache (H=%d KV=%d hd=%d)", c.n_heads, c.n_kv, c.hd);
            const int diff = check_same(what, got, f32, n);
            printf("  %-66s %s\n", what, diff ? "DIFFERENT" : "bitwise equal");
            bad += diff;
            free(got), free(f32), free(ref);
            attn_case_free(&a), attn_case_free(&r);
            continue;
        }
        attn_kv_bf16 = 1;
        float *dec = attn_gpu_run(&a, 0);
        attn_kv_bf16 = 0;
        float *dec32 = attn_gpu_run(&r, 0);
        snprintf(what, sizeof what, "attn decode bf16 cache vs CPU (H=%d KV=%d hd=%d)", c.n_heads, c.n_kv, c.hd);
        bad += check_close(what, dec, ref, n, 1e-5, 1e-4);
        snprintf(what, sizeof what, "attn decode bf16 cache vs f32 cache (H=%d KV=%d hd=%d)", c.n_heads, c.n_kv, c.hd);
        int diff = check_same(what, dec, dec32, n);
        printf("  %-66s %s\n", what, diff ? "DIFFERENT" : "bitwise equal");
        bad += diff;
        attn_kv_bf16 = 1;
        bad += attn_same_as_decode(&a, dec, "bf16 cache ");
        /* split-KV (standard mode): the same kernel on either cache, for 1 and 7 splits */
        splitkv_rows *rows = malloc(sizeof *rows);
        assert_non_null(rows);
        for (int k = 0; k < 2 && c.n_heads / c.n_kv <= 32; k++) {
            if (k == 0) rows_last(rows, &a);
            else rows_mixed(rows, &a);
            for (int S = 1; S <= 7; S += 6) {
                attn_kv_bf16 = 1;
                float *g16 = splitkv_gpu_run(&a, rows, S);
                attn_kv_bf16 = 0;
                float *g32 = splitkv_gpu_run(&r, rows, S);
                snprintf(what, sizeof what, "splitkv S=%d %s bf16 cache vs f32 cache (H=%d KV=%d hd=%d)", S,
                         rows->name, c.n_heads, c.n_kv, c.hd);
                diff = check_same(what, g16, g32, (size_t)rows->M * c.n_heads * c.hd);
                printf("  %-66s %s\n", what, diff ? "DIFFERENT" : "bitwise equal");
                bad += diff;
                free(g16), free(g32);
            }
        }
        attn_kv_bf16 = 0;
        free(rows), free(ref), free(dec), free(dec32);
        attn_case_free(&a), attn_case_free(&r);
    }
    printf("  attn bf16 cache decode fused: %ld bf16 outputs differ from the cast of the f32 output\n",
           attn_bf16_mismatch);
    assert_int_equal(attn_bf16_mismatch, 0);
    assert_int_equal(bad, 0);
}

/* ---- Vocabulary rows (kern_cuda_vocab_rows, the engine's one vocabulary kernel) against the CPU reference:
 * the log-prob formed as the engine forms it, (x_t / T - m) - lse, within 1e-5 of kern_cpu_logprob; the greedy
 * token == kern_cpu_argmax exactly (ties, a NaN, an all-equal row); the digest == kern_cpu_digest exactly; a row
 * alone == the same row in a call of 6 (memcmp of every field). Gumbel rows and calls of more than 65535 rows:
 * test_engine_kernels. */

/* The rows of x (M, V) (device) with the given mode and targets; out (M) host. */
static void vocab_run(kern_row_out *out, const float *dx, int M, int V, float T, int32_t mode, const int32_t *tok) {
    kern_row_req req[6];
    for (int m = 0; m < M; m++) {
        const kern_row_req q = {T, mode, tok ? tok[m] : -1, m, 0, 0};
        req[m] = q;
    }
    kern_row_req *dreq = dev_copy(req, sizeof(kern_row_req) * (size_t)M);
    kern_row_out *dout = dev_poison(sizeof(kern_row_out) * (size_t)M);
    const size_t wsb = kern_cuda_vocab_rows_workspace(M, V);
    void *ws = kern_cuda_malloc(wsb);
    kern_cuda_vocab_rows(dout, dx, dreq, M, V, ws, wsb, NULL);
    kern_cuda_download(out, dout, sizeof(kern_row_out) * (size_t)M);
    kern_cuda_free(dreq), kern_cuda_free(dout), kern_cuda_free(ws);
}

static void test_vocab(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Vs[] = {1024, 151936, 1000, 61, 4097, 32000};
    enum { M = 6 };
    int bad = 0;
    for (size_t s = 0; s < sizeof Vs / sizeof Vs[0]; s++) {
        const int V = Vs[s];
        const size_t n = (size_t)M * V;
        float *x = rand_f32(n, 12.0f);
        /* Ties and NaNs for argmax: row 1 has its max twice, row 2 a NaN first, row 3 all equal. */
        x[1 * (size_t)V + V / 3] = 50.0f, x[1 * (size_t)V + V / 2] = 50.0f;
        x[2 * (size_t)V + 0] = NAN;
        for (int i = 0; i < V; i++) x[3 * (size_t)V + i] = -1.0f;
        int32_t tok[M];
        for (int m = 0; m < M; m++) tok[m] = (int32_t)((m * 7919) % V);
        float *dx = dev_copy(x, n * 4);
        const float T = 0.7f;
        char what[64];
        kern_row_out tgt[M], grd[M], one;
        vocab_run(tgt, dx, M, V, T, KERN_ROW_TARGET, tok);
        vocab_run(grd, dx, M, V, 1.0f, KERN_ROW_GREEDY, NULL);
        /* Row 2 holds a NaN: its log-sum-exp is NaN on both sides; compare the other rows. */
        float lp[M], lref[M];
        for (int m = 0; m < M; m++) {
            lp[m] = (tgt[m].x_token / T - tgt[m].m) - tgt[m].lse;
            lref[m] = kern_cpu_logprob(x + (size_t)m * V, V, T, tok[m]);
            if (tgt[m].token != tok[m] || memcmp(&tgt[m].x_token, &x[(size_t)m * V + tok[m]], 4) != 0) {
                printf("  vocab_rows V=%d row %d: target %d came back as token %d\n", V, m, tok[m], tgt[m].token);
                bad++;
            }
        }
        lp[2] = lref[2] = 0;
        snprintf(what, sizeof what, "vocab_rows logprob V=%d", V);
        bad += check_close(what, lp, lref, M, 1e-5, 1e-5);
        int dbad = 0, abad = 0;
        for (int m = 0; m < M; m++) {
            const float *xr = x + (size_t)m * V;
            if (grd[m].token != kern_cpu_argmax(xr, V)) {
                printf("  argmax V=%d row %d: gpu %d cpu %d\n", V, m, grd[m].token, kern_cpu_argmax(xr, V));
                abad++;
            }
            dbad += tgt[m].digest != kern_cpu_digest(xr, V) || grd[m].digest != tgt[m].digest;
        }
        printf("  argmax/digest V=%-7d argmax: %d of %d rows differ, digest: %d of %d rows differ from the CPU's\n", V,
               abad, M, dbad, M);
        bad += abad + dbad;
        /* Row invariance: the last row alone, every field. */
        vocab_run(&one, dx + (size_t)(M - 1) * V, 1, V, T, KERN_ROW_TARGET, &tok[M - 1]);
        if (memcmp(&one, &tgt[M - 1], sizeof one) != 0) {
            printf("  vocab_rows V=%d: row %d alone differs from the same row in a call of %d\n", V, M - 1, M);
            bad++;
        }
        free(x);
        kern_cuda_free(dx);
    }
    assert_int_equal(bad, 0);
}

/* ---- Top-k / top-p sampling on the device (kern_cuda_sample_filter) against the host sampler: after
 * kern_cuda_vocab_rows (filter rows ask for target -1, as the engine does), the device token == rollout_sample's for
 * the same row (T 0.7 / 1 / 1.3, top_k 0 / 1 / 40 / V, top_p 1 / 0.95 / 0.5 / 1e-6), x_token == the row's logit and
 * m, lse, digest untouched (memcmp); rows with random logits, flat ones (top-p prefixes of many tiles), quantised ones
 * (ties everywhere), a +0/-0 pair on top, -inf, NaNs; calls of several groups. Invariance: a row alone == the same row
 * in calls of other sizes, group sizes and orders (memcmp of every field). */

enum { SF_KINDS = 6 };
static const char *const sf_kind_name[SF_KINDS] = {"random", "flat", "quantised", "+0/-0 top", "-inf", "NaN"};

/* One row of logits of the given kind; variant picks which of the +0/-0 pair comes first. */
static void sf_fill_row(float *x, int V, int kind, int variant) {
    for (int j = 0; j < V; j++) x[j] = frand() * (kind == 1 ? 0.5f : 12.0f);
    if (kind == 2)
        for (int j = 0; j < V; j++) x[j] = roundf(x[j] * 0.5f) * 2.0f; /* 13 values: ties everywhere */
    if (kind == 3) {
        for (int j = 0; j < V; j++) x[j] = -fabsf(x[j]) - 1e-3f;
        x[V / 3] = variant & 1 ? 0.0f : -0.0f;
        x[2 * (V / 3)] = variant & 1 ? -0.0f : 0.0f;
    }
    if (kind == 4) x[0] = -INFINITY, x[V / 2] = -INFINITY, x[V - 1] = -INFINITY;
    if (kind == 5) x[0] = NAN, x[V / 5] = NAN, x[7] = -INFINITY;
}

/* kern_cuda_sample_filter on a fresh copy of out0 (R) with a workspace for passes of G rows; res (R) host. */
static void sf_run(kern_row_out *res, const kern_row_out *out0, const float *dx, const kern_row_req *dreq,
                   const kern_filter_req *fh, int n, int R, int V, int G) {
    kern_row_out *dout = dev_copy(out0, sizeof(kern_row_out) * (size_t)R);
    kern_filter_req *df = dev_copy(fh, sizeof(kern_filter_req) * (size_t)n);
    const size_t wsb = kern_cuda_sample_filter_workspace(G, V);
    void *ws = kern_cuda_malloc(wsb);
    kern_cuda_sample_filter(dout, dx, dreq, df, fh, n, V, ws, wsb, NULL);
    kern_cuda_download(res, dout, sizeof(kern_row_out) * (size_t)R);
    kern_cuda_free(dout), kern_cuda_free(df), kern_cuda_free(ws);
}

/* kern_cuda_vocab_rows of x (R, V) (device) for the rows of req (R, host); out0 (R) host, dreq: req on the device. */
static kern_row_req *sf_vocab(kern_row_out *out0, const float *dx, const kern_row_req *req, int R, int V) {
    kern_row_req *dreq = dev_copy(req, sizeof(kern_row_req) * (size_t)R);
    kern_row_out *dout = dev_poison(sizeof(kern_row_out) * (size_t)R);
    const size_t wsb = kern_cuda_vocab_rows_workspace(R, V);
    void *ws = kern_cuda_malloc(wsb);
    kern_cuda_vocab_rows(dout, dx, dreq, R, V, ws, wsb, NULL);
    kern_cuda_download(out0, dout, sizeof(kern_row_out) * (size_t)R);
    kern_cuda_free(dout), kern_cuda_free(ws);
    return dreq;
}

static void test_sample_filter_vs_host(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Vs[] = {1000, 4097, 151936};
    static const float Ts[] = {0.7f, 1.0f, 1.3f}, Ps[] = {1.0f, 0.95f, 0.5f, 1e-6f};
    int bad = 0;
    for (size_t s = 0; s < sizeof Vs / sizeof Vs[0]; s++) {
        const int V = Vs[s], Ks[] = {0, 1, 40, V};
        const int R = SF_KINDS * 3 * (4 * 4 - 1); /* every (kind, T, top_k, top_p) but top_k = 0 with top_p = 1 */
        float *x = malloc(sizeof(float) * (size_t)R * V);
        kern_row_req *req = malloc(sizeof(kern_row_req) * (size_t)R);
        kern_filter_req *fh = malloc(sizeof(kern_filter_req) * (size_t)R);
        int *kind = malloc(sizeof(int) * (size_t)R);
        kern_row_out *out0 = malloc(sizeof(kern_row_out) * (size_t)R), *res = malloc(sizeof(kern_row_out) * (size_t)R);
        kern_row_out *res8 = malloc(sizeof(kern_row_out) * (size_t)R);
        void *scratch = malloc(rollout_sample_scratch_bytes(V));
        assert_true(x && req && fh && kind && out0 && res && res8 && scratch);
        const uint64_t seed = 0x5eedull + (uint64_t)s;
        int r = 0;
        for (int kd = 0; kd < SF_KINDS; kd++)
            for (int ti = 0; ti < 3; ti++)
                for (int ki = 0; ki < 4; ki++)
                    for (int pi = 0; pi < 4; pi++) {
                        if (Ks[ki] == 0 && Ps[pi] == 1.0f) continue; /* no filter: kern_cuda_vocab_rows' Gumbel mode */
                        sf_fill_row(x + (size_t)r * V, V, kd, r);
                        const kern_row_req q = {Ts[ti], KERN_ROW_TARGET, -1, 17 + 13 * r, seed, (uint64_t)(1000 + r)};
                        const kern_filter_req fr = {r, Ks[ki], Ps[pi]};
                        req[r] = q, fh[r] = fr, kind[r] = kd;
                        r++;
                    }
        assert_int_equal(r, R);
        float *dx = dev_copy(x, sizeof(float) * (size_t)R * V);
        kern_row_req *dreq = sf_vocab(out0, dx, req, R, V);
        sf_run(res, out0, dx, dreq, fh, R, R, V, 64); /* R > 64: several groups, each one segmented sort */
        sf_run(res8, out0, dx, dreq, fh, R, R, V, 8); /* groups of 8: sorted row by row, device wide */
        int gbad = 0;
        for (r = 0; r < R; r++) gbad += memcmp(&res8[r], &res[r], sizeof res[r]) != 0;
        /* The filter's lse (kern_cuda_cpuo_lse_rows: rows in reverse order, every third skipped) ==
         * kern_cuda_cpuo_lse's and both are the CPU's row_lse: (x_0 / T - m) - lse == kern_cpu_logprob(x, V, T, 0) bit
         * for bit (NaN rows: both NaN). */
        int lbad = 0;
        {
            int32_t *rows = malloc(sizeof(int32_t) * (size_t)R);
            float *lse = malloc(sizeof(float) * (size_t)R);
            kern_row_out *cpuo = malloc(sizeof(kern_row_out) * (size_t)R);
            assert_true(rows && lse && cpuo);
            for (int i = 0; i < R; i++) rows[i] = i % 3 == 2 ? -1 : R - 1 - i;
            kern_row_out *dout = dev_copy(out0, sizeof(kern_row_out) * (size_t)R);
            int32_t *drows = dev_copy(rows, sizeof(int32_t) * (size_t)R);
            float *dlse = dev_poison(sizeof(float) * (size_t)R);
            kern_cuda_cpuo_lse_rows(dlse, dout, dx, dreq, drows, R, V, NULL);
            kern_cuda_cpuo_lse(dout, dx, dreq, R, V, NULL);
            kern_cuda_download(lse, dlse, sizeof(float) * (size_t)R);
            kern_cuda_download(cpuo, dout, sizeof(kern_row_out) * (size_t)R);
            for (int i = 0; i < R; i++) {
                const int rr = R - 1 - i;
                const float T = req[rr].temperature, *xr = x + (size_t)rr * V;
                const float lp = (xr[0] / T - cpuo[rr].m) - cpuo[rr].lse, ref = kern_cpu_logprob(xr, V, T, 0);
                if (isnan(lp) != isnan(ref) || (!isnan(ref) && memcmp(&lp, &ref, 4) != 0)) lbad++;
                if (rows[i] >= 0 && memcmp(&lse[i], &cpuo[rr].lse, 4) != 0) lbad++;
            }
            kern_cuda_free(dout), kern_cuda_free(drows), kern_cuda_free(dlse);
            free(rows), free(lse), free(cpuo);
        }
        int tbad = 0, xbad = 0, kept_bad = 0, max_n = 0;
        for (r = 0; r < R; r++) {
            const float *xr = x + (size_t)r * V;
            const rollout_sampling sp = {.temperature = req[r].temperature, .top_p = fh[r].top_p, .top_k = fh[r].top_k,
                                         .seed = seed};
            const int32_t ref = rollout_sample(xr, V, &sp, req[r].sample_id, req[r].position, scratch);
            if (kind[r] == 1 && fh[r].top_p < 1.0f) {
                const int nk = rollout_filter(xr, V, &sp, (int32_t *)scratch, scratch);
                if (nk > max_n) max_n = nk;
            }
            if (res[r].token != ref) {
                if (tbad < 8)
                    printf("  sample_filter V=%d row %d (%s, T %.2g, top_k %d, top_p %.2g): gpu %d host %d\n", V, r,
                           sf_kind_name[kind[r]], (double)req[r].temperature, fh[r].top_k, (double)fh[r].top_p,
                           res[r].token, ref);
                tbad++;
                continue;
            }
            if (memcmp(&res[r].x_token, &xr[ref], 4) != 0) xbad++;
            kept_bad += memcmp(&res[r].m, &out0[r].m, 4) != 0 || memcmp(&res[r].lse, &out0[r].lse, 4) != 0 ||
                        res[r].digest != out0[r].digest;
        }
        printf("  sample_filter V=%-7d %d rows: tokens %d differ from rollout_sample, x_token %d differ, m/lse/digest "
               "%d changed; longest top-p prefix of the flat rows %d; CPU-order lse %d differ; groups of 8 %d differ\n",
               V, R, tbad, xbad, kept_bad, max_n, lbad, gbad);
        bad += tbad + xbad + kept_bad + lbad + gbad;
        kern_cuda_free(dx), kern_cuda_free(dreq);
        free(x), free(req), free(fh), free(kind), free(out0), free(res), free(res8), free(scratch);
    }
    assert_int_equal(bad, 0);
}

static void test_sample_filter_invariance(void **state) {
    (void)state;
    if (!have_gpu()) skip();
    static const int Vs[] = {4097, 151936};
    enum { R = 12 };
    int bad = 0;
    for (size_t s = 0; s < sizeof Vs / sizeof Vs[0]; s++) {
        const int V = Vs[s];
        float *x = malloc(sizeof(float) * (size_t)R * V);
        assert_non_null(x);
        kern_row_req req[R];
        kern_filter_req fh[R], rev[R];
        static const int Ks[] = {0, 1, 40, 0, 7, 0};
        static const float Ps[] = {0.9f, 1.0f, 0.95f, 0.5f, 0.3f, 1e-6f};
        for (int r = 0; r < R; r++) {
            sf_fill_row(x + (size_t)r * V, V, r % SF_KINDS, r);
            const kern_row_req q = {r % 3 ? 1.0f : 0.8f, KERN_ROW_TARGET, -1, 100 + r, 42, (uint64_t)r};
            const kern_filter_req fr = {r, Ks[r % 6] ? Ks[r % 6] : (r % 4 ? 0 : V), Ps[r % 6]};
            req[r] = q, fh[r] = fr, rev[R - 1 - r] = fr;
        }
        float *dx = dev_copy(x, sizeof(float) * (size_t)R * V);
        kern_row_out out0[R], all[R], one[R], other[R];
        kern_row_req *dreq = sf_vocab(out0, dx, req, R, V);
        sf_run(all, out0, dx, dreq, fh, R, R, V, 5); /* 3 groups of <= 5, sorted row by row */
        for (int r = 0; r < R; r++) {                 /* each row alone: n = 1, a one-row workspace */
            kern_row_out single[R];
            sf_run(single, out0, dx, dreq, &fh[r], 1, R, V, 1);
            one[r] = single[r];
        }
        sf_run(other, out0, dx, dreq, rev, R, R, V, 64); /* one group (a segmented sort), rows in reverse order */
        int d = 0;
        for (int r = 0; r < R; r++) {
            const int a = memcmp(&one[r], &all[r], sizeof one[r]) != 0;
            const int b = memcmp(&other[r], &all[r], sizeof all[r]) != 0;
            if ((a || b) && d < 5)
                printf("  sample_filter V=%d row %d: alone %d, in 3 groups %d, reversed in one group %d\n", V, r,
                       one[r].token, all[r].token, other[r].token);
            d += a + b;
        }
        printf("  sample_filter invariance V=%-7d %d rows: %d differences (alone / 3 groups / one group reversed)\n", V,
               R, d);
        bad += d;
        kern_cuda_free(dx), kern_cuda_free(dreq);
        free(x);
    }
    assert_int_equal(bad, 0);
}

int main(void) {
    if (kern_cuda_device_count() > 0) {
        char name[256];
        kern_cuda_device_name(0, name, sizeof name);
        printf("device 0: %s\n", name);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_vs_cpu),  cmocka_unit_test(test_gemm_f32_weights),
        cmocka_unit_test(test_gemm_f32_small), cmocka_unit_test(test_gemm_f32_tiled),
        cmocka_unit_test(test_gemm_f32_invariance), cmocka_unit_test(test_gemm_f32_chunks),
        cmocka_unit_test(test_gemm_batch_invariance), cmocka_unit_test(test_gemm_rowpar),
        cmocka_unit_test(test_gemm_small_tma), cmocka_unit_test(test_cpuo_norm), cmocka_unit_test(test_norms),
        cmocka_unit_test(test_elementwise),  cmocka_unit_test(test_attention), cmocka_unit_test(test_cpuo_attention),
        cmocka_unit_test(test_attention_splitkv), cmocka_unit_test(test_attention_splitkv_deterministic),
        cmocka_unit_test(test_attention_splitkv_choice), cmocka_unit_test(test_kv_write_bf16),
        cmocka_unit_test(test_attention_bf16_cache), cmocka_unit_test(test_attention_qk_norm),
        cmocka_unit_test(test_attention_split), cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_sample_filter_vs_host), cmocka_unit_test(test_sample_filter_invariance),
    };
    const char *filter = getenv("BR_TEST_FILTER"); /* e.g. BR_TEST_FILTER='test_gemm_rowpar' */
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
