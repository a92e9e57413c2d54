/* The kernel benchmark of `bitroll bench` (bench/kernel_bench.c): copy roofline, invariant GEMM vs cuBLAS,
 * decode-shaped GEMM and paged attention GB/s. */
#ifndef ROLLOUT_KERNEL_BENCH_H
#define ROLLOUT_KERNEL_BENCH_H

/* Prints the tables; writes JSON to json_path when not NULL. Returns 0; 1 when there is no CUDA device (or no
 * CUDA build); 2 when the JSON file cannot be written (checked before anything is measured).
 * BITROLL_KBENCH_SECTIONS=gemm,decode,rowpar,attn picks sections (the copy roofline always runs). */
int rollout_kernel_bench(const char *json_path);

#endif
