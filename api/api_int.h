/* libbitroll internals shared by the api/ files (never installed). */
#ifndef API_INT_H
#define API_INT_H

#include "bitroll/bitroll.h"
#include "common/br.h"

/* br_status -> bitroll_status (the CLI's exit codes map the same way: docs/API.md). */
bitroll_status api_status(br_status st);
/* Copies the calling thread's last br_fail message into err (when non-NULL); returns api_status(st). */
bitroll_status api_fail_err(bitroll_error *err, br_status st);

#endif
