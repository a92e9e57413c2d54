/* Prompts file (DESIGN 4): one JSON object per line -> validated requests with resolved per-prompt
 * settings and the sample-id layout. Every rejection names the file, the line and the field. */
#ifndef ROLLOUT_REQUESTS_H
#define ROLLOUT_REQUESTS_H

/* Limits of one prompts file: samples per prompt ("n", --n) and samples in all (each costs memory before any work). */
#define ROLLOUT_MAX_N (1 << 20)
#define ROLLOUT_MAX_SAMPLES ((int64_t)1 << 26)

#include <stddef.h>
#include <stdint.h>

#include "common/br.h"
#include "rollout/sampler.h"

/* Values used where a line does not set the key: the CLI's --n, --max-new-tokens, --temperature,
 * --top-p, --top-k, --seed, --stop-id. They go through the same checks as values read from the file. */
typedef struct {
    int32_t n;                 /* samples per prompt, >= 1 */
    int32_t max_new_tokens;    /* >= 1 */
    rollout_sampling sampling; /* temperature, top_p, top_k, seed (the seed is the run seed: not per line) */
    const int32_t *stop_ids;   /* (n_stop_ids), may be NULL when n_stop_ids == 0; copied */
    int n_stop_ids;
} rollout_defaults;

typedef struct {
    char *id;                  /* "id" (string, or integer number printed in decimal); NULL when absent */
    char *text;                /* "prompt" text waiting for a tokenizer; NULL when "prompt_ids" was given */
    int32_t *ids;              /* (n_ids) prompt token ids, owned; NULL for a text prompt until
                                * rollout_requests_set_prompt_ids */
    int n_ids;
    int32_t n;                 /* samples of this prompt */
    int32_t max_new_tokens;
    rollout_sampling sampling; /* resolved: the line's values over the defaults */
    int32_t *stop_ids;         /* (n_stop_ids), owned; the line's "stop_ids" replaces the defaults' */
    int n_stop_ids;
    int line;                  /* 1-based line in the prompts file, for later messages */
    int64_t first_sample_id;   /* sample ids of this prompt: first_sample_id .. first_sample_id + n - 1 */
} rollout_prompt;

/* Sample ids: consecutive per prompt, in prompt order -- a running prefix sum of the per-prompt n:
 * sample_id(p, s) = sum_{q < p} n_q + s. When every prompt has the same n this is DESIGN 4's
 * prompt_index * n + sample_index; when lines override "n" it stays dense, stable and independent of
 * ranks (it depends only on the file and the defaults). */
typedef struct {
    int n_prompts;
    rollout_prompt *prompts;   /* (n_prompts) in file order */
    int64_t n_samples;         /* sum of n over the prompts */
    char *path;                /* the file name used in messages */
    int vocab, max_pos;        /* the limits the ids and lengths were checked against */
} rollout_requests;

/* Reads and validates a prompts file. Each non-empty (not all-whitespace) line is one object with
 * exactly one of "prompt_ids" (non-empty array of integer ids, 0 <= id < vocab) or "prompt" (non-empty
 * string; the caller tokenizes it, then calls rollout_requests_set_prompt_ids), and optional "id" (string
 * or integer), "n" (>= 1), "max_new_tokens" (>= 1), "temperature", "top_p", "top_k" (rollout_sampling_check),
 * "stop_ids" (array of ids < vocab). Unknown or repeated keys, wrong types, non-integers where an integer
 * is expected, prompt length + max_new_tokens > max_pos, a file with no prompts: BR_EINVAL, message
 * "<path>: line <L>: field '<key>' ..."; an unreadable file: BR_EIO. *out is NULL on failure. */
br_status rollout_requests_load(const char *path, const rollout_defaults *d, int vocab, int max_pos,
                                rollout_requests **out);
/* The same from text in memory (len bytes, no NUL needed); `name` stands for the file in messages. */
br_status rollout_requests_parse(const char *text, size_t len, const char *name, const rollout_defaults *d,
                                 int vocab, int max_pos, rollout_requests **out);
void rollout_requests_free(rollout_requests *r); /* NULL: no-op */

/* Gives a text prompt its token ids (copied) and checks them like "prompt_ids": non-empty, ids < vocab,
 * length + max_new_tokens <= max_pos; the message names the file and the prompt's line. */
br_status rollout_requests_set_prompt_ids(rollout_requests *r, int prompt_index, const int32_t *ids, int n_ids);

/* sample_id of (prompt_index, sample_index); sample_index < prompts[prompt_index].n. */
int64_t rollout_requests_sample_id(const rollout_requests *r, int prompt_index, int32_t sample_index);
/* The inverse: BR_EINVAL when sample_id is outside [0, n_samples). O(log n_prompts). */
br_status rollout_requests_locate(const rollout_requests *r, int64_t sample_id, int *prompt_index,
                                  int32_t *sample_index);

#endif
