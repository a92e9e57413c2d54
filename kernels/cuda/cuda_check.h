// Fatal error checks for the CUDA backend (C++ only: included by kernels/cuda/*.cu, never by C code).
// Device failures are not recoverable (STYLE rule 8): print file:line, what failed and the CUDA error, then call
// the abort hook (abort() unless the MPI layer installs MPI_Abort through kern_cuda_set_abort_hook).
#ifndef KERN_CUDA_CHECK_H
#define KERN_CUDA_CHECK_H

#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#include "kernels/cuda/kern_cuda.h"

extern "C" void kern_cuda_fatal(const char *file, int line, const char *what, const char *msg);

#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t br_err_ = (call);                                                              \
        if (br_err_ != cudaSuccess)                                                                \
            kern_cuda_fatal(__FILE__, __LINE__, #call, cudaGetErrorString(br_err_));               \
    } while (0)

// After a kernel launch: a bad configuration shows up here, an asynchronous fault at the next sync.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// A violated launcher precondition is a programming error: fatal, like a device error.
#define KERN_REQUIRE(cond, msg)                                                                    \
    do {                                                                                           \
        if (!(cond)) kern_cuda_fatal(__FILE__, __LINE__, #cond, msg);                              \
    } while (0)

// Programmatic dependent launch (Hopper+): a kernel that a GEMM follows lets that GEMM's blocks start early (they
// fetch weights, then wait for this kernel's completion with griddepcontrol.wait before touching its results). Only
// permission to launch: nothing of this kernel's work is promised by it.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KERN_LAUNCH_DEPENDENTS() asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory")
#define KERN_WAIT_PREREQUISITES() asm volatile("griddepcontrol.wait;\n" ::: "memory")
#else
#define KERN_LAUNCH_DEPENDENTS() ((void)0)
#define KERN_WAIT_PREREQUISITES() ((void)0)
#endif

// The run-time switches in force (kern_cuda_set_tuning, device.cu): read at each launch.
const kern_cuda_tuning &kern_tuning();

// The current device's SM count, queried once (device.cu): the launchers size their grids by it.
int kern_sm_count();

// Launches `kernel` as a programmatic dependent of the previous kernel on `stream` (when kern_tuning().pdl): its
// blocks may start before that kernel completes. The kernel MUST begin with KERN_WAIT_PREREQUISITES() before any
// global memory access (reads and writes), or do only work that depends on nothing earlier on the stream before it
// (gemm_small's weight prefetch). Every launch is checked.
template <typename... KArgs, typename... Args>
static inline void kern_launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                   Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = kern_tuning().pdl ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

#endif
