/* Counter-based randomness (STYLE 7): Philox4x32-10 and the keyed draws the sampler uses.
 * Every draw is a pure function of (seed, sample id, position, index): no global state, no call order. */
#ifndef BR_PHILOX_H
#define BR_PHILOX_H

#include <stdint.h>

/* The core is inline and host+device, so the CUDA sampler draws exactly the same numbers. */
#ifdef __CUDACC__
#define BR_HOSTDEV __host__ __device__
#else
#define BR_HOSTDEV
#endif

#define BR_PHILOX_M0 0xD2511F53u
#define BR_PHILOX_M1 0xCD9E8D57u
#define BR_PHILOX_W0 0x9E3779B9u
#define BR_PHILOX_W1 0xBB67AE85u

BR_HOSTDEV static inline void br_philox4x32_inline(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* the key schedule bumps before every round but the first (Random123 philox4x32_R) */
            k0 += BR_PHILOX_W0;
            k1 += BR_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)BR_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)BR_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Keyed draw block: key = (seed lo, seed hi), counter = (sample_id lo, sample_id hi, position, block). */
BR_HOSTDEV static inline void br_rand_u32x4_inline(uint64_t seed, uint64_t sample_id, uint32_t position,
                                                   uint32_t block, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)sample_id, (uint32_t)(sample_id >> 32), position, block};
    br_philox4x32_inline(ctr, key, out);
}

/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11), bit-identical to Random123 philox4x32(ctr, key)
 * and curand's Philox4_32_10: multipliers 0xD2511F53, 0xCD9E8D57, Weyl key increments 0x9E3779B9,
 * 0xBB67AE85, 10 rounds. Checked against the Random123 known-answer vectors (tests/unit/test_sampler.c). */
void br_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A uniform float in the OPEN interval (0, 1) from 32 random bits: u = ((bits >> 9) + 0.5f) * 2^-23.
 * The top 23 bits are used (not 24) so that every step is exact in fp32: k + 0.5 with k < 2^23 is
 * representable, and the multiply by a power of two is exact. The values are the 2^23 midpoints
 * (2i+1) * 2^-24, i = 0 .. 2^23-1: the smallest is 2^-24, the largest 1 - 2^-24, so logf(u) and
 * logf(-logf(u)) are always finite. (With 24 bits, ((bits >> 8) + 0.5f) rounds for bits >> 8 >= 2^23
 * and 0xffffffff maps to exactly 1.0f, whose Gumbel noise is -logf(0) = +inf.) */
BR_HOSTDEV static inline float br_uniform01(uint32_t bits) { return ((float)(bits >> 9) + 0.5f) * 0x1p-23f; }

/* Four keyed draws at once: key = (seed lo, seed hi), counter = (sample_id lo, sample_id hi, position, block).
 * out[i] is the draw with index 4*block + i. */
void br_rand_u32x4(uint64_t seed, uint64_t sample_id, uint32_t position, uint32_t block, uint32_t out[4]);

/* One keyed draw: word index % 4 of philox4x32(counter = (sample_id lo, sample_id hi, position, index / 4),
 * key = (seed lo, seed hi)). The sampler uses index = token id, so a token's noise depends on
 * (seed, sample id, position, token id) only -- not on the batch, the rank or the call order. */
uint32_t br_rand_u32(uint64_t seed, uint64_t sample_id, uint32_t position, uint32_t index);

#endif
