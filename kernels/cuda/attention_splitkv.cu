// Split-KV ("flash-decoding") attention over the paged KV cache (f32 or bf16 elements): the `standard` kernel mode's attention, the
// fast NON-invariant baseline that other engines use.
//
// Purpose/Why (a reduction order that depends on the batch, on purpose). The invariant kernels (attention.cu)
// give each (row, head) ONE warp that walks keys 0..t in ascending chunks, so a token's bits never depend on who
// else is in the batch -- at the price of idle SMs when the batch is small (a decode step of 4 sequences with 8
// KV heads fills 32 blocks of an H100/H200's 132 SMs). Engines built for speed split each row's keys into
// n_splits ranges that run as separate blocks, each producing a partial online-softmax state (m, l, acc), and
// merge the partials in a second pass. n_splits is chosen by COUNT (kern_cuda_attn_splitkv_splits): from the
// number of (row, KV head) pairs in the call and the longest row's key count, to fill the SMs. So the order in
// which a token's scores and values are summed -- and therefore its output bits -- depends on how many other
// rows share its batch. That is deliberate: this mode exists to measure what invariance costs and to show the
// flips it prevents (DESIGN 2). It also uses FMA and exp2 with the scale folded in, as FlashAttention does.
//
// What IS fixed: for the same inputs and the same n_splits the result is the same bits run to run (no atomics;
// each partial is written to its own workspace slot and merged in ascending split order). Tested (memcmp), as is
// its distance to the CPU reference for n_splits = 1, 2, 7, 32.
//
// Pass 1, grid (ceil(M / QT), n_kv, n_splits), block QT * G warps (G = n_heads / n_kv): warp w handles row
// m0 + w / G, head kvh * G + w % G, split z. A row's keys are cut on chunk boundaries (KERN_ATTN_CHUNK = 32):
// with C = ceil(len / 32) chunks, split z covers chunks [z * ceil(C / S), (z + 1) * ceil(C / S)) of `len`, where
// len is the longest row of the block's first sequence for rows of that sequence (they share K/V chunks through
// shared memory, QT > 1 only for prefill calls) and the row's own key count otherwise. A row visits only its keys
// 0..pos. Per chunk, one online-softmax step in the log2 domain: s_j = fma-dot(q, k_j) * scale * log2(e),
// m' = max(m, max s_j), l = l * 2^(m - m') + sum 2^(s_j - m'), acc = acc * 2^(m - m') + sum p_j v_j.
// With n_splits == 1 pass 1 writes out = acc / l directly. Otherwise it writes (m, l, acc) to the workspace and
// pass 2 (one warp per (row, head)) merges: M = max_z m_z, w_z = 2^(m_z - M) (0 for an empty split),
// out = (sum_z w_z acc_z) / (sum_z w_z l_z).
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cpu/kern_cpu.h" // KERN_ATTN_CHUNK
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kv_elem.cuh" // f32 or bf16 cache elements, widened exactly on load

#define CHUNK KERN_ATTN_CHUNK
static_assert(CHUNK == 32, "split-KV attention: one key per lane of a warp");

#define LOG2E 1.4426950408889634f

// Key range [*k0, *k1) of split z out of S for a row span of `len` keys (chunk-aligned starts; empty past len).
__device__ __forceinline__ void split_range(int len, int S, int z, int *k0, int *k1) {
    const int chunks = (len + CHUNK - 1) / CHUNK, per = (chunks + S - 1) / S;
    const int c0 = z * per, c1 = min(chunks, c0 + per);
    *k0 = c0 * CHUNK;
    *k1 = c1 > c0 ? min(len, c1 * CHUNK) : c0 * CHUNK;
}

