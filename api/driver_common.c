/* Pieces shared by the generate and score drivers (api/driver.h): device binding, weights and tokenizer loading,
 * the resolved configuration and provenance, and the data-parallel run with its gather on rank 0. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/driver.h"
#include "comm/comm_links.h"

void driver_opts_default(driver_opts *o, const char *verb) {
    memset(o, 0, sizeof *o);
    o->verb = verb;
    o->model = BR_DEFAULT_MODEL;
    o->device = ROLLOUT_DEVICE_CPU;
    o->mode = KERN_MODE_INVARIANT;
    o->sched.max_batch_tokens = 256;
    o->sched.max_seqs = 64;
    o->sched.prefill_chunk = 64;
    o->sched.page_size = 16;
    o->sched.n_pages = 0;
    o->tuning = br_tuning_default();
    o->tp = 1;
}

double driver_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

br_status driver_bind_device(const comm_world *world, const driver_opts *o) {
    const rollout_backend_i *be = rollout_backend(o->device);
    if (!be)
        return br_fail(BR_EINVAL, "--device %s: this bitroll was built without CUDA (configure with -DBITROLL_CUDA=ON)",
                       rollout_device_name(o->device));
    if (o->device == ROLLOUT_DEVICE_CPU && o->mode == KERN_MODE_STANDARD)
        return br_fail(BR_EINVAL, "--kernels standard: exists only on --device cuda (the CPU kernels are always invariant)");
    if (o->device == ROLLOUT_DEVICE_CPU) return BR_OK;
    int gpu = -1;
    br_status rc = comm_gpu_for_rank(world, be->device_count(), o->tuning.share_gpus, &gpu);
    if (rc != BR_OK) return br_fail_ctx(rc, "--device %s", be->name);
    be->select_device(gpu);
    if (be->set_abort_hook) be->set_abort_hook(comm_abort_job);
    return BR_OK;
}

br_status driver_check_out(const char *out, const char *in_flag, const char *in_path) {
    br_status rc = h5log_check_out(out);
    if (rc != BR_OK) return br_fail_ctx(rc, "--out");
    struct stat so, si;
    if (in_path && stat(out, &so) == 0 && stat(in_path, &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
        return br_fail(BR_EINVAL, "--out %s is the same file as %s %s: it would overwrite the input", out, in_flag,
                       in_path);
    return BR_OK;
}

br_status driver_load_weights(const comm_world *world, const driver_opts *o, policy_weights **w) {
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

br_status driver_load_tokenizer(const char *model, const char *path, const policy_weights *w, tok_tokenizer **tok) {
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

char *driver_config_json(const driver_opts *o, const rollout_defaults *d, const char *prompts, const char *rollouts,
                         int world_size) {
    cJSON *j = cJSON_CreateObject();
    char num[32], tuning[512];
    cJSON_AddStringToObject(j, "verb", o->verb);
    if (o->random_weights) {
        cJSON_AddStringToObject(j, "random_weights", o->random_weights);
        snprintf(num, sizeof num, "%llu", (unsigned long long)o->weights_seed);
        cJSON_AddStringToObject(j, "weights_seed", num);
    } else {
        cJSON_AddStringToObject(j, "model", o->model);
    }
    if (prompts) cJSON_AddStringToObject(j, "prompts", prompts);
    if (rollouts) cJSON_AddStringToObject(j, "rollouts", rollouts);
    cJSON_AddStringToObject(j, "out", o->out ? o->out : "");
    cJSON_AddStringToObject(j, "device", rollout_device_name(o->device));
    cJSON_AddStringToObject(j, "kernels", kern_mode_name(o->mode));
    if (d) {
        cJSON_AddNumberToObject(j, "n", d->n);
        cJSON_AddNumberToObject(j, "max_new_tokens", d->max_new_tokens);
        cJSON_AddNumberToObject(j, "temperature", d->sampling.temperature);
        cJSON_AddNumberToObject(j, "top_p", d->sampling.top_p);
        cJSON_AddNumberToObject(j, "top_k", d->sampling.top_k);
        snprintf(num, sizeof num, "%llu", (unsigned long long)d->sampling.seed);
        cJSON_AddStringToObject(j, "seed", num);
        cJSON *stops = cJSON_AddArrayToObject(j, "stop_ids");
        for (int i = 0; i < d->n_stop_ids; i++) cJSON_AddItemToArray(stops, cJSON_CreateNumber(d->stop_ids[i]));
    }
    /* on a device with its own memory, sizes not given are chosen from its free memory (rollout_mem_fit), which can
     * differ between runs that make the same bits: the file records "auto" (rank 0 prints the plan it chose) */
    const int auto_sizes = o->device == ROLLOUT_DEVICE_CUDA && o->tp == 1;
    if (auto_sizes && !(o->sched.sizes_given & ROLLOUT_GIVEN_BATCH_TOKENS))
        cJSON_AddStringToObject(j, "max_batch_tokens", "auto");
    else
        cJSON_AddNumberToObject(j, "max_batch_tokens", o->sched.max_batch_tokens);
    if (auto_sizes && !(o->sched.sizes_given & ROLLOUT_GIVEN_MAX_SEQS))
        cJSON_AddStringToObject(j, "max_seqs", "auto");
    else
        cJSON_AddNumberToObject(j, "max_seqs", o->sched.max_seqs);
    if (o->device == ROLLOUT_DEVICE_CUDA)
        cJSON_AddNumberToObject(j, "gpu_memory_utilization", o->sched.gpu_memory_utilization > 0
                                                                  ? o->sched.gpu_memory_utilization
                                                                  : ROLLOUT_GPU_MEMORY_UTILIZATION_DEFAULT);
    cJSON_AddNumberToObject(j, "prefill_chunk", o->sched.prefill_chunk);
    cJSON_AddNumberToObject(j, "page_size", o->sched.page_size);
    cJSON_AddNumberToObject(j, "tp", o->tp);
    cJSON_AddNumberToObject(j, "world_size", world_size);
    snprintf(num, sizeof num, "%lld", (long long)o->weight_version);
    cJSON_AddStringToObject(j, "weight_version", num);
    br_tuning_json(&o->tuning, tuning, sizeof tuning);
    cJSON *t = cJSON_Parse(tuning);
    if (t) cJSON_AddItemToObject(j, "tuning", t);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

