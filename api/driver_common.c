/* Pieces shared by the generate and score drivers (api/driver.h): device binding, weights and tokenizer loading,
 * the resolved configuration and provenance, and the data-parallel run with its gather on rank 0. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__ /* defined by the libc headers above */
#include <malloc.h>
#endif
#include <sys/stat.h>

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
    int64_t base_done, base_tokens, total; /* the earlier windows' figures; this group's whole share */
} progress_ctx;

/* Rank 0 reports the job's total: groups deal jobs round-robin and run at about the same pace, so rank 0's share
 * scaled by the group count is the estimate (exact at the end, when every group's count is known). */
static void progress_cb(void *ctx, int64_t done_w, int64_t total_w, int64_t tokens_w) {
    progress_ctx *p = ctx;
    (void)total_w;
    if (p->quiet || p->world->rank != 0) return;
    const int64_t done = p->base_done + done_w, tokens = p->base_tokens + tokens_w;
    double now = br_now_s();
    if (done < p->total && now - p->last < 1.0) return;
    p->last = now;
    const int g = p->world->n_groups;
    fprintf(stderr, "[bitroll %s] ~%lld samples done, ~%lld tokens, ~%.0f tokens/s (%d group%s; rank 0's share x %d)\n",
            p->verb, (long long)done * g, (long long)tokens * g, (double)tokens * g / (now - p->t0 + 1e-9), g,
            g == 1 ? "" : "s", g);
}

typedef struct {
    driver_journal *journal; /* NULL on ranks that are not their group's first */
    uint64_t key;
    const int64_t *mine_idx; /* (window) the job index of each job of the window */
    int64_t tokens;          /* completion tokens of the window so far */
} journal_ctx;

/* The scheduler's per-result callback: the group's first rank appends the result to its shard; every rank then frees
 * it, so a rank's memory does not grow with its share of the jobs. */
static br_status on_result(void *ctx, int64_t job_index, rollout_result *r) {
    journal_ctx *c = ctx;
    br_status rc = c->journal ? driver_journal_append(c->journal, c->key, c->mine_idx[job_index], r) : BR_OK;
    c->tokens += r->n;
    rollout_result_free(r);
    return rc;
}

static int64_t deal_unit(driver_dealer *d, int64_t i) {
    rollout_job j;
    d->jobs->get(d->jobs->ctx, i, &j);
    if (d->have_prev && (!d->whole_runs || !rollout_same_prompt(&d->prev, &j))) d->unit++;
    d->prev = j;
    d->have_prev = 1;
    return d->unit;
}

void driver_deal_init(driver_dealer *d, const driver_jobs *jobs, const uint8_t *done, int n_groups) {
    *d = (driver_dealer){.jobs = jobs, .n_groups = n_groups > 1 ? n_groups : 1, .whole_runs = 1};
    int64_t runs = 0;
    for (int64_t i = 0; i < jobs->n && d->n_groups > 1; i++)
        if (!done || !done[i]) runs = deal_unit(d, i) + 1;
    *d = (driver_dealer){.jobs = jobs, .n_groups = d->n_groups, .whole_runs = runs >= d->n_groups};
}

int driver_deal_next(driver_dealer *d, int64_t i) {
    return d->n_groups > 1 ? (int)(deal_unit(d, i) % d->n_groups) : 0;
}

