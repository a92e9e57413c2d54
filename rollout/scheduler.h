/* Continuous-batching scheduler: runs generate and score jobs through policy_forward under a token budget.
 *
 * Sequences join and leave at every step; prompts are prefilled in chunks; each sequence's KV pages are
 * reserved when it is admitted (prompt + max_new_tokens, so no preemption is ever needed) and returned when it
 * ends; the samples of one prompt share its prefilled pages (rollout_run, "Shared prompt KV"). Which jobs share a
 * step never changes a job's numbers (policy/forward.h), so the schedule is free to pack however it likes. */
#ifndef ROLLOUT_SCHEDULER_H
#define ROLLOUT_SCHEDULER_H

#include <stddef.h>
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
    /* --- device memory (CUDA engines this scheduler creates; see rollout_mem_fit below) */
    double gpu_memory_utilization; /* share of the device's free memory the engine may take, (0, 1]; 0 = 0.9 */
    unsigned sizes_given;   /* ROLLOUT_GIVEN_* bits: max_seqs / max_batch_tokens were given (--max-seqs,
                             * --max-batch-tokens). On a device with its own memory (cuda) those not given are chosen
                             * from the memory plan (their values above are then ignored); the CPU takes them as set */
    struct rollout_mem_plan *plan_out; /* when not NULL: receives the plan the engine was created with */
    int report_plan;        /* print the plan (one line) on stderr when the engine is created */
    struct rollout_run_stats *stats; /* when not NULL: receives the run's step timings (rollout_run_stats) */
    /* when not NULL: called once per job as it completes, with its index into jobs and its result; the callee owns
     * the result's arrays from then on (results[i] is left zeroed), so the caller's memory does not grow with the
     * jobs done. A failure it returns stops the run. */
    br_status (*on_result)(void *ctx, int64_t job_index, rollout_result *r);
    void *on_result_ctx;
    /* Shared prompt KV (the default, zero): consecutive generate jobs with the same prompt (a prompt's n samples)
     * prefill it once and share its KV pages; see rollout_run. 1: every job prefills its own prompt (the equality
     * tests' reference; --no-share-prompt-kv). The results are the same bits either way. */
    int no_share_prompt_kv;
} rollout_sched_opts;

enum { ROLLOUT_GIVEN_MAX_SEQS = 1u, ROLLOUT_GIVEN_BATCH_TOKENS = 2u };
enum { ROLLOUT_AUTO_MAX_SEQS = 1u, ROLLOUT_AUTO_BATCH_TOKENS = 2u }; /* rollout_mem_fit's auto_size bits */
#define ROLLOUT_GPU_MEMORY_UTILIZATION_DEFAULT 0.9

/* ---- Device memory plan of a CUDA engine: the bytes of every buffer rollout/engine_cuda.c allocates, computed
 * before anything is allocated (plain C, so the arithmetic is unit-tested on the CPU). The engine checks it against
 * the device's free memory and allocates exactly these buffers; the scheduler uses it to choose max_seqs and
 * max_batch_tokens and for its messages. Bytes are int64; GB in messages are 10^9 bytes. */
