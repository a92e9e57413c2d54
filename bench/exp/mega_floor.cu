// Experiment (written in the sixteenth session, run and extended in the seventeenth): can a persistent decode kernel
// whose parts wait on the data they need -- not on grid barriers or kernel boundaries -- read the 0.6B shape's
// batch-1 step at >= 70% of the copy bandwidth (issue 15)? The thirteenth session measured the launch floor (~1.6 us a
// dependent launch, 232 of them a step) and a persistent kernel with a grid barrier per phase (2.6 us a phase):
// neither can. This is the third form, the one the thirteenth session's note calls for: one block per SM, each
// walking a static list of tasks (a few rows of one GEMV, or one KV head of the attention) in the step's order, with
//   - a producer warp that streams each of its tasks' bytes (the W rows; the K/V cache rows) into a ring of shared
//     memory slots by bulk copies (cp.async.bulk + mbarrier) as soon as a slot is free -- those bytes never depend on
//     the step's activations, so the stream runs ahead across layers while the block waits for its inputs;
//   - 8 or 16 consumer warps (-DCONS_WARPS) that wait for the task's input (an acquire load of the producing op's
//     task counter until every task of that op has counted itself), build the input vector once per op (the RMSNorm
//     of the residual, SwiGLU of gate/up, the attention's q/k/v), compute the task's rows and count (a release add).
// Ops of a layer, Qwen3-0.6B at batch 1 (random bf16 weights, the shapes of configs/shapes/qwen3-0.6b.json): q/k/v
// (4,096 x 1,024, 16 rows a task), attention (8 KV heads, CTX cached keys each + the new one; no q/k norm or RoPE:
// a stand-in for their cost), o_proj (+ residual; 1,024 x 2,048, 8 rows), gate/up (6,144 x 1,024, 16 rows),
// down_proj (+ residual; 1,024 x 3,072, 4 rows); then the final norm and the LM head (151,936 x 1,024, 16 rows):
// 141 ops, each waiting for the whole of the one before.
// Tasks are numbered in that order and block b takes tasks b, b + G, ...: every task a block waits for has a lower
// number and is taken by a block that reaches it first, so with all G blocks resident (one an SM) nothing deadlocks.
// Counters only grow: launch s waits for (s + 1) x tasks. Forms (template arguments of `mega`): rings of 3 and 6
// slots; an L2 prefetch of the block's bytes 6 tasks ahead of the ring; a count after every task (__threadfence +
// release add) or once an op per block (after its last task of the op); with or without the __threadfence before
// the release add; three floors: no bytes read (the slots are full at once: waits + task arithmetic), no bytes and
// no task (the waits and the per-op input vectors alone), the bytes streamed and no task; and timed phases (clock64
// of each block's consumer thread 0: op waits, input vectors, slot waits, tasks, counts). -DGEMV_KSPLIT=0 gives the
// GEMV tasks of calls 1-5 (a warp a row over all of K); the default splits a task's K between warps (x read once
// for 4 rows). `mega_ll`: the LL forms (NCCL's low-latency protocol): activations are 8 bytes, value and the launch's
// tag in one 64-bit store, and a block waits for an op's input by polling the input itself -- no counters, fences
// or release adds; with a floor of its own (the bytes streamed, the tasks storing zeros without arithmetic).
// It checks itself: the same task functions launched one kernel per op (kernel boundaries instead of counters) must
// give the same logits and residual bit for bit. It prints us a step, the bytes a step reads against the copy
// bandwidth measured in the same run, and the 70% line. The arithmetic is not the engine's (fp32 dots of 8-wide
// lane chunks, float exp): this measures the data movement and the waits, not the bits.
// Measured (H200, seventeenth session, docs/PERFORMANCE.md and bench/gpu-logs/h200-2026-12-04-s17/), 28 layers and
// 64 keys: the best form (LL, 16 consumer warps) 770 us a step, 39.6% of copy; with the bytes streamed and no task
// arithmetic at all, 530 us (LL) and 542 us (counters): over the 432 us that 70% allows.
//   nvcc -O3 -std=c++17 -arch=sm_90a [-DCONS_WARPS=16] [-DGEMV_KSPLIT=0] bench/exp/mega_floor.cu -o /tmp/mega_floor
//   /tmp/mega_floor [layers] [ctx]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <vector>

#define CK(x)                                                                                                          \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));                        \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

constexpr int D = 1024, HQ = 16, HKV = 8, HD = 128, F = 3072, V = 151936;
constexpr int NQKV = (HQ + 2 * HKV) * HD; // 4,096
#ifndef CONS_WARPS
#define CONS_WARPS 8 // consumer warps a block: 8 or 16 (-DCONS_WARPS=16)
#endif
constexpr int NCW = CONS_WARPS;
constexpr int CONS = 32 * NCW;
constexpr int THREADS = CONS + 32; // the consumers + 1 producer warp
static_assert(NCW == 8 || NCW == 16, "CONS_WARPS: 8 or 16");
#ifndef GEMV_KSPLIT
#define GEMV_KSPLIT 1 // 0: a warp a row over all of K (calls 1-5); 1: a warp 4 rows over a K slice, x read once
#endif
constexpr int SLOT = 32 * 1024; // bytes of a ring slot: the largest task
constexpr int MAX_CTX = 64;     // cached keys a layer at most (+ the new one): K and V fill a slot

enum kind { QKV = 0, ATT, OPROJ, GU, DN, HEAD };
struct op_desc {
    int kind, layer, ntasks, rows, K, wait; // wait: the op whose every task must be done first (-1: none)
    int t0;                                 // the op's first task number
    const __nv_bfloat16 *w;                 // W (N, K), or this layer's K cache (HKV, ctx, HD) for ATT
    const __nv_bfloat16 *w2;                // ATT: this layer's V cache
};
constexpr int MAX_OPS = 5 * 64 + 1;
__constant__ op_desc c_ops[MAX_OPS];

