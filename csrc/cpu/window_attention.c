/* window_attention.c - TinyViT's windowed multi-head attention on an already projected qkv map.
 * One task per (window, head): its keys/values (pad_qkv past the map's edge) are gathered into a
 * per-thread buffer, keys transposed so score rows vectorise; only a few score rows live at once. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "gemm.h"
#include "../core/threads.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MSAM_HAVE_AVX2 1
#define MSAM_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* The vector path runs when the GEMM picked a SIMD kernel (MSAM_ISA=generic then exercises the
 * portable path); "avx2" and "avx512" both imply AVX2 + FMA. */
static int use_avx2(void) { return strcmp(msam_gemm_isa(), "generic") != 0; }
#else
#define MSAM_HAVE_AVX2 0
#endif

#define QB 4 /* query rows computed together (their score rows are what lives per thread) */

/* Where token t of window (wy, wx) reads its q/k/v for head hd, and its map row (-1: padding). */
static inline const float *token_src(const float *qkv, const float *pad_qkv, int h, int w, int win,
                                     int wy, int wx, int t, int hd, int dh, int ld, long *row) {
    const int py = wy * win + t / win, px = wx * win + t % win;
    if (py < h && px < w) {
        *row = (long)py * w + px;
        return qkv + (size_t)(*row) * ld + (size_t)hd * 3 * dh;
    }
    *row = -1;
    return pad_qkv + (size_t)hd * 3 * dh;
}

/* One (window, head) with no buffer: three passes over the keys per query (max, sum, output).
 * Used by the reference and as the fast kernel's fallback when its buffer cannot be had. */
static void task_plain(float *y, const float *qkv, const float *pad_qkv, int h, int w, int win,
                       int wy, int wx, int hd, int heads, int dh, const float *bias, float scale) {
    const int n = win * win, ld = heads * 3 * dh, ldy = heads * dh;
    const float *bh = bias + (size_t)hd * n * n;
    for (int i = 0; i < n; i++) {
        long qrow, krow;
        const float *qi = token_src(qkv, pad_qkv, h, w, win, wy, wx, i, hd, dh, ld, &qrow);
        if (qrow < 0) continue; /* padded queries are cropped */
        float mx = -INFINITY, sum = 0.0f;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < n; j++) {
                const float *kj = token_src(qkv, pad_qkv, h, w, win, wy, wx, j, hd, dh, ld, &krow) + dh;
                float s = 0.0f;
                for (int d = 0; d < dh; d++) s += qi[d] * kj[d];
                s = s * scale + bh[(size_t)i * n + j];
                if (pass == 0) mx = s > mx ? s : mx;
                else sum += expf(s - mx);
            }
        float *yo = y + (size_t)qrow * ldy + (size_t)hd * dh;
        for (int d = 0; d < dh; d++) yo[d] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float *kj = token_src(qkv, pad_qkv, h, w, win, wy, wx, j, hd, dh, ld, &krow) + dh;
            float s = 0.0f;
            for (int d = 0; d < dh; d++) s += qi[d] * kj[d];
            const float p = expf(s * scale + bh[(size_t)i * n + j] - mx) / sum;
            for (int d = 0; d < dh; d++) yo[d] += p * kj[dh + d];
        }
    }
}

void msam_cpu_window_attention_ref(float *y, const float *qkv, const float *pad_qkv, int h,
                                   int w, int win, int heads, int dh, const float *bias,
                                   float scale) {
    const int nwy = (h + win - 1) / win, nwx = (w + win - 1) / win;
    for (int wy = 0; wy < nwy; wy++)
        for (int wx = 0; wx < nwx; wx++)
            for (int hd = 0; hd < heads; hd++)
                task_plain(y, qkv, pad_qkv, h, w, win, wy, wx, hd, heads, dh, bias, scale);
}

/* A thread's gathered window: q (in-map queries only, pre-scaled) nq x dh, kT dh x np (keys
 * transposed, columns >= n stay zero), v np x dh (rows >= n stay zero), s QB x np scores. */
typedef struct {
    int n, np, nq, dh;
    float *q, *kt, *v, *s;
    long *qrow; /* map row of each gathered query */
    int *qtok;  /* its token index inside the window */
} wbuf;

