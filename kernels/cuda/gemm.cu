// GEMM out (M, N) f32 = x (M, K) . W (N, K)^T (+ bias): the invariant tensor-core kernels (large-M and
// decode-shaped), the fp32-mode kernel (bit-identical to kern_cpu_matmul) and the cuBLAS `standard` baseline.
//
// Purpose/Why (the fixed reduction order). A token's logits must not depend on how many rows share its call
// (DESIGN 2). Tensor-core GEMMs usually change their arithmetic with M: tile choice, split-K, stream-K. Here an
// output element out[m, n] is ALWAYS computed as
//     acc = +0.0f;  for k16 = 0, 16, ..., K - 16 (ascending): acc = mma.m16n8k16(acc, x[m, k16:+16], W[n, k16:+16])
//     out = acc (+ bias[n], one fp32 add)
// with the bf16 mma.sync.m16n8k16 instruction and fp32 accumulators (or, in `gemm_wg` on sm_90, the same k16 steps as
// wgmma.m64nNk16 accumulating into zeroed registers: the two instructions give the same bits for a k16 step --
// test_gemm_batch_invariance compares them at M = 1..512, passed on an H200). That sequence is the same in the
// invariant kernels: `gemm_wg` (M > 64 on sm_90: 256/128 x 128/64 tiles, TMA + warpgroup MMA), `gemm_big` (M > 64
// elsewhere, or kern_cuda_tuning.gemm_wgmma = 0: 128x128 or 64x64 (M x N) x 64 block tile, 8 warps, 3-stage cp.async
// pipeline) and `gemm_small` (16*MT x 8*NW x 128 block tile, 4-8 stage pipeline, many blocks so that streaming W
// reaches HBM bandwidth) for M <= 64. Block and warp tile shapes only decide WHICH thread computes an element, never
// the sequence of operations on it, and the tensor core computes each element of an mma from its own row and column
// only; so a row's bits do not depend on M, on the kernel chosen, or on the row's position in a tile (tested bitwise
// for M = 1..512). K steps past K are skipped, never zero-padded, so tile depth (64 vs 128) cannot add a +0 step.
// No split-K, no atomics. Rows beyond M and columns beyond N are zero-filled in shared memory and never stored.
#include <cublas_v2.h>
#include <cuda.h> // CUtensorMap (the driver function is fetched at run time: no libcuda link)
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

// ---------------------------------------------------------------------------------------------------------------
// PTX helpers: 16-byte async copies (zero-filled when out of range), ldmatrix, mma.sync m16n8k16 bf16 -> f32.


// The k16 steps of k tile kt of KT (STEPS per full tile): all of them, unrolled, or in the last, partial tile its
// last_steps = (K mod tile) / 16; steps past K are skipped, never zero-padded, so every kernel runs K/16 steps.
template <int STEPS, class F> __device__ __forceinline__ void k16_tile(int kt, int KT, int last_steps, F &&step) {
    if (kt < KT - 1 || last_steps == STEPS) {
#pragma unroll
        for (int kk = 0; kk < STEPS; kk++) step(kk);
    } else {
        for (int kk = 0; kk < last_steps; kk++) step(kk);
    }
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x2(uint32_t r[2], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(smem_u32(p)));
}

// d = a (16x16 bf16, row) * b (16x8 bf16, col) + d, fp32.
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Stores one m16n8 accumulator fragment (rows r0 = g and g + 8, columns c, c + 1 of the fragment).
__device__ __forceinline__ void store_frag(float *out, const float *bias, const float acc[4], int m, int n, int M,
                                           int N) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int mm = m + 8 * h;
        if (mm >= M) continue;
        float v0 = acc[2 * h], v1 = acc[2 * h + 1];
        if (bias) {
            if (n < N) v0 = __fadd_rn(v0, bias[n]);
            if (n + 1 < N) v1 = __fadd_rn(v1, bias[n + 1]);
        }
        float *o = out + (int64_t)mm * N + n;
        if (n + 1 < N && (N % 2) == 0) {
            *(float2 *)o = make_float2(v0, v1);
        } else {
            if (n < N) o[0] = v0;
            if (n + 1 < N) o[1] = v1;
        }
    }
}

// Up to 3 GEMMs that share x and K, launched as one grid (q/k/v, gate/up): the grid's column tiles are the
// concatenation of the segments' tiles. A segment only decides WHICH W, out and bias a block uses, never the
// sequence of operations on an element, so a grouped call gives each output the bits of its own single call.
struct gemm_seg {
    float *out;
    const __nv_bfloat16 *w;
    const float *bias;
    int N, tiles;
};
struct gemm_segs {
    gemm_seg s[3];
    int n;
};
// The segment of grid column `tile` (tile becomes its index within the segment; *idx, when given, the segment's).
__device__ __forceinline__ gemm_seg pick_seg(const gemm_segs &g, int &tile, int *idx = nullptr) {
    // constant indices only: the kernel parameter stays in the constant bank (no local-memory copy)
    if (g.n == 1 || tile < g.s[0].tiles) {
        if (idx) *idx = 0;
        return g.s[0];
    }
    tile -= g.s[0].tiles;
    if (g.n == 2 || tile < g.s[1].tiles) {
        if (idx) *idx = 1;
        return g.s[1];
    }
    tile -= g.s[1].tiles;
    if (idx) *idx = 2;
    return g.s[2];
}

// ---------------------------------------------------------------------------------------------------------------
// Large-M kernel: block tile BM x BN x 64 (K), 8 warps as 2 (M) x 4 (N), warp tile BM/2 x BN/4 (BM/32 m16 x BN/32
// n8 fragments), 3-stage cp.async pipeline. Shared rows padded to 72 bf16 (144 B): ldmatrix's eight 16-byte row
// reads hit eight distinct bank groups. Tiles 128 x 128, or 64 x 64 when those leave most SMs idle (a decode step of
// a few hundred sequences: Qwen3-0.6B's q/k/v GEMM at 256 rows has 64 blocks of 128 x 128 for 132 SMs). The tile
// only decides which warp computes an element.

namespace big {
constexpr int BK = 64, STAGES = 3, LD = BK + 8, THREADS = 256;
template <int BM, int BN> struct cfg {
    static_assert((BM == 64 || BM == 128) && (BN == 64 || BN == 128), "gemm_big: tiles of 64 or 128");
    static constexpr int MI = BM / 32, NJ = BN / 32; // m16 and n8 fragments of a warp (NJ even: ldmatrix x4 pairs)
    static constexpr int STAGE_ELEMS = (BM + BN) * LD;
    static constexpr int SMEM = STAGES * STAGE_ELEMS * 2;
};
} // namespace big

// MODE 0: plain (kc = K, c0 = 0, one z). MODE 2: chunk partials -- block z computes chunk c0 + z over columns
// [(c0+z)*kc, (c0+z+1)*kc) of K into out + z*M*N.
template <int MODE, int BM, int BN>
__global__ void __launch_bounds__(big::THREADS, 2)
    gemm_big(const gemm_segs segs, const __nv_bfloat16 *__restrict__ x, int M, int K, int kc, int c0) {
    using namespace big;
    using C = cfg<BM, BN>;
    constexpr int MI = C::MI, NJ = C::NJ;
    extern __shared__ __align__(16) __nv_bfloat16 smem[];
    int tile = blockIdx.x;
    const gemm_seg sg = pick_seg(segs, tile);
    float *__restrict__ out = sg.out + (MODE == 2 ? (int64_t)blockIdx.z * M * sg.N : 0);
    const __nv_bfloat16 *__restrict__ w = sg.w;
    const float *__restrict__ bias = sg.bias;
    const int N = sg.N;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3; // warp row (0..1), warp column (0..3)
    const int m0 = blockIdx.y * BM, n0 = tile * BN;
    // the block's span of K: [kbeg, kbeg + klen) (x and W rows are still K long)
    const int kbeg = MODE == 2 ? (c0 + (int)blockIdx.z) * kc : 0, klen = MODE == 2 ? kc : K, kend = kbeg + klen;
    const int KT = (klen + BK - 1) / BK;
    const int last_steps = (klen - (KT - 1) * BK) / 16; // k16 steps in the last tile (K % 16 == 0)

    // Each thread copies BM/32 chunks of 16 B of the A tile and BN/32 of the B tile per stage (8 chunks a row).
    auto load_tile = [&](int stage, int kt) {
        __nv_bfloat16 *As = smem + stage * C::STAGE_ELEMS, *Bs = As + BM * LD;
        const int k0 = kbeg + kt * BK;
#pragma unroll
        for (int i = 0; i < BM * BK / 8 / THREADS; i++) {
            int c = tid + i * THREADS, r = c / (BK / 8), kq = (c % (BK / 8)) * 8;
            int gm = m0 + r, gk = k0 + kq;
            bool kok = gk < kend;
            cp_async16(As + r * LD + kq, x + (int64_t)(gm < M ? gm : 0) * K + (kok ? gk : 0), kok && gm < M);
        }
#pragma unroll
        for (int i = 0; i < BN * BK / 8 / THREADS; i++) {
            int c = tid + i * THREADS, r = c / (BK / 8), kq = (c % (BK / 8)) * 8;
            int gn = n0 + r, gk = k0 + kq;
            bool kok = gk < kend;
            cp_async16(Bs + r * LD + kq, w + (int64_t)(gn < N ? gn : 0) * K + (kok ? gk : 0), kok && gn < N);
        }
    };

    float acc[MI][NJ][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT) load_tile(s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            int nk = kt + STAGES - 1;
            if (nk < KT) load_tile(nk % STAGES, nk);
            cp_async_commit();
        }
        const __nv_bfloat16 *As = smem + (kt % STAGES) * C::STAGE_ELEMS, *Bs = As + BM * LD;
        auto k16_step = [&](int kk) {
            uint32_t a[MI][4], b[NJ][2];
#pragma unroll
            for (int i = 0; i < MI; i++) {
                int r = wm * (BM / 2) + i * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                int c = kk * 16 + 8 * (lane >> 4);
                ldsm_x4(a[i], As + r * LD + c);
            }
#pragma unroll
            for (int j = 0; j < NJ / 2; j++) {
                uint32_t t[4];
                int r = wn * (BN / 4) + j * 16 + (lane & 7) + 8 * (lane >> 4);
                int c = kk * 16 + 8 * ((lane >> 3) & 1);
                ldsm_x4(t, Bs + r * LD + c);
                b[2 * j][0] = t[0];
                b[2 * j][1] = t[1];
                b[2 * j + 1][0] = t[2];
                b[2 * j + 1][1] = t[3];
            }
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NJ; j++) mma_bf16(acc[i][j], a[i], b[j]);
        };
        k16_tile<BK / 16>(kt, KT, last_steps, k16_step);
    }
    cp_async_wait<0>();

    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
            store_frag(out, bias, acc[i][j], m0 + wm * (BM / 2) + i * 16 + g, n0 + wn * (BN / 4) + j * 8 + 2 * t4, M,
                       N);
}

