/* Tests for the policy loader: config.json parsing, the safetensors reader and weight binding, on the bundled
 * tiny models, and on broken checkpoints that each test writes into a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "policy/policy.h"

#define MODELS BR_TEST_DATA "/models"
#define STORIES BR_TEST_DATA "/../../configs/models/stories260K"

/* ---- a raw safetensors reader, independent of policy/: the ground truth the views are compared with. */
typedef struct {
    uint8_t *bytes; /* whole file */
    size_t len;
    cJSON *hdr;
    const uint8_t *data; /* data section */
    size_t data_len;
} raw_st;

static void read_all(const char *path, uint8_t **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    *out = malloc((size_t)n + 1);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
    (*out)[n] = 0;
    *len = (size_t)n;
    fclose(f);
}

static void write_all(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void raw_load(const char *path, raw_st *r) {
    read_all(path, &r->bytes, &r->len);
    assert_true(r->len >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | r->bytes[i];
    assert_true(8 + n <= r->len);
    r->hdr = cJSON_ParseWithLength((const char *)r->bytes + 8, (size_t)n);
    assert_non_null(r->hdr);
    r->data = r->bytes + 8 + n;
    r->data_len = r->len - 8 - (size_t)n;
}

static void raw_free(raw_st *r) {
    cJSON_Delete(r->hdr);
    free(r->bytes);
}

/* Element idx (flat, row-major) of tensor `name`, as fp32; bf16 widened by the shift, f16 by br_f16_to_f32. */
static float raw_elem(const raw_st *r, const char *name, int64_t idx) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->hdr, name);
    assert_non_null(e);
    const char *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring;
    size_t begin = (size_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), 0)->valuedouble;
    if (strcmp(dt, "F32") == 0) {
        float v;
        memcpy(&v, r->data + begin + (size_t)idx * 4, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, r->data + begin + (size_t)idx * 2, 2);
    if (strcmp(dt, "F16") == 0) return br_f16_to_f32(h);
    uint32_t u = (uint32_t)h << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* Element (n, k) read through a kern_wt view, the way a kernel does. */
static float view_elem(const kern_wt *w, int64_t n, int64_t k) {
    assert_true(n >= 0 && n < w->n && k >= 0 && k < w->k);
    int64_t i = n * w->sn + k * w->sk;
    if (w->dtype == KERN_F32) return ((const float *)w->data)[i];
    uint16_t h = ((const uint16_t *)w->data)[i];
    return w->dtype == KERN_BF16 ? br_bf16_to_f32(h) : br_f16_to_f32(h);
}

static void assert_same_bits(float a, float b) {
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    assert_int_equal(x, y);
}

/* A view of logical shape (N, K) against tensor `name`: Linear layout (N, K), or Conv1D (K, n_total) at column col0. */
static void check_mat(const kern_wt *w, const raw_st *r, const char *name, int64_t N, int64_t K, int conv1d,
                      int64_t n_total, int64_t col0) {
    assert_int_equal(w->n, N);
    assert_int_equal(w->k, K);
    const int64_t pts[6][2] = {{0, 0}, {N - 1, K - 1}, {0, K - 1}, {N - 1, 0}, {N / 2, K / 3}, {N / 3 + 1, K / 2 + 1}};
    for (int i = 0; i < 6; i++) {
        int64_t n = pts[i][0], k = pts[i][1];
        int64_t flat = conv1d ? k * n_total + col0 + n : n * K + k;
        assert_same_bits(view_elem(w, n, k), raw_elem(r, name, flat));
    }
}

static void check_vec(const float *v, const raw_st *r, const char *name, int64_t off, int64_t len) {
    assert_non_null(v);
    for (int64_t i = 0; i < len; i += (len > 7 ? len / 7 : 1)) assert_same_bits(v[i], raw_elem(r, name, off + i));
    assert_same_bits(v[len - 1], raw_elem(r, name, off + len - 1));
}

static int64_t raw_total_numel(const raw_st *r) {
    int64_t total = 0;
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, r->hdr) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        int64_t n = 1;
        const cJSON *d = NULL;
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(e, "shape")) n *= (int64_t)d->valuedouble;
        total += n;
    }
    return total;
}

static void assert_msg_has(const char *needle) {
    const char *msg = br_last_error();
    if (!strstr(msg, needle)) {
        print_error("message \"%s\" lacks \"%s\"\n", msg, needle);
        fail();
    }
}

static policy_weights *load_ok(const char *dir) {
    policy_weights *w = NULL;
    br_status st = policy_weights_load(dir, &w);
    if (st != BR_OK) print_error("%s: %s\n", dir, br_last_error());
    assert_int_equal(st, BR_OK);
    assert_non_null(w);
    return w;
}

/* ---- temporary model directories */
typedef struct {
    char dir[64];
    char st[128];  /* dir/model.safetensors */
    char cfg[128]; /* dir/config.json */
} tmp_model;

static void tmp_create(tmp_model *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/br_loader_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->st, sizeof t->st, "%s/model.safetensors", t->dir);
    snprintf(t->cfg, sizeof t->cfg, "%s/config.json", t->dir);
}

static void tmp_remove(tmp_model *t) {
    DIR *d = opendir(t->dir);
    assert_non_null(d);
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
        assert_int_equal(unlink(p), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(t->dir), 0);
}

