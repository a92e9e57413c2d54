/* Run-time switches (BITROLL_* environment variables), read once per process into one struct that every consumer
 * takes as a value and that provenance records (config_json "tuning"). None of them changes a bit of any result
 * except share_gpus/nccl, which only choose how bytes move; the speed switches exist to compare measured variants.
 *
 *   BITROLL_CUDA_GRAPHS=0          decode steps are not replayed as CUDA graphs        (cuda_graphs, default 1)
 *   BITROLL_CUDA_PROFILE=1         milliseconds per phase of a step, printed at exit   (cuda_profile, default 0)
 *   BITROLL_PDL=0                  no programmatic dependent launch                    (pdl, default 1)
 *   BITROLL_GEMM_SHORT=0           short-k decode GEMMs keep the default pipeline      (gemm_short, default 1)
 *   BITROLL_GEMM_ROWPAR_FUSED=0    small-M row-parallel GEMMs sum in a separate launch (gemm_rowpar_fused, 1)
 *   BITROLL_ATTN_DECODE=walk|parallel  force one decode attention kernel               (attn_decode, default auto)
 *   BITROLL_SHARE_GPUS=1           more ranks than GPUs share them (tests)             (share_gpus, default 0)
 *   BITROLL_NCCL=0                 device collectives through MPI host buffers         (nccl, default 1)
 *   BITROLL_WEIGHTS_BCAST=0        every rank builds its own device weights            (weights_bcast, default 1)
 *   BITROLL_INJECT_FAILURE_RANK=r  rank r fails after its work (fault-injection tests) (inject_failure_rank, -1)
 *   BITROLL_INJECT_KILL_AFTER_RECORDS=K  each group's journal writer SIGKILLs itself after K records (resume tests)
 *                                  (inject_kill_after_records, 0 = never)
 *   BITROLL_WRITE_PIECE_BYTES=B    output files are written in pieces of at most B bytes (tests; the bytes of the file
 *                                  do not depend on it, so it is not in br_tuning_json) (write_piece_bytes, 0 = 1 MiB)
 */
#ifndef COMMON_TUNING_H
#define COMMON_TUNING_H

#include <stddef.h>

#include "common/br.h"

typedef enum { BR_ATTN_DECODE_AUTO = 0, BR_ATTN_DECODE_WALK = 1, BR_ATTN_DECODE_PARALLEL = 2 } br_attn_decode;

typedef struct {
    int cuda_graphs, cuda_profile, pdl, gemm_short, gemm_rowpar_fused;
    br_attn_decode attn_decode;
    int share_gpus, nccl, weights_bcast;
    int inject_failure_rank;
    int64_t inject_kill_after_records;
    int64_t write_piece_bytes; /* BITROLL_WRITE_PIECE_BYTES; 0: the writer's default */
} br_tuning;

/* The defaults (no variable set). */
br_tuning br_tuning_default(void);
/* Reads every variable above; a value outside its set -> BR_EINVAL naming the variable and the value. */
br_status br_tuning_from_env(br_tuning *out);
/* {"cuda_graphs":1,...} into buf (NUL-terminated, truncated to cap). */
void br_tuning_json(const br_tuning *t, char *buf, size_t cap);

#endif
