// Vocabulary-row kernels, one row per block: log-softmax, log-prob of a token, argmax, logits digest (xxh3-64).
//
// Purpose/Why (the fixed reduction order). The log-prob and the digest are the numbers bitroll promises to
// reproduce, so they must depend on the logits row alone. A block of exactly VOCAB_THREADS (512) threads owns a
// row whatever M is; thread t visits the indices i = t, t + 512, ... ascending: the row max (exact whatever the
// order), then sum_i expf(x_i/T - max) with each term added in that order, then a xor-butterfly inside each warp
// (offsets 16, 8, 4, 2, 1) and a fixed pairwise tree over the 16 warp sums ((w0+w1)+(w2+w3))+... . The CPU reference
// (8-lane order) agrees to rounding. argmax compares (value desc, index asc), a total order, so its reduction
// order cannot matter: equal to kern_cpu_argmax exactly. The digest is integer arithmetic (sums mod 2^64 inside
// each 1 KB xxh3 block, the per-block scramble chained in order by 8 threads): equal to kern_cpu_digest exactly.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

#define VOCAB_THREADS 512
#define VOCAB_WARPS (VOCAB_THREADS / 32)

__device__ __forceinline__ float block_max(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < VOCAB_WARPS; w++) m = fmaxf(m, red[w]);
    return m;
}

__device__ __forceinline__ float block_sum_fixed(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t[VOCAB_WARPS];
#pragma unroll
    for (int w = 0; w < VOCAB_WARPS; w++) t[w] = red[w];
#pragma unroll
    for (int n = VOCAB_WARPS / 2; n >= 1; n >>= 1)
#pragma unroll
        for (int w = 0; w < n; w++) t[w] = __fadd_rn(t[2 * w], t[2 * w + 1]);
    return t[0];
}

// m = max_i x_i/T and lse = logf(sum_i expf(x_i/T - m)) of one row (every thread gets both).
__device__ __forceinline__ void row_lse(const float *xr, int V, float T, float *red, float *m_out, float *lse_out) {
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += VOCAB_THREADS) m = fmaxf(m, __fdiv_rn(xr[i], T));
    m = block_max(m, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < V; i += VOCAB_THREADS) s = __fadd_rn(s, expf(__fsub_rn(__fdiv_rn(xr[i], T), m)));
    s = block_sum_fixed(s, red);
    *m_out = m;
    *lse_out = logf(s);
}

