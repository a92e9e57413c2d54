/* Benchmark of the CUDA kernels against their rooflines (the kernel part of `bitroll bench`,
 * bench/kernel_bench.c), as a stand-alone program.
 * Usage: bench_kernels [out.json [sections]]   (default: $OUT/bench_kernels.json when OUT is set, else no JSON;
 * sections: a comma-separated subset of gemm,decode,rowpar,attn, default all; splitsweep: the ordered split at every
 * split count, and f32: the fp32 mode's GEMM against the fp32 issue peak, only when named). The BITROLL_* switches
 * of the kernels (BITROLL_PDL, BITROLL_GEMM_SHORT, BITROLL_GEMM_ROWPAR_FUSED, BITROLL_ATTN_DECODE; common/tuning.h)
 * are read once here and handed to the kernels, so that variants can be compared. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/kernel_bench.h"
#include "common/tuning.h"
#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"
#endif

int main(int argc, char **argv) {
    char path[1024] = "";
    if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
    else if (getenv("OUT")) snprintf(path, sizeof path, "%s/bench_kernels.json", getenv("OUT"));
    br_tuning t;
    if (br_tuning_from_env(&t) != BR_OK) {
        fprintf(stderr, "bench_kernels: %s\n", br_last_error());
        return 2;
    }
    bench_kernel_table(path[0] ? path : NULL, argc > 2 ? argv[2] : NULL, &t);
    return 0;
}
