/* CPU reference kernels: fp32 activations, 16/32-bit weights, one documented reduction order per op.
 *
 * The order never depends on how many rows (tokens) a call holds, how tokens are grouped into calls,
 * or which other sequences share the call: every output row is computed from its own input row (and,
 * for attention, its own sequence's KV prefix) by the same sequence of fp32 operations.
 *
 * Dot products and row sums of length n ("the 8-lane order"): lane j (0..7) accumulates the terms with
 * index i = j (mod 8) in ascending i, starting from +0.0f; the lanes are then combined as
 * ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). Built with -ffp-contract=off: no FMA. */
#ifndef KERN_CPU_H
#define KERN_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kern.h"

/* Reads element (n, k) of a weight view as fp32 (exact conversion from bf16/f16). */
float kern_cpu_wt_get(const kern_wt *w, int64_t n, int64_t k);

/* sum_i a[i]*b[i] in the 8-lane order. */
float kern_cpu_dot(const float *a, const float *b, int n);
/* sum_i a[i] in the 8-lane order. */
float kern_cpu_sum(const float *a, int n);

/* out[m, n] = dot(x[m, :], W[n, :]) (+ bias[n], added after the dot). x (M, K) f32, W (N, K), out (M, N).
 * W rows are converted to fp32 exactly, then the 8-lane dot; the bias add is one more rounding. */
void kern_cpu_matmul(float *out, const float *x, const kern_wt *w, const float *bias, int M);
/* The same with rows of x ldx floats apart (x (M, ldx), the first w->k columns used): a K-chunk of a wider input. */
void kern_cpu_matmul_ld(float *out, const float *x, int64_t ldx, const kern_wt *w, const float *bias, int M);

/* Fixed-order sum of C chunk partials all (C, n) -> out (n): one pairwise tree, sum(lo, hi) = sum(lo, mid) +
 * sum(mid, hi), mid = lo + (hi - lo) / 2, whoever holds the chunks (DESIGN 7: the row-parallel layers of every
 * tensor-parallel degree sum their K-chunks with it). tmp: kern_cpu_chunk_tree_levels(C) * n floats. */
void kern_cpu_chunk_tree(const float *all, int C, size_t n, float *out, float *tmp);
int kern_cpu_chunk_tree_levels(int C);

/* RMSNorm per row: out = x * (1 / sqrtf(sum(x^2)/D + eps)) * w. x, out (M, D); w (D). */
void kern_cpu_rmsnorm(float *out, const float *x, const float *w, int M, int D, float eps);
/* LayerNorm per row (mean, then variance of x - mean, both 8-lane sums): out = (x-mean)*rstd*w + b. */
void kern_cpu_layernorm(float *out, const float *x, const float *w, const float *b, int M, int D, float eps);

/* RoPE (HF rotate_half layout): for each row m and head h, pairs (i, i + hd/2), i < hd/2, rotated by
 * angle pos[m] * inv_freq[i]. cos/sin come from a table built once in double precision: `rope` is
 * (max_pos, hd/2, 2) f32 holding (cos, sin). x (M, n_heads, hd). */
void kern_cpu_rope(float *x, const int32_t *pos, const float *rope, int M, int n_heads, int hd);
/* Builds that table. inv_freq_i = theta^(-2i/hd) rounded to f32 and then to inv_freq_dtype: Hugging Face keeps
 * inv_freq in the model's dtype, so a bf16 checkpoint run as HF runs it rotates by bf16-rounded frequencies
 * (tests/unit/test_forward.c checks this against HF's logits). The angle p * inv_freq and its cos/sin are
 * computed in double and rounded once to f32. */
void kern_cpu_rope_table(float *rope, int max_pos, int hd, double theta, kern_dtype inv_freq_dtype);

/* out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + kern_expf(-g)) (exp, log, tanh here: kernels/kern_math.h). */
void kern_cpu_swiglu(float *out, const float *gate, const float *up, int64_t n);
/* x[i] = 0.5 x (1 + kern_tanhf(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2 "gelu_new"), in place. */
void kern_cpu_gelu_tanh(float *x, int64_t n);
/* x[i] += y[i]. */
void kern_cpu_add(float *x, const float *y, int64_t n);

/* out[m, :] = emb[tokens[m], :] (+ pos_emb[pos[m], :] when pos_emb != NULL). out (M, D). */
void kern_cpu_embed(float *out, const kern_wt *emb, const kern_wt *pos_emb, const int32_t *tokens,
                    const int32_t *pos, int M);

/* ---- Attention over a paged KV cache.
 * One layer's cache: pages of page_size token slots, each slot (n_kv, hd) f32 for K and for V.
 * A sequence's token t lives in page table[t / page_size], slot t % page_size. */
typedef struct {
    float *k, *v;               /* (n_pages, page_size, n_kv, hd) */
    int page_size;
    int n_kv, hd;
} kern_kv_layer;

/* Chunk size of the attention key loop (DESIGN 2): keys [c*S, (c+1)*S) form chunk c. */
#define KERN_ATTN_CHUNK 32

/* Writes k_new, v_new (M, n_kv, hd) into the cache at (page_tables[m], pos[m]). */
void kern_cpu_kv_write(kern_kv_layer *kv, const float *k_new, const float *v_new, const int32_t *const *page_tables,
                       const int32_t *pos, int M);

/* Causal attention with GQA for M query rows: row m attends to keys 0..pos[m] of its own sequence.
 * q (M, n_heads, hd), out (M, n_heads, hd); head h reads kv head h / (n_heads / n_kv).
 * Per (row, head): keys visited in chunks of KERN_ATTN_CHUNK in ascending order; scores
 * s_j = dot(q, k_j) * scale (8-lane dot); online softmax per chunk: m' = max(m, max_j s_j),
 * l = l * kern_expf(m - m') + sum_j kern_expf(s_j - m') (ascending j), acc = acc * expf(m - m') + sum_j p_j v_j
 * (ascending j, per output element); out = acc / l. Keys beyond pos[m] are not visited. */
void kern_cpu_attention(float *out, const float *q, const kern_kv_layer *kv, const int32_t *const *page_tables,
                        const int32_t *pos, int M, int n_heads, float scale);

/* ---- Vocabulary rows. */
/* Index of the largest value; ties -> the lowest index; NaN never wins. */
int kern_cpu_argmax(const float *x, int n);
/* log-softmax(x / temperature)[token] over the whole row: (x_t/T - m) - kern_logf(sum_j kern_expf(x_j/T - m)),
 * m = max_j x_j/T, the sum in the 8-lane order. temperature must be > 0. */
float kern_cpu_logprob(const float *x, int n, float temperature, int token);
/* out[j] = log-softmax(x / temperature)[j] for the whole row (same arithmetic as kern_cpu_logprob). */
void kern_cpu_logsoftmax(float *out, const float *x, int n, float temperature);
/* 64-bit digest of the row's fp32 bit patterns (docs/FORMAT.md): sum over i of fmix64((i << 32) | bits(x[i]))
 * mod 2^64. Integer addition is exact and order-free, so a parallel GPU reduction gives the same value. */
uint64_t kern_cpu_digest(const float *x, int n);

#endif
