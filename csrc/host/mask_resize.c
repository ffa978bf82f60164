/* mask_resize.c - torch's bilinear interpolate of host float planes (mask post-processing),
 * reproducing its arithmetic bit for bit, with the crop and the threshold fused in. */
#include "mask_resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* Below this many multiply-adds a pass runs on the calling thread: waking a team costs more.
 * Threads: msam_kernel_threads (the setting, fork-safe). */
#define PAR_MIN_WORK (1 << 16)

/* Bit-exactness needs fused multiply-adds exactly where torch has them: explicit fmaf. GCC in
 * ISO C mode (-std=c11) does not contract a * b + c on its own; clang would without this. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ======================================================================================= */
/* torch: bilinear, align_corners=False, no antialias.                                      */
/* ======================================================================================= */

/* torch's CPU kernels are built with FMA (AVX2 / AVX-512 builds), and the compiler fuses two of
 * its expressions; we reproduce them with explicit fmaf so the result is bit-identical to the
 * generic (channels-first) path that interpolate takes for masks:
 *   src = fma(ratio, o + 0.5, -0.5)           (area_pixel_compute_source_index)
 *   out = fma(a, wa, b * wb)                  (t0 * w0 + t1 * w1, along x then along y)
 * torch's other paths (channels-last kernel: one thread with C == 3, or outputs with
 * H + W <= 128) sum the four corners differently and differ from this by about an ulp. */

/* One output coordinate's two source samples and weights: src clamped at 0, i0 = floor (at
 * most in - 1), l1 = src - i0, l0 = 1 - l1; a same-size axis is copied. */
static inline __attribute__((always_inline)) void
lin_coord(int in, int out, float ratio, int o, int *i0, int *i1, float *l0, float *l1)
{
    if (in == out) {
        *i0 = *i1 = o;
        *l0 = 1.0f;
        *l1 = 0.0f;
        return;
    }
    float s = fmaf(ratio, (float)o + 0.5f, -0.5f);
    if (s < 0.0f)
        s = 0.0f;
    int i = (int)floorf(s);
    if (i > in - 1)
        i = in - 1;
    float l = s - (float)i;
    l = l < 0.0f ? 0.0f : l > 1.0f ? 1.0f : l;
    *i0 = i;
    *i1 = i + (i < in - 1);
    *l1 = l;
    *l0 = 1.0f - l;
}

#define LIN_COLS 512    /* column coordinates computed per chunk, on the stack */
#define LIN_MIN_ROWS 16 /* fewest output rows per parallel work item */

/* The result goes to exactly one of dst (the floats) and mask (bytes: float > 0.0f). */
typedef struct {
    const float *src;
    int sh, sw;
    ptrdiff_t src_ld;
    float *dst;
    uint8_t *mask;
    ptrdiff_t dst_ld; /* in elements of whichever output is set */
    int dh, dw;
    int crop_h, crop_w;
    float ry, rx;
    int rows; /* output rows per work item */
} lin_job;

/* Along x, one source row over a column chunk: t[i] = fma(r[i0], l0, r[i1] * l1). */
typedef void (*lin_hrow_fn)(const float *r, int sw, const int *xi0, const int *xi1,
                            const float *xl0, const float *xl1, int len, float *t);
/* Along y, one output row segment from two x-interpolated rows, compared with 0. */
typedef void (*lin_vmask_fn)(const float *t0, const float *t1, float wy0, float wy1, int len,
                             uint8_t *out);

static void lin_hrow_plain(const float *r, int sw, const int *xi0, const int *xi1,
                           const float *xl0, const float *xl1, int len, float *t)
{
    (void)sw;
    for (int i = 0; i < len; i++)
        t[i] = fmaf(r[xi0[i]], xl0[i], r[xi1[i]] * xl1[i]);
}

static inline __attribute__((always_inline)) void
lin_vrow_f32(const float *t0, const float *t1, float wy0, float wy1, int len, float *out)
{
    for (int i = 0; i < len; i++)
        out[i] = fmaf(t0[i], wy0, t1[i] * wy1);
}

static void lin_vmask_plain(const float *t0, const float *t1, float wy0, float wy1, int len,
                            uint8_t *out)
{
    for (int i = 0; i < len; i++)
        out[i] = fmaf(t0[i], wy0, t1[i] * wy1) > 0.0f;
}

/* The two x-interpolated source rows of the current chunk, kept while output rows still read
 * them (upscaling reads each source row for several output rows). */
typedef struct {
    float v[2][LIN_COLS];
    int row[2];
} lin_rows;

