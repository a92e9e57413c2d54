/* The CUDA engine (--device cuda): the forward pass of policy/forward.c on the kernels of kernels/cuda, weights
 * and KV pages in device memory, and the vocabulary work on the device (kern_cuda_vocab_rows), so a step copies
 * back only (token, logits[token], max, log-sum-exp, digest) per row. Rows with top-k/top-p copy their logits row
 * back and use the host sampler. Buffers are allocated once; a step allocates nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/cuda/kern_cuda.h"
#include "rollout/engine.h"

typedef struct rollout_cuda rollout_cuda;
static void rollout_cuda_free(rollout_cuda *e);

typedef struct {
    void *wq, *wk, *wv, *wo, *wg, *wu, *wd; /* (N, Kp) device matrices */
    float *bq, *bk, *bv, *bo, *b_up, *b_down;
    float *attn_norm_w, *attn_norm_b, *mlp_norm_w, *mlp_norm_b, *q_norm, *k_norm;
} dev_layer;

struct rollout_cuda {
    const policy_weights *w;
    kern_mode mode;
    kern_dtype wdt;    /* dtype of the device matrices: bf16, or f32/bf16 in the fp32 mode */
    kern_dtype emb_dt; /* bf16 or f32 */
    dev_layer *L;
    void *embed, *pos_embed, *lm_head;
    float *final_w, *final_b, *rope;
    float *kc, *vc;    /* (n_layers, n_pages, page_size, n_kv, hd) f32 */
    size_t layer_kv;   /* elements per layer */
    policy_kvcache *kv;
    int T, max_rows_k; /* tokens per step; widest GEMM input */
    /* activations (T, ...) */
    float *x, *xn, *q, *k, *v, *att, *proj, *ffa, *ffb, *logits;
    float *q2, *k2; /* q/k after their RMSNorm (Qwen3): the norm kernels do not work in place */
    uint16_t *xb;
    int32_t *d_tok, *d_pos, *d_ptoff, *d_pages, *d_gather;
    kern_row_req *d_req;
    kern_row_out *d_out;
    void *d_vocab_ws; /* kern_cuda_vocab_rows' segment partials for T rows */
    size_t vocab_ws_bytes;
    /* host staging */
    int32_t *h_pages, *h_ptoff, *h_gather;
    kern_row_req *h_req;
    kern_row_out *h_out;
    float *h_row;
    void *scratch;
    cudaStream_t stream;
    /* standard mode: split-KV attention partials, sized once for any step (kern_cuda_attn_splitkv_workspace_max),
     * and the step's split count, chosen by count from the batch (so never captured in a graph) */
    float *splitkv_ws;
    size_t splitkv_ws_bytes;
    int n_sm, splitkv_splits;
    kern_cuda_graph **graphs; /* (T + 1): graphs[M] replays a pure decode step of M sequences */
    uint8_t *seen;            /* (T + 1): a decode step of M sequences ran once uncaptured (first launches of a
                               * kernel may set function attributes, which a capture must not record) */
    int use_graphs;
    /* invariant mode: row-parallel GEMMs (o_proj, down_proj) in chunks of K (DESIGN 7), their chunk counts and the
     * partials' workspace */
    int chunks_o, chunks_d;
    float *rp_ws;
    size_t rp_ws_bytes;
    /* tensor parallelism (DESIGN 7): this rank's heads, key/value heads and MLP columns; the all-gathered chunk
     * partials (C, rows, D) of the row-parallel GEMMs; the first failure of a collective in a step */
    policy_tp tp;
    int Hl, KVl, Fl;
    float *tp_ws;
    size_t tp_ws_bytes;
    int T_slice; /* rows per all-gather: min(T, 2048) */
    br_status tp_status;
    /* the device weight buffers in creation order (for the broadcast from a root rank); receive_only: a non-root
     * rank allocates them and waits for the root's bytes instead of converting its host copy */
    struct dev_buf {
        void *p;
        size_t bytes;
    } *wbufs;
    int n_wbufs, cap_wbufs, receive_only;
    br_status wbuf_status;
    /* tuning.cuda_profile (BITROLL_CUDA_PROFILE=1): events between the phases of each step (graphs off), summed per phase, printed
     * by rollout_cuda_free; [0] decode-only steps, [1] steps with prefill rows */
    int prof, prof_n, prof_cap, prof_steps[2];
    cudaEvent_t *prof_ev;
    int *prof_cat;
    double prof_ms[2][16];
};

enum { P_EMBED, P_NORM, P_QKV, P_QKNORM_ROPE, P_ATTN, P_OPROJ, P_UPGATE, P_ACT, P_DOWN, P_HEAD, P_VOCAB, P_N };
static const char *const prof_names[P_N] = {"embed",       "add+norm", "q/k/v GEMM", "qk-norm+rope",
                                            "kv+attention", "o GEMM",  "gate/up GEMM", "activation",
                                            "down GEMM",   "final norm+LM head", "vocab rows"};

/* Marks the end of a phase of category cat (profile only). */
static void prof(rollout_cuda *e, int cat) {
    if (!e->prof || e->prof_n >= e->prof_cap) return;
    e->prof_cat[e->prof_n] = cat;
    kern_cuda_event_record(e->prof_ev[e->prof_n++], e->stream);
}

static int pad16(int k) { return (k + 15) / 16 * 16; }

/* Notes a device weight buffer (for the broadcast); an allocation failure of the list is kept for later. */
static void note_buf(rollout_cuda *e, void *p, size_t bytes) {
    if (!p) return;
    if (e->n_wbufs == e->cap_wbufs) {
        int cap = e->cap_wbufs ? 2 * e->cap_wbufs : 64;
        struct dev_buf *b = realloc(e->wbufs, (size_t)cap * sizeof *b);
        if (!b) {
            e->wbuf_status = br_fail(BR_ENOMEM, "cuda engine: out of host memory");
            return;
        }
        e->wbufs = b;
        e->cap_wbufs = cap;
    }
    e->wbufs[e->n_wbufs].p = p;
    e->wbufs[e->n_wbufs++].bytes = bytes;
}

