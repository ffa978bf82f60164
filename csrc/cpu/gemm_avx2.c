/* gemm_avx2.c - AVX2+FMA GEMM micro-kernel: 6 x 16 register tile (12 ymm accumulators) over a
 * packed 16-wide panel of B, with bias / residual / activation fused into the final store. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdint.h>

#include "gemm_internal.h"

/* Function attributes rather than -mavx2: the file builds with the project's plain flags and the
 * code only runs after the driver has checked the CPU. */
#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline, target("avx2,fma")))

enum { MR = 6, NR = 16 };

/* GELU on 8 lanes; the method and its accuracy are in gemm_internal.h. */
INL __m256 gelu8(__m256 x) {
#define S(v) _mm256_set1_ps(v)
    const __m256 z = _mm256_mul_ps(x, S(0.70710678118654752f));
    const __m256 t = _mm256_min_ps(_mm256_andnot_ps(S(-0.0f), z), S(4.0f));
    const __m256 t2 = _mm256_mul_ps(t, t), t4 = _mm256_mul_ps(t2, t2);
    const __m256 p01 = _mm256_fmadd_ps(S(MSAM_GELU_G2), t, S(MSAM_GELU_G1));
    const __m256 p23 = _mm256_fmadd_ps(S(MSAM_GELU_G4), t, S(MSAM_GELU_G3));
    const __m256 p45 = _mm256_fmadd_ps(S(MSAM_GELU_G6), t, S(MSAM_GELU_G5));
    const __m256 p67 = _mm256_fmadd_ps(S(MSAM_GELU_G8), t, S(MSAM_GELU_G7));
    const __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(p67, t2, p45), t4, _mm256_fmadd_ps(p23, t2, p01));
    const __m256 g = _mm256_mul_ps(p, t); /* log2 erfc(t) */
    const __m256 n = _mm256_round_ps(g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(g, n); /* exact, in [-1/2, 1/2] */
    const __m256 f2 = _mm256_mul_ps(f, f), f4 = _mm256_mul_ps(f2, f2);
    const __m256 e01 = _mm256_fmadd_ps(S(MSAM_EXP2_E1), f, S(MSAM_EXP2_E0));
    const __m256 e23 = _mm256_fmadd_ps(S(MSAM_EXP2_E3), f, S(MSAM_EXP2_E2));
    const __m256 e45 = _mm256_fmadd_ps(S(MSAM_EXP2_E5), f, S(MSAM_EXP2_E4));
    const __m256 e46 = _mm256_fmadd_ps(S(MSAM_EXP2_E6), f2, e45);
    const __m256 ef = _mm256_fmadd_ps(e46, f4, _mm256_fmadd_ps(e23, f2, e01)); /* 2^f */
    /* erfc = 2^f * 2^n: n (in [-24, 0]) added straight to the exponent field */
    const __m256i ni = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(ef), ni));
    e = _mm256_andnot_ps(_mm256_cmp_ps(t, S(4.0f), _CMP_GE_OQ), e); /* erfc(>= 4) -> 0 */
    const __m256 h = _mm256_blendv_ps(_mm256_sub_ps(S(2.0f), e), e, _mm256_cmp_ps(z, S(0.0f), _CMP_LT_OQ));
    return _mm256_mul_ps(_mm256_mul_ps(S(0.5f), x), h);
#undef S
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

/* rows x 16 tile; rows is a compile-time constant after inlining, so the unused rows fold away.
 * The accumulators are named variables, not an array, so they are never spilled to the stack.
 * A row i is read only for i < rows and columns < kc. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

INL void tile(const int rows, int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
              ptrdiff_t ldc, int nr, const msam_gemm_epi *e, const float *r, const float *pf,
              int pf_rows) {
#define DECL(i)                                                                                  \
    __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();                         \
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
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        /* pf: the next row group's A, fetched a line per row every 16 steps while this (its
         * group's last) tile runs, so the next group does not start on cache misses. */
        if (pf && (p & 15) == 0)
            for (int i = 0; i < pf_rows; i++) _mm_prefetch((const char *)(pf + (ptrdiff_t)i * lda + p), _MM_HINT_T0);
        const __m256 b0 = _mm256_load_ps(b + (ptrdiff_t)p * NR);
        const __m256 b1 = _mm256_load_ps(b + (ptrdiff_t)p * NR + 8);
#define STEP(i)                                                                                  \
        if (rows > i) {                                                                          \
            const __m256 av = _mm256_broadcast_ss(a##i + p);                                     \
            c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                          \
            c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                          \
        }
        ROWS(STEP)
#undef STEP
    }
    const int flags = e->flags;
    const msam_act act = e->act;
    const float *bias = e->bias, *bias8 = bias ? bias + 8 : NULL;
    const ptrdiff_t ldr = e->ldr;
    if (nr == NR) {
        const __m256i none = _mm256_setzero_si256();
#define EPI(i)                                                                                   \
        if (rows > i) {                                                                          \
            const float *ri = r ? r + (ptrdiff_t)i * ldr : NULL;                                 \
            epi8(c##i##0, c + (ptrdiff_t)i * ldc, ri, bias, flags, act, 1, none);                \
            epi8(c##i##1, c + (ptrdiff_t)i * ldc + 8, ri ? ri + 8 : NULL, bias8, flags, act, 1, none); \
        }
        ROWS(EPI)
#undef EPI
    } else {
        /* column tail: lanes j < nr of the two halves; masked loads never touch memory past nr */
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), iota);
#define EPI(i)                                                                                   \
        if (rows > i) {                                                                          \
            const float *ri = r ? r + (ptrdiff_t)i * ldr : NULL;                                 \
            epi8(c##i##0, c + (ptrdiff_t)i * ldc, ri, bias, flags, act, 0, m0);                  \
            if (nr > 8)                                                                          \
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
        const float *pf_next = next > 0 ? ai + (ptrdiff_t)rows * lda : NULL;
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

/* kc_max 256: a 256 x 16 panel of B is 16 KiB, half of L1d. */
const msam_gemm_kernel msam_gemm_kernel_avx2 = {"avx2", MR, NR, 256, block_avx2};

#else
typedef int msam_gemm_avx2_unused; /* ISO C wants a translation unit to declare something */
#endif
