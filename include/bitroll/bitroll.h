/* libbitroll: the public C API of bitroll (docs/API.md).
 *
 * An engine holds a model's weights, a KV cache and the kernels of one device. `bitroll_score` recomputes,
 * teacher-forced, the fp32 log-prob and logits digest of every completion token; `bitroll_generate` samples
 * completions and returns the same numbers for each sampled token. The two agree bit for bit for the same weights,
 * kernel mode and temperature, whatever the batch, the budgets or the order of the samples: that is the contract
 * (docs/DESIGN.md). `bitroll_verify_files` compares a rollouts file with a scores file by memcmp.
 *
 * Conventions (every function):
 * - Returns a bitroll_status. On failure nothing the caller owns was half-written unless the function says so, and
 *   a message naming the bad argument, file, field or value is kept: in the engine (bitroll_engine_error) for the
 *   functions that take one, else in the caller's bitroll_error (NULL: no message wanted).
 * - No global state: engines are independent. An engine is thread-compatible, not thread-safe: calls on one engine
 *   must not overlap; different engines may be used from different threads (a CUDA engine binds its thread to its
 *   GPU on every call).
 * - Arrays are CSR: `offsets` has n + 1 entries, offsets[0] = 0, non-decreasing; sample i owns
 *   [offsets[i], offsets[i+1]) of the flat array. Token ids are int32, offsets int64.
 * - Ownership: pointers passed in stay the caller's and are not kept after the call returns; objects the library
 *   allocates (engines, completions, rollouts) are freed by their _free / _close function, which accepts NULL. */
#ifndef BITROLL_BITROLL_H
#define BITROLL_BITROLL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1: this header. An ABI change bumps it; bitroll_api_version() says what the loaded library implements. */
#define BITROLL_API_VERSION 1

typedef enum {
    BITROLL_OK = 0,
    BITROLL_EINVAL = 1,   /* bad argument or input (the message names it) */
    BITROLL_EIO = 2,      /* a file could not be read or written */
    BITROLL_EFORMAT = 3,  /* a file is malformed */
    BITROLL_ENOMEM = 4,   /* out of host or device memory */
    BITROLL_ERUNTIME = 5, /* device, MPI or another runtime failure */
    BITROLL_MISMATCH = 6  /* bitroll_verify_files: the files are readable but not bitwise equal */
} bitroll_status;

/* A message buffer for the functions that have no engine to keep it in. */
typedef struct {
    char message[1024];
} bitroll_error;

int bitroll_api_version(void);
const char *bitroll_version(void);                    /* "0.1.0 (git abcdef012345)" */
const char *bitroll_status_name(bitroll_status s);    /* "BITROLL_EINVAL", ... static storage */

/* ---------------------------------------------------------------- engines */

typedef enum { BITROLL_DEVICE_CPU = 0, BITROLL_DEVICE_CUDA = 1 } bitroll_device;
typedef enum {
    BITROLL_KERNELS_INVARIANT = 0, /* fixed reduction order, bf16 tensor cores on CUDA (the default) */
    BITROLL_KERNELS_FP32 = 1,      /* fp32 arithmetic in the CPU reference's order */
    BITROLL_KERNELS_STANDARD = 2   /* library heuristics: fast, NOT batch invariant (CUDA only; a baseline) */
} bitroll_kernels;

typedef struct {
    int struct_size;            /* sizeof(bitroll_engine_opts): set by bitroll_engine_opts_init */
    const char *model_dir;      /* Hugging Face checkpoint directory (config.json + safetensors); or NULL and: */
    const char *random_weights; /* a config.json whose shape gets counter-based random weights (CUDA only) */
    uint64_t weights_seed;      /* seed of random_weights */
    bitroll_device device;      /* default cpu */
    int gpu;                    /* CUDA device index (default 0) */
    bitroll_kernels kernels;    /* default invariant */
    int max_batch_tokens;       /* tokens per forward step (default 256) */
    int max_seqs;               /* sequences in flight (default 64) */
    int max_seq_len;            /* longest prompt + completion the KV cache holds per sequence (default: the
                                 * model's context length, capped at 4096) */
    int prefill_chunk;          /* prompt tokens of one sequence per step (default 64) */
    int page_size;              /* KV page size in tokens (default 16) */
    const void *mpi_comm;       /* tensor parallelism: a pointer to an MPI_Comm whose ranks form one group (every
                                 * rank opens the engine with the same options and makes the same calls in the same
                                 * order); NULL: none */
    int64_t weight_version;     /* recorded with every result; incremented by bitroll_weights_commit (default 0) */
} bitroll_engine_opts;

