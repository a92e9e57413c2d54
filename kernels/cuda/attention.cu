// Paged-KV-cache attention (one layer): the prefill kernel (many query rows) and the decode kernel (one query row
// per sequence), causal, with grouped-query heads. The K/V cache write is kv_write.cu.
//
// Purpose/Why (the fixed reduction order). A token's attention output must be the same bits whether it was
// computed in a prefill chunk of any size, alone in a decode step, or in a teacher-forced score call (DESIGN 2).
// So, for a query row at position t and head h, the keys 0..t of its sequence are visited in chunks of
// KERN_ATTN_CHUNK = 32 (chunk c = keys [32c, 32c + 32)), in ascending c, by ONE warp running `attn_chunk_step`:
//   lane j holds key 32c + j:  s_j = dot8(q, k_j) * scale   (dot8 = the 8-lane order of kern_cpu_dot, no FMA)
//   m' = max(m, max_j s_j)    (butterfly max: exact, order-free)
//   alpha = m == -inf ? 0 : expf(m - m');  p_j = expf(s_j - m') for keys <= t, exactly 0 otherwise
//   l = l * alpha + psum,  psum = xor-butterfly sum of the 32 p_j (offsets 16, 8, 4, 2, 1)
//   acc[d] = acc[d] * alpha + sum_{j ascending, key <= t} p_j * v_j[d]   (lane owns d = lane + 32 i)
//   out[d] = acc[d] / l
// Keys after t are never visited. The prefill and decode launchers run the same kernel body with a different
// number of query rows per block (rows of one sequence share each K/V chunk through shared memory; a row of
// another sequence in the same block reads the cache directly); the values read are the same fp32 numbers either
// way, and nothing in the step depends on the block's other rows, so prefill == decode bit for bit (tested for
// prefill chunk sizes 1, 16, 256). K/V are written to the cache (kern_cuda_kv_write) before attention reads them,
// so the current chunk's own keys come from the cache too, exactly as in decode.
//
// Decode (`attn_decode_kernel`): one block per (sequence, KV head) has few chunks to walk and, at small batch, the
// GPU has few blocks; walking the chunks one after the other left it latency-bound (12 us per layer at batch 1 and
// 190 keys on an H200). So the decode kernel does the SAME operations on the same values in another schedule: a
// window of W chunks (W = 8, 4, 2 for head dims <= 64, 128, 256) is copied into shared memory at once and its chunks
// are given to W warps (2W when G is even: two warps per chunk, attn_decode_kernel); each computes its chunk's scores
// and chunk max (phase 1); each then takes the running max m before its chunk as the ascending fold `m = cmax > m ?
// cmax : m` over the window's earlier chunks (what the sequential walk holds at that point: max is exact), and
// computes alpha, p_j, psum and the ascending sum_j p_j * v_j of its chunk (phase 2); the warp that owns a head then
// folds the chunks in ascending c: l = l * alpha + psum, acc = acc * alpha + cs (phase 3). Every rounding is the one
// `attn_chunk_step` does, in the same order, so decode == prefill bit for bit (tested). The window's keys and values
// are two cp.async groups: the next window's keys load once phase 1 has read this window's, its values once phase 2
// has (a software pipeline that moves loads, never an operation). It can also write the row's own K/V to the cache
// first (this block is the slot's only reader; __syncthreads orders the write before the reads) and the output as the
// bf16 input of o_proj (the rounding of kern_cuda_cast_bf16_pad), and, for Qwen3, take q and the row's k before
// their per-head RMSNorm and RoPE and do those itself (kern_cuda_attn_decode_fused_qknorm_bf16: qk_norm_rope.cuh, the
// body of norm.cu's qk_norm_rope_kernel, one warp per head row: its bits, one launch fewer per layer; measured on an
// H200, thirteenth session, docs/PERFORMANCE.md: 184 vs 181 tokens/s for the 8B shape at batch 1, 788 vs 756 for
// the 0.6B shape). Each pass over a window's keys or values serves up
// to 4 query heads of the KV head (one load, several heads' arithmetic). It runs when the call has at most one block
// per SM (M * n_kv <= SMs: small batches); larger calls keep the walk (attn_kernel, one row per block), which fills
// the GPU with blocks and shares each K/V chunk between the G heads -- with an f32 cache. With a bf16 cache (the
// invariant mode's; kv_elem.cuh: elements widened exactly on load, so the arithmetic above is unchanged) the window
// takes half the shared memory and the parallel kernel runs at every batch size (faster than the walk everywhere
// measured, docs/PERFORMANCE.md).
//
// Ordered split (`kern_cuda_attn_decode_split_bf16`, invariant mode, few rows with many keys): the decode kernel
// gives a row's KV head one block, so at batch 1 and 4,096 keys 8 blocks walk 32 windows each (2% of the copy
// bandwidth). The three phases above are independent per chunk except for two things: the running max before a
// chunk (an exact max, so any grouping of the fold `m = cm > m ? cm : m` from -inf gives its value, up to the sign
// of a zero that no result depends on: warp_fold_max) and phase 3's fold, which is sequential in c. So one launch
// (grid rows x KV heads x splits, each split a contiguous range of chunks): each block computes its chunks' scores,
// chunk maxes and its split's max, publishes that max (a flag per split), takes the max of the earlier splits' (it
// waits for their flags), then computes per chunk the running max before it, alpha, p_j, psum and cs (the same
// expressions); the last block of a row's KV head to finish (a counter) folds every chunk in ascending order. Per-chunk
// values go through a workspace in global memory, f32, unchanged: the same operations in the same order, so the
// same bits for any split count (tested against the one-launch kernel, bitwise). Each block starts loading its
// first chunks' keys from the cache before waiting for the previous kernel (the cache's older keys do not depend on
// it), and the row's own key and value reach its chunk from shared memory, not back from the cache. (The fourteenth
// session's form was three launches -- scores, values, fold --: 25 us a layer at batch 1 and 2,048 keys, ~14x the
// bytes' time, docs/PERFORMANCE.md.)
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cpu/kern_cpu.h" // KERN_ATTN_CHUNK: one chunk size for the CPU reference and the GPU
#include "kernels/cuda/bf16_round.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kv_elem.cuh" // the cache element: f32, or bf16 widened exactly on load
#include "kernels/cuda/qk_norm_rope.cuh"

#define CHUNK KERN_ATTN_CHUNK
static_assert(CHUNK == 32, "attention: one key per lane of a warp");

// The pieces of one online-softmax step, shared by the chunk walk (attn_chunk_step) and the decode kernel's
// parallel schedule (attn_decode_kernel), so that both run the same operations in the same order by construction.

// The dot's tree over its 8 accumulators is ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)); dot_half is one
// side of its last add (p = p0 or p4), which the decode kernel's two warps of a chunk compute one each.
__device__ __forceinline__ float dot_half(const float *p) {
    return __fadd_rn(__fadd_rn(p[0], p[1]), __fadd_rn(p[2], p[3]));
}

// s = dot8(q, k) * scale: 8 accumulators, d ascending, no FMA (kern_cpu_dot's order). T: the key's element
// (kv_elem.cuh).
template <int HD, typename T>
__device__ __forceinline__ float attn_score(const float *qs, const T *krow, float scale) {
    float p8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int d = 0; d < HD; d += 4) {
        float k4[4];
#pragma unroll
        for (int u = 0; u < 4; u++) k4[u] = kv_ld(krow + d + u);
#pragma unroll
        for (int u = 0; u < 4; u++) p8[(d + u) & 7] = __fadd_rn(p8[(d + u) & 7], __fmul_rn(qs[d + u], k4[u]));
    }
    const float dot = __fadd_rn(dot_half(p8), dot_half(p8 + 4));
    return __fmul_rn(dot, scale);
}

// xor butterflies over the warp (offsets 16, 8, 4, 2, 1): every lane gets the same bits.
__device__ __forceinline__ float warp_max_xor(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum_xor(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// cs[i] = sum over j < len, ascending, of p_j * v_j[lane + 32 i]; p_j is lane j's p, vrow_of(j) key j's value row
// (f32 or bf16 elements: kv_ld).
template <int NI, typename VRow>
__device__ __forceinline__ void attn_chunk_pv(float (&cs)[NI], float p, int len, int lane, VRow vrow_of) {
#pragma unroll
    for (int i = 0; i < NI; i++) cs[i] = 0.0f;
    if (len == CHUNK) { // the common full chunk: unrolled, so the loads of later keys are issued early
#pragma unroll 8
        for (int j = 0; j < CHUNK; j++) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
            const auto *vj = vrow_of(j);
#pragma unroll
            for (int i = 0; i < NI; i++) cs[i] = __fadd_rn(cs[i], __fmul_rn(pj, kv_ld(vj + lane + 32 * i)));
        }
    } else {
        for (int j = 0; j < len; j++) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
            const auto *vj = vrow_of(j);
#pragma unroll
            for (int i = 0; i < NI; i++) cs[i] = __fadd_rn(cs[i], __fmul_rn(pj, kv_ld(vj + lane + 32 * i)));
        }
    }
}

