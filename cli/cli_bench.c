/* `bitroll bench`: end-to-end throughput of generate and score on one device, per kernel mode and batch size,
 * and the flip experiment (what the invariant modes prevent): in each mode, how many log-probs differ between
 * generate and score, and how many distinct greedy completions one prompt gets across batch sizes with
 * distractor prompts. Prints tables and writes JSON. A benchmark program, never a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "cli/cli.h"
#include "cli/cli_util.h"
#include "bench/kernel_bench.h"
#include "rollout/scheduler.h"

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: bitroll bench [--random-weights CFG | --model DIR] [--device cuda|cpu] [--modes LIST]\n"
            "                     [--batches LIST] [--prompt-len N] [--new-tokens N] [--flip] [--json FILE]\n"
            "                     [--no-kernel-table | --kernel-table-only] [--kernel-json FILE]\n"
            "\n"
            "On a GPU (--device cuda) it first prints the kernel table: the copy roofline, invariant GEMM vs cuBLAS\n"
            "TFLOP/s on the same shapes, decode-shaped GEMM and paged-attention GB/s against the copy roofline.\n"
            "Then the end-to-end figures:\n"
            "Generate tokens/s for each kernel mode and batch size (B prompts x new tokens, temperature 1,\n"
            "batch = --max-seqs), score tokens/s on the largest batch's rollouts, and with --flip the flip\n"
            "experiment: log-probs (lp) and logits digests (dg) that differ between generate and score (teacher-\n"
            "forced, 512-token steps), and distinct greedy completions of one\n"
            "prompt across batch sizes 1..256 with random distractor prompts.\n"
            "\n"
            "  --random-weights CFG  model shape (default configs/shapes/qwen3-0.6b.json, weights on the GPU)\n"
            "  --model DIR           a checkpoint instead\n"
            "  --device D            cuda (default) or cpu\n"
            "  --modes LIST          comma-separated kernel modes (default invariant,fp32,standard)\n"
            "  --batches LIST        comma-separated batch sizes (default 1,64,256)\n"
            "  --prompt-len N        prompt tokens (default 64)\n"
            "  --new-tokens N        new tokens per sample (default 128)\n"
            "  --flip                also run the flip experiment\n"
            "  --json FILE           write the end-to-end figures as JSON\n"
            "  --no-kernel-table     skip the kernel table\n"
            "  --kernel-table-only   only the kernel table\n"
            "  --kernel-json FILE    write the kernel figures as JSON\n");
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* B jobs: prompt_len random ids (counter-based, from the sample index), temperature T, max_new tokens. */
static void make_jobs(rollout_job *jobs, int32_t *ids, int B, int prompt_len, int max_new, int vocab, float T,
                      uint64_t salt) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < prompt_len; t++) {
            uint64_t z = (salt * 1000003u + (uint64_t)b) * 2654435761u + (uint64_t)t * 40503u;
            z ^= z >> 29;
            z *= 0xbf58476d1ce4e5b9ull;
            z ^= z >> 32;
            ids[(size_t)b * prompt_len + t] = (int32_t)(z % (uint64_t)(vocab > 1000 ? 1000 : vocab)) + (vocab > 2000 ? 1000 : 0);
        }
        rollout_job *j = &jobs[b];
        memset(j, 0, sizeof *j);
        j->sample_id = b;
        j->prompt = ids + (size_t)b * prompt_len;
        j->prompt_len = prompt_len;
        j->max_new = max_new;
        j->sampling.temperature = T;
        j->sampling.top_p = 1.0f;
        j->sampling.seed = 1;
    }
}

