/* Tests for shared prompt KV (rollout/scheduler.c, policy_kv_fork, rollout_engine_kv_copy_page): the page allocator's
 * reference counts, forks and free list; the engine's page copy; and rollouts with sharing bitwise equal to
 * rollouts without it (tokens, log-probs, digests, finish reasons) on stories260K and tiny-qwen3, for n = 1, 2, 8,
 * page sizes 1, 16, ones that divide the shared prompt exactly and ones that do not, prompts over several pages,
 * mixed prompt lengths, stop tokens, max_seqs below n, a cache too small to share; score jobs unaffected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "api/driver.h"
#include "rollout/scheduler.h"

#define STORIES BR_TEST_DATA "/../../configs/models/stories260K"
#define QWEN3 BR_TEST_DATA "/models/tiny-qwen3/bf16"

/* ---- the page allocator */

static void test_allocator_refcounts(void **state) {
    (void)state;
    policy_config c = {0};
    c.n_layers = 2;
    c.n_kv_heads = 1;
    c.head_dim = 4;
    c.max_pos = 64;
    policy_kvcache *kv = NULL;
    assert_int_equal(policy_kv_create_pages(&c, 10, 4, &kv), BR_OK);
    policy_seq a, b, d, e;
    assert_int_equal(policy_seq_init(kv, &a), BR_OK);
    assert_int_equal(policy_seq_init(kv, &b), BR_OK);
    assert_int_equal(policy_seq_init(kv, &d), BR_OK);
    assert_int_equal(policy_seq_init(kv, &e), BR_OK);

    assert_int_equal(policy_kv_reserve(kv, &a, 10), BR_OK); /* 3 pages; 10 tokens: 2 full, 1 partly filled */
    a.len = 10;
    assert_int_equal(kv->n_free, 7);
    int32_t cs, cd;
    /* 10 tokens: the 2 full pages shared, the third copied into a page of b's own */
    assert_int_equal(policy_kv_fork(kv, &b, &a, 10, &cs, &cd), BR_OK);
    assert_int_equal(b.n_pages, 3);
    assert_int_equal(b.len, 10);
    assert_int_equal(b.pages[0], a.pages[0]);
    assert_int_equal(b.pages[1], a.pages[1]);
    assert_int_equal(cs, a.pages[2]);
    assert_int_equal(cd, b.pages[2]);
    assert_int_not_equal(b.pages[2], a.pages[2]);
    assert_int_equal(kv->refs[a.pages[0]], 2);
    assert_int_equal(kv->refs[a.pages[2]], 1);
    assert_int_equal(kv->refs[b.pages[2]], 1);
    assert_int_equal(kv->n_free, 6);
    /* 8 tokens: whole pages only, nothing to copy */
    assert_int_equal(policy_kv_fork(kv, &d, &a, 8, &cs, &cd), BR_OK);
    assert_int_equal(cs, -1);
    assert_int_equal(cd, -1);
    assert_int_equal(d.n_pages, 2);
    assert_int_equal(kv->refs[a.pages[1]], 3);
    assert_int_equal(kv->n_free, 6);
    /* the forks grow with pages of their own */
    assert_int_equal(policy_kv_reserve(kv, &b, 20), BR_OK); /* 5 pages: 2 more */
    assert_int_equal(policy_kv_reserve(kv, &d, 13), BR_OK); /* 4 pages: 2 more */
    assert_int_equal(kv->n_free, 2);
    /* a fork into a non-empty sequence, or of more than the source holds, is refused */
    assert_int_equal(policy_kv_fork(kv, &b, &a, 4, &cs, &cd), BR_EINVAL);
    assert_int_equal(policy_kv_fork(kv, &e, &a, 11, &cs, &cd), BR_EINVAL);
    /* no free page for the copy: cache full, e left empty, nothing taken */
    policy_seq f;
    assert_int_equal(policy_seq_init(kv, &f), BR_OK);
    assert_int_equal(policy_kv_reserve(kv, &f, 8), BR_OK);
    assert_int_equal(kv->n_free, 0);
    assert_int_equal(policy_kv_fork(kv, &e, &a, 9, &cs, &cd), BR_ERUNTIME);
    assert_int_equal(e.n_pages, 0);
    assert_int_equal(kv->refs[a.pages[0]], 3);
    policy_kv_release(kv, &f);
    assert_int_equal(kv->n_free, 2);

    /* the source ends first: its shared pages stay with the forks, its own page returns */
    const int32_t shared0 = a.pages[0], a_own = a.pages[2];
    policy_kv_release(kv, &a);
    assert_int_equal(a.n_pages, 0);
    assert_int_equal(kv->refs[shared0], 2);
    assert_int_equal(kv->refs[a_own], 0);
    assert_int_equal(kv->n_free, 3);
    policy_kv_release(kv, &b);
    assert_int_equal(kv->refs[shared0], 1);
    assert_int_equal(kv->n_free, 6); /* b's 3 own pages */
    policy_kv_release(kv, &d);       /* the last holder: the shared pages return too */
    assert_int_equal(kv->refs[shared0], 0);
    assert_int_equal(kv->n_free, 10);
    for (int p = 0; p < 10; p++) assert_int_equal(kv->refs[p], 0);
    /* every page once on the free list */
    int seen[10] = {0};
    for (int i = 0; i < kv->n_free; i++) seen[kv->free_pages[i]]++;
    for (int p = 0; p < 10; p++) assert_int_equal(seen[p], 1);
    policy_seq_free(&a);
    policy_seq_free(&b);
    policy_seq_free(&d);
    policy_seq_free(&e);
    policy_seq_free(&f);
    policy_kv_free(kv);
}

