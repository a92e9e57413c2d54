/* `bitroll generate`: options -> driver_generate (api/driver_generate.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cli_generate.h"
#include "cli/cli_util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: bitroll generate --prompts FILE.jsonl --out FILE.h5 [options]\n"
            "       mpirun -np N bitroll generate ...   (one rank per device; same file for any N)\n"
            "\n"
            "Samples completions for every prompt and writes the rollouts file (docs/FORMAT.md): tokens,\n"
            "fp32 log-probs and logits digests that `bitroll score` reproduces bit for bit.\n"
            "\n"
            "  --model DIR             checkpoint (default: the bundled %s)\n"
            "  --random-weights CFG    instead of --model: a model of config.json CFG's shape with weights from a\n"
            "                          counter-based generator on the GPU (configs/shapes/); --weights-seed S (0)\n"
            "  --prompts FILE          JSONL, one {\"prompt\": \"text\"} or {\"prompt_ids\": [...]} per line\n"
            "  --tokenizer PATH        tokenizer.json or its directory (default: the model directory's, if any)\n"
            "  --out FILE              rollouts file to write (written atomically)\n"
            "  --n N                   samples per prompt (default 1)\n"
            "  --temperature T         >= 0; 0 = greedy (default 1.0)\n"
            "  --top-p P               in (0, 1] (default 1.0 = off)\n"
            "  --top-k K               0 = off (default 0)\n"
            "  --max-new-tokens N      (default 64)\n"
            "  --seed S                run seed of the counter-based sampler (default 0)\n"
            "  --stop-id ID            stop token, repeatable (default: the tokenizer's EOS, else the model's eos_token_id)\n"
            "  --no-stop               no stop tokens at all (only --max-new-tokens ends a sample)\n"
            "  --weight-version V      recorded in the file: the trainer step that produced the weights (default 0)\n"
            "  --no-share-prompt-kv    every sample prefills its prompt itself (default: a prompt's samples share its\n"
            "                          prefilled KV pages; the same bits either way)\n"
            CLI_COMMON_HELP
            "\n"
            "Exit: 0 ok, 2 bad input (the message names the file, line and field), 3 runtime failure.\n",
            BR_DEFAULT_MODEL);
}

enum { OPT_NOSHAREKV = 1024 }; /* generate's own, after cli_common.h's */

static const struct option GEN_OPTS[] = {
    CLI_RUN_LONG_OPTS,
    {"prompts", required_argument, 0, OPT_PROMPTS}, {"n", required_argument, 0, OPT_N},
    {"temperature", required_argument, 0, OPT_TEMP}, {"top-p", required_argument, 0, OPT_TOPP},
    {"top-k", required_argument, 0, OPT_TOPK}, {"max-new-tokens", required_argument, 0, OPT_MAXNEW},
    {"seed", required_argument, 0, OPT_SEED}, {"stop-id", required_argument, 0, OPT_STOP},
    {"no-stop", no_argument, 0, OPT_NOSTOP}, {"tokenizer", required_argument, 0, OPT_TOKENIZER},
    {"no-share-prompt-kv", no_argument, 0, OPT_NOSHAREKV}, {0, 0, 0, 0}};

void cli_generate_defaults(driver_opts *o, driver_generate_opts *g, const char *verb) {
    driver_opts_default(o, verb);
    memset(g, 0, sizeof *g);
    g->d = (rollout_defaults){1, 64, {1.0f, 1.0f, 0, 0}, NULL, 0};
}

