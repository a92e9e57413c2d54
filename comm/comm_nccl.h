/* comm_nccl: collectives on DEVICE buffers between the GPUs of an MPI job (one rank per GPU), for tensor
 * parallelism on the GPU (DESIGN 7) and for trainers that broadcast weights. Plain C; exists only in builds with
 * the CUDA backend (BR_HAVE_CUDA).
 *
 * Backend: NCCL when the build found it (BITROLL_HAVE_NCCL: communicators from an ncclUniqueId that the group's
 * first rank creates and MPI_Bcast's), otherwise the same functions move the bytes through MPI on host staging
 * buffers (correct and bit-identical, slower). comm_nccl_backend() says which.
 *
 * Determinism: nothing here lets a library reduce values. comm_nccl_chunk_sum all-gathers chunk partials and adds
 * them with one fixed pairwise tree, the caller's device kernel (kern_cuda_chunk_tree, kernels/cuda/chunk_tree.cu:
 * the order of kern_cpu_chunk_tree), so its bits do not depend on the rank count or on NCCL's algorithm or protocol
 * choice; the other calls only copy bytes. comm/ includes nothing of kernels/: the kernel comes as a callback.
 *
 * Errors: every NCCL / CUDA runtime call is checked; a failure returns BR_ERUNTIME with a message naming the call,
 * the rank and NCCL's (or CUDA's) error string. comm_nccl_init, comm_nccl_bcast_weights and
 * comm_nccl_check_fingerprint agree on the outcome across MPI_COMM_WORLD (comm_agree: every rank returns the status
 * and message of the lowest failing rank). The per-step collectives (chunk_sum, allgather, bcast) return the local
 * status of what they enqueued, so as not to add an MPI round trip to every call; callers agree at their own sync
 * points with comm_nccl_wait. A rank that failed to enqueue leaves its peers' NCCL kernels waiting for it, so when
 * the vote of comm_nccl_wait says a rank failed, every rank aborts the handle's communicators (ncclCommAbort, which
 * releases those kernels) before agreeing on the message: the handle is then dead (comm_nccl_destroy frees it).
 * A failure found only while waiting (an asynchronous NCCL error, a CUDA fault) cannot be voted on any more while
 * peers may be blocked on it: that rank calls comm_abort (message naming it; ncclCommAbort of every live
 * communicator, then MPI_Abort). comm_abort and comm_abort_job (the CUDA abort hook the driver installs) abort live
 * communicators too.
 *
 * Streams: a `void *stream` is a cudaStream_t (comm/ needs no CUDA header in its interface). The collectives are
 * enqueued on the caller's stream (NULL = the legacy default stream) and return
 * before they complete (the MPI fallback synchronizes). One comm_nccl's workspace is reused by every chunk_sum:
 * issue them on one stream, or synchronize between streams. */
#ifndef COMM_NCCL_H
#define COMM_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"

typedef struct comm_nccl comm_nccl; /* opaque */

/* Which ranks a collective spans: every rank, or this rank's tensor-parallel group (comm_tp_split). */
typedef enum { COMM_NCCL_WORLD = 0, COMM_NCCL_TP = 1 } comm_nccl_scope;

/* Collective over MPI_COMM_WORLD; call after comm_tp_split when tensor parallelism is wanted. Binds this rank to
 * its GPU by comm_gpu_for_rank (the rule of --device cuda: more ranks on a node than visible GPUs fails with "rank R
 * on node HOST: local rank L but only G GPUs visible") unless share_gpus (tuning.share_gpus: rank r takes GPU r mod
 * G, and the collectives go through MPI host buffers, since NCCL takes one rank per GPU). use_nccl = 0
 * (tuning.nccl): MPI through host buffers even where NCCL could run. Sets NCCL_NVLS_ENABLE=0 unless the environment
 * sets it. Creates the world communicator and, when w->tp_size > 1, the TP group's. The abort hook is the caller's
 * (kern_cuda_set_abort_hook(comm_abort_job)). `w` must outlive the handle. Agreed across ranks. */
br_status comm_nccl_init_opts(const comm_world *w, int share_gpus, int use_nccl, comm_nccl **out);
/* comm_nccl_init_opts(w, 0, 1, out): one rank per GPU, NCCL where the build has it. */
br_status comm_nccl_init(const comm_world *w, comm_nccl **out);
/* Collective: waits for the handle's work, destroys the communicators (ncclCommFinalize + ncclCommDestroy; falls
 * back to ncclCommAbort on an error), frees buffers. NULL is a no-op. Returns the local status. */
br_status comm_nccl_destroy(comm_nccl *c);
/* ncclCommAbort on every live communicator of this process (once; later calls do nothing). Called by comm_abort
 * and by the CUDA abort hook before MPI_Abort; safe with none alive. */
void comm_nccl_abort_all(void);
/* "nccl 2.28.9" (the library's version at run time) or "mpi-host-staging" (a build without NCCL). */
const char *comm_nccl_backend(void);
/* What a handle uses: comm_nccl_backend(), or "mpi-host-staging" where comm_nccl_init_opts was asked for it:
 * use_nccl = 0, or share_gpus = 1 (ranks share GPUs, which NCCL refuses; rank r takes GPU r mod n). */
