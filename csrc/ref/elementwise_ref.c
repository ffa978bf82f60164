/* elementwise_ref.c - plain references of the small ops (LayerNorm, elementwise, broadcast,
 * transpose, space-to-depth, input normalisation, the runtime-operand product, bilinear resize). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

void msam_ref_layernorm_pe(float *y, float *ype, float *rstd, const float *x, const float *pe, int rows, int c,
                           const float *gamma, const float *beta, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * c;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < c; i++) mean += xr[i];
        mean /= c;
        for (int i = 0; i < c; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const double rs = 1.0 / sqrt(var / c + eps);
        if (rstd) rstd[r] = (float)rs;
        for (int i = 0; i < c; i++) {
            const float o = (float)((xr[i] - mean) * rs * gamma[i] + beta[i]);
            if (ype) ype[(size_t)r * c + i] = o + pe[(size_t)r * c + i];
            y[(size_t)r * c + i] = o; /* after ype: y may be x */
        }
    }
}

void msam_ref_add(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void msam_ref_activate(float *y, const float *x, size_t n, msam_act act) {
    for (size_t i = 0; i < n; i++) y[i] = msam_apply_act(x[i], act);
}

void msam_ref_add_row(float *y, const float *x, const float *row, int rows, int c) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < c; i++) y[(size_t)r * c + i] = (x ? x[(size_t)r * c + i] : 0.0f) + row[i];
}

void msam_ref_transpose(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) y[(ptrdiff_t)j * ldy + i] = x[(ptrdiff_t)i * ldx + j];
}

void msam_ref_space_to_depth2(float *y, const float *x, int h, int w, int c) {
    for (int oy = 0; oy < h / 2; oy++)
        for (int ox = 0; ox < w / 2; ox++)
            for (int t = 0; t < 4; t++)
                for (int ch = 0; ch < c; ch++)
                    y[(((size_t)oy * (w / 2) + ox) * 4 + t) * c + ch] =
                        x[((size_t)(2 * oy + t / 2) * w + (2 * ox + t % 2)) * c + ch];
}

void msam_ref_normalize_pad(float *y, int side, const void *x, msam_dtype type, int h, int w, ptrdiff_t stride_c,
                            ptrdiff_t stride_y, ptrdiff_t stride_x, const float mean[3], const float std[3]) {
    for (int yy = 0; yy < side; yy++)
        for (int xx = 0; xx < side; xx++)
            for (int c = 0; c < 3; c++) {
                float v = 0.0f;
                if (yy < h && xx < w) {
                    const ptrdiff_t o = c * stride_c + yy * stride_y + xx * stride_x;
                    v = type == MSAM_U8 ? (float)((const uint8_t *)x)[o] : ((const float *)x)[o];
                    v = (v - mean[c]) / std[c];
                }
                y[((size_t)yy * side + xx) * 3 + c] = v;
            }
}

void msam_ref_matmul(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m, const float *w, ptrdiff_t ws_n,
                     ptrdiff_t ws_k, int n, int k, const float *bias, const float *residual, ptrdiff_t ldr) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = bias ? bias[j] : 0.0;
            for (int p = 0; p < k; p++) s += (double)x[(ptrdiff_t)i * ldx + p] * w[(ptrdiff_t)j * ws_n + (ptrdiff_t)p * ws_k];
            if (residual) s += residual[(ptrdiff_t)i * ldr + j];
            y[(ptrdiff_t)i * ldy + j] = (float)s;
        }
}

/* torch's source coordinate for output o, in float as torch computes it: fma(in / out, o + 0.5,
 * -0.5) clamped at 0 (the coordinate is the definition: its rounding moves the taps' weights), and
 * the two taps with the far one's weight (one tap when in == out). */
static void bilinear_tap(int in, int out, int o, int *i0, int *i1, double *l1) {
    if (in == out) {
        *i0 = *i1 = o;
        *l1 = 0.0;
        return;
    }
    float s = fmaf((float)in / (float)out, (float)o + 0.5f, -0.5f);
    if (s < 0.0f) s = 0.0f;
    int i = (int)floorf(s);
    if (i > in - 1) i = in - 1;
    const float l = s - (float)i;
    *i0 = i;
    *i1 = i + (i < in - 1);
    *l1 = l < 0.0f ? 0.0 : l > 1.0f ? 1.0 : (double)l;
}

void msam_ref_resize_bilinear(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst, int dh, int dw,
                              ptrdiff_t dst_ld, int crop_h, int crop_w) {
    for (int oy = 0; oy < crop_h && oy < dh; oy++) {
        int y0, y1;
        double ly;
        bilinear_tap(sh, dh, oy, &y0, &y1, &ly);
        for (int ox = 0; ox < crop_w && ox < dw; ox++) {
            int x0, x1;
            double lx;
            bilinear_tap(sw, dw, ox, &x0, &x1, &lx);
            const float *r0 = src + (ptrdiff_t)y0 * src_ld, *r1 = src + (ptrdiff_t)y1 * src_ld;
            const double top = r0[x0] * (1.0 - lx) + r0[x1] * lx, bot = r1[x0] * (1.0 - lx) + r1[x1] * lx;
            dst[(ptrdiff_t)oy * dst_ld + ox] = (float)(top * (1.0 - ly) + bot * ly);
        }
    }
}
