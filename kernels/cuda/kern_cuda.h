/* C interface to the CUDA backend (the .cu files in kernels/cuda, one per operation). Plain C: included by C11 code,
 * no CUDA headers. Sections follow the files: device.cu, gemm.cu, norm.cu, rope.cu, activation.cu, add.cu, cast.cu,
 * embed.cu, gather.cu, kv_write.cu, attention.cu, attention_small.cu, attention_splitkv.cu, vocab.cu, sample_filter.cu,
 * cpu_order.cu, chunk_tree.cu, fill_random.cu.
 *
 * Conventions (docs/CUDA.md has the reduction order of every kernel):
 * - every pointer argument of a kernel launcher is DEVICE memory, row-major, shapes in the comments;
 * - activations are fp32; the invariant-mode GEMM takes its input rows in bf16 (kern_cuda_cast_bf16, or the
 *   bf16 output of a norm kernel) because the tensor cores multiply bf16; weights are bf16 (fp32 allowed in the
 *   fp32 mode) laid out (N, K) with K contiguous (HF nn.Linear; transpose Conv1D weights when uploading);
 * - launchers are asynchronous on `stream` (NULL = the legacy default stream); errors of the CUDA runtime are
 *   fatal (CUDA_CHECK: file:line, the error, then abort), violated preconditions likewise;
 * - no launcher's arithmetic for a row depends on how many rows the call holds (DESIGN 2), except the `standard`
 *   mode's (kern_cuda_gemm_standard, kern_cuda_attn_splitkv), which are non-invariant by design. */
#ifndef KERN_CUDA_H
#define KERN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA runtime's own definitions (driver_types.h), repeated so that C code needs no CUDA header. */
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;

/* ---- Devices, memory, streams, graphs (device.cu). */
/* Number of usable CUDA devices; 0 when there is no driver or no device (never fails). */
int kern_cuda_device_count(void);
/* Name of device `dev` into buf (empty string when unavailable). */
void kern_cuda_device_name(int dev, char *buf, int len);
/* Makes device `dev` current for this process (fatal on failure). */
void kern_cuda_set_device(int dev);
/* cudaMemGetInfo of the current device. */
void kern_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
/* Multiprocessor count and L2 size in bytes of the current device. */
void kern_cuda_device_props(int *n_sm, int *l2_bytes);
/* The current device's maximum SM clock in kHz (cudaDevAttrClockRate): the issue-rate rooflines of the benchmarks. */
int kern_cuda_device_sm_clock_khz(void);
void *kern_cuda_malloc(size_t bytes);  /* fatal on failure; never returns NULL for bytes > 0 */
void kern_cuda_free(void *p);          /* NULL is a no-op */
void kern_cuda_upload(void *dst_dev, const void *src_host, size_t bytes);   /* synchronous */
void kern_cuda_download(void *dst_host, const void *src_dev, size_t bytes); /* synchronous */
void kern_cuda_memset(void *dst_dev, int byte, size_t bytes);
void kern_cuda_memset_async(void *dst_dev, int byte, size_t bytes, cudaStream_t s); /* on s, capturable */
void kern_cuda_sync(void); /* cudaDeviceSynchronize + error check */
/* Called (then abort()) on a fatal device error; the driver installs one that aborts the whole MPI job
 * (comm_abort_job). */
void kern_cuda_set_abort_hook(void (*hook)(void));

/* Streams, asynchronous copies and pinned host buffers for the engine's step loop. */
cudaStream_t kern_cuda_stream_create(void);
void kern_cuda_stream_free(cudaStream_t s);
void kern_cuda_stream_sync(cudaStream_t s);
void kern_cuda_upload_async(void *dst_dev, const void *src_host, size_t bytes, cudaStream_t s);
void kern_cuda_download_async(void *dst_host, const void *src_dev, size_t bytes, cudaStream_t s);
void *kern_cuda_host_alloc(size_t bytes); /* pinned host memory (fatal on failure) */
void kern_cuda_host_free(void *p);
/* Events for the engine's profile (tuning.cuda_profile): time between two events recorded on a stream. */
cudaEvent_t kern_cuda_event_create(void);
void kern_cuda_event_free(cudaEvent_t ev);
void kern_cuda_event_record(cudaEvent_t ev, cudaStream_t s);
float kern_cuda_event_ms(cudaEvent_t a, cudaEvent_t b); /* waits for b */
/* CUDA graphs: kern_cuda_capture_begin starts capturing the launches issued on s (they are recorded, not run),
 * kern_cuda_capture_end returns an executable graph of them. */
