/* Tests of the public C API (include/bitroll/bitroll.h), against references the API did not make:
 * - generate and score through the API reproduce, bit for bit, the golden rollouts and scores files made by the
 *   CLI (tests/data/golden/make.sh), whatever the engine's budgets;
 * - bitroll_verify_files: exit status and report on the golden pair, on a scores file with one flipped bit, on
 *   files that do not belong together;
 * - weights round trip: tensors set through the API and committed give the fingerprint and the completions of the
 *   same tensors written as a checkpoint (by this test's own safetensors writer) and loaded; f32 -> bf16 rounding
 *   against hand-computed bf16 bits; a failed commit leaves the weights unchanged. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "bitroll/bitroll.h"
#include "logging/h5log.h"
#include "policy/policy.h"

#define STORIES BR_TEST_DATA "/../../configs/models/stories260K"
#define GOLDEN BR_TEST_DATA "/golden"
#define LLAMA_F32 BR_TEST_DATA "/models/tiny-llama/f32"
#define LLAMA_BF16 BR_TEST_DATA "/models/tiny-llama/bf16"

static bitroll_engine *open_engine(const char *dir, int mbt, int seqs) {
    bitroll_engine_opts o;
    bitroll_engine_opts_init(&o);
    o.model_dir = dir;
    o.max_batch_tokens = mbt;
    o.max_seqs = seqs;
    o.max_seq_len = 512;
    bitroll_engine *e = NULL;
    bitroll_error err;
    bitroll_status st = bitroll_engine_open(&o, &e, &err);
    if (st != BITROLL_OK) fail_msg("open %s: %s", dir, err.message);
    return e;
}

/* ---------------------------------------------------------------- golden files */

static void golden_generate(const char *budget_name, int mbt, int seqs) {
    bitroll_rollouts *g = NULL;
    bitroll_error err;
    assert_int_equal(bitroll_rollouts_read(GOLDEN "/stories-t1.rollouts.h5", &g, &err), BITROLL_OK);
    bitroll_engine *e = open_engine(STORIES, mbt, seqs);
    /* the golden file's run: --n 3 --temperature 1 --top-p 0.9 --max-new-tokens 48 --seed 7, stop = EOS (id 2) */
    const int32_t stop = 2;
    int32_t *max_new = malloc(sizeof(int32_t) * (size_t)g->n);
    for (int64_t i = 0; i < g->n; i++) max_new[i] = 48;
    bitroll_generate_in in = {g->n, g->prompt_offsets, g->prompt_tokens, g->sample_id, g->temperature, g->top_p,
                              g->top_k, g->seed, max_new, 0.0f, 0, 0, &stop, 1};
    bitroll_completions *c = NULL;
    if (bitroll_generate(e, &in, &c) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(e));
    const int64_t T = g->completion_offsets[g->n];
    assert_int_equal(c->n, g->n);
    assert_memory_equal(c->offsets, g->completion_offsets, 8 * (size_t)(g->n + 1));
    assert_memory_equal(c->tokens, g->completion_tokens, 4 * (size_t)T);
    assert_memory_equal(c->logprobs, g->logprobs, 4 * (size_t)T);
    assert_memory_equal(c->digests, g->digests, 8 * (size_t)T);
    assert_memory_equal(c->finish_reason, g->finish_reason, (size_t)g->n);
    print_message("generate (%s): %lld samples, %lld tokens equal to the golden file\n", budget_name,
                  (long long)g->n, (long long)T);
    bitroll_completions_free(c);
    free(max_new);
    bitroll_engine_close(e);
    bitroll_rollouts_free(g);
}

static void test_generate_golden(void **state) {
    (void)state;
    golden_generate("256 tokens, 64 seqs", 256, 64);
    golden_generate("7 tokens, 2 seqs", 7, 2);
}

