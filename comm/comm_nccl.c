/* comm_nccl: collectives on device buffers (see comm_nccl.h). NCCL when BITROLL_HAVE_NCCL, otherwise MPI through
 * host staging buffers. Only built into CUDA builds: without BR_HAVE_CUDA this file is empty. */
#include "comm/comm_nccl.h"

#ifdef BR_HAVE_CUDA

#include <cuda_runtime.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#ifdef BITROLL_HAVE_NCCL
#include <nccl.h>
#endif

#define HASH_PIECE ((size_t)64 << 20)    /* device -> host pieces of the fingerprint */
#define STAGE_PIECE ((size_t)256 << 20)  /* MPI fallback: host staging pieces (MPI counts are int) */

struct comm_nccl {
    const comm_world *w;
    int device;
    cudaStream_t stream;        /* the handle's own stream: weight broadcasts, fingerprints */
    float *gather;              /* chunk_sum: size * ceil(C / size) chunk slots */
    size_t gather_floats;
    float *packed;              /* chunk_sum: the C chunks in order, when C is not a multiple of the size */
    size_t packed_floats;
    void *pinned[2];            /* fingerprint pieces (double-buffered) */
    uint8_t *host;              /* MPI fallback staging */
    size_t host_bytes;
    int dead;                   /* communicators aborted after a failed collective */
    int staged;                 /* MPI through host buffers: no NCCL in this build, use_nccl = 0, or ranks that
                                 * share a GPU (share_gpus = 1: NCCL takes one rank per GPU) */
#ifdef BITROLL_HAVE_NCCL
    ncclComm_t world, tp;
#endif
};

/* ---- error statuses that name the call, the rank and the library's error string */

static br_status cuda_st(int rank, const char *what, cudaError_t e) {
    if (e == cudaSuccess) return BR_OK;
    return br_fail(BR_ERUNTIME, "%s failed on rank %d: %s (%s)", what, rank, cudaGetErrorString(e), cudaGetErrorName(e));
}
#define CUDA_ST(rank, call) cuda_st((rank), #call, (call))

#ifdef BITROLL_HAVE_NCCL
static br_status nccl_st(int rank, ncclComm_t comm, const char *what, ncclResult_t r) {
    if (r == ncclSuccess) return BR_OK;
    const char *last = ncclGetLastError(comm);
    const int has_last = last && *last;
    return br_fail(BR_ERUNTIME, "%s failed on rank %d: %s%s%s%s", what, rank, ncclGetErrorString(r),
                   has_last ? " (" : "", has_last ? last : "", has_last ? ")" : "");
}
#define NCCL_ST(rank, comm, call) nccl_st((rank), (comm), #call, (call))
#endif

/* ---- live communicators, for the abort path */

#define MAX_LIVE 16
static comm_nccl *g_live[MAX_LIVE];
static volatile int g_in_abort;

static void live_add(comm_nccl *c) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (!g_live[i]) {
            g_live[i] = c;
            return;
        }
    /* more than MAX_LIVE handles: this one is simply not aborted by comm_nccl_abort_all (MPI_Abort still ends it) */
}

static void live_remove(comm_nccl *c) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (g_live[i] == c) g_live[i] = NULL;
}

/* ncclCommAbort on the handle's communicators (local, never blocks on peers). */
static void abort_comms(comm_nccl *c) {
#ifdef BITROLL_HAVE_NCCL
    if (c->tp) ncclCommAbort(c->tp);
    if (c->world) ncclCommAbort(c->world);
    c->tp = c->world = NULL;
#endif
    c->dead = 1;
}

void comm_nccl_abort_all(void) {
    if (g_in_abort) return;
    g_in_abort = 1;
    for (int i = 0; i < MAX_LIVE; i++)
        if (g_live[i]) {
            abort_comms(g_live[i]);
            g_live[i] = NULL;
        }
    g_in_abort = 0;
}

const char *comm_nccl_handle_backend(const comm_nccl *c) {
    return c && c->staged ? "mpi-host-staging" : comm_nccl_backend();
}

const char *comm_nccl_backend(void) {
#ifdef BITROLL_HAVE_NCCL
    static char name[48];
    int v = 0;
    if (ncclGetVersion(&v) != ncclSuccess) return "nccl (version unknown)";
    snprintf(name, sizeof name, "nccl %d.%d.%d", v / 10000, v % 10000 / 100, v % 100);
    return name;
#else
    return "mpi-host-staging";
#endif
}

