/* Tests for rollout/requests: a file with every field, defaults, sample-id layout, and every rejection
 * naming the file, the line and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/br.h"
#include "rollout/requests.h"

enum { VOCAB = 100, MAX_POS = 64 };
static const int32_t default_stops[2] = {0, 99};

static rollout_defaults defaults(void) {
    rollout_defaults d = {.n = 2, .max_new_tokens = 16,
                          .sampling = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .seed = 1234},
                          .stop_ids = default_stops, .n_stop_ids = 2};
    return d;
}

static const char valid_text[] =
    "{\"prompt_ids\": [1, 2, 3]}\n"
    "\n"
    "{\"id\": \"q-7\", \"prompt_ids\": [5, 6], \"n\": 3, \"max_new_tokens\": 8, \"temperature\": 0.5,"
    " \"top_p\": 0.9, \"top_k\": 40, \"stop_ids\": [7, 8, 9]}\r\n"
    "   \t\n"
    "{\"id\": 42, \"prompt\": \"Once upon a time\", \"n\": 1, \"temperature\": 0, \"stop_ids\": []}\n"
    "{\"prompt_ids\": [99], \"max_new_tokens\": 63, \"top_k\": 100, \"top_p\": 1, \"n\": 4}";

static void check_valid(const rollout_requests *r) {
    assert_int_equal(r->n_prompts, 4);
    const rollout_prompt *p = r->prompts;
    /* line 1: defaults only */
    assert_int_equal(p[0].line, 1);
    assert_null(p[0].id);
    assert_null(p[0].text);
    assert_int_equal(p[0].n_ids, 3);
    assert_int_equal(p[0].ids[0], 1);
    assert_int_equal(p[0].ids[2], 3);
    assert_int_equal(p[0].n, 2);
    assert_int_equal(p[0].max_new_tokens, 16);
    assert_true(p[0].sampling.temperature == 1.0f && p[0].sampling.top_p == 1.0f);
    assert_int_equal(p[0].sampling.top_k, 0);
    assert_true(p[0].sampling.seed == 1234);
    assert_int_equal(p[0].n_stop_ids, 2);
    assert_int_equal(p[0].stop_ids[1], 99);
    /* line 3: every field */
    assert_int_equal(p[1].line, 3);
    assert_string_equal(p[1].id, "q-7");
    assert_int_equal(p[1].n_ids, 2);
    assert_int_equal(p[1].ids[1], 6);
    assert_int_equal(p[1].n, 3);
    assert_int_equal(p[1].max_new_tokens, 8);
    assert_true(p[1].sampling.temperature == 0.5f);
    assert_true(p[1].sampling.top_p == 0.9f);
    assert_int_equal(p[1].sampling.top_k, 40);
    assert_true(p[1].sampling.seed == 1234);
    assert_int_equal(p[1].n_stop_ids, 3);
    assert_int_equal(p[1].stop_ids[0], 7);
    assert_int_equal(p[1].stop_ids[2], 9);
    /* line 5: text prompt, numeric id, greedy, empty stop list replaces the defaults */
    assert_int_equal(p[2].line, 5);
    assert_string_equal(p[2].id, "42");
    assert_string_equal(p[2].text, "Once upon a time");
    assert_null(p[2].ids);
    assert_int_equal(p[2].n_ids, 0);
    assert_true(p[2].sampling.temperature == 0.0f);
    assert_int_equal(p[2].n_stop_ids, 0);
    /* line 6 (no final newline): 1 + 63 == MAX_POS is allowed, top_k == vocab allowed */
    assert_int_equal(p[3].line, 6);
    assert_int_equal(p[3].max_new_tokens, 63);
    assert_int_equal(p[3].sampling.top_k, 100);
    /* sample ids: running prefix sum of n = 2, 3, 1, 4 */
    assert_true(r->n_samples == 10);
    assert_true(p[0].first_sample_id == 0 && p[1].first_sample_id == 2);
    assert_true(p[2].first_sample_id == 5 && p[3].first_sample_id == 6);
    assert_true(rollout_requests_sample_id(r, 1, 2) == 4);
    assert_true(rollout_requests_sample_id(r, 3, 3) == 9);
    int64_t sid = 0;
    for (int pi = 0; pi < r->n_prompts; pi++)
        for (int32_t si = 0; si < p[pi].n; si++, sid++) {
            int gp = -1;
            int32_t gs = -1;
            assert_true(rollout_requests_sample_id(r, pi, si) == sid);
            assert_int_equal(rollout_requests_locate(r, sid, &gp, &gs), BR_OK);
            assert_int_equal(gp, pi);
            assert_int_equal(gs, si);
        }
    int gp;
    int32_t gs;
    assert_int_equal(rollout_requests_locate(r, 10, &gp, &gs), BR_EINVAL);
    assert_int_equal(rollout_requests_locate(r, -1, &gp, &gs), BR_EINVAL);
}

