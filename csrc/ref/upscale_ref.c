/* upscale_ref.c - the mask decoder's output upscaling and mask logits, unfused and plain
 * (the reference of ops->upscale_masks; the CPU kernel writes its leftover rows with it). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

/* Mask logits of rows [first, last): row r is up[(r - first) * c], dotted with the n <= 4
 * hypernetwork vectors (plain form). */
void msam_ref_mask_logit_rows(float *restrict low, const float *restrict up, const float *restrict hyper,
                            int first, int last, int g, int c, int n) {
    const size_t plane = (size_t)16 * g * g;
    for (int r = first; r < last; r++) {
        const float *u = up + (size_t)(r - first) * c;
        const size_t o = msam_ref_subpixel_offset(r, g);
        for (int i = 0; i < n; i++) {
            const float *hy = hyper + (size_t)i * c;
            float acc = 0.0f;
            for (int k = 0; k < c; k++) acc += u[k] * hy[k];
            low[(size_t)i * plane + o] = acc;
        }
    }
}

/* Plain reference, unfused and single-threaded: the weights unpacked ([n_out][k_in] in the
 * sub-pixel order of ops.h), the double-sum GEMM, then LayerNorm, GELU and the logits in turn.
 * u1 holds g*g*4*c1 floats and u2 g*g*16*c. */
void msam_ref_upscale_masks(float *low, const float *x, int g, int cin, int c1, int c,
                                const float *w1, const float *b1, const float *gamma, const float *beta,
                                float eps, const float *w2, const float *b2, const float *hyper, int n,
                                float *u1, float *u2) {
    const int pixels = g * g;
    msam_ref_gemm(pixels, 4 * c1, cin, x, cin, w1, b1, MSAM_ACT_NONE, NULL, 0, u1, 4 * c1);
    for (int r = 0; r < 4 * pixels; r++) {
        float *v = u1 + (size_t)r * c1;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < c1; i++) mean += v[i];
        mean /= c1;
        for (int i = 0; i < c1; i++) var += (v[i] - mean) * (v[i] - mean);
        const double rstd = 1.0 / sqrt(var / c1 + eps);
        for (int i = 0; i < c1; i++) v[i] = msam_gelu((float)((v[i] - mean) * rstd * gamma[i] + beta[i]));
    }
    msam_ref_gemm(4 * pixels, 4 * c, c1, u1, c1, w2, b2, MSAM_ACT_GELU, NULL, 0, u2, 4 * c);
    msam_ref_mask_logit_rows(low, u2, hyper, 0, 16 * pixels, g, c, n);
}