void driver_provenance(h5log_provenance *p, driver_prov_bufs *b, const driver_opts *o, const policy_weights *w,
                       const char *cfg, int world_size) {
    snprintf(b->libs, sizeof b->libs, "cJSON %s", cJSON_Version());
    memset(p, 0, sizeof *p);
    p->engine_version = BR_VERSION;
    p->git_rev = BR_GIT_REV;
    p->compiler = BR_COMPILER;
    p->model_dir = o->random_weights ? o->random_weights : o->model;
    p->model_fingerprint = w->fingerprint_hex;
    p->kernel_mode = kern_mode_name(o->mode);
    const rollout_backend_i *be = rollout_backend(o->device);
    char name[256] = "";
    if (be && o->device != ROLLOUT_DEVICE_CPU) be->device_name(0, name, sizeof name);
    if (name[0]) snprintf(b->device, sizeof b->device, "%s: %s", rollout_device_name(o->device), name);
    else snprintf(b->device, sizeof b->device, "%s", rollout_device_name(o->device));
    p->device_names = b->device;
    p->config_json = cfg;
    p->lib_versions = b->libs;
    comm_mpi_version(b->mpi, sizeof b->mpi);
    p->mpi_version = b->mpi;
    p->world_size = world_size;
    p->weight_version = o->weight_version;
}

/* ---- the data-parallel run */

typedef struct {
    const comm_world *world;
    const char *verb;
    int quiet;
    double t0, last;
} progress_ctx;

/* Rank 0 reports the job's total: groups deal jobs round-robin and run at about the same pace, so rank 0's share
 * scaled by the group count is the estimate (exact at the end, when every group's count is known). */
static void progress_cb(void *ctx, int64_t done, int64_t total, int64_t tokens) {
    progress_ctx *p = ctx;
    if (p->quiet || p->world->rank != 0) return;
    double now = driver_now();
    if (done < total && now - p->last < 1.0) return;
    p->last = now;
    const int g = p->world->n_groups;
    fprintf(stderr, "[bitroll %s] ~%lld samples done, ~%lld tokens, ~%.0f tokens/s (%d group%s; rank 0's share x %d)\n",
            p->verb, (long long)done * g, (long long)tokens * g, (double)tokens * g / (now - p->t0 + 1e-9), g,
            g == 1 ? "" : "s", g);
}

/* Results travel as: job index i64, n i32, finish i8, then n tokens, n logprobs, n digests. */
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

/* Unpacks gathered results into by_job[i] (n_jobs slots), each filled exactly once. The wire carries the job index
 * in the sample_id field; it is replaced by the job's own sample id. */
