/* predict.c - the session's public entry points: image in (normalise, pad, encode, then layer 0's
 * image side of the decoder), embedding in/out, prompt encoding and predict. Everything that
 * touches op memory goes through ops; predict allocates nothing, never reads op memory back and
 * runs the same op sequence for every prompt set of one shape, so a backend can capture it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "model.h"
#include "pillow_resize.h" /* host/: the resize's plan of taps */

static const float PIXEL_MEAN[3] = MSAM_PIXEL_MEAN_INIT;
static const float PIXEL_STD[3] = MSAM_PIXEL_STD_INIT;

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

/* The no-mask image side of layer 0 (keys0 = embedding + the no-mask embedding everywhere, its
 * projections), computed once per image so every predict without a mask input runs the same ops. */
static void image_side_nomask(msam_session *s) {
    const msam_model *m = s->model;
    m->ops->add_row(s->ctx, s->nomask.keys0, s->embedding, m->prompt.no_mask, MSAM_PIX, MSAM_EMB);
    msam_decoder_image_side(m, s->ctx, &s->nomask);
}

/* s->input is ready: encode it and prepare the decoder's image side. */
static msam_status encode(msam_session *s, msam_stage_fn fn, void *user, msam_error *err) {
    msam_status st = msam_encoder_forward(s->model->encoder, s->ctx, s->input, s->embedding, s->enc_ws, fn, user, err);
    if (st) return st;
    image_side_nomask(s);
    s->has_image = 1;
    return MSAM_OK;
}

/* Sam.preprocess: (x - mean) / std per channel, zero padding bottom/right to 1024 x 1024. x is
 * host memory: handed to the op directly where op memory is host memory, else staged. */
static msam_status preprocess(msam_session *s, const void *x, msam_dtype type, int h, int w, ptrdiff_t sc,
                              ptrdiff_t sy, ptrdiff_t sx, msam_error *err) {
    const msam_ops *ops = s->model->ops;
    const size_t elem = type == MSAM_U8 ? 1 : sizeof(float);
    if (!ops->host_memory) {
        /* packed inputs only (the binding makes them so); u8 in the staging buffer, f32 in the
         * encoder workspace, which the encoder overwrites only after normalize_pad has read it */
        const int packed = type == MSAM_U8 ? (sx == 3 && sy == (ptrdiff_t)w * 3 && sc == 1)
                                           : (sx == 1 && sy == w && sc == (ptrdiff_t)h * w);
        if (!packed) return msam_fail(err, MSAM_ERR_ARG, "the %s backend takes packed images only", ops->name);
        void *dst = type == MSAM_U8 ? s->staging : s->enc_ws;
        ops->copy_in(s->ctx, dst, x, elem * 3 * (size_t)h * w);
        x = dst;
    }
    ops->normalize_pad(s->ctx, s->input, MSAM_IMG, x, type, h, w, sc, sy, sx, PIXEL_MEAN, PIXEL_STD);
    return MSAM_OK;
}

msam_status msam_session_set_image_u8(msam_session *s, const uint8_t *rgb, int h, int w,
                                      msam_stage_fn stage_fn, void *stage_user, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!rgb) return msam_fail(err, MSAM_ERR_ARG, "image must not be NULL");
    if ((st = check_input_size(h, w, err))) return st;
    s->has_image = 0;
    if ((st = preprocess(s, rgb, MSAM_U8, h, w, 1, (ptrdiff_t)w * 3, 3, err))) return st;
    return encode(s, stage_fn, stage_user, err);
}

