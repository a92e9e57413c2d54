/* The device half of comm_nccl_chunk_sum (comm/comm_nccl.h): the fixed pairwise tree over C chunk partials.
 * Plain C interface (no CUDA header). */
#ifndef KERN_CUDA_COMM_SUM_H
#define KERN_CUDA_COMM_SUM_H

#include <stddef.h>

#include "kernels/cuda/kern_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (n) f32 = sum of the chunks of all (C, n) f32 (device, chunk c at all + c * n), for every element i:
 * sum(lo, hi) = sum(lo, mid) + sum(mid, hi), mid = lo + (hi - lo) / 2, sum(c, c + 1) = chunk c -- exactly the
 * adds of kern_cpu_chunk_tree, each one __fadd_rn (IEEE fp32, round to nearest, never contracted): bitwise equal
 * to the CPU. Asynchronous on `stream`. C >= 1; out must not overlap all. */
void kern_cuda_chunk_tree(float *out, const float *all, int C, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