int cli_bench_main(int argc, char **argv) {
    const char *cfg = "configs/shapes/qwen3-0.6b.json", *model = NULL, *device = "cuda", *json = NULL;
    char modes_buf[128] = "invariant,fp32,standard";
    int batches[16] = {1, 64, 256}, n_batches = 3, prompt_len = 64, new_tokens = 128, flip = 0;
    int kernel_table = 1, kernel_only = 0;
    const char *kernel_json = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--flip")) {
            flip = 1;
        } else if (!strcmp(a, "--no-kernel-table")) {
            kernel_table = 0;
        } else if (!strcmp(a, "--kernel-table-only")) {
            kernel_only = 1;
        } else if (v && !strcmp(a, "--kernel-json")) {
            kernel_json = v, i++;
        } else if (v && !strcmp(a, "--random-weights")) {
            cfg = v, i++;
        } else if (v && !strcmp(a, "--model")) {
            model = v, i++;
        } else if (v && !strcmp(a, "--device")) {
            device = v, i++;
        } else if (v && !strcmp(a, "--json")) {
            json = v, i++;
        } else if (v && !strcmp(a, "--modes")) {
            snprintf(modes_buf, sizeof modes_buf, "%s", v), i++;
        } else if (v && !strcmp(a, "--batches")) {
            if ((n_batches = parse_list(v, batches, 16)) < 1) {
                fprintf(stderr, "bitroll bench: --batches: '%s' is not a list of positive integers\n", v);
                return 2;
            }
            i++;
        } else if (v && (!strcmp(a, "--prompt-len") || !strcmp(a, "--new-tokens"))) {
            int64_t x;
            if (cli_parse_int(a, v, 1, 100000, &x) != BR_OK) {
                fprintf(stderr, "bitroll bench: %s\n", br_last_error());
                return 2;
            }
            if (!strcmp(a, "--prompt-len")) prompt_len = (int)x;
            else new_tokens = (int)x;
            i++;
        } else {
            fprintf(stderr, "bitroll bench: unexpected argument '%s' (bitroll bench --help)\n", a);
            return 2;
        }
    }
    if (kernel_only && !kernel_table) {
        fprintf(stderr, "bitroll bench: --kernel-table-only and --no-kernel-table contradict each other\n");
        return 2;
    }
    if (kernel_only && strcmp(device, "cuda")) {
        fprintf(stderr, "bitroll bench: --kernel-table-only needs --device cuda\n");
        return 2;
    }
    if (kernel_json && (!kernel_table || strcmp(device, "cuda"))) {
        fprintf(stderr, "bitroll bench: --kernel-json %s needs the kernel table (--device cuda, without "
                        "--no-kernel-table)\n", kernel_json);
        return 2;
    }
    /* the model first: a bad --model or --random-weights fails before minutes of kernel measurements */
    policy_weights *w = NULL;
    br_tuning tuning; /* the BITROLL_* switches, read once: the engines and the kernel table run with them */
    br_status rc = br_tuning_from_env(&tuning);
    if (rc != BR_OK) {
        fprintf(stderr, "bitroll bench: %s\n", br_last_error());
        return br_exit_code(rc);
    }
    if (!kernel_only) {
        rc = model ? policy_weights_load(model, &w) : policy_weights_random(cfg, 0, &w);
        if (rc != BR_OK) {
            fprintf(stderr, "bitroll bench: %s\n", br_last_error());
            return br_exit_code(rc);
        }
    }
    if (kernel_table && !strcmp(device, "cuda")) {
        const int krc = bench_kernel_table(kernel_json, NULL, &tuning);
        if (krc == 2 || (krc != 0 && kernel_only)) { /* 2: the JSON file cannot be written */
            policy_weights_free(w);
            return krc;
        }
        printf("\n");
    }
    if (kernel_only) return 0;
    char dev_name[256] = "cpu";
    rollout_device dev = ROLLOUT_DEVICE_CPU;
    if (!rollout_device_parse(device, &dev) && dev != ROLLOUT_DEVICE_CPU && rollout_backend(dev))
        rollout_backend(dev)->device_name(0, dev_name, sizeof dev_name);
    const int V = w->cfg.vocab;
    int max_b = 1;
    for (int i = 0; i < n_batches; i++) max_b = batches[i] > max_b ? batches[i] : max_b;
    if (flip && max_b < 256) max_b = 256;
    rollout_job *jobs = calloc((size_t)max_b, sizeof *jobs);
    rollout_result *res = calloc((size_t)max_b, sizeof *res);
    rollout_result *scored = calloc((size_t)max_b, sizeof *scored);
    int32_t *ids = malloc((size_t)max_b * prompt_len * sizeof *ids);
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (!jobs || !res || !scored || !ids || (json && !jf)) {
        fprintf(stderr, "bitroll bench: %s\n", json && !jf ? "cannot write the JSON file" : "out of memory");
        return 3;
    }
    printf("bitroll bench: %s, %s (%lld parameters, %s), device %s, prompt %d + %d new tokens\n",
           model ? model : cfg, policy_arch_name(w->cfg.arch), (long long)w->n_params, model ? "checkpoint" : "random weights",
           dev_name, prompt_len, new_tokens);
    if (jf)
        fprintf(jf, "{\"model\": \"%s\", \"device\": \"%s\", \"prompt_len\": %d, \"new_tokens\": %d, \"runs\": [",
                model ? model : cfg, dev_name, prompt_len, new_tokens);
    printf("\n%-10s %6s %12s %12s %12s %10s %10s %10s\n", "mode", "batch", "seconds", "gen tok/s", "score tok/s",
           "tokens", "lp differ", "dg differ");
    int first = 1;
    char *save = NULL;
    for (char *mode = strtok_r(modes_buf, ",", &save); mode; mode = strtok_r(NULL, ",", &save)) {
        rollout_sched_opts o = {0};
        o.max_seqs = max_b;
        o.max_batch_tokens = max_b > 512 ? max_b : 512;
        o.prefill_chunk = 512;
        o.page_size = 16;
        if (rollout_device_parse(device, &o.device) || kern_mode_parse(mode, &o.mode)) {
            fprintf(stderr, "bitroll bench: --device %s / mode '%s': not one of cpu, cuda / invariant, fp32, standard\n",
                    device, mode);
            rc = BR_EINVAL;
            continue;
        }
        o.n_pages = (int)(((int64_t)(prompt_len + new_tokens) + 15) / 16 * max_b);
        rollout_engine_opts eo = {o.device, o.mode, o.max_batch_tokens, o.n_pages, o.page_size, NULL, NULL,
                                  tuning};
        rollout_engine *eng = NULL;
        if ((rc = rollout_engine_create(w, &eo, &eng)) != BR_OK) {
            fprintf(stderr, "bitroll bench: mode %s: %s\n", mode, br_last_error());
            continue;
        }
        o.engine = eng;
        /* warm-up: one short sample */
        make_jobs(jobs, ids, 1, prompt_len, 4, V, 1.0f, 99);
        if ((rc = rollout_run(w, &o, jobs, 1, res, NULL, NULL)) == BR_OK) rollout_result_free(&res[0]);
        for (int bi = 0; rc == BR_OK && bi < n_batches; bi++) {
            const int B = batches[bi];
            o.max_seqs = B;
            make_jobs(jobs, ids, B, prompt_len, new_tokens, V, 1.0f, 7);
            for (int b = 0; b < B; b++) jobs[b].n_stop = 0;
            double t0 = cli_now();
            if ((rc = rollout_run(w, &o, jobs, B, res, NULL, NULL)) != BR_OK) break;
            double dt = cli_now() - t0;
            int64_t toks = 0;
            for (int b = 0; b < B; b++) toks += res[b].n;
            /* score the same samples, teacher-forced */
            for (int b = 0; b < B; b++) {
                jobs[b].forced = res[b].tokens;
                jobs[b].n_forced = res[b].n;
            }
            double t1 = cli_now();
            if ((rc = rollout_run(w, &o, jobs, B, scored, NULL, NULL)) != BR_OK) break;
            double ds = cli_now() - t1;
            int64_t differ = 0, ddiffer = 0;
            for (int b = 0; b < B; b++) {
                for (int t = 0; t < res[b].n; t++) {
                    differ += memcmp(&res[b].logprobs[t], &scored[b].logprobs[t], sizeof(float)) != 0;
                    ddiffer += res[b].digests[t] != scored[b].digests[t];
                }
                rollout_result_free(&scored[b]);
                rollout_result_free(&res[b]);
                jobs[b].forced = NULL;
                jobs[b].n_forced = 0;
            }
            printf("%-10s %6d %12.3f %12.0f %12.0f %10lld %10lld %10lld\n", mode, B, dt, toks / dt,
                   (toks + (int64_t)B * prompt_len) / ds, (long long)toks, (long long)differ, (long long)ddiffer);
            if (jf)
                fprintf(jf, "%s{\"mode\": \"%s\", \"batch\": %d, \"seconds\": %.6f, \"gen_tokens_per_s\": %.1f, "
                            "\"score_tokens_per_s\": %.1f, \"logprobs_differing\": %lld, \"digests_differing\": %lld, \"tokens\": %lld}",
                        first ? "" : ", ", mode, B, dt, toks / dt, (toks + (int64_t)B * prompt_len) / ds,
                        (long long)differ, (long long)ddiffer, (long long)toks);
            first = 0;
        }
        if (rc == BR_OK && flip) {
            /* one target prompt (sample 0) greedy, with B-1 distractors, for B across 1..256 */
            static const int Bs[] = {1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 64, 100, 128, 200, 255, 256};
            const int nB = (int)(sizeof Bs / sizeof Bs[0]);
            int32_t *comp[16] = {0};
            int ncomp[16] = {0}, distinct = 0;
            for (int k = 0; rc == BR_OK && k < nB; k++) {
                const int B = Bs[k];
                o.max_seqs = B;
                make_jobs(jobs, ids, B, prompt_len, new_tokens, V, 0.0f, 11);
                /* distractors: other prompts (the target keeps salt 11's sample 0) of other lengths */
                for (int b = 1; b < B; b++) jobs[b].prompt_len = 1 + (b * 37) % prompt_len;
                if ((rc = rollout_run(w, &o, jobs, B, res, NULL, NULL)) != BR_OK) break;
                comp[k] = res[0].tokens;
                ncomp[k] = res[0].n;
                res[0].tokens = NULL;
                for (int b = 0; b < B; b++) rollout_result_free(&res[b]);
                int seen = 0;
                for (int q = 0; q < k && !seen; q++)
                    seen = ncomp[q] == ncomp[k] && !memcmp(comp[q], comp[k], 4 * (size_t)ncomp[k]);
                distinct += !seen;
            }
            printf("%-10s flip: %d distinct greedy completions of one prompt across %d batch sizes (1..256)\n", mode,
                   distinct, nB);
            if (jf) fprintf(jf, "%s{\"mode\": \"%s\", \"distinct_greedy_completions\": %d, \"batch_sizes\": %d}",
                            first ? "" : ", ", mode, distinct, nB);
            first = 0;
            for (int k = 0; k < nB; k++) free(comp[k]);
        }
        rollout_engine_free(eng);
        if (rc != BR_OK) fprintf(stderr, "bitroll bench: mode %s: %s\n", mode, br_last_error());
    }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    free(jobs);
    free(res);
    free(scored);
    free(ids);
    policy_weights_free(w);
    return rc == BR_OK ? 0 : br_exit_code(rc);
}
