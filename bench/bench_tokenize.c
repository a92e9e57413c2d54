/* Tokenizer encode throughput (MB/s of UTF-8 input) on English text for the qwen3, gpt2 and stories260K
 * tokenizers. Usage: bench_tokenize [MB (default 4)] [repeats (default 3)]; prints a table. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_host.h"
#include "common/br.h"
#include "policy/tokenizer/tokenizer.h"

/* English corpus: the ASCII lines of the reference encodings (prose, code, numbers), repeated to
 * `bytes`, each line followed by a newline. */
static br_status build_corpus(size_t bytes, char **out) {
    char *data = NULL;
    size_t len;
    br_status st = br_read_file(BR_TEST_DATA "/tokenizers/gpt2/encodings.jsonl", &data, &len);
    if (st) return st;
    size_t cap = 1 << 16, used = 0;
    char *lines = malloc(cap);
    for (char *line = data, *nl; lines && line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *o = cJSON_Parse(line);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (cJSON_IsString(t) && *t->valuestring) {
            int ascii = 1;
            for (const char *p = t->valuestring; *p; p++) ascii &= (unsigned char)*p < 0x80;
            size_t k = strlen(t->valuestring);
            if (ascii && used + k + 2 < cap) {
                memcpy(lines + used, t->valuestring, k);
                used += k;
                lines[used++] = '\n';
            }
        }
        cJSON_Delete(o);
    }
    free(data);
    char *buf = malloc(bytes + 1);
    if (!lines || !buf || !used) {
        free(lines);
        free(buf);
        return br_fail(BR_ENOMEM, "bench: cannot build the corpus");
    }
    for (size_t i = 0; i < bytes; i++) buf[i] = lines[i % used];
    buf[bytes] = 0;
    free(lines);
    *out = buf;
    return BR_OK;
}

int main(int argc, char **argv) {
    double mb = argc > 1 ? atof(argv[1]) : 4.0;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    if (mb <= 0 || reps <= 0) {
        fprintf(stderr, "usage: bench_tokenize [MB > 0] [repeats > 0]\n");
        return 2;
    }
    size_t bytes = (size_t)(mb * 1024 * 1024);
    char *text = NULL;
    if (build_corpus(bytes, &text)) {
        fprintf(stderr, "bench_tokenize: %s\n", br_last_error());
        return 3;
    }
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    const char *names[3] = {"qwen3", "gpt2", "stories260K"};
    const char *paths[3] = {BR_TEST_DATA "/tokenizers/qwen3", BR_TEST_DATA "/tokenizers/gpt2",
                            BR_TEST_DATA "/../../configs/models/stories260K"};
    printf("# bench_tokenize: tok_encode throughput, single thread, English text (ASCII lines of the encodings "
           "files, repeated)\n");
    printf("# machine: %s; bitroll %s (%s); best of %d runs; MB = 2^20 bytes\n", cpu, BR_VERSION, BR_GIT_REV, reps);
    printf("%-12s %12s %12s %10s %10s %12s\n", "tokenizer", "input_MB", "tokens", "load_s", "encode_s", "MB/s");
    int rc = 0;
    for (int k = 0; k < 3; k++) {
        tok_tokenizer *tok = NULL;
        double t0 = br_now_s();
        if (tok_load(paths[k], &tok)) {
            fprintf(stderr, "bench_tokenize: %s\n", br_last_error());
            rc = 3;
            continue;
        }
        double load = br_now_s() - t0, best = 1e30;
        size_t n = 0;
        for (int r = 0; r < reps; r++) {
            int32_t *ids = NULL;
            t0 = br_now_s();
            br_status st = tok_encode(tok, text, bytes, 0, &ids, &n);
            double dt = br_now_s() - t0;
            free(ids);
            if (st) {
                fprintf(stderr, "bench_tokenize: %s\n", br_last_error());
                rc = 3;
                break;
            }
            if (dt < best) best = dt;
        }
        printf("%-12s %12.2f %12zu %10.3f %10.3f %12.2f\n", names[k], (double)bytes / 1048576.0, n, load, best,
               (double)bytes / 1048576.0 / best);
        tok_free(tok);
    }
    free(text);
    return rc;
}
