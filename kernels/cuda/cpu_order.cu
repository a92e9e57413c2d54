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
// -ffp-contract=off makes the C compiler do.
//
// Speed. The lanes are sequential by definition, so each kernel is built around its dependent add chains: the data a
// chain adds is staged (shared memory, coalesced or by cp.async, the next tile / chunk while the current one is
// added) and loaded into registers ahead of the adds, so a chain waits on the adder, not on memory; the independent
// terms (exps, products) are computed by other threads meanwhile. None of this moves an operation or reorders an add:
// it changes who loads what, and when.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/cuda/cp_async.cuh"
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

// ---- norms: a block of NORM_THREADS per row. The row (after the residual add) is copied into shared memory by the
// block, coalesced, each thread's NORM_LOADS loads issued before its stores (one memory latency per NORM_THREADS *
// NORM_LOADS entries). Lanes 0..7 of warp 0 then run the 8-lane sums from there (lane_chain), the other threads wait
// at the barrier, and the whole block writes the output. The values and operations are those of reading x from global
// memory (the kernel before the tenth session), so the same bits.
#define NORM_THREADS 128
#define NORM_LOADS 8  // loads per thread in flight while staging the row
#define NORM_BATCH 16 // terms of a lane chain loaded (and mapped by f) before their adds

// Lane j's chain of the 8-lane sum of f(row[i]), i < n: l = ((+0 + f(row[j])) + f(row[j + 8])) + ..., ascending i, as
// kern_cpu_sum / kern_cpu_dot. The loads and f of NORM_BATCH terms are independent of l and come before their adds,
// so the adds wait on registers, not on one shared-memory load each.
template <class F> __device__ __forceinline__ float lane_chain(const float *row, int n, int j, F f) {
    const int cnt = n > j ? (n - j + 7) >> 3 : 0; // terms of lane j
    const float *src = row + j;
    float l = 0.0f;
    int k = 0;
    for (; k + NORM_BATCH <= cnt; k += NORM_BATCH) {
        float v[NORM_BATCH];
#pragma unroll
        for (int u = 0; u < NORM_BATCH; u++) v[u] = f(src[(k + u) << 3]);
#pragma unroll
        for (int u = 0; u < NORM_BATCH; u++) l = __fadd_rn(l, v[u]);
    }
    for (; k < cnt; k++) l = __fadd_rn(l, f(src[k << 3]));
    return l;
}

__global__ void __launch_bounds__(NORM_THREADS) cpuo_norm_kernel(float *out, float *x, const float *y,
                                                                 const float *__restrict__ w,
                                                                 const float *__restrict__ b, int D, float eps,
                                                                 int layer) {
    extern __shared__ float row[]; // (D): the row, read before anything is written to out (which may be x)
    __shared__ float sh_mean, sh_scale; // LayerNorm's mean; RMS's 1 / rms or LayerNorm's rstd
    float *xr = x + (int64_t)blockIdx.x * D;
    const float *yr = y ? y + (int64_t)blockIdx.x * D : nullptr;
    float *o = out + (int64_t)blockIdx.x * D;
    const int t = threadIdx.x;
    for (int i0 = 0; i0 < D; i0 += NORM_THREADS * NORM_LOADS) {
        float xv[NORM_LOADS], yv[NORM_LOADS];
#pragma unroll
        for (int u = 0; u < NORM_LOADS; u++) { // all loads first: x += y's stores could alias y for the compiler
            const int i = i0 + u * NORM_THREADS + t;
            xv[u] = i < D ? xr[i] : 0.0f;
            yv[u] = yr && i < D ? yr[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < NORM_LOADS; u++) {
            const int i = i0 + u * NORM_THREADS + t;
            if (i < D) {
                const float v = yr ? __fadd_rn(xv[u], yv[u]) : xv[u];
                if (yr) xr[i] = v;
                row[i] = v;
            }
        }
    }
    __syncthreads();
    if (t < 32) { // warp 0: lanes 0..7 run the chains, the warp combines them
        float l = 0.0f;
        if (!layer) {
            if (t < 8) l = lane_chain(row, D, t, [](float v) { return __fmul_rn(v, v); });
            const float ss = warp_combine8(l);
            if (t == 0) sh_scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)D), eps)));
        } else {
            if (t < 8) l = lane_chain(row, D, t, [](float v) { return v; });
            const float mean = __fdiv_rn(warp_combine8(l), (float)D);
            l = 0.0f;
            if (t < 8)
                l = lane_chain(row, D, t, [mean](float v) {
                    const float d = __fsub_rn(v, mean);
                    return __fmul_rn(d, d);
                });
            const float var = warp_combine8(l);
            if (t == 0) {
                sh_mean = mean;
                sh_scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(var, (float)D), eps)));
            }
        }
    }
    __syncthreads();
    const float scale = sh_scale;
    if (!layer) {
#pragma unroll 4
        for (int i = t; i < D; i += NORM_THREADS) o[i] = __fmul_rn(__fmul_rn(row[i], scale), w[i]);
        return;
    }
    const float mean = sh_mean;
