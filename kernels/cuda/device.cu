// Device discovery for the CUDA backend: lets C code and GPU tests ask whether a GPU is present
// (GPU tests report "skipped" when it is not).
#include <cstdio>
#include <cuda_runtime.h>

#include "kernels/cuda/kern_cuda.h"

extern "C" int kern_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

extern "C" void kern_cuda_device_name(int dev, char *buf, int len) {
    if (len <= 0) return;
    buf[0] = '\0';
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    snprintf(buf, (size_t)len, "%s", p.name);
}