// l = l * alpha + psum, acc = acc * alpha + cs: one chunk folded into the running state.
template <int NI>
__device__ __forceinline__ void attn_fold(float &l, float (&acc)[NI], float alpha, float psum, const float *cs,
                                          int stride) {
    l = __fadd_rn(__fmul_rn(l, alpha), psum);
#pragma unroll
    for (int i = 0; i < NI; i++) acc[i] = __fadd_rn(__fmul_rn(acc[i], alpha), cs[i * stride]);
}

// One online-softmax step over one chunk for one (query row, head), by one warp (the order in the header).
// qs: the query (HD) in shared memory; krow: this lane's key row (valid when lane < len); vrow: this lane's value
// row; len: keys of this chunk that the row attends to (1..32). T: f32 (shared memory, an f32 cache) or bf16 (cache).
template <int HD, typename T>
__device__ __forceinline__ void attn_chunk_step(const float *qs, const T *krow, const T *vrow, int len,
                                                float scale, float &mx, float &l, float (&acc)[HD / 32], int lane) {
    const float s = lane < len ? attn_score<HD, T>(qs, krow, scale) : -INFINITY;
    const float cmax = warp_max_xor(s);
    const float mnew = cmax > mx ? cmax : mx;
    const float alpha = mx == -INFINITY ? 0.0f : expf(__fsub_rn(mx, mnew));
    const float p = lane < len ? expf(__fsub_rn(s, mnew)) : 0.0f;
    const float psum = warp_sum_xor(p);
    float cs[HD / 32];
    attn_chunk_pv(cs, p, len, lane,
                  [&](int j) { return (const T *)__shfl_sync(0xffffffffu, (unsigned long long)vrow, j); });
    attn_fold(l, acc, alpha, psum, cs, 1);
    mx = mnew;
}

// grid (ceil(M / QT), n_kv); block max(QT * G, 8) warps, G = n_heads / n_kv: warp w < QT * G handles row
// m0 + w / G and head kvh * G + w % G (the others only help load K/V). Rows of the block that share the first row's page table read each K/V chunk from shared memory.
// Shared memory: Ks (32, HD+1) (padded: lane j reads row j, conflict-free), Vs (32, HD), qs (warps, HD), all f32
// (a bf16 cache is widened when a chunk is stored: kv_elem.cuh).
template <int HD, typename T>
__global__ void __launch_bounds__(512) attn_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf,
                                                   const float *__restrict__ q, const T *__restrict__ kc,
                            const T *__restrict__ vc, const int32_t *__restrict__ pages,
                            const int32_t *__restrict__ pt_off, const int32_t *__restrict__ pos, int M, int n_heads,
                            int n_kv, int page_size, float scale, int QT, int G) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + CHUNK * (HD + 1), *qs_all = Vs + CHUNK * HD;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nthreads = blockDim.x;
    const int m0 = blockIdx.x * QT, kvh = blockIdx.y;
    const int r = m0 + warp / G, h = kvh * G + warp % G;
    const bool active = warp < QT * G && r < M; // warps past QT * G only help load the K/V chunks
    const int seq0 = pt_off[m0];
    const int row = n_kv * HD; // elements per cache slot
    float *qs = qs_all + warp * HD;

    // Keys needed by the block's rows of the first row's sequence (the shared K/V loads cover those).
    int shared_len = 0;
    for (int i = 0; i < QT && m0 + i < M; i++)
        if (pt_off[m0 + i] == seq0 && pos[m0 + i] + 1 > shared_len) shared_len = pos[m0 + i] + 1;
    const bool shared = active && pt_off[r] == seq0;
    const int n_keys = active ? pos[r] + 1 : 0;

    if (active)
        for (int d = lane; d < HD; d += 32) qs[d] = q[((int64_t)r * n_heads + h) * HD + d];
    __syncwarp();

    float mx = -INFINITY, l = 0.0f, acc[HD / 32];
#pragma unroll
    for (int i = 0; i < HD / 32; i++) acc[i] = 0.0f;

    // K/V chunks of the shared sequence go through shared memory. The next chunk's first 4 * nthreads float4 of K
    // and of V are loaded into registers while the current chunk is computed (prefetch); the rest (hd 256) is
    // loaded when stored. Data movement only: the arithmetic of the step is unchanged.
    float4 pk[4], pv[4];
    auto fetch = [&](int c0, int len) {
        const int total = len * (HD / 4);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int e = threadIdx.x + u * nthreads;
            if (e < total) {
                const int j = e / (HD / 4), d = (e % (HD / 4)) * 4, t = c0 + j;
                const int64_t slot = (int64_t)pages[seq0 + t / page_size] * page_size + t % page_size;
                pk[u] = kv_ld4(kc + slot * row + kvh * HD + d);
                pv[u] = kv_ld4(vc + slot * row + kvh * HD + d);
            }
        }
    };
    auto put = [&](int c0, int len) {
        const int total = len * (HD / 4);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int e = threadIdx.x + u * nthreads;
            if (e < total) {
                const int j = e / (HD / 4), d = (e % (HD / 4)) * 4;
                float *kd = Ks + j * (HD + 1) + d;
                kd[0] = pk[u].x, kd[1] = pk[u].y, kd[2] = pk[u].z, kd[3] = pk[u].w;
                *(float4 *)(Vs + j * HD + d) = pv[u];
            }
        }
        for (int e = threadIdx.x + 4 * nthreads; e < total; e += nthreads) {
            const int j = e / (HD / 4), d = (e % (HD / 4)) * 4, t = c0 + j;
            const int64_t slot = (int64_t)pages[seq0 + t / page_size] * page_size + t % page_size;
            const float4 kv4 = kv_ld4(kc + slot * row + kvh * HD + d);
            float *kd = Ks + j * (HD + 1) + d;
            kd[0] = kv4.x, kd[1] = kv4.y, kd[2] = kv4.z, kd[3] = kv4.w;
            *(float4 *)(Vs + j * HD + d) = kv_ld4(vc + slot * row + kvh * HD + d);
        }
    };
    if (shared_len > 0) fetch(0, shared_len < CHUNK ? shared_len : CHUNK);
    for (int c0 = 0; c0 < shared_len; c0 += CHUNK) {
        const int len = shared_len - c0 < CHUNK ? shared_len - c0 : CHUNK;
        __syncthreads(); // the previous chunk is consumed
        put(c0, len);
        __syncthreads();
        const int n0 = c0 + CHUNK;
        if (n0 < shared_len) fetch(n0, shared_len - n0 < CHUNK ? shared_len - n0 : CHUNK);
        if (shared && c0 < n_keys) {
            const int rlen = n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK;
            attn_chunk_step<HD, float>(qs, Ks + lane * (HD + 1), Vs + lane * HD, rlen, scale, mx, l, acc, lane);
        }
    }
    if (active && !shared) {
        const int my = pt_off[r];
        for (int c0 = 0; c0 < n_keys; c0 += CHUNK) {
            const int rlen = n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK;
            const int t = c0 + (lane < rlen ? lane : 0);
            const int64_t slot = (int64_t)pages[my + t / page_size] * page_size + t % page_size;
            attn_chunk_step<HD, T>(qs, kc + slot * row + kvh * HD, vc + slot * row + kvh * HD, rlen, scale, mx, l, acc,
                                   lane);
        }
    }
    if (active) {
        float *o = out ? out + ((int64_t)r * n_heads + h) * HD : nullptr;
#pragma unroll
        for (int i = 0; i < HD / 32; i++) {
            const float v = __fdiv_rn(acc[i], l);
            if (out) o[lane + 32 * i] = v;
            if (out_bf) out_bf[((int64_t)r * n_heads + h) * HD + lane + 32 * i] = bf16_bits_rne(v);
        }
    }
}

static size_t attn_smem(int hd, int warps) { return sizeof(float) * ((size_t)CHUNK * (hd + 1) + CHUNK * hd + (size_t)warps * hd); }

template <int HD, typename T>
static void launch_attn(float *out, uint16_t *out_bf, const float *q, const T *kc, const T *vc, const int32_t *pages,
                        const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int page_size,
                        float scale, int QT, cudaStream_t stream) {
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_kernel<HD, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)attn_smem(HD, 32)));
        attr_set = true;
    }
    const int G = n_heads / n_kv, warps = QT * G < 8 ? 8 : QT * G; // at least 8 warps to load K/V chunks
    dim3 grid((M + QT - 1) / QT, n_kv);
    attn_kernel<HD, T><<<grid, warps * 32, attn_smem(HD, warps), stream>>>(out, out_bf, q, kc, vc, pages, pt_off, pos, M,
                                                                         n_heads, n_kv, page_size, scale, QT, G);
    CUDA_CHECK_LAUNCH();
}

template <typename T>
static void attn_dispatch(float *out, uint16_t *out_bf, const float *q, const T *kc, const T *vc, const int32_t *pages,
                          const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                          int page_size, float scale, int QT, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && n_kv > 0 && n_heads % n_kv == 0 && n_heads / n_kv <= 16 && page_size > 0,
                 "attention: bad head counts or page size (at most 16 query heads per KV head)");
    if (M == 0) return;
    switch (hd) {
    case 32: launch_attn<32, T>(out, out_bf, q, kc, vc, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, QT, stream); break;
    case 64: launch_attn<64, T>(out, out_bf, q, kc, vc, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, QT, stream); break;
    case 128: launch_attn<128, T>(out, out_bf, q, kc, vc, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, QT, stream); break;
    case 256: launch_attn<256, T>(out, out_bf, q, kc, vc, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, QT, stream); break;
    default: KERN_REQUIRE(false, "attention: head dim must be 32, 64, 128 or 256");
    }
}

