/* The transformer forward pass (Llama, Qwen2/3, GPT-2) on the CPU reference kernels, plus the paged KV
 * cache and the prefill/decode/score drivers. Nothing here allocates per call except policy_score's
 * temporary sequences. */
#include "policy/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kern_cpu.h"

struct policy_state {
    int max_tokens;
    float *x;      /* (T, D) residual stream */
    float *xn;     /* (T, D) normed input of a sub-layer; also the gathered rows for the LM head */
    float *q;      /* (T, H*hd) */
    float *k, *v;  /* (T, KV*hd) */
    float *att;    /* (T, H*hd) */
    float *proj;   /* (T, D) sub-layer output */
    float *ffa;    /* (T, F) */
    float *ffb;    /* (T, F) */
    float *rope;   /* (max_pos, hd/2, 2) cos/sin, NULL for learned positions */
    const int32_t **tables; /* (T) page table of each row */
    policy_tp tp;
    int H, KV, h0, kv0;     /* this rank's heads [h0, h0 + H) and key/value heads [kv0, kv0 + KV) */
    int mc0, mc1;           /* this rank's MLP chunks [mc0, mc1) of POLICY_MLP_CHUNKS */
    int f0, F;              /* this rank's MLP columns [f0, f0 + F) */
    float *part;            /* (max(H, MLP chunks), T, D) K-chunk partial sums of a row-parallel layer */
    float *tree_tmp;        /* kern_cpu_chunk_tree scratch */
};

/* ---------------------------------------------------------------- KV cache */

br_status policy_kv_create_pages(const policy_config *cfg, int n_pages, int page_size, policy_kvcache **out) {
    *out = NULL;
    if (n_pages < 1 || page_size < 1)
        return br_fail(BR_EINVAL, "kv cache: n_pages (%d) and page_size (%d) must be >= 1", n_pages, page_size);
    policy_kvcache *kv = calloc(1, sizeof *kv);
    if (!kv) return br_fail(BR_ENOMEM, "kv cache: out of memory");
    kv->page_size = page_size;
    kv->n_pages = n_pages;
    kv->n_layers = cfg->n_layers;
    kv->n_kv = cfg->n_kv_heads;
    kv->hd = cfg->head_dim;
    kv->max_pages_per_seq = (cfg->max_pos + page_size - 1) / page_size;
    kv->free_pages = malloc((size_t)n_pages * sizeof(int32_t));
    kv->refs = calloc((size_t)n_pages, sizeof(int32_t));
    if (!kv->free_pages || !kv->refs) {
        free(kv->free_pages);
        free(kv->refs);
        free(kv);
        return br_fail(BR_ENOMEM, "kv cache: out of memory for %d pages", n_pages);
    }
    /* Pages are handed out lowest id first; which page a token lands in never affects its numbers. */
    for (int i = 0; i < n_pages; i++) kv->free_pages[i] = n_pages - 1 - i;
    kv->n_free = n_pages;
    *out = kv;
    return BR_OK;
}

br_status policy_kv_create_tp(const policy_config *cfg, int tp_size, int n_pages, int page_size, policy_kvcache **out) {
    br_status rc = policy_kv_create_pages(cfg, n_pages, page_size, out);
    if (rc != BR_OK) return rc;
    policy_kvcache *kv = *out;
    kv->n_kv = cfg->n_kv_heads / (tp_size > 0 ? tp_size : 1);
    size_t elems = (size_t)cfg->n_layers * n_pages * page_size * kv->n_kv * cfg->head_dim;
    kv->k = calloc(elems, sizeof(float));
    kv->v = calloc(elems, sizeof(float));
    if (!kv->k || !kv->v) {
        policy_kv_free(kv);
        *out = NULL;
        return br_fail(BR_ENOMEM, "kv cache: cannot allocate %d pages of %d tokens (%zu MiB)", n_pages, page_size,
                       2 * elems * sizeof(float) >> 20);
    }
    return BR_OK;
}

br_status policy_kv_create(const policy_config *cfg, int n_pages, int page_size, policy_kvcache **out) {
    return policy_kv_create_tp(cfg, 1, n_pages, page_size, out);
}

void policy_kv_free(policy_kvcache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv->free_pages);
    free(kv->refs);
    free(kv);
}

br_status policy_seq_init(const policy_kvcache *kv, policy_seq *seq) {
    memset(seq, 0, sizeof *seq);
    seq->pages = malloc((size_t)kv->max_pages_per_seq * sizeof(int32_t));
    if (!seq->pages) return br_fail(BR_ENOMEM, "kv cache: cannot allocate a page table");
    return BR_OK;
}