// One online-softmax step over one chunk (len keys, 1..32) for one (row, head), by one warp, in the log2 domain.
// qs: the query (HD) in shared memory; krow: this lane's key row (read when lane < len); vrow: this lane's value
// row (the warp shuffles the pointers, so it may point into shared memory or into the cache).
template <int HD, typename T>
__device__ __forceinline__ void splitkv_step(const float *qs, const T *krow, const T *vrow, int len,
                                             float scale_log2, float &mx, float &l, float (&acc)[HD / 32],
                                             int lane) {
    float s = -INFINITY;
    if (lane < len) {
        float dot = 0.0f;
#pragma unroll
        for (int d = 0; d < HD; d++) dot = fmaf(qs[d], kv_ld(krow + d), dot);
        s = dot * scale_log2;
    }
    float cmax = s;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, o));
    const float mnew = fmaxf(mx, cmax);
    const float alpha = mx == -INFINITY ? 0.0f : exp2f(mx - mnew);
    const float p = lane < len ? exp2f(s - mnew) : 0.0f;
    float psum = p;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
#pragma unroll
    for (int i = 0; i < HD / 32; i++) acc[i] *= alpha;
    for (int j = 0; j < len; j++) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        const T *vj = (const T *)__shfl_sync(0xffffffffu, (unsigned long long)vrow, j);
#pragma unroll
        for (int i = 0; i < HD / 32; i++) acc[i] = fmaf(pj, kv_ld(vj + lane + 32 * i), acc[i]);
    }
    l = fmaf(l, alpha, psum);
    mx = mnew;
}

// Pass 1 (the layout in the header). Shared memory: Ks (32, HD+1) (padded: lane j reads row j, conflict-free),
// Vs (32, HD), qs (warps, HD). ws_stat (M, n_heads, S, 2) = (m, l), ws_acc (M, n_heads, S, HD); unused when S == 1.
template <int HD, typename T>
__global__ void splitkv_kernel(float *__restrict__ out, float *__restrict__ ws_stat, float *__restrict__ ws_acc,
                               const float *__restrict__ q, const T *__restrict__ kc,
                               const T *__restrict__ vc, const int32_t *__restrict__ pages,
                               const int32_t *__restrict__ pt_off, const int32_t *__restrict__ pos, int M,
                               int n_heads, int n_kv, int page_size, float scale_log2, int QT, int G, int S) {
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + CHUNK * (HD + 1), *qs_all = Vs + CHUNK * HD;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nthreads = blockDim.x;
    const int m0 = blockIdx.x * QT, kvh = blockIdx.y, z = blockIdx.z;
    const int r = m0 + warp / G, h = kvh * G + warp % G;
    const bool active = r < M;
    const int seq0 = pt_off[m0];
    const int row = n_kv * HD; // elements per cache slot
    float *qs = qs_all + warp * HD;

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

    int b0, b1; // block-uniform: the loop below holds __syncthreads
    split_range(shared_len, S, z, &b0, &b1);
    for (int c0 = b0; c0 < b1; c0 += CHUNK) {
        const int len = min(CHUNK, b1 - c0);
        __syncthreads(); // the previous chunk is consumed
        for (int e = threadIdx.x; e < len * (HD / 4); e += nthreads) {
            const int j = e / (HD / 4), d = (e % (HD / 4)) * 4, t = c0 + j;
            const int64_t slot = (int64_t)pages[seq0 + t / page_size] * page_size + t % page_size;
            const float4 kv4 = kv_ld4(kc + slot * row + kvh * HD + d);
            const float4 vv4 = kv_ld4(vc + slot * row + kvh * HD + d);
            float *kd = Ks + j * (HD + 1) + d;
            kd[0] = kv4.x, kd[1] = kv4.y, kd[2] = kv4.z, kd[3] = kv4.w;
            *(float4 *)(Vs + j * HD + d) = vv4;
        }
        __syncthreads();
        if (shared && c0 < n_keys)
            splitkv_step<HD, float>(qs, Ks + lane * (HD + 1), Vs + lane * HD, min(CHUNK, n_keys - c0), scale_log2, mx, l,
                             acc, lane);
    }
    if (!active) return;
    if (!shared) { // a row of another sequence in a prefill block: its own split of its own keys, from the cache
        const int my = pt_off[r];
        int k0, k1;
        split_range(n_keys, S, z, &k0, &k1);
        for (int c0 = k0; c0 < k1; c0 += CHUNK) {
            const int rlen = min(CHUNK, k1 - c0);
            const int t = c0 + (lane < rlen ? lane : 0);
            const int64_t slot = (int64_t)pages[my + t / page_size] * page_size + t % page_size;
            splitkv_step<HD, T>(qs, kc + slot * row + kvh * HD, vc + slot * row + kvh * HD, rlen, scale_log2, mx, l,
                             acc, lane);
        }
    }
    const int64_t rh = (int64_t)r * n_heads + h;
    if (S == 1) { // every row has key 0 in its only split: l > 0
        const float inv = 1.0f / l;
#pragma unroll
        for (int i = 0; i < HD / 32; i++) out[rh * HD + lane + 32 * i] = acc[i] * inv;
        return;
    }
    // An empty split (its range past the row's keys) writes m = -inf, l = 0, acc = 0: weight 0 in the merge.
    float *a = ws_acc + (rh * S + z) * HD;
#pragma unroll
    for (int i = 0; i < HD / 32; i++) a[lane + 32 * i] = acc[i];
    if (lane == 0) ws_stat[(rh * S + z) * 2] = mx, ws_stat[(rh * S + z) * 2 + 1] = l;
}

