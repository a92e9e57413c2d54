/* Tests for the rank watchdog's settings: --comm-timeout parsing (common/tuning.c), the heartbeat period, and a
 * single rank starting and stopping it (no peers: nothing to watch). Stopped and killed ranks under mpirun -np 2:
 * tests/cli/mpi_no_hang.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "comm/comm.h"
#include "common/tuning.h"

static void test_parse_ok(void **state) {
    (void)state;
    int v = -7;
    assert_int_equal(br_comm_timeout_parse("--comm-timeout", "0", &v), BR_OK);
    assert_int_equal(v, 0);
    assert_int_equal(br_comm_timeout_parse("--comm-timeout", "5", &v), BR_OK);
    assert_int_equal(v, 5);
    assert_int_equal(br_comm_timeout_parse("--comm-timeout", "030", &v), BR_OK);
    assert_int_equal(v, 30);
    assert_int_equal(br_comm_timeout_parse("--comm-timeout", "86400", &v), BR_OK);
    assert_int_equal(v, BR_COMM_TIMEOUT_MAX);
    assert_int_equal(br_tuning_default().comm_timeout_s, BR_COMM_TIMEOUT_DEFAULT);
}

static void test_parse_bad(void **state) {
    (void)state;
    static const char *const bad[] = {"", "-1", "+5", " 5", "5 ", "5s", "1.5", "1e3", "0x10", "86401",
                                      "99999999999999999999", "nan", "-0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int v = 42;
        assert_int_equal(br_comm_timeout_parse("--comm-timeout", bad[i], &v), BR_EINVAL);
        assert_int_equal(v, 42); /* unchanged on error */
        assert_non_null(strstr(br_last_error(), "--comm-timeout: '"));
        assert_non_null(strstr(br_last_error(), bad[i]));
    }
}

static void test_period(void **state) {
    (void)state;
    /* min(timeout / 5, 1 s): several heartbeats fit in a timeout, never more than one a second */
    assert_true(comm_watch_period(1.0) == 0.2);
    assert_true(comm_watch_period(3.0) == 0.6);
    assert_true(comm_watch_period(5.0) == 1.0);
    assert_true(comm_watch_period(30.0) == 1.0);
    assert_true(comm_watch_period(86400.0) == 1.0);
}

/* One rank (singleton MPI): there is no peer, so no thread and no duplicate communicator; stop is then a no-op, and
 * so is a second stop. comm_finalize calls stop as well. */
static void test_single_rank(void **state) {
    (void)state;
    int argc = 1;
    char arg0[] = "test_comm_watch", *args[] = {arg0, NULL}, **argv = args;
    comm_world w;
    assert_int_equal(comm_init(&argc, &argv, &w), BR_OK);
    assert_int_equal(w.size, 1);
    assert_int_equal(comm_watch_start(&w, 5, "test"), BR_OK);
    comm_watch_enter("comm_agree", __func__);
    assert_int_equal(comm_agree(&w, BR_OK), BR_OK);
    comm_watch_leave();
    comm_watch_stop();
    comm_watch_stop();
    comm_finalize(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_period),
        cmocka_unit_test(test_single_rank),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