void policy_seq_free(policy_seq *seq) {
    if (!seq) return;
    free(seq->pages);
    memset(seq, 0, sizeof *seq);
}

br_status policy_kv_reserve(policy_kvcache *kv, policy_seq *seq, int n_tokens) {
    int need = (n_tokens + kv->page_size - 1) / kv->page_size;
    if (need > kv->max_pages_per_seq)
        return br_fail(BR_EINVAL, "kv cache: %d tokens exceed the context length (%d pages of %d)", n_tokens,
                       kv->max_pages_per_seq, kv->page_size);
    if (need - seq->n_pages > kv->n_free)
        return br_fail(BR_ERUNTIME, "kv cache full: need %d more pages, %d free", need - seq->n_pages, kv->n_free);
    while (seq->n_pages < need) {
        const int32_t p = kv->free_pages[--kv->n_free];
        kv->refs[p] = 1;
        seq->pages[seq->n_pages++] = p;
    }
    return BR_OK;
}

void policy_kv_release(policy_kvcache *kv, policy_seq *seq) {
    while (seq->n_pages > 0) {
        const int32_t p = seq->pages[--seq->n_pages];
        if (--kv->refs[p] == 0) kv->free_pages[kv->n_free++] = p;
    }
    seq->len = 0;
}

br_status policy_kv_fork(policy_kvcache *kv, policy_seq *dst, const policy_seq *src, int n_tokens, int32_t *copy_src,
                         int32_t *copy_dst) {
    *copy_src = *copy_dst = -1;
    if (dst->n_pages != 0 || n_tokens < 1 || n_tokens > src->len)
        return br_fail(BR_EINVAL, "kv cache: fork of %d tokens from a sequence of %d into one holding %d pages", n_tokens,
                       src->len, dst->n_pages);
    const int full = n_tokens / kv->page_size, part = n_tokens % kv->page_size != 0;
    if (part && kv->n_free < 1) return br_fail(BR_ERUNTIME, "kv cache full: need 1 more page, 0 free");
    for (int i = 0; i < full; i++) {
        dst->pages[i] = src->pages[i];
        kv->refs[src->pages[i]]++;
    }
    dst->n_pages = full;
    if (part) {
        const int32_t p = kv->free_pages[--kv->n_free];
        kv->refs[p] = 1;
        dst->pages[dst->n_pages++] = p;
        *copy_src = src->pages[full];
        *copy_dst = p;
    }
    dst->len = n_tokens;
    return BR_OK;
}

/* ---------------------------------------------------------------- run state */

br_status policy_tp_check(const policy_config *c, int size) {
    if (size < 1 || size > POLICY_MLP_CHUNKS)
        return br_fail(BR_EINVAL, "--tp %d: the tensor-parallel degree must be in [1, %d]", size, POLICY_MLP_CHUNKS);
    if (c->n_heads % size || c->n_kv_heads % size)
        return br_fail(BR_EINVAL, "--tp %d: the model's %d heads and %d key/value heads must both divide by it", size,
                       c->n_heads, c->n_kv_heads);
    return BR_OK;
}

static int mlp_col(const policy_config *c, int chunk) { return (int)((int64_t)c->ffn_dim * chunk / POLICY_MLP_CHUNKS); }