struct acts {         // per layer, so that no buffer is rewritten within a step
    float *xres;      // (L + 1, D): the residual entering layer l (row 0: the embedding); row L feeds the head
    float *xmid;      // (L, D): after the attention block
    float *qkv;       // (L, NQKV)
    float *att;       // (L, HQ * HD)
    float *gu;        // (L, 2F): gate then up
    float *logits;    // (V)
    unsigned *cnt;    // (ops): tasks done, summed over launches
    unsigned long long *prof; // (G, 5): PROF forms, consumer thread 0's clock cycles per phase, summed over launches
    const float *emb;         // the embedding row (plain floats): layer 0's residual in the LL forms
    unsigned tag0;            // LL forms: launch s tags its outputs tag0 + s
    float eps;
    int ctx, n_ops;
};

// ---- PTX helpers (as gemm.cu's)
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *b, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}\n" ::"r"(
                     smem_u32(b)),
                 "r"(parity)
                 : "memory");
}
__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
}
__device__ __forceinline__ void prefetch_l2(const void *src, uint32_t bytes) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void red_release_add(unsigned *p, unsigned v) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}
// LL forms (NCCL's low-latency protocol): every activation is 8 bytes, the float's bits and the launch's tag, stored
// and loaded as one 64-bit access; a reader polls its elements until their tags are the launch's -- the data is its
// own flag, no counter, fence or release.
__device__ __forceinline__ void st_ll(float *p, int64_t i, float v, unsigned tag) {
    const unsigned long long w = ((unsigned long long)tag << 32) | __float_as_uint(v);
    asm volatile("st.relaxed.gpu.global.b64 [%0], %1;\n" ::"l"((unsigned long long *)p + i), "l"(w) : "memory");
}
__device__ __forceinline__ unsigned long long ld_ll(const float *p, int64_t i) {
    unsigned long long w;
    asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];\n" : "=l"(w) : "l"((const unsigned long long *)p + i) : "memory");
    return w;
}
template <bool LL> __device__ __forceinline__ void st_out(float *p, int64_t i, float v, unsigned tag) {
    if (LL) st_ll(p, i, v, tag);
    else p[i] = v;
}
// v[k] = element off + t + CONS k of buffer p for the k with t + CONS k < n: plain (__ldcg), or LL (8-byte elements:
// all loads issued, then each polled until tagged; a wait of 2^22 polls (seconds) traps rather than hangs)
template <bool LL, int N>
__device__ __forceinline__ void gather(float (&v)[N], const float *p, int64_t off, int n, unsigned tag) {
    const int t = threadIdx.x;
    if constexpr (!LL) {
        (void)tag;
#pragma unroll
        for (int k = 0; k < N; k++)
            if (t + CONS * k < n) v[k] = __ldcg(p + off + t + CONS * k);
    } else {
        unsigned long long w[N];
#pragma unroll
        for (int k = 0; k < N; k++)
            if (t + CONS * k < n) w[k] = ld_ll(p, off + t + CONS * k);
#pragma unroll
        for (int k = 0; k < N; k++)
            if (t + CONS * k < n) {
                for (int spins = 0; (unsigned)(w[k] >> 32) != tag; spins++) {
                    if (spins > (1 << 22)) __trap();
                    w[k] = ld_ll(p, off + t + CONS * k);
                }
                v[k] = __uint_as_float((unsigned)w[k]);
            }
    }
}

__device__ __forceinline__ void cons_bar() { asm volatile("bar.sync 1, %0;\n" ::"n"(CONS) : "memory"); }

// ---- The task functions, shared by the megakernel and the per-op reference (the same operations in both)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// Sum over the 256 consumer threads; red: 8 floats of shared memory.
__device__ __forceinline__ float cons_sum(float v, float *red) {
    v = warp_sum(v);
    cons_bar();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    cons_bar();
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NCW; i++) s += red[i];
    return s;
}

// The op's input vector into xin (floats): the norm of the residual, SwiGLU, or a copy. Consumer threads. Activations
// written by other blocks in this launch are read from L2 (__ldcg): an SM's L1 is not coherent with them.
template <bool LL>
__device__ void build_input(const op_desc &op, const acts &a, float *xin, float *red, unsigned tag = 0) {
    const int t = threadIdx.x, l = op.layer;
    // the residual entering layer l: the embedding row for l = 0 (plain in every form)
    auto res_in = [&](float (&v)[D / CONS]) {
        if (LL && l == 0) gather<false>(v, a.emb, 0, D, 0);
        else gather<LL>(v, a.xres, (int64_t)l * D, D, tag);
    };
    if (op.kind == QKV || op.kind == GU || op.kind == HEAD) {
        float v[D / CONS], s = 0.0f;
        if (op.kind == GU) gather<LL>(v, a.xmid, (int64_t)l * D, D, tag);
        else res_in(v); // HEAD: layer L, the last residual
#pragma unroll
        for (int k = 0; k < D / CONS; k++) s = fmaf(v[k], v[k], s);
        const float inv = rsqrtf(cons_sum(s, red) / D + a.eps);
#pragma unroll
        for (int k = 0; k < D / CONS; k++) xin[t + CONS * k] = v[k] * inv; // norm weights of 1: their load is 4 KB
    } else if (op.kind == DN) {
        float gv[F / CONS], uv[F / CONS];
        gather<LL>(gv, a.gu, (int64_t)l * 2 * F, F, tag);
        gather<LL>(uv, a.gu, (int64_t)l * 2 * F + F, F, tag);
#pragma unroll
        for (int k = 0; k < F / CONS; k++) xin[t + CONS * k] = gv[k] / (1.0f + __expf(-gv[k])) * uv[k];
        if (GEMV_KSPLIT) { // the residual the op adds, beside its input (xin[3072..4095])
            float r[D / CONS];
            gather<LL>(r, a.xmid, (int64_t)l * D, D, tag);
#pragma unroll
            for (int k = 0; k < D / CONS; k++) xin[F + t + CONS * k] = r[k];
        }
    } else if (op.kind == OPROJ) {
        float v[HQ * HD / CONS];
        gather<LL>(v, a.att, (int64_t)l * HQ * HD, HQ * HD, tag);
#pragma unroll
        for (int k = 0; k < HQ * HD / CONS; k++) xin[t + CONS * k] = v[k];
        if (GEMV_KSPLIT) {
            float r[D / CONS];
            res_in(r);
#pragma unroll
            for (int k = 0; k < D / CONS; k++) xin[F + t + CONS * k] = r[k];
        }
    } else { // ATT: q (HQ * HD) then the new k, v (HKV * HD each): the layer's q/k/v row
        float v[NQKV / CONS];
        gather<LL>(v, a.qkv, (int64_t)l * NQKV, NQKV, tag);
#pragma unroll
        for (int k = 0; k < NQKV / CONS; k++) xin[t + CONS * k] = v[k];
    }
    cons_bar();
}