// ---------------------------------------------------------------------------------------------------------------
// Large-M kernel on Hopper's warpgroup MMA (sm_90a): block tile BM x BN x 64 (K), BM = 64 * NC * WM. NC consumer
// warpgroups (warps 0 .. 4*NC-1) each own WM m64 row blocks x BN columns; one producer warp (the last) streams the
// x and W tiles with TMA (128-byte swizzle) into an ST-stage ring guarded by mbarriers (full: bytes landed, empty:
// every consumer warp is done with the stage). Each element's sequence is the header's: one wgmma.m64nBNk16 per
// k16 step, ascending, accumulating (scale-d = 1) into registers zeroed first -- the same k16 products added in the
// same order as mma.sync.m16n8k16; test_gemm_batch_invariance checks it bitwise against gemm_small. The last,
// partial k tile issues only its K/16 steps (TMA's zero fill past K is never used). MINB blocks per SM (1 or 2):
// the ring is ~192 KB / MINB.
namespace wg {
constexpr int BK = 64, ROW_BYTES = BK * 2; // a tile row = 128 bytes = one swizzle atom
template <int NC, int WM, int BN, int MINB> struct cfg {
    static_assert(BN == 64 || BN == 128, "gemm_wg: BN of 64 or 128");
    static constexpr int BM = 64 * NC * WM, THREADS = 32 * (4 * NC + 1);
    static constexpr int STAGE_BYTES = (BM + BN) * ROW_BYTES;
    static constexpr int ST = (192 * 1024 / MINB) / STAGE_BYTES; // a ring of ~192 KB per SM (MINB blocks per SM)
    static constexpr int SMEM = ST * STAGE_BYTES + 1024 /* 1024-byte alignment */ + 2 * ST * 8 /* mbarriers */;
};
struct maps {
    CUtensorMap x;    // (M, K) bf16, box BM x 64
    CUtensorMap w[3]; // each segment's (N_i, K) bf16, box BN x 64
};

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
    // the spin stays inside the asm: no divergent loop around the consumers' wgmma for the compiler
    asm volatile("{\n.reg .pred p;\nWAIT_%=:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT_%=;\n}\n"
                 ::"r"(smem_u32(b)), "r"(parity)
                 : "memory");
}
// 1-D bulk copy of `bytes` (a multiple of 16; src and dst 16-byte aligned) from global src to shared dst, completing
// bytes on bar.
__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                 ::"r"(smem_u32(dst)), "l"((uint64_t)src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
}
// 2-D TMA load of the box at (c0 = column, c1 = row) of `map` into dst, completing bytes on bar.
__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4}], [%2];\n"
                 ::"r"(smem_u32(dst)), "l"((uint64_t)map), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
                 : "memory");
}
// Shared-memory matrix descriptor of a K-major tile with 128-byte swizzle: rows of 128 bytes, 8-row groups 1024
// bytes apart (stride byte offset); the leading byte offset is unused for this layout (1 by convention).
__device__ __forceinline__ uint64_t desc(const void *p) {
    return (uint64_t)((smem_u32(p) & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes the compiler treat r as read and written here (an accumulator of an in-flight wgmma must not be touched).
__device__ __forceinline__ void reg_fence(float &r) { asm volatile("" : "+f"(r)::"memory"); }

// d (m64 x n64, fp32, the accumulator fragment) += A (64 x 16, K-major) . B (64 x 16, K-major)^T, operands
// in shared memory (128-byte swizzle descriptors). scale-d = 1: d is always added to (never replaced), as mma.sync.
__device__ __forceinline__ void wgmma_n64(float d[32], uint64_t da, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
                   "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
                   "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
                   "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
                   "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1));
}

// d (m64 x n128, fp32, the accumulator fragment) += A (64 x 16, K-major) . B (128 x 16, K-major)^T, operands
// in shared memory (128-byte swizzle descriptors). scale-d = 1: d is always added to (never replaced), as mma.sync.
__device__ __forceinline__ void wgmma_n128(float d[64], uint64_t da, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
                   "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
                   "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
                   "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
                   "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
                   "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
                   "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
                   "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
                   "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1));
}

} // namespace wg

template <int MODE, int NC, int WM, int BN, int MINB>
__global__ void __launch_bounds__(wg::cfg<NC, WM, BN, MINB>::THREADS, MINB)
    gemm_wg(const __grid_constant__ wg::maps maps, const gemm_segs segs, int M, int K, int kc, int c0) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using namespace wg;
    using C = cfg<NC, WM, BN, MINB>;
    constexpr int BM = C::BM, ST = C::ST, NACC = BN / 2;
    extern __shared__ __align__(16) uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = (uint64_t *)(smem + ST * C::STAGE_BYTES), *empty = full + ST;

    int tile = blockIdx.x;
    int seg = 0;
    const gemm_seg sg = pick_seg(segs, tile, &seg);
    const int N = sg.N, m0 = blockIdx.y * BM, n0 = tile * BN;
    const int kbeg = MODE == 2 ? (c0 + (int)blockIdx.z) * kc : 0, klen = MODE == 2 ? kc : K;
    const int KT = (klen + BK - 1) / BK;
    const int last_steps = (klen - (KT - 1) * BK) / 16; // k16 steps in the last tile (K % 16 == 0)
    // the warp index through a shuffle: provably warp-uniform for ptxas, which otherwise takes the consumers' path
    // for a divergent one and serializes their wgmma (C7520)
    const int warp = __shfl_sync(0xffffffffu, (int)threadIdx.x >> 5, 0), lane = threadIdx.x & 31;

    if (threadIdx.x == 0) {
        for (int s = 0; s < ST; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 4 * NC);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (warp == 4 * NC) { // producer
        if (lane == 0) {
            const CUtensorMap *wmap = seg == 0 ? &maps.w[0] : seg == 1 ? &maps.w[1] : &maps.w[2];
            for (int kt = 0; kt < KT; kt++) {
                const int s = kt % ST;
                if (kt >= ST) mbar_wait(&empty[s], ((kt / ST) - 1) & 1);
                uint8_t *As = smem + s * C::STAGE_BYTES, *Bs = As + BM * ROW_BYTES;
                mbar_expect_tx(&full[s], C::STAGE_BYTES);
                tma_load(As, &maps.x, &full[s], kbeg + kt * BK, m0);
                tma_load(Bs, wmap, &full[s], kbeg + kt * BK, n0);
            }
        }
        return;
    }

    const int cw = warp >> 2; // consumer warpgroup
    float acc[WM][NACC];
#pragma unroll
    for (int i = 0; i < WM; i++)
#pragma unroll
        for (int e = 0; e < NACC; e++) acc[i][e] = 0.0f;

    for (int kt = 0; kt < KT; kt++) {
        const int s = kt % ST;
        mbar_wait(&full[s], (kt / ST) & 1);
        const uint8_t *As = smem + s * C::STAGE_BYTES, *Bs = As + BM * ROW_BYTES;
        auto k16_step = [&](int kk) {
            const uint64_t db = desc(Bs + kk * 32);
#pragma unroll
            for (int i = 0; i < WM; i++) {
                const uint64_t da = desc(As + (cw * WM + i) * 64 * ROW_BYTES + kk * 32);
                if constexpr (BN == 128) wgmma_n128(acc[i], da, db);
                else wgmma_n64(acc[i], da, db);
            }
        };
        wg_fence();
        k16_tile<BK / 16>(kt, KT, last_steps, k16_step);
        wg_commit();
        // keep this tile's MMAs in flight; the previous tile's are done: its stage goes back to the producer
        wg_wait<1>();
        if (kt > 0 && lane == 0) mbar_arrive(&empty[(kt - 1) % ST]);
    }
    wg_wait<0>();
#pragma unroll
    for (int i = 0; i < WM; i++)
#pragma unroll
        for (int e = 0; e < NACC; e++) reg_fence(acc[i][e]);

    float *__restrict__ out = sg.out + (MODE == 2 ? (int64_t)blockIdx.z * M * N : 0);
    const int g = lane >> 2, t4 = lane & 3, wr = (warp & 3) * 16;
#pragma unroll
    for (int i = 0; i < WM; i++)
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
            store_frag(out, sg.bias, &acc[i][4 * j], m0 + (cw * WM + i) * 64 + wr + g, n0 + 8 * j + 2 * t4, M, N);
#else
    __trap(); // launched only on sm_90a devices (launch_big checks have_sm90a)
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Decode-shaped kernel (M <= 64): memory-bound, the job is streaming W at HBM bandwidth. Block = NW warps, each
// owning one n8 column strip and all MT m16 row tiles (16*MT >= M rows, the padding rows are zeros); block tile
// 16*MT x 8*NW x 128 (NW = 1..8, chosen from N so that there are about two blocks per SM or more), an 8/6/4-stage cp.async pipeline (MT = 1/2/4) to keep W tiles in flight. Same k16 sequence as
// gemm_big (see the header): bitwise-identical rows.

namespace small {
constexpr int BK = 128, LD = BK + 8; // 272-byte rows: conflict-free ldmatrix
template <int MT, int NW> struct cfg {
    // Deeper pipelines where the (M-padded) activation tile is small: more W bytes in flight per SM.
    // (measured on an H200: 16 stages for one-warp blocks halved their speed -- fewer blocks fit an SM)
    static constexpr int STAGES = MT == 1 ? 8 : MT == 2 ? 6 : 4;
    static constexpr int BM = 16 * MT, BN = 8 * NW, THREADS = 32 * NW;
    static constexpr int STAGE_ELEMS = (BM + BN) * LD;
};
// A short k span (the chunks of a row-parallel GEMM: K / 8 = 256 or 384 columns at Qwen3-0.6B's decode) needs no
// more stages than tiles + 1: SHORT stages take less shared memory, so more blocks fit an SM and the grid runs in
// one wave. Data movement only: the k16 sequence of every element is unchanged.
constexpr int SHORT = 4;
template <int MT, int NW, int ST> constexpr int smem_bytes() { return ST * cfg<MT, NW>::STAGE_ELEMS * 2; }
} // namespace small

// kspan: the chunk length kc, the first chunk c0 and the number of chunks nz (K, 0, 1: a plain GEMM). gemm_small
// only: with cnt set (all C chunks in one launch, one segment), the last chunk block of each tile to finish sums
// the tile's partials into fin_out (see gemm_small).
struct kspan {
    int kc, c0, nz;
    float *fin_out;
    const float *fin_bias;
    unsigned *cnt;
};

// gemm_small's and gemm_small_tma's last-block sum (ks.cnt set): after storing its partial, each block counts itself in
// cnt[tile] (after a fence); the last of the tile's nz blocks sums the nz partials in chunk order, ((P_0 + P_1) + ...)
// + P_{nz-1} (+ bias), exactly chunk_seq_kernel's adds, into fin_out, and sets the counter back to 0. Every thread of
// the block calls it (nthreads of them, index tid); Mv real rows, BN columns from n0.
__device__ __forceinline__ void last_block_sum(const kspan &ks, const gemm_seg &sg, int M, int Mv, int n0, int BN,
                                               int tid, int nthreads) {
    __shared__ unsigned last;
    __syncthreads(); // every thread's partial is stored
    if (tid == 0) {
        __threadfence(); // ... and visible to the other blocks before they can count this one
        const unsigned id = blockIdx.x;
        last = atomicAdd(ks.cnt + id, 1u) == gridDim.z - 1;
        if (last) ks.cnt[id] = 0; // every block of the tile has counted: ready for the next call
    }
    __syncthreads();
    if (last) {
        __threadfence();
        const int N = sg.N;
        const int64_t MN = (int64_t)M * N;
        const float *parts = sg.out;
        float *fo = ks.fin_out;
        for (int e = tid; e < Mv * BN; e += nthreads) {
            const int r = e / BN, n = n0 + e % BN;
            if (n >= N) continue;
            const int64_t i = (int64_t)r * N + n;
            float v = __ldcg(parts + i);
            for (int z = 1; z < (int)gridDim.z; z++) v = __fadd_rn(v, __ldcg(parts + z * MN + i));
            if (ks.fin_bias) v = __fadd_rn(v, ks.fin_bias[n]);
            fo[i] = v;
        }
    }
}

// k span as gemm_big's MODE 0 / 2: block z computes columns [(c0+z)*kc, (c0+z+1)*kc) of K into out + z*M*N
// (kc = K, c0 = 0 and one z for a plain GEMM).
// With ks.cnt: last_block_sum. Which block comes last varies, the order of the sum does not: one launch fewer per
// decode-sized row-parallel GEMM, the same bits.
template <int MT, int NW, int STAGES>
__global__ void __launch_bounds__(32 * NW)
    gemm_small(const gemm_segs segs, const __nv_bfloat16 *__restrict__ x, int M, int K, const kspan ks) {
    KERN_LAUNCH_DEPENDENTS(); // the next kernel (launched as a dependent) waits for this one's completion itself
    using C = small::cfg<MT, NW>;
    constexpr int BK = small::BK, LD = small::LD;
    const int kc = ks.kc, c0 = ks.c0;
    extern __shared__ __align__(16) __nv_bfloat16 smem[];
    int tile = blockIdx.x;
    const gemm_seg sg = pick_seg(segs, tile);
    float *__restrict__ out = sg.out + (int64_t)blockIdx.z * M * sg.N;
    const __nv_bfloat16 *__restrict__ w = sg.w;
    const float *__restrict__ bias = sg.bias;
    const int N = sg.N;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n0 = tile * C::BN;
    const int kbeg = (c0 + (int)blockIdx.z) * kc, kend = kbeg + kc;
    const int KT = (kc + BK - 1) / BK;
    const int last_steps = (kc - (KT - 1) * BK) / 16;
    const int Mv = M < C::BM ? M : C::BM; // real rows of the activation tile

    constexpr int CH = BK / 8; // 16-byte chunks per row
    // A: only the M real rows (the padding rows were zeroed once, below); B: the block's BN rows of W.
    auto load_a = [&](int stage, int kt) {
        __nv_bfloat16 *As = smem + stage * C::STAGE_ELEMS;
        const int k0 = kbeg + kt * BK;
        for (int c = tid; c < Mv * CH; c += C::THREADS) {
            int r = c / CH, kq = (c % CH) * 8, gk = k0 + kq;
            bool kok = gk < kend;
            cp_async16(As + r * LD + kq, x + (int64_t)r * K + (kok ? gk : 0), kok);
        }
    };
    auto load_b = [&](int stage, int kt) {
        __nv_bfloat16 *Bs = smem + stage * C::STAGE_ELEMS + C::BM * LD;
        const int k0 = kbeg + kt * BK;
        for (int c = tid; c < C::BN * CH; c += C::THREADS) {
            int rb = c / CH, kq = (c % CH) * 8, gk = k0 + kq, gn = n0 + rb;
            bool kok = gk < kend;
            cp_async16(Bs + rb * LD + kq, w + (int64_t)(gn < N ? gn : 0) * K + (kok ? gk : 0), kok && gn < N);
        }
    };
    auto load_tile = [&](int stage, int kt) {
        load_a(stage, kt);
        load_b(stage, kt);
    };
    // Rows M..BM-1 of every stage's A tile hold zeros for the whole kernel (ordered before their first read by the
    // pipeline's first __syncthreads).
    for (int st = 0; st < STAGES; st++) { // 16-byte stores: rows are 272 bytes
        uint4 *As = (uint4 *)(smem + st * C::STAGE_ELEMS + Mv * LD);
        for (int c = tid; c < (C::BM - Mv) * LD / 8; c += C::THREADS) As[c] = make_uint4(0, 0, 0, 0);
    }

    float acc[MT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[i][e] = 0.0f;

    // The W tiles of the first stages do not depend on the previous kernel: they are requested before waiting for it
    // (griddepcontrol.wait: a no-op unless launched as a programmatic dependent, see launch_small_st); x and every
    // store come after. One commit group for those W tiles, then one per stage for x: when stage kt is needed, the
    // wait below has completed the first kt + 2 groups, which hold it.
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++)
        if (s < KT) load_b(s, s);
    cp_async_commit();
    KERN_WAIT_PREREQUISITES();
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT) load_a(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            int nk = kt + STAGES - 1;
            if (nk < KT) load_tile(nk % STAGES, nk);
            cp_async_commit();
        }
        const __nv_bfloat16 *As = smem + (kt % STAGES) * C::STAGE_ELEMS, *Bs = As + C::BM * LD;
        auto k16_step = [&](int kk) {
            uint32_t b[2];
            {
                int r = warp * 8 + (lane & 7);
                int c = kk * 16 + 8 * ((lane >> 3) & 1);
                ldsm_x2(b, Bs + r * LD + c);
            }
#pragma unroll
            for (int i = 0; i < MT; i++) {
                uint32_t a[4];
                int r = i * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                int c = kk * 16 + 8 * (lane >> 4);
                ldsm_x4(a, As + r * LD + c);
                mma_bf16(acc[i], a, b);
            }
        };
        k16_tile<BK / 16>(kt, KT, last_steps, k16_step);
    }
    cp_async_wait<0>();
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int i = 0; i < MT; i++)
        store_frag(out, bias, acc[i], i * 16 + g, n0 + warp * 8 + 2 * t4, M, N);
    if (ks.cnt) last_block_sum(ks, sg, M, Mv, n0, C::BN, tid, C::THREADS);
}