#pragma unroll 4
    for (int i = t; i < D; i += NORM_THREADS)
        o[i] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(row[i], mean), scale), w[i]), b[i]);
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
    cpuo_norm_kernel<<<M, NORM_THREADS, smem, stream>>>(out, x, y, w, b, D, eps, b != nullptr);
    CUDA_CHECK_LAUNCH();
}

// ---- attention: one block of ATT_THREADS per (row, head), walking the keys in chunks of KERN_ATTN_CHUNK (C = 32).
// Per chunk:
//   - staging: the chunk's K and V rows are copied into shared memory by cp.async (16 bytes where rows are 16-byte
//     aligned, else 4), double-buffered: chunk c + 1's copies are issued before chunk c is computed, so global latency
//     is hidden behind a chunk's work (one buffer when two do not fit, hd > 384: the copy of chunk c then comes first).
//     The keys' row offsets come from the page table two chunks ahead (loaded into a register one chunk before).
//   - scores: four threads per key, thread g running lanes 2g and 2g + 1 of the key's 8-lane dot (each lane's products
//     added in ascending d), then combine8's adds over two shuffles (att_score);
//   - max: every thread takes the chunk's max from the 32 scores in registers (chunk_max: the same value as the CPU's
//     scan), alpha = exp(m - m') (every thread: a uniform value), p_j = exp(s_j - m') by thread j of warp 0;
//   - values: thread d adds p_j * v_jd over j ascending from the staged V rows (the CPU's cs_d; the chunk's 32 loads
//     issued ahead of the adds when the chunk is full), every thread adds psum = sum_j p_j alongside it (uniform).
// Each value goes through the operations of kern_cpu_attention in its order, so the bits are the CPU's.
#define ATT_THREADS (4 * KERN_ATTN_CHUNK) // 128: four threads per key in the scores
#define ATT_MAX_HD 512                    // KERN_CPU_MAX_HD
#define ATT_PER_THREAD (ATT_MAX_HD / ATT_THREADS)
#define ATT_SMEM_MAX (200 * 1024) // two staging buffers when they fit in this

// Row strides (floats) of a staged chunk. K: 8 mod 32 words, so that a half warp's 8-byte score loads (4 keys x 4 lane
// pairs) hit 32 different banks, and a multiple of 4 (16-byte copies). V: read along d by consecutive threads.
__host__ __device__ static inline int att_kst(int hd) { return ((hd + 31) & ~31) + 8; }
__host__ __device__ static inline int att_vst(int hd) { return (hd + 3) & ~3; }

__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(dst)), "l"(src));
}

// Issues (and commits) the copies of keys j < len of a chunk, key j's K and V rows at element offset base[j], into
// kb (C, kst) and vb (C, vst). vec: 16-byte copies (hd % 4 == 0, both caches 16-byte aligned).
__device__ __forceinline__ void att_stage(float *kb, float *vb, const float *kc, const float *vc, const int64_t *base,
                                          int len, int hd, bool vec, int t) {
    const int kst = att_kst(hd), vst = att_vst(hd);
    const int nv = vec ? hd >> 2 : hd; // copies per row
    const int cstep = nv < ATT_THREADS ? nv : ATT_THREADS, rows = ATT_THREADS / cstep; // rows per pass of the block
    if (t < rows * cstep)
        for (int j = t / cstep; j < len; j += rows) {
            const int64_t bj = base[j];
            for (int c = t % cstep; c < nv; c += cstep) {
                if (vec) {
                    cp_async16(kb + j * kst + 4 * c, kc + bj + 4 * c, true);
                    cp_async16(vb + j * vst + 4 * c, vc + bj + 4 * c, true);
                } else {
                    cp_async4(kb + j * kst + c, kc + bj + c);
                    cp_async4(vb + j * vst + c, vc + bj + c);
                }
            }
        }
    cp_async_commit();
}