static void test_score_golden(void **state) {
    (void)state;
    bitroll_rollouts *g = NULL;
    assert_int_equal(bitroll_rollouts_read(GOLDEN "/qwen3-t1.rollouts.h5", &g, NULL), BITROLL_OK);
    h5log_scores gs = {0};
    assert_int_equal(h5log_scores_read(GOLDEN "/qwen3-t1.scores.h5", &gs, NULL), BR_OK);
    const int64_t T = g->completion_offsets[g->n];
    for (int round = 0; round < 2; round++) {
        bitroll_engine *e = open_engine(BR_TEST_DATA "/models/tiny-qwen3/bf16", round ? 5 : 300, round ? 1 : 16);
        float *lp = malloc(4 * (size_t)T);
        uint64_t *dg = malloc(8 * (size_t)T);
        bitroll_score_in in = {g->n, g->prompt_offsets, g->prompt_tokens, g->completion_offsets, g->completion_tokens,
                               g->temperature};
        if (bitroll_score(e, &in, lp, dg, 0) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(e));
        assert_memory_equal(lp, gs.logprobs, 4 * (size_t)T);
        assert_memory_equal(dg, gs.logits_digest, 8 * (size_t)T);
        assert_memory_equal(lp, g->logprobs, 4 * (size_t)T); /* and the sampler's own numbers */
        free(lp);
        free(dg);
        bitroll_engine_close(e);
    }
    h5log_scores_free(&gs);
    bitroll_rollouts_free(g);
}

static void test_score_errors(void **state) {
    (void)state;
    bitroll_engine *e = open_engine(STORIES, 64, 4);
    const int64_t po[] = {0, 2}, co[] = {0, 2};
    const int32_t p[] = {1, 400}, bad[] = {5, 512};
    float lp[2];
    bitroll_score_in in = {1, po, p, co, bad, NULL};
    assert_int_equal(bitroll_score(e, &in, lp, NULL, 0), BITROLL_EINVAL);
    assert_non_null(strstr(bitroll_engine_error(e), "512"));
    const int64_t po_empty[] = {0, 0};
    bitroll_score_in in2 = {1, po_empty, p, co, p, NULL};
    assert_int_equal(bitroll_score(e, &in2, lp, NULL, 0), BITROLL_EINVAL);
    assert_non_null(strstr(bitroll_engine_error(e), "empty"));
    const float negt = -1.0f;
    bitroll_score_in in3 = {1, po, p, co, p, &negt};
    assert_int_equal(bitroll_score(e, &in3, lp, NULL, 0), BITROLL_EINVAL);
    assert_non_null(strstr(bitroll_engine_error(e), "temperature"));
    assert_int_equal(bitroll_score(e, &in3, lp, NULL, 1), BITROLL_EINVAL); /* on_device on a CPU engine */
    bitroll_engine_close(e);

    bitroll_engine_opts o;
    bitroll_engine_opts_init(&o);
    bitroll_error err;
    bitroll_engine *x = NULL;
    assert_int_equal(bitroll_engine_open(&o, &x, &err), BITROLL_EINVAL); /* neither model_dir nor random_weights */
    assert_null(x);
    assert_non_null(strstr(err.message, "model_dir"));
    o.model_dir = STORIES;
    o.max_seq_len = 100000;
    assert_int_equal(bitroll_engine_open(&o, &x, &err), BITROLL_EINVAL);
    assert_non_null(strstr(err.message, "context length"));
    o.max_seq_len = 0;
    o.struct_size = 8;
    assert_int_equal(bitroll_engine_open(&o, &x, &err), BITROLL_EINVAL);
    assert_non_null(strstr(err.message, "struct_size"));
}

/* ---------------------------------------------------------------- verify */

