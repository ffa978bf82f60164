/* table.cu - the CUDA backend's op table: each op records itself in the context's trace and
 * enqueues its kernel (csrc/cuda/kernels) on the context's stream, keeping the first error; the
 * products (gemm_ops.cu) and the contexts and memory (context.cu) are bound here too. */
#include "cuda_ctx.h"

/* A GPU takes whole maps: the encoder's banded stages run as one band each. */
static int band_rows(size_t row_bytes, int rows) { return rows < 1 ? 1 : rows; }

static void layernorm(msam_ctx *ctx, float *y, const float *x, int rows, int c, const float *gamma, const float *beta,
                      float eps) {
    if (!msam_cuda_op(ctx, "layernorm")) return;
    msam_cuda_record(ctx, msam_cuda_layernorm(ctx->stream, y, x, rows, c, gamma, beta, eps));
}

static void layernorm_pe(msam_ctx *ctx, float *y, float *ype, float *rstd, const float *x, const float *pe, int rows,
                         int c, const float *gamma, const float *beta, float eps) {
    if (!msam_cuda_op(ctx, "layernorm_pe")) return;
    msam_cuda_record(ctx, msam_cuda_layernorm_pe(ctx->stream, y, ype, rstd, x, pe, rows, c, gamma, beta, eps));
}

static void add(msam_ctx *ctx, float *y, const float *a, const float *b, size_t n) {
    if (!msam_cuda_op(ctx, "add")) return;
    msam_cuda_record(ctx, msam_cuda_add(ctx->stream, y, a, b, n));
}

static void activate(msam_ctx *ctx, float *y, const float *x, size_t n, msam_act act) {
    if (!msam_cuda_op(ctx, "activate")) return;
    msam_cuda_record(ctx, msam_cuda_activate(ctx->stream, y, x, n, (int)act));
}

static void add_row(msam_ctx *ctx, float *y, const float *x, const float *row, int rows, int c) {
    if (!msam_cuda_op(ctx, "add_row")) return;
    msam_cuda_record(ctx, msam_cuda_add_row(ctx->stream, y, x, row, rows, c));
}

static void transpose(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols) {
    if (!msam_cuda_op(ctx, "transpose")) return;
    msam_cuda_record(ctx, msam_cuda_transpose(ctx->stream, y, ldy, x, ldx, rows, cols));
}

static void space_to_depth2(msam_ctx *ctx, float *y, const float *x, int h, int w, int c) {
    if (!msam_cuda_op(ctx, "space_to_depth2")) return;
    msam_cuda_record(ctx, msam_cuda_space_to_depth2(ctx->stream, y, x, h, w, c));
}

static void normalize_pad(msam_ctx *ctx, float *y, int side, const void *x, msam_dtype type, int h, int w,
                          ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x, const float mean[3],
                          const float std[3]) {
    if (!msam_cuda_op(ctx, "normalize_pad")) return;
    /* no non-finite count: core checks host float images before they are staged */
    msam_cuda_record(ctx, msam_cuda_normalize_pad(ctx->stream, y, side, x, (int)type, h, w, stride_c, stride_y,
                                                  stride_x, mean, std, NULL));
}

static void prompt_tokens(msam_ctx *ctx, float *out, const float *coords, const void *labels, int labels_int64,
                          int n, int pad, const float *box, const float *tables) {
    if (!msam_cuda_op(ctx, "prompt_tokens")) return;
    msam_cuda_record(ctx, msam_cuda_prompt_tokens(ctx->stream, out, coords, labels, labels_int64, n, pad, box, tables));
}

/* The plan goes to the device first (one host->device copy, counted), then one kernel. */
static void resize_rgb8(msam_ctx *ctx, uint8_t *dst, int nh, int nw, const uint8_t *src, int h, int w,
                        ptrdiff_t row_stride, ptrdiff_t px_stride, int bgr, const int32_t *plan, size_t plan_len,
                        void *plan_scratch) {
    if (!msam_cuda_op(ctx, "resize_rgb8")) return;
    ctx->counters.h2d++;
    msam_cuda_record(ctx, (int)cudaMemcpyAsync(plan_scratch, plan, sizeof(int32_t) * plan_len,
                                               cudaMemcpyHostToDevice, ctx->stream));
    msam_cuda_record(ctx, msam_cuda_resize_rgb8(ctx->stream, dst, nh, nw, src, row_stride, px_stride, bgr,
                                                (const int32_t *)plan_scratch));
}

static void dwconv3x3(msam_ctx *ctx, float *y, const float *x, int h, int w, int c, int stride, const float *w9c,
                      const float *bias, msam_act act) {
    if (!msam_cuda_op(ctx, "dwconv3x3")) return;
    msam_cuda_record(ctx, msam_cuda_dwconv3x3(ctx->stream, y, x, h, w, c, stride, w9c, bias, (int)act));
}