static float *upload_vec(rollout_cuda *e, const float *v, size_t n) {
    if (!v) return NULL;
    float *d = kern_cuda_malloc(n * sizeof(float));
    if (!e->receive_only) kern_cuda_upload(d, v, n * sizeof(float));
    note_buf(e, d, n * sizeof(float));
    return d;
}

/* Uploads rows n0..n0+N-1, columns k0..k0+K-1 of W as a dense (N, Kp) matrix of dtype dt (zero columns
 * K..Kp-1); a random-weights matrix (data NULL) is generated on the device instead, each element with the bits it
 * has in the whole matrix (a tensor-parallel rank's slice). A receiving rank only allocates it. */
static void *upload_view(rollout_cuda *e, const policy_weights *pw, const kern_wt *w, kern_dtype dt, int64_t n0,
                         int64_t N, int64_t k0, int64_t K, int Kp) {
    const size_t es = (size_t)kern_dtype_size(dt), bytes = (size_t)N * Kp * es;
    if (e->receive_only) {
        void *d = kern_cuda_malloc(bytes);
        note_buf(e, d, bytes);
        return d;
    }
    if (!w->data) {
        void *d = kern_cuda_malloc(bytes);
        /* U(-1,1)/sqrt(K) keeps activations O(1); the embedding (also the tied LM head) gets 4/sqrt(K), which
         * gives logits of standard deviation ~2.3, about a trained model's, so sampling is not one-hot. */
        const int embedding = w->rand_id == (1u << 20);
        kern_cuda_fill_random_view(d, dt, N, K, Kp, w->k, n0, k0, pw->random_seed, w->rand_id,
                                   (embedding ? 4.0f : 1.0f) / sqrtf((float)w->k), NULL);
        note_buf(e, d, bytes);
        return d;
    }
    uint8_t *h = calloc((size_t)N * Kp, es);
    if (!h) return NULL;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            float f = kern_cpu_wt_get(w, n0 + n, k0 + k);
            if (dt == KERN_F32) ((float *)h)[n * Kp + k] = f;
            else ((uint16_t *)h)[n * Kp + k] = br_f32_to_bf16(f);
        }
    void *d = kern_cuda_malloc(bytes);
    kern_cuda_upload(d, h, bytes);
    free(h);
    note_buf(e, d, bytes);
    return d;
}

static void *upload_matrix(rollout_cuda *e, const policy_weights *pw, const kern_wt *w, kern_dtype dt, int Kp) {
    return upload_view(e, pw, w, dt, 0, w->n, 0, w->k, Kp);
}

/* Elements [i0, i0 + n) of a vector, or NULL. */
static float *upload_part(rollout_cuda *e, const float *v, size_t i0, size_t n) {
    return v ? upload_vec(e, v + i0, n) : NULL;
}


/* The bf16 modes feed the tensor-core GEMMs a bf16 copy of their input (e->xb, K padded to 16). Where K needs no
 * padding, the kernel that produces the input (norm, SwiGLU, GELU) writes that copy itself: the same RNE of the same
 * f32 values as a separate cast, one launch fewer. */
static int writes_bf16(const rollout_cuda *e, int K) { return e->mode != KERN_MODE_FP32 && K % 16 == 0; }

/* out_i = in . W_i^T (+ b_i) for n GEMMs sharing one input of K columns: x f32 (M, K) for the fp32 mode, else the
 * bf16 e->xb, cast from x here unless x_in_xb (its producer wrote it). The invariant mode runs them as one launch. */
static void gemms(rollout_cuda *e, int n, float *const *outs, void *const *W, const float *const *bias, const int *Ns,
                  const float *x, int x_in_xb, int M, int K) {
    if (e->mode == KERN_MODE_FP32) {
        for (int i = 0; i < n; i++) kern_cuda_gemm_f32(outs[i], x, W[i], e->wdt, bias[i], M, Ns[i], K, e->stream);
        return;
    }
    const int Kp = pad16(K);
    if (!x_in_xb) kern_cuda_cast_bf16_pad(e->xb, x, M, K, Kp, e->stream);
    if (e->mode == KERN_MODE_STANDARD) {
        for (int i = 0; i < n; i++) kern_cuda_gemm_standard(outs[i], e->xb, W[i], bias[i], M, Ns[i], Kp, e->stream);
        return;
    }
    kern_cuda_gemm_bf16_multi(n, outs, (const uint16_t *const *)W, bias, Ns, e->xb, M, Kp, e->stream);
}

static void gemm(rollout_cuda *e, float *out, const float *x, int x_in_xb, void *W, const float *bias, int M, int N,
                 int K) {
    gemms(e, 1, &out, &W, &bias, &N, x, x_in_xb, M, K);
}

/* Chunks of a row-parallel GEMM's K in the invariant mode: 8 when K / 8 is a multiple of 16 (TP degrees 1, 2, 4,
 * 8 then give the same bits), else fewer; 1 = a plain GEMM. */
static int rowpar_chunks(int K) {
    int c = 8;
    while (c > 1 && K % (16 * c)) c /= 2;
    return c;
}

/* A row-parallel GEMM (o_proj, down_proj): in the invariant mode its K in `chunks` fixed chunks summed left to
 * right (kern_cuda_gemm_bf16_rowpar); the other modes as gemm(). */
