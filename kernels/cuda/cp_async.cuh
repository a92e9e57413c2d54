// 16-byte asynchronous global -> shared copies (sm_80+), shared by the GEMM and attention kernels.
#ifndef KERN_CUDA_CP_ASYNC_CUH
#define KERN_CUDA_CP_ASYNC_CUH

#include <stdint.h>

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// Copies 16 bytes from src to shared dst, or writes 16 zero bytes when !valid (src is then not read). L2 only (.cg).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are pending.
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

#endif
