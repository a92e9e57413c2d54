/* The score driver (api/driver.h): rollouts file -> teacher-forced jobs -> data-parallel run -> scores file. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/driver.h"

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
        if (comm_buf_get(b, &temp, 4) || comm_buf_get(b, &lp, 4) || comm_buf_get(b, &lc, 4) ||
            b->rd + 4 * ((size_t)lp + (size_t)lc) > b->len)
            break;
        const int32_t *pt = (const int32_t *)(b->data + b->rd);
        b->rd += 4 * (size_t)lp;
        const int32_t *ct = (const int32_t *)(b->data + b->rd);
        b->rd += 4 * (size_t)lc;
        if (lc == 0) continue;
        rollout_job *j = &jobs[k];
        j->sample_id = k++; /* score draws no noise, so the id is free */
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

/* Rank 0, before any engine exists: every sample fits the model's context and has a temperature score can divide by
 * (a file from another program or a damaged one must fail here with its name, not size a cache or write NaNs). */
static br_status check_samples(const char *path, const h5log_rollouts *r, const policy_config *c) {
    for (int64_t i = 0; i < r->n; i++) {
        const int64_t lp = r->prompt_offsets[i + 1] - r->prompt_offsets[i];
        const int64_t lc = r->completion_offsets[i + 1] - r->completion_offsets[i];
        const float t = r->temperature[i];
        if (!isfinite(t) || t < 0.0f || (t > 0.0f && t < FLT_MIN))
            return br_fail(BR_EINVAL, "%s: sample %lld: temperature = %.9g: expected 0 (greedy) or a finite value >= %.9g",
                           path, (long long)r->sample_id[i], (double)t, (double)FLT_MIN);
        if (lp + lc > c->max_pos)
            return br_fail(BR_EINVAL, "%s: sample %lld: prompt (%lld tokens) + completion (%lld tokens) = %lld exceed the "
                                      "model's context length %d",
                           path, (long long)r->sample_id[i], (long long)lp, (long long)lc, (long long)(lp + lc),
                           c->max_pos);
    }
    return BR_OK;
}

/* Rank 0: the scores file's rows, read from the rollouts (sample ids, offsets) and the journal (logprobs, digests).
 * Job k is the k-th sample with a non-empty completion (unpack_jobs); the token datasets keep a cursor. */
typedef struct {
    const h5log_rollouts *r;
    driver_parts *parts;
    int64_t row, job, pos; /* cursor: the sample, its job, and the token inside it */
} score_source;

static br_status score_fill(void *ctx, h5log_field f, int64_t start, int64_t count, void *buf) {
    score_source *c = ctx;
    const h5log_rollouts *r = c->r;
    if (f == H5LOG_F_SAMPLE_ID) {
        memcpy(buf, r->sample_id + start, (size_t)count * sizeof *r->sample_id);
        return BR_OK;
    }
    if (f == H5LOG_F_COMPLETION_OFFSETS) {
        memcpy(buf, r->completion_offsets + start, (size_t)count * sizeof *r->completion_offsets);
        return BR_OK;
    }
    if (f != H5LOG_F_LOGPROBS && f != H5LOG_F_LOGITS_DIGEST) return br_fail(BR_EINVAL, "score: no field %d", (int)f);
    const driver_part what = f == H5LOG_F_LOGPROBS ? DRIVER_PART_LOGPROBS : DRIVER_PART_DIGESTS;
    const size_t esize = f == H5LOG_F_LOGPROBS ? 4 : 8;
    if (start == 0) c->row = c->job = c->pos = 0;
    br_status rc = BR_OK;
    for (int64_t k = 0; k < count && rc == BR_OK;) {
        if (c->row >= r->n) return br_fail(BR_ERUNTIME, "score: tokens beyond the last sample");
        const int64_t lc = r->completion_offsets[c->row + 1] - r->completion_offsets[c->row];
        if (lc == 0) { /* no job, nothing scored */
            c->row++;
            continue;
        }
        int32_t n = 0;
        if ((rc = driver_parts_get(c->parts, c->job, &n, NULL)) != BR_OK) return rc;
        if (n != lc)
            return br_fail(BR_ERUNTIME, "score: sample %lld: the journal holds %d scores for %lld tokens",
                           (long long)r->sample_id[c->row], n, (long long)lc);
        const int64_t take = lc - c->pos < count - k ? lc - c->pos : count - k;
        rc = driver_parts_load(c->parts, c->job, what, c->pos, take, (char *)buf + (size_t)k * esize);
        k += take;
        c->pos += take;
        if (c->pos == lc) {
            c->row++;
            c->job++;
            c->pos = 0;
        }
    }
    return rc;
}

