/* window_attention_ref.c - plain TinyViT window attention, one (window, head) at a time: the
 * reference of ops->window_attention and the CPU kernel's fallback when it has no scratch. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ref.h"

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
void msam_ref_window_task(float *y, const float *qkv, const float *pad_qkv, int h, int w, int win,
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

void msam_ref_window_attention(float *y, const float *qkv, const float *pad_qkv, int h,
                                   int w, int win, int heads, int dh, const float *bias,
                                   float scale) {
    const int nwy = (h + win - 1) / win, nwx = (w + win - 1) / win;
    for (int wy = 0; wy < nwy; wy++)
        for (int wx = 0; wx < nwx; wx++)
            for (int hd = 0; hd < heads; hd++)
                msam_ref_window_task(y, qkv, pad_qkv, h, w, win, wy, wx, hd, heads, dh, bias, scale);
}