static void test_verify(void **state) {
    (void)state;
    bitroll_verify_report r;
    bitroll_error err;
    assert_int_equal(bitroll_verify_files(GOLDEN "/stories-t1.rollouts.h5", GOLDEN "/stories-t1.scores.h5", &r, &err),
                     BITROLL_OK);
    assert_int_equal(r.samples, 12);
    assert_true(r.tokens > 100);
    assert_int_equal(r.logprob_mismatches + r.digest_mismatches, 0);
    assert_true(r.kl_estimate == 0.0 && r.max_abs_delta == 0.0);
    assert_int_equal(r.first_sample_id, -1);

    /* one flipped bit in one log-prob of a copy of the scores file */
    h5log_scores s = {0};
    h5log_meta m = {0};
    assert_int_equal(h5log_scores_read(GOLDEN "/stories-t1.scores.h5", &s, &m), BR_OK);
    const int64_t at = s.completion_offsets[5] + 3;
    uint32_t bits;
    memcpy(&bits, &s.logprobs[at], 4);
    bits ^= 1u;
    memcpy(&s.logprobs[at], &bits, 4);
    h5log_provenance p = {m.engine_version, m.git_rev, m.compiler, m.model_dir, m.model_fingerprint, m.kernel_mode,
                          m.device_names, m.config_json, m.lib_versions, m.mpi_version, m.world_size, m.weight_version};
    char path[] = "/tmp/bitroll_test_api_XXXXXX";
    assert_non_null(mkdtemp(path));
    char flipped[300];
    snprintf(flipped, sizeof flipped, "%s/flipped.h5", path);
    assert_int_equal(h5log_scores_write(flipped, &s, &p, m.rollouts_fingerprint), BR_OK);
    assert_int_equal(bitroll_verify_files(GOLDEN "/stories-t1.rollouts.h5", flipped, &r, &err), BITROLL_MISMATCH);
    assert_int_equal(r.logprob_mismatches, 1);
    assert_int_equal(r.digest_mismatches, 0);
    assert_int_equal(r.first_sample_id, 5);
    assert_int_equal(r.first_token, 3);
    assert_true(r.max_abs_delta > 0.0 && r.max_abs_delta < 1e-5);
    unlink(flipped);
    rmdir(path);
    h5log_scores_free(&s);
    h5log_meta_free(&m);

    /* files that do not belong together; a missing file */
    assert_int_equal(bitroll_verify_files(GOLDEN "/stories-t0.rollouts.h5", GOLDEN "/stories-t1.scores.h5", &r, &err),
                     BITROLL_EINVAL);
    assert_non_null(strstr(err.message, "fingerprint"));
    assert_int_equal(bitroll_verify_files(GOLDEN "/none.h5", GOLDEN "/stories-t1.scores.h5", &r, &err), BITROLL_EIO);
    assert_non_null(strstr(err.message, "none.h5"));
}

/* ---------------------------------------------------------------- weights round trip */

/* A safetensors file written by this test (not by bitroll): header length (u64 LE), JSON header, data. */
typedef struct {
    const char *name, *dtype;
    int64_t shape[4];
    int ndim;
    const void *data;
    size_t bytes;
} wt;

static void write_safetensors(const char *path, const wt *t, int n) {
    size_t cap = 1 << 20, len = 0, off = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t[i].name,
                                t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].bytes);
        off += t[i].bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = len;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hl >> (8 * i));
    assert_int_equal(fwrite(le, 1, 8, f), 8);
    assert_int_equal(fwrite(h, 1, len, f), len);
    for (int i = 0; i < n; i++)
        if (t[i].bytes) assert_int_equal(fwrite(t[i].data, 1, t[i].bytes, f), t[i].bytes);
    assert_int_equal(fclose(f), 0);
    free(h);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, k, b), k);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

static bitroll_completions *gen(bitroll_engine *e) {
    static const int64_t po[] = {0, 3, 4, 9};
    static const int32_t p[] = {1, 17, 300, 5, 900, 901, 902, 903, 904};
    static const float temp[] = {1.0f, 0.0f, 0.7f};
    bitroll_generate_in in = {3, po, p, NULL, temp, NULL, NULL, NULL, NULL, 1.0f, 20, 11, NULL, 0};
    bitroll_completions *c = NULL;
    if (bitroll_generate(e, &in, &c) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(e));
    return c;
}

static void assert_same_completions(const bitroll_completions *a, const bitroll_completions *b) {
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->offsets, b->offsets, 8 * (size_t)(a->n + 1));
    const size_t T = (size_t)a->offsets[a->n];
    assert_memory_equal(a->tokens, b->tokens, 4 * T);
    assert_memory_equal(a->logprobs, b->logprobs, 4 * T);
    assert_memory_equal(a->digests, b->digests, 8 * T);
}

/* New weights for every tensor of the f32 checkpoint: even tensors given as f32 values, odd ones as bf16 (whose
 * f32 widening, exact, is what the checkpoint holds). */
