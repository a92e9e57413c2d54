/* libbitroll engines: open/close, score, generate (include/bitroll/bitroll.h). Every call runs on the caller's
 * rollout_engine through the continuous-batching scheduler, so the API computes exactly what the CLI does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "comm/comm_group.h"

_Static_assert((int)BITROLL_FINISH_STOP == (int)BR_FINISH_STOP && (int)BITROLL_FINISH_LENGTH == (int)BR_FINISH_LENGTH &&
                   (int)BITROLL_FINISH_CONTEXT == (int)BR_FINISH_CONTEXT,
               "bitroll_finish and br_finish are the same values");
_Static_assert((int)BITROLL_KERNELS_INVARIANT == (int)KERN_MODE_INVARIANT &&
                   (int)BITROLL_KERNELS_FP32 == (int)KERN_MODE_FP32 &&
                   (int)BITROLL_KERNELS_STANDARD == (int)KERN_MODE_STANDARD,
               "bitroll_kernels and kern_mode are the same values");
_Static_assert((int)BITROLL_DEVICE_CPU == (int)ROLLOUT_DEVICE_CPU && (int)BITROLL_DEVICE_CUDA == (int)ROLLOUT_DEVICE_CUDA,
               "bitroll_device and rollout_device are the same values");

bitroll_status api_fail(bitroll_engine *e, br_status st) {
    if (e) snprintf(e->err, sizeof e->err, "%s", st == BR_OK ? "" : br_last_error());
    return api_status(st);
}

void api_bind(bitroll_engine *e) {
    if (e->o.device == BITROLL_DEVICE_CUDA) e->be->select_device(e->o.gpu);
}

void bitroll_engine_opts_init(bitroll_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = (int)sizeof *o;
    o->device = BITROLL_DEVICE_CPU;
    o->kernels = BITROLL_KERNELS_INVARIANT;
    o->max_batch_tokens = 256;
    o->max_seqs = 64;
    o->max_seq_len = 0;
    o->prefill_chunk = 64;
    o->page_size = 16;
}

const char *bitroll_engine_error(const bitroll_engine *e) { return e ? e->err : "engine is NULL"; }

static char *dup_str(const char *s) {
    if (!s) return NULL;
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

br_status api_engine_create(bitroll_engine *e, const policy_weights *w, rollout_engine **out) {
    const int len = e->o.max_seq_len;
    const int n_pages = e->o.max_seqs * ((len + e->o.page_size - 1) / e->o.page_size);
    const rollout_engine_opts eo = {(rollout_device)e->o.device, (kern_mode)e->o.kernels, e->o.max_batch_tokens,
                                    n_pages, e->o.page_size, e->tpw.tp_size > 1 ? &e->tp : NULL, NULL, e->tuning};
    return rollout_engine_create(w, &eo, out);
}

static br_status check_opts(const bitroll_engine_opts *o) {
    if (o->struct_size != (int)sizeof *o)
        return br_fail(BR_EINVAL, "bitroll_engine_opts: struct_size %d, this library's is %d (call "
                                  "bitroll_engine_opts_init; header and library versions differ?)",
                       o->struct_size, (int)sizeof *o);
    if (!o->model_dir == !o->random_weights)
        return br_fail(BR_EINVAL, "bitroll_engine_opts: give exactly one of model_dir and random_weights");
    if (o->device != BITROLL_DEVICE_CPU && o->device != BITROLL_DEVICE_CUDA)
        return br_fail(BR_EINVAL, "bitroll_engine_opts.device = %d is not BITROLL_DEVICE_CPU or _CUDA", (int)o->device);
    if (o->kernels < BITROLL_KERNELS_INVARIANT || o->kernels > BITROLL_KERNELS_STANDARD)
        return br_fail(BR_EINVAL, "bitroll_engine_opts.kernels = %d is not a bitroll_kernels value", (int)o->kernels);
    if (o->max_batch_tokens < 1 || o->max_seqs < 1 || o->prefill_chunk < 1 || o->page_size < 1 || o->max_seq_len < 0 ||
        o->gpu < 0 || o->weight_version < 0)
        return br_fail(BR_EINVAL, "bitroll_engine_opts: max_batch_tokens (%d), max_seqs (%d), prefill_chunk (%d), "
                                  "page_size (%d) must be >= 1; max_seq_len (%d), gpu (%d), weight_version (%lld) >= 0",
                       o->max_batch_tokens, o->max_seqs, o->prefill_chunk, o->page_size, o->max_seq_len, o->gpu,
                       (long long)o->weight_version);
    return BR_OK;
}

bitroll_status bitroll_engine_open(const bitroll_engine_opts *o, bitroll_engine **out, bitroll_error *err) {
    if (!out) return api_fail_err(err, br_fail(BR_EINVAL, "bitroll_engine_open: out is NULL"));
    *out = NULL;
    if (!o) return api_fail_err(err, br_fail(BR_EINVAL, "bitroll_engine_open: options are NULL"));
    br_status rc = check_opts(o);
    if (rc != BR_OK) return api_fail_err(err, rc);
    bitroll_engine *e = calloc(1, sizeof *e);
    if (!e) return api_fail_err(err, br_fail(BR_ENOMEM, "bitroll_engine_open: out of memory"));
    e->o = *o;
    e->model_dir = dup_str(o->model_dir);
    e->random_weights = dup_str(o->random_weights);
    e->o.model_dir = e->model_dir;
    e->o.random_weights = e->random_weights;
    e->weight_version = o->weight_version;
    e->tpw.tp_size = 1;
    if ((o->model_dir && !e->model_dir) || (o->random_weights && !e->random_weights)) {
        rc = br_fail(BR_ENOMEM, "bitroll_engine_open: out of memory");
        goto fail;
    }
    if ((rc = br_tuning_from_env(&e->tuning)) != BR_OK) goto fail;
    e->be = rollout_backend((rollout_device)o->device);
    if (!e->be) {
        rc = br_fail(BR_EINVAL, "device cuda: this libbitroll was built without CUDA");
        goto fail;
    }
    if (o->device == BITROLL_DEVICE_CUDA) {
        const int n = e->be->device_count();
        if (o->gpu >= n) {
            rc = br_fail(BR_EINVAL, "gpu %d: %d CUDA device%s visible", o->gpu, n, n == 1 ? "" : "s");
            goto fail;
        }
        api_bind(e);
    }
    if (o->mpi_comm) {
        if (o->device == BITROLL_DEVICE_CUDA) {
            rc = br_fail(BR_EINVAL, "mpi_comm: tensor parallelism through the API runs on the CPU engine only; on "
                                    "GPUs use `mpirun ... bitroll generate --tp N`");
            goto fail;
        }
        if ((rc = comm_group_world(o->mpi_comm, &e->tpw)) != BR_OK) goto fail;
        e->tp = (policy_tp){e->tpw.tp_rank, e->tpw.tp_size, comm_tp_chunk_sum, &e->tpw, NULL, NULL, NULL};
    }
    rc = o->model_dir ? policy_weights_load(o->model_dir, &e->w)
                      : policy_weights_random(o->random_weights, o->weights_seed, &e->w);
    if (rc == BR_OK && e->tpw.tp_size > 1) rc = policy_tp_check(&e->w->cfg, e->tpw.tp_size);
    if (rc != BR_OK) goto fail;
    if (e->o.max_seq_len == 0) e->o.max_seq_len = e->w->cfg.max_pos < 4096 ? e->w->cfg.max_pos : 4096;
    if (e->o.max_seq_len > e->w->cfg.max_pos) {
        rc = br_fail(BR_EINVAL, "max_seq_len %d exceeds the model's context length %d", e->o.max_seq_len,
                     e->w->cfg.max_pos);
        goto fail;
    }
    if ((rc = api_engine_create(e, e->w, &e->eng)) != BR_OK) goto fail;
    e->so = (rollout_sched_opts){.max_batch_tokens = o->max_batch_tokens, .max_seqs = o->max_seqs,
                                 .prefill_chunk = o->prefill_chunk, .page_size = o->page_size,
                                 .device = (rollout_device)o->device, .mode = (kern_mode)o->kernels, .engine = e->eng,
                                 .tuning = e->tuning};
    *out = e;
    return api_fail_err(err, BR_OK);
fail:
    api_fail_err(err, rc);
    bitroll_engine_close(e);
    return api_status(rc);
}

void bitroll_engine_close(bitroll_engine *e) {
    if (!e) return;
    bitroll_weights_discard(e);
    free(e->staged);
    rollout_engine_free(e->eng);
    policy_weights_free(e->w);
    comm_group_free(&e->tpw);
    free(e->model_dir);
    free(e->random_weights);
    free(e);
}

bitroll_status bitroll_engine_get_info(const bitroll_engine *e, bitroll_engine_info *out) {
    if (!e || !out) return BITROLL_EINVAL;
    const policy_config *c = &e->w->cfg;
    memset(out, 0, sizeof *out);
    out->vocab_size = c->vocab;
    out->context_length = c->max_pos;
    out->n_layers = c->n_layers;
    out->dim = c->dim;
    out->eos_id = c->eos_id;
    out->bos_id = c->bos_id;
    out->n_params = e->w->n_params;
    out->weight_version = e->weight_version;
    snprintf(out->fingerprint, sizeof out->fingerprint, "%s", e->w->fingerprint_hex);
    snprintf(out->model_type, sizeof out->model_type, "%s", c->model_type);
    return BITROLL_OK;
}

/* ---------------------------------------------------------------- score */

