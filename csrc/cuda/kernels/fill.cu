/* fill.cu - constant fill, and a row added to (or, with no x, broadcast over) every row of a map:
 * the no-mask dense embedding over the image, which the graph once copied with host loops. */
#include "../msam_cuda.h"

static __global__ void fill_kernel(float *y, size_t n, float value) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) y[i] = value;
}

/* Threads walk the rows x c elements with the channel fastest, so a warp writes one contiguous run. */
static __global__ void add_row_kernel(float *y, const float *x, const float *row, int rows, int c) {
    const size_t n = (size_t)rows * c, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const float r = row[e % (size_t)c];
        y[e] = x ? x[e] + r : r;
    }
}

extern "C" int msam_cuda_fill(cudaStream_t stream, float *y, size_t n, float value) {
    if (n == 0) return 0;
    if (!y) return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for(n, 256);
    MSAM_LAUNCH(fill_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, n, value);
    return msam_cuda_status();
}

extern "C" int msam_cuda_add_row(cudaStream_t stream, float *y, const float *x, const float *row, int rows, int c) {
    if (rows == 0 || c == 0) return 0;
    if (!y || !row || rows < 0 || c < 0) return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for((size_t)rows * c, 256);
    MSAM_LAUNCH(add_row_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, x, row, rows, c);
    return msam_cuda_status();
}
