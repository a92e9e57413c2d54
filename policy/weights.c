/* policy weights: binds the checkpoint's tensors to policy_weights for the configured architecture.
 * Matrices stay in the mapping as strided kern_wt views (GPT-2's fused c_attn is split by strides, not copied). */
#include "policy/policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

typedef struct {
    const policy_st *st;
    int64_t n_params;
} bind_ctx;

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? "," : "", shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Finds `name` and checks it is a float tensor of exactly the expected shape. */
static br_status bind_find(bind_ctx *c, const char *name, int ndim, const int64_t *shape, const st_tensor **out) {
    const st_tensor *t = policy_st_find(c->st, name);
    if (!t) return br_fail(BR_EFORMAT, "%s: tensor '%s' is missing", policy_st_path(c->st), name);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[160], want[160];
        shape_str(got, sizeof got, t->shape, t->ndim);
        shape_str(want, sizeof want, shape, ndim);
        return br_fail(BR_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", t->file, name, got, want);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
        return br_fail(BR_EFORMAT, "%s: tensor '%s' has dtype %s, expected F32, BF16 or F16", t->file, name,
                       t->dtype_name);
    *out = t;
    return BR_OK;
}

static kern_dtype kdtype(st_dtype dt) { return dt == ST_F32 ? KERN_F32 : dt == ST_BF16 ? KERN_BF16 : KERN_F16; }

/* Matrix of logical shape (N, K). conv1d = 0: HF nn.Linear stored (N, K), element (n,k) at n*K + k.
 * conv1d = 1: GPT-2 Conv1D stored (K, n_total) with this matrix in columns [col0, col0+N): (n,k) at k*n_total + col0+n. */
static br_status bind_mat(bind_ctx *c, const char *name, int64_t N, int64_t K, int conv1d, int64_t n_total,
                          int64_t col0, kern_wt *out, int count) {
    const st_tensor *t = NULL;
    int64_t shape[2] = {conv1d ? K : N, conv1d ? n_total : K};
    br_status s = bind_find(c, name, 2, shape, &t);
    if (s != BR_OK) return s;
    int es = t->dtype == ST_F32 ? 4 : 2;
    /* Kernels dereference typed pointers: the mapping is page-aligned, so only the offset in the file matters. */
    if ((uintptr_t)t->data % (uintptr_t)es != 0)
        return br_fail(BR_EFORMAT, "%s: tensor '%s' data is not aligned to its %d-byte element", t->file, name, es);
    out->data = (const uint8_t *)t->data + (size_t)col0 * (size_t)es;
    out->dtype = kdtype(t->dtype);
    out->n = N;
    out->k = K;
    out->sn = conv1d ? 1 : K;
    out->sk = conv1d ? n_total : 1;
    if (count) c->n_params += t->numel;
    return BR_OK;
}

/* Vector elements [off, off+len) of a 1-D tensor of length total, converted to an owned fp32 array. */
static br_status bind_vec(bind_ctx *c, const char *name, int64_t total, int64_t off, int64_t len, float **out,
                          int count) {
    const st_tensor *t = NULL;
    br_status s = bind_find(c, name, 1, &total, &t);
    if (s != BR_OK) return s;
    float *v = malloc((size_t)(len ? len : 1) * sizeof *v);
    if (!v) return br_fail(BR_ENOMEM, "%s: tensor '%s': out of memory", t->file, name);
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < len; i++) {
        if (t->dtype == ST_F32) {
            memcpy(&v[i], p + (size_t)(off + i) * 4, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + (size_t)(off + i) * 2, 2);
            v[i] = t->dtype == ST_BF16 ? br_bf16_to_f32(h) : br_f16_to_f32(h);
        }
    }
    *out = v; /* each field is bound once, from calloc'd (NULL) storage */
    if (count) c->n_params += t->numel;
    return BR_OK;
}