br_status driver_run_and_gather(const comm_world *world, const policy_weights *w, const driver_opts *o,
                                const driver_jobs *jobs, driver_parts **parts_out) {
    *parts_out = NULL;
    br_status rc = BR_OK;
    const int64_t n_jobs = jobs->n;
    const uint64_t key = driver_job_key(w->fingerprint, o->verb, (int)o->mode, jobs);
    const int64_t window = DRIVER_WINDOW_JOBS(o->device, o->sched.max_seqs);
    char *dir = driver_parts_dir(o->out);
    uint8_t *done = calloc((size_t)n_jobs + 1, 1);
    rollout_job *mine = NULL;
    int64_t *mine_idx = NULL;
    rollout_result *res = NULL;
    driver_journal *journal = NULL;
    comm_links *links = NULL;
    int64_t n_done = 0, n_mine = 0;
    int attempt = 0, made_dir = 0;
    if (!dir || !done) rc = br_fail(BR_ENOMEM, "out of memory for %lld jobs", (long long)n_jobs);
    /* rank 0 finds what the journal already holds (--resume) or clears a stale one */
    if (rc == BR_OK && world->rank == 0) {
        if (o->resume) rc = driver_parts_read(dir, key, n_jobs, done, &n_done, &attempt);
        else rc = driver_parts_remove(dir);
        if (rc == BR_OK) rc = driver_parts_create(dir);
        made_dir = rc == BR_OK;
        if (rc == BR_OK && o->resume && !o->quiet)
            fprintf(stderr, "[bitroll %s] --resume: %s holds %lld of %lld results; computing the other %lld\n", o->verb,
                    dir, (long long)n_done, (long long)n_jobs, (long long)(n_jobs - n_done));
    }
    if ((rc = comm_agree(world, rc)) != BR_OK) goto cleanup;
    {
        void *buf = world->rank == 0 ? done : NULL;
        size_t len = (size_t)n_jobs;
        rc = comm_bcast_bytes(world, &buf, &len);
        if (world->rank != 0) {
            if (rc == BR_OK && len == (size_t)n_jobs) memcpy(done, buf, len);
            else if (rc == BR_OK) rc = br_fail(BR_ERUNTIME, "journal: bad done-set broadcast");
            free(buf);
        }
        uint64_t a = (uint64_t)attempt;
        comm_bcast_u64(world, &a);
        attempt = (int)a;
    }
    if ((rc = comm_agree(world, rc)) != BR_OK) goto cleanup;
    /* the jobs not yet done are dealt to this run's groups (whatever the earlier run's count was); each group's
     * share: this rank's, and the largest (every rank runs as many windows as the largest needs) */
    driver_dealer dealer;
    int64_t most = 0;
    int64_t *share = calloc((size_t)world->n_groups, sizeof *share);
    if (!share) {
        rc = br_fail(BR_ENOMEM, "out of memory for %d groups", world->n_groups);
    } else {
        driver_deal_init(&dealer, jobs, done, world->n_groups);
        for (int64_t i = 0; i < n_jobs; i++)
            if (!done[i]) share[driver_deal_next(&dealer, i)]++;
        n_mine = share[world->group];
        for (int g = 0; g < world->n_groups; g++) most = share[g] > most ? share[g] : most;
        free(share);
    }
    const int64_t cap = n_mine < window ? n_mine : window;
    mine = malloc((size_t)(cap + 1) * sizeof *mine);
    mine_idx = malloc((size_t)(cap + 1) * sizeof *mine_idx);
    res = calloc((size_t)(cap + 1), sizeof *res);
    if (!mine || !mine_idx || !res) rc = br_fail(BR_ENOMEM, "out of memory for %lld jobs", (long long)cap);
    if (rc == BR_OK && world->tp_rank == 0) rc = driver_journal_open(dir, world->group, attempt, key, n_jobs,
                                                                       o->tuning.inject_kill_after_records, &journal);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto cleanup;
    {
        progress_ctx pc = {world, o->verb, o->quiet, br_now_s(), 0, 0, 0, n_mine};
        journal_ctx jc = {journal, key, mine_idx, 0};
        rollout_sched_opts so = o->sched;
        so.device = o->device;
        so.mode = o->mode;
        so.tuning = o->tuning;
        so.on_result = on_result;
        so.on_result_ctx = &jc;
        rc = comm_links_open(world, o->device == ROLLOUT_DEVICE_CUDA, &o->tuning, !o->quiet, &links);
        if (rc == BR_OK) {
            so.tp = comm_links_tp(links);
            so.wb = comm_links_wb(links);
        }
        /* This group's share, window by window, in job order (the ranks of a tensor-parallel group see the same
         * windows). A sample's bits depend on no batch (DESIGN 1), so the windows change none of them. Every rank
         * runs the same number of windows -- enough for the largest share (`most`); a window may hold no job --
         * because building the engine can be collective (the GPU's device weights broadcast): a
         * rank that ran one window more than the others waited forever in that broadcast (seen on an H200). */
        const int64_t n_windows = most <= window ? 1 : (most + window - 1) / window;
        int64_t i = 0;
        driver_deal_init(&dealer, jobs, done, world->n_groups);
        for (int64_t win = 0; win < n_windows && rc == BR_OK; win++) {
            int64_t m = 0;
            for (; i < n_jobs && m < cap; i++)
                if (!done[i] && driver_deal_next(&dealer, i) == world->group) {
                    mine_idx[m] = i;
                    jobs->get(jobs->ctx, i, &mine[m++]);
                }
            if (rc != BR_OK) break;
            jc.tokens = 0;
            rc = rollout_run(w, &so, mine, m, res, progress_cb, &pc);
            pc.base_done += m;
            pc.base_tokens += jc.tokens;
        }
        /* Fault injection for the tests: one rank fails after its work, the others must stop with its reason. */
        if (rc == BR_OK && o->tuning.inject_failure_rank == world->rank)
            rc = br_fail(BR_ERUNTIME, "injected failure (BITROLL_INJECT_FAILURE_RANK=%d)", world->rank);
    }
    br_status s2 = comm_links_close(links);
    if (rc == BR_OK) rc = s2;
    s2 = driver_journal_close(journal);
    journal = NULL;
    if (rc == BR_OK) rc = s2;
    /* the window is not needed any more: the merge must not hold it */
    free(mine);
    free(mine_idx);
    free(res);
    mine = NULL;
    mine_idx = NULL;
    res = NULL;
    /* Freed, but glibc keeps what it can reuse: after windows of 4,096 jobs ~3 MB stayed resident under the output
     * writer's own memory on rank 0 (bench/rss_scaling.sh: 2.2 MB more at 20,000 samples than at 500). Hand it back. */
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
    if ((rc = comm_agree(world, rc)) != BR_OK) goto cleanup;
    /* every shard is closed: rank 0 indexes the results (the output is written from there, record by record) */
    if (world->rank == 0) {
        driver_parts *parts = NULL;
        free(done);
        done = NULL;
        rc = driver_parts_open(dir, key, n_jobs, &parts, &n_done);
        if (rc == BR_OK && n_done != n_jobs)
            rc = br_fail(BR_ERUNTIME, "%s: the journal holds %lld of %lld results after the run (is %s on a file system "
                                      "every group's first rank shares?)",
                         dir, (long long)n_done, (long long)n_jobs, dir);
        if (rc != BR_OK) {
            driver_parts_close(parts);
            parts = NULL;
        }
        *parts_out = parts;
    }
    rc = comm_agree(world, rc);
    if (rc != BR_OK && *parts_out) {
        driver_parts_close(*parts_out);
        *parts_out = NULL;
    }
cleanup:
    (void)driver_journal_close(journal);
    /* A run that failed before any sample finished (an engine or a memory plan that cannot start, a bad option the
     * scheduler finds) leaves no journal: nothing in it for --resume, only a directory to trip over. Every rank has
     * closed its shard before the agreement that led here, so rank 0 reads them all; the failure's message stays. */
    if (rc != BR_OK && made_dir) {
        char why[1024];
        snprintf(why, sizeof why, "%s", br_last_error());
        uint8_t *seen = calloc((size_t)n_jobs + 1, 1);
        int64_t n = -1;
        int next = 0;
        if (seen && driver_parts_read(dir, key, n_jobs, seen, &n, &next) == BR_OK && n == 0)
            (void)driver_parts_remove(dir);
        free(seen);
        br_fail(rc, "%s", why);
    }
    free(res);
    free(mine);
    free(mine_idx);
    free(done);
    free(dir);
    return rc;
}

br_status driver_out_done(const char *out) {
    char *dir = driver_parts_dir(out);
    if (!dir) return br_fail(BR_ENOMEM, "out of memory");
    br_status rc = driver_parts_remove(dir);
    free(dir);
    return rc;
}
