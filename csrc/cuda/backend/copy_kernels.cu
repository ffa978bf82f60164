/* copy_kernels.cu - the two data movements the op table needs that cudaMemcpy cannot do: a copy
 * between overlapping device ranges (ops->copy is a memmove) and the packing of a matmul operand
 * whose strides cuBLAS cannot take (ops->matmul allows any W(j, p) = w[j*s_n + p*s_k]). */
#include "cuda_ctx.h"

enum { MEMMOVE_THREADS = 256 };

/* One block walks the range in chunks of blockDim bytes, away from the overlap (forward when
 * dst < src): each chunk is read into registers, then written after a barrier, so no thread
 * writes a byte another thread of the chunk still has to read; later chunks only read bytes no
 * earlier chunk wrote. Rare and small (the encoder's band carry-over), so one block suffices. */
static __global__ void memmove_kernel(unsigned char *dst, const unsigned char *src, size_t bytes) {
    const size_t chunk = blockDim.x;
    const int forward = dst < src;
    for (size_t c0 = 0; c0 < bytes; c0 += chunk) {
        const size_t base = forward ? c0 : (bytes > c0 + chunk ? bytes - c0 - chunk : 0);
        const size_t len = bytes - c0 < chunk ? bytes - c0 : chunk;
        const size_t i = base + threadIdx.x;
        const int mine = threadIdx.x < len;
        unsigned char v = 0;
        if (mine) v = src[i];
        __syncthreads();
        if (mine) dst[i] = v;
        __syncthreads();
    }
}

int msam_cuda_memmove(cudaStream_t stream, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return 0;
    if (!dst || !src) return (int)cudaErrorInvalidValue;
    MSAM_LAUNCH(memmove_kernel, dim3(1), dim3(MEMMOVE_THREADS), 0, stream)((unsigned char *)dst,
                                                                             (const unsigned char *)src, bytes);
    return msam_cuda_status();
}

static __global__ void pack_strided_kernel(float *dst, const float *w, ptrdiff_t s_n, ptrdiff_t s_k, int n, int k) {
    const size_t total = (size_t)n * k, step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const ptrdiff_t j = (ptrdiff_t)(e / (size_t)k), p = (ptrdiff_t)(e % (size_t)k);
        dst[e] = w[j * s_n + p * s_k];
    }
}

int msam_cuda_pack_strided(cudaStream_t stream, float *dst, const float *w, ptrdiff_t s_n, ptrdiff_t s_k, int n,
                           int k) {
    if (n <= 0 || k <= 0) return 0;
    const unsigned blocks = msam_blocks_for((size_t)n * k, 256);
    MSAM_LAUNCH(pack_strided_kernel, dim3(blocks < 4096 ? blocks : 4096), dim3(256), 0, stream)(dst, w, s_n, s_k, n, k);
    return msam_cuda_status();
}
