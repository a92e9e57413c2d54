/* Tests for the forward pass (policy/forward.c) on real checkpoints:
 * - logits vs HF transformers float64 (reference.safetensors) for tiny-qwen3/llama/gpt2, f32 and bf16 weights;
 * - stories260K vs llama2.c: logits at position 0 and 256 greedy ids from BOS;
 * - bitwise (memcmp): decode == prefill (chunks 1, 7, 64) == score, alone and with 1..7 other sequences. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/cpu/kern_cpu.h"
#include "policy/forward.h"
#include "policy/policy.h"

#define MODELS BR_TEST_DATA "/models"
#define STORIES BR_TEST_DATA "/../../configs/models/stories260K"

static policy_weights *load(const char *dir) {
    policy_weights *w = NULL;
    br_status rc = policy_weights_load(dir, &w);
    if (rc != BR_OK) fail_msg("loading %s: %s", dir, br_last_error());
    return w;
}

typedef struct {
    policy_st *st;
    const int32_t *ids; /* (4, 64) */
    int rows, cols;
} reference;

static void ref_open(reference *r, const char *family) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/reference.safetensors", MODELS, family);
    if (policy_st_open(path, &r->st) != BR_OK) fail_msg("%s: %s", path, br_last_error());
    const st_tensor *t = policy_st_find(r->st, "input_ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_I32);
    r->ids = t->data;
    r->rows = (int)t->shape[0];
    r->cols = (int)t->shape[1];
}

/* Row-wise relative error: max_i |got - ref| / max_i |ref| for each row; returns the max over rows. */
static double max_row_rel_err(const float *got, const float *ref, int rows, int V) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double e = 0, m = 0;
        for (int i = 0; i < V; i++) {
            e = fmax(e, fabs((double)got[(size_t)r * V + i] - ref[(size_t)r * V + i]));
            m = fmax(m, fabs((double)ref[(size_t)r * V + i]));
        }
        worst = fmax(worst, e / m);
    }
    return worst;
}

/* Scores all reference rows and compares with HF float64 logits. */
static void check_vs_hf(const char *family, const char *variant, const char *ref_name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s/%s", MODELS, family, variant);
    policy_weights *w = load(dir);
    reference r;
    ref_open(&r, family);
    const st_tensor *lt = policy_st_find(r.st, ref_name);
    assert_non_null(lt);
    const int V = w->cfg.vocab;
    assert_int_equal(lt->shape[2], V);

    policy_state *st = NULL;
    policy_kvcache *kv = NULL;
    assert_int_equal(policy_state_create(w, 100, &st), BR_OK);
    assert_int_equal(policy_kv_create(&w->cfg, 64, 16, &kv), BR_OK);
    float *logits = malloc(sizeof(float) * r.rows * r.cols * V);
    const int32_t *toks[4];
    int lens[4];
    for (int i = 0; i < r.rows; i++) {
        toks[i] = r.ids + i * r.cols;
        lens[i] = r.cols;
    }
    assert_int_equal(policy_score(w, st, kv, r.rows, toks, lens, logits), BR_OK);
    double err = max_row_rel_err(logits, lt->data, r.rows * r.cols, V);
    printf("  %s/%s vs HF float64 (%s): max relative error per row %.3g (limit 1e-4)\n", family, variant, ref_name,
           err);
    assert_true(err <= 1e-4);

    /* Greedy continuation of row 0's first 8 ids (HF float64, f32 weights). */
    if (!strcmp(variant, "f32")) {
        const st_tensor *gt = policy_st_find(r.st, "greedy_f64_from_row0_prefix8");
        assert_non_null(gt);
        const int32_t *g = gt->data;
        const int n = (int)gt->shape[1];
        for (int i = 0; i < 8; i++) assert_int_equal(g[i], r.ids[i]);
        policy_seq seq;
        assert_int_equal(policy_seq_init(kv, &seq), BR_OK);
        policy_seq *sp = &seq;
        int len8 = 8;
        const int32_t *p0 = r.ids;
        assert_int_equal(policy_prefill(w, st, kv, 1, &sp, &p0, &len8, 8, logits), BR_OK);
        int agree = 8;
        for (int t = 8; t < n; t++) {
            int32_t next = kern_cpu_argmax(logits, V);
            if (next != g[t]) {
                printf("  greedy differs at %d: got %d want %d\n", t, next, g[t]);
                break;
            }
            agree++;
            assert_int_equal(policy_decode(w, st, kv, 1, &sp, &next, logits), BR_OK);
        }
        printf("  %s greedy from 8-token prefix: %d/%d ids equal to HF float64\n", family, agree, n);
        assert_int_equal(agree, n);
        policy_kv_release(kv, &seq);
        policy_seq_free(&seq);
    }
    free(logits);
    policy_kv_free(kv);
    policy_state_free(st);
    policy_st_free(r.st);
    policy_weights_free(w);
}

