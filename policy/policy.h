/* policy: model configuration (config.json), checkpoint loading (safetensors, mmap) and weights.
 * Config is the immutable blueprint, policy_weights the read-only tensors (views into mmapped files). */
#ifndef POLICY_H
#define POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "common/br.h"
#include "kernels/kern.h"

typedef enum { POLICY_ARCH_LLAMA = 0, POLICY_ARCH_QWEN2, POLICY_ARCH_QWEN3, POLICY_ARCH_GPT2 } policy_arch;
typedef enum { POLICY_NORM_RMS = 0, POLICY_NORM_LAYER } policy_norm;
typedef enum { POLICY_ACT_SILU_GLU = 0, POLICY_ACT_GELU_TANH } policy_act;

typedef struct {
    policy_arch arch;
    char model_type[32]; /* as written in config.json: "llama", "qwen2", "qwen3", "gpt2" */
    int dim;             /* hidden size D */
    int n_layers;
    int n_heads;
    int n_kv_heads;      /* == n_heads without GQA */
    int head_dim;        /* hd; q has n_heads*hd columns (may differ from D, e.g. Qwen3) */
    int ffn_dim;         /* F: intermediate size (GPT-2: n_inner or 4*D) */
    int vocab;           /* V */
    int max_pos;         /* context length: max_position_embeddings / n_positions */
    float norm_eps;
    double rope_theta;   /* 0 for learned positions (GPT-2) */
    policy_norm norm;    /* RMSNorm (llama/qwen) or LayerNorm with bias (gpt2) */
    policy_act act;      /* SwiGLU (llama/qwen) or GELU(tanh) MLP (gpt2) */
    int learned_pos;     /* GPT-2 wpe */
    int tie_embeddings;  /* lm_head = embed_tokens */
    int qk_norm;         /* Qwen3: RMSNorm over head_dim on q and k, before RoPE */
    int qkv_bias;        /* Qwen2, GPT-2: biases on q/k/v */
    int out_bias;        /* GPT-2: biases on attention out, MLP in/out */
    int bos_id, eos_id;  /* -1 when absent */
} policy_config;

/* Parses and validates config.json (path to the file). Unknown model_type, missing or non-positive
 * sizes, n_heads not divisible by n_kv_heads -> BR_EINVAL/BR_EFORMAT naming the file and field. */
br_status policy_config_load(const char *path, policy_config *cfg);
/* Same, from config.json text already in memory (len bytes); path is only used in messages. */
br_status policy_config_parse(const char *path, const char *text, size_t len, policy_config *cfg);
const char *policy_arch_name(policy_arch a);

/* ---- safetensors: one file or a sharded set, mmapped read-only. */
typedef enum { ST_F32 = 0, ST_BF16, ST_F16, ST_I32, ST_I64, ST_U8, ST_OTHER } st_dtype;
/* ST_OTHER: another dtype of the format (F64, I8, U16, BOOL, F8_*, ...): sizes validated, never bound as a weight.
 * A dtype string the format does not define is rejected at open. */

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[8];
    int64_t numel;
    const void *data; /* into the mapping; nbytes == numel * element size (validated) */
    size_t nbytes;
    const char *file; /* path of the file holding it */
    const char *dtype_name; /* as written in the header ("F32", "F64", ...); static storage */
} st_tensor;

typedef struct policy_st policy_st; /* opaque */

/* path: a .safetensors file, a model.safetensors.index.json, or a directory holding either
 * (the index wins when both exist). Validates the header JSON, dtypes, shapes vs byte sizes, offsets in
 * range and non-overlapping; any violation -> BR_EFORMAT naming file and tensor. */
br_status policy_st_open(const char *path, policy_st **out);
/* The same checks on a safetensors file held in memory (e.g. received over comm/): buf is malloc'd and owned by the
 * result from the call on (freed on failure too); name appears in messages. */
br_status policy_st_open_mem(const char *name, void *buf, size_t len, policy_st **out);
void policy_st_free(policy_st *st);
const st_tensor *policy_st_find(const policy_st *st, const char *name);
int policy_st_count(const policy_st *st);
const st_tensor *policy_st_at(const policy_st *st, int i); /* sorted by name */
const char *st_dtype_name(st_dtype dt);
/* The file that was opened: the .safetensors file or the index (a directory resolved to one of them). */
const char *policy_st_path(const policy_st *st);
/* A copy of src that owns its tensors' bytes in memory: tensor i's bytes come from replace[i] when replace and
 * replace[i] are non-NULL (nbytes of them), else from src. Names, dtypes and shapes as in src. */
