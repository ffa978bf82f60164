/* upscale_parts.cu - upscale_masks' first product from its parts (the decoder's up1 split through
 * its LayerNorms, core/ops.h): with a = P0 M0 and b = P1 M1 from two GEMMs, u[p] = s1[p] * (s0[p] *
 * (a[p] + u0[p]) + b[p] + f1) + h per pixel p, elementwise, ready for upscale_masks_tail. */
#include "../msam_cuda.h"

static __global__ void upscale_parts_kernel(float *u, const float *a, const float *b, const float *u0, const float *f1,
                                            const float *h, const float *s0, const float *s1, int pixels, int width) {
    const size_t total = (size_t)pixels * width, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const size_t p = e / (size_t)width, j = e % (size_t)width;
        u[e] = s1[p] * (s0[p] * (a[e] + u0[e]) + b[e] + f1[j]) + h[j];
    }
}

extern "C" int msam_cuda_upscale_parts(cudaStream_t stream, float *u, const float *a, const float *b,
                                       const float *u0, const float *f1, const float *h, const float *s0,
                                       const float *s1, int pixels, int width) {
    if (pixels == 0 || width == 0) return 0;
    if (!u || !a || !b || !u0 || !f1 || !h || !s0 || !s1 || pixels < 0 || width < 0)
        return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for((size_t)pixels * width, 256);
    MSAM_LAUNCH(upscale_parts_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(u, a, b, u0, f1, h, s0,
                                                                                                  s1, pixels, width);
    return msam_cuda_status();
}
