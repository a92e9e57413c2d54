/* `bitroll generate`, `bitroll score`, `bitroll verify`: the rollout drivers (DESIGN 4-5).
 * Every rank runs the same code; rank 0 reads inputs, hands them to the others, gathers results in
 * sample-id order and writes the file, so a file's datasets never depend on the rank count. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#ifdef BR_HAVE_CUDA
#include "comm/comm_nccl.h"
#endif
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kern_cuda_engine.h"
#include "logging/h5log.h"
#include "policy/policy.h"
#include "policy/tokenizer/tokenizer.h"
#include "cli/cli.h"
#include "cli/cli_util.h"
#include "rollout/requests.h"
#include "rollout/scheduler.h"

#ifndef BR_DEFAULT_MODEL
#define BR_DEFAULT_MODEL "configs/models/stories260K"
#endif

/* ---------------------------------------------------------------- shared options */

typedef struct {
    const char *verb;
    const char *model;
    const char *random_weights; /* config.json of a random-weights model, instead of --model */
    uint64_t weights_seed;
    int tp;                     /* tensor-parallel degree */
    const char *out;
    const char *device;
    const char *kernels;
    rollout_sched_opts sched;
    int quiet;
    int print_config;
} run_opts;

static void run_opts_default(run_opts *o, const char *verb) {
    memset(o, 0, sizeof *o);
    o->verb = verb;
    o->model = BR_DEFAULT_MODEL;
    o->device = "cpu";
    o->kernels = "invariant";
    o->sched.max_batch_tokens = 256;
    o->sched.max_seqs = 64;
    o->sched.prefill_chunk = 64;
    o->sched.page_size = 16;
    o->sched.n_pages = 0;
    o->tp = 1;
}

/* --device cuda under MPI: rank r of a node takes GPU r (one rank per GPU); more ranks than GPUs is an error,
 * unless BITROLL_SHARE_GPUS=1 (tests of data parallelism on a one-GPU machine): then rank r takes GPU r mod n. */
static br_status bind_device(const comm_world *world, const run_opts *o) {
    if (strcmp(o->device, "cuda")) return BR_OK;
#ifdef BR_HAVE_CUDA
    const int n = kern_cuda_device_count();
    if (n == 0) return br_fail(BR_EINVAL, "--device cuda: no CUDA device is visible");
    const char *share = getenv("BITROLL_SHARE_GPUS");
    const int shared = share && !strcmp(share, "1");
    if (world->local_size > n && !shared)
        return br_fail(BR_EINVAL,
                       "--device cuda: %d ranks on this node but %d GPU%s visible (one rank per GPU; "
                       "BITROLL_SHARE_GPUS=1 lets ranks share GPUs, for tests)",
                       world->local_size, n, n == 1 ? "" : "s");
    kern_cuda_set_device(world->local_rank % n);
    comm_install_abort_hook(world);
    return BR_OK;
#else
    (void)world;
    return br_fail(BR_EINVAL, "--device cuda: this bitroll was built without CUDA (configure with -DBITROLL_CUDA=ON)");
#endif
}

/* Backend check: the CPU engine computes everything in fp32 with the fixed order of kernels/cpu, which is
 * both the `invariant` and the `fp32` contract; `standard` (library heuristics) exists only on CUDA. */
static br_status check_backend(const run_opts *o) {
    if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda"))
        return br_fail(BR_EINVAL, "--device: '%s' is not one of cpu, cuda", o->device);
    if (strcmp(o->kernels, "invariant") && strcmp(o->kernels, "fp32") && strcmp(o->kernels, "standard"))
        return br_fail(BR_EINVAL, "--kernels: '%s' is not one of invariant, fp32, standard", o->kernels);
    if (!strcmp(o->device, "cpu") && !strcmp(o->kernels, "standard"))
        return br_fail(BR_EINVAL, "--kernels standard: exists only on --device cuda (the CPU kernels are always invariant)");
    return BR_OK;
}

/* Resolved configuration, stored in every output file and printed by --print-config. */
static char *config_json(const run_opts *o, const rollout_defaults *d, const char *prompts, const char *rollouts,
                         int world) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "verb", o->verb);
    if (o->random_weights) {
        cJSON_AddStringToObject(j, "random_weights", o->random_weights);
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->weights_seed);
        cJSON_AddStringToObject(j, "weights_seed", seed);
    } else {
        cJSON_AddStringToObject(j, "model", o->model);
    }
    if (prompts) cJSON_AddStringToObject(j, "prompts", prompts);
    if (rollouts) cJSON_AddStringToObject(j, "rollouts", rollouts);
    cJSON_AddStringToObject(j, "out", o->out ? o->out : "");
    cJSON_AddStringToObject(j, "device", o->device);
    cJSON_AddStringToObject(j, "kernels", o->kernels);
    if (d) {
        cJSON_AddNumberToObject(j, "n", d->n);
        cJSON_AddNumberToObject(j, "max_new_tokens", d->max_new_tokens);
        cJSON_AddNumberToObject(j, "temperature", d->sampling.temperature);
        cJSON_AddNumberToObject(j, "top_p", d->sampling.top_p);
        cJSON_AddNumberToObject(j, "top_k", d->sampling.top_k);
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)d->sampling.seed);
        cJSON_AddStringToObject(j, "seed", seed);
        cJSON *stops = cJSON_AddArrayToObject(j, "stop_ids");
        for (int i = 0; i < d->n_stop_ids; i++) cJSON_AddItemToArray(stops, cJSON_CreateNumber(d->stop_ids[i]));
    }
    cJSON_AddNumberToObject(j, "max_batch_tokens", o->sched.max_batch_tokens);
    cJSON_AddNumberToObject(j, "max_seqs", o->sched.max_seqs);
    cJSON_AddNumberToObject(j, "prefill_chunk", o->sched.prefill_chunk);
    cJSON_AddNumberToObject(j, "page_size", o->sched.page_size);
    cJSON_AddNumberToObject(j, "tp", o->tp);
    cJSON_AddNumberToObject(j, "world_size", world);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static void provenance(h5log_provenance *p, const run_opts *o, const policy_weights *w, const char *cfg, int world) {
    static char libs[256], device[300];
    snprintf(libs, sizeof libs, "cJSON %s", cJSON_Version());
    memset(p, 0, sizeof *p);
    p->engine_version = BR_VERSION;
    p->git_rev = BR_GIT_REV;
    p->compiler = BR_COMPILER;
    p->model_dir = o->random_weights ? o->random_weights : o->model;
    p->model_fingerprint = w->fingerprint_hex;
    p->kernel_mode = o->kernels;
    snprintf(device, sizeof device, "%s", o->device);
#ifdef BR_HAVE_CUDA
    if (!strcmp(o->device, "cuda")) {
        char name[256];
        kern_cuda_device_name(0, name, sizeof name);
        snprintf(device, sizeof device, "cuda: %s", name);
    }
#endif
    p->device_names = device;
    p->config_json = cfg;
    p->lib_versions = libs;
    p->world_size = world;
}

