/* Tests for common/philox and rollout/sampler: Philox known answers, keyed draws, greedy, Gumbel-max with
 * hand-made noise, top-k / top-p sets, sampling frequencies, the recorded log-prob, rejected values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "common/br.h"
#include "common/philox.h"
#include "kernels/cpu/kern_cpu.h"
#include "rollout/sampler.h"

/* Deterministic test data: a 64-bit LCG (Knuth MMIX constants), top 24 bits -> [lo, hi). */
static uint64_t g_lcg = 1;
static float lcg_uniform(float lo, float hi) {
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)(g_lcg >> 40) * 0x1p-24f;
}

static void *scratch_new(int V) {
    void *p = malloc(rollout_sample_scratch_bytes(V));
    assert_non_null(p);
    memset(p, 0xff, rollout_sample_scratch_bytes(V)); /* garbage: results must not depend on it */
    return p;
}

/* Random123 kat_vectors, philox4x32 10 rounds. */
static void test_philox_kat(void **state) {
    (void)state;
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t t = 0; t < sizeof kat / sizeof kat[0]; t++) {
        uint32_t out[4];
        br_philox4x32(kat[t].ctr, kat[t].key, out);
        for (int i = 0; i < 4; i++) assert_int_equal(out[i], kat[t].out[i]);
    }
}

static void test_uniform01(void **state) {
    (void)state;
    assert_true(br_uniform01(0u) == 0x1p-24f);
    assert_true(br_uniform01(0x1ffu) == 0x1p-24f); /* the low 9 bits are dropped */
    assert_true(br_uniform01(0x200u) == 3 * 0x1p-24f);
    assert_true(br_uniform01(0x80000000u) == 0.5f + 0x1p-24f);
    assert_true(br_uniform01(0xffffffffu) == 1.0f - 0x1p-24f);
    assert_true(br_uniform01(0xffffffffu) < 1.0f);
    /* every value is finite through the Gumbel transform */
    const uint32_t edge[] = {0u, 0xffffffffu, 0xfffffe00u, 0x1000u};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        float u = br_uniform01(edge[i]);
        assert_true(u > 0.0f && u < 1.0f);
        assert_true(isfinite(-logf(-logf(u))));
    }
}

static void test_keyed_draws(void **state) {
    (void)state;
    const uint64_t seed = 0x0123456789abcdefull, sid = 0xfedcba9876543210ull;
    const uint32_t pos = 77;
    /* the mapping, from the spec: key = seed (lo, hi), counter = (sid lo, sid hi, position, index / 4) */
    for (uint32_t j = 0; j < 12; j++) {
        const uint32_t key[2] = {0x89abcdefu, 0x01234567u};
        const uint32_t ctr[4] = {0x76543210u, 0xfedcba98u, pos, j / 4};
        uint32_t out[4];
        br_philox4x32(ctr, key, out);
        assert_int_equal(br_rand_u32(seed, sid, pos, j), out[j % 4]);
    }
    /* call order: alone, in a forward loop, in a backward loop interleaved with other keys */
    enum { N = 37 };
    uint32_t fwd[N], bwd[N];
    for (int j = 0; j < N; j++) fwd[j] = br_rand_u32(seed, sid, pos, (uint32_t)j);
    for (int j = N - 1; j >= 0; j--) {
        (void)br_rand_u32(seed + 1, sid, pos, (uint32_t)j);
        (void)br_rand_u32(seed, sid + 1, pos + 1, (uint32_t)j);
        bwd[j] = br_rand_u32(seed, sid, pos, (uint32_t)j);
    }
    assert_memory_equal(fwd, bwd, sizeof fwd);
    assert_int_equal(br_rand_u32(seed, sid, pos, 13), fwd[13]);
    /* every part of the key changes the draw */
    assert_int_not_equal(br_rand_u32(seed + 1, sid, pos, 5), fwd[5]);
    assert_int_not_equal(br_rand_u32(seed, sid + 1, pos, 5), fwd[5]);
    assert_int_not_equal(br_rand_u32(seed, sid, pos + 1, 5), fwd[5]);
    assert_int_not_equal(br_rand_u32(seed, sid, pos, 6), fwd[5]);
    /* the sampler's block-wise noise equals the per-draw formula */
    float g[N];
    rollout_gumbel(g, N, seed, sid, (int32_t)pos);
    for (int j = 0; j < N; j++) {
        float expect = -logf(-logf(br_uniform01(fwd[j])));
        assert_memory_equal(&g[j], &expect, sizeof(float));
    }
}

