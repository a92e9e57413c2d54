/* Token sampler: greedy, or Gumbel-max over the top-k / top-p candidate set, with noise keyed by
 * (seed, sample id, position, token id) so a sample's tokens never depend on the batch, rank or order. */
#ifndef ROLLOUT_SAMPLER_H
#define ROLLOUT_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "common/br.h"

typedef struct {
    float temperature; /* >= 0, finite; 0 = greedy (argmax) */
    float top_p;       /* (0, 1]; 1 = off */
    int32_t top_k;     /* 0 = off, else 1 .. vocab */
    uint64_t seed;     /* run seed: the Philox key */
} rollout_sampling;

/* Rejects (never clamps, STYLE 9) temperature < 0 or non-finite, top_p outside (0, 1] or NaN,
 * top_k < 0 or > vocab. BR_EINVAL with a message naming the field and the value. */
br_status rollout_sampling_check(const rollout_sampling *s, int vocab);

/* Bytes of scratch the functions below need for a vocabulary of V: V int32 candidate ids, V fp32
 * log-probs (top-p) and V fp32 noise values (rollout_sample). Allocate once, outside the decode loop. */
size_t rollout_sample_scratch_bytes(int V);

/* The candidate set of top-k / top-p, deterministic:
 * 1. candidates ordered by (logit desc, id asc); NaN logits rank after every number;
 * 2. top_k > 0: the first top_k of that order are kept (a bounded heap, O(V log k));
 * 3. top_p < 1: of those, the smallest prefix whose probability mass reaches top_p is kept, where
 *    p_j = kern_expf(kern_cpu_logsoftmax(logits, V, T)[j]) is the softmax over the FULL vocabulary (not
 *    renormalised over the top k), summed in fp32 in the order of step 1 starting from the top, and the
 *    prefix ends at the first i with sum_{0..i} p >= top_p (always >= 1 token; when rounding leaves the
 *    sum of all kept tokens below top_p, all of them are kept).
 * Writes the kept ids, in the order of step 1, to kept (V) int32 and returns how many. s must have
 * passed rollout_sampling_check with temperature > 0. scratch: rollout_sample_scratch_bytes(V) bytes
 * (kept may point into it: it is the first V int32 of scratch). O(V log V) at worst. */
int rollout_filter(const float *logits /* (V) fp32 */, int V, const rollout_sampling *s, int32_t *kept /* (V) */,
                   void *scratch);

/* The pure selection (STYLE 7): the noise comes in as an argument.
 * temperature == 0: kern_cpu_argmax(logits) (ties -> lowest id; top_k/top_p cannot change it: the argmax
 * is the first candidate of the order above). Otherwise Gumbel-max over the candidate set of
 * rollout_filter: the token j maximising logits[j] / temperature + gumbel[j] in fp32, ties -> lower id.
 * gumbel (V) fp32 is only read at candidate ids. scratch: rollout_sample_scratch_bytes(V) bytes; the
 * noise may live in it (rollout_sample puts it in the last V floats, which this function leaves alone). */
int32_t rollout_sample_with_noise(const float *logits /* (V) fp32 */, int V, const rollout_sampling *s,
                                  const float *gumbel /* (V) fp32 */, void *scratch);

/* Gumbel noise of one (sample, position) row: g_j = -kern_logf(-kern_logf(br_uniform01(
 * br_rand_u32(seed, sample_id, position, j)))) for j < V (finite: br_uniform01 is in the open (0,1)). */
void rollout_gumbel(float *g /* (V) fp32 */, int V, uint64_t seed, uint64_t sample_id, int32_t position);

/* Samples the token at `position` of sample `sample_id`: rollout_sample_with_noise with the noise of
 * rollout_gumbel(s->seed, sample_id, position) (not computed when temperature == 0). `position` is the
 * absolute position in the sequence of the token being chosen (prompt length + completion index);
 * generate must pass the same value whatever the batch, rank or restart. s must have passed
 * rollout_sampling_check; scratch: rollout_sample_scratch_bytes(V) bytes. Returns the token id. */
int32_t rollout_sample(const float *logits /* (V) fp32 */, int V, const rollout_sampling *s, uint64_t sample_id,
                       int32_t position, void *scratch);

/* The recorded log-prob: log-softmax(logits / T)[token] over the FULL vocabulary (not the top-k/top-p
 * set), T = temperature, or 1 when temperature == 0 (greedy). kern_cpu_logprob does the arithmetic.
 * generate and score both record exactly this function's value. */
float rollout_logprob(const float *logits /* (V) fp32 */, int V, float temperature, int32_t token);

#endif
