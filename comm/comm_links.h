/* comm_links: the collectives an engine needs, built by comm/ and handed to the engine as tables, so neither the
 * CLI nor the engine wires MPI or NCCL itself:
 *   - policy_tp: the tensor-parallel group's fixed-order chunk sum (CPU: MPI) and device all-gather (CUDA: NCCL,
 *     or MPI through host buffers);
 *   - rollout_weights_bcast: rank 0's device weights broadcast to the other ranks and fingerprinted on every rank
 *     (--device cuda on several ranks without --tp; tuning.weights_bcast = 0 turns it off).
 * This file is comm/'s device-collectives table: the only place in comm/ that knows whether the build has CUDA. */
#ifndef COMM_LINKS_H
#define COMM_LINKS_H

#include "comm/comm.h"
#include "common/tuning.h"
#include "policy/forward.h"
#include "rollout/engine.h"

typedef struct comm_links comm_links;

/* Collective over the world (every rank passes the same on_gpu and tuning). on_gpu: the engine runs on CUDA.
 * announce: rank 0 prints which transport carries the device collectives (stderr). */
br_status comm_links_open(const comm_world *w, int on_gpu, const br_tuning *t, int announce, comm_links **out);
/* The tensor-parallel table (size 1 without tensor parallelism); valid while the links are open. */
const policy_tp *comm_links_tp(const comm_links *l);
/* The weights broadcast, or NULL when every rank builds its own device weights. */
const rollout_weights_bcast *comm_links_wb(const comm_links *l);
/* Collective; NULL is a no-op. */
br_status comm_links_close(comm_links *l);

#endif
