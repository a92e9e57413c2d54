/* The CPU backend of rollout_engine: policy_forward on the reference kernels (kernels/cpu), then, per row, the
 * sampler, the log-prob and the digest. Every output is fp32 in the fixed order of kernels/cpu: both the
 * `invariant` and the `fp32` contract; `standard` (library heuristics) exists only on CUDA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kern_cpu.h"
#include "rollout/engine.h"

typedef struct {
    const policy_weights *w;
    int max_tokens, last_rows;
    policy_state *st;
    policy_kvcache *kv;
    float *logits;  /* (max_tokens, V) */
    void *scratch;  /* rollout_sample_scratch_bytes(V) */
} cpu_engine;

static void cpu_destroy(void *ctx) {
    cpu_engine *e = ctx;
    if (!e) return;
    policy_state_free(e->st);
    policy_kv_free(e->kv);
    free(e->logits);
    free(e->scratch);
    free(e);
}

static br_status cpu_create(const policy_weights *w, const rollout_engine_opts *o, void **out) {
    *out = NULL;
    if (w->random) return br_fail(BR_EINVAL, "--random-weights: the weights are generated on the GPU; use --device cuda");
    if (o->mode == KERN_MODE_STANDARD)
        return br_fail(BR_EINVAL, "--kernels standard: exists only on --device cuda (the CPU kernels are always invariant)");
    br_status rc = BR_OK;
    cpu_engine *e = calloc(1, sizeof *e);
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
    cpu_destroy(e);
    return rc;
}

static policy_kvcache *cpu_kv(void *ctx) { return ((cpu_engine *)ctx)->kv; }

static br_status cpu_step(void *ctx, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
    cpu_engine *e = ctx;
    const int V = e->w->cfg.vocab;
    br_status rc = policy_forward(e->w, e->st, e->kv, b, e->logits);
    if (rc != BR_OK) return rc;
    int n_rows = 0;
    for (int i = 0; i < b->n; i++) n_rows += !b->want_logits || b->want_logits[i];
    e->last_rows = n_rows;
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

static br_status cpu_last_logits(void *ctx, float *out, int rows) {
    cpu_engine *e = ctx;
    if (rows > e->last_rows) return br_fail(BR_EINVAL, "engine: the last step had %d logits rows, not %d", e->last_rows, rows);
    memcpy(out, e->logits, (size_t)rows * e->w->cfg.vocab * sizeof(float));
    return BR_OK;
}

static br_status cpu_kv_copy_page(void *ctx, int32_t dst, int32_t src) {
    const policy_kvcache *kv = ((cpu_engine *)ctx)->kv;
    const size_t page = (size_t)kv->page_size * kv->n_kv * kv->hd, layer = (size_t)kv->n_pages * page;
    for (int l = 0; l < kv->n_layers; l++) {
        memcpy(kv->k + l * layer + (size_t)dst * page, kv->k + l * layer + (size_t)src * page, page * sizeof(float));
        memcpy(kv->v + l * layer + (size_t)dst * page, kv->v + l * layer + (size_t)src * page, page * sizeof(float));
    }
    return BR_OK;
}

static int cpu_device_count(void) { return 1; }
static void cpu_select_device(int index) { (void)index; }
static void cpu_device_name(int index, char *buf, int cap) {
    (void)index;
    if (cap > 0) snprintf(buf, (size_t)cap, "cpu");
}

const rollout_backend_i rollout_backend_cpu = {
    "cpu", cpu_create, cpu_destroy, cpu_kv, cpu_step, cpu_last_logits, cpu_device_count, cpu_select_device,
    cpu_device_name, NULL, NULL, NULL, NULL, cpu_kv_copy_page,
};
