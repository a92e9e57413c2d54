/* libbitroll: versions, status names, and the mapping of the engine's br_status onto bitroll_status. */
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"

int bitroll_api_version(void) { return BITROLL_API_VERSION; }

const char *bitroll_version(void) { return BR_VERSION " (git " BR_GIT_REV ")"; }

const char *bitroll_status_name(bitroll_status s) {
    switch (s) {
    case BITROLL_OK: return "BITROLL_OK";
    case BITROLL_EINVAL: return "BITROLL_EINVAL";
    case BITROLL_EIO: return "BITROLL_EIO";
    case BITROLL_EFORMAT: return "BITROLL_EFORMAT";
    case BITROLL_ENOMEM: return "BITROLL_ENOMEM";
    case BITROLL_ERUNTIME: return "BITROLL_ERUNTIME";
    case BITROLL_MISMATCH: return "BITROLL_MISMATCH";
    }
    return "BITROLL_(unknown)";
}

bitroll_status api_status(br_status st) {
    switch (st) {
    case BR_OK: return BITROLL_OK;
    case BR_EINVAL: return BITROLL_EINVAL;
    case BR_EFORMAT: return BITROLL_EFORMAT;
    case BR_EIO: return BITROLL_EIO;
    case BR_ENOMEM: return BITROLL_ENOMEM;
    case BR_ERUNTIME: return BITROLL_ERUNTIME;
    }
    return BITROLL_ERUNTIME;
}

bitroll_status api_fail_err(bitroll_error *err, br_status st) {
    if (err) snprintf(err->message, sizeof err->message, "%s", st == BR_OK ? "" : br_last_error());
    return api_status(st);
}
