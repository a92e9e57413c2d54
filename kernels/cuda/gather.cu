// Row gather: dst[r, :] = src[idx[r], :] -- the rows of a step that want logits, before the final norm and the LM
// head: kern_cuda_gather_rows.
//
// Purpose/Why. A copy: no arithmetic, so the gathered rows hold exactly the bits of their source rows whatever the
// launch (tested with memcmp).
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

__global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int D) {
    const float *s = src + (size_t)idx[blockIdx.x] * D;
    float *d = dst + (size_t)blockIdx.x * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) d[i] = s[i];
}

extern "C" void kern_cuda_gather_rows(float *dst, const float *src, const int32_t *idx, int R, int D,
                                      cudaStream_t stream) {
    if (R == 0) return;
    gather_rows_kernel<<<R, 256, 0, stream>>>(dst, src, idx, D);
    CUDA_CHECK_LAUNCH();
}
