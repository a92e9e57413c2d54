/* `bitroll bench`: end-to-end throughput of generate and score on one device, per kernel mode and batch size,
 * and the flip experiment (what the invariant modes prevent): in each mode, how many log-probs differ between
 * generate and score, and how many distinct greedy completions one prompt gets across batch sizes with
 * distractor prompts. Prints tables and writes JSON. A benchmark program, never a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
            "       bitroll bench --workload rl [...]   (an RL rollout step: bitroll bench --workload rl --help)\n"
            "\n"
            "On a GPU (--device cuda) it first prints the kernel table: the copy roofline, invariant GEMM vs cuBLAS\n"
            "TFLOP/s on the same shapes, decode-shaped GEMM and paged-attention GB/s against the copy roofline.\n"
            "Then the end-to-end figures, for each kernel mode and batch size B: generate tokens/s (B prompts x new\n"
            "tokens, temperature 1, batch = --max-seqs), score tokens/s on those rollouts (teacher-forced, 512-token\n"
            "steps), the log-probs (lp) and logits digests (dg) that differ between generate and score, and the\n"
            "generate run's HBM GB/s (steps x the weights a step reads + the keys and values each step reads, / its\n"
            "seconds) with its share of the copy bandwidth measured in the same run (%%copy; at batch 1 the share of\n"
            "the bound weight bytes per step / copy bandwidth). With --flip, the distinct greedy completions of one\n"
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

/* Random weights are generated on the GPU: a CPU run needs a checkpoint (said before building anything). Returns 2. */
static int cpu_needs_model(const char *cfg) {
    fprintf(stderr, "bitroll bench: --device cpu needs --model DIR (random weights, --random-weights %s, are generated "
                    "on the GPU: --device cuda)\n", cfg);
    return 2;
}

/* ---- `bitroll bench --workload rl`: an RL rollout step -- P prompts x n samples, temperature 1, no stop token,
 * completions of each --new-tokens length, for each top-p -- with the scheduler's step timings, the achieved HBM
 * bandwidth against the copy bandwidth measured in the same run, and the device memory it took. */

static void rl_usage(FILE *f) {
    fprintf(f,
            "usage: bitroll bench --workload rl [--random-weights CFG | --model DIR] [--device cuda|cpu]\n"
            "                     [--kernels MODE] [--prompts-count P] [--n N] [--prompt-len L] [--new-tokens LIST]\n"
            "                     [--top-p LIST] [--top-p-prompts P] [--max-seqs N] [--max-batch-tokens N]\n"
            "                     [--gpu-memory-utilization F] [--seed S] [--json FILE]\n"
            "\n"
            "One RL rollout step per (new tokens, top-p): P prompts of L random tokens x N samples each, temperature\n"
            "1.0, no stop token, every completion exactly the new-token count. Prints tokens/s, the share of the run's\n"
            "wall time in prefill steps, decode steps and the scheduler's host work, the achieved HBM GB/s (per step\n"
            "the weights a step reads + each sequence's keys and values read once, summed, / wall seconds) against\n"
            "the copy bandwidth measured in the same run, and the peak device memory (total - the least free seen).\n"
            "Sampling runs inside the steps (on a GPU: Gumbel-max at top-p 1, a sort and a scan at top-p < 1),\n"
            "so it is part of the prefill/decode shares, not a column of its own.\n"
            "\n"
            "  --random-weights CFG  model shape (default configs/shapes/qwen3-0.6b.json; cuda only)\n"
            "  --model DIR           a checkpoint instead\n"
            "  --device D            cuda (default) or cpu\n"
            "  --kernels MODE        invariant (default), fp32, standard\n"
            "  --prompts-count P     prompts (default 256)\n"
            "  --n N                 samples per prompt (default 8)\n"
            "  --prompt-len L        prompt tokens (default 256)\n"
            "  --new-tokens LIST     comma-separated completion lengths (default 1024,4096)\n"
            "  --top-p LIST          comma-separated top-p values (default 1.0,0.95)\n"
            "  --top-p-prompts P     prompts of the top-p < 1 runs (default: all, as the top-p 1 runs)\n"
            "  --max-seqs N, --max-batch-tokens N   as generate (default on cuda: from the memory plan)\n"
            "  --gpu-memory-utilization F           as generate (default 0.9)\n"
            "  --seed S              sampling seed (default 1)\n"
            "  --json FILE           write the figures as JSON\n");
}