// ---- TMA-fed variant of the decode-shaped kernel: the default on sm_90 devices (kern_cuda_tuning.gemm_small_tma = 0:
// gemm_small; gemm_small stays for the devices without TMA). Measured on an H200 (eleventh session, bench_kernels ""
// decode,rowpar, same call): 1x11008x4096 2,783 vs 1,985 GB/s, 8x4096x11008 2,186 vs 1,672, 64x4096x4096 1,006 vs 814;
// 1x4096x4096 1,651 vs 1,720 (a little slower); bitroll bench at batch 1: 8B shape 161 vs 132 tokens/s, 0.6B 728 vs
// 682. Same block tile columns (NW warps, one n8 strip each, all MT m16 row tiles) and the same k16 sequence, so the
// same bits (test_gemm_small_tma): only the data movement differs. One more
// warp (the last) streams each 64-k stage's x tile (16*MT rows, rows past M read as zeros) and W tile (8*NW rows) with
// TMA into a ring of ST stages (128-byte swizzle, mbarriers), instead of every warp issuing 16-byte cp.async copies,
// its address arithmetic and a block barrier per stage: the consumer warps only wait, ldmatrix and mma. The W tiles
// of the first stages are requested before griddepcontrol.wait (they do not depend on the previous kernel); x after.
namespace stma {
constexpr int BK = 64; // k per stage: one 128-byte swizzle row
template <int MT, int NW> struct cfg {
    static constexpr int BM = 16 * MT, BN = 8 * NW, THREADS = 32 * (NW + 1);
    static constexpr int A_BYTES = BM * 128, STAGE_BYTES = (BM + BN) * 128;
    static constexpr int ST = 2 * small::cfg<MT, NW>::STAGES; // gemm_small's bytes in flight (its stages are 128 k)
};
template <int MT, int NW, int ST> constexpr int smem_bytes() {
    return ST * cfg<MT, NW>::STAGE_BYTES + 1024 /* alignment */ + 2 * ST * 8 /* mbarriers */;
}
// Resident x (RX, MT = 1; kern_cuda_tuning.gemm_small_rx): the block's x rows [kbeg, kbeg + kc) are copied into
// shared memory once -- by the producer warp, one bulk copy (cp.async.bulk) a row, completing on an mbarrier of its
// own -- rows pitch 2 kc + 16 bytes (an odd number of 16-byte units: the 8 row addresses of an ldmatrix hit 8
// different bank groups; rows past M read a 16-byte zero chunk), and the ring holds W only: 8 * NW rows of 128
// bytes a stage, RX_RING_KB KB of stages a block (8 stages of 8 KB). Why: a chain of mma.sync steps takes 24 cycles
// a step on an H200 (bench/exp/mma_chain.cu), yet the 1x4096x4096 GEMM took ~120 cycles a step, its consumer warps
// waiting on their stages' W (Nsight Compute, eleventh session): W bytes in flight bound it, and at M = 1 two thirds
// of a stage were x. Used by 8-warp blocks only (dispatch_small: N >= 64 x SMs, x's rows within RX_MAX_BYTES).
// Measured on an H200 (twelfth session, bitroll bench --batches 1,4, 8B shape, two runs each in one call): 182 / 181
// tokens/s at batch 1 (674 / 670 at batch 4) against 178 / 177 (669 / 668) for 4-warp blocks with a 40 KB ring
// (the eleventh session's rule, x copied by the producer), 179 / 178 (705 / 704) for 8-warp blocks with a 40 KB
// ring and 168 / 168 (610 / 610) for 4-warp blocks with a 64 KB ring. In bench_kernels the 8-warp 64 KB blocks are
// faster on the row-parallel 1x4096x4096 (15.7 vs 16.1 us) but slower on 1x11008x4096 (2,851 vs 3,366 GB/s): the
// end-to-end gain is in the decode step, where each block's first 64 KB of W are requested before
// griddepcontrol.wait, during the previous kernel. Resident x in 1- and 2-warp blocks stays off: slower even with the
// bulk copy (1x4096x11008 1,253 vs 1,871 GB/s, 8x4096x1024 655 vs 1,169; the 0.6B shape 730 vs 785 tokens/s).
constexpr int RX_MAX_BYTES = 32 * 1024, RX_RING_KB = 64;
template <int NW, int ST> constexpr int rx_fixed_bytes() {
    return ST * NW * 1024 /* W ring */ + 1024 /* alignment */ + 2 * ST * 8 /* mbarriers */ + 16 /* x's mbarrier */ +
           16 /* zero chunk */;
}
__host__ __device__ constexpr int rx_pitch(int kc) { return 2 * kc + 16; }
// Byte offset of 16-byte chunk c of row r in a tile of 128-byte rows written by TMA with the 128-byte swizzle.
__device__ __forceinline__ int swz(int r, int c) { return r * 128 + ((c ^ (r & 7)) << 4); }
} // namespace stma

