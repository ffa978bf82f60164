/* model.c - model and session lifetimes: the device's op table from the registry, weights
 * converted once at load, every buffer a session needs allocated at creation (set_image and
 * predict allocate nothing). */
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "model.h"

/* Sparse tokens of the longest prompt set: MSAM_MAX_PROMPT_POINTS points and a box. */
#define MAX_SPARSE_TOKENS (MSAM_MAX_PROMPT_POINTS + 2)

msam_device msam_model_device(const msam_model *model) { return model->device; }

/* A context could not be made: the device's reason when it cannot be used here (no driver or GPU,
 * a library missing), else no memory. */
static msam_status context_failed(msam_device device, const msam_ops *ops, msam_error *err) {
    const msam_status st = msam_device_check(device, err);
    return st ? st : msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating the %s context", ops->name);
}

static void model_release(msam_model *m) {
    if (m->encoder) msam_encoder_free(m->encoder);
    msam_prompt_release(&m->prompt, m->ops, m->ctx);
    msam_decoder_release(&m->decoder, m->ops, m->ctx);
    m->ops->ctx_free(m->ctx);
}

msam_status msam_model_create(const msam_weight *weights, size_t n_weights, msam_device device,
                              msam_model **out, msam_error *err) {
    if (!out) return msam_fail(err, MSAM_ERR_ARG, "out must not be NULL");
    *out = NULL;
    if (!weights && n_weights) return msam_fail(err, MSAM_ERR_ARG, "weights must not be NULL");
    const msam_ops *ops = msam_backend_ops(device);
    if (!ops) return msam_device_check(device, err); /* not built in: says how to get it */
    msam_model *m = calloc(1, sizeof *m);
    if (!m) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating the model");
    m->ops = ops;
    m->device = device;
    if (!(m->ctx = ops->ctx_create())) {
        free(m);
        return context_failed(device, ops, err);
    }
    msam_weight_table wt = {weights, n_weights};
    msam_status st = msam_encoder_create(ops, m->ctx, &wt, &m->encoder, err);
    if (!st) st = msam_prompt_init(&m->prompt, ops, m->ctx, &wt, err);
    if (!st) st = msam_decoder_init(&m->decoder, ops, m->ctx, &wt, err);
    if (!st) ops->sync(m->ctx); /* the uploads are done before the host weights go away */
    if (st) {
        model_release(m);
        free(m);
        return st;
    }
    *out = m;
    return MSAM_OK;
}

void msam_model_free(msam_model *m) {
    if (!m) return;
    model_release(m);
    free(m);
}

static void session_release(msam_session *s) {
    const msam_ops *ops = s->model->ops;
    msam_ctx *ctx = s->ctx;
    msam_decoder_ws *w = &s->dws;
    void *bufs[] = {s->enc_ws, s->staging, s->resize_plan, s->input, s->embedding, s->nomask.keys0, s->nomask.keys0pe,
                    s->nomask.proj0, s->nomask.u0, s->masked.keys0pe, s->masked.proj0, s->masked.u0,
                    w->split_m, w->rstd, w->keys, w->tmp, w->kp, w->vp, w->qp, w->att, w->dense, w->mask_tmp,
                    w->low, w->iou, w->post, w->tok, w->fold, w->mm_scratch, w->up_scratch};
    if (ctx) {
        ops->sync(ctx); /* nothing may still use the buffers */
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) ops->release(ctx, bufs[i]);
        ops->ctx_free(ctx);
    }
    free(s->sparse_host);
    free(s);
}

