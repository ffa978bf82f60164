/* cpu_kernels.h - the CPU backend's kernels, one file each, gathered into the op table by
 * cpu_backend.c. Each fast kernel's plain reference is in csrc/ref/ (msam_ref_*, ref.h). */
#ifndef MSAM_CPU_KERNELS_H
#define MSAM_CPU_KERNELS_H

#include "../core/ops.h"
#include "gemm.h"

/* The CPU form of msam_linear: packed weight (n_out x k_in as B = W^T) and its bias. */
struct msam_linear {
    msam_packed_b *b;
    float *bias; /* n_out floats or NULL */
    int n_out, k_in;
};

/* cpu_ops.c: the small ops, each with the contract of its ops.h entry (without the context) */
msam_linear *msam_cpu_linear_create(const float *w, const float *bias, int n_out, int k_in);
void msam_cpu_linear_free(msam_linear *lin);
void msam_cpu_linear(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, const msam_linear *lin,
                     msam_act act, const float *residual, ptrdiff_t ldr);
void msam_cpu_matmul(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m, const float *w, ptrdiff_t ws_n,
                     ptrdiff_t ws_k, int n, int k, const float *bias, const float *residual, ptrdiff_t ldr,
                     void *scratch);
void msam_cpu_layernorm(float *y, const float *x, int rows, int c, const float *gamma, const float *beta, float eps);
void msam_cpu_layernorm_pe(float *y, float *ype, float *rstd, const float *x, const float *pe, int rows, int c,
                           const float *gamma, const float *beta, float eps);
void msam_cpu_add(float *y, const float *a, const float *b, size_t n);
void msam_cpu_activate(float *y, const float *x, size_t n, msam_act act);
void msam_cpu_add_row(float *y, const float *x, const float *row, int rows, int c);
void msam_cpu_transpose(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols);
void msam_cpu_space_to_depth2(float *y, const float *x, int h, int w, int c);
void msam_cpu_normalize_pad(float *y, int side, const void *x, msam_dtype type, int h, int w, ptrdiff_t stride_c,
                            ptrdiff_t stride_y, ptrdiff_t stride_x, const float mean[3], const float std[3]);
/* LayerNorm of rows [first, last) of c floats; y may be x (single-threaded). */
void msam_cpu_layernorm_rows(float *y, const float *x, int first, int last, int c, const float *gamma,
                             const float *beta, float eps);

/* conv3x3.c: dense 3x3 conv via blocked im2col + msam_gemm (weights repacked to
 * [cout][(ky*3+kx)*cin + ci] at create). */
msam_linear *msam_cpu_conv3x3_create(const float *w, const float *bias, int cout, int cin);
size_t msam_cpu_conv3x3_scratch_bytes(int h, int w, int cin, int stride);
void msam_cpu_conv3x3(float *y, const float *x, int h, int w, int cin, int stride,
                      const msam_linear *conv, msam_act act, void *scratch);

/* dwconv3x3.c */
void msam_cpu_dwconv3x3(float *y, const float *x, int h, int w, int c, int stride,
                        const float *w9c, const float *bias, msam_act act);

/* window_attention.c */
void msam_cpu_window_attention(float *y, const float *qkv, const float *pad_qkv, int h, int w,
                               int win, int heads, int dh, const float *bias, float scale,
                               void *scratch, size_t scratch_bytes);
size_t msam_cpu_window_attention_scratch_bytes(int win, int heads, int dh, int threads);

/* attention.c: the decoder's plain multi-head attention (ops->attention); scratch holds
 * scratch_threads blocks of MSAM_ATTN_SCRATCH_ROWS x MSAM_ATTN_SCRATCH_KEYS floats (the context's) */
void msam_cpu_attention(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                        const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh, float *scratch,
                        int scratch_threads);
/* attention.c: ops->attention_probs (nk > 64 or no AVX2: the reference) */
void msam_cpu_attention_probs(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k,
                              ptrdiff_t ldk, int nq, int nk, int heads, int dh);

/* upscale.c: ops->upscale_masks; the reference takes unpacked weights and u1, u2 buffers for
 * the whole g x g map (g*g*4*c1 and g*g*16*c floats). */
size_t msam_cpu_upscale_masks_scratch_bytes(int c1, int c, int threads);
void msam_cpu_upscale_masks(float *low, const float *x, const msam_upscale_parts *parts, int g,
                            const msam_linear *up1, const float *gamma, const float *beta, float eps,
                            const msam_linear *up2, const float *hyper, int n, void *scratch,
                            size_t scratch_bytes);

/* softmax.c: ops->softmax */
void msam_cpu_softmax(float *x, int count, ptrdiff_t stride, int len, float scale);

#endif
