/* softmax.c - in-place softmax over many float vectors, for the mask decoder's attention written
 * as matrix products (score matrices of image x token groups, or token x image rows). */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "vec_avx2.h"
#include "threads.h"

/* Vectors handled together: when they are back to back (stride == len) their exponentials are
 * one contiguous run, so short vectors (7 tokens) still fill whole SIMD registers. */
#define BLOCK_VECS 64

/* Pass 1 of a block: v = scale * v - max(scale * v), so every exponent is <= 0. */
static void shift_by_max(float *x, int nvec, ptrdiff_t stride, int len, float scale) {
    for (int a = 0; a < nvec; a++) {
        float *v = x + (ptrdiff_t)a * stride;
        float mx = -INFINITY;
        for (int j = 0; j < len; j++) {
            v[j] *= scale;
            mx = v[j] > mx ? v[j] : mx;
        }
        for (int j = 0; j < len; j++) v[j] -= mx;
    }
}

/* Pass 3: divide each vector by its sum. */
static void normalise(float *x, int nvec, ptrdiff_t stride, int len) {
    for (int a = 0; a < nvec; a++) {
        float *v = x + (ptrdiff_t)a * stride;
        float sum = 0.0f;
        for (int j = 0; j < len; j++) sum += v[j];
        const float inv = 1.0f / sum;
        for (int j = 0; j < len; j++) v[j] *= inv;
    }
}

static void exp_run_plain(float *v, size_t n) {
    for (size_t j = 0; j < n; j++) v[j] = expf(v[j]);
}

#if MSAM_HAVE_AVX2
/* Pass 2: v = exp(v) over a run; the tail goes through the same polynomial via a padded copy, so
 * every element of a vector sees the same exp. */
MSAM_TARGET_AVX2 static void exp_run_avx2(float *v, size_t n) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, exp8(_mm256_loadu_ps(v + j)));
    if (j < n) {
        float tail[8] = {0};
        memcpy(tail, v + j, sizeof(float) * (n - j));
        _mm256_storeu_ps(tail, exp8(_mm256_loadu_ps(tail)));
        memcpy(v + j, tail, sizeof(float) * (n - j));
    }
}

/* One long vector (len >= 8; the token->image rows have 4096) in three vector passes: the scalar
 * passes above carry the max and the sum through one dependency chain per element. */
MSAM_TARGET_AVX2 static void softmax_row_avx2(float *v, int len, float scale) {
    const __m256 sc = _mm256_set1_ps(scale);
    __m256 mx8 = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= len; j += 8) {
        const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(v + j), sc);
        _mm256_storeu_ps(v + j, x);
        mx8 = _mm256_max_ps(mx8, x);
    }
    float mx = hmax8(mx8);
    for (; j < len; j++) {
        v[j] *= scale;
        mx = v[j] > mx ? v[j] : mx;
    }
    const float sum = exp_shift_sum(v, len, mx);
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (j = 0; j + 8 <= len; j += 8) _mm256_storeu_ps(v + j, _mm256_mul_ps(_mm256_loadu_ps(v + j), inv));
    for (; j < len; j++) v[j] *= 1.0f / sum;
}

#endif

void msam_cpu_softmax(float *x, int count, ptrdiff_t stride, int len, float scale) {
    if (count <= 0 || len <= 0 || !x) return;
    void (*exp_run)(float *, size_t) = exp_run_plain;
#if MSAM_HAVE_AVX2
    if (msam_use_avx2()) exp_run = exp_run_avx2;
#endif
    const int threads = (double)count * len >= 32768.0 ? msam_threads() : 1;
#if MSAM_HAVE_AVX2
    if (len >= 64 && msam_use_avx2()) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int a = 0; a < count; a++) softmax_row_avx2(x + (ptrdiff_t)a * stride, len, scale);
        return;
    }
#endif
    const int blocks = (count + BLOCK_VECS - 1) / BLOCK_VECS;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int b = 0; b < blocks; b++) {
        const int a0 = b * BLOCK_VECS;
        const int nvec = count - a0 < BLOCK_VECS ? count - a0 : BLOCK_VECS;
        float *xb = x + (ptrdiff_t)a0 * stride;
        shift_by_max(xb, nvec, stride, len, scale);
        if (stride == len) {
            exp_run(xb, (size_t)nvec * (size_t)len);
        } else {
            for (int a = 0; a < nvec; a++) exp_run(xb + (ptrdiff_t)a * stride, (size_t)len);
        }
        normalise(xb, nvec, stride, len);
    }
}

