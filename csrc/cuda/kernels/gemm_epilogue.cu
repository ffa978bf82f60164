/* gemm_epilogue.cu - what follows a plain cuBLAS product in the linear ops: y = act(y + bias +
 * residual) row by row (the CPU GEMM's epilogue, in its order: bias, then residual, then act), for
 * when cuBLASLt's fused epilogues do not cover the case (a residual, or GELU with one). */
#include "../msam_cuda.h"

static __device__ __forceinline__ float apply_act(float x, int act) {
    if (act == MSAM_CUDA_ACT_GELU) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    if (act == MSAM_CUDA_ACT_RELU) return x > 0.0f ? x : 0.0f;
    return x;
}

static __global__ void gemm_epilogue_kernel(float *y, ptrdiff_t ldy, int rows, int n, const float *bias, int act,
                                            const float *residual, ptrdiff_t ldr) {
    const size_t total = (size_t)rows * n, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const size_t r = e / (size_t)n, j = e % (size_t)n;
        float *yp = y + (ptrdiff_t)r * ldy + (ptrdiff_t)j;
        float s = *yp;
        if (bias) s += bias[j];
        if (residual) s += residual[(ptrdiff_t)r * ldr + (ptrdiff_t)j]; /* may be y itself: read first */
        *yp = apply_act(s, act);
    }
}

extern "C" int msam_cuda_gemm_epilogue(cudaStream_t stream, float *y, ptrdiff_t ldy, int rows, int n,
                                       const float *bias, int act, const float *residual, ptrdiff_t ldr) {
    if (rows == 0 || n == 0) return 0;
    if (!y || rows < 0 || n < 0 || ldy < n || (residual && ldr < n) || act < MSAM_CUDA_ACT_NONE ||
        act > MSAM_CUDA_ACT_RELU)
        return (int)cudaErrorInvalidValue;
    const unsigned blocks = msam_blocks_for((size_t)rows * n, 256);
    MSAM_LAUNCH(gemm_epilogue_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(y, ldy, rows, n, bias,
                                                                                                  act, residual, ldr);
    return msam_cuda_status();
}