msam_status msam_session_create(const msam_model *model, msam_session **out, msam_error *err) {
    if (!model || !out) return msam_fail(err, MSAM_ERR_ARG, "model and out must not be NULL");
    *out = NULL;
    const msam_ops *ops = model->ops;
    msam_session *s = calloc(1, sizeof *s);
    if (!s) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating a session");
    s->model = model;
    if (!(s->ctx = ops->ctx_create())) {
        free(s);
        return context_failed(model->device, ops, err);
    }
    msam_ctx *ctx = s->ctx;
    const size_t img = (size_t)MSAM_PIX * MSAM_EMB, px = MSAM_PIX;
    msam_decoder_ws *w = &s->dws;
    int ok = 1;
#define ALLOC(dst, bytes) ok = ok && ((dst) = ops->alloc(ctx, (bytes))) != NULL
#define ALLOCF(dst, n) ALLOC(dst, sizeof(float) * (size_t)(n))
    ALLOC(s->enc_ws, msam_encoder_workspace_bytes(model->encoder));
    /* a resized host image (uint8) is staged here where op memory is not host memory */
    if (!ops->host_memory) ALLOC(s->staging, (size_t)MSAM_IMG * MSAM_IMG * 3);
    if (!ops->host_memory) ALLOC(s->resize_plan, sizeof(int32_t) * MSAM_RESIZE_PLAN_MAX); /* frames on the device */
    ALLOCF(s->input, (size_t)MSAM_IMG * MSAM_IMG * 3);
    ALLOCF(s->embedding, img);
    ALLOCF(s->nomask.keys0, img);
    ALLOCF(s->nomask.keys0pe, img);
    ALLOCF(s->nomask.proj0, px * 3 * MSAM_CROSS);
    ALLOCF(s->nomask.u0, img);
    ALLOCF(w->dense, img);
    s->masked.keys0 = w->dense; /* a mask input's keys0 is made in place of its dense prompt */
    ALLOCF(s->masked.keys0pe, img);
    ALLOCF(s->masked.proj0, px * 3 * MSAM_CROSS);
    ALLOCF(s->masked.u0, img);
    ALLOCF(w->split_m, (size_t)2 * MSAM_CROSS * MSAM_EMB); /* heads*T <= MSAM_CROSS rows each */
    ALLOCF(w->rstd, 2 * px);
    ALLOCF(w->keys, img);
    ALLOCF(w->tmp, img);
    ALLOCF(w->kp, px * MSAM_CROSS);
    ALLOCF(w->vp, px * MSAM_CROSS);
    ALLOCF(w->qp, px * MSAM_CROSS);
    ALLOCF(w->att, px * MSAM_CROSS);
    ALLOCF(w->mask_tmp, 5 * 65536);
    ALLOCF(w->low, (size_t)MSAM_MASK_TOKENS * MSAM_LOWRES * MSAM_LOWRES);
    ALLOCF(w->iou, MSAM_MASK_TOKENS);
    ALLOCF(w->post, (size_t)MSAM_IMG * MSAM_IMG);
    ALLOCF(w->fold, MSAM_FOLD_FLOATS);
    w->max_tokens = 1 + MSAM_MASK_TOKENS + MAX_SPARSE_TOKENS;
    ALLOCF(w->tok, msam_decoder_tok_floats(w->max_tokens));
    /* the folded attention's largest right operand: the image in (heads*T x 4096) . image */
    ALLOC(w->mm_scratch, ops->matmul_scratch_bytes(MSAM_EMB, MSAM_PIX));
    w->up_scratch_bytes = ops->upscale_masks_scratch_bytes(64, 32);
    ALLOC(w->up_scratch, w->up_scratch_bytes);
#undef ALLOCF
#undef ALLOC
    s->sparse_host = malloc(sizeof(float) * (size_t)MAX_SPARSE_TOKENS * MSAM_EMB);
    if (!ok || !s->sparse_host) {
        session_release(s);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating a session");
    }
    *out = s;
    return MSAM_OK;
}

void msam_session_free(msam_session *s) {
    if (s) session_release(s);
}

void msam_session_reset(msam_session *s) {
    if (s) s->has_image = 0;
}

int msam_session_has_image(const msam_session *s) { return s && s->has_image; }

void msam_session_counters(const msam_session *s, msam_counters *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (s) s->model->ops->counters(s->ctx, out);
}
