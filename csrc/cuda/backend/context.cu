/* context.cu - the CUDA backend's contexts and memory: a stream and a cuBLAS handle per context
 * (once device_check.cu finds the device usable and cuBLAS loaded), the counters ops.h defines,
 * device allocation (only at load and session creation) and the copies between host and device
 * memory, asynchronous on the context's stream. */
#include <stdlib.h>
#include <string.h>

#include "cuda_ctx.h"

/* NULL when the device cannot be used (msam_cuda_unavailable says why; the registry asks it) or
 * on no memory. */
msam_ctx *msam_cuda_ctx_create(void) {
    if (msam_cuda_unavailable(NULL, 0)) return NULL; /* driver, GPU, code for it, cuBLAS loaded */
    msam_ctx *ctx = (msam_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
#if defined(MSAM_CUDA_EMULATION)
    msam_cuda_emu_plug_cpu_gemm();
#endif
    /* blocking (not cudaStreamNonBlocking): work on the legacy default stream, where ctx == NULL
     * copies run, waits for this stream, so an output read through such a copy is complete */
    if (cudaStreamCreate(&ctx->stream) != cudaSuccess) {
        free(ctx);
        return NULL;
    }
    if (cublasCreate(&ctx->blas) != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(ctx->stream);
        free(ctx);
        return NULL;
    }
    /* fp32 products: default math excludes TF32 tensor-op paths, so parity with the CPU holds */
    if (cublasSetStream(ctx->blas, ctx->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(ctx->blas);
        cudaStreamDestroy(ctx->stream);
        free(ctx);
        return NULL;
    }
    return ctx;
}

void msam_cuda_ctx_free(msam_ctx *ctx) {
    if (!ctx) return;
    cudaStreamSynchronize(ctx->stream);
    msam_cuda_graphs_free(ctx);
    cublasDestroy(ctx->blas);
    cudaStreamDestroy(ctx->stream);
    free(ctx);
}

extern "C" int msam_cuda_ctx_error(const msam_ctx *ctx) { return ctx ? ctx->error : 0; }

void msam_cuda_sync(msam_ctx *ctx) {
    ctx->counters.syncs++;
    msam_cuda_record(ctx, (int)cudaStreamSynchronize(ctx->stream));
}

void msam_cuda_counters(const msam_ctx *ctx, msam_counters *out) { *out = ctx->counters; }

void msam_cuda_trace_of(const msam_ctx *ctx, uint64_t *hash, uint64_t *count) {
    *hash = ctx->trace_hash;
    *count = ctx->trace_count;
}

/* cudaMalloc memory is at least 256-byte aligned, more than the 64 ops.h asks for. */
void *msam_cuda_alloc(msam_ctx *ctx, size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) return NULL;
    if (ctx) ctx->counters.allocs++;
    return p;
}

void msam_cuda_release(msam_ctx *ctx, void *p) {
    if (p) cudaFree(p);
}

/* Host memory handed to an asynchronous copy from pageable memory is staged before the call
 * returns, so the caller may reuse it at once (the decoder's per-prompt tokens do). */
void msam_cuda_copy_in(msam_ctx *ctx, void *dst, const void *host, size_t bytes) {
    if (!bytes) return;
    if (!ctx) {
        cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice);
        return;
    }
    msam_cuda_trace(ctx, "copy_in"); /* never inside a replayed sequence (ops.h) */
    ctx->counters.h2d++;
    msam_cuda_record(ctx, (int)cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, ctx->stream));
}

float *msam_cuda_upload(msam_ctx *ctx, const float *host, size_t n) {
    float *p = (float *)msam_cuda_alloc(ctx, sizeof(float) * n);
    if (!p) return NULL;
    if (n) {
        const cudaError_t e = ctx ? cudaMemcpyAsync(p, host, sizeof(float) * n, cudaMemcpyHostToDevice, ctx->stream)
                                  : cudaMemcpy(p, host, sizeof(float) * n, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            cudaFree(p);
            return NULL;
        }
    }
    return p;
}

/* Hands host memory back, so it waits for the stream (counted as d2h, as ops.h says, not as a sync). */
void msam_cuda_copy_out(msam_ctx *ctx, void *host, const void *src, size_t bytes) {
    if (!bytes) return;
    if (!ctx) {
        cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost);
        return;
    }
    msam_cuda_trace(ctx, "copy_out"); /* never inside a replayed sequence (ops.h) */
    ctx->counters.d2h++;
    msam_cuda_record(ctx, (int)cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    msam_cuda_record(ctx, (int)cudaStreamSynchronize(ctx->stream));
}

void msam_cuda_copy(msam_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (ctx && !msam_cuda_op(ctx, "copy")) return;
    if (!bytes || dst == src) return;
    const char *d = (const char *)dst, *s = (const char *)src;
    const int overlap = d < s + bytes && s < d + bytes;
    cudaStream_t stream = msam_cuda_stream(ctx);
    int st = overlap ? msam_cuda_memmove(stream, dst, src, bytes)
                     : (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
    if (!ctx && !st) st = (int)cudaStreamSynchronize(stream);
    msam_cuda_record(ctx, st);
}
