/* attention.c - the mask decoder's multi-head attention on the CPU: one side is the 4096-token
 * image, the other a handful of prompt tokens, so each (head, query) row is computed whole. */
#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_kernels.h"
#include "threads.h"

#define MAX_STACK_KEYS 4096

/* One query row of one head: softmax(q.K^T * scale) V over nk keys, written to out[0..dh).
 * s holds nk floats. dh is a compile-time constant in the specialised callers so the dot and
 * the accumulation vectorise; restrict tells the compiler out does not alias q/k/v. */
static inline __attribute__((always_inline)) void attend_row(float *restrict out, const float *restrict q,
                                                             const float *restrict k, ptrdiff_t ldk,
                                                             const float *restrict v, ptrdiff_t ldv, int nk,
                                                             int dh, float scale, float *restrict s) {
    float mx = -INFINITY;
    for (int j = 0; j < nk; j++) {
        const float *kj = k + (size_t)j * ldk;
        float dot = 0.0f;
        for (int d = 0; d < dh; d++) dot += q[d] * kj[d];
        s[j] = dot * scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    float sum = 0.0f;
    for (int j = 0; j < nk; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float acc[64] = {0};
    for (int j = 0; j < nk; j++) {
        const float *vj = v + (size_t)j * ldv;
        const float p = s[j];
        for (int d = 0; d < dh; d++) acc[d] += p * vj[d];
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < dh; d++) out[d] = acc[d] * inv;
}

#define DEFINE_ROWS(NAME, DH)                                                                     \
    __attribute__((target_clones("avx2", "default"))) static void NAME(                          \
        float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk, const float *v, \
        ptrdiff_t ldv, int first, int last, int nq, int nk, int heads, int dh, float scale,       \
        float *s) {                                                                               \
        for (int t = first; t < last; t++) {                                                      \
            int h = t / nq, i = t % nq;                                                           \
            attend_row(out + (size_t)i * heads * dh + (size_t)h * dh, q + (size_t)i * ldq + (size_t)h * dh, \
                       k + (size_t)h * dh, ldk, v + (size_t)h * dh, ldv, nk, DH, scale, s);       \
        }                                                                                         \
    }
DEFINE_ROWS(rows_dh16, 16)
DEFINE_ROWS(rows_dh32, 32)
DEFINE_ROWS(rows_any, dh)

void msam_cpu_attention(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                        const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh) {
    const float scale = 1.0f / sqrtf((float)dh);
    const int total = heads * nq;
    if (dh > 64 || nk < 1) { /* not used by MobileSAM; keep it defined */
        msam_cpu_attention_ref(out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh);
        return;
    }
    const int nthreads = (long)nq * nk * heads > 16384 ? msam_threads() : 1;
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        float stack_s[MAX_STACK_KEYS];
        float *s = nk <= MAX_STACK_KEYS ? stack_s : malloc(sizeof(float) * (size_t)nk);
        int nt = 1, id = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads(), id = omp_get_thread_num();
#endif
        const int first = (int)((long)total * id / nt), last = (int)((long)total * (id + 1) / nt);
        if (!s) failed = 1;
        else if (dh == 16) rows_dh16(out, q, ldq, k, ldk, v, ldv, first, last, nq, nk, heads, dh, scale, s);
        else if (dh == 32) rows_dh32(out, q, ldq, k, ldk, v, ldv, first, last, nq, nk, heads, dh, scale, s);
        else rows_any(out, q, ldq, k, ldk, v, ldv, first, last, nq, nk, heads, dh, scale, s);
        if (s != stack_s) free(s);
    }
    /* a thread had no memory for its score row (only with > 4096 keys): redo it all plainly */
    if (failed) msam_cpu_attention_ref(out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh);
}

/* Plain reference: three loops per (head, query), softmax with the max subtracted. */
void msam_cpu_attention_ref(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
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
