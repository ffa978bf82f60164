/* decoder.h - the mask decoder's entry points used by predict.c.
 * One prompt set at a time through the session's fixed workspace. */
#ifndef MSAM_DECODER_H
#define MSAM_DECODER_H

#include "model.h"

/* Floats of token workspace for up to max_tokens tokens. */
size_t msam_decoder_tok_floats(int max_tokens);
/* Fill ws->proj0 from ws->keys0 (layer 0's prompt-independent image projections). */
void msam_decoder_proj0(const struct msam_model *m, msam_decoder_ws *ws);
/* Decode one prompt set: sparse_host Ts x 256; ws->keys0/proj0 ready. Writes the selected
 * masks' low-res logits to ws->low (planar n x 256 x 256) and their IoU to iou_host. */
void msam_decode_one(const struct msam_model *m, msam_decoder_ws *ws, const float *sparse_host,
                     int Ts, int multimask, float *iou_host);

#endif
