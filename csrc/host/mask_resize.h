/* mask_resize.h - the mask resampler of MobileSAM's post-processing on host planes, written to
 * match torch's bilinear interpolate (the CPU backend's resize ops, and the mask generator). */
#ifndef MSAM_HOST_MASK_RESIZE_H
#define MSAM_HOST_MASK_RESIZE_H

#include <stddef.h>
#include <stdint.h>
#include "msam.h"

/* Matches torch.nn.functional.interpolate(mode="bilinear", align_corners=False, no antialias)
 * for one float plane: src sh x sw (rows src_ld floats apart) -> dst dh x dw (rows dst_ld apart).
 * Only the top-left rows x cols of the output grid are written when crop_h/crop_w are smaller
 * than dh/dw (used to evaluate a resize followed by a crop without computing what is cropped). */
void msam_resize_bilinear_f32(const float *src, int sh, int sw, ptrdiff_t src_ld, float *dst,
                              int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);

/* The same resize compared with zero: dst[y * dst_ld + x] = 1 where the float result of
 * msam_resize_bilinear_f32 would be > 0.0f, else 0 (bit-identical, without the float plane). */
void msam_resize_bilinear_mask(const float *src, int sh, int sw, ptrdiff_t src_ld, uint8_t *dst,
                               int dh, int dw, ptrdiff_t dst_ld, int crop_h, int crop_w);

#endif