/* CSR checks shared by score and generate: offsets start at 0 and never decrease, ids in the vocabulary. */
static br_status check_csr(const char *what, int64_t n, const int64_t *off, const int32_t *ids, int vocab,
                           int allow_empty) {
    if (!off) return br_fail(BR_EINVAL, "%s_offsets is NULL", what);
    if (off[0] != 0) return br_fail(BR_EINVAL, "%s_offsets[0] = %lld, must be 0", what, (long long)off[0]);
    for (int64_t i = 0; i < n; i++) {
        if (off[i + 1] < off[i] || (!allow_empty && off[i + 1] == off[i]))
            return br_fail(BR_EINVAL, "%s_offsets[%lld..%lld] = %lld, %lld: %s", what, (long long)i, (long long)i + 1,
                           (long long)off[i], (long long)off[i + 1], allow_empty ? "decreasing" : "an empty sequence");
        if (off[i + 1] - off[i] > INT32_MAX)
            return br_fail(BR_EINVAL, "%s %lld is longer than 2^31 tokens", what, (long long)i);
    }
    if (off[n] > 0 && !ids) return br_fail(BR_EINVAL, "%s tokens are NULL", what);
    for (int64_t t = 0; t < off[n]; t++)
        if (ids[t] < 0 || ids[t] >= vocab)
            return br_fail(BR_EINVAL, "%s token %lld = %d is outside the vocabulary [0, %d)", what, (long long)t, ids[t],
                           vocab);
    return BR_OK;
}

