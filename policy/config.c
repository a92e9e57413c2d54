/* policy config: parses a Hugging Face config.json (Llama, Qwen2, Qwen3, GPT-2) into policy_config,
 * rejecting every option whose numerics the engine does not implement (RoPE scaling, sliding window, ...). */
#include "policy/policy.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

const char *policy_arch_name(policy_arch a) {
    switch (a) {
    case POLICY_ARCH_LLAMA: return "llama";
    case POLICY_ARCH_QWEN2: return "qwen2";
    case POLICY_ARCH_QWEN3: return "qwen3";
    case POLICY_ARCH_GPT2: return "gpt2";
    }
    return "?";
}

/* Absent and JSON null are the same thing in HF configs ("n_inner": null means "use the default"). */
static const cJSON *cfg_get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* Upper bounds on sizes (well above every released model of these families), so that a damaged or hostile config
 * fails here naming its field instead of asking for terabytes, or overflowing, later. */
#define CFG_MAX_DIM (1 << 16)       /* hidden_size / n_embd */
#define CFG_MAX_LAYERS 1024         /* num_hidden_layers / n_layer */
#define CFG_MAX_HEADS 1024          /* attention and key/value heads */
#define CFG_MAX_HEAD_DIM 1024
#define CFG_MAX_FFN (1 << 20)       /* intermediate_size / n_inner */
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_POS (1 << 22)       /* max_position_embeddings / n_positions (the RoPE table is max_pos x head_dim) */

/* Integer field: required (def ignored) or optional with default; must be an integer in [lo, hi]. */
static br_status cfg_int_in(const char *path, const cJSON *o, const char *key, int required, int def, int lo, int hi,
                            int *out) {
    const cJSON *v = cfg_get(o, key);
    if (!v) {
        if (required) return br_fail(BR_EINVAL, "%s: missing required field '%s'", path, key);
        *out = def;
        return BR_OK;
    }
    if (!cJSON_IsNumber(v)) return br_fail(BR_EINVAL, "%s: field '%s' must be an integer", path, key);
    double d = v->valuedouble;
    if (d != floor(d) || d < (double)lo)
        return br_fail(BR_EINVAL, "%s: field '%s' = %.17g, expected an integer >= %d", path, key, d, lo);
    if (d > (double)hi)
        return br_fail(BR_EINVAL, "%s: field '%s' = %.17g is larger than bitroll supports (at most %d)", path, key, d, hi);
    *out = (int)d;
    return BR_OK;
}

/* Positive finite number field, optional with default. */
static br_status cfg_pos_num(const char *path, const cJSON *o, const char *key, double def, double *out) {
    const cJSON *v = cfg_get(o, key);
    if (!v) {
        *out = def;
        return BR_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0.0)
        return br_fail(BR_EINVAL, "%s: field '%s' must be a positive number", path, key);
    *out = v->valuedouble;
    return BR_OK;
}

/* A positive number used as fp32 (norm epsilons): it must stay positive and finite after rounding to float, so
 * 1e-50 (-> 0) and 1e300 (-> inf) are rejected rather than silently changed. */
static br_status cfg_pos_float(const char *path, const cJSON *o, const char *key, double def, float *out) {
    double d = 0.0;
    br_status st = cfg_pos_num(path, o, key, def, &d);
    if (st != BR_OK) return st;
    if (d > (double)FLT_MAX || (float)d == 0.0f)
        return br_fail(BR_EINVAL, "%s: field '%s' = %.17g is %s as fp32 (expected a number in [%.9g, %.9g])", path,
                       key, d, d > 1.0 ? "infinite" : "zero", (double)FLT_TRUE_MIN, (double)FLT_MAX);
    *out = (float)d;
    return BR_OK;
}

