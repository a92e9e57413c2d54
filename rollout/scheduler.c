/* Continuous-batching scheduler (see scheduler.h). One loop serves generate and score: a job's input stream
 * is its prompt followed by its completion (sampled in generate, given in score); the rows from the last
 * prompt token on produce the completion's log-probs. */
#include "rollout/scheduler.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef struct {
    const rollout_job *job;
    rollout_result *res;
    policy_seq seq;
    int fed;    /* input tokens already in the cache */
    int in_use;
} slot;

/* Input tokens a job can feed now: its prompt plus the completion tokens known so far; the last completion
 * token is never fed (nothing follows it). */
static int job_inputs(const slot *s) {
    const rollout_job *j = s->job;
    if (j->forced) return j->prompt_len + j->n_forced - 1;
    return j->prompt_len + s->res->n;
}

static int32_t job_input(const slot *s, int i) {
    const rollout_job *j = s->job;
    if (i < j->prompt_len) return j->prompt[i];
    return j->forced ? j->forced[i - j->prompt_len] : s->res->tokens[i - j->prompt_len];
}

/* Cache slots a job needs for its whole life. */
static int64_t job_tokens(const rollout_job *j) {
    return (int64_t)j->prompt_len + (j->forced ? j->n_forced : j->max_new) - 1;
}

static int job_done(const slot *s) {
    const rollout_job *j = s->job;
    if (j->forced) return s->res->n == j->n_forced;
    return s->res->n > 0 && s->res->finish >= 0;
}

void rollout_result_free(rollout_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->logprobs);
    free(r->digests);
    memset(r, 0, sizeof *r);
}

static br_status check_job(const policy_weights *w, const rollout_job *j, int page_size, int n_pages) {
    const policy_config *c = &w->cfg;
    const int64_t sid = j->sample_id;
    const int n_out = j->forced ? j->n_forced : j->max_new;
    if (j->prompt_len < 1) return br_fail(BR_EINVAL, "sample %lld: empty prompt", (long long)sid);
    if (n_out < 1)
        return br_fail(BR_EINVAL, "sample %lld: %s must be >= 1", (long long)sid,
                       j->forced ? "completion length" : "max_new_tokens");
    if ((int64_t)j->prompt_len + n_out > c->max_pos)
        return br_fail(BR_EINVAL, "sample %lld: prompt (%d tokens) + %d new tokens exceed the context length %d",
                       (long long)sid, j->prompt_len, n_out, c->max_pos);
    for (int i = 0; i < j->prompt_len; i++)
        if (j->prompt[i] < 0 || j->prompt[i] >= c->vocab)
            return br_fail(BR_EINVAL, "sample %lld: prompt token %d at index %d is outside the vocabulary [0, %d)",
                           (long long)sid, j->prompt[i], i, c->vocab);
    for (int i = 0; j->forced && i < j->n_forced; i++)
        if (j->forced[i] < 0 || j->forced[i] >= c->vocab)
            return br_fail(BR_EINVAL, "sample %lld: completion token %d at index %d is outside the vocabulary [0, %d)",
                           (long long)sid, j->forced[i], i, c->vocab);
    int64_t need = (job_tokens(j) + page_size - 1) / page_size;
    if (need > n_pages)
        return br_fail(BR_EINVAL, "sample %lld: %lld tokens need %lld KV pages, the cache has %d", (long long)sid,
                       (long long)job_tokens(j), (long long)need, n_pages);
    if (!j->forced) {
        br_status rc = rollout_sampling_check(&j->sampling, c->vocab);
        if (rc != BR_OK) return br_fail_ctx(rc, "sample %lld", (long long)sid);
    } else if (!isfinite(j->sampling.temperature) || j->sampling.temperature < 0.0f ||
               (j->sampling.temperature > 0.0f && j->sampling.temperature < FLT_MIN)) {
        return br_fail(BR_EINVAL, "sample %lld: temperature = %.9g: expected 0 (greedy) or a finite value >= %.9g",
                       (long long)sid, (double)j->sampling.temperature, (double)FLT_MIN);
    }
    return BR_OK;
}

/* Shared prompt KV (scheduler.h, rollout_run): the prefix sequence of the group being admitted. Jobs are admitted
 * in order and a prefix lives from its group's first admission to its last, so one is ever needed. */
typedef struct {
    policy_seq seq;
    const rollout_job *job; /* the group's first job: its prompt */
    int64_t next, end;      /* the group's jobs [next, end) are still to be admitted */
    int len;                /* tokens it holds: the prompt but its last token */
    int fed;                /* of them, fed to a step */
    int active;
} prefix;

int rollout_same_prompt(const rollout_job *a, const rollout_job *b) {
    return !a->forced && !b->forced && a->prompt_len == b->prompt_len &&
           (a->prompt == b->prompt || !memcmp(a->prompt, b->prompt, (size_t)a->prompt_len * sizeof *a->prompt));
}

static int copy_needed(const prefix *pf, const policy_kvcache *kv) { return pf->len % kv->page_size != 0; }

static int64_t pages_for(int64_t tokens, int page_size) { return (tokens + page_size - 1) / page_size; }

/* Job j may join a group whose prefix holds len tokens when the prefix's pages and j's own (all but the shared full
 * pages) fit the cache together: then a fork waiting for pages is served once the other sequences end. */
