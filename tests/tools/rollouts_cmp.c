/* Test tool: exit 0 iff two rollouts files hold bitwise-equal /samples datasets (memcmp of every array),
 * 1 otherwise (naming the first dataset that differs), 2 when a file cannot be read.
 * usage: rollouts_cmp [--first N] A.h5 B.h5
 *   --first N: compare only samples 0..N-1 (per-sample slices of every dataset), for a file that is a prefix
 *              of a larger run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logging/h5log.h"

static int differs(const char *name, const void *a, const void *b, size_t bytes) {
    if (bytes && memcmp(a, b, bytes)) {
        printf("rollouts_cmp: /samples/%s differs\n", name);
        return 1;
    }
    return 0;
}

/* Compares samples [0, n) of a and b. */
static int compare(const h5log_rollouts *a, const h5log_rollouts *b, int64_t n) {
    if (differs("sample_id", a->sample_id, b->sample_id, 8 * (size_t)n) ||
        differs("prompt_index", a->prompt_index, b->prompt_index, 8 * (size_t)n) ||
        differs("sample_index", a->sample_index, b->sample_index, 4 * (size_t)n) ||
        differs("prompt_offsets", a->prompt_offsets, b->prompt_offsets, 8 * (size_t)(n + 1)) ||
        differs("completion_offsets", a->completion_offsets, b->completion_offsets, 8 * (size_t)(n + 1)) ||
        differs("finish_reason", a->finish_reason, b->finish_reason, (size_t)n) ||
        differs("temperature", a->temperature, b->temperature, 4 * (size_t)n) ||
        differs("top_p", a->top_p, b->top_p, 4 * (size_t)n) || differs("top_k", a->top_k, b->top_k, 4 * (size_t)n) ||
        differs("seed", a->seed, b->seed, 8 * (size_t)n))
        return 1;
    const size_t P = (size_t)a->prompt_offsets[n], T = (size_t)a->completion_offsets[n];
    if (differs("prompt_tokens", a->prompt_tokens, b->prompt_tokens, 4 * P) ||
        differs("completion_tokens", a->completion_tokens, b->completion_tokens, 4 * T) ||
        differs("logprobs", a->logprobs, b->logprobs, 4 * T) ||
        differs("logits_digest", a->logits_digest, b->logits_digest, 8 * T))
        return 1;
    if (!!a->completion_text != !!b->completion_text) {
        printf("rollouts_cmp: only one file has text\n");
        return 1;
    }
    for (int64_t i = 0; a->completion_text && i < n; i++)
        if (strcmp(a->completion_text[i], b->completion_text[i]) || strcmp(a->prompt_text[i], b->prompt_text[i])) {
            printf("rollouts_cmp: text of sample %lld differs\n", (long long)i);
            return 1;
        }
    printf("rollouts_cmp: %lld samples, %lld completion tokens, all /samples datasets bitwise equal\n", (long long)n,
           (long long)T);
    return 0;
}

int main(int argc, char **argv) {
    int64_t first = -1;
    int arg = 1;
    if (argc == 5 && !strcmp(argv[1], "--first")) {
        first = atoll(argv[2]);
        arg = 3;
    } else if (argc != 3) {
        fprintf(stderr, "usage: rollouts_cmp [--first N] A.h5 B.h5\n");
        return 2;
    }
    h5log_rollouts a = {0}, b = {0};
    int rc = 2;
    if (h5log_rollouts_read(argv[arg], &a, NULL) != BR_OK || h5log_rollouts_read(argv[arg + 1], &b, NULL) != BR_OK) {
        fprintf(stderr, "rollouts_cmp: %s\n", br_last_error());
        goto done;
    }
    int64_t n = first >= 0 ? first : a.n;
    if (first < 0 && a.n != b.n) {
        printf("rollouts_cmp: %lld vs %lld samples\n", (long long)a.n, (long long)b.n);
        rc = 1;
        goto done;
    }
    if (n > a.n || n > b.n) {
        printf("rollouts_cmp: fewer than %lld samples (%lld, %lld)\n", (long long)n, (long long)a.n, (long long)b.n);
        rc = 1;
        goto done;
    }
    rc = compare(&a, &b, n);
done:
    h5log_rollouts_free(&a);
    h5log_rollouts_free(&b);
    return rc;
}