// The decode kernel's optional q/k norm + RoPE prologue (kern_cuda_attn_decode_fused_qknorm_bf16): qw NULL = q and
// k_new arrive normed and rotated.
struct qkn_args {
    const float *qw, *kw, *rope;
    float eps;
};

// ---- decode: the chunks of a window in parallel (see the header)
// Chunks per window by head dim: the window's K and V stay under ~135 KB of shared memory. WPC warps per chunk
// (1, or 2 when hd >= 64 and G is even: twice the warps per SM, same shared memory). The window's K and V are kept
// as cache elements T (a bf16 window takes half the bytes; widened on load).
template <int HD, typename T, int WPC> struct dec_cfg {
    static constexpr int W = HD >= 256 ? 2 : HD == 128 ? 4 : 8;
    static constexpr int NW = W * WPC;              // warps per block
    static constexpr int HPW = (16 + NW - 1) / NW;  // heads per owner warp in phase 3: G <= 16
    static constexpr int EPC = 16 / (int)sizeof(T); // elements per 16-byte cp.async
    static constexpr int KS = HD + EPC; // K row stride: 16-byte rows for cp.async, 8- and 16-byte reads conflict-free
    static_assert(WPC == 1 || (HD / 32) % 2 == 0, "attention decode: two warps per chunk need hd >= 64");
    static size_t smem(int G) {
        return sizeof(T) * (size_t)W * CHUNK * (KS + HD) +
               sizeof(float) * ((size_t)G * HD + (size_t)WPC * G * W * CHUNK + (size_t)G * W * HD + 3 * (size_t)G * W + G);
    }
};

// NI consecutive elements of a row from shared memory (the elements a lane owns in phase 2).
template <int NI, typename T> __device__ __forceinline__ void attn_ld_run(const T *p, float (&v)[NI]) {
    if constexpr (NI % 4 == 0) {
#pragma unroll
        for (int i = 0; i < NI; i += 4) {
            const float4 t = kv_ld4(p + i);
            v[i] = t.x, v[i + 1] = t.y, v[i + 2] = t.z, v[i + 3] = t.w;
        }
    } else if constexpr (NI % 2 == 0) {
#pragma unroll
        for (int i = 0; i < NI; i += 2) {
            const float2 t = kv_ld2(p + i);
            v[i] = t.x, v[i + 1] = t.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < NI; i++) v[i] = kv_ld(p + i);
    }
}

// grid (M, n_kv), W * WPC warps; GB query heads per pass (GB divides G). Row r = blockIdx.x (one row per sequence),
// heads kvh * G .. kvh * G + G - 1. Each window of W chunks is copied into shared memory (cp.async, every thread),
// then phases 1-3 of the header; warp w works on chunk w % W. Instructions per key are kept low and the warps many,
// without touching an operation:
//  - phase 1: lane j computes key j's scores for the GB heads of a pass from 16-byte loads of key elements (8
//    accumulators, d ascending: attn_score's order). With two warps per chunk, warp half h holds accumulators
//    4h .. 4h + 3 (elements d = 8i + 4h + u) and their sum (p_4h + p_4h+1) + (p_4h+2 + p_4h+3), the two halves of
//    the dot's tree, added as the tree's last add after a barrier (phase 1b): the same operations;
//  - phase 2: p_j goes to shared memory (read back as broadcasts, 4 keys per 16-byte load), and lane owns
//    consecutive elements of the value rows (NI / WPC of them, in half h of the row with two warps per chunk): one
//    load per key serves the GB heads of a pass. Which lane owns d does not change its sum over j.
template <int HD, typename T, int GB, int WPC>
__global__ void __launch_bounds__(dec_cfg<HD, T, WPC>::NW * 32)
    attn_decode_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf, T *kc, T *vc,
                       const float *__restrict__ k_new, const float *__restrict__ v_new, const float *__restrict__ q,
                       const int32_t *__restrict__ pages, const int32_t *__restrict__ pt_off,
                       const int32_t *__restrict__ pos, int n_heads, int n_kv, int page_size, float scale, int G,
                       const qkn_args qkn) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    KERN_WAIT_PREREQUISITES(); // launched as a programmatic dependent: nothing is read or written before this
    using C = dec_cfg<HD, T, WPC>;
    constexpr int W = C::W, NW = C::NW, WK = W * CHUNK, NI = HD / 32, NJ = NI / WPC, KS = C::KS, HPW = C::HPW,
                  EPC = C::EPC;
    extern __shared__ __align__(16) float sm[];
    T *Kw = (T *)sm;              // (WK, KS) the window's keys
    T *Vw = Kw + WK * KS;         // (WK, HD) its values
    float *qs = (float *)(Vw + WK * HD); // (G, HD) queries (16-byte aligned: WK * (KS + HD) * sizeof(T) is)
    float *S = qs + G * HD;       // (G, WK) scores, then p (with two warps per chunk: half 0's dot half first)
    float *X = S + G * WK;        // (G, WK) two warps per chunk only: half 1's dot half, then a copy of S for half 1
    float *CS = X + (WPC - 1) * G * WK; // (G, W, HD) sum_j p_j v_j per chunk
    float *CM = CS + G * W * HD;  // (G, W) chunk max
    float *PS = CM + G * W;       // (G, W) psum
    float *AL = PS + G * W;       // (G, W) alpha
    float *MX = AL + G * W;       // (G) running max before the window
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wc = warp % W, hp = warp / W;
    const int r = blockIdx.x, kvh = blockIdx.y;
    const int t_last = pos[r], n_keys = t_last + 1, pt = pt_off[r];
    const int row = n_kv * HD; // elements per cache slot
    if (qkn.qw) {
        // q and k arrive before their norm and RoPE (qk_norm_rope_row, qk_norm_rope_kernel's bits): warp w takes
        // rows w, w + NW, .. of the block's G query heads (into qs) and its key head (into the cache); CS, unused
        // until phase 2, holds each warp's row
        const int64_t slot = (int64_t)pages[pt + t_last / page_size] * page_size + t_last % page_size;
        float *v = CS + warp * HD;
        for (int h = warp; h <= G; h += NW) {
            if (h < G)
                qk_norm_rope_row(q + ((int64_t)r * n_heads + kvh * G + h) * HD, qkn.qw, qkn.rope, t_last, HD,
                                 qkn.eps, v, lane, [&](int i, float val) { qs[h * HD + i] = val; });
            else
                qk_norm_rope_row(k_new + (int64_t)r * row + kvh * HD, qkn.kw, qkn.rope, t_last, HD, qkn.eps, v, lane,
                                 [&](int i, float val) { kv_st(kc + slot * row + kvh * HD + i, val); });
        }
        for (int d = threadIdx.x; d < HD; d += blockDim.x)
            kv_st(vc + slot * row + kvh * HD + d, v_new[(int64_t)r * row + kvh * HD + d]);
        __threadfence(); // the stores reach L2, where the block's cp.async reads them
    } else {
        if (k_new) {
            const int64_t slot = (int64_t)pages[pt + t_last / page_size] * page_size + t_last % page_size;
            for (int d = threadIdx.x; d < HD; d += blockDim.x) {
                kv_st(kc + slot * row + kvh * HD + d, k_new[(int64_t)r * row + kvh * HD + d]);
                kv_st(vc + slot * row + kvh * HD + d, v_new[(int64_t)r * row + kvh * HD + d]);
            }
            __threadfence(); // the stores reach L2, where the block's cp.async reads them
        }
        for (int e = threadIdx.x; e < G * HD; e += blockDim.x) qs[e] = q[((int64_t)r * n_heads + kvh * G) * HD + e];
    }
    for (int g = threadIdx.x; g < G; g += blockDim.x) MX[g] = -INFINITY;
    float l[HPW], acc[HPW][NI];