// s[j] = the 8-lane dot(q, k_j) * scale of key j = t / 4 < len (s[j] = -inf for j >= len: never a max). Thread
// g = t % 4 runs lanes 2g and 2g + 1 (lane u adds q_d k_d for d = u mod 8, ascending d, as kern_cpu_dot); then the
// adds of combine8: l_2g + l_2g+1 in thread g, (l0 + l1) + (l2 + l3) and (l4 + l5) + (l6 + l7) in threads 0 and 2
// (the odd threads' sums are not used), their sum in thread 0. All threads run the shuffles (full warps).
__device__ __forceinline__ void att_score(float *s, const float *qs, const float *kb, int hd, int len, float scale,
                                          int t) {
    const int j = t >> 2, g = t & 3;
    float la = 0.0f, lb = 0.0f; // lanes 2g and 2g + 1
    if (j < len) {
        const float *kr = kb + j * att_kst(hd);
        const int hd8 = hd & ~7;
        for (int d = 2 * g; d < hd8; d += 8) {
            const float2 qv = *(const float2 *)(qs + d), kv = *(const float2 *)(kr + d);
            la = __fadd_rn(la, __fmul_rn(qv.x, kv.x));
            lb = __fadd_rn(lb, __fmul_rn(qv.y, kv.y));
        }
        const int d = hd8 + 2 * g; // the last, partial group of 8
        if (d < hd) la = __fadd_rn(la, __fmul_rn(qs[d], kr[d]));
        if (d + 1 < hd) lb = __fadd_rn(lb, __fmul_rn(qs[d + 1], kr[d + 1]));
    }
    const float pair = __fadd_rn(la, lb);
    const float half = __fadd_rn(pair, __shfl_xor_sync(0xffffffffu, pair, 1));
    const float dot = __fadd_rn(half, __shfl_xor_sync(0xffffffffu, half, 2));
    if (g == 0) s[j] = j < len ? __fmul_rn(dot, scale) : -INFINITY;
}

// The chunk's max as kern_cpu_attention finds it (cmax = -inf; `if (s_j > cmax) cmax = s_j` in ascending j): the
// first of the largest non-NaN scores, or -inf. A tree over adjacent halves keeping the earlier half's value unless the
// later one's is strictly greater gives that same value, by induction (a tie such as -0 / +0 keeps the earlier one);
// NaN, never taken, counts as -inf, as do the unused entries. Comparisons only: no rounding, the same bits.
__device__ __forceinline__ float chunk_max(const float *s) {
    float v[KERN_ATTN_CHUNK];
#pragma unroll
    for (int j = 0; j < KERN_ATTN_CHUNK; j += 4) {
        const float4 f = *(const float4 *)(s + j);
        v[j] = f.x, v[j + 1] = f.y, v[j + 2] = f.z, v[j + 3] = f.w;
    }
#pragma unroll
    for (int j = 0; j < KERN_ATTN_CHUNK; j++) v[j] = v[j] > -INFINITY ? v[j] : -INFINITY;
#pragma unroll
    for (int w = 1; w < KERN_ATTN_CHUNK; w *= 2)
#pragma unroll
        for (int j = 0; j < KERN_ATTN_CHUNK; j += 2 * w) v[j] = v[j + w] > v[j] ? v[j + w] : v[j];
    return v[0];
}

// cs[i] = sum_j p_j v_jd, d = t + i ATT_THREADS (i < ND), and the returned psum = sum_j p_j, both in ascending j
// from +0 (kern_cpu_attention's loop). A d >= hd reads column hd - 1 instead (no branch in the loop: its sum is not
// used). FULL (len == C): a constant trip count, so the loop is unrolled and the loads are issued ahead of the adds.
template <bool FULL, int ND>
__device__ __forceinline__ float att_values(float *cs, const float *p, const float *vb, int hd, int len, int t) {
    const int n = FULL ? KERN_ATTN_CHUNK : len, vst = att_vst(hd);
    int col[ND];
#pragma unroll
    for (int i = 0; i < ND; i++) {
        col[i] = min(t + i * ATT_THREADS, hd - 1);
        cs[i] = 0.0f;
    }
    float psum = 0.0f;
#pragma unroll
    for (int j = 0; j < n; j++) {
        const float pj = p[j];
        psum = __fadd_rn(psum, pj);
#pragma unroll
        for (int i = 0; i < ND; i++) cs[i] = __fadd_rn(cs[i], __fmul_rn(pj, vb[j * vst + col[i]]));
    }
    return psum;
}