static br_status unpack_results(comm_buf *b, const rollout_job *jobs, rollout_result *by_job, int64_t n_jobs) {
    int64_t got = 0;
    while (b->rd < b->len) {
        rollout_result r;
        memset(&r, 0, sizeof r);
        if (comm_buf_get(b, &r.sample_id, 8) || comm_buf_get(b, &r.n, 4) || comm_buf_get(b, &r.finish, 1)) break;
        const int64_t i = r.sample_id;
        if (i < 0 || i >= n_jobs || by_job[i].tokens || r.n < 0)
            return br_fail(BR_ERUNTIME, "gather: bad or duplicate result for job %lld", (long long)i);
        r.sample_id = jobs[i].sample_id;
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
        by_job[i] = r;
        got++;
    }
    if (b->failed || got != n_jobs)
        return br_fail(BR_ERUNTIME, "gather: %lld of %lld results arrived intact", (long long)got, (long long)n_jobs);
    return BR_OK;
}

br_status driver_run_and_gather(const comm_world *world, const policy_weights *w, const driver_opts *o,
                                const rollout_job *jobs, int64_t n_jobs, rollout_result **by_job_out) {
    *by_job_out = NULL;
    br_status rc = BR_OK;
    int64_t n_mine = 0;
    for (int64_t i = 0; i < n_jobs; i++) n_mine += comm_owner(world, i) == world->group;
    rollout_job *mine = malloc((size_t)(n_mine + 1) * sizeof *mine);
    int64_t *mine_idx = malloc((size_t)(n_mine + 1) * sizeof *mine_idx);
    rollout_result *res = calloc((size_t)(n_mine + 1), sizeof *res);
    comm_buf b = {0};
    void *all = NULL;
    size_t all_len = 0;
    comm_links *links = NULL;
    if (!mine || !mine_idx || !res) rc = br_fail(BR_ENOMEM, "out of memory for %lld jobs", (long long)n_mine);
    if (rc == BR_OK) {
        int64_t k = 0;
        for (int64_t i = 0; i < n_jobs; i++)
            if (comm_owner(world, i) == world->group) {
                mine_idx[k] = i;
                mine[k++] = jobs[i];
            }
        progress_ctx pc = {world, o->verb, o->quiet, driver_now(), 0};
        rollout_sched_opts so = o->sched;
        so.device = o->device;
        so.mode = o->mode;
        so.tuning = o->tuning;
        rc = comm_links_open(world, o->device == ROLLOUT_DEVICE_CUDA, &o->tuning, !o->quiet, &links);
        if (rc == BR_OK) {
            so.tp = comm_links_tp(links);
            so.wb = comm_links_wb(links);
            rc = rollout_run(w, &so, mine, n_mine, res, progress_cb, &pc);
        }
        /* Fault injection for the tests: one rank fails after its work, the others must stop with its reason. */
        if (rc == BR_OK && o->tuning.inject_failure_rank == world->rank)
            rc = br_fail(BR_ERUNTIME, "injected failure (BITROLL_INJECT_FAILURE_RANK=%d)", world->rank);
    }
    br_status s2 = comm_links_close(links);
    if (rc == BR_OK) rc = s2;
    rc = comm_agree(world, rc);
    if (rc != BR_OK) goto cleanup;
    if (world->tp_rank == 0) { /* one copy per group: its first rank's; the wire carries the job index */
        for (int64_t i = 0; i < n_mine; i++) res[i].sample_id = mine_idx[i];
        pack_results(&b, res, n_mine);
    }
    if (b.failed) rc = br_fail(BR_ENOMEM, "packing results: out of memory");
    rc = comm_agree(world, rc);
    if (rc != BR_OK) goto cleanup;
    comm_gather_bytes(world, b.data, b.len, &all, &all_len);
    if (world->rank == 0) {
        rollout_result *by_job = calloc((size_t)(n_jobs + 1), sizeof *by_job);
        comm_buf g = {all, all_len, all_len, 0, 0};
        if (!by_job) rc = br_fail(BR_ENOMEM, "out of memory");
        else rc = unpack_results(&g, jobs, by_job, n_jobs);
        if (rc != BR_OK && by_job) {
            for (int64_t i = 0; i < n_jobs; i++) rollout_result_free(&by_job[i]);
            free(by_job);
            by_job = NULL;
        }
        *by_job_out = by_job;
    }
    rc = comm_agree(world, rc);
cleanup:
    if (res)
        for (int64_t i = 0; i < n_mine; i++) rollout_result_free(&res[i]);
    free(res);
    free(mine);
    free(mine_idx);
    free(all);
    comm_buf_free(&b);
    return rc;
}
