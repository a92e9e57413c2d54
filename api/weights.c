/* libbitroll weight updates: stage tensors by name, commit them as a new weight version (bitroll.h). A commit
 * builds the new policy_weights (policy_weights_update: as if saved and reloaded) and a new rollout engine from
 * them before it drops the old ones, so a failed commit changes nothing. */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

void bitroll_weights_discard(bitroll_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_staged; i++) {
        free(e->staged[i].name);
        free(e->staged[i].data);
    }
    e->n_staged = 0;
}

bitroll_status bitroll_weights_set(bitroll_engine *e, const char *name, bitroll_dtype dtype, const int64_t *shape,
                                   int ndim, const void *data, int on_device) {
    if (!e) return BITROLL_EINVAL;
    if (e->w->random || !e->w->st)
        return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: a random-weights engine has no tensors to set"));
    if (!name || !shape || !data || ndim < 1 || ndim > 4)
        return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: name, shape and data are required and 1 <= ndim "
                                              "<= 4 (got ndim %d)", ndim));
    if (dtype != BITROLL_DTYPE_F32 && dtype != BITROLL_DTYPE_BF16)
        return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: '%s': dtype %d is not F32 or BF16", name, (int)dtype));
    if (on_device && !e->be->to_host)
        return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: '%s': on_device = 1 needs a CUDA engine", name));
    const st_tensor *t = policy_st_find(e->w->st, name);
    if (!t) return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: '%s' is not a tensor of %s", name, e->w->dir));
    int ok = ndim == t->ndim;
    for (int d = 0; ok && d < ndim; d++) ok = shape[d] == t->shape[d];
    if (!ok)
        return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: '%s': the shape given differs from the "
                                              "checkpoint's (%d dims, first %lld)",
                                   name, t->ndim, (long long)t->shape[0]));
    for (int i = 0; i < e->n_staged; i++)
        if (!strcmp(e->staged[i].name, name))
            return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_set: '%s' is already staged", name));
    if (e->n_staged == e->cap_staged) {
        int cap = e->cap_staged ? 2 * e->cap_staged : 16;
        api_staged *s = realloc(e->staged, (size_t)cap * sizeof *s);
        if (!s) return api_fail(e, br_fail(BR_ENOMEM, "bitroll_weights_set: out of memory"));
        e->staged = s;
        e->cap_staged = cap;
    }
    const size_t bytes = (size_t)t->numel * (dtype == BITROLL_DTYPE_F32 ? 4 : 2);
    api_staged *s = &e->staged[e->n_staged];
    memset(s, 0, sizeof *s);
    s->name = malloc(strlen(name) + 1);
    s->data = malloc(bytes + 1);
    if (!s->name || !s->data) {
        free(s->name);
        free(s->data);
        return api_fail(e, br_fail(BR_ENOMEM, "bitroll_weights_set: '%s': out of memory for %zu bytes", name, bytes));
    }
    strcpy(s->name, name);
    if (on_device) {
        api_bind(e);
        e->be->to_host(s->data, data, bytes);
    } else {
        memcpy(s->data, data, bytes);
    }
    s->dtype = dtype == BITROLL_DTYPE_F32 ? ST_F32 : ST_BF16;
    s->ndim = ndim;
    memcpy(s->shape, shape, (size_t)ndim * sizeof *shape);
    e->n_staged++;
    return api_fail(e, BR_OK);
}

/* Swaps in weights w (owned) with a new engine; on failure frees w and keeps the old ones. */
static br_status swap_weights(bitroll_engine *e, policy_weights *w, int64_t *version) {
    rollout_engine *eng = NULL;
    api_bind(e);
    br_status rc = api_engine_create(e, w, &eng);
    if (rc != BR_OK) {
        policy_weights_free(w);
        return rc;
    }
    rollout_engine_free(e->eng);
    policy_weights_free(e->w);
    e->eng = eng;
    e->w = w;
    e->so.engine = eng;
    e->weight_version = version && *version >= 0 ? *version : e->weight_version + 1;
    if (version) *version = e->weight_version;
    return BR_OK;
}

bitroll_status bitroll_weights_commit(bitroll_engine *e, int64_t *version) {
    if (!e) return BITROLL_EINVAL;
    policy_tensor_update *u = calloc((size_t)e->n_staged + 1, sizeof *u);
    if (!u) return api_fail(e, br_fail(BR_ENOMEM, "bitroll_weights_commit: out of memory"));
    for (int i = 0; i < e->n_staged; i++)
        u[i] = (policy_tensor_update){e->staged[i].name, e->staged[i].dtype, e->staged[i].shape, e->staged[i].ndim,
                                      e->staged[i].data};
    policy_weights *w = NULL;
    br_status rc = policy_weights_update(e->w, u, e->n_staged, &w);
    free(u);
    if (rc == BR_OK) rc = swap_weights(e, w, version);
    if (rc == BR_OK) bitroll_weights_discard(e);
    return api_fail(e, rc);
}

bitroll_status bitroll_weights_reload(bitroll_engine *e, const char *dir, int64_t *version) {
    if (!e) return BITROLL_EINVAL;
    if (!dir) return api_fail(e, br_fail(BR_EINVAL, "bitroll_weights_reload: dir is NULL"));
    policy_weights *w = NULL;
    br_status rc = policy_weights_load(dir, &w);
    if (rc == BR_OK) {
        const policy_config *a = &e->w->cfg, *b = &w->cfg;
        if (a->arch != b->arch || a->dim != b->dim || a->n_layers != b->n_layers || a->n_heads != b->n_heads ||
            a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim || a->ffn_dim != b->ffn_dim ||
            a->vocab != b->vocab || a->max_pos != b->max_pos) {
            rc = br_fail(BR_EINVAL, "bitroll_weights_reload: %s is a %s of another shape than the engine's %s", dir,
                         b->model_type, e->w->dir);
            policy_weights_free(w);
            w = NULL;
        }
    }
    if (rc == BR_OK && e->tpw.tp_size > 1) rc = policy_tp_check(&w->cfg, e->tpw.tp_size);
    if (rc == BR_OK) rc = swap_weights(e, w, version);
    else policy_weights_free(w);
    return api_fail(e, rc);
}
