// The fixed-order sum of C chunk partials (C, n) -> (n): kern_cuda_chunk_tree, the device half of comm_nccl's
// chunk sum (the driver hands it to comm_nccl as its tree callback).
//
// Purpose/Why (the fixed reduction order). Tensor-parallel groups of any size must get the bits of one rank
// (DESIGN 7), so chunk partials are never summed by a library reduction (its order follows the rank count and the
// algorithm): they are all-gathered and summed here with ONE pairwise tree over the chunk index, sum(lo, hi) =
// sum(lo, mid) + sum(mid, hi), mid = lo + (hi - lo) / 2, each add one IEEE fp32 rounding (__fadd_rn, never
// contracted) -- exactly the adds of kern_cpu_chunk_tree, so the result equals the CPU's bit for bit (tested for
// C = 1..100). One thread per output element; loads of chunk c by consecutive threads are consecutive addresses
// (coalesced). C <= TREE_REG_MAX (the fp32 mode's 16 chunks): the C values are loaded into registers first (independent
// loads, all in flight at once), then the tree is unrolled at compile time over them; larger C: the thread walks the
// tree iteratively (explicit stack, no device recursion), one load at a time. The same adds on the same values in both.
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

// sum(L, H) of chunk_tree_at over registers: mid = L + (H - L) / 2, left + right.
template <int L, int H, int C> __device__ __forceinline__ float tree_reg(const float (&v)[C]) {
    if constexpr (H - L == 1) {
        return v[L];
    } else {
        constexpr int MID = L + (H - L) / 2;
        return __fadd_rn(tree_reg<L, MID, C>(v), tree_reg<MID, H, C>(v));
    }
}

#define TREE_REG_MAX 32
template <int C>
__global__ void chunk_tree_reg_kernel(float *__restrict__ out, const float *__restrict__ all, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v[C];
#pragma unroll
        for (int c = 0; c < C; c++) v[c] = all[(size_t)c * n + i];
        out[i] = tree_reg<0, C, C>(v);
    }
}

// The register kernel for C = 1..TREE_REG_MAX, chosen by a table of instances.
template <int... Cs> struct tree_reg_table {
    static constexpr void (*fn[sizeof...(Cs)])(float *, const float *, size_t) = {chunk_tree_reg_kernel<Cs + 1>...};
};
using tree_regs = tree_reg_table<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                                 24, 25, 26, 27, 28, 29, 30, 31>;
static_assert(sizeof tree_regs::fn / sizeof tree_regs::fn[0] == TREE_REG_MAX, "one instance per C");

extern "C" void kern_cuda_chunk_tree(float *out, const float *all, int C, size_t n, void *stream_) {
    cudaStream_t stream = (cudaStream_t)stream_;
    KERN_REQUIRE(C >= 1, "kern_cuda_chunk_tree: C must be >= 1");
    if (n == 0) return;
    const int threads = 256;
    size_t blocks = (n + threads - 1) / threads;
    if (blocks > 65535) blocks = 65535; // grid-stride beyond
    if (C <= TREE_REG_MAX)
        tree_regs::fn[C - 1]<<<(unsigned)blocks, threads, 0, stream>>>(out, all, n);
    else
        chunk_tree_kernel<<<(unsigned)blocks, threads, 0, stream>>>(out, all, C, n);
    CUDA_CHECK_LAUNCH();
}