// dot(row, xin) over K: lane l takes the 8-element chunks l, l + 32, ... in order, then the butterfly.
__device__ __forceinline__ float row_dot(const __nv_bfloat16 *row, const float *xin, int K, int lane) {
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}; // K / 256 chunks a lane (4, 8 or 12): four chains, summed in order
#pragma unroll 4
    for (int j = 0; j < K / 256; j++) {
        const int c = lane + 32 * j;
        const uint4 w = *(const uint4 *)(row + 8 * c);
        const float4 x0 = *(const float4 *)(xin + 8 * c), x1 = *(const float4 *)(xin + 8 * c + 4);
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&w;
        const float2 w0 = __bfloat1622float2(h[0]), w1 = __bfloat1622float2(h[1]), w2 = __bfloat1622float2(h[2]),
                     w3 = __bfloat1622float2(h[3]);
        float &r = acc[j & 3];
        r = fmaf(w0.x, x0.x, r), r = fmaf(w0.y, x0.y, r), r = fmaf(w1.x, x0.z, r);
        r = fmaf(w1.y, x0.w, r), r = fmaf(w2.x, x1.x, r), r = fmaf(w2.y, x1.y, r);
        r = fmaf(w3.x, x1.z, r), r = fmaf(w3.y, x1.w, r);
    }
    return warp_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