#pragma unroll
    for (int hh = 0; hh < HPW; hh++) {
        l[hh] = 0.0f;
#pragma unroll
        for (int i = 0; i < NI; i++) acc[hh][i] = 0.0f;
    }
    __syncthreads();

    const int nch = (n_keys + CHUNK - 1) / CHUNK;
    // The window's keys (vals = 0) or values (vals = 1) into shared memory, as one cp.async group; a window past the
    // last chunk commits an empty group, so that every thread's group count stays the same.
    auto fetch = [&](int cw, int vals) {
        const int k0 = cw * CHUNK, nk = cw < nch ? (n_keys - k0 < WK ? n_keys - k0 : WK) : 0;
        const T *src = (vals ? vc : kc) + kvh * HD;
        T *dst = vals ? Vw : Kw;
        const int stride = vals ? HD : KS;
        // thread -> (key j, 16-byte piece d) with d fixed per thread; the key's page and offset advance by adds (one
        // division per window, not one per piece)
        constexpr int PR = HD / EPC, JS = NW * 32 / PR; // pieces per row, keys per pass
        static_assert((NW * 32) % PR == 0, "attention decode: a block's threads cover whole rows");
        const int d = (threadIdx.x % PR) * EPC;
        int j = threadIdx.x / PR, pi = (k0 + j) / page_size, po = (k0 + j) % page_size;
        for (; j < nk; j += JS) {
            const int64_t slot = (int64_t)pages[pt + pi] * page_size + po;
            cp_async16(dst + j * stride + d, src + slot * row + d, true);
            for (po += JS; po >= page_size; po -= page_size) pi++;
        }
        cp_async_commit();
    };
    // Software pipeline (the arithmetic is untouched): the next window's keys load while this window's values are
    // used (phases 2-3), and its values while phase 3 and the next phase 1 run. Groups in flight: K(w), V(w).
    fetch(0, 0);
    fetch(0, 1);
    for (int cw = 0; cw < nch; cw += W) {
        cp_async_wait<1>(); // K(w) has landed; V(w) may still be in flight
        __syncthreads();
        const int c = cw + wc;
        const int c0 = c * CHUNK;
        const int len = c < nch ? (n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK) : 0;
        // phase 1: scores and chunk max (one warp per chunk), or the two halves of each dot (two warps per chunk)
        if (len > 0) {
            constexpr int U = 8 / WPC; // accumulators per warp
            const T *krow = Kw + (wc * CHUNK + lane) * KS + hp * U;
            for (int g0 = 0; g0 < G; g0 += GB) {
                float pa[GB][U];
#pragma unroll
                for (int gg = 0; gg < GB; gg++)
#pragma unroll
                    for (int u = 0; u < U; u++) pa[gg][u] = 0.0f;
#pragma unroll 4
                for (int d = 0; d < HD; d += 8) {
                    float kk[U];
                    if constexpr (U == 8) {
                        kv_ld8(krow + d, kk);
                    } else {
                        const float4 t = kv_ld4(krow + d);
                        kk[0] = t.x, kk[1] = t.y, kk[2] = t.z, kk[3] = t.w;
                    }
#pragma unroll
                    for (int gg = 0; gg < GB; gg++) {
                        const float *qg = qs + (g0 + gg) * HD + d + hp * U;
                        float qq[U];
#pragma unroll
                        for (int u = 0; u < U; u += 4) {
                            const float4 t = *(const float4 *)(qg + u);
                            qq[u] = t.x, qq[u + 1] = t.y, qq[u + 2] = t.z, qq[u + 3] = t.w;
                        }
#pragma unroll
                        for (int u = 0; u < U; u++) pa[gg][u] = __fadd_rn(pa[gg][u], __fmul_rn(qq[u], kk[u]));
                    }
                }
#pragma unroll
                for (int gg = 0; gg < GB; gg++) {
                    const float *p = pa[gg];
                    const int i = (g0 + gg) * WK + wc * CHUNK + lane;
                    if constexpr (WPC == 1) {
                        const float dot = __fadd_rn(dot_half(p), dot_half(p + 4));
                        const float s = lane < len ? __fmul_rn(dot, scale) : -INFINITY;
                        const float cmax = warp_max_xor(s);
                        S[i] = s;
                        if (lane == 0) CM[(g0 + gg) * W + wc] = cmax;
                    } else {
                        (hp == 0 ? S : X)[i] = dot_half(p);
                    }
                }
            }
        }
        __syncthreads(); // every read of Kw is done: the next window's keys may overwrite it
        fetch(cw + W, 0);
        if constexpr (WPC == 2) {
            // phase 1b: the dot's last add, the scale and the chunk max; half h takes heads h, h + 2, ... S and X
            // both get the score (each half of phase 2 then overwrites its own copy with p).
            if (len > 0) {
                for (int g = hp; g < G; g += 2) {
                    const int i = g * WK + wc * CHUNK + lane;
                    const float s = lane < len ? __fmul_rn(__fadd_rn(S[i], X[i]), scale) : -INFINITY;
                    const float cmax = warp_max_xor(s);
                    S[i] = s;
                    X[i] = s;
                    if (lane == 0) CM[g * W + wc] = cmax;
                }
            }
        }
        cp_async_wait<1>(); // V(w) has landed (K(w + W) is the one group left in flight)
        __syncthreads();
        // phase 2: alpha, p_j and psum per head, then sum_j p_j v_j for GB heads per pass over the value rows
        if (len > 0) {
            const T *vch = Vw + wc * CHUNK * HD + hp * (HD / WPC) + NJ * lane;
            float *P = WPC == 2 && hp == 1 ? X : S; // this warp's copy of the scores, overwritten by p
            for (int g0 = 0; g0 < G; g0 += GB) {
#pragma unroll
                for (int gg = 0; gg < GB; gg++) {
                    const int g = g0 + gg;
                    float mprev = MX[g];
                    for (int w2 = 0; w2 < wc; w2++) {
                        const float cm = CM[g * W + w2];
                        mprev = cm > mprev ? cm : mprev;
                    }
                    const float cmax = CM[g * W + wc];
                    const float mnew = cmax > mprev ? cmax : mprev;
                    const float alpha = mprev == -INFINITY ? 0.0f : expf(__fsub_rn(mprev, mnew));
                    float *sp = P + g * WK + wc * CHUNK + lane;
                    const float p = lane < len ? expf(__fsub_rn(*sp, mnew)) : 0.0f;
                    const float psum = warp_sum_xor(p);
                    *sp = p; // this lane's slot of this warp's copy only
                    if (lane == 0 && hp == 0) {
                        PS[g * W + wc] = psum;
                        AL[g * W + wc] = alpha;
                    }
                }
                __syncwarp(); // the p_j of the chunk are visible to the warp
                float cs[GB][NJ];
#pragma unroll
                for (int gg = 0; gg < GB; gg++)
#pragma unroll
                    for (int i = 0; i < NJ; i++) cs[gg][i] = 0.0f;
                const float *pw = P + g0 * WK + wc * CHUNK;
                if (len == CHUNK) {
#pragma unroll 2
                    for (int j0 = 0; j0 < CHUNK; j0 += 4) {
                        float4 p4[GB];
#pragma unroll
                        for (int gg = 0; gg < GB; gg++) p4[gg] = *(const float4 *)(pw + gg * WK + j0);
#pragma unroll
                        for (int jj = 0; jj < 4; jj++) {
                            float v[NJ];
                            attn_ld_run<NJ>(vch + (j0 + jj) * HD, v);
#pragma unroll
                            for (int gg = 0; gg < GB; gg++) {
                                const float pj = jj == 0 ? p4[gg].x : jj == 1 ? p4[gg].y : jj == 2 ? p4[gg].z : p4[gg].w;
#pragma unroll
                                for (int i = 0; i < NJ; i++) cs[gg][i] = __fadd_rn(cs[gg][i], __fmul_rn(pj, v[i]));
                            }
                        }
                    }
                } else {
                    for (int j = 0; j < len; j++) {
                        float v[NJ];
                        attn_ld_run<NJ>(vch + j * HD, v);
#pragma unroll
                        for (int gg = 0; gg < GB; gg++) {
                            const float pj = pw[gg * WK + j];
#pragma unroll
                            for (int i = 0; i < NJ; i++) cs[gg][i] = __fadd_rn(cs[gg][i], __fmul_rn(pj, v[i]));
                        }
                    }
                }
#pragma unroll
                for (int gg = 0; gg < GB; gg++) {
                    float *csd = CS + ((g0 + gg) * W + wc) * HD + hp * (HD / WPC) + NJ * lane;
#pragma unroll
                    for (int i = 0; i < NJ; i++) csd[i] = cs[gg][i];
                }
            }
        }
        __syncthreads(); // every read of Vw is done: the next window's values may overwrite it
        fetch(cw + W, 1);
        // phase 3: the owner of head g folds the window's chunks in ascending order
        const int nw = nch - cw < W ? nch - cw : W;
#pragma unroll
        for (int hh = 0; hh < HPW; hh++) {
            const int g = warp + hh * NW;
            if (g < G) {
                float m = MX[g];
                for (int w2 = 0; w2 < nw; w2++) {
                    attn_fold(l[hh], acc[hh], AL[g * W + w2], PS[g * W + w2], CS + (g * W + w2) * HD + NI * lane, 1);
                    const float cm = CM[g * W + w2];
                    m = cm > m ? cm : m;
                }
                __syncwarp();
                if (lane == 0) MX[g] = m;
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int hh = 0; hh < HPW; hh++) {
        const int g = warp + hh * NW;
        if (g < G) {
            const int64_t o = ((int64_t)r * n_heads + kvh * G + g) * HD + NI * lane;
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const float v = __fdiv_rn(acc[hh][i], l[hh]);
                if (out) out[o + i] = v;
                if (out_bf) out_bf[o + i] = bf16_bits_rne(v);
            }
        }
    }
}

