/* Continuous-batching scheduler (see scheduler.h). One loop serves generate and score: a job's input stream
 * is its prompt followed by its completion (sampled in generate, given in score); the rows from the last
 * prompt token on produce the completion's log-probs. */
#include "rollout/scheduler.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


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

static br_status admit(policy_kvcache *kv, slot *s, const rollout_job *j, rollout_result *r) {
    br_status rc = policy_kv_reserve(kv, &s->seq, (int)job_tokens(j)); /* <= max_pos: check_job */
    if (rc != BR_OK) return rc;
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
    s->fed = 0;
    s->in_use = 1;
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

    if (o->max_batch_tokens < 1 || o->max_seqs < 1 || o->prefill_chunk < 1 || o->page_size < 1 || o->n_pages < 0)
        return br_fail(BR_EINVAL, "scheduler: max_batch_tokens (%d), max_seqs (%d), prefill_chunk (%d) and "
                                  "page_size (%d) must be >= 1",
                       o->max_batch_tokens, o->max_seqs, o->prefill_chunk, o->page_size);
    int n_pages = o->engine ? rollout_engine_kv(o->engine)->n_pages : o->n_pages;
    if (o->engine && (rollout_engine_max_tokens(o->engine) < o->max_batch_tokens ||
                      rollout_engine_kv(o->engine)->page_size != o->page_size))
        return br_fail(BR_EINVAL, "scheduler: the engine holds %d tokens per step with pages of %d, asked for %d and %d",
                       rollout_engine_max_tokens(o->engine), rollout_engine_kv(o->engine)->page_size,
                       o->max_batch_tokens, o->page_size);
    if (n_pages == 0) {
        /* Sized for the longest job that fits the context: a longer one is rejected by check_job below, and must not
         * first size the cache (a 10M-token prompt would ask for millions of pages). int64: most * max_seqs can
         * exceed int. */
        int64_t most = 1;
        for (int64_t i = 0; i < n_jobs; i++) {
            int64_t t = job_tokens(&jobs[i]);
            if (t > c->max_pos) t = c->max_pos;
            int64_t need = (t + o->page_size - 1) / o->page_size;
            if (need > most) most = need;
        }
        if (most * o->max_seqs > INT_MAX)
            return br_fail(BR_EINVAL, "scheduler: %lld KV pages per sequence x max_seqs %d = %lld pages, more than %d: "
                                      "lower --max-seqs or raise --page-size",
                           (long long)most, o->max_seqs, (long long)(most * o->max_seqs), INT_MAX);
        n_pages = (int)(most * o->max_seqs);
    }
    for (int64_t i = 0; i < n_jobs; i++) memset(&results[i], 0, sizeof results[i]);

    /* the engine first: with a weights broadcast its creation is collective, so every rank must reach it whatever
     * its own jobs hold */
    const int T = o->max_batch_tokens;
    rollout_engine_opts eo = {o->device, o->mode, T, n_pages,
                              o->page_size, o->tp, o->wb, o->tuning};
    if (o->engine) eng = o->engine;
    else if ((rc = rollout_engine_create(w, &eo, &eng)) != BR_OK) goto cleanup;
    for (int64_t i = 0; i < n_jobs; i++)
        if ((rc = check_job(w, &jobs[i], o->page_size, n_pages)) != BR_OK) goto cleanup;
    kv = rollout_engine_kv(eng);
    slots = calloc((size_t)o->max_seqs, sizeof *slots);
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
    for (int s = 0; s < o->max_seqs; s++)
        if ((rc = policy_seq_init(kv, &slots[s].seq)) != BR_OK) goto cleanup;

    int64_t next_job = 0, done = 0, tokens_out = 0;
    while (done < n_jobs) {
        /* Admit jobs in order while a slot and their pages are free. */
        for (int s = 0; s < o->max_seqs && next_job < n_jobs; s++) {
            if (slots[s].in_use) continue;
            rc = admit(kv, &slots[s], &jobs[next_job], &results[next_job]);
            if (rc == BR_ERUNTIME) break; /* cache full: wait for a sequence to end */
            if (rc != BR_OK) goto cleanup;
            next_job++;
        }
        /* Build the step: decoding sequences first (one token each), then prefill chunks, under the budget. */
        int n = 0, n_rows = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int s = 0; s < o->max_seqs && n < T; s++) {
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
            }
        if (n == 0) {
            rc = br_fail(BR_ERUNTIME, "scheduler: no progress possible (%lld of %lld jobs done)", (long long)done,
                         (long long)n_jobs);
            goto cleanup;
        }
        policy_batch b = {n, tok, pos, seqs, want};
        if ((rc = rollout_engine_step(eng, &b, rows, outs)) != BR_OK) goto cleanup;
        for (int r = 0; r < n_rows; r++) {
            if ((rc = emit(c, &slots[row_slot[r]], row_index[r], &outs[r])) != BR_OK) goto cleanup;
            tokens_out++;
        }
        for (int s = 0; s < o->max_seqs; s++) {
            slot *sl = &slots[s];
            if (!sl->in_use || !job_done(sl)) continue;
            policy_kv_release(kv, &sl->seq);
            sl->in_use = 0;
            done++;
        }
        if (progress) progress(progress_ctx, done, n_jobs, tokens_out);
    }

cleanup:
    if (rc != BR_OK)
        for (int64_t i = 0; i < n_jobs; i++) rollout_result_free(&results[i]);
    if (slots && kv)
        for (int s = 0; s < o->max_seqs; s++) {
            /* after a failure, sequences still in flight give their pages back (the engine may outlive us) */
            if (slots[s].in_use) policy_kv_release(kv, &slots[s].seq);
            policy_seq_free(&slots[s].seq);
        }
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