static void test_weights_roundtrip(void **state) {
    (void)state;
    policy_st *st = NULL;
    assert_int_equal(policy_st_open(LLAMA_F32, &st), BR_OK);
    const int n = policy_st_count(st);
    wt *t = calloc((size_t)n, sizeof *t);
    float **f32 = calloc((size_t)n, sizeof *f32);
    uint16_t **b16 = calloc((size_t)n, sizeof *b16);
    for (int i = 0; i < n; i++) {
        const st_tensor *s = policy_st_at(st, i);
        assert_int_equal(s->dtype, ST_F32);
        f32[i] = malloc(4 * (size_t)s->numel + 4);
        b16[i] = malloc(2 * (size_t)s->numel + 2);
        const float *old = s->data;
        for (int64_t k = 0; k < s->numel; k++) {
            float v = 0.8f * old[k] + 0.01f * sinf((float)(k % 997) + (float)i);
            uint32_t u;
            memcpy(&u, &v, 4);
            b16[i][k] = (uint16_t)(u >> 16); /* a bf16 value: the top half of v's bits */
            if (i % 2) {
                u = (uint32_t)b16[i][k] << 16;
                memcpy(&v, &u, 4);
            }
            f32[i][k] = v;
        }
        t[i] = (wt){s->name, "F32", {0}, s->ndim, f32[i], 4 * (size_t)s->numel};
        memcpy(t[i].shape, s->shape, sizeof(int64_t) * (size_t)s->ndim);
    }
    char dir[] = "/tmp/bitroll_test_api_XXXXXX", path[400], cfg[400];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    write_safetensors(path, t, n);
    copy_file(LLAMA_F32 "/config.json", cfg);

    /* A: the new weights as a checkpoint */
    bitroll_engine *a = open_engine(dir, 64, 4);
    bitroll_engine_info ia, ib;
    assert_int_equal(bitroll_engine_get_info(a, &ia), BITROLL_OK);
    bitroll_completions *ca = gen(a);

    /* B: the original checkpoint, then every tensor set through the API */
    bitroll_engine *b = open_engine(LLAMA_F32, 16, 2);
    assert_int_equal(bitroll_engine_get_info(b, &ib), BITROLL_OK);
    assert_string_not_equal(ia.fingerprint, ib.fingerprint);
    assert_int_equal(ib.weight_version, 0);
    bitroll_completions *c0 = gen(b);
    for (int i = 0; i < n; i++) {
        const bitroll_status s = i % 2 ? bitroll_weights_set(b, t[i].name, BITROLL_DTYPE_BF16, t[i].shape, t[i].ndim,
                                                             b16[i], 0)
                                       : bitroll_weights_set(b, t[i].name, BITROLL_DTYPE_F32, t[i].shape, t[i].ndim,
                                                             f32[i], 0);
        if (s != BITROLL_OK) fail_msg("%s", bitroll_engine_error(b));
    }
    /* staged tensors are invisible until the commit */
    bitroll_completions *c1 = gen(b);
    assert_same_completions(c0, c1);
    int64_t version = -1;
    if (bitroll_weights_commit(b, &version) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(b));
    assert_int_equal(version, 1);
    assert_int_equal(bitroll_engine_get_info(b, &ib), BITROLL_OK);
    assert_string_equal(ia.fingerprint, ib.fingerprint);
    assert_int_equal(ib.weight_version, 1);
    assert_int_equal(ia.n_params, ib.n_params);
    bitroll_completions *cb = gen(b);
    assert_same_completions(ca, cb);
    assert_int_equal(cb->weight_version, 1);
    print_message("weights round trip: fingerprint %s, %lld completion tokens equal\n", ib.fingerprint,
                  (long long)cb->offsets[cb->n]);

    /* a failed commit (one bad tensor) leaves the weights and version as they were */
    int64_t shape_bad[2] = {t[0].shape[0], t[0].shape[1] + (t[0].ndim > 1)};
    assert_int_equal(bitroll_weights_set(b, t[0].name, BITROLL_DTYPE_F32, shape_bad, t[0].ndim, f32[0], 0), BITROLL_EINVAL);
    assert_non_null(strstr(bitroll_engine_error(b), t[0].name));
    assert_int_equal(bitroll_weights_set(b, "model.no_such.weight", BITROLL_DTYPE_F32, t[0].shape, t[0].ndim, f32[0], 0),
                     BITROLL_EINVAL);
    assert_non_null(strstr(bitroll_engine_error(b), "model.no_such.weight"));
    /* reload: back to the original checkpoint, with an explicit version */
    version = 7;
    assert_int_equal(bitroll_weights_reload(b, LLAMA_F32, &version), BITROLL_OK);
    assert_int_equal(version, 7);
    bitroll_completions *c2 = gen(b);
    assert_same_completions(c0, c2);
    assert_int_equal(bitroll_weights_reload(b, STORIES, NULL), BITROLL_EINVAL); /* another shape */
    assert_non_null(strstr(bitroll_engine_error(b), "shape"));
    bitroll_completions *c3 = gen(b);
    assert_same_completions(c0, c3);

    bitroll_completions_free(ca);
    bitroll_completions_free(cb);
    bitroll_completions_free(c0);
    bitroll_completions_free(c1);
    bitroll_completions_free(c2);
    bitroll_completions_free(c3);
    bitroll_engine_close(a);
    bitroll_engine_close(b);
    unlink(path);
    unlink(cfg);
    rmdir(dir);
    for (int i = 0; i < n; i++) {
        free(f32[i]);
        free(b16[i]);
    }
    free(f32);
    free(b16);
    free(t);
    policy_st_free(st);
}

