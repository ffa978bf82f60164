/* cublas_loader.h - the few cuBLAS declarations the CUDA backend uses, called through pointers that
 * cublas_loader.cu resolves from libcublas with dlopen when the first CUDA context is made, so the
 * build needs only nvcc (no cuBLAS headers) and the extension never needs libcublas to import.
 *
 * The names, enum values and signatures are cuBLAS's ABI (cublas_api.h, stable across 11/12/13);
 * the wrappers below keep the cublas_v2.h spellings the backend is written in. nvcc builds only:
 * the emulation build gets the same names from emu/cublas_emu.h (msam_cublas.h picks); the types
 * and enums both use are in cublas_types.h. */
#ifndef MSAM_CUBLAS_LOADER_H
#define MSAM_CUBLAS_LOADER_H

#include <stddef.h>

#include <cuda_runtime.h>

#include "../cublas_types.h"

/* The library's entry points we call (exported as cublasCreate_v2, ..., cublasSgemm_v2,
 * cublasSgemmStridedBatched), the subset emu/cublas_emu.h emulates. */
typedef struct {
    cublasStatus_t (*create)(cublasHandle_t *handle);
    cublasStatus_t (*destroy)(cublasHandle_t handle);
    cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream);
    cublasStatus_t (*set_math_mode)(cublasHandle_t handle, cublasMath_t mode);
    cublasStatus_t (*sgemm)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                            const float *beta, float *C, int ldc);
    cublasStatus_t (*sgemm_strided_batched)(cublasHandle_t handle, cublasOperation_t transa,
                                            cublasOperation_t transb, int m, int n, int k, const float *alpha,
                                            const float *A, int lda, long long strideA, const float *B, int ldb,
                                            long long strideB, const float *beta, float *C, int ldc,
                                            long long strideC, int batch);
} msam_cublas_api;

/* Load libcublas and resolve the table (once per process; after a failure the next call tries
 * again, e.g. once the wheel is installed or preloaded). 0 on success; otherwise -1 and, when why
 * is not NULL, a sentence saying what was tried and how to get cuBLAS. Thread-safe. */
int msam_cublas_load(char *why, size_t why_size);

/* The table once msam_cublas_load has succeeded, else NULL. */
const msam_cublas_api *msam_cublas_table(void);

/* cublas_v2.h's names for the backend's calls; before a successful load they fail cleanly. */
static inline cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    const msam_cublas_api *t = msam_cublas_table();
    return t ? t->create(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    const msam_cublas_api *t = msam_cublas_table();
    return t ? t->destroy(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}
static inline cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    const msam_cublas_api *t = msam_cublas_table();
    return t ? t->set_stream(handle, stream) : CUBLAS_STATUS_NOT_INITIALIZED;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    const msam_cublas_api *t = msam_cublas_table();
    return t ? t->set_math_mode(handle, mode) : CUBLAS_STATUS_NOT_INITIALIZED;
}
static inline cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         const float *B, int ldb, const float *beta, float *C, int ldc) {
    const msam_cublas_api *t = msam_cublas_table();
    return t ? t->sgemm(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
             : CUBLAS_STATUS_NOT_INITIALIZED;
}

static inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                       cublasOperation_t transb, int m, int n, int k,
                                                       const float *alpha, const float *A, int lda, long long strideA,
                                                       const float *B, int ldb, long long strideB, const float *beta,
                                                       float *C, int ldc, long long strideC, int batch) {
    const msam_cublas_api *t = msam_cublas_table();
    return t ? t->sgemm_strided_batched(handle, transa, transb, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta,
                                        C, ldc, strideC, batch)
             : CUBLAS_STATUS_NOT_INITIALIZED;
}

#endif