static void test_qwen3_f32(void **s) { (void)s; check_vs_hf("tiny-qwen3", "f32", "logits_f32_weights"); }
static void test_qwen3_bf16(void **s) { (void)s; check_vs_hf("tiny-qwen3", "bf16", "logits_bf16_weights"); }
static void test_llama_f32(void **s) { (void)s; check_vs_hf("tiny-llama", "f32", "logits_f32_weights"); }
static void test_llama_bf16(void **s) { (void)s; check_vs_hf("tiny-llama", "bf16", "logits_bf16_weights"); }
static void test_gpt2_f32(void **s) { (void)s; check_vs_hf("tiny-gpt2", "f32", "logits_f32_weights"); }
static void test_gpt2_bf16(void **s) { (void)s; check_vs_hf("tiny-gpt2", "bf16", "logits_bf16_weights"); }

static void test_stories_llama2c(void **state) {
    (void)state;
    policy_weights *w = load(STORIES);
    const int V = w->cfg.vocab;
    policy_state *st = NULL;
    policy_kvcache *kv = NULL;
    assert_int_equal(policy_state_create(w, 16, &st), BR_OK);
    assert_int_equal(policy_kv_create(&w->cfg, 32, 16, &kv), BR_OK);
    policy_seq seq;
    assert_int_equal(policy_seq_init(kv, &seq), BR_OK);
    policy_seq *sp = &seq;
    float *logits = malloc(sizeof(float) * V);

    int32_t tok = w->cfg.bos_id;
    assert_int_equal(tok, 1);
    assert_int_equal(policy_decode(w, st, kv, 1, &sp, &tok, logits), BR_OK);
    FILE *f = fopen(BR_TEST_DATA "/stories260K/logits_pos0_first8.txt", "r");
    assert_non_null(f);
    double worst = 0;
    for (int i = 0; i < 8; i++) {
        double ref;
        assert_int_equal(fscanf(f, "%lf", &ref), 1);
        worst = fmax(worst, fabs(logits[i] - ref) / fmax(1.0, fabs(ref)));
    }
    fclose(f);
    printf("  stories260K logits[0..7] at position 0 vs llama2.c: max relative error %.3g (limit 1e-4)\n", worst);
    assert_true(worst <= 1e-4);

    f = fopen(BR_TEST_DATA "/stories260K/greedy_from_bos.tokens", "r");
    assert_non_null(f);
    int32_t want[256];
    int n = 0;
    while (n < 256 && fscanf(f, "%d", &want[n]) == 1) n++;
    fclose(f);
    assert_int_equal(n, 256);
    int agree = 0;
    for (int t = 0; t < n; t++) {
        int32_t next = kern_cpu_argmax(logits, V);
        if (next != want[t]) {
            printf("  first difference at step %d: got %d, llama2.c %d\n", t, next, want[t]);
            break;
        }
        agree++;
        if (t + 1 < n) assert_int_equal(policy_decode(w, st, kv, 1, &sp, &next, logits), BR_OK);
    }
    printf("  stories260K greedy from BOS: %d/256 ids equal to llama2.c\n", agree);
    assert_int_equal(agree, 256);
    policy_kv_release(kv, &seq);
    policy_seq_free(&seq);
    free(logits);
    policy_kv_free(kv);
    policy_state_free(st);
    policy_weights_free(w);
}

