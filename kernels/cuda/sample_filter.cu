// Top-k / top-p sampling on the device: the token that the host sampler (rollout_sample, rollout/sampler.c) picks from
// the same logits row, bit for bit, without copying the row to the host: kern_cuda_sample_filter.
//
// Purpose/Why (the fixed order). The host's result is a function of three things, each reproduced here exactly:
// 1. the candidate order (ranks_before: logit desc, id asc, NaN after every number, -0 == +0). Each logit becomes a
//    32-bit key whose unsigned ascending order is that order with the id left out: NaN -> 0xffffffff, -0 -> the key
//    of +0, else the complement of the usual order-preserving float transform. The (key, id) pairs of a row, ids in
//    ascending order, are sorted ascending by CUB's radix sort, which is stable: equal keys keep the id order, so the
//    sorted ids ARE the host's kept[]. A stable sort's output is unique, so how CUB schedules its passes (policy,
//    block count, digits, its tile counters) cannot change a bit, and neither can the other rows of the call nor the
//    way chosen: a group of up to SF_ROWSORT_MAX rows is sorted row by row with the device-wide sort (the whole GPU
//    on one row: batch-1 decode), a larger group in one segmented sort (a block per row).
// 2. the top-p prefix n: lp_j = (x_j / T - m) - lse with m the row's max of x/T (exact in kern_cuda_vocab_rows: a
//    max is order free) and lse the CPU's row_lse (kern_cuda_cpuo_lse_rows: cpu_order.cu's kernel, the CPU's 8-lane
//    order), then mass = fp32 sum of kern_expf(lp) over kept[0], kept[1], ... strictly in that order by one thread,
//    ending at the first i with mass >= top_p. The exps of a tile of SF_TILE entries are computed in parallel (each
//    term is independent; warps 1.. compute the next tile while thread 0 adds this one); only the additions are
//    sequential, and they are the host's additions in the host's order (sf_mass: blocks of 8 whose sum stays below
//    top_p are not compared term by term -- the running sum of terms >= 0 never decreases -- the adds are the same).
// 3. Gumbel-max over kept[0..n): v_j = x_j / T + g_j, g_j = -kern_logf(-kern_logf(u_j)) from the Philox block
//    (seed, sample_id, position, j / 4) -- the host's rollout_gumbel, word j % 4 -- then the best (larger v, ties
//    lower id, NaN never wins): per segment of SF_GSEG sorted entries by a block, then over the segments by one
//    thread; a total order, so neither reduction's order can matter; no winner -> kept[0] (0 when the row has no
//    filter at all: top_k = 0, top_p = 1, as rollout_sample does).
// Every fp32 operation is its own IEEE operation (__fdiv_rn, __fsub_rn, __fadd_rn: never contracted), exp / log are
// kern_expf / kern_logf (kern_math.h), the functions the host calls. Nothing depends on how many rows a call holds
// nor on the group size: each row's sort, scan and pick read only that row.
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "common/philox.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/kern_math.h"

#define SF_THREADS 256
#define SF_WARPS (SF_THREADS / 32)
#define SF_TILE 2048             // top-p: entries whose exps are computed at once before the sequential adds
#define SF_KEYS_PER_THREAD 4     // key kernel: entries per thread and block-row
#define SF_CUB_TEMP (256 * 1024) // reserved for CUB's temporary storage (DoubleBuffer sorts: histograms, tile states)
#define SF_ROWSORT_MAX 8         // groups of at most this many rows are sorted row by row, device wide
#define SF_GSEG 8192             // Gumbel-max: sorted entries per block (a row's kept[0..n) spreads over the GPU)
#define SF_ALIGN 256

// The candidate order as an unsigned key: key(a) < key(b) iff a ranks before b by value (ties: equal keys).
static __device__ __forceinline__ uint32_t sf_key(float v) {
    if (isnan(v)) return 0xffffffffu;
    uint32_t u = __float_as_uint(v);
    if (u == 0x80000000u) u = 0u;                              // -0 ties with +0
    const uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u); // ascending with v
    return ~ord; // only a NaN could make ~ord == 0xffffffff (ord == 0 <=> u == 0xffffffff)
}

