// K/V cache write: the new tokens' K and V rows (M, n_kv, hd) f32 go to their paged slots (pt_off[m], pos[m]):
// kern_cuda_kv_write.
//
// Purpose/Why. A copy: no arithmetic, so the cache holds exactly the fp32 values the projections produced. It runs
// before attention reads the cache (DESIGN 2): prefill rows then read their own keys from the cache, exactly as a
// later decode step does, so prefill == decode bit for bit. The engine's decode step writes K/V inside its attention
// launch instead (kern_cuda_attn_decode_fused, attention.cu): the same values to the same slots.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

// K/V rows of the new tokens -> their cache slots. k_new, v_new (M, n_kv, hd).
__global__ void kv_write_kernel(float *kc, float *vc, const float *k_new, const float *v_new, const int32_t *pages,
                                const int32_t *pt_off, const int32_t *pos, int page_size, int row) {
    const int m = blockIdx.x;
    const int t = pos[m];
    const int64_t slot = (int64_t)pages[pt_off[m] + t / page_size] * page_size + t % page_size;
    for (int e = threadIdx.x; e < row; e += blockDim.x) {
        kc[slot * row + e] = k_new[(int64_t)m * row + e];
        vc[slot * row + e] = v_new[(int64_t)m * row + e];
    }
}

extern "C" void kern_cuda_kv_write(float *k_cache, float *v_cache, const float *k_new, const float *v_new,
                                   const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                   int page_size, int n_kv, int hd, cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && page_size > 0 && n_kv > 0 && hd > 0, "kv_write: bad shape");
    if (M == 0) return;
    kv_write_kernel<<<M, 128, 0, stream>>>(k_cache, v_cache, k_new, v_new, pages, pt_off, pos, page_size, n_kv * hd);
    CUDA_CHECK_LAUNCH();
}