static void copy_file(const char *src, const char *dst) {
    uint8_t *b = NULL;
    size_t n = 0;
    read_all(src, &b, &n);
    write_all(dst, b, n);
    free(b);
}

/* The safetensors writer: 8-byte little-endian header length (claimed_len, normally strlen(hdr)), header, data. */
static void st_write(const char *path, const char *hdr, uint64_t claimed_len, const void *data, size_t data_len) {
    size_t hl = strlen(hdr);
    uint8_t *buf = malloc(8 + hl + data_len);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(claimed_len >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    write_all(path, buf, 8 + hl + data_len);
    free(buf);
}

/* Header padded with spaces to a multiple of 8 so that 8 + len keeps the data section aligned, as writers do. */
static char *pad_header(const cJSON *hdr) {
    char *s = cJSON_PrintUnformatted(hdr);
    assert_non_null(s);
    size_t n = strlen(s), p = (n + 7) / 8 * 8;
    char *o = malloc(p + 1);
    assert_non_null(o);
    memcpy(o, s, n);
    memset(o + n, ' ', p - n);
    o[p] = 0;
    cJSON_free(s);
    return o;
}

/* tmp model = config.json and model.safetensors of src_dir, the header passed through mutate (may be NULL). */
static void tmp_from(tmp_model *t, const char *src_dir, void (*mutate)(cJSON *hdr, size_t data_len)) {
    char p[512];
    raw_st r;
    tmp_create(t);
    snprintf(p, sizeof p, "%s/config.json", src_dir);
    copy_file(p, t->cfg);
    snprintf(p, sizeof p, "%s/model.safetensors", src_dir);
    raw_load(p, &r);
    if (mutate) mutate(r.hdr, r.data_len);
    char *h = pad_header(r.hdr);
    st_write(t->st, h, strlen(h), r.data, r.data_len);
    free(h);
    raw_free(&r);
}

/* Replaces the tmp model's config.json with the source config passed through mutate. */
static void tmp_config(tmp_model *t, const char *src_dir, void (*mutate)(cJSON *cfg)) {
    char p[512];
    uint8_t *b = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/config.json", src_dir);
    read_all(p, &b, &n);
    cJSON *c = cJSON_ParseWithLength((const char *)b, n);
    assert_non_null(c);
    mutate(c);
    char *s = cJSON_Print(c);
    write_all(t->cfg, s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(c);
    free(b);
}

static void expect_fail(const char *dir, const char *needle1, const char *needle2) {
    policy_weights *w = (policy_weights *)1;
    br_status st = policy_weights_load(dir, &w);
    assert_int_not_equal(st, BR_OK);
    assert_null(w);
    assert_msg_has(needle1);
    if (needle2) assert_msg_has(needle2);
}

/* ---- good models */

static void check_llama_family(const policy_weights *w, const char *dir) {
    const policy_config *c = &w->cfg;
    char p[512];
    raw_st r;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    raw_load(p, &r);
    const int64_t D = c->dim, F = c->ffn_dim, V = c->vocab, hd = c->head_dim;
    const int64_t QD = (int64_t)c->n_heads * hd, KVD = (int64_t)c->n_kv_heads * hd;
    check_mat(&w->embed, &r, "model.embed_tokens.weight", V, D, 0, 0, 0);
    for (int l = 0; l < c->n_layers; l++) {
        const policy_layer *L = &w->layers[l];
        char n[128];
#define NM(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
        check_vec(L->attn_norm_w, &r, NM("input_layernorm.weight"), 0, D);
        check_mat(&L->wq, &r, NM("self_attn.q_proj.weight"), QD, D, 0, 0, 0);
        check_mat(&L->wk, &r, NM("self_attn.k_proj.weight"), KVD, D, 0, 0, 0);
        check_mat(&L->wv, &r, NM("self_attn.v_proj.weight"), KVD, D, 0, 0, 0);
        check_mat(&L->wo, &r, NM("self_attn.o_proj.weight"), D, QD, 0, 0, 0);
        check_vec(L->mlp_norm_w, &r, NM("post_attention_layernorm.weight"), 0, D);
        check_mat(&L->w_gate, &r, NM("mlp.gate_proj.weight"), F, D, 0, 0, 0);
        check_mat(&L->w_up, &r, NM("mlp.up_proj.weight"), F, D, 0, 0, 0);
        check_mat(&L->w_down, &r, NM("mlp.down_proj.weight"), D, F, 0, 0, 0);
        if (c->qk_norm) {
            check_vec(L->q_norm, &r, NM("self_attn.q_norm.weight"), 0, hd);
            check_vec(L->k_norm, &r, NM("self_attn.k_norm.weight"), 0, hd);
        } else {
            assert_null(L->q_norm);
            assert_null(L->k_norm);
        }
        assert_null(L->bq);
        assert_null(L->attn_norm_b);
        assert_null(L->bo);
#undef NM
    }
    check_vec(w->final_norm_w, &r, "model.norm.weight", 0, D);
    assert_null(w->final_norm_b);
    assert_null(w->pos_embed.data);
    if (c->tie_embeddings) {
        assert_ptr_equal(w->lm_head.data, w->embed.data);
        assert_int_equal(w->lm_head.sn, w->embed.sn);
    } else {
        check_mat(&w->lm_head, &r, "lm_head.weight", V, D, 0, 0, 0);
        assert_ptr_not_equal(w->lm_head.data, w->embed.data);
    }
    /* every tensor of these files is bound, the tied matrix is stored (and counted) once */
    assert_int_equal(w->n_params, raw_total_numel(&r));
    raw_free(&r);
}

static void check_fingerprints(const char *dir_f32, const char *dir_bf16) {
    policy_weights *a = load_ok(dir_f32), *b = load_ok(dir_f32), *h = load_ok(dir_bf16);
    assert_int_equal(a->fingerprint, b->fingerprint);
    assert_string_equal(a->fingerprint_hex, b->fingerprint_hex);
    assert_int_equal(strlen(a->fingerprint_hex), 16);
    for (int i = 0; i < 16; i++) assert_non_null(strchr("0123456789abcdef", a->fingerprint_hex[i]));
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)a->fingerprint);
    assert_string_equal(hex, a->fingerprint_hex);
    assert_int_not_equal(a->fingerprint, h->fingerprint);
    assert_int_equal(a->dtype, KERN_F32);
    assert_int_equal(h->dtype, KERN_BF16);
    assert_int_equal(a->n_params, h->n_params);
    policy_weights_free(a);
    policy_weights_free(b);
    policy_weights_free(h);
}

