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

/* The same resize as a plan for a kernel that computes each output pixel on its own (the CUDA
 * backend's resize_rgb8; csrc/ref/resize_ref.c is its plain form): int32s
 *   [0] horizontal ksize hk, [1] vertical ksize vk, [2] 1 when the vertical pass runs first, [3] 0,
 *   then horizontal taps over the nw outputs: lo[nw], n[nw], k[nw * hk] (22-bit fixed point),
 *   then vertical taps over the nh outputs:   lo[nh], n[nh], k[nh * vk].
 * An axis whose size is unchanged gets identity taps (one tap of 1.0), which reproduce Pillow
 * skipping that pass; each pass rounds to 8 bits as Pillow's does. msam_resize_plan_len gives
 * the count (0 for bad sizes); msam_resize_plan writes it and returns it, or 0 when cap is too
 * small or memory ran out. */
size_t msam_resize_plan_len(int h, int w, int nh, int nw);
size_t msam_resize_plan(int h, int w, int nh, int nw, int32_t *plan, size_t cap);

#endif
