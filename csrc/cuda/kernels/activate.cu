/* activate.cu - y = act(x) elementwise: the exact (erf) GELU torch uses by default, ReLU, or a
 * copy; the same scalar formulas as the CPU backend's msam_apply_act. */
#include "../msam_cuda.h"

static __device__ __forceinline__ float apply_act(float x, int act) {
    if (act == MSAM_CUDA_ACT_GELU) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    if (act == MSAM_CUDA_ACT_RELU) return x > 0.0f ? x : 0.0f;
    return x;
}

static __global__ void activate_kernel(float *y, const float *x, size_t n, int act) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) y[i] = apply_act(x[i], act);
}

extern "C" int msam_cuda_activate(cudaStream_t stream, float *y, const float *x, size_t n, int act) {
    if (n == 0) return 0;
    if (!y || !x || act < MSAM_CUDA_ACT_NONE || act > MSAM_CUDA_ACT_RELU) return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for(n, 256);
    MSAM_LAUNCH(activate_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, x, n, act);
    return msam_cuda_status();
}