/* ---- the engine's page copy (CPU backend: memcpy of every layer's K and V) */

static void test_engine_copy_page(void **state) {
    (void)state;
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_engine *e = NULL;
    rollout_engine_opts eo = {ROLLOUT_DEVICE_CPU, KERN_MODE_INVARIANT, 8, 6, 3, NULL, NULL, br_tuning_default()};
    assert_int_equal(rollout_engine_create(w, &eo, &e), BR_OK);
    policy_kvcache *kv = rollout_engine_kv(e);
    const size_t page = (size_t)kv->page_size * kv->n_kv * kv->hd, all = page * kv->n_pages * kv->n_layers;
    for (size_t i = 0; i < all; i++) {
        kv->k[i] = (float)i;
        kv->v[i] = -(float)i;
    }
    assert_int_equal(rollout_engine_kv_copy_page(e, 4, 1), BR_OK);
    for (size_t i = 0; i < all; i++) {
        const size_t p = i / page % (size_t)kv->n_pages, l = i / (page * kv->n_pages), o = i % page;
        const float want = p == 4 ? (float)((l * kv->n_pages + 1) * page + o) : (float)i;
        assert_true(kv->k[i] == want && kv->v[i] == -want);
    }
    assert_int_equal(rollout_engine_kv_copy_page(e, 6, 1), BR_EINVAL);
    assert_int_equal(rollout_engine_kv_copy_page(e, 0, -1), BR_EINVAL);
    rollout_engine_free(e);
    policy_weights_free(w);
}

/* ---- rollouts: shared == unshared, bit for bit */

enum { MAXJ = 64 };
static int32_t PROMPTS[5][40];
static const int LENS[5] = {1, 5, 9, 17, 40};
static const int32_t STOP[] = {2, 426}; /* 426 ends many sentences of stories260K */

/* n samples of each prompt in `which` (indexes into PROMPTS), in order, as the generate driver lays them out.
 * copy: the group's prompts are equal tokens in separate arrays (content, not pointers, makes a group). */
static int make_jobs(rollout_job *j, const int *which, int n_prompts, int n, int stops, int32_t (*copies)[40]) {
    int k = 0;
    for (int p = 0; p < n_prompts; p++)
        for (int s = 0; s < n; s++, k++) {
            memset(&j[k], 0, sizeof j[k]);
            j[k].sample_id = k;
            j[k].prompt = PROMPTS[which[p]];
            if (copies) {
                memcpy(copies[k], PROMPTS[which[p]], sizeof copies[k]);
                j[k].prompt = copies[k];
            }
            j[k].prompt_len = LENS[which[p]];
            j[k].max_new = 12 + 2 * s;
            j[k].sampling.temperature = p % 3 == 2 ? 0.0f : 1.0f;
            j[k].sampling.top_p = p % 3 == 1 ? 0.9f : 1.0f;
            j[k].sampling.top_k = p % 4 == 3 ? 40 : 0;
            j[k].sampling.seed = 7;
            j[k].stop_ids = STOP;
            j[k].n_stop = stops ? 2 : 0;
        }
    return k;
}

