/* The transformer forward pass: one code path per layer for prefill, decode and score.
 *
 * policy_forward takes any set of tokens from any sequences (a "batch"); every kernel it calls computes a
 * row from that row alone (and attention from that sequence's cached prefix) in a fixed order, so a token's
 * logits are the same bits whether it came in a prefill chunk of any size, alone in a decode step, in a
 * teacher-forced score call, or next to any other sequences. policy_prefill / policy_decode / policy_score are
 * thin drivers over it. */
#ifndef POLICY_FORWARD_H
#define POLICY_FORWARD_H

#include <stdint.h>

#include "common/br.h"
#include "policy/policy.h"

/* ---- Paged KV cache: one pool of pages shared by all sequences, all layers. */
typedef struct {
    int page_size;    /* token slots per page */
    int n_pages;
    int n_layers, n_kv, hd;
    float *k, *v;     /* (n_layers, n_pages, page_size, n_kv, hd) f32 */
    int32_t *free_pages; /* stack of free page ids, (n_pages) */
    int n_free;
    int32_t *refs;    /* (n_pages) holders of each page (sequences sharing a prompt prefix); 0: free */
    int max_pages_per_seq; /* ceil(max_pos / page_size) */
} policy_kvcache;

/* A sequence's view of the cache. `pages` is allocated once (max_pages_per_seq), never in the decode loop. */
typedef struct {
    int32_t *pages;   /* (max_pages_per_seq) page table */
    int n_pages;      /* pages held */
    int32_t len;      /* tokens written to the cache (positions 0 .. len-1) */
} policy_seq;

br_status policy_kv_create(const policy_config *cfg, int n_pages, int page_size, policy_kvcache **out);
/* The cache of one rank of a tensor-parallel group of tp_size ranks (its n_kv_heads / tp_size heads). */
br_status policy_kv_create_tp(const policy_config *cfg, int tp_size, int n_pages, int page_size, policy_kvcache **out);
/* The page allocator alone (k, v NULL): for a backend that keeps the pages' storage elsewhere (device memory). */
br_status policy_kv_create_pages(const policy_config *cfg, int n_pages, int page_size, policy_kvcache **out);
void policy_kv_free(policy_kvcache *kv);
br_status policy_seq_init(const policy_kvcache *kv, policy_seq *seq);
void policy_seq_free(policy_seq *seq);
/* Makes sure positions < n_tokens have pages; BR_ERUNTIME (cache full) leaves the sequence as it was. */
br_status policy_kv_reserve(policy_kvcache *kv, policy_seq *seq, int n_tokens);
/* Drops the sequence's hold on its pages (a page returns to the pool when its last holder lets go) and empties it
 * (len = 0). */
void policy_kv_release(policy_kvcache *kv, policy_seq *seq);
/* Shared prompt KV: makes the empty sequence dst start as a copy of src's first n_tokens cached tokens
 * (1 <= n_tokens <= src->len). The n_tokens / page_size full pages are shared (reference-counted, never written
 * again: a sequence only writes positions >= its len); a last, partly filled page is not shared but given a fresh
 * page of dst's own, returned in *copy_dst with its source in *copy_src, whose contents the caller must copy (every
 * layer's K and V: rollout_engine_kv_copy_page) before dst's next step; both are -1 when n_tokens fills whole pages.
 * dst->len = n_tokens. BR_ERUNTIME (no free page for the copy) leaves dst empty. */
br_status policy_kv_fork(policy_kvcache *kv, policy_seq *dst, const policy_seq *src, int n_tokens, int32_t *copy_src,
                         int32_t *copy_dst);

/* ---- Tensor parallelism (DESIGN 7). Attention heads and MLP columns are split over the `size` ranks of a group;
 * the row-parallel layers (attention output, MLP down projection) sum fixed K-chunks -- one per attention head,
 * POLICY_MLP_CHUNKS over the MLP width -- with one pairwise tree (kern_cpu_chunk_tree), so every tensor-parallel
 * degree, 1 included, computes the same bits. */
#define POLICY_MLP_CHUNKS 16

