/* The CUDA engine (--device cuda): the forward pass of policy/forward.c on the kernels of kernels/cuda, weights
 * and KV pages in device memory, and the vocabulary work on the device (kern_cuda_vocab_rows), so a step copies
 * back only (token, logits[token], max, log-sum-exp, digest) per row; rows with top-k/top-p pick their token on the
 * device too (kern_cuda_sample_filter: rollout_sample's token, bit for bit). Buffers are allocated once; a step
 * allocates nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/cuda/kern_cuda.h"
#include "policy/forward.h"
#include "rollout/engine.h"
#include "rollout/scheduler.h"

/* The backend's mem_info: the bound device's free and total bytes (the scheduler's memory plan). */
static void be_mem_info(int64_t *free_bytes, int64_t *total_bytes) {
    size_t f = 0, t = 0;
    kern_cuda_mem_info(&f, &t);
    *free_bytes = (int64_t)f;
    *total_bytes = (int64_t)t;
}

/* The engine's state in four parts (llama2.c's split): device weights (read-only once built), the KV cache, the run
 * state every step uses, and the CUDA graphs / profile; the engine struct aggregates them with the configuration.
 * Shapes: D model width, V vocabulary, hd head dim, T tokens per step, Hl / KVl / Fl this rank's heads, key/value
 * heads and MLP columns (all of them without tensor parallelism), Kp(k) = k padded to 16 in the bf16 modes. */

typedef struct {
    void *wq;                                  /* (Hl*hd, Kp(D)) wdt */
    void *wk, *wv;                             /* (KVl*hd, Kp(D)) wdt */
    void *wo;                                  /* (D, Kp(Hl*hd)) wdt: this rank's columns of o_proj */
    void *wg, *wu;                             /* (Fl, Kp(D)) wdt; wg NULL without a gated MLP */
    void *wd;                                  /* (D, Kp(Fl)) wdt: this rank's columns of down_proj */
    float *bq;                                 /* (Hl*hd) f32, or NULL */
    float *bk, *bv;                            /* (KVl*hd) f32, or NULL */
    float *bo, *b_up, *b_down;                 /* (D), (Fl), (D) f32, or NULL */
    float *attn_norm_w, *attn_norm_b;          /* (D) f32; the bias for LayerNorm only */
    float *mlp_norm_w, *mlp_norm_b;            /* (D) f32; the bias for LayerNorm only */
    float *q_norm, *k_norm;                    /* (hd) f32, Qwen3 only */
} cuda_layer;

/* Device weights: one allocation per tensor, written once at creation (uploaded, generated, or received from the
 * root rank) and only read by the steps. */
typedef struct {
    kern_dtype wdt;            /* of the matrices: bf16, or f32/bf16 in the fp32 mode */
    kern_dtype emb_dt;         /* of the embeddings: bf16 or f32 */
    int n_layers;
    cuda_layer *L;             /* (n_layers) */
    void *embed;               /* (V, D) emb_dt */
    void *pos_embed;           /* (max_pos, D) emb_dt, learned positions (GPT-2) only */
    void *lm_head;             /* (V, Kp(D)) wdt */
    float *final_w, *final_b;  /* (D) f32; final_b for LayerNorm only */
    float *rope;               /* (max_pos, hd/2, 2) f32 cos/sin (kern_cpu_rope_table); NULL for learned positions */
    /* every buffer above in creation order: the broadcast from a root rank moves them one by one */
    struct cuda_buf {
        void *p;
        size_t bytes;
    } *bufs;
    int n_bufs, cap_bufs;
    int receive_only;          /* a non-root rank of a broadcast: allocates only, the root's bytes arrive later */
    br_status status;          /* the first failure to note a buffer (host memory) */
} cuda_weights;

/* KV cache: the pages in device memory, their allocator on the host. Elements are bf16 in the invariant and standard
 * modes (half the bytes each decode step reads; kernels/cuda/kv_elem.cuh), f32 in the fp32 mode (the CPU's cache). */
typedef struct {
    policy_kvcache *pages;     /* host page allocator (policy_kv_create_pages; n_kv = KVl) */
    void *k, *v;               /* (n_layers, n_pages, page_size, KVl, hd) f32 or bf16 */
    size_t layer;              /* elements of one layer's K (or V) */
    int bf16;                  /* element: bf16 (2 bytes) or f32 (4) */
} cuda_kv;

/* Run state: every buffer a step uses, allocated once at creation (a step allocates nothing). R <= T rows of a step
 * want logits. Allocated for the whole model's H heads, KV key/value heads and F MLP columns; a step of a
 * tensor-parallel rank uses rows of its share (Hl*hd, KVl*hd, Fl). Kw = Kp(max(D, H*hd, F)), the widest GEMM input. */
typedef struct {
    int T, Kw;
    float *x;                  /* (T, D) f32 residual stream */
    float *xn;                 /* (T, D) f32 normed input of the next GEMM, when it is not written as bf16 to xb */
    float *q;                  /* (T, H*hd) f32 */
    float *k, *v;              /* (T, KV*hd) f32 */
    float *q2, *k2;            /* (T, H*hd), (T, KV*hd) f32: q, k after their RMSNorm (Qwen3; NULL otherwise) */
    float *att;                /* (T, H*hd) f32 attention output */
    float *proj;               /* (T, D) f32 o_proj / down_proj output; also the gathered rows before the final norm */
    float *ffa, *ffb;          /* (T, F) f32 MLP gate (then the activation) and up */
    float *logits;             /* (T, V) f32, the first R rows valid */
    uint16_t *xb;              /* (T, Kw) bf16 input of the tensor-core / cuBLAS GEMMs */
    /* the step's inputs and outputs (device) */
    int32_t *tok, *pos;        /* (T) int32 tokens, positions */
    int32_t *ptoff;            /* (T) int32 offset of each row's page table in pages */
    int32_t *pages;            /* (T * max_pages_per_seq) int32 page tables, each sequence's once */
    int32_t *gather;           /* (T) int32 the rows that want logits */
    kern_row_req *req;         /* (T) vocabulary-row requests */
    kern_row_out *out;         /* (T) their results */
    /* workspaces */
    void *vocab_ws;            /* kern_cuda_vocab_rows' segment partials for T rows */
    size_t vocab_ws_bytes;
    kern_filter_req *filt;     /* (T) the top-k / top-p rows of a step */
    void *filt_ws;             /* kern_cuda_sample_filter's sort, passes of ROLLOUT_FILTER_ROWS rows */
    size_t filt_ws_bytes;
    float *splitkv_ws;         /* standard mode: split-KV partials for any step (kern_cuda_attn_splitkv_workspace_max);
                                * invariant mode: the ordered split's per-chunk values for up to split_rows rows of
                                * key_cap keys (kern_cuda_attn_decode_split_workspace) */
    size_t splitkv_ws_bytes;
    int split_rows, key_cap;
    float *rp_ws;              /* invariant mode: row-parallel GEMM partials and tile counters (kern_cuda_gemm_rowpar_ws) */
    size_t rp_ws_bytes;
    float *tp_ws;              /* tensor parallelism: (C, T_slice, D) f32 all-gathered chunk partials */
    size_t tp_ws_bytes;
    float *f32_parts;          /* fp32 mode: (C, ROLLOUT_F32_SLICE, D) f32 chunk partials of a row-parallel layer (CPU
                                * order; under TP also the all-gather's buffer) */
    /* host staging: pinned copies of pages, ptoff, gather, req, out, filt */
    int32_t *h_pages, *h_ptoff, *h_gather;
    kern_row_req *h_req;
    kern_row_out *h_out;
    kern_filter_req *h_filt;
} cuda_acts;

/* CUDA graphs of pure decode steps, and tuning.cuda_profile's events between the phases of each step (graphs off),
 * summed per phase and printed by rollout_cuda_free: [0] decode-only steps, [1] steps with prefill rows. */
typedef struct {
    int use;                   /* decode steps are captured once per (batch size, split count) and replayed */
    int S;                     /* slots per batch size: the standard mode's split-KV counts (KERN_CUDA_SPLITKV_MAX),
                                * else 1 */
    kern_cuda_graph **g;       /* ((T + 1) S): g[M S + s - 1] replays a pure decode step of M sequences at s splits */
    uint8_t *seen;             /* ((T + 1) S): such a step ran once uncaptured (first launches of a kernel may set
                                * function attributes, which a capture must not record) */
    int prof, prof_n, prof_cap, prof_steps[2];
    cudaEvent_t *prof_ev;      /* (prof_cap + 1); [prof_cap] marks the step's start */
    int *prof_cat;             /* (prof_cap) the phase each event ends */
    double prof_ms[2][16];
    int64_t split_steps[KERN_CUDA_ATTN_SPLIT_MAX + 1]; /* invariant mode: pure decode steps by split count */
} cuda_graphs;

