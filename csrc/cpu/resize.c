/* resize.c - Pillow's antialiased bilinear resize of 8-bit RGB (preprocessing) and torch's bilinear
 * interpolate of float planes (mask post-processing), each reproducing its reference's arithmetic. */
#include "resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"

/* Below this many multiply-adds a pass runs on the calling thread: waking a team costs more. */
#define PAR_MIN_WORK (1 << 16)

/* Bit-exactness needs fused multiply-adds exactly where the references have them: none in
 * Pillow's coefficients, explicit fmaf for torch's. GCC in ISO C mode (-std=c11) does not
 * contract a * b + c on its own; clang would without this. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ======================================================================================= */
/* Pillow: separable convolution with a triangle filter widened by the downscale factor.    */
/* ======================================================================================= */

/* Pillow keeps 32 - 8 - 2 fraction bits: 8 for the pixel value and 2 spare for sums of
 * coefficients that round above 1.0. Accumulators start at one half for round-to-nearest. */
#define PIL_FRAC_BITS 22
#define PIL_HALF (1 << (PIL_FRAC_BITS - 1))

static inline uint8_t pil_clip8(int32_t acc)
{
    int32_t v = acc >> PIL_FRAC_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The taps of one axis: output i reads n[i] samples from lo[i] with weights k[i * ksize + j]. */
typedef struct {
    int ksize;
    int *lo;
    int *n;
    int32_t *k;
} pil_axis;

static void pil_axis_free(pil_axis *a)
{
    free(a->lo);
    free(a->n);
    free(a->k);
    a->lo = a->n = NULL;
    a->k = NULL;
}

static double pil_triangle(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's coefficients, step for step: the scale is in/out in double (the box edges are floats,
 * exact for these sizes), the window is [center - support, center + support) rounded by adding
 * 0.5 and truncating, weights are normalised by dividing by their double sum, then each is
 * rounded half away from zero to 22-bit fixed point. Any reordering changes some pixels. */
static int pil_axis_build(pil_axis *a, int in_size, int out_size)
{
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* the triangle's support is 1 */
    double inv_filterscale = 1.0 / filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w;

    a->ksize = ksize;
    a->lo = malloc((size_t)out_size * sizeof(int));
    a->n = malloc((size_t)out_size * sizeof(int));
    a->k = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    w = malloc((size_t)ksize * sizeof(double));
    if (!a->lo || !a->n || !a->k || !w) {
        free(w);
        pil_axis_free(a);
        return -1;
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        double sum = 0.0;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        int n;
        int32_t *k = a->k + (size_t)i * ksize;
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        n = hi - lo;
        for (int j = 0; j < n; j++) {
            w[j] = pil_triangle((j + lo - center + 0.5) * inv_filterscale);
            sum += w[j];
        }
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? w[j] / sum : w[j];
            k[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_FRAC_BITS))
                         : (int32_t)(0.5 + v * (1 << PIL_FRAC_BITS));
        }
        for (int j = n; j < ksize; j++)
            k[j] = 0;
        a->lo[i] = lo;
        a->n[i] = n;
    }
    free(w);
    return 0;
}

/* One output row of the horizontal pass from a strided source row into packed RGB.
 * c0/c2: byte offsets of red and blue inside a source pixel (swapped for BGR). */
static inline __attribute__((always_inline)) void
pil_hrow(const uint8_t *line, ptrdiff_t ps, int c0, int c2, const pil_axis *ax, int nw,
         uint8_t *out)
{
    const int ksize = ax->ksize;
    for (int x = 0; x < nw; x++) {
        const int32_t *k = ax->k + (size_t)x * ksize;
        const uint8_t *p = line + ax->lo[x] * ps;
        int n = ax->n[x];
        int32_t s0 = PIL_HALF, s1 = PIL_HALF, s2 = PIL_HALF;
        for (int j = 0; j < n; j++, p += ps) {
            s0 += p[c0] * k[j];
            s1 += p[1] * k[j];
            s2 += p[c2] * k[j];
        }
        out[3 * x + 0] = pil_clip8(s0);
        out[3 * x + 1] = pil_clip8(s1);
        out[3 * x + 2] = pil_clip8(s2);
    }
}

/* One output row of the vertical pass over packed rows (rs bytes apart): int32 accumulators
 * along the row, in chunks, so the compiler vectorises it. Integer sums are exact, so summing
 * tap by tap over the whole chunk gives Pillow's per-pixel result. */
#define PIL_VCHUNK 512
static inline __attribute__((always_inline)) void
pil_vrow_packed(const uint8_t *first, ptrdiff_t rs, const int32_t *k, int n, ptrdiff_t row_bytes,
                uint8_t *out)
{
    int32_t acc[PIL_VCHUNK];
    for (ptrdiff_t c = 0; c < row_bytes; c += PIL_VCHUNK) {
        int len = row_bytes - c < PIL_VCHUNK ? (int)(row_bytes - c) : PIL_VCHUNK;
        for (int i = 0; i < len; i++)
            acc[i] = PIL_HALF;
        for (int j = 0; j < n; j++) {
            const uint8_t *r = first + j * rs + c;
            const int32_t kj = k[j];
            for (int i = 0; i < len; i++)
                acc[i] += r[i] * kj;
        }
        for (int i = 0; i < len; i++)
            out[c + i] = pil_clip8(acc[i]);
    }
}

