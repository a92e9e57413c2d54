// The fp32 mode's kernels that reduce: RMSNorm / LayerNorm, attention and the vocabulary log-sum-exp, each computing
// the CPU reference's operations (kernels/cpu/kern_cpu.c) in the CPU reference's order, so that --kernels fp32 on a
// GPU gives the CPU's bits (issue 17: a rollout made on a GPU re-scores bit for bit on a laptop).
//
// Purpose/Why (the fixed reduction order). Every order below is the CPU's, so neither the batch (M, R) nor the
// launch can change a bit, and CPU == GPU:
// - "8-lane sum" (kern_cpu_dot / kern_cpu_sum): lane j in 0..7 adds the terms i = j mod 8 in ascending i from +0.0f,
//   then ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). Each lane is one thread walking its terms in order; the
//   terms themselves (products, exps) are computed in parallel where they are independent.
// - norms: ss = 8-lane sum of x_i * x_i; out_i = (x_i * (1 / sqrtf(ss / D + eps))) * w_i (RMS); LayerNorm:
//   mean = 8-lane sum of x_i / D, var = 8-lane sum of (x_i - mean)^2, out_i = ((x_i - mean) * rstd) * w_i + b_i. With a
//   residual y, x_i += y_i first (kern_cpu_add, then the norm).
// - attention, per (row, head): keys in chunks of KERN_ATTN_CHUNK (32), ascending; s_j = 8-lane dot(q, k_j) * scale;
//   m' = max(m, s_j...) by `>` in ascending j (NaN never taken); alpha = m == -inf ? 0 : exp(m - m');
//   psum = sum_j p_j and cs_d = sum_j p_j v_jd in ascending j, p_j = exp(s_j - m'); l = l * alpha + psum,
//   acc_d = acc_d * alpha + cs_d; out_d = acc_d / l.
// - vocabulary: lse = log(8-lane sum of exp(x_j / T - m)), m = the row's max of x_j / T (exact, from
//   kern_cuda_vocab_rows).
// exp and log are kern_expf / kern_logf (kernels/kern_math.h), the functions the CPU calls; every fp32 operation is
// rounded on its own (__fadd_rn, __fmul_rn, __fdiv_rn, __fsqrt_rn: never contracted into an FMA), as the CPU build's
// -ffp-contract=off makes the C compiler do. Speed is secondary here: the lanes are sequential by definition.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/kern_math.h"

__device__ __forceinline__ float combine8(const float *l) {
    return __fadd_rn(__fadd_rn(__fadd_rn(l[0], l[1]), __fadd_rn(l[2], l[3])),
                     __fadd_rn(__fadd_rn(l[4], l[5]), __fadd_rn(l[6], l[7])));
}

// Lane j < 8 of a warp holds l_j: every lane gets the combined sum (the same adds, so the same bits).
__device__ __forceinline__ float warp_combine8(float lj) {
    float l[8];
#pragma unroll
    for (int j = 0; j < 8; j++) l[j] = __shfl_sync(0xffffffffu, lj, j);
    return combine8(l);
}

// ---- norms: one warp per row. The row (after the residual add) is first copied into shared memory by the 32 lanes,
// coalesced; lanes 0..7 then run the 8-lane sums from there. The same values go through the same operations as when
// each lane read its elements from global memory (the kernel before the tenth session), so the same bits, without 8
// lanes each waiting on D / 8 global loads in turn (~20 us per norm at D = 1,024 in the ninth session's fp32 profile).
__global__ void __launch_bounds__(32) cpuo_norm_kernel(float *out, float *x, const float *y,
                                                       const float *__restrict__ w, const float *__restrict__ b, int D,
                                                       float eps, int layer) {
    extern __shared__ float row[]; // (D): the row, read before anything is written to out (which may be x)
    float *xr = x + (int64_t)blockIdx.x * D;
    float *o = out + (int64_t)blockIdx.x * D;
    const int t = threadIdx.x;
    if (y) {
        const float *yr = y + (int64_t)blockIdx.x * D;
        for (int i = t; i < D; i += 32) {
            const float v = __fadd_rn(xr[i], yr[i]);
            xr[i] = v;
            row[i] = v;
        }
    } else {
        for (int i = t; i < D; i += 32) row[i] = xr[i];
    }
    __syncwarp();
    float l = 0.0f;
    if (!layer) {
        if (t < 8)
            for (int i = t; i < D; i += 8) l = __fadd_rn(l, __fmul_rn(row[i], row[i]));
        const float ss = warp_combine8(l);
        const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)D), eps)));
        for (int i = t; i < D; i += 32) o[i] = __fmul_rn(__fmul_rn(row[i], inv), w[i]);
        return;
    }
    if (t < 8)
        for (int i = t; i < D; i += 8) l = __fadd_rn(l, row[i]);
    const float mean = __fdiv_rn(warp_combine8(l), (float)D);
    l = 0.0f;
    if (t < 8)
        for (int i = t; i < D; i += 8) {
            const float d = __fsub_rn(row[i], mean);
            l = __fadd_rn(l, __fmul_rn(d, d));
        }
    const float rstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(warp_combine8(l), (float)D), eps)));
    for (int i = t; i < D; i += 32)
        o[i] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(row[i], mean), rstd), w[i]), b[i]);
}

