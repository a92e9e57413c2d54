// Experiment (twelfth session; run in the thirteenth: docs/PERFORMANCE.md, "The launch floor"): what a decode step
// of N dependent phases costs beyond its bytes, on this GPU. The 0.6B shape's batch-1 step is ~260 launches that
// read 1.19 GB in ~1.28 ms (779 tokens/s) against 0.30 ms for the bytes at the copy bandwidth; issue 15 asks for 70%
// of that bound (0.43 ms). Measured here, with the step's bytes split evenly over N phases that must run in order:
//   read     one kernel reading all the bytes (what the others are compared with);
//   graph    N kernels in a CUDA graph, each reading its slice (4 blocks of 256 threads an SM), launched as the
//            engine does -- plain, or with programmatic dependent launch (PDL: the next kernel starts as the
//            previous one lets it, and waits with griddepcontrol.wait before reading);
//   empty    the same graphs of N kernels that read nothing: the launch floor alone;
//   persist  one cooperative launch (512-thread blocks, up to 2 an SM) running the N phases with a grid barrier
//            between them (an atomic counter and a generation word): the floor of a persistent ("megakernel") step.
// Added after the thirteenth session's run (not yet run): the two forms with what the engine's decode GEMMs do and a
// megakernel would do -- fetch the next phase's bytes, which do not depend on the previous phase, before waiting:
//   pdl+pf   the PDL graph, each block reading a contiguous chunk of its phase's slice and asking for it with one
//            L2 bulk prefetch (cp.async.bulk.prefetch.L2) before griddepcontrol.wait;
//   pers+pf  the persistent kernel, each block prefetching its chunk of phase p + 1 into L2 before phase p's reads
//            and barrier.
// Per-phase overhead = (step time - read time) / N. Built and run by hand:
//   nvcc -O3 -std=c++17 -arch=sm_90a bench/exp/launch_floor.cu -o /tmp/launch_floor && /tmp/launch_floor
#include <cstdint>
#include <cstdio>
#include <cuda_runtime.h>

#define CK(x)                                                                                                          \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));                        \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