static int share_fits(const rollout_job *j, int len, const policy_kvcache *kv) {
    const int64_t own = pages_for(job_tokens(j), kv->page_size) - len / kv->page_size;
    return pages_for(len, kv->page_size) + own <= kv->n_pages;
}

/* Admits job j into slot s; with pf, as a fork of the prefix (its len tokens are cached already, s->fed = len). */
static br_status admit(rollout_engine *eng, policy_kvcache *kv, slot *s, const rollout_job *j, rollout_result *r,
                       const prefix *pf) {
    int32_t copy_src = -1, copy_dst = -1;
    br_status rc = pf ? policy_kv_fork(kv, &s->seq, &pf->seq, pf->len, &copy_src, &copy_dst) : BR_OK;
    if (rc == BR_OK) rc = policy_kv_reserve(kv, &s->seq, (int)job_tokens(j)); /* <= max_pos: check_job */
    if (rc == BR_OK && copy_dst >= 0) rc = rollout_engine_kv_copy_page(eng, copy_dst, copy_src);
    if (rc != BR_OK) {
        policy_kv_release(kv, &s->seq);
        return rc;
    }
    int cap = j->forced ? j->n_forced : j->max_new;
    memset(r, 0, sizeof *r);
    r->sample_id = j->sample_id;
    r->finish = -1;
    r->tokens = malloc((size_t)cap * sizeof *r->tokens);
    r->logprobs = malloc((size_t)cap * sizeof *r->logprobs);
    r->digests = malloc((size_t)cap * sizeof *r->digests);
    if (!r->tokens || !r->logprobs || !r->digests) {
        rollout_result_free(r);
        policy_kv_release(kv, &s->seq);
        return br_fail(BR_ENOMEM, "sample %lld: out of memory", (long long)j->sample_id);
    }
    s->job = j;
    s->res = r;
    s->fed = pf ? pf->len : 0;
    s->in_use = 1;
    return BR_OK;
}

/* Admits jobs[idx] into slot s, sharing its prompt's KV when it belongs to a group (rollout_run). BR_ERUNTIME: not
 * now (the cache is full, or its group's prefix is still being prefilled). */
static br_status admit_next(rollout_engine *eng, policy_kvcache *kv, prefix *pf, int share, slot *s,
                            const rollout_job *jobs, int64_t n_jobs, int64_t idx, rollout_result *results,
                            rollout_run_stats *st) {
    const rollout_job *j = &jobs[idx];
    br_status rc;
    if (share && !pf->active) {
        const int len = j->prompt_len - 1;
        int64_t end = idx + 1;
        if (!j->forced && len >= 1 && share_fits(j, len, kv))
            while (end < n_jobs && rollout_same_prompt(j, &jobs[end]) && share_fits(&jobs[end], len, kv)) end++;
        if (end - idx >= 2) {
            if ((rc = policy_kv_reserve(kv, &pf->seq, len)) != BR_OK) return rc;
            pf->job = j;
            pf->next = idx;
            pf->end = end;
            pf->len = len;
            pf->fed = 0;
            pf->active = 1;
            st->prompt_groups++;
        }
    }
    if (!pf->active || idx != pf->next) return admit(eng, kv, s, j, &results[idx], NULL);
    if (pf->seq.len < pf->len) return BR_ERUNTIME; /* its prefill has not run yet */
    if ((rc = admit(eng, kv, s, j, &results[idx], pf)) != BR_OK) return rc;
    if (copy_needed(pf, kv)) st->pages_copied++;
    if (pf->job != j) st->rows_saved += pf->len;
    if (++pf->next == pf->end) { /* the group's last job: the prefix lets go of its pages */
        policy_kv_release(kv, &pf->seq);
        pf->active = 0;
    }
    return BR_OK;
}

/* Describes what input row i of a slot produces: the completion token i - prompt_len + 1. */
static void describe_row(const slot *s, int i, rollout_row *row) {
    const rollout_job *j = s->job;
    const int k = i - j->prompt_len + 1;
    row->target = j->forced ? j->forced[k] : -1;
    row->sampling = &j->sampling;
    row->sample_id = j->sample_id;
    row->position = i + 1;
}

/* Records the token that input row i produced and decides whether the job is finished. A NaN log-prob (non-finite
 * logits: NaN weights or activations) is a runtime failure naming the sample, never a result. */
static br_status emit(const policy_config *c, slot *s, int i, const rollout_row_out *o) {
    const rollout_job *j = s->job;
    rollout_result *r = s->res;
    const int k = i - j->prompt_len + 1;
    if (isnan(o->logprob))
        return br_fail(BR_ERUNTIME, "sample %lld: completion token %d (id %d): the log-prob is NaN (the model's logits "
                                    "are not finite: NaN or infinite weights?)",
                       (long long)j->sample_id, k, (int)o->token);
    r->tokens[k] = o->token;
    r->logprobs[k] = o->logprob;
    r->digests[k] = o->digest;
    r->n = k + 1;
    if (j->forced) {
        if (r->n == j->n_forced) r->finish = BR_FINISH_LENGTH;
        return BR_OK;
    }
    for (int t = 0; t < j->n_stop; t++)
        if (o->token == j->stop_ids[t]) {
            r->finish = BR_FINISH_STOP;
            return BR_OK;
        }
    if (r->n == j->max_new) r->finish = BR_FINISH_LENGTH;
    else if (j->prompt_len + r->n >= c->max_pos) r->finish = BR_FINISH_CONTEXT;
    return BR_OK;
}

