/* Tests for rollout/scheduler.c and rollout/engine.c on the bundled stories260K model: results are bitwise
 * equal under any token budget, sequence limit, prefill chunk and page size; teacher-forced score jobs reproduce
 * generate's log-probs and digests; pages all return to the pool; bad jobs are rejected by sample id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rollout/scheduler.h"

#define STORIES BR_TEST_DATA "/../../configs/models/stories260K"
enum { NJ = 12 };

static const int32_t P0[] = {1, 403, 407, 261, 378}, P1[] = {1}, P2[] = {1, 291, 410, 456, 425, 417, 340, 268, 420};
static const int32_t STOP[] = {2, 426}; /* 426 ends many sentences of stories260K */

static void make_jobs(rollout_job *j) {
    const int32_t *prompts[3] = {P0, P1, P2};
    const int lens[3] = {5, 1, 9};
    for (int i = 0; i < NJ; i++) {
        memset(&j[i], 0, sizeof j[i]);
        j[i].sample_id = i;
        j[i].prompt = prompts[i % 3];
        j[i].prompt_len = lens[i % 3];
        j[i].max_new = 20 + 3 * i;
        j[i].sampling.temperature = i % 4 == 0 ? 0.0f : 1.0f;
        j[i].sampling.top_p = i % 4 == 3 ? 0.9f : 1.0f;
        j[i].sampling.top_k = i % 4 == 2 ? 40 : 0;
        j[i].sampling.seed = 5;
        j[i].stop_ids = STOP;
        j[i].n_stop = i % 2 ? 2 : 0;
    }
}

static void expect_same(const rollout_result *a, const rollout_result *b) {
    for (int i = 0; i < NJ; i++) {
        assert_int_equal(a[i].n, b[i].n);
        assert_int_equal(a[i].finish, b[i].finish);
        assert_memory_equal(a[i].tokens, b[i].tokens, 4 * (size_t)a[i].n);
        assert_memory_equal(a[i].logprobs, b[i].logprobs, 4 * (size_t)a[i].n);
        assert_memory_equal(a[i].digests, b[i].digests, 8 * (size_t)a[i].n);
    }
}

static void free_all(rollout_result *r) {
    for (int i = 0; i < NJ; i++) rollout_result_free(&r[i]);
}

static void test_schedules_agree(void **state) {
    (void)state;
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_job jobs[NJ];
    make_jobs(jobs);
    rollout_result a[NJ], b[NJ], s[NJ];
    rollout_sched_opts big = {.max_batch_tokens = 256, .max_seqs = 64, .prefill_chunk = 64, .page_size = 16};
    rollout_sched_opts tiny = {.max_batch_tokens = 1, .max_seqs = 1, .prefill_chunk = 1, .page_size = 5};
    rollout_sched_opts odd = {.max_batch_tokens = 7, .max_seqs = 3, .prefill_chunk = 2, .page_size = 3};
    assert_int_equal(rollout_run(w, &big, jobs, NJ, a, NULL, NULL), BR_OK);
    assert_int_equal(rollout_run(w, &tiny, jobs, NJ, b, NULL, NULL), BR_OK);
    expect_same(a, b);
    free_all(b);
    assert_int_equal(rollout_run(w, &odd, jobs, NJ, b, NULL, NULL), BR_OK);
    expect_same(a, b);
    int stops = 0, tokens = 0;
    for (int i = 0; i < NJ; i++) {
        stops += a[i].finish == BR_FINISH_STOP;
        tokens += a[i].n;
        assert_true(a[i].n >= 1 && a[i].n <= jobs[i].max_new);
        if (a[i].finish == BR_FINISH_STOP) assert_true(a[i].tokens[a[i].n - 1] == 2 || a[i].tokens[a[i].n - 1] == 426);
        if (a[i].finish == BR_FINISH_LENGTH) assert_int_equal(a[i].n, jobs[i].max_new);
    }
    printf("  %d samples, %d tokens (%d ended on the stop id) bitwise equal under 3 schedules\n", NJ, tokens, stops);

    /* teacher-forced score jobs give generate's log-probs and digests */
    for (int i = 0; i < NJ; i++) {
        jobs[i].forced = a[i].tokens;
        jobs[i].n_forced = a[i].n;
    }
    assert_int_equal(rollout_run(w, &odd, jobs, NJ, s, NULL, NULL), BR_OK);
    for (int i = 0; i < NJ; i++) {
        assert_int_equal(s[i].n, a[i].n);
        assert_memory_equal(s[i].tokens, a[i].tokens, 4 * (size_t)a[i].n);
        assert_memory_equal(s[i].logprobs, a[i].logprobs, 4 * (size_t)a[i].n);
        assert_memory_equal(s[i].digests, a[i].digests, 8 * (size_t)a[i].n);
    }
    free_all(a);
    free_all(b);
    free_all(s);
    policy_weights_free(w);
}