typedef struct {
    const comm_world *world;
    const char *verb;
    int quiet;
    double t0, last;
} progress_ctx;

/* Rank 0 reports its own share (every rank runs an equal round-robin share). */
static void progress_cb(void *ctx, int64_t done, int64_t total, int64_t tokens) {
    progress_ctx *p = ctx;
    if (p->quiet || p->world->rank != 0) return;
    double now = cli_now();
    if (done < total && now - p->last < 1.0) return;
    p->last = now;
    fprintf(stderr, "[bitroll %s] rank 0: %lld/%lld samples, %lld tokens, %.0f tokens/s\n", p->verb, (long long)done,
            (long long)total, (long long)tokens, tokens / (now - p->t0 + 1e-9));
}

/* Results travel as: sample_id i64, n i32, finish i8, then n tokens, n logprobs, n digests. */
static void pack_results(comm_buf *b, const rollout_result *r, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        comm_buf_put(b, &r[i].sample_id, 8);
        comm_buf_put(b, &r[i].n, 4);
        comm_buf_put(b, &r[i].finish, 1);
        comm_buf_put(b, r[i].tokens, 4 * (size_t)r[i].n);
        comm_buf_put(b, r[i].logprobs, 4 * (size_t)r[i].n);
        comm_buf_put(b, r[i].digests, 8 * (size_t)r[i].n);
    }
}

/* Unpacks gathered results into by_sid[sample_id] (size n_samples), each slot filled exactly once. */
static br_status unpack_results(comm_buf *b, rollout_result *by_sid, int64_t n_samples) {
    int64_t got = 0;
    while (b->rd < b->len) {
        rollout_result r;
        memset(&r, 0, sizeof r);
        if (comm_buf_get(b, &r.sample_id, 8) || comm_buf_get(b, &r.n, 4) || comm_buf_get(b, &r.finish, 1)) break;
        if (r.sample_id < 0 || r.sample_id >= n_samples || by_sid[r.sample_id].tokens || r.n < 0)
            return br_fail(BR_ERUNTIME, "gather: bad or duplicate result for sample %lld", (long long)r.sample_id);
        r.tokens = malloc(4 * (size_t)r.n + 1);
        r.logprobs = malloc(4 * (size_t)r.n + 1);
        r.digests = malloc(8 * (size_t)r.n + 1);
        if (!r.tokens || !r.logprobs || !r.digests) {
            rollout_result_free(&r);
            return br_fail(BR_ENOMEM, "gather: out of memory");
        }
        comm_buf_get(b, r.tokens, 4 * (size_t)r.n);
        comm_buf_get(b, r.logprobs, 4 * (size_t)r.n);
        comm_buf_get(b, r.digests, 8 * (size_t)r.n);
        by_sid[r.sample_id] = r;
        got++;
    }
    if (b->failed || got != n_samples)
        return br_fail(BR_ERUNTIME, "gather: %lld of %lld results arrived intact", (long long)got, (long long)n_samples);
    return BR_OK;
}

#ifdef BR_HAVE_CUDA
/* --tp on --device cuda: the engine's row-parallel partials meet in an all-gather of the TP group (NCCL, or MPI
 * through host buffers: comm_nccl), and every step's collectives are agreed on before its results are used. */
static br_status tp_dev_allgather(void *ctx, const void *send, size_t bytes, void *recv, void *stream) {
    return comm_nccl_allgather((comm_nccl *)ctx, COMM_NCCL_TP, send, bytes, recv, (cudaStream_t)stream);
}
static br_status tp_dev_wait(void *ctx, void *stream, br_status st) {
    return comm_nccl_wait((comm_nccl *)ctx, COMM_NCCL_TP, (cudaStream_t)stream, st);
}

/* --device cuda on several ranks without --tp: rank 0's engine fills its device weights and broadcasts them, every
 * rank's copy is fingerprinted against rank 0's (BITROLL_WEIGHTS_BCAST=0: every rank converts its own host copy). */
typedef struct {
    const comm_world *w;
    comm_nccl *c;
} wb_ctx;
static br_status wb_bcast(void *ctx, void *dev, size_t bytes) {
    const wb_ctx *x = ctx;
    return comm_nccl_wait(x->c, COMM_NCCL_WORLD, NULL, comm_nccl_bcast(x->c, COMM_NCCL_WORLD, dev, bytes, 0, NULL));
}
static br_status wb_check(void *ctx, const void *dev, size_t bytes) {
    return comm_nccl_check_fingerprint(((const wb_ctx *)ctx)->c, dev, bytes, 0, NULL, NULL, NULL);
}
static br_status wb_agree(void *ctx, br_status st) { return comm_agree(((const wb_ctx *)ctx)->w, st); }
#endif