typedef struct {
    rollout_device dev;
    int64_t min_free; /* least free device memory seen after a step */
    double t0, last;  /* the run's start and the last progress line (br_now_s seconds) */
} rl_progress;

/* Every step: the least free device memory; every 10 s a progress line on stderr (a run of minutes shows its rate,
 * and a run cut short by a timeout still tells how far it got). */
static void rl_on_step(void *ctx, int64_t done, int64_t total, int64_t tokens) {
    rl_progress *p = ctx;
    int64_t f = 0, t = 0;
    if (rollout_device_memory(p->dev, &f, &t) == BR_OK && (p->min_free < 0 || f < p->min_free)) p->min_free = f;
    const double now = br_now_s();
    if (now - p->last >= 10.0) {
        p->last = now;
        fprintf(stderr, "bench rl: %.0f s: %lld/%lld samples done, %lld tokens, %.0f tokens/s so far\n", now - p->t0,
                (long long)done, (long long)total, (long long)tokens, (double)tokens / (now - p->t0));
    }
}

/* The copy bandwidth of the kernel table (bench/kernel_bench.c), measured alone: its JSON record "copy". 0 when
 * there is no CUDA device. */
static double bench_copy_gbs(const br_tuning *t) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/bitroll-bench-copy-%ld.json", (long)getpid());
    double gbs = 0;
    if (bench_kernel_table(path, "copy", t) == 0) {
        FILE *f = fopen(path, "r");
        char buf[4096];
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        buf[n] = '\0';
        const char *k = strstr(buf, "\"kind\": \"copy\"");
        const char *g = k ? strstr(k, "\"gbs\": ") : NULL;
        if (g) gbs = strtod(g + 7, NULL);
        if (f) fclose(f);
    }
    remove(path);
    return gbs;
}

