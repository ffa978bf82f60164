/* im2col3x3.cu - the patch matrix of a dense 3x3 convolution (padding 1, stride 1 or 2) for the
 * GEMM that computes it, laid out as the CPU backend's conv3x3.c: one row per output pixel, taps
 * (ky, kx) each cin wide, zeros outside the map; output rows [oy0, oy0 + out_rows) only, so the
 * scratch can be blocked. One thread per value, channel fastest. */
#include "../msam_cuda.h"

static __global__ void im2col3x3_kernel(float *cols, const float *x, int h, int w, int cin, int stride, int oy0,
                                        int out_rows) {
    const int wo = (w + stride - 1) / stride;
    const size_t k = (size_t)9 * cin, n = (size_t)out_rows * wo * k, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const size_t p = e / k;
        const int col = (int)(e % k), tap = col / cin, ci = col % cin;
        const int oy = oy0 + (int)(p / (size_t)wo), ox = (int)(p % (size_t)wo);
        const int iy = oy * stride - 1 + tap / 3, ix = ox * stride - 1 + tap % 3;
        cols[e] = iy < 0 || iy >= h || ix < 0 || ix >= w ? 0.0f : x[((size_t)iy * w + ix) * cin + ci];
    }
}

extern "C" int msam_cuda_im2col3x3(cudaStream_t stream, float *cols, const float *x, int h, int w, int cin,
                                   int stride, int oy0, int out_rows) {
    const int ho = (h + stride - 1) / stride;
    if (!cols || !x || h < 1 || w < 1 || cin < 1 || (stride != 1 && stride != 2) || oy0 < 0 || out_rows < 0 ||
        oy0 + out_rows > ho)
        return (int)cudaErrorInvalidValue;
    const size_t n = (size_t)out_rows * (size_t)((w + stride - 1) / stride) * 9 * (size_t)cin;
    if (n == 0) return 0;
    const unsigned blocks = msam_blocks_for(n, 256);
    MSAM_LAUNCH(im2col3x3_kernel, dim3(blocks < 8192 ? blocks : 8192), dim3(256), 0, stream)(cols, x, h, w, cin, stride,
                                                                                              oy0, out_rows);
    return msam_cuda_status();
}
