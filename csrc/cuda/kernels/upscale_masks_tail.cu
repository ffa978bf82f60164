/* upscale_masks_tail.cu - the mask decoder's output upscaling after its first product (the GEMM
 * u = up1(x)): per pixel, LayerNorm over each of its 4 sub-pixels' c1 channels and GELU, the
 * second transposed conv (up2) and GELU, and the hypernetwork dot products into the planar
 * 4g x 4g logits (ops->upscale_masks, core/ops.h). A block per pixel keeps its 4*c1 and 16*c
 * intermediates in shared memory, so no upscaled map is stored. */
#include "../msam_cuda.h"

#define UT_THREADS 128
#define UT_MAX_C1 256
#define UT_MAX_C 64
#define UT_MAX_N 16

static __device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

static __global__ void upscale_masks_tail_kernel(float *low, const float *u1, int g, int c1, const float *gamma,
                                                 const float *beta, float eps, const float *w2, const float *b2, int c,
                                                 const float *hyper, int n) {
    __shared__ float v1[4 * UT_MAX_C1]; /* the pixel's 4 sub-pixels after LayerNorm and GELU */
    __shared__ float v2[16 * UT_MAX_C]; /* their 4 x 4 sub-sub-pixels after up2 and GELU */
    const int px = blockIdx.x, warp = threadIdx.x / MSAM_WARP, lane = threadIdx.x % MSAM_WARP;
    const float *u = u1 + (size_t)px * 4 * c1;

    /* warp t1 normalises sub-pixel t1 (two passes, as torch) */
    for (int t1 = warp; t1 < 4; t1 += UT_THREADS / MSAM_WARP) {
        const float *ut = u + t1 * c1;
        float s = 0.0f;
        for (int i = lane; i < c1; i += MSAM_WARP) s += ut[i];
        const float mean = msam_warp_sum(s) / (float)c1;
        float sq = 0.0f;
        for (int i = lane; i < c1; i += MSAM_WARP) {
            const float d = ut[i] - mean;
            sq += d * d;
        }
        const float rstd = 1.0f / sqrtf(msam_warp_sum(sq) / (float)c1 + eps);
        for (int i = lane; i < c1; i += MSAM_WARP) v1[t1 * c1 + i] = gelu((ut[i] - mean) * rstd * gamma[i] + beta[i]);
    }
    __syncthreads();

    /* up2: output o = t2 * c + j of sub-pixel t1 from its c1 inputs; w2 is [4c][c1] */
    for (int e = threadIdx.x; e < 16 * c; e += blockDim.x) {
        const int t1 = e / (4 * c), o = e % (4 * c);
        const float *wo = w2 + (size_t)o * c1, *vi = v1 + t1 * c1;
        float acc = b2 ? b2[o] : 0.0f;
        for (int k = 0; k < c1; k++) acc += vi[k] * wo[k];
        v2[e] = gelu(acc);
    }
    __syncthreads();

    /* logits: sub-sub-pixel r = t1 * 4 + t2 (its c channels at v2[r * c]) against hyper[i] */
    const int W = 4 * g, py = px / g, pxx = px % g;
    const size_t plane = (size_t)W * W;
    for (int e = threadIdx.x; e < 16 * n; e += blockDim.x) {
        const int r = e % 16, i = e / 16, t1 = r / 4, t2 = r % 4;
        const float *vr = v2 + r * c, *hy = hyper + (size_t)i * c;
        float acc = 0.0f;
        for (int k = 0; k < c; k++) acc += vr[k] * hy[k];
        const int Y = 4 * py + 2 * (t1 / 2) + t2 / 2, X = 4 * pxx + 2 * (t1 % 2) + t2 % 2;
        low[(size_t)i * plane + (size_t)Y * W + X] = acc;
    }
}

extern "C" int msam_cuda_upscale_masks_tail(cudaStream_t stream, float *low, const float *u1, int g, int c1,
                                            const float *gamma, const float *beta, float eps, const float *w2,
                                            const float *b2, int c, const float *hyper, int n) {
    if (!low || !u1 || !gamma || !beta || !w2 || !hyper || g < 1 || c1 < 1 || c1 > UT_MAX_C1 || c < 1 ||
        c > UT_MAX_C || n < 1 || n > UT_MAX_N)
        return (int)cudaErrorInvalidValue;
    MSAM_LAUNCH(upscale_masks_tail_kernel, dim3((unsigned)g * (unsigned)g), dim3(UT_THREADS), 0, stream)(
        low, u1, g, c1, gamma, beta, eps, w2, b2, c, hyper, n);
    return msam_cuda_status();
}