typedef struct kern_cuda_graph kern_cuda_graph;
void kern_cuda_capture_begin(cudaStream_t s);
kern_cuda_graph *kern_cuda_capture_end(cudaStream_t s);
void kern_cuda_graph_launch(kern_cuda_graph *g, cudaStream_t s);
void kern_cuda_graph_free(kern_cuda_graph *g);

/* Event timer for benchmarks: start/stop record events on `stream`; stop waits and returns milliseconds. */
typedef struct kern_cuda_timer kern_cuda_timer;
kern_cuda_timer *kern_cuda_timer_create(void);
void kern_cuda_timer_free(kern_cuda_timer *t);
void kern_cuda_timer_start(kern_cuda_timer *t, cudaStream_t stream);
float kern_cuda_timer_stop_ms(kern_cuda_timer *t, cudaStream_t stream);
/* dst[i] = src[i], i < n (16-byte vector copy; measures the device's copy bandwidth). */
void kern_cuda_copy_f32(float *dst, const float *src, size_t n, cudaStream_t stream);

/* ---- Run-time switches (device.cu): the kernels' part of common/tuning.h's br_tuning, handed over once by whoever
 * creates the engine (the kernels never read the environment). None of them changes a bit of any result: they
 * choose launch modes and schedules, so that measured variants can be compared. */
typedef struct {
    int pdl;               /* 1: the decode path's kernels launch as programmatic dependents (BITROLL_PDL) */
    int gemm_short;        /* 1: decode-shaped GEMMs over short k spans use 4 pipeline stages (BITROLL_GEMM_SHORT) */
    int gemm_rowpar_fused; /* 1: row-parallel GEMMs of M <= 16 sum their chunks in the GEMM's last blocks
                            * (BITROLL_GEMM_ROWPAR_FUSED) */
    int attn_decode;       /* decode attention: 0 chosen per call by its block count, 1 the chunk walk, 2 the parallel
                            * chunks (BITROLL_ATTN_DECODE; the values of br_attn_decode) */
    int gemm_wgmma;        /* 1: GEMMs of M > 64 run the warpgroup-MMA kernel on sm_90 devices; 0: the mma.sync one
                            * (BITROLL_GEMM_WGMMA) */
    int gemm_small_tma;    /* 1: GEMMs of M <= 64 run the TMA-fed variant of the decode kernel on sm_90 devices; 0: the
                            * cp.async one (BITROLL_GEMM_SMALL_TMA) */
    int gemm_small_rx;     /* 1: GEMMs of M <= 16 and N >= 64 x SMs run gemm_small_tma in 8-warp blocks that keep x's
                            * rows resident in shared memory where they fit and stream only W through the ring; 0:
                            * 4-warp blocks with x in the ring (BITROLL_GEMM_SMALL_RX) */
} kern_cuda_tuning;
/* Sets the switches of every later launch in this process (until the first call: 1, 1, 1, 0, 1, 1, 1) and returns the
 * previous ones; t == NULL only returns the current ones. Host-side state: not to be called while another thread
 * launches kernels. A value outside its set is fatal (KERN_REQUIRE). A CUDA graph keeps the launches it captured. */
kern_cuda_tuning kern_cuda_set_tuning(const kern_cuda_tuning *t);

/* Kernel modes (kern_mode, DESIGN 2): kernels/kern.h. */

/* ---- GEMM (gemm.cu): out (M, N) f32 = x (M, K) . W (N, K)^T (+ bias (N) f32, added after the dot: one more rounding).
 * Invariant mode: x bf16, W bf16, tensor cores (mma.sync m16n8k16, fp32 accumulate). Every output element is
 * acc = 0; for k16 = 0, 16, ..., K-16 ascending: acc = mma(acc, x[m, k16:k16+16], W[n, k16:k16+16]) -- for
 * every M: M <= 64 runs the decode-shaped kernel (small tiles, deep pipeline, for HBM bandwidth), larger M
 * the 128x128x64 kernel; both issue that same sequence, so a row's bits never depend on M. No split-K.
 * Requires K % 16 == 0 and 16-byte aligned x, W. M <= 64 launches as a programmatic dependent of the previous kernel
 * on the stream and reads its first W tiles before waiting for that kernel (kern_cuda_tuning.pdl = 0: off): W must
 * not be written by work still in flight on the stream -- write weights, synchronize, then run GEMMs. x, out and
 * bias follow the normal stream order. */
void kern_cuda_gemm_bf16(float *out, const uint16_t *x, const uint16_t *w, const float *bias, int M, int N, int K,
                         cudaStream_t stream);