typedef struct rollout_mem_plan {
    /* inputs */
    kern_mode mode;
    kern_dtype wdtype;      /* the weights' dtype (policy_weights.dtype): f32 matrices stay f32 in the fp32 mode */
    int tp_size;            /* tensor-parallel degree (1: none): this rank's share of weights and KV heads */
    int max_tokens;         /* T: tokens per step (max_batch_tokens) */
    int max_seqs;           /* sequences in flight (the scheduler's; only for the graph reserve and messages) */
    int page_size, n_pages;
    int64_t seq_tokens;     /* KV slots per sequence the pages were sized for (pages x page_size; messages) */
    /* shared prompt KV (inputs; 0 = none): every job is in a group of at least share_group >= 2 samples of one prompt
     * whose full pages, between share_pages_min and share_pages_max of them, the group holds once
     * (rollout_mem_share: from the jobs). rollout_mem_fit then sizes the pool for s sequences as
     * s x (pages a sequence - share_pages_min) + (ceil(s / share_group) + 1) x share_pages_max + 1: the groups that
     * hold shared pages at once when samples end about in the order they started (equal lengths, as RL rounds
     * without a stop token); when stragglers of many groups outlive the rest, admission waits for pages (never an
     * error: one sequence and a prefix always fit). */
    int share_group;
    int64_t share_pages_min, share_pages_max;
    /* bytes */
    int64_t weights;        /* matrices (K padded to 16 in the bf16 modes), vectors, embeddings, LM head, RoPE table */
    int64_t weights_step;   /* what a forward step reads of them at least: `weights` without the embedding tables and
                             * the RoPE table, of which a step reads a row per token (the cost model of bitroll bench) */
    int64_t kv_token;       /* K and V of one cached token: all layers, this rank's KV heads, bf16 (fp32 mode: f32) */
    int64_t kv;             /* the KV pages: n_pages x page_size x kv_token */
    int64_t acts;           /* activations of a T-token step: x, xn, q, k, v, att, q2, k2, proj, ffa, ffb (f32), xb */
    int64_t logits;         /* (T, V) f32: every row of a step may want logits (score) */
    int64_t step_io;        /* tokens, positions, page-table offsets, page tables (T x max pages per sequence), gather,
                             * row requests and results */
    int64_t workspaces;     /* vocabulary rows, row-parallel GEMM, split-KV (standard), tensor-parallel partials;
                             * upper bounds of what the kernels ask */
    int64_t reserve;        /* in no buffer: cuBLAS, CUDA graphs (one per decode batch size; in the standard mode per
                             * batch size and split-KV count), allocator rounding */
    int64_t total;
} rollout_mem_plan;

/* Whether two jobs share their prompt (the same tokens; neither teacher-forced): consecutive such jobs share its
 * prefilled KV pages (rollout_run), and the driver deals them to one group. */
int rollout_same_prompt(const rollout_job *a, const rollout_job *b);
/* Rows per slice of the CUDA fp32 mode's row-parallel layers: its chunk-partials buffer holds max(heads, 16) chunks
 * of this many rows (rollout/engine_cuda.c, counted by rollout_mem_plan_compute). */
#define ROLLOUT_F32_SLICE 64
/* Rows per pass of the CUDA engine's top-k / top-p sampler (kern_cuda_sample_filter): its sort workspace holds this
 * many logits rows' keys and ids, twice (rollout/engine_cuda.c, counted by rollout_mem_plan_compute). */
#define ROLLOUT_FILTER_ROWS 64
/* Fills p's bytes from its inputs (mode, wdtype, tp_size, max_tokens, max_seqs, page_size, n_pages). */
void rollout_mem_plan_compute(const policy_config *c, rollout_mem_plan *p);
/* Bytes of a T-token step that do not depend on the KV cache: acts + logits + step_io + workspaces. */
int64_t rollout_mem_plan_step_bytes(const rollout_mem_plan *p);

/* Chooses what fits a device with free_bytes free, of which the engine may take utilization (0, 1]: jobs of up to
 * seq_tokens KV slots each (the longest job, clipped to the context), n_jobs of them. p's inputs mode, wdtype,
 * tp_size and page_size are set; p->max_seqs / p->max_tokens are the user's values, or chosen when auto (ROLLOUT_AUTO_*
 * bits): max_batch_tokens the largest of 8192, 4096, ..., 256 whose step buffers take at most 1/8 of what the weights
 * leave, max_seqs as many sequences as fit, at most 512 and at most n_jobs. n_pages = max_seqs x pages per sequence.
 * Errors (BR_EINVAL, exit 2): what was asked, what is free and what fits, e.g. "--max-seqs 512 needs 150.3 GB of KV
 * cache (fp32) at 1,280 tokens/sequence ...: at most 402 sequences fit". */
br_status rollout_mem_fit(const policy_config *c, rollout_mem_plan *p, unsigned auto_size, int64_t free_bytes,
                          double utilization, int64_t seq_tokens, int64_t n_jobs);
