/* model.h - the converted MobileSAM model (shared, read-only after load) and a session's state.
 * Everything the ops read lives in op memory (ops->alloc / upload / linear_create). */
#ifndef MSAM_MODEL_H
#define MSAM_MODEL_H

#include "encoder.h"
#include "ops.h"
#include "weights.h"

#define MSAM_EMB MSAM_EMBED_DIM   /* embedding width */
#define MSAM_GRID MSAM_EMBED_SIDE /* embedding is 64 x 64 */
#define MSAM_PIX (MSAM_GRID * MSAM_GRID)
#define MSAM_IMG MSAM_IMG_SIZE    /* encoder input side */
#define MSAM_LOWRES MSAM_LOW_RES  /* low-resolution mask side */
#define MSAM_HEADS 8       /* decoder attention heads */
#define MSAM_MLP 2048      /* decoder token MLP width */
#define MSAM_MASK_TOKENS 4
#define MSAM_CROSS 128     /* cross-attention width */
#define MSAM_CROSS_DH (MSAM_CROSS / MSAM_HEADS) /* its head width */
/* The cross attentions are folded into their projections (cross_attention.c) while heads x
 * tokens fits in the cross width; longer prompts take the plain path. */
#define MSAM_FOLD_MAX_TOKENS (MSAM_CROSS / MSAM_HEADS)
#define MSAM_FOLD_FLOATS (2 * MSAM_CROSS * MSAM_EMB + MSAM_CROSS) /* two heads*T x 256 operands, one bias */

typedef struct {
    msam_linear *q, *k, *v, *out;
    int inner; /* 256 for self-attention, 128 for the cross attentions */
    /* Cross attentions only, the per-head pieces of the folded form (cross_attention.c), each a
     * linear over one head's 16 channels: token->image uses k_t (q_h -> q_h . Wk_h, 16 -> 256)
     * and v_h (z -> Wv_h z + bv_h, 256 -> 16); image->token uses q_t (k_h -> k_h . Wq_h),
     * bq_t (k_h -> bq_h . k_h, 16 -> 1), o_h (v_h -> Wo_h v_h, 16 -> 256) and bo (op memory). */
    msam_linear *k_t[MSAM_HEADS], *v_h[MSAM_HEADS];
    msam_linear *q_t[MSAM_HEADS], *bq_t[MSAM_HEADS], *o_h[MSAM_HEADS];
    float *bo;
} msam_attn_w;

typedef struct {
    float *g, *b; /* op memory, c floats each */
} msam_norm_w;

typedef struct {
    msam_attn_w self_attn, t2i, i2t;
    msam_norm_w norm1, norm2, norm3, norm4;
    msam_linear *lin1, *lin2;
} msam_twoway_layer;

#define MSAM_PROMPT_TABLE_FLOATS (2 * 128 + 5 * MSAM_EMB)

typedef struct {
    /* The sparse prompt's tables in one block, as ops->prompt_tokens takes them: the random-
     * Fourier matrix (2 x 128), the four point embeddings (4 x 256) and not-a-point (256). Host
     * prompts are encoded on the host from host_tables (the same plain form, then copied in), GPU
     * prompts by the op from tables. */
    float host_tables[MSAM_PROMPT_TABLE_FLOATS];
    float *tables;  /* op memory */
    float *no_mask; /* op memory, 256: broadcast over the image by add_row */
    /* mask downscaling: 2x2 s2 convs as linears over space-to-depth patches */
    msam_linear *md0, *md3, *md6;
    msam_norm_w md1, md4;
    float *dense_pe; /* 64 x 64 x 256 channels-last, op memory */
} msam_prompt_w;

typedef struct {
    float *tokens; /* op memory, (1 + MSAM_MASK_TOKENS) x 256: iou token, mask tokens */
    msam_twoway_layer layers[2];
    msam_attn_w final_attn;
    msam_norm_w norm_final;
    msam_linear *up1, *up2; /* transposed 2x2 s2 convs as linears (output in sub-pixel order) */
    msam_norm_w up_norm;
    /* up1 split through the two layers' norm4 (decoder.c, split_load): op memory [256][256]
     * a1 = W1 diag(g1) C and a10 = a1 diag(g0) C (C the centring matrix), f1 = a1 (b0 + bo1),
     * h = W1 b1 + c; u0 is a10 as a linear with bias a10 bo0. */
    float *a1, *a10, *f1, *h;
    msam_linear *u0;
    msam_linear *hyper[MSAM_MASK_TOKENS][3];
    msam_linear *iou[3];
} msam_decoder_w;

struct msam_model {
    const msam_ops *ops;
    msam_ctx *ctx; /* the loading context (weights are uploaded and freed through it) */
    msam_device device;
    msam_encoder *encoder;
    msam_prompt_w prompt;
    msam_decoder_w decoder;
};