br_status policy_st_copy(const policy_st *src, const void *const *replace, policy_st **out);
/* The index of t (a pointer returned by policy_st_find / policy_st_at of st) in name order; -1 if not st's. */
int policy_st_index(const policy_st *st, const st_tensor *t);

/* ---- weights, bound to the config. Matrices are kern_wt views (shape (N, K) = (out, in)).
 * Small vectors (norm weights, biases) are converted to owned fp32 arrays. NULL = absent. */
typedef struct {
    float *attn_norm_w, *attn_norm_b; /* (D) */
    kern_wt wq, wk, wv;               /* (n_heads*hd, D), (n_kv*hd, D), (n_kv*hd, D) */
    float *bq, *bk, *bv;              /* (n_heads*hd), (n_kv*hd), (n_kv*hd) */
    float *q_norm, *k_norm;           /* (hd) Qwen3 */
    kern_wt wo;                       /* (D, n_heads*hd) */
    float *bo;                        /* (D) */
    float *mlp_norm_w, *mlp_norm_b;   /* (D) */
    kern_wt w_gate;                   /* (F, D) SwiGLU only */
    kern_wt w_up;                     /* (F, D) */
    float *b_up;                      /* (F) GPT-2 c_fc bias */
    kern_wt w_down;                   /* (D, F) */
    float *b_down;                    /* (D) */
} policy_layer;

typedef struct {
    policy_config cfg;
    kern_wt embed;            /* (V, D) token embedding, row lookup */
    kern_wt pos_embed;        /* (max_pos, D) GPT-2 wpe; data NULL otherwise */
    policy_layer *layers;     /* (n_layers) */
    float *final_norm_w, *final_norm_b; /* (D) */
    kern_wt lm_head;          /* (V, D); == embed when tied */
    kern_dtype dtype;         /* dtype of the matrices (a checkpoint with mixed matrix dtypes is accepted) */
    int64_t n_params;
    uint64_t fingerprint;     /* hash of config.json bytes and every tensor (name, dtype, shape, bytes) in name order */
    char fingerprint_hex[17];
    char *dir;
    char *cfg_text;           /* config.json bytes (hashed into the fingerprint; kept for policy_weights_update) */
    size_t cfg_len;
    policy_st *st;            /* owns the mappings (or, after policy_weights_update, the tensor bytes) */
    int random;               /* 1: a random-weights model: matrices have data == NULL and are generated on the
                               * device from (random_seed, rand_id, element) (policy_weights_random) */
    uint64_t random_seed;
} policy_weights;

/* Loads DIR/config.json and DIR's safetensors; checks that every tensor the architecture needs is present
 * with the right shape and a weight dtype (F32/BF16/F16). Errors name the file and tensor. */
br_status policy_weights_load(const char *dir, policy_weights **out);
void policy_weights_free(policy_weights *w);

/* New weights = base with some tensors replaced, as if the replaced tensors had been saved into base's checkpoint
 * (same config.json, same tensor names, each tensor in base's dtype of that tensor) and that checkpoint loaded: the
 * same binding, n_params and fingerprint. Each update's data holds the tensor's numel elements of `dtype` (F32 or
 * BF16), C order, converted with round-to-nearest-even where base's dtype is narrower. Every tensor's bytes are
 * copied (the result owns them; base is untouched and may be freed). Errors: BR_EINVAL naming an unknown tensor, a
 * wrong shape or dtype, a duplicate name, a random-weights base; BR_ENOMEM. */
typedef struct {
    const char *name;     /* Hugging Face name, as in the safetensors header */
    st_dtype dtype;       /* ST_F32 or ST_BF16 */
    const int64_t *shape; /* (ndim): must equal the checkpoint tensor's */
    int ndim;
    const void *data;
} policy_tensor_update;
br_status policy_weights_update(const policy_weights *base, const policy_tensor_update *u, int n, policy_weights **out);

/* A model of the shape in CONFIG (a config.json) with weights from a counter-based generator: matrix element
 * (n, k) of tensor id t is U(-1, 1) / sqrt(K) from Philox(seed, t, n*K + k) (the embedding: 4 times that); norm
 * weights 1, biases 0. No tensor bytes exist on the host: the CUDA engine generates them on the device. The
 * fingerprint hashes the config bytes and the seed. For benchmarks and scale tests. */
br_status policy_weights_random(const char *config_path, uint64_t seed, policy_weights **out);

#endif