br_status rollout_run(const policy_weights *w, const rollout_sched_opts *o, const rollout_job *jobs, int64_t n_jobs,
                      rollout_result *results, rollout_progress_fn progress, void *progress_ctx) {
    const policy_config *c = &w->cfg;
    br_status rc = BR_OK;
    rollout_engine *eng = NULL;
    policy_kvcache *kv = NULL;
    slot *slots = NULL;
    rollout_row *rows = NULL;
    rollout_row_out *outs = NULL;
    int32_t *tok = NULL, *pos = NULL;
    policy_seq **seqs = NULL;
    uint8_t *want = NULL;
    int *row_slot = NULL, *row_index = NULL;
    prefix pf = {0};
    const int share = !o->no_share_prompt_kv;

    if (o->max_batch_tokens < 1 || o->max_seqs < 1 || o->prefill_chunk < 1 || o->page_size < 1 || o->n_pages < 0)
        return br_fail(BR_EINVAL, "scheduler: max_batch_tokens (%d), max_seqs (%d), prefill_chunk (%d) and "
                                  "page_size (%d) must be >= 1",
                       o->max_batch_tokens, o->max_seqs, o->prefill_chunk, o->page_size);
    int n_pages = o->engine ? rollout_engine_kv(o->engine)->n_pages : o->n_pages;
    int T = o->max_batch_tokens, max_seqs = o->max_seqs;
    rollout_run_stats st0 = {0}, *st = o->stats ? o->stats : &st0;
    memset(st, 0, sizeof *st);
    if (o->engine && (rollout_engine_max_tokens(o->engine) < o->max_batch_tokens ||
                      rollout_engine_kv(o->engine)->page_size != o->page_size))
        return br_fail(BR_EINVAL, "scheduler: the engine holds %d tokens per step with pages of %d, asked for %d and %d",
                       rollout_engine_max_tokens(o->engine), rollout_engine_kv(o->engine)->page_size,
                       o->max_batch_tokens, o->page_size);
    for (int64_t i = 0; i < n_jobs; i++) memset(&results[i], 0, sizeof results[i]);
    /* Sized for the longest job that fits the context: a longer one is rejected by check_job below, and must not
     * first size the cache (a 10M-token prompt would ask for millions of pages). int64: most * max_seqs can exceed
     * int. */
    int64_t most_tokens = 1;
    for (int64_t i = 0; i < n_jobs; i++) {
        int64_t t = job_tokens(&jobs[i]);
        if (t > c->max_pos) t = c->max_pos;
        if (t > most_tokens) most_tokens = t;
    }
    int64_t free_bytes = 0, total_bytes = 0;
    if (!o->engine && n_pages == 0 && rollout_device_memory(o->device, &free_bytes, &total_bytes) == BR_OK) {
        /* a device with its own memory: what fits it (max_seqs / max_batch_tokens chosen when auto), checked before
         * anything is allocated, so too little memory is a message (exit 2), never a failed cudaMalloc */
        rollout_mem_plan plan = {0};
        plan.mode = o->mode;
        plan.wdtype = w->dtype;
        plan.tp_size = o->tp && o->tp->size > 1 ? o->tp->size : 1;
        plan.max_tokens = T;
        plan.max_seqs = max_seqs;
        plan.page_size = o->page_size;
        if (share) rollout_mem_share(jobs, n_jobs, o->page_size, &plan);
        const double util = o->gpu_memory_utilization > 0 ? o->gpu_memory_utilization
                                                           : ROLLOUT_GPU_MEMORY_UTILIZATION_DEFAULT;
        /* Under tensor parallelism the ranks of a group run the same steps in lock step, so nothing may depend on
         * a rank's own free memory: the sizes are taken as set (the CLI's 64 / 256 unless given), only checked. */
        const unsigned auto_size = plan.tp_size > 1 ? 0u
                                   : (ROLLOUT_AUTO_MAX_SEQS | ROLLOUT_AUTO_BATCH_TOKENS) &
                                         ~(o->sizes_given & (ROLLOUT_GIVEN_MAX_SEQS | ROLLOUT_GIVEN_BATCH_TOKENS));
        rc = rollout_mem_fit(c, &plan, auto_size, free_bytes, util, most_tokens, n_jobs);
        if (rc != BR_OK) {
            /* the other ranks of a weights broadcast agree on their builds inside the engine's creation: join that
             * agreement with this failure, so none of them waits for this rank */
            if (o->wb) rc = o->wb->agree(o->wb->ctx, rc);
            goto cleanup;
        }
        T = plan.max_tokens;
        max_seqs = plan.max_seqs;
        n_pages = plan.n_pages;
        if (o->report_plan) {
            char line[768];
            rollout_mem_plan_describe(&plan, line, sizeof line);
            fprintf(stderr, "%s; %.2f GB free of %.2f GB, x %.2f\n", line, (double)free_bytes / 1e9,
                    (double)total_bytes / 1e9, util);
        }
        if (o->plan_out) *o->plan_out = plan;
    }
    if (n_pages == 0) {
        const int64_t most = (most_tokens + o->page_size - 1) / o->page_size;
        if (most * max_seqs > INT_MAX) {
            rc = br_fail(BR_EINVAL, "scheduler: %lld KV pages per sequence x max_seqs %d = %lld pages, more than %d: "
                                    "lower --max-seqs or raise --page-size",
                         (long long)most, max_seqs, (long long)(most * max_seqs), INT_MAX);
            if (o->wb) rc = o->wb->agree(o->wb->ctx, rc);
            goto cleanup;
        }
        n_pages = (int)(most * max_seqs);
        /* the CPU engine's cache is host memory, f32 K and V (policy_kv_create_tp): more than the machine holds is a
         * message (exit 2) naming what fits, not a failed allocation -- or, where the kernel overcommits, an
         * allocation that succeeds and a process killed later */
        const long phys_pages = sysconf(_SC_PHYS_PAGES), phys_page = sysconf(_SC_PAGESIZE);
        const int tps = o->tp && o->tp->size > 1 ? o->tp->size : 1;
        const int64_t kv_seq = most * o->page_size * 2 * (int64_t)c->n_layers * (c->n_kv_heads / tps) * c->head_dim * 4;
        const int64_t phys = phys_pages > 0 && phys_page > 0 ? (int64_t)phys_pages * phys_page : 0;
        if (o->device == ROLLOUT_DEVICE_CPU && phys > 0 && kv_seq * max_seqs > phys) {
            rc = br_fail(BR_EINVAL, "scheduler: the KV cache of max_seqs %d x %lld tokens a sequence needs %.1f GB of "
                                    "host memory, more than this machine's %.1f GB (%lld such sequences would fill it); "
                                    "lower --max-seqs",
                         max_seqs, (long long)(most * o->page_size), (double)(kv_seq * max_seqs) / 1e9,
                         (double)phys / 1e9, (long long)(phys / kv_seq));
            if (o->wb) rc = o->wb->agree(o->wb->ctx, rc);
            goto cleanup;
        }
    }

    /* the engine first: with a weights broadcast its creation is collective, so every rank must reach it whatever
     * its own jobs hold */
    rollout_engine_opts eo = {o->device, o->mode, T, n_pages,
                              o->page_size, o->tp, o->wb, o->tuning};
    double t_mark = br_now_s();
    if (o->engine) eng = o->engine;
    else if ((rc = rollout_engine_create(w, &eo, &eng)) != BR_OK) goto cleanup;
    st->s_create = br_now_s() - t_mark;
    t_mark = br_now_s();
    for (int64_t i = 0; i < n_jobs; i++)
        if ((rc = check_job(w, &jobs[i], o->page_size, n_pages)) != BR_OK) goto cleanup;
    kv = rollout_engine_kv(eng);
    slots = calloc((size_t)max_seqs, sizeof *slots);
    rows = malloc((size_t)T * sizeof *rows);
    outs = malloc((size_t)T * sizeof *outs);
    tok = malloc((size_t)T * sizeof *tok);
    pos = malloc((size_t)T * sizeof *pos);
    seqs = malloc((size_t)T * sizeof *seqs);
    want = malloc((size_t)T);
    row_slot = malloc((size_t)T * sizeof *row_slot);
    row_index = malloc((size_t)T * sizeof *row_index);
    if (!slots || !rows || !outs || !tok || !pos || !seqs || !want || !row_slot || !row_index) {
        rc = br_fail(BR_ENOMEM, "scheduler: cannot allocate buffers for %d tokens", T);
        goto cleanup;
    }
    for (int s = 0; s < max_seqs; s++)
        if ((rc = policy_seq_init(kv, &slots[s].seq)) != BR_OK) goto cleanup;
    if ((rc = policy_seq_init(kv, &pf.seq)) != BR_OK) goto cleanup;
    const int free_at_start = kv->n_free;

    int64_t next_job = 0, done = 0, tokens_out = 0;
    while (done < n_jobs) {
        /* Admit jobs in order while a slot and their pages are free. */
        for (int s = 0; s < max_seqs && next_job < n_jobs; s++) {
            if (slots[s].in_use) continue;
            rc = admit_next(eng, kv, &pf, share, &slots[s], jobs, n_jobs, next_job, results, st);
            if (rc == BR_ERUNTIME) break; /* cache full, or a shared prompt's prefill to come: wait a step */
            if (rc != BR_OK) goto cleanup;
            next_job++;
        }
        /* Build the step: decoding sequences first (one token each), then prefill chunks, under the budget. */
        int n = 0, n_rows = 0;
        int64_t prefill_rows = 0; /* rows of sequences still in their prompt (the second pass) */
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1 && pf.active && pf.fed < pf.len && n < T) { /* a shared prompt first: its group waits */
                int take = pf.len - pf.fed;
                if (take > o->prefill_chunk) take = o->prefill_chunk;
                if (take > T - n) take = T - n;
                for (int t = 0; t < take; t++, n++) {
                    tok[n] = pf.job->prompt[pf.fed + t];
                    pos[n] = pf.fed + t;
                    seqs[n] = &pf.seq;
                    want[n] = 0;
                }
                pf.fed += take;
                st->kv_read_tokens += pf.fed;
                prefill_rows += take;
            }
            for (int s = 0; s < max_seqs && n < T; s++) {
                slot *sl = &slots[s];
                if (!sl->in_use) continue;
                const int decoding = sl->fed >= sl->job->prompt_len;
                if (decoding != (pass == 0)) continue;
                int take = job_inputs(sl) - sl->fed;
                if (take > o->prefill_chunk) take = o->prefill_chunk;
                if (take > T - n) take = T - n;
                for (int t = 0; t < take; t++) {
                    const int i = sl->fed + t;
                    tok[n] = job_input(sl, i);
                    pos[n] = i;
                    seqs[n] = &sl->seq;
                    want[n] = i >= sl->job->prompt_len - 1;
                    if (want[n]) {
                        describe_row(sl, i, &rows[n_rows]);
                        row_slot[n_rows] = s;
                        row_index[n_rows++] = i;
                    }
                    n++;
                }
                sl->fed += take;
                if (take > 0) st->kv_read_tokens += sl->fed; /* its keys, read once per step (formula: bench rl) */
                if (pass == 1) prefill_rows += take;
            }
        }
        if (n == 0) {
            rc = br_fail(BR_ERUNTIME, "scheduler: no progress possible (%lld of %lld jobs done)", (long long)done,
                         (long long)n_jobs);
            goto cleanup;
        }
        policy_batch b = {n, tok, pos, seqs, want};
        const double t_step = br_now_s();
        st->s_host += t_step - t_mark;
        if ((rc = rollout_engine_step(eng, &b, rows, outs)) != BR_OK) goto cleanup;
        t_mark = br_now_s();
        if (prefill_rows) {
            st->steps_prefill++;
            st->s_prefill += t_mark - t_step;
        } else {
            st->steps_decode++;
            st->s_decode += t_mark - t_step;
        }
        st->rows_prefill += prefill_rows;
        st->rows_decode += n - prefill_rows;
        for (int r = 0; r < n_rows; r++) {
            if ((rc = emit(c, &slots[row_slot[r]], row_index[r], &outs[r])) != BR_OK) goto cleanup;
            tokens_out++;
        }
        for (int s = 0; s < max_seqs; s++) {
            slot *sl = &slots[s];
            if (!sl->in_use || !job_done(sl)) continue;
            policy_kv_release(kv, &sl->seq);
            sl->in_use = 0;
            done++;
            if (o->on_result) { /* the callee takes the arrays: the slot's result is zeroed whatever it returns */
                rollout_result r = *sl->res;
                memset(sl->res, 0, sizeof *sl->res);
                if ((rc = o->on_result(o->on_result_ctx, (int64_t)(sl->job - jobs), &r)) != BR_OK) goto cleanup;
            }
        }
        if (progress) progress(progress_ctx, done, n_jobs, tokens_out);
    }
    st->tokens_out = tokens_out;
    st->s_host += br_now_s() - t_mark;
    if (pf.active || kv->n_free != free_at_start) /* every sequence ended, every prefix was let go */
        rc = br_fail(BR_ERUNTIME, "scheduler: %d of %d KV pages were not returned at the end of the run",
                     free_at_start - kv->n_free, free_at_start);

