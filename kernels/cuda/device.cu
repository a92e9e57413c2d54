// The device side of the CUDA backend that is not a kernel of the model: device discovery and binding, memory,
// streams, events, pinned host memory, CUDA graphs and timers (thin checked wrappers, so that C code -- the engine,
// the GPU tests, the benchmarks -- never needs a CUDA header), the fatal-error path and its abort hook, the
// run-time switches (kern_cuda_set_tuning), and the copy kernel that measures the bandwidth roofline.
//
// Purpose/Why. Nothing here computes a model value: the copy kernel moves bytes unchanged, so no reduction order is
// involved. Device errors are fatal (STYLE rule 8): kern_cuda_fatal prints file:line and the CUDA error, calls the
// hook the driver installed (which aborts the whole MPI job) and then abort(). GPU tests report "skipped" when no
// device is present: kern_cuda_device_count never fails.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kern_cuda.h"

static void (*g_abort_hook)(void) = nullptr;

extern "C" void kern_cuda_set_abort_hook(void (*hook)(void)) { g_abort_hook = hook; }

extern "C" void kern_cuda_fatal(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "%s:%d: %s failed: %s\n", file, line, what, msg);
    fflush(stderr);
    if (g_abort_hook) g_abort_hook();
    abort();
}

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

extern "C" void kern_cuda_set_device(int dev) { CUDA_CHECK(cudaSetDevice(dev)); }

extern "C" void kern_cuda_device_props(int *n_sm, int *l2_bytes) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(n_sm, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(l2_bytes, cudaDevAttrL2CacheSize, dev));
}

extern "C" int kern_cuda_device_sm_clock_khz(void) {
    int dev = 0, khz = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev));
    return khz;
}

// Free and total bytes of the current device (cudaMemGetInfo): the memory plan's input (rollout/scheduler.h). Declared
// in the callers (rollout/engine_cuda.c, cli/cli_bench.c) until kern_cuda.h lists it.
extern "C" void kern_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

extern "C" void *kern_cuda_malloc(size_t bytes) {
    void *p = nullptr;
    if (bytes == 0) return nullptr;
    CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
}

extern "C" void kern_cuda_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

extern "C" void kern_cuda_upload(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void kern_cuda_download(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void kern_cuda_memset(void *dst, int byte, size_t bytes) { CUDA_CHECK(cudaMemset(dst, byte, bytes)); }
extern "C" void kern_cuda_memset_async(void *dst, int byte, size_t bytes, cudaStream_t s) {
    CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, s));
}

extern "C" void kern_cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

struct kern_cuda_timer {
    cudaEvent_t start, stop;
};

extern "C" kern_cuda_timer *kern_cuda_timer_create(void) {
    kern_cuda_timer *t = (kern_cuda_timer *)malloc(sizeof(*t));
    KERN_REQUIRE(t != nullptr, "out of host memory");
    CUDA_CHECK(cudaEventCreate(&t->start));
    CUDA_CHECK(cudaEventCreate(&t->stop));
    return t;
}

extern "C" void kern_cuda_timer_free(kern_cuda_timer *t) {
    if (!t) return;
    CUDA_CHECK(cudaEventDestroy(t->start));
    CUDA_CHECK(cudaEventDestroy(t->stop));
    free(t);
}

extern "C" void kern_cuda_timer_start(kern_cuda_timer *t, cudaStream_t s) { CUDA_CHECK(cudaEventRecord(t->start, s)); }

extern "C" float kern_cuda_timer_stop_ms(kern_cuda_timer *t, cudaStream_t s) {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventRecord(t->stop, s));
    CUDA_CHECK(cudaEventSynchronize(t->stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms, t->start, t->stop));
    return ms;
}

