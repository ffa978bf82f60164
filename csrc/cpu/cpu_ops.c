/* cpu_ops.c - the CPU backend's small ops (linear via the packed GEMM, LayerNorm, elementwise,
 * broadcast, transpose, 2x2 space-to-depth, input normalisation). Host memory throughout. */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "cpu_kernels.h"
#include "gemm_internal.h"
#include "threads.h"
#include "vec_avx2.h"

msam_linear *msam_cpu_linear_create(const float *w, const float *bias, int n_out, int k_in) {
    msam_linear *lin = calloc(1, sizeof *lin);
    if (!lin) return NULL;
    lin->n_out = n_out;
    lin->k_in = k_in;
    lin->b = msam_pack_b(w, n_out, k_in);
    if (bias) {
        lin->bias = malloc(sizeof(float) * (size_t)n_out);
        if (lin->bias) memcpy(lin->bias, bias, sizeof(float) * (size_t)n_out);
    }
    if (!lin->b || (bias && !lin->bias)) {
        msam_cpu_linear_free(lin);
        return NULL;
    }
    return lin;
}

void msam_cpu_linear_free(msam_linear *lin) {
    if (!lin) return;
    msam_packed_b_free(lin->b);
    free(lin->bias);
    free(lin);
}

void msam_cpu_linear(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                       const msam_linear *lin, msam_act act, const float *residual,
                       ptrdiff_t ldr) {
    msam_gemm(rows, x, ldx, lin->b, lin->bias, act, residual, ldr, y, ldy);
}

void msam_cpu_matmul(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m,
                       const float *w, ptrdiff_t ws_n, ptrdiff_t ws_k, int n, int k,
                       const float *bias, const float *residual, ptrdiff_t ldr, void *scratch) {
    msam_gemm_dyn(m, x, ldx, w, ws_n, ws_k, n, k, bias, MSAM_ACT_NONE, residual, ldr, y, ldy, scratch);
}

/* Two-pass mean/variance per row, as torch's LayerNorm: var is the biased mean of squares; with
 * ype, ype = y + pe as well; with rstd, the row's 1/sqrt(var + eps). */
static void layernorm_rows(float *y, const float *x, int first, int last, int c,
                           const float *restrict gamma, const float *restrict beta, float eps,
                           const float *pe, float *ype, float *rstd_out) {
    for (int r = first; r < last; r++) {
        const float *xr = x + (size_t)r * c;
        float *yr = y + (size_t)r * c;
        float sum = 0.0f;
        for (int i = 0; i < c; i++) sum += xr[i];
        float mean = sum / (float)c, sq = 0.0f;
        for (int i = 0; i < c; i++) {
            float d = xr[i] - mean;
            sq += d * d;
        }
        float rstd = 1.0f / sqrtf(sq / (float)c + eps);
        if (rstd_out) rstd_out[r] = rstd;
        for (int i = 0; i < c; i++) {
            const float o = (xr[i] - mean) * rstd * gamma[i] + beta[i];
            yr[i] = o;
            if (ype) ype[(size_t)r * c + i] = o + pe[(size_t)r * c + i];
        }
    }
}

#if MSAM_HAVE_AVX2
/* The same for c % 8 == 0 with the sums in 8 lanes (a strict left-to-right sum chains every add
 * and cannot vectorise); y may be x, each row is read before it is written. */
MSAM_TARGET_AVX2 static void layernorm_rows_avx2(float *y, const float *x, int first, int last, int c,
                                                 const float *restrict gamma,
                                                 const float *restrict beta, float eps,
                                                 const float *pe, float *ype, float *rstd_out) {
    const float inv_c = 1.0f / (float)c;
    for (int r = first; r < last; r++) {
        const float *xr = x + (size_t)r * c;
        float *yr = y + (size_t)r * c;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= c; i += 16) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + i + 8));
        }
        if (i < c) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
        const __m256 mean = _mm256_set1_ps(hsum8(_mm256_add_ps(s0, s1)) * inv_c);
        s0 = s1 = _mm256_setzero_ps();
        for (i = 0; i + 16 <= c; i += 16) {
            const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + i), mean);
            const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), mean);
            s0 = _mm256_fmadd_ps(d0, d0, s0);
            s1 = _mm256_fmadd_ps(d1, d1, s1);
        }
        if (i < c) {
            const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + i), mean);
            s0 = _mm256_fmadd_ps(d0, d0, s0);
        }
        const float rs = 1.0f / sqrtf(hsum8(_mm256_add_ps(s0, s1)) * inv_c + eps);
        if (rstd_out) rstd_out[r] = rs;
        const __m256 rstd = _mm256_set1_ps(rs);
        for (i = 0; i < c; i += 8) {
            const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mean), rstd);
            const __m256 o = _mm256_fmadd_ps(d, _mm256_loadu_ps(gamma + i), _mm256_loadu_ps(beta + i));
            _mm256_storeu_ps(yr + i, o);
            if (ype) _mm256_storeu_ps(ype + (size_t)r * c + i, _mm256_add_ps(o, _mm256_loadu_ps(pe + (size_t)r * c + i)));
        }
    }
}
#endif

static void layernorm_rows_any(float *y, const float *x, int first, int last, int c, const float *gamma,
                               const float *beta, float eps, const float *pe, float *ype, float *rstd) {
#if MSAM_HAVE_AVX2
    if (c % 8 == 0 && msam_use_avx2()) {
        layernorm_rows_avx2(y, x, first, last, c, gamma, beta, eps, pe, ype, rstd);
        return;
    }
#endif
    layernorm_rows(y, x, first, last, c, gamma, beta, eps, pe, ype, rstd);
}