static void pil_vrow_packed_plain(const uint8_t *first, ptrdiff_t rs, const int32_t *k, int n,
                                  ptrdiff_t row_bytes, uint8_t *out)
{
    pil_vrow_packed(first, rs, k, n, row_bytes, out);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PIL_X86 1
#include <immintrin.h>

/* The same loop with 8-lane 32-bit multiplies (SSE2 has no 32-bit multiply). */
__attribute__((target("avx2"))) static void
pil_vrow_packed_avx2(const uint8_t *first, ptrdiff_t rs, const int32_t *k, int n,
                     ptrdiff_t row_bytes, uint8_t *out)
{
    pil_vrow_packed(first, rs, k, n, row_bytes, out);
}

/* Horizontal row with one pixel's three channels in the lanes of one register: per tap, a
 * 4-byte load, a byte shuffle that widens R, G, B to 32 bits (and swaps BGR), one multiply.
 * Needs ps >= 3, so the 4th byte of every pixel but the row's last lies inside the row. */
__attribute__((target("sse4.1"))) static void
pil_hrow_sse41(const uint8_t *line, int w, ptrdiff_t ps, int bgr, const pil_axis *ax, int nw,
               uint8_t *out)
{
    const __m128i widen = bgr ? _mm_setr_epi8(2, -1, -1, -1, 1, -1, -1, -1, 0, -1, -1, -1, -1, -1, -1, -1)
                              : _mm_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, -1, -1, -1, -1);
    const int ksize = ax->ksize;
    for (int x = 0; x < nw; x++) {
        const int32_t *k = ax->k + (size_t)x * ksize;
        const int lo = ax->lo[x], n = ax->n[x];
        const uint8_t *p = line + lo * ps;
        const int full = lo + n < w ? n : n - 1; /* taps whose 4-byte load stays in the row */
        __m128i acc = _mm_set1_epi32(PIL_HALF);
        int j = 0;
        for (; j < full; j++, p += ps) {
            int32_t v;
            memcpy(&v, p, 4);
            __m128i px = _mm_shuffle_epi8(_mm_cvtsi32_si128(v), widen);
            acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[j])));
        }
        for (; j < n; j++, p += ps) {
            int32_t v = p[0] | p[1] << 8 | p[2] << 16;
            __m128i px = _mm_shuffle_epi8(_mm_cvtsi32_si128(v), widen);
            acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[j])));
        }
        /* >> 22, then saturate to 0..255 exactly as Pillow's clip table does */
        acc = _mm_srai_epi32(acc, PIL_FRAC_BITS);
        __m128i b = _mm_packus_epi16(_mm_packs_epi32(acc, acc), acc);
        int32_t r = _mm_cvtsi128_si32(b);
        if (x + 1 < nw) {
            memcpy(out + 3 * x, &r, 4); /* the 4th byte is rewritten by the next pixel */
        } else {
            out[3 * x + 0] = (uint8_t)r;
            out[3 * x + 1] = (uint8_t)(r >> 8);
            out[3 * x + 2] = (uint8_t)(r >> 16);
        }
    }
}
#endif

/* Horizontal pass over source rows [y0, y0 + rows) into packed RGB rows. */
static void pil_hpass(const uint8_t *src, int w, ptrdiff_t rs, ptrdiff_t ps, int bgr, int y0,
                      int rows, const pil_axis *ax, int nw, uint8_t *out)
{
    const ptrdiff_t out_rs = (ptrdiff_t)nw * 3;
    const int c0 = bgr ? 2 : 0, c2 = bgr ? 0 : 2;
    const int packed_rgb = ps == 3 && !bgr;
    int simd = 0;
#ifdef PIL_X86
    simd = ps >= 3 && __builtin_cpu_supports("sse4.1");
#endif
    const double work = (double)rows * nw * 3 * ax->ksize;
#pragma omp parallel for num_threads(msam_threads()) schedule(static) if (work >= PAR_MIN_WORK)
    for (int y = 0; y < rows; y++) {
        const uint8_t *line = src + (ptrdiff_t)(y0 + y) * rs;
        uint8_t *o = out + y * out_rs;
#ifdef PIL_X86
        if (simd) {
            pil_hrow_sse41(line, w, ps, bgr, ax, nw, o);
            continue;
        }
#endif
        (void)simd;
        if (packed_rgb) /* constant stride and offsets let the compiler simplify the taps */
            pil_hrow(line, 3, 0, 2, ax, nw, o);
        else
            pil_hrow(line, ps, c0, c2, ax, nw, o);
    }
}

