/* The rollout engine: a backend table (rollout_backend_i) and its context. This file is the only one outside
 * kernels/ that knows which backends the build holds. */
#include "rollout/engine.h"

#include <stdlib.h>
#include <string.h>

struct rollout_engine {
    const rollout_backend_i *be;
    void *ctx;
    const policy_weights *w;
    rollout_engine_opts o;
};

extern const rollout_backend_i rollout_backend_cpu;
#ifdef BR_HAVE_CUDA
extern const rollout_backend_i rollout_backend_cuda;
#endif

const rollout_backend_i *rollout_backend(rollout_device d) {
    switch (d) {
    case ROLLOUT_DEVICE_CPU: return &rollout_backend_cpu;
    case ROLLOUT_DEVICE_CUDA:
#ifdef BR_HAVE_CUDA
        return &rollout_backend_cuda;
#else
        return NULL;
#endif
    }
    return NULL;
}

const char *rollout_device_name(rollout_device d) { return d == ROLLOUT_DEVICE_CUDA ? "cuda" : "cpu"; }

int rollout_device_parse(const char *s, rollout_device *out) {
    if (s && !strcmp(s, "cpu")) *out = ROLLOUT_DEVICE_CPU;
    else if (s && !strcmp(s, "cuda")) *out = ROLLOUT_DEVICE_CUDA;
    else return -1;
    return 0;
}

br_status rollout_engine_create(const policy_weights *w, const rollout_engine_opts *o, rollout_engine **out) {
    *out = NULL;
    const rollout_backend_i *be = rollout_backend(o->device);
    if (!be)
        return br_fail(BR_EINVAL, "--device %s: this bitroll was built without CUDA (configure with -DBITROLL_CUDA=ON)",
                       rollout_device_name(o->device));
    rollout_engine *e = calloc(1, sizeof *e);
    if (!e) return br_fail(BR_ENOMEM, "engine: out of memory");
    e->be = be;
    e->w = w;
    e->o = *o;
    br_status rc = be->create(w, o, &e->ctx);
    if (rc != BR_OK) {
        free(e);
        return rc;
    }
    *out = e;
    return BR_OK;
}

void rollout_engine_free(rollout_engine *e) {
    if (!e) return;
    e->be->destroy(e->ctx);
    free(e);
}

int rollout_engine_max_tokens(const rollout_engine *e) { return e->o.max_tokens; }
const policy_weights *rollout_engine_weights(const rollout_engine *e) { return e->w; }
const rollout_engine_opts *rollout_engine_options(const rollout_engine *e) { return &e->o; }
policy_kvcache *rollout_engine_kv(rollout_engine *e) { return e->be->kv(e->ctx); }

br_status rollout_engine_kv_copy_page(rollout_engine *e, int32_t dst, int32_t src) {
    const policy_kvcache *kv = e->be->kv(e->ctx);
    if (dst < 0 || src < 0 || dst >= kv->n_pages || src >= kv->n_pages)
        return br_fail(BR_EINVAL, "engine: KV page copy %d -> %d outside the cache's %d pages", src, dst, kv->n_pages);
    if (dst == src) return BR_OK;
    return e->be->kv_copy_page(e->ctx, dst, src);
}

br_status rollout_engine_step(rollout_engine *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
    return e->be->step(e->ctx, b, rows, out);
}

br_status rollout_engine_last_logits(rollout_engine *e, float *out, int rows) {
    return e->be->last_logits(e->ctx, out, rows);
}