/* finish: compare the finish reasons too (not for score jobs, which always end on their length) */
static void expect_same_f(const rollout_result *a, const rollout_result *b, int nj, int finish) {
    for (int i = 0; i < nj; i++) {
        assert_int_equal(a[i].sample_id, b[i].sample_id);
        assert_int_equal(a[i].n, b[i].n);
        if (finish) assert_int_equal(a[i].finish, b[i].finish);
        assert_memory_equal(a[i].tokens, b[i].tokens, 4 * (size_t)a[i].n);
        assert_memory_equal(a[i].logprobs, b[i].logprobs, 4 * (size_t)a[i].n);
        assert_memory_equal(a[i].digests, b[i].digests, 8 * (size_t)a[i].n);
    }
}

static void expect_same(const rollout_result *a, const rollout_result *b, int nj) { expect_same_f(a, b, nj, 1); }

static void free_all(rollout_result *r, int nj) {
    for (int i = 0; i < nj; i++) rollout_result_free(&r[i]);
}

/* Runs the jobs unshared and shared under o; checks equality, the stats, that sharing happened where expected.
 * Returns the shared run's stats. */
static rollout_run_stats run_both(const policy_weights *w, rollout_sched_opts o, const rollout_job *jobs, int nj,
                                  rollout_result *ref) {
    rollout_result got[MAXJ];
    rollout_run_stats s_off, s_on;
    o.no_share_prompt_kv = 1;
    o.stats = &s_off;
    assert_int_equal(rollout_run(w, &o, jobs, nj, ref, NULL, NULL), BR_OK);
    o.no_share_prompt_kv = 0;
    o.stats = &s_on;
    assert_int_equal(rollout_run(w, &o, jobs, nj, got, NULL, NULL), BR_OK);
    expect_same(ref, got, nj);
    free_all(got, nj);
    assert_int_equal(s_off.prompt_groups, 0);
    assert_int_equal(s_off.rows_saved, 0);
    /* the rows not computed are exactly the ones saved */
    assert_int_equal(s_on.rows_prefill + s_on.rows_decode + s_on.rows_saved, s_off.rows_prefill + s_off.rows_decode);
    assert_int_equal(s_on.tokens_out, s_off.tokens_out);
    return s_on;
}

static void fill_prompts(void) {
    for (int p = 0; p < 5; p++) {
        PROMPTS[p][0] = 1;
        for (int i = 1; i < 40; i++) PROMPTS[p][i] = 3 + (p * 131 + i * 37) % 500;
    }
}

static void test_shared_equals_unshared(void **state) {
    (void)state;
    fill_prompts();
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_job jobs[MAXJ];
    rollout_result ref[MAXJ];
    static int32_t copies[MAXJ][40];
    const int mixed[] = {4, 1, 0, 2, 3, 4}; /* 40, 5, 1, 9, 17, 40 tokens (the last repeats the first, not adjacent) */
    /* page sizes: 1; 4 (divides 4, 8, 16 -- shared lengths 5-1, 9-1, 17-1 -- not 39); 16 (divides 16, not 39, 4, 8);
     * 13 (divides 39: the 40-token prompt's shared part is exactly 3 pages); 7 (divides none) */
    const int pages[] = {1, 4, 16, 13, 7};
    const int ns[] = {1, 2, 8};
    int checked = 0;
    for (int in = 0; in < 3; in++)
        for (int ip = 0; ip < 5; ip++) {
            const int n = ns[in];
            const int nj = make_jobs(jobs, mixed, n == 8 ? 4 : 6, n, (in + ip) % 2, ip == 3 ? copies : NULL);
            rollout_sched_opts o = {.max_batch_tokens = 64, .max_seqs = 16, .prefill_chunk = 16, .page_size = pages[ip]};
            rollout_run_stats st = run_both(w, o, jobs, nj, ref);
            /* groups: every prompt of >= 2 tokens with n >= 2 */
            int64_t groups = 0, saved = 0;
            for (int p = 0; p < (n == 8 ? 4 : 6) && n >= 2; p++)
                if (LENS[mixed[p]] >= 2) groups++, saved += (int64_t)(n - 1) * (LENS[mixed[p]] - 1);
            assert_int_equal(st.prompt_groups, groups);
            assert_int_equal(st.rows_saved, saved);
            if (n == 8) { /* the samples of a group differ (sampling keyed by sample id), not only in length */
                int differ = 0;
                for (int s = 1; s < 8; s++)
                    differ += ref[s].n != ref[0].n || memcmp(ref[s].tokens, ref[0].tokens, 4 * (size_t)ref[0].n);
                assert_true(differ > 0);
            }
            free_all(ref, nj);
            checked++;
        }
    printf("  %d configurations (n = 1, 2, 8 x page sizes 1, 4, 16, 13, 7) bitwise equal shared and unshared\n",
           checked);
    policy_weights_free(w);
}