cleanup:
    if (rc != BR_OK)
        for (int64_t i = 0; i < n_jobs; i++) rollout_result_free(&results[i]);
    if (slots && kv)
        for (int s = 0; s < max_seqs; s++) {
            /* after a failure, sequences still in flight give their pages back (the engine may outlive us) */
            if (slots[s].in_use) policy_kv_release(kv, &slots[s].seq);
            policy_seq_free(&slots[s].seq);
        }
    if (pf.active && kv) policy_kv_release(kv, &pf.seq);
    policy_seq_free(&pf.seq);
    free(slots);
    free(rows);
    free(outs);
    free(tok);
    free(pos);
    free(seqs);
    free(want);
    free(row_slot);
    free(row_index);
    if (!o->engine) rollout_engine_free(eng);
    return rc;
}

/* ---- Device memory plan (scheduler.h). Mirrors, buffer by buffer, weights_build, kv_build and acts_build of
 * rollout/engine_cuda.c; the engine allocates what this computes, so a change there must come here too. */

static int64_t pad16_64(int64_t k) { return (k + 15) / 16 * 16; }

void rollout_mem_plan_compute(const policy_config *c, rollout_mem_plan *p) {
    const int64_t D = c->dim, hd = c->head_dim, H = c->n_heads, KV = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    const int64_t tps = p->tp_size > 1 ? p->tp_size : 1, Hl = H / tps, KVl = KV / tps, Fl = F / tps;
    const int64_t T = p->max_tokens > 0 ? p->max_tokens : 0;
    const int bf = p->mode != KERN_MODE_FP32; /* K padded to 16 for the tensor-core / cuBLAS GEMMs */
#define KP(k) (bf ? pad16_64(k) : (int64_t)(k))
    const int64_t wes = p->mode == KERN_MODE_FP32 && p->wdtype == KERN_F32 ? 4 : 2; /* matrices */
    const int64_t ees = p->wdtype == KERN_BF16 ? 2 : 4;                                /* embeddings */
    const int glu = c->act == POLICY_ACT_SILU_GLU, ln = c->norm != POLICY_NORM_RMS;
    /* weights: per layer q, k, v, o, (gate), up, down; biases; norms; q/k norms */
    int64_t layer = (Hl * hd * KP(D) + 2 * KVl * hd * KP(D) + D * KP(Hl * hd)) * wes;
    layer += ((glu ? 2 : 1) * Fl * KP(D) + D * KP(Fl)) * wes;
    if (c->qkv_bias) layer += (Hl * hd + 2 * KVl * hd) * 4;
    if (c->out_bias) layer += (D + Fl + D) * 4;
    layer += (ln ? 4 : 2) * D * 4;
    if (c->qk_norm) layer += 2 * hd * 4;
    p->weights_step = layer * c->n_layers + V * KP(D) * wes + (ln ? 2 : 1) * D * 4; /* + the LM head, final norm */
    p->weights = p->weights_step + V * D * ees;                                     /* + the embedding table */
    if (c->learned_pos) p->weights += (int64_t)c->max_pos * D * ees;
    else p->weights += (int64_t)c->max_pos * (hd / 2) * 2 * 4; /* RoPE table */
    /* KV cache: K and V, every layer, this rank's KV heads; bf16 elements, f32 in the fp32 mode (rollout_mem_kv_name) */
    p->kv_token = 2 * (int64_t)c->n_layers * KVl * hd * (p->mode == KERN_MODE_FP32 ? 4 : 2);
    p->kv = (int64_t)p->n_pages * p->page_size * p->kv_token;
    /* activations: sized for the whole model's heads and MLP (also under tensor parallelism) */
    int64_t widest = D > H * hd ? D : H * hd;
    if (F > widest) widest = F;
    int64_t row = (D + D + H * hd + 2 * KV * hd + H * hd + D + 2 * F) * 4 + pad16_64(widest) * 2;
    if (c->qk_norm) row += (H * hd + KV * hd) * 4;
    p->acts = T * row;
    p->logits = T * V * 4;
    const int64_t max_pages = p->page_size > 0 ? ((int64_t)c->max_pos + p->page_size - 1) / p->page_size : 0;
    p->step_io = T * (4 * 4 + max_pages * 4 + 32 /* kern_row_req */ + 32 /* kern_row_out */);
    /* workspaces: vocabulary rows (32-byte partials per segment of 8192 entries), the sampler's sort (below), row-parallel GEMM partials (8
     * chunks of up to 2048 rows, plus 64 KiB of tile counters), split-KV partials (standard mode: fewer rows than
     * 4/5 of the SMs, at most 64 splits; 256 SMs assumed), tensor-parallel partials (8 chunks of 2048 rows); the
     * fp32 mode's row-parallel chunk partials (engine_cuda.c f32_parts: max(heads, 16) chunks of up to 64 rows, also
     * its tensor-parallel all-gather buffer) */
    const int64_t Tr = T < 2048 ? T : 2048;
    p->workspaces = T * ((V + 8191) / 8192) * 32;
    /* the top-k / top-p sampler's passes of up to G = ROLLOUT_FILTER_ROWS rows (kern_cuda_sample_filter_workspace:
     * keys and ids twice, 16 bytes an entry; offsets, rows, lse and n (4 bytes a row), Gumbel partials (8 bytes per
     * row and segment of 8192); 256 bytes of rounding for each of those 9 arrays; 256 KiB for CUB) and its (T)
     * 12-byte requests */
    const int64_t G = T < ROLLOUT_FILTER_ROWS ? T : ROLLOUT_FILTER_ROWS;
    p->workspaces += 16 * G * V + 16 * G + 4 + 8 * G * ((V + 8191) / 8192) + 9 * 256 + 262144 + T * 12;
    if (p->mode == KERN_MODE_INVARIANT) {
        p->workspaces += 8 * Tr * D * 4 + 65536;
        if (tps > 1) p->workspaces += 8 * Tr * D * 4;
    }
    if (p->mode == KERN_MODE_FP32) {
        const int64_t cmax = H > POLICY_MLP_CHUNKS ? H : POLICY_MLP_CHUNKS;
        p->workspaces += cmax * (T < ROLLOUT_F32_SLICE ? T : ROLLOUT_F32_SLICE) * D * 4;
    }
    if (p->mode == KERN_MODE_STANDARD && hd >= 32) {
        int64_t rows = (256 * 4 / 5) / (KV > 0 ? KV : 1) + 1;
        if (rows > T) rows = T;
        p->workspaces += rows * H * 64 * (hd + 2) * 4;
    }
    /* the invariant mode's ordered split of the decode attention (engine_cuda.c, attention.cu
     * kern_cuda_attn_decode_split_workspace): per row and head, a score per key and per chunk of 32 keys its max,
     * alpha, psum and hd value sums, plus 32 split maxes and 33 counter words; for the rows that may split, at most
     * one per 4 x KV SMs (KERN_CUDA_ATTN_SPLIT_SPREAD; 256 SMs assumed) */
    int64_t split_rows = 0;
    if (p->mode == KERN_MODE_INVARIANT && hd >= 32 && KVl > 0) {
        split_rows = 256 / (4 * KVl);
        if (split_rows > T) split_rows = T;
        const int64_t nc = (max_pages * p->page_size + 31) / 32;
        p->workspaces += split_rows * Hl * (nc * 32 + 3 * nc + nc * hd + 32 + 33) * 4;
    }
#undef KP
    /* not in a buffer: cuBLAS and the CUDA context's own growth, 1 MiB a decode-step graph -- one per batch size
     * (<= max_seqs); in the standard mode one per batch size and split-KV count (kern_cuda_attn_splitkv_splits' most
     * splits at 256 SMs, one rank) --, allocator rounding: a guess, kept generous */
    int64_t graphs = p->max_seqs > 0 ? p->max_seqs : 0;
    if (p->mode == KERN_MODE_STANDARD && hd >= 32 && tps == 1 && KV > 0)
        for (int64_t m = 1; m <= p->max_seqs && m * KV * 5 < 256 * 4; m++) {
            const int64_t splits = (256 + m * KV - 1) / (m * KV);
            graphs += (splits < 64 ? splits : 64) - 1;
        }
    /* the invariant mode: for each batch size that may split, one graph per split count 2, 4, .. 32 (counted
     * whatever max_seqs, so that rollout_mem_fit's fixed part holds them) */
    graphs += split_rows * 5;
    p->reserve = ((int64_t)256 << 20) + (graphs << 20);
    p->total = p->weights + p->kv + rollout_mem_plan_step_bytes(p) + p->reserve;
}

