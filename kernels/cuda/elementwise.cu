// Element-wise kernels: RoPE, SwiGLU, GELU (tanh), residual add, f32 -> bf16 cast, embedding lookup.
//
// Purpose/Why. None of these reduces: each output element is a fixed function of its own inputs, so batch
// invariance only needs the arithmetic to be the same whatever the launch. Each operation is written with
// explicitly rounded intrinsics (__fmul_rn, __fadd_rn, ...) in the CPU reference's order, so the compiler cannot
// contract a multiply-add into an FMA in one build and not in another; RoPE, add, cast and embedding are then
// bit-identical to kernels/cpu (the test checks a zero tolerance), and SwiGLU/GELU differ from the CPU only through
// expf/tanhf (CUDA's are within 2 ulp of the correctly rounded value, glibc's within 1).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

static unsigned grid_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 * 64 ? 65535 * 64 : b);
}

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// x (M, n_heads, hd); pairs (i, i + hd/2) of each head rotated by the table's (cos, sin) at pos[m].
__global__ void rope_kernel(float *x, const int32_t *pos, const float *rope, int M, int n_heads, int hd) {
    const int half = hd / 2;
    const int64_t n = (int64_t)M * n_heads * half;
    GRID_STRIDE(t, n) {
        int i = (int)(t % half);
        int64_t mh = t / half;
        int m = (int)(mh / n_heads);
        const float *cs = rope + ((int64_t)pos[m] * half + i) * 2;
        float c = cs[0], s = cs[1];
        float *v = x + mh * hd;
        float x1 = v[i], x2 = v[i + half];
        v[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        v[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
}

__global__ void swiglu_kernel(float *out, __nv_bfloat16 *out_bf, const float *gate, const float *up, int64_t n) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    KERN_WAIT_PREREQUISITES(); // launched as a programmatic dependent: nothing is read or written before this
    GRID_STRIDE(i, n) {
        float g = gate[i];
        float v = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
        if (out) out[i] = v;
        if (out_bf) out_bf[i] = __float2bfloat16_rn(v);
    }
}

__global__ void gelu_kernel(float *x, __nv_bfloat16 *out_bf, int64_t n) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    const float k = 0.7978845608028654f; // sqrt(2/pi)
    GRID_STRIDE(i, n) {
        float v = x[i];
        // CPU: 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v))), evaluated left to right.
        float cube = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v);
        float t = tanhf(__fmul_rn(k, __fadd_rn(v, cube)));
        float r = __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, t));
        x[i] = r;
        if (out_bf) out_bf[i] = __float2bfloat16_rn(r);
    }
}

__global__ void add_kernel(float *x, const float *y, int64_t n) {
    GRID_STRIDE(i, n) x[i] = __fadd_rn(x[i], y[i]);
}

__global__ void cast_bf16_kernel(__nv_bfloat16 *out, const float *x, int64_t n) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(x[i]);
}

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// One row per block: out[m, :] = emb[tokens[m], :] (+ pos_emb[pos[m], :]).
template <typename T>
__global__ void embed_kernel(float *out, const T *emb, const T *pos_emb, const int32_t *tokens, const int32_t *pos,
                             int D) {
    const int m = blockIdx.x;
    const T *e = emb + (int64_t)tokens[m] * D;
    const T *p = pos_emb ? pos_emb + (int64_t)pos[m] * D : nullptr;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = to_f32(e[d]);
        if (p) v = __fadd_rn(v, to_f32(p[d]));
        out[(int64_t)m * D + d] = v;
    }
}

extern "C" void kern_cuda_rope(float *x, const int32_t *pos, const float *rope, int M, int n_heads, int hd,
                               cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && n_heads > 0 && hd > 0 && hd % 2 == 0, "rope: bad shape");
    int64_t n = (int64_t)M * n_heads * (hd / 2);
    if (n == 0) return;
    rope_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, pos, rope, M, n_heads, hd);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_swiglu(float *out_f32, uint16_t *out_bf16, const float *gate, const float *up, int64_t n,
                                 cudaStream_t stream) {
    if (n <= 0) return;
    kern_launch_pdl(swiglu_kernel, dim3(grid_for(n, 256)), dim3(256), 0, stream, out_f32, (__nv_bfloat16 *)out_bf16,
                    gate, up, n);
}

extern "C" void kern_cuda_gelu_tanh(float *x, uint16_t *out_bf16, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    gelu_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, (__nv_bfloat16 *)out_bf16, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_add(float *x, const float *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, y, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_cast_bf16(uint16_t *out, const float *x, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    cast_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>((__nv_bfloat16 *)out, x, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_embed(float *out, const void *emb, const void *pos_emb, kern_dtype dt, const int32_t *tokens,
                                const int32_t *pos, int M, int D, cudaStream_t stream) {
    KERN_REQUIRE(dt == KERN_F32 || dt == KERN_BF16, "embed: table must be f32 or bf16");
    KERN_REQUIRE(M >= 0 && D > 0, "embed: bad shape");
    if (M == 0) return;
    if (dt == KERN_F32)
        embed_kernel<float><<<M, 256, 0, stream>>>(out, (const float *)emb, (const float *)pos_emb, tokens, pos, D);
    else
        embed_kernel<__nv_bfloat16><<<M, 256, 0, stream>>>(out, (const __nv_bfloat16 *)emb,
                                                           (const __nv_bfloat16 *)pos_emb, tokens, pos, D);
    CUDA_CHECK_LAUNCH();
}