/* A group split over admissions (max_seqs < n), tiny budgets, stop tokens; score jobs unaffected by the switch. */
static void test_split_groups_and_score(void **state) {
    (void)state;
    fill_prompts();
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_job jobs[MAXJ];
    rollout_result ref[MAXJ], s_on[MAXJ], s_off[MAXJ];
    const int which[] = {3, 4, 1};
    const int nj = make_jobs(jobs, which, 3, 8, 1, NULL);
    const rollout_sched_opts configs[] = {
        {.max_batch_tokens = 64, .max_seqs = 3, .prefill_chunk = 16, .page_size = 16},
        {.max_batch_tokens = 7, .max_seqs = 2, .prefill_chunk = 3, .page_size = 5},
        {.max_batch_tokens = 1, .max_seqs = 1, .prefill_chunk = 1, .page_size = 4},
    };
    int stops = 0;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        rollout_run_stats st = run_both(w, configs[c], jobs, nj, ref);
        assert_int_equal(st.prompt_groups, 3);
        if (c + 1 < sizeof configs / sizeof configs[0]) free_all(ref, nj);
    }
    for (int i = 0; i < nj; i++) stops += ref[i].finish == BR_FINISH_STOP;
    assert_true(stops > 0 && stops < nj); /* some samples ended early on a stop token, some ran to length */
    /* score: teacher-forced jobs never share; the switch changes nothing, and they reproduce generate's bits */
    for (int i = 0; i < nj; i++) {
        jobs[i].forced = ref[i].tokens;
        jobs[i].n_forced = ref[i].n;
    }
    rollout_run_stats st;
    rollout_sched_opts o = {.max_batch_tokens = 32, .max_seqs = 5, .prefill_chunk = 8, .page_size = 16, .stats = &st};
    assert_int_equal(rollout_run(w, &o, jobs, nj, s_on, NULL, NULL), BR_OK);
    assert_int_equal(st.prompt_groups, 0);
    o.no_share_prompt_kv = 1;
    assert_int_equal(rollout_run(w, &o, jobs, nj, s_off, NULL, NULL), BR_OK);
    expect_same_f(ref, s_on, nj, 0);
    expect_same_f(s_off, s_on, nj, 1);
    free_all(ref, nj);
    free_all(s_on, nj);
    free_all(s_off, nj);
    policy_weights_free(w);
}

/* On an engine the caller holds: every page comes back after a shared run (also when the cache is too small for
 * the prefix and a sample together: the group falls back to unshared jobs). */