static void test_tiny_qwen3(void **state) {
    (void)state;
    const char *dirs[2] = {MODELS "/tiny-qwen3/f32", MODELS "/tiny-qwen3/bf16"};
    for (int i = 0; i < 2; i++) {
        policy_weights *w = load_ok(dirs[i]);
        const policy_config *c = &w->cfg;
        assert_int_equal(c->arch, POLICY_ARCH_QWEN3);
        assert_string_equal(c->model_type, "qwen3");
        assert_int_equal(c->dim, 128);
        assert_int_equal(c->n_layers, 4);
        assert_int_equal(c->n_heads, 4);
        assert_int_equal(c->n_kv_heads, 2);
        assert_int_equal(c->head_dim, 32);
        assert_int_equal(c->ffn_dim, 384);
        assert_int_equal(c->vocab, 1024);
        assert_int_equal(c->max_pos, 2048);
        assert_true(c->rope_theta == 1e6);
        assert_true(c->norm_eps == 1e-6f);
        assert_int_equal(c->tie_embeddings, 0);
        assert_int_equal(c->qk_norm, 1);
        assert_int_equal(c->qkv_bias, 0);
        assert_int_equal(c->out_bias, 0);
        assert_int_equal(c->norm, POLICY_NORM_RMS);
        assert_int_equal(c->act, POLICY_ACT_SILU_GLU);
        assert_int_equal(c->learned_pos, 0);
        assert_int_equal(c->bos_id, 1);
        assert_int_equal(c->eos_id, 2);
        assert_string_equal(w->dir, dirs[i]);
        check_llama_family(w, dirs[i]);
        policy_weights_free(w);
    }
    check_fingerprints(dirs[0], dirs[1]);
}

static void test_tiny_llama(void **state) {
    (void)state;
    const char *dirs[2] = {MODELS "/tiny-llama/f32", MODELS "/tiny-llama/bf16"};
    for (int i = 0; i < 2; i++) {
        policy_weights *w = load_ok(dirs[i]);
        const policy_config *c = &w->cfg;
        assert_int_equal(c->arch, POLICY_ARCH_LLAMA);
        assert_int_equal(c->dim, 128);
        assert_int_equal(c->n_layers, 3);
        assert_int_equal(c->n_heads, 8);
        assert_int_equal(c->n_kv_heads, 2);
        assert_int_equal(c->head_dim, 16);
        assert_int_equal(c->ffn_dim, 352);
        assert_int_equal(c->vocab, 1024);
        assert_true(c->rope_theta == 500000.0);
        assert_true(c->norm_eps == 1e-5f);
        assert_int_equal(c->tie_embeddings, 1);
        assert_int_equal(c->qk_norm, 0);
        check_llama_family(w, dirs[i]);
        policy_weights_free(w);
    }
    check_fingerprints(dirs[0], dirs[1]);
}

static void test_stories260k(void **state) {
    (void)state;
    policy_weights *w = load_ok(STORIES);
    const policy_config *c = &w->cfg;
    assert_int_equal(c->arch, POLICY_ARCH_LLAMA);
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->ffn_dim, 172);
    assert_int_equal(c->vocab, 512);
    assert_int_equal(c->max_pos, 512);
    assert_true(c->rope_theta == 10000.0);
    assert_int_equal(c->tie_embeddings, 1);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    check_llama_family(w, STORIES);
    policy_weights_free(w);
}

