/* gemm_avx2.c - AVX2+FMA GEMM micro-kernel: 6 x 16 register tile (12 ymm accumulators) over a
 * packed 16-wide panel of B, with bias / residual / activation fused into the final store. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdint.h>

#include "activation.h"
#include "gemm_internal.h"
#include "vec_avx2.h"

/* Function attributes rather than -mavx2: the file builds with the project's plain flags and the
 * code only runs after the driver has checked the CPU. */
#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline, target("avx2,fma")))

enum { MR = 6, NR = 16 };

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

/* rows x 16 tile; rows is a compile-time constant after inlining, so the unused rows fold away.
 * The accumulators are named variables, not an array, so they are never spilled to the stack.
 * A row i is read only for i < rows and columns < kc. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

INL void tile(const int rows, int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
              ptrdiff_t ldc, int nr, const msam_gemm_epi *e, const float *r, const float *pf,
              int pf_rows) {
#define DECL(i)                                                                                    \
    __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();                           \
    const float *a##i = rows > i ? a + (ptrdiff_t)i * lda : a;
    ROWS(DECL)
#undef DECL
    /* Ask for the C (or residual) rows now so their misses overlap the K loop. */
    {
        const float *pc = (e->flags & MSAM_EPI_FIRST) ? r : c;
        const ptrdiff_t ld = (e->flags & MSAM_EPI_FIRST) ? e->ldr : ldc;
        if (pc) {
            for (int i = 0; i < rows; i++) {
                _mm_prefetch((const char *)(pc + (ptrdiff_t)i * ld), _MM_HINT_T0);
                _mm_prefetch((const char *)(pc + (ptrdiff_t)i * ld + nr - 1), _MM_HINT_T0);
            }
        }
        if (pc != c) {
            for (int i = 0; i < rows; i++) {
                _mm_prefetch((const char *)(c + (ptrdiff_t)i * ldc), _MM_HINT_T0);
                _mm_prefetch((const char *)(c + (ptrdiff_t)i * ldc + nr - 1), _MM_HINT_T0);
            }
        }
    }
    if (rows <= 2) {
        /* One or two rows give only 2 or 4 accumulator chains, too few to cover the FMA latency:
         * split K into 4 (one row) or 2 (two rows) interleaved phases, summed at the end. Only
         * small M or the last rows get here, so there is no next group to prefetch. */
        const int ph = rows == 1 ? 4 : 2;
        const __m256 zero = _mm256_setzero_ps();
        __m256 u00 = zero, u01 = zero, v00 = zero, v01 = zero, w00 = zero, w01 = zero;
        __m256 u10 = zero, u11 = zero;
        int p = 0;
        for (; p + ph <= kc; p += ph) {
            const float *bp = b + (ptrdiff_t)p * NR;
            const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
            const __m256 b2 = _mm256_load_ps(bp + NR), b3 = _mm256_load_ps(bp + NR + 8);
            const __m256 x0 = _mm256_broadcast_ss(a0 + p), x1 = _mm256_broadcast_ss(a0 + p + 1);
            c00 = _mm256_fmadd_ps(x0, b0, c00);
            c01 = _mm256_fmadd_ps(x0, b1, c01);
            u00 = _mm256_fmadd_ps(x1, b2, u00);
            u01 = _mm256_fmadd_ps(x1, b3, u01);
            if (rows == 1) {
                const __m256 b4 = _mm256_load_ps(bp + 2 * NR), b5 = _mm256_load_ps(bp + 2 * NR + 8);
                const __m256 b6 = _mm256_load_ps(bp + 3 * NR), b7 = _mm256_load_ps(bp + 3 * NR + 8);
                const __m256 x2 = _mm256_broadcast_ss(a0 + p + 2), x3 = _mm256_broadcast_ss(a0 + p + 3);
                v00 = _mm256_fmadd_ps(x2, b4, v00);
                v01 = _mm256_fmadd_ps(x2, b5, v01);
                w00 = _mm256_fmadd_ps(x3, b6, w00);
                w01 = _mm256_fmadd_ps(x3, b7, w01);
            } else {
                const __m256 y0 = _mm256_broadcast_ss(a1 + p), y1 = _mm256_broadcast_ss(a1 + p + 1);
                c10 = _mm256_fmadd_ps(y0, b0, c10);
                c11 = _mm256_fmadd_ps(y0, b1, c11);
                u10 = _mm256_fmadd_ps(y1, b2, u10);
                u11 = _mm256_fmadd_ps(y1, b3, u11);
            }
        }
        for (; p < kc; p++) {
            const __m256 b0 = _mm256_load_ps(b + (ptrdiff_t)p * NR), b1 = _mm256_load_ps(b + (ptrdiff_t)p * NR + 8);
            const __m256 x0 = _mm256_broadcast_ss(a0 + p);
            c00 = _mm256_fmadd_ps(x0, b0, c00);
            c01 = _mm256_fmadd_ps(x0, b1, c01);
            if (rows == 2) {
                const __m256 y0 = _mm256_broadcast_ss(a1 + p);
                c10 = _mm256_fmadd_ps(y0, b0, c10);
                c11 = _mm256_fmadd_ps(y0, b1, c11);
            }
        }
        c00 = _mm256_add_ps(_mm256_add_ps(c00, u00), _mm256_add_ps(v00, w00));
        c01 = _mm256_add_ps(_mm256_add_ps(c01, u01), _mm256_add_ps(v01, w01));
        c10 = _mm256_add_ps(c10, u10);
        c11 = _mm256_add_ps(c11, u11);
    } else {
#define STEP(i)                                                                                    \
        if (rows > i) {                                                                            \
            const __m256 av = _mm256_broadcast_ss(a##i + kk);                                      \
            c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                            \
            c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                            \
        }
        int p = 0;
        if (pf) {
            /* pf: the next row group's A, a line per row every 16 steps, while this (the group's
             * last) tile runs, so the next group does not start on cache misses. */
            for (; p + 16 <= kc; p += 16) {
                for (int i = 0; i < pf_rows; i++)
                    _mm_prefetch((const char *)(pf + (ptrdiff_t)i * lda + p), _MM_HINT_T0);
#pragma GCC unroll 4
                for (int q = p; q < p + 16; q++) {
                    const __m256 b0 = _mm256_load_ps(b + (ptrdiff_t)q * NR);
                    const __m256 b1 = _mm256_load_ps(b + (ptrdiff_t)q * NR + 8);
                    const int kk = q;
                    ROWS(STEP)
                }
            }
        }
#pragma GCC unroll 4
        for (; p < kc; p++) {
            const __m256 b0 = _mm256_load_ps(b + (ptrdiff_t)p * NR);
            const __m256 b1 = _mm256_load_ps(b + (ptrdiff_t)p * NR + 8);
            const int kk = p;
            ROWS(STEP)
        }
#undef STEP
    }
    const int flags = e->flags;
    const msam_act act = e->act;
    const float *bias = e->bias, *bias8 = bias ? bias + 8 : NULL;
    const ptrdiff_t ldr = e->ldr;
    if (nr == NR) {
        const __m256i none = _mm256_setzero_si256();
#define EPI(i)                                                                                     \
        if (rows > i) {                                                                            \
            const float *ri = r ? r + (ptrdiff_t)i * ldr : NULL;                                   \
            epi8(c##i##0, c + (ptrdiff_t)i * ldc, ri, bias, flags, act, 1, none);                  \
            epi8(c##i##1, c + (ptrdiff_t)i * ldc + 8, ri ? ri + 8 : NULL, bias8, flags, act, 1, none); \
        }
        ROWS(EPI)
#undef EPI
    } else {
        /* column tail: lanes j < nr of the two halves; masked loads never touch memory past nr */
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), iota);
#define EPI(i)                                                                                     \
        if (rows > i) {                                                                            \
            const float *ri = r ? r + (ptrdiff_t)i * ldr : NULL;                                   \
            epi8(c##i##0, c + (ptrdiff_t)i * ldc, ri, bias, flags, act, 0, m0);                    \
            if (nr > 8)                                                                            \
                epi8(c##i##1, c + (ptrdiff_t)i * ldc + 8, ri ? ri + 8 : NULL, bias8, flags, act, 0, m1); \
        }
        ROWS(EPI)
#undef EPI
    }
}

static TGT void block_avx2(int m, int n, int kc, const float *a, ptrdiff_t lda, const float *b,
                          size_t panel_stride, float *c, ptrdiff_t ldc, const msam_gemm_epi *e0) {
    msam_gemm_epi e = *e0;
    for (int i = 0; i < m; i += MR) {
        const int rows = m - i < MR ? m - i : MR;
        const float *ai = a + (ptrdiff_t)i * lda;
        float *ci = c + (ptrdiff_t)i * ldc;
        const float *ri = e0->r ? e0->r + (ptrdiff_t)i * e0->ldr : NULL;
        const int next = m - i - rows; /* rows in the next group */
        /* software prefetch of the next A sliver only pays for long rows; short ones are
         * contiguous enough for the hardware prefetcher */
        const float *pf_next = next > 0 && kc >= 128 ? ai + (ptrdiff_t)rows * lda : NULL;
        const int pf_rows = next < MR ? next : MR;
        for (int j = 0, p = 0; j < n; j += NR, p++) {
            const int w = n - j < NR ? n - j : NR;
            const float *pf = j + NR >= n ? pf_next : NULL;
            const float *bj = b + (size_t)p * panel_stride, *rj = ri ? ri + j : NULL;
            float *cj = ci + j;
            e.bias = e0->bias ? e0->bias + j : NULL;
            switch (rows) {
            case MR: tile(MR, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            case 1: tile(1, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            case 2: tile(2, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            case 3: tile(3, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            case 4: tile(4, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            default: tile(5, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            }
        }
    }
}

/* kc_max 512: a 6 x 512 sliver of A (12 KiB) stays in L1d while 512 x 16 panels of B (32 KiB)
 * stream through it from L2; fewer K blocks mean fewer passes over C. */
const msam_gemm_kernel msam_gemm_kernel_avx2 = {"avx2", MR, NR, 512, block_avx2};

/* The same vector GELU over a plain array (the decoder's LayerNorm2d + GELU between upscalings). */
TGT void msam_gelu_avx2(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = msam_gelu(x[i]);
}

#else
typedef int msam_gemm_avx2_unused; /* ISO C wants a translation unit to declare something */
#endif