static void test_greedy(void **state) {
    (void)state;
    const float logits[5] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f};
    rollout_sampling s = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .seed = 5};
    void *scratch = scratch_new(5);
    const float noise[5] = {100.0f, 0.0f, 100.0f, 50.0f, 100.0f}; /* ignored at T = 0 */
    assert_int_equal(rollout_sample_with_noise(logits, 5, &s, noise, scratch), 1); /* tie 1 vs 3 -> 1 */
    for (int32_t pos = 0; pos < 50; pos++) assert_int_equal(rollout_sample(logits, 5, &s, 9, pos, scratch), 1);
    s.top_p = 0.1f;
    s.top_k = 2;
    assert_int_equal(rollout_sample(logits, 5, &s, 9, 3, scratch), 1);
    free(scratch);
}

static void test_gumbel_hand(void **state) {
    (void)state;
    const float logits[3] = {1.0f, 2.0f, 3.0f};
    void *scratch = scratch_new(3);
    rollout_sampling s = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .seed = 0};
    /* T=1: 1+2.5=3.5 > 2+0=2, 3+0=3 -> 0 */
    const float g1[3] = {2.5f, 0.0f, 0.0f};
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g1, scratch), 0);
    /* T=0.5: 2+3.5=5.5 < 6+0 -> 2; with 4.5: 6.5 > 6 -> 0 */
    s.temperature = 0.5f;
    const float g2[3] = {3.5f, 1.5f, 0.0f}; /* 5.5, 5.5, 6 */
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g2, scratch), 2);
    const float g3[3] = {4.5f, 0.0f, 0.0f};
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g3, scratch), 0);
    /* exact tie 2+4 = 4+2 = 6+0: the lowest id wins */
    const float g4[3] = {4.0f, 2.0f, 0.0f};
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g4, scratch), 0);
    const float g5[3] = {-1.0f, 2.0f, 0.0f}; /* 1, 6, 6 */
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g5, scratch), 1);
    /* noise from uniforms through g = -log(-log u): u = exp(-1) -> g = 0, u = exp(-exp(-3)) -> g = 3.
     * T = 1: 1 + 3 = 4 beats 2 + 0 and 3 + 0 -> token 0. */
    s.temperature = 1.0f;
    const float g6[3] = {-logf(-logf(expf(-expf(-3.0f)))), -logf(-logf(expf(-1.0f))), -logf(-logf(expf(-1.0f)))};
    assert_true(fabsf(g6[0] - 3.0f) < 1e-3f && fabsf(g6[1]) < 1e-6f);
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g6, scratch), 0);
    free(scratch);
}

static void test_topk1_is_greedy(void **state) {
    (void)state;
    enum { V = 1000 };
    float *logits = malloc(V * sizeof(float)), *g = malloc(V * sizeof(float));
    assert_non_null(logits);
    assert_non_null(g);
    g_lcg = 42;
    for (int j = 0; j < V; j++) logits[j] = lcg_uniform(-5.0f, 5.0f);
    logits[500] = 9.0f;
    logits[731] = 9.0f; /* tie with 500: 500 wins */
    void *scratch = scratch_new(V);
    rollout_sampling s = {.temperature = 1.3f, .top_p = 1.0f, .top_k = 1, .seed = 7};
    for (int j = 0; j < V; j++) g[j] = (j == 500) ? -30.0f : 30.0f; /* noise that favours everyone else */
    assert_int_equal(rollout_sample_with_noise(logits, V, &s, g, scratch), 500);
    for (int32_t pos = 0; pos < 200; pos++) assert_int_equal(rollout_sample(logits, V, &s, 3, pos, scratch), 500);
    s.top_p = 0.01f; /* top-p 0.01 keeps one token here too */
    s.top_k = 0;
    assert_int_equal(rollout_sample_with_noise(logits, V, &s, g, scratch), 500);
    free(scratch);
    free(logits);
    free(g);
}

