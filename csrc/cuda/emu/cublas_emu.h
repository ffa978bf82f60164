/* cublas_emu.h - the cuBLAS calls the CUDA backend makes, for the emulation build: a handle bound to
 * a stream, SGEMM and strided-batched SGEMM with cuBLAS's column-major semantics, run (or captured)
 * in stream order like the emulated kernels. The product itself is plain loops unless the host
 * program plugs in a faster one (msam_emu_set_sgemm, e.g. the CPU backend's GEMM). */
#ifndef MSAM_CUBLAS_EMU_H
#define MSAM_CUBLAS_EMU_H

#include "cuda_emu.h"

/* Our own link names, as for the runtime (cuda_emu.h): never confused with a real libcublas. */
#define cublasCreate msam_emu_cublasCreate
#define cublasDestroy msam_emu_cublasDestroy
#define cublasSetStream msam_emu_cublasSetStream
#define cublasGetStream msam_emu_cublasGetStream
#define cublasSetMathMode msam_emu_cublasSetMathMode
#define cublasSgemm msam_emu_cublasSgemm
#define cublasSgemmStridedBatched msam_emu_cublasSgemmStridedBatched

#include "../cublas_types.h"

extern "C" {
cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream);
/* Accepted and recorded; the emulation always computes in fp32 (no TF32). */
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);

/* C = alpha op(A) op(B) + beta C, column-major, m x n x k; alpha and beta are host pointers
 * (read at the call, as in cuBLAS's default pointer mode); with beta == 0, C is not read. */
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         long long strideA, const float *B, int ldb, long long strideB,
                                         const float *beta, float *C, int ldc, long long strideC, int batch);

/* Emulation only: the column-major product the calls above run (trans 0 = N, 1 = T); NULL puts
 * back the plain loops. */
typedef void (*msam_emu_sgemm_fn)(int transa, int transb, int m, int n, int k, float alpha, const float *A, int lda,
                                  const float *B, int ldb, float beta, float *C, int ldc);
void msam_emu_set_sgemm(msam_emu_sgemm_fn fn);
/* GEMM calls run since start (cublasSgemm counts 1, a batched call its batch count). */
long long msam_emu_gemm_count(void);
}

#endif
