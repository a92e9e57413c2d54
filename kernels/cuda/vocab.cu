// The vocabulary work of every logits row, one implementation for generate and score: the logits digest, the row
// max m of x/T and log-sum-exp lse, and the row's token -- argmax (greedy), Gumbel-max (sampling) or a given target
// (teacher forcing, or decided on the host for top-k/top-p): kern_cuda_vocab_rows. The host forms the recorded
// log-prob (x_token / T - m) - lse with the same IEEE operations on both paths.
//
// Purpose/Why (the fixed reduction order). A row is cut into segments of VOCAB_SEG entries (a function of V only,
// never of R), and each (segment, row) is one block of VOCAB_THREADS threads, so that one row alone (batch 1) still
// spreads over many SMs. Three launches: (1) per segment: max of x/T, argmax, Gumbel-max and the digest; (2) per
// segment: sum_j expf(x_j/T - m) with m the max over the row's segments; (3) per row: the segment results combined.
// max, argmax and Gumbel-max reduce with a total order (value desc, index asc; NaN never wins) and the digest with
// exact 64-bit integer sums (docs/FORMAT.md), so their reduction order cannot change them: the digest, max and argmax
// equal the CPU's exactly. The only rounding reduction is the sum: in a segment, thread t adds its terms
// j = seg0 + t, seg0 + t + VOCAB_THREADS, ... in ascending j, then a xor butterfly inside each warp (16, 8, 4, 2, 1)
// and a fixed pairwise tree over the warp sums; the segment sums are then added in ascending segment order. None of
// this depends on R, on which rows share the launch, or on the path (generate or score) that asked for the row.
// Gumbel noise: one Philox call (common/philox.h, shared with the host sampler) gives the 4 uniforms of an aligned
// quad of ids (j >> 2), so each thread visits whole quads in pass (1); g = -kern_logf(-kern_logf(u)) (kern_math.h),
// the host sampler's function, so a row's sampled token is the CPU's whenever its logits are (the fp32 mode). An id
// whose noise bound (fast intrinsics, gumbel_bound) cannot lift it to the exact value of another id skips the exact
// noise: it could not have won, so the token is the one of evaluating every id (tested against the host, exactly).
// The fp32 mode then replaces lse by the CPU's 8-lane order (kern_cuda_cpuo_lse, cpu_order.cu).
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "common/philox.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/kern.h"
#include "kernels/kern_math.h"

#define VOCAB_THREADS 256
#define VOCAB_WARPS (VOCAB_THREADS / 32)

// (v, i) beats (w, j): larger value, then lower index; NaN never wins.
__device__ __forceinline__ bool beats(float v, int i, float w, int j) {
    if (isnan(v)) return false;
    if (j < 0 || isnan(w)) return i >= 0;
    return v > w || (v == w && i < j);
}

__device__ __forceinline__ void warp_best(float &v, int &i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        int j = __shfl_xor_sync(0xffffffffu, i, o);
        if (beats(w, j, v, i)) {
            v = w;
            i = j;
        }
    }
}

#define VOCAB_SEG 8192 // entries per segment (a multiple of 4: segments hold whole Philox quads)

struct vocab_part {
    float m, best, gbest, sum;
    int bi, gi;
    unsigned long long d;
};

// An upper bound of the Gumbel noise -kern_logf(-kern_logf(u)) from the fast intrinsics: t = -ln u is bounded below
// by 1 - u (ln u <= u - 1; exact in fp32 for u >= 1/2, and for u < 1/2 t exceeds 1 - u by more than 0.19) and by
// -__logf(u) less its error (at most 2^-21.41 absolute on [1/2, 2], 3 ulp elsewhere: 1e-6 absolute + relative
// covers it); the noise -ln t is then at most -__logf(t_low) plus 1e-5 + 1e-5 |.|, which covers __logf's error, the
// rounding of kern_logf's two results (within 1 ulp of ln each) and the float operations here. (Measured on an H200:
// skipping by a thread's own running best, with the T = 1 shortcut, left 496 us of vocabulary rows per decode step
// at 256 rows against 555 in the previous session's profile: some lane of a warp nearly always needed the exact
// noise, hence the warp-wide threshold.)
__device__ __forceinline__ float gumbel_bound(float u) {
    const float ta = -__logf(u), tl = fmaxf(__fsub_rn(1.0f, u), ta - 1e-6f - 1e-6f * fabsf(ta));
    const float nb = -__logf(tl);
    return nb + 1e-5f + 1e-5f * fabsf(nb);
}

// x / T, IEEE-rounded; x / 1 is x, so T = 1 skips the division (same bits).
__device__ __forceinline__ float over_t(float v, float T) { return T == 1.0f ? v : __fdiv_rn(v, T); }

// One id of pass 1 without its Gumbel noise: max of x/T, argmax and the digest. Returns x/T.
__device__ __forceinline__ float visit(int j, float v, float T, float &m, float &best, int &bi, unsigned long long &d) {
    const float vt = over_t(v, T);
    m = fmaxf(m, vt);
    if (beats(v, j, best, bi)) {
        best = v;
        bi = j;
    }
    d += kern_digest_term((uint32_t)j, __float_as_uint(v));
    return vt;
}

