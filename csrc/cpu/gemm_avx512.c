/* gemm_avx512.c - AVX-512F GEMM micro-kernel: 8 x 32 register tile (16 zmm accumulators) over a
 * packed 32-wide panel of B; the same structure as gemm_avx2.c, with mask registers for tails. */
#if defined(__x86_64__) || defined(__i386__)

#include <stdint.h>

#include "gemm_internal.h"

#ifdef MSAM_EMULATE_AVX512
/* Test builds only (setup.py, MSAM_EMULATE_AVX512): the same source over SIMDe's portable
 * AVX-512 intrinsics, so CPUs without AVX-512 can run this kernel's logic (see
 * tests/test_avx512_emulated.py). Never set for a release build. */
#include "avx512_emulation.h"
#define TGT
#define INL static inline
#else
#include <immintrin.h>
/* Function attributes rather than -mavx512f: the file builds with the project's plain flags and
 * the code only runs after the driver has checked the CPU (and the OS) for AVX-512F. */
#define TGT __attribute__((target("avx512f")))
#define INL static inline __attribute__((always_inline, target("avx512f")))
#endif

enum { MR = 8, NR = 32 };

/* GELU on 16 lanes; the method and its accuracy are in activation.h (the same as gelu8). */
INL __m512 gelu16(__m512 x) {
#define S(v) _mm512_set1_ps(v)
    const __m512 z = _mm512_mul_ps(x, S(0.70710678118654752f));
    const __m512 t = _mm512_min_ps(_mm512_abs_ps(z), S(4.0f));
    const __m512 t2 = _mm512_mul_ps(t, t), t4 = _mm512_mul_ps(t2, t2);
    const __m512 p01 = _mm512_fmadd_ps(S(MSAM_GELU_G2), t, S(MSAM_GELU_G1));
    const __m512 p23 = _mm512_fmadd_ps(S(MSAM_GELU_G4), t, S(MSAM_GELU_G3));
    const __m512 p45 = _mm512_fmadd_ps(S(MSAM_GELU_G6), t, S(MSAM_GELU_G5));
    const __m512 p67 = _mm512_fmadd_ps(S(MSAM_GELU_G8), t, S(MSAM_GELU_G7));
    const __m512 p = _mm512_fmadd_ps(_mm512_fmadd_ps(p67, t2, p45), t4, _mm512_fmadd_ps(p23, t2, p01));
    const __m512 g = _mm512_mul_ps(p, t); /* log2 erfc(t) */
    const __m512 n = _mm512_roundscale_ps(g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(g, n);
    const __m512 f2 = _mm512_mul_ps(f, f), f4 = _mm512_mul_ps(f2, f2);
    const __m512 e01 = _mm512_fmadd_ps(S(MSAM_EXP2_E1), f, S(MSAM_EXP2_E0));
    const __m512 e23 = _mm512_fmadd_ps(S(MSAM_EXP2_E3), f, S(MSAM_EXP2_E2));
    const __m512 e45 = _mm512_fmadd_ps(S(MSAM_EXP2_E5), f, S(MSAM_EXP2_E4));
    const __m512 e46 = _mm512_fmadd_ps(S(MSAM_EXP2_E6), f2, e45);
    const __m512 ef = _mm512_fmadd_ps(e46, f4, _mm512_fmadd_ps(e23, f2, e01));
    const __m512i ni = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
    __m512 e = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(ef), ni));
    e = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, S(4.0f), _CMP_GE_OQ), e, _mm512_setzero_ps());
    const __m512 h = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ),
                                          _mm512_sub_ps(S(2.0f), e), e);
    return _mm512_mul_ps(_mm512_mul_ps(S(0.5f), x), h);
#undef S
}

INL __m512 bcast16(const float *p) { return _mm512_set1_ps(*p); }

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