static void test_shared_engine_and_errors(void **state) {
    (void)state;
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_engine *e = NULL;
    rollout_engine_opts eo = {ROLLOUT_DEVICE_CPU, KERN_MODE_INVARIANT, 32, 20, 8, NULL, NULL, br_tuning_default()};
    assert_int_equal(rollout_engine_create(w, &eo, &e), BR_OK);
    rollout_job jobs[NJ];
    make_jobs(jobs);
    rollout_result r[NJ];
    rollout_sched_opts o = {.max_batch_tokens = 32, .max_seqs = 4, .prefill_chunk = 16, .page_size = 8, .engine = e};
    assert_int_equal(rollout_run(w, &o, jobs, NJ, r, NULL, NULL), BR_OK);
    free_all(r);
    assert_int_equal(rollout_engine_kv(e)->n_free, 20); /* every page came back */

    /* a job longer than the whole cache (20 pages of 8) is rejected up front, naming its sample */
    jobs[3].max_new = 200;
    assert_int_equal(rollout_run(w, &o, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "sample 3"));
    jobs[3].max_new = 20;
    /* prompt + max_new beyond the context */
    jobs[5].max_new = 600;
    rollout_sched_opts o2 = {.max_batch_tokens = 32, .max_seqs = 4, .prefill_chunk = 16, .page_size = 8};
    assert_int_equal(rollout_run(w, &o2, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "context"));
    jobs[5].max_new = 20;
    /* a bad sampling value */
    jobs[7].sampling.top_p = 0.0f;
    assert_int_equal(rollout_run(w, &o2, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "sample 7"));
    jobs[7].sampling.top_p = 1.0f;
    /* an engine whose budget is smaller than asked */
    rollout_sched_opts o3 = {.max_batch_tokens = 64, .max_seqs = 4, .prefill_chunk = 16, .page_size = 8, .engine = e};
    assert_int_equal(rollout_run(w, &o3, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_int_equal(rollout_engine_kv(e)->n_free, 20);
    rollout_engine_free(e);
    policy_weights_free(w);
}

/* The device memory plan on the Qwen3-0.6B shape, with a fake free-memory value (no device needed): the bytes of
 * each buffer, what fits, the message when it does not, the choices made when nothing is given. */
#define QWEN06 BR_TEST_DATA "/../../configs/shapes/qwen3-0.6b.json"
static void test_mem_plan(void **state) {
    (void)state;
    policy_config c;
    assert_int_equal(policy_config_load(QWEN06, &c), BR_OK);
    rollout_mem_plan p = {.mode = KERN_MODE_INVARIANT, .wdtype = KERN_BF16, .tp_size = 1, .max_tokens = 8192,
                          .max_seqs = 512, .page_size = 16, .n_pages = 512 * 80};
    rollout_mem_plan_compute(&c, &p);
    /* per layer: q/k/v/o (2048 + 1024 + 1024 rows of 1024, 1024 rows of 2048) + gate/up/down (3072 x 1024 twice,
     * 1024 x 3072), bf16; two RMSNorms, q/k norms; x 28. Embedding and (untied copy of the) LM head bf16, the final
     * norm, the RoPE table (40960 x 64 x 2 f32) */
    const int64_t layer = (3 * 2097152 + 3 * 3145728) * 2 + 2 * 1024 * 4 + 2 * 128 * 4;
    assert_int_equal(p.weights, layer * 28 + 2 * (int64_t)151936 * 1024 * 2 + 1024 * 4 + (int64_t)40960 * 128 * 4);
    /* a step reads the layers, the LM head and the final norm: 1.19 GB, the batch-1 bound of docs/PERFORMANCE.md */
    assert_int_equal(p.weights_step, layer * 28 + (int64_t)151936 * 1024 * 2 + 1024 * 4);
    assert_int_equal(p.kv_token, 2 * 28 * 8 * 128 * 2);            /* 114,688 bytes: bf16 K and V */
    assert_int_equal(p.kv, (int64_t)512 * 1280 * 114688);          /* the run that aborted (f32 then): 75.2 GB */
    assert_int_equal(p.logits, (int64_t)8192 * 151936 * 4);       /* every row of a step may want logits */
    assert_true(p.total == p.weights + p.kv + p.acts + p.logits + p.step_io + p.workspaces + p.reserve);
    /* 256 MiB, and 1 MiB a decode-step graph: one a batch size, and 5 more (split counts 2 .. 32 of the decode
     * attention's ordered split) for each batch size that may split: 256 SMs / (4 x 8 KV heads) = 8 */
    assert_int_equal(p.reserve, (int64_t)(256 + 512 + 8 * 5) << 20);
    /* the standard mode replays a graph per batch size and split-KV count: at 4 sequences of 8 KV heads on up to 256
     * SMs, ceil(256 / 8m) = 32, 16, 11, 8 split counts: 63 graphs more than one a batch size */
    rollout_mem_plan ps = {.mode = KERN_MODE_STANDARD, .wdtype = KERN_BF16, .tp_size = 1, .max_tokens = 64,
                           .max_seqs = 4, .page_size = 16, .n_pages = 64};
    rollout_mem_plan_compute(&c, &ps);
    assert_int_equal(ps.reserve, (int64_t)(256 + 4 + 31 + 15 + 10 + 7) << 20);

    /* --max-seqs 1024 (given) at 256 + 1,024 tokens on a 140 GB device x 0.9: refused, naming what fits */
    const int64_t free_b = 140000000000LL;
    rollout_mem_plan q = {.mode = KERN_MODE_INVARIANT, .wdtype = KERN_BF16, .tp_size = 1, .max_tokens = 8192,
                          .max_seqs = 1024, .page_size = 16};
    assert_int_equal(rollout_mem_fit(&c, &q, 0, free_b, 0.9, 256 + 1024 - 1, 2048), BR_EINVAL);
    const char *msg = br_last_error();
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, "--max-seqs 1024 needs 150.3 GB of KV cache (bf16) at 1,280 tokens/sequence"));
    assert_non_null(strstr(msg, "140.0 GB free x 0.90"));
    const char *at = strstr(msg, "at most ");
    assert_non_null(at);
    const int most = atoi(at + 8);
    assert_true(most > 600 && most < 1024);
    /* the fp32 mode's cache is f32: 512 of them is the same 150.3 GB */
    rollout_mem_plan q32 = {.mode = KERN_MODE_FP32, .wdtype = KERN_BF16, .tp_size = 1, .max_tokens = 256,
                            .max_seqs = 512, .page_size = 16};
    assert_int_equal(rollout_mem_fit(&c, &q32, 0, free_b, 0.9, 1279, 2048), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "--max-seqs 512 needs 150.3 GB of KV cache (fp32) at 1,280 tokens/sequence"));
    /* exactly that many fit, one more does not */
    q.max_seqs = most;
    q.max_tokens = 8192;
    assert_int_equal(rollout_mem_fit(&c, &q, 0, free_b, 0.9, 1279, 2048), BR_OK);
    assert_int_equal(q.n_pages, most * 80);
    assert_int_equal(q.seq_tokens, 1280);
    assert_true(q.total <= (int64_t)(0.9 * (double)free_b));
    q.max_seqs = most + 1;
    assert_int_equal(rollout_mem_fit(&c, &q, 0, free_b, 0.9, 1279, 2048), BR_EINVAL);

    /* nothing given: 8192 tokens per step, as many sequences as fit (at most 512, at most the jobs): 512 here; on
     * a 70 GB device, the count its refusal names */
    rollout_mem_plan a = {.mode = KERN_MODE_INVARIANT, .wdtype = KERN_BF16, .tp_size = 1, .page_size = 16};
    const unsigned both = ROLLOUT_AUTO_MAX_SEQS | ROLLOUT_AUTO_BATCH_TOKENS;
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_b, 0.9, 1279, 2048), BR_OK);
    assert_int_equal(a.max_tokens, 8192);
    assert_int_equal(a.max_seqs, 512);
    assert_true(a.total <= (int64_t)(0.9 * (double)free_b));
    const int64_t free_70 = 70000000000LL;
    q.max_seqs = 512;
    q.max_tokens = 8192;
    assert_int_equal(rollout_mem_fit(&c, &q, 0, free_70, 0.9, 1279, 2048), BR_EINVAL);
    at = strstr(br_last_error(), "at most ");
    assert_non_null(at);
    const int most70 = atoi(at + 8);
    assert_true(most70 > 300 && most70 < 512);
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_70, 0.9, 1279, 2048), BR_OK);
    assert_int_equal(a.max_tokens, 8192);
    assert_int_equal(a.max_seqs, most70);
    assert_true(a.total <= (int64_t)(0.9 * (double)free_b));
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_b, 0.9, 1279, 100), BR_OK);
    assert_int_equal(a.max_seqs, 100); /* no more slots than jobs */
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_b, 0.9, 256 + 128 - 1, 4096), BR_OK);
    assert_int_equal(a.max_seqs, 512); /* short jobs: the cap */
    char line[768];
    rollout_mem_plan_describe(&a, line, sizeof line);
    print_message("%s\n", line);
    assert_non_null(strstr(line, "max_seqs 512, max_batch_tokens 8192"));
    /* a small share: a smaller step, a few sequences */
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_b, 0.02, 1279, 2048), BR_OK);
    assert_int_equal(a.max_tokens, 256);
    assert_true(a.max_seqs >= 1 && a.max_seqs < 10);
    assert_true(a.total <= (int64_t)(0.02 * (double)free_b));
    /* too little for one sequence, and bad shares */
    assert_int_equal(rollout_mem_fit(&c, &a, both, 1500000000LL, 0.9, 1279, 2048), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "not even one sequence of 1,280 tokens fits"));
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_b, 0.0, 1279, 2048), BR_EINVAL);
    assert_int_equal(rollout_mem_fit(&c, &a, both, free_b, 1.5, 1279, 2048), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "--gpu-memory-utilization"));
    /* the fp32 mode keeps f32 weights f32 (no K padding); tensor parallelism halves the KV heads */
    rollout_mem_plan f = {.mode = KERN_MODE_FP32, .wdtype = KERN_F32, .tp_size = 2, .max_tokens = 16, .page_size = 16};
    rollout_mem_plan_compute(&c, &f);
    assert_int_equal(f.kv_token, 2 * 28 * 4 * 128 * 4);
    /* its workspaces: the vocabulary rows' partials (19 segments of 8192 entries, 32 bytes each, per row), the
     * row-parallel chunk partials: 16 chunks (16 heads, 16 MLP chunks) x 16 rows x 1024 floats, and the top-k/top-p
     * sampler's sort: 16 rows of 151,936 keys and ids, twice (16 bytes an entry), 4 bytes a row for 4 arrays (+ 1
     * offset), 19 Gumbel segments of 8 bytes a row, 9 x 256 bytes of rounding, 256 KiB for CUB, 16 requests of 12 */
    assert_int_equal(f.workspaces, 16 * 19 * 32 + 16 * 16 * 1024 * 4 +
                                       (16 * 16 * 151936 + 16 * 16 + 4 + 16 * 19 * 8 + 9 * 256 + 262144 + 16 * 12));
    /* shared prompt KV: 32 prompts of 256 tokens x 8 samples of 4,096 new tokens (4,352 slots: 272 pages of 16, of
     * which 255 / 16 = 15 full prompt pages shared) -- more sequences fit than with a whole copy each */
    static int32_t prompts[32][256];
    static rollout_job jobs[256];
    for (int g = 0; g < 32; g++)
        for (int t = 0; t < 256; t++) prompts[g][t] = 1000 + (g * 257 + t * 31) % 1000;
    for (int i = 0; i < 256; i++)
        jobs[i] = (rollout_job){.sample_id = i, .prompt = prompts[i / 8], .prompt_len = 256, .max_new = 4096};
    rollout_mem_plan sh = {.mode = KERN_MODE_INVARIANT, .wdtype = KERN_BF16, .tp_size = 1, .page_size = 16};
    rollout_mem_share(jobs, 256, 16, &sh);
    assert_int_equal(sh.share_group, 8);
    assert_int_equal(sh.share_pages_min, 15);
    assert_int_equal(sh.share_pages_max, 15);
    rollout_mem_plan un = sh;
    un.share_group = 0, un.share_pages_min = un.share_pages_max = 0;
    const int64_t free_h200 = 149560000000LL; /* what the H200 run of that shape reported free */
    assert_int_equal(rollout_mem_fit(&c, &un, both, free_h200, 0.9, 256 + 4096 - 1, 256), BR_OK);
    assert_int_equal(rollout_mem_fit(&c, &sh, both, free_h200, 0.9, 256 + 4096 - 1, 256), BR_OK);
    print_message("4,352-token sequences on 149.56 GB x 0.9: %d unshared, %d with shared prompt pages\n",
                  un.max_seqs, sh.max_seqs);
    assert_int_equal(un.max_seqs, 253); /* the H200 run's plan, which left 3 samples for a second wave */
    assert_int_equal(sh.max_seqs, 256); /* all of them: at most the jobs */
    assert_int_equal(sh.n_pages, 256 * (272 - 15) + (32 + 1) * 15 + 1);
    assert_true(sh.total <= (int64_t)(0.9 * (double)free_h200));
    /* given: the largest count that fits, and one more is refused with the shared pages counted */
    sh.max_seqs = 1000;
    sh.max_tokens = 8192;
    assert_int_equal(rollout_mem_fit(&c, &sh, 0, free_h200, 0.9, 256 + 4096 - 1, 2000), BR_EINVAL);
    at = strstr(br_last_error(), "at most ");
    assert_non_null(at);
    const int most_sh = atoi(at + 8);
    assert_true(most_sh > un.max_seqs);
    sh.max_seqs = most_sh;
    assert_int_equal(rollout_mem_fit(&c, &sh, 0, free_h200, 0.9, 256 + 4096 - 1, 2000), BR_OK);
    assert_true(sh.total <= (int64_t)(0.9 * (double)free_h200));
    sh.max_seqs = most_sh + 1;
    assert_int_equal(rollout_mem_fit(&c, &sh, 0, free_h200, 0.9, 256 + 4096 - 1, 2000), BR_EINVAL);
    /* no sharing model when a job shares nothing: a lone sample, a teacher-forced job, a prompt under one page */
    jobs[255].prompt = prompts[0]; /* the last group: 7 samples, then one of prompt 0 alone */
    rollout_mem_share(jobs, 256, 16, &sh);
    assert_int_equal(sh.share_group, 0);
    jobs[255].prompt = prompts[31];
    const int32_t forced[1] = {5};
    jobs[0].forced = forced, jobs[0].n_forced = 1;
    rollout_mem_share(jobs, 256, 16, &sh);
    assert_int_equal(sh.share_group, 0);
    jobs[0].forced = NULL, jobs[0].n_forced = 0;
    rollout_mem_share(jobs, 256, 512, &sh); /* 255 prompt slots: no full page of 512 */
    assert_int_equal(sh.share_group, 0);
    rollout_mem_share(jobs, 256, 16, &sh);
    assert_int_equal(sh.share_group, 8);

    int64_t fs = 0, ft = 0;
    assert_int_equal(rollout_device_memory(ROLLOUT_DEVICE_CPU, &fs, &ft), BR_EINVAL); /* host memory: no plan */
}

