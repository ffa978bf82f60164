/* layernorm.cu - row-wise LayerNorm (and LayerNorm2d on channels-last maps), optionally also
 * y + pe and the row's rstd (the decoder's keys). One warp per row: the two passes of torch's
 * mean / biased variance are warp-shuffle reductions, no shared memory or block barrier. */
#include "../msam_cuda.h"

#define LN_WARPS 4 /* rows per block */

static __global__ void layernorm_kernel(float *y, float *ype, float *rstd, const float *x, const float *pe, int rows,
                                        int c, const float *gamma, const float *beta, float eps) {
    const int lane = threadIdx.x % MSAM_WARP;
    const int r = blockIdx.x * (blockDim.x / MSAM_WARP) + threadIdx.x / MSAM_WARP;
    if (r >= rows) return; /* whole warps leave together; nothing below waits for the block */
    const float *xr = x + (size_t)r * c;
    float *yr = y + (size_t)r * c;
    float s = 0.0f;
    for (int i = lane; i < c; i += MSAM_WARP) s += xr[i];
    const float mean = msam_warp_sum(s) / (float)c;
    float sq = 0.0f;
    for (int i = lane; i < c; i += MSAM_WARP) {
        const float d = xr[i] - mean;
        sq += d * d;
    }
    const float rs = 1.0f / sqrtf(msam_warp_sum(sq) / (float)c + eps);
    if (rstd && lane == 0) rstd[r] = rs;
    /* each lane reads its own elements before writing them, so y may be x */
    for (int i = lane; i < c; i += MSAM_WARP) {
        const float o = (xr[i] - mean) * rs * gamma[i] + beta[i];
        yr[i] = o;
        if (ype) ype[(size_t)r * c + i] = o + pe[(size_t)r * c + i];
    }
}

extern "C" int msam_cuda_layernorm_pe(cudaStream_t stream, float *y, float *ype, float *rstd, const float *x,
                                      const float *pe, int rows, int c, const float *gamma, const float *beta,
                                      float eps) {
    if (rows == 0) return 0;
    if (!y || !x || !gamma || !beta || rows < 0 || c < 1 || (ype && !pe)) return (int)cudaErrorInvalidValue;
    MSAM_LAUNCH(layernorm_kernel, dim3(msam_blocks_for((size_t)rows, LN_WARPS)), dim3(LN_WARPS * MSAM_WARP), 0,
                stream)(y, ype, rstd, x, pe, rows, c, gamma, beta, eps);
    return msam_cuda_status();
}

extern "C" int msam_cuda_layernorm(cudaStream_t stream, float *y, const float *x, int rows, int c,
                                   const float *gamma, const float *beta, float eps) {
    return msam_cuda_layernorm_pe(stream, y, NULL, NULL, x, NULL, rows, c, gamma, beta, eps);
}
