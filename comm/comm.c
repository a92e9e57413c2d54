/* comm: MPI bootstrap, fatal aborts naming the rank, byte broadcast/gather (see comm.h). */
#include "comm/comm.h"
#include "common/chunk_tree.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

br_status comm_init(int *argc, char ***argv, comm_world *w) {
    int inited = 0;
    memset(w, 0, sizeof *w);
    MPI_Initialized(&inited);
    if (!inited) {
        /* MPI_THREAD_MULTIPLE for the watchdog thread (comm_watch_start checks what was provided) */
        int provided = MPI_THREAD_SINGLE;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
            return br_fail(BR_ERUNTIME, "MPI_Init_thread failed");
        w->owns_mpi = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return br_fail(BR_ERUNTIME, "MPI_Comm_split_type failed");
    MPI_Comm_rank(node, &w->local_rank);
    MPI_Comm_size(node, &w->local_size);
    MPI_Comm_free(&node);
    w->tp_size = 1;
    w->tp_rank = 0;
    w->group = w->rank;
    w->n_groups = w->size;
    return BR_OK;
}

void comm_finalize(comm_world *w) {
    comm_watch_stop();
    if (w && w->tp_comm) {
        MPI_Comm_free((MPI_Comm *)w->tp_comm);
        free(w->tp_comm);
        w->tp_comm = NULL;
    }
    if (w && w->owns_mpi) {
        MPI_Finalize();
        w->owns_mpi = 0;
    }
}

/* What runs before MPI_Abort: comm_nccl registers comm_nccl_abort_all when it creates communicators, so NCCL kernels
 * waiting for peers are released before the job goes down (CPU builds have none). */
static void (*g_before_abort)(void);
void comm_set_before_abort(void (*fn)(void)) { g_before_abort = fn; }

void comm_abort_job(void) {
    if (g_before_abort) g_before_abort();
    MPI_Abort(MPI_COMM_WORLD, 3);
}

br_status comm_gpu_for_rank(const comm_world *w, int n_visible, int share_gpus, int *gpu) {
    *gpu = -1;
    char host[MPI_MAX_PROCESSOR_NAME + 1] = "?";
    int len = 0;
    if (MPI_Get_processor_name(host, &len) != MPI_SUCCESS) snprintf(host, sizeof host, "?");
    if (n_visible <= 0) return br_fail(BR_EINVAL, "rank %d on node %s: no CUDA device is visible", w->rank, host);
    if (w->local_rank >= n_visible && !share_gpus)
        return br_fail(BR_EINVAL, "rank %d on node %s: local rank %d but only %d GPU%s visible (one rank per GPU: "
                                  "start at most %d ranks on this node; BITROLL_SHARE_GPUS=1 lets ranks share GPUs, "
                                  "for tests)",
                       w->rank, host, w->local_rank, n_visible, n_visible == 1 ? "" : "s", n_visible);
    *gpu = w->local_rank % n_visible;
    return BR_OK;
}

_Noreturn void comm_abort(const comm_world *w, int code, const char *where, const char *msg) {
    fprintf(stderr, "[rank %d] %s: %s\n", w ? w->rank : -1, where, msg);
    fflush(stderr);
    if (g_before_abort) g_before_abort();
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* not reached */
}

_Noreturn void comm_mpi_fail(const comm_world *w, const char *file, int line, const char *what, int rc) {
    char err[MPI_MAX_ERROR_STRING] = "";
    int n = 0;
    MPI_Error_string(rc, err, &n);
    char where[512];
    snprintf(where, sizeof where, "%s:%d: %s", file, line, what);
    comm_abort(w, 3, where, err);
}

/* comm_agree over any communicator; the message names the failing rank by its MPI_COMM_WORLD rank. */
static br_status agree_on(const comm_world *w, MPI_Comm comm, br_status st) {
    /* the lowest failing rank speaks for the job */
    int me = 0, size = 1;
    MPI_CHECK(w, MPI_Comm_rank(comm, &me));
    MPI_CHECK(w, MPI_Comm_size(comm, &size));
    int mine = st == BR_OK ? INT_MAX : me, first = INT_MAX;
    MPI_CHECK(w, MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
    if (first == INT_MAX) return BR_OK;
    int code_rank[2] = {(int)st, w->rank};
    char msg[1024];
    if (me == first) snprintf(msg, sizeof msg, "%s", br_last_error());
    MPI_CHECK(w, MPI_Bcast(code_rank, 2, MPI_INT, first, comm));
    MPI_CHECK(w, MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm));
    msg[sizeof msg - 1] = '\0';
    if (w->size > 1) return br_fail((br_status)code_rank[0], "[rank %d] %s", code_rank[1], msg);
    return br_fail((br_status)code_rank[0], "%s", msg);
}

br_status comm_agree_in(const comm_world *w, br_status st, const char *caller) {
    comm_watch_enter("comm_agree", caller);
    st = agree_on(w, MPI_COMM_WORLD, st);
    comm_watch_leave();
    return st;
}

br_status comm_tp_agree_in(const comm_world *w, br_status st, const char *caller) {
    comm_watch_enter("comm_tp_agree", caller);
    st = agree_on(w, w->tp_comm ? *(MPI_Comm *)w->tp_comm : MPI_COMM_SELF, st);
    comm_watch_leave();
    return st;
}

void comm_bcast_u64_in(const comm_world *w, uint64_t *v, const char *caller) {
    comm_watch_enter("comm_bcast_u64", caller);
    MPI_CHECK(w, MPI_Bcast(v, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
    comm_watch_leave();
}
void comm_bcast_int_in(const comm_world *w, int *v, const char *caller) {
    comm_watch_enter("comm_bcast_int", caller);
    MPI_CHECK(w, MPI_Bcast(v, 1, MPI_INT, 0, MPI_COMM_WORLD));
    comm_watch_leave();
}

/* Large buffers move in pieces of at most INT_MAX bytes (MPI counts are int). */
#define COMM_PIECE ((size_t)1 << 30)

br_status comm_bcast_bytes_in(const comm_world *w, void **buf, size_t *len, const char *caller) {
    comm_watch_enter("comm_bcast_bytes", caller);
    uint64_t n = w->rank == 0 ? (uint64_t)*len : 0;
    MPI_CHECK(w, MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
    if (w->rank != 0) {
        *buf = malloc(n > 0 ? (size_t)n : 1);
        if (!*buf) comm_abort(w, 3, "comm_bcast_bytes", "out of memory");
        *len = (size_t)n;
    }
    for (size_t off = 0; off < n; off += COMM_PIECE) {
        size_t piece = n - off < COMM_PIECE ? n - off : COMM_PIECE;
        MPI_CHECK(w, MPI_Bcast((uint8_t *)*buf + off, (int)piece, MPI_BYTE, 0, MPI_COMM_WORLD));
    }
    comm_watch_leave();
    return BR_OK;
}

br_status comm_bcast_bytes_idle_in(const comm_world *w, void **buf, size_t *len, const char *caller) {
    comm_watch_enter("comm_bcast_bytes_idle", caller);
    uint64_t n = w->rank == 0 ? (uint64_t)*len : 0;
    MPI_Request req;
    MPI_CHECK(w, MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req));
    for (;;) {
        int done = 0;
        MPI_CHECK(w, MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        /* the others wait while rank 0 waits on its caller (a trainer between requests): 1 ms naps, not a spin
         * that would take a core from the trainer */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return comm_bcast_bytes_in(w, buf, len, caller); /* the bytes themselves (and the length again) on the usual path */
}

br_status comm_gather_bytes_in(const comm_world *w, const void *buf, size_t len, void **out, size_t *out_len,
                               const char *caller) {
    comm_watch_enter("comm_gather_bytes", caller);
    *out = NULL;
    *out_len = 0;
    uint64_t mine = len;
    uint64_t *lens = NULL;
    if (w->rank == 0) {
        lens = malloc((size_t)w->size * sizeof *lens);
        if (!lens) comm_abort(w, 3, "comm_gather_bytes", "out of memory");
    }
    MPI_CHECK(w, MPI_Gather(&mine, 1, MPI_UINT64_T, lens, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
    if (w->rank == 0) {
        size_t total = 0;
        for (int r = 0; r < w->size; r++) total += (size_t)lens[r];
        uint8_t *all = malloc(total > 0 ? total : 1);
        if (!all) comm_abort(w, 3, "comm_gather_bytes", "out of memory");
        memcpy(all, buf, len);
        size_t off = len;
        for (int r = 1; r < w->size; r++) {
            for (size_t got = 0; got < lens[r]; got += COMM_PIECE) {
                size_t piece = lens[r] - got < COMM_PIECE ? lens[r] - got : COMM_PIECE;
                MPI_CHECK(w, MPI_Recv(all + off + got, (int)piece, MPI_BYTE, r, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
            }
            off += lens[r];
        }
        free(lens);
        *out = all;
        *out_len = total;
    } else {
        for (size_t sent = 0; sent < len; sent += COMM_PIECE) {
            size_t piece = len - sent < COMM_PIECE ? len - sent : COMM_PIECE;
            MPI_CHECK(w, MPI_Send((const uint8_t *)buf + sent, (int)piece, MPI_BYTE, 0, 7, MPI_COMM_WORLD));
        }
    }
    comm_watch_leave();
    return BR_OK;
}

void comm_buf_put(comm_buf *b, const void *p, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
}

int comm_buf_get(comm_buf *b, void *p, size_t n) {
    if (b->failed || b->rd + n > b->len) {
        b->failed = 1;
        return -1;
    }
    if (n) memcpy(p, b->data + b->rd, n);
    b->rd += n;
    return 0;
}

void comm_buf_free(comm_buf *b) {
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- fixed-order sums */

void comm_chunk_range(const comm_world *w, int C, int *c0, int *c1) {
    *c0 = (int)((int64_t)C * w->rank / w->size);
    *c1 = (int)((int64_t)C * (w->rank + 1) / w->size);
}

/* The same pairwise tree as the CPU kernels' (common/chunk_tree.c: one copy), so TP = 1 and TP > 1 add alike. */
void comm_chunk_tree(const float *all, int C, size_t n, float *out) {
    float *tmp = malloc((size_t)br_chunk_tree_levels(C) * n * sizeof(float) + sizeof(float));
    if (!tmp) comm_abort(NULL, 3, "comm_chunk_tree", "out of memory");
    br_chunk_tree(all, C, n, out, tmp);
    free(tmp);
}

static br_status chunk_sum_on(const comm_world *w, MPI_Comm comm, const float *mine, int C, size_t n, float *out) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (C < 1) return br_fail(BR_EINVAL, "comm_chunk_sum: C must be >= 1 (got %d)", C);
    if ((size_t)C * n > (size_t)INT_MAX)
        return br_fail(BR_EINVAL, "comm_chunk_sum: %d chunks of %zu floats exceed one MPI message", C, n);
    int *counts = malloc((size_t)size * sizeof(int)), *displs = malloc((size_t)size * sizeof(int));
    float *all = malloc((size_t)C * n * sizeof(float) + sizeof(float));
    if (!counts || !displs || !all) comm_abort(w, 3, "comm_chunk_sum", "out of memory");
    for (int r = 0; r < size; r++) {
        int c0 = (int)((int64_t)C * r / size), c1 = (int)((int64_t)C * (r + 1) / size);
        counts[r] = (int)((size_t)(c1 - c0) * n);
        displs[r] = (int)((size_t)c0 * n);
    }
    comm_watch_enter("comm_chunk_sum", "the forward pass");
    MPI_CHECK(w, MPI_Allgatherv(mine, counts[rank], MPI_FLOAT, all, counts, displs, MPI_FLOAT, comm));
    comm_watch_leave();
    comm_chunk_tree(all, C, n, out);
    free(counts);
    free(displs);
    free(all);
    return BR_OK;
}

br_status comm_chunk_sum(const comm_world *w, const float *mine, int C, size_t n, float *out) {
    return chunk_sum_on(w, MPI_COMM_WORLD, mine, C, n, out);
}

br_status comm_tp_split(comm_world *w, int tp) {
    if (tp < 1 || w->size % tp)
        return br_fail(BR_EINVAL, "--tp %d: the tensor-parallel degree must divide the number of ranks (%d)", tp, w->size);
    w->tp_size = tp;
    w->tp_rank = w->rank % tp;
    w->group = w->rank / tp;
    w->n_groups = w->size / tp;
    if (tp == 1) return BR_OK;
    MPI_Comm *c = malloc(sizeof *c);
    if (!c) comm_abort(w, 3, "comm_tp_split", "out of memory");
    MPI_CHECK(w, MPI_Comm_split(MPI_COMM_WORLD, w->group, w->rank, c));
    w->tp_comm = c;
    return BR_OK;
}

br_status comm_tp_chunk_sum(void *ctx, const float *mine, int C, size_t n, float *out) {
    const comm_world *w = ctx;
    return chunk_sum_on(w, w->tp_comm ? *(MPI_Comm *)w->tp_comm : MPI_COMM_SELF, mine, C, n, out);
}

/* MPI_Get_version and MPI_Get_library_version may be called before MPI_Init (MPI-3), so a file written by a test or
 * a single-process tool carries them too. */
void comm_mpi_version(char *buf, size_t cap) {
    int ver = 0, sub = 0, len = 0;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING + 1];
    if (MPI_Get_version(&ver, &sub) != MPI_SUCCESS) ver = sub = 0;
    if (MPI_Get_library_version(lib, &len) != MPI_SUCCESS || len < 0) len = 0;
    if (len > MPI_MAX_LIBRARY_VERSION_STRING) len = MPI_MAX_LIBRARY_VERSION_STRING;
    lib[len] = '\0';
    while (len > 0 && (lib[len - 1] == '\n' || lib[len - 1] == ' ' || lib[len - 1] == '\r' || lib[len - 1] == '\0'))
        lib[--len] = '\0';
    for (int i = 0; i < len; i++)
        if (lib[i] == '\n') lib[i] = ' ';
    snprintf(buf, cap, "MPI %d.%d; %s", ver, sub, len > 0 ? lib : "unknown library");
}