/* ---- scopes */

int comm_nccl_device(const comm_nccl *c) { return c->device; }
int comm_nccl_size(const comm_nccl *c, comm_nccl_scope scope) { return scope == COMM_NCCL_TP ? c->w->tp_size : c->w->size; }
int comm_nccl_rank(const comm_nccl *c, comm_nccl_scope scope) { return scope == COMM_NCCL_TP ? c->w->tp_rank : c->w->rank; }

static MPI_Comm scope_mpi(const comm_nccl *c, comm_nccl_scope scope) {
    if (scope == COMM_NCCL_WORLD) return MPI_COMM_WORLD;
    return c->w->tp_comm ? *(MPI_Comm *)c->w->tp_comm : MPI_COMM_SELF;
}

static br_status scope_agree(const comm_nccl *c, comm_nccl_scope scope, br_status st) {
    return scope == COMM_NCCL_WORLD ? comm_agree(c->w, st) : comm_tp_agree(c->w, st);
}

#ifdef BITROLL_HAVE_NCCL
static ncclComm_t scope_comm(const comm_nccl *c, comm_nccl_scope scope) {
    return scope == COMM_NCCL_TP ? c->tp : c->world;
}
#endif

/* Checks common to every collective: a live handle and a known scope. */
static br_status usable(const comm_nccl *c, comm_nccl_scope scope, const char *fn) {
    if (!c) return br_fail(BR_EINVAL, "%s: no comm_nccl handle", fn);
    if (scope != COMM_NCCL_WORLD && scope != COMM_NCCL_TP)
        return br_fail(BR_EINVAL, "%s on rank %d: unknown scope %d", fn, c->w->rank, (int)scope);
    if (c->dead)
        return br_fail(BR_ERUNTIME, "%s on rank %d: the communicators were aborted after an earlier failure", fn,
                       c->w->rank);
    return BR_OK;
}

void comm_nccl_chunk_range(const comm_nccl *c, comm_nccl_scope scope, int C, int *c0, int *c1) {
    const int p = comm_nccl_size(c, scope), r = comm_nccl_rank(c, scope);
    *c0 = (int)((int64_t)C * r / p);
    *c1 = (int)((int64_t)C * (r + 1) / p);
}

/* ---- setup and teardown */

static br_status bind_gpu(const comm_world *w, int share_gpus, int use_nccl, comm_nccl *c) {
    int g = 0;
    if (cudaGetDeviceCount(&g) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the sticky error; comm_gpu_for_rank names it */
        g = 0;
    }
    br_status st = comm_gpu_for_rank(w, g, share_gpus, &c->device);
    if (st != BR_OK) return st;
#ifdef BITROLL_HAVE_NCCL
    c->staged = share_gpus || !use_nccl;
#else
    (void)use_nccl;
    c->staged = 1;
#endif
    return CUDA_ST(w->rank, cudaSetDevice(c->device));
}

#ifdef BITROLL_HAVE_NCCL
/* The group's first rank creates the unique id, MPI_Bcast gives it to the group, every member joins. Every rank of
 * the world calls this at the same time (for the TP groups: each group its own id). Agreed over the world. */
static br_status create_comm(const comm_world *w, MPI_Comm group, int rank, int size, ncclComm_t *out,
                             const char *what) {
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    br_status st = BR_OK;
    if (rank == 0) st = NCCL_ST(w->rank, NULL, ncclGetUniqueId(&id));
    if ((st = comm_agree(w, st)) != BR_OK) return st;
    MPI_CHECK(w, MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, group));
    st = NCCL_ST(w->rank, NULL, ncclCommInitRank(out, size, id, rank));
    if (st != BR_OK) {
        *out = NULL;
        br_fail_ctx(st, "%s communicator (%d ranks)", what, size);
    }
    return comm_agree(w, st);
}
#endif

static void free_buffers(comm_nccl *c) {
    /* errors while freeing are not actionable; they are reported by the next call that touches the device */
    if (c->gather) cudaFree(c->gather);
    if (c->packed) cudaFree(c->packed);
    for (int i = 0; i < 2; i++)
        if (c->pinned[i]) cudaFreeHost(c->pinned[i]);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c->host);
    c->gather = c->packed = NULL;
    c->pinned[0] = c->pinned[1] = NULL;
    c->stream = NULL;
    c->host = NULL;
}