typedef struct rollout_cuda {
    const policy_weights *w;   /* the host weights and their config */
    kern_mode mode;
    cudaStream_t stream;
    /* tensor parallelism (DESIGN 7): this rank's heads, key/value heads and MLP columns; the first failure of a
     * collective in a step */
    policy_tp tp;
    int Hl, KVl, Fl;
    int T_slice;               /* rows per all-gather: min(T, 2048) */
    br_status tp_status;
    /* invariant mode: row-parallel GEMMs (o_proj, down_proj) in chunks of K (DESIGN 7), 1 = a plain GEMM */
    int chunks_o, chunks_d;
    /* the step's split count (a graph slot each), chosen from the batch and its longest row: standard mode, split-KV
     * (kern_cuda_attn_splitkv_splits); invariant mode, the decode attention's ordered split
     * (kern_cuda_attn_decode_split_count: the same bits at any count) */
    int n_sm, splitkv_splits;
    cuda_weights wt;
    cuda_kv kv;
    cuda_acts a;
    cuda_graphs gr;
} rollout_cuda;

static void rollout_cuda_free(rollout_cuda *e);

enum { P_EMBED, P_NORM, P_QKV, P_QKNORM_ROPE, P_ATTN, P_OPROJ, P_UPGATE, P_ACT, P_DOWN, P_HEAD, P_VOCAB, P_N };
static const char *const prof_names[P_N] = {"embed",       "add+norm", "q/k/v GEMM", "qk-norm+rope",
                                            "kv+attention", "o GEMM",  "gate/up GEMM", "activation",
                                            "down GEMM",   "final norm+LM head", "vocab rows"};

/* Marks the end of a phase of category cat (profile only). */
static void prof(rollout_cuda *e, int cat) {
    if (!e->gr.prof || e->gr.prof_n >= e->gr.prof_cap) return;
    e->gr.prof_cat[e->gr.prof_n] = cat;
    kern_cuda_event_record(e->gr.prof_ev[e->gr.prof_n++], e->stream);
}

static int pad16(int k) { return (k + 15) / 16 * 16; }

/* Notes a device weight buffer (for the broadcast); an allocation failure of the list is kept for later. */
static void note_buf(cuda_weights *wt, void *p, size_t bytes) {
    if (!p) return;
    if (wt->n_bufs == wt->cap_bufs) {
        int cap = wt->cap_bufs ? 2 * wt->cap_bufs : 64;
        struct cuda_buf *b = realloc(wt->bufs, (size_t)cap * sizeof *b);
        if (!b) {
            wt->status = br_fail(BR_ENOMEM, "cuda engine: out of host memory");
            return;
        }
        wt->bufs = b;
        wt->cap_bufs = cap;
    }
    wt->bufs[wt->n_bufs].p = p;
    wt->bufs[wt->n_bufs++].bytes = bytes;
}

static float *upload_vec(cuda_weights *wt, const float *v, size_t n) {
    if (!v) return NULL;
    float *d = kern_cuda_malloc(n * sizeof(float));
    if (!wt->receive_only) kern_cuda_upload(d, v, n * sizeof(float));
    note_buf(wt, d, n * sizeof(float));
    return d;
}

/* Uploads rows n0..n0+N-1, columns k0..k0+K-1 of W as a dense (N, Kp) matrix of dtype dt (zero columns
 * K..Kp-1); a random-weights matrix (data NULL) is generated on the device instead, each element with the bits it
 * has in the whole matrix (a tensor-parallel rank's slice). A receiving rank only allocates it. */