static void test_tiny_gpt2(void **state) {
    (void)state;
    const char *dirs[2] = {MODELS "/tiny-gpt2/f32", MODELS "/tiny-gpt2/bf16"};
    for (int i = 0; i < 2; i++) {
        policy_weights *w = load_ok(dirs[i]);
        const policy_config *c = &w->cfg;
        assert_int_equal(c->arch, POLICY_ARCH_GPT2);
        assert_int_equal(c->dim, 128);
        assert_int_equal(c->n_layers, 4);
        assert_int_equal(c->n_heads, 4);
        assert_int_equal(c->n_kv_heads, 4);
        assert_int_equal(c->head_dim, 32);
        assert_int_equal(c->ffn_dim, 512); /* n_inner null -> 4 * n_embd */
        assert_int_equal(c->vocab, 1024);
        assert_int_equal(c->max_pos, 1024);
        assert_true(c->rope_theta == 0.0);
        assert_true(c->norm_eps == 1e-5f);
        assert_int_equal(c->norm, POLICY_NORM_LAYER);
        assert_int_equal(c->act, POLICY_ACT_GELU_TANH);
        assert_int_equal(c->learned_pos, 1);
        assert_int_equal(c->tie_embeddings, 1);
        assert_int_equal(c->qkv_bias, 1);
        assert_int_equal(c->out_bias, 1);

        char p[512];
        raw_st r;
        snprintf(p, sizeof p, "%s/model.safetensors", dirs[i]);
        raw_load(p, &r);
        const int64_t D = 128, F = 512;
        check_mat(&w->embed, &r, "transformer.wte.weight", 1024, D, 0, 0, 0);
        check_mat(&w->pos_embed, &r, "transformer.wpe.weight", 1024, D, 0, 0, 0);
        assert_ptr_equal(w->lm_head.data, w->embed.data);
        for (int l = 0; l < c->n_layers; l++) {
            const policy_layer *L = &w->layers[l];
            char n[128];
#define NM(s) (snprintf(n, sizeof n, "transformer.h.%d.%s", l, s), n)
            /* the split views: wk(n, k) == c_attn.weight[k][D + n], and so on */
            check_mat(&L->wq, &r, NM("attn.c_attn.weight"), D, D, 1, 3 * D, 0);
            check_mat(&L->wk, &r, NM("attn.c_attn.weight"), D, D, 1, 3 * D, D);
            check_mat(&L->wv, &r, NM("attn.c_attn.weight"), D, D, 1, 3 * D, 2 * D);
            assert_same_bits(view_elem(&L->wk, 5, 7), raw_elem(&r, NM("attn.c_attn.weight"), 7 * 3 * D + D + 5));
            assert_int_equal(L->wk.sn, 1);
            assert_int_equal(L->wk.sk, 3 * D);
            check_vec(L->bq, &r, NM("attn.c_attn.bias"), 0, D);
            check_vec(L->bk, &r, NM("attn.c_attn.bias"), D, D);
            check_vec(L->bv, &r, NM("attn.c_attn.bias"), 2 * D, D);
            check_mat(&L->wo, &r, NM("attn.c_proj.weight"), D, D, 1, D, 0);
            check_vec(L->bo, &r, NM("attn.c_proj.bias"), 0, D);
            check_vec(L->attn_norm_w, &r, NM("ln_1.weight"), 0, D);
            check_vec(L->attn_norm_b, &r, NM("ln_1.bias"), 0, D);
            check_vec(L->mlp_norm_w, &r, NM("ln_2.weight"), 0, D);
            check_vec(L->mlp_norm_b, &r, NM("ln_2.bias"), 0, D);
            check_mat(&L->w_up, &r, NM("mlp.c_fc.weight"), F, D, 1, F, 0);
            check_vec(L->b_up, &r, NM("mlp.c_fc.bias"), 0, F);
            check_mat(&L->w_down, &r, NM("mlp.c_proj.weight"), D, F, 1, D, 0);
            check_vec(L->b_down, &r, NM("mlp.c_proj.bias"), 0, D);
            assert_null(L->w_gate.data);
            assert_null(L->q_norm);
#undef NM
        }
        check_vec(w->final_norm_w, &r, "transformer.ln_f.weight", 0, D);
        check_vec(w->final_norm_b, &r, "transformer.ln_f.bias", 0, D);
        assert_int_equal(w->n_params, raw_total_numel(&r));
        raw_free(&r);
        policy_weights_free(w);
    }
    check_fingerprints(dirs[0], dirs[1]);
}

/* GPT-2 checkpoints saved from GPT2Model have no "transformer." prefix, and may carry attn.bias buffers. */
static void strip_prefix(cJSON *hdr, size_t data_len) {
    (void)data_len;
    cJSON *e = NULL;
    cJSON_ArrayForEach(e, hdr) {
        if (strncmp(e->string, "transformer.", 12) == 0) memmove(e->string, e->string + 12, strlen(e->string) - 11);
    }
}

static void test_gpt2_no_prefix(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, MODELS "/tiny-gpt2/bf16", strip_prefix);
    policy_weights *w = load_ok(t.dir), *ref = load_ok(MODELS "/tiny-gpt2/bf16");
    assert_int_equal(w->n_params, ref->n_params);
    assert_memory_equal(w->layers[3].bk, ref->layers[3].bk, 128 * sizeof(float));
    assert_same_bits(view_elem(&w->layers[2].wv, 100, 3), view_elem(&ref->layers[2].wv, 100, 3));
    policy_weights_free(w);
    policy_weights_free(ref);
    tmp_remove(&t);
}

/* ---- broken safetensors files (base: tiny-llama f32) */
#define BASE MODELS "/tiny-llama/f32"

/* ---- Qwen2: no bundled model, so tiny-llama gains q/k/v biases (appended to the data section) and
 * model_type "qwen2". skip_last drops layer 2's v bias to check the error. */
