/* normalize_pad.cu - Sam.preprocess on the device: (pixel - mean) / std per channel into the
 * channels-last size x size x 3 input, zero in the bottom/right padding; from a uint8 RGB frame or
 * from a float 3-plane image (set_torch_image), one thread per output value. */
#include "../msam_cuda.h"

/* mean and std travel by value in the launch, so no device constant has to be uploaded. */
struct pixel_norm {
    float mean[3], std[3];
};

static __global__ void normalize_pad_u8_kernel(float *y, int size, const uint8_t *rgb, int h, int w,
                                               ptrdiff_t row_stride, pixel_norm pn) {
    const size_t n = (size_t)size * size * 3, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int ch = (int)(e % 3);
        const size_t px = e / 3;
        const int py = (int)(px / (size_t)size), pxx = (int)(px % (size_t)size);
        float v = 0.0f;
        if (py < h && pxx < w)
            v = ((float)rgb[(ptrdiff_t)py * row_stride + (ptrdiff_t)pxx * 3 + ch] - pn.mean[ch]) / pn.std[ch];
        y[e] = v;
    }
}

static __global__ void normalize_pad_f32_kernel(float *y, int size, const float *chw, int h, int w,
                                                ptrdiff_t sc, ptrdiff_t sy, ptrdiff_t sx, pixel_norm pn,
                                                int *nonfinite) {
    const size_t n = (size_t)size * size * 3, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int ch = (int)(e % 3);
        const size_t px = e / 3;
        const int py = (int)(px / (size_t)size), pxx = (int)(px % (size_t)size);
        float v = 0.0f;
        if (py < h && pxx < w) {
            v = chw[ch * sc + py * sy + pxx * sx];
            if (!isfinite(v) && nonfinite) atomicAdd(nonfinite, 1);
            v = (v - pn.mean[ch]) / pn.std[ch];
        }
        y[e] = v;
    }
}

static int norm_args(pixel_norm *pn, const float *mean, const float *std) {
    if (!mean || !std) return 0;
    for (int c = 0; c < 3; c++) {
        pn->mean[c] = mean[c];
        pn->std[c] = std[c];
    }
    return 1;
}

extern "C" int msam_cuda_normalize_pad_u8(cudaStream_t stream, float *y, int size, const uint8_t *rgb, int h, int w,
                                          ptrdiff_t row_stride, const float *mean, const float *std) {
    pixel_norm pn;
    if (!y || !rgb || size < 1 || h < 1 || w < 1 || h > size || w > size || row_stride < (ptrdiff_t)w * 3 ||
        !norm_args(&pn, mean, std))
        return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for((size_t)size * size * 3, 256);
    MSAM_LAUNCH(normalize_pad_u8_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, size, rgb, h, w,
                                                                                                     row_stride, pn);
    return msam_cuda_status();
}

extern "C" int msam_cuda_normalize_pad_f32(cudaStream_t stream, float *y, int size, const float *chw, int h, int w,
                                           ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x,
                                           const float *mean, const float *std, int *nonfinite) {
    pixel_norm pn;
    if (!y || !chw || size < 1 || h < 1 || w < 1 || h > size || w > size || !norm_args(&pn, mean, std))
        return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for((size_t)size * size * 3, 256);
    MSAM_LAUNCH(normalize_pad_f32_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(
        y, size, chw, h, w, stride_c, stride_y, stride_x, pn, nonfinite);
    return msam_cuda_status();
}
