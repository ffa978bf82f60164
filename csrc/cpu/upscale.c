/* upscale.c - the mask decoder's output upscaling fused with its hypernetwork mask logits: each
 * block of pixels goes through both transposed convs, LayerNorm2d and the GELUs while in cache. */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "activation.h"
#include "cpu_kernels.h"
#include "gemm_internal.h"
#include "threads.h"
#include "vec_avx2.h"

/* Pixels per block: 24 rows for the first product (four 6-row register tiles) and 96 for the
 * second; the block's two maps (24 KB + 48 KB at MobileSAM's widths) stay in L2 between steps,
 * where the unfused form wrote 12 MB and read it back three times. */
enum { PIX_BLOCK = 24 };



#if MSAM_HAVE_AVX2
/* The same for c % 8 == 0 (c <= 64), 8 rows at a time: their 8 partial vectors per mask are
 * turned by transpose8 and added, giving the 8 logits as one vector (no per-row horizontal sum).
 * 8 rows from a multiple of 8 are one 2x4 pixel block: lanes 0,1,4,5 are its top row, 2,3,6,7
 * the bottom one. */
MSAM_TARGET_AVX2 static void mask_logit_rows_avx2(float *restrict low, const float *restrict up,
                                                  const float *restrict hyper, int first, int last,
                                                  int g, int c, int n) {
    const int nv = c / 8, W = 4 * g;
    const size_t plane = (size_t)W * W;
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    int r = first;
    for (; r < last && (r & 7); r++) msam_ref_mask_logit_rows(low, up + (size_t)(r - first) * c, hyper, r, r + 1, g, c, n);
    for (; r + 8 <= last; r += 8) {
        const size_t o = msam_ref_subpixel_offset(r, g);
        for (int i = 0; i < n; i++) {
            const float *hy = hyper + (size_t)i * c;
            __m256 acc[8];
            for (int t = 0; t < 8; t++) {
                const float *u = up + (size_t)(r + t - first) * c;
                __m256 a = _mm256_mul_ps(_mm256_loadu_ps(u), _mm256_loadu_ps(hy));
                for (int v = 1; v < nv; v++) a = _mm256_fmadd_ps(_mm256_loadu_ps(u + 8 * v), _mm256_loadu_ps(hy + 8 * v), a);
                acc[t] = a;
            }
            transpose8(acc);
            __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
                                       _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7])));
            sum = _mm256_permutevar8x32_ps(sum, order);
            float *dst = low + (size_t)i * plane + o;
            _mm_storeu_ps(dst, _mm256_castps256_ps128(sum));
            _mm_storeu_ps(dst + W, _mm256_extractf128_ps(sum, 1));
        }
    }
    msam_ref_mask_logit_rows(low, up + (size_t)(r - first) * c, hyper, r, last, g, c, n);
}
#endif

static void mask_logits(float *low, const float *up, const float *hyper, int first, int last, int g, int c,
                        int n) {
#if MSAM_HAVE_AVX2
    if (c % 8 == 0 && c <= 64 && msam_use_avx2()) {
        mask_logit_rows_avx2(low, up, hyper, first, last, g, c, n);
        return;
    }
#endif
    msam_ref_mask_logit_rows(low, up, hyper, first, last, g, c, n);
}

/* GELU in place over one of the block's maps, while it is in L1/L2. A pass of its own is cheaper
 * per element than the GELU inside the GEMM's epilogue (where the tile's twelve accumulators are
 * live) or inside the LayerNorm's store loop. */
