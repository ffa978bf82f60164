/* cuda_kernels.h - the CUDA backend's kernels as plain C entry points (one .cu per op under
 * kernels/), for the op table to bind; each mirrors the CPU op of the same name in core/ops.h.
 *
 * Every launcher enqueues on `stream` (NULL: the default stream) and returns 0, or the
 * cudaError_t of the launch (cudaErrorInvalidValue = 1 for bad sizes); none synchronises, none
 * allocates, none reads device memory on the host, so all may be captured into a CUDA graph.
 * Pointers are device memory except where a comment says host. Empty work (n == 0) launches
 * nothing. act is an msam_act value: 0 none, 1 GELU (exact, erf), 2 ReLU. */
#ifndef MSAM_CUDA_KERNELS_H
#define MSAM_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *cudaStream_t;

enum { MSAM_CUDA_ACT_NONE = 0, MSAM_CUDA_ACT_GELU = 1, MSAM_CUDA_ACT_RELU = 2 }; /* msam_act */
enum { MSAM_CUDA_F32 = 0, MSAM_CUDA_U8 = 1 };                                       /* msam_dtype */

/* y = a + b over n floats; y may alias a or b. */
int msam_cuda_add(cudaStream_t stream, float *y, const float *a, const float *b, size_t n);

/* y = act(x) over n floats; y may be x. */
int msam_cuda_activate(cudaStream_t stream, float *y, const float *x, size_t n, int act);

/* y[i] = value for i < n. */
int msam_cuda_fill(cudaStream_t stream, float *y, size_t n, float value);

/* y[r, :] = x[r, :] + row for r < rows (c floats a row; rows packed); x may be NULL (then the
 * row is broadcast: the no-mask embedding over the map) or y. */
int msam_cuda_add_row(cudaStream_t stream, float *y, const float *x, const float *row, int rows, int c);

/* Row-wise LayerNorm over c channels, two-pass mean and biased variance as torch; y may be x. */
int msam_cuda_layernorm(cudaStream_t stream, float *y, const float *x, int rows, int c, const float *gamma,
                        const float *beta, float eps);
/* The same that also writes ype = y + pe (ype may be NULL, else neither x nor y) and, when rstd
 * is not NULL, each row's 1 / sqrt(var + eps). */
int msam_cuda_layernorm_pe(cudaStream_t stream, float *y, float *ype, float *rstd, const float *x, const float *pe,
                           int rows, int c, const float *gamma, const float *beta, float eps);

/* In place, for a < count: v = x + a * stride (len floats) becomes softmax(scale * v), the max
 * subtracted first. */
int msam_cuda_softmax(cudaStream_t stream, float *x, int count, ptrdiff_t stride, int len, float scale);

/* y[j * ldy + i] = x[i * ldx + j] for i < rows, j < cols; x and y must not overlap. */
int msam_cuda_transpose(cudaStream_t stream, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                        int cols);

/* 2x2 space-to-depth: x h x w x c -> y (h/2) x (w/2) x 4c, channel (dy * 2 + dx) * c + ch. */
int msam_cuda_space_to_depth2(cudaStream_t stream, float *y, const float *x, int h, int w, int c);

/* Sam.preprocess, ops->normalize_pad: y is side x side x 3 (channels-last), y = (x - mean[ch]) /
 * std[ch] inside the h x w image, 0 in the bottom/right padding. x is MSAM_CUDA_U8 (element
 * (ch, y, x) at ch * stride_c + y * stride_y + x * stride_x bytes) or MSAM_CUDA_F32 (the same in
 * floats). mean and std are 3 host floats each. With MSAM_CUDA_F32 every non-finite input value
 * adds 1 to *nonfinite when it is not NULL (a device int the caller clears, and reads when it may
 * synchronise). */
int msam_cuda_normalize_pad(cudaStream_t stream, float *y, int side, const void *x, int type, int h, int w,
                            ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x, const float *mean,
                            const float *std, int *nonfinite);

/* ops->prompt_tokens (see core/ops.h): the sparse prompt tokens from prompts in device memory. */
int msam_cuda_prompt_tokens(cudaStream_t stream, float *out, const float *coords, const void *labels,
                            int labels_int64, int n, int pad, const float *box, const float *tables);

/* ops->resize_rgb8: the Pillow-exact resize of an RGB8 frame on the device into dst nh x nw x 3
 * packed, from plan (device memory: host/pillow_resize.h's msam_resize_plan for these sizes). */
int msam_cuda_resize_rgb8(cudaStream_t stream, uint8_t *dst, int nh, int nw, const uint8_t *src,
                          ptrdiff_t row_stride, ptrdiff_t px_stride, int bgr, const int32_t *plan);