static void *upload_view(cuda_weights *wt, const policy_weights *pw, const kern_wt *w, kern_dtype dt, int64_t n0,
                         int64_t N, int64_t k0, int64_t K, int Kp) {
    const size_t es = (size_t)kern_dtype_size(dt), bytes = (size_t)N * Kp * es;
    if (wt->receive_only) {
        void *d = kern_cuda_malloc(bytes);
        note_buf(wt, d, bytes);
        return d;
    }
    if (!w->data) {
        void *d = kern_cuda_malloc(bytes);
        /* U(-1,1)/sqrt(K) keeps activations O(1); the embedding (also the tied LM head) gets 4/sqrt(K), which
         * gives logits of standard deviation ~2.3, about a trained model's, so sampling is not one-hot. */
        const int embedding = w->rand_id == (1u << 20);
        kern_cuda_fill_random_view(d, dt, N, K, Kp, w->k, n0, k0, pw->random_seed, w->rand_id,
                                   (embedding ? 4.0f : 1.0f) / sqrtf((float)w->k), NULL);
        note_buf(wt, d, bytes);
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
    note_buf(wt, d, bytes);
    return d;
}

static void *upload_matrix(cuda_weights *wt, const policy_weights *pw, const kern_wt *w, kern_dtype dt, int Kp) {
    return upload_view(wt, pw, w, dt, 0, w->n, 0, w->k, Kp);
}

/* Elements [i0, i0 + n) of a vector, or NULL. */
static float *upload_part(cuda_weights *wt, const float *v, size_t i0, size_t n) {
    return v ? upload_vec(wt, v + i0, n) : NULL;
}

/* The bf16 modes feed the tensor-core GEMMs a bf16 copy of their input (e->a.xb, K padded to 16). Where K needs no
 * padding, the kernel that produces the input (norm, SwiGLU, GELU) writes that copy itself: the same RNE of the same
 * f32 values as a separate cast, one launch fewer. */
static int writes_bf16(const rollout_cuda *e, int K) { return e->mode != KERN_MODE_FP32 && K % 16 == 0; }

/* out_i = in . W_i^T (+ b_i) for n GEMMs sharing one input of K columns: x f32 (M, K) for the fp32 mode, else the
 * bf16 e->a.xb, cast from x here unless x_in_xb (its producer wrote it). The invariant mode runs them as one launch. */
static void gemms(rollout_cuda *e, int n, float *const *outs, void *const *W, const float *const *bias, const int *Ns,
                  const float *x, int x_in_xb, int M, int K) {
    if (e->mode == KERN_MODE_FP32) {
        for (int i = 0; i < n; i++) kern_cuda_gemm_f32(outs[i], x, W[i], e->wt.wdt, bias[i], M, Ns[i], K, e->stream);
        return;
    }
    const int Kp = pad16(K);
    if (!x_in_xb) kern_cuda_cast_bf16_pad(e->a.xb, x, M, K, Kp, e->stream);
    if (e->mode == KERN_MODE_STANDARD) {
        for (int i = 0; i < n; i++) kern_cuda_gemm_standard(outs[i], e->a.xb, W[i], bias[i], M, Ns[i], Kp, e->stream);
        return;
    }
    kern_cuda_gemm_bf16_multi(n, outs, (const uint16_t *const *)W, bias, Ns, e->a.xb, M, Kp, e->stream);
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

/* Columns [*k0, *k1) of this rank's K (of K columns) that its chunk k of a row-parallel layer covers in the fp32
 * mode (gemm_rowpar_f32): a head for o_proj, for down_proj chunk g = rank Cl + k of the MLP covering the whole
 * width's columns [F g / 16, F (g + 1) / 16). */
static void rowpar_f32_cols(const rollout_cuda *e, int K, int mlp, int k, int *k0, int *k1) {
    const policy_config *c = &e->w->cfg;
    const int size = e->tp.size, rank = size > 1 ? e->tp.rank : 0;
    const int C = mlp ? POLICY_MLP_CHUNKS : c->n_heads, Cl = C / size;
    const int64_t Fall = (int64_t)K * size, f0 = (int64_t)K * rank; /* the MLP's whole width, this rank's column 0 */
    const int g = rank * Cl + k;                                      /* the chunk's index in the whole layer */
    *k0 = mlp ? (int)(Fall * g / C - f0) : k * c->head_dim;
    *k1 = mlp ? (int)(Fall * (g + 1) / C - f0) : (k + 1) * c->head_dim;
}

/* The fp32 mode's row-parallel layer in the CPU reference's order (policy/forward.c row_parallel): the partial
 * product of each K-chunk -- one per head for o_proj, POLICY_MLP_CHUNKS of the MLP width for down_proj, chunk c of
 * the MLP covering columns [F c / 16, F (c + 1) / 16) -- summed by the pairwise chunk tree, then + bias. Under tensor
 * parallelism a rank holds K = the whole K / size columns, i.e. chunks / size whole chunks (rank r: chunks r Cl ..);
 * it computes their partials into its slot of f32_parts, the group all-gathers the slots (rank order = chunk order)
 * and every rank sums all chunks by the same tree: the bits of one rank, whatever the size. Chunks of one width kc
 * (o_proj; down_proj when the MLP width is a multiple of POLICY_MLP_CHUNKS) are one kern_cuda_gemm_f32_chunks
 * launch, the bits of the per-chunk kern_cuda_gemm_f32_ld calls that uneven splits (and empty chunks) take. */
static void gemm_rowpar_f32(rollout_cuda *e, float *out, const float *x, void *W, const float *bias, int M, int N, int K,
                            int mlp) {
    const policy_config *c = &e->w->cfg;
    const int size = e->tp.size, rank = size > 1 ? e->tp.rank : 0;
    const int C = mlp ? POLICY_MLP_CHUNKS : c->n_heads, Cl = C / size;
    const size_t wes = e->wt.wdt == KERN_F32 ? 4 : 2;
    int kc = 0, k0 = 0, k1 = 0; /* kc > 0: chunk k is columns [k kc, (k + 1) kc) for every k < Cl */
    rowpar_f32_cols(e, K, mlp, 0, &k0, &k1);
    if (k0 == 0 && k1 > 0) kc = k1;
    for (int k = 1; k < Cl && kc > 0; k++) {
        rowpar_f32_cols(e, K, mlp, k, &k0, &k1);
        if (k0 != k * kc || k1 - k0 != kc) kc = 0;
    }
    for (int m0 = 0; m0 < M; m0 += ROLLOUT_F32_SLICE) {
        const int Ms = M - m0 < ROLLOUT_F32_SLICE ? M - m0 : ROLLOUT_F32_SLICE;
        float *slot = e->a.f32_parts + (size_t)rank * Cl * Ms * N;
        if (kc > 0) /* chunk k at slot + k Ms N, as in the loop below */
            kern_cuda_gemm_f32_chunks(slot, x + (size_t)m0 * K, K, W, K, e->wt.wdt, Ms, N, kc, Cl, e->stream);
        for (int k = 0; k < Cl && kc == 0; k++) {
            rowpar_f32_cols(e, K, mlp, k, &k0, &k1);
            if (k1 == k0) { /* an empty chunk (K < 16) is an exact zero on the CPU */
                kern_cuda_memset_async(slot + (size_t)k * Ms * N, 0, (size_t)Ms * N * sizeof(float), e->stream);
                continue;
            }
            kern_cuda_gemm_f32_ld(slot + (size_t)k * Ms * N, x + (size_t)m0 * K + k0, K,
                                  (const char *)W + (size_t)k0 * wes, K, e->wt.wdt, NULL, Ms, N, k1 - k0, e->stream);
        }
        if (size > 1) {
            br_status st = e->tp.dev_allgather(e->tp.dev_ctx, slot, (size_t)Cl * Ms * N * sizeof(float), e->a.f32_parts,
                                               e->stream);
            if (st != BR_OK && e->tp_status == BR_OK) e->tp_status = st;
        }
        kern_cuda_chunk_tree(out + (size_t)m0 * N, e->a.f32_parts, C, (size_t)Ms * N, e->stream);
    }
    if (bias) kern_cuda_add_rows(out, bias, M, N, e->stream);
}

/* A row-parallel GEMM (o_proj, down_proj): in the invariant mode its K in `chunks` fixed chunks summed left to
 * right (kern_cuda_gemm_bf16_rowpar); the other modes as gemm(). */
static void gemm_rowpar(rollout_cuda *e, float *out, const float *x, int x_in_xb, void *W, const float *bias, int M,
                        int N, int K, int chunks, int mlp) {
    if (e->mode == KERN_MODE_FP32) {
        gemm_rowpar_f32(e, out, x, W, bias, M, N, K, mlp);
        return;
    }
    if (e->mode != KERN_MODE_INVARIANT || chunks <= 1 || K % 16) {
        gemm(e, out, x, x_in_xb, W, bias, M, N, K);
        return;
    }
    if (!x_in_xb) kern_cuda_cast_bf16_pad(e->a.xb, x, M, K, K, e->stream);
    if (e->tp.size <= 1) {
        kern_cuda_gemm_bf16_rowpar(out, e->a.rp_ws, e->a.rp_ws_bytes, e->a.xb, W, bias, M, N, K, chunks, e->stream);
        return;
    }
    /* A TP rank holds K = the whole K / size columns: chunks / size of the chunks, the same columns of each. It
     * computes their partials into its slot, the group all-gathers the slots (rank order = chunk order), and
     * chunk_seq sums all chunks left to right: kern_cuda_gemm_bf16_rowpar's bits, whatever the size. */
    const int Cl = chunks / e->tp.size;
    for (int m0 = 0; m0 < M; m0 += e->T_slice) {
        const int Ms = M - m0 < e->T_slice ? M - m0 : e->T_slice;
        const size_t slot = (size_t)Cl * Ms * N;
        kern_cuda_gemm_bf16_partials(e->a.tp_ws + (size_t)e->tp.rank * slot, e->a.xb + (size_t)m0 * K, W, Ms, N, K, Cl, 0,
                                     Cl, e->stream);
        br_status st = e->tp.dev_allgather(e->tp.dev_ctx, e->a.tp_ws + (size_t)e->tp.rank * slot, slot * sizeof(float),
                                           e->a.tp_ws, e->stream);
        if (st != BR_OK && e->tp_status == BR_OK) e->tp_status = st;
        kern_cuda_chunk_seq(out + (size_t)m0 * N, e->a.tp_ws, chunks, Ms, N, bias, e->stream);
    }
}

/* [x += y;] norm(x) -> the next GEMM's input: e->a.xb directly where writes_bf16, else e->a.xn (f32). Returns whether
 * the result is in e->a.xb. */
static int norm_in(rollout_cuda *e, float *x, const float *y, const float *w, const float *b, int M) {
    const policy_config *c = &e->w->cfg;
    if (e->mode == KERN_MODE_FP32) { /* the CPU's 8-lane order (cpu_order.cu) */
        kern_cuda_cpuo_norm(e->a.xn, x, y, w, c->norm == POLICY_NORM_RMS ? NULL : b, M, c->dim, c->norm_eps, e->stream);
        return 0;
    }
    const int bf = writes_bf16(e, c->dim);
    float *of = bf ? NULL : e->a.xn;
    uint16_t *ob = bf ? e->a.xb : NULL;
    if (c->norm == POLICY_NORM_RMS) {
        if (y) kern_cuda_add_rmsnorm(x, y, of, ob, w, M, c->dim, c->norm_eps, e->stream);
        else kern_cuda_rmsnorm(of, ob, x, w, M, c->dim, c->norm_eps, e->stream);
    } else {
        if (y) kern_cuda_add_layernorm(x, y, of, ob, w, b, M, c->dim, c->norm_eps, e->stream);
        else kern_cuda_layernorm(of, ob, x, w, b, M, c->dim, c->norm_eps, e->stream);
    }
    return bf;
}

/* ---- build / free of each part (llama2.c's pairs; every _free takes a part built in full or in part) */

/* This rank's share of the weights (all of them without tensor parallelism: rank 0 of 1) in device memory: the
 * matrices as wdt (K padded to 16 in the bf16 modes), vectors f32; on a receiving rank of a broadcast only
 * allocated. The order of the buffers is the broadcast's. */
static br_status weights_build(cuda_weights *wt, const policy_weights *w, kern_mode mode, int tp_rank, int Hl, int KVl,
                               int Fl) {
    const policy_config *c = &w->cfg;
    const int hd = c->head_dim, D = c->dim;
    wt->wdt = mode == KERN_MODE_FP32 && w->dtype == KERN_F32 ? KERN_F32 : KERN_BF16;
    wt->emb_dt = w->dtype == KERN_BF16 ? KERN_BF16 : KERN_F32;
    const int kp = mode == KERN_MODE_FP32 ? 0 : 1; /* pad K to 16 for the tensor-core GEMM */
#define KP(k) (kp ? pad16(k) : (k))
    wt->L = calloc((size_t)c->n_layers, sizeof *wt->L);
    if (!wt->L) return br_fail(BR_ENOMEM, "cuda engine: out of memory");
    wt->n_layers = c->n_layers;
    br_status rc = BR_OK;
    for (int l = 0; l < c->n_layers; l++) {
        const policy_layer *s = &w->layers[l];
        cuda_layer *d = &wt->L[l];
        /* this rank's share: heads h0.., key/value heads kv0.., MLP columns f0.. */
        const int64_t r = tp_rank, q0 = r * Hl * hd, kv0 = r * KVl * hd, f0 = r * Fl;
        d->wq = upload_view(wt, w, &s->wq, wt->wdt, q0, (int64_t)Hl * hd, 0, D, KP(D));
        d->wk = upload_view(wt, w, &s->wk, wt->wdt, kv0, (int64_t)KVl * hd, 0, D, KP(D));
        d->wv = upload_view(wt, w, &s->wv, wt->wdt, kv0, (int64_t)KVl * hd, 0, D, KP(D));
        d->wo = upload_view(wt, w, &s->wo, wt->wdt, 0, D, q0, (int64_t)Hl * hd, KP(Hl * hd));
        if (c->act == POLICY_ACT_SILU_GLU) d->wg = upload_view(wt, w, &s->w_gate, wt->wdt, f0, Fl, 0, D, KP(D));
        d->wu = upload_view(wt, w, &s->w_up, wt->wdt, f0, Fl, 0, D, KP(D));
        d->wd = upload_view(wt, w, &s->w_down, wt->wdt, 0, D, f0, Fl, KP(Fl));
        d->bq = upload_part(wt, s->bq, (size_t)q0, (size_t)Hl * hd);
        d->bk = upload_part(wt, s->bk, (size_t)kv0, (size_t)KVl * hd);
        d->bv = upload_part(wt, s->bv, (size_t)kv0, (size_t)KVl * hd);
        d->bo = upload_vec(wt, s->bo, D);
        d->b_up = upload_part(wt, s->b_up, (size_t)f0, (size_t)Fl);
        d->b_down = upload_vec(wt, s->b_down, D);
        d->attn_norm_w = upload_vec(wt, s->attn_norm_w, D);
        d->attn_norm_b = upload_vec(wt, s->attn_norm_b, D);
        d->mlp_norm_w = upload_vec(wt, s->mlp_norm_w, D);
        d->mlp_norm_b = upload_vec(wt, s->mlp_norm_b, D);
        d->q_norm = upload_vec(wt, s->q_norm, hd);
        d->k_norm = upload_vec(wt, s->k_norm, hd);
        if (!d->wq || !d->wk || !d->wv || !d->wo || !d->wu || !d->wd || (c->act == POLICY_ACT_SILU_GLU && !d->wg)) {
            rc = br_fail(BR_ENOMEM, "cuda engine: out of host memory converting layer %d", l);
            break;
        }
    }
    if (rc == BR_OK) {
        wt->embed = upload_matrix(wt, w, &w->embed, wt->emb_dt, D);
        if (c->learned_pos) wt->pos_embed = upload_matrix(wt, w, &w->pos_embed, wt->emb_dt, D);
        wt->lm_head = upload_matrix(wt, w, &w->lm_head, wt->wdt, KP(D));
        wt->final_w = upload_vec(wt, w->final_norm_w, D);
        wt->final_b = upload_vec(wt, w->final_norm_b, D);
        if (!wt->embed || !wt->lm_head || (c->learned_pos && !wt->pos_embed))
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
            wt->rope = upload_vec(wt, rope, n);
            free(rope);
        }
    }
    if (rc == BR_OK) rc = wt->status;
    return rc;
}

/* Every rank of a broadcast calls this after weights_build: the ranks agree on the build, then the root's buffers
 * reach the others and every rank's copy is fingerprinted against the root's. */
static br_status weights_receive(cuda_weights *wt, const rollout_weights_bcast *wb, br_status rc) {
    rc = wb->agree(wb->ctx, rc);
    kern_cuda_sync(); /* the root's uploads and generated weights are complete */
    for (int i = 0; rc == BR_OK && i < wt->n_bufs; i++) rc = wb->bcast(wb->ctx, wt->bufs[i].p, wt->bufs[i].bytes);
    for (int i = 0; rc == BR_OK && i < wt->n_bufs; i++) {
        rc = wb->check(wb->ctx, wt->bufs[i].p, wt->bufs[i].bytes);
        if (rc != BR_OK) br_fail_ctx(rc, "device weight buffer %d of %d (%zu bytes)", i, wt->n_bufs, wt->bufs[i].bytes);
    }
    return rc;
}

static void weights_free(cuda_weights *wt) {
    if (wt->L)
        for (int l = 0; l < wt->n_layers; l++) {
            cuda_layer *d = &wt->L[l];
            void *ptrs[] = {d->wq, d->wk, d->wv, d->wo, d->wg, d->wu, d->wd, d->bq, d->bk, d->bv, d->bo, d->b_up,
                            d->b_down, d->attn_norm_w, d->attn_norm_b, d->mlp_norm_w, d->mlp_norm_b, d->q_norm, d->k_norm};
            for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) kern_cuda_free(ptrs[i]);
        }
    free(wt->L);
    free(wt->bufs);
    void *dev[] = {wt->embed, wt->pos_embed, wt->lm_head, wt->final_w, wt->final_b, wt->rope};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) kern_cuda_free(dev[i]);
}

