/* libbitroll internals shared by the api/ files (never installed). */
#ifndef API_INT_H
#define API_INT_H

#include "bitroll/bitroll.h"
#include "comm/comm.h"
#include "common/br.h"
#include "common/tuning.h"
#include "policy/policy.h"
#include "rollout/engine.h"
#include "rollout/scheduler.h"

/* A staged tensor of a weight update (bitroll_weights_set), bytes owned. */
typedef struct {
    char *name;
    st_dtype dtype;
    int64_t shape[4];
    int ndim;
    void *data;
} api_staged;

struct bitroll_engine {
    bitroll_engine_opts o;       /* as opened; o.model_dir / o.random_weights point at the copies below */
    char *model_dir, *random_weights;
    policy_weights *w;
    rollout_engine *eng;
    const rollout_backend_i *be;
    rollout_sched_opts so;       /* budgets of every call (engine = eng) */
    br_tuning tuning;            /* read from the environment at open */
    comm_world tpw;              /* the tensor-parallel group of opts.mpi_comm (tp_size 1 without) */
    policy_tp tp;
    int64_t weight_version;
    api_staged *staged;
    int n_staged, cap_staged;
    char err[1024];
};

/* br_status -> bitroll_status (the CLI's exit codes map the same way: docs/API.md). */
bitroll_status api_status(br_status st);
/* Copies the calling thread's last br_fail message into err (when non-NULL); returns api_status(st). */
bitroll_status api_fail_err(bitroll_error *err, br_status st);
/* The entry points that read files without an engine (bitroll_rollouts_read, bitroll_verify_files) read the BITROLL_*
 * switches at the call (an engine reads them at bitroll_open) and hand the read guard its seconds (h5log_guard_set). */
br_status api_guard_from_env(void);
/* The same into the engine's message (cleared on BR_OK). */
bitroll_status api_fail(bitroll_engine *e, br_status st);
/* Binds the calling thread to the engine's device (CUDA: its GPU). */
void api_bind(bitroll_engine *e);
/* Creates the rollout engine of weights w with e's options (used by open, commit and reload). */
br_status api_engine_create(bitroll_engine *e, const policy_weights *w, rollout_engine **out);

#endif