/* torch interpolate(bilinear, align_corners=False) of one plane sh x sw (rows src_ld apart) to
 * dh x dw (rows dst_ld apart), only the top-left crop_h x crop_w written; bit-identical to the
 * CPU backend (cpu/resize.h). The _mask form writes 1 where that float is > 0, else 0. */
int msam_cuda_resize_bilinear(cudaStream_t stream, const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                              int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);
int msam_cuda_resize_bilinear_mask(cudaStream_t stream, const float *src, int sh, int sw, ptrdiff_t src_ld,
                                   uint8_t *dst, int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);

/* Depthwise 3x3, padding 1, stride 1 or 2, channels-last h x w x c -> ceil(h/s) x ceil(w/s) x c;
 * w9c is [9][c] tap-major, bias [c] or NULL; x and y must not overlap. */
int msam_cuda_dwconv3x3(cudaStream_t stream, float *y, const float *x, int h, int w, int c, int stride,
                        const float *w9c, const float *bias, int act);

/* TinyViT windowed attention, the contract of ops->window_attention (core/ops.h): qkv rows
 * [head0 q k v, head1 ...] of dh each, pad_qkv for positions past the map's bottom/right edge,
 * bias [heads][win*win][win*win], y h*w x heads*dh; dh <= 64, win*win <= 256. */
int msam_cuda_window_attention(cudaStream_t stream, float *y, const float *qkv, const float *pad_qkv, int h, int w,
                               int win, int heads, int dh, const float *bias, float scale);

/* The mask decoder's multi-head attention, ops->attention: out[i, h*dh + d] =
 * softmax_j(q_i . k_j / sqrt(dh)) v_j per head; out nq x heads*dh packed; dh <= 64. */
int msam_cuda_attention(cudaStream_t stream, float *out, const float *q, ptrdiff_t ldq, const float *k,
                        ptrdiff_t ldk, const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh);

/* Its probabilities alone, ops->attention_probs: P[i * ldp + h * nk + j] =
 * softmax_j(q_i . k_j / sqrt(dh)) for head h, i < nq; dh <= 64. */
int msam_cuda_attention_probs(cudaStream_t stream, float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq,
                              const float *k, ptrdiff_t ldk, int nq, int nk, int heads, int dh);

/* The patch matrix of a dense 3x3 convolution (padding 1, stride 1 or 2) of an h x w x cin map,
 * for output rows [oy0, oy0 + out_rows): cols is (out_rows * wo) x 9*cin, column
 * (ky * 3 + kx) * cin + ci (the weight order of the CPU backend's conv3x3_create), zeros outside
 * the map. The GEMM with the [cout][9*cin] weights then gives the convolution. */
int msam_cuda_im2col3x3(cudaStream_t stream, float *cols, const float *x, int h, int w, int cin, int stride, int oy0,
                        int out_rows);

/* ops->upscale_masks after its first product: u1 is up1(x) with its bias, g*g rows of 4*c1 (the 4
 * sub-pixels t1 of c1 channels, from the GEMM); per sub-pixel LayerNorm (gamma, beta, eps) and
 * GELU, then v = GELU(u . w2^T + b2) with w2 [4c][c1] (PyTorch layout; b2 may be NULL), then
 * low[i][Y][X] = v_t2 . hyper[i] for i < n (hyper n x c), low planar n x 4g x 4g with
 * Y = 4y + 2(t1/2) + t2/2, X = 4x + 2(t1%2) + t2%2. c1 <= 256, c <= 64, n <= 16. */
int msam_cuda_upscale_masks_tail(cudaStream_t stream, float *low, const float *u1, int g, int c1, const float *gamma,
                                 const float *beta, float eps, const float *w2, const float *b2, int c,
                                 const float *hyper, int n);

/* After a plain GEMM into y (rows x n, rows ldy apart): y = act(y + bias + residual), bias [n] or
 * NULL, residual rows ldr apart or NULL (may be y). */
int msam_cuda_gemm_epilogue(cudaStream_t stream, float *y, ptrdiff_t ldy, int rows, int n, const float *bias, int act,
                            const float *residual, ptrdiff_t ldr);

/* upscale_masks' first product from its parts (msam_upscale_parts, core/ops.h), given the two GEMM
 * results a = P0 M0 and b = P1 M1 (pixels x width, packed): u = s1[p] * (s0[p] * (a + u0) + b + f1)
 * + h, with u0 pixels x width, f1 and h [width], s0 and s1 [pixels]. u may be a or b. */
int msam_cuda_upscale_parts(cudaStream_t stream, float *u, const float *a, const float *b, const float *u0,
                            const float *f1, const float *h, const float *s0, const float *s1, int pixels, int width);

#ifdef __cplusplus
}
#endif

#endif
