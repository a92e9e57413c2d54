/* A caller's MPI communicator as one tensor-parallel group (the public API's bitroll_engine_opts.mpi_comm): every
 * rank of the communicator holds a share of the model, and their chunk sums meet over it. */
#ifndef COMM_GROUP_H
#define COMM_GROUP_H

#include "comm/comm.h"

/* mpi_comm points to an MPI_Comm. MPI must be initialized by the caller (BR_EINVAL otherwise). Fills w as one
 * group: tp_rank/tp_size = the rank and size in the communicator; w->tp_comm is a duplicate (comm_group_free). */
br_status comm_group_world(const void *mpi_comm, comm_world *w);
void comm_group_free(comm_world *w);

#endif
