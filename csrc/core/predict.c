/* predict.c - the session's public entry points: image in (normalise, pad, encode), embedding
 * in/out, prompt encoding and predict (decoder per prompt set, then mask post-processing). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/resize.h"
#include "decoder.h"
#include "model.h"

static const float PIXEL_MEAN[3] = {123.675f, 116.28f, 103.53f};
static const float PIXEL_STD[3] = {58.395f, 57.12f, 57.375f};

int msam_num_masks(int multimask) { return multimask ? 3 : 1; }

static msam_status check_session(const msam_session *s, msam_error *err) {
    if (!s) return msam_fail(err, MSAM_ERR_ARG, "session must not be NULL");
    return MSAM_OK;
}

static msam_status check_input_size(int h, int w, msam_error *err) {
    if (h < 1 || w < 1 || h > MSAM_IMG || w > MSAM_IMG || (h != MSAM_IMG && w != MSAM_IMG))
        return msam_fail(err, MSAM_ERR_ARG,
                         "image must have its long side equal to %d and both sides in 1..%d, got %dx%d",
                         MSAM_IMG, MSAM_IMG, h, w);
    return MSAM_OK;
}

static msam_status encode(msam_session *s, msam_stage_fn fn, void *user, msam_error *err) {
    s->has_image = 0;
    s->proj0_valid = 0;
    msam_status st = msam_encoder_forward(s->model->encoder, s->input, s->embedding, s->enc_ws,
                                          fn, user, err);
    if (st) return st;
    s->has_image = 1;
    return MSAM_OK;
}

/* Sam.preprocess: (x - mean) / std per channel, zero padding bottom/right to 1024 x 1024. */
msam_status msam_session_set_image_u8(msam_session *s, const uint8_t *rgb, int h, int w,
                                      msam_stage_fn stage_fn, void *stage_user, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!rgb) return msam_fail(err, MSAM_ERR_ARG, "image must not be NULL");
    if ((st = check_input_size(h, w, err))) return st;
    float *x = s->input;
    for (int y = 0; y < MSAM_IMG; y++)
        for (int xx = 0; xx < MSAM_IMG; xx++)
            for (int c = 0; c < 3; c++) {
                size_t o = ((size_t)y * MSAM_IMG + xx) * 3 + c;
                x[o] = (y < h && xx < w)
                           ? ((float)rgb[((size_t)y * w + xx) * 3 + c] - PIXEL_MEAN[c]) / PIXEL_STD[c]
                           : 0.0f;
            }
    return encode(s, stage_fn, stage_user, err);
}

msam_status msam_session_set_image_f32(msam_session *s, const float *chw, int h, int w,
                                       ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x,
                                       msam_stage_fn stage_fn, void *stage_user, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!chw) return msam_fail(err, MSAM_ERR_ARG, "transformed_image must not be NULL");
    if ((st = check_input_size(h, w, err))) return st;
    float *x = s->input;
    for (int y = 0; y < MSAM_IMG; y++)
        for (int xx = 0; xx < MSAM_IMG; xx++)
            for (int c = 0; c < 3; c++) {
                float v = 0.0f;
                if (y < h && xx < w) {
                    v = chw[c * stride_c + y * stride_y + xx * stride_x];
                    if (!isfinite(v))
                        return msam_fail(err, MSAM_ERR_ARG,
                                         "transformed_image has a non-finite value at (%d, %d, %d)", c, y, xx);
                    v = (v - PIXEL_MEAN[c]) / PIXEL_STD[c];
                }
                x[((size_t)y * MSAM_IMG + xx) * 3 + c] = v;
            }
    return encode(s, stage_fn, stage_user, err);
}

msam_status msam_session_set_embedding(msam_session *s, const float *chw, ptrdiff_t stride_c,
                                       ptrdiff_t stride_y, ptrdiff_t stride_x, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!chw) return msam_fail(err, MSAM_ERR_ARG, "embedding must not be NULL");
    /* validate everything first so a rejected embedding leaves the current image intact */
    for (int c = 0; c < MSAM_EMB; c++)
        for (int y = 0; y < MSAM_GRID; y++)
            for (int x = 0; x < MSAM_GRID; x++)
                if (!isfinite(chw[c * stride_c + y * stride_y + x * stride_x]))
                    return msam_fail(err, MSAM_ERR_ARG, "embedding has a non-finite value at (%d, %d, %d)", c, y, x);
    s->has_image = 0;
    s->proj0_valid = 0;
    float *e = s->embedding; /* channels-last */
    for (int c = 0; c < MSAM_EMB; c++)
        for (int y = 0; y < MSAM_GRID; y++)
            for (int x = 0; x < MSAM_GRID; x++)
                e[((size_t)y * MSAM_GRID + x) * MSAM_EMB + c] = chw[c * stride_c + y * stride_y + x * stride_x];
    s->has_image = 1;
    return MSAM_OK;
}