extern "C" void kern_cuda_cpuo_norm(float *out, float *x, const float *y, const float *w, const float *b, int M, int D,
                                    float eps, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && D > 0 && out && x && w, "cpuo_norm: bad arguments");
    KERN_REQUIRE(out != x || !y, "cpuo_norm: out must not alias x when a residual is added");
    if (M == 0) return;
    const size_t smem = (size_t)D * sizeof(float);
    KERN_REQUIRE(smem <= 200 * 1024, "cpuo_norm: D too large for the shared-memory row (at most 51,200)");
    static size_t attr_bytes = 48 * 1024; // the default limit of dynamic shared memory
    if (smem > attr_bytes) {
        CUDA_CHECK(cudaFuncSetAttribute(cpuo_norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_bytes = smem;
    }
    cpuo_norm_kernel<<<M, 32, smem, stream>>>(out, x, y, w, b, D, eps, b != nullptr);
    CUDA_CHECK_LAUNCH();
}

// ---- attention: one block of ATT_THREADS per (row, head). Each chunk's keys are first copied into shared memory by
// the block (coalesced, rows padded to hd + 1 floats: the 32 scoring threads read 32 different banks); thread j then
// runs key j's 8-lane dot from there -- the values and operations of reading the key from global memory (the kernel
// before the tenth session), so the same bits.
#define ATT_THREADS 128
#define ATT_MAX_HD 512 // KERN_CPU_MAX_HD
#define ATT_PER_THREAD (ATT_MAX_HD / ATT_THREADS)

__global__ void __launch_bounds__(ATT_THREADS)
    cpuo_attn_kernel(float *out, const float *q, const float *kc, const float *vc, const int32_t *pages,
                     const int32_t *pt_off, const int32_t *pos, int n_heads, int n_kv, int hd, int page_size,
                     float scale) {
    __shared__ float qs[ATT_MAX_HD];
    __shared__ float s[KERN_ATTN_CHUNK], p[KERN_ATTN_CHUNK];
    __shared__ int64_t base[KERN_ATTN_CHUNK]; // element offset of key j's (slot, kv head) row
    __shared__ float sh_mnew, sh_alpha, sh_l;
    extern __shared__ float ks[]; // (KERN_ATTN_CHUNK, hd + 1): the chunk's keys
    const int kst = hd + 1;
    const int m = blockIdx.x / n_heads, h = blockIdx.x % n_heads, t = threadIdx.x;
    const int kvh = h / (n_heads / n_kv);
    const int32_t *pt = pages + pt_off[m];
    const int n_keys = pos[m] + 1;
    for (int d = t; d < hd; d += ATT_THREADS) qs[d] = q[((int64_t)m * n_heads + h) * hd + d];
    float acc[ATT_PER_THREAD];
#pragma unroll
    for (int i = 0; i < ATT_PER_THREAD; i++) acc[i] = 0.0f;
    float mx = -INFINITY, l = 0.0f; // thread 0's running state
    __syncthreads();
    for (int c0 = 0; c0 < n_keys; c0 += KERN_ATTN_CHUNK) {
        const int len = min(KERN_ATTN_CHUNK, n_keys - c0);
        if (t < len) {
            const int key = c0 + t;
            const int64_t slot = (int64_t)pt[key / page_size] * page_size + key % page_size;
            base[t] = (slot * n_kv + kvh) * hd;
        }
        __syncthreads();
        for (int e = t; e < len * hd; e += ATT_THREADS) { // the chunk's keys, row by row
            const int j = e / hd, d = e - j * hd;
            ks[j * kst + d] = kc[base[j] + d];
        }
        __syncthreads();
        if (t < len) { // score of key c0 + t: the 8-lane dot, then * scale
            const float *kr = ks + t * kst;
            // lane u = d & 7 adds its products in ascending d: eight at a time, then the last partial group (constant
            // indices keep ln in registers)
            float ln[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            const int hd8 = hd & ~7;
            for (int d = 0; d < hd8; d += 8) {
#pragma unroll
                for (int u = 0; u < 8; u++) ln[u] = __fadd_rn(ln[u], __fmul_rn(qs[d + u], kr[d + u]));
            }
#pragma unroll
            for (int u = 0; u < 8; u++)
                if (hd8 + u < hd) ln[u] = __fadd_rn(ln[u], __fmul_rn(qs[hd8 + u], kr[hd8 + u]));
            s[t] = __fmul_rn(combine8(ln), scale);
        }
        __syncthreads();
        if (t == 0) {
            float cmax = -INFINITY;
            for (int j = 0; j < len; j++)
                if (s[j] > cmax) cmax = s[j];
            const float mnew = cmax > mx ? cmax : mx;
            sh_alpha = mx == -INFINITY ? 0.0f : kern_expf(__fsub_rn(mx, mnew));
            sh_mnew = mnew;
            mx = mnew;
        }
        __syncthreads();
        if (t < len) p[t] = kern_expf(__fsub_rn(s[t], sh_mnew));
        __syncthreads();
        const float alpha = sh_alpha;
        if (t == 0) {
            float psum = 0.0f;
            for (int j = 0; j < len; j++) psum = __fadd_rn(psum, p[j]);
            l = __fadd_rn(__fmul_rn(l, alpha), psum);
        }
#pragma unroll
        for (int i = 0; i < ATT_PER_THREAD; i++) {
            const int d = t + i * ATT_THREADS;
            if (d < hd) {
                float cs = 0.0f;
                for (int j = 0; j < len; j++) cs = __fadd_rn(cs, __fmul_rn(p[j], vc[base[j] + d]));
                acc[i] = __fadd_rn(__fmul_rn(acc[i], alpha), cs);
            }
        }
        __syncthreads(); // s, p, base and the shared scalars are rewritten by the next chunk
    }
    if (t == 0) sh_l = l;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < ATT_PER_THREAD; i++) {
        const int d = t + i * ATT_THREADS;
        if (d < hd) out[((int64_t)m * n_heads + h) * hd + d] = __fdiv_rn(acc[i], sh_l);
    }
}

extern "C" void kern_cuda_cpuo_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                                         const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                         int n_heads, int n_kv, int hd, int page_size, float scale, cudaStream_t stream) {
    KERN_REQUIRE(hd > 0 && hd <= ATT_MAX_HD && n_kv > 0 && n_heads % n_kv == 0 && page_size > 0,
                 "cpuo_attention: bad shape");
    if (M == 0) return;
    const size_t smem = sizeof(float) * KERN_ATTN_CHUNK * (size_t)(hd + 1); // 65.7 KB at hd 512
    static size_t attr_bytes = 48 * 1024;                                 // the default limit
    if (smem > attr_bytes) {
        CUDA_CHECK(cudaFuncSetAttribute(cpuo_attn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_bytes = smem;
    }
    cpuo_attn_kernel<<<M * n_heads, ATT_THREADS, smem, stream>>>(out, q, k_cache, v_cache, pages, pt_off, pos, n_heads,
                                                                  n_kv, hd, page_size, scale);
    CUDA_CHECK_LAUNCH();
}

// ---- vocabulary log-sum-exp: one block per row. The exps of a tile are computed by all threads into shared memory,
// then lanes 0..7 add their terms of the tile in ascending order. Block i handles row r = rows ? rows[i] : i (r < 0:
// nothing) and writes its lse to dst[i], or over out[r].lse when dst is NULL: the same body for kern_cuda_cpuo_lse and
// the top-p filter's separate copy (sample_filter.cu), so both are the CPU's row_lse.
#define LSE_THREADS 256
#define LSE_TILE 2048 // a multiple of 8: the lane of entry j stays j mod 8 across tiles

__global__ void __launch_bounds__(LSE_THREADS)
    cpuo_lse_kernel(float *dst, kern_row_out *out, const float *x, const kern_row_req *req, const int32_t *rows,
                    int V) {
    __shared__ float e[LSE_TILE];
    __shared__ float lanes[8];
    const int t = threadIdx.x;
    const int r = rows ? rows[blockIdx.x] : (int)blockIdx.x;
    if (r < 0) return; // the whole block: no barrier is skipped by some threads only
    const float *xr = x + (int64_t)r * V;
    const float T = req[r].temperature, m = out[r].m;
    float l = 0.0f;
    for (int j0 = 0; j0 < V; j0 += LSE_TILE) {
        const int n = min(LSE_TILE, V - j0);
        for (int i = t; i < n; i += LSE_THREADS) e[i] = kern_expf(__fsub_rn(__fdiv_rn(xr[j0 + i], T), m));
        __syncthreads();
        if (t < 8)
            for (int i = t; i < n; i += 8) l = __fadd_rn(l, e[i]);
        __syncthreads();
    }
    if (t < 8) lanes[t] = l;
    __syncthreads();
    if (t == 0) {
        const float lse = kern_logf(combine8(lanes));
        if (dst)
            dst[blockIdx.x] = lse;
        else
            out[r].lse = lse;
    }
}

extern "C" void kern_cuda_cpuo_lse(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V,
                                   cudaStream_t stream) {
    KERN_REQUIRE(V > 0 && R >= 0, "cpuo_lse: bad shape");
    if (R == 0) return;
    cpuo_lse_kernel<<<R, LSE_THREADS, 0, stream>>>(nullptr, out, x, req, nullptr, V);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_cpuo_lse_rows(float *lse, const kern_row_out *out, const float *x, const kern_row_req *req,
                                        const int32_t *rows, int n, int V, cudaStream_t stream) {
    KERN_REQUIRE(V > 0 && n >= 0 && lse && rows, "cpuo_lse_rows: bad arguments");
    if (n == 0) return;
    // out is only read on this path (dst != NULL): the kernel's pointer is non-const for kern_cuda_cpuo_lse.
    cpuo_lse_kernel<<<n, LSE_THREADS, 0, stream>>>(lse, (kern_row_out *)out, x, req, rows, V);
    CUDA_CHECK_LAUNCH();
}
