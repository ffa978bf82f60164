/* cross_attention.c - the mask decoder's cross attentions between T prompt tokens and the 4096
 * image positions, with the image-side projections folded into per-prompt token operands.
 *
 * The plain form projects the whole image (4096 x 256 -> 128, per use) although only T (~7) tokens
 * meet it. Per head h (16 channels), with x_i an image row, p_i its positional encoding and W the
 * [out][in] weights:
 *   token->image: s_hj,i = (q_hj . Wk_h (x_i + p_i) + q_hj . bk_h) / 4; the second term is the same
 *     for every key i, so softmax drops it. out_hj = sum_i P_hj,i (Wv_h x_i + bv_h)
 *     = Wv_h (sum_i P_hj,i x_i) + bv_h, since the P row sums to 1.
 *   image->token: s_i,hj = ((x_i + p_i) . Wq_h^T k_hj + bq_h . k_hj) / 4, and the output
 *     projection sum_h Wo_h (sum_j P_i,hj v_hj) + bo = sum_hj P_i,hj (Wo_h v_hj) + bo.
 * Each becomes two image-sized products with heads*T <= 128 columns instead of two or three with
 * 128 or 256, and no per-head attention loop over the image. It is the same function in exact
 * arithmetic; in fp32 the sums are grouped differently (checked against the reference).
 * Layer 0's image is the same for every prompt, so its image queries q_proj(x + p) are computed
 * once per image (decoder.c) and its image->token scores come from them directly
 * (attention_probs), leaving one image-sized product. */
#include "decoder.h"

void msam_t2i_folded(const msam_ops *ops, msam_ctx *ctx, const msam_attn_w *a, const float *q, int T,
                     const float *xpe, const float *x, float *att, msam_decoder_ws *ws) {
    const int HT = MSAM_HEADS * T;
    float *A = ws->fold;                       /* HT x 256: q_hj . Wk_h */
    float *Z = ws->fold + MSAM_CROSS * MSAM_EMB; /* HT x 256: sum_i P_hj,i x_i */
    float *S = ws->att;                        /* 4096 x HT scores */
    float *P = ws->qp;                         /* HT x 4096 scores, then probabilities */
    void *scr = ws->mm_scratch;
    for (int h = 0; h < MSAM_HEADS; h++)
        ops->linear(ctx, A + (size_t)h * T * MSAM_EMB, MSAM_EMB, q + h * MSAM_CROSS_DH, MSAM_CROSS, T, a->k_t[h],
                    MSAM_ACT_NONE, NULL, 0);
    /* image-major product (the image is read in place, only A is packed), then turned so each
     * softmax row and the next product's rows are contiguous */
    ops->matmul(ctx, S, HT, xpe, MSAM_EMB, MSAM_PIX, A, MSAM_EMB, 1, HT, MSAM_EMB, NULL, NULL, 0, scr);
    ops->transpose(ctx, P, MSAM_PIX, S, HT, MSAM_PIX, HT);
    ops->softmax(ctx, P, HT, MSAM_PIX, MSAM_PIX, 0.25f); /* 1 / sqrt(16), exact */
    ops->matmul(ctx, Z, MSAM_EMB, P, MSAM_PIX, HT, x, 1, MSAM_EMB, MSAM_EMB, MSAM_PIX, NULL, NULL, 0, scr);
    for (int h = 0; h < MSAM_HEADS; h++)
        ops->linear(ctx, att + h * MSAM_CROSS_DH, MSAM_CROSS, Z + (size_t)h * T * MSAM_EMB, MSAM_EMB, T, a->v_h[h],
                    MSAM_ACT_NONE, NULL, 0);
}

void msam_i2t_folded(const msam_ops *ops, msam_ctx *ctx, const msam_attn_w *a, const float *k, const float *v,
                     int T, const float *xpe, const float *q_img, ptrdiff_t ldq_img,
                     const float *residual, float *y, float *S, const float *split_a, float *split_m,
                     msam_decoder_ws *ws) {
    const int HT = MSAM_HEADS * T;
    float *B = ws->fold;                         /* HT x 256: Wq_h^T k_hj */
    float *N = ws->fold + MSAM_CROSS * MSAM_EMB;   /* HT x 256: Wo_h v_hj */
    float *c = ws->fold + 2 * MSAM_CROSS * MSAM_EMB; /* HT: bq_h . k_hj */
    void *scr = ws->mm_scratch;
    for (int h = 0; h < MSAM_HEADS; h++) {
        const float *kh = k + h * MSAM_CROSS_DH, *vh = v + h * MSAM_CROSS_DH;
        if (!q_img) {
            ops->linear(ctx, B + (size_t)h * T * MSAM_EMB, MSAM_EMB, kh, MSAM_CROSS, T, a->q_t[h], MSAM_ACT_NONE, NULL, 0);
            ops->linear(ctx, c + h * T, 1, kh, MSAM_CROSS, T, a->bq_t[h], MSAM_ACT_NONE, NULL, 0);
        }
        ops->linear(ctx, N + (size_t)h * T * MSAM_EMB, MSAM_EMB, vh, MSAM_CROSS, T, a->o_h[h], MSAM_ACT_NONE, NULL, 0);
    }
    if (q_img) {
        /* the image queries are given: 16-channel scores per head, no image-sized product */
        ops->attention_probs(ctx, S, HT, q_img, ldq_img, k, MSAM_CROSS, MSAM_PIX, T, MSAM_HEADS, MSAM_CROSS_DH);
    } else {
        ops->matmul(ctx, S, HT, xpe, MSAM_EMB, MSAM_PIX, B, MSAM_EMB, 1, HT, MSAM_EMB, c, NULL, 0, scr);
        ops->softmax(ctx, S, MSAM_PIX * MSAM_HEADS, T, T, 0.25f);
    }
    ops->matmul(ctx, y, MSAM_EMB, S, HT, MSAM_PIX, N, 1, MSAM_EMB, MSAM_EMB, HT, a->bo, residual, MSAM_EMB, scr);
    if (split_a) /* the value rows through the split up1 (decoder.c): split_m = N split_a^T */
        ops->matmul(ctx, split_m, MSAM_EMB, N, MSAM_EMB, HT, split_a, MSAM_EMB, 1, MSAM_EMB, MSAM_EMB, NULL, NULL, 0, scr);
}