static inline __attribute__((always_inline)) const float *
lin_source_row(const lin_job *j, lin_rows *c, int row, int keep, const int *xi0, const int *xi1,
               const float *xl0, const float *xl1, int len, lin_hrow_fn hrow)
{
    if (c->row[0] == row)
        return c->v[0];
    if (c->row[1] == row)
        return c->v[1];
    const int s = c->row[0] == keep ? 1 : 0;
    hrow(j->src + (ptrdiff_t)row * j->src_ld, j->sw, xi0, xi1, xl0, xl1, len, c->v[s]);
    c->row[s] = row;
    return c->v[s];
}

/* Output rows [b * j->rows, ...) of the crop, chunk by chunk of columns. */
static inline __attribute__((always_inline)) void
lin_block(const lin_job *j, int b, lin_hrow_fn hrow, lin_vmask_fn vmask)
{
    int xi0[LIN_COLS], xi1[LIN_COLS];
    float xl0[LIN_COLS], xl1[LIN_COLS];
    lin_rows cache;
    const int yb = b * j->rows;
    const int ye = j->crop_h - yb > j->rows ? yb + j->rows : j->crop_h;
    for (int xc = 0; xc < j->crop_w; xc += LIN_COLS) {
        const int len = j->crop_w - xc < LIN_COLS ? j->crop_w - xc : LIN_COLS;
        for (int i = 0; i < len; i++)
            lin_coord(j->sw, j->dw, j->rx, xc + i, &xi0[i], &xi1[i], &xl0[i], &xl1[i]);
        cache.row[0] = cache.row[1] = -1;
        for (int y = yb; y < ye; y++) {
            int y0, y1;
            float wy0, wy1;
            lin_coord(j->sh, j->dh, j->ry, y, &y0, &y1, &wy0, &wy1);
            const float *t0 = lin_source_row(j, &cache, y0, y1, xi0, xi1, xl0, xl1, len, hrow);
            const float *t1 = lin_source_row(j, &cache, y1, y0, xi0, xi1, xl0, xl1, len, hrow);
            const ptrdiff_t at = (ptrdiff_t)y * j->dst_ld + xc;
            if (j->mask)
                vmask(t0, t1, wy0, wy1, len, j->mask + at);
            else
                lin_vrow_f32(t0, t1, wy0, wy1, len, j->dst + at);
        }
    }
}

static void lin_block_plain(const lin_job *j, int b)
{
    lin_block(j, b, lin_hrow_plain, lin_vmask_plain);
}

/* On x86 a baseline build would call libm for every fmaf; compile a copy with the FMA
 * instruction enabled and pick it at run time (the results are the same either way). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LIN_FMA_DISPATCH 1
#include <immintrin.h>

/* Along x with AVX2: the 8 outputs of a group read source columns in [base, base + span]
 * (i0, i1 never decrease along the row). While the span fits one or two registers loaded
 * from the row, lane permutes pick the samples; otherwise (downscaling by about 2 or more)
 * a gather. The window start is pulled back from the row's end so its loads stay in the row. */
__attribute__((target("avx2,fma"))) static void
lin_hrow_avx2(const float *r, int sw, const int *xi0, const int *xi1, const float *xl0,
              const float *xl1, int len, float *t)
{
    const __m256i seven = _mm256_set1_epi32(7);
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        const __m256i k0 = _mm256_loadu_si256((const __m256i *)(xi0 + i));
        const __m256i k1 = _mm256_loadu_si256((const __m256i *)(xi1 + i));
        const int base = xi0[i], last = xi1[i + 7];
        __m256 a, b;
        if (sw >= 8 && last - (base < sw - 8 ? base : sw - 8) < 8) {
            const int w0 = base < sw - 8 ? base : sw - 8;
            const __m256 win = _mm256_loadu_ps(r + w0);
            const __m256i off = _mm256_set1_epi32(w0);
            a = _mm256_permutevar8x32_ps(win, _mm256_sub_epi32(k0, off));
            b = _mm256_permutevar8x32_ps(win, _mm256_sub_epi32(k1, off));
        } else if (sw >= 16 && last - (base < sw - 16 ? base : sw - 16) < 16) {
            const int w0 = base < sw - 16 ? base : sw - 16;
            const __m256 lo = _mm256_loadu_ps(r + w0), hi = _mm256_loadu_ps(r + w0 + 8);
            const __m256i off = _mm256_set1_epi32(w0);
            const __m256i d0 = _mm256_sub_epi32(k0, off), d1 = _mm256_sub_epi32(k1, off);
            a = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, d0), _mm256_permutevar8x32_ps(hi, d0),
                                 _mm256_castsi256_ps(_mm256_cmpgt_epi32(d0, seven)));
            b = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, d1), _mm256_permutevar8x32_ps(hi, d1),
                                 _mm256_castsi256_ps(_mm256_cmpgt_epi32(d1, seven)));
        } else {
            a = _mm256_i32gather_ps(r, k0, 4);
            b = _mm256_i32gather_ps(r, k1, 4);
        }
        const __m256 v = _mm256_fmadd_ps(a, _mm256_loadu_ps(xl0 + i),
                                         _mm256_mul_ps(b, _mm256_loadu_ps(xl1 + i)));
        _mm256_storeu_ps(t + i, v);
    }
    for (; i < len; i++)
        t[i] = fmaf(r[xi0[i]], xl0[i], r[xi1[i]] * xl1[i]);
}