static br_status copy_out(bitroll_engine *e, void *dst, const void *src, size_t bytes, int on_device) {
    if (!bytes) return BR_OK;
    if (on_device) e->be->to_device(dst, src, bytes);
    else memcpy(dst, src, bytes);
    return BR_OK;
}

bitroll_status bitroll_score(bitroll_engine *e, const bitroll_score_in *in, float *logprobs, uint64_t *digests,
                             int on_device) {
    if (!e) return BITROLL_EINVAL;
    if (!in || in->n < 0) return api_fail(e, br_fail(BR_EINVAL, "bitroll_score: no input or n < 0"));
    if (on_device && !e->be->to_device)
        return api_fail(e, br_fail(BR_EINVAL, "bitroll_score: on_device = 1 needs a CUDA engine"));
    const int V = e->w->cfg.vocab;
    br_status rc = check_csr("prompt", in->n, in->prompt_offsets, in->prompt_tokens, V, 0);
    if (rc == BR_OK) rc = check_csr("completion", in->n, in->completion_offsets, in->completion_tokens, V, 1);
    for (int64_t i = 0; rc == BR_OK && in->temperature && i < in->n; i++)
        if (!(in->temperature[i] >= 0.0f) || in->temperature[i] > 1e30f)
            rc = br_fail(BR_EINVAL, "temperature[%lld] = %g: must be a finite number >= 0", (long long)i,
                         (double)in->temperature[i]);
    const int64_t T = rc == BR_OK ? in->completion_offsets[in->n] : 0;
    if (rc == BR_OK && T > 0 && !logprobs) rc = br_fail(BR_EINVAL, "bitroll_score: logprobs is NULL");
    if (rc != BR_OK) return api_fail(e, rc);
    rollout_job *jobs = calloc((size_t)in->n + 1, sizeof *jobs);
    int64_t *which = calloc((size_t)in->n + 1, sizeof *which);
    rollout_result *res = calloc((size_t)in->n + 1, sizeof *res);
    int64_t nj = 0;
    if (!jobs || !which || !res) rc = br_fail(BR_ENOMEM, "bitroll_score: out of memory for %lld samples", (long long)in->n);
    for (int64_t i = 0; rc == BR_OK && i < in->n; i++) {
        const int64_t pa = in->prompt_offsets[i], ca = in->completion_offsets[i];
        const int lc = (int)(in->completion_offsets[i + 1] - ca);
        if (lc == 0) continue; /* nothing to score */
        rollout_job *j = &jobs[nj];
        j->sample_id = nj;
        j->prompt = in->prompt_tokens + pa;
        j->prompt_len = (int)(in->prompt_offsets[i + 1] - pa);
        j->forced = in->completion_tokens + ca;
        j->n_forced = lc;
        j->sampling.temperature = in->temperature ? in->temperature[i] : 1.0f;
        j->sampling.top_p = 1.0f;
        which[nj++] = i;
    }
    if (rc == BR_OK) {
        api_bind(e);
        rc = rollout_run(e->w, &e->so, jobs, nj, res, NULL, NULL);
    }
    for (int64_t k = 0; rc == BR_OK && k < nj; k++) {
        const int64_t a = in->completion_offsets[which[k]];
        copy_out(e, logprobs + a, res[k].logprobs, 4 * (size_t)res[k].n, on_device);
        if (digests) copy_out(e, digests + a, res[k].digests, 8 * (size_t)res[k].n, on_device);
    }
    for (int64_t k = 0; res && k < nj; k++) rollout_result_free(&res[k]);
    free(res);
    free(which);
    free(jobs);
    return api_fail(e, rc);
}

