// RMSNorm and LayerNorm, one row per block.
//
// Purpose/Why (the fixed reduction order). The row statistics decide every element of the row, so their sum must
// not depend on M or on the launch: a block of exactly 256 threads handles one row whatever M and D are; thread t
// accumulates the terms i = t, t + 256, t + 512, ... in ascending i from +0.0f (products and sums rounded
// separately, no FMA); then each warp reduces its 32 partials with the xor butterfly (offsets 16, 8, 4, 2, 1: every
// lane ends with the same bits, fp32 addition being commutative), and the 8 warp sums are combined as
// ((w0 + w1) + (w2 + w3)) + ((w4 + w5) + (w6 + w7)). The CPU reference uses the 8-lane order instead, so GPU and
// CPU agree to rounding (tested within tolerance), and the GPU agrees with itself bit for bit at any M.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/qk_norm_rope.cuh"

#define NORM_THREADS 256

// Sum of v over the block in the fixed tree above; every thread gets the result. red: 8 floats of shared memory.
__device__ __forceinline__ float block_sum_fixed(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return __fadd_rn(__fadd_rn(__fadd_rn(red[0], red[1]), __fadd_rn(red[2], red[3])),
                     __fadd_rn(__fadd_rn(red[4], red[5]), __fadd_rn(red[6], red[7])));
}

// With a residual y (the fused "x += y; norm(x)" of a layer's end): each thread first adds its own elements
// i = t, t + 256, ... and stores them back to x -- the bits of kern_cuda_add followed by the plain norm, since the
// thread that wrote an element is the one that reads it again.
__device__ __forceinline__ void add_residual(float *xr, const float *yr, int D) {
    for (int i = threadIdx.x; i < D; i += NORM_THREADS) xr[i] = __fadd_rn(xr[i], yr[i]);
}

__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_kernel(float *__restrict__ out, __nv_bfloat16 *__restrict__ out_bf, float *x, const float *y,
                   const float *__restrict__ w, int D, float eps) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    KERN_WAIT_PREREQUISITES(); // launched as a programmatic dependent: nothing is read or written before this
    __shared__ float red[8];
    float *xr = x + (int64_t)blockIdx.x * D;
    if (y) add_residual(xr, y + (int64_t)blockIdx.x * D, D);
    float s = 0.0f;
    for (int i = threadIdx.x; i < D; i += NORM_THREADS) s = __fadd_rn(s, __fmul_rn(xr[i], xr[i]));
    const float ss = block_sum_fixed(s, red);
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)D), eps)));
    for (int i = threadIdx.x; i < D; i += NORM_THREADS) {
        float v = __fmul_rn(__fmul_rn(xr[i], inv), w[i]);
        if (out) out[(int64_t)blockIdx.x * D + i] = v;
        if (out_bf) out_bf[(int64_t)blockIdx.x * D + i] = __float2bfloat16_rn(v);
    }
}

// rmsnorm_kernel with the row held in registers (D <= 256 * NPT): each thread loads its x, y and w elements at once
// instead of three dependent passes over global memory (a batch-1 decode step is latency-bound). The same thread
// does the same operations on the same elements in the same order: bit for bit rmsnorm_kernel.
template <int NPT>
__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_reg_kernel(float *__restrict__ out, __nv_bfloat16 *__restrict__ out_bf, float *x, const float *y,
                       const float *__restrict__ w, int D, float eps) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    KERN_WAIT_PREREQUISITES(); // launched as a programmatic dependent: nothing is read or written before this
    __shared__ float red[8];
    float *xr = x + (int64_t)blockIdx.x * D;
    const float *yr = y ? y + (int64_t)blockIdx.x * D : nullptr;
    float xv[NPT], wv[NPT];
#pragma unroll
    for (int k = 0; k < NPT; k++) {
        const int i = threadIdx.x + k * NORM_THREADS;
        xv[k] = i < D ? xr[i] : 0.0f;
        wv[k] = i < D ? w[i] : 0.0f;
    }
    if (yr) {
#pragma unroll
        for (int k = 0; k < NPT; k++) {
            const int i = threadIdx.x + k * NORM_THREADS;
            if (i < D) {
                xv[k] = __fadd_rn(xv[k], yr[i]);
                xr[i] = xv[k];
            }
        }
    }
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < NPT; k++)
        if (threadIdx.x + k * NORM_THREADS < D) s = __fadd_rn(s, __fmul_rn(xv[k], xv[k]));
    const float ss = block_sum_fixed(s, red);
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)D), eps)));
#pragma unroll
    for (int k = 0; k < NPT; k++) {
        const int i = threadIdx.x + k * NORM_THREADS;
        if (i < D) {
            float v = __fmul_rn(__fmul_rn(xv[k], inv), wv[k]);
            if (out) out[(int64_t)blockIdx.x * D + i] = v;
            if (out_bf) out_bf[(int64_t)blockIdx.x * D + i] = __float2bfloat16_rn(v);
        }
    }
}

// rmsnorm_reg_kernel where the row fits (D <= 4096), else rmsnorm_kernel.
static void launch_rmsnorm(float *out, __nv_bfloat16 *out_bf, float *x, const float *y, const float *w, int M, int D,
                           float eps, cudaStream_t stream) {
    const dim3 g(M), b(NORM_THREADS);
    if (D <= 4 * NORM_THREADS) kern_launch_pdl(rmsnorm_reg_kernel<4>, g, b, 0, stream, out, out_bf, x, y, w, D, eps);
    else if (D <= 8 * NORM_THREADS) kern_launch_pdl(rmsnorm_reg_kernel<8>, g, b, 0, stream, out, out_bf, x, y, w, D, eps);
    else if (D <= 16 * NORM_THREADS) kern_launch_pdl(rmsnorm_reg_kernel<16>, g, b, 0, stream, out, out_bf, x, y, w, D, eps);
    else kern_launch_pdl(rmsnorm_kernel, g, b, 0, stream, out, out_bf, x, y, w, D, eps);
}