/* The page allocator (host) and the pages (device, zeroed) of this rank's KVl key/value heads. */
static br_status kv_build(cuda_kv *kv, const policy_config *c, int n_pages, int page_size, int KVl, kern_mode mode) {
    br_status rc = policy_kv_create_pages(c, n_pages, page_size, &kv->pages);
    if (rc != BR_OK) return rc;
    kv->pages->n_kv = KVl;
    kv->layer = (size_t)n_pages * page_size * KVl * c->head_dim;
    kv->bf16 = mode != KERN_MODE_FP32;
    const size_t bytes = kv->layer * c->n_layers * (kv->bf16 ? 2 : 4);
    kv->k = kern_cuda_malloc(bytes);
    kv->v = kern_cuda_malloc(bytes);
    kern_cuda_memset(kv->k, 0, bytes);
    kern_cuda_memset(kv->v, 0, bytes);
    return BR_OK;
}

static void kv_free(cuda_kv *kv) {
    kern_cuda_free(kv->k);
    kern_cuda_free(kv->v);
    policy_kv_free(kv->pages);
}

/* Every buffer of the run state for steps of up to T tokens (the engine's mode, row-parallel chunks and split-KV SM
 * count are set). Sized for the whole model's heads and MLP columns, also under tensor parallelism. */
