// The fixed-order sum of C chunk partials (C, n) -> (n): kern_cuda_chunk_tree, the device half of comm_nccl's
// chunk sum (the driver hands it to comm_nccl as its tree callback).
//
// Purpose/Why (the fixed reduction order). Tensor-parallel groups of any size must get the bits of one rank
// (DESIGN 7), so chunk partials are never summed by a library reduction (its order follows the rank count and the
// algorithm): they are all-gathered and summed here with ONE pairwise tree over the chunk index, sum(lo, hi) =
// sum(lo, mid) + sum(mid, hi), mid = lo + (hi - lo) / 2, each add one IEEE fp32 rounding (__fadd_rn, never
// contracted) -- exactly the adds of kern_cpu_chunk_tree, so the result equals the CPU's bit for bit (tested for
// C = 1..100). One thread per output element walks the tree iteratively (explicit stack, no device recursion); loads
// of chunk c by consecutive threads are consecutive addresses (coalesced).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

#define TREE_MAX_DEPTH 34 // C < 2^31: at most 32 splits on a root-to-leaf path, plus the root

// One IEEE fp32 add, rounded to nearest, never fused with anything (the host branch lets the walk be checked
// against kern_cpu_chunk_tree on a machine without a GPU).
__host__ __device__ __forceinline__ float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

__host__ __device__ __forceinline__ float chunk_tree_at(const float *__restrict__ all, int C, size_t n, size_t i) {
    // Frames of the recursion sum(lo, hi): phase 0 = go left, 1 = left done (its value in `ret`), go right,
    // 2 = right done: ret = left + right.
    int lo[TREE_MAX_DEPTH], hi[TREE_MAX_DEPTH];
    unsigned char phase[TREE_MAX_DEPTH];
    float left[TREE_MAX_DEPTH];
    int sp = 0;
    float ret = 0.0f;
    lo[0] = 0;
    hi[0] = C;
    phase[0] = 0;
    for (;;) {
        const int l = lo[sp], h = hi[sp];
        if (h - l == 1) {
            ret = all[(size_t)l * n + i];
        } else {
            const int mid = l + (h - l) / 2;
            if (phase[sp] == 0) {
                phase[sp] = 1;
                ++sp;
                lo[sp] = l, hi[sp] = mid, phase[sp] = 0;
                continue;
            }
            if (phase[sp] == 1) {
                left[sp] = ret;
                phase[sp] = 2;
                ++sp;
                lo[sp] = mid, hi[sp] = h, phase[sp] = 0;
                continue;
            }
            ret = add_rn(left[sp], ret); // the CPU: out (left) += tmp (right)
        }
        if (sp == 0) return ret;
        --sp;
    }
}

__global__ void chunk_tree_kernel(float *__restrict__ out, const float *__restrict__ all, int C, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = chunk_tree_at(all, C, n, i);
}

extern "C" void kern_cuda_chunk_tree(float *out, const float *all, int C, size_t n, void *stream_) {
    cudaStream_t stream = (cudaStream_t)stream_;
    KERN_REQUIRE(C >= 1, "kern_cuda_chunk_tree: C must be >= 1");
    if (n == 0) return;
    const int threads = 256;
    size_t blocks = (n + threads - 1) / threads;
    if (blocks > 65535) blocks = 65535; // grid-stride beyond
    chunk_tree_kernel<<<(unsigned)blocks, threads, 0, stream>>>(out, all, C, n);
    CUDA_CHECK_LAUNCH();
}
