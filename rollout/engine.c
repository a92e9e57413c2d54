/* The rollout engine: the CPU backend here (policy_forward on the reference kernels, then the sampler, log-prob
 * and digest per row); --device cuda hands every step to the CUDA backend (engine_cuda.c). */
#include "rollout/engine.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kern_cpu.h"
#include "rollout/engine_cuda.h"

struct rollout_engine {
    const policy_weights *w;
    int max_tokens;
#ifdef BR_HAVE_CUDA
    rollout_cuda *cuda; /* non-NULL: the CUDA backend runs the steps */
#endif
    policy_state *st;
    policy_kvcache *kv;
    float *logits;  /* (max_tokens, V) */
    void *scratch;  /* rollout_sample_scratch_bytes(V) */
};

br_status rollout_engine_create(const policy_weights *w, const rollout_engine_opts *o, rollout_engine **out) {
    *out = NULL;
    if (!strcmp(o->device, "cuda")) {
#ifdef BR_HAVE_CUDA
        rollout_engine *e = calloc(1, sizeof *e);
        if (!e) return br_fail(BR_ENOMEM, "engine: out of memory");
        e->w = w;
        e->max_tokens = o->max_tokens;
        br_status rc = rollout_cuda_create(w, o->kernels, o->max_tokens, o->n_pages, o->page_size, o->tp, o->wb, &e->cuda);
        if (rc != BR_OK) {
            free(e);
            return rc;
        }
        *out = e;
        return BR_OK;
#else
        return br_fail(BR_EINVAL, "--device cuda: this bitroll was built without CUDA (configure with -DBITROLL_CUDA=ON)");
#endif
    }
    if (strcmp(o->device, "cpu")) return br_fail(BR_EINVAL, "--device: '%s' is not one of cpu, cuda", o->device);
    if (w->random) return br_fail(BR_EINVAL, "--random-weights: the weights are generated on the GPU; use --device cuda");
    if (strcmp(o->kernels, "invariant") && strcmp(o->kernels, "fp32"))
        return br_fail(BR_EINVAL, "--kernels %s: the CPU kernels are always invariant fp32 (use invariant or fp32)",
                       o->kernels);
    br_status rc = BR_OK;
    rollout_engine *e = calloc(1, sizeof *e);
    if (!e) return br_fail(BR_ENOMEM, "engine: out of memory");
    e->w = w;
    e->max_tokens = o->max_tokens;
    if ((rc = policy_state_create_tp(w, o->max_tokens, o->tp, &e->st)) != BR_OK) goto fail;
    if ((rc = policy_kv_create_tp(&w->cfg, o->tp ? o->tp->size : 1, o->n_pages, o->page_size, &e->kv)) != BR_OK) goto fail;
    e->logits = malloc((size_t)o->max_tokens * w->cfg.vocab * sizeof(float));
    e->scratch = malloc(rollout_sample_scratch_bytes(w->cfg.vocab));
    if (!e->logits || !e->scratch) {
        rc = br_fail(BR_ENOMEM, "engine: cannot allocate logits for %d tokens x %d vocabulary", o->max_tokens,
                     w->cfg.vocab);
        goto fail;
    }
    *out = e;
    return BR_OK;
fail:
    rollout_engine_free(e);
    return rc;
}

void rollout_engine_free(rollout_engine *e) {
    if (!e) return;
#ifdef BR_HAVE_CUDA
    rollout_cuda_free(e->cuda);
#endif
    policy_state_free(e->st);
    policy_kv_free(e->kv);
    free(e->logits);
    free(e->scratch);
    free(e);
}

int rollout_engine_max_tokens(const rollout_engine *e) { return e->max_tokens; }

policy_kvcache *rollout_engine_kv(rollout_engine *e) {
#ifdef BR_HAVE_CUDA
    if (e->cuda) return rollout_cuda_kv(e->cuda);
#endif
    return e->kv;
}

br_status rollout_engine_step(rollout_engine *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
#ifdef BR_HAVE_CUDA
    if (e->cuda) return rollout_cuda_step(e->cuda, b, rows, out);
#endif
    const int V = e->w->cfg.vocab;
    br_status rc = policy_forward(e->w, e->st, e->kv, b, e->logits);
    if (rc != BR_OK) return rc;
    int n_rows = 0;
    for (int i = 0; i < b->n; i++) n_rows += !b->want_logits || b->want_logits[i];
    for (int r = 0; r < n_rows; r++) {
        const float *lg = e->logits + (size_t)r * V;
        const rollout_row *row = &rows[r];
        int32_t tok = row->target >= 0
                          ? row->target
                          : rollout_sample(lg, V, row->sampling, (uint64_t)row->sample_id, row->position, e->scratch);
        out[r].token = tok;
        out[r].logprob = rollout_logprob(lg, V, row->sampling->temperature, tok);
        out[r].digest = kern_cpu_digest(lg, V);
    }
    return BR_OK;
}