void msam_cpu_layernorm_rows(float *y, const float *x, int first, int last, int c, const float *gamma,
                             const float *beta, float eps) {
    layernorm_rows_any(y, x, first, last, c, gamma, beta, eps, NULL, NULL, NULL);
}

void msam_cpu_layernorm_pe(float *y, float *ype, float *rstd, const float *x, const float *pe, int rows,
                             int c, const float *gamma, const float *beta, float eps) {
    const int nt = rows > 64 ? msam_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        const int first = (int)((long)rows * t / nt), last = (int)((long)rows * (t + 1) / nt);
        layernorm_rows_any(y, x, first, last, c, gamma, beta, eps, pe, ype, rstd);
    }
}

void msam_cpu_layernorm(float *y, const float *x, int rows, int c, const float *gamma,
                          const float *beta, float eps) {
    msam_cpu_layernorm_pe(y, NULL, NULL, x, NULL, rows, c, gamma, beta, eps);
}

void msam_cpu_add(float *y, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void msam_cpu_activate(float *y, const float *x, size_t n, msam_act act) {
#if MSAM_HAVE_AVX2
    if (act == MSAM_ACT_GELU && msam_use_avx2()) {
        /* the GEMM epilogue's vector GELU (same accuracy as erff), in chunks over threads */
        const size_t chunk = 16384, nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (n > 65536)
        for (size_t c = 0; c < nchunks; c++) {
            size_t lo = c * chunk, len = n - lo < chunk ? n - lo : chunk;
            msam_gelu_avx2(y + lo, x + lo, len);
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (n > 16384)
    for (size_t i = 0; i < n; i++) y[i] = msam_apply_act(x[i], act);
}

#if MSAM_HAVE_AVX2
/* Whole 8 x 8 blocks of a 16-row band (cols8 = cols rounded down to 8) through transpose8. */
MSAM_TARGET_AVX2 static void transpose_band_avx2(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int i0,
                                                 int i1, int cols8) {
    for (int i = i0; i + 8 <= i1; i += 8)
        for (int j = 0; j < cols8; j += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_ps(x + (ptrdiff_t)(i + t) * ldx + j);
            transpose8(r);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(y + (ptrdiff_t)(j + t) * ldy + i, r[t]);
        }
}
#endif

/* Bands of 16 rows, so both the rows read and the rows written stay in L1; whole 8 x 8 blocks in
 * AVX2 (the decoder's 4096 x 56 score matrices), the rest element by element. */
void msam_cpu_transpose(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols) {
    const int tiles_r = (rows + 15) / 16;
    int use_avx2 = 0;
#if MSAM_HAVE_AVX2
    use_avx2 = msam_use_avx2();
#endif
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if ((long)rows * cols > 65536)
    for (int tr = 0; tr < tiles_r; tr++) {
        const int i0 = tr * 16, i1 = i0 + 16 < rows ? i0 + 16 : rows;
        int r8 = i0, c8 = 0; /* rows [i0, r8) x cols [0, c8) done by the vector blocks */
#if MSAM_HAVE_AVX2
        if (use_avx2) {
            r8 = i0 + (i1 - i0) / 8 * 8;
            c8 = cols / 8 * 8;
            transpose_band_avx2(y, ldy, x, ldx, i0, r8, c8);
        }
#endif
        for (int i = i0; i < i1; i++)
            for (int j = i < r8 ? c8 : 0; j < cols; j++) y[(ptrdiff_t)j * ldy + i] = x[(ptrdiff_t)i * ldx + j];
    }
}

void msam_cpu_space_to_depth2(float *y, const float *x, int h, int w, int c) {
    const int ho = h / 2, wo = w / 2;
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if (h * w * c > 65536)
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++)
            for (int t = 0; t < 4; t++)
                memcpy(y + ((size_t)oy * wo + ox) * 4 * c + (size_t)t * c,
                       x + ((size_t)(2 * oy + t / 2) * w + (2 * ox + t % 2)) * c,
                       sizeof(float) * (size_t)c);
}

void msam_cpu_add_row(float *y, const float *x, const float *row, int rows, int c) {
#pragma omp parallel for schedule(static) num_threads(msam_threads()) if ((long)rows * c > 65536)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * c;
        const float *xr = x ? x + (size_t)r * c : NULL;
        for (int i = 0; i < c; i++) yr[i] = (xr ? xr[i] : 0.0f) + row[i];
    }
}

void msam_cpu_normalize_pad(float *y, int side, const void *x, msam_dtype type, int h, int w,
                            ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x, const float mean[3],
                            const float std[3]) {
#pragma omp parallel for schedule(static) num_threads(msam_threads())
    for (int yy = 0; yy < side; yy++) {
        float *row = y + (size_t)yy * side * 3;
        for (int xx = 0; xx < side; xx++)
            for (int c = 0; c < 3; c++) {
                float v = 0.0f;
                if (yy < h && xx < w) {
                    const ptrdiff_t o = c * stride_c + yy * stride_y + xx * stride_x;
                    const float raw = type == MSAM_U8 ? (float)((const uint8_t *)x)[o] : ((const float *)x)[o];
                    v = (raw - mean[c]) / std[c];
                }
                row[(size_t)xx * 3 + c] = v;
            }
    }
}
