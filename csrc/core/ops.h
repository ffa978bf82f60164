/* ops.h - the backend seam: the op table through which the model code (encoder, prompt, decoder,
 * post) computes, and the context every op runs in. Each backend (cpu/, later cuda/) fills one
 * table; the registry (csrc/registry/) hands the model the table of its device, so the network is
 * written once and core never names a backend. Activations are channels-last: a feature map is
 * rows x channels. Pointers called "op memory" live in the backend's memory (host for the CPU,
 * device for CUDA); core never reads or writes them itself, only through ops. */
#ifndef MSAM_OPS_H
#define MSAM_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "msam.h"

typedef enum { MSAM_ACT_NONE = 0, MSAM_ACT_GELU = 1, MSAM_ACT_RELU = 2 } msam_act;

/* Element types an op may read or write besides fp32 (inputs, masks). */
typedef enum { MSAM_F32 = 0, MSAM_U8 = 1 } msam_dtype;

/* A backend's execution context: on the CPU the thread pool's per-thread scratch and the
 * counters; on CUDA the stream, the cuBLAS handle and the events. One per model (loading) and
 * one per session (so two sessions never share a stream or scratch). Opaque to core. */
typedef struct msam_ctx msam_ctx;

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

/* The most query rows attention takes in one head-at-a-time pass with keys up to this many
 * (the decoder's tokens over the 4096-position image); contexts hold scratch for it. */
#define MSAM_ATTN_SCRATCH_ROWS 16
#define MSAM_ATTN_SCRATCH_KEYS 4096

