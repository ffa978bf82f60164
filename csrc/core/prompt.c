/* prompt.c - MobileSAM's prompt encoder: random-Fourier positional encoding of points and box
 * corners (host, tiny), the dense positional grid, and the mask-input downscaling convs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "../ref/ref.h" /* the plain sparse tokens */

#define PE_FEATS 128
#define TWO_PI 6.283185307179586f

msam_status msam_norm_load(msam_norm_w *nw, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                           const char *prefix, int c, msam_error *err) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const float *g = msam_wt_get(wt, name, c, err);
    if (!g) return MSAM_ERR_WEIGHTS;
    snprintf(name, sizeof name, "%s.bias", prefix);
    const float *b = msam_wt_get(wt, name, c, err);
    if (!b) return MSAM_ERR_WEIGHTS;
    nw->g = ops->upload(ctx, g, (size_t)c);
    nw->b = ops->upload(ctx, b, (size_t)c);
    if (!nw->g || !nw->b) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    return MSAM_OK;
}

void msam_norm_release(msam_norm_w *nw, const msam_ops *ops, msam_ctx *ctx) {
    ops->release(ctx, nw->g);
    ops->release(ctx, nw->b);
    nw->g = nw->b = NULL;
}

msam_status msam_linear_load(msam_linear **out, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                             const char *prefix, int n, int k, int has_bias, msam_error *err) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const float *w = msam_wt_get(wt, name, (int64_t)n * k, err);
    if (!w) return MSAM_ERR_WEIGHTS;
    const float *b = NULL;
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        if (!(b = msam_wt_get(wt, name, n, err))) return MSAM_ERR_WEIGHTS;
    }
    *out = ops->linear_create(ctx, w, b, n, k);
    if (!*out) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    return MSAM_OK;
}

/* A k x k stride-k Conv2d [o][ci][dy][dx] as a linear over space-to-depth patches whose input
 * channel index is (dy*2+dx)*cin + ci (the order ops->space_to_depth2 produces). */
static msam_status patch_conv_load(msam_linear **out, const msam_ops *ops, msam_ctx *ctx,
                                   const msam_weight_table *wt, const char *prefix, int cout,
                                   int cin, msam_error *err) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const float *w = msam_wt_get(wt, name, (int64_t)cout * cin * 4, err);
    if (!w) return MSAM_ERR_WEIGHTS;
    snprintf(name, sizeof name, "%s.bias", prefix);
    const float *b = msam_wt_get(wt, name, cout, err);
    if (!b) return MSAM_ERR_WEIGHTS;
    float *rw = malloc(sizeof(float) * (size_t)cout * cin * 4);
    if (!rw) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    for (int o = 0; o < cout; o++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 4; t++)
                rw[(size_t)o * cin * 4 + (size_t)t * cin + ci] = w[((size_t)o * cin + ci) * 4 + t];
    *out = ops->linear_create(ctx, rw, b, cout, cin * 4);
    free(rw);
    if (!*out) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading '%s'", prefix);
    return MSAM_OK;
}

/* PositionEmbeddingRandom._pe_encoding of one point already normalised to [0,1]^2. */
static void pe_encode(const float *gauss, float x, float y, float *out) {
    x = 2.0f * x - 1.0f;
    y = 2.0f * y - 1.0f;
    for (int j = 0; j < PE_FEATS; j++) {
        float a = TWO_PI * (x * gauss[j] + y * gauss[PE_FEATS + j]);
        out[j] = sinf(a);
        out[PE_FEATS + j] = cosf(a);
    }
}

static msam_status copy_rows(float *dst, const msam_weight_table *wt, const char *name, int64_t n,
                             msam_error *err) {
    const float *src = msam_wt_get(wt, name, n, err);
    if (!src) return MSAM_ERR_WEIGHTS;
    memcpy(dst, src, sizeof(float) * (size_t)n);
    return MSAM_OK;
}