static int parse_floats(const char *s, float *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        float v = strtof(s, &end);
        if (end == s || !(v > 0.0f && v <= 1.0f)) return -1;
        out[n++] = v;
        if (*end && *end != ',') return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int bench_rl(int argc, char **argv) {
    const char *cfg = "configs/shapes/qwen3-0.6b.json", *model = NULL, *device = "cuda", *json = NULL, *kernels = "invariant";
    int prompts = 256, n_per = 8, prompt_len = 256, new_tok[16] = {1024, 4096}, n_new = 2, topp_prompts = 1 << 24;
    float topp[16] = {1.0f, 0.95f};
    int n_topp = 2, max_seqs = 0, max_bt = 0;
    double util = 0.0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x = 0;
        br_status rc = BR_OK;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            rl_usage(stdout);
            return 0;
        } else if (v && !strcmp(a, "--workload")) {
            i++; /* rl: how we got here */
            continue;
        } else if (!v) {
            rc = br_fail(BR_EINVAL, "unexpected argument '%s' (bitroll bench --workload rl --help)", a);
        } else if (!strcmp(a, "--random-weights")) cfg = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--kernels")) kernels = v;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--seed")) rc = cli_parse_u64(a, v, &seed);
        else if (!strcmp(a, "--gpu-memory-utilization")) {
            util = strtod(v, NULL);
            if (!(util > 0.0 && util <= 1.0)) rc = br_fail(BR_EINVAL, "%s: '%s': expected a share in (0, 1]", a, v);
        } else if (!strcmp(a, "--new-tokens")) {
            if ((n_new = parse_list(v, new_tok, 16)) < 1) rc = br_fail(BR_EINVAL, "%s: '%s' is not a list of positive integers", a, v);
        } else if (!strcmp(a, "--top-p")) {
            if ((n_topp = parse_floats(v, topp, 16)) < 1) rc = br_fail(BR_EINVAL, "%s: '%s' is not a list of values in (0, 1]", a, v);
        } else if (!strcmp(a, "--prompts-count") || !strcmp(a, "--n") || !strcmp(a, "--prompt-len") ||
                   !strcmp(a, "--top-p-prompts") || !strcmp(a, "--max-seqs") || !strcmp(a, "--max-batch-tokens")) {
            if ((rc = cli_parse_int(a, v, 1, 1 << 24, &x)) == BR_OK) {
                if (!strcmp(a, "--prompts-count")) prompts = (int)x;
                else if (!strcmp(a, "--n")) n_per = (int)x;
                else if (!strcmp(a, "--prompt-len")) prompt_len = (int)x;
                else if (!strcmp(a, "--top-p-prompts")) topp_prompts = (int)x;
                else if (!strcmp(a, "--max-seqs")) max_seqs = (int)x;
                else max_bt = (int)x;
            }
        } else {
            rc = br_fail(BR_EINVAL, "unexpected argument '%s' (bitroll bench --workload rl --help)", a);
        }
        if (rc != BR_OK) {
            fprintf(stderr, "bitroll bench: %s\n", br_last_error());
            return 2;
        }
        i++;
    }
    rollout_device dev = ROLLOUT_DEVICE_CPU;
    kern_mode mode = KERN_MODE_INVARIANT;
    if (rollout_device_parse(device, &dev) || kern_mode_parse(kernels, &mode)) {
        fprintf(stderr, "bitroll bench: --device %s / --kernels %s: not one of cpu, cuda / invariant, fp32, standard\n",
                device, kernels);
        return 2;
    }
    if ((int64_t)prompts * n_per > (1 << 26)) {
        fprintf(stderr, "bitroll bench: --prompts-count %d x --n %d: at most 67,108,864 samples\n", prompts, n_per);
        return 2;
    }
    if (!model && dev == ROLLOUT_DEVICE_CPU) {
        return cpu_needs_model(cfg);
    }
    br_tuning tuning;
    br_status rc = br_tuning_from_env(&tuning);
    policy_weights *w = NULL;
    if (rc == BR_OK) rc = model ? policy_weights_load(model, &w) : policy_weights_random(cfg, 0, &w);
    if (rc != BR_OK) {
        fprintf(stderr, "bitroll bench: %s\n", br_last_error());
        return br_exit_code(rc);
    }
    const policy_config *c = &w->cfg;
    for (int k = 0; k < n_new; k++)
        if ((int64_t)prompt_len + new_tok[k] > c->max_pos) {
            fprintf(stderr, "bitroll bench: --prompt-len %d + --new-tokens %d exceed the context length %d\n",
                    prompt_len, new_tok[k], c->max_pos);
            policy_weights_free(w);
            return 2;
        }
    char dev_name[256] = "cpu";
    if (dev != ROLLOUT_DEVICE_CPU && rollout_backend(dev) && rollout_backend(dev)->device_count() > 0)
        rollout_backend(dev)->device_name(0, dev_name, sizeof dev_name);
    const double copy_gbs = dev == ROLLOUT_DEVICE_CUDA ? bench_copy_gbs(&tuning) : 0.0;
    const int64_t n_jobs = (int64_t)prompts * n_per;
    rollout_job *jobs = calloc((size_t)n_jobs, sizeof *jobs);
    rollout_result *res = calloc((size_t)n_jobs, sizeof *res);
    int32_t *ids = malloc((size_t)prompts * prompt_len * sizeof *ids);
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (!jobs || !res || !ids || (json && !jf)) {
        fprintf(stderr, "bitroll bench: %s\n", json && !jf ? "cannot write the JSON file" : "out of memory");
        free(jobs), free(res), free(ids), policy_weights_free(w);
        if (jf) fclose(jf);
        return json && !jf ? 2 : 3;
    }
    /* the prompts: random ids (as the end-to-end bench's), each prompt's n samples one after the other */
    make_jobs(jobs, ids, prompts, prompt_len, 1, c->vocab, 1.0f, 3);
    for (int64_t s = n_jobs - 1; s >= 0; s--) {
        jobs[s] = jobs[s / n_per];
        jobs[s].sample_id = s;
    }
    printf("bitroll bench --workload rl: %s, %s (%lld parameters, %s), device %s, kernels %s\n", model ? model : cfg,
           policy_arch_name(c->arch), (long long)w->n_params, model ? "checkpoint" : "random weights", dev_name, kernels);
    printf("%d prompts x n = %d, prompt %d tokens, temperature 1.0, no stop token; top-p < 1 runs: %d prompts x n\n",
           prompts, n_per, prompt_len, topp_prompts < prompts ? topp_prompts : prompts);
    if (copy_gbs > 0) printf("copy bandwidth measured in this run: %.0f GB/s\n", copy_gbs);
    else printf("copy bandwidth: not measured (no CUDA device); HBM columns are bytes / s of the cost model\n");
    if (jf)
        fprintf(jf, "{\"workload\": \"rl\", \"model\": \"%s\", \"device\": \"%s\", \"kernels\": \"%s\", \"prompts\": %d, "
                    "\"n\": %d, \"prompt_len\": %d, \"temperature\": 1.0, \"copy_gbs\": %.1f, \"runs\": [",
                model ? model : cfg, dev_name, kernels, prompts, n_per, prompt_len, copy_gbs);
    printf("\n%6s %5s %7s %10s %9s %10s %8s %8s %6s %9s %6s %8s %5s %6s\n", "new", "top_p", "samples", "tokens",
           "seconds", "tok/s", "prefill%", "decode%", "host%", "HBM_GB/s", "%copy", "peak_GB", "seqs", "batch");
    int first = 1;
    for (int k = 0; rc == BR_OK && k < n_new; k++)
        for (int q = 0; rc == BR_OK && q < n_topp; q++) {
            const int P = topp[q] < 1.0f && topp_prompts < prompts ? topp_prompts : prompts;
            const int64_t S = (int64_t)P * n_per;
            for (int64_t s = 0; s < S; s++) {
                jobs[s].max_new = new_tok[k];
                jobs[s].sampling.top_p = topp[q];
                jobs[s].sampling.seed = seed;
                jobs[s].n_stop = 0;
            }
            rollout_mem_plan plan = {0};
            rollout_run_stats st = {0};
            rollout_sched_opts o = {.max_batch_tokens = max_bt ? max_bt : 256, .max_seqs = max_seqs ? max_seqs : 64,
                                    .prefill_chunk = 512, .page_size = 16, .device = dev, .mode = mode,
                                    .tuning = tuning, .gpu_memory_utilization = util, .plan_out = &plan,
                                    .report_plan = 1, .stats = &st};
            if (max_seqs) o.sizes_given |= ROLLOUT_GIVEN_MAX_SEQS;
            if (max_bt) o.sizes_given |= ROLLOUT_GIVEN_BATCH_TOKENS;
            int64_t free0 = 0, total = 0;
            const int have_mem = rollout_device_memory(dev, &free0, &total) == BR_OK;
            const double t0 = br_now_s();
            rl_progress pr = {dev, -1, t0, t0};
            rc = rollout_run(w, &o, jobs, S, res, rl_on_step, &pr);
            const double wall = br_now_s() - t0 - st.s_create;
            if (rc != BR_OK) {
                fprintf(stderr, "bitroll bench: %d new tokens, top-p %g: %s\n", new_tok[k], (double)topp[q], br_last_error());
                break;
            }
            int64_t toks = 0;
            for (int64_t s = 0; s < S; s++) {
                toks += res[s].n;
                rollout_result_free(&res[s]);
            }
            /* the bytes a step must move at least: the weights once, each sequence's keys and values once */
            if (!have_mem) { /* the CPU: the plan's arithmetic as the cost model (bf16-like weights of the mode) */
                plan.mode = mode;
                plan.wdtype = w->dtype;
                plan.tp_size = 1;
                rollout_mem_plan_compute(c, &plan);
            }
            const int64_t steps = st.steps_prefill + st.steps_decode;
            const double bytes =
                (double)steps * (double)plan.weights_step + (double)st.kv_read_tokens * (double)plan.kv_token;
            const double hbm = bytes / wall / 1e9;
            const double peak = have_mem && pr.min_free >= 0 ? (double)(total - pr.min_free) / 1e9 : -1.0;
            char peak_s[32], pct_s[32];
            snprintf(peak_s, sizeof peak_s, peak >= 0 ? "%.1f" : "-", peak);
            snprintf(pct_s, sizeof pct_s, copy_gbs > 0 ? "%.0f%%" : "-", 100.0 * hbm / (copy_gbs > 0 ? copy_gbs : 1));
            printf("%6d %5.2f %7lld %10lld %9.2f %10.0f %7.1f%% %7.1f%% %5.1f%% %9.1f %6s %8s %5d %6d\n", new_tok[k],
                   (double)topp[q], (long long)S, (long long)toks, wall, toks / wall, 100 * st.s_prefill / wall,
                   100 * st.s_decode / wall, 100 * st.s_host / wall, hbm, pct_s, peak_s, have_mem ? plan.max_seqs : o.max_seqs,
                   have_mem ? plan.max_tokens : o.max_batch_tokens);
            fflush(stdout);
            if (jf)
                fprintf(jf, "%s\n  {\"new_tokens\": %d, \"top_p\": %.3f, \"prompts\": %d, \"samples\": %lld, \"tokens\": %lld, "
                            "\"seconds\": %.4f, \"tokens_per_s\": %.1f, \"s_prefill\": %.4f, \"s_decode\": %.4f, "
                            "\"s_host\": %.4f, \"s_create\": %.4f, \"steps_prefill\": %lld, \"steps_decode\": %lld, "
                            "\"rows_prefill\": %lld, \"rows_decode\": %lld, \"kv_read_tokens\": %lld, \"weights_bytes\": %lld, "
                            "\"kv_token_bytes\": %lld, \"hbm_bytes\": %.0f, \"hbm_gbs\": %.2f, \"peak_device_bytes\": %.0f, "
                            "\"plan_total_bytes\": %lld, \"plan_kv_bytes\": %lld, \"max_seqs\": %d, \"max_batch_tokens\": %d}",
                        first ? "" : ",", new_tok[k], (double)topp[q], P, (long long)S, (long long)toks, wall, toks / wall,
                        st.s_prefill, st.s_decode, st.s_host, st.s_create, (long long)st.steps_prefill,
                        (long long)st.steps_decode, (long long)st.rows_prefill, (long long)st.rows_decode,
                        (long long)st.kv_read_tokens, (long long)plan.weights_step, (long long)plan.kv_token, bytes, hbm,
                        peak >= 0 ? peak * 1e9 : -1.0, (long long)(have_mem ? plan.total : 0),
                        (long long)(have_mem ? plan.kv : 0), have_mem ? plan.max_seqs : o.max_seqs,
                        have_mem ? plan.max_tokens : o.max_batch_tokens);
            first = 0;
        }
    if (jf) {
        fprintf(jf, "\n]}\n");
        fclose(jf);
    }
    free(jobs);
    free(res);
    free(ids);
    policy_weights_free(w);
    return rc == BR_OK ? 0 : br_exit_code(rc);
}

