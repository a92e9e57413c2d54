/* GPU tests for comm/comm_nccl (device-buffer collectives), nccl-tests style, run under mpirun with one rank per
 * visible GPU (tests/gpu/mpi_gpus.sh; one rank on a one-GPU machine):
 *   - the device tree kernel (kern_cuda_chunk_tree) and comm's host tree (comm_chunk_tree) == kern_cpu_chunk_tree,
 *     bitwise;
 *   - comm_nccl_chunk_sum on exact inputs (small integers: every sum exact in fp32), wrong elements counted per rank
 *     and summed over ranks, and on random fp32 inputs bitwise equal to the single-process CPU tree, for chunk
 *     counts that divide the rank count, that do not, and that are smaller than it; world and TP-group scopes;
 *   - all-gather and broadcast: every byte checked;
 *   - weight broadcast: bitwise copy, fingerprint == br_hash64 of the source, GB/s printed; one corrupted byte on
 *     one rank makes the fingerprint check fail naming that rank;
 *   - a rank that fails while the others wait in a collective: the vote of comm_nccl_wait aborts the communicators
 *     (ncclCommAbort releases the waiting kernels) and every rank reports the failing rank's message.
 * Every assertion follows an MPI reduction of the per-rank counts, so all ranks pass or fail together and stay in
 * step. With no CUDA device (or no CUDA backend built), every test calls skip(): ctest reports it skipped.
 * Modes for the wrapper script: --count-gpus (prints the visible GPU count, no MPI), --init-only (comm_nccl_init
 * and exit: 0 ok, 3 with the agreed message on stderr). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/br.h"
#ifdef BR_HAVE_CUDA
#include <mpi.h>

#include "comm/comm.h"
#include "comm/comm_nccl.h"
#include "kernels/cpu/kern_cpu.h"
#include "kernels/cuda/kern_cuda.h"

static comm_world g_w;
static comm_nccl *g_c;
static int g_gpu;
static char g_init_err[1024];
static cudaStream_t g_s;

static void need_nccl(void) {
    if (!g_gpu) skip();
    if (!g_c) fail_msg("comm_nccl_init failed: %s", g_init_err);
}

static long long total(long long v) {
    long long t = 0;
    MPI_Allreduce(&v, &t, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return t;
}

/* Deterministic, rank-independent data: a function of (a, b). */
static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = (a * 0x9e3779b97f4a7c15ull) ^ (b + 0x632be59bd9b4e019ull);
    z ^= z >> 31;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 29;
    z *= 0x94d049bb133111ebull;
    return z ^ (z >> 32);
}
static float rnd(int c, size_t i) {
    const uint64_t z = mix((uint64_t)c, i);
    float v = (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0) * (float)(1 + c % 5) * 1e3f;
    switch (z % 97) { /* a few values that a flush-to-zero or a sign slip would change */
    case 0: return -0.0f;
    case 1: return 1e-40f * (float)(1 + c % 3); /* subnormal */
    case 2: return -3e-39f;
    default: return v;
    }
}
static uint8_t pat(int who, size_t i) { return (uint8_t)mix((uint64_t)who + 7, i); }

static void *dev_from(const void *h, size_t bytes) {
    void *d = kern_cuda_malloc(bytes ? bytes : 1);
    if (bytes) kern_cuda_upload(d, h, bytes);
    return d;
}

static const char *scope_name(comm_nccl_scope s) { return s == COMM_NCCL_TP ? "tp" : "world"; }

/* ---- the tree kernel alone */

