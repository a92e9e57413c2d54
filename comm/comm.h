/* comm: the MPI side of bitroll -- bootstrap, fatal aborts that name the rank, deterministic work
 * distribution, and moving byte buffers between rank 0 and the others. */
#ifndef COMM_H
#define COMM_H

#include <stddef.h>
#include <stdint.h>

#include "common/br.h"

typedef struct {
    int rank, size;
    int local_rank, local_size; /* among the ranks on this node (MPI_Comm_split_type SHARED): one GPU each */
    /* tensor-parallel groups (comm_tp_split): consecutive ranks; each group serves its own share of the jobs */
    int tp_size, tp_rank;       /* 1, 0 without tensor parallelism */
    int group, n_groups;        /* data-parallel group of this rank, and how many there are */
    void *tp_comm;              /* the group's MPI communicator (NULL without tensor parallelism) */
    int owns_mpi; /* MPI_Init was ours: comm_finalize calls MPI_Finalize */
} comm_world;

/* MPI_Init_thread asks for MPI_THREAD_MULTIPLE: the rank watchdog (comm_watch_start) calls MPI from its own thread. */
br_status comm_init(int *argc, char ***argv, comm_world *w);
/* Stops the watchdog (comm_watch_stop), then MPI_Finalize when MPI_Init was ours. */
void comm_finalize(comm_world *w);

/* ---- No silent hang (docs/RELIABILITY.md): the rank watchdog. Each rank runs a thread that sends a heartbeat to
 * rank - 1 every min(timeout / 5, 1 s) and expects one from rank + 1 (a ring over a duplicate of MPI_COMM_WORLD);
 * a rank that has not heard from rank + 1 for timeout_s seconds -- stopped (SIGSTOP, a debugger), dead, its node
 * gone -- prints "[rank r] rank r+1 did not answer for T s during VERB: rank r+1 last reported ...; rank r is ..."
 * and calls MPI_Abort(MPI_COMM_WORLD, 3), so every rank exits instead of waiting forever in a collective. A busy
 * rank keeps answering: the thread does not depend on what the main thread does.
 * Collective over MPI_COMM_WORLD (every rank passes the same timeout). timeout_s <= 0, one rank, or an MPI without
 * MPI_THREAD_MULTIPLE (rank 0 prints a warning): no watchdog. Started once per process; later calls do nothing. */
br_status comm_watch_start(const comm_world *w, int timeout_s, const char *verb);
/* Says goodbye to the watcher and waits for the watched rank's goodbye (still under its deadline); comm_finalize
 * calls it. No-op when not started. */
void comm_watch_stop(void);
/* What the main thread is doing, carried by each heartbeat and printed in the report: the collectives of comm/
 * call these with their own name and their caller's (string literals). */
void comm_watch_enter(const char *what, const char *caller);
void comm_watch_leave(void);
/* The heartbeat period for a timeout: min(timeout / 5, 1 s). */
double comm_watch_period(double timeout_s);

/* Aborts the whole job after a fatal error found below comm/ (a CUDA failure on one rank must stop every rank): the
 * NCCL communicators of this process are aborted first (comm_nccl_abort_all: peers blocked in a collective are
 * released), then MPI_Abort(MPI_COMM_WORLD, 3). Whoever binds the device installs it as the kernels' abort hook:
 * kern_cuda_set_abort_hook(comm_abort_job). */
void comm_abort_job(void);
/* fn runs before MPI_Abort in comm_abort_job and comm_abort (comm_nccl registers comm_nccl_abort_all). */
void comm_set_before_abort(void (*fn)(void));

/* The rank -> GPU rule of --device cuda: rank r takes GPU local_rank (its rank among the ranks of its node); more
 * ranks on a node than n_visible GPUs is an error naming the rank, its node and the counts ("rank R on node HOST:
 * local rank L but only G GPUs visible ...") for the ranks without a GPU, unless share_gpus (tuning.share_gpus, for
 * tests): then rank r takes GPU local_rank mod G. n_visible == 0: an error too. Local (no MPI collective): the
 * caller agrees on the outcome. *gpu = -1 on error. */
br_status comm_gpu_for_rank(const comm_world *w, int n_visible, int share_gpus, int *gpu);

/* Fatal: prints "[rank r] where: message" to stderr and aborts the whole job with `code`. */
_Noreturn void comm_abort(const comm_world *w, int code, const char *where, const char *msg);

