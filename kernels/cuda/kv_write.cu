// K/V cache write: the new tokens' K and V rows (M, n_kv, hd) f32 go to their paged slots (pt_off[m], pos[m]):
// kern_cuda_kv_write. And the page copy of shared prompt KV: kern_cuda_kv_copy_page.
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

// One page (page_elems floats) of K and of V, every layer: blockIdx.y = layer, blockIdx.z = 0 (K) / 1 (V).
__global__ void kv_copy_page_kernel(float *kc, float *vc, int64_t layer_elems, int64_t page_elems, int32_t dst,
                                    int32_t src) {
    float *c = blockIdx.z ? vc : kc;
    float *to = c + blockIdx.y * layer_elems + (int64_t)dst * page_elems;
    const float *from = c + blockIdx.y * layer_elems + (int64_t)src * page_elems;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < page_elems; e += (int64_t)gridDim.x * blockDim.x)
        to[e] = from[e];
}

// Shared prompt KV (rollout/scheduler.c): a sample forked from a shared prompt gets its own copy of the prompt's
// partly filled last page. A copy, no arithmetic: the sample then reads exactly the bits the prompt's prefill wrote.
extern "C" void kern_cuda_kv_copy_page(float *k_cache, float *v_cache, int n_layers, int64_t layer_elems,
                                       int64_t page_elems, int32_t dst, int32_t src, cudaStream_t stream) {
    KERN_REQUIRE(n_layers > 0 && n_layers <= 65535 && page_elems > 0 && layer_elems >= page_elems && dst >= 0 &&
                     src >= 0 && ((int64_t)dst + 1) * page_elems <= layer_elems &&
                     ((int64_t)src + 1) * page_elems <= layer_elems,
                 "kv_copy_page: bad shape");
    if (dst == src) return;
    int64_t blocks = (page_elems + 255) / 256;
    if (blocks > 1024) blocks = 1024;
    kv_copy_page_kernel<<<dim3((unsigned)blocks, (unsigned)n_layers, 2), 256, 0, stream>>>(k_cache, v_cache, layer_elems,
                                                                                          page_elems, dst, src);
    CUDA_CHECK_LAUNCH();
}