/* ---- bitwise: every way of computing a token's logits gives the same bits. */

/* Runs sequence s's tokens through policy_forward in chunks of `chunk`, logits for every position. */
static void prefill_all(const policy_weights *w, policy_state *st, policy_kvcache *kv, const int32_t *toks, int len,
                        int chunk, float *out) {
    policy_seq seq;
    assert_int_equal(policy_seq_init(kv, &seq), BR_OK);
    assert_int_equal(policy_kv_reserve(kv, &seq, len), BR_OK);
    int32_t pos[64];
    policy_seq *sq[64];
    for (int off = 0; off < len; off += chunk) {
        int n = len - off < chunk ? len - off : chunk;
        for (int i = 0; i < n; i++) {
            pos[i] = off + i;
            sq[i] = &seq;
        }
        policy_batch b = {n, toks + off, pos, sq, NULL};
        assert_int_equal(policy_forward(w, st, kv, &b, out + (size_t)off * w->cfg.vocab), BR_OK);
    }
    policy_kv_release(kv, &seq);
    policy_seq_free(&seq);
}

static void check_invariance(const char *dir) {
    policy_weights *w = load(dir);
    const char *family = strstr(dir, "tiny-qwen3") ? "tiny-qwen3" : strstr(dir, "tiny-llama") ? "tiny-llama" : "tiny-gpt2";
    reference r;
    ref_open(&r, family);
    const int V = w->cfg.vocab, L = r.cols;
    /* 8 sequences of different lengths: the 4 reference rows and their prefixes. */
    enum { NS = 8 };
    const int32_t *toks[NS];
    int lens[NS];
    size_t off[NS + 1];
    off[0] = 0;
    for (int s = 0; s < NS; s++) {
        toks[s] = r.ids + (s % 4) * L;
        lens[s] = s < 4 ? L : L - 9 * (s - 3);
        off[s + 1] = off[s] + (size_t)lens[s];
    }
    policy_state *st = NULL;
    policy_kvcache *kv = NULL;
    assert_int_equal(policy_state_create(w, 64, &st), BR_OK);
    assert_int_equal(policy_kv_create(&w->cfg, 64, 8, &kv), BR_OK);
    float *ref = malloc(sizeof(float) * off[NS] * V); /* each sequence scored alone */
    float *got = malloc(sizeof(float) * off[NS] * V);
    for (int s = 0; s < NS; s++)
        assert_int_equal(policy_score(w, st, kv, 1, &toks[s], &lens[s], ref + off[s] * V), BR_OK);
    size_t row = sizeof(float) * V;
    int compared = 0;

    /* prefill chunk sizes 1, 7, 64, each sequence alone */
    const int chunks[3] = {1, 7, 64};
    for (int c = 0; c < 3; c++)
        for (int s = 0; s < NS; s++) {
            prefill_all(w, st, kv, toks[s], lens[s], chunks[c], got + off[s] * V);
            assert_memory_equal(got + off[s] * V, ref + off[s] * V, row * lens[s]);
            compared += lens[s];
        }

    /* score with all 8 packed together, calls of 13 and 64 rows crossing sequence boundaries */
    policy_state *st13 = NULL;
    assert_int_equal(policy_state_create(w, 13, &st13), BR_OK);
    assert_int_equal(policy_score(w, st13, kv, NS, toks, lens, got), BR_OK);
    assert_memory_equal(got, ref, row * off[NS]);
    assert_int_equal(policy_score(w, st, kv, NS, toks, lens, got), BR_OK);
    assert_memory_equal(got, ref, row * off[NS]);
    compared += 2 * (int)off[NS];

    /* decode one token at a time, sequence 0 alone and together with 1..7 others (lockstep batches) */
    policy_seq seqs[NS];
    float *step = malloc(sizeof(float) * NS * V);
    for (int k = 1; k <= NS; k++) {
        policy_seq *sp[NS];
        int32_t next[NS];
        for (int s = 0; s < k; s++) {
            assert_int_equal(policy_seq_init(kv, &seqs[s]), BR_OK);
        }
        for (int t = 0; t < L; t++) {
            int n = 0, who[NS];
            for (int s = 0; s < k; s++)
                if (t < lens[s]) {
                    sp[n] = &seqs[s];
                    next[n] = toks[s][t];
                    who[n++] = s;
                }
            assert_int_equal(policy_decode(w, st, kv, n, sp, next, step), BR_OK);
            for (int i = 0; i < n; i++) {
                assert_memory_equal(step + (size_t)i * V, ref + (off[who[i]] + (size_t)t) * V, row);
                compared++;
            }
        }
        for (int s = 0; s < k; s++) {
            policy_kv_release(kv, &seqs[s]);
            policy_seq_free(&seqs[s]);
        }
    }
    assert_int_equal(kv->n_free, kv->n_pages); /* every page came back */
    printf("  %s: %d logits rows memcmp-equal across decode, prefill chunks 1/7/64, packed score, batches 1..8\n",
           dir + strlen(MODELS) + 1, compared);
    free(step);
    free(ref);
    free(got);
    policy_state_free(st13);
    policy_state_free(st);
    policy_kv_free(kv);
    policy_st_free(r.st);
    policy_weights_free(w);
}

