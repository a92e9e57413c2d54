// The CUDA rollout engine's vocabulary rows: digest, max, log-sum-exp and the chosen token of each logits row,
// and a row gather.
//
// Purpose/Why (the fixed reduction order). A row is cut into segments of VOCAB_SEG entries (a function of V only,
// never of R), and each (segment, row) is one block of ROWS_THREADS threads, so that one row alone (batch 1) still
// spreads over many SMs. Three launches: (1) per segment: max of x/T, argmax, Gumbel-max and the digest; (2) per
// segment: sum_j expf(x_j/T - m) with m the max over the row's segments; (3) per row: the segment results combined.
// max, argmax and Gumbel-max reduce with a total order (value desc, index asc) and the digest with exact 64-bit
// integer sums, so their reduction order cannot change them. The only rounding reduction is the sum: in a segment,
// thread t adds its terms j = seg0 + t, seg0 + t + ROWS_THREADS, ... in ascending j, then a xor butterfly inside each
// warp (16, 8, 4, 2, 1) and a fixed pairwise tree over the warp sums; the segment sums are then added in ascending
// segment order. None of this depends on R, on which rows share the launch, or on the path (generate or score)
// that asked for the row. Gumbel noise: one Philox call gives the 4 uniforms of an aligned quad of ids (j >> 2),
// so each thread visits whole quads in pass (1).
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "common/philox.h"
#include "kernels/cuda/bf16_round.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda_engine.h"
#include "kernels/kern.h"

#define ROWS_THREADS 256
#define ROWS_WARPS (ROWS_THREADS / 32)

// (v, i) beats (w, j): larger value, then lower index; NaN never wins.
__device__ __forceinline__ bool beats(float v, int i, float w, int j) {
    if (isnan(v)) return false;
    if (j < 0 || isnan(w)) return i >= 0;
    return v > w || (v == w && i < j);
}

__device__ __forceinline__ void warp_best(float &v, int &i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        int j = __shfl_xor_sync(0xffffffffu, i, o);
        if (beats(w, j, v, i)) {
            v = w;
            i = j;
        }
    }
}

#define VOCAB_SEG 8192 // entries per segment (a multiple of 4: segments hold whole Philox quads)

struct vocab_part {
    float m, best, gbest, sum;
    int bi, gi;
    unsigned long long d;
};

__device__ __forceinline__ void visit(int j, float v, const kern_row_req &q, float gu, float &m, float &best, int &bi,
                                      float &gbest, int &gi, unsigned long long &d) {
    const float vt = __fdiv_rn(v, q.temperature);
    m = fmaxf(m, vt);
    if (beats(v, j, best, bi)) {
        best = v;
        bi = j;
    }
    if (q.mode == KERN_ROW_GUMBEL) {
        const float g = __fadd_rn(vt, -logf(-logf(gu)));
        if (beats(g, j, gbest, gi)) {
            gbest = g;
            gi = j;
        }
    }
    d += kern_digest_term((uint32_t)j, __float_as_uint(v));
}

// Pass 1, grid (segments, R).
__global__ void __launch_bounds__(ROWS_THREADS)
vocab_part_kernel(vocab_part *parts, const float *x, const kern_row_req *req, int V, int n_seg) {
    __shared__ float s_v[ROWS_WARPS], s_g[ROWS_WARPS], s_m[ROWS_WARPS];
    __shared__ int s_i[ROWS_WARPS], s_gi[ROWS_WARPS];
    __shared__ unsigned long long s_d[ROWS_WARPS];
    const int seg = blockIdx.x, r = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *xr = x + (size_t)r * V;
    const kern_row_req q = req[r];
    const int j0 = seg * VOCAB_SEG, j1 = min(V, j0 + VOCAB_SEG);

    float best = -INFINITY, gbest = -INFINITY, m = -INFINITY;
    int bi = -1, gi = -1;
    unsigned long long d = 0;
    for (int j4 = j0 + 4 * threadIdx.x; j4 < j1; j4 += 4 * ROWS_THREADS) {
        uint32_t w[4] = {0, 0, 0, 0};
        if (q.mode == KERN_ROW_GUMBEL)
            br_rand_u32x4_inline(q.seed, q.sample_id, (uint32_t)q.position, (uint32_t)j4 >> 2, w);
#pragma unroll
        for (int u = 0; u < 4; u++)
            if (j4 + u < j1) visit(j4 + u, xr[j4 + u], q, br_uniform01(w[u]), m, best, bi, gbest, gi, d);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        d += __shfl_xor_sync(0xffffffffu, d, o);
    }
    warp_best(best, bi);
    warp_best(gbest, gi);
    if (lane == 0) {
        s_v[warp] = best;
        s_i[warp] = bi;
        s_g[warp] = gbest;
        s_gi[warp] = gi;
        s_d[warp] = d;
        s_m[warp] = m;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        vocab_part p;
        p.m = s_m[0], p.best = s_v[0], p.gbest = s_g[0], p.bi = s_i[0], p.gi = s_gi[0], p.d = s_d[0], p.sum = 0;
        for (int w = 1; w < ROWS_WARPS; w++) {
            p.m = fmaxf(p.m, s_m[w]);
            if (beats(s_v[w], s_i[w], p.best, p.bi)) p.best = s_v[w], p.bi = s_i[w];
            if (beats(s_g[w], s_gi[w], p.gbest, p.gi)) p.gbest = s_g[w], p.gi = s_gi[w];
            p.d += s_d[w];
        }
        parts[(size_t)r * n_seg + seg] = p;
    }
}