msam_status msam_session_set_image_rgb8(msam_session *s, const uint8_t *src, int h, int w, ptrdiff_t row_stride,
                                        ptrdiff_t px_stride, int bgr, int nh, int nw, msam_stage_fn stage_fn,
                                        void *stage_user, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!src) return msam_fail(err, MSAM_ERR_ARG, "image must not be NULL");
    if (h < 1 || w < 1 || h > MSAM_MAX_IMAGE_SIDE || w > MSAM_MAX_IMAGE_SIDE || (int64_t)h * w > MSAM_MAX_IMAGE_PIXELS)
        return msam_fail(err, MSAM_ERR_ARG, "image must be within 1..%d per side and %lld pixels, got %dx%d",
                         MSAM_MAX_IMAGE_SIDE, (long long)MSAM_MAX_IMAGE_PIXELS, h, w);
    if (px_stride < 3 || row_stride < (ptrdiff_t)w * px_stride)
        return msam_fail(err, MSAM_ERR_ARG, "image pixels must be at least 3 bytes apart and rows at least a row apart, "
                         "got %td and %td", px_stride, row_stride);
    if ((st = check_input_size(nh, nw, err))) return st;
    const msam_ops *ops = s->model->ops;
    const size_t plan_n = msam_resize_plan_len(h, w, nh, nw);
    int32_t *plan = malloc(sizeof(int32_t) * plan_n);
    if (!plan || msam_resize_plan(h, w, nh, nw, plan, plan_n) != plan_n || plan_n > MSAM_RESIZE_PLAN_MAX) {
        free(plan);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory planning the resize of a %dx%d image", h, w);
    }
    s->has_image = 0;
    /* the resized frame: in the u8 staging buffer off the host, else in the encoder's workspace,
     * which the encoder overwrites only after normalize_pad has read it */
    uint8_t *resized = ops->host_memory ? (uint8_t *)s->enc_ws : s->staging;
    if (ops->host_memory && msam_encoder_workspace_bytes(s->model->encoder) < (size_t)nh * nw * 3) {
        free(plan);
        return msam_fail(err, MSAM_ERR_STATE, "the encoder workspace cannot hold a %dx%d frame", nh, nw);
    }
    ops->resize_rgb8(s->ctx, resized, nh, nw, src, h, w, row_stride, px_stride, bgr, plan, plan_n, s->resize_plan);
    free(plan); /* a device backend copied it (from pageable memory: staged before the call returned) */
    ops->normalize_pad(s->ctx, s->input, MSAM_IMG, resized, MSAM_U8, nh, nw, 1, (ptrdiff_t)nw * 3, 3, PIXEL_MEAN,
                       PIXEL_STD);
    return encode(s, stage_fn, stage_user, err);
}

msam_status msam_session_set_image_f32(msam_session *s, const float *chw, int h, int w,
                                       ptrdiff_t stride_c, ptrdiff_t stride_y, ptrdiff_t stride_x,
                                       msam_stage_fn stage_fn, void *stage_user, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!chw) return msam_fail(err, MSAM_ERR_ARG, "transformed_image must not be NULL");
    if ((st = check_input_size(h, w, err))) return st;
    /* host input: checked here, before anything changes */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (!isfinite(chw[c * stride_c + y * stride_y + x * stride_x]))
                    return msam_fail(err, MSAM_ERR_ARG, "transformed_image has a non-finite value at (%d, %d, %d)",
                                     c, y, x);
    s->has_image = 0;
    if ((st = preprocess(s, chw, MSAM_F32, h, w, stride_c, stride_y, stride_x, err))) return st;
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
    const msam_ops *ops = s->model->ops;
    const int packed = stride_x == 1 && stride_y == MSAM_GRID;
    float *tmp = NULL;
    const float *src = chw;
    ptrdiff_t ld = stride_c;
    if (!packed || !ops->host_memory) {
        /* gather on the host into 256 x 4096, then (off the host) stage it in op memory */
        if (!(tmp = malloc(sizeof(float) * MSAM_EMB * MSAM_PIX)))
            return msam_fail(err, MSAM_ERR_NOMEM, "out of memory reading the embedding");
        for (int c = 0; c < MSAM_EMB; c++)
            for (int y = 0; y < MSAM_GRID; y++)
                for (int x = 0; x < MSAM_GRID; x++)
                    tmp[((size_t)c * MSAM_GRID + y) * MSAM_GRID + x] = chw[c * stride_c + y * stride_y + x * stride_x];
        src = tmp, ld = MSAM_PIX;
        if (!ops->host_memory) {
            ops->copy_in(s->ctx, s->dws.tmp, tmp, sizeof(float) * MSAM_EMB * MSAM_PIX);
            src = s->dws.tmp;
        }
    }
    s->has_image = 0;
    /* channels-first 256 x 4096 -> channels-last 4096 x 256 */
    ops->transpose(s->ctx, s->embedding, MSAM_EMB, src, ld, MSAM_EMB, MSAM_PIX);
    if (tmp) {
        ops->sync(s->ctx); /* the transpose (or the copy) has read tmp */
        free(tmp);
    }
    image_side_nomask(s);
    s->has_image = 1;
    return MSAM_OK;
}

msam_status msam_session_get_embedding(msam_session *s, float *out, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err))) return st;
    if (!out) return msam_fail(err, MSAM_ERR_ARG, "out must not be NULL");
    if (!s->has_image) return msam_fail(err, MSAM_ERR_STATE, "An image must be set with .set_image(...) to generate an embedding.");
    const msam_ops *ops = s->model->ops;
    if (ops->host_memory) {
        ops->transpose(s->ctx, out, MSAM_PIX, s->embedding, MSAM_EMB, MSAM_PIX, MSAM_EMB);
    } else {
        ops->transpose(s->ctx, s->dws.tmp, MSAM_PIX, s->embedding, MSAM_EMB, MSAM_PIX, MSAM_EMB);
        ops->copy_out(s->ctx, out, s->dws.tmp, sizeof(float) * MSAM_EMB * MSAM_PIX);
    }
    return MSAM_OK;
}

