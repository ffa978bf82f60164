/* attention.c - the mask decoder's multi-head attention on the CPU: one side is the 4096-token
 * image, the other a handful of prompt tokens, so each (head, query) row is computed whole. */
#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_kernels.h"
#include "../ref/ref.h"
#include "threads.h"
#include "vec_avx2.h"

#define MAX_STACK_KEYS 4096

/* One query row of one head: softmax(q.K^T * scale) V over nk keys, written to out[0..dh).
 * s holds nk floats; restrict tells the compiler out does not alias q/k/v. (Portable form; the
 * AVX2 one below is what runs where the CPU has it.) */
static void attend_row(float *restrict out, const float *restrict q, const float *restrict k, ptrdiff_t ldk,
                       const float *restrict v, ptrdiff_t ldv, int nk, int dh, float scale,
                       float *restrict s) {
    float mx = -INFINITY;
    for (int j = 0; j < nk; j++) {
        const float *kj = k + (size_t)j * ldk;
        float dot = 0.0f;
        for (int d = 0; d < dh; d++) dot += q[d] * kj[d];
        s[j] = dot * scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    float sum = 0.0f;
    for (int j = 0; j < nk; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float acc[64] = {0};
    for (int j = 0; j < nk; j++) {
        const float *vj = v + (size_t)j * ldv;
        const float p = s[j];
        for (int d = 0; d < dh; d++) acc[d] += p * vj[d];
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < dh; d++) out[d] = acc[d] * inv;
}

static void rows_plain(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                       const float *v, ptrdiff_t ldv, int first, int last, int nq, int nk, int heads,
                       int dh, float scale, float *s) {
    for (int t = first; t < last; t++) {
        int h = t / nq, i = t % nq;
        attend_row(out + (size_t)i * heads * dh + (size_t)h * dh, q + (size_t)i * ldq + (size_t)h * dh,
                   k + (size_t)h * dh, ldk, v + (size_t)h * dh, ldv, nk, dh, scale, s);
    }
}

#if MSAM_HAVE_AVX2
/* attend_row with dh % 8 == 0 (dh <= 64) in AVX2: scores of 8 keys at a time (their 8 partial
 * vectors turned by transpose8 and added, so no horizontal sum per key), the vector exp, then the
 * probability-weighted sum of the value rows in dh/8 registers. */
MSAM_TARGET_AVX2 static void attend_row_avx2(float *restrict out, const float *restrict q,
                                             const float *restrict k, ptrdiff_t ldk,
                                             const float *restrict v, ptrdiff_t ldv, int nk, int dh,
                                             float scale, float *restrict s) {
    const int nv = dh / 8;
    __m256 qv[8];
    for (int c = 0; c < nv; c++) qv[c] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * c), _mm256_set1_ps(scale));
    __m256 mx8 = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        __m256 r[8];
        for (int t = 0; t < 8; t++) {
            const float *kj = k + (size_t)(j + t) * ldk;
            __m256 a = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kj));
            for (int c = 1; c < nv; c++) a = _mm256_fmadd_ps(qv[c], _mm256_loadu_ps(kj + 8 * c), a);
            r[t] = a;
        }
        transpose8(r);
        __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])),
                                   _mm256_add_ps(_mm256_add_ps(r[4], r[5]), _mm256_add_ps(r[6], r[7])));
        _mm256_storeu_ps(s + j, sum);
        mx8 = _mm256_max_ps(mx8, sum);
    }
    float mx = hmax8(mx8);
    for (; j < nk; j++) {
        const float *kj = k + (size_t)j * ldk;
        __m256 a = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kj));
        for (int c = 1; c < nv; c++) a = _mm256_fmadd_ps(qv[c], _mm256_loadu_ps(kj + 8 * c), a);
        s[j] = hsum8(a);
        mx = s[j] > mx ? s[j] : mx;
    }
    const float sum = exp_shift_sum(s, nk, mx);
    __m256 acc[8];
    for (int c = 0; c < nv; c++) acc[c] = _mm256_setzero_ps();
    for (j = 0; j < nk; j++) {
        const __m256 p = _mm256_set1_ps(s[j]);
        const float *vj = v + (size_t)j * ldv;
        for (int c = 0; c < nv; c++) acc[c] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 8 * c), acc[c]);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int c = 0; c < nv; c++) _mm256_storeu_ps(out + 8 * c, _mm256_mul_ps(acc[c], inv));
}

