/* The main() of a GPU test in a build without the CUDA backend: one test that reports itself skipped (never
 * passed). Included once, at the end of a test file, in its #else branch of BR_HAVE_CUDA. */
static void test_cuda_backend(void **state) {
    (void)state;
    printf("built without the CUDA backend: GPU tests skipped\n");
    skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cuda_backend)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
