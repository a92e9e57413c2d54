/* nccl-tests-style check of comm_chunk_sum under mpirun (any rank count): inputs whose exact sum is known
 * (small integers: every partial sum is exact in fp32), wrong elements counted per rank and summed over MPI; and
 * random fp32 inputs whose sum must equal, bit for bit, the single-process tree (comm_chunk_tree) -- the same bits
 * whatever the rank count. usage: mpirun -np N chunk_sum_check [C] [n]. Exit 0 iff no rank saw a wrong element. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

static float rnd(int c, size_t i) { /* deterministic, independent of the rank: a function of (chunk, index) */
    uint64_t z = ((uint64_t)c << 32 | i) * 0x9e3779b97f4a7c15ull;
    z ^= z >> 31;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 29;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0) * (float)(1 + c % 5) * 1e3f;
}

int main(int argc, char **argv) {
    comm_world w;
    if (comm_init(&argc, &argv, &w) != BR_OK) return 3;
    const int C = argc > 1 ? atoi(argv[1]) : 16;
    const size_t n = argc > 2 ? (size_t)atoll(argv[2]) : 100003;
    int c0, c1;
    comm_chunk_range(&w, C, &c0, &c1);
    float *mine = malloc(((size_t)(c1 - c0) + 1) * n * sizeof(float)), *out = malloc(n * sizeof(float));
    float *all = malloc((size_t)C * n * sizeof(float)), *want = malloc(n * sizeof(float));
    long long wrong_exact = 0, wrong_bits = 0;

    /* 1. exact: chunk c holds (c + 1) * (i % 7); the sum is (i % 7) * C (C + 1) / 2 exactly */
    for (int c = c0; c < c1; c++)
        for (size_t i = 0; i < n; i++) mine[(size_t)(c - c0) * n + i] = (float)((c + 1) * (int)(i % 7));
    comm_chunk_sum(&w, mine, C, n, out);
    for (size_t i = 0; i < n; i++) wrong_exact += out[i] != (float)((long long)(i % 7) * C * (C + 1) / 2);

    /* 2. random fp32: equal to the one-process tree, bitwise */
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < n; i++) all[(size_t)c * n + i] = rnd(c, i);
    comm_chunk_tree(all, C, n, want);
    memcpy(mine, all + (size_t)c0 * n, (size_t)(c1 - c0) * n * sizeof(float));
    comm_chunk_sum(&w, mine, C, n, out);
    for (size_t i = 0; i < n; i++) wrong_bits += memcmp(&out[i], &want[i], sizeof(float)) != 0;

    long long mine_wrong[2] = {wrong_exact, wrong_bits}, total[2] = {0, 0};
    MPI_Reduce(mine_wrong, total, 2, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    printf("[rank %d/%d] chunks [%d, %d) of %d, n = %zu: %lld wrong (exact inputs), %lld differ from the 1-process tree\n",
           w.rank, w.size, c0, c1, C, n, wrong_exact, wrong_bits);
    fflush(stdout);
    int code = total[0] || total[1];
    MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (w.rank == 0) printf("chunk_sum_check: %d ranks, %s\n", w.size, code ? "FAILED" : "all elements right, bitwise");
    free(mine);
    free(out);
    free(all);
    free(want);
    comm_finalize(&w);
    return code;
}
