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

/* Job i of the run, derived from the requests (no array of every job: its memory would grow with the output). */
static void job_get(void *ctx, int64_t i, rollout_job *j) {
    const rollout_requests *req = ctx;
    int p = 0;
    int32_t s = 0;
    (void)rollout_requests_locate(req, i, &p, &s); /* i < n_samples: always found */
    const rollout_prompt *pr = &req->prompts[p];
    memset(j, 0, sizeof *j);
    j->sample_id = i;
    j->prompt = pr->ids;
    j->prompt_len = pr->n_ids;
    j->max_new = pr->max_new_tokens;
    j->sampling = pr->sampling;
    j->stop_ids = pr->stop_ids;
    j->n_stop = pr->n_stop_ids;
}

/* Rank 0: the rollouts file's rows, dataset by dataset in sample-id order, read from the requests and the journal
 * (h5log_source). Rows of a dataset are asked for in increasing order, so each dataset keeps a cursor: the sample and
 * the position inside it where the last piece ended. */
typedef struct {
    const rollout_requests *req;
    driver_parts *parts;
    const tok_tokenizer *tok;
    int64_t row, pos; /* cursor: the sample, and the element inside it (token-indexed datasets) */
    int64_t acc;      /* offsets datasets: the running sum */
    int32_t *ids;     /* (cap) one sample's prompt + completion ids (texts) */
    int64_t cap;
    int64_t tokens;   /* completion tokens in all */
} gen_source;

static br_status ids_fit(gen_source *g, int64_t n) {
    if (n <= g->cap) return BR_OK;
    int32_t *t = realloc(g->ids, (size_t)n * sizeof *t);
    if (!t) return br_fail(BR_ENOMEM, "out of memory for %lld ids", (long long)n);
    g->ids = t;
    g->cap = n;
    return BR_OK;
}

