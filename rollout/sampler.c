/* Token sampler (see sampler.h): candidate filtering in a fixed total order, Gumbel-max with Philox noise,
 * and the one log-prob function that generate and score share. */
#include "sampler.h"

#include <assert.h>
#include <float.h>
#include <math.h>

#include "common/philox.h"
#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern_math.h"

br_status rollout_sampling_check(const rollout_sampling *s, int vocab) {
    if (!isfinite(s->temperature) || s->temperature < 0.0f)
        return br_fail(BR_EINVAL, "temperature = %.9g: expected a finite value >= 0 (0 = greedy)", (double)s->temperature);
    if (s->temperature > 0.0f && s->temperature < FLT_MIN) /* subnormal: logits / T overflow */
        return br_fail(BR_EINVAL, "temperature = %.9g: too small to divide by (subnormal in fp32); expected 0 (greedy) "
                                  "or >= %.9g", (double)s->temperature, (double)FLT_MIN);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) /* written so that NaN fails too; %.9g shows 1.00000012 as such */
        return br_fail(BR_EINVAL, "top_p = %.9g: expected 0 < top_p <= 1 (1 = off)", (double)s->top_p);
    if (s->top_k < 0) return br_fail(BR_EINVAL, "top_k = %d: must be >= 0 (0 = off)", (int)s->top_k);
    if (s->top_k > vocab)
        return br_fail(BR_EINVAL, "top_k = %d: expected 0 (off) or 1 .. %d (the vocabulary size)", (int)s->top_k, vocab);
    return BR_OK;
}

size_t rollout_sample_scratch_bytes(int V) { return (size_t)V * (sizeof(int32_t) + 2 * sizeof(float)); }

/* Scratch layout: [0, V) int32 candidate ids | [V, 2V) fp32 log-probs | [2V, 3V) fp32 noise. */
static int32_t *scratch_ids(void *scratch) { return (int32_t *)scratch; }
static float *scratch_logprobs(void *scratch, int V) { return (float *)((char *)scratch + (size_t)V * sizeof(int32_t)); }
static float *scratch_noise(void *scratch, int V) {
    return (float *)((char *)scratch + (size_t)V * (sizeof(int32_t) + sizeof(float)));
}

/* The candidate order: a before b iff (logit desc, id asc); NaN logits after every number. A strict total
 * order on distinct ids, so any correct sort or selection gives the same result. */
static int ranks_before(const float *logits, int32_t a, int32_t b) {
    float la = logits[a], lb = logits[b];
    int na = isnan(la), nb = isnan(lb);
    if (na != nb) return nb;
    if (!na && la != lb) return la > lb;
    return a < b;
}

/* Max-heap on "ranks later": the root is the worst of the ids held. */
static void heap_sift_down(const float *logits, int32_t *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && ranks_before(logits, h[worst], h[l])) worst = l;
        if (r < n && ranks_before(logits, h[worst], h[r])) worst = r;
        if (worst == i) return;
        int32_t t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static void heap_sift_up(const float *logits, int32_t *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!ranks_before(logits, h[p], h[i])) return;
        int32_t t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* The best k ids in candidate order, written sorted to out (k): a bounded heap then a heap sort. */
static void select_top(const float *logits, int V, int k, int32_t *out) {
    int n = 0;
    for (int32_t j = 0; j < V; j++) {
        if (n < k) {
            out[n] = j;
            heap_sift_up(logits, out, n++);
        } else if (ranks_before(logits, j, out[0])) {
            out[0] = j;
            heap_sift_down(logits, out, n, 0);
        }
    }
    for (int end = n - 1; end > 0; end--) { /* move the worst to the back: ascending candidate order */
        int32_t t = out[0];
        out[0] = out[end];
        out[end] = t;
        heap_sift_down(logits, out, end, 0);
    }
}

int rollout_filter(const float *logits, int V, const rollout_sampling *s, int32_t *kept, void *scratch) {
    assert(V > 0 && s->temperature > 0.0f && s->top_k >= 0 && s->top_k <= V);
    int k = s->top_k > 0 ? s->top_k : V;
    select_top(logits, V, k, kept);
    if (!(s->top_p < 1.0f)) return k;
    float *lp = scratch_logprobs(scratch, V);
    kern_cpu_logsoftmax(lp, logits, V, s->temperature);
    float mass = 0.0f;
    for (int i = 0; i < k; i++) {
        mass += kern_expf(lp[kept[i]]);
        if (mass >= s->top_p) return i + 1;
    }
    return k;
}

/* Better candidate for Gumbel-max: larger value, ties -> lower id; NaN never wins. */
static int gumbel_better(float v, int32_t j, float best_v, int32_t best_j) {
    if (isnan(v)) return 0;
    return best_j < 0 || v > best_v || (v == best_v && j < best_j);
}

int32_t rollout_sample_with_noise(const float *logits, int V, const rollout_sampling *s, const float *gumbel,
                                  void *scratch) {
    assert(V > 0 && s->temperature >= 0.0f);
    if (s->temperature == 0.0f) return kern_cpu_argmax(logits, V);
    const float T = s->temperature;
    float best_v = 0.0f;
    int32_t best_j = -1;
    if (s->top_k == 0 && !(s->top_p < 1.0f)) { /* no filter: every token is a candidate, no sort */
        for (int32_t j = 0; j < V; j++) {
            float v = logits[j] / T + gumbel[j];
            if (gumbel_better(v, j, best_v, best_j)) {
                best_v = v;
                best_j = j;
            }
        }
        return best_j < 0 ? 0 : best_j;
    }
    int32_t *kept = scratch_ids(scratch);
    int n = rollout_filter(logits, V, s, kept, scratch);
    for (int i = 0; i < n; i++) {
        int32_t j = kept[i];
        float v = logits[j] / T + gumbel[j];
        if (gumbel_better(v, j, best_v, best_j)) {
            best_v = v;
            best_j = j;
        }
    }
    return best_j < 0 ? kept[0] : best_j;
}

void rollout_gumbel(float *g, int V, uint64_t seed, uint64_t sample_id, int32_t position) {
    uint32_t r[4];
    for (int j0 = 0; j0 < V; j0 += 4) { /* one Philox block serves token ids 4b .. 4b+3 */
        br_rand_u32x4(seed, sample_id, (uint32_t)position, (uint32_t)j0 / 4u, r);
        for (int i = 0; i < 4 && j0 + i < V; i++) g[j0 + i] = -kern_logf(-kern_logf(br_uniform01(r[i])));
    }
}

int32_t rollout_sample(const float *logits, int V, const rollout_sampling *s, uint64_t sample_id, int32_t position,
                       void *scratch) {
    if (s->temperature == 0.0f) return kern_cpu_argmax(logits, V);
    float *g = scratch_noise(scratch, V);
    rollout_gumbel(g, V, s->seed, sample_id, position);
    return rollout_sample_with_noise(logits, V, s, g, scratch);
}

float rollout_logprob(const float *logits, int V, float temperature, int32_t token) {
    assert(token >= 0 && token < V);
    return kern_cpu_logprob(logits, V, temperature == 0.0f ? 1.0f : temperature, token);
}