static void gelu_rows(float *v, size_t n) {
#if MSAM_HAVE_AVX2
    if (msam_use_avx2()) {
        msam_gelu_avx2(v, v, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) v[i] = msam_gelu(v[i]);
}

/* Bytes of one thread's buffers, a multiple of 64 so each thread's start stays aligned: the
 * block's two maps, the parts' second map and their two packed operands. */
static size_t pack_bytes(int c1) { return (msam_gemm_dyn_scratch_bytes(4 * c1, MSAM_UPSCALE_MAX_K) + 63) & ~(size_t)63; }

static size_t block_bytes(int c1, int c) {
    const size_t floats = (size_t)PIX_BLOCK * 8 * (size_t)c1 + (size_t)PIX_BLOCK * 16 * (size_t)c;
    return ((floats * sizeof(float) + 63) & ~(size_t)63) + 2 * pack_bytes(c1);
}

size_t msam_cpu_upscale_masks_scratch_bytes(int c1, int c, int threads) {
    return (size_t)(threads > 0 ? threads : 1) * block_bytes(c1, c);
}

/* The first map of a block from the given parts (ops.h): the two K = k products of the block's
 * rows on this thread, against M0 and M1 packed into pk0 / pk1 on the thread's first block. */
static void combine_parts(float *u, float *t, const msam_upscale_parts *pp, int p0, int np, int width,
                          void *pk0, void *pk1, int packed) {
    const int k = pp->k;
    msam_gemm_dyn_serial(np, pp->p0 + (size_t)p0 * k, k, pp->m0, 1, width, width, k, NULL, MSAM_ACT_NONE,
                         pp->u0 + (size_t)p0 * width, width, t, width, pk0, packed);
    msam_gemm_dyn_serial(np, pp->p1 + (size_t)p0 * k, k, pp->m1, 1, width, width, k, pp->f1, MSAM_ACT_NONE, NULL, 0,
                         u, width, pk1, packed);
    for (int p = 0; p < np; p++) {
        const float s0 = pp->s0[p0 + p], s1 = pp->s1[p0 + p];
        float *ur = u + (size_t)p * width;
        const float *tr = t + (size_t)p * width;
        for (int i = 0; i < width; i++) ur[i] = s1 * (s0 * tr[i] + ur[i]) + pp->h[i];
    }
}

void msam_cpu_upscale_masks(float *low, const float *x, const msam_upscale_parts *parts, int g,
                            const msam_linear *up1, const float *gamma, const float *beta, float eps,
                            const msam_linear *up2, const float *hyper, int n, void *scratch,
                            size_t scratch_bytes) {
    const int cin = up1->k_in, c1 = up1->n_out / 4, c = up2->n_out / 4;
    const size_t per = block_bytes(c1, c);
    const int pixels = g * g, blocks = (pixels + PIX_BLOCK - 1) / PIX_BLOCK;
    if (parts && (parts->k < 1 || parts->k > MSAM_UPSCALE_MAX_K)) return; /* the decoder never asks */
    int nt = msam_threads();
    if ((size_t)nt > scratch_bytes / per) nt = (int)(scratch_bytes / per);
    if (nt > blocks) nt = blocks;
    if (nt < 1) return; /* the caller's scratch covers at least one thread (see ops.h) */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int id = 0;
#ifdef _OPENMP
        id = omp_get_thread_num();
#endif
        float *u1 = (float *)((char *)scratch + (size_t)id * per); /* PIX_BLOCK*4 x c1 */
        float *t1 = u1 + (size_t)PIX_BLOCK * 4 * c1;                /* PIX_BLOCK*4 x c1 (parts) */
        float *u2 = t1 + (size_t)PIX_BLOCK * 4 * c1;                /* PIX_BLOCK*16 x c */
        char *pk0 = (char *)scratch + (size_t)(id + 1) * per - 2 * pack_bytes(c1), *pk1 = pk0 + pack_bytes(c1);
        int packed = 0;
        /* dynamic: a thread that loses its core for a while does not hold the others back */
#pragma omp for schedule(dynamic, 4)
        for (int b = 0; b < blocks; b++) {
            const int p0 = b * PIX_BLOCK, np = pixels - p0 < PIX_BLOCK ? pixels - p0 : PIX_BLOCK;
            if (parts) combine_parts(u1, t1, parts, p0, np, 4 * c1, pk0, pk1, packed), packed = 1;
            else msam_gemm_serial(np, x + (size_t)p0 * cin, cin, up1->b, up1->bias, MSAM_ACT_NONE, NULL, 0, u1, 4 * c1);
            msam_cpu_layernorm_rows(u1, u1, 0, 4 * np, c1, gamma, beta, eps);
            gelu_rows(u1, (size_t)np * 4 * c1);
            msam_gemm_serial(4 * np, u1, c1, up2->b, up2->bias, MSAM_ACT_NONE, NULL, 0, u2, 4 * c);
            gelu_rows(u2, (size_t)np * 16 * c);
            mask_logits(low, u2, hyper, 16 * p0, 16 * (p0 + np), g, c, n);
        }
    }
}

