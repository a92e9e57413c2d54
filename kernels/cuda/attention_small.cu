// Attention for head dims the tiled kernels do not take (hd <= 32, e.g. the 8 or 16 of tiny test models):
// kern_cuda_attn_small, any row mix, every kernel mode.
//
// Purpose/Why (the fixed reduction order). A token's output must not depend on the call it is in (DESIGN 2), so one
// warp owns one (row, head) and lane d < hd holds element d; keys 0..pos of the row's sequence are visited in chunks
// of SMALL_CHUNK = 32, ascending. Per key, the score is the xor-butterfly sum over the lanes (offsets 16, 8, 4, 2, 1)
// of q_d * k_d, times scale; per chunk, one online-softmax update: m' = max(m, max_j s_j) (exact),
// alpha = m == -inf ? 0 : expf(m - m'), l = l * alpha + sum_j expf(s_j - m') and acc = acc * alpha +
// sum_j p_j v_j, both sums in ascending j; out = acc / l. Every operation is rounded on its own (no FMA). Nothing
// depends on the other rows of the call: decode == chunks of 16 == all rows, bitwise (tested); against the CPU
// reference within 1e-5 + 1e-4 |ref|.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kv_elem.cuh" // f32 or bf16 cache elements, widened exactly on load

#define SMALL_CHUNK 32

__device__ __forceinline__ float warp_sum_fixed(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// One warp per (row, head); lane d < hd holds element d. Keys visited in chunks of 32, ascending; within a
// chunk the scores, then one online-softmax update: m' = max(m, max_j s_j), l = l*e^(m-m') + sum_j e^(s_j-m')
// (ascending j), acc = acc*e^(m-m') + sum_j p_j v_j (ascending j).
template <typename T>
__global__ void attn_small_kernel(float *out, const float *q, const T *kc, const T *vc, const int32_t *pages,
                                  const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                                  int page_size, float scale) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    const int gw = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (gw >= M * n_heads) return;
    const int m = gw / n_heads, h = gw % n_heads, kvh = h / (n_heads / n_kv);
    const float qd = lane < hd ? q[((size_t)m * n_heads + h) * hd + lane] : 0.0f;
    const int32_t *pt = pages + pt_off[m];
    const int n_keys = pos[m] + 1;
    float mx = -INFINITY, l = 0.0f, acc = 0.0f;
    float s[SMALL_CHUNK];
    for (int c0 = 0; c0 < n_keys; c0 += SMALL_CHUNK) {
        const int len = min(SMALL_CHUNK, n_keys - c0);
        float cmax = -INFINITY;
        for (int j = 0; j < len; j++) {
            const int t = c0 + j;
            const size_t slot = (size_t)pt[t / page_size] * page_size + t % page_size;
            const float kd = lane < hd ? kv_ld(kc + (slot * n_kv + kvh) * hd + lane) : 0.0f;
            s[j] = __fmul_rn(warp_sum_fixed(__fmul_rn(qd, kd)), scale);
            cmax = fmaxf(cmax, s[j]);
        }
        const float mnew = fmaxf(cmax, mx);
        const float alpha = mx == -INFINITY ? 0.0f : expf(__fsub_rn(mx, mnew));
        float psum = 0.0f, cs = 0.0f;
        for (int j = 0; j < len; j++) {
            const int t = c0 + j;
            const size_t slot = (size_t)pt[t / page_size] * page_size + t % page_size;
            const float p = expf(__fsub_rn(s[j], mnew));
            const float vd = lane < hd ? kv_ld(vc + (slot * n_kv + kvh) * hd + lane) : 0.0f;
            psum = __fadd_rn(psum, p);
            cs = __fadd_rn(cs, __fmul_rn(p, vd));
        }
        l = __fadd_rn(__fmul_rn(l, alpha), psum);
        acc = __fadd_rn(__fmul_rn(acc, alpha), cs);
        mx = mnew;
    }
    if (lane < hd) out[((size_t)m * n_heads + h) * hd + lane] = __fdiv_rn(acc, l);
}

template <typename T>
static void attn_small(float *out, const float *q, const T *k_cache, const T *v_cache, const int32_t *pages,
                       const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size,
                       float scale, cudaStream_t stream) {
    KERN_REQUIRE(hd > 0 && hd <= 32 && n_kv > 0 && n_heads % n_kv == 0 && page_size > 0, "attn_small: bad shape");
    if (M == 0) return;
    const int warps = M * n_heads, threads = 256;
    attn_small_kernel<T><<<(warps * 32 + threads - 1) / threads, threads, 0, stream>>>(
        out, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_attn_small(float *out, const float *q, const float *k_cache, const float *v_cache,
                                     const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                     int n_heads, int n_kv, int hd, int page_size, float scale, cudaStream_t stream) {
    attn_small(out, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale, stream);
}

extern "C" void kern_cuda_attn_small_bf16(float *out, const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                                          const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                          int n_heads, int n_kv, int hd, int page_size, float scale,
                                          cudaStream_t stream) {
    attn_small(out, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale, stream);
}