static br_status bind_llama(bind_ctx *c, policy_weights *w) {
    const policy_config *cfg = &w->cfg;
    const int64_t D = cfg->dim, F = cfg->ffn_dim, V = cfg->vocab, hd = cfg->head_dim;
    const int64_t QD = (int64_t)cfg->n_heads * hd, KVD = (int64_t)cfg->n_kv_heads * hd;
    char n[256];
    br_status s;
    if ((s = bind_mat(c, "model.embed_tokens.weight", V, D, 0, 0, 0, &w->embed, 1)) != BR_OK) return s;
    for (int l = 0; l < cfg->n_layers; l++) {
        policy_layer *L = &w->layers[l];
#define NAME(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), n)
        if ((s = bind_vec(c, NAME("input_layernorm.weight"), D, 0, D, &L->attn_norm_w, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("self_attn.q_proj.weight"), QD, D, 0, 0, 0, &L->wq, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("self_attn.k_proj.weight"), KVD, D, 0, 0, 0, &L->wk, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("self_attn.v_proj.weight"), KVD, D, 0, 0, 0, &L->wv, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("self_attn.o_proj.weight"), D, QD, 0, 0, 0, &L->wo, 1)) != BR_OK) return s;
        if (cfg->qkv_bias) {
            if ((s = bind_vec(c, NAME("self_attn.q_proj.bias"), QD, 0, QD, &L->bq, 1)) != BR_OK) return s;
            if ((s = bind_vec(c, NAME("self_attn.k_proj.bias"), KVD, 0, KVD, &L->bk, 1)) != BR_OK) return s;
            if ((s = bind_vec(c, NAME("self_attn.v_proj.bias"), KVD, 0, KVD, &L->bv, 1)) != BR_OK) return s;
        }
        if (cfg->qk_norm) {
            if ((s = bind_vec(c, NAME("self_attn.q_norm.weight"), hd, 0, hd, &L->q_norm, 1)) != BR_OK) return s;
            if ((s = bind_vec(c, NAME("self_attn.k_norm.weight"), hd, 0, hd, &L->k_norm, 1)) != BR_OK) return s;
        }
        if ((s = bind_vec(c, NAME("post_attention_layernorm.weight"), D, 0, D, &L->mlp_norm_w, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("mlp.gate_proj.weight"), F, D, 0, 0, 0, &L->w_gate, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("mlp.up_proj.weight"), F, D, 0, 0, 0, &L->w_up, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("mlp.down_proj.weight"), D, F, 0, 0, 0, &L->w_down, 1)) != BR_OK) return s;
#undef NAME
    }
    if ((s = bind_vec(c, "model.norm.weight", D, 0, D, &w->final_norm_w, 1)) != BR_OK) return s;
    if (cfg->tie_embeddings) w->lm_head = w->embed;
    else if ((s = bind_mat(c, "lm_head.weight", V, D, 0, 0, 0, &w->lm_head, 1)) != BR_OK) return s;
    return BR_OK;
}