static void test_top_p(void **state) {
    (void)state;
    /* probabilities 0.2, 0.5, 0.3 at ids 0, 1, 2: candidate order 1, 2, 0 */
    const float logits[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
    void *scratch = scratch_new(3);
    int32_t kept[3];
    rollout_sampling s = {.temperature = 1.0f, .top_p = 0.4f, .top_k = 0, .seed = 1};
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 1); /* 0.5 >= 0.4 */
    assert_int_equal(kept[0], 1);
    s.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8 */
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 2);
    assert_int_equal(kept[0], 1);
    assert_int_equal(kept[1], 2);
    s.top_p = 0.9f; /* 0.8 < 0.9 */
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 3);
    assert_int_equal(kept[2], 0);
    s.top_p = 1.0f;
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 3);
    /* the boundary "mass >= top_p": 0.5 + 0.3 is not exact in fp32 (the softmax goes through logf/expf),
     * so the threshold is the fp32 mass itself, formed as documented: expf of the full-vocabulary
     * log-softmax, summed from the top. top_p == that mass keeps 2; one ulp more keeps 3. */
    float lp[3];
    kern_cpu_logsoftmax(lp, logits, 3, 1.0f);
    float mass2 = expf(lp[1]) + expf(lp[2]);
    assert_true(fabsf(mass2 - 0.8f) < 1e-6f);
    s.top_p = mass2;
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 2);
    s.top_p = nextafterf(mass2, 2.0f);
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 3);
    /* top-k first, top-p mass over the full vocabulary (not renormalised over the k) */
    s.top_k = 2;
    s.top_p = 0.9f;
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 2);
    s.top_p = 0.6f;
    assert_int_equal(rollout_filter(logits, 3, &s, kept, scratch), 2);
    /* a filtered-out token never wins, whatever its noise */
    s.top_k = 0;
    s.top_p = 0.75f;
    const float g[3] = {100.0f, 0.0f, 0.0f};
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g, scratch), 1);
    const float g2[3] = {100.0f, 0.0f, 0.3f}; /* log 0.3 + 0.3 = -0.904 < log 0.5 = -0.693 -> 1 */
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g2, scratch), 1);
    const float g3[3] = {100.0f, 0.0f, 0.6f}; /* log 0.3 + 0.6 = -0.604 > -0.693 -> 2 */
    assert_int_equal(rollout_sample_with_noise(logits, 3, &s, g3, scratch), 2);
    free(scratch);
}

/* Candidate order with ties and NaN, against a plain insertion sort. */
static int ref_before(const float *x, int a, int b) {
    if (isnan(x[a]) != isnan(x[b])) return isnan(x[b]);
    if (!isnan(x[a]) && x[a] != x[b]) return x[a] > x[b];
    return a < b;
}