static br_status acts_build(cuda_acts *a, const rollout_cuda *e, int T_) {
    const policy_config *c = &e->w->cfg;
    const int D = c->dim, hd = c->head_dim, H = c->n_heads, KV = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    const size_t T = (size_t)T_, max_pages = (size_t)e->kv.pages->max_pages_per_seq;
    a->T = T_;
    int widest = D > H * hd ? D : H * hd;
    if (F > widest) widest = F;
    a->Kw = pad16(widest);
    a->x = kern_cuda_malloc(T * D * 4);
    a->xn = kern_cuda_malloc(T * D * 4);
    a->q = kern_cuda_malloc(T * H * hd * 4);
    a->k = kern_cuda_malloc(T * KV * hd * 4);
    a->v = kern_cuda_malloc(T * KV * hd * 4);
    a->att = kern_cuda_malloc(T * H * hd * 4);
    if (c->qk_norm) {
        a->q2 = kern_cuda_malloc(T * H * hd * 4);
        a->k2 = kern_cuda_malloc(T * KV * hd * 4);
    }
    a->proj = kern_cuda_malloc(T * D * 4);
    a->ffa = kern_cuda_malloc(T * F * 4);
    a->ffb = kern_cuda_malloc(T * F * 4);
    a->logits = kern_cuda_malloc(T * V * 4);
    a->xb = kern_cuda_malloc(T * a->Kw * 2);
    a->tok = kern_cuda_malloc(T * 4);
    a->pos = kern_cuda_malloc(T * 4);
    a->ptoff = kern_cuda_malloc(T * 4);
    a->gather = kern_cuda_malloc(T * 4);
    a->pages = kern_cuda_malloc(T * max_pages * 4);
    a->req = kern_cuda_malloc(T * sizeof(kern_row_req));
    a->out = kern_cuda_malloc(T * sizeof(kern_row_out));
    a->vocab_ws_bytes = kern_cuda_vocab_rows_workspace(T_, V);
    a->vocab_ws = kern_cuda_malloc(a->vocab_ws_bytes);
    a->filt = kern_cuda_malloc(T * sizeof(kern_filter_req));
    a->filt_ws_bytes = kern_cuda_sample_filter_workspace(T_ < ROLLOUT_FILTER_ROWS ? T_ : ROLLOUT_FILTER_ROWS, V);
    a->filt_ws = kern_cuda_malloc(a->filt_ws_bytes);
    if (e->mode == KERN_MODE_STANDARD && hd >= 32) {
        a->splitkv_ws_bytes = kern_cuda_attn_splitkv_workspace_max(T_, H, KV, hd, e->n_sm);
        if (a->splitkv_ws_bytes) a->splitkv_ws = kern_cuda_malloc(a->splitkv_ws_bytes);
    }
    if (e->mode == KERN_MODE_INVARIANT && hd >= 32) {
        a->split_rows = kern_cuda_attn_decode_split_rows(e->KVl, e->n_sm);
        if (a->split_rows > T_) a->split_rows = T_;
        a->key_cap = (int)max_pages * e->kv.pages->page_size;
        if (a->split_rows > 0) {
            a->splitkv_ws_bytes = kern_cuda_attn_decode_split_workspace(a->split_rows, e->Hl, hd, a->key_cap);
            a->splitkv_ws = kern_cuda_malloc(a->splitkv_ws_bytes);
            kern_cuda_memset(a->splitkv_ws, 0, a->splitkv_ws_bytes); /* its counters start at zero */
        }
    }
    if (e->mode == KERN_MODE_FP32) {
        const int cmax = H > POLICY_MLP_CHUNKS ? H : POLICY_MLP_CHUNKS;
        a->f32_parts = kern_cuda_malloc((size_t)cmax * (T < ROLLOUT_F32_SLICE ? T : ROLLOUT_F32_SLICE) * D * sizeof(float));
    }
    if (e->mode == KERN_MODE_INVARIANT) {
        if (e->tp.size > 1) {
            const int cmax = e->chunks_o > e->chunks_d ? e->chunks_o : e->chunks_d;
            a->tp_ws_bytes = (size_t)cmax * e->T_slice * D * sizeof(float);
            a->tp_ws = kern_cuda_malloc(a->tp_ws_bytes);
        }
        const int Ms[2] = {T_ < 64 ? T_ : 64, T_};
        for (int i = 0; i < 2; i++) {
            size_t o = kern_cuda_gemm_rowpar_ws(Ms[i], D, H * hd, e->chunks_o);
            size_t d = kern_cuda_gemm_rowpar_ws(Ms[i], D, F, e->chunks_d);
            if (o > a->rp_ws_bytes) a->rp_ws_bytes = o;
            if (d > a->rp_ws_bytes) a->rp_ws_bytes = d;
        }
        if (a->rp_ws_bytes) {
            a->rp_ws = kern_cuda_malloc(a->rp_ws_bytes);
            kern_cuda_gemm_rowpar_ws_prepare(a->rp_ws, a->rp_ws_bytes);
        }
    }
    a->h_pages = kern_cuda_host_alloc(T * max_pages * 4);
    a->h_ptoff = kern_cuda_host_alloc(T * 4);
    a->h_gather = kern_cuda_host_alloc(T * 4);
    a->h_req = kern_cuda_host_alloc(T * sizeof(kern_row_req));
    a->h_out = kern_cuda_host_alloc(T * sizeof(kern_row_out));
    a->h_filt = kern_cuda_host_alloc(T * sizeof(kern_filter_req));
    return BR_OK;
}

static void acts_free(cuda_acts *a) {
    void *dev[] = {a->x,     a->xn,    a->q,     a->k,        a->v,     a->q2,     a->k2,         a->att,
                   a->proj,  a->ffa,   a->ffb,   a->logits,   a->xb,    a->tok,    a->pos,        a->ptoff,
                   a->gather, a->pages, a->req,  a->out,      a->splitkv_ws, a->vocab_ws, a->rp_ws, a->tp_ws, a->f32_parts,
                   a->filt,  a->filt_ws};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) kern_cuda_free(dev[i]);
    kern_cuda_host_free(a->h_pages);
    kern_cuda_host_free(a->h_ptoff);
    kern_cuda_host_free(a->h_gather);
    kern_cuda_host_free(a->h_req);
    kern_cuda_host_free(a->h_out);
    kern_cuda_host_free(a->h_filt);
}

/* Graph slots for steps of 1..T sequences, S per batch size; with prof, the events of a step's phases. */
static br_status graphs_build(cuda_graphs *gr, int T, int S, int use, int prof, int n_layers) {
    gr->use = use;
    gr->prof = prof;
    gr->S = S;
    gr->g = calloc(((size_t)T + 1) * S, sizeof *gr->g);
    gr->seen = calloc(((size_t)T + 1) * S, 1);
    if (!gr->g || !gr->seen) return br_fail(BR_ENOMEM, "cuda engine: out of host memory");
    if (prof) {
        gr->prof_cap = 16 * n_layers + 16;
        gr->prof_ev = calloc((size_t)gr->prof_cap + 1, sizeof *gr->prof_ev);
        gr->prof_cat = calloc((size_t)gr->prof_cap, sizeof *gr->prof_cat);
        if (!gr->prof_ev || !gr->prof_cat) return br_fail(BR_ENOMEM, "cuda engine: out of host memory");
        for (int i = 0; i <= gr->prof_cap; i++) gr->prof_ev[i] = kern_cuda_event_create();
    }
    return BR_OK;
}

static void prof_report(const cuda_graphs *gr) {
    for (int k = 0; k < 2; k++) {
        if (!gr->prof_steps[k]) continue;
        double tot = 0;
        for (int i = 0; i < P_N; i++) tot += gr->prof_ms[k][i];
        fprintf(stderr, "cuda profile, %s steps: %d, %.3f ms of kernels (%.3f ms per step)\n",
                k ? "prefill/mixed" : "decode", gr->prof_steps[k], tot, tot / gr->prof_steps[k]);
        for (int i = 0; i < P_N; i++)
            if (gr->prof_ms[k][i] > 0)
                fprintf(stderr, "  %-20s %10.3f ms %6.1f%%  %8.1f us/step\n", prof_names[i], gr->prof_ms[k][i],
                        100.0 * gr->prof_ms[k][i] / tot, 1000.0 * gr->prof_ms[k][i] / gr->prof_steps[k]);
    }
    int any = 0;
    for (int s = 2; s <= KERN_CUDA_ATTN_SPLIT_MAX; s++) any |= gr->split_steps[s] > 0;
    if (any) {
        fprintf(stderr, "cuda profile, decode steps by attention split (ordered split):");
        for (int s = 1; s <= KERN_CUDA_ATTN_SPLIT_MAX; s++)
            if (gr->split_steps[s]) fprintf(stderr, " %d: %lld", s, (long long)gr->split_steps[s]);
        fprintf(stderr, "\n");
    }
}

/* T: the largest batch size of the graph slots (steps of 1..T sequences). */
static void graphs_free(cuda_graphs *gr, int T) {
    if (gr->prof) prof_report(gr);
    if (gr->prof_ev)
        for (int i = 0; i <= gr->prof_cap; i++) kern_cuda_event_free(gr->prof_ev[i]);
    free(gr->prof_ev);
    free(gr->prof_cat);
    if (gr->g)
        for (size_t i = 0; i < ((size_t)T + 1) * gr->S; i++) kern_cuda_graph_free(gr->g[i]);
    free(gr->g);
    free(gr->seen);
}