/* n (1..3) invariant GEMMs that share x (M, K) in one launch (q/k/v, gate/up): out_i (M, Ns[i]) = x . W_i^T
 * (+ biases[i] when biases and biases[i] are not NULL). Each output has exactly the bits of its own
 * kern_cuda_gemm_bf16 call (a segment only picks which W, out and bias a block uses; tested). */
void kern_cuda_gemm_bf16_multi(int n, float *const *outs, const uint16_t *const *ws, const float *const *biases,
                               const int *Ns, const uint16_t *x, int M, int K, cudaStream_t stream);
/* Row-parallel GEMMs (o_proj, down_proj; DESIGN 7): K is cut into C chunks of K / C columns ((K / C) % 16 == 0);
 * chunk c's partial P_c (M, N) is the invariant k16 sequence over its own columns from +0.0f, and
 * out = ((P_0 + P_1) + ...) + P_{C-1} (+ bias): fp32 adds, left to right -- for every M (tested M = 1..512 against
 * M = 1) and whatever chunks were computed where: a TP group of N ranks computes C / N chunks each
 * (kern_cuda_gemm_bf16_partials), gathers them, and kern_cuda_chunk_seq gives the TP = 1 bits.
 * ws: kern_cuda_gemm_rowpar_ws(M, N, K, C) bytes (the partials of up to 2048 rows at a time: C times more blocks
 * than the plain GEMM, so a decode-sized GEMM fills the GPU, and tile counters at its end), made ready once with
 * kern_cuda_gemm_rowpar_ws_prepare(ws, ws_bytes) (zeroes the counters; every call leaves them zero). M <= 16: the
 * last chunk block of each output tile sums the partials (one launch; kern_cuda_tuning.gemm_rowpar_fused = 0: two);
 * larger M: partials, then chunk_seq. Calls that share a workspace must not run concurrently. C = 1 is
 * kern_cuda_gemm_bf16. */
size_t kern_cuda_gemm_rowpar_ws(int M, int N, int K, int C);
void kern_cuda_gemm_rowpar_ws_prepare(float *ws, size_t ws_bytes);
void kern_cuda_gemm_bf16_rowpar(float *out, float *ws, size_t ws_bytes, const uint16_t *x, const uint16_t *w,
                                const float *bias, int M, int N, int K, int C, cudaStream_t stream);
/* parts (c1 - c0, M, N) = the partials of chunks c0..c1-1 (no bias), any M. */
void kern_cuda_gemm_bf16_partials(float *parts, const uint16_t *x, const uint16_t *w, int M, int N, int K, int C,
                                  int c0, int c1, cudaStream_t stream);
/* out (M, N) = ((parts[0] + parts[1]) + ...) + parts[C-1] (+ bias (N)), fp32 adds left to right; parts (C, M, N). */
void kern_cuda_chunk_seq(float *out, const float *parts, int C, int M, int N, const float *bias, cudaStream_t stream);
/* fp32 mode: x f32, W bf16 or f32 (wdt), all arithmetic fp32 without FMA, in the CPU reference's 8-lane order
 * (kern_cpu_matmul): the result is bit-identical to the CPU reference (tested). Any K >= 1. */
void kern_cuda_gemm_f32(float *out, const float *x, const void *w, kern_dtype wdt, const float *bias, int M, int N,
                        int K, cudaStream_t stream);
/* kern_cuda_gemm_f32 with row strides (in elements): x (M, ldx) and W (N, ldw), of which the first K columns are
 * used -- the CPU's column chunk of a row-parallel layer (kern_cpu_matmul_ld on cols_of(W)). */
void kern_cuda_gemm_f32_ld(float *out, const float *x, int64_t ldx, const void *w, int64_t ldw, kern_dtype wdt,
                           const float *bias, int M, int N, int K, cudaStream_t stream);
/* C equal column chunks of kc columns in ONE launch (the fp32 mode's row-parallel layers): for c = 0..C-1, parts +
 * c*M*N (M, N) f32 = x[:, c*kc : (c+1)*kc] . W[:, c*kc : (c+1)*kc]^T, no bias -- bit for bit
 * kern_cuda_gemm_f32_ld(parts + c*M*N, x + c*kc, ldx, w + c*kc (elements of wdt), ldw, wdt, NULL, M, N, kc, stream)
 * (tested): chunk c runs as blocks of grid.z = c, the same operations in the same order. x (M, ldx) f32, W (N, ldw)
 * wdt, ldx and ldw >= C*kc; 1 <= C <= 65535; parts (C, M, N) f32. */
