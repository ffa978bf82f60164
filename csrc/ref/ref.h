/* ref.h - the plain C references of the ops (csrc/ref/): single-threaded, unfused, written for
 * clarity. The conformance suite checks every backend's ops against them; CPU kernels also use a
 * few for shapes their fast paths do not take. Host memory; no backend named. */
#ifndef MSAM_REF_H
#define MSAM_REF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "../core/ops.h"

/* Exact (erf) GELU, as torch's default, and the activations by code. */
static inline float msam_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

static inline float msam_apply_act(float x, msam_act act) {
    if (act == MSAM_ACT_GELU) return msam_gelu(x);
    if (act == MSAM_ACT_RELU) return x > 0.0f ? x : 0.0f;
    return x;
}

/* Where row r of the second product's output lands in the 4g x 4g logit plane (two nested 2x2
 * sub-pixels, see ops.h). */
static inline size_t msam_ref_subpixel_offset(int r, int g) {
    const int px = r >> 4, t1 = (r >> 2) & 3, t2 = r & 3;
    const int Y = 4 * (px / g) + 2 * (t1 >> 1) + (t2 >> 1), X = 4 * (px % g) + 2 * (t1 & 1) + (t2 & 1);
    return (size_t)Y * (size_t)(4 * g) + (size_t)X;
}

/* C[m, j] = act(sum_p A[m, p] * W[j, p] + bias[j] + R[m, j]) (W [n][k]); R may be C. */
void msam_ref_gemm(int M, int n, int k, const float *A, ptrdiff_t lda, const float *w_nk, const float *bias,
                   msam_act act, const float *R, ptrdiff_t ldr, float *C, ptrdiff_t ldc);
/* ops->matmul: W(j, p) = w[j*ws_n + p*ws_k]. */
void msam_ref_matmul(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m, const float *w, ptrdiff_t ws_n,
                     ptrdiff_t ws_k, int n, int k, const float *bias, const float *residual, ptrdiff_t ldr);
void msam_ref_softmax(float *x, int count, ptrdiff_t stride, int len, float scale);
void msam_ref_conv3x3(float *y, const float *x, int h, int w, int cin, int cout, int stride, const float *w_torch,
                      const float *bias, msam_act act);
void msam_ref_dwconv3x3(float *y, const float *x, int h, int w, int c, int stride, const float *w9c,
                        const float *bias, msam_act act);
void msam_ref_attention(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk, const float *v,
                        ptrdiff_t ldv, int nq, int nk, int heads, int dh);
void msam_ref_attention_probs(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                              int nq, int nk, int heads, int dh);
/* One (window wy, wx; head hd) of window_attention, and the whole op. */
void msam_ref_window_task(float *y, const float *qkv, const float *pad_qkv, int h, int w, int win, int wy, int wx,
                          int hd, int heads, int dh, const float *bias, float scale);
void msam_ref_window_attention(float *y, const float *qkv, const float *pad_qkv, int h, int w, int win, int heads,
                               int dh, const float *bias, float scale);
/* Mask logits of upscaled rows [first, last) (row r is up[(r - first) * c]), and the whole
 * upscale_masks with unpacked weights ([n_out][k_in] in ops.h's sub-pixel order); u1 holds
 * g*g*4*c1 floats, u2 g*g*16*c. */
void msam_ref_mask_logit_rows(float *low, const float *up, const float *hyper, int first, int last, int g, int c,
                              int n);
void msam_ref_upscale_masks(float *low, const float *x, int g, int cin, int c1, int c, const float *w1,
                            const float *b1, const float *gamma, const float *beta, float eps, const float *w2,
                            const float *b2, const float *hyper, int n, float *u1, float *u2);
/* elementwise_ref.c: the small ops, with their ops.h contracts */
void msam_ref_layernorm_pe(float *y, float *ype, float *rstd, const float *x, const float *pe, int rows, int c,
                           const float *gamma, const float *beta, float eps);
void msam_ref_add(float *y, const float *a, const float *b, size_t n);
void msam_ref_activate(float *y, const float *x, size_t n, msam_act act);
void msam_ref_add_row(float *y, const float *x, const float *row, int rows, int c);
void msam_ref_transpose(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols);
void msam_ref_space_to_depth2(float *y, const float *x, int h, int w, int c);
void msam_ref_normalize_pad(float *y, int side, const void *x, msam_dtype type, int h, int w, ptrdiff_t stride_c,
                            ptrdiff_t stride_y, ptrdiff_t stride_x, const float mean[3], const float std[3]);
/* torch's bilinear interpolate (align_corners=False), the top-left crop_h x crop_w of dh x dw. */
/* ops->prompt_tokens, plain (the CPU backend's op). */
void msam_ref_prompt_tokens(float *out, const float *coords, const void *labels, int labels_int64, int n, int pad,
                            const float *box, const float *tables);
/* Pillow-exact RGB8 resize from its plan (host/pillow_resize.h msam_resize_plan): src rows
 * row_stride bytes apart, pixels px_stride, channels 1 byte apart (reversed when bgr); dst
 * nh x nw x 3 packed. */
void msam_ref_resize_rgb8(const int32_t *plan, const uint8_t *src, ptrdiff_t row_stride, ptrdiff_t px_stride,
                          int bgr, uint8_t *dst, int nh, int nw);
void msam_ref_resize_bilinear(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst, int dh, int dw,
                              ptrdiff_t dst_ld, int crop_h, int crop_w);

#endif