// (v, i) beats (w, j): larger value, then lower index; NaN never wins (vocab.cu's order).
static __device__ __forceinline__ bool sf_beats(float v, int i, float w, int j) {
    if (isnan(v)) return false;
    if (j < 0 || isnan(w)) return i >= 0;
    return v > w || (v == w && i < j);
}

// Pass 1, grid (blocks over V, g): row i of the group: keys and ids (g, V); the segment offsets (g + 1) and the rows
// whose lse is needed (g; -1: no top-p).
__global__ void __launch_bounds__(SF_THREADS)
    sf_keys_kernel(uint32_t *keys, int32_t *ids, int32_t *offs, int32_t *lse_rows, const float *x,
                   const kern_filter_req *f, int g, int V) {
    const int i = blockIdx.y;
    const kern_filter_req fr = f[i];
    const float *xr = x + (size_t)fr.row * V;
    uint32_t *kr = keys + (size_t)i * V;
    int32_t *ir = ids + (size_t)i * V;
    for (int j = blockIdx.x * SF_THREADS + threadIdx.x; j < V; j += gridDim.x * SF_THREADS) {
        kr[j] = sf_key(xr[j]);
        ir[j] = j;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        offs[i] = i * V;
        if (i == g - 1) offs[g] = g * V;
        lse_rows[i] = fr.top_p < 1.0f ? fr.row : -1;
    }
}

// The exps of sorted entries i0 .. i0 + len - 1 of the row into e, by threads t0, t0 + stride, ...
static __device__ __forceinline__ void sf_exps(float *e, const float *xr, const int32_t *kept, int i0, int len, float T,
                                               float m, float lse, int t0, int stride) {
    for (int u = t0; u < len; u += stride)
        e[u] = kern_expf(__fsub_rn(__fsub_rn(__fdiv_rn(xr[kept[i0 + u]], T), m), lse));
}

// mass += e[0], e[1], ... e[len-1] in order (fp32, each add rounded), stopping at the first u with mass >= p:
// returns u, or -1 (then mass is the sum of all len terms). The terms are >= 0 or NaN, so the running sum never
// decreases: when the sum of 8 terms stays < p no prefix of them reached p, and only a block of 8 that ends >= p (or
// NaN: a prefix may have reached p before the NaN) is added again term by term -- the same adds from the same value.
static __device__ __forceinline__ int sf_mass(float &mass, const float *e, int len, float p) {
    int u = 0;
    for (; u + 8 <= len; u += 8) {
        const float4 a = *(const float4 *)(e + u), b = *(const float4 *)(e + u + 4);
        float s = mass;
        s = __fadd_rn(s, a.x), s = __fadd_rn(s, a.y), s = __fadd_rn(s, a.z), s = __fadd_rn(s, a.w);
        s = __fadd_rn(s, b.x), s = __fadd_rn(s, b.y), s = __fadd_rn(s, b.z), s = __fadd_rn(s, b.w);
        if (!(s < p)) break; // the hit (or a NaN) is in this block: redone below, term by term
        mass = s;
    }
    for (; u < len; u++) {
        mass = __fadd_rn(mass, e[u]);
        if (mass >= p) return u;
    }
    return -1;
}

