/* pillow_resize.h - the host-only Pillow-exact resize of the preprocessing (the public
 * msam_resize_rgb8 checks its arguments and calls it). */
#ifndef MSAM_HOST_PILLOW_RESIZE_H
#define MSAM_HOST_PILLOW_RESIZE_H

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

#endif