/* Runs this rank's share of jobs, gathers every result on rank 0 into by_sid (n_samples, indexed by sample id). */
static br_status run_and_gather(const comm_world *world, const policy_weights *w, const run_opts *o,
                                const rollout_job *all_jobs, int64_t n_jobs, rollout_result **by_sid_out) {
    *by_sid_out = NULL;
    br_status rc = BR_OK;
    int64_t n_mine = 0;
    for (int64_t i = 0; i < n_jobs; i++) n_mine += comm_owner(world, i) == world->group;
    rollout_job *mine = malloc((size_t)(n_mine + 1) * sizeof *mine);
    rollout_result *res = calloc((size_t)(n_mine + 1), sizeof *res);
    comm_buf b = {0};
    void *all = NULL;
    size_t all_len = 0;
#ifdef BR_HAVE_CUDA
    comm_nccl *nc = NULL;
#endif
    if (!mine || !res) rc = br_fail(BR_ENOMEM, "out of memory for %lld jobs", (long long)n_mine);
    if (rc == BR_OK) {
        int64_t k = 0;
        for (int64_t i = 0; i < n_jobs; i++)
            if (comm_owner(world, i) == world->group) mine[k++] = all_jobs[i];
        progress_ctx pc = {world, o->verb, o->quiet, cli_now(), 0};
        /* every rank of a tensor-parallel group runs the group's jobs; their chunk sums meet in comm_tp_chunk_sum
         * (CPU) or in the group's device all-gather (CUDA) */
        policy_tp tp = {world->tp_rank, world->tp_size, comm_tp_chunk_sum, (void *)world, NULL, NULL, NULL};
        rollout_sched_opts so = o->sched;
#ifdef BR_HAVE_CUDA
        const char *wbe = getenv("BITROLL_WEIGHTS_BCAST");
        const int cuda = !strcmp(o->device, "cuda");
        const int bcast = cuda && world->size > 1 && world->tp_size == 1 && !(wbe && !strcmp(wbe, "0"));
        if (cuda && (world->tp_size > 1 || bcast)) {
            rc = comm_nccl_init(world, &nc); /* collective: every rank has the same --device and --tp */
            if (rc == BR_OK && world->rank == 0 && !o->quiet)
                fprintf(stderr, "bitroll: %s with %s\n",
                        world->tp_size > 1 ? "--tp on the GPU: row-parallel partials all-gathered"
                                           : "device weights broadcast from rank 0",
                        comm_nccl_handle_backend(nc));
        }
        tp.dev_allgather = tp_dev_allgather;
        tp.dev_wait = tp_dev_wait;
        tp.dev_ctx = nc;
        wb_ctx wbc = {world, nc};
        const rollout_weights_bcast wb = {world->rank == 0, wb_bcast, wb_check, wb_agree, &wbc};
        if (bcast && rc == BR_OK) so.wb = &wb;
#endif
        rollout_device_parse(o->device, &so.device);
        kern_mode_parse(o->kernels, &so.mode);
        so.tp = &tp;
        if (rc == BR_OK) rc = rollout_run(w, &so, mine, n_mine, res, progress_cb, &pc);
        /* Fault injection for the tests: one rank fails after its work, the others must stop with its reason. */
        const char *inject = getenv("BITROLL_INJECT_FAILURE_RANK");
        if (rc == BR_OK && inject && atoi(inject) == world->rank)
            rc = br_fail(BR_ERUNTIME, "injected failure (BITROLL_INJECT_FAILURE_RANK=%s)", inject);
    }
#ifdef BR_HAVE_CUDA
    if (nc) {
        br_status s2 = comm_nccl_destroy(nc);
        if (rc == BR_OK) rc = s2;
    }
#endif
    rc = comm_agree(world, rc);
    if (rc != BR_OK) goto cleanup;
    if (world->tp_rank == 0) pack_results(&b, res, n_mine); /* one copy per group: its first rank's */
    if (b.failed) rc = br_fail(BR_ENOMEM, "packing results: out of memory");
    rc = comm_agree(world, rc);
    if (rc != BR_OK) goto cleanup;
    comm_gather_bytes(world, b.data, b.len, &all, &all_len);
    if (world->rank == 0) {
        rollout_result *by_sid = calloc((size_t)(n_jobs + 1), sizeof *by_sid);
        comm_buf g = {all, all_len, all_len, 0, 0};
        if (!by_sid) rc = br_fail(BR_ENOMEM, "out of memory");
        else rc = unpack_results(&g, by_sid, n_jobs);
        if (rc != BR_OK && by_sid) {
            for (int64_t i = 0; i < n_jobs; i++) rollout_result_free(&by_sid[i]);
            free(by_sid);
            by_sid = NULL;
        }
        *by_sid_out = by_sid;
    }
cleanup:
    if (res)
        for (int64_t i = 0; i < n_mine; i++) rollout_result_free(&res[i]);
    free(res);
    free(mine);
    free(all);
    comm_buf_free(&b);
    return rc;
}

/* Loads the weights on every rank and checks that every rank holds the same fingerprint. */
static br_status load_weights(const comm_world *world, const run_opts *o, policy_weights **w) {
    const char *dir = o->random_weights ? o->random_weights : o->model;
    br_status rc = o->random_weights ? policy_weights_random(o->random_weights, o->weights_seed, w)
                                     : policy_weights_load(dir, w);
    if (rc == BR_OK) rc = policy_tp_check(&(*w)->cfg, o->tp);
    rc = comm_agree(world, rc);
    if (rc != BR_OK) return rc;
    uint64_t fp0 = (*w)->fingerprint;
    comm_bcast_u64(world, &fp0);
    rc = fp0 == (*w)->fingerprint
             ? BR_OK
             : br_fail(BR_EINVAL, "%s: weights fingerprint %s differs from rank 0's %016llx", dir,
                       (*w)->fingerprint_hex, (unsigned long long)fp0);
    return comm_agree(world, rc);
}

/* The tokenizer: --tokenizer PATH, else the model directory's tokenizer.json when it has one (else none). */
static br_status load_tokenizer(const char *model, const char *path, const policy_weights *w, tok_tokenizer **tok) {
    *tok = NULL;
    char buf[4096];
    if (!path) {
        snprintf(buf, sizeof buf, "%s/tokenizer.json", model);
        FILE *f = fopen(buf, "rb");
        if (!f) return BR_OK;
        fclose(f);
        path = buf;
    }
    br_status rc = tok_load(path, tok);
    if (rc != BR_OK) return br_fail_ctx(rc, "loading tokenizer %s", path);
    if (tok_vocab_size(*tok) > w->cfg.vocab) {
        rc = br_fail(BR_EINVAL, "tokenizer %s has %d tokens, more than the model's vocabulary %d", path,
                     tok_vocab_size(*tok), w->cfg.vocab);
        tok_free(*tok);
        *tok = NULL;
    }
    return rc;
}

/* prompt_text / completion_text: the ids decoded with special tokens skipped (docs/FORMAT.md). */
static br_status add_texts(h5log_rollouts *r, const tok_tokenizer *tok) {
    br_status rc = BR_OK;
    r->prompt_text = calloc((size_t)r->n + 1, sizeof(char *));
    r->completion_text = calloc((size_t)r->n + 1, sizeof(char *));
    if (!r->prompt_text || !r->completion_text) return br_fail(BR_ENOMEM, "out of memory for texts");
    for (int64_t i = 0; rc == BR_OK && i < r->n; i++) {
        const int64_t pa = r->prompt_offsets[i], ca = r->completion_offsets[i];
        size_t len;
        rc = tok_decode(tok, r->prompt_tokens + pa, (size_t)(r->prompt_offsets[i + 1] - pa), 1, &r->prompt_text[i],
                        &len);
        if (rc == BR_OK)
            rc = tok_decode(tok, r->completion_tokens + ca, (size_t)(r->completion_offsets[i + 1] - ca), 1,
                            &r->completion_text[i], &len);
    }
    return rc;
}

/* ---------------------------------------------------------------- generate */

static void generate_usage(FILE *f) {
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
            "  --device cpu|cuda       (default cpu)\n"
            "  --kernels MODE          invariant|fp32|standard (default invariant)\n"
            "  --max-batch-tokens N    tokens per forward step (default 256)\n"
            "  --max-seqs N            sequences in flight per rank (default 64)\n"
            "  --prefill-chunk N       prompt tokens per sequence per step (default 64)\n"
            "  --page-size N           KV cache page size in tokens (default 16)\n"
            "  --tp N                  tensor parallelism over groups of N ranks (same bits for every N)\n"
            "  --print-config          print the resolved configuration (JSON) and continue\n"
            "  --quiet                 no progress on stderr\n"
            "  -h, --help              this help\n"
            "\n"
            "Exit: 0 ok, 2 bad input (the message names the file, line and field), 3 runtime failure.\n",
            BR_DEFAULT_MODEL);
}