MSAM_TARGET_AVX2 static void rows_avx2(float *out, const float *q, ptrdiff_t ldq, const float *k,
                                       ptrdiff_t ldk, const float *v, ptrdiff_t ldv, int first,
                                       int last, int nq, int nk, int heads, int dh, float scale,
                                       float *s) {
    for (int t = first; t < last; t++) {
        int h = t / nq, i = t % nq;
        attend_row_avx2(out + (size_t)i * heads * dh + (size_t)h * dh, q + (size_t)i * ldq + (size_t)h * dh,
                        k + (size_t)h * dh, ldk, v + (size_t)h * dh, ldv, nk, dh, scale, s);
    }
}

/* All nq (<= HEAD_ROWS_MAX) query rows of one head together, for few queries over many keys
 * (layer 0's token->image attention over the cached projections). The decoder's key and value
 * rows are 1 KB apart, so each head's 16 floats of a row are a line of their own and the strided
 * stream keeps only a few dozen lines in L1 and a few hundred in L2: row by row, every query would
 * fetch the head's 4096 lines again from L3. Here the scores of a block of 8 keys are made for
 * every query while its lines are in L1, and the value rows are swept in blocks that stay in L2 by
 * groups of 4 queries. Each row's arithmetic is attend_row_avx2's, in the same order. */
enum { HEAD_ROWS_MAX = 16, VALUE_BLOCK = 256 };

MSAM_TARGET_AVX2 static void attend_head_avx2(float *out, ptrdiff_t ldo, const float *q, ptrdiff_t ldq,
                                              int nq, const float *k, ptrdiff_t ldk, const float *v,
                                              ptrdiff_t ldv, int nk, int dh, float scale, float *s) {
    const int nv = dh / 8;
    __m256 qv[HEAD_ROWS_MAX][8], mx8[HEAD_ROWS_MAX];
    float mx[HEAD_ROWS_MAX], sum[HEAD_ROWS_MAX];
    for (int i = 0; i < nq; i++) {
        for (int c = 0; c < nv; c++)
            qv[i][c] = _mm256_mul_ps(_mm256_loadu_ps(q + (size_t)i * ldq + 8 * c), _mm256_set1_ps(scale));
        mx8[i] = _mm256_set1_ps(-INFINITY);
    }
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        /* the 1 KB stride puts only 4 rows in a page, too few for the hardware prefetcher to
         * follow: ask for the key rows two blocks ahead */
        if (j + 24 <= nk)
            for (int t = 0; t < 8; t++) _mm_prefetch((const char *)(k + (size_t)(j + 16 + t) * ldk), _MM_HINT_T0);
        for (int i = 0; i < nq; i++) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) {
                const float *kj = k + (size_t)(j + t) * ldk;
                __m256 a = _mm256_mul_ps(qv[i][0], _mm256_loadu_ps(kj));
                for (int c = 1; c < nv; c++) a = _mm256_fmadd_ps(qv[i][c], _mm256_loadu_ps(kj + 8 * c), a);
                r[t] = a;
            }
            transpose8(r);
            __m256 sm = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])),
                                      _mm256_add_ps(_mm256_add_ps(r[4], r[5]), _mm256_add_ps(r[6], r[7])));
            _mm256_storeu_ps(s + (size_t)i * nk + j, sm);
            mx8[i] = _mm256_max_ps(mx8[i], sm);
        }
    }
    for (int i = 0; i < nq; i++) {
        float *si = s + (size_t)i * nk;
        float m = hmax8(mx8[i]);
        for (int jj = j; jj < nk; jj++) {
            const float *kj = k + (size_t)jj * ldk;
            __m256 a = _mm256_mul_ps(qv[i][0], _mm256_loadu_ps(kj));
            for (int c = 1; c < nv; c++) a = _mm256_fmadd_ps(qv[i][c], _mm256_loadu_ps(kj + 8 * c), a);
            si[jj] = hsum8(a);
            m = si[jj] > m ? si[jj] : m;
        }
        mx[i] = m;
    }
    for (int i = 0; i < nq; i++) sum[i] = exp_shift_sum(s + (size_t)i * nk, nk, mx[i]);
    __m256 acc[HEAD_ROWS_MAX][8];
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < nv; c++) acc[i][c] = _mm256_setzero_ps();
    for (int j0 = 0; j0 < nk; j0 += VALUE_BLOCK) {
        const int j1 = j0 + VALUE_BLOCK < nk ? j0 + VALUE_BLOCK : nk;
        for (int i0 = 0; i0 < nq; i0 += 4) {
            const int ni = nq - i0 < 4 ? nq - i0 : 4;
            for (int jj = j0; jj < j1; jj++) {
                const float *vj = v + (size_t)jj * ldv;
                if (i0 == 0 && jj + 16 < nk) _mm_prefetch((const char *)(vj + 16 * ldv), _MM_HINT_T0);
                __m256 vv[8];
                for (int c = 0; c < nv; c++) vv[c] = _mm256_loadu_ps(vj + 8 * c);
                for (int i = i0; i < i0 + ni; i++) {
                    const __m256 p = _mm256_set1_ps(s[(size_t)i * nk + jj]);
                    for (int c = 0; c < nv; c++) acc[i][c] = _mm256_fmadd_ps(p, vv[c], acc[i][c]);
                }
            }
        }
    }
    for (int i = 0; i < nq; i++) {
        const __m256 inv = _mm256_set1_ps(1.0f / sum[i]);
        for (int c = 0; c < nv; c++) _mm256_storeu_ps(out + (size_t)i * ldo + 8 * c, _mm256_mul_ps(acc[i][c], inv));
    }
}

