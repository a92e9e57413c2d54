// MLP activations: SwiGLU (silu(gate) * up) and GPT-2's GELU (tanh approximation), each optionally writing the
// bf16 input of the next GEMM itself.
//
// Purpose/Why. No reduction: each output element is a fixed function of its own inputs, so batch invariance only
// needs the same arithmetic whatever the launch. Every product, sum and quotient is rounded separately (__fmul_rn,
// __fadd_rn, __fdiv_rn) in the CPU reference's order, so no FMA contraction can differ between builds, and exp / tanh
// are bitroll's kern_expf / kern_tanhf (kernels/kern_math.h), the functions the CPU reference calls: bit-identical to
// kernels/cpu in every mode (tested with a zero tolerance). The bf16 copy is __float2bfloat16_rn of the f32 value:
// what a separate cast gives.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/kern_math.h"

__global__ void swiglu_kernel(float *out, __nv_bfloat16 *out_bf, const float *gate, const float *up, int64_t n) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    KERN_WAIT_PREREQUISITES(); // launched as a programmatic dependent: nothing is read or written before this
    GRID_STRIDE(i, n) {
        float g = gate[i];
        float v = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, kern_expf(-g))), up[i]);
        if (out) out[i] = v;
        if (out_bf) out_bf[i] = __float2bfloat16_rn(v);
    }
}

__global__ void gelu_kernel(float *x, __nv_bfloat16 *out_bf, int64_t n) {
    KERN_LAUNCH_DEPENDENTS(); // a following GEMM may start fetching weights (cuda_check.h)
    const float k = 0.7978845608028654f; // sqrt(2/pi)
    GRID_STRIDE(i, n) {
        float v = x[i];
        // CPU: 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v))), evaluated left to right.
        float cube = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v);
        float t = kern_tanhf(__fmul_rn(k, __fadd_rn(v, cube)));
        float r = __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, t));
        x[i] = r;
        if (out_bf) out_bf[i] = __float2bfloat16_rn(r);
    }
}

extern "C" void kern_cuda_swiglu(float *out_f32, uint16_t *out_bf16, const float *gate, const float *up, int64_t n,
                                 cudaStream_t stream) {
    if (n <= 0) return;
    kern_launch_pdl(swiglu_kernel, dim3(grid_for(n, 256)), dim3(256), 0, stream, out_f32, (__nv_bfloat16 *)out_bf16,
                    gate, up, n);
}

extern "C" void kern_cuda_gelu_tanh(float *x, uint16_t *out_bf16, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    gelu_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, (__nv_bfloat16 *)out_bf16, n);
    CUDA_CHECK_LAUNCH();
}
