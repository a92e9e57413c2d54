/* Tests for comm/: the message buffer (round trip, reads past the end fail), and the collectives on a single
 * rank (singleton MPI). The multi-rank paths run in tests/cli/mpi_*.sh under mpirun -np 2 and 3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "comm/comm.h"

static void test_buf(void **state) {
    (void)state;
    comm_buf b = {0};
    int64_t a = -5, a2 = 0;
    float f[3] = {1.5f, -0.0f, 3e38f}, f2[3];
    for (int i = 0; i < 1000; i++) comm_buf_put(&b, &i, sizeof i); /* grows past the first capacity */
    comm_buf_put(&b, &a, 8);
    comm_buf_put(&b, f, sizeof f);
    assert_int_equal(b.failed, 0);
    for (int i = 0; i < 1000; i++) {
        int v = -1;
        assert_int_equal(comm_buf_get(&b, &v, sizeof v), 0);
        assert_int_equal(v, i);
    }
    assert_int_equal(comm_buf_get(&b, &a2, 8), 0);
    assert_int_equal(a2, a);
    assert_int_equal(comm_buf_get(&b, f2, sizeof f2), 0);
    assert_memory_equal(f, f2, sizeof f);
    assert_int_equal(comm_buf_get(&b, &a2, 1), -1); /* past the end */
    assert_int_equal(b.failed, 1);
    comm_buf_free(&b);
    comm_buf_free(NULL);
}

static void test_single_rank(void **state) {
    comm_world *w = *state;
    assert_int_equal(w->size, 1);
    assert_int_equal(w->rank, 0);
    assert_int_equal(w->local_rank, 0);
    assert_int_equal(w->local_size, 1);
    assert_int_equal(comm_agree(w, BR_OK), BR_OK);
    br_fail(BR_EINVAL, "the reason");
    assert_int_equal(comm_agree(w, BR_EINVAL), BR_EINVAL);
    assert_string_equal(br_last_error(), "the reason");
    /* within the (absent) tensor-parallel group: the rank alone */
    assert_int_equal(comm_tp_agree(w, BR_OK), BR_OK);
    br_fail(BR_EIO, "group reason");
    assert_int_equal(comm_tp_agree(w, BR_EIO), BR_EIO);
    assert_string_equal(br_last_error(), "group reason");
    char *msg = strdup("hello"), *got = NULL;
    size_t len = 6, got_len = 0;
    void *p = msg;
    assert_int_equal(comm_bcast_bytes(w, &p, &len), BR_OK);
    assert_int_equal(comm_gather_bytes(w, msg, 6, (void **)&got, &got_len), BR_OK);
    assert_int_equal(got_len, 6);
    assert_string_equal(got, "hello");
    uint64_t u = 42;
    comm_bcast_u64(w, &u);
    assert_int_equal(u, 42);
    assert_int_equal(comm_owner(w, 12345), 0);
    free(msg);
    free(got);
}

static int setup(void **state) {
    static comm_world w;
    int argc = 0;
    char **argv = NULL;
    if (comm_init(&argc, &argv, &w) != BR_OK) return -1;
    *state = &w;
    return 0;
}

static int teardown(void **state) {
    comm_finalize(*state);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_single_rank),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