const char *comm_nccl_handle_backend(const comm_nccl *c);
/* The GPU this rank bound, and the size / rank of a scope (TP scope without tensor parallelism: 1 / 0). */
int comm_nccl_device(const comm_nccl *c);
int comm_nccl_size(const comm_nccl *c, comm_nccl_scope scope);
int comm_nccl_rank(const comm_nccl *c, comm_nccl_scope scope);
/* Collective over `scope`: each rank passes the status of what it enqueued on `stream`; the ranks vote
 * (MPI_Iallreduce) while each waits for its stream (polling cudaStreamQuery and ncclCommGetAsyncError). All ok:
 * returns BR_OK once this rank's stream is done. A rank failed: every rank of the scope aborts the handle's
 * communicators and returns the failing rank's status and message (comm_tp_agree / comm_agree). */
br_status comm_nccl_wait(comm_nccl *c, comm_nccl_scope scope, void *stream, br_status st);

/* ---- fixed-order sums (the device twin of comm_chunk_sum, same contract). */
/* The chunks [c0, c1) of C that this rank holds within `scope`: C * r / size .. C * (r + 1) / size. */
void comm_nccl_chunk_range(const comm_nccl *c, comm_nccl_scope scope, int C, int *c0, int *c1);
/* The device tree: out (n) f32 = the pairwise tree over the C chunks of all (C, n) f32, enqueued on stream (a
 * cudaStream_t). kern_cuda_chunk_tree (kernels/cuda) is one; comm/ only calls it. */
typedef void (*comm_nccl_tree_fn)(float *out, const float *all, int C, size_t n, void *stream);
/* mine (c1 - c0, n) f32 device -> out (n) f32 device on every rank of the scope: sum over c = 0..C-1 of chunk c,
 * pairwise tree sum(lo, hi) = sum(lo, mid) + sum(mid, hi), mid = lo + (hi - lo) / 2, each add one IEEE fp32
 * rounding, by `tree` (kern_cuda_chunk_tree: bitwise equal to kern_cpu_chunk_tree / comm_chunk_sum for any rank
 * count). NCCL path: ncclAllGather of ceil(C / size) chunk slots per rank (in place), a device copy that packs the
 * chunks when C is not a multiple of the size, then the tree. The MPI fallback sums on the host (comm_chunk_sum) and
 * does not call `tree`. C >= 1; a rank may hold no chunk (C < size). */
br_status comm_nccl_chunk_sum(comm_nccl *c, comm_nccl_scope scope, const float *mine, int C, size_t n, float *out,
                              void *stream, comm_nccl_tree_fn tree);
/* recv (size * bytes) device = every rank's send (bytes) in rank order. */
br_status comm_nccl_allgather(comm_nccl *c, comm_nccl_scope scope, const void *send, size_t bytes, void *recv,
                              void *stream);
/* buf (bytes) device: root's bytes reach every rank of the scope (root = rank within the scope). */
br_status comm_nccl_bcast(comm_nccl *c, comm_nccl_scope scope, void *buf, size_t bytes, int root, void *stream);

/* ---- weight broadcast for trainers, with a fingerprint check. */
typedef struct {
    double seconds;      /* broadcast only: from a barrier to the last rank's completion (max over ranks) */
    double gbps;         /* bytes / seconds / 1e9 (what nccl-tests calls algbw; for a broadcast busbw is the same) */
    double hash_seconds; /* the fingerprint check (device -> host copies + xxh3), max over ranks */
    uint64_t fingerprint;/* xxh3-64 (seed 0) of the bytes: br_hash64(bytes, n, 0) of a host copy */
    int n_chunks;
} comm_nccl_bcast_stats;
#define COMM_NCCL_BCAST_CHUNK ((size_t)256 << 20) /* default chunk: 256 MiB */
/* Collective over every rank: root's buf (bytes, device) reaches every rank in chunks of chunk_bytes (0 = the
 * default) on the handle's own stream, then comm_nccl_check_fingerprint. stats may be NULL. Agreed. */
br_status comm_nccl_bcast_weights(comm_nccl *c, void *buf, size_t bytes, int root, size_t chunk_bytes,
                                  comm_nccl_bcast_stats *stats);
/* xxh3-64 (seed 0) of a device buffer, copied back in pieces through pinned memory; equal to br_hash64 of the same
 * bytes on the host. Local. */
br_status comm_nccl_fingerprint(comm_nccl *c, const void *buf, size_t bytes, uint64_t *fp);
/* Collective over every rank: each rank hashes its buf; every rank's value must equal `expect` (when not NULL:
 * e.g. the hash of the file the root read) or else the root's. A rank that differs fails with "weights
 * fingerprint: rank R holds X, rank ROOT (the root) Y; K of N ranks differ: r1 r2 ..." (agreed: the lowest
 * differing rank speaks). fp (may be NULL) receives this rank's value, seconds (may be NULL) the time the check
 * took (max over ranks). */
br_status comm_nccl_check_fingerprint(comm_nccl *c, const void *buf, size_t bytes, int root, const uint64_t *expect,
                                      uint64_t *fp, double *seconds);

#endif