static void test_filter_order(void **state) {
    (void)state;
    enum { V = 3000 };
    float *logits = malloc(V * sizeof(float)), *lp = malloc(V * sizeof(float));
    int32_t *ref = malloc(V * sizeof(int32_t)), *kept = malloc(V * sizeof(int32_t));
    assert_true(logits && lp && ref && kept);
    g_lcg = 7;
    for (int j = 0; j < V; j++) logits[j] = floorf(lcg_uniform(-8.0f, 8.0f) * 4.0f) / 4.0f; /* many ties */
    for (int i = 0; i < V; i++) { /* insertion sort */
        int j = i;
        while (j > 0 && ref_before(logits, i, ref[j - 1])) {
            ref[j] = ref[j - 1];
            j--;
        }
        ref[j] = i;
    }
    void *scratch = scratch_new(V);
    const int ks[] = {1, 2, 37, 500, V};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        rollout_sampling s = {.temperature = 0.8f, .top_p = 1.0f, .top_k = ks[t], .seed = 0};
        assert_int_equal(rollout_filter(logits, V, &s, kept, scratch), ks[t]);
        assert_memory_equal(kept, ref, (size_t)ks[t] * sizeof(int32_t));
    }
    /* top-p alone: the expected prefix length from the reference order */
    rollout_sampling s = {.temperature = 0.8f, .top_p = 0.9f, .top_k = 0, .seed = 0};
    kern_cpu_logsoftmax(lp, logits, V, s.temperature);
    float mass = 0.0f;
    int expect = V;
    for (int i = 0; i < V; i++) {
        mass += expf(lp[ref[i]]);
        if (mass >= s.top_p) {
            expect = i + 1;
            break;
        }
    }
    assert_true(expect > 1 && expect < V);
    /* kept may live in the scratch buffer itself */
    int32_t *in_scratch = (int32_t *)scratch;
    assert_int_equal(rollout_filter(logits, V, &s, in_scratch, scratch), expect);
    assert_memory_equal(in_scratch, ref, (size_t)expect * sizeof(int32_t));
    /* NaN logits rank last and are never sampled */
    logits[0] = NAN;
    s.top_p = 1.0f;
    s.top_k = V;
    assert_int_equal(rollout_filter(logits, V, &s, kept, scratch), V);
    assert_int_equal(kept[V - 1], 0);
    for (int32_t pos = 0; pos < 100; pos++) assert_int_not_equal(rollout_sample(logits, V, &s, 1, pos, scratch), 0);
    free(scratch);
    free(logits);
    free(lp);
    free(ref);
    free(kept);
}

/* count[j] within 3 sigma of N * p[j] for every token. */
static void check_frequencies(const float *logits, int V, rollout_sampling *s, const double *p, uint64_t sid0) {
    enum { N = 20000 };
    int count[8] = {0};
    void *scratch = scratch_new(V);
    for (int i = 0; i < N; i++) {
        int32_t t = rollout_sample(logits, V, s, sid0 + (uint64_t)i, 11, scratch);
        assert_true(t >= 0 && t < V);
        count[t]++;
    }
    for (int j = 0; j < V; j++) {
        double mean = N * p[j], sigma = sqrt(N * p[j] * (1.0 - p[j]));
        if (fabs(count[j] - mean) > 3.0 * sigma + 1e-9) fail_msg("token %d: %d draws, expected %.1f +- 3*%.1f", j, count[j], mean, sigma);
    }
    free(scratch);
}

static void test_statistics(void **state) {
    (void)state;
    const float logits[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    rollout_sampling s = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .seed = 1234};
    const double p1[4] = {0.1, 0.2, 0.3, 0.4};
    check_frequencies(logits, 4, &s, p1, 0);
    s.temperature = 0.5f; /* p ~ p^2 */
    const double p2[4] = {0.01 / 0.3, 0.04 / 0.3, 0.09 / 0.3, 0.16 / 0.3};
    check_frequencies(logits, 4, &s, p2, 100000);
    s.temperature = 1.0f; /* top-2: renormalised over {0.3, 0.4} */
    s.top_k = 2;
    const double p3[4] = {0.0, 0.0, 0.3 / 0.7, 0.4 / 0.7};
    check_frequencies(logits, 4, &s, p3, 200000);
}