void kern_cuda_gemm_f32_chunks(float *parts, const float *x, int64_t ldx, const void *w, int64_t ldw, kern_dtype wdt,
                               int M, int N, int kc, int C, cudaStream_t stream);
/* standard mode: cublasGemmEx bf16 x bf16 -> f32, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT (cuBLAS picks the
 * algorithm by shape, split-K included): the fast baseline, NOT batch invariant. */
void kern_cuda_gemm_standard(float *out, const uint16_t *x, const uint16_t *w, const float *bias, int M, int N,
                             int K, cudaStream_t stream);

/* ---- Norms (norm.cu), fp32, one row per block of 256 threads. */
/* RMSNorm: out = x * (1 / sqrtf(sum(x^2)/D + eps)) * w. x (M, D) f32, w (D) f32; out_f32 (M, D) and/or
 * out_bf16 (M, D) (RNE of the f32 value); either may be NULL. */
void kern_cuda_rmsnorm(float *out_f32, uint16_t *out_bf16, const float *x, const float *w, int M, int D, float eps,
                       cudaStream_t stream);
/* LayerNorm: out = ((x - mean) * rstd) * w + b. Outputs as for rmsnorm. */
void kern_cuda_layernorm(float *out_f32, uint16_t *out_bf16, const float *x, const float *w, const float *b, int M,
                         int D, float eps, cudaStream_t stream);
/* The fused end of a residual branch: x += y (x and y (M, D) f32; x updated in place), then the norm of the new x
 * into out_f32 / out_bf16 -- bit for bit kern_cuda_add followed by kern_cuda_rmsnorm / kern_cuda_layernorm, in
 * one launch (tested). */
void kern_cuda_add_rmsnorm(float *x, const float *y, float *out_f32, uint16_t *out_bf16, const float *w, int M, int D,
                           float eps, cudaStream_t stream);
void kern_cuda_add_layernorm(float *x, const float *y, float *out_f32, uint16_t *out_bf16, const float *w,
                             const float *b, int M, int D, float eps, cudaStream_t stream);
/* Qwen3's per-head q/k RMSNorm then RoPE, for q (M, H, hd) and k (M, KV, hd) in one launch (out-of-place):
 * bit for bit kern_cuda_rmsnorm (rows of hd) followed by kern_cuda_rope (tested). hd <= 256. */
void kern_cuda_qk_norm_rope(float *q_out, float *k_out, const float *q, const float *k, const float *qw, const float *kw,
                            const int32_t *pos, const float *rope, int M, int H, int KV, int hd, float eps,
                            cudaStream_t stream);

/* ---- Element-wise kernels (fp32; no reductions). */
/* rope.cu: in-place RoPE (HF rotate_half) with the table of kern_cpu_rope_table: rope (max_pos, hd/2, 2) f32.
 * x (M, n_heads, hd) f32, pos (M) int32. Same fp32 operations as kern_cpu_rope (bit-identical). */
void kern_cuda_rope(float *x, const int32_t *pos, const float *rope, int M, int n_heads, int hd, cudaStream_t stream);
/* activation.cu: out = silu(gate) * up; out_f32 and/or out_bf16 may be NULL. gate, up (n) f32. */
void kern_cuda_swiglu(float *out_f32, uint16_t *out_bf16, const float *gate, const float *up, int64_t n,
                      cudaStream_t stream);
/* activation.cu: in place GPT-2 gelu (tanh approximation); out_bf16 (n) optional copy. */
void kern_cuda_gelu_tanh(float *x, uint16_t *out_bf16, int64_t n, cudaStream_t stream);
/* add.cu: x += y, (n) f32. */
void kern_cuda_add(float *x, const float *y, int64_t n, cudaStream_t stream);
/* add.cu: x (M, N) f32 += b (N) f32 on every row (the CPU's bias add after a row-parallel layer's chunk sum). */
void kern_cuda_add_rows(float *x, const float *b, int M, int N, cudaStream_t stream);
/* cast.cu: out = RNE bf16 of x, (n). */
void kern_cuda_cast_bf16(uint16_t *out, const float *x, int64_t n, cudaStream_t stream);
/* cast.cu: out (M, Kp) bf16 = RNE(x (M, K) f32), columns K..Kp-1 zero: the padded input of kern_cuda_gemm_bf16 when
 * K is not a multiple of 16 (the weights are padded with zeros the same way, so the pad adds exact zeros). */
void kern_cuda_cast_bf16_pad(uint16_t *out, const float *x, int M, int K, int Kp, cudaStream_t stream);
/* embed.cu: out[m, :] = emb[tokens[m], :] (+ pos_emb[pos[m], :] when pos_emb != NULL). emb (V, D), pos_emb (P, D) of
 * dtype dt (bf16 or f32), out (M, D) f32. tokens, pos (M) int32. */