static br_status cfg_bool(const char *path, const cJSON *o, const char *key, int def, int *out) {
    const cJSON *v = cfg_get(o, key);
    if (!v) {
        *out = def;
        return BR_OK;
    }
    if (!cJSON_IsBool(v)) return br_fail(BR_EINVAL, "%s: field '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return BR_OK;
}

/* bos/eos: an id, a list of ids (the first is taken) or absent (-1). */
static br_status cfg_token_id(const char *path, const cJSON *o, const char *key, int *out) {
    const cJSON *v = cfg_get(o, key);
    *out = -1;
    if (!v) return BR_OK;
    if (cJSON_IsArray(v)) {
        v = cJSON_GetArrayItem(v, 0);
        if (!v) return BR_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 2147483647.0)
        return br_fail(BR_EINVAL, "%s: field '%s' must be a non-negative integer token id (or a list of them)", path, key);
    *out = (int)v->valuedouble;
    return BR_OK;
}

/* A RoPE description (rope_parameters or the legacy rope_scaling) must be the plain kind. */
static br_status cfg_rope_plain(const char *path, const cJSON *o, const char *key) {
    const cJSON *r = cfg_get(o, key);
    if (!r) return BR_OK;
    if (!cJSON_IsObject(r)) return br_fail(BR_EINVAL, "%s: field '%s' must be an object", path, key);
    const char *names[2] = {"rope_type", "type"};
    for (int i = 0; i < 2; i++) {
        const cJSON *t = cfg_get(r, names[i]);
        if (!t) continue;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "default") != 0)
            return br_fail(BR_EINVAL, "%s: field '%s.%s' = '%s' is not supported (only 'default' RoPE)", path, key,
                           names[i], cJSON_IsString(t) ? t->valuestring : "?");
    }
    /* rope_scaling carrying a factor but no type is still scaling. */
    if (strcmp(key, "rope_scaling") == 0 && cfg_get(r, "factor"))
        return br_fail(BR_EINVAL, "%s: field 'rope_scaling.factor' is not supported (only unscaled RoPE)", path);
    return BR_OK;
}

/* rope theta: top-level "rope_theta" (transformers < 5) or "rope_parameters": {"rope_theta"} (>= 5). */
static br_status cfg_rope_theta(const char *path, const cJSON *o, double *theta) {
    br_status st = cfg_rope_plain(path, o, "rope_parameters");
    if (st == BR_OK) st = cfg_rope_plain(path, o, "rope_scaling");
    if (st != BR_OK) return st;
    double top = 0.0, nested = 0.0;
    int has_top = cfg_get(o, "rope_theta") != NULL;
    const cJSON *rp = cfg_get(o, "rope_parameters");
    int has_nested = rp && cfg_get(rp, "rope_theta") != NULL;
    if (has_top && (st = cfg_pos_num(path, o, "rope_theta", 0.0, &top)) != BR_OK) return st;
    if (has_nested && (st = cfg_pos_num(path, rp, "rope_theta", 0.0, &nested)) != BR_OK)
        return br_fail_ctx(st, "%s: in 'rope_parameters'", path);
    if (has_top && has_nested && top != nested)
        return br_fail(BR_EINVAL, "%s: 'rope_theta' = %.17g disagrees with 'rope_parameters.rope_theta' = %.17g", path,
                       top, nested);
    *theta = has_nested ? nested : has_top ? top : 10000.0;
    return BR_OK;
}