enum {
    OPT_MODEL = 256, OPT_PROMPTS, OPT_OUT, OPT_N, OPT_TEMP, OPT_TOPP, OPT_TOPK, OPT_MAXNEW, OPT_SEED, OPT_STOP,
    OPT_NOSTOP, OPT_DEVICE, OPT_KERNELS, OPT_MBT, OPT_MAXSEQS, OPT_CHUNK, OPT_PAGE, OPT_PRINTCFG, OPT_QUIET,
    OPT_ROLLOUTS, OPT_TOKENIZER, OPT_RANDOM, OPT_WSEED, OPT_TP
};

/* Options common to generate and score; returns 1 if handled, 0 if not, -1 on a bad value. */
static int common_opt(run_opts *o, int c, const char *arg) {
    int64_t v;
    br_status rc = BR_OK;
    switch (c) {
    case OPT_MODEL: o->model = arg; return 1;
    case OPT_RANDOM: o->random_weights = arg; return 1;
    case OPT_WSEED: rc = cli_parse_u64("--weights-seed", arg, &o->weights_seed); break;
    case OPT_TP: rc = cli_parse_int("--tp", arg, 1, 1024, &v); if (rc == BR_OK) o->tp = (int)v; break;
    case OPT_OUT: o->out = arg; return 1;
    case OPT_DEVICE: o->device = arg; return 1;
    case OPT_KERNELS: o->kernels = arg; return 1;
    case OPT_QUIET: o->quiet = 1; return 1;
    case OPT_PRINTCFG: o->print_config = 1; return 1;
    case OPT_MBT: rc = cli_parse_int("--max-batch-tokens", arg, 1, 1 << 24, &v); if (rc == BR_OK) o->sched.max_batch_tokens = (int)v; break;
    case OPT_MAXSEQS: rc = cli_parse_int("--max-seqs", arg, 1, 1 << 20, &v); if (rc == BR_OK) o->sched.max_seqs = (int)v; break;
    case OPT_CHUNK: rc = cli_parse_int("--prefill-chunk", arg, 1, 1 << 24, &v); if (rc == BR_OK) o->sched.prefill_chunk = (int)v; break;
    case OPT_PAGE: rc = cli_parse_int("--page-size", arg, 1, 1 << 16, &v); if (rc == BR_OK) o->sched.page_size = (int)v; break;
    default: return 0;
    }
    return rc == BR_OK ? 1 : -1;
}

#define COMMON_LONG_OPTS                                                                                   \
    {"model", required_argument, 0, OPT_MODEL}, {"out", required_argument, 0, OPT_OUT},                    \
        {"device", required_argument, 0, OPT_DEVICE}, {"kernels", required_argument, 0, OPT_KERNELS},      \
        {"max-batch-tokens", required_argument, 0, OPT_MBT}, {"max-seqs", required_argument, 0, OPT_MAXSEQS}, \
        {"prefill-chunk", required_argument, 0, OPT_CHUNK}, {"page-size", required_argument, 0, OPT_PAGE}, \
        {"print-config", no_argument, 0, OPT_PRINTCFG}, {"quiet", no_argument, 0, OPT_QUIET},              \
        {"random-weights", required_argument, 0, OPT_RANDOM}, {"weights-seed", required_argument, 0, OPT_WSEED}, \
        {"tp", required_argument, 0, OPT_TP},                                                              \
        {"help", no_argument, 0, 'h'}

/* Prints the failure once (rank 0) and maps it to the exit code. */
static int fail_exit(const comm_world *w, const char *verb, br_status rc) {
    if (w->rank == 0) fprintf(stderr, "bitroll %s: %s\n", verb, br_last_error());
    return br_exit_code(rc);
}

