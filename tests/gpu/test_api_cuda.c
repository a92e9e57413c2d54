/* The public C API on a CUDA engine (include/bitroll/bitroll.h), the paths the CPU tests cannot reach:
 * - bitroll_score into device buffers (on_device = 1) equals bitroll_score into host buffers and the log-probs and
 *   digests bitroll_generate returned, bit for bit, in the invariant and fp32 modes, under two budgets;
 * - a weight update set from device buffers (on_device = 1) gives the fingerprint and the completions of the same
 *   update set from host buffers (tiny-qwen3 f32 engine, every tensor replaced by its bf16 sibling's values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bitroll/bitroll.h"
#include "common/br.h"
#include "policy/policy.h"

#ifdef BR_HAVE_CUDA
#include "kernels/cuda/kern_cuda.h"

#define QWEN BR_TEST_DATA "/models/tiny-qwen3"

static bitroll_engine *open_cuda(const char *dir, bitroll_kernels k, int mbt, int seqs) {
    bitroll_engine_opts o;
    bitroll_engine_opts_init(&o);
    o.model_dir = dir;
    o.device = BITROLL_DEVICE_CUDA;
    o.kernels = k;
    o.max_batch_tokens = mbt;
    o.max_seqs = seqs;
    o.max_seq_len = 256;
    bitroll_engine *e = NULL;
    bitroll_error err;
    if (bitroll_engine_open(&o, &e, &err) != BITROLL_OK) fail_msg("open %s: %s", dir, err.message);
    return e;
}

static const int64_t PO[] = {0, 4, 5, 12, 14};
static const int32_t P[] = {1, 17, 300, 5, 7, 900, 901, 902, 903, 904, 905, 906, 40, 41};
static const float TEMP[] = {1.0f, 0.0f, 0.7f, 1.0f};

static bitroll_completions *gen(bitroll_engine *e) {
    bitroll_generate_in in = {4, PO, P, NULL, TEMP, NULL, NULL, NULL, NULL, 1.0f, 24, 5, NULL, 0};
    bitroll_completions *c = NULL;
    if (bitroll_generate(e, &in, &c) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(e));
    return c;
}

static void test_score_on_device(void **state) {
    (void)state;
    if (kern_cuda_device_count() == 0) skip();
    const bitroll_kernels modes[] = {BITROLL_KERNELS_INVARIANT, BITROLL_KERNELS_FP32};
    for (int m = 0; m < 2; m++) {
        bitroll_engine *e = open_cuda(QWEN "/bf16", modes[m], 64, 8);
        bitroll_completions *c = gen(e);
        const int64_t T = c->offsets[c->n];
        bitroll_score_in in = {c->n, PO, P, c->offsets, c->tokens, TEMP};
        float *lp = malloc(4 * (size_t)T), *lp_dev_host = malloc(4 * (size_t)T);
        uint64_t *dg = malloc(8 * (size_t)T), *dg_dev_host = malloc(8 * (size_t)T);
        if (bitroll_score(e, &in, lp, dg, 0) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(e));
        float *d_lp = kern_cuda_malloc(4 * (size_t)T);
        uint64_t *d_dg = kern_cuda_malloc(8 * (size_t)T);
        if (bitroll_score(e, &in, d_lp, d_dg, 1) != BITROLL_OK) fail_msg("%s", bitroll_engine_error(e));
        kern_cuda_download(lp_dev_host, d_lp, 4 * (size_t)T);
        kern_cuda_download(dg_dev_host, d_dg, 8 * (size_t)T);
        assert_memory_equal(lp, c->logprobs, 4 * (size_t)T);
        assert_memory_equal(dg, c->digests, 8 * (size_t)T);
        assert_memory_equal(lp_dev_host, lp, 4 * (size_t)T);
        assert_memory_equal(dg_dev_host, dg, 8 * (size_t)T);
        /* another budget: the same bits */
        bitroll_engine *e2 = open_cuda(QWEN "/bf16", modes[m], 7, 2);
        bitroll_completions *c2 = gen(e2);
        assert_memory_equal(c2->offsets, c->offsets, 8 * (size_t)(c->n + 1));
        assert_memory_equal(c2->tokens, c->tokens, 4 * (size_t)T);
        assert_memory_equal(c2->logprobs, c->logprobs, 4 * (size_t)T);
        print_message("mode %d: %lld tokens: generate == score (host) == score (device), budgets 64/8 and 7/2\n", m,
                      (long long)T);
        bitroll_completions_free(c2);
        bitroll_engine_close(e2);
        kern_cuda_free(d_lp);
        kern_cuda_free(d_dg);
        free(lp);
        free(lp_dev_host);
        free(dg);
        free(dg_dev_host);
        bitroll_completions_free(c);
        bitroll_engine_close(e);
    }
}

