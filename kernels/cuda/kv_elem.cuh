// The KV cache's element: f32 (the fp32 mode, equal to the CPU reference) or bf16 (the invariant and standard modes:
// half the bytes a decode step reads). Shared by kv_write.cu and the attention kernels, which are templates over it.
//
// Purpose/Why. A bf16 element is the f32 value rounded to nearest even once, when kv_write stores it (the rounding of
// kern_cuda_cast_bf16_pad, bf16_round.cuh), and widened exactly (bits << 16) whenever a kernel loads it. So the
// attention arithmetic is the same f32 arithmetic on the same f32 values whichever kernel, launcher or batch reads
// the cache: prefill == decode and batch invariance hold for a bf16 cache exactly as for an f32 one, and for K/V
// values that are bf16 numbers a bf16 cache gives the f32 cache's bits (tested in test_kern_cuda).
#ifndef KERN_CUDA_KV_ELEM_CUH
#define KERN_CUDA_KV_ELEM_CUH

#include <stdint.h>

#include "kernels/cuda/bf16_round.cuh"

__device__ __forceinline__ float kv_ld(const float *p) { return *p; }
__device__ __forceinline__ float kv_ld(const uint16_t *p) { return __uint_as_float((uint32_t)*p << 16); }

// Four consecutive elements (p 4-element aligned: 16 bytes for f32, 8 for bf16).
__device__ __forceinline__ float4 kv_ld4(const float *p) { return *(const float4 *)p; }
__device__ __forceinline__ float4 kv_ld4(const uint16_t *p) {
    const uint2 u = *(const uint2 *)p;
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                       __uint_as_float(u.y & 0xffff0000u));
}

// Two consecutive elements (p 2-element aligned: 8 bytes for f32, 4 for bf16).
__device__ __forceinline__ float2 kv_ld2(const float *p) { return *(const float2 *)p; }
__device__ __forceinline__ float2 kv_ld2(const uint16_t *p) {
    const uint32_t u = *(const uint32_t *)p;
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
}

// Eight consecutive elements (p 8-element aligned: 16 bytes for bf16; two 16-byte loads for f32).
__device__ __forceinline__ void kv_ld8(const float *p, float (&v)[8]) {
    const float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void kv_ld8(const uint16_t *p, float (&v)[8]) {
    const uint4 u = *(const uint4 *)p;
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) v[2 * i] = __uint_as_float(w[i] << 16), v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
}

__device__ __forceinline__ void kv_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void kv_st(uint16_t *p, float v) { *p = bf16_bits_rne(v); }

#endif
