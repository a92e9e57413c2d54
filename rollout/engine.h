/* The engine a scheduler drives: one forward step over a batch, then, for each row that wants logits, the
 * vocabulary work (sample or teacher-force a token, its log-prob, the logits digest). A backend (CPU or CUDA,
 * rollout_backend_i) implements the step; the scheduler above it never sees logits, so a GPU backend keeps them on the
 * device and returns only tokens, log-probs and digests. */
#ifndef ROLLOUT_ENGINE_H
#define ROLLOUT_ENGINE_H

#include <stdint.h>

#include "common/br.h"
#include "common/tuning.h"
#include "kernels/kern.h"
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

/* Where an engine runs. Parsed once (rollout_device_parse) from --device / the API. */
typedef enum { ROLLOUT_DEVICE_CPU = 0, ROLLOUT_DEVICE_CUDA = 1 } rollout_device;
const char *rollout_device_name(rollout_device d);
/* "cpu" | "cuda" -> *out; 0, or -1 for any other string. */
int rollout_device_parse(const char *s, rollout_device *out);

typedef struct {
    rollout_device device;
    kern_mode mode;      /* the CPU backend computes invariant fp32 whatever the mode; standard is CUDA only */
    int max_tokens;      /* tokens per step */
    int n_pages, page_size;
    const policy_tp *tp; /* tensor parallelism; NULL: none */
    const rollout_weights_bcast *wb; /* CUDA: weights broadcast from a root rank; NULL: each rank uploads its own */
    br_tuning tuning;    /* run-time switches (common/tuning.h), read once by the caller */
} rollout_engine_opts;

/* ---- Backends (ggml's ggml_backend_i): each device is one table of functions over an opaque context. The CPU
 * and CUDA backends are siblings (engine_cpu.c, engine_cuda.c); rollout_backend() is the only place that knows
 * which were built. */
typedef struct {
    const char *name; /* "cpu", "cuda" */
    br_status (*create)(const policy_weights *w, const rollout_engine_opts *o, void **ctx);
    void (*destroy)(void *ctx);
    policy_kvcache *(*kv)(void *ctx); /* the page allocator (host side) of the backend's KV cache */
    br_status (*step)(void *ctx, const policy_batch *b, const rollout_row *rows, rollout_row_out *out);
    /* Copies the fp32 logits of the last step's first `rows` rows (rows, V) to the host (tests). */
    br_status (*last_logits)(void *ctx, float *out, int rows);
    int (*device_count)(void);                           /* devices this process sees (cpu: 1) */
    void (*select_device)(int index);                    /* binds the calling process to device `index` */
    void (*device_name)(int index, char *buf, int cap);  /* e.g. "NVIDIA H200" */
    /* Copies between host memory and the device this process is bound to (synchronous); NULL for the CPU, whose
     * memory is the host's. */
    void (*to_device)(void *dev, const void *host, size_t bytes);
    void (*to_host)(void *host, const void *dev, size_t bytes);
    /* Installs what a fatal device error calls before the process dies (comm_abort_job under MPI, so every rank
     * stops); NULL for the CPU, whose failures are ordinary statuses. */
    void (*set_abort_hook)(void (*hook)(void));
    /* Free and total bytes of the bound device's own memory (the scheduler's memory plan); NULL for the CPU, which
     * has none of its own. */
    void (*mem_info)(int64_t *free_bytes, int64_t *total_bytes);
    /* Copies KV page src over page dst, K and V of every layer (shared prompt KV: a sequence's own copy of the
     * partly filled last page of a shared prompt, policy_kv_fork). Ordered before the next step (CUDA: on the
     * engine's stream). */
    br_status (*kv_copy_page)(void *ctx, int32_t dst, int32_t src);
} rollout_backend_i;

/* The backend of device d, or NULL when this build has none (e.g. cuda without CUDA). */
const rollout_backend_i *rollout_backend(rollout_device d);

typedef struct rollout_engine rollout_engine;

/* Errors: BR_EINVAL for a device this build lacks, a mode the device does not have, a model the backend cannot run;
 * BR_ENOMEM. */
br_status rollout_engine_create(const policy_weights *w, const rollout_engine_opts *o, rollout_engine **out);
void rollout_engine_free(rollout_engine *e);
int rollout_engine_max_tokens(const rollout_engine *e);
const policy_weights *rollout_engine_weights(const rollout_engine *e);
const rollout_engine_opts *rollout_engine_options(const rollout_engine *e);
/* The page allocator (host side) of the engine's KV cache. */
policy_kvcache *rollout_engine_kv(rollout_engine *e);
/* Copies KV page src over page dst (every layer's K and V), before the next step reads dst. */
br_status rollout_engine_kv_copy_page(rollout_engine *e, int32_t dst, int32_t src);
/* Runs batch b; rows[r] describes the r-th row of b with want_logits set (batch order); fills out[r]. */
br_status rollout_engine_step(rollout_engine *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out);
/* The fp32 logits of the last step's first `rows` rows, (rows, V), to host memory (tests). */
br_status rollout_engine_last_logits(rollout_engine *e, float *out, int rows);

#endif
