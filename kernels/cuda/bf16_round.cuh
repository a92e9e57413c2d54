// f32 -> bf16 bits, round to nearest even, NaN kept a (quiet) NaN: the rounding of kern_cuda_cast_bf16_pad, shared
// by every kernel that writes a GEMM's bf16 input itself (so the fused write and the separate cast give the same
// bits).
#ifndef KERN_CUDA_BF16_ROUND_CUH
#define KERN_CUDA_BF16_ROUND_CUH

#include <stdint.h>

__device__ __forceinline__ uint16_t bf16_bits_rne(float x) {
    const uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
