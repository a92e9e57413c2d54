/* CPU reference kernels (fp32, fixed reduction order; see kern_cpu.h for the order of every op).
 * These define the numbers: the CUDA fp32 mode and every test compare against them. */
#include "common/chunk_tree.h"
#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern_math.h"

#include <math.h>
#include <string.h>

#include "common/br.h"

/* Weight rows are converted in blocks of this many elements (a multiple of 8, so the lane of element k
 * stays k mod 8 across blocks). */
#define WBLOCK 512

float kern_cpu_wt_get(const kern_wt *w, int64_t n, int64_t k) {
    int64_t i = n * w->sn + k * w->sk;
    switch (w->dtype) {
    case KERN_F32: return ((const float *)w->data)[i];
    case KERN_BF16: return br_bf16_to_f32(((const uint16_t *)w->data)[i]);
    case KERN_F16: return br_f16_to_f32(((const uint16_t *)w->data)[i]);
    }
    return 0.0f;
}

/* Adds a[i]*b[i], i < n, into the 8 lanes; a block starts at a global index that is a multiple of 8. */
static inline void lanes_dot(float l[8], const float *a, const float *b, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += a[i + j] * b[i + j];
    for (int j = 0; i + j < n; j++) l[j] += a[i + j] * b[i + j];
}

static inline void lanes_sum(float l[8], const float *a, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += a[i + j];
    for (int j = 0; i + j < n; j++) l[j] += a[i + j];
}

static inline float lanes_combine(const float l[8]) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

float kern_cpu_dot(const float *a, const float *b, int n) {
    float l[8] = {0};
    lanes_dot(l, a, b, n);
    return lanes_combine(l);
}

float kern_cpu_sum(const float *a, int n) {
    float l[8] = {0};
    lanes_sum(l, a, n);
    return lanes_combine(l);
}

/* Converts W[n, k0 .. k0+len) to fp32. */
static void wt_row_block(float *dst, const kern_wt *w, int64_t n, int64_t k0, int len) {
    if (w->sk == 1) {
        const int64_t base = n * w->sn + k0;
        switch (w->dtype) {
        case KERN_F32: memcpy(dst, (const float *)w->data + base, (size_t)len * sizeof(float)); return;
        case KERN_BF16: {
            const uint16_t *s = (const uint16_t *)w->data + base;
            for (int i = 0; i < len; i++) dst[i] = br_bf16_to_f32(s[i]);
            return;
        }
        case KERN_F16: {
            const uint16_t *s = (const uint16_t *)w->data + base;
            for (int i = 0; i < len; i++) dst[i] = br_f16_to_f32(s[i]);
            return;
        }
        }
    }
    for (int i = 0; i < len; i++) dst[i] = kern_cpu_wt_get(w, n, k0 + i);
}

/* Rows of x handled together per converted block of W (bounded stack). */
#define MBLOCK 32

void kern_cpu_matmul_ld(float *out, const float *x, int64_t ldx, const kern_wt *w, const float *bias, int M) {
    const int64_t N = w->n, K = w->k;
    /* Output columns are independent: threads split n, and each (m, n) is one thread's 8-lane dot whose lanes
     * persist across the K blocks, so neither the thread count nor the blocking changes a bit. */
    if (K <= WBLOCK) {
        /* Common case: one converted row of W serves every m. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
        for (int64_t n = 0; n < N; n++) {
            float wbuf[WBLOCK];
            wt_row_block(wbuf, w, n, 0, (int)K);
            for (int m = 0; m < M; m++) {
                float l[8] = {0};
                lanes_dot(l, x + (int64_t)m * ldx, wbuf, (int)K);
                const float acc = lanes_combine(l);
                out[(int64_t)m * N + n] = bias ? acc + bias[n] : acc;
            }
        }
        return;
    }
    /* Long rows: each block of W is converted once per MBLOCK rows of x. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t n = 0; n < N; n++) {
        float wbuf[WBLOCK];
        float lanes[MBLOCK][8];
        for (int m0 = 0; m0 < M; m0 += MBLOCK) {
            const int mb = M - m0 < MBLOCK ? M - m0 : MBLOCK;
            memset(lanes, 0, (size_t)mb * sizeof lanes[0]);
            for (int64_t k0 = 0; k0 < K; k0 += WBLOCK) {
                const int len = (int)(K - k0 < WBLOCK ? K - k0 : WBLOCK);
                wt_row_block(wbuf, w, n, k0, len);
                for (int i = 0; i < mb; i++) lanes_dot(lanes[i], x + (int64_t)(m0 + i) * ldx + k0, wbuf, len);
            }
            for (int i = 0; i < mb; i++) {
                const float acc = lanes_combine(lanes[i]);
                out[(int64_t)(m0 + i) * N + n] = bias ? acc + bias[n] : acc;
            }
        }
    }
}

void kern_cpu_matmul(float *out, const float *x, const kern_wt *w, const float *bias, int M) {
    kern_cpu_matmul_ld(out, x, w->k, w, bias, M);
}

/* The pairwise chunk tree lives in common/chunk_tree.c, one copy for the kernels and comm/. */
int kern_cpu_chunk_tree_levels(int C) { return br_chunk_tree_levels(C); }

void kern_cpu_chunk_tree(const float *all, int C, size_t n, float *out, float *tmp) { br_chunk_tree(all, C, n, out, tmp); }

void kern_cpu_rmsnorm(float *out, const float *x, const float *w, int M, int D, float eps) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (int64_t)m * D;
        float *o = out + (int64_t)m * D;
        float ss = kern_cpu_dot(xr, xr, D);
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        for (int i = 0; i < D; i++) o[i] = (xr[i] * inv) * w[i];
    }
}