/* Fills *o with the defaults above. */
void bitroll_engine_opts_init(bitroll_engine_opts *o);

typedef struct bitroll_engine bitroll_engine;

/* Opens an engine: loads and validates the checkpoint, allocates the KV cache and activations (and on CUDA uploads
 * the weights). Errors: EINVAL (options, a model the device cannot run, a device this build lacks), EIO/EFORMAT
 * (the checkpoint), ENOMEM. *out is NULL on failure; err (may be NULL) gets the message. */
bitroll_status bitroll_engine_open(const bitroll_engine_opts *o, bitroll_engine **out, bitroll_error *err);
void bitroll_engine_close(bitroll_engine *e);
/* The message of the engine's last failure ("" after a success). Valid until the next call on e. */
const char *bitroll_engine_error(const bitroll_engine *e);

typedef struct {
    int vocab_size, context_length, n_layers, dim;
    int eos_id, bos_id;              /* -1 when the config has none */
    int64_t n_params;
    int64_t weight_version;
    char fingerprint[17];            /* weights fingerprint (hex), as `bitroll info` prints it */
    char model_type[32];             /* "llama", "qwen2", "qwen3", "gpt2" */
} bitroll_engine_info;
bitroll_status bitroll_engine_get_info(const bitroll_engine *e, bitroll_engine_info *out);

/* ---------------------------------------------------------------- score */

typedef struct {
    int64_t n;                          /* samples */
    const int64_t *prompt_offsets;      /* (n+1) */
    const int32_t *prompt_tokens;       /* (prompt_offsets[n]); every prompt non-empty */
    const int64_t *completion_offsets;  /* (n+1) */
    const int32_t *completion_tokens;   /* (completion_offsets[n]) */
    const float *temperature;           /* (n) the sampling temperature of each sample (0 = greedy: log-probs at T=1);
                                         * NULL: 1.0 for every sample */
} bitroll_score_in;

/* Teacher-forced log-probs (log-softmax(logits / T) at each completion token, fp32) and logits digests of every
 * completion token, in completion-token order, into caller buffers of completion_offsets[n] entries each
 * (digests may be NULL). on_device: 1 when logprobs/digests are CUDA device pointers of the engine's GPU (CUDA
 * engines only); 0 host memory. Samples are packed into steps of the engine's budget; the result does not depend
 * on the packing. Errors: EINVAL (ids out of the vocabulary, a sample longer than max_seq_len or the context),
 * ERUNTIME. The buffers are written only on success. */
bitroll_status bitroll_score(bitroll_engine *e, const bitroll_score_in *in, float *logprobs, uint64_t *digests,
                             int on_device);

/* ---------------------------------------------------------------- generate */

typedef struct {
    int64_t n;                       /* prompts (each gets one completion; repeat a prompt for n samples) */
    const int64_t *prompt_offsets;   /* (n+1) */
    const int32_t *prompt_tokens;    /* (prompt_offsets[n]) */
    const int64_t *sample_ids;       /* (n) the sampler's stream of each completion (its noise depends only on
                                      * (seed, sample_id, position)); NULL: 0..n-1 */
    const float *temperature;        /* (n) >= 0, 0 = greedy; NULL: all `default_temperature` */
    const float *top_p;              /* (n) in (0, 1]; NULL: 1 */
    const int32_t *top_k;            /* (n) >= 0, 0 = off; NULL: 0 */
    const uint64_t *seeds;           /* (n) NULL: all `seed` */
    const int32_t *max_new_tokens;   /* (n) >= 1; NULL: all `default_max_new_tokens` */
    float default_temperature;
    int32_t default_max_new_tokens;
    uint64_t seed;
    const int32_t *stop_ids;         /* stop tokens for every sample (included in the completion); NULL: none */
    int n_stop_ids;
} bitroll_generate_in;

/* Finish reasons (as stored in rollouts files). */
typedef enum { BITROLL_FINISH_STOP = 0, BITROLL_FINISH_LENGTH = 1, BITROLL_FINISH_CONTEXT = 2 } bitroll_finish;

/* Completions, owned by the library (bitroll_completions_free). */
typedef struct {
    int64_t n;
    int64_t *offsets;       /* (n+1) CSR */
    int32_t *tokens;        /* (offsets[n]) */
    float *logprobs;        /* (offsets[n]) */
    uint64_t *digests;      /* (offsets[n]) */
    int8_t *finish_reason;  /* (n) bitroll_finish */
    int64_t weight_version; /* the engine's weight version when they were generated */
} bitroll_completions;