// Pass 2: one warp per (row, head); merges the S partials in ascending z (a fixed order for a given S).
__global__ void splitkv_combine_kernel(float *__restrict__ out, const float *__restrict__ ws_stat,
                                       const float *__restrict__ ws_acc, int rows_heads, int hd, int S) {
    const int64_t rh = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (rh >= rows_heads) return;
    const float *st = ws_stat + rh * S * 2;
    float gm = -INFINITY;
    for (int z = lane; z < S; z += 32) gm = fmaxf(gm, st[2 * z]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) gm = fmaxf(gm, __shfl_xor_sync(0xffffffffu, gm, o));
    float L = 0.0f; // split 0 always holds key 0, so gm is finite and L > 0
    for (int z = 0; z < S; z++) {
        const float mz = st[2 * z];
        if (mz != -INFINITY) L = fmaf(exp2f(mz - gm), st[2 * z + 1], L);
    }
    const float inv = 1.0f / L;
    const float *a = ws_acc + rh * S * hd;
    for (int d = lane; d < hd; d += 32) {
        float o = 0.0f;
        for (int z = 0; z < S; z++) {
            const float mz = st[2 * z];
            if (mz != -INFINITY) o = fmaf(exp2f(mz - gm), a[(int64_t)z * hd + d], o);
        }
        out[rh * hd + d] = o * inv;
    }
}

static size_t splitkv_smem(int hd, int warps) {
    return sizeof(float) * ((size_t)CHUNK * (hd + 1) + CHUNK * hd + (size_t)warps * hd);
}

template <int HD, typename T>
static void launch_splitkv(float *out, float *ws_stat, float *ws_acc, const float *q, const T *kc,
                           const T *vc, const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                           int n_heads, int n_kv, int page_size, float scale_log2, int QT, int S,
                           cudaStream_t stream) {
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(splitkv_kernel<HD, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)splitkv_smem(HD, 32)));
        attr_set = true;
    }
    const int G = n_heads / n_kv, warps = QT * G;
    dim3 grid((M + QT - 1) / QT, n_kv, S);
    splitkv_kernel<HD, T><<<grid, warps * 32, splitkv_smem(HD, warps), stream>>>(
        out, ws_stat, ws_acc, q, kc, vc, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale_log2, QT, G, S);
    CUDA_CHECK_LAUNCH();
}

extern "C" int kern_cuda_attn_splitkv_splits(int M, int n_kv, int max_keys, int n_sm) {
    const long long pairs = (long long)M * n_kv; // pass-1 blocks per split (decode: #seqs x #kv-heads)
    const int chunks = max_keys / CHUNK + (max_keys % CHUNK != 0);
    if (pairs <= 0 || n_sm <= 0 || chunks <= 1) return 1;
    if (pairs * 5 >= (long long)n_sm * 4) return 1; // >= 80% of the SMs already have a block
    long long s = ((long long)n_sm + pairs - 1) / pairs; // one full wave
    if (s > chunks) s = chunks;                         // at least one chunk of keys per split
    if (s > KERN_CUDA_SPLITKV_MAX) s = KERN_CUDA_SPLITKV_MAX;
    return (int)s;
}