void kern_cpu_layernorm(float *out, const float *x, const float *w, const float *b, int M, int D, float eps) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (int64_t)m * D;
        float *o = out + (int64_t)m * D;
        float mean = kern_cpu_sum(xr, D) / (float)D;
        float l[8] = {0};
        int i = 0;
        for (; i + 8 <= D; i += 8)
            for (int j = 0; j < 8; j++) {
                float d = xr[i + j] - mean;
                l[j] += d * d;
            }
        for (int j = 0; i + j < D; j++) {
            float d = xr[i + j] - mean;
            l[j] += d * d;
        }
        float rstd = 1.0f / sqrtf(lanes_combine(l) / (float)D + eps);
        for (i = 0; i < D; i++) o[i] = ((xr[i] - mean) * rstd) * w[i] + b[i];
    }
}

void kern_cpu_rope_table(float *rope, int max_pos, int hd, double theta, kern_dtype inv_freq_dtype) {
    const int half = hd / 2;
    for (int i = 0; i < half; i++) {
        /* inv_freq is a float32 buffer in HF, and a model run in a 16-bit dtype holds it in that dtype */
        float f = (float)(1.0 / pow(theta, (double)(2 * i) / (double)hd));
        if (inv_freq_dtype == KERN_BF16) f = br_bf16_to_f32(br_f32_to_bf16(f));
        if (inv_freq_dtype == KERN_F16) f = br_f16_to_f32(br_f32_to_f16(f));
        for (int p = 0; p < max_pos; p++) {
            double a = (double)p * (double)f;
            rope[((int64_t)p * half + i) * 2 + 0] = (float)cos(a);
            rope[((int64_t)p * half + i) * 2 + 1] = (float)sin(a);
        }
    }
}

void kern_cpu_rope(float *x, const int32_t *pos, const float *rope, int M, int n_heads, int hd) {
    const int half = hd / 2;
    for (int m = 0; m < M; m++) {
        const float *cs = rope + (int64_t)pos[m] * half * 2;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)m * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = cs[2 * i + 1];
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c - x2 * s;
                v[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

void kern_cpu_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = (g / (1.0f + kern_expf(-g))) * up[i];
    }
}

void kern_cpu_gelu_tanh(float *x, int64_t n) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + kern_tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

void kern_cpu_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

void kern_cpu_embed(float *out, const kern_wt *emb, const kern_wt *pos_emb, const int32_t *tokens, const int32_t *pos,
                    int M) {
    const int64_t D = emb->k;
    for (int m = 0; m < M; m++) {
        float *o = out + (int64_t)m * D;
        wt_row_block(o, emb, tokens[m], 0, (int)D);
        if (pos_emb && pos_emb->data)
            for (int64_t d = 0; d < D; d++) o[d] += kern_cpu_wt_get(pos_emb, pos[m], d);
    }
}

static inline float *kv_slot(float *base, const kern_kv_layer *kv, const int32_t *table, int32_t t) {
    int64_t page = table[t / kv->page_size];
    int64_t slot = page * kv->page_size + t % kv->page_size;
    return base + slot * kv->n_kv * kv->hd;
}

