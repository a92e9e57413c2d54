/* Benchmark of the CUDA kernels against their rooflines (the kernel part of `bitroll bench`,
 * bench/kernel_bench.c), as a stand-alone program.
 * Usage: bench_kernels [out.json]   (default: $OUT/bench_kernels.json when OUT is set, else no JSON). */
#include <stdio.h>
#include <stdlib.h>

#include "bench/kernel_bench.h"

int main(int argc, char **argv) {
    char path[1024] = "";
    if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
    else if (getenv("OUT")) snprintf(path, sizeof path, "%s/bench_kernels.json", getenv("OUT"));
    rollout_kernel_bench(path[0] ? path : NULL);
    return 0;
}
