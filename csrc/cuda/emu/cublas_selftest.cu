/* cublas_selftest.cu - drives the cuBLAS calls of the backend for tests/test_cuda_emulation.py (no
 * part of the backend): a strided-batched SGEMM on a stream, run directly or captured into a graph
 * and replayed. Also compiles with nvcc against the real cublas_v2.h. */
#include "../msam_cublas.h"

/* Returns 0, a cudaError_t, or 1000 + a cublasStatus_t. With capture, C is copied to c_after_capture
 * (n_c floats, host) right after the capture ends, then the graph is replayed once. */
extern "C" int msam_emu_selftest_sgemm(int transa, int transb, int m, int n, int k, float alpha, const float *A,
                                       int lda, long long stride_a, const float *B, int ldb, long long stride_b,
                                       float beta, float *C, int ldc, long long stride_c, int batch, int capture,
                                       float *c_after_capture, size_t n_c) {
    cudaStream_t s;
    cublasHandle_t h;
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    cudaError_t e;
    if ((e = cudaStreamCreate(&s))) return (int)e;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1000 + (int)CUBLAS_STATUS_NOT_INITIALIZED;
    cublasSetStream(h, s);
    if (capture && (e = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal))) return (int)e;
    const cublasOperation_t ta = transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasStatus_t st = batch == 1 && stride_a == 0
                                  ? cublasSgemm(h, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc)
                                  : cublasSgemmStridedBatched(h, ta, tb, m, n, k, &alpha, A, lda, stride_a, B, ldb,
                                                              stride_b, &beta, C, ldc, stride_c, batch);
    int rc = st == CUBLAS_STATUS_SUCCESS ? 0 : 1000 + (int)st;
    if (capture) {
        if ((e = cudaStreamEndCapture(s, &g)) && !rc) rc = (int)e;
        if (!rc) rc = (int)cudaMemcpy(c_after_capture, C, n_c * sizeof(float), cudaMemcpyDefault);
        if (!rc) rc = (int)cudaGraphInstantiate(&ge, g, 0);
        if (!rc) rc = (int)cudaGraphLaunch(ge, s);
    }
    if (!rc) rc = (int)cudaStreamSynchronize(s);
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    cublasDestroy(h);
    cudaStreamDestroy(s);
    return rc;
}
