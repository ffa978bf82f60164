/* ops.h - the op table through which the model code (encoder, prompt, decoder, post) computes.
 * Each backend (cpu/, later cuda/) fills one; model code never calls a kernel directly, so the
 * network is written once. Activations are channels-last: a feature map is rows x channels. */
#ifndef MSAM_OPS_H
#define MSAM_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "msam.h"

typedef enum { MSAM_ACT_NONE = 0, MSAM_ACT_GELU = 1, MSAM_ACT_RELU = 2 } msam_act;

/* A Linear (or 1x1 / im2col'd convolution) weight in the backend's packed form, with bias. */
typedef struct msam_linear msam_linear;

/* upscale_masks' first product given in parts (the decoder's up1 split through its LayerNorms,
 * see decoder.c): u[p] = s1[p] * (s0[p] * (P0[p] M0 + u0[p]) + P1[p] M1 + f1) + h, where P0, P1
 * are g*g x k (rows k apart), M0, M1 k x 4*c1, u0 g*g x 4*c1, f1 and h 4*c1, s0 and s1 g*g;
 * k <= MSAM_UPSCALE_MAX_K. */
#define MSAM_UPSCALE_MAX_K 128
typedef struct {
    const float *p0, *p1, *m0, *m1, *u0, *f1, *h, *s0, *s1;
    int k;
} msam_upscale_parts;

