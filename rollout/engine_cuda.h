/* The CUDA backend of rollout_engine (built when BR_HAVE_CUDA): see engine_cuda.c. */
#ifndef ROLLOUT_ENGINE_CUDA_H
#define ROLLOUT_ENGINE_CUDA_H

#include "rollout/engine.h"

typedef struct rollout_cuda rollout_cuda;

/* tp: NULL or size 1 for the whole model; else this rank's share of a tensor-parallel group (DESIGN 7): its
 * attention heads and MLP columns, row-parallel partials all-gathered with tp->dev_allgather (invariant mode). */
/* wb: NULL, or the weights broadcast of a multi-rank run (rollout_weights_bcast; not with tensor parallelism). */
br_status rollout_cuda_create(const policy_weights *w, const char *kernels, int max_tokens, int n_pages, int page_size,
                              const policy_tp *tp, const rollout_weights_bcast *wb, rollout_cuda **out);
void rollout_cuda_free(rollout_cuda *e);
policy_kvcache *rollout_cuda_kv(rollout_cuda *e);
br_status rollout_cuda_step(rollout_cuda *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out);
/* Copies the logits of the last step's rows (R, V) to the host (for tests against reference logits). */
void rollout_cuda_last_logits(rollout_cuda *e, float *out, int rows);

#endif