// Reads words i0, i0 + stride, .. below e of p (4 loads in flight per thread); folds them so the loads stay.
__device__ __forceinline__ unsigned read_strided(const uint4 *__restrict__ p, int64_t i0, int64_t e, int64_t stride) {
    unsigned acc = 0;
    int64_t i = i0;
    for (; i + 3 * stride < e; i += 4 * stride) {
        const uint4 a = __ldg(p + i), b = __ldg(p + i + stride), c = __ldg(p + i + 2 * stride),
                    d = __ldg(p + i + 3 * stride);
        acc ^= (a.x ^ a.y ^ a.z ^ a.w) ^ (b.x ^ b.y ^ b.z ^ b.w) ^ (c.x ^ c.y ^ c.z ^ c.w) ^ (d.x ^ d.y ^ d.z ^ d.w);
    }
    for (; i < e; i += stride) {
        const uint4 a = __ldg(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    return acc;
}

// Reads n16 16-byte words from p with the whole grid.
__device__ __forceinline__ unsigned read_slice(const uint4 *__restrict__ p, int64_t n16) {
    return read_strided(p, (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n16, (int64_t)gridDim.x * blockDim.x);
}

// Reads words [b, e) of p with the block.
__device__ __forceinline__ unsigned read_chunk(const uint4 *__restrict__ p, int64_t b, int64_t e) {
    return read_strided(p, b + threadIdx.x, e, blockDim.x);
}

// This block's chunk [*b, *e) of n16 words split evenly over the grid.
__device__ __forceinline__ void block_chunk(int64_t n16, int64_t *b, int64_t *e) {
    const int64_t per = (n16 + gridDim.x - 1) / gridDim.x;
    *b = (int64_t)blockIdx.x * per < n16 ? (int64_t)blockIdx.x * per : n16;
    *e = *b + per < n16 ? *b + per : n16;
}

// One bulk prefetch of words [b, e) into L2 (thread 0 of the block).
__device__ __forceinline__ void prefetch_l2(const uint4 *p, int64_t b, int64_t e) {
    if (threadIdx.x == 0 && e > b)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p + b), "r"((unsigned)((e - b) * 16))
                     : "memory");
}

__global__ void phase_pf_kernel(const uint4 *p, int64_t n16, unsigned *sink) {
    int64_t b, e;
    block_chunk(n16, &b, &e);
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    prefetch_l2(p, b, e);
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    const unsigned acc = read_chunk(p, b, e);
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

__global__ void phase_kernel(const uint4 *p, int64_t n16, unsigned *sink, int pdl) {
    if (pdl) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    if (pdl) asm volatile("griddepcontrol.wait;\n" ::: "memory");
    const unsigned acc = read_slice(p, n16);
    if (acc == 0x9e3779b9u) sink[0] = acc; // never true for the data below; keeps the loads
}

// A grid barrier for a co-resident grid: block 0 .. n-1 arrive on count; the last resets it and bumps gen.
__device__ __forceinline__ void grid_barrier(unsigned *count, volatile unsigned *gen) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned g = *gen;
        __threadfence();
        if (atomicAdd(count, 1u) == gridDim.x - 1) {
            *count = 0;
            __threadfence();
            atomicAdd((unsigned *)gen, 1u);
        } else {
            while (*gen == g) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

__global__ void persist_kernel(const uint4 *p, int64_t n16_phase, int phases, unsigned *count, unsigned *gen,
                               unsigned *sink) {
    unsigned acc = 0;
    for (int ph = 0; ph < phases; ph++) {
        acc ^= read_slice(p + (int64_t)ph * n16_phase, n16_phase);
        grid_barrier(count, gen);
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

__global__ void persist_pf_kernel(const uint4 *p, int64_t n16_phase, int phases, unsigned *count, unsigned *gen,
                                  unsigned *sink) {
    unsigned acc = 0;
    int64_t b, e;
    block_chunk(n16_phase, &b, &e);
    prefetch_l2(p, b, e);
    for (int ph = 0; ph < phases; ph++) {
        if (ph + 1 < phases) prefetch_l2(p + (int64_t)(ph + 1) * n16_phase, b, e);
        acc ^= read_chunk(p + (int64_t)ph * n16_phase, b, e);
        grid_barrier(count, gen);
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

static cudaError_t launch_phase(const uint4 *p, int64_t n16, unsigned *sink, int pdl, int blocks, cudaStream_t s) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(256);
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    if (pdl == 2) return cudaLaunchKernelEx(&cfg, phase_pf_kernel, p, n16, sink);
    return cudaLaunchKernelEx(&cfg, phase_kernel, p, n16, sink, pdl);
}

// Median of reps timings (ms) of fn(stream).
template <class F> static float time_ms(F fn, cudaStream_t s, int reps) {
    float t[64];
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    fn(s); // warm-up
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(a, s);
        fn(s);
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&t[r], a, b);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    for (int i = 1; i < reps; i++) // insertion sort
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            const float x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return t[reps / 2];
}

int main() {
    int n_sm = 0, coop = 0;
    CK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, 0));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("launch_floor: %s, %d SMs\n", prop.name, n_sm);
    const int64_t most = (int64_t)16 << 30; // 16 GiB: the 8B shape's 15.1 GB step
    uint4 *buf = nullptr;
    unsigned *sink = nullptr, *count = nullptr, *gen = nullptr;
    CK(cudaMalloc(&buf, most));
    CK(cudaMemset(buf, 1, most));
    CK(cudaMalloc(&sink, 4));
    CK(cudaMalloc(&count, 4));
    CK(cudaMalloc(&gen, 4));
    CK(cudaMemset(count, 0, 4));
    CK(cudaMemset(gen, 0, 4));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persist_kernel, 512, 0));
    const int persist_blocks = n_sm * (per_sm < 2 ? per_sm : 2); // 2 x 512 threads an SM: the graphs' 4 x 256
    // (bytes a step, phases): the 0.6B shape (1.19 GB, ~260 launches), the 8B shape (15.14 GB, 332), and sweeps
    const struct { double gb; int n; } cases[] = {{1.19, 260}, {1.19, 130}, {1.19, 60}, {1.19, 28}, {15.14, 332}};
    printf("\n%8s %6s %9s %9s %9s %9s %9s %9s %9s %9s   us a phase beyond the read (graph, pdl, persist, pdl+pf, "
           "pers+pf)\n",
           "GB", "phases", "read us", "graph us", "pdl us", "empty us", "emptypdl", "persist", "pdl+pf", "pers+pf");
    for (const auto &c : cases) {
        const int64_t n16 = (int64_t)(c.gb * 1e9 / 16 / c.n); // 16-byte words a phase
        const int64_t all16 = n16 * c.n;
        const double bytes = (double)all16 * 16;
        const float copy = time_ms([&](cudaStream_t st) { launch_phase(buf, all16, sink, 0, 4 * n_sm, st); }, s, 9);
        float g[5];
        for (int v = 0; v < 5; v++) { // 0: graph, 1: + PDL, 2: empty graph, 3: empty + PDL, 4: PDL + L2 prefetch
            const int pdl = v == 4 ? 2 : v & 1, empty = v == 2 || v == 3;
            cudaGraph_t graph;
            cudaGraphExec_t exec;
            CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
            for (int i = 0; i < c.n; i++) launch_phase(buf + (int64_t)i * n16, empty ? 0 : n16, sink, pdl, 4 * n_sm, s);
            CK(cudaStreamEndCapture(s, &graph));
            CK(cudaGraphInstantiate(&exec, graph, 0));
            g[v] = time_ms([&](cudaStream_t st) { cudaGraphLaunch(exec, st); }, s, 9);
            cudaGraphExecDestroy(exec);
            cudaGraphDestroy(graph);
        }
        float persist = -1, persist_pf = -1;
        if (coop && persist_blocks >= 1) {
            int phases = c.n;
            int64_t n16p = n16;
            void *args[] = {&buf, &n16p, &phases, &count, &gen, &sink};
            persist = time_ms(
                [&](cudaStream_t st) {
                    cudaLaunchCooperativeKernel((void *)persist_kernel, dim3(persist_blocks), dim3(512), args, 0, st);
                },
                s, 9);
            persist_pf = time_ms(
                [&](cudaStream_t st) {
                    cudaLaunchCooperativeKernel((void *)persist_pf_kernel, dim3(persist_blocks), dim3(512), args, 0,
                                                st);
                },
                s, 9);
        }
        CK(cudaGetLastError());
        const double floor_us = 1e3 * copy; // the bytes in one kernel
        printf("%8.2f %6d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f   %.2f, %.2f, %.2f, %.2f, %.2f   (read %.0f "
               "GB/s)\n",
               c.gb, c.n, 1e3 * copy, 1e3 * g[0], 1e3 * g[1], 1e3 * g[2], 1e3 * g[3], 1e3 * persist, 1e3 * g[4],
               1e3 * persist_pf, (1e3 * g[0] - floor_us) / c.n, (1e3 * g[1] - floor_us) / c.n,
               (1e3 * persist - floor_us) / c.n, (1e3 * g[4] - floor_us) / c.n, (1e3 * persist_pf - floor_us) / c.n,
               bytes / (copy * 1e-3) / 1e9);
    }
    cudaFree(buf);
    cudaFree(sink);
    cudaFree(count);
    cudaFree(gen);
    cudaStreamDestroy(s);
    return 0;
}