// Pass 3, one block per row of the group: n_rows[i] = the top-p prefix n (k when top_p = 1).
__global__ void __launch_bounds__(SF_THREADS)
    sf_scan_kernel(int32_t *n_rows, const kern_row_out *out, const float *x, const kern_row_req *req,
                   const kern_filter_req *f, const int32_t *sorted_ids, const float *lse_cpu, int V) {
    __shared__ __align__(16) float e[2][SF_TILE];
    __shared__ int s_n;
    const int i = blockIdx.x, t = threadIdx.x, warp = t >> 5;
    const kern_filter_req fr = f[i];
    const int k = fr.top_k > 0 ? fr.top_k : V;
    if (!(fr.top_p < 1.0f)) {
        if (t == 0) n_rows[i] = k;
        return;
    }
    const int r = fr.row;
    const float *xr = x + (size_t)r * V;
    const int32_t *kept = sorted_ids + (size_t)i * V; // (V) the row's ids in candidate order
    const float T = req[r].temperature, m = out[r].m, lse = lse_cpu[i], p = fr.top_p;
    // Tile c's exps are in e[c & 1]: thread 0 adds them in order while warps 1.. compute tile c + 1's.
    float mass = 0.0f; // thread 0's running sum
    if (t == 0) s_n = 0;
    sf_exps(e[0], xr, kept, 0, min(SF_TILE, k), T, m, lse, t, SF_THREADS);
    __syncthreads();
    for (int c = 0, i0 = 0; i0 < k; c++, i0 += SF_TILE) {
        if (t == 0) {
            const int hit = sf_mass(mass, e[c & 1], min(SF_TILE, k - i0), p);
            if (hit >= 0) s_n = i0 + hit + 1;
            else if (isnan(mass)) s_n = k; // NaN stays NaN: no later prefix reaches top_p (the host keeps all k)
        } else if (warp > 0 && i0 + SF_TILE < k) {
            sf_exps(e[(c + 1) & 1], xr, kept, i0 + SF_TILE, min(SF_TILE, k - i0 - SF_TILE), T, m, lse, t - 32,
                    SF_THREADS - 32);
        }
        __syncthreads(); // s_n is final for tile c; tile c + 1 is ready; e[c & 1] may be rewritten
        if (s_n) break;
    }
    if (t == 0) n_rows[i] = s_n ? s_n : k;
}

struct sf_best {
    float v;
    int32_t i;
};

// Pass 4, grid (segments of SF_GSEG sorted entries, g): the best of v_j = x_j / T + g_j over kept[u], u in the
// segment and u < n, into parts (g, segments); (-inf, -1) for an empty one.
__global__ void __launch_bounds__(SF_THREADS)
    sf_gumbel_kernel(sf_best *parts, const float *x, const kern_row_req *req, const kern_filter_req *f,
                     const int32_t *sorted_ids, const int32_t *n_rows, int V, int n_seg) {
    __shared__ float s_v[SF_WARPS];
    __shared__ int s_i[SF_WARPS];
    const int seg = blockIdx.x, i = blockIdx.y, t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int r = f[i].row;
    const float *xr = x + (size_t)r * V;
    const int32_t *kept = sorted_ids + (size_t)i * V;
    const kern_row_req q = req[r];
    const int u1 = min(n_rows[i], (seg + 1) * SF_GSEG);
    float bv = -INFINITY;
    int bi = -1;
    for (int u = seg * SF_GSEG + t; u < u1; u += SF_THREADS) {
        const int j = kept[u];
        uint32_t w[4];
        br_rand_u32x4_inline(q.seed, q.sample_id, (uint32_t)q.position, (uint32_t)j >> 2, w);
        const float g = -kern_logf(-kern_logf(br_uniform01(w[j & 3]))); // rollout_gumbel's g_j
        const float v = __fadd_rn(__fdiv_rn(xr[j], q.temperature), g);
        if (sf_beats(v, j, bv, bi)) bv = v, bi = j;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float w = __shfl_xor_sync(0xffffffffu, bv, o);
        const int j = __shfl_xor_sync(0xffffffffu, bi, o);
        if (sf_beats(w, j, bv, bi)) bv = w, bi = j;
    }
    if (lane == 0) s_v[warp] = bv, s_i[warp] = bi;
    __syncthreads();
    if (t == 0) {
        for (int w = 1; w < SF_WARPS; w++)
            if (sf_beats(s_v[w], s_i[w], bv, bi)) bv = s_v[w], bi = s_i[w];
        parts[(size_t)i * n_seg + seg] = sf_best{bv, bi};
    }
}