br_status policy_state_create_tp(const policy_weights *w, int max_tokens, const policy_tp *tp, policy_state **out) {
    *out = NULL;
    const policy_config *c = &w->cfg;
    if (max_tokens < 1) return br_fail(BR_EINVAL, "max tokens per forward call must be >= 1 (got %d)", max_tokens);
    policy_tp one = {0, 1, NULL, NULL, NULL, NULL, NULL};
    if (!tp) tp = &one;
    br_status rc = policy_tp_check(c, tp->size);
    if (rc != BR_OK) return rc;
    if (tp->size > 1 && !tp->chunk_sum) return br_fail(BR_EINVAL, "tensor parallelism needs a chunk_sum");
    policy_state *st = calloc(1, sizeof *st);
    if (!st) return br_fail(BR_ENOMEM, "run state: out of memory");
    st->tp = *tp;
    st->H = c->n_heads / tp->size;
    st->KV = c->n_kv_heads / tp->size;
    st->h0 = st->H * tp->rank;
    st->kv0 = st->KV * tp->rank;
    policy_chunk_range(POLICY_MLP_CHUNKS, tp->rank, tp->size, &st->mc0, &st->mc1);
    st->f0 = mlp_col(c, st->mc0);
    st->F = mlp_col(c, st->mc1) - st->f0;
    size_t T = (size_t)max_tokens, D = (size_t)c->dim;
    size_t qd = (size_t)st->H * c->head_dim, kvd = (size_t)st->KV * c->head_dim;
    size_t chunks_local = (size_t)(st->H > st->mc1 - st->mc0 ? st->H : st->mc1 - st->mc0);
    size_t chunks_all = (size_t)(c->n_heads > POLICY_MLP_CHUNKS ? c->n_heads : POLICY_MLP_CHUNKS);
    st->max_tokens = max_tokens;
    st->x = malloc(T * D * sizeof(float));
    st->xn = malloc(T * D * sizeof(float));
    st->q = malloc(T * qd * sizeof(float));
    st->k = malloc(T * kvd * sizeof(float));
    st->v = malloc(T * kvd * sizeof(float));
    st->att = malloc(T * qd * sizeof(float));
    st->proj = malloc(T * D * sizeof(float));
    st->ffa = malloc(T * (size_t)(st->F > 0 ? st->F : 1) * sizeof(float));
    st->ffb = malloc(T * (size_t)(st->F > 0 ? st->F : 1) * sizeof(float));
    st->tables = malloc(T * sizeof *st->tables);
    st->part = malloc(chunks_local * T * D * sizeof(float));
    st->tree_tmp = malloc((size_t)kern_cpu_chunk_tree_levels((int)chunks_all) * T * D * sizeof(float));
    int ok = st->x && st->xn && st->q && st->k && st->v && st->att && st->proj && st->ffa && st->ffb && st->tables &&
             st->part && st->tree_tmp;
    if (!ok) {
        policy_state_free(st);
        return br_fail(BR_ENOMEM, "run state: cannot allocate buffers for %d tokens", max_tokens);
    }
    if (!c->learned_pos) {
        const size_t bytes = (size_t)c->max_pos * (c->head_dim / 2) * 2 * sizeof(float);
        st->rope = malloc(bytes);
        if (!st->rope) {
            policy_state_free(st);
            return br_fail(BR_ENOMEM, "run state: cannot allocate the RoPE table (%zu bytes: context length %d x head_dim %d)",
                           bytes, c->max_pos, c->head_dim);
        }
        kern_cpu_rope_table(st->rope, c->max_pos, c->head_dim, c->rope_theta, w->dtype);
    }
    *out = st;
    return BR_OK;
}

br_status policy_state_create(const policy_weights *w, int max_tokens, policy_state **out) {
    return policy_state_create_tp(w, max_tokens, NULL, out);
}

void policy_state_free(policy_state *st) {
    if (!st) return;
    free(st->x);
    free(st->xn);
    free(st->q);
    free(st->k);
    free(st->v);
    free(st->att);
    free(st->proj);
    free(st->ffa);
    free(st->ffb);
    free(st->rope);
    free(st->tables);
    free(st->part);
    free(st->tree_tmp);
    free(st);
}

int policy_state_max_tokens(const policy_state *st) { return st->max_tokens; }

/* ---------------------------------------------------------------- forward */

static void norm_rows(const policy_config *c, float *out, const float *x, const float *w, const float *b, int M) {
    if (c->norm == POLICY_NORM_RMS)
        kern_cpu_rmsnorm(out, x, w, M, c->dim, c->norm_eps);
    else
        kern_cpu_layernorm(out, x, w, b, M, c->dim, c->norm_eps);
}

br_status policy_batch_check(const policy_weights *w, int max_tokens, const policy_kvcache *kv, const policy_batch *b) {
    const policy_config *c = &w->cfg;
    if (b->n < 0 || b->n > max_tokens)
        return br_fail(BR_EINVAL, "forward: %d tokens in one call, the run state holds %d", b->n, max_tokens);
    for (int i = 0; i < b->n; i++) {
        const policy_seq *s = b->seqs[i];
        if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab)
            return br_fail(BR_EINVAL, "forward: token id %d at row %d is outside the vocabulary [0, %d)", b->tokens[i],
                           i, c->vocab);
        if (b->pos[i] < 0 || b->pos[i] >= c->max_pos)
            return br_fail(BR_EINVAL, "forward: position %d at row %d is outside the context [0, %d)", b->pos[i], i,
                           c->max_pos);
        if (b->pos[i] >= s->n_pages * kv->page_size)
            return br_fail(BR_EINVAL, "forward: position %d at row %d has no reserved cache page", b->pos[i], i);
        /* A row may only attend to keys that are cached or written in this call before it is read:
         * its predecessor must be in the cache already or be an earlier row of this call. */
        int expect = s->len;
        for (int j = i - 1; j >= 0; j--)
            if (b->seqs[j] == s) {
                expect = b->pos[j] + 1;
                break;
            }
        if (b->pos[i] > expect)
            return br_fail(BR_EINVAL, "forward: row %d is at position %d but its sequence has %d tokens", i, b->pos[i],
                           expect);
    }
    return BR_OK;
}