void kern_cpu_kv_write(kern_kv_layer *kv, const float *k_new, const float *v_new, const int32_t *const *page_tables,
                       const int32_t *pos, int M) {
    const int64_t row = (int64_t)kv->n_kv * kv->hd;
    for (int m = 0; m < M; m++) {
        memcpy(kv_slot(kv->k, kv, page_tables[m], pos[m]), k_new + m * row, (size_t)row * sizeof(float));
        memcpy(kv_slot(kv->v, kv, page_tables[m], pos[m]), v_new + m * row, (size_t)row * sizeof(float));
    }
}

#define KERN_CPU_MAX_HD 512

void kern_cpu_attention(float *out, const float *q, const kern_kv_layer *kv, const int32_t *const *page_tables,
                        const int32_t *pos, int M, int n_heads, float scale) {
    const int hd = kv->hd, group = n_heads / kv->n_kv;
    /* (row, head) pairs are independent: threads split them, each computed whole by one thread. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t mh = 0; mh < (int64_t)M * n_heads; mh++) {
        const int m = (int)(mh / n_heads), h = (int)(mh % n_heads);
        float s[KERN_ATTN_CHUNK];
        float acc[KERN_CPU_MAX_HD], cs[KERN_CPU_MAX_HD];
        const int n_keys = pos[m] + 1;
        const float *qh = q + ((int64_t)m * n_heads + h) * hd;
        const int kvh = h / group;
        float mx = -INFINITY, l = 0.0f;
        for (int d = 0; d < hd; d++) acc[d] = 0.0f;
        for (int c0 = 0; c0 < n_keys; c0 += KERN_ATTN_CHUNK) {
            const int len = n_keys - c0 < KERN_ATTN_CHUNK ? n_keys - c0 : KERN_ATTN_CHUNK;
            float cmax = -INFINITY;
            for (int j = 0; j < len; j++) {
                const float *kj = kv_slot(kv->k, kv, page_tables[m], c0 + j) + (int64_t)kvh * hd;
                s[j] = kern_cpu_dot(qh, kj, hd) * scale;
                if (s[j] > cmax) cmax = s[j];
            }
            const float mnew = cmax > mx ? cmax : mx;
            const float alpha = mx == -INFINITY ? 0.0f : kern_expf(mx - mnew);
            float psum = 0.0f;
            for (int d = 0; d < hd; d++) cs[d] = 0.0f;
            for (int j = 0; j < len; j++) {
                const float p = kern_expf(s[j] - mnew);
                const float *vj = kv_slot(kv->v, kv, page_tables[m], c0 + j) + (int64_t)kvh * hd;
                psum += p;
                for (int d = 0; d < hd; d++) cs[d] += p * vj[d];
            }
            l = l * alpha + psum;
            for (int d = 0; d < hd; d++) acc[d] = acc[d] * alpha + cs[d];
            mx = mnew;
        }
        float *o = out + ((int64_t)m * n_heads + h) * hd;
        for (int d = 0; d < hd; d++) o[d] = acc[d] / l;
    }
}

int kern_cpu_argmax(const float *x, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best < 0 ? 0 : best;
}

/* m = max_j x_j/T and lse = kern_logf(sum_j kern_expf(x_j/T - m)) in the 8-lane order. */
static void row_lse(const float *x, int n, float temperature, float *m_out, float *lse_out) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) {
        float v = x[i] / temperature;
        if (v > m) m = v;
    }
    float l[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += kern_expf(x[i + j] / temperature - m);
    for (int j = 0; i + j < n; j++) l[j] += kern_expf(x[i + j] / temperature - m);
    *m_out = m;
    *lse_out = kern_logf(lanes_combine(l));
}

float kern_cpu_logprob(const float *x, int n, float temperature, int token) {
    float m, lse;
    row_lse(x, n, temperature, &m, &lse);
    return (x[token] / temperature - m) - lse;
}

void kern_cpu_logsoftmax(float *out, const float *x, int n, float temperature) {
    float m, lse;
    row_lse(x, n, temperature, &m, &lse);
    for (int i = 0; i < n; i++) out[i] = (x[i] / temperature - m) - lse;
}

uint64_t kern_cpu_digest(const float *x, int n) {
    uint64_t d = 0;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        d += kern_digest_term((uint32_t)i, bits);
    }
    return d;
}
