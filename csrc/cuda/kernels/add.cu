/* add.cu - y = a + b elementwise (residual additions between ops); a grid-stride loop so one
 * launch of a bounded grid covers any n. */
#include "../msam_cuda.h"

static __global__ void add_kernel(float *y, const float *a, const float *b, size_t n) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) y[i] = a[i] + b[i];
}

extern "C" int msam_cuda_add(cudaStream_t stream, float *y, const float *a, const float *b, size_t n) {
    if (n == 0) return 0;
    if (!y || !a || !b) return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for(n, 256);
    MSAM_LAUNCH(add_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, a, b, n);
    return msam_cuda_status();
}
