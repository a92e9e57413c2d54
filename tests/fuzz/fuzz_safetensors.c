/* Fuzz target: the safetensors reader (policy_st_open) on one file, or on a sharded index whose shards are two
 * fixed valid files. The reader takes a path, so each input is written to a scratch file in /dev/shm first.
 * Input: a .safetensors file; an input that starts with '{' is a model.safetensors.index.json instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "policy/policy.h"

/* A valid one-tensor safetensors file: header length (LE u64), header JSON, data. */
static void write_shard(const char *path, const char *name, uint8_t fill) {
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", name);
    uint8_t buf[8 + 128 + 8];
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, hdr, (size_t)n);
    memset(buf + 8 + n, fill, 8);
    fuzz_write_file(path, buf, 8 + (size_t)n + 8);
}

static int dtype_size(const char *name) {
    static const struct { const char *n; int s; } t[] = {
        {"F32", 4}, {"BF16", 2}, {"F16", 2}, {"I32", 4}, {"I64", 8}, {"U8", 1}, {"F64", 8}, {"I8", 1},
        {"I16", 2}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].n, name) == 0) return t[i].s;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *file, *index;
    if (!file) {
        file = fuzz_scratch_path("model.safetensors");
        index = fuzz_scratch_path("model.safetensors.index.json");
        write_shard(fuzz_scratch_path("a.safetensors"), "x", 0x3f);
        write_shard(fuzz_scratch_path("b.safetensors"), "y", 0x40);
    }
    int is_index = size > 0 && data[0] == '{';
    const char *path = is_index ? index : file;
    fuzz_write_file(path, data, size);

    policy_st *st = NULL, *copy = NULL;
    if (policy_st_open(path, &st) == BR_OK) {
        FUZZ_CHECK(st != NULL);
        fuzz_accepted++;
        FUZZ_CHECK(strcmp(policy_st_path(st), path) == 0);
        /* A single file's data section: every view must lie inside it. */
        uint64_t hdr = 0;
        for (int i = 7; !is_index && i >= 0; i--) hdr = (hdr << 8) | data[i];
        int n = policy_st_count(st);
        uint64_t sum = 0;
        for (int i = 0; i < n; i++) {
            const st_tensor *t = policy_st_at(st, i);
            FUZZ_CHECK(t && t->name);
            FUZZ_CHECK(policy_st_find(st, t->name) == t);
            FUZZ_CHECK(policy_st_index(st, t) == i);
            if (i > 0) FUZZ_CHECK(strcmp(policy_st_at(st, i - 1)->name, t->name) < 0);
            FUZZ_CHECK(t->ndim >= 0 && t->ndim <= 8);
            int64_t numel = 1;
            for (int d = 0; d < t->ndim; d++) {
                FUZZ_CHECK(t->shape[d] >= 0);
                numel *= t->shape[d];
            }
            FUZZ_CHECK(numel == t->numel);
            int es = dtype_size(t->dtype_name);
            FUZZ_CHECK(es > 0);
            FUZZ_CHECK(t->nbytes == (size_t)t->numel * (size_t)es);
            if (!is_index) FUZZ_CHECK(8 + hdr + t->nbytes <= size);
            /* Read every byte the view promises (a view past the mapping faults here). */
            const uint8_t *p = t->data;
            for (size_t b = 0; b < t->nbytes; b++) sum += p[b];
        }
        if (policy_st_copy(st, NULL, &copy) == BR_OK) {
            FUZZ_CHECK(policy_st_count(copy) == n);
            for (int i = 0; i < n; i++) {
                const st_tensor *a = policy_st_at(st, i), *b = policy_st_at(copy, i);
                FUZZ_CHECK(strcmp(a->name, b->name) == 0 && a->nbytes == b->nbytes);
                FUZZ_CHECK(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
            }
        }
        (void)sum;
    } else {
        FUZZ_CHECK(st == NULL);
    }
    policy_st_free(copy);
    policy_st_free(st);
    return 0;
}
