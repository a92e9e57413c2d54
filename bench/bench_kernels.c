/* Benchmark of the CUDA kernels against their rooflines (the kernel part of `bitroll bench`,
 * bench/kernel_bench.c), as a stand-alone program.
 * Usage: bench_kernels [out.json [sections]]   (default: $OUT/bench_kernels.json when OUT is set, else no JSON;
 * sections: a comma-separated subset of gemm,decode,rowpar,attn, default all). */
#include <stdio.h>
#include <stdlib.h>

#include "bench/kernel_bench.h"

int main(int argc, char **argv) {
    char path[1024] = "";
    if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
    else if (getenv("OUT")) snprintf(path, sizeof path, "%s/bench_kernels.json", getenv("OUT"));
    bench_kernel_table(path[0] ? path : NULL, argc > 2 ? argv[2] : NULL);
    return 0;
}