static void cfg_qwen2(cJSON *c) {
    cJSON_ReplaceItemInObjectCaseSensitive(c, "model_type", cJSON_CreateString("qwen2"));
    cJSON_ReplaceItemInObjectCaseSensitive(c, "attention_bias", cJSON_CreateTrue());
}

static float qwen2_bias_value(int l, int kind, int j) { return (float)(l * 1000 + kind * 300 + j) * 0.25f; }

static void write_qwen2(tmp_model *t, int skip_last) {
    raw_st r;
    raw_load(BASE "/model.safetensors", &r);
    const int lens[3] = {128, 32, 32}; /* q: n_heads*hd, k/v: n_kv*hd */
    const char *kinds[3] = {"q", "k", "v"};
    size_t extra = 3 * (128 + 32 + 32) * 4, off = r.data_len;
    uint8_t *data = malloc(r.data_len + extra);
    assert_non_null(data);
    memcpy(data, r.data, r.data_len);
    for (int l = 0; l < 3; l++) {
        for (int k = 0; k < 3; k++) {
            if (skip_last && l == 2 && k == 2) continue;
            for (int j = 0; j < lens[k]; j++) {
                float v = qwen2_bias_value(l, k, j);
                memcpy(data + off + (size_t)j * 4, &v, 4);
            }
            char name[96], e[128];
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s_proj.bias", l, kinds[k]);
            snprintf(e, sizeof e, "{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}", lens[k], off,
                     off + (size_t)lens[k] * 4);
            cJSON_AddItemToObject(r.hdr, name, cJSON_Parse(e));
            off += (size_t)lens[k] * 4;
        }
    }
    char *h = pad_header(r.hdr);
    st_write(t->st, h, strlen(h), data, off);
    free(h);
    free(data);
    raw_free(&r);
    tmp_config(t, BASE, cfg_qwen2);
}

static void test_qwen2_biases(void **state) {
    (void)state;
    tmp_model t;
    tmp_create(&t);
    write_qwen2(&t, 0);
    policy_weights *w = load_ok(t.dir), *ref = load_ok(BASE);
    assert_int_equal(w->cfg.arch, POLICY_ARCH_QWEN2);
    assert_int_equal(w->cfg.qkv_bias, 1);
    assert_int_equal(w->cfg.qk_norm, 0);
    assert_int_equal(w->n_params, ref->n_params + 3 * (128 + 32 + 32));
    for (int l = 0; l < 3; l++) {
        const policy_layer *L = &w->layers[l];
        assert_true(L->bq[0] == qwen2_bias_value(l, 0, 0) && L->bq[127] == qwen2_bias_value(l, 0, 127));
        assert_true(L->bk[0] == qwen2_bias_value(l, 1, 0) && L->bk[31] == qwen2_bias_value(l, 1, 31));
        assert_true(L->bv[5] == qwen2_bias_value(l, 2, 5) && L->bv[31] == qwen2_bias_value(l, 2, 31));
        assert_null(L->bo);
        assert_same_bits(view_elem(&L->wq, 17, 3), view_elem(&ref->layers[l].wq, 17, 3));
    }
    policy_weights_free(w);
    policy_weights_free(ref);
    tmp_remove(&t);

    tmp_create(&t);
    write_qwen2(&t, 1);
    expect_fail(t.dir, t.st, "tensor 'model.layers.2.self_attn.v_proj.bias' is missing");
    tmp_remove(&t);
}

static void test_truncated(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, NULL);
    raw_st r;
    raw_load(t.st, &r);
    /* the tensor stored last in the data section is the one cut */
    const cJSON *e = NULL, *last = NULL;
    double last_end = -1;
    cJSON_ArrayForEach(e, r.hdr) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        double end = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), 1)->valuedouble;
        if (end > last_end) {
            last_end = end;
            last = e;
        }
    }
    assert_non_null(last);
    char name[128];
    snprintf(name, sizeof name, "'%s'", last->string);
    write_all(t.st, r.bytes, r.len - 100); /* less than the last tensor, so only it is cut */
    expect_fail(t.dir, t.st, name);
    assert_msg_has("data_offsets");
    /* shorter than the length prefix itself */
    write_all(t.st, r.bytes, 5);
    expect_fail(t.dir, t.st, "too short");
    raw_free(&r);
    tmp_remove(&t);
}

static void swap_shape(cJSON *hdr, size_t data_len) { /* same element count, wrong orientation */
    (void)data_len;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.layers.1.mlp.up_proj.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "shape", cJSON_Parse("[128,352]"));
}

static void short_shape(cJSON *hdr, size_t data_len) { /* disagrees with data_offsets */
    (void)data_len;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.layers.1.mlp.up_proj.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "shape", cJSON_Parse("[352,127]"));
}

static void test_wrong_shape(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, swap_shape);
    expect_fail(t.dir, t.st, "tensor 'model.layers.1.mlp.up_proj.weight' has shape [128,352], expected [352,128]");
    tmp_remove(&t);
    tmp_from(&t, BASE, short_shape);
    expect_fail(t.dir, t.st, "'model.layers.1.mlp.up_proj.weight'");
    assert_msg_has("data_offsets");
    tmp_remove(&t);
}

