/* The generate driver (api/driver.h): prompts file -> jobs -> data-parallel run -> rollouts file on rank 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/driver.h"

/* Decodes ids to text, special tokens skipped; ids the tokenizer does not have (a model vocabulary padded beyond
 * the tokenizer's, as Qwen's) become "<|bitroll:id=N|>" so the text still shows them (docs/FORMAT.md). */
static br_status decode_text(const tok_tokenizer *tok, const int32_t *ids, int64_t n, char **out) {
    const int tv = tok_vocab_size(tok);
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    if (!s) return br_fail(BR_ENOMEM, "out of memory for texts");
    s[0] = '\0';
    int64_t a = 0;
    while (a <= n) {
        int64_t b = a;
        while (b < n && ids[b] >= 0 && ids[b] < tv) b++;
        char *piece = NULL, marker[48] = "";
        size_t plen = 0;
        if (b > a) {
            br_status rc = tok_decode(tok, ids + a, (size_t)(b - a), 1, &piece, &plen);
            if (rc != BR_OK) {
                free(s);
                return rc;
            }
        }
        if (b < n) snprintf(marker, sizeof marker, "<|bitroll:id=%d|>", ids[b]);
        const size_t mlen = strlen(marker);
        if (len + plen + mlen + 1 > cap) {
            while (len + plen + mlen + 1 > cap) cap *= 2;
            char *t = realloc(s, cap);
            if (!t) {
                free(piece);
                free(s);
                return br_fail(BR_ENOMEM, "out of memory for texts");
            }
            s = t;
        }
        if (plen) memcpy(s + len, piece, plen);
        len += plen;
        memcpy(s + len, marker, mlen + 1);
        len += mlen;
        free(piece);
        a = b + 1;
    }
    *out = s;
    return BR_OK;
}

/* prompt_text / completion_text / full_text: the ids decoded with special tokens skipped (docs/FORMAT.md).
 * full_text decodes prompt + completion in one call: decoding is not additive (a SentencePiece decoder drops
 * the leading space of a completion decoded alone), so reward code must never have to join the halves. */
static br_status add_texts(h5log_rollouts *r, const tok_tokenizer *tok) {
    br_status rc = BR_OK;
    int32_t *seq = NULL; /* (prompt + completion) ids of one sample */
    size_t cap = 0;
    r->prompt_text = calloc((size_t)r->n + 1, sizeof(char *));
    r->completion_text = calloc((size_t)r->n + 1, sizeof(char *));
    r->full_text = calloc((size_t)r->n + 1, sizeof(char *));
    if (!r->prompt_text || !r->completion_text || !r->full_text) return br_fail(BR_ENOMEM, "out of memory for texts");
    for (int64_t i = 0; rc == BR_OK && i < r->n; i++) {
        const int64_t pa = r->prompt_offsets[i], ca = r->completion_offsets[i];
        const int64_t np = r->prompt_offsets[i + 1] - pa, nc = r->completion_offsets[i + 1] - ca;
        rc = decode_text(tok, r->prompt_tokens + pa, np, &r->prompt_text[i]);
        if (rc == BR_OK) rc = decode_text(tok, r->completion_tokens + ca, nc, &r->completion_text[i]);
        if (rc == BR_OK && (size_t)(np + nc) > cap) {
            int32_t *q = realloc(seq, (size_t)(np + nc) * sizeof *q);
            if (!q) {
                rc = br_fail(BR_ENOMEM, "out of memory for the ids of sample %lld", (long long)i);
            } else {
                seq = q;
                cap = (size_t)(np + nc);
            }
        }
        if (rc == BR_OK && np + nc > 0) {
            memcpy(seq, r->prompt_tokens + pa, (size_t)np * sizeof *seq);
            memcpy(seq + np, r->completion_tokens + ca, (size_t)nc * sizeof *seq);
        }
        if (rc == BR_OK) rc = decode_text(tok, seq, np + nc, &r->full_text[i]);
    }
    free(seq);
    return rc;
}

