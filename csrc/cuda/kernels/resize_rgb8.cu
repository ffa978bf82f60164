/* resize_rgb8.cu - the Pillow-exact RGB8 resize (BILINEAR, antialiased) of a frame already on the
 * GPU, so set_image need not bring it to the host. One thread per output pixel from the plan of
 * taps (host/pillow_resize.h); no intermediate image: each thread recomputes the first pass's
 * 8-bit values it needs. Integer arithmetic, so the bits equal the host resize's
 * (csrc/ref/resize_rgb8_ref.c is the plain form of this loop). */
#include "../msam_cuda.h"

#define RGB8_FRAC_BITS 22

static __device__ __forceinline__ int32_t rgb8_clip(int32_t acc) {
    const int32_t v = acc >> RGB8_FRAC_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : v;
}

static __global__ void resize_rgb8_kernel(uint8_t *dst, int nh, int nw, const uint8_t *src, ptrdiff_t rs,
                                          ptrdiff_t ps, int bgr, const int32_t *plan) {
    const size_t n = (size_t)nh * nw, step = (size_t)gridDim.x * blockDim.x;
    const int hk = plan[0], vk = plan[1], v_first = plan[2];
    const int32_t *hlo = plan + 4, *hn = hlo + nw, *hw = hn + nw;
    const int32_t *vlo = hw + (size_t)nw * hk, *vn = vlo + nh, *vw = vn + nh;
    const int c0 = bgr ? 2 : 0, c2 = bgr ? 0 : 2;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int y = (int)(e / (size_t)nw), x = (int)(e % (size_t)nw);
        const int32_t *kh = hw + (size_t)x * hk, *kv = vw + (size_t)y * vk;
        const int half = 1 << (RGB8_FRAC_BITS - 1);
        int32_t a0 = half, a1 = half, a2 = half;
        const int outer = v_first ? hn[x] : vn[y], inner = v_first ? vn[y] : hn[x];
        for (int i = 0; i < outer; i++) {
            int32_t t0 = half, t1 = half, t2 = half;
            for (int j = 0; j < inner; j++) {
                const ptrdiff_t row = v_first ? vlo[y] + j : vlo[y] + i, col = v_first ? hlo[x] + i : hlo[x] + j;
                const uint8_t *p = src + row * rs + col * ps;
                const int32_t k = v_first ? kv[j] : kh[j];
                t0 += p[c0] * k, t1 += p[1] * k, t2 += p[c2] * k;
            }
            const int32_t k = v_first ? kh[i] : kv[i];
            a0 += rgb8_clip(t0) * k, a1 += rgb8_clip(t1) * k, a2 += rgb8_clip(t2) * k;
        }
        dst[3 * e + 0] = (uint8_t)rgb8_clip(a0);
        dst[3 * e + 1] = (uint8_t)rgb8_clip(a1);
        dst[3 * e + 2] = (uint8_t)rgb8_clip(a2);
    }
}

extern "C" int msam_cuda_resize_rgb8(cudaStream_t stream, uint8_t *dst, int nh, int nw, const uint8_t *src,
                                     ptrdiff_t row_stride, ptrdiff_t px_stride, int bgr, const int32_t *plan) {
    if (!dst || !src || !plan || nh < 1 || nw < 1) return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for((size_t)nh * nw, 256);
    MSAM_LAUNCH(resize_rgb8_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(
        dst, nh, nw, src, row_stride, px_stride, bgr, plan);
    return msam_cuda_status();
}
