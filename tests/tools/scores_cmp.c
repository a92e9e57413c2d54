/* Test tool: exit 0 iff two scores files hold bitwise-equal /scores datasets (sample ids, completion offsets,
 * log-probs, digests: memcmp), 1 otherwise (naming the first dataset that differs), 2 when a file cannot be read.
 * usage: scores_cmp A.h5 B.h5 */
#include <stdio.h>
#include <string.h>

#include "logging/h5log.h"

static int differs(const char *name, const void *a, const void *b, size_t bytes) {
    if (bytes && memcmp(a, b, bytes)) {
        printf("scores_cmp: /scores/%s differs\n", name);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: scores_cmp A.h5 B.h5\n");
        return 2;
    }
    h5log_scores a = {0}, b = {0};
    int rc = 2;
    if (h5log_scores_read(argv[1], &a, NULL) != BR_OK || h5log_scores_read(argv[2], &b, NULL) != BR_OK) {
        fprintf(stderr, "scores_cmp: %s\n", br_last_error());
        goto done;
    }
    rc = 1;
    if (a.n != b.n) {
        printf("scores_cmp: %lld vs %lld samples\n", (long long)a.n, (long long)b.n);
        goto done;
    }
    const size_t n = (size_t)a.n;
    if (differs("sample_id", a.sample_id, b.sample_id, 8 * n) ||
        differs("completion_offsets", a.completion_offsets, b.completion_offsets, 8 * (n + 1)))
        goto done;
    const size_t T = (size_t)a.completion_offsets[n];
    if (differs("logprobs", a.logprobs, b.logprobs, 4 * T) || differs("logits_digest", a.logits_digest, b.logits_digest, 8 * T))
        goto done;
    printf("scores_cmp: %zu samples, %zu tokens, all /scores datasets bitwise equal\n", n, T);
    rc = 0;
done:
    h5log_scores_free(&a);
    h5log_scores_free(&b);
    return rc;
}