static void gemm_rowpar(rollout_cuda *e, float *out, const float *x, int x_in_xb, void *W, const float *bias, int M,
                        int N, int K, int chunks) {
    if (e->mode != KERN_MODE_INVARIANT || chunks <= 1 || K % 16) {
        gemm(e, out, x, x_in_xb, W, bias, M, N, K);
        return;
    }
    if (!x_in_xb) kern_cuda_cast_bf16_pad(e->xb, x, M, K, K, e->stream);
    if (e->tp.size <= 1) {
        kern_cuda_gemm_bf16_rowpar(out, e->rp_ws, e->rp_ws_bytes, e->xb, W, bias, M, N, K, chunks, e->stream);
        return;
    }
    /* A TP rank holds K = the whole K / size columns: chunks / size of the chunks, the same columns of each. It
     * computes their partials into its slot, the group all-gathers the slots (rank order = chunk order), and
     * chunk_seq sums all chunks left to right: kern_cuda_gemm_bf16_rowpar's bits, whatever the size. */
    const int Cl = chunks / e->tp.size;
    for (int m0 = 0; m0 < M; m0 += e->T_slice) {
        const int Ms = M - m0 < e->T_slice ? M - m0 : e->T_slice;
        const size_t slot = (size_t)Cl * Ms * N;
        kern_cuda_gemm_bf16_partials(e->tp_ws + (size_t)e->tp.rank * slot, e->xb + (size_t)m0 * K, W, Ms, N, K, Cl, 0,
                                     Cl, e->stream);
        br_status st = e->tp.dev_allgather(e->tp.dev_ctx, e->tp_ws + (size_t)e->tp.rank * slot, slot * sizeof(float),
                                           e->tp_ws, e->stream);
        if (st != BR_OK && e->tp_status == BR_OK) e->tp_status = st;
        kern_cuda_chunk_seq(out + (size_t)m0 * N, e->tp_ws, chunks, Ms, N, bias, e->stream);
    }
}

/* [x += y;] norm(x) -> the next GEMM's input: e->xb directly where writes_bf16, else e->xn (f32). Returns whether
 * the result is in e->xb. */
static int norm_in(rollout_cuda *e, float *x, const float *y, const float *w, const float *b, int M) {
    const policy_config *c = &e->w->cfg;
    const int bf = writes_bf16(e, c->dim);
    float *of = bf ? NULL : e->xn;
    uint16_t *ob = bf ? e->xb : NULL;
    if (c->norm == POLICY_NORM_RMS) {
        if (y) kern_cuda_add_rmsnorm(x, y, of, ob, w, M, c->dim, c->norm_eps, e->stream);
        else kern_cuda_rmsnorm(of, ob, x, w, M, c->dim, c->norm_eps, e->stream);
    } else {
        if (y) kern_cuda_add_layernorm(x, y, of, ob, w, b, M, c->dim, c->norm_eps, e->stream);
        else kern_cuda_layernorm(of, ob, x, w, b, M, c->dim, c->norm_eps, e->stream);
    }
    return bf;
}

