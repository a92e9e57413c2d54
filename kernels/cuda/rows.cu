// The CUDA rollout engine's vocabulary rows: digest, max, log-sum-exp and the chosen token of each logits row in
// one pass over the row (plus a second for the exponentials), and a row gather.
//
// Purpose/Why (the fixed reduction order). A block of exactly ROWS_THREADS threads owns one row whatever R is.
// Thread t visits j = t, t + ROWS_THREADS, ... ascending. max, argmax and Gumbel-max reduce with a total order
// (value desc, index asc) and the digest with exact 64-bit integer sums, so their reduction order cannot change
// them. The only rounding reduction is sum_j expf(x_j/T - m): each thread adds its terms in ascending j, then a
// xor butterfly inside each warp (16, 8, 4, 2, 1) and a fixed pairwise tree over the warp sums. None of this
// depends on R, on which rows share the launch, or on the path (generate or score) that asked for the row.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "common/philox.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda_engine.h"
#include "kernels/kern.h"

#define ROWS_THREADS 512
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

__global__ void __launch_bounds__(ROWS_THREADS)
vocab_rows_kernel(kern_row_out *out, const float *x, const kern_row_req *req, int V) {
    __shared__ float s_v[ROWS_WARPS], s_g[ROWS_WARPS], s_sum[ROWS_WARPS];
    __shared__ int s_i[ROWS_WARPS], s_gi[ROWS_WARPS];
    __shared__ unsigned long long s_d[ROWS_WARPS];
    const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *xr = x + (size_t)r * V;
    const kern_row_req q = req[r];
    const float T = q.temperature;

    float best = -INFINITY, gbest = -INFINITY, m = -INFINITY;
    int bi = -1, gi = -1;
    unsigned long long d = 0;
    for (int j = threadIdx.x; j < V; j += ROWS_THREADS) {
        const float v = xr[j];
        const float vt = __fdiv_rn(v, T);
        m = fmaxf(m, vt);
        if (beats(v, j, best, bi)) {
            best = v;
            bi = j;
        }
        if (q.mode == KERN_ROW_GUMBEL) {
            uint32_t w[4];
            br_rand_u32x4_inline(q.seed, q.sample_id, (uint32_t)q.position, (uint32_t)j >> 2, w);
            const float u = br_uniform01(w[j & 3]);
            const float g = __fadd_rn(vt, -logf(-logf(u)));
            if (beats(g, j, gbest, gi)) {
                gbest = g;
                gi = j;
            }
        }
        d += kern_digest_term((uint32_t)j, __float_as_uint(v));
    }
    // block reductions: max / argmax / gumbel-argmax (total orders) and the digest (exact integer sum)
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
        s_sum[warp] = m;
    }
    __syncthreads();
    float mx = s_sum[0], bv = s_v[0], gv = s_g[0];
    int bix = s_i[0], gix = s_gi[0];
    unsigned long long dg = s_d[0];
    for (int w = 1; w < ROWS_WARPS; w++) {
        mx = fmaxf(mx, s_sum[w]);
        if (beats(s_v[w], s_i[w], bv, bix)) {
            bv = s_v[w];
            bix = s_i[w];
        }
        if (beats(s_g[w], s_gi[w], gv, gix)) {
            gv = s_g[w];
            gix = s_gi[w];
        }
        dg += s_d[w];
    }
    __syncthreads();

    // sum_j expf(x_j/T - m): ascending per thread, butterfly per warp, fixed pairwise tree over warps
    float s = 0.0f;
    for (int j = threadIdx.x; j < V; j += ROWS_THREADS) s = __fadd_rn(s, expf(__fsub_rn(__fdiv_rn(xr[j], T), mx)));
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
        int tok = q.mode == KERN_ROW_GREEDY ? bix : q.mode == KERN_ROW_GUMBEL ? gix : q.target;
        kern_row_out o;
        o.token = tok;
        o.x_token = tok >= 0 && tok < V ? xr[tok] : 0.0f;
        o.m = mx;
        o.lse = logf(t[0]);
        o.digest = dg;
        out[r] = o;
    }
}

extern "C" void kern_cuda_vocab_rows(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V,
                                     cudaStream_t stream) {
    KERN_REQUIRE(V > 0, "vocab_rows: V must be positive");
    if (R == 0) return;
    vocab_rows_kernel<<<R, ROWS_THREADS, 0, stream>>>(out, x, req, V);
    CUDA_CHECK_LAUNCH();
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
    const float *xr = x + (size_t)blockIdx.x * K;
    uint16_t *o = out + (size_t)blockIdx.x * Kp;
    for (int i = threadIdx.x; i < Kp; i += blockDim.x) {
        if (i >= K) {
            o[i] = 0;
            continue;
        }
        uint32_t u = __float_as_uint(xr[i]);
        if ((u & 0x7fffffffu) > 0x7f800000u) o[i] = (uint16_t)((u >> 16) | 0x40u);
        else o[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
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

__global__ void fill_random_kernel(void *dst, int f32, int64_t N, int64_t K, int64_t Kp, uint64_t seed, uint32_t id,
                                   float scale) {
    const int64_t total = N * Kp;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / Kp, k = i % Kp;
        float v = 0.0f;
        if (k < K) {
            const uint64_t e = (uint64_t)(n * K + k);
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

extern "C" void kern_cuda_fill_random(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, uint64_t seed,
                                      uint32_t id, float scale, cudaStream_t stream) {
    KERN_REQUIRE(dt == KERN_F32 || dt == KERN_BF16, "fill_random: dtype must be f32 or bf16");
    KERN_REQUIRE(N > 0 && K > 0 && Kp >= K, "fill_random: bad shape");
    fill_random_kernel<<<1024, 256, 0, stream>>>(dst, dt == KERN_F32, N, K, Kp, seed, id, scale);
    CUDA_CHECK_LAUNCH();
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