// Pass 2, grid (segments, R): the segment's sum of expf(x_j/T - m), m = the row's max.
__global__ void __launch_bounds__(ROWS_THREADS)
vocab_sum_kernel(vocab_part *parts, const float *x, const kern_row_req *req, int V, int n_seg) {
    __shared__ float s_sum[ROWS_WARPS];
    const int seg = blockIdx.x, r = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *xr = x + (size_t)r * V;
    const float T = req[r].temperature;
    vocab_part *pr = parts + (size_t)r * n_seg;
    float mx = pr[0].m;
    for (int i = 1; i < n_seg; i++) mx = fmaxf(mx, pr[i].m);
    const int j0 = seg * VOCAB_SEG, j1 = min(V, j0 + VOCAB_SEG);
    float s = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += ROWS_THREADS) s = __fadd_rn(s, expf(__fsub_rn(__fdiv_rn(xr[j], T), mx)));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) s_sum[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t[ROWS_WARPS];
#pragma unroll
        for (int w = 0; w < ROWS_WARPS; w++) t[w] = s_sum[w];
#pragma unroll
        for (int n = ROWS_WARPS / 2; n >= 1; n >>= 1)
#pragma unroll
            for (int w = 0; w < n; w++) t[w] = __fadd_rn(t[2 * w], t[2 * w + 1]);
        pr[seg].sum = t[0];
    }
}

// Pass 3, one thread per row: the segments in ascending order.
__global__ void vocab_final_kernel(kern_row_out *out, const vocab_part *parts, const float *x,
                                   const kern_row_req *req, int R, int V, int n_seg) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= R) return;
    const vocab_part *pr = parts + (size_t)r * n_seg;
    const kern_row_req q = req[r];
    float mx = pr[0].m, bv = pr[0].best, gv = pr[0].gbest, sum = pr[0].sum;
    int bix = pr[0].bi, gix = pr[0].gi;
    unsigned long long dg = pr[0].d;
    for (int i = 1; i < n_seg; i++) {
        mx = fmaxf(mx, pr[i].m);
        if (beats(pr[i].best, pr[i].bi, bv, bix)) bv = pr[i].best, bix = pr[i].bi;
        if (beats(pr[i].gbest, pr[i].gi, gv, gix)) gv = pr[i].gbest, gix = pr[i].gi;
        dg += pr[i].d;
        sum = __fadd_rn(sum, pr[i].sum);
    }
    const int tok = q.mode == KERN_ROW_GREEDY ? bix : q.mode == KERN_ROW_GUMBEL ? gix : q.target;
    kern_row_out o;
    o.token = tok;
    o.x_token = tok >= 0 && tok < V ? x[(size_t)r * V + tok] : 0.0f;
    o.m = mx;
    o.lse = logf(sum);
    o.digest = dg;
    out[r] = o;
}

extern "C" size_t kern_cuda_vocab_rows_workspace(int R, int V) {
    return (size_t)(R > 0 ? R : 0) * ((V + VOCAB_SEG - 1) / VOCAB_SEG) * sizeof(vocab_part);
}

extern "C" void kern_cuda_vocab_rows(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V,
                                     void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    KERN_REQUIRE(V > 0, "vocab_rows: V must be positive");
    if (R == 0) return;
    KERN_REQUIRE(workspace && workspace_bytes >= kern_cuda_vocab_rows_workspace(R, V),
                 "vocab_rows: workspace too small (kern_cuda_vocab_rows_workspace)");
    const int n_seg = (V + VOCAB_SEG - 1) / VOCAB_SEG;
    vocab_part *parts = (vocab_part *)workspace;
    for (int r0 = 0; r0 < R; r0 += 65535) { // grid.y holds at most 65535 rows; rows are independent
        const int n = R - r0 < 65535 ? R - r0 : 65535;
        const float *xs = x + (size_t)r0 * V;
        vocab_part_kernel<<<dim3(n_seg, n), ROWS_THREADS, 0, stream>>>(parts, xs, req + r0, V, n_seg);
        CUDA_CHECK_LAUNCH();
        vocab_sum_kernel<<<dim3(n_seg, n), ROWS_THREADS, 0, stream>>>(parts, xs, req + r0, V, n_seg);
        CUDA_CHECK_LAUNCH();
        vocab_final_kernel<<<(n + 127) / 128, 128, 0, stream>>>(out + r0, parts, xs, req + r0, n, V, n_seg);
        CUDA_CHECK_LAUNCH();
    }
}