br_status comm_nccl_init(const comm_world *w, comm_nccl **out) { return comm_nccl_init_opts(w, 0, 1, out); }

br_status comm_nccl_init_opts(const comm_world *w, int share_gpus, int use_nccl, comm_nccl **out) {
    *out = NULL;
    comm_set_before_abort(comm_nccl_abort_all); /* a fatal error anywhere releases this process's communicators */
    comm_nccl *c = calloc(1, sizeof *c);
    br_status st = c ? BR_OK : br_fail(BR_ENOMEM, "comm_nccl_init on rank %d: out of memory", w->rank);
    if (st == BR_OK) {
        c->w = w;
        st = bind_gpu(w, share_gpus, use_nccl, c);
    }
    if (st == BR_OK) st = CUDA_ST(w->rank, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    st = comm_agree(w, st);
#ifdef BITROLL_HAVE_NCCL
    if (st == BR_OK && !c->staged) {
        /* NVLink SHARP (multicast objects) stays off on the machines this runs on; the environment may override */
        setenv("NCCL_NVLS_ENABLE", "0", 0);
        st = create_comm(w, MPI_COMM_WORLD, w->rank, w->size, &c->world, "world");
    }
    if (st == BR_OK && !c->staged && w->tp_size > 1) {
        if (!w->tp_comm) st = br_fail(BR_EINVAL, "comm_nccl_init on rank %d: tp_size %d without a TP communicator "
                                                 "(call comm_tp_split first)", w->rank, w->tp_size);
        st = comm_agree(w, st);
        if (st == BR_OK)
            st = create_comm(w, *(MPI_Comm *)w->tp_comm, w->tp_rank, w->tp_size, &c->tp, "tensor-parallel group");
    }
#endif
    if (st != BR_OK) {
        if (c) {
            abort_comms(c);
            free_buffers(c);
            free(c);
        }
        return st;
    }
    live_add(c);
    *out = c;
    return BR_OK;
}

#ifdef BITROLL_HAVE_NCCL
static br_status destroy_comm(int rank, ncclComm_t *cm) {
    if (!*cm) return BR_OK;
    br_status st = NCCL_ST(rank, *cm, ncclCommFinalize(*cm));
    if (st == BR_OK) st = NCCL_ST(rank, *cm, ncclCommDestroy(*cm));
    else ncclCommAbort(*cm);
    *cm = NULL;
    return st;
}
#endif

br_status comm_nccl_destroy(comm_nccl *c) {
    if (!c) return BR_OK;
    const int r = c->w->rank;
    br_status st = BR_OK;
    if (c->stream) st = CUDA_ST(r, cudaStreamSynchronize(c->stream));
#ifdef BITROLL_HAVE_NCCL
    br_status s2 = destroy_comm(r, &c->tp);
    if (st == BR_OK) st = s2;
    s2 = destroy_comm(r, &c->world);
    if (st == BR_OK) st = s2;
#endif
    live_remove(c);
    free_buffers(c);
    free(c);
    return st;
}

/* ---- waiting with a vote */

br_status comm_nccl_wait(comm_nccl *c, comm_nccl_scope scope, void *stream_, br_status st) {
    if (!c) return br_fail(BR_EINVAL, "comm_nccl_wait: no comm_nccl handle");
    cudaStream_t stream = (cudaStream_t)stream_;
    const comm_world *w = c->w;
    MPI_Comm mc = scope_mpi(c, scope);
    int me = 0;
    MPI_CHECK(w, MPI_Comm_rank(mc, &me));
    int mine = st == BR_OK ? INT_MAX : me, first = INT_MAX, voted = 0, done = st != BR_OK;
    MPI_Request req;
    MPI_CHECK(w, MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, mc, &req));
    while (!voted || (!done && first == INT_MAX)) {
        if (!voted) MPI_CHECK(w, MPI_Test(&req, &voted, MPI_STATUS_IGNORE));
        if (voted && first != INT_MAX) break; /* someone failed: stop waiting for kernels that wait for it */
        if (!done) {
            cudaError_t e = cudaStreamQuery(stream);
            br_status late = BR_OK;
            if (e == cudaSuccess) done = 1;
            else if (e != cudaErrorNotReady) late = cuda_st(w->rank, "cudaStreamQuery(stream) (waiting for collectives)", e);
#ifdef BITROLL_HAVE_NCCL
            ncclComm_t cms[2] = {c->world, c->tp};
            for (int i = 0; i < 2 && late == BR_OK; i++) {
                ncclResult_t ae = ncclSuccess;
                if (!cms[i]) continue;
                late = NCCL_ST(w->rank, cms[i], ncclCommGetAsyncError(cms[i], &ae));
                if (late == BR_OK && ae != ncclSuccess && ae != ncclInProgress)
                    late = nccl_st(w->rank, cms[i], "a collective (ncclCommGetAsyncError)", ae);
            }
#endif
            /* found after this rank voted "ok": peers may be blocked on it, only a job abort is safe */
            if (late != BR_OK) comm_abort(w, 3, "comm_nccl_wait", br_last_error());
        }
        if (!voted || !done) sched_yield();
    }
    if (first == INT_MAX) return BR_OK;
    abort_comms(c);
    return scope_agree(c, scope, st);
}

