/* The CUDA kernels against their rooflines, measured side by side in one run (`bitroll bench` and
 * bench/bench_kernels):
 *   - device copy bandwidth (the memory roofline, read + write bytes);
 *   - invariant GEMM vs cuBLAS (standard mode) TFLOP/s on large shapes;
 *   - decode-shaped GEMM (M = 1, 8, 64) GB/s of weight + activation traffic vs the copy roofline;
 *   - paged attention: decode GB/s of K/V traffic, prefill time.
 * Timing: cudaEvent around R back-to-back launches (inputs rotated over copies larger than L2), repeated,
 * median per launch reported, after warm-up. */
#include "bench/kernel_bench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/kernel_bench.h"
#include "common/br.h"
#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"
#endif

#ifndef BR_HAVE_CUDA
int bench_kernel_table(const char *json_path, const char *sections, const br_tuning *t) {
    (void)json_path;
    (void)sections;
    (void)t;
    printf("kernel benchmark: built without the CUDA backend: nothing to measure\n");
    return 1;
}
#else

#define SPEC_HBM_GBS 3350.0 /* H100 SXM5 80 GB datasheet */

static FILE *g_json;
static int g_json_first = 1;
static void json_rec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void json_rec(const char *fmt, ...) {
    if (!g_json) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(g_json, "%s\n    {", g_json_first ? "" : ",");
    vfprintf(g_json, fmt, ap);
    fprintf(g_json, "}");
    g_json_first = 0;
    va_end(ap);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef void (*launch_fn)(void *arg, int rep);

/* Median milliseconds per launch: `reps` timings of `inner` back-to-back launches, after `warm` launches. */
static double time_ms(launch_fn fn, void *arg, int warm, int inner, int reps) {
    kern_cuda_timer *t = kern_cuda_timer_create();
    float ms[64];
    if (reps > 64) reps = 64;
    int k = 0;
    for (int i = 0; i < warm; i++) fn(arg, k++);
    kern_cuda_sync();
    for (int r = 0; r < reps; r++) {
        kern_cuda_timer_start(t, NULL);
        for (int i = 0; i < inner; i++) fn(arg, k++);
        ms[r] = kern_cuda_timer_stop_ms(t, NULL) / (float)inner;
    }
    kern_cuda_timer_free(t);
    qsort(ms, (size_t)reps, sizeof(float), cmp_f);
    return ms[reps / 2];
}

static uint64_t g_rng = 42;
static float frand(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
/* Random bf16 buffer on the device (never zeros: zeros can run faster than real data). */
static void *host_buf(size_t bytes) {
    void *h = malloc(bytes);
    if (!h) {
        fprintf(stderr, "kernel benchmark: out of host memory (%zu bytes)\n", bytes);
        exit(3);
    }
    return h;
}
static void *dev_rand_bf16(size_t n, float scale) {
    uint16_t *h = host_buf(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = br_f32_to_bf16(frand() * scale);
    void *d = kern_cuda_malloc(n * 2);
    kern_cuda_upload(d, h, n * 2);
    free(h);
    return d;
}
static void *dev_rand_f32(size_t n, float scale) {
    float *h = host_buf(n * 4);
    for (size_t i = 0; i < n; i++) h[i] = frand() * scale;
    void *d = kern_cuda_malloc(n * 4);
    kern_cuda_upload(d, h, n * 4);
    free(h);
    return d;
}

/* ---- copy */
typedef struct {
    float *a, *b;
    size_t n;
} copy_arg;
static void run_copy(void *p, int rep) {
    copy_arg *c = p;
    if (rep & 1) kern_cuda_copy_f32(c->a, c->b, c->n, NULL);
    else kern_cuda_copy_f32(c->b, c->a, c->n, NULL);
}

/* ---- GEMM */
typedef struct {
    int M, N, K, ncopy, standard;
    int chunks;   /* > 0: the row-parallel GEMM with this many K chunks */
    float *ws;    /* its workspace */
    size_t ws_bytes;
    void *x;  /* (M, K) bf16 */
    void **w; /* ncopy x (N, K) bf16 */
    float *out;
} gemm_arg;
static void run_gemm(void *p, int rep) {
    gemm_arg *g = p;
    const void *w = g->w[rep % g->ncopy];
    if (g->standard) kern_cuda_gemm_standard(g->out, g->x, w, NULL, g->M, g->N, g->K, NULL);
    else if (g->chunks)
        kern_cuda_gemm_bf16_rowpar(g->out, g->ws, g->ws_bytes, g->x, w, NULL, g->M, g->N, g->K, g->chunks, NULL);
    else kern_cuda_gemm_bf16(g->out, g->x, w, NULL, g->M, g->N, g->K, NULL);
}

/* the fp32 mode's GEMM: x (M, K) f32, W ncopy x (N, K) bf16 */
typedef struct {
    int M, N, K, ncopy;
    float *x, *out;
    void **w;
} gemm_f32_arg;
static void run_gemm_f32(void *p, int rep) {
    gemm_f32_arg *g = p;
    kern_cuda_gemm_f32(g->out, g->x, g->w[rep % g->ncopy], KERN_BF16, NULL, g->M, g->N, g->K, NULL);
}

static void gemm_setup(gemm_arg *g, int M, int N, int K, size_t min_bytes) {
    memset(g, 0, sizeof *g);
    g->M = M, g->N = N, g->K = K;
    size_t wb = (size_t)N * K * 2;
    g->ncopy = (int)((min_bytes + wb - 1) / wb);
    if (g->ncopy < 1) g->ncopy = 1;
    g->x = dev_rand_bf16((size_t)M * K, 1.0f);
    g->w = malloc(sizeof(void *) * g->ncopy);
    for (int i = 0; i < g->ncopy; i++) g->w[i] = dev_rand_bf16((size_t)N * K, 0.05f);
    g->out = kern_cuda_malloc((size_t)M * N * 4);
}
static void gemm_teardown(gemm_arg *g) {
    kern_cuda_free(g->x);
    for (int i = 0; i < g->ncopy; i++) kern_cuda_free(g->w[i]);
    free(g->w);
    kern_cuda_free(g->out);
}

/* ---- attention */
typedef struct {
    int B, ctx, n_heads, n_kv, hd, page, prefill, b16; /* b16: a bf16 cache (the invariant mode's), else f32 */
    int splits;                                        /* > 0: decode by the ordered split (bf16 cache) */
    void *kc, *vc, *ws;
    size_t ws_bytes;
    float *q, *out;
    int32_t *pages, *pt_off, *pos;
    int M;
} attn_arg;
static void run_attn(void *p, int rep) {
    (void)rep;
    attn_arg *a = p;
    const float scale = 1.0f / sqrtf((float)a->hd);
    if (a->splits)
        kern_cuda_attn_decode_split_bf16(a->out, NULL, a->kc, a->vc, NULL, NULL, a->q, NULL, NULL, NULL, 0.0f, a->pages,
                                         a->pt_off, a->pos, a->M, a->n_heads, a->n_kv, a->hd, a->page, scale,
                                         a->splits, a->ctx, a->ws, a->ws_bytes, NULL);
    else if (a->prefill && a->b16)
        kern_cuda_attn_prefill_bf16(a->out, a->q, a->kc, a->vc, a->pages, a->pt_off, a->pos, a->M, a->n_heads, a->n_kv,
                                    a->hd, a->page, scale, NULL);
    else if (a->prefill)
        kern_cuda_attn_prefill(a->out, a->q, a->kc, a->vc, a->pages, a->pt_off, a->pos, a->M, a->n_heads, a->n_kv,
                               a->hd, a->page, scale, NULL);
    else if (a->b16)
        kern_cuda_attn_decode_bf16(a->out, a->q, a->kc, a->vc, a->pages, a->pt_off, a->pos, a->M, a->n_heads, a->n_kv,
                                   a->hd, a->page, scale, NULL);
    else
        kern_cuda_attn_decode(a->out, a->q, a->kc, a->vc, a->pages, a->pt_off, a->pos, a->M, a->n_heads, a->n_kv,
                              a->hd, a->page, scale, NULL);
}
/* B sequences of ctx tokens in a paged pool; decode: one query per sequence at position ctx-1; prefill: every
 * position of every sequence. */
static void attn_setup(attn_arg *a, int B, int ctx, int n_heads, int n_kv, int hd, int page, int prefill, int b16) {
    memset(a, 0, sizeof *a);
    a->B = B, a->ctx = ctx, a->n_heads = n_heads, a->n_kv = n_kv, a->hd = hd, a->page = page, a->prefill = prefill;
    a->b16 = b16;
    const int pps = (ctx + page - 1) / page, n_pages = B * pps;
    const size_t pool = (size_t)n_pages * page * n_kv * hd;
    a->kc = dev_rand_f32(pool, 1.0f);
    a->vc = dev_rand_f32(pool, 1.0f);
    if (b16) { /* the same values rounded to a bf16 cache */
        void *f[2] = {a->kc, a->vc};
        for (int i = 0; i < 2; i++) {
            uint16_t *h = kern_cuda_malloc(pool * 2);
            kern_cuda_cast_bf16_pad(h, f[i], (int)(pool / ((size_t)n_kv * hd)), n_kv * hd, n_kv * hd, NULL);
            kern_cuda_free(f[i]);
            if (i == 0) a->kc = h;
            else a->vc = h;
        }
    }
    int32_t *pages = malloc(sizeof(int32_t) * n_pages);
    /* Scattered pages: i -> (7 i + 3) mod n is a permutation when 7 does not divide n. */
    for (int i = 0; i < n_pages; i++) pages[i] = n_pages % 7 ? (int32_t)(((int64_t)i * 7 + 3) % n_pages) : i;
    a->pages = kern_cuda_malloc(sizeof(int32_t) * n_pages);
    kern_cuda_upload(a->pages, pages, sizeof(int32_t) * n_pages);
    free(pages);
    a->M = prefill ? B * ctx : B;
    int32_t *off = malloc(sizeof(int32_t) * a->M), *pos = malloc(sizeof(int32_t) * a->M);
    for (int m = 0; m < a->M; m++) {
        int s = prefill ? m / ctx : m;
        off[m] = s * pps;
        pos[m] = prefill ? m % ctx : ctx - 1;
    }
    a->pt_off = kern_cuda_malloc(sizeof(int32_t) * a->M);
    a->pos = kern_cuda_malloc(sizeof(int32_t) * a->M);
    kern_cuda_upload(a->pt_off, off, sizeof(int32_t) * a->M);
    kern_cuda_upload(a->pos, pos, sizeof(int32_t) * a->M);
    free(off), free(pos);
    a->q = dev_rand_f32((size_t)a->M * n_heads * hd, 1.0f);
    a->out = kern_cuda_malloc((size_t)a->M * n_heads * hd * 4);
}
static void attn_teardown(attn_arg *a) {
    kern_cuda_free(a->kc), kern_cuda_free(a->vc), kern_cuda_free(a->q), kern_cuda_free(a->out);
    kern_cuda_free(a->pages), kern_cuda_free(a->pt_off), kern_cuda_free(a->pos);
    if (a->ws) kern_cuda_free(a->ws);
}

int bench_kernel_table(const char *json_path, const char *sections, const br_tuning *t) {
    if (kern_cuda_device_count() == 0) {
        printf("kernel benchmark: no CUDA device\n");
        return 1;
    }
    const br_tuning def = br_tuning_default();
    if (!t) t = &def;
    const kern_cuda_tuning kt = {t->pdl != 0, t->gemm_short != 0, t->gemm_rowpar_fused != 0, (int)t->attn_decode,
                                  t->gemm_wgmma != 0, t->gemm_small_tma != 0, t->gemm_small_rx != 0};
    kern_cuda_set_tuning(&kt);
    char name[256], path[1024] = "";
    kern_cuda_device_name(0, name, sizeof name);
    int n_sm = 0, l2 = 0;
    kern_cuda_device_props(&n_sm, &l2);
    if (json_path) snprintf(path, sizeof path, "%s", json_path);
    g_json = NULL;
    g_json_first = 1;
    if (path[0]) {
        g_json = fopen(path, "w");
        if (!g_json) {
            fprintf(stderr, "kernel benchmark: cannot write %s: %s\n", path, strerror(errno));
            return 2;
        }
    }
    if (g_json)
        fprintf(g_json, "{\n  \"device\": \"%s\", \"sms\": %d, \"l2_bytes\": %d, \"spec_hbm_gbs\": %.0f,\n  \"results\": [",
                name, n_sm, l2, SPEC_HBM_GBS);
    printf("device: %s, %d SMs, L2 %d MiB; timing: cudaEvent, median of repeated batches after warm-up\n\n", name,
           n_sm, l2 >> 20);
    const size_t rot_bytes = (size_t)4 * (size_t)l2; /* weights rotated over at least 4x L2 */
    /* sections: "gemm,decode,rowpar,attn" or any subset (the copy roofline always runs); "splitsweep" only when
     * named */
#define SECTION(name) (!sections || !*sections || strstr(sections, name))

    /* Copy roofline: 1 GiB each way. */
    copy_arg c = {0};
    c.n = (size_t)256 << 20;
    c.a = dev_rand_f32(c.n, 1.0f);
    c.b = kern_cuda_malloc(c.n * 4);
    double ms = time_ms(run_copy, &c, 3, 5, 11);
    const double copy_gbs = 2.0 * c.n * 4 / (ms * 1e-3) / 1e9;
    printf("copy (1 GiB read + 1 GiB write): %.3f ms, %.0f GB/s = %.0f%% of the %.0f GB/s spec\n\n", ms, copy_gbs,
           100 * copy_gbs / SPEC_HBM_GBS, SPEC_HBM_GBS);
    json_rec("\"kind\": \"copy\", \"bytes\": %zu, \"ms\": %.4f, \"gbs\": %.1f", 2 * c.n * 4, ms, copy_gbs);
    kern_cuda_free(c.a), kern_cuda_free(c.b);

    /* Large GEMMs. */
    if (SECTION("gemm")) {
        /* the last three: Qwen3-0.6B's q/k/v and gate/up GEMMs in a decode step of 256 and 512 sequences (RL) */
        static const int big[][3] = {{4096, 4096, 4096}, {2048, 11008, 4096}, {2048, 4096, 11008},
                                     {4096, 3072, 1024}, {4096, 1024, 3072},  {512, 4096, 4096},
                                     {256, 4096, 1024},  {256, 6144, 1024},   {512, 6144, 1024}};
        printf("GEMM (bf16 x bf16 -> f32), TFLOP/s\n%-22s %12s %12s %8s\n", "M x N x K", "invariant", "cuBLAS", "ratio");
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
            gemm_arg g;
            gemm_setup(&g, big[i][0], big[i][1], big[i][2], 0);
            const double flop = 2.0 * g.M * g.N * (double)g.K;
            g.standard = 0;
            double t_inv = time_ms(run_gemm, &g, 3, 10, 11);
            g.standard = 1;
            double t_std = time_ms(run_gemm, &g, 3, 10, 11);
            double a = flop / (t_inv * 1e-3) / 1e12, b = flop / (t_std * 1e-3) / 1e12;
            char shp[64];
            snprintf(shp, sizeof shp, "%dx%dx%d", g.M, g.N, g.K);
            printf("%-22s %12.1f %12.1f %7.0f%%\n", shp, a, b, 100 * a / b);
            json_rec("\"kind\": \"gemm\", \"M\": %d, \"N\": %d, \"K\": %d, \"invariant_ms\": %.5f, \"cublas_ms\": %.5f, "
                     "\"invariant_tflops\": %.2f, \"cublas_tflops\": %.2f",
                     g.M, g.N, g.K, t_inv, t_std, a, b);
            gemm_teardown(&g);
    }

    }

    /* Decode-shaped GEMMs: bytes = W + x + out. */
    if (SECTION("decode")) {
        static const int nk[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {3072, 1024}, {1024, 3072}, {4096, 1024}};
        static const int Ms[] = {1, 8, 64};
        printf("\ndecode-shaped GEMM, GB/s (%% of measured copy %.0f GB/s | %% of %.0f spec)\n%-20s %24s %24s\n",
               copy_gbs, SPEC_HBM_GBS, "M x N x K", "invariant", "cuBLAS");
        for (size_t i = 0; i < sizeof nk / sizeof nk[0]; i++)
            for (size_t j = 0; j < 3; j++) {
                gemm_arg g;
                gemm_setup(&g, Ms[j], nk[i][0], nk[i][1], rot_bytes);
                const double bytes = (double)g.N * g.K * 2 + (double)g.M * g.K * 2 + (double)g.M * g.N * 4;
                g.standard = 0;
                double t_inv = time_ms(run_gemm, &g, 5, 20, 15);
                g.standard = 1;
                double t_std = time_ms(run_gemm, &g, 5, 20, 15);
                double a = bytes / (t_inv * 1e-3) / 1e9, b = bytes / (t_std * 1e-3) / 1e9;
                char shp[64];
                snprintf(shp, sizeof shp, "%dx%dx%d", g.M, g.N, g.K);
                printf("%-20s %7.0f (%3.0f%% | %3.0f%%) %7.0f (%3.0f%% | %3.0f%%)   %.1f us vs %.1f us\n", shp, a,
                       100 * a / copy_gbs, 100 * a / SPEC_HBM_GBS, b, 100 * b / copy_gbs, 100 * b / SPEC_HBM_GBS,
                       t_inv * 1e3, t_std * 1e3);
                json_rec("\"kind\": \"gemm_decode\", \"M\": %d, \"N\": %d, \"K\": %d, \"bytes\": %.0f, \"invariant_ms\": "
                         "%.5f, \"cublas_ms\": %.5f, \"invariant_gbs\": %.1f, \"cublas_gbs\": %.1f, \"copy_gbs\": %.1f",
                         g.M, g.N, g.K, bytes, t_inv, t_std, a, b, copy_gbs);
                gemm_teardown(&g);
            }

    }

    /* Row-parallel GEMMs (o_proj, down_proj): K in 8 chunks summed left to right, vs the unchunked kernel. */
    if (SECTION("rowpar")) {
        static const int rp[][3] = {{1024, 2048, 8}, {1024, 3072, 8}, {4096, 4096, 8}, {4096, 12288, 8}};
        static const int rpM[] = {1, 64, 256, 4096};
        printf("\nrow-parallel GEMM (o_proj/down_proj shapes, K in C chunks), microseconds and GB/s or TFLOP/s\n"
               "%-22s %3s %14s %14s %14s\n", "M x N x K", "C", "chunked", "unchunked", "cuBLAS");
        for (size_t i = 0; i < sizeof rp / sizeof rp[0]; i++)
            for (size_t j = 0; j < sizeof rpM / sizeof rpM[0]; j++) {
                gemm_arg g;
                const int M = rpM[j];
                gemm_setup(&g, M, rp[i][0], rp[i][1], M <= 64 ? rot_bytes : 0);
                g.ws_bytes = kern_cuda_gemm_rowpar_ws(M, g.N, g.K, rp[i][2]);
                g.ws = g.ws_bytes ? kern_cuda_malloc(g.ws_bytes) : NULL;
                kern_cuda_gemm_rowpar_ws_prepare(g.ws, g.ws_bytes);
                const int it = M <= 64 ? 20 : 10;
                g.chunks = rp[i][2];
                double t_rp = time_ms(run_gemm, &g, 5, it, 15);
                g.chunks = 0;
                double t_inv = time_ms(run_gemm, &g, 5, it, 15);
                g.standard = 1;
                double t_std = time_ms(run_gemm, &g, 5, it, 15);
                const double bytes = (double)g.N * g.K * 2 + (double)g.M * g.K * 2 + (double)g.M * g.N * 4;
                const double flop = 2.0 * g.M * g.N * (double)g.K;
                const int mem = M <= 64; /* GB/s for decode shapes, TFLOP/s for the rest */
                double f_rp = mem ? bytes / (t_rp * 1e-3) / 1e9 : flop / (t_rp * 1e-3) / 1e12;
                double f_inv = mem ? bytes / (t_inv * 1e-3) / 1e9 : flop / (t_inv * 1e-3) / 1e12;
                double f_std = mem ? bytes / (t_std * 1e-3) / 1e9 : flop / (t_std * 1e-3) / 1e12;
                char shp[64];
                snprintf(shp, sizeof shp, "%dx%dx%d", g.M, g.N, g.K);
                printf("%-22s %3d %7.1f %6.0f %7.1f %6.0f %7.1f %6.0f  %s\n", shp, rp[i][2], t_rp * 1e3, f_rp,
                       t_inv * 1e3, f_inv, t_std * 1e3, f_std, mem ? "GB/s" : "TFLOP/s");
                json_rec("\"kind\": \"gemm_rowpar\", \"M\": %d, \"N\": %d, \"K\": %d, \"chunks\": %d, \"chunked_ms\": %.5f, "
                         "\"unchunked_ms\": %.5f, \"cublas_ms\": %.5f",
                         g.M, g.N, g.K, rp[i][2], t_rp, t_inv, t_std);
                kern_cuda_free(g.ws);
                gemm_teardown(&g);
            }

    }

    /* Attention: decode (K/V bytes read) and prefill. */
    if (SECTION("attn")) {
        static const int at[][7] = {
            /* B, ctx, heads, kv, hd, page, prefill */
            {64, 4096, 32, 8, 128, 16, 0}, {64, 1024, 16, 8, 128, 16, 0}, {256, 512, 16, 8, 128, 16, 0},
            {1, 192, 16, 8, 128, 16, 0},   {1, 4096, 32, 8, 128, 16, 0},  {8, 1024, 16, 8, 128, 16, 1},
            {1, 4096, 32, 8, 128, 16, 1},  {1, 1024, 16, 8, 128, 16, 0}, {1, 16384, 16, 8, 128, 16, 0},
            {4, 8192, 32, 8, 128, 16, 0},
        };
        int n_sm = 0, l2 = 0;
        kern_cuda_device_props(&n_sm, &l2);
        printf("\npaged attention (KV cache f32 or bf16, chunk 32)\n%-46s %10s %12s\n", "case", "ms", "KV GB/s");
        /* each case with an f32 cache, a bf16 cache and, for bf16 decode, the ordered split at the engine's count
         * (kern_cuda_attn_decode_split_count; the row is skipped where that is 1) */
        for (size_t i = 0; i < 3 * (sizeof at / sizeof at[0]); i++) {
            const size_t ci = i / 3;
            const int b16 = i % 3 != 0, split = i % 3 == 2;
            const int S =
                split && !at[ci][6] ? kern_cuda_attn_decode_split_count(at[ci][0], at[ci][3], at[ci][1], n_sm) : 1;
            if (split && S == 1) continue;
            attn_arg a;
            attn_setup(&a, at[ci][0], at[ci][1], at[ci][2], at[ci][3], at[ci][4], at[ci][5], at[ci][6], b16);
            if (split) {
                a.splits = S;
                a.ws_bytes = kern_cuda_attn_decode_split_workspace(a.M, a.n_heads, a.hd, a.ctx);
                a.ws = kern_cuda_malloc(a.ws_bytes);
                kern_cuda_memset(a.ws, 0, a.ws_bytes); /* its counters start at zero */
            }
            double t = time_ms(run_attn, &a, 2, a.prefill ? 1 : 5, a.prefill ? 5 : 11);
            const double kv_bytes = 2.0 * a.B * a.ctx * a.n_kv * a.hd * (b16 ? 2 : 4);
            char desc[96];
            char sp[16] = "";
            if (split) snprintf(sp, sizeof sp, " split %d", S);
            snprintf(desc, sizeof desc, "%s %s%s B=%d ctx=%d H=%d KV=%d hd=%d", a.prefill ? "prefill" : "decode",
                     b16 ? "bf16" : "f32", sp, a.B, a.ctx, a.n_heads, a.n_kv, a.hd);
            if (a.prefill)
                printf("%-46s %10.3f %12s\n", desc, t, "-");
            else
                printf("%-46s %10.3f %12.0f (%3.0f%% of copy)\n", desc, t, kv_bytes / (t * 1e-3) / 1e9,
                       100 * kv_bytes / (t * 1e-3) / 1e9 / copy_gbs);
            json_rec("\"kind\": \"attention\", \"cache\": \"%s\", \"mode\": \"%s\", \"splits\": %d, \"B\": %d, "
                     "\"ctx\": %d, \"heads\": %d, \"kv\": %d, "
                     "\"hd\": %d, \"ms\": %.5f, \"kv_bytes\": %.0f",
                     b16 ? "bf16" : "f32", a.prefill ? "prefill" : "decode", S, a.B, a.ctx, a.n_heads, a.n_kv, a.hd, t,
                     kv_bytes);
            attn_teardown(&a);
        }
    }
    /* The fp32 mode's GEMM (kern_cuda_gemm_f32: the CPU's 8-lane order, no FMA, so a product costs a multiply and
     * an add) on the Qwen3-0.6B shape's q/k/v, gate/up, o_proj and down_proj, against the fp32 issue peak (SMs x 128
     * lanes x the SM clock instructions/s: half as many multiply-adds) and, for the bytes, the copy bandwidth. Only
     * when named ("f32"). */
    if (sections && strstr(sections, "f32")) {
        const double peak = (double)n_sm * 128 * kern_cuda_device_sm_clock_khz() * 1e3 / 2; /* multiply-adds/s */
        static const int nk[][2] = {{4096, 1024}, {6144, 1024}, {1024, 2048}, {1024, 3072}};
        static const int Ms[] = {1, 2, 4, 8, 12, 16, 17, 64, 256, 4096};
        printf("\nfp32 mode GEMM (x f32, W bf16; the CPU order, no FMA): multiply-adds/s against the fp32 issue peak "
               "%.1f T/s, bytes against the copy\n%-20s %10s %12s %8s %8s\n",
               peak / 1e12, "M x N x K", "us", "T madd/s", "% peak", "% copy");
        for (size_t i = 0; i < sizeof nk / sizeof nk[0]; i++)
            for (size_t j = 0; j < sizeof Ms / sizeof Ms[0]; j++) {
                gemm_f32_arg g;
                g.M = Ms[j], g.N = nk[i][0], g.K = nk[i][1];
                const size_t wb = (size_t)g.N * g.K * 2;
                g.ncopy = (int)((rot_bytes + wb - 1) / wb);
                g.x = dev_rand_f32((size_t)g.M * g.K, 1.0f);
                g.w = malloc(sizeof(void *) * g.ncopy);
                for (int c = 0; c < g.ncopy; c++) g.w[c] = dev_rand_bf16((size_t)g.N * g.K, 0.05f);
                g.out = kern_cuda_malloc((size_t)g.M * g.N * 4);
                const double t = time_ms(run_gemm_f32, &g, 3, g.M >= 256 ? 3 : 20, 11);
                const double madd = (double)g.M * g.N * g.K / (t * 1e-3);
                const double bytes = (double)wb + (double)g.M * g.K * 4 + (double)g.M * g.N * 4;
                char shp[64];
                snprintf(shp, sizeof shp, "%dx%dx%d", g.M, g.N, g.K);
                printf("%-20s %10.1f %12.2f %7.1f%% %7.1f%%\n", shp, t * 1e3, madd / 1e12, 100 * madd / peak,
                       100 * bytes / (t * 1e-3) / 1e9 / copy_gbs);
                json_rec("\"kind\": \"gemm_f32\", \"M\": %d, \"N\": %d, \"K\": %d, \"ms\": %.5f, \"tmadd\": %.3f, "
                         "\"peak_frac\": %.4f",
                         g.M, g.N, g.K, t, madd / 1e12, madd / peak);
                kern_cuda_free(g.x), kern_cuda_free(g.out);
                for (int c = 0; c < g.ncopy; c++) kern_cuda_free(g.w[c]);
                free(g.w);
            }
    }
    /* The ordered split at every split count (powers of two to KERN_CUDA_ATTN_SPLIT_MAX; grids past the SMs too):
     * what kern_cuda_attn_decode_split_count should pick. bf16 cache, hd 128, 8 KV heads. Only when named. */
    if (sections && strstr(sections, "splitsweep")) {
        static const int sw[][3] = {{1, 1024, 16}, {1, 2048, 16}, {1, 4096, 32}, {1, 16384, 16}, {4, 8192, 32}};
        int n_sm = 0, l2 = 0;
        kern_cuda_device_props(&n_sm, &l2);
        printf("\nordered split by split count (bf16 cache, hd 128, 8 KV heads; engine: its count)\n%-34s", "case");
        for (int S = 1; S <= KERN_CUDA_ATTN_SPLIT_MAX; S *= 2) printf(" %9s%-2d", "S=", S);
        printf("\n");
        for (size_t ci = 0; ci < sizeof sw / sizeof sw[0]; ci++) {
            attn_arg a;
            attn_setup(&a, sw[ci][0], sw[ci][1], sw[ci][2], 8, 128, 16, 0, 1);
            a.ws_bytes = kern_cuda_attn_decode_split_workspace(a.M, a.n_heads, a.hd, a.ctx);
            a.ws = kern_cuda_malloc(a.ws_bytes);
            kern_cuda_memset(a.ws, 0, a.ws_bytes);
            const int eng = kern_cuda_attn_decode_split_count(a.M, a.n_kv, a.ctx, n_sm);
            char desc[64];
            snprintf(desc, sizeof desc, "B=%d ctx=%d H=%d (engine %d)", a.B, a.ctx, a.n_heads, eng);
            printf("%-34s", desc);
            for (int S = 1; S <= KERN_CUDA_ATTN_SPLIT_MAX; S *= 2) {
                a.splits = S;
                const double t = time_ms(run_attn, &a, 2, 5, 11);
                printf(" %8.4f ms", t);
                json_rec("\"kind\": \"attn_split_sweep\", \"B\": %d, \"ctx\": %d, \"heads\": %d, \"splits\": %d, "
                         "\"engine_splits\": %d, \"ms\": %.5f",
                         a.B, a.ctx, a.n_heads, S, eng, t);
            }
            printf("\n");
            attn_teardown(&a);
        }
    }
#undef SECTION
    if (g_json) {
        fprintf(g_json, "\n  ]\n}\n");
        fclose(g_json);
        g_json = NULL;
        printf("\nJSON: %s\n", path);
    }
    return 0;
}
#endif