/* MPI failures are fatal (STYLE rule 8). */
#define MPI_CHECK(w, call)                                                                          \
    do {                                                                                            \
        int mpi_check_rc_ = (call);                                                                 \
        if (mpi_check_rc_ != 0) comm_mpi_fail((w), __FILE__, __LINE__, #call, mpi_check_rc_);       \
    } while (0)
_Noreturn void comm_mpi_fail(const comm_world *w, const char *file, int line, const char *what, int rc);

/* Collective: every rank passes its status; returns BR_OK on all ranks when all are ok, otherwise the status
 * and message of the lowest failing rank ("[rank r] ...") on all ranks, so the job stops together. */
br_status comm_agree_in(const comm_world *w, br_status st, const char *caller);
#define comm_agree(w, st) comm_agree_in((w), (st), __func__) /* the caller's name goes into the watchdog's report */
/* The same within this rank's tensor-parallel group (collective over the group only; alone without tensor
 * parallelism); the message names the failing rank by its world rank. */
br_status comm_tp_agree_in(const comm_world *w, br_status st, const char *caller);
#define comm_tp_agree(w, st) comm_tp_agree_in((w), (st), __func__)

/* "MPI 3.1; Open MPI v4.1.4, ..." (callable before MPI_Init): recorded in every file's provenance. */
void comm_mpi_version(char *buf, size_t cap);

/* Rank 0's value reaches every rank. */
void comm_bcast_u64_in(const comm_world *w, uint64_t *v, const char *caller);
void comm_bcast_int_in(const comm_world *w, int *v, const char *caller);
#define comm_bcast_u64(w, v) comm_bcast_u64_in((w), (v), __func__)
#define comm_bcast_int(w, v) comm_bcast_int_in((w), (v), __func__)

/* Rank 0's buffer reaches every rank (buf and len replaced on the others; caller frees). */
br_status comm_bcast_bytes_in(const comm_world *w, void **buf, size_t *len, const char *caller);
#define comm_bcast_bytes(w, buf, len) comm_bcast_bytes_in((w), (buf), (len), __func__)
/* The same, for a broadcast that may come much later (a worker waiting for its next request): ranks other than 0
 * wait with short sleeps instead of MPI's busy poll, so idle workers leave the cores to a trainer. */
br_status comm_bcast_bytes_idle_in(const comm_world *w, void **buf, size_t *len, const char *caller);
#define comm_bcast_bytes_idle(w, buf, len) comm_bcast_bytes_idle_in((w), (buf), (len), __func__)
/* Concatenates every rank's buffer on rank 0 in rank order (out and out_len owned by the caller on rank 0;
 * NULL elsewhere). */
br_status comm_gather_bytes_in(const comm_world *w, const void *buf, size_t len, void **out, size_t *out_len,
                               const char *caller);
#define comm_gather_bytes(w, buf, len, out, out_len) comm_gather_bytes_in((w), (buf), (len), (out), (out_len), __func__)

/* ---- Fixed-order sums (DESIGN 7): a sum that gives the same bits whatever the number of ranks.
 * The summands are C chunk partials (C fixed by the caller, independent of the rank count), each a vector of n
 * floats. Rank r holds chunks [c0, c1) of comm_chunk_range. comm_chunk_sum all-gathers every chunk (never a
 * library reduction, whose order depends on size and algorithm) and sums them on every rank with one fixed
 * pairwise tree over c = 0..C-1: sum(lo, hi) = sum(lo, mid) + sum(mid, hi), mid = lo + (hi - lo) / 2. */
void comm_chunk_range(const comm_world *w, int C, int *c0, int *c1);
/* mine (c1 - c0, n) f32 -> out (n) f32 on every rank. Needs C >= 1; ranks may hold no chunk when C < size. */
br_status comm_chunk_sum(const comm_world *w, const float *mine, int C, size_t n, float *out);
/* The same tree on one process over all C chunks (C, n): what comm_chunk_sum computes, for tests and TP = 1. */
void comm_chunk_tree(const float *all, int C, size_t n, float *out);

/* Splits the ranks into groups of tp consecutive ranks (tensor parallelism); BR_EINVAL unless tp divides the
 * rank count. Collective. */
br_status comm_tp_split(comm_world *w, int tp);
/* comm_chunk_sum within this rank's tensor-parallel group (the policy_tp.chunk_sum of policy/forward.h;
 * ctx is the comm_world). */
br_status comm_tp_chunk_sum(void *ctx, const float *mine, int C, size_t n, float *out);

/* Jobs [0, n) are dealt round-robin over the data-parallel groups (a group = one rank without tensor parallelism):
 * job i belongs to group i % n_groups. Which group runs a job never changes its numbers; results are reordered by
 * sample id before anything is written. */
static inline int comm_owner(const comm_world *w, int64_t job) { return (int)(job % w->n_groups); }

/* ---- growable byte buffer for packing messages (little-endian host layout, same binary on every rank). */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    size_t rd;     /* read cursor */
    int failed;    /* a write could not grow / a read ran past the end */
} comm_buf;

void comm_buf_put(comm_buf *b, const void *p, size_t n);
int comm_buf_get(comm_buf *b, void *p, size_t n); /* 0 ok, -1 past the end (sets failed) */
void comm_buf_free(comm_buf *b);

#endif