static void drop_tensor(cJSON *hdr, size_t data_len) {
    (void)data_len;
    cJSON_DeleteItemFromObjectCaseSensitive(hdr, "model.layers.2.self_attn.k_proj.weight");
}

static void test_missing_tensor(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, drop_tensor);
    expect_fail(t.dir, t.st, "'model.layers.2.self_attn.k_proj.weight' is missing");
    tmp_remove(&t);
}

static void int_dtype(cJSON *hdr, size_t data_len) {
    (void)data_len;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.norm.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "dtype", cJSON_CreateString("I32"));
}

static void bogus_dtype(cJSON *hdr, size_t data_len) {
    (void)data_len;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.norm.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "dtype", cJSON_CreateString("Q4_K"));
}

static void test_wrong_dtype(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, int_dtype);
    expect_fail(t.dir, t.st, "'model.norm.weight' has dtype I32");
    tmp_remove(&t);
    tmp_from(&t, BASE, bogus_dtype);
    expect_fail(t.dir, t.st, "'model.norm.weight': unknown dtype 'Q4_K'");
    tmp_remove(&t);
}

static void test_garbage_header(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, NULL);
    const char *junk = "this is not JSON at all, just bytes";
    st_write(t.st, junk, strlen(junk), "\0\0\0\0", 4);
    expect_fail(t.dir, t.st, "not a JSON object");
    /* valid JSON followed by non-padding bytes inside the declared header */
    const char *trail = "{\"__metadata__\":{}}xx";
    st_write(t.st, trail, strlen(trail), NULL, 0);
    expect_fail(t.dir, t.st, "not a JSON object");
    /* a JSON array is not a header */
    st_write(t.st, "[1,2]   ", 8, NULL, 0);
    expect_fail(t.dir, t.st, "not a JSON object");
    tmp_remove(&t);
}

static void test_header_length_beyond_file(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, NULL);
    const char *h = "{\"__metadata__\":{}}     ";
    st_write(t.st, h, strlen(h) + 1000, NULL, 0);
    expect_fail(t.dir, t.st, "header length");
    st_write(t.st, h, UINT64_MAX, NULL, 0); /* 8 + N would wrap */
    expect_fail(t.dir, t.st, "header length");
    tmp_remove(&t);
}

static void offsets_out_of_range(cJSON *hdr, size_t data_len) {
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.norm.weight");
    char buf[64];
    snprintf(buf, sizeof buf, "[%zu,%zu]", data_len - 256, data_len + 256); /* 512 bytes, runs 256 past the end */
    cJSON_ReplaceItemInObjectCaseSensitive(e, "data_offsets", cJSON_Parse(buf));
}

static void offsets_reversed(cJSON *hdr, size_t data_len) {
    (void)data_len;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.norm.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "data_offsets", cJSON_Parse("[1000,488]"));
}

static void offsets_negative(cJSON *hdr, size_t data_len) {
    (void)data_len;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.norm.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "data_offsets", cJSON_Parse("[-512,0]"));
}

static void test_offsets_out_of_range(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, offsets_out_of_range);
    expect_fail(t.dir, t.st, "'model.norm.weight'");
    assert_msg_has("outside the data section");
    tmp_remove(&t);
    tmp_from(&t, BASE, offsets_reversed);
    expect_fail(t.dir, t.st, "'model.norm.weight'");
    tmp_remove(&t);
    tmp_from(&t, BASE, offsets_negative);
    expect_fail(t.dir, t.st, "'model.norm.weight'");
    tmp_remove(&t);
}

static void offsets_overlap(cJSON *hdr, size_t data_len) {
    (void)data_len;
    /* k_proj (32x128 f32 = 16384 bytes) moved to start 100 bytes into embed_tokens */
    cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, "model.layers.0.self_attn.k_proj.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(e, "data_offsets", cJSON_Parse("[100,16484]"));
}

static void test_overlapping_offsets(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, offsets_overlap);
    expect_fail(t.dir, t.st, "'model.layers.0.self_attn.k_proj.weight'");
    assert_msg_has("overlaps tensor 'model.embed_tokens.weight'");
    tmp_remove(&t);
}

/* ---- config.json variants */
static void cfg_unknown_type(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "model_type", cJSON_CreateString("xyz")); }
static void cfg_top_level_theta(cJSON *c) {
    cJSON_DeleteItemFromObjectCaseSensitive(c, "rope_parameters");
    cJSON_AddNumberToObject(c, "rope_theta", 250000.0);
}
static void cfg_no_theta(cJSON *c) { cJSON_DeleteItemFromObjectCaseSensitive(c, "rope_parameters"); }
static void cfg_gelu(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "hidden_act", cJSON_CreateString("gelu")); }
static void cfg_yarn(cJSON *c) {
    cJSON_AddItemToObject(c, "rope_scaling", cJSON_Parse("{\"rope_type\":\"yarn\",\"factor\":4.0}"));
}
static void cfg_bad_kv(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "num_key_value_heads", cJSON_CreateNumber(3)); }
static void cfg_sliding(cJSON *c) { cJSON_AddTrueToObject(c, "use_sliding_window"); }
static void cfg_neg_dim(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "hidden_size", cJSON_CreateNumber(-128)); }
static void cfg_eos_list(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "eos_token_id", cJSON_Parse("[7, 2]")); }
static void cfg_attn_bias(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "attention_bias", cJSON_CreateTrue()); }
static void cfg_relu(cJSON *c) { cJSON_ReplaceItemInObjectCaseSensitive(c, "activation_function", cJSON_CreateString("relu")); }
static void cfg_no_ids(cJSON *c) {
    cJSON_DeleteItemFromObjectCaseSensitive(c, "eos_token_id");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "bos_token_id");
}