static void test_tree_kernel(void **state) {
    (void)state;
    if (!g_gpu) skip();
    static const int Cs[] = {1, 2, 3, 5, 7, 8, 16, 17, 32, 33, 64, 100};
    const size_t n = 4099;
    long long bad = 0;
    for (size_t k = 0; k < sizeof Cs / sizeof Cs[0]; k++) {
        const int C = Cs[k];
        float *all = malloc((size_t)C * n * sizeof(float)), *want = malloc(n * sizeof(float));
        float *got = malloc(n * sizeof(float));
        assert_non_null(all), assert_non_null(want), assert_non_null(got);
        for (int c = 0; c < C; c++)
            for (size_t i = 0; i < n; i++) all[(size_t)c * n + i] = rnd(c, i);
        float *tmp = malloc((size_t)kern_cpu_chunk_tree_levels(C) * n * sizeof(float));
        assert_non_null(tmp);
        kern_cpu_chunk_tree(all, C, n, want, tmp);
        float *d_all = dev_from(all, (size_t)C * n * sizeof(float)), *d_out = kern_cuda_malloc(n * sizeof(float));
        kern_cuda_chunk_tree(d_out, d_all, C, n, NULL);
        kern_cuda_download(got, d_out, n * sizeof(float));
        long long b = 0;
        for (size_t i = 0; i < n; i++) b += memcmp(&got[i], &want[i], sizeof(float)) != 0;
        /* comm's host copy of the tree (comm_chunk_tree, the MPI fallback's sum) gives the same bits */
        comm_chunk_tree(all, C, n, tmp);
        const long long bc = memcmp(tmp, want, n * sizeof(float)) != 0;
        if (bc) printf("[rank %d] comm_chunk_tree C=%d differs from kern_cpu_chunk_tree\n", g_w.rank, C);
        b += bc;
        free(tmp);
        if (b) printf("[rank %d] tree kernel C=%d: %lld of %zu elements differ from kern_cpu_chunk_tree\n", g_w.rank, C, b, n);
        bad += b;
        kern_cuda_free(d_all), kern_cuda_free(d_out);
        free(all), free(want), free(got);
    }
    printf("[rank %d] tree kernel == kern_cpu_chunk_tree for C in 1..100: %lld differing elements\n", g_w.rank, bad);
    assert_int_equal(total(bad), 0);
}

/* ---- chunk sums */

/* One comm_nccl_chunk_sum over `scope`: chunk c of the C partials is f(c, i); returns this rank's result (n). */
static float *chunk_sum(comm_nccl_scope scope, int C, size_t n, float (*f)(int, size_t), br_status *st) {
    int c0, c1;
    comm_nccl_chunk_range(g_c, scope, C, &c0, &c1);
    float *mine = malloc(((size_t)(c1 - c0) * n + 1) * sizeof(float)), *out = malloc(n * sizeof(float));
    assert_non_null(mine), assert_non_null(out);
    for (int c = c0; c < c1; c++)
        for (size_t i = 0; i < n; i++) mine[(size_t)(c - c0) * n + i] = f(c, i);
    float *d_mine = dev_from(mine, (size_t)(c1 - c0) * n * sizeof(float)), *d_out = kern_cuda_malloc(n * sizeof(float));
    kern_cuda_memset(d_out, 0xff, n * sizeof(float)); /* NaN: an element never written fails */
    kern_cuda_sync();
    *st = comm_nccl_chunk_sum(g_c, scope, d_mine, C, n, d_out, g_s, kern_cuda_chunk_tree);
    *st = comm_nccl_wait(g_c, scope, g_s, *st);
    if (*st == BR_OK) kern_cuda_download(out, d_out, n * sizeof(float));
    kern_cuda_free(d_mine), kern_cuda_free(d_out);
    free(mine);
    return out;
}

static float exact_term(int c, size_t i) { return (float)((c + 1) * (int)(i % 7)); }

static void test_chunk_sum_exact(void **state) {
    (void)state;
    need_nccl();
    static const int Cs[] = {16, 7, 3, 1, 32};
    static const size_t ns[] = {1, 4099, 100003};
    long long bad = 0, failed = 0;
    for (int sc = 0; sc < 2; sc++) {
        const comm_nccl_scope scope = (comm_nccl_scope)sc;
        for (size_t a = 0; a < sizeof Cs / sizeof Cs[0]; a++)
            for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
                const int C = Cs[a];
                const size_t n = ns[b];
                br_status st;
                float *out = chunk_sum(scope, C, n, exact_term, &st);
                long long wrong = 0;
                if (st != BR_OK) {
                    printf("[rank %d] %s C=%d n=%zu: %s\n", g_w.rank, scope_name(scope), C, n, br_last_error());
                    failed++;
                } else {
                    for (size_t i = 0; i < n; i++) wrong += out[i] != (float)((long long)(i % 7) * C * (C + 1) / 2);
                }
                printf("[rank %d/%d] chunk_sum %-5s (%d of %d) C=%-3d n=%-6zu: %lld wrong (exact inputs)\n", g_w.rank,
                       g_w.size, scope_name(scope), comm_nccl_rank(g_c, scope), comm_nccl_size(g_c, scope), C, n,
                       wrong);
                bad += wrong;
                free(out);
            }
    }
    assert_int_equal(total(failed), 0);
    assert_int_equal(total(bad), 0);
}