static void test_weights_from_device(void **state) {
    (void)state;
    if (kern_cuda_device_count() == 0) skip();
    policy_st *src = NULL, *base = NULL;
    assert_int_equal(policy_st_open(QWEN "/bf16", &src), BR_OK);
    assert_int_equal(policy_st_open(QWEN "/f32", &base), BR_OK);
    assert_int_equal(policy_st_count(src), policy_st_count(base));
    bitroll_engine *h = open_cuda(QWEN "/f32", BITROLL_KERNELS_FP32, 32, 4);
    bitroll_engine *d = open_cuda(QWEN "/f32", BITROLL_KERNELS_FP32, 32, 4);
    const int n = policy_st_count(src);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = policy_st_at(src, i);
        assert_int_equal(t->dtype, ST_BF16);
        assert_string_equal(t->name, policy_st_at(base, i)->name);
        if (bitroll_weights_set(h, t->name, BITROLL_DTYPE_BF16, t->shape, t->ndim, t->data, 0) != BITROLL_OK)
            fail_msg("%s", bitroll_engine_error(h));
        void *dev = kern_cuda_malloc(t->nbytes);
        kern_cuda_upload(dev, t->data, t->nbytes);
        if (bitroll_weights_set(d, t->name, BITROLL_DTYPE_BF16, t->shape, t->ndim, dev, 1) != BITROLL_OK)
            fail_msg("%s", bitroll_engine_error(d));
        kern_cuda_free(dev);
    }
    assert_int_equal(bitroll_weights_commit(h, NULL), BITROLL_OK);
    assert_int_equal(bitroll_weights_commit(d, NULL), BITROLL_OK);
    bitroll_engine_info ih, id;
    bitroll_engine_get_info(h, &ih);
    bitroll_engine_get_info(d, &id);
    assert_string_equal(ih.fingerprint, id.fingerprint);
    assert_int_equal(id.weight_version, 1);
    bitroll_completions *ch = gen(h), *cd = gen(d);
    const size_t T = (size_t)ch->offsets[ch->n];
    assert_memory_equal(cd->offsets, ch->offsets, 8 * (size_t)(ch->n + 1));
    assert_memory_equal(cd->tokens, ch->tokens, 4 * T);
    assert_memory_equal(cd->logprobs, ch->logprobs, 4 * T);
    assert_memory_equal(cd->digests, ch->digests, 8 * T);
    /* and they are new weights: the completions differ from the f32 checkpoint's */
    bitroll_engine *f = open_cuda(QWEN "/f32", BITROLL_KERNELS_FP32, 32, 4);
    bitroll_completions *cf = gen(f);
    assert_false(cf->offsets[cf->n] == ch->offsets[ch->n] && !memcmp(cf->logprobs, ch->logprobs, 4 * T));
    print_message("weights from device buffers: fingerprint %s, %zu tokens equal to the host-set run\n", id.fingerprint, T);
    bitroll_completions_free(cf);
    bitroll_engine_close(f);
    bitroll_completions_free(ch);
    bitroll_completions_free(cd);
    bitroll_engine_close(h);
    bitroll_engine_close(d);
    policy_st_free(src);
    policy_st_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_score_on_device), cmocka_unit_test(test_weights_from_device)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no CUDA backend in this build */
#include "gpu/no_cuda_main.h"
#endif
