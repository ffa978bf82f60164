/* cuda_ctx.h - the CUDA backend's context (one per model, one per session) and the helpers every
 * file of the op table shares: the op trace, first-error recording and the cuBLAS handle. */
#ifndef MSAM_CUDA_CTX_H
#define MSAM_CUDA_CTX_H

#include "../msam_cublas.h"

extern "C" {
#include "core/ops.h"
}
#include "cuda_backend.h"

/* A stream of its own (blocking, so the legacy default stream used by ctx == NULL copies waits
 * for it), a cuBLAS handle bound to that stream, the counters and the op trace. */
struct msam_ctx {
    cudaStream_t stream;
    cublasHandle_t blas;
    msam_counters counters;
    uint64_t trace_hash, trace_count;
    int error; /* first error wins */
    struct msam_cuda_graphs *graphs; /* recorded op sequences by key (graphs.cu); NULL until used */
    int replaying;                   /* a recorded sequence was launched: ops only trace */
    int recording;                   /* the stream is being captured for a key */
};

/* The op trace: FNV-1a over op names, the CPU backend's scheme, so traces compare across backends. */
static inline void msam_cuda_trace(msam_ctx *ctx, const char *op) {
    uint64_t h = ctx->trace_hash ? ctx->trace_hash : 1469598103934665603ull;
    for (const char *c = op; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    ctx->trace_hash = h;
    ctx->trace_count++;
}

/* Every op starts here: traces it and says whether to enqueue its work (not while a replayed
 * recording stands in for it, see graphs.cu). */
static inline int msam_cuda_op(msam_ctx *ctx, const char *op) {
    msam_cuda_trace(ctx, op);
    return !ctx->replaying;
}

/* Keep the first nonzero status (a launcher's cudaError_t). */
static inline void msam_cuda_record(msam_ctx *ctx, int status) {
    if (status && ctx && !ctx->error) ctx->error = status;
}
static inline void msam_cuda_record_blas(msam_ctx *ctx, cublasStatus_t status) {
    if (status != CUBLAS_STATUS_SUCCESS) msam_cuda_record(ctx, MSAM_CUDA_BLAS_ERROR + (int)status);
}

/* A Linear (or im2col'd 3x3 convolution) on the device: w [n][k] (PyTorch layout), bias [n] or NULL. */
struct msam_linear {
    float *w, *b;
    int n, k;
};

/* The stream of ctx, or the legacy default stream for ctx == NULL. */
static inline cudaStream_t msam_cuda_stream(const msam_ctx *ctx) { return ctx ? ctx->stream : (cudaStream_t)0; }

/* y (rows x n, rows ldy apart) = x (rows x k, ldx) . W^T where W(j, p) = A[p + j * lda] (trans_w,
 * a [n][k] weight) or A[j + p * lda] (!trans_w, a [k][n] matrix), in fp32 through cuBLAS
 * (column-major: y^T = op(A) x^T); accumulate adds the product to y. Records the status. */
void msam_cuda_sgemm_rows(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                          const float *A, ptrdiff_t lda, int trans_w, int n, int k, int accumulate);

/* Overlapping device-to-device copy (memmove) on stream; ops->copy uses it when the ranges overlap. */
int msam_cuda_memmove(cudaStream_t stream, void *dst, const void *src, size_t bytes);

/* dst[j * k + p] = w[j * s_n + p * s_k]: a matmul operand with strides cuBLAS cannot take, packed. */
int msam_cuda_pack_strided(cudaStream_t stream, float *dst, const float *w, ptrdiff_t s_n, ptrdiff_t s_k, int n,
                           int k);

/* The table's entries that live outside table.cu (context.cu: contexts and memory; gemm_ops.cu:
 * the products). */
msam_ctx *msam_cuda_ctx_create(void);
void msam_cuda_ctx_free(msam_ctx *ctx);
void msam_cuda_sync(msam_ctx *ctx);
void msam_cuda_counters(const msam_ctx *ctx, msam_counters *out);
void msam_cuda_trace_of(const msam_ctx *ctx, uint64_t *hash, uint64_t *count);
void *msam_cuda_alloc(msam_ctx *ctx, size_t bytes);
void msam_cuda_release(msam_ctx *ctx, void *p);
float *msam_cuda_upload(msam_ctx *ctx, const float *host, size_t n);
void msam_cuda_copy_in(msam_ctx *ctx, void *dst, const void *host, size_t bytes);
void msam_cuda_copy_out(msam_ctx *ctx, void *host, const void *src, size_t bytes);
void msam_cuda_copy(msam_ctx *ctx, void *dst, const void *src, size_t bytes);
msam_linear *msam_cuda_linear_create(msam_ctx *ctx, const float *w, const float *bias, int n_out, int k_in);
void msam_cuda_linear_free(msam_ctx *ctx, msam_linear *lin);
void msam_cuda_linear(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                      const msam_linear *lin, msam_act act, const float *residual, ptrdiff_t ldr);
size_t msam_cuda_matmul_scratch_bytes(int n, int k);
void msam_cuda_matmul(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m, const float *w,
                      ptrdiff_t ws_n, ptrdiff_t ws_k, int n, int k, const float *bias, const float *residual,
                      ptrdiff_t ldr, void *scratch);
msam_linear *msam_cuda_conv3x3_create(msam_ctx *ctx, const float *w, const float *bias, int cout, int cin);
size_t msam_cuda_conv3x3_scratch_bytes(int h, int w, int cin, int stride);
void msam_cuda_conv3x3(msam_ctx *ctx, float *y, const float *x, int h, int w, int cin, int stride,
                       const msam_linear *conv, msam_act act, void *scratch);
size_t msam_cuda_upscale_masks_scratch_bytes(int c1, int c);
void msam_cuda_upscale_masks(msam_ctx *ctx, float *low, const float *x, const msam_upscale_parts *parts, int g,
                             const msam_linear *up1, const float *gamma, const float *beta, float eps,
                             const msam_linear *up2, const float *hyper, int n, void *scratch, size_t scratch_bytes);

/* graphs.cu: ops.h's replay_begin / replay_end, and the release of a context's recordings. */
void msam_cuda_replay_begin(msam_ctx *ctx, uint64_t key);
int msam_cuda_replay_end(msam_ctx *ctx, uint64_t key);
void msam_cuda_graphs_free(msam_ctx *ctx);
/* streams.cu: ops.h's export_to. */
int msam_cuda_export_to(msam_ctx *ctx, uintptr_t consumer_stream);

/* The emulation build only: route the emulated cuBLAS's products to the CPU backend's GEMM. */
void msam_cuda_emu_plug_cpu_gemm(void);

#endif