/* W restricted to output rows [n0, n0 + nn) / to input columns [k0, k0 + kk): views, no copy. */
static kern_wt rows_of(const kern_wt *w, int64_t n0, int64_t nn) {
    kern_wt r = *w;
    r.data = (const char *)w->data + n0 * w->sn * kern_dtype_size(w->dtype);
    r.n = nn;
    return r;
}

static kern_wt cols_of(const kern_wt *w, int64_t k0, int64_t kk) {
    kern_wt r = *w;
    r.data = (const char *)w->data + k0 * w->sk * kern_dtype_size(w->dtype);
    r.k = kk;
    return r;
}

/* A row-parallel layer: out (M, D) = sum over K-chunks c of x[:, chunk c] . W[:, chunk c]^T, then + bias.
 * Chunk c covers W's input columns [bounds[c], bounds[c+1]); this rank computes chunks [c0, c1) (its x holds
 * columns bounds[c0] .. bounds[c1], ldx apart) and the chunks are summed in the one fixed tree across the group. */
static br_status row_parallel(const policy_config *c, policy_state *st, float *out, const float *x, int64_t ldx,
                              const kern_wt *w, const float *bias, int M, int C, const int *bounds, int c0, int c1) {
    const size_t n = (size_t)M * c->dim;
    for (int k = c0; k < c1; k++) {
        kern_wt wc = cols_of(w, bounds[k], bounds[k + 1] - bounds[k]);
        kern_cpu_matmul_ld(st->part + (size_t)(k - c0) * n, x + (bounds[k] - bounds[c0]), ldx, &wc, NULL, M);
    }
    if (st->tp.size == 1) {
        kern_cpu_chunk_tree(st->part, C, n, out, st->tree_tmp);
    } else {
        br_status rc = st->tp.chunk_sum(st->tp.ctx, st->part, C, n, out);
        if (rc != BR_OK) return rc;
    }
    if (bias)
        for (int m = 0; m < M; m++)
            for (int d = 0; d < c->dim; d++) out[(size_t)m * c->dim + d] += bias[d];
    return BR_OK;
}

