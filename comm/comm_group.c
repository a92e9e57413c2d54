/* A caller's communicator as one tensor-parallel group (comm_group.h). */
#include "comm/comm_group.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

br_status comm_group_world(const void *mpi_comm, comm_world *w) {
    int inited = 0, finalized = 0;
    memset(w, 0, sizeof *w);
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return br_fail(BR_EINVAL, "mpi_comm: MPI is not initialized (call MPI_Init before opening the engine)");
    const MPI_Comm c = *(const MPI_Comm *)mpi_comm;
    MPI_Comm *dup = malloc(sizeof *dup);
    if (!dup) return br_fail(BR_ENOMEM, "mpi_comm: out of memory");
    if (MPI_Comm_dup(c, dup) != MPI_SUCCESS) {
        free(dup);
        return br_fail(BR_ERUNTIME, "mpi_comm: MPI_Comm_dup failed");
    }
    MPI_Comm_rank(*dup, &w->rank);
    MPI_Comm_size(*dup, &w->size);
    MPI_Comm node;
    if (MPI_Comm_split_type(*dup, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &w->local_rank);
        MPI_Comm_size(node, &w->local_size);
        MPI_Comm_free(&node);
    }
    w->tp_rank = w->rank;
    w->tp_size = w->size;
    w->group = 0;
    w->n_groups = 1;
    w->tp_comm = dup;
    return BR_OK;
}

void comm_group_free(comm_world *w) {
    if (!w || !w->tp_comm) return;
    MPI_Comm_free((MPI_Comm *)w->tp_comm);
    free(w->tp_comm);
    w->tp_comm = NULL;
}
