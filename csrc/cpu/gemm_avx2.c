/* gemm_avx2.c - AVX2+FMA GEMM micro-kernel: 6 x 16 register tile (12 ymm accumulators) over a
 * packed 16-wide panel of B, with bias / residual / activation fused into the final store. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdint.h>

#include "gemm_internal.h"
#include "activation.h"

/* Function attributes rather than -mavx2: the file builds with the project's plain flags and the
 * code only runs after the driver has checked the CPU. */
#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline, target("avx2,fma")))

enum { MR = 6, NR = 16 };

INL __m256 gelu8(__m256 x) {
    float t[8];
    _mm256_storeu_ps(t, x);
    for (int i = 0; i < 8; i++) t[i] = msam_gelu(t[i]);
    return _mm256_loadu_ps(t);
}

INL __m256 act8(__m256 v, msam_act act) {
    if (act == MSAM_ACT_RELU) return _mm256_max_ps(v, _mm256_setzero_ps());
    if (act == MSAM_ACT_GELU) return gelu8(v);
    return v;
}

/* Epilogue of one 8-float piece of a C row. full: all 8 lanes in range, else lanes of mask. */
INL void epi8(__m256 v, float *c, const float *r, const float *bias, int flags, msam_act act,
              int full, __m256i mask) {
    if (flags & MSAM_EPI_FIRST) {
        if (bias) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, mask));
        if (r) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(r) : _mm256_maskload_ps(r, mask));
    } else {
        v = _mm256_add_ps(v, full ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, mask));
    }
    if (flags & MSAM_EPI_LAST) v = act8(v, act);
    if (full)
        _mm256_storeu_ps(c, v);
    else
        _mm256_maskstore_ps(c, mask, v);
}

/* rows x 16 tile (rows a compile-time constant after inlining, so the accumulator array is
 * kept in registers). A row i is read only for i < rows and columns < kc. */
INL void tile(const int rows, int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
              ptrdiff_t ldc, int nr, const msam_gemm_epi *e, const float *r) {
    __m256 acc[MR][2];
    const float *ap[MR];
    for (int i = 0; i < rows; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
        ap[i] = a + (ptrdiff_t)i * lda;
    }
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(b + (ptrdiff_t)p * NR);
        const __m256 b1 = _mm256_load_ps(b + (ptrdiff_t)p * NR + 8);
        for (int i = 0; i < rows; i++) {
            const __m256 av = _mm256_broadcast_ss(ap[i] + p);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const int flags = e->flags;
    const msam_act act = e->act;
    const float *bias = e->bias;
    if (nr == NR) {
        const __m256i none = _mm256_setzero_si256();
        for (int i = 0; i < rows; i++) {
            float *ci = c + (ptrdiff_t)i * ldc;
            const float *ri = r ? r + (ptrdiff_t)i * e->ldr : NULL;
            epi8(acc[i][0], ci, ri, bias, flags, act, 1, none);
            epi8(acc[i][1], ci + 8, ri ? ri + 8 : NULL, bias ? bias + 8 : NULL, flags, act, 1, none);
        }
    } else {
        /* column tail: lanes j < nr of the two halves; masked loads never touch memory past nr */
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), iota);
        for (int i = 0; i < rows; i++) {
            float *ci = c + (ptrdiff_t)i * ldc;
            const float *ri = r ? r + (ptrdiff_t)i * e->ldr : NULL;
            epi8(acc[i][0], ci, ri, bias, flags, act, 0, m0);
            if (nr > 8)
                epi8(acc[i][1], ci + 8, ri ? ri + 8 : NULL, bias ? bias + 8 : NULL, flags, act, 0, m1);
        }
    }
}

static TGT void panel_avx2(int m, int kc, const float *a, ptrdiff_t lda, const float *bp, float *c,
                           ptrdiff_t ldc, int nr, const msam_gemm_epi *e) {
    int i = 0;
    for (; i + MR <= m; i += MR)
        tile(MR, kc, a + (ptrdiff_t)i * lda, lda, bp, c + (ptrdiff_t)i * ldc, ldc, nr, e,
             e->r ? e->r + (ptrdiff_t)i * e->ldr : NULL);
    const int rest = m - i;
    if (rest <= 0) return;
    const float *ai = a + (ptrdiff_t)i * lda;
    float *ci = c + (ptrdiff_t)i * ldc;
    const float *ri = e->r ? e->r + (ptrdiff_t)i * e->ldr : NULL;
    switch (rest) {
    case 1: tile(1, kc, ai, lda, bp, ci, ldc, nr, e, ri); break;
    case 2: tile(2, kc, ai, lda, bp, ci, ldc, nr, e, ri); break;
    case 3: tile(3, kc, ai, lda, bp, ci, ldc, nr, e, ri); break;
    case 4: tile(4, kc, ai, lda, bp, ci, ldc, nr, e, ri); break;
    default: tile(5, kc, ai, lda, bp, ci, ldc, nr, e, ri); break;
    }
}

/* kc_max 256: a 256 x 16 panel of B is 16 KiB, half of L1d. */
const msam_gemm_kernel msam_gemm_kernel_avx2 = {"avx2", MR, NR, 256, panel_avx2};

#else
typedef int msam_gemm_avx2_unused; /* ISO C wants a translation unit to declare something */
#endif