static br_status rollout_cuda_create(const policy_weights *w, const rollout_engine_opts *o, rollout_cuda **out) {
    *out = NULL;
    const int max_tokens = o->max_tokens, n_pages = o->n_pages, page_size = o->page_size;
    const policy_tp *tp = o->tp;
    const rollout_weights_bcast *wb = o->wb;
    const kern_mode mode = o->mode;
    const char *kernels = kern_mode_name(mode);
    if (kern_cuda_device_count() == 0) return br_fail(BR_EINVAL, "--device cuda: no CUDA device is visible");
    const br_tuning *tu = &o->tuning;
    if (tu->attn_decode != BR_ATTN_DECODE_AUTO && tu->attn_decode != BR_ATTN_DECODE_WALK &&
        tu->attn_decode != BR_ATTN_DECODE_PARALLEL)
        return br_fail(BR_EINVAL, "cuda engine: tuning.attn_decode %d is not auto (0), walk (1) or parallel (2)",
                       (int)tu->attn_decode);
    /* the kernels' switches (speed only: every setting gives the same bits), for every later launch */
    const kern_cuda_tuning kt = {tu->pdl != 0, tu->gemm_short != 0, tu->gemm_rowpar_fused != 0, (int)tu->attn_decode};
    kern_cuda_set_tuning(&kt);
    const policy_config *c = &w->cfg;
    const int hd = c->head_dim;
    if (hd > 32 && hd != 64 && hd != 128 && hd != 256)
        return br_fail(BR_EINVAL, "--device cuda: head_dim %d is not supported (<= 32, 64, 128 or 256)", hd);
    const int gmax = mode == KERN_MODE_STANDARD ? 32 : 16; /* split-KV (standard) takes 32 query heads per KV head */
    if (hd >= 32 && c->n_heads / c->n_kv_heads > gmax)
        return br_fail(BR_EINVAL, "--device cuda: %d query heads per KV head (n_heads %d, n_kv_heads %d); the attention "
                                  "kernels of --kernels %s take at most %d", c->n_heads / c->n_kv_heads, c->n_heads,
                       c->n_kv_heads, kernels, gmax);

    const int tps = tp && tp->size > 1 ? tp->size : 1;
    if (wb && (tps > 1 || !wb->bcast || !wb->check || !wb->agree))
        return br_fail(BR_EINVAL, "cuda engine: a weights broadcast needs bcast/check/agree and no tensor parallelism");
    if (tps > 1) {
        br_status rc = policy_tp_check(c, tps);
        if (rc != BR_OK) return rc;
        if (mode != KERN_MODE_INVARIANT)
            return br_fail(BR_EINVAL, "--tp %d on --device cuda: only --kernels invariant is tensor parallel", tps);
        if (!tp->dev_allgather || !tp->dev_wait)
            return br_fail(BR_EINVAL, "--tp %d on --device cuda: no device all-gather", tps);
        const int co = rowpar_chunks(c->n_heads * hd), cd = rowpar_chunks(c->ffn_dim);
        if (co % tps || cd % tps || c->ffn_dim % (16 * tps))
            return br_fail(BR_EINVAL, "--tp %d on --device cuda: the attention output (K = %d, %d chunks) and the MLP "
                                      "(K = %d, %d chunks) must split into whole chunks of a multiple of 16 columns",
                           tps, c->n_heads * hd, co, c->ffn_dim, cd);
    }
    rollout_cuda *e = calloc(1, sizeof *e);
    if (!e) return br_fail(BR_ENOMEM, "cuda engine: out of memory");
    br_status rc = policy_kv_create_pages(c, n_pages, page_size, &e->kv);
    if (rc != BR_OK) {
        free(e);
        return rc;
    }
    e->w = w;
    e->mode = mode;
    e->T = max_tokens;
    e->receive_only = wb && !wb->is_root;
    if (tps > 1) e->tp = *tp;
    else e->tp.size = 1;
    e->Hl = c->n_heads / tps;
    e->KVl = c->n_kv_heads / tps;
    e->Fl = c->ffn_dim / tps;
    e->kv->n_kv = e->KVl;
    e->wdt = mode == KERN_MODE_FP32 && w->dtype == KERN_F32 ? KERN_F32 : KERN_BF16;
    e->emb_dt = w->dtype == KERN_BF16 ? KERN_BF16 : KERN_F32;
    const int D = c->dim, H = c->n_heads, KV = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    const int kp = mode == KERN_MODE_FP32 ? 0 : 1; /* pad K to 16 for the tensor-core GEMM */
#define KP(k) (kp ? pad16(k) : (k))
    e->L = calloc((size_t)c->n_layers, sizeof *e->L);
    if (!e->L) {
        rollout_cuda_free(e);
        return br_fail(BR_ENOMEM, "cuda engine: out of memory");
    }
    for (int l = 0; l < c->n_layers; l++) {
        const policy_layer *s = &w->layers[l];
        dev_layer *d = &e->L[l];
        /* this rank's share (all of it without TP): heads h0.., key/value heads kv0.., MLP columns f0.. */
        const int64_t Hl = e->Hl, KVl = e->KVl, Fl = e->Fl, r = e->tp.size > 1 ? e->tp.rank : 0;
        const int64_t q0 = r * Hl * hd, kv0 = r * KVl * hd, f0 = r * Fl;
        d->wq = upload_view(e, w, &s->wq, e->wdt, q0, Hl * hd, 0, D, KP(D));
        d->wk = upload_view(e, w, &s->wk, e->wdt, kv0, KVl * hd, 0, D, KP(D));
        d->wv = upload_view(e, w, &s->wv, e->wdt, kv0, KVl * hd, 0, D, KP(D));
        d->wo = upload_view(e, w, &s->wo, e->wdt, 0, D, q0, Hl * hd, KP(Hl * hd));
        if (c->act == POLICY_ACT_SILU_GLU) d->wg = upload_view(e, w, &s->w_gate, e->wdt, f0, Fl, 0, D, KP(D));
        d->wu = upload_view(e, w, &s->w_up, e->wdt, f0, Fl, 0, D, KP(D));
        d->wd = upload_view(e, w, &s->w_down, e->wdt, 0, D, f0, Fl, KP(Fl));
        d->bq = upload_part(e, s->bq, (size_t)q0, (size_t)Hl * hd);
        d->bk = upload_part(e, s->bk, (size_t)kv0, (size_t)KVl * hd);
        d->bv = upload_part(e, s->bv, (size_t)kv0, (size_t)KVl * hd);
        d->bo = upload_vec(e, s->bo, D);
        d->b_up = upload_part(e, s->b_up, (size_t)f0, (size_t)Fl);
        d->b_down = upload_vec(e, s->b_down, D);
        d->attn_norm_w = upload_vec(e, s->attn_norm_w, D);
        d->attn_norm_b = upload_vec(e, s->attn_norm_b, D);
        d->mlp_norm_w = upload_vec(e, s->mlp_norm_w, D);
        d->mlp_norm_b = upload_vec(e, s->mlp_norm_b, D);
        d->q_norm = upload_vec(e, s->q_norm, hd);
        d->k_norm = upload_vec(e, s->k_norm, hd);
        if (!d->wq || !d->wk || !d->wv || !d->wo || !d->wu || !d->wd || (c->act == POLICY_ACT_SILU_GLU && !d->wg)) {
            rc = br_fail(BR_ENOMEM, "cuda engine: out of host memory converting layer %d", l);
            break;
        }
    }
    if (rc == BR_OK) {
        e->embed = upload_matrix(e, w, &w->embed, e->emb_dt, D);
        if (c->learned_pos) e->pos_embed = upload_matrix(e, w, &w->pos_embed, e->emb_dt, D);
        e->lm_head = upload_matrix(e, w, &w->lm_head, e->wdt, KP(D));
        e->final_w = upload_vec(e, w->final_norm_w, D);
        e->final_b = upload_vec(e, w->final_norm_b, D);
        if (!e->embed || !e->lm_head || (c->learned_pos && !e->pos_embed))
            rc = br_fail(BR_ENOMEM, "cuda engine: out of host memory converting the embeddings");
    }
#undef KP
    if (rc == BR_OK && !c->learned_pos) {
        size_t n = (size_t)c->max_pos * (hd / 2) * 2;
        float *rope = malloc(n * sizeof(float));
        if (!rope) {
            rc = br_fail(BR_ENOMEM, "cuda engine: out of memory");
        } else {
            kern_cpu_rope_table(rope, c->max_pos, hd, c->rope_theta, w->dtype);
            e->rope = upload_vec(e, rope, n);
            free(rope);
        }
    }
    if (rc == BR_OK) rc = e->wbuf_status;
    if (wb) { /* every rank gets here: agree, then the root's buffers reach the others and are fingerprinted */
        rc = wb->agree(wb->ctx, rc);
        kern_cuda_sync(); /* the root's uploads and generated weights are complete */
        for (int i = 0; rc == BR_OK && i < e->n_wbufs; i++) rc = wb->bcast(wb->ctx, e->wbufs[i].p, e->wbufs[i].bytes);
        for (int i = 0; rc == BR_OK && i < e->n_wbufs; i++) {
            rc = wb->check(wb->ctx, e->wbufs[i].p, e->wbufs[i].bytes);
            if (rc != BR_OK) br_fail_ctx(rc, "device weight buffer %d of %d (%zu bytes)", i, e->n_wbufs, e->wbufs[i].bytes);
        }
    }
    if (rc != BR_OK) {
        rollout_cuda_free(e);
        return rc;
    }
    e->layer_kv = (size_t)n_pages * page_size * e->KVl * hd;
    e->kc = kern_cuda_malloc(e->layer_kv * c->n_layers * sizeof(float));
    e->vc = kern_cuda_malloc(e->layer_kv * c->n_layers * sizeof(float));
    kern_cuda_memset(e->kc, 0, e->layer_kv * c->n_layers * sizeof(float));
    kern_cuda_memset(e->vc, 0, e->layer_kv * c->n_layers * sizeof(float));

    const size_t T = (size_t)max_tokens;
    int widest = D > H * hd ? D : H * hd;
    if (F > widest) widest = F;
    e->max_rows_k = pad16(widest);
    e->x = kern_cuda_malloc(T * D * 4);
    e->xn = kern_cuda_malloc(T * D * 4);
    e->q = kern_cuda_malloc(T * H * hd * 4);
    e->k = kern_cuda_malloc(T * KV * hd * 4);
    e->v = kern_cuda_malloc(T * KV * hd * 4);
    e->att = kern_cuda_malloc(T * H * hd * 4);
    if (c->qk_norm) {
        e->q2 = kern_cuda_malloc(T * H * hd * 4);
        e->k2 = kern_cuda_malloc(T * KV * hd * 4);
    }
    e->proj = kern_cuda_malloc(T * D * 4);
    e->ffa = kern_cuda_malloc(T * F * 4);
    e->ffb = kern_cuda_malloc(T * F * 4);
    e->logits = kern_cuda_malloc(T * V * 4);
    e->xb = kern_cuda_malloc(T * e->max_rows_k * 2);
    e->d_tok = kern_cuda_malloc(T * 4);
    e->d_pos = kern_cuda_malloc(T * 4);
    e->d_ptoff = kern_cuda_malloc(T * 4);
    e->d_gather = kern_cuda_malloc(T * 4);
    e->d_pages = kern_cuda_malloc(T * (size_t)e->kv->max_pages_per_seq * 4);
    e->d_req = kern_cuda_malloc(T * sizeof(kern_row_req));
    e->d_out = kern_cuda_malloc(T * sizeof(kern_row_out));
    e->vocab_ws_bytes = kern_cuda_vocab_rows_workspace(max_tokens, V);
    e->d_vocab_ws = kern_cuda_malloc(e->vocab_ws_bytes);
    e->stream = kern_cuda_stream_create();
    e->h_pages = kern_cuda_host_alloc(T * (size_t)e->kv->max_pages_per_seq * 4);
    e->h_ptoff = kern_cuda_host_alloc(T * 4);
    e->h_gather = kern_cuda_host_alloc(T * 4);
    e->h_req = kern_cuda_host_alloc(T * sizeof(kern_row_req));
    e->h_out = kern_cuda_host_alloc(T * sizeof(kern_row_out));
    e->splitkv_splits = 1;
    if (mode == KERN_MODE_STANDARD && hd >= 32) {
        int l2 = 0;
        kern_cuda_device_props(&e->n_sm, &l2);
        e->splitkv_ws_bytes = kern_cuda_attn_splitkv_workspace_max(max_tokens, H, KV, hd, e->n_sm);
        if (e->splitkv_ws_bytes) e->splitkv_ws = kern_cuda_malloc(e->splitkv_ws_bytes);
    }
    if (mode == KERN_MODE_INVARIANT) {
        e->chunks_o = rowpar_chunks(H * hd);
        e->chunks_d = rowpar_chunks(F);
        e->T_slice = max_tokens < 2048 ? max_tokens : 2048;
        if (e->tp.size > 1) {
            const int cmax = e->chunks_o > e->chunks_d ? e->chunks_o : e->chunks_d;
            e->tp_ws_bytes = (size_t)cmax * e->T_slice * D * sizeof(float);
            e->tp_ws = kern_cuda_malloc(e->tp_ws_bytes);
        }
        const int Ms[2] = {max_tokens < 64 ? max_tokens : 64, max_tokens};
        for (int i = 0; i < 2; i++) {
            size_t a = kern_cuda_gemm_rowpar_ws(Ms[i], D, H * hd, e->chunks_o);
            size_t b = kern_cuda_gemm_rowpar_ws(Ms[i], D, F, e->chunks_d);
            if (a > e->rp_ws_bytes) e->rp_ws_bytes = a;
            if (b > e->rp_ws_bytes) e->rp_ws_bytes = b;
        }
        if (e->rp_ws_bytes) {
            e->rp_ws = kern_cuda_malloc(e->rp_ws_bytes);
            kern_cuda_gemm_rowpar_ws_prepare(e->rp_ws, e->rp_ws_bytes);
        }
    }
    e->graphs = calloc(T + 1, sizeof *e->graphs);
    e->seen = calloc(T + 1, 1);
    /* CUDA graphs for decode steps: on unless tuning.cuda_graphs = 0 or profiling; the standard mode is never
     * captured (cuBLAS; split-KV attention whose split count changes with the batch) */
    e->prof = o->tuning.cuda_profile != 0;
    /* (tensor parallel steps are not captured: the all-gather may be MPI through host buffers) */
    e->use_graphs = mode != KERN_MODE_STANDARD && o->tuning.cuda_graphs && !e->prof && e->tp.size <= 1;
    if (e->prof) {
        e->prof_cap = 16 * c->n_layers + 16;
        e->prof_ev = calloc((size_t)e->prof_cap + 1, sizeof *e->prof_ev);
        e->prof_cat = calloc((size_t)e->prof_cap, sizeof *e->prof_cat);
        if (!e->prof_ev || !e->prof_cat) {
            rollout_cuda_free(e);
            return br_fail(BR_ENOMEM, "cuda engine: out of host memory");
        }
        for (int i = 0; i <= e->prof_cap; i++) e->prof_ev[i] = kern_cuda_event_create();
    }
    e->h_row = malloc((size_t)V * 4);
    e->scratch = malloc(rollout_sample_scratch_bytes(V));
    if (!e->graphs || !e->seen || !e->h_row || !e->scratch) {
        rollout_cuda_free(e);
        return br_fail(BR_ENOMEM, "cuda engine: out of host memory");
    }
    kern_cuda_sync();
    *out = e;
    return BR_OK;
}

