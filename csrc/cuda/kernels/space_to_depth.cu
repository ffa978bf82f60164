/* space_to_depth.cu - 2x2 space-to-depth of a channels-last map (a stride-2 2x2 patch step as a
 * plain gather): one thread per output element, channel fastest so warps copy contiguous runs. */
#include "../msam_cuda.h"

static __global__ void space_to_depth2_kernel(float *y, const float *x, int h, int w, int c) {
    const int ho = h / 2, wo = w / 2;
    const size_t n = (size_t)ho * wo * 4 * c, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int ch = (int)(e % (size_t)c);
        const int t = (int)((e / (size_t)c) % 4);
        const size_t px = e / ((size_t)4 * c);
        const int oy = (int)(px / (size_t)wo), ox = (int)(px % (size_t)wo);
        y[e] = x[((size_t)(2 * oy + t / 2) * w + (size_t)(2 * ox + t % 2)) * c + ch];
    }
}

extern "C" int msam_cuda_space_to_depth2(cudaStream_t stream, float *y, const float *x, int h, int w, int c) {
    if (!y || !x || h < 0 || w < 0 || c < 0) return (int)cudaErrorInvalidValue;
    const size_t n = (size_t)(h / 2) * (size_t)(w / 2) * 4 * (size_t)c;
    if (n == 0) return 0;
    const unsigned blocks = msam_blocks_for(n, 256);
    MSAM_LAUNCH(space_to_depth2_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, x, h, w, c);
    return msam_cuda_status();
}