static void test_pages_return(void **state) {
    (void)state;
    fill_prompts();
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_job jobs[MAXJ];
    rollout_result ref[MAXJ], got[MAXJ];
    const int which[] = {4, 2};
    const int nj = make_jobs(jobs, which, 2, 4, 1, NULL);
    for (int i = 0; i < nj; i++) jobs[i].max_new = 18; /* the 40-token prompt: 40 + 18 - 1 = 57 slots, 8 pages of 8 */
    rollout_sched_opts o = {.max_batch_tokens = 32, .max_seqs = 4, .prefill_chunk = 16, .page_size = 8};
    o.no_share_prompt_kv = 1;
    assert_int_equal(rollout_run(w, &o, jobs, nj, ref, NULL, NULL), BR_OK);
    o.no_share_prompt_kv = 0;
    const int sizes[] = {40, 8}; /* 8 pages: one sample's whole life, no room for a prefix beside it */
    for (int i = 0; i < 2; i++) {
        rollout_engine *e = NULL;
        rollout_engine_opts eo = {ROLLOUT_DEVICE_CPU, KERN_MODE_INVARIANT, 32, sizes[i], 8, NULL, NULL,
                                  br_tuning_default()};
        assert_int_equal(rollout_engine_create(w, &eo, &e), BR_OK);
        rollout_run_stats st;
        o.engine = e;
        o.stats = &st;
        assert_int_equal(rollout_run(w, &o, jobs, nj, got, NULL, NULL), BR_OK);
        expect_same(ref, got, nj);
        free_all(got, nj);
        assert_int_equal(rollout_engine_kv(e)->n_free, sizes[i]);
        for (int p = 0; p < sizes[i]; p++) assert_int_equal(rollout_engine_kv(e)->refs[p], 0);
        /* 40 pages: both prompts shared; 8 pages: the 40-token prompt's group does not fit beside its prefix */
        assert_int_equal(st.prompt_groups, i == 0 ? 2 : 1);
        rollout_engine_free(e);
    }
    free_all(ref, nj);
    policy_weights_free(w);
}

/* The memory plan's pool with shared prompt KV (rollout_mem_share, rollout_mem_fit): the pages it counts for
 * max_seqs sequences (fewer than max_seqs x a sequence's pages) run the jobs to the end with sharing, the same bits
 * as unshared with ample pages, and every page comes back. */
static void test_plan_pool_runs(void **state) {
    (void)state;
    fill_prompts();
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(STORIES, &w), BR_OK);
    rollout_job jobs[MAXJ];
    rollout_result ref[MAXJ], got[MAXJ];
    const int which[] = {4, 3, 4}; /* 40, 17, 40 tokens: 9, 4, 9 full pages of 4 shared by 8 samples each */
    const int nj = make_jobs(jobs, which, 3, 8, 1, NULL);
    rollout_mem_plan p = {.mode = KERN_MODE_INVARIANT, .wdtype = w->dtype, .tp_size = 1, .max_tokens = 32,
                          .max_seqs = 6, .page_size = 4};
    rollout_mem_share(jobs, nj, 4, &p);
    assert_int_equal(p.share_group, 8);
    assert_int_equal(p.share_pages_min, 4);
    assert_int_equal(p.share_pages_max, 9);
    const int64_t most = 40 + 12 + 2 * 7 - 1; /* the longest job: 65 slots, 17 pages of 4 */
    assert_int_equal(rollout_mem_fit(&w->cfg, &p, 0, 1000000000000LL, 0.9, most, nj), BR_OK);
    /* 6 sequences' own pages (17 - 4 each), the full pages of ceil(6 / 8) + 1 = 2 groups (9 each), one prefix page */
    assert_int_equal(p.n_pages, 6 * (17 - 4) + 2 * 9 + 1);
    assert_true(p.n_pages < 6 * 17);
    rollout_sched_opts o = {.max_batch_tokens = 32, .max_seqs = 6, .prefill_chunk = 16, .page_size = 4};
    o.no_share_prompt_kv = 1;
    assert_int_equal(rollout_run(w, &o, jobs, nj, ref, NULL, NULL), BR_OK);
    o.no_share_prompt_kv = 0;
    rollout_engine *e = NULL;
    rollout_engine_opts eo = {ROLLOUT_DEVICE_CPU, KERN_MODE_INVARIANT, 32, p.n_pages, 4, NULL, NULL, br_tuning_default()};
    assert_int_equal(rollout_engine_create(w, &eo, &e), BR_OK);
    rollout_run_stats st;
    o.engine = e;
    o.stats = &st;
    assert_int_equal(rollout_run(w, &o, jobs, nj, got, NULL, NULL), BR_OK);
    expect_same(ref, got, nj);
    assert_int_equal(st.prompt_groups, 3);
    assert_int_equal(rollout_engine_kv(e)->n_free, p.n_pages);
    printf("  %d jobs in groups of 8 ran to the end in the plan's %d pages (unshared: %d), bitwise equal\n", nj,
           p.n_pages, 6 * 17);
    free_all(got, nj);
    free_all(ref, nj);
    rollout_engine_free(e);
    policy_weights_free(w);
}