static void prof_report(const rollout_cuda *e) {
    for (int k = 0; k < 2; k++) {
        if (!e->prof_steps[k]) continue;
        double tot = 0;
        for (int i = 0; i < P_N; i++) tot += e->prof_ms[k][i];
        fprintf(stderr, "cuda profile, %s steps: %d, %.3f ms of kernels (%.3f ms per step)\n",
                k ? "prefill/mixed" : "decode", e->prof_steps[k], tot, tot / e->prof_steps[k]);
        for (int i = 0; i < P_N; i++)
            if (e->prof_ms[k][i] > 0)
                fprintf(stderr, "  %-20s %10.3f ms %6.1f%%  %8.1f us/step\n", prof_names[i], e->prof_ms[k][i],
                        100.0 * e->prof_ms[k][i] / tot, 1000.0 * e->prof_ms[k][i] / e->prof_steps[k]);
    }
}

static void rollout_cuda_free(rollout_cuda *e) {
    if (!e) return;
    if (e->prof) prof_report(e);
    if (e->prof_ev)
        for (int i = 0; i <= e->prof_cap; i++) kern_cuda_event_free(e->prof_ev[i]);
    free(e->prof_ev);
    free(e->prof_cat);
    if (e->L)
        for (int l = 0; l < e->w->cfg.n_layers; l++) {
            dev_layer *d = &e->L[l];
            void *ptrs[] = {d->wq, d->wk, d->wv, d->wo, d->wg, d->wu, d->wd, d->bq, d->bk, d->bv, d->bo, d->b_up,
                            d->b_down, d->attn_norm_w, d->attn_norm_b, d->mlp_norm_w, d->mlp_norm_b, d->q_norm, d->k_norm};
            for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) kern_cuda_free(ptrs[i]);
        }
    free(e->L);
    free(e->wbufs);
    void *dev[] = {e->embed, e->pos_embed, e->lm_head, e->final_w, e->final_b, e->rope, e->kc, e->vc, e->x, e->xn,
                   e->q, e->k, e->v, e->q2, e->k2, e->att, e->proj, e->ffa, e->ffb, e->logits, e->xb, e->d_tok, e->d_pos,
                   e->d_ptoff, e->d_gather, e->d_pages, e->d_req, e->d_out, e->splitkv_ws, e->d_vocab_ws, e->rp_ws, e->tp_ws};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) kern_cuda_free(dev[i]);
    if (e->graphs)
        for (int i = 0; i <= e->T; i++) kern_cuda_graph_free(e->graphs[i]);
    free(e->graphs);
    free(e->seen);
    kern_cuda_host_free(e->h_pages);
    kern_cuda_host_free(e->h_ptoff);
    kern_cuda_host_free(e->h_gather);
    kern_cuda_host_free(e->h_req);
    kern_cuda_host_free(e->h_out);
    kern_cuda_stream_free(e->stream);
    free(e->h_row);
    free(e->scratch);
    policy_kv_free(e->kv);
    free(e);
}