template <int MT, int NW, int ST, bool RX>
__global__ void __launch_bounds__(32 * (NW + 1))
    gemm_small_tma(const __grid_constant__ wg::maps maps, const gemm_segs segs, const __nv_bfloat16 *__restrict__ x,
                   int M, int K, const kspan ks) {
    KERN_LAUNCH_DEPENDENTS(); // the next kernel (launched as a dependent) waits for this one's completion itself
    using C = stma::cfg<MT, NW>;
    using namespace wg;
    static_assert(!RX || MT == 1, "gemm_small_tma: resident x for one m16 tile");
    constexpr int BK = stma::BK, SB = RX ? C::BN * 128 : C::STAGE_BYTES, A_BYTES = RX ? 0 : C::A_BYTES;
    const int kc = ks.kc, c0 = ks.c0;
    extern __shared__ __align__(16) uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = (uint64_t *)(smem + ST * SB), *empty = full + ST;
    // RX: x's mbarrier (16 bytes with padding), a 16-byte zero chunk, then x's rows
    uint64_t *xfull = empty + ST;
    uint8_t *zero16 = (uint8_t *)(xfull + 2), *xs = zero16 + 16;
    int tile = blockIdx.x;
    int seg = 0;
    const gemm_seg sg = pick_seg(segs, tile, &seg);
    float *__restrict__ out = sg.out + (int64_t)blockIdx.z * M * sg.N;
    const int N = sg.N, n0 = tile * C::BN, tid = threadIdx.x;
    const int kbeg = (c0 + (int)blockIdx.z) * kc;
    const int KT = (kc + BK - 1) / BK;
    const int last_steps = (kc - (KT - 1) * BK) / 16;
    const int Mv = M < C::BM ? M : C::BM;
    const int warp = __shfl_sync(0xffffffffu, tid >> 5, 0), lane = tid & 31; // warp-uniform for the compiler

    if (tid == 0) {
        for (int s = 0; s < ST; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], NW);
        }
        if constexpr (RX) {
            mbar_init(xfull, 1);
            *(uint4 *)zero16 = make_uint4(0, 0, 0, 0);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    const int XP = stma::rx_pitch(kc);

    if (warp == NW) { // producer (lane 0); the warp then joins the epilogue's barriers
        if (lane == 0) {
            const CUtensorMap *wmap = seg == 0 ? &maps.w[0] : seg == 1 ? &maps.w[1] : &maps.w[2];
            const int pre = KT < ST ? KT : ST;
            for (int kt = 0; kt < pre; kt++) {
                mbar_expect_tx(&full[kt], SB);
                tma_load(smem + kt * SB + A_BYTES, wmap, &full[kt], kbeg + kt * BK, n0);
            }
            KERN_WAIT_PREREQUISITES();
            // x's Mv rows, columns [kbeg, kbeg + kc): a bulk copy a row (K, kbeg and kc are multiples of 16)
            if constexpr (RX) {
                mbar_expect_tx(xfull, (uint32_t)(Mv * 2 * kc));
                for (int r = 0; r < Mv; r++) bulk_load(xs + r * XP, x + (int64_t)r * K + kbeg, 2 * kc, xfull);
            } else {
                for (int kt = 0; kt < pre; kt++) tma_load(smem + kt * SB, &maps.x, &full[kt], kbeg + kt * BK, 0);
            }
            for (int kt = ST; kt < KT; kt++) {
                const int s = kt % ST;
                mbar_wait(&empty[s], ((kt / ST) - 1) & 1);
                mbar_expect_tx(&full[s], SB);
                tma_load(smem + s * SB + A_BYTES, wmap, &full[s], kbeg + kt * BK, n0);
                if constexpr (!RX) tma_load(smem + s * SB, &maps.x, &full[s], kbeg + kt * BK, 0);
            }
        }
        KERN_WAIT_PREREQUISITES(); // every lane, before last_block_sum's global reads and writes
    } else {
        KERN_WAIT_PREREQUISITES(); // nothing global is written before the previous kernel completes
        if constexpr (RX) mbar_wait(xfull, 0); // x's rows have landed
        float acc[MT][4];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][e] = 0.0f;
        for (int kt = 0; kt < KT; kt++) {
            const int s = kt % ST;
            mbar_wait(&full[s], (kt / ST) & 1);
            const uint8_t *As = smem + s * SB, *Bs = As + A_BYTES;
            // gemm_small's fragments, read from the swizzled rows: the same mma operands
            auto k16_step = [&](int kk) {
                uint32_t b[2];
                {
                    const int r = warp * 8 + (lane & 7);
                    ldsm_x2(b, Bs + stma::swz(r, kk * 2 + ((lane >> 3) & 1)));
                }
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    uint32_t a[4];
                    const int r = i * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                    if constexpr (RX) // rows past M read the zero chunk: the operand the padded tile holds
                        ldsm_x4(a, r < Mv ? xs + r * XP + (kt * BK + kk * 16 + 8 * (lane >> 4)) * 2 : zero16);
                    else
                        ldsm_x4(a, As + stma::swz(r, kk * 2 + (lane >> 4)));
                    mma_bf16(acc[i], a, b);
                }
            };
            k16_tile<BK / 16>(kt, KT, last_steps, k16_step);
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[s]); // this warp's reads of the stage are done
        }
        const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
        for (int i = 0; i < MT; i++) store_frag(out, sg.bias, acc[i], i * 16 + g, n0 + warp * 8 + 2 * t4, M, N);
    }
    if (ks.cnt) last_block_sum(ks, sg, M, Mv, n0, C::BN, tid, C::THREADS);
}

// cuTensorMapEncodeTiled, from the driver at run time (the CUDA runtime's entry-point query).
static PFN_cuTensorMapEncodeTiled_v12000 tmap_encoder() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    if (!fn) {
        void *p = nullptr;
        cudaDriverEntryPointQueryResult q;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
        KERN_REQUIRE(q == cudaDriverEntryPointSuccess && p, "gemm: the driver has no cuTensorMapEncodeTiled");
        fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

// A 2-D bf16 tensor map of a (rows, K) row-major matrix, box box_rows x 64 (128 bytes: the swizzle span), rows and
// columns past the matrix read as zeros.
static void tmap_2d(CUtensorMap *map, const void *base, int rows, int K, int box_rows) {
    const cuuint64_t dims[2] = {(cuuint64_t)K, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)K * 2};
    const cuuint32_t box[2] = {(cuuint32_t)wg::BK, (cuuint32_t)box_rows}, estr[2] = {1, 1};
    const CUresult r = tmap_encoder()(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)base, dims, strides, box, estr,
                                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    KERN_REQUIRE(r == CUDA_SUCCESS, "gemm: cuTensorMapEncodeTiled failed");
}

// Sets each segment's tile count for block width bn; returns the total.
static int set_tiles(gemm_segs &g, int bn) {
    int t = 0;
    for (int i = 0; i < g.n; i++) t += g.s[i].tiles = (g.s[i].N + bn - 1) / bn;
    return t;
}

// Whether the current device runs the sm_90a kernels (compute capability 9.0; cached per device).
static bool have_sm90a() {
    static signed char known[64];
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev >= 64) return false;
    if (!known[dev]) {
        int major = 0, minor = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
        known[dev] = major == 9 && minor == 0 ? 1 : -1;
    }
    return known[dev] > 0;
}

template <int MT, int NW, int ST>
static void launch_small_st(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    using C = small::cfg<MT, NW>;
    constexpr int SMEM = small::smem_bytes<MT, NW, ST>();
    static bool attr_set = false; // per template instance; the attribute is a property of the function
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(gemm_small<MT, NW, ST>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
        attr_set = true;
    }
    const int tiles = set_tiles(g, C::BN);
    // Programmatic dependent launch (kern_cuda_tuning.pdl = 0: off): the blocks may start while the previous kernel on the
    // stream finishes (it lets them, griddepcontrol.launch_dependents) and fetch their first W tiles meanwhile; they
    // wait for its completion (griddepcontrol.wait) before reading x or writing anything.
    kern_launch_pdl(gemm_small<MT, NW, ST>, dim3(tiles, 1, ks.nz), dim3(C::THREADS), SMEM, stream, g, x, M, K, ks);
}

template <int MT, int NW, int ST, bool RX>
static void launch_small_tma_st(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    using C = stma::cfg<MT, NW>;
    constexpr int MOST = RX ? stma::rx_fixed_bytes<NW, ST>() + stma::RX_MAX_BYTES : stma::smem_bytes<MT, NW, ST>();
    static bool attr_set = false; // per template instance
    if (!attr_set) {
        CUDA_CHECK(
            cudaFuncSetAttribute(gemm_small_tma<MT, NW, ST, RX>, cudaFuncAttributeMaxDynamicSharedMemorySize, MOST));
        attr_set = true;
    }
    const int smem = RX ? stma::rx_fixed_bytes<NW, ST>() + M * stma::rx_pitch(ks.kc) : MOST;
    wg::maps maps;
    memset(&maps, 0, sizeof maps);
    if (!RX) tmap_2d(&maps.x, x, M, K, C::BM);
    for (int i = 0; i < g.n; i++) tmap_2d(&maps.w[i], g.s[i].w, g.s[i].N, K, C::BN);
    const int tiles = set_tiles(g, C::BN);
    kern_launch_pdl(gemm_small_tma<MT, NW, ST, RX>, dim3(tiles, 1, ks.nz), dim3(C::THREADS), smem, stream, maps, g, x,
                    M, K, ks);
}

// The default pipeline depth, or SHORT stages when the k span has at most SHORT - 1 tiles (kern_cuda_tuning.gemm_short
// = 0: always the default, for comparison). On sm_90 devices the TMA-fed kernel (kern_cuda_tuning.gemm_small_tma, the
// default; stages of 64 k: twice as many); elsewhere, or with gemm_small_tma = 0, the cp.async one. One row tile and
// 8 warps (MT = 1, NW = 8): resident x, the only kernel of that shape (dispatch_small takes it where small_rx holds).
template <int MT, int NW>
static void launch_small(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    if constexpr (MT == 1 && NW == 8) {
        launch_small_tma_st<MT, NW, stma::RX_RING_KB / NW, true>(g, x, M, K, stream, ks);
    } else {
        if (kern_tuning().gemm_small_tma && have_sm90a()) {
            constexpr int SHORT2 = 2 * small::SHORT, ST = stma::cfg<MT, NW>::ST;
            const int KT64 = (ks.kc + stma::BK - 1) / stma::BK;
            if (kern_tuning().gemm_short && KT64 <= SHORT2 - 1 && SHORT2 < ST)
                launch_small_tma_st<MT, NW, SHORT2, false>(g, x, M, K, stream, ks);
            else launch_small_tma_st<MT, NW, ST, false>(g, x, M, K, stream, ks);
            return;
        }
        const int KT = (ks.kc + small::BK - 1) / small::BK;
        if (kern_tuning().gemm_short && small::SHORT < small::cfg<MT, NW>::STAGES && KT <= small::SHORT - 1)
            launch_small_st<MT, NW, small::SHORT>(g, x, M, K, stream, ks);
        else
            launch_small_st<MT, NW, small::cfg<MT, NW>::STAGES>(g, x, M, K, stream, ks);
    }
}

// Whether a one-row-tile (M <= 16) GEMM takes gemm_small_tma with resident x: an sm_90 device, the switches on
// (kern_cuda_tuning.gemm_small_tma, gemm_small_rx), x's rows of the k span within stma::RX_MAX_BYTES.
static bool small_rx(int M, int kc) {
    return kern_tuning().gemm_small_tma && kern_tuning().gemm_small_rx && have_sm90a() &&
           (int64_t)M * stma::rx_pitch(kc) <= stma::RX_MAX_BYTES;
}

template <int MT>
static void dispatch_small(const gemm_segs &g, int N_total, const __nv_bfloat16 *x, int M, int K,
                           cudaStream_t stream, kspan ks) {
    // Narrower blocks when N is small, so that every SM streams a share of W with many tiles in flight (the
    // column strip width does not change any element's arithmetic): at least ~2 blocks per SM.
    const int n_sm = kern_sm_count();
    // Wider blocks for more rows: the activation tile (16*MT rows) is re-read by every block from L2, so BN
    // should not be much narrower than BM.
    N_total *= ks.nz; // chunks multiply the blocks like columns do
    if (MT == 1) {
        if (N_total >= 32 * 2 * n_sm) {
            if (small_rx(M, ks.kc)) launch_small<1, 8>(g, x, M, K, stream, ks); // resident x
            else launch_small<1, 4>(g, x, M, K, stream, ks);
        } else if (N_total >= 16 * 2 * n_sm) launch_small<1, 2>(g, x, M, K, stream, ks);
        else launch_small<1, 1>(g, x, M, K, stream, ks);
    } else if (MT == 2) {
        if (N_total >= 64 * 2 * n_sm) launch_small<2, 8>(g, x, M, K, stream, ks);
        else if (N_total >= 32 * 2 * n_sm) launch_small<2, 4>(g, x, M, K, stream, ks);
        else launch_small<2, 2>(g, x, M, K, stream, ks);
    } else {
        if (N_total >= 64 * 2 * n_sm) launch_small<4, 8>(g, x, M, K, stream, ks);
        else launch_small<4, 4>(g, x, M, K, stream, ks);
    }
}

static void dispatch_any_small(const gemm_segs &g, int N_total, const __nv_bfloat16 *x, int M, int K,
                               cudaStream_t stream, kspan ks) {
    if (M <= 16) dispatch_small<1>(g, N_total, x, M, K, stream, ks);
    else if (M <= 32) dispatch_small<2>(g, N_total, x, M, K, stream, ks);
    else dispatch_small<4>(g, N_total, x, M, K, stream, ks);
}

