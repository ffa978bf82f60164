/* conv_ref.c - plain dense and depthwise 3x3 convolutions on channels-last maps, the
 * references of ops->conv3x3 (weights in PyTorch layout) and ops->dwconv3x3 (taps [9][c]). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

void msam_ref_conv3x3(float *y, const float *x, int h, int w, int cin, int cout, int stride,
                          const float *w_torch, const float *bias, msam_act act) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++)
            for (int o = 0; o < cout; o++) {
                float s = bias ? bias[o] : 0.0f;
                for (int ci = 0; ci < cin; ci++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = oy * stride - 1 + ky, ix = ox * stride - 1 + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            s += x[((size_t)iy * w + ix) * cin + ci] *
                                 w_torch[(((size_t)o * cin + ci) * 3 + ky) * 3 + kx];
                        }
                y[((size_t)oy * wo + ox) * cout + o] = msam_apply_act(s, act);
            }
}

void msam_ref_dwconv3x3(float *y, const float *x, int h, int w, int c, int stride,
                            const float *w9c, const float *bias, msam_act act) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++)
            for (int ch = 0; ch < c; ch++) {
                float s = bias ? bias[ch] : 0.0f;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy * stride - 1 + ky, ix = ox * stride - 1 + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        s += x[((size_t)iy * w + ix) * c + ch] * w9c[(size_t)(ky * 3 + kx) * c + ch];
                    }
                y[((size_t)oy * wo + ox) * c + ch] = msam_apply_act(s, act);
            }
}