static void test_valid_file(void **state) {
    (void)state;
    char path[] = "/tmp/bitroll_test_requests_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, valid_text, strlen(valid_text)), (ssize_t)strlen(valid_text));
    close(fd);
    rollout_defaults d = defaults();
    rollout_requests *r = NULL;
    br_status st = rollout_requests_load(path, &d, VOCAB, MAX_POS, &r);
    unlink(path);
    if (st != BR_OK) fail_msg("%s", br_last_error());
    check_valid(r);
    assert_string_equal(r->path, path);

    /* a text prompt receives its ids from the caller's tokenizer, with the same checks */
    const int32_t toks[4] = {10, 11, 12, 13};
    assert_int_equal(rollout_requests_set_prompt_ids(r, 2, toks, 4), BR_OK);
    assert_int_equal(r->prompts[2].n_ids, 4);
    assert_int_equal(r->prompts[2].ids[3], 13);
    const int32_t bad[2] = {10, 100};
    assert_int_equal(rollout_requests_set_prompt_ids(r, 2, bad, 2), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "line 5"));
    assert_non_null(strstr(br_last_error(), "100"));
    int32_t many[60] = {0};
    assert_int_equal(rollout_requests_set_prompt_ids(r, 2, many, 49), BR_EINVAL); /* 49 + 16 > 64 */
    assert_non_null(strstr(br_last_error(), "context length 64"));
    assert_int_equal(rollout_requests_set_prompt_ids(r, 2, many, 48), BR_OK);
    assert_int_equal(rollout_requests_set_prompt_ids(r, 2, many, 0), BR_EINVAL);
    rollout_requests_free(r);
    rollout_requests_free(NULL);
}

static void test_uniform_n_ids(void **state) {
    (void)state;
    const char text[] = "{\"prompt_ids\": [1]}\n{\"prompt_ids\": [2]}\n{\"prompt_ids\": [3]}\n";
    rollout_defaults d = defaults();
    d.n = 5;
    d.n_stop_ids = 0;
    d.stop_ids = NULL;
    rollout_requests *r = NULL;
    assert_int_equal(rollout_requests_parse(text, strlen(text), "p.jsonl", &d, VOCAB, MAX_POS, &r), BR_OK);
    assert_true(r->n_samples == 15);
    for (int pi = 0; pi < 3; pi++) /* DESIGN 4: prompt_index * n + sample_index */
        for (int32_t si = 0; si < 5; si++) assert_true(rollout_requests_sample_id(r, pi, si) == pi * 5 + si);
    assert_null(r->prompts[0].stop_ids);
    rollout_requests_free(r);
}

/* Two good lines, then `bad` on line 3: BR_EINVAL, *out NULL, message names file, line and `needle`. */
static void expect_line3(const char *bad, const char *needle) {
    char text[512];
    snprintf(text, sizeof text, "{\"prompt_ids\": [1]}\n{\"prompt_ids\": [2]}\n%s\n{\"prompt_ids\": [3]}\n", bad);
    rollout_defaults d = defaults();
    rollout_requests *r = (rollout_requests *)&d; /* must be overwritten with NULL */
    br_status st = rollout_requests_parse(text, strlen(text), "prompts.jsonl", &d, VOCAB, MAX_POS, &r);
    if (st != BR_EINVAL) fail_msg("line %s: status %d, expected BR_EINVAL", bad, (int)st);
    assert_null(r);
    const char *msg = br_last_error();
    if (!strstr(msg, "prompts.jsonl") || !strstr(msg, "line 3") || !strstr(msg, needle))
        fail_msg("line %s: message \"%s\" lacks the file, \"line 3\" or \"%s\"", bad, msg, needle);
}