__global__ void __launch_bounds__(VOCAB_THREADS) logsoftmax_kernel(float *out, const float *x, int V, float T) {
    __shared__ float red[VOCAB_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * V;
    float m, lse;
    row_lse(xr, V, T, red, &m, &lse);
    for (int i = threadIdx.x; i < V; i += VOCAB_THREADS)
        out[(int64_t)blockIdx.x * V + i] = __fsub_rn(__fsub_rn(__fdiv_rn(xr[i], T), m), lse);
}

__global__ void __launch_bounds__(VOCAB_THREADS)
    logprob_kernel(float *out, const float *x, const int32_t *tokens, int V, float T) {
    __shared__ float red[VOCAB_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * V;
    float m, lse;
    row_lse(xr, V, T, red, &m, &lse);
    if (threadIdx.x == 0) out[blockIdx.x] = __fsub_rn(__fsub_rn(__fdiv_rn(xr[tokens[blockIdx.x]], T), m), lse);
}

// (value, index) a beats b: a is a number and (b is none, or a.v > b.v, or equal values and a.i < b.i).
__device__ __forceinline__ bool beats(float av, int ai, float bv, int bi) {
    return ai >= 0 && (bi < 0 || av > bv || (av == bv && ai < bi));
}

__global__ void __launch_bounds__(VOCAB_THREADS) argmax_kernel(int32_t *out, const float *x, int V) {
    __shared__ float rv[VOCAB_WARPS];
    __shared__ int ri[VOCAB_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * V;
    float bv = 0.0f;
    int bi = -1;
    for (int i = threadIdx.x; i < V; i += VOCAB_THREADS) {
        float v = xr[i];
        if (!isnan(v) && beats(v, i, bv, bi)) bv = v, bi = i;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (beats(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if ((threadIdx.x & 31) == 0) rv[threadIdx.x >> 5] = bv, ri[threadIdx.x >> 5] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 0; w < VOCAB_WARPS; w++)
            if (beats(rv[w], ri[w], bv, bi)) bv = rv[w], bi = ri[w];
        out[blockIdx.x] = bi < 0 ? 0 : bi;
    }
}

// ---- xxh3-64 (seed 0, inputs longer than 240 bytes: the "long" path with the default secret).
__constant__ uint8_t k_secret[192] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};
#define P32_1 0x9E3779B1ULL
#define P32_2 0x85EBCA77ULL
#define P32_3 0xC2B2AE3DULL
#define P64_1 0x9E3779B185EBCA87ULL
#define P64_2 0xC2B2AE3D27D4EB4FULL
#define P64_3 0x165667B19E3779F9ULL
#define P64_4 0x85EBCA77C2B2AE63ULL
#define P64_5 0x27D4EB2F165667C5ULL

__device__ __forceinline__ uint64_t secret64(int off) {
    uint64_t v = 0;
#pragma unroll
    for (int b = 0; b < 8; b++) v |= (uint64_t)k_secret[off + b] << (8 * b);
    return v;
}
// Little-endian u64 at a byte offset that is a multiple of 4 (rows are only 4-byte aligned).
__device__ __forceinline__ uint64_t in64(const uint32_t *w, int64_t byte_off) {
    int64_t i = byte_off >> 2;
    return (uint64_t)w[i] | ((uint64_t)w[i + 1] << 32);
}
// One 64-byte stripe into the accumulators (XXH3_accumulate_512_scalar).
__device__ __forceinline__ void acc_stripe(uint64_t acc[8], const uint32_t *w, int64_t off, int soff) {
#pragma unroll
    for (int i = 0; i < 8; i++) {
        uint64_t dv = in64(w, off + 8 * i), dk = dv ^ secret64(soff + 8 * i);
        acc[i ^ 1] += dv;
        acc[i] += (dk & 0xffffffffULL) * (dk >> 32);
    }
}

#define DIGEST_THREADS 256

__global__ void __launch_bounds__(DIGEST_THREADS) digest_kernel(uint64_t *out, const float *x, int V) {
    __shared__ uint64_t contrib[DIGEST_THREADS][8];
    __shared__ uint64_t acc_s[8];
    const uint32_t *w = (const uint32_t *)(x + (int64_t)blockIdx.x * V);
    const int64_t len = (int64_t)V * 4;
    const int64_t block_len = 1024; // 16 stripes per block with the 192-byte secret
    const int64_t nb = (len - 1) / block_len;
    const int tid = threadIdx.x;
    if (tid < 8) {
        const uint64_t init[8] = {P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1};
        acc_s[tid] = init[tid];
    }
    for (int64_t base = 0; base < nb; base += DIGEST_THREADS) {
        const int64_t b = base + tid;
        if (b < nb) {
            uint64_t c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int s = 0; s < 16; s++) acc_stripe(c, w, b * block_len + s * 64, s * 8);
#pragma unroll
            for (int i = 0; i < 8; i++) contrib[tid][i] = c[i];
        }
        __syncthreads();
        if (tid < 8) { // the scramble chains block after block; lane i only ever touches acc[i]
            const uint64_t key = secret64(192 - 64 + 8 * tid);
            uint64_t a = acc_s[tid];
            const int64_t nblk = nb - base < DIGEST_THREADS ? nb - base : DIGEST_THREADS;
            for (int64_t k = 0; k < nblk; k++) {
                a += contrib[k][tid];
                a ^= a >> 47;
                a ^= key;
                a *= P32_1;
            }
            acc_s[tid] = a;
        }
        __syncthreads();
    }
    if (tid == 0) {
        uint64_t acc[8];
        for (int i = 0; i < 8; i++) acc[i] = acc_s[i];
        const int64_t ns = ((len - 1) - block_len * nb) / 64;
        for (int64_t s = 0; s < ns; s++) acc_stripe(acc, w, nb * block_len + s * 64, (int)s * 8);
        acc_stripe(acc, w, len - 64, 192 - 64 - 7);
        uint64_t r = (uint64_t)len * P64_1;
        for (int i = 0; i < 4; i++) {
            uint64_t a = acc[2 * i] ^ secret64(11 + 16 * i), b = acc[2 * i + 1] ^ secret64(11 + 16 * i + 8);
            r += (a * b) ^ __umul64hi(a, b);
        }
        r ^= r >> 37;
        r *= 0x165667919E3779F9ULL;
        r ^= r >> 32;
        out[blockIdx.x] = r;
    }
}

extern "C" void kern_cuda_logsoftmax(float *out, const float *x, int M, int V, float temperature, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && V > 0 && temperature > 0.0f, "logsoftmax: bad shape or temperature");
    if (M == 0) return;
    logsoftmax_kernel<<<M, VOCAB_THREADS, 0, stream>>>(out, x, V, temperature);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_logprob(float *out, const float *x, const int32_t *tokens, int M, int V, float temperature,
                                  cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && V > 0 && temperature > 0.0f, "logprob: bad shape or temperature");
    if (M == 0) return;
    logprob_kernel<<<M, VOCAB_THREADS, 0, stream>>>(out, x, tokens, V, temperature);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_argmax(int32_t *out, const float *x, int M, int V, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && V > 0, "argmax: bad shape");
    if (M == 0) return;
    argmax_kernel<<<M, VOCAB_THREADS, 0, stream>>>(out, x, V);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_digest(uint64_t *out, const float *x, int M, int V, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && V > 60, "digest: rows must be longer than 240 bytes (xxh3 long path)");
    if (M == 0) return;
    digest_kernel<<<M, DIGEST_THREADS, 0, stream>>>(out, x, V);
    CUDA_CHECK_LAUNCH();
}
