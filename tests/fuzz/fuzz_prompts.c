/* Fuzz target: the prompts file (rollout_requests_parse, from memory) and the JSONL records of the tokenize /
 * detokenize verbs (cli_jsonl_each + cli_jsonl_scan + cli_jsonl_put_record) on the same bytes.
 * Limits as for stories260K: vocab 512, context 256. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli_jsonl.h"
#include "fuzz_util.h"
#include "rollout/requests.h"

#define VOCAB 512
#define MAX_POS 256

static void check_requests(const rollout_requests *r) {
    int64_t next = 0;
    for (int p = 0; p < r->n_prompts; p++) {
        const rollout_prompt *q = &r->prompts[p];
        FUZZ_CHECK(q->n >= 1 && q->n <= ROLLOUT_MAX_N);
        FUZZ_CHECK(q->max_new_tokens >= 1);
        FUZZ_CHECK((q->text == NULL) != (q->ids == NULL));
        FUZZ_CHECK(q->first_sample_id == next);
        FUZZ_CHECK(q->line >= 1);
        if (q->ids) {
            FUZZ_CHECK(q->n_ids >= 1 && (int64_t)q->n_ids + q->max_new_tokens <= MAX_POS);
            for (int i = 0; i < q->n_ids; i++) FUZZ_CHECK(q->ids[i] >= 0 && q->ids[i] < VOCAB);
        }
        for (int i = 0; i < q->n_stop_ids; i++) FUZZ_CHECK(q->stop_ids[i] >= 0 && q->stop_ids[i] < VOCAB);
        FUZZ_CHECK(rollout_sampling_check(&q->sampling, VOCAB) == BR_OK);
        int32_t last = q->n - 1;
        int pi = -1;
        int32_t si = -1;
        FUZZ_CHECK(rollout_requests_sample_id(r, p, last) == next + last);
        FUZZ_CHECK(rollout_requests_locate(r, next + last, &pi, &si) == BR_OK && pi == p && si == last);
        FUZZ_CHECK(rollout_requests_locate(r, next, &pi, &si) == BR_OK && pi == p && si == 0);
        next += q->n;
    }
    FUZZ_CHECK(r->n_prompts >= 1);
    FUZZ_CHECK(r->n_samples == next && next <= ROLLOUT_MAX_SAMPLES);
    int pi = 0;
    int32_t si = 0;
    FUZZ_CHECK(rollout_requests_locate(r, next, &pi, &si) == BR_EINVAL);
    FUZZ_CHECK(rollout_requests_locate(r, -1, &pi, &si) == BR_EINVAL);
}

/* Like the tokenize verb: sets "ids" in each record; the output line must parse and carry the value. */
static br_status put_ids(const void *ctx, const char *s, int line, const cJSON *rec, cli_jsonl_buf *out) {
    (void)ctx;
    (void)rec;
    cli_jsonl_span sp;
    br_status st = cli_jsonl_scan(s, line, "ids", &sp);
    if (st != BR_OK) return st;
    size_t before = out->n;
    cli_jsonl_put_record(out, s, &sp, "ids", "[7, 8]", 6);
    if (out->oom) return BR_OK;
    FUZZ_CHECK(out->n > before && out->p[out->n - 1] == '\n');
    cJSON *back = cJSON_ParseWithLength(out->p + before, out->n - before - 1);
    FUZZ_CHECK(cJSON_IsObject(back));
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(back, "ids");
    FUZZ_CHECK(cJSON_IsArray(ids) && cJSON_GetArraySize(ids) == 2 && cJSON_GetArrayItem(ids, 1)->valuedouble == 8.0);
    FUZZ_CHECK(cJSON_GetArraySize(back) == cJSON_GetArraySize(rec) + !sp.found);
    cJSON_Delete(back);
    return BR_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1); /* exactly size bytes, no NUL */
    if (!text) return 0;
    if (size) memcpy(text, data, size);

    static const int32_t stop[2] = {2, 3};
    rollout_defaults d = {.n = 2, .max_new_tokens = 8,
                          .sampling = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .seed = 1},
                          .stop_ids = stop, .n_stop_ids = 2};
    rollout_requests *r = NULL;
    if (rollout_requests_parse(text, size, "prompts.jsonl", &d, VOCAB, MAX_POS, &r) == BR_OK) {
        fuzz_accepted++;
        check_requests(r);
        static const int32_t ids[3] = {1, 2, 3};
        for (int p = 0; p < r->n_prompts; p++) {
            if (r->prompts[p].ids) continue;
            br_status st = rollout_requests_set_prompt_ids(r, p, ids, 3);
            FUZZ_CHECK(st == BR_OK || 3 + r->prompts[p].max_new_tokens > MAX_POS);
        }
    } else {
        FUZZ_CHECK(r == NULL);
    }
    rollout_requests_free(r);

    cli_jsonl_buf out = {0};
    (void)cli_jsonl_each(text, size, put_ids, NULL, &out);
    free(out.p);
    free(text);
    return 0;
}