void kern_cuda_embed(float *out, const void *emb, const void *pos_emb, kern_dtype dt, const int32_t *tokens,
                     const int32_t *pos, int M, int D, cudaStream_t stream);
/* gather.cu: dst[r, :] = src[idx[r], :] for r < R; rows of D f32. idx (R) int32. */
void kern_cuda_gather_rows(float *dst, const float *src, const int32_t *idx, int R, int D, cudaStream_t stream);

/* ---- Attention over a paged KV cache (one layer). K and V pools: (n_pages, page_size, n_kv, hd) f32, or bf16 for
 * the _bf16 entry points (kv_elem.cuh: stored rounded to nearest even, widened exactly on load, so the arithmetic is
 * the f32 cache's; for K/V values that are bf16 numbers the outputs equal the f32 cache's bit for bit).
 * Row m of a call belongs to the sequence whose page table starts at pages[pt_off[m]]: its token t lives in
 * page pages[pt_off[m] + t / page_size], slot t % page_size. pages (total) int32, pt_off (M) int32, pos (M) int32.
 * hd in {32, 64, 128, 256} (attention_small.cu: hd <= 32); n_heads % n_kv == 0; n_heads / n_kv <= 16. */
/* kv_write.cu: writes k_new, v_new (M, n_kv, hd) f32 at (pt_off[m], pos[m]). Call before attention reads them. */
void kern_cuda_kv_write(float *k_cache, float *v_cache, const float *k_new, const float *v_new, const int32_t *pages,
                        const int32_t *pt_off, const int32_t *pos, int M, int page_size, int n_kv, int hd,
                        cudaStream_t stream);
void kern_cuda_kv_write_bf16(uint16_t *k_cache, uint16_t *v_cache, const float *k_new, const float *v_new,
                             const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int page_size,
                             int n_kv, int hd, cudaStream_t stream);
/* kv_write.cu: page src over page dst (page_bytes each, even) in K and V of every layer; caches (n_layers,
 * layer_bytes), either element type. Shared prompt KV: a sample's own copy of the prompt's partly filled last page. */
void kern_cuda_kv_copy_page(void *k_cache, void *v_cache, int n_layers, int64_t layer_bytes, int64_t page_bytes,
                            int32_t dst, int32_t src, cudaStream_t stream);
/* attention.cu: causal GQA attention: row m, head h attends to keys 0..pos[m] of its sequence, kv head
 * h / (n_heads/n_kv). q, out (M, n_heads, hd) f32. Keys are visited in chunks of KERN_ATTN_CHUNK (32) ascending
 * with one online-softmax step per chunk, by the same warp routine in both launchers, so a (row, head) gives the
 * same bits whichever launcher computed it and whatever else was in the call. prefill: many rows, consecutive rows
 * of one sequence share K/V loads; decode: one row per sequence. */
void kern_cuda_attn_prefill(float *out, const float *q, const float *k_cache, const float *v_cache,
                            const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                            int n_kv, int hd, int page_size, float scale, cudaStream_t stream);
void kern_cuda_attn_decode(float *out, const float *q, const float *k_cache, const float *v_cache,
                           const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                           int n_kv, int hd, int page_size, float scale, cudaStream_t stream);
void kern_cuda_attn_prefill_bf16(float *out, const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                                 const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                                 int n_kv, int hd, int page_size, float scale, cudaStream_t stream);
void kern_cuda_attn_decode_bf16(float *out, const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                                const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                                int n_kv, int hd, int page_size, float scale, cudaStream_t stream);
/* Decode with fusions: when k_new / v_new (M, n_kv, hd) are given, row m's own K/V are first written to the cache
 * at (pt_off[m], pos[m]) (instead of kern_cuda_kv_write; every row must be a different sequence, as in any decode
 * call); out (f32) and/or out_bf16 (M, n_heads * hd; the rounding of kern_cuda_cast_bf16_pad) receive the result,
 * either may be NULL. The bits of kern_cuda_attn_decode / prefill (the chunks of a window run on parallel warps,
 * same operations in the same order: attention.cu). Which decode kernel runs: kern_cuda_tuning.attn_decode (every
 * choice gives the same bits). */
void kern_cuda_attn_decode_fused(float *out, uint16_t *out_bf16, float *k_cache, float *v_cache, const float *k_new,
                                 const float *v_new, const float *q, const int32_t *pages, const int32_t *pt_off,
                                 const int32_t *pos, int M, int n_heads, int n_kv, int hd, int page_size,
                                 float scale, cudaStream_t stream);
