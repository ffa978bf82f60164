/* normalize_pad.cu - Sam.preprocess on the device: (pixel - mean) / std per channel into the
 * channels-last side x side x 3 input, zero in the bottom/right padding, from a uint8 or float
 * image with any strides (HWC frames, BGR via a negative channel stride, CHW tensors); one thread
 * per output value. The same operations in the same order as the CPU path, so equal bits. */
#include "../msam_cuda.h"

/* mean and std travel by value in the launch, so no device constant has to be uploaded. */
struct pixel_norm {
    float mean[3], std[3];
};

static __global__ void normalize_pad_kernel(float *y, int side, const void *x, int type, int h, int w, ptrdiff_t sc,
                                            ptrdiff_t sy, ptrdiff_t sx, pixel_norm pn, int *nonfinite) {
    const size_t n = (size_t)side * side * 3, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int ch = (int)(e % 3);
        const size_t px = e / 3;
        const int py = (int)(px / (size_t)side), pxx = (int)(px % (size_t)side);
        float v = 0.0f;
        if (py < h && pxx < w) {
            const ptrdiff_t at = ch * sc + py * sy + pxx * sx;
            if (type == MSAM_CUDA_U8) {
                v = (float)static_cast<const uint8_t *>(x)[at];
            } else {
                v = static_cast<const float *>(x)[at];
                if (!isfinite(v) && nonfinite) atomicAdd(nonfinite, 1);
            }
            v = (v - pn.mean[ch]) / pn.std[ch];
        }
        y[e] = v;
    }
}

extern "C" int msam_cuda_normalize_pad(cudaStream_t stream, float *y, int side, const void *x, int type, int h, int w,
                                       ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x, const float *mean,
                                       const float *std, int *nonfinite) {
    if (!y || !x || !mean || !std || side < 1 || h < 1 || w < 1 || h > side || w > side ||
        (type != MSAM_CUDA_U8 && type != MSAM_CUDA_F32))
        return (int)cudaErrorInvalidValue;
    pixel_norm pn;
    for (int c = 0; c < 3; c++) {
        pn.mean[c] = mean[c];
        pn.std[c] = std[c];
    }
    const unsigned blocks = msam_blocks_for((size_t)side * side * 3, 256);
    MSAM_LAUNCH(normalize_pad_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(
        y, side, x, type, h, w, stride_c, stride_y, stride_x, pn, nonfinite);
    return msam_cuda_status();
}