static void test_bad_lines(void **state) {
    (void)state;
    expect_line3("{\"prompt_ids\": [1, 2", "malformed JSON");
    expect_line3("{\"prompt_ids\": [1]} x", "malformed JSON");
    expect_line3("[1, 2]", "expected a JSON object");
    expect_line3("{\"prompt_ids\": [1, 100]}", "prompt_ids'[1] = 100");
    expect_line3("{\"prompt_ids\": [-1]}", "prompt_ids'[0] = -1");
    expect_line3("{\"prompt_ids\": [1.5]}", "prompt_ids'[0] = 1.5");
    expect_line3("{\"prompt_ids\": [\"3\"]}", "prompt_ids'[0]: expected an integer");
    expect_line3("{\"prompt_ids\": 3}", "prompt_ids': expected an array");
    expect_line3("{\"prompt_ids\": []}", "empty prompt");
    expect_line3("{\"prompt\": \"\"}", "empty prompt");
    expect_line3("{\"prompt\": 5}", "'prompt': expected a string");
    expect_line3("{\"n\": 2}", "missing field 'prompt_ids'");
    expect_line3("{\"prompt\": \"a\", \"prompt_ids\": [1]}", "both present");
    expect_line3("{\"prompt_ids\": [1], \"promt\": 1}", "unknown key 'promt'");
    expect_line3("{\"prompt_ids\": [1], \"n\": 1, \"n\": 2}", "'n' appears twice");
    /* 49 + 16 = 65 > 64; 60 + 5 via the line's max_new_tokens */
    char line[400] = "{\"prompt_ids\": [";
    for (int i = 0; i < 49; i++) strcat(line, i ? ",1" : "1");
    strcat(line, "]}");
    expect_line3(line, "exceeds the context length 64");
    expect_line3("{\"prompt_ids\": [1,2,3,4,5], \"max_new_tokens\": 60}", "max_new_tokens");
    expect_line3("{\"prompt\": \"abc\", \"max_new_tokens\": 64}", "max_new_tokens");
    expect_line3("{\"prompt_ids\": [1], \"n\": 0}", "'n' = 0");
    expect_line3("{\"prompt_ids\": [1], \"n\": 2.5}", "'n' = 2.5");
    expect_line3("{\"prompt_ids\": [1], \"n\": \"2\"}", "'n': expected an integer");
    expect_line3("{\"prompt_ids\": [1], \"max_new_tokens\": 0}", "'max_new_tokens' = 0");
    expect_line3("{\"prompt_ids\": [1], \"temperature\": -0.5}", "temperature = -0.5");
    expect_line3("{\"prompt_ids\": [1], \"temperature\": 1e300}", "temperature = inf");
    expect_line3("{\"prompt_ids\": [1], \"temperature\": null}", "'temperature': expected a number, got null");
    expect_line3("{\"prompt_ids\": [1], \"temperature\": 1e-60}", "too small");
    expect_line3("{\"prompt_ids\": [1], \"top_p\": 0}", "'top_p' = 0");
    expect_line3("{\"prompt_ids\": [1], \"top_p\": 1.5}", "'top_p' = 1.5");
    expect_line3("{\"prompt_ids\": [1], \"top_p\": 1.00000001}", "'top_p' = 1.00000001");
    expect_line3("{\"prompt_ids\": [1], \"top_p\": -0.2}", "'top_p' = -0.2");
    expect_line3("{\"prompt_ids\": [1], \"top_k\": -1}", "top_k = -1");
    expect_line3("{\"prompt_ids\": [1], \"top_k\": 101}", "top_k = 101");
    expect_line3("{\"prompt_ids\": [1], \"stop_ids\": [5, 100]}", "stop_ids'[1] = 100");
    expect_line3("{\"prompt_ids\": [1], \"stop_ids\": 5}", "stop_ids': expected an array");
    expect_line3("{\"prompt_ids\": [1], \"id\": 1.5}", "'id' = 1.5");
    expect_line3("{\"prompt_ids\": [1], \"id\": [1]}", "'id': expected a string or an integer");
    expect_line3("{\"prompt_ids\": [1], \"seed\": 3}", "unknown key 'seed'");
}

static void test_bad_file_and_defaults(void **state) {
    (void)state;
    rollout_defaults d = defaults();
    rollout_requests *r = NULL;
    assert_int_equal(rollout_requests_load("/nonexistent/prompts.jsonl", &d, VOCAB, MAX_POS, &r), BR_EIO);
    assert_null(r);
    assert_non_null(strstr(br_last_error(), "/nonexistent/prompts.jsonl"));
    const char blank[] = "\n  \n\r\n";
    assert_int_equal(rollout_requests_parse(blank, strlen(blank), "empty.jsonl", &d, VOCAB, MAX_POS, &r), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "empty.jsonl: no prompts"));
    const char nul[] = "{\"prompt_ids\": [1]}\n{\"prompt_ids\"\0: [1]}\n";
    assert_int_equal(rollout_requests_parse(nul, sizeof nul - 1, "nul.jsonl", &d, VOCAB, MAX_POS, &r), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "nul.jsonl: line 2: NUL byte"));

    const char ok[] = "{\"prompt_ids\": [1]}";
    rollout_defaults bad = d;
    bad.n = 0;
    assert_int_equal(rollout_requests_parse(ok, strlen(ok), "p.jsonl", &bad, VOCAB, MAX_POS, &r), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "default n = 0"));
    bad = d;
    bad.sampling.temperature = -1.0f;
    assert_int_equal(rollout_requests_parse(ok, strlen(ok), "p.jsonl", &bad, VOCAB, MAX_POS, &r), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "temperature = -1"));
    bad = d;
    bad.max_new_tokens = MAX_POS;
    assert_int_equal(rollout_requests_parse(ok, strlen(ok), "p.jsonl", &bad, VOCAB, MAX_POS, &r), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "default max_new_tokens = 64"));
    const int32_t stop_bad[1] = {100};
    bad = d;
    bad.stop_ids = stop_bad;
    bad.n_stop_ids = 1;
    assert_int_equal(rollout_requests_parse(ok, strlen(ok), "p.jsonl", &bad, VOCAB, MAX_POS, &r), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "default stop id 100"));
    assert_null(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_uniform_n_ids),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_bad_file_and_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