__global__ void __launch_bounds__(NORM_THREADS)
    layernorm_kernel(float *__restrict__ out, __nv_bfloat16 *__restrict__ out_bf, float *x, const float *y,
                     const float *__restrict__ w, const float *__restrict__ b, int D, float eps) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    __shared__ float red[8];
    float *xr = x + (int64_t)blockIdx.x * D;
    if (y) add_residual(xr, y + (int64_t)blockIdx.x * D, D);
    float s = 0.0f;
    for (int i = threadIdx.x; i < D; i += NORM_THREADS) s = __fadd_rn(s, xr[i]);
    const float mean = __fdiv_rn(block_sum_fixed(s, red), (float)D);
    float q = 0.0f;
    for (int i = threadIdx.x; i < D; i += NORM_THREADS) {
        float d = __fsub_rn(xr[i], mean);
        q = __fadd_rn(q, __fmul_rn(d, d));
    }
    const float var = block_sum_fixed(q, red);
    const float rstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(var, (float)D), eps)));
    for (int i = threadIdx.x; i < D; i += NORM_THREADS) {
        float v = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(xr[i], mean), rstd), w[i]), b[i]);
        if (out) out[(int64_t)blockIdx.x * D + i] = v;
        if (out_bf) out_bf[(int64_t)blockIdx.x * D + i] = __float2bfloat16_rn(v);
    }
}

extern "C" void kern_cuda_rmsnorm(float *out_f32, uint16_t *out_bf16, const float *x, const float *w, int M, int D,
                                  float eps, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && D > 0, "rmsnorm: bad shape");
    if (M == 0) return;
    launch_rmsnorm(out_f32, (__nv_bfloat16 *)out_bf16, (float *)x, nullptr, w, M, D, eps, stream);
}

extern "C" void kern_cuda_layernorm(float *out_f32, uint16_t *out_bf16, const float *x, const float *w, const float *b,
                                    int M, int D, float eps, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && D > 0, "layernorm: bad shape");
    if (M == 0) return;
    layernorm_kernel<<<M, NORM_THREADS, 0, stream>>>(out_f32, (__nv_bfloat16 *)out_bf16, (float *)x, nullptr, w, b, D,
                                                     eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_add_rmsnorm(float *x, const float *y, float *out_f32, uint16_t *out_bf16, const float *w,
                                      int M, int D, float eps, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && D > 0 && y, "add_rmsnorm: bad shape");
    if (M == 0) return;
    launch_rmsnorm(out_f32, (__nv_bfloat16 *)out_bf16, x, y, w, M, D, eps, stream);
}

extern "C" void kern_cuda_add_layernorm(float *x, const float *y, float *out_f32, uint16_t *out_bf16, const float *w,
                                        const float *b, int M, int D, float eps, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && D > 0 && y, "add_layernorm: bad shape");
    if (M == 0) return;
    layernorm_kernel<<<M, NORM_THREADS, 0, stream>>>(out_f32, (__nv_bfloat16 *)out_bf16, x, y, w, b, D, eps);
    CUDA_CHECK_LAUNCH();
}

// Qwen3's q/k RMSNorm (one row per head) followed by RoPE, in one launch for q and k: row b < M * H is q row b, the
// rest are k rows. The norm is rmsnorm_kernel's arithmetic (same fixed reduction); its f32 results go through shared
// memory and are rotated with kern_cuda_rope's operations -- bit for bit the two launches. A head row (hd <= 256) is
// one WARP, 8 rows per block (one 256-thread block per row spent its time in barriers: 17 us per call at 256
// sequences): qk_norm_rope_row (qk_norm_rope.cuh), which the decode attention also runs in its prologue.
#define QKN_ROWS (NORM_THREADS / 32)
__global__ void __launch_bounds__(NORM_THREADS)
    qk_norm_rope_kernel(float *q_out, float *k_out, const float *q, const float *k, const float *qw, const float *kw,
                        const int32_t *pos, const float *rope, int M, int H, int KV, int hd, float eps) {
    KERN_LAUNCH_DEPENDENTS();
    KERN_WAIT_PREREQUISITES(); // launched as a programmatic dependent: nothing is read or written before this
    __shared__ float vs[QKN_ROWS][256];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int b = blockIdx.x * QKN_ROWS + warp;
    if (b >= M * (H + KV)) return; // whole warps only: no block-wide barrier below
    const bool isq = b < M * H;
    const int row = isq ? b : b - M * H;
    const int m = isq ? row / H : row / KV;
    float *o = (isq ? q_out : k_out) + (int64_t)row * hd;
    qk_norm_rope_row((isq ? q : k) + (int64_t)row * hd, isq ? qw : kw, rope, pos[m], hd, eps, vs[warp], lane,
                     [&](int i, float val) { o[i] = val; });
}

extern "C" void kern_cuda_qk_norm_rope(float *q_out, float *k_out, const float *q, const float *k, const float *qw,
                                       const float *kw, const int32_t *pos, const float *rope, int M, int H, int KV,
                                       int hd, float eps, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && H > 0 && KV > 0 && hd > 0 && hd <= 256 && hd % 2 == 0, "qk_norm_rope: bad shape");
    if (M == 0) return;
    const int rows = M * (H + KV);
    kern_launch_pdl(qk_norm_rope_kernel, dim3((rows + QKN_ROWS - 1) / QKN_ROWS), dim3(NORM_THREADS), 0, stream, q_out,
                    k_out, q, k, qw, kw, pos, rope, M, H, KV, hd, eps);
}
