/* Philox4x32-10 and keyed draws: the engine's only source of randomness (see philox.h). */
#include "philox.h"

void br_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) { br_philox4x32_inline(ctr, key, out); }

void br_rand_u32x4(uint64_t seed, uint64_t sample_id, uint32_t position, uint32_t block, uint32_t out[4]) {
    br_rand_u32x4_inline(seed, sample_id, position, block, out);
}

uint32_t br_rand_u32(uint64_t seed, uint64_t sample_id, uint32_t position, uint32_t index) {
    uint32_t out[4];
    br_rand_u32x4(seed, sample_id, position, index / 4u, out);
    return out[index % 4u];
}