/* Vertical pass: each output row is a weighted sum of whole source rows. */
static void pil_vpass(const uint8_t *src, ptrdiff_t rs, ptrdiff_t ps, int bgr, const pil_axis *ax,
                      int nh, int nw, uint8_t *dst)
{
    const ptrdiff_t row_bytes = (ptrdiff_t)nw * 3;
    const int c0 = bgr ? 2 : 0, c2 = bgr ? 0 : 2;
    const int packed_rgb = ps == 3 && !bgr;
    const int ksize = ax->ksize;
    void (*vrow)(const uint8_t *, ptrdiff_t, const int32_t *, int, ptrdiff_t, uint8_t *) =
        pil_vrow_packed_plain;
#ifdef PIL_X86
    if (__builtin_cpu_supports("avx2"))
        vrow = pil_vrow_packed_avx2;
#endif
    const double work = (double)nh * nw * 3 * ksize;
#pragma omp parallel for num_threads(msam_threads()) schedule(static) if (work >= PAR_MIN_WORK)
    for (int y = 0; y < nh; y++) {
        const int32_t *k = ax->k + (size_t)y * ksize;
        const uint8_t *first = src + (ptrdiff_t)ax->lo[y] * rs;
        const int n = ax->n[y];
        uint8_t *out = dst + y * row_bytes;
        if (packed_rgb) {
            vrow(first, rs, k, n, row_bytes, out);
        } else {
            for (int x = 0; x < nw; x++) {
                const uint8_t *p = first + x * ps;
                int32_t s0 = PIL_HALF, s1 = PIL_HALF, s2 = PIL_HALF;
                for (int j = 0; j < n; j++, p += rs) {
                    s0 += p[c0] * k[j];
                    s1 += p[1] * k[j];
                    s2 += p[c2] * k[j];
                }
                out[3 * x + 0] = pil_clip8(s0);
                out[3 * x + 1] = pil_clip8(s1);
                out[3 * x + 2] = pil_clip8(s2);
            }
        }
    }
}

msam_status msam_resize_rgb8_pillow(const uint8_t *src, int h, int w, ptrdiff_t src_row_stride,
                                    ptrdiff_t src_px_stride, int bgr, uint8_t *dst, int nh, int nw)
{
    pil_axis vert = {0}, horiz = {0};
    uint8_t *tmp = NULL;
    msam_status st = MSAM_OK;

    if (!src || !dst || h < 1 || w < 1 || nh < 1 || nw < 1)
        return MSAM_ERR_ARG;

    /* Same size: Pillow copies. */
    if (nh == h && nw == w) {
        const int c0 = bgr ? 2 : 0, c2 = bgr ? 0 : 2;
        for (int y = 0; y < h; y++) {
            const uint8_t *p = src + (ptrdiff_t)y * src_row_stride;
            uint8_t *o = dst + (ptrdiff_t)y * w * 3;
            for (int x = 0; x < w; x++, p += src_px_stride) {
                o[3 * x + 0] = p[c0];
                o[3 * x + 1] = p[1];
                o[3 * x + 2] = p[c2];
            }
        }
        return MSAM_OK;
    }

    /* Pillow runs a pass only along an axis whose size changes. With both changing, the pass
     * order matters for the result (the intermediate is rounded to 8 bits). Pillow 13 goes
     * vertical first when the height shrinks by more than twice what the width shrinks,
     * over the full source width; otherwise horizontal first, over only the source rows that
     * the vertical taps read. */
    if (nw != w && pil_axis_build(&horiz, w, nw) != 0)
        return MSAM_ERR_NOMEM;
    if (nh == h) {
        pil_hpass(src, w, src_row_stride, src_px_stride, bgr, 0, h, &horiz, nw, dst);
        goto done;
    }
    if (pil_axis_build(&vert, h, nh) != 0) {
        st = MSAM_ERR_NOMEM;
        goto done;
    }
    if (nw == w) {
        pil_vpass(src, src_row_stride, src_px_stride, bgr, &vert, nh, nw, dst);
        goto done;
    }
    if ((long long)h - nh > 0 && (long long)h - nh > 2 * ((long long)w - nw)) {
        const ptrdiff_t tmp_rs = (ptrdiff_t)w * 3;
        tmp = malloc((size_t)tmp_rs * (size_t)nh);
        if (!tmp) {
            st = MSAM_ERR_NOMEM;
            goto done;
        }
        pil_vpass(src, src_row_stride, src_px_stride, bgr, &vert, nh, w, tmp);
        pil_hpass(tmp, w, tmp_rs, 3, 0, 0, nh, &horiz, nw, dst);
    } else {
        const int y0 = vert.lo[0];
        const int y1 = vert.lo[nh - 1] + vert.n[nh - 1];
        const ptrdiff_t tmp_rs = (ptrdiff_t)nw * 3;
        tmp = malloc((size_t)tmp_rs * (size_t)(y1 - y0));
        if (!tmp) {
            st = MSAM_ERR_NOMEM;
            goto done;
        }
        pil_hpass(src, w, src_row_stride, src_px_stride, bgr, y0, y1 - y0, &horiz, nw, tmp);
        for (int y = 0; y < nh; y++)
            vert.lo[y] -= y0;
        pil_vpass(tmp, tmp_rs, 3, 0, &vert, nh, nw, dst);
    }
done:
    free(tmp);
    pil_axis_free(&vert);
    pil_axis_free(&horiz);
    return st;
}

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
    const int nt = msam_threads();
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