template <int HD, typename T, int GB, int WPC>
static void launch_decode_gb(float *out, uint16_t *out_bf, T *kc, T *vc, const float *k_new, const float *v_new,
                             const float *q, const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                             int n_heads, int n_kv, int page_size, float scale, const qkn_args &qkn,
                             cudaStream_t stream) {
    using C = dec_cfg<HD, T, WPC>;
    static size_t attr_bytes = 0;
    const int G = n_heads / n_kv;
    const size_t smem = C::smem(G);
    if (smem > attr_bytes) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<HD, T, GB, WPC>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_bytes = smem;
    }
    kern_launch_pdl(attn_decode_kernel<HD, T, GB, WPC>, dim3(M, n_kv), dim3(C::NW * 32), smem, stream, out, out_bf, kc,
                    vc, k_new, v_new, q, pages, pt_off, pos, n_heads, n_kv, page_size, scale, G, qkn);
}

// GB: the most heads per pass (4, 2 or 1) that divides G; two warps per chunk when G is even (hd >= 64).
template <int HD, typename T>
static void launch_decode(float *out, uint16_t *out_bf, T *kc, T *vc, const float *k_new, const float *v_new,
                          const float *q, const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                          int n_heads, int n_kv, int page_size, float scale, const qkn_args &qkn, cudaStream_t stream) {
    const int G = n_heads / n_kv;
    if constexpr (HD >= 64) {
        if (G % 2 == 0) {
            if (G % 4 == 0)
                launch_decode_gb<HD, T, 4, 2>(out, out_bf, kc, vc, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream);
            else
                launch_decode_gb<HD, T, 2, 2>(out, out_bf, kc, vc, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream);
            return;
        }
    }
    if (G % 4 == 0)
        launch_decode_gb<HD, T, 4, 1>(out, out_bf, kc, vc, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream);
    else if (G % 2 == 0)
        launch_decode_gb<HD, T, 2, 1>(out, out_bf, kc, vc, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream);
    else
        launch_decode_gb<HD, T, 1, 1>(out, out_bf, kc, vc, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream);
}

// The cache write of a decode call that takes the walk (kv_write.cu), by element type.
static void kv_write_t(float *kc, float *vc, const float *k_new, const float *v_new, const int32_t *pages,
                       const int32_t *pt_off, const int32_t *pos, int M, int page_size, int n_kv, int hd,
                       cudaStream_t stream) {
    kern_cuda_kv_write(kc, vc, k_new, v_new, pages, pt_off, pos, M, page_size, n_kv, hd, stream);
}
static void kv_write_t(uint16_t *kc, uint16_t *vc, const float *k_new, const float *v_new, const int32_t *pages,
                       const int32_t *pt_off, const int32_t *pos, int M, int page_size, int n_kv, int hd,
                       cudaStream_t stream) {
    kern_cuda_kv_write_bf16(kc, vc, k_new, v_new, pages, pt_off, pos, M, page_size, n_kv, hd, stream);
}

template <typename T>
static void attn_decode_fused(float *out, uint16_t *out_bf16, T *k_cache, T *v_cache, const float *k_new,
                              const float *v_new, const float *q, const int32_t *pages, const int32_t *pt_off,
                              const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size, float scale,
                              cudaStream_t stream, qkn_args qkn = {}, float *q2 = nullptr, float *k2 = nullptr) {
    KERN_REQUIRE(M >= 0 && n_kv > 0 && n_heads % n_kv == 0 && n_heads / n_kv <= 16 && page_size > 0,
                 "attention decode: bad head counts or page size (at most 16 query heads per KV head)");
    KERN_REQUIRE(out || out_bf16, "attention decode: no output");
    KERN_REQUIRE((k_new == NULL) == (v_new == NULL), "attention decode: k_new and v_new go together");
    if (M == 0) return;
    // A bf16 cache: the parallel-chunk kernel at every batch (its window takes ~70 KB of shared memory at hd 128, so
    // three blocks share an SM; measured on an H200, docs/PERFORMANCE.md: 0.208 ms against the walk's 0.609 at
    // B = 256, 512 keys). An f32 cache: the parallel-chunk kernel for few blocks (small batch; one block per SM at
    // most, ~140 KB), the walk once there are enough blocks to fill the GPU. The same bits either way.
    const int n_sm = kern_sm_count();
    const int choice = kern_tuning().attn_decode; // 0 by the block count, 1 the walk, 2 the parallel chunks
    if (choice == 1 || (choice == 0 && sizeof(T) == sizeof(float) && (int64_t)M * n_kv > n_sm)) {
        if (qkn.qw) { // the walk: the norm and RoPE as their own launch, into q2, k2
            kern_cuda_qk_norm_rope(q2, k2, q, k_new, qkn.qw, qkn.kw, pos, qkn.rope, M, n_heads, n_kv, hd, qkn.eps,
                                   stream);
            q = q2;
            k_new = k2;
        }
        if (k_new) kv_write_t(k_cache, v_cache, k_new, v_new, pages, pt_off, pos, M, page_size, n_kv, hd, stream);
        attn_dispatch<T>(out, out_bf16, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size,
                         scale, 1, stream);
        return;
    }
    switch (hd) {
    case 32: launch_decode<32, T>(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream); break;
    case 64: launch_decode<64, T>(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream); break;
    case 128: launch_decode<128, T>(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream); break;
    case 256: launch_decode<256, T>(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale, qkn, stream); break;
    default: KERN_REQUIRE(false, "attention decode: head dim must be 32, 64, 128 or 256");
    }
}