// Task `task` of op (its rows of W at tile, or its KV head's K and V cache rows at tile / tile2). Consumer threads.
template <bool LL>
__device__ void run_task(const op_desc &op, const acts &a, int task, const __nv_bfloat16 *tile,
                         const __nv_bfloat16 *tile2, const float *xin, float *scratch, unsigned tag = 0) {
    static_assert(!LL || GEMV_KSPLIT, "the LL forms take the K-split GEMV tasks");
    const int t = threadIdx.x, warp = t >> 5, lane = t & 31, l = op.layer;
    if (GEMV_KSPLIT && op.kind != ATT) {
        // warp w: rows 4 (w % RG) .. + 3 of the task, over K slice w / RG of KW (x's chunk loaded once for 4 rows);
        // lane l the slice's 8-element chunks l, l + 32, ...; then a butterfly per row, and thread r < rows adds
        // row r's KW slice sums in slice order (scratch[0 .. 4 NCW))
        const int RG = op.rows / 4, KW = NCW / RG, rg = warp % RG, ks = warp / RG, SL = op.K / KW;
        const __nv_bfloat16 *w0 = tile + (int64_t)(4 * rg) * op.K + ks * SL;
        const float *xs = xin + ks * SL;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int c = lane; c < SL / 8; c += 32) {
            const float4 x0 = *(const float4 *)(xs + 8 * c), x1 = *(const float4 *)(xs + 8 * c + 4);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const uint4 w = *(const uint4 *)(w0 + (int64_t)u * op.K + 8 * c);
                const __nv_bfloat162 *h = (const __nv_bfloat162 *)&w;
                const float2 f0 = __bfloat1622float2(h[0]), f1 = __bfloat1622float2(h[1]),
                             f2 = __bfloat1622float2(h[2]), f3 = __bfloat1622float2(h[3]);
                float r = acc[u];
                r = fmaf(f0.x, x0.x, r), r = fmaf(f0.y, x0.y, r), r = fmaf(f1.x, x0.z, r), r = fmaf(f1.y, x0.w, r);
                r = fmaf(f2.x, x1.x, r), r = fmaf(f2.y, x1.y, r), r = fmaf(f3.x, x1.z, r), r = fmaf(f3.y, x1.w, r);
                acc[u] = r;
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) acc[u] = warp_sum(acc[u]);
        if (lane == 0)
#pragma unroll
            for (int u = 0; u < 4; u++) scratch[(4 * rg + u) * KW + ks] = acc[u];
        cons_bar();
        if (t < op.rows) {
            float dot = 0.0f;
            for (int k = 0; k < KW; k++) dot += scratch[t * KW + k];
            const int n = task * op.rows + t;
            if (op.kind == QKV) st_out<LL>(a.qkv, (int64_t)l * NQKV + n, dot, tag);
            else if (op.kind == OPROJ) st_out<LL>(a.xmid, (int64_t)l * D + n, xin[F + n] + dot, tag);
            else if (op.kind == GU) st_out<LL>(a.gu, (int64_t)l * 2 * F + n, dot, tag);
            else if (op.kind == DN) st_out<LL>(a.xres, (int64_t)(l + 1) * D + n, xin[F + n] + dot, tag);
            else st_out<LL>(a.logits, n, dot, tag);
        }
        return;
    }
    if (op.kind != ATT) {
        for (int r = warp; r < op.rows; r += NCW) {
            const float dot = row_dot(tile + (int64_t)r * op.K, xin, op.K, lane);
            const int n = task * op.rows + r;
            if (lane == 0) {
                if (op.kind == QKV) a.qkv[(int64_t)l * NQKV + n] = dot;
                else if (op.kind == OPROJ) a.xmid[(int64_t)l * D + n] = __ldcg(a.xres + (int64_t)l * D + n) + dot;
                else if (op.kind == GU) a.gu[(int64_t)l * 2 * F + n] = dot;
                else if (op.kind == DN) a.xres[(int64_t)(l + 1) * D + n] = __ldcg(a.xmid + (int64_t)l * D + n) + dot;
                else a.logits[n] = dot;
            }
        }
        return;
    }
    // ATT: KV head h = task, q heads 2h (threads 0..127) and 2h + 1 (128..255); keys: ctx cached + the new one.
    // Threads 256.. (16 consumer warps) only take part in the barriers. Key i's dot runs over its 16 chunks of 8
    // elements starting at chunk i mod 16 (the rows' 16-byte chunks then spread over the banks), one chain.
    const bool on = t < 256;
    const int h = task, half = (t >> 7) & 1, i = t & 127, qh = 2 * h + half, nk = a.ctx + 1;
    const float *q = xin + qh * HD, *knew = xin + HQ * HD + h * HD, *vnew = xin + (HQ + HKV) * HD + h * HD;
    float *sc = scratch + half * (MAX_CTX + 1), *red = scratch + 2 * (MAX_CTX + 1) + half * 4;
    float s = -INFINITY;
    if (on && i < nk) {
        const __nv_bfloat16 *kr = tile + (int64_t)i * HD;
        float acc = 0.0f;
        for (int cc = 0; cc < HD / 8; cc++) {
            const int c = (cc + i) & (HD / 8 - 1);
            float kv[8];
            if (i < a.ctx) {
                const uint4 w = *(const uint4 *)(kr + 8 * c);
                const __nv_bfloat162 *hh = (const __nv_bfloat162 *)&w;
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    const float2 f = __bfloat1622float2(hh[u]);
                    kv[2 * u] = f.x, kv[2 * u + 1] = f.y;
                }
            } else {
#pragma unroll
                for (int u = 0; u < 8; u++) kv[u] = knew[8 * c + u];
            }
#pragma unroll
            for (int u = 0; u < 8; u++) acc = fmaf(q[8 * c + u], kv[u], acc);
        }
        s = acc * 0.08838834764831845f; // 1 / sqrt(128)
        sc[i] = s;
    }
    // max and sum over the half's 4 warps
    float m = s;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (on && lane == 0) red[warp & 3] = m;
    cons_bar();
    m = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
    cons_bar();
    const float p = on && i < nk ? __expf(s - m) : 0.0f;
    if (on && i < nk) sc[i] = p;
    const float z = warp_sum(p);
    if (on && lane == 0) red[warp & 3] = z;
    cons_bar();
    if (!on) return;
    const float zs = (red[0] + red[1]) + (red[2] + red[3]);
    float o[4] = {0.0f, 0.0f, 0.0f, 0.0f}; // key j into chain j mod 4, the chains summed in order
    for (int j0 = 0; j0 < nk; j0 += 4) {
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int j = j0 + u;
            if (j < nk) o[u] = fmaf(sc[j], j < a.ctx ? __bfloat162float(tile2[(int64_t)j * HD + i]) : vnew[i], o[u]);
        }
    }
    st_out<LL>(a.att, (int64_t)l * HQ * HD + qh * HD + i, ((o[0] + o[1]) + (o[2] + o[3])) / zs, tag);
}

// Where task g's bytes are: one or two contiguous ranges (ATT: K and V of its KV head).
__device__ __forceinline__ void task_src(const op_desc &op, const acts &a, int task, const void **s1, uint32_t *b1,
                                         const void **s2, uint32_t *b2) {
    if (op.kind == ATT) {
        const int64_t off = (int64_t)task * a.ctx * HD;
        *s1 = op.w + off;
        *s2 = op.w2 + off;
        *b1 = *b2 = (uint32_t)(a.ctx * HD * 2);
    } else {
        *s1 = op.w + (int64_t)task * op.rows * op.K;
        *b1 = (uint32_t)(op.rows * op.K * 2);
        *s2 = nullptr;
        *b2 = 0;
    }
}

// ---- The megakernel: one launch a step (s = the launch's number), one block an SM, NS ring slots. PF: the producer
// also asks L2 for the bytes of the block's task NS places further on (cp.async.bulk.prefetch.L2) when it loads a
// task, so that twice the ring's bytes are on their way.
// The producer (one thread): every task of the block, in order, into the ring of NS slots.
template <int NS, bool PF, int NB>
__device__ __forceinline__ void produce(const acts &a, int total, uint8_t *ring, uint64_t *full, uint64_t *empty) {
    const int G = gridDim.x;
    int op = 0, i = 0, pop = 0;
    for (int g = blockIdx.x; g < total; g += G, i++) {
        while (op + 1 < a.n_ops && c_ops[op + 1].t0 <= g) op++;
        const int slot = i % NS;
        if (i >= NS) mbar_wait(&empty[slot], ((i / NS) - 1) & 1);
        const void *s1, *s2;
        uint32_t b1, b2;
        task_src(c_ops[op], a, g - c_ops[op].t0, &s1, &b1, &s2, &b2);
        if (NB == 1 || NB == 2) b1 = b2 = 0; // no bytes: the slot is full at once (1: waits + arithmetic; 2: waits)
        mbar_expect_tx(&full[slot], b1 + b2);
        if (b1) bulk_load(ring + (size_t)slot * SLOT, s1, b1, &full[slot]);
        if (b2) bulk_load(ring + (size_t)slot * SLOT + SLOT / 2, s2, b2, &full[slot]);
        const int gp = g + NS * G; // this block's task NS places on (the ring's next use of this slot)
        if (PF && gp < total) {
            while (pop + 1 < a.n_ops && c_ops[pop + 1].t0 <= gp) pop++;
            task_src(c_ops[pop], a, gp - c_ops[pop].t0, &s1, &b1, &s2, &b2);
            prefetch_l2(s1, b1);
            if (b2) prefetch_l2(s2, b2);
        }
    }
}

