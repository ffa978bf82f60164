/* cuda_backend.h - the CUDA backend's op table, for the registry (csrc/registry/backends.c) when the
 * library is built with MSAM_WITH_CUDA (nvcc, or the CPU emulation of csrc/cuda/emu). */
#ifndef MSAM_CUDA_BACKEND_H
#define MSAM_CUDA_BACKEND_H

#include "core/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The table ("cuda", MSAM_DEVICE_CUDA): op memory is device memory, every op enqueues on its
 * context's stream, none synchronises, allocates or reads device memory on the host. */
const msam_ops *msam_cuda_ops(void);

/* The first error an op on ctx met (a launch, cuBLAS or copy status: cudaError_t, or
 * MSAM_CUDA_BLAS_ERROR + cublasStatus_t), 0 if none; kept until the context is freed. */
#define MSAM_CUDA_BLAS_ERROR 100000
int msam_cuda_ctx_error(const msam_ctx *ctx);

/* 0 when contexts can be made here: a driver and a GPU, code for it in this build, cuBLAS loaded;
 * otherwise -1 and, when why is not NULL, the reason in a sentence (device_check.cu). */
int msam_cuda_unavailable(char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#endif
