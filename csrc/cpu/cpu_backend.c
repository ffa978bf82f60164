/* cpu_backend.c - the CPU backend's op table: its context (counters, op trace, per-thread scratch),
 * host memory, and one thin entry per op that records the op in the trace and runs its kernel. */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_kernels.h"
#include "mask_resize.h"   /* host/: the torch-exact mask resize */
#include "pillow_resize.h" /* host/: the Pillow-exact image resize */
#include "threads.h"
#include "../ref/ref.h" /* the plain prompt tokens */

/* The CPU context: counters, the op trace, and per-thread score rows for attention (so no op
 * allocates while it runs). */
struct msam_ctx {
    msam_counters counters;
    uint64_t trace_hash, trace_count;
    float *attn_scratch; /* attn_threads blocks of MSAM_ATTN_SCRATCH_ROWS x MSAM_ATTN_SCRATCH_KEYS */
    int attn_threads;
};

static inline void trace(msam_ctx *ctx, const char *op) {
    uint64_t h = ctx->trace_hash ? ctx->trace_hash : 1469598103934665603ull;
    for (const char *c = op; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    ctx->trace_hash = h;
    ctx->trace_count++;
}

static void *aligned_alloc64(size_t bytes) {
    /* 64-byte aligned so kernels may use aligned vector loads on rows that start a buffer. */
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

static msam_ctx *cpu_ctx_create(void) {
    msam_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->attn_threads = msam_threads_for_sizing();
    ctx->attn_scratch = aligned_alloc64(sizeof(float) * MSAM_ATTN_SCRATCH_ROWS * MSAM_ATTN_SCRATCH_KEYS *
                                        (size_t)ctx->attn_threads);
    if (!ctx->attn_scratch) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

static void cpu_ctx_free(msam_ctx *ctx) {
    if (!ctx) return;
    free(ctx->attn_scratch);
    free(ctx);
}

static void cpu_sync(msam_ctx *ctx) { ctx->counters.syncs++; } /* every CPU op has finished on return */

static void cpu_counters(const msam_ctx *ctx, msam_counters *out) { *out = ctx->counters; }

static void cpu_trace(const msam_ctx *ctx, uint64_t *hash, uint64_t *count) {
    *hash = ctx->trace_hash;
    *count = ctx->trace_count;
}

static void *cpu_alloc(msam_ctx *ctx, size_t bytes) {
    if (ctx) ctx->counters.allocs++;
    return aligned_alloc64(bytes);
}

static void cpu_release(msam_ctx *ctx, void *p) { free(p); }

/* A band of about 8 MB of its widest intermediate stays in the last-level cache, and is large
 * enough that the per-op thread fork/join (several per band) stays rare. */
static int cpu_band_rows(size_t row_bytes, int n) {
    const size_t rows = ((size_t)8 << 20) / (row_bytes ? row_bytes : 1);
    return rows < 1 ? 1 : rows < (size_t)n ? (int)rows : n;
}

static float *cpu_upload(msam_ctx *ctx, const float *host, size_t n) {
    float *p = cpu_alloc(ctx, sizeof(float) * n);
    if (p) memcpy(p, host, sizeof(float) * n);
    return p;
}

static void cpu_copy_in(msam_ctx *ctx, void *dst, const void *host, size_t bytes) {
    if (ctx) {
        trace(ctx, "copy_in");
        ctx->counters.h2d++;
    }
    if (dst != host) memcpy(dst, host, bytes);
}

static void cpu_copy_out(msam_ctx *ctx, void *host, const void *src, size_t bytes) {
    if (ctx) {
        trace(ctx, "copy_out");
        ctx->counters.d2h++;
    }
    if (host != src) memcpy(host, src, bytes);
}

static void cpu_copy(msam_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (ctx) trace(ctx, "copy");
    if (dst != src) memmove(dst, src, bytes);
}

static msam_linear *cpu_linear_create(msam_ctx *ctx, const float *w, const float *bias, int n_out, int k_in) {
    ctx->counters.allocs++;
    return msam_cpu_linear_create(w, bias, n_out, k_in);
}

static void cpu_linear_free(msam_ctx *ctx, msam_linear *lin) { msam_cpu_linear_free(lin); }

static void cpu_linear(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                       const msam_linear *lin, msam_act act, const float *residual, ptrdiff_t ldr) {
    trace(ctx, "linear");
    msam_cpu_linear(y, ldy, x, ldx, rows, lin, act, residual, ldr);
}

static void cpu_matmul(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m,
                       const float *w, ptrdiff_t ws_n, ptrdiff_t ws_k, int n, int k, const float *bias,
                       const float *residual, ptrdiff_t ldr, void *scratch) {
    trace(ctx, "matmul");
    msam_cpu_matmul(y, ldy, x, ldx, m, w, ws_n, ws_k, n, k, bias, residual, ldr, scratch);
}

static void cpu_layernorm(msam_ctx *ctx, float *y, const float *x, int rows, int c, const float *gamma,
                          const float *beta, float eps) {
    trace(ctx, "layernorm");
    msam_cpu_layernorm(y, x, rows, c, gamma, beta, eps);
}

static void cpu_layernorm_pe(msam_ctx *ctx, float *y, float *ype, float *rstd, const float *x, const float *pe,
                             int rows, int c, const float *gamma, const float *beta, float eps) {
    trace(ctx, "layernorm_pe");
    msam_cpu_layernorm_pe(y, ype, rstd, x, pe, rows, c, gamma, beta, eps);
}

static void cpu_add(msam_ctx *ctx, float *y, const float *a, const float *b, size_t n) {
    trace(ctx, "add");
    msam_cpu_add(y, a, b, n);
}

static void cpu_activate(msam_ctx *ctx, float *y, const float *x, size_t n, msam_act act) {
    trace(ctx, "activate");
    msam_cpu_activate(y, x, n, act);
}

static void cpu_add_row(msam_ctx *ctx, float *y, const float *x, const float *row, int rows, int c) {
    trace(ctx, "add_row");
    msam_cpu_add_row(y, x, row, rows, c);
}

static void cpu_transpose(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                          int cols) {
    trace(ctx, "transpose");
    msam_cpu_transpose(y, ldy, x, ldx, rows, cols);
}

static void cpu_space_to_depth2(msam_ctx *ctx, float *y, const float *x, int h, int w, int c) {
    trace(ctx, "space_to_depth2");
    msam_cpu_space_to_depth2(y, x, h, w, c);
}

static void cpu_normalize_pad(msam_ctx *ctx, float *y, int side, const void *x, msam_dtype type, int h, int w,
                              ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x, const float mean[3],
                              const float std[3]) {
    trace(ctx, "normalize_pad");
    msam_cpu_normalize_pad(y, side, x, type, h, w, stride_c, stride_y, stride_x, mean, std);
}

/* Op memory is host memory: the host resize, which needs no plan (it makes its own taps). */
static void cpu_resize_rgb8(msam_ctx *ctx, uint8_t *dst, int nh, int nw, const uint8_t *src, int h, int w,
                            ptrdiff_t row_stride, ptrdiff_t px_stride, int bgr, const int32_t *plan, size_t plan_len,
                            void *plan_scratch) {
    trace(ctx, "resize_rgb8");
    msam_resize_rgb8_pillow(src, h, w, row_stride, px_stride, bgr, dst, nh, nw); /* sizes checked by the caller */
}

/* A few tokens: the plain form is the kernel. */
static void cpu_prompt_tokens(msam_ctx *ctx, float *out, const float *coords, const void *labels, int labels_int64,
                              int n, int pad, const float *box, const float *tables) {
    trace(ctx, "prompt_tokens");
    msam_ref_prompt_tokens(out, coords, labels, labels_int64, n, pad, box, tables);
}

static msam_linear *cpu_conv3x3_create(msam_ctx *ctx, const float *w, const float *bias, int cout, int cin) {
    ctx->counters.allocs++;
    return msam_cpu_conv3x3_create(w, bias, cout, cin);
}

static void cpu_conv3x3(msam_ctx *ctx, float *y, const float *x, int h, int w, int cin, int stride,
                        const msam_linear *conv, msam_act act, void *scratch) {
    trace(ctx, "conv3x3");
    msam_cpu_conv3x3(y, x, h, w, cin, stride, conv, act, scratch);
}

static void cpu_dwconv3x3(msam_ctx *ctx, float *y, const float *x, int h, int w, int c, int stride,
                          const float *w9c, const float *bias, msam_act act) {
    trace(ctx, "dwconv3x3");
    msam_cpu_dwconv3x3(y, x, h, w, c, stride, w9c, bias, act);
}

static void cpu_window_attention(msam_ctx *ctx, float *y, const float *qkv, const float *pad_qkv, int h, int w,
                                 int win, int heads, int dh, const float *bias, float scale, void *scratch,
                                 size_t scratch_bytes) {
    trace(ctx, "window_attention");
    msam_cpu_window_attention(y, qkv, pad_qkv, h, w, win, heads, dh, bias, scale, scratch, scratch_bytes);
}

/* Sized for every core (or the thread setting, if larger): a later, larger setting uses fewer. */
static size_t cpu_window_attention_scratch_bytes(int win, int heads, int dh) {
    return msam_cpu_window_attention_scratch_bytes(win, heads, dh, msam_threads_for_sizing());
}

static void cpu_attention(msam_ctx *ctx, float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                          const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh) {
    trace(ctx, "attention");
    msam_cpu_attention(out, q, ldq, k, ldk, v, ldv, nq, nk, heads, dh, ctx->attn_scratch, ctx->attn_threads);
}

static void cpu_attention_probs(msam_ctx *ctx, float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq,
                                const float *k, ptrdiff_t ldk, int nq, int nk, int heads, int dh) {
    trace(ctx, "attention_probs");
    msam_cpu_attention_probs(P, ldp, q, ldq, k, ldk, nq, nk, heads, dh);
}

static void cpu_softmax(msam_ctx *ctx, float *x, int count, ptrdiff_t stride, int len, float scale) {
    trace(ctx, "softmax");
    msam_cpu_softmax(x, count, stride, len, scale);
}

static size_t cpu_upscale_masks_scratch_bytes(int c1, int c) {
    return msam_cpu_upscale_masks_scratch_bytes(c1, c, msam_threads_for_sizing());
}

static void cpu_upscale_masks(msam_ctx *ctx, float *low, const float *x, const msam_upscale_parts *parts, int g,
                              const msam_linear *up1, const float *gamma, const float *beta, float eps,
                              const msam_linear *up2, const float *hyper, int n, void *scratch,
                              size_t scratch_bytes) {
    trace(ctx, "upscale_masks");
    msam_cpu_upscale_masks(low, x, parts, g, up1, gamma, beta, eps, up2, hyper, n, scratch, scratch_bytes);
}

static void cpu_resize_bilinear(msam_ctx *ctx, const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                                int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w) {
    trace(ctx, "resize_bilinear");
    msam_resize_bilinear_f32(src, sh, sw, src_ld, dst, dh, dw, dst_ld, crop_h, crop_w);
}

static void cpu_resize_bilinear_mask(msam_ctx *ctx, const float *src, int sh, int sw, ptrdiff_t src_ld,
                                     uint8_t *dst, int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w) {
    trace(ctx, "resize_bilinear_mask");
    msam_resize_bilinear_mask(src, sh, sw, src_ld, dst, dh, dw, dst_ld, crop_h, crop_w);
}

static const msam_ops g_cpu_ops = {
    .name = "cpu",
    .device = MSAM_DEVICE_CPU,
    .host_memory = 1,
    .band_rows = cpu_band_rows,
    .ctx_create = cpu_ctx_create,
    .ctx_free = cpu_ctx_free,
    .sync = cpu_sync,
    .counters = cpu_counters,
    .trace = cpu_trace,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .copy_in = cpu_copy_in,
    .copy_out = cpu_copy_out,
    .copy = cpu_copy,
    .linear_create = cpu_linear_create,
    .linear_free = cpu_linear_free,
    .linear = cpu_linear,
    .matmul_scratch_bytes = msam_gemm_dyn_scratch_bytes,
    .matmul = cpu_matmul,
    .layernorm = cpu_layernorm,
    .layernorm_pe = cpu_layernorm_pe,
    .add = cpu_add,
    .activate = cpu_activate,
    .add_row = cpu_add_row,
    .transpose = cpu_transpose,
    .space_to_depth2 = cpu_space_to_depth2,
    .normalize_pad = cpu_normalize_pad,
    .resize_rgb8 = cpu_resize_rgb8,
    .prompt_tokens = cpu_prompt_tokens,
    .conv3x3_create = cpu_conv3x3_create,
    .conv3x3_scratch_bytes = msam_cpu_conv3x3_scratch_bytes,
    .conv3x3 = cpu_conv3x3,
    .dwconv3x3 = cpu_dwconv3x3,
    .window_attention = cpu_window_attention,
    .window_attention_scratch_bytes = cpu_window_attention_scratch_bytes,
    .attention = cpu_attention,
    .attention_probs = cpu_attention_probs,
    .softmax = cpu_softmax,
    .upscale_masks_scratch_bytes = cpu_upscale_masks_scratch_bytes,
    .upscale_masks = cpu_upscale_masks,
    .resize_bilinear = cpu_resize_bilinear,
    .resize_bilinear_mask = cpu_resize_bilinear_mask,
};

const msam_ops *msam_cpu_ops(void) { return &g_cpu_ops; }

const char *msam_cpu_isa(void) { return msam_gemm_isa(); }
