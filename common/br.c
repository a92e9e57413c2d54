/* bitroll common definitions: thread-local error message, conversions, hashing, file reading. */
#include "br.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

static _Thread_local char g_msg[1024];

br_status br_fail(br_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return st;
}

br_status br_fail_ctx(br_status st, const char *fmt, ...) {
    char prev[sizeof g_msg];
    memcpy(prev, g_msg, sizeof prev);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof g_msg) snprintf(g_msg + n, sizeof g_msg - (size_t)n, ": %s", prev);
    return st;
}

const char *br_last_error(void) { return g_msg; }

const char *br_status_name(br_status st) {
    switch (st) {
    case BR_OK: return "ok";
    case BR_EINVAL: return "invalid input";
    case BR_EFORMAT: return "malformed file";
    case BR_EIO: return "i/o error";
    case BR_ENOMEM: return "out of memory";
    case BR_ERUNTIME: return "runtime failure";
    }
    return "unknown status";
}

int br_exit_code(br_status st) {
    switch (st) {
    case BR_OK: return 0;
    case BR_EINVAL:
    case BR_EFORMAT:
    case BR_EIO: return 2;
    default: return 3;
    }
}

float br_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while ((man & 0x400u) == 0);
            man &= 0x3ffu;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v;
    v.u = bits;
    return v.f;
}

uint16_t br_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}

uint16_t br_f32_to_f16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    uint32_t sign = (v.u >> 16) & 0x8000u;
    uint32_t a = v.u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);     /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);    /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                      /* below 2^-14: subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;             /* below half the smallest subnormal */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                               /* m * 2^(e-150) in units of 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a - 0x38000000u;                               /* rebias exponent 127 -> 15 */
    uint32_t q = r >> 13, rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

uint64_t br_hash64(const void *data, size_t n, uint64_t seed) { return XXH3_64bits_withSeed(data, n, seed); }

br_status br_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    br_status st = BR_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) { st = br_fail(BR_EIO, "%s: cannot seek: %s", path, strerror(errno)); goto cleanup; }
    long size = ftell(f);
    if (size < 0) { st = br_fail(BR_EIO, "%s: cannot tell size: %s", path, strerror(errno)); goto cleanup; }
    rewind(f);
    buf = malloc((size_t)size + 1);
    if (!buf) { st = br_fail(BR_ENOMEM, "%s: cannot allocate %ld bytes", path, size); goto cleanup; }
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        st = br_fail(BR_EIO, "%s: short read", path);
        goto cleanup;
    }
    buf[size] = '\0';
    *out = buf;
    buf = NULL;
    if (len) *len = (size_t)size;
cleanup:
    free(buf);
    fclose(f);
    return st;
}

double br_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