static void test_chunk_sum_bits(void **state) {
    (void)state;
    need_nccl();
    static const int Cs[] = {16, 7, 3, 1, 32, 5};
    const size_t n = 4099;
    long long bad = 0, failed = 0;
    for (int sc = 0; sc < 2; sc++) {
        const comm_nccl_scope scope = (comm_nccl_scope)sc;
        for (size_t a = 0; a < sizeof Cs / sizeof Cs[0]; a++) {
            const int C = Cs[a];
            float *all = malloc((size_t)C * n * sizeof(float)), *want = malloc(n * sizeof(float));
            assert_non_null(all), assert_non_null(want);
            for (int c = 0; c < C; c++)
                for (size_t i = 0; i < n; i++) all[(size_t)c * n + i] = rnd(c, i);
            comm_chunk_tree(all, C, n, want); /* one process, every chunk: the reference bits */
            br_status st;
            float *out = chunk_sum(scope, C, n, rnd, &st);
            long long differ = 0;
            if (st != BR_OK) {
                printf("[rank %d] %s C=%d: %s\n", g_w.rank, scope_name(scope), C, br_last_error());
                failed++;
            } else {
                for (size_t i = 0; i < n; i++) differ += memcmp(&out[i], &want[i], sizeof(float)) != 0;
            }
            printf("[rank %d/%d] chunk_sum %-5s C=%-3d n=%zu: %lld differ from the 1-process CPU tree\n", g_w.rank,
                   g_w.size, scope_name(scope), C, n, differ);
            bad += differ;
            free(all), free(want), free(out);
        }
    }
    assert_int_equal(total(failed), 0);
    assert_int_equal(total(bad), 0);
}

/* ---- byte collectives */

static void test_allgather(void **state) {
    (void)state;
    need_nccl();
    static const size_t sizes[] = {1, 7, 4096, ((size_t)1 << 20) + 3};
    long long bad = 0, failed = 0;
    for (int sc = 0; sc < 2; sc++) {
        const comm_nccl_scope scope = (comm_nccl_scope)sc;
        const int p = comm_nccl_size(g_c, scope), q = comm_nccl_rank(g_c, scope);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            const size_t bytes = sizes[k];
            uint8_t *send = malloc(bytes), *got = malloc((size_t)p * bytes);
            assert_non_null(send), assert_non_null(got);
            for (size_t i = 0; i < bytes; i++) send[i] = pat(g_w.rank, i);
            uint8_t *d_send = dev_from(send, bytes), *d_recv = kern_cuda_malloc((size_t)p * bytes);
            kern_cuda_memset(d_recv, 0, (size_t)p * bytes);
            kern_cuda_sync();
            br_status st = comm_nccl_allgather(g_c, scope, d_send, bytes, d_recv, g_s);
            st = comm_nccl_wait(g_c, scope, g_s, st);
            long long wrong = 0;
            if (st != BR_OK) {
                printf("[rank %d] allgather %s %zu bytes: %s\n", g_w.rank, scope_name(scope), bytes, br_last_error());
                failed++;
            } else {
                kern_cuda_download(got, d_recv, (size_t)p * bytes);
                /* slot k holds the bytes of the scope's rank k, i.e. world rank (this rank's group start + k) */
                const int base = g_w.rank - q;
                for (int r = 0; r < p; r++)
                    for (size_t i = 0; i < bytes; i++) wrong += got[(size_t)r * bytes + i] != pat(base + r, i);
            }
            printf("[rank %d/%d] allgather %-5s %8zu bytes x %d: %lld wrong bytes\n", g_w.rank, g_w.size,
                   scope_name(scope), bytes, p, wrong);
            bad += wrong;
            kern_cuda_free(d_send), kern_cuda_free(d_recv);
            free(send), free(got);
        }
    }
    assert_int_equal(total(failed), 0);
    assert_int_equal(total(bad), 0);
}