typedef struct {
    int rank, size; /* this process's place in its tensor-parallel group; size 1: no tensor parallelism */
    /* Fixed-order sum over the group: mine (chunks c0..c1 of this rank, n floats each) -> out (n) on every rank,
     * equal to kern_cpu_chunk_tree over all C chunks (comm_chunk_sum). Unused when size == 1. */
    br_status (*chunk_sum)(void *ctx, const float *mine, int C, size_t n, float *out);
    void *ctx;
    /* The CUDA engine's collective: recv (size * bytes, device memory) = every rank's send (bytes, device memory)
     * in rank order, enqueued on `stream` (a cudaStream_t); only bytes move (comm_nccl_allgather). NULL: --tp is
     * not available on the GPU. */
    br_status (*dev_allgather)(void *dev_ctx, const void *send, size_t bytes, void *recv, void *stream);
    /* Waits for `stream` and agrees within the group on st (every rank's first failure of the step; the lowest
     * failing rank's message; comm_nccl_wait). */
    br_status (*dev_wait)(void *dev_ctx, void *stream, br_status st);
    void *dev_ctx;
} policy_tp;

/* Checks that a model splits over `size` ranks: heads and key/value heads divisible by size, size <= 16. */
br_status policy_tp_check(const policy_config *c, int size);
/* Rank r of `size` owns chunks [c0, c1) of C: c0 = C*r/size, c1 = C*(r+1)/size (comm_chunk_range agrees). */
static inline void policy_chunk_range(int C, int rank, int size, int *c0, int *c1) {
    *c0 = (int)((int64_t)C * rank / size);
    *c1 = (int)((int64_t)C * (rank + 1) / size);
}

/* ---- Run state: activation buffers for up to max_tokens rows per forward call, allocated once. */
typedef struct policy_state policy_state;
br_status policy_state_create(const policy_weights *w, int max_tokens, policy_state **out);
/* The same for one rank of a tensor-parallel group (tp NULL or size 1: the whole model). The KV cache of that
 * rank holds n_kv_heads / size heads: create it with policy_kv_create_tp. */
br_status policy_state_create_tp(const policy_weights *w, int max_tokens, const policy_tp *tp, policy_state **out);
void policy_state_free(policy_state *st);
int policy_state_max_tokens(const policy_state *st);

typedef struct {
    int n;                      /* tokens in this call, <= max_tokens */
    const int32_t *tokens;      /* (n) */
    const int32_t *pos;         /* (n) position of each token in its sequence */
    policy_seq *const *seqs;    /* (n) sequence of each token; a sequence's tokens ascend by 1 from its len */
    const uint8_t *want_logits; /* (n) 1 = produce this token's logits; NULL = all */
} policy_batch;

/* Checks a batch before any work: ids in the vocabulary, positions in the context with reserved pages, each
 * sequence's rows contiguous from its cached length. Shared by every backend. */
br_status policy_batch_check(const policy_weights *w, int max_tokens, const policy_kvcache *kv, const policy_batch *b);

/* Runs the batch; writes logits (n_out, V) f32 for the tokens with want_logits set, in batch order.
 * Pages must be reserved for every position. Each sequence's len becomes max(len, pos + 1). */
br_status policy_forward(const policy_weights *w, policy_state *st, policy_kvcache *kv, const policy_batch *b,
                         float *logits);

/* Prefill n_seqs sequences (tokens[s] of length lens[s], appended at seq->len) in calls of at most `chunk`
 * tokens (and at most max_tokens). logits (n_seqs, V): logits of each sequence's last token. */
br_status policy_prefill(const policy_weights *w, policy_state *st, policy_kvcache *kv, int n_seqs,
                         policy_seq *const *seqs, const int32_t *const *tokens, const int *lens, int chunk,
                         float *logits);
/* One new token per sequence at position seq->len. logits (n_seqs, V). */
br_status policy_decode(const policy_weights *w, policy_state *st, policy_kvcache *kv, int n_seqs,
                        policy_seq *const *seqs, const int32_t *tokens, float *logits);
/* Teacher-forced logits for whole sequences (fresh cache entries, released at the end), packed into calls of
 * at most max_tokens tokens regardless of sequence boundaries. logits (sum lens, V), sequences in order. */
br_status policy_score(const policy_weights *w, policy_state *st, policy_kvcache *kv, int n_seqs,
                       const int32_t *const *tokens, const int *lens, float *logits);

#endif