br_status policy_forward(const policy_weights *w, policy_state *st, policy_kvcache *kv, const policy_batch *b,
                         float *logits) {
    const policy_config *c = &w->cfg;
    br_status rc = policy_batch_check(w, st->max_tokens, kv, b);
    if (rc != BR_OK) return rc;
    /* this rank's share: heads [h0, h0 + H), key/value heads [kv0, kv0 + KV), MLP columns [f0, f0 + F) */
    const int M = b->n, D = c->dim, H = st->H, KV = st->KV, hd = c->head_dim, F = st->F;
    const float scale = 1.0f / sqrtf((float)hd);
    if (kv->n_kv != KV)
        return br_fail(BR_EINVAL, "forward: the KV cache holds %d heads, this rank computes %d", kv->n_kv, KV);
    if (M == 0) return BR_OK;
    int head_bounds[c->n_heads + 1], mlp_bounds[POLICY_MLP_CHUNKS + 1];
    for (int h = 0; h <= c->n_heads; h++) head_bounds[h] = h * hd;
    for (int k = 0; k <= POLICY_MLP_CHUNKS; k++) mlp_bounds[k] = mlp_col(c, k);

    for (int i = 0; i < M; i++) st->tables[i] = b->seqs[i]->pages;
    kern_cpu_embed(st->x, &w->embed, c->learned_pos ? &w->pos_embed : NULL, b->tokens, b->pos, M);

    for (int l = 0; l < c->n_layers; l++) {
        const policy_layer *L = &w->layers[l];
        size_t layer_off = (size_t)l * kv->n_pages * kv->page_size * KV * hd;
        kern_kv_layer kvl = {kv->k + layer_off, kv->v + layer_off, kv->page_size, KV, hd};

        /* attention block: column-parallel q/k/v over this rank's heads */
        norm_rows(c, st->xn, st->x, L->attn_norm_w, L->attn_norm_b, M);
        const kern_wt wq = rows_of(&L->wq, (int64_t)st->h0 * hd, (int64_t)H * hd);
        const kern_wt wk = rows_of(&L->wk, (int64_t)st->kv0 * hd, (int64_t)KV * hd);
        const kern_wt wv = rows_of(&L->wv, (int64_t)st->kv0 * hd, (int64_t)KV * hd);
        kern_cpu_matmul(st->q, st->xn, &wq, L->bq ? L->bq + st->h0 * hd : NULL, M);
        kern_cpu_matmul(st->k, st->xn, &wk, L->bk ? L->bk + st->kv0 * hd : NULL, M);
        kern_cpu_matmul(st->v, st->xn, &wv, L->bv ? L->bv + st->kv0 * hd : NULL, M);
        if (c->qk_norm) {
            kern_cpu_rmsnorm(st->q, st->q, L->q_norm, M * H, hd, c->norm_eps);
            kern_cpu_rmsnorm(st->k, st->k, L->k_norm, M * KV, hd, c->norm_eps);
        }
        if (!c->learned_pos) {
            kern_cpu_rope(st->q, b->pos, st->rope, M, H, hd);
            kern_cpu_rope(st->k, b->pos, st->rope, M, KV, hd);
        }
        /* K/V of every row reach the cache before any row reads it: prefill reads what decode reads. */
        kern_cpu_kv_write(&kvl, st->k, st->v, st->tables, b->pos, M);
        kern_cpu_attention(st->att, st->q, &kvl, st->tables, b->pos, M, H, scale);
        /* row-parallel output projection: one K-chunk per head */
        rc = row_parallel(c, st, st->proj, st->att, (int64_t)H * hd, &L->wo, L->bo, M, c->n_heads, head_bounds, st->h0,
                          st->h0 + H);
        if (rc != BR_OK) return rc;
        kern_cpu_add(st->x, st->proj, (int64_t)M * D);

        /* MLP block: column-parallel gate/up over this rank's columns, row-parallel down */
        norm_rows(c, st->xn, st->x, L->mlp_norm_w, L->mlp_norm_b, M);
        const kern_wt wu = rows_of(&L->w_up, st->f0, F);
        if (c->act == POLICY_ACT_SILU_GLU) {
            const kern_wt wg = rows_of(&L->w_gate, st->f0, F);
            kern_cpu_matmul(st->ffa, st->xn, &wg, NULL, M);
            kern_cpu_matmul(st->ffb, st->xn, &wu, NULL, M);
            kern_cpu_swiglu(st->ffa, st->ffa, st->ffb, (int64_t)M * F);
        } else {
            kern_cpu_matmul(st->ffa, st->xn, &wu, L->b_up ? L->b_up + st->f0 : NULL, M);
            kern_cpu_gelu_tanh(st->ffa, (int64_t)M * F);
        }
        rc = row_parallel(c, st, st->proj, st->ffa, F, &L->w_down, L->b_down, M, POLICY_MLP_CHUNKS, mlp_bounds, st->mc0,
                          st->mc1);
        if (rc != BR_OK) return rc;
        kern_cpu_add(st->x, st->proj, (int64_t)M * D);
    }

    for (int i = 0; i < M; i++) {
        policy_seq *s = b->seqs[i];
        if (b->pos[i] + 1 > s->len) s->len = b->pos[i] + 1;
    }

    /* Final norm and LM head (replicated on every rank) only for the rows that want logits, order kept. */
    int n_out = 0;
    for (int i = 0; i < M; i++) {
        if (b->want_logits && !b->want_logits[i]) continue;
        if (n_out != i) memcpy(st->x + (size_t)n_out * D, st->x + (size_t)i * D, (size_t)D * sizeof(float));
        n_out++;
    }
    norm_rows(c, st->xn, st->x, w->final_norm_w, w->final_norm_b, n_out);
    kern_cpu_matmul(logits, st->xn, &w->lm_head, NULL, n_out);
    return BR_OK;
}

/* ---------------------------------------------------------------- drivers */

