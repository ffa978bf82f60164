/* attention_ref.c - plain multi-head attention and its probabilities (the references of
 * ops->attention and ops->attention_probs; the CPU kernels also finish odd shapes with them). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

/* Plain reference of attention_probs: per (query, head) the scores, their max, exp and sum. */
void msam_ref_attention_probs(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k,
                                  ptrdiff_t ldk, int nq, int nk, int heads, int dh) {
    const float scale = 1.0f / sqrtf((float)dh);
    for (int i = 0; i < nq; i++)
        for (int h = 0; h < heads; h++) {
            const float *qi = q + (size_t)i * ldq + (size_t)h * dh;
            float *p = P + (size_t)i * ldp + (size_t)h * nk;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < nk; j++) {
                float dot = 0.0f;
                for (int d = 0; d < dh; d++) dot += qi[d] * k[(size_t)j * ldk + (size_t)h * dh + d];
                p[j] = dot * scale;
                mx = fmaxf(mx, p[j]);
            }
            for (int j = 0; j < nk; j++) sum += (p[j] = expf(p[j] - mx));
            for (int j = 0; j < nk; j++) p[j] /= sum;
        }
}

/* Plain reference: three loops per (head, query), softmax with the max subtracted. */
void msam_ref_attention(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                            const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh) {
    const float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < nq; i++) {
            const float *qi = q + (size_t)i * ldq + (size_t)h * dh;
            float *o = out + (size_t)i * heads * dh + (size_t)h * dh;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < nk; j++) {
                float dot = 0.0f;
                for (int d = 0; d < dh; d++) dot += qi[d] * k[(size_t)j * ldk + (size_t)h * dh + d];
                mx = fmaxf(mx, dot * scale);
            }
            for (int d = 0; d < dh; d++) o[d] = 0.0f;
            for (int j = 0; j < nk; j++) {
                float dot = 0.0f;
                for (int d = 0; d < dh; d++) dot += qi[d] * k[(size_t)j * ldk + (size_t)h * dh + d];
                float p = expf(dot * scale - mx);
                sum += p;
                for (int d = 0; d < dh; d++) o[d] += p * v[(size_t)j * ldv + (size_t)h * dh + d];
            }
            for (int d = 0; d < dh; d++) o[d] /= sum;
        }
}