/* Along y with AVX2, 32 outputs at a time: four compares give 32-bit all-ones / zero lanes,
 * two saturating packs narrow them to bytes (interleaved by 128-bit lane, which one dword
 * permute puts back in order), and a mask with 1 leaves 0 / 1. */
__attribute__((target("avx2,fma"))) static void
lin_vmask_avx2(const float *t0, const float *t1, float wy0, float wy1, int len, uint8_t *out)
{
    const __m256 w0 = _mm256_set1_ps(wy0), w1 = _mm256_set1_ps(wy1), zero = _mm256_setzero_ps();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), one = _mm256_set1_epi8(1);
    int i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i m[4];
        for (int q = 0; q < 4; q++) {
            const __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(t0 + i + 8 * q), w0,
                                             _mm256_mul_ps(_mm256_loadu_ps(t1 + i + 8 * q), w1));
            m[q] = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_GT_OQ));
        }
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(m[0], m[1]),
                                             _mm256_packs_epi32(m[2], m[3]));
        _mm256_storeu_si256((__m256i *)(out + i),
                            _mm256_and_si256(_mm256_permutevar8x32_epi32(b, order), one));
    }
    for (; i < len; i++)
        out[i] = fmaf(t0[i], wy0, t1[i] * wy1) > 0.0f;
}

__attribute__((target("avx2,fma"))) static void lin_block_fma(const lin_job *j, int b)
{
    lin_block(j, b, lin_hrow_avx2, lin_vmask_avx2);
}
#endif

/* Both entry points: check and clip the sizes, then run blocks of output rows in parallel. */
static void lin_run(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst, uint8_t *mask,
                    int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w)
{
    lin_job j;
    void (*block)(const lin_job *, int) = lin_block_plain;

    if (!src || (!dst && !mask) || sh < 1 || sw < 1 || dh < 1 || dw < 1)
        return;
    if (crop_h > dh)
        crop_h = dh;
    if (crop_w > dw)
        crop_w = dw;
    if (crop_h < 1 || crop_w < 1)
        return;
#ifdef LIN_FMA_DISPATCH
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        block = lin_block_fma;
#endif
    j.src = src;
    j.sh = sh;
    j.sw = sw;
    j.src_ld = src_ld;
    j.dst = dst;
    j.mask = mask;
    j.dst_ld = dst_ld;
    j.dh = dh;
    j.dw = dw;
    j.crop_h = crop_h;
    j.crop_w = crop_w;
    /* torch: (float)in / out, a float division */
    j.ry = (float)sh / (float)dh;
    j.rx = (float)sw / (float)dw;
    /* A few blocks per thread: each block interpolates its first source rows along x again,
     * so blocks are as tall as load balancing allows. */
    const int nt = msam_kernel_threads();
    const double work = 4.0 * crop_h * crop_w;
    const int par = nt > 1 && work >= PAR_MIN_WORK;
    j.rows = par ? (crop_h + 4 * nt - 1) / (4 * nt) : crop_h;
    if (j.rows < LIN_MIN_ROWS)
        j.rows = LIN_MIN_ROWS;
    const int nblocks = (crop_h + j.rows - 1) / j.rows;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par)
    for (int b = 0; b < nblocks; b++)
        block(&j, b);
}

void msam_resize_bilinear_f32(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                              int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w)
{
    lin_run(src, sh, sw, src_ld, dst, NULL, dh, dw, dst_ld, crop_h, crop_w);
}

void msam_resize_bilinear_mask(const float *src, int sh, int sw, ptrdiff_t src_ld, uint8_t *dst,
                               int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w)
{
    lin_run(src, sh, sw, src_ld, NULL, dst, dh, dw, dst_ld, crop_h, crop_w);
}
