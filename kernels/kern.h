/* Kernel-facing types shared by the CPU reference kernels and the CUDA backend.
 * A weight matrix is a strided view of mmapped checkpoint bytes: no copy, any of the three dtypes. */
#ifndef KERN_H
#define KERN_H

#include <stdint.h>

typedef enum { KERN_F32 = 0, KERN_BF16 = 1, KERN_F16 = 2 } kern_dtype;

/* Weight matrix W of logical shape (N, K): element (n, k) lives at data[n*sn + k*sk] (in elements of dtype).
 * HF nn.Linear (out, in) is sn=K, sk=1; GPT-2 Conv1D (in, out) is sn=1, sk=N. */
typedef struct {
    const void *data;
    kern_dtype dtype;
    int64_t sn, sk;
    int64_t n, k; /* logical shape, for checks */
} kern_wt;

static inline int kern_dtype_size(kern_dtype dt) { return dt == KERN_F32 ? 4 : 2; }
const char *kern_dtype_name(kern_dtype dt);

#endif
