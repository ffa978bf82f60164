/* decoder.h - the mask decoder's entry points used by predict.c.
 * One prompt set at a time through the session's fixed workspace. */
#ifndef MSAM_DECODER_H
#define MSAM_DECODER_H

#include "model.h"

/* Floats of token workspace for up to max_tokens tokens. */
size_t msam_decoder_tok_floats(int max_tokens);
/* Fill side's keys0pe, proj0 and u0 from its keys0 (layer 0's prompt-independent image side). */
void msam_decoder_image_side(const struct msam_model *m, msam_ctx *ctx, const msam_image_side *side);
/* Where a prompt set's Ts x 256 sparse tokens go (op memory) before msam_decode_one reads them:
 * predict copies them in ahead of the op sequence it may have a backend replay. */
float *msam_decoder_sparse_slot(msam_decoder_ws *ws);
/* Decode one prompt set (its sparse tokens in their slot) against an image side. Writes the
 * selected masks' IoU to iou (op memory, n floats) and their low-res logits to low (op memory,
 * planar, packed) and returns how many it made: all n, or with min_iou (host-memory backends
 * only: it reads the IoU back) only those whose IoU is above *min_iou, the others never upscaled
 * (segment everything drops them anyway); kept (NULL or n flags) says which. Without min_iou
 * its ops depend only on (Ts, multimask, side) and op memory, so a backend may replay them. */
int msam_decode_one(const struct msam_model *m, msam_ctx *ctx, msam_decoder_ws *ws, const msam_image_side *side,
                    int Ts, int multimask, const float *min_iou, uint8_t *kept, float *low, float *iou);

/* cross_attention.c, for T <= MSAM_FOLD_MAX_TOKENS (ws->fold, ws->att, ws->qp, ws->mm_scratch are used;
 * image->token leaves its probabilities in S, 4096 x heads*T, and with split_a (256 x 256, op
 * memory) also split_m = N split_a^T for the value rows N = Wo_h v_hj).
 * Token->image: att (T x 128, before out_proj) from q = q_proj(tokens + PE) (T x 128, rows 128
 * apart) over the image x (4096 x 256) and xpe = x + PE. Image->token: y = residual + out_proj
 * of the attention from image queries (q_proj(xpe), or q_img, rows ldq_img apart, when they are
 * already projected) to token keys k and values v (T x 128 projections); y may be residual. */
void msam_t2i_folded(const msam_ops *ops, msam_ctx *ctx, const msam_attn_w *a, const float *q, int T,
                     const float *xpe, const float *x, float *att, msam_decoder_ws *ws);
void msam_i2t_folded(const msam_ops *ops, msam_ctx *ctx, const msam_attn_w *a, const float *k, const float *v,
                     int T, const float *xpe, const float *q_img, ptrdiff_t ldq_img,
                     const float *residual, float *y, float *S, const float *split_a, float *split_m,
                     msam_decoder_ws *ws);

#endif