template <int MODE, int BM, int BN>
static void launch_big_tile(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    constexpr int SMEM = big::cfg<BM, BN>::SMEM;
    static bool attr_set = false; // per template instance
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(gemm_big<MODE, BM, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
        attr_set = true;
    }
    dim3 grid(set_tiles(g, BN), (M + BM - 1) / BM, MODE == 2 ? ks.nz : 1);
    gemm_big<MODE, BM, BN><<<grid, big::THREADS, SMEM, stream>>>(g, x, M, K, ks.kc, ks.c0);
    CUDA_CHECK_LAUNCH();
}

// 128 x 128 tiles, or 64 x 64 where those would leave half of the SMs without a block. Measured on an H200
// (bench_kernels "" gemm, one call): 256x4096x1024 (q/k/v of Qwen3-0.6B at 256 sequences, 64 blocks of 128 x 128)
// 125 TFLOP/s with 64 x 64 tiles against 107; with 64 x 128 tiles wherever 128 x 128 gave fewer blocks than SMs,
// 512x4096x4096 fell from 242 to 211 and 256x6144x1024 from 157 to 151 (dropped).
template <int MODE, int NC, int WM, int BN, int MINB>
static void launch_wg_tile(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    using C = wg::cfg<NC, WM, BN, MINB>;
    static bool attr_set = false; // per template instance
    if (!attr_set) {
        CUDA_CHECK(
            cudaFuncSetAttribute(gemm_wg<MODE, NC, WM, BN, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 C::SMEM));
        attr_set = true;
    }
    wg::maps maps;
    memset(&maps, 0, sizeof maps);
    tmap_2d(&maps.x, x, M, K, C::BM);
    for (int i = 0; i < g.n; i++) tmap_2d(&maps.w[i], g.s[i].w, g.s[i].N, K, BN);
    dim3 grid(set_tiles(g, BN), (M + C::BM - 1) / C::BM, MODE == 2 ? ks.nz : 1);
    gemm_wg<MODE, NC, WM, BN, MINB><<<grid, C::THREADS, C::SMEM, stream>>>(maps, g, M, K, ks.kc, ks.c0);
    CUDA_CHECK_LAUNCH();
}

// The wgmma kernel: 256 x 128 tiles where they give every SM a block, else 128 x 128, else 128 x 64; the two smaller
// tiles with two blocks per SM (a ~96 KB ring each), so that a grid of up to 2 x SMs blocks runs in one wave. Measured
// on an H200 (bench_kernels "" gemm,rowpar, one call, against one block per SM): 256x6144x1024 293 vs 222 TFLOP/s,
// 512x4096x4096 500 vs 417, 512x6144x1024 370 vs 320, 256x4096x1024 251 vs 245; row-parallel 256x1024x2048 (C = 8)
// 11.0 vs 12.2 us; RL 32 x 8 decode 26,028 / 26,059 vs 25,745 / 25,731 tokens/s.
template <int MODE>
static void launch_wg(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    const int64_t n_sm = kern_sm_count(), z = MODE == 2 ? ks.nz : 1;
    if ((int64_t)set_tiles(g, 128) * ((M + 255) / 256) * z >= n_sm)
        launch_wg_tile<MODE, 2, 2, 128, 1>(g, x, M, K, stream, ks);
    else if ((int64_t)set_tiles(g, 128) * ((M + 127) / 128) * z >= n_sm)
        launch_wg_tile<MODE, 2, 1, 128, 2>(g, x, M, K, stream, ks);
    else launch_wg_tile<MODE, 2, 1, 64, 2>(g, x, M, K, stream, ks);
}

template <int MODE>
static void launch_big(gemm_segs g, const __nv_bfloat16 *x, int M, int K, cudaStream_t stream, kspan ks) {
    if (kern_tuning().gemm_wgmma && have_sm90a()) {
        launch_wg<MODE>(g, x, M, K, stream, ks);
        return;
    }
    const int64_t n_sm = kern_sm_count(), z = MODE == 2 ? ks.nz : 1;
    if (2 * set_tiles(g, 128) * ((M + 127) / 128) * z >= n_sm) launch_big_tile<MODE, 128, 128>(g, x, M, K, stream, ks);
    else launch_big_tile<MODE, 64, 64>(g, x, M, K, stream, ks);
}

extern "C" void kern_cuda_gemm_bf16_multi(int n, float *const *outs, const uint16_t *const *ws,
                                         const float *const *biases, const int *Ns, const uint16_t *x, int M, int K,
                                         cudaStream_t stream) {
    KERN_REQUIRE(n >= 1 && n <= 3, "gemm_bf16_multi: 1 to 3 segments");
    KERN_REQUIRE(M >= 0 && K > 0, "gemm: bad shape");
    KERN_REQUIRE(K % 16 == 0, "gemm_bf16: K must be a multiple of 16");
    KERN_REQUIRE((uintptr_t)x % 16 == 0, "gemm_bf16: x must be 16-byte aligned");
    gemm_segs g = {};
    g.n = n;
    int N_total = 0;
    for (int i = 0; i < n; i++) {
        KERN_REQUIRE(Ns[i] > 0, "gemm: bad shape");
        KERN_REQUIRE((uintptr_t)ws[i] % 16 == 0, "gemm_bf16: W must be 16-byte aligned");
        g.s[i].out = outs[i];
        g.s[i].w = (const __nv_bfloat16 *)ws[i];
        g.s[i].bias = biases ? biases[i] : nullptr;
        g.s[i].N = Ns[i];
        N_total += Ns[i];
    }
    if (M == 0) return;
    const __nv_bfloat16 *xb = (const __nv_bfloat16 *)x;
    const kspan plain = {K, 0, 1, nullptr, nullptr, nullptr};
    if (M <= 64) dispatch_any_small(g, N_total, xb, M, K, stream, plain);
    else launch_big<0>(g, xb, M, K, stream, plain);
}

extern "C" void kern_cuda_gemm_bf16(float *out, const uint16_t *x, const uint16_t *w, const float *bias, int M, int N,
                                   int K, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && N > 0 && K > 0, "gemm: bad shape");
    kern_cuda_gemm_bf16_multi(1, &out, &w, &bias, &N, x, M, K, stream);
}

// ---------------------------------------------------------------------------------------------------------------
// Row-parallel GEMMs (o_proj, down_proj): K in C chunks of kc = K / C columns; chunk c's partial is the k16 sequence
// over its own columns from +0.0f, and out = ((P_0 + P_1) + P_2) + ... + P_{C-1} (+ bias), fp32 adds left to right.
// A TP group computes disjoint chunk ranges and sums the gathered partials with the same chunk_seq: the bits do not
// depend on the TP degree. Partials (C times more blocks than the plain GEMM: a decode-sized GEMM fills the GPU)
// then chunk_seq, or, at M <= 16, both in one launch (gemm_small's last-block sum).

__global__ void chunk_seq_kernel(float *__restrict__ out, const float *__restrict__ parts, int C, int64_t MN, int N,
                                 const float *__restrict__ bias) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < MN; i += (int64_t)gridDim.x * blockDim.x) {
        float s = parts[i];
        for (int c = 1; c < C; c++) s = __fadd_rn(s, parts[(int64_t)c * MN + i]);
        if (bias) s = __fadd_rn(s, bias[i % N]);
        out[i] = s;
    }
}

extern "C" void kern_cuda_chunk_seq(float *out, const float *parts, int C, int M, int N, const float *bias,
                                   cudaStream_t stream) {
    KERN_REQUIRE(C >= 1 && M >= 0 && N > 0, "chunk_seq: bad shape");
    const int64_t MN = (int64_t)M * N;
    if (MN == 0) return;
    int64_t blocks = (MN + 255) / 256;
    if (blocks > 8192) blocks = 8192;
    chunk_seq_kernel<<<(unsigned)blocks, 256, 0, stream>>>(out, parts, C, MN, N, bias);
    CUDA_CHECK_LAUNCH();
}

// Partials go through the workspace in row slices of ROWPAR_SLICE rows, which bounds it (a row's bits do not depend
// on the slice). (Measured and dropped on an H200: a large-M kernel keeping the running chunk sum in registers --
// the same bits, slower at every M but the largest.)
constexpr int ROWPAR_SLICE = 2048;

static void rowpar_check(const uint16_t *x, const uint16_t *w, int M, int N, int K, int C) {
    KERN_REQUIRE(M >= 0 && N > 0 && K > 0 && C >= 1, "gemm rowpar: bad shape");
    KERN_REQUIRE(K % C == 0 && (K / C) % 16 == 0, "gemm rowpar: K / C must be a whole multiple of 16");
    KERN_REQUIRE((uintptr_t)x % 16 == 0 && (uintptr_t)w % 16 == 0, "gemm rowpar: x and W must be 16-byte aligned");
}

// The workspace ends with ROWPAR_COUNTERS tile counters (gemm_small's last-block sum), zeroed by
// kern_cuda_gemm_rowpar_ws_prepare and left zero by every call.
constexpr size_t ROWPAR_COUNTERS = 16384;
constexpr size_t ROWPAR_CNT_BYTES = ROWPAR_COUNTERS * sizeof(unsigned);

extern "C" size_t kern_cuda_gemm_rowpar_ws(int M, int N, int K, int C) {
    if (C <= 1 || K % C) return 0;
    return (size_t)C * (M < ROWPAR_SLICE ? M : ROWPAR_SLICE) * N * sizeof(float) + ROWPAR_CNT_BYTES;
}

extern "C" void kern_cuda_gemm_rowpar_ws_prepare(float *ws, size_t ws_bytes) {
    if (!ws || ws_bytes < ROWPAR_CNT_BYTES) return;
    CUDA_CHECK(cudaMemset((char *)ws + ws_bytes - ROWPAR_CNT_BYTES, 0, ROWPAR_CNT_BYTES));
}

extern "C" void kern_cuda_gemm_bf16_partials(float *parts, const uint16_t *x, const uint16_t *w, int M, int N, int K,
                                            int C, int c0, int c1, cudaStream_t stream) {
    rowpar_check(x, w, M, N, K, C);
    KERN_REQUIRE(0 <= c0 && c0 < c1 && c1 <= C, "gemm partials: chunk range outside 0..C");
    if (M == 0) return;
    gemm_segs g = {};
    g.n = 1;
    g.s[0].out = parts;
    g.s[0].w = (const __nv_bfloat16 *)w;
    g.s[0].N = N;
    const kspan ks = {K / C, c0, c1 - c0, nullptr, nullptr, nullptr};
    if (M <= 64) dispatch_any_small(g, N, (const __nv_bfloat16 *)x, M, K, stream, ks);
    else launch_big<2>(g, (const __nv_bfloat16 *)x, M, K, stream, ks);
}