/* ---- the engine */

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
    const kern_cuda_tuning kt = {tu->pdl != 0, tu->gemm_short != 0, tu->gemm_rowpar_fused != 0, (int)tu->attn_decode,
                                  tu->gemm_wgmma != 0, tu->gemm_small_tma != 0, tu->gemm_small_rx != 0};
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
        if (mode == KERN_MODE_STANDARD)
            return br_fail(BR_EINVAL, "--tp %d on --device cuda: --kernels standard is not tensor parallel (invariant and "
                                      "fp32 are)", tps);
        if (!tp->dev_allgather || !tp->dev_wait)
            return br_fail(BR_EINVAL, "--tp %d on --device cuda: no device all-gather", tps);
        /* fp32: a rank's MLP columns must be whole chunks of the CPU's split (columns F c / 16 ..) */
        if (mode == KERN_MODE_FP32 && (POLICY_MLP_CHUNKS % tps || c->ffn_dim % tps))
            return br_fail(BR_EINVAL, "--tp %d on --device cuda --kernels fp32: the MLP's %d chunks and width %d must both "
                                      "divide by it", tps, POLICY_MLP_CHUNKS, c->ffn_dim);
        const int co = rowpar_chunks(c->n_heads * hd), cd = rowpar_chunks(c->ffn_dim);
        if (mode == KERN_MODE_INVARIANT && (co % tps || cd % tps || c->ffn_dim % (16 * tps)))
            return br_fail(BR_EINVAL, "--tp %d on --device cuda: the attention output (K = %d, %d chunks) and the MLP "
                                      "(K = %d, %d chunks) must split into whole chunks of a multiple of 16 columns",
                           tps, c->n_heads * hd, co, c->ffn_dim, cd);
    }
    rollout_cuda *e = calloc(1, sizeof *e);
    if (!e) return br_fail(BR_ENOMEM, "cuda engine: out of memory");
    e->w = w;
    e->mode = mode;
    if (tps > 1) e->tp = *tp;
    else e->tp.size = 1;
    e->Hl = c->n_heads / tps;
    e->KVl = c->n_kv_heads / tps;
    e->Fl = c->ffn_dim / tps;
    e->splitkv_splits = 1;
    if (hd >= 32) { /* the split counts (standard: split-KV; invariant: the decode attention's ordered split) */
        int l2 = 0;
        kern_cuda_device_props(&e->n_sm, &l2);
    }
    if (mode == KERN_MODE_INVARIANT) {
        e->chunks_o = rowpar_chunks(c->n_heads * hd);
        e->chunks_d = rowpar_chunks(c->ffn_dim);
        e->T_slice = max_tokens < 2048 ? max_tokens : 2048;
    }
    /* The memory plan (rollout/scheduler.h: every buffer below, in bytes) against the device's free memory before
     * anything is allocated: too little memory is a message naming the buffers, never a failed cudaMalloc. The
     * scheduler has usually checked it already with --gpu-memory-utilization's margin and its own wording. */
    rollout_mem_plan plan = {0};
    plan.mode = mode;
    plan.wdtype = w->dtype;
    plan.tp_size = tps;
    plan.max_tokens = max_tokens;
    plan.page_size = page_size;
    plan.n_pages = n_pages;
    rollout_mem_plan_compute(c, &plan);
    size_t free0 = 0, total0 = 0;
    kern_cuda_mem_info(&free0, &total0);
    br_status rc = BR_OK;
    if (plan.total > (int64_t)free0) {
        char line[768];
        rollout_mem_plan_describe(&plan, line, sizeof line);
        rc = br_fail(BR_EINVAL, "--device cuda: the engine needs %.2f GB, the device has %.2f GB free of %.2f GB (%s)",
                     (double)plan.total / 1e9, (double)free0 / 1e9, (double)total0 / 1e9, line);
    }
    if (rc == BR_OK) rc = kv_build(&e->kv, c, n_pages, page_size, e->KVl, mode);
    if (rc == BR_OK) {
        e->wt.receive_only = wb && !wb->is_root;
        rc = weights_build(&e->wt, w, mode, e->tp.size > 1 ? e->tp.rank : 0, e->Hl, e->KVl, e->Fl);
    }
    if (wb) rc = weights_receive(&e->wt, wb, rc); /* every rank gets here, failed or not: the build is agreed */
    if (rc == BR_OK) rc = acts_build(&e->a, e, max_tokens);
    if (rc == BR_OK) {
        /* the plan must cover what was allocated (else its arithmetic no longer follows the builds above) */
        int64_t wbytes = 0;
        for (int i = 0; i < e->wt.n_bufs; i++) wbytes += (int64_t)e->wt.bufs[i].bytes;
        size_t free1 = 0, total1 = 0;
        kern_cuda_mem_info(&free1, &total1);
        const int64_t used = (int64_t)free0 - (int64_t)free1;
        if (wbytes > plan.weights || used > plan.total)
            fprintf(stderr, "cuda engine: warning: the memory plan (rollout_mem_plan_compute) underestimates: weights "
                            "%lld bytes allocated, %lld planned; %lld bytes of device memory taken, %lld planned\n",
                    (long long)wbytes, (long long)plan.weights, (long long)used, (long long)plan.total);
    }
    if (rc == BR_OK) {
        /* CUDA graphs for decode steps: on unless tuning.cuda_graphs = 0 or profiling; keyed by batch size and, in the
         * standard and invariant modes, split count (rollout_cuda_step), tensor parallel steps never (the all-gather
         * may be MPI through host buffers) */
        const int prof = tu->cuda_profile != 0;
        const int use = tu->cuda_graphs && !prof && e->tp.size <= 1;
        const int S = mode == KERN_MODE_STANDARD ? KERN_CUDA_SPLITKV_MAX
                      : mode == KERN_MODE_INVARIANT ? KERN_CUDA_ATTN_SPLIT_MAX : 1;
        rc = graphs_build(&e->gr, max_tokens, S, use, prof, c->n_layers);
    }
    if (rc != BR_OK) {
        rollout_cuda_free(e);
        return rc;
    }
    e->stream = kern_cuda_stream_create();
    kern_cuda_sync();
    *out = e;
    return BR_OK;
}

static void rollout_cuda_free(rollout_cuda *e) {
    if (!e) return;
    graphs_free(&e->gr, e->a.T);
    weights_free(&e->wt);
    acts_free(&e->a);
    kv_free(&e->kv);
    kern_cuda_stream_free(e->stream);
    free(e);
}

static policy_kvcache *rollout_cuda_kv(rollout_cuda *e) { return e->kv.pages; }

/* Every launch of one step, on e->stream, from the device-side inputs (tokens, positions, page tables, gather
 * indices, row requests) to the vocabulary rows. The launches depend only on (M, R, multi, lead) and
 * e->splitkv_splits (standard and invariant modes: chosen from the batch and the keys; the split kernels find each
 * row's keys on the device), so a pure decode step of M sequences can be captured once per split count and
 * replayed as a CUDA graph (rollout_cuda_step). */