static void test_bcast(void **state) {
    (void)state;
    need_nccl();
    static const size_t sizes[] = {1, 4099, ((size_t)4 << 20) + 1};
    long long bad = 0, failed = 0;
    for (int sc = 0; sc < 2; sc++) {
        const comm_nccl_scope scope = (comm_nccl_scope)sc;
        const int p = comm_nccl_size(g_c, scope), q = comm_nccl_rank(g_c, scope);
        const int roots[2] = {0, p - 1};
        for (int ri = 0; ri < 2; ri++)
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                const int root = roots[ri], root_world = g_w.rank - q + root;
                const size_t bytes = sizes[k];
                uint8_t *h = malloc(bytes);
                assert_non_null(h);
                for (size_t i = 0; i < bytes; i++) h[i] = pat(root_world + 100, i);
                uint8_t *d = kern_cuda_malloc(bytes);
                if (q == root) kern_cuda_upload(d, h, bytes);
                else kern_cuda_memset(d, 0x5a, bytes);
                kern_cuda_sync();
                br_status st = comm_nccl_bcast(g_c, scope, d, bytes, root, g_s);
                st = comm_nccl_wait(g_c, scope, g_s, st);
                long long wrong = 0;
                if (st != BR_OK) {
                    printf("[rank %d] bcast %s: %s\n", g_w.rank, scope_name(scope), br_last_error());
                    failed++;
                } else {
                    uint8_t *got = malloc(bytes);
                    assert_non_null(got);
                    kern_cuda_download(got, d, bytes);
                    for (size_t i = 0; i < bytes; i++) wrong += got[i] != h[i];
                    free(got);
                }
                printf("[rank %d/%d] bcast %-5s root %d %8zu bytes: %lld wrong bytes\n", g_w.rank, g_w.size,
                       scope_name(scope), root, bytes, wrong);
                bad += wrong;
                kern_cuda_free(d);
                free(h);
            }
    }
    /* a root outside the scope is refused on every rank, before anything is enqueued */
    uint8_t *d = kern_cuda_malloc(16);
    br_status st = comm_nccl_bcast(g_c, COMM_NCCL_WORLD, d, 16, g_w.size, g_s);
    long long refused = st == BR_EINVAL && strstr(br_last_error(), "is not a rank") != NULL;
    kern_cuda_free(d);
    assert_int_equal(total(failed), 0);
    assert_int_equal(total(bad), 0);
    assert_int_equal(total(refused), g_w.size);
}

/* ---- weights */

#define W_BYTES (((size_t)96 << 20) + 13)
#define W_CHUNK ((size_t)16 << 20)

static uint8_t *weights_host(void) {
    uint8_t *h = malloc(W_BYTES);
    assert_non_null(h);
    for (size_t i = 0; i < W_BYTES; i += 8) {
        uint64_t z = mix(0xfeed, i);
        memcpy(h + i, &z, W_BYTES - i < 8 ? W_BYTES - i : 8);
    }
    return h;
}