static br_status cfg_llama_family(const char *path, const cJSON *o, policy_config *c) {
    br_status st;
    if ((st = cfg_int_in(path, o, "hidden_size", 1, 0, 1, CFG_MAX_DIM, &c->dim)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "num_hidden_layers", 1, 0, 1, CFG_MAX_LAYERS, &c->n_layers)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "num_attention_heads", 1, 0, 1, CFG_MAX_HEADS, &c->n_heads)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "num_key_value_heads", 0, c->n_heads, 1, CFG_MAX_HEADS, &c->n_kv_heads)) != BR_OK) return st;
    if (!cfg_get(o, "head_dim") && c->dim % c->n_heads != 0)
        return br_fail(BR_EINVAL, "%s: hidden_size %d is not divisible by num_attention_heads %d (and no head_dim)",
                       path, c->dim, c->n_heads);
    if ((st = cfg_int_in(path, o, "head_dim", 0, c->dim / c->n_heads, 1, CFG_MAX_HEAD_DIM, &c->head_dim)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "intermediate_size", 1, 0, 1, CFG_MAX_FFN, &c->ffn_dim)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "vocab_size", 1, 0, 1, CFG_MAX_VOCAB, &c->vocab)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "max_position_embeddings", 1, 0, 1, CFG_MAX_POS, &c->max_pos)) != BR_OK) return st;
    if ((st = cfg_pos_float(path, o, "rms_norm_eps", 1e-6, &c->norm_eps)) != BR_OK) return st;
    if ((st = cfg_rope_theta(path, o, &c->rope_theta)) != BR_OK) return st;
    if ((st = cfg_bool(path, o, "tie_word_embeddings", 0, &c->tie_embeddings)) != BR_OK) return st;

    const cJSON *act = cfg_get(o, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return br_fail(BR_EINVAL, "%s: field 'hidden_act' = '%s' is not supported (expected 'silu')", path,
                       cJSON_IsString(act) ? act->valuestring : "?");
    int flag = 0;
    if ((st = cfg_bool(path, o, "use_sliding_window", 0, &flag)) != BR_OK) return st;
    if (flag) return br_fail(BR_EINVAL, "%s: field 'use_sliding_window' = true is not supported (full attention only)", path);
    const cJSON *lt = cfg_get(o, "layer_types");
    if (lt) {
        const cJSON *e = NULL;
        int i = 0;
        if (!cJSON_IsArray(lt)) return br_fail(BR_EINVAL, "%s: field 'layer_types' must be a list", path);
        cJSON_ArrayForEach(e, lt) {
            if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention") != 0)
                return br_fail(BR_EINVAL, "%s: field 'layer_types[%d]' = '%s' is not supported (full_attention only)",
                               path, i, cJSON_IsString(e) ? e->valuestring : "?");
            i++;
        }
    }
    /* Qwen2 always has q/k/v biases; attention_bias / mlp_bias add others the forward does not implement. */
    if ((st = cfg_bool(path, o, "attention_bias", 0, &flag)) != BR_OK) return st;
    if (flag && c->arch != POLICY_ARCH_QWEN2)
        return br_fail(BR_EINVAL, "%s: field 'attention_bias' = true is not supported for model_type '%s'", path,
                       c->model_type);
    if ((st = cfg_bool(path, o, "mlp_bias", 0, &flag)) != BR_OK) return st;
    if (flag) return br_fail(BR_EINVAL, "%s: field 'mlp_bias' = true is not supported", path);

    c->norm = POLICY_NORM_RMS;
    c->act = POLICY_ACT_SILU_GLU;
    c->learned_pos = 0;
    c->qk_norm = c->arch == POLICY_ARCH_QWEN3;
    c->qkv_bias = c->arch == POLICY_ARCH_QWEN2;
    c->out_bias = 0;
    return BR_OK;
}

static br_status cfg_gpt2(const char *path, const cJSON *o, policy_config *c) {
    br_status st;
    if ((st = cfg_int_in(path, o, "n_embd", 1, 0, 1, CFG_MAX_DIM, &c->dim)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "n_layer", 1, 0, 1, CFG_MAX_LAYERS, &c->n_layers)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "n_head", 1, 0, 1, CFG_MAX_HEADS, &c->n_heads)) != BR_OK) return st;
    if (c->dim % c->n_heads != 0)
        return br_fail(BR_EINVAL, "%s: n_embd %d is not divisible by n_head %d", path, c->dim, c->n_heads);
    if (c->dim > 2147483647 / 4) return br_fail(BR_EINVAL, "%s: n_embd %d is too large", path, c->dim);
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->dim / c->n_heads;
    if ((st = cfg_int_in(path, o, "n_inner", 0, 4 * c->dim, 1, CFG_MAX_FFN, &c->ffn_dim)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "vocab_size", 1, 0, 1, CFG_MAX_VOCAB, &c->vocab)) != BR_OK) return st;
    if ((st = cfg_int_in(path, o, "n_positions", 1, 0, 1, CFG_MAX_POS, &c->max_pos)) != BR_OK) return st;
    if ((st = cfg_pos_float(path, o, "layer_norm_epsilon", 1e-5, &c->norm_eps)) != BR_OK) return st;
    if ((st = cfg_bool(path, o, "tie_word_embeddings", 1, &c->tie_embeddings)) != BR_OK) return st;

    const cJSON *act = cfg_get(o, "activation_function");
    if (act && (!cJSON_IsString(act) ||
                (strcmp(act->valuestring, "gelu_new") != 0 && strcmp(act->valuestring, "gelu_pytorch_tanh") != 0)))
        return br_fail(BR_EINVAL, "%s: field 'activation_function' = '%s' is not supported (expected 'gelu_new')", path,
                       cJSON_IsString(act) ? act->valuestring : "?");
    /* Attention-scaling variants change the numerics; only the standard GPT-2 one is implemented. */
    int flag = 0;
    if ((st = cfg_bool(path, o, "scale_attn_weights", 1, &flag)) != BR_OK) return st;
    if (!flag) return br_fail(BR_EINVAL, "%s: field 'scale_attn_weights' = false is not supported", path);
    if ((st = cfg_bool(path, o, "scale_attn_by_inverse_layer_idx", 0, &flag)) != BR_OK) return st;
    if (flag) return br_fail(BR_EINVAL, "%s: field 'scale_attn_by_inverse_layer_idx' = true is not supported", path);

    c->rope_theta = 0.0;
    c->norm = POLICY_NORM_LAYER;
    c->act = POLICY_ACT_GELU_TANH;
    c->learned_pos = 1;
    c->qk_norm = 0;
    c->qkv_bias = 1;
    c->out_bias = 1;
    return BR_OK;
}

