/* exp, log and tanh of fp32 values, defined by bitroll so that the CPU reference and the CUDA fp32 mode compute the
 * same bits (issue 17: a rollout made on a GPU re-scores bit for bit on a laptop).
 *
 * Why not libm / CUDA's expf: they are not correctly rounded, and each is free to round differently -- glibc even
 * picks an FMA or a non-FMA variant at run time from the CPU it finds (x86-64 ifuncs), and CUDA's expf has a 2 ulp
 * bound. Here every function is a fixed sequence of IEEE double operations (+, -, *, / rounded to nearest even, never
 * contracted into an FMA: __dadd_rn & co. on the device, -ffp-contract=off on the host, see CMakeLists.txt), then one
 * rounding to float. The same inputs therefore give the same bits on any IEEE machine that evaluates double in double
 * (x86-64 SSE2, aarch64, CUDA; not x87 extended precision). The double result is within ~1e-16 relative of the exact
 * value, so the float result is the correctly rounded one except for inputs within ~2^-28 ulp of a rounding
 * boundary.
 *
 *   kern_exp_core(x) = 2^k * P13(r), k = rint(x / ln2), r = (x - k ln2_hi) - k ln2_lo (|r| <= 0.347), P13 the
 *                      degree-13 Taylor polynomial of e^r in Horner form (truncation < 5e-18);
 *   kern_expf(x)     = (float) kern_exp_core(x); +inf above 88.8, +0 below -104 (beyond fp32's range), NaN -> NaN;
 *   kern_logf(x)     = (float)(e ln2_hi + (e ln2_lo + 2 atanh(s))), x = 2^e m with m in (sqrt(1/2), sqrt(2)],
 *                      s = (m - 1) / (m + 1), atanh by its series to s^21 (truncation < 3e-17); x < 0 or NaN -> NaN,
 *                      0 -> -inf, +inf -> +inf;
 *   kern_tanhf(x)    = sign(x) (e - 1) / (e + 1), e = kern_exp_core(2 |x|); |x| < 2^-13: x - x^3 / 3; |x| >= 10:
 *                      sign(x) 1 (tanh(10) rounds to 1 in fp32).
 * Tested against the correctly rounded values (tests/unit/test_kern_math.c). */
#ifndef KERN_MATH_H
#define KERN_MATH_H

#include <stdint.h>
#ifndef __CUDACC__
#include <string.h>
#endif

#ifdef __CUDACC__
#define KM_FN __host__ __device__ static inline
#else
#define KM_FN static inline
#endif

#ifdef __CUDA_ARCH__
#define KM_ADD(a, b) __dadd_rn((a), (b))
#define KM_SUB(a, b) __dsub_rn((a), (b))
#define KM_MUL(a, b) __dmul_rn((a), (b))
#define KM_DIV(a, b) __ddiv_rn((a), (b))
#else
#define KM_ADD(a, b) ((a) + (b))
#define KM_SUB(a, b) ((a) - (b))
#define KM_MUL(a, b) ((a) * (b))
#define KM_DIV(a, b) ((a) / (b))
#endif

KM_FN double km_from_bits64(uint64_t u) {
#ifdef __CUDA_ARCH__
    return __longlong_as_double((long long)u);
#else
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
#endif
}

