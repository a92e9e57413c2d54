// Rotary position embedding (HF rotate_half), in place: kern_cuda_rope.
//
// Purpose/Why. No reduction: each output element is a fixed function of its own pair (i, i + hd/2) and the table
// entry (cos, sin) at pos[m] (kern_cpu_rope_table), so batch invariance only needs the same arithmetic whatever the
// launch. The two products and the sum/difference are rounded separately (__fmul_rn, __fadd_rn/__fsub_rn) in the CPU
// reference's order, so the compiler cannot contract them into an FMA in one build and not in another: bit-identical
// to kern_cpu_rope (tested with a zero tolerance). Qwen3's q/k norm + RoPE in one launch lives in norm.cu.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/kern_cuda.h"

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

extern "C" void kern_cuda_rope(float *x, const int32_t *pos, const float *rope, int M, int n_heads, int hd,
                               cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && n_heads > 0 && hd > 0 && hd % 2 == 0, "rope: bad shape");
    int64_t n = (int64_t)M * n_heads * (hd / 2);
    if (n == 0) return;
    rope_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, pos, rope, M, n_heads, hd);
    CUDA_CHECK_LAUNCH();
}
