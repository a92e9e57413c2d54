/* BITROLL_* switches, read once (common/tuning.h). */
#include "common/tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

br_tuning br_tuning_default(void) {
    br_tuning t = {1, 0, 1, 1, 1, 1, 1, 1, BR_ATTN_DECODE_AUTO, 0, 1, 1, -1, 0, 0, BR_COMM_TIMEOUT_DEFAULT,
                   BR_H5_GUARD_SECONDS_DEFAULT};
    return t;
}

/* A 0/1 switch: unset or empty keeps *v. */
static br_status flag(const char *name, int *v) {
    const char *e = getenv(name);
    if (!e || !*e) return BR_OK;
    if (!strcmp(e, "0")) *v = 0;
    else if (!strcmp(e, "1")) *v = 1;
    else return br_fail(BR_EINVAL, "environment: %s='%s' must be 0 or 1", name, e);
    return BR_OK;
}

br_status br_tuning_from_env(br_tuning *out) {
    br_tuning t = br_tuning_default();
    br_status rc = BR_OK;
    if ((rc = flag("BITROLL_CUDA_GRAPHS", &t.cuda_graphs)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_CUDA_PROFILE", &t.cuda_profile)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_PDL", &t.pdl)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_GEMM_SHORT", &t.gemm_short)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_GEMM_ROWPAR_FUSED", &t.gemm_rowpar_fused)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_GEMM_WGMMA", &t.gemm_wgmma)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_GEMM_SMALL_TMA", &t.gemm_small_tma)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_GEMM_SMALL_RX", &t.gemm_small_rx)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_SHARE_GPUS", &t.share_gpus)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_NCCL", &t.nccl)) != BR_OK) return rc;
    if ((rc = flag("BITROLL_WEIGHTS_BCAST", &t.weights_bcast)) != BR_OK) return rc;
    const char *a = getenv("BITROLL_ATTN_DECODE");
    if (a && *a) {
        if (!strcmp(a, "walk")) t.attn_decode = BR_ATTN_DECODE_WALK;
        else if (!strcmp(a, "parallel")) t.attn_decode = BR_ATTN_DECODE_PARALLEL;
        else return br_fail(BR_EINVAL, "environment: BITROLL_ATTN_DECODE='%s' must be walk or parallel (unset: chosen "
                                       "per call)", a);
    }
    const char *r = getenv("BITROLL_INJECT_FAILURE_RANK");
    if (r && *r) {
        char *end = NULL;
        long v = strtol(r, &end, 10);
        if (*end || v < 0 || v > 1 << 20)
            return br_fail(BR_EINVAL, "environment: BITROLL_INJECT_FAILURE_RANK='%s' must be a rank number", r);
        t.inject_failure_rank = (int)v;
    }
    const char *k = getenv("BITROLL_INJECT_KILL_AFTER_RECORDS");
    if (k && *k) {
        char *end = NULL;
        long long v = strtoll(k, &end, 10);
        if (*end || v < 0)
            return br_fail(BR_EINVAL, "environment: BITROLL_INJECT_KILL_AFTER_RECORDS='%s' must be a count >= 0", k);
        t.inject_kill_after_records = (int64_t)v;
    }
    const char *wp = getenv("BITROLL_WRITE_PIECE_BYTES");
    if (wp && *wp) {
        char *end = NULL;
        long long v = strtoll(wp, &end, 10);
        if (*end || v < 1)
            return br_fail(BR_EINVAL, "environment: BITROLL_WRITE_PIECE_BYTES='%s' must be a byte count >= 1", wp);
        t.write_piece_bytes = (int64_t)v;
    }
    const char *hg = getenv("BITROLL_H5_GUARD_SECONDS");
    if (hg && *hg && br_comm_timeout_parse("environment: BITROLL_H5_GUARD_SECONDS", hg, &t.h5_guard_s) != BR_OK)
        return br_fail(BR_EINVAL, "environment: BITROLL_H5_GUARD_SECONDS='%s' must be whole seconds in [0, %d] (0 = "
                                  "read files without the integrity header in-process, unguarded)", hg,
                       BR_COMM_TIMEOUT_MAX);
    *out = t;
    return BR_OK;
}

br_status br_comm_timeout_parse(const char *flag, const char *s, int *out) {
    long v = 0;
    int digits = 0;
    /* digits only: strtol would take " 5", "+5" and "-0" */
    for (const char *p = s; *p; p++, digits++) {
        if (*p < '0' || *p > '9' || digits >= 9) {
            digits = -1;
            break;
        }
        v = v * 10 + (*p - '0');
    }
    if (digits <= 0 || v > BR_COMM_TIMEOUT_MAX)
        return br_fail(BR_EINVAL, "%s: '%s' is not a number of seconds in [0, %d] (0 = no rank watchdog)", flag, s,
                       BR_COMM_TIMEOUT_MAX);
    *out = (int)v;
    return BR_OK;
}

void br_tuning_json(const br_tuning *t, char *buf, size_t cap) {
    static const char *attn[] = {"auto", "walk", "parallel"};
    snprintf(buf, cap,
             "{\"cuda_graphs\":%d,\"cuda_profile\":%d,\"pdl\":%d,\"gemm_short\":%d,\"gemm_rowpar_fused\":%d,"
             "\"gemm_wgmma\":%d,\"gemm_small_tma\":%d,\"gemm_small_rx\":%d,"
             "\"attn_decode\":\"%s\",\"share_gpus\":%d,\"nccl\":%d,\"weights_bcast\":%d,\"inject_failure_rank\":%d}",
             t->cuda_graphs, t->cuda_profile, t->pdl, t->gemm_short, t->gemm_rowpar_fused, t->gemm_wgmma,
             t->gemm_small_tma, t->gemm_small_rx,
             attn[t->attn_decode >= 0 && t->attn_decode <= 2 ? t->attn_decode : 0], t->share_gpus, t->nccl,
             t->weights_bcast, t->inject_failure_rank);
}
