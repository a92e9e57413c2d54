/* Continuous-batching scheduler: runs generate and score jobs through policy_forward under a token budget.
 *
 * Sequences join and leave at every step; prompts are prefilled in chunks; each sequence's KV pages are
 * reserved when it is admitted (prompt + max_new_tokens, so no preemption is ever needed) and returned when it
 * ends. Which jobs share a step never changes a job's numbers (policy/forward.h), so the schedule is free to
 * pack however it likes. */
#ifndef ROLLOUT_SCHEDULER_H
#define ROLLOUT_SCHEDULER_H

#include <stdint.h>

#include "common/br.h"
#include "common/finish.h"
#include "policy/forward.h"
#include "rollout/engine.h"
#include "rollout/sampler.h"


typedef struct {
    int64_t sample_id;
    const int32_t *prompt;   /* (prompt_len) */
    int prompt_len;
    /* generate: sample up to max_new tokens; score: teacher-force `forced` (n_forced tokens) instead */
    int max_new;
    rollout_sampling sampling;
    const int32_t *stop_ids; /* (n_stop) */
    int n_stop;
    const int32_t *forced;   /* (n_forced) or NULL */
    int n_forced;
} rollout_job;

typedef struct {
    int64_t sample_id;
    int n;                /* completion tokens */
    int32_t *tokens;      /* (n) */
    float *logprobs;      /* (n) log-softmax(logits / T) at the token (T = 1 when greedy) */
    uint64_t *digests;    /* (n) digest of the fp32 logits row that produced the token */
    int8_t finish;        /* br_finish (common/finish.h) */
} rollout_result;

typedef struct {
    int max_batch_tokens; /* tokens per forward call */
    int max_seqs;         /* sequences in flight */
    int prefill_chunk;    /* prompt tokens of one sequence per step */
    int page_size;        /* KV page size (tokens) */
    int n_pages;          /* KV pages; 0 = enough for max_seqs of the longest job */
    rollout_device device; /* engine device (zero: cpu) */
    kern_mode mode;        /* kernel mode (zero: invariant) */
    rollout_engine *engine; /* optional: run on this engine (kept; its pages and token budget must fit) instead of
                             * creating one from device/mode/n_pages */
    const policy_tp *tp;    /* tensor parallelism for the engine it creates; NULL: none */
    const rollout_weights_bcast *wb; /* CUDA: device weights broadcast from a root rank; NULL: none */
    br_tuning tuning;       /* for the engine it creates (zeroed: set it with br_tuning_default or _from_env) */
} rollout_sched_opts;

/* Progress callback: called after each step with jobs done so far and tokens produced. */
typedef void (*rollout_progress_fn)(void *ctx, int64_t jobs_done, int64_t jobs_total, int64_t tokens);

/* Runs n_jobs jobs to completion; results[i] belongs to jobs[i] (arrays owned by the caller's
 * rollout_result_free). Errors: BR_EINVAL when a job cannot fit the cache or context (names the sample). */
br_status rollout_run(const policy_weights *w, const rollout_sched_opts *o, const rollout_job *jobs, int64_t n_jobs,
                      rollout_result *results, rollout_progress_fn progress, void *progress_ctx);
void rollout_result_free(rollout_result *r);

#endif
