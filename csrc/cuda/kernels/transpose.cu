/* transpose.cu - y = x^T through a 32 x 33 shared tile (the extra column keeps the transposed
 * reads off one bank), so both the global reads and the global writes are row-contiguous. */
#include "../msam_cuda.h"

#define TILE 32
#define TILE_ROWS 8

static __global__ void transpose_kernel(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    const int i0 = blockIdx.x * TILE, j0 = blockIdx.y * TILE; /* x's tile: rows i0.., cols j0.. */
    for (int k = threadIdx.y; k < TILE; k += TILE_ROWS) {
        const int i = i0 + k, j = j0 + threadIdx.x;
        if (i < rows && j < cols) tile[k][threadIdx.x] = x[(ptrdiff_t)i * ldx + j];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < TILE; k += TILE_ROWS) {
        const int j = j0 + k, i = i0 + threadIdx.x;
        if (i < rows && j < cols) y[(ptrdiff_t)j * ldy + i] = tile[threadIdx.x][k];
    }
}

extern "C" int msam_cuda_transpose(cudaStream_t stream, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx,
                                   int rows, int cols) {
    if (rows == 0 || cols == 0) return 0;
    if (!y || !x || rows < 0 || cols < 0 || ldx < cols || ldy < rows) return (int)cudaErrorInvalidValue;
    const unsigned gy = msam_blocks_for((size_t)cols, TILE);
    if (gy > 65535) return (int)cudaErrorInvalidValue;
    MSAM_LAUNCH(transpose_kernel, dim3(msam_blocks_for((size_t)rows, TILE), gy), dim3(TILE, TILE_ROWS), 0,
                stream)(y, ldy, x, ldx, rows, cols);
    return msam_cuda_status();
}