static void window_attention(msam_ctx *ctx, float *y, const float *qkv, const float *pad_qkv, int h, int w, int win,
                             int heads, int dh, const float *bias, float scale, void *scratch, size_t scratch_bytes) {
    if (!msam_cuda_op(ctx, "window_attention")) return;
    msam_cuda_record(ctx, msam_cuda_window_attention(ctx->stream, y, qkv, pad_qkv, h, w, win, heads, dh, bias, scale));
}

/* The kernel keeps a window's keys and values in shared memory: no scratch. */
static size_t window_attention_scratch_bytes(int win, int heads, int dh) { return 0; }

static void attention(msam_ctx *ctx, float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                      const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh) {
    if (!msam_cuda_op(ctx, "attention")) return;
    msam_cuda_record(ctx, msam_cuda_attention(ctx->stream, out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh));
}

static void attention_probs(msam_ctx *ctx, float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k,
                            ptrdiff_t ldk, int nq, int nk, int heads, int dh) {
    if (!msam_cuda_op(ctx, "attention_probs")) return;
    msam_cuda_record(ctx, msam_cuda_attention_probs(ctx->stream, P, ldp, q, ldq, k, ldk, nq, nk, heads, dh));
}

static void softmax(msam_ctx *ctx, float *x, int count, ptrdiff_t stride, int len, float scale) {
    if (!msam_cuda_op(ctx, "softmax")) return;
    msam_cuda_record(ctx, msam_cuda_softmax(ctx->stream, x, count, stride, len, scale));
}

static void resize_bilinear(msam_ctx *ctx, const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst, int dh,
                            int dw, ptrdiff_t dst_ld, int crop_h, int crop_w) {
    if (!msam_cuda_op(ctx, "resize_bilinear")) return;
    msam_cuda_record(ctx, msam_cuda_resize_bilinear(ctx->stream, src, sh, sw, src_ld, dst, dh, dw, dst_ld, crop_h,
                                                    crop_w));
}

static void resize_bilinear_mask(msam_ctx *ctx, const float *src, int sh, int sw, ptrdiff_t src_ld, uint8_t *dst,
                                 int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w) {
    if (!msam_cuda_op(ctx, "resize_bilinear_mask")) return;
    msam_cuda_record(ctx, msam_cuda_resize_bilinear_mask(ctx->stream, src, sh, sw, src_ld, dst, dh, dw, dst_ld, crop_h,
                                                         crop_w));
}

/* In ops.h's order (designated initializers, which g++ and nvcc accept in C++17 as an extension
 * when in order). */
static const msam_ops g_cuda_ops = {
    .name = "cuda",
    .device = MSAM_DEVICE_CUDA,
    .host_memory = 0,
    .band_rows = band_rows,
    .ctx_create = msam_cuda_ctx_create,
    .ctx_free = msam_cuda_ctx_free,
    .sync = msam_cuda_sync,
    .counters = msam_cuda_counters,
    .trace = msam_cuda_trace_of,
    .replay_begin = msam_cuda_replay_begin,
    .replay_end = msam_cuda_replay_end,
    .export_to = msam_cuda_export_to,
    .alloc = msam_cuda_alloc,
    .release = msam_cuda_release,
    .upload = msam_cuda_upload,
    .copy_in = msam_cuda_copy_in,
    .copy_out = msam_cuda_copy_out,
    .copy = msam_cuda_copy,
    .linear_create = msam_cuda_linear_create,
    .linear_free = msam_cuda_linear_free,
    .linear = msam_cuda_linear,
    .matmul_scratch_bytes = msam_cuda_matmul_scratch_bytes,
    .matmul = msam_cuda_matmul,
    .layernorm = layernorm,
    .layernorm_pe = layernorm_pe,
    .add = add,
    .activate = activate,
    .add_row = add_row,
    .transpose = transpose,
    .space_to_depth2 = space_to_depth2,
    .normalize_pad = normalize_pad,
    .resize_rgb8 = resize_rgb8,
    .prompt_tokens = prompt_tokens,
    .conv3x3_create = msam_cuda_conv3x3_create,
    .conv3x3_scratch_bytes = msam_cuda_conv3x3_scratch_bytes,
    .conv3x3 = msam_cuda_conv3x3,
    .dwconv3x3 = dwconv3x3,
    .window_attention = window_attention,
    .window_attention_scratch_bytes = window_attention_scratch_bytes,
    .attention = attention,
    .attention_probs = attention_probs,
    .softmax = softmax,
    .upscale_masks_scratch_bytes = msam_cuda_upscale_masks_scratch_bytes,
    .upscale_masks = msam_cuda_upscale_masks,
    .resize_bilinear = resize_bilinear,
    .resize_bilinear_mask = resize_bilinear_mask,
};

extern "C" const msam_ops *msam_cuda_ops(void) { return &g_cuda_ops; }