static br_status bind_gpt2(bind_ctx *c, policy_weights *w) {
    const policy_config *cfg = &w->cfg;
    const int64_t D = cfg->dim, F = cfg->ffn_dim, V = cfg->vocab, P = cfg->max_pos;
    /* HF GPT2LMHeadModel saves "transformer.*"; GPT2Model (and some exports) save the bare names. */
    const char *pre = policy_st_find(c->st, "transformer.wte.weight") ? "transformer." : "";
    char n[256];
    br_status s;
#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
    if ((s = bind_mat(c, NAME("%swte.weight", pre), V, D, 0, 0, 0, &w->embed, 1)) != BR_OK) return s;
    if ((s = bind_mat(c, NAME("%swpe.weight", pre), P, D, 0, 0, 0, &w->pos_embed, 1)) != BR_OK) return s;
    for (int l = 0; l < cfg->n_layers; l++) {
        policy_layer *L = &w->layers[l];
        if ((s = bind_vec(c, NAME("%sh.%d.ln_1.weight", pre, l), D, 0, D, &L->attn_norm_w, 1)) != BR_OK) return s;
        if ((s = bind_vec(c, NAME("%sh.%d.ln_1.bias", pre, l), D, 0, D, &L->attn_norm_b, 1)) != BR_OK) return s;
        /* c_attn (D, 3D) = [q | k | v] along the output columns: three views of one tensor, counted once. */
        NAME("%sh.%d.attn.c_attn.weight", pre, l);
        if ((s = bind_mat(c, n, D, D, 1, 3 * D, 0, &L->wq, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, n, D, D, 1, 3 * D, D, &L->wk, 0)) != BR_OK) return s;
        if ((s = bind_mat(c, n, D, D, 1, 3 * D, 2 * D, &L->wv, 0)) != BR_OK) return s;
        NAME("%sh.%d.attn.c_attn.bias", pre, l);
        if ((s = bind_vec(c, n, 3 * D, 0, D, &L->bq, 1)) != BR_OK) return s;
        if ((s = bind_vec(c, n, 3 * D, D, D, &L->bk, 0)) != BR_OK) return s;
        if ((s = bind_vec(c, n, 3 * D, 2 * D, D, &L->bv, 0)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("%sh.%d.attn.c_proj.weight", pre, l), D, D, 1, D, 0, &L->wo, 1)) != BR_OK) return s;
        if ((s = bind_vec(c, NAME("%sh.%d.attn.c_proj.bias", pre, l), D, 0, D, &L->bo, 1)) != BR_OK) return s;
        if ((s = bind_vec(c, NAME("%sh.%d.ln_2.weight", pre, l), D, 0, D, &L->mlp_norm_w, 1)) != BR_OK) return s;
        if ((s = bind_vec(c, NAME("%sh.%d.ln_2.bias", pre, l), D, 0, D, &L->mlp_norm_b, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("%sh.%d.mlp.c_fc.weight", pre, l), F, D, 1, F, 0, &L->w_up, 1)) != BR_OK) return s;
        if ((s = bind_vec(c, NAME("%sh.%d.mlp.c_fc.bias", pre, l), F, 0, F, &L->b_up, 1)) != BR_OK) return s;
        if ((s = bind_mat(c, NAME("%sh.%d.mlp.c_proj.weight", pre, l), D, F, 1, D, 0, &L->w_down, 1)) != BR_OK)
            return s;
        if ((s = bind_vec(c, NAME("%sh.%d.mlp.c_proj.bias", pre, l), D, 0, D, &L->b_down, 1)) != BR_OK) return s;
    }
    if ((s = bind_vec(c, NAME("%sln_f.weight", pre), D, 0, D, &w->final_norm_w, 1)) != BR_OK) return s;
    if ((s = bind_vec(c, NAME("%sln_f.bias", pre), D, 0, D, &w->final_norm_b, 1)) != BR_OK) return s;
    if (cfg->tie_embeddings) w->lm_head = w->embed;
    else if ((s = bind_mat(c, "lm_head.weight", V, D, 0, 0, 0, &w->lm_head, 1)) != BR_OK) return s;
#undef NAME
    return BR_OK;
}

static void hash_u64(XXH3_state_t *h, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i)); /* little-endian on every host */
    XXH3_64bits_update(h, b, 8);
}

/* xxh3 over config.json bytes, then per tensor in name order: name, dtype, ndim, shape, byte count, bytes.
 * Strings are hashed with their NUL and numbers with a fixed width, so no two inputs share a byte stream. */
static br_status weights_fingerprint(const char *cfg_text, size_t cfg_len, const policy_st *st, uint64_t *out) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return br_fail(BR_ENOMEM, "fingerprint: out of memory");
    XXH3_64bits_reset(h);
    hash_u64(h, cfg_len);
    XXH3_64bits_update(h, cfg_text, cfg_len);
    for (int i = 0; i < policy_st_count(st); i++) {
        const st_tensor *t = policy_st_at(st, i);
        XXH3_64bits_update(h, t->name, strlen(t->name) + 1);
        XXH3_64bits_update(h, t->dtype_name, strlen(t->dtype_name) + 1);
        hash_u64(h, (uint64_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) hash_u64(h, (uint64_t)t->shape[d]);
        hash_u64(h, (uint64_t)t->nbytes);
        XXH3_64bits_update(h, t->data, t->nbytes);
    }
    *out = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return BR_OK;
}