static int generate_main_mpi(comm_world *world, int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_LONG_OPTS,
        {"prompts", required_argument, 0, OPT_PROMPTS}, {"n", required_argument, 0, OPT_N},
        {"temperature", required_argument, 0, OPT_TEMP}, {"top-p", required_argument, 0, OPT_TOPP},
        {"top-k", required_argument, 0, OPT_TOPK}, {"max-new-tokens", required_argument, 0, OPT_MAXNEW},
        {"seed", required_argument, 0, OPT_SEED}, {"stop-id", required_argument, 0, OPT_STOP},
        {"no-stop", no_argument, 0, OPT_NOSTOP}, {"tokenizer", required_argument, 0, OPT_TOKENIZER}, {0, 0, 0, 0}};
    run_opts o;
    run_opts_default(&o, "generate");
    const char *prompts = NULL, *tokenizer = NULL;
    rollout_defaults d = {1, 64, {1.0f, 1.0f, 0, 0}, NULL, 0};
    int32_t stops[64];
    int n_stops = 0, no_stop = 0, user_stops = 0;
    br_status rc = BR_OK;
    int c;
    optind = 1;
    opterr = 0;
    while (rc == BR_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int64_t v;
        int h = common_opt(&o, c, optarg);
        if (h == 1) continue;
        if (h == -1) { rc = BR_EINVAL; break; }
        switch (c) {
        case 'h': if (world->rank == 0) generate_usage(stdout); return 0;
        case OPT_PROMPTS: prompts = optarg; break;
        case OPT_TOKENIZER: tokenizer = optarg; break;
        case OPT_N: if ((rc = cli_parse_int("--n", optarg, 1, 1 << 24, &v)) == BR_OK) d.n = (int32_t)v; break;
        case OPT_TEMP: rc = cli_parse_float("--temperature", optarg, &d.sampling.temperature); break;
        case OPT_TOPP: rc = cli_parse_float("--top-p", optarg, &d.sampling.top_p); break;
        case OPT_TOPK: if ((rc = cli_parse_int("--top-k", optarg, INT32_MIN, INT32_MAX, &v)) == BR_OK) d.sampling.top_k = (int32_t)v; break;
        case OPT_MAXNEW: if ((rc = cli_parse_int("--max-new-tokens", optarg, 1, 1 << 24, &v)) == BR_OK) d.max_new_tokens = (int32_t)v; break;
        case OPT_SEED: rc = cli_parse_u64("--seed", optarg, &d.sampling.seed); break;
        case OPT_STOP:
            if ((rc = cli_parse_int("--stop-id", optarg, 0, INT32_MAX, &v)) != BR_OK) break;
            if (n_stops == 64) { rc = br_fail(BR_EINVAL, "--stop-id: at most 64 stop ids"); break; }
            stops[n_stops++] = (int32_t)v;
            user_stops = 1;
            break;
        case OPT_NOSTOP: no_stop = 1; break;
        default:
            rc = br_fail(BR_EINVAL, "unknown or incomplete option '%s' (bitroll generate --help)", argv[optind - 1]);
        }
    }
    if (rc == BR_OK && optind < argc) rc = br_fail(BR_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (rc == BR_OK && !prompts) rc = br_fail(BR_EINVAL, "--prompts FILE is required (bitroll generate --help)");
    if (rc == BR_OK && !o.out) rc = br_fail(BR_EINVAL, "--out FILE is required (bitroll generate --help)");
    if (rc == BR_OK && no_stop && user_stops) rc = br_fail(BR_EINVAL, "--no-stop and --stop-id contradict each other");
    if (rc == BR_OK) rc = check_backend(&o);
    if (rc == BR_OK) rc = bind_device(world, &o);
    if (rc == BR_OK) rc = rollout_sampling_check(&d.sampling, INT32_MAX);
    if (rc == BR_OK && world->rank == 0) rc = cli_check_writable(o.out);
    rc = comm_agree(world, rc);
    if (rc == BR_OK) rc = comm_agree(world, comm_tp_split(world, o.tp));
    if (rc != BR_OK) return fail_exit(world, "generate", rc);

    policy_weights *w = NULL;
    tok_tokenizer *tok = NULL;
    rollout_requests *req = NULL;
    rollout_job *jobs = NULL;
    rollout_result *by_sid = NULL;
    char *text = NULL, *cfg = NULL;
    size_t text_len = 0;
    h5log_rollouts out = {0};

    if ((rc = load_weights(world, &o, &w)) != BR_OK) goto done;
    if (!o.random_weights && (rc = comm_agree(world, load_tokenizer(o.model, tokenizer, w, &tok))) != BR_OK) goto done;
    if (!no_stop && !user_stops) {
        int eos = tok && tok_eos_id(tok) >= 0 ? tok_eos_id(tok) : w->cfg.eos_id;
        if (eos >= 0) stops[n_stops++] = eos;
    }
    d.stop_ids = stops;
    d.n_stop_ids = n_stops;

    /* rank 0 reads the prompts; every rank parses the same bytes, so every rank holds the same jobs */
    if (world->rank == 0) rc = br_read_file(prompts, &text, &text_len);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;
    comm_bcast_bytes(world, (void **)&text, &text_len);
    rc = rollout_requests_parse(text, text_len, prompts, &d, w->cfg.vocab, w->cfg.max_pos, &req);
    for (int p = 0; rc == BR_OK && p < req->n_prompts; p++) {
        rollout_prompt *pr = &req->prompts[p];
        if (pr->ids) continue;
        if (!tok) {
            rc = br_fail(BR_EINVAL, "%s: line %d: \"prompt\" text needs a tokenizer: %s has no tokenizer.json "
                                    "(pass --tokenizer PATH or use \"prompt_ids\")",
                         prompts, pr->line, o.model);
            break;
        }
        /* the tokenizer's special tokens (BOS) are added, as HF's tokenizer(text) does */
        int32_t *ids = NULL;
        size_t n_ids = 0;
        rc = tok_encode(tok, pr->text, strlen(pr->text), 1, &ids, &n_ids);
        if (rc != BR_OK) rc = br_fail_ctx(rc, "%s: line %d: field 'prompt'", prompts, pr->line);
        else rc = rollout_requests_set_prompt_ids(req, p, ids, (int)n_ids);
        free(ids);
    }
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;

    cfg = config_json(&o, &d, prompts, NULL, world->size);
    if (o.print_config && world->rank == 0) printf("%s\n", cfg);

    jobs = calloc((size_t)req->n_samples + 1, sizeof *jobs);
    if (!jobs) { rc = br_fail(BR_ENOMEM, "out of memory"); goto done; }
    for (int p = 0; p < req->n_prompts; p++) {
        const rollout_prompt *pr = &req->prompts[p];
        for (int32_t s = 0; s < pr->n; s++) {
            rollout_job *j = &jobs[pr->first_sample_id + s];
            j->sample_id = pr->first_sample_id + s;
            j->prompt = pr->ids;
            j->prompt_len = pr->n_ids;
            j->max_new = pr->max_new_tokens;
            j->sampling = pr->sampling;
            j->stop_ids = pr->stop_ids;
            j->n_stop = pr->n_stop_ids;
        }
    }
    double t0 = cli_now();
    if ((rc = run_and_gather(world, w, &o, jobs, req->n_samples, &by_sid)) != BR_OK) goto done;

    if (world->rank == 0) {
        const int64_t n = req->n_samples;
        int64_t P = 0, T = 0;
        for (int64_t i = 0; i < n; i++) {
            P += jobs[i].prompt_len;
            T += by_sid[i].n;
        }
        out.n = n;
        out.sample_id = malloc(8 * (size_t)n + 8);
        out.prompt_index = malloc(8 * (size_t)n + 8);
        out.sample_index = malloc(4 * (size_t)n + 4);
        out.prompt_offsets = malloc(8 * (size_t)n + 8);
        out.prompt_tokens = malloc(4 * (size_t)P + 4);
        out.completion_offsets = malloc(8 * (size_t)n + 8);
        out.completion_tokens = malloc(4 * (size_t)T + 4);
        out.logprobs = malloc(4 * (size_t)T + 4);
        out.logits_digest = malloc(8 * (size_t)T + 8);
        out.finish_reason = malloc((size_t)n + 1);
        out.temperature = malloc(4 * (size_t)n + 4);
        out.top_p = malloc(4 * (size_t)n + 4);
        out.top_k = malloc(4 * (size_t)n + 4);
        out.seed = malloc(8 * (size_t)n + 8);
        if (!out.sample_id || !out.prompt_index || !out.sample_index || !out.prompt_offsets || !out.prompt_tokens ||
            !out.completion_offsets || !out.completion_tokens || !out.logprobs || !out.logits_digest ||
            !out.finish_reason || !out.temperature || !out.top_p || !out.top_k || !out.seed)
            rc = br_fail(BR_ENOMEM, "out of memory assembling %lld samples", (long long)n);
        int64_t po = 0, co = 0, tokens = 0;
        for (int p = 0; rc == BR_OK && p < req->n_prompts; p++)
            for (int32_t s = 0; s < req->prompts[p].n; s++) {
                int64_t i = req->prompts[p].first_sample_id + s;
                const rollout_job *j = &jobs[i];
                const rollout_result *r = &by_sid[i];
                out.sample_id[i] = i;
                out.prompt_index[i] = p;
                out.sample_index[i] = s;
                out.prompt_offsets[i] = po;
                memcpy(out.prompt_tokens + po, j->prompt, 4 * (size_t)j->prompt_len);
                po += j->prompt_len;
                out.completion_offsets[i] = co;
                memcpy(out.completion_tokens + co, r->tokens, 4 * (size_t)r->n);
                memcpy(out.logprobs + co, r->logprobs, 4 * (size_t)r->n);
                memcpy(out.logits_digest + co, r->digests, 8 * (size_t)r->n);
                co += r->n;
                tokens += r->n;
                out.finish_reason[i] = r->finish;
                out.temperature[i] = j->sampling.temperature;
                out.top_p[i] = j->sampling.top_p;
                out.top_k[i] = j->sampling.top_k;
                out.seed[i] = j->sampling.seed;
            }
        if (rc == BR_OK) {
            out.prompt_offsets[n] = po;
            out.completion_offsets[n] = co;
            if (tok) rc = add_texts(&out, tok);
        }
        if (rc == BR_OK) {
            h5log_provenance prov;
            provenance(&prov, &o, w, cfg, world->size);
            rc = h5log_rollouts_write(o.out, &out, &prov);
        }
        if (rc == BR_OK && !o.quiet) {
            double dt = cli_now() - t0;
            fprintf(stderr, "[bitroll generate] wrote %s: %lld samples, %lld completion tokens, %.1f s, %.0f tokens/s (%d rank%s)\n",
                    o.out, (long long)n, (long long)tokens, dt, tokens / (dt + 1e-9), world->size,
                    world->size > 1 ? "s" : "");
        }
    }
    rc = comm_agree(world, rc);

done:
    if (by_sid && req)
        for (int64_t i = 0; i < req->n_samples; i++) rollout_result_free(&by_sid[i]);
    free(by_sid);
    free(jobs);
    h5log_rollouts_free(&out);
    rollout_requests_free(req);
    tok_free(tok);
    policy_weights_free(w);
    free(text);
    free(cfg);
    return rc == BR_OK ? 0 : fail_exit(world, "generate", rc);
}