// Pass 5, one thread per row of the group: the segments' best, the token and its logit.
__global__ void sf_final_kernel(kern_row_out *out, const float *x, const kern_filter_req *f,
                                const int32_t *sorted_ids, const sf_best *parts, int g, int V, int n_seg) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= g) return;
    const kern_filter_req fr = f[i];
    const sf_best *pr = parts + (size_t)i * n_seg;
    float bv = pr[0].v;
    int bi = pr[0].i;
    for (int s = 1; s < n_seg; s++)
        if (sf_beats(pr[s].v, pr[s].i, bv, bi)) bv = pr[s].v, bi = pr[s].i;
    // no winner (every v NaN): the first candidate, or 0 for a row without any filter (rollout_sample's two cases)
    const int tok = bi >= 0 ? bi : fr.top_k == 0 && !(fr.top_p < 1.0f) ? 0 : sorted_ids[(size_t)i * V];
    out[fr.row].token = tok;
    out[fr.row].x_token = x[(size_t)fr.row * V + tok];
}

namespace {
struct sf_ws {
    uint32_t *keys[2];
    int32_t *ids[2];
    int32_t *offs, *lse_rows, *n_rows;
    float *lse;
    sf_best *parts;
    void *temp;
    size_t bytes;
};
} // namespace

static int sf_segs(int V) { return (V + SF_GSEG - 1) / SF_GSEG; }
static size_t sf_round(size_t b) { return (b + SF_ALIGN - 1) / SF_ALIGN * SF_ALIGN; }

// The workspace of passes of G rows, carved from base (NULL: only the size).
static sf_ws sf_carve(char *base, int G, int V) {
    sf_ws w;
    const size_t items = (size_t)G * V;
    size_t o = 0;
    for (int b = 0; b < 2; b++) w.keys[b] = (uint32_t *)(base + o), o += sf_round(items * 4);
    for (int b = 0; b < 2; b++) w.ids[b] = (int32_t *)(base + o), o += sf_round(items * 4);
    w.offs = (int32_t *)(base + o), o += sf_round(((size_t)G + 1) * 4);
    w.lse_rows = (int32_t *)(base + o), o += sf_round((size_t)G * 4);
    w.lse = (float *)(base + o), o += sf_round((size_t)G * 4);
    w.n_rows = (int32_t *)(base + o), o += sf_round((size_t)G * 4);
    w.parts = (sf_best *)(base + o), o += sf_round((size_t)G * sf_segs(V) * sizeof(sf_best));
    w.temp = base + o, o += SF_CUB_TEMP;
    w.bytes = o;
    return w;
}

static bool sf_group_ok(int G, int V) { return G >= 1 && G <= 65535 && (int64_t)G * V <= INT_MAX; }

extern "C" size_t kern_cuda_sample_filter_workspace(int group_rows, int V) {
    KERN_REQUIRE(V > 0 && sf_group_ok(group_rows, V),
                 "sample_filter_workspace: need 1 <= group_rows <= 65535 and group_rows * V <= INT_MAX");
    return sf_carve(nullptr, group_rows, V).bytes;
}

