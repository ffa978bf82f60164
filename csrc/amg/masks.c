/* masks.c - the generator's per-batch mask work: upscale the low-res logits of the masks that
 * passed the IoU filter, stability score, threshold, box, crop-edge filter and RLE, in parallel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "msam_amg.h"
#include "mask_resize.h" /* host/: the torch-exact post-processing resize the predictor uses */

#define LOWRES 256
#define IMG 1024

float msam_stability_score(const float *logits, int h, int w, ptrdiff_t ld, float threshold,
                           float offset) {
    const float hi = threshold + offset, lo = threshold - offset;
    int64_t inter = 0, uni = 0;
    for (int y = 0; y < h; y++) {
        const float *r = logits + y * ld;
        int32_t a = 0, b = 0;
        for (int x = 0; x < w; x++) {
            a += r[x] > hi;
            b += r[x] > lo;
        }
        inter += a;
        uni += b;
    }
    return (float)inter / (float)uni;
}

void msam_amg_masks_free(msam_amg_masks *m) {
    if (!m) return;
    if (m->rle)
        for (int i = 0; i < m->n; i++) msam_rle_free(&m->rle[i]);
    free(m->index);
    free(m->stability);
    free(m->box);
    free(m->rle);
    memset(m, 0, sizeof *m);
}

/* |a - b| <= atol, as torch.isclose(rtol=0) on float32 values */
static int near(float a, float b, float atol) { return fabsf(a - b) <= atol; }

/* One mask: 1 if it is kept (stability, box and rle filled), 0 if filtered out, -1 on NOMEM. */
static int one_mask(const float *low, const msam_amg_crop *c, float *mid, float *plane,
                    uint8_t *bin, float *stability, int64_t box[4], msam_rle *rle) {
    const int ch = c->crop_y1 - c->crop_y0, cw = c->crop_x1 - c->crop_x0;
    msam_resize_bilinear_f32(low, LOWRES, LOWRES, LOWRES, mid, IMG, IMG, c->input_w, c->input_h,
                             c->input_w);
    msam_resize_bilinear_f32(mid, c->input_h, c->input_w, c->input_w, plane, ch, cw, cw, ch, cw);
    const float hi = c->mask_threshold + c->stability_offset;
    const float lo = c->mask_threshold - c->stability_offset, t = c->mask_threshold;
    int64_t inter = 0, uni = 0;
    for (int y = 0; y < ch; y++) {
        const float *r = plane + (size_t)y * cw;
        uint8_t *b = bin + (size_t)y * cw;
        int32_t a = 0, u = 0;
        for (int x = 0; x < cw; x++) {
            a += r[x] > hi;
            u += r[x] > lo;
            b[x] = r[x] > t;
        }
        inter += a;
        uni += u;
    }
    *stability = (float)inter / (float)uni;
    if (c->stability_thresh > 0.0f && !(*stability >= c->stability_thresh)) return 0;
    msam_mask_box(bin, ch, cw, cw, box);
    const float crop[4] = {(float)c->crop_x0, (float)c->crop_y0, (float)c->crop_x1, (float)c->crop_y1};
    const float image[4] = {0.0f, 0.0f, (float)c->orig_w, (float)c->orig_h};
    for (int k = 0; k < 4; k++) {
        box[k] += k & 1 ? c->crop_y0 : c->crop_x0;
        const float v = (float)box[k];
        if (near(v, crop[k], c->edge_atol) && !near(v, image[k], c->edge_atol)) return 0;
    }
    return msam_rle_encode(bin, ch, cw, cw, c->crop_x0, c->crop_y0, c->orig_h, c->orig_w, rle,
                           NULL) == MSAM_OK ? 1 : -1;
}