static void test_config_variants(void **state) {
    (void)state;
    tmp_model t;
    tmp_from(&t, BASE, NULL);
    policy_config c;

    tmp_config(&t, BASE, cfg_unknown_type);
    assert_int_equal(policy_config_load(t.cfg, &c), BR_EINVAL);
    assert_msg_has(t.cfg);
    assert_msg_has("unknown model_type 'xyz' (supported: llama, qwen2, qwen3, gpt2)");
    expect_fail(t.dir, t.cfg, "model_type");

    tmp_config(&t, BASE, cfg_top_level_theta);
    policy_weights *w = load_ok(t.dir);
    assert_true(w->cfg.rope_theta == 250000.0);
    policy_weights_free(w);

    tmp_config(&t, BASE, cfg_no_theta);
    assert_int_equal(policy_config_load(t.cfg, &c), BR_OK);
    assert_true(c.rope_theta == 10000.0);

    tmp_config(&t, BASE, cfg_eos_list);
    assert_int_equal(policy_config_load(t.cfg, &c), BR_OK);
    assert_int_equal(c.eos_id, 7);
    tmp_config(&t, BASE, cfg_no_ids);
    assert_int_equal(policy_config_load(t.cfg, &c), BR_OK);
    assert_int_equal(c.eos_id, -1);
    assert_int_equal(c.bos_id, -1);

    tmp_config(&t, BASE, cfg_gelu);
    expect_fail(t.dir, t.cfg, "'hidden_act' = 'gelu'");
    tmp_config(&t, BASE, cfg_yarn);
    expect_fail(t.dir, t.cfg, "rope_scaling");
    assert_msg_has("yarn");
    tmp_config(&t, BASE, cfg_bad_kv);
    expect_fail(t.dir, t.cfg, "num_key_value_heads");
    tmp_config(&t, BASE, cfg_sliding);
    expect_fail(t.dir, t.cfg, "use_sliding_window");
    tmp_config(&t, BASE, cfg_neg_dim);
    expect_fail(t.dir, t.cfg, "hidden_size");
    tmp_config(&t, BASE, cfg_attn_bias); /* llama: o_proj bias, not implemented */
    expect_fail(t.dir, t.cfg, "attention_bias");
    tmp_config(&t, MODELS "/tiny-gpt2/f32", cfg_relu);
    expect_fail(t.dir, t.cfg, "'activation_function' = 'relu'");

    write_all(t.cfg, "{\"model_type\": \"llama\",", 23);
    assert_int_equal(policy_config_load(t.cfg, &c), BR_EFORMAT);
    assert_msg_has(t.cfg);
    expect_fail(t.dir, t.cfg, "JSON");
    tmp_remove(&t);
}

/* ---- sharded checkpoints: tiny-qwen3 f32 split into two shards + index */
typedef struct {
    cJSON *hdr;
    uint8_t *data;
    size_t len;
} shard_buf;