void policy_weights_free(policy_weights *w) {
    if (!w) return;
    if (w->layers) {
        for (int l = 0; l < w->cfg.n_layers; l++) {
            policy_layer *L = &w->layers[l];
            free(L->attn_norm_w);
            free(L->attn_norm_b);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->q_norm);
            free(L->k_norm);
            free(L->bo);
            free(L->mlp_norm_w);
            free(L->mlp_norm_b);
            free(L->b_up);
            free(L->b_down);
        }
    }
    free(w->layers);
    free(w->final_norm_w);
    free(w->final_norm_b);
    free(w->dir);
    free(w->cfg_text);
    policy_st_free(w->st);
    free(w);
}

/* Binds w->st to w (config already parsed into w->cfg, w->cfg_text set) and computes the fingerprint. */
static br_status weights_bind(policy_weights *w) {
    w->layers = calloc((size_t)w->cfg.n_layers, sizeof *w->layers);
    if (!w->layers) return br_fail(BR_ENOMEM, "%s: cannot allocate %d layers", w->dir, w->cfg.n_layers);
    bind_ctx c = {.st = w->st, .n_params = 0};
    br_status s = w->cfg.arch == POLICY_ARCH_GPT2 ? bind_gpt2(&c, w) : bind_llama(&c, w);
    if (s != BR_OK) return s;
    w->n_params = c.n_params;
    w->dtype = w->embed.dtype;
    if ((s = weights_fingerprint(w->cfg_text, w->cfg_len, w->st, &w->fingerprint)) != BR_OK) return s;
    snprintf(w->fingerprint_hex, sizeof w->fingerprint_hex, "%016" PRIx64, w->fingerprint);
    return BR_OK;
}

br_status policy_weights_load(const char *dir, policy_weights **out) {
    br_status s = BR_OK;
    policy_weights *w = NULL;
    char *cfg_path = NULL, *cfg_text = NULL;
    size_t cfg_len = 0;
    *out = NULL;
    w = calloc(1, sizeof *w);
    size_t dl = strlen(dir);
    cfg_path = malloc(dl + sizeof "/config.json");
    if (w) w->dir = malloc(dl + 1);
    if (!w || !cfg_path || !w->dir) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", dir);
        goto cleanup;
    }
    memcpy(w->dir, dir, dl + 1);
    memcpy(cfg_path, dir, dl);
    memcpy(cfg_path + dl, "/config.json", sizeof "/config.json");
    if ((s = br_read_file(cfg_path, &cfg_text, &cfg_len)) != BR_OK) goto cleanup;
    if ((s = policy_config_parse(cfg_path, cfg_text, cfg_len, &w->cfg)) != BR_OK) goto cleanup;
    w->cfg_text = cfg_text;
    w->cfg_len = cfg_len;
    cfg_text = NULL;
    if ((s = policy_st_open(dir, &w->st)) != BR_OK) goto cleanup;
    if ((s = weights_bind(w)) != BR_OK) goto cleanup;
    *out = w;
    w = NULL;
cleanup:
    if (s != BR_OK) br_fail_ctx(s, "loading model %s", dir);
    policy_weights_free(w);
    free(cfg_path);
    free(cfg_text);
    return s;
}

/* ---- weight updates (a trainer's new tensors) */

/* Converts n elements of src (F32 or BF16) into dst of dtype dt (F32, BF16 or F16), rounding to nearest even:
 * what torch's .to(dtype) does before save_pretrained writes the bytes. */