__global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int D) {
    const float *s = src + (size_t)idx[blockIdx.x] * D;
    float *d = dst + (size_t)blockIdx.x * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) d[i] = s[i];
}

extern "C" void kern_cuda_gather_rows(float *dst, const float *src, const int32_t *idx, int R, int D,
                                      cudaStream_t stream) {
    if (R == 0) return;
    gather_rows_kernel<<<R, 256, 0, stream>>>(dst, src, idx, D);
    CUDA_CHECK_LAUNCH();
}

__global__ void cast_bf16_pad_kernel(uint16_t *out, const float *x, int K, int Kp) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    const float *xr = x + (size_t)blockIdx.x * K;
    uint16_t *o = out + (size_t)blockIdx.x * Kp;
    for (int i = threadIdx.x; i < Kp; i += blockDim.x) {
        if (i >= K) {
            o[i] = 0;
            continue;
        }
        o[i] = bf16_bits_rne(xr[i]);
    }
}

extern "C" void kern_cuda_cast_bf16_pad(uint16_t *out, const float *x, int M, int K, int Kp, cudaStream_t stream) {
    KERN_REQUIRE(K > 0 && Kp >= K, "cast_bf16_pad: bad shape");
    if (M == 0) return;
    cast_bf16_pad_kernel<<<M, 256, 0, stream>>>(out, x, K, Kp);
    CUDA_CHECK_LAUNCH();
}

#define SMALL_CHUNK 32

__device__ __forceinline__ float warp_sum_fixed(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// One warp per (row, head); lane d < hd holds element d. Keys visited in chunks of 32, ascending; within a
// chunk the scores, then one online-softmax update: m' = max(m, max_j s_j), l = l*e^(m-m') + sum_j e^(s_j-m')
// (ascending j), acc = acc*e^(m-m') + sum_j p_j v_j (ascending j).
__global__ void attn_small_kernel(float *out, const float *q, const float *kc, const float *vc, const int32_t *pages,
                                  const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                                  int page_size, float scale) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    const int gw = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (gw >= M * n_heads) return;
    const int m = gw / n_heads, h = gw % n_heads, kvh = h / (n_heads / n_kv);
    const float qd = lane < hd ? q[((size_t)m * n_heads + h) * hd + lane] : 0.0f;
    const int32_t *pt = pages + pt_off[m];
    const int n_keys = pos[m] + 1;
    float mx = -INFINITY, l = 0.0f, acc = 0.0f;
    float s[SMALL_CHUNK];
    for (int c0 = 0; c0 < n_keys; c0 += SMALL_CHUNK) {
        const int len = min(SMALL_CHUNK, n_keys - c0);
        float cmax = -INFINITY;
        for (int j = 0; j < len; j++) {
            const int t = c0 + j;
            const size_t slot = (size_t)pt[t / page_size] * page_size + t % page_size;
            const float kd = lane < hd ? kc[(slot * n_kv + kvh) * hd + lane] : 0.0f;
            s[j] = __fmul_rn(warp_sum_fixed(__fmul_rn(qd, kd)), scale);
            cmax = fmaxf(cmax, s[j]);
        }
        const float mnew = fmaxf(cmax, mx);
        const float alpha = mx == -INFINITY ? 0.0f : expf(__fsub_rn(mx, mnew));
        float psum = 0.0f, cs = 0.0f;
        for (int j = 0; j < len; j++) {
            const int t = c0 + j;
            const size_t slot = (size_t)pt[t / page_size] * page_size + t % page_size;
            const float p = expf(__fsub_rn(s[j], mnew));
            const float vd = lane < hd ? vc[(slot * n_kv + kvh) * hd + lane] : 0.0f;
            psum = __fadd_rn(psum, p);
            cs = __fadd_rn(cs, __fmul_rn(p, vd));
        }
        l = __fadd_rn(__fmul_rn(l, alpha), psum);
        acc = __fadd_rn(__fmul_rn(acc, alpha), cs);
        mx = mnew;
    }
    if (lane < hd) out[((size_t)m * n_heads + h) * hd + lane] = __fdiv_rn(acc, l);
}