static void run_kernels(rollout_cuda *e, int M, int R, int multi, int lead) {
    const policy_config *c = &e->w->cfg;
    const int D = c->dim, H = e->Hl, KV = e->KVl, hd = c->head_dim, F = e->Fl, V = c->vocab; /* H, KV, F: this rank's */
    const float scale = 1.0f / sqrtf((float)hd);
    cudaStream_t st = e->stream;
    if (e->gr.prof) {
        e->gr.prof_n = 0;
        kern_cuda_event_record(e->gr.prof_ev[e->gr.prof_cap], st); /* the step's start */
    }
    kern_cuda_embed(e->a.x, e->wt.embed, c->learned_pos ? e->wt.pos_embed : NULL, e->wt.emb_dt, e->a.tok, e->a.pos, M, D, st);
    prof(e, P_EMBED);
    /* the residual branch's output waiting to be added to x: fused with the next norm (bit for bit the add, then
     * the norm) */
    const float *pending = NULL;
    for (int l = 0; l < c->n_layers; l++) {
        const cuda_layer *L = &e->wt.L[l];
        /* this layer's cache: f32 (fp32 mode) or bf16 (kc16, vc16) */
        float *kc = (float *)e->kv.k + e->kv.layer * l, *vc = (float *)e->kv.v + e->kv.layer * l;
        uint16_t *kc16 = (uint16_t *)e->kv.k + e->kv.layer * l, *vc16 = (uint16_t *)e->kv.v + e->kv.layer * l;
        const int b16 = e->kv.bf16;
        int in_xb = norm_in(e, e->a.x, pending, L->attn_norm_w, L->attn_norm_b, M);
        prof(e, P_NORM);
        {
            float *outs[3] = {e->a.q, e->a.k, e->a.v};
            void *W[3] = {L->wq, L->wk, L->wv};
            const float *bias[3] = {L->bq, L->bk, L->bv};
            const int Ns[3] = {H * hd, KV * hd, KV * hd};
            gemms(e, 3, outs, W, bias, Ns, e->a.xn, in_xb, M, D);
        }
        prof(e, P_QKV);
        float *q = e->a.q, *k = e->a.k;
        /* the standard mode's split-KV with one split is the invariant kernels' job done slower (one warp walks a
         * row's chunks): with one split it takes them too, and split-KV keeps the steps that split */
        const int std1 = e->mode == KERN_MODE_STANDARD && e->splitkv_splits == 1;
        const int fused = !multi && hd >= 32 && (e->mode == KERN_MODE_INVARIANT || std1);
        /* a pure decode step of Qwen3: the q/k norm and RoPE in the attention launch's prologue */
        const int qkn = fused && c->qk_norm && !c->learned_pos;
        if (qkn) {
            /* in the attention launch's prologue, below */
        } else if (c->qk_norm && e->mode == KERN_MODE_FP32) { /* the CPU's order: per-head norms, then RoPE */
            kern_cuda_cpuo_norm(e->a.q2, e->a.q, NULL, L->q_norm, NULL, M * H, hd, c->norm_eps, st);
            kern_cuda_cpuo_norm(e->a.k2, e->a.k, NULL, L->k_norm, NULL, M * KV, hd, c->norm_eps, st);
            q = e->a.q2;
            k = e->a.k2;
            if (!c->learned_pos) {
                kern_cuda_rope(q, e->a.pos, e->wt.rope, M, H, hd, st);
                kern_cuda_rope(k, e->a.pos, e->wt.rope, M, KV, hd, st);
            }
        } else if (c->qk_norm && !c->learned_pos) { /* one launch: bit for bit the two norms and the two RoPEs */
            kern_cuda_qk_norm_rope(e->a.q2, e->a.k2, e->a.q, e->a.k, L->q_norm, L->k_norm, e->a.pos, e->wt.rope, M, H, KV, hd,
                                   c->norm_eps, st);
            q = e->a.q2;
            k = e->a.k2;
        } else {
            if (c->qk_norm) {
                kern_cuda_rmsnorm(e->a.q2, NULL, e->a.q, L->q_norm, M * H, hd, c->norm_eps, st);
                kern_cuda_rmsnorm(e->a.k2, NULL, e->a.k, L->k_norm, M * KV, hd, c->norm_eps, st);
                q = e->a.q2;
                k = e->a.k2;
            }
            if (!c->learned_pos) {
                kern_cuda_rope(q, e->a.pos, e->wt.rope, M, H, hd, st);
                kern_cuda_rope(k, e->a.pos, e->wt.rope, M, KV, hd, st);
            }
        }
        prof(e, P_QKNORM_ROPE);
        /* K/V reach the cache before any row's attention reads it. A pure decode step (invariant and fp32 modes)
         * writes them inside its attention launch, which in the bf16 mode also writes o_proj's bf16 input. */
        const int att_bf = fused && writes_bf16(e, H * hd);
        const int ps = e->kv.pages->page_size;
        if (fused && e->mode == KERN_MODE_INVARIANT && e->splitkv_splits > 1) { /* few rows, many keys */
            kern_cuda_attn_decode_split_bf16(att_bf ? NULL : e->a.att, att_bf ? e->a.xb : NULL, kc16, vc16, k, e->a.v,
                                             q, qkn ? L->q_norm : NULL, qkn ? L->k_norm : NULL,
                                             qkn ? e->wt.rope : NULL, c->norm_eps, e->a.pages, e->a.ptoff, e->a.pos, M,
                                             H, KV, hd, ps, scale, e->splitkv_splits, e->a.key_cap, e->a.splitkv_ws,
                                             e->a.splitkv_ws_bytes, st);
        } else if (qkn) { /* q, k as the GEMM left them; q2, k2 only if the launch takes the walk */
            kern_cuda_attn_decode_fused_qknorm_bf16(att_bf ? NULL : e->a.att, att_bf ? e->a.xb : NULL, kc16, vc16, k,
                                                    e->a.v, q, L->q_norm, L->k_norm, e->wt.rope, c->norm_eps, e->a.q2,
                                                    e->a.k2, e->a.pages, e->a.ptoff, e->a.pos, M, H, KV, hd, ps, scale,
                                                    st);
        } else if (fused) { /* a pure decode step on the bf16 cache (invariant; standard at one split) */
            kern_cuda_attn_decode_fused_bf16(att_bf ? NULL : e->a.att, att_bf ? e->a.xb : NULL, kc16, vc16, k, e->a.v,
                                             q, e->a.pages, e->a.ptoff, e->a.pos, M, H, KV, hd, ps, scale, st);
        } else {
            if (b16) kern_cuda_kv_write_bf16(kc16, vc16, k, e->a.v, e->a.pages, e->a.ptoff, e->a.pos, M, ps, KV, hd, st);
            else kern_cuda_kv_write(kc, vc, k, e->a.v, e->a.pages, e->a.ptoff, e->a.pos, M, ps, KV, hd, st);
            if (e->mode == KERN_MODE_FP32) /* the CPU's order (cpu_order.cu), on the f32 cache */
                kern_cuda_cpuo_attention(e->a.att, q, kc, vc, e->a.pages, e->a.ptoff, e->a.pos, M, H, KV, hd, ps, scale,
                                         st);
            else if (hd < 32)
                kern_cuda_attn_small_bf16(e->a.att, q, kc16, vc16, e->a.pages, e->a.ptoff, e->a.pos, M, H, KV, hd, ps,
                                          scale, st);
            else if (e->mode == KERN_MODE_STANDARD && !std1)
                kern_cuda_attn_splitkv_bf16(e->a.att, q, kc16, vc16, e->a.pages, e->a.ptoff, e->a.pos, M, H, KV, hd, ps,
                                            scale, e->splitkv_splits, multi, e->a.splitkv_ws, e->a.splitkv_ws_bytes, st);
            else { /* a step with several rows of some sequence (prefill chunks, a shared prompt) */
                /* its leading rows of one row a sequence (the decoding sequences: the scheduler puts them first) take
                 * the decode kernel, the rest the prefill launcher (the standard mode's: split-KV with its one
                 * split): in the invariant mode the same bits as one prefill call (decode == prefill, attention.cu),
                 * without walking hundreds of decode rows one chunk at a time */
                float *att_p = e->a.att + (size_t)lead * H * hd;
                const float *q_p = q + (size_t)lead * H * hd;
                if (lead > 0)
                    kern_cuda_attn_decode_bf16(e->a.att, q, kc16, vc16, e->a.pages, e->a.ptoff, e->a.pos, lead, H, KV, hd,
                                               ps, scale, st);
                if (lead < M && e->mode == KERN_MODE_STANDARD)
                    kern_cuda_attn_splitkv_bf16(att_p, q_p, kc16, vc16, e->a.pages, e->a.ptoff + lead, e->a.pos + lead,
                                                M - lead, H, KV, hd, ps, scale, 1, multi, e->a.splitkv_ws,
                                                e->a.splitkv_ws_bytes, st);
                else if (lead < M)
                    kern_cuda_attn_prefill_bf16(att_p, q_p, kc16, vc16, e->a.pages, e->a.ptoff + lead, e->a.pos + lead,
                                                M - lead, H, KV, hd, ps, scale, st);
            }
        }
        prof(e, P_ATTN);
        gemm_rowpar(e, e->a.proj, e->a.att, att_bf, L->wo, L->bo, M, D, H * hd, e->chunks_o, 0);
        prof(e, P_OPROJ);
        in_xb = norm_in(e, e->a.x, e->a.proj, L->mlp_norm_w, L->mlp_norm_b, M);
        prof(e, P_NORM);
        const int act_bf = writes_bf16(e, F);
        if (c->act == POLICY_ACT_SILU_GLU) {
            float *outs[2] = {e->a.ffa, e->a.ffb};
            void *W[2] = {L->wg, L->wu};
            const float *bias[2] = {NULL, NULL};
            const int Ns[2] = {F, F};
            gemms(e, 2, outs, W, bias, Ns, e->a.xn, in_xb, M, D);
            prof(e, P_UPGATE);
            kern_cuda_swiglu(act_bf ? NULL : e->a.ffa, act_bf ? e->a.xb : NULL, e->a.ffa, e->a.ffb, (int64_t)M * F, st);
        } else {
            gemm(e, e->a.ffa, e->a.xn, in_xb, L->wu, L->b_up, M, F, D);
            prof(e, P_UPGATE);
            kern_cuda_gelu_tanh(e->a.ffa, act_bf ? e->a.xb : NULL, (int64_t)M * F, st);
        }
        prof(e, P_ACT);
        gemm_rowpar(e, e->a.proj, e->a.ffa, act_bf, L->wd, L->b_down, M, D, F, e->chunks_d, 1);
        prof(e, P_DOWN);
        pending = e->a.proj;
    }
    kern_cuda_add(e->a.x, pending, (int64_t)M * D, st);
    if (R == 0) return;
    /* rows that want logits: gather, final norm, LM head, vocabulary rows */
    kern_cuda_gather_rows(e->a.proj, e->a.x, e->a.gather, R, D, st);
    const int in_xb = norm_in(e, e->a.proj, NULL, e->wt.final_w, e->wt.final_b, R);
    gemm(e, e->a.logits, e->a.xn, in_xb, e->wt.lm_head, NULL, R, V, D);
    prof(e, P_HEAD);
    kern_cuda_vocab_rows(e->a.out, e->a.logits, e->a.req, R, V, e->a.vocab_ws, e->a.vocab_ws_bytes, st);
    if (e->mode == KERN_MODE_FP32) kern_cuda_cpuo_lse(e->a.out, e->a.logits, e->a.req, R, V, st);
    prof(e, P_VOCAB);
}