static void test_bcast_weights(void **state) {
    (void)state;
    need_nccl();
    uint8_t *h = weights_host(), *got = malloc(W_BYTES);
    assert_non_null(got);
    const uint64_t want_fp = br_hash64(h, W_BYTES, 0);
    long long bad = 0, failed = 0;
    for (int root = 0; root < g_w.size; root += g_w.size > 1 ? g_w.size - 1 : 1) {
        uint8_t *d = kern_cuda_malloc(W_BYTES);
        if (g_w.rank == root) kern_cuda_upload(d, h, W_BYTES);
        else kern_cuda_memset(d, 0xab, W_BYTES);
        kern_cuda_sync();
        comm_nccl_bcast_stats s;
        br_status st = comm_nccl_bcast_weights(g_c, d, W_BYTES, root, W_CHUNK, &s);
        long long wrong = 0;
        if (st != BR_OK) {
            printf("[rank %d] bcast_weights: %s\n", g_w.rank, br_last_error());
            failed++;
        } else {
            kern_cuda_download(got, d, W_BYTES);
            wrong = memcmp(got, h, W_BYTES) != 0;
            wrong += s.fingerprint != want_fp;
            if (g_w.rank == 0)
                printf("bcast_weights (%s) root %d: %zu bytes in %d chunks of %zu MiB: %.4f s, %.2f GB/s; fingerprint "
                       "%016llx checked in %.4f s\n", comm_nccl_handle_backend(g_c), root, (size_t)W_BYTES, s.n_chunks,
                       W_CHUNK >> 20, s.seconds, s.gbps, (unsigned long long)s.fingerprint, s.hash_seconds);
        }
        printf("[rank %d/%d] bcast_weights root %d: copy %s, fingerprint %s\n", g_w.rank, g_w.size, root,
               st == BR_OK && memcmp(got, h, W_BYTES) == 0 ? "bitwise equal" : "DIFFERS",
               st == BR_OK && s.fingerprint == want_fp ? "== br_hash64(source)" : "WRONG");
        bad += wrong;
        kern_cuda_free(d);
        if (g_w.size == 1) break;
    }
    free(h), free(got);
    assert_int_equal(total(failed), 0);
    assert_int_equal(total(bad), 0);
}

static void test_fingerprint_corrupt(void **state) {
    (void)state;
    need_nccl();
    uint8_t *h = weights_host();
    const uint64_t want_fp = br_hash64(h, W_BYTES, 0);
    uint8_t *d = dev_from(h, W_BYTES);
    const int bad_rank = g_w.size - 1;
    const size_t off = W_BYTES / 3 + 5;
    char who[64], tag[64];
    snprintf(who, sizeof who, "rank %d holds", bad_rank);
    snprintf(tag, sizeof tag, "[rank %d]", bad_rank);
    long long ok = 0;

    /* intact: every check passes, against the root and against the source's hash */
    br_status st = comm_nccl_check_fingerprint(g_c, d, W_BYTES, 0, NULL, NULL, NULL);
    ok += st == BR_OK;
    st = comm_nccl_check_fingerprint(g_c, d, W_BYTES, 0, &want_fp, NULL, NULL);
    ok += st == BR_OK;

    /* one flipped bit on the last rank */
    if (g_w.rank == bad_rank) {
        uint8_t b = h[off] ^ 0x10;
        kern_cuda_upload(d + off, &b, 1);
    }
    kern_cuda_sync();
    int expected_ok = 2;
    if (g_w.size > 1) { /* against the root's bytes (the root is intact) */
        st = comm_nccl_check_fingerprint(g_c, d, W_BYTES, 0, NULL, NULL, NULL);
        const int named = st == BR_ERUNTIME && strstr(br_last_error(), who) && strstr(br_last_error(), tag);
        printf("[rank %d] corrupted byte on rank %d, check against the root: %s\n", g_w.rank, bad_rank, br_last_error());
        ok += named;
        expected_ok++;
    }
    /* against the source's hash: with one rank the only way to see it */
    st = comm_nccl_check_fingerprint(g_c, d, W_BYTES, 0, &want_fp, NULL, NULL);
    const int named = st == BR_ERUNTIME && strstr(br_last_error(), who) && strstr(br_last_error(), "expected") &&
                      (g_w.size == 1 || strstr(br_last_error(), tag));
    printf("[rank %d] corrupted byte on rank %d, check against the source: %s\n", g_w.rank, bad_rank, br_last_error());
    ok += named;
    expected_ok++;
    kern_cuda_free(d);
    free(h);
    assert_int_equal(total(ok), (long long)expected_ok * g_w.size);
}

/* ---- a rank fails while the others wait in a collective (runs last: the handle is dead afterwards) */