/* ---------------------------------------------------------------- score */

static void score_usage(FILE *f) {
    fprintf(f,
            "usage: bitroll score --rollouts FILE.h5 --out SCORES.h5 [options]\n"
            "       mpirun -np N bitroll score ...\n"
            "\n"
            "Recomputes, teacher-forced, the log-prob and logits digest of every completion token of a rollouts\n"
            "file, packing sequences into batches of its own shape, and writes a scores file (docs/FORMAT.md).\n"
            "The checkpoint's fingerprint must equal the one the rollouts file records.\n"
            "\n"
            "  --model DIR             checkpoint (default: the bundled %s)\n"
            "  --random-weights CFG    instead of --model (the same CFG and --weights-seed as generate)\n"
            "  --rollouts FILE         rollouts file written by bitroll generate\n"
            "  --out FILE              scores file to write (written atomically)\n"
            "  --device cpu|cuda       (default cpu)\n"
            "  --kernels MODE          invariant|fp32|standard (default invariant)\n"
            "  --max-batch-tokens N    tokens per forward step (default 256)\n"
            "  --max-seqs N            sequences in flight per rank (default 64)\n"
            "  --prefill-chunk N       tokens per sequence per step (default 64)\n"
            "  --page-size N           KV cache page size in tokens (default 16)\n"
            "  --tp N                  tensor parallelism over groups of N ranks (same bits for every N)\n"
            "  --print-config          print the resolved configuration (JSON) and continue\n"
            "  --quiet                 no progress on stderr\n"
            "  -h, --help              this help\n"
            "\n"
            "Exit: 0 ok, 2 bad input (wrong model, unreadable or incomplete file), 3 runtime failure.\n",
            BR_DEFAULT_MODEL);
}

/* What rank 0 sends the others: n, then per sample in sample-id order (temperature, prompt_len, completion_len,
 * prompt ids, completion ids). */
static void pack_rollouts(comm_buf *b, const h5log_rollouts *r) {
    comm_buf_put(b, &r->n, 8);
    for (int64_t i = 0; i < r->n; i++) {
        int32_t lp = (int32_t)(r->prompt_offsets[i + 1] - r->prompt_offsets[i]);
        int32_t lc = (int32_t)(r->completion_offsets[i + 1] - r->completion_offsets[i]);
        comm_buf_put(b, &r->temperature[i], 4);
        comm_buf_put(b, &lp, 4);
        comm_buf_put(b, &lc, 4);
        comm_buf_put(b, r->prompt_tokens + r->prompt_offsets[i], 4 * (size_t)lp);
        comm_buf_put(b, r->completion_tokens + r->completion_offsets[i], 4 * (size_t)lc);
    }
}

/* Builds one job per sample pointing into the received buffer. Samples with an empty completion have nothing
 * to score and get no job (their row in the scores file is empty). */
static br_status unpack_jobs(comm_buf *b, rollout_job **jobs_out, int64_t *n_jobs) {
    int64_t n = 0;
    if (comm_buf_get(b, &n, 8) || n < 0) return br_fail(BR_ERUNTIME, "score: bad work message");
    rollout_job *jobs = calloc((size_t)n + 1, sizeof *jobs);
    if (!jobs) return br_fail(BR_ENOMEM, "score: out of memory for %lld samples", (long long)n);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        float temp;
        int32_t lp, lc;
        if (comm_buf_get(b, &temp, 4) || comm_buf_get(b, &lp, 4) ||
            comm_buf_get(b, &lc, 4) || b->rd + 4 * ((size_t)lp + (size_t)lc) > b->len)
            break;
        const int32_t *pt = (const int32_t *)(b->data + b->rd);
        b->rd += 4 * (size_t)lp;
        const int32_t *ct = (const int32_t *)(b->data + b->rd);
        b->rd += 4 * (size_t)lc;
        if (lc == 0) continue;
        rollout_job *j = &jobs[k];
        j->sample_id = k++; /* results are gathered by job index (score draws no noise, so the id is free) */
        j->prompt = pt;
        j->prompt_len = lp;
        j->forced = ct;
        j->n_forced = lc;
        j->sampling.temperature = temp;
        j->sampling.top_p = 1.0f;
    }
    if (b->failed) {
        free(jobs);
        return br_fail(BR_ERUNTIME, "score: truncated work message");
    }
    *jobs_out = jobs;
    *n_jobs = k;
    return BR_OK;
}