static void test_invariance_qwen3(void **s) { (void)s; check_invariance(MODELS "/tiny-qwen3/bf16"); }
static void test_invariance_llama(void **s) { (void)s; check_invariance(MODELS "/tiny-llama/f32"); }
static void test_invariance_gpt2(void **s) { (void)s; check_invariance(MODELS "/tiny-gpt2/bf16"); }

static void test_forward_rejects(void **state) {
    (void)state;
    policy_weights *w = load(STORIES);
    policy_state *st = NULL;
    policy_kvcache *kv = NULL;
    assert_int_equal(policy_state_create(w, 4, &st), BR_OK);
    assert_int_equal(policy_kv_create(&w->cfg, 2, 16, &kv), BR_OK);
    policy_seq seq;
    assert_int_equal(policy_seq_init(kv, &seq), BR_OK);
    policy_seq *sp = &seq;
    float logits[512];
    int32_t bad = 512;
    assert_int_equal(policy_decode(w, st, kv, 1, &sp, &bad, logits), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "512"));
    /* positions must follow the cache: a gap is refused */
    int32_t tok = 5, pos = 3;
    assert_int_equal(policy_kv_reserve(kv, &seq, 4), BR_OK);
    policy_batch b = {1, &tok, &pos, &sp, NULL};
    assert_int_equal(policy_forward(w, st, kv, &b, logits), BR_EINVAL);
    /* the cache has 2 pages of 16: a 40-token sequence does not fit */
    assert_int_equal(policy_kv_reserve(kv, &seq, 40), BR_ERUNTIME);
    assert_non_null(strstr(br_last_error(), "kv cache full"));
    policy_kv_release(kv, &seq);
    policy_seq_free(&seq);
    policy_kv_free(kv);
    policy_state_free(st);
    policy_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_f32),        cmocka_unit_test(test_qwen3_bf16),
        cmocka_unit_test(test_llama_f32),        cmocka_unit_test(test_llama_bf16),
        cmocka_unit_test(test_gpt2_f32),         cmocka_unit_test(test_gpt2_bf16),
        cmocka_unit_test(test_stories_llama2c),  cmocka_unit_test(test_invariance_qwen3),
        cmocka_unit_test(test_invariance_llama), cmocka_unit_test(test_invariance_gpt2),
        cmocka_unit_test(test_forward_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