extern "C" void kern_cuda_gemm_bf16_rowpar(float *out, float *ws, size_t ws_bytes, const uint16_t *x,
                                          const uint16_t *w, const float *bias, int M, int N, int K, int C,
                                          cudaStream_t stream) {
    rowpar_check(x, w, M, N, K, C);
    if (M == 0) return;
    if (C == 1) { // one chunk: the plain GEMM is that sequence
        kern_cuda_gemm_bf16_multi(1, &out, &w, &bias, &N, x, M, K, stream);
        return;
    }
    KERN_REQUIRE(ws && ws_bytes >= kern_cuda_gemm_rowpar_ws(M, N, K, C), "gemm rowpar: workspace too small");
    KERN_REQUIRE(ws_bytes % 16 == 0 && (uintptr_t)ws % 16 == 0,
                 "gemm rowpar: workspace and its size must be 16-byte aligned (the size given to _prepare)");
    // M <= 16: the partials and their sum in one launch (gemm_small's last-block sum). Measured on an H200:
    // 1x1024x2048 6.1 us instead of 8.6 (partials + chunk_seq), but 64x1024x2048 20.7 instead of 9.3 -- the last
    // block of a 64-row tile sums 8 partials of its whole tile alone.
    // (kern_cuda_tuning.gemm_rowpar_fused = 0: partials + chunk_seq at every M, to compare; the same bits)
    if (M <= 16 && kern_tuning().gemm_rowpar_fused) {
        KERN_REQUIRE((int64_t)(N + 7) / 8 <= (int64_t)ROWPAR_COUNTERS, "gemm rowpar: N too large for the tile counters");
        gemm_segs g = {};
        g.n = 1;
        g.s[0].out = ws;
        g.s[0].w = (const __nv_bfloat16 *)w;
        g.s[0].N = N;
        const kspan ks = {K / C, 0, C, out, bias, (unsigned *)((char *)ws + ws_bytes - ROWPAR_CNT_BYTES)};
        dispatch_any_small(g, N, (const __nv_bfloat16 *)x, M, K, stream, ks);
        return;
    }
    for (int m0 = 0; m0 < M; m0 += ROWPAR_SLICE) {
        const int Ms = M - m0 < ROWPAR_SLICE ? M - m0 : ROWPAR_SLICE;
        kern_cuda_gemm_bf16_partials(ws, x + (int64_t)m0 * K, w, Ms, N, K, C, 0, C, stream);
        kern_cuda_chunk_seq(out + (int64_t)m0 * N, ws, C, Ms, N, bias, stream);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// fp32 mode. Why this order: it is kern_cpu_matmul's ("the 8-lane order": lane j accumulates the products of the
// indices k = j mod 8 in ascending k from +0.0f; lanes combined ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)); bias added
// last), with every product and sum rounded separately (__fmul_rn/__fadd_rn: no FMA contraction), so the GPU
// result equals the CPU reference bit for bit, and a row never depends on M. Two kernels run that same sequence of
// operations on every element; they only decide which thread performs it, so a row's bits do not depend on M or
// on the kernel chosen (tested bitwise). In both, a thread owns ONE lane j of several outputs: lane j's chain
// (k = j, j+8, .. ascending) is sequential, so K cannot be split, and the 8 lanes of an output are 8 adjacent
// threads of a warp, combined at the end in the fixed tree by shuffles (lower lane the left operand), bias last.
//  - `gemm_f32_small` (M <= 4, decode): a thread per (output n, lane j), walking k = j, j+8, .. ascending
//    with MT accumulators (one per row of x, MT = M rounded up to 1, 2, 4). The parallelism is 8 threads
//    per output, and NO = 8, 16 or 32 outputs per block (64 - 256 threads, chosen from N so that there are >= 2
//    blocks per SM when N allows). W streams through a 4-stage cp.async pipeline of 512-byte row slices (KT = 256
//    bf16 / 128 f32 k per stage); x is copied into shared memory lane-major (xs[m][k mod 8][k / 8]) with 4-byte
//    cp.async so that a thread reads 4 k steps of a row with one 16-byte load. W rows that are not 16-byte aligned
//    (ldw * size or the base: a column offset) are copied with plain element loads instead. K steps past K are
//    skipped, never zero-padded; padding rows (M..MT) are zero, and outputs past N recompute row N-1; neither is
//    stored.
//  - `gemm_f32_tiled<WT, TM, RG, CG>` (M > 4, any M): a register tile. 128 threads = 8 lanes x RG row groups x CG
//    column groups; thread (j = tid % 8, rg, cg) owns lane j of a TM x 4 block of outputs (rows m0 + TM rg .. +TM,
//    columns n0 + 4 cg .. +4): TM x 4 accumulators, one chain each, fed exactly lane j's products of its (row,
//    column) in ascending k (tile after tile, step after step), nothing else. Per 4 k steps it reads TM + 4 16-byte
//    values from shared memory for 16 TM products: the shared-memory return path (one register per thread per 4
//    fp32 instructions) is what bounds this GEMM, hence the tile; TM = 8 (block 16 x 32) where that gives more than
//    n_SM / 2 blocks, else TM = 4 (block 16 x 16, twice the blocks, for M <= 32 at N ~ 1024). Both x and W are held
//    in shared memory lane-major as f32 (row r, lane j, step t at r * RP + j * LP + t; a tile is KT = 128 k, 16
//    steps per lane), so one 16-byte load gives a thread 4 consecutive steps of its lane; the padded pitches keep
//    the 8 lanes of a quarter-warp on 8 different bank groups. Staging goes through registers (W bf16 -> f32 once
//    per block, not per thread; the lane-major scatter): each thread loads whole "octets" (8 consecutive k of one
//    row = one step of the 8 lanes; 16-byte loads where the rows are 16-byte aligned, else element loads), the
//    next tile's octets in flight while the current tile is computed, two shared buffers, one barrier per tile.
//    The last, partial tile: lane j takes the steps t with 8t + j < K - k0 (k0 a multiple of 8), in groups of 4
//    while every lane has them, then one at a time; elements past K are never read. Rows past M re-read row M-1
//    and columns past N row N-1 (valid addresses); neither is stored, and threads whose outputs all lie past M or N
//    skip the arithmetic (whole warps for the rows). Blocks are numbered row block fastest, so the blocks sharing a
//    W slice run together.
//  Both take a grid.z of chunks (`kern_cuda_gemm_f32_chunks`, the fp32 row-parallel layers): block z computes the
//  GEMM of columns [z K, (z + 1) K) of x and W into the z-th (M, N) output -- its operations are exactly those of a
//  plain call on those views, so one launch replaces C calls with nothing changed but which block runs what. A
//  plain call is z = 0 (zero offsets). The 16-byte flags then also need K (= the chunk width) to keep the rows of
//  every chunk aligned; they only choose the load instructions, never a value.

// ---- gemm_f32_small: M <= 4 rows (decode), the W stream at HBM speed.

namespace f32s {
// Rows of x the decode kernel takes; more: the tiled kernel. Measured on an H200 (seventeenth session, bench_kernels
// f32, the 0.6B shape's four GEMMs): at M = 4 this kernel takes 58 us for the four, the tiled one 70; at M = 8, 94
// against 71; at M = 16, 188 against 73 (the tiled kernel's time hardly grows up to 16 rows, this one's does).
constexpr int MAX_M = 4;
constexpr int STAGES = 4;        // W/x slices in flight per block: STAGES - 1 while one is computed
constexpr int MAX_THREADS = 256; // NO = 32 outputs x 8 lanes
template <typename WT> struct cfg {
    static constexpr int ES = (int)sizeof(WT);
    static constexpr int KT = 512 / ES;     // k per stage: 512 bytes of each W row (256 bf16 / 128 f32)
    static constexpr int EPC = 16 / ES;     // W elements per 16-byte chunk
    static constexpr int CPR = KT / EPC;    // 16-byte chunks per W row slice (32)
    // W row pitch: KT + 8 elements (+16 bytes bf16, +32 bytes f32), so that the 4 outputs of a warp read 4 different
    // groups of banks; x: each lane's run of KT/8 floats padded by 4, so that lanes j = 0..7 of a 16-byte read hit
    // 8 different groups of 4 banks (pitch 36 or 20 words).
    static constexpr int WP = KT + 8;
    static constexpr int TP = KT / 8 + 4;
    static constexpr int XR = 8 * TP; // one row of x in a stage (floats)
    __host__ __device__ static constexpr size_t stage_bytes(int NO, int MT) {
        return (size_t)NO * WP * ES + (size_t)MT * XR * 4;
    }
};
} // namespace f32s

// Copies 4 bytes global -> shared asynchronously (.ca: the only cache mode of the 4-byte size; x is L2/L1-resident).
__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(dst)), "l"(src));
}

__device__ __forceinline__ float wcvt(float v) { return v; }
__device__ __forceinline__ float wcvt(__nv_bfloat16 v) { return __bfloat162float(v); }

// One level of the lane tree for the 8 lanes held by 8 adjacent threads: partner j ^ d; the lower lane's value is the
// left operand, as in lanes_combine (IEEE addition commutes, so both threads of a pair hold the same bits).
__device__ __forceinline__ float lane_tree_step(float v, int j, int d) {
    const float o = __shfl_xor_sync(0xffffffffu, v, d);
    return (j & d) ? __fadd_rn(o, v) : __fadd_rn(v, o);
}

// out (M, N) f32 = x (M, ldx) f32 [first K columns] . W (N, ldw) WT [first K columns]^T (+ bias (N)); M <= MT.
// Block: NO = blockDim.x / 8 outputs n0 .. n0+NO-1; thread (o = tid / 8, j = tid % 8) owns lane j of output n0 + o
// for all MT rows. vec: W rows start 16-byte aligned (cp.async of 16 bytes), else plain element loads. blockIdx.z:
// the chunk (x, W at column z K, out at z M N; 0 for a plain call).
template <typename WT, int MT>
__global__ void __launch_bounds__(f32s::MAX_THREADS, 1)
    gemm_f32_small(float *__restrict__ out, const float *__restrict__ x, const WT *__restrict__ w,
                   const float *__restrict__ bias, int M, int N, int K, int64_t ldx, int64_t ldw, int vec) {
    using C = f32s::cfg<WT>;
    extern __shared__ __align__(16) unsigned char f32s_smem[];
    x += (int64_t)blockIdx.z * K, w += (int64_t)blockIdx.z * K; // out: at the stores
    const int nt = blockDim.x, NO = nt >> 3, tid = threadIdx.x, o = tid >> 3, j = tid & 7;
    const int n0 = blockIdx.x * NO;
    const size_t SB = C::stage_bytes(NO, MT);
    auto wst = [&](int s) { return (WT *)(f32s_smem + s * SB); };                                       // (NO, WP)
    auto xst = [&](int s) { return (float *)(f32s_smem + s * SB + (size_t)NO * C::WP * C::ES); }; // (MT, 8, TP)

    // Padding rows M .. MT-1 are zero in every stage (written once, never overwritten) and never stored.
    for (int s = 0; s < f32s::STAGES; s++)
        for (int e = M * C::XR + tid; e < MT * C::XR; e += nt) xst(s)[e] = 0.0f;

    const int nk = (K + C::KT - 1) / C::KT;
    // Stage kt: W[n0 .. n0+NO, k0 .. k0+kn) and x[0 .. M, k0 .. k0+kn); nothing past K is copied (or read later).
    // Outputs past N copy row N-1 (a valid address; their results are dropped).
    auto load = [&](int kt) {
        const int s = kt % f32s::STAGES, k0 = kt * C::KT, kn = K - k0 < C::KT ? K - k0 : C::KT;
        WT *ws = wst(s);
        float *xs = xst(s);
        if (vec) {
            for (int c = tid; c < NO * C::CPR; c += nt) {
                const int r = c / C::CPR, kk = (c % C::CPR) * C::EPC;
                if (kk >= kn) continue; // a chunk straddling K stays inside its row: ldw is a multiple of EPC
                const int n = n0 + r < N ? n0 + r : N - 1;
                cp_async16(ws + r * C::WP + kk, w + (int64_t)n * ldw + k0 + kk, true);
            }
        } else {
            for (int e = tid; e < NO * C::KT; e += nt) {
                const int r = e / C::KT, kk = e % C::KT;
                if (kk >= kn) continue;
                const int n = n0 + r < N ? n0 + r : N - 1;
                ws[r * C::WP + kk] = w[(int64_t)n * ldw + k0 + kk];
            }
        }
        for (int e = tid; e < M * C::KT; e += nt) {
            const int m = e / C::KT, kk = e % C::KT;
            if (kk >= kn) continue;
            cp_async4(xs + m * C::XR + (kk & 7) * C::TP + (kk >> 3), x + (int64_t)m * ldx + k0 + kk);
        }
    };

    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; m++) acc[m] = 0.0f;