msam_status msam_amg_process_masks(const float *low_res, int n, const msam_amg_crop *c,
                                   msam_amg_masks *out, msam_error *err) {
    if (!out || !c || n < 0 || (n > 0 && !low_res)) {
        if (err) snprintf(err->msg, sizeof err->msg, "amg_process_masks: bad arguments");
        return MSAM_ERR_ARG;
    }
    memset(out, 0, sizeof *out);
    if (c->orig_h < 1 || c->orig_w < 1 || c->crop_x0 < 0 || c->crop_y0 < 0 ||
        c->crop_x1 <= c->crop_x0 || c->crop_y1 <= c->crop_y0 || c->crop_x1 > c->orig_w ||
        c->crop_y1 > c->orig_h || (int64_t)c->orig_h * c->orig_w > INT32_MAX) {
        if (err)
            snprintf(err->msg, sizeof err->msg,
                     "crop_box must satisfy 0 <= x0 < x1 <= %d and 0 <= y0 < y1 <= %d (the image "
                     "size, < 2^31 pixels), got (%d, %d, %d, %d)",
                     c->orig_w, c->orig_h, c->crop_x0, c->crop_y0, c->crop_x1, c->crop_y1);
        return MSAM_ERR_ARG;
    }
    if (c->input_h < 1 || c->input_w < 1 || c->input_h > IMG || c->input_w > IMG) {
        if (err)
            snprintf(err->msg, sizeof err->msg, "input_size must be in 1..%d, got (%d, %d)", IMG,
                     c->input_h, c->input_w);
        return MSAM_ERR_ARG;
    }
    if (n == 0) return MSAM_OK;
    int8_t *status = calloc((size_t)n, 1);
    float *stab = malloc((size_t)n * sizeof *stab);
    int64_t *box = malloc((size_t)n * 4 * sizeof *box);
    msam_rle *rle = calloc((size_t)n, sizeof *rle);
    int failed = !status || !stab || !box || !rle;
    const int ch = c->crop_y1 - c->crop_y0, cw = c->crop_x1 - c->crop_x0;
    const size_t mid_n = (size_t)c->input_h * c->input_w, plane_n = (size_t)ch * cw;
    int nt = msam_kernel_threads();
    if (nt < 1) nt = 1;
    if (nt > n) nt = n;
    if (!failed) {
#pragma omp parallel num_threads(nt)
        {
            float *mid = malloc(mid_n * sizeof *mid);
            float *plane = malloc(plane_n * sizeof *plane);
            uint8_t *bin = malloc(plane_n);
            int mine_failed = !mid || !plane || !bin;
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < n; i++) {
                if (mine_failed) {
                    status[i] = -1;
                    continue;
                }
                status[i] = (int8_t)one_mask(low_res + (size_t)i * LOWRES * LOWRES, c, mid, plane,
                                             bin, &stab[i], box + 4 * (size_t)i, &rle[i]);
            }
            free(mid);
            free(plane);
            free(bin);
        }
        for (int i = 0; i < n; i++) failed |= status[i] < 0;
    }
    if (!failed) {
        int k = 0;
        for (int i = 0; i < n; i++) k += status[i] == 1;
        out->index = malloc((size_t)(k ? k : 1) * sizeof *out->index);
        out->stability = malloc((size_t)(k ? k : 1) * sizeof *out->stability);
        out->box = malloc((size_t)(k ? k : 1) * 4 * sizeof *out->box);
        out->rle = calloc((size_t)(k ? k : 1), sizeof *out->rle);
        failed = !out->index || !out->stability || !out->box || !out->rle;
        if (!failed) {
            for (int i = 0; i < n; i++) {
                if (status[i] != 1) continue;
                const int j = out->n++;
                out->index[j] = i;
                out->stability[j] = stab[i];
                memcpy(out->box + 4 * (size_t)j, box + 4 * (size_t)i, 4 * sizeof *box);
                out->rle[j] = rle[i]; /* moved */
                memset(&rle[i], 0, sizeof rle[i]);
            }
        }
    }
    if (rle)
        for (int i = 0; i < n; i++) msam_rle_free(&rle[i]);
    free(status);
    free(stab);
    free(box);
    free(rle);
    if (failed) {
        msam_amg_masks_free(out);
        if (err) snprintf(err->msg, sizeof err->msg, "amg_process_masks: out of memory");
        return MSAM_ERR_NOMEM;
    }
    return MSAM_OK;
}