/* Tokenizes every text prompt (every rank: the same bytes give the same ids). */
static br_status tokenize_prompts(rollout_requests *req, const tok_tokenizer *tok, const char *prompts,
                                  const char *model) {
    br_status rc = BR_OK;
    for (int p = 0; rc == BR_OK && p < req->n_prompts; p++) {
        rollout_prompt *pr = &req->prompts[p];
        if (pr->ids) continue;
        if (!tok)
            return br_fail(BR_EINVAL, "%s: line %d: \"prompt\" text needs a tokenizer: %s has no tokenizer.json "
                                      "(pass --tokenizer PATH or use \"prompt_ids\")",
                           prompts, pr->line, model);
        /* the tokenizer's special tokens (BOS) are added, as HF's tokenizer(text) does */
        int32_t *ids = NULL;
        size_t n_ids = 0;
        rc = tok_encode(tok, pr->text, strlen(pr->text), 1, &ids, &n_ids);
        if (rc != BR_OK) rc = br_fail_ctx(rc, "%s: line %d: field 'prompt'", prompts, pr->line);
        else rc = rollout_requests_set_prompt_ids(req, p, ids, (int)n_ids);
        free(ids);
    }
    return rc;
}

/* Rank 0: the rollouts set of every sample, in sample-id order. Each result's arrays are freed once copied, so the
 * results and the set are not both held whole. */
static br_status assemble(const rollout_requests *req, const rollout_job *jobs, rollout_result *by_sid,
                          h5log_rollouts *out, int64_t *tokens_out) {
    const int64_t n = req->n_samples;
    int64_t P = 0, T = 0;
    for (int64_t i = 0; i < n; i++) {
        P += jobs[i].prompt_len;
        T += by_sid[i].n;
    }
    out->n = n;
    out->sample_id = malloc(8 * (size_t)n + 8);
    out->prompt_index = malloc(8 * (size_t)n + 8);
    out->sample_index = malloc(4 * (size_t)n + 4);
    out->prompt_offsets = malloc(8 * (size_t)n + 8);
    out->prompt_tokens = malloc(4 * (size_t)P + 4);
    out->completion_offsets = malloc(8 * (size_t)n + 8);
    out->completion_tokens = malloc(4 * (size_t)T + 4);
    out->logprobs = malloc(4 * (size_t)T + 4);
    out->logits_digest = malloc(8 * (size_t)T + 8);
    out->finish_reason = malloc((size_t)n + 1);
    out->temperature = malloc(4 * (size_t)n + 4);
    out->top_p = malloc(4 * (size_t)n + 4);
    out->top_k = malloc(4 * (size_t)n + 4);
    out->seed = malloc(8 * (size_t)n + 8);
    if (!out->sample_id || !out->prompt_index || !out->sample_index || !out->prompt_offsets || !out->prompt_tokens ||
        !out->completion_offsets || !out->completion_tokens || !out->logprobs || !out->logits_digest ||
        !out->finish_reason || !out->temperature || !out->top_p || !out->top_k || !out->seed)
        return br_fail(BR_ENOMEM, "out of memory assembling %lld samples", (long long)n);
    int64_t po = 0, co = 0;
    for (int p = 0; p < req->n_prompts; p++)
        for (int32_t s = 0; s < req->prompts[p].n; s++) {
            int64_t i = req->prompts[p].first_sample_id + s;
            const rollout_job *j = &jobs[i];
            rollout_result *r = &by_sid[i];
            out->sample_id[i] = i;
            out->prompt_index[i] = p;
            out->sample_index[i] = s;
            out->prompt_offsets[i] = po;
            memcpy(out->prompt_tokens + po, j->prompt, 4 * (size_t)j->prompt_len);
            po += j->prompt_len;
            out->completion_offsets[i] = co;
            memcpy(out->completion_tokens + co, r->tokens, 4 * (size_t)r->n);
            memcpy(out->logprobs + co, r->logprobs, 4 * (size_t)r->n);
            memcpy(out->logits_digest + co, r->digests, 8 * (size_t)r->n);
            co += r->n;
            out->finish_reason[i] = r->finish;
            out->temperature[i] = j->sampling.temperature;
            out->top_p[i] = j->sampling.top_p;
            out->top_k[i] = j->sampling.top_k;
            out->seed[i] = j->sampling.seed;
            rollout_result_free(r);
        }
    out->prompt_offsets[n] = po;
    out->completion_offsets[n] = co;
    *tokens_out = co;
    return BR_OK;
}

