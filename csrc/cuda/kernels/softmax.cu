/* softmax.cu - in-place softmax(scale * v) of count vectors: one block per vector, its maximum
 * and sum reduced by warp shuffles then across warps through shared memory (block barriers). */
#include "../msam_cuda.h"

static __global__ void softmax_kernel(float *x, ptrdiff_t stride, int len, float scale) {
    __shared__ float red[32];
    float *v = x + (ptrdiff_t)blockIdx.x * stride;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < len; j += blockDim.x) mx = fmaxf(mx, v[j] * scale);
    mx = msam_block_max(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const float e = expf(v[j] * scale - mx);
        v[j] = e;
        sum += e;
    }
    sum = msam_block_sum(sum, red);
    /* each thread divides the elements it wrote */
    for (int j = threadIdx.x; j < len; j += blockDim.x) v[j] = v[j] / sum;
}

extern "C" int msam_cuda_softmax(cudaStream_t stream, float *x, int count, ptrdiff_t stride, int len, float scale) {
    if (count == 0 || len == 0) return 0;
    if (!x || count < 0 || len < 0 || (count > 1 && stride < len)) return (int)cudaErrorInvalidValue;
    const unsigned threads = len <= 64 ? 32 : len <= 512 ? 128 : 256;
    MSAM_LAUNCH(softmax_kernel, dim3((unsigned)count), dim3(threads), 0, stream)(x, stride, len, scale);
    return msam_cuda_status();
}