static policy_kvcache *rollout_cuda_kv(rollout_cuda *e) { return e->kv; }

/* Every launch of one step, on e->stream, from the device-side inputs (tokens, positions, page tables, gather
 * indices, row requests) to the vocabulary rows. The launches depend only on (M, R, multi), so a pure decode
 * step of M sequences can be captured once and replayed as a CUDA graph -- except in the standard mode, whose
 * split-KV attention also takes e->splitkv_splits (chosen from the batch); that mode is never captured. */
static void run_kernels(rollout_cuda *e, int M, int R, int multi) {
    const policy_config *c = &e->w->cfg;
    const int D = c->dim, H = e->Hl, KV = e->KVl, hd = c->head_dim, F = e->Fl, V = c->vocab; /* H, KV, F: this rank's */
    const float scale = 1.0f / sqrtf((float)hd);
    cudaStream_t st = e->stream;
    if (e->prof) {
        e->prof_n = 0;
        kern_cuda_event_record(e->prof_ev[e->prof_cap], st); /* the step's start */
    }
    kern_cuda_embed(e->x, e->embed, c->learned_pos ? e->pos_embed : NULL, e->emb_dt, e->d_tok, e->d_pos, M, D, st);
    prof(e, P_EMBED);
    /* the residual branch's output waiting to be added to x: fused with the next norm (bit for bit the add, then
     * the norm) */
    const float *pending = NULL;
    for (int l = 0; l < c->n_layers; l++) {
        const dev_layer *L = &e->L[l];
        float *kc = e->kc + e->layer_kv * l, *vc = e->vc + e->layer_kv * l;
        int in_xb = norm_in(e, e->x, pending, L->attn_norm_w, L->attn_norm_b, M);
        prof(e, P_NORM);
        {
            float *outs[3] = {e->q, e->k, e->v};
            void *W[3] = {L->wq, L->wk, L->wv};
            const float *bias[3] = {L->bq, L->bk, L->bv};
            const int Ns[3] = {H * hd, KV * hd, KV * hd};
            gemms(e, 3, outs, W, bias, Ns, e->xn, in_xb, M, D);
        }
        prof(e, P_QKV);
        float *q = e->q, *k = e->k;
        if (c->qk_norm && !c->learned_pos) { /* one launch: bit for bit the two norms and the two RoPEs */
            kern_cuda_qk_norm_rope(e->q2, e->k2, e->q, e->k, L->q_norm, L->k_norm, e->d_pos, e->rope, M, H, KV, hd,
                                   c->norm_eps, st);
            q = e->q2;
            k = e->k2;
        } else {
            if (c->qk_norm) {
                kern_cuda_rmsnorm(e->q2, NULL, e->q, L->q_norm, M * H, hd, c->norm_eps, st);
                kern_cuda_rmsnorm(e->k2, NULL, e->k, L->k_norm, M * KV, hd, c->norm_eps, st);
                q = e->q2;
                k = e->k2;
            }
            if (!c->learned_pos) {
                kern_cuda_rope(q, e->d_pos, e->rope, M, H, hd, st);
                kern_cuda_rope(k, e->d_pos, e->rope, M, KV, hd, st);
            }
        }
        prof(e, P_QKNORM_ROPE);
        /* K/V reach the cache before any row's attention reads it. A pure decode step (invariant and fp32 modes)
         * writes them inside its attention launch, which in the bf16 mode also writes o_proj's bf16 input. */
        const int fused = !multi && hd >= 32 && e->mode != KERN_MODE_STANDARD;
        const int att_bf = fused && writes_bf16(e, H * hd);
        if (fused) {
            kern_cuda_attn_decode_fused(att_bf ? NULL : e->att, att_bf ? e->xb : NULL, kc, vc, k, e->v, q,
                                        e->d_pages, e->d_ptoff, e->d_pos, M, H, KV, hd, e->kv->page_size, scale, st);
        } else {
            kern_cuda_kv_write(kc, vc, k, e->v, e->d_pages, e->d_ptoff, e->d_pos, M, e->kv->page_size, KV, hd, st);
            if (hd < 32)
                kern_cuda_attn_small(e->att, q, kc, vc, e->d_pages, e->d_ptoff, e->d_pos, M, H, KV, hd,
                                     e->kv->page_size, scale, st);
            else if (e->mode == KERN_MODE_STANDARD)
                kern_cuda_attn_splitkv(e->att, q, kc, vc, e->d_pages, e->d_ptoff, e->d_pos, M, H, KV, hd,
                                       e->kv->page_size, scale, e->splitkv_splits, multi, e->splitkv_ws,
                                       e->splitkv_ws_bytes, st);
            else /* rows of several sequences or several rows of one: the prefill launcher */
                kern_cuda_attn_prefill(e->att, q, kc, vc, e->d_pages, e->d_ptoff, e->d_pos, M, H, KV, hd,
                                       e->kv->page_size, scale, st);
        }
        prof(e, P_ATTN);
        gemm_rowpar(e, e->proj, e->att, att_bf, L->wo, L->bo, M, D, H * hd, e->chunks_o);
        prof(e, P_OPROJ);
        in_xb = norm_in(e, e->x, e->proj, L->mlp_norm_w, L->mlp_norm_b, M);
        prof(e, P_NORM);
        const int act_bf = writes_bf16(e, F);
        if (c->act == POLICY_ACT_SILU_GLU) {
            float *outs[2] = {e->ffa, e->ffb};
            void *W[2] = {L->wg, L->wu};
            const float *bias[2] = {NULL, NULL};
            const int Ns[2] = {F, F};
            gemms(e, 2, outs, W, bias, Ns, e->xn, in_xb, M, D);
            prof(e, P_UPGATE);
            kern_cuda_swiglu(act_bf ? NULL : e->ffa, act_bf ? e->xb : NULL, e->ffa, e->ffb, (int64_t)M * F, st);
        } else {
            gemm(e, e->ffa, e->xn, in_xb, L->wu, L->b_up, M, F, D);
            prof(e, P_UPGATE);
            kern_cuda_gelu_tanh(e->ffa, act_bf ? e->xb : NULL, (int64_t)M * F, st);
        }
        prof(e, P_ACT);
        gemm_rowpar(e, e->proj, e->ffa, act_bf, L->wd, L->b_down, M, D, F, e->chunks_d);
        prof(e, P_DOWN);
        pending = e->proj;
    }
    kern_cuda_add(e->x, pending, (int64_t)M * D, st);
    if (R == 0) return;
    /* rows that want logits: gather, final norm, LM head, vocabulary rows */
    kern_cuda_gather_rows(e->proj, e->x, e->d_gather, R, D, st);
    const int in_xb = norm_in(e, e->proj, NULL, e->final_w, e->final_b, R);
    gemm(e, e->logits, e->xn, in_xb, e->lm_head, NULL, R, V, D);
    prof(e, P_HEAD);
    kern_cuda_vocab_rows(e->d_out, e->logits, e->d_req, R, V, e->d_vocab_ws, e->vocab_ws_bytes, st);
    prof(e, P_VOCAB);
}

