/* pillow_resize.c - Pillow's antialiased bilinear resize of an 8-bit RGB image, bit-exact with
 * PIL.Image.resize(BILINEAR): a host-only utility (the preprocessing runs on the host image). */
#include "pillow_resize.h"
#include "weights.h" /* msam_fail */

/* Below this many multiply-adds a pass runs on the calling thread: waking a team costs more.
 * Threads: msam_kernel_threads (the setting, fork-safe). */
#define PAR_MIN_WORK (1 << 16)

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bit-exactness needs no fused multiply-add in Pillow's coefficients. GCC in ISO C mode
 * (-std=c11) does not contract a * b + c on its own; clang would without this. */
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

/* One output pixel of either pass: n taps k over source pixels step bytes apart from p into
 * packed RGB. c0/c2: byte offsets of red and blue inside a source pixel (swapped for BGR). */
static inline __attribute__((always_inline)) void
pil_pixel(const uint8_t *p, ptrdiff_t step, int c0, int c2, const int32_t *k, int n, uint8_t *out)
{
    int32_t s0 = PIL_HALF, s1 = PIL_HALF, s2 = PIL_HALF;
    for (int j = 0; j < n; j++, p += step) {
        s0 += p[c0] * k[j];
        s1 += p[1] * k[j];
        s2 += p[c2] * k[j];
    }
    out[0] = pil_clip8(s0);
    out[1] = pil_clip8(s1);
    out[2] = pil_clip8(s2);
}

/* One output row of the horizontal pass from a strided source row into packed RGB. */
static inline __attribute__((always_inline)) void
pil_hrow(const uint8_t *line, ptrdiff_t ps, int c0, int c2, const pil_axis *ax, int nw,
         uint8_t *out)
{
    for (int x = 0; x < nw; x++)
        pil_pixel(line + ax->lo[x] * ps, ps, c0, c2, ax->k + (size_t)x * ax->ksize, ax->n[x], out + 3 * x);
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
#pragma omp parallel for num_threads(msam_kernel_threads()) schedule(static) if (work >= PAR_MIN_WORK)
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
#pragma omp parallel for num_threads(msam_kernel_threads()) schedule(static) if (work >= PAR_MIN_WORK)
    for (int y = 0; y < nh; y++) {
        const int32_t *k = ax->k + (size_t)y * ksize;
        const uint8_t *first = src + (ptrdiff_t)ax->lo[y] * rs;
        const int n = ax->n[y];
        uint8_t *out = dst + y * row_bytes;
        if (packed_rgb) {
            vrow(first, rs, k, n, row_bytes, out);
        } else {
            for (int x = 0; x < nw; x++)
                pil_pixel(first + x * ps, rs, c0, c2, k, n, out + 3 * x);
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

msam_status msam_resize_rgb8(const uint8_t *src, int h, int w, ptrdiff_t src_row_stride,
                             ptrdiff_t src_px_stride, int bgr, uint8_t *dst, int nh, int nw,
                             msam_error *err) {
    if (!src || !dst) return msam_fail(err, MSAM_ERR_ARG, "image and output must not be NULL");
    if (h < 1 || w < 1) return msam_fail(err, MSAM_ERR_ARG, "image must be at least 1x1, got %dx%d", h, w);
    if (nh < 1 || nw < 1) return msam_fail(err, MSAM_ERR_ARG, "output size must be at least 1x1, got %dx%d", nh, nw);
    msam_status st = msam_resize_rgb8_pillow(src, h, w, src_row_stride, src_px_stride, bgr, dst, nh, nw);
    if (st) return msam_fail(err, st, "out of memory resizing a %dx%d image to %dx%d", h, w, nh, nw);
    return MSAM_OK;
}

/* ---- the same resize as a plan of taps, for a kernel that computes each pixel on its own ---- */

/* Identity taps (an axis whose size is unchanged): one tap of 1.0, which rounds back to the
 * sample exactly, as Pillow skipping the pass does. */
static int pil_axis_identity(pil_axis *a, int size)
{
    a->ksize = 1;
    a->lo = malloc((size_t)size * sizeof(int));
    a->n = malloc((size_t)size * sizeof(int));
    a->k = malloc((size_t)size * sizeof(int32_t));
    if (!a->lo || !a->n || !a->k) {
        pil_axis_free(a);
        return -1;
    }
    for (int i = 0; i < size; i++)
        a->lo[i] = i, a->n[i] = 1, a->k[i] = (int32_t)1 << PIL_FRAC_BITS;
    return 0;
}

static size_t pil_ksize(int in_size, int out_size)
{
    if (in_size == out_size)
        return 1;
    double scale = (double)(float)in_size / out_size;
    double support = scale < 1.0 ? 1.0 : scale;
    return (size_t)ceil(support) * 2 + 1;
}

size_t msam_resize_plan_len(int h, int w, int nh, int nw)
{
    if (h < 1 || w < 1 || nh < 1 || nw < 1)
        return 0;
    return 4 + (size_t)nw * (2 + pil_ksize(w, nw)) + (size_t)nh * (2 + pil_ksize(h, nh));
}

static int32_t *pil_axis_put(int32_t *p, const pil_axis *a, int out)
{
    for (int i = 0; i < out; i++)
        *p++ = a->lo[i];
    for (int i = 0; i < out; i++)
        *p++ = a->n[i];
    memcpy(p, a->k, sizeof(int32_t) * (size_t)out * (size_t)a->ksize);
    return p + (size_t)out * (size_t)a->ksize;
}

size_t msam_resize_plan(int h, int w, int nh, int nw, int32_t *plan, size_t cap)
{
    const size_t len = msam_resize_plan_len(h, w, nh, nw);
    if (!len || !plan || cap < len)
        return 0;
    pil_axis horiz = {0}, vert = {0};
    int ok = (nw == w ? pil_axis_identity(&horiz, nw) : pil_axis_build(&horiz, w, nw)) == 0;
    ok = ok && (nh == h ? pil_axis_identity(&vert, nh) : pil_axis_build(&vert, h, nh)) == 0;
    if (ok) {
        /* the pass order of msam_resize_rgb8_pillow: vertical first only when both sizes change
         * and the height shrinks by more than twice what the width does */
        const int v_first = nh != h && nw != w && (long long)h - nh > 0 && (long long)h - nh > 2 * ((long long)w - nw);
        plan[0] = horiz.ksize, plan[1] = vert.ksize, plan[2] = v_first, plan[3] = 0;
        pil_axis_put(pil_axis_put(plan + 4, &horiz, nw), &vert, nh);
    }
    pil_axis_free(&horiz);
    pil_axis_free(&vert);
    return ok ? len : 0;
}
