/* The kernel benchmark of `bitroll bench` (bench/kernel_bench.c): copy roofline, invariant GEMM vs cuBLAS,
 * decode-shaped GEMM and paged attention GB/s. */
#ifndef BENCH_KERNEL_BENCH_H
#define BENCH_KERNEL_BENCH_H

#include "common/tuning.h"

/* Prints the tables; writes JSON to json_path when not NULL. sections: a comma-separated subset of
 * "gemm,decode,rowpar,attn" (NULL or "": all of them; the copy roofline always runs). The kernels run with the
 * switches of t (pdl, gemm_short, gemm_rowpar_fused, attn_decode; NULL: the defaults). Returns 0; 1 when there is no
 * CUDA device (or no CUDA build); 2 when the JSON file cannot be written (checked before anything is measured). */
int bench_kernel_table(const char *json_path, const char *sections, const br_tuning *t);

#endif