#pragma unroll
    for (int s = 0; s < f32s::STAGES - 1; s++) {
        if (s < nk) load(s);
        cp_async_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cp_async_wait<f32s::STAGES - 2>();
        __syncthreads(); // stage kt landed for every thread; stage kt-1 is no longer read by anyone
        if (kt + f32s::STAGES - 1 < nk) load(kt + f32s::STAGES - 1);
        cp_async_commit();

        const int s = kt % f32s::STAGES, kn = K - kt * C::KT < C::KT ? K - kt * C::KT : C::KT;
        const WT *wr = wst(s) + o * C::WP + j; // W[n0 + o, k0 + 8t + j] = wr[8t]
        const float *xr = xst(s) + j * C::TP;  // x[m, k0 + 8t + j] = xr[m * XR + t]
        if (kn == C::KT) {
#pragma unroll 2
            for (int t = 0; t < C::KT / 8; t += 4) {
                float4 xv[MT];
#pragma unroll
                for (int m = 0; m < MT; m++) xv[m] = *(const float4 *)(xr + m * C::XR + t);
                const float w0 = wcvt(wr[8 * t]), w1 = wcvt(wr[8 * t + 8]), w2 = wcvt(wr[8 * t + 16]),
                            w3 = wcvt(wr[8 * t + 24]);
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    float a = acc[m];
                    a = __fadd_rn(a, __fmul_rn(xv[m].x, w0));
                    a = __fadd_rn(a, __fmul_rn(xv[m].y, w1));
                    a = __fadd_rn(a, __fmul_rn(xv[m].z, w2));
                    a = __fadd_rn(a, __fmul_rn(xv[m].w, w3));
                    acc[m] = a;
                }
            }
        } else {
            // The last, partial stage: lane j has the steps t with 8t + j < kn (k0 is a multiple of 8).
            const int tn = kn > j ? (kn - j + 7) >> 3 : 0;
            for (int t = 0; t < tn; t++) {
                const float wv = wcvt(wr[8 * t]);
#pragma unroll
                for (int m = 0; m < MT; m++) acc[m] = __fadd_rn(acc[m], __fmul_rn(xr[m * C::XR + t], wv));
            }
        }
    }
    cp_async_wait<0>(); // no copy outstanding at exit (the tail groups are empty)

    const int n = n0 + o;
#pragma unroll
    for (int m = 0; m < MT; m++) {
        float v = lane_tree_step(acc[m], j, 1); // l0+l1, l2+l3, ..
        v = lane_tree_step(v, j, 2);            // (l0+l1)+(l2+l3), (l4+l5)+(l6+l7)
        v = lane_tree_step(v, j, 4);            // the whole tree, in all 8 threads
        if (m < M && n < N && j == (m & 7))
            out[((int64_t)blockIdx.z * M + m) * N + n] = bias ? __fadd_rn(v, bias[n]) : v;
    }
}

// nz chunks (grid.z) of K columns each, x and W advancing by K per chunk, out by M N; nz = 1: a plain call.
template <typename WT, int MT>
static void launch_f32_small(float *out, const float *x, int64_t ldx, const WT *w, int64_t ldw, const float *bias,
                             int M, int N, int K, int nz, int NO, cudaStream_t stream) {
    using C = f32s::cfg<WT>;
    static bool attr_set = false; // per template instance: room for the widest block
    if (!attr_set) {
        const int most = (int)(f32s::STAGES * C::stage_bytes(f32s::MAX_THREADS / 8, MT));
        CUDA_CHECK(cudaFuncSetAttribute(gemm_f32_small<WT, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, most));
        attr_set = true;
    }
    // Every chunk's W rows 16-byte aligned: the base, the pitch and (chunks) the chunk width.
    const int vec =
        ((uintptr_t)w % 16 == 0) && ((ldw * C::ES) % 16 == 0) && (nz == 1 || ((int64_t)K * C::ES) % 16 == 0);
    const size_t smem = f32s::STAGES * C::stage_bytes(NO, MT);
    const dim3 grid((unsigned)((N + NO - 1) / NO), 1, (unsigned)nz);
    gemm_f32_small<WT, MT><<<grid, NO * 8, smem, stream>>>(out, x, w, bias, M, N, K, ldx, ldw, vec);
    CUDA_CHECK_LAUNCH();
}

template <typename WT>
static void dispatch_f32_small(float *out, const float *x, int64_t ldx, const WT *w, int64_t ldw, const float *bias,
                               int M, int N, int K, int nz, cudaStream_t stream) {
    const int64_t n_sm2 = 2 * (int64_t)kern_sm_count();
    // The widest block (x is re-read from L2 by every block: wider blocks read it less often) that still gives
    // >= 2 blocks per SM, counting all nz chunks; 8 outputs (64 threads) below that. The width never changes an
    // element's arithmetic.
    const int NO = (int64_t)((N + 31) / 32) * nz >= n_sm2 ? 32 : (int64_t)((N + 15) / 16) * nz >= n_sm2 ? 16 : 8;
    if (M <= 1) launch_f32_small<WT, 1>(out, x, ldx, w, ldw, bias, M, N, K, nz, NO, stream);
    else if (M <= 2) launch_f32_small<WT, 2>(out, x, ldx, w, ldw, bias, M, N, K, nz, NO, stream);
    else launch_f32_small<WT, 4>(out, x, ldx, w, ldw, bias, M, N, K, nz, NO, stream);
}

// ---- gemm_f32_tiled: M > 4 rows, a register tile of TM rows x 4 columns per (thread, lane).

namespace f32t {
constexpr int THREADS = 128; // 8 lanes x RG x CG
constexpr int TN = 4;        // columns per thread
constexpr int KT = 128;      // k per tile
constexpr int S = KT / 8;    // steps of each lane per tile (16)
// A lane's run of S floats padded to LP = 20 words (5 16-byte units: lanes 0..7 of a 16-byte read hit 8 different
// groups of 4 banks); a row of 8 lanes padded to RP = 176 words = 16 mod 32, so that the 32 octets a warp stores
// (2 rows x 16 steps, one lane at a time) hit 32 different banks.
constexpr int LP = S + 4;
constexpr int RP = 8 * LP + 16;
template <int TM, int RG, int CG> struct cfg {
    static constexpr int BM = TM * RG, BN = TN * CG;
    static constexpr int XO = BM * S / THREADS, WO = BN * S / THREADS; // octets staged per thread per tile
    static_assert(8 * RG * CG == THREADS && XO * THREADS == BM * S && WO * THREADS == BN * S, "f32t tile");
    static constexpr size_t smem = 2 * (size_t)(BM + BN) * RP * sizeof(float); // two buffers
};
} // namespace f32t

// An octet: 8 consecutive elements of a row (one step of the 8 lanes), as loaded (f32, or bf16 pairs).
template <typename WT> struct f32t_oct;
template <> struct f32t_oct<float> { float4 a, b; };
template <> struct f32t_oct<__nv_bfloat16> { uint4 a; };

