// Vocabulary-row kernels, one row per block: log-softmax, log-prob of a token, argmax, logits digest.
//
// Purpose/Why (the fixed reduction order). The log-prob and the digest are the numbers bitroll promises to
// reproduce, so they must depend on the logits row alone. A block of exactly VOCAB_THREADS (512) threads owns a
// row whatever M is; thread t visits the indices i = t, t + 512, ... ascending: the row max (exact whatever the
// order), then sum_i expf(x_i/T - max) with each term added in that order, then a xor-butterfly inside each warp
// (offsets 16, 8, 4, 2, 1) and a fixed pairwise tree over the 16 warp sums ((w0+w1)+(w2+w3))+... . The CPU reference
// (8-lane order) agrees to rounding. argmax compares (value desc, index asc), a total order, so its reduction
// order cannot matter: equal to kern_cpu_argmax exactly. The digest is an exact integer sum (mod 2^64) of per-element
// terms (kern_digest_term): equal to kern_cpu_digest exactly.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/kern.h"

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

// Logits digest (docs/FORMAT.md): sum over i of kern_digest_term(i, bits(x_i)) mod 2^64. Integer addition is exact
// and commutative, so any reduction order gives kern_cpu_digest's value; one row per block of DIGEST_THREADS.
#define DIGEST_THREADS 256

__global__ void __launch_bounds__(DIGEST_THREADS) digest_kernel(uint64_t *out, const float *x, int V) {
    __shared__ unsigned long long part[DIGEST_THREADS / 32];
    const float *xr = x + (int64_t)blockIdx.x * V;
    unsigned long long d = 0;
    for (int i = threadIdx.x; i < V; i += DIGEST_THREADS) d += kern_digest_term((uint32_t)i, __float_as_uint(xr[i]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = d;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long t = 0;
        for (int w = 0; w < DIGEST_THREADS / 32; w++) t += part[w];
        out[blockIdx.x] = t;
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
    KERN_REQUIRE(M >= 0 && V > 0, "digest: bad shape");
    if (M == 0) return;
    digest_kernel<<<M, DIGEST_THREADS, 0, stream>>>(out, x, V);
    CUDA_CHECK_LAUNCH();
}
