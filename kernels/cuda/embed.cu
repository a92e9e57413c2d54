// Embedding lookup: out[m, :] = emb[tokens[m], :] (+ pos_emb[pos[m], :], GPT-2's learned positions):
// kern_cuda_embed.
//
// Purpose/Why. No reduction: a table row is converted to fp32 exactly (bf16 -> f32 is exact) and, with learned
// positions, one IEEE fp32 add per element (__fadd_rn), the CPU's order: bit-identical to kernels/cpu whatever the
// launch (tested with a zero tolerance).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

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
