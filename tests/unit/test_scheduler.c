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
    rollout_sched_opts big = {256, 64, 64, 16, 0, 0, 0, NULL, NULL, NULL, {0}};
    rollout_sched_opts tiny = {1, 1, 1, 5, 0, 0, 0, NULL, NULL, NULL, {0}};
    rollout_sched_opts odd = {7, 3, 2, 3, 0, 0, 0, NULL, NULL, NULL, {0}};
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
    rollout_sched_opts o = {32, 4, 16, 8, 0, 0, 0, e, NULL, NULL, {0}};
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
    rollout_sched_opts o2 = {32, 4, 16, 8, 0, 0, 0, NULL, NULL, NULL, {0}};
    assert_int_equal(rollout_run(w, &o2, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "context"));
    jobs[5].max_new = 20;
    /* a bad sampling value */
    jobs[7].sampling.top_p = 0.0f;
    assert_int_equal(rollout_run(w, &o2, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "sample 7"));
    jobs[7].sampling.top_p = 1.0f;
    /* an engine whose budget is smaller than asked */
    rollout_sched_opts o3 = {64, 4, 16, 8, 0, 0, 0, e, NULL, NULL, {0}};
    assert_int_equal(rollout_run(w, &o3, jobs, NJ, r, NULL, NULL), BR_EINVAL);
    assert_int_equal(rollout_engine_kv(e)->n_free, 20);
    rollout_engine_free(e);
    policy_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_agree),
        cmocka_unit_test(test_shared_engine_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