br_status driver_generate(comm_world *world, const driver_opts *o, driver_generate_opts *g) {
    policy_weights *w = NULL;
    tok_tokenizer *tok = NULL;
    br_status rc = driver_load_weights(world, o, &w);
    if (rc == BR_OK && !o->random_weights)
        rc = comm_agree(world, driver_load_tokenizer(o->model, g->tokenizer, w, &tok));
    if (rc == BR_OK && tok && tok_vocab_size(tok) < w->cfg.vocab && world->rank == 0 && !o->quiet)
        fprintf(stderr, "bitroll generate: note: the tokenizer has %d tokens, the model's vocabulary %d; sampled ids "
                        "without a token appear as <|bitroll:id=N|> in the texts (ids and log-probs are unaffected)\n",
                tok_vocab_size(tok), w->cfg.vocab);
    if (rc == BR_OK) rc = driver_generate_with(world, o, g, w, tok, NULL);
    tok_free(tok);
    policy_weights_free(w);
    return rc;
}

br_status driver_generate_with(comm_world *world, const driver_opts *o, driver_generate_opts *g,
                               const policy_weights *w, const tok_tokenizer *tok, driver_generate_stats *stats) {
    rollout_requests *req = NULL;
    rollout_job *jobs = NULL;
    rollout_result *by_sid = NULL;
    char *text = NULL, *cfg = NULL;
    size_t text_len = 0;
    h5log_rollouts out = {0};
    br_status rc = BR_OK;

    if (!g->no_stop && g->n_stops == 0) {
        int eos = tok && tok_eos_id(tok) >= 0 ? tok_eos_id(tok) : w->cfg.eos_id;
        if (eos >= 0) g->stops[g->n_stops++] = eos;
    }
    g->d.stop_ids = g->stops;
    g->d.n_stop_ids = g->n_stops;

    /* rank 0 reads the prompts; every rank parses the same bytes, so every rank holds the same jobs */
    if (world->rank == 0) rc = br_read_file(g->prompts, &text, &text_len);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;
    comm_bcast_bytes(world, (void **)&text, &text_len);
    rc = rollout_requests_parse(text, text_len, g->prompts, &g->d, w->cfg.vocab, w->cfg.max_pos, &req);
    if (rc == BR_OK) rc = tokenize_prompts(req, tok, g->prompts, o->model);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;

    cfg = driver_config_json(o, &g->d, g->prompts, NULL, world->size);
    if (o->print_config && world->rank == 0) printf("%s\n", cfg);

    jobs = calloc((size_t)req->n_samples + 1, sizeof *jobs);
    if (!jobs) {
        rc = comm_agree(world, br_fail(BR_ENOMEM, "out of memory"));
        goto done;
    }
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
    const double t0 = driver_now();
    if ((rc = driver_run_and_gather(world, w, o, jobs, req->n_samples, &by_sid)) != BR_OK) goto done;

    if (world->rank == 0) {
        int64_t tokens = 0;
        rc = assemble(req, jobs, by_sid, &out, &tokens);
        if (rc == BR_OK && tok) rc = add_texts(&out, tok);
        if (rc == BR_OK) {
            h5log_provenance prov;
            driver_prov_bufs pb;
            driver_provenance(&prov, &pb, o, w, cfg, world->size);
            rc = h5log_rollouts_write(o->out, &out, &prov);
        }
        if (rc == BR_OK) rc = driver_out_done(o->out);
        if (rc == BR_OK && stats) {
            stats->samples = out.n;
            stats->tokens = tokens;
            stats->seconds = driver_now() - t0;
        }
        if (rc == BR_OK && !o->quiet) {
            double dt = driver_now() - t0;
            fprintf(stderr, "[bitroll generate] wrote %s: %lld samples, %lld completion tokens, %.1f s, %.0f tokens/s (%d rank%s)\n",
                    o->out, (long long)out.n, (long long)tokens, dt, tokens / (dt + 1e-9), world->size,
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
    free(text);
    free(cfg);
    return rc;
}
