/* Kernel-facing helpers shared by the CPU and CUDA backends. */
#include "kernels/kern.h"

const char *kern_dtype_name(kern_dtype dt) {
    switch (dt) {
    case KERN_F32: return "F32";
    case KERN_BF16: return "BF16";
    case KERN_F16: return "F16";
    }
    return "?";
}