void kern_cuda_attn_decode_fused_bf16(float *out, uint16_t *out_bf16, uint16_t *k_cache, uint16_t *v_cache,
                                      const float *k_new, const float *v_new, const float *q, const int32_t *pages,
                                      const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                                      int page_size, float scale, cudaStream_t stream);
/* kern_cuda_qk_norm_rope(q2, k2, q, k_new, q_norm_w, k_norm_w, pos, rope, M, n_heads, n_kv, hd, eps), then
 * kern_cuda_attn_decode_fused_bf16 on q2, k2: those calls' bits (out, out_bf16 and the cache). The decode kernel of
 * parallel chunks does the norm and RoPE of its block's heads in its prologue (one launch, q2 and k2 untouched);
 * the walk (kern_cuda_tuning.attn_decode = 1) runs the two calls, q2 (M, n_heads, hd) and k2 (M, n_kv, hd) f32
 * holding the rotated rows. */
void kern_cuda_attn_decode_fused_qknorm_bf16(float *out, uint16_t *out_bf16, uint16_t *k_cache, uint16_t *v_cache,
                                             const float *k_new, const float *v_new, const float *q,
                                             const float *q_norm_w, const float *k_norm_w, const float *rope,
                                             float eps, float *q2, float *k2, const int32_t *pages,
                                             const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv,
                                             int hd, int page_size, float scale, cudaStream_t stream);
/* attention.cu, invariant mode: the decode attention of a few long rows spread over many blocks ("ordered split"):
 * the same arguments, bits and cache writes as kern_cuda_attn_decode_fused_qknorm_bf16 (q_norm_w, k_norm_w, rope
 * given) or kern_cuda_attn_decode_fused_bf16 (all three NULL), whatever `splits` (1 .. KERN_CUDA_ATTN_SPLIT_MAX):
 * each split of a row's chunks computes its scores and values' sums, the last split to finish folds every chunk in
 * ascending order. One launch; its blocks wait for earlier splits of their row (grid <= the SMs in the engine).
 * ws: kern_cuda_attn_decode_split_workspace(M, n_heads, hd, key_cap) bytes, key_cap >= every row's keys (pos + 1),
 * ZERO-FILLED before its first use (it ends with counters that each call leaves zero). The cache's keys and values
 * before the rows' own are read before the previous kernel on the stream completes (a programmatic dependent
 * launch): that kernel must not write them. kern_cuda_attn_decode_split_count: the engine's choice (1: the
 * one-launch kernel is used),
 * from the batch and its longest row (any choice gives the same bits); >1 only for M <=
 * kern_cuda_attn_decode_split_rows(n_kv, n_sm) rows. */
#define KERN_CUDA_ATTN_SPLIT_MAX 32
#define KERN_CUDA_ATTN_SPLIT_SPREAD 4 /* split rows: at most one block per SPREAD SMs without splitting */
void kern_cuda_attn_decode_split_bf16(float *out, uint16_t *out_bf16, uint16_t *k_cache, uint16_t *v_cache,
                                      const float *k_new, const float *v_new, const float *q, const float *q_norm_w,
                                      const float *k_norm_w, const float *rope, float eps, const int32_t *pages,
                                      const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                                      int page_size, float scale, int splits, int key_cap, void *ws, size_t ws_bytes,
                                      cudaStream_t stream);
int kern_cuda_attn_decode_split_count(int M, int n_kv, int max_keys, int n_sm);
int kern_cuda_attn_decode_split_rows(int n_kv, int n_sm);
size_t kern_cuda_attn_decode_split_workspace(int M, int n_heads, int hd, int key_cap);
/* attention_small.cu: attention for head dims the tiled kernels do not take (hd <= 32, e.g. 8 or 16): one warp per
 * (row, head), the same chunked online softmax (chunks of 32 keys, ascending), the same arguments as
 * kern_cuda_attn_prefill. Any row mix; a (row, head) gives the same bits whatever else is in the call. */
void kern_cuda_attn_small(float *out, const float *q, const float *k_cache, const float *v_cache, const int32_t *pages,
                          const int32_t *pt_off, const int32_t *pos, int M, int n_heads, int n_kv, int hd,
                          int page_size, float scale, cudaStream_t stream);
void kern_cuda_attn_small_bf16(float *out, const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                               const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                               int n_kv, int hd, int page_size, float scale, cudaStream_t stream);