int64_t rollout_mem_plan_step_bytes(const rollout_mem_plan *p) {
    return p->acts + p->logits + p->step_io + p->workspaces;
}

static double gb(int64_t b) { return (double)b / 1e9; }

const char *rollout_mem_kv_name(kern_mode mode) { return mode == KERN_MODE_FP32 ? "fp32" : "bf16"; }

/* n with thousands separators ("1,280") into buf. */
static const char *group(int64_t n, char *buf, size_t cap) {
    char d[32];
    snprintf(d, sizeof d, "%lld", (long long)(n < 0 ? -n : n));
    size_t len = strlen(d), o = 0;
    if (n < 0 && o + 1 < cap) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        buf[o++] = d[i];
        if ((len - 1 - i) % 3 == 0 && i + 1 < len && o + 1 < cap) buf[o++] = ',';
    }
    buf[o] = '\0';
    return buf;
}

void rollout_mem_share(const rollout_job *jobs, int64_t n_jobs, int page_size, rollout_mem_plan *p) {
    p->share_group = 0;
    p->share_pages_min = p->share_pages_max = 0;
    if (page_size < 1 || n_jobs < 2) return;
    int64_t g_min = INT64_MAX, s_min = INT64_MAX, s_max = 0;
    for (int64_t i = 0; i < n_jobs;) { /* one run of same-prompt jobs: a group of admit_next */
        int64_t end = i + 1;
        while (end < n_jobs && rollout_same_prompt(&jobs[i], &jobs[end])) end++;
        const int64_t len = jobs[i].prompt_len - 1, full = len / page_size;
        if (jobs[i].forced || end - i < 2 || full < 1) return; /* a job that shares nothing: no sharing model */
        if (end - i < g_min) g_min = end - i;
        if (full < s_min) s_min = full;
        if (full > s_max) s_max = full;
        i = end;
    }
    p->share_group = g_min > INT_MAX ? INT_MAX : (int)g_min;
    p->share_pages_min = s_min;
    p->share_pages_max = s_max;
}