static void test_sample_pure(void **state) {
    (void)state;
    enum { V = 257 };
    float logits[V], g[V];
    g_lcg = 99;
    for (int j = 0; j < V; j++) logits[j] = lcg_uniform(-3.0f, 3.0f);
    void *scratch = scratch_new(V);
    rollout_sampling s = {.temperature = 0.9f, .top_p = 0.95f, .top_k = 50, .seed = 31337};
    int32_t first[20];
    for (int32_t pos = 0; pos < 20; pos++) first[pos] = rollout_sample(logits, V, &s, 42, pos, scratch);
    for (int32_t pos = 19; pos >= 0; pos--) { /* other samples in between, other order: same tokens */
        (void)rollout_sample(logits, V, &s, 43, pos, scratch);
        assert_int_equal(rollout_sample(logits, V, &s, 42, pos, scratch), first[pos]);
    }
    /* rollout_sample == selection with the noise formula computed here, draw by draw */
    for (int32_t pos = 0; pos < 20; pos++) {
        for (int j = 0; j < V; j++) g[j] = -logf(-logf(br_uniform01(br_rand_u32(s.seed, 42, (uint32_t)pos, (uint32_t)j))));
        assert_int_equal(rollout_sample_with_noise(logits, V, &s, g, scratch), first[pos]);
    }
    int distinct = 0;
    for (int i = 1; i < 20; i++) distinct += first[i] != first[0];
    assert_true(distinct > 0); /* the position is part of the key */
    free(scratch);
}

static void test_logprob(void **state) {
    (void)state;
    enum { V = 64 };
    float logits[V];
    g_lcg = 5;
    for (int j = 0; j < V; j++) logits[j] = lcg_uniform(-2.0f, 2.0f);
    const float temps[] = {1.0f, 0.7f, 1.5f};
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        double m = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) m = fmax(m, (double)logits[j] / temps[t]);
        for (int j = 0; j < V; j++) sum += exp((double)logits[j] / temps[t] - m);
        for (int j = 0; j < V; j++) {
            double ref = (double)logits[j] / temps[t] - m - log(sum);
            float got = rollout_logprob(logits, V, temps[t], j);
            if (fabs(got - ref) > 1e-6) fail_msg("T=%g token %d: %.9g vs %.9g", (double)temps[t], j, (double)got, ref);
        }
    }
    /* greedy records log-softmax at T = 1, bit for bit the kernel's value */
    for (int j = 0; j < V; j++) {
        float a = rollout_logprob(logits, V, 0.0f, j), b = rollout_logprob(logits, V, 1.0f, j);
        float c = kern_cpu_logprob(logits, V, 1.0f, j);
        assert_memory_equal(&a, &b, sizeof a);
        assert_memory_equal(&a, &c, sizeof a);
    }
}

static void test_sampling_check(void **state) {
    (void)state;
    const rollout_sampling ok = {.temperature = 0.7f, .top_p = 0.9f, .top_k = 40, .seed = 1};
    assert_int_equal(rollout_sampling_check(&ok, 100), BR_OK);
    rollout_sampling s = ok;
    s.temperature = 0.0f;
    s.top_p = 1.0f;
    s.top_k = 100;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_OK);
    s.top_k = 0;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_OK);

    s = ok;
    s.temperature = -1.0f;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "temperature = -1"));
    s.temperature = NAN;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "temperature"));
    s.temperature = INFINITY;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);

    const float bad_p[] = {0.0f, 1.5f, -0.1f, NAN, 1.0000001f};
    for (size_t i = 0; i < sizeof bad_p / sizeof bad_p[0]; i++) {
        s = ok;
        s.top_p = bad_p[i];
        assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);
        assert_non_null(strstr(br_last_error(), "top_p = "));
    }
    s = ok;
    s.top_p = 1.5f;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "top_p = 1.5"));

    s = ok;
    s.top_k = -1;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "top_k = -1"));
    s.top_k = 101;
    assert_int_equal(rollout_sampling_check(&s, 100), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "top_k = 101"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_kat),    cmocka_unit_test(test_uniform01),     cmocka_unit_test(test_keyed_draws),
        cmocka_unit_test(test_greedy),        cmocka_unit_test(test_gumbel_hand),   cmocka_unit_test(test_topk1_is_greedy),
        cmocka_unit_test(test_top_p),         cmocka_unit_test(test_filter_order),  cmocka_unit_test(test_statistics),
        cmocka_unit_test(test_sample_pure),   cmocka_unit_test(test_logprob),       cmocka_unit_test(test_sampling_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