// ---- streams, events, asynchronous copies, pinned memory, graphs (thin checked wrappers for the C engine)
extern "C" cudaStream_t kern_cuda_stream_create(void) {
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreate(&s));
    return s;
}
extern "C" void kern_cuda_stream_free(cudaStream_t s) {
    if (s) CUDA_CHECK(cudaStreamDestroy(s));
}
extern "C" void kern_cuda_stream_sync(cudaStream_t s) { CUDA_CHECK(cudaStreamSynchronize(s)); }
extern "C" cudaEvent_t kern_cuda_event_create(void) {
    cudaEvent_t ev;
    CUDA_CHECK(cudaEventCreate(&ev));
    return ev;
}
extern "C" void kern_cuda_event_free(cudaEvent_t ev) {
    if (ev) CUDA_CHECK(cudaEventDestroy(ev));
}
extern "C" void kern_cuda_event_record(cudaEvent_t ev, cudaStream_t s) { CUDA_CHECK(cudaEventRecord(ev, s)); }
extern "C" float kern_cuda_event_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return ms;
}
extern "C" void kern_cuda_upload_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
}
extern "C" void kern_cuda_download_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
}
extern "C" void *kern_cuda_host_alloc(size_t bytes) {
    void *p = nullptr;
    CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 1));
    return p;
}
extern "C" void kern_cuda_host_free(void *p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
}
struct kern_cuda_graph {
    cudaGraphExec_t exec;
};
extern "C" void kern_cuda_capture_begin(cudaStream_t s) {
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
}
extern "C" kern_cuda_graph *kern_cuda_capture_end(cudaStream_t s) {
    cudaGraph_t g;
    CUDA_CHECK(cudaStreamEndCapture(s, &g));
    kern_cuda_graph *out = new kern_cuda_graph;
    CUDA_CHECK(cudaGraphInstantiate(&out->exec, g, 0));
    CUDA_CHECK(cudaGraphDestroy(g));
    return out;
}
extern "C" void kern_cuda_graph_launch(kern_cuda_graph *g, cudaStream_t s) { CUDA_CHECK(cudaGraphLaunch(g->exec, s)); }
extern "C" void kern_cuda_graph_free(kern_cuda_graph *g) {
    if (!g) return;
    CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    delete g;
}

// Grid-stride copy, 16 bytes per thread per step: the bandwidth roofline the benchmarks compare against.
__global__ void copy_f32_kernel(float4 *__restrict__ dst, const float4 *__restrict__ src, size_t n4) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = src[i];
}

__global__ void copy_f32_tail(float *dst, const float *src, size_t from, size_t n) {
    size_t i = from + threadIdx.x;
    if (i < n) dst[i] = src[i];
}

extern "C" void kern_cuda_copy_f32(float *dst, const float *src, size_t n, cudaStream_t stream) {
    KERN_REQUIRE(((uintptr_t)dst | (uintptr_t)src) % 16 == 0, "copy needs 16-byte aligned buffers");
    int n_sm = 0, l2 = 0;
    kern_cuda_device_props(&n_sm, &l2);
    size_t n4 = n / 4;
    if (n4) {
        copy_f32_kernel<<<n_sm * 8, 512, 0, stream>>>((float4 *)dst, (const float4 *)src, n4);
        CUDA_CHECK_LAUNCH();
    }
    if (n % 4) {
        copy_f32_tail<<<1, 4, 0, stream>>>(dst, src, n4 * 4, n);
        CUDA_CHECK_LAUNCH();
    }
}


// ---- run-time switches (kern_cuda.h): plain host state, read by the launchers at each launch.
static kern_cuda_tuning g_tuning = {1, 1, 1, 0, 1, 1, 1};

const kern_cuda_tuning &kern_tuning() { return g_tuning; }

int kern_sm_count() {
    static int n_sm = 0;
    if (!n_sm) {
        int l2 = 0;
        kern_cuda_device_props(&n_sm, &l2);
    }
    return n_sm;
}

extern "C" kern_cuda_tuning kern_cuda_set_tuning(const kern_cuda_tuning *t) {
    const kern_cuda_tuning prev = g_tuning;
    if (!t) return prev;
    KERN_REQUIRE((t->pdl == 0 || t->pdl == 1) && (t->gemm_short == 0 || t->gemm_short == 1) &&
                     (t->gemm_rowpar_fused == 0 || t->gemm_rowpar_fused == 1) &&
                     (t->gemm_wgmma == 0 || t->gemm_wgmma == 1) && (t->gemm_small_tma == 0 || t->gemm_small_tma == 1) &&
                     (t->gemm_small_rx == 0 || t->gemm_small_rx == 1),
                 "kern_cuda_set_tuning: pdl, gemm_short, gemm_rowpar_fused, gemm_wgmma, gemm_small_tma and gemm_small_rx "
                 "are 0 or 1");
    KERN_REQUIRE(t->attn_decode >= 0 && t->attn_decode <= 2,
                 "kern_cuda_set_tuning: attn_decode is 0 (per call), 1 (walk) or 2 (parallel)");
    g_tuning = *t;
    return prev;
}