typedef struct msam_ops {
    const char *name;
    msam_device device;
    /* 1 when op memory is host memory (the CPU): core may then hand host inputs straight to ops
     * instead of staging them with copy_in. Core still never dereferences op memory itself. */
    int host_memory;
    /* Rows of feature map a backend wants per band in the encoder's banded stages, given the
     * bytes of one row of the band's widest intermediate; at least 1. The CPU keeps a band in the
     * last-level cache; a GPU takes whole maps. */
    int (*band_rows)(size_t row_bytes, int rows);

    /* ---- context and memory ---- */
    /* NULL on no memory, or where the device cannot be used (core asks msam_device_check why) */
    msam_ctx *(*ctx_create)(void);
    void (*ctx_free)(msam_ctx *ctx);
    void (*sync)(msam_ctx *ctx);            /* wait until every op issued on ctx has finished */
    void (*counters)(const msam_ctx *ctx, msam_counters *out);
    /* An FNV-1a hash of the names of the ops run on ctx since it was made and their count, so a
     * test can show that two calls ran the same op sequence. */
    void (*trace)(const msam_ctx *ctx, uint64_t *hash, uint64_t *count);
    /* Optional (NULL where ops run as they are called): replay of recorded op sequences (CUDA
     * graphs). The caller brackets ops whose work depends only on key and on op memory (no host
     * memory read or copied in, the same pointers and sizes for a key) with replay_begin and
     * replay_end. The first time for a key the ops are recorded and replay_end launches them;
     * later, replay_begin launches the recording and the ops between only trace (so traces and
     * counters read as a plain run's). replay_end returns nonzero when recording failed and the
     * ops did not run: the caller issues them again, unbracketed. */
    void (*replay_begin)(msam_ctx *ctx, uint64_t key);
    int (*replay_end)(msam_ctx *ctx, uint64_t key);
    /* Optional (NULL where op memory is complete when an op returns): make work later submitted
     * to consumer_stream (a backend stream handle, e.g. a cudaStream_t) wait for every op issued
     * so far on the backend's contexts, without waiting on the host (DLPack's stream argument).
     * ctx may be NULL. Returns 0 or the backend's error code. */
    int (*export_to)(msam_ctx *ctx, uintptr_t consumer_stream);

    /* alloc, release, copy_in, copy_out and copy also take ctx == NULL: they then run on the
     * backend's default context, synchronously, and count nothing (buffers made outside a
     * session, e.g. a predictor's outputs, from any thread). */
    void *(*alloc)(msam_ctx *ctx, size_t bytes); /* op memory, 64-byte aligned; NULL on no memory */
    void (*release)(msam_ctx *ctx, void *p);
    /* Copy n host floats into new op memory (weights that are not GEMM operands); NULL on no
     * memory. copy_in / copy_out move bytes between host and existing op memory; copy moves bytes
     * between op buffers, which may overlap (memmove). */
    float *(*upload)(msam_ctx *ctx, const float *host, size_t n);
    void (*copy_in)(msam_ctx *ctx, void *dst, const void *host, size_t bytes);
    void (*copy_out)(msam_ctx *ctx, void *host, const void *src, size_t bytes);
    void (*copy)(msam_ctx *ctx, void *dst, const void *src, size_t bytes);

    /* ---- linears ---- */
    /* w is host PyTorch Linear layout [n_out][k_in]; bias may be NULL. NULL on no memory. */
    msam_linear *(*linear_create)(msam_ctx *ctx, const float *w, const float *bias, int n_out, int k_in);
    void (*linear_free)(msam_ctx *ctx, msam_linear *lin);

    /* y[r, :] = act(x[r, :] . W^T + bias + residual[r, :]) for r < rows.
     * Rows of x, y, residual are ldx, ldy, ldr floats apart; residual may be NULL or equal y. */
    void (*linear)(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                   const msam_linear *lin, msam_act act, const float *residual, ptrdiff_t ldr);

    /* Product with a right operand made during the call (the decoder's attention folded into
     * its projections): y[i, j] = sum_p x[i, p] * W(j, p) + bias[j] + residual[i, j] for i < m,
     * j < n, p < k, where W(j, p) = w[j*ws_n + p*ws_k] (so both [n][k] and [k][n] layouts
     * work). x, y, residual rows ldx, ldy, ldr floats apart; bias, residual may be NULL. scratch
     * holds matmul_scratch_bytes(n, k) bytes; nothing is allocated. */
    size_t (*matmul_scratch_bytes)(int n, int k);
    void (*matmul)(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int m,
                   const float *w, ptrdiff_t ws_n, ptrdiff_t ws_k, int n, int k, const float *bias,
                   const float *residual, ptrdiff_t ldr, void *scratch);

    /* ---- norms and elementwise ---- */
    /* Row-wise LayerNorm over c channels (also LayerNorm2d on channels-last maps). y may be x. */
    void (*layernorm)(msam_ctx *ctx, float *y, const float *x, int rows, int c, const float *gamma,
                      const float *beta, float eps);
    /* The same that also writes ype = y + pe (rows x c; the decoder's image keys and their
     * positional-encoded copy in one pass) and, if rstd is not NULL, each row's 1/sqrt(var + eps).
     * y may be x; ype is neither. */
    void (*layernorm_pe)(msam_ctx *ctx, float *y, float *ype, float *rstd, const float *x,
                         const float *pe, int rows, int c, const float *gamma, const float *beta,
                         float eps);

    /* Elementwise, n floats: y = a + b; y = act(x). y may alias an input. */
    void (*add)(msam_ctx *ctx, float *y, const float *a, const float *b, size_t n);
    void (*activate)(msam_ctx *ctx, float *y, const float *x, size_t n, msam_act act);
    /* y[r, :] = x[r, :] + row for r < rows (c floats a row; x may be NULL for zeros, or y): the
     * broadcast of a learned embedding (the no-mask prompt) over the image. */
    void (*add_row)(msam_ctx *ctx, float *y, const float *x, const float *row, int rows, int c);

    /* y[j, i] = x[i, j] for i < rows, j < cols; x rows ldx floats apart, y rows ldy apart. */
    void (*transpose)(msam_ctx *ctx, float *y, ptrdiff_t ldy, const float *x, ptrdiff_t ldx, int rows,
                      int cols);

    /* 2x2 space-to-depth: x h x w x c -> y (h/2) x (w/2) x 4c with channel (dy*2+dx)*c + ch. */
    void (*space_to_depth2)(msam_ctx *ctx, float *y, const float *x, int h, int w, int c);

    /* Sam.preprocess into y (side x side x 3 channels-last): (x - mean) / std per channel for the
     * h x w image x, zeros elsewhere (bottom/right padding). x is MSAM_U8 (element (c, y, x) at
     * c*stride_c + y*stride_y + x*stride_x bytes) or MSAM_F32 (the same in floats). */
    void (*normalize_pad)(msam_ctx *ctx, float *y, int side, const void *x, msam_dtype type, int h,
                          int w, ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x,
                          const float mean[3], const float std[3]);

    /* Pillow-exact BILINEAR resize (msam_resize_rgb8's result) of an RGB8 image in op memory: src
     * h x w pixels (rows row_stride bytes apart, pixels px_stride, channels 1 byte apart, reversed
     * when bgr) into dst nh x nw x 3 packed. plan (host memory, plan_len int32s) is
     * msam_resize_plan's for these sizes; plan_scratch, op memory of as many int32s, is where a
     * backend that needs the plan on its device puts it (a host->device copy). */
    void (*resize_rgb8)(msam_ctx *ctx, uint8_t *dst, int nh, int nw, const uint8_t *src, int h, int w,
                        ptrdiff_t row_stride, ptrdiff_t px_stride, int bgr, const int32_t *plan, size_t plan_len,
                        void *plan_scratch);

    /* The sparse prompt tokens of one prompt set from prompts in op memory (GPU prompts, the
     * prompt encoder's _embed_points / _embed_boxes): n points (coords n x 2 in the 1024 frame,
     * labels int32, or int64 when labels_int64), a padding point when pad, then the two corners of
     * box (4 floats, or NULL) into out ((n + pad + 2 * has box) x 256). tables (op memory) holds
     * the random-Fourier matrix (2 x 128), the four point embeddings (4 x 256) and not-a-point
     * (256). Label -1: not-a-point; 0 and 1: their embedding added to the encoding; others: the
     * encoding alone, as the original does. */
    void (*prompt_tokens)(msam_ctx *ctx, float *out, const float *coords, const void *labels, int labels_int64,
                          int n, int pad, const float *box, const float *tables);

    /* ---- convolutions ---- */
    /* Dense 3x3 convolution, padding 1, stride 1 or 2, on an h x w x cin map; weights from
     * PyTorch [cout][cin][3][3] (BatchNorm already folded) made by conv3x3_create. scratch holds
     * conv3x3_scratch_bytes(h, w, cin, stride) bytes. Output is ceil(h/stride) x ceil(w/stride). */
    msam_linear *(*conv3x3_create)(msam_ctx *ctx, const float *w, const float *bias, int cout, int cin);
    size_t (*conv3x3_scratch_bytes)(int h, int w, int cin, int stride);
    void (*conv3x3)(msam_ctx *ctx, float *y, const float *x, int h, int w, int cin, int stride,
                    const msam_linear *conv, msam_act act, void *scratch);

    /* Depthwise 3x3, padding 1, stride 1 or 2: w9c is [9][c] (tap-major, from upload), bias [c]. */
    void (*dwconv3x3)(msam_ctx *ctx, float *y, const float *x, int h, int w, int c, int stride,
                      const float *w9c, const float *bias, msam_act act);

    /* ---- attention ---- */
    /* TinyViT windowed attention over an h x w map already projected to qkv: qkv rows are
     * [head0 q(dh) k(dh) v(dh), head1 ...]; positions outside the map (bottom/right padding up
     * to a multiple of win) take pad_qkv. bias is [heads][win*win][win*win] (expanded from the
     * per-offset table); y is h*w x heads*dh (head-major channels). scratch is op memory of
     * window_attention_scratch_bytes(win, heads, dh) bytes (the backend sizes it for its threads). */
    void (*window_attention)(msam_ctx *ctx, float *y, const float *qkv, const float *pad_qkv, int h,
                             int w, int win, int heads, int dh, const float *bias, float scale,
                             void *scratch, size_t scratch_bytes);
    size_t (*window_attention_scratch_bytes)(int win, int heads, int dh);

    /* Plain multi-head attention (mask decoder): out[i, h*dh + d] = softmax_j(q_i.k_j / sqrt(dh))
     * v_j per head h; q, k, v rows ldq, ldk, ldv floats apart; out is nq x heads*dh packed. */
    void (*attention)(msam_ctx *ctx, float *out, const float *q, ptrdiff_t ldq, const float *k,
                      ptrdiff_t ldk, const float *v, ptrdiff_t ldv, int nq, int nk, int heads, int dh);
    /* Its probabilities alone: P[i*ldp + h*nk + j] = softmax_j(q_i.k_j / sqrt(dh)) over head h's
     * channels, for i < nq (the image->token attention of layer 0, whose value side is folded
     * into the output projection). */
    void (*attention_probs)(msam_ctx *ctx, float *P, ptrdiff_t ldp, const float *q, ptrdiff_t ldq,
                            const float *k, ptrdiff_t ldk, int nq, int nk, int heads, int dh);

    /* In place, for a < count: v = x + a*stride (len contiguous floats) becomes
     * softmax(scale * v). */
    void (*softmax)(msam_ctx *ctx, float *x, int count, ptrdiff_t stride, int len, float scale);

    /* ---- mask decoder output ---- */
    /* The mask decoder's output upscaling and hypernetwork mask logits in one pass, so no
     * upscaled map is stored. x is the g x g map (rows of up1's k_in channels). Per pixel:
     * u = up1(x), read as 4 sub-pixels t1 of c1 = n_out/4 channels (a 2x2 stride-2 transposed
     * conv as a linear); LayerNorm over each sub-pixel's c1 channels (gamma, beta, eps), GELU;
     * v = GELU(up2(u)) per sub-pixel, again 4 sub-pixels t2 of c = up2's n_out/4 channels; then
     * low[i][Y][X] = v . hyper[i] for i < n (hyper n x c), low planar n x 4g x 4g, with
     * Y = 4y + 2(t1/2) + t2/2, X = 4x + 2(t1%2) + t2%2 for pixel (y, x). With parts, u comes
     * from them instead and x is not read (up1 still gives the widths). scratch holds
     * upscale_masks_scratch_bytes(c1, c) bytes (the backend sizes it for its threads). */
    size_t (*upscale_masks_scratch_bytes)(int c1, int c);
    void (*upscale_masks)(msam_ctx *ctx, float *low, const float *x, const msam_upscale_parts *parts,
                          int g, const msam_linear *up1, const float *gamma, const float *beta,
                          float eps, const msam_linear *up2, const float *hyper, int n, void *scratch,
                          size_t scratch_bytes);

    /* Post-processing: bilinear (align_corners=False) resize of one plane with an optional crop
     * of the output grid (see host/mask_resize.h); the _mask form writes the mask (result > 0) as
     * 0 / 1 bytes instead of the floats, bit-identical to thresholding resize_bilinear's. */
    void (*resize_bilinear)(msam_ctx *ctx, const float *src, int sh, int sw, ptrdiff_t src_ld,
                            float *dst, int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);
    void (*resize_bilinear_mask)(msam_ctx *ctx, const float *src, int sh, int sw, ptrdiff_t src_ld,
                                 uint8_t *dst, int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);
} msam_ops;

/* The registry (csrc/registry/backends.c): the op table of a device built into this library,
 * or NULL. Core asks it for the table; it is the one place that names the backends. */
const msam_ops *msam_backend_ops(msam_device device);

#endif