extern "C" void kern_cuda_attn_small(float *out, const float *q, const float *k_cache, const float *v_cache,
                                     const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                     int n_heads, int n_kv, int hd, int page_size, float scale, cudaStream_t stream) {
    KERN_REQUIRE(hd > 0 && hd <= 32 && n_kv > 0 && n_heads % n_kv == 0 && page_size > 0, "attn_small: bad shape");
    if (M == 0) return;
    const int warps = M * n_heads, threads = 256;
    attn_small_kernel<<<(warps * 32 + threads - 1) / threads, threads, 0, stream>>>(
        out, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale);
    CUDA_CHECK_LAUNCH();
}

// Rows n0.. and columns k0.. of a (.., Kfull) random matrix: element (n, k) of dst is the full matrix's
// (n0 + n, k0 + k), so a tensor-parallel rank's slice has the bits of the whole model's.
__global__ void fill_random_kernel(void *dst, int f32, int64_t N, int64_t K, int64_t Kp, int64_t Kfull, int64_t n0,
                                   int64_t k0, uint64_t seed, uint32_t id, float scale) {
    const int64_t total = N * Kp;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / Kp, k = i % Kp;
        float v = 0.0f;
        if (k < K) {
            const uint64_t e = (uint64_t)((n0 + n) * Kfull + k0 + k);
            uint32_t w[4];
            br_rand_u32x4_inline(seed, id, (uint32_t)(e >> 32), (uint32_t)e >> 2, w);
            v = __fmul_rn(scale, __fsub_rn(__fmul_rn(2.0f, br_uniform01(w[e & 3])), 1.0f));
        }
        if (f32) {
            ((float *)dst)[i] = v;
        } else {
            uint32_t u = __float_as_uint(v);
            ((uint16_t *)dst)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
}

extern "C" void kern_cuda_fill_random_view(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, int64_t Kfull,
                                           int64_t n0, int64_t k0, uint64_t seed, uint32_t id, float scale,
                                           cudaStream_t stream) {
    KERN_REQUIRE(dt == KERN_F32 || dt == KERN_BF16, "fill_random: dtype must be f32 or bf16");
    KERN_REQUIRE(N > 0 && K > 0 && Kp >= K && n0 >= 0 && k0 >= 0 && k0 + K <= Kfull, "fill_random: bad shape");
    fill_random_kernel<<<1024, 256, 0, stream>>>(dst, dt == KERN_F32, N, K, Kp, Kfull, n0, k0, seed, id, scale);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_fill_random(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, uint64_t seed,
                                      uint32_t id, float scale, cudaStream_t stream) {
    kern_cuda_fill_random_view(dst, dt, N, K, Kp, K, 0, 0, seed, id, scale, stream);
}

// ---- streams, copies, pinned memory, graphs (thin checked wrappers for the C engine)
extern "C" cudaStream_t kern_cuda_stream_create(void) {
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreate(&s));
    return s;
}
extern "C" void kern_cuda_stream_free(cudaStream_t s) {
    if (s) CUDA_CHECK(cudaStreamDestroy(s));
}
extern "C" void kern_cuda_stream_sync(cudaStream_t s) { CUDA_CHECK(cudaStreamSynchronize(s)); }
extern "C" cudaEvent_t kern_cuda_event_create(void) {
    cudaEvent_t ev;
    CUDA_CHECK(cudaEventCreate(&ev));
    return ev;
}
extern "C" void kern_cuda_event_free(cudaEvent_t ev) {
    if (ev) CUDA_CHECK(cudaEventDestroy(ev));
}
extern "C" void kern_cuda_event_record(cudaEvent_t ev, cudaStream_t s) { CUDA_CHECK(cudaEventRecord(ev, s)); }
extern "C" float kern_cuda_event_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return ms;
}
extern "C" void kern_cuda_upload_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
}
extern "C" void kern_cuda_download_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
}
extern "C" void *kern_cuda_host_alloc(size_t bytes) {
    void *p = nullptr;
    CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 1));
    return p;
}
extern "C" void kern_cuda_host_free(void *p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
}
struct kern_cuda_graph {
    cudaGraphExec_t exec;
};
extern "C" void kern_cuda_capture_begin(cudaStream_t s) {
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
}
extern "C" kern_cuda_graph *kern_cuda_capture_end(cudaStream_t s) {
    cudaGraph_t g;
    CUDA_CHECK(cudaStreamEndCapture(s, &g));
    kern_cuda_graph *out = new kern_cuda_graph;
    CUDA_CHECK(cudaGraphInstantiate(&out->exec, g, 0));
    CUDA_CHECK(cudaGraphDestroy(g));
    return out;
}
extern "C" void kern_cuda_graph_launch(kern_cuda_graph *g, cudaStream_t s) { CUDA_CHECK(cudaGraphLaunch(g->exec, s)); }
extern "C" void kern_cuda_graph_free(kern_cuda_graph *g) {
    if (!g) return;
    CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    delete g;
}

extern "C" void kern_cuda_set_device(int dev) { CUDA_CHECK(cudaSetDevice(dev)); }