static void *wbuf_alloc(wbuf *b, int n, int dh) {
    b->n = n;
    b->np = (n + 15) & ~15;
    b->dh = dh;
    const size_t nq_rows = (size_t)n + QB; /* QB spare rows so a partial block reads defined data */
    const size_t floats = nq_rows * dh + (size_t)dh * b->np + (size_t)b->np * dh + (size_t)QB * b->np;
    char *mem = calloc(1, floats * sizeof(float) + (size_t)n * (sizeof(long) + sizeof(int)));
    if (!mem) return NULL;
    b->q = (float *)mem;
    b->kt = b->q + nq_rows * dh;
    b->v = b->kt + (size_t)dh * b->np;
    b->s = b->v + (size_t)b->np * dh;
    b->qrow = (long *)(b->s + (size_t)QB * b->np);
    b->qtok = (int *)(b->qrow + n);
    return mem;
}

static void gather(wbuf *b, const float *qkv, const float *pad_qkv, int h, int w, int win, int wy,
                   int wx, int hd, int heads, float scale) {
    const int dh = b->dh, ld = heads * 3 * dh, np = b->np;
    int nq = 0;
    for (int t = 0; t < b->n; t++) {
        long row;
        const float *src = token_src(qkv, pad_qkv, h, w, win, wy, wx, t, hd, dh, ld, &row);
        for (int d = 0; d < dh; d++) b->kt[(size_t)d * np + t] = src[dh + d];
        memcpy(b->v + (size_t)t * dh, src + 2 * dh, sizeof(float) * (size_t)dh);
        if (row >= 0) {
            for (int d = 0; d < dh; d++) b->q[(size_t)nq * dh + d] = src[d] * scale;
            b->qrow[nq] = row;
            b->qtok[nq] = t;
            nq++;
        }
    }
    b->nq = nq;
}

/* Portable task: score rows one query at a time. */
static void task_generic(wbuf *b, float *y, int ldy, int hd, const float *bias) {
    const int n = b->n, np = b->np, dh = b->dh;
    const float *bh = bias + (size_t)hd * n * n;
    float *s = b->s;
    for (int r = 0; r < b->nq; r++) {
        const float *qr = b->q + (size_t)r * dh, *br = bh + (size_t)b->qtok[r] * n;
        for (int j = 0; j < n; j++) s[j] = br[j];
        for (int d = 0; d < dh; d++) {
            const float qd = qr[d], *kd = b->kt + (size_t)d * np;
            for (int j = 0; j < n; j++) s[j] += qd * kd[j];
        }
        float mx = s[0], sum = 0.0f;
        for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float *yo = y + (size_t)b->qrow[r] * ldy + (size_t)hd * dh;
        for (int d = 0; d < dh; d++) yo[d] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float p = s[j], *vj = b->v + (size_t)j * dh;
            for (int d = 0; d < dh; d++) yo[d] += p * vj[d];
        }
        const float inv = 1.0f / sum;
        for (int d = 0; d < dh; d++) yo[d] *= inv;
    }
}

#if MSAM_HAVE_AVX2
/* exp(x) for 8 floats (Cephes expf: 2^n by exponent bits times a degree-6 polynomial on
 * [-ln2/2, ln2/2]); inputs below -87.3 (including -inf) give exactly 0. */
