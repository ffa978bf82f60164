/* cublas_emu.cpp - the cuBLAS subset of cublas_emu.h: argument checks as cuBLAS makes them, then the
 * column-major product enqueued on the handle's stream (so it is captured into graphs like a
 * kernel). */
#include <atomic>

#include "cublas_emu.h"
#include "emu_internal.h"

struct cublasContext {
    cudaStream_t stream = nullptr;
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

std::atomic<msam_emu_sgemm_fn> g_sgemm{nullptr};
std::atomic<long long> g_gemms{0};

/* The reference loops: fp32 sums in k order; beta == 0 never reads C (it may hold NaN). */
void plain_sgemm(int transa, int transb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int p = 0; p < k; p++) {
                const float a = transa ? A[p + (long long)i * lda] : A[i + (long long)p * lda];
                const float b = transb ? B[j + (long long)p * ldb] : B[p + (long long)j * ldb];
                acc += a * b;
            }
            float *c = C + i + (long long)j * ldc;
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
}

cublasStatus_t check(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                     int ldb, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (ta == CUBLAS_OP_C || tb == CUBLAS_OP_C) return CUBLAS_STATUS_NOT_SUPPORTED; /* real data: C is T */
    const int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) ||
        lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         long long strideA, const float *B, int ldb, long long strideB,
                                         const float *beta, float *C, int ldc, long long strideC, int batch) {
    cublasStatus_t st = check(handle, transa, transb, m, n, k, lda, ldb, ldc);
    if (st) return st;
    if (!alpha || !beta || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    if ((k > 0 && (!A || !B)) || !C) return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *alpha, b = *beta;
    const int ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
    cudaError_t e = msam_emu::enqueue_on_stream(handle->stream, [=]() {
        msam_emu_sgemm_fn fn = g_sgemm.load();
        for (int i = 0; i < batch; i++)
            (fn ? fn : plain_sgemm)(ta, tb, m, n, k, a, A + i * strideA, lda, B + i * strideB, ldb, b, C + i * strideC,
                                    ldc);
        g_gemms += batch;
        return cudaSuccess;
    });
    return e ? CUBLAS_STATUS_EXECUTION_FAILED : CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
    return cublasSgemmStridedBatched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                                     1);
}

void msam_emu_set_sgemm(msam_emu_sgemm_fn fn) { g_sgemm.store(fn); }

long long msam_emu_gemm_count(void) { return g_gemms.load(); }

} // extern "C"