// ---- decode, ordered split (kern_cuda_attn_decode_split_bf16): the chunks of a long row spread over many blocks
// (the header's last paragraph), one launch. Workspace: f32 values, for row r < M and head h of H: scores
// s[(r H + h) KC + key], chunk max, alpha and psum [(r H + h) NC + c], cs [((r H + h) NC + c) HD + d], each split's
// max [(r H + h) SPLIT_MAX + s] (KC = 32 NC keys a row at most); then, counted back from the workspace's end (so at
// the same place whatever M), for group g = r n_kv + kvh (a row's KV head): its count of finished splits and a flag
// per split ("its maxes are stored"). The counters are zero before the first call (the caller zero-fills the
// workspace once) and each call leaves them zero.
struct split_ws {
    float *s, *cm, *al, *ps, *cs, *sm;
    unsigned *end; // one past the last counter word
    int nc;        // NC
};
// Group g's count of finished splits, and its flag of split s (set by split s < S - 1 only).
__device__ __forceinline__ unsigned *split_count(const split_ws &w, int g) {
    return w.end - 1 - (int64_t)g * (1 + KERN_CUDA_ATTN_SPLIT_MAX);
}
__device__ __forceinline__ unsigned *split_flag(const split_ws &w, int g, int s) { return split_count(w, g) - 1 - s; }
static split_ws split_layout(void *ws, size_t ws_bytes, int M, int n_heads, int hd, int key_cap) {
    split_ws w;
    w.nc = (key_cap + CHUNK - 1) / CHUNK;
    const size_t rows = (size_t)M * n_heads, nc = (size_t)w.nc;
    w.s = (float *)ws;
    w.cm = w.s + rows * nc * CHUNK;
    w.al = w.cm + rows * nc;
    w.ps = w.al + rows * nc;
    w.cs = w.ps + rows * nc;
    w.sm = w.cs + rows * nc * hd;
    w.end = (unsigned *)ws + ws_bytes / sizeof(unsigned);
    return w;
}
// The groups are r n_kv + kvh < M n_kv <= M n_heads: counters for M n_heads groups.
static size_t split_bytes(int M, int n_heads, int hd, int key_cap) {
    const size_t nc = (size_t)(key_cap + CHUNK - 1) / CHUNK, rows = (size_t)M * n_heads;
    return sizeof(float) * rows * (nc * CHUNK + 3 * nc + nc * hd + KERN_CUDA_ATTN_SPLIT_MAX) +
           sizeof(unsigned) * rows * (1 + KERN_CUDA_ATTN_SPLIT_MAX);
}
static_assert(KERN_CUDA_ATTN_SPLIT_MAX <= 32, "attention decode split: one lane per earlier split");
// The max of x[b], .., x[e - 1] and -inf, by a warp (every lane gets it): each lane folds its strided share with
// m = v > m ? v : m, then the butterfly max. Its value is the sequential fold's (max is exact; NaN chunk maxes are
// skipped by both); only the sign of a zero maximum may differ, which no result depends on: s - m, m' - m and the
// test m == -inf give the same values for +0 and -0 (expf(+0) = expf(-0) = 1). ld: the load (another block's
// values are read from L2: __ldcg).
template <typename Ld>
__device__ __forceinline__ float warp_fold_max(const float *x, int b, int e, int lane, Ld ld) {
    float m = -INFINITY;
    for (int i = b + lane; i < e; i += 32) {
        const float v = ld(x + i);
        m = v > m ? v : m;
    }
    return warp_max_xor(m);
}
__device__ __forceinline__ float warp_fold_max(const float *x, int b, int e, int lane) {
    return warp_fold_max(x, b, e, lane, [](const float *p) { return *p; });
}
// Chunks [*cb, *ce) of nch for split s of S: contiguous, ascending; the last split ends at nch.
__device__ __forceinline__ void split_range(int nch, int s, int S, int *cb, int *ce) {
    *cb = (int)((int64_t)nch * s / S);
    *ce = (int)((int64_t)nch * (s + 1) / S);
}
__device__ __forceinline__ void st_release_gpu(unsigned *p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
template <int HD> struct split_cfg {
    static constexpr int NW = HD >= 256 ? 4 : 8; // warps a block, one chunk each at a time
    static constexpr int KS = HD + 8;            // key row stride (bf16): 16-byte rows, conflict-free reads
    static constexpr int SLOT = CHUNK * KS;      // one chunk's keys or values (bf16 elements)
    // two chunk slots a warp and the row's own key and value (bf16); queries (G, HD), each warp's norm row (NW, HD),
    // each warp's scores / p_j (NW, G, 32), running maxes (NW, G), the earlier splits' max (G) (f32)
    static size_t smem(int G) {
        return 2u * (2 * NW * SLOT + 2 * HD) +
               sizeof(float) * ((size_t)G * HD + NW * HD + (size_t)NW * G * CHUNK + (size_t)NW * G + G);
    }
};

// A chunk's rows of the cache (keys c0 .. c0 + len - 1 of the row whose page table starts at pt) into dst (row stride
// ld), by one warp, as one cp.async group (empty when len is 0).
template <int HD>
__device__ __forceinline__ void split_fetch(uint16_t *dst, int ld, const uint16_t *src, const int32_t *pages, int pt,
                                            int page_size, int row, int c0, int len, int lane) {
    constexpr int PR = HD / 8; // 16-byte pieces a row
    for (int e = lane; e < len * PR; e += 32) {
        const int j = e / PR, d = (e % PR) * 8, t = c0 + j;
        const int64_t slot = (int64_t)pages[pt + t / page_size] * page_size + t % page_size;
        cp_async16(dst + j * ld + d, src + slot * row + d, true);
    }
    cp_async_commit();
}
// A bf16 row of HD elements from shared src to shared dst, by one warp.
template <int HD> __device__ __forceinline__ void split_row_copy(uint16_t *dst, const uint16_t *src, int lane) {
    for (int e = lane; e < HD / 2; e += 32) ((uint32_t *)dst)[e] = ((const uint32_t *)src)[e];
}

// Phase 3 of attn_split_kernel for NIT (head, d) elements of a row's KV head at once, e0, e0 + estep, .. (those
// below nitem): l = l alpha + psum, acc = acc alpha + cs over every chunk in ascending order (attn_fold's
// operations; each element its own chain of l), then out = acc / l. The operands of U chunks of every element are
// loaded at once from L2 (another block's stores), then folded: one round trip per U chunks, NIT chains in flight.
template <int HD, int NIT, int U>
__device__ __forceinline__ void split_fold(const split_ws &ws, int64_t hrow, int nch, int e0, int estep, int nitem,
                                           float *out, uint16_t *out_bf) {
    const float *al[NIT], *ps[NIT], *cs[NIT];
    bool on[NIT];
    float l[NIT], acc[NIT];
#pragma unroll
    for (int k = 0; k < NIT; k++) {
        const int e = e0 + k * estep;
        on[k] = e < nitem;
        const int64_t hr = hrow + (on[k] ? e : e0) / HD;
        al[k] = ws.al + hr * ws.nc, ps[k] = ws.ps + hr * ws.nc;
        cs[k] = ws.cs + hr * ws.nc * HD + (on[k] ? e : e0) % HD;
        l[k] = 0.0f, acc[k] = 0.0f;
    }
    for (int cc = 0; cc < nch; cc += U) {
        float a[NIT][U], p[NIT][U], v[NIT][U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = cc + u < nch ? cc + u : nch - 1;
#pragma unroll
            for (int k = 0; k < NIT; k++)
                a[k][u] = __ldcg(al[k] + c), p[k][u] = __ldcg(ps[k] + c), v[k][u] = __ldcg(cs[k] + (int64_t)c * HD);
        }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (cc + u < nch)
#pragma unroll
                for (int k = 0; k < NIT; k++) {
                    l[k] = __fadd_rn(__fmul_rn(l[k], a[k][u]), p[k][u]);
                    acc[k] = __fadd_rn(__fmul_rn(acc[k], a[k][u]), v[k][u]);
                }
    }
#pragma unroll
    for (int k = 0; k < NIT; k++)
        if (on[k]) {
            const int64_t o = hrow * HD + e0 + k * estep; // head row hrow + e / HD, element e % HD
            const float val = __fdiv_rn(acc[k], l[k]);
            if (out) out[o] = val;
            if (out_bf) out_bf[o] = bf16_bits_rne(val);
        }
}

// grid (M, n_kv, S), NW warps: block (r, kvh, s) takes split s of row r's chunks for KV head kvh and its G query
// heads; warp w takes chunks cb + w, cb + w + NW, .. < ce in both phases.
//  0. Before griddepcontrol.wait (during the previous kernel, the q/k/v GEMM), each warp starts loading its first
//     chunk's keys (and, if it has one chunk, its values) from the cache: keys before the row's own, which no kernel
//     of this step writes (the page tables and positions were copied before the step's first kernel). Without k_new
//     the row's own key is read from the cache, maybe just written: then nothing is read before the wait.
//  1. q (and the last split's k) normed and rotated (qk_norm_rope_row); the last split stores the row's own K/V in
//     the cache and keeps those bf16 elements in shared memory for its chunk (Kt, Vt: the bits the cache holds);
//     every chunk's scores and chunk max (attn_score's 8 accumulators, d ascending, the dot's tree, the scale, the
//     butterfly max); the split's max per head (warp_fold_max), stored, fenced, then its flag set.
//  2. The max of the earlier splits' maxes, once their flags are set: blocks are dispatched in grid order, z
//     slowest (what CUB's decoupled look-back relies on), so a block waits only for blocks dispatched before it,
//     which never wait for a later one. Then per chunk the running max before it, alpha, p_j, psum and cs = sum_j
//     ascending p_j v_j (GB heads per pass over the values).
//  3. The block counts itself done; the last of the group's S blocks folds every chunk of the row in ascending
//     order (split_fold) and writes out = acc / l, then sets the group's count and flags back to zero.
// The one-launch kernel's operations in its order, whichever block computes a chunk or folds: the same bits.
template <int HD, int GB>
__global__ void __launch_bounds__(split_cfg<HD>::NW * 32, 1) // (one block an SM: its shared memory)
    attn_split_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf, uint16_t *kc, uint16_t *vc,
                      const float *__restrict__ k_new, const float *__restrict__ v_new, const float *__restrict__ q,
                      const int32_t *__restrict__ pages, const int32_t *__restrict__ pt_off,
                      const int32_t *__restrict__ pos, int n_heads, int n_kv, int page_size, float scale, int G,
                      const qkn_args qkn, const split_ws ws) {
    KERN_LAUNCH_DEPENDENTS();
    using C = split_cfg<HD>;
    constexpr int NW = C::NW, KS = C::KS, NI = HD / 32;
    extern __shared__ __align__(16) uint8_t smb[];
    uint16_t *slots = (uint16_t *)smb;                       // (2 NW) chunk slots: keys (stride KS) or values (HD)
    uint16_t *Kt = slots + 2 * NW * C::SLOT, *Vt = Kt + HD; // the row's own key and value
    float *qs = (float *)(Vt + HD);                          // (G, HD) queries
    float *scr = qs + G * HD;                                // (NW, HD) each warp's norm row
    float *P = scr + NW * HD;                                // (NW, G, 32) scores of a warp's first chunk, then p_j
    float *RM = P + NW * G * CHUNK;                          // (NW, G) each warp's running max before its next chunk
    float *LB = RM + NW * G;                                 // (G) the max of the earlier splits' maxes
    __shared__ bool folder;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z, S = gridDim.z;
    const int t_last = pos[r], n_keys = t_last + 1, pt = pt_off[r], row = n_kv * HD;
    const int nch = (n_keys + CHUNK - 1) / CHUNK;
    int cb, ce;
    split_range(nch, s, S, &cb, &ce);
    const bool own = k_new != nullptr; // the row's own K/V come from k_new, v_new (else they are in the cache)
    const bool last = ce == nch;       // this split holds the row's last chunk, hence its own key
    const int grp = r * n_kv + kvh;
    const int64_t hrow = (int64_t)r * n_heads + kvh * G; // workspace row of head 0 of this KV head
    const uint16_t *ksrc = kc + kvh * HD, *vsrc = vc + kvh * HD;
    uint16_t *mine = slots + 2 * warp * C::SLOT;
    float *Pw = P + warp * G * CHUNK, *RMw = RM + warp * G;
    const int c0 = cb + warp, nA = c0 < ce ? (ce - 1 - c0) / NW + 1 : 0; // this warp's first chunk, its chunk count
    // the keys of chunk c to read from the cache: all but the row's own when that comes from k_new
    auto cache_len = [&](int c) {
        const int len = min(CHUNK, n_keys - c * CHUNK);
        return own && c == nch - 1 ? len - 1 : len;
    };
    if (!own) KERN_WAIT_PREREQUISITES();
    if (nA > 0) split_fetch<HD>(mine, KS, ksrc, pages, pt, page_size, row, c0 * CHUNK, cache_len(c0), lane);
    if (nA == 1) split_fetch<HD>(mine + C::SLOT, HD, vsrc, pages, pt, page_size, row, c0 * CHUNK, cache_len(c0), lane);
    KERN_WAIT_PREREQUISITES();

    const int64_t slot = (int64_t)pages[pt + t_last / page_size] * page_size + t_last % page_size;
    uint16_t *kdst = kc + slot * row + kvh * HD, *vdst = vc + slot * row + kvh * HD;
    if (qkn.qw) {
        for (int h = warp; h <= G; h += NW) {
            if (h < G)
                qk_norm_rope_row(q + (hrow + h) * HD, qkn.qw, qkn.rope, t_last, HD, qkn.eps, scr + warp * HD, lane,
                                 [&](int i, float val) { qs[h * HD + i] = val; });
            else if (last)
                qk_norm_rope_row(k_new + (int64_t)r * row + kvh * HD, qkn.kw, qkn.rope, t_last, HD, qkn.eps,
                                 scr + warp * HD, lane, [&](int i, float val) {
                                     const uint16_t b = bf16_bits_rne(val); // kv_st's rounding
                                     kdst[i] = b;
                                     Kt[i] = b;
                                 });
        }
    } else {
        if (own && last)
            for (int d = threadIdx.x; d < HD; d += blockDim.x) {
                const uint16_t b = bf16_bits_rne(k_new[(int64_t)r * row + kvh * HD + d]);
                kdst[d] = b;
                Kt[d] = b;
            }
        for (int e = threadIdx.x; e < G * HD; e += blockDim.x) qs[e] = q[hrow * HD + e];
    }
    if (own && last)
        for (int d = threadIdx.x; d < HD; d += blockDim.x) {
            const uint16_t b = bf16_bits_rne(v_new[(int64_t)r * row + kvh * HD + d]);
            vdst[d] = b;
            Vt[d] = b;
        }
    __syncthreads();

    // phase 1: scores and chunk maxes. Chunk i of the warp's is in slot i & 1; its values' first chunk goes to slot
    // nA & 1 (loaded with the last chunk's keys, or before the wait when the warp has one chunk).
    for (int i = 0; i < nA; i++) {
        const int c = c0 + i * NW, len = min(CHUNK, n_keys - c * CHUNK);
        uint16_t *kb = mine + (i & 1) * C::SLOT;
        if (i + 1 < nA)
            split_fetch<HD>(mine + ((i + 1) & 1) * C::SLOT, KS, ksrc, pages, pt, page_size, row, (c + NW) * CHUNK,
                            cache_len(c + NW), lane);
        else if (nA > 1)
            split_fetch<HD>(mine + (nA & 1) * C::SLOT, HD, vsrc, pages, pt, page_size, row, c0 * CHUNK,
                            cache_len(c0), lane);
        else
            cp_async_commit();
        cp_async_wait<1>();
        __syncwarp();
        if (own && c == nch - 1) {
            split_row_copy<HD>(kb + (len - 1) * KS, Kt, lane);
            __syncwarp();
        }
        const uint16_t *krow = kb + lane * KS;
        for (int g = 0; g < G; g++) {
            float p8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            const float *qg = qs + g * HD;
#pragma unroll 4
            for (int d = 0; d < HD; d += 8) {
                float kk[8];
                kv_ld8(krow + d, kk);
#pragma unroll
                for (int u = 0; u < 8; u++) p8[u] = __fadd_rn(p8[u], __fmul_rn(qg[d + u], kk[u]));
            }
            const float dot = __fadd_rn(dot_half(p8), dot_half(p8 + 4));
            const float sc = lane < len ? __fmul_rn(dot, scale) : -INFINITY;
            const float cmax = warp_max_xor(sc);
            if (i == 0) Pw[g * CHUNK + lane] = sc;
            else if (lane < len) ws.s[((hrow + g) * ws.nc + c) * CHUNK + lane] = sc;
            if (lane == 0) ws.cm[(hrow + g) * ws.nc + c] = cmax;
        }
        __syncwarp(); // the slot's reads are done before its next fetch
    }
    __syncthreads(); // the block's chunk maxes are stored (visible to the block)
    for (int g = warp; g < G; g += NW) {
        const float m = warp_fold_max(ws.cm + (hrow + g) * ws.nc, cb, ce, lane);
        if (lane == 0) ws.sm[(hrow + g) * KERN_CUDA_ATTN_SPLIT_MAX + s] = m;
    }
    __threadfence(); // the split's maxes reach the device scope before its flag
    __syncthreads();
    if (warp == 0) {
        if (lane == 0 && s + 1 < S) st_release_gpu(split_flag(ws, grp, s), 1u);
        if (lane < s)
            while (ld_acquire_gpu(split_flag(ws, grp, lane)) == 0u) {
            }
        __syncwarp();
        for (int g = 0; g < G; g++) {
            const float m = warp_fold_max(ws.sm + (hrow + g) * KERN_CUDA_ATTN_SPLIT_MAX, 0, s, lane,
                                          [](const float *p) { return __ldcg(p); });
            if (lane == 0) LB[g] = m;
        }
    }
    __syncthreads();

    // phase 2: the running max before each chunk, alpha, p_j, psum, cs. Value chunk j of the warp's is in slot
    // (nA + j) & 1.
    if (nA > 0)
        for (int g = 0; g < G; g++) {
            const float a = LB[g], b = warp_fold_max(ws.cm + (hrow + g) * ws.nc, cb, c0, lane);
            if (lane == 0) RMw[g] = b > a ? b : a;
        }
    __syncwarp();
    for (int j = 0; j < nA; j++) {
        const int c = c0 + j * NW, cn = c + NW, len = min(CHUNK, n_keys - c * CHUNK);
        uint16_t *vb = mine + ((nA + j) & 1) * C::SLOT;
        if (j + 1 < nA)
            split_fetch<HD>(mine + ((nA + j + 1) & 1) * C::SLOT, HD, vsrc, pages, pt, page_size, row, cn * CHUNK,
                            cache_len(cn), lane);
        else
            cp_async_commit();
        for (int g = 0; g < G; g++) {
            const float *cmg = ws.cm + (hrow + g) * ws.nc;
            const float mprev = RMw[g];
            const float cmax = cmg[c];
            const float mnew = cmax > mprev ? cmax : mprev;
            const float alpha = mprev == -INFINITY ? 0.0f : expf(__fsub_rn(mprev, mnew));
            const float sc = lane >= len ? 0.0f : j == 0 ? Pw[g * CHUNK + lane]
                                                         : ws.s[((hrow + g) * ws.nc + c) * CHUNK + lane];
            const float p = lane < len ? expf(__fsub_rn(sc, mnew)) : 0.0f;
            const float psum = warp_sum_xor(p);
            // this warp's next chunk is cn: the maxes of chunks c .. cn - 1 join its running max
            const float mn = warp_fold_max(cmg, c, cn < ce ? cn : ce, lane);
            __syncwarp(); // every lane has read RMw[g] and its Pw slot
            Pw[g * CHUNK + lane] = p;
            if (lane == 0) {
                ws.al[(hrow + g) * ws.nc + c] = alpha;
                ws.ps[(hrow + g) * ws.nc + c] = psum;
                RMw[g] = mn > mprev ? mn : mprev;
            }
        }
        cp_async_wait<1>();
        __syncwarp(); // the chunk's values and every lane's p_j are visible to the warp
        if (own && c == nch - 1) {
            split_row_copy<HD>(vb + (len - 1) * HD, Vt, lane);
            __syncwarp();
        }
        const uint16_t *vch = vb + NI * lane;
        for (int g0 = 0; g0 < G; g0 += GB) {
            float cs[GB][NI];
#pragma unroll
            for (int gg = 0; gg < GB; gg++)
#pragma unroll
                for (int i = 0; i < NI; i++) cs[gg][i] = 0.0f;
            for (int jj = 0; jj < len; jj++) {
                float v[NI];
                attn_ld_run<NI>(vch + jj * HD, v);
#pragma unroll
                for (int gg = 0; gg < GB; gg++) {
                    const float pj = Pw[(g0 + gg) * CHUNK + jj];
#pragma unroll
                    for (int i = 0; i < NI; i++) cs[gg][i] = __fadd_rn(cs[gg][i], __fmul_rn(pj, v[i]));
                }
            }
#pragma unroll
            for (int gg = 0; gg < GB; gg++) {
                float *o = ws.cs + ((hrow + g0 + gg) * ws.nc + c) * HD + NI * lane;
#pragma unroll
                for (int i = 0; i < NI; i++) o[i] = cs[gg][i];
            }
        }
        __syncwarp(); // the slot's and Pw's reads are done before they are written again
    }
    cp_async_wait<0>();

    // phase 3: the last block of the group to finish folds the row's chunks in ascending order
    __threadfence(); // this block's alpha, psum and cs reach the device scope before it counts itself
    __syncthreads();
    if (threadIdx.x == 0) folder = atomicAdd(split_count(ws, grp), 1u) == (unsigned)S - 1;
    __syncthreads();
    if (!folder) return;
    __threadfence();
    // a thread per (head, d) element; two at once when there are more elements than threads (G > 2 at hd 128)
    const int nitem = G * HD, T = blockDim.x;
    if (nitem <= T) {
        if ((int)threadIdx.x < nitem) split_fold<HD, 1, 32>(ws, hrow, nch, threadIdx.x, T, nitem, out, out_bf);
    } else {
        for (int e = threadIdx.x; e < nitem; e += 2 * T) split_fold<HD, 2, 16>(ws, hrow, nch, e, T, nitem, out, out_bf);
    }
    if ((int)threadIdx.x < S - 1) *split_flag(ws, grp, threadIdx.x) = 0u; // every block of the group is past its wait
    if (threadIdx.x == 0) *split_count(ws, grp) = 0u;
}