// The exact Gumbel value of id j (the host sampler's noise, bit for bit) offered to the running best.
__device__ __forceinline__ void gumbel_exact(int j, float vt, const kern_row_req &q, float &gbest, int &gi) {
    uint32_t w[4];
    br_rand_u32x4_inline(q.seed, q.sample_id, (uint32_t)q.position, (uint32_t)j >> 2, w);
    const float g = __fadd_rn(vt, -kern_logf(-kern_logf(br_uniform01(w[j & 3]))));
    if (beats(g, j, gbest, gi)) {
        gbest = g;
        gi = j;
    }
}

#define VOCAB_QUADS (VOCAB_SEG / 4 / VOCAB_THREADS) // quads of ids a thread visits in a segment (8)

// Pass 1, grid (segments, R). Gumbel rows: the exact noise (two double-precision kern_logf per id: the cost of this
// kernel) only where the id could win. Each id gets an upper bound vt + gumbel_bound(u) of its Gumbel value (fp32
// addition is monotone); each thread evaluates exactly its id of largest bound, and the warp's best of those values,
// tau, is a value of some id, so at most the row's winning value: an id whose bound is below tau loses to it and is
// skipped; every other id is evaluated exactly (a warp-wide threshold, so the lanes rarely diverge). The result is the
// argmax over every id, as if each had been evaluated.
__global__ void __launch_bounds__(VOCAB_THREADS)
vocab_part_kernel(vocab_part *parts, const float *x, const kern_row_req *req, int V, int n_seg) {
    __shared__ float s_v[VOCAB_WARPS], s_g[VOCAB_WARPS], s_m[VOCAB_WARPS];
    __shared__ int s_i[VOCAB_WARPS], s_gi[VOCAB_WARPS];
    __shared__ unsigned long long s_d[VOCAB_WARPS];
    const int seg = blockIdx.x, r = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *xr = x + (size_t)r * V;
    const kern_row_req q = req[r];
    const int j0 = seg * VOCAB_SEG, j1 = min(V, j0 + VOCAB_SEG);
    const bool gumbel = q.mode == KERN_ROW_GUMBEL;

    float best = -INFINITY, gbest = -INFINITY, m = -INFINITY;
    int bi = -1, gi = -1;
    unsigned long long d = 0;
    float bound[VOCAB_QUADS * 4]; // Gumbel rows: each id's upper bound (-inf past the segment)
    float bmax = -INFINITY;       // the thread's largest bound and its id
    int jb = -1;
#pragma unroll
    for (int k = 0; k < VOCAB_QUADS; k++) {
        const int j4 = j0 + 4 * threadIdx.x + 4 * VOCAB_THREADS * k;
        uint32_t w[4] = {0, 0, 0, 0};
        if (gumbel && j4 < j1) br_rand_u32x4_inline(q.seed, q.sample_id, (uint32_t)q.position, (uint32_t)j4 >> 2, w);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            bound[4 * k + u] = -INFINITY;
            if (j4 + u >= j1) continue;
            const float vt = visit(j4 + u, xr[j4 + u], q.temperature, m, best, bi, d);
            if (gumbel) {
                const float b = __fadd_rn(vt, gumbel_bound(br_uniform01(w[u])));
                bound[4 * k + u] = b;
                if (b > bmax) { // NaN and -inf bounds are never chosen (nor skipped: see tau below)
                    bmax = b;
                    jb = j4 + u;
                }
            }
        }
    }
    if (gumbel) {
        if (jb >= 0) gumbel_exact(jb, over_t(xr[jb], q.temperature), q, gbest, gi);
        float tau = gbest; // the warp's best exact value (-inf where no lane has one)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) tau = fmaxf(tau, __shfl_xor_sync(0xffffffffu, tau, o));
#pragma unroll
        for (int k = 0; k < VOCAB_QUADS; k++)
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int j = j0 + 4 * threadIdx.x + 4 * VOCAB_THREADS * k + u;
                if (j >= j1 || j == jb || bound[4 * k + u] < tau) continue;
                gumbel_exact(j, over_t(xr[j], q.temperature), q, gbest, gi);
            }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        d += __shfl_xor_sync(0xffffffffu, d, o);
    }
    warp_best(best, bi);
    warp_best(gbest, gi);
    if (lane == 0) {
        s_v[warp] = best;
        s_i[warp] = bi;
        s_g[warp] = gbest;
        s_gi[warp] = gi;
        s_d[warp] = d;
        s_m[warp] = m;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        vocab_part p;
        p.m = s_m[0], p.best = s_v[0], p.gbest = s_g[0], p.bi = s_i[0], p.gi = s_gi[0], p.d = s_d[0], p.sum = 0;
        for (int w = 1; w < VOCAB_WARPS; w++) {
            p.m = fmaxf(p.m, s_m[w]);
            if (beats(s_v[w], s_i[w], p.best, p.bi)) p.best = s_v[w], p.bi = s_i[w];
            if (beats(s_g[w], s_gi[w], p.gbest, p.gi)) p.gbest = s_g[w], p.gi = s_gi[w];
            p.d += s_d[w];
        }
        parts[(size_t)r * n_seg + seg] = p;
    }
}