// A block's shared memory in the megakernels: the ring of NS slots, their full / empty mbarriers (initialised
// here, then a block barrier), the op's input vector, the tasks' scratch and the reductions' floats.
template <int NS> struct block_smem {
    uint8_t *ring;
    uint64_t *full, *empty;
    float *xin, *scratch, *red;
    __device__ explicit block_smem(uint8_t *smem) {
        ring = smem;
        full = (uint64_t *)(smem + NS * SLOT), empty = full + NS;
        xin = (float *)(empty + NS), scratch = xin + NQKV, red = scratch + 2 * (MAX_CTX + 1) + 8;
        if (threadIdx.x == 0) {
            for (int i = 0; i < NS; i++) {
                mbar_init(&full[i], 1);
                mbar_init(&empty[i], 1);
            }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        __syncthreads();
    }
};
// PROF forms: consumer thread 0's clock cycles per phase (lap(k) adds the time since the last lap to phase k), added
// to a.prof at the end: op waits (+ the barrier after), input vectors, slot waits, tasks (+ the barrier after), counts.
__device__ __forceinline__ unsigned long long clk64() {
    unsigned long long c;
    asm volatile("mov.u64 %0, %%clock64;\n" : "=l"(c));
    return c;
}
template <bool PROF> struct phase_timer {
    unsigned long long pt[5], c0;
    __device__ phase_timer() : pt{0, 0, 0, 0, 0}, c0(PROF ? clk64() : 0) {}
    __device__ void lap(int k) {
        if (PROF) {
            const unsigned long long c1 = clk64();
            pt[k] += c1 - c0;
            c0 = c1;
        }
    }
    __device__ void store(const acts &a) {
        if (PROF && threadIdx.x == 0)
            for (int k = 0; k < 5; k++) a.prof[blockIdx.x * 5 + k] += pt[k];
    }
};

template <int NS, bool PF, bool PER_OP, int NB = 0, bool FENCE = true, bool PROF = false>
__global__ void __launch_bounds__(THREADS, 1) mega(acts a, int total, int s) {
    extern __shared__ __align__(1024) uint8_t smem[];
    const block_smem<NS> sm(smem);
    uint8_t *ring = sm.ring;
    uint64_t *full = sm.full, *empty = sm.empty;
    float *xin = sm.xin, *scratch = sm.scratch, *red = sm.red;
    const int t = threadIdx.x, G = gridDim.x;
    if (t >= CONS) { // producer: lane 0 streams every task's bytes, a slot ahead as soon as it is free
        if (t == CONS) produce<NS, PF, NB>(a, total, ring, full, empty);
        return;
    }
    int op = 0, i = 0, built = -1, done = 0;
    phase_timer<PROF> pt;
    auto lap = [&](int k) { pt.lap(k); };
    for (int g = blockIdx.x; g < total; g += G, i++) {
        while (op + 1 < a.n_ops && c_ops[op + 1].t0 <= g) op++;
        const op_desc &o = c_ops[op];
        if (built != op) { // the op's input, once per op per block
            if (o.wait >= 0 && t == 0) {
                const unsigned want = (unsigned)(s + 1) * (unsigned)c_ops[o.wait].ntasks;
                while (ld_acquire(a.cnt + o.wait) < want) {
                }
            }
            cons_bar();
            lap(0);
            build_input<false>(o, a, xin, red);
            built = op;
            lap(1);
        }
        const int slot = i % NS;
        mbar_wait(&full[slot], (i / NS) & 1);
        lap(2);
        const __nv_bfloat16 *tile = (const __nv_bfloat16 *)(ring + (size_t)slot * SLOT);
        if (NB < 2) run_task<false>(o, a, g - o.t0, tile, tile + SLOT / 4, xin, scratch); // NB 3: the bytes, no task
        cons_bar(); // every consumer is done with the slot and has stored its outputs
        lap(3);
        done++;
        // PER_OP: the block counts its tasks of the op once, after its last one (one fence an op, not one a task)
        const bool count = !PER_OP || g + G >= total || g + G >= o.t0 + o.ntasks;
        if (t == 0) {
            mbar_arrive(&empty[slot]);
            if (count) {
                // !FENCE: the release add alone, after the bar.sync (CUTLASS's barrier arrive does the same)
                if (FENCE) __threadfence();
                red_release_add(a.cnt + op, (unsigned)done);
            }
        }
        if (count) done = 0;
        lap(4);
    }
    pt.store(a);
}

// The LL form: the same producer and tasks; a block waits for an op's input by polling the input itself (LL
// gather: each element's tag is the launch's), so there are no counters, fences or release adds. PROF: phase 0 is
// empty (the op waits are inside the input vectors' phase) and the counts are the slot releases. NOTASK: the bytes
// are streamed and each task stores zeros to its outputs, without arithmetic (the LL floor with HBM busy).
template <int NS, bool PROF = false, bool NOTASK = false>
__global__ void __launch_bounds__(THREADS, 1) mega_ll(acts a, int total, int s) {
    extern __shared__ __align__(1024) uint8_t smem[];
    const block_smem<NS> sm(smem);
    uint8_t *ring = sm.ring;
    uint64_t *full = sm.full, *empty = sm.empty;
    float *xin = sm.xin, *scratch = sm.scratch, *red = sm.red;
    const int t = threadIdx.x, G = gridDim.x;
    const unsigned tag = a.tag0 + (unsigned)s;
    if (t >= CONS) {
        if (t == CONS) produce<NS, false, 0>(a, total, ring, full, empty);
        return;
    }
    int op = 0, i = 0, built = -1;
    phase_timer<PROF> pt;
    auto lap = [&](int k) { pt.lap(k); };
    for (int g = blockIdx.x; g < total; g += G, i++) {
        while (op + 1 < a.n_ops && c_ops[op + 1].t0 <= g) op++;
        const op_desc &o = c_ops[op];
        if (built != op) {
            build_input<true>(o, a, xin, red, tag);
            built = op;
            lap(1);
        }
        const int slot = i % NS;
        mbar_wait(&full[slot], (i / NS) & 1);
        lap(2);
        const __nv_bfloat16 *tile = (const __nv_bfloat16 *)(ring + (size_t)slot * SLOT);
        if (!NOTASK) run_task<true>(o, a, g - o.t0, tile, tile + SLOT / 4, xin, scratch, tag);
        else if (o.kind == ATT) {
            if (t < 256) st_ll(a.att, (int64_t)o.layer * HQ * HD + (g - o.t0) * 2 * HD + t, 0.0f, tag);
        } else if (t < o.rows) {
            const int n = (g - o.t0) * o.rows + t, l = o.layer;
            if (o.kind == QKV) st_ll(a.qkv, (int64_t)l * NQKV + n, 0.0f, tag);
            else if (o.kind == OPROJ) st_ll(a.xmid, (int64_t)l * D + n, 0.0f, tag);
            else if (o.kind == GU) st_ll(a.gu, (int64_t)l * 2 * F + n, 0.0f, tag);
            else if (o.kind == DN) st_ll(a.xres, (int64_t)(l + 1) * D + n, 0.0f, tag);
            else st_ll(a.logits, n, 0.0f, tag);
        }
        cons_bar(); // every consumer is done with the slot (and xin, before the next op's input overwrites it)
        lap(3);
        if (t == 0) mbar_arrive(&empty[slot]);
        lap(4);
    }
    pt.store(a);
}

// ---- The reference: one kernel per op, a block per task, W read from global memory, the same task functions.
template <bool LL> __global__ void __launch_bounds__(THREADS) per_op(acts a, int op, unsigned tag) {
    __shared__ __align__(16) float xin[NQKV];
    __shared__ float scratch[2 * (MAX_CTX + 1) + 8], red[NCW];
    if (threadIdx.x >= CONS) return;
    const op_desc &o = c_ops[op];
    build_input<LL>(o, a, xin, red, tag);
    const int task = blockIdx.x;
    const void *s1, *s2;
    uint32_t b1, b2;
    task_src(o, a, task, &s1, &b1, &s2, &b2);
    run_task<LL>(o, a, task, (const __nv_bfloat16 *)s1, (const __nv_bfloat16 *)s2, xin, scratch, tag);
}

__global__ void fill_bf16(__nv_bfloat16 *p, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        p[i] = __float2bfloat16(((float)(z >> 40) / 16777216.0f * 2.0f - 1.0f) * scale);
    }
}
__global__ void copy_kernel(uint4 *dst, const uint4 *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = src[i];
}