br_status policy_prefill(const policy_weights *w, policy_state *st, policy_kvcache *kv, int n_seqs,
                         policy_seq *const *seqs, const int32_t *const *tokens, const int *lens, int chunk,
                         float *logits) {
    const int V = w->cfg.vocab;
    if (chunk < 1) return br_fail(BR_EINVAL, "prefill: chunk size must be >= 1 (got %d)", chunk);
    if (chunk > st->max_tokens) chunk = st->max_tokens; /* a call never holds more than the run state */
    for (int s = 0; s < n_seqs; s++) {
        if (lens[s] < 1) return br_fail(BR_EINVAL, "prefill: sequence %d is empty", s);
        br_status rc = policy_kv_reserve(kv, seqs[s], seqs[s]->len + lens[s]);
        if (rc != BR_OK) return rc;
        const int32_t start = seqs[s]->len;
        for (int off = 0; off < lens[s]; off += chunk) {
            int n = lens[s] - off < chunk ? lens[s] - off : chunk;
            int32_t pos[n];
            uint8_t want[n];
            policy_seq *sq[n];
            for (int i = 0; i < n; i++) {
                pos[i] = start + off + i;
                want[i] = off + i == lens[s] - 1;
                sq[i] = seqs[s];
            }
            policy_batch b = {n, tokens[s] + off, pos, sq, want};
            rc = policy_forward(w, st, kv, &b, logits + (size_t)s * V);
            if (rc != BR_OK) return rc;
        }
    }
    return BR_OK;
}

br_status policy_decode(const policy_weights *w, policy_state *st, policy_kvcache *kv, int n_seqs,
                        policy_seq *const *seqs, const int32_t *tokens, float *logits) {
    if (n_seqs > st->max_tokens)
        return br_fail(BR_EINVAL, "decode: %d sequences, the run state holds %d tokens", n_seqs, st->max_tokens);
    int32_t pos[n_seqs > 0 ? n_seqs : 1];
    for (int s = 0; s < n_seqs; s++) {
        br_status rc = policy_kv_reserve(kv, seqs[s], seqs[s]->len + 1);
        if (rc != BR_OK) return rc;
        pos[s] = seqs[s]->len;
    }
    policy_batch b = {n_seqs, tokens, pos, seqs, NULL};
    return policy_forward(w, st, kv, &b, logits);
}

br_status policy_score(const policy_weights *w, policy_state *st, policy_kvcache *kv, int n_seqs,
                       const int32_t *const *tokens, const int *lens, float *logits) {
    const int T = st->max_tokens, V = w->cfg.vocab;
    br_status rc = BR_OK;
    policy_seq *seqs = calloc((size_t)(n_seqs > 0 ? n_seqs : 1), sizeof *seqs);
    int32_t *tok = malloc((size_t)T * sizeof *tok), *pos = malloc((size_t)T * sizeof *pos);
    policy_seq **sq = malloc((size_t)T * sizeof *sq);
    if (!seqs || !tok || !pos || !sq) {
        rc = br_fail(BR_ENOMEM, "score: out of memory");
        goto cleanup;
    }
    for (int s = 0; s < n_seqs; s++) {
        if ((rc = policy_seq_init(kv, &seqs[s])) != BR_OK) goto cleanup;
        if ((rc = policy_kv_reserve(kv, &seqs[s], lens[s])) != BR_OK) goto cleanup;
    }
    /* Pack tokens of consecutive sequences into calls of T rows, crossing sequence boundaries. */
    int s = 0, off = 0, n = 0;
    size_t out_row = 0;
    while (s < n_seqs) {
        if (off >= lens[s]) {
            s++;
            off = 0;
            continue;
        }
        tok[n] = tokens[s][off];
        pos[n] = off;
        sq[n] = &seqs[s];
        n++;
        off++;
        if (n == T) {
            policy_batch b = {n, tok, pos, sq, NULL};
            if ((rc = policy_forward(w, st, kv, &b, logits + out_row * V)) != BR_OK) goto cleanup;
            out_row += (size_t)n;
            n = 0;
        }
    }
    if (n > 0) {
        policy_batch b = {n, tok, pos, sq, NULL};
        if ((rc = policy_forward(w, st, kv, &b, logits + out_row * V)) != BR_OK) goto cleanup;
    }
cleanup:
    if (seqs)
        for (int i = 0; i < n_seqs; i++) {
            if (seqs[i].pages) policy_kv_release(kv, &seqs[i]);
            policy_seq_free(&seqs[i]);
        }
    free(seqs);
    free(tok);
    free(pos);
    free(sq);
    return rc;
}
