/* Weight-broadcast benchmark (comm_nccl_bcast_weights, comm/comm_nccl.h): rank 0's device buffer, the byte size of
 * a bf16 checkpoint of a model shape (default configs/shapes/qwen3-8b.json, every parameter counted: matrices,
 * norms, biases, untied lm_head), reaches every rank in chunks; every rank then checks the fingerprint (xxh3 of
 * the bytes). Prints one row per chunk size: median and best GB/s (bytes / time from a barrier to the last rank's
 * completion; for a broadcast nccl-tests' algbw and busbw are the same number) and the fingerprint time.
 * usage: mpirun -np N bench_bcast [--shape CONFIG.json | --gb X] [--chunks-mib 64,256,1024] [--reps R]
 *                                 [--json OUT.json]
 * One rank per GPU (node-local rank r takes GPU r). NCCL_NVLS_ENABLE=0 unless the environment sets it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/br.h"

#ifndef BR_HAVE_CUDA
int main(void) {
    printf("bench_bcast: built without the CUDA backend: nothing to measure\n");
    return 0;
}
#else
#include <mpi.h>

#include "comm/comm.h"
#include "comm/comm_nccl.h"
#include "kernels/cuda/kern_cuda.h"
#include "policy/policy.h"

#ifndef BR_TEST_DATA
#define BR_TEST_DATA "tests/data"
#endif

/* Parameters of a checkpoint of this shape (what a trainer would broadcast). */
static int64_t count_params(const policy_config *c) {
    const int64_t D = c->dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, F = c->ffn_dim, V = c->vocab;
    const int ln = c->norm == POLICY_NORM_LAYER;
    int64_t layer = H * hd * D + 2 * KV * hd * D + D * H * hd;     /* q, k, v, o */
    layer += (c->act == POLICY_ACT_SILU_GLU ? 3 : 2) * F * D;     /* gate, up, down */
    layer += 2 * D * (ln ? 2 : 1);                                /* attention and MLP norms (+ biases) */
    if (c->qk_norm) layer += 2 * hd;
    if (c->qkv_bias) layer += H * hd + 2 * KV * hd;
    if (c->out_bias) layer += D + F + D;
    int64_t n = layer * c->n_layers + V * D + D * (ln ? 2 : 1);   /* layers, embedding, final norm */
    if (c->learned_pos) n += (int64_t)c->max_pos * D;
    if (!c->tie_embeddings) n += V * D;
    return n;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    comm_world w;
    if (comm_init(&argc, &argv, &w) != BR_OK) return 3;
    kern_cuda_set_abort_hook(comm_abort_job); /* a device error on one rank stops every rank */
    const char *shape = BR_TEST_DATA "/../../configs/shapes/qwen3-8b.json", *json = NULL;
    double gb = 0;
    int reps = 3;
    size_t chunks_mib[16] = {64, 256, 1024};
    int n_chunk_sizes = 3;
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (!strcmp(argv[i], "--shape") && more) shape = argv[++i];
        else if (!strcmp(argv[i], "--gb") && more) gb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && more) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && more) json = argv[++i];
        else if (!strcmp(argv[i], "--chunks-mib") && more) {
            n_chunk_sizes = 0;
            for (char *s = argv[++i], *end; *s && n_chunk_sizes < 16; s = *end ? end + 1 : end) {
                chunks_mib[n_chunk_sizes++] = strtoull(s, &end, 10);
                if (end == s) break;
            }
        } else {
            if (w.rank == 0)
                fprintf(stderr, "usage: mpirun -np N bench_bcast [--shape CONFIG.json | --gb X] [--chunks-mib 64,256,1024] "
                                "[--reps R] [--json OUT.json]\n");
            comm_finalize(&w);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;

    /* the size: a bf16 checkpoint of the shape, or --gb */
    size_t bytes = 0;
    int64_t n_params = 0;
    char what[512];
    br_status st = BR_OK;
    if (gb > 0) {
        bytes = (size_t)(gb * 1e9) & ~(size_t)1;
        snprintf(what, sizeof what, "--gb %g", gb);
    } else {
        policy_config cfg;
        st = policy_config_load(shape, &cfg);
        if (st == BR_OK) {
            n_params = count_params(&cfg);
            bytes = (size_t)n_params * 2;
            snprintf(what, sizeof what, "a bf16 checkpoint of %s (%s, %lld parameters)", shape,
                     policy_arch_name(cfg.arch), (long long)n_params);
        }
    }
    if ((st = comm_agree(&w, st)) != BR_OK) {
        if (w.rank == 0) fprintf(stderr, "bench_bcast: %s\n", br_last_error());
        comm_finalize(&w);
        return 2;
    }
    if (w.rank == 0) printf("weights broadcast: %.3f GB = %s\n", (double)bytes / 1e9, what);
    comm_nccl *c = NULL;
    if ((st = comm_nccl_init(&w, &c)) != BR_OK) {
        if (w.rank == 0) fprintf(stderr, "bench_bcast: %s\n", br_last_error());
        comm_finalize(&w);
        return 3;
    }
    char dev[256];
    kern_cuda_device_name(comm_nccl_device(c), dev, sizeof dev);
    if (w.rank == 0) {
        printf("%d rank%s (%s), backend %s, %d repetitions per chunk size%s\n", w.size, w.size == 1 ? "" : "s", dev,
               comm_nccl_handle_backend(c), reps, w.size == 1 ? "; one rank: nothing moves, the time is overhead" : "");
    }

    /* rank 0's bytes: random bf16 rows of 4096 (the tail zero); the others start from zeros every repetition */
    uint8_t *d = kern_cuda_malloc(bytes);
    const int64_t K = 4096, rows = (int64_t)(bytes / 2 / (size_t)K);
    FILE *jf = json && w.rank == 0 ? fopen(json, "w") : NULL;
    if (jf) fprintf(jf, "{\"bytes\": %zu, \"ranks\": %d, \"backend\": \"%s\", \"device\": \"%s\", \"rows\": [", bytes,
                    w.size, comm_nccl_handle_backend(c), dev);
    if (w.rank == 0)
        printf("\n%10s %7s %12s %12s %12s %14s  %s\n", "chunk MiB", "chunks", "median s", "median GB/s", "best GB/s",
               "fingerprint s", "fingerprint");
    int code = 0;
    for (int k = 0; k < n_chunk_sizes && code == 0; k++) {
        const size_t chunk = chunks_mib[k] << 20;
        double secs[64], best = 0, hash_s = 0;
        comm_nccl_bcast_stats s = {0};
        for (int r = 0; r < reps; r++) {
            if (w.rank == 0) {
                kern_cuda_memset(d, 0, bytes);
                if (rows > 0) kern_cuda_fill_random(d, KERN_BF16, rows, K, K, 1234, (uint32_t)r, 1.0f, NULL);
            } else {
                kern_cuda_memset(d, 0, bytes);
            }
            kern_cuda_sync();
            st = comm_nccl_bcast_weights(c, d, bytes, 0, chunk, &s);
            if (st != BR_OK) {
                if (w.rank == 0) fprintf(stderr, "bench_bcast: chunk %zu MiB: %s\n", chunks_mib[k], br_last_error());
                code = 3;
                break;
            }
            secs[r] = s.seconds;
            if (s.gbps > best) best = s.gbps;
            hash_s = s.hash_seconds;
        }
        if (code) break;
        qsort(secs, (size_t)reps, sizeof secs[0], cmp_d);
        const double med = secs[reps / 2], med_gbps = med > 0 ? (double)bytes / med / 1e9 : 0;
        if (w.rank == 0) {
            printf("%10zu %7d %12.4f %12.2f %12.2f %14.3f  %016llx agreed on %d rank%s\n", chunks_mib[k], s.n_chunks, med,
                   med_gbps, best, hash_s, (unsigned long long)s.fingerprint, w.size, w.size == 1 ? "" : "s");
            if (jf)
                fprintf(jf, "%s\n  {\"chunk_mib\": %zu, \"chunks\": %d, \"median_s\": %.6f, \"median_gbps\": %.3f, "
                            "\"best_gbps\": %.3f, \"fingerprint_s\": %.4f}", k ? "," : "", chunks_mib[k], s.n_chunks,
                        med, med_gbps, best, hash_s);
        }
    }
    if (jf) {
        fprintf(jf, "\n]}\n");
        fclose(jf);
    }
    kern_cuda_free(d);
    comm_nccl_destroy(c);
    comm_finalize(&w);
    return code;
}
#endif