// The value pass for ND = ceil(hd / ATT_THREADS) chains per thread, then l and acc updated with alpha (threads without
// a d < hd, which write nothing, skip it).
template <int ND>
__device__ __forceinline__ void att_update(float *acc, float *l, const float *p, const float *vb, int hd, int len,
                                           float alpha, int t) {
    if (t >= hd) return;
    float cs[ND];
    const float psum = len == KERN_ATTN_CHUNK ? att_values<true, ND>(cs, p, vb, hd, len, t)
                                              : att_values<false, ND>(cs, p, vb, hd, len, t);
    *l = __fadd_rn(__fmul_rn(*l, alpha), psum);
#pragma unroll
    for (int i = 0; i < ND; i++)
        if (t + i * ATT_THREADS < hd) acc[i] = __fadd_rn(__fmul_rn(acc[i], alpha), cs[i]);
}

__global__ void __launch_bounds__(ATT_THREADS)
    cpuo_attn_kernel(float *out, const float *q, const float *kc, const float *vc, const int32_t *pages,
                     const int32_t *pt_off, const int32_t *pos, int n_heads, int n_kv, int hd, int page_size,
                     float scale, int nbuf) {
    constexpr int C = KERN_ATTN_CHUNK;
    __shared__ __align__(16) float qs[ATT_MAX_HD];
    __shared__ __align__(16) float s[C];
    __shared__ __align__(16) float p[C];
    __shared__ int64_t base[2][C]; // base[c & 1][j]: element offset of chunk c's key j's (slot, kv head) row
    extern __shared__ __align__(16) float stage[]; // nbuf x [K (C, kst), V (C, vst)]: chunk c in buffer c % nbuf
    const int kst = att_kst(hd), bufsz = C * (kst + att_vst(hd));
    const int m = blockIdx.x / n_heads, h = blockIdx.x % n_heads, t = threadIdx.x;
    const int kvh = h / (n_heads / n_kv);
    const int32_t *pt = pages + pt_off[m];
    const int n_keys = pos[m] + 1, n_chunks = (n_keys + C - 1) / C;
    const bool vec = (hd & 3) == 0 && ((uintptr_t)kc & 15) == 0 && ((uintptr_t)vc & 15) == 0;
    const int nd = (hd + ATT_THREADS - 1) / ATT_THREADS;
    auto row_of = [&](int32_t page, int key) {
        return (((int64_t)page * page_size + key % page_size) * n_kv + kvh) * hd;
    };
    for (int d = t; d < hd; d += ATT_THREADS) qs[d] = q[((int64_t)m * n_heads + h) * hd + d];
    if (t < C)
        for (int c = 0; c < 2 && c < n_chunks; c++) {
            const int key = c * C + t;
            if (key < n_keys) base[c][t] = row_of(pt[key / page_size], key);
        }
    __syncthreads();
    if (n_chunks > 0) att_stage(stage, stage + C * kst, kc, vc, base[0], min(C, n_keys), hd, vec, t);
    float acc[ATT_PER_THREAD];
#pragma unroll
    for (int i = 0; i < ATT_PER_THREAD; i++) acc[i] = 0.0f;
    float mx = -INFINITY, l = 0.0f; // every thread's copy of the running state (the same values in all)
    for (int c = 0; c < n_chunks; c++) {
        const int c0 = c * C, len = min(C, n_keys - c0);
        float *kb = stage + (nbuf == 2 ? c & 1 : 0) * bufsz, *vb = kb + C * kst;
        if (nbuf == 1 && c > 0) { // one buffer: every thread is done with chunk c - 1's rows
            __syncthreads();
            att_stage(kb, vb, kc, vc, base[c & 1], len, hd, vec, t);
        }
        cp_async_wait<0>();
        __syncthreads(); // chunk c staged, chunk c + 1's row offsets written, every thread done with chunk c - 1's data
        if (nbuf == 2 && c + 1 < n_chunks) {
            float *nk = stage + ((c + 1) & 1) * bufsz;
            att_stage(nk, nk + C * kst, kc, vc, base[(c + 1) & 1], min(C, n_keys - c0 - C), hd, vec, t);
        }
        const int key2 = c0 + 2 * C + t; // chunk c + 2's key t: its page now, its row offset at the end
        const bool has2 = t < C && key2 < n_keys;
        const int32_t page2 = has2 ? pt[key2 / page_size] : 0;

        att_score(s, qs, kb, hd, len, scale, t);
        __syncthreads();
        const float cmax = chunk_max(s);
        const float mnew = cmax > mx ? cmax : mx;
        const float alpha = mx == -INFINITY ? 0.0f : kern_expf(__fsub_rn(mx, mnew));
        mx = mnew;
        if (t < len) p[t] = kern_expf(__fsub_rn(s[t], mnew));
        __syncthreads();
        switch (nd) {
        case 1: att_update<1>(acc, &l, p, vb, hd, len, alpha, t); break;
        case 2: att_update<2>(acc, &l, p, vb, hd, len, alpha, t); break;
        case 3: att_update<3>(acc, &l, p, vb, hd, len, alpha, t); break;
        default: att_update<4>(acc, &l, p, vb, hd, len, alpha, t); break;
        }
        if (has2) base[c & 1][t] = row_of(page2, key2); // chunk c's offsets were last read by its staging
    }
#pragma unroll
    for (int i = 0; i < ATT_PER_THREAD; i++) {
        const int d = t + i * ATT_THREADS;
        if (d < hd) out[((int64_t)m * n_heads + h) * hd + d] = __fdiv_rn(acc[i], l);
    }
}

