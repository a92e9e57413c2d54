/* Shared by `bitroll generate` and `bitroll score`: MPI start-up, the common options, the pre-run checks. */
#include "cli/cli_common.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"

int cli_run_opt(driver_opts *o, int c, const char *arg) {
    int64_t v;
    br_status rc = BR_OK;
    switch (c) {
    case OPT_MODEL: o->model = arg; return 1;
    case OPT_RANDOM: o->random_weights = arg; return 1;
    case OPT_WSEED: rc = cli_parse_u64("--weights-seed", arg, &o->weights_seed); break;
    case OPT_TP: rc = cli_parse_int("--tp", arg, 1, 1024, &v); if (rc == BR_OK) o->tp = (int)v; break;
    case OPT_WVERSION: rc = cli_parse_int("--weight-version", arg, 0, INT64_MAX, &v); if (rc == BR_OK) o->weight_version = v; break;
    case OPT_OUT: o->out = arg; return 1;
    case OPT_DEVICE:
        if (rollout_device_parse(arg, &o->device)) rc = br_fail(BR_EINVAL, "--device: '%s' is not one of cpu, cuda", arg);
        break;
    case OPT_KERNELS:
        if (kern_mode_parse(arg, &o->mode))
            rc = br_fail(BR_EINVAL, "--kernels: '%s' is not one of invariant, fp32, standard", arg);
        break;
    case OPT_QUIET: o->quiet = 1; return 1;
    case OPT_RESUME: o->resume = 1; return 1;
    case OPT_COMMTIMEOUT: rc = br_comm_timeout_parse("--comm-timeout", arg, &o->tuning.comm_timeout_s); break;
    case OPT_PRINTCFG: o->print_config = 1; return 1;
    case OPT_MBT:
        rc = cli_parse_int("--max-batch-tokens", arg, 1, 1 << 24, &v);
        if (rc == BR_OK) o->sched.max_batch_tokens = (int)v, o->sched.sizes_given |= ROLLOUT_GIVEN_BATCH_TOKENS;
        break;
    case OPT_MAXSEQS:
        rc = cli_parse_int("--max-seqs", arg, 1, 1 << 20, &v);
        if (rc == BR_OK) o->sched.max_seqs = (int)v, o->sched.sizes_given |= ROLLOUT_GIVEN_MAX_SEQS;
        break;
    case OPT_GPUMEM: {
        float f = 0.0f;
        rc = cli_parse_float("--gpu-memory-utilization", arg, &f);
        if (rc == BR_OK && !(strtod(arg, NULL) > 0.0 && strtod(arg, NULL) <= 1.0))
            rc = br_fail(BR_EINVAL, "--gpu-memory-utilization: %s: expected a share of the free device memory in (0, 1]",
                         arg);
        if (rc == BR_OK) o->sched.gpu_memory_utilization = strtod(arg, NULL);
        break;
    }
    case OPT_CHUNK: rc = cli_parse_int("--prefill-chunk", arg, 1, 1 << 24, &v); if (rc == BR_OK) o->sched.prefill_chunk = (int)v; break;
    case OPT_PAGE: rc = cli_parse_int("--page-size", arg, 1, 1 << 16, &v); if (rc == BR_OK) o->sched.page_size = (int)v; break;
    default: return 0;
    }
    return rc == BR_OK ? 1 : -1;
}

br_status cli_run_prepare(comm_world *world, driver_opts *o, const char *in_flag, const char *in_path) {
    /* the memory plan's one line (rank 0's; every rank plans its own jobs) */
    o->sched.report_plan = !o->quiet && world->rank == 0;
    /* first: a rank that stops from here on cannot hang the others (collective; every rank parsed the same argv) */
    br_status rc = comm_agree(world, comm_watch_start(world, o->tuning.comm_timeout_s, o->verb));
    if (rc != BR_OK) return rc;
    rc = driver_bind_device(world, o);
    if (rc == BR_OK && world->rank == 0) rc = driver_check_out(o->out, in_flag, in_path);
    if (rc == BR_OK && world->rank == 0) rc = cli_check_writable(o->out);
    rc = comm_agree(world, rc);
    if (rc == BR_OK) rc = comm_agree(world, comm_tp_split(world, o->tp));
    return rc;
}

int cli_run_fail(const comm_world *w, const char *verb, br_status rc) {
    if (w->rank == 0) fprintf(stderr, "bitroll %s: %s\n", verb, br_last_error());
    return br_exit_code(rc);
}

int cli_with_mpi(int argc, char **argv, int (*fn)(comm_world *, int, char **)) {
    comm_world world;
    if (comm_init(&argc, &argv, &world) != BR_OK) {
        fprintf(stderr, "bitroll %s: %s\n", argv[0], br_last_error());
        return 3;
    }
#ifdef _OPENMP
    /* ranks on one node share its cores: unless OMP_NUM_THREADS says otherwise, each takes its share */
    if (!getenv("OMP_NUM_THREADS")) {
        int t = omp_get_num_procs() / (world.local_size > 0 ? world.local_size : 1);
        omp_set_num_threads(t > 0 ? t : 1);
    }
#endif
    int code = fn(&world, argc, argv);
    comm_finalize(&world);
    return code;
}
