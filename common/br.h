/* bitroll common definitions: status codes with a message, version, small helpers.
 * Every module returns br_status; the message names the file/field/value at fault. */
#ifndef BR_H
#define BR_H

#include <stddef.h>
#include <stdint.h>

#define BR_VERSION "0.1.0"

typedef enum {
    BR_OK = 0,
    BR_EINVAL,  /* bad input: value, usage, prompt, config field */
    BR_EFORMAT, /* malformed file: header, JSON, shapes, offsets */
    BR_EIO,     /* open/read/write/rename failed */
    BR_ENOMEM,  /* allocation failed */
    BR_ERUNTIME /* anything else that went wrong while running */
} br_status;

/* Records the message of the most recent failure on this thread and returns `st`,
 * so error paths read `return br_fail(BR_EINVAL, "%s: field '%s' ...", path, key);`. */
br_status br_fail(br_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends context to the current message: "loading model DIR: <previous message>". */
br_status br_fail_ctx(br_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *br_last_error(void);
const char *br_status_name(br_status st);
/* CLI exit code for a status (DESIGN 5): 2 bad input, 3 runtime failure. */
int br_exit_code(br_status st);

/* bf16 / f16 -> f32, exact. */
static inline float br_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
float br_f16_to_f32(uint16_t h);
/* f32 -> bf16, round to nearest even (NaN kept quiet). */
uint16_t br_f32_to_bf16(float f);

/* f32 -> f16, round to nearest even (overflow -> inf, NaN kept quiet). */
uint16_t br_f32_to_f16(float f);

/* 64-bit digest of a byte range (xxh3-64); used for logits digests and fingerprints. */
uint64_t br_hash64(const void *data, size_t n, uint64_t seed);

/* Reads a whole file; *out is NUL-terminated, caller frees. */
br_status br_read_file(const char *path, char **out, size_t *len);

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): for durations and deadlines, never for results. */
double br_now_s(void);

#endif
