/* Shared prompt KV on the CPU engine: the same n-samples-per-prompt workload with and without sharing
 * (rollout_sched_opts.no_share_prompt_kv), forward rows computed and wall time; the two runs' results are checked
 * bitwise equal. Usage: bench_share_kv [model dir (stories260K)] [prompts (8)] [prompt tokens (200)] [n (8)]
 * [new tokens (32)] [page size (16)] [repeats (3)]; prints a table, best of the repeats. Roofline: none -- the
 * point is the rows not computed (prefill of (n - 1) x (P - 1) tokens per prompt); time follows rows on the CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_host.h"
#include "rollout/scheduler.h"

static int arg_int(int argc, char **argv, int i, int dflt) { return argc > i ? atoi(argv[i]) : dflt; }

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : BR_TEST_DATA "/../../configs/models/stories260K";
    const int n_prompts = arg_int(argc, argv, 2, 8), P = arg_int(argc, argv, 3, 200), n = arg_int(argc, argv, 4, 8);
    const int max_new = arg_int(argc, argv, 5, 32), page = arg_int(argc, argv, 6, 16), reps = arg_int(argc, argv, 7, 3);
    if (n_prompts < 1 || P < 1 || n < 1 || max_new < 1 || page < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_share_kv [model] [prompts] [prompt tokens] [n] [new tokens] [page size] [repeats]\n");
        return 2;
    }
    policy_weights *w = NULL;
    if (policy_weights_load(model, &w) != BR_OK) {
        fprintf(stderr, "bench_share_kv: %s\n", br_last_error());
        return 3;
    }
    const int64_t nj = (int64_t)n_prompts * n;
    int32_t *prompts = malloc((size_t)n_prompts * P * sizeof *prompts);
    rollout_job *jobs = calloc((size_t)nj, sizeof *jobs);
    rollout_result *res[2] = {calloc((size_t)nj, sizeof **res), calloc((size_t)nj, sizeof **res)};
    if (!prompts || !jobs || !res[0] || !res[1]) return 3;
    uint32_t x = 12345;
    for (int i = 0; i < n_prompts * P; i++) {
        x = x * 1664525u + 1013904223u;
        prompts[i] = i % P == 0 ? 1 : 3 + (int32_t)((x >> 8) % (uint32_t)(w->cfg.vocab - 3));
    }
    for (int64_t j = 0; j < nj; j++) { /* the generate driver's layout: a prompt's n samples in a row */
        jobs[j].sample_id = j;
        jobs[j].prompt = prompts + (j / n) * P;
        jobs[j].prompt_len = P;
        jobs[j].max_new = max_new;
        jobs[j].sampling = (rollout_sampling){1.0f, 1.0f, 0, 11};
    }
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    double load[1] = {-1};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load[0]) != 1) load[0] = -1;
        fclose(la);
    }
    printf("bench_share_kv: %s, %ld cores online; model %s (%d layers, dim %d); %d prompts x %d tokens, n = %d, "
           "%d new tokens (no stop), page size %d, max_batch_tokens 256, max_seqs 64, prefill chunk 64; best of %d "
           "(load average %.2f at start)\n",
           cpu, sysconf(_SC_NPROCESSORS_ONLN), model, w->cfg.n_layers, w->cfg.dim, n_prompts, P, n, max_new, page, reps, load[0]);
    printf("| prompt KV | steps (prefill + decode) | prefill rows | decode rows | rows saved | copied pages | prefill s | "
           "decode s | total s | tokens/s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    /* the modes alternate within each repeat, so load from other processes hits both alike; best of the repeats */
    double best[2] = {0, 0};
    rollout_run_stats keep[2];
    memset(keep, 0, sizeof keep);
    for (int r = 0; r < reps; r++)
        for (int mode = 0; mode < 2; mode++) {
            rollout_run_stats st = {0};
            rollout_sched_opts o = {.max_batch_tokens = 256, .max_seqs = 64, .prefill_chunk = 64, .page_size = page,
                                    .stats = &st, .no_share_prompt_kv = mode == 0};
            for (int64_t j = 0; j < nj; j++) rollout_result_free(&res[mode][j]);
            const double t0 = br_now_s();
            if (rollout_run(w, &o, jobs, nj, res[mode], NULL, NULL) != BR_OK) {
                fprintf(stderr, "bench_share_kv: %s\n", br_last_error());
                return 3;
            }
            const double t = br_now_s() - t0;
            if (r == 0 || t < best[mode]) best[mode] = t, keep[mode] = st;
        }
    for (int mode = 0; mode < 2; mode++) {
        const rollout_run_stats *k = &keep[mode];
        printf("| %s | %lld + %lld | %lld | %lld | %lld | %lld | %.3f | %.3f | %.3f | %.0f |\n",
               mode ? "shared" : "unshared", (long long)k->steps_prefill, (long long)k->steps_decode,
               (long long)k->rows_prefill, (long long)k->rows_decode, (long long)k->rows_saved,
               (long long)k->pages_copied, k->s_prefill, k->s_decode, best[mode], (double)k->tokens_out / best[mode]);
    }
    int same = 1;
    for (int64_t j = 0; j < nj; j++) {
        const rollout_result *a = &res[0][j], *b = &res[1][j];
        same &= a->n == b->n && a->finish == b->finish && !memcmp(a->tokens, b->tokens, 4 * (size_t)a->n) &&
                !memcmp(a->logprobs, b->logprobs, 4 * (size_t)a->n) && !memcmp(a->digests, b->digests, 8 * (size_t)a->n);
    }
    printf("speed-up %.2fx; results %s\n", best[0] / best[1], same ? "bitwise equal" : "DIFFER");
    for (int m = 0; m < 2; m++) {
        for (int64_t j = 0; j < nj; j++) rollout_result_free(&res[m][j]);
        free(res[m]);
    }
    free(jobs);
    free(prompts);
    policy_weights_free(w);
    return same ? 0 : 1;
}
