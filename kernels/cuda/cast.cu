// f32 -> bf16 casts of GEMM inputs: kern_cuda_cast_bf16 (n elements) and kern_cuda_cast_bf16_pad (rows padded with
// zero columns to the tensor-core GEMM's K, a multiple of 16).
//
// Purpose/Why. No reduction: each element is rounded to nearest even on its own, so the result is the same whatever
// the launch, and equal to br_f32_to_bf16 (tested). The padded cast writes exact zeros past K: the weights are
// padded with zeros the same way, so the pad adds +0 products to every k16 step and cannot change a GEMM's bits.
// kern_cuda_cast_bf16_pad rounds with bf16_bits_rne (bf16_round.cuh), the helper shared by every kernel that writes
// a GEMM's bf16 input itself, so a fused write and this cast give the same bits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/bf16_round.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/kern_cuda.h"

__global__ void cast_bf16_kernel(__nv_bfloat16 *out, const float *x, int64_t n) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(x[i]);
}

// One row per block: out (M, Kp) <- x (M, K), columns K..Kp-1 zero.
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

extern "C" void kern_cuda_cast_bf16(uint16_t *out, const float *x, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    cast_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>((__nv_bfloat16 *)out, x, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_cast_bf16_pad(uint16_t *out, const float *x, int M, int K, int Kp, cudaStream_t stream) {
    KERN_REQUIRE(K > 0 && Kp >= K, "cast_bf16_pad: bad shape");
    if (M == 0) return;
    cast_bf16_pad_kernel<<<M, 256, 0, stream>>>(out, x, K, Kp);
    CUDA_CHECK_LAUNCH();
}
