/* The kernel benchmark of `bitroll bench` (bench/kernel_bench.c): copy roofline, invariant GEMM vs cuBLAS,
 * decode-shaped GEMM and paged attention GB/s. */
#ifndef BENCH_KERNEL_BENCH_H
#define BENCH_KERNEL_BENCH_H

/* Prints the tables; writes JSON to json_path when not NULL. sections: a comma-separated subset of
 * "gemm,decode,rowpar,attn" (NULL or "": all of them; the copy roofline always runs). The kernels run with the
 * switches in force (kern_cuda_set_tuning). Returns 0; 1 when there is no CUDA device (or no CUDA build); 2 when the
 * JSON file cannot be written (checked before anything is measured). */
int bench_kernel_table(const char *json_path, const char *sections);

#endif