br_status cli_generate_parse(int argc, char **argv, driver_opts *o, driver_generate_opts *g, int *help) {
    br_status rc = BR_OK;
    int c;
    *help = 0;
    optind = 0; /* full re-initialisation: the worker parses one argv per request */
    opterr = 0;
    while (rc == BR_OK && (c = getopt_long(argc, argv, "h", GEN_OPTS, NULL)) != -1) {
        int64_t v;
        int h = cli_run_opt(o, c, optarg);
        if (h == 1) continue;
        if (h == -1) { rc = BR_EINVAL; break; }
        switch (c) {
        case 'h': *help = 1; return BR_OK;
        case OPT_PROMPTS: g->prompts = optarg; break;
        case OPT_TOKENIZER: g->tokenizer = optarg; break;
        case OPT_N: if ((rc = cli_parse_int("--n", optarg, 1, ROLLOUT_MAX_N, &v)) == BR_OK) g->d.n = (int32_t)v; break;
        case OPT_TEMP: rc = cli_parse_float("--temperature", optarg, &g->d.sampling.temperature); break;
        case OPT_TOPP:
            rc = cli_parse_float("--top-p", optarg, &g->d.sampling.top_p);
            /* checked before the fp32 rounding too, so that 1.00000001 is rejected, not rounded to 1 */
            if (rc == BR_OK && !(strtod(optarg, NULL) <= 1.0))
                rc = br_fail(BR_EINVAL, "--top-p: %s: expected 0 < top_p <= 1 (1 = off)", optarg);
            break;
        case OPT_TOPK: if ((rc = cli_parse_int("--top-k", optarg, INT32_MIN, INT32_MAX, &v)) == BR_OK) g->d.sampling.top_k = (int32_t)v; break;
        case OPT_MAXNEW: if ((rc = cli_parse_int("--max-new-tokens", optarg, 1, 1 << 24, &v)) == BR_OK) g->d.max_new_tokens = (int32_t)v; break;
        case OPT_SEED: rc = cli_parse_u64("--seed", optarg, &g->d.sampling.seed); break;
        case OPT_STOP:
            if ((rc = cli_parse_int("--stop-id", optarg, 0, INT32_MAX, &v)) != BR_OK) break;
            if (g->n_stops == 64) { rc = br_fail(BR_EINVAL, "--stop-id: at most 64 stop ids"); break; }
            g->stops[g->n_stops++] = (int32_t)v;
            break;
        case OPT_NOSTOP: g->no_stop = 1; break;
        case OPT_NOSHAREKV: o->sched.no_share_prompt_kv = 1; break;
        default:
            rc = br_fail(BR_EINVAL, "unknown or incomplete option '%s' (bitroll %s --help)", argv[optind - 1], o->verb);
        }
    }
    if (rc == BR_OK && optind < argc) rc = br_fail(BR_EINVAL, "unexpected argument '%s'", argv[optind]);
    return rc;
}

br_status cli_generate_check(const driver_opts *o, const driver_generate_opts *g) {
    br_status rc = BR_OK;
    if (!g->prompts) rc = br_fail(BR_EINVAL, "--prompts FILE is required (bitroll %s --help)", o->verb);
    if (rc == BR_OK && !o->out) rc = br_fail(BR_EINVAL, "--out FILE is required (bitroll %s --help)", o->verb);
    if (rc == BR_OK && g->no_stop && g->n_stops) rc = br_fail(BR_EINVAL, "--no-stop and --stop-id contradict each other");
    if (rc == BR_OK) rc = rollout_sampling_check(&g->d.sampling, INT32_MAX);
    return rc;
}

static int generate_main_mpi(comm_world *world, int argc, char **argv) {
    driver_opts o;
    driver_generate_opts g;
    cli_generate_defaults(&o, &g, "generate");
    int help = 0;
    br_status rc = br_tuning_from_env(&o.tuning);
    if (rc == BR_OK) rc = cli_generate_parse(argc, argv, &o, &g, &help);
    if (rc == BR_OK && help) {
        if (world->rank == 0) usage(stdout);
        return 0;
    }
    if (rc == BR_OK) rc = cli_generate_check(&o, &g);
    rc = comm_agree(world, rc);
    if (rc == BR_OK) rc = cli_run_prepare(world, &o, "--prompts", g.prompts);
    if (rc == BR_OK) rc = driver_generate(world, &o, &g);
    return rc == BR_OK ? 0 : cli_run_fail(world, "generate", rc);
}

int cli_generate_main(int argc, char **argv) { return cli_with_mpi(argc, argv, generate_main_mpi); }