extern "C" void kern_cuda_cpuo_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                                         const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                         int n_heads, int n_kv, int hd, int page_size, float scale, cudaStream_t stream) {
    KERN_REQUIRE(hd > 0 && hd <= ATT_MAX_HD && n_kv > 0 && n_heads % n_kv == 0 && page_size > 0,
                 "cpuo_attention: bad shape");
    if (M == 0) return;
    // one chunk's K and V rows: 33.0 KB at hd 128, 65.0 KB at hd 256, 129.0 KB at hd 512 (one buffer)
    const size_t buf = sizeof(float) * KERN_ATTN_CHUNK * (size_t)(att_kst(hd) + att_vst(hd));
    const int nbuf = 2 * buf <= ATT_SMEM_MAX ? 2 : 1;
    const size_t smem = nbuf * buf;
    static size_t attr_bytes = 48 * 1024; // the default limit
    if (smem > attr_bytes) {
        CUDA_CHECK(cudaFuncSetAttribute(cpuo_attn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_bytes = smem;
    }
    cpuo_attn_kernel<<<M * n_heads, ATT_THREADS, smem, stream>>>(out, q, k_cache, v_cache, pages, pt_off, pos, n_heads,
                                                                  n_kv, hd, page_size, scale, nbuf);
    CUDA_CHECK_LAUNCH();
}

// ---- vocabulary log-sum-exp: one block per row, in tiles of LSE_TILE entries. Warps 1..8 (the producers) compute a
// tile's exps into shared memory, lane-major (lane j's terms of the tile contiguous, in ascending order), while lanes
// 0..7 of warp 0 add the previous tile's from the other buffer: each lane reads its terms as float4s, loaded ahead of
// the dependent adds. The producers also load the x of the tile after the one they compute into registers first. Lane
// j's adds stay the terms i = j mod 8 of the row in ascending i (a tile is a multiple of 8 entries), so the CPU's
// row_lse bits. Block i handles row r = rows ? rows[i] : i (r < 0: nothing) and writes its lse to dst[i], or over
// out[r].lse when dst is NULL: the same body for kern_cuda_cpuo_lse and the top-p filter's separate copy
// (sample_filter.cu), so both are the CPU's row_lse.
#define LSE_THREADS 288 // warp 0 adds, warps 1..8 compute exps (two per quarter of the SM, with warp 0 on one)
#define LSE_PRODUCERS (LSE_THREADS - 32)
#define LSE_PER_THREAD 8                           // entries per producer and tile
#define LSE_TILE (LSE_PRODUCERS * LSE_PER_THREAD)  // 2048, a multiple of 8: entry i's lane is i mod 8 in any tile
#define LSE_LANE (LSE_TILE / 8)                    // a lane's terms per full tile
#define LSE_LSTRIDE (LSE_LANE + 4)                 // lane j's float4s start at bank 4j: no conflicts
static_assert(LSE_LANE % 4 == 0, "a lane's terms are read as float4s");

// x_{j0 + i} of the producer's entries i = pi + k LSE_PRODUCERS (coalesced), 0 past the row.
__device__ __forceinline__ void lse_load(float *xv, const float *xr, int j0, int V, int pi) {
#pragma unroll
    for (int k = 0; k < LSE_PER_THREAD; k++) {
        const int i = j0 + pi + k * LSE_PRODUCERS;
        xv[k] = i < V ? xr[i] : 0.0f;
    }
}

// exp(x / T - m) of the producer's entries into the tile's lane-major buffer: entry i at (i mod 8) LSE_LSTRIDE + i / 8.
__device__ __forceinline__ void lse_exps(float *e, const float *xv, float T, float m, int j0, int V, int pi) {
#pragma unroll
    for (int k = 0; k < LSE_PER_THREAD; k++) {
        const int i = pi + k * LSE_PRODUCERS;
        if (j0 + i < V) e[(i & 7) * LSE_LSTRIDE + (i >> 3)] = kern_expf(__fsub_rn(__fdiv_rn(xv[k], T), m));
    }
}

// Lane j's adds of a tile of n entries (its terms are el[0 .. cnt), ascending), onto l.
__device__ __forceinline__ float lse_lane_add(float l, const float *el, int n, int j) {
    const int cnt = n > j ? (n - j + 7) >> 3 : 0;
    if (cnt == LSE_LANE) {
        const float4 *e4 = (const float4 *)el;
#pragma unroll 16
        for (int k = 0; k < LSE_LANE / 4; k++) {
            const float4 v = e4[k];
            l = __fadd_rn(__fadd_rn(__fadd_rn(__fadd_rn(l, v.x), v.y), v.z), v.w);
        }
        return l;
    }
    for (int k = 0; k < cnt; k++) l = __fadd_rn(l, el[k]);
    return l;
}

__global__ void __launch_bounds__(LSE_THREADS)
    cpuo_lse_kernel(float *dst, kern_row_out *out, const float *x, const kern_row_req *req, const int32_t *rows,
                    int V) {
    __shared__ __align__(16) float e[2][8 * LSE_LSTRIDE]; // tile c in e[c & 1]
    const int t = threadIdx.x, pi = t - 32;                // pi: the producer's index (t >= 32)
    const int r = rows ? rows[blockIdx.x] : (int)blockIdx.x;
    if (r < 0) return; // the whole block: no barrier is skipped by some threads only
    const float *xr = x + (int64_t)r * V;
    const float T = req[r].temperature, m = out[r].m;
    const int n_tiles = (V + LSE_TILE - 1) / LSE_TILE;
    float xv[LSE_PER_THREAD]; // a producer's x of the next tile it computes
    if (t >= 32) {
        lse_load(xv, xr, 0, V, pi);
        lse_exps(e[0], xv, T, m, 0, V, pi);
        lse_load(xv, xr, LSE_TILE, V, pi);
    }
    __syncthreads();
    float l = 0.0f; // lane t < 8's sum
    for (int c = 0; c < n_tiles; c++) {
        const int j0 = c * LSE_TILE;
        if (t < 8) {
            l = lse_lane_add(l, e[c & 1] + t * LSE_LSTRIDE, min(LSE_TILE, V - j0), t);
        } else if (t >= 32 && c + 1 < n_tiles) { // tile c + 1 into the buffer tile c - 1's adds are done with
            float nx[LSE_PER_THREAD];
            lse_load(nx, xr, j0 + 2 * LSE_TILE, V, pi);
            lse_exps(e[(c + 1) & 1], xv, T, m, j0 + LSE_TILE, V, pi);
#pragma unroll
            for (int k = 0; k < LSE_PER_THREAD; k++) xv[k] = nx[k];
        }
        __syncthreads();
    }
    if (t < 32) {
        const float lse = kern_logf(warp_combine8(l));
        if (t == 0) {
            if (dst)
                dst[blockIdx.x] = lse;
            else
                out[r].lse = lse;
        }
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