int cli_bench_main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--workload")) {
            if (!strcmp(argv[i + 1], "rl")) return bench_rl(argc, argv);
            fprintf(stderr, "bitroll bench: --workload '%s': the only workload is rl\n", argv[i + 1]);
            return 2;
        }
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
    if (!model && !kernel_only && !strcmp(device, "cpu")) { /* before generating 0.6B random parameters for nothing */
        return cpu_needs_model(cfg);
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
    /* the bytes a generate run must read at least (bench --workload rl's cost model): per step the weights a step
     * reads, per step and sequence its keys and values; against the copy bandwidth measured here */
    const double copy_gbs = dev == ROLLOUT_DEVICE_CUDA ? bench_copy_gbs(&tuning) : 0.0;
    if (copy_gbs > 0)
        printf("copy bandwidth measured in this run: %.0f GB/s (%%copy: HBM_GB/s against it)\n", copy_gbs);
    else printf("copy bandwidth: not measured (no CUDA device); HBM_GB/s is bytes / s of the cost model\n");
    printf("HBM_GB/s: (generate steps x the weights a step reads + the keys and values each step reads) / seconds\n");
    if (jf)
        fprintf(jf, "{\"model\": \"%s\", \"device\": \"%s\", \"prompt_len\": %d, \"new_tokens\": %d, \"copy_gbs\": %.1f, "
                    "\"runs\": [", model ? model : cfg, dev_name, prompt_len, new_tokens, copy_gbs);
    printf("\n%-10s %6s %12s %12s %12s %10s %10s %10s %9s %6s\n", "mode", "batch", "seconds", "gen tok/s", "score tok/s",
           "tokens", "lp differ", "dg differ", "HBM_GB/s", "%copy");
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
        /* the mode's bytes a step reads (weights) and a cached token holds: the HBM column's cost model */
        rollout_mem_plan pl = {.mode = o.mode, .wdtype = w->dtype, .tp_size = 1};
        rollout_mem_plan_compute(&w->cfg, &pl);
        /* warm-up: one short sample */
        make_jobs(jobs, ids, 1, prompt_len, 4, V, 1.0f, 99);
        if ((rc = rollout_run(w, &o, jobs, 1, res, NULL, NULL)) == BR_OK) rollout_result_free(&res[0]);
        for (int bi = 0; rc == BR_OK && bi < n_batches; bi++) {
            const int B = batches[bi];
            o.max_seqs = B;
            make_jobs(jobs, ids, B, prompt_len, new_tokens, V, 1.0f, 7);
            for (int b = 0; b < B; b++) jobs[b].n_stop = 0;
            rollout_run_stats st = {0};
            o.stats = &st;
            double t0 = br_now_s();
            rc = rollout_run(w, &o, jobs, B, res, NULL, NULL);
            double dt = br_now_s() - t0;
            o.stats = NULL;
            if (rc != BR_OK) break;
            const double bytes = (double)(st.steps_prefill + st.steps_decode) * (double)pl.weights_step +
                                 (double)st.kv_read_tokens * (double)pl.kv_token;
            const double hbm = bytes / dt / 1e9;
            char pct_s[32];
            snprintf(pct_s, sizeof pct_s, copy_gbs > 0 ? "%.1f%%" : "-", 100.0 * hbm / (copy_gbs > 0 ? copy_gbs : 1));
            int64_t toks = 0;
            for (int b = 0; b < B; b++) toks += res[b].n;
            /* score the same samples, teacher-forced */
            for (int b = 0; b < B; b++) {
                jobs[b].forced = res[b].tokens;
                jobs[b].n_forced = res[b].n;
            }
            double t1 = br_now_s();
            if ((rc = rollout_run(w, &o, jobs, B, scored, NULL, NULL)) != BR_OK) break;
            double ds = br_now_s() - t1;
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
            printf("%-10s %6d %12.3f %12.0f %12.0f %10lld %10lld %10lld %9.1f %6s\n", mode, B, dt, toks / dt,
                   (toks + (int64_t)B * prompt_len) / ds, (long long)toks, (long long)differ, (long long)ddiffer, hbm,
                   pct_s);
            if (jf)
                fprintf(jf, "%s{\"mode\": \"%s\", \"batch\": %d, \"seconds\": %.6f, \"gen_tokens_per_s\": %.1f, "
                            "\"score_tokens_per_s\": %.1f, \"logprobs_differing\": %lld, \"digests_differing\": %lld, "
                            "\"tokens\": %lld, \"steps\": %lld, \"kv_read_tokens\": %lld, \"weights_step_bytes\": %lld, "
                            "\"kv_token_bytes\": %lld, \"hbm_gbs\": %.2f}",
                        first ? "" : ", ", mode, B, dt, toks / dt, (toks + (int64_t)B * prompt_len) / ds,
                        (long long)differ, (long long)ddiffer, (long long)toks,
                        (long long)(st.steps_prefill + st.steps_decode), (long long)st.kv_read_tokens,
                        (long long)pl.weights_step, (long long)pl.kv_token, hbm);
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
