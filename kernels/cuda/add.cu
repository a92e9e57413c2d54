// The residual add x += y: kern_cuda_add (the engine fuses it into the next norm, norm.cu, where it can).
//
// Purpose/Why. No reduction: each element is one IEEE fp32 add (__fadd_rn, never contracted), the CPU's x + y:
// bit-identical to kernels/cpu whatever the launch (tested with a zero tolerance).
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/kern_cuda.h"

__global__ void add_kernel(float *x, const float *y, int64_t n) {
    GRID_STRIDE(i, n) x[i] = __fadd_rn(x[i], y[i]);
}

extern "C" void kern_cuda_add(float *x, const float *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, y, n);
    CUDA_CHECK_LAUNCH();
}

// x (M, N) += b (N): out[m, n] = out[m, n] + b[n], one __fadd_rn (kern_cpu's `out[m * D + d] += bias[d]`).
__global__ void add_rows_kernel(float *x, const float *b, int64_t n, int N) {
    GRID_STRIDE(i, n) x[i] = __fadd_rn(x[i], b[i % N]);
}

extern "C" void kern_cuda_add_rows(float *x, const float *b, int M, int N, cudaStream_t stream) {
    const int64_t n = (int64_t)M * N;
    if (n <= 0) return;
    add_rows_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, b, n, N);
    CUDA_CHECK_LAUNCH();
}
