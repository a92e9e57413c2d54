/* Test tool: the public API's tensor parallelism over a caller's communicator (bitroll_engine_opts.mpi_comm).
 * Every rank of MPI_COMM_WORLD opens the engine as one TP group, generates the same fixed prompts, then scores the
 * completions; rank 0 checks score == generate bitwise and writes tokens, log-probs and digests to OUT (raw bytes),
 * so the shell test compares the file of -np 1 with -np 2 and -np 4 byte for byte.
 * usage: mpirun -np N api_tp MODEL_DIR OUT */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitroll/bitroll.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, code = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc != 3) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -np N api_tp MODEL_DIR OUT\n");
        MPI_Finalize();
        return 2;
    }
    MPI_Comm comm = MPI_COMM_WORLD;
    bitroll_engine_opts o;
    bitroll_engine_opts_init(&o);
    o.model_dir = argv[1];
    o.max_batch_tokens = 24;
    o.max_seqs = 3;
    o.max_seq_len = 128;
    o.mpi_comm = &comm;
    bitroll_engine *e = NULL;
    bitroll_error err;
    if (bitroll_engine_open(&o, &e, &err) != BITROLL_OK) {
        fprintf(stderr, "[rank %d] open: %s\n", rank, err.message);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    static const int64_t po[] = {0, 3, 4, 11};
    static const int32_t p[] = {1, 403, 407, 1, 1, 291, 410, 456, 425, 417, 340};
    static const float temp[] = {1.0f, 0.0f, 0.8f};
    const bitroll_generate_in in = {3, po, p, NULL, temp, NULL, NULL, NULL, NULL, 1.0f, 20, 9, NULL, 0};
    bitroll_completions *c = NULL;
    if (bitroll_generate(e, &in, &c) != BITROLL_OK) {
        fprintf(stderr, "[rank %d] generate: %s\n", rank, bitroll_engine_error(e));
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    const int64_t T = c->offsets[c->n];
    float *lp = malloc(4 * (size_t)T + 4);
    uint64_t *dg = malloc(8 * (size_t)T + 8);
    const bitroll_score_in s = {3, po, p, c->offsets, c->tokens, temp};
    if (bitroll_score(e, &s, lp, dg, 0) != BITROLL_OK) {
        fprintf(stderr, "[rank %d] score: %s\n", rank, bitroll_engine_error(e));
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    if (memcmp(lp, c->logprobs, 4 * (size_t)T) || memcmp(dg, c->digests, 8 * (size_t)T)) {
        fprintf(stderr, "[rank %d] score differs from generate\n", rank);
        code = 1;
    }
    if (rank == 0 && code == 0) {
        FILE *f = fopen(argv[2], "wb");
        if (!f || fwrite(c->offsets, 8, (size_t)c->n + 1, f) != (size_t)c->n + 1 ||
            fwrite(c->tokens, 4, (size_t)T, f) != (size_t)T || fwrite(c->logprobs, 4, (size_t)T, f) != (size_t)T ||
            fwrite(c->digests, 8, (size_t)T, f) != (size_t)T || fclose(f)) {
            fprintf(stderr, "cannot write %s\n", argv[2]);
            code = 2;
        }
        printf("api_tp: %lld tokens, score == generate\n", (long long)T);
    }
    free(lp);
    free(dg);
    bitroll_completions_free(c);
    bitroll_engine_close(e);
    MPI_Finalize();
    return code;
}