KM_FN uint32_t km_bits32(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

KM_FN float km_from_bits32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

/* ln 2 split so that k * KM_LN2_HI is exact for |k| < 2^20 (KM_LN2_HI has 32 significant bits): fdlibm's split. */
#define KM_LN2_HI 0x1.62e42feep-1
#define KM_LN2_LO 0x1.a39ef35793c76p-33
#define KM_INV_LN2 0x1.71547652b82fep0
#define KM_SHIFT 0x1.8p52 /* x + 1.5 * 2^52 - 1.5 * 2^52 = rint(x) for |x| < 2^51 */

/* e^x in double for |x| <= 700 (the callers clamp). */
KM_FN double kern_exp_core(double x) {
    const double kd = KM_SUB(KM_ADD(KM_MUL(x, KM_INV_LN2), KM_SHIFT), KM_SHIFT);
    const double r = KM_SUB(KM_SUB(x, KM_MUL(kd, KM_LN2_HI)), KM_MUL(kd, KM_LN2_LO));
    /* 1/n!, n = 13 .. 1, Horner from the top */
    double p = 0x1.6124613a86d09p-33;                /* 1/13! */
    p = KM_ADD(KM_MUL(p, r), 0x1.1eed8eff8d898p-29); /* 1/12! */
    p = KM_ADD(KM_MUL(p, r), 0x1.ae64567f544e4p-26); /* 1/11! */
    p = KM_ADD(KM_MUL(p, r), 0x1.27e4fb7789f5cp-22); /* 1/10! */
    p = KM_ADD(KM_MUL(p, r), 0x1.71de3a556c734p-19); /* 1/9! */
    p = KM_ADD(KM_MUL(p, r), 0x1.a01a01a01a01ap-16); /* 1/8! */
    p = KM_ADD(KM_MUL(p, r), 0x1.a01a01a01a01ap-13); /* 1/7! */
    p = KM_ADD(KM_MUL(p, r), 0x1.6c16c16c16c17p-10); /* 1/6! */
    p = KM_ADD(KM_MUL(p, r), 0x1.1111111111111p-7);  /* 1/5! */
    p = KM_ADD(KM_MUL(p, r), 0x1.5555555555555p-5);  /* 1/4! */
    p = KM_ADD(KM_MUL(p, r), 0x1.5555555555555p-3);  /* 1/3! */
    p = KM_ADD(KM_MUL(p, r), 0.5);
    p = KM_ADD(KM_MUL(p, r), 1.0);
    p = KM_ADD(KM_MUL(p, r), 1.0);
    const int k = (int)kd; /* exact: kd is an integer of magnitude <= 1010 */
    return KM_MUL(p, km_from_bits64((uint64_t)(int64_t)(k + 1023) << 52));
}

KM_FN float kern_expf(float x) {
    if (x != x) return x;
    if (x > 88.8f) return km_from_bits32(0x7f800000u);
    if (x < -104.0f) return 0.0f;
    return (float)kern_exp_core((double)x);
}

KM_FN float kern_logf(float x) {
    uint32_t u = km_bits32(x);
    if (x != x || (u >> 31 && (u & 0x7fffffffu))) return km_from_bits32(0x7fc00000u); /* NaN, x < 0 */
    if ((u & 0x7fffffffu) == 0) return km_from_bits32(0xff800000u);                    /* +-0 -> -inf */
    if (u == 0x7f800000u) return x;                                                     /* +inf */
    int e = 0;
    if ((u >> 23) == 0) { /* subnormal: scale by 2^23 (exact) */
        u = km_bits32(x * 8388608.0f);
        e = -23;
    }
    e += (int)(u >> 23) - 127;
    double m = (double)km_from_bits32((u & 0x7fffffu) | 0x3f800000u); /* [1, 2), exact */
    if (m > 0x1.6a09e667f3bcdp0) {                                   /* > sqrt(2): halve (exact) */
        m = KM_MUL(m, 0.5);
        e += 1;
    }
    const double f = KM_SUB(m, 1.0); /* exact (Sterbenz) */
    const double s = KM_DIV(f, KM_ADD(f, 2.0));
    const double z = KM_MUL(s, s);
    /* atanh(s) / s - 1 = z (1/3 + z/5 + ... + z^9/21), Horner from the top */
    double q = 0x1.8618618618618p-5; /* 1/21 */
    q = KM_ADD(KM_MUL(q, z), 0x1.af286bca1af28p-5); /* 1/19 */
    q = KM_ADD(KM_MUL(q, z), 0x1.e1e1e1e1e1e1ep-5); /* 1/17 */
    q = KM_ADD(KM_MUL(q, z), 0x1.1111111111111p-4); /* 1/15 */
    q = KM_ADD(KM_MUL(q, z), 0x1.3b13b13b13b14p-4); /* 1/13 */
    q = KM_ADD(KM_MUL(q, z), 0x1.745d1745d1746p-4); /* 1/11 */
    q = KM_ADD(KM_MUL(q, z), 0x1.c71c71c71c71cp-4); /* 1/9 */
    q = KM_ADD(KM_MUL(q, z), 0x1.2492492492492p-3); /* 1/7 */
    q = KM_ADD(KM_MUL(q, z), 0x1.999999999999ap-3); /* 1/5 */
    q = KM_ADD(KM_MUL(q, z), 0x1.5555555555555p-2); /* 1/3 */
    const double s2 = KM_MUL(s, 2.0);
    const double lm = KM_ADD(s2, KM_MUL(KM_MUL(s2, z), q)); /* log(m) */
    const double ed = (double)e;
    return (float)KM_ADD(KM_MUL(ed, KM_LN2_HI), KM_ADD(KM_MUL(ed, KM_LN2_LO), lm));
}

KM_FN float kern_tanhf(float x) {
    if (x != x) return x;
    const double d = (double)x, a = d < 0.0 ? -d : d;
    double t;
    if (a >= 10.0) {
        t = 1.0;
    } else if (a < 0x1p-13) {
        t = KM_SUB(a, KM_DIV(KM_MUL(KM_MUL(a, a), a), 3.0));
    } else {
        const double e = kern_exp_core(KM_MUL(a, 2.0));
        t = KM_DIV(KM_SUB(e, 1.0), KM_ADD(e, 1.0));
    }
    return (float)(d < 0.0 ? -t : t);
}

#endif