static int score_main_mpi(comm_world *world, int argc, char **argv) {
    static const struct option opts[] = {COMMON_LONG_OPTS, {"rollouts", required_argument, 0, OPT_ROLLOUTS}, {0, 0, 0, 0}};
    run_opts o;
    run_opts_default(&o, "score");
    const char *rollouts = NULL;
    br_status rc = BR_OK;
    int c;
    optind = 1;
    opterr = 0;
    while (rc == BR_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int h = common_opt(&o, c, optarg);
        if (h == 1) continue;
        if (h == -1) { rc = BR_EINVAL; break; }
        switch (c) {
        case 'h': if (world->rank == 0) score_usage(stdout); return 0;
        case OPT_ROLLOUTS: rollouts = optarg; break;
        default: rc = br_fail(BR_EINVAL, "unknown or incomplete option '%s' (bitroll score --help)", argv[optind - 1]);
        }
    }
    if (rc == BR_OK && optind < argc) rc = br_fail(BR_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (rc == BR_OK && !rollouts) rc = br_fail(BR_EINVAL, "--rollouts FILE is required (bitroll score --help)");
    if (rc == BR_OK && !o.out) rc = br_fail(BR_EINVAL, "--out FILE is required (bitroll score --help)");
    if (rc == BR_OK) rc = check_backend(&o);
    if (rc == BR_OK) rc = bind_device(world, &o);
    if (rc == BR_OK && world->rank == 0) rc = cli_check_writable(o.out);
    rc = comm_agree(world, rc);
    if (rc == BR_OK) rc = comm_agree(world, comm_tp_split(world, o.tp));
    if (rc != BR_OK) return fail_exit(world, "score", rc);

    policy_weights *w = NULL;
    h5log_rollouts r = {0};
    h5log_meta meta = {0};
    h5log_scores out = {0};
    comm_buf work = {0};
    rollout_job *jobs = NULL;
    int64_t n_jobs = 0;
    rollout_result *by_row = NULL;
    char *cfg = NULL;

    if ((rc = load_weights(world, &o, &w)) != BR_OK) goto done;
    if (world->rank == 0) {
        rc = h5log_rollouts_read(rollouts, &r, &meta);
        if (rc == BR_OK && strcmp(meta.model_fingerprint ? meta.model_fingerprint : "", w->fingerprint_hex))
            rc = br_fail(BR_EINVAL,
                         "%s was generated by a model with fingerprint %s (%s), but --model %s has fingerprint %s",
                         rollouts, meta.model_fingerprint ? meta.model_fingerprint : "(none)",
                         meta.model_dir ? meta.model_dir : "?", o.model, w->fingerprint_hex);
        if (rc == BR_OK) {
            pack_rollouts(&work, &r);
            if (work.failed) rc = br_fail(BR_ENOMEM, "score: out of memory");
        }
    }
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;
    {
        void *buf = work.data;
        size_t len = work.len;
        comm_bcast_bytes(world, &buf, &len);
        work.data = buf;
        work.len = work.cap = len;
        work.rd = 0;
    }
    rc = unpack_jobs(&work, &jobs, &n_jobs);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;
    cfg = config_json(&o, NULL, NULL, rollouts, world->size);
    if (o.print_config && world->rank == 0) printf("%s\n", cfg);

    double t0 = cli_now();
    if ((rc = run_and_gather(world, w, &o, jobs, n_jobs, &by_row)) != BR_OK) goto done;

    if (world->rank == 0) {
        int64_t T = r.completion_offsets[r.n];
        out.n = r.n;
        out.sample_id = malloc(8 * (size_t)r.n + 8);
        out.completion_offsets = malloc(8 * (size_t)r.n + 8);
        out.logprobs = malloc(4 * (size_t)T + 4);
        out.logits_digest = malloc(8 * (size_t)T + 8);
        if (!out.sample_id || !out.completion_offsets || !out.logprobs || !out.logits_digest)
            rc = br_fail(BR_ENOMEM, "out of memory");
        int64_t k = 0;
        for (int64_t i = 0; rc == BR_OK && i < r.n; i++) {
            int64_t a = r.completion_offsets[i], lc = r.completion_offsets[i + 1] - a;
            out.sample_id[i] = r.sample_id[i];
            out.completion_offsets[i] = a;
            if (lc == 0) continue;
            const rollout_result *res = &by_row[k++];
            memcpy(out.logprobs + a, res->logprobs, 4 * (size_t)lc);
            memcpy(out.logits_digest + a, res->digests, 8 * (size_t)lc);
        }
        if (rc == BR_OK) {
            out.completion_offsets[r.n] = T;
            h5log_provenance prov;
            provenance(&prov, &o, w, cfg, world->size);
            rc = h5log_scores_write(o.out, &out, &prov, meta.fingerprint_hex);
        }
        if (rc == BR_OK && !o.quiet) {
            double dt = cli_now() - t0;
            fprintf(stderr, "[bitroll score] wrote %s: %lld samples, %lld tokens scored, %.1f s, %.0f tokens/s (%d rank%s)\n",
                    o.out, (long long)r.n, (long long)T, dt, T / (dt + 1e-9), world->size, world->size > 1 ? "s" : "");
        }
    }
    rc = comm_agree(world, rc);

done:
    if (by_row)
        for (int64_t i = 0; i < n_jobs; i++) rollout_result_free(&by_row[i]);
    free(by_row);
    free(jobs);
    comm_buf_free(&work);
    h5log_scores_free(&out);
    h5log_rollouts_free(&r);
    h5log_meta_free(&meta);
    policy_weights_free(w);
    free(cfg);
    return rc == BR_OK ? 0 : fail_exit(world, "score", rc);
}

/* ---------------------------------------------------------------- verify */

static void verify_usage(FILE *f) {
    fprintf(f,
            "usage: bitroll verify ROLLOUTS.h5 SCORES.h5 [--quiet]\n"
            "\n"
            "Compares every completion token's log-prob and logits digest between a rollouts file (sampler)\n"
            "and a scores file (trainer-side recomputation) bit for bit, and prints: tokens compared, log-prob\n"
            "mismatches, digest mismatches, max |delta log-prob| and the mean KL estimate\n"
            "mean(logprob_rollout - logprob_score) over the sampled tokens.\n"
            "\n"
            "Exit: 0 all bitwise equal, 1 any mismatch, 2 unreadable files or files that do not belong together.\n");
}

static int verify_run(int argc, char **argv) {
    int quiet = 0;
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            verify_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (argv[i][0] == '-' || n_paths == 2) {
            fprintf(stderr, "bitroll verify: unexpected argument '%s' (bitroll verify --help)\n", argv[i]);
            return 2;
        } else {
            paths[n_paths++] = argv[i];
        }
    }
    if (n_paths != 2) {
        fprintf(stderr, "bitroll verify: expected ROLLOUTS.h5 SCORES.h5 (bitroll verify --help)\n");
        return 2;
    }
    h5log_rollouts r = {0};
    h5log_scores s = {0};
    h5log_meta mr = {0}, ms = {0};
    br_status rc = h5log_rollouts_read(paths[0], &r, &mr);
    if (rc == BR_OK) rc = h5log_scores_read(paths[1], &s, &ms);
    if (rc == BR_OK && (!ms.rollouts_fingerprint || strcmp(ms.rollouts_fingerprint, mr.fingerprint_hex)))
        rc = br_fail(BR_EINVAL, "%s scored a rollouts file with fingerprint %s, but %s has fingerprint %s", paths[1],
                     ms.rollouts_fingerprint ? ms.rollouts_fingerprint : "(none)", paths[0], mr.fingerprint_hex);
    if (rc == BR_OK && (s.n != r.n || memcmp(s.sample_id, r.sample_id, 8 * (size_t)r.n) ||
                        memcmp(s.completion_offsets, r.completion_offsets, 8 * (size_t)(r.n + 1))))
        rc = br_fail(BR_EINVAL, "%s and %s do not hold the same samples and completion lengths", paths[0], paths[1]);
    int exit_code = 0;
    if (rc != BR_OK) {
        fprintf(stderr, "bitroll verify: %s\n", br_last_error());
        exit_code = br_exit_code(rc);
    } else {
        const int64_t T = r.completion_offsets[r.n];
        int64_t lp_bad = 0, dg_bad = 0, first_bad = -1;
        double max_delta = 0, kl = 0;
        for (int64_t t = 0; t < T; t++) {
            int lp_eq = memcmp(&r.logprobs[t], &s.logprobs[t], sizeof(float)) == 0;
            if (!lp_eq) {
                lp_bad++;
                double dlt = fabs((double)r.logprobs[t] - (double)s.logprobs[t]);
                if (dlt > max_delta || isnan(dlt)) max_delta = dlt;
            }
            if (r.logits_digest[t] != s.logits_digest[t]) dg_bad++;
            if ((!lp_eq || r.logits_digest[t] != s.logits_digest[t]) && first_bad < 0) first_bad = t;
            kl += (double)r.logprobs[t] - (double)s.logprobs[t];
        }
        printf("samples               %lld\n", (long long)r.n);
        printf("tokens compared       %lld\n", (long long)T);
        printf("logprob mismatches    %lld\n", (long long)lp_bad);
        printf("digest mismatches     %lld\n", (long long)dg_bad);
        printf("max |delta logprob|   %.9g\n", max_delta);
        printf("mean KL estimate      %.9g\n", T > 0 ? kl / (double)T : 0.0);
        if (first_bad >= 0) {
            int64_t i = 0;
            while (r.completion_offsets[i + 1] <= first_bad) i++;
            printf("first mismatch        sample %lld, completion token %lld: logprob %.9g vs %.9g, digest %016llx vs %016llx\n",
                   (long long)r.sample_id[i], (long long)(first_bad - r.completion_offsets[i]), r.logprobs[first_bad],
                   s.logprobs[first_bad], (unsigned long long)r.logits_digest[first_bad],
                   (unsigned long long)s.logits_digest[first_bad]);
        }
        exit_code = lp_bad || dg_bad ? 1 : 0;
        if (!quiet) printf("result                %s\n", exit_code ? "MISMATCH" : "bitwise equal (KL = 0)");
    }
    h5log_rollouts_free(&r);
    h5log_scores_free(&s);
    h5log_meta_free(&mr);
    h5log_meta_free(&ms);
    return exit_code;
}