/* attention_splitkv.cu, standard mode: split-KV ("flash-decoding") attention, NOT batch invariant. Same arguments and
 * result as kern_cuda_attn_prefill/decode up to rounding (FMA, exp2), but each row's keys are cut into n_splits
 * chunk-aligned ranges computed by separate blocks and merged in a second pass; n_splits comes from
 * kern_cuda_attn_splitkv_splits, i.e. from the batch, so a row's bits depend on the batch. Deterministic for the
 * same inputs and n_splits. prefill != 0 lets up to 8 / G consecutive rows of one sequence share K/V loads (any
 * row mix stays correct); 0 = one row per block (decode). workspace (device, workspace_bytes >=
 * kern_cuda_attn_splitkv_workspace_bytes(M, n_heads, hd, n_splits); may be NULL when n_splits == 1) holds the
 * partials. 1 <= n_splits <= KERN_CUDA_SPLITKV_MAX. */
#define KERN_CUDA_SPLITKV_MAX 64
void kern_cuda_attn_splitkv(float *out, const float *q, const float *k_cache, const float *v_cache,
                            const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                            int n_kv, int hd, int page_size, float scale, int n_splits, int prefill,
                            float *workspace, size_t workspace_bytes, cudaStream_t stream);
void kern_cuda_attn_splitkv_bf16(float *out, const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                                 const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                                 int n_kv, int hd, int page_size, float scale, int n_splits, int prefill,
                                 float *workspace, size_t workspace_bytes, cudaStream_t stream);
/* n_splits "by count" (host, pure): with P = M * n_kv (row, KV head) pairs -- the pass-1 blocks per split --
 * 1 when P >= 0.8 * n_sm or max_keys <= 32 (the longest row of the call); otherwise ceil(n_sm / P), so that
 * P * n_splits fills one wave of the SMs, capped by the longest row's chunks of 32 keys and KERN_CUDA_SPLITKV_MAX. */
int kern_cuda_attn_splitkv_splits(int M, int n_kv, int max_keys, int n_sm);
/* Workspace of one call: M * n_heads * n_splits * (hd + 2) floats when n_splits > 1, else 0. */
size_t kern_cuda_attn_splitkv_workspace_bytes(int M, int n_heads, int hd, int n_splits);
/* The most any call of 1..max_rows rows needs with n_splits = kern_cuda_attn_splitkv_splits(M, n_kv, any, n_sm):
 * allocate this once (it is small: splitting stops once M * n_kv reaches 0.8 * n_sm). */
size_t kern_cuda_attn_splitkv_workspace_max(int max_rows, int n_heads, int n_kv, int hd, int n_sm);

/* ---- Vocabulary rows (vocab.cu): the one implementation of the per-row vocabulary work of generate and score --
 * the digest, max of x/T, log-sum-exp, and the row's token (argmax, Gumbel-max or a given target). */