static msam_status check_prompts(const msam_prompts *p, msam_error *err) {
    if (!p) return msam_fail(err, MSAM_ERR_ARG, "prompts must not be NULL");
    if (p->batch < 1) return msam_fail(err, MSAM_ERR_ARG, "the prompt batch must be >= 1, got %d", p->batch);
    if (p->n_points < 0) return msam_fail(err, MSAM_ERR_ARG, "n_points must be >= 0");
    if (p->n_points > MSAM_MAX_PROMPT_POINTS)
        return msam_fail(err, MSAM_ERR_ARG, "point_coords must have at most %d points per prompt set, got %d",
                         MSAM_MAX_PROMPT_POINTS, p->n_points);
    if (p->n_points > 0 && (!p->coords || !p->labels))
        return msam_fail(err, MSAM_ERR_ARG, "point_coords and point_labels must both be given");
    if (p->on_device && p->n_points == 0 && !p->boxes)
        return msam_fail(err, MSAM_ERR_ARG, "GPU prompts need points or boxes");
    if (p->n_points > 0 && !p->on_device) { /* GPU prompts stay unread (see msam_prompts) */
        size_t n = (size_t)p->batch * p->n_points;
        for (size_t i = 0; i < n; i++) {
            if (p->labels[i] < -1 || p->labels[i] > 1)
                return msam_fail(err, MSAM_ERR_ARG, "point_labels must be -1, 0 or 1, got %d", (int)p->labels[i]);
            if (!isfinite(p->coords[2 * i]) || !isfinite(p->coords[2 * i + 1]))
                return msam_fail(err, MSAM_ERR_ARG, "point_coords must be finite");
        }
    }
    if (p->boxes && !p->on_device)
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

/* The masked image side for mask input m: dense prompt from the mask, keys0 = embedding + it
 * (in place of the dense prompt), then its projections. */
static void image_side_masked(msam_session *s, const float *mask256) {
    const msam_model *m = s->model;
    msam_decoder_ws *w = &s->dws;
    msam_prompt_dense_mask(&m->prompt, m->ops, s->ctx, mask256, w->dense, w->mask_tmp);
    m->ops->add(s->ctx, s->masked.keys0, s->embedding, w->dense, (size_t)MSAM_PIX * MSAM_EMB);
    msam_decoder_image_side(m, s->ctx, &s->masked);
}

msam_status msam_encode_prompts(msam_session *s, const msam_prompts *p, float *sparse, float *dense_hwc,
                                msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err)) || (st = check_prompts(p, err))) return st;
    const msam_model *m = s->model;
    const msam_ops *ops = m->ops;
    int T = msam_sparse_token_count(p);
    if (p->on_device) return msam_fail(err, MSAM_ERR_ARG, "the prompt encoder alone takes host prompts only");
    if (sparse && T > 0)
        for (int b = 0; b < p->batch; b++) msam_prompt_sparse(&m->prompt, p, b, sparse + (size_t)b * T * MSAM_EMB);
    if (dense_hwc) {
        /* through the session's mask-input scratch (predict rebuilds it for every mask input) */
        const size_t plane = (size_t)MSAM_PIX * MSAM_EMB;
        for (int b = 0; b < (p->mask_input ? p->mask_batch : 1); b++) {
            if (p->mask_input)
                msam_prompt_dense_mask(&m->prompt, ops, s->ctx, p->mask_input + (size_t)b * 65536, s->dws.dense,
                                       s->dws.mask_tmp);
            else
                ops->add_row(s->ctx, s->dws.dense, NULL, m->prompt.no_mask, MSAM_PIX, MSAM_EMB);
            ops->copy_out(s->ctx, dense_hwc + (size_t)b * plane, s->dws.dense, sizeof(float) * plane);
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
    ops->resize_bilinear(s->ctx, low, MSAM_LOWRES, MSAM_LOWRES, MSAM_LOWRES, s->dws.post, MSAM_IMG, MSAM_IMG, iw,
                         ih, iw);
    if (o->return_logits)
        ops->resize_bilinear(s->ctx, s->dws.post, ih, iw, iw, (float *)dst, o->orig_h, o->orig_w, o->orig_w,
                             o->orig_h, o->orig_w);
    else
        ops->resize_bilinear_mask(s->ctx, s->dws.post, ih, iw, iw, (uint8_t *)dst, o->orig_h, o->orig_w,
                                  o->orig_w, o->orig_h, o->orig_w);
}

msam_status msam_predict(msam_session *s, const msam_prompts *p, msam_outputs *o, msam_error *err) {
    msam_status st;
    if ((st = check_session(s, err)) || (st = check_prompts(p, err))) return st;
    if (!s->has_image) return msam_fail(err, MSAM_ERR_STATE, "An image must be set with .set_image(...) before mask prediction.");
    if (!o || !o->iou) return msam_fail(err, MSAM_ERR_ARG, "outputs must not be NULL");
    if (o->orig_h < 1 || o->orig_w < 1 || o->orig_h > MSAM_MAX_IMAGE_SIDE || o->orig_w > MSAM_MAX_IMAGE_SIDE ||
        (int64_t)o->orig_h * o->orig_w > MSAM_MAX_IMAGE_PIXELS)
        return msam_fail(err, MSAM_ERR_ARG, "original size must be within 1..%d per side and %lld pixels, got %dx%d",
                         MSAM_MAX_IMAGE_SIDE, (long long)MSAM_MAX_IMAGE_PIXELS, o->orig_h, o->orig_w);
    if (o->input_h < 1 || o->input_w < 1 || o->input_h > MSAM_IMG || o->input_w > MSAM_IMG)
        return msam_fail(err, MSAM_ERR_ARG, "input size must be within 1..%d, got %dx%d", MSAM_IMG, o->input_h, o->input_w);
    const int Ts = msam_sparse_token_count(p);
    const size_t plane = (size_t)o->orig_h * o->orig_w;
    const int n = msam_num_masks(o->multimask);
    const size_t low_plane = (size_t)MSAM_LOWRES * MSAM_LOWRES;
    const size_t elem = o->return_logits ? sizeof(float) : 1;
    if (o->kept && o->masks)
        return msam_fail(err, MSAM_ERR_ARG, "the IoU filter (kept) makes low-res logits only: masks must be NULL");
    if (o->kept && !o->low_res) return msam_fail(err, MSAM_ERR_ARG, "the IoU filter (kept) needs low_res");
    /* the filter reads each IoU back on the host: only where op memory is host memory */
    const msam_ops *ops = s->model->ops;
    const float *min_iou = o->kept && ops->host_memory ? &o->min_iou : NULL;
    size_t made = 0; /* low-res planes written so far */
    int masked_for = -1; /* which mask input s->masked holds within this call */
    for (int b = 0; b < p->batch; b++) {
        const msam_image_side *side = &s->nomask;
        if (p->mask_input) {
            const int want = p->mask_batch == 1 ? 0 : b;
            if (want != masked_for) image_side_masked(s, p->mask_input + (size_t)want * low_plane);
            masked_for = want;
            side = &s->masked;
        }
        if (p->on_device) { /* encoded where they are */
            const size_t lsz = p->labels_int64 ? sizeof(int64_t) : sizeof(int32_t);
            ops->prompt_tokens(s->ctx, msam_decoder_sparse_slot(&s->dws),
                               p->n_points ? p->coords + (size_t)b * p->n_points * 2 : NULL,
                               p->n_points ? (const char *)p->labels + (size_t)b * p->n_points * lsz : NULL,
                               p->labels_int64, p->n_points, p->n_points > 0 && !p->boxes,
                               p->boxes ? p->boxes + (size_t)b * 4 : NULL, s->model->prompt.tables);
        } else {
            msam_prompt_sparse(&s->model->prompt, p, b, s->sparse_host);
            if (Ts > 0)
                ops->copy_in(s->ctx, msam_decoder_sparse_slot(&s->dws), s->sparse_host, sizeof(float) * Ts * MSAM_EMB);
        }
        float *low_out = o->low_res ? o->low_res + (o->kept ? made : (size_t)b * n) * low_plane : NULL;
        uint8_t *kept = o->kept ? o->kept + (size_t)b * n : NULL;
        float *low = low_out ? low_out : s->dws.low;
        if (ops->replay_begin) {
            /* a replayable sequence writes the session's own buffers, then they are copied out */
            const uint64_t key = ((uint64_t)Ts << 2) | ((uint64_t)(o->multimask != 0) << 1) | (side == &s->masked);
            ops->replay_begin(s->ctx, key);
            msam_decode_one(s->model, s->ctx, &s->dws, side, Ts, o->multimask, NULL, kept, s->dws.low, s->dws.iou);
            if (ops->replay_end(s->ctx, key))
                msam_decode_one(s->model, s->ctx, &s->dws, side, Ts, o->multimask, NULL, kept, s->dws.low, s->dws.iou);
            ops->copy(s->ctx, o->iou + (size_t)b * n, s->dws.iou, sizeof(float) * n);
            if (low_out) ops->copy(s->ctx, low_out, s->dws.low, sizeof(float) * n * low_plane);
            low = s->dws.low;
            made += (size_t)n;
        } else {
            made += (size_t)msam_decode_one(s->model, s->ctx, &s->dws, side, Ts, o->multimask, min_iou, kept, low,
                                            o->iou + (size_t)b * n);
        }
        if (o->masks)
            for (int i = 0; i < n; i++)
                postprocess(s, low + (size_t)i * low_plane, o, (char *)o->masks + ((size_t)b * n + i) * plane * elem);
    }
    return MSAM_OK;
}