static br_status rollout_cuda_step(rollout_cuda *e, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
    const policy_weights *w = e->w;
    const policy_config *c = &w->cfg;
    br_status rc = policy_batch_check(w, e->a.T, e->kv.pages, b);
    if (rc != BR_OK || b->n == 0) return rc;
    const int M = b->n, V = c->vocab;
    cudaStream_t st = e->stream;

    /* page tables: each distinct sequence's pages once; rows point at their sequence's table. lead: rows 0 .. lead-1
     * are the only row of their sequence in this step (the first row of a repeated sequence ends the run; a match
     * at j is its sequence's first row or a later one, and its second row matched the first) */
    int n_pages = 0, multi = 0, R = 0, lead = M;
    for (int i = 0; i < M; i++) {
        int j = i - 1;
        while (j >= 0 && b->seqs[j] != b->seqs[i]) j--;
        if (j >= 0) {
            e->a.h_ptoff[i] = e->a.h_ptoff[j];
            multi = 1;
            if (j < lead) lead = j;
            continue;
        }
        e->a.h_ptoff[i] = n_pages;
        memcpy(e->a.h_pages + n_pages, b->seqs[i]->pages, (size_t)b->seqs[i]->n_pages * 4);
        n_pages += b->seqs[i]->n_pages;
    }
    for (int i = 0; i < M; i++)
        if (!b->want_logits || b->want_logits[i]) e->a.h_gather[R++] = i;
    int nf = 0;
    for (int r = 0; r < R; r++) {
        const rollout_sampling *s = rows[r].sampling;
        kern_row_req *q = &e->a.h_req[r];
        /* top-k / top-p rows: the vocabulary rows give m, lse and the digest, kern_cuda_sample_filter the token */
        const int filter = rows[r].target < 0 && s->temperature > 0 && (s->top_k > 0 || s->top_p < 1.0f);
        if (filter) e->a.h_filt[nf++] = (kern_filter_req){r, s->top_k, s->top_p};
        q->temperature = s->temperature > 0 ? s->temperature : 1.0f;
        q->mode = rows[r].target >= 0 || filter ? KERN_ROW_TARGET : s->temperature > 0 ? KERN_ROW_GUMBEL : KERN_ROW_GREEDY;
        q->target = rows[r].target;
        q->position = rows[r].position;
        q->seed = s->seed;
        q->sample_id = (uint64_t)rows[r].sample_id;
    }
    /* the split count, from the rows and the longest row's keys: the standard mode's split-KV, the invariant mode's
     * ordered split (taken by a pure decode step; at most split_rows rows, as the workspace: M <= T) */
    int max_keys = 0;
    for (int i = 0; i < M; i++)
        if (b->pos[i] + 1 > max_keys) max_keys = b->pos[i] + 1;
    if (e->mode == KERN_MODE_STANDARD)
        e->splitkv_splits = kern_cuda_attn_splitkv_splits(M, c->n_kv_heads, max_keys, e->n_sm);
    else if (e->mode == KERN_MODE_INVARIANT && e->a.split_rows > 0)
        e->splitkv_splits = kern_cuda_attn_decode_split_count(M, e->KVl, max_keys, e->n_sm);
    kern_cuda_upload_async(e->a.tok, b->tokens, (size_t)M * 4, st);
    kern_cuda_upload_async(e->a.pos, b->pos, (size_t)M * 4, st);
    kern_cuda_upload_async(e->a.ptoff, e->a.h_ptoff, (size_t)M * 4, st);
    kern_cuda_upload_async(e->a.pages, e->a.h_pages, (size_t)n_pages * 4, st);
    kern_cuda_upload_async(e->a.gather, e->a.h_gather, (size_t)R * 4, st);
    kern_cuda_upload_async(e->a.req, e->a.h_req, (size_t)R * sizeof(kern_row_req), st);
    if (nf) kern_cuda_upload_async(e->a.filt, e->a.h_filt, (size_t)nf * sizeof(kern_filter_req), st);

    e->tp_status = BR_OK;
    if (e->mode == KERN_MODE_INVARIANT && !multi) e->gr.split_steps[e->splitkv_splits]++; /* the profile's count */
    /* the graph slot of a pure decode step: its batch size and, in the standard and invariant modes, its split
     * count */
    const size_t slot = (size_t)M * e->gr.S + (e->gr.S > 1 ? e->splitkv_splits - 1 : 0);
    if (e->gr.use && !multi && R == M && e->gr.seen[slot]) {
        if (!e->gr.g[slot]) {
            kern_cuda_capture_begin(st);
            run_kernels(e, M, R, multi, lead);
            e->gr.g[slot] = kern_cuda_capture_end(st);
        }
        kern_cuda_graph_launch(e->gr.g[slot], st);
    } else {
        run_kernels(e, M, R, multi, lead);
        if (!multi && R == M) e->gr.seen[slot] = 1;
    }
    if (nf) /* after the step (graph or not): the filter reads its logits rows and m */
        kern_cuda_sample_filter(e->a.out, e->a.logits, e->a.req, e->a.filt, e->a.h_filt, nf, V, e->a.filt_ws,
                                e->a.filt_ws_bytes, st);
    kern_cuda_download_async(e->a.h_out, e->a.out, (size_t)R * sizeof(kern_row_out), st);
    if (e->tp.size > 1) { /* the group agrees on the step's collectives (a failed rank must not leave peers waiting) */
        br_status rc = e->tp.dev_wait(e->tp.dev_ctx, st, e->tp_status);
        if (rc != BR_OK) return rc;
    }
    kern_cuda_stream_sync(st);
    if (e->gr.prof) {
        e->gr.prof_steps[multi]++;
        for (int i = 0; i < e->gr.prof_n; i++)
            e->gr.prof_ms[multi][e->gr.prof_cat[i]] +=
                kern_cuda_event_ms(i ? e->gr.prof_ev[i - 1] : e->gr.prof_ev[e->gr.prof_cap], e->gr.prof_ev[i]);
    }
    for (int i = 0; i < M; i++)
        if (b->pos[i] + 1 > b->seqs[i]->len) b->seqs[i]->len = b->pos[i] + 1;

    for (int r = 0; r < R; r++) {
        const kern_row_out *o = &e->a.h_out[r];
        /* the recorded log-prob, one formula for generate and score: (x_t / T - m) - lse */
        const float T = e->a.h_req[r].temperature;
        out[r].token = o->token;
        out[r].logprob = (o->x_token / T - o->m) - o->lse;
        out[r].digest = o->digest;
    }
    return BR_OK;
}

/* ---- the backend table (rollout_backend_i) */

static br_status be_create(const policy_weights *w, const rollout_engine_opts *o, void **ctx) {
    rollout_cuda *e = NULL;
    br_status rc = rollout_cuda_create(w, o, &e);
    *ctx = e;
    return rc;
}
static void be_destroy(void *ctx) { rollout_cuda_free(ctx); }
static policy_kvcache *be_kv(void *ctx) { return rollout_cuda_kv(ctx); }
static br_status be_step(void *ctx, const policy_batch *b, const rollout_row *rows, rollout_row_out *out) {
    return rollout_cuda_step(ctx, b, rows, out);
}
static br_status be_last_logits(void *ctx, float *out, int rows) {
    rollout_cuda *e = ctx;
    if (rows > e->a.T) return br_fail(BR_EINVAL, "cuda engine: %d logits rows asked, the engine holds %d", rows, e->a.T);
    kern_cuda_download(out, e->a.logits, (size_t)rows * e->w->cfg.vocab * sizeof(float));
    return BR_OK;
}
static void be_select_device(int index) { kern_cuda_set_device(index); }
/* shared prompt KV: on the engine's stream, so it lands after the prefill that wrote src and before the next step */
static br_status be_kv_copy_page(void *ctx, int32_t dst, int32_t src) {
    rollout_cuda *e = ctx;
    const policy_kvcache *p = e->kv.pages;
    const int64_t es = e->kv.bf16 ? 2 : 4;
    kern_cuda_kv_copy_page(e->kv.k, e->kv.v, p->n_layers, (int64_t)e->kv.layer * es,
                           (int64_t)p->page_size * p->n_kv * p->hd * es, dst, src, e->stream);
    return BR_OK;
}

const rollout_backend_i rollout_backend_cuda = {
    "cuda", be_create, be_destroy, be_kv, be_step, be_last_logits, kern_cuda_device_count,
    be_select_device, kern_cuda_device_name, kern_cuda_upload, kern_cuda_download,
    kern_cuda_set_abort_hook, be_mem_info, be_kv_copy_page,
};