/* Layer 0's image side for one dense prompt (the no-mask embedding, or a mask input): keys0 =
 * embedding + dense prompt, keys0pe = keys0 + the image positional encoding, proj0 = its
 * prompt-independent projections t2i k | t2i v | i2t q (ld 384), u0 = keys0 a10^T + a10 bo0 (the
 * first upscaling product's image share, see decoder.c). The no-mask side is computed when an
 * image is set; a mask input's side in predict. */
typedef struct {
    float *keys0, *keys0pe, *proj0, *u0;
} msam_image_side;

/* The decoder's working buffers, sized once per session for up to MSAM_MAX_PROMPT_POINTS points
 * per prompt set (independent of the prompt batch: prompt sets run one after another through
 * the same buffers), so predict allocates nothing. */
typedef struct {
    float *split_m;     /* 2 x MSAM_CROSS x 256: per-prompt N0 a10^T and N1 a1^T */
    float *rstd;        /* 2 x 4096: the norm4 row scales s0, s1 */
    float *keys, *tmp;  /* 4096 x 256 each */
    float *kp, *vp, *qp, *att; /* 4096 x 128 each */
    float *dense;       /* 4096 x 256 dense prompt from a mask input, then its keys0 */
    float *mask_tmp;    /* 128 x 128 x 16 + 64 x 64 x 64 scratch for mask downscaling */
    float *low;         /* 4 x 256 x 256 low-res logits when the caller does not keep them */
    float *iou;         /* 4 IoU scores (a replayed decode's, copied out after it) */
    float *post;        /* 1024 x 1024 post-processing plane */
    float *tok;         /* token buffers: MSAM_TOK_BUFS x max_tokens x 2048 */
    float *fold;        /* MSAM_FOLD_FLOATS: per-prompt operands of the folded cross attention */
    void *mm_scratch;   /* ops->matmul's packing space for the decoder's largest product */
    void *up_scratch;   /* ops->upscale_masks' per-thread blocks */
    size_t up_scratch_bytes;
    int max_tokens;
} msam_decoder_ws;

struct msam_session {
    const struct msam_model *model;
    msam_ctx *ctx;     /* this session's execution context (stream, scratch, counters) */
    void *enc_ws;
    void *staging;     /* op memory for a host image on backends whose op memory is not host */
    float *input;      /* 1024 x 1024 x 3 normalised, padded */
    float *embedding;  /* 64 x 64 x 256 channels-last */
    int has_image;
    msam_image_side nomask, masked;
    msam_decoder_ws dws;
    float *sparse_host; /* host staging for one prompt set's sparse tokens */
    void *resize_plan;  /* op memory for a device frame's resize plan (off the host only) */
};

/* The int32s of the largest resize plan (host/pillow_resize.h) for an image within the limits
 * resized to at most 1024 a side: per axis out * (2 + ksize) <= 2 * in + 5 * out, plus 4. */
#define MSAM_RESIZE_PLAN_MAX ((size_t)4 + 2 * ((size_t)2 * MSAM_MAX_IMAGE_SIDE + 5 * MSAM_IMG))

/* prompt.c */
msam_status msam_prompt_init(msam_prompt_w *pw, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                             msam_error *err);
void msam_prompt_release(msam_prompt_w *pw, const msam_ops *ops, msam_ctx *ctx);
/* Host sparse embedding of prompt set b: T x 256 (see msam_sparse_token_count). */
void msam_prompt_sparse(const msam_prompt_w *pw, const msam_prompts *p, int b, float *out);
/* Dense embedding of the host 256 x 256 mask into dense (64 x 64 x 256, op memory) using scratch
 * (op memory; the mask is copied into it). */
void msam_prompt_dense_mask(const msam_prompt_w *pw, const msam_ops *ops, msam_ctx *ctx, const float *mask256,
                            float *dense, float *scratch);

/* decoder.c */
msam_status msam_decoder_init(msam_decoder_w *dw, const msam_ops *ops, msam_ctx *ctx,
                              const msam_weight_table *wt, msam_error *err);
void msam_decoder_release(msam_decoder_w *dw, const msam_ops *ops, msam_ctx *ctx);

/* norm helper shared by prompt.c and decoder.c: upload "<prefix>.weight"/".bias" (c floats). */
msam_status msam_norm_load(msam_norm_w *nw, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                           const char *prefix, int c, msam_error *err);
void msam_norm_release(msam_norm_w *nw, const msam_ops *ops, msam_ctx *ctx);
/* linear helper: "<prefix>.weight" [n][k] and optional "<prefix>.bias". */
msam_status msam_linear_load(msam_linear **out, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                             const char *prefix, int n, int k, int has_bias, msam_error *err);

#endif
