/* gemm_ops.cu - the op table's products: linear, matmul, conv3x3 (im2col + GEMM) and upscale_masks
 * (GEMM, or two GEMMs + upscale_parts, then upscale_masks_tail), all fp32 SGEMM through cuBLAS on
 * the context's stream followed by the epilogue kernel for bias, activation and residual. */
#include <stdlib.h>
#include <string.h>

#include "cuda_ctx.h"

void msam_cuda_sgemm_rows(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                          const float *A, ptrdiff_t lda, int trans_w, int n, int k, int accumulate) {
    if (rows <= 0 || n <= 0) return;
    const float one = 1.0f, zero = 0.0f;
    /* row-major y = x W^T is column-major y^T (n x rows, ld ldy) = op(A) (n x k) . x^T (k x rows, ld ldx) */
    msam_cuda_record_blas(ctx, cublasSgemm(ctx->blas, trans_w ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, rows, k,
                                           &one, A, (int)lda, x, (int)ldx, accumulate ? &one : &zero, y, (int)ldy));
}

/* bias, act and a residual that is not y itself (that one the GEMM accumulated); nothing to do
 * is launched as nothing. */
static void epilogue(msam_ctx *ctx, float *y, ptrdiff_t ldy, int rows, int n, const float *bias, msam_act act,
                     const float *residual, ptrdiff_t ldr) {
    if (!bias && act == MSAM_ACT_NONE && !residual) return;
    msam_cuda_record(ctx, msam_cuda_gemm_epilogue(ctx->stream, y, ldy, rows, n, bias, (int)act, residual, ldr));
}

/* Device copies of a [n][k] weight and its bias. */
static msam_linear *linear_upload(msam_ctx *ctx, const float *w, const float *bias, int n, int k) {
    msam_linear *l = (msam_linear *)calloc(1, sizeof *l);
    if (!l) return NULL;
    l->n = n, l->k = k;
    l->w = msam_cuda_upload(NULL, w, (size_t)n * k);
    l->b = bias ? msam_cuda_upload(NULL, bias, (size_t)n) : NULL;
    if (!l->w || (bias && !l->b)) {
        msam_cuda_linear_free(ctx, l);
        return NULL;
    }
    if (ctx) ctx->counters.allocs++;
    return l;
}

msam_linear *msam_cuda_linear_create(msam_ctx *ctx, const float *w, const float *bias, int n_out, int k_in) {
    return linear_upload(ctx, w, bias, n_out, k_in);
}

void msam_cuda_linear_free(msam_ctx *ctx, msam_linear *lin) {
    if (!lin) return;
    if (lin->w) cudaFree(lin->w);
    if (lin->b) cudaFree(lin->b);
    free(lin);
}

void msam_cuda_linear(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                      const msam_linear *lin, msam_act act, const float *residual, ptrdiff_t ldr) {
    if (!msam_cuda_op(ctx, "linear")) return;
    if (rows <= 0) return;
    const int acc = residual == y && ldr == ldy;
    msam_cuda_sgemm_rows(ctx, y, ldy, x, ldx, rows, lin->w, lin->k, 1, lin->n, lin->k, acc);
    epilogue(ctx, y, ldy, rows, lin->n, lin->b, act, acc ? NULL : residual, ldr);
}

size_t msam_cuda_matmul_scratch_bytes(int n, int k) { return sizeof(float) * (size_t)(n > 0 ? n : 1) * (k > 0 ? k : 1); }

void msam_cuda_matmul(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m, const float *w,
                      ptrdiff_t ws_n, ptrdiff_t ws_k, int n, int k, const float *bias, const float *residual,
                      ptrdiff_t ldr, void *scratch) {
    if (!msam_cuda_op(ctx, "matmul")) return;
    if (m <= 0 || n <= 0) return;
    const float *A = w;
    ptrdiff_t lda;
    int trans;
    /* W(j, p) = w[j*ws_n + p*ws_k] as a cuBLAS operand: [n][k] rows (transposed) or [k][n] rows,
     * a leading dimension cuBLAS accepts (any, when the other extent is 1); otherwise packed */
    if (ws_k == 1 && (ws_n >= k || n == 1)) {
        trans = 1, lda = n == 1 ? (k > 1 ? k : 1) : ws_n;
    } else if (ws_n == 1 && (ws_k >= n || k == 1)) {
        trans = 0, lda = k == 1 ? n : ws_k;
    } else {
        msam_cuda_record(ctx, msam_cuda_pack_strided(ctx->stream, (float *)scratch, w, ws_n, ws_k, n, k));
        A = (const float *)scratch, trans = 1, lda = k;
    }
    const int acc = residual == y && ldr == ldy;
    msam_cuda_sgemm_rows(ctx, y, ldy, x, ldx, m, A, lda, trans, n, k, acc);
    epilogue(ctx, y, ldy, m, n, bias, MSAM_ACT_NONE, acc ? NULL : residual, ldr);
}

/* ---- conv3x3: im2col of a block of output rows into scratch, then the GEMM ---- */

