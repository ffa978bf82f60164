/* gemm_avx512.c - AVX-512F GEMM micro-kernel: 8 x 32 register tile (16 zmm accumulators) over
 * a packed 32-wide panel of B; the same structure as gemm_avx2.c with mask registers for tails. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdint.h>

#include "gemm_internal.h"
#include "activation.h"

#define TGT __attribute__((target("avx512f")))
#define INL static inline __attribute__((always_inline, target("avx512f")))

enum { MR = 8, NR = 32 };

INL __m512 gelu16(__m512 x) {
    float t[16];
    _mm512_storeu_ps(t, x);
    for (int i = 0; i < 16; i++) t[i] = msam_gelu(t[i]);
    return _mm512_loadu_ps(t);
}

INL __m512 act16(__m512 v, msam_act act) {
    if (act == MSAM_ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == MSAM_ACT_GELU) return gelu16(v);
    return v;
}

/* Epilogue of one 16-float piece of a C row, lanes of mask only (masked lanes are not read). */
INL void epi16(__m512 v, float *c, const float *r, const float *bias, int flags, msam_act act,
               __mmask16 mask) {
    if (flags & MSAM_EPI_FIRST) {
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias));
        if (r) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, r));
    } else {
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, c));
    }
    if (flags & MSAM_EPI_LAST) v = act16(v, act);
    _mm512_mask_storeu_ps(c, mask, v);
}

INL void tile(const int rows, int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
              ptrdiff_t ldc, int nr, const msam_gemm_epi *e, const float *r) {
    __m512 acc[MR][2];
    const float *ap[MR];
    for (int i = 0; i < rows; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
        ap[i] = a + (ptrdiff_t)i * lda;
    }
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(b + (ptrdiff_t)p * NR);
        const __m512 b1 = _mm512_load_ps(b + (ptrdiff_t)p * NR + 16);
        for (int i = 0; i < rows; i++) {
            const __m512 av = _mm512_set1_ps(ap[i][p]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                         : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
    for (int i = 0; i < rows; i++) {
        float *ci = c + (ptrdiff_t)i * ldc;
        const float *ri = r ? r + (ptrdiff_t)i * e->ldr : NULL;
        epi16(acc[i][0], ci, ri, e->bias, e->flags, e->act, m0);
        if (m1) epi16(acc[i][1], ci + 16, ri ? ri + 16 : NULL, e->bias ? e->bias + 16 : NULL, e->flags,
                      e->act, m1);
    }
}

static TGT void block_avx512(int m, int n, int kc, const float *a, ptrdiff_t lda, const float *b,
                          size_t panel_stride, float *c, ptrdiff_t ldc, const msam_gemm_epi *e0) {
    msam_gemm_epi e = *e0;
    for (int i = 0; i < m; i += MR) {
        const int rows = m - i < MR ? m - i : MR;
        const float *ai = a + (ptrdiff_t)i * lda;
        float *ci = c + (ptrdiff_t)i * ldc;
        const float *ri = e0->r ? e0->r + (ptrdiff_t)i * e0->ldr : NULL;
        for (int j = 0, p = 0; j < n; j += NR, p++) {
            const int w = n - j < NR ? n - j : NR;
            const float *bj = b + (size_t)p * panel_stride, *rj = ri ? ri + j : NULL;
            float *cj = ci + j;
            e.bias = e0->bias ? e0->bias + j : NULL;
            switch (rows) {
            case MR: tile(MR, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            case 1: tile(1, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            case 2: tile(2, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            case 3: tile(3, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            case 4: tile(4, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            case 5: tile(5, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            case 6: tile(6, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            default: tile(7, kc, ai, lda, bj, cj, ldc, w, &e, rj); break;
            }
        }
    }
}

/* kc_max 256: a 256 x 32 panel of B is 32 KiB; AVX-512 parts have 48 KiB L1d or more. */
const msam_gemm_kernel msam_gemm_kernel_avx512 = {"avx512", MR, NR, 256, block_avx512};

#else
typedef int msam_gemm_avx512_unused;
#endif
