/* model.c - model and session lifetimes: weights converted once at load, every buffer a
 * session needs allocated at creation (no allocation inside set_image or predict). */
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "model.h"
#include "threads.h"

#define MIN_TOKENS 64 /* token capacity at creation; predict grows it for more prompt points */

msam_device msam_model_device(const msam_model *model) { return model->device; }

static void model_release(msam_model *m) {
    if (m->encoder) msam_encoder_free(m->encoder);
    msam_prompt_release(&m->prompt, m->ops);
    msam_decoder_release(&m->decoder, m->ops);
}

msam_status msam_model_create(const msam_weight *weights, size_t n_weights, msam_device device,
                              msam_model **out, msam_error *err) {
    if (!out) return msam_fail(err, MSAM_ERR_ARG, "out must not be NULL");
    *out = NULL;
    if (!weights && n_weights) return msam_fail(err, MSAM_ERR_ARG, "weights must not be NULL");
    if (device != MSAM_DEVICE_CPU)
        return msam_fail(err, MSAM_ERR_BACKEND, "device %d is not built into this mobile_sam_c", (int)device);
    msam_model *m = calloc(1, sizeof *m);
    if (!m) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating the model");
    m->ops = msam_cpu_ops();
    m->device = device;
    msam_weight_table wt = {weights, n_weights};
    msam_status st = msam_encoder_create(m->ops, &wt, &m->encoder, err);
    if (!st) st = msam_prompt_init(&m->prompt, m->ops, &wt, err);
    if (!st) st = msam_decoder_init(&m->decoder, m->ops, &wt, err);
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

static void ws_release(msam_decoder_ws *w, const msam_ops *ops) {
    float **bufs[] = {&w->keys0, &w->proj0, &w->u0, &w->split_m, &w->rstd, &w->keys, &w->tmp, &w->kp, &w->vp,
                      &w->qp, &w->att,
                      &w->dense, &w->mask_tmp,
                      &w->low, &w->post, &w->tok, &w->fold, &w->keys0pe};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        ops->release(*bufs[i]);
        *bufs[i] = NULL;
    }
    ops->release(w->mm_scratch);
    w->mm_scratch = NULL;
    ops->release(w->up_scratch);
    w->up_scratch = NULL;
}

/* (Re)size the token buffers; only predict with more than MIN_TOKENS prompt tokens grows them. */
msam_status msam_session_reserve_tokens(msam_session *s, int tokens, msam_error *err) {
    const msam_ops *ops = s->model->ops;
    if (tokens <= s->dws.max_tokens) return MSAM_OK;
    float *tok = ops->alloc(sizeof(float) * msam_decoder_tok_floats(tokens));
    float *sparse = malloc(sizeof(float) * (size_t)tokens * MSAM_EMB);
    if (!tok || !sparse) {
        ops->release(tok);
        free(sparse);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory for %d prompt tokens", tokens);
    }
    ops->release(s->dws.tok);
    free(s->sparse_host);
    s->dws.tok = tok;
    s->sparse_host = sparse;
    s->dws.max_tokens = tokens;
    return MSAM_OK;
}

msam_status msam_session_create(const msam_model *model, msam_session **out, msam_error *err) {
    if (!model || !out) return msam_fail(err, MSAM_ERR_ARG, "model and out must not be NULL");
    *out = NULL;
    const msam_ops *ops = model->ops;
    msam_session *s = calloc(1, sizeof *s);
    if (!s) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating a session");
    s->model = model;
    const size_t img = (size_t)MSAM_PIX * MSAM_EMB, px = MSAM_PIX;
    msam_decoder_ws *w = &s->dws;
    int ok = 1;
#define ALLOC(dst, n) ok = ok && ((dst) = ops->alloc(sizeof(float) * (size_t)(n))) != NULL
    s->enc_ws = ops->alloc(msam_encoder_workspace_bytes(model->encoder));
    ok = s->enc_ws != NULL;
    ALLOC(s->input, (size_t)MSAM_IMG * MSAM_IMG * 3);
    ALLOC(s->embedding, img);
    ALLOC(w->keys0, img);
    ALLOC(w->proj0, px * 384);
    ALLOC(w->u0, img);
    ALLOC(w->split_m, (size_t)2 * MSAM_CROSS * MSAM_EMB); /* heads*T <= MSAM_CROSS rows each */
    ALLOC(w->rstd, 2 * px);
    ALLOC(w->keys0pe, img);
    ALLOC(w->keys, img);
    ALLOC(w->tmp, img);
    ALLOC(w->kp, px * 128);
    ALLOC(w->vp, px * 128);
    ALLOC(w->qp, px * 128);
    ALLOC(w->att, px * 128);
    ALLOC(w->dense, img);
    ALLOC(w->mask_tmp, 5 * 65536);
    ALLOC(w->low, (size_t)MSAM_MASK_TOKENS * MSAM_LOWRES * MSAM_LOWRES);
    ALLOC(w->post, (size_t)MSAM_IMG * MSAM_IMG);
    ALLOC(w->fold, MSAM_FOLD_FLOATS);
#undef ALLOC
    {
        /* the folded attention's largest right operand: the image in (heads*T x 4096) . image */
        ok = ok && (w->mm_scratch = ops->alloc(ops->matmul_scratch_bytes(MSAM_EMB, MSAM_PIX))) != NULL;
        w->up_scratch_bytes = ops->upscale_masks_scratch_bytes(64, 32, msam_threads_for_sizing());
        ok = ok && (w->up_scratch = ops->alloc(w->up_scratch_bytes)) != NULL;
    }
    if (!ok || msam_session_reserve_tokens(s, MIN_TOKENS, err)) {
        msam_session_free(s);
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory creating a session");
    }
    *out = s;
    return MSAM_OK;
}

void msam_session_free(msam_session *s) {
    if (!s) return;
    const msam_ops *ops = s->model->ops;
    ops->release(s->enc_ws);
    ops->release(s->input);
    ops->release(s->embedding);
    ws_release(&s->dws, ops);
    free(s->sparse_host);
    free(s);
}

void msam_session_reset(msam_session *s) {
    if (!s) return;
    s->has_image = 0;
    s->proj0_valid = 0;
}

int msam_session_has_image(const msam_session *s) { return s && s->has_image; }

void msam_session_counters(const msam_session *s, msam_counters *out) {
    if (!out) return;
    if (!s) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = s->counters;
}
