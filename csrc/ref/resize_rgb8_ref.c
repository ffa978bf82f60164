/* resize_rgb8_ref.c - the Pillow-exact RGB8 resize computed pixel by pixel from its plan of taps
 * (host/pillow_resize.h): the plain reference of ops->resize_rgb8, and the CUDA kernel's form. */
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

#define FRAC_BITS 22 /* Pillow's fixed point: 8 bits of pixel, 2 spare */

static uint8_t clip8(int32_t acc) {
    const int32_t v = acc >> FRAC_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

void msam_ref_resize_rgb8(const int32_t *plan, const uint8_t *src, ptrdiff_t row_stride, ptrdiff_t px_stride,
                          int bgr, uint8_t *dst, int nh, int nw) {
    const int hk = plan[0], vk = plan[1], v_first = plan[2];
    const int32_t *hlo = plan + 4, *hn = hlo + nw, *hw = hn + nw;
    const int32_t *vlo = hw + (size_t)nw * hk, *vn = vlo + nh, *vw = vn + nh;
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw; x++)
            for (int c = 0; c < 3; c++) {
                const int ch = bgr ? 2 - c : c;
                const int32_t *kh = hw + (size_t)x * hk, *kv = vw + (size_t)y * vk;
                int32_t acc = 1 << (FRAC_BITS - 1);
                /* the first pass's 8-bit results, each weighted by the second pass's tap */
                const int outer = v_first ? hn[x] : vn[y], inner = v_first ? vn[y] : hn[x];
                for (int i = 0; i < outer; i++) {
                    int32_t t = 1 << (FRAC_BITS - 1);
                    for (int j = 0; j < inner; j++) {
                        const int row = v_first ? vlo[y] + j : vlo[y] + i, col = v_first ? hlo[x] + i : hlo[x] + j;
                        t += src[row * row_stride + col * px_stride + ch] * (v_first ? kv[j] : kh[j]);
                    }
                    acc += clip8(t) * (v_first ? kh[i] : kv[i]);
                }
                dst[((size_t)y * nw + x) * 3 + c] = clip8(acc);
            }
}
