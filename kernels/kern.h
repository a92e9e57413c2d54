/* Kernel-facing types shared by the CPU reference kernels and the CUDA backend.
 * A weight matrix is a strided view of mmapped checkpoint bytes: no copy, any of the three dtypes. */
#ifndef KERN_H
#define KERN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KERN_F32 = 0, KERN_BF16 = 1, KERN_F16 = 2 } kern_dtype;

/* Weight matrix W of logical shape (N, K): element (n, k) lives at data[n*sn + k*sk] (in elements of dtype).
 * HF nn.Linear (out, in) is sn=K, sk=1; GPT-2 Conv1D (in, out) is sn=1, sk=N. */
typedef struct {
    const void *data;
    kern_dtype dtype;
    int64_t sn, sk;
    int64_t n, k; /* logical shape, for checks */
    uint32_t rand_id; /* random-weights models (data == NULL): the tensor's id in the counter-based generator */
} kern_wt;

#ifdef __CUDACC__
#define KERN_HOSTDEV __host__ __device__
#else
#define KERN_HOSTDEV
#endif

/* One term of the logits digest (docs/FORMAT.md): fmix64((index << 32) | bits). The digest of a row is the
 * sum of its terms mod 2^64 -- exact and order-free, so the CPU loop and a GPU reduction agree. */
KERN_HOSTDEV static inline uint64_t kern_digest_term(uint32_t index, uint32_t bits) {
    uint64_t z = ((uint64_t)index << 32) | bits;
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z;
}

/* Kernel modes (DESIGN 2), parsed once from --kernels / the API: invariant (fixed tiles, bf16 tensor cores on
 * CUDA), fp32 (fp32 arithmetic in the CPU reference's order), standard (library heuristics, CUDA only: the fast,
 * non-invariant baseline). */
typedef enum { KERN_MODE_INVARIANT = 0, KERN_MODE_FP32 = 1, KERN_MODE_STANDARD = 2 } kern_mode;
const char *kern_mode_name(kern_mode m);
/* "invariant" | "fp32" | "standard" -> *out; returns 0, or -1 for any other string (*out untouched). */
int kern_mode_parse(const char *s, kern_mode *out);

static inline int kern_dtype_size(kern_dtype dt) { return dt == KERN_F32 ? 4 : 2; }
const char *kern_dtype_name(kern_dtype dt);

#ifdef __cplusplus
}
#endif

#endif
