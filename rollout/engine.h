/* The engine a scheduler drives: one forward step over a batch, then, for each row that wants logits, the
 * vocabulary work (sample or teacher-force a token, its log-prob, the logits digest). A backend (CPU now,
 * CUDA next) implements the step; the scheduler above it never sees logits, so a GPU backend keeps them on the
 * device and returns only tokens, log-probs and digests. */
#ifndef ROLLOUT_ENGINE_H
#define ROLLOUT_ENGINE_H

#include <stdint.h>

#include "common/br.h"
#include "policy/forward.h"
#include "rollout/sampler.h"

typedef struct {
    int32_t target;                    /* >= 0: teacher-forced token (score); -1: sample one (generate) */
    const rollout_sampling *sampling;  /* temperature (and, when sampling, top-p/top-k/seed) */
    int64_t sample_id;
    int32_t position;                  /* absolute position of the token this row produces */
} rollout_row;

typedef struct {
    int32_t token;     /* the sampled (or the target) token */
    float logprob;     /* rollout_logprob(logits, V, temperature, token) */
    uint64_t digest;   /* kern_cpu_digest(logits, V) */
} rollout_row_out;

/* --device cuda under mpirun without tensor parallelism: one rank fills its device weights, the others receive
 * them (comm_nccl: NCCL, or MPI through host buffers), then every rank's copy is fingerprinted against the root's.
 * Every rank calls both functions for the same buffers in the same order. */
typedef struct {
    int is_root;
    br_status (*bcast)(void *ctx, void *dev, size_t bytes); /* the root's bytes reach every rank (agreed) */
    br_status (*check)(void *ctx, const void *dev, size_t bytes); /* xxh3 of every rank's copy == the root's (agreed) */
    br_status (*agree)(void *ctx, br_status st); /* every rank's status -> the lowest failing rank's (comm_agree) */
    void *ctx;
} rollout_weights_bcast;

typedef struct {
    const char *device;  /* "cpu" | "cuda" */
    const char *kernels; /* "invariant" | "fp32" | "standard" */
    int max_tokens;      /* tokens per step */
    int n_pages, page_size;
    const policy_tp *tp; /* tensor parallelism; NULL: none */
    const rollout_weights_bcast *wb; /* CUDA: weights broadcast from a root rank; NULL: each rank uploads its own */
} rollout_engine_opts;

typedef struct rollout_engine rollout_engine;

br_status rollout_engine_create(const policy_weights *w, const rollout_engine_opts *o, rollout_engine **out);
void rollout_engine_free(rollout_engine *e);
int rollout_engine_max_tokens(const rollout_engine *e);
/* The page allocator (host side) of the engine's KV cache. */
policy_kvcache *rollout_engine_kv(rollout_engine *e);
/* Runs batch b; rows[r] describes the r-th row of b with want_logits set (batch order); fills out[r]. */
br_status rollout_engine_step(rollout_engine *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out);

#endif
