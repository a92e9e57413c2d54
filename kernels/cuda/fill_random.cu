// Random weights generated on the device (policy_weights_random: benchmarks at real model shapes without a
// checkpoint): kern_cuda_fill_random and kern_cuda_fill_random_view.
//
// Purpose/Why. Element (n, k) of a matrix of K columns is a pure function of (seed, tensor id, n * K + k): one
// Philox call (common/philox.h, the same inline code on host and device) gives the 4 uniforms of an aligned quad of
// element indices, u = br_uniform01 of the element's word, value = scale * (2u - 1) with every product and
// difference rounded on its own, then RNE to bf16 where asked. So a tensor-parallel rank's slice (rows n0.., columns
// k0..) holds exactly the bits of those elements of the whole matrix, whatever the grid (tested against the host).
#include <cuda_runtime.h>
#include <stdint.h>

#include "common/philox.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

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
