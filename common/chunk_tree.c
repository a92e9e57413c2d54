/* The fixed pairwise chunk tree (common/chunk_tree.h). */
#include "common/chunk_tree.h"

#include <string.h>

static void tree(const float *all, int lo, int hi, size_t n, float *out, float *tmp) {
    if (hi - lo == 1) {
        memcpy(out, all + (size_t)lo * n, n * sizeof(float));
        return;
    }
    const int mid = lo + (hi - lo) / 2;
    tree(all, lo, mid, n, out, tmp + n);
    tree(all, mid, hi, n, tmp, tmp + n);
    for (size_t i = 0; i < n; i++) out[i] += tmp[i];
}

int br_chunk_tree_levels(int C) {
    int depth = 1;
    while ((1 << depth) < C) depth++;
    return depth + 1;
}

void br_chunk_tree(const float *all, int C, size_t n, float *out, float *tmp) { tree(all, 0, C, n, out, tmp); }