// Pass 2, grid (segments, R): the segment's sum of expf(x_j/T - m), m = the row's max.
__global__ void __launch_bounds__(VOCAB_THREADS)
vocab_sum_kernel(vocab_part *parts, const float *x, const kern_row_req *req, int V, int n_seg) {
    __shared__ float s_sum[VOCAB_WARPS];
    const int seg = blockIdx.x, r = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *xr = x + (size_t)r * V;
    const float T = req[r].temperature;
    vocab_part *pr = parts + (size_t)r * n_seg;
    float mx = pr[0].m;
    for (int i = 1; i < n_seg; i++) mx = fmaxf(mx, pr[i].m);
    const int j0 = seg * VOCAB_SEG, j1 = min(V, j0 + VOCAB_SEG);
    float s = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += VOCAB_THREADS)
        s = __fadd_rn(s, expf(__fsub_rn(over_t(xr[j], T), mx)));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) s_sum[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t[VOCAB_WARPS];
#pragma unroll
        for (int w = 0; w < VOCAB_WARPS; w++) t[w] = s_sum[w];
#pragma unroll
        for (int n = VOCAB_WARPS / 2; n >= 1; n >>= 1)
#pragma unroll
            for (int w = 0; w < n; w++) t[w] = __fadd_rn(t[2 * w], t[2 * w + 1]);
        pr[seg].sum = t[0];
    }
}

// Pass 3, one thread per row: the segments in ascending order.
__global__ void vocab_final_kernel(kern_row_out *out, const vocab_part *parts, const float *x,
                                   const kern_row_req *req, int R, int V, int n_seg) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= R) return;
    const vocab_part *pr = parts + (size_t)r * n_seg;
    const kern_row_req q = req[r];
    float mx = pr[0].m, bv = pr[0].best, gv = pr[0].gbest, sum = pr[0].sum;
    int bix = pr[0].bi, gix = pr[0].gi;
    unsigned long long dg = pr[0].d;
    for (int i = 1; i < n_seg; i++) {
        mx = fmaxf(mx, pr[i].m);
        if (beats(pr[i].best, pr[i].bi, bv, bix)) bv = pr[i].best, bix = pr[i].bi;
        if (beats(pr[i].gbest, pr[i].gi, gv, gix)) gv = pr[i].gbest, gix = pr[i].gi;
        dg += pr[i].d;
        sum = __fadd_rn(sum, pr[i].sum);
    }
    // no winner (every entry NaN): id 0, as the host's kern_cpu_argmax and rollout_sample (never -1, which the
    // engine would feed back as a token)
    const int tok = q.mode == KERN_ROW_GREEDY ? (bix < 0 ? 0 : bix) : q.mode == KERN_ROW_GUMBEL ? (gix < 0 ? 0 : gix)
                                                                                                : q.target;
    kern_row_out o;
    o.token = tok;
    o.x_token = tok >= 0 && tok < V ? x[(size_t)r * V + tok] : 0.0f;
    o.m = mx;
    o.lse = logf(sum);
    o.digest = dg;
    out[r] = o;
}

extern "C" size_t kern_cuda_vocab_rows_workspace(int R, int V) {
    return (size_t)(R > 0 ? R : 0) * ((V + VOCAB_SEG - 1) / VOCAB_SEG) * sizeof(vocab_part);
}

extern "C" void kern_cuda_vocab_rows(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V,
                                     void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    KERN_REQUIRE(V > 0, "vocab_rows: V must be positive");
    if (R == 0) return;
    KERN_REQUIRE(workspace && workspace_bytes >= kern_cuda_vocab_rows_workspace(R, V),
                 "vocab_rows: workspace too small (kern_cuda_vocab_rows_workspace)");
    const int n_seg = (V + VOCAB_SEG - 1) / VOCAB_SEG;
    vocab_part *parts = (vocab_part *)workspace;
    for (int r0 = 0; r0 < R; r0 += 65535) { // grid.y holds at most 65535 rows; rows are independent
        const int n = R - r0 < 65535 ? R - r0 : 65535;
        const float *xs = x + (size_t)r0 * V;
        vocab_part_kernel<<<dim3(n_seg, n), VOCAB_THREADS, 0, stream>>>(parts, xs, req + r0, V, n_seg);
        CUDA_CHECK_LAUNCH();
        vocab_sum_kernel<<<dim3(n_seg, n), VOCAB_THREADS, 0, stream>>>(parts, xs, req + r0, V, n_seg);
        CUDA_CHECK_LAUNCH();
        vocab_final_kernel<<<(n + 127) / 128, 128, 0, stream>>>(out + r0, parts, xs, req + r0, n, V, n_seg);
        CUDA_CHECK_LAUNCH();
    }
}