br_status driver_score(comm_world *world, const driver_opts *o, const char *rollouts) {
    policy_weights *w = NULL;
    h5log_rollouts r = {0};
    h5log_meta meta = {0};
    comm_buf work = {0};
    rollout_job *jobs = NULL;
    int64_t n_jobs = 0;
    driver_parts *parts = NULL;
    char *cfg = NULL;
    br_status rc;

    if ((rc = driver_load_weights(world, o, &w)) != BR_OK) goto done;
    if (world->rank == 0) {
        (void)h5log_guard_set(o->tuning.h5_guard_s);
        rc = h5log_rollouts_read(rollouts, &r, &meta);
        if (rc == BR_OK && !o->allow_other_policy &&
            strcmp(meta.model_fingerprint ? meta.model_fingerprint : "", w->fingerprint_hex))
            rc = br_fail(BR_EINVAL,
                         "%s was generated by a model with fingerprint %s (%s), but %s has fingerprint %s (to score "
                         "under another policy, pass --allow-other-policy)",
                         rollouts, meta.model_fingerprint ? meta.model_fingerprint : "(none)",
                         meta.model_dir ? meta.model_dir : "?", o->random_weights ? o->random_weights : o->model,
                         w->fingerprint_hex);
        if (rc == BR_OK) rc = check_samples(rollouts, &r, &w->cfg);
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
    cfg = driver_config_json(o, NULL, NULL, rollouts, world->size);
    if (o->print_config && world->rank == 0) printf("%s\n", cfg);

    const double t0 = br_now_s();
    const driver_jobs dj = driver_jobs_array(jobs, n_jobs);
    if ((rc = driver_run_and_gather(world, w, o, &dj, &parts)) != BR_OK) goto done;

    if (world->rank == 0) {
        const int64_t T = r.completion_offsets[r.n];
        score_source c = {&r, parts, 0, 0, 0};
        h5log_source src = {.n = r.n, .T = T, .fill = score_fill, .ctx = &c, .piece_bytes = o->tuning.write_piece_bytes};
        h5log_provenance prov;
        driver_prov_bufs pb;
        driver_opts so = *o;
        /* same weights: the rollouts' version; another policy: the version given for the scoring weights */
        if (!o->allow_other_policy || !strcmp(meta.model_fingerprint ? meta.model_fingerprint : "", w->fingerprint_hex))
            so.weight_version = meta.weight_version;
        driver_provenance(&prov, &pb, &so, w, cfg, world->size);
        rc = h5log_scores_write_from(o->out, &src, &prov, meta.fingerprint_hex);
        driver_parts_close(parts);
        parts = NULL;
        if (rc == BR_OK) rc = driver_out_done(o->out);
        if (rc == BR_OK && !o->quiet) {
            double dt = br_now_s() - t0;
            fprintf(stderr, "[bitroll score] wrote %s: %lld samples, %lld tokens scored, %.1f s, %.0f tokens/s (%d rank%s)\n",
                    o->out, (long long)r.n, (long long)T, dt, T / (dt + 1e-9), world->size, world->size > 1 ? "s" : "");
        }
    }
    rc = comm_agree(world, rc);

done:
    driver_parts_close(parts);
    free(jobs);
    comm_buf_free(&work);
    h5log_rollouts_free(&r);
    h5log_meta_free(&meta);
    policy_weights_free(w);
    free(cfg);
    return rc;
}