static br_status gen_fill(void *ctx, h5log_field f, int64_t start, int64_t count, void *buf) {
    gen_source *g = ctx;
    const rollout_requests *req = g->req;
    br_status rc = BR_OK;
    if (start == 0) g->row = g->pos = g->acc = 0;
    /* per-sample datasets: sample i = start + k */
    for (int64_t k = 0; k < count && f != H5LOG_F_PROMPT_TOKENS && f != H5LOG_F_COMPLETION_TOKENS &&
                        f != H5LOG_F_LOGPROBS && f != H5LOG_F_LOGITS_DIGEST && rc == BR_OK;
         k++) {
        const int64_t i = start + k;
        int p = 0;
        int32_t s = 0, n = 0;
        int8_t finish = 0;
        if (i < req->n_samples) (void)rollout_requests_locate(req, i, &p, &s);
        const rollout_prompt *pr = &req->prompts[p];
        if (i < req->n_samples && (f == H5LOG_F_COMPLETION_OFFSETS || f == H5LOG_F_FINISH_REASON ||
                                   f == H5LOG_F_COMPLETION_TEXT || f == H5LOG_F_FULL_TEXT) &&
            (rc = driver_parts_get(g->parts, i, &n, &finish)) != BR_OK)
            break;
        switch (f) {
        case H5LOG_F_SAMPLE_ID: ((int64_t *)buf)[k] = i; break;
        case H5LOG_F_PROMPT_INDEX: ((int64_t *)buf)[k] = p; break;
        case H5LOG_F_SAMPLE_INDEX: ((int32_t *)buf)[k] = s; break;
        case H5LOG_F_PROMPT_OFFSETS: /* n + 1 elements: the last is the total */
            ((int64_t *)buf)[k] = g->acc;
            if (i < req->n_samples) g->acc += pr->n_ids;
            break;
        case H5LOG_F_COMPLETION_OFFSETS:
            ((int64_t *)buf)[k] = g->acc;
            g->acc += n; /* 0 for the total */
            break;
        case H5LOG_F_FINISH_REASON: ((int8_t *)buf)[k] = finish; break;
        case H5LOG_F_TEMPERATURE: ((float *)buf)[k] = pr->sampling.temperature; break;
        case H5LOG_F_TOP_P: ((float *)buf)[k] = pr->sampling.top_p; break;
        case H5LOG_F_TOP_K: ((int32_t *)buf)[k] = pr->sampling.top_k; break;
        case H5LOG_F_SEED: ((uint64_t *)buf)[k] = pr->sampling.seed; break;
        case H5LOG_F_PROMPT_TEXT:
        case H5LOG_F_COMPLETION_TEXT:
        case H5LOG_F_FULL_TEXT: {
            /* special tokens skipped; full_text decodes prompt + completion in one call: decoding is not additive (a
             * SentencePiece decoder drops the leading space of a completion decoded alone), so reward code must never
             * have to join the halves */
            const int64_t np = f == H5LOG_F_COMPLETION_TEXT ? 0 : pr->n_ids;
            const int64_t nc = f == H5LOG_F_PROMPT_TEXT ? 0 : n;
            rc = ids_fit(g, np + nc + 1);
            if (rc == BR_OK && np) memcpy(g->ids, pr->ids, (size_t)np * sizeof *g->ids);
            if (rc == BR_OK && nc) rc = driver_parts_load(g->parts, i, DRIVER_PART_TOKENS, 0, nc, g->ids + np);
            if (rc == BR_OK) rc = decode_text(g->tok, g->ids, np + nc, &((char **)buf)[k]);
            break;
        }
        default: rc = br_fail(BR_EINVAL, "generate: no per-sample field %d", (int)f); break;
        }
    }
    if (f == H5LOG_F_PROMPT_TOKENS) { /* a piece may begin or end inside a prompt */
        int32_t *out = buf;
        for (int64_t k = 0; k < count;) {
            int p = 0;
            int32_t s = 0;
            if (g->row >= req->n_samples) return br_fail(BR_ERUNTIME, "generate: prompt tokens beyond the last sample");
            (void)rollout_requests_locate(req, g->row, &p, &s);
            const rollout_prompt *pr = &req->prompts[p];
            int64_t take = pr->n_ids - g->pos < count - k ? pr->n_ids - g->pos : count - k;
            memcpy(out + k, pr->ids + g->pos, (size_t)take * sizeof *out);
            k += take;
            g->pos += take;
            if (g->pos == pr->n_ids) {
                g->row++;
                g->pos = 0;
            }
        }
    } else if (f == H5LOG_F_COMPLETION_TOKENS || f == H5LOG_F_LOGPROBS || f == H5LOG_F_LOGITS_DIGEST) {
        const driver_part what = f == H5LOG_F_COMPLETION_TOKENS ? DRIVER_PART_TOKENS
                                 : f == H5LOG_F_LOGPROBS       ? DRIVER_PART_LOGPROBS
                                                               : DRIVER_PART_DIGESTS;
        const size_t esize = what == DRIVER_PART_DIGESTS ? 8 : 4;
        for (int64_t k = 0; k < count && rc == BR_OK;) {
            if (g->row >= req->n_samples)
                return br_fail(BR_ERUNTIME, "generate: completion tokens beyond the last sample");
            int32_t n = 0;
            if ((rc = driver_parts_get(g->parts, g->row, &n, NULL)) != BR_OK) break;
            const int64_t take = n - g->pos < count - k ? n - g->pos : count - k;
            if (take > 0) rc = driver_parts_load(g->parts, g->row, what, g->pos, take, (char *)buf + (size_t)k * esize);
            k += take;
            g->pos += take;
            if (g->pos == n) {
                g->row++;
                g->pos = 0;
            }
        }
    }
    return rc;
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
    driver_parts *parts = NULL;
    gen_source src = {0};
    char *text = NULL, *cfg = NULL;
    size_t text_len = 0;
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
    free(text); /* parsed: the requests hold what is needed */
    text = NULL;
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;

    cfg = driver_config_json(o, &g->d, g->prompts, NULL, world->size);
    if (o->print_config && world->rank == 0) printf("%s\n", cfg);

    const double t0 = br_now_s();
    const driver_jobs jobs = {req->n_samples, job_get, req};
    if ((rc = driver_run_and_gather(world, w, o, &jobs, &parts)) != BR_OK) goto done;

    if (world->rank == 0) {
        /* the file is written from the journal, piece by piece: rank 0 holds the index, never the results */
        src.req = req;
        src.parts = parts;
        src.tok = tok;
        int64_t P = 0;
        for (int p = 0; p < req->n_prompts; p++) P += (int64_t)req->prompts[p].n * req->prompts[p].n_ids;
        for (int64_t i = 0; i < req->n_samples && rc == BR_OK; i++) {
            int32_t n = 0;
            rc = driver_parts_get(parts, i, &n, NULL);
            src.tokens += n;
        }
        h5log_source hs = {.n = req->n_samples,
                           .P = P,
                           .T = src.tokens,
                           .texts = tok ? H5LOG_TEXT_PROMPT | H5LOG_TEXT_COMPLETION | H5LOG_TEXT_FULL : 0,
                           .fill = gen_fill,
                           .ctx = &src,
                           .piece_bytes = o->tuning.write_piece_bytes};
        h5log_provenance prov;
        driver_prov_bufs pb;
        driver_provenance(&prov, &pb, o, w, cfg, world->size);
        if (rc == BR_OK) rc = h5log_rollouts_write_from(o->out, &hs, &prov);
        driver_parts_close(parts);
        parts = NULL;
        if (rc == BR_OK) rc = driver_out_done(o->out);
        if (rc == BR_OK && stats) {
            stats->samples = req->n_samples;
            stats->tokens = src.tokens;
            stats->seconds = br_now_s() - t0;
        }
        if (rc == BR_OK && !o->quiet) {
            double dt = br_now_s() - t0;
            fprintf(stderr, "[bitroll generate] wrote %s: %lld samples, %lld completion tokens, %.1f s, %.0f tokens/s (%d rank%s)\n",
                    o->out, (long long)req->n_samples, (long long)src.tokens, dt, src.tokens / (dt + 1e-9), world->size,
                    world->size > 1 ? "s" : "");
        }
    }
    rc = comm_agree(world, rc);

done:
    driver_parts_close(parts);
    free(src.ids);
    rollout_requests_free(req);
    free(text);
    free(cfg);
    return rc;
}