int main(int argc, char **argv) {
    const int L = argc > 1 ? atoi(argv[1]) : 28, ctx = argc > 2 ? atoi(argv[2]) : 64;
    if (L < 1 || L > 64 || ctx < 1 || ctx > MAX_CTX) {
        fprintf(stderr, "usage: mega_floor [layers 1..64] [cached keys 1..%d]\n", MAX_CTX);
        return 2;
    }
    int dev = 0, n_sm = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    // weights: per layer q/k/v, o, gate/up, down; the head; the K/V caches
    const int64_t per_layer = (int64_t)NQKV * D + (int64_t)D * HQ * HD + (int64_t)2 * F * D + (int64_t)D * F;
    const int64_t kv_layer = (int64_t)HKV * ctx * HD;
    __nv_bfloat16 *W, *KC, *VC;
    CK(cudaMalloc(&W, (per_layer * L + (int64_t)V * D) * 2));
    CK(cudaMalloc(&KC, kv_layer * L * 2));
    CK(cudaMalloc(&VC, kv_layer * L * 2));
    fill_bf16<<<1024, 256>>>(W, per_layer * L + (int64_t)V * D, 1, 0.03f);
    fill_bf16<<<1024, 256>>>(KC, kv_layer * L, 2, 1.0f);
    fill_bf16<<<1024, 256>>>(VC, kv_layer * L, 3, 1.0f);
    CK(cudaGetLastError());
    // the op list and its task numbers
    std::vector<op_desc> ops;
    int total = 0;
    auto add = [&](int kind, int layer, int rows, int N, int K, const __nv_bfloat16 *w, const __nv_bfloat16 *w2) {
        op_desc o;
        o.kind = kind, o.layer = layer, o.rows = rows, o.K = K, o.w = w, o.w2 = w2;
        o.ntasks = kind == ATT ? HKV : N / rows;
        o.wait = ops.empty() ? -1 : (int)ops.size() - 1;
        o.t0 = total;
        total += o.ntasks;
        ops.push_back(o);
    };
    for (int l = 0; l < L; l++) {
        const __nv_bfloat16 *w = W + per_layer * l;
        add(QKV, l, 16, NQKV, D, w, nullptr);
        add(ATT, l, 1, HKV, 0, KC + kv_layer * l, VC + kv_layer * l);
        add(OPROJ, l, 8, D, HQ * HD, w + (int64_t)NQKV * D, nullptr);
        add(GU, l, 16, 2 * F, D, w + (int64_t)NQKV * D + (int64_t)D * HQ * HD, nullptr);
        add(DN, l, 4, D, F, w + (int64_t)NQKV * D + (int64_t)D * HQ * HD + (int64_t)2 * F * D, nullptr);
    }
    add(HEAD, L, 16, V, D, W + per_layer * L, nullptr);
    if ((int)ops.size() > MAX_OPS) return 2;
    CK(cudaMemcpyToSymbol(c_ops, ops.data(), ops.size() * sizeof(op_desc)));
    const int64_t step_bytes = (per_layer * L + (int64_t)V * D) * 2 + 2 * kv_layer * L * 2;
    // activations
    acts a;
    a.eps = 1e-6f, a.ctx = ctx, a.n_ops = (int)ops.size();
    CK(cudaMalloc(&a.xres, (size_t)(L + 1) * D * 4));
    CK(cudaMalloc(&a.xmid, (size_t)L * D * 4));
    CK(cudaMalloc(&a.qkv, (size_t)L * NQKV * 4));
    CK(cudaMalloc(&a.att, (size_t)L * HQ * HD * 4));
    CK(cudaMalloc(&a.gu, (size_t)L * 2 * F * 4));
    CK(cudaMalloc(&a.logits, (size_t)V * 4));
    CK(cudaMalloc(&a.cnt, ops.size() * 4));
    CK(cudaMalloc(&a.prof, (size_t)n_sm * 5 * 8));
    CK(cudaMemset(a.cnt, 0, ops.size() * 4));
    a.emb = a.xres, a.tag0 = 0;
    // the LL forms' activations: the same layout, 8 bytes an element (tag 0: never a launch's)
    acts al = a;
    {
        float **bufs[6] = {&al.xres, &al.xmid, &al.qkv, &al.att, &al.gu, &al.logits};
        const int64_t n[6] = {(int64_t)(L + 1) * D, (int64_t)L * D, (int64_t)L * NQKV, (int64_t)L * HQ * HD,
                              (int64_t)L * 2 * F, (int64_t)V};
        for (int k = 0; k < 6; k++) {
            CK(cudaMalloc(bufs[k], n[k] * 8));
            CK(cudaMemset(*bufs[k], 0, n[k] * 8));
        }
    }
    unsigned next_tag = 1;
    {
        std::vector<float> emb(D);
        for (int i = 0; i < D; i++) emb[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        CK(cudaMemcpy(a.xres, emb.data(), D * 4, cudaMemcpyHostToDevice));
    }
    // the copy bandwidth (1 GiB read + 1 GiB write), as bitroll bench measures it
    const int64_t cn = (1ll << 30) / 16;
    uint4 *c1, *c2;
    CK(cudaMalloc(&c1, cn * 16));
    CK(cudaMalloc(&c2, cn * 16));
    CK(cudaMemset(c1, 0, cn * 16));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float ms = 0, best = 1e30f;
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(e0));
        copy_kernel<<<n_sm * 8, 512>>>(c2, c1, cn);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (ms < best) best = ms;
    }
    CK(cudaFree(c1));
    CK(cudaFree(c2));
    const double copy_gbs = 2.0 * (1ll << 30) / (best * 1e-3) / 1e9;
    const double bound_us = step_bytes / (copy_gbs * 1e9) * 1e6;
    printf("%s, %d SMs, %d consumer warps a block: %d layers, %d cached keys a layer, %d ops, %d tasks a step, "
           "%.3f GB a step; copy %.0f GB/s -> bound %.1f us a step, 70%% line %.1f us\n",
           prop.name, n_sm, NCW, L, ctx, (int)ops.size(), total, step_bytes / 1e9, copy_gbs, bound_us, bound_us / 0.7);
    // the reference: one kernel per op
    std::vector<float> ref_logits(V), ref_x(D), got_logits(V), got_x(D);
    auto run_ref = [&]() {
        for (int i = 0; i < (int)ops.size(); i++) per_op<false><<<ops[i].ntasks, THREADS>>>(a, i, 0u);
    };
    run_ref();
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(ref_logits.data(), a.logits, V * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(ref_x.data(), a.xres + (int64_t)L * D, D * 4, cudaMemcpyDeviceToHost));
    const int STEPS = 50;
    CK(cudaEventRecord(e0));
    for (int s = 0; s < STEPS; s++) run_ref();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&ms, e0, e1));
    const double ref_us = ms * 1e3 / STEPS;
    printf("%-28s %10s %10s %8s %8s  %s\n", "form", "us/step", "GB/s", "%copy", "tok/s", "check");
    printf("%-28s %10.1f %10.0f %7.1f%% %8.0f  (the reference)\n", "one kernel per op", ref_us,
           step_bytes / ref_us / 1e3, 100.0 * bound_us / ref_us, 1e6 / ref_us);
    // the megakernel, ring of NS slots; launch s waits for counters of (s + 1) x tasks: reset them first
    auto same_bits = [&]() {
        return !memcmp(got_logits.data(), ref_logits.data(), V * 4) && !memcmp(got_x.data(), ref_x.data(), D * 4);
    };
    // an LL buffer's floats, each checked to carry the tag (a missing element: NaN, so the check fails)
    auto ll_read = [&](std::vector<float> &out, const float *p, int64_t off, unsigned tag) {
        std::vector<unsigned long long> w(out.size());
        CK(cudaMemcpy(w.data(), (const unsigned long long *)p + off, w.size() * 8, cudaMemcpyDeviceToHost));
        for (size_t k = 0; k < w.size(); k++) {
            const uint32_t bits = (uint32_t)(w[k] >> 32) == tag ? (uint32_t)w[k] : 0x7fc00000u;
            memcpy(&out[k], &bits, 4);
        }
    };
    { // the LL reference: one kernel per op, its inputs polled, its outputs tagged
        const unsigned tag = next_tag++;
        for (int i = 0; i < (int)ops.size(); i++) per_op<true><<<ops[i].ntasks, THREADS>>>(al, i, tag);
        CK(cudaDeviceSynchronize());
        ll_read(got_logits, al.logits, 0, tag);
        ll_read(got_x, al.xres, (int64_t)L * D, tag);
        const bool same = same_bits();
        CK(cudaEventRecord(e0));
        for (int s = 0; s < STEPS; s++) {
            const unsigned tg = next_tag++;
            for (int i = 0; i < (int)ops.size(); i++) per_op<true><<<ops[i].ntasks, THREADS>>>(al, i, tg);
        }
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaGetLastError());
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = ms * 1e3 / STEPS;
        printf("%-28s %10.1f %10.0f %7.1f%% %8.0f  %s\n", "LL: one kernel per op", us, step_bytes / us / 1e3,
               100.0 * bound_us / us, 1e6 / us, same ? "same bits as the reference" : "DIFFERS from the reference");
    }
    int clk_khz = 0;
    CK(cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, dev));
    auto run_mega = [&](auto kern, int ns, const char *name, bool prof = false, bool ll = false) {
        const size_t smem = (size_t)ns * SLOT + 2 * ns * 8 + (NQKV + 2 * (MAX_CTX + 1) + 8 + NCW) * 4;
        CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        int per_sm = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, THREADS, smem));
        if (per_sm < 1) {
            printf("%-28s does not fit an SM (%zu bytes of shared memory)\n", name, smem);
            return;
        }
        CK(cudaMemset(a.cnt, 0, ops.size() * 4));
        CK(cudaMemset(a.prof, 0, (size_t)n_sm * 5 * 8));
        CK(cudaMemset(a.logits, 0xff, V * 4));
        al.tag0 = next_tag; // LL: launches s = 0 .. STEPS tag next_tag + s
        next_tag += STEPS + 1;
        const acts &ka = ll ? al : a;
        kern<<<n_sm, THREADS, smem>>>(ka, total, 0);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        if (ll) {
            ll_read(got_logits, al.logits, 0, al.tag0);
            ll_read(got_x, al.xres, (int64_t)L * D, al.tag0);
        } else {
            CK(cudaMemcpy(got_logits.data(), a.logits, V * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(got_x.data(), a.xres + (int64_t)L * D, D * 4, cudaMemcpyDeviceToHost));
        }
        const bool same = same_bits();
        CK(cudaEventRecord(e0));
        for (int s = 1; s <= STEPS; s++) kern<<<n_sm, THREADS, smem>>>(ka, total, s);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaGetLastError());
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = ms * 1e3 / STEPS;
        printf("%-28s %10.1f %10.0f %7.1f%% %8.0f  %s\n", name, us, step_bytes / us / 1e3, 100.0 * bound_us / us,
               1e6 / us, same ? "same bits as the reference" : "DIFFERS from the reference");
        if (prof) { // us a step per phase (thread 0 of each block, clock64 at the SM clock): mean and max over blocks
            std::vector<unsigned long long> pr((size_t)n_sm * 5);
            CK(cudaMemcpy(pr.data(), a.prof, pr.size() * 8, cudaMemcpyDeviceToHost));
            const char *ph[5] = {"op waits", "input vectors", "slot waits", "tasks", "counts"};
            printf("    per step, us (mean / max over blocks, at %d MHz):", clk_khz / 1000);
            for (int k = 0; k < 5; k++) {
                double sum = 0, mx = 0;
                for (int b = 0; b < n_sm; b++) {
                    const double v = pr[(size_t)b * 5 + k] / (clk_khz * 1e-3) / (STEPS + 1);
                    sum += v;
                    if (v > mx) mx = v;
                }
                printf(" %s %.1f / %.1f;", ph[k], sum / n_sm, mx);
            }
            printf("\n");
        }
    };
    run_mega(mega<3, false, false>, 3, "megakernel, 3 x 32 KB ring");
    run_mega(mega<6, false, false>, 6, "megakernel, 6 x 32 KB ring");
    run_mega(mega<6, true, false>, 6, "  + L2 prefetch 6 tasks on");
    run_mega(mega<3, false, true>, 3, "3 slots, counted once an op");
    run_mega(mega<6, false, true>, 6, "6 slots, counted once an op");
    run_mega(mega<6, true, true>, 6, "  + L2 prefetch 6 tasks on");
    run_mega(mega<6, false, true, 1>, 6, "no bytes read (sync+compute)");
    run_mega(mega<6, false, true, 2>, 6, "no bytes, no task (sync)");
    run_mega(mega<6, false, true, 0, false>, 6, "6 slots, once an op, no fence");
    run_mega(mega<6, false, true, 1, false>, 6, "  no bytes (sync+compute)");
    run_mega(mega<6, false, true, 2, false>, 6, "  no bytes, no task (sync)");
    run_mega(mega<6, false, true, 0, false, true>, 6, "no fence, timed phases", true);
    run_mega(mega<6, false, true, 1, false, true>, 6, "  no bytes, timed phases", true);
    run_mega(mega<6, false, true, 3, false>, 6, "bytes read, no task");
    run_mega(mega<6, false, true, 3, false, true>, 6, "  timed phases", true);
    run_mega(mega_ll<3>, 3, "LL megakernel, 3 slots", false, true);
    run_mega(mega_ll<6>, 6, "LL megakernel, 6 slots", false, true);
    run_mega(mega_ll<6, true>, 6, "  timed phases", true, true);
    run_mega(mega_ll<6, false, true>, 6, "LL, bytes read, no task", false, true);
    run_mega(mega_ll<6, true, true>, 6, "  timed phases", true, true);
    return 0;
}
