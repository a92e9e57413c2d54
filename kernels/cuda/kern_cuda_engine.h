/* C interface to the kernels the CUDA rollout engine adds on top of kern_cuda.h: the fused vocabulary-row kernel
 * (digest, max, log-sum-exp, argmax or Gumbel-max token) and a row gather. Plain C. */
#ifndef KERN_CUDA_ENGINE_H
#define KERN_CUDA_ENGINE_H

#include <stdint.h>

#include "kernels/cuda/kern_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KERN_ROW_GREEDY = 0,  /* token = argmax x (ties -> lowest id) */
    KERN_ROW_GUMBEL = 1,  /* token = argmax x/T + g_j, g_j = -logf(-logf(u(seed, sample_id, position, j))) */
    KERN_ROW_TARGET = 2   /* token = target (teacher forcing), or decided on the host (top-k / top-p) */
} kern_row_mode;

typedef struct {
    float temperature;  /* the T of m and lse: the sampling temperature, 1 for greedy rows */
    int32_t mode;       /* kern_row_mode */
    int32_t target;     /* KERN_ROW_TARGET: the token (any value < 0: no token; x_token is then 0) */
    int32_t position;   /* absolute position of the produced token (Gumbel key) */
    uint64_t seed, sample_id;
} kern_row_req;

typedef struct {
    int32_t token;    /* chosen token */
    float x_token;    /* logits[token] */
    float m;          /* max_j x_j / T */
    float lse;        /* logf(sum_j expf(x_j/T - m)) in a fixed tree order */
    uint64_t digest;  /* sum_j kern_digest_term(j, bits(x_j)) mod 2^64 (== kern_cpu_digest) */
} kern_row_out;

/* Rows of x (R, V) f32, each cut into fixed segments of V (so one row alone still fills the GPU); req (R) and
 * out (R) are device arrays; workspace: kern_cuda_vocab_rows_workspace(R, V) bytes of device memory. The host
 * turns (x_token, m, lse) into the log-prob (x_token / T - m) - lse, one formula for generate and score. */
size_t kern_cuda_vocab_rows_workspace(int R, int V);
void kern_cuda_vocab_rows(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V, void *workspace,
                          size_t workspace_bytes, cudaStream_t stream);

/* dst[r, :] = src[idx[r], :] for r < R; rows of D f32. idx (R) int32 device array. */
void kern_cuda_gather_rows(float *dst, const float *src, const int32_t *idx, int R, int D, cudaStream_t stream);

/* out (M, Kp) bf16 = RNE(x (M, K) f32), columns K..Kp-1 zero: the padded input of kern_cuda_gemm_bf16 when K is
 * not a multiple of 16 (the weights are padded with zeros the same way, so the pad adds exact zeros). */
void kern_cuda_cast_bf16_pad(uint16_t *out, const float *x, int M, int K, int Kp, cudaStream_t stream);

/* Attention for head dims the tiled kernels do not take (hd <= 32, e.g. 8 or 16): one warp per (row, head), the
 * same chunked online softmax (chunks of 32 keys, ascending), the same arguments as kern_cuda_attn_prefill. Any
 * row mix; a (row, head) gives the same bits whatever else is in the call. */
void kern_cuda_attn_small(float *out, const float *q, const float *k_cache, const float *v_cache, const int32_t *pages,
                          const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                          int page_size, float scale, cudaStream_t stream);

/* Random-weights models (policy_weights_random): dst (N, Kp) of dtype dt (bf16 or f32), element (n, k < K) =
 * scale * (2 u - 1) with u = br_uniform01(Philox(seed, tensor id, n*K + k)), rounded to dt; columns K..Kp-1 zero. */
void kern_cuda_fill_random(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, uint64_t seed, uint32_t id,
                           float scale, cudaStream_t stream);

/* The same for rows n0..n0+N-1 and columns k0..k0+K-1 of a random matrix of Kfull columns (a TP rank's slice:
 * the same bits as those elements of the whole matrix). */
void kern_cuda_fill_random_view(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, int64_t Kfull, int64_t n0,
                                int64_t k0, uint64_t seed, uint32_t id, float scale, cudaStream_t stream);

/* Makes device `dev` current for this process (fatal on failure). */
void kern_cuda_set_device(int dev);

/* ---- Streams, asynchronous copies, host-pinned buffers and CUDA graphs for the engine's step loop. */
cudaStream_t kern_cuda_stream_create(void);
void kern_cuda_stream_free(cudaStream_t s);
void kern_cuda_stream_sync(cudaStream_t s);
/* Events for the engine's profile (BITROLL_CUDA_PROFILE=1): time between two events recorded on a stream. */
cudaEvent_t kern_cuda_event_create(void);
void kern_cuda_event_free(cudaEvent_t ev);
void kern_cuda_event_record(cudaEvent_t ev, cudaStream_t s);
float kern_cuda_event_ms(cudaEvent_t a, cudaEvent_t b); /* waits for b */
void kern_cuda_upload_async(void *dst_dev, const void *src_host, size_t bytes, cudaStream_t s);
void kern_cuda_download_async(void *dst_host, const void *src_dev, size_t bytes, cudaStream_t s);
void *kern_cuda_host_alloc(size_t bytes); /* pinned host memory (fatal on failure) */
void kern_cuda_host_free(void *p);
typedef struct kern_cuda_graph kern_cuda_graph;
/* Starts capturing the launches issued on s (they are recorded, not run) ... */
void kern_cuda_capture_begin(cudaStream_t s);
/* ... and ends the capture, returning an executable graph of them. */
kern_cuda_graph *kern_cuda_capture_end(cudaStream_t s);
void kern_cuda_graph_launch(kern_cuda_graph *g, cudaStream_t s);
void kern_cuda_graph_free(kern_cuda_graph *g);

#ifdef __cplusplus
}
#endif
#endif