/* Patch-matrix floats per conv3x3 block (16 MiB): whole small maps, the 1024-wide stem in blocks. */
enum { CONV_COLS_FLOATS = 4 << 20 };

static int conv_block_rows(int h, int w, int cin, int stride) {
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    const size_t row = (size_t)wo * 9 * cin;
    size_t rows = CONV_COLS_FLOATS / (row ? row : 1);
    if (rows < 1) rows = 1;
    return rows < (size_t)ho ? (int)rows : (ho > 0 ? ho : 1);
}

size_t msam_cuda_conv3x3_scratch_bytes(int h, int w, int cin, int stride) {
    const int wo = (w + stride - 1) / stride;
    return sizeof(float) * (size_t)conv_block_rows(h, w, cin, stride) * (wo > 0 ? wo : 1) * 9 * (cin > 0 ? cin : 1);
}

/* Weights reordered on the host from PyTorch [cout][cin][3][3] to [cout][(ky*3 + kx)*cin + ci],
 * the column order of msam_cuda_im2col3x3. */
msam_linear *msam_cuda_conv3x3_create(msam_ctx *ctx, const float *w, const float *bias, int cout, int cin) {
    const size_t k = (size_t)9 * cin;
    float *t = (float *)malloc(sizeof(float) * (size_t)cout * k);
    if (!t) return NULL;
    for (int o = 0; o < cout; o++)
        for (int ci = 0; ci < cin; ci++)
            for (int tap = 0; tap < 9; tap++) t[o * k + (size_t)tap * cin + ci] = w[((size_t)o * cin + ci) * 9 + tap];
    msam_linear *l = linear_upload(ctx, t, bias, cout, (int)k);
    free(t);
    return l;
}

void msam_cuda_conv3x3(msam_ctx *ctx, float *y, const float *x, int h, int w, int cin, int stride,
                       const msam_linear *conv, msam_act act, void *scratch) {
    if (!msam_cuda_op(ctx, "conv3x3")) return;
    const int ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride, cout = conv->n;
    if (ho <= 0 || wo <= 0) return;
    const int block = conv_block_rows(h, w, cin, stride);
    float *cols = (float *)scratch;
    for (int oy0 = 0; oy0 < ho; oy0 += block) {
        const int r = ho - oy0 < block ? ho - oy0 : block;
        msam_cuda_record(ctx, msam_cuda_im2col3x3(ctx->stream, cols, x, h, w, cin, stride, oy0, r));
        msam_cuda_sgemm_rows(ctx, y + (size_t)oy0 * wo * cout, cout, cols, conv->k, r * wo, conv->w, conv->k, 1, cout,
                             conv->k, 0);
    }
    epilogue(ctx, y, cout, ho * wo, cout, conv->b, act, NULL, 0);
}

/* ---- upscale_masks: the first product by GEMM (or its parts), then the fused tail kernel ---- */

/* up1's output for the model's whole 64 x 64 map, twice (the parts form's two products). */
enum { UPSCALE_MAX_PIXELS = MSAM_EMBED_SIDE * MSAM_EMBED_SIDE };

size_t msam_cuda_upscale_masks_scratch_bytes(int c1, int c) {
    return sizeof(float) * 2 * (size_t)UPSCALE_MAX_PIXELS * 4 * (c1 > 0 ? c1 : 1);
}

void msam_cuda_upscale_masks(msam_ctx *ctx, float *low, const float *x, const msam_upscale_parts *parts, int g,
                             const msam_linear *up1, const float *gamma, const float *beta, float eps,
                             const msam_linear *up2, const float *hyper, int n, void *scratch, size_t scratch_bytes) {
    if (!msam_cuda_op(ctx, "upscale_masks")) return;
    const int P = g * g, W = up1->n, c1 = W / 4, c = up2->n / 4;
    if (P <= 0) return;
    if (sizeof(float) * 2 * (size_t)P * W > scratch_bytes) {
        msam_cuda_record(ctx, (int)cudaErrorInvalidValue);
        return;
    }
    float *u = (float *)scratch;
    if (parts) {
        float *b = u + (size_t)P * W;
        /* row-major a = P0 (P x k) . M0 (k x W): M0 read as a [k][n] operand with rows W apart */
        msam_cuda_sgemm_rows(ctx, u, W, parts->p0, parts->k, P, parts->m0, W, 0, W, parts->k, 0);
        msam_cuda_sgemm_rows(ctx, b, W, parts->p1, parts->k, P, parts->m1, W, 0, W, parts->k, 0);
        msam_cuda_record(ctx, msam_cuda_upscale_parts(ctx->stream, u, u, b, parts->u0, parts->f1, parts->h, parts->s0,
                                                      parts->s1, P, W));
    } else {
        msam_cuda_sgemm_rows(ctx, u, W, x, up1->k, P, up1->w, up1->k, 1, W, up1->k, 0);
        epilogue(ctx, u, W, P, W, up1->b, MSAM_ACT_NONE, NULL, 0);
    }
    msam_cuda_record(ctx, msam_cuda_upscale_masks_tail(ctx->stream, low, u, g, c1, gamma, beta, eps, up2->w, up2->b, c,
                                                       hyper, n));
}