/* Samples a completion for every prompt. Errors: EINVAL (bad sampling parameters, ids, lengths), ERUNTIME, ENOMEM;
 * *out is NULL on failure. */
bitroll_status bitroll_generate(bitroll_engine *e, const bitroll_generate_in *in, bitroll_completions **out);
void bitroll_completions_free(bitroll_completions *c);

/* ---------------------------------------------------------------- weights
 * A weight update stages tensors by their Hugging Face name (as in the checkpoint's safetensors) and commits them
 * together. Each tensor is converted to the checkpoint's dtype of that tensor with round-to-nearest-even (what
 * torch's .to(bfloat16) and save_pretrained do), so after a commit the engine's weights, and its fingerprint, are
 * those of the same tensors saved as a checkpoint (with the same config.json) and loaded. Staged tensors are
 * invisible until the commit; a failed commit leaves the engine's weights as they were. */

typedef enum { BITROLL_DTYPE_F32 = 0, BITROLL_DTYPE_BF16 = 1 } bitroll_dtype;

/* Stages `name`: shape (ndim <= 4) must equal the checkpoint tensor's; data holds numel elements of dtype, C order,
 * in host memory (on_device 0) or in the engine's GPU memory (on_device 1). The bytes are copied before return.
 * Errors: EINVAL (unknown name, shape, dtype, random-weights engine). */
bitroll_status bitroll_weights_set(bitroll_engine *e, const char *name, bitroll_dtype dtype, const int64_t *shape,
                                   int ndim, const void *data, int on_device);
/* Applies the staged tensors: new weights, fingerprint, and weight_version = *version when version is non-NULL and
 * *version >= 0, else the previous version + 1 (the version applied is written back to *version). */
bitroll_status bitroll_weights_commit(bitroll_engine *e, int64_t *version);
/* Drops the staged tensors. */
void bitroll_weights_discard(bitroll_engine *e);
/* Replaces the weights by the checkpoint in dir (same architecture and shapes); weight_version as for commit. */
bitroll_status bitroll_weights_reload(bitroll_engine *e, const char *dir, int64_t *version);

/* ---------------------------------------------------------------- files */

/* A rollouts file (docs/FORMAT.md), read and validated; the arrays belong to the handle. */
typedef struct {
    int64_t n;
    const int64_t *sample_id, *prompt_index;
    const int32_t *sample_index;
    const int64_t *prompt_offsets;
    const int32_t *prompt_tokens;
    const int64_t *completion_offsets;
    const int32_t *completion_tokens;
    const float *logprobs;
    const uint64_t *digests;
    const int8_t *finish_reason;
    const float *temperature, *top_p;
    const int32_t *top_k;
    const uint64_t *seed;
    const char *model_fingerprint; /* of the weights that generated it */
    const char *kernel_mode;
    int64_t weight_version;
} bitroll_rollouts;

bitroll_status bitroll_rollouts_read(const char *path, bitroll_rollouts **out, bitroll_error *err);
void bitroll_rollouts_free(bitroll_rollouts *r);

/* Scores `r` with e (bitroll_score over its samples, each at its recorded temperature) and writes a scores file at
 * path (atomically) that `bitroll verify` and bitroll_verify_files accept. The engine's fingerprint must equal the
 * file's model fingerprint (EINVAL, naming both) unless allow_other_policy is 1 (PPO's later minibatches: the file
 * then records the scoring model, and verify refuses the pair, saying why). */
bitroll_status bitroll_score_rollouts(bitroll_engine *e, const bitroll_rollouts *r, const char *path,
                                      int allow_other_policy);

typedef struct {
    int64_t samples, tokens;
    int64_t logprob_mismatches, digest_mismatches;
    double max_abs_delta;       /* max |logprob_rollouts - logprob_scores| over the tokens (NaN if any is NaN) */
    double kl_estimate;         /* mean(logprob_rollouts - logprob_scores) over the tokens */
    int64_t first_sample_id;    /* of the first mismatching token; -1 when none */
    int64_t first_token;        /* its index in the completion */
    float first_logprob[2];     /* rollouts, scores */
    uint64_t first_digest[2];
} bitroll_verify_report;

/* Compares every completion token's log-prob and digest of a rollouts file and a scores file bit for bit.
 * Returns OK (all equal), MISMATCH (report filled), or EIO/EFORMAT/EINVAL (unreadable files, files that do not
 * belong together: the message says why). */
bitroll_status bitroll_verify_files(const char *rollouts_path, const char *scores_path, bitroll_verify_report *report,
                                    bitroll_error *err);

#ifdef __cplusplus
}
#endif

#endif