/* The run's step statistics on the CPU: every forward row counted once, as prefill or decode. */
static void test_run_stats(void **state) {
    (void)state;
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_job jobs[NJ];
    make_jobs(jobs);
    rollout_result r[NJ];
    rollout_run_stats st;
    rollout_sched_opts o = {.max_batch_tokens = 16, .max_seqs = 4, .prefill_chunk = 4, .page_size = 8, .stats = &st};
    assert_int_equal(rollout_run(w, &o, jobs, NJ, r, NULL, NULL), BR_OK);
    int64_t toks = 0, rows = 0;
    for (int i = 0; i < NJ; i++) {
        toks += r[i].n;
        rows += jobs[i].prompt_len + r[i].n - 1; /* the last token is never fed */
    }
    assert_int_equal(st.tokens_out, toks);
    assert_int_equal(st.rows_prefill + st.rows_decode, rows);
    int64_t prompt = 0;
    for (int i = 0; i < NJ; i++) prompt += jobs[i].prompt_len;
    assert_int_equal(st.rows_prefill, prompt);
    assert_true(st.steps_prefill > 0 && st.steps_decode > 0);
    assert_true(st.kv_read_tokens >= rows);
    assert_true(st.s_prefill >= 0 && st.s_decode > 0 && st.s_host >= 0);
    free_all(r);
    policy_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_agree),
        cmocka_unit_test(test_shared_engine_and_errors),
        cmocka_unit_test(test_mem_plan),
        cmocka_unit_test(test_run_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
