/* The collectives tables of an engine (comm_links.h). */
#include "comm/comm_links.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef BR_HAVE_CUDA
#include "comm/comm_nccl.h"
#endif

struct comm_links {
    const comm_world *w;
    policy_tp tp;
    rollout_weights_bcast wb;
    int use_wb;
#ifdef BR_HAVE_CUDA
    comm_nccl *nc;
#endif
};

#ifdef BR_HAVE_CUDA
static br_status tp_dev_allgather(void *ctx, const void *send, size_t bytes, void *recv, void *stream) {
    return comm_nccl_allgather((comm_nccl *)ctx, COMM_NCCL_TP, send, bytes, recv, stream);
}
static br_status tp_dev_wait(void *ctx, void *stream, br_status st) {
    return comm_nccl_wait((comm_nccl *)ctx, COMM_NCCL_TP, stream, st);
}
static br_status wb_bcast(void *ctx, void *dev, size_t bytes) {
    comm_links *l = ctx;
    return comm_nccl_wait(l->nc, COMM_NCCL_WORLD, NULL, comm_nccl_bcast(l->nc, COMM_NCCL_WORLD, dev, bytes, 0, NULL));
}
static br_status wb_check(void *ctx, const void *dev, size_t bytes) {
    return comm_nccl_check_fingerprint(((comm_links *)ctx)->nc, dev, bytes, 0, NULL, NULL, NULL);
}
#endif
static br_status wb_agree(void *ctx, br_status st) { return comm_agree(((comm_links *)ctx)->w, st); }

br_status comm_links_open(const comm_world *w, int on_gpu, const br_tuning *t, int announce, comm_links **out) {
    *out = NULL;
    comm_links *l = calloc(1, sizeof *l);
    br_status rc = l ? BR_OK : br_fail(BR_ENOMEM, "comm links: out of memory");
    if (l) {
        l->w = w;
        /* every rank of a tensor-parallel group runs the group's jobs; their chunk sums meet in comm_tp_chunk_sum
         * (CPU) or in the group's device all-gather (CUDA) */
        l->tp = (policy_tp){w->tp_rank, w->tp_size, comm_tp_chunk_sum, (void *)w, NULL, NULL, NULL};
    }
#ifdef BR_HAVE_CUDA
    const int bcast = on_gpu && w->size > 1 && w->tp_size == 1 && t->weights_bcast;
    if (rc == BR_OK && on_gpu && (w->tp_size > 1 || bcast)) {
        rc = comm_nccl_init_opts(w, t->share_gpus, t->nccl, &l->nc); /* collective: same device and --tp everywhere */
        if (rc == BR_OK && announce && w->rank == 0)
            fprintf(stderr, "bitroll: %s with %s\n",
                    w->tp_size > 1 ? "--tp on the GPU: row-parallel partials all-gathered"
                                   : "device weights broadcast from rank 0",
                    comm_nccl_handle_backend(l->nc));
    }
    if (rc == BR_OK) {
        l->tp.dev_allgather = tp_dev_allgather;
        l->tp.dev_wait = tp_dev_wait;
        l->tp.dev_ctx = l->nc;
        l->wb = (rollout_weights_bcast){w->rank == 0, wb_bcast, wb_check, wb_agree, l};
        l->use_wb = bcast;
    }
#else
    (void)on_gpu;
    (void)t;
    (void)announce;
    if (l) l->wb = (rollout_weights_bcast){w->rank == 0, NULL, NULL, wb_agree, l};
#endif
    if (rc != BR_OK) {
        comm_links_close(l);
        return rc;
    }
    *out = l;
    return BR_OK;
}

const policy_tp *comm_links_tp(const comm_links *l) { return &l->tp; }
const rollout_weights_bcast *comm_links_wb(const comm_links *l) { return l->use_wb ? &l->wb : NULL; }

br_status comm_links_close(comm_links *l) {
    br_status rc = BR_OK;
    if (!l) return rc;
#ifdef BR_HAVE_CUDA
    if (l->nc) rc = comm_nccl_destroy(l->nc);
#endif
    free(l);
    return rc;
}