/* rows x 32 tile; rows is a compile-time constant after inlining, so the unused rows fold away.
 * The accumulators are named variables, not an array, so they are never spilled to the stack.
 * A row i is read only for i < rows and columns < kc. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

INL void tile(const int rows, int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
              ptrdiff_t ldc, int nr, const msam_gemm_epi *e, const float *r, const float *pf,
              int pf_rows) {
#define DECL(i)                                                                                    \
    __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();                           \
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
        const __m512 zero = _mm512_setzero_ps();
        __m512 u00 = zero, u01 = zero, v00 = zero, v01 = zero, w00 = zero, w01 = zero;
        __m512 u10 = zero, u11 = zero;
        int p = 0;
        for (; p + ph <= kc; p += ph) {
            const float *bp = b + (ptrdiff_t)p * NR;
            const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
            const __m512 b2 = _mm512_load_ps(bp + NR), b3 = _mm512_load_ps(bp + NR + 16);
            const __m512 x0 = bcast16(a0 + p), x1 = bcast16(a0 + p + 1);
            c00 = _mm512_fmadd_ps(x0, b0, c00);
            c01 = _mm512_fmadd_ps(x0, b1, c01);
            u00 = _mm512_fmadd_ps(x1, b2, u00);
            u01 = _mm512_fmadd_ps(x1, b3, u01);
            if (rows == 1) {
                const __m512 b4 = _mm512_load_ps(bp + 2 * NR), b5 = _mm512_load_ps(bp + 2 * NR + 16);
                const __m512 b6 = _mm512_load_ps(bp + 3 * NR), b7 = _mm512_load_ps(bp + 3 * NR + 16);
                const __m512 x2 = bcast16(a0 + p + 2), x3 = bcast16(a0 + p + 3);
                v00 = _mm512_fmadd_ps(x2, b4, v00);
                v01 = _mm512_fmadd_ps(x2, b5, v01);
                w00 = _mm512_fmadd_ps(x3, b6, w00);
                w01 = _mm512_fmadd_ps(x3, b7, w01);
            } else {
                const __m512 y0 = bcast16(a1 + p), y1 = bcast16(a1 + p + 1);
                c10 = _mm512_fmadd_ps(y0, b0, c10);
                c11 = _mm512_fmadd_ps(y0, b1, c11);
                u10 = _mm512_fmadd_ps(y1, b2, u10);
                u11 = _mm512_fmadd_ps(y1, b3, u11);
            }
        }
        for (; p < kc; p++) {
            const __m512 b0 = _mm512_load_ps(b + (ptrdiff_t)p * NR), b1 = _mm512_load_ps(b + (ptrdiff_t)p * NR + 16);
            const __m512 x0 = bcast16(a0 + p);
            c00 = _mm512_fmadd_ps(x0, b0, c00);
            c01 = _mm512_fmadd_ps(x0, b1, c01);
            if (rows == 2) {
                const __m512 y0 = bcast16(a1 + p);
                c10 = _mm512_fmadd_ps(y0, b0, c10);
                c11 = _mm512_fmadd_ps(y0, b1, c11);
            }
        }
        c00 = _mm512_add_ps(_mm512_add_ps(c00, u00), _mm512_add_ps(v00, w00));
        c01 = _mm512_add_ps(_mm512_add_ps(c01, u01), _mm512_add_ps(v01, w01));
        c10 = _mm512_add_ps(c10, u10);
        c11 = _mm512_add_ps(c11, u11);
    } else {
#define STEP(i)                                                                                    \
        if (rows > i) {                                                                            \
            const __m512 av = _mm512_set1_ps(a##i[kk]);                                            \
            c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                            \
            c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                            \
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
                    const __m512 b0 = _mm512_load_ps(b + (ptrdiff_t)q * NR);
                    const __m512 b1 = _mm512_load_ps(b + (ptrdiff_t)q * NR + 16);
                    const int kk = q;
                    ROWS(STEP)
                }
            }
        }
#pragma GCC unroll 4
        for (; p < kc; p++) {
            const __m512 b0 = _mm512_load_ps(b + (ptrdiff_t)p * NR);
            const __m512 b1 = _mm512_load_ps(b + (ptrdiff_t)p * NR + 16);
            const int kk = p;
            ROWS(STEP)
        }
#undef STEP
    }
    const int flags = e->flags;
    const msam_act act = e->act;
    const float *bias = e->bias, *bias16 = bias ? bias + 16 : NULL;
    const ptrdiff_t ldr = e->ldr;
    /* column masks: lanes j < nr of the two halves (all ones for a full panel) */
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : 0;
#define EPI(i)                                                                                     \
    if (rows > i) {                                                                                \
        const float *ri = r ? r + (ptrdiff_t)i * ldr : NULL;                                       \
        epi16(c##i##0, c + (ptrdiff_t)i * ldc, ri, bias, flags, act, m0);                          \
        if (m1) epi16(c##i##1, c + (ptrdiff_t)i * ldc + 16, ri ? ri + 16 : NULL, bias16, flags, act, m1); \
    }
    ROWS(EPI)
#undef EPI
}

static TGT void block_avx512(int m, int n, int kc, const float *a, ptrdiff_t lda, const float *b,
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
            case 5: tile(5, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            case 6: tile(6, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            default: tile(7, kc, ai, lda, bj, cj, ldc, w, &e, rj, pf, pf_rows); break;
            }
        }
    }
}

/* kc_max 256: an 8 x 256 sliver of A (8 KiB) and a 256 x 32 panel of B (32 KiB) stream through
 * L1 (48 KiB or more on AVX-512 parts). */
const msam_gemm_kernel msam_gemm_kernel_avx512 = {"avx512", MR, NR, 256, block_avx512};

#else
typedef int msam_gemm_avx512_unused; /* ISO C wants a translation unit to declare something */
#endif
