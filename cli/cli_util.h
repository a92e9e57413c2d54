/* Small helpers shared by the CLI verbs: strict number parsing (reject, don't clamp), progress lines. */
#ifndef ROLLOUT_CLI_UTIL_H
#define ROLLOUT_CLI_UTIL_H

#include <stdint.h>

#include "common/br.h"

/* Parse the whole string or fail with "--flag: 'value' is not an integer/number"; range checks are the
 * caller's (so messages can say what was expected). */
br_status cli_parse_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out);
br_status cli_parse_float(const char *flag, const char *s, float *out);
br_status cli_parse_u64(const char *flag, const char *s, uint64_t *out);

/* Checks that `path` can be created: its directory exists and is writable. */
br_status cli_check_writable(const char *path);

#endif