/* tiny-qwen3 (GQA, q/k norms, bf16 weights): the same equality. */
static void test_qwen3(void **state) {
    (void)state;
    fill_prompts();
    policy_weights *w = NULL;
    assert_int_equal(policy_weights_load(QWEN3, &w), BR_OK);
    rollout_job jobs[MAXJ];
    rollout_result ref[MAXJ];
    const int which[] = {4, 0, 2, 3};
    const int pages[] = {1, 16, 13};
    for (int ip = 0; ip < 3; ip++) {
        const int nj = make_jobs(jobs, which, 4, 8, 1, NULL);
        for (int i = 0; i < nj; i++)
            for (int t = 0; t < jobs[i].prompt_len; t++) assert_true(jobs[i].prompt[t] < w->cfg.vocab);
        rollout_sched_opts o = {.max_batch_tokens = 48, .max_seqs = 6, .prefill_chunk = 16, .page_size = pages[ip]};
        rollout_run_stats st = run_both(w, o, jobs, nj, ref);
        assert_int_equal(st.prompt_groups, 3);
        free_all(ref, nj);
    }
    policy_weights_free(w);
}

/* The driver deals a prompt's samples to one group (so that they can share its KV pages) when there are at least as
 * many prompts as groups, else job by job; teacher-forced jobs (score) never form runs. Expected groups written out. */
static void expect_deal(const rollout_job *jobs, int64_t n, const uint8_t *done, int groups, const int *want) {
    driver_jobs dj = driver_jobs_array(jobs, n);
    driver_dealer d;
    driver_deal_init(&d, &dj, done, groups);
    for (int64_t i = 0; i < n; i++) {
        if (done && done[i]) continue;
        const int g = driver_deal_next(&d, i);
        if (g != want[i]) print_message("job %lld: group %d, expected %d\n", (long long)i, g, want[i]);
        assert_int_equal(g, want[i]);
    }
}

static void test_dealing(void **state) {
    (void)state;
    static const int32_t pa[3] = {1, 5, 6}, pb[3] = {1, 7, 8}, pc[3] = {1, 9, 9}, pa2[3] = {1, 5, 6};
    rollout_job j[12];
    memset(j, 0, sizeof j);
    for (int i = 0; i < 12; i++) {
        j[i].prompt = i < 4 ? pa : i < 8 ? pb : i < 10 ? pc : pa2; /* runs of 4, 4 and 2 + 2 (pc, then pa's tokens) */
        j[i].prompt_len = 3;
        j[i].sample_id = i;
        j[i].max_new = 4;
    }
    /* 4 runs (pc and the copy of pa are different prompts), 2 groups: whole runs, round-robin */
    const int w2[12] = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1};
    expect_deal(j, 12, NULL, 2, w2);
    /* 3 groups: still whole runs */
    const int w3[12] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 0};
    expect_deal(j, 12, NULL, 3, w3);
    /* 5 groups > 4 runs: job by job, as before */
    const int w5[12] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1};
    expect_deal(j, 12, NULL, 5, w5);
    /* one group: everything to it */
    const int w1[12] = {0};
    expect_deal(j, 12, NULL, 1, w1);
    /* a resumed run: the done jobs are skipped; the undone ones of the first two prompts form runs 0 and 1 */
    const uint8_t done[12] = {1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1};
    const int wd[12] = {-1, 0, -1, 0, -1, -1, -1, 1, -1, -1, -1, -1};
    expect_deal(j, 12, done, 2, wd);
    /* one undone run left for 2 groups: job by job */
    const uint8_t done1[12] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1};
    const int wd1[12] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 1, -1, -1};
    expect_deal(j, 12, done1, 2, wd1);
    /* teacher-forced jobs (score) never share a prompt: job by job */
    static const int32_t forced[2] = {3, 4};
    for (int i = 0; i < 12; i++) {
        j[i].forced = forced;
        j[i].n_forced = 2;
    }
    const int wf[12] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1};
    expect_deal(j, 12, NULL, 2, wf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator_refcounts), cmocka_unit_test(test_engine_copy_page),
        cmocka_unit_test(test_shared_equals_unshared), cmocka_unit_test(test_split_groups_and_score),
        cmocka_unit_test(test_pages_return), cmocka_unit_test(test_plan_pool_runs), cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_dealing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
