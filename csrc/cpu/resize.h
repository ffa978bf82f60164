/* resize.h - the two image resamplers of MobileSAM's pipeline, written to match the reference:
 * Pillow's antialiased bilinear (preprocessing) and torch's bilinear interpolate (masks). */
#ifndef MSAM_CPU_RESIZE_H
#define MSAM_CPU_RESIZE_H

#include <stddef.h>
#include <stdint.h>
#include "msam.h"

/* Bit-exact with PIL.Image.resize((nw, nh), Image.BILINEAR) on an RGB image (Pillow's two-pass
 * separable convolution, support scaled by the downscale factor, 8-bit fixed point rounding).
 * src: h x w pixels, rows src_row_stride bytes apart, pixels src_px_stride bytes apart, 3
 * channels 1 byte apart, reversed when bgr != 0. dst: nh x nw x 3 packed. Returns MSAM_ERR_NOMEM
 * if its temporary buffers cannot be had. */
msam_status msam_resize_rgb8_pillow(const uint8_t *src, int h, int w, ptrdiff_t src_row_stride,
                                    ptrdiff_t src_px_stride, int bgr, uint8_t *dst, int nh, int nw);

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