typedef enum {
    KERN_ROW_GREEDY = 0,  /* token = argmax x (ties -> lowest id, NaN never wins) */
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

/* Rows of x (R, V) f32 logits, each cut into fixed segments of V (so one row alone still fills the GPU); req (R)
 * and out (R) are device arrays; workspace: kern_cuda_vocab_rows_workspace(R, V) bytes of device memory. The host
 * turns (x_token, m, lse) into the log-prob (x_token / T - m) - lse, one formula for generate and score. */
size_t kern_cuda_vocab_rows_workspace(int R, int V);
void kern_cuda_vocab_rows(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V, void *workspace,
                          size_t workspace_bytes, cudaStream_t stream);

/* ---- Top-k / top-p sampling on the device (sample_filter.cu): the token of rollout_sample (rollout/sampler.c) for
 * the same logits row, temperature, top_k, top_p, seed, sample_id and position, bit for bit. */
typedef struct {
    int32_t row;   /* index into x, req and out; distinct rows within a call */
    int32_t top_k; /* 0 (off: V) or 1 .. V */
    float top_p;   /* (0, 1]; 1 = off */
} kern_filter_req;

/* Bytes of device workspace for passes of up to G = group_rows rows of V logits, with up(b) = b rounded up to 256:
 * 4 up(4 G V) (keys and ids, twice: the radix sort's double buffers) + up(4 (G + 1)) + 3 up(4 G) (segment offsets,
 * lse rows, lse, top-p lengths) + up(8 G ceil(V / 8192)) (Gumbel-max partials) + 256 KiB (CUB's temporary storage),
 * i.e. 16 G V bytes and under 300 KiB more. V = 151,936, G = 64: 155,855,616 bytes (148.6 MiB).
 * 1 <= G <= 65535, G * V <= INT_MAX. */
size_t kern_cuda_sample_filter_workspace(int group_rows, int V);
/* For i < n, row r = f[i].row of x (R, V) f32 (R > r): out[r].token = rollout_sample's token for that row with
 * temperature req[r].temperature (> 0), seed req[r].seed, sample id req[r].sample_id, position req[r].position,
 * top_k f[i].top_k, top_p f[i].top_p; out[r].x_token = x[r, token]. out[r].m must hold kern_cuda_vocab_rows' m of the
 * same x, req (read when top_p < 1); m, lse and digest are left alone. f (n) device, f_host the same n entries on the
 * host (checked here, and used to skip the top-p lse of groups that need none). The rows are done in passes of
 * G rows, G the largest with kern_cuda_sample_filter_workspace(G, V) <= workspace_bytes; no row's result depends on G,
 * n or the other rows. Asynchronous on stream, allocates nothing; the launch sequence depends on n and f_host. */
void kern_cuda_sample_filter(kern_row_out *out, const float *x, const kern_row_req *req, const kern_filter_req *f,
                             const kern_filter_req *f_host, int n, int V, void *workspace, size_t workspace_bytes,
                             cudaStream_t stream);

/* ---- The fp32 mode's reductions in the CPU reference's order (cpu_order.cu): bitwise equal to kernels/cpu.
 * kern_cuda_cpuo_norm: [x += y;] out = kern_cpu_rmsnorm(x) (b == NULL) or kern_cpu_layernorm(x) (b (D) f32); x, y,
 * out (M, D) f32, w (D) f32; out may be x when y is NULL. */
void kern_cuda_cpuo_norm(float *out, float *x, const float *y, const float *w, const float *b, int M, int D, float eps,
                         cudaStream_t stream);
/* kern_cpu_attention over the paged cache (arguments as kern_cuda_attn_small's); hd <= 512, any row mix. */
void kern_cuda_cpuo_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                              const int32_t *pages, const int32_t *pt_off, const int32_t *pos, int M, int n_heads,
                              int n_kv, int hd, int page_size, float scale, cudaStream_t stream);
/* Rewrites out[r].lse (out from kern_cuda_vocab_rows on the same x, req) as the CPU's row_lse:
 * kern_logf(8-lane sum of kern_expf(x_j / T - m)). x (R, V) f32. */
void kern_cuda_cpuo_lse(kern_row_out *out, const float *x, const kern_row_req *req, int R, int V, cudaStream_t stream);
/* The same lse for the rows rows[i] (i < n; rows[i] < 0: skipped) written to lse[i] (n) f32 instead: out[] is only
 * read (its m). rows (n) int32, device. The top-p filter's CPU-order lse (sample_filter.cu). */
void kern_cuda_cpuo_lse_rows(float *lse, const kern_row_out *out, const float *x, const kern_row_req *req,
                             const int32_t *rows, int n, int V, cudaStream_t stream);

/* ---- Fixed-order chunk sum (chunk_tree.cu), the device half of comm_nccl's chunk sum: out (n) f32 = sum of the
 * chunks of all (C, n) f32 (chunk c at all + c * n), for every element i: sum(lo, hi) = sum(lo, mid) +
 * sum(mid, hi), mid = lo + (hi - lo) / 2, sum(c, c + 1) = chunk c -- exactly the adds of kern_cpu_chunk_tree, each
 * one __fadd_rn (IEEE fp32, round to nearest, never contracted): bitwise equal to the CPU. C >= 1; out must not
 * overlap all. stream: a cudaStream_t, passed as void * so that the function is comm_nccl's tree callback
 * (comm_nccl_tree_fn) as it is. */
void kern_cuda_chunk_tree(float *out, const float *all, int C, size_t n, void *stream);

/* ---- Random-weights models (fill_random.cu, policy_weights_random): dst (N, Kp) of dtype dt (bf16 or f32), element
 * (n, k < K) = scale * (2 u - 1) with u = br_uniform01(Philox(seed, tensor id, n*K + k)), rounded to dt; columns
 * K..Kp-1 zero. */
void kern_cuda_fill_random(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, uint64_t seed, uint32_t id,
                           float scale, cudaStream_t stream);
/* The same for rows n0..n0+N-1 and columns k0..k0+K-1 of a random matrix of Kfull columns (a TP rank's slice:
 * the same bits as those elements of the whole matrix). */
void kern_cuda_fill_random_view(void *dst, kern_dtype dt, int64_t N, int64_t K, int64_t Kp, int64_t Kfull, int64_t n0,
                                int64_t k0, uint64_t seed, uint32_t id, float scale, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
