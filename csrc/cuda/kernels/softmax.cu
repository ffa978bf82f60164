/* softmax.cu - in-place softmax(scale * v) of count vectors, the max subtracted first. Vectors of
 * up to 1024 floats take a warp each (max and sum by shuffles, several vectors per block); longer
 * ones a block each, reduced across warps through shared memory and block barriers. */
#include "../msam_cuda.h"

#define SM_WARP_MAX_LEN 1024
#define SM_WARPS 4

/* Vector v over the threads first, first + step, ...; the reductions span a warp (WHOLE_BLOCK
 * false) or the block (through red). */
template <bool WHOLE_BLOCK>
static __device__ __forceinline__ void softmax_strided(float *v, int len, float scale, int first, int step,
                                                       float *red) {
    float mx = -INFINITY;
    for (int j = first; j < len; j += step) mx = fmaxf(mx, v[j] * scale);
    mx = WHOLE_BLOCK ? msam_block_max(mx, red) : msam_warp_max(mx);
    float sum = 0.0f;
    for (int j = first; j < len; j += step) {
        const float e = expf(v[j] * scale - mx);
        v[j] = e;
        sum += e;
    }
    sum = WHOLE_BLOCK ? msam_block_sum(sum, red) : msam_warp_sum(sum);
    /* each thread divides the elements it wrote */
    for (int j = first; j < len; j += step) v[j] = v[j] / sum;
}

static __global__ void softmax_warp_kernel(float *x, int count, ptrdiff_t stride, int len, float scale) {
    const int a = blockIdx.x * SM_WARPS + threadIdx.x / MSAM_WARP;
    if (a >= count) return; /* whole warps; no block barrier here */
    softmax_strided<false>(x + (ptrdiff_t)a * stride, len, scale, threadIdx.x % MSAM_WARP, MSAM_WARP, nullptr);
}

static __global__ void softmax_block_kernel(float *x, ptrdiff_t stride, int len, float scale) {
    __shared__ float red[32];
    softmax_strided<true>(x + (ptrdiff_t)blockIdx.x * stride, len, scale, threadIdx.x, blockDim.x, red);
}

extern "C" int msam_cuda_softmax(cudaStream_t stream, float *x, int count, ptrdiff_t stride, int len, float scale) {
    if (count == 0 || len == 0) return 0;
    if (!x || count < 0 || len < 0 || (count > 1 && stride < len)) return (int)cudaErrorInvalidValue;
    if (len <= SM_WARP_MAX_LEN)
        MSAM_LAUNCH(softmax_warp_kernel, dim3(msam_blocks_for((size_t)count, SM_WARPS)), dim3(SM_WARPS * MSAM_WARP), 0,
                    stream)(x, count, stride, len, scale);
    else
        MSAM_LAUNCH(softmax_block_kernel, dim3((unsigned)count), dim3(256), 0, stream)(x, stride, len, scale);
    return msam_cuda_status();
}
