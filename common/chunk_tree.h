/* The fixed pairwise tree that sums C chunk partials (DESIGN 7): sum(lo, hi) = sum(lo, mid) + sum(mid, hi),
 * mid = lo + (hi - lo) / 2, plain fp32 adds with one rounding each. One copy, used by the CPU kernels
 * (kern_cpu_chunk_tree, TP = 1) and by comm/ (comm_chunk_sum, TP > 1), so every TP degree adds in this order. */
#ifndef COMMON_CHUNK_TREE_H
#define COMMON_CHUNK_TREE_H

#include <stddef.h>

/* Floats of scratch per element the tree needs: br_chunk_tree_levels(C) * n in all. */
int br_chunk_tree_levels(int C);
/* out (n) = the tree over all (C, n); tmp: br_chunk_tree_levels(C) * n floats. */
void br_chunk_tree(const float *all, int C, size_t n, float *out, float *tmp);

#endif