msam_status msam_session_get_embedding(const msam_session *s, float *out, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!out) return msam_fail(err, MSAM_ERR_ARG, "out must not be NULL");
    if (!s->has_image) return msam_fail(err, MSAM_ERR_STATE, "An image must be set with .set_image(...) to generate an embedding.");
    const float *e = s->embedding;
    for (int y = 0; y < MSAM_GRID; y++)
        for (int x = 0; x < MSAM_GRID; x++)
            for (int c = 0; c < MSAM_EMB; c++)
                out[((size_t)c * MSAM_GRID + y) * MSAM_GRID + x] = e[((size_t)y * MSAM_GRID + x) * MSAM_EMB + c];
    return MSAM_OK;
}

static msam_status check_prompts(const msam_prompts *p, msam_error *err) {
    if (!p) return msam_fail(err, MSAM_ERR_ARG, "prompts must not be NULL");
    if (p->batch < 1) return msam_fail(err, MSAM_ERR_ARG, "the prompt batch must be >= 1, got %d", p->batch);
    if (p->n_points < 0) return msam_fail(err, MSAM_ERR_ARG, "n_points must be >= 0");
    if (p->n_points > 0) {
        if (!p->coords || !p->labels)
            return msam_fail(err, MSAM_ERR_ARG, "point_coords and point_labels must both be given");
        size_t n = (size_t)p->batch * p->n_points;
        for (size_t i = 0; i < n; i++) {
            if (p->labels[i] < -1 || p->labels[i] > 1)
                return msam_fail(err, MSAM_ERR_ARG, "point_labels must be -1, 0 or 1, got %d", (int)p->labels[i]);
            if (!isfinite(p->coords[2 * i]) || !isfinite(p->coords[2 * i + 1]))
                return msam_fail(err, MSAM_ERR_ARG, "point_coords must be finite");
        }
    }
    if (p->boxes)
        for (size_t i = 0; i < (size_t)p->batch * 4; i++)
            if (!isfinite(p->boxes[i])) return msam_fail(err, MSAM_ERR_ARG, "box must be finite");
    if (p->mask_input) {
        if (p->mask_batch != 1 && p->mask_batch != p->batch)
            return msam_fail(err, MSAM_ERR_ARG, "mask_input batch must be 1 or %d, got %d", p->batch, p->mask_batch);
        size_t n = (size_t)p->mask_batch * MSAM_LOWRES * MSAM_LOWRES;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(p->mask_input[i])) return msam_fail(err, MSAM_ERR_ARG, "mask_input must be finite");
    }
    return MSAM_OK;
}

/* keys0 = embedding + dense prompt of mask m (or the learned no-mask embedding). */
static void prepare_keys0(msam_session *s, const msam_prompts *p, int mask_index) {
    const msam_model *m = s->model;
    const msam_ops *ops = m->ops;
    msam_decoder_ws *w = &s->dws;
    if (p->mask_input) {
        msam_prompt_dense_mask(&m->prompt, ops, p->mask_input + (size_t)mask_index * 65536, w->dense, w->mask_tmp);
        ops->add(w->keys0, s->embedding, w->dense, (size_t)MSAM_PIX * MSAM_EMB);
    } else {
        /* broadcast the no-mask embedding through a 64x64 plane of it */
        for (int i = 0; i < MSAM_PIX; i++)
            ops->copy_in(w->dense + (size_t)i * MSAM_EMB, m->prompt.no_mask, MSAM_EMB);
        ops->add(w->keys0, s->embedding, w->dense, (size_t)MSAM_PIX * MSAM_EMB);
    }
    msam_decoder_proj0(m, w);
}

msam_status msam_encode_prompts(const msam_session *s, const msam_prompts *p, float *sparse,
                                float *dense_hwc, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err)) || (st = check_prompts(p, err))) return st;
    const msam_model *m = s->model;
    int T = msam_sparse_token_count(p);
    if (sparse && T > 0)
        for (int b = 0; b < p->batch; b++) msam_prompt_sparse(&m->prompt, p, b, sparse + (size_t)b * T * MSAM_EMB);
    if (dense_hwc) {
        if (p->mask_input) {
            /* the session's scratch is not touched: use a private one */
            const msam_ops *ops = m->ops;
            float *scratch = ops->alloc(sizeof(float) * 5 * 65536);
            float *dense = ops->alloc(sizeof(float) * MSAM_PIX * MSAM_EMB);
            if (!scratch || !dense) {
                ops->release(scratch);
                ops->release(dense);
                return msam_fail(err, MSAM_ERR_NOMEM, "out of memory encoding mask_input");
            }
            for (int b = 0; b < p->mask_batch; b++) {
                msam_prompt_dense_mask(&m->prompt, ops, p->mask_input + (size_t)b * 65536, dense, scratch);
                ops->copy_out(dense_hwc + (size_t)b * MSAM_PIX * MSAM_EMB, dense, (size_t)MSAM_PIX * MSAM_EMB);
            }
            ops->release(scratch);
            ops->release(dense);
        } else {
            for (int i = 0; i < MSAM_PIX; i++)
                memcpy(dense_hwc + (size_t)i * MSAM_EMB, m->prompt.no_mask, sizeof(float) * MSAM_EMB);
        }
    }
    return MSAM_OK;
}