/* ---- buffers */

#ifdef BITROLL_HAVE_NCCL
static br_status ensure_dev(const comm_nccl *c, float **p, size_t *have, size_t want) {
    if (*have >= want) return BR_OK;
    if (*p) cudaFree(*p);
    *p = NULL;
    *have = 0;
    br_status st = CUDA_ST(c->w->rank, cudaMalloc((void **)p, want * sizeof(float)));
    if (st == BR_OK) *have = want;
    return st;
}
#endif

static br_status ensure_host(comm_nccl *c, size_t want) {
    if (c->host_bytes >= want) return BR_OK;
    uint8_t *h = realloc(c->host, want);
    if (!h) return br_fail(BR_ENOMEM, "rank %d: cannot allocate %zu bytes of host staging", c->w->rank, want);
    c->host = h;
    c->host_bytes = want;
    return BR_OK;
}

/* MPI fallback broadcast of a device buffer through host pieces; collective over mc, agreed over the scope. */
static br_status staged_bcast(comm_nccl *c, comm_nccl_scope scope, uint8_t *buf, size_t bytes, int root,
                              cudaStream_t stream) {
    const comm_world *w = c->w;
    MPI_Comm mc = scope_mpi(c, scope);
    const int me = comm_nccl_rank(c, scope);
    const size_t piece = bytes < STAGE_PIECE ? bytes : STAGE_PIECE;
    br_status st = ensure_host(c, piece);
    if (st == BR_OK) st = CUDA_ST(w->rank, cudaStreamSynchronize(stream));
    for (size_t off = 0; off < bytes; off += piece) {
        const size_t len = bytes - off < piece ? bytes - off : piece;
        if (st == BR_OK && me == root) st = CUDA_ST(w->rank, cudaMemcpy(c->host, buf + off, len, cudaMemcpyDeviceToHost));
        if ((st = scope_agree(c, scope, st)) != BR_OK) return st;
        MPI_CHECK(w, MPI_Bcast(c->host, (int)len, MPI_BYTE, root, mc));
        if (me != root) st = CUDA_ST(w->rank, cudaMemcpy(buf + off, c->host, len, cudaMemcpyHostToDevice));
    }
    return st;
}

/* ---- collectives */

