// Experiment (eleventh session): cycles per step of a dependent mma.sync.m16n8k16 bf16 chain on this GPU -- the
// decode GEMM's per-column-strip critical path (acc = mma(acc, a, b), k16 steps in order). Built and run by hand:
//   nvcc -O3 -std=c++17 -arch=sm_90a bench/exp/mma_chain.cu -o /tmp/mma_chain && /tmp/mma_chain
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

__device__ __forceinline__ void mma(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ uint32_t su32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(su32(p)));
}
__device__ __forceinline__ void ldsm_x2(uint32_t r[2], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(su32(p)));
}

constexpr int STEPS = 4096;
// mode 0: one chain, operands in registers; 1: two interleaved chains; 2: one chain, operands by ldmatrix each step
// (as the decode kernels); 3: one chain, 4 steps' operands loaded first then 4 mmas
__global__ void chain(int mode, long long *cyc, float *out) {
    __shared__ __align__(128) uint16_t sm[64 * 64];
    for (int i = threadIdx.x; i < 64 * 64; i += blockDim.x) sm[i] = (uint16_t)(0x3c00 + (i & 7));
    __syncthreads();
    const int lane = threadIdx.x & 31;
    uint32_t a[4] = {0x3f803f80u, 0, 0x3f803f80u, 0}, b[2] = {0x3f803f80u, 0x3f803f80u};
    float d[4] = {0, 0, 0, 0}, e[4] = {0, 0, 0, 0};
    const long long t0 = clock64();
    if (mode == 0) {
        for (int s = 0; s < STEPS; s++) mma(d, a, b);
    } else if (mode == 1) {
        for (int s = 0; s < STEPS; s += 2) { mma(d, a, b); mma(e, a, b); }
    } else if (mode == 2) {
        for (int s = 0; s < STEPS; s++) {
            uint32_t aa[4], bb[2];
            ldsm_x2(bb, sm + (lane & 7) * 64 + ((s & 3) * 16 + 8 * ((lane >> 3) & 1)));
            ldsm_x4(aa, sm + ((lane & 15)) * 64 + ((s & 3) * 16 + 8 * (lane >> 4)));
            mma(d, aa, bb);
        }
    } else {
        for (int s = 0; s < STEPS; s += 4) {
            uint32_t aa[4][4], bb[4][2];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                ldsm_x2(bb[k], sm + (lane & 7) * 64 + (k * 16 + 8 * ((lane >> 3) & 1)));
                ldsm_x4(aa[k], sm + ((lane & 15)) * 64 + (k * 16 + 8 * (lane >> 4)));
            }
#pragma unroll
            for (int k = 0; k < 4; k++) mma(d, aa[k], bb[k]);
        }
    }
    const long long t1 = clock64();
    if (lane == 0 && threadIdx.x == 0 && blockIdx.x == 0) *cyc = t1 - t0;
    out[blockIdx.x * blockDim.x + threadIdx.x] = d[0] + d[1] + d[2] + d[3] + e[0] + e[1] + e[2] + e[3];
}

int main() {
    long long *cyc;
    float *out;
    cudaMalloc(&cyc, 8);
    cudaMalloc(&out, 132 * 16 * 32 * 4);
    const char *names[] = {"1 chain, register operands", "2 interleaved chains", "1 chain, ldmatrix per step",
                           "1 chain, 4 steps' ldmatrix first"};
    printf("mma.sync.m16n8k16 bf16 dependent chain, %d steps: cycles per step (warp 0 of block 0)\n", STEPS);
    printf("%-34s %8s %8s %8s %8s\n", "mode", "1 warp", "4 warps", "8 warps", "16 warps");
    for (int mode = 0; mode < 4; mode++) {
        printf("%-34s", names[mode]);
        for (int w : {1, 4, 8, 16}) {
            chain<<<132, 32 * w>>>(mode, cyc, out); // warm-up
            chain<<<132, 32 * w>>>(mode, cyc, out);
            long long c = 0;
            cudaMemcpy(&c, cyc, 8, cudaMemcpyDeviceToHost);
            printf(" %8.1f", (double)c / (mode == 1 ? STEPS / 2 : STEPS));
        }
        printf("\n");
    }
    printf("(mode 1: cycles per pair of steps, one from each chain)\n");
    return cudaDeviceSynchronize() != cudaSuccess;
}