#endif

/* Few queries over many keys, a head per task: see attend_head_avx2. scratch holds
 * scratch_threads blocks of MSAM_ATTN_SCRATCH_ROWS x MSAM_ATTN_SCRATCH_KEYS floats (one per
 * thread, so nothing is allocated). Returns 0 when it did not run (no AVX2, no scratch, or a shape
 * it does not take). */
static int attention_by_head(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                             const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh, float scale,
                             float *scratch, int scratch_threads) {
#if MSAM_HAVE_AVX2
    if (nq > HEAD_ROWS_MAX || nq > MSAM_ATTN_SCRATCH_ROWS || nk < VALUE_BLOCK || nk > MSAM_ATTN_SCRATCH_KEYS ||
        dh % 8 != 0 || !scratch || scratch_threads < 1 || !msam_use_avx2())
        return 0;
    int nthreads = heads < msam_threads() ? heads : msam_threads();
    if (nthreads > scratch_threads) nthreads = scratch_threads;
#pragma omp parallel num_threads(nthreads)
    {
        int id = 0;
#ifdef _OPENMP
        id = omp_get_thread_num();
#endif
        float *s = scratch + (size_t)id * MSAM_ATTN_SCRATCH_ROWS * MSAM_ATTN_SCRATCH_KEYS;
#pragma omp for schedule(static)
        for (int h = 0; h < heads; h++)
            attend_head_avx2(out + (size_t)h * dh, (ptrdiff_t)heads * dh, q + (size_t)h * dh, ldq, nq,
                             k + (size_t)h * dh, ldk, v + (size_t)h * dh, ldv, nk, dh, scale, s);
    }
    return 1;
#else
    (void)out, (void)q, (void)ldq, (void)k, (void)ldk, (void)v, (void)ldv, (void)nq, (void)nk;
    (void)heads, (void)dh, (void)scale, (void)scratch, (void)scratch_threads;
    return 0;
#endif
}