/* KV pages for s sequences of pages_seq pages each: s x pages_seq, or with shared prompt KV (rollout_mem_plan) each
 * sequence's own pages, the shared full pages of the at most ceil(s / g) + 1 groups they belong to, and the partly
 * filled last page of the one prompt being shared at a time (the scheduler's prefix). */
static int64_t kv_pages_for(const rollout_mem_plan *p, int64_t pages_seq, int64_t s) {
    if (p->share_group < 2 || p->share_pages_min < 1 || p->share_pages_min >= pages_seq) return s * pages_seq;
    const int64_t g = p->share_group;
    return s * (pages_seq - p->share_pages_min) + ((s + g - 1) / g + 1) * p->share_pages_max + 1;
}

br_status rollout_mem_fit(const policy_config *c, rollout_mem_plan *p, unsigned auto_size, int64_t free_bytes,
                          double utilization, int64_t seq_tokens, int64_t n_jobs) {
    if (!(utilization > 0.0 && utilization <= 1.0))
        return br_fail(BR_EINVAL, "--gpu-memory-utilization %.9g: expected a share of the free memory in (0, 1]",
                       utilization);
    if (p->page_size < 1) return br_fail(BR_EINVAL, "memory plan: page size %d must be >= 1", p->page_size);
    if (seq_tokens < 1) seq_tokens = 1;
    if (seq_tokens > c->max_pos) seq_tokens = c->max_pos;
    const int64_t pages_seq = (seq_tokens + p->page_size - 1) / p->page_size;
    p->seq_tokens = pages_seq * p->page_size;
    const int64_t budget = (int64_t)((double)(free_bytes > 0 ? free_bytes : 0) * utilization);
    const int auto_seqs = (auto_size & ROLLOUT_AUTO_MAX_SEQS) != 0, auto_tok = (auto_size & ROLLOUT_AUTO_BATCH_TOKENS) != 0;
    const int64_t per_seq = pages_seq * p->page_size; /* KV slots of one sequence */
    char a[32], b[32];
    p->n_pages = 0;
    if (auto_seqs) p->max_seqs = 0;
    if (auto_tok) {
        /* the largest budget whose step buffers take at most 1/8 of what the weights leave */
        static const int Ts[] = {8192, 4096, 2048, 1024, 512, 256};
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
            p->max_tokens = Ts[i];
            rollout_mem_plan_compute(c, p);
            if (rollout_mem_plan_step_bytes(p) <= (budget - p->weights - p->reserve) / 8) break;
        }
    }
    if (p->max_tokens < 1) return br_fail(BR_EINVAL, "memory plan: max_batch_tokens %d must be >= 1", p->max_tokens);
    const int given_seqs = p->max_seqs;
    p->max_seqs = 0; /* the fixed part: no KV, the reserve without graphs */
    rollout_mem_plan_compute(c, p);
    p->max_seqs = given_seqs;
    const int64_t fixed = p->weights + rollout_mem_plan_step_bytes(p) + p->reserve;
    /* the most sequences whose KV pages (kv_pages_for) and decode graphs (1 MiB each) fit what the fixed part leaves */
    const int64_t page_bytes = (int64_t)p->page_size * p->kv_token, avail = budget - fixed;