static void convert(void *dst, st_dtype dt, const void *src, st_dtype sdt, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float f;
        if (sdt == ST_F32) {
            memcpy(&f, (const uint8_t *)src + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, (const uint8_t *)src + 2 * i, 2);
            if (dt == ST_BF16) { /* bf16 -> bf16: the bytes as they are (NaN payloads included) */
                memcpy((uint8_t *)dst + 2 * i, &h, 2);
                continue;
            }
            f = br_bf16_to_f32(h);
        }
        if (dt == ST_F32) {
            memcpy((uint8_t *)dst + 4 * i, &f, 4);
        } else {
            uint16_t h = dt == ST_BF16 ? br_f32_to_bf16(f) : br_f32_to_f16(f);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
    }
}

br_status policy_weights_update(const policy_weights *base, const policy_tensor_update *u, int n, policy_weights **out) {
    br_status s = BR_OK;
    *out = NULL;
    if (base->random || !base->st)
        return br_fail(BR_EINVAL, "%s: a random-weights model has no tensors to replace (load a checkpoint)", base->dir);
    const int nt = policy_st_count(base->st);
    const void **repl = calloc((size_t)nt + 1, sizeof *repl);
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    policy_weights *w = calloc(1, sizeof *w);
    if (!repl || !bufs || !w) {
        s = br_fail(BR_ENOMEM, "weights update: out of memory");
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *t = policy_st_find(base->st, u[i].name ? u[i].name : "");
        if (!t) {
            s = br_fail(BR_EINVAL, "weights update: '%s' is not a tensor of %s", u[i].name ? u[i].name : "(null)",
                        base->dir);
            goto cleanup;
        }
        int ok = u[i].ndim == t->ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = u[i].shape[d] == t->shape[d];
        if (!ok) {
            char got[160], want[160];
            shape_str(got, sizeof got, u[i].shape, u[i].ndim > 0 && u[i].ndim <= 8 ? u[i].ndim : 0);
            shape_str(want, sizeof want, t->shape, t->ndim);
            s = br_fail(BR_EINVAL, "weights update: tensor '%s' has shape %s in %s, given %s", t->name, want, base->dir,
                        got);
            goto cleanup;
        }
        if (u[i].dtype != ST_F32 && u[i].dtype != ST_BF16) {
            s = br_fail(BR_EINVAL, "weights update: tensor '%s': data must be F32 or BF16", t->name);
            goto cleanup;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) {
            s = br_fail(BR_EINVAL, "weights update: tensor '%s' is %s in the checkpoint, not a weight", t->name,
                        t->dtype_name);
            goto cleanup;
        }
        const int k = policy_st_index(base->st, t);
        if (repl[k]) {
            s = br_fail(BR_EINVAL, "weights update: tensor '%s' given twice", t->name);
            goto cleanup;
        }
        if (!(bufs[i] = malloc(t->nbytes + 1))) {
            s = br_fail(BR_ENOMEM, "weights update: out of memory for tensor '%s' (%zu bytes)", t->name, t->nbytes);
            goto cleanup;
        }
        convert(bufs[i], t->dtype, u[i].data, u[i].dtype, t->numel);
        repl[k] = bufs[i];
    }
    w->cfg = base->cfg;
    w->dir = malloc(strlen(base->dir) + 1);
    w->cfg_text = malloc(base->cfg_len + 1);
    if (!w->dir || !w->cfg_text) {
        s = br_fail(BR_ENOMEM, "weights update: out of memory");
        goto cleanup;
    }
    strcpy(w->dir, base->dir);
    memcpy(w->cfg_text, base->cfg_text, base->cfg_len);
    w->cfg_len = base->cfg_len;
    if ((s = policy_st_copy(base->st, repl, &w->st)) != BR_OK) goto cleanup;
    if ((s = weights_bind(w)) != BR_OK) goto cleanup;
    *out = w;
    w = NULL;
cleanup:
    for (int i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(repl);
    policy_weights_free(w);
    return s;
}

/* ---- random-weights models */

static float *const_vec(int64_t n, float v) {
    float *a = malloc((size_t)n * sizeof(float));
    if (a)
        for (int64_t i = 0; i < n; i++) a[i] = v;
    return a;
}

static kern_wt rand_mat(int64_t N, int64_t K, uint32_t id, int64_t *n_params) {
    kern_wt m = {NULL, KERN_BF16, K, 1, N, K, id};
    *n_params += N * K;
    return m;
}

br_status policy_weights_random(const char *config_path, uint64_t seed, policy_weights **out) {
    br_status s = BR_OK;
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    policy_weights *w = calloc(1, sizeof *w);
    if (!w) return br_fail(BR_ENOMEM, "%s: out of memory", config_path);
    if ((s = br_read_file(config_path, &text, &len)) != BR_OK) goto cleanup;
    if ((s = policy_config_parse(config_path, text, len, &w->cfg)) != BR_OK) goto cleanup;
    const policy_config *c = &w->cfg;
    const int64_t D = c->dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, F = c->ffn_dim, V = c->vocab;
    w->random = 1;
    w->random_seed = seed;
    w->dtype = KERN_BF16;
    w->dir = malloc(strlen(config_path) + 1);
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->dir || !w->layers) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", config_path);
        goto cleanup;
    }
    strcpy(w->dir, config_path);
    int64_t np = 0;
    const int ln = c->norm == POLICY_NORM_LAYER;
    for (int l = 0; l < c->n_layers; l++) {
        policy_layer *L = &w->layers[l];
        const uint32_t b = 16u * (uint32_t)l;
        L->wq = rand_mat(H * hd, D, b + 0, &np);
        L->wk = rand_mat(KV * hd, D, b + 1, &np);
        L->wv = rand_mat(KV * hd, D, b + 2, &np);
        L->wo = rand_mat(D, H * hd, b + 3, &np);
        if (c->act == POLICY_ACT_SILU_GLU) L->w_gate = rand_mat(F, D, b + 4, &np);
        L->w_up = rand_mat(F, D, b + 5, &np);
        L->w_down = rand_mat(D, F, b + 6, &np);
        int ok = (L->attn_norm_w = const_vec(D, 1)) && (L->mlp_norm_w = const_vec(D, 1));
        if (ln) ok = ok && (L->attn_norm_b = const_vec(D, 0)) && (L->mlp_norm_b = const_vec(D, 0));
        if (c->qk_norm) ok = ok && (L->q_norm = const_vec(hd, 1)) && (L->k_norm = const_vec(hd, 1));
        if (c->qkv_bias)
            ok = ok && (L->bq = const_vec(H * hd, 0)) && (L->bk = const_vec(KV * hd, 0)) && (L->bv = const_vec(KV * hd, 0));
        if (c->out_bias)
            ok = ok && (L->bo = const_vec(D, 0)) && (L->b_up = const_vec(F, 0)) && (L->b_down = const_vec(D, 0));
        if (!ok) {
            s = br_fail(BR_ENOMEM, "%s: out of memory", config_path);
            goto cleanup;
        }
    }
    w->embed = rand_mat(V, D, 1u << 20, &np);
    if (c->learned_pos) w->pos_embed = rand_mat(c->max_pos, D, (1u << 20) + 2, &np);
    w->lm_head = c->tie_embeddings ? w->embed : rand_mat(V, D, (1u << 20) + 1, &np);
    w->final_norm_w = const_vec(D, 1);
    if (ln) w->final_norm_b = const_vec(D, 0);
    if (!w->final_norm_w || (ln && !w->final_norm_b)) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", config_path);
        goto cleanup;
    }
    w->n_params = np;
    XXH3_state_t *h = XXH3_createState();
    if (!h) {
        s = br_fail(BR_ENOMEM, "fingerprint: out of memory");
        goto cleanup;
    }
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, "bitroll-random-weights-v1", sizeof "bitroll-random-weights-v1");
    XXH3_64bits_update(h, text, len);
    XXH3_64bits_update(h, &seed, sizeof seed);
    w->fingerprint = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    snprintf(w->fingerprint_hex, sizeof w->fingerprint_hex, "%016" PRIx64, w->fingerprint);
    *out = w;
    w = NULL;
cleanup:
    if (s != BR_OK) br_fail_ctx(s, "random-weights model %s", config_path);
    policy_weights_free(w);
    free(text);
    return s;
}
