/* resize_bilinear.cu - torch's bilinear interpolate (align_corners=False) of one float plane, as
 * the float plane or directly as the thresholded mask, bit-identical to cpu/resize.c: the same
 * coordinate and fmaf expressions (__fmul_rn keeps nvcc from fusing the products). A block is
 * 32 columns x 8 rows; its first row computes the 32 columns' samples into shared memory. */
#include "../msam_cuda.h"

#define RB_W 32
#define RB_H 8

/* One output coordinate's two source samples and weights (lin_coord of cpu/resize.c). */
static __device__ __forceinline__ void lin_coord(int in, int out, float ratio, int o, int *i0, int *i1, float *l0,
                                                 float *l1) {
    if (in == out) {
        *i0 = *i1 = o;
        *l0 = 1.0f;
        *l1 = 0.0f;
        return;
    }
    float s = fmaf(ratio, (float)o + 0.5f, -0.5f);
    if (s < 0.0f) s = 0.0f;
    int i = (int)floorf(s);
    if (i > in - 1) i = in - 1;
    float l = s - (float)i;
    l = l < 0.0f ? 0.0f : l > 1.0f ? 1.0f : l;
    *i0 = i;
    *i1 = i + (i < in - 1);
    *l1 = l;
    *l0 = 1.0f - l;
}

static __global__ void resize_bilinear_kernel(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                                              uint8_t *mask, int dh, int dw, ptrdiff_t dst_ld, int crop_h,
                                              int crop_w, float ry, float rx) {
    __shared__ int xi0[RB_W], xi1[RB_W];
    __shared__ float xl0[RB_W], xl1[RB_W];
    const int x = blockIdx.x * RB_W + threadIdx.x, y = blockIdx.y * RB_H + threadIdx.y;
    if (threadIdx.y == 0 && x < crop_w) lin_coord(sw, dw, rx, x, &xi0[threadIdx.x], &xi1[threadIdx.x],
                                                  &xl0[threadIdx.x], &xl1[threadIdx.x]);
    __syncthreads();
    if (x >= crop_w || y >= crop_h) return;
    int y0, y1;
    float wy0, wy1;
    lin_coord(sh, dh, ry, y, &y0, &y1, &wy0, &wy1);
    const int c = threadIdx.x;
    const float *r0 = src + (ptrdiff_t)y0 * src_ld, *r1 = src + (ptrdiff_t)y1 * src_ld;
    const float t0 = fmaf(r0[xi0[c]], xl0[c], __fmul_rn(r0[xi1[c]], xl1[c]));
    const float t1 = fmaf(r1[xi0[c]], xl0[c], __fmul_rn(r1[xi1[c]], xl1[c]));
    const float v = fmaf(t0, wy0, __fmul_rn(t1, wy1));
    if (mask)
        mask[(ptrdiff_t)y * dst_ld + x] = v > 0.0f;
    else
        dst[(ptrdiff_t)y * dst_ld + x] = v;
}

static int resize_launch(cudaStream_t stream, const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                         uint8_t *mask, int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w) {
    if (!src || (!dst && !mask) || sh < 1 || sw < 1 || dh < 1 || dw < 1 || src_ld < sw)
        return (int)cudaErrorInvalidValue;
    if (crop_h > dh) crop_h = dh;
    if (crop_w > dw) crop_w = dw;
    if (crop_h < 1 || crop_w < 1) return 0;
    if (dst_ld < crop_w) return (int)cudaErrorInvalidValue;
    const float ry = (float)sh / (float)dh, rx = (float)sw / (float)dw; /* torch: a float division */
    const unsigned gy = msam_blocks_for((size_t)crop_h, RB_H);
    if (gy > 65535) return (int)cudaErrorInvalidValue;
    MSAM_LAUNCH(resize_bilinear_kernel, dim3(msam_blocks_for((size_t)crop_w, RB_W), gy), dim3(RB_W, RB_H), 0,
                stream)(src, sh, sw, src_ld, dst, mask, dh, dw, dst_ld, crop_h, crop_w, ry, rx);
    return msam_cuda_status();
}

extern "C" int msam_cuda_resize_bilinear(cudaStream_t stream, const float *src, int sh, int sw, ptrdiff_t src_ld,
                                         float *dst, int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w) {
    return resize_launch(stream, src, sh, sw, src_ld, dst, NULL, dh, dw, dst_ld, crop_h, crop_w);
}

extern "C" int msam_cuda_resize_bilinear_mask(cudaStream_t stream, const float *src, int sh, int sw,
                                              ptrdiff_t src_ld, uint8_t *dst, int dh, int dw, ptrdiff_t dst_ld,
                                              int crop_h, int crop_w) {
    return resize_launch(stream, src, sh, sw, src_ld, NULL, dst, dh, dw, dst_ld, crop_h, crop_w);
}