/* ---------------------------------------------------------------- generate */

void bitroll_completions_free(bitroll_completions *c) {
    if (!c) return;
    free(c->offsets);
    free(c->tokens);
    free(c->logprobs);
    free(c->digests);
    free(c->finish_reason);
    free(c);
}

bitroll_status bitroll_generate(bitroll_engine *e, const bitroll_generate_in *in, bitroll_completions **out) {
    if (!e) return BITROLL_EINVAL;
    if (!out) return api_fail(e, br_fail(BR_EINVAL, "bitroll_generate: out is NULL"));
    *out = NULL;
    if (!in || in->n < 0) return api_fail(e, br_fail(BR_EINVAL, "bitroll_generate: no input or n < 0"));
    const int V = e->w->cfg.vocab;
    br_status rc = check_csr("prompt", in->n, in->prompt_offsets, in->prompt_tokens, V, 0);
    if (rc == BR_OK && (in->n_stop_ids < 0 || (in->n_stop_ids > 0 && !in->stop_ids)))
        rc = br_fail(BR_EINVAL, "n_stop_ids = %d with stop_ids %s", in->n_stop_ids, in->stop_ids ? "set" : "NULL");
    for (int i = 0; rc == BR_OK && i < in->n_stop_ids; i++)
        if (in->stop_ids[i] < 0 || in->stop_ids[i] >= V)
            rc = br_fail(BR_EINVAL, "stop_ids[%d] = %d is outside the vocabulary [0, %d)", i, in->stop_ids[i], V);
    rollout_job *jobs = NULL;
    rollout_result *res = NULL;
    bitroll_completions *c = NULL;
    if (rc == BR_OK) {
        jobs = calloc((size_t)in->n + 1, sizeof *jobs);
        res = calloc((size_t)in->n + 1, sizeof *res);
        if (!jobs || !res) rc = br_fail(BR_ENOMEM, "bitroll_generate: out of memory for %lld prompts", (long long)in->n);
    }
    for (int64_t i = 0; rc == BR_OK && i < in->n; i++) {
        rollout_job *j = &jobs[i];
        j->sample_id = in->sample_ids ? in->sample_ids[i] : i;
        j->prompt = in->prompt_tokens + in->prompt_offsets[i];
        j->prompt_len = (int)(in->prompt_offsets[i + 1] - in->prompt_offsets[i]);
        j->max_new = in->max_new_tokens ? in->max_new_tokens[i] : in->default_max_new_tokens;
        j->sampling.temperature = in->temperature ? in->temperature[i] : in->default_temperature;
        j->sampling.top_p = in->top_p ? in->top_p[i] : 1.0f;
        j->sampling.top_k = in->top_k ? in->top_k[i] : 0;
        j->sampling.seed = in->seeds ? in->seeds[i] : in->seed;
        j->stop_ids = in->stop_ids;
        j->n_stop = in->n_stop_ids;
        if (j->sample_id < 0) rc = br_fail(BR_EINVAL, "sample_ids[%lld] = %lld: must be >= 0", (long long)i, (long long)j->sample_id);
        else if (j->max_new < 1)
            rc = br_fail(BR_EINVAL, "max_new_tokens of prompt %lld = %d: must be >= 1", (long long)i, j->max_new);
        else if ((rc = rollout_sampling_check(&j->sampling, V)) != BR_OK)
            rc = br_fail_ctx(rc, "prompt %lld", (long long)i);
    }
    if (rc == BR_OK) {
        api_bind(e);
        rc = rollout_run(e->w, &e->so, jobs, in->n, res, NULL, NULL);
    }
    int64_t T = 0;
    for (int64_t i = 0; rc == BR_OK && i < in->n; i++) T += res[i].n;
    if (rc == BR_OK) {
        c = calloc(1, sizeof *c);
        if (c) {
            c->n = in->n;
            c->offsets = malloc(8 * (size_t)(in->n + 1));
            c->tokens = malloc(4 * (size_t)T + 4);
            c->logprobs = malloc(4 * (size_t)T + 4);
            c->digests = malloc(8 * (size_t)T + 8);
            c->finish_reason = malloc((size_t)in->n + 1);
            c->weight_version = e->weight_version;
        }
        if (!c || !c->offsets || !c->tokens || !c->logprobs || !c->digests || !c->finish_reason)
            rc = br_fail(BR_ENOMEM, "bitroll_generate: out of memory for %lld tokens", (long long)T);
    }
    if (rc == BR_OK) {
        int64_t o = 0;
        for (int64_t i = 0; i < in->n; i++) {
            c->offsets[i] = o;
            memcpy(c->tokens + o, res[i].tokens, 4 * (size_t)res[i].n);
            memcpy(c->logprobs + o, res[i].logprobs, 4 * (size_t)res[i].n);
            memcpy(c->digests + o, res[i].digests, 8 * (size_t)res[i].n);
            c->finish_reason[i] = res[i].finish;
            o += res[i].n;
        }
        c->offsets[in->n] = o;
        *out = c;
        c = NULL;
    }
    for (int64_t i = 0; res && i < in->n; i++) rollout_result_free(&res[i]);
    free(res);
    free(jobs);
    bitroll_completions_free(c);
    return api_fail(e, rc);
}