typedef struct msam_ops {
    const char *name;
    msam_device device;

    /* memory the ops read and write (host for cpu, device for cuda) */
    void *(*alloc)(size_t bytes);
    void (*release)(void *p);

    /* w is PyTorch Linear layout [n_out][k_in]; bias may be NULL. Returns NULL on no memory. */
    msam_linear *(*linear_create)(const float *w, const float *bias, int n_out, int k_in);
    void (*linear_free)(msam_linear *lin);

    /* y[r, :] = act(x[r, :] . W^T + bias + residual[r, :]) for r < rows.
     * Rows of x, y, residual are ldx, ldy, ldr floats apart; residual may be NULL or equal y. */
    void (*linear)(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                   const msam_linear *lin, msam_act act, const float *residual, ptrdiff_t ldr);

    /* Row-wise LayerNorm over c channels (also LayerNorm2d on channels-last maps). y may be x. */
    void (*layernorm)(float *y, const float *x, int rows, int c, const float *gamma,
                      const float *beta, float eps);
    /* The same that also writes ype = y + pe (rows x c; the decoder's image keys and their
     * positional-encoded copy in one pass) and, if rstd is not NULL, each row's 1/sqrt(var + eps).
     * y may be x; ype is neither. */
    void (*layernorm_pe)(float *y, float *ype, float *rstd, const float *x, const float *pe, int rows,
                         int c, const float *gamma, const float *beta, float eps);

    /* Elementwise, n floats: y = a + b; y = act(x). y may alias an input. */
    void (*add)(float *y, const float *a, const float *b, size_t n);
    void (*activate)(float *y, const float *x, size_t n, msam_act act);

    /* Copy n host floats into new op memory (weights that are not GEMM operands); NULL on no
     * memory. copy_in / copy_out move n floats between host and existing op memory. */
    float *(*upload)(const float *host, size_t n);
    void (*copy_in)(float *dst, const float *host, size_t n);
    void (*copy_out)(float *host, const float *src, size_t n);

    /* Dense 3x3 convolution, padding 1, stride 1 or 2, on an h x w x cin map; weights from
     * PyTorch [cout][cin][3][3] (BatchNorm already folded) made by conv3x3_create. scratch holds
     * conv3x3_scratch_bytes(h, w, cin, stride) bytes. Output is ceil(h/stride) x ceil(w/stride). */
    msam_linear *(*conv3x3_create)(const float *w, const float *bias, int cout, int cin);
    size_t (*conv3x3_scratch_bytes)(int h, int w, int cin, int stride);
    void (*conv3x3)(float *y, const float *x, int h, int w, int cin, int stride,
                    const msam_linear *conv, msam_act act, void *scratch);

    /* Depthwise 3x3, padding 1, stride 1 or 2: w9c is [9][c] (tap-major, from upload), bias [c]. */
    void (*dwconv3x3)(float *y, const float *x, int h, int w, int c, int stride,
                      const float *w9c, const float *bias, msam_act act);

    /* TinyViT windowed attention over an h x w map already projected to qkv: qkv rows are
     * [head0 q(dh) k(dh) v(dh), head1 ...]; positions outside the map (bottom/right padding up
     * to a multiple of win) take pad_qkv. bias is [heads][win*win][win*win] (expanded from the
     * per-offset table); y is h*w x heads*dh (head-major channels). scratch is op memory. */
    void (*window_attention)(float *y, const float *qkv, const float *pad_qkv, int h, int w,
                             int win, int heads, int dh, const float *bias, float scale,
                             void *scratch, size_t scratch_bytes);
    /* Scratch that lets window_attention run on `threads` threads (it uses no more threads than
     * the scratch it is given covers, and still works, more slowly, with none). */
    size_t (*window_attention_scratch_bytes)(int win, int heads, int dh, int threads);

    /* Plain multi-head attention (mask decoder): out[i, h*dh + d] = softmax_j(q_i.k_j / sqrt(dh))
     * v_j per head h; q, k, v rows ldq, ldk, ldv floats apart; out is nq x heads*dh packed. */
    void (*attention)(float *out, const float *q, ptrdiff_t ldq, const float *k, ptrdiff_t ldk,
                      const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh);
    /* Its probabilities alone: P[i*ldp + h*nk + j] = softmax_j(q_i.k_j / sqrt(dh)) over head h's
     * channels, for i < nq (the image->token attention of layer 0, whose value side is folded
     * into the output projection). */
    void (*attention_probs)(float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq, const float *k,
                            ptrdiff_t ldk, int nq, int nk, int heads, int dh);

    /* Product with a right operand made during the call (the decoder's attention folded into
     * its projections): y[i, j] = sum_p x[i, p] * W(j, p) + bias[j] + residual[i, j] for i < m,
     * j < n, p < k, where W(j, p) = w[j*ws_n + p*ws_k] (so both [n][k] and [k][n] layouts
     * work). x, y, residual rows ldx, ldy, ldr floats apart; bias, residual may be NULL. scratch
     * holds matmul_scratch_bytes(n, k) bytes; nothing is allocated. */
    size_t (*matmul_scratch_bytes)(int n, int k);
    void (*matmul)(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m, const float *w,
                   ptrdiff_t ws_n, ptrdiff_t ws_k, int n, int k, const float *bias,
                   const float *residual, ptrdiff_t ldr, void *scratch);

    /* In place, for a < count: v = x + a*stride (len contiguous floats) becomes
     * softmax(scale * v). */
    void (*softmax)(float *x, int count, ptrdiff_t stride, int len, float scale);

    /* y[j, i] = x[i, j] for i < rows, j < cols; x rows ldx floats apart, y rows ldy apart. */
    void (*transpose)(float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows, int cols);

    /* 2x2 space-to-depth: x h x w x c -> y (h/2) x (w/2) x 4c with channel (dy*2+dx)*c + ch. */
    void (*space_to_depth2)(float *y, const float *x, int h, int w, int c);

    /* The mask decoder's output upscaling and hypernetwork mask logits in one pass, so no
     * upscaled map is stored. x is the g x g map (rows of up1's k_in channels). Per pixel:
     * u = up1(x), read as 4 sub-pixels t1 of c1 = n_out/4 channels (a 2x2 stride-2 transposed
     * conv as a linear); LayerNorm over each sub-pixel's c1 channels (gamma, beta, eps), GELU;
     * v = GELU(up2(u)) per sub-pixel, again 4 sub-pixels t2 of c = up2's n_out/4 channels; then
     * low[i][Y][X] = v . hyper[i] for i < n (hyper n x c), low planar n x 4g x 4g, with
     * Y = 4y + 2(t1/2) + t2/2, X = 4x + 2(t1%2) + t2%2 for pixel (y, x). With parts, u comes
     * from them instead and x is not read (up1 still gives the widths). It uses no more threads
     * than scratch covers: upscale_masks_scratch_bytes(c1, c, threads), at least one thread. */
    size_t (*upscale_masks_scratch_bytes)(int c1, int c, int threads);
    void (*upscale_masks)(float *low, const float *x, const msam_upscale_parts *parts, int g,
                          const msam_linear *up1, const float *gamma, const float *beta, float eps,
                          const msam_linear *up2, const float *hyper, int n, void *scratch,
                          size_t scratch_bytes);

    /* Post-processing: bilinear (align_corners=False) resize of one plane with an optional crop
     * of the output grid (see cpu/resize.h); the _mask form writes the mask (result > 0) as
     * 0 / 1 bytes instead of the floats, bit-identical to thresholding resize_bilinear's. */
    void (*resize_bilinear)(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                            int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);
    void (*resize_bilinear_mask)(const float *src, int sh, int sw, ptrdiff_t src_ld, uint8_t *dst,
                                 int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);
} msam_ops;

const msam_ops *msam_cpu_ops(void);

#endif
