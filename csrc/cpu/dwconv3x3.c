/* dwconv3x3.c - depthwise 3x3 convolution (padding 1, stride 1 or 2) on channels-last maps, bias
 * and activation fused. Weights are tap-major [9][c] so every tap is a contiguous channel vector. */
#include <stddef.h>
#include <stdlib.h>

#include "activation.h"
#include "cpu_kernels.h"
#include "threads.h"

#include "vec_avx2.h"

/* Input rows of output row oy: r[ky] is input row oy*stride - 1 + ky, or NULL outside the map. */
static void row_pointers(const float *r[3], const float *x, int h, int w, int c, int stride, int oy) {
    for (int ky = 0; ky < 3; ky++) {
        int iy = oy * stride - 1 + ky;
        r[ky] = (iy >= 0 && iy < h) ? x + (size_t)iy * w * c : NULL;
    }
}

/* Valid horizontal taps of output column ox: kx in [*k0, *k1). */
static inline void col_taps(int ox, int w, int stride, int *k0, int *k1) {
    int ix0 = ox * stride - 1;
    *k0 = ix0 < 0 ? -ix0 : 0;
    *k1 = ix0 + 3 > w ? w - ix0 : 3;
}

/* Portable row kernel: plain loops over channels (the compiler vectorises the c loop). */
static void dw_row_generic(float *y, const float *const r[3], int w, int wo, int c, int stride,
                           const float *w9c, const float *bias, msam_act act) {
    for (int ox = 0; ox < wo; ox++) {
        float *yo = y + (size_t)ox * c;
        int k0, k1;
        col_taps(ox, w, stride, &k0, &k1);
        for (int ch = 0; ch < c; ch++) yo[ch] = bias ? bias[ch] : 0.0f;
        for (int ky = 0; ky < 3; ky++) {
            if (!r[ky]) continue;
            for (int kx = k0; kx < k1; kx++) {
                const float *xi = r[ky] + (size_t)(ox * stride - 1 + kx) * c;
                const float *wt = w9c + (size_t)(ky * 3 + kx) * c;
                for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch] * wt[ch];
            }
        }
        if (act != MSAM_ACT_NONE)
            for (int ch = 0; ch < c; ch++) yo[ch] = msam_apply_act(yo[ch], act);
    }
}

#if MSAM_HAVE_AVX2
/* 8 channels of an interior pixel: the three kernel rows accumulate in separate chains (so the
 * 9 FMAs are not one dependent sequence), then the activation. a, m, d point at the pixel left
 * of the output's centre in the rows above, at and below; wt at tap 0 of these channels. */
MSAM_TARGET_AVX2 static inline __m256 dw_px8(const float *a, const float *m, const float *d,
                                             const float *wt, size_t c, __m256 acc, msam_act act) {
    __m256 s1 = _mm256_mul_ps(_mm256_loadu_ps(m), _mm256_loadu_ps(wt + 3 * c));
    __m256 s2 = _mm256_mul_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(wt + 6 * c));
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(wt), acc);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(m + c), _mm256_loadu_ps(wt + 4 * c), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(d + c), _mm256_loadu_ps(wt + 7 * c), s2);
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(wt + c), acc);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(m + 2 * c), _mm256_loadu_ps(wt + 5 * c), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(d + 2 * c), _mm256_loadu_ps(wt + 8 * c), s2);
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * c), _mm256_loadu_ps(wt + 2 * c), acc);
    acc = _mm256_add_ps(acc, _mm256_add_ps(s1, s2));
    if (act == MSAM_ACT_GELU) acc = gelu8(acc);
    else if (act == MSAM_ACT_RELU) acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    return acc;
}

MSAM_TARGET_AVX2 static inline __m256 act8(__m256 v, msam_act act) {
    if (act == MSAM_ACT_GELU) return gelu8(v);
    if (act == MSAM_ACT_RELU) return _mm256_max_ps(v, _mm256_setzero_ps());
    return v;
}

/* Output pixels [ox0, ox1) of one row, one pixel at a time: any stride, any border; weights
 * read from L1 ([9][c] is at most 9*640 floats here). Channels past the last multiple of 8 go
 * through the scalar tail. */