/* One line: "max_seqs 402, max_batch_tokens 8192, KV 1,280 tokens/sequence: weights 1.50 GB, KV 118.0 GB, ..." */
void rollout_mem_plan_describe(const rollout_mem_plan *p, char *buf, size_t cap);
/* The sharing inputs of a plan (share_group, share_pages_min / _max) from the jobs, as rollout_run will group them
 * (consecutive same-prompt jobs, none teacher-forced): all 0 when some job is in no group of 2 or more, or a group
 * shares no full page. */
void rollout_mem_share(const rollout_job *jobs, int64_t n_jobs, int page_size, rollout_mem_plan *p);
/* The KV cache's element in a kernel mode: "bf16" (invariant, standard) or "fp32" (fp32). */
const char *rollout_mem_kv_name(kern_mode mode);
/* The device's free and total memory for an engine of device d; BR_EINVAL when this build has no such device or d
 * is the CPU (whose KV cache is host memory). */
br_status rollout_device_memory(rollout_device d, int64_t *free_bytes, int64_t *total_bytes);

/* Wall-clock seconds of a run, split by what the step did (the engine step includes its device work: it waits for
 * the step's results). Prefill steps are steps with at least one prompt row; decode steps have none. */
typedef struct rollout_run_stats {
    int64_t steps_prefill, steps_decode;
    int64_t rows_prefill, rows_decode;  /* forward rows (input tokens) of each kind */
    int64_t tokens_out;                 /* completion tokens produced */
    double s_prefill, s_decode;         /* engine steps */
    double s_host;                      /* the scheduler's own work between steps (admission, batching, results) */
    double s_create;                    /* creating the engine (weights upload, allocation) */
    int64_t kv_read_tokens;             /* per step, per sequence in it: its keys (positions 0..its last row) */
    int64_t prompt_groups;              /* shared prompt KV: prompts prefilled once for several jobs */
    int64_t rows_saved;                 /* prompt rows not computed: (jobs of a group - 1) x (prompt length - 1) each */
    int64_t pages_copied;               /* partly filled prompt pages copied, one per job of a group */
} rollout_run_stats;

/* Progress callback: called after each step with jobs done so far and tokens produced. */
typedef void (*rollout_progress_fn)(void *ctx, int64_t jobs_done, int64_t jobs_total, int64_t tokens);

/* Runs n_jobs jobs to completion; results[i] belongs to jobs[i] (arrays owned by the caller's
 * rollout_result_free). Errors: BR_EINVAL when a job cannot fit the cache or context (names the sample).
 *
 * Shared prompt KV (unless o->no_share_prompt_kv): a run of consecutive generate jobs whose prompts are the same
 * tokens (length P >= 2) forms a group. Its first P - 1 prompt tokens are prefilled once, into a prefix sequence
 * that is no job's; each job of the group is then admitted as a fork of it (policy_kv_fork): the prefix's full
 * pages are shared by reference count, its partly filled last page (if any) is copied for each job at fork time
 * (rollout_engine_kv_copy_page) -- never copied on write: a copy per job when it is admitted is the simplest correct
 * choice, one page per job. Each job then feeds its last prompt token itself, so its first completion token comes
 * from its own row (its own sample id and position for the sampler), exactly as without sharing. The prefix holds
 * its pages until the group's last job is admitted (a group may span several admissions when max_seqs < n); a page
 * returns to the pool when its last holder ends. Prefill == decode bitwise and rows are independent of their batch
 * neighbours, so the results are the same bits as with no sharing. A group falls back to unshared jobs when the
 * prefix and one job's own pages do not fit the cache together. Score (teacher-forced) jobs never share. */
br_status rollout_run(const policy_weights *w, const rollout_sched_opts *o, const rollout_job *jobs, int64_t n_jobs,
                      rollout_result *results, rollout_progress_fn progress, void *progress_ctx);
void rollout_result_free(rollout_result *r);

#endif