template <int HD>
static void launch_split(float *out, uint16_t *out_bf, uint16_t *kc, uint16_t *vc, const float *k_new,
                         const float *v_new, const float *q, const int32_t *pages, const int32_t *pt_off,
                         const int32_t *pos, int M, int n_heads, int n_kv, int page_size, float scale, int splits,
                         const qkn_args &qkn, const split_ws &ws, cudaStream_t stream) {
    using C = split_cfg<HD>;
    const int G = n_heads / n_kv;
    static size_t attr = 0;
    const size_t sm = C::smem(G);
    if (sm > attr) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_split_kernel<HD, 4>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        CUDA_CHECK(cudaFuncSetAttribute(attn_split_kernel<HD, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        CUDA_CHECK(cudaFuncSetAttribute(attn_split_kernel<HD, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        attr = sm;
    }
    auto k = G % 4 == 0 ? attn_split_kernel<HD, 4> : G % 2 == 0 ? attn_split_kernel<HD, 2> : attn_split_kernel<HD, 1>;
    kern_launch_pdl(k, dim3(M, n_kv, splits), dim3(C::NW * 32), sm, stream, out, out_bf, kc, vc, k_new, v_new, q, pages,
                    pt_off, pos, n_heads, n_kv, page_size, scale, G, qkn, ws);
}

extern "C" int kern_cuda_attn_decode_split_rows(int n_kv, int n_sm) {
    return n_kv > 0 ? n_sm / (KERN_CUDA_ATTN_SPLIT_SPREAD * n_kv) : 0;
}

extern "C" int kern_cuda_attn_decode_split_count(int M, int n_kv, int max_keys, int n_sm) {
    if (M < 1 || M > kern_cuda_attn_decode_split_rows(n_kv, n_sm)) return 1;
    const int nch = (max_keys + CHUNK - 1) / CHUNK;
    // a power of two: few distinct counts (a CUDA graph each); >= 4 chunks a split; <= a block an SM. Measured on an
    // H200 (fifteenth session, docs/PERFORMANCE.md): bench_kernels splitsweep is fastest at 4 chunks a split for 1,024
    // and 2,048 keys; bitroll bench at batch 1, prompt 2,048 + 256: 510 tokens/s at >= 4, 466 at >= 8, 516 at >= 2.
    int s = 1;
    while (2 * s <= KERN_CUDA_ATTN_SPLIT_MAX && 2 * s * 4 <= nch && (int64_t)2 * s * M * n_kv <= n_sm) s *= 2;
    return s;
}

extern "C" size_t kern_cuda_attn_decode_split_workspace(int M, int n_heads, int hd, int key_cap) {
    return split_bytes(M, n_heads, hd, key_cap);
}

extern "C" void kern_cuda_attn_decode_split_bf16(float *out, uint16_t *out_bf16, uint16_t *k_cache,
                                                 uint16_t *v_cache, const float *k_new, const float *v_new,
                                                 const float *q, const float *q_norm_w, const float *k_norm_w,
                                                 const float *rope, float eps, const int32_t *pages,
                                                 const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                                                 int n_kv, int hd, int page_size, float scale, int splits,
                                                 int key_cap, void *ws, size_t ws_bytes, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && n_kv > 0 && n_heads % n_kv == 0 && n_heads / n_kv <= 16 && page_size > 0,
                 "attention decode split: bad head counts or page size (at most 16 query heads per KV head)");
    KERN_REQUIRE(out || out_bf16, "attention decode split: no output");
    KERN_REQUIRE((k_new == NULL) == (v_new == NULL), "attention decode split: k_new and v_new go together");
    KERN_REQUIRE((q_norm_w == NULL) == (k_norm_w == NULL) && (!q_norm_w || (rope && k_new)),
                 "attention decode split: the q/k norm needs both weights, the RoPE table and k_new");
    KERN_REQUIRE(splits >= 1 && splits <= KERN_CUDA_ATTN_SPLIT_MAX, "attention decode split: 1 <= splits <= 32");
    KERN_REQUIRE(ws && ws_bytes >= split_bytes(M, n_heads, hd, key_cap),
                 "attention decode split: workspace smaller than kern_cuda_attn_decode_split_workspace");
    if (M == 0) return;
    const qkn_args qkn = {q_norm_w, k_norm_w, rope, eps};
    const split_ws w = split_layout(ws, ws_bytes, M, n_heads, hd, key_cap);
    auto *launch = hd == 32 ? launch_split<32> : hd == 64 ? launch_split<64> : hd == 128 ? launch_split<128>
                 : hd == 256 ? launch_split<256> : nullptr;
    KERN_REQUIRE(launch, "attention decode split: head dim must be 32, 64, 128 or 256");
    launch(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale,
           splits, qkn, w, stream);
}

// Up to 8 warps per prefill block: 8 / G consecutive rows share each K/V chunk.
static int prefill_rows(int n_heads, int n_kv) {
    const int G = n_kv > 0 ? n_heads / n_kv : 1;
    return G >= 8 ? 1 : 8 / (G > 0 ? G : 1);
}

extern "C" void kern_cuda_attn_decode_fused(float *out, uint16_t *out_bf16, float *k_cache, float *v_cache,
                                            const float *k_new, const float *v_new, const float *q,
                                            const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                            int n_heads, int n_kv, int hd, int page_size, float scale,
                                            cudaStream_t stream) {
    attn_decode_fused(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, hd,
                      page_size, scale, stream);
}

extern "C" void kern_cuda_attn_decode_fused_bf16(float *out, uint16_t *out_bf16, uint16_t *k_cache, uint16_t *v_cache,
                                                 const float *k_new, const float *v_new, const float *q,
                                                 const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                                 int n_heads, int n_kv, int hd, int page_size, float scale,
                                                 cudaStream_t stream) {
    attn_decode_fused(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, hd,
                      page_size, scale, stream);
}

extern "C" void kern_cuda_attn_decode_fused_qknorm_bf16(float *out, uint16_t *out_bf16, uint16_t *k_cache,
                                                        uint16_t *v_cache, const float *k_new, const float *v_new,
                                                        const float *q, const float *q_norm_w, const float *k_norm_w,
                                                        const float *rope, float eps, float *q2, float *k2,
                                                        const int32_t *pages, const int32_t *pt_off,
                                                        const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                                                        int page_size, float scale, cudaStream_t stream) {
    KERN_REQUIRE(k_new && v_new && q_norm_w && k_norm_w && rope && q2 && k2 && hd % 2 == 0,
                 "attention decode + q/k norm: k_new, v_new, both norms' weights, the RoPE table and q2, k2 needed");
    const qkn_args qkn = {q_norm_w, k_norm_w, rope, eps};
    attn_decode_fused(out, out_bf16, k_cache, v_cache, k_new, v_new, q, pages, pt_off, pos, M, n_heads, n_kv, hd,
                      page_size, scale, stream, qkn, q2, k2);
}

extern "C" void kern_cuda_attn_prefill(float *out, const float *q, const float *k_cache, const float *v_cache,
                                       const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                       int n_heads, int n_kv, int hd, int page_size, float scale,
                                       cudaStream_t stream) {
    attn_dispatch<float>(out, nullptr, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale,
                         prefill_rows(n_heads, n_kv), stream);
}

extern "C" void kern_cuda_attn_prefill_bf16(float *out, const float *q, const uint16_t *k_cache,
                                            const uint16_t *v_cache, const int32_t *pages, const int32_t *pt_off,
                                            const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size,
                                            float scale, cudaStream_t stream) {
    attn_dispatch<uint16_t>(out, nullptr, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size,
                            scale, prefill_rows(n_heads, n_kv), stream);
}

// The cache is only read (k_new = NULL): the const is dropped for the shared signature.
extern "C" void kern_cuda_attn_decode(float *out, const float *q, const float *k_cache, const float *v_cache,
                                      const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                      int n_heads, int n_kv, int hd, int page_size, float scale,
                                      cudaStream_t stream) {
    attn_decode_fused(out, (uint16_t *)NULL, (float *)k_cache, (float *)v_cache, NULL, NULL, q, pages, pt_off, pos, M,
                      n_heads, n_kv, hd, page_size, scale, stream);
}

extern "C" void kern_cuda_attn_decode_bf16(float *out, const float *q, const uint16_t *k_cache,
                                           const uint16_t *v_cache, const int32_t *pages, const int32_t *pt_off,
                                           const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size,
                                           float scale, cudaStream_t stream) {
    attn_decode_fused(out, (uint16_t *)NULL, (uint16_t *)k_cache, (uint16_t *)v_cache, NULL, NULL, q, pages, pt_off,
                      pos, M, n_heads, n_kv, hd, page_size, scale, stream);
}