static br_status rollout_cuda_step(rollout_cuda *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
    const policy_weights *w = e->w;
    const policy_config *c = &w->cfg;
    br_status rc = policy_batch_check(w, e->T, e->kv, b);
    if (rc != BR_OK || b->n == 0) return rc;
    const int M = b->n, V = c->vocab;
    cudaStream_t st = e->stream;

    /* page tables: each distinct sequence's pages once; rows point at their sequence's table */
    int n_pages = 0, multi = 0, R = 0;
    for (int i = 0; i < M; i++) {
        int j = i - 1;
        while (j >= 0 && b->seqs[j] != b->seqs[i]) j--;
        if (j >= 0) {
            e->h_ptoff[i] = e->h_ptoff[j];
            multi = 1;
            continue;
        }
        e->h_ptoff[i] = n_pages;
        memcpy(e->h_pages + n_pages, b->seqs[i]->pages, (size_t)b->seqs[i]->n_pages * 4);
        n_pages += b->seqs[i]->n_pages;
    }
    for (int i = 0; i < M; i++)
        if (!b->want_logits || b->want_logits[i]) e->h_gather[R++] = i;
    for (int r = 0; r < R; r++) {
        const rollout_sampling *s = rows[r].sampling;
        kern_row_req *q = &e->h_req[r];
        /* top-k / top-p rows pick their token on the host from the logits row (below) */
        const int host = rows[r].target < 0 && s->temperature > 0 && (s->top_k > 0 || s->top_p < 1.0f);
        q->temperature = s->temperature > 0 ? s->temperature : 1.0f;
        q->mode = rows[r].target >= 0 || host ? KERN_ROW_TARGET : s->temperature > 0 ? KERN_ROW_GUMBEL : KERN_ROW_GREEDY;
        q->target = rows[r].target;
        q->position = rows[r].position;
        q->seed = s->seed;
        q->sample_id = (uint64_t)rows[r].sample_id;
    }
    if (e->mode == KERN_MODE_STANDARD) { /* split-KV by count: from the rows and the longest row's keys */
        int max_keys = 0;
        for (int i = 0; i < M; i++)
            if (b->pos[i] + 1 > max_keys) max_keys = b->pos[i] + 1;
        e->splitkv_splits = kern_cuda_attn_splitkv_splits(M, c->n_kv_heads, max_keys, e->n_sm);
    }
    kern_cuda_upload_async(e->d_tok, b->tokens, (size_t)M * 4, st);
    kern_cuda_upload_async(e->d_pos, b->pos, (size_t)M * 4, st);
    kern_cuda_upload_async(e->d_ptoff, e->h_ptoff, (size_t)M * 4, st);
    kern_cuda_upload_async(e->d_pages, e->h_pages, (size_t)n_pages * 4, st);
    kern_cuda_upload_async(e->d_gather, e->h_gather, (size_t)R * 4, st);
    kern_cuda_upload_async(e->d_req, e->h_req, (size_t)R * sizeof(kern_row_req), st);

    e->tp_status = BR_OK;
    if (e->use_graphs && !multi && R == M && e->seen[M]) {
        if (!e->graphs[M]) {
            kern_cuda_capture_begin(st);
            run_kernels(e, M, R, multi);
            e->graphs[M] = kern_cuda_capture_end(st);
        }
        kern_cuda_graph_launch(e->graphs[M], st);
    } else {
        run_kernels(e, M, R, multi);
        if (!multi && R == M) e->seen[M] = 1;
    }
    kern_cuda_download_async(e->h_out, e->d_out, (size_t)R * sizeof(kern_row_out), st);
    if (e->tp.size > 1) { /* the group agrees on the step's collectives (a failed rank must not leave peers waiting) */
        br_status rc = e->tp.dev_wait(e->tp.dev_ctx, st, e->tp_status);
        if (rc != BR_OK) return rc;
    }
    kern_cuda_stream_sync(st);
    if (e->prof) {
        e->prof_steps[multi]++;
        for (int i = 0; i < e->prof_n; i++)
            e->prof_ms[multi][e->prof_cat[i]] +=
                kern_cuda_event_ms(i ? e->prof_ev[i - 1] : e->prof_ev[e->prof_cap], e->prof_ev[i]);
    }
    for (int i = 0; i < M; i++)
        if (b->pos[i] + 1 > b->seqs[i]->len) b->seqs[i]->len = b->pos[i] + 1;

    for (int r = 0; r < R; r++) {
        const rollout_sampling *s = rows[r].sampling;
        kern_row_out *o = &e->h_out[r];
        if (e->h_req[r].mode == KERN_ROW_TARGET && rows[r].target < 0) {
            kern_cuda_download(e->h_row, e->logits + (size_t)r * V, (size_t)V * 4);
            o->token = rollout_sample(e->h_row, V, s, (uint64_t)rows[r].sample_id, rows[r].position, e->scratch);
            o->x_token = e->h_row[o->token];
        }
        /* the recorded log-prob, one formula for generate and score: (x_t / T - m) - lse */
        const float T = e->h_req[r].temperature;
        out[r].token = o->token;
        out[r].logprob = (o->x_token / T - o->m) - o->lse;
        out[r].digest = o->digest;
    }
    return BR_OK;
}