#define SEQS_BYTES(n) (kv_pages_for(p, pages_seq, (n)) * page_bytes + (n) * ((int64_t)1 << 20))
    int64_t fit = avail > 0 ? avail / (per_seq * p->kv_token + ((int64_t)1 << 20)) : 0; /* without sharing */
    while (avail > 0 && SEQS_BYTES(fit + 1) <= avail) fit++; /* sharing: a few more (steps of 1, from below) */
    while (fit > 0 && SEQS_BYTES(fit) > avail) fit--;
#undef SEQS_BYTES
    const int64_t fit_int = fit > INT_MAX / pages_seq ? INT_MAX / pages_seq : fit;
    char tok_flag[96];
    snprintf(tok_flag, sizeof tok_flag, "--max-batch-tokens %d%s", p->max_tokens, auto_tok ? " (chosen)" : "");
    if (auto_seqs) {
        int64_t want = n_jobs < 1 ? 1 : n_jobs;
        if (want > 512) want = 512;
        if (fit < 1)
            return br_fail(BR_EINVAL, "--device cuda: not even one sequence of %s tokens fits: it needs %.2f GB of KV "
                                      "cache (%s), with %.2f GB of weights and %.2f GB of step buffers for %s; "
                                      "%.2f GB free x %.2f (--gpu-memory-utilization) = %.2f GB (lower --max-batch-tokens "
                                      "or --max-new-tokens, or raise --gpu-memory-utilization)",
                           group(p->seq_tokens, a, sizeof a), gb(kv_pages_for(p, pages_seq, 1) * page_bytes),
                           rollout_mem_kv_name(p->mode),
                           gb(p->weights),
                           gb(rollout_mem_plan_step_bytes(p)), tok_flag, gb(free_bytes), utilization, gb(budget));
        p->max_seqs = (int)(want < fit_int ? want : fit_int);
    } else if (p->max_seqs > fit) {
        return br_fail(BR_EINVAL, "--device cuda: --max-seqs %d needs %.1f GB of KV cache (%s) at %s tokens/sequence, "
                                  "plus %.2f GB of weights and %.2f GB of step buffers for %s; %.1f GB free x %.2f "
                                  "(--gpu-memory-utilization) = %.1f GB: at most %s sequences fit (lower --max-seqs, "
                                  "--max-batch-tokens or --max-new-tokens, or raise --gpu-memory-utilization)",
                       p->max_seqs, gb(kv_pages_for(p, pages_seq, p->max_seqs) * page_bytes), rollout_mem_kv_name(p->mode),
                       group(p->seq_tokens, a, sizeof a),
                       gb(p->weights), gb(rollout_mem_plan_step_bytes(p)), tok_flag, gb(free_bytes), utilization,
                       gb(budget), group(fit, b, sizeof b));
    }
    if (p->max_seqs < 1) return br_fail(BR_EINVAL, "memory plan: max_seqs %d must be >= 1", p->max_seqs);
    const int64_t n_pages = kv_pages_for(p, pages_seq, p->max_seqs);
    if (n_pages > INT_MAX)
        return br_fail(BR_EINVAL, "scheduler: %lld KV pages per sequence x max_seqs %d = %lld pages, more than %d: "
                                  "lower --max-seqs or raise --page-size",
                       (long long)pages_seq, p->max_seqs, (long long)n_pages, INT_MAX);
    p->n_pages = (int)n_pages;
    rollout_mem_plan_compute(c, p);
    return BR_OK;
}