extern "C" size_t kern_cuda_attn_splitkv_workspace_bytes(int M, int n_heads, int hd, int n_splits) {
    if (M <= 0 || n_splits <= 1) return 0;
    return (size_t)M * n_heads * n_splits * ((size_t)hd + 2) * sizeof(float);
}

extern "C" size_t kern_cuda_attn_splitkv_workspace_max(int max_rows, int n_heads, int n_kv, int hd, int n_sm) {
    size_t most = 0;
    for (int M = 1; M <= max_rows; M++) {
        const int S = kern_cuda_attn_splitkv_splits(M, n_kv, INT_MAX, n_sm); // the most splits any keys give
        if (S == 1) break; // more rows never split again
        const size_t b = kern_cuda_attn_splitkv_workspace_bytes(M, n_heads, hd, S);
        if (b > most) most = b;
    }
    return most;
}

template <typename T>
static void attn_splitkv(float *out, const float *q, const T *k_cache, const T *v_cache, const int32_t *pages,
                         const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size,
                         float scale, int n_splits, int prefill, float *workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && n_kv > 0 && n_heads % n_kv == 0 && n_heads / n_kv <= 32 && page_size > 0,
                 "attn_splitkv: bad head counts or page size");
    KERN_REQUIRE(n_splits >= 1 && n_splits <= KERN_CUDA_SPLITKV_MAX, "attn_splitkv: n_splits out of range");
    KERN_REQUIRE(workspace_bytes >= kern_cuda_attn_splitkv_workspace_bytes(M, n_heads, hd, n_splits) &&
                     (n_splits == 1 || M == 0 || workspace),
                 "attn_splitkv: workspace too small for (M, n_heads, hd, n_splits)");
    if (M == 0) return;
    const int G = n_heads / n_kv;
    const int QT = prefill ? (G >= 8 ? 1 : 8 / G) : 1; // prefill: up to 8 warps, 8 / G rows share K/V chunks
    const float scale_log2 = scale * LOG2E;
    float *ws_stat = n_splits > 1 ? workspace : nullptr;
    float *ws_acc = n_splits > 1 ? workspace + (size_t)M * n_heads * n_splits * 2 : nullptr;
    switch (hd) {
    case 32: launch_splitkv<32, T>(out, ws_stat, ws_acc, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale_log2, QT, n_splits, stream); break;
    case 64: launch_splitkv<64, T>(out, ws_stat, ws_acc, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale_log2, QT, n_splits, stream); break;
    case 128: launch_splitkv<128, T>(out, ws_stat, ws_acc, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale_log2, QT, n_splits, stream); break;
    case 256: launch_splitkv<256, T>(out, ws_stat, ws_acc, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, page_size, scale_log2, QT, n_splits, stream); break;
    default: KERN_REQUIRE(false, "attn_splitkv: head dim must be 32, 64, 128 or 256");
    }
    if (n_splits > 1) {
        const int rows_heads = M * n_heads, threads = 128;
        splitkv_combine_kernel<<<(unsigned)(((int64_t)rows_heads * 32 + threads - 1) / threads), threads, 0,
                                 stream>>>(out, ws_stat, ws_acc, rows_heads, hd, n_splits);
        CUDA_CHECK_LAUNCH();
    }
}

extern "C" void kern_cuda_attn_splitkv(float *out, const float *q, const float *k_cache, const float *v_cache,
                                       const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                       int n_heads, int n_kv, int hd, int page_size, float scale, int n_splits,
                                       int prefill, float *workspace, size_t workspace_bytes, cudaStream_t stream) {
    attn_splitkv(out, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale, n_splits,
                 prefill, workspace, workspace_bytes, stream);
}

extern "C" void kern_cuda_attn_splitkv_bf16(float *out, const float *q, const uint16_t *k_cache,
                                            const uint16_t *v_cache, const int32_t *pages, const int32_t *pt_off,
                                            const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size,
                                            float scale, int n_splits, int prefill, float *workspace,
                                            size_t workspace_bytes, cudaStream_t stream) {
    attn_splitkv(out, q, k_cache, v_cache, pages, pt_off, pos, M, n_heads, n_kv, hd, page_size, scale, n_splits,
                 prefill, workspace, workspace_bytes, stream);
}
