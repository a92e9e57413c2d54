/* Kernel-facing helpers shared by the CPU and CUDA backends. */
#include "kernels/kern.h"

#include <string.h>

const char *kern_dtype_name(kern_dtype dt) {
    switch (dt) {
    case KERN_F32: return "F32";
    case KERN_BF16: return "BF16";
    case KERN_F16: return "F16";
    }
    return "?";
}

const char *kern_mode_name(kern_mode m) {
    switch (m) {
    case KERN_MODE_INVARIANT: return "invariant";
    case KERN_MODE_FP32: return "fp32";
    case KERN_MODE_STANDARD: return "standard";
    }
    return "?";
}

int kern_mode_parse(const char *s, kern_mode *out) {
    static const kern_mode all[] = {KERN_MODE_INVARIANT, KERN_MODE_FP32, KERN_MODE_STANDARD};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, kern_mode_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return -1;
}
