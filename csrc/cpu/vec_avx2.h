/* vec_avx2.h - small AVX2/FMA helpers shared by the CPU kernels (exp, a row's exp and sum, GELU,
 * horizontal max/sum, 8x8 transpose), compiled for avx2 and called only after a CPU check. */
#ifndef MSAM_CPU_VEC_AVX2_H
#define MSAM_CPU_VEC_AVX2_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "activation.h"
#include "gemm.h"
#define MSAM_HAVE_AVX2 1
#define MSAM_TARGET_AVX2 __attribute__((target("avx2,fma")))

/* The vector paths run when the GEMM picked a SIMD kernel, so MSAM_ISA=generic exercises the
 * portable paths too; "avx2" and "avx512" both imply AVX2 + FMA. */
static inline __attribute__((unused)) int msam_use_avx2(void) {
    return strcmp(msam_gemm_isa(), "generic") != 0;
}

/* exp(x) for 8 floats (Cephes expf: 2^n by exponent bits times a degree-6 polynomial on
 * [-ln2/2, ln2/2]); inputs below -87.3 (including -inf) give exactly 0. */
MSAM_TARGET_AVX2 static inline __attribute__((unused)) __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.3f));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* Exact-form GELU 0.5 x (1 + erf(x / sqrt 2)) on 8 floats; the method and its accuracy are in
 * activation.h. Used by the GEMM epilogue, the depthwise convolution and the decoder's upscaling. */
MSAM_TARGET_AVX2 static inline __attribute__((unused, always_inline)) __m256 gelu8(__m256 x) {
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

MSAM_TARGET_AVX2 static inline __attribute__((unused)) float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

MSAM_TARGET_AVX2 static inline __attribute__((unused)) float hsum8(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* In-register transpose of 8 rows of 8 floats. */
MSAM_TARGET_AVX2 static inline __attribute__((unused)) void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

/* s[j] = exp(s[j] - mx) in place for j < n, returning their sum (8 lane sums, then the tail in
 * order). The tail goes through exp8 too, padded with -inf, so every element sees the same exp. */
MSAM_TARGET_AVX2 static inline __attribute__((unused)) float exp_shift_sum(float *s, int n, float mx) {
    const __m256 m8 = _mm256_set1_ps(mx);
    __m256 sum8 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m8));
        _mm256_storeu_ps(s + j, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    float sum = hsum8(sum8);
    if (j < n) {
        float tail[8];
        for (int t = 0; t < 8; t++) tail[t] = j + t < n ? s[j + t] - mx : -INFINITY;
        _mm256_storeu_ps(tail, exp8(_mm256_loadu_ps(tail)));
        for (int t = 0; j + t < n; t++) s[j + t] = tail[t], sum += tail[t];
    }
    return sum;
}

#else
#define MSAM_HAVE_AVX2 0
#endif

#endif
