/* encoder.h - the TinyViT-5M image encoder of MobileSAM vit_t (1024x1024x3 -> 64x64x256).
 * Weights are converted at init; forward uses only the caller's workspace (no allocation). */
#ifndef MSAM_ENCODER_H
#define MSAM_ENCODER_H

#include "ops.h"
#include "weights.h"

typedef struct msam_encoder msam_encoder; /* defined in encoder.c */

/* Converts every image_encoder.* weight (BatchNorm folded, layouts packed). */
msam_status msam_encoder_create(const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                                msam_encoder **out, msam_error *err);
void msam_encoder_free(msam_encoder *e);

/* Bytes of workspace one forward pass needs (allocated once per session with ops->alloc). */
size_t msam_encoder_workspace_bytes(const msam_encoder *e);

/* x: normalised, zero-padded input, 1024 x 1024 x 3 channels-last.
 * out: the image embedding, 64 x 64 x 256 channels-last.
 * stage_fn (may be NULL) sees "patch_embed" (256x256x64), "layers.0" (128x128x128),
 * "layers.1" (64x64x160), "layers.2" (64x64x320), "layers.3" (64x64x320), "neck" (64x64x256). */
msam_status msam_encoder_forward(const msam_encoder *e, msam_ctx *ctx, const float *x, float *out,
                                 void *workspace, msam_stage_fn stage_fn, void *stage_user,
                                 msam_error *err);

#endif