/* Adds tensor e (from raw r) to shard s, rebasing its offsets. */
static void shard_add(shard_buf *s, const raw_st *r, const cJSON *e) {
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    size_t b = (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble, en = (size_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
    s->data = realloc(s->data, s->len + (en - b) + 1);
    assert_non_null(s->data);
    memcpy(s->data + s->len, r->data + b, en - b);
    cJSON *c = cJSON_Duplicate(e, 1);
    char buf[64];
    snprintf(buf, sizeof buf, "[%zu,%zu]", s->len, s->len + (en - b));
    cJSON_ReplaceItemInObjectCaseSensitive(c, "data_offsets", cJSON_Parse(buf));
    cJSON_AddItemToObject(s->hdr, e->string, c);
    s->len += en - b;
}

/* mode 0: a clean split; 1: one tensor stored in both shards; 2: the index maps a tensor no shard holds;
 * 3: a shard holds a tensor the index does not list. */
static void write_sharded(tmp_model *t, const char *src, int mode) {
    char p[512];
    raw_st r;
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    raw_load(p, &r);
    snprintf(p, sizeof p, "%s/config.json", src);
    copy_file(p, t->cfg);
    shard_buf sh[2] = {{cJSON_CreateObject(), NULL, 0}, {cJSON_CreateObject(), NULL, 0}};
    const char *names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    cJSON *index = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(index, "weight_map");
    cJSON_AddItemToObject(index, "metadata", cJSON_Parse("{\"total_size\": 0}"));
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, r.hdr) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        int k = strncmp(e->string, "model.layers.2", 14) < 0 ? 0 : 1;
        shard_add(&sh[k], &r, e);
        if (mode == 1 && strcmp(e->string, "model.norm.weight") == 0) shard_add(&sh[0], &r, e);
        if (mode == 3 && strcmp(e->string, "model.layers.3.mlp.up_proj.weight") == 0) continue;
        cJSON_AddStringToObject(wm, e->string, names[k]);
    }
    if (mode == 2) cJSON_AddStringToObject(wm, "model.layers.9.mlp.up_proj.weight", names[1]);
    for (int k = 0; k < 2; k++) {
        char *h = pad_header(sh[k].hdr);
        snprintf(p, sizeof p, "%s/%s", t->dir, names[k]);
        st_write(p, h, strlen(h), sh[k].data, sh[k].len);
        free(h);
        cJSON_Delete(sh[k].hdr);
        free(sh[k].data);
    }
    char *s = cJSON_Print(index);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", t->dir);
    write_all(p, s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(index);
    raw_free(&r);
}

static void test_sharded(void **state) {
    (void)state;
    const char *src = MODELS "/tiny-qwen3/f32";
    tmp_model t;
    tmp_create(&t);
    write_sharded(&t, src, 0);
    policy_weights *a = load_ok(src), *b = load_ok(t.dir);
    /* same tensors, same bytes, now spread over two files */
    assert_int_equal(policy_st_count(b->st), policy_st_count(a->st));
    int in_second = 0;
    for (int i = 0; i < policy_st_count(a->st); i++) {
        const st_tensor *x = policy_st_at(a->st, i), *y = policy_st_find(b->st, x->name);
        assert_non_null(y);
        assert_string_equal(x->name, policy_st_at(b->st, i)->name);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
        in_second += strstr(y->file, "model-00002-of-00002.safetensors") != NULL;
    }
    assert_true(in_second > 0 && in_second < policy_st_count(a->st));
    assert_int_equal(a->n_params, b->n_params);
    /* the fingerprint hashes tensor content, not files: identical config + tensors -> identical fingerprint */
    assert_int_equal(a->fingerprint, b->fingerprint);
    for (int l = 0; l < a->cfg.n_layers; l++) {
        assert_memory_equal(a->layers[l].q_norm, b->layers[l].q_norm, 32 * sizeof(float));
        assert_same_bits(view_elem(&a->layers[l].w_down, 127, 383), view_elem(&b->layers[l].w_down, 127, 383));
        assert_same_bits(view_elem(&a->layers[l].wk, 63, 0), view_elem(&b->layers[l].wk, 63, 0));
    }
    assert_same_bits(view_elem(&a->lm_head, 1023, 127), view_elem(&b->lm_head, 1023, 127));
    policy_weights_free(a);
    policy_weights_free(b);
    tmp_remove(&t);

    tmp_create(&t);
    write_sharded(&t, src, 1);
    expect_fail(t.dir, "model.safetensors.index.json", "'model.norm.weight' appears twice");
    tmp_remove(&t);
    tmp_create(&t);
    write_sharded(&t, src, 2);
    expect_fail(t.dir, "model.safetensors.index.json", "'model.layers.9.mlp.up_proj.weight'");
    assert_msg_has("missing");
    tmp_remove(&t);
    tmp_create(&t);
    write_sharded(&t, src, 3);
    expect_fail(t.dir, "model.safetensors.index.json", "'model.layers.3.mlp.up_proj.weight'");
    assert_msg_has("not listed");
    tmp_remove(&t);
}

static void test_st_direct(void **state) {
    (void)state;
    policy_st *st = NULL;
    /* a file path works as well as its directory; lookups of absent names return NULL */
    assert_int_equal(policy_st_open(STORIES "/model.safetensors", &st), BR_OK);
    assert_int_equal(policy_st_count(st), 2 + 5 * 9); /* embed, final norm, 9 per layer; tied */
    for (int i = 1; i < policy_st_count(st); i++)
        assert_true(strcmp(policy_st_at(st, i - 1)->name, policy_st_at(st, i)->name) < 0);
    const st_tensor *t = policy_st_find(st, "model.layers.4.mlp.down_proj.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 64);
    assert_int_equal(t->shape[1], 172);
    assert_int_equal(t->nbytes, 64 * 172 * 4);
    assert_null(policy_st_find(st, "model.layers.5.mlp.down_proj.weight"));
    assert_null(policy_st_find(st, ""));
    assert_null(policy_st_at(st, -1));
    assert_null(policy_st_at(st, policy_st_count(st)));
    assert_string_equal(st_dtype_name(ST_BF16), "BF16");
    assert_string_equal(policy_arch_name(POLICY_ARCH_QWEN2), "qwen2");
    policy_st_free(st);
    policy_st_free(NULL);
    policy_weights_free(NULL);
    assert_int_not_equal(policy_st_open(BR_TEST_DATA "/no-such-dir", &st), BR_OK);
    assert_null(st);
    assert_msg_has("no-such-dir");
    assert_int_not_equal(policy_st_open(BR_TEST_DATA, &st), BR_OK); /* a directory without a checkpoint */
    assert_msg_has("model.safetensors");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_qwen3),
        cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_tiny_gpt2),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_gpt2_no_prefix),
        cmocka_unit_test(test_st_direct),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_shape),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_wrong_dtype),
        cmocka_unit_test(test_garbage_header),
        cmocka_unit_test(test_header_length_beyond_file),
        cmocka_unit_test(test_offsets_out_of_range),
        cmocka_unit_test(test_overlapping_offsets),
        cmocka_unit_test(test_config_variants),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_qwen2_biases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