// Loads the first cnt (<= 8, may be <= 0) elements at p; vec: p is 16-byte aligned. The rest are zero (never read).
__device__ __forceinline__ void oct_load(f32t_oct<float> &o, const float *p, int cnt, bool vec) {
    if (vec && cnt >= 8) {
        o.a = __ldg((const float4 *)p);
        o.b = __ldg((const float4 *)p + 1);
        return;
    }
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = i < cnt ? __ldg(p + i) : 0.0f;
    o.a = make_float4(v[0], v[1], v[2], v[3]);
    o.b = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void oct_load(f32t_oct<__nv_bfloat16> &o, const __nv_bfloat16 *p, int cnt, bool vec) {
    if (vec && cnt >= 8) {
        o.a = __ldg((const uint4 *)p);
        return;
    }
    uint32_t v[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t lo = 2 * i < cnt ? __bfloat16_as_ushort(p[2 * i]) : 0u;
        const uint32_t hi = 2 * i + 1 < cnt ? __bfloat16_as_ushort(p[2 * i + 1]) : 0u;
        v[i] = lo | hi << 16;
    }
    o.a = make_uint4(v[0], v[1], v[2], v[3]);
}

// Stores an octet as f32 lane-major: element j (lane j) at dst[j * LP]. bf16 -> f32 is exact (the 16 bits on top).
__device__ __forceinline__ void oct_store(float *dst, const f32t_oct<float> &o) {
    const float v[8] = {o.a.x, o.a.y, o.a.z, o.a.w, o.b.x, o.b.y, o.b.z, o.b.w};
#pragma unroll
    for (int j = 0; j < 8; j++) dst[j * f32t::LP] = v[j];
}
__device__ __forceinline__ void oct_store(float *dst, const f32t_oct<__nv_bfloat16> &o) {
    const uint32_t u[4] = {o.a.x, o.a.y, o.a.z, o.a.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        dst[(2 * i) * f32t::LP] = __uint_as_float(u[i] << 16);
        dst[(2 * i + 1) * f32t::LP] = __uint_as_float(u[i] & 0xffff0000u);
    }
}

__device__ __forceinline__ float f4get(const float4 &v, int e) {
    return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

// Steps t .. t+3 of lane j for the thread's TM x TN outputs: xr / wr point at (its first row / column, lane j) of
// the tile. Each accumulator takes its 4 products in ascending k.
template <int TM>
__device__ __forceinline__ void f32t_step4(float (&acc)[TM][f32t::TN], const float *xr, const float *wr, int t) {
    float4 xv[TM], wv[f32t::TN];
#pragma unroll
    for (int r = 0; r < TM; r++) xv[r] = *(const float4 *)(xr + r * f32t::RP + t);
#pragma unroll
    for (int c = 0; c < f32t::TN; c++) wv[c] = *(const float4 *)(wr + c * f32t::RP + t);
#pragma unroll
    for (int e = 0; e < 4; e++)
#pragma unroll
        for (int r = 0; r < TM; r++)
#pragma unroll
            for (int c = 0; c < f32t::TN; c++)
                acc[r][c] = __fadd_rn(acc[r][c], __fmul_rn(f4get(xv[r], e), f4get(wv[c], e)));
}

// One step t of lane j (the partial tile's tail).
template <int TM>
__device__ __forceinline__ void f32t_step1(float (&acc)[TM][f32t::TN], const float *xr, const float *wr, int t) {
    float xv[TM], wv[f32t::TN];
#pragma unroll
    for (int r = 0; r < TM; r++) xv[r] = xr[r * f32t::RP + t];
#pragma unroll
    for (int c = 0; c < f32t::TN; c++) wv[c] = wr[c * f32t::RP + t];
#pragma unroll
    for (int r = 0; r < TM; r++)
#pragma unroll
        for (int c = 0; c < f32t::TN; c++) acc[r][c] = __fadd_rn(acc[r][c], __fmul_rn(xv[r], wv[c]));
}

// out (M, N) f32 = x (M, ldx) f32 [first K columns] . W (N, ldw) WT [first K columns]^T (+ bias (N)).
// Block b: row block b % ceil(M / BM), column block b / ceil(M / BM). vx / vw: the rows of x / W start 16-byte
// aligned (16-byte octet loads), else element loads. blockIdx.z: the chunk (x, W at column z K, out at z M N; 0 for a
// plain call).
template <typename WT, int TM, int RG, int CG>
__global__ void __launch_bounds__(f32t::THREADS)
    gemm_f32_tiled(float *__restrict__ out, const float *__restrict__ x, const WT *__restrict__ w,
                   const float *__restrict__ bias, int M, int N, int K, int64_t ldx, int64_t ldw, int vx, int vw) {
    using C = f32t::cfg<TM, RG, CG>;
    constexpr int TN = f32t::TN, S = f32t::S, KT = f32t::KT, RP = f32t::RP, LP = f32t::LP, NT = f32t::THREADS;
    extern __shared__ __align__(16) float f32t_smem[];
    x += (int64_t)blockIdx.z * K, w += (int64_t)blockIdx.z * K; // out: at the stores
    const int tid = threadIdx.x, j = tid & 7, q = tid >> 3, rg = q / CG, cg = q % CG; // a warp: one rg
    const int nrb = (M + C::BM - 1) / C::BM;
    const int m0 = (int)(blockIdx.x % nrb) * C::BM, n0 = (int)(blockIdx.x / nrb) * C::BN;
    auto xst = [&](int s) { return f32t_smem + s * (C::BM + C::BN) * RP; };               // (BM, RP)
    auto wst = [&](int s) { return f32t_smem + s * (C::BM + C::BN) * RP + C::BM * RP; }; // (BN, RP)

    // Octet o of a tile: row o / S, step o % S (32 consecutive octets per warp: coalesced loads).
    f32t_oct<float> xo[C::XO];
    f32t_oct<WT> wo[C::WO];
    auto fetch = [&](int kt) {
        const int k0 = kt * KT;
#pragma unroll
        for (int i = 0; i < C::XO; i++) {
            const int o = tid + i * NT, r = o / S, t = o % S, m = m0 + r < M ? m0 + r : M - 1;
            oct_load(xo[i], x + (int64_t)m * ldx + k0 + 8 * t, K - k0 - 8 * t, vx);
        }
#pragma unroll
        for (int i = 0; i < C::WO; i++) {
            const int o = tid + i * NT, r = o / S, t = o % S, n = n0 + r < N ? n0 + r : N - 1;
            oct_load(wo[i], w + (int64_t)n * ldw + k0 + 8 * t, K - k0 - 8 * t, vw);
        }
    };
    auto stash = [&](int s) {
#pragma unroll
        for (int i = 0; i < C::XO; i++) {
            const int o = tid + i * NT;
            oct_store(xst(s) + (o / S) * RP + o % S, xo[i]);
        }
#pragma unroll
        for (int i = 0; i < C::WO; i++) {
            const int o = tid + i * NT;
            oct_store(wst(s) + (o / S) * RP + o % S, wo[i]);
        }
    };

    float acc[TM][TN];
#pragma unroll
    for (int r = 0; r < TM; r++)
#pragma unroll
        for (int c = 0; c < TN; c++) acc[r][c] = 0.0f;
    // Warp-uniform for the rows (a warp holds 4 column groups of one row group), so the padding row groups of the
    // last row block (M not a multiple of 16) cost no arithmetic.
    const bool live = m0 + rg * TM < M && n0 + cg * TN < N;

    const int nk = (K + KT - 1) / KT;
    fetch(0);
    stash(0);
    __syncthreads();
    for (int kt = 0; kt < nk; kt++) {
        if (kt + 1 < nk) fetch(kt + 1); // in flight while tile kt is computed
        const int kn = K - kt * KT < KT ? K - kt * KT : KT;
        const float *xr = xst(kt & 1) + rg * TM * RP + j * LP, *wr = wst(kt & 1) + cg * TN * RP + j * LP;
        if (live) {
            if (kn == KT) {
#pragma unroll
                for (int t = 0; t < S; t += 4) f32t_step4<TM>(acc, xr, wr, t);
            } else {
                // The partial tile: steps every lane has (8t + 8 <= kn) by 4, then lane j's own tail 8t + j < kn.
                const int tg = (kn >> 3) & ~3, tn = kn > j ? (kn - j + 7) >> 3 : 0;
                int t = 0;
#pragma unroll 1
                for (; t < tg; t += 4) f32t_step4<TM>(acc, xr, wr, t);
#pragma unroll 1
                for (; t < tn; t++) f32t_step1<TM>(acc, xr, wr, t);
            }
        }
        if (kt + 1 < nk) stash((kt + 1) & 1); // the buffer read in tile kt - 1, before the last barrier
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < TM; r++)
#pragma unroll
        for (int c = 0; c < TN; c++) {
            float v = lane_tree_step(acc[r][c], j, 1); // all 32 threads of the warp take part
            v = lane_tree_step(v, j, 2);
            v = lane_tree_step(v, j, 4);
            const int m = m0 + rg * TM + r, n = n0 + cg * TN + c;
            if (m < M && n < N && j == ((r * TN + c) & 7))
                out[((int64_t)blockIdx.z * M + m) * N + n] = bias ? __fadd_rn(v, bias[n]) : v;
        }
}

// nz chunks (grid.z) as launch_f32_small.
template <typename WT, int TM, int RG, int CG>
static void launch_f32_tiled(float *out, const float *x, int64_t ldx, const WT *w, int64_t ldw, const float *bias,
                             int M, int N, int K, int nz, cudaStream_t stream) {
    using C = f32t::cfg<TM, RG, CG>;
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(gemm_f32_tiled<WT, TM, RG, CG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)C::smem));
        attr_set = true;
    }
    // Every chunk's rows 16-byte aligned: the base, the pitch and (chunks) the chunk width.
    const int vx = ((uintptr_t)x % 16 == 0) && (ldx % 4 == 0) && (nz == 1 || K % 4 == 0);
    const int vw = ((uintptr_t)w % 16 == 0) && ((ldw * (int64_t)sizeof(WT)) % 16 == 0) &&
                   (nz == 1 || ((int64_t)K * (int64_t)sizeof(WT)) % 16 == 0);
    const int64_t blocks = (int64_t)((M + C::BM - 1) / C::BM) * ((N + C::BN - 1) / C::BN);
    KERN_REQUIRE(blocks <= INT32_MAX, "gemm_f32: too many blocks");
    const dim3 grid((unsigned)blocks, 1, (unsigned)nz);
    gemm_f32_tiled<WT, TM, RG, CG>
        <<<grid, f32t::THREADS, C::smem, stream>>>(out, x, w, bias, M, N, K, ldx, ldw, vx, vw);
    CUDA_CHECK_LAUNCH();
}

template <typename WT>
static void dispatch_f32_tiled(float *out, const float *x, int64_t ldx, const WT *w, int64_t ldw, const float *bias,
                               int M, int N, int K, int nz, cudaStream_t stream) {
    const int n_sm = kern_sm_count();
    // TM = 8 (16 x 32 blocks: 32 accumulators, 12 shared loads per 256 fp32 instructions) unless that leaves more
    // than half of the SMs idle (all nz chunks counted); then TM = 4 (16 x 16 blocks, twice as many, 8 loads per 128
    // instructions). Which one runs never changes an element's arithmetic.
    const int64_t b8 = (int64_t)((M + 15) / 16) * ((N + 31) / 32) * nz;
    if (2 * b8 > n_sm) launch_f32_tiled<WT, 8, 2, 8>(out, x, ldx, w, ldw, bias, M, N, K, nz, stream);
    else launch_f32_tiled<WT, 4, 4, 4>(out, x, ldx, w, ldw, bias, M, N, K, nz, stream);
}

// nz chunks of K columns (grid.z; 1: a plain call); the caller has checked the shape. M = 0: nothing.
static void gemm_f32_run(float *out, const float *x, int64_t ldx, const void *w, int64_t ldw, kern_dtype wdt,
                         const float *bias, int M, int N, int K, int nz, cudaStream_t stream) {
    if (M == 0) return;
    if (M <= f32s::MAX_M) {
        if (wdt == KERN_F32) dispatch_f32_small(out, x, ldx, (const float *)w, ldw, bias, M, N, K, nz, stream);
        else dispatch_f32_small(out, x, ldx, (const __nv_bfloat16 *)w, ldw, bias, M, N, K, nz, stream);
        return;
    }
    if (wdt == KERN_F32) dispatch_f32_tiled(out, x, ldx, (const float *)w, ldw, bias, M, N, K, nz, stream);
    else dispatch_f32_tiled(out, x, ldx, (const __nv_bfloat16 *)w, ldw, bias, M, N, K, nz, stream);
}

extern "C" void kern_cuda_gemm_f32_ld(float *out, const float *x, int64_t ldx, const void *w, int64_t ldw,
                                     kern_dtype wdt, const float *bias, int M, int N, int K, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && N > 0 && K > 0 && ldx >= K && ldw >= K, "gemm_f32: bad shape");
    KERN_REQUIRE(wdt == KERN_F32 || wdt == KERN_BF16, "gemm_f32: weights must be f32 or bf16");
    gemm_f32_run(out, x, ldx, w, ldw, wdt, bias, M, N, K, 1, stream);
}

extern "C" void kern_cuda_gemm_f32_chunks(float *parts, const float *x, int64_t ldx, const void *w, int64_t ldw,
                                         kern_dtype wdt, int M, int N, int kc, int C, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && N > 0 && kc > 0 && C >= 1, "gemm_f32_chunks: bad shape");
    KERN_REQUIRE(C <= 65535, "gemm_f32_chunks: at most 65535 chunks (grid.z)");
    KERN_REQUIRE(ldx >= (int64_t)kc * C && ldw >= (int64_t)kc * C, "gemm_f32_chunks: rows shorter than C chunks");
    KERN_REQUIRE(wdt == KERN_F32 || wdt == KERN_BF16, "gemm_f32_chunks: weights must be f32 or bf16");
    gemm_f32_run(parts, x, ldx, w, ldw, wdt, NULL, M, N, kc, C, stream);
}

extern "C" void kern_cuda_gemm_f32(float *out, const float *x, const void *w, kern_dtype wdt, const float *bias, int M,
                                  int N, int K, cudaStream_t stream) {
    kern_cuda_gemm_f32_ld(out, x, K, w, K, wdt, bias, M, N, K, stream);
}

// ---------------------------------------------------------------------------------------------------------------
// standard mode: cuBLAS with its default heuristics (NOT invariant: the algorithm, split-K included, follows the
// shape). One handle per process, created on first use; not thread-safe (one host thread drives a GPU).

__global__ void add_bias_rows(float *out, const float *bias, int M, int N) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < (int64_t)M * N) out[i] = __fadd_rn(out[i], bias[i % N]);
}

static const char *cublas_msg(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}
#define CUBLAS_CHECK(call)                                                                                             \
    do {                                                                                                               \
        cublasStatus_t s_ = (call);                                                                                    \
        if (s_ != CUBLAS_STATUS_SUCCESS) kern_cuda_fatal(__FILE__, __LINE__, #call, cublas_msg(s_));                   \
    } while (0)

extern "C" void kern_cuda_gemm_standard(float *out, const uint16_t *x, const uint16_t *w, const float *bias, int M,
                                       int N, int K, cudaStream_t stream) {
    static cublasHandle_t handle = nullptr;
    KERN_REQUIRE(M >= 0 && N > 0 && K > 0, "gemm_standard: bad shape");
    if (M == 0) return;
    if (!handle) CUBLAS_CHECK(cublasCreate(&handle));
    CUBLAS_CHECK(cublasSetStream(handle, stream));
    const float one = 1.0f, zero = 0.0f;
    // Column-major view: out^T (N, M) = W (N, K) . x^T (K, M); W row-major (N, K) is col-major (K, N) -> op T.
    CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, CUDA_R_16BF, K, x, CUDA_R_16BF, K,
                              &zero, out, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) {
        int64_t n = (int64_t)M * N;
        add_bias_rows<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(out, bias, M, N);
        CUDA_CHECK_LAUNCH();
    }
}
