// K/V cache write: the new tokens' K and V rows (M, n_kv, hd) f32 go to their paged slots (pt_off[m], pos[m]):
// kern_cuda_kv_write (f32 cache), kern_cuda_kv_write_bf16 (bf16 cache). And the page copy of shared prompt KV:
// kern_cuda_kv_copy_page.
//
// Purpose/Why. No arithmetic: the f32 cache holds exactly the fp32 values the projections produced, the bf16 cache
// their round-to-nearest-even bf16 (kv_elem.cuh), one rounding per value whoever writes it. It runs
// before attention reads the cache (DESIGN 2): prefill rows then read their own keys from the cache, exactly as a
// later decode step does, so prefill == decode bit for bit. The engine's decode step writes K/V inside its attention
// launch instead (kern_cuda_attn_decode_fused, attention.cu): the same values to the same slots.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kv_elem.cuh"

// K/V rows of the new tokens -> their cache slots. k_new, v_new (M, n_kv, hd).
template <typename T>
__global__ void kv_write_kernel(T *kc, T *vc, const float *k_new, const float *v_new, const int32_t *pages,
                                const int32_t *pt_off, const int32_t *pos, int page_size, int row) {
    const int m = blockIdx.x;
    const int t = pos[m];
    const int64_t slot = (int64_t)pages[pt_off[m] + t / page_size] * page_size + t % page_size;
    for (int e = threadIdx.x; e < row; e += blockDim.x) {
        kv_st(kc + slot * row + e, k_new[(int64_t)m * row + e]);
        kv_st(vc + slot * row + e, v_new[(int64_t)m * row + e]);
    }
}

template <typename T>
static void kv_write(T *k_cache, T *v_cache, const float *k_new, const float *v_new, const int32_t *pages,
                     const int32_t *pt_off, const int32_t *pos, int M, int page_size, int n_kv, int hd,
                     cudaStream_t stream) {
    KERN_REQUIRE(M >= 0 && page_size > 0 && n_kv > 0 && hd > 0, "kv_write: bad shape");
    if (M == 0) return;
    kv_write_kernel<T><<<M, 128, 0, stream>>>(k_cache, v_cache, k_new, v_new, pages, pt_off, pos, page_size, n_kv * hd);
    CUDA_CHECK_LAUNCH();
}

extern "C" void kern_cuda_kv_write(float *k_cache, float *v_cache, const float *k_new, const float *v_new,
                                   const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                   int page_size, int n_kv, int hd, cudaStream_t stream) {
    kv_write(k_cache, v_cache, k_new, v_new, pages, pt_off, pos, M, page_size, n_kv, hd, stream);
}

extern "C" void kern_cuda_kv_write_bf16(uint16_t *k_cache, uint16_t *v_cache, const float *k_new, const float *v_new,
                                        const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M,
                                        int page_size, int n_kv, int hd, cudaStream_t stream) {
    kv_write(k_cache, v_cache, k_new, v_new, pages, pt_off, pos, M, page_size, n_kv, hd, stream);
}

// One page (page_elems 2-byte units) of K and of V, every layer: blockIdx.y = layer, blockIdx.z = 0 (K) / 1 (V).
__global__ void kv_copy_page_kernel(uint16_t *kc, uint16_t *vc, int64_t layer_elems, int64_t page_elems, int32_t dst,
                                    int32_t src) {
    uint16_t *c = blockIdx.z ? vc : kc;
    uint16_t *to = c + blockIdx.y * layer_elems + (int64_t)dst * page_elems;
    const uint16_t *from = c + blockIdx.y * layer_elems + (int64_t)src * page_elems;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < page_elems; e += (int64_t)gridDim.x * blockDim.x)
        to[e] = from[e];
}

// Shared prompt KV (rollout/scheduler.c): a sample forked from a shared prompt gets its own copy of the prompt's
// partly filled last page. A copy, no arithmetic: the sample then reads exactly the bits the prompt's prefill wrote.
extern "C" void kern_cuda_kv_copy_page(void *k_cache, void *v_cache, int n_layers, int64_t layer_bytes,
                                       int64_t page_bytes, int32_t dst, int32_t src, cudaStream_t stream) {
    KERN_REQUIRE(layer_bytes % 2 == 0 && page_bytes % 2 == 0, "kv_copy_page: sizes must be whole 2-byte units");
    const int64_t layer_elems = layer_bytes / 2, page_elems = page_bytes / 2;
    KERN_REQUIRE(n_layers > 0 && n_layers <= 65535 && page_elems > 0 && layer_elems >= page_elems && dst >= 0 &&
                     src >= 0 && ((int64_t)dst + 1) * page_elems <= layer_elems &&
                     ((int64_t)src + 1) * page_elems <= layer_elems,
                 "kv_copy_page: bad shape");
    if (dst == src) return;
    int64_t blocks = (page_elems + 255) / 256;
    if (blocks > 1024) blocks = 1024;
    kv_copy_page_kernel<<<dim3((unsigned)blocks, (unsigned)n_layers, 2), 256, 0, stream>>>((uint16_t *)k_cache, (uint16_t *)v_cache, layer_elems,
                                                                                          page_elems, dst, src);
    CUDA_CHECK_LAUNCH();
}