/* postprocess_masks: bilinear 256 -> 1024, crop to the input size, bilinear to the original
 * size; the crop is folded into the first resize by computing only the rows/cols kept, and
 * the threshold into the second (masks are written as bytes, with no float plane between). */
static void postprocess(msam_session *s, const float *low, const msam_outputs *o, void *dst) {
    const msam_ops *ops = s->model->ops;
    const int ih = o->input_h, iw = o->input_w;
    ops->resize_bilinear(low, MSAM_LOWRES, MSAM_LOWRES, MSAM_LOWRES, s->dws.post, MSAM_IMG, MSAM_IMG, iw, ih, iw);
    if (o->return_logits)
        ops->resize_bilinear(s->dws.post, ih, iw, iw, (float *)dst, o->orig_h, o->orig_w, o->orig_w, o->orig_h, o->orig_w);
    else
        ops->resize_bilinear_mask(s->dws.post, ih, iw, iw, (uint8_t *)dst, o->orig_h, o->orig_w, o->orig_w, o->orig_h, o->orig_w);
}

msam_status msam_predict(msam_session *s, const msam_prompts *p, msam_outputs *o, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err)) || (st = check_prompts(p, err))) return st;
    if (!s->has_image) return msam_fail(err, MSAM_ERR_STATE, "An image must be set with .set_image(...) before mask prediction.");
    if (!o || !o->iou) return msam_fail(err, MSAM_ERR_ARG, "outputs must not be NULL");
    if (o->orig_h < 1 || o->orig_w < 1)
        return msam_fail(err, MSAM_ERR_ARG, "original size must be positive, got %dx%d", o->orig_h, o->orig_w);
    if (o->input_h < 1 || o->input_w < 1 || o->input_h > MSAM_IMG || o->input_w > MSAM_IMG)
        return msam_fail(err, MSAM_ERR_ARG, "input size must be within 1..%d, got %dx%d", MSAM_IMG, o->input_h, o->input_w);
    const int Ts = msam_sparse_token_count(p);
    if ((st = msam_session_reserve_tokens(s, 1 + MSAM_MASK_TOKENS + Ts, err))) return st;
    const size_t plane = (size_t)o->orig_h * o->orig_w;

    const msam_ops *ops = s->model->ops;
    const int n = msam_num_masks(o->multimask);
    const size_t low_plane = (size_t)MSAM_LOWRES * MSAM_LOWRES;
    const size_t elem = o->return_logits ? sizeof(float) : 1;
    int keys0_mask = -2; /* which mask input keys0/proj0 hold (-1: none) */
    if (!p->mask_input && s->proj0_valid) keys0_mask = -1;
    for (int b = 0; b < p->batch; b++) {
        int want = p->mask_input ? (p->mask_batch == 1 ? 0 : b) : -1;
        if (want != keys0_mask) {
            prepare_keys0(s, p, want < 0 ? 0 : want);
            keys0_mask = want;
            s->proj0_valid = want == -1;
        }
        msam_prompt_sparse(&s->model->prompt, p, b, s->sparse_host);
        msam_decode_one(s->model, &s->dws, s->sparse_host, Ts, o->multimask, o->iou + (size_t)b * n, &s->counters);
        for (int i = 0; i < n; i++) {
            const float *low = s->dws.low + (size_t)i * low_plane;
            if (o->low_res) {
                ops->copy_out(o->low_res + ((size_t)b * n + i) * low_plane, low, low_plane);
                s->counters.d2h++;
            }
            if (o->masks) postprocess(s, low, o, (char *)o->masks + ((size_t)b * n + i) * plane * elem);
        }
    }
    return MSAM_OK;
}

msam_status msam_resize_rgb8(const uint8_t *src, int h, int w, ptrdiff_t src_row_stride,
                             ptrdiff_t src_px_stride, int bgr, uint8_t *dst, int nh, int nw,
                             msam_error *err) {
    if (!src || !dst) return msam_fail(err, MSAM_ERR_ARG, "image and output must not be NULL");
    if (h < 1 || w < 1) return msam_fail(err, MSAM_ERR_ARG, "image must be at least 1x1, got %dx%d", h, w);
    if (nh < 1 || nw < 1) return msam_fail(err, MSAM_ERR_ARG, "output size must be at least 1x1, got %dx%d", nh, nw);
    msam_status st = msam_resize_rgb8_pillow(src, h, w, src_row_stride, src_px_stride, bgr, dst, nh, nw);
    if (st) return msam_fail(err, st, "out of memory resizing a %dx%d image to %dx%d", h, w, nh, nw);
    return MSAM_OK;
}