/* ---- the backend table (rollout_backend_i) */

static br_status cuda_create(const policy_weights *w, const rollout_engine_opts *o, void **ctx) {
    rollout_cuda *e = NULL;
    br_status rc = rollout_cuda_create(w, o, &e);
    *ctx = e;
    return rc;
}
static void cuda_destroy(void *ctx) { rollout_cuda_free(ctx); }
static policy_kvcache *cuda_kv(void *ctx) { return rollout_cuda_kv(ctx); }
static br_status cuda_step(void *ctx, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
    return rollout_cuda_step(ctx, b, rows, out);
}
static br_status cuda_last_logits(void *ctx, float *out, int rows) {
    rollout_cuda *e = ctx;
    if (rows > e->T) return br_fail(BR_EINVAL, "cuda engine: %d logits rows asked, the engine holds %d", rows, e->T);
    kern_cuda_download(out, e->logits, (size_t)rows * e->w->cfg.vocab * sizeof(float));
    return BR_OK;
}
static void cuda_select_device(int index) { kern_cuda_set_device(index); }

const rollout_backend_i rollout_backend_cuda = {
    "cuda", cuda_create, cuda_destroy, cuda_kv, cuda_step, cuda_last_logits, kern_cuda_device_count,
    cuda_select_device, kern_cuda_device_name, kern_cuda_upload, kern_cuda_download,
};