extern "C" void kern_cuda_sample_filter(kern_row_out *out, const float *x, const kern_row_req *req,
                                        const kern_filter_req *f, const kern_filter_req *f_host, int n, int V,
                                        void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    KERN_REQUIRE(V > 0 && n >= 0, "sample_filter: bad shape");
    if (n == 0) return;
    KERN_REQUIRE(out && x && req && f && f_host, "sample_filter: NULL argument");
    for (int i = 0; i < n; i++)
        KERN_REQUIRE(f_host[i].row >= 0 && f_host[i].top_k >= 0 && f_host[i].top_k <= V && f_host[i].top_p > 0.0f &&
                         f_host[i].top_p <= 1.0f,
                     "sample_filter: a request has row < 0, top_k outside 0..V or top_p outside (0, 1]");
    KERN_REQUIRE(workspace && workspace_bytes >= kern_cuda_sample_filter_workspace(1, V),
                 "sample_filter: workspace too small for one row (kern_cuda_sample_filter_workspace)");
    // The largest group that fits (the bytes grow with G); results do not depend on it.
    int G = (int)(workspace_bytes / ((size_t)V * 16));
    if (G > 65535) G = 65535;
    if ((int64_t)G * V > INT_MAX) G = INT_MAX / V;
    while (G > 1 && sf_carve(nullptr, G, V).bytes > workspace_bytes) G--;
    if (G > n) G = n;
    const sf_ws w = sf_carve((char *)workspace, G, V);
    for (int g0 = 0; g0 < n; g0 += G) {
        const int g = n - g0 < G ? n - g0 : G;
        const kern_filter_req *fg = f + g0;
        int top_p_rows = 0;
        for (int i = 0; i < g; i++) top_p_rows += f_host[g0 + i].top_p < 1.0f;
        const int kb = (V + SF_THREADS * SF_KEYS_PER_THREAD - 1) / (SF_THREADS * SF_KEYS_PER_THREAD);
        sf_keys_kernel<<<dim3(kb, g), SF_THREADS, 0, stream>>>(w.keys[0], w.ids[0], w.offs, w.lse_rows, x, fg, g, V);
        CUDA_CHECK_LAUNCH();
        if (top_p_rows) kern_cuda_cpuo_lse_rows(w.lse, out, x, req, w.lse_rows, g, V, stream);
        // Pass 2: the sort. Both ways give the one stable order; they differ in speed only: the segmented sort gives a
        // row one block, the device-wide sort the whole GPU (faster for a few rows, launched once per row).
        int sel = -1; // which half of the double buffers holds the sorted ids
        for (int i = 0; i < (g <= SF_ROWSORT_MAX ? g : 1); i++) {
            const size_t o = g <= SF_ROWSORT_MAX ? (size_t)i * V : 0;
            cub::DoubleBuffer<uint32_t> dk(w.keys[0] + o, w.keys[1] + o);
            cub::DoubleBuffer<int32_t> dv(w.ids[0] + o, w.ids[1] + o);
            size_t temp_bytes = 0;
            if (g <= SF_ROWSORT_MAX)
                CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, dk, dv, V, 0, 32, stream));
            else
                CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(nullptr, temp_bytes, dk, dv, g * V, g, w.offs,
                                                                     w.offs + 1, 0, 32, stream));
            KERN_REQUIRE(temp_bytes <= SF_CUB_TEMP, "sample_filter: CUB wants more temporary storage than SF_CUB_TEMP");
            if (g <= SF_ROWSORT_MAX)
                CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.temp, temp_bytes, dk, dv, V, 0, 32, stream));
            else
                CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(w.temp, temp_bytes, dk, dv, g * V, g, w.offs,
                                                                     w.offs + 1, 0, 32, stream));
            KERN_REQUIRE(sel < 0 || sel == dv.selector, "sample_filter: rows sorted into different buffers");
            sel = dv.selector;
        }
        const int32_t *sorted = w.ids[sel];
        sf_scan_kernel<<<g, SF_THREADS, 0, stream>>>(w.n_rows, out, x, req, fg, sorted, w.lse, V);
        CUDA_CHECK_LAUNCH();
        const int n_seg = sf_segs(V);
        sf_gumbel_kernel<<<dim3(n_seg, g), SF_THREADS, 0, stream>>>(w.parts, x, req, fg, sorted, w.n_rows, V, n_seg);
        CUDA_CHECK_LAUNCH();
        sf_final_kernel<<<(g + 127) / 128, 128, 0, stream>>>(out, x, fg, sorted, w.parts, g, V, n_seg);
        CUDA_CHECK_LAUNCH();
    }
}
