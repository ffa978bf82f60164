/* msam_amg.h - the C API of "segment everything" (MobileSAM's automatic mask generator): the
 * per-mask work between the decoder and the output records, written once, no Python. */
#ifndef MSAM_AMG_H
#define MSAM_AMG_H

#include <stddef.h>
#include <stdint.h>
#include "msam.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Run-length encodings follow the COCO "uncompressed RLE": the mask read in column-major
 * (Fortran) order, counts alternate runs of 0 and 1 starting with 0 (a leading 0 count when the
 * first pixel is 1). A mask of H*W pixels has at most H*W + 1 counts. */
typedef struct {
    uint32_t *counts;
    size_t n, cap;
} msam_rle;

void msam_rle_free(msam_rle *r);

/* Encode an h x w row-major 0/1 mask (rows ld bytes apart) placed at (x0, y0) inside an
 * all-zero full_h x full_w image (x0 = y0 = 0 and full = h x w for a whole-image mask). */
msam_status msam_rle_encode(const uint8_t *mask, int h, int w, ptrdiff_t ld, int x0, int y0,
                            int full_h, int full_w, msam_rle *out, msam_error *err);

/* Decode counts into an h x w mask: row-major (rows w bytes apart) when transposed == 0, else
 * the column-major buffer the counts walk (w rows of h). The counts must sum to h * w. */
msam_status msam_rle_decode(const uint32_t *counts, size_t n, int h, int w, int transposed,
                            uint8_t *mask, msam_error *err);

/* The tight box (x0, y0, x1, y1, inclusive pixel indices) of the nonzero pixels of an h x w
 * row-major mask; 0, 0, 0, 0 when it is empty (as MobileSAM's batched_mask_to_box). */
void msam_mask_box(const uint8_t *mask, int h, int w, ptrdiff_t ld, int64_t box[4]);

/* The stability score of a logit plane: the number of values > threshold + offset divided by
 * the number > threshold - offset, both limits and the quotient in float32 (NaN for 0 / 0). */
float msam_stability_score(const float *logits, int h, int w, ptrdiff_t ld, float threshold,
                           float offset);

/* Non-maximum suppression as torchvision.ops.nms on float32 boxes (x0, y0, x1, y1): visit boxes
 * by descending score, ties in index order; drop every later box whose IoU with a kept one is
 * > iou_threshold. keep (room for n) receives the kept indices in visiting order. */
msam_status msam_nms(const float *boxes, const float *scores, int n, double iou_threshold,
                     int64_t *keep, int *n_keep, msam_error *err);

/* MobileSAM's remove_small_regions on an h x w row-major 0/1 mask, in place, with OpenCV's
 * 8-connectivity: islands == 0 fills holes (connected components of the background, border
 * ones included) smaller than area_thresh; islands != 0 removes foreground components smaller
 * than it, keeping the largest one (the first in raster order on ties) if all are small.
 * *changed = 1 when some component was below the threshold. */
msam_status msam_remove_small_regions(uint8_t *mask, int h, int w, double area_thresh, int islands,
                                      int *changed, msam_error *err);

/* One crop of the generator: the frame its masks are decoded in. */
typedef struct {
    int orig_h, orig_w;                      /* the full image */
    int crop_x0, crop_y0, crop_x1, crop_y1;  /* the crop inside it (x1, y1 exclusive) */
    int input_h, input_w;                    /* the crop resized so its long side is 1024 */
    float mask_threshold;                    /* 0: the model's mask threshold */
    float stability_offset;                  /* stability_score_offset */
    float stability_thresh;                  /* masks below it are dropped; <= 0: none */
    float edge_atol;                         /* 20: the crop-edge tolerance in pixels */
} msam_amg_crop;

/* The masks of a batch that survive, in input order. */
typedef struct {
    int n;              /* masks kept */
    int *index;         /* which input mask each one is */
    float *stability;   /* its stability score */
    int64_t *box;       /* 4 per mask: x0, y0, x1, y1 (inclusive) in the full image */
    msam_rle *rle;      /* its RLE over the full image */
} msam_amg_masks;

void msam_amg_masks_free(msam_amg_masks *m);

/* The generator's per-batch work on n low-resolution mask logits (n x 256 x 256, packed):
 * upscale each as Sam.postprocess_masks does (to the crop's size), stability score and filter,
 * threshold, box, drop boxes near a crop edge that is not an image edge, RLE over the full image.
 * Masks run in parallel (msam_get_num_threads()); each thread holds one crop-sized plane, so
 * memory stays bounded whatever n is. Call without the GIL. */
msam_status msam_amg_process_masks(const float *low_res, int n, const msam_amg_crop *crop,
                                   msam_amg_masks *out, msam_error *err);

#ifdef __cplusplus
}
#endif
#endif
