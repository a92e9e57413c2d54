// Grid-stride loops for the element-wise kernels (C++ only): a grid of at most 65535 * 64 blocks, each thread
// visiting i, i + gridDim.x * blockDim.x, ... -- which thread computes an element never changes its arithmetic.
#ifndef KERN_CUDA_GRID_CUH
#define KERN_CUDA_GRID_CUH

#include <stdint.h>

static inline unsigned grid_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 * 64 ? 65535 * 64 : b);
}

#define GRID_STRIDE(i, n)                                                                                              \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

#endif