br_status policy_config_parse(const char *path, const char *text, size_t len, policy_config *cfg) {
    br_status st = BR_OK;
    policy_config c;
    memset(&c, 0, sizeof c);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        st = br_fail(BR_EFORMAT, "%s: not a JSON object", path);
        goto cleanup;
    }
    const cJSON *mt = cfg_get(root, "model_type");
    if (!mt || !cJSON_IsString(mt)) {
        st = br_fail(BR_EINVAL, "%s: missing string field 'model_type' (supported: llama, qwen2, qwen3, gpt2)", path);
        goto cleanup;
    }
    if (strcmp(mt->valuestring, "llama") == 0) c.arch = POLICY_ARCH_LLAMA;
    else if (strcmp(mt->valuestring, "qwen2") == 0) c.arch = POLICY_ARCH_QWEN2;
    else if (strcmp(mt->valuestring, "qwen3") == 0) c.arch = POLICY_ARCH_QWEN3;
    else if (strcmp(mt->valuestring, "gpt2") == 0) c.arch = POLICY_ARCH_GPT2;
    else {
        st = br_fail(BR_EINVAL, "%s: unknown model_type '%s' (supported: llama, qwen2, qwen3, gpt2)", path,
                     mt->valuestring);
        goto cleanup;
    }
    snprintf(c.model_type, sizeof c.model_type, "%s", mt->valuestring);

    st = c.arch == POLICY_ARCH_GPT2 ? cfg_gpt2(path, root, &c) : cfg_llama_family(path, root, &c);
    if (st != BR_OK) goto cleanup;
    if (c.n_heads % c.n_kv_heads != 0) {
        st = br_fail(BR_EINVAL, "%s: num_attention_heads %d is not divisible by num_key_value_heads %d", path, c.n_heads,
                     c.n_kv_heads);
        goto cleanup;
    }
    /* Matrix widths are computed in int by callers: keep n_heads*head_dim and friends representable. */
    if ((int64_t)c.n_heads * c.head_dim > 2147483647 || (int64_t)c.vocab * c.dim > ((int64_t)1 << 53)) {
        st = br_fail(BR_EINVAL, "%s: sizes too large (n_heads*head_dim = %lld)", path,
                     (long long)c.n_heads * c.head_dim);
        goto cleanup;
    }
    if ((st = cfg_token_id(path, root, "bos_token_id", &c.bos_id)) != BR_OK) goto cleanup;
    if ((st = cfg_token_id(path, root, "eos_token_id", &c.eos_id)) != BR_OK) goto cleanup;
    if (c.bos_id >= c.vocab || c.eos_id >= c.vocab) {
        st = br_fail(BR_EINVAL, "%s: bos_token_id %d / eos_token_id %d outside the vocabulary (vocab_size %d)", path,
                     c.bos_id, c.eos_id, c.vocab);
        goto cleanup;
    }
    *cfg = c;
cleanup:
    cJSON_Delete(root);
    return st;
}

br_status policy_config_load(const char *path, policy_config *cfg) {
    char *text = NULL;
    size_t len = 0;
    br_status st = br_read_file(path, &text, &len);
    if (st == BR_OK) st = policy_config_parse(path, text, len, cfg);
    free(text);
    return st;
}