/* f32 data into a bf16 checkpoint: round to nearest, ties to even, checked on hand-computed bits. */
static void test_weights_bf16_rounding(void **state) {
    (void)state;
    policy_st *st = NULL;
    assert_int_equal(policy_st_open(LLAMA_BF16, &st), BR_OK);
    const char *name = "model.norm.weight";
    const st_tensor *s = policy_st_find(st, name);
    assert_non_null(s);
    assert_int_equal(s->dtype, ST_BF16);
    /* (f32 bits, bf16 bits after RNE), computed by hand */
    static const uint32_t in[][2] = {
        {0x3F800000u, 0x3F80u}, /* 1.0 exact */
        {0x3F808000u, 0x3F80u}, /* halfway, even below: stays */
        {0x3F818000u, 0x3F82u}, /* halfway, odd below: rounds up to even */
        {0x3F808001u, 0x3F81u}, /* just above halfway: up */
        {0x3F807FFFu, 0x3F80u}, /* just below halfway: down */
        {0xBF818000u, 0xBF82u}, /* negative, halfway odd: away from zero to even */
        {0x7F7FFFFFu, 0x7F80u}, /* FLT_MAX rounds to +inf in bf16 */
    };
    const int64_t N = s->numel;
    float *data = malloc(4 * (size_t)N);
    uint16_t *want = malloc(2 * (size_t)N);
    for (int64_t k = 0; k < N; k++) {
        const uint32_t *p = in[k % 7];
        memcpy(&data[k], &p[0], 4);
        want[k] = (uint16_t)p[1];
    }
    /* the checkpoint with `want` written by this test, the rest copied */
    const int n = policy_st_count(st);
    wt *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        const st_tensor *x = policy_st_at(st, i);
        t[i] = (wt){x->name, x->dtype_name, {0}, x->ndim, strcmp(x->name, name) ? x->data : (const void *)want, x->nbytes};
        memcpy(t[i].shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    }
    char dir[] = "/tmp/bitroll_test_api_XXXXXX", path[400], cfg[400];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    write_safetensors(path, t, n);
    copy_file(LLAMA_BF16 "/config.json", cfg);
    bitroll_engine *a = open_engine(dir, 32, 2), *b = open_engine(LLAMA_BF16, 32, 2);
    assert_int_equal(bitroll_weights_set(b, name, BITROLL_DTYPE_F32, s->shape, s->ndim, data, 0), BITROLL_OK);
    assert_int_equal(bitroll_weights_commit(b, NULL), BITROLL_OK);
    bitroll_engine_info ia, ib;
    bitroll_engine_get_info(a, &ia);
    bitroll_engine_get_info(b, &ib);
    assert_string_equal(ia.fingerprint, ib.fingerprint);
    bitroll_engine_close(a);
    bitroll_engine_close(b);
    unlink(path);
    unlink(cfg);
    rmdir(dir);
    free(t);
    free(data);
    free(want);
    policy_st_free(st);
}

static void test_versions(void **state) {
    (void)state;
    assert_int_equal(bitroll_api_version(), BITROLL_API_VERSION);
    assert_non_null(strstr(bitroll_version(), "git"));
    assert_string_equal(bitroll_status_name(BITROLL_MISMATCH), "BITROLL_MISMATCH");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),          cmocka_unit_test(test_generate_golden),
        cmocka_unit_test(test_score_golden),      cmocka_unit_test(test_score_errors),
        cmocka_unit_test(test_verify),            cmocka_unit_test(test_weights_roundtrip),
        cmocka_unit_test(test_weights_bf16_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