static void test_failure_agreed(void **state) {
    (void)state;
    need_nccl();
    const int bad_rank = g_w.size - 1;
    const size_t bytes = (size_t)64 << 20;
    uint8_t *d = kern_cuda_malloc(bytes);
    kern_cuda_memset(d, 1, bytes);
    kern_cuda_sync();
    br_status st = BR_OK;
    if (g_w.rank == bad_rank) st = br_fail(BR_ERUNTIME, "injected failure before the broadcast");
    else st = comm_nccl_bcast(g_c, COMM_NCCL_WORLD, d, bytes, 0, g_s); /* waits for bad_rank, who never joins */
    st = comm_nccl_wait(g_c, COMM_NCCL_WORLD, g_s, st);
    char tag[64];
    snprintf(tag, sizeof tag, "[rank %d] injected failure", bad_rank);
    printf("[rank %d] after the vote: %s\n", g_w.rank, st == BR_OK ? "ok (WRONG)" : br_last_error());
    long long ok = st == BR_ERUNTIME && (g_w.size == 1 ? strstr(br_last_error(), "injected failure") != NULL
                                                        : strstr(br_last_error(), tag) != NULL);
    /* the handle is dead: later calls say so instead of hanging */
    st = comm_nccl_bcast(g_c, COMM_NCCL_WORLD, d, 16, 0, g_s);
    ok += st == BR_ERUNTIME && strstr(br_last_error(), "aborted") != NULL;
    kern_cuda_stream_sync(g_s);
    kern_cuda_free(d);
    assert_int_equal(total(ok), 2LL * g_w.size);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--count-gpus")) { /* for the wrapper script: no MPI */
        printf("%d\n", kern_cuda_device_count());
        return 0;
    }
    if (comm_init(&argc, &argv, &g_w) != BR_OK) return 3;
    kern_cuda_set_abort_hook(comm_abort_job); /* a device error on one rank stops every rank */
    g_gpu = kern_cuda_device_count() > 0;
    MPI_Allreduce(MPI_IN_PLACE, &g_gpu, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (argc > 1 && !strcmp(argv[1], "--init-only")) {
        br_status st = comm_nccl_init(&g_w, &g_c);
        if (st != BR_OK) {
            if (g_w.rank == 0) fprintf(stderr, "comm_nccl_init: %s\n", br_last_error());
            comm_finalize(&g_w);
            return 3;
        }
        st = comm_agree(&g_w, comm_nccl_destroy(g_c));
        if (g_w.rank == 0) printf("comm_nccl_init on %d ranks: %s\n", g_w.size, st == BR_OK ? "ok" : br_last_error());
        comm_finalize(&g_w);
        return st == BR_OK ? 0 : 3;
    }
    /* TP groups of 2 when the rank count allows, so that both scopes are exercised on 2, 4, 8 GPUs */
    if (g_w.size % 2 == 0 && comm_agree(&g_w, comm_tp_split(&g_w, 2)) != BR_OK) return 3;
    if (g_gpu) {
        char name[256];
        kern_cuda_device_name(g_w.local_rank, name, sizeof name);
        if (comm_nccl_init(&g_w, &g_c) != BR_OK) snprintf(g_init_err, sizeof g_init_err, "%s", br_last_error());
        else g_s = kern_cuda_stream_create();
        printf("[rank %d/%d] local rank %d, GPU %d (%s), backend %s, tp %d\n", g_w.rank, g_w.size, g_w.local_rank,
               g_c ? comm_nccl_device(g_c) : -1, name, comm_nccl_handle_backend(g_c), g_w.tp_size);
    } else if (g_w.rank == 0) {
        printf("no CUDA device: GPU tests skipped\n");
    }
    fflush(stdout);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_kernel),    cmocka_unit_test(test_chunk_sum_exact),
        cmocka_unit_test(test_chunk_sum_bits), cmocka_unit_test(test_allgather),
        cmocka_unit_test(test_bcast),          cmocka_unit_test(test_bcast_weights),
        cmocka_unit_test(test_fingerprint_corrupt),
        cmocka_unit_test(test_failure_agreed), /* last: leaves the handle dead */
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_s) kern_cuda_stream_free(g_s);
    comm_nccl_destroy(g_c);
    comm_finalize(&g_w);
    return rc;
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