void rollout_mem_plan_describe(const rollout_mem_plan *p, char *buf, size_t cap) {
    char a[32], b[32];
    snprintf(buf, cap,
             "cuda memory plan: max_seqs %d, max_batch_tokens %d, %s KV pages of %d tokens (%s tokens/sequence): "
             "weights %.2f GB, KV cache %.2f GB (%s), activations %.2f GB, logits %.2f GB, step inputs %.2f GB, "
             "workspaces %.2f GB, reserve %.2f GB; total %.2f GB",
             p->max_seqs, p->max_tokens, group(p->n_pages, a, sizeof a), p->page_size, group(p->seq_tokens, b, sizeof b),
             gb(p->weights), gb(p->kv), rollout_mem_kv_name(p->mode), gb(p->acts), gb(p->logits), gb(p->step_io), gb(p->workspaces), gb(p->reserve),
             gb(p->total));
    if (p->share_group >= 2 && p->share_pages_min >= 1) {
        const size_t len = strlen(buf);
        if (len < cap)
            snprintf(buf + len, cap - len, " (prompt pages shared: %lld-%lld full pages per group of >= %d samples)",
                     (long long)p->share_pages_min, (long long)p->share_pages_max, p->share_group);
    }
}

br_status rollout_device_memory(rollout_device d, int64_t *free_bytes, int64_t *total_bytes) {
    *free_bytes = *total_bytes = 0;
    const rollout_backend_i *be = rollout_backend(d);
    if (be && be->mem_info && be->device_count() > 0) {
        be->mem_info(free_bytes, total_bytes);
        return BR_OK;
    }
    return br_fail(BR_EINVAL, "device memory: no %s device with its own memory in this build",
                   rollout_device_name(d));
}
