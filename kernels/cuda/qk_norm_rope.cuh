// Qwen3's per-head q/k RMSNorm followed by RoPE, for one head row, run by one warp: the body of norm.cu's
// qk_norm_rope_kernel, also run in the prologue of the decode attention (attention.cu), so that a decode step needs
// no launch of its own for it.
//
// Purpose/Why (the fixed reduction order). The norm is rmsnorm_kernel's arithmetic (norm.cu: 256 threads per row,
// thread t summing x_i^2 for i = t, t + 256, ... from +0.0f, the xor butterfly in each warp, the 8 warp sums
// combined ((w0 + w1) + (w2 + w3)) + ((w4 + w5) + (w6 + w7))): a head row (hd <= 256) is one warp, lane l playing
// threads l + 32 j (j = 0..7) -- element i = l + 32 j, the same butterfly run on each j (virtual warp j), then the
// same tree over the 8 virtual warp sums. The normed row goes through v (hd floats of shared memory, the warp's own)
// and is rotated with kern_cuda_rope's operations. One function for both callers: the same bits by construction
// (and tested: test_kern_cuda's test_norms and test_attention_qk_norm).
#pragma once
#include <stdint.h>

// xr: the row (hd <= 256, even); w: the norm weights; rope: (positions, hd / 2, 2) cos/sin; p: the row's position;
// store(i, value) receives every element of the result once. Every lane of the warp calls it.
template <class Store>
__device__ __forceinline__ void qk_norm_rope_row(const float *xr, const float *w, const float *rope, int p, int hd,
                                                 float eps, float *v, int lane, Store &&store) {
    float xv[8], part[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int i = lane + 32 * j;
        xv[j] = i < hd ? xr[i] : 0.0f;
        part[j] = 0.0f; // thread l + 32 j's s: +0.0f, plus its one term x_i^2 when i < hd
        if (i < hd) part[j] = __fadd_rn(part[j], __fmul_rn(xv[j], xv[j]));
    }
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if (32 * j >= hd) continue; // a virtual warp without terms: its sum is +0.0f, as in the block
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) part[j] = __fadd_rn(part[j], __shfl_xor_sync(0xffffffffu, part[j], off));
    }
    const float ss = __fadd_rn(__fadd_rn(__fadd_rn(part[0], part[1]), __fadd_rn(part[2], part[3])),
                               __fadd_rn(__fadd_rn(part[4], part[5]), __fadd_rn(part[6], part[7])));
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)hd), eps)));
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int i = lane + 32 * j;
        if (i < hd) v[i] = __fmul_rn(__fmul_rn(xv[j], inv), w[i]);
    }
    __syncwarp();
    const int half = hd / 2;
    for (int i = lane; i < half; i += 32) {
        const float *cs = rope + ((int64_t)p * half + i) * 2;
        const float c = cs[0], sn = cs[1], x1 = v[i], x2 = v[i + half];
        store(i, __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, sn)));
        store(i + half, __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, sn)));
    }
    __syncwarp(); // v may be reused for the warp's next row
}
