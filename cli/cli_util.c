/* Small helpers shared by the CLI verbs (see cli_util.h). */
#include "cli/cli_util.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

br_status cli_parse_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0') return br_fail(BR_EINVAL, "%s: '%s' is not an integer", flag, s);
    if (v < lo || v > hi) return br_fail(BR_EINVAL, "%s: %lld is outside [%lld, %lld]", flag, v, (long long)lo, (long long)hi);
    *out = v;
    return BR_OK;
}

br_status cli_parse_float(const char *flag, const char *s, float *out) {
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || isnan(v)) return br_fail(BR_EINVAL, "%s: '%s' is not a finite number", flag, s);
    if (errno == ERANGE && fabsf(v) < FLT_MIN && v != 0.0f) errno = 0; /* subnormal: finite, the range check says more */
    if (errno == ERANGE && fabsf(v) < FLT_MIN)
        return br_fail(BR_EINVAL, "%s: '%s' is too small for fp32 (it would round to 0); expected 0 or a magnitude >= %.9g",
                       flag, s, (double)FLT_MIN);
    if (errno || !isfinite(v))
        return br_fail(BR_EINVAL, "%s: '%s' is too large for fp32 (largest %.9g)", flag, s, (double)FLT_MAX);
    *out = v;
    return BR_OK;
}

br_status cli_parse_u64(const char *flag, const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (s[0] == '-') return br_fail(BR_EINVAL, "%s: '%s' must be a non-negative integer", flag, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0') return br_fail(BR_EINVAL, "%s: '%s' is not a non-negative integer", flag, s);
    *out = v;
    return BR_OK;
}

br_status cli_check_writable(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) != 0)
        return br_fail(BR_EIO, "%s: cannot write there (directory '%s': %s)", path, dir, strerror(errno));
    return BR_OK;
}