/* ---------------------------------------------------------------- show */

static void show_usage(FILE *f) {
    fprintf(f,
            "usage: bitroll show ROLLOUTS.h5 [--ids] [--limit N]\n"
            "\n"
            "Prints each sample of a rollouts file: sample id, prompt index, finish reason, then the prompt and the\n"
            "completion as text (as stored by generate with a tokenizer) or, with --ids or when the file has no\n"
            "text, as token ids.\n"
            "\n"
            "  --ids        print token ids instead of text\n"
            "  --limit N    at most N samples (default: all)\n");
}

int cli_show_main(int argc, char **argv) {
    const char *path = NULL;
    int ids = 0;
    int64_t limit = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            show_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--ids")) {
            ids = 1;
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (cli_parse_int("--limit", argv[++i], 0, INT64_MAX, &limit) != BR_OK) {
                fprintf(stderr, "bitroll show: %s\n", br_last_error());
                return 2;
            }
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "bitroll show: unexpected argument '%s' (bitroll show --help)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "bitroll show: expected ROLLOUTS.h5 (bitroll show --help)\n");
        return 2;
    }
    h5log_rollouts r = {0};
    br_status rc = h5log_rollouts_read(path, &r, NULL);
    if (rc != BR_OK) {
        fprintf(stderr, "bitroll show: %s\n", br_last_error());
        return br_exit_code(rc);
    }
    static const char *reasons[] = {"stop", "length", "context"};
    const int tty = isatty(STDOUT_FILENO);
    for (int64_t i = 0; i < r.n && (limit < 0 || i < limit); i++) {
        int fr = r.finish_reason[i];
        printf("=== sample %lld (prompt %lld, sample %d, %lld tokens, finish %s)\n", (long long)r.sample_id[i],
               (long long)r.prompt_index[i], r.sample_index[i],
               (long long)(r.completion_offsets[i + 1] - r.completion_offsets[i]), fr >= 0 && fr <= 2 ? reasons[fr] : "?");
        if (!ids && r.completion_text && r.prompt_text) {
            if (tty) /* the completion in bold, right after its prompt */
                printf("%s\x1b[1m%s\x1b[0m\n", r.prompt_text[i], r.completion_text[i]);
            else
                printf("prompt: %s\ncompletion: %s\n", r.prompt_text[i], r.completion_text[i]);
            continue;
        }
        printf("prompt:");
        for (int64_t t = r.prompt_offsets[i]; t < r.prompt_offsets[i + 1]; t++) printf(" %d", r.prompt_tokens[t]);
        printf("\ncompletion:");
        for (int64_t t = r.completion_offsets[i]; t < r.completion_offsets[i + 1]; t++)
            printf(" %d", r.completion_tokens[t]);
        printf("\n");
    }
    h5log_rollouts_free(&r);
    return 0;
}

/* ---------------------------------------------------------------- entry points */

typedef int (*mpi_verb)(comm_world *, int, char **);

static int with_mpi(int argc, char **argv, mpi_verb fn) {
    comm_world world;
    if (comm_init(&argc, &argv, &world) != BR_OK) {
        fprintf(stderr, "bitroll %s: %s\n", argv[0], br_last_error());
        return 3;
    }
#ifdef _OPENMP
    /* ranks on one node share its cores: unless OMP_NUM_THREADS says otherwise, each takes its share */
    if (!getenv("OMP_NUM_THREADS")) {
        int t = omp_get_num_procs() / (world.local_size > 0 ? world.local_size : 1);
        omp_set_num_threads(t > 0 ? t : 1);
    }
#endif
    int code = fn(&world, argc, argv);
    comm_finalize(&world);
    return code;
}

int cli_generate_main(int argc, char **argv) { return with_mpi(argc, argv, generate_main_mpi); }
int cli_score_main(int argc, char **argv) { return with_mpi(argc, argv, score_main_mpi); }

static int verify_main_mpi(comm_world *world, int argc, char **argv) {
    /* under mpirun only rank 0 reads and prints; everyone exits with its code */
    int code = world->rank == 0 ? verify_run(argc, argv) : 0;
    comm_bcast_int(world, &code);
    return code;
}
int cli_verify_main(int argc, char **argv) { return with_mpi(argc, argv, verify_main_mpi); }
