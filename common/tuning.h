/* Run-time switches (BITROLL_* environment variables), read once per process into one struct that every consumer
 * takes as a value and that provenance records (config_json "tuning"). None of them changes a bit of any result
 * except share_gpus/nccl, which only choose how bytes move; the speed switches exist to compare measured variants.
 *
 *   BITROLL_CUDA_GRAPHS=0          decode steps are not replayed as CUDA graphs        (cuda_graphs, default 1)
 *   BITROLL_CUDA_PROFILE=1         milliseconds per phase of a step, printed at exit   (cuda_profile, default 0)
 *   BITROLL_PDL=0                  no programmatic dependent launch                    (pdl, default 1)
 *   BITROLL_GEMM_SHORT=0           short-k decode GEMMs keep the default pipeline      (gemm_short, default 1)
 *   BITROLL_GEMM_ROWPAR_FUSED=0    small-M row-parallel GEMMs sum in a separate launch (gemm_rowpar_fused, 1)
 *   BITROLL_GEMM_WGMMA=0           GEMMs of M > 64 use mma.sync, not wgmma (sm_90)     (gemm_wgmma, default 1)
 *   BITROLL_GEMM_SMALL_TMA=0       GEMMs of M <= 64 use cp.async, not TMA (sm_90)      (gemm_small_tma, default 1)
 *   BITROLL_GEMM_SMALL_RX=0        ... x in the TMA ring, not resident (8-warp blocks) (gemm_small_rx, default 1)
 *   BITROLL_ATTN_DECODE=walk|parallel  force one decode attention kernel               (attn_decode, default auto)
 *   BITROLL_SHARE_GPUS=1           more ranks than GPUs share them (tests)             (share_gpus, default 0)
 *   BITROLL_NCCL=0                 device collectives through MPI host buffers         (nccl, default 1)
 *   BITROLL_WEIGHTS_BCAST=0        every rank builds its own device weights            (weights_bcast, default 1)
 *   BITROLL_INJECT_FAILURE_RANK=r  rank r fails after its work (fault-injection tests) (inject_failure_rank, -1)
 *   BITROLL_INJECT_KILL_AFTER_RECORDS=K  each group's journal writer SIGKILLs itself after K records (resume tests)
 *                                  (inject_kill_after_records, 0 = never)
 *   BITROLL_WRITE_PIECE_BYTES=B    output files are written in pieces of at most B bytes (tests; the bytes of the file
 *                                  do not depend on it, so it is not in br_tuning_json) (write_piece_bytes, 0 = 64 KiB)
 *   BITROLL_H5_GUARD_SECONDS=S     a rollouts/scores file without the integrity header (format_version 1) is first read
 *                                  in a child process that gets S seconds (+1 s per 64 MiB of file), logging/h5log.h;
 *                                  0 = no child (libhdf5 then parses such a file in-process, as before the guard; for
 *                                  debuggers). Whole seconds in [0, 86400]. Not in br_tuning_json: it changes no
 *                                  result, only which damaged files are refused rather than crashing the process
 *                                  (h5_guard_s, default BR_H5_GUARD_SECONDS_DEFAULT)
 *
 * One field is a command-line option, not a variable: comm_timeout_s, set from --comm-timeout SECONDS by the
 * generate/score/worker verbs (default BR_COMM_TIMEOUT_DEFAULT; 0 = no rank watchdog, comm_watch_start). Like the
 * switches it changes no bit of any result, and it is not part of br_tuning_json (the files of a run with and
 * without the watchdog are identical).
 */
#ifndef COMMON_TUNING_H
#define COMMON_TUNING_H

#include <stddef.h>

#include "common/br.h"

typedef enum { BR_ATTN_DECODE_AUTO = 0, BR_ATTN_DECODE_WALK = 1, BR_ATTN_DECODE_PARALLEL = 2 } br_attn_decode;

typedef struct {
    int cuda_graphs, cuda_profile, pdl, gemm_short, gemm_rowpar_fused, gemm_wgmma, gemm_small_tma, gemm_small_rx;
    br_attn_decode attn_decode;
    int share_gpus, nccl, weights_bcast;
    int inject_failure_rank;
    int64_t inject_kill_after_records;
    int64_t write_piece_bytes; /* BITROLL_WRITE_PIECE_BYTES; 0: the writer's default */
    int comm_timeout_s; /* --comm-timeout: seconds without a heartbeat from a peer rank before the job aborts; 0 = off */
    int h5_guard_s;     /* BITROLL_H5_GUARD_SECONDS: wall seconds for the read guard's child; 0 = no guard */
} br_tuning;

/* 20 s: the golden version 1 files read in milliseconds; libhdf5's endless loops never end. */
#define BR_H5_GUARD_SECONDS_DEFAULT 20

/* 30 s: a live rank answers within a second whatever it computes, and a stop is reported well inside a minute. */
#define BR_COMM_TIMEOUT_DEFAULT 30
/* The largest --comm-timeout: one day. */
#define BR_COMM_TIMEOUT_MAX 86400

/* The defaults (no variable set). */
br_tuning br_tuning_default(void);
/* Reads every variable above; a value outside its set -> BR_EINVAL naming the variable and the value. */
br_status br_tuning_from_env(br_tuning *out);
/* --comm-timeout's value: whole seconds in [0, BR_COMM_TIMEOUT_MAX] ("0" = no watchdog). Anything else -- a sign, a
 * unit, a fraction, spaces, empty -- is BR_EINVAL naming `flag` and the value; *out is unchanged then. */
br_status br_comm_timeout_parse(const char *flag, const char *s, int *out);
/* {"cuda_graphs":1,...} into buf (NUL-terminated, truncated to cap). */
void br_tuning_json(const br_tuning *t, char *buf, size_t cap);

#endif