br_status comm_nccl_chunk_sum(comm_nccl *c, comm_nccl_scope scope, const float *mine, int C, size_t n, float *out,
                              void *stream_, comm_nccl_tree_fn tree) {
    br_status st = usable(c, scope, "comm_nccl_chunk_sum");
    if (st != BR_OK) return st;
    cudaStream_t stream = (cudaStream_t)stream_;
    const int r = c->w->rank, p = comm_nccl_size(c, scope);
    if (C < 1) return br_fail(BR_EINVAL, "comm_nccl_chunk_sum on rank %d: C must be >= 1 (got %d)", r, C);
    if (!tree) return br_fail(BR_EINVAL, "comm_nccl_chunk_sum on rank %d: no device tree (kern_cuda_chunk_tree)", r);
    if (n == 0) return BR_OK;
    if (p == 1) { /* every chunk is here: the tree alone */
        tree(out, mine, C, n, stream); /* launch errors are fatal there (kern_cuda_chunk_tree: CUDA_CHECK_LAUNCH) */
        return BR_OK;
    }
    int c0, c1;
    comm_nccl_chunk_range(c, scope, C, &c0, &c1);
#ifdef BITROLL_HAVE_NCCL
    if (!c->staged) {
    const int q = comm_nccl_rank(c, scope), maxc = (C + p - 1) / p; /* chunk slots per rank: NCCL's all-gather moves equal counts */
    const size_t slot = (size_t)maxc * n;
    st = ensure_dev(c, &c->gather, &c->gather_floats, (size_t)p * slot);
    if (st == BR_OK && c1 > c0)
        st = CUDA_ST(r, cudaMemcpyAsync(c->gather + (size_t)q * slot, mine, (size_t)(c1 - c0) * n * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream));
    /* in place: this rank's slot is already at gather + q * slot */
    if (st == BR_OK)
        st = NCCL_ST(r, scope_comm(c, scope),
                     ncclAllGather(c->gather + (size_t)q * slot, c->gather, slot, ncclFloat, scope_comm(c, scope), stream));
    const float *all = c->gather;
    if (st == BR_OK && C % p) { /* pack: rank k's chunks [k0, k1) sit at the start of slot k */
        st = ensure_dev(c, &c->packed, &c->packed_floats, (size_t)C * n);
        for (int k = 0; st == BR_OK && k < p; k++) {
            const int k0 = (int)((int64_t)C * k / p), k1 = (int)((int64_t)C * (k + 1) / p);
            if (k1 > k0)
                st = CUDA_ST(r, cudaMemcpyAsync(c->packed + (size_t)k0 * n, c->gather + (size_t)k * slot,
                                                (size_t)(k1 - k0) * n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        }
        all = c->packed;
    }
    if (st == BR_OK) tree(out, all, C, n, stream);
    return st;
    }
#endif
    /* MPI fallback: the partials go to the host, comm_chunk_sum runs the same tree there, the sum comes back */
    float *h_mine = malloc(((size_t)(c1 - c0) * n + 1) * sizeof(float)), *h_out = malloc(n * sizeof(float));
    if (!h_mine || !h_out) st = br_fail(BR_ENOMEM, "comm_nccl_chunk_sum on rank %d: out of host memory", r);
    if (st == BR_OK) st = CUDA_ST(r, cudaStreamSynchronize(stream));
    if (st == BR_OK && c1 > c0)
        st = CUDA_ST(r, cudaMemcpy(h_mine, mine, (size_t)(c1 - c0) * n * sizeof(float), cudaMemcpyDeviceToHost));
    st = scope_agree(c, scope, st);
    if (st == BR_OK)
        st = scope == COMM_NCCL_WORLD ? comm_chunk_sum(c->w, h_mine, C, n, h_out)
                                      : comm_tp_chunk_sum((void *)c->w, h_mine, C, n, h_out);
    if (st == BR_OK) st = CUDA_ST(r, cudaMemcpy(out, h_out, n * sizeof(float), cudaMemcpyHostToDevice));
    free(h_mine);
    free(h_out);
    return st;
}

br_status comm_nccl_allgather(comm_nccl *c, comm_nccl_scope scope, const void *send, size_t bytes, void *recv,
                              void *stream_) {
    br_status st = usable(c, scope, "comm_nccl_allgather");
    if (st != BR_OK || bytes == 0) return st;
    cudaStream_t stream = (cudaStream_t)stream_;
    const int r = c->w->rank, p = comm_nccl_size(c, scope), q = comm_nccl_rank(c, scope);
    uint8_t *dst = (uint8_t *)recv + (size_t)q * bytes;
    if (p == 1) return dst == send ? BR_OK : CUDA_ST(r, cudaMemcpyAsync(dst, send, bytes, cudaMemcpyDeviceToDevice, stream));
#ifdef BITROLL_HAVE_NCCL
    if (!c->staged)
        return NCCL_ST(r, scope_comm(c, scope), ncclAllGather(send, recv, bytes, ncclUint8, scope_comm(c, scope), stream));
#endif
    /* MPI fallback: one staged broadcast per rank into its own slot (counts stay below INT_MAX per message) */
    if (dst != send) st = CUDA_ST(r, cudaMemcpyAsync(dst, send, bytes, cudaMemcpyDeviceToDevice, stream));
    for (int k = 0; k < p; k++) {
        br_status s2 = staged_bcast(c, scope, (uint8_t *)recv + (size_t)k * bytes, bytes, k, stream);
        if (st == BR_OK) st = s2;
    }
    return st;
}

br_status comm_nccl_bcast(comm_nccl *c, comm_nccl_scope scope, void *buf, size_t bytes, int root, void *stream_) {
    br_status st = usable(c, scope, "comm_nccl_bcast");
    if (st != BR_OK) return st;
    cudaStream_t stream = (cudaStream_t)stream_;
    const int r = c->w->rank, p = comm_nccl_size(c, scope);
    if (root < 0 || root >= p)
        return br_fail(BR_EINVAL, "comm_nccl_bcast on rank %d: root %d is not a rank of the %d-rank %s", r, root, p,
                       scope == COMM_NCCL_TP ? "tensor-parallel group" : "world");
    if (p == 1 || bytes == 0) return BR_OK;
#ifdef BITROLL_HAVE_NCCL
    if (!c->staged)
        return NCCL_ST(r, scope_comm(c, scope), ncclBroadcast(buf, buf, bytes, ncclUint8, root, scope_comm(c, scope), stream));
#endif
    return staged_bcast(c, scope, buf, bytes, root, stream);
}

/* ---- weights: broadcast in chunks, then the fingerprint check */

br_status comm_nccl_fingerprint(comm_nccl *c, const void *buf, size_t bytes, uint64_t *fp) {
    if (!c) return br_fail(BR_EINVAL, "comm_nccl_fingerprint: no comm_nccl handle");
    const int r = c->w->rank;
    /* the buffer may have been written on any stream: let all of it land first */
    br_status st = CUDA_ST(r, cudaDeviceSynchronize());
    for (int i = 0; i < 2 && st == BR_OK; i++)
        if (!c->pinned[i]) st = CUDA_ST(r, cudaMallocHost(&c->pinned[i], HASH_PIECE));
    cudaEvent_t ev[2] = {NULL, NULL};
    for (int i = 0; i < 2 && st == BR_OK; i++) st = CUDA_ST(r, cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming));
    XXH3_state_t *h = st == BR_OK ? XXH3_createState() : NULL;
    if (st == BR_OK && !h) st = br_fail(BR_ENOMEM, "fingerprint on rank %d: out of memory", r);
    if (st == BR_OK) XXH3_64bits_reset_withSeed(h, 0);
    const uint8_t *src = buf;
    const size_t n_pieces = (bytes + HASH_PIECE - 1) / HASH_PIECE;
    /* piece k goes to pinned[k % 2]; the copy of piece k + 1 runs while piece k is hashed */
    for (size_t k = 0; st == BR_OK && k < n_pieces + 1; k++) {
        if (k < n_pieces) {
            const size_t off = k * HASH_PIECE, len = bytes - off < HASH_PIECE ? bytes - off : HASH_PIECE;
            st = CUDA_ST(r, cudaMemcpyAsync(c->pinned[k % 2], src + off, len, cudaMemcpyDeviceToHost, c->stream));
            if (st == BR_OK) st = CUDA_ST(r, cudaEventRecord(ev[k % 2], c->stream));
        }
        if (st == BR_OK && k > 0) {
            const size_t j = k - 1, off = j * HASH_PIECE, len = bytes - off < HASH_PIECE ? bytes - off : HASH_PIECE;
            st = CUDA_ST(r, cudaEventSynchronize(ev[j % 2]));
            if (st == BR_OK) XXH3_64bits_update(h, c->pinned[j % 2], len);
        }
    }
    if (st == BR_OK) *fp = XXH3_64bits_digest(h);
    if (h) XXH3_freeState(h);
    for (int i = 0; i < 2; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    return st;
}

br_status comm_nccl_check_fingerprint(comm_nccl *c, const void *buf, size_t bytes, int root, const uint64_t *expect,
                                      uint64_t *fp, double *seconds) {
    if (!c) return br_fail(BR_EINVAL, "comm_nccl_check_fingerprint: no comm_nccl handle");
    const comm_world *w = c->w;
    br_status st = root >= 0 && root < w->size
                       ? BR_OK
                       : br_fail(BR_EINVAL, "fingerprint check on rank %d: root %d is not a rank (world of %d)", w->rank,
                                 root, w->size);
    if ((st = comm_agree(w, st)) != BR_OK) return st;
    const double t0 = MPI_Wtime();
    uint64_t mine = 0;
    st = comm_agree(w, comm_nccl_fingerprint(c, buf, bytes, &mine));
    double dt = MPI_Wtime() - t0, dt_max = dt;
    MPI_CHECK(w, MPI_Allreduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    if (seconds) *seconds = dt_max;
    if (fp) *fp = mine;
    if (st != BR_OK) return st;
    uint64_t *all = malloc((size_t)w->size * sizeof *all);
    if (!all) comm_abort(w, 3, "comm_nccl_check_fingerprint", "out of memory");
    MPI_CHECK(w, MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD));
    const uint64_t want = expect ? *expect : all[root];
    int n_bad = 0;
    char list[256] = "";
    size_t used = 0;
    for (int k = 0; k < w->size; k++)
        if (all[k] != want) {
            n_bad++;
            if (used + 16 < sizeof list) used += (size_t)snprintf(list + used, sizeof list - used, " %d", k);
            else if (used + 5 < sizeof list) used += (size_t)snprintf(list + used, sizeof list - used, " ...");
        }
    if (mine != want) {
        if (expect)
            st = br_fail(BR_ERUNTIME, "weights fingerprint: rank %d holds %016llx, expected %016llx; %d of %d ranks "
                                      "differ:%s", w->rank, (unsigned long long)mine, (unsigned long long)want, n_bad,
                         w->size, list);
        else
            st = br_fail(BR_ERUNTIME, "weights fingerprint: rank %d holds %016llx, rank %d (the root) %016llx; %d of "
                                      "%d ranks differ:%s", w->rank, (unsigned long long)mine, root,
                         (unsigned long long)want, n_bad, w->size, list);
    }
    free(all);
    return comm_agree(w, st);
}

br_status comm_nccl_bcast_weights(comm_nccl *c, void *buf, size_t bytes, int root, size_t chunk_bytes,
                                  comm_nccl_bcast_stats *stats) {
    if (!c) return br_fail(BR_EINVAL, "comm_nccl_bcast_weights: no comm_nccl handle");
    const comm_world *w = c->w;
    if (chunk_bytes == 0) chunk_bytes = COMM_NCCL_BCAST_CHUNK;
    if (stats) memset(stats, 0, sizeof *stats);
    br_status st = usable(c, COMM_NCCL_WORLD, "comm_nccl_bcast_weights");
    if (st == BR_OK && (root < 0 || root >= w->size))
        st = br_fail(BR_EINVAL, "comm_nccl_bcast_weights on rank %d: root %d is not a rank (world of %d)", w->rank,
                     root, w->size);
    if (st == BR_OK) st = CUDA_ST(w->rank, cudaDeviceSynchronize()); /* the buffer was filled on some stream */
    if ((st = comm_agree(w, st)) != BR_OK) return st;
    uint8_t *p = buf;
    int n_chunks = 0;
    MPI_CHECK(w, MPI_Barrier(MPI_COMM_WORLD));
    const double t0 = MPI_Wtime();
    for (size_t off = 0; st == BR_OK && off < bytes; off += chunk_bytes, n_chunks++) {
        const size_t len = bytes - off < chunk_bytes ? bytes - off : chunk_bytes;
        if (w->size == 1) continue;
#ifdef BITROLL_HAVE_NCCL
        if (!c->staged) {
            st = NCCL_ST(w->rank, c->world, ncclBroadcast(p + off, p + off, len, ncclUint8, root, c->world, c->stream));
            continue;
        }
#endif
        st = staged_bcast(c, COMM_NCCL_WORLD, p + off, len, root, c->stream);
    }
    if ((st = comm_nccl_wait(c, COMM_NCCL_WORLD, c->stream, st)) != BR_OK) return st;
    double dt = MPI_Wtime() - t0, dt_max = dt;
    MPI_CHECK(w, MPI_Allreduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    uint64_t fp = 0;
    double hs = 0;
    st = comm_nccl_check_fingerprint(c, buf, bytes, root, NULL, &fp, &hs);
    if (stats) {
        stats->seconds = dt_max;
        stats->gbps = dt_max > 0 ? (double)bytes / dt_max / 1e9 : 0.0;
        stats->hash_seconds = hs;
        stats->fingerprint = fp;
        stats->n_chunks = n_chunks;
    }
    return st;
}

#endif /* BR_HAVE_CUDA */
