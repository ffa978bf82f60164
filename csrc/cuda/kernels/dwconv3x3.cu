/* dwconv3x3.cu - depthwise 3x3 convolution (padding 1, stride 1 or 2) on a channels-last map with
 * bias and activation: one thread per output value, channel fastest so a warp reads and writes
 * contiguous channels; taps summed in the CPU reference's order (bias, then ky, kx). */
#include "../msam_cuda.h"

static __device__ __forceinline__ float apply_act(float x, int act) {
    if (act == MSAM_CUDA_ACT_GELU) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    if (act == MSAM_CUDA_ACT_RELU) return x > 0.0f ? x : 0.0f;
    return x;
}

static __global__ void dwconv3x3_kernel(float *__restrict__ y, const float *__restrict__ x, int h, int w, int c,
                                        int stride, const float *__restrict__ w9c, const float *__restrict__ bias,
                                        int act) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    const size_t n = (size_t)ho * wo * c, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int ch = (int)(e % (size_t)c);
        const size_t px = e / (size_t)c;
        const int oy = (int)(px / (size_t)wo), ox = (int)(px % (size_t)wo);
        float s = bias ? bias[ch] : 0.0f;
        for (int ky = 0; ky < 3; ky++) {
            const int iy = oy * stride - 1 + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < 3; kx++) {
                const int ix = ox * stride - 1 + kx;
                if (ix < 0 || ix >= w) continue;
                s += x[((size_t)iy * w + ix) * c + ch] * w9c[(ky * 3 + kx) * c + ch];
            }
        }
        y[e] = apply_act(s, act);
    }
}

extern "C" int msam_cuda_dwconv3x3(cudaStream_t stream, float *y, const float *x, int h, int w, int c, int stride,
                                   const float *w9c, const float *bias, int act) {
    if (!y || !x || !w9c || h < 1 || w < 1 || c < 1 || (stride != 1 && stride != 2) || act < MSAM_CUDA_ACT_NONE ||
        act > MSAM_CUDA_ACT_RELU)
        return (int)cudaErrorInvalidValue;
    const size_t n = (size_t)((h + stride - 1) / stride) * (size_t)((w + stride - 1) / stride) * (size_t)c;
    const unsigned blocks = msam_blocks_for(n, 256);
    MSAM_LAUNCH(dwconv3x3_kernel, dim3(blocks < 8192 ? blocks : 8192), dim3(256), 0, stream)(y, x, h, w, c, stride,
                                                                                              w9c, bias, act);
    return msam_cuda_status();
}