MSAM_TARGET_AVX2 static inline __m256 exp8(__m256 x) {
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

MSAM_TARGET_AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

MSAM_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* AVX2 task (dh a multiple of 8): QB query rows at a time. Scores are a QB x 16 register tile
 * per step over d; the value product is a QB x 16 tile per step over keys. */
MSAM_TARGET_AVX2 static void task_avx2(wbuf *b, float *y, int ldy, int hd, const float *bias) {
    const int n = b->n, np = b->np, dh = b->dh, n8 = n & ~7;
    const float *bh = bias + (size_t)hd * n * n;
    float *s = b->s;
    for (int r0 = 0; r0 < b->nq; r0 += QB) {
        const int nr = b->nq - r0 < QB ? b->nq - r0 : QB;
        const float *q0 = b->q + (size_t)r0 * dh; /* rows past nq read spare (defined) rows */
        for (int j = 0; j < np; j += 16) {
            __m256 a[QB][2];
            for (int r = 0; r < QB; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (int d = 0; d < dh; d++) {
                const __m256 k0 = _mm256_loadu_ps(b->kt + (size_t)d * np + j);
                const __m256 k1 = _mm256_loadu_ps(b->kt + (size_t)d * np + j + 8);
                for (int r = 0; r < QB; r++) {
                    const __m256 qv = _mm256_broadcast_ss(q0 + (size_t)r * dh + d);
                    a[r][0] = _mm256_fmadd_ps(qv, k0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(qv, k1, a[r][1]);
                }
            }
            for (int r = 0; r < QB; r++) {
                _mm256_storeu_ps(s + (size_t)r * np + j, a[r][0]);
                _mm256_storeu_ps(s + (size_t)r * np + j + 8, a[r][1]);
            }
        }
        float inv[QB];
        for (int r = 0; r < nr; r++) {
            float *sr = s + (size_t)r * np;
            const float *br = bh + (size_t)b->qtok[r0 + r] * n;
            __m256 mv = _mm256_set1_ps(-INFINITY);
            int j = 0;
            for (; j < n8; j += 8) {
                const __m256 v = _mm256_add_ps(_mm256_loadu_ps(sr + j), _mm256_loadu_ps(br + j));
                _mm256_storeu_ps(sr + j, v);
                mv = _mm256_max_ps(mv, v);
            }
            float mx = hmax8(mv);
            for (; j < n; j++) {
                sr[j] += br[j];
                mx = sr[j] > mx ? sr[j] : mx;
            }
            for (; j < np; j++) sr[j] = -INFINITY;
            const __m256 m8 = _mm256_set1_ps(mx);
            __m256 sv = _mm256_setzero_ps();
            for (j = 0; j < np; j += 8) {
                const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sr + j), m8));
                _mm256_storeu_ps(sr + j, e);
                sv = _mm256_add_ps(sv, e);
            }
            inv[r] = 1.0f / hsum8(sv);
        }
        for (int r = nr; r < QB; r++) /* unused rows of a partial block: finite, never stored */
            memset(s + (size_t)r * np, 0, sizeof(float) * (size_t)np);
        for (int c = 0; c < dh; c += 16) {
            const int two = c + 16 <= dh;
            __m256 a[QB][2];
            for (int r = 0; r < QB; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (int j = 0; j < n; j++) {
                const float *vj = b->v + (size_t)j * dh + c;
                const __m256 v0 = _mm256_loadu_ps(vj);
                const __m256 v1 = two ? _mm256_loadu_ps(vj + 8) : _mm256_setzero_ps();
                for (int r = 0; r < QB; r++) {
                    const __m256 p = _mm256_broadcast_ss(s + (size_t)r * np + j);
                    a[r][0] = _mm256_fmadd_ps(p, v0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(p, v1, a[r][1]);
                }
            }
            for (int r = 0; r < nr; r++) {
                float *yo = y + (size_t)b->qrow[r0 + r] * ldy + (size_t)hd * dh + c;
                const __m256 iv = _mm256_set1_ps(inv[r]);
                _mm256_storeu_ps(yo, _mm256_mul_ps(a[r][0], iv));
                if (two) _mm256_storeu_ps(yo + 8, _mm256_mul_ps(a[r][1], iv));
            }
        }
    }
}
#endif

void msam_cpu_window_attention(float *y, const float *qkv, const float *pad_qkv, int h, int w,
                               int win, int heads, int dh, const float *bias, float scale) {
    const int nwy = (h + win - 1) / win, nwx = (w + win - 1) / win, n = win * win;
    const int tasks = nwy * nwx * heads;
#if MSAM_HAVE_AVX2
    const int avx2 = dh % 8 == 0 && use_avx2();
#endif
#pragma omp parallel num_threads(msam_threads()) if (tasks > 1)
    {
        wbuf b;
        void *mem = wbuf_alloc(&b, n, dh);
        /* Dynamic: windows on the bottom/right edge have fewer in-map queries. */
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < tasks; t++) {
            const int hd = t % heads, wx = (t / heads) % nwx, wy = t / heads / nwx;
            if (!mem) {
                task_plain(y, qkv, pad_qkv, h, w, win, wy, wx, hd, heads, dh, bias, scale);
                continue;
            }
            gather(&b, qkv, pad_qkv, h, w, win, wy, wx, hd, heads, scale);
#if MSAM_HAVE_AVX2
            if (avx2) {
                task_avx2(&b, y, heads * dh, hd, bias);
                continue;
            }
#endif
            task_generic(&b, y, heads * dh, hd, bias);
        }
        free(mem);
    }
}