MSAM_TARGET_AVX2 static void dw_px_avx2(float *y, const float *const r[3], int w, int ox0, int ox1,
                                        int c, int stride, const float *w9c, const float *bias,
                                        msam_act act) {
    const int c8 = c & ~7;
    const size_t cs = (size_t)c;
    for (int ox = ox0; ox < ox1; ox++) {
        float *yo = y + (size_t)ox * c;
        int k0, k1;
        col_taps(ox, w, stride, &k0, &k1);
        const int ix0 = ox * stride - 1;
        if (k0 == 0 && k1 == 3 && r[0] && r[2]) {
            const float *a = r[0] + (size_t)ix0 * c, *m = r[1] + (size_t)ix0 * c,
                        *d = r[2] + (size_t)ix0 * c;
            for (int ch = 0; ch < c8; ch += 8) {
                const __m256 b0 = bias ? _mm256_loadu_ps(bias + ch) : _mm256_setzero_ps();
                _mm256_storeu_ps(yo + ch, dw_px8(a + ch, m + ch, d + ch, w9c + ch, cs, b0, act));
            }
        } else {
            for (int ch = 0; ch < c8; ch += 8) {
                __m256 acc = bias ? _mm256_loadu_ps(bias + ch) : _mm256_setzero_ps();
                for (int ky = 0; ky < 3; ky++) {
                    if (!r[ky]) continue;
                    for (int kx = k0; kx < k1; kx++)
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(r[ky] + (size_t)(ix0 + kx) * c + ch),
                                              _mm256_loadu_ps(w9c + (size_t)(ky * 3 + kx) * c + ch), acc);
                }
                _mm256_storeu_ps(yo + ch, act8(acc, act));
            }
        }
        for (int ch = c8; ch < c; ch++) {
            float s = bias ? bias[ch] : 0.0f;
            for (int ky = 0; ky < 3; ky++) {
                if (!r[ky]) continue;
                for (int kx = k0; kx < k1; kx++)
                    s += r[ky][(size_t)(ix0 + kx) * c + ch] * w9c[(size_t)(ky * 3 + kx) * c + ch];
            }
            yo[ch] = msam_apply_act(s, act);
        }
    }
}

#endif

void msam_cpu_dwconv3x3(float *y, const float *x, int h, int w, int c, int stride,
                        const float *w9c, const float *bias, msam_act act) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    const int par = (size_t)ho * wo * c > 32768;
#if MSAM_HAVE_AVX2
    if (msam_use_avx2()) {
        /* Tasks are strips of about 32 KB of output row by DW_ROWS rows: walking down a strip
         * reuses two of the three input row pieces from L2, so each input row comes from memory
         * about once rather than three times (three whole rows of a wide map exceed L2). Within
         * a pixel all channels go in order: pixels are c floats apart, often a power of two, and
         * walking one channel block across many pixels would thrash a few cache sets. */
        enum { DW_ROWS = 8 };
        int strip = 8192 / (c > 0 ? c : 1);
        if (strip < 8) strip = 8;
        const int ns = (wo + strip - 1) / strip, nr = (ho + DW_ROWS - 1) / DW_ROWS;
#pragma omp parallel for schedule(dynamic) num_threads(msam_threads()) if (par)
        for (int t = 0; t < ns * nr; t++) {
            const int ox0 = (t % ns) * strip, ox1 = ox0 + strip < wo ? ox0 + strip : wo;
            const int oy0 = (t / ns) * DW_ROWS, oy1 = oy0 + DW_ROWS < ho ? oy0 + DW_ROWS : ho;
            for (int oy = oy0; oy < oy1; oy++) {
                const float *r[3];
                row_pointers(r, x, h, w, c, stride, oy);
                dw_px_avx2(y + (size_t)oy * wo * c, r, w, ox0, ox1, c, stride, w9c, bias, act);
            }
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (par)
    for (int oy = 0; oy < ho; oy++) {
        const float *r[3];
        row_pointers(r, x, h, w, c, stride, oy);
        dw_row_generic(y + (size_t)oy * wo * c, r, w, wo, c, stride, w9c, bias, act);
    }
}