msam_status msam_prompt_init(msam_prompt_w *pw, const msam_ops *ops, msam_ctx *ctx, const msam_weight_table *wt,
                             msam_error *err) {
    msam_status st;
    char name[128];
    float *gauss = pw->host_tables, *point_emb = gauss + 2 * PE_FEATS; /* see msam_prompt_w */
    if ((st = copy_rows(gauss, wt, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2 * PE_FEATS, err)))
        return st;
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "prompt_encoder.point_embeddings.%d.weight", i);
        if ((st = copy_rows(point_emb + i * MSAM_EMB, wt, name, MSAM_EMB, err))) return st;
    }
    if ((st = copy_rows(point_emb + 4 * MSAM_EMB, wt, "prompt_encoder.not_a_point_embed.weight", MSAM_EMB, err)))
        return st;
    if (!(pw->tables = ops->upload(ctx, pw->host_tables, MSAM_PROMPT_TABLE_FLOATS)))
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading the prompt encoder");
    const float *no_mask = msam_wt_get(wt, "prompt_encoder.no_mask_embed.weight", MSAM_EMB, err);
    if (!no_mask) return MSAM_ERR_WEIGHTS;
    if (!(pw->no_mask = ops->upload(ctx, no_mask, MSAM_EMB)))
        return msam_fail(err, MSAM_ERR_NOMEM, "out of memory loading the prompt encoder");
    if ((st = patch_conv_load(&pw->md0, ops, ctx, wt, "prompt_encoder.mask_downscaling.0", 4, 1, err))) return st;
    if ((st = msam_norm_load(&pw->md1, ops, ctx, wt, "prompt_encoder.mask_downscaling.1", 4, err))) return st;
    if ((st = patch_conv_load(&pw->md3, ops, ctx, wt, "prompt_encoder.mask_downscaling.3", 16, 4, err))) return st;
    if ((st = msam_norm_load(&pw->md4, ops, ctx, wt, "prompt_encoder.mask_downscaling.4", 16, err))) return st;
    if ((st = msam_linear_load(&pw->md6, ops, ctx, wt, "prompt_encoder.mask_downscaling.6", MSAM_EMB, 16, 1, err))) return st;

    /* get_dense_pe(): the encoding of every cell centre of the 64 x 64 grid, channels-last. */
    float *pe = malloc(sizeof(float) * MSAM_PIX * MSAM_EMB);
    if (!pe) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory building the dense positional encoding");
    for (int i = 0; i < MSAM_GRID; i++)
        for (int j = 0; j < MSAM_GRID; j++)
            pe_encode(gauss, ((float)j + 0.5f) / MSAM_GRID, ((float)i + 0.5f) / MSAM_GRID,
                      pe + ((size_t)i * MSAM_GRID + j) * MSAM_EMB);
    pw->dense_pe = ops->upload(ctx, pe, (size_t)MSAM_PIX * MSAM_EMB);
    free(pe);
    if (!pw->dense_pe) return msam_fail(err, MSAM_ERR_NOMEM, "out of memory building the dense positional encoding");
    return MSAM_OK;
}

void msam_prompt_release(msam_prompt_w *pw, const msam_ops *ops, msam_ctx *ctx) {
    ops->linear_free(ctx, pw->md0);
    ops->linear_free(ctx, pw->md3);
    ops->linear_free(ctx, pw->md6);
    msam_norm_release(&pw->md1, ops, ctx);
    msam_norm_release(&pw->md4, ops, ctx);
    ops->release(ctx, pw->dense_pe);
    ops->release(ctx, pw->no_mask);
    ops->release(ctx, pw->tables);
    pw->md0 = pw->md3 = pw->md6 = NULL;
    pw->dense_pe = pw->no_mask = pw->tables = NULL;
}

int msam_sparse_token_count(const msam_prompts *p) {
    /* Points get a "not a point" pad when there is no box (PromptEncoder._embed_points). */
    int t = 0;
    if (p->n_points > 0) t += p->n_points + (p->boxes ? 0 : 1);
    if (p->boxes) t += 2;
    return t;
}

void msam_prompt_sparse(const msam_prompt_w *pw, const msam_prompts *p, int b, float *out) {
    /* host prompts (labels checked to be -1, 0 or 1): the plain form GPU prompts' op also has */
    const int n = p->n_points;
    msam_ref_prompt_tokens(out, n ? p->coords + (size_t)b * n * 2 : NULL, n ? p->labels + (size_t)b * n : NULL, 0, n,
                           n > 0 && !p->boxes, p->boxes ? p->boxes + (size_t)b * 4 : NULL, pw->host_tables);
}

void msam_prompt_dense_mask(const msam_prompt_w *pw, const msam_ops *ops, msam_ctx *ctx, const float *mask256,
                            float *dense, float *scratch) {
    /* conv2x2/s2 (1->4), LayerNorm2d, GELU, conv2x2/s2 (4->16), LayerNorm2d, GELU, conv1x1. */
    const int n1 = 128 * 128, n2 = 64 * 64;
    float *m = scratch;                 /* 256 x 256 x 1 */
    float *p1 = m + 256 * 256;          /* 128 x 128 x 4 patches */
    float *c1 = p1 + (size_t)n1 * 4;    /* 128 x 128 x 4 */
    float *p2 = c1 + (size_t)n1 * 4;    /* 64 x 64 x 16 patches */
    float *c2 = p2 + (size_t)n2 * 16;   /* 64 x 64 x 16 */
    ops->copy_in(ctx, m, mask256, sizeof(float) * 256 * 256);
    ops->space_to_depth2(ctx, p1, m, 256, 256, 1);
    ops->linear(ctx, c1, 4, p1, 4, n1, pw->md0, MSAM_ACT_NONE, NULL, 0);
    ops->layernorm(ctx, c1, c1, n1, 4, pw->md1.g, pw->md1.b, 1e-6f);
    ops->activate(ctx, c1, c1, (size_t)n1 * 4, MSAM_ACT_GELU);
    ops->space_to_depth2(ctx, p2, c1, 128, 128, 4);
    ops->linear(ctx, c2, 16, p2, 16, n2, pw->md3, MSAM_ACT_NONE, NULL, 0);
    ops->layernorm(ctx, c2, c2, n2, 16, pw->md4.g, pw->md4.b, 1e-6f);
    ops->activate(ctx, c2, c2, (size_t)n2 * 16, MSAM_ACT_GELU);
    ops->linear(ctx, dense, MSAM_EMB, c2, 16, n2, pw->md6, MSAM_ACT_NONE, NULL, 0);
}