void msam_cpu_attention(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                        const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh, float *scratch,
                        int scratch_threads) {
    const float scale = 1.0f / sqrtf((float)dh);
    const int total = heads * nq;
    if (dh > 64 || nk < 1 || nk > MAX_STACK_KEYS) { /* not used by MobileSAM; keep it defined */
        msam_ref_attention(out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh);
        return;
    }
    if (attention_by_head(out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh, scale, scratch, scratch_threads)) return;
    const int nthreads = (long)nq * nk * heads > 16384 ? msam_threads() : 1;
#pragma omp parallel num_threads(nthreads)
    {
        float s[MAX_STACK_KEYS]; /* one score row, 16 KB of the thread's stack */
        int nt = 1, id = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads(), id = omp_get_thread_num();
#endif
        const int first = (int)((long)total * id / nt), last = (int)((long)total * (id + 1) / nt);
#if MSAM_HAVE_AVX2
        if (dh % 8 == 0 && msam_use_avx2())
            rows_avx2(out, q, ldq, k, ldk, v, ldv, first, last, nq, nk, heads, dh, scale, s);
        else
#endif
            rows_plain(out, q, ldq, k, ldk, v, ldv, first, last, nq, nk, heads, dh, scale, s);
    }
}

/* ---- probabilities only ------------------------------------------------------------------ */
/* The most keys attention_probs takes (the decoder's folded form has at most 16 tokens). */
#define PROBS_MAX_KEYS 64

#if MSAM_HAVE_AVX2
/* attention_probs for 8 query rows at once with dh % 8 == 0, the rows in the vector lanes: each
 * head's 8 x dh block of q is turned by transpose8, so a key's score for all 8 rows is dh FMAs
 * with its broadcast channels, and the softmax over the keys is a handful of whole-vector ops.
 * The rows' probabilities are turned back 8 keys at a time; a row's last partial group of keys is
 * written through a mask (the next head's, or the next row's, floats follow it). */
MSAM_TARGET_AVX2 static void probs_block8_avx2(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq,
                                               const float *k, ptrdiff_t ldk, int nk, int heads, int dh,
                                               float scale) {
    __m256 qt[64], s[PROBS_MAX_KEYS];
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int h = 0; h < heads; h++) {
        for (int c0 = 0; c0 < dh; c0 += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_ps(q + (size_t)t * ldq + (size_t)h * dh + c0);
            transpose8(r);
            for (int d = 0; d < 8; d++) qt[c0 + d] = r[d];
        }
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int j = 0; j < nk; j++) {
            const float *kj = k + (size_t)j * ldk + (size_t)h * dh;
            __m256 acc = _mm256_mul_ps(qt[0], _mm256_broadcast_ss(kj));
            for (int d = 1; d < dh; d++) acc = _mm256_fmadd_ps(qt[d], _mm256_broadcast_ss(kj + d), acc);
            s[j] = _mm256_mul_ps(acc, _mm256_set1_ps(scale));
            mx = _mm256_max_ps(mx, s[j]);
        }
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < nk; j++) {
            s[j] = exp8(_mm256_sub_ps(s[j], mx));
            sum = _mm256_add_ps(sum, s[j]);
        }
        const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
        for (int j0 = 0; j0 < nk; j0 += 8) {
            const int w = nk - j0 < 8 ? nk - j0 : 8;
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = t < w ? _mm256_mul_ps(s[j0 + t], inv) : _mm256_setzero_ps();
            transpose8(r);
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), iota);
            for (int t = 0; t < 8; t++) {
                float *dst = P + (size_t)t * ldp + (size_t)h * nk + j0;
                if (w == 8) _mm256_storeu_ps(dst, r[t]);
                else _mm256_maskstore_ps(dst, mask, r[t]);
            }
        }
    }
}
#endif

void msam_cpu_attention_probs(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k,
                              ptrdiff_t ldk, int nq, int nk, int heads, int dh) {
    int done = 0; /* rows computed by the vector path (whole blocks of 8) */
#if MSAM_HAVE_AVX2
    if (nk >= 1 && nk <= PROBS_MAX_KEYS && dh % 8 == 0 && dh <= 64 && msam_use_avx2()) {
        const float scale = 1.0f / sqrtf((float)dh);
        const int blocks = nq / 8;
        const int nthreads = (long)nq * nk * heads > 16384 ? msam_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int b = 0; b < blocks; b++)
            probs_block8_avx2(P + (size_t)b * 8 * ldp, ldp, q + (size_t)b * 8 * ldq, ldq, k, ldk, nk, heads, dh, scale);
        done = blocks * 8;
    }
#endif
    if (done < nq)
        msam_ref_attention_probs(P + (size_t)done * ldp, ldp, q + (size_t)done * ldq, ldq, k, ldk, nq - done, nk,
                                     heads, dh);
}


